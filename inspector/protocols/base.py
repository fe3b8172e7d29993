"""Detection and Detector: what a protocol detector returns and how it is registered.

A detector reads reassembled stream bytes of one flow direction and returns
one :class:`Detection` or ``None``. It never raises on any input (``detect``
also guards every call) and its work is bounded by the length of the data:
every loop advances, and every loop has a cap.

Detectors read only framing (headers, names, lengths, flags). Evidence lines
and fields never carry payload beyond framing: no guest memory, no disk
data, no credential values (a token is reported as "present, N chars").
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping, Optional

from inspector.schema import PROVES
from inspector.text import inert

# What a detection proves about the confidentiality of the stream it was found in.
# CLEARTEXT: framing readable in clear; ENCRYPTED: a validated TLS/SSH session whose
# encrypted phase is seen or announced; NOTHING: recognised, proves neither (a greeting before STARTTLS).
CLEARTEXT, ENCRYPTED, NOTHING = PROVES

ORIG, RESP = "orig", "resp"
BOTH = frozenset({ORIG, RESP})
ANY = "any"            # direction unknown: run every detector

EVIDENCE_MAX = 240     # characters in one evidence line


@dataclass(frozen=True)
class Detection:
    """One recognised protocol unit in a stream direction.

    ``offset`` is where the evidence starts in the bytes given to the
    detector. ``fields`` holds what was extracted; its keys are documented
    by each detector module. ``direction`` is filled in by ``detect`` /
    ``detect_flow`` ('orig', 'resp', or 'both' for a combined handshake).
    """

    protocol: str
    offset: int
    evidence: str
    proves: str
    fields: Mapping[str, object] = field(default_factory=dict, hash=False)
    direction: str = ""

    def shifted(self, by: int, **changes) -> "Detection":
        """The same detection for bytes that start ``by`` earlier."""
        return replace(self, offset=self.offset + by, **changes)


Detect = Callable[[bytes], Optional[Detection]]


@dataclass(frozen=True)
class Detector:
    """One row of the detector table.

    ``at_start`` reads a stream from its first byte; ``mid_stream`` reads
    bytes from an arbitrary point. ``prefixes`` is a cheap filter for
    ``at_start``: when not empty, ``at_start`` runs only on data that
    starts with one of them. ``source`` says where the format is defined.

    ``start_signature`` / ``mid_signature`` say what ``at_start`` (after the
    prefix filter) / ``mid_stream`` can possibly accept, as data a compiled
    prefilter (``prefilter.py``) evaluates for many regions at once: a
    superset, never missing data the function accepts (None: anything).

    ``transports``: the IP protocols (6 TCP, 17 UDP, 50 ESP) of the flows
    the row reads, for framings that exist only there (a datagram's
    headers); None: every flow.
    """

    name: str
    protocol: str
    directions: frozenset
    at_start: Optional[Detect]
    mid_stream: Optional[Detect]
    prefixes: tuple = ()
    source: str = ""
    start_signature: Signature | None = None
    mid_signature: Signature | None = None
    transports: frozenset | None = None


# ------------------------------------------------------------------ signatures

ByteSet = frozenset  # the byte values allowed at one position
EVERY_BYTE = frozenset(range(256))
TEXT = frozenset([9, 10, 11, 12, 13, *range(32, 127)])   # printable ASCII and line/tab controls
DIGIT = frozenset(b"0123456789")


@dataclass(frozen=True)
class Clause:
    """Bytes that must be present: ``pattern`` (one set of allowed values per
    position) at the start of the data, or ``anywhere`` in it, ending no later
    than ``within`` bytes from the start; and at least ``min_len`` bytes."""

    pattern: tuple[ByteSet, ...] = ()
    anywhere: bool = False
    within: int | None = None
    min_len: int = 0


Signature = tuple[tuple[Clause, ...], ...]
"""Alternatives, each a conjunction of clauses: data matches when every
clause of one alternative holds."""


def _pattern(parts) -> tuple[ByteSet, ...]:
    """bytes: one value per position; a set or range of ints: one position."""
    out: list[ByteSet] = []
    for part in parts:
        if isinstance(part, bytes):
            out += [frozenset((b,)) for b in part]
        else:
            out.append(frozenset(part))
    return tuple(out)


def lead(*parts, min_len: int = 0) -> Clause:
    """The data starts with ``parts`` (``bytes`` or sets of byte values) and
    has at least ``min_len`` bytes."""
    pattern = _pattern(parts)
    return Clause(pattern, min_len=max(min_len, len(pattern)))


def anywhere(*parts, within: int | None = None) -> Clause:
    """``parts`` occur somewhere in the data (ending by ``within`` bytes)."""
    return Clause(_pattern(parts), anywhere=True, within=within)


def nocase(word: bytes) -> tuple[ByteSet, ...]:
    """One position per letter of ``word``, either case."""
    return tuple(frozenset({c, ord(chr(c).lower()), ord(chr(c).upper())}) for c in word)


def signature(*alternatives) -> Signature:
    """Alternatives, each a Clause or a tuple of Clauses that must all hold."""
    return tuple(alt if isinstance(alt, tuple) else (alt,) for alt in alternatives)


# --------------------------------------------------------------------- helpers

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


def u16(data: bytes, pos: int) -> int | None:
    return _U16.unpack_from(data, pos)[0] if 0 <= pos and pos + 2 <= len(data) else None


def u32(data: bytes, pos: int) -> int | None:
    return _U32.unpack_from(data, pos)[0] if 0 <= pos and pos + 4 <= len(data) else None


def u64(data: bytes, pos: int) -> int | None:
    return _U64.unpack_from(data, pos)[0] if 0 <= pos and pos + 8 <= len(data) else None


_NAME_OK = re.compile(rb"[\x21-\x7e]+\Z")


def name_at(data: bytes, pos: int, length: int) -> str | None:
    """``length`` bytes at ``pos`` as a name of visible ASCII, else None."""
    if length <= 0 or pos < 0 or pos + length > len(data):
        return None
    raw = data[pos:pos + length]
    return raw.decode("ascii") if _NAME_OK.match(raw) else None


def cstring(data: bytes, pos: int, maxlen: int) -> str | None:
    """A NUL-terminated visible-ASCII name of at most ``maxlen`` bytes at ``pos``."""
    end = data.find(b"\0", pos, pos + maxlen + 1)
    if end <= pos:
        return None
    return name_at(data, pos, end - pos)


def clean(text: str, limit: int = 60) -> str:
    """A name safe for one evidence line: escaped as every outside string is (``inspector.text.inert``), length capped."""
    text = inert(text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def listing(names, limit: int = 6) -> str:
    """'a, b, c' with '(+N more)' past ``limit``."""
    names = list(names)
    shown = ", ".join(clean(str(n), 40) for n in names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def line(*parts: str) -> str:
    """Join non-empty parts with '; ' into one evidence line of bounded length."""
    text = "; ".join(p for p in parts if p)
    return text if len(text) <= EVIDENCE_MAX else text[:EVIDENCE_MAX - 3] + "..."


# ------------------------------------------------------------ ciphertext samples

# The window tests of ``inspector.classify.statistics`` (same thresholds), for
# the bytes a datagram detector delimits as ciphertext: per-packet cleartext
# headers (SPIs, counters, connection ids) left out of the sample.
Z_RANDOM = 5.0
H2_COMPRESSED = 7.0


def byte_statistics(sample: bytes) -> tuple[float, float, str]:
    """Shannon entropy (bits/byte), chi-square against 256 equiprobable values,
    and the window label ('random', 'compressed', 'plain') of ``sample``."""
    n = len(sample)
    if not n:
        return 0.0, 0.0, "plain"
    counts = [sample.count(b) for b in range(256)] if n > 4096 else list(_count(sample))
    expected = n / 256
    chi2 = sum((c - expected) ** 2 for c in counts) / expected
    entropy = -sum(c / n * math.log2(c / n) for c in counts if c)
    if (chi2 - 255.0) / math.sqrt(510.0) < Z_RANDOM:
        return entropy, chi2, "random"
    h2 = 8.0 - math.log2(1.0 + max(chi2 - 255.0, 0.0) / n)
    return entropy, chi2, "compressed" if h2 >= H2_COMPRESSED else "plain"


def _count(sample: bytes) -> list[int]:
    counts = [0] * 256
    for b in sample:
        counts[b] += 1
    return counts


def sample_line(what: str, sample: bytes) -> tuple[str, str]:
    """'<what>: N B, E bits/byte, chi2 C (label)' for an evidence line, and the label."""
    entropy, chi2, label = byte_statistics(sample)
    return f"{what}: {len(sample)} B, {entropy:.2f} bits/byte, chi2 {chi2:.0f} ({label})", label


# ------------------------------------------------------------- datagram chains

COUNTER_STEP = 64   # packets that may be lost between two seen (an anti-replay window)
MAX_CHAIN = 256     # packets a chain walk delimits
MAX_FINDS = 2048    # work cap of a chain walk (each find advances)


def counter_chain(data: bytes, start: int, key: bytes, read, min_size: int) -> list[tuple[int, int]]:
    """(start, counter) of packets that begin with ``key`` followed by a
    counter (``read(data, pos)``) that grows by 1..COUNTER_STEP each packet, walking on from
    ``start`` while the next one is found."""
    first = read(data, start + len(key))
    if first is None or not data.startswith(key, start):
        return []
    out, finds = [(start, first)], 0
    pos, last = start, first
    while len(out) < MAX_CHAIN and finds < MAX_FINDS:
        nxt = data.find(key, pos + min_size)
        while nxt >= 0 and finds < MAX_FINDS:
            finds += 1
            counter = read(data, nxt + len(key))
            if counter is not None and last < counter <= last + COUNTER_STEP:
                break
            nxt = data.find(key, nxt + 1)
        else:
            break
        out.append((nxt, counter))
        pos, last = nxt, counter
    return out
