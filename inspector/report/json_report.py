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

import codecs
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from inspector.analysis import Analysis
from inspector.report.payload import printable
from inspector.schema import (ANOMALY_COLUMNS, CAPTURE_ENDS, CATEGORIES, EVENT_COLUMNS, FINDING_COLUMNS, FLOW_COLUMNS, INPUT_COLUMNS,
                              LIST_COLUMNS, PROTECTIONS, RISKS, SECRET_COLUMNS, SECRET_COUNT_COLUMNS, SEVERITIES,
                              TUNNELS, Columns)
from inspector.tables import json_bytes
from inspector.watch import Watchlist, port_ranges

SCHEMA_VERSION = 1
FLOW_DIGITS = 6  # decimals of the flows' floats (seconds to the microsecond; entropy, chi2, shares)
CHUNK = 2_048  # flows converted and encoded at a time (20 k of them as Python objects took ~200 MB)


def rfc3339(times: pd.Series) -> list[str | None]:
    """UTC times as RFC 3339 text to the microsecond ('2024-05-01T10:00:00.123456Z'), null when missing."""
    values = times.dt.tz_convert(None).to_numpy(dtype="datetime64[ns]")
    text = np.datetime_as_string(values, unit="us").tolist()  # not np.char.add: importing numpy.char costs ~8 ms
    return [None if missing else f"{stamp}Z" for stamp, missing in zip(text, np.isnat(values).tolist())]


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
    parts (as ``ReportSpool.flows_in_order`` gives them).

    Each column is encoded at once (``_encoded``) and the lines are joined by
    Arrow: Python runs per column and per flow with evidence, not per value."""
    by_uid = _evidence_by_uid(evidence)
    for part in [flows] if isinstance(flows, pd.DataFrame) else flows:
        for start in range(0, len(part), chunk):
            piece = part.iloc[start : start + chunk]
            yield encoded_records(piece, FLOW_COLUMNS, FLOW_DIGITS, evidence=_evidence_lists(piece["uid"], by_uid))


def encoded_records(table: pd.DataFrame, columns: Columns, digits: int | None = None,
                    **extra: pa.Array) -> list[bytes]:
    """The rows of ``table`` as compact JSON objects (what ``json_bytes`` of
    ``records(table, columns, digits)`` gives), then the ``extra`` columns of
    encoded values: each column encoded at once, the lines joined by Arrow."""
    names = [name for name in columns if name in table.columns]
    values = [_encoded(table[name], columns[name][0], digits) for name in names] + list(extra.values())
    pieces: list = []
    for i, (name, column) in enumerate(zip(names + list(extra), values)):
        pieces += [(b"{" if i == 0 else b",") + orjson.dumps(name) + b":", column]
    if not pieces:
        return [b"{}"] * len(table)
    return pc.binary_join_element_wise(*pieces, b"}", b"", null_handling="replace",
                                       null_replacement=b"null").to_pylist()


_ESCAPED = np.zeros(256, dtype=bool)  # bytes JSON escapes in a string: control characters, quote, backslash
_ESCAPED[:0x20] = _ESCAPED[ord('"')] = _ESCAPED[ord("\\")] = True


def _encoded(values: pd.Series, dtype: str, digits: int | None) -> pa.Array:
    """Each value of a column as its JSON text (what ``json_bytes`` writes),
    null for null, as one binary array: integers and booleans by Arrow,
    categories and repeated strings encoded once each, other strings quoted
    by Arrow when they need no escaping, the rest by one orjson call."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        words = np.array([json_bytes(c) for c in values.cat.categories.tolist()] + [None], dtype=object)
        return pa.array(words[values.cat.codes.to_numpy()], pa.binary())
    if dtype in ("int64", "UInt16", "Int64") and pd.api.types.is_integer_dtype(values.dtype):
        return _one_chunk(pa.array(values.array)).cast(pa.string()).cast(pa.binary())
    if dtype == "bool" and pd.api.types.is_bool_dtype(values.dtype):
        return pc.if_else(pa.array(values.to_numpy(dtype=bool)), b"true", b"false")
    if isinstance(values.dtype, pd.StringDtype):
        text = _one_chunk(pa.array(values.array, pa.string()))
        if text.null_count == len(text):
            return text.cast(pa.binary())
        distinct = pc.dictionary_encode(text)
        if len(distinct.dictionary) * 4 <= len(text):
            words = np.array([json_bytes(word) for word in distinct.dictionary.to_pylist()] + [None], dtype=object)
            return pa.array(words[distinct.indices.fill_null(len(words) - 1).to_numpy()], pa.binary())
        if not _needs_escape(text):
            return pc.binary_join_element_wise(b'"', text.cast(pa.binary()), b'"', b"")
    listed = json_column(values, dtype, digits)
    if dtype not in ("string", "category", "object"):  # numbers, booleans, times: no comma inside a value
        try:
            return pa.array(orjson.dumps(listed)[1:-1].split(b",") if listed else [], pa.binary())
        except orjson.JSONEncodeError:
            pass
    return pa.array([json_bytes(value) for value in listed], pa.binary())


