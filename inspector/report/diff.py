"""``inspector diff``: what a remediation changed, finding by finding.

Findings are matched on (rule, host pairs), not on flow uids, which differ
between captures. The same rule on the same hosts twice (two migrations)
pairs up in order, so one fixed migration out of two shows as one fixed.
An info finding is a protection seen ("Live migration is protected by
TLS"): one in BEFORE and gone in AFTER is a regression, never a fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pandas as pd
from rich.console import Console
from rich.text import Text

from inspector.errors import InspectorError
from inspector.schema import SEVERITIES
from inspector.text import inert
from inspector.watch import Watchlist

KEY = ["rule", "hosts"]
SHOWN = ["rule", "severity", "title", "hosts", "summary"]


@dataclass(frozen=True)
class Comparison:
    fixed: pd.DataFrame      # in BEFORE only, a risk
    new: pd.DataFrame        # in AFTER only
    unchanged: pd.DataFrame  # in both (AFTER's row)
    regressed: pd.DataFrame  # in BEFORE only, a protection (info)


def load_findings(path: Path, watch: Watchlist | None = None) -> pd.DataFrame:
    """Findings of a JSON result, or of a capture (analysed now with ``watch``)."""
    try:
        with open(path, "rb") as handle:
            start = handle.read(64).lstrip()
    except OSError as exc:
        raise InspectorError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if start.startswith(b"{"):
        return _json_findings(path)
    from inspector.analysis import analyze

    return analyze(path, watch=watch).findings[SHOWN]


def _json_findings(path: Path) -> pd.DataFrame:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        rows = document["findings"]
        frame = pd.DataFrame([{k: row[k] for k in SHOWN} for row in rows], columns=SHOWN)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InspectorError(f"{path}: not an inspector JSON result with findings "
                             "(write one with `inspector analyze --json`)") from None
    frame["hosts"] = frame["hosts"].map(lambda h: ", ".join(map(str, h)) if isinstance(h, list) else str(h))
    unknown = sorted({str(s) for s in frame["severity"]} - set(SEVERITIES))
    if unknown:
        raise InspectorError(f"{path}: finding severity {unknown[0]!r} is not one of {', '.join(SEVERITIES)}")
    frame = frame.astype({name: str for name in SHOWN})
    # ordered as in an analysis, so --fail-on compares severities, not their spelling
    frame["severity"] = pd.Categorical(frame["severity"], categories=list(SEVERITIES[::-1]), ordered=True)
    return frame


def compare(before: pd.DataFrame, after: pd.DataFrame) -> Comparison:
    old, new = _numbered(before), _numbered(after)
    keys = KEY + ["nth"]
    merged = old.merge(new, on=keys, how="outer", suffixes=("_before", ""), indicator=True)
    pick = {"left_only": "fixed", "right_only": "new", "both": "unchanged"}
    parts = {}
    for side, name in pick.items():
        rows = merged[merged["_merge"] == side]
        columns = {c: (f"{c}_before" if side == "left_only" and c not in KEY else c) for c in SHOWN}
        parts[name] = rows[list(columns.values())].set_axis(SHOWN, axis=1).reset_index(drop=True)
    gone = parts["fixed"]
    lost = gone["severity"] == PROTECTION
    parts["fixed"], parts["regressed"] = gone[~lost].reset_index(drop=True), gone[lost].reset_index(drop=True)
    return Comparison(**parts)


def _numbered(findings: pd.DataFrame) -> pd.DataFrame:
    frame = findings[SHOWN].astype({"severity": str}).reset_index(drop=True)
    return frame.assign(nth=frame.groupby(KEY).cumcount())


PROTECTION = "info"  # the severity of findings that record a protection
STYLE = {"fixed": "green", "new": "bold red", "unchanged": "yellow", "regressed": "bold red"}


def render(comparison: Comparison, console: Console) -> None:
    counts = {name: len(getattr(comparison, name)) for name in STYLE}
    line = Text("findings: ", style="bold")  # the rows' strings come from a handed file: shown inert
    for name, style in STYLE.items():
        line.append(f"{counts[name]} {name}  ", style=style)
    line.rstrip()
    console.print(line)
    for name in STYLE:
        rows = getattr(comparison, name)
        order = rows["severity"].map(SEVERITIES.index).sort_values(kind="stable").index
        for row in rows.loc[order].itertuples(index=False):
            console.print(Text.assemble("  ", (f"{name:<9}", STYLE[name]), inert(f" {row.severity:<8} [{row.rule}] "
                                                                                 f"{row.hosts}: {row.title}")))


def write_json(comparison: Comparison, before: Path, after: Path, handle: IO[str]) -> None:
    document = {"before": str(before), "after": str(after),
                **{name: getattr(comparison, name).to_dict("records") for name in STYLE}}
    json.dump(document, handle, indent=1)
