"""Columns of the findings and secrets tables (documented in docs/schema.md).

A finding is one rule that matched, with everything a reviewer hands over:
how bad (severity), which risks of the live-migration security guide it
realises, the proof (flows, events, byte counts, evidence lines) and the fix.
"""

from __future__ import annotations

SEVERITIES = ("critical", "high", "medium", "low", "info")
"""Most severe first; ``--fail-on`` compares on this order."""

RISKS = ("denial of service", "data leakage", "data manipulation", "code injection")
"""The risks of cleartext migration named by the OpenStack security guide."""

FINDING_COLUMNS: dict[str, tuple[str, str]] = {
    "finding": ("string", "finding id ('F' + number, most severe first)"),
    "rule": ("string", "id of the rule that matched, e.g. 'plaintext-migration' (see `inspector rules`)"),
    "severity": ("category", "critical, high, medium, low or info"),
    "title": ("string", "one-line statement of what is wrong (or, for info, what protects)"),
    "risks": ("string", "risks realised, comma-separated: denial of service, data leakage, data manipulation, code injection"),
    "summary": ("string", "one line with the numbers: flows, hosts, bytes and pages exposed"),
    "evidence": ("string", "proof, one line per flow or event (newline-separated); wire strings are escaped"),
    "hosts": ("string", "host pairs involved, 'src -> dst' comma-separated (what `inspector diff` matches on)"),
    "uids": ("string", "the flows' uids, comma-separated (joins flows.uid)"),
    "events": ("string", "migration event ids, comma-separated (joins events.event)"),
    "bytes_exposed": ("int64", "payload bytes that crossed in clear on the flows of this finding (0 if none)"),
    "remediation": ("string", "concrete fix: configuration options, commands, or firewall rules (newline-separated steps)"),
    "references": ("string", "advisories and documents, comma-separated (e.g. OSSN-0089)"),
}

SECRET_COLUMNS: dict[str, tuple[str, str]] = {
    "uid": ("string", "flow uid (joins flows.uid)"),
    "direction": ("string", "orig or resp"),
    "kind": ("string", "private-key, password, cloud-credential, token or basic-auth"),
    "ts": ("datetime64[ns, UTC]", "time of the packet that carried the match"),
    "offset": ("int64", "stream offset of the match in its direction (TCP), -1 when unknown"),
    "length": ("int64", "bytes matched"),
    "label": ("string", "what matched, without the secret: e.g. 'password = <12 bytes>'"),
    "excerpt": ("object", "bytes around the match (raw; reports show them only with --show-payload)"),
}

SECRET_COUNT_COLUMNS: dict[str, tuple[str, str]] = {
    "uid": ("string", "flow uid (joins flows.uid)"),
    "direction": ("string", "orig or resp"),
    "kind": SECRET_COLUMNS["kind"],
    "count": ("int64", "matches in this flow direction (exact; the secrets table keeps the first few)"),
}
"""Columns of ``Analysis.secret_counts``: every match counted, not only the rows kept."""
