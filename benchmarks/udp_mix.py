#!/usr/bin/env python3
"""A capture of short TCP flows with UDP flows mixed in that never close.

The TCP part is make_capture.py's ``many`` profile (SYN ... FIN, 1,000 new
flows per second); the UDP part is request/response exchanges of a few
datagrams (DNS, syslog, NTP, SNMP-like: 50-500 bytes of payload) that end by
going quiet, so an analyzer keeps each one open until its idle timeout
(300 s, longer than the capture). Their records are merged into the TCP
capture by time. Everything per packet is numpy; no per-packet objects.

    python benchmarks/udp_mix.py OUT.pcap [--flows 100000] [--udp-share 0.1]
"""

from __future__ import annotations

import argparse
import os
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
PCAP_HEADER = 24
RECORD_HEADER = 16
UDP_HEADERS = 14 + 20 + 8  # Ethernet, IPv4, UDP
UDP_PORTS = np.array([53, 514, 123, 161, 5353])  # DNS, syslog, NTP, SNMP, mDNS


def tcp_capture(path: Path, packets: int, flows: int, seed: int) -> None:
    """make_capture.py's ``many`` profile, through its command line."""
    subprocess.run([sys.executable, str(BENCH / "make_capture.py"), str(path), "--profile", "many",
                    "--packets", str(packets), "--flows", str(flows), "--seed", str(seed), "--quiet"], check=True)


def record_offsets(data: np.ndarray) -> np.ndarray:
    """Start of every record of a classic little-endian pcap."""
    offsets = []
    at, end = PCAP_HEADER, data.size
    while at < end:
        offsets.append(at)
        at += RECORD_HEADER + struct.unpack_from("<I", data, at + 8)[0]
    return np.array(offsets, dtype=np.int64)


def _ip_checksums(words: np.ndarray) -> np.ndarray:
    """RFC 791 header checksum of each row of big-endian 16-bit words."""
    total = words.astype(np.uint32).sum(axis=1)
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return (~total & 0xFFFF).astype(np.uint16)


