"""The tables of an analysis: their documented dtypes, in one place.

Every table an ``Analysis`` holds is cast here, whether it was just computed
or loaded back from an export, so a notebook sees the same dtypes either
way: UInt16 ports, categorical roles, verdicts, protocols and severities,
UTC datetimes, timedeltas, and the full set of columns even when a table has
no rows.
"""

from __future__ import annotations

import pandas as pd

from inspector.classify.statistics import WINDOW_LABELS
from inspector.classify.verdicts import VERDICTS
from inspector.events import EVENT_COLUMNS, PROTECTIONS
from inspector.findings.schema import FINDING_COLUMNS, SECRET_COLUMNS, SECRET_COUNT_COLUMNS, SEVERITIES
from inspector.flows.histograms import BYTE_HISTOGRAM_COLUMNS
from inspector.flows.schema import CLOSED_BY, EVIDENCE_COLUMNS, FLOW_COLUMNS, WINDOW_COLUMNS
from inspector.watch import ROLES

Columns = dict[str, tuple[str, str]]

INPUT_COLUMNS: Columns = {
    "file": ("string", "the capture file as given"),
    "format": ("string", "pcap or pcapng, with .gz when gzip'd"),
    "linktypes": ("string", "link types seen, comma-separated"),
    "packets": ("int64", "records read"),
    "captured_bytes": ("int64", "bytes captured"),
    "wire_bytes": ("int64", "bytes on the wire"),
    "truncated_packets": ("int64", "records captured shorter than on the wire (snaplen)"),
    "non_ip_packets": ("int64", "records that carry no IP packet"),
    "anomalies": ("int64", "anomalies counted in this file (see the anomalies table)"),
}
ANOMALY_COLUMNS: Columns = {
    "file": ("string", "the capture file"),
    "kind": ("string", "anomaly kind (see docs/schema.md)"),
    "count": ("int64", "how many times"),
    "detail": ("string", "what was seen"),
}

SCHEMAS: dict[str, Columns] = {
    "flows": FLOW_COLUMNS, "events": EVENT_COLUMNS, "findings": FINDING_COLUMNS, "secrets": SECRET_COLUMNS,
    "secret_counts": SECRET_COUNT_COLUMNS, "evidence": EVIDENCE_COLUMNS, "windows": WINDOW_COLUMNS,
    "byte_histograms": BYTE_HISTOGRAM_COLUMNS, "inputs": INPUT_COLUMNS, "anomalies": ANOMALY_COLUMNS,
}
"""Table name -> columns (dtype, meaning), in the order reports list them."""

PROTOCOLS = ("", "qemu-migration", "qemu-multifd", "libvirt-rpc", "nbd", "ssh", "tls", "http", "amqp", "mysql",
             "rfb", "spice", "redis", "memcached", "ovsdb")
"""Values of flows.protocol ('' when no detector recognised the flow)."""

CATEGORIES: dict[str, tuple[str, ...]] = {
    "watch": ROLES, "verdict": VERDICTS, "orig_verdict": VERDICTS, "resp_verdict": VERDICTS,
    "protocol": PROTOCOLS, "severity": SEVERITIES, "direction": ("orig", "resp"),
    "label": WINDOW_LABELS, "protection": PROTECTIONS, "closed_by": CLOSED_BY,
}
"""Categories of the columns whose dtype is 'category'."""

MISSING_WHEN_EMPTY = frozenset(c for c in FLOW_COLUMNS if c.startswith(("tls_", "ssh_")))
"""Text columns where missing (no handshake) differs from empty; CSV writes
both as an empty cell, so loading a CSV export maps empty back to missing."""


def typed(frame: pd.DataFrame, columns: Columns) -> pd.DataFrame:
    """``frame`` with exactly ``columns``, in order, cast to their dtypes
    (missing columns are added empty)."""
    out = pd.DataFrame(index=frame.index)
    for name, (dtype, _doc) in columns.items():
        values = frame[name] if name in frame.columns else pd.Series([None] * len(frame), index=frame.index)
        out[name] = _cast(values, dtype, CATEGORIES.get(name))
    return out


def empty_frame(columns: Columns) -> pd.DataFrame:
    """A table with no rows and the documented dtypes."""
    return typed(pd.DataFrame(), columns)


def _cast(values: pd.Series, dtype: str, categories: tuple[str, ...] | None) -> pd.Series:
    if dtype == "category":
        return pd.Series(pd.Categorical(values.astype(object).where(values.notna(), None),
                                        categories=_categories(values, categories)), index=values.index)
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


def _categories(values: pd.Series, known: tuple[str, ...] | None) -> list[str]:
    """The documented categories, plus any value a newer version wrote."""
    seen = [v for v in pd.unique(values.dropna().astype(str)) if not known or v not in known]
    return list(known or ()) + sorted(seen)
