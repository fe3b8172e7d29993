"""Every link type that carries IP, and the tunnels provider networks deliver.

This kernel has no ppp, sit, ipip, fou or mpls devices and no wireless card,
so no program here can capture these link types or tunnels: the frames are
built from the real IP packets of a shipped capture (captures/http-api.pcap,
curl and a Python HTTP server on loopback; made IPv6 by scapy where a tunnel
carries IPv6), framed as https://www.tcpdump.org/linktypes.html and the RFCs
describe. tshark, an independent decoder, must find the same TCP packets in
every file; inspector must give the same flows as for the packets captured
directly, with the tunnel in its columns. A link type that carries no IP is
read and named as an anomaly, never refused.
"""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import capture_variants as cv
import pandas as pd
import pytest

import inspector

SOURCE = Path(__file__).resolve().parents[1] / "captures" / "http-api.pcap"
TUNNEL_COLUMNS = ["tunnel", "tunnel_src", "tunnel_dst", "tunnel_id"]
OUTER = ("192.0.2.1", "192.0.2.2")
OUTER6 = ("2001:db8::a", "2001:db8::b")
MAC = bytes.fromhex("020000000001") + bytes.fromhex("020000000002")  # destination, source
RADIOTAP = bytes.fromhex("00000a00" "06000000" "00" "02")  # version, length 10, present: flags and rate (1 Mb/s)
# present: TSFT, flags (DATAPAD, FCS at end) and rate; TSFT aligned to 8 octets
RADIOTAP_DATAPAD = bytes.fromhex("00001200" "07000000" "0102030405060708" "30" "02")


ETH_802_3_MAX_IP = 1492  # an 802.3 length field counts at most 1500 octets, 8 of them LLC/SNAP


@cache
def ip_packets(version: int = 4, max_ip: int = 1 << 16) -> tuple[cv.Rec, ...]:
    """The source's packets as IP, those up to ``max_ip`` octets; version 6: the same TCP segments in
    IPv6 (2001:db8:1::1 both ends)."""
    recs = [r for r in cv.base_ip_records(SOURCE) if len(r.data) <= max_ip]
    if version == 4:
        return tuple(recs)
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    out = []
    for r in recs:
        v4 = IP(r.data)
        segment = v4.payload.copy()
        del segment.chksum
        data = bytes(IPv6(src="2001:db8:1::1", dst="2001:db8:1::1", hlim=v4.ttl) / segment)
        out.append(cv.Rec(r.ts_ns, data, len(data)))
    return tuple(out)


def ethertype(ip: bytes) -> bytes:
    return struct.pack(">H", cv.ethertype_of(ip))


def snap(ip: bytes) -> bytes:
    """IEEE 802.2 LLC with SNAP (RFC 1042)."""
    return b"\xaa\xaa\x03\x00\x00\x00" + ethertype(ip) + ip


def ppp_protocol(ip: bytes) -> bytes:
    return b"\x00\x21" if cv.ip_version(ip) == 4 else b"\x00\x57"


def dot11(ip: bytes, qos: bool = False, padded: bool = False) -> bytes:
    """An 802.11 data frame from the DS (QoS data with its control field when ``qos``; ``padded``: the
    26-octet QoS header padded to 28, as radiotap's DATAPAD flag says)."""
    control = b"\x88\x02" if qos else b"\x08\x02"
    header = control + b"\x00\x00" + bytes.fromhex("020000000001020000000002020000000003") + b"\x10\x00"
    return header + (b"\x00\x00" if qos else b"") + (b"\x00\x00" if padded else b"") + snap(ip)


def nflog(ip: bytes) -> bytes:
    """NFLOG: AF_INET header, NFULA_PACKET_HDR and NFULA_PREFIX TLVs, then NFULA_PAYLOAD (lengths little-endian)."""
    def tlv(kind: int, value: bytes) -> bytes:
        body = struct.pack("<HH", 4 + len(value), kind) + value
        return body + b"\0" * (-len(body) % 4)
    family = 2 if cv.ip_version(ip) == 4 else 10
    return bytes([family, 0, 0, 0]) + tlv(1, b"\x08\x00\x03\x00") + tlv(10, b"test\0") + tlv(9, ip)


