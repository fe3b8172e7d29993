#!/usr/bin/env python3
"""CPU seconds of the drill-down (``Analysis.packets`` / ``to_pcap``) on a
big capture: the flow's input is read once more up to the flow's last
packet, so its cost is a partial re-read of the file.

    python benchmarks/drilldown.py                       # bulk: 1 M packets, 20 flows (~1.2 GB)
    python benchmarks/drilldown.py --capture FILE.pcap   # any capture: its flow with most packets
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--capture", type=Path, help="capture to use (default: generate a bulk capture)")
    ap.add_argument("--packets", type=int, default=1_000_000, help="packets of the generated capture")
    ap.add_argument("--repeat", type=int, default=3, help="to_pcap runs; the least CPU is kept")
    args = ap.parse_args()

    import inspector

    with tempfile.TemporaryDirectory(prefix="inspector-drilldown-") as folder:
        capture = args.capture
        if capture is None:
            capture = Path(folder) / "bulk.pcap"
            subprocess.run([sys.executable, str(HERE / "make_capture.py"), str(capture), "--packets",
                            str(args.packets), "--quiet"], check=True)
        start = cpu()
        result = inspector.analyze(capture, secrets=False)
        analyse = cpu() - start
        flows = result.flows
        packets = flows["orig_pkts"] + flows["resp_pkts"]
        uid = str(flows["uid"].iloc[int(packets.to_numpy().argmax())])
        best = float("inf")
        for _ in range(args.repeat):
            start = cpu()
            result.to_pcap(uid, Path(folder) / "flow.pcap")
            best = min(best, cpu() - start)
        size = capture.stat().st_size / 1e9
        print(f"capture {capture.name}: {size:.2f} GB, {len(flows)} flows; analyze (no secret scan) {analyse:.2f} CPU s")
        print(f"to_pcap of flow {uid} ({int(packets.max()):,} packets): {best:.2f} CPU s (least of {args.repeat})")


if __name__ == "__main__":
    main()
