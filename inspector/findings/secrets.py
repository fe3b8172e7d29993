"""Secrets readable in cleartext payload: the proof of what a plaintext flow exposed.

The kinds of secret are data (``PATTERNS``): each is a regex that starts
with one of a few literal anchors, its compiled translation
(``secret_match``) and a label builder that says what matched without the
secret itself (``password = <12 bytes>``). One compiled pass
(``secret_match.scan_payloads``) walks the payload bytes of a batch, confirms
each anchor with its pattern's matcher and counts the matches; Python sees
only the first ``MAX_KEPT`` of each (flow, direction, kind), where the regex
runs again to label them. The matchers end exactly where the regexes would
(tests compare them on generated payloads) in time linear in the bytes
whatever they hold: Python's backtracking cost up to 8 KiB per anchor, 9 s
for 1 MiB of ``eyJ`` repeated. ``benchmarks/secrets.py`` prints the rates.

Limits, by design:

- A secret is matched within one packet's payload: one that straddles two
  TCP segments (or a packet cut by the snaplen) is missed.
- Counts per (flow, direction, kind) are exact (an array by flow-table
  slot); only the first ``MAX_KEPT`` matches of each keep a row with its
  excerpt, so memory grows with the number of flows, not with the capture.
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

import numpy as np
import pandas as pd

from inspector.capture import constants as C
from inspector.capture import decode as D
from inspector.capture.reader import PacketBatch
from inspector.findings import secret_match as M
from inspector.schema import SECRET_COLUMNS, SECRET_COUNT_COLUMNS, Columns
from inspector.flows import kernels as K
from inspector.tables import strings, typed

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
    compared case-insensitively when ``regex`` ignores case); ``matcher``
    names its compiled translation in ``secret_match``, which finds and
    counts the matches (the regex then only labels the few kept). ``name_chars``
    is a regex class of the characters in front of the anchor that belong to
    the match, such as the key prefix of ``db_password`` or the scheme of a
    URL.
    """

    name: str
    kind: str
    anchors: tuple[bytes, ...]
    regex: re.Pattern[bytes]
    matcher: int
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
        M.M_PEM, _pem),
    SecretPattern(
        "cloud-secret-assignment", "cloud-credential",
        (b"aws_secret_access_key", b"aws_session_token", b"application_credential_secret"),
        _keyed(rb"aws_secret_access_key|aws_session_token|application_credential_secret"),
        M.M_ASSIGNMENT, _assignment, _KEY_CHARS),
    SecretPattern(
        "url-credentials", "cloud-credential", (b"://",),
        # transport_url = rabbit://nova:pw@ctl:5672/, [database] connection = mysql+pymysql://nova:pw@ctl/nova
        re.compile(rb"://[^\x00-\x20\x7f-\xff:/@\"'<>]{1,64}:[^\x00-\x20\x7f-\xff:/@\"'<>]{1,128}@(?=[A-Za-z0-9\[])"),
        M.M_URL, _url, rb"[A-Za-z0-9+.-]"),
    SecretPattern(
        "aws-access-key-id", "cloud-credential", (b"AKIA", b"ASIA"),
        re.compile(rb"(?:AKIA|ASIA)[0-9A-Z]{16}(?![0-9A-Za-z])"),
        M.M_AWS_KEY_ID, _fixed("AWS access key id")),
    SecretPattern(
        "http-basic-auth", "basic-auth", (b"authorization",),
        re.compile(rb"(?P<key>authorization)[ \t]*:[ \t]*basic[ \t]+(?P<value>[A-Za-z0-9+/]{4,4096}={0,2})",
                   re.IGNORECASE),
        M.M_BASIC, lambda m, _name: f"Authorization: Basic {_size(m['value'])}"),
    SecretPattern(
        "http-bearer", "token", (b"authorization",),
        re.compile(rb"(?P<key>authorization)[ \t]*:[ \t]*bearer[ \t]+(?P<value>[A-Za-z0-9._~+/=-]{8,8192})",
                   re.IGNORECASE),
        M.M_BEARER, lambda m, _name: f"Authorization: Bearer {_size(m['value'])}{_token_form(m['value'])}"),
    SecretPattern(
        "openstack-token-header", "token", (b"x-auth-token", b"x-subject-token"),
        # keystonemiddleware logs tokens as {SHA256}<hash>: not a secret
        re.compile(rb"(?P<key>x-(?:auth|subject)-token)[ \t]*:[ \t]*(?P<value>(?![{*])[!-~]{8,8192})",
                   re.IGNORECASE),
        M.M_TOKEN_HEADER, _header),
    SecretPattern(
        "keystone-fernet-token", "token", (b"gAAAAAB",),
        re.compile(rb"gAAAAAB[A-Za-z0-9_-]{80,2048}={0,2}"),
        M.M_FERNET, _fixed("Keystone Fernet token")),
    SecretPattern(
        "jwt", "token", (b"eyJ",),
        re.compile(rb"eyJ[A-Za-z0-9_-]{8,8192}\.eyJ[A-Za-z0-9_-]{8,8192}\.[A-Za-z0-9_-]{0,8192}"),
        M.M_JWT, _fixed("JWT")),
    SecretPattern(
        "token-assignment", "token", (b"token",),
        _keyed(rb"token"), M.M_ASSIGNMENT, _assignment, _KEY_CHARS),
    SecretPattern(
        "password-assignment", "password", (b"password", b"passwd", b"passphrase", b"secret"),
        # nova.conf `password = x`, ansible `admin_password: x`, JSON `"password": "x"`, `OS_PASSWORD=x`
        # but not nsswitch.conf `passwd: files systemd`
        _keyed(rb"pass(?:word|phrase)|passwd(?![ \t]*:[ \t]*(?:files|compat|db|nis|ldap|sss|systemd|winbind)\b)"
               rb"|secret(?:_key)?"),
        M.M_PASSWORD, _assignment, _KEY_CHARS),
)
"""Most specific first: at the same byte, the earlier pattern wins."""


