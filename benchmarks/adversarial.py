"""Cost an attacker controls: hostile captures next to benign ones of the same size.

Whoever writes the traffic must not set the cost of analysing it: it must
stay linear in packets and bytes whatever the content. Each case writes a
hostile capture and a benign one with the same packets, flows and bytes,
runs ``inspector analyze FILE --quiet --json OUT`` on both in the same run,
and prints CPU seconds and the ratio (the goal: within 2x).

Cases:

``migration-flows``  N short flows, each a SYN and one segment opening with
                     a QEMU migration header (N migration events, N
                     findings), against N flows of an HTTP request
``scanner-bait-*``   1,024 flows of one 65,000-byte segment each (62 MiB) to a migration
                     port, filled with what the secret scan's patterns
                     anchor on (``eyJ`` of a JWT, ``password=``, ``token=:``,
                     ``-----BEGIN``), against random bytes
``tuple-reuse``      N flows on ONE 4-tuple, each a SYN, a segment and a RST
                     (each packet after the close starts a new flow), against
                     N flows on N 4-tuples

``--live`` measures the live sensor instead (case ``tuple-reuse-live``; needs
root, ip, tcpreplay, tcpdump, psutil): in a private network namespace with a
veth pair (``benchmarks/live.py``'s), tcpreplay sends at ``--rate`` a capture
of N flows on ONE 4-tuple (SYN, segment, RST each: every SYN ends the flow
before it inside the packet path), and one of N flows on N 4-tuples with the
same packets and bytes, each into its own ``inspector live -i vb1 --json OUT
--jsonl OUT --stats-interval 1``, which gets SIGTERM ``--settle`` seconds
after the replay. Per case: packets sent, analysed, kernel drops, flows in the JSON,
CPU seconds of the sensor's tree (user+sys; all of it, and from the replay's
start to its exit, the start-up left out), the longest stall of its packet
count (stats records every second: seconds without progress while behind
the sender), how long after the replay it had read every packet, seconds
from SIGTERM to exit; then hostile/benign of the CPU from the replay on and
of the stop time (goal: within 2x; with packets unseen the runs did
different work, which it says). The benign flows end 5 s after their RST
(``after_close``), the hostile ones at once (the next SYN), so with the
default ``--settle 1`` the benign run classifies its flows after SIGTERM and
the hostile one during the capture; ``--settle 8`` has both do it before.

    python benchmarks/adversarial.py                 # 20,000 flows
    python benchmarks/adversarial.py --flows 2000    # quick
    sudo python benchmarks/adversarial.py --live     # 5,000 flows at 10k pkts/s
    sudo python benchmarks/adversarial.py --live --flows 20000 --rate 20k --settle 8
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import resource
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

sys.path.insert(0, str(BENCH))
import live  # the live benchmark's namespace, replay and CPU helpers

QEMU_HEAD = b"QEVM\x00\x00\x00\x03\x05\x00\x00\x00\x00" + bytes(200)
HTTP_HEAD = b"GET / HTTP/1.1\r\nHost: api\r\nAccept: */*\r\n\r\n".ljust(len(QEMU_HEAD), b" ")


def _frame(src: bytes, dst: bytes, sport: int, dport: int, seq: int, flags: int, payload: bytes) -> bytes:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0)
    return b"\0" * 12 + b"\x08\x00" + ip + tcp + payload


def write_short_flows(path: Path, flows: int, payload: bytes, *, one_tuple: bool = False,
                      segments: int = 1, rst: bool = False) -> None:
    """``flows`` TCP flows of a SYN and ``segments`` data segments to a
    migration port, each between its own host pair (198.18.0.0/15, RFC 2544)
    50 us apart; ``one_tuple``: all on one 4-tuple, each ended by a RST;
    ``rst``: each ended by a RST on its own 4-tuple too."""
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        start = 1_700_000_000
        for i in range(flows):
            host = 0 if one_tuple else i
            src = bytes([198, 18, (host >> 8) & 255, host & 255])
            dst = bytes([198, 19, (host >> 8) & 255, host & 255])
            packets = [(0x02, b"")] + [(0x18, payload)] * segments + ([(0x04, b"")] if one_tuple or rst else [])
            seq = 1000
            for k, (flags, data) in enumerate(packets):
                frame = _frame(src, dst, 30000 + host % 20000, 49152 + host % 100, seq, flags, data)
                seq += len(data) or 1
                us = i * 50 * len(packets) + k
                out.write(struct.pack("<IIII", start + us // 1_000_000, us % 1_000_000, len(frame), len(frame))
                          + frame)


SEGMENT = 65_000  # bytes of payload per segment of the scanner-bait cases (a GSO-sized capture record)
BAIT = {"jwt": b"eyJ", "password": b"password=", "token": b"token=:", "pem": b"-----BEGIN "}


def cpu_seconds(capture: Path, out: Path) -> tuple[float, float]:
    """CPU seconds (user + sys) and wall seconds of one ``inspector analyze``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "inspector", "analyze", str(capture), "--quiet", "--json", str(out)],
                   check=True, cwd=ROOT)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime, wall


