"""Packets in, tables of ended flows out: flows are classified as they end.

Each batch goes through the flow table (the detectors read its reassembled
regions, the byte histograms count them), the secret scan and, in the live
sensor, the alerts. Every ``Timeouts.sweep`` seconds of capture time the
flows that ended (idle, or closed by FIN/RST a little while ago) are
closed: their state becomes tables (``ClosedFlows``: flows, windows,
evidence, secrets, byte histograms), handed to ``on_closed``, and their
memory is reused. So the pipeline holds the flows open at once, not every
flow seen; a long run with many short flows stays flat.

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

from inspector.alerts import Alert, Alerter
from inspector.capture import decode as D
from inspector.capture.reader import CaptureReader, InputStats, PacketBatch
from inspector.classify import classify_flows
from inspector.classify.evidence import DetectionCollector, apply_evidence
from inspector.findings.secrets import PATTERNS, SecretScanner
from inspector.flows import kernels as K
from inspector.flows.frame import build_flows, originator_is_a_one
from inspector.flows.histograms import RegionHistograms
from inspector.flows.schema import CLOSED_BY
from inspector.flows.table import FlowState, FlowTable, Region
from inspector.timeouts import DEFAULT_TIMEOUTS, Timeouts
from inspector.watch import ROLES, Watchlist

SECOND = 1_000_000_000
LIVE_LAG = 2 * SECOND  # libpcap's buffer timeout (1 s on Linux) and the pipe, with a margin


@dataclass
class ClosedFlows:
    """The tables of flows that ended together (or of open flows reported at
    the active timeout): the columns of ``inspector.tables.SCHEMAS`` except
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


