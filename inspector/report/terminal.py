"""The terminal summary: inputs, verdict counts, and a table of flows.

Strings that came from the wire or from file names are passed to rich as
``Text`` (never as markup) and through ``inspector.text.inert`` (no control
sequence, newline or bidi override), so nothing in a capture or its name can
restyle or forge the output. Colours appear only on a terminal.
"""

from __future__ import annotations

import pandas as pd
from rich.console import Console
from rich.table import Table
from rich.text import Text

from inspector.analysis import Analysis
from inspector.report.incomplete import incomplete_captures, incomplete_text
from inspector.schema import SEVERITIES, VERDICTS
from inspector.text import inert
from inspector.units import flow_endpoints, human_bytes

VERDICT_STYLE = {"plaintext": "bold red", "compressed": "yellow", "encrypted": "green", "unknown": "dim"}
# Reviewers read the exposed flows first.
VERDICT_ORDER = {v: i for i, v in enumerate(("plaintext", "compressed", "unknown", "encrypted"))}


def summary_flows(flows: pd.DataFrame, show_all: bool) -> pd.DataFrame:
    """The flows the summary lists (watched or part of a migration event),
    most exposed and largest first."""
    shown = flows if show_all else flows[(flows["watch"] != "none") | (flows["event"] != "")]
    order = shown["verdict"].astype(str).map(VERDICT_ORDER)
    size = shown["orig_bytes"] + shown["resp_bytes"]
    return shown.assign(_o=order, _s=-size).sort_values(["_o", "_s"], kind="stable").drop(columns=["_o", "_s"])


WIDE = 110  # narrower terminals get the stacked layout
PROTECTION_STYLE = {"none": "bold red", "libvirt tunnel over plain TCP": "bold red",
                    "compressed only": "yellow", "unknown": "dim"}


def _render_events(events: pd.DataFrame, console: Console) -> None:
    """One line per migration event: who, when, what moved, how protected."""
    if events.empty:
        return
    console.print(Text(f"migration events: {len(events)}", style="bold"))
    for row in events.itertuples(index=False):
        clear = row.ram_bytes_clear + row.disk_bytes_clear
        moved = f"RAM {human_bytes(row.ram_bytes)}" + (f", disk {human_bytes(row.disk_bytes)}" if row.disk_bytes else "")
        _print_indented(console, Text.assemble(
            inert(f"  {row.event} {row.src_h} -> {row.dst_h} {row.start:%Y-%m-%d %H:%M:%S} "
                  f"({', '.join(row.channels)}): {moved}; "),
            (f"protection {row.protection}", PROTECTION_STYLE.get(row.protection, "green")),
            (f"; {human_bytes(clear)} in clear" if clear else "", "bold red" if clear else ""),
        ), 0)


SEVERITY_STYLE = {"critical": "bold white on red", "high": "bold red", "medium": "yellow", "low": "cyan",
                  "info": "green"}


def _render_findings(findings: pd.DataFrame, console: Console) -> None:
    """Findings by severity: the title and numbers, the first fix step."""
    if findings.empty:
        console.print(Text("findings: none", style="bold"))
        return
    counts = findings["severity"].astype(str).value_counts()
    line = Text("findings: ", style="bold")
    for severity in SEVERITIES:
        if counts.get(severity, 0):
            line.append(f"{counts[severity]} {severity}  ", style=SEVERITY_STYLE[severity])
    line.rstrip()
    console.print(line)
    for row in findings.itertuples(index=False):
        severity = str(row.severity)
        _print_indented(console, Text.assemble("  ", (f"{severity.upper():<8}", SEVERITY_STYLE[severity]),
                                               inert(f" {row.finding} {row.title} [{row.rule}]")), 0)
        _print_indented(console, Text(inert(row.summary)), 11)
        fix = inert(str(row.remediation).split("\n", 1)[0])
        if severity != "info":
            _print_indented(console, Text(f"fix: {fix}", style="dim"), 11)


def _print_indented(console: Console, text: Text, indent: int) -> None:
    """``text`` wrapped to the console and indented, without padding the
    lines out to the full width (piped output stays free of trailing blanks)."""
    for line in text.wrap(console, max(console.width - indent, 20)):
        line.rstrip()
        console.print(Text(" " * indent) + line, soft_wrap=True)


MAX_SECRETS = 10