LIVE_STOP_LIMIT = 900.0  # a sensor not gone this long after SIGTERM is killed (and the run says so)


def _reap(proc: subprocess.Popen, limit: float) -> tuple[float, bool]:
    """Wait up to ``limit`` s for the sensor; its tree's user+sys CPU seconds and whether it exited by itself."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime, True
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    return live._wait_rusage(proc), False


def progress(stats: list[dict], sent: int, offset: float) -> tuple[float, float | None, float]:
    """From the sensor's stats records (``elapsed_s`` since its start; ``offset``:
    where the replay began on that clock): the longest stall (seconds between
    records whose packet count did not move while it was behind the sender),
    the time from the replay's start until it had read ``sent`` packets (None:
    not before SIGTERM) and the longest gap between two records."""
    stall = longest = gap = 0.0
    caught_up = None
    for before, after in itertools.pairwise(stats):
        gap = max(gap, after["elapsed_s"] - before["elapsed_s"])
        if after["packets"] == before["packets"] and before["packets"] < sent and after["elapsed_s"] > offset:
            stall += after["elapsed_s"] - max(before["elapsed_s"], offset)
            longest = max(longest, stall)
        else:
            stall = 0.0
    for record in stats:
        if record["packets"] >= sent:
            caught_up = record["elapsed_s"] - offset
            break
    return longest, caught_up, gap


def run_live_case(ns: live.Namespace, capture: Path, packets: int, pps: int, settle: float, folder: Path,
                  name: str) -> dict:
    """One ``inspector live`` while ``capture`` is replayed once at ``pps``, SIGTERM ``settle`` s after it."""
    out, jsonl = folder / f"{name}.json", folder / f"{name}.jsonl"
    argv = [sys.executable, "-m", "inspector", "live", "-i", live.RECV, "--filter", "tcp", "-q",
            "--json", str(out), "--jsonl", str(jsonl), "--stats-interval", "1"]
    load = live.loadavg()
    lines: list[str] = []
    proc = live._launch(ns, argv)
    try:
        live._await_ready(proc, "inspector live", "capturing on", lines)
        ready = time.monotonic()
        time.sleep(0.5)
        start_cpu = sum(seconds for _name, seconds in live.process_cpu(proc.pid).values())
        began = time.monotonic()
        sent = live.replay(ns, [capture], pps, (packets + 0.5) / pps, timer="nano")
        replay_s = time.monotonic() - began
        time.sleep(settle)
        stopped = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)  # ip netns exec execs: this is the sensor itself
        cpu, exited = _reap(proc, LIVE_STOP_LIMIT)
        stop_s = time.monotonic() - stopped
    except BaseException:
        live._kill(proc)
        raise
    if not out.exists():
        raise RuntimeError(f"{name}: inspector live wrote no JSON (exit {proc.returncode}): {' | '.join(lines[-5:])}")
    report = live.report_head(out)
    analysed, kernel, _interface = live.sensor_counts(report)
    _flow_records, stats = live.read_jsonl(jsonl) if jsonl.exists() else (0, [])
    stall, caught_up, gap = progress(stats, sent["sent"], began - ready)
    return {"case": name, "load": load, "sent": sent["sent"], "pps": sent["actual_pps"], "replay_s": replay_s,
            "analysed": analysed, "kernel_drops": kernel, "flows": int(report["summary"]["flows"]),
            "cpu_s": cpu, "cpu_traffic_s": cpu - start_cpu, "stall_s": stall,
            "behind_s": None if caught_up is None else max(0.0, caught_up - replay_s), "stats_gap_s": gap,
            "stop_s": stop_s, "exited": exited, "exit": proc.returncode,
            "sigterm_at_s": stopped - began,
            "progress": [(r["elapsed_s"] - (began - ready), r["packets"]) for r in stats]}


def _latest_read(runs: list[dict]) -> str:
    """The slowest run's time from the replay's end to its last packet read, or 'after SIGTERM'."""
    if any(r["behind_s"] is None for r in runs):
        return "after SIGTERM"
    return f"{max(r['behind_s'] for r in runs):.1f}"


def live_main(flows: int, pps: int, settle: float, repeat: int) -> None:
    """The ``tuple-reuse-live`` case: benign and hostile runs in turn, ``repeat`` times each."""
    if os.geteuid() != 0:
        sys.exit("adversarial.py --live: must run as root (a network namespace and a capture)")
    for exe in ("ip", "tcpreplay", "tcpdump"):
        if shutil.which(exe) is None:
            sys.exit(f"adversarial.py --live: {exe} is not installed (see benchmarks/apt-packages.txt)")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))  # namespace removed
    runs: dict[str, list[dict]] = {"benign": [], "hostile": []}
    print(f"machine: {os.cpu_count()} cores, loadavg {live.loadavg()}; tuple-reuse-live: {flows:,} flows of SYN, "
          f"segment, RST ({3 * flows:,} packets) at {pps:,} pkts/s, SIGTERM {settle:g} s after the replay",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="inspector-adversarial-") as tmp, live.Namespace() as ns:
        folder = Path(tmp)
        cpu_seconds(ROOT / "captures" / "http-api.pcap", folder / "warm.json")  # kernels compiled and cached
        captures = {"benign": folder / "benign.pcap", "hostile": folder / "hostile.pcap"}
        write_short_flows(captures["benign"], flows, HTTP_HEAD, rst=True)
        write_short_flows(captures["hostile"], flows, HTTP_HEAD, one_tuple=True)
        for round_ in range(repeat):
            for kind, capture in captures.items():
                r = run_live_case(ns, capture, 3 * flows, pps, settle, folder, f"{kind}-{round_}")
                runs[kind].append(r)
                behind = "not before SIGTERM" if r["behind_s"] is None else f"{r['behind_s']:.1f} s"
                print(f"  {kind:8} sent {r['sent']:,} at {live.human(r['pps'])} pps, analysed {r['analysed']:,} "
                      f"(unseen {r['sent'] - r['analysed']:,}), "
                      f"kernel drops {r['kernel_drops']:,}, flows {r['flows']:,}; CPU {r['cpu_s']:.2f} s "
                      f"({r['cpu_traffic_s']:.2f} from the replay on); longest stall {r['stall_s']:.1f} s, all read "
                      f"{behind} after the replay, stats records at most {r['stats_gap_s']:.1f} s apart; SIGTERM to exit "
                      f"{r['stop_s']:.2f} s{'' if r['exited'] else ' (killed)'}, exit {r['exit']}; load {r['load']}",
                      flush=True)
                print(f"           packets read by then (s since the replay began; SIGTERM at {r['sigterm_at_s']:.1f}): "
                      f"{', '.join(f'{t:.1f} {live.human(n)}' for t, n in r['progress'] if t >= 0)}", flush=True)
    median = {kind: {key: statistics.median(r[key] for r in rs) for key in ("cpu_s", "cpu_traffic_s", "stop_s")}
              for kind, rs in runs.items()}
    print()
    print("| case | flows | sent | analysed (fewest) | kernel drops | CPU s | CPU s from the replay on "
          "| longest stall s | all read, s after the replay | SIGTERM to exit s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for kind, rs in runs.items():
        print(f"| tuple-reuse-live {kind} | {flows:,} | {sum(r['sent'] for r in rs) // len(rs):,} | "
              f"{min(r['analysed'] for r in rs):,} | {max(r['kernel_drops'] for r in rs):,} | "
              f"{median[kind]['cpu_s']:.2f} | {median[kind]['cpu_traffic_s']:.2f} | "
              f"{max(r['stall_s'] for r in rs):.1f} | {_latest_read(rs)} | {median[kind]['stop_s']:.2f} |")
    print()
    unseen = sum(r["sent"] - r["analysed"] for rs in runs.values() for r in rs)
    if unseen:
        print(f"{unseen:,} packets sent were not analysed (kernel drops, or unread when the capture stopped): "
              "the runs did not do the same work, their ratios compare unlike things")
    for key, what in (("cpu_traffic_s", "CPU from the replay on"), ("stop_s", "SIGTERM to exit")):
        ratio = median["hostile"][key] / median["benign"][key]
        verdict = "not comparable: packets unseen" if unseen else "within 2x" if ratio <= 2 else "NOT within 2x"
        print(f"hostile/benign, {what}: {ratio:.2f}x ({verdict})"
              f"{f' (medians of {repeat})' if repeat > 1 else ''}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, help="flows per capture (default 20,000; --live: 5,000)")
    parser.add_argument("--live", action="store_true", help="the live sensor case, tuple-reuse-live (root)")
    parser.add_argument("--rate", default="10k", help="--live: packets per second of the replay (default 10k)")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="--live: seconds from the replay's end to SIGTERM (default 1; from 7 on the benign "
                             "flows, ended by RST, are closed before it too: 5 s later, at a 1 s sweep)")
    parser.add_argument("--repeat", type=int, default=1, help="--live: runs of each capture, in turn (medians)")
    args = parser.parse_args()
    if args.live:
        live_main(args.flows or 5_000, live.parse_rate(args.rate), args.settle, args.repeat)
        return
    args.flows = args.flows or 20_000
    with tempfile.TemporaryDirectory(prefix="inspector-adversarial-") as tmp:
        folder = Path(tmp)
        noise = random.Random(1).randbytes(SEGMENT)
        bait_flows = 1024
        cases = {"migration-flows": (args.flows, dict(payload=QEMU_HEAD), dict(payload=HTTP_HEAD)),
                 "tuple-reuse": (args.flows, dict(payload=HTTP_HEAD, one_tuple=True), dict(payload=HTTP_HEAD))}
        for bait, anchor in BAIT.items():
            cases[f"scanner-bait-{bait}"] = (bait_flows, dict(payload=(anchor * SEGMENT)[:SEGMENT]),
                                             dict(payload=noise))
        cpu_seconds(ROOT / "captures" / "http-api.pcap", folder / "warm.json")  # kernels compiled and cached
        print(f"{'case':22} {'flows':>8} {'benign cpu s':>13} {'hostile cpu s':>14} {'ratio':>6}")
        for name, (flows, hostile, benign) in cases.items():
            figures = []
            for kind, options in (("benign", benign), ("hostile", hostile)):
                capture = folder / f"{name}-{kind}.pcap"
                write_short_flows(capture, flows, **options)
                figures.append(cpu_seconds(capture, folder / f"{name}-{kind}.json")[0])
                capture.unlink()
            print(f"{name:22} {flows:>8,} {figures[0]:>13.2f} {figures[1]:>14.2f} {figures[1] / figures[0]:>6.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
