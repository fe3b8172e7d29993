"""Property-based fuzzing, on every run with a small budget: the readers,
decoders and detectors take anything an adversary writes.

Mutated real captures (``tests/mutations.py``: pcap, pcapng, gzip) are
analysed or refused with an ``InspectorError``, never anything else;
random frames of every link type decode; every detector returns a
detection or nothing on any bytes, called directly (the registry swallows
a detector's exceptions, which would hide the bug). Hypothesis draws new
cases each run and prints the failing one; ``benchmarks/fuzz_campaign.py``
is the long campaign (100,000+ captures, hangs and memory watched).
"""

from __future__ import annotations

import io
import random
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import inspector
from inspector.capture.constants import SUPPORTED_LINKTYPES
from inspector.capture.writer import pcap_header
from inspector.errors import InspectorError
from inspector.protocols.base import Detection
from inspector.protocols.registry import DETECTORS
from mutations import mutate, seeds

LINKTYPES = [*sorted(SUPPORTED_LINKTYPES), 227, 147]  # every decoded link type, one without IP, one unknown
BUDGET = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[bytes]:
    return seeds(tmp_path_factory.mktemp("seeds"))


def analysed_or_refused(data: bytes) -> None:
    try:
        result = inspector.analyze(io.BytesIO(data))
    except InspectorError as exc:
        assert str(exc) and "\n" not in str(exc)  # one line for the user
        return
    assert (result.inputs["packets"] >= 0).all()
    assert set(result.flows["verdict"].astype(str)) <= {"plaintext", "compressed", "encrypted", "unknown"}


@BUDGET
@given(which=st.integers(min_value=0), seed=st.integers(min_value=0, max_value=2**64))
def test_mutated_captures_are_analysed_or_refused_with_one_line(corpus, which, seed):
    analysed_or_refused(mutate(corpus[which % len(corpus)], random.Random(seed)))


@BUDGET
@given(linktype=st.sampled_from(LINKTYPES), frames=st.lists(st.binary(max_size=200), min_size=1, max_size=30),
       ip_like=st.booleans())
def test_random_frames_of_every_link_type_decode(linktype, frames, ip_like):
    records = []
    for i, frame in enumerate(frames):
        if ip_like and len(frame) > 40:  # an IPv4 or IPv6 first nibble where the link header ends, more often
            frame = frame[:14] + bytes([0x45 if frame[14] & 1 else 0x60]) + frame[15:]
        records.append(struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame) + (i % 3)) + frame)
    analysed_or_refused(pcap_header(linktype, 65535) + b"".join(records))


def _detector_input():
    prefixes = sorted({p for d in DETECTORS for p in d.prefixes})
    return st.one_of(st.binary(max_size=600),
                     st.tuples(st.sampled_from(prefixes), st.binary(max_size=600)).map(lambda t: t[0] + t[1]))


@BUDGET
@given(data=_detector_input())
def test_every_detector_returns_a_detection_or_nothing(data):
    for detector in DETECTORS:
        for function in (detector.at_start, detector.mid_stream):
            if function is not None:
                found = function(data)
                assert found is None or isinstance(found, Detection), detector.name


def _block(kind: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)


@pytest.mark.parametrize("option", [struct.pack("<HH", 9, 1), struct.pack("<HH", 14, 8) + b"\x01\x02"])
def test_an_interface_option_longer_than_its_block(option):
    """Found by benchmarks/fuzz_campaign.py (capture 70141): an if_tsresol or
    if_tsoffset option whose value runs past the end of its block."""
    section = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    interface = _block(1, struct.pack("<HHI", 1, 0, 65535) + option)
    analysed_or_refused(section + interface)
