"""Ended flows' tables on disk, so a sensor left running holds only open flows.

``inspector live`` can run for days on a mirror port; the tables of the
flows that ended go to Parquet files in a spool folder, a few tens of
thousands of flows per file, and come back once, when the final reports
are written (``tables()``). During the run the sensor's memory follows the
flows open at once, not every flow it has seen.

The secrets table carries the payload bytes around each match (passwords
in clear), so the spool is private: its folder is 0700 and refused when
other users can enter it, its files 0600. A temporary spool is removed by
``close``, or by the reaper (``inspector.reaper``) when the sensor is killed.

A spool folder given (``--spool DIR``) outlives the run and says what it
holds in ``run.json`` (``MANIFEST``): ``running`` (with the sensor's pid)
until every ended flow is written, then ``complete``; a ``running`` one
whose pid is gone is an ``interrupted`` run (SIGKILL, a crash, a power
cut). Its ended flows are written at least every ``FLUSH_SECONDS``, so a
killed run loses only the last ones. A later run on the same folder is
refused (``SpoolInUse``), or, asked to resume, writes in a folder of its
own under it (``run-N``) and reads the earlier run's tables back with its
own (``earlier_tables``, ``resumed``).

A spool folder on a full disk loses nothing: the file being written is
removed, an ``OutputWarning`` names the folder, and the ended flows stay in
memory from then on (memory grows with them, as without a spool). Dropping
them would make the final reports silently incomplete; stopping would end
the capture: the operator is told and chooses.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from inspector.errors import InspectorError, OutputWarning
from inspector.events import BULK_BYTES, migration_pairs
from inspector.heap import give_back_free_memory
from inspector.pipeline import ClosedFlows, ClosedTables
from inspector.reaper import remove_on_death
from inspector.report.output import open_private, private_temporary
from inspector.schema import CLEAR, SCHEMAS
from inspector.tables import FLOW_ORDER, sort_flows, typed, with_json_parsed, with_json_text
from inspector.text import file_name

FLUSH_FLOWS = 20_000
FLUSH_SECONDS = 30.0  # a given spool folder: ended flows wait in memory at most this long (when more end)
MANIFEST = "run.json"
_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)  # the disk takes no more (EFBIG: a size limit)
RESUME_OPTION = "--spool-resume"


class SpoolInUse(InspectorError):
    """A ``--spool`` folder that holds an earlier run's tables."""


