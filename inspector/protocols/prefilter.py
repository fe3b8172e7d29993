"""The detector prefilter: which rows of ``DETECTORS`` can accept which regions,
for every region of a batch in one compiled call.

Each row declares signatures (``Detector.start_signature``, ``mid_signature``:
byte patterns at the start or anywhere, minimum lengths) that hold for
every input its function accepts. ``candidate_rows`` evaluates them over
many regions at once and returns a mask of ``ROW_BIT`` per region; ``detect``
then runs only those rows in Python, and a region with no candidate costs
no detector call at all. Exact superset: a row left out could not have
accepted the data (tests/test_protocols.py checks this on samples, the
shipped captures and mutated bytes). Work is linear in the data: each
position is tried against each pattern once, patterns are a few bytes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from inspector.jit import njit

from .base import Clause
from .registry import DETECTORS, transport_rows


class _Tables:
    """The signatures of every row flattened into arrays for the kernel.

    ``classes[p, b]``: byte ``b`` allowed at pattern position ``p``.
    Clause ``c``: pattern positions ``pat[c] .. pat[c] + length[c]``, where
    (``anywhere[c]``, ending by ``within[c]``, -1: the end), ``min_len[c]``;
    a search for it looks for its rarest position ``anchor[c]`` first (the
    one or two bytes ``anchor_bytes[c]`` allowed there, -1: more).
    Alternative ``a``: clauses ``first[a] .. last[a]`` all hold -> row
    ``row[a]`` is a candidate for regions of kind ``mid[a]`` (0: a stream
    start, 1: mid-stream). A row without a signature gets one alternative
    without clauses: always a candidate. The alternatives worth trying on
    a region of kind ``m`` whose first byte is ``b`` are ``alts[bucket[i] ..
    bucket[i + 1]]`` for ``i = 257 * m + b`` (``b`` = 256: empty regions).
    """

    def __init__(self) -> None:
        classes: list[np.ndarray] = []
        clause_rows: list[tuple[int, int, int, int, int]] = []
        alt_rows: list[tuple[int, int, int, int]] = []
        for row, d in enumerate(DETECTORS):
            for mid, fn, sig in ((0, d.at_start, d.start_signature), (1, d.mid_stream, d.mid_signature)):
                if fn is None:
                    continue
                for alternative in sig if sig is not None else ((),):
                    first = len(clause_rows)
                    for clause in alternative:
                        clause_rows.append(self._clause(clause, len(classes)))
                        classes += [_allowed(c) for c in clause.pattern]
                    alt_rows.append((first, len(clause_rows), row, mid))
        self.classes = np.array(classes, dtype=np.bool_).reshape(-1, 256)
        clauses = np.array(clause_rows, dtype=np.int64).reshape(-1, 8)
        (self.pat, self.length, self.anywhere, self.within, self.min_len,
         self.anchor) = (clauses[:, i].copy() for i in range(6))
        self.anchor_bytes = clauses[:, 6:].copy()
        alts = np.array(alt_rows, dtype=np.int64).reshape(-1, 4)
        self.first, self.last, self.row, self.mid = (alts[:, i].copy() for i in range(4))
        buckets: list[list[int]] = [[] for _ in range(2 * 257)]
        for a, alternative in enumerate(self._alternatives()):
            firsts = set(range(256))
            for clause in alternative:
                if clause.pattern and not clause.anywhere:
                    firsts &= clause.pattern[0]
            for b in (*firsts, 256):
                buckets[257 * self.mid[a] + b].append(a)
        self.bucket = np.cumsum([0] + [len(b) for b in buckets]).astype(np.int64)
        self.alts = np.array([a for b in buckets for a in b], dtype=np.int64)

    @staticmethod
    def _alternatives():
        """Every alternative, in the order of the arrays."""
        for d in DETECTORS:
            for fn, sig in ((d.at_start, d.start_signature), (d.mid_stream, d.mid_signature)):
                if fn is not None:
                    yield from (sig if sig is not None else ((),))

    @staticmethod
    def _clause(clause: Clause, pat: int) -> tuple[int, ...]:
        within = -1 if clause.within is None else clause.within
        anchor = min(range(len(clause.pattern)), key=lambda i: _cost(clause.pattern[i]), default=0)
        allowed = sorted(clause.pattern[anchor]) if clause.pattern else []
        found = (allowed * 2)[:2] if 0 < len(allowed) <= 2 else [-1, -1]
        return (pat, len(clause.pattern), int(clause.anywhere), within, clause.min_len, anchor, *found)


def _allowed(values: frozenset) -> np.ndarray:
    """One row of ``_Tables.classes``: True at the byte values allowed."""
    row = np.zeros(256, dtype=np.bool_)
    row[list(values)] = True
    return row


def _cost(allowed: frozenset) -> tuple[int, int, int]:
    """How dear a search anchored on a position holding one of ``allowed`` is:
    one or two values are looked for eight bytes at a time, more one by one;
    then how often they are met in traffic, roughly (zeros, letters, digits,
    spaces and quotes of text often; line ends and other bytes less)."""
    worst = 2 if not _COMMON.isdisjoint(allowed) else 1 if not _USUAL.isdisjoint(allowed) else 0
    return int(len(allowed) > 2), worst, len(allowed)


_COMMON = frozenset(b" \"0123456789abcdefghijklmnopqrstuvwxyz\x00\xff")
_USUAL = frozenset(range(0x20, 0x7F))


_TABLES = _Tables()


_ONES = np.uint64(0x0101010101010101)
_HIGHS = np.uint64(0x8080808080808080)


@njit(cache=True, inline="always")
def _at(buf, s, classes, p, k) -> bool:
    for i in range(k):
        if not classes[p + i, buf[s + i]]:
            return False
    return True


@njit(cache=True, inline="always")
def _find(buf, words, one, two, lo, hi) -> int:
    """The first index in ``lo .. hi - 1`` holding byte ``one`` or ``two``, else
    ``hi``; eight bytes at a time (a word without the byte has no zero byte
    after xor with it spread over the word)."""
    i = lo
    while i < hi and i & 7:
        if buf[i] == one or buf[i] == two:
            return i
        i += 1
    spread_one, spread_two = _ONES * np.uint64(one), _ONES * np.uint64(two)
    while i + 8 <= hi:
        v, w = words[i >> 3] ^ spread_one, words[i >> 3] ^ spread_two
        if ((v - _ONES) & ~v | (w - _ONES) & ~w) & _HIGHS:
            break
        i += 8
    while i < hi:
        if buf[i] == one or buf[i] == two:
            return i
        i += 1
    return hi


@njit(cache=True, inline="always")
def _search(buf, words, s, n, classes, p, k, within, anchor, one, two) -> bool:
    """The pattern anywhere in ``buf[s:s + n]`` (ending by ``within``): candidates
    where its anchor position matches, then the whole pattern there."""
    end = n if within < 0 else min(n, within)
    pos = anchor
    last = end - k + anchor       # the last anchor position whose pattern fits
    while pos <= last:
        if one >= 0:
            pos = _find(buf, words, one, two, s + pos, s + last + 1) - s
            if pos > last:
                return False
        elif not classes[p + anchor, buf[s + pos]]:
            pos += 1
            continue
        if _at(buf, s + pos - anchor, classes, p, k):
            return True
        pos += 1
    return False


@njit(cache=True)
def _candidates(buf, words, starts, lengths, mid, classes, pat, length, anywhere, within, min_len, anchor,
                anchor_bytes, first, last, row, bucket, alts, out) -> None:
    for r in range(starts.size):
        s, n, mask = starts[r], lengths[r], np.int64(0)
        b = 257 * mid[r] + (buf[s] if n > 0 else 256)
        for j in range(bucket[b], bucket[b + 1]):
            a = alts[j]
            bit = np.int64(1) << row[a]
            if mask & bit:
                continue
            holds = True
            for c in range(first[a], last[a]):
                k = length[c]
                if n < min_len[c] or n < k:
                    holds = False
                elif k == 0:
                    continue
                elif anywhere[c]:
                    holds = _search(buf, words, s, n, classes, pat[c], k, within[c], anchor[c],
                                    anchor_bytes[c, 0], anchor_bytes[c, 1])
                else:
                    holds = _at(buf, s, classes, pat[c], k)
                if not holds:
                    break
            if holds:
                mask |= bit
        out[r] = mask


def candidate_rows(pieces: Sequence[bytes], mid: Sequence[bool],
                   transports: Sequence[int] | None = None) -> list[int]:
    """The ``ROW_BIT`` mask of the rows that may accept each piece: the
    ``at_start`` rows for a piece that starts a stream, the ``mid_stream``
    rows where ``mid[i]``; when ``transports`` names the IP protocol of each
    piece's flow, only the rows that read that protocol (``Detector.transports``)."""
    n = len(pieces)
    if n == 0:
        return []
    t = _TABLES
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=n)
    starts = np.cumsum(lengths) - lengths
    joined = b"".join(pieces)
    buf = np.frombuffer(joined, dtype=np.uint8)
    words = np.frombuffer(joined, dtype=np.uint64, count=len(joined) // 8)  # the same bytes, a word at a time
    out = np.zeros(n, dtype=np.int64)
    _candidates(buf, words, starts, lengths, np.asarray(mid, dtype=np.int64), t.classes, t.pat, t.length,
                t.anywhere, t.within, t.min_len, t.anchor, t.anchor_bytes, t.first, t.last, t.row, t.bucket,
                t.alts, out)
    if transports is None:
        return out.tolist()
    return [rows & transport_rows(t) for rows, t in zip(out.tolist(), transports)]

