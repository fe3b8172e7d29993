"""Meters: the per-flow features of the pipeline, behind one lifecycle.

A meter measures one thing per flow (protocol detections, the secret scan,
byte histograms, live alerts, evidence pcaps), in the spirit of nfstream's
NFPlugin but at batch level: Python runs per batch and per reassembled
region, never per packet. Its lifecycle:

``start(flows)``         bound to the pipeline (``Flows``: the flow table, the
                         watchlist, which flows are watched, their orientation)
``on_batch(batch, ...)`` a batch was folded into the flow table
``on_regions(regions)``  reassembled regions (heads, probes) completed
``take(part)``           the flows of ``part`` ended (or are reported open):
                         fill its tables and flows columns
``forget(fids)``         those flows' ids will name new flows: drop their state

Each meter declares what it fills (``tables``, ``flow_columns``: names in
``inspector.schema``). The pipeline knows flows, classification and a list
of meters; ``default_meters`` is what ``analyze`` runs, the live sensor adds
its alerts and evidence pcaps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pandas as pd

from inspector.capture.reader import CaptureReader, PacketBatch
from inspector.classify.evidence import DETAIL_COLUMNS, DetectionCollector, apply_evidence
from inspector.findings.secrets import PATTERNS, SecretScanner
from inspector.flows.histograms import RegionHistograms
from inspector.flows.kernels import FL_PROTO
from inspector.flows.table import FlowTable, Region
from inspector.protocols import Detection
from inspector.watch import Watchlist


class Flows(Protocol):
    """What a meter may ask the pipeline about the flows it holds."""

    table: FlowTable
    watch: Watchlist
    reader: CaptureReader | None  # the input being read

    def watched(self, flow: int) -> bool: ...

    def orig_is_a(self, flow: int) -> bool: ...


@dataclass
class Part:
    """Flows handed to the meters together: row ``i`` of ``flows`` is flow-table
    id ``fids[i]``; ``orig_slot[i]`` is ``2 * i + d`` for the originator's
    direction ``d`` (0: endpoint A sent). ``ended`` is False for an interim
    report of open flows (their state must be kept)."""

    fids: np.ndarray
    flows: pd.DataFrame
    orig_slot: np.ndarray
    ended: bool
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


class Meter:
    """Base meter: every step does nothing; override what the feature needs."""

    tables: tuple[str, ...] = ()
    flow_columns: tuple[str, ...] = ()

    def start(self, flows: Flows) -> None:
        self.flows = flows

    def on_batch(self, batch: PacketBatch, flow_ids: np.ndarray, dirs: np.ndarray) -> None:
        pass

    def on_regions(self, regions: list[Region]) -> None:
        pass

    def take(self, part: Part) -> None:
        pass

    def forget(self, fids: list[int]) -> None:
        pass


class Detections(Meter):
    """The protocol detectors on each flow's heads and probes; their proofs
    override the statistics' verdict (``classify.evidence``).

    ``detect=False`` runs no detector (verdicts from statistics alone) but
    still fills the columns. ``on_detect(flow, hits)`` hears detections as
    they are made (the sensor's alerts); heads of watched flows are then
    also read alone as soon as they complete."""

    tables = ("evidence",)
    flow_columns = ("protocol", "verdict", "confidence", "reason", *DETAIL_COLUMNS)

    def __init__(self, *, detect: bool = True,
                 on_detect: Callable[[int, list[Detection]], None] | None = None) -> None:
        self.detect = detect
        self.on_detect = on_detect

    def start(self, flows: Flows) -> None:
        super().start(flows)
        table = flows.table
        self.collector = DetectionCollector(flows.orig_is_a, on_detect=self.on_detect,
                                            early=flows.watched if self.on_detect else None,
                                            transport=lambda flow: int(table.flow[flow, FL_PROTO]))

    def on_regions(self, regions: list[Region]) -> None:
        if self.detect:
            self.collector.on_regions(regions)

    def take(self, part: Part) -> None:
        found = self.collector.take(part.fids.tolist(), ended=part.ended)
        part.flows, part.tables["evidence"] = apply_evidence(part.flows, found, np.arange(len(part.flows)))


class Secrets(Meter):
    """The scan of every packet's payload for secrets; flows that come out
    encrypted keep none. ``on_first(flow, direction, kind, label)`` hears
    the first match of each (flow, direction, kind)."""

    tables = ("secrets", "secret_counts")

    def __init__(self, *, on_first: Callable[[int, int, str, str], None] | None = None) -> None:
        self.scanner = SecretScanner(PATTERNS, on_first=on_first)

    def on_batch(self, batch: PacketBatch, flow_ids: np.ndarray, dirs: np.ndarray) -> None:
        self.scanner.scan(batch, flow_ids, dirs, self.flows.table.slot)

    def take(self, part: Part) -> None:
        part.tables["secrets"], part.tables["secret_counts"] = self.scanner.take(
            part.fids.tolist(), part.flows, part.orig_slot, ended=part.ended)


class ByteHistograms(Meter):
    """Byte-value counts of the probe regions (or full head) of bulk watched flows (``flows.histograms``)."""

    tables = ("byte_histograms",)

    def start(self, flows: Flows) -> None:
        super().start(flows)
        self.histograms = RegionHistograms(flows.watched)

    def on_regions(self, regions: list[Region]) -> None:
        for region in regions:
            self.histograms.on_region(region)

    def take(self, part: Part) -> None:
        orig_first = part.orig_slot % 2 == 0  # direction 0 of the flow is its originator's
        orig, resp = part.flows["orig_bytes"].to_numpy(), part.flows["resp_bytes"].to_numpy()
        sent = np.column_stack([np.where(orig_first, orig, resp), np.where(orig_first, resp, orig)]).ravel()
        part.tables["byte_histograms"] = self.histograms.take(
            part.fids.tolist(), part.flows["uid"].to_numpy(), part.orig_slot, sent, ended=part.ended)


def default_meters(*, detectors: bool = True, secrets: bool = True,
                   on_detect: Callable[[int, list[Detection]], None] | None = None,
                   on_secret: Callable[[int, int, str, str], None] | None = None) -> list[Meter]:
    """The meters of an analysis, in the order they see ended flows (the
    detections settle verdicts before the secret scan drops encrypted flows)."""
    meters: list[Meter] = [Detections(detect=detectors, on_detect=on_detect)]
    if secrets:
        meters.append(Secrets(on_first=on_secret))
    meters.append(ByteHistograms())
    return meters
