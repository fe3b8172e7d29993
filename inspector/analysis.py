"""The library entry point: capture -> flows -> classify, as tidy tables."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from inspector.alerts import Alert, Alerter
from inspector.capture.reader import CaptureReader, InputStats, PacketBatch
from inspector.classify import classify_flows
from inspector.classify.evidence import DetectionCollector, apply_evidence
from inspector.events import build_events
from inspector.flows.frame import build_flows, originator_is_a_one
from inspector.findings.engine import build_findings
from inspector.findings.facts import Facts
from inspector.findings.secrets import PATTERNS, SecretScanner
from inspector.flows.histograms import RegionHistograms
from inspector.flows.kernels import FL_A_PORT, FL_B_PORT
from inspector.flows.table import FlowTable, Region
from inspector.tables import ANOMALY_COLUMNS, INPUT_COLUMNS, SCHEMAS, empty_frame, typed
from inspector.watch import ROLES, Watchlist

PathLike = str | os.PathLike



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
    findings: pd.DataFrame = field(default_factory=lambda: empty_frame(SCHEMAS["findings"]))
    secrets: pd.DataFrame = field(default_factory=lambda: empty_frame(SCHEMAS["secrets"]))
    secret_counts: pd.DataFrame = field(default_factory=lambda: empty_frame(SCHEMAS["secret_counts"]))
    byte_histograms: pd.DataFrame = field(default_factory=lambda: empty_frame(SCHEMAS["byte_histograms"]))

    def __post_init__(self) -> None:
        for name, columns in SCHEMAS.items():
            setattr(self, name, typed(getattr(self, name), columns))

    @property
    def watched(self) -> pd.DataFrame:
        """Flows that matched a watchlist role."""
        return self.flows[self.flows["watch"] != "none"]

    def windows_of(self, uid: str) -> pd.DataFrame:
        """The windowed statistics (entropy series) of one flow, both directions."""
        return self.windows[self.windows["uid"] == uid].reset_index(drop=True)

    def byte_histogram(self, uid: str) -> pd.DataFrame:
        """Byte-value counts of one watched flow: one column per direction, 256 rows."""
        own = self.byte_histograms[self.byte_histograms["uid"] == uid]
        return own.pivot_table(index="byte", columns="direction", values="count", aggfunc="sum",
                               fill_value=0).reindex(range(256), fill_value=0)

    def export(self, folder: PathLike, fmt: str = "parquet", *, show_payload: bool = False) -> list[Path]:
        """Every table into ``folder`` as Parquet or CSV; ``inspector.load`` reads it back."""
        from inspector.report.export import export_tables

        return export_tables(self, folder, fmt, show_payload=show_payload)

    def __repr__(self) -> str:
        """One line: the default dataclass repr would print every table (and payload excerpts)."""
        return (f"<Analysis: {len(self.inputs)} file(s), {len(self.flows):,} flows, {len(self.events)} event(s), "
                f"{len(self.findings)} finding(s)>")

    def _repr_html_(self) -> str:
        """A compact summary for notebooks: inputs, verdicts, findings, events."""
        from html import escape

        verdicts = self.flows["verdict"].value_counts(sort=False)
        severities = self.findings["severity"].value_counts(sort=False)
        lines = [
            f"<b>inspector analysis</b>: {len(self.inputs)} file(s), {int(self.inputs['packets'].sum()):,} packets, "
            f"{len(self.flows):,} flows ({len(self.watched):,} watched: "
            + ", ".join(f"{n} {v}" for v, n in verdicts.items() if n) + ")",
            "findings: " + (", ".join(f"{n} {s}" for s, n in severities.items() if n) or "none"),
        ]
        body = "<br>".join(escape(line, quote=True).replace("&lt;b&gt;", "<b>").replace("&lt;/b&gt;", "</b>")
                           for line in lines)
        columns = ["event", "src_h", "dst_h", "start", "protection", "ram_bytes", "ram_bytes_clear"]
        events = self.events[columns].to_html(index=False, escape=True, max_rows=20) if len(self.events) else ""
        return f"<div>{body}{events}</div>"


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
    total = sum(_size(p) for p in path_list)
    done_files = 0

    def on_batch(reader: CaptureReader, packets: int) -> None:
        nonlocal done_files
        if on_progress:
            on_progress(Progress(packets, done_files + reader.file_bytes_read, total))

    def readers() -> Iterator[CaptureReader]:
        nonlocal done_files
        for path in path_list:
            yield CaptureReader(path)
            done_files += _size(path)

    return analyze_readers(readers(), watch=watch, names=[str(p) for p in path_list], on_batch=on_batch,
                           detectors=detectors, secrets=secrets)


def analyze_readers(
    readers: Iterable[CaptureReader],
    *,
    watch: Watchlist,
    names: list[str],
    on_batch: Callable[[CaptureReader, int], None] | None = None,
    detectors: bool = True,
    secrets: bool = True,
    on_alert: Callable[[Alert], None] | None = None,
    evidence: Callable[[int, str, str, str], str] | None = None,
    on_keyed: Callable[[CaptureReader, PacketBatch, np.ndarray, int], None] | None = None,
) -> Analysis:
    """The one pipeline under ``analyze`` (files) and ``inspector live`` (a
    tcpdump pipe): every batch of every reader, in order, through the flow
    table, detectors, secret scan and histograms, then classification,
    events and findings once the readers are exhausted.

    ``names`` name the inputs (``flows.file``); ``on_batch(reader, packets)``
    follows progress; ``on_alert`` gets an ``Alert`` as soon as a watched
    flow shows cleartext migration, credentials or NBD disk data, and
    ``evidence(flow, kind, orig, resp)`` names the file its packets are kept
    in (``Alert.evidence_pcap``, see ``EvidencePcaps``); ``on_keyed(reader,
    batch, flow_ids, flows)`` sees each batch once its packets are keyed to
    flows (``flows``: how many so far), before the next batch reuses it.
    """
    table: FlowTable

    def orientation(flow: int) -> bool:
        return originator_is_a_one(table.flow[flow], watch.service_ports)

    alerts = Alerter(lambda: table, watch, orientation, on_alert, evidence) if on_alert else None
    collector = DetectionCollector(orientation, on_detect=alerts.on_detect if alerts else None,
                                   early=alerts.watched if alerts else None)
    histograms = RegionHistograms(lambda flow: int(table.flow[flow, FL_A_PORT]) in watch.service_ports
                                  or int(table.flow[flow, FL_B_PORT]) in watch.service_ports)

    def on_region(region: Region) -> None:
        if detectors:
            collector.on_region(region)
        histograms.on_region(region)

    table = FlowTable(on_region=on_region)
    scanner = SecretScanner(PATTERNS if secrets else (), on_first=alerts.on_secret if alerts else None)
    stats: list[InputStats] = []
    packets = 0
    for i, reader in enumerate(readers):
        for batch in reader:
            flow_ids, dirs = table.add(batch, i)
            scanner.scan(batch, flow_ids, dirs, table.slot)
            if on_keyed:
                on_keyed(reader, batch, flow_ids, table.n_flows)
            packets += batch.n
            if on_batch:
                on_batch(reader, packets)
        stats.append(reader.stats)
    state = table.finish()
    flows, orig_slot, resp_slot = build_flows(state, watch.service_ports, names)
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
    evidence["event"] = evidence["uid"].map(dict(zip(flows["uid"], event_of))).fillna("")
    flows = flows.sort_values("ts", kind="stable").reset_index(drop=True)
    if state.hash_collisions and stats:
        stats[-1].anomaly("flow-key-collision", "packets whose 64-bit flow key collided were not counted",
                          state.hash_collisions)
    result = Analysis(flows=flows, windows=windows, evidence=evidence, events=events,
                      secrets=secret_rows, secret_counts=secret_counts, byte_histograms=byte_histograms,
                      inputs=_inputs_frame(stats), anomalies=_anomalies_frame(stats), watch=watch)
    result.findings = build_findings(Facts.of(result))
    return result


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
    return pd.DataFrame(rows, columns=list(INPUT_COLUMNS))


def _anomalies_frame(stats: list[InputStats]) -> pd.DataFrame:
    rows = [
        {"file": s.file, "kind": kind, "count": count, "detail": s.anomaly_details.get(kind, "")}
        for s in stats
        for kind, count in s.anomalies.items()
    ]
    return pd.DataFrame(rows, columns=list(ANOMALY_COLUMNS))
