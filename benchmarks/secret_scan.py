#!/usr/bin/env python3
"""Secret scan throughput on benign and crafted payloads, before and after.

Builds one batch per payload kind in memory (one TCP direction cut into
64 KiB segments, 1 MiB and 4 MiB), scans it with ``SecretScanner`` and
prints MB/s and CPU seconds (user+sys of this process) of the scan per
kind. "before" is the module as it stands on another git revision (default
``main``), imported from ``git show`` into a temporary module; "after" is
the working tree's. The total match count of
each run is printed beside it: both sides must agree.

    python benchmarks/secret_scan.py                 # before (main) and after
    python benchmarks/secret_scan.py --after-only    # skip the slow old scan
    python benchmarks/secret_scan.py --before REV --repeat 3
    python benchmarks/secret_scan.py --pipeline      # whole analyze() of a pcap per payload

``--captures FILE...`` measures the scan on real payload instead: each
capture's batches are read into memory with their flows (``FlowTable``)
and scanned the way ``SecretScanner.scan`` does, timing the compiled
``scan_payloads`` calls alone (best of ``--repeat``), e.g. on the plaintext
QEMU RAM of captures/qemu-plain.pcap.gz and on the benchmark captures:

    python benchmarks/secret_scan.py --captures captures/qemu-plain.pcap.gz /work/bench/real-x32.pcap

``--pipeline`` writes each payload as a pcap (a handshake, then the payload
from client to server in 64 KiB segments) and times ``inspector.analyze``
of it in this process, after a warm-up, to set the scan's cost on crafted
payloads against the whole pipeline's on benign ones.
"""
from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
# this file is named like the standard library's `secrets` (which numpy imports): look here last
sys.path[:] = [str(REPO)] + [p for p in sys.path if Path(p or ".").resolve() != BENCH] + [str(BENCH)]

import argparse
import importlib.util
import struct
import subprocess
import tempfile
import time
from types import ModuleType

import numpy as np
import pandas as pd
from make_capture import text_blob

from inspector.capture import constants as C
from inspector.capture import decode as D
from inspector.capture.reader import PacketBatch
from inspector.flows import kernels as K

SEGMENT = 65483  # the largest TCP payload a loopback capture shows (64 KiB less headers)
SIZES = (1 << 20, 4 << 20)
BASE_SEQ = 1000
CREDENTIALS = (b"password = hunter2-%d\n", b"transport_url = rabbit://nova:pw%d@ctl:5672/\n",
               b"Authorization: Bearer abcdefghijkl%d\r\n", b"key AKIAIOSFODNN7EXAMPL%d.\n",
               b'{"token": "t0k3n-%d"}\n')


