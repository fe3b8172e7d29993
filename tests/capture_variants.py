"""Capture-format variants of the committed base captures, and a dpkt oracle.

The base captures in tests/data/ were recorded by tcpdump over loopback
(see tests/data/make_base_captures.py).  The functions here derive, into a
directory chosen by the caller (tests use a tmp dir, nothing is committed),
the same packets in other container formats, byte orders, timestamp
resolutions, link types and encapsulations.  None of the transformations
changes what a flow table must show: the same 5-tuples, packet counts and
transport payload lengths (payload lengths always come from the IP and UDP
length fields, so snaplen cuts do not change them either).

Expectations never come from the code under test: ``oracle_flows`` decodes
the *base* capture with dpkt and applies the flow rules of docs/schema.md.

Layout of this module:
  * a tiny pcap reader/writer and a pcapng writer (struct, no dependencies),
  * link-layer encapsulators and IP header rewriters,
  * ``VARIANTS``: name -> Variant(builder, facts), ``make_variant()``,
  * ``oracle_flows()`` and friends (dpkt),
  * ``tshark_summary()`` to check that a generated file really parses.

Run ``python tests/capture_variants.py OUTDIR`` to write every variant of
every base into OUTDIR and check each one with tshark and dpkt.
"""
from __future__ import annotations

import gzip
import ipaddress
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Callable, Iterable

DATA_DIR = Path(__file__).resolve().parent / "data"

BASES: dict[str, Path] = {
    "lo_mixed": DATA_DIR / "lo_mixed.pcap",   # -i lo, Ethernet, IPv4+IPv6, usec
    "any_sll": DATA_DIR / "any_sll.pcap",     # -i any -y LINUX_SLL, usec
    "any_sll2": DATA_DIR / "any_sll2.pcap",   # -i any -y LINUX_SLL2, nsec
}
DEFAULT_BASE = "lo_mixed"

# Link types (LINKTYPE_* values as they appear in files).
LT_NULL = 0
LT_ETHERNET = 1
LT_RAW_12 = 12      # DLT_RAW on most BSDs (OpenBSD uses 12 for LOOP; files use 101)
LT_RAW_14 = 14      # DLT_RAW on BSD/OS
LT_RAW = 101
LT_LINUX_SLL = 113
LT_USER0 = 147
LT_LINUX_SLL2 = 276

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_8021Q = 0x8100
ETH_8021AD = 0x88A8

PCAP_MAGIC_USEC = 0xA1B2C3D4
PCAP_MAGIC_NSEC = 0xA1B23C4D


# ---------------------------------------------------------------------------
# Records and a minimal classic-pcap reader/writer
# ---------------------------------------------------------------------------

@dataclass
class Rec:
    ts_ns: int          # absolute time, nanoseconds since the epoch
    data: bytes         # captured bytes
    wirelen: int        # original length on the wire


@dataclass
class Pcap:
    linktype: int
    snaplen: int
    nsec: bool
    big_endian: bool
    records: list[Rec]


