#!/usr/bin/env python3
"""The live sensor at its stop and after a SIGKILL: what is accounted for, how fast it is cleaned up.

``--part drain``: in a private network namespace (tests/netns.py), ``inspector
live`` captures on one end of a veth pair while tcpreplay sends a burst of
--packets UDP frames (as fast as it can) into the other; SIGTERM comes the
moment tcpreplay returns. Printed per run: packets sent (tcpreplay), analysed,
dropped by the kernel, unread at the stop, the identity check (sent =
analysed + dropped + unread) and the seconds from SIGTERM to the sensor's
exit (the bounded drain of what the kernel still holds is in them).

``--part kill``: ``inspector live -i lo`` (1 and 2 capture processes) is
SIGKILLed on a quiet capture; printed: seconds until every tcpdump it started
is gone and until its temporary spool folder is removed (the reaper's work).

    sudo python benchmarks/live_faults.py                 # both, 3 runs each
    sudo python benchmarks/live_faults.py --part drain --packets 50000 --repeat 2

Needs root, ip (iproute2), tcpdump and tcpreplay.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from tests.netns import Namespace, available, udp_burst  # noqa: E402 - the namespace the live tests use

PORT = 5001
STARTUP_SECONDS = 300  # a cold kernel cache compiles before tcpdump starts


class Sensor:
    """``inspector live ARGS`` (through ``wrap``), started and capturing; its stderr kept."""

    def __init__(self, argv: list[str], cwd: Path, env: dict[str, str] | None = None,
                 wrap=lambda argv: argv) -> None:
        self.proc = subprocess.Popen(wrap([sys.executable, "-m", "inspector", "live", "-q", *argv]), cwd=cwd,
                                     env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stderr), daemon=True).start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while not any("capturing on" in line for line in self.lines):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                sys.exit("the sensor did not start:\n" + "".join(self.lines))
            time.sleep(0.05)


def descendants(pid: int) -> dict[int, str]:
    """Every process under ``pid``: pid -> command name."""
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            for child in children:
                try:
                    found[child] = Path(f"/proc/{child}/comm").read_text().strip()
                except OSError:
                    continue
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def drain(packets: int) -> dict:
    with Namespace("inspbench") as ns, tempfile.TemporaryDirectory(prefix="inspbench-") as tmp:
        folder = Path(tmp)
        burst = udp_burst(folder / "burst.pcap", packets, PORT)
        sensor = Sensor(["-i", ns.recv, "--filter", f"udp dst port {PORT}", "--stats-interval", "0",
                         "--json", "result.json"], folder, wrap=ns.cmd)
        sent = ns.run(["tcpreplay", "-i", ns.send, "-t", str(burst)], capture_output=True, text=True, check=True)
        stopped = time.monotonic()
        sensor.proc.send_signal(signal.SIGTERM)
        status = sensor.proc.wait(120)
        took = time.monotonic() - stopped
        row = json.loads((folder / "result.json").read_text())["inputs"][0]
        actual = int(re.search(r"Actual: (\d+) packets", sent.stdout)[1])
    accounted = row["packets"] + (row["dropped_kernel"] or 0) + (row["dropped_interface"] or 0) + \
        (row["unread_at_stop"] or 0)
    return {"sent": actual, "analysed": row["packets"], "dropped_kernel": row["dropped_kernel"],
            "unread_at_stop": row["unread_at_stop"], "adds_up": accounted == actual, "stop_s": took,
            "status": status}


def kill(workers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="inspbench-") as tmp:
        temp = Path(tmp) / "tmp"
        temp.mkdir(mode=0o700)
        sensor = Sensor(["-i", "lo", "--filter", "tcp port 1", "--workers", str(workers)], Path(tmp),
                        env={"TMPDIR": str(temp)})
        time.sleep(1)
        tcpdumps = [pid for pid, name in descendants(sensor.proc.pid).items() if name == "tcpdump"]
        spools = list(temp.glob("inspector-spool-*"))
        sensor.proc.kill()
        killed = time.monotonic()
        sensor.proc.wait()
        while any(alive(pid) for pid in tcpdumps) and time.monotonic() - killed < 30:
            time.sleep(0.01)
        tcpdump_s = time.monotonic() - killed
        while any(path.exists() for path in spools) and time.monotonic() - killed < 30:
            time.sleep(0.01)
        return {"workers": workers, "tcpdumps": len(tcpdumps), "tcpdump_gone_s": tcpdump_s,
                "spools": len(spools), "spool_removed_s": time.monotonic() - killed,
                "left": sum(alive(pid) for pid in tcpdumps) + sum(path.exists() for path in spools)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("drain", "kill", "all"), default="all")
    parser.add_argument("--packets", type=int, default=50_000, help="packets in the burst of --part drain")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if why := available():
        sys.exit(f"live_faults.py {why}")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.part in ("drain", "all"):
        print(f"\nSIGTERM right after a burst of {args.packets:,} UDP packets (default 64 MiB kernel buffer):")
        print(f"{'sent':>8} {'analysed':>9} {'kernel drops':>13} {'unread':>7} {'adds up':>8} {'stop s':>7}")
        for _ in range(args.repeat):
            r = drain(args.packets)
            print(f"{r['sent']:>8,} {r['analysed']:>9,} {r['dropped_kernel']!s:>13} {r['unread_at_stop']!s:>7} "
                  f"{'yes' if r['adds_up'] else 'NO':>8} {r['stop_s']:>7.2f}")
    if args.part in ("kill", "all"):
        print("\nSIGKILL of the sensor on a quiet loopback capture:")
        print(f"{'workers':>7} {'tcpdumps':>8} {'tcpdump gone s':>15} {'spools':>6} {'spool removed s':>16} {'left':>5}")
        for _ in range(args.repeat):
            for workers in (1, 2):
                r = kill(workers)
                print(f"{r['workers']:>7} {r['tcpdumps']:>8} {r['tcpdump_gone_s']:>15.2f} {r['spools']:>6} "
                      f"{r['spool_removed_s']:>16.2f} {r['left']:>5}")
    print(f"\nload average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
