"""Damaged and unusual capture files are read as far as tshark reads them.

Each file is a real capture (captures/, tests/data/) damaged or rewritten
the way a file copied mid-write, a bad disk or an old capture tool leaves
it; capinfos (Wireshark's reader) gives the packet count to match.
"""

from __future__ import annotations

import gzip
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

import inspector
from capture_variants import PcapngWriter, Rec, pcap_bytes, read_pcap

ROOT = Path(__file__).resolve().parents[1]
SMALL_GZ = ROOT / "captures" / "https-api.pcap.gz"       # 0.35 MB compressed, 77 packets
MIXED = ROOT / "tests" / "data" / "lo_mixed.pcap"


def wireshark_packets(path: Path) -> int:
    """Packets Wireshark's reader gets from ``path``, up to any damage."""
    if shutil.which("capinfos") is None:
        pytest.fail("capinfos is not installed (bash .ci/install-system-deps installs it)")
    out = subprocess.run(["capinfos", "-c", "-M", str(path)], capture_output=True, text=True)
    text = out.stdout + out.stderr
    found = re.search(r"after reading (\d+) packets", text) or re.search(r"Number of packets:\s+(\d+)", text)
    assert found, text
    return int(found.group(1))


def analysed_packets(path: Path) -> tuple[int, set[str]]:
    result = inspector.analyze(path)
    return int(result.inputs["packets"].sum()), set(result.anomalies["kind"])


