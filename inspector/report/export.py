"""Every table of an analysis as CSV or Parquet files in one folder.

The folder also holds ``meta.json`` (schema version, tool, watchlist, the
tables written), so a later session can tell what it is loading. Secret
excerpts are left out unless asked for (``show_payload``): then they are
written as hex, never as raw bytes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from inspector.analysis import Analysis
from inspector.errors import InspectorError
from inspector.report.output import write_atomically

EXPORT_FORMATS = ("csv", "parquet")
TABLES = ("flows", "events", "findings", "secrets", "secret_counts", "evidence", "windows", "byte_histograms",
          "inputs", "anomalies")


def export_tables(result: Analysis, folder: str | os.PathLike, fmt: str = "csv", *,
                  show_payload: bool = False) -> list[Path]:
    """Write each table to ``folder/<table>.<fmt>``; returns the paths written."""
    from inspector import __version__
    from inspector.report.json_report import SCHEMA_VERSION, watchlist_dict

    if fmt not in EXPORT_FORMATS:
        raise InspectorError(f"export format {fmt!r} is not one of {', '.join(EXPORT_FORMATS)}")
    out = Path(folder)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InspectorError(f"{out}: cannot create the export folder: {exc.strerror or exc}") from None
    written = []
    for name in TABLES:
        table = _shareable(name, getattr(result, name), show_payload)
        path = out / f"{name}.{fmt}"
        if fmt == "csv":
            write_atomically(path, lambda h, t=table: csv_ready(t).to_csv(h, index=False))
        else:
            _write_parquet(table, path)
        written.append(path)
    meta = {"schema_version": SCHEMA_VERSION, "tool": {"name": "inspector", "version": __version__},
            "format": fmt, "tables": list(TABLES), "watchlist": watchlist_dict(result.watch),
            "payload_shown": show_payload}
    write_atomically(out / "meta.json", lambda h: json.dump(meta, h, indent=1))
    return written + [out / "meta.json"]


def _shareable(name: str, table: pd.DataFrame, show_payload: bool) -> pd.DataFrame:
    """Secret excerpts only on request, and as hex."""
    if name != "secrets":
        return table
    shared = table.drop(columns=["excerpt"])
    if show_payload:
        shared["excerpt_hex"] = pd.array([bytes(b).hex() for b in table["excerpt"]], dtype="string")
    return shared


def csv_ready(table: pd.DataFrame) -> pd.DataFrame:
    """Durations in seconds, times in RFC 3339 (pandas' default is fine)."""
    out = table.copy()
    for col in out.columns:
        if pd.api.types.is_timedelta64_dtype(out[col]):
            out[col] = out[col].dt.total_seconds()
    return out


def _write_parquet(table: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        table.to_parquet(tmp, index=False, engine="pyarrow")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
