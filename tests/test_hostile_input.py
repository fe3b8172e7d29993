"""Damaged and hostile captures never crash the reader: seeded mutations of
real captures must analyse, or fail with a CaptureError, never anything else.

The decode kernels are compiled without bounds checks, so this is what
guards them against reading past a record.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

import inspector
from capture_variants import Rec, make_variant, read_pcap, write_pcap
from inspector.capture.constants import SUPPORTED_LINKTYPES

ROOT = Path(__file__).resolve().parents[1]
LINKTYPES = sorted(SUPPORTED_LINKTYPES)


@pytest.fixture(scope="module")
def sources():
    return [read_pcap(ROOT / "tests" / "data" / "lo_mixed.pcap"),
            read_pcap(ROOT / "captures" / "qemu-plain-mtu1500.pcap.gz")]


@pytest.mark.parametrize("seed", range(4))
def test_mutated_headers_and_lengths(seed, sources, tmp_path):
    rng = random.Random(seed)
    for _ in range(6):
        pcap = rng.choice(sources)
        records = []
        for rec in pcap.records[:400]:
            data = bytearray(rec.data)
            if rng.random() < 0.3:  # link, IP and transport headers
                for _ in range(rng.randint(1, 6)):
                    data[rng.randrange(min(len(data), 90))] = rng.randrange(256)
            if rng.random() < 0.05:
                data = data[: rng.randrange(len(data) + 1)]
            wire = rng.choice([rec.wirelen, len(data), rng.randrange(70000)])
            records.append(Rec(rec.ts_ns, bytes(data), wire))
        for linktype in (pcap.linktype, rng.choice(LINKTYPES)):
            path = write_pcap(tmp_path / "m.pcap", linktype, records)
            result = inspector.analyze(path)
            assert result.inputs["packets"].iloc[0] == len(records)


@pytest.mark.parametrize("variant", ["pcapng_two_interfaces", "vlan_qinq", "ipv6_ext_headers", "pcap_be_nsec"])
def test_random_bytes_anywhere(variant, tmp_path):
    rng = random.Random(variant)
    original = make_variant(variant, tmp_path).read_bytes()
    for _ in range(25):
        data = bytearray(original)
        for _ in range(rng.randint(1, 40)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path = tmp_path / "r.cap"
        path.write_bytes(bytes(data))
        try:
            inspector.analyze(path)
        except inspector.CaptureError:
            pass
