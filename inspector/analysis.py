"""The library entry point: capture -> flows -> classify, as tidy tables."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from inspector.capture.reader import CaptureReader, InputStats
from inspector.classify import classify_flows
from inspector.classify.evidence import DetectionCollector, apply_evidence
from inspector.events import build_events
from inspector.flows.frame import build_flows, originator_is_a_one
from inspector.flows.schema import FLOW_COLUMNS
from inspector.findings.engine import build_findings
from inspector.findings.facts import Facts
from inspector.findings.schema import FINDING_COLUMNS, SECRET_COLUMNS, SECRET_COUNT_COLUMNS
from inspector.findings.secrets import PATTERNS, SecretScanner
from inspector.flows.histograms import BYTE_HISTOGRAM_COLUMNS, RegionHistograms
from inspector.flows.kernels import FL_A_PORT, FL_B_PORT
from inspector.flows.table import FlowTable, Region
from inspector.watch import ROLES, Watchlist

PathLike = str | os.PathLike

INPUT_COLUMNS = ["file", "format", "linktypes", "packets", "captured_bytes", "wire_bytes",
                 "truncated_packets", "non_ip_packets", "anomalies"]
ANOMALY_COLUMNS = ["file", "kind", "count", "detail"]


class Progress(NamedTuple):
    """What ``analyze`` has read so far, for progress bars."""

    packets: int
    file_bytes: int        # bytes of the input files read (compressed bytes for gzip)
    file_bytes_total: int


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


@dataclass
class Analysis:
    """Result of :func:`analyze`: tables joined on ``uid`` (flows, windows,
    evidence, secrets, findings' uids), on ``event`` (flows, events) and on
    ``file`` (inputs, anomalies)."""

    flows: pd.DataFrame
    windows: pd.DataFrame
    evidence: pd.DataFrame
    events: pd.DataFrame
    inputs: pd.DataFrame
    anomalies: pd.DataFrame
    watch: Watchlist = field(default_factory=Watchlist)
    findings: pd.DataFrame = field(default_factory=lambda: empty_frame(FINDING_COLUMNS))
    secrets: pd.DataFrame = field(default_factory=lambda: empty_frame(SECRET_COLUMNS))
    secret_counts: pd.DataFrame = field(default_factory=lambda: empty_frame(SECRET_COUNT_COLUMNS))
    byte_histograms: pd.DataFrame = field(default_factory=lambda: empty_frame(BYTE_HISTOGRAM_COLUMNS))

    @property
    def watched(self) -> pd.DataFrame:
        """Flows that matched a watchlist role."""
        return self.flows[self.flows["watch"] != "none"]


def analyze(
    paths: PathLike | Iterable[PathLike],
    *,
    watch: Watchlist | None = None,
    internal_nets: Iterable[str] = (),
    on_progress: Callable[[Progress], None] | None = None,
    detectors: bool = True,
    secrets: bool = True,
) -> Analysis:
    """Read capture files, build bidirectional flows and classify them.

    Several files are read in order as one capture (a flow seen in two files
    is one flow). ``on_progress`` gets a ``Progress`` after each batch.
    ``detectors=False`` leaves verdicts to the payload statistics alone (to
    measure what the protocol evidence adds). ``secrets=False`` skips the scan
    of cleartext payload for secrets (``Analysis.secrets``).

    Example::

        result = inspector.analyze("captures/qemu-plain.pcap.gz")
        result.flows[["uid", "resp_p", "watch", "verdict", "reason"]]
    """
    path_list = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    watch = (watch or Watchlist.default()).with_internal_nets(list(internal_nets))
    table: FlowTable
    collector = DetectionCollector(
        lambda flow: originator_is_a_one(table.flow[flow], watch.service_ports))
    histograms = RegionHistograms(lambda flow: int(table.flow[flow, FL_A_PORT]) in watch.service_ports
                                  or int(table.flow[flow, FL_B_PORT]) in watch.service_ports)

    def on_region(region: Region) -> None:
        if detectors:
            collector.on_region(region)
        histograms.on_region(region)

    table = FlowTable(on_region=on_region)
    scanner = SecretScanner(PATTERNS if secrets else ())
    stats: list[InputStats] = []
    total = sum(_size(p) for p in path_list)
    done_files = packets = 0
    for i, path in enumerate(path_list):
        reader = CaptureReader(path)
        for batch in reader:
            flow_ids, dirs = table.add(batch, i)
            scanner.scan(batch, flow_ids, dirs, table.slot)
            packets += batch.n
            if on_progress:
                on_progress(Progress(packets, done_files + reader.file_bytes_read, total))
        done_files += _size(path)
        stats.append(reader.stats)
    state = table.finish()
    flows, orig_slot, resp_slot = build_flows(state, watch.service_ports, [str(p) for p in path_list])
    flows, windows = classify_flows(flows, orig_slot, resp_slot, state.windows)
    flows, evidence = apply_evidence(flows, collector.finish(), np.arange(len(flows)))
    secret_rows, secret_counts = scanner.finish(flows, orig_slot)
    byte_histograms = histograms.frame(flows["uid"].to_numpy(), orig_slot)
    flows["watch"] = pd.Categorical(
        watch.roles(flows["orig_p"].to_numpy("int64"), flows["resp_p"].to_numpy("int64"),
                    flows["orig_h"].tolist(), flows["resp_h"].tolist()),
        categories=ROLES,
    )
    events, event_of = build_events(flows, evidence)
    flows["event"] = pd.array(event_of, dtype="string")
    flows = _typed(flows[list(FLOW_COLUMNS)].sort_values("ts", kind="stable").reset_index(drop=True))
    if state.hash_collisions and stats:
        stats[-1].anomaly("flow-key-collision", "packets whose 64-bit flow key collided were not counted",
                          state.hash_collisions)
    result = Analysis(flows=flows, windows=windows, evidence=evidence, events=events,
                      secrets=secret_rows, secret_counts=secret_counts, byte_histograms=byte_histograms,
                      inputs=_inputs_frame(stats), anomalies=_anomalies_frame(stats), watch=watch)
    result.findings = build_findings(Facts.of(result))
    return result


def _typed(flows: pd.DataFrame) -> pd.DataFrame:
    for name, (dtype, _doc) in FLOW_COLUMNS.items():
        if dtype in ("string",) and flows[name].dtype != "string":
            flows[name] = flows[name].astype("string")
    return flows


def _inputs_frame(stats: list[InputStats]) -> pd.DataFrame:
    rows = [
        {
            "file": s.file, "format": s.format, "linktypes": ",".join(str(x) for x in sorted(s.linktypes)),
            "packets": s.packets, "captured_bytes": s.captured_bytes, "wire_bytes": s.wire_bytes,
            "truncated_packets": s.truncated_packets, "non_ip_packets": s.non_ip_packets,
            "anomalies": sum(s.anomalies.values()),
        }
        for s in stats
    ]
    return pd.DataFrame(rows, columns=INPUT_COLUMNS)


def _anomalies_frame(stats: list[InputStats]) -> pd.DataFrame:
    rows = [
        {"file": s.file, "kind": kind, "count": count, "detail": s.anomaly_details.get(kind, "")}
        for s in stats
        for kind, count in s.anomalies.items()
    ]
    return pd.DataFrame(rows, columns=ANOMALY_COLUMNS)


def empty_frame(columns: dict[str, tuple[str, str]]) -> pd.DataFrame:
    """A table with no rows and the documented dtypes."""
    return pd.DataFrame({name: pd.Series(dtype=_pandas_dtype(dtype)) for name, (dtype, _doc) in columns.items()})


def _pandas_dtype(dtype: str) -> str:
    return "object" if dtype == "category" else dtype
