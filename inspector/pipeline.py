"""Packets in, tables of ended flows out: flows are classified as they end.

Each batch goes through the flow table, then the meters (``inspector.meters``:
the detectors read its reassembled regions, the byte histograms count them,
the secret scan reads the batch, the live sensor adds alerts). Every
``Timeouts.sweep`` seconds of capture time the flows that ended (idle, or
closed by FIN/RST a little while ago) are closed together, once at least
``Timeouts.batch`` of them did: their state becomes tables (``ClosedFlows``:
flows, windows, evidence, secrets, byte histograms), handed to
``on_closed``, and their memory is reused. So the pipeline holds the flows
open at once (and at most a batch of ended ones), not every flow seen; a
long run with many short flows stays flat. With ``Timeouts.most`` (the
sensor) a sweep between reads of the pipe closes at most that many, the
rest after the next read, so a burst of ended flows never stops the
reading of packets for long.

Long flows are not cut: with ``Timeouts.active``, a flow open that long is
reported as it is so far (``closed_by`` = ``open``) and again after each
further ``active`` seconds, keeping its uid and state. A migration that
outlasts the timeout stays one flow whose head (where its protocol is
proven) is not lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from inspector.capture import decode as D
from inspector.capture.reader import CaptureReader, InputStats, PacketBatch
from inspector.classify import classify_columns
from inspector.flows import kernels as K
from inspector.flows.frame import flow_columns, originator_is_a_one
from inspector.flows.table import FlowState, FlowTable, Region
from inspector.meters import Meter, Part
from inspector.partition import Partition
from inspector.schema import CLOSED_BY, ROLES, SCHEMAS
from inspector.tables import empty_frame, text_columns
from inspector.timeouts import DEFAULT_TIMEOUTS, Timeouts
from inspector.watch import Watchlist

SECOND = 1_000_000_000
LIVE_LAG = 2 * SECOND  # libpcap's buffer timeout (1 s on Linux) and the pipe, with a margin


@dataclass
class ClosedFlows:
    """The tables of flows that ended together (or of open flows reported at
    the active timeout): the columns of ``inspector.schema.SCHEMAS`` except
    ``flows.event``, which needs every flow of a migration."""

    flows: pd.DataFrame
    windows: pd.DataFrame
    evidence: pd.DataFrame
    secrets: pd.DataFrame
    secret_counts: pd.DataFrame
    byte_histograms: pd.DataFrame
    interim: bool = False  # open flows reported at the active timeout: they will end later
    at: int = 0  # capture clock (ns) when they were closed or reported

    TABLES = ("flows", "windows", "evidence", "secrets", "secret_counts", "byte_histograms")


class ClosedTables:
    """Where ended flows' tables go until the reports: memory (``analyze``)."""

    def __init__(self) -> None:
        self.parts: dict[str, list[pd.DataFrame]] = {name: [] for name in ClosedFlows.TABLES}

    def add(self, closed: ClosedFlows) -> None:
        for name in ClosedFlows.TABLES:
            self.parts[name].append(getattr(closed, name))

    def tables(self) -> dict[str, list[pd.DataFrame]]:
        """Each table's parts, in the order the flows ended."""
        return self.parts


