"""Stream heads from the real captures, for tests/test_protocols.py.

A small TCP reassembly with dpkt, independent of inspector's flow layer:
per flow direction, segments are placed by sequence number relative to the
first byte of the stream (ISN + 1 when the SYN was captured, else the
lowest sequence number seen, which is where a mid-flow capture starts),
retransmissions and overlaps keep the first copy, and the stream stops at
the first hole (a lost segment, or a segment cut by the snaplen).

``flow_streams(path)`` returns ``{(orig_h, orig_p, resp_h, resp_p): Streams}``
with the reassembled bytes of each direction, up to ``limit`` bytes.
Run ``python tests/protocols_streams.py CAPTURE`` to print the heads.
"""
from __future__ import annotations

import gzip
import socket
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import dpkt

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
SEQ_MOD = 1 << 32


@dataclass(frozen=True)
class Streams:
    orig: bytes
    resp: bytes
    orig_at_start: bool   # the SYN was captured: orig starts at the first byte of the stream
    resp_at_start: bool


def _mirrored(eth: dpkt.ethernet.Ethernet) -> dpkt.ethernet.Ethernet:
    """The frame a tunnelled variant carries (VXLAN, or ERSPAN III with its
    optional subheader), which dpkt does not unwrap; else ``eth`` itself."""
    l4 = getattr(eth.data, "data", None)
    if isinstance(l4, dpkt.udp.UDP) and l4.dport == 4789:
        return dpkt.ethernet.Ethernet(l4.data[8:])
    if isinstance(l4, dpkt.gre.GRE) and l4.p == 0x22EB:
        return dpkt.ethernet.Ethernet(l4.data[12 + 8 * (l4.data[11] & 1):])
    return eth


def _packets(path: Path):
    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    with opener(path, "rb") as fh:
        for _ts, buf in dpkt.pcap.UniversalReader(fh):
            eth = _mirrored(dpkt.ethernet.Ethernet(buf))   # dpkt strips 802.1Q and 802.1ad tags
            ip = eth.data
            if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            family = socket.AF_INET6 if isinstance(ip, dpkt.ip6.IP6) else socket.AF_INET
            yield (socket.inet_ntop(family, ip.src), tcp.sport, socket.inet_ntop(family, ip.dst), tcp.dport, tcp)


def _assemble(segments: list[tuple[int, bytes]], base: int, limit: int) -> bytes:
    """Contiguous bytes from ``base`` on; stops at the first hole or at ``limit``."""
    placed = sorted(((seq - base) % SEQ_MOD, data) for seq, data in segments if data)
    out = bytearray()
    for off, data in placed:
        if off >= (1 << 31):          # before base (wrapped): data we did not start from
            continue
        end = off + len(data)
        if off > len(out):
            break                     # hole
        if end > len(out):
            out += data[len(out) - off:]
        if len(out) >= limit:
            break
    return bytes(out[:limit])


@cache
def flow_streams(path: Path | str, limit: int = 16384) -> dict[tuple, Streams]:
    path = Path(path)
    if not path.exists():
        path = CAPTURES / path
    syn: dict[tuple, int] = {}          # direction key -> ISN
    first_seq: dict[tuple, int] = {}
    segs: dict[tuple, list] = {}
    orient: dict[frozenset, tuple] = {}  # endpoints -> (orig_h, orig_p, resp_h, resp_p)
    for src, sport, dst, dport, tcp in _packets(path):
        key = (src, sport, dst, dport)
        ends = frozenset([(src, sport), (dst, dport)])
        if tcp.flags & dpkt.tcp.TH_SYN:
            syn[key] = tcp.seq
            if not tcp.flags & dpkt.tcp.TH_ACK:
                orient[ends] = key
            continue
        orient.setdefault(ends, key)     # no SYN: the first sender (tests re-orient from the manifest)
        first_seq.setdefault(key, tcp.seq)
        if tcp.data:
            segs.setdefault(key, []).append((tcp.seq, bytes(tcp.data)))

    def one(key):
        if key in syn:
            return _assemble(segs.get(key, []), (syn[key] + 1) % SEQ_MOD, limit), True
        lst = segs.get(key, [])
        if not lst:
            return b"", False
        # lowest sequence number in a window around the first one seen (handles wrap)
        ref = lst[0][0]
        base = min(lst, key=lambda s: (s[0] - ref + (1 << 31)) % SEQ_MOD)[0]
        return _assemble(lst, base, limit), False

    out = {}
    for ends, key in orient.items():
        rkey = (key[2], key[3], key[0], key[1])
        o, o_start = one(key)
        r, r_start = one(rkey)
        s = Streams(o, r, o_start, r_start)
        out[key] = s
        out[rkey] = Streams(r, o, r_start, o_start)   # same flow seen the other way round
    return out


def streams_for(path: Path | str, flow: dict, limit: int = 16384) -> Streams:
    """The streams of a manifest flow, oriented as the manifest says."""
    return flow_streams(path, limit)[(flow["orig_h"], flow["orig_p"], flow["resp_h"], flow["resp_p"])]


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        seen = set()
        for key, s in flow_streams(arg).items():
            if frozenset([key[:2], key[2:]]) in seen:
                continue
            seen.add(frozenset([key[:2], key[2:]]))
            print(key, "orig", len(s.orig), s.orig[:64].hex(" "), "\n      resp", len(s.resp), s.resp[:64].hex(" "))