def mpls(labels: tuple[int, ...], payload: bytes) -> bytes:
    entries = [(label << 12) | (0x100 if k == len(labels) - 1 else 0) | 64 for k, label in enumerate(labels)]
    return b"".join(struct.pack(">I", e) for e in entries) + payload


def pppoe(session: int, ip: bytes) -> bytes:
    return struct.pack(">BBHH", 0x11, 0, session, len(ip) + 2) + ppp_protocol(ip) + ip


def crc16_x25(data: bytes) -> int:
    """CRC-16/X-25 (reflected CCITT polynomial): the DOCSIS header check sequence."""
    crc = 0xFFFF
    for octet in data:
        crc ^= octet
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


def docsis(frame: bytes) -> bytes:
    """A DOCSIS packet PDU: frame control 0 (no extended header), MAC_PARM, LEN, HCS, then the Ethernet frame."""
    header = struct.pack(">BBH", 0, 0, len(frame))
    return header + struct.pack("<H", crc16_x25(header)) + frame


def prism(frame: bytes) -> bytes:
    """A Prism monitor header: message code and length, device name, ten (did, status, length, value) items."""
    items = b"".join(struct.pack("<IHHI", 0x41 | (k + 1) << 12, 0, 4, 0) for k in range(10))
    return struct.pack("<II", 0x41, 144) + b"wlan0".ljust(16, b"\0") + items + frame


# -- link types -----------------------------------------------------------------

@dataclass(frozen=True)
class Link:
    linktype: int
    frame: Callable[[bytes], bytes]
    layers: str  # what tshark's frame.protocols must hold; "" where tshark 4.0 does not read the link type
    max_ip: int = 1 << 16  # the largest IP packet the framing can hold
    decode_as: tuple[str, ...] = ()  # tshark -d options where it would guess otherwise


