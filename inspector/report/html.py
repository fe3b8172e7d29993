"""The HTML report: one self-contained file a reviewer can archive or mail.

Inline CSS, plots as ``data:`` PNG images, no JavaScript and nothing
fetched; a Content-Security-Policy meta tag forbids scripts and remote
loads as defence in depth. Escaping is what keeps a capture from writing
markup: the page is built only with :func:`el`, which escapes every child
and attribute that is not ``Html`` it made itself, so no string from the
wire or the input (hosts, reasons, SNI, banners, file names) reaches the
page raw. Secret excerpts are shown only with ``show_payload``.

Example::

    result = inspector.analyze("captures/qemu-plain.pcap.gz")
    with open("report.html", "w", encoding="utf-8") as handle:
        write_html(result, handle)
"""

from __future__ import annotations

import html
import math
from collections.abc import Collection, Iterable, Sequence
from typing import IO

import pandas as pd

from inspector.analysis import Analysis
from inspector.report.incomplete import incomplete_captures, incomplete_text
from inspector.capture.constants import LINKTYPE_NAMES
from inspector.schema import CLEAR, SEVERITIES, VERDICTS
from inspector.report import plots
from inspector.report.json_report import watchlist_dict
from inspector.report.payload import hexdump
from inspector.report.secret_digest import distinct_secrets
from inspector.report.terminal import summary_flows
from inspector.units import flow_endpoints, human_bytes

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
MAX_FLOW_ROWS = 500  # a huge capture keeps its full flows in --json / --csv
MAX_EVIDENCE_PER_FLOW = 4
MAX_SUMMARY_FINDINGS = 12  # then "N more", linking to the full list
MAX_EXCERPT_BYTES = 512
PLOT_DPI = 100
VOID_ELEMENTS = frozenset({"meta", "img"})
SEVERITY_COLOURS = {"critical": "#7f1d1d", "high": "#c62828", "medium": "#e65100", "low": "#9a7d0a",
                    "info": "#1565c0"}
SECTIONS = (("summary", "Summary"), ("findings", "Findings"), ("configuration", "Configuration"),
            ("events", "Migration events"),
            ("secrets", "Secrets in cleartext"), ("flows", "Watched flows"), ("plots", "Plots"),
            ("anomalies", "Input anomalies"))


class Html(str):
    """Markup made by this module; any other string is text and gets escaped."""


def _missing(value: object) -> bool:
    """None, <NA>, NaN or NaT: shown as nothing."""
    return value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))


def text(value: object) -> Html:
    """``value`` escaped for an element's content (missing values become empty)."""
    if isinstance(value, Html):
        return value
    return Html("" if _missing(value) else html.escape(str(value), quote=True))


def join(children: Iterable[object]) -> Html:
    """Children escaped and concatenated; lists and generators are flattened."""
    return Html("".join(join(child) if _is_sequence(child) else text(child) for child in children))


def _is_sequence(value: object) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes))


def el(tag: str, *children: object, **attributes: object) -> Html:
    """One element. ``class_`` is ``class``, ``http_equiv`` is ``http-equiv``;
    attributes that are None are left out. Every value is escaped."""
    attrs = "".join(f' {name.rstrip("_").replace("_", "-")}="{html.escape(str(value), quote=True)}"'
                    for name, value in attributes.items() if value is not None)
    if tag in VOID_ELEMENTS:
        return Html(f"<{tag}{attrs}>")
    return Html(f"<{tag}{attrs}>{join(children)}</{tag}>")


def table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, numeric: Collection[int] = (),
          class_: str | None = None) -> Html:
    """A table; the columns in ``numeric`` are right-aligned."""
    def cell(tag: str, i: int, value: object) -> Html:
        return el(tag, value, class_="num" if i in numeric else None)

    return el("div", el("table",
                        el("thead", el("tr", (cell("th", i, h) for i, h in enumerate(headers)))),
                        el("tbody", (el("tr", (cell("td", i, v) for i, v in enumerate(row))) for row in rows)),
                        class_=class_), class_="scroll")


