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
``scanner-bait-*``   1,024 flows of one 65,000-byte segment each (62 MiB) to a migration
                     port, filled with what the secret scan's patterns
                     anchor on (``eyJ`` of a JWT, ``password=``, ``token=:``,
                     ``-----BEGIN``), against random bytes
``tuple-reuse``      N flows on ONE 4-tuple, each a SYN, a segment and a RST
                     (each packet after the close starts a new flow), against
                     N flows on N 4-tuples

    python benchmarks/adversarial.py                 # 20,000 flows
    python benchmarks/adversarial.py --flows 2000    # quick
"""

from __future__ import annotations

import argparse
import random
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


def write_short_flows(path: Path, flows: int, payload: bytes, *, one_tuple: bool = False,
                      segments: int = 1) -> None:
    """``flows`` TCP flows of a SYN and ``segments`` data segments to a
    migration port, each between its own host pair (198.18.0.0/15, RFC 2544)
    50 us apart; ``one_tuple``: all on one 4-tuple, each ended by a RST."""
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        start = 1_700_000_000
        for i in range(flows):
            host = 0 if one_tuple else i
            src = bytes([198, 18, (host >> 8) & 255, host & 255])
            dst = bytes([198, 19, (host >> 8) & 255, host & 255])
            packets = [(0x02, b"")] + [(0x18, payload)] * segments + ([(0x04, b"")] if one_tuple else [])
            seq = 1000
            for k, (flags, data) in enumerate(packets):
                frame = _frame(src, dst, 30000 + host % 20000, 49152 + host % 100, seq, flags, data)
                seq += len(data) or 1
                us = i * 50 * len(packets) + k
                out.write(struct.pack("<IIII", start + us // 1_000_000, us % 1_000_000, len(frame), len(frame))
                          + frame)


SEGMENT = 65_000  # bytes of payload per segment of the scanner-bait cases (a GSO-sized capture record)
BAIT = {"jwt": b"eyJ", "password": b"password=", "token": b"token=:", "pem": b"-----BEGIN "}


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
        noise = random.Random(1).randbytes(SEGMENT)
        bait_flows = 1024
        cases = {"migration-flows": (args.flows, dict(payload=QEMU_HEAD), dict(payload=HTTP_HEAD)),
                 "tuple-reuse": (args.flows, dict(payload=HTTP_HEAD, one_tuple=True), dict(payload=HTTP_HEAD))}
        for bait, anchor in BAIT.items():
            cases[f"scanner-bait-{bait}"] = (bait_flows, dict(payload=(anchor * SEGMENT)[:SEGMENT]),
                                             dict(payload=noise))
        cpu_seconds(ROOT / "captures" / "http-api.pcap", folder / "warm.json")  # kernels compiled and cached
        print(f"{'case':22} {'flows':>8} {'benign cpu s':>13} {'hostile cpu s':>14} {'ratio':>6}")
        for name, (flows, hostile, benign) in cases.items():
            figures = []
            for kind, options in (("benign", benign), ("hostile", hostile)):
                capture = folder / f"{name}-{kind}.pcap"
                write_short_flows(capture, flows, **options)
                figures.append(cpu_seconds(capture, folder / f"{name}-{kind}.json")[0])
                capture.unlink()
            print(f"{name:22} {flows:>8,} {figures[0]:>13.2f} {figures[1]:>14.2f} {figures[1] / figures[0]:>6.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