def udp_records(flows: int, span_us: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Records of ``flows`` UDP exchanges started over ``span_us``: (bytes, record starts, times in us)."""
    rng = np.random.default_rng([seed, 53])
    per = rng.integers(2, 7, flows)  # datagrams per flow: query, answer, maybe a few more
    n = int(per.sum())
    flow = np.repeat(np.arange(flows), per)
    first = np.concatenate([[0], np.cumsum(per)[:-1]])
    pos = np.arange(n) - first[flow]
    reply = pos % 2 == 1
    client = (0xC0A81400 + rng.integers(1, 4000, flows)).astype(np.uint32)  # 192.168.20.0/20
    server = (0x0A000A00 + rng.integers(1, 20, flows)).astype(np.uint32)  # 10.0.10.1-19
    server_port = UDP_PORTS[rng.integers(0, UDP_PORTS.size, flows)]
    client_port = 1024 + (np.arange(flows) * 7919) % 60000
    start = np.sort(rng.integers(0, span_us, flows))
    ts = start[flow] + pos * rng.integers(200, 20000, n)
    plen = rng.integers(50, 501, n)
    src = np.where(reply, server[flow], client[flow])
    dst = np.where(reply, client[flow], server[flow])
    sport = np.where(reply, server_port[flow], client_port[flow])
    dport = np.where(reply, client_port[flow], server_port[flow])

    reclen = RECORD_HEADER + UDP_HEADERS + plen
    starts = np.concatenate([[0], np.cumsum(reclen)[:-1]])
    out = np.zeros(int(reclen.sum()), dtype=np.uint8)
    hdr = np.zeros((n, RECORD_HEADER + UDP_HEADERS), dtype=np.uint8)
    frame = UDP_HEADERS + plen
    hdr[:, 0:4] = (ts // 1_000_000).astype("<u4").view(np.uint8).reshape(n, 4)
    hdr[:, 4:8] = (ts % 1_000_000).astype("<u4").view(np.uint8).reshape(n, 4)
    hdr[:, 8:12] = frame.astype("<u4").view(np.uint8).reshape(n, 4)
    hdr[:, 12:16] = frame.astype("<u4").view(np.uint8).reshape(n, 4)
    eth = RECORD_HEADER
    hdr[:, eth: eth + 12] = [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1]
    hdr[:, eth + 12: eth + 14] = [0x08, 0x00]
    ip = eth + 14
    hdr[:, ip] = 0x45
    hdr[:, ip + 2: ip + 4] = (20 + 8 + plen).astype(">u2").view(np.uint8).reshape(n, 2)
    hdr[:, ip + 4: ip + 6] = (np.arange(n) & 0xFFFF).astype(">u2").view(np.uint8).reshape(n, 2)
    hdr[:, ip + 8] = 64
    hdr[:, ip + 9] = 17
    hdr[:, ip + 12: ip + 16] = src.astype(">u4").view(np.uint8).reshape(n, 4)
    hdr[:, ip + 16: ip + 20] = dst.astype(">u4").view(np.uint8).reshape(n, 4)
    words = hdr[:, ip: ip + 20].copy().view(">u2")
    hdr[:, ip + 10: ip + 12] = _ip_checksums(words).astype(">u2").view(np.uint8).reshape(n, 2)
    udp = ip + 20
    hdr[:, udp: udp + 2] = sport.astype(">u2").view(np.uint8).reshape(n, 2)
    hdr[:, udp + 2: udp + 4] = dport.astype(">u2").view(np.uint8).reshape(n, 2)
    hdr[:, udp + 4: udp + 6] = (8 + plen).astype(">u2").view(np.uint8).reshape(n, 2)  # checksum 0: none
    columns = np.arange(hdr.shape[1])
    out[(starts[:, None] + columns).ravel()] = hdr.ravel()
    # payload: printable text for half the flows (syslog, DNS names), random bytes for the rest
    body = np.repeat(starts + hdr.shape[1], plen) + (np.arange(int(plen.sum())) - np.repeat(np.cumsum(plen) - plen, plen))
    text = np.repeat(rng.random(flows) < 0.5, per)
    random_bytes = rng.integers(0, 256, body.size, dtype=np.uint8)
    printable = rng.integers(32, 127, body.size, dtype=np.uint8)
    out[body] = np.where(np.repeat(text, plen), printable, random_bytes)
    return out, starts, ts


def merge(tcp: np.ndarray, udp: np.ndarray, udp_starts: np.ndarray, udp_ts: np.ndarray, out: Path) -> int:
    """Write both captures' records to ``out`` in time order; returns the packet count."""
    tcp_starts = record_offsets(tcp)
    words = tcp[(tcp_starts[:, None] + np.arange(12)).ravel()].reshape(-1, 12).copy().view("<u4")
    tcp_ts = words[:, 0].astype(np.int64) * 1_000_000 + words[:, 1]
    tcp_len = RECORD_HEADER + words[:, 2].astype(np.int64)
    udp_len = np.diff(np.append(udp_starts, udp.size))
    order = np.argsort(np.concatenate([tcp_ts, udp_ts]), kind="stable")
    from_udp = np.concatenate([np.zeros(tcp_starts.size, bool), np.ones(udp_starts.size, bool)])
    start = np.concatenate([tcp_starts, udp_starts])
    length = np.concatenate([tcp_len, udp_len])
    with open(out, "wb") as fh:
        fh.write(tcp[:PCAP_HEADER].tobytes())
        step = 100_000
        for c in range(0, order.size, step):
            sel = order[c: c + step].tolist()
            fh.write(b"".join((udp if from_udp[k] else tcp)[start[k]: start[k] + length[k]].tobytes() for k in sel))
    return int(order.size)


def generate(out: Path, flows: int, udp_share: float, packets_per_flow: int = 10, seed: int = 1) -> int:
    """Write the mixed capture; returns its packet count."""
    udp_flows = int(flows * udp_share)
    tcp_flows = flows - udp_flows
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        tcp_path = Path(tmp) / "tcp.pcap"
        tcp_capture(tcp_path, tcp_flows * packets_per_flow, tcp_flows, seed)
        tcp = np.fromfile(tcp_path, dtype=np.uint8)
    udp, starts, ts = udp_records(udp_flows, tcp_flows * 1000, seed)  # many: 1,000 new flows per second
    tmp_out = Path(str(out) + ".tmp")
    n = merge(tcp, udp, starts, ts, tmp_out)
    os.replace(tmp_out, out)
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path)
    parser.add_argument("--flows", type=int, default=100_000)
    parser.add_argument("--udp-share", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    n = generate(args.out, args.flows, args.udp_share, seed=args.seed)
    print(f"wrote {args.out}: {n:,} packets, {args.flows:,} flows ({args.udp_share:.0%} UDP), "
          f"{args.out.stat().st_size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