def _process_start(pid: int) -> str:
    """When process ``pid`` started (clock ticks since boot, /proc/PID/stat), '' if unknown: with the
    pid it names one process, never a later one given the same pid."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19]
    except (OSError, IndexError):
        return ""


def _running(manifest: dict) -> bool:
    pid = manifest.get("pid")
    return isinstance(pid, int) and pid > 0 and _process_start(pid) == manifest.get("pid_start", "") != ""


def _manifests(folder: Path) -> list[tuple[Path, dict]]:
    found = []
    for path in sorted(folder.rglob(MANIFEST)):
        try:
            found.append((path, json.loads(path.read_text())))
        except (OSError, ValueError):
            found.append((path, {}))
    return found


def earlier_run(folder: Path) -> str:
    """What an existing spool folder holds, for a message: '' when no run's
    tables, else e.g. 'an interrupted run (started 2026-12-04T21:00:00Z, pid 812)'."""
    manifests = _manifests(folder)
    if not manifests and not any(folder.rglob("*.parquet")):
        return ""
    if not manifests:
        return "an earlier run (no run.json)"
    running = [m for _, m in manifests if m.get("state") == "running"]
    live = [m for m in running if _running(m)]
    first = min((m.get("started", "") for _, m in manifests), default="")
    if live:
        return f"a run still going (pid {live[0]['pid']}, started {live[0].get('started', '?')})"
    if running or any(m.get("state") == "interrupted" for _, m in manifests):
        return f"an interrupted run (started {first or '?'})"
    return f"a complete run (started {first or '?'}, ended {max(m.get('ended', '') for _, m in manifests) or '?'})"


class SpooledTables(ClosedTables):
    """``ClosedTables`` that writes every ``flush_flows`` ended flows to
    ``folder`` (a private temporary folder by default, removed by ``close``;
    a folder given is created 0700, or must be private already, and is
    refused when it holds an earlier run's tables unless ``resume``).

    Example::

        with SpooledTables() as spool:
            result = analyze_readers(readers, ..., store=spool)
    """

    def __init__(self, folder: str | os.PathLike | None = None, flush_flows: int = FLUSH_FLOWS, *,
                 resume: bool = False, flush_seconds: float | None = FLUSH_SECONDS,
                 keep_when_full: bool = True) -> None:
        super().__init__()
        self._temporary = tempfile.TemporaryDirectory(prefix="inspector-spool-") if folder is None else None
        self.folder = Path(self._temporary.name if self._temporary else folder)
        if self._temporary:
            remove_on_death(self.folder)
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            mode = self.folder.stat().st_mode
        except OSError as exc:
            raise InspectorError(f"--spool {folder}: {exc.strerror or exc}") from None
        if mode & 0o077:
            raise InspectorError(f"--spool {folder}: other users can read this folder (mode {mode & 0o777:o}) and "
                                 f"the spool holds secrets found in clear; give a private one (chmod 700 {folder})")
        self.flush_flows = flush_flows
        self.flush_seconds = None if self._temporary else flush_seconds  # a temporary spool dies with the run
        self._flushed_at = time.monotonic() - (flush_seconds or 0)  # the first flows to end are written at once
        self.buffered = 0
        self.files: dict[str, list[Path]] = {name: [] for name in ClosedFlows.TABLES}
        self.earlier: dict[str, list[Path]] = {name: [] for name in ClosedFlows.TABLES}
        self.resumed = ""  # what was resumed, for the live input's anomaly
        self.full = False  # the folder's disk took no more: ended flows stay in memory
        self.keep_when_full = keep_when_full  # else a full disk is an InspectorError
        self._name = f"--spool {file_name(folder)}" if folder is not None else f"spool {file_name(self.folder)}"
        if not self._temporary:
            self._take(folder, resume)

    def _take(self, folder: str | os.PathLike, resume: bool) -> None:
        """Start a run in the folder given: refuse or resume an earlier one's tables."""
        earlier = earlier_run(self.folder)
        if earlier and (not resume or earlier.startswith("a run still going")):
            raise SpoolInUse(f"--spool {folder}: holds the tables of {earlier}; give an empty folder"
                             + ("" if earlier.startswith("a run still going") else
                                f", or {RESUME_OPTION} to add its ended flows to this run's reports"))
        if earlier:
            self.earlier = {name: sorted(self.folder.rglob(f"{name}-*.parquet")) for name in ClosedFlows.TABLES}
            for path, manifest in _manifests(self.folder):
                if manifest.get("state") == "running":
                    self._mark(path, {**manifest, "state": "interrupted"})
            flows = sum(pq.ParquetFile(p).metadata.num_rows for p in self.earlier["flows"])
            self.resumed = (f"{earlier} in spool {folder}: its {flows:,} ended flow(s) joined this run's reports "
                            "(the flows it had open, and those that ended in its last seconds, are missing)")
            runs = sum(1 for p in self.folder.glob("run-*") if p.is_dir())
            self.folder = self.folder / f"run-{runs + 2}"
            try:
                self.folder.mkdir(mode=0o700)
            except OSError as exc:
                raise InspectorError(f"--spool {self.folder}: {exc.strerror or exc}") from None
        self._started = _now()
        self._mark(self.folder / MANIFEST, {"state": "running", "pid": os.getpid(),
                                            "pid_start": _process_start(os.getpid()), "started": self._started})

    def _mark(self, path: Path, manifest: dict) -> None:
        """Write a run's manifest; a full disk makes the spool keep flows in memory (``_fill_up``)."""
        try:
            self._write_manifest(path, manifest)
        except OSError as exc:
            if exc.errno not in _FULL:
                raise InspectorError(f"spool {file_name(path)}: {exc.strerror or exc}") from None
            self._fill_up(exc)

    def mark_complete(self) -> None:
        """Every ended flow of the run is written: a later start says so (on a
        full disk it cannot: a later start sees an interrupted run)."""
        if self._temporary or self.full:
            return
        self._mark(self.folder / MANIFEST, {"state": "complete", "pid": os.getpid(), "started": self._started,
                                            "ended": _now()})

    @staticmethod
    def _write_manifest(path: Path, manifest: dict) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.unlink(missing_ok=True)
            with open_private(tmp, "x") as handle:
                json.dump(manifest, handle)
            os.replace(tmp, path)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise

    def earlier_tables(self) -> dict[str, list[pd.DataFrame]]:
        """The resumed run's tables (empty lists when nothing was resumed)."""
        return {name: [with_json_parsed(pd.read_parquet(p)) for p in paths] for name, paths in self.earlier.items()}

    def add(self, closed: ClosedFlows) -> None:
        super().add(closed)
        self.buffered += len(closed.flows)
        if not self.full and (self.buffered >= self.flush_flows or (
                self.buffered and self.flush_seconds is not None
                and time.monotonic() - self._flushed_at >= self.flush_seconds)):
            self.flush()

    def flush(self) -> None:
        """Write what is buffered, one Parquet file per table (on a full disk:
        what could not be written stays buffered, and so does all that follows)."""
        for name, parts in self.parts.items():
            parts = [p for p in parts if len(p)]
            if not parts or self.full:
                continue
            path = self.folder / f"{name}-{len(self.files[name]):06d}.parquet"
            table = with_json_text(typed(pd.concat(parts, ignore_index=True), SCHEMAS[name]))
            # whole or not there: a run killed mid-write leaves no torn file for a resume to trip on
            descriptor, tmp = private_temporary(path)
            try:
                with os.fdopen(descriptor, "wb") as handle:
                    table.to_parquet(handle, index=False)
                os.rename(tmp, path)  # a new name in the run's own folder; a link planted there is replaced
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                if exc.errno not in _FULL:
                    raise InspectorError(f"spool {file_name(path)}: {exc.strerror or exc}") from None
                self._fill_up(exc)
                continue
            self.files[name].append(path)
            self.parts[name] = []
        if not self.full:
            self.buffered = 0
        self._flushed_at = time.monotonic()

    def _fill_up(self, exc: OSError) -> None:
        """The disk took no more (the file being written is already removed)."""
        if not self.keep_when_full:
            raise InspectorError(_full_temporary(self.folder, exc)) from None
        self.full = True
        warnings.warn(f"{self._name}: {exc.strerror or exc}; the ended flows stay in memory from now on (none "
                      f"lost; memory grows with them)", OutputWarning, stacklevel=3)

    def tables(self) -> dict[str, list[pd.DataFrame]]:
        """The resumed run's tables and this run's (the run is then complete)."""
        self.flush()
        self.mark_complete()
        return {name: [with_json_parsed(pd.read_parquet(p)) for p in self.earlier[name] + paths] + self.parts[name]
                for name, paths in self.files.items()}

    def close(self) -> None:
        if self._temporary is not None:
            self._temporary.cleanup()

    def __enter__(self) -> SpooledTables:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class ReportSpool(ClosedTables):
    """Where ``inspector analyze`` keeps ended flows when its reports are
    streamed (``--json``, ``--csv``): every flow's row goes to Parquet files
    in a private temporary folder (mode 0700, removed by ``close``); the
    flows events and findings can be made of (``kept_for_reports``), the
    evidence, secrets and their counts go to files of their own. So while
    the packets are read, memory holds the open flows only.

    ``tables()`` reads the kept ones back, so ``assemble`` over them makes
    exactly the events and findings of every flow; ``flows_in_order`` then
    streams every flow back in the order of ``Analysis.flows``. Windows and
    byte histograms, which these reports do not show, are not kept.

    Example::

        with ReportSpool() as spool:
            summary = analyze_readers(readers, ..., store=spool)
            for part in spool.flows_in_order(event_of): ...
    """

    ROW_GROUP = 1_024  # rows read back at a time from each file (every file holds one decoded group)

    def __init__(self, flush_flows: int = FLUSH_FLOWS, *, excerpts: bool = True) -> None:
        super().__init__()
        self._temporary = tempfile.TemporaryDirectory(prefix="inspector-spool-")
        self.folder = Path(self._temporary.name)
        self.excerpts = excerpts  # the secrets' payload excerpts come back (only --show-payload shows them)
        self.kept = SpooledTables(self.folder / "kept", flush_flows, flush_seconds=None, keep_when_full=False)
        self.flush_flows = flush_flows
        self.flow_count = 0
        self.files: list[Path] = []
        self._pending: list[pd.DataFrame] = []
        self._pending_rows = 0

    def add(self, closed: ClosedFlows) -> None:
        flows = closed.flows
        self.flow_count += len(flows)
        self._pending.append(flows)
        self._pending_rows += len(flows)
        keep = kept_for_reports(flows, closed.evidence, closed.secret_counts)
        nothing = closed.windows.iloc[:0]
        self.kept.add(ClosedFlows(flows[keep], nothing, closed.evidence, closed.secrets, closed.secret_counts,
                                  closed.byte_histograms.iloc[:0]))
        if self._pending_rows >= self.flush_flows:
            self._flush()

    def _flush(self) -> None:
        """Write the pending flows, in the order of ``Analysis.flows``, as one file."""
        if self._pending:
            flows = pd.concat(self._pending, ignore_index=True)
            path = self.folder / f"flows-{len(self.files):06d}.parquet"
            try:
                with open_private(path, "xb") as handle:
                    sort_flows(flows).to_parquet(handle, index=False, row_group_size=self.ROW_GROUP)
            except OSError as exc:
                if not isinstance(exc, FileExistsError):  # the torn file is this run's
                    path.unlink(missing_ok=True)
                raise InspectorError(_full_temporary(path, exc)) from None
            self.files.append(path)
        self._pending, self._pending_rows = [], 0

    def tables(self) -> dict[str, list[pd.DataFrame]]:
        """The kept flows (libvirtd ones only between hosts that migrate: no
        other can join an event), evidence, secrets and counts."""
        self._flush()
        self.kept.flush()
        give_back_free_memory()  # the flow table is gone: the kept tables need not sit above its freed pages
        files = self.kept.files
        out = {name: [with_json_parsed(pd.read_parquet(p, columns=self._columns(name))) for p in files[name]]
               for name in ("evidence", "secrets", "secret_counts")}
        evidence = _concat(out["evidence"], SCHEMAS["evidence"])
        counts = _concat(out["secret_counts"], SCHEMAS["secret_counts"])
        pairs = migration_pairs(_concat([pd.read_parquet(p, columns=list(_PAIR_COLUMNS)) for p in files["flows"]],
                                        _PAIR_COLUMNS), evidence)
        out["flows"] = []
        for path in files["flows"]:
            flows = pd.read_parquet(path)
            out["flows"].append(flows[kept_for_reports(flows, evidence, counts, pairs)].reset_index(drop=True))
        return {name: out.get(name, []) for name in ClosedFlows.TABLES}

    def _columns(self, table: str) -> list[str] | None:
        return None if self.excerpts or table != "secrets" else [c for c in SCHEMAS[table] if c != "excerpt"]

    def flows_in_order(self, event_of: dict[str, str], chunk: int = 8_192) -> Iterator[pd.DataFrame]:
        """Every flow, ``chunk`` rows at a time, in the order of ``Analysis.flows``
        (``analysis.FLOW_ORDER``), ``event`` from ``event_of`` (uid -> event id)."""
        self._flush()
        give_back_free_memory()  # assemble's temporaries are gone
        keys = [pq.read_table(path, columns=FLOW_ORDER).append_column("file", pa.array(np.full(
            pq.ParquetFile(path).metadata.num_rows, number, dtype=np.int32))) for number, path in enumerate(self.files)]
        # each file is sorted: a sort of them all on the same keys merges them
        merged = pa.concat_tables(keys) if keys else pa.table({"file": pa.array([], pa.int32())})
        source = merged.column("file").take(pc.sort_indices(merged, [(k, "ascending") for k in FLOW_ORDER])
                                            if keys else pa.array([], pa.int64())).to_numpy()
        del keys, merged
        readers = [_RowReader(path) for path in self.files]
        columns = {name: kind for name, kind in SCHEMAS["flows"].items() if name != "event"}
        for begin in range(0, len(source), chunk):
            files = source[begin:begin + chunk]
            grouped = np.argsort(files, kind="stable")  # the chunk's rows, file by file
            counts = np.bincount(files, minlength=len(readers))
            pieces = [typed(readers[f].take(int(n)), columns) for f, n in enumerate(counts) if n]
            part = pd.concat(pieces, ignore_index=True) if len(pieces) > 1 else pieces[0].reset_index(drop=True)
            order = np.empty_like(grouped)
            order[grouped] = np.arange(len(grouped))
            part = part.take(order).reset_index(drop=True)
            part["event"] = pd.array([event_of.get(uid, "") for uid in part["uid"].tolist()], dtype="string")
            yield typed(part, SCHEMAS["flows"])

    def close(self) -> None:
        self._temporary.cleanup()

    def __enter__(self) -> ReportSpool:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _RowReader:
    """The rows of one spooled file, taken in order a few at a time."""

    def __init__(self, path: Path) -> None:
        # pre_buffer (pyarrow's default) would load the whole file for the row groups to come: 25 files at once
        self._batches = pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=ReportSpool.ROW_GROUP)
        self._buffer: pa.Table | None = None

    def take(self, n: int) -> pd.DataFrame:
        while self._buffer is None or self._buffer.num_rows < n:
            batch = pa.Table.from_batches([next(self._batches)])
            self._buffer = batch if self._buffer is None else pa.concat_tables([self._buffer, batch])
        rows, self._buffer = self._buffer.slice(0, n), self._buffer.slice(n)
        return rows.to_pandas()


