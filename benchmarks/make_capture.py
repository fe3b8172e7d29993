#!/usr/bin/env python3
"""Fast generator of synthetic Ethernet/IPv4/TCP(/UDP) captures (classic pcap),
and of the shipped captures replicated (`--profile real`).

Everything per packet is computed with numpy arrays; the record bytes are
assembled by a small numba kernel (pure-Python fallback if numba is missing)
into a reused chunk buffer and written straight to disk. No scapy, no
per-packet Python objects.

Profiles
  bulk  (default 2,000,000 packets in 20 long flows): each flow carries
        1448-byte segments in one direction with stretch ACKs coming back
        (one ACK every --ack-every data segments). Flow i carries payload kind
        KINDS[i % 4] and its responder port is chosen by i % 5 (migration
        range 49152+i for 0,1,2; 16509 for 3; 22 for 4), so every kind meets
        every port class.
  many  (default 1,000,000 packets in 100,000 short flows): SYN, SYN-ACK,
        ACK, a few data segments (first one a request from the originator,
        then mostly responses), FIN/ACK, FIN/ACK, ACK. With --udp-share S,
        that fraction of the flows are UDP instead: 2-6 datagrams on port
        53 (query/answer alternating, random bytes) or 514 (one-way text),
        never closed.
  real  (--sources FILE... --copies N) the given captures merged in time
        order, written N times one after another with each copy's
        addresses rewritten into 198.18.0.0/15 (see replicate()).

Payload kinds (each drawn from a per-kind pool, deterministic from --seed)
  random  random bytes (stands for ciphertext)
  zlib    zlib (level 6) compressed text/JSON
  text    plain text: OpenStack-like JSON API documents, HTTP headers, logs
  mixed   binary RAM/disk-like pages: zero runs, pointer-heavy structs,
          code-like skewed bytes, some text and some random pages

TCP sequence/ack numbers, IP total length/ID/checksum, TCP checksum and
timestamp options are consistent. Flow parameters (addresses, ports, kinds,
ISNs) depend only on --seed and the flow index, so `--profile bulk
--packets 1000000` yields the same 20 flows as the default with half the
packets per flow (used for the memory-boundedness check).

Usage: make_capture.py OUT.pcap [--profile bulk|many] [--packets N]
                       [--flows F] [--seed S] [--udp-share S] [--meta]
       make_capture.py OUT.pcap --profile real --sources PCAP... [--copies N] [--meta]
"""
from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np

KINDS = ("random", "zlib", "text", "mixed")
GEN_VERSION = 1          # bump when the output for given args changes
MSS = 1448               # payload per full segment (1500 - 20 IP - 32 TCP w/ TS)
HDR_W = 90               # pcap rec hdr 16 + eth 14 + ip 20 + tcp up to 40
# classic pcap, microsecond, little-endian, snaplen 262144, Ethernet
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)
CHUNK_BYTES = 64 << 20   # output assembled and written in chunks of this size

UDP_DATAGRAMS = (2, 6)   # many --udp-share: datagrams per UDP flow, at least and at most
PROFILE_DEFAULTS = {
    "bulk": {"packets": 2_000_000, "flows": 20},
    "many": {"packets": 1_000_000, "flows": 100_000},
}

# TCP flags
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

REC_DT = np.dtype([
    ("ts_sec", "<u4"), ("ts_usec", "<u4"), ("incl", "<u4"), ("orig", "<u4"),
    ("eth_dst", "u1", (6,)), ("eth_src", "u1", (6,)), ("eth_type", ">u2"),
    ("ip_vhl", "u1"), ("ip_tos", "u1"), ("ip_len", ">u2"), ("ip_id", ">u2"),
    ("ip_off", ">u2"), ("ip_ttl", "u1"), ("ip_p", "u1"), ("ip_sum", ">u2"),
    ("ip_src", ">u4"), ("ip_dst", ">u4"),
    ("sport", ">u2"), ("dport", ">u2"), ("seq", ">u4"), ("ack", ">u4"),
    ("th_off", "u1"), ("flags", "u1"), ("win", ">u2"), ("th_sum", ">u2"),
    ("urp", ">u2"), ("opt", "u1", (20,)),
])
assert REC_DT.itemsize == HDR_W


def ip4(a: int, b: int, c: int, d: int) -> int:
    return (a << 24) | (b << 16) | (c << 8) | d


# --------------------------------------------------------------------------
# payload pools
# --------------------------------------------------------------------------

_WORDS = (
    "the of and to in is that for it as with was on be by this are from at or "
    "an have not which but all were when we there can been has more if will "
    "one would their what so about out other into time only new some could "
    "these two may first then do any like my now over such our man me even "
    "most made after also did many before must through back years where much "
    "your way well down should because each just those people how too little "
    "state good very make world still own see men work long get here between "
    "both life being under never day same another know while last might us "
    "great old year off come since against go came right used take three "
    "instance compute migration host memory volume network server image "
    "flavor hypervisor scheduler libvirt qemu neutron keystone token project "
    "request response timeout retry error warning connection established "
    "allocated released snapshot block device port subnet router security"
).split()
_LEVELS = ("DEBUG", "INFO", "INFO", "INFO", "WARNING", "ERROR")
_MODULES = ("nova.compute.manager", "nova.virt.libvirt.driver",
            "nova.scheduler.manager", "neutron.agent.dhcp", "oslo_messaging",
            "keystonemiddleware.auth_token", "cinder.volume.manager")
_STATUS = ("ACTIVE", "BUILD", "SHUTOFF", "MIGRATING", "ERROR", "VERIFY_RESIZE")


def _uuid(h: str, i: int) -> str:
    s = h[(i * 32) % (len(h) - 32):][:32]
    return f"{s[:8]}-{s[8:12]}-4{s[13:16]}-a{s[17:20]}-{s[20:32]}"


