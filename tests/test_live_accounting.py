"""Every packet of a live capture is accounted for, and every failure said.

The sensor runs in a private network namespace (tests/netns.py) on one end
of a veth pair; tcpreplay sends generated UDP packets into the other end.
The filter matches every packet sent and nothing else (IPv6 is off in the
namespace), so the packets sent are exactly those the interface received
that match it: packets + dropped_kernel + dropped_interface + unread_at_stop.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import jsonschema
import pytest

from inspector.capture.reader import InputStats
from inspector.live import Unwrapped
from inspector.live_workers import _merged
from inspector.report.json_report import json_schema
from tests.netns import Namespace, available, udp_burst

in_namespace = pytest.mark.skipif(bool(available()), reason=available() or "ok")

ROOT = Path(__file__).resolve().parents[1]
STARTUP_SECONDS = 300  # the sensor compiles its kernels before tcpdump starts; the machine may be busy
PORT = 5001
FILTER = f"udp dst port {PORT}"
CAPTURE_FAILED = 4  # cli.ExitStatus.CAPTURE_FAILED


class Live:
    """``inspector live`` in the namespace, capturing (its "capturing on" line seen); stderr kept in ``lines``."""

    def __init__(self, ns: Namespace, folder: Path, *args: str) -> None:
        self.folder = folder
        env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
        with open(folder / "summary.txt", "w") as summary:  # the terminal summary
            self.proc = ns.popen([sys.executable, "-m", "inspector", "live", "-i", ns.recv, "--filter", FILTER,
                                  "--stats-interval", "0", "--json", "result.json", "--markdown", "report.md",
                                  "--html", "report.html", "--jsonl", "live.jsonl", *args],
                                 stdout=summary, stderr=subprocess.PIPE, text=True, cwd=folder, env=env)
        self.lines: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while not any("capturing on" in line for line in self.lines):
            assert self.proc.poll() is None and time.monotonic() < deadline, self.text
            time.sleep(0.05)

    def _pump(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def tcpdumps(self) -> list[int]:
        return [pid for pid in _descendants(self.proc.pid)
                if Path(f"/proc/{pid}/comm").read_text().strip() == "tcpdump"]

    def wait_for(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.text):
            assert time.monotonic() < deadline and self.proc.poll() is None, self.text
            time.sleep(0.1)

    def end(self, timeout: float) -> tuple[int, float]:
        """The exit status and how long it took to come."""
        start = time.monotonic()
        try:
            status = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"the sensor did not end within {timeout} s:\n{self.text}") from None
        time.sleep(0.2)  # the last stderr lines
        return status, time.monotonic() - start

    def result(self) -> dict:
        document = json.loads((self.folder / "result.json").read_text())
        jsonschema.validate(document, json_schema())  # null counts and the end are in the schema
        return document

    def records(self) -> list[dict]:
        return [json.loads(line) for line in (self.folder / "live.jsonl").read_text().splitlines()]


def _descendants(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children + [d for c in children for d in _descendants(c)]


def _marked_incomplete(live: Live) -> None:
    """Every report says the capture is incomplete."""
    inputs = live.result()["inputs"]
    assert [row["end"] for row in inputs] == ["capture-failed"], inputs
    assert "INCOMPLETE CAPTURE: live:recv0: " in (live.folder / "summary.txt").read_text()
    assert "INCOMPLETE CAPTURE" in (live.folder / "report.md").read_text()
    assert "INCOMPLETE CAPTURE" in (live.folder / "report.html").read_text()


@pytest.fixture
def ns():
    with Namespace() as namespace:
        yield namespace


@pytest.mark.slow
@in_namespace
@pytest.mark.parametrize("workers", [1, 2])
def test_every_packet_is_accounted_for_when_stopped_mid_burst(ns: Namespace, tmp_path: Path, workers: int) -> None:
    burst = udp_burst(tmp_path / "burst.pcap", 20_000)
    live = Live(ns, tmp_path, "--buffer-mb", "1", "--workers", str(workers))
    rx_before = ns.counter(ns.recv, "rx_packets")
    # far faster than the sensor decodes: the 1 MiB buffer overflows; tcpreplay is stopped mid-burst,
    # and the sensor at once, while the kernel still holds packets it has not read
    sender = ns.popen(["tcpreplay", "-i", ns.send, "-t", "-l", "0", str(burst)], stdout=subprocess.PIPE,
                      stderr=subprocess.STDOUT, text=True)
    time.sleep(2)
    sender.send_signal(signal.SIGINT)
    said = sender.communicate(30)[0]
    live.proc.send_signal(signal.SIGTERM)
    status, _took = live.end(120)
    assert status == 0, live.text
    sent = ns.counter(ns.recv, "rx_packets") - rx_before
    actual = int(re.search(r"Actual: (\d+) packets", said)[1])
    row = live.result()["inputs"][0]
    assert row["end"] == "stopped"
    accounted = row["packets"] + row["dropped_kernel"] + row["dropped_interface"] + row["unread_at_stop"]
    assert accounted == sent == actual, (row, sent, actual, live.text)
    if workers == 1:  # more than one process keeps up with: two may not drop
        assert row["dropped_kernel"] > 0, row
    assert f"stopped (stopped): {row['packets']:,} packets" in live.text


@pytest.mark.slow
@in_namespace
def test_a_killed_tcpdump_is_a_failed_capture(ns: Namespace, tmp_path: Path) -> None:
    live = Live(ns, tmp_path, "--duration", "120")
    [tcpdump] = live.tcpdumps()
    os.kill(tcpdump, signal.SIGKILL)
    status, _took = live.end(120)
    assert status == CAPTURE_FAILED, live.text
    assert "tcpdump ended before the sensor was stopped (killed by SIGKILL)" in live.text
    assert "reports are from an incomplete capture" in live.text
    _marked_incomplete(live)
    row = live.result()["inputs"][0]
    assert row["dropped_kernel"] is None and row["unread_at_stop"] is None  # unknown, not 0


@pytest.mark.slow
@in_namespace
@pytest.mark.parametrize("workers", [1, 2])
def test_a_frozen_tcpdump_is_told_and_sigterm_still_ends_the_sensor(ns: Namespace, tmp_path: Path,
                                                                     workers: int) -> None:
    live = Live(ns, tmp_path, "--workers", str(workers))
    tcpdumps = live.tcpdumps()
    assert len(tcpdumps) == workers
    os.kill(tcpdumps[0], signal.SIGSTOP)  # with two processes the other goes on
    live.wait_for(r"warning: (capture process \d of 2: )?capture on recv0 stalled: .*stopped \(SIGSTOP\?\)", 60)
    live.proc.send_signal(signal.SIGTERM)
    status, took = live.end(60)
    assert took < 30, took  # the drain (5 s) and SIGINT (3 s) bounds, then SIGKILL, then the reports
    assert status == CAPTURE_FAILED, live.text
    assert "was killed (frozen?)" in live.text
    assert [r for r in live.records() if r["type"] == "stall"]
    _marked_incomplete(live)
    kinds = {a["kind"] for a in live.result()["anomalies"]}
    assert {"capture-stalled", "capture-failed" if workers == 1 else "capture-process-failed"} <= kinds


@pytest.mark.slow
@in_namespace
def test_a_deleted_interface_is_a_failed_capture_with_tcpdumps_error(ns: Namespace, tmp_path: Path) -> None:
    live = Live(ns, tmp_path, "--duration", "120")
    ns.delete_link(ns.recv)
    status, _took = live.end(120)
    assert status == CAPTURE_FAILED, live.text
    assert re.search(r"inspector: tcpdump: .*interface", live.text), live.text  # tcpdump's own words
    _marked_incomplete(live)
    assert live.result()["inputs"][0]["dropped_interface"] is None  # rx_dropped went with the interface


def test_processes_accounting_merges_and_unknown_stays_unknown() -> None:
    def part(packets: int, kernel: int | None, unread: int | None, end: str = "stopped") -> InputStats:
        return InputStats("live:eth1", "pcap", packets=packets, dropped_kernel=kernel, unread_at_stop=unread,
                          end=end)

    both = _merged("live:eth1", [part(40, 3, 1), part(55, 2, 0)], 7, [], "duration", 2)
    assert (both.packets, both.dropped_kernel, both.dropped_interface, both.unread_at_stop, both.end) == \
        (95, 5, 7, 1, "duration")
    killed = _merged("live:eth1", [part(40, 3, 1), part(20, None, None, "capture-failed")], None,
                     ["capture process 2 of 2: tcpdump ended"], "stopped", 2)
    assert (killed.dropped_kernel, killed.dropped_interface, killed.unread_at_stop, killed.end) == \
        (None, None, None, "capture-failed")
    assert dict(killed.anomalies) == {"capture-process-failed": 1}  # the process's own capture-failed said once
    missing = _merged("live:eth1", [part(40, 3, 1)], 0, ["capture process 2 of 2: exited"], "stopped", 2)
    assert missing.dropped_kernel is None and missing.unread_at_stop is None  # a process gave no result


def test_tcpdumps_32_bit_counters_are_unwrapped() -> None:
    unwrapped = Unwrapped()
    assert unwrapped({"captured": 4_294_967_000, "received": 4_294_967_290}) == \
        {"captured": 4_294_967_000, "received": 4_294_967_290}
    assert unwrapped({"captured": 4_294_967_295, "received": 10}) == {"captured": 4_294_967_295, "received": 2**32 + 10}
    assert unwrapped({"captured": 5, "received": 20}) == {"captured": 2**32 + 5, "received": 2**32 + 20}