def _only(flow_ids: np.ndarray, start: int, stop: int) -> np.ndarray:
    """``flow_ids`` with the packets outside ``start:stop`` left out (-1)."""
    part = np.full_like(flow_ids, -1)
    part[start:stop] = flow_ids[start:stop]
    return part


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

    ``on_closed`` gets the ``ClosedFlows`` of each sweep, and of the rest of
    the flows at ``finish()``; ``on_alert`` and ``evidence`` are the live
    sensor's early alerts and evidence pcaps (see ``analyze_readers``).
    """

    def __init__(self, watch: Watchlist, names: list[str], *, on_closed: Callable[[ClosedFlows], None],
                 detectors: bool = True, secrets: bool = True, timeouts: Timeouts = DEFAULT_TIMEOUTS,
                 on_alert: Callable[[Alert], None] | None = None,
                 evidence: Callable[[int, str, str, str], str] | None = None,
                 on_forget: Callable[[list[int]], None] | None = None) -> None:
        self.watch = watch
        self.names = names
        self.on_closed = on_closed
        self.timeouts = timeouts
        self.on_forget = on_forget
        self.now = -1  # capture clock, ns: the latest packet time (or wall clock tick) seen
        self._next_sweep: int | None = None
        self.alerts = Alerter(lambda: self.table, watch, self._orientation, on_alert, evidence) if on_alert else None
        self.collector = DetectionCollector(self._orientation, on_detect=self.alerts.on_detect if self.alerts else None,
                                            early=self.alerts.watched if self.alerts else None)
        self.histograms = RegionHistograms(self._service_flow)
        self.detectors = detectors
        self.table = FlowTable(on_region=self._on_region)
        self.scanner = SecretScanner(PATTERNS if secrets else (),
                                     on_first=self.alerts.on_secret if self.alerts else None)

    def _orientation(self, flow: int) -> bool:
        return originator_is_a_one(self.table.flow[flow], self.watch.service_ports)

    def _service_flow(self, flow: int) -> bool:
        ports = self.watch.service_ports
        return int(self.table.flow[flow, K.FL_A_PORT]) in ports or int(self.table.flow[flow, K.FL_B_PORT]) in ports

    def _on_region(self, region: Region) -> None:
        if self.detectors:
            self.collector.on_region(region)
        self.histograms.on_region(region)

    def run(self, readers: Iterable[CaptureReader], *,
            on_batch: Callable[[CaptureReader, int], None] | None = None,
            on_keyed: Callable[[CaptureReader, PacketBatch, np.ndarray, int], None] | None = None,
            ) -> list[InputStats]:
        """Every batch of every reader, in order (reader ``i`` is input ``i``),
        a sweep after each, then ``finish``; returns the readers' stats.

        ``on_keyed(reader, batch, flow_ids, flows_seen)`` sees each batch once
        its packets are keyed to flows, ``on_batch(reader, packets)`` after it.
        A live reader's empty batch (nothing arrived for ``LIVE_TICK``) means
        its pipe is drained: the clock moves on to the wall clock, less what
        libpcap may still hold back, so flows end on a quiet link; while
        packets flow (a busy sensor may be behind them) only their times count.
        """
        stats: list[InputStats] = []
        packets = 0
        for i, reader in enumerate(readers):
            for batch in reader:
                if batch.n:
                    flow_ids, _dirs = self.add(batch, i)
                    if on_keyed:
                        on_keyed(reader, batch, flow_ids, self.table.flows_seen)
                    packets += batch.n
                    if on_batch:
                        on_batch(reader, packets)
                self.sweep(time.time_ns() - LIVE_LAG if reader.live and not batch.n else None)
            stats.append(reader.stats)
        self.finish()
        if self.table.hash_collisions and stats:
            stats[-1].anomaly("flow-key-collision", "packets whose 64-bit flow key collided were not counted",
                              self.table.hash_collisions)
        return stats

    def add(self, batch: PacketBatch, input_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Fold a batch in; returns its packets' flow ids and directions, valid
        until the next ``sweep`` (which may close flows and reuse their ids).

        A packet that comes after its flow ended (idle, or after FIN/RST: see
        ``kernels.update_flows``) ends that flow here, mid-batch, and starts a
        new one, so where batches happen to split a capture changes nothing."""
        table, t = self.table, self.timeouts
        flow_ids, dirs = table.key(batch, input_index)
        start = 0
        while True:
            stop, ended = table.update(batch, flow_ids, dirs, start, int(t.idle * SECOND),
                                       int(t.after_close * SECOND))
            if start == 0 and ended < 0:
                self.scanner.scan(batch, flow_ids, dirs, table.slot)
            else:  # the packets before the flow ended belong to it: scan them now
                self.scanner.scan(batch, _only(flow_ids, start, stop), dirs, table.slot)
            if ended < 0:
                break
            self.now = max(self.now, int(batch.fields[D.F_TS, stop]))
            self._close(np.array([ended]), "idle")
            table.restart(batch, flow_ids, dirs, stop, ended, input_index)
            start = stop
        if batch.n:
            self.now = max(self.now, int(batch.fields[D.F_TS].max()))
        return flow_ids, dirs

    def sweep(self, now: int | None = None) -> None:
        """Close the flows that ended by ``now`` (ns; default the latest packet
        time), at most once per ``Timeouts.sweep``; report long open flows."""
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
        ended = self.table.due(self.now, int(t.idle * SECOND), int(t.after_close * SECOND))
        if ended.size:
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
        """The input ended: close every flow still open."""
        open_ids = self.table.open_ids()
        if open_ids.size:
            self._close(open_ids, "end")

    def _close(self, fids: np.ndarray, reason: str) -> None:
        state = self.table.close(fids)
        closed = self._tables(fids, state, reason, ended=True)
        ids = fids.tolist()
        if self.alerts:
            self.alerts.forget(ids)
        if self.on_forget:
            self.on_forget(ids)
        self.on_closed(closed)

    def _tables(self, fids: np.ndarray, state: FlowState, reason: str, *, ended: bool) -> ClosedFlows:
        """Flows, verdicts, evidence, secrets and histograms of these flows."""
        ids = fids.tolist()
        flows, orig_slot, resp_slot = build_flows(state, self.watch.service_ports, self.names)
        flows, windows = classify_flows(flows, orig_slot, resp_slot, state.windows)
        flows, evidence = apply_evidence(flows, self.collector.take(ids, ended=ended), np.arange(len(flows)))
        secrets, secret_counts = self.scanner.take(ids, flows, orig_slot, ended=ended)
        byte_histograms = self.histograms.take(ids, flows["uid"].to_numpy(), orig_slot, ended=ended)
        flows["watch"] = pd.Categorical(
            self.watch.roles(flows["orig_p"].to_numpy("int64"), flows["resp_p"].to_numpy("int64"),
                             flows["orig_h"].tolist(), flows["resp_h"].tolist()),
            categories=ROLES,
        )
        closed = state.flow[:, K.FL_CLOSED] if ended else np.zeros(len(flows))  # an interim report: 'open'
        flows["closed_by"] = pd.Categorical(np.select([closed == 1, closed == 2], ["fin", "rst"], reason),
                                            categories=CLOSED_BY)
        return ClosedFlows(flows, windows, evidence, secrets, secret_counts, byte_histograms, interim=not ended,
                           at=self.now)
