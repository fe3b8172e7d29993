"""The library API: typed tables, anomalies for malformed packets, several files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

import inspector
from capture_variants import Rec, read_pcap, write_pcap
from inspector.schema import FLOW_COLUMNS

BASE = Path(__file__).resolve().parent / "data" / "lo_mixed.pcap"


def test_flows_table_has_the_documented_columns_and_dtypes():
    flows = inspector.analyze(BASE).flows
    assert list(flows.columns) == list(FLOW_COLUMNS)
    assert str(flows["orig_p"].dtype) == "UInt16" and str(flows["resp_p"].dtype) == "UInt16"
    assert isinstance(flows["ts"].dtype, pd.DatetimeTZDtype)
    assert flows["duration"].dtype.kind == "m"
    assert isinstance(flows["verdict"].dtype, pd.CategoricalDtype)
    assert set(flows["watch"].cat.categories) == {"migration", "libvirtd", "ssh", "internal-api", "none"}
    assert flows["confidence"].between(0, 1).all()
    assert (flows["reason"].str.len() > 0).all()


def test_empty_capture_keeps_the_schema(tmp_path):
    empty = write_pcap(tmp_path / "empty.pcap", 1, [])
    result = inspector.analyze(empty)
    assert result.flows.empty and list(result.flows.columns) == list(FLOW_COLUMNS)
    assert result.inputs["packets"].tolist() == [0]


def test_malformed_packets_are_counted_not_fatal(tmp_path):
    """Break the IPv4 header of one packet and the TCP header of another."""
    pcap = read_pcap(BASE)
    records = list(pcap.records)
    v4 = [i for i, r in enumerate(records) if r.data[12:14] == b"\x08\x00" and r.data[23] == 6]
    bad_ip, bad_tcp = v4[3], v4[4]
    data = bytearray(records[bad_ip].data)
    data[14] = 0x42  # version 4, header length 8 bytes: impossible
    records[bad_ip] = replace(records[bad_ip], data=bytes(data))
    data = bytearray(records[bad_tcp].data)
    ihl = (data[14] & 0x0F) * 4
    data[14 + ihl + 12] = 0xF0  # TCP data offset 60 bytes, beyond the packet
    records[bad_tcp] = replace(records[bad_tcp], data=bytes(data))
    path = write_pcap(tmp_path / "broken.pcap", pcap.linktype, records)

    result = inspector.analyze(path)
    kinds = dict(zip(result.anomalies["kind"], result.anomalies["count"]))
    assert kinds.get("malformed-ip-header") == 1
    assert kinds.get("malformed-transport-header") == 1
    clean = inspector.analyze(BASE).flows
    assert len(result.flows) == len(clean)
    assert result.flows["orig_pkts"].sum() + result.flows["resp_pkts"].sum() == \
        clean["orig_pkts"].sum() + clean["resp_pkts"].sum() - 2


def test_headers_cut_by_snaplen_are_counted(tmp_path):
    pcap = read_pcap(BASE)
    cut = [Rec(r.ts_ns, r.data[:40], r.wirelen) for r in pcap.records]  # inside the TCP header
    path = write_pcap(tmp_path / "cut40.pcap", pcap.linktype, cut, snaplen=40)
    result = inspector.analyze(path)
    kinds = dict(zip(result.anomalies["kind"], result.anomalies["count"]))
    assert kinds.get("headers-cut-by-snaplen", 0) > 0
    assert result.inputs["truncated_packets"].iloc[0] == sum(r.wirelen > 40 for r in pcap.records)


def test_watched_and_internal_nets():
    result = inspector.analyze(BASE, internal_nets=["127.0.0.0/8"])
    v4 = result.flows[result.flows["ip_version"] == 4]
    assert (v4["watch"] == "internal-api").all()
    assert len(result.watched) >= len(v4)
    assert [str(n) for n in result.watch.internal_nets] == ["127.0.0.0/8"]


def test_progress_callback_counts_every_packet_and_byte(tmp_path):
    seen = []
    copy = tmp_path / BASE.name
    copy.write_bytes(BASE.read_bytes())  # a second file (the same one twice is read once)
    result = inspector.analyze([BASE, copy], on_progress=seen.append)
    assert seen[-1].packets == result.inputs["packets"].sum() > 0
    assert seen[-1].file_bytes == seen[-1].file_bytes_total == 2 * BASE.stat().st_size
    assert all(a.file_bytes <= b.file_bytes for a, b in zip(seen, seen[1:]))


def test_scalar_and_column_originator_rules_agree():
    """The detectors orient a flow with the one-row rule while its packets are
    still arriving; the flows table uses the column rule. They must agree."""
    import numpy as np

    from inspector.capture.reader import CaptureReader
    from inspector.flows.frame import originator_is_a, originator_is_a_one
    from inspector.flows.table import FlowTable

    service = inspector.Watchlist().service_ports
    captures = Path(__file__).resolve().parents[1] / "captures"
    for path in [BASE, captures / "qemu-ssh-tunnel.pcap.gz", captures / "variants" / "qemu-plain-mtu1500-midflow.pcap.gz"]:
        table = FlowTable()
        for batch in CaptureReader(path):
            table.add(batch)
        flow = table.finish().flow
        column = originator_is_a(flow, service)
        assert np.array_equal(column, [originator_is_a_one(row, service) for row in flow])


def test_byte_histograms_of_watched_flows_count_the_reassembled_regions():
    """The probes (16 KiB at 1 and 2 MiB of a 2.9 MiB stream) are counted
    for bulk watched flows; short or unwatched flows keep no histogram."""
    from inspector.flows.kernels import REGION_BYTES

    root = Path(__file__).resolve().parents[1] / "captures"
    result = inspector.analyze(root / "qemu-plain.pcap.gz")
    hist = result.byte_histograms
    assert len(hist) == 256 and set(hist["direction"]) == {"orig"}
    assert hist["count"].sum() == 2 * REGION_BYTES
    assert hist.set_index("byte")["count"].idxmax() == ord(" ")  # the config text in the guest RAM
    assert inspector.analyze(root / "https-api.pcap.gz").byte_histograms.empty
    assert inspector.analyze(root / "http-api.pcap").byte_histograms.empty
