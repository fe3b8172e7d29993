"""Secrets readable in cleartext payload: the proof of what a plaintext flow exposed.

The kinds of secret are data (``PATTERNS``): each is a compiled regex that
starts with one of a few literal anchors, and a label builder that says what
matched without the secret itself (``password = <12 bytes>``). A compiled
pass (``_find_anchors``) walks the payload bytes of a batch once and lists
every anchor; only there does the regex run, bounded by that packet's
payload. Measured on the batches of a synthetic bulk capture (random, zlib
and text flows with an X-Auth-Token every few lines): this scans 970 MB/s
(the anchor pass alone 1.2-1.7 GB/s, 4 GB/s over zero pages), where the
regexes over the whole batch buffer managed 15 MB/s one by one, 16 MB/s as
one alternation, 46 MB/s behind a literal prefilter (``anchor in buffer``)
and 98 MB/s as literal-prefix regexes over a lower-cased copy.

Limits, by design:

- A secret is matched within one packet's payload: one that straddles two
  TCP segments (or a packet cut by the snaplen) is missed.
- Counts per (flow, direction, kind) are exact; only the first
  ``MAX_KEPT`` matches of each keep a row with its excerpt, so memory grows
  with the number of flows, not with the capture.
- An anchor inside a match is part of it: a Fernet token in an
  ``X-Auth-Token`` header counts once, as the header. At the same byte the
  pattern listed first is tried first.
- Stream offsets are TCP only (-1 otherwise), relative to the direction's
  base sequence number like every other offset of the flow.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from inspector.capture import constants as C
from inspector.capture import decode as D
from inspector.capture.reader import PacketBatch
from inspector.findings.schema import SECRET_COLUMNS, SECRET_COUNT_COLUMNS
from inspector.flows import kernels as K
from inspector.jit import njit
from inspector.tables import typed


MAX_KEPT = 4
"""Matches kept with an excerpt per (flow, direction, kind); the rest are counted."""
EXCERPT_CONTEXT = 48
"""Bytes of payload kept before and after a match."""
EXCERPT_MAX = 256
NAME_MAX = 64
"""Longest key or URL scheme taken in front of an anchor (``admin_`` of ``admin_password``)."""

_QUOTES = b"\"'"
Label = Callable[[re.Match[bytes], bytes], str]
"""What matched, from the match and the name bytes in front of its anchor, never the value."""


@dataclass(frozen=True)
class SecretPattern:
    """One way a secret shows in clear text.

    Every match of ``regex`` starts with one of ``anchors`` (lower case and
    compared case-insensitively when ``regex`` ignores case). ``name_chars``
    is a regex class of the characters in front of the anchor that belong to
    the match, such as the key prefix of ``db_password`` or the scheme of a
    URL.
    """

    name: str
    kind: str
    anchors: tuple[bytes, ...]
    regex: re.Pattern[bytes]
    label: Label
    name_chars: bytes = b""

    @property
    def ignore_case(self) -> bool:
        return bool(self.regex.flags & re.IGNORECASE)


def _size(value: bytes) -> str:
    """``<12 bytes>``: the length of a value without its quotes."""
    return f"<{len(value.strip(_QUOTES))} bytes>"


def _text(raw: bytes) -> str:
    return raw.decode("ascii", "replace")


def _assignment(m: re.Match[bytes], name: bytes) -> str:
    """``admin_password: <7 bytes>`` or ``password = <12 bytes>``: the key as written."""
    sep = ":" if m["sep"].strip() == b":" else " ="
    return f"{_text(name + m['key'])}{sep} {_size(m['value'])}"


def _token_form(value: bytes) -> str:
    if value.startswith(b"gAAAAA"):
        return " (Keystone Fernet)"
    if value.startswith(b"eyJ"):
        return " (JWT)"
    return ""


def _header(m: re.Match[bytes], _name: bytes) -> str:
    """``X-Auth-Token: <183 bytes> (Keystone Fernet)``."""
    return f"{_text(m['key'])}: {_size(m['value'])}{_token_form(m['value'])}"


_PEM_TYPES = {b"RSA ": "PEM RSA private key", b"EC ": "PEM EC private key", b"DSA ": "PEM DSA private key",
              b"OPENSSH ": "OpenSSH private key", b"ENCRYPTED ": "PEM encrypted private key (PKCS#8)",
              b"PGP ": "PGP private key block", b"": "PEM private key (PKCS#8)"}


def _pem(m: re.Match[bytes], _name: bytes) -> str:
    label = _PEM_TYPES[m["type"] or b""]
    return label + (", passphrase-protected" if b"ENCRYPTED" in m["headers"] else "")


def _url(m: re.Match[bytes], scheme: bytes) -> str:
    return f"{_text(scheme)}:// URL with credentials" if scheme else "URL with credentials"


def _fixed(text: str) -> Label:
    return lambda m, _name: f"{text} <{len(m[0])} bytes>"


# A value after `key = `, `key: ` or `"key": `: quoted, or bare printable ASCII up
# to the end of the word. Placeholders are not secrets: <None>, ${VAR}, %(opt)s,
# {{ jinja }}, !vault, masked *** and JSON null/true/false.
_VALUE = (rb"""(?P<value>"(?!\*+")[^\x00-\x1f\x7f"]{1,256}"|'(?!\*+')[^\x00-\x1f\x7f']{1,256}'"""
          rb"""|(?!(?:none|null|nil|true|false)\b)(?![$%*!])[^\x00-\x20\x7f-\xff"',;&<>{}()\[\]]{3,256}"""
          rb"""(?![^\s\x00"',;&]))""")
_SEP = rb"""["']?(?P<sep>[ \t]*[=:][ \t]*)"""
_KEY_CHARS = rb"[A-Za-z0-9_.-]"


def _keyed(keys: bytes) -> re.Pattern[bytes]:
    return re.compile(rb"(?P<key>" + keys + rb")" + _SEP + _VALUE, re.IGNORECASE)


PATTERNS: tuple[SecretPattern, ...] = (
    SecretPattern(
        "pem-private-key", "private-key", (b"-----BEGIN ",),
        re.compile(rb"-----BEGIN (?P<type>(?:RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP) )?PRIVATE KEY(?: BLOCK)?-----"
                   rb"(?P<headers>(?:(?:\r?\n|\\n)(?:Proc-Type|DEK-Info): [^\r\n\\]{1,100})*)"
                   rb"[A-Za-z0-9+/=\r\n\\]{0,16384}"
                   rb"(?:-----END (?:(?:RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP) )?PRIVATE KEY(?: BLOCK)?-----)?"),
        _pem),
    SecretPattern(
        "cloud-secret-assignment", "cloud-credential",
        (b"aws_secret_access_key", b"aws_session_token", b"application_credential_secret"),
        _keyed(rb"aws_secret_access_key|aws_session_token|application_credential_secret"),
        _assignment, _KEY_CHARS),
    SecretPattern(
        "url-credentials", "cloud-credential", (b"://",),
        # transport_url = rabbit://nova:pw@ctl:5672/, [database] connection = mysql+pymysql://nova:pw@ctl/nova
        re.compile(rb"://[^\x00-\x20\x7f-\xff:/@\"'<>]{1,64}:[^\x00-\x20\x7f-\xff:/@\"'<>]{1,128}@(?=[A-Za-z0-9\[])"),
        _url, rb"[A-Za-z0-9+.-]"),
    SecretPattern(
        "aws-access-key-id", "cloud-credential", (b"AKIA", b"ASIA"),
        re.compile(rb"(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Za-z])"),
        _fixed("AWS access key id")),
    SecretPattern(
        "http-basic-auth", "basic-auth", (b"authorization",),
        re.compile(rb"(?P<key>authorization)[ \t]*:[ \t]*basic[ \t]+(?P<value>[A-Za-z0-9+/]{4,4096}={0,2})",
                   re.IGNORECASE),
        lambda m, _name: f"Authorization: Basic {_size(m['value'])}"),
    SecretPattern(
        "http-bearer", "token", (b"authorization",),
        re.compile(rb"(?P<key>authorization)[ \t]*:[ \t]*bearer[ \t]+(?P<value>[A-Za-z0-9._~+/=-]{8,8192})",
                   re.IGNORECASE),
        lambda m, _name: f"Authorization: Bearer {_size(m['value'])}{_token_form(m['value'])}"),
    SecretPattern(
        "openstack-token-header", "token", (b"x-auth-token", b"x-subject-token"),
        # keystonemiddleware logs tokens as {SHA256}<hash>: not a secret
        re.compile(rb"(?P<key>x-(?:auth|subject)-token)[ \t]*:[ \t]*(?P<value>(?![{*])[!-~]{8,8192})",
                   re.IGNORECASE),
        _header),
    SecretPattern(
        "keystone-fernet-token", "token", (b"gAAAAAB",),
        re.compile(rb"gAAAAAB[A-Za-z0-9_-]{80,2048}={0,2}"),
        _fixed("Keystone Fernet token")),
    SecretPattern(
        "jwt", "token", (b"eyJ",),
        re.compile(rb"eyJ[A-Za-z0-9_-]{8,8192}\.eyJ[A-Za-z0-9_-]{8,8192}\.[A-Za-z0-9_-]{0,8192}"),
        _fixed("JWT")),
    SecretPattern(
        "token-assignment", "token", (b"token",),
        _keyed(rb"token"), _assignment, _KEY_CHARS),
    SecretPattern(
        "password-assignment", "password", (b"password", b"passwd", b"passphrase", b"secret"),
        # nova.conf `password = x`, ansible `admin_password: x`, JSON `"password": "x"`, `OS_PASSWORD=x`
        # but not nsswitch.conf `passwd: files systemd`
        _keyed(rb"pass(?:word|phrase)|passwd(?![ \t]*:[ \t]*(?:files|compat|db|nis|ldap|sss|systemd|winbind)\b)"
               rb"|secret(?:_key)?"),
        _assignment, _KEY_CHARS),
)
"""Most specific first: at the same byte, the earlier pattern wins."""


# -- anchor search ---------------------------------------------------------

_FOLD = np.arange(256, dtype=np.uint8)
_FOLD[ord("A"):ord("Z") + 1] += 32  # ASCII lower case, as re.IGNORECASE on bytes


class _Anchors(NamedTuple):
    """The anchors of all patterns as arrays for ``_find_anchors``.

    Two 64 KiB tables indexed by two raw bytes stay in cache: ``group[pair]``
    numbers the set of anchors that start with ``pair`` (0: none; case
    variants of ignore-case anchors included), ``near[pair]`` is True when
    ``pair`` starts an anchor or is its second and third byte; ``head[b]``
    when byte ``b`` is one of the first three of an anchor.
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
    head: np.ndarray


def _pairs(anchor: bytes, at: int, folded: bool) -> set[int]:
    """The raw two-byte values (little-endian) that can stand for ``anchor[at:at + 2]``."""
    firsts, seconds = ({c, c.upper()} if folded else {c} for c in (anchor[at:at + 1], anchor[at + 1:at + 2]))
    return {x[0] | y[0] << 8 for x in firsts for y in seconds}


def _anchor_table(patterns: tuple[SecretPattern, ...]) -> _Anchors:
    entries = [(i, a, p.ignore_case) for i, p in enumerate(patterns) for a in p.anchors]
    assert all(len(a) >= 3 and (not folded or a == a.lower()) for _i, a, folded in entries)
    starting: dict[int, list[int]] = {}
    near = np.zeros(65536, dtype=np.bool_)
    head = np.zeros(256, dtype=np.bool_)
    for e, (_i, a, folded) in enumerate(entries):
        for pair in _pairs(a, 0, folded):
            starting.setdefault(pair, []).append(e)
        near[list(_pairs(a, 0, folded) | _pairs(a, 1, folded))] = True
        head[[c for c in a[:3] + (a[:3].upper() if folded else b"")]] = True
    groups = list(dict.fromkeys(tuple(m) for m in starting.values()))
    assert len(groups) < 255
    group = np.zeros(65536, dtype=np.uint8)
    for pair, m in starting.items():
        group[pair] = groups.index(tuple(m)) + 1
    lengths = np.array([len(a) for _i, a, _f in entries], dtype=np.int64)
    return _Anchors(
        pattern=np.array([i for i, _a, _f in entries], dtype=np.int64),
        data=np.frombuffer(b"".join(a for _i, a, _f in entries), dtype=np.uint8),
        start=np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64),
        length=lengths,
        folded=np.array([f for _i, _a, f in entries], dtype=np.bool_),
        group=group,
        members=np.array([e for g in groups for e in g], dtype=np.int64),
        bounds=np.cumsum([0, 0] + [len(g) for g in groups]).astype(np.int64),
        near=near,
        head=head,
    )


_ANCHORS = _anchor_table(PATTERNS)
_FOUND_ROWS = 8192  # anchors listed per call of _find_anchors
HIT_PACKET, HIT_POS, HIT_END, HIT_PATTERN, HIT_FLOW, HIT_DIR = range(6)


@njit(cache=True)
def _find_anchors(buf, offs, caps, flow_ids, dirs, packet, pos, fold, a_pattern, a_data, a_start, a_length,
                  a_folded, group, members, bounds, near, head, out):
    """List the anchors in the payload of packets ``packet..`` (from ``pos``)
    as rows of ``out`` (columns ``HIT_*``: the payload end, pattern, flow and
    direction come along so that Python reads no array per hit).

    An anchor must lie wholly in one payload. Anchors are 3 bytes or more,
    so when byte p+2 is none of the first three of an anchor, none starts at
    p, p+1 or p+2 and the walk skips three bytes; when the bytes at p+1, p+2
    neither start an anchor nor continue one, it skips two (Wu-Manber). Returns
    ``(found, packet, pos)``: where to resume when ``out`` filled up, else
    ``packet`` is the batch size.
    """
    found = 0
    for i in range(packet, offs.size):
        if flow_ids[i] < 0:
            continue
        end = offs[i] + caps[i]
        p = max(offs[i], pos) if i == packet else offs[i]
        while p + 3 <= end:
            if not head[buf[p + 2]]:
                p += 3
                continue
            if not near[np.int64(buf[p + 1]) | (np.int64(buf[p + 2]) << 8)]:
                p += 2
                continue
            g = np.int64(group[np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8)])
            for j in range(bounds[g], bounds[g + 1]):
                e = members[j]
                n = a_length[e]
                s = a_start[e]
                k = 2
                while k < n and p + k < end and (fold[buf[p + k]] if a_folded[e] else buf[p + k]) == a_data[s + k]:
                    k += 1
                if k == n:
                    if found == out.shape[0]:
                        return found, i, p
                    out[found, HIT_PACKET] = i
                    out[found, HIT_POS] = p
                    out[found, HIT_END] = end
                    out[found, HIT_PATTERN] = a_pattern[e]
                    out[found, HIT_FLOW] = flow_ids[i]
                    out[found, HIT_DIR] = dirs[i]
                    found += 1
            p += 1
    return found, offs.size, 0


# -- scanner ---------------------------------------------------------------

@dataclass
class _Kept:
    flow: int
    direction: int  # 0: endpoint A sent (the flow table's packet direction)
    kind: str
    ts: int
    offset: int
    length: int
    label: str
    excerpt: bytes


class SecretScanner:
    """Scan every batch for secrets; ``take`` turns the matches of flows
    that ended into tables.

    Example::

        scanner = SecretScanner()
        for batch in reader:
            flow_ids, dirs = table.add(batch)
            scanner.scan(batch, flow_ids, dirs, table.slot)
        ended = table.open_ids()
        flows, orig_slot, _ = build_flows(table.close(ended), ...)   # then classified
        secrets, counts = scanner.take(ended.tolist(), flows, orig_slot)
    """

    def __init__(self, patterns: tuple[SecretPattern, ...] = PATTERNS,
                 on_first: Callable[[int, int, str, str], None] | None = None) -> None:
        """``on_first(flow, direction, kind, label)`` hears the first match of
        each (flow, direction, kind) as the batch is scanned (the live
        sensor's alerts); ``label`` is redacted like the reports'."""
        self.patterns = patterns
        self.on_first = on_first
        self.anchors = _ANCHORS if patterns is PATTERNS else _anchor_table(patterns)
        self.name_tails = [re.compile(p.name_chars + b"{1,%d}\\Z" % NAME_MAX) if p.name_chars else None
                           for p in patterns]
        self.counts: dict[int, dict[tuple[int, str], int]] = {}  # flow -> (direction, kind) -> matches
        self.kept: dict[int, list[_Kept]] = {}  # flow -> the first MAX_KEPT matches of each (direction, kind)
        self._found = np.empty((_FOUND_ROWS, 6), dtype=np.int64)

    def scan(self, batch: PacketBatch, flow_ids: np.ndarray, dirs: np.ndarray, slot: np.ndarray) -> None:
        """Count the secrets in the payload of a batch, keeping the first few.

        ``flow_ids`` and ``dirs`` are the packets' flows and directions, as
        ``FlowTable.add`` returns them; ``slot`` is the table's per-direction
        state after the batch, for stream offsets.
        """
        if not self.patterns:
            return
        view = memoryview(batch.buf)
        reached = (-1, 0)  # packet and end of the last match: an anchor inside it is part of it
        for packet, pos, end, index, flow, direction in self._anchor_hits(batch, flow_ids, dirs):
            if (packet, pos) < reached:
                continue
            m = self.patterns[index].regex.match(view, pos, end)
            if m is None:
                continue
            reached = (packet, m.end())
            key = (flow, direction, self.patterns[index].kind)
            counts = self.counts.setdefault(flow, {})
            counts[key[1:]] = count = counts.get(key[1:], 0) + 1
            if count <= MAX_KEPT:
                self.kept.setdefault(flow, []).append(kept := self._kept(batch, view, packet, index, m, key, slot))
                if count == 1 and self.on_first:
                    self.on_first(flow, direction, kept.kind, kept.label)

    def _anchor_hits(self, batch: PacketBatch, flow_ids: np.ndarray, dirs: np.ndarray) -> list[list[int]]:
        """Every anchor in the batch's payload, in packet order, as ``HIT_*`` rows."""
        a = self.anchors
        offs, caps = batch.fields[D.F_PAYLOAD_OFF], batch.fields[D.F_PAYLOAD_CAP]
        hits: list[list[int]] = []
        packet, pos = 0, 0
        while packet < offs.size:
            n, packet, pos = _find_anchors(batch.buf, offs, caps, flow_ids, dirs, packet, pos, _FOLD, a.pattern,
                                           a.data, a.start, a.length, a.folded, a.group, a.members, a.bounds,
                                           a.near, a.head, self._found)
            hits += self._found[:n].tolist()
        return hits

    def _kept(self, batch: PacketBatch, view: memoryview, packet: int, index: int, m: re.Match[bytes],
              key: tuple[int, int, str], slot: np.ndarray) -> _Kept:
        """The row of a match: its name in front of the anchor, excerpt and stream offset."""
        f = batch.fields[:, packet]
        payload, end = int(f[D.F_PAYLOAD_OFF]), int(f[D.F_PAYLOAD_OFF] + f[D.F_PAYLOAD_CAP])
        tail = self.name_tails[index]
        name = tail.search(view, max(payload, m.start() - NAME_MAX), m.start()) if tail is not None else None
        start = name.start() if name else m.start()
        first = max(payload, start - EXCERPT_CONTEXT)
        last = min(end, m.end() + EXCERPT_CONTEXT, first + EXCERPT_MAX)
        flow, direction, kind = key
        offset = _stream_offset(slot, 2 * flow + direction, int(f[D.F_PROTO]), int(f[D.F_TCP_SEQ]), start - payload)
        return _Kept(flow, direction, kind, int(f[D.F_TS]), offset, m.end() - start,
                     self.patterns[index].label(m, bytes(view[start:m.start()])), bytes(view[first:last]))

    def take(self, fids: list[int], flows: pd.DataFrame, orig_slot: np.ndarray, *,
             ended: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The secrets table (``SECRET_COLUMNS``) and the exact counts
        (``SECRET_COUNT_COLUMNS``) of these flows, those whose verdict is not
        encrypted; ``ended`` drops their matches (ids are reused).

        ``flows`` has one row per flow of ``fids``, in that order (``uid``
        and ``verdict`` are read); ``orig_slot`` is the originator's slot of
        each, numbered by position, as ``build_flows`` returns it.
        """
        uids = flows["uid"].to_numpy()
        shown = flows["verdict"].astype(str).to_numpy() != "encrypted"

        def role(i: int, direction: int) -> str:
            return "orig" if orig_slot[i] == 2 * i + direction else "resp"

        rows, counts = [], []
        for i, flow in enumerate(fids):
            kept = self.kept.pop(flow, []) if ended else self.kept.get(flow, [])
            found = self.counts.pop(flow, {}) if ended else self.counts.get(flow, {})
            if shown[i]:
                rows += [(uids[i], role(i, k.direction), k.kind, k.ts, k.offset, k.length, k.label, k.excerpt)
                         for k in kept]
                counts += [(uids[i], role(i, direction), kind, n) for (direction, kind), n in found.items()]
        secrets = typed(pd.DataFrame(rows, columns=list(SECRET_COLUMNS)), SECRET_COLUMNS)
        return (sort_secrets(secrets),
                sort_secret_counts(typed(pd.DataFrame(counts, columns=list(SECRET_COUNT_COLUMNS)),
                                         SECRET_COUNT_COLUMNS)))


def sort_secrets(secrets: pd.DataFrame) -> pd.DataFrame:
    return secrets.sort_values(["ts", "uid", "offset"], kind="stable").reset_index(drop=True)


def sort_secret_counts(counts: pd.DataFrame) -> pd.DataFrame:
    return counts.sort_values(["uid", "direction", "kind"]).reset_index(drop=True)


def _stream_offset(slot: np.ndarray, s: int, proto: int, seq: int, at: int) -> int:
    """Stream offset of payload byte ``at`` of a TCP segment, unwrapped against
    the direction's furthest offset as the flow kernels do; -1 if unknown."""
    base = int(slot[s, K.SL_BASE_SEQ])
    if proto != C.IPPROTO_TCP or base < 0:
        return -1
    offset = int(K.unwrap_seq(seq + at, base, int(slot[s, K.SL_MAX_END])))
    return offset if offset >= 0 else -1
