#!/usr/bin/env python3
"""Live-capture benchmark: the highest packet rate `inspector live` holds
without drops, against tcpdump alone capturing the same traffic.

A private network namespace holds a veth pair (vb0 <-> vb1). For each rate,
tcpreplay (preloaded into RAM) sends a synthetic capture (make_capture.py:
bulk 1514-byte frames plus many short flows, looped) into vb0 for about
--seconds; the capturing tool listens on vb1. The sensor runs first, then
tcpdump alone (`tcpdump -w /dev/null`) at the same rates, each its own run.

Per run: packets sent (tcpreplay's summary), packets the tool captured
(inspector: its JSON `inputs.packets`; tcpdump: "packets captured"), kernel
drops (inspector's `kernel-drops` anomaly; tcpdump's "dropped by kernel"),
CPU time (user+sys of the tool's process tree, from wait4) and peak RSS
(psutil sum over the tree, sampled every 0.1 s). drops = kernel drops +
packets sent but not captured; a rate is held when drops are 0.

Long-run memory mode (--long SECONDS): one sensor run instead of the rate
steps. A capture of many short flows (make_capture.py --profile many, 400k
packets in 40k SYN..FIN flows) is replayed in a loop at --long-rate (default
5k pps, the rate it held without drops on the 2-core test machine) for
SECONDS, into `inspector live --jsonl TMP --json OUT` with its default
timeouts (flows end 5 s after FIN/RST), so flows keep starting and ending.
The pause after the warm-up is 10 s, so that the warm-up's flows end before
the measured replay, and tcpreplay sleeps between packets (--timer nano)
instead of spinning a core. Every 2 s it records (elapsed since the replay
began, RSS of the sensor's process tree, packets sent so far: vb0's tx
counter); the peak is sampled every 0.5 s. One second after the replay the
sensor gets SIGTERM; from then to its exit is the final report phase.
Printed: RSS at each 10% of the replay, RSS(100%)/RSS(20%) (a flat sensor
gives ~1.0), the peak up to SIGTERM and the peak in the final report phase,
packets captured, kernel drops, flows in the final JSON and `flow` records
in the JSONL. --out gets all of it, the 2 s samples and the sensor's
`stats` records (drops so far every 10 s).

    sudo python benchmarks/live.py --quick
    sudo python benchmarks/live.py --rates 50k,100k,200k,400k,800k --seconds 8
    sudo python benchmarks/live.py --long 300 --out long.json

Needs root, ip (iproute2), tcpreplay, tcpdump, psutil. Everything it creates
(the namespace and its veth pair) is removed at exit, Ctrl-C included.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Generator
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DATA = BENCH / ".data" / "live"

sys.path.insert(0, str(BENCH))
sys.path.insert(1, str(REPO))
from run import ensure_capture  # noqa: E402 - the sibling harness generates and caches every capture

from tests import netns  # noqa: E402 - the namespace the live tests use
FILTER = "tcp"          # the generated traffic is all TCP; both tools use the same BPF filter
SNAPLEN = 262144        # inspector live's default; tcpdump gets the same
SEND, RECV = "vb0", "vb1"
# Before each measured replay, WARMUP_PPS for WARMUP_SECONDS then a 2 s pause: the sensor's first
# batches (imports, numba's cache load) are then behind it. Its packets count as sent.
WARMUP_PPS, WARMUP_SECONDS = 2_000, 1.0
# --long: a capture of LONG_FLOWS short flows in LONG_PACKETS packets; RSS sampled every LONG_EVERY s
# for the peaks, one sample kept every LONG_KEEP s.
LONG_PACKETS, LONG_FLOWS = 400_000, 40_000
LONG_EVERY, LONG_KEEP = 0.5, 2.0
# --long: the pause after the warm-up replay is long enough for its flows to end (5 s after FIN), so the
# first flow endings (classification, JSONL, spool) happen before the measured replay too.
LONG_WARMUP_PAUSE = 10.0
# --long: tcpreplay sleeps between packets (nanosleep) instead of spinning: over minutes its default timer
# takes a whole core (5.4 s CPU per 5 s at 10k pps, against 1.4 s) from the sensor.
LONG_TIMER = "nano"
# --search: tcpreplay sleeps (nano) between bursts of SEARCH_BURST packets, so the sender takes a fraction of a
# core instead of spinning one: on 2 cores a spinning sender leaves one core to 2 capture processes.
SEARCH_BURST = 32


def die(message: str) -> None:
    sys.exit(f"live.py: {message}")


def parse_rate(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("km")) * scale)


def human(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


# ---------------------------------------------------------------- namespace

class Namespace(netns.Namespace):
    """``ip netns add inspbench-PID-N`` with the veth pair vb0 -> vb1 inside (``tests/netns.py``); removed on close."""

    def __init__(self) -> None:
        super().__init__("inspbench", SEND, RECV)


# ---------------------------------------------------------------- measuring

class Tree:
    """Peak summed RSS of a process and its descendants, sampled in a thread
    every ``every`` s. With ``keep`` (seconds) it also keeps a sample that
    often: (monotonic time, RSS bytes, ``probe()``). ``mark()`` (e.g. when the
    tool is told to stop) splits the peak: ``peak_before`` up to it,
    ``peak_after`` from it on."""

    def __init__(self, pid: int, every: float = 0.1, keep: float | None = None,
                 probe: Callable[[], int | None] | None = None) -> None:
        import psutil
        self.peak = 0
        self.peak_before: int | None = None
        self.peak_after = 0
        self.samples: list[tuple[float, int, int | None]] = []
        self._every, self._keep, self._probe = every, keep, probe
        self._done = threading.Event()
        self._proc = psutil.Process(pid)
        self._psutil = psutil
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _rss(self) -> int:
        total = 0
        for p in [self._proc, *self._proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except self._psutil.Error:
                pass
        return total

    def _sample(self) -> None:
        kept = float("-inf")
        while not self._done.is_set():
            try:
                total = self._rss()
            except self._psutil.Error:
                return
            self.peak = max(self.peak, total)
            if self.peak_before is not None:
                self.peak_after = max(self.peak_after, total)
            now = time.monotonic()
            if self._keep and now - kept >= self._keep:
                kept = now
                self.samples.append((now, total, self._probe() if self._probe else None))
            self._done.wait(self._every)

    def mark(self) -> None:
        self.peak_before = self.peak

    def stop(self) -> None:
        self._done.set()
        self._thread.join(2)


def process_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """user+sys CPU seconds so far of ``pid`` and each descendant: {pid: (name, seconds)}."""
    import psutil
    found = {}
    try:
        root = psutil.Process(pid)
        for p in [root, *root.children(recursive=True)]:
            try:
                times = p.cpu_times()
                found[p.pid] = (p.name(), times.user + times.system)
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return found


def _wait_rusage(proc: subprocess.Popen) -> float:
    """Reap ``proc``; user+sys CPU seconds of it and every descendant it reaped."""
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime


def _stderr_reader(proc: subprocess.Popen, ready: str, lines: list[str]) -> threading.Event:
    seen = threading.Event()

    def read() -> None:
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            lines.append(line)
            if ready in line:
                seen.set()
        seen.set()

    threading.Thread(target=read, daemon=True).start()
    return seen


def replay(ns: Namespace, pcaps: list[Path], pps: int, seconds: float, timer: str | None = None,
           burst: int = 1) -> dict:
    """tcpreplay at ``pps`` for about ``seconds``: packets sent, actual rate, failures.
    ``timer``: tcpreplay's --timer (default: its own, which spins a core between packets);
    ``burst``: packets sent per timing interval (--pps-multi)."""
    argv = ["tcpreplay", "-i", SEND, "--preload-pcap", "--pps", str(pps), "--loop", "100000",
            "--limit", str(int(pps * seconds)), "--no-flow-stats", *(["--timer", timer] if timer else []),
            *(["--pps-multi", str(burst)] if burst > 1 else []), *map(str, pcaps)]
    done = ns.run(argv, capture_output=True, text=True)
    out = done.stdout + done.stderr
    if done.returncode != 0 and "Actual:" not in out:
        raise RuntimeError(f"tcpreplay failed: {out.strip()[-400:]}")
    sent = re.search(r"Actual: (\d+) packets \((\d+) bytes\) sent in ([\d.]+) seconds", out)
    failed = re.search(r"Failed packets:\s+(\d+)", out)
    packets, nbytes, secs = (int(sent[1]), int(sent[2]), float(sent[3])) if sent else (0, 0, 0.0)
    return {"sent": packets, "bytes": nbytes, "send_seconds": secs,
            "actual_pps": packets / secs if secs else None, "mbps": nbytes * 8 / secs / 1e6 if secs else None,
            "send_failed": int(failed[1]) if failed else None}


def _sensor_argv(out: Path, workers: int = 1) -> list[str]:
    return [sys.executable, "-m", "inspector", "live", "-i", RECV, "--filter", FILTER,
            "--snaplen", str(SNAPLEN), "--json", str(out), "-q", "--workers", str(workers)]


def workers_of(tool: str) -> int:
    """``inspector`` is one capture process, ``inspector-2w`` two."""
    return int(tool.removeprefix("inspector-").removesuffix("w")) if tool.startswith("inspector-") else 1


def _launch(ns: Namespace, argv: list[str]) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep))
    return subprocess.Popen(ns.cmd(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)


def _await_ready(proc: subprocess.Popen, tool: str, ready: str, lines: list[str]) -> None:
    if not _stderr_reader(proc, ready, lines).wait(120) or proc.poll() is not None:
        raise RuntimeError(f"{tool} did not start: {' | '.join(lines[-5:])}")


def _kill(proc: subprocess.Popen) -> None:
    if proc.returncode is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def report_head(path: Path) -> dict:
    """The sensor's JSON result without its flows (one a line after the head;
    the long run's can be hundreds of MB)."""
    marker, text = '\n "flows": [', ""
    with open(path, encoding="utf-8") as handle:
        while marker not in text:
            chunk = handle.read(1 << 20)
            if not chunk:
                return json.loads(text)
            text += chunk
    return json.loads(text[:text.index(marker)].rstrip(",") + "\n}")


