"""Snapshot every table of the analysis of each shipped capture, as the
reference later versions must reproduce (tests/test_reference_tables.py).

Run from the repository root when a change is *meant* to alter results:

    python tests/reference/make_reference.py

Each capture in captures/ (variants included), and all of the main captures
read together as one run, is analysed with the default options; every table
goes to ``tests/reference/TABLE.parquet``, its rows tagged with the
run's name in a ``reference`` column.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

import inspector  # noqa: E402
from inspector.schema import SCHEMAS  # noqa: E402
from inspector.tables import with_json_text  # noqa: E402

CAPTURES = ROOT / "captures"


def runs() -> dict[str, list[Path]]:
    """Reference name -> the capture files analysed together, relative to the root."""
    main = sorted(p for p in CAPTURES.glob("*.pcap*"))
    variants = sorted((CAPTURES / "variants").glob("*.pcap*"))
    out = {p.name.split(".pcap")[0]: [p] for p in main + variants}
    out["all-main"] = main
    return out


def table_of(result: inspector.Analysis, table: str) -> pd.DataFrame:
    """A table as the analysis holds it: the secrets with their payload bytes."""
    return result.secrets_raw() if table == "secrets" else getattr(result, table)


def main() -> None:
    parts: dict[str, list[pd.DataFrame]] = {table: [] for table in SCHEMAS}
    for name, paths in runs().items():
        result = inspector.analyze([p.relative_to(ROOT) for p in paths])
        for table in SCHEMAS:
            frame = table_of(result, table).copy()
            frame.insert(0, "reference", name)
            parts[table].append(frame)
        print(name, len(result.flows), "flows")
    for table, frames in parts.items():
        # dict columns (evidence fields) as JSON text, as the spool and exports hold them
        with_json_text(pd.concat(frames, ignore_index=True)).to_parquet(HERE / f"{table}.parquet", index=False)


if __name__ == "__main__":
    import os
    os.chdir(ROOT)
    main()
