"""The secret patterns matched in compiled code, in time linear in the bytes.

``scan_payloads`` walks the payload of every packet of a batch once, finds
the patterns' literal anchors and confirms each anchor with that pattern's
matcher here: a hand translation of its regex in ``secrets.PATTERNS`` that
ends exactly where Python's ``re.match`` at the anchor would (tests check
the two against each other on generated payloads). It counts every match per
(flow direction, kind) and lists only the first ``max_kept`` of each, so
Python builds rows for those only.

Why hand translations rather than a regex engine: every pattern is
deterministic at its anchor. Its repeats are runs of one character class
that excludes the byte which must follow them, and its alternatives differ
in their first bytes, so backtracking can only fail where one greedy pass
fails; the matchers take that pass (a repeat ``{m,n}`` matches iff the whole
run is m..n long, or is just capped at n when nothing must follow). The
lookaheads that RE2 and Hyperscan cannot express (placeholders, the
nsswitch ``passwd:``, what may follow a value) are a byte or a word here.

The helpers are compiled without numba's reference counting
(``_nrt=False``: they allocate nothing): with it every call increments and
decrements the count of each array argument, which tripled the cost of an
anchor on dense payloads; inlining them instead (``inline="always"``)
took 57 s to compile against 13 s.

Why linear: a run is measured once per packet. Each place a pattern
measures a run (a *site*: the JWT header, a quoted value, ...) remembers
the last run it measured, and a later anchor of the same site that starts
inside that run reads its end instead of walking it again. So ``eyJ``
repeated over 64 KiB costs one walk of the segment, not 8 KiB per anchor as
Python's backtracking did. The other unbounded walks (spaces before and
after ``=``, ``*`` of a masked value) cover bytes that hold no anchor.
Measured (``benchmarks/secrets.py``, 2 shared cores): random bytes
1-1.3 GB/s, text with a credential every fourth line 400-600 MB/s, payloads
made of one anchor repeated 90-200 MB/s (the walk then stops at every byte),
where the regexes managed 0.1-3 MB/s on those.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np
from inspector.jit import njit

# -- what the kernel returns ---------------------------------------------------

HIT_PACKET, HIT_START, HIT_END, HIT_PATTERN, HIT_FLOW, HIT_DIR, HIT_COUNT = range(7)
N_HIT_COLS = 7
"""Columns of a listed match; ``HIT_COUNT`` is its number in its (direction, kind), from 1."""

# -- matchers: one per regex of secrets.PATTERNS ---------------------------------

(M_PEM, M_ASSIGNMENT, M_PASSWORD, M_URL, M_AWS_KEY_ID, M_BASIC, M_BEARER, M_TOKEN_HEADER, M_FERNET,
 M_JWT) = range(10)

# -- character classes, as in the regexes, one row per site that measures runs ------

_SITE_CLASSES = (  # (site, class as written in the regex, regex flags)
    ("pem-header", rb"[^\r\n\\]", 0),
    ("pem-body", rb"[A-Za-z0-9+/=\r\n\\]", 0),
    ("value-double-quoted", rb'[^\x00-\x1f\x7f"]', re.IGNORECASE),
    ("value-single-quoted", rb"[^\x00-\x1f\x7f']", re.IGNORECASE),
    ("value-bare", rb"""[^\x00-\x20\x7f-\xff"',;&<>{}()\[\]]""", re.IGNORECASE),
    ("url-user", rb"""[^\x00-\x20\x7f-\xff:/@"'<>]""", 0),
    ("url-password", rb"""[^\x00-\x20\x7f-\xff:/@"'<>]""", 0),
    ("basic", rb"[A-Za-z0-9+/]", re.IGNORECASE),
    ("bearer", rb"[A-Za-z0-9._~+/=-]", re.IGNORECASE),
    ("token-header", rb"[!-~]", re.IGNORECASE),
    ("fernet", rb"[A-Za-z0-9_-]", 0),
    ("jwt-header", rb"[A-Za-z0-9_-]", 0),
    ("jwt-payload", rb"[A-Za-z0-9_-]", 0),
    ("jwt-signature", rb"[A-Za-z0-9_-]", 0),
)
(S_PEM_HEADER, S_PEM_BODY, S_VALUE_DQ, S_VALUE_SQ, S_VALUE_BARE, S_URL_USER, S_URL_PASSWORD, S_BASIC, S_BEARER,
 S_TOKEN_HEADER, S_FERNET, S_JWT_HEADER, S_JWT_PAYLOAD, S_JWT_SIGNATURE) = range(len(_SITE_CLASSES))


