"""Tunnels a mirror port delivers: real migrations wrapped in VXLAN, GENEVE,
GRE and ERSPAN give the inner flows exactly as captured directly (verdicts,
protocols, bytes, windows, evidence, migration events), plus the tunnel
columns.

The wrapping (tests/capture_variants.py) is checked apart from inspector:
tshark must see the tunnel, its id and the inner TCP ports in every packet,
with no malformed packet and no bad checksum.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import capture_variants as cv
import pandas as pd
import pytest

import inspector

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
SOURCES = {"plain": CAPTURES / "qemu-plain-mtu1500.pcap.gz", "tls": CAPTURES / "qemu-tls-mtu1500.pcap.gz"}
INNER_PORTS = {"plain": {"54588", "49164"}, "tls": {"58434", "49165"}}
TUNNEL_COLUMNS = ["tunnel", "tunnel_src", "tunnel_dst", "tunnel_id"]
MIRROR = ("192.0.2.100", "192.0.2.200")  # an ERSPAN source switch and its collector
VLAN_TAG = ((cv.ETH_8021Q, 100),)


def hosts(frame: bytes, ipv6: bool = False) -> tuple[str, str]:
    """Tunnel endpoints standing for the inner hosts: 10.47.0.x -> 192.0.2.x (or 2001:db8::x).

    The source captures hold untagged Ethernet/IPv4 frames: the inner
    addresses end at octets 29 and 33.
    """
    prefix = "2001:db8::" if ipv6 else "192.0.2."
    return f"{prefix}{frame[29]}", f"{prefix}{frame[33]}"


def in_vxlan(frame: bytes, vni: int = 5001, ipv6: bool = False, tags: tuple[tuple[int, int], ...] = ()) -> bytes:
    """The frame in VXLAN between its hosts' tunnel endpoints; ``tags`` are added to the frame inside."""
    carried = cv.eth(frame[14:], tags) if tags else frame
    return cv.eth(cv.outer_udp(*hosts(frame, ipv6), cv.UDP_PORT_VXLAN, cv.vxlan(carried, vni)))


def in_gre(outer: tuple[str, str], gre: bytes) -> bytes:
    return cv.eth(cv.outer_ip(*outer, cv.IPPROTO_GRE, gre))


def in_erspan3(frame: bytes, seq: int, session: int = 300, platform_port: int | None = None) -> bytes:
    return in_gre(MIRROR, cv.gre(cv.erspan3(frame, session, seq, platform_port), cv.ETH_ERSPAN_3, seq=seq))


@dataclass(frozen=True)
class Tunnel:
    wrap: Callable[[bytes, int], bytes]  # (inner Ethernet frame, packet number) -> the frame on the wire
    kind: str  # flows.tunnel
    outer: tuple[str, str]  # flows.tunnel_src/dst: the outer addresses of the first packet (the SYN)
    tunnel_id: int | None
    layers: str  # what tshark's frame.protocols must hold
    id_field: str = ""  # the tshark field of the tunnel id
    vlan: int | None = None


