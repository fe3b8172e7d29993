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
from numba import njit

from .base import Clause
from .registry import DETECTORS


class _Tables:
    """The signatures of every row flattened into arrays for the kernel.

    ``classes[p, b]``: byte ``b`` allowed at pattern position ``p``.
    Clause ``c``: pattern positions ``pat[c] .. pat[c] + length[c]``, where
    (``anywhere[c]``, ending by ``within[c]``, -1: the end), ``min_len[c]``.
    Alternative ``a``: clauses ``first[a] .. last[a]`` all hold -> row
    ``row[a]`` is a candidate for regions of kind ``mid[a]`` (0: a stream
    start, 1: mid-stream). A row without a signature gets one alternative
    without clauses: always a candidate.
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
                        classes += [np.isin(np.arange(256), sorted(c)) for c in clause.pattern]
                    alt_rows.append((first, len(clause_rows), row, mid))
        self.classes = np.array(classes, dtype=np.bool_).reshape(-1, 256)
        clauses = np.array(clause_rows, dtype=np.int64).reshape(-1, 5)
        self.pat, self.length, self.anywhere, self.within, self.min_len = (clauses[:, i].copy() for i in range(5))
        alts = np.array(alt_rows, dtype=np.int64).reshape(-1, 4)
        self.first, self.last, self.row, self.mid = (alts[:, i].copy() for i in range(4))

    @staticmethod
    def _clause(clause: Clause, pat: int) -> tuple[int, int, int, int, int]:
        within = -1 if clause.within is None else clause.within
        return pat, len(clause.pattern), int(clause.anywhere), within, clause.min_len


_TABLES = _Tables()


@njit(cache=True, inline="always")
def _at(buf, s, classes, p, k) -> bool:
    for i in range(k):
        if not classes[p + i, buf[s + i]]:
            return False
    return True


@njit(cache=True, inline="always")
def _clause_holds(buf, s, n, classes, p, k, anywhere, within, min_len) -> bool:
    if n < min_len:
        return False
    if k == 0:
        return True
    if not anywhere:
        return n >= k and _at(buf, s, classes, p, k)
    end = n if within < 0 else min(n, within)
    for pos in range(end - k + 1):
        if classes[p, buf[s + pos]] and _at(buf, s + pos, classes, p, k):
            return True
    return False


@njit(cache=True)
def _candidates(buf, starts, lengths, mid, classes, pat, length, anywhere, within, min_len,
                first, last, row, alt_mid, out) -> None:
    for r in range(starts.size):
        s, n, mask = starts[r], lengths[r], np.int64(0)
        for a in range(row.size):
            bit = np.int64(1) << row[a]
            if alt_mid[a] != mid[r] or mask & bit:
                continue
            holds = True
            for c in range(first[a], last[a]):
                if not _clause_holds(buf, s, n, classes, pat[c], length[c], anywhere[c], within[c], min_len[c]):
                    holds = False
                    break
            if holds:
                mask |= bit
        out[r] = mask


def candidate_rows(pieces: Sequence[bytes], mid: Sequence[bool]) -> list[int]:
    """The ``ROW_BIT`` mask of the rows that may accept each piece: the
    ``at_start`` rows for a piece that starts a stream, the ``mid_stream``
    rows where ``mid[i]``."""
    n = len(pieces)
    if n == 0:
        return []
    t = _TABLES
    lengths = np.fromiter(map(len, pieces), dtype=np.int64, count=n)
    starts = np.cumsum(lengths) - lengths
    buf = np.frombuffer(b"".join(pieces), dtype=np.uint8)
    out = np.zeros(n, dtype=np.int64)
    _candidates(buf, starts, lengths, np.asarray(mid, dtype=np.int64), t.classes, t.pat, t.length, t.anywhere,
                t.within, t.min_len, t.first, t.last, t.row, t.mid, out)
    return out.tolist()

