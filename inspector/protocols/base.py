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
