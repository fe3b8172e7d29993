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

    sudo python benchmarks/live.py --quick
    sudo python benchmarks/live.py --rates 50k,100k,200k,400k,800k --seconds 8

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
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
DATA = BENCH / ".data" / "live"
FILTER = "tcp"          # the generated traffic is all TCP; both tools use the same BPF filter
SNAPLEN = 262144        # inspector live's default; tcpdump gets the same
SEND, RECV = "vb0", "vb1"
# Before each measured replay, WARMUP_PPS for WARMUP_SECONDS then a 2 s pause: the sensor's first
# batches (imports, numba's cache load) are then behind it. Its packets count as sent.
WARMUP_PPS, WARMUP_SECONDS = 2_000, 1.0


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

class Namespace:
    """``ip netns add inspbench-PID`` with a veth pair inside; removed on close."""

    def __init__(self) -> None:
        self.name = f"inspbench-{os.getpid()}"

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    def __enter__(self) -> Namespace:
        self._ip("netns", "add", self.name)
        try:
            ns = ("-n", self.name)
            for key in ("all", "default"):  # no IPv6 neighbour/router chatter in the capture
                self.run(["sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"], check=False,
                         capture_output=True)
            self._ip(*ns, "link", "add", SEND, "type", "veth", "peer", "name", RECV)
            for dev in (SEND, RECV):
                self._ip(*ns, "link", "set", dev, "mtu", "1500", "up")
        except BaseException:
            self.close()
            raise
        return self

    def cmd(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd(argv), **kwargs)

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)  # the veth pair goes with it

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------- measuring

class Tree:
    """Peak summed RSS of a process and its descendants, sampled in a thread."""

    def __init__(self, pid: int) -> None:
        import psutil
        self.peak = 0
        self._done = threading.Event()
        self._proc = psutil.Process(pid)
        self._psutil = psutil
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.is_set():
            try:
                procs = [self._proc, *self._proc.children(recursive=True)]
                total = 0
                for p in procs:
                    try:
                        total += p.memory_info().rss
                    except self._psutil.Error:
                        pass
                self.peak = max(self.peak, total)
            except self._psutil.Error:
                return
            self._done.wait(0.1)

    def stop(self) -> None:
        self._done.set()
        self._thread.join(2)


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


def replay(ns: Namespace, pcaps: list[Path], pps: int, seconds: float) -> dict:
    """tcpreplay at ``pps`` for about ``seconds``: packets sent, actual rate, failures."""
    argv = ["tcpreplay", "-i", SEND, "--preload-pcap", "--pps", str(pps), "--loop", "100000",
            "--limit", str(int(pps * seconds)), "--no-flow-stats", *map(str, pcaps)]
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


