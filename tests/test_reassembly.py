"""TCP stream positions from sequence numbers: gaps, retransmissions,
reordering, mid-stream starts, and the reassembled heads for detectors."""

from __future__ import annotations

import gzip
from pathlib import Path

import dpkt
import pytest

import inspector
from inspector.classify.evidence import DetectionCollector
from inspector.protocols.qemu import MULTIFD_HEAD
from capture_variants import Rec, read_pcap, write_pcap
from inspector.capture.reader import CaptureReader
from inspector.flows import kernels as K
from inspector.flows.frame import originator_is_a_one
from inspector.flows.table import FlowTable, Region
from inspector.watch import Watchlist

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
    return {slot: (r.data, r.at_start) for slot, r in regions_of(path).items()}


def regions_of(path: Path) -> dict[int, Region]:
    """The head region of every direction of every flow in a capture."""
    heads: dict[int, Region] = {}

    def keep_heads(regions: list[Region]) -> None:
        heads.update((region.slot, region) for region in regions if region.index == 0)

    table = FlowTable(on_regions=keep_heads)
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


def test_segment_starts_beyond_a_hole_come_as_islands():
    """Snaplen 256 keeps ~190 bytes of each 64 KiB segment: the head is the
    first 254 bytes, and the multifd packet header that starts the next
    segment arrives as an island at its true stream offset."""
    path = CAPTURES / "variants" / "qemu-multifd-zstd-snap256.pcap.gz"
    multifd = [r for r in regions_of(path).values() if r.data.startswith(MULTIFD_HEAD)]
    assert len(multifd) == 2
    for region in multifd:
        assert len(region.data) < 300 and region.at_start
        offset, island = region.islands[0]
        assert offset > len(region.data) and island.startswith(MULTIFD_HEAD)
        assert all(a[0] + len(a[1]) < b[0] for a, b in zip(region.islands, region.islands[1:]))


def test_islands_add_detail_but_never_name_a_protocol():
    """Next to a proof of the same protocol an island adds its fields; an
    island alone (nothing proven by contiguous bytes) names nothing."""
    path = CAPTURES / "variants" / "qemu-multifd-zstd-snap256.pcap.gz"
    region = next(r for r in regions_of(path).values() if r.data.startswith(MULTIFD_HEAD))
    flow, island_at = region.slot // 2, region.islands[0][0]

    def collect(head: Region) -> list:
        collector = DetectionCollector(lambda _flow: region.slot % 2 == 0)
        collector.on_region(head)
        return collector.take([flow]).get(0, [])

    found = collect(region)
    assert [d.offset for d in found] == [0, island_at]
    assert found[1].fields["compression"] == "zstd"
    assert collect(Region(region.slot, 0, 0, b"\0" * 64, True, region.islands)) == []


ALL_CAPTURES = sorted([*CAPTURES.glob("*.pcap*"), *(CAPTURES / "variants").glob("*.pcap*")])


@pytest.mark.parametrize("path", ALL_CAPTURES, ids=[p.name for p in ALL_CAPTURES])
def test_prefilter_changes_no_detection(path):
    """Every region of a capture (heads, probes, islands) read with the
    prefilter's candidate rows gives the detections of every row on every region."""
    batches: list[list[Region]] = []
    table = FlowTable(on_regions=batches.append)
    for batch in CaptureReader(path):
        table.add(batch)
    table.finish()
    flows = sorted({r.slot // 2 for regions in batches for r in regions})
    ports = Watchlist.default().service_ports

    def orientation(flow: int) -> bool:
        return originator_is_a_one(table.flow[flow], ports)

    filtered, every_row = DetectionCollector(orientation), DetectionCollector(orientation)
    for regions in batches:
        filtered.on_regions(regions)
        for region in regions:
            every_row.on_region(region)
    found = every_row.take(flows)
    assert found, path.name
    assert filtered.take(flows) == found


def all_regions(path: Path, **table_args) -> list[Region]:
    """Every region a capture hands over, in order."""
    regions: list[Region] = []
    table = FlowTable(on_regions=regions.extend, **table_args)
    for batch in CaptureReader(path):
        table.add(batch)
    table.finish()
    return regions


def test_regions_do_not_depend_on_pool_sizes(plain_mtu1500, tmp_path):
    """Pools that start with one row grow under the kernel (small rows,
    full rows, bitmaps, histograms) and hand over the same regions: a head
    whose first segment comes late (a bitmap, then a move to a full row), a
    hole that stays, islands beyond a snaplen cut."""
    linktype, records, data = data_packets(plain_mtu1500)
    shuffled = list(records)
    shuffled[data[0]], shuffled[data[3]] = shuffled[data[3]], shuffled[data[0]]
    del shuffled[data[40]]
    holes = write_pcap(tmp_path / "holes.pcap", linktype, shuffled)
    for capture in (holes, CAPTURES / "variants" / "qemu-multifd-zstd-snap256.pcap.gz"):
        regions = all_regions(capture)
        assert any(r.islands for r in regions) or any(len(r.data) == K.REGION_BYTES for r in regions)
        assert all_regions(capture, initial_flows=1, initial_rows=1) == regions


def udp_exchanges(path: Path, flows: int, payloads: list[bytes]) -> Path:
    """``flows`` UDP flows, each sending ``payloads`` both ways in turn; none ends before the input."""
    records = []
    for f in range(flows):
        client, server = bytes([192, 168, 1, 1 + f]), bytes([10, 0, 0, 53])
        for k, payload in enumerate(payloads):
            src, dst, sport, dport = (client, server, 40000 + f, 53) if k % 2 == 0 else (server, client, 53, 40000 + f)
            udp = dpkt.udp.UDP(sport=sport, dport=dport, data=payload)
            udp.ulen = len(udp)
            ip = dpkt.ip.IP(src=src, dst=dst, p=dpkt.ip.IP_PROTO_UDP, data=udp)
            frame = bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=ip))
            records.append(Rec((f * len(payloads) + k) * 1_000_000, frame, len(frame)))
    return write_pcap(path, dpkt.pcap.DLT_EN10MB, records)


def test_short_exchanges_hold_small_rows_only(tmp_path):
    """Directions that carry a few hundred bytes and stay open (DNS, syslog:
    until the idle timeout) hold a small region row each, no full row and
    no bitmap, and still hand over every byte in order."""
    payloads = [bytes([k]) * (120 + 90 * k) for k in range(6)]
    path = udp_exchanges(tmp_path / "udp.pcap", 40, payloads)
    regions: list[Region] = []
    table = FlowTable(on_regions=regions.extend)
    for batch in CaptureReader(path):
        table.add(batch)
    c = table.counters
    assert table.small_heads.shape[0] - c[K.CT_FREE_SMALL] == 2 * 40
    assert c[K.CT_FREE_HEADS] == table.heads.shape[0] and c[K.CT_FREE_COV] == table.head_cov.shape[0]
    assert regions == []
    table.finish()
    from_server = 0  # endpoint A, the lower address, sends direction 0
    assert sorted((r.slot % 2, r.data) for r in regions) == sorted(
        [(from_server, b"".join(payloads[1::2]))] * 40 + [(1 - from_server, b"".join(payloads[0::2]))] * 40)
