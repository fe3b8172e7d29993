#!/usr/bin/env python3
"""CPU seconds of writing the ``--json`` result and the live ``--jsonl`` flow
records, on an analysis computed once (the write alone, not the analysis).

    python benchmarks/make_capture.py /tmp/many.pcap --profile many --packets 300000 --flows 30000
    python benchmarks/json_write.py /tmp/many.pcap --repeat 3

Prints the best of ``--repeat`` runs (user+sys CPU of this process) for each
writer; the machine's other load makes single runs noisy.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import inspector  # noqa: E402
from inspector.pipeline import ClosedFlows  # noqa: E402
from inspector.report.json_report import write_json  # noqa: E402
from inspector.streaming import JsonLines  # noqa: E402


def cpu() -> float:
    times = os.times()
    return times.user + times.system


def best_of(repeat: int, work) -> float:
    spent = []
    for _ in range(repeat):
        start = cpu()
        work()
        spent.append(cpu() - start)
    return min(spent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("capture", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    start = cpu()
    result = inspector.analyze(args.capture)
    print(f"analysed {args.capture}: {len(result.flows):,} flows, {len(result.evidence):,} evidence rows, "
          f"{len(result.secrets):,} secrets in {cpu() - start:.2f} CPU s")
    closed = ClosedFlows(flows=result.flows, windows=result.windows, evidence=result.evidence,
                         secrets=result.secrets, secret_counts=result.secret_counts,
                         byte_histograms=result.byte_histograms, at=0)
    json_cpu = best_of(args.repeat, lambda: write_json(result, io.StringIO()))
    jsonl_cpu = best_of(args.repeat, lambda: JsonLines(io.StringIO()).flows(closed))
    print(f"--json  write: {json_cpu:.2f} CPU s (best of {args.repeat})")
    print(f"--jsonl flows: {jsonl_cpu:.2f} CPU s (best of {args.repeat})")


if __name__ == "__main__":
    main()
