#!/usr/bin/env python3
"""Throughput and memory benchmark: inspector against tshark, nfstream and ndpiReader.

Generates the captures if missing (benchmarks/.data/, see make_capture.py):
synthetic ones, and `real`, the shipped captures replicated 32 times with
rewritten addresses. Then measures, per capture, every tool in its own
process: wall time, CPU time (user+sys of the process tree), packets per
second and per CPU-second, MB/s, peak memory and flows found. Prints a
table, inspector's ratios against each peer (per CPU-second and wall), peak
RSS side by side, a memory-boundedness check (inspector's peak RSS on the
bulk capture against a capture with the same 20 flows and half the packets),
inspector's fixed cost (best CPU of 3 runs on the 52-packet
captures/http-api.pcap, numba's cache warm) and the targets of issue 11,
met or not.

    python benchmarks/run.py --quick            # smoke run, small captures
    python benchmarks/run.py --out results.json # real, many, bulk (~15-25 min)
    python benchmarks/run.py --captures many-500k,udp-mix --tools inspector,nfstream  # memory

See benchmarks/README.md for the meaning of each column.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

try:
    import psutil
except ImportError:  # tree RSS sampling and the memory limit are then off
    psutil = None

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent

# --------------------------------------------------------------------------
# captures
# --------------------------------------------------------------------------

class Spec(NamedTuple):
    """A benchmark capture: a synthetic profile (make_capture.py) with its
    packets and flows, or "real": the shipped captures replicated `copies` times."""
    profile: str
    packets: int = 0
    flows: int = 0
    udp_share: float = 0.0
    copies: int = 0

    def file_name(self, seed: int) -> str:
        if self.profile == "real":
            return f"real-x{self.copies}.pcap"
        udp = f"-u{round(self.udp_share * 100)}" if self.udp_share else ""
        return f"{self.profile}-{self.packets}p-{self.flows}f{udp}-s{seed}.pcap"

    def generator_args(self, seed: int) -> list[str]:
        if self.profile == "real":
            return ["--copies", str(self.copies), "--sources", *map(str, real_sources())]
        args = ["--packets", str(self.packets), "--flows", str(self.flows), "--seed", str(seed)]
        return args + (["--udp-share", str(self.udp_share)] if self.udp_share else [])


CAPTURES_FULL = {
    "real": Spec("real", copies=32),
    "bulk": Spec("bulk", 2_000_000, 20),
    "many": Spec("many", 1_000_000, 100_000),
    "bulk-half": Spec("bulk", 1_000_000, 20),
    "many-500k": Spec("many", 5_000_000, 500_000),        # memory.py's capture
    "udp-mix": Spec("many", 1_000_000, 100_000, udp_share=0.1),
}
CAPTURES_QUICK = {
    "real": Spec("real", copies=4),
    "bulk": Spec("bulk", 200_000, 20),
    "many": Spec("many", 100_000, 10_000),
    "bulk-half": Spec("bulk", 100_000, 20),
    "many-500k": Spec("many", 500_000, 50_000),
    "udp-mix": Spec("many", 100_000, 10_000, udp_share=0.1),
}
WARMUP_CAPTURE = Spec("bulk", 2_000, 20)
# the fixed cost of one run: the smallest shipped capture (52 packets, 3 HTTP flows)
FIXED_COST_CAPTURE = REPO / "captures" / "http-api.pcap"
FIXED_COST_RUNS = 3
ALL_TOOLS = ("cat", "inspector", "tshark-nodesegment", "tshark", "nfstream", "ndpiReader")
PEERS = ("tshark", "tshark-nodesegment", "nfstream", "ndpiReader")


def real_sources() -> list[Path]:
    """The shipped captures the `real` capture replicates (not captures/variants)."""
    return sorted([*REPO.glob("captures/*.pcap"), *REPO.glob("captures/*.pcap.gz")])


def generator_version() -> int | None:
    """GEN_VERSION of make_capture.py, read without importing it (importing
    would pull numpy/numba into this process and inflate its RSS, which
    forked children inherit in their ru_maxrss high-water mark)."""
    m = re.search(r"^GEN_VERSION\s*=\s*(\d+)", (BENCH / "make_capture.py").read_text(), re.M)
    return int(m.group(1)) if m else None


def ensure_capture(data_dir: Path, name: str, spec, seed: int, regen: bool) -> dict:
    """The capture's sidecar meta, after writing the capture with make_capture.py
    unless an up-to-date one is there (same generator, size and, for `real`,
    the same source captures)."""
    spec = Spec(*spec)
    path = data_dir / spec.file_name(seed)
    meta_path = Path(str(path) + ".meta.json")
    sources = ({p.name: p.stat().st_size for p in real_sources()} if spec.profile == "real" else None)
    if not regen and path.exists() and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
            if (meta.get("generator_version") == generator_version()
                    and meta.get("bytes") == path.stat().st_size and meta.get("sources") == sources):
                meta["reused"] = True
                meta["name"] = name
                return meta
        except (ValueError, OSError):
            pass
    what = (f"{len(sources)} shipped captures x {spec.copies}" if sources else
            f"{spec.profile}, {spec.packets:,} packets, {spec.flows:,} flows"
            + (f", {spec.udp_share:.0%} UDP" if spec.udp_share else ""))
    print(f"generating {name}: {what} -> {path}", flush=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(BENCH / "make_capture.py"), str(path), "--profile", spec.profile,
                    *spec.generator_args(seed), "--meta"], check=True)
    meta = json.loads(meta_path.read_text())
    meta["generation_wall_s"] = round(time.perf_counter() - t0, 2)
    meta["reused"] = False
    meta["name"] = name
    meta_path.write_text(json.dumps(meta, indent=1))
    return meta


def warm_cache(path: str) -> float:
    t0 = time.perf_counter()
    with open(path, "rb", buffering=0) as fh:
        while fh.read(8 << 20):
            pass
    return time.perf_counter() - t0


# --------------------------------------------------------------------------
# measuring one process
# --------------------------------------------------------------------------

def _tree_rss(proc) -> tuple[int, int]:
    """(summed RSS, summed RSS minus file-backed/shared pages) of a tree."""
    total = anon = 0
    try:
        procs = [proc] + proc.children(recursive=True)
    except psutil.Error:
        return 0, 0
    for p in procs:
        try:
            mi = p.memory_info()
            total += mi.rss
            anon += mi.rss - getattr(mi, "shared", 0)
        except psutil.Error:
            pass
    return total, anon


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def wait_sampling(pid: int, every: float, sample: Callable[[], bool]) -> tuple[int, resource.struct_rusage, float]:
    """Wait for child ``pid`` (wait4: its exit status and the CPU time of its
    tree) while a thread calls ``sample()`` every ``every`` seconds until it
    returns False; returns (wait status, rusage, time.perf_counter() at its end)."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(every) and sample():
            pass

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    _, status, usage = os.wait4(pid, 0)
    ended = time.perf_counter()
    stop.set()
    thread.join()
    return status, usage, ended