def sensor_counts(report: dict) -> tuple[int, int, int]:
    """Packets captured, kernel drops, interface drops of a sensor's JSON result."""
    captured = sum(int(row["packets"]) for row in report["inputs"])
    kinds: dict[str, int] = {}
    for row in report["anomalies"]:
        kinds[row["kind"]] = kinds.get(row["kind"], 0) + int(row["count"])
    return captured, kinds.get("kernel-drops", 0), kinds.get("interface-drops", 0)


def _warm_up(ns: Namespace, pcaps: list[Path], warmup: bool, pause: float = 2.0) -> int:
    """The warm-up replay and the pause after it; packets it sent."""
    if not warmup:
        return 0
    sent = replay(ns, pcaps, WARMUP_PPS, WARMUP_SECONDS)["sent"]
    time.sleep(pause)
    return sent


def run_tool(ns: Namespace, tool: str, pcaps: list[Path], pps: int, seconds: float, workdir: Path,
             warmup: bool = True, timer: str | None = None, burst: int = 1) -> dict:
    load, backlog = loadavg(), backlog_drops()
    if tool.startswith("inspector"):
        out = workdir / f"{tool}-{pps}.json"
        argv, ready = _sensor_argv(out, workers_of(tool)), "capturing on"
    else:
        argv = ["tcpdump", "-i", RECV, "-n", "-s", str(SNAPLEN), "-w", "/dev/null", FILTER]
        ready = "listening on"
    lines: list[str] = []
    proc = _launch(ns, argv)
    tree = Tree(proc.pid)
    try:
        _await_ready(proc, tool, ready, lines)
        time.sleep(0.5)
        warm = _warm_up(ns, pcaps, warmup)
        before = process_cpu(proc.pid)
        sent = replay(ns, pcaps, pps, seconds, timer, burst)
        sent["warmup_sent"] = warm
        sent["sent"] += warm  # every packet replayed, warm-up included, is expected in the capture
        time.sleep(1.0)  # the last packets reach the capture buffer
        after = process_cpu(proc.pid)
        during = {pid: round(t - before.get(pid, (name, 0.0))[1], 2) for pid, (name, t) in after.items()}
        stopped = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)  # ip netns exec execs: this is the tool itself
        cpu = _wait_rusage(proc)
        drain = time.monotonic() - stopped
    except BaseException:
        _kill(proc)
        raise
    finally:
        tree.stop()
    time.sleep(0.1)
    text = "\n".join(lines)
    if tool.startswith("inspector"):
        if not out.exists():
            raise RuntimeError(f"inspector wrote no JSON (exit {proc.returncode}): {' | '.join(lines[-5:])}")
        captured, kernel, iface = sensor_counts(report_head(out))
        split = re.search(r"packets \(([\d,+ ]+) by process\)", text)
        per_process = split[1] if split else ""
    else:
        per_process = ""
        m = re.search(r"(\d+) packets? captured", text)
        k = re.search(r"(\d+) packets? dropped by kernel", text)
        captured, kernel, iface = int(m[1]) if m else 0, int(k[1]) if k else 0, 0
    unseen = max(0, sent["sent"] - captured)
    pythons = sorted((t for pid, t in during.items() if pid in before and before[pid][0] != "tcpdump"), reverse=True)
    return {"tool": tool, "pps": pps, **sent, "cpu_replay_s": round(sum(during.values()), 2),
            "busiest_python_s": pythons[0] if pythons else None, "captured": captured, "kernel_drops": kernel,
            "interface_drops": iface, "unseen": unseen, "drops": kernel + unseen,
            "cpu_s": round(cpu, 2), "cpu_pct": round(100 * cpu / max(sent["send_seconds"], 1e-9), 1),
            "rss_mb": round(tree.peak / 2**20, 1), "drain_s": round(drain, 2), "exit": proc.returncode,
            "load": load, "backlog_drops": backlog_drops() - backlog, "per_process": per_process}


