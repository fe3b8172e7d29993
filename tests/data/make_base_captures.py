#!/usr/bin/env python3
"""Regenerate the small base captures under tests/data/ with real programs.

Run as root (tcpdump needs it):  python3 tests/data/make_base_captures.py

All traffic stays on loopback (127.0.0.1 and ::1): curl fetches two files
from ``python3 -m http.server`` bound to 127.0.0.1 and to ::1, and a few UDP
datagrams go back and forth between two Python sockets.  tcpdump (-s 0)
records it three times:

  lo_mixed.pcap  -i lo                                   Ethernet (1), usec
  any_sll.pcap   -i any -y LINUX_SLL                     Linux SLL (113), usec
  any_sll2.pcap  -i any -y LINUX_SLL2 --time-stamp-precision=nano
                                                         Linux SLL2 (276), nsec

The capture filter names only our own ports, so nothing else that happens
on the machine lands in the files.  Ports are chosen away from the ports the
default watchlist may care about (< 1024, 16509/16514, 49152-49215), so that
UDP flows (no SYN) keep "first sender = originator".

The tests never rerun this script: they use the committed files, and an
independent dpkt oracle (tests/capture_variants.py) computes expectations
from whatever these files contain.
"""
from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

AVOID = set(range(0, 1024)) | {16509, 16514} | set(range(49152, 49216))


def free_port(family: int, kind: int) -> int:
    """A currently free port on loopback that no default watch rule covers."""
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    for _ in range(1000):
        port = random.randint(20000, 45000)
        if port in AVOID:
            continue
        s = socket.socket(family, kind)
        try:
            s.bind((host, port))
        except OSError:
            continue
        finally:
            s.close()
        return port
    raise RuntimeError("no free port")


def wait_port(host: str, port: int, timeout: float = 10.0) -> None:
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    end = time.time() + timeout
    while time.time() < end:
        s = socket.socket(fam, socket.SOCK_STREAM)
        try:
            s.settimeout(0.2)
            s.connect((host, port))
            return
        except OSError:
            time.sleep(0.05)
        finally:
            s.close()
    raise RuntimeError(f"server on {host}:{port} did not come up")


def start_tcpdump(args: list[str], out: Path, bpf: str) -> subprocess.Popen:
    cmd = ["tcpdump", "-U", "--immediate-mode", "-Z", "root", "-s", "0",
           "-w", str(out), *args, bpf]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    # tcpdump says "listening on ..." once the capture is armed.
    line = proc.stderr.readline()
    while line and "listening on" not in line:
        line = proc.stderr.readline()
    if not line:
        raise RuntimeError("tcpdump did not start: " + " ".join(cmd))
    time.sleep(0.3)
    return proc


def stop_tcpdump(proc: subprocess.Popen) -> str:
    # Let the last packets reach the file: on SIGINT tcpdump does not drain
    # the kernel ring, so packets still queued there would be lost.
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=20)
    return err


def udp_exchange(family: int, cport: int, sport: int, n: int = 3) -> None:
    """Client sends n datagrams, server answers each one."""
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    srv = socket.socket(family, socket.SOCK_DGRAM)
    srv.bind((host, sport))
    cli = socket.socket(family, socket.SOCK_DGRAM)
    cli.bind((host, cport))
    srv.settimeout(5)
    cli.settimeout(5)
    try:
        for i in range(n):
            msg = (f"ping {i} ".encode() * (5 + 7 * i))
            cli.sendto(msg, (host, sport))
            data, peer = srv.recvfrom(65535)
            srv.sendto(b"pong:" + data[::-1][: 40 + i], peer)
            cli.recvfrom(65535)
            time.sleep(0.01)
    finally:
        srv.close()
        cli.close()


def curl(url: str) -> None:
    subprocess.run(
        ["curl", "-s", "-S", "--noproxy", "*", "-o", os.devnull, url],
        check=True, timeout=20,
    )


def make_docroot(root: Path) -> None:
    (root / "index.txt").write_text(
        "".join(f"line {i}: the quick brown fox jumps over the lazy dog\n"
                for i in range(40)))
    rng = random.Random(1234)
    (root / "blob.bin").write_bytes(bytes(rng.randrange(256) for _ in range(3000)))


def record(name: str, tcpdump_args: list[str], with_v6_udp: bool) -> None:
    out = HERE / name
    tmp = Path(tempfile.mkdtemp(prefix="inspector-capt-"))
    servers: list[subprocess.Popen] = []
    try:
        make_docroot(tmp)
        p4 = free_port(socket.AF_INET, socket.SOCK_STREAM)
        p6 = free_port(socket.AF_INET6, socket.SOCK_STREAM)
        u4c, u4s = (free_port(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
        u6c, u6s = (free_port(socket.AF_INET6, socket.SOCK_DGRAM) for _ in range(2))
        for bind, port in (("127.0.0.1", p4), ("::1", p6)):
            servers.append(subprocess.Popen(
                [sys.executable, "-m", "http.server", "--bind", bind,
                 "--directory", str(tmp), str(port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port("127.0.0.1", p4)
        wait_port("::1", p6)
        ports = [f"tcp port {p4}", f"tcp port {p6}", f"udp port {u4s}"]
        if with_v6_udp:
            ports.append(f"udp port {u6s}")
        bpf = f"(host 127.0.0.1 or host ::1) and ({' or '.join(ports)})"
        td = start_tcpdump(tcpdump_args, out, bpf)
        try:
            curl(f"http://127.0.0.1:{p4}/index.txt")
            curl(f"http://127.0.0.1:{p4}/blob.bin")
            udp_exchange(socket.AF_INET, u4c, u4s)
            curl(f"http://[::1]:{p6}/blob.bin")
            if with_v6_udp:
                udp_exchange(socket.AF_INET6, u6c, u6s, n=2)
        finally:
            err = stop_tcpdump(td)
        print(f"{name}: {' '.join(err.split())}")
    finally:
        for s in servers:
            s.terminate()
            s.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    if shutil.which("tcpdump") is None or shutil.which("curl") is None:
        sys.exit("need tcpdump and curl (apt-get install -y tcpdump curl)")
    record("lo_mixed.pcap", ["-i", "lo"], with_v6_udp=True)
    record("any_sll.pcap", ["-i", "any", "-y", "LINUX_SLL"], with_v6_udp=False)
    record("any_sll2.pcap", ["-i", "any", "-y", "LINUX_SLL2",
                             "--time-stamp-precision=nano"], with_v6_udp=True)


if __name__ == "__main__":
    main()