def _table(cls: bytes, flags: int = 0) -> np.ndarray:
    """``table[b]``: byte ``b`` is in the regex character class ``cls`` (one
    search over the 256 byte values, not one match per value: 5 ms less at import)."""
    table = np.zeros(256, dtype=np.bool_)
    table[[m.start() for m in re.finditer(cls, _ALL_BYTES, flags)]] = True
    return table


_ALL_BYTES = bytes(range(256))


_RUNS = np.stack([_table(cls, flags) for _site, cls, flags in _SITE_CLASSES])
_WORD = _table(rb"\w")  # \b: ASCII word bytes
_VALUE_FOLLOW = _table(rb"""[\s\x00"',;&]""")  # what may follow a bare value
_UPPER_DIGIT = _table(rb"[0-9A-Z]")
_ALNUM = _table(rb"[0-9A-Za-z]")
_URL_HOST = _table(rb"[A-Za-z0-9\[]")
_UNSET_BARE = _table(rb"[$%*!]")  # ${VAR}, %(opt)s, ***, !vault

FOLD = np.arange(256, dtype=np.uint8)
FOLD[ord("A"):ord("Z") + 1] += 32  # ASCII lower case, as re.IGNORECASE on bytes


def _words(*words: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Words as one byte array and their bounds, for ``_word_at``."""
    return (np.frombuffer(b"".join(words), dtype=np.uint8).copy(),
            np.cumsum([0] + [len(w) for w in words]).astype(np.int64))


_PLACEHOLDERS, _PLACEHOLDER_BOUNDS = _words(b"none", b"null", b"nil", b"true", b"false")
_NSS_SOURCES, _NSS_SOURCE_BOUNDS = _words(b"files", b"compat", b"db", b"nis", b"ldap", b"sss", b"systemd", b"winbind")
_PEM_TYPES, _PEM_TYPE_BOUNDS = _words(b"RSA ", b"EC ", b"DSA ", b"OPENSSH ", b"ENCRYPTED ", b"PGP ")
_PASSWORD_KEYS, _PASSWORD_KEY_BOUNDS = _words(b"password", b"passphrase", b"passwd", b"secret")
_PASSWD, _SECRET = 2, 3  # their index in _PASSWORD_KEYS


def _literal(text: bytes) -> np.ndarray:
    return np.frombuffer(text, dtype=np.uint8).copy()


_PRIVATE_KEY = _literal(b"PRIVATE KEY")
_BLOCK_END = _literal(b" BLOCK-----")
_DASHES = _literal(b"-----")
_PEM_END = _literal(b"-----END ")
_PROC_TYPE = _literal(b"Proc-Type: ")
_DEK_INFO = _literal(b"DEK-Info: ")
_KEY_SUFFIX = _literal(b"_key")
_BASIC = _literal(b"basic")
_BEARER = _literal(b"bearer")
_EYJ = _literal(b"eyJ")

_TAB, _LF, _CR, _SPACE, _DQ, _SQ, _STAR, _DOT, _COLON, _EQ, _AT, _BACKSLASH, _LBRACE = b'\t\n\r "\'*.:=@\\{'
_N = ord("n")


@njit(cache=True, _nrt=False)
def _is(buf, p, end, lit, folded):
    """``lit`` at ``p`` (compared lower-cased when ``folded``), wholly before ``end``."""
    if p + lit.size > end:
        return False
    for k in range(lit.size):
        b = FOLD[buf[p + k]] if folded else buf[p + k]
        if b != lit[k]:
            return False
    return True


@njit(cache=True, _nrt=False)
def _word_at(buf, p, end, words, bounds, folded, bounded):
    """Index of the first of ``words`` at ``p`` (followed by ``\\b`` when ``bounded``), else -1."""
    for w in range(bounds.size - 1):
        lit = words[bounds[w]:bounds[w + 1]]
        q = p + lit.size
        if _is(buf, p, end, lit, folded) and (not bounded or q == end or not _WORD[buf[q]]):
            return w
    return -1


@njit(cache=True, _nrt=False)
def _blanks(buf, p, end):
    """End of ``[ \\t]*`` from ``p``."""
    while p < end and (buf[p] == _SPACE or buf[p] == _TAB):
        p += 1
    return p


@njit(cache=True, _nrt=False)
def _run_end(buf, q, end, site, lo, hi):
    """End of the run of ``site``'s class from ``q``; ``lo[site]..hi[site]``
    is the last run the site measured, read instead of walked again."""
    if lo[site] <= q < hi[site]:
        return hi[site]
    r = q
    while r < end and _RUNS[site, buf[r]]:
        if r == lo[site]:
            r = hi[site]
            break
        r += 1
    lo[site] = q
    hi[site] = r
    return r


@njit(cache=True, _nrt=False)
def _repeat(buf, q, end, site, lo, hi, least, most):
    """``class{least,most}`` at ``q`` where what follows is outside the
    class: end of the run if its length fits, else -1."""
    r = _run_end(buf, q, end, site, lo, hi)
    return r if least <= r - q <= most else -1


@njit(cache=True, _nrt=False)
def _capped(buf, q, end, site, lo, hi, least, most):
    """``class{least,most}`` at ``q`` with nothing required after: greedy, capped."""
    n = _run_end(buf, q, end, site, lo, hi) - q
    return q + min(n, most) if n >= least else -1


@njit(cache=True, _nrt=False)
def _equals(buf, q, end):
    """``={0,2}``."""
    for _ in range(2):
        if q < end and buf[q] == _EQ:
            q += 1
    return q


@njit(cache=True, _nrt=False)
def _pem_title(buf, q, end):
    """``(?:(?:RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP) )?PRIVATE KEY(?: BLOCK)?-----``."""
    w = _word_at(buf, q, end, _PEM_TYPES, _PEM_TYPE_BOUNDS, False, False)
    if w >= 0:
        q += _PEM_TYPE_BOUNDS[w + 1] - _PEM_TYPE_BOUNDS[w]
    if not _is(buf, q, end, _PRIVATE_KEY, False):
        return -1
    q += _PRIVATE_KEY.size
    if _is(buf, q, end, _BLOCK_END, False):
        return q + _BLOCK_END.size
    return q + _DASHES.size if _is(buf, q, end, _DASHES, False) else -1


@njit(cache=True, _nrt=False)
def _pem(buf, p, end, lo, hi):
    q = _pem_title(buf, p + len("-----BEGIN "), end)
    if q < 0:
        return -1
    while True:  # (?:(?:\r?\n|\\n)(?:Proc-Type|DEK-Info): [^\r\n\\]{1,100})*
        h = q
        if h + 1 < end and buf[h] == _CR and buf[h + 1] == _LF:
            h += 2
        elif h < end and buf[h] == _LF:
            h += 1
        elif h + 1 < end and buf[h] == _BACKSLASH and buf[h + 1] == _N:
            h += 2
        else:
            break
        if _is(buf, h, end, _PROC_TYPE, False):
            h += _PROC_TYPE.size
        elif _is(buf, h, end, _DEK_INFO, False):
            h += _DEK_INFO.size
        else:
            break
        h = _capped(buf, h, end, S_PEM_HEADER, lo, hi, 1, 100)
        if h < 0:
            break
        q = h
    q = _capped(buf, q, end, S_PEM_BODY, lo, hi, 0, 16384)
    if _is(buf, q, end, _PEM_END, False):
        t = _pem_title(buf, q + _PEM_END.size, end)
        if t >= 0:
            return t
    return q


@njit(cache=True, _nrt=False)
def _value(buf, v, end, lo, hi):
    """``_VALUE`` of secrets.py at ``v``: a quoted value (not all ``*``) or a
    bare word that is no placeholder."""
    if v >= end:
        return -1
    c = buf[v]
    if c == _DQ or c == _SQ:
        s = v + 1
        while s < end and buf[s] == _STAR:
            s += 1
        if s > v + 1 and s < end and buf[s] == c:  # (?!\*+")
            return -1
        r = _repeat(buf, v + 1, end, S_VALUE_DQ if c == _DQ else S_VALUE_SQ, lo, hi, 1, 256)
        return r + 1 if r >= 0 and r < end and buf[r] == c else -1
    if _word_at(buf, v, end, _PLACEHOLDERS, _PLACEHOLDER_BOUNDS, True, True) >= 0 or _UNSET_BARE[c]:
        return -1
    r = _repeat(buf, v, end, S_VALUE_BARE, lo, hi, 3, 256)
    return r if r >= 0 and (r == end or _VALUE_FOLLOW[buf[r]]) else -1


@njit(cache=True, _nrt=False)
def _assignment(buf, k, end, lo, hi):
    """``["']?[ \\t]*[=:][ \\t]*`` and a value after a key ending at ``k``."""
    if k < end and (buf[k] == _DQ or buf[k] == _SQ):
        k += 1
    k = _blanks(buf, k, end)
    if k >= end or (buf[k] != _EQ and buf[k] != _COLON):
        return -1
    return _value(buf, _blanks(buf, k + 1, end), end, lo, hi)


@njit(cache=True, _nrt=False)
def _password(buf, p, end, lo, hi):
    """``pass(?:word|phrase)|passwd(?!<nsswitch source>)|secret(?:_key)?`` and an assignment."""
    w = _word_at(buf, p, end, _PASSWORD_KEYS, _PASSWORD_KEY_BOUNDS, True, False)
    if w < 0:
        return -1
    k = p + _PASSWORD_KEY_BOUNDS[w + 1] - _PASSWORD_KEY_BOUNDS[w]
    if w == _PASSWD:  # not nsswitch.conf's `passwd: files systemd`
        s = _blanks(buf, k, end)
        if s < end and buf[s] == _COLON and _word_at(buf, _blanks(buf, s + 1, end), end, _NSS_SOURCES,
                                                     _NSS_SOURCE_BOUNDS, True, True) >= 0:
            return -1
    elif w == _SECRET and _is(buf, k, end, _KEY_SUFFIX, True):
        k += _KEY_SUFFIX.size
    return _assignment(buf, k, end, lo, hi)


@njit(cache=True, _nrt=False)
def _url(buf, p, end, lo, hi):
    """``://user:password@`` before a host."""
    r = _repeat(buf, p + 3, end, S_URL_USER, lo, hi, 1, 64)
    if r < 0 or r >= end or buf[r] != _COLON:
        return -1
    r = _repeat(buf, r + 1, end, S_URL_PASSWORD, lo, hi, 1, 128)
    if r < 0 or r + 1 >= end or buf[r] != _AT or not _URL_HOST[buf[r + 1]]:
        return -1
    return r + 1


@njit(cache=True, _nrt=False)
def _aws_key_id(buf, p, end):
    q = p + 20
    if q > end:
        return -1
    for k in range(p + 4, q):
        if not _UPPER_DIGIT[buf[k]]:
            return -1
    return q if q == end or not _ALNUM[buf[q]] else -1


@njit(cache=True, _nrt=False)
def _authorization(buf, p, end, scheme, site, least, most, lo, hi):
    """``authorization[ \\t]*:[ \\t]*<scheme>[ \\t]+<class>{least,most}``."""
    k = _blanks(buf, p + len("authorization"), end)
    if k >= end or buf[k] != _COLON:
        return -1
    k = _blanks(buf, k + 1, end)
    if not _is(buf, k, end, scheme, True):
        return -1
    k += scheme.size
    v = _blanks(buf, k, end)
    return _capped(buf, v, end, site, lo, hi, least, most) if v > k else -1


@njit(cache=True, _nrt=False)
def _token_header(buf, k, end, lo, hi):
    """``[ \\t]*:[ \\t]*`` and a value not ``{SHA256}...`` or masked, after the header name."""
    k = _blanks(buf, k, end)
    if k >= end or buf[k] != _COLON:
        return -1
    v = _blanks(buf, k + 1, end)
    if v < end and (buf[v] == _LBRACE or buf[v] == _STAR):
        return -1
    return _capped(buf, v, end, S_TOKEN_HEADER, lo, hi, 8, 8192)


@njit(cache=True, _nrt=False)
def _jwt(buf, p, end, lo, hi):
    r = _repeat(buf, p + 3, end, S_JWT_HEADER, lo, hi, 8, 8192)
    if r < 0 or r >= end or buf[r] != _DOT or not _is(buf, r + 1, end, _EYJ, False):
        return -1
    r = _repeat(buf, r + 1 + _EYJ.size, end, S_JWT_PAYLOAD, lo, hi, 8, 8192)
    if r < 0 or r >= end or buf[r] != _DOT:
        return -1
    return _capped(buf, r + 1, end, S_JWT_SIGNATURE, lo, hi, 0, 8192)


@njit(cache=True, _nrt=False)
def _match_end(matcher, buf, p, end, anchor_length, lo, hi):
    """End of the pattern's match at its anchor ``p`` (payload ends at ``end``), or -1."""
    if matcher == M_PEM:
        return _pem(buf, p, end, lo, hi)
    if matcher == M_ASSIGNMENT:  # the key is the anchor
        return _assignment(buf, p + anchor_length, end, lo, hi)
    if matcher == M_PASSWORD:
        return _password(buf, p, end, lo, hi)
    if matcher == M_URL:
        return _url(buf, p, end, lo, hi)
    if matcher == M_AWS_KEY_ID:
        return _aws_key_id(buf, p, end)
    if matcher == M_BASIC:
        q = _authorization(buf, p, end, _BASIC, S_BASIC, 4, 4096, lo, hi)
        return _equals(buf, q, end) if q >= 0 else -1
    if matcher == M_BEARER:
        return _authorization(buf, p, end, _BEARER, S_BEARER, 8, 8192, lo, hi)
    if matcher == M_TOKEN_HEADER:  # the header name is the anchor
        return _token_header(buf, p + anchor_length, end, lo, hi)
    if matcher == M_FERNET:
        q = _capped(buf, p + 7, end, S_FERNET, lo, hi, 80, 2048)
        return _equals(buf, q, end) if q >= 0 else -1
    if matcher == M_JWT:
        return _jwt(buf, p, end, lo, hi)
    return -1


# -- anchors and the scan ------------------------------------------------------

class Anchors(NamedTuple):
    """The anchors of all patterns as arrays for ``scan_payloads``.

    Three 64 KiB tables indexed by two raw bytes stay in cache: ``group[pair]``
    numbers the set of anchors that start with ``pair`` (0: none; case
    variants of ignore-case anchors included), ``near[pair]`` is True when
    ``pair`` starts an anchor or is its second and third byte, ``inside[pair]``
    when ``pair`` is its bytes 0-1, 1-2 or 2-3 (any second byte after a
    3-byte anchor); ``head[b]`` when byte ``b`` is one of the first three of
    an anchor.
    """

    pattern: np.ndarray  # pattern index of each anchor
    data: np.ndarray  # all anchors, concatenated
    start: np.ndarray
    length: np.ndarray
    folded: np.ndarray  # compared lower-cased
    group: np.ndarray
    members: np.ndarray  # anchors of group g: members[bounds[g]:bounds[g + 1]]
    bounds: np.ndarray
    near: np.ndarray
    inside: np.ndarray
    head: np.ndarray


def _pairs(anchor: bytes, at: int, folded: bool) -> set[int]:
    """The raw two-byte values (little-endian) that can stand for ``anchor[at:at + 2]``
    (any second byte when the anchor ends at ``at``)."""
    firsts, seconds = ({c, c.upper()} if folded else {c} for c in (anchor[at:at + 1], anchor[at + 1:at + 2]))
    return {x[0] | y << 8 for x in firsts for y in ([s[0] for s in seconds] if at + 1 < len(anchor) else range(256))}


def anchor_table(anchors: list[tuple[bytes, ...]], folded: list[bool]) -> Anchors:
    """The table of the anchors of each pattern, in pattern order (lower case where ``folded``)."""
    entries = [(i, a, f) for i, (group, f) in enumerate(zip(anchors, folded)) for a in group]
    assert all(len(a) >= 3 and (not f or a == a.lower()) for _i, a, f in entries)
    starting: dict[int, list[int]] = {}
    near = np.zeros(65536, dtype=np.bool_)
    inside = np.zeros(65536, dtype=np.bool_)
    head = np.zeros(256, dtype=np.bool_)
    for e, (_i, a, f) in enumerate(entries):
        for pair in _pairs(a, 0, f):
            starting.setdefault(pair, []).append(e)
        near[list(_pairs(a, 0, f) | _pairs(a, 1, f))] = True
        inside[list(_pairs(a, 0, f) | _pairs(a, 1, f) | _pairs(a, 2, f))] = True
        head[[c for c in a[:3] + (a[:3].upper() if f else b"")]] = True
    groups = list(dict.fromkeys(tuple(m) for m in starting.values()))
    assert len(groups) < 255
    group = np.zeros(65536, dtype=np.uint8)
    for pair, m in starting.items():
        group[pair] = groups.index(tuple(m)) + 1
    lengths = np.array([len(a) for _i, a, _f in entries], dtype=np.int64)
    return Anchors(
        pattern=np.array([i for i, _a, _f in entries], dtype=np.int64),
        data=np.frombuffer(b"".join(a for _i, a, _f in entries), dtype=np.uint8),
        start=np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64),
        length=lengths,
        folded=np.array([f for _i, _a, f in entries], dtype=np.bool_),
        group=group,
        members=np.array([e for g in groups for e in g], dtype=np.int64),
        bounds=np.cumsum([0, 0] + [len(g) for g in groups]).astype(np.int64),
        near=near,
        inside=inside,
        head=head,
    )


@njit(cache=True)
def scan_payloads(buf, offs, caps, flow_ids, dirs, skip, packet, pos, a_pattern, a_data, a_start, a_length,
                  a_folded, group, members, bounds, near, inside, head, p_matcher, p_kind, counts, max_kept, out):
    """Count the matches in the payload of packets ``packet..`` (from byte
    ``pos``) into ``counts[2 * flow + direction, kind]``, listing the first
    ``max_kept`` of each as ``HIT_*`` rows of ``out``.

    Packets of no flow (-1) and of the slots where ``skip`` is True are not
    read. An anchor must lie wholly in one payload and a match ends in it.
    Anchors are 3 bytes or more, so when the bytes at p+2, p+3 are no two
    consecutive bytes of the first four of an anchor (``inside``), none
    starts at p, p+1 or p+2 and the walk skips three bytes: on the
    benchmark captures one position in 50 passes, where the single byte p+2
    (``head``) passed one in six; two such lookups are made per branch. Then, when byte p+2 is none of the first three of an anchor, the
    walk skips three bytes too; when the bytes at p+1, p+2 neither start an
    anchor nor continue one, it skips two (Wu-Manber). At one byte the anchors are tried in
    pattern order; after a match the walk resumes at its end, so an anchor
    inside a match is part of it. Returns ``(listed, packet, pos)``: where to
    resume when ``out`` filled up, else ``packet`` is the batch size.
    """
    listed = 0
    # the runs remembered are not reset per packet: a run lies in its packet's payload,
    # and payloads do not overlap in the batch, so none of an earlier packet is ever read
    lo = np.full(_RUNS.shape[0], -1, dtype=np.int64)
    hi = np.full(_RUNS.shape[0], -1, dtype=np.int64)
    for i in range(packet, offs.size):
        flow = flow_ids[i]
        if flow < 0:
            continue
        s = 2 * flow + dirs[i]
        if s < skip.size and skip[s]:
            continue
        end = offs[i] + caps[i]
        p = max(offs[i], pos) if i == packet else offs[i]
        while p + 3 <= end:
            if p + 7 <= end and not (inside[np.int64(buf[p + 2]) | (np.int64(buf[p + 3]) << 8)]
                                     | inside[np.int64(buf[p + 5]) | (np.int64(buf[p + 6]) << 8)]):
                p += 6
                continue
            if p + 4 <= end and not inside[np.int64(buf[p + 2]) | (np.int64(buf[p + 3]) << 8)]:
                p += 3
                continue
            if not head[buf[p + 2]]:
                p += 3
                continue
            if not near[np.int64(buf[p + 1]) | (np.int64(buf[p + 2]) << 8)]:
                p += 2
                continue
            g = np.int64(group[np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8)])
            match_end = -1
            for j in range(bounds[g], bounds[g + 1]):
                e = members[j]
                n = a_length[e]
                at = a_start[e]
                k = 2
                while k < n and p + k < end and (FOLD[buf[p + k]] if a_folded[e] else buf[p + k]) == a_data[at + k]:
                    k += 1
                if k < n:
                    continue
                index = a_pattern[e]
                match_end = _match_end(p_matcher[index], buf, p, end, n, lo, hi)
                if match_end < 0:
                    continue
                kind = p_kind[index]
                count = counts[s, kind] + 1
                if count <= max_kept:
                    if listed == out.shape[0]:
                        return listed, i, p
                    out[listed, HIT_PACKET] = i
                    out[listed, HIT_START] = p
                    out[listed, HIT_END] = match_end
                    out[listed, HIT_PATTERN] = index
                    out[listed, HIT_FLOW] = flow
                    out[listed, HIT_DIR] = dirs[i]
                    out[listed, HIT_COUNT] = count
                    listed += 1
                counts[s, kind] = count
                break
            p = match_end if match_end >= 0 else p + 1
    return listed, offs.size, 0
