"""A full disk under every output (issue 17): the output that fills up is told
by name in one line and stops whole (no torn JSON line, no pcap cut
mid-record, no half-written report), every other output is written, the
capture and its alerts go on, and the exit status says something was lost.

The disks are real: small tmpfs filesystems (root mounts them, as in CI),
filled up to a few pages by a filler file.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import dpkt
import pandas as pd
import pytest

import inspector
from inspector.errors import InspectorError, OutputWarning

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "captures" / "http-api.pcap"
PAGE = 4096
DISK_BYTES = 1 << 20
OUTPUT_LOST = 5  # cli.ExitStatus.OUTPUT_LOST
NO_SPACE = "No space left on device"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root (CI runs as root)")


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Callable[..., Path]]:
    """``full_disk(name, room=PAGE)``: a folder on a 1 MiB tmpfs with only
    ``room`` bytes left; unmounted at the end."""
    mounted: list[Path] = []

    def make(name: str, room: int = PAGE) -> Path:
        folder = tmp_path / name
        folder.mkdir(mode=0o700)
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0700", "tmpfs", str(folder)],
                              capture_output=True, text=True, check=False)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        mounted.append(folder)
        (folder / "filler").write_bytes(b"\0" * (DISK_BYTES - room))
        return folder

    yield make
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inspector", *args], capture_output=True, text=True, timeout=600,
                          cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)


def _only_filler(folder: Path) -> bool:
    """Nothing but the filler: no report, no temporary left behind."""
    return sorted(p.name for p in folder.rglob("*") if p.is_file()) == ["filler"]


REPORTS = {  # option -> (the name it writes, a check that what was written is whole)
    "--json": ("result.json", lambda p: json.loads(p.read_text())["flows"]),
    "--html": ("report.html", lambda p: p.read_text().rstrip().endswith("</html>")),
    "--markdown": ("report.md", lambda p: "#" in p.read_text()),
    "--csv": ("flows.csv", lambda p: len(pd.read_csv(p)) == len(inspector.analyze(SOURCE).flows)),
    "--export": ("export", lambda p: len(inspector.load(p).flows) == len(inspector.analyze(SOURCE).flows)),
}


@pytest.mark.parametrize("full", sorted(REPORTS))
def test_analyze_writes_every_other_report_when_one_disk_is_full(full: str, tmp_path: Path, full_disk) -> None:
    disk = full_disk("full", room=0)
    args = []
    for option, (name, _whole) in REPORTS.items():
        args += [option, str((disk if option == full else tmp_path) / name)]
    run = _cli("analyze", str(SOURCE), *args, cwd=tmp_path)
    assert run.returncode == OUTPUT_LOST, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"inspector: error: {full} {disk}/") and NO_SPACE in lines[0]
    assert _only_filler(disk)
    for option, (name, whole) in REPORTS.items():
        if option != full:
            assert whole(tmp_path / name), option
    assert "CRITICAL" in run.stdout or "HIGH" in run.stdout  # the terminal summary still follows


def test_streamed_reports_of_quiet_analyze(tmp_path: Path, full_disk) -> None:
    """``analyze -q --json --csv`` streams both from its spool: the full one is told, the other whole."""
    disk = full_disk("full", room=0)
    run = _cli("analyze", "-q", str(SOURCE), "--json", str(disk / "result.json"), "--csv",
               str(tmp_path / "flows.csv"), cwd=tmp_path)
    assert run.returncode == OUTPUT_LOST, run.stderr
    assert run.stderr.strip() == f"inspector: error: --json {disk}/result.json: cannot write: {NO_SPACE}"
    assert len(pd.read_csv(tmp_path / "flows.csv")) == len(inspector.analyze(SOURCE).flows)
    assert _only_filler(disk)


def test_library_export_into_a_full_folder_is_one_error(full_disk) -> None:
    disk = full_disk("full", room=0)
    result = inspector.analyze(SOURCE)
    for fmt in ("csv", "parquet"):
        with pytest.raises(InspectorError) as raised:
            result.export(disk / "export", fmt)
        message = str(raised.value)
        assert "\n" not in message and str(disk / "export") in message and NO_SPACE in message
        assert _only_filler(disk)
    with pytest.raises(InspectorError, match=f"^{disk}/flow.pcap: cannot write: {NO_SPACE}$"):
        result.to_pcap(result.flows["uid"][0], disk / "flow.pcap")
    assert _only_filler(disk)


def test_jsonl_stops_at_its_last_whole_line(full_disk) -> None:
    from inspector.streaming import JsonLines

    disk = full_disk("full", room=2 * PAGE)
    path = disk / "live.jsonl"
    lines = JsonLines.open(path)
    record = {"type": "stats", "note": "x" * 1000}  # 1,036 bytes a line
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(3 * 2 * PAGE // 1000):  # more than the room, in groups of three lines
            lines.write([record] * 3)
    lines.close()
    told = [str(w.message) for w in caught if issubclass(w.category, OutputWarning)]
    assert told == [f"--jsonl {path}: {NO_SPACE}; no more records go there"]
    text = path.read_bytes()
    assert text.endswith(b"\n") and len(text) <= 2 * PAGE
    assert [json.loads(line) for line in text.splitlines()] == [record] * (len(text.splitlines()))
    assert len(text) > 2 * PAGE - 1100  # the lines that fitted of the group the disk cut short are kept


def test_evidence_pcap_stops_at_its_last_whole_record(full_disk) -> None:
    """The evidence writer over a real capture on a disk with room for part of
    the flow: the file ends at a whole record and reads without truncation."""
    from inspector.alerts import EvidencePcaps
    from inspector.capture.reader import CaptureReader
    from inspector.flows.table import FlowTable

    disk = full_disk("full", room=4 * PAGE)
    evidence = EvidencePcaps(disk / "evidence")
    table, reader = FlowTable(), CaptureReader(SOURCE)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for batch in reader:
            flow_ids, _ = table.add(batch)
            for flow in sorted(set(flow_ids.tolist()))[:3]:
                evidence.keep(flow, "credentials", f"10.0.0.1:{40000 + flow}", "10.0.0.2:8774")
            evidence.write(reader, batch, flow_ids)
        assert evidence.keep(99, "credentials", "10.0.0.1:1", "10.0.0.2:2") == ""  # nothing new once full
        files = evidence.close()
    told = [str(w.message) for w in caught if issubclass(w.category, OutputWarning)]
    assert len(told) == 1 and told[0].startswith(f"--write-pcap {disk}/evidence/") and NO_SPACE in told[0]
    assert {f.capped for f in files} == {"full"}
    kept = [f for f in files if f.path.exists()]
    assert kept and sum(f.packets for f in kept) > 0
    for entry in kept:
        with open(entry.path, "rb") as handle:
            assert sum(1 for _ in dpkt.pcap.Reader(handle)) == entry.packets
        assert entry.path.stat().st_size == entry.bytes
        done = subprocess.run(["tcpdump", "-r", str(entry.path)], capture_output=True, text=True, check=False)
        assert done.returncode == 0 and "truncated" not in done.stderr, done.stderr
        assert len(done.stdout.splitlines()) == entry.packets
    assert all(not f.started for f in files if not f.path.exists())  # removed only when even the header had no room


def test_spool_on_a_full_disk_keeps_the_flows_in_memory(full_disk) -> None:
    from inspector.analysis import analyze_readers
    from inspector.capture.reader import CaptureReader
    from inspector.spool import SpooledTables

    disk = full_disk("full", room=2 * PAGE)
    watch = inspector.Watchlist()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with SpooledTables(disk / "spool", flush_flows=1) as spool:
            result = analyze_readers([CaptureReader(SOURCE)], watch=watch, names=[str(SOURCE)], store=spool)
    told = [str(w.message) for w in caught if issubclass(w.category, OutputWarning)]
    assert told == [f"--spool {disk}/spool: {NO_SPACE}; the ended flows stay in memory from now on (none lost; "
                    + "memory grows with them)"]
    assert sorted(result.flows["uid"]) == sorted(inspector.analyze(SOURCE).flows["uid"])
    assert not [p for p in (disk / "spool").iterdir() if p.stat().st_size == 0]  # no torn file left


@pytest.mark.slow  # a real sensor on loopback
@pytest.mark.parametrize("workers", [1, 2])
def test_live_sensor_goes_on_when_its_outputs_fill_up(workers: int, tmp_path: Path, full_disk) -> None:
    """``--jsonl``, ``--write-pcap``, ``--spool`` and a report on full disks:
    each told once by name; alerts still on stderr for a flow that starts
    after they filled up; the other reports whole; exit status 5. With
    ``--workers 2`` the evidence is written by the capture processes."""
    from test_live import CAPTURES, _free_port, _originator_payload, _start, _wait_for

    payload = _originator_payload(CAPTURES / "qemu-plain.pcap.gz")
    port = _free_port(49152, 49262)
    server = socket.create_server(("127.0.0.1", port))

    def sink() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            with conn:
                while conn.recv(1 << 16):
                    pass

    threading.Thread(target=sink, daemon=True).start()
    jsonl, pcaps = full_disk("jsonl", room=PAGE) / "live.jsonl", full_disk("pcaps", room=16 * PAGE) / "evidence"
    spool, markdown = full_disk("spool", room=0) / "spool", full_disk("reports", room=0) / "report.md"
    proc = _start(tmp_path, "--workers", str(workers), "--filter", f"tcp port {port}", "--duration", "90",
                  "--stats-interval", "0.2",
                  "--jsonl", str(jsonl), "--write-pcap", str(pcaps), "--spool", str(spool), "--markdown",
                  str(markdown), "--json", "result.json", "--html", "report.html", "--csv", "flows.csv")
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(payload)
    _wait_for(proc, "error: --write-pcap", 30)
    _wait_for(proc, "error: --jsonl", 30)
    with socket.create_connection(("127.0.0.1", port)) as client:  # after both filled up: still alerted
        client.sendall(payload)
    deadline = time.monotonic() + 30
    while sum("ALERT" in line for line in proc.lines) < 2:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "".join(proc.lines)  # type: ignore[attr-defined]
        time.sleep(0.1)
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == OUTPUT_LOST, "".join(proc.lines)  # type: ignore[attr-defined]
    server.close()
    text = "".join(proc.lines)  # type: ignore[attr-defined]
    assert "Traceback" not in text and "internal error" not in text, text
    once_per_process = (f"--write-pcap {pcaps}/", f"--spool {spool}")  # each process has its own
    for told in (f"--jsonl {jsonl}: {NO_SPACE}; no more records go there", f"--markdown {markdown}: ",
                 *once_per_process):
        count = sum(f"inspector: error: {told}" in line for line in proc.lines)  # type: ignore[attr-defined]
        most = {f"--spool {spool}": workers + (workers > 1)}.get(told, workers if told in once_per_process else 1)
        assert 1 <= count <= most, (told, text)  # the spool: each process's, and the parent's run mark
    assert f"{NO_SPACE}; the ended flows stay in memory" in text

    result = json.loads((tmp_path / "result.json").read_text())  # whole, every flow in it (kept in memory)
    assert len([f for f in result["flows"] if f["resp_p"] == port and f["protocol"] == "qemu-migration"]) == 2
    assert (tmp_path / "report.html").read_text().rstrip().endswith("</html>")
    assert len(pd.read_csv(tmp_path / "flows.csv")) == len(result["flows"])
    assert not markdown.exists() and not [p for p in spool.rglob("*") if p.is_file()]  # no torn file left
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]  # every line whole
    assert records and [r["type"] for r in records if r["type"] != "error"][0] == "alert"  # the spool told first
    kept = sorted(pcaps.iterdir())
    assert kept  # the first alert's file, whole records up to the full disk
    for path in kept:
        done = subprocess.run(["tcpdump", "-r", str(path)], capture_output=True, text=True, check=False)
        assert done.returncode == 0 and "truncated" not in done.stderr, done.stderr
        with open(path, "rb") as handle:
            assert sum(1 for _ in dpkt.pcap.Reader(handle)) == len(done.stdout.splitlines()) > 0


def test_config_audit_writes_every_other_report(tmp_path: Path, full_disk) -> None:
    disk = full_disk("full", room=0)
    run = _cli("config-audit", str(ROOT / "tests" / "data" / "config" / "debian"), "-q", "--json",
               str(disk / "audit.json"), "--html", str(tmp_path / "audit.html"), "--markdown",
               str(tmp_path / "audit.md"), cwd=tmp_path)
    assert run.returncode == OUTPUT_LOST, run.stderr
    assert run.stderr.strip() == f"inspector: error: --json {disk}/audit.json: cannot write: {NO_SPACE}"
    assert (tmp_path / "audit.html").read_text().rstrip().endswith("</html>")
    assert (tmp_path / "audit.md").read_text().startswith("#")
    assert _only_filler(disk)


LIVE_REPORTS = {  # option -> (the name it writes, a check that it is whole) for a capture of no packet
    "--json": ("result.json", lambda p: json.loads(p.read_text())["inputs"][0]["file"] == "live:lo"),
    "--html": ("report.html", lambda p: p.read_text().rstrip().endswith("</html>")),
    "--markdown": ("report.md", lambda p: "live:lo" in p.read_text()),
    "--csv": ("flows.csv", lambda p: "uid" in pd.read_csv(p).columns),
    "--export": ("export", lambda p: inspector.load(p).inputs["file"].tolist() == ["live:lo"]),
}


@pytest.mark.slow  # a real sensor on loopback
@pytest.mark.parametrize("full", sorted(LIVE_REPORTS))
def test_live_writes_every_other_report_when_one_disk_is_full(full: str, tmp_path: Path, full_disk) -> None:
    from test_live import _free_port

    disk = full_disk("full", room=0)
    args = []
    for option, (name, _whole) in LIVE_REPORTS.items():
        args += [option, str((disk if option == full else tmp_path) / name)]
    run = _cli("live", "-i", "lo", "-q", "--duration", "1", "--filter", f"tcp port {_free_port(40000, 41000)}",
               *args, cwd=tmp_path)
    assert run.returncode == OUTPUT_LOST, run.stderr
    errors = [line for line in run.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and errors[0].startswith(f"inspector: error: {full} {disk}/") and NO_SPACE in errors[0]
    assert _only_filler(disk)
    for option, (name, whole) in LIVE_REPORTS.items():
        if option != full:
            assert whole(tmp_path / name), option