def backlog_drops() -> int:
    """Packets the kernel dropped for a full per-CPU input backlog (net.core.netdev_max_backlog), summed over
    CPUs: /proc/net/softnet_stat's second column. A veth delivers through this backlog, before any capture."""
    return sum(int(line.split()[1], 16) for line in Path("/proc/net/softnet_stat").read_text().splitlines())


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# ---------------------------------------------------------------- rate search

def holds(run: dict) -> bool:
    """Zero drops at a rate the sender really reached (within 5 %)."""
    return run["drops"] == 0 and run["sent"] > 0 and (run["actual_pps"] or 0) >= 0.95 * run["pps"]


def search(start: int, ceiling: int, steps: int) -> Generator[int, dict, None]:
    """The highest rate held: double from ``start`` until a rate is not held
    (or ``ceiling``), then halve the gap ``steps`` times. Yields each rate to
    try and is sent its run."""
    held, failed, pps = 0, None, start
    while pps <= ceiling:
        if not holds((yield pps)):
            failed = pps
            break
        held, pps = pps, pps * 2
    for _ in range(steps if failed else 0):
        pps = (held + failed) // 2
        if failed - held <= max(1000, held // 50):
            break
        held, failed = (pps, failed) if holds((yield pps)) else (held, pps)


def interleaved(searches: dict[str, Generator[int, dict, None]], measure: Callable[[str, int], dict]) -> None:
    """Run the tools' searches in turn, one rate each, so a change in the
    machine's load between runs falls on every tool alike."""
    pending = {tool: next(gen, None) for tool, gen in searches.items()}
    while any(pps is not None for pps in pending.values()):
        for tool, pps in pending.items():
            if pps is not None:
                try:
                    pending[tool] = searches[tool].send(measure(tool, pps))
                except StopIteration:
                    pending[tool] = None


def best(runs: list[dict]) -> dict | None:
    ok = [r for r in runs if holds(r)]
    return max(ok, key=lambda r: r["pps"]) if ok else None


def search_summary(rows: list[dict], tools: list[str]) -> list[str]:
    """Per tool the highest rate held with 0 drops and the CPU seconds of that run; the ratio 2w/1w."""
    lines = ["| tool | highest rate held, 0 drops (target pps) | actual pps | Mbit/s | CPU s of that run (% of "
             "replay) | first rate not held: kernel drops, unseen (backlog drops), CPU s | load at start |",
             "|---|---|---|---|---|---|---|"]
    held: dict[str, dict | None] = {}
    for tool in tools:
        runs = [r for r in rows if r["tool"] == tool]
        held[tool] = b = best(runs)
        above = min((r for r in runs if not holds(r) and (b is None or r["pps"] > b["pps"])),
                    key=lambda r: r["pps"], default=None)
        over = (f"{human(above['pps'])}: {human(above['kernel_drops'])}, {human(above['unseen'])} "
                f"({human(above['backlog_drops'])} in the backlog), {above['cpu_s']:.1f}" if above else "none tried")
        if above and above["drops"] == 0:
            over += f" (the sender reached only {human(above['actual_pps'])} pps)"
        lines.append(f"| {tool} | {human(b['pps']) if b else 'none'} | {human(b['actual_pps']) if b else '-'} | "
                     f"{b['mbps']:.0f} | {b['cpu_s']:.1f} ({b['cpu_pct']:.0f}%) | {over} | {b['load']} |"
                     if b else f"| {tool} | none | - | - | - | {over} | - |")
    one, two = held.get("inspector-1w"), held.get("inspector-2w")
    if one and two:
        lines.append("")
        lines.append(f"2 workers / 1 worker: {two['pps'] / one['pps']:.2f}x the rate held with 0 drops "
                     f"({human(two['pps'])} / {human(one['pps'])} pps)")
    lines.append("")
    lines.append("CPU during the replay, per 100k packets sent (median over the tool's runs that held): the whole "
                 "tree, and its busiest Python process, which bounds the rate once every process has a core:")
    cost = {}
    for tool in tools:
        runs = [r for r in rows if r["tool"] == tool and holds(r) and r.get("busiest_python_s") is not None]
        if runs:
            tree = statistics.median(r["cpu_replay_s"] * 1e5 / (r["sent"] - r["warmup_sent"]) for r in runs)
            cost[tool] = statistics.median(r["busiest_python_s"] * 1e5 / (r["sent"] - r["warmup_sent"])
                                           for r in runs)
            lines.append(f"  {tool}: tree {tree:.2f} s, busiest process {cost[tool]:.2f} s ({len(runs)} runs)")
    if cost.get("inspector-1w") and cost.get("inspector-2w"):
        lines.append(f"  busiest-process cost 1w / 2w: {cost['inspector-1w'] / cost['inspector-2w']:.2f}x")
    return lines


# ---------------------------------------------------------------- long run

def tx_packets(ns: Namespace) -> int | None:
    """Packets vb0 has sent so far (its kernel counter), or None."""
    done = subprocess.run(["ip", "-n", ns.name, "-s", "-j", "link", "show", "dev", SEND],
                          capture_output=True, text=True, check=False)
    try:
        return int(json.loads(done.stdout)[0]["stats64"]["tx"]["packets"])
    except (ValueError, LookupError, TypeError):
        return None


def read_jsonl(path: Path) -> tuple[int, list[dict]]:
    """``flow`` records in the sensor's JSONL, and its ``stats`` records
    (packets, flows and kernel drops so far, every --stats-interval)."""
    flows, stats = 0, []
    with open(path, "rb") as handle:
        for line in handle:
            if line.startswith(b'{"type":"flow"'):
                flows += 1
            elif line.startswith(b'{"type": "stats"'):
                r = json.loads(line)
                stats.append({k: r[k] for k in ("elapsed_s", "packets", "flows", "kernel_drops")})
    return flows, stats


def run_long(ns: Namespace, pcap: Path, pps: int, seconds: float, workdir: Path, warmup: bool = True) -> dict:
    """One sensor run while ``pcap`` loops at ``pps`` for ``seconds``: its RSS
    every LONG_KEEP s, then what it captured, dropped and reported."""
    out, jsonl = workdir / "long.json", workdir / "long.jsonl"
    base = tx_packets(ns) or 0
    lines: list[str] = []
    proc = _launch(ns, [*_sensor_argv(out), "--jsonl", str(jsonl)])
    tree = Tree(proc.pid, every=LONG_EVERY, keep=LONG_KEEP,
                probe=lambda: None if (n := tx_packets(ns)) is None else n - base)
    try:
        _await_ready(proc, "inspector", "capturing on", lines)
        time.sleep(0.5)
        warm = _warm_up(ns, [pcap], warmup, LONG_WARMUP_PAUSE)
        began = time.monotonic()
        sent = replay(ns, [pcap], pps, seconds, LONG_TIMER)
        ended = time.monotonic()
        sent["warmup_sent"] = warm
        sent["sent"] += warm
        time.sleep(1.0)  # the last packets reach the capture buffer
        tree.mark()
        stopped = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)  # ip netns exec execs: this is the sensor itself
        cpu = _wait_rusage(proc)
        exited = time.monotonic()
    except BaseException:
        _kill(proc)
        raise
    finally:
        tree.stop()
    if not out.exists():
        raise RuntimeError(f"inspector wrote no JSON (exit {proc.returncode}): {' | '.join(lines[-5:])}")
    report = report_head(out)
    captured, kernel, iface = sensor_counts(report)
    flow_records, stats = read_jsonl(jsonl) if jsonl.exists() else (0, [])
    series = [{"t": round(t - began, 1), "rss_mb": round(rss / 2**20, 1), "sent": n,
               "phase": "report" if t > stopped else "run"} for t, rss, n in tree.samples]
    return {"pps": pps, "seconds": seconds, "capture": pcap.name, **sent, "captured": captured,
            "kernel_drops": kernel, "interface_drops": iface, "unseen": max(0, sent["sent"] - captured),
            "flows": int(report["summary"]["flows"]), "jsonl_flows": flow_records,
            "jsonl_mb": round(jsonl.stat().st_size / 1e6, 1) if jsonl.exists() else 0,
            "replay_s": round(ended - began, 1), "report_s": round(exited - stopped, 1),
            "cpu_s": round(cpu, 1), "peak_run_mb": round((tree.peak_before or 0) / 2**20, 1),
            "peak_report_mb": round(tree.peak_after / 2**20, 1), "peak_mb": round(tree.peak / 2**20, 1),
            "exit": proc.returncode, "stats": stats, "series": series}


