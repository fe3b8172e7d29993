"""Run the rules over an analysis and build the findings table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd

from inspector.findings.facts import Facts
from inspector.findings.rules import RULES, Rule
from inspector.schema import FINDING_COLUMNS, SEVERITIES
from inspector.tables import table_of


def build_findings(facts: Facts, rules: tuple[Rule, ...] = RULES) -> pd.DataFrame:
    """One row per rule match, most severe first (then in rule order),
    numbered F1, F2, ... (see ``inspector.schema.FINDING_COLUMNS``)."""
    return findings_table(rules, facts, facts.host_pairs)


def findings_table(rules: tuple[Rule, ...], subject: Any,
                   host_pairs: Callable[[tuple[str, ...]], list[str]] = lambda _uids: []) -> pd.DataFrame:
    """The findings of ``rules`` over ``subject`` (``Facts`` of an analysis,
    a configuration ``Scope``): a match's ``hosts``, or else the host pairs
    of its flows."""
    rows = []
    for rule in sorted(rules, key=lambda r: SEVERITIES.index(r.severity)):
        for match in rule.matches(subject):
            rows.append({
                "finding": f"F{len(rows) + 1}", "rule": rule.id, "severity": rule.severity, "title": rule.title,
                "risks": list(rule.risks), "summary": match.summary,
                "evidence": "\n".join(match.evidence), "hosts": ", ".join(match.hosts or host_pairs(match.uids)),
                "uids": list(match.uids),
                "events": list(match.events), "bytes_exposed": int(match.bytes_exposed),
                "remediation": "\n".join(rule.remediation), "references": ", ".join(rule.references),
            })
    return table_of(rows, FINDING_COLUMNS)


def at_or_above(findings: pd.DataFrame, severity: str) -> pd.DataFrame:
    """Findings at least as severe as ``severity`` (for ``--fail-on``)."""
    return findings[findings["severity"] >= severity]
