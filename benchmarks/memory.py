#!/usr/bin/env python3
"""Memory over a long run with many short flows: flat, as the sensor runs it.

Generates (make_capture.py, profile ``many``: 1,000 new short TCP flows per
second, each closed by FIN) one long capture, then runs inspector's
pipeline over it in a fresh process per configuration, sampling the
process's RSS as the packets go by:

``sensor``     what ``inspector live`` does: flows end on timeouts (5 s after
               their FINs, swept every second), ended flows' tables go to a
               spool folder on disk until the final reports
``no-expiry``  every flow kept open until the input ends (inspector before
               flow expiry; what a tool without timeouts holds)
``analyze``    what ``inspector analyze`` does: its timeouts (300 s idle), the
               ended flows' tables kept in memory until the final reports

With ``--udp-mix`` the capture is udp_mix.py's instead: short TCP flows with
10 % UDP flows of a few datagrams that never close (each held open until
its idle timeout, so for the whole capture).

For each run it splits the peak: the flow table's arrays (state, pools of
region rows, histograms, windows: their peak nbytes during the run), the
ended flows' tables waiting in memory for the final reports (pandas deep
size, after the run), RSS after the run and the peak with the reports. It
also measures the peak RSS of the command line itself (GNU time), ``python
-m inspector analyze FILE --quiet --json OUT``.

Prints RSS at each tenth of the input, the growth from 20 % to 100 % of it
(flat: ~1.0), the table's peak of open flows against flows seen, the peak
RSS of the final report phase (the spooled tables read back once), and,
when nfstream is installed, nfstream's peak RSS over the same capture for
comparison (measured in the same run).

    python benchmarks/memory.py --quick           # 1M packets, 100k flows (~1 min)
    python benchmarks/memory.py                   # 5M packets, 500k flows, 8.3 min of traffic
    python benchmarks/memory.py --udp-mix         # 100k flows (10 % UDP), ~0.94M packets
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

import udp_mix  # the sibling generator of the UDP mix
from run import ensure_capture, run_measured  # noqa: E402 - the sibling harness: same captures, same measure

CHILD = r"""
import json, resource, sys, time
import numpy as np
import psutil
from inspector.analysis import assemble
from inspector.capture.reader import CaptureReader
from inspector.live import LIVE_TIMEOUTS
from inspector.meters import default_meters
from inspector.pipeline import DEFAULT_TIMEOUTS, ClosedTables, Pipeline, Timeouts
from inspector.spool import SpooledTables
from inspector.watch import Watchlist