def badge(label: object, kind: str) -> Html:
    """A coloured label; ``kind`` (a verdict or a severity) picks the colour."""
    return el("span", label, class_=f"badge {kind}")


def _section(anchor: str, *content: object) -> Html:
    heading = dict(SECTIONS)[anchor]
    return el("section", el("h2", heading), content, id=anchor)


def _plural(n: int, word: str, words: str | None = None) -> str:
    return f"{n} {word if n == 1 else words or word + 's'}"


def _lines(value: object, sep: str = "\n") -> list[str]:
    """A multi-valued text column (newline- or comma-separated) as a list."""
    if _missing(value) or not str(value).strip():
        return []
    return [part.strip() for part in str(value).split(sep) if part.strip()]


TOWARDS = "\u00a0\u2192 "  # 'a → b', wrapping after the arrow only


def _towards(source: object, destination: object) -> str:
    return f"{source}{TOWARDS}{destination}"


def _when(ts: pd.Timestamp) -> str:
    return "" if _missing(ts) else f"{ts:%Y-%m-%d %H:%M:%S} UTC"


# ------------------------------------------------------------------ document


def write_html(result: Analysis, handle: IO[str], *, show_payload: bool = False, title: str | None = None) -> None:
    """Write the report of ``result`` as one HTML5 document.

    ``show_payload`` adds hex dumps of the secrets' payload excerpts
    (redacted by default: the report may travel further than the capture).
    """
    title = title or _default_title(result)
    digest = distinct_secrets(result.secrets_raw(), result.flows)
    configuration = configuration_section(result.config) if result.config is not None else ""
    main = el("main", _summary(result), _findings(result, len(digest)), configuration, _events(result.events),
              _secrets(result, digest, show_payload), _flows(result), _plots(result), _anomalies(result))
    body = el("body", _header(result, title), _navigation(omit=() if configuration else ("configuration",)), main,
              _footer())
    handle.write("<!DOCTYPE html>\n")
    handle.write(el("html", _head(title), body, lang="en"))
    handle.write("\n")


def _default_title(result: Analysis) -> str:
    files = result.inputs["file"].tolist()
    names = ", ".join(str(f).rsplit("/", 1)[-1] for f in files[:3]) + (" ..." if len(files) > 3 else "")
    return f"inspector report: {names}" if names else "inspector report"


def _head(title: str) -> Html:
    return el("head",
              el("meta", charset="utf-8"),
              el("meta", http_equiv="Content-Security-Policy", content=CSP),
              el("meta", name="viewport", content="width=device-width, initial-scale=1"),
              el("title", title),
              el("style", Html(_css())))


def _css() -> str:
    """The stylesheet; badge colours come from the plots' palette so both agree."""
    colours = {**plots.VERDICT_COLOURS, **SEVERITY_COLOURS}
    badges = "\n".join(f".badge.{kind} {{ background: {colour}; }}" for kind, colour in colours.items())
    severities = "\n".join(f".finding.{kind} {{ border-left-color: {colour}; }}"
                           for kind, colour in SEVERITY_COLOURS.items())
    return STYLE + badges + "\n" + severities + "\n"


