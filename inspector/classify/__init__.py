"""Classification: randomness statistics per direction, then verdicts; protocol
evidence (``evidence.py``) then overrides what framing proves."""

from __future__ import annotations

import numpy as np
import pandas as pd

from inspector.classify.statistics import direction_statistics, label_windows
from inspector.classify.verdicts import direction_verdicts, flow_verdicts
from inspector.schema import VERDICTS

__all__ = ["classify_flows"]


def classify_flows(flows: pd.DataFrame, orig_slot: np.ndarray, resp_slot: np.ndarray,
                   windows: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add verdict and statistics columns to ``flows``; return it and the windows table."""
    labelled = label_windows(windows)
    stats = direction_statistics(labelled, 2 * len(flows))
    verdicts = direction_verdicts(stats)
    orig_stats, resp_stats = stats.iloc[orig_slot], stats.iloc[resp_slot]
    orig_v, resp_v = verdicts.iloc[orig_slot], verdicts.iloc[resp_slot]
    combined = flow_verdicts(orig_v, resp_v, orig_stats, resp_stats)
    out = flows.copy()
    out["verdict"] = pd.Categorical.from_codes(combined["verdict"].to_numpy(), VERDICTS)
    out["confidence"] = combined["confidence"].to_numpy()
    out["reason"] = combined["reason"].to_numpy()
    for role, st, v in (("orig", orig_stats, orig_v), ("resp", resp_stats, resp_v)):
        out[f"{role}_verdict"] = pd.Categorical.from_codes(v["verdict"].to_numpy(), VERDICTS)
        out[f"{role}_entropy"] = st["entropy"].to_numpy()
        out[f"{role}_chi2"] = st["chi2"].to_numpy()
        out[f"{role}_printable"] = st["printable"].to_numpy()
        out[f"{role}_analysed_bytes"] = st["analysed_bytes"].to_numpy()
        out[f"{role}_windows"] = st["windows"].to_numpy()
    # The windows table, keyed by flow uid and role instead of internal slots.
    slot_uid = np.empty(2 * len(flows), dtype=object)
    slot_role = np.empty(2 * len(flows), dtype=object)
    slot_uid[orig_slot], slot_uid[resp_slot] = flows["uid"].to_numpy(), flows["uid"].to_numpy()
    slot_role[orig_slot], slot_role[resp_slot] = "orig", "resp"
    win = labelled.drop(columns="slot")
    win.insert(0, "uid", slot_uid[labelled["slot"].to_numpy()])
    win.insert(1, "direction", pd.Categorical(slot_role[labelled["slot"].to_numpy()], ["orig", "resp"]))
    return out, win.sort_values(["uid", "direction", "window"], kind="stable").reset_index(drop=True)
