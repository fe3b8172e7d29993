"""Findings on the real captures: the right rules fire, with numbers and fixes."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pandas as pd
import pytest

import inspector
from inspector.findings.engine import at_or_above
from inspector.findings.rules import RULES
from inspector.schema import FINDING_COLUMNS, RISKS, SEVERITIES

CAPTURES = Path(__file__).resolve().parents[1] / "captures"

# What a reviewer must be told about each real capture (rule ids). The guests
# of the migration captures hold config text with credentials in their RAM
# (see captures/make_captures.py), which the secret scan finds when the
# migration is in clear and uncompressed.
EXPECTED = {
    "qemu-plain.pcap.gz": {"plaintext-migration", "secrets-in-cleartext"},
    "qemu-plain-mtu1500.pcap.gz": {"plaintext-migration", "secrets-in-cleartext"},
    "qemu-xbzrle-running.pcap.gz": {"plaintext-migration", "secrets-in-cleartext"},
    "qemu-multifd-none.pcap.gz": {"plaintext-migration", "secrets-in-cleartext"},
    "qemu-multifd-zlib.pcap.gz": {"compressed-cleartext-migration"},
    "qemu-multifd-zstd.pcap.gz": {"compressed-cleartext-migration"},
    "qemu-nbd-plain.pcap.gz": {"plaintext-migration", "nbd-disk-in-clear", "secrets-in-cleartext"},
    "qemu-nbd-tls.pcap.gz": {"tls-protected-migration"},
    "qemu-tls.pcap.gz": {"tls-protected-migration"},
    "qemu-tls-mtu1500.pcap.gz": {"tls-protected-migration"},
    "qemu-ssh-tunnel.pcap.gz": {"ssh-tunnelled-migration"},
    "libvirt-tunnelled-tcp.pcap.gz": {"libvirt-tunnel-plain-tcp", "plain-libvirt-rpc", "secrets-in-cleartext"},
    "libvirt-tunnelled-tls.pcap.gz": {"tls-tunnelled-migration"},
    "http-api.pcap": {"api-credentials-in-clear"},
    "https-api.pcap.gz": set(),
    "ssh-bulk.pcap.gz": set(),
}


@cache
def analysed(name: str, internal_nets: tuple[str, ...] = ()) -> inspector.Analysis:
    return inspector.analyze(CAPTURES / name, internal_nets=internal_nets)


def test_every_capture_is_listed():
    shipped = {p.name for p in CAPTURES.glob("*.pcap*")}
    assert shipped == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_findings_of_real_captures(name):
    findings = analysed(name).findings
    assert set(findings["rule"]) == EXPECTED[name], findings[["rule", "summary"]].to_string()
    assert list(findings.columns) == list(FINDING_COLUMNS)
    assert list(findings["finding"]) == [f"F{i}" for i in range(1, len(findings) + 1)]
    ranks = findings["severity"].astype(str).map(SEVERITIES.index).tolist()
    assert ranks == sorted(ranks), "most severe first"
    for row in findings.itertuples():
        assert row.summary and row.evidence and row.remediation and row.references
        assert set(row.risks) <= set(RISKS)
        assert (str(row.severity) == "info") == (row.risks == [])
        uids = set(analysed(name).flows["uid"])
        assert set(row.uids) <= uids


def test_plaintext_migration_counts_what_was_exposed():
    result = analysed("qemu-nbd-plain.pcap.gz")
    event = result.events.iloc[0]
    migration = result.findings.set_index("rule").loc["plaintext-migration"]
    assert migration.bytes_exposed == event.ram_bytes_clear > 1_000_000  # the disk is the NBD finding's
    assert migration.events == [event.event]
    assert f"up to {event.ram_bytes_clear // 4096:,} 4 KiB pages" in migration.summary
    assert "PAGE records" in migration.evidence and "machine pc-i440fx-7.2" in migration.evidence
    assert "live_migration_with_native_tls = true" in migration.remediation
    assert "live_migration_scheme = tls" in migration.remediation and "OSSN-0089" in migration.references
    assert "49152-49261" in migration.remediation
    disk = result.findings.set_index("rule").loc["nbd-disk-in-clear"]
    assert disk.severity == "critical" and "STARTTLS not requested" in disk.evidence
    assert disk.bytes_exposed == event.disk_bytes_clear


def test_tunnel_over_plain_tcp_is_not_called_encrypted():
    findings = analysed("libvirt-tunnelled-tcp.pcap.gz").findings.set_index("rule")
    tunnel = findings.loc["libvirt-tunnel-plain-tcp"]
    assert tunnel.severity == "high" and tunnel.bytes_exposed > 1_000_000
    rpc = findings.loc["plain-libvirt-rpc"]
    assert "OSSN-0007" in rpc.references and "without credentials" in rpc.evidence
    assert "listen_tcp = 0" in rpc.remediation


def test_protected_migrations_expose_nothing():
    for name in ("qemu-tls.pcap.gz", "qemu-ssh-tunnel.pcap.gz", "libvirt-tunnelled-tls.pcap.gz"):
        findings = analysed(name).findings
        assert (findings["severity"] == "info").all() and (findings["bytes_exposed"] == 0).all(), name
    ssh = analysed("qemu-ssh-tunnel.pcap.gz").findings.iloc[0]
    assert "loopback legs inside the hosts" in ssh.summary


def test_api_credentials_are_named_but_not_shown():
    finding = analysed("http-api.pcap").findings.iloc[0]
    assert "X-Auth-Token header" in finding.evidence and "password in JSON body" in finding.evidence
    flows = analysed("http-api.pcap").flows
    assert len(finding.uids) == len(flows) == 3


def test_migration_on_the_named_internal_api_network():
    name = "qemu-plain-mtu1500.pcap.gz"
    assert "migration-on-api-network" not in set(analysed(name).findings["rule"])
    findings = analysed(name, ("10.47.0.0/24",)).findings
    shared = findings.set_index("rule").loc["migration-on-api-network"]
    assert shared.severity == "medium" and "10.47.0.0/24" in shared.summary
    assert "migration-on-api-network" not in set(analysed(name, ("10.99.0.0/16",)).findings["rule"])


def test_fail_on_threshold():
    findings = analysed("qemu-nbd-plain.pcap.gz").findings
    assert len(at_or_above(findings, "critical")) == 2
    assert len(at_or_above(analysed("qemu-tls.pcap.gz").findings, "low")) == 0
    assert len(at_or_above(analysed("qemu-tls.pcap.gz").findings, "info")) == 1


def test_rules_are_data():
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids))
    for rule in RULES:
        assert rule.severity in SEVERITIES and set(rule.risks) <= set(RISKS)
        assert rule.remediation and rule.references and callable(rule.matches)


def test_no_events_no_flows_no_findings(tmp_path):
    result = inspector.analyze(Path(__file__).parent / "data" / "lo_mixed.pcap")
    assert isinstance(result.findings, pd.DataFrame)
    assert list(result.findings.columns) == list(FINDING_COLUMNS)
