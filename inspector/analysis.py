"""The library entry point: capture -> flows -> classify, as tidy tables."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

import pandas as pd

from inspector.capture.inputs import Input, capture_groups, inputs_of
from inspector.capture.reader import CaptureReader, InputStats
from inspector.errors import ConfigError
from inspector.events import build_events
from inspector.findings.engine import build_findings
from inspector.findings.facts import Facts
from inspector.findings.secrets import sort_secret_counts, sort_secrets
from inspector.heap import give_back_free_memory
from inspector.meters import Meter, default_meters
from inspector.pipeline import DEFAULT_TIMEOUTS, ClosedFlows, ClosedTables, Pipeline, Timeouts
from inspector.schema import ANOMALY_COLUMNS, INPUT_COLUMNS, SCHEMAS, SEVERITIES
from inspector.tables import empty_frame, sort_flows, table_of, typed
from inspector.watch import PortSpec, Watchlist

if TYPE_CHECKING:
    from scapy.plist import PacketList

PathLike = str | os.PathLike



class Progress(NamedTuple):
    """What ``analyze`` has read so far, for progress bars."""

    packets: int
    file_bytes: int        # bytes of the input files read (compressed bytes for gzip)
    file_bytes_total: int
    files: int = 0         # input files read to their end
    files_total: int = 0


REDACTED_EXCERPT = "redacted: Analysis.secrets_raw() shows the bytes"
"""What ``Analysis.secrets`` shows in place of payload, like a report without --show-payload."""


@dataclass
class Analysis:
    """Result of :func:`analyze`: tables joined on ``uid`` (flows, windows,
    evidence, secrets, findings' uids), on ``event`` (flows, events) and on
    ``file`` (inputs, anomalies).

    ``secrets`` shows what a report shows: the label of each match, its
    ``excerpt`` redacted (a notebook is shared like a report). The payload
    bytes around each match are one explicit call away: ``secrets_raw()``.
    """

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
    config: Any = field(default=None, repr=False, compare=False)  # an inspector.config.ConfigAudit (analyze --config)
    _sources: list[Input] = field(default_factory=list, repr=False, compare=False)  # for packets() and to_pcap()

    def __post_init__(self) -> None:
        for name, columns in SCHEMAS.items():
            setattr(self, name, typed(getattr(self, name), columns))
        self._secrets_raw = self.secrets  # given with the bytes (scan, or an export made with show_payload)
        if self.secrets["excerpt"].notna().any():  # none (a report spool that left them out): no copy to redact
            self.secrets = self.secrets.assign(excerpt=self.secrets["excerpt"].map(
                lambda excerpt: None if excerpt is None else REDACTED_EXCERPT, na_action="ignore").astype(object))

    def secrets_raw(self) -> pd.DataFrame:
        """``secrets`` with the payload bytes around each match in ``excerpt``
        (what ``--show-payload`` puts in reports): passwords and keys in clear.
        Handle the output like the capture."""
        return self._secrets_raw.copy()

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

    def packets(self, uid: str) -> PacketList:
        """The packets of flow ``uid`` as a scapy ``PacketList``, to dissect one
        suspicious flow (needs scapy). They are read again from the capture
        (see ``inspector.drilldown``): the file must still be there; a live
        capture or loaded tables have none to read."""
        from inspector.capture.scapy_io import to_packets
        from inspector.drilldown import flow_records

        return to_packets(flow_records(self.flows, self._sources, uid), name=f"flow {uid}")

    def to_pcap(self, uid: str, path: PathLike) -> int:
        """Write the packets of flow ``uid`` to a pcap (nanosecond timestamps,
        mode 0600: it holds payload) that Wireshark, dpkt or scapy read;
        returns how many were written."""
        from inspector.drilldown import flow_records, write_pcap

        return write_pcap(flow_records(self.flows, self._sources, uid), path)

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
        severities = self.findings["severity"].value_counts().reindex(SEVERITIES, fill_value=0)
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
    paths: PathLike | BinaryIO | Iterable[Any],
    *,
    watch: Watchlist | None = None,
    watch_config: PathLike | None = None,
    migration_ports: PortSpec | None = None,
    libvirtd_ports: PortSpec | None = None,
    ssh_ports: PortSpec | None = None,
    internal_nets: Iterable[str] = (),
    on_progress: Callable[[Progress], None] | None = None,
    detectors: bool = True,
    secrets: bool = True,
    timeouts: Timeouts | None = None,
    store: ClosedTables | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    group_by: str = "none",
) -> Analysis:
    """Read captures, build bidirectional flows and classify them.

    ``paths``: a capture file (pcap or pcapng, gzip'd or not), a folder of
    them, a glob pattern, a binary file object, scapy packets (a
    ``PacketList`` or any iterable of packets), or an iterable of these. A
    file named twice is read once, with an ``InputWarning``.

    Several files are read in order as one capture (a flow seen in two files
    is one flow; give them in time order; a folder's files come in natural
    name order); ``group_by="file"`` makes each file a capture of its own,
    ``"folder"`` the files of each folder (one sensor per folder).

    ``workers=N`` analyses on N processes, each taking a partition of the
    flows (or whole captures, when there are more than workers);
    ``scheduler="tcp://HOST:8786"`` runs the same tasks on a Dask
    distributed cluster, whose workers must read the files at the same
    paths (see ``inspector.parallel``). The result is the same ``Analysis``,
    row for row. Both need files given by path.

    Flows end on FIN/RST or after
    ``timeouts.idle`` seconds without a packet (``Timeouts``: 300 s, like
    Zeek's TCP inactivity timeout), so a 5-tuple reused after that is a new
    flow. ``on_progress`` gets a ``Progress`` after each batch.
    ``detectors=False`` leaves verdicts to the payload statistics alone (to
    measure what the protocol evidence adds). ``secrets=False`` skips the scan
    of cleartext payload for secrets (``Analysis.secrets``). ``store`` keeps
    the ended flows' tables (memory by default; with ``spool.ReportSpool``
    the result holds only the flows its events and findings are made of,
    and the spool streams every flow back).

    The watchlist takes the CLI's options under the same names:
    ``watch_config`` (a TOML file with a ``[watch]`` table), then
    ``migration_ports``, ``libvirtd_ports``, ``ssh_ports`` (a ``PortSpec``:
    ``[22, 2222]``, ``"49152-49215"``, ...) over ``watch`` (default
    ``Watchlist.default()``), then ``internal_nets`` added.

    Example::

        result = inspector.analyze("captures/qemu-plain.pcap.gz")
        result.flows[["uid", "resp_p", "watch", "verdict", "reason"]]
        inspector.analyze("captures/ssh-bulk.pcap.gz", ssh_ports=[22, 2222])
    """
    sources = inputs_of(paths)
    watch = Watchlist.from_options(watch=watch, watch_config=watch_config, migration_ports=migration_ports,
                                   libvirtd_ports=libvirtd_ports, ssh_ports=ssh_ports, internal_nets=internal_nets)
    groups = capture_groups(sources, group_by)
    if workers < 1:
        raise ConfigError(f"workers must be 1 or more, not {workers}")
    if workers > 1 or scheduler or len(groups) > 1:
        result = _analyze_tasks(groups, workers, scheduler, watch=watch, detectors=detectors, secrets=secrets,
                                timeouts=timeouts or DEFAULT_TIMEOUTS, store=store, on_progress=on_progress)
        result._sources = sources
        return result
    total = sum(source.size() for source in sources)
    done_bytes, done_files = 0, 0

    def on_batch(reader: CaptureReader, packets: int, _flows: int) -> None:
        if on_progress:
            on_progress(Progress(packets, done_bytes + reader.file_bytes_read, total, done_files, len(sources)))

    def readers() -> Iterator[CaptureReader]:
        nonlocal done_bytes, done_files
        for source in sources:
            yield source.reader()
            done_bytes += source.size()
            done_files += 1

    result = analyze_readers(readers(), watch=watch, names=[source.name for source in sources], on_batch=on_batch,
                             meters=default_meters(detectors=detectors, secrets=secrets),
                             timeouts=timeouts or DEFAULT_TIMEOUTS, store=store)
    result._sources = sources
    return result


def _analyze_tasks(groups: list[list[Input]], workers: int, scheduler: str | None, *, watch: Watchlist,
                   detectors: bool, secrets: bool, timeouts: Timeouts, store: ClosedTables | None,
                   on_progress: Callable[[Progress], None] | None) -> Analysis:
    """``analyze`` as tasks of (capture, partition) (``inspector.parallel``), merged."""
    from inspector import parallel

    unnamed = [one.name for group in groups for one in group if one.path is None]
    if unnamed:
        raise ConfigError(f"{unnamed[0]}: workers, a scheduler and capture groups read files by their path; "
                          "give paths, or analyse file objects and packets with workers=1")

    def plan_for(workers: int) -> list[parallel.Task]:
        return parallel.plan(groups, workers, watch=watch, timeouts=timeouts, detectors=detectors, secrets=secrets)

    store = store if store is not None else ClosedTables()
    total = sum(one.size() for group in groups for one in group)
    files = sum(map(len, groups))
    progress = on_progress and (lambda read: on_progress(Progress(read.packets, read.file_bytes, total, read.files,
                                                                  files)))
    if scheduler:
        stats = parallel.run_dask(scheduler, plan_for, store, progress)
    elif workers > 1 and len(tasks := plan_for(workers)) > 1:
        stats = parallel.run_local(tasks, workers, store, progress)
    else:
        stats = parallel.run_here(plan_for(1), store, progress)
    return assemble(store.tables(), stats, watch)  # the store is complete only now


def analyze_readers(
    readers: Iterable[CaptureReader],
    *,
    watch: Watchlist,
    names: list[str],
    meters: list[Meter] | None = None,
    timeouts: Timeouts = DEFAULT_TIMEOUTS,
    on_batch: Callable[[CaptureReader, int, int], None] | None = None,
    on_closed: Callable[[ClosedFlows], None] | None = None,
    store: ClosedTables | None = None,
) -> Analysis:
    """The one pipeline under ``analyze`` (files) and ``inspector live`` (a
    tcpdump pipe): every batch of every reader, in order, through
    ``Pipeline`` and its ``meters`` (``default_meters()`` unless given; the
    sensor adds its alerts and evidence pcaps), flows classified as they
    end (see ``Timeouts``), then events and findings over every flow once
    the readers are exhausted.

    ``names`` name the inputs (``flows.input``); ``on_batch(reader,
    packets, flows_seen)`` follows progress; ``on_closed`` hears each
    ``ClosedFlows`` as flows end (and interim reports of long flows),
    ``store`` keeps the ended ones for the result (memory by default; the
    sensor spools to disk).
    """
    store = store if store is not None else ClosedTables()

    def closed(part: ClosedFlows) -> None:
        if not part.interim:
            store.add(part)
        if on_closed:
            on_closed(part)

    stats = Pipeline(watch, names, meters=default_meters() if meters is None else meters, on_closed=closed,
                     timeouts=timeouts).run(readers, on_batch=on_batch)  # its flow table freed before the reports
    return assemble(store.tables(), stats, watch)


def assemble(parts: dict[str, list[pd.DataFrame]], stats: list[InputStats], watch: Watchlist) -> Analysis:
    """The ``Analysis`` of every ended flow: their tables joined, then the
    migration events and the findings, which need all flows at once.

    ``parts``' lists are emptied as their tables are joined: the pieces are
    not held beside the joined copy (500 k flows: ~50 MB each)."""
    tables = {name: _joined(_emptied(pieces), SCHEMAS[name]) for name, pieces in parts.items()}
    flows = sort_flows(tables.pop("flows"))
    evidence = _in_flow_order(tables["evidence"], flows)
    events, event_of = build_events(flows, evidence)
    flows["event"] = pd.array(event_of, dtype="string")
    evidence["event"] = evidence["uid"].map(dict(zip(flows["uid"], event_of))).fillna("")
    result = Analysis(
        flows=flows,
        windows=tables["windows"].sort_values(["uid", "direction", "window"], kind="stable").reset_index(drop=True),
        evidence=evidence, events=events,
        secrets=sort_secrets(tables["secrets"]), secret_counts=sort_secret_counts(tables["secret_counts"]),
        byte_histograms=_in_flow_order(tables["byte_histograms"], flows), inputs=_inputs_frame(stats),
        anomalies=_anomalies_frame(stats), watch=watch)
    del flows, evidence, tables  # the unsorted copies, before the findings add theirs
    give_back_free_memory()  # the joins, sorts and events freed tens of MB the findings need not sit above
    result.findings = build_findings(Facts.of(result))
    return result


def _in_flow_order(table: pd.DataFrame, flows: pd.DataFrame) -> pd.DataFrame:
    """A per-flow table in the order of ``flows``, each flow's rows in the order they were made."""
    uids = flows["uid"].drop_duplicates()
    order = pd.Series(uids.index.to_numpy(), index=uids.to_numpy()).reindex(table["uid"].to_numpy()).to_numpy()
    return table.iloc[pd.Series(order).argsort(kind="stable").to_numpy()].reset_index(drop=True)


def _emptied(pieces: list[pd.DataFrame]) -> list[pd.DataFrame]:
    """A new list of ``pieces``, the given one cleared."""
    taken = list(pieces)
    pieces.clear()
    return taken


def _joined(pieces: list[pd.DataFrame], columns) -> pd.DataFrame:
    """One table from the parts of several sweeps (typed: categories may differ between parts)."""
    pieces = [p for p in pieces if len(p)]
    if not pieces:
        return empty_frame(columns)
    joined = pieces[0] if len(pieces) == 1 else pd.concat(pieces, ignore_index=True)
    return typed(joined, columns)


def _inputs_frame(stats: list[InputStats]) -> pd.DataFrame:
    rows = [
        {
            "file": s.file, "format": s.format, "linktypes": ",".join(str(x) for x in sorted(s.linktypes)),
            "packets": s.packets, "captured_bytes": s.captured_bytes, "wire_bytes": s.wire_bytes,
            "truncated_packets": s.truncated_packets, "non_ip_packets": s.non_ip_packets,
            "anomalies": sum(s.anomalies.values()), "dropped_kernel": s.dropped_kernel,
            "dropped_interface": s.dropped_interface, "unread_at_stop": s.unread_at_stop, "end": s.end,
        }
        for s in stats
    ]
    return table_of(rows, INPUT_COLUMNS)


def _anomalies_frame(stats: list[InputStats]) -> pd.DataFrame:
    rows = [
        {"file": s.file, "kind": kind, "count": count, "detail": s.anomaly_details.get(kind, "")}
        for s in stats
        for kind, count in s.anomalies.items()
    ]
    return table_of(rows, ANOMALY_COLUMNS)