def _damaged(data: bytes, how: str) -> bytes:
    size = len(data)
    if how == "cut":
        return data[: size * 2 // 3]
    if how == "bad-crc":
        return data[:-8] + bytes([data[-8] ^ 1]) + data[-7:]
    if how == "bad-isize":
        return data[:-4] + bytes([data[-4] ^ 1]) + data[-3:]
    if how == "trailing-junk":
        return data + b"not gzip at all, written after the stream" * 4
    assert how == "flipped-byte"
    return data[: size // 2] + bytes([data[size // 2] ^ 0x55]) + data[size // 2 + 1:]


DAMAGE = ["cut", "bad-crc", "bad-isize", "trailing-junk", "flipped-byte"]


@pytest.mark.parametrize("how", DAMAGE)
def test_small_gzip_read_up_to_the_damage(how, tmp_path):
    path = tmp_path / f"{how}.pcap.gz"
    path.write_bytes(_damaged(SMALL_GZ.read_bytes(), how))
    packets, kinds = analysed_packets(path)
    assert packets == wireshark_packets(path)
    assert kinds & {"truncated-compressed-stream", "damaged-compressed-stream"}


@pytest.fixture(scope="module")
def big_gzip(tmp_path_factory) -> bytes:
    """A real capture repeated (timestamps shifted) to ~11 MB, gzip'd: more than one 8 MiB read chunk."""
    source = read_pcap(ROOT / "captures" / "qemu-plain-mtu1500.pcap.gz")
    span = source.records[-1].ts_ns - source.records[0].ts_ns + 10**9
    records = [Rec(r.ts_ns + k * span, r.data, r.wirelen) for k in range(8) for r in source.records]
    return gzip.compress(pcap_bytes(source.linktype, records), compresslevel=6)


@pytest.mark.parametrize("how", DAMAGE)
def test_big_gzip_keeps_every_packet_before_the_damage(how, big_gzip, tmp_path):
    path = tmp_path / f"big-{how}.pcap.gz"
    path.write_bytes(_damaged(big_gzip, how))
    packets, kinds = analysed_packets(path)
    assert packets == wireshark_packets(path)
    # a flipped byte can decompress to an impossible record header before zlib sees the bad CRC
    assert kinds & {"truncated-compressed-stream", "damaged-compressed-stream", "damaged-record-header"}


def _with_version(data: bytes, major: int, minor: int) -> bytes:
    return data[:4] + struct.pack("<HH", major, minor) + data[8:]


@pytest.mark.parametrize("minor", [0, 2, 3, 5, 99])
def test_pcap_minor_versions_read(minor, tmp_path):
    path = tmp_path / f"v2.{minor}.pcap"
    path.write_bytes(_with_version(MIXED.read_bytes(), 2, minor))
    assert analysed_packets(path)[0] == wireshark_packets(path) == analysed_packets(MIXED)[0]


def test_pcap_before_2_3_has_lengths_swapped(tmp_path):
    """Before 2.3 the record header held orig_len before incl_len (libpcap's savefile.c)."""
    source = read_pcap(MIXED)
    records = [Rec(r.ts_ns, r.data[:60], len(r.data)) for r in source.records]  # snaplen 60
    data = bytearray(pcap_bytes(source.linktype, records))
    data[4:8] = struct.pack("<HH", 2, 2)
    at = 24
    for r in records:
        incl, orig = struct.unpack("<II", data[at + 8:at + 16])
        data[at + 8:at + 16] = struct.pack("<II", orig, incl)
        at += 16 + incl
    path = tmp_path / "v2.2.pcap"
    path.write_bytes(bytes(data))
    result = inspector.analyze(path)
    assert int(result.inputs["packets"].sum()) == wireshark_packets(path) == len(records)
    assert int(result.inputs["truncated_packets"].sum()) == sum(len(r.data) < r.wirelen for r in records)


def test_major_version_1_is_refused_in_one_line(tmp_path):
    path = tmp_path / "v1.pcap"
    path.write_bytes(_with_version(MIXED.read_bytes(), 1, 0))
    with pytest.raises(inspector.CaptureError, match="version 1.0"):
        inspector.analyze(path)


def test_modified_pcap_magic_records_carry_8_more_bytes(tmp_path):
    """Alexey Kuznetsov's patched libpcap (magic a1b2cd34): ifindex, protocol, pkt_type, pad after each header."""
    source = read_pcap(MIXED)
    out = [struct.pack("<IHHiIII", 0xA1B2CD34, 2, 4, 0, 0, 262144, source.linktype)]
    for r in source.records:
        sec, ns = divmod(r.ts_ns, 10**9)
        out.append(struct.pack("<IIII", sec, ns // 1000, len(r.data), r.wirelen) + struct.pack("<IHBB", 1, 0x0800, 0, 0))
        out.append(r.data)
    path = tmp_path / "modified.pcap"
    path.write_bytes(b"".join(out))
    result = inspector.analyze(path)
    plain = inspector.analyze(MIXED)
    assert int(result.inputs["packets"].sum()) == wireshark_packets(path) == len(source.records)
    assert result.flows[["uid", "orig_bytes", "resp_bytes", "verdict"]].equals(
        plain.flows[["uid", "orig_bytes", "resp_bytes", "verdict"]])


def _pcapng(records: list[Rec], linktype: int, **idb) -> bytes:
    writer = PcapngWriter()
    writer.shb()
    writer.idb(linktype, **idb)
    for r in records:
        writer.epb(0, r)
    return writer.getvalue()


@pytest.mark.parametrize("resolution", [{"tsresol_exp2": 30}, {"tsresol_exp10": 12}, {"tsresol_exp10": 30},
                                        {"tsresol_exp2": 100}])
def test_pcapng_fine_timestamp_resolutions(resolution, tmp_path):
    source = read_pcap(MIXED)
    base = source.records[0].ts_ns
    # picoseconds since 1970 overflow 64 bits: such files count from a recent origin (as if_tsoffset would)
    shift = base - 10**9 if resolution.get("tsresol_exp10", 0) >= 12 or resolution.get("tsresol_exp2", 0) > 32 else 0
    records = [Rec(r.ts_ns - shift, r.data, r.wirelen) for r in source.records]
    path = tmp_path / "fine.pcapng"
    if resolution.get("tsresol_exp10") == 30 or resolution.get("tsresol_exp2") == 100:
        records = [Rec(0, r.data, r.wirelen) for r in records]  # a tick is far below a nanosecond
    path.write_bytes(_pcapng(records, source.linktype, **resolution))
    result = inspector.analyze(path)
    assert int(result.inputs["packets"].sum()) == wireshark_packets(path) == len(records)
    if "tsresol_exp10" in resolution and resolution["tsresol_exp10"] == 12 or resolution.get("tsresol_exp2") == 30:
        first = result.flows["ts"].min().value
        assert abs(first - min(r.ts_ns for r in records)) < 1000  # to the microsecond, no overflow


def test_pcapng_with_more_than_4096_interfaces(tmp_path):
    source = read_pcap(MIXED)
    writer = PcapngWriter()
    writer.shb()
    for _ in range(5000):
        writer.idb(source.linktype)
    for i, r in enumerate(source.records):
        writer.epb(4096 + i % 900, r)
    path = tmp_path / "many.pcapng"
    path.write_bytes(writer.getvalue())
    assert analysed_packets(path)[0] == wireshark_packets(path) == len(source.records)

