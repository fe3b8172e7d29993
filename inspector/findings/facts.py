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
import pyarrow as pa

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
    def _cells(self) -> list:
        """One accessor per ``ROW`` column, reading a single cell without pandas
        (rules ask per event; a pandas lookup cost ~50 ms each) and without
        turning the whole table into Python objects (500 k flows: ~1 GB)."""
        return [_cell_reader(self.flows[column]) for column in ROW._fields]

    @cached_property
    def _positions(self) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for i, uid in enumerate(self.flows["uid"].astype(str).tolist()):
            out.setdefault(uid, []).append(i)
        return out

    def rows(self, uids) -> list:
        """The flows with these uids, as ``ROW`` tuples in table order."""
        found = sorted(i for uid in dict.fromkeys(map(str, uids)) for i in self._positions.get(uid, ()))
        return [ROW._make(cell(i) for cell in self._cells) for i in found]

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
        return self.rows(list(event.uids))

    def in_internal_nets(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self.watch.internal_nets)


ROW = namedtuple("ROW", "uid proto orig_h orig_p resp_h resp_p orig_bytes resp_bytes verdict confidence reason "
                 "protocol event")
"""The columns of a flow that rules read from ``Facts.rows``."""


def _cell_reader(column: pd.Series):
    """``i -> the value of row i`` as a Python object, reading nothing else."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes, categories = column.cat.codes.to_numpy(), list(column.cat.categories)
        return lambda i: categories[codes[i]] if codes[i] >= 0 else None
    if pd.api.types.is_numeric_dtype(column.dtype) and not column.hasnans:
        values = column.to_numpy()
        return lambda i: values[i].item()
    values = pa.array(column.array) if pd.api.types.is_string_dtype(column.dtype) else None
    if values is not None:
        return lambda i: values[i].as_py()
    return lambda i: column.iat[i]


def flow_line(flow) -> str:
    """One evidence line for a flow: uid, endpoints, bytes, verdict, reason."""
    moved = int(flow.orig_bytes + flow.resp_bytes)
    return (f"{flow.uid} {flow_endpoints(flow)} {flow.protocol or flow.proto}: {human_bytes(moved)}, "
            f"{flow.verdict} ({flow.confidence:.2f}): {flow.reason}")


def pages(byte_count: int) -> str:
    """Byte count with the 4 KiB guest pages it can hold at most (none named
    when it cannot hold a whole page)."""
    whole = byte_count // PAGE
    if whole == 0:
        return human_bytes(byte_count)
    return f"{human_bytes(byte_count)} (up to {whole:,} 4 KiB page{'' if whole == 1 else 's'})"