def _one_chunk(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One array (a table joined from parts holds its columns in chunks)."""
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _needs_escape(text: pa.StringArray) -> bool:
    """Some value holds a byte JSON escapes (a check of the UTF-8 bytes, nulls' included)."""
    _validity, offsets, data = text.buffers()
    if data is None:
        return False
    bounds = np.frombuffer(offsets, dtype=np.int32)[text.offset : text.offset + len(text) + 1]
    return bool(_ESCAPED[np.frombuffer(data, dtype=np.uint8)[bounds[0] : bounds[-1]]].any())


def _evidence_lists(uids: pd.Series, by_uid: dict[str, list[dict[str, Any]]]) -> pa.Array:
    """Each flow's evidence list as JSON text (``[]`` for most flows)."""
    lists = np.full(len(uids), b"[]", dtype=object)
    if by_uid:
        for i in np.flatnonzero(uids.isin(list(by_uid)).to_numpy(dtype=bool)).tolist():
            lists[i] = json_bytes(by_uid[uids.iat[i]])
    return pa.array(lists, pa.binary())


def event_records(events: pd.DataFrame) -> list[dict[str, Any]]:
    """Migration events as JSON-ready dicts (times RFC 3339 UTC, uids as a list). ``channels``
    stays the text it was in schema_version 1 ('main, 2 multifd'): a list in the library only."""
    out = records(events, EVENT_COLUMNS)
    for row in out:
        row["channels"] = ", ".join(row["channels"])
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


_FINDING_LISTS = {"evidence": "\n", "hosts": ", ", "remediation": "\n", "references": ", "}
"""Text columns of the findings table the JSON splits into arrays (its list columns are lists already)."""


def secret_records(secrets: pd.DataFrame, show_payload: bool) -> list[dict[str, Any]] | list[bytes]:
    """Secrets found in cleartext: redacted (label only, already encoded) unless ``show_payload``."""
    if not show_payload:
        return encoded_records(secrets, _SHOWN_SECRET_COLUMNS)
    out = records(secrets, _SHOWN_SECRET_COLUMNS)
    for row, excerpt in zip(out, secrets["excerpt"].tolist()):
        row["excerpt_hex"] = bytes(excerpt).hex()
        row["excerpt_text"] = printable(bytes(excerpt))
    return out


_SHOWN_SECRET_COLUMNS = {k: v for k, v in SECRET_COLUMNS.items() if k != "excerpt"}


def severity_counts(findings: pd.DataFrame) -> dict[str, int]:
    counts = findings["severity"].astype(str).value_counts()
    return {sev: int(counts.get(sev, 0)) for sev in SEVERITIES}


def document_head(analysis: Analysis, show_payload: bool = False, flow_count: int | None = None) -> dict[str, Any]:
    """Everything of the result document but the flows (streamed after it);
    ``flow_count`` when ``analysis.flows`` holds only some of the flows. The
    secrets and their counts, which may be many, come as iterators of
    encoded lines, a chunk at a time (``_in_chunks``)."""
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
        "secrets": _in_chunks(analysis.secrets_raw() if show_payload else analysis.secrets,
                              lambda part: secret_records(part, show_payload)),
        "secret_counts": _in_chunks(analysis.secret_counts,
                                    lambda part: encoded_records(part, SECRET_COUNT_COLUMNS)),
        "events": event_records(analysis.events),
    }


def _in_chunks(table: pd.DataFrame, to_lines: Callable[[pd.DataFrame], list], chunk: int = CHUNK
               ) -> Iterator[list[bytes]]:
    """The rows of ``table`` as encoded lines, ``chunk`` rows at a time (134 k secrets as dicts at once: ~150 MB)."""
    for start in range(0, len(table), chunk):
        yield [item if isinstance(item, bytes) else json_bytes(item) for item in to_lines(table.iloc[start : start + chunk])]


def write_json(analysis: Analysis, handle: IO[str], *, show_payload: bool = False,
               flows: tuple[int, Iterable[pd.DataFrame]] | None = None) -> None:
    """Write the document, a chunk of flows at a time, without building it whole in memory.

    ``flows``: (count, parts in order) of every flow when ``analysis.flows``
    holds only the flows its events and findings are made of (the command
    line streams them from ``ReportSpool``)."""
    count, parts = flows if flows is not None else (None, analysis.flows)
    write = _byte_sink(handle)
    write(b"{")
    for key, value in document_head(analysis, show_payload, count).items():
        write(b'\n "' + key.encode() + b'": ')
        if isinstance(value, list):  # one element at a time: a finding may list 100 k evidence lines
            _write_array(write, ([item if isinstance(item, bytes) else json_bytes(item)] for item in value))
        elif isinstance(value, Iterator):
            _write_array(write, value)
        else:
            write(json_bytes(value))
        write(b",")
    write(b'\n "flows": ')
    _write_array(write, flow_chunks(parts, analysis.evidence))
    write(b"\n}\n")


def _byte_sink(handle: IO[str]) -> Callable[[bytes], object]:
    """Where the encoded document goes: straight into the handle's byte buffer
    when it writes UTF-8 (the flows are not decoded to be encoded again),
    else through the text handle."""
    buffer = getattr(handle, "buffer", None)
    if buffer is not None and codecs.lookup(getattr(handle, "encoding", None) or "ascii").name == "utf-8":
        handle.flush()
        return buffer.write
    return lambda data: handle.write(data.decode())


def _write_array(write: Callable[[bytes], object], chunks: Iterable[list[bytes]]) -> None:
    """A JSON array of encoded elements, one per line."""
    sep = b"[\n  "
    for lines in chunks:
        if lines:
            write(sep)
            write(b",\n  ".join(lines))
            sep = b",\n  "
    write(b"[]" if sep == b"[\n  " else b"\n ]")


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
                        **{k: count for k, (dtype, _doc) in INPUT_COLUMNS.items() if dtype == "int64"},
                        **{k: {"type": ["integer", "null"], "minimum": 0}  # a live capture's, null: unknown
                           for k, (dtype, _doc) in INPUT_COLUMNS.items() if dtype == "Int64"},
                        "end": {"enum": ["", *CAPTURE_ENDS]},
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
                           for key in [*_FINDING_LISTS, *(k for k in FINDING_COLUMNS if k in LIST_COLUMNS)]
                           if key != "risks"},
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
                        "uids": {"type": "array", "items": {"type": "string"}, "description": EVENT_COLUMNS["uids"][1]},
                        "channels": {"type": "string", "description": "the kinds of flows seen, comma-separated, "
                                                                      "e.g. 'main, 2 multifd, nbd, libvirtd'"},
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
