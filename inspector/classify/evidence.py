"""Protocol evidence: collect detections per flow and let them decide verdicts.

Framing seen in clear proves a stream is cleartext, even when its payload is
high-entropy (compressed multifd, random guest pages); a validated TLS or
SSH session proves encryption. Statistics decide only what no detection
explains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from inspector.flows.kernels import PROBE_FIRST
from inspector.flows.table import Region
from inspector.protocols import CLEARTEXT, ENCRYPTED, ORIG, RESP, Detection, detect, detect_flow
from inspector.protocols.prefilter import candidate_rows
from inspector.protocols.registry import ALL_ROWS
from inspector.schema import EVIDENCE_COLUMNS, PROTOCOLS, VERDICTS
from inspector.tables import strings

# When a flow shows several protocols, the one named in the flows table.
_RANK = {p: i for i, p in enumerate(PROTOCOLS)}
HANDSHAKES = ("ssh", "tls", "ike", "wireguard", "quic", "dtls", "openvpn")  # key exchanges in clear before sealed data

# The columns apply_evidence fills; analyze adds `event` once events are built.
DETECTION_COLUMNS = [c for c in EVIDENCE_COLUMNS if c != "event"]
DETAIL_COLUMNS = {
    # column: (protocol, field path in the detection's fields)
    "tls_version": ("tls", ("version",)),
    "tls_cipher": ("tls", ("cipher",)),
    "tls_sni": ("tls", ("sni",)),
    "tls_client_cert_requested": ("tls", ("client_cert_requested",)),
    "ssh_client": ("ssh", ("client", "software")),
    "ssh_server": ("ssh", ("server", "software")),
    "ssh_cipher": ("ssh", ("negotiated", "cipher_c2s")),
}


@dataclass(frozen=True)
class _Piece:
    """A region and the prefilter's candidate rows for its bytes and each of its islands."""

    region: Region
    rows: int
    island_rows: tuple[int, ...]

    @property
    def idle(self) -> bool:
        """No detector can accept any of its bytes."""
        return not (self.rows and self.region.data) and not any(self.island_rows)


_IDLE = _Piece(Region(-1, 0, 0, b"", False), 0, ())
"""Stands for a pending head no detector can read (its bytes are not kept)."""