class Pipeline:
    """One pass over the packets of one capture (any number of readers).

    The pipeline keeps the flow table, classifies flows as they end and runs
    ``meters`` (``inspector.meters``: detections, secret scan, byte
    histograms, the sensor's alerts ...) through their lifecycle;
    ``on_closed`` gets the ``ClosedFlows`` of each sweep, and of the rest of
    the flows at ``finish()``.
    """

    def __init__(self, watch: Watchlist, names: list[str], *, meters: list[Meter],
                 on_closed: Callable[[ClosedFlows], None], timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 partition: Partition | None = None, capture: int = 0) -> None:
        self.watch = watch
        self.partition = partition  # the share of the flows this pipeline keeps (``inspector.parallel``)
        self.capture = capture  # which of the captures analysed apart (``flow_columns``)
        self.names = names
        self.on_closed = on_closed
        self.timeouts = timeouts
        self.meters = meters
        self.now = -1  # capture clock, ns: the latest packet time (or wall clock tick) seen
        self.reader: CaptureReader | None = None
        self._next_sweep: int | None = None
        self._ended: list[int] = []  # flows that ended mid-batch (a packet came after their end), closed at the sweep
        self._roles = np.zeros(1024, dtype=np.int8)  # watch role code of each flow id
        self.table = FlowTable(on_regions=self._on_regions, on_create=self._on_create)
        for meter in meters:
            meter.start(self)

    def orig_is_a(self, flow: int) -> bool:
        """Endpoint A of the flow is its originator (asked once its SYN, if any, was seen)."""
        return originator_is_a_one(self.table.flow[flow], self.watch.service_ports)

    def watched(self, flow: int) -> bool:
        """The flow matched a watchlist role (ports or an internal network)."""
        return bool(self._roles[flow] != len(ROLES) - 1)

    def _on_create(self, fids: np.ndarray) -> None:
        self._grow_roles()
        t = self.table
        self._roles[fids] = self.watch.role_codes(t.flow[fids, K.FL_A_PORT], t.flow[fids, K.FL_B_PORT],
                                                  t.flow_addr[fids], t.flow[fids, K.FL_IP_VERSION])

    def _grow_roles(self) -> None:
        if self._roles.size < self.table.n_ids:
            self._roles = np.resize(self._roles, max(self.table.n_ids, 2 * self._roles.size))

    def _on_regions(self, regions: list[Region]) -> None:
        for meter in self.meters:
            meter.on_regions(regions)

    def run(self, readers: Iterable[CaptureReader], *,
            on_batch: Callable[[CaptureReader, int, int], None] | None = None) -> list[InputStats]:
        """Every batch of every reader, in order (reader ``i`` is input ``i``),
        a sweep after each, then ``finish``; returns the readers' stats.

        ``on_batch(reader, packets, flows_seen)`` follows progress after each batch.
        A live reader's empty batch (nothing arrived for ``LIVE_TICK``) means
        its pipe is drained: the clock moves on to the wall clock, less what
        libpcap may still hold back, so flows end on a quiet link; while
        packets flow (a busy sensor may be behind them) only their times count.
        """
        stats: list[InputStats] = []
        packets = 0
        for i, reader in enumerate(readers):
            self.reader = reader
            for batch in reader:
                if batch.n:
                    self.add(batch, i)
                    packets += batch.n
                    if on_batch:
                        on_batch(reader, packets, self.table.flows_seen)
                self.sweep(time.time_ns() - LIVE_LAG if reader.live and not batch.n else None)
            stats.append(reader.stats)
        self.finish()
        if self.table.hash_collisions and stats:
            stats[-1].anomaly("flow-key-collision", "packets whose 64-bit flow key collided were not counted",
                              self.table.hash_collisions)
        return stats

    def add(self, batch: PacketBatch, input_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Fold a batch in and show it to the meters; returns its packets' flow
        ids and directions, valid until the next ``sweep`` (which may close
        flows and reuse their ids).

        A packet that comes after its flow ended (idle, or after FIN/RST: see
        ``kernels.update_flows``) starts a new flow with a new id here,
        mid-batch, so where batches happen to split a capture changes
        nothing; the ended flow keeps its id and state until the next sweep
        closes it with the others (one classification for all of them)."""
        table, t = self.table, self.timeouts
        if batch.n:  # the clock of every packet, those of other partitions too: sweeps happen as in one process
            self.now = max(self.now, int(batch.fields[D.F_TS].max()))
        keys, dirs = K.flow_keys(batch.fields, batch.addrs)
        if self.partition is not None:
            batch, keys, dirs = self.partition.own(batch, keys, dirs)
        flow_ids = table.flow_ids(keys, dirs, batch, input_index)
        start = 0
        while True:
            stop, ended = table.update(batch, flow_ids, dirs, start, int(t.idle * SECOND),
                                       int(t.after_close * SECOND))
            if ended < 0:
                break
            self._ended.append(ended)
            fid = table.restart(flow_ids, stop, ended, input_index)
            self._grow_roles()
            self._roles[fid] = self._roles[ended]  # the same endpoints and ports: the same watch role
            start = stop
        for meter in self.meters:
            meter.on_batch(batch, flow_ids, dirs)
        return flow_ids, dirs

    def sweep(self, now: int | None = None) -> None:
        """Close the flows that ended by ``now`` (ns; default the latest packet
        time), at most once per ``Timeouts.sweep``; report long open flows.
        A ``now`` is the wall clock of a live reader whose pipe was empty.
        ``Timeouts.most`` holds back the rest of the ended flows until the
        next batch or the next empty read, so the pipe is looked at between
        closes even when a burst of flows ended at once."""
        if now is not None:
            self.now = max(self.now, now)
        if self.now < 0:
            return
        if self._next_sweep is None:
            self._next_sweep = self.now + int(self.timeouts.sweep * SECOND)
        if self.now < self._next_sweep:
            return
        self._next_sweep = self.now + int(self.timeouts.sweep * SECOND)
        t = self.timeouts
        due = self.table.due(self.now, int(t.idle * SECOND), int(t.after_close * SECOND))
        ended = np.concatenate([np.array(self._ended, dtype=np.int64), due])
        if t.most and ended.size > t.most:  # the rest after the next read of the pipe: packets come first
            ended = ended[: t.most]
            self._next_sweep = self.now
        if ended.size and ended.size >= t.batch:
            self._close(ended, "idle")
        if t.active:
            self._report_long_flows(int(t.active * SECOND))

    def _report_long_flows(self, active: int) -> None:
        table = self.table
        open_ids = table.open_ids()
        since = np.maximum(table.flow[open_ids, K.FL_FIRST_TS], table.flow[open_ids, K.FL_REPORTED_TS])
        long = open_ids[since <= self.now - active]
        if long.size:
            table.flow[long, K.FL_REPORTED_TS] = self.now
            self.on_closed(self._tables(long, table.snapshot(long), "open", ended=False))

    def finish(self) -> None:
        """The input ended: close every flow still open (and those that ended
        mid-batch). Those idle for the timeout already end ``idle``, like at a
        sweep: how many flows a sweep waits for (``Timeouts.batch``) changes
        nothing, nor does which partition a flow was analysed in."""
        t = self.timeouts
        idle = np.concatenate([np.array(self._ended, dtype=np.int64),
                               self.table.due(self.now, int(t.idle * SECOND), int(t.after_close * SECOND))])
        ended = np.union1d(idle, self.table.open_ids())
        if ended.size:
            self._close(ended, np.where(np.isin(ended, idle), "idle", "end"))

    def _close(self, fids: np.ndarray, reason: str | np.ndarray) -> None:
        """``reason``: how flows still open end (flows closed by FIN or RST say so)."""
        ended_before = np.isin(fids, self._ended)
        closing = set(fids.tolist())
        self._ended = [fid for fid in self._ended if fid not in closing]  # the rest wait for the next sweep
        state = self.table.close(fids)
        closed = self._tables(fids, state, np.where(ended_before, "idle", reason), ended=True)
        ids = fids.tolist()
        for meter in self.meters:
            meter.forget(ids)
        self.on_closed(closed)

    def _tables(self, fids: np.ndarray, state: FlowState, reason: str | np.ndarray, *,
                ended: bool) -> ClosedFlows:
        """Flows and verdicts of these flows, and the meters' tables.

        The flows table is built once from ready columns: a close costs a
        fixed ~10 ms plus its flows (the sensor closes every second)."""
        columns, orig_slot, resp_slot = flow_columns(state, self.watch.service_ports, self.names, self.capture)
        verdicts, windows = classify_columns(columns["uid"], orig_slot, resp_slot, state.windows, state.slot)
        closed = state.flow[:, K.FL_CLOSED] if ended else np.zeros(len(fids))  # an interim report: 'open'
        names, by_reason = np.asarray(reason), np.zeros(np.shape(reason), dtype=np.int8)
        for code, name in enumerate(CLOSED_BY):  # per name, not per flow
            by_reason[names == name] = code
        closed_by = np.where(closed == 1, CLOSED_BY.index("fin"), np.where(closed == 2, CLOSED_BY.index("rst"),
                                                                          by_reason)).astype(np.int8)
        flows = pd.DataFrame({
            **text_columns({**columns, **verdicts}),
            "watch": pd.Categorical.from_codes(self._roles[fids], dtype=_WATCH),
            "closed_by": pd.Categorical.from_codes(closed_by, dtype=_CLOSED_BY),
        })
        part = Part(fids, flows, orig_slot, ended, {"windows": windows})
        for meter in self.meters:
            meter.take(part)
        tables = {name: part.tables.get(name) for name in ClosedFlows.TABLES[1:]}
        return ClosedFlows(part.flows, **{name: table if table is not None else empty_frame(SCHEMAS[name])
                                          for name, table in tables.items()}, interim=not ended, at=self.now)


_WATCH = pd.CategoricalDtype(ROLES)
_CLOSED_BY = pd.CategoricalDtype(CLOSED_BY)
