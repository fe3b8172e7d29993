"""Compare a reference snapshot before and after ``make_reference.py`` rewrote it.

    cp tests/reference/*.parquet /tmp/old-reference/
    python tests/reference/make_reference.py
    python tests/reference/compare_reference.py /tmp/old-reference tests/reference

Every table, column, dtype and value must be the same (rows compared sorted,
JSON text parsed), except what a change meant to alter, which it lists:
list columns (the old comma-joined text split equals the new list),
categories (their order and ordered flag, e.g. severity) and rows added to a
table whose old rows are all still there. Exits 1 on any other difference.
Restore the tables it finds identical from git, so the commit holds only the
deliberate changes.
"""
import json, sys
from pathlib import Path
import numpy as np
import pandas as pd
from inspector.schema import LIST_COLUMNS, SCHEMAS

old_dir, new_dir = Path(sys.argv[1]), Path(sys.argv[2])
problems = 0
for table in SCHEMAS:
    old = pd.read_parquet(old_dir / f"{table}.parquet")
    new = pd.read_parquet(new_dir / f"{table}.parquet")
    if "fields" in old.columns:  # JSON text: compare the parsed values
        old["fields"] = [json.dumps(json.loads(v), sort_keys=True) for v in old["fields"]]
        new["fields"] = [json.dumps(json.loads(v), sort_keys=True) for v in new["fields"]]
    # row order is not part of the contract (tests/test_reference_tables.py sorts too)
    key = lambda f: f.astype(str).apply(lambda c: c.map(str)).sort_values(list(f.columns)).index
    old, new = old.loc[key(old)].reset_index(drop=True), new.loc[key(new)].reset_index(drop=True)
    deliberate = []
    if list(old.columns) != list(new.columns):
        print(table, "COLUMNS differ", list(old.columns), list(new.columns)); problems += 1; continue
    if len(old) != len(new):  # rows added by a deliberate change: every old row must still be there
        text = lambda f: f.astype(str).apply(lambda c: c.map(str))
        merged = text(old).merge(text(new), how="right", indicator=True)
        gone = len(old) - int((merged["_merge"] == "both").sum())
        kept = "all kept unchanged" if not gone else f"{gone} GONE"
        print(f"{table}: {len(old)} -> {len(new)} rows; old rows {kept}; {len(new) - len(old) + gone} added (review them)")
        problems += bool(gone)
        continue
    for col in old.columns:
        o, n = old[col], new[col]
        if col in LIST_COLUMNS and table in ("events", "findings"):
            was_text = all(isinstance(v, str) for v in o)
            split = [[p.strip() for p in v.split(",") if p.strip()] if isinstance(v, str) else list(v) for v in o]
            same = split == [list(v) for v in n]
            if was_text or not same:
                deliberate.append(f"{col}: text -> list ({'equal items' if same else 'ITEMS DIFFER'})")
            problems += not same
            continue
        if str(o.dtype) != str(n.dtype):
            print(table, col, "DTYPE", o.dtype, n.dtype); problems += 1
        if isinstance(o.dtype, pd.CategoricalDtype):
            if list(o.cat.categories) != list(n.cat.categories) or o.cat.ordered != n.cat.ordered:
                deliberate.append(f"{col}: categories {list(o.cat.categories)} ordered={o.cat.ordered} -> "
                                  f"{list(n.cat.categories)} ordered={n.cat.ordered}")
            o, n = o.astype(object), n.astype(object)
        a = [repr(v.tolist()) if isinstance(v, np.ndarray) else repr(v) for v in o.astype(object)]
        b = [repr(v.tolist()) if isinstance(v, np.ndarray) else repr(v) for v in n.astype(object)]
        if a != b:
            diff = sum(x != y for x, y in zip(a, b))
            print(table, col, f"VALUES differ in {diff} rows, e.g.", next((x, y) for x, y in zip(a, b) if x != y))
            problems += 1
    print(f"{table}: {len(new)} rows, {len(new.columns)} columns compared;",
          "deliberate: " + "; ".join(deliberate) if deliberate else "identical")
print("PROBLEMS:", problems)
sys.exit(1 if problems else 0)