def deciles(run: dict) -> list[dict]:
    """The sample nearest each 10% of the replay (elapsed 0 = its start)."""
    during = [s for s in run["series"] if s["phase"] == "run" and 0 <= s["t"] <= run["replay_s"]]
    if not during:
        return []
    return [{"pct": pct, **min(during, key=lambda s: abs(s["t"] - pct / 100 * run["replay_s"]))}
            for pct in range(10, 101, 10)]


def long_summary(run: dict) -> dict:
    """RSS at each 10%, RSS(100%)/RSS(20%), and the peaks."""
    marks = deciles(run)
    at = {m["pct"]: m["rss_mb"] for m in marks}
    ratio = round(at[100] / at[20], 3) if at.get(20) and at.get(100) else None
    return {"deciles": marks, "rss_20_mb": at.get(20), "rss_100_mb": at.get(100), "ratio_100_20": ratio}


def print_long(run: dict, summary: dict) -> None:
    print()
    print("| % of run | elapsed s | sent | RSS MB |")
    print("|---|---|---|---|")
    for m in summary["deciles"]:
        print(f"| {m['pct']} | {m['t']:.0f} | {human(m['sent'])} | {m['rss_mb']:.0f} |")
    print()
    ratio = summary["ratio_100_20"]
    print(f"RSS at 20%: {summary['rss_20_mb']} MB, at 100%: {summary['rss_100_mb']} MB, "
          f"ratio 100%/20%: {ratio if ratio is not None else '-'}")
    print(f"peak RSS up to SIGTERM: {run['peak_run_mb']} MB; in the final report phase (SIGTERM to exit, "
          f"{run['report_s']} s): {run['peak_report_mb']} MB")
    expected = round(run["sent"] * LONG_FLOWS / LONG_PACKETS)
    print(f"sent {run['sent']:,} at {human(run['actual_pps'])} pps in {run['replay_s']} s (+{run['warmup_sent']:,} "
          f"warm-up); captured {run['captured']:,}; kernel drops {run['kernel_drops']:,}; unseen {run['unseen']:,}; "
          f"interface drops {run['interface_drops']:,}")
    print(f"flows in the final JSON: {run['flows']:,} (about {expected:,} generated); flow records in the JSONL: "
          f"{run['jsonl_flows']:,} ({run['jsonl_mb']} MB); sensor CPU {run['cpu_s']} s; exit {run['exit']}")