def run_measured(cmd, timeout: float, mem_limit: int | None, env=None, cwd=None,
                 discard_stdout: bool = False, interval: float = 0.05) -> dict:
    """Run cmd in its own session; returns wall/cpu time, exact peak RSS of
    the largest process, sampled peak of the summed RSS of the process tree
    (psutil), exit status, and stdout/stderr (in temporary files, so big
    outputs never block).

    Peak RSS: a child forked from this Python process starts with this
    process's pages, and the kernel carries that high-water mark into the
    child's ru_maxrss even across exec. So the command runs under GNU time
    (a small binary that forks the real command from its own small image),
    and its %M is used. Without /usr/bin/time, the wait4 ru_maxrss is used
    and has this process's RSS as a floor (max_rss_source says which)."""
    out_f = tempfile.TemporaryFile()
    err_f = tempfile.TemporaryFile()
    tfile = None
    run_cmd = list(cmd)
    if GNU_TIME:
        fd, tfile = tempfile.mkstemp(prefix="gnutime-")
        os.close(fd)
        run_cmd = [GNU_TIME, "-f", "%M", "-o", tfile, "--"] + run_cmd
    t0 = time.perf_counter()
    try:
        p = subprocess.Popen(run_cmd, stdout=subprocess.DEVNULL if discard_stdout else out_f,
                             stderr=err_f, stdin=subprocess.DEVNULL, env=env, cwd=cwd,
                             start_new_session=True)
    except OSError as exc:
        return {"status": "error", "error": f"cannot start: {exc}", "cmd": cmd}
    state = {"peak": 0, "peak_anon": 0, "killed": None}
    proc = None
    if psutil is not None:
        try:
            proc = psutil.Process(p.pid)
        except psutil.Error:
            proc = None

    def kill(reason):
        state["killed"] = reason
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def monitor() -> bool:
        if time.perf_counter() - t0 > timeout:
            kill("timeout")
            return False
        if proc is not None:
            rss, anon = _tree_rss(proc)
            state["peak"] = max(state["peak"], rss)
            state["peak_anon"] = max(state["peak_anon"], anon)
            if mem_limit and rss > mem_limit:
                kill("memory")
                return False
        return True

    wstatus, ru, ended = wait_sampling(p.pid, interval, monitor)
    wall = ended - t0
    p.returncode = os.waitstatus_to_exitcode(wstatus)
    # kill leftovers of the session (e.g. orphaned helpers), if any
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    out_f.seek(0)
    err_f.seek(0)
    stdout = out_f.read().decode(errors="replace")
    stderr = err_f.read().decode(errors="replace")
    max_rss_kb, source = ru.ru_maxrss, "wait4 (includes harness RSS floor)"
    if tfile:
        try:
            last = Path(tfile).read_text().strip().splitlines()[-1]
            max_rss_kb, source = int(last.split()[0]), "gnu time"
        except (OSError, IndexError, ValueError):
            pass
        finally:
            os.unlink(tfile)
    res = {
        "cmd": [str(c) for c in cmd],
        "rc": p.returncode,
        "wall_s": wall,
        "cpu_s": ru.ru_utime + ru.ru_stime,
        "max_rss_mb": max_rss_kb / 1024.0,            # KiB -> MiB
        "max_rss_source": source,
        # None when psutil is missing or the run ended before the first sample
        "tree_rss_mb": state["peak"] / 2**20 if state["peak"] else None,
        # same, without file-backed resident pages (mmap'd captures, libraries)
        "tree_anon_mb": state["peak_anon"] / 2**20 if state["peak_anon"] else None,
        "stdout": stdout,
        "stderr": stderr,
    }
    if state["killed"] == "timeout":
        res["status"] = "did not finish"
        res["error"] = f"timeout after {timeout:.0f} s"
    elif state["killed"] == "memory":
        res["status"] = "did not finish"
        res["error"] = f"killed: memory above {mem_limit / 2**30:.1f} GiB"
    elif p.returncode != 0:
        res["status"] = "error"
        tail = [ln for ln in stderr.strip().splitlines() if "Running as user" not in ln]
        res["error"] = f"exit {p.returncode}: " + (" | ".join(tail[-3:]) or "(no stderr)")
    else:
        res["status"] = "ok"
    return res