def text_blob(rng: np.random.Generator, target: int) -> bytes:
    """Plain text of about `target` bytes: JSON API documents, HTTP headers,
    oslo-style log lines and prose, interleaved."""
    parts: list[str] = []
    size = 0
    words = _WORDS
    while size < target:
        n = 512
        kinds = rng.integers(0, 10, n)
        nums = rng.integers(0, 1 << 30, (n, 8))
        hx = rng.bytes(n * 64).hex()
        wi = rng.integers(0, len(words), (n, 40))
        for i in range(n):
            k = kinds[i]
            a = nums[i]
            if k < 4:  # JSON server document
                u1, u2, u3 = _uuid(hx, 4 * i), _uuid(hx, 4 * i + 1), _uuid(hx, 4 * i + 2)
                s = (
                    '{"server": {"id": "%s", "name": "vm-%05d", "status": "%s", '
                    '"tenant_id": "%s", "user_id": "%s", "created": '
                    '"2024-%02d-%02dT%02d:%02d:%02dZ", "flavor": {"vcpus": %d, '
                    '"ram": %d, "disk": %d}, "addresses": {"private": [{"addr": '
                    '"10.0.%d.%d", "version": 4, "OS-EXT-IPS:type": "fixed"}]}, '
                    '"OS-EXT-SRV-ATTR:host": "compute-%02d", "progress": %d, '
                    '"metadata": {"note": "%s"}}}\n'
                    % (u1, a[0] % 100000, _STATUS[a[1] % 6], u2.replace("-", ""),
                       u3.replace("-", ""), 1 + a[2] % 12, 1 + a[3] % 28,
                       a[4] % 24, a[5] % 60, a[6] % 60, 1 << (a[7] % 5),
                       512 << (a[0] % 7), 10 * (1 + a[1] % 16), a[2] % 256,
                       a[3] % 256, a[4] % 40, a[5] % 101,
                       " ".join(words[j] for j in wi[i, : 3 + a[6] % 10])))
            elif k < 6:  # log line
                s = ("2024-05-%02d %02d:%02d:%02d.%03d %d %s %s [req-%s - - - - -] "
                     "[instance: %s] %s %d.%02d seconds\n"
                     % (1 + a[0] % 28, a[1] % 24, a[2] % 60, a[3] % 60, a[4] % 1000,
                        1000 + a[5] % 60000, _LEVELS[a[6] % 6], _MODULES[a[7] % 7],
                        _uuid(hx, 4 * i), _uuid(hx, 4 * i + 1),
                        " ".join(words[j] for j in wi[i, : 5 + a[0] % 12]).capitalize(),
                        a[1] % 60, a[2] % 100))
            elif k < 7:  # HTTP exchange headers
                s = ("GET /v2.1/servers/%s/os-instance-actions HTTP/1.1\r\n"
                     "Host: 10.0.0.%d:8774\r\nUser-Agent: python-novaclient\r\n"
                     "Accept: application/json\r\nX-Auth-Token: gAAAAA%s\r\n"
                     "X-OpenStack-Nova-API-Version: 2.%d\r\n\r\n"
                     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     "Content-Length: %d\r\nX-Compute-Request-Id: req-%s\r\n"
                     "Date: Mon, %02d May 2024 %02d:%02d:%02d GMT\r\n\r\n"
                     % (_uuid(hx, 4 * i), 100 + a[0] % 10, hx[(i * 64) % (len(hx) - 64):][:64],
                        1 + a[1] % 95, 200 + a[2] % 5000, _uuid(hx, 4 * i + 3),
                        1 + a[3] % 28, a[4] % 24, a[5] % 60, a[6] % 60))
            else:  # prose
                s = " ".join(words[j] for j in wi[i, : 12 + a[0] % 28]).capitalize() + ".\n"
            parts.append(s)
            size += len(s)
    return "".join(parts).encode()[:target]


