"""What ``analyze`` accepts and how it treats its inputs: a cut ``.pcap.gz``
is analysed up to the cut, a file given twice is read once, file objects and
scapy packets are inputs like paths, and no capture file is left open."""

from __future__ import annotations

import gc
import io
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner
from scapy.layers.inet import IP

import inspector
from inspector.cli import main
from inspector.errors import InputWarning

ROOT = Path(__file__).resolve().parents[1]
PLAIN_GZ = ROOT / "captures" / "qemu-plain.pcap.gz"
HTTP = ROOT / "captures" / "http-api.pcap"


def _cut_gzip(tmp_path: Path) -> tuple[Path, Path]:
    """The first half of a shipped .pcap.gz, and what zlib decompresses of it as a plain pcap."""
    data = PLAIN_GZ.read_bytes()
    cut = tmp_path / "cut.pcap.gz"
    cut.write_bytes(data[: len(data) // 2])
    plain = tmp_path / "cut.pcap"
    plain.write_bytes(zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(cut.read_bytes()))
    return cut, plain


def test_cut_gzip_capture_is_analysed_up_to_the_cut(tmp_path):
    cut, plain = _cut_gzip(tmp_path)
    result = inspector.analyze(cut)
    same_bytes = inspector.analyze(plain)
    assert result.inputs.loc[0, "format"] == "pcap.gz"
    assert 0 < result.inputs.loc[0, "packets"] == same_bytes.inputs.loc[0, "packets"]
    kinds = set(result.anomalies["kind"])
    assert kinds == {"truncated-compressed-stream", "truncated-last-record"}
    assert set(same_bytes.anomalies["kind"]) == {"truncated-last-record"}
    columns = ["uid", "orig_bytes", "resp_bytes", "verdict"]
    assert result.flows[columns].equals(same_bytes.flows[columns])


def test_cut_gzip_capture_is_not_an_error_on_the_command_line(tmp_path):
    cut, _ = _cut_gzip(tmp_path)
    outcome = CliRunner().invoke(main, ["analyze", "-q", str(cut)])
    assert outcome.exit_code == 0, outcome.output


def test_gzip_cut_inside_its_header_is_one_clear_error(tmp_path):
    cut = tmp_path / "head.pcap.gz"
    cut.write_bytes(PLAIN_GZ.read_bytes()[:12])
    with pytest.raises(inspector.CaptureError, match="head.pcap.gz: the gzip data ends before its end-of-stream"):
        inspector.analyze(cut)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("capture", [PLAIN_GZ, HTTP], ids=["gzip", "plain"])
def test_analyze_leaves_no_capture_file_open(capture):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        inspector.analyze(capture)
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_a_file_given_twice_is_read_once_with_a_notice():
    once = inspector.analyze(HTTP)
    with pytest.warns(InputWarning, match="http-api.pcap: the same file as .*http-api.pcap, given again; read once"):
        twice = inspector.analyze([HTTP, ROOT / "captures" / ".." / "captures" / "http-api.pcap"])
    assert twice.inputs["file"].tolist() == [str(HTTP)]
    assert twice.flows.equals(once.flows)


def test_a_file_given_twice_on_the_command_line_is_one_line(tmp_path):
    out = tmp_path / "flows.csv"
    outcome = CliRunner().invoke(main, ["analyze", "-q", str(HTTP), str(HTTP), "--csv", str(out)])
    assert outcome.exit_code == 0, outcome.output
    assert outcome.stderr == f"inspector: {HTTP}: the same file as {HTTP}, given again; read once\n"
    assert len(out.read_text().splitlines()) == 1 + len(inspector.analyze(HTTP).flows)


def _flows_without_input(result: inspector.Analysis):
    return result.flows.drop(columns="input")


@pytest.mark.parametrize("capture", [PLAIN_GZ, HTTP], ids=["gzip", "plain"])
def test_binary_file_objects_are_inputs(capture):
    by_path = inspector.analyze(capture)
    with open(capture, "rb") as handle:
        by_file = inspector.analyze(handle)
        assert not handle.closed  # the caller's to close
        assert by_file.inputs.loc[0, "file"] == str(capture)
        assert len(by_file.packets(by_file.flows.uid[0])) == by_file.flows.orig_pkts[0] + by_file.flows.resp_pkts[0]
    in_memory = inspector.analyze(io.BytesIO(capture.read_bytes()))
    assert in_memory.inputs.loc[0, "file"] == "<file object 1>"
    for result in (by_file, in_memory):
        assert _flows_without_input(result).equals(_flows_without_input(by_path))
        assert result.inputs.drop(columns="file").equals(by_path.inputs.drop(columns="file"))


def test_a_pipe_is_an_input_but_cannot_be_read_back():
    with subprocess.Popen(["cat", str(PLAIN_GZ)], stdout=subprocess.PIPE) as cat:
        result = inspector.analyze(cat.stdout)
    assert _flows_without_input(result).equals(_flows_without_input(inspector.analyze(PLAIN_GZ)))
    with pytest.raises(inspector.CaptureError, match="cannot seek"):
        result.packets(result.flows.uid[0])


def test_a_text_mode_file_is_one_clear_error():
    with open(HTTP, encoding="latin-1") as handle, pytest.raises(inspector.ConfigError, match="text mode"):
        inspector.analyze(handle)


def test_scapy_packets_are_inputs():
    from scapy.utils import PcapReader, rdpcap

    by_path = inspector.analyze(HTTP)
    packet_list = rdpcap(str(HTTP))
    for packets in (packet_list, list(packet_list), PcapReader(str(HTTP))):
        result = inspector.analyze(packets)
        assert _flows_without_input(result).equals(_flows_without_input(by_path))
        assert result.inputs.loc[0, "packets"] == by_path.inputs.loc[0, "packets"]
        assert result.anomalies.empty
    uid = by_path.flows.uid[0]
    assert [bytes(p) for p in inspector.analyze(packet_list).packets(uid)] == [bytes(p) for p in by_path.packets(uid)]
    with pytest.raises(inspector.CaptureError, match="iterator"):
        result.packets(uid)  # PcapReader's packets were read once
    several = inspector.analyze([packet_list, PLAIN_GZ])
    assert several.inputs["file"].tolist() == ["<scapy http-api.pcap>", str(PLAIN_GZ)]


def test_scapy_packets_of_several_link_types():
    """Raw IP and Ethernet packets in one list: one input, each packet decoded by its own link type."""
    from scapy.utils import rdpcap

    ethernet = rdpcap(str(HTTP))
    mixed = [p[IP] if i % 2 else p for i, p in enumerate(ethernet)]
    for packet, original in zip(mixed, ethernet):
        packet.time = original.time
    result = inspector.analyze(mixed)
    assert set(result.inputs.loc[0, "linktypes"].split(",")) == {"1", "228"}
    assert _flows_without_input(result)[["uid", "orig_pkts", "resp_pkts", "orig_bytes", "verdict"]].equals(
        _flows_without_input(inspector.analyze(HTTP))[["uid", "orig_pkts", "resp_pkts", "orig_bytes", "verdict"]])


def test_analyze_does_not_import_scapy():
    code = "import inspector, sys; inspector.analyze(sys.argv[1]); print('scapy' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code, str(HTTP)], capture_output=True, text=True, cwd=ROOT, check=True)
    assert run.stdout.strip() == "False"