GENEVE_OPTION = cv.geneve_option(0x0102, 0x80, b"\x00\x00\x00\x2a")
TUNNELS = {
    "vxlan": Tunnel(lambda f, i: in_vxlan(f), "vxlan", ("192.0.2.1", "192.0.2.2"), 5001,
                    "ip:udp:vxlan:eth:ethertype:ip:tcp", "vxlan.vni"),
    "vxlan-over-ipv6": Tunnel(lambda f, i: in_vxlan(f, ipv6=True), "vxlan", ("2001:db8::1", "2001:db8::2"), 5001,
                              "ipv6:udp:vxlan:eth:ethertype:ip:tcp", "vxlan.vni"),
    "geneve-option": Tunnel(
        lambda f, i: cv.eth(cv.outer_udp(*hosts(f), cv.UDP_PORT_GENEVE, cv.geneve(f, 7001, options=GENEVE_OPTION))),
        "geneve", ("192.0.2.1", "192.0.2.2"), 7001, "udp:geneve:eth:ethertype:ip:tcp", "geneve.vni"),
    "geneve-ip": Tunnel(
        lambda f, i: cv.eth(cv.outer_udp(*hosts(f), cv.UDP_PORT_GENEVE, cv.geneve(f[14:], 7002, cv.ETH_IPV4))),
        "geneve", ("192.0.2.1", "192.0.2.2"), 7002, "udp:geneve:ip:tcp", "geneve.vni"),
    "gre-ip": Tunnel(lambda f, i: in_gre(hosts(f), cv.gre(f[14:], cv.ETH_IPV4)),
                     "gre", ("192.0.2.1", "192.0.2.2"), None, "ip:gre:ip:tcp"),
    "gre-key-seq": Tunnel(lambda f, i: in_gre(hosts(f), cv.gre(f[14:], cv.ETH_IPV4, key=0x1234, seq=i)),
                          "gre", ("192.0.2.1", "192.0.2.2"), 0x1234, "ip:gre:ip:tcp", "gre.key"),
    "gre-ethernet-checksum": Tunnel(lambda f, i: in_gre(hosts(f), cv.gre(f, cv.ETH_TEB, key=77, checksum=True)),
                                    "gre", ("192.0.2.1", "192.0.2.2"), 77, "ip:gre:eth:ethertype:ip:tcp", "gre.key"),
    "erspan1": Tunnel(lambda f, i: in_gre(MIRROR, cv.gre(f, cv.ETH_ERSPAN_2)),
                      "erspan1", MIRROR, None, "ip:gre:erspan:eth:ethertype:ip:tcp"),
    "erspan2": Tunnel(lambda f, i: in_gre(MIRROR, cv.gre(cv.erspan2(f, 42, i), cv.ETH_ERSPAN_2, seq=i)),
                      "erspan2", MIRROR, 42, "ip:gre:erspan:eth:ethertype:ip:tcp", "erspan.spanid"),
    "erspan3": Tunnel(lambda f, i: in_erspan3(f, i), "erspan3", MIRROR, 300,
                      "ip:gre:erspan:eth:ethertype:ip:tcp", "erspan.spanid"),
    "erspan3-subheader": Tunnel(lambda f, i: in_erspan3(f, i, 301, platform_port=5), "erspan3", MIRROR, 301,
                                "ip:gre:erspan:eth:ethertype:ip:tcp", "erspan.spanid"),
    "vlan-in-vxlan": Tunnel(lambda f, i: in_vxlan(f, tags=VLAN_TAG), "vxlan", ("192.0.2.1", "192.0.2.2"),
                            5001, "udp:vxlan:eth:ethertype:vlan:ethertype:ip:tcp", "vxlan.vni", vlan=100),
    "vxlan-in-vlan": Tunnel(lambda f, i: cv.eth(in_vxlan(f)[14:], ((cv.ETH_8021Q, 200),)), "vxlan",
                            ("192.0.2.1", "192.0.2.2"), 5001, "eth:ethertype:vlan:ethertype:ip:udp:vxlan:eth",
                            "vxlan.vni", vlan=200),
    "vxlan-in-erspan3": Tunnel(lambda f, i: in_erspan3(in_vxlan(f), i), "erspan3", MIRROR, 300,
                               "gre:erspan:eth:ethertype:ip:udp:vxlan:eth:ethertype:ip:tcp", "erspan.spanid"),
}


@cache
def records(source: str) -> tuple[cv.Rec, ...]:
    return tuple(cv.read_pcap(SOURCES[source]).records)


def wrapped(recs: tuple[cv.Rec, ...], wrap: Callable[[bytes, int], bytes]) -> list[cv.Rec]:
    return [cv.Rec(r.ts_ns, d, len(d)) for i, r in enumerate(recs) for d in [wrap(r.data, i)]]