path, mode, packets = sys.argv[1], sys.argv[2], int(sys.argv[3])
me = psutil.Process()
timeouts = {"sensor": LIVE_TIMEOUTS, "analyze": DEFAULT_TIMEOUTS}.get(mode, Timeouts(idle=1e9, after_close=1e9))
store = SpooledTables() if mode == "sensor" else ClosedTables()
watch = Watchlist.default()
pipeline = Pipeline(watch, [path], meters=default_meters(), on_closed=store.add, timeouts=timeouts)  # as analyze_readers
samples, marks, peak_open, peak_table = [], [packets * k // 10 for k in range(1, 11)], 0, 0
t0 = time.perf_counter()

def table_mb(table):
    return sum(a.nbytes for a in vars(table).values() if isinstance(a, np.ndarray)) / 1e6

def on_batch(reader, done, _flows):
    global peak_open, peak_table
    peak_open = max(peak_open, pipeline.table.open_flows)
    peak_table = max(peak_table, table_mb(pipeline.table))
    while marks and done >= marks[0]:
        samples.append({"packets": marks.pop(0), "rss_mb": me.memory_info().rss / 1e6})

stats = pipeline.run([CaptureReader(path)], on_batch=on_batch)
run_s = time.perf_counter() - t0
rss_after_run = me.memory_info().rss / 1e6
ended_mb = 0.0 if mode == "sensor" else sum(
    part.memory_usage(deep=True).sum() for parts in store.tables().values() for part in parts) / 1e6
result = assemble(store.tables(), stats, watch)
print(json.dumps({"mode": mode, "samples": samples, "run_s": run_s, "wall_s": time.perf_counter() - t0,
                  "flows": len(result.flows), "flows_seen": pipeline.table.flows_seen,
                  "peak_open_flows": peak_open, "table_ids": pipeline.table.n_ids,
                  "peak_table_mb": peak_table, "ended_tables_mb": ended_mb, "rss_after_run_mb": rss_after_run,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3}))
"""


def run_mode(path: Path, mode: str, packets: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(path), mode, str(packets)], capture_output=True,
                          text=True, cwd=REPO, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
                          check=False)
    if done.returncode:
        sys.exit(f"{mode} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cli_peak(path: Path) -> float | None:
    """Peak RSS (MB) of ``python -m inspector analyze FILE --quiet --json OUT`` (GNU time, as run.py measures)."""
    with tempfile.TemporaryDirectory() as tmp:
        done = run_measured([sys.executable, "-m", "inspector", "analyze", str(path), "--quiet", "--json",
                             str(Path(tmp) / "out.json")], timeout=3600, mem_limit=None, cwd=REPO,
                            env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}, discard_stdout=True)
    return done["max_rss_mb"] if done["status"] == "ok" else None


def nfstream_peak(path: Path) -> float | None:
    """nfstream's peak RSS (MB) over the capture, measured as run.py measures it (GNU time)."""
    try:
        import nfstream  # noqa: F401
    except ImportError:
        return None
    done = run_measured([sys.executable, str(BENCH / "nfstream_count.py"), str(path)], timeout=1800, mem_limit=None)
    return done["max_rss_mb"] if done["status"] == "ok" else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1M packets, 100k flows")
    parser.add_argument("--udp-mix", action="store_true", help="100k flows, 10%% of them UDP that never close")
    parser.add_argument("--data-dir", type=Path, default=BENCH / ".data")
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    if args.udp_mix:
        flows, modes = 100_000, ("analyze", "sensor")
        path = args.data_dir / f"udp-mix-{flows}f.pcap"
        count = Path(f"{path}.packets")
        if not (path.exists() and count.exists()):
            count.write_text(str(udp_mix.generate(path, flows, 0.1)))
        packets = int(count.read_text())
    else:
        packets, flows = (1_000_000, 100_000) if args.quick else (5_000_000, 500_000)
        modes = ("sensor", "no-expiry", "analyze")
        path = Path(ensure_capture(args.data_dir, "many", ("many", packets, flows), seed=1, regen=False)["path"])
    nfstream = nfstream_peak(path)
    cli = cli_peak(path)
    results = {mode: run_mode(path, mode, packets) for mode in modes}
    print(f"\n{packets:,} packets, {flows:,} short flows{' (10% UDP)' if args.udp_mix else ''}, "
          f"{flows / 1000:.0f} s of traffic ({path.stat().st_size / 1e9:.2f} GB)\n")
    print(f"{'input read':>11} " + " ".join(f"{mode:>12}" for mode in results) + "   (RSS, MB)")
    for k in range(10):
        row = [results[m]["samples"][k]["rss_mb"] if k < len(results[m]["samples"]) else float("nan")
               for m in results]
        print(f"{(k + 1) * 10:>10}% " + " ".join(f"{v:>12.0f}" for v in row))
    print()
    for mode, r in results.items():
        s = r["samples"]
        growth = s[-1]["rss_mb"] / s[1]["rss_mb"] if len(s) >= 2 else float("nan")
        print(f"{mode:>10}: RSS at 100% / at 20% of the input = {growth:.2f}; peak RSS {r['peak_rss_mb']:.0f} MB "
              f"(with the final reports); open flows at most {r['peak_open_flows']:,} of {r['flows_seen']:,} seen "
              f"(table ids {r['table_ids']:,}); {r['wall_s']:.1f} s in all, {packets / r['run_s'] / 1e3:.0f} k pkts/s "
              f"before the reports")
    print("\nwhere the peak goes (MB): flow table arrays at their peak, ended flows' tables held for the "
          "reports (after the run), RSS after the run, peak RSS with the reports")
    for mode, r in results.items():
        print(f"{mode:>10}: table {r['peak_table_mb']:.0f}, ended tables {r['ended_tables_mb']:.0f}, "
              f"after run {r['rss_after_run_mb']:.0f}, peak {r['peak_rss_mb']:.0f}")
    if cli is not None:
        print(f"  inspector analyze FILE --json: peak RSS {cli:.0f} MB")
    if nfstream is not None:
        print(f"  nfstream: peak RSS {nfstream:.0f} MB over the same capture")
    if args.out:
        args.out.write_text(json.dumps({"packets": packets, "flows": flows, "results": results,
                                        "cli_peak_rss_mb": cli, "nfstream_peak_rss_mb": nfstream}, indent=1))


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"\n(benchmark took {time.perf_counter() - t0:.0f} s)")
