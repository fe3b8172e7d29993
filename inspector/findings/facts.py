"""What the rules look at: the analysis tables, indexed for rule lookups.

Rules never re-read a capture; they read flows, events, evidence fields and
secrets through this one object, so each table is parsed once.
"""

from __future__ import annotations

import ipaddress
from collections import namedtuple
from dataclasses import dataclass, field
from functools import cached_property

import pandas as pd

from inspector.schema import CLEAR
from inspector.units import flow_endpoints, human_bytes
from inspector.watch import Watchlist

PAGE = 4096


@dataclass
class Facts:
    flows: pd.DataFrame
    events: pd.DataFrame
    evidence: pd.DataFrame
    secrets: pd.DataFrame
    secret_counts: pd.DataFrame
    watch: Watchlist = field(default_factory=Watchlist)

    @classmethod
    def of(cls, result) -> "Facts":
        """The facts of an ``Analysis``."""
        return cls(result.flows, result.events, result.evidence, result.secrets, result.secret_counts,
                   result.watch)

    @cached_property
    def fields(self) -> dict[tuple[str, str], list[dict]]:
        """Evidence fields by (uid, protocol), every direction and offset."""
        out: dict[tuple[str, str], list[dict]] = {}
        e = self.evidence
        for uid, protocol, direction, offset, fields in zip(*(e[c].tolist() for c in (
                "uid", "protocol", "direction", "offset", "fields"))):
            out.setdefault((uid, protocol), []).append({"direction": direction, "offset": offset, **fields})
        return out

    @cached_property
    def _rows(self) -> list:
        """Every flow as a row tuple, and the positions of each uid: built once,
        as rules ask per event (a pandas lookup per event cost ~50 ms each)."""
        f = self.flows
        row = namedtuple("Flow", f.columns)  # itertuples reads arrow-backed strings item by item: 10x slower
        return list(map(row._make, zip(*(f[column].tolist() for column in f.columns))))

    @cached_property
    def _positions(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for i, uid in enumerate(self.flows["uid"].astype(str).tolist()):
            out.setdefault(uid, []).append(i)
        return out

    def rows(self, uids) -> list:
        """The flows with these uids, as row tuples in table order."""
        found = sorted(i for uid in dict.fromkeys(map(str, uids)) for i in self._positions.get(uid, ()))
        return [self._rows[i] for i in found]

    def host_pairs(self, uids) -> list[str]:
        """'src -> dst' of the flows with these uids, sorted, once each."""
        return sorted({f"{row.orig_h} -> {row.resp_h}" for row in self.rows(uids)})

    def events_of(self, uids) -> tuple[str, ...]:
        """Migration events the flows with these uids belong to."""
        return tuple(sorted({row.event for row in self.rows(uids) if row.event}))

    def clear_flows(self, protocol: str) -> pd.DataFrame:
        """Flows of a protocol whose payload crossed in clear."""
        f = self.flows
        return f[(f["protocol"] == protocol) & f["verdict"].astype(str).isin(CLEAR)]

    def event_flows(self, event) -> list:
        return self.rows(str(event.uids).split(","))

    def in_internal_nets(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self.watch.internal_nets)


def flow_line(flow) -> str:
    """One evidence line for a flow: uid, endpoints, bytes, verdict, reason."""
    moved = int(flow.orig_bytes + flow.resp_bytes)
    return (f"{flow.uid} {flow_endpoints(flow)} {flow.protocol or flow.proto}: {human_bytes(moved)}, "
            f"{flow.verdict} ({flow.confidence:.2f}): {flow.reason}")


def pages(byte_count: int) -> str:
    """Byte count with the 4 KiB guest pages it can hold at most."""
    return f"{human_bytes(byte_count)} (up to {byte_count // PAGE:,} 4 KiB pages)"