# --------------------------------------------------------------------------
# tools
# --------------------------------------------------------------------------

def inspector_cmd(args) -> tuple[list[str], dict]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if args.inspector_cmd:
        return shlex.split(args.inspector_cmd), env
    return [sys.executable, "-m", "inspector"], env


def tool_command(tool: str, path: str, workdir: Path, args):
    """-> (cmd, env, discard_stdout, flow counter(res) -> int|None)"""
    if tool == "cat":
        return ["cat", path], None, True, lambda res: None
    if tool == "inspector":
        base, env = inspector_cmd(args)
        out = workdir / (Path(path).stem + ".inspector.json")
        if out.exists():
            out.unlink()

        def count(res, out=out):
            try:
                doc = json.loads(out.read_text())
            except (OSError, ValueError) as exc:
                res.setdefault("note", f"no JSON output: {exc}")
                return None
            try:
                res["tool_packets"] = int(sum(int(i.get("packets", 0)) for i in doc.get("inputs", [])))
            except (TypeError, ValueError, AttributeError):
                pass
            flows = doc.get("flows") if isinstance(doc, dict) else doc
            return len(flows) if isinstance(flows, list) else None

        return base + ["analyze", path, "--quiet", "--json", str(out)] + shlex.split(args.inspector_args), \
            env, False, count
    if tool in ("tshark", "tshark-nodesegment"):
        cmd = ["tshark"]
        if tool == "tshark-nodesegment":
            cmd += ["-o", "tcp.desegment_tcp_streams:FALSE"]
        cmd += ["-q", "-z", "conv,tcp", "-z", "conv,udp", "-r", path]
        return cmd, None, False, lambda res: sum(1 for ln in res["stdout"].splitlines() if "<->" in ln)
    if tool == "ndpiReader":
        def count(res):
            m = re.search(r"^\s*IP packets:\s*(\d+)", res["stdout"], re.MULTILINE)
            res["tool_packets"] = int(m.group(1)) if m else None
            m = re.search(r"^\s*Unique flows:\s*(\d+)", res["stdout"], re.MULTILINE)
            return int(m.group(1)) if m else None
        # full DPI with its defaults (up to 80 TCP / 24 UDP packets of a flow dissected); without -q
        # it ends with the traffic statistics the flow count comes from
        return ["ndpiReader", "-i", path], None, False, count
    if tool == "nfstream":
        def count(res):
            for ln in reversed(res["stdout"].strip().splitlines()):
                try:
                    doc = json.loads(ln)
                except ValueError:
                    continue
                res["tool_packets"] = doc.get("packets")
                return doc.get("flows")
            return None
        return [sys.executable, str(BENCH / "nfstream_count.py"), path], None, False, count
    raise ValueError(tool)


