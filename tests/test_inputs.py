"""What ``analyze`` accepts and how it treats its inputs: a cut ``.pcap.gz``
is analysed up to the cut, a file given twice is read once, file objects and
scapy packets are inputs like paths, and no capture file is left open."""

from __future__ import annotations

import gc
import warnings
import zlib
from pathlib import Path

import pytest
from click.testing import CliRunner

import inspector
from inspector.cli import main

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
