"""The JSON result: a stable contract for users and later tools.

Top level: ``schema_version``, ``tool``, ``watchlist``, ``inputs``,
``anomalies``, ``summary`` (findings by severity), ``findings``, ``secrets``,
``secret_counts``,
``events`` and ``flows`` (one object per flow with every column of
``inspector.schema.FLOW_COLUMNS``). Secret excerpts appear only when
asked for (``show_payload``); a result is meant to be shared. ``json_schema()`` returns the JSON
Schema of this document; docs/result.schema.json is a copy the tests keep
in step.

Layout: one top-level key per line, and one array element per line (flows,
secrets, findings ...), so the document greps and diffs by record. It is
written from the tables' columns, a chunk of flows at a time, by orjson:
times and durations are converted per column, never per row through pandas.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import IO, Any

import numpy as np
import pandas as pd

from inspector.analysis import Analysis
from inspector.report.payload import printable
from inspector.schema import (ANOMALY_COLUMNS, CATEGORIES, EVENT_COLUMNS, FINDING_COLUMNS, FLOW_COLUMNS, INPUT_COLUMNS,
                              PROTECTIONS, RISKS, SECRET_COLUMNS, SECRET_COUNT_COLUMNS, SEVERITIES, TUNNELS, Columns)
from inspector.tables import json_bytes
from inspector.watch import Watchlist, port_ranges

SCHEMA_VERSION = 1
FLOW_DIGITS = 6  # decimals of the flows' floats (seconds to the microsecond; entropy, chi2, shares)
CHUNK = 2_048  # flows converted and encoded at a time (20 k of them as Python objects took ~200 MB)


def rfc3339(times: pd.Series) -> list[str | None]:
    """UTC times as RFC 3339 text to the microsecond ('2024-05-01T10:00:00.123456Z'), null when missing."""
    values = times.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")
    text = np.char.add(np.datetime_as_string(values, unit="us"), "Z").astype(object)
    text[np.isnat(values)] = None
    return text.tolist()


def json_column(values: pd.Series, dtype: str, digits: int | None = None) -> list:
    """One column as JSON-ready Python values: RFC 3339 times, durations in
    seconds, floats rounded to ``digits`` decimals, None for missing."""
    if dtype.startswith("datetime64"):
        return rfc3339(values)
    if dtype.startswith("timedelta64") or dtype == "float64":
        numbers = values.dt.total_seconds() if dtype.startswith("timedelta64") else values
        numbers = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
        return (numbers if digits is None else np.round(numbers, digits)).tolist()  # NaN is written as null
    if dtype in ("int64", "bool"):
        return values.to_numpy().tolist()
    return values.to_numpy(dtype=object, na_value=None).tolist()


def records(table: pd.DataFrame, columns: Columns, digits: int | None = None) -> list[dict[str, Any]]:
    """The rows of ``table`` (the ``columns`` of its schema) as JSON-ready dicts."""
    names = [name for name in columns if name in table.columns]
    values = [json_column(table[name], columns[name][0], digits) for name in names]
    return [dict(zip(names, row)) for row in zip(*values)] if names else [{} for _ in range(len(table))]


def _evidence_by_uid(evidence: pd.DataFrame | None) -> dict[str, list[dict[str, Any]]]:
    """Each flow's detections, in the evidence table's order."""
    by_uid: dict[str, list[dict[str, Any]]] = {}
    if evidence is None or evidence.empty:
        return by_uid
    keys = ("direction", "protocol", "offset", "proves", "evidence", "fields")
    columns = [evidence[key].tolist() for key in keys]
    for uid, row in zip(evidence["uid"].tolist(), zip(*columns)):
        by_uid.setdefault(uid, []).append(dict(zip(keys, row)))
    return by_uid


def flow_chunks(flows: pd.DataFrame | Iterable[pd.DataFrame], evidence: pd.DataFrame | None,
                chunk: int = CHUNK) -> Iterator[list[bytes]]:
    """The flows as compact JSON objects (every flow column, then ``evidence``),
    a list of up to ``chunk`` encoded lines at a time; ``flows`` may come in
    parts (as ``ReportSpool.flows_in_order`` gives them)."""
    names = list(FLOW_COLUMNS) + ["evidence"]
    by_uid = _evidence_by_uid(evidence)
    pieces = (part.iloc[start : start + chunk] for part in ([flows] if isinstance(flows, pd.DataFrame) else flows)
              for start in range(0, len(part), chunk))
    for part in pieces:
        values = [json_column(part[name], dtype, FLOW_DIGITS) for name, (dtype, _doc) in FLOW_COLUMNS.items()]
        values.append([by_uid.get(uid, []) for uid in values[names.index("uid")]])
        yield [json_bytes(dict(zip(names, row))) for row in zip(*values)]


def event_records(events: pd.DataFrame) -> list[dict[str, Any]]:
    """Migration events as JSON-ready dicts (times RFC 3339 UTC, uids as a list)."""
    out = records(events, EVENT_COLUMNS)
    for row in out:
        row["uids"] = row["uids"].split(",") if row["uids"] else []
    return out


def watchlist_dict(watch: Watchlist) -> dict[str, Any]:
    return {
        "migration_ports": port_ranges(watch.migration_ports),
        "libvirtd_ports": sorted(watch.libvirtd_ports),
        "ssh_ports": sorted(watch.ssh_ports),
        "internal_nets": [str(n) for n in watch.internal_nets],
    }


def finding_records(findings: pd.DataFrame) -> list[dict[str, Any]]:
    """Findings as JSON-ready dicts: list-valued columns become lists."""
    out = records(findings, FINDING_COLUMNS)
    for row in out:
        for key, sep in _FINDING_LISTS.items():
            row[key] = [part for part in str(row[key]).split(sep) if part] if row[key] else []
    return out


_FINDING_LISTS = {"risks": ", ", "evidence": "\n", "hosts": ", ", "uids": ",", "events": ",", "remediation": "\n",
                  "references": ", "}


def secret_records(secrets: pd.DataFrame, show_payload: bool) -> list[dict[str, Any]]:
    """Secrets found in cleartext: redacted (label only) unless ``show_payload``."""
    out = records(secrets, {k: v for k, v in SECRET_COLUMNS.items() if k != "excerpt"})
    if show_payload:
        for row, excerpt in zip(out, secrets["excerpt"].tolist()):
            row["excerpt_hex"] = bytes(excerpt).hex()
            row["excerpt_text"] = printable(bytes(excerpt))
    return out


def severity_counts(findings: pd.DataFrame) -> dict[str, int]:
    counts = findings["severity"].astype(str).value_counts()
    return {sev: int(counts.get(sev, 0)) for sev in SEVERITIES}


def document_head(analysis: Analysis, show_payload: bool = False, flow_count: int | None = None) -> dict[str, Any]:
    """Everything of the result document but the flows (streamed after it);
    ``flow_count`` when ``analysis.flows`` holds only some of the flows. The
    secrets and their counts, which may be many, come as iterators of
    encoded lines, a chunk at a time (``_encoded``)."""
    from inspector import __version__

    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "inspector", "version": __version__},
        "watchlist": watchlist_dict(analysis.watch),
        "inputs": records(analysis.inputs, INPUT_COLUMNS),
        "anomalies": records(analysis.anomalies, ANOMALY_COLUMNS),
        "summary": {"findings": severity_counts(analysis.findings), "events": len(analysis.events),
                    "flows": len(analysis.flows) if flow_count is None else flow_count,
                    "payload_shown": show_payload},
        "findings": finding_records(analysis.findings),
        "secrets": _encoded(analysis.secrets, lambda part: secret_records(part, show_payload)),
        "secret_counts": _encoded(analysis.secret_counts, lambda part: records(part, SECRET_COUNT_COLUMNS)),
        "events": event_records(analysis.events),
    }


def _encoded(table: pd.DataFrame, to_records, chunk: int = CHUNK) -> Iterator[list[bytes]]:
    for start in range(0, len(table), chunk):
        yield [json_bytes(item) for item in to_records(table.iloc[start : start + chunk])]


def write_json(analysis: Analysis, handle: IO[str], *, show_payload: bool = False,
               flows: tuple[int, Iterable[pd.DataFrame]] | None = None) -> None:
    """Write the document, a chunk of flows at a time, without building it whole in memory.

    ``flows``: (count, parts in order) of every flow when ``analysis.flows``
    holds only the flows its events and findings are made of (the command
    line streams them from ``ReportSpool``)."""
    count, parts = flows if flows is not None else (None, analysis.flows)
    handle.write("{")
    for key, value in document_head(analysis, show_payload, count).items():
        handle.write(f'\n "{key}": ')
        if isinstance(value, list):  # one element at a time: a finding may list 100 k evidence lines
            _write_array(handle, ([json_bytes(item)] for item in value))
        elif isinstance(value, Iterator):
            _write_array(handle, value)
        else:
            handle.write(json_bytes(value).decode())
        handle.write(",")
    handle.write('\n "flows": ')
    _write_array(handle, flow_chunks(parts, analysis.evidence))
    handle.write("\n}\n")


def _write_array(handle: IO[str], chunks: Iterable[list[bytes]]) -> None:
    """A JSON array of encoded elements, one per line."""
    sep = b"[\n  "
    for lines in chunks:
        if lines:
            handle.write((sep + b",\n  ".join(lines)).decode())
            sep = b",\n  "
    handle.write("[]" if sep == b"[\n  " else "\n ]")


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