@pytest.fixture(scope="module")
def tunnel_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tunnels")


def tunnel_capture(directory: Path, source: str, name: str) -> Path:
    path = directory / f"{source}-{name}.pcap"
    if not path.exists():
        cv.write_pcap(path, cv.LT_ETHERNET, wrapped(records(source), TUNNELS[name].wrap))
    return path


@cache
def direct(source: str) -> inspector.Analysis:
    return inspector.analyze(SOURCES[source])


def assert_analysed_as_inner(got: inspector.Analysis, want: inspector.Analysis) -> None:
    """Everything but the tunnel, VLAN and input columns equals the direct capture's analysis."""
    ignore = TUNNEL_COLUMNS + ["vlan", "input"]
    pd.testing.assert_frame_equal(got.flows.drop(columns=ignore), want.flows.drop(columns=ignore))
    for table in ("windows", "evidence", "events", "findings"):
        pd.testing.assert_frame_equal(getattr(got, table), getattr(want, table), obj=table)


def tshark_rows(path: Path, *fields: str) -> list[list[str]]:
    cmd = ["tshark", "-n", "-r", str(path), "-o", "ip.check_checksum:TRUE", "-o", "udp.check_checksum:TRUE",
           "-T", "fields", "-E", "separator=|"]
    for name in fields:
        cmd += ["-e", name]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)
    return [line.split("|") for line in done.stdout.splitlines()]


needs_tshark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")]


# -- real traffic in every tunnel ---------------------------------------------

@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("name", TUNNELS)
def test_tunnelled_migration_is_analysed_as_if_captured_directly(name, source, tunnel_dir):
    tunnel = TUNNELS[name]
    got = inspector.analyze(tunnel_capture(tunnel_dir, source, name))
    assert_analysed_as_inner(got, direct(source))
    assert got.anomalies.empty, got.anomalies
    flow = got.flows.iloc[0]
    assert len(got.flows) == 1 and flow.verdict == ("plaintext" if source == "plain" else "encrypted")
    assert (flow.tunnel, flow.tunnel_src, flow.tunnel_dst) == (tunnel.kind, *tunnel.outer)
    assert (None if pd.isna(flow.tunnel_id) else int(flow.tunnel_id)) == tunnel.tunnel_id
    assert (None if pd.isna(flow.vlan) else int(flow.vlan)) == tunnel.vlan


@needs_tshark[0]
@needs_tshark[1]
@pytest.mark.parametrize("name", TUNNELS)
def test_wrapping_is_well_formed_for_tshark(name, tunnel_dir):
    tunnel = TUNNELS[name]
    path = tunnel_capture(tunnel_dir, "plain", name)
    checksums = ["ip.checksum.status", "udp.checksum.status", "gre.checksum.status"]
    fields = ["frame.protocols", "tcp.srcport", "tcp.dstport", "_ws.malformed", *checksums]
    fields += [tunnel.id_field] if tunnel.id_field else []
    rows = [dict(zip(fields, row)) for row in tshark_rows(path, *fields)]
    assert len(rows) == len(records("plain"))
    for row in rows:
        assert tunnel.layers in row["frame.protocols"], row
        assert {row["tcp.srcport"], row["tcp.dstport"]} == INNER_PORTS["plain"], row
        assert not row["_ws.malformed"], row
        assert "0" not in ",".join(row[c] for c in checksums).split(","), row  # 0 bad, 1 good, 2 unchecked
        if tunnel.id_field:
            assert int(row[tunnel.id_field], 0) == tunnel.tunnel_id, row


@needs_tshark[0]
@needs_tshark[1]
@pytest.mark.parametrize("variant", [v for v in json.loads((CAPTURES / "manifest.json").read_text())["variants"]
                                     if v["kind"] == "tunnel"], ids=lambda v: v["name"])