def kept_for_reports(flows: pd.DataFrame, evidence: pd.DataFrame, secret_counts: pd.DataFrame,
                     libvirtd_pairs: set[tuple[str, str]] | None = None) -> pd.Series:
    """Flows that events or findings can be made of: with a protocol, a
    detection or a secret, TLS parameters, or on an internal API port, or on
    a migration port and in clear or bulk, or on a libvirtd port (between
    ``libvirtd_pairs`` when given): ``events`` and the rules of
    ``findings.rules`` read no other flow."""
    watch = flows["watch"]
    clear = flows["verdict"].isin(CLEAR)
    bulk = (flows["orig_bytes"] + flows["resp_bytes"]) >= BULK_BYTES
    libvirtd = watch == "libvirtd"
    if libvirtd_pairs is not None:
        libvirtd &= pd.MultiIndex.from_arrays([flows["orig_h"].astype(str), flows["resp_h"].astype(str)]).isin(
            list(libvirtd_pairs))
    return ((flows["protocol"] != "") | flows["tls_version"].notna() | flows["tls_cipher"].notna()
            | libvirtd | (watch == "internal-api") | ((watch == "migration") & (clear | bulk))
            | flows["uid"].isin(evidence["uid"]) | flows["uid"].isin(secret_counts["uid"])).fillna(True)


_PAIR_COLUMNS = {name: SCHEMAS["flows"][name]
                 for name in ("uid", "orig_h", "resp_h", "protocol", "watch", "orig_bytes", "resp_bytes")}


def _concat(parts: list[pd.DataFrame], columns) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    return typed(pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(), columns)


def _full_temporary(path: Path, exc: OSError) -> str:
    return (f"spool {file_name(path)}: {exc.strerror or exc} (the flows wait in a temporary folder until the "
            "reports are written; set TMPDIR to a folder with room)")
