"""Ended flows' tables on disk, so a sensor left running holds only open flows.

``inspector live`` can run for days on a mirror port; the tables of the
flows that ended go to Parquet files in a spool folder, a few tens of
thousands of flows per file, and come back once, when the final reports
are written (``tables()``). During the run the sensor's memory follows the
flows open at once, not every flow it has seen.

The secrets table carries the payload bytes around each match (passwords
in clear), so the spool is private: its folder is 0700 and refused when
other users can enter it, its files 0600.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from inspector.errors import InspectorError
from inspector.pipeline import ClosedFlows, ClosedTables
from inspector.schema import SCHEMAS
from inspector.tables import typed, with_json_parsed, with_json_text

FLUSH_FLOWS = 20_000


class SpooledTables(ClosedTables):
    """``ClosedTables`` that writes every ``flush_flows`` ended flows to
    ``folder`` (a private temporary folder by default, removed by ``close``;
    a folder given is created 0700, or must be private already).

    Example::

        with SpooledTables() as spool:
            result = analyze_readers(readers, ..., store=spool)
    """

    def __init__(self, folder: str | os.PathLike | None = None, flush_flows: int = FLUSH_FLOWS) -> None:
        super().__init__()
        self._temporary = tempfile.TemporaryDirectory(prefix="inspector-spool-") if folder is None else None
        self.folder = Path(self._temporary.name if self._temporary else folder)
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            mode = self.folder.stat().st_mode
        except OSError as exc:
            raise InspectorError(f"--spool {folder}: {exc.strerror or exc}") from None
        if mode & 0o077:
            raise InspectorError(f"--spool {folder}: other users can read this folder (mode {mode & 0o777:o}) and "
                                 f"the spool holds secrets found in clear; give a private one (chmod 700 {folder})")
        self.flush_flows = flush_flows
        self.buffered = 0
        self.files: dict[str, list[Path]] = {name: [] for name in ClosedFlows.TABLES}

    def add(self, closed: ClosedFlows) -> None:
        super().add(closed)
        self.buffered += len(closed.flows)
        if self.buffered >= self.flush_flows:
            self.flush()

    def flush(self) -> None:
        """Write what is buffered, one Parquet file per table."""
        for name, parts in self.parts.items():
            parts = [p for p in parts if len(p)]
            if not parts:
                continue
            path = self.folder / f"{name}-{len(self.files[name]):06d}.parquet"
            try:
                table = typed(pd.concat(parts, ignore_index=True), SCHEMAS[name])
                with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
                    with_json_text(table).to_parquet(handle, index=False)
            except OSError as exc:
                raise InspectorError(f"spool {path}: {exc.strerror or exc}") from None
            self.files[name].append(path)
        self.parts = {name: [] for name in ClosedFlows.TABLES}
        self.buffered = 0

    def tables(self) -> dict[str, list[pd.DataFrame]]:
        self.flush()
        return {name: [with_json_parsed(pd.read_parquet(p)) for p in paths] for name, paths in self.files.items()}

    def close(self) -> None:
        if self._temporary is not None:
            self._temporary.cleanup()

    def __enter__(self) -> SpooledTables:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
