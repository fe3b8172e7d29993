"""Cost an attacker controls: hostile captures next to benign ones of the same size.

Whoever writes the traffic must not set the cost of analysing it: it must
stay linear in packets and bytes whatever the content. Each case writes a
hostile capture and a benign one with the same packets, flows and bytes,
runs ``inspector analyze FILE --quiet --json OUT`` on both in the same run,
and prints CPU seconds and the ratio (the goal: within 2x).

Cases:

``migration-flows``  N short flows, each a SYN and one segment opening with
                     a QEMU migration header (N migration events, N
                     findings), against N flows of an HTTP request

    python benchmarks/adversarial.py                 # 20,000 flows
    python benchmarks/adversarial.py --flows 2000    # quick
"""

from __future__ import annotations

import argparse
import resource
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

QEMU_HEAD = b"QEVM\x00\x00\x00\x03\x05\x00\x00\x00\x00" + bytes(200)
HTTP_HEAD = b"GET / HTTP/1.1\r\nHost: api\r\nAccept: */*\r\n\r\n".ljust(len(QEMU_HEAD), b" ")


def _frame(src: bytes, dst: bytes, sport: int, dport: int, seq: int, flags: int, payload: bytes) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0)
    return b"\0" * 12 + b"\x08\x00" + ip + tcp + payload


def write_short_flows(path: Path, flows: int, payload: bytes) -> None:
    """``flows`` TCP flows of a SYN and one data segment to a migration port,
    each between its own host pair (198.18.0.0/15, RFC 2544), 50 us apart."""
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        start = 1_700_000_000
        for i in range(flows):
            src = bytes([198, 18, (i >> 8) & 255, i & 255])
            dst = bytes([198, 19, (i >> 8) & 255, i & 255])
            for k, (flags, data) in enumerate(((0x02, b""), (0x18, payload))):
                frame = _frame(src, dst, 30000 + i % 20000, 49152 + i % 100, 1000 + k, flags, data)
                us = i * 50 + k
                out.write(struct.pack("<IIII", start + us // 1_000_000, us % 1_000_000, len(frame), len(frame))
                          + frame)


def cpu_seconds(capture: Path, out: Path) -> tuple[float, float]:
    """CPU seconds (user + sys) and wall seconds of one ``inspector analyze``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "inspector", "analyze", str(capture), "--quiet", "--json", str(out)],
                   check=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="inspector-adversarial-") as tmp:
        folder = Path(tmp)
        cases = {"migration-flows": (QEMU_HEAD, HTTP_HEAD)}
        cpu_seconds(ROOT / "captures" / "http-api.pcap", folder / "warm.json")  # kernels compiled and cached
        print(f"{'case':18} {'flows':>8} {'benign cpu s':>13} {'hostile cpu s':>14} {'ratio':>6}")
        for name, (hostile, benign) in cases.items():
            figures = []
            for kind, payload in (("benign", benign), ("hostile", hostile)):
                capture = folder / f"{name}-{kind}.pcap"
                write_short_flows(capture, args.flows, payload)
                figures.append(cpu_seconds(capture, folder / f"{name}-{kind}.json")[0])
            print(f"{name:18} {args.flows:>8,} {figures[0]:>13.2f} {figures[1]:>14.2f} {figures[1] / figures[0]:>6.2f}")


if __name__ == "__main__":
    main()