# -- scanner ---------------------------------------------------------------

def _anchor_table(patterns: tuple[SecretPattern, ...]) -> M.Anchors:
    return M.anchor_table([p.anchors for p in patterns], [p.ignore_case for p in patterns])


_ANCHORS = _anchor_table(PATTERNS)
_LISTED_ROWS = 8192  # matches listed per call of scan_payloads
_NO_SKIP = np.zeros(0, dtype=np.bool_)


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
        columns, orig_slot, _ = flow_columns(table.close(ended), ...)   # then classified
        secrets, counts = scanner.take(ended.tolist(), flows, orig_slot)  # flows: uid, verdict columns
    """

    def __init__(self, patterns: tuple[SecretPattern, ...] = PATTERNS,
                 on_first: Callable[[int, int, str, str], None] | None = None) -> None:
        """``on_first(flow, direction, kind, label)`` hears the first match of
        each (flow, direction, kind) as the batch is scanned (the live
        sensor's alerts); ``label`` is redacted like the reports'."""
        self.patterns = patterns
        self.on_first = on_first
        self.anchors = _ANCHORS if patterns is PATTERNS else _anchor_table(patterns)
        self.kinds = list(dict.fromkeys(p.kind for p in patterns))
        self.matcher = np.array([p.matcher for p in patterns], dtype=np.int64)
        self.kind_of = np.array([self.kinds.index(p.kind) for p in patterns], dtype=np.int64)
        self.name_tails = [re.compile(p.name_chars + b"{1,%d}\\Z" % NAME_MAX) if p.name_chars else None
                           for p in patterns]
        self.counts = np.zeros((0, len(self.kinds)), dtype=np.int64)  # [2 * flow + direction, kind]: matches
        self.kept: dict[int, list[_Kept]] = {}  # flow -> the first MAX_KEPT matches of each (direction, kind)
        self._listed = np.empty((_LISTED_ROWS, M.N_HIT_COLS), dtype=np.int64)

    def scan(self, batch: PacketBatch, flow_ids: np.ndarray, dirs: np.ndarray, slot: np.ndarray,
             skip: np.ndarray | None = None) -> None:
        """Count the secrets in the payload of a batch, keeping the first few.

        ``flow_ids`` and ``dirs`` are the packets' flows and directions, as
        ``FlowTable.add`` returns them; ``slot`` is the table's per-direction
        state after the batch, for stream offsets. ``skip``, indexed by slot
        (``2 * flow + direction``), marks directions not to read (already
        proven encrypted); slots past its end are read.
        """
        if not self.patterns or not flow_ids.size:
            return
        self._grow(2 * int(flow_ids.max()) + 2)
        offs, caps = batch.fields[D.F_PAYLOAD_OFF], batch.fields[D.F_PAYLOAD_CAP]
        skip = _NO_SKIP if skip is None else skip
        view = memoryview(batch.buf)
        packet, pos = 0, 0
        while packet < offs.size:
            n, packet, pos = M.scan_payloads(batch.buf, offs, caps, flow_ids, dirs, skip, packet, pos, *self.anchors,
                                             self.matcher, self.kind_of, self.counts, MAX_KEPT, self._listed)
            for row in self._listed[:n].tolist():
                self._keep(batch, view, row, slot)

    def _matched(self, fids: list[int]) -> np.ndarray:
        """Positions in ``fids`` of the flows with a count or a kept match."""
        ids = np.asarray(fids, dtype=np.int64)
        scanned = np.flatnonzero(2 * ids + 1 < len(self.counts))
        counted = np.zeros(ids.size, dtype=bool)
        counted[scanned] = (self.counts[2 * ids[scanned]] | self.counts[2 * ids[scanned] + 1]).any(axis=1)
        if self.kept:
            counted |= np.isin(ids, np.fromiter(self.kept, dtype=np.int64, count=len(self.kept)))
        return np.flatnonzero(counted)

    def _grow(self, slots: int) -> None:
        """Room in ``counts`` for ``slots`` slots (flow ids grow with the flow table)."""
        if slots > len(self.counts):
            grown = np.zeros((max(slots, 2 * len(self.counts)), len(self.kinds)), dtype=np.int64)
            grown[:len(self.counts)] = self.counts
            self.counts = grown

    def _keep(self, batch: PacketBatch, view: memoryview, row: list[int], slot: np.ndarray) -> None:
        """The row of a listed match: its label from the regex, the name in
        front of its anchor, its excerpt and stream offset."""
        packet, start, end, index, flow, direction, count = row
        pattern = self.patterns[index]
        f = batch.fields[:, packet]
        payload, stop = int(f[D.F_PAYLOAD_OFF]), int(f[D.F_PAYLOAD_OFF] + f[D.F_PAYLOAD_CAP])
        m = pattern.regex.match(view, start, stop)
        if m is None or m.end() != end:
            raise AssertionError(f"secret pattern {pattern.name}: compiled match {start}..{end} is not the regex's")
        tail = self.name_tails[index]
        name = tail.search(view, max(payload, start - NAME_MAX), start) if tail is not None else None
        first_byte = name.start() if name else start
        first = max(payload, first_byte - EXCERPT_CONTEXT)
        last = min(stop, end + EXCERPT_CONTEXT, first + EXCERPT_MAX)
        offset = _stream_offset(slot, 2 * flow + direction, int(f[D.F_PROTO]), int(f[D.F_TCP_SEQ]),
                                first_byte - payload)
        kept = _Kept(flow, direction, pattern.kind, int(f[D.F_TS]), offset, end - first_byte,
                     pattern.label(m, bytes(view[first_byte:start])), bytes(view[first:last]))
        self.kept.setdefault(flow, []).append(kept)
        if count == 1 and self.on_first:
            self.on_first(flow, direction, kept.kind, kept.label)

    def take(self, fids: list[int], flows: pd.DataFrame, orig_slot: np.ndarray, *,
             ended: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The secrets table (``SECRET_COLUMNS``) and the exact counts
        (``SECRET_COUNT_COLUMNS``) of these flows, those whose verdict is not
        encrypted; ``ended`` drops their matches (ids are reused).

        ``flows`` has one row per flow of ``fids``, in that order (``uid``
        and ``verdict`` are read); ``orig_slot`` is the originator's slot of
        each, numbered by position, as ``flow_columns`` returns it.
        """
        uids = flows["uid"].to_numpy()
        shown = None  # verdict is not encrypted: read only once a flow has a match

        def role(i: int, direction: int) -> str:
            return "orig" if orig_slot[i] == 2 * i + direction else "resp"

        rows, counts = [], []
        for i in self._matched(fids).tolist():  # the flows with a match (most have none)
            flow = fids[i]
            kept = self.kept.pop(flow, []) if ended else self.kept.get(flow, [])
            found = self.counts[2 * flow:2 * flow + 2]  # empty for a flow never scanned
            if kept or found.any():
                if shown is None:
                    shown = flows["verdict"].astype(str).to_numpy() != "encrypted"
                if shown[i]:
                    rows += [(uids[i], role(i, k.direction), k.kind, k.ts, k.offset, k.length, k.label, k.excerpt)
                             for k in kept]
                    counts += [(uids[i], role(i, d), self.kinds[k], int(found[d, k]))
                               for d, k in zip(*found.nonzero())]
                if ended:
                    found[:] = 0
        return (_secrets_table(rows) if rows else _empty(SECRET_COLUMNS),
                _counts_table(counts) if counts else _empty(SECRET_COUNT_COLUMNS))


def _strings(values) -> pd.api.extensions.ExtensionArray:
    return strings(np.array(values, dtype=object))


def _secrets_table(rows: list[tuple]) -> pd.DataFrame:
    """``SECRET_COLUMNS`` of these rows, typed and sorted as ``sort_secrets`` sorts (built once)."""
    uid, direction, kind, ts, offset, length, label, excerpt = zip(*rows)
    ts, offset = np.array(ts, dtype=np.int64), np.array(offset, dtype=np.int64)
    uid = np.array(uid, dtype=object)
    order = np.lexsort((offset, np.unique(uid.astype(str), return_inverse=True)[1].ravel(), ts))
    excerpts = np.empty(len(rows), dtype=object)
    excerpts[:] = [excerpt[i] for i in order]
    return pd.DataFrame({
        "uid": _strings(uid[order]),
        "direction": _strings(np.array(direction, dtype=object)[order]),
        "kind": _strings(np.array(kind, dtype=object)[order]),
        "ts": pd.DatetimeIndex(ts[order].astype("datetime64[ns]")).tz_localize("UTC").array,
        "offset": offset[order],
        "length": np.array(length, dtype=np.int64)[order],
        "label": _strings(np.array(label, dtype=object)[order]),
        "excerpt": excerpts,
    })


def _counts_table(rows: list[tuple]) -> pd.DataFrame:
    """``SECRET_COUNT_COLUMNS`` of these rows, typed and sorted as ``sort_secret_counts`` sorts."""
    uid, direction, kind, count = (np.array(column, dtype=object) for column in zip(*rows))
    order = np.lexsort(tuple(np.unique(c.astype(str), return_inverse=True)[1].ravel() for c in (kind, direction, uid)))
    return pd.DataFrame({"uid": _strings(uid[order]), "direction": _strings(direction[order]),
                         "kind": _strings(kind[order]), "count": count[order].astype(np.int64)})


_EMPTY: dict[int, pd.DataFrame] = {}


def _empty(columns: Columns) -> pd.DataFrame:
    """A copy of the table of no rows (typed once: most closes find no secret)."""
    if id(columns) not in _EMPTY:
        _EMPTY[id(columns)] = typed(pd.DataFrame([], columns=list(columns)), columns)
    return _EMPTY[id(columns)].copy()


def sort_secrets(secrets: pd.DataFrame) -> pd.DataFrame:
    return secrets.sort_values(["ts", "uid", "offset"], kind="stable").reset_index(drop=True)


def sort_secret_counts(counts: pd.DataFrame) -> pd.DataFrame:
    return counts.sort_values(["uid", "direction", "kind"]).reset_index(drop=True)


_unwrap_seq = K.unwrap_seq.py_func  # plain Python: calling the kernel would first load it (~40 ms) for 4 operations


def _stream_offset(slot: np.ndarray, s: int, proto: int, seq: int, at: int) -> int:
    """Stream offset of payload byte ``at`` of a TCP segment, unwrapped against
    the direction's furthest offset as the flow kernels do; -1 if unknown."""
    base = int(slot[s, K.SL_BASE_SEQ])
    if proto != C.IPPROTO_TCP or base < 0:
        return -1
    offset = _unwrap_seq(int(seq) + int(at), base, int(slot[s, K.SL_MAX_END]))
    return offset if offset >= 0 else -1
