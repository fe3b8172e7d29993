"""What the rules look at: the analysis tables, indexed for rule lookups.

Rules never re-read a capture; they read flows, events, evidence fields and
secrets through this one object, so each table is parsed once.
"""

from __future__ import annotations

import ipaddress
from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa

from inspector.schema import CLEAR
from inspector.tables import python_values, rows_of
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
    def _readers(self) -> dict[str, Callable[[np.ndarray], list]]:
        """One reader per ``ROW`` column: rows (positions) -> their values as
        Python objects, without turning the whole table into Python objects
        (500 k flows: ~1 GB) and without a pandas lookup per call."""
        return {column: _column_reader(self.flows[column]) for column in ROW._fields}

    @cached_property
    def _positions(self) -> tuple[dict[str, int], dict[str, list[int]]]:
        """The first row of each uid, and the further rows of the (rare) uids on several rows."""
        uids = list(map(str, python_values(self.flows["uid"])))
        first = dict(zip(reversed(uids), range(len(uids) - 1, -1, -1)))
        more: dict[str, list[int]] = {}
        if len(first) < len(uids):
            for i, uid in enumerate(uids):
                if first[uid] != i:
                    more.setdefault(uid, []).append(i)
        return first, more

    def positions(self, uids) -> np.ndarray:
        """The rows of the flows with these uids, in table order."""
        first, more = self._positions
        wanted = [uid for uid in dict.fromkeys(map(str, uids)) if uid in first]
        found = [first[uid] for uid in wanted] + [i for uid in wanted for i in more.get(uid, ())]
        return np.sort(np.array(found, dtype=np.intp))

    def column(self, name: str, uids) -> list:
        """One ``ROW`` column of the flows with these uids, in table order."""
        return self._readers[name](self.positions(uids))

    def rows(self, uids) -> list:
        """The flows with these uids, as ``ROW`` tuples in table order.

        Rows read are kept: a rule asking for the flows of each of hundreds
        of events first asks for all of them at once (one read per column),
        then each event's come from here, as do their findings' host pairs."""
        found = self.positions(uids)
        rows = self._rows
        missing = np.array([p for p in found.tolist() if p not in rows], dtype=np.intp)
        if missing.size:
            rows.update(zip(missing.tolist(), map(ROW._make, zip(*(read(missing)
                                                                   for read in self._readers.values())))))
        return [rows[p] for p in found.tolist()]

    @cached_property
    def _rows(self) -> dict[int, tuple]:
        return {}

    def host_pairs(self, uids) -> list[str]:
        """'src -> dst' of the flows with these uids, sorted, once each."""
        found = self.positions(uids)
        if all(p in self._rows for p in found.tolist()):
            pairs = [(self._rows[p].orig_h, self._rows[p].resp_h) for p in found.tolist()]
        else:
            pairs = zip(self._readers["orig_h"](found), self._readers["resp_h"](found))
        return sorted({f"{orig} -> {resp}" for orig, resp in pairs})

    def events_of(self, uids) -> tuple[str, ...]:
        """Migration events the flows with these uids belong to."""
        return tuple(sorted({event for event in self.column("event", uids) if event}))

    def clear_flows(self, protocol: str) -> pd.DataFrame:
        """Flows of a protocol whose payload crossed in clear."""
        if protocol not in self._clear_protocols:
            return self._no_clear  # one empty table for every protocol without flows: a filter costs ~2 ms
        f = self.flows
        return f[self._clear & (f["protocol"] == protocol).fillna(False).to_numpy(dtype=bool)]

    @cached_property
    def _clear_protocols(self) -> set:
        return set(self.flows["protocol"][self._clear].dropna().astype(str).tolist())

    @cached_property
    def _no_clear(self) -> pd.DataFrame:
        return self.flows.iloc[:0]

    @cached_property
    def _clear(self) -> np.ndarray:
        """Which flows' payload crossed in clear, found once for the five rules
        that ask: a mask, not a copy of those flows (500 k flows: ~60 MB)."""
        return self.flows["verdict"].astype(str).isin(CLEAR).to_numpy(dtype=bool)

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


def _column_reader(column: pd.Series) -> Callable[[np.ndarray], list]:
    """``positions -> the values of those rows`` as Python objects (None when missing)."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        codes, categories = column.cat.codes.to_numpy(), list(column.cat.categories) + [None]
        return lambda rows: [categories[code] for code in codes[rows].tolist()]
    if pd.api.types.is_numeric_dtype(column.dtype) and not column.hasnans:
        values = column.to_numpy()
        return lambda rows: values[rows].tolist()
    if pd.api.types.is_string_dtype(column.dtype):
        text = pa.array(column.array)
        return lambda rows: text.take(rows).to_pylist()
    return lambda rows: column.iloc[rows].tolist()


FLOW_LINE_COLUMNS = ["uid", "orig_h", "orig_p", "resp_h", "resp_p", "protocol", "proto", "orig_bytes", "resp_bytes",
                     "verdict", "confidence", "reason"]
"""The flows columns ``flow_line`` reads."""


LINE_CHUNK = 8_192
"""Flows turned into evidence lines at a time (62 k flows as rows at once: ~50 MB at the peak)."""


def flow_lines(flows: pd.DataFrame) -> tuple[str, ...]:
    """``flow_line`` of each flow, reading only the columns it needs."""
    return tuple(line for start in range(0, len(flows), LINE_CHUNK)
                 for line in map(flow_line, rows_of(flows.iloc[start : start + LINE_CHUNK], FLOW_LINE_COLUMNS)))


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
