"""The library API a notebook uses: one entry point, typed tables with the
documented dtypes (even when empty), round-trip export/load, on-demand flow
views, a compact notebook summary."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import cache
from pathlib import Path

import pandas as pd
import pytest

import inspector
from inspector.schema import CATEGORIES, ORDERED

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = [ROOT / "captures" / name for name in ("qemu-plain.pcap.gz", "qemu-tls.pcap.gz", "http-api.pcap")]


@cache
def analysed() -> inspector.Analysis:
    return inspector.analyze(CAPTURES)


def test_public_api_is_explicit_and_typed():
    assert set(inspector.__all__) == {"Analysis", "CaptureError", "ConfigError", "InspectorError", "Progress", "Timeouts",
                                      "SCHEMAS", "Watchlist", "analyze", "load", "ConfigAudit", "audit_config"}
    assert (Path(inspector.__file__).parent / "py.typed").exists()
    assert inspector.analyze.__doc__ and inspector.load.__doc__ and inspector.Analysis.__doc__
    assert inspector.audit_config.__doc__ and inspector.ConfigAudit.__doc__


def _assert_schema(result: inspector.Analysis) -> None:
    for name, columns in inspector.SCHEMAS.items():
        table = getattr(result, name)
        assert list(table.columns) == list(columns), name
        for column, (dtype, _doc) in columns.items():
            actual = table[column].dtype
            if dtype == "category":
                assert isinstance(actual, pd.CategoricalDtype), (name, column)
                assert list(actual.categories)[: len(CATEGORIES[column])] == list(CATEGORIES[column])
                assert actual.ordered == (column in ORDERED), (name, column)
            elif dtype == "list":
                assert actual == object and all(type(v) is list for v in table[column]), (name, column)
            else:
                assert str(actual) == dtype, (name, column, actual)


def test_every_table_has_the_documented_dtypes():
    result = analysed()
    _assert_schema(result)
    assert str(result.flows["orig_p"].dtype) == "UInt16"
    assert set(result.flows["protocol"].astype(str)) == {"qemu-migration", "tls", "http"}


def test_empty_tables_keep_the_full_schema():
    result = inspector.Analysis(*[pd.DataFrame()] * 6)
    _assert_schema(result)
    assert all(getattr(result, name).empty for name in inspector.SCHEMAS)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_and_load_round_trip(tmp_path, fmt):
    result = analysed()
    result.export(tmp_path, fmt, show_payload=True)
    loaded = inspector.load(tmp_path)
    for name in inspector.SCHEMAS:
        pd.testing.assert_frame_equal(getattr(result, name), getattr(loaded, name), check_exact=False, obj=name)
    assert loaded.watch == result.watch
    fields = result.evidence["fields"].tolist()  # a dict per detection, written as JSON text
    assert fields and all(isinstance(f, dict) for f in fields)
    assert any(isinstance(v, (dict, list)) for f in fields for v in f.values())  # nested values too
    assert loaded.evidence["fields"].tolist() == fields


def test_load_keeps_excerpts_out_unless_exported(tmp_path):
    analysed().export(tmp_path)
    secrets = inspector.load(tmp_path).secrets
    assert len(secrets) and secrets["excerpt"].isna().all()


def test_load_errors_are_one_line(tmp_path):
    with pytest.raises(inspector.InspectorError, match="not an inspector export"):
        inspector.load(tmp_path)
    (tmp_path / "meta.json").write_text("{")
    with pytest.raises(inspector.InspectorError, match="damaged meta.json"):
        inspector.load(tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"format": "parquet", "schema_version": 1,
                                                    "tables": ["flows"]}))
    with pytest.raises(inspector.InspectorError, match="flows.parquet: missing from the export"):
        inspector.load(tmp_path)


def test_flow_views_on_demand():
    result = analysed()
    plain = result.flows[result.flows["protocol"] == "qemu-migration"].iloc[0]
    windows = result.windows_of(plain.uid)
    assert len(windows) == plain.orig_windows + plain.resp_windows and set(windows["uid"]) == {plain.uid}
    histogram = result.byte_histogram(plain.uid)
    assert histogram.shape == (256, 1) and histogram["orig"].sum() > 0


def test_text_repr_is_one_line_without_payload():
    text = repr(analysed())
    assert text == "<Analysis: 3 file(s), 5 flows, 2 event(s), 4 finding(s)>"


def test_notebook_summary_is_compact_and_escaped(tmp_path):
    from hostile_capture import write_hostile_capture

    page = analysed()._repr_html_()
    assert "3 file(s)" in page and "1 critical" in page and "<table" in page and "protection" in page
    hostile = inspector.analyze(write_hostile_capture(tmp_path / "hostile.pcap"))
    assert "<script" not in hostile._repr_html_()


def test_import_does_not_load_matplotlib():
    code = "import inspector, sys; inspector.analyze(sys.argv[1]); print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code, str(CAPTURES[0])], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
