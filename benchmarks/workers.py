#!/usr/bin/env python3
"""``inspector analyze --workers N``: the speed-up of 2 workers over 1 on the
real-traffic capture, where the rest of the time goes (Amdahl), and the peak
RSS of every process when a folder of many captures is analysed in one run.

    python benchmarks/workers.py                       # both parts, 3 rounds
    python benchmarks/workers.py --part ratio --repeat 5
    python benchmarks/workers.py --part many --data-dir /work/bench

``ratio``: ``python -m inspector analyze real-x32.pcap --quiet --json OUT
--workers N`` for N = 1 and 2, interleaved, ``--repeat`` rounds: wall (best
and median), CPU seconds (user+sys of the whole process tree: the workers are
waited for, so their time is in the parent's wait4 rusage), wall(1)/wall(2),
and whether the JSON outputs are byte-identical. Then the same stages timed
inside one process (interpreter, imports, the tasks, ``assemble``, the JSON),
the serial part, and the ratio that bounds on 2 cores.

``many``: ``--many-files`` captures of the many-flows kind (make_capture.py
``--profile many``, a seed and a start time each, so the folder is one
rotated capture of distinct flows), analysed as one capture (``DIR``) and as
one capture per file (``--group-by file``), with ``--workers 2``: the peak
RSS of each process of the tree (psutil, sampled), the largest exact peak
(GNU time ``%M``), wall and CPU.
"""

from __future__ import annotations

import argparse
import filecmp
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

import psutil

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(BENCH))

from run import CAPTURES_FULL, GNU_TIME, ensure_capture, wait_sampling, warm_cache

TARGET_RATIO = 1.6
TARGET_RSS_MB = 500
SAMPLE_EVERY = 0.05  # seconds between RSS samples of the process tree

STAGES = r"""
import time
started, started_cpu = time.perf_counter(), time.process_time()
import atexit, gc, os, sys
from pathlib import Path
gc.disable()
import inspector.cli  # what the command imports before it reads its options
from inspector.analysis import analyze
from inspector.report.writers import Reports
from inspector.spool import ReportSpool
import pyarrow as pa
gc.freeze(); gc.enable()
stages = {"imports": (time.perf_counter() - started, time.process_time() - started_cpu)}
import inspector.analysis as analysis
from inspector import parallel
def timed(module, name, stage, each=False):
    inner = getattr(module, name)
    def run(*args, **kwargs):
        wall, cpu = time.perf_counter(), time.process_time()
        try:
            return inner(*args, **kwargs)
        finally:
            took = (time.perf_counter() - wall, time.process_time() - cpu)
            if each:  # a task, maybe in a worker: told on stderr
                os.write(2, f"\ntask {took[0]} {took[1]}\n".encode())  # one write: the workers' lines stay whole
            else:
                stages[stage] = took
    setattr(module, name, run)
timed(parallel, "run_local", "tasks"); timed(parallel, "run_here", "tasks"); timed(analysis, "assemble", "assemble")
timed(parallel, "run_task", "task", each=True)
capture, out, workers = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
pa.set_memory_pool(pa.system_memory_pool())
with ReportSpool() as spool:
    # one capture with workers=1 takes analyze's single-process path: the same pipeline, timed as one task here
    result = analysis._analyze_tasks([[analysis.inputs_of(capture)[0]]], workers, None,
                                     watch=analysis.Watchlist.default(), detectors=True, secrets=True,
                                     timeouts=analysis.DEFAULT_TIMEOUTS, store=spool, on_progress=None)
    wall, cpu = time.perf_counter(), time.process_time()
    Reports(json_path=out).write_streamed(result, spool)
    stages["JSON report"] = (time.perf_counter() - wall, time.process_time() - cpu)
print(*(f"{name.replace(' ', '_')}={wall},{cpu}" for name, (wall, cpu) in stages.items()))
atexit._run_exitfuncs()
os._exit(0)  # as the command exits: no teardown
"""


# --------------------------------------------------------------------------
# one measured run of the command line
# --------------------------------------------------------------------------

def environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_cli(args: list[str]) -> dict:
    """``python -m inspector ARGS``: wall, CPU of the tree, peak RSS of each
    process (sampled: parent and workers), the largest exact peak (GNU time)."""
    command = [sys.executable, "-m", "inspector", *args]
    fd, time_file = tempfile.mkstemp(prefix="gnutime-")
    os.close(fd)
    if GNU_TIME:
        command = [GNU_TIME, "-f", "%M", "-o", time_file, "--", *command]
    with tempfile.TemporaryFile() as errors:  # not a pipe: nothing reads it before the command ends
        status, usage, peaks, analyser, wall = _sampled(command, errors)
        if os.waitstatus_to_exitcode(status) != 0:
            errors.seek(0)
            raise SystemExit(f"failed: {' '.join(args)}\n{errors.read().decode(errors='replace')}")
    exact = None
    try:
        exact = int(Path(time_file).read_text().split()[-1]) / 1024 if GNU_TIME else None
    except (OSError, ValueError, IndexError):
        pass
    finally:
        os.unlink(time_file)
    parent = peaks.pop(analyser[0], 0) / 2**20 if analyser else 0.0
    return {"wall": wall, "cpu": usage.ru_utime + usage.ru_stime, "parent_mb": parent,
            "workers_mb": sorted((rss / 2**20 for rss in peaks.values()), reverse=True), "exact_max_mb": exact}


def _sampled(command: list[str], errors: BinaryIO) -> tuple[int, resource.struct_rusage, dict[int, int], list[int], float]:
    """Run ``command``, sampling the RSS of its process tree: (wait status,
    rusage, pid -> largest RSS, [pid of the inspector process], wall seconds)."""
    peaks: dict[int, int] = {}  # pid -> largest RSS sampled
    analyser: list[int] = []  # the pid of the inspector process (the workers' parent)
    started = time.perf_counter()
    process = subprocess.Popen(command, env=environment(), cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=errors, stdin=subprocess.DEVNULL)
    try:
        root = psutil.Process(process.pid)
    except psutil.Error:  # ended already
        root = None

    def sample() -> bool:
        try:
            tree = root.children(recursive=True) + ([] if GNU_TIME else [root])
        except psutil.Error:
            return False
        for one in tree:
            try:
                rss = one.memory_info().rss
                if not analyser and (one.pid == root.pid or one.ppid() == root.pid):
                    analyser.append(one.pid)
            except psutil.Error:
                continue
            peaks[one.pid] = max(rss, peaks.get(one.pid, 0))
        return True

    status, usage, ended = wait_sampling(process.pid, SAMPLE_EVERY, sample if root else lambda: False)
    return status, usage, peaks, analyser, ended - started


# --------------------------------------------------------------------------
# ratio: 2 workers against 1 on the real-traffic capture
# --------------------------------------------------------------------------

def ratio(capture: Path, repeat: int, workdir: Path) -> None:
    warm_cache(str(capture))
    runs: dict[int, list[dict]] = {1: [], 2: []}
    identical = True
    run_cli(["analyze", str(capture), "--quiet", "--json", str(workdir / "warm.json"), "--workers", "2"])  # untimed
    for round_ in range(repeat):
        for workers in (1, 2):
            out = workdir / f"w{workers}.json"
            runs[workers].append(run_cli(["analyze", str(capture), "--quiet", "--json", str(out),
                                          "--workers", str(workers)]))
            print(f"  round {round_ + 1}, --workers {workers}: wall {runs[workers][-1]['wall']:.2f} s, "
                  f"CPU {runs[workers][-1]['cpu']:.2f} s", flush=True)
        identical &= filecmp.cmp(workdir / "w1.json", workdir / "w2.json", shallow=False)
    print(f"\n`inspector analyze {capture.name} --quiet --json OUT --workers N`, {repeat} rounds interleaved:\n")
    print("| workers | wall best s | wall median s | CPU median s | peak RSS MB parent / workers |")
    print("|---|---|---|---|---|")
    for workers, measured in runs.items():
        walls, cpus = [m["wall"] for m in measured], [m["cpu"] for m in measured]
        peak = max(measured, key=lambda m: m["parent_mb"])
        rss = f"{peak['parent_mb']:.0f}" + (f" / {max(max(m['workers_mb'], default=0) for m in measured):.0f}"
                                             if workers > 1 else "")
        print(f"| {workers} | {min(walls):.2f} | {statistics.median(walls):.2f} | "
              f"{statistics.median(cpus):.2f} | {rss} |")
    best = min(m["wall"] for m in runs[1]) / min(m["wall"] for m in runs[2])
    median = statistics.median(m["wall"] for m in runs[1]) / statistics.median(m["wall"] for m in runs[2])
    verdict = "met" if best >= TARGET_RATIO else "NOT met"
    print(f"\nwall(1) / wall(2): {best:.2f}x best, {median:.2f}x median (target >= {TARGET_RATIO}x: {verdict}); "
          f"JSON outputs byte-identical in every round: {'yes' if identical else 'NO'}")
    amdahl(capture, workdir)


