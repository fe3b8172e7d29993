"""Early alerts of the live sensor: a watched flow showed what must not cross
the wire in clear, told as soon as a head region is detected or a secret
matches, long before the flow ends.

An alert names the flow by its endpoints (the uid is only known when the
flow table is finished), the protocol, and the evidence line of the
detection or the redacted label of the secret; never payload bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np

from inspector.flows import kernels as K
from inspector.flows.frame import format_addresses
from inspector.flows.table import FlowTable
from inspector.protocols import CLEARTEXT, Detection
from inspector.watch import Watchlist

ALERT_KINDS = ("cleartext-migration", "nbd-disk-in-clear", "credentials")
"""What an alert says a flow exposed (``Alert.kind``)."""

_MIGRATION_PROTOCOLS = ("qemu-migration", "qemu-multifd")
_HTTP_CREDENTIALS = ("x_auth_token", "x_subject_token", "authorization", "password_in_body")


@dataclass(frozen=True)
class Alert:
    """One early alert; ``record()`` is its JSONL object."""

    ts: str           # when it fired, RFC 3339 UTC
    flow_start: str   # first packet of the flow, RFC 3339 UTC
    kind: str         # one of ALERT_KINDS
    protocol: str     # detection protocol, or "secret:<kind>" for a secret-scan match
    orig: str         # originator host:port
    resp: str         # responder host:port
    transport: str    # tcp, udp, ...
    evidence: str     # the evidence line (redacted label for secrets)

    def record(self) -> dict[str, str]:
        return {"type": "alert", **asdict(self)}

    def line(self) -> str:
        return (f"ALERT {self.ts} {self.kind}: {self.orig} -> {self.resp} {self.transport} "
                f"[{self.protocol}] {self.evidence}")


def alert_kind(d: Detection) -> str | None:
    """The alert a detection raises, if any: cleartext migration framing,
    NBD in clear, a libvirt tunnel carrying a QEMU stream, HTTP credentials."""
    if d.proves != CLEARTEXT:
        return None
    fields = d.fields if isinstance(d.fields, dict) else {}
    if d.protocol in _MIGRATION_PROTOCOLS:
        return "cleartext-migration"
    if d.protocol == "nbd":
        return "nbd-disk-in-clear"
    if d.protocol == "libvirt-rpc" and (fields.get("tunnelled_qevm") or fields.get("tunnel")):
        return "cleartext-migration"
    if d.protocol == "http" and any(fields.get(key) for key in _HTTP_CREDENTIALS):
        return "credentials"
    return None


def _utc(ns: int | None = None) -> str:
    when = datetime.now(UTC) if ns is None else datetime.fromtimestamp(ns / 1e9, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Alerter:
    """Turns detections and secret matches of watched flows into ``Alert``
    objects for ``emit``, once per (flow, kind).

    ``table()`` returns the live flow table; ``orientation(flow)`` says
    whether endpoint A is the originator (as the detection collector asks).
    """

    def __init__(self, table: Callable[[], FlowTable], watch: Watchlist, orientation: Callable[[int], bool],
                 emit: Callable[[Alert], None]) -> None:
        self.table = table
        self.watch = watch
        self.orientation = orientation
        self.emit = emit
        self.told: set[tuple[int, str]] = set()
        self._watched: dict[int, bool] = {}

    def _endpoints(self, flow: int) -> tuple[str, str, str]:
        table = self.table()
        row, addr = table.flow[flow], table.flow_addr[flow]
        version = np.array([row[K.FL_IP_VERSION]] * 2)
        a, b = format_addresses(addr[[0, 2]], addr[[1, 3]], version)
        a = f"[{a}]" if ":" in a else a
        b = f"[{b}]" if ":" in b else b
        ends = (f"{a}:{row[K.FL_A_PORT]}", f"{b}:{row[K.FL_B_PORT]}")
        orig, resp = ends if self.orientation(flow) else ends[::-1]
        return orig, resp, {6: "tcp", 17: "udp", 132: "sctp"}.get(int(row[K.FL_PROTO]), str(row[K.FL_PROTO]))

    def watched(self, flow: int) -> bool:
        """The flow matches a watchlist role (ports, or an internal network)."""
        if flow not in self._watched:
            table = self.table()
            row, addr = table.flow[flow], table.flow_addr[flow]
            hosts = format_addresses(addr[[0, 2]], addr[[1, 3]], np.array([row[K.FL_IP_VERSION]] * 2))
            role = self.watch.roles(np.array([row[K.FL_A_PORT]]), np.array([row[K.FL_B_PORT]]),
                                    hosts[:1], hosts[1:])[0]
            self._watched[flow] = role != "none"
        return self._watched[flow]

    def _tell(self, flow: int, kind: str, protocol: str, evidence: str) -> None:
        if (flow, kind) in self.told or not self.watched(flow):
            return
        self.told.add((flow, kind))
        orig, resp, transport = self._endpoints(flow)
        start = int(self.table().flow[flow, K.FL_FIRST_TS])
        self.emit(Alert(_utc(), _utc(start), kind, protocol, orig, resp, transport, evidence))

    def on_detect(self, flow: int, hits: list[Detection]) -> None:
        for d in hits:
            kind = alert_kind(d)
            if kind:
                self._tell(flow, kind, d.protocol, f"{d.direction or 'flow'}: {d.evidence}")

    def on_secret(self, flow: int, direction: int, kind: str, label: str) -> None:
        self._tell(flow, "credentials", f"secret:{kind}", label)