def benign_text(size: int) -> bytes:
    """make_capture's plain text with a credential line after every fourth line."""
    lines = text_blob(np.random.default_rng(7), size).splitlines(keepends=True)
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        if i % 4 == 3:
            out.append(CREDENTIALS[i // 4 % len(CREDENTIALS)] % (i % 10))
    return b"".join(out)[:size]


def repeated(unit: bytes) -> callable:
    return lambda size: (unit * (size // len(unit) + 1))[:size]


KINDS = {
    "text+credentials": benign_text,
    "random": lambda size: np.random.default_rng(1).bytes(size),
    "eyJ": repeated(b"eyJ"),
    "password=": repeated(b"password="),
    "token=:": repeated(b"token=:"),
    "AKIA": repeated(b"AKIA"),
    "://a:b@": repeated(b"://a:b@"),
    "-----BEGIN ": repeated(b"-----BEGIN "),
}


def tcp_batch(payload: bytes) -> tuple[PacketBatch, np.ndarray, np.ndarray, np.ndarray]:
    """One TCP direction of flow 0 in 64 KiB segments, with its flow-table slot."""
    offs = np.arange(0, len(payload), SEGMENT, dtype=np.int64)
    fields = np.zeros((D.N_FIELDS, offs.size), dtype=np.int64)
    fields[D.F_PAYLOAD_OFF] = offs
    fields[D.F_PAYLOAD_CAP] = np.minimum(SEGMENT, len(payload) - offs)
    fields[D.F_PROTO] = C.IPPROTO_TCP
    fields[D.F_TCP_SEQ] = BASE_SEQ + offs
    fields[D.F_TS] = np.arange(offs.size) * 1000
    slot = np.zeros((2, K.N_SLOT_COLS), dtype=np.int64)
    slot[:, K.SL_BASE_SEQ] = BASE_SEQ
    slot[0, K.SL_MAX_END] = len(payload)
    batch = PacketBatch(np.frombuffer(payload, dtype=np.uint8).copy(), fields,
                        np.zeros((D.N_ADDRS, offs.size), dtype=np.uint64))
    return batch, np.zeros(offs.size, dtype=np.int64), np.zeros(offs.size, dtype=np.int8), slot


def scan_once(module: ModuleType, payload: bytes) -> tuple[float, int]:
    """CPU seconds to scan the payload (taking the two small tables after,
    a fixed ~10 ms of pandas, is left out); the match count."""
    batch, flow_ids, dirs, slot = tcp_batch(payload)
    flows = pd.DataFrame({"uid": ["Cbench"], "verdict": ["plaintext"]})
    scanner = module.SecretScanner()
    start = time.process_time()
    scanner.scan(batch, flow_ids, dirs, slot)
    cpu = time.process_time() - start
    _secrets, counts = scanner.take([0], flows, np.array([0]))
    return cpu, int(counts["count"].sum())


def write_pcap(path: Path, payload: bytes) -> None:
    """A TCP handshake, then ``payload`` from client to server in segments, as a pcap."""
    def frame(seq: int, ack: int, flags: int, data: bytes, reply: bool) -> bytes:
        ports = (49152, 40000) if reply else (40000, 49152)
        addrs = (b"\x0a\x00\x00\x02", b"\x0a\x00\x00\x01") if reply else (b"\x0a\x00\x00\x01", b"\x0a\x00\x00\x02")
        tcp = struct.pack("!HHIIBBHHH", *ports, seq, ack, 5 << 4, flags, 65535, 0, 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40 + len(data), 0, 0x4000, 64, 6, 0, *addrs)
        return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp + data

    syn, ack = 0x02, 0x10
    frames = [frame(0, 0, syn, b"", False), frame(0, 1, syn | ack, b"", True), frame(1, 1, ack, b"", False)]
    frames += [frame(1 + at, 1, ack, payload[at:at + SEGMENT], False) for at in range(0, len(payload), SEGMENT)]
    with open(path, "wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        out.writelines(struct.pack("<IIII", 1_700_000_000, i, len(f), len(f)) + f for i, f in enumerate(frames))


def analyze_once(path: Path) -> float:
    """CPU seconds of ``inspector.analyze`` of one capture."""
    import inspector
    start = time.process_time()
    inspector.analyze(path)
    return time.process_time() - start


def pipeline(repeat: int, workdir: Path) -> None:
    """The whole pipeline per payload kind and size: CPU s, MB/s, and the
    ratio to the benign text capture of the same size."""
    write_pcap(workdir / "warm.pcap", benign_text(SEGMENT))
    analyze_once(workdir / "warm.pcap")
    print(f"{'payload':<18}{'MiB':>4}{'analyze MB/s':>14}{'CPU s':>9}{'x text':>8}")
    benign: dict[int, float] = {}
    for kind, make in KINDS.items():
        for size in SIZES:
            path = workdir / f"{kind.strip(':=/-@ ')}-{size}.pcap"
            write_pcap(path, make(size))
            cpu = min(analyze_once(path) for _ in range(repeat))
            benign.setdefault(size, cpu) if kind == "text+credentials" else None
            ratio = f"{cpu / benign[size]:>8.2f}" if size in benign else f"{'':>8}"
            print(f"{kind:<18}{size >> 20:>4}{size / cpu / 1e6:>14.0f}{cpu:>9.3f}{ratio}", flush=True)


def module_at(rev: str, workdir: Path) -> ModuleType:
    """inspector/findings/secrets.py as of ``rev``, with the compiled matcher
    (secret_match.py) of the same revision, imported as modules of their own."""
    tag = rev.replace("/", "_").replace("~", "_").replace("^", "_")

    def load(name: str, source: str) -> ModuleType:
        path = workdir / f"{name}_{tag}.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
        return module

    def show(path: str) -> str:
        return subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:{path}"],
                              check=True, capture_output=True, text=True).stdout

    matcher = load("secret_match", show("inspector/findings/secret_match.py"))
    return load("secrets", show("inspector/findings/secrets.py").replace(
        "from inspector.findings import secret_match as M", f"import {matcher.__name__} as M"))


def capture_batches(path: str) -> tuple[list, int, int]:
    """Every batch of a capture (copied: the reader reuses its buffer) with
    its packets' flows and directions; the flow ids seen, payload bytes."""
    from inspector.capture.reader import CaptureReader
    from inspector.flows.table import FlowTable

    table, batches, payload = FlowTable(), [], 0
    for batch in CaptureReader(path):
        flow_ids, dirs = table.add(batch)
        batches.append((PacketBatch(batch.buf.copy(), batch.fields.copy(), batch.addrs.copy()), flow_ids, dirs))
        payload += int(batch.fields[D.F_PAYLOAD_CAP].sum())
    return batches, table.n_ids, payload


def scan_capture(module: ModuleType, batches: list, n_ids: int) -> tuple[float, int]:
    """CPU seconds of the compiled scan over the batches, as ``SecretScanner.scan`` calls it; matches."""
    scanner = module.SecretScanner()
    counts = np.zeros((2 * n_ids + 2, len(scanner.kinds)), dtype=np.int64)
    listed = np.empty((4096, module.M.N_HIT_COLS), dtype=np.int64)
    no_skip = np.zeros(0, dtype=np.bool_)
    cpu = 0.0
    for batch, flow_ids, dirs in batches:
        offs, caps = batch.fields[D.F_PAYLOAD_OFF], batch.fields[D.F_PAYLOAD_CAP]
        packet, pos = 0, 0
        start = time.process_time()
        while packet < offs.size:
            _n, packet, pos = module.M.scan_payloads(batch.buf, offs, caps, flow_ids, dirs, no_skip, packet, pos,
                                                     *scanner.anchors, scanner.matcher, scanner.kind_of, counts,
                                                     module.MAX_KEPT, listed)
        cpu += time.process_time() - start
    return cpu, int(counts.sum())


def captures(paths: list[str], sides: dict[str, ModuleType], repeat: int) -> None:
    print(f"{'capture':<28}{'payload MB':>11}" + "".join(f"{side + ' MB/s':>14}{'CPU s':>8}{'matches':>9}"
                                                       for side in sides))
    for path in paths:
        batches, n_ids, payload = capture_batches(path)
        row = f"{Path(path).name:<28}{payload / 1e6:>11.0f}"
        for module in sides.values():
            cpu, matches = min(scan_capture(module, batches, n_ids) for _ in range(repeat + 1))  # +1: warm
            row += f"{payload / max(cpu, 1e-6) / 1e6:>14.0f}{cpu:>8.3f}{matches:>9}"
        print(row, flush=True)
        del batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="main", help="git revision of the module to compare against")
    parser.add_argument("--after-only", action="store_true", help="measure the working tree's module only")
    parser.add_argument("--repeat", type=int, default=1, help="runs per measurement; the fastest is printed")
    parser.add_argument("--pipeline", action="store_true", help="time inspector.analyze of a pcap per payload")
    parser.add_argument("--captures", nargs="+", metavar="FILE", help="scan these captures' payload instead")
    args = parser.parse_args()
    if args.pipeline:
        with tempfile.TemporaryDirectory() as tmp:
            pipeline(args.repeat, Path(tmp))
        return

    from inspector.findings import secrets as after
    with tempfile.TemporaryDirectory() as tmp:
        sides = {"after": after} if args.after_only else {"before": module_at(args.before, Path(tmp)), "after": after}
        for module in sides.values():  # compile the kernels outside the measurement
            scan_once(module, benign_text(SEGMENT))
        if args.captures:
            captures(args.captures, sides, args.repeat)
            return
        print(f"{'payload':<18}{'MiB':>4}" + "".join(f"{side + ' MB/s':>14}{'CPU s':>9}{'matches':>9}"
                                                   for side in sides))
        for kind, make in KINDS.items():
            for size in SIZES:
                payload = make(size)
                row = f"{kind:<18}{size >> 20:>4}"
                for module in sides.values():
                    cpu, matches = min(scan_once(module, payload) for _ in range(args.repeat))
                    row += f"{size / max(cpu, 1e-6) / 1e6:>14.0f}{cpu:>9.3f}{matches:>9}"
                print(row, flush=True)


if __name__ == "__main__":
    main()