def stages(capture: Path, workdir: Path, workers: int) -> dict[str, tuple[float, ...]]:
    """(wall, CPU) seconds of each stage of the command, timed inside one
    process, and of each task (in the workers)."""
    before, started = os.times(), time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    after = os.times()
    interpreter = (time.perf_counter() - started,
                   after.children_user - before.children_user + after.children_system - before.children_system)
    before = os.times()
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", STAGES, str(capture), str(workdir / "stages.json"), str(workers)],
                          env=environment(), cwd=REPO, check=True, capture_output=True, text=True)
    total = time.perf_counter() - started
    after = os.times()
    measured = {"interpreter start": interpreter}
    for field in done.stdout.split():
        name, values = field.split("=")
        measured[name.replace("_", " ")] = tuple(map(float, values.split(",")))
    tasks = [tuple(map(float, found)) for found in re.findall(r"^task ([\d.e-]+) ([\d.e-]+)$", done.stderr, re.MULTILINE)]
    if len(tasks) != workers:
        raise SystemExit(f"expected {workers} task times from the stage run, got {len(tasks)}:\n{done.stderr}")
    measured["tasks"] = (measured["tasks"][0], measured["tasks"][1])  # the parent's CPU meanwhile
    measured["each task"] = tuple(cpu for _, cpu in tasks)
    measured["total"] = (total, (after.children_user - before.children_user)
                         + (after.children_system - before.children_system))
    return measured


def amdahl(capture: Path, workdir: Path, rounds: int = 3) -> None:
    """The serial stages against the tasks, and the speed-up that bounds on 2 free cores."""
    runs = {workers: [stages(capture, workdir, workers) for _ in range(rounds)] for workers in (1, 2)}
    best = {workers: min(measured, key=lambda m: m["total"][1]) for workers, measured in runs.items()}
    one, two = best[1], best[2]
    print(f"\nWhere the time goes: the command's stages timed in one process (the run of least CPU of {rounds}; "
          "wall / CPU seconds):\n")
    print("| stage | workers 1 | workers 2 |")
    print("|---|---|---|")
    for name in ("interpreter start", "imports", "tasks", "assemble", "JSON report", "total"):
        what = {"tasks": "tasks (parent's CPU meanwhile)", "assemble": "assemble (merge, events, findings)",
                "total": "total (CPU: the process tree)"}.get(name, name)
        print(f"| {what} | {one[name][0]:.2f} / {one[name][1]:.2f} | {two[name][0]:.2f} / {two[name][1]:.2f} |")
    print(f"| each task's CPU (in the workers) | {' + '.join(f'{c:.2f}' for c in one['each task'])} | "
          f"{' + '.join(f'{c:.2f}' for c in two['each task'])} |")
    serial = sum(one[name][1] for name in ("interpreter start", "imports", "assemble", "JSON report"))
    work = sum(one["each task"])
    tail = max(two["each task"])
    spread = (sum(two["each task"]) + two["tasks"][1]) / 2
    bound = (serial + work) / (serial + max(tail, spread))
    perfect = (serial + work) / (serial + work / 2)
    print(f"\nSerial CPU (interpreter, imports, assemble, JSON): {serial:.2f} s; the one task: {work:.2f} s. "
          f"On 2 free cores the best wall ratio is (serial + task) / (serial + the longer of the 2 tasks "
          f"({tail:.2f} s; each reads and decodes every packet) or half of all the CPU of the tasks with the "
          f"parent's storing ({spread:.2f} s)) = {bound:.2f}x; with the task halved exactly, {perfect:.2f}x.")
    # (serial + work) / (serial + longest) >= target  <=>  serial <= (work - target * longest) / (target - 1)
    longest = max(tail, spread)
    needed = (work - TARGET_RATIO * longest) / (TARGET_RATIO - 1)
    print(f"The tasks alone scale {work / longest:.2f}x; " + (
        f"{TARGET_RATIO}x would need the serial part at or below {needed:.2f} s (it is {serial:.2f} s)."
        if needed > 0 else f"so no serial part, however small, gives {TARGET_RATIO}x with these tasks."))


