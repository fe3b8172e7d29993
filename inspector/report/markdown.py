"""The Markdown report: findings, events and watched flows for a ticket or a wiki.

Markdown renderers pass HTML through, so every string from the wire is
escaped three times over: control, bidi and other invisible characters as
every output escapes them (``inspector.text.inert``), HTML-special characters
become entities, and Markdown punctuation gets a backslash, so no capture
(or capture file name) can inject markup, links or terminal sequences.
"""

from __future__ import annotations

import re
from typing import IO

import pandas as pd

from inspector.analysis import Analysis
from inspector.report.incomplete import incomplete_captures, incomplete_text
from inspector.schema import SEVERITIES
from inspector.report.payload import REDACTED, hexdump
from inspector.report.secret_digest import distinct_secrets
from inspector.report.terminal import summary_flows
from inspector.text import inert
from inspector.units import human_bytes

# Characters that can open Markdown markup mid-line (lines always start with
# our own text, so list and heading markers need no escaping).
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~#])")
MAX_FLOWS = 500


def md(text: object) -> str:
    """A table- and paragraph-safe rendering of any string. ``&`` and ``<``
    become entities (no tag can open); ``>`` stays, so arrows read as ``->``
    (it is markup only at the start of a line, and every line starts with ours)."""
    escaped = inert(str(text).replace("\n", " ").replace("\r", " ")).replace("&", "&amp;").replace("<", "&lt;")
    return _MARKDOWN_SPECIAL.sub(r"\\\1", escaped)


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(md(cell) for cell in row) + " |" for row in rows]
    return lines + [""]


def write_markdown(result: Analysis, handle: IO[str], *, show_payload: bool = False) -> None:
    from inspector import __version__

    inputs = result.inputs
    findings = result.findings
    counts = findings["severity"].astype(str).value_counts()
    out = ["# inspector report", "",
           f"inspector {md(__version__)}: {len(inputs)} file(s) "
           f"({', '.join(md(f) for f in inputs['file'])}), {int(inputs['packets'].sum()):,} packets, "
           f"{len(result.flows):,} flows, {len(result.events)} migration event(s).", "",
           *[f"> **{md(incomplete_text(line))}**\n" for line in incomplete_captures(result)],
           "## Summary", "",
           "Findings: " + (", ".join(f"**{counts[s]} {s}**" for s in SEVERITIES if counts.get(s, 0)) or "none") + ".",
           ""]
    out += ["## Findings", ""] + (_findings(findings) if len(findings) else ["No findings.", ""])
    if result.config is not None:
        from inspector.report.config_report import configuration_markdown

        out += configuration_markdown(result.config)
    if len(result.events):
        out += ["## Migration events", ""]
        out += _table(["event", "source", "destination", "start", "protection", "RAM", "RAM in clear", "disk",
                       "disk in clear", "channels"],
                      [[e.event, e.src_h, e.dst_h, f"{e.start:%Y-%m-%d %H:%M:%S}", e.protection,
                        human_bytes(e.ram_bytes), human_bytes(e.ram_bytes_clear), human_bytes(e.disk_bytes),
                        human_bytes(e.disk_bytes_clear), ", ".join(e.channels)] for e in result.events.itertuples()])
    if len(result.secrets):
        out += ["## Secrets in cleartext payload", "",
                md(REDACTED) if not show_payload else "Excerpts shown at the user's request (--show-payload).", ""]
        digest = distinct_secrets(result.secrets_raw(), result.flows)
        found = int(result.secret_counts["count"].sum())
        out += [(f"{len(digest)} distinct secret(s) to rotate ({found:,} matches in total, {len(result.secrets)} "
                 "listed; the same value on the same host pair counts once):"), ""]
        out += _table(["secret", "kind", "hosts", "what (redacted)", "matches", "flows"],
                      [[f"S{i}", d.kind, d.hosts, d.what, d.occurrences, d.flows]
                       for i, d in enumerate(digest.itertuples(index=False), start=1)])
        out += ["Matches:", ""]
        out += _table(["flow", "direction", "kind", "offset", "what"],
                      [[s.uid, s.direction, s.kind, s.offset, s.label] for s in result.secrets.itertuples()])
        if show_payload:
            for s in result.secrets_raw().itertuples():
                out += [f"{md(s.uid)} {md(s.kind)} at offset {s.offset}:", "", "```",
                        hexdump(bytes(s.excerpt)).replace("`", "."), "```", ""]
    flows = summary_flows(result.flows, show_all=False)
    out += ["## Watched flows", ""]
    out += _table(["uid", "watch", "originator", "responder", "protocol", "verdict", "confidence", "bytes",
                   "reason"],
                  [[f.uid, f.watch, f"{f.orig_h}:{f.orig_p}", f"{f.resp_h}:{f.resp_p}", f.protocol or f.proto,
                    f.verdict, f"{f.confidence:.2f}", human_bytes(f.orig_bytes + f.resp_bytes), f.reason]
                   for f in flows.head(MAX_FLOWS).itertuples()])
    if len(flows) > MAX_FLOWS:
        out += [f"{len(flows) - MAX_FLOWS} more flows are in the JSON and CSV exports.", ""]
    handle.write("\n".join(out))


def _findings(findings: pd.DataFrame) -> list[str]:
    out = []
    for f in findings.itertuples():
        out += [f"### {md(f.finding)} {md(str(f.severity).upper())}: {md(f.title)}", "",
                md(f.summary), "", f"Risks: {md(', '.join(f.risks)) or 'none (protected)'}.", "", "Evidence:", ""]
        out += [f"- {md(line)}" for line in str(f.evidence).split("\n") if line]
        out += ["", "Remediation:", ""]
        out += [f"{i}. {md(step)}" for i, step in enumerate(str(f.remediation).split("\n"), start=1) if step]
        out += ["", f"References: {md(f.references)}.", ""]
    return out