def test_derived_tunnel_variants(variant):
    """The tunnelled variants in captures/variants: well-formed, and their tunnel in the flows."""
    path = CAPTURES / variant["file"]
    layers = {"vxlan": "ip:udp:vxlan:eth:ethertype:ip:tcp", "erspan3": "ip:gre:erspan:eth:ethertype:ip:tcp"}
    transform = variant["transform"]
    rows = tshark_rows(path, "frame.protocols", "_ws.malformed")
    assert rows and all(layers[transform["tunnel"]] in p and not bad for p, bad in rows)
    flows = inspector.analyze(path).flows
    assert flows[TUNNEL_COLUMNS].astype(object).values.tolist() == [
        [transform["tunnel"], transform["tunnel_src"], transform["tunnel_dst"], transform["tunnel_id"]]]


# -- nesting, damage and look-alikes ------------------------------------------

def nested_vxlan(frame: bytes, depth: int) -> bytes:
    """``depth`` VXLAN tunnels, the outermost between 198.51.100.x hosts with VNI 9000."""
    outermost = (f"198.51.100.{frame[29]}", f"198.51.100.{frame[33]}")
    for level in range(depth - 1):
        frame = in_vxlan(frame, vni=5000 + level)
    return cv.eth(cv.outer_udp(*outermost, cv.UDP_PORT_VXLAN, cv.vxlan(frame, 9000)))


def test_nesting_is_followed_to_the_bound_and_no_deeper(tmp_path):
    head = records("plain")[:60]
    plain = inspector.analyze(cv.write_pcap(tmp_path / "direct.pcap", cv.LT_ETHERNET, head))
    four = inspector.analyze(cv.write_pcap(tmp_path / "four.pcap", cv.LT_ETHERNET,
                                           wrapped(head, lambda f, i: nested_vxlan(f, 4))))
    assert_analysed_as_inner(four, plain)
    assert four.flows[TUNNEL_COLUMNS].astype(object).values.tolist() == [["vxlan", "198.51.100.1",
                                                                          "198.51.100.2", 9000]]
    five = inspector.analyze(cv.write_pcap(tmp_path / "five.pcap", cv.LT_ETHERNET,
                                           wrapped(head, lambda f, i: nested_vxlan(f, 5))))
    assert five.flows.empty
    assert five.anomalies[["kind", "count"]].values.tolist() == [["malformed-tunnel-header", len(head)]]


def damaged_tunnels(frames: list[bytes], ts_ns: int) -> list[cv.Rec]:
    """One packet per way a recognised tunnel header can be impossible, plus one cut by a snaplen."""
    syn, data = frames[0], frames[5]
    geneve_options_past_end = bytearray(cv.geneve(syn, 1))
    geneve_options_past_end[0] = 63  # 252 bytes of options, more than the packet holds
    erspan_version_3 = bytearray(cv.erspan2(data, 42))
    erspan_version_3[0] = 0x30
    packets = [
        cv.eth(cv.outer_udp(*hosts(syn), cv.UDP_PORT_GENEVE, bytes(geneve_options_past_end))),
        in_gre(MIRROR, cv.gre(bytes(erspan_version_3), cv.ETH_ERSPAN_2, seq=1)),  # no ERSPAN version 3
        in_gre(MIRROR, cv.gre(b"", cv.ETH_TEB, key=1, seq=2)[:10]),  # key and sequence cut off
        in_gre(MIRROR, cv.gre(cv.erspan3(b"", 7, platform_port=1)[:16], cv.ETH_ERSPAN_3, seq=3)),  # O, no subheader
        cv.eth(cv.outer_udp(*hosts(data), cv.UDP_PORT_VXLAN, cv.vxlan(data[:6], 1))),  # no whole Ethernet header
    ]
    cut = in_vxlan(data)
    return [cv.Rec(ts_ns, p, len(p)) for p in packets] + [cv.Rec(ts_ns, cut[:60], len(cut))]