def measure(tool: str, cap: dict, workdir: Path, args) -> dict:
    path = cap["path"]
    runs = []
    for _ in range(max(1, args.repeat)):
        cmd, env, discard, count = tool_command(tool, path, workdir, args)
        res = run_measured(cmd, args.timeout, args.mem_limit, env=env, cwd=str(workdir),
                           discard_stdout=discard)
        if res.get("status") == "ok":
            try:
                res["flows"] = count(res)
            except Exception as exc:  # noqa: BLE001 - a parser bug must not stop the run
                res["flows"] = None
                res["note"] = f"flow count failed: {exc}"
        runs.append(res)
        if res.get("status") != "ok":
            break
    ok = [r for r in runs if r.get("status") == "ok"]
    best = min(ok, key=lambda r: r["wall_s"]) if ok else runs[-1]
    best = dict(best)
    if ok:
        best["cpu_s"] = min(r["cpu_s"] for r in ok)
        best["max_rss_mb"] = max(r["max_rss_mb"] for r in ok)
        trees = [r["tree_rss_mb"] for r in ok if r.get("tree_rss_mb") is not None]
        best["tree_rss_mb"] = max(trees) if trees else None
        anons = [r["tree_anon_mb"] for r in ok if r.get("tree_anon_mb") is not None]
        best["tree_anon_mb"] = max(anons) if anons else None
    best["runs"] = len(runs)
    best["walls_s"] = [round(r.get("wall_s", float("nan")), 3) for r in runs]
    best["tool"] = tool
    best["capture"] = cap["name"]
    best["packets"] = cap["packets"]
    best["bytes"] = cap["bytes"]
    best["flows_expected"] = cap["flows"]
    if best.get("wall_s") and best.get("status") == "ok":
        best["pps"] = cap["packets"] / best["wall_s"]
        best["mb_s"] = cap["bytes"] / 1e6 / best["wall_s"]
        best["pps_cpu"] = cap["packets"] / best["cpu_s"] if best.get("cpu_s") else None
    rss = [v for v in (best.get("max_rss_mb"), best.get("tree_rss_mb")) if v]
    best["peak_rss_mb"] = max(rss) if rss else None
    # keep the JSON small
    best["stdout_tail"] = best.pop("stdout", "")[-400:]
    best["stderr_tail"] = best.pop("stderr", "")[-800:]
    return best


# --------------------------------------------------------------------------
# reporting
# --------------------------------------------------------------------------

def fmt_rate(x, unit=""):
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f} M{unit}"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k{unit}"
    return f"{x:.0f}{unit}"


def fmt(x, spec=".1f"):
    return "-" if x is None else format(x, spec)


def print_table(results):
    hdr = ["capture", "tool", "status", "wall s", "cpu s", "pkts/s", "pkts/CPU-s", "MB/s",
           "maxRSS MB", "treeRSS MB", "anonRSS MB", "flows (exp.)"]
    rows = []
    for r in results:
        ok = r.get("status") == "ok"
        fl = "-" if r.get("flows") is None else f"{r['flows']:,}"
        rows.append([
            r["capture"], r["tool"],
            r.get("status", "?") if ok else (r.get("status", "?")),
            fmt(r.get("wall_s"), ".2f") if ok else (">" + fmt(r.get("wall_s"), ".0f")
                                                     if r.get("status") == "did not finish" else "-"),
            fmt(r.get("cpu_s"), ".2f"),
            fmt_rate(r.get("pps")) if ok else "-",
            fmt_rate(r.get("pps_cpu")) if ok else "-",
            fmt(r.get("mb_s"), ".1f") if ok else "-",
            fmt(r.get("max_rss_mb"), ".0f"),
            fmt(r.get("tree_rss_mb"), ".0f"),
            fmt(r.get("tree_anon_mb"), ".0f"),
            f"{fl} ({r['flows_expected']:,})",
        ])
    widths = [max(len(str(x)) for x in col) for col in zip(hdr, *rows)]
    line = "  ".join(h.ljust(w) for h, w in zip(hdr, widths))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)))
    for r in results:
        if r.get("status") != "ok" or r.get("note"):
            print(f"  note: {r['capture']}/{r['tool']}: {r.get('error') or ''} {r.get('note') or ''}".rstrip())