STYLE = """
:root { color-scheme: light; }
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif;
       color: #1f2328; background: #f6f8fa; margin: 0; }
header, nav, main, footer { max-width: 1240px; margin: 0 auto; padding: 0 24px; }
header { padding-top: 20px; }
h1 { font-size: 1.6em; margin: 0 0 4px; }
h2 { font-size: 1.3em; border-bottom: 2px solid #d0d7de; padding-bottom: 4px; margin-top: 0; }
h3 { font-size: 1.05em; margin: 0 0 6px; }
h4 { font-size: 0.95em; margin: 10px 0 4px; }
section { background: #fff; border: 1px solid #d0d7de; border-radius: 6px; padding: 16px 20px; margin: 16px 0; }
.meta { color: #57606a; margin: 0 0 12px; }
nav { font-size: 0.9em; }
nav a { margin-right: 14px; color: #0969da; text-decoration: none; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 0.86em; margin: 6px 0; }
th, td { border: 1px solid #d0d7de; padding: 4px 7px; text-align: left; vertical-align: top; }
th { background: #eaeef2; }
tbody tr:nth-child(even) { background: #f6f8fa; }
td { overflow-wrap: break-word; }
table.flows td:nth-child(8) { overflow-wrap: anywhere; min-width: 9em; }
table.flows td:nth-child(9) { overflow-wrap: anywhere; min-width: 20em; }
.num { text-align: right; white-space: nowrap; }
code, pre, .mono { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.92em; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; padding: 6px 8px; margin: 0; white-space: pre;
      overflow-x: auto; }
.badge { display: inline-block; color: #fff; border-radius: 10px; padding: 1px 9px; font-size: 0.85em;
         font-weight: 600; white-space: nowrap; }
.badges .badge { margin-right: 6px; }
.muted { color: #8c959f; }
.badge.muted { background: #d0d7de; color: #57606a; }
.verdict { font-size: 1.1em; font-weight: 600; }
.note { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: 6px 10px; }
.incomplete { background: #ffebe9; border: 1px solid #c62828; border-radius: 6px; padding: 6px 10px; color: #7f1d1d; }
.finding { border: 1px solid #d0d7de; border-left: 6px solid #8c959f; border-radius: 4px; padding: 10px 14px;
           margin: 12px 0; }
.finding dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 12px; margin: 6px 0; }
.finding dt { color: #57606a; }
.finding dd { margin: 0; overflow-wrap: anywhere; }
ul.evidence { margin: 4px 0 0; padding-left: 18px; font-size: 0.92em; color: #424a53; }
figure { margin: 12px 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #d0d7de; background: #fff; }
figcaption { color: #57606a; font-size: 0.9em; }
.pair { display: flex; flex-wrap: wrap; gap: 12px; }
.pair figure { flex: 1 1 420px; }
footer { color: #57606a; font-size: 0.85em; padding-bottom: 24px; }
@media print {
  body { background: #fff; font-size: 11px; }
  nav { display: none; }
  header, main, footer { max-width: none; padding: 0; }
  section { border: none; padding: 0; margin: 12px 0; }
  tr, .finding, figure { break-inside: avoid; }
  .scroll { overflow: visible; }
  .badge { border: 1px solid #000; print-color-adjust: exact; -webkit-print-color-adjust: exact; }
}
"""


def _navigation(omit: Collection[str] = ()) -> Html:
    return el("nav", (el("a", heading, href=f"#{anchor}") for anchor, heading in SECTIONS if anchor not in omit))


def _footer() -> Html:
    return el("footer", el("p", "Self-contained report: no scripts, no external resources. Full tables: ",
                           el("code", "inspector analyze --json"), "."))


# ------------------------------------------------------------------ header


def _header(result: Analysis, title: str) -> Html:
    from inspector import __version__

    inputs = result.inputs
    totals = (f"{_plural(len(inputs), 'file')}, {int(inputs['packets'].sum()):,} packets, "
              f"{human_bytes(int(inputs['wire_bytes'].sum()))}, {_plural(len(result.flows), 'flow')}, "
              f"{len(result.watched):,} watched, {_plural(int(inputs['anomalies'].sum()), 'anomaly', 'anomalies')}")
    rows = ([row.file, row.format, _linktype_names(row.linktypes), f"{row.packets:,}", human_bytes(row.wire_bytes),
             f"{row.truncated_packets:,}", f"{row.anomalies:,}"] for row in inputs.itertuples(index=False))
    return el("header",
              el("h1", title),
              el("p", f"inspector {__version__}, generated {_when(pd.Timestamp.now(tz='UTC'))}",
                 class_="meta"),
              el("p", totals),
              *(el("p", el("strong", incomplete_text(line)), class_="incomplete")
                for line in incomplete_captures(result)),
              table(["file", "format", "link types", "packets", "bytes", "truncated", "anomalies"], rows,
                    numeric={3, 4, 5, 6}),
              _watchlist(result))