def zlib_blob(text: bytes, target: int) -> bytes:
    """zlib (level 6) stream of the text pool (rotated by half), repeated to
    `target` bytes; text compresses to about 0.3 of its size, so the stream
    repeats every ~5 MB of a 16 MiB pool, far beyond any window."""
    h = len(text) // 2
    z = zlib.compress(text[h:] + text[:h], 6)
    return (z * (target // len(z) + 1))[:target]


def mixed_blob(rng: np.random.Generator, target: int, text: bytes) -> bytes:
    """4 KiB pages: zero 30%, pointer structs 25%, code-like 20%, text 15%,
    random 10%."""
    npages = -(-target // 4096)
    pages = np.zeros((npages, 4096), np.uint8)
    kind = rng.choice(5, npages, p=[0.30, 0.25, 0.20, 0.15, 0.10])
    # pointer-heavy structs: 8-byte slots, 35% filled with kernel-ish pointers
    # or small integers, the rest zero
    idx = np.flatnonzero(kind == 1)
    if idx.size:
        q = pages[idx].view("<u8")
        fill = rng.random(q.shape) < 0.35
        ptr = (np.uint64(0xFFFF888000000000)
               + (rng.integers(0, 1 << 28, q.shape).astype(np.uint64) << np.uint64(3)))
        small = rng.integers(0, 4096, q.shape).astype(np.uint64)
        q[:] = np.where(fill, np.where(rng.random(q.shape) < 0.6, ptr, small), 0)
        pages[idx] = q.view(np.uint8)
    # code-like: Zipf-skewed byte distribution over a fixed permutation
    idx = np.flatnonzero(kind == 2)
    if idx.size:
        w = 1.0 / np.arange(1, 257) ** 1.1
        perm = rng.permutation(256)
        p = np.empty(256)
        p[perm] = w / w.sum()
        pages[idx] = rng.choice(256, (idx.size, 4096), p=p).astype(np.uint8)
    idx = np.flatnonzero(kind == 3)
    if idx.size:
        t = np.frombuffer(text, np.uint8)
        starts = rng.integers(0, t.size - 4096, idx.size)
        pages[idx] = t[starts[:, None] + np.arange(4096)]
    idx = np.flatnonzero(kind == 4)
    if idx.size:
        pages[idx] = np.frombuffer(rng.bytes(idx.size * 4096), np.uint8).reshape(-1, 4096)
    return pages.tobytes()[:target]


def build_pools(seed: int, pool_bytes: int):
    """Concatenated pools (each followed by a wrap-around tail of MSS bytes so
    any slice [s, s+len) with s < pool_bytes, len <= MSS is contiguous)."""
    rngs = [np.random.default_rng([seed, 1000 + k]) for k in range(len(KINDS))]
    text = text_blob(rngs[2], pool_bytes)
    blobs = {
        "random": rngs[0].bytes(pool_bytes),
        "zlib": zlib_blob(text, pool_bytes),
        "text": text,
        "mixed": mixed_blob(rngs[3], pool_bytes, text),
    }
    stride = pool_bytes + MSS
    allp = np.empty(stride * len(KINDS), np.uint8)
    for k, name in enumerate(KINDS):
        b = np.frombuffer(blobs[name], np.uint8)
        assert b.size == pool_bytes, (name, b.size)
        allp[k * stride: k * stride + pool_bytes] = b
        allp[k * stride + pool_bytes: (k + 1) * stride] = b[:MSS]
    return allp, stride


def pool_prefix_sums(allp: np.ndarray):
    """Prefix sums (mod 65535) of big-endian 16-bit words, for even (0) and
    odd (1) alignment, to get one's-complement payload sums in O(1)."""
    out = []
    for a in (0, 1):
        n = (allp.size - a) // 2
        w = allp[a:a + 2 * n].view(">u2")
        c = np.empty(n + 1, np.int64)
        c[0] = 0
        np.cumsum(w, dtype=np.int64, out=c[1:])
        c %= 65535
        out.append(c.astype(np.int32))
        del c
    return out


# --------------------------------------------------------------------------
# flow layouts (flow-major packet arrays)
# --------------------------------------------------------------------------

def _split(total: int, parts: int) -> np.ndarray:
    n = np.full(parts, total // parts, np.int64)
    n[: total % parts] += 1
    return n


def layout_bulk(n_packets: int, n_flows: int, seed: int, ack_every: int):
    """Returns per-flow table and per-packet (flow-major) arrays."""
    if n_packets < n_flows * 8:
        raise SystemExit("bulk: need at least 8 packets per flow")
    frng = np.random.default_rng([seed, 1])       # flow params: count-independent
    i = np.arange(n_flows)
    flows = {
        "kind": i % len(KINDS),
        "orig_h": ip4(10, 0, 0, 0) + 11 + (i % 200),
        "resp_h": ip4(10, 0, 0, 0) + 211 + ((i * 7) % 40),
        "orig_p": 40000 + ((i * 3571) % 9000),
        "isn_o": frng.integers(0, 1 << 32, n_flows),
        "isn_r": frng.integers(0, 1 << 32, n_flows),
        "pool_off_o": frng.integers(0, 1 << 40, n_flows),
        "pool_off_r": frng.integers(0, 1 << 40, n_flows),
        "start_us": frng.integers(0, 1_000_000, n_flows),
        "tsoff_o": frng.integers(0, 1 << 31, n_flows),
        "tsoff_r": frng.integers(0, 1 << 31, n_flows),
    }
    pc = i % 5
    flows["resp_p"] = np.where(pc <= 2, 49152 + (i % 110), np.where(pc == 3, 16509, 22))
    # data direction: migration and libvirtd: originator sends; ssh: responder
    # sends (scp download)
    sender = np.where(pc == 4, 1, 0)
    flows["sender"] = sender
    prng = np.random.default_rng([seed, 2, n_packets])
    per = _split(n_packets, n_flows)
    dirs, flags, plen, ts = [], [], [], []
    span_us = 60_000_000
    for f in range(n_flows):
        n = int(per[f])
        s = int(sender[f])
        body = n - 6
        a = body // (ack_every + 1)
        is_ack = np.zeros(body, bool)
        is_ack[(np.arange(a) + 1) * (ack_every + 1) - 1] = True
        d = np.empty(n, np.int8)
        d[:3] = (0, 1, 0)
        d[3:-3] = np.where(is_ack, 1 - s, s)
        d[-3:] = (0, 1, 0)
        fl = np.empty(n, np.uint8)
        fl[:3] = (SYN, SYN | ACK, ACK)
        data_rank = np.cumsum(~is_ack) - 1
        fl[3:-3] = np.where(is_ack, ACK, np.where(data_rank % 44 == 43, PSH | ACK, ACK))
        fl[-3:] = (FIN | ACK, FIN | ACK, ACK)
        pl = np.zeros(n, np.int32)
        pl[3:-3] = np.where(is_ack, 0, MSS)
        gaps = np.maximum(1, prng.exponential(span_us / n, n)).astype(np.int64)
        gaps[1:3] = 150  # handshake RTT
        gaps[3:-3] = np.where(is_ack, np.minimum(gaps[3:-3], 40), gaps[3:-3])
        t = flows["start_us"][f] + np.cumsum(gaps)
        dirs.append(d), flags.append(fl), plen.append(pl), ts.append(t)
    pk = {
        "flow": np.repeat(np.arange(n_flows), per),
        "dir": np.concatenate(dirs),
        "flags": np.concatenate(flags),
        "plen": np.concatenate(plen),
        "ts": np.concatenate(ts),
    }
    return flows, pk, per


def layout_many(n_packets: int, n_flows: int, seed: int, udp_share: float = 0.0):
    """Short TCP flows; with udp_share, that fraction of the flows are UDP
    exchanges of UDP_DATAGRAMS datagrams that never close (DNS on 53: query,
    answer, ...; syslog on 514: one way), so they end only on idle timeouts.
    udp_share 0 gives exactly the all-TCP capture of before (same draws)."""
    frng = np.random.default_rng([seed, 11])
    i = np.arange(n_flows)
    u = frng.random(n_flows)
    mig = 49152 + frng.integers(0, 110, n_flows)
    other = np.array([8774, 5672, 443, 9696])[frng.integers(0, 4, n_flows)]
    resp_p = np.where(u < 0.35, mig, np.where(u < 0.55, 16509, np.where(u < 0.80, 22, other)))
    # servers: compute nodes 10.0.0.11-50 for migration/libvirtd/ssh,
    # API hosts 10.0.0.101-110 for the rest; clients spread over 3 subnets
    srv = np.where(u < 0.80, ip4(10, 0, 0, 11) + frng.integers(0, 40, n_flows),
                   ip4(10, 0, 0, 101) + frng.integers(0, 10, n_flows))
    nclients = 250
    ci = i % nclients
    sub, host = ci % 3, ci // 3                # host 0..83
    cli = np.where(sub == 0, ip4(10, 0, 0, 150) + host,
                   np.where(sub == 1, ip4(10, 0, 1, 1) + host, ip4(192, 168, 10, 1) + host))
    orig_p = 32768 + (((i // nclients) * 7919) % 16384)
    flows = {
        "kind": frng.integers(0, len(KINDS), n_flows),
        "orig_h": cli, "resp_h": srv, "orig_p": orig_p, "resp_p": resp_p,
        "isn_o": frng.integers(0, 1 << 32, n_flows),
        "isn_r": frng.integers(0, 1 << 32, n_flows),
        "pool_off_o": frng.integers(0, 1 << 40, n_flows),
        "pool_off_r": frng.integers(0, 1 << 40, n_flows),
        "tsoff_o": frng.integers(0, 1 << 31, n_flows),
        "tsoff_r": frng.integers(0, 1 << 31, n_flows),
    }
    udp, udp_per, dns = _udp_flows(flows, n_flows, seed, udp_share)
    n_tcp = n_flows - int(udp.sum())
    if n_packets < n_tcp * 7 + int(udp_per.sum()):
        raise SystemExit("many: need at least 7 packets per TCP flow")
    prng = np.random.default_rng([seed, 12, n_packets])
    # TCP data segments per flow: 1 + multinomial share of the remainder
    extra = n_packets - 7 * n_tcp - int(udp_per.sum())
    m = np.zeros(n_flows, np.int64)
    m[~udp] = 1 + prng.multinomial(extra, np.full(n_tcp, 1.0 / n_tcp))
    per = np.where(udp, udp_per, m + 6)
    N = int(per.sum())
    assert N == n_packets
    flow = np.repeat(i, per)
    first = np.concatenate([[0], np.cumsum(per)[:-1]])
    pos = np.arange(N) - first[flow]           # position within flow
    last = per[flow] - 1 - pos                 # distance from the end
    tcp = ~udp[flow]
    d = np.zeros(N, np.int8)
    fl = np.where(tcp, ACK, 0).astype(np.uint8)
    pl = np.zeros(N, np.int32)
    # handshake
    fl[(pos == 0) & tcp] = SYN
    fl[(pos == 1) & tcp] = SYN | ACK
    d[(pos == 1) & tcp] = 1
    # data: pos 3 .. 3+m-1; first from originator, then 75% responder
    isdata = (pos >= 3) & (last >= 3) & tcp
    firstdata = pos == 3
    rdir = (prng.random(N) < 0.75).astype(np.int8)
    d[isdata] = np.where(firstdata[isdata], 0, rdir[isdata])
    fl[isdata] = PSH | ACK
    req_len = prng.integers(80, 700, N)
    resp_len = np.where(prng.random(N) < 0.5, MSS, prng.integers(60, MSS + 1, N))
    pl[isdata] = np.where(d[isdata] == 0, req_len[isdata], resp_len[isdata])
    # close
    fl[(last == 2) & tcp] = FIN | ACK
    fl[(last == 1) & tcp] = FIN | ACK
    d[(last == 1) & tcp] = 1
    if udp.any():  # DNS alternates query/answer, syslog only sends
        isudp = ~tcp
        d[isudp] = np.where(dns[flow[isudp]], pos[isudp] % 2, 0)
        urng = np.random.default_rng([seed, 14, n_packets])
        pl[isudp] = np.where(dns[flow[isudp]] & (d[isudp] == 0), urng.integers(30, 80, N)[isudp],
                             urng.integers(60, 500, N)[isudp])
    span_us = max(1, n_flows) * 1000   # 1000 new flows per second
    start = np.sort(prng.integers(0, span_us, n_flows))
    rtt = prng.integers(50, 2000, n_flows)
    gaps = np.maximum(1, prng.exponential(300.0, N)).astype(np.int64)
    gaps = np.where((pos == 1) | (pos == 2), rtt[flow], gaps)
    gaps[first] = 0
    cs = np.cumsum(gaps)
    ts = start[flow] + cs - cs[first][flow]
    pk = {"flow": flow, "dir": d, "flags": fl, "plen": pl, "ts": ts}
    return flows, pk, per


def _udp_flows(flows: dict, n_flows: int, seed: int, udp_share: float):
    """Turns udp_share of the flows into UDP ones (in place: port, payload
    kind, "udp" flag); -> (udp mask, datagrams per flow, DNS mask)."""
    udp = np.zeros(n_flows, bool)
    flows["udp"] = udp
    n_udp = round(udp_share * n_flows)
    if not n_udp:
        return udp, np.zeros(n_flows, np.int64), udp
    urng = np.random.default_rng([seed, 13])
    udp[urng.choice(n_flows, n_udp, replace=False)] = True
    dns = udp & (urng.random(n_flows) < 0.5)
    flows["resp_p"] = np.where(dns, 53, np.where(udp, 514, flows["resp_p"]))
    flows["kind"] = np.where(dns, KINDS.index("random"), np.where(udp, KINDS.index("text"), flows["kind"]))
    per = np.where(udp, urng.integers(UDP_DATAGRAMS[0], UDP_DATAGRAMS[1] + 1, n_flows), 0)
    return udp, per, dns


# --------------------------------------------------------------------------
# per-packet fields and writing
# --------------------------------------------------------------------------

def _per_flow_excl_cumsum(x: np.ndarray, first_idx_of_pkt: np.ndarray) -> np.ndarray:
    cs = np.cumsum(x, dtype=np.int64)
    excl = cs - x
    return excl - excl[first_idx_of_pkt]


def finish_fields(flows, pk, per, pool_bytes: int, pool_stride: int):
    """seq/ack, ip ids, TS option values, payload sources (flow-major)."""
    flow, d = pk["flow"], pk["dir"].astype(np.int64)
    flags, plen = pk["flags"], pk["plen"].astype(np.int64)
    first = np.concatenate([[0], np.cumsum(per)[:-1]])[flow]
    consume = plen + ((flags & SYN) > 0) + ((flags & FIN) > 0)
    c0 = np.where(d == 0, consume, 0)
    c1 = np.where(d == 1, consume, 0)
    sent0 = _per_flow_excl_cumsum(c0, first)        # seq space used before pkt
    sent1 = _per_flow_excl_cumsum(c1, first)
    isn_o = flows["isn_o"][flow]
    isn_r = flows["isn_r"][flow]
    seq = np.where(d == 0, isn_o + sent0, isn_r + sent1) & 0xFFFFFFFF
    ack = np.where(d == 0, isn_r + sent1, isn_o + sent0) & 0xFFFFFFFF
    ack = np.where(flags & ACK, ack, 0)
    # bytes of payload already sent in this direction -> pool offset
    b0 = _per_flow_excl_cumsum(np.where(d == 0, plen, 0), first)
    b1 = _per_flow_excl_cumsum(np.where(d == 1, plen, 0), first)
    kind = flows["kind"][flow]
    src = np.where(d == 0, flows["pool_off_o"][flow] + b0,
                   flows["pool_off_r"][flow] + b1) % pool_bytes + kind * pool_stride
    # IP ID: per-direction counter starting at a per-flow value
    n0 = _per_flow_excl_cumsum((d == 0).astype(np.int64), first)
    n1 = _per_flow_excl_cumsum((d == 1).astype(np.int64), first)
    ipid = (np.where(d == 0, n0, n1) + (flows["isn_o"][flow] >> (16 * d))) & 0xFFFF
    ms = pk["ts"] // 1000
    tsv = (np.where(d == 0, flows["tsoff_o"][flow], flows["tsoff_r"][flow]) + ms) & 0xFFFFFFFF
    tse = (np.where(d == 0, flows["tsoff_r"][flow], flows["tsoff_o"][flow]) + ms - 1) & 0xFFFFFFFF
    tse = np.where(flags == SYN, 0, tse)
    return seq, ack, src, ipid, tsv, tse


def _be_bytes(x: np.ndarray, n: int) -> np.ndarray:
    return x.astype(f">u{n}").view(np.uint8).reshape(-1, n)


try:
    import numba

    @numba.njit(nogil=True, cache=True)
    def _fill(out, off, hdr, hl, pool, src, plen):  # pragma: no cover - jit
        for i in range(off.shape[0]):
            a = off[i]
            h = hl[i]
            out[a:a + h] = hdr[i, :h]
            p = plen[i]
            if p > 0:
                s = src[i]
                out[a + h:a + h + p] = pool[s:s + p]
except Exception:  # numba missing: slow but correct fallback
    numba = None

    def _fill(out, off, hdr, hl, pool, src, plen):
        mv, hb, pv = memoryview(out), hdr, pool
        for i in range(off.shape[0]):
            a, h, p, s = int(off[i]), int(hl[i]), int(plen[i]), int(src[i])
            mv[a:a + h] = hb[i, :h].tobytes()
            if p:
                mv[a + h:a + h + p] = pv[s:s + p].tobytes()


def build_headers(sel, flows, pk, seq, ack, ipid, tsv, tse, pool_pref, src, allp):
    """Header records (HDR_W bytes each, zero padded) for packet indices sel
    (already in output order)."""
    f = pk["flow"][sel]
    d = pk["dir"][sel]
    flags = pk["flags"][sel]
    plen = pk["plen"][sel].astype(np.int64)
    n = sel.size
    udp = flows["udp"][f] if "udp" in flows else np.zeros(n, bool)
    syn = (flags & SYN) > 0
    thl = np.where(udp, 8, np.where(syn, 40, 32))   # transport header length
    iplen = 20 + thl + plen
    h = np.zeros(n, REC_DT)
    t = pk["ts"][sel]
    h["ts_sec"] = 1714550400 + t // 1_000_000      # 2024-05-01
    h["ts_usec"] = t % 1_000_000
    h["incl"] = h["orig"] = 14 + iplen
    oh, rh = flows["orig_h"][f], flows["resp_h"][f]
    op, rp = flows["orig_p"][f], flows["resp_p"][f]
    src_ip = np.where(d == 0, oh, rh)
    dst_ip = np.where(d == 0, rh, oh)
    mac = lambda ip: np.concatenate(  # noqa: E731  02:00:<ipv4>
        [np.tile(np.array([2, 0], np.uint8), (n, 1)), _be_bytes(ip, 4)], axis=1)
    h["eth_dst"] = mac(dst_ip)
    h["eth_src"] = mac(src_ip)
    h["eth_type"] = 0x0800
    h["ip_vhl"] = 0x45
    h["ip_len"] = iplen
    h["ip_id"] = ipid[sel]
    h["ip_off"] = 0x4000
    h["ip_ttl"] = 64
    h["ip_p"] = np.where(udp, 17, 6)
    h["ip_src"] = src_ip
    h["ip_dst"] = dst_ip
    h["sport"] = np.where(d == 0, op, rp)
    h["dport"] = np.where(d == 0, rp, op)
    h["seq"] = seq[sel]
    h["ack"] = ack[sel]
    h["th_off"] = (thl // 4) << 4
    h["flags"] = flags
    h["win"] = np.where(flags == SYN, 64240, np.where(flags == SYN | ACK, 65160,
                        np.where(d == 0, 502, 509)))
    opt = h["opt"]
    tv, te = _be_bytes(tsv[sel], 4), _be_bytes(tse[sel], 4)
    ns = ~syn
    opt[ns, 0:4] = (1, 1, 8, 10)
    opt[ns, 4:8] = tv[ns]
    opt[ns, 8:12] = te[ns]
    opt[syn, 0:8] = (2, 4, 0x05, 0xB4, 4, 2, 8, 10)
    opt[syn, 8:12] = tv[syn]
    opt[syn, 12:16] = te[syn]
    opt[syn, 16:20] = (1, 3, 3, 7)
    h["opt"] = opt
    raw = h.view(np.uint8).reshape(n, HDR_W)
    if udp.any():  # UDP header: ports, then length and checksum where TCP has seq
        raw[udp, 54:] = 0
        h["seq"][udp] = (8 + plen[udp]) << 16
    # IPv4 header checksum
    w = raw[:, 30:50].astype(np.int64)
    s = ((w[:, 0::2] << 8) | w[:, 1::2]).sum(axis=1)
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    h["ip_sum"] = ~s & 0xFFFF
    # TCP/UDP checksum: pseudo header + header + payload (from pool prefix sums)
    w = raw[:, 50:90].astype(np.int64)
    tot = ((w[:, 0::2] << 8) | w[:, 1::2]).sum(axis=1)
    tot += (src_ip >> 16) + (src_ip & 0xFFFF) + (dst_ip >> 16) + (dst_ip & 0xFFFF)
    tot += h["ip_p"] + thl + plen
    sp = src[sel]
    a = sp & 1
    k0 = sp >> 1
    nf = plen >> 1
    c0, c1 = pool_pref
    k1 = k0 + nf
    ps = np.where(a == 0, c0[np.minimum(k1, c0.size - 1)].astype(np.int64) - c0[np.minimum(k0, c0.size - 1)],
                  c1[np.minimum(k1, c1.size - 1)].astype(np.int64) - c1[np.minimum(k0, c1.size - 1)])
    tot += ps
    # odd length: last byte is padded with a zero byte
    lastb = allp[np.maximum(sp + plen - 1, 0)].astype(np.int64) << 8
    tot += np.where(plen & 1, lastb, 0)
    m = tot % 65535
    h["th_sum"] = np.where(m == 0, 0, 0xFFFF - m)
    if udp.any():  # a computed 0 goes on the wire as 0xFFFF (0 means no checksum, RFC 768)
        h["seq"][udp] = ((8 + plen[udp]) << 16) | np.where(m[udp] == 0, 0xFFFF, 0xFFFF - m[udp])
    return raw, (14 + 16 + 20 + thl).astype(np.int64), plen, 16 + 14 + iplen


def generate(out_path: str, profile: str = "bulk", packets: int | None = None,
             flows: int | None = None, seed: int = 1, ack_every: int = 4,
             pool_mib: int = 16, quiet: bool = False, udp_share: float = 0.0, start_s: float = 0.0) -> dict:
    t0 = time.perf_counter()
    packets = packets or PROFILE_DEFAULTS[profile]["packets"]
    flows_n = flows or PROFILE_DEFAULTS[profile]["flows"]
    pool_bytes = pool_mib << 20
    allp, stride = build_pools(seed, pool_bytes)
    pref = pool_prefix_sums(allp)
    t_pool = time.perf_counter() - t0
    if profile == "bulk":
        fl, pk, per = layout_bulk(packets, flows_n, seed, ack_every)
    elif profile == "many":
        fl, pk, per = layout_many(packets, flows_n, seed, udp_share)
    else:
        raise SystemExit(f"unknown profile {profile}")
    pk["ts"] = pk["ts"] + round(start_s * 1e6)  # later files of a rotated capture start later
    seq, ack, src, ipid, tsv, tse = finish_fields(fl, pk, per, pool_bytes, stride)
    order = np.argsort(pk["ts"], kind="stable")
    tmp = os.path.abspath(out_path) + ".tmp"
    total_bytes = 24
    buf = np.empty(CHUNK_BYTES, np.uint8)
    with open(tmp, "wb") as fh:
        fh.write(PCAP_HEADER)
        step = max(1, CHUNK_BYTES // (HDR_W + MSS))
        for c in range(0, order.size, step):
            sel = order[c:c + step]
            raw, hl, plen, reclen = build_headers(sel, fl, pk, seq, ack, ipid, tsv, tse,
                                                 pref, src, allp)
            off = np.concatenate([[0], np.cumsum(reclen)[:-1]])
            size = int(reclen.sum())
            if size > buf.size:
                buf = np.empty(size, np.uint8)
            _fill(buf, off, raw, hl, allp, src[sel], plen)
            fh.write(memoryview(buf)[:size])
            total_bytes += size
    os.replace(tmp, out_path)
    dt = time.perf_counter() - t0
    kinds = fl["kind"]
    meta = {
        "generator_version": GEN_VERSION,
        "path": os.path.abspath(out_path),
        "profile": profile, "packets": int(order.size), "flows": int(flows_n),
        "bytes": int(total_bytes), "seed": seed, "start_s": start_s, "ack_every": ack_every,
        "pool_mib": pool_mib,
        "payload_bytes": int(pk["plen"].sum()),
        "udp_share": udp_share, "udp_flows": int(fl["udp"].sum()) if "udp" in fl else 0,
        "flows_by_kind": {k: int((kinds == i).sum()) for i, k in enumerate(KINDS)},
        "flows_by_port_class": {
            "migration": int(((fl["resp_p"] >= 49152) & (fl["resp_p"] <= 49261)).sum()),
            "libvirtd_16509": int((fl["resp_p"] == 16509).sum()),
            "ssh_22": int((fl["resp_p"] == 22).sum()),
            "other": int((~(((fl["resp_p"] >= 49152) & (fl["resp_p"] <= 49261))
                            | (fl["resp_p"] == 16509) | (fl["resp_p"] == 22))).sum()),
        },
        "seconds": round(dt, 3), "pool_seconds": round(t_pool, 3),
    }
    if profile == "bulk":
        meta["flow_table"] = [
            {"orig_h": _ipstr(fl["orig_h"][i]), "orig_p": int(fl["orig_p"][i]),
             "resp_h": _ipstr(fl["resp_h"][i]), "resp_p": int(fl["resp_p"][i]),
             "kind": KINDS[int(fl["kind"][i])],
             "data_from": "resp" if fl["sender"][i] else "orig"}
            for i in range(flows_n)]
    if not quiet:
        print(f"wrote {out_path}: {meta['packets']:,} packets, {total_bytes:,} bytes "
              f"({total_bytes / 1e6:.1f} MB), {flows_n:,} flows, profile {profile}, "
              f"{dt:.1f} s (pools {t_pool:.1f} s)")
    return meta


def _ipstr(x) -> str:
    x = int(x)
    return f"{x >> 24}.{(x >> 16) & 255}.{(x >> 8) & 255}.{x & 255}"


# --------------------------------------------------------------------------
# real: the shipped captures, replicated
# --------------------------------------------------------------------------

# RFC 2544 benchmarking range 198.18.0.0/15: copy k (from 0) runs between
# originators at 198.18.0.0 + k + 1 and responders at 198.19.0.0 + k + 1.
REAL_ORIG_NET, REAL_RESP_NET = ip4(198, 18, 0, 0), ip4(198, 19, 0, 0)
REAL_GAP_US = 1_000_000   # between the last packet of a copy and the first of the next


def read_frames(path: str) -> list[tuple[int, int, bytes]]:
    """(timestamp us, original length, frame) of every record of a classic
    little-endian microsecond Ethernet pcap, gzip-compressed or not."""
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as fh:
        data = fh.read()
    if len(data) < 24 or struct.unpack_from("<I", data)[0] != 0xA1B2C3D4 or struct.unpack_from("<I", data, 20)[0] != 1:
        raise SystemExit(f"{path}: not a classic little-endian microsecond Ethernet pcap")
    frames, off = [], 24
    while off + 16 <= len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, off)
        frame = data[off + 16:off + 16 + incl]
        if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[14] >> 4 != 4:
            raise SystemExit(f"{path}: record at byte {off} is not Ethernet/IPv4")
        frames.append((sec * 1_000_000 + usec, orig, frame))
        off += 16 + incl
    return frames


def _word_sum(b: bytes) -> int:
    """Sum of the big-endian 16-bit words of b (odd length padded with 0)."""
    a = np.frombuffer(b + b"\0" * (len(b) & 1), ">u2")
    return int(a.sum(dtype=np.int64))


def _fold(s: np.ndarray) -> np.ndarray:
    for _ in range(3):
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _put_be(buf: np.ndarray, off: np.ndarray, value: np.ndarray, n: int) -> None:
    for i in range(n):
        buf[off + i] = (value >> (8 * (n - 1 - i))) & 0xFF


def replicate(out_path: str, sources: list[str], copies: int = 32, quiet: bool = False) -> dict:
    """Writes `copies` copies of the sources' packets (merged in time order),
    copy k shifted in time by k periods (a period is the copy's span plus
    REAL_GAP_US, so copies never overlap) and with its addresses rewritten:
    a flow's originator (the sender of its first SYN, else of its first
    packet) becomes 198.18.0.0 + k + 1, its responder 198.19.0.0 + k + 1.
    IPv4 header and TCP/UDP checksums are recomputed for the new addresses
    (the loopback captures' offloaded, never-filled TCP checksums come out
    valid too); a UDP checksum of 0 (none) stays 0, and a segment cut by the
    snaplen keeps its checksum as captured. Everything else is byte for byte
    the original."""
    t0 = time.perf_counter()
    frames = sorted((f for src in sources for f in read_frames(src)), key=lambda f: f[0])
    n = len(frames)
    ts = np.array([f[0] for f in frames], np.int64)
    rec_off = np.zeros(n, np.int64)
    syn_seen: set[tuple] = set()
    ip_base = np.zeros(n, np.int64)      # IP header words but checksum and addresses
    l4_base = np.zeros(n, np.int64)      # pseudo header and segment, checksum zeroed, but addresses
    l4_sum_at = np.full(n, -1, np.int64)  # offset of the TCP/UDP checksum in the frame, -1: keep
    originator: dict[tuple, tuple[bytes, int]] = {}   # flow key -> originator's endpoint
    endpoints: list[tuple[tuple, tuple[bytes, int]]] = []  # (flow key, sender's endpoint) per frame
    template = bytearray()
    for i, (_, orig_len, fr) in enumerate(frames):
        rec_off[i] = len(template)
        template += struct.pack("<IIII", 0, 0, len(fr), orig_len) + fr
        ihl = (fr[14] & 15) * 4
        l4 = 14 + ihl
        ip_len = struct.unpack_from(">H", fr, 16)[0]
        proto = fr[23]
        ports = struct.unpack_from(">HH", fr, l4) if proto in (6, 17) and len(fr) >= l4 + 8 else (0, 0)
        sender = (fr[26:30], ports[0])
        key = (proto,) + tuple(sorted([sender, (fr[30:34], ports[1])]))
        endpoints.append((key, sender))
        syn_only = proto == 6 and len(fr) >= l4 + 14 and fr[l4 + 13] & (SYN | ACK) == SYN
        if syn_only and key not in syn_seen:
            syn_seen.add(key)
            originator[key] = sender
        elif key not in originator:
            originator[key] = sender
        ip_base[i] = _word_sum(fr[14:24] + fr[34:l4])
        at = l4 + (16 if proto == 6 else 6)
        complete = proto in (6, 17) and at + 2 <= 14 + ip_len <= len(fr)   # not cut by the snaplen
        if complete and not (proto == 17 and fr[at:at + 2] == b"\0\0"):
            seg = fr[l4:at] + b"\0\0" + fr[at + 2:14 + ip_len]
            l4_base[i] = _word_sum(seg) + proto + len(seg)
            l4_sum_at[i] = at
    is_orig = np.array([originator[key] == sender for key, sender in endpoints])
    tpl = np.frombuffer(bytes(template), np.uint8)
    period_us = math.ceil((int(ts[-1] - ts[0]) + REAL_GAP_US) / 1_000_000) * 1_000_000
    fix = l4_sum_at >= 0
    udp_sum = np.array([fr[23] == 17 for _, _, fr in frames])[fix]
    tmp = os.path.abspath(out_path) + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(PCAP_HEADER)
        for k in range(copies):
            buf = tpl.copy()
            t = ts + k * period_us
            for j, v in enumerate((t // 1_000_000, t % 1_000_000)):  # record header: little-endian
                for b in range(4):
                    buf[rec_off + 4 * j + b] = (v >> (8 * b)) & 0xFF
            a, r = REAL_ORIG_NET + k + 1, REAL_RESP_NET + k + 1
            _put_be(buf, rec_off + 16 + 26, np.where(is_orig, a, r), 4)
            _put_be(buf, rec_off + 16 + 30, np.where(is_orig, r, a), 4)
            addr_sum = (a >> 16) + (a & 0xFFFF) + (r >> 16) + (r & 0xFFFF)
            _put_be(buf, rec_off + 16 + 24, ~_fold(ip_base + addr_sum) & 0xFFFF, 2)
            c = ~_fold(l4_base[fix] + addr_sum) & 0xFFFF
            c = np.where(udp_sum & (c == 0), 0xFFFF, c)
            _put_be(buf, rec_off[fix] + 16 + l4_sum_at[fix], c, 2)
            fh.write(buf.tobytes())
    os.replace(tmp, out_path)
    flows = len(originator)
    meta = {
        "generator_version": GEN_VERSION,
        "path": os.path.abspath(out_path),
        "profile": "real", "copies": copies,
        "packets": n * copies, "flows": flows * copies, "bytes": 24 + tpl.size * copies,
        "packets_per_copy": n, "flows_per_copy": flows,
        "period_s": period_us / 1e6,
        "addresses": f"copy k: originators {_ipstr(REAL_ORIG_NET)}+k+1, responders {_ipstr(REAL_RESP_NET)}+k+1",
        "checksums": f"IPv4 recomputed; TCP/UDP recomputed on {int(fix.sum())} of {n} packets per copy",
        "sources": {Path(src).name: os.path.getsize(src) for src in sources},
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if not quiet:
        print(f"wrote {out_path}: {meta['packets']:,} packets, {meta['bytes']:,} bytes "
              f"({meta['bytes'] / 1e6:.1f} MB), {meta['flows']:,} flows: {len(sources)} captures "
              f"x {copies}, {meta['seconds']:.1f} s")
    return meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="output .pcap path")
    ap.add_argument("--profile", choices=sorted(PROFILE_DEFAULTS) + ["real"], default="bulk")
    ap.add_argument("--packets", type=int, help="total packets (default: profile's)")
    ap.add_argument("--flows", type=int, help="number of flows (default: profile's)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ack-every", type=int, default=4,
                    help="bulk: one pure ACK back per this many data segments")
    ap.add_argument("--pool-mib", type=int, default=16,
                    help="size of each payload-kind pool (MiB)")
    ap.add_argument("--udp-share", type=float, default=0.0,
                    help="many: this fraction of the flows are UDP (DNS/syslog, never closed)")
    ap.add_argument("--sources", nargs="+", metavar="PCAP",
                    help="real: the captures to replicate (classic pcap, optionally .gz)")
    ap.add_argument("--copies", type=int, default=32, help="real: copies of the sources")
    ap.add_argument("--meta", action="store_true",
                    help="also write OUT.meta.json describing the capture")
    ap.add_argument("--start-s", type=float, default=0.0,
                    help="bulk/many: seconds after the default first timestamp to start at (rotated files)")
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    if a.profile == "real":
        if not a.sources:
            ap.error("--profile real needs --sources")
        meta = replicate(a.out, a.sources, a.copies, a.quiet)
    else:
        meta = generate(a.out, a.profile, a.packets, a.flows, a.seed, a.ack_every,
                        a.pool_mib, a.quiet, a.udp_share, a.start_s)
    if a.meta:
        with open(a.out + ".meta.json", "w") as fh:
            json.dump(meta, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