def run_tool(ns: Namespace, tool: str, pcaps: list[Path], pps: int, seconds: float, workdir: Path,
             warmup: bool = True) -> dict:
    if tool == "inspector":
        out = workdir / f"inspector-{pps}.json"
        argv = [sys.executable, "-m", "inspector", "live", "-i", RECV, "--filter", FILTER,
                "--snaplen", str(SNAPLEN), "--json", str(out), "-q"]
        ready = "capturing on"
    else:
        argv = ["tcpdump", "-i", RECV, "-n", "-s", str(SNAPLEN), "-w", "/dev/null", FILTER]
        ready = "listening on"
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}".rstrip(os.pathsep))
    lines: list[str] = []
    proc = subprocess.Popen(ns.cmd(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env, start_new_session=True)
    tree = Tree(proc.pid)
    try:
        if not _stderr_reader(proc, ready, lines).wait(120) or proc.poll() is not None:
            raise RuntimeError(f"{tool} did not start: {' | '.join(lines[-5:])}")
        time.sleep(0.5)
        warm = replay(ns, pcaps, WARMUP_PPS, WARMUP_SECONDS)["sent"] if warmup else 0
        time.sleep(2.0 if warmup else 0)
        sent = replay(ns, pcaps, pps, seconds)
        sent["warmup_sent"] = warm
        sent["sent"] += warm  # every packet replayed, warm-up included, is expected in the capture
        time.sleep(1.0)  # the last packets reach the capture buffer
        stopped = time.monotonic()
        os.kill(proc.pid, signal.SIGINT)  # ip netns exec execs: this is the tool itself
        cpu = _wait_rusage(proc)
        drain = time.monotonic() - stopped
    except BaseException:
        if proc.returncode is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        raise
    finally:
        tree.stop()
    time.sleep(0.1)
    text = "\n".join(lines)
    if tool == "inspector":
        if not out.exists():
            raise RuntimeError(f"inspector wrote no JSON (exit {proc.returncode}): {' | '.join(lines[-5:])}")
        report = json.loads(out.read_text())
        captured = sum(int(row["packets"]) for row in report["inputs"])
        kinds = {}
        for row in report["anomalies"]:
            kinds[row["kind"]] = kinds.get(row["kind"], 0) + int(row["count"])
        kernel, iface = kinds.get("kernel-drops", 0), kinds.get("interface-drops", 0)
    else:
        m = re.search(r"(\d+) packets? captured", text)
        k = re.search(r"(\d+) packets? dropped by kernel", text)
        captured, kernel, iface = int(m[1]) if m else 0, int(k[1]) if k else 0, 0
    unseen = max(0, sent["sent"] - captured)
    return {"tool": tool, "pps": pps, **sent, "captured": captured, "kernel_drops": kernel,
            "interface_drops": iface, "unseen": unseen, "drops": kernel + unseen,
            "cpu_s": round(cpu, 2), "cpu_pct": round(100 * cpu / max(sent["send_seconds"], 1e-9), 1),
            "rss_mb": round(tree.peak / 2**20, 1), "drain_s": round(drain, 2), "exit": proc.returncode}


# ---------------------------------------------------------------- captures

def captures(quick: bool) -> list[Path]:
    """Two looped captures, frames <= 1514 bytes: 20 bulk flows and many short flows."""
    DATA.mkdir(parents=True, exist_ok=True)
    n = 20_000 if quick else 100_000
    specs = [("bulk", ["--profile", "bulk", "--packets", str(n)]),
             ("many", ["--profile", "many", "--packets", str(n), "--flows", str(n // 10)])]
    paths = []
    for name, args in specs:
        path = DATA / f"{name}-{n}.pcap"
        if not path.exists():
            subprocess.run([sys.executable, str(BENCH / "make_capture.py"), str(path), *args, "--quiet"],
                           check=True)
        paths.append(path)
    return paths


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", help="packets/s steps, comma-separated (default 50k,100k,200k,400k,800k; "
                                    "--quick: 20k,100k,400k)")
    ap.add_argument("--seconds", type=float, help="seconds of replay per rate (default 8; --quick: 3)")
    ap.add_argument("--quick", action="store_true", help="small captures, three short steps")
    ap.add_argument("--tools", default="inspector,tcpdump", help="inspector,tcpdump or one of them")
    ap.add_argument("--no-warmup", action="store_true",
                    help=f"no {WARMUP_PPS} pps x {WARMUP_SECONDS:g} s warm-up replay before each measured one")
    ap.add_argument("--out", type=Path, help="write every run as JSON here")
    args = ap.parse_args()
    rates = [parse_rate(r) for r in (args.rates or ("20k,100k,400k" if args.quick else
                                                     "50k,100k,200k,400k,800k")).split(",")]
    seconds = args.seconds or (3.0 if args.quick else 8.0)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if os.geteuid() != 0:
        die("must run as root (it creates a network namespace and captures): sudo python benchmarks/live.py")
    for exe, pkg in (("ip", "iproute2"), ("tcpreplay", "tcpreplay"), ("tcpdump", "tcpdump")):
        if shutil.which(exe) is None:
            die(f"{exe} is not installed (apt-get install {pkg}; see benchmarks/apt-packages.txt)")
    try:
        import psutil  # noqa: F401
    except ImportError:
        die("psutil is not installed (pip install psutil)")
    if bad := set(tools) - {"inspector", "tcpdump"}:
        die(f"--tools: unknown {', '.join(sorted(bad))}; choose from inspector,tcpdump")

    pcaps = captures(args.quick)
    print(f"machine: {os.cpu_count()} cores, loadavg {' '.join(Path('/proc/loadavg').read_text().split()[:3])}; "
          f"replaying {', '.join(p.name for p in pcaps)} (looped) for {seconds:g} s per rate", flush=True)
    rows: list[dict] = []
    # SIGTERM behaves as Ctrl-C, so the namespace is removed either way.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        with Namespace() as ns, tempfile.TemporaryDirectory(prefix="inspbench-") as tmp:
            for tool in tools:
                for pps in rates:
                    r = run_tool(ns, tool, pcaps, pps, seconds, Path(tmp), not args.no_warmup)
                    rows.append(r)
                    print(f"  {tool:9s} target {human(pps):>5s} pps: sent {r['sent']:,} at {human(r['actual_pps'])} "
                          f"pps, captured {r['captured']:,}, kernel drops {r['kernel_drops']:,}, unseen "
                          f"{r['unseen']:,}, CPU {r['cpu_s']} s, RSS {r['rss_mb']} MB, drain {r['drain_s']} s",
                          flush=True)
    except KeyboardInterrupt:
        print("interrupted; namespace removed", file=sys.stderr)
        if not rows:
            sys.exit(130)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None) or ""
        die(f"{exc} {detail}".strip())
    print()
    print(table(rows, tools))
    print()
    for tool in tools:
        print(held(rows, tool))
    if args.out:
        args.out.write_text(json.dumps({"seconds": seconds, "captures": [p.name for p in pcaps], "runs": rows},
                                       indent=1))


if __name__ == "__main__":
    main()
