"""After SIGKILL of ``inspector live`` (issue 17): no tcpdump left capturing on a quiet link, no temporary
spool left on disk, and a restart on the same ``--spool`` refused, or resumed when asked, with the killed
run's ended flows in the reports. Real sensors on loopback, as root (as in CI)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import inspector
from inspector.analysis import analyze_readers
from inspector.capture.reader import CaptureReader
from inspector.errors import InspectorError
from inspector.spool import MANIFEST, SpooledTables

live = pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root (the CI runs the tests as root)")

STARTUP_SECONDS = 120  # the kernels compile before tcpdump starts: up to a minute on a fresh clone
ROOT = Path(__file__).resolve().parent.parent


def _start(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``inspector live -i lo`` started and capturing (its "capturing on" line seen)."""
    proc = subprocess.Popen([sys.executable, "-m", "inspector", "live", "-i", "lo", "-q", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env={**os.environ, **(env or {})})
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    proc.lines = lines  # type: ignore[attr-defined]
    deadline = time.monotonic() + STARTUP_SECONDS
    while not any("capturing on lo" in line for line in lines):
        assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
        time.sleep(0.05)
    return proc


def _children(pid: int) -> dict[int, str]:
    """Every descendant of ``pid`` still there (not a zombie): pid -> command name."""
    parents: dict[int, tuple[int, str, str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        state, ppid = text[text.rindex(")") + 2:].split()[:2]
        parents[int(stat.parent.name)] = (int(ppid), name, state)
    found, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, name, state) in parents.items():
            if ppid == parent and child not in found:
                todo.append(child)
                if state != "Z":
                    found[child] = name
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _until(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@live
@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_leaves_no_tcpdump_and_no_spool(tmp_path: Path, workers: int) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir(mode=0o700)
    proc = _start(tmp_path, "--filter", f"tcp port {_free_port()}", "--workers", str(workers),
                  env={"TMPDIR": str(temp)})
    assert _until(lambda: sum(n == "tcpdump" for n in _children(proc.pid).values()) == workers, 10)
    tcpdumps = [pid for pid, name in _children(proc.pid).items() if name == "tcpdump"]
    assert list(temp.glob("inspector-spool-*")), "the run's temporary spool"
    proc.kill()
    proc.wait(5)
    assert _until(lambda: not any(_alive(pid) for pid in tcpdumps), 3), "tcpdump outlived the SIGKILLed sensor"
    assert _until(lambda: not list(temp.glob("inspector-spool-*")), 10), list(temp.rglob("*"))


class _Sink:
    """A TCP server on loopback that reads and drops whatever it is sent."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            conn, _ = self.server.accept()
            with conn:
                while conn.recv(1 << 16):
                    pass

    def send(self, data: bytes) -> int:
        """One connection carrying ``data``; its client port."""
        with socket.create_connection(("127.0.0.1", self.port)) as client:
            client.sendall(data)
            return client.getsockname()[1]


def _killed_run(tmp_path: Path, spool: Path, sink: _Sink) -> int:
    """A sensor on ``spool`` that saw one flow end, then SIGKILLed; the flow's client port."""
    proc = _start(tmp_path, "--filter", f"tcp port {sink.port}", "--spool", str(spool), "--idle-timeout", "1")
    client = sink.send(b"GET / HTTP/1.1\r\nHost: first-run\r\n\r\n")
    assert _until(lambda: list(spool.glob("flows-*.parquet")), 30), "the ended flow was never spooled"
    proc.kill()
    proc.wait(5)
    return client


@live
@pytest.mark.slow
def test_restart_on_a_killed_runs_spool_is_refused_then_resumed(tmp_path: Path) -> None:
    spool, sink = tmp_path / "spool", _Sink()
    first_client = _killed_run(tmp_path, spool, sink)
    assert json.loads((spool / "run.json").read_text())["state"] == "running"  # as the kill left it

    done = subprocess.run([sys.executable, "-m", "inspector", "live", "-i", "lo", "--duration", "5", "--spool",
                           str(spool)], capture_output=True, text=True, cwd=tmp_path, timeout=STARTUP_SECONDS,
                          check=False)
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert str(spool) in line and "interrupted run" in line and "--spool-resume" in line, line
    assert "Traceback" not in done.stderr and len(list(spool.rglob("flows-*.parquet"))) == 1  # untouched

    proc = _start(tmp_path, "--filter", f"tcp port {sink.port}", "--spool", str(spool), "--spool-resume",
                  "--idle-timeout", "1", "--json", "result.json")
    second_client = sink.send(b"GET / HTTP/1.1\r\nHost: second-run\r\n\r\n")
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, "".join(proc.lines)  # type: ignore[attr-defined]
    result = json.loads((tmp_path / "result.json").read_text())
    clients = {f["orig_p"] for f in result["flows"] if f["resp_p"] == sink.port}
    assert {first_client, second_client} <= clients
    resumed = [a for a in result["anomalies"] if a["kind"] == "spool-resumed"]
    assert len(resumed) == 1 and resumed[0]["detail"].startswith("an interrupted run")
    assert "its 1 ended flow(s) joined" in resumed[0]["detail"], resumed
    manifests = {p.relative_to(spool).as_posix(): json.loads(p.read_text())["state"] for p in spool.rglob("run.json")}
    assert manifests == {"run.json": "interrupted", "run-2/run.json": "complete"}

    done = subprocess.run([sys.executable, "-m", "inspector", "live", "-i", "lo", "--duration", "5", "--spool",
                           str(spool)], capture_output=True, text=True, cwd=tmp_path, timeout=STARTUP_SECONDS,
                          check=False)
    assert done.returncode == 2 and "interrupted run" in done.stderr.strip().splitlines()[-1], done.stderr


def _spool_a_capture(spool: SpooledTables) -> int:
    source = ROOT / "captures" / "qemu-plain.pcap.gz"
    analyze_readers([CaptureReader(source)], watch=inspector.Watchlist(), names=[str(source)], store=spool)
    return sum(len(t) for t in spool.tables()["flows"])


def test_a_spool_folder_says_what_it_holds(tmp_path: Path) -> None:
    """run.json: running, then complete; a running one whose process is gone is interrupted; one whose
    process runs (this one) is refused even with resume."""
    folder = tmp_path / "spool"
    first = SpooledTables(folder, flush_flows=1)
    assert json.loads((folder / MANIFEST).read_text())["state"] == "running"
    with pytest.raises(InspectorError, match=r"a run still going \(pid \d+.*give an empty folder$"):
        SpooledTables(folder, resume=True)
    flows = _spool_a_capture(first)
    assert flows and json.loads((folder / MANIFEST).read_text())["state"] == "complete"
    with pytest.raises(InspectorError, match=f"--spool {folder}: holds the tables of a complete run .*--spool-resume"):
        SpooledTables(folder)

    resumed = SpooledTables(folder, resume=True)
    assert resumed.folder == folder / "run-2" and f"its {flows} ended flow(s) joined" in resumed.resumed
    assert _spool_a_capture(resumed) == 2 * flows  # the earlier run's and this one's
    (folder / "run-2" / MANIFEST).write_text(json.dumps({"state": "running", "pid": 1, "pid_start": "0"}))
    with pytest.raises(InspectorError, match="holds the tables of an interrupted run"):
        SpooledTables(folder)
    third = SpooledTables(folder, resume=True)
    assert third.folder == folder / "run-3" and f"its {2 * flows} ended flow(s)" in third.resumed
    assert json.loads((folder / "run-2" / MANIFEST).read_text())["state"] == "interrupted"


def test_an_empty_spool_folder_is_a_fresh_run(tmp_path: Path) -> None:
    folder = tmp_path / "spool"
    folder.mkdir(mode=0o700)
    spool = SpooledTables(folder, resume=True)
    assert spool.folder == folder and spool.resumed == ""
