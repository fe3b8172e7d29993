"""The configuration audit: hosts found, files read, checks run, findings
made; optionally checked against what a capture analysis saw."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from inspector.config.discover import Problem, discover
from inspector.config.host import HostConfig, read_host
from inspector.config.rules import CONFIG_RULES, Scope
from inspector.findings.engine import findings_table
from inspector.findings.rules import Rule
from inspector.schema import CONFIG_SCHEMAS, FINDING_COLUMNS, SEVERITIES
from inspector.tables import table_of

if TYPE_CHECKING:
    from inspector.analysis import Analysis
    from inspector.watch import Watchlist


@dataclass
class ConfigAudit:
    """Result of :func:`audit_config`: ``config_hosts``, ``config_settings``,
    ``findings`` (the analysis' columns) and ``config_problems`` tables."""

    config_hosts: pd.DataFrame
    config_settings: pd.DataFrame
    findings: pd.DataFrame
    config_problems: pd.DataFrame
    hosts: list[HostConfig] = field(default_factory=list, repr=False)
    problems: list[Problem] = field(default_factory=list, repr=False)

    def __repr__(self) -> str:
        return (f"<ConfigAudit: {len(self.config_hosts)} host(s), {len(self.config_settings)} setting(s), "
                f"{len(self.findings)} finding(s), {len(self.config_problems)} problem(s)>")

    def with_analysis(self, analysis: Analysis, rules: tuple[Rule, ...] = CONFIG_RULES) -> ConfigAudit:
        """The same audit with its findings made again, cross-checked against ``analysis``."""
        return replace(self, findings=build_config_findings(Scope(self.hosts, self.problems, analysis), rules))

    def watchlist(self, base: Watchlist | None = None) -> Watchlist:
        """``base`` (default watchlist) with the configured migration port ranges
        added, and each compute host's nova ``my_ip`` as an internal API
        network when migrations go elsewhere (``live_migration_inbound_addr``)
        or, with no inbound address, over it."""
        from inspector.watch import Watchlist

        base = base or Watchlist.default()
        ports = set(base.migration_ports)
        nets = []
        for host in self.hosts:
            if host.qemu is not None:
                low, high = host.migration_ports
                ports.update(range(low, high + 1))
            my_ip = host.nova_value("DEFAULT", "my_ip") if host.has_nova else ""
            try:
                nets.append(str(ipaddress.ip_network(my_ip)))
            except ValueError:
                continue
        known = {str(n) for n in base.internal_nets}
        return replace(base, migration_ports=frozenset(ports)).with_internal_nets(
            [n for n in dict.fromkeys(nets) if n not in known])


def audit_config(paths: str | os.PathLike | Iterable[str | os.PathLike], analysis: Analysis | None = None,
                 rules: tuple[Rule, ...] = CONFIG_RULES) -> ConfigAudit:
    """Audit the configuration folders ``paths`` (each a host's /etc tree,
    sosreport or kolla/TripleO folder, or a folder of per-host folders);
    with ``analysis`` (from ``inspector.analyze``), also cross-check the
    configuration against the migrations the capture shows.

    A missing folder or an unreadable or malformed file never stops the
    audit: it is a row of ``config_problems`` and a ``config-file-problem``
    finding.

    Example::

        audit = inspector.audit_config(["sos/compute-0", "sos/compute-1"])
        audit.findings[["severity", "title", "hosts"]]
    """
    paths = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    found, problems = discover([Path(p) for p in paths])
    hosts = [read_host(files) for files in found]
    findings = build_config_findings(Scope(hosts, problems, analysis), rules)
    return ConfigAudit(
        config_hosts=table_of([{"host": h.name, "folder": h.folder, "addresses": h.addresses,
                                "protection": h.protection if h.has_nova else "",
                                "migration_ports": "{}-{}".format(*h.migration_ports) if h.qemu is not None else ""}
                               for h in hosts], CONFIG_SCHEMAS["config_hosts"]),
        config_settings=table_of([row for h in hosts for row in h.settings()], CONFIG_SCHEMAS["config_settings"]),
        findings=findings,
        config_problems=table_of([{"file": p.file, "problem": p.problem}
                                  for p in problems + [p for h in hosts for p in h.problems]],
                                 CONFIG_SCHEMAS["config_problems"]),
        hosts=hosts, problems=problems)


def build_config_findings(scope: Scope, rules: tuple[Rule, ...] = CONFIG_RULES) -> pd.DataFrame:
    """One finding row per rule match, most severe first, numbered F1, F2, ..."""
    return findings_table(rules, scope)


def add_to_analysis(analysis: Analysis, audit: ConfigAudit) -> Analysis:
    """``analysis`` with the audit's findings joined to its own (most severe
    first, renumbered F1, F2, ...) and the audit kept for the reports."""
    joined = pd.concat([analysis.findings, audit.findings], ignore_index=True)
    rank = joined["severity"].astype(str).map({s: i for i, s in enumerate(SEVERITIES)})
    joined = joined.assign(_rank=rank).sort_values("_rank", kind="stable").drop(columns="_rank")
    joined["finding"] = [f"F{i}" for i in range(1, len(joined) + 1)]
    analysis.findings = table_of(joined.to_dict("records"), FINDING_COLUMNS)
    analysis.config = audit
    return analysis