def _linktype_names(linktypes: object) -> str:
    """'1,113' -> 'Ethernet (1), Linux cooked (SLL) (113)': a reviewer knows the names, not the numbers."""
    names = []
    for number in _lines(linktypes, ","):
        name = LINKTYPE_NAMES.get(int(number)) if number.isdigit() else None
        names.append(f"{name} ({number})" if name else number)
    return ", ".join(names)


def _watchlist(result: Analysis) -> Html:
    watch = watchlist_dict(result.watch)
    nets = ", ".join(watch["internal_nets"]) or "none named (use --internal-net)"
    return el("p", el("strong", "Watchlist: "),
              f"migration ports {', '.join(watch['migration_ports'])}; "
              f"libvirtd {', '.join(map(str, watch['libvirtd_ports']))}; "
              f"SSH {', '.join(map(str, watch['ssh_ports']))}; internal API networks {nets}.", class_="meta")


# ------------------------------------------------------------------ summary


def _by_severity(findings: pd.DataFrame) -> pd.DataFrame:
    """Findings most severe first (stable: ids keep their order within a severity)."""
    rank = findings["severity"].astype(str).map({s: i for i, s in enumerate(SEVERITIES)})
    return findings.assign(_rank=rank).sort_values("_rank", kind="stable").drop(columns="_rank")


def _summary(result: Analysis) -> Html:
    findings = _by_severity(result.findings)
    counts = findings["severity"].astype(str).value_counts()
    severity_badges = el("p", (badge(f"{counts.get(s, 0)} {s}", s if counts.get(s, 0) else "muted")
                               for s in SEVERITIES), class_="badges")
    verdicts = result.watched["verdict"].astype(str).value_counts()
    verdict_badges = el("p", "Watched flows: ", (badge(f"{verdicts[v]} {v}", v) for v in VERDICTS if verdicts.get(v)),
                        class_="badges")
    return _section("summary", el("p", _migration_verdict(result.events), " ", _flows_verdict(result.watched),
                                  class_="verdict"),
                    severity_badges, _summary_findings(findings), verdict_badges)


def _summary_findings(findings: pd.DataFrame) -> Html:
    """Every finding above info, most severe first (the first MAX_SUMMARY_FINDINGS
    and how many more, linked to the full list); the protections when nothing is above info."""
    if findings.empty:
        return el("p", "No findings.", class_="muted")
    risky = findings[findings["severity"].astype(str) != "info"]
    listed = risky if not risky.empty else findings
    items = [el("li", badge(f.severity, str(f.severity)), " ", el("a", el("strong", f.finding), href=f"#{f.finding}"),
                " ", f.title)
             for f in listed.head(MAX_SUMMARY_FINDINGS).itertuples(index=False)]
    if len(listed) > MAX_SUMMARY_FINDINGS:
        items.append(el("li", el("a", f"{len(listed) - MAX_SUMMARY_FINDINGS} more", href="#findings"),
                        " in the full list of findings"))
    return el("ul", items, class_="summary-findings")


def _migration_verdict(events: pd.DataFrame) -> str:
    """One sentence: how many migrations crossed in clear and how much guest data."""
    if events.empty:
        return "No live migration was seen in the capture."
    clear = events[events["ram_bytes_clear"] + events["disk_bytes_clear"] > 0]
    if clear.empty:
        protections = ", ".join(sorted(set(events["protection"].astype(str))))
        return f"All {_plural(len(events), 'migration')} were protected ({protections}): no guest data crossed in clear."
    disk = int(clear["disk_bytes_clear"].sum())
    exposed = f"{human_bytes(int(clear['ram_bytes_clear'].sum()))} of guest RAM" + (
        f" and {human_bytes(disk)} of disk" if disk else "")
    return f"{len(clear)} of {_plural(len(events), 'migration')} crossed the network in clear: {exposed} exposed."