def ratios(results, timeout):
    by = {(r["capture"], r["tool"]): r for r in results}
    out = []
    for cap in dict.fromkeys(r["capture"] for r in results):
        ins = by.get((cap, "inspector"))
        for peer in PEERS:
            pr = by.get((cap, peer))
            if pr is None:
                continue
            row = {"capture": cap, "peer": peer, "speedup": None, "speedup_is_lower_bound": False,
                   "cpu_ratio": None, "mem_ratio": None}
            if ins is None or ins.get("status") != "ok":
                row["note"] = "inspector did not run successfully"
            elif pr.get("status") == "ok":
                row["speedup"] = pr["wall_s"] / ins["wall_s"]
                if ins.get("pps_cpu") and pr.get("pps_cpu"):
                    row["cpu_ratio"] = ins["pps_cpu"] / pr["pps_cpu"]
                if ins.get("peak_rss_mb") and pr.get("peak_rss_mb"):
                    row["mem_ratio"] = ins["peak_rss_mb"] / pr["peak_rss_mb"]
            elif pr.get("status") == "did not finish":
                row["speedup"] = pr["wall_s"] / ins["wall_s"]
                row["speedup_is_lower_bound"] = True
                row["note"] = f"{peer} did not finish ({pr.get('error')})"
            else:
                row["note"] = f"{peer} failed: {pr.get('error')}"
            out.append(row)
    return out


def print_ratios(rows):
    print("\ninspector against peers (per CPU-s = inspector pkts/CPU-s / peer pkts/CPU-s; "
          "speedup = peer wall / inspector wall;\n"
          "mem ratio = inspector peak RSS / peer peak RSS, < 1 means inspector uses less)")
    for r in rows:
        sp = "-" if r["speedup"] is None else (
            (">=" if r["speedup_is_lower_bound"] else "") + f"{r['speedup']:.2f}x")
        cr = "-" if r["cpu_ratio"] is None else f"{r['cpu_ratio']:.2f}x"
        mr = "-" if r["mem_ratio"] is None else f"{r['mem_ratio']:.2f}"
        note = f"   ({r['note']})" if r.get("note") else ""
        print(f"  {r['capture']:<10} vs {r['peer']:<19} per CPU-s {cr:<7} speedup {sp:<9} "
              f"mem ratio {mr}{note}")


def fixed_cost(workdir: Path, args) -> dict:
    """CPU time and peak RSS of `inspector analyze` on the 52-packet capture,
    numba's cache warm (after the warm-up): the best CPU of FIXED_COST_RUNS."""
    base, env = inspector_cmd(args)
    cmd = base + ["analyze", str(FIXED_COST_CAPTURE), "--json", str(workdir / "fixed-cost.json")] \
        + shlex.split(args.inspector_args)
    runs = [run_measured(cmd, args.timeout, args.mem_limit, env=env, cwd=str(workdir))
            for _ in range(FIXED_COST_RUNS)]
    ok = [r for r in runs if r["status"] == "ok"]
    out = {"capture": FIXED_COST_CAPTURE.name, "cmd": " ".join(map(str, cmd)),
           "cpus_s": [round(r["cpu_s"], 3) for r in ok]}
    if not ok:
        return out | {"status": runs[-1]["status"], "error": runs[-1].get("error")}
    best = min(ok, key=lambda r: r["cpu_s"])
    peaks = [v for r in ok for v in (r.get("max_rss_mb"), r.get("tree_rss_mb")) if v]
    return out | {"status": "ok", "cpu_s": best["cpu_s"], "wall_s": best["wall_s"], "peak_rss_mb": max(peaks)}


# the issue's targets (issue 11, "Done when")
TARGET_REAL_VS_NFSTREAM = 2.0      # real: inspector pkts/CPU-s over nfstream's
TARGET_MANY_VS_NDPI = 0.75         # many: inspector pkts/CPU-s over ndpiReader's
TARGET_BULK_PPS_CPU = 1e6          # bulk, secret scan on: inspector pkts/CPU-s
TARGET_FIXED_CPU_S = 0.5           # the 52-packet capture, warm caches
TARGET_PEAK_RSS_MB = 500           # many-500k and udp-mix
TARGET_FLAT = 1.25                 # peak RSS many-500k (5x the packets and flows) / many


