"""Every table of an analysis as CSV or Parquet files in one folder, and back.

The folder also holds ``meta.json`` (schema version, tool, watchlist, the
tables written), so ``load`` can tell what it is loading: an analysis run
once on a big capture is explored later without re-reading it. Secret
excerpts are left out unless asked for (``show_payload``): then they are
written as hex, never as raw bytes. Dict columns (evidence ``fields``) are
written as JSON text and parsed back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from inspector.analysis import Analysis
from inspector.errors import InspectorError
from inspector.report.output import EXPORT_FORMATS, replace_all, write_beside
from inspector.schema import MISSING_WHEN_EMPTY, SCHEMAS
from inspector.tables import with_json_parsed, with_json_text, with_lists_joined
from inspector.text import FORMULA_START, TEXT_MARK, csv_cell
from inspector.watch import Watchlist

TABLES = tuple(SCHEMAS)


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
    staged = []  # every file written beside its target first: a failure leaves the old set
    try:
        for name in TABLES:
            table = _shareable(name, result.secrets_raw() if name == "secrets" else getattr(result, name),
                               show_payload)
            path = out / f"{name}.{fmt}"
            if fmt == "csv":
                staged.append((write_beside(path, lambda h, t=table: csv_ready(t).to_csv(h, index=False)), path))
            else:
                staged.append((write_beside(path, lambda h, t=table: with_json_text(t).to_parquet(
                    h, index=False, engine="pyarrow"), binary=True), path))
        meta = {"schema_version": SCHEMA_VERSION, "tool": {"name": "inspector", "version": __version__},
                "format": fmt, "tables": list(TABLES), "watchlist": watchlist_dict(result.watch),
                "payload_shown": show_payload}
        staged.append((write_beside(out / "meta.json", lambda h: json.dump(meta, h, indent=1)), out / "meta.json"))
    except BaseException:
        for tmp, _path in staged:
            tmp.unlink(missing_ok=True)
        raise
    replace_all(staged)
    return [path for _tmp, path in staged]


def _shareable(name: str, table: pd.DataFrame, show_payload: bool) -> pd.DataFrame:
    """Secret excerpts only on request, and as hex."""
    if name != "secrets":
        return table
    shared = table.drop(columns=["excerpt"])
    if show_payload:
        shared["excerpt_hex"] = pd.array([bytes(b).hex() for b in table["excerpt"]], dtype="string")
    return shared


NEUTRALISED_START = FORMULA_START + (TEXT_MARK,)  # as csv_cell


def csv_ready(table: pd.DataFrame) -> pd.DataFrame:
    """Durations in seconds, times in RFC 3339 (pandas' default is fine), dicts as JSON text, lists joined
    with ', ', and text that would start a spreadsheet formula neutralised (``inspector.text.csv_cell``)."""
    out = with_lists_joined(with_json_text(table)).copy()
    for col in out.columns:
        if pd.api.types.is_timedelta64_dtype(out[col]):
            out[col] = out[col].dt.total_seconds()
        elif isinstance(out[col].dtype, pd.StringDtype):  # most text: vectorised
            text = out[col]
            marked = text.str.startswith(NEUTRALISED_START, na=False)
            if marked.any():
                out[col] = text.mask(marked, TEXT_MARK + text)
        elif isinstance(out[col].dtype, pd.CategoricalDtype) or out[col].dtype == object:  # categories, or few
            out[col] = out[col].map(csv_cell, na_action="ignore")
    return out


def load(folder: str | os.PathLike) -> Analysis:
    """An ``Analysis`` from a folder written by ``export_tables`` (``--export``),
    with the documented dtypes. Secret excerpts come back only if they were
    exported (``show_payload``)."""
    from inspector.report.json_report import SCHEMA_VERSION

    where = Path(folder)
    try:
        meta = json.loads((where / "meta.json").read_text(encoding="utf-8"))
        fmt, version = meta["format"], meta["schema_version"]
    except FileNotFoundError:
        raise InspectorError(f"{where}: not an inspector export (no meta.json; write one with --export)") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InspectorError(f"{where}: damaged meta.json ({exc})") from None
    if version != SCHEMA_VERSION or fmt not in EXPORT_FORMATS:
        raise InspectorError(f"{where}: export schema {version} in {fmt}; this inspector reads schema "
                             f"{SCHEMA_VERSION} in {', '.join(EXPORT_FORMATS)}")
    tables = {name: _read_table(where / f"{name}.{fmt}", fmt, SCHEMAS[name]) for name in meta["tables"]
              if name in SCHEMAS}
    if "secrets" in tables:
        secrets = tables["secrets"]
        hexed = secrets.pop("excerpt_hex") if "excerpt_hex" in secrets else None
        secrets["excerpt"] = [bytes.fromhex(h) for h in hexed.fillna("")] if hexed is not None else None
    watch = Watchlist.from_dict(meta.get("watchlist", {}), f"{where / 'meta.json'}: watchlist")
    return Analysis(watch=watch, **{name: tables.get(name, pd.DataFrame()) for name in SCHEMAS})


def _unmarked(frame: pd.DataFrame) -> pd.DataFrame:
    """The cells ``csv_ready`` wrote as they were (``inspector.text.csv_value``, vectorised)."""
    for col in frame.columns:
        text = frame[col]
        marked = text.str.startswith(TEXT_MARK, na=False)
        if marked.any():
            frame[col] = text.mask(marked, text.str[1:])
    return frame


def _read_table(path: Path, fmt: str, columns) -> pd.DataFrame:
    try:
        if fmt == "parquet":
            return with_json_parsed(pd.read_parquet(path, engine="pyarrow"))
        frame = with_json_parsed(_unmarked(pd.read_csv(path, dtype=object, keep_default_na=False)))
    except FileNotFoundError:
        raise InspectorError(f"{path}: missing from the export") from None
    except Exception as exc:  # noqa: BLE001 - pandas/pyarrow/json raise many kinds on damaged files
        raise InspectorError(f"{path}: cannot read: {exc}") from None
    for name, (dtype, _doc) in columns.items():  # CSV keeps text: numbers and empty cells back
        if name in MISSING_WHEN_EMPTY and name in frame.columns:
            frame[name] = frame[name].replace("", None)
        elif name in frame.columns and dtype not in ("string", "category", "object", "list") \
                and not dtype.startswith("datetime64"):
            values = frame[name].replace("", None)
            frame[name] = values.map({"True": True, "False": False}) if dtype == "bool" else pd.to_numeric(values)
    return frame
