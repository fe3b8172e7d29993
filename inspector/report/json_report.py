"""The JSON result: a stable contract for users and later tools.

Top level: ``schema_version``, ``tool``, ``watchlist``, ``inputs``,
``anomalies`` and ``flows`` (one object per flow with every column of
``inspector.flows.schema.FLOW_COLUMNS``). ``json_schema()`` returns the JSON
Schema of this document; docs/result.schema.json is a copy the tests keep
in step.
"""

from __future__ import annotations

import json
import math
from typing import IO, Any

import numpy as np
import pandas as pd

from inspector.analysis import ANOMALY_COLUMNS, INPUT_COLUMNS, Analysis
from inspector.classify.verdicts import VERDICTS
from inspector.flows.schema import FLOW_COLUMNS
from inspector.watch import ROLES, Watchlist

SCHEMA_VERSION = 1


def json_ready_flows(flows: pd.DataFrame) -> pd.DataFrame:
    """Flows with JSON-friendly columns: RFC 3339 ``ts`` (UTC) and
    ``duration`` in seconds; missing values become null when written."""
    out = pd.DataFrame(index=flows.index)
    for name, (dtype, _doc) in FLOW_COLUMNS.items():
        col = flows[name]
        if dtype.startswith("datetime64"):
            text = np.datetime_as_string(col.dt.tz_convert(None).to_numpy(), unit="us") if len(col) else []
            out[name] = pd.Series(text, index=flows.index, dtype=object) + "Z"
        elif dtype.startswith("timedelta64"):
            out[name] = col.dt.total_seconds()
        else:
            out[name] = col
    return out


def flow_records(flows: pd.DataFrame) -> list[dict[str, Any]]:
    """Flows as JSON-ready dicts."""
    return json.loads("[" + ",".join(_json_lines(flows)) + "]")


def _json_lines(flows: pd.DataFrame, chunk: int = 20000):
    """One JSON object per flow, encoded by pandas' C encoder in chunks."""
    for start in range(0, len(flows), chunk):
        text = json_ready_flows(flows.iloc[start : start + chunk]).to_json(
            orient="records", lines=True, date_format="iso", double_precision=6)
        # pandas escapes every '/' as '\/'; '\/' only ever stands for '/'.
        yield from text.replace("\\/", "/").rstrip("\n").split("\n")


def watchlist_dict(watch: Watchlist) -> dict[str, Any]:
    return {
        "migration_ports": _ranges(watch.migration_ports),
        "libvirtd_ports": sorted(watch.libvirtd_ports),
        "ssh_ports": sorted(watch.ssh_ports),
        "internal_nets": [str(n) for n in watch.internal_nets],
    }


def _ranges(ports: frozenset[int]) -> list[str]:
    """{1, 2, 3, 7} -> ['1-3', '7']"""
    out: list[str] = []
    for p in sorted(ports):
        if out and int(out[-1].split("-")[-1]) == p - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{p}"
        else:
            out.append(str(p))
    return out


def result_document(analysis: Analysis, flows: bool = True) -> dict[str, Any]:
    """The whole result as a dict (``flows=False`` leaves the flows out)."""
    from inspector import __version__

    inputs = analysis.inputs.to_dict("records")
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "inspector", "version": __version__},
        "watchlist": watchlist_dict(analysis.watch),
        "inputs": [{k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()} for row in inputs],
        "anomalies": [
            {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
            for row in analysis.anomalies.to_dict("records")
        ],
        **({"flows": flow_records(analysis.flows)} if flows else {}),
    }


def write_json(analysis: Analysis, handle: IO[str]) -> None:
    """Write the document, one flow per line, without building it whole in memory."""
    head = json.dumps(result_document(analysis, flows=False), indent=1, allow_nan=False)
    handle.write(head[:-2] + ',\n "flows": [')
    sep = "\n  "
    for line in _json_lines(analysis.flows):
        handle.write(sep + line)
        sep = ",\n  "
    handle.write("\n ]\n}\n")


_JSON_TYPES = {
    "string": {"type": "string"},
    "UInt16": {"type": "integer", "minimum": 0, "maximum": 65535},
    "int64": {"type": "integer"},
    "bool": {"type": "boolean"},
    "Int64": {"type": ["integer", "null"]},
    "float64": {"type": ["number", "null"]},
    "datetime64[ns, UTC]": {"type": "string", "format": "date-time"},
    "timedelta64[ns]": {"type": "number", "minimum": 0},
}
_ENUMS = {"watch": list(ROLES), "verdict": list(VERDICTS), "orig_verdict": list(VERDICTS),
          "resp_verdict": list(VERDICTS)}


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the document ``write_json`` writes."""
    flow_props = {}
    for name, (dtype, doc) in FLOW_COLUMNS.items():
        prop = {"enum": _ENUMS[name]} if name in _ENUMS else dict(_JSON_TYPES[dtype])
        prop["description"] = doc
        flow_props[name] = prop
    flow_props["confidence"].update({"type": "number", "minimum": 0, "maximum": 1})
    count = {"type": "integer", "minimum": 0}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "inspector analysis result",
        "type": "object",
        "required": ["schema_version", "tool", "watchlist", "inputs", "anomalies", "flows"],
        "properties": {
            "schema_version": {"const": SCHEMA_VERSION},
            "tool": {"type": "object", "required": ["name", "version"]},
            "watchlist": {
                "type": "object",
                "required": ["migration_ports", "libvirtd_ports", "ssh_ports", "internal_nets"],
            },
            "inputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": INPUT_COLUMNS,
                    "properties": {
                        "file": {"type": "string"}, "format": {"type": "string"},
                        "linktypes": {"type": "string", "description": "link types seen, comma-separated"},
                        **{k: count for k in INPUT_COLUMNS[3:]},
                    },
                },
            },
            "anomalies": {
                "type": "array",
                "items": {"type": "object", "required": ANOMALY_COLUMNS,
                          "properties": {"count": count, "kind": {"type": "string"}}},
            },
            "flows": {
                "type": "array",
                "items": {"type": "object", "required": list(FLOW_COLUMNS), "properties": flow_props},
            },
        },
    }


def columns_markdown() -> str:
    """The flows and windows columns as Markdown tables (docs/schema.md)."""
    from inspector.flows.schema import WINDOW_COLUMNS

    lines = []
    for title, columns in (("flows", FLOW_COLUMNS), ("windows", WINDOW_COLUMNS)):
        lines += [f"### {title}", "", "| column | dtype | meaning |", "|---|---|---|"]
        lines += [f"| `{name}` | {dtype} | {doc} |" for name, (dtype, doc) in columns.items()]
        lines.append("")
    return "\n".join(lines)
