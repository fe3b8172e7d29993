"""The tables of an analysis cast to their documented dtypes (``inspector.schema``).

Every table an ``Analysis`` holds is cast here, whether it was just computed
or loaded back from an export, so a notebook sees the same dtypes either
way: UInt16 ports, categorical roles, verdicts and protocols, ordered
severities, lists of uids and events, UTC datetimes, timedeltas, and the
full set of columns even when a table has no rows.
"""

from __future__ import annotations

import json
import math
from collections import namedtuple
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
from pandas.api.types import pandas_dtype

from inspector.schema import CATEGORIES, JSON_COLUMNS, LIST_COLUMNS, ORDERED, Columns


def typed(frame: pd.DataFrame, columns: Columns) -> pd.DataFrame:
    """``frame`` with exactly ``columns``, in order, cast to their dtypes
    (missing columns are added empty); ``frame`` itself when it has them already."""
    if _typed_already(frame, columns):  # tables are typed as they are built: an Analysis re-types nothing
        return frame
    present = set(frame.columns)
    cast = {}
    for name, (dtype, _doc) in columns.items():
        values = frame[name] if name in present else pd.Series([None] * len(frame), index=frame.index)
        cast[name] = _cast(values, dtype, CATEGORIES.get(name), name in ORDERED).array
    return pd.DataFrame(cast, index=frame.index)  # built once: a column insert costs more than a column


def empty_frame(columns: Columns) -> pd.DataFrame:
    """A table with no rows and the documented dtypes."""
    return table_of([], columns)


def table_of(rows: list[dict[str, Any]], columns: Columns) -> pd.DataFrame:
    """The table of ``rows`` (dicts by column name; a missing key is empty),
    typed as ``typed`` types it: a column of plain values is built straight
    as its dtype, ~5x cheaper than a frame of objects cast column by column."""
    return pd.DataFrame({name: _column([row.get(name) for row in rows], dtype, CATEGORIES.get(name), name in ORDERED)
                         for name, (dtype, _doc) in columns.items()})


def _column(values: list, dtype: str, categories: tuple[str, ...] | None, ordered: bool):
    """One column of ``table_of``: straight from the values where that gives what
    ``_cast`` gives (an empty column of any dtype, plain values of a plain dtype,
    documented categories); through ``_cast`` otherwise (~2 ms a column)."""
    if dtype == "category":
        if all(v is None or v in (categories or ()) for v in values):
            return pd.Categorical(values, categories=list(categories or ()), ordered=ordered)
    elif dtype == "object":
        column = np.empty(len(values), dtype=object)
        for i, value in enumerate(values):  # one by one: numpy would unpack a list value
            column[i] = value
        return column
    elif not values or dtype in _DIRECT:
        try:
            return pd.array(values, dtype=_dtype(dtype)) if dtype != "list" else np.empty(0, dtype=object)
        except (TypeError, ValueError):  # e.g. None in an int64 column: cast as typed() would
            pass
    return _cast(pd.Series(values, dtype=object), dtype, categories, ordered).array


_DIRECT = ("string", "int64", "float64", "bool")  # dtypes pd.array builds from Python values as astype would


def _cast(values: pd.Series, dtype: str, categories: tuple[str, ...] | None, ordered: bool = False) -> pd.Series:
    if _already(values, dtype, categories, ordered):  # tables are typed as they are built: joining re-types nothing
        return values
    if dtype == "category":
        return pd.Series(pd.Categorical(values.astype(object).where(values.notna(), None),
                                        categories=_categories(values, categories), ordered=ordered),
                         index=values.index)
    if dtype == "list":
        return pd.Series([as_list(v) for v in values.tolist()], index=values.index, dtype=object)
    if dtype.startswith("datetime64"):
        return pd.to_datetime(values, utc=True).astype(dtype)
    if dtype.startswith("timedelta64"):
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_timedelta64_dtype(values)
        return (pd.to_timedelta(values, unit="s") if numeric else pd.to_timedelta(values)).astype(dtype)
    if dtype == "string":
        return values.astype("string")
    if dtype == "object":
        return values.astype(object)
    return values.astype(dtype)


def _typed_already(frame: pd.DataFrame, columns: Columns) -> bool:
    """``frame`` has exactly ``columns``, in order, of their documented dtypes
    (read from ``frame.dtypes``: a column extracted as a Series costs more)."""
    if list(frame.columns) != list(columns):
        return False
    return all(_has_dtype(actual, dtype, CATEGORIES.get(name), name in ORDERED, lambda name=name: frame[name])
               for (name, (dtype, _doc)), actual in zip(columns.items(), frame.dtypes, strict=True))


def _already(values: pd.Series, dtype: str, categories: tuple[str, ...] | None, ordered: bool = False) -> bool:
    """``values`` has exactly the documented dtype (and, for a category, exactly its documented categories)."""
    return _has_dtype(values.dtype, dtype, categories, ordered, lambda: values)