def test_malformed_tunnel_headers_are_anomalies(tmp_path):
    recs = wrapped(records("plain"), lambda f, i: in_vxlan(f))
    damaged = damaged_tunnels([r.data for r in records("plain")], recs[100].ts_ns)
    got = inspector.analyze(cv.write_pcap(tmp_path / "damaged.pcap", cv.LT_ETHERNET,
                                          recs[:100] + damaged + recs[100:]))
    assert_analysed_as_inner(got, direct("plain"))
    counts = dict(got.anomalies[["kind", "count"]].values.tolist())
    assert counts == {"malformed-tunnel-header": len(damaged) - 1, "headers-cut-by-snaplen": 1}
    assert int(got.inputs["packets"].iloc[0]) == len(recs) + len(damaged)


def test_look_alikes_on_tunnel_ports_stay_ordinary_flows(tmp_path):
    """UDP to 4789/6081 that is not VXLAN/GENEVE, and GRE carrying what is not
    decoded, are flows of their own, not anomalies."""
    peers = ("192.0.2.7", "192.0.2.8")
    udp = [  # (source port, destination port, payload)
        (40000, cv.UDP_PORT_VXLAN, b"\x00 no I flag: not VXLAN"),
        (40001, cv.UDP_PORT_VXLAN, b"\x08\x00\x00"),  # shorter than a VXLAN header
        (40002, cv.UDP_PORT_GENEVE, bytes([0x40]) + bytes(15)),  # GENEVE version 1
    ]
    gre = [cv.gre(bytes(20), 0x880B),  # PPP: not decoded
           bytes.fromhex("3001") + cv.gre(bytes(20), cv.ETH_IPV4)[2:]]  # PPTP's version 1 GRE
    frames = [cv.eth(cv.outer_udp(*peers, dport, payload, sport=sport)) for sport, dport, payload in udp]
    frames += [cv.eth(cv.outer_ip(*peers, cv.IPPROTO_GRE, g)) for g in gre]
    got = inspector.analyze(cv.write_pcap(tmp_path / "alike.pcap", cv.LT_ETHERNET,
                                          [cv.Rec(10**18 + i, f, len(f)) for i, f in enumerate(frames)]))
    assert got.anomalies.empty, got.anomalies
    flows = got.flows.sort_values(["proto", "orig_p"])
    assert flows[["proto", "orig_p", "resp_p", "orig_pkts", "orig_bytes", "tunnel"]].values.tolist() == [
        ["gre", 0, 0, 2, 48, ""],
        *[["udp", sport, dport, 1, len(payload), ""] for sport, dport, payload in udp],
    ]
    assert flows.tunnel_id.isna().all() and (flows.tunnel_src == "").all()


@pytest.mark.parametrize("name", ["vxlan", "geneve-option", "gre-key-seq", "erspan2", "erspan3-subheader",
                                  "vxlan-in-erspan3"])
def test_mutated_tunnel_headers_never_crash(name, tmp_path):
    """The decode kernels run without bounds checks: damage in the tunnel and
    inner headers must analyse, never read past a record."""
    rng = random.Random(name)
    base = wrapped(records("plain")[:300], TUNNELS[name].wrap)
    for _ in range(4):
        recs = []
        for rec in base:
            data = bytearray(rec.data)
            for _ in range(rng.randint(0, 4)):
                data[rng.randrange(min(len(data), 130))] = rng.randrange(256)
            if rng.random() < 0.1:
                data = data[: rng.randrange(len(data) + 1)]
            recs.append(cv.Rec(rec.ts_ns, bytes(data), rng.choice([rec.wirelen, len(data), rng.randrange(70000)])))
        result = inspector.analyze(cv.write_pcap(tmp_path / "m.pcap", cv.LT_ETHERNET, recs))
        assert int(result.inputs["packets"].iloc[0]) == len(recs)