def _render_secrets(analysis: Analysis, console: Console) -> None:
    """The distinct secrets to rotate, redacted, most widespread first."""
    from inspector.report.secret_digest import distinct_secrets

    if analysis.secrets.empty:
        return
    digest = distinct_secrets(analysis.secrets_raw(), analysis.flows)
    console.print(Text(f"secrets to rotate: {len(digest)} distinct "
                       f"({int(analysis.secret_counts['count'].sum()):,} matches)", style="bold"))
    for i, d in enumerate(digest.head(MAX_SECRETS).itertuples(index=False), start=1):
        _print_indented(console, Text(inert(f"S{i} {d.kind} {d.hosts}: {d.what} (x{d.occurrences})")), 2)
    if len(digest) > MAX_SECRETS:
        console.print(Text(f"  ... {len(digest) - MAX_SECRETS} more in --html / --markdown", style="dim"))


def _flow_text(row) -> str:
    return inert(f"{flow_endpoints(row)} {row.proto}")


def _bytes_text(row) -> str:
    return f"{human_bytes(row.orig_bytes)} / {human_bytes(row.resp_bytes)}"


def _table(flows: pd.DataFrame) -> Table:
    table = Table(show_lines=False, header_style="bold", expand=False)
    table.add_column("watch", no_wrap=True)
    table.add_column("originator -> responder", overflow="fold", max_width=44)
    table.add_column("bytes o/r", justify="right", no_wrap=True)
    table.add_column("verdict", no_wrap=True)
    table.add_column("conf", justify="right", no_wrap=True)
    table.add_column("reason", overflow="fold", ratio=1, min_width=24)
    for row in flows.itertuples(index=False):
        verdict = str(row.verdict)
        table.add_row(Text(inert(row.watch)), Text(_flow_text(row)), Text(_bytes_text(row)),
                      Text(verdict, style=VERDICT_STYLE[verdict]), Text(f"{row.confidence:.2f}"),
                      Text(inert(row.reason)))
    return table


def render(analysis: Analysis, console: Console, *, show_all: bool = False, limit: int = 100) -> None:
    inputs = analysis.inputs
    packets = int(inputs["packets"].sum())
    console.print(
        Text.assemble(
            ("inspector ", "bold"),
            f"{len(inputs)} file(s), {packets:,} packets, {human_bytes(int(inputs['wire_bytes'].sum()))}, "
            f"{len(analysis.flows):,} flows, {len(analysis.watched):,} watched",
        )
    )
    for line in incomplete_captures(analysis):
        console.print(Text(inert(incomplete_text(line)), style="bold red"))
    for row in analysis.anomalies.itertuples(index=False):
        console.print(Text(inert(f"  anomaly: {row.file}: {row.kind} x{row.count}: {row.detail}"), style="yellow"))
    truncated = int(inputs["truncated_packets"].sum())
    if truncated:
        console.print(Text(f"  {truncated:,} packets were cut short by the snaplen; "
                           "statistics use the captured bytes", style="yellow"))

    _render_findings(analysis.findings, console)
    _render_secrets(analysis, console)
    _render_events(analysis.events, console)
    flows = summary_flows(analysis.flows, show_all)
    scope = "all flows" if show_all else "watched flows"
    if flows.empty:
        hint = "" if show_all else " (use --all to list every flow)"
        console.print(Text(f"No {scope}{hint}.", style="bold"))
        return
    counts = flows["verdict"].value_counts()
    line = Text(f"{scope}: ")
    for verdict in VERDICTS:
        if counts.get(verdict, 0):
            line.append(f"{counts[verdict]} {verdict}  ", style=VERDICT_STYLE[verdict])
    line.rstrip()
    console.print(line)

    shown = flows.head(limit)
    if console.width >= WIDE:
        console.print(_table(shown))
    else:  # narrow terminal: one line of facts per flow, the reason indented below
        for row in shown.itertuples(index=False):
            verdict = str(row.verdict)
            console.print(Text.assemble(
                (f"{verdict:<10}", VERDICT_STYLE[verdict]), inert(f" {row.confidence:.2f}  {row.watch}  "),
                _flow_text(row), f"  {_bytes_text(row)}",
            ))
            _print_indented(console, Text(inert(row.reason), style="dim"), 4)
    if len(flows) > limit:
        console.print(Text(f"... {len(flows) - limit} more; raise --limit or see --json/--csv", style="dim"))