def _flows_verdict(watched: pd.DataFrame) -> str:
    if watched.empty:
        return "No flow matched the watchlist."
    clear = watched[watched["verdict"].astype(str).isin(CLEAR)]
    moved = int((clear["orig_bytes"] + clear["resp_bytes"]).sum())
    return (f"{len(clear)} of {_plural(len(watched), 'watched flow')} carried cleartext "
            f"(plaintext or compressed): {human_bytes(moved)}.")


# ------------------------------------------------------------------ findings


SECRETS_RULE = "secrets-in-cleartext"


def _findings(result: Analysis, distinct: int) -> Html:
    findings = result.findings
    if findings.empty:
        return _section("findings", el("p", "No findings.", class_="muted"))
    clear = result.flows[result.flows["verdict"].astype(str).isin(CLEAR)]
    clear_bytes = dict(zip(clear["uid"].astype(str), clear["orig_bytes"] + clear["resp_bytes"]))
    return _section("findings", (_finding(f, clear_bytes, distinct)
                                 for f in _by_severity(findings).itertuples(index=False)))


def _exposed(f, clear_bytes: dict[str, int]) -> str:
    """The finding's own count of guest bytes exposed or, when it has none
    (credentials, RPC), the bytes of its flows that crossed in clear."""
    if f.bytes_exposed:
        return human_bytes(int(f.bytes_exposed))
    carried = [clear_bytes[uid] for uid in f.uids if uid in clear_bytes]
    if not carried:
        return "none"
    return f"{human_bytes(int(sum(carried)))}: the {_plural(len(carried), 'flow')} carrying it, readable in clear"


def _finding(f, clear_bytes: dict[str, int], distinct: int) -> Html:
    severity = str(f.severity)
    secrets = (el("a", f"{_plural(distinct, 'distinct secret')} to rotate", href="#secrets")
               if f.rule == SECRETS_RULE and distinct else "")
    facts = [("rule", el("code", f.rule)), ("risks", ", ".join(f.risks)),
             ("bytes exposed", _exposed(f, clear_bytes)), ("secrets", secrets),
             ("flows", el("span", ", ".join(f.uids), class_="mono")),
             ("events", ", ".join(f.events)),
             ("references", ", ".join(_lines(f.references, ",")))]
    return el("article",
              el("h3", badge(severity, severity), " ", f.finding, ": ", f.title),
              el("p", _code_spans(f.summary)),
              el("dl", ((el("dt", name), el("dd", value)) for name, value in facts if value)),
              el("h4", "Evidence"),
              el("ul", (el("li", el("code", line)) for line in _lines(f.evidence))),
              el("h4", "Remediation"),
              el("ol", (el("li", _code_spans(step)) for step in _lines(f.remediation))),
              class_=f"finding {severity}", id=f.finding)


def _code_spans(value: object) -> list[object]:
    """Rule texts mark settings and paths with backticks: those become ``<code>``
    (escaped like any text); an odd number of backticks is left as written."""
    parts = str(value).split("`")
    if len(parts) % 2 == 0:
        return [value]
    return [el("code", part) if i % 2 else part for i, part in enumerate(parts) if part]


# ------------------------------------------------------------------ events


def _events(events: pd.DataFrame) -> Html:
    if events.empty:
        return _section("events", el("p", "No migration events.", class_="muted"))
    rows = ([e.event, _towards(e.src_h, e.dst_h), _when(e.start), _when(e.end),
             badge(e.protection, plots.PROTECTION_SHADE.get(str(e.protection), "unknown")),
             human_bytes(e.ram_bytes), human_bytes(e.ram_bytes_clear), human_bytes(e.disk_bytes),
             human_bytes(e.disk_bytes_clear), e.flows, ", ".join(e.channels),
             el("span", ", ".join(e.uids), class_="mono")]
            for e in events.itertuples(index=False))
    return _section("events", table(["event", "source → destination", "start", "end", "protection", "RAM",
                                     "RAM in clear", "disk", "disk in clear", "flows", "channels", "flow uids"],
                                    rows, numeric={5, 6, 7, 8, 9}))