LINKS = {
    "ppp": Link(9, lambda ip: b"\xff\x03" + ppp_protocol(ip) + ip, "ppp:ip:tcp"),
    "ppp-compressed": Link(9, lambda ip: b"\x21" + ip, "ppp:ip:tcp"),
    "ppp-hdlc": Link(50, lambda ip: b"\xff\x03" + ppp_protocol(ip) + ip, "ppp:ip:tcp"),
    "cisco-hdlc": Link(104, lambda ip: b"\x0f\x00" + ethertype(ip) + ip, "chdlc:ip:tcp"),
    "ppp-with-direction": Link(204, lambda ip: b"\x01\xff\x03" + ppp_protocol(ip) + ip, "ppp:ip:tcp"),
    "pppoe": Link(51, lambda ip: pppoe(0x2a, ip), "pppoes:ppp:ip:tcp"),
    "fddi": Link(10, lambda ip: b"\x50" + MAC + snap(ip), "fddi:llc:ip:tcp"),
    "token-ring": Link(6, lambda ip: b"\x10\x40" + MAC + snap(ip), "tr:llc:ip:tcp"),
    "ieee802-11": Link(105, dot11, "wlan:llc:ip:tcp"),
    "radiotap-qos": Link(127, lambda ip: RADIOTAP + dot11(ip, qos=True), "radiotap:wlan_radio:wlan:llc:ip:tcp"),
    "radiotap-datapad-fcs": Link(127, lambda ip: RADIOTAP_DATAPAD + dot11(ip, qos=True, padded=True) + bytes(4),
                                 "radiotap:wlan_radio:wlan:llc:ip:tcp"),
    "ppi": Link(192, lambda ip: struct.pack("<BBHI", 0, 0, 8, 105) + dot11(ip), "ppi:wlan_radio:wlan:llc:ip:tcp"),
    "prism": Link(119, lambda ip: prism(dot11(ip)), "prism:wlan_radio:wlan:llc:ip:tcp"),
    "avs": Link(163, lambda ip: struct.pack(">II", 0x80211001, 64) + bytes(56) + dot11(ip), "wlancap:wlan_radio:wlan:llc:ip:tcp"),
    "nflog": Link(239, nflog, "nflog:ip:tcp"),
    "atm-rfc1483": Link(100, snap, "llc:ip:tcp"),
    "frame-relay": Link(107, lambda ip: b"\x18\x41\x03\xcc" + ip, "fr:ip:tcp"),
    "mpls": Link(219, lambda ip: mpls((16, 17), ip), ""),
    "enc": Link(109, lambda ip: struct.pack("<I", 2) + struct.pack(">II", 0x1000, 0) + ip, "enc:ip:tcp"),
    "ipoib": Link(242, lambda ip: bytes(40) + ethertype(ip) + b"\0\0" + ip, "ipoib:ip:tcp"),
    "ieee1394": Link(138, lambda ip: bytes(16) + ethertype(ip) + ip, "ap1394:ip:tcp"),
    "docsis": Link(143, lambda ip: docsis(MAC + ethertype(ip) + ip), "docsis:eth:ethertype:ip:tcp"),
    "ipnet": Link(226, lambda ip: struct.pack(">BBHIIIII", 1, 2, 0, len(ip), 1, 0, 0, 0) + ip, "ipnet:ip:tcp"),
    "ethernet-llc-snap": Link(1, lambda ip: MAC + struct.pack(">H", 8 + len(ip)) + snap(ip), "eth:llc:ip:tcp",
                              ETH_802_3_MAX_IP),
    "ethernet-mpls": Link(1, lambda ip: MAC + b"\x88\x47" + mpls((100,), ip), "eth:ethertype:mpls:ip:tcp"),
    "ethernet-mpls-pseudowire": Link(
        1, lambda ip: MAC + b"\x88\x47" + mpls((100, 200), bytes(4) + MAC + ethertype(ip) + ip),
        "mpls:eth:ethertype:ip:tcp", decode_as=("mpls.label==200,pwethcw",)),
    "ethernet-pppoe": Link(1, lambda ip: MAC + b"\x88\x64" + pppoe(7, ip), "eth:ethertype:pppoes:ppp:ip:tcp"),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("links")


def capture(directory: Path, name: str, linktype: int, frame: Callable[[bytes], bytes], version: int = 4,
            max_ip: int = 1 << 16) -> Path:
    path = directory / f"{name}-v{version}.pcap"
    if not path.exists():
        recs = [cv.Rec(r.ts_ns, d, len(d)) for r in ip_packets(version, max_ip) for d in [frame(r.data)]]
        cv.write_pcap(path, linktype, recs)
    return path


@cache
def direct(version: int = 4, max_ip: int = 1 << 16) -> inspector.Analysis:
    """The packets captured directly (raw IP, link type 101)."""
    path = Path(__file__).parent / f".direct-v{version}-{max_ip}.pcap"
    cv.write_pcap(path, cv.LT_RAW, ip_packets(version, max_ip))
    try:
        return inspector.analyze(path)
    finally:
        path.unlink()


def assert_same_flows(got: inspector.Analysis, want: inspector.Analysis) -> None:
    ignore = TUNNEL_COLUMNS + ["vlan", "input"]
    pd.testing.assert_frame_equal(got.flows.drop(columns=ignore), want.flows.drop(columns=ignore))
    for table in ("windows", "evidence"):
        pd.testing.assert_frame_equal(getattr(got, table), getattr(want, table), obj=table)


def tshark_rows(path: Path, *fields: str, decode_as: tuple[str, ...] = ()) -> list[dict[str, str]]:
    cmd = ["tshark", "-n", "-r", str(path), "-T", "fields", "-E", "separator=|"]
    for rule in decode_as:
        cmd += ["-d", rule]
    for name in fields:
        cmd += ["-e", name]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    return [dict(zip(fields, line.split("|"), strict=True)) for line in done.stdout.splitlines()]


needs_tshark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
SEGMENT_FIELDS = ("tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.len")


@cache
def source_segments(version: int = 4, max_ip: int = 1 << 16) -> list[dict[str, str]]:
    path = Path(__file__).parent / f".segments-v{version}-{max_ip}.pcap"
    cv.write_pcap(path, cv.LT_RAW, ip_packets(version, max_ip))
    try:
        return tshark_rows(path, *SEGMENT_FIELDS)
    finally:
        path.unlink()


@pytest.mark.parametrize("name", LINKS)
def test_link_type_gives_the_flows_captured_directly(name, built):
    link = LINKS[name]
    got = inspector.analyze(capture(built, name, link.linktype, link.frame, max_ip=link.max_ip))
    assert_same_flows(got, direct(max_ip=link.max_ip))
    assert got.anomalies.empty, got.anomalies
    assert len(got.flows) == 3 and set(got.flows.protocol) == {"http"}


@pytest.mark.slow
@needs_tshark
@pytest.mark.parametrize("name", LINKS)
def test_link_type_framing_is_what_tshark_reads(name, built):
    link = LINKS[name]
    if not link.layers:
        pytest.skip(f"tshark 4.0 does not read link type {link.linktype}")
    rows = tshark_rows(capture(built, name, link.linktype, link.frame, max_ip=link.max_ip), "frame.protocols",
                       "_ws.malformed", *SEGMENT_FIELDS, decode_as=link.decode_as)
    assert [{k: r[k] for k in SEGMENT_FIELDS} for r in rows] == source_segments(max_ip=link.max_ip)
    for row in rows:
        assert link.layers in row["frame.protocols"] and not row["_ws.malformed"], row


@pytest.mark.parametrize("name", ["ppp", "nflog", "pppoe", "mpls", "radiotap-qos"])
def test_link_type_carrying_ipv6(name, built):
    link = LINKS[name]
    got = inspector.analyze(capture(built, name, link.linktype, link.frame, version=6))
    assert_same_flows(got, direct(6))
    assert set(got.flows.orig_h) == {"2001:db8:1::1"}


# -- tunnels ----------------------------------------------------------------------

def ayiya(ip: bytes) -> bytes:
    """AYIYA forward: 16-octet identity (IdLen 4), 20-octet SHA-1 signature (SigLen 5), epoch, then IPv6."""
    return bytes([0x42, 0x52, 0x11, 41]) + struct.pack(">I", 1700000000) + bytes(16) + bytes(20) + ip


def gtpu(teid: int, ip: bytes, extension: bool = False) -> bytes:
    """A G-PDU; with ``extension`` the optional fields and a PDU session container (3GPP TS 38.415)."""
    if not extension:
        return struct.pack(">BBHI", 0x30, 0xFF, len(ip), teid) + ip
    optional = struct.pack(">HBB", 0, 0, 0x85) + bytes([1, 0x10, 0x09, 0])
    return struct.pack(">BBHI", 0x34, 0xFF, len(optional) + len(ip), teid) + optional + ip


def teredo(ip: bytes) -> bytes:
    """A Teredo packet with an origin indication before the IPv6 packet."""
    return struct.pack(">HH4s", 0, 0x1234 ^ 0xFFFF, bytes(b ^ 0xFF for b in bytes([198, 51, 100, 7]))) + ip


def eth_ip(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    outer = cv.outer_ip(src, dst, proto, payload)
    return MAC + ethertype(outer) + outer


def eth_udp(src: str, dst: str, dport: int, payload: bytes, sport: int = 49152) -> bytes:
    outer = cv.outer_udp(src, dst, dport, payload, sport)
    return MAC + ethertype(outer) + outer


@dataclass(frozen=True)
class Tunnel:
    version: int  # of the inner packets
    frame: Callable[[bytes], bytes]  # Ethernet frame on the wire
    kind: str
    outer: tuple[str, str]
    tunnel_id: int | None
    layers: str


TUNNELS = {
    "ipip": Tunnel(4, lambda ip: eth_ip(*OUTER, 4, ip), "ipip", OUTER, None, "ip:ip:tcp"),
    "4in6": Tunnel(4, lambda ip: eth_ip(*OUTER6, 4, ip), "ipip", OUTER6, None, "ipv6:ip:tcp"),
    "6in4": Tunnel(6, lambda ip: eth_ip(*OUTER, 41, ip), "6in4", OUTER, None, "ip:ipv6:tcp"),
    "6in6": Tunnel(6, lambda ip: eth_ip(*OUTER6, 41, ip), "6in4", OUTER6, None, "ipv6:ipv6:tcp"),
    "teredo": Tunnel(6, lambda ip: eth_udp(*OUTER, 3544, teredo(ip)), "teredo", OUTER, None,
                     "udp:teredo:ipv6:tcp"),
    "ayiya": Tunnel(6, lambda ip: eth_udp(*OUTER, 5072, ayiya(ip), sport=5072), "ayiya", OUTER, None,
                    "udp:ayiya:ipv6:tcp"),
    "gtp-u": Tunnel(4, lambda ip: eth_udp(*OUTER, 2152, gtpu(0x1001, ip), sport=2152), "gtp-u", OUTER, 0x1001,
                    "udp:gtp:ip:tcp"),
    "gtp-u-extension": Tunnel(6, lambda ip: eth_udp(*OUTER, 2152, gtpu(7, ip, True), sport=2152), "gtp-u", OUTER,
                              7, "udp:gtp:ipv6:tcp"),
    "gre-udp": Tunnel(4, lambda ip: eth_udp(*OUTER, 4754, cv.gre(ip, 0x0800, key=9)), "gre-udp", OUTER, 9,
                      "udp:gre:ip:tcp"),
    "mpls-udp": Tunnel(4, lambda ip: eth_udp(*OUTER, 6635, mpls((300,), ip)), "mpls", OUTER, 300,
                       "udp:mpls:ip:tcp"),
    "mpls-in-gre": Tunnel(6, lambda ip: eth_ip(*OUTER, 47, cv.gre(mpls((301, 302), ip), 0x8847)), "gre", OUTER,
                          None, "gre:mpls:ipv6:tcp"),
    "pppoe-then-ipip": Tunnel(4, lambda ip: MAC + b"\x88\x64" + pppoe(5, cv.outer_ip(*OUTER, 4, ip)), "pppoe",
                              ("", ""), 5, "pppoes:ppp:ip:ip:tcp"),
}


@pytest.mark.parametrize("name", TUNNELS)
def test_tunnelled_flows_are_analysed_as_if_captured_directly(name, built):
    tunnel = TUNNELS[name]
    got = inspector.analyze(capture(built, name, cv.LT_ETHERNET, tunnel.frame, tunnel.version))
    assert_same_flows(got, direct(tunnel.version))
    assert got.anomalies.empty, got.anomalies
    for flow in got.flows.itertuples():
        assert (flow.tunnel, flow.tunnel_src, flow.tunnel_dst) == (tunnel.kind, *tunnel.outer)
        assert (None if pd.isna(flow.tunnel_id) else int(flow.tunnel_id)) == tunnel.tunnel_id


@pytest.mark.slow
@needs_tshark
@pytest.mark.parametrize("name", TUNNELS)
def test_tunnel_framing_is_what_tshark_reads(name, built):
    tunnel = TUNNELS[name]
    path = capture(built, name, cv.LT_ETHERNET, tunnel.frame, tunnel.version)
    rows = tshark_rows(path, "frame.protocols", "_ws.malformed", *SEGMENT_FIELDS)
    assert [{k: r[k] for k in SEGMENT_FIELDS} for r in rows] == source_segments(tunnel.version)
    for row in rows:
        assert tunnel.layers in row["frame.protocols"] and not row["_ws.malformed"], row


def test_look_alikes_on_new_tunnel_ports_stay_ordinary_udp(tmp_path):
    """UDP on the Teredo, AYIYA and GTP-U ports that is not their framing is a UDP flow, not a tunnel."""
    junk = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    frames = [eth_udp(*OUTER, port, junk) for port in (3544, 5072, 2152, 4754)]
    path = cv.write_pcap(tmp_path / "lookalike.pcap", cv.LT_ETHERNET, [cv.Rec(10**18 + k, f, len(f))
                                                                        for k, f in enumerate(frames)])
    flows = inspector.analyze(path).flows
    ports = {int(p) for p in flows.orig_p} | {int(p) for p in flows.resp_p}
    assert len(flows) == 4 and {2152, 3544, 4754, 5072} <= ports and set(flows.tunnel) == {""}


@pytest.mark.parametrize("seed", range(3))
def test_mutated_frames_of_every_link_type_and_tunnel_never_crash(seed, tmp_path):
    """The kernels run without bounds checks: damaged link-layer and tunnel headers must stay inside the record."""
    rng = random.Random(seed)
    cases = [(link.linktype, link.frame, 4) for link in LINKS.values()]
    cases += [(cv.LT_ETHERNET, tunnel.frame, tunnel.version) for tunnel in TUNNELS.values()]
    for linktype, frame, version in cases:
        records = []
        for rec in ip_packets(version):
            data = bytearray(frame(rec.data))
            for _ in range(rng.randint(1, 6)):
                data[rng.randrange(min(len(data), 120))] = rng.randrange(256)
            if rng.random() < 0.2:
                data = data[: rng.randrange(len(data) + 1)]
            records.append(cv.Rec(rec.ts_ns, bytes(data), rng.choice([len(data), rng.randrange(70000)])))
        path = cv.write_pcap(tmp_path / "mutated.pcap", linktype, records)
        assert inspector.analyze(path).inputs["packets"].iloc[0] == len(records)


# -- link types without IP ------------------------------------------------------------

def can_frames() -> list[cv.Rec]:
    """SocketCAN frames (ID, length, padding, 8 data octets)."""
    frame = struct.pack(">IB3x", 0x123, 8) + bytes(range(8))
    return [cv.Rec(10**18 + k * 10**6, frame, len(frame)) for k in range(5)]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inspector", *args], capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize(("linktype", "kind", "name"), [(227, "link-type-without-ip", "SocketCAN"),
                                                       (189, "link-type-without-ip", "USB (Linux)"),
                                                       (147, "unsupported-link-type", "")])
