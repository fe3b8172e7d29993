"""TCP stream positions from sequence numbers: gaps, retransmissions,
reordering, mid-stream starts, and the reassembled heads for detectors."""

from __future__ import annotations

import gzip
from pathlib import Path

import dpkt
import pytest

import inspector
from capture_variants import Rec, read_pcap, write_pcap
from inspector.capture.reader import CaptureReader
from inspector.flows import kernels as K
from inspector.flows.table import FlowTable

CAPTURES = Path(__file__).resolve().parents[1] / "captures"


def data_packets(path: Path) -> tuple[int, list[Rec], list[int]]:
    """Records of a real capture and the indexes of TCP segments with payload."""
    pcap = read_pcap(path)
    data = [i for i, r in enumerate(pcap.records)
            if len(dpkt.ethernet.Ethernet(r.data).data.data.data) > 0]
    return pcap.linktype, pcap.records, data


def migration_flow(path: Path):
    flows = inspector.analyze(path).flows
    return flows[flows.resp_p.between(49152, 49261)].iloc[0]


@pytest.fixture(scope="module")
def plain_mtu1500(tmp_path_factory):
    src = CAPTURES / "qemu-plain-mtu1500.pcap.gz"
    out = tmp_path_factory.mktemp("plain") / "plain.pcap"
    out.write_bytes(gzip.decompress(src.read_bytes()))
    return out


def test_a_complete_capture_misses_nothing(plain_mtu1500):
    row = migration_flow(plain_mtu1500)
    assert row.orig_missed_bytes == 0 and row.resp_missed_bytes == 0 and not row.mid_stream


def test_a_dropped_segment_is_counted_as_missed(plain_mtu1500, tmp_path):
    linktype, records, data = data_packets(plain_mtu1500)
    dropped = data[len(data) // 2]
    length = len(dpkt.ethernet.Ethernet(records[dropped].data).data.data.data)
    path = write_pcap(tmp_path / "drop.pcap", linktype, records[:dropped] + records[dropped + 1:])
    assert migration_flow(path).orig_missed_bytes == length


def test_reordered_and_retransmitted_segments_miss_nothing(plain_mtu1500, tmp_path):
    linktype, records, data = data_packets(plain_mtu1500)
    a, b = data[100], data[101]
    swapped = list(records)
    swapped[a], swapped[b] = swapped[b], swapped[a]
    retransmitted = swapped[: data[200]] + [records[data[150]]] + swapped[data[200]:]
    path = write_pcap(tmp_path / "reorder.pcap", linktype, retransmitted)
    row = migration_flow(path)
    original = migration_flow(plain_mtu1500)
    assert row.orig_missed_bytes == 0
    assert row.orig_bytes == original.orig_bytes + len(
        dpkt.ethernet.Ethernet(records[data[150]].data).data.data.data)  # wire count includes the copy
    assert row.verdict == original.verdict


def heads_of(path: Path) -> dict[int, tuple[bytes, bool]]:
    heads: dict[int, tuple[bytes, bool]] = {}

    def keep_head(slot: int, index: int, offset: int, data: bytes, at_start: bool) -> None:
        if index == 0:
            heads[slot] = (data, at_start)

    table = FlowTable(on_region=keep_head)
    for batch in CaptureReader(path):
        table.add(batch)
    table.finish()
    return heads


def test_heads_are_reassembled_from_the_stream_start(plain_mtu1500, tmp_path):
    linktype, records, data = data_packets(plain_mtu1500)
    shuffled = list(records)
    shuffled[data[0]], shuffled[data[3]] = shuffled[data[3]], shuffled[data[0]]
    path = write_pcap(tmp_path / "shuffled.pcap", linktype, shuffled)
    for capture in (plain_mtu1500, path):
        heads = [h for h in heads_of(capture).values() if h[0]]
        assert len(heads) == 1
        head, at_start = heads[0]
        assert at_start and len(head) == K.REGION_BYTES
        assert head.startswith(b"QEVM\x00\x00\x00\x03")


def test_mid_stream_capture_has_no_start():
    path = CAPTURES / "variants" / "qemu-plain-mtu1500-midflow.pcap.gz"
    heads = [h for h in heads_of(path).values() if h[0]]
    assert heads and not any(at_start for _, at_start in heads)
    assert not any(h.startswith(b"QEVM") for h, _ in heads)
    assert migration_flow(path).mid_stream
