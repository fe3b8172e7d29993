#!/usr/bin/env python3
"""CPU of the compiled record walk and frame decoder alone (``decode.walk_pcap``).

The classic pcap is read into memory once, so no I/O is timed: what the
link-layer and tunnel decoders cost per pass, best and median of
``--repeat`` (CPU ms, ``time.process_time``). Run it from two checkouts to
compare a change to ``inspector/capture`` (the machine's noise is several
per cent: compare medians of a few runs, alternating)::

    PYTHONPATH=. python benchmarks/decode_walk.py /work/bench/real-x32.pcap
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from inspector.capture import decode as D

ROWS = 131072


def walk(raw: np.ndarray, linktype: int, fields: np.ndarray, addrs: np.ndarray) -> int:
    """Decode every record of the little-endian microsecond pcap ``raw``; the number of packets."""
    pos, total = 24, 0
    while True:
        n, pos, _damaged = D.walk_pcap(raw, pos, raw.size, False, False, linktype, 0, 0, fields, addrs, 0, ROWS)
        total += n
        if n < ROWS:
            return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", help="classic pcap, little-endian, microseconds (as make_capture.py writes)")
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    raw = np.fromfile(args.capture, dtype=np.uint8)
    linktype = int.from_bytes(raw[20:24].tobytes(), "little") & 0xFFFF
    fields = np.empty((D.N_FIELDS, ROWS), dtype=np.int64)
    addrs = np.empty((D.N_ADDRS, ROWS), dtype=np.uint64)
    packets = walk(raw, linktype, fields, addrs)  # compiled, or loaded from the cache
    times = []
    for _ in range(args.repeat):
        start = time.process_time()
        walk(raw, linktype, fields, addrs)
        times.append(time.process_time() - start)
    times.sort()
    print(f"{args.capture}: {packets} packets, link type {linktype}: CPU ms per pass "
          f"best {times[0] * 1e3:.1f}, median {times[len(times) // 2] * 1e3:.1f}")


if __name__ == "__main__":
    main()
