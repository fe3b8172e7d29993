"""Every output file: owner-only, never written through a planted symbolic
link, whole or not at all; evidence pcaps never overwrite each other.

Real captures through the real writers; the failures are real ones too (a
symlink planted by another user of a shared folder, a file size limit that
stops a write as a full disk would).
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import dpkt
import pytest

import inspector
from inspector.errors import InspectorError
from inspector.report.output import open_private

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "captures" / "http-api.pcap"
VICTIM_TEXT = b"a file the attacker wants overwritten\n"


def _victim(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.write_bytes(VICTIM_TEXT)
    return victim


def _cli(*args: str, limit_bytes: int | None = None) -> subprocess.CompletedProcess:
    def limit() -> None:  # a write past the limit fails with EFBIG, as one on a full disk fails with ENOSPC
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.run([sys.executable, "-m", "inspector", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, preexec_fn=limit if limit_bytes else None)


def _evidence_run(folder: Path, flows_of_run: int = 1):
    """The evidence writer over a real capture; flow 0 is alerted on, ends, and its id is reused
    by a later flow on the same 4-tuple (the attacker picked the source port) ``flows_of_run`` times."""
    from inspector.alerts import EvidencePcaps
    from inspector.capture.reader import CaptureReader
    from inspector.flows.table import FlowTable

    evidence = EvidencePcaps(folder)
    for _ in range(flows_of_run):
        table, reader = FlowTable(), CaptureReader(SOURCE)
        for batch in reader:
            flow_ids, _ = table.add(batch)
            evidence.keep(0, "credentials", "10.0.0.1:40000", "10.0.0.2:8774")
            evidence.write(reader, batch, flow_ids)
        evidence.forget([0])
    evidence.close()
    return evidence


def _packets(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in dpkt.pcap.Reader(handle))


def test_evidence_of_a_reused_4_tuple_keeps_both_flows(tmp_path):
    files = _evidence_run(tmp_path / "ev", flows_of_run=2).written
    names = sorted(f.path.name for f in files)
    assert names == ["credentials_10.0.0.1-40000_10.0.0.2-8774.pcap", "credentials_10.0.0.1-40000_10.0.0.2-8774_2.pcap"]
    assert [_packets(f.path) for f in files] == [f.packets for f in files] and files[0].packets > 0
    assert {f.path.stat().st_mode & 0o777 for f in files} == {0o600}


def test_evidence_never_follows_a_planted_link(tmp_path):
    folder = tmp_path / "ev"
    folder.mkdir()
    victim = _victim(tmp_path)
    (folder / "credentials_10.0.0.1-40000_10.0.0.2-8774.pcap").symlink_to(victim)
    files = _evidence_run(folder).written
    assert victim.read_bytes() == VICTIM_TEXT
    assert [f.path.name for f in files] == ["credentials_10.0.0.1-40000_10.0.0.2-8774_2.pcap"]
    assert not files[0].path.is_symlink() and _packets(files[0].path) == files[0].packets > 0


@pytest.mark.parametrize("mode", ["a", "wb", "xb"])
def test_append_and_write_refuse_a_link(mode, tmp_path):
    """--jsonl appends, the spool and drill-down pcaps write: none through a symbolic link."""
    victim = _victim(tmp_path)
    link = tmp_path / "alerts.jsonl"
    link.symlink_to(victim)
    with pytest.raises((InspectorError, FileExistsError)):
        open_private(link, mode)
    assert victim.read_bytes() == VICTIM_TEXT


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_replaces_planted_links_instead_of_following_them(fmt, tmp_path):
    out = tmp_path / "export"
    out.mkdir()
    victim = _victim(tmp_path)
    for name in (f"flows.{fmt}", f".flows.{fmt}.tmp", "meta.json"):  # the target, the old fixed temporary name
        (out / name).symlink_to(victim)
    run = _cli("analyze", "-q", str(SOURCE), "--export", str(out), "--export-format", fmt)
    assert run.returncode == 0, run.stderr
    assert victim.read_bytes() == VICTIM_TEXT
    assert not (out / f"flows.{fmt}").is_symlink() and (out / f"flows.{fmt}").stat().st_mode & 0o777 == 0o600
    assert len(inspector.load(out).flows) == len(inspector.analyze(SOURCE).flows)


def test_a_failed_export_leaves_the_old_set(tmp_path):
    out = tmp_path / "export"
    assert _cli("analyze", "-q", str(SOURCE), "--export", str(out)).returncode == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    biggest = max(len(data) for data in before.values())
    other = ROOT / "captures" / "qemu-plain-mtu1500.pcap.gz"  # a different analysis: every table changes
    run = _cli("analyze", "-q", str(other), "--export", str(out), limit_bytes=biggest // 2)
    assert run.returncode == 5 and run.stderr.count("\n") == 1 and "cannot write" in run.stderr, run.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temporaries left, nothing replaced


def test_spool_never_writes_through_a_link_nor_over_another_run(tmp_path):
    """A user-given --spool folder: a killed run's file (or a planted link) in it refuses the folder with one
    line; a link planted at the next name during the run is replaced, never written through."""
    from inspector.capture.reader import CaptureReader
    from inspector.spool import SpooledTables

    folder = tmp_path / "spool"
    folder.mkdir(mode=0o700)
    victim = _victim(tmp_path)
    (folder / "flows-000000.parquet").symlink_to(victim)
    with pytest.raises(InspectorError, match=f"--spool {folder}: holds the tables of an earlier run"):
        SpooledTables(folder, flush_flows=1)
    (folder / "flows-000000.parquet").unlink()
    with SpooledTables(folder, flush_flows=1) as spool:
        (folder / "flows-000000.parquet").symlink_to(victim)
        inspector.analysis.analyze_readers([CaptureReader(SOURCE)], watch=inspector.Watchlist(),
                                           names=[str(SOURCE)], store=spool)
    assert victim.read_bytes() == VICTIM_TEXT
    assert not (folder / "flows-000000.parquet").is_symlink()
