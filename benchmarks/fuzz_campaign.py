"""The long fuzz campaign: 100,000+ mutated real captures, 0 crashes, 0 hangs, memory bounded.

tests/test_fuzz.py runs a small hypothesis budget on every test run; this is
the campaign behind it. Captures come from ``tests/mutations.py`` (the seed
corpus of real captures as pcap, pcapng and gzip, mutated blindly and along
their structure), each from its own seed, so any failure is reproduced by
its number:

    python benchmarks/fuzz_campaign.py --replay 12345

Every capture is read whole by ``CaptureReader`` (container parsing and the
compiled record walk and header decode): it must read or raise a one-line
``InspectorError``. Those read are then analysed, ``--group`` of them at a
time as the inputs of one ``inspector.analyze`` (flows, reassembly, the
detectors, the secret scan, events, findings): it must succeed. Anything
else is a crash (traceback kept); a capture or group over ``--timeout``
seconds is a hang; each worker's peak RSS is reported.

    python benchmarks/fuzz_campaign.py                    # 100,000 captures on every core
    python benchmarks/fuzz_campaign.py --captures 2000    # a quick look
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing
import os
import random
import resource
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import inspector  # noqa: E402
from inspector.capture.reader import CaptureReader  # noqa: E402
from inspector.errors import InspectorError  # noqa: E402
from mutations import mutate, seeds  # noqa: E402


class Hang(Exception):
    pass


def _alarm(_signum, _frame):
    raise Hang


def capture(corpus: list[bytes], number: int) -> bytes:
    """Mutated capture ``number``: the same bytes on every run."""
    rng = random.Random(number)
    return mutate(corpus[rng.randrange(len(corpus))], rng)


def run_range(args: tuple[list[bytes], range, int, float]) -> dict:
    """Captures ``numbers``: read each, analyse those read ``group`` at a time."""
    corpus, numbers, group, timeout = args
    signal.signal(signal.SIGALRM, _alarm)
    out = {"captures": 0, "refused": 0, "analysed": 0, "crashes": [], "hangs": [], "cpu": 0.0}
    start = time.process_time()
    accepted: list[int] = []

    def analyse(batch: list[int]) -> None:
        try:
            signal.alarm(int(timeout * 4))
            inspector.analyze([io.BytesIO(capture(corpus, n)) for n in batch])
            out["analysed"] += len(batch)
        except Hang:
            out["hangs"].append({"numbers": batch, "stage": "analyze"})
        except Exception:  # noqa: BLE001 - what the campaign looks for; find the capture
            if len(batch) == 1:
                out["crashes"].append({"number": batch[0], "stage": "analyze", "traceback": traceback.format_exc()})
            else:
                half = len(batch) // 2
                analyse(batch[:half])
                analyse(batch[half:])
        finally:
            signal.alarm(0)

    for number in numbers:
        out["captures"] += 1
        try:
            signal.alarm(int(timeout))
            for _ in CaptureReader(f"capture {number}", stream=io.BytesIO(capture(corpus, number))):
                pass
            accepted.append(number)
        except InspectorError as exc:
            out["refused"] += 1
            if "\n" in str(exc) or not str(exc):
                out["crashes"].append({"number": number, "stage": "read", "traceback": f"not one line: {exc!r}"})
        except Hang:
            out["hangs"].append({"numbers": [number], "stage": "read"})
        except Exception:  # noqa: BLE001
            out["crashes"].append({"number": number, "stage": "read", "traceback": traceback.format_exc()})
        finally:
            signal.alarm(0)
        if len(accepted) == group:
            analyse(accepted)
            accepted = []
    if accepted:
        analyse(accepted)
    out["cpu"] = time.process_time() - start
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--captures", type=int, default=100_000)
    ap.add_argument("--first", type=int, default=0, help="number of the first capture")
    ap.add_argument("--group", type=int, default=100, help="captures analysed together")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds for one capture to be read")
    ap.add_argument("--replay", type=int, metavar="NUMBER", help="write capture NUMBER to fuzz-NUMBER.pcap and analyse it")
    ap.add_argument("--out", type=Path, help="write the results as JSON")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        corpus = seeds(Path(folder))
    if args.replay is not None:
        path = Path(f"fuzz-{args.replay}.pcap")
        path.write_bytes(capture(corpus, args.replay))
        print(f"wrote {path}")
        print(inspector.analyze(path))
        return 0
    inspector.analyze(io.BytesIO(corpus[0]))  # compiled kernels loaded (or compiled) before the clock runs
    chunk = max(args.group, args.captures // (args.workers * 8) // args.group * args.group)
    ranges = [range(start, min(start + chunk, args.first + args.captures))
              for start in range(args.first, args.first + args.captures, chunk)]
    wall = time.monotonic()
    total = {"captures": 0, "refused": 0, "analysed": 0, "crashes": [], "hangs": [], "cpu": 0.0, "peak_rss_mb": 0.0}
    with multiprocessing.get_context("fork").Pool(args.workers, maxtasksperchild=1) as pool:
        for part in pool.imap_unordered(run_range, [(corpus, r, args.group, args.timeout) for r in ranges]):
            for key in ("captures", "refused", "analysed", "cpu"):
                total[key] += part[key]
            total["crashes"] += part["crashes"]
            total["hangs"] += part["hangs"]
            total["peak_rss_mb"] = max(total["peak_rss_mb"], part["peak_rss_mb"])
            print(f"  {total['captures']:,} captures: {len(total['crashes'])} crashes, {len(total['hangs'])} hangs",
                  flush=True)
    total["wall"] = time.monotonic() - wall
    print(f"fuzz campaign: {total['captures']:,} mutated captures from {len(corpus)} seeds "
          f"({total['refused']:,} refused with one line, {total['analysed']:,} analysed, {args.group} per analysis)")
    print(f"  crashes {len(total['crashes'])}, hangs {len(total['hangs'])} (> {args.timeout:g} s to read), "
          f"peak RSS per worker {total['peak_rss_mb']:.0f} MB, {total['cpu']:.0f} CPU s, {total['wall']:.0f} s wall "
          f"on {args.workers} workers")
    for crash in total["crashes"][:5]:
        print(f"  crash: capture {crash['number']} ({crash['stage']}):\n{crash['traceback']}")
    if args.out:
        args.out.write_text(json.dumps(total, indent=1))
    return 1 if total["crashes"] or total["hangs"] else 0


if __name__ == "__main__":
    sys.exit(main())
