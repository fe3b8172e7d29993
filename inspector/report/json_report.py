"""The JSON result: a stable contract for users and later tools.

Top level: ``schema_version``, ``tool``, ``watchlist``, ``inputs``,
``anomalies``, ``summary`` (findings by severity), ``findings``, ``secrets``,
``secret_counts``,
``events`` and ``flows`` (one object per flow with every column of
``inspector.flows.schema.FLOW_COLUMNS``). Secret excerpts appear only when
asked for (``show_payload``); a result is meant to be shared. ``json_schema()`` returns the JSON
Schema of this document; docs/result.schema.json is a copy the tests keep
in step.
"""

from __future__ import annotations

import json
from typing import IO, Any

import numpy as np
import pandas as pd

from inspector.analysis import Analysis
from inspector.report.payload import printable
from inspector.schema import (ANOMALY_COLUMNS, CATEGORIES, EVENT_COLUMNS, FINDING_COLUMNS, FLOW_COLUMNS, INPUT_COLUMNS,
                              PROTECTIONS, RISKS, SECRET_COLUMNS, SECRET_COUNT_COLUMNS, SEVERITIES, TUNNELS)
from inspector.watch import Watchlist, port_ranges

SCHEMA_VERSION = 1


def json_ready_flows(flows: pd.DataFrame, evidence: pd.DataFrame | None = None) -> pd.DataFrame:
    """Flows with JSON-friendly columns: RFC 3339 ``ts`` (UTC), ``duration``
    in seconds, and an ``evidence`` list per flow; missing values become null
    when written."""
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
    out["evidence"] = _evidence_lists(flows["uid"], evidence)
    return out


def _evidence_lists(uids: pd.Series, evidence: pd.DataFrame | None) -> list[list[dict[str, Any]]]:
    if evidence is None or evidence.empty:
        return [[] for _ in range(len(uids))]
    by_uid: dict[str, list[dict[str, Any]]] = {}
    for row in evidence.itertuples(index=False):
        item = {"direction": row.direction, "protocol": row.protocol, "offset": int(row.offset),
                "proves": row.proves, "evidence": row.evidence, "fields": row.fields}
        by_uid.setdefault(row.uid, []).append(item)
    return [by_uid.get(uid, []) for uid in uids.tolist()]


def flow_lines(flows: pd.DataFrame, evidence: pd.DataFrame | None, chunk: int = 20000):
    """One JSON object per flow, encoded by pandas' C encoder in chunks."""
    for start in range(0, len(flows), chunk):
        text = json_ready_flows(flows.iloc[start : start + chunk], evidence).to_json(
            orient="records", lines=True, date_format="iso", double_precision=6)
        # pandas escapes every '/' as '\/'; '\/' only ever stands for '/'.
        yield from text.replace("\\/", "/").rstrip("\n").split("\n")


def _rfc3339(ts) -> str:
    return pd.Timestamp(ts).tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_records(events: pd.DataFrame) -> list[dict[str, Any]]:
    """Migration events as JSON-ready dicts (times RFC 3339 UTC, uids as a list)."""
    records = []
    for row in map(_native, events.to_dict("records")):
        for key in ("start", "end"):
            row[key] = _rfc3339(row[key])
        row["uids"] = row["uids"].split(",") if row["uids"] else []
        records.append(row)
    return records


def watchlist_dict(watch: Watchlist) -> dict[str, Any]:
    return {
        "migration_ports": port_ranges(watch.migration_ports),
        "libvirtd_ports": sorted(watch.libvirtd_ports),
        "ssh_ports": sorted(watch.ssh_ports),
        "internal_nets": [str(n) for n in watch.internal_nets],
    }


def _native(row: dict[str, Any]) -> dict[str, Any]:
    """numpy scalars -> Python values, for json."""
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def finding_records(findings: pd.DataFrame) -> list[dict[str, Any]]:
    """Findings as JSON-ready dicts: list-valued columns become lists."""
    records = []
    for row in map(_native, findings.to_dict("records")):
        for key, sep in _FINDING_LISTS.items():
            row[key] = [part for part in str(row[key]).split(sep) if part] if row[key] else []
        records.append(row)
    return records


_FINDING_LISTS = {"risks": ", ", "evidence": "\n", "hosts": ", ", "uids": ",", "events": ",", "remediation": "\n",
                  "references": ", "}


def secret_records(secrets: pd.DataFrame, show_payload: bool) -> list[dict[str, Any]]:
    """Secrets found in cleartext: redacted (label only) unless ``show_payload``."""
    records = []
    for row in map(_native, secrets.to_dict("records")):
        excerpt = row.pop("excerpt")
        row["ts"] = _rfc3339(row["ts"])
        if show_payload:
            row["excerpt_hex"] = bytes(excerpt).hex()
            row["excerpt_text"] = printable(bytes(excerpt))
        records.append(row)
    return records


def severity_counts(findings: pd.DataFrame) -> dict[str, int]:
    counts = findings["severity"].astype(str).value_counts()
    return {sev: int(counts.get(sev, 0)) for sev in SEVERITIES}