def read_pcap(path: Path) -> Pcap:
    """Parse a classic pcap file (either byte order, usec or nsec)."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    magic_le = struct.unpack("<I", raw[:4])[0]
    magic_be = struct.unpack(">I", raw[:4])[0]
    if magic_le in (PCAP_MAGIC_USEC, PCAP_MAGIC_NSEC):
        e, magic = "<", magic_le
    elif magic_be in (PCAP_MAGIC_USEC, PCAP_MAGIC_NSEC):
        e, magic = ">", magic_be
    else:
        raise ValueError(f"{path}: not a classic pcap file")
    nsec = magic == PCAP_MAGIC_NSEC
    _, _, _, _, snaplen, linktype = struct.unpack(e + "HHiIII", raw[4:24])
    off = 24
    recs = []
    while off + 16 <= len(raw):
        sec, frac, caplen, wirelen = struct.unpack(e + "IIII", raw[off:off + 16])
        off += 16
        data = raw[off:off + caplen]
        if len(data) < caplen:
            break
        off += caplen
        recs.append(Rec(sec * 10**9 + frac * (1 if nsec else 1000), data, wirelen))
    return Pcap(linktype & 0x0FFFFFFF, snaplen, nsec, e == ">", recs)


def pcap_bytes(linktype: int, records: Iterable[Rec], *, big_endian: bool = False,
               nsec: bool = False, snaplen: int = 262144) -> bytes:
    e = ">" if big_endian else "<"
    out = [struct.pack(e + "IHHiIII", PCAP_MAGIC_NSEC if nsec else PCAP_MAGIC_USEC,
                       2, 4, 0, 0, snaplen, linktype)]
    for r in records:
        sec, ns = divmod(r.ts_ns, 10**9)
        frac = ns if nsec else ns // 1000
        out.append(struct.pack(e + "IIII", sec, frac, len(r.data), r.wirelen))
        out.append(r.data)
    return b"".join(out)


def write_pcap(path: Path, linktype: int, records: Iterable[Rec], **kw) -> Path:
    Path(path).write_bytes(pcap_bytes(linktype, records, **kw))
    return Path(path)


# ---------------------------------------------------------------------------
# pcapng writer
# ---------------------------------------------------------------------------

def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


class PcapngWriter:
    """Writes pcapng blocks in one byte order (one section)."""

    def __init__(self, big_endian: bool = False):
        self.e = ">" if big_endian else "<"
        self.parts: list[bytes] = []
        self.tsres: list[int] = []       # ticks per second, per interface

    def _opts(self, opts: list[tuple[int, bytes]]) -> bytes:
        if not opts:
            return b""
        out = b"".join(struct.pack(self.e + "HH", c, len(v)) + _pad4(v) for c, v in opts)
        return out + struct.pack(self.e + "HH", 0, 0)

    def block(self, btype: int, body: bytes) -> None:
        body = _pad4(body)
        n = len(body) + 12
        self.parts.append(struct.pack(self.e + "II", btype, n) + body + struct.pack(self.e + "I", n))

    def shb(self, opts: list[tuple[int, bytes]] = ()) -> None:
        body = struct.pack(self.e + "IHHq", 0x1A2B3C4D, 1, 0, -1) + self._opts(list(opts))
        self.block(0x0A0D0D0A, body)

    def idb(self, linktype: int, snaplen: int = 262144, tsresol_exp10: int = 6,
            name: str | None = None, tsresol_exp2: int | None = None) -> int:
        """Interface Description Block; if_tsresol 10^-exp10, or 2^-exp2."""
        opts = []
        if name:
            opts.append((2, name.encode()))
        if tsresol_exp2 is not None:
            opts.append((9, bytes([0x80 | tsresol_exp2])))
        elif tsresol_exp10 != 6:
            opts.append((9, bytes([tsresol_exp10])))
        body = struct.pack(self.e + "HHI", linktype, 0, snaplen) + self._opts(opts)
        self.block(1, body)
        self.tsres.append(2 ** tsresol_exp2 if tsresol_exp2 is not None else 10 ** tsresol_exp10)
        return len(self.tsres) - 1

    def _ts(self, iface: int, ts_ns: int) -> tuple[int, int]:
        ticks = ts_ns * self.tsres[iface] // 10**9
        return ticks >> 32, ticks & 0xFFFFFFFF

    def epb(self, iface: int, rec: Rec, comment: str | None = None) -> None:
        hi, lo = self._ts(iface, rec.ts_ns)
        body = struct.pack(self.e + "IIIII", iface, hi, lo, len(rec.data), rec.wirelen)
        body += _pad4(rec.data)
        if comment:
            body += self._opts([(1, comment.encode())])
        self.block(6, body)

    def isb(self, iface: int, ts_ns: int, received: int) -> None:
        hi, lo = self._ts(iface, ts_ns)
        body = struct.pack(self.e + "III", iface, hi, lo)
        body += self._opts([(4, struct.pack(self.e + "Q", received)),
                            (5, struct.pack(self.e + "Q", 0))])
        self.block(5, body)

    def nrb(self, entries: list[tuple[str, str]]) -> None:
        body = b""
        for addr, name in entries:
            ip = ipaddress.ip_address(addr)
            rtype = 1 if ip.version == 4 else 2
            v = ip.packed + name.encode() + b"\0"
            body += struct.pack(self.e + "HH", rtype, len(v)) + _pad4(v)
        body += struct.pack(self.e + "HH", 0, 0)
        self.block(4, body)

    def custom(self, payload: bytes) -> None:
        # Custom Block that may be copied (0x00000BAD); PEN 32473 is the
        # IANA example enterprise.  Readers must skip it.
        self.block(0x00000BAD, struct.pack(self.e + "I", 32473) + payload)

    def unknown(self, btype: int, payload: bytes) -> None:
        self.block(btype, payload)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


# ---------------------------------------------------------------------------
# Link layers and IP rewriting
# ---------------------------------------------------------------------------

def ip_version(ip: bytes) -> int:
    return ip[0] >> 4


def ethertype_of(ip: bytes) -> int:
    return ETH_IPV6 if ip_version(ip) == 6 else ETH_IPV4


def strip_link(linktype: int, data: bytes) -> bytes:
    """Return the IP packet inside one frame of the base captures."""
    if linktype == LT_ETHERNET:
        off, et = 12, struct.unpack(">H", data[12:14])[0]
        while et in (ETH_8021Q, ETH_8021AD):
            off += 4
            et = struct.unpack(">H", data[off:off + 2])[0]
        return data[off + 2:]
    if linktype == LT_LINUX_SLL:
        return data[16:]
    if linktype == LT_LINUX_SLL2:
        return data[20:]
    if linktype in (LT_RAW, LT_RAW_12, LT_RAW_14):
        return data
    if linktype == LT_NULL:
        return data[4:]
    raise ValueError(f"unsupported base link type {linktype}")


def eth(ip: bytes, tags: tuple[tuple[int, int], ...] = ()) -> bytes:
    """Ethernet frame with loopback-style zero MACs and optional VLAN tags."""
    hdr = b"\0" * 12
    for tpid, vid in tags:
        hdr += struct.pack(">HH", tpid, vid & 0x0FFF)
    return hdr + struct.pack(">H", ethertype_of(ip)) + ip


def sll(ip: bytes) -> bytes:
    # packet type 0 (to us), ARPHRD_LOOPBACK 772, 6-byte all-zero address,
    # exactly what tcpdump -i any -y LINUX_SLL wrote for lo.
    return struct.pack(">HHH8sH", 0, 772, 6, b"", ethertype_of(ip)) + ip


def sll2(ip: bytes, ifindex: int = 1) -> bytes:
    return struct.pack(">HHIHBB8s", ethertype_of(ip), 0, ifindex, 772, 0, 6, b"") + ip


def null_hdr(ip: bytes, af6: int, big_endian: bool) -> bytes:
    af = af6 if ip_version(ip) == 6 else 2
    return struct.pack(">I" if big_endian else "<I", af) + ip


def internet_checksum(data: bytes) -> int:
    """RFC 1071 checksum (IPv4 header, UDP, GRE); an odd length is padded with a zero."""
    data += b"\0" * (len(data) % 2)
    s = 0
    for i in range(0, len(data), 2):
        s += (data[i] << 8) | data[i + 1]
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def add_ipv4_options(ip: bytes, big: bool) -> bytes:
    """Insert NOP + Record Route so that IHL > 5 (7 or 15)."""
    if ip_version(ip) != 4:
        return ip
    ihl = (ip[0] & 0x0F) * 4
    slots = 9 if big else 1
    opts = b"\x01" + bytes([7, 3 + 4 * slots, 4]) + b"\0" * (4 * slots)
    opts = _pad4(opts)
    if ihl + len(opts) > 60:
        return ip
    hdr = bytearray(ip[:ihl] + opts)
    hdr[0] = 0x40 | (len(hdr) // 4)
    total = struct.unpack(">H", ip[2:4])[0] + len(opts)
    hdr[2:4] = struct.pack(">H", total)
    hdr[10:12] = b"\0\0"
    hdr[10:12] = struct.pack(">H", internet_checksum(bytes(hdr)))
    return bytes(hdr) + ip[ihl:]


def add_ipv6_ext_headers(ip: bytes) -> bytes:
    """Insert Hop-by-Hop (8 bytes) and Destination Options (16 bytes)."""
    if ip_version(ip) != 6:
        return ip
    nh = ip[6]
    plen = struct.unpack(">H", ip[4:6])[0]
    hbh = bytes([60, 0]) + b"\x01\x04" + b"\0" * 4            # PadN(4)
    dst = bytes([nh, 1]) + b"\x01\x0c" + b"\0" * 12           # PadN(12)
    hdr = bytearray(ip[:40])
    hdr[4:6] = struct.pack(">H", plen + len(hbh) + len(dst))
    hdr[6] = 0
    return bytes(hdr) + hbh + dst + ip[40:]


def base_ip_records(base: Path) -> list[Rec]:
    """The base capture's packets as raw IP packets (full captures only)."""
    p = read_pcap(base)
    out = []
    for r in p.records:
        ip = strip_link(p.linktype, r.data)
        assert r.wirelen == len(r.data), "base captures must not be snaplen-cut"
        out.append(Rec(r.ts_ns, ip, len(ip)))
    return out