# ------------------------------------------------------------------ secrets


def _excerpt_dump(excerpt: object) -> str:
    """Hex and ASCII of at most MAX_EXCERPT_BYTES of an excerpt (text: escaped like any other)."""
    data = _as_bytes(excerpt)
    more = f"\n... {len(data) - MAX_EXCERPT_BYTES} more bytes" if len(data) > MAX_EXCERPT_BYTES else ""
    return hexdump(data[:MAX_EXCERPT_BYTES]) + more


def _secrets(result: Analysis, digest: pd.DataFrame, show_payload: bool) -> Html:
    secrets = result.secrets_raw() if show_payload else result.secrets
    if secrets.empty:
        return _section("secrets", el("p", "No secrets found in cleartext payload.", class_="muted"))
    note = (el("p", el("strong", "Payload excerpts are shown (--show-payload): "),
               "this report contains the secrets themselves. Handle it like the capture.", class_="note")
            if show_payload else
            el("p", el("strong", "Payload excerpts are redacted: "),
               "only what matched is named. Run with ", el("code", "--show-payload"), " to reveal them.",
               class_="note"))
    flows = _flow_names(result.flows[result.flows["uid"].isin(secrets["uid"])])
    headers = ["kind", "flow", "endpoints", "direction", "time", "offset", "what matched"]
    rows = ([s.kind, el("span", s.uid, class_="mono"), flows.get(s.uid, ""), s.direction, _when(s.ts),
             s.offset if s.offset >= 0 else "unknown", s.label]
            + ([el("pre", _excerpt_dump(s.excerpt))] if show_payload else [])
            for s in secrets.itertuples(index=False))
    return _section("secrets", note, _distinct(digest, len(secrets), int(result.secret_counts["count"].sum())),
                    el("h3", "Matches"),
                    table(headers + (["excerpt"] if show_payload else []), rows, numeric={5}))


def _distinct(digest: pd.DataFrame, listed: int, found: int) -> Html:
    """The credentials to rotate: one row per distinct secret, kind and host pair."""
    rows = ([f"S{i}", d.kind, d.hosts, d.what, d.occurrences, d.flows, _when(d.first_seen)]
            for i, d in enumerate(digest.itertuples(index=False), start=1))
    return [el("h3", f"{_plural(len(digest), 'distinct secret')} to rotate"),
            el("p", f"{_plural(found, 'match', 'matches')} in total; the "
                    f"{_plural(listed, 'listed match', 'listed matches')} hold {_plural(len(digest), 'distinct secret')} "
                    "(the same value on the same host pair counts once). Shown redacted: a URL keeps its scheme "
                    "and host, a key its name; values become their length."),
            table(["secret", "kind", "hosts", "what (redacted)", "matches", "flows", "first seen"], rows,
                  numeric={4, 5})]


def _as_bytes(excerpt: object) -> bytes:
    if isinstance(excerpt, (bytes, bytearray, memoryview)):
        return bytes(excerpt)
    return b"" if _missing(excerpt) else str(excerpt).encode("utf-8", "replace")


def _flow_names(flows: pd.DataFrame) -> dict[str, str]:
    """uid -> 'originator → responder proto'."""
    return {str(f.uid): f"{flow_endpoints(f, TOWARDS)} {f.proto}"
            for f in flows.itertuples(index=False)}


# ------------------------------------------------------------------ flows


