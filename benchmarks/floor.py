#!/usr/bin/env python3
"""The floor: what inspector could reach on a capture with zero Python overhead.

Times, in this process (CPU seconds, user+sys, best of ``--repeat``), the
parts no design can drop: reading the file into packet batches, the
compiled flow-table kernels (keys, counters, windows, region copies:
``FlowTable.key`` + ``update`` with no detector listening) and the compiled
secret scan (``SecretScanner.scan``). Their sum is the floor; pkts per
CPU-second at the floor is the best inspector could do with every other
step (detectors, classification, tables, findings, JSON, imports) free.
Then the whole analysis: ``inspector.analyze`` in this process (kernels
warm, imports paid) and the CLI in its own process (``analyze --json``,
what benchmarks/run.py times), and nfstream on the same file
(benchmarks/nfstream_count.py in its own process), the CPU of the CLI's
imports alone, and the ratios the targets of issue 11 ask for.

    python benchmarks/floor.py /work/bench/real-x32.pcap
    python benchmarks/floor.py /work/bench/bulk-2000000p-20f-s1.pcap --repeat 3 --no-peer
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from inspector.capture import decode as D
from inspector.capture.reader import CaptureReader
from inspector.errors import InspectorError
from inspector.findings.secrets import SecretScanner
from inspector.flows import kernels as K
from inspector.flows.table import FlowTable

TARGET_VS_NFSTREAM = 2.0  # issue 11: real >= 2x nfstream pkts per CPU-second
TARGET_PPS_CPU = 1e6  # issue 11: bulk, secret scan on, >= 1 M pkts per CPU-second


def _cpu() -> float:
    return time.process_time()


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def kernel_parts(path: str) -> tuple[int, int, int, dict[str, float]]:
    """One pass: CPU seconds of reading, the flow kernels and the secret scan;
    packets, payload bytes, bytes histogrammed (every window)."""
    parts = {"read": 0.0, "flows": 0.0, "scan": 0.0}
    table, scanner = FlowTable(), SecretScanner()
    packets = payload = 0
    reader = iter(CaptureReader(path))
    while True:
        t0 = _cpu()
        batch = next(reader, None)
        t1 = _cpu()
        parts["read"] += t1 - t0
        if batch is None:
            break
        flow_ids, dirs = table.add(batch)
        t2 = _cpu()
        scanner.scan(batch, flow_ids, dirs, table.slot)
        t3 = _cpu()
        parts["flows"] += t2 - t1
        parts["scan"] += t3 - t2
        packets += batch.n
        payload += int(batch.fields[D.F_PAYLOAD_CAP].sum())
    histogrammed = int(table.slot[:, K.SL_COVERED].sum())  # every window, finished or filling
    return packets, payload, histogrammed, parts


def _warm() -> None:
    """Compile (or load) the kernels on a shipped capture, outside the timings."""
    shipped = REPO / "captures" / "http-api.pcap"
    kernel_parts(str(shipped))
    import inspector
    inspector.analyze(shipped)


def in_process_analyze(path: str) -> float:
    import inspector
    t0 = _cpu()
    inspector.analyze(path)
    return _cpu() - t0


def in_own_process(cmd: list[str], env: dict | None = None) -> float:
    """CPU seconds (user+sys) of a command and its children."""
    before = _children_cpu()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return _children_cpu() - before


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture")
    ap.add_argument("--repeat", type=int, default=2, help="runs of each measurement; the best is kept")
    ap.add_argument("--no-peer", action="store_true", help="do not run nfstream")
    ap.add_argument("--no-cli", action="store_true", help="do not run the CLI in its own process")
    ap.add_argument("--json", help="write the figures here too")
    args = ap.parse_args()
    path = args.capture
    if not Path(path).is_file():
        print(f"floor.py: {path}: no such capture file", file=sys.stderr)
        return 2
    try:
        kernel_parts(path)  # untimed: a file that is no capture fails here; the file enters the page cache
    except InspectorError as exc:
        print(f"floor.py: {exc}", file=sys.stderr)
        return 2
    _warm()
    best: dict[str, float] = {}
    packets = payload = histogrammed = 0
    for _ in range(args.repeat):
        packets, payload, histogrammed, parts = kernel_parts(path)
        for name, cpu in parts.items():
            best[name] = min(best.get(name, cpu), cpu)
    best["floor"] = best["read"] + best["flows"] + best["scan"]
    best["analyze()"] = min(in_process_analyze(path) for _ in range(args.repeat))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    imports = [sys.executable, "-c", "import inspector.analysis, inspector.report.writers"]
    best["imports"] = min(in_own_process(imports, env) for _ in range(args.repeat))
    if not args.no_cli:
        with tempfile.TemporaryDirectory() as tmp:
            cmd = [sys.executable, "-m", "inspector", "analyze", path, "--quiet", "--json", f"{tmp}/out.json"]
            best["CLI"] = min(in_own_process(cmd, env) for _ in range(args.repeat))
    if not args.no_peer:
        cmd = [sys.executable, str(BENCH / "nfstream_count.py"), path]
        best["nfstream"] = min(in_own_process(cmd) for _ in range(args.repeat))

    size = Path(path).stat().st_size
    print(f"{path}: {packets:,} packets, {size / 1e6:.0f} MB file, {payload / 1e6:.0f} MB payload "
          f"({histogrammed / 1e6:.0f} MB of it histogrammed); CPU s (user+sys), best of {args.repeat}")
    print(f"{'part':<34}{'CPU s':>8}{'pkts/CPU-s':>13}{'MB/CPU-s':>10}")
    labels = {
        "read": "read (file -> packet batches)",
        "flows": "flow kernels (key, update_flows)",
        "scan": "secret scan (SecretScanner.scan)",
        "floor": "floor = read + flows + scan",
        "imports": "CLI imports (own process)",
        "analyze()": "analyze() in process (warm)",
        "CLI": "CLI analyze --json (own process)",
        "nfstream": "nfstream (own process)",
    }
    for name, label in labels.items():
        if name == "imports":
            print(f"{label:<34}{best[name]:8.2f}")
        elif name in best:
            cpu = best[name]
            print(f"{label:<34}{cpu:8.2f}{packets / cpu / 1e3:12.0f}k{size / 1e6 / cpu:10.0f}")
    if "nfstream" in best:
        need = best["nfstream"] / TARGET_VS_NFSTREAM
        print(f"\n{TARGET_VS_NFSTREAM:g}x nfstream needs <= {need:.2f} CPU s on this capture; "
              f"the floor alone is {best['floor'] / need:.2f}x that budget "
              f"(floor vs nfstream: {best['nfstream'] / best['floor']:.2f}x, "
              + ", ".join(f"{k} vs nfstream: {best['nfstream'] / best[k]:.2f}x"
                          for k in ("analyze()", "CLI") if k in best) + ")")
    need = packets / TARGET_PPS_CPU
    print(f"{TARGET_PPS_CPU / 1e6:g} M pkts/CPU-s needs <= {need:.2f} CPU s on this capture; "
          f"the floor alone is {best['floor'] / need:.2f}x that budget")
    print(f"above the floor: analyze() {best['analyze()'] - best['floor']:.2f} CPU s of Python work"
          + (f"; the CLI adds {best['CLI'] - best['analyze()']:.2f} CPU s ({best['imports']:.2f} of them imports)"
             if "CLI" in best else ""))
    if args.json:
        Path(args.json).write_text(json.dumps({"capture": path, "packets": packets, "cpu_s": best}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