def targets(results, rat, fixed, args) -> list[dict]:
    """One row per target: what it asks, what was measured, met (None: not measured)."""
    by = {(r["capture"], r["tool"]): r for r in results}
    cpu_ratio = {(r["capture"], r["peer"]): r["cpu_ratio"] for r in rat}

    def peak(cap):
        r = by.get((cap, "inspector"))
        return r.get("peak_rss_mb") if r and r.get("status") == "ok" else None

    def row(target, value, goal, show, higher_is_better=True):
        met = None if value is None else (value >= goal if higher_is_better else value <= goal)
        return {"target": target, "measured": "not measured" if value is None else show(value),
                "value": value, "met": met}

    def times(v):
        return f"{v:.2f}x"

    def mb(v):
        return f"{v:.0f} MB"

    bulk = by.get(("bulk", "inspector"))
    bulk_pps = bulk.get("pps_cpu") if bulk and "--no-secret-scan" not in args.inspector_args else None
    flat = (peak("many-500k") / peak("many")) if peak("many-500k") and peak("many") else None
    return [
        row(f"real: inspector >= {TARGET_REAL_VS_NFSTREAM}x nfstream pkts/CPU-s",
            cpu_ratio.get(("real", "nfstream")), TARGET_REAL_VS_NFSTREAM, times),
        row(f"many: inspector >= {TARGET_MANY_VS_NDPI}x ndpiReader pkts/CPU-s",
            cpu_ratio.get(("many", "ndpiReader")), TARGET_MANY_VS_NDPI, times),
        row(f"bulk, secret scan on: inspector >= {fmt_rate(TARGET_BULK_PPS_CPU)} pkts/CPU-s",
            bulk_pps, TARGET_BULK_PPS_CPU, fmt_rate),
        row(f"fixed cost ({FIXED_COST_CAPTURE.name}): <= {TARGET_FIXED_CPU_S} CPU s",
            fixed.get("cpu_s") if fixed else None, TARGET_FIXED_CPU_S, lambda v: f"{v:.2f} s",
            higher_is_better=False),
        row(f"many-500k: inspector peak RSS <= {TARGET_PEAK_RSS_MB} MB", peak("many-500k"),
            TARGET_PEAK_RSS_MB, mb, higher_is_better=False),
        row(f"udp-mix: inspector peak RSS <= {TARGET_PEAK_RSS_MB} MB", peak("udp-mix"),
            TARGET_PEAK_RSS_MB, mb, higher_is_better=False),
        row(f"flat: peak RSS many-500k / many <= {TARGET_FLAT}", flat, TARGET_FLAT, lambda v: f"{v:.2f}",
            higher_is_better=False),
    ]


def print_targets(rows, quick: bool):
    print("\ntargets (issue 11)" + (" -- quick captures, not the issue's sizes" if quick else ""))
    for r in rows:
        verdict = {True: "met", False: "NOT met", None: "-"}[r["met"]]
        print(f"  {r['target']:<58} {r['measured']:>12}  {verdict}")


def print_memory(results):
    """Peak RSS of inspector next to the peers' on each capture."""
    tools = [t for t in ("inspector", "nfstream", "ndpiReader", "tshark-nodesegment")
             if any(r["tool"] == t for r in results)]
    by = {(r["capture"], r["tool"]): r for r in results}
    print("\npeak RSS, MB (larger of maxRSS and treeRSS)")
    print("  " + f"{'capture':<10}" + "".join(f"{t:>20}" for t in tools))
    for cap in dict.fromkeys(r["capture"] for r in results):
        cells = []
        for t in tools:
            r = by.get((cap, t))
            cells.append("-" if not r or r.get("status") != "ok" else fmt(r.get("peak_rss_mb"), ".0f"))
        print("  " + f"{cap:<10}" + "".join(f"{c:>20}" for c in cells))


def versions(args) -> dict:
    v = {"python": platform.python_version(), "platform": platform.platform(),
         "cpus": os.cpu_count(), "loadavg_at_start": os.getloadavg()}
    try:
        with open("/proc/cpuinfo") as fh:
            m = re.search(r"model name\s*:\s*(.*)", fh.read())
            v["cpu_model"] = m.group(1) if m else None
    except OSError:
        pass
    if psutil is not None:
        v["ram_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    try:
        v["tshark"] = subprocess.run(["tshark", "--version"], capture_output=True, text=True,
                                     timeout=30).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        v["tshark"] = None
    try:
        m = re.search(r"nDPI (\S+)", subprocess.run(["ndpiReader", "-h"], capture_output=True, text=True,
                                                    timeout=30, check=False).stdout)
        v["ndpiReader"] = m.group(1) if m else None
    except (OSError, subprocess.SubprocessError):
        v["ndpiReader"] = None
    for name, code in (("nfstream", "import nfstream; print(nfstream.__version__)"),
                       ("inspector", "import inspector; print(getattr(inspector, '__version__', '?'))"),
                       ("numpy", "import numpy; print(numpy.__version__)"),
                       ("numba", "import numba; print(numba.__version__)")):
        env = inspector_cmd(args)[1]
        try:
            r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=120, env=env, cwd=str(REPO))
            v[name] = r.stdout.strip() if r.returncode == 0 else \
                "unavailable: " + (r.stderr.strip().splitlines() or ["?"])[-1]
        except (OSError, subprocess.SubprocessError) as exc:
            v[name] = f"unavailable: {exc}"
    return v