def _flows(result: Analysis) -> Html:
    flows = summary_flows(result.flows, show_all=False)
    if flows.empty:
        return _section("flows", el("p", f"No flow matched the watchlist ({_plural(len(result.flows), 'flow')} "
                                         "in total; see --json for all of them).", class_="muted"))
    shown = flows.head(MAX_FLOW_ROWS)
    evidence = _evidence_lines(result.evidence, shown)
    rows = ([el("span", f.uid, class_="mono"), flow_endpoints(f, TOWARDS),
             f.watch, f"{f.proto} {f.protocol}" if _present(f.protocol) else f.proto, badge(f.verdict, str(f.verdict)),
             f"{f.confidence:.2f}", f"{human_bytes(f.orig_bytes)} / {human_bytes(f.resp_bytes)}",
             _details(f), [f.reason, _evidence_list(evidence.get(f.uid, []))]]
            for f in shown.itertuples(index=False))
    more = (el("p", f"{len(flows) - MAX_FLOW_ROWS:,} more watched flows are not listed here; "
                    "see --json or --csv for every flow.", class_="note")
            if len(flows) > MAX_FLOW_ROWS else "")
    return _section("flows", el("p", "Most exposed first, then largest. Evidence lines are what the protocol "
                                     "detectors saw: framing only, never payload."),
                    table(["flow", "originator → responder", "role", "protocol", "verdict", "conf",
                           "bytes orig / resp", "details", "reason and evidence"], rows, numeric={5, 6},
                          class_="flows"),
                    more)


def _present(value: object) -> bool:
    return not _missing(value) and str(value) != ""


def _details(f) -> str:
    """Handshake facts and the migration event, '; '-separated."""
    facts = [("", f.tls_version), ("cipher", f.tls_cipher), ("SNI", f.tls_sni), ("SSH client", f.ssh_client),
             ("SSH server", f.ssh_server), ("SSH cipher", f.ssh_cipher), ("event", f.event)]
    return "; ".join(f"{name} {value}".strip() for name, value in facts if _present(value))


def _evidence_lines(evidence: pd.DataFrame, flows: pd.DataFrame) -> dict[str, list[str]]:
    """uid -> 'direction: protocol: evidence' lines of ``flows`` that their reason does not already say."""
    reasons = dict(zip(flows["uid"].astype(str), flows["reason"].astype(str)))
    lines: dict[str, list[str]] = {}
    for row in evidence[evidence["uid"].astype(str).isin(reasons)].itertuples(index=False):
        line = f"{row.direction}: {row.protocol}: {row.evidence}"
        own = lines.setdefault(str(row.uid), [])
        if row.evidence not in reasons[str(row.uid)] and line not in own and len(own) < MAX_EVIDENCE_PER_FLOW:
            own.append(line)
    return lines


def _evidence_list(lines: list[str]) -> Html:
    return el("ul", (el("li", line) for line in lines), class_="evidence") if lines else Html("")


# ------------------------------------------------------------------ plots


def _figure(ax, caption: str) -> Html:
    png = plots.figure_png_base64(ax, dpi=PLOT_DPI)
    return el("figure", el("img", src=f"data:image/png;base64,{png}", alt=caption), el("figcaption", caption))


def _plots(result: Analysis) -> Html:
    watched = result.watched
    if watched.empty:
        return _section("plots", el("p", "No watched flows to plot.", class_="muted"))
    windows = plots.windows_with_verdicts(result.windows, watched)
    small = (5.0, 3.4)
    pair = [_figure(plots.bytes_by_verdict(watched, ax=plots.new_axes(small)),
                    "Payload bytes of the watched flows by verdict.")]
    if not result.events.empty:
        pair.append(_figure(plots.bytes_by_protection(result.events, ax=plots.new_axes(small)),
                            "RAM and disk bytes of the migration events by protection."))
    figures = [el("div", pair, class_="pair"),
               _figure(plots.flow_timeline(watched), "Watched flows from first to last packet, by verdict "
                                                     "(the largest 40 when there are more).")]
    if not windows.empty:
        figures.append(_figure(plots.entropy_vs_chi2(windows),
                               "Every analysed window of the watched flows (8 KiB head, then 64 KiB), coloured "
                               "by its flow's verdict. Ciphertext falls in the shaded band of uniform bytes; "
                               "compressed data has the same entropy but a larger chi-square."))
        notable = plots.notable_flows(watched)
        if not notable.empty:
            figures.append(_figure(plots.entropy_series(result.windows, notable),
                                   "Entropy of each window along the largest cleartext migration flows and the "
                                   "largest encrypted flow."))
            figures.append(_figure(plots.byte_histograms(result.byte_histograms, notable),
                                   "Byte values of the same flows, counted over the reassembled probe regions "
                                   "(16 KiB each at 1, 2, 4 MiB ...): ciphertext is flat at 1/256."))
    return _section("plots", figures)