# --------------------------------------------------------------------------
# many: a folder of many captures in one run
# --------------------------------------------------------------------------

def many_folder(data_dir: Path, files: int, packets: int, flows: int) -> Path:
    """``files`` many-flows captures of ``packets`` and ``flows`` each, a seed
    and a start each (file k starts k x SPAN s later: a rotated capture)."""
    folder = data_dir / f"many{files}-{packets}p-{flows}f"
    names = [folder / f"part-{k:04d}.pcap" for k in range(files)]
    if all(name.exists() for name in names):
        return folder
    import make_capture

    folder.mkdir(parents=True, exist_ok=True)
    span = flows / 1000 + 1  # many: 1,000 new flows a second, a second apart
    print(f"generating {files} captures of {packets:,} packets, {flows:,} flows -> {folder}", flush=True)
    for k, name in enumerate(names):
        if not name.exists():
            make_capture.generate(str(name), "many", packets, flows, seed=1000 + k, pool_mib=4, quiet=True,
                                  start_s=k * span)
    return folder


def many(folder: Path, workdir: Path, workers: int) -> None:
    files = sorted(folder.glob("*.pcap"))
    size = sum(f.stat().st_size for f in files)
    for one in files:
        warm_cache(str(one))
    print(f"\n{len(files)} captures, {size / 1e6:,.0f} MB, in {folder}; `inspector analyze DIR --quiet --json OUT "
          f"--workers {workers} [--group-by file]`:\n")
    print("| grouping | wall s | CPU s | peak RSS MB parent | peak RSS MB workers (largest) | largest exact (GNU time) |")
    print("|---|---|---|---|---|---|")
    for grouping in ("none", "file"):
        result = run_cli(["analyze", str(folder), "--quiet", "--json", str(workdir / f"many-{grouping}.json"),
                          "--workers", str(workers), "--group-by", grouping])
        exact = f"{result['exact_max_mb']:.0f}" if result["exact_max_mb"] else "-"
        largest = max([result["parent_mb"], *result["workers_mb"]])
        print(f"| {grouping} | {result['wall']:.2f} | {result['cpu']:.2f} | {result['parent_mb']:.0f} | "
              f"{max(result['workers_mb'], default=0):.0f} ({len(result['workers_mb'])} workers) | {exact} |"
              + ("" if largest <= TARGET_RSS_MB else f" over {TARGET_RSS_MB} MB"), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("ratio", "many", "all"), default="all")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds of --workers 1 and 2")
    parser.add_argument("--data-dir", type=Path, default=BENCH / ".data", help="where the captures are kept")
    parser.add_argument("--many-files", type=int, default=100)
    parser.add_argument("--many-packets", type=int, default=20_000, help="packets of each of the many captures")
    parser.add_argument("--many-flows", type=int, default=2_000, help="flows of each of the many captures")
    parser.add_argument("--workers", type=int, default=2, help="workers of the many run")
    args = parser.parse_args()
    args.data_dir.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="inspector-workers-") as tmp:
        if args.part in ("ratio", "all"):
            ensure_capture(args.data_dir, "real", CAPTURES_FULL["real"], 1, False)
            ratio(args.data_dir / CAPTURES_FULL["real"].file_name(1), args.repeat, Path(tmp))
        if args.part in ("many", "all"):
            folder = many_folder(args.data_dir, args.many_files, args.many_packets, args.many_flows)
            many(folder, Path(tmp), args.workers)
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