def document_head(analysis: Analysis, show_payload: bool = False) -> dict[str, Any]:
    """Everything of the result document but the flows (streamed after it)."""
    from inspector import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "inspector", "version": __version__},
        "watchlist": watchlist_dict(analysis.watch),
        "inputs": [_native(row) for row in analysis.inputs.to_dict("records")],
        "anomalies": [_native(row) for row in analysis.anomalies.to_dict("records")],
        "summary": {"findings": severity_counts(analysis.findings), "events": len(analysis.events),
                    "flows": len(analysis.flows), "payload_shown": show_payload},
        "findings": finding_records(analysis.findings),
        "secrets": secret_records(analysis.secrets, show_payload),
        "secret_counts": [_native(row) for row in analysis.secret_counts.to_dict("records")],
        "events": event_records(analysis.events),
    }


def write_json(analysis: Analysis, handle: IO[str], *, show_payload: bool = False) -> None:
    """Write the document, one flow per line, without building it whole in memory."""
    head = json.dumps(document_head(analysis, show_payload), indent=1, allow_nan=False)
    handle.write(head[:-2] + ',\n "flows": [')
    sep = "\n  "
    for line in flow_lines(analysis.flows, analysis.evidence):
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
_ENUMS = {**{name: list(values) for name, values in CATEGORIES.items() if name in FLOW_COLUMNS},
          "tunnel": list(TUNNELS)}


_EVIDENCE_SCHEMA = {
    "type": "array",
    "description": "what the protocol detectors saw in this flow, one object per detection",
    "items": {
        "type": "object",
        "required": ["direction", "protocol", "offset", "proves", "evidence", "fields"],
        "properties": {
            "direction": {"enum": ["orig", "resp", "both"]},
            "protocol": {"type": "string"},
            "offset": {"type": "integer", "minimum": 0},
            "proves": {"enum": ["cleartext", "encrypted", "nothing"]},
            "evidence": {"type": "string"},
            "fields": {"type": "object"},
        },
    },
}


def json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the document ``write_json`` writes."""
    flow_props = {}
    for name, (dtype, doc) in FLOW_COLUMNS.items():
        prop = {"enum": _ENUMS[name]} if name in _ENUMS else dict(_JSON_TYPES[dtype])
        if dtype == "string" and name.startswith(("tls_", "ssh_")):  # absent without a handshake
            prop["type"] = ["string", "null"]
        prop["description"] = doc
        flow_props[name] = prop
    flow_props["confidence"].update({"type": "number", "minimum": 0, "maximum": 1})
    count = {"type": "integer", "minimum": 0}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "inspector analysis result",
        "type": "object",
        "required": ["schema_version", "tool", "watchlist", "inputs", "anomalies", "summary", "findings",
                     "secrets", "secret_counts", "events", "flows"],
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
                    "required": list(INPUT_COLUMNS),
                    "properties": {
                        "file": {"type": "string"}, "format": {"type": "string"},
                        "linktypes": {"type": "string", "description": "link types seen, comma-separated"},
                        **{k: count for k in list(INPUT_COLUMNS)[3:]},
                    },
                },
            },
            "anomalies": {
                "type": "array",
                "items": {"type": "object", "required": list(ANOMALY_COLUMNS),
                          "properties": {"count": count, "kind": {"type": "string"}}},
            },
            "summary": {
                "type": "object",
                "required": ["findings", "events", "flows", "payload_shown"],
                "properties": {
                    "findings": {"type": "object", "required": list(SEVERITIES),
                                 "properties": {sev: count for sev in SEVERITIES},
                                 "description": "number of findings per severity"},
                    "payload_shown": {"type": "boolean",
                                      "description": "whether secret excerpts were included (--show-payload)"},
                },
            },
            "findings": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": list(FINDING_COLUMNS),
                    "properties": {
                        **{name: {"description": doc} for name, (_t, doc) in FINDING_COLUMNS.items()},
                        "severity": {"enum": list(SEVERITIES), "description": FINDING_COLUMNS["severity"][1]},
                        "risks": {"type": "array", "items": {"enum": list(RISKS)}},
                        "bytes_exposed": {**count, "description": FINDING_COLUMNS["bytes_exposed"][1]},
                        **{key: {"type": "array", "items": {"type": "string"},
                                 "description": FINDING_COLUMNS[key][1]}
                           for key in _FINDING_LISTS if key != "risks"},
                    },
                },
            },
            "secrets": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": [c for c in SECRET_COLUMNS if c != "excerpt"],
                    "properties": {
                        **{name: {"description": doc} for name, (_t, doc) in SECRET_COLUMNS.items()
                           if name != "excerpt"},
                        "excerpt_hex": {"type": "string", "description": "bytes around the match, hex (--show-payload only)"},
                        "excerpt_text": {"type": "string",
                                         "description": "the same bytes, printable ASCII with '.' for others (--show-payload only)"},
                    },
                },
            },
            "secret_counts": {
                "type": "array",
                "items": {"type": "object", "required": list(SECRET_COUNT_COLUMNS),
                          "properties": {name: {"description": doc}
                                         for name, (_t, doc) in SECRET_COUNT_COLUMNS.items()}},
            },
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": list(EVENT_COLUMNS),
                    "properties": {
                        **{name: {"description": doc} for name, (_t, doc) in EVENT_COLUMNS.items()},
                        "protection": {"enum": list(PROTECTIONS), "description": EVENT_COLUMNS["protection"][1]},
                        "uids": {"type": "array", "items": {"type": "string"}},
                    },
                },
            },
            "flows": {
                "type": "array",
                "items": {"type": "object", "required": list(FLOW_COLUMNS) + ["evidence"],
                          "properties": {**flow_props, "evidence": _EVIDENCE_SCHEMA}},
            },
        },
    }
