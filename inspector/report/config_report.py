"""Reports of a configuration audit alone (``inspector config-audit``):
JSON, Markdown and the terminal summary; the HTML one is
``html.write_config_html``. Findings have the analysis' columns, so they
read, diff and ``--fail-on`` alike."""

from __future__ import annotations

from typing import IO, TYPE_CHECKING

import orjson
from rich.console import Console
from rich.text import Text

from inspector.report.json_report import (
    SCHEMA_VERSION,
    finding_records,
    records,
    severity_counts,
)
from inspector.report.markdown import _findings, _table
from inspector.report.terminal import _render_findings
from inspector.schema import CONFIG_SCHEMAS, SEVERITIES

if TYPE_CHECKING:
    from inspector.config import ConfigAudit


def config_document(audit: ConfigAudit) -> dict:
    from inspector import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "inspector", "version": __version__},
        "summary": {"findings": severity_counts(audit.findings), "hosts": len(audit.config_hosts),
                    "problems": len(audit.config_problems)},
        "findings": finding_records(audit.findings),
        "hosts": records(audit.config_hosts, CONFIG_SCHEMAS["config_hosts"]),
        "settings": records(audit.config_settings, CONFIG_SCHEMAS["config_settings"]),
        "problems": records(audit.config_problems, CONFIG_SCHEMAS["config_problems"]),
    }


def write_config_json(audit: ConfigAudit, handle: IO[str]) -> None:
    handle.write(orjson.dumps(config_document(audit), option=orjson.OPT_INDENT_2).decode())
    handle.write("\n")


def configuration_markdown(audit: ConfigAudit) -> list[str]:
    """The configuration section: hosts, audited settings, files not read."""
    out = ["## Configuration", ""]
    out += _table(["host", "folder", "addresses", "migration protection by configuration", "migration ports"],
                  [[h.host, h.folder, ", ".join(h.addresses), h.protection, h.migration_ports]
                   for h in audit.config_hosts.itertuples(index=False)])
    out += ["### Audited settings", ""]
    out += _table(["host", "kind", "section", "key", "value", "source", "file"],
                  [[s.host, s.kind, s.section, s.key, s.value, s.source, s.file]
                   for s in audit.config_settings.itertuples(index=False)])
    if len(audit.config_problems):
        out += ["### Files not read", ""]
        out += _table(["file", "problem"], [[p.file, p.problem] for p in audit.config_problems.itertuples()])
    return out


def write_config_markdown(audit: ConfigAudit, handle: IO[str]) -> None:
    counts = audit.findings["severity"].astype(str).value_counts()
    out = ["# inspector configuration audit", "",
           f"{len(audit.config_hosts)} host(s). Findings: "
           + (", ".join(f"**{counts[s]} {s}**" for s in SEVERITIES if counts.get(s, 0)) or "none") + ".", "",
           "## Findings", ""]
    out += _findings(audit.findings) if len(audit.findings) else ["No findings.", ""]
    out += configuration_markdown(audit)
    handle.write("\n".join(out))


def render_config(audit: ConfigAudit, console: Console) -> None:
    """The terminal summary: one line per host, then the findings."""
    for host in audit.config_hosts.itertuples(index=False):
        addresses = ", ".join(host.addresses) or "no address in the files"
        console.print(Text(f"{host.host}: migration {host.protection or 'not configured here'}, ports "
                           f"{host.migration_ports or '?'} ({addresses}) [{host.folder}]"))
    _render_findings(audit.findings, console)