# ------------------------------------------------------------------ anomalies


def _anomalies(result: Analysis) -> Html:
    anomalies = result.anomalies
    truncated = int(result.inputs["truncated_packets"].sum())
    cut = (el("p", f"{truncated:,} packets were cut short by the snaplen; statistics use the captured bytes.",
              class_="note") if truncated else "")
    if anomalies.empty:
        return _section("anomalies", cut, el("p", "No anomalies: every record of the inputs was read.",
                                              class_="muted"))
    rows = ([a.file, a.kind, f"{a.count:,}", a.detail] for a in anomalies.itertuples(index=False))
    return _section("anomalies", cut, table(["file", "kind", "count", "detail"], rows, numeric={2}))


# ------------------------------------------------------------------ configuration


def configuration_section(audit) -> Html:
    """The configuration audit (``inspector.config.ConfigAudit``): hosts, the
    audited settings and the files that could not be read; its findings are
    among the findings above."""
    hosts = audit.config_hosts
    host_rows = ([h.host, h.folder, ", ".join(h.addresses), h.protection, h.migration_ports]
                 for h in hosts.itertuples(index=False))
    settings = audit.config_settings
    setting_rows = ([s.host, s.kind, s.section, el("code", s.key), el("code", s.value), s.source, s.file]
                    for s in settings.itertuples(index=False))
    problems = audit.config_problems
    return _section("configuration",
                    el("p", f"{_plural(len(hosts), 'host')} audited, "
                            f"{_plural(int((audit.findings['severity'].astype(str) != 'info').sum()), 'finding')} "
                            "above info (listed with the findings, rules ", el("code", "config-*"),
                            "). Values are the effective ones; passwords, transport_url and connection strings are "
                            "never read into the report."),
                    table(["host", "folder", "addresses", "migration protection by configuration", "migration ports"],
                          host_rows),
                    el("h3", "Audited settings"),
                    table(["host", "kind", "section", "key", "value", "source", "file"], setting_rows),
                    (el("h3", "Files not read"),
                     table(["file", "problem"], ([p.file, p.problem] for p in problems.itertuples(index=False))))
                    if len(problems) else "")


def write_config_html(audit, handle: IO[str], *, title: str = "inspector configuration audit") -> None:
    """A report of a configuration audit alone (``inspector config-audit --html``)."""
    findings = _by_severity(audit.findings)
    counts = findings["severity"].astype(str).value_counts()
    badges = el("p", (badge(f"{counts.get(s, 0)} {s}", s if counts.get(s, 0) else "muted") for s in SEVERITIES),
                class_="badges")
    articles = ((_finding(f, {}, 0) for f in findings.itertuples(index=False)) if len(findings)
                else el("p", "No findings.", class_="muted"))
    main = el("main", _section("summary", badges, _summary_findings(findings)), _section("findings", articles),
              configuration_section(audit))
    from inspector import __version__

    header = el("header", el("h1", title),
                el("p", f"inspector {__version__}, generated {_when(pd.Timestamp.now(tz='UTC'))}", class_="meta"))
    nav = _navigation(omit=[a for a, _ in SECTIONS if a not in ("summary", "findings", "configuration")])
    handle.write("<!DOCTYPE html>\n")
    handle.write(el("html", _head(title), el("body", header, nav, main, _footer()), lang="en"))
    handle.write("\n")
