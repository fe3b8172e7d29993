"""Migration events on the real captures: grouping, bytes moved, protection."""

from __future__ import annotations

from pathlib import Path

import pytest

import inspector

CAPTURES = Path(__file__).resolve().parents[1] / "captures"

# How each capture was made (captures/README.md) decides its protection.
EXPECTED = {
    "qemu-plain.pcap.gz": ("none", "main"),
    "qemu-plain-mtu1500.pcap.gz": ("none", "main"),
    "qemu-xbzrle-running.pcap.gz": ("none", "main"),
    "qemu-multifd-none.pcap.gz": ("none", "main, 2 multifd"),
    "qemu-multifd-zlib.pcap.gz": ("compressed only", "main, 2 multifd"),
    "qemu-multifd-zstd.pcap.gz": ("compressed only", "main, 2 multifd"),
    "qemu-nbd-plain.pcap.gz": ("none", "main, nbd"),
    "qemu-nbd-tls.pcap.gz": ("TLS", "tls-migration, nbd"),
    "qemu-tls.pcap.gz": ("TLS", "tls-migration"),
    "qemu-tls-mtu1500.pcap.gz": ("TLS", "tls-migration"),
    "qemu-ssh-tunnel.pcap.gz": ("SSH", "2 main, ssh"),
    "libvirt-tunnelled-tcp.pcap.gz": ("libvirt tunnel over plain TCP", "tunnel"),
    "libvirt-tunnelled-tls.pcap.gz": ("libvirt tunnel over TLS", "tunnel-tls"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_one_event_per_migration_capture(name):
    result = inspector.analyze(CAPTURES / name)
    assert len(result.events) == 1, result.events
    event = result.events.iloc[0]
    protection, channels = EXPECTED[name]
    assert (event.protection, ", ".join(event.channels)) == (protection, channels)
    members = result.flows[result.flows.event == event.event]
    assert sorted(members.uid) == sorted(event.uids)
    assert event.start == members.ts.min()
    if protection in ("none", "compressed only", "libvirt tunnel over plain TCP"):
        assert event.ram_bytes_clear == event.ram_bytes > 0
    if protection in ("TLS", "libvirt tunnel over TLS"):
        assert event.ram_bytes_clear == 0 and event.disk_bytes_clear == 0
    if "nbd" in channels:
        assert event.disk_bytes > 1_000_000
        assert (event.disk_bytes_clear > 0) == (protection == "none")


@pytest.mark.parametrize("name", ["ssh-bulk.pcap.gz", "http-api.pcap", "https-api.pcap.gz"])
def test_no_event_without_migration_traffic(name):
    result = inspector.analyze(CAPTURES / name)
    assert result.events.empty and (result.flows.event == "").all()
    assert list(result.events.columns)[:3] == ["event", "src_h", "dst_h"]


def test_back_to_back_migrations_are_separate_events():
    result = inspector.analyze([CAPTURES / "qemu-plain.pcap.gz", CAPTURES / "qemu-tls.pcap.gz",
                                CAPTURES / "qemu-multifd-zstd.pcap.gz"])
    assert list(result.events.protection) == ["none", "TLS", "compressed only"]
    assert list(result.events.event) == ["M1", "M2", "M3"]


def test_events_in_json_and_summary(tmp_path):
    import json
    import subprocess
    import sys

    out = tmp_path / "r.json"
    run = subprocess.run([sys.executable, "-m", "inspector", "analyze", str(CAPTURES / "qemu-nbd-plain.pcap.gz"),
                          "--json", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "M1 127.0.0.1 -> 127.0.0.1" in run.stdout and "protection none" in run.stdout
    events = json.loads(out.read_text())["events"]
    assert events[0]["protection"] == "none" and len(events[0]["uids"]) == 2