class DetectionCollector:
    """Runs the detectors on reassembled regions: the two heads of each flow
    together, probes further in one by one.

    ``orientation(flow)`` says whether endpoint A is the originator; it is
    asked when the second head of a flow arrives, by which time the SYN (if
    any) has been seen. Memory: one head per flow whose other head is
    still being filled (none when no detector can read it).

    ``take(flows)`` hands over the detections of flows that ended.

    Islands (bytes seen beyond a hole, e.g. segment starts under a short
    snaplen) are scanned mid-stream, but their detections only add detail
    to a protocol the flow's contiguous bytes proved: a few hundred bytes
    are too little to name a protocol on their own.

    The detector rows a piece (a region's bytes, an island) can match come
    from the compiled prefilter (``protocols.prefilter``), for every piece
    of a batch of regions at once; only those rows run in Python, and a
    region with none costs no detector call: such a head is only kept as
    a mark that pairs with the other head, such a probe is dropped.

    ``on_detect(flow, hits)``, when given, hears every detection as it is
    made (the live sensor's alerts). A head whose other head is still being
    filled is then also read alone at once when ``early(flow)`` says so, so a
    one-way stream (a migration) is known when its head completes, not when
    the flow ends; those early hits are told, not kept (the pair decides).

    ``transport(flow)``, when given, is the flow's IP protocol: rows of
    datagram framings (ESP, WireGuard, QUIC ...) read only their flows.
    """

    def __init__(self, orientation: Callable[[int], bool],
                 on_detect: Callable[[int, list[Detection]], None] | None = None,
                 early: Callable[[int], bool] | None = None,
                 transport: Callable[[int], int] | None = None) -> None:
        self.orientation = orientation
        self.transport = transport
        self.on_detect = on_detect
        self.early = early
        self.pending: dict[int, _Piece] = {}
        self.found: dict[int, list[Detection]] = {}
        self.from_islands: dict[int, list[Detection]] = {}

    def on_regions(self, regions: list[Region]) -> None:
        """Regions completed together: their candidate rows in one prefilter call, then each region."""
        pieces = [region.data for region in regions]
        mid = [region.index > 0 or not region.at_start for region in regions]
        for region in regions:
            if region.islands:
                pieces += [data for _, data in region.islands]
                mid += [True] * len(region.islands)
        transports = None
        if self.transport is not None:
            flows = [self.transport(region.slot >> 1) for region in regions]
            transports = flows + [flow for region, flow in zip(regions, flows) for _ in region.islands]
        masks = candidate_rows(pieces, mid, transports)
        island_masks = iter(masks[len(regions):])
        pending = self.pending
        for region, rows in zip(regions, masks):
            island_rows = tuple(next(island_masks) for _ in region.islands) if region.islands else ()
            if rows or (island_rows and any(island_rows)):
                self.on_region(region, rows, island_rows)
            elif region.index == 0:  # a head no detector can read: it only pairs with the other head
                slot = region.slot  # (inline: most heads of short flows come here, two per flow)
                other = pending.pop(slot ^ 1, None)
                if other is None:
                    pending[slot] = _IDLE
                elif other is not _IDLE:
                    self._detect_heads(slot // 2, other, None)
            # else a probe no detector can read: nothing to do

    def on_region(self, region: Region, rows: int = ALL_ROWS, island_rows: tuple[int, ...] | None = None) -> None:
        """Heads (region 0) are paired per flow; probes further in are read at once.

        ``rows``/``island_rows``: the candidate rows of the region's bytes and
        of each island (default: every row)."""
        piece = _Piece(region, rows, island_rows if island_rows is not None else (ALL_ROWS,) * len(region.islands))
        flow, direction = divmod(region.slot, 2)
        if region.index == 0:
            other = self.pending.pop(2 * flow + 1 - direction, None)
            if other is None:
                self.pending[region.slot] = piece
                if self.on_detect and self.early and region.data and rows and self.early(flow):
                    hits = detect(region.data, direction=self._side(flow, direction), at_start=region.at_start,
                                  fallback=False, rows=rows)
                    if hits:
                        self.on_detect(flow, hits)
            else:
                self._detect_heads(flow, piece, other)
            return
        side = self._side(flow, direction)
        if region.data and rows:
            hits = [d.shifted(region.offset) for d in detect(region.data, direction=side, at_start=False,
                                                             rows=rows)]
            if hits:
                self.found.setdefault(flow, []).extend(hits)
                if self.on_detect:
                    self.on_detect(flow, hits)
        self._scan_islands(flow, side, piece)

    def _side(self, flow: int, direction: int) -> str:
        return ORIG if self.orientation(flow) == (direction == 0) else RESP

    def _scan_islands(self, flow: int, side: str, piece: _Piece) -> None:
        for (offset, data), rows in zip(piece.region.islands, piece.island_rows):
            if not rows:
                continue
            hits = [d.shifted(offset) for d in detect(data, direction=side, at_start=False, rows=rows)]
            if hits:
                self.from_islands.setdefault(flow, []).extend(hits)

    def _detect_heads(self, flow: int, head: _Piece, other: _Piece | None) -> None:
        """Run the detectors on both heads of a flow."""
        if head.idle and (other is None or other.idle):
            return
        orig, resp = (head, other) if self._side(flow, head.region.slot % 2) == ORIG else (other, head)
        for piece in (orig, resp):
            if piece is not None:
                self._scan_islands(flow, ORIG if piece is orig else RESP, piece)
        orig_data, orig_start, orig_rows = (
            (orig.region.data, orig.region.at_start, orig.rows) if orig else (b"", False, 0))
        resp_data, resp_start, resp_rows = (
            (resp.region.data, resp.region.at_start, resp.rows) if resp else (b"", False, 0))
        if not (orig_data and orig_rows) and not (resp_data and resp_rows):
            return
        # Heads that start at the stream start get the start-of-stream rows only:
        # scanning every unknown head for mid-stream framing would cost ~0.1 ms
        # a head (20 s for 100k flows); heads captured mid-stream get the scan.
        hits = detect_flow(orig_data, resp_data, orig_at_start=orig_start, resp_at_start=resp_start,
                           fallback=False, orig_rows=orig_rows, resp_rows=resp_rows)
        if hits:
            self.found[flow] = hits + self.found.get(flow, [])
            if self.on_detect:
                self.on_detect(flow, hits)

    def take(self, fids: list[int], *, ended: bool = True) -> dict[int, list[Detection]]:
        """The detections of these flows, keyed by their position in ``fids``.

        ``ended``: the flows are over, so a head whose other direction never
        sent data is read alone, and their state is dropped (their ids will
        be reused). Otherwise (an interim look at open flows) what was
        found so far is copied. Island detections are kept only for
        protocols that contiguous bytes proved.
        """
        out: dict[int, list[Detection]] = {}
        held = {slot >> 1 for slot in self.pending} | self.found.keys() | self.from_islands.keys()
        if not held:
            return out
        holding = np.isin(np.asarray(fids, dtype=np.int64), np.fromiter(held, dtype=np.int64, count=len(held)))
        for i in np.flatnonzero(holding).tolist():  # the flows with any state here (most have none)
            flow = fids[i]
            if ended:
                for slot in (2 * flow, 2 * flow + 1):
                    head = self.pending.pop(slot, None)
                    if head is not None:
                        self._detect_heads(flow, head, None)
            found = self.found.pop(flow, []) if ended else list(self.found.get(flow, ()))
            islands = self.from_islands.pop(flow, []) if ended else self.from_islands.get(flow, [])
            proven = {d.protocol for d in found}
            found += [d for d in islands if d.protocol in proven]
            if found:
                out[i] = found
        return out


def _preference(d: Detection) -> tuple:
    """What names a flow: the stream head before probes further in (a libvirt
    tunnel's probes see the QEMU stream it carries), then protocol rank."""
    return (d.offset >= PROBE_FIRST, _RANK.get(d.protocol, len(_RANK)), d.offset)


def _field(fields, path):
    for key in path:
        if not isinstance(fields, dict) or key not in fields:
            return None
        fields = fields[key]
    return fields


def _compressed(hits: list[Detection]) -> Detection | None:
    """The first cleartext detection whose fields name a compression method."""
    return next((d for d in hits if d.proves == CLEARTEXT
                 and _field(d.fields, ("compression",)) not in (None, "none")), None)


_UPGRADES = {"nbd": "nbd STARTTLS", "mysql": "mysql SSLRequest"}


def _upgrade(hits: list[Detection]) -> Detection | None:
    """The first detection that hands its stream over to TLS (``tls_from`` set)."""
    return next((d for d in hits if isinstance(d.fields, dict) and isinstance(d.fields.get("tls_from"), int)
                 and d.protocol != "tls"), None)


def upgrade_name(d: Detection) -> str:
    """What an in-band upgrade is called in a reason: "smtp STARTTLS", "http CONNECT"."""
    return str(d.fields.get("upgrade") or _UPGRADES.get(d.protocol, f"{d.protocol} upgrade"))


def json_value(value: Any) -> Any:
    """A copy of ``value`` made of JSON values only, as a round trip through
    ``json.dumps(default=str, sort_keys=True)`` gives it (the evidence table
    held that text before it held dicts): keys sorted and made text, tuples
    made lists, anything JSON has no type for made text."""
    kind = type(value)
    if kind in _AS_IS:  # most values: exactly str, int, float, bool or None
        return value
    if isinstance(value, dict):
        return {_JSON_KEYS.get(k, k) if k is None or isinstance(k, bool) else str(k):
                v if type(v) in _AS_IS else json_value(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [v if type(v) in _AS_IS else json_value(v) for v in value]
    for kind in (str, bool, int, float):  # bool before int: True is an int
        if isinstance(value, kind):
            return kind(value)
    return str(value)


_JSON_KEYS = {None: "null", True: "true", False: "false"}
_AS_IS = frozenset((str, int, float, bool, type(None)))


def apply_evidence(flows: pd.DataFrame, found: dict[int, list[Detection]],
                   flow_index: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add ``protocol`` and detail columns, let proofs override statistics.

    ``flow_index[i]`` is the flow-table id of row ``i`` of ``flows``.
    Returns the flows and the evidence table (one row per detection).
    Python runs only for the flows with detections; the new flows table is
    built once.
    """
    n = len(flows)
    protocol = np.full(n, "", dtype=object)
    details = {col: np.full(n, None, dtype=object) for col in DETAIL_COLUMNS}
    verdict = _verdict_codes(flows["verdict"])
    confidence = flows["confidence"].to_numpy(dtype=float).copy()
    reason: dict[int, str] = {}  # the rows whose reason a proof rewrites
    stats_reason = flows["reason"].to_numpy(dtype=object)
    moved = (flows["orig_bytes"] + flows["resp_bytes"]).to_numpy()
    beyond, probed = moved >= BEYOND_HANDSHAKE, moved >= 2 * PROBE_FIRST  # probed: framing was looked for further in
    rows = []
    uids = flows["uid"].to_numpy()
    hit_rows = [(i, found[flow]) for i, flow in enumerate(flow_index.tolist()) if found.get(flow)] if found else []
    for i, hits in hit_rows:
        best = min(hits, key=_preference)
        protocol[i] = best.protocol
        for col, (proto, path) in DETAIL_COLUMNS.items():
            for d in hits:
                if d.protocol == proto and details[col][i] is None:
                    details[col][i] = _field(d.fields, path)
        clear = [d for d in hits if d.proves == CLEARTEXT]
        sealed = [d for d in hits if d.proves == ENCRYPTED]
        if clear and verdict[i] == _CODE["encrypted"] and confidence[i] >= SURE and probed[i] \
                and all(d.offset < PROBE_FIRST for d in clear):
            # framing at the start only, then bytes that look encrypted: a header in front of ciphertext, not proof
            proof = min(clear, key=_preference)
            verdict[i], confidence[i] = _CODE["unknown"], 0.5
            reason[i] = (f"{proof.direction or 'flow'}: {proof.protocol} framing at the start only "
                         f"({proof.evidence}), then bytes no framing explains that look encrypted: {stats_reason[i]}")
        elif clear:
            proof = min(clear, key=_preference)
            squeezed = _compressed(clear)
            verdict[i] = _CODE["compressed"] if squeezed is not None or (
                verdict[i] == _CODE["compressed"] and proof.protocol != "qemu-migration") else _CODE["plaintext"]
            confidence[i] = 0.99
            reason[i] = f"{proof.direction or 'flow'}: {proof.protocol} framing in clear: {proof.evidence}"
            if squeezed is not None and squeezed is not proof:
                reason[i] += f"; at offset {squeezed.offset}: {squeezed.evidence}"
        elif sealed and verdict[i] == _CODE["plaintext"] and confidence[i] >= SURE and beyond[i]:
            # a handshake whose records carry cleartext (forged, or a cipher that does not encrypt): the bytes win
            proof = sealed[0]
            reason[i] = (f"{proof.direction or 'flow'}: {proof.protocol} handshake, but what follows is NOT "
                         f"encrypted: {stats_reason[i]} (handshake: {proof.evidence})")
        elif sealed:
            proof = sealed[0]
            verdict[i] = _CODE["encrypted"]
            confidence[i] = 0.99
            reason[i] = f"{proof.direction or 'flow'}: {proof.evidence}"
            upgrade = _upgrade(hits)
            if upgrade is not None and proof.protocol == "tls":
                protocol[i] = "tls"    # the session is TLS; the clear-text start that asked for it is evidence
                reason[i] = (f"{proof.direction or 'flow'}: {upgrade_name(upgrade)} at offset "
                             f"{upgrade.fields['tls_from']}, then {proof.evidence}")
        elif best.protocol in HANDSHAKES and verdict[i] == _CODE["plaintext"] and confidence[i] >= SURE \
                and beyond[i]:
            # hellos, then cleartext the statistics are sure of: the handshake never went on
            reason[i] = (f"{best.direction or 'flow'}: {best.protocol} handshake start, then cleartext: "
                         f"{stats_reason[i]}")
        elif best.protocol in HANDSHAKES and verdict[i] == _CODE["plaintext"] and \
                _field(best.fields, ("lengths_in_clear",)) is None:
            # The cleartext start of a TLS/SSH session (hellos, banners, KEXINIT)
            # without its encrypted phase: not plaintext data, but not proven either.
            verdict[i] = _CODE["unknown"]
            confidence[i] = 0.0
            reason[i] = f"{best.direction or 'flow'}: only the {best.protocol} handshake: {best.evidence}"
        for d in hits:
            rows.append((uids[i], d.direction or "both", d.protocol, d.offset, d.proves, d.evidence,
                         json_value(d.fields)))
    for i, _ in hit_rows:  # detail values as text
        for values in details.values():
            if values[i] is not None:
                values[i] = str(values[i])
    none = strings(np.full(n, None, dtype=object)) if len(hit_rows) < n else None
    added = pd.DataFrame({
        "protocol": strings(protocol),
        **{col: strings(values) if hit_rows else none.copy() for col, values in details.items()},
    }, index=flows.index)
    again = [c for c in added.columns if c in flows.columns]
    out = pd.concat([flows.drop(columns=again) if again else flows, added], axis=1)
    out["verdict"] = pd.Categorical.from_codes(verdict, dtype=_VERDICTS)
    out["confidence"] = confidence
    if reason:  # else the statistics' reasons stand, column as it was
        text = flows["reason"].to_numpy(dtype=object).copy()
        text[list(reason)] = list(reason.values())
        out["reason"] = strings(text)
    if not rows:
        return out, _NO_EVIDENCE.copy()
    evidence = pd.DataFrame(rows, columns=DETECTION_COLUMNS)
    evidence["offset"] = evidence["offset"].astype("int64")
    return out, evidence


SURE = 0.9
BEYOND_HANDSHAKE = 65536
"""Statistics this sure that a flow of at least this many bytes (far more
than hellos, KEXINITs and certificate chains, whose names and lists are
text) is plaintext overrule a handshake's claim of encryption."""
_VERDICTS = pd.CategoricalDtype(VERDICTS)
_CODE = {name: code for code, name in enumerate(VERDICTS)}
_NO_EVIDENCE = pd.DataFrame({name: np.zeros(0, dtype=np.int64 if name == "offset" else object)
                             for name in DETECTION_COLUMNS})


def _verdict_codes(verdict: pd.Series) -> np.ndarray:
    """A writable copy of the verdicts as codes into ``VERDICTS``."""
    values = verdict.array
    if not (isinstance(values, pd.Categorical) and values.dtype == _VERDICTS):
        values = pd.Categorical(verdict, dtype=_VERDICTS)
    return values.codes.copy()

