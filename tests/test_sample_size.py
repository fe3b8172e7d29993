"""Small samples give 'unknown', a low confidence, or the right answer.

Each real capture is cut so that every direction of every flow carries at
most K payload bytes (the packet that crosses K is shortened, IP length
fixed). Whatever K is, a confident verdict (>= CONFIDENT) must never call
cleartext encrypted, nor encrypted traffic cleartext. Below a few 64 KiB
windows zlib output can look as uniform as ciphertext; the classifier may
lean either way there, but must say so with a low confidence.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import dpkt
import pytest

import inspector

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
MANIFEST = json.loads((CAPTURES / "manifest.json").read_text())
LIMITS = [64, 256, 1024, 1536, 2048, 4096, 16384, 65536, 262144]
SIDE = {"plaintext": "cleartext", "compressed": "cleartext", "encrypted": "encrypted"}
CONFIDENT = 0.8


def cut_capture(src: Path, dst: Path, limit: int) -> None:
    """Copy ``src`` keeping at most ``limit`` payload bytes per flow direction."""
    opener = gzip.open if src.suffix == ".gz" else open
    sent: dict[tuple, int] = {}
    with opener(src, "rb") as fin, open(dst, "wb") as fout:
        reader = dpkt.pcap.Reader(fin)
        writer = dpkt.pcap.Writer(fout, linktype=reader.datalink(), snaplen=262144)
        for ts, frame in reader:
            eth = dpkt.ethernet.Ethernet(frame)
            ip, tcp = eth.data, eth.data.data
            key = (ip.src, tcp.sport, ip.dst, tcp.dport)
            room = limit - sent.get(key, 0)
            if tcp.data:
                if room <= 0:
                    continue
                tcp.data = tcp.data[:room]
                sent[key] = sent.get(key, 0) + len(tcp.data)
                ip.len = ip.hl * 4 + len(bytes(tcp))
                ip.sum = 0
            writer.writepkt(bytes(eth), ts)


@pytest.mark.parametrize("capture", MANIFEST["captures"], ids=lambda c: c["name"])
@pytest.mark.parametrize("limit", LIMITS)
def test_prefixes_never_cross_the_line(capture, limit, tmp_path):
    cut = tmp_path / f"{limit}.pcap"
    cut_capture(CAPTURES / capture["file"], cut, limit)
    flows = inspector.analyze(cut).flows
    for truth in capture["flows"]:
        row = flows[(flows.orig_p == truth["orig_p"]) & (flows.resp_p == truth["resp_p"])].iloc[0]
        if row.verdict == "unknown" or row.confidence < CONFIDENT:
            continue
        assert SIDE[row.verdict] == SIDE[truth["truth"]], (
            f"{capture['name']} cut to {limit} B per direction: {row.verdict} ({row.reason}), "
            f"truth {truth['truth']}")


def test_tiny_samples_need_a_signature(tmp_path):
    """64 bytes of binary payload are not enough for statistics: a verdict
    then comes only from recognised framing, and is right."""
    for name in ("qemu-tls", "qemu-multifd-zstd", "ssh-bulk", "https-api"):
        capture = next(c for c in MANIFEST["captures"] if c["name"] == name)
        cut = tmp_path / f"{name}.pcap"
        cut_capture(CAPTURES / capture["file"], cut, 64)
        flows = inspector.analyze(cut).flows
        binary = flows[flows.orig_printable < 0.9]
        unexplained = binary[binary.protocol == ""]
        assert (unexplained.verdict == "unknown").all(), unexplained[["verdict", "reason"]]
        for truth in capture["flows"]:
            row = flows[(flows.orig_p == truth["orig_p"]) & (flows.resp_p == truth["resp_p"])].iloc[0]
            assert row.verdict == "unknown" or SIDE[row.verdict] == SIDE[truth["truth"]], row.reason
