"""Drill-down: ``Analysis.packets(uid)`` and ``Analysis.to_pcap(uid, path)``
read a flow's packets back from its capture (pcap, pcap.gz, pcapng), and
dpkt, an independent decoder, finds the same frames in the capture."""

from __future__ import annotations

import gzip
import ipaddress
import shutil
import stat
from pathlib import Path

import dpkt
import pytest
from capture_variants import BASES, make_variant
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

import inspector
from inspector.capture.reader import CaptureReader
from inspector.timeouts import Timeouts

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"


def _dpkt_frames(path: Path) -> list[tuple[int, tuple, bytes]]:
    """(ts in µs, (proto, src, sport, dst, dport), frame) of every TCP/UDP frame of an Ethernet pcap."""
    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    frames = []
    with opener(path, "rb") as handle:
        for ts, frame in dpkt.pcap.Reader(handle):
            ip = dpkt.ethernet.Ethernet(frame).data
            if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)):
                continue
            l4 = ip.data
            if isinstance(l4, (dpkt.tcp.TCP, dpkt.udp.UDP)):
                proto = "tcp" if isinstance(l4, dpkt.tcp.TCP) else "udp"
                key = (proto, str(ipaddress.ip_address(ip.src)), l4.sport, str(ipaddress.ip_address(ip.dst)), l4.dport)
                frames.append((round(ts * 1e6), key, frame))
    return frames


def _expected(frames, flow) -> list[bytes]:
    """dpkt's frames of this flow: its 5-tuple either way, within its first and last packet times."""
    ends = {(flow.proto, flow.orig_h, flow.orig_p, flow.resp_h, flow.resp_p),
            (flow.proto, flow.resp_h, flow.resp_p, flow.orig_h, flow.orig_p)}
    first = flow.ts.value // 1000
    last = (flow.ts.value + flow.duration.value) // 1000
    return [frame for ts, key, frame in frames if key in ends and first <= ts <= last]


@pytest.mark.parametrize("capture", [CAPTURES / "http-api.pcap", CAPTURES / "qemu-tls.pcap.gz", BASES["lo_mixed"]],
                         ids=["pcap", "pcap.gz", "ipv4-and-ipv6"])
def test_packets_of_each_flow_are_the_frames_dpkt_finds(capture):
    result = inspector.analyze(capture)
    frames = _dpkt_frames(capture)
    assert len(result.flows)
    for flow in result.flows.itertuples():
        packets = result.packets(flow.uid)
        assert len(packets) == flow.orig_pkts + flow.resp_pkts, flow.uid
        assert [bytes(p) for p in packets] == _expected(frames, flow), flow.uid
        assert all(isinstance(p, Ether) for p in packets)
        assert packets[0].time == pytest.approx(flow.ts.value / 1e9, abs=1e-6)


def test_flows_of_one_reused_5_tuple_get_their_own_packets():
    """A short idle timeout cuts the migration into several flows of one 5-tuple: the time spans part them."""
    capture = CAPTURES / "qemu-plain.pcap.gz"
    whole = inspector.analyze(capture)
    parts = inspector.analyze(capture, timeouts=Timeouts(idle=0.001, sweep=0.001))
    assert len(whole.flows) == 1 < len(parts.flows)
    assert parts.flows[["orig_p", "resp_p"]].drop_duplicates().shape[0] == 1
    pieces = [parts.packets(uid) for uid in parts.flows["uid"]]
    assert [len(p) for p in pieces] == (parts.flows["orig_pkts"] + parts.flows["resp_pkts"]).tolist()
    assert [bytes(p) for piece in pieces for p in piece] == [bytes(p) for p in whole.packets(whole.flows.uid[0])]


def test_pcapng_with_two_link_types(tmp_path):
    """Ethernet and raw-IP interfaces interleaved: each packet is dissected by its own interface's link type."""
    base = inspector.analyze(BASES["lo_mixed"])
    variant = inspector.analyze(make_variant("pcapng_two_interfaces", tmp_path))
    assert variant.inputs.loc[0, "format"] == "pcapng"
    assert sorted(variant.flows["uid"]) == sorted(base.flows["uid"])
    for uid in base.flows["uid"]:
        packets = variant.packets(uid)
        layers = {type(p).__name__ for p in packets}
        assert len(layers) > 1 or len(packets) == 1
        ip_layers = [bytes(p[IP] if IP in p else p[IPv6]) for p in packets]
        assert ip_layers == [bytes(p[IP] if IP in p else p[IPv6]) for p in base.packets(uid)]
    mixed = next(uid for uid in base.flows["uid"] if len(variant.packets(uid)) > 1)
    with pytest.raises(inspector.CaptureError, match="link types"):
        variant.to_pcap(mixed, tmp_path / "mixed.pcap")
    assert not (tmp_path / "mixed.pcap").exists()


@pytest.mark.parametrize("variant", ["pcapng_gz", "pcapng_be"])
def test_to_pcap_of_a_pcapng_flow_reads_back_in_dpkt_and_scapy(tmp_path, variant):
    result = inspector.analyze(make_variant(variant, tmp_path))
    for number, uid in enumerate(result.flows["uid"]):
        out = tmp_path / f"flow{number}.pcap"
        written = result.to_pcap(uid, out)
        assert written == len(result.packets(uid)) > 0
        with open(out, "rb") as handle:
            records = list(dpkt.pcap.Reader(handle))
        assert [frame for _ts, frame in records] == [bytes(p) for p in result.packets(uid)]
        assert [bytes(p) for p in rdpcap(str(out))] == [frame for _ts, frame in records]
        assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_to_pcap_keeps_every_timestamp_and_flow(tmp_path):
    result = inspector.analyze(CAPTURES / "qemu-tls.pcap.gz")
    flow = result.flows.iloc[0]
    out = tmp_path / "flow.pcap"
    out.write_bytes(b"old")
    out.chmod(0o644)
    assert result.to_pcap(flow.uid, out) == flow.orig_pkts + flow.resp_pkts
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    again = inspector.analyze(out)
    columns = ["uid", "orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes", "duration", "verdict", "protocol"]
    assert again.flows[columns].equals(result.flows[columns].iloc[[0]].reset_index(drop=True))


def test_drilldown_errors_are_clear(tmp_path):
    capture = tmp_path / "moved.pcap"
    shutil.copy(CAPTURES / "http-api.pcap", capture)
    result = inspector.analyze(capture)
    uid = result.flows.uid[0]
    with pytest.raises(inspector.ConfigError, match="no flow with uid 'Cnope'"):
        result.packets("Cnope")
    capture.unlink()
    with pytest.raises(inspector.CaptureError, match="moved.pcap: no such file"):
        result.packets(uid)
    result.export(tmp_path / "tables")
    with pytest.raises(inspector.CaptureError, match="no capture to read packets back from"):
        inspector.load(tmp_path / "tables").packets(uid)


def test_live_capture_has_no_packets_to_read_back():
    """The sensor's pipeline (a live reader on a pipe) keeps no capture: the drill-down says so."""
    from inspector.analysis import analyze_readers
    from inspector.watch import Watchlist

    with open(CAPTURES / "http-api.pcap", "rb", buffering=0) as pipe:
        reader = CaptureReader("live:lo", stream=pipe, live=True)
        result = analyze_readers([reader], watch=Watchlist.default(), names=["live:lo"])
    assert len(result.flows)
    with pytest.raises(inspector.CaptureError, match="live:lo: this analysis holds no capture"):
        result.to_pcap(result.flows.uid[0], "unused.pcap")