def _has_dtype(actual, dtype: str, categories: tuple[str, ...] | None, ordered: bool,
               values: Callable[[], pd.Series]) -> bool:
    """A column of dtype ``actual`` is of the schema's ``dtype``: a category
    with exactly its documented categories and order, a list column holding
    lists only (``values`` read for that check alone), else the same dtype."""
    if dtype == "category":
        return (isinstance(actual, pd.CategoricalDtype) and actual.ordered == ordered
                and tuple(actual.categories) == tuple(categories or ()))
    if dtype == "list":
        return actual == object and all(type(v) is list for v in values().tolist())
    return actual == _dtype(dtype)


def as_list(value: Any) -> list[str]:
    """A list column's cell as a list of strings: a list, an array (Parquet),
    or text joined with ',' (CSV); empty for a missing value."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA:
        return []
    return [str(v) for v in value]


@cache
def _dtype(name: str):
    """The pandas dtype of a schema dtype name (``pandas_dtype`` parses the name on every call)."""
    return pandas_dtype(name)


def _categories(values: pd.Series, known: tuple[str, ...] | None) -> list[str]:
    """The documented categories, plus any value a newer version wrote."""
    seen = [v for v in pd.unique(values.dropna().astype(str)) if not known or v not in known]
    return list(known or ()) + sorted(seen)


def strings(values: Any) -> pd.api.extensions.ExtensionArray:
    """Text (an object or ``str`` array, None for missing) as the tables'
    ``string`` dtype, converted by Arrow at once: pandas' own conversion
    checks each value in Python, and an object column handed to a DataFrame
    is first inferred as ``str`` and then cast again."""
    if isinstance(values, np.ndarray) and values.dtype.kind == "U":
        values = values.astype(object)  # Arrow converts a numpy str array ~20x slower than its objects
    return pd.arrays.ArrowStringArray(pa.array(values, type=pa.string(), from_pandas=True))


def text_columns(columns: dict[str, Any]) -> dict[str, Any]:
    """``columns`` with their object and ``str`` numpy arrays made ``strings``."""
    return {name: strings(values) if isinstance(values, np.ndarray) and values.dtype.kind in "OU" else values
            for name, values in columns.items()}


def python_values(column: pd.Series) -> list:
    """``list(column)``, with Arrow-backed text converted by Arrow rather than
    one pandas call per value (~1 us each: 100 k flows cost 0.1 s a column)."""
    if isinstance(column.dtype, pd.StringDtype) and column.dtype.storage == "pyarrow":
        missing = column.dtype.na_value
        return [missing if value is None else value for value in pa.array(column.array).to_pylist()]
    return column.tolist()


def rows_of(frame: pd.DataFrame, columns: list[str]) -> list:
    """``frame[columns].itertuples(index=False)`` as a list, each column converted at once."""
    row = namedtuple("Row", columns)
    return list(map(row._make, zip(*(python_values(frame[name]) for name in columns))))


def json_bytes(value: Any) -> bytes:
    """Compact JSON of ``value`` (JSON values; NaN becomes null): orjson, or the
    standard library for what orjson refuses (integers beyond 64 bits)."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(_nan_as_null(value), separators=(",", ":"), allow_nan=False).encode()


def _nan_as_null(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _nan_as_null(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_as_null(v) for v in value]
    return None if isinstance(value, float) and math.isnan(value) else value


def with_lists_joined(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its list columns (``LIST_COLUMNS``) as text joined with ', ', for CSV."""
    names = [name for name in frame.columns if name in LIST_COLUMNS]
    return frame.assign(**{name: [", ".join(v) for v in frame[name].tolist()] for name in names}) if names else frame


def with_json_text(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its dict columns (``JSON_COLUMNS``) as JSON text, for files."""
    names = [name for name in frame.columns if name in JSON_COLUMNS]
    if not names:
        return frame
    return frame.assign(**{name: [json_bytes(v).decode() for v in frame[name].tolist()] for name in names})


def with_json_parsed(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with the JSON text of its dict columns parsed back (the inverse
    of ``with_json_text``; the standard parser, which keeps big integers exact)."""
    names = [name for name in frame.columns if name in JSON_COLUMNS]
    if not names:
        return frame
    return frame.assign(**{name: pd.Series([json.loads(v) for v in frame[name].tolist()], index=frame.index,
                                            dtype=object)
                           for name in names})


FLOW_ORDER = ["ts", "uid"]
"""``Analysis.flows`` is in start order, then by uid: the same whichever
order flows ended in, and however they were partitioned between workers."""


def sort_flows(flows: pd.DataFrame) -> pd.DataFrame:
    return flows.sort_values(FLOW_ORDER, kind="stable").reset_index(drop=True)
