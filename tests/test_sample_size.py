"""Small samples give 'unknown', a low confidence, or the right answer.

Each real capture is cut so that every direction of every flow carries at
most K payload bytes (the packet that crosses K is shortened, IP length
fixed). Whatever K is, a confident verdict (>= CONFIDENT) must never call
cleartext encrypted, nor encrypted traffic cleartext. Below a few 64 KiB
windows zlib output can look as uniform as ciphertext; the classifier may
lean either way there, but must say so with a low confidence.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import inspector

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from accuracy import cut_capture  # noqa: E402 - the accuracy report's cutter, one copy

CAPTURES = ROOT / "captures"
MANIFEST = json.loads((CAPTURES / "manifest.json").read_text())
LIMITS = [64, 256, 1024, 1536, 2048, 4096, 16384, 65536, 262144]
SIDE = {"plaintext": "cleartext", "compressed": "cleartext", "encrypted": "encrypted"}
CONFIDENT = 0.8


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
