"""Each meter fills exactly the tables and flows columns it declares."""

from __future__ import annotations

from pathlib import Path

import inspector
from inspector.analysis import analyze_readers
from inspector.capture.reader import CaptureReader
from inspector.meters import Part, default_meters
from inspector.schema import FLOW_COLUMNS, SCHEMAS

CAPTURES = Path(__file__).resolve().parents[1] / "captures"


def test_meters_fill_what_they_declare():
    meters = default_meters()
    filled: dict[str, tuple[set, set]] = {}
    for meter in meters:
        def spy(part: Part, take=meter.take, name=type(meter).__name__) -> None:
            tables, columns = set(part.tables), set(part.flows.columns)
            take(part)
            got = filled.setdefault(name, (set(), set()))
            got[0].update(set(part.tables) - tables)
            got[1].update(set(part.flows.columns) - columns)
        meter.take = spy
    paths = [CAPTURES / "qemu-plain.pcap.gz", CAPTURES / "http-api.pcap"]
    analyze_readers([CaptureReader(p) for p in paths], watch=inspector.Watchlist.default(),
                    names=[str(p) for p in paths], meters=meters)
    for meter in meters:
        tables, new_columns = filled[type(meter).__name__]
        assert tables == set(meter.tables), type(meter).__name__
        assert set(meter.tables) <= set(SCHEMAS) and set(meter.flow_columns) <= set(FLOW_COLUMNS)
        assert new_columns <= set(meter.flow_columns), (type(meter).__name__, new_columns)
