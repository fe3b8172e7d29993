"""What the live sensor streams as JSON Lines while it runs: each flow as it
ends, and the migration events and findings the recently ended flows show.

Record types (``{"type": ...}``), in the order they happen:

``alert``    early alerts (``inspector.alerts.Alert``)
``stats``    packet, flow and drop counts (``inspector.live.LiveStats``)
``flow``     a flow that ended (the flows table's columns plus its evidence);
             ``closed_by`` says how, ``open`` for an interim report of a
             flow still open at the active timeout (the same ``uid`` ends later)
``event``    a migration event seen in the flows that ended recently, once
             per (source, destination, start), ``"final": false``
``finding``  a finding over those flows, told again only when it names a host
             pair not told for that rule before, ``"final": false``
``error``    ``message``: an output that stopped (a full disk: ``--write-pcap``,
             the spool, or this file, as long as it takes the line) or, with
             ``--workers``, a capture process that failed

When the sensor stops, every event and finding of the whole run follows
with ``"final": true`` and the ids (``M1``, ``F1`` ...) of the reports;
the records streamed before carry no ids, which are given only once every
flow is known.

Events and findings while running are computed over the notable flows
(recognised by a detector, holding a secret, or watched and either in clear
or bulk) that ended in the last ``horizon`` seconds, at most ``max_flows``
of them, every ``every`` seconds: memory and work stay bounded however
long the sensor runs.
"""

from __future__ import annotations

import json
import os
import warnings
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import pandas as pd

from inspector.analysis import Analysis, assemble
from inspector.errors import InspectorError, OutputWarning
from inspector.events import BULK_BYTES
from inspector.schema import CLEAR
from inspector.pipeline import SECOND, ClosedFlows
from inspector.report import json_report
from inspector.report.output import append_whole, open_private, whole_lines
from inspector.text import file_name

HORIZON = 300.0
MAX_FLOWS = 5_000
EVERY = 10.0  # seconds of capture time between two looks at the recent flows
_RECENT_TABLES = ("flows", "evidence", "secrets", "secret_counts")


class JsonLines:
    """The ``--jsonl`` stream: one JSON object per line, each group of records
    written at once. Given a path (``JsonLines.open``), each group is one
    ``os.write`` of whole lines: when the disk is full the file is cut back
    to its last whole line, an ``OutputWarning`` names it, and it takes no
    more records (the sensor goes on)."""

    def __init__(self, handle: IO[str]) -> None:
        self.handle = handle
        self.path: Path | None = None
        self.failed = False

    @classmethod
    def open(cls, path: str | os.PathLike) -> JsonLines:
        """Append to ``path`` (created 0600, never through a link)."""
        try:
            lines = cls(open_private(path, "a"))
        except OSError as exc:
            raise InspectorError(f"--jsonl {file_name(path)}: {exc.strerror or exc}") from None
        lines.path = Path(path)
        return lines

    def write(self, records: list[dict[str, Any]]) -> None:
        self._put("".join(json.dumps(record, default=str) + "\n" for record in records).encode())

    def _put(self, data: bytes) -> None:
        if self.failed or not data:
            return
        if self.path is None:  # in memory (the warm-up, tests)
            self.handle.write(data.decode())
            return
        try:
            append_whole(self.handle.fileno(), data, whole_lines(data))
        except OSError as exc:
            self.failed = True
            warnings.warn(f"--jsonl {file_name(self.path)}: {exc.strerror or exc}; no more records go there",
                          OutputWarning, stacklevel=2)

    def close(self) -> None:
        self.handle.close()

    def flows(self, closed: ClosedFlows) -> None:
        """One ``flow`` record per flow that ended (or is reported open)."""
        flows = closed.flows.assign(event="")
        for lines in json_report.flow_chunks(flows, closed.evidence):
            self._put(b"".join(b'{"type":"flow",' + line[1:] + b"\n" for line in lines))

    def final(self, result: Analysis) -> None:
        """Every event and finding of the run, with the reports' ids."""
        self.write([{"type": "event", "final": True, **r} for r in json_report.event_records(result.events)]
                   + [{"type": "finding", "final": True, **r}
                      for r in json_report.finding_records(result.findings)])


class RecentHappenings:
    """Events and findings of the notable flows that ended recently, each
    told once to ``emit`` (a list of records)."""

    def __init__(self, watch, emit: Callable[[list[dict[str, Any]]], None], *, horizon: float = HORIZON,
                 max_flows: int = MAX_FLOWS, every: float = EVERY) -> None:
        self.watch = watch
        self.emit = emit
        self.horizon = int(horizon * SECOND)
        self.max_flows = max_flows
        self.every = int(every * SECOND)
        self.recent: deque[tuple[int, dict[str, pd.DataFrame]]] = deque()  # (ended at, tables)
        self.kept = 0  # flows in self.recent
        self.told: set[tuple] = set()
        self.changed = False
        self.looked = -1

    def add(self, closed: ClosedFlows) -> None:
        """Keep the notable flows of what ended; look again every ``every``."""
        now = closed.at
        if not closed.interim:
            flows = closed.flows
            notable = notable_flows(closed)
            if notable.any():
                uids = flows.loc[notable, "uid"]
                self.recent.append((now, {name: _rows_of(getattr(closed, name), uids) for name in _RECENT_TABLES}))
                self.kept += len(uids)
                self.changed = True
        while self.recent and (self.recent[0][0] < now - self.horizon or self.kept > self.max_flows):
            self.kept -= len(self.recent.popleft()[1]["flows"])
        if self.changed and now >= self.looked + self.every:
            self.look(now)

    def look(self, now: int) -> None:
        """Events and findings over the recent flows; emit the new ones."""
        self.looked, self.changed = now, False
        if not self.recent:
            return
        parts = {name: [t[name] for _, t in self.recent] for name in _RECENT_TABLES}
        result = assemble({**parts, "windows": [], "byte_histograms": []}, [], self.watch)
        records = []
        for record in json_report.event_records(result.events):
            key = ("event", record["src_h"], record["dst_h"], record["start"])
            if key not in self.told:
                self.told.add(key)
                record.pop("event")
                records.append({"type": "event", "final": False, **record})
        for record in json_report.finding_records(result.findings):
            # once per rule and host pair: a finding over the recent flows names other pairs as flows come and go
            keys = {("finding", record["rule"], pair) for pair in record["hosts"] or ("",)}
            if not keys <= self.told:
                self.told |= keys
                for provisional in ("finding", "events"):
                    record.pop(provisional)
                records.append({"type": "finding", "final": False, **record})
        if records:
            self.emit(records)


def notable_flows(closed: ClosedFlows) -> pd.Series:
    """Which of ``closed.flows`` an event or a finding can be made of:
    recognised by a detector, holding a secret, or watched and either in
    clear or bulk (a migration channel)."""
    flows = closed.flows
    watched = flows["watch"] != "none"
    clear = flows["verdict"].isin(CLEAR)
    bulk = (flows["orig_bytes"] + flows["resp_bytes"]) >= BULK_BYTES
    return (flows["protocol"] != "") | (watched & (clear | bulk)) | flows["uid"].isin(closed.secret_counts["uid"])


def _rows_of(table: pd.DataFrame, uids: pd.Series) -> pd.DataFrame:
    return table[table["uid"].isin(uids)].reset_index(drop=True)