def encap(recs: list[Rec], fn: Callable[[bytes], bytes]) -> list[Rec]:
    out = []
    for r in recs:
        d = fn(r.data)
        out.append(Rec(r.ts_ns, d, len(d)))
    return out


# ---------------------------------------------------------------------------
# Tunnels a mirror port delivers: a frame (or IP packet) wrapped in a tunnel
# header and an outer IP header (RFC 7348, RFC 8926, RFC 2784/2890,
# draft-foschiano-erspan-03).  Give outer addresses from the documentation
# ranges (192.0.2.0/24, 2001:db8::/32): the files are never sent anywhere.
# ---------------------------------------------------------------------------

IPPROTO_UDP = 17
IPPROTO_GRE = 47
UDP_PORT_VXLAN = 4789
UDP_PORT_GENEVE = 6081
ETH_TEB = 0x6558          # transparent Ethernet bridging
ETH_ERSPAN_2 = 0x88BE     # type I without a GRE sequence number
ETH_ERSPAN_3 = 0x22EB


def outer_ip(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    """IPv4 (checksummed, DF) or IPv6 header, by the family of ``src``, before ``payload``."""
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    if s.version == 6:
        return struct.pack(">IHBB", 0x6 << 28, len(payload), proto, 64) + s.packed + d.packed + payload
    hdr = bytearray(struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0,
                                s.packed, d.packed))
    hdr[10:12] = struct.pack(">H", internet_checksum(bytes(hdr)))
    return bytes(hdr) + payload


def outer_udp(src: str, dst: str, dport: int, payload: bytes, sport: int = 49152) -> bytes:
    """UDP with its checksum (IPv6 requires one) inside ``outer_ip``."""
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    length = 8 + len(payload)
    tail = struct.pack(">xBH", IPPROTO_UDP, length) if s.version == 4 else struct.pack(">I3xB", length, IPPROTO_UDP)
    udp = bytearray(struct.pack(">HHHH", sport, dport, length, 0) + payload)
    udp[6:8] = struct.pack(">H", internet_checksum(s.packed + d.packed + tail + bytes(udp)) or 0xFFFF)
    return outer_ip(src, dst, IPPROTO_UDP, bytes(udp))


def vxlan(frame: bytes, vni: int) -> bytes:
    """VXLAN header (I flag, 24-bit VNI) before the Ethernet frame it carries."""
    return struct.pack(">B3xI", 0x08, vni << 8) + frame


