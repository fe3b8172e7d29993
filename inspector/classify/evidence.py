"""Protocol evidence: collect detections per flow and let them decide verdicts.

Framing seen in clear proves a stream is cleartext, even when its payload is
high-entropy (compressed multifd, random guest pages); a validated TLS or
SSH session proves encryption. Statistics decide only what no detection
explains.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pandas as pd

from inspector.classify.verdicts import VERDICTS
from inspector.flows.kernels import PROBE_FIRST
from inspector.protocols import CLEARTEXT, ENCRYPTED, ORIG, RESP, Detection, detect, detect_flow

# When a flow shows several protocols, the one named in the flows table.
PROTOCOL_PRIORITY = ("qemu-migration", "qemu-multifd", "libvirt-rpc", "nbd", "ssh", "tls", "http",
                     "amqp", "mysql", "rfb", "spice", "redis", "memcached", "ovsdb")
_RANK = {p: i for i, p in enumerate(PROTOCOL_PRIORITY)}
HANDSHAKES = ("ssh", "tls")

EVIDENCE_COLUMNS = ["uid", "direction", "protocol", "offset", "proves", "evidence", "fields"]
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


class DetectionCollector:
    """Runs the detectors on reassembled regions: the two heads of each flow
    together, probes further in one by one.

    ``orientation(flow)`` says whether endpoint A is the originator; it is
    asked when the second head of a flow arrives, by which time the SYN (if
    any) has been seen. Memory: one head per flow whose other head is
    still being filled.
    """

    def __init__(self, orientation: Callable[[int], bool]) -> None:
        self.orientation = orientation
        self.pending: dict[int, tuple[bytes, bool]] = {}
        self.found: dict[int, list[Detection]] = {}

    def on_region(self, slot: int, index: int, offset: int, data: bytes, at_start: bool) -> None:
        """Heads (region 0) are paired per flow; probes further in are read at once."""
        if index == 0:
            self.on_head(slot, data, at_start)
        elif data:
            flow, direction = divmod(slot, 2)
            side = ORIG if self.orientation(flow) == (direction == 0) else RESP
            hits = [d.shifted(offset) for d in detect(data, direction=side, at_start=False)]
            if hits:
                self.found.setdefault(flow, []).extend(hits)

    def on_head(self, slot: int, data: bytes, at_start: bool) -> None:
        flow, direction = divmod(slot, 2)
        other = self.pending.pop(2 * flow + 1 - direction, None)
        if other is None:
            self.pending[slot] = (data, at_start)
        else:
            self._detect(flow, direction, (data, at_start), other)

    def _detect(self, flow: int, direction: int, head: tuple[bytes, bool], other: tuple[bytes, bool]) -> None:
        """Run the detectors on both heads of a flow (``head`` is ``direction``'s)."""
        a, b = (head, other) if direction == 0 else (other, head)
        if not a[0] and not b[0]:
            return
        orig, resp = (a, b) if self.orientation(flow) else (b, a)
        # Heads that start at the stream start get the start-of-stream rows only:
        # scanning every unknown head for mid-stream framing would cost ~0.1 ms
        # a head (20 s for 100k flows); heads captured mid-stream get the scan.
        hits = detect_flow(orig[0], resp[0], orig_at_start=orig[1], resp_at_start=resp[1],
                           fallback=False)
        if hits:
            self.found[flow] = hits + self.found.get(flow, [])

    def finish(self) -> dict[int, list[Detection]]:
        """Flows with one head only (the other direction never sent data)."""
        for slot, head in self.pending.items():
            self._detect(slot // 2, slot % 2, head, (b"", False))
        self.pending.clear()
        return self.found


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


def _compressed(hits: list[Detection]) -> bool:
    return any(_field(d.fields, ("compression",)) not in (None, "none") for d in hits
               if d.proves == CLEARTEXT)


def apply_evidence(flows: pd.DataFrame, found: dict[int, list[Detection]],
                   flow_index: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add ``protocol`` and detail columns, let proofs override statistics.

    ``flow_index[i]`` is the flow-table id of row ``i`` of ``flows``.
    Returns the flows and the evidence table (one row per detection).
    """
    out = flows.copy()
    n = len(out)
    protocol = np.full(n, "", dtype=object)
    details = {col: np.full(n, None, dtype=object) for col in DETAIL_COLUMNS}
    verdict = out["verdict"].astype(str).to_numpy(dtype=object)
    confidence = out["confidence"].to_numpy(dtype=float).copy()
    reason = out["reason"].astype(str).to_numpy(dtype=object)
    rows = []
    uids = out["uid"].to_numpy()
    for i, flow in enumerate(flow_index.tolist()):
        hits = found.get(flow)
        if not hits:
            continue
        best = min(hits, key=_preference)
        protocol[i] = best.protocol
        for col, (proto, path) in DETAIL_COLUMNS.items():
            for d in hits:
                if d.protocol == proto and details[col][i] is None:
                    details[col][i] = _field(d.fields, path)
        clear = [d for d in hits if d.proves == CLEARTEXT]
        sealed = [d for d in hits if d.proves == ENCRYPTED]
        if clear:
            proof = min(clear, key=_preference)
            verdict[i] = "compressed" if _compressed(clear) or (
                verdict[i] == "compressed" and proof.protocol != "qemu-migration") else "plaintext"
            confidence[i] = 0.99
            reason[i] = f"{proof.direction or 'flow'}: {proof.protocol} framing in clear: {proof.evidence}"
        elif sealed:
            proof = sealed[0]
            verdict[i] = "encrypted"
            confidence[i] = 0.99
            reason[i] = f"{proof.direction or 'flow'}: {proof.evidence}"
        elif best.protocol in HANDSHAKES and verdict[i] == "plaintext":
            # The cleartext start of a TLS/SSH session (hellos, banners, KEXINIT)
            # without its encrypted phase: not plaintext data, but not proven either.
            verdict[i] = "unknown"
            confidence[i] = 0.0
            reason[i] = f"{best.direction or 'flow'}: only the {best.protocol} handshake: {best.evidence}"
        for d in hits:
            rows.append((uids[i], d.direction or "both", d.protocol, d.offset, d.proves, d.evidence,
                         json.dumps(d.fields, default=str, sort_keys=True)))
    out["verdict"] = pd.Categorical(verdict, categories=VERDICTS)
    out["confidence"] = confidence
    out["reason"] = pd.array(reason, dtype="string")
    out["protocol"] = pd.array(protocol, dtype="string")
    for col, values in details.items():
        out[col] = pd.array([None if v is None else str(v) for v in values], dtype="string")
    evidence = pd.DataFrame(rows, columns=EVIDENCE_COLUMNS)
    evidence["offset"] = evidence["offset"].astype("int64")
    return out, evidence