# ---------------------------------------------------------------- captures

def capture(profile: str, packets: int, flows: int) -> Path:
    """A capture in DATA, written by make_capture.py through run.py's ensure_capture if missing."""
    DATA.mkdir(parents=True, exist_ok=True)
    return Path(ensure_capture(DATA, profile, (profile, packets, flows), seed=1, regen=False)["path"])


def captures(quick: bool) -> list[Path]:
    """Two looped captures, frames <= 1514 bytes: 20 bulk flows and many short flows."""
    n = 20_000 if quick else 100_000
    return [capture("bulk", n, 20), capture("many", n, n // 10)]


# ---------------------------------------------------------------- report

def table(rows: list[dict], tools: list[str]) -> str:
    by = {(r["tool"], r["pps"]): r for r in rows}
    head = ["target pps", "actual pps", "Mbit/s", "sent"]
    for t in tools:
        head += [f"{t} captured", f"{t} kernel drops", f"{t} unseen", f"{t} CPU s (%)", f"{t} peak RSS MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for pps in sorted({r["pps"] for r in rows}):
        first = next(by[(t, pps)] for t in tools if (t, pps) in by)
        cells = [human(pps), human(first["actual_pps"]), f"{first['mbps']:.0f}" if first["mbps"] else "-",
                 human(first["sent"])]
        for t in tools:
            r = by.get((t, pps))
            cells += ([human(r["captured"]), human(r["kernel_drops"]), human(r["unseen"]),
                       f"{r['cpu_s']:.1f} ({r['cpu_pct']:.0f}%)", f"{r['rss_mb']:.0f}"] if r else ["-"] * 5)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def held(rows: list[dict], tool: str) -> str:
    ok = [r for r in rows if r["tool"] == tool and r["drops"] == 0 and r["sent"] > 0]
    if not ok:
        return f"{tool}: dropped at every rate tried"
    best = max(ok, key=lambda r: r["actual_pps"] or 0)
    return (f"{tool}: held {human(best['actual_pps'])} pps ({best['mbps']:.0f} Mbit/s) with zero drops "
            f"(target {human(best['pps'])})")


def long_main(seconds: float, pps: int, warmup: bool, out: Path | None) -> None:
    pcap = capture("many", LONG_PACKETS, LONG_FLOWS)
    print(f"machine: {os.cpu_count()} cores, loadavg {' '.join(Path('/proc/loadavg').read_text().split()[:3])}; "
          f"long run: {pcap.name} ({LONG_FLOWS:,} short flows, looped) at {human(pps)} pps for {seconds:g} s",
          flush=True)
    try:
        with Namespace() as ns, tempfile.TemporaryDirectory(prefix="inspbench-") as tmp:
            run = run_long(ns, pcap, pps, seconds, Path(tmp), warmup)
    except KeyboardInterrupt:
        print("interrupted; namespace removed", file=sys.stderr)
        sys.exit(130)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or ""
        die(f"{exc} {detail}".strip())
    summary = long_summary(run)
    print_long(run, summary)
    if out:
        head = {k: v for k, v in run.items() if k not in ("stats", "series")}
        out.write_text(json.dumps({"mode": "long", **head, **summary, "stats": run["stats"],
                                   "series": run["series"]}, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", help="packets/s steps, comma-separated (default 50k,100k,200k,400k,800k; "
                                    "--quick: 20k,100k,400k)")
    ap.add_argument("--seconds", type=float, help="seconds of replay per rate (default 8; --quick: 3)")
    ap.add_argument("--quick", action="store_true", help="small captures, three short steps")
    ap.add_argument("--tools", default="inspector,tcpdump",
                    help="inspector,tcpdump or one of them (with --workers: inspector-1w, inspector-2w ...)")
    ap.add_argument("--workers", help="capture processes of inspector live, comma-separated: one inspector-Nw "
                                      "tool each (default with --search: 1,2)")
    ap.add_argument("--search", action="store_true",
                    help="for each tool the highest rate held with 0 drops: double from --search-from until one "
                         "is not held, then bisect --search-steps times, the tools' runs in turn; tcpreplay "
                         "sleeps between bursts")
    ap.add_argument("--search-from", default="25k", help="--search: first rate (default 25k)")
    ap.add_argument("--search-max", default="1600k", help="--search: highest rate tried (default 1600k)")
    ap.add_argument("--search-steps", type=int, default=3, help="--search: bisection steps (default 3)")
    ap.add_argument("--burst", type=int, help="tcpreplay --pps-multi, packets per timing interval "
                                              f"(default 1; --search: {SEARCH_BURST})")
    ap.add_argument("--no-warmup", action="store_true",
                    help=f"no {WARMUP_PPS} pps x {WARMUP_SECONDS:g} s warm-up replay before each measured one")
    ap.add_argument("--long", type=float, metavar="SECONDS",
                    help="long-run memory mode: one sensor run, many short flows looped for SECONDS")
    ap.add_argument("--long-rate", default="5k", help="--long: packets/s (default 5k)")
    ap.add_argument("--out", type=Path, help="write every run as JSON here")
    args = ap.parse_args()
    rates = [parse_rate(r) for r in (args.rates or ("20k,100k,400k" if args.quick else
                                                     "50k,100k,200k,400k,800k")).split(",")]
    seconds = args.seconds or (3.0 if args.quick else 8.0)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    workers = args.workers or ("1,2" if args.search else None)
    if workers:
        tools = [t for t in tools if t != "inspector"] + [f"inspector-{int(n)}w" for n in workers.split(",")]
    timer, burst = ("nano", args.burst or SEARCH_BURST) if args.search else (None, args.burst or 1)
    if os.geteuid() != 0:
        die("must run as root (it creates a network namespace and captures): sudo python benchmarks/live.py")
    for exe, pkg in (("ip", "iproute2"), ("tcpreplay", "tcpreplay"), ("tcpdump", "tcpdump")):
        if shutil.which(exe) is None:
            die(f"{exe} is not installed (apt-get install {pkg}; see benchmarks/apt-packages.txt)")
    try:
        import psutil  # noqa: F401
    except ImportError:
        die("psutil is not installed (pip install psutil)")
    if bad := {t for t in tools if t not in ("inspector", "tcpdump") and not re.fullmatch(r"inspector-\d+w", t)}:
        die(f"--tools: unknown {', '.join(sorted(bad))}; choose from inspector,tcpdump")
    # SIGTERM behaves as Ctrl-C, so the namespace is removed either way.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    if args.long:
        long_main(args.long, parse_rate(args.long_rate), not args.no_warmup, args.out)
        return

    pcaps = captures(args.quick)
    print(f"machine: {os.cpu_count()} cores, loadavg {loadavg()}; replaying {', '.join(p.name for p in pcaps)} "
          f"(looped) for {seconds:g} s per rate{f', tcpreplay --timer {timer} --pps-multi {burst}' if timer else ''}",
          flush=True)
    rows: list[dict] = []

    def measure(ns: Namespace, tool: str, pps: int, workdir: Path) -> dict:
        r = run_tool(ns, tool, pcaps, pps, seconds, workdir, not args.no_warmup, timer, burst)
        rows.append(r)
        print(f"  {tool:12s} target {human(pps):>5s} pps: sent {r['sent']:,} at {human(r['actual_pps'])} "
              f"pps, captured {r['captured']:,}, kernel drops {r['kernel_drops']:,}, unseen "
              f"{r['unseen']:,} (backlog drops {r['backlog_drops']:,}), CPU {r['cpu_s']} s, RSS {r['rss_mb']} MB, "
              f"drain {r['drain_s']} s, load {r['load']}"
              f"{f', packets by process {per}' if (per := r['per_process']) else ''}; during the replay CPU "
              f"{r['cpu_replay_s']} s, busiest Python process {r['busiest_python_s']} s", flush=True)
        return r

    try:
        with Namespace() as ns, tempfile.TemporaryDirectory(prefix="inspbench-") as tmp:
            if args.search:
                interleaved({tool: search(parse_rate(args.search_from), parse_rate(args.search_max),
                                          args.search_steps) for tool in tools},
                            lambda tool, pps: measure(ns, tool, pps, Path(tmp)))
            else:
                for tool in tools:
                    for pps in rates:
                        measure(ns, tool, pps, Path(tmp))
    except KeyboardInterrupt:
        print("interrupted; namespace removed", file=sys.stderr)
        if not rows:
            sys.exit(130)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or ""
        die(f"{exc} {detail}".strip())
    print()
    if args.search:
        print("\n".join(search_summary(rows, tools)))
    else:
        print(table(rows, tools))
        print()
        for tool in tools:
            print(held(rows, tool))
    if args.out:
        args.out.write_text(json.dumps({"seconds": seconds, "captures": [p.name for p in pcaps], "timer": timer,
                                        "burst": burst, "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