# --------------------------------------------------------------------------

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="inspector vs tshark/nfstream/ndpiReader benchmark")
    ap.add_argument("--quick", action="store_true",
                    help="small captures (bulk 200k, many 100k packets) for a smoke run")
    ap.add_argument("--out", help="write results as JSON to this path")
    ap.add_argument("--data-dir", default=str(BENCH / ".data"),
                    help="where captures are generated/reused (default benchmarks/.data)")
    ap.add_argument("--regen", action="store_true", help="regenerate captures even if present")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tools", default=",".join(ALL_TOOLS),
                    help=f"comma list among {','.join(ALL_TOOLS)}")
    ap.add_argument("--captures", default="real,many,bulk",
                    help="comma list among real,many,bulk,many-500k,udp-mix "
                         "(bulk-half is run for the memory check)")
    ap.add_argument("--timeout", type=float, help="per tool run, seconds (default 600; quick 120)")
    ap.add_argument("--mem-limit-gb", type=float,
                    help="kill a tool whose process tree RSS exceeds this (default 60%% of RAM)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per tool; the best wall and the least CPU time are kept")
    ap.add_argument("--no-memcheck", action="store_true", help="skip the bulk-half memory check")
    ap.add_argument("--no-warmup", action="store_true",
                    help="do not run inspector once on a tiny capture first (JIT cache warm-up)")
    ap.add_argument("--no-fixed-cost", action="store_true",
                    help=f"skip the fixed-cost runs (inspector on {FIXED_COST_CAPTURE.name})")
    ap.add_argument("--inspector-cmd", default="",
                    help="command prefix for inspector (default: python -m inspector, repo on PYTHONPATH)")
    ap.add_argument("--inspector-args", default="", help="extra arguments for inspector analyze")
    args = ap.parse_args(argv)
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    args.timeout = args.timeout or (120.0 if args.quick else 600.0)
    if args.mem_limit_gb:
        args.mem_limit = int(args.mem_limit_gb * 2**30)
    elif psutil is not None:
        args.mem_limit = int(psutil.virtual_memory().total * 0.6)
    else:
        args.mem_limit = None
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    for t in tools:
        if t not in ALL_TOOLS:
            ap.error(f"unknown tool {t}")
    specs = CAPTURES_QUICK if args.quick else CAPTURES_FULL
    cap_names = [c.strip() for c in args.captures.split(",") if c.strip()]
    for c in cap_names:
        if c not in specs:
            ap.error(f"unknown capture {c}")
    memcheck = not args.no_memcheck and "inspector" in tools and "bulk" in cap_names

    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-", dir=data_dir))
    if psutil is None:
        print("note: psutil not installed: no process-tree RSS sampling, no memory limit")

    print(f"benchmark: {'quick' if args.quick else 'full'}; data in {data_dir}; "
          f"timeout {args.timeout:.0f} s per run")
    env_info = versions(args)
    for k, v in env_info.items():
        print(f"  {k}: {v}")
    if "nfstream" in tools and str(env_info.get("nfstream", "")).startswith("unavailable"):
        print("  nfstream is not importable: pip install nfstream")
    if any(t.startswith("tshark") for t in tools) and not shutil.which("tshark"):
        print("  tshark not on PATH: apt-get install tshark")
    if "ndpiReader" in tools and not shutil.which("ndpiReader"):
        print("  ndpiReader not on PATH: apt-get install libndpi-bin")

    caps = {}
    needed = list(cap_names) + (["bulk-half"] if memcheck and "bulk-half" not in cap_names else [])
    for name in needed:
        caps[name] = ensure_capture(data_dir, name, specs[name], args.seed, args.regen)
    for name, m in caps.items():
        g = "reused" if m.get("reused") else f"generated in {m.get('generation_wall_s')} s"
        print(f"  capture {name}: {m['packets']:,} packets, {m['bytes'] / 1e6:.1f} MB, "
              f"{m['flows']:,} flows ({g}) {m['path']}")

    warmup = None
    if "inspector" in tools and not args.no_warmup:
        wm = ensure_capture(data_dir, "warmup", WARMUP_CAPTURE, args.seed, False)
        cmd, env, _, _ = tool_command("inspector", wm["path"], workdir, args)
        # the shipped captures reach kernels the synthetic flows do not (detectors, TLS, SSH)
        cmd[cmd.index(wm["path"]) + 1:cmd.index(wm["path"]) + 1] = map(str, real_sources())
        r = run_measured(cmd, args.timeout, args.mem_limit, env=env, cwd=str(workdir))
        warmup = {"status": r.get("status"), "wall_s": r.get("wall_s"),
                  "max_rss_mb": r.get("max_rss_mb"), "error": r.get("error")}
        print(f"  inspector warm-up on a {WARMUP_CAPTURE.packets:,}-packet capture and the shipped ones: "
              f"{r.get('status')} in {r.get('wall_s', 0):.2f} s, "
              f"max RSS {fmt(r.get('max_rss_mb'), '.0f')} MB"
              + (f" -- {r.get('error')}" if r.get("status") != "ok" else ""))
    fixed = None
    if "inspector" in tools and not args.no_fixed_cost:
        fixed = fixed_cost(workdir, args)
        print(f"  fixed cost: inspector on {fixed['capture']}, best of {FIXED_COST_RUNS}: "
              + (f"{fixed['cpu_s']:.2f} CPU s ({fixed['cpus_s']}), {fixed['wall_s']:.2f} s wall, "
                 f"peak RSS {fixed['peak_rss_mb']:.0f} MB" if fixed["status"] == "ok"
                 else f"{fixed['status']} -- {fixed.get('error')}"))

    results = []
    for name in cap_names:
        cap = caps[name]
        cap["cache_read_s"] = warm_cache(cap["path"])
        for tool in tools:
            print(f"  running {tool} on {name} ...", end=" ", flush=True)
            r = measure(tool, cap, workdir, args)
            print(r.get("status"), "" if r.get("wall_s") is None else f"{r['wall_s']:.2f} s",
                  f"({r.get('error')})" if r.get("error") else "", flush=True)
            results.append(r)

    mem = None
    if memcheck and "bulk" in caps:
        full = next((r for r in results if r["capture"] == "bulk" and r["tool"] == "inspector"), None)
        if full is None:
            full = measure("inspector", caps["bulk"], workdir, args)
        warm_cache(caps["bulk-half"]["path"])
        print("  running inspector on bulk-half ...", end=" ", flush=True)
        half = measure("inspector", caps["bulk-half"], workdir, args)
        print(half.get("status"), f"{half.get('wall_s', 0):.2f} s")
        mem = {"bulk_packets": caps["bulk"]["packets"], "half_packets": caps["bulk-half"]["packets"],
               "bulk_status": full.get("status"), "half_status": half.get("status"),
               "bulk_peak_rss_mb": full.get("peak_rss_mb"), "half_peak_rss_mb": half.get("peak_rss_mb"),
               "bulk_anon_mb": full.get("tree_anon_mb"), "half_anon_mb": half.get("tree_anon_mb"),
               "bulk_wall_s": full.get("wall_s"), "half_wall_s": half.get("wall_s"),
               "errors": [e for e in (full.get("error"), half.get("error")) if e]}
        if full.get("status") == "ok" and half.get("status") == "ok" and half.get("peak_rss_mb"):
            ratio = full["peak_rss_mb"] / half["peak_rss_mb"]
            mem["ratio_full_over_half"] = ratio
            mem["verdict"] = "bounded" if ratio <= 1.25 else "grows with capture size"
        else:
            mem["verdict"] = "not measured (inspector failed)"

    print()
    print_table(results)
    rat = ratios(results, args.timeout)
    print_ratios(rat)
    print_memory(results)
    if mem:
        print("\nmemory boundedness (same 20 flows, half the packets):")
        print(f"  inspector peak RSS on bulk      ({mem['bulk_packets']:,} pkts): "
              f"{fmt(mem['bulk_peak_rss_mb'], '.0f')} MB "
              f"(anon {fmt(mem['bulk_anon_mb'], '.0f')} MB) [{mem['bulk_status']}]")
        print(f"  inspector peak RSS on bulk-half ({mem['half_packets']:,} pkts): "
              f"{fmt(mem['half_peak_rss_mb'], '.0f')} MB "
              f"(anon {fmt(mem['half_anon_mb'], '.0f')} MB) [{mem['half_status']}]")
        if "ratio_full_over_half" in mem:
            print(f"  ratio full/half: {mem['ratio_full_over_half']:.2f} -> {mem['verdict']}")
        else:
            print(f"  {mem['verdict']}: {'; '.join(mem['errors'])}")

    goals = targets(results, rat, fixed, args)
    print_targets(goals, args.quick)

    env_info["loadavg_at_end"] = os.getloadavg()
    print(f"\nload average at start {env_info['loadavg_at_start']}, at end {env_info['loadavg_at_end']} "
          "(other work on the machine skews the numbers)")
    doc = {
        "mode": "quick" if args.quick else "full",
        "started": started,
        "timeout_s": args.timeout,
        "environment": env_info,
        "captures": caps,
        "inspector_warmup": warmup,
        "fixed_cost": fixed,
        "results": results,
        "ratios": rat,
        "memory_boundedness": mem,
        "targets": goals,
    }
    for c in doc["captures"].values():
        c.pop("flow_table", None)
    out = Path(args.out) if args.out else data_dir / f"last-results-{doc['mode']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str))
    print(f"\nresults written to {out}")
    shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
