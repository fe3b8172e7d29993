"""Record real loopback traffic with tcpdump for tests (root, as in CI)."""

from __future__ import annotations

import os
import shutil
import signal
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def start_tcpdump(pcap: Path, capture_filter: str) -> subprocess.Popen:
    """tcpdump writing every packet at once (-U) to ``pcap``, started and listening."""
    if shutil.which("tcpdump") is None:
        pytest.fail("tcpdump is not installed (bash .ci/install-system-deps installs it)")
    if os.geteuid() != 0:
        pytest.fail("capturing loopback traffic needs root (the CI runs the tests as root)")
    proc = subprocess.Popen(["tcpdump", "-U", "--immediate-mode", "-Z", "root", "-s", "0", "-i", "lo",
                             "-w", str(pcap), capture_filter],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()  # "listening on lo, ..." once the capture runs
    if "listening on" not in line:
        proc.kill()
        pytest.fail(f"tcpdump did not start: {line.strip()}")
    return proc


def stop_tcpdump(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err


@contextmanager
def loopback_capture(pcap: Path, capture_filter: str, settle: float = 0.3) -> Iterator[Path]:
    """Capture loopback traffic matching ``capture_filter`` while the block runs."""
    proc = start_tcpdump(pcap, capture_filter)
    try:
        yield pcap
        time.sleep(settle)  # let the last packets reach the file
    finally:
        stop_tcpdump(proc)


@contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[int]:
    """Serve ``server`` (bound to 127.0.0.1) from a thread while the block runs; yields its port."""
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
