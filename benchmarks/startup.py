#!/usr/bin/env python3
"""Fixed cost of inspector: CPU seconds (user+sys) of the commands a user
starts most, with warm kernel caches, and where the time of a small
``analyze`` goes.

    python benchmarks/startup.py              # 5 runs each, medians
    python benchmarks/startup.py --repeat 9 --capture captures/http-api.pcap
    python benchmarks/startup.py --without-scipy   # as where scipy is not installed

The commands run as ``python -m inspector`` from this checkout, each in a
process of its own; the first ``analyze`` (untimed) fills the kernel cache.
The breakdown runs the stages of ``inspector analyze CAPTURE --json OUT -q``
one after another in one process and prints the CPU seconds of each
(cumulative imports: a module already loaded by an earlier stage is free).

scipy is no dependency of inspector; numba's BLAS check would import
``scipy.linalg`` where it is installed, but loading a cached kernel no
longer runs it (``inspector.jit._KernelCache``). ``--without-scipy`` hides
scipy from the measured processes, as on a plain install.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CAPTURE = REPO / "captures" / "http-api.pcap"  # 52 packets, 3 flows

HIDE_SCIPY = "import sys; sys.modules['scipy'] = None\n"
STAGES = r"""
import gc, sys, time
gc.disable()  # as the analyze command imports: GC off, then frozen
marks = [("interpreter start", time.process_time())]
def mark(name):
    marks.append((name, time.process_time()))
import click; mark("import click")
import numpy; mark("import numpy")
import pandas; mark("import pandas (and pyarrow)")
import numba; mark("import numba")
from inspector.analysis import analyze; mark("import inspector.analysis")
gc.freeze(); gc.enable()
from inspector import jit
loading = [0.0]
load_overload = jit._KernelCache.load_overload
def timed_load(self, sig, target_context):
    start = time.process_time()
    try:
        return load_overload(self, sig, target_context)
    finally:
        loading[0] += time.process_time() - start
jit._KernelCache.load_overload = timed_load
from pathlib import Path
result = analyze([Path(sys.argv[1])])
marks.append(("analyze: cached kernels loaded", marks[-1][1] + loading[0]))
mark("analyze: the rest (reading, flows, tables)")
from inspector.report.writers import Reports
Reports(json_path=Path(sys.argv[2])).write(result); mark("write JSON")
previous = 0.0
for name, at in marks:
    print(f"  {name:44} {at - previous:6.3f}")
    previous = at
print(f"  {'total (in process)':44} {previous:6.3f}")
print(f"  scipy.linalg imported: {'scipy.linalg' in sys.modules}")
"""


def cpu_seconds(argv: list[str], env: dict[str, str]) -> float:
    """User+sys CPU seconds of one child process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, env=env, cwd=REPO, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs of each command (median printed)")
    parser.add_argument("--capture", type=Path, default=CAPTURE, help="the small capture analysed")
    parser.add_argument("--without-scipy", action="store_true", help="hide scipy from the measured processes")
    args = parser.parse_args()
    prefix = HIDE_SCIPY if args.without_scipy else ""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package has its .pyc files: so does this checkout
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "out.json")
        argv = ["inspector", "analyze", str(args.capture), "--json", out, "-q"]
        analyze = [python, "-c", (f"{prefix}import runpy, sys; sys.argv = {argv!r}; "
                                  "runpy.run_module('inspector', run_name='__main__')")]
        subprocess.run(analyze, env=env, cwd=REPO, check=True)  # fills the kernel cache
        commands = {
            "python -c pass (the interpreter alone)": [python, "-c", "pass"],
            "inspector --help": [python, "-m", "inspector", "--help"],
            "inspector --version": [python, "-m", "inspector", "--version"],
            "python -c 'import inspector'": [python, "-c", "import inspector"],
            # the floor of any analyze: what it must import, exiting as the command line does (no teardown)
            "python -c 'import numpy, pandas, numba' (the floor)":
                [python, "-c", f"{prefix}import numpy, pandas, numba, os; os._exit(0)"],
            f"inspector analyze {args.capture.name} --json OUT -q": analyze,
        }
        print(f"CPU seconds (user+sys), median of {args.repeat} runs, warm kernel cache:")
        for name, argv in commands.items():
            runs = [cpu_seconds(argv, env) for _ in range(args.repeat)]
            print(f"  {name:52} {statistics.median(runs):6.3f}  (min {min(runs):.3f}, max {max(runs):.3f})")
        print(f"\nWhere a small analyze spends it (one process, {args.capture.name}):")
        subprocess.run([python, "-c", prefix + STAGES, str(args.capture), out], env=env, cwd=REPO, check=True)


if __name__ == "__main__":
    main()
