"""Classification: randomness statistics per direction, then verdicts; protocol
evidence (``evidence.py``) then overrides what framing proves."""

from __future__ import annotations

import numpy as np
import pandas as pd

from inspector.classify.statistics import statistics_columns, window_columns
from inspector.classify.verdicts import direction_verdict_columns, flow_verdicts
from inspector.schema import VERDICTS, WINDOW_LABELS
from inspector.tables import strings

__all__ = ["classify_columns"]

_ROLES = pd.CategoricalDtype(["orig", "resp"])
_VERDICTS = pd.CategoricalDtype(VERDICTS)
_LABELS = pd.CategoricalDtype(WINDOW_LABELS)
_ROLE_COLUMNS = ("entropy", "chi2", "printable", "analysed_bytes", "windows", "covered_bytes")


def classify_columns(uids: np.ndarray, orig_slot: np.ndarray, resp_slot: np.ndarray,
                     windows: np.ndarray, slot_state: np.ndarray) -> tuple[dict[str, object], pd.DataFrame]:
    """The verdict and statistics columns of the flows named by ``uids``, as
    ready arrays (the flows table is built from them at once: every pandas
    step costs on each close), and the windows table. ``windows`` and
    ``slot_state`` are those of ``FlowState``."""
    labelled = window_columns(windows)
    stat = statistics_columns(labelled, slot_state)
    direction = direction_verdict_columns(stat)
    orig, resp = ({name: v[slot] for name, v in direction.items()} for slot in (orig_slot, resp_slot))
    orig_stats, resp_stats = ({name: v[slot] for name, v in stat.items()} for slot in (orig_slot, resp_slot))
    combined = flow_verdicts(orig, resp, orig_stats, resp_stats)
    reason = np.empty(len(uids), dtype=object)
    reason[:] = combined["reason"]
    out: dict[str, object] = {
        "verdict": pd.Categorical.from_codes(combined["verdict"], dtype=_VERDICTS),
        "confidence": combined["confidence"],
        "reason": reason,
    }
    for role, v, st in (("orig", orig, orig_stats), ("resp", resp, resp_stats)):
        out[f"{role}_verdict"] = pd.Categorical.from_codes(v["verdict"], dtype=_VERDICTS)
        out.update({f"{role}_{name}": st[name] for name in _ROLE_COLUMNS})
    return out, _windows_table(labelled, uids, orig_slot, resp_slot)


def _windows_table(labelled: dict[str, np.ndarray], uids: np.ndarray, orig_slot: np.ndarray,
                   resp_slot: np.ndarray) -> pd.DataFrame:
    """The windows (``window_columns``), keyed by flow uid and role instead
    of internal slots, sorted by uid, direction and window."""
    slot_flow = np.empty(2 * len(uids), dtype=np.int64)
    slot_role = np.empty(2 * len(uids), dtype=np.int8)
    slot_flow[orig_slot] = slot_flow[resp_slot] = np.arange(len(uids))
    slot_role[orig_slot], slot_role[resp_slot] = 0, 1
    flow_rank = np.unique(np.asarray(uids, dtype=str), return_inverse=True)[1].ravel()  # uid order, ties equal
    slot = labelled["slot"]
    uid = np.asarray(uids, dtype=object)[slot_flow[slot]]
    role = slot_role[slot]
    window = labelled["window"]
    order = np.lexsort((window, role, flow_rank[slot_flow[slot]]))
    return pd.DataFrame({
        "uid": strings(uid[order]),
        "direction": pd.Categorical.from_codes(role[order], dtype=_ROLES),
        "window": window[order],
        **{name: labelled[name][order] for name in ("bytes", "entropy", "chi2", "printable")},
        "label": pd.Categorical.from_codes(labelled["label"][order], dtype=_LABELS),
    })