def test_file_of_a_link_type_without_ip_is_read_not_refused(linktype, kind, name, tmp_path):
    path = cv.write_pcap(tmp_path / f"lt{linktype}.pcap", linktype, can_frames())
    result = inspector.analyze(path)
    assert result.flows.empty
    row = result.anomalies.set_index("kind").loc[kind]
    assert int(row["count"]) == 5 and f"link type {linktype}" in row.detail and name in row.detail
    done = run_cli("analyze", str(path))
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert kind in done.stdout


def test_pcapng_with_ethernet_and_can_interfaces(tmp_path):
    """The Ethernet interface is analysed as on its own; the CAN one is counted and named."""
    writer = cv.PcapngWriter()
    writer.shb()
    writer.idb(cv.LT_ETHERNET)
    writer.idb(227)
    can = can_frames()
    for k, rec in enumerate(cv.read_pcap(SOURCE).records):
        writer.epb(0, rec)
        if k < len(can):
            writer.epb(1, cv.Rec(rec.ts_ns, can[k].data, can[k].wirelen))
    path = tmp_path / "ethernet-and-can.pcapng"
    path.write_bytes(writer.getvalue())
    result = inspector.analyze(path)
    assert_same_flows(result, direct())
    row = result.anomalies.set_index("kind").loc["link-type-without-ip"]
    assert int(row["count"]) == len(can) and "interface 1" in row.detail
