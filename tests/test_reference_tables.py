"""Every table of every shipped capture is what the reference snapshot holds.

``tests/reference/*.parquet`` were written by ``make_reference.py`` before
the pipeline was reworked for speed (meters, compiled prefilters, columnar
tables); a rework must leave every row, value and dtype as it was. Row order
is not part of the contract: tables are compared sorted on every column.
"""

from __future__ import annotations

import json
import sys
from functools import cache
from pathlib import Path

import pandas as pd
import pytest

import inspector
from inspector.schema import JSON_COLUMNS, LIST_COLUMNS, SCHEMAS

HERE = Path(__file__).resolve().parent / "reference"
sys.path.insert(0, str(HERE))
from make_reference import ROOT, runs, table_of  # noqa: E402

RUNS = runs()


@cache
def reference(table: str) -> pd.DataFrame:
    """The snapshot of a table; its dict columns were written as JSON text
    (evidence ``fields`` became a dict per row since), so they are read as dicts,
    and its list columns (uids, events, risks, channels) as lists."""
    frame = pd.read_parquet(HERE / f"{table}.parquet")
    frame = frame.assign(**{name: pd.Series([v.tolist() for v in frame[name]], index=frame.index, dtype=object)
                            for name in frame.columns if name in LIST_COLUMNS})  # Parquet lists come as arrays
    return frame.assign(**{name: pd.Series([json.loads(text) for text in frame[name]], index=frame.index,
                                           dtype=object)
                           for name in frame.columns if name in JSON_COLUMNS})


@cache
def analysed(name: str) -> inspector.Analysis:
    return inspector.analyze([p.relative_to(ROOT) for p in RUNS[name]])


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """Values as text, rows in a canonical order (dtypes are compared apart)."""
    out = frame.copy()
    for column in out.columns:
        out[column] = [json.dumps(v, sort_keys=True, default=str) if isinstance(v, (dict, list)) else
                       ("<NA>" if v is None or v is pd.NA or (isinstance(v, float) and v != v) else repr(v))
                       for v in out[column].astype(object)]
    return out.sort_values(list(out.columns)).reset_index(drop=True)


@pytest.fixture(autouse=True)
def _in_root(monkeypatch):
    monkeypatch.chdir(ROOT)


@pytest.mark.parametrize("name", sorted(RUNS))
def test_tables_equal_reference(name):
    result = analysed(name)
    for table in SCHEMAS:
        want = reference(table)
        want = want[want["reference"] == name].drop(columns="reference").reset_index(drop=True)
        got = table_of(result, table).reset_index(drop=True)
        assert list(got.columns) == list(want.columns), table
        assert [str(t) for t in got.dtypes] == [str(t) for t in want.dtypes], table
        pd.testing.assert_frame_equal(comparable(got), comparable(want), obj=f"{name}: {table}")
