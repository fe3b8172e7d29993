#!/usr/bin/env python3
"""What one close of ended flows costs (``Pipeline._tables``), before and after.

Each close turns the state of the flows that ended together into their
tables; its fixed cost matters whenever closes are frequent (the live
sensor sweeps every second). This runs ``inspector.analyze`` on each
capture with ``Timeouts(sweep=..., batch=1)`` (so closes of every size
happen), times every call of ``Pipeline._tables`` and prints, per size
bucket of k flows, the median ms per close and ms per flow, plus the CPU
seconds (user+sys) of the whole ``analyze``.

"before" is the package of another git revision (default ``main``),
extracted with ``git archive`` into a temporary folder; "after" is the
working tree's. Each run is a child process with that package first on
``PYTHONPATH``.

    python benchmarks/close_cost.py captures/qemu-tls.pcap.gz /tmp/many.pcap
    python benchmarks/close_cost.py --sweep 1 --sweep 30 --before REV CAPTURE ...
    python benchmarks/close_cost.py --after-only CAPTURE
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BUCKETS = ((1, 1), (2, 10), (11, 100), (101, 1000), (1001, 10**9))

CHILD = r"""
import json, resource, statistics, sys, time
import inspector
from inspector.pipeline import Pipeline
from inspector.timeouts import Timeouts

path, sweep, batch, warm_up = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
assert inspector.__file__.startswith(sys.argv[5]), inspector.__file__
inspector.analyze(warm_up)  # imports and compiled kernels
closes = []
tables = Pipeline._tables

def timed(self, fids, *args, **kwargs):
    start = time.perf_counter()
    out = tables(self, fids, *args, **kwargs)
    closes.append((len(fids), time.perf_counter() - start))
    return out

Pipeline._tables = timed
before = resource.getrusage(resource.RUSAGE_SELF)
result = inspector.analyze(path, timeouts=Timeouts(sweep=sweep, batch=batch))
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
print(json.dumps({"cpu": cpu, "flows": len(result.flows), "closes": closes}))
"""


def run(package_root: Path, capture: str, sweep: float, batch: int, numba_cache: Path) -> dict:
    """One ``analyze`` in a child whose ``inspector`` is the one under ``package_root`` (its working
    directory, which ``python -c`` puts first on the path)."""
    env = dict(os.environ, PYTHONPATH=str(package_root), NUMBA_CACHE_DIR=str(numba_cache))
    out = subprocess.run([sys.executable, "-c", CHILD, capture, str(sweep), str(batch),
                          str(REPO / "captures" / "http-api.pcap"), str(package_root)], cwd=package_root, env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def report(label: str, result: dict) -> None:
    closes = result["closes"]
    total = sum(s for _, s in closes)
    print(f"  {label:6} analyze CPU {result['cpu']:7.2f} s, {result['flows']} flows, {len(closes)} closes "
          f"costing {total:6.2f} s wall")
    for low, high in BUCKETS:
        times = sorted(s for k, s in closes if low <= k <= high)
        flows = sum(k for k, _ in closes if low <= k <= high)
        if not times:
            continue
        median = times[len(times) // 2]
        print(f"         k {low:>5}-{high if high < 10**9 else '':<5} {len(times):5} closes: median "
              f"{1000 * median:8.2f} ms/close, {1000 * sum(times) / flows:7.3f} ms/flow")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("captures", nargs="+")
    parser.add_argument("--sweep", type=float, action="append", help="Timeouts.sweep (s); repeatable")
    parser.add_argument("--batch", type=int, default=1, help="Timeouts.batch")
    parser.add_argument("--before", default="main", help="git revision to compare with")
    parser.add_argument("--after-only", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        sides = [("after", REPO)]
        if not args.after_only:
            archive = subprocess.run(["git", "archive", args.before, "inspector"], cwd=REPO, capture_output=True,
                                     check=True).stdout
            (Path(tmp) / "before").mkdir()
            subprocess.run(["tar", "-x", "-C", str(Path(tmp) / "before")], input=archive, check=True)
            sides.insert(0, ("before", Path(tmp) / "before"))
        for capture in args.captures:
            for sweep in args.sweep or [1.0]:
                print(f"{capture}: Timeouts(sweep={sweep}, batch={args.batch})")
                for label, root in sides:
                    report(label, run(root, str(Path(capture).resolve()), sweep, args.batch,
                                      Path(tmp) / f"numba-{label}"))


if __name__ == "__main__":
    main()
