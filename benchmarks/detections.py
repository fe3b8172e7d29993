#!/usr/bin/env python3
"""CPU of the protocol detectors with and without the compiled prefilter.

Reads the captures through the flow table once, keeping every batch of
reassembled regions (heads, probes, islands), then hands the same regions
to two ``DetectionCollector``s in this process: one as ``analyze`` runs it
(the prefilter's candidate rows per batch, only those rows in Python), one
that runs every row on every region (inspector before the prefilter). It
checks that both find the same detections and prints their CPU seconds,
the prefilter kernel's own share, and how many regions had any candidate.

    python benchmarks/make_capture.py /tmp/many.pcap --profile many --packets 300000 --flows 30000
    python benchmarks/detections.py /tmp/many.pcap
    python benchmarks/detections.py captures/*.pcap.gz captures/http-api.pcap
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from inspector.capture.reader import CaptureReader  # noqa: E402
from inspector.classify.evidence import DetectionCollector  # noqa: E402
from inspector.flows.frame import originator_is_a_one  # noqa: E402
from inspector.flows.table import FlowTable, Region  # noqa: E402
from inspector.protocols import prefilter  # noqa: E402
from inspector.watch import Watchlist  # noqa: E402


def regions_of(path: str) -> tuple[FlowTable, list[list[Region]]]:
    batches: list[list[Region]] = []
    table = FlowTable(on_regions=batches.append)
    for batch in CaptureReader(path):
        table.add(batch)
    table.finish()
    return table, batches


def collector_for(table: FlowTable, ports: frozenset[int]) -> DetectionCollector:
    return DetectionCollector(lambda flow: originator_is_a_one(table.flow[flow], ports))


def prefiltered(table: FlowTable, ports: frozenset[int], batches: list[list[Region]], flows: list[int]) -> dict:
    """As ``analyze`` reads regions: the prefilter per batch, only candidate rows."""
    collector = collector_for(table, ports)
    for regions in batches:
        collector.on_regions(regions)
    return collector.take(flows)


def every_row(table: FlowTable, ports: frozenset[int], batches: list[list[Region]], flows: list[int]) -> dict:
    """Every row on every region (before the prefilter)."""
    collector = collector_for(table, ports)
    for regions in batches:
        for region in regions:
            collector.on_region(region)
    return collector.take(flows)


def kernel(batches: list[list[Region]]) -> list[int]:
    """The prefilter alone: each region's candidate rows."""
    masks = []
    for regions in batches:
        masks += prefilter.candidate_rows([r.data for r in regions],
                                          [not (r.index == 0 and r.at_start) for r in regions])
    return masks


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("captures", nargs="+")
    ap.add_argument("--repeat", type=int, default=3, help="keep the best of this many runs")
    args = ap.parse_args(argv)
    ports = Watchlist.default().service_ports
    prefilter.candidate_rows([b"warm up"], [False])     # compiled (or loaded from the cache) before timing
    totals = {"prefiltered": 0.0, "every row": 0.0, "kernel": 0.0}
    regions = candidates = 0
    for path in args.captures:
        table, batches = regions_of(path)
        flows = sorted({r.slot // 2 for regions_ in batches for r in regions_})

        runs = {"prefiltered": (prefiltered, (table, ports, batches, flows)),
                "every row": (every_row, (table, ports, batches, flows)),
                "kernel": (kernel, (batches,))}
        results = {}
        for name, (fn, fn_args) in runs.items():
            best = float("inf")
            for _ in range(args.repeat):
                t = time.process_time()
                results[name] = fn(*fn_args)
                best = min(best, time.process_time() - t)
            totals[name] += best
        if results["prefiltered"] != results["every row"]:
            print(f"{path}: the prefilter changed the detections", file=sys.stderr)
            return 1
        regions += len(results["kernel"])
        candidates += sum(1 for m in results["kernel"] if m)
    print(f"{len(args.captures)} capture(s), {regions} regions, {candidates} with a candidate row "
          f"({100 * candidates / max(regions, 1):.1f} %); detections identical")
    print(f"detectors, every row on every region: {totals['every row']:.3f} CPU s")
    print(f"detectors, prefiltered:               {totals['prefiltered']:.3f} CPU s "
          f"(of which the prefilter kernel, islands aside: {totals['kernel']:.3f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