def geneve_option(opt_class: int, opt_type: int, data: bytes) -> bytes:
    """One GENEVE option TLV; ``data`` is whole 4-octet words."""
    return struct.pack(">HBB", opt_class, opt_type, len(data) // 4) + data


def geneve(inner: bytes, vni: int, protocol: int = ETH_TEB, options: bytes = b"") -> bytes:
    """GENEVE header with ``options`` before what it carries (Ethernet, or IP by ``protocol``)."""
    return struct.pack(">BBHI", len(options) // 4, 0, protocol, vni << 8) + options + inner


def gre(inner: bytes, protocol: int, *, key: int | None = None, seq: int | None = None,
        checksum: bool = False) -> bytes:
    """GRE header with the optional checksum, key and sequence number fields."""
    flags = (0x8000 if checksum else 0) | (0x2000 if key is not None else 0) | (0x1000 if seq is not None else 0)
    optional = (b"\0" * 4 if checksum else b"") + (struct.pack(">I", key) if key is not None else b"") \
        + (struct.pack(">I", seq) if seq is not None else b"")
    packet = bytearray(struct.pack(">HH", flags, protocol) + optional + inner)
    if checksum:
        packet[4:6] = struct.pack(">H", internet_checksum(bytes(packet)))
    return bytes(packet)


def erspan2(frame: bytes, session: int, index: int = 0) -> bytes:
    """ERSPAN type II header (version 1) before the mirrored frame; GRE must carry a sequence number."""
    return struct.pack(">HHI", 1 << 12, session & 0x3FF, index & 0xFFFFF) + frame


def erspan3(frame: bytes, session: int, timestamp: int = 0, platform_port: int | None = None) -> bytes:
    """ERSPAN type III header (version 2, an Ethernet PDU as Linux sends) before the mirrored frame.

    With ``platform_port`` the O flag is set and a platform-specific subheader
    (platform id 3: the port id, seconds 0) follows the header.
    """
    has_sub = platform_port is not None
    header = struct.pack(">HHIHH", 2 << 12, session & 0x3FF, timestamp, 0, 0x8000 | int(has_sub))
    sub = struct.pack(">II", (3 << 26) | platform_port, 0) if has_sub else b""
    return header + sub + frame


# ---------------------------------------------------------------------------
# Variants
# ---------------------------------------------------------------------------

@dataclass
class Variant:
    build: Callable[[Path, Path], Path]     # (base, outdir) -> written file
    container: str = "pcap"                 # "pcap" or "pcapng" (after gunzip)
    gz: bool = False
    truncated_snaplen: int | None = None    # records cut to this many bytes
    truncated_last: bool = False            # the last record is cut short
    tools: tuple[str, ...] = ()             # external programs the build needs
    doc: str = ""
    tags: set[str] = field(default_factory=set)


def _simple_pcap(fname: str, linktype: int, fn: Callable[[bytes], bytes], **kw):
    def build(base: Path, outdir: Path) -> Path:
        return write_pcap(outdir / fname, linktype, encap(base_ip_records(base), fn), **kw)
    return build


def _pcapng_single(fname: str, big_endian: bool = False, gz: bool = False):
    def build(base: Path, outdir: Path) -> Path:
        w = PcapngWriter(big_endian)
        w.shb([(4, b"inspector tests")])
        w.idb(LT_ETHERNET, name="lo")
        for r in encap(base_ip_records(base), eth):
            w.epb(0, r)
        data = w.getvalue()
        path = outdir / fname
        path.write_bytes(gzip.compress(data) if gz else data)
        return path
    return build


def _pcapng_two_interfaces(base: Path, outdir: Path) -> Path:
    """Two IDBs: Ethernet (usec) and raw IP (nsec); packets interleaved.

    Also carries blocks a reader must skip or tolerate: SHB options, an NRB,
    a Custom Block, an unknown block type, EPB comments and an ISB per
    interface at the end.
    """
    recs = base_ip_records(base)
    w = PcapngWriter()
    w.shb([(2, b"x86_64"), (3, b"Linux"), (4, b"inspector tests")])
    w.idb(LT_ETHERNET, 262144, 6, "lo")
    w.nrb([("127.0.0.1", "localhost"), ("::1", "ip6-localhost")])
    w.idb(LT_RAW, 65535, 9, "rawip0")
    w.custom(b"skip me\0")
    for i, r in enumerate(recs):
        iface = i % 2
        d = eth(r.data) if iface == 0 else r.data
        w.epb(iface, Rec(r.ts_ns, d, len(d)), comment=f"pkt {i}" if i % 5 == 0 else None)
        if i == len(recs) // 2:
            w.unknown(0x0000_7F00 | 0x42, b"\xde\xad\xbe\xef")
    last = recs[-1].ts_ns
    w.isb(0, last, (len(recs) + 1) // 2)
    w.isb(1, last, len(recs) // 2)
    path = outdir / "two_interfaces.pcapng"
    path.write_bytes(w.getvalue())
    return path


def _pcapng_two_sections(base: Path, outdir: Path) -> Path:
    """Two sections back to back (as `cat a.pcapng b.pcapng` makes): the
    first little-endian, the second big-endian with its own IDBs, so
    interface 0 means a different interface in each section."""
    recs = base_ip_records(base)
    half = len(recs) // 2
    a = PcapngWriter(big_endian=False)
    a.shb()
    a.idb(LT_ETHERNET)
    for r in recs[:half]:
        d = eth(r.data)
        a.epb(0, Rec(r.ts_ns, d, len(d)))
    b = PcapngWriter(big_endian=True)
    b.shb()
    b.idb(LT_RAW, tsresol_exp10=9)
    b.idb(LT_LINUX_SLL)
    for i, r in enumerate(recs[half:]):
        d = r.data if i % 2 == 0 else sll(r.data)
        b.epb(i % 2, Rec(r.ts_ns, d, len(d)))
    path = outdir / "two_sections.pcapng"
    path.write_bytes(a.getvalue() + b.getvalue())
    return path


def _pcapng_tsresol_pow2(base: Path, outdir: Path) -> Path:
    """if_tsresol = 2^-20 (MSB set): ticks of ~954 ns."""
    w = PcapngWriter()
    w.shb()
    w.idb(LT_ETHERNET, tsresol_exp2=20)
    for r in encap(base_ip_records(base), eth):
        w.epb(0, r)
    path = outdir / "tsresol_pow2.pcapng"
    path.write_bytes(w.getvalue())
    return path


def _editcap_pcapng(base: Path, outdir: Path) -> Path:
    src = outdir / "editcap_src.pcap"
    write_pcap(src, LT_ETHERNET, encap(base_ip_records(base), eth))
    path = outdir / "editcap.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(src), str(path)], check=True,
                   capture_output=True)
    src.unlink()
    return path


def _gzip_of(inner: Callable[[Path, Path], Path], fname: str):
    def build(base: Path, outdir: Path) -> Path:
        sub = outdir / f"_{fname}.d"
        sub.mkdir(exist_ok=True)
        p = inner(base, sub)
        path = outdir / fname
        path.write_bytes(gzip.compress(p.read_bytes()))
        shutil.rmtree(sub)
        return path
    return build


SNAPLEN_CUT = 96


def _snaplen_cut(base: Path, outdir: Path) -> Path:
    src = outdir / "snap_src.pcap"
    write_pcap(src, LT_ETHERNET, encap(base_ip_records(base), eth))
    path = outdir / f"snaplen{SNAPLEN_CUT}.pcap"
    if shutil.which("editcap"):
        subprocess.run(["editcap", "-F", "pcap", "-s", str(SNAPLEN_CUT), str(src), str(path)],
                       check=True, capture_output=True)
    else:   # same thing by hand
        p = read_pcap(src)
        write_pcap(path, p.linktype,
                   [Rec(r.ts_ns, r.data[:SNAPLEN_CUT], r.wirelen) for r in p.records],
                   snaplen=SNAPLEN_CUT)
    src.unlink()
    return path


def _truncated_last(keep_header_only: bool):
    def build(base: Path, outdir: Path) -> Path:
        recs = encap(base_ip_records(base), eth)
        data = pcap_bytes(LT_ETHERNET, recs)
        last = len(recs[-1].data)
        if keep_header_only:
            # the file ends 7 bytes into the last 16-byte record header
            cut = len(data) - last - 16 + 7
            name = "truncated_in_record_header.pcap"
        else:
            cut = len(data) - last // 2       # half of the last packet is gone
            name = "truncated_last_record.pcap"
        path = outdir / name
        path.write_bytes(data[:cut])
        return path
    return build


def _pcapng_truncated_last(base: Path, outdir: Path) -> Path:
    w = PcapngWriter()
    w.shb()
    w.idb(LT_ETHERNET)
    recs = encap(base_ip_records(base), eth)
    for r in recs:
        w.epb(0, r)
    data = w.getvalue()
    last_block = 12 + 20 + len(_pad4(recs[-1].data))
    path = outdir / "truncated_last_block.pcapng"
    path.write_bytes(data[:len(data) - last_block // 2])
    return path


VARIANTS: dict[str, Variant] = {
    # --- classic pcap: byte order x timestamp resolution -------------------
    "pcap_le_usec": Variant(_simple_pcap("le_usec.pcap", LT_ETHERNET, eth),
                            doc="classic pcap, little-endian, a1b2c3d4"),
    "pcap_be_usec": Variant(_simple_pcap("be_usec.pcap", LT_ETHERNET, eth, big_endian=True),
                            doc="classic pcap, big-endian"),
    "pcap_le_nsec": Variant(_simple_pcap("le_nsec.pcap", LT_ETHERNET, eth, nsec=True),
                            doc="classic pcap, nanosecond magic a1b23c4d"),
    "pcap_be_nsec": Variant(_simple_pcap("be_nsec.pcap", LT_ETHERNET, eth, big_endian=True,
                                         nsec=True),
                            doc="classic pcap, big-endian, nanosecond"),
    # --- pcapng -------------------------------------------------------------
    "pcapng_editcap": Variant(_editcap_pcapng, container="pcapng", tools=("editcap",),
                              doc="editcap -F pcapng of the Ethernet pcap"),
    "pcapng_le": Variant(_pcapng_single("single_le.pcapng"), container="pcapng",
                         doc="pcapng written here, little-endian section"),
    "pcapng_be": Variant(_pcapng_single("single_be.pcapng", big_endian=True),
                         container="pcapng", doc="pcapng, big-endian section"),
    "pcapng_two_interfaces": Variant(_pcapng_two_interfaces, container="pcapng",
                                     doc="IDB0 Ethernet/usec + IDB1 raw IP/nsec, "
                                         "interleaved, plus NRB/custom/unknown/ISB blocks"),
    "pcapng_two_sections": Variant(_pcapng_two_sections, container="pcapng",
                                   doc="LE section (Ethernet) + BE section (raw IP, SLL)"),
    "pcapng_tsresol_pow2": Variant(_pcapng_tsresol_pow2, container="pcapng",
                                   doc="if_tsresol 2^-20 (binary fractions of a second)"),
    "pcapng_named_pcap": Variant(_pcapng_single("really_pcapng.pcap"), container="pcapng",
                                 doc="pcapng content behind a .pcap name"),
    # --- gzip ---------------------------------------------------------------
    "pcap_gz": Variant(_gzip_of(_simple_pcap("x.pcap", LT_ETHERNET, eth), "gz.pcap.gz"),
                       gz=True, doc="gzip of a classic pcap"),
    "pcapng_gz": Variant(_pcapng_single("gz.pcapng.gz", gz=True), container="pcapng",
                         gz=True, doc="gzip of a pcapng"),
    "pcapng_two_interfaces_gz": Variant(_gzip_of(_pcapng_two_interfaces, "two_if.pcapng.gz"),
                                        container="pcapng", gz=True,
                                        doc="gzip of the two-interface pcapng"),
    "pcap_gz_named_cap": Variant(_gzip_of(_simple_pcap("x.pcap", LT_ETHERNET, eth),
                                          "gzipped_no_suffix.cap"),
                                 gz=True, doc="gzip content behind a .cap name"),
    # --- link types ---------------------------------------------------------
    "linktype_sll": Variant(_simple_pcap("sll.pcap", LT_LINUX_SLL, sll),
                            doc="Linux cooked v1 (113)"),
    "linktype_sll2": Variant(_simple_pcap("sll2.pcap", LT_LINUX_SLL2, sll2),
                             doc="Linux cooked v2 (276)"),
    "linktype_raw101": Variant(_simple_pcap("raw101.pcap", LT_RAW, lambda ip: ip),
                               doc="raw IP (101)"),
    "linktype_raw12": Variant(_simple_pcap("raw12.pcap", LT_RAW_12, lambda ip: ip),
                              doc="raw IP as DLT 12 (BSD DLT_RAW)", tags={"optional"}),
    "linktype_raw14": Variant(_simple_pcap("raw14.pcap", LT_RAW_14, lambda ip: ip),
                              doc="raw IP as DLT 14 (BSD/OS DLT_RAW)", tags={"optional"}),
    "linktype_null_af24": Variant(
        _simple_pcap("null24.pcap", LT_NULL, lambda ip: null_hdr(ip, 24, False)),
        doc="BSD loopback, LE AF: 2 / 24 (NetBSD/OpenBSD AF_INET6)"),
    "linktype_null_af28": Variant(
        _simple_pcap("null28.pcap", LT_NULL, lambda ip: null_hdr(ip, 28, False)),
        doc="BSD loopback, LE AF: 2 / 28 (FreeBSD AF_INET6)"),
    "linktype_null_af30": Variant(
        _simple_pcap("null30.pcap", LT_NULL, lambda ip: null_hdr(ip, 30, False)),
        doc="BSD loopback, LE AF: 2 / 30 (macOS AF_INET6)"),
    "linktype_null_be_af30": Variant(
        _simple_pcap("null30_be.pcap", LT_NULL, lambda ip: null_hdr(ip, 30, True),
                     big_endian=True),
        doc="BSD loopback from a big-endian host: BE file, BE AF values"),
    # --- encapsulation and header shapes ------------------------------------
    "vlan_8021q": Variant(
        _simple_pcap("vlan.pcap", LT_ETHERNET, lambda ip: eth(ip, ((ETH_8021Q, 100),))),
        doc="one 802.1Q tag"),
    "vlan_qinq": Variant(
        _simple_pcap("qinq.pcap", LT_ETHERNET,
                     lambda ip: eth(ip, ((ETH_8021AD, 200), (ETH_8021Q, 100)))),
        doc="802.1ad S-tag 0x88a8 then 802.1Q C-tag 0x8100"),
    "ipv4_options": Variant(
        lambda b, o: write_pcap(
            o / "ipv4_options.pcap", LT_ETHERNET,
            [Rec(r.ts_ns, d, len(d)) for i, r in enumerate(base_ip_records(b))
             for d in [eth(add_ipv4_options(r.data, big=bool(i % 2)))]]),
        doc="IPv4 NOP + Record Route (IHL 7 or 15), IPv6 untouched"),
    "ipv6_ext_headers": Variant(
        _simple_pcap("ipv6_ext.pcap", LT_ETHERNET, lambda ip: eth(add_ipv6_ext_headers(ip))),
        doc="IPv6 Hop-by-Hop + Destination Options before TCP/UDP, IPv4 untouched"),
    # --- damage that must not be fatal ---------------------------------------
    "snaplen96": Variant(_snaplen_cut, truncated_snaplen=SNAPLEN_CUT,
                         doc="editcap -s 96: payloads cut, wire lengths kept"),
    "truncated_last_record": Variant(_truncated_last(False), truncated_last=True,
                                     doc="file ends in the middle of the last packet"),
    "truncated_in_record_header": Variant(_truncated_last(True), truncated_last=True,
                                          doc="file ends inside the last record header"),
    "pcapng_truncated_last_block": Variant(_pcapng_truncated_last, container="pcapng",
                                           truncated_last=True,
                                           doc="pcapng ending in the middle of the last EPB"),
}

# Variants whose flows must equal the oracle's for the whole base capture.
FULL_VARIANTS = [n for n, v in VARIANTS.items() if not v.truncated_last]
TRUNCATED_LAST_VARIANTS = [n for n, v in VARIANTS.items() if v.truncated_last]


def make_variant(name: str, outdir: Path, base: str | Path = DEFAULT_BASE) -> Path:
    """Write variant ``name`` of ``base`` into ``outdir`` and return its path."""
    v = VARIANTS[name]
    missing = [t for t in v.tools if shutil.which(t) is None]
    if missing:
        raise MissingTool(", ".join(missing))
    base_path = BASES[base] if isinstance(base, str) else Path(base)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    return v.build(base_path, outdir)


class MissingTool(RuntimeError):
    pass


# ---------------------------------------------------------------------------
# dpkt oracle
# ---------------------------------------------------------------------------

@dataclass
class OPkt:
    ts_ns: int
    proto: str                 # "tcp" / "udp"
    src: str
    sport: int
    dst: str
    dport: int
    payload: int               # transport payload on the wire (from length fields)
    payload_offset: int        # bytes before the payload, link header included
    syn_only: bool             # SYN without ACK
    frame_len: int             # link header + whole IP packet


def _ts_to_ns(ts) -> int:
    """dpkt gives a Decimal for nsec files (exact) and a float for usec ones."""
    if isinstance(ts, Decimal):
        return int(ts * 10**9)
    return int(round(ts * 1e6)) * 1000


def oracle_packets(path: Path) -> list[OPkt]:
    """Decode a full (not cut) classic pcap with dpkt: TCP/UDP over IPv4/6."""
    import dpkt

    out = []
    with open(path, "rb") as f:
        rd = dpkt.pcap.Reader(f)
        dl = rd.datalink()
        for ts, buf in rd:
            if dl == dpkt.pcap.DLT_EN10MB:
                l2 = dpkt.ethernet.Ethernet(buf)
                ip = l2.data
                link_len = len(buf) - len(bytes(ip))
            elif dl == dpkt.pcap.DLT_LINUX_SLL:
                ip = dpkt.sll.SLL(buf).data
                link_len = 16
            elif dl == 276:
                ip = dpkt.sll2.SLL2(buf).data
                link_len = 20
            elif dl == dpkt.pcap.DLT_RAW:
                ip = dpkt.ip.IP(buf) if buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)
                link_len = 0
            else:
                raise ValueError(f"oracle: link type {dl} not handled")
            if isinstance(ip, dpkt.ip.IP):
                src, dst = str(ipaddress.ip_address(ip.src)), str(ipaddress.ip_address(ip.dst))
                ip_hdr = ip.hl * 4
                ip_total = ip.len
                l4 = ip.data
            elif isinstance(ip, dpkt.ip6.IP6):
                src, dst = str(ipaddress.ip_address(ip.src)), str(ipaddress.ip_address(ip.dst))
                ip_total = 40 + ip.plen
                ip_hdr = ip_total - len(bytes(ip.data))
                l4 = ip.data
            else:
                continue
            if isinstance(l4, dpkt.tcp.TCP):
                l4_hdr = l4.off * 4
                payload = ip_total - ip_hdr - l4_hdr
                syn_only = bool(l4.flags & dpkt.tcp.TH_SYN) and not (l4.flags & dpkt.tcp.TH_ACK)
                proto = "tcp"
            elif isinstance(l4, dpkt.udp.UDP):
                l4_hdr = 8
                payload = l4.ulen - 8
                syn_only = False
                proto = "udp"
            else:
                continue
            out.append(OPkt(_ts_to_ns(ts), proto, src, l4.sport, dst, l4.dport, payload,
                            link_len + ip_hdr + l4_hdr, syn_only, link_len + ip_total))
    return out


@dataclass
class OFlow:
    proto: str
    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int
    ts_ns: int
    last_ns: int
    orig_pkts: int = 0
    resp_pkts: int = 0
    orig_bytes: int = 0
    resp_bytes: int = 0
    orig_captured: int = 0      # payload bytes actually present in the file
    resp_captured: int = 0

    @property
    def key(self) -> tuple:
        return (self.proto, self.orig_h, self.orig_p, self.resp_h, self.resp_p)

    @property
    def duration_ns(self) -> int:
        return self.last_ns - self.ts_ns


def oracle_flows(pkts: list[OPkt], *, snaplen: int | None = None,
                 extra_link_bytes: int = 0) -> dict[tuple, OFlow]:
    """Bidirectional flows per the rules in docs/schema.md.

    Originator: sender of the first SYN without ACK; else the side not on a
    well-known port (< 1024) ... else the sender of the first packet.  (The
    base captures avoid watched ports, so the watchlist cannot change this.)
    ``snaplen``: compute the captured payload bytes as if every frame had
    been cut to that many bytes (``extra_link_bytes`` added to the offset
    when the variant's link header is longer than the base's).
    """
    groups: dict[tuple, list[OPkt]] = {}
    for p in pkts:
        k = (p.proto,) + tuple(sorted([(p.src, p.sport), (p.dst, p.dport)]))
        groups.setdefault(k, []).append(p)
    flows = {}
    for k, ps in groups.items():
        syn = next((p for p in ps if p.syn_only), None)
        if syn is not None:
            orig = (syn.src, syn.sport)
        else:
            # first packet's sender, unless only its own port is well-known
            a, b = (ps[0].src, ps[0].sport), (ps[0].dst, ps[0].dport)
            orig = b if a[1] < 1024 <= b[1] else a
        first = ps[0]
        resp = (first.dst, first.dport) if (first.src, first.sport) == orig else (first.src, first.sport)
        f = OFlow(first.proto, orig[0], orig[1], resp[0], resp[1],
                  min(p.ts_ns for p in ps), max(p.ts_ns for p in ps))
        for p in ps:
            cap = p.payload
            if snaplen is not None:
                cap = max(0, min(p.payload, snaplen - p.payload_offset - extra_link_bytes))
            if (p.src, p.sport) == orig:
                f.orig_pkts += 1
                f.orig_bytes += p.payload
                f.orig_captured += cap
            else:
                f.resp_pkts += 1
                f.resp_bytes += p.payload
                f.resp_captured += cap
        flows[f.key] = f
    return flows


def oracle_for_base(base: str | Path = DEFAULT_BASE, **kw) -> dict[tuple, OFlow]:
    path = BASES[base] if isinstance(base, str) else Path(base)
    return oracle_flows(oracle_packets(path), **kw)


def oracle_truncated_count(base: str | Path, snaplen: int, link_len_delta: int = 0) -> int:
    """Frames longer than snaplen (after re-encapsulation)."""
    path = BASES[base] if isinstance(base, str) else Path(base)
    return sum(1 for p in oracle_packets(path) if p.frame_len + link_len_delta > snaplen)


def base_link_len(base: str | Path) -> int:
    path = BASES[base] if isinstance(base, str) else Path(base)
    lt = read_pcap(path).linktype
    return {LT_ETHERNET: 14, LT_LINUX_SLL: 16, LT_LINUX_SLL2: 20, LT_RAW: 0}[lt]


# ---------------------------------------------------------------------------
# Independent checks of the generated files
# ---------------------------------------------------------------------------

TSHARK_FIELDS = ["frame.time_epoch", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst",
                 "tcp.srcport", "tcp.dstport", "udp.srcport", "udp.dstport",
                 "tcp.len", "udp.length"]


def tshark_summary(path: Path) -> tuple[list[tuple], str]:
    """One tuple per packet as tshark decodes it, plus tshark's stderr."""
    # -Y: tshark 4 also lists pcapng Custom Blocks as frames; keep IP only.
    cmd = ["tshark", "-n", "-r", str(path), "-Y", "ip or ipv6", "-T", "fields",
           "-E", "separator=|"]
    for f in TSHARK_FIELDS:
        cmd += ["-e", f]
    cp = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    rows = []
    for line in cp.stdout.splitlines():
        v = line.split("|")
        t = Decimal(v[0])
        rows.append((int((t * 10**6).to_integral_value(rounding="ROUND_HALF_EVEN")),
                     v[1] or v[2], v[3] or v[4], v[5] or v[7], v[6] or v[8], v[9] or v[10]))
    return rows, cp.stderr


def same_packets(rows: list[tuple], want: list[tuple], payload_too: bool = True) -> bool:
    """Compare tshark summaries; timestamps may differ by 1 us (a nsec base
    written at usec resolution is truncated, tshark rounds)."""
    if len(rows) != len(want):
        return False
    n = 6 if payload_too else 5
    return all(abs(a[0] - b[0]) <= 1 and a[1:n] == b[1:n] for a, b in zip(rows, want))


def packet_count_dpkt(path: Path) -> int:
    """Packet count read back with dpkt (pcap or single-interface pcapng)."""
    import dpkt

    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    import io
    rd = dpkt.pcap.UniversalReader(io.BytesIO(raw))
    n = 0
    try:
        for _ in rd:
            n += 1
    except (dpkt.NeedData, dpkt.UnpackError, struct.error):
        pass
    return n


def _selfcheck(outdir: Path) -> int:
    bad = 0
    for base in BASES:
        ref, _ = tshark_summary(BASES[base])
        for name, v in VARIANTS.items():
            try:
                path = make_variant(name, outdir / base, base)
            except MissingTool as e:
                print(f"{base:9} {name:30} SKIP (missing {e})")
                continue
            rows, err = tshark_summary(path)
            want = ref[:-1] if v.truncated_last else ref
            ok = same_packets(rows, want, payload_too=not v.truncated_snaplen)
            note = ""
            if not v.gz and not v.container == "pcapng" or name == "pcapng_le":
                try:
                    note = f"dpkt={packet_count_dpkt(path)}"
                except Exception as e:  # dpkt does not know every link type
                    note = f"dpkt: {type(e).__name__}"
            print(f"{base:9} {name:30} {'ok ' if ok else 'BAD'} tshark={len(rows)}/{len(want)} "
                  f"{note} {path.stat().st_size}B {err.strip().splitlines()[-1][:70] if err.strip() else ''}")
            bad += not ok
    return bad


if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/inspector-variants")
    sys.exit(1 if _selfcheck(out) else 0)
