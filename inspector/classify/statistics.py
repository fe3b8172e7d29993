"""Randomness statistics per flow direction, aggregated from byte windows.

Each direction's payload is histogrammed in windows (``flows.kernels``: an
8 KiB head, then 64 KiB windows). Every window is labelled as it finishes
(``flows.randomness``: random, compressed or plain), and so is every 4 KiB
block after the head; a direction is summarised by byte-weighted shares of
those labels over its whole captured stream, so a few odd windows (a
handshake, a page of random guest memory) cannot swing the verdict, and a
sender cannot place cleartext where the statistics do not look. Only the
windows sampled logarithmically past 1 MiB are rows of the windows table;
the medians (entropy, chi2) and the printable share are over those.
"""

from __future__ import annotations

import numpy as np

from inspector.flows import kernels as K
from inspector.flows import randomness
from inspector.jit import njit
from inspector.schema import WINDOW_LABELS


def window_columns(windows: np.ndarray) -> dict[str, np.ndarray]:
    """One entry per finished window: its statistics and label (codes into ``WINDOW_LABELS``)."""
    n = windows[:, K.WR_BYTES]
    chi2 = windows[:, K.WR_CHI2]
    return {
        "slot": windows[:, K.WR_SLOT].astype(np.int64),
        "window": windows[:, K.WR_INDEX].astype(np.int64),
        "bytes": n.astype(np.int64),
        "entropy": windows[:, K.WR_ENTROPY],
        "chi2": chi2,
        "printable": windows[:, K.WR_PRINTABLE],
        "label": randomness.labels(n, chi2),
    }


@njit(cache=True)
def _sums(slot, window, nbytes, printable, n_slots):
    """Per slot: analysed bytes, windows, printable bytes (Kahan-summed in row
    order, as pandas' groupby sum does), head bytes and the head's first row."""
    analysed = np.zeros(n_slots, dtype=np.int64)
    count = np.zeros(n_slots, dtype=np.int64)
    printable_sum = np.zeros(n_slots)
    compensation = np.zeros(n_slots)
    head_bytes = np.zeros(n_slots, dtype=np.int64)
    head_row = np.full(n_slots, -1, dtype=np.int64)
    for i in range(slot.size):
        s = slot[i]
        analysed[s] += nbytes[i]
        count[s] += 1
        y = printable[i] * nbytes[i] - compensation[s]
        t = printable_sum[s] + y
        compensation[s] = t - printable_sum[s] - y
        printable_sum[s] = t
        if window[i] == 0:
            head_bytes[s] += nbytes[i]
            if head_row[s] < 0:
                head_row[s] = i
    return analysed, count, printable_sum, head_bytes, head_row


def _medians(slot: np.ndarray, values: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Median of ``values`` per slot (NaN for none), as pandas computes it:
    the middle value, or the mean of the two middle ones."""
    ordered = values[np.lexsort((values, slot))]
    start = np.concatenate(([0], np.cumsum(count)[:-1]))
    has = count > 0
    lo = start[has] + (count[has] - 1) // 2
    hi = start[has] + count[has] // 2
    out = np.full(count.size, np.nan)
    out[has] = (ordered[lo] + ordered[hi]) / 2
    return out


def statistics_columns(windows: dict[str, np.ndarray], slot_state: np.ndarray) -> dict[str, np.ndarray]:
    """Summarise each direction (slot = 2 * flow + direction) from its sampled
    windows (``window_columns``) and the counters of all its windows
    (``slot_state``: rows of ``FlowState.slot``).

    Columns: ``analysed_bytes``, ``windows``, ``entropy`` and ``chi2`` (medians
    over sampled windows), ``printable`` (byte-weighted), ``head_*`` (window 0;
    ``head_label``: a code into ``WINDOW_LABELS``, -1 without a head),
    ``covered_bytes`` (captured bytes in any window), ``body_bytes`` and
    ``body_{random,compressed,plain}`` (bytes per label in every window after
    the head) and ``block_plain`` (bytes of plain 4 KiB blocks after the
    head). Arrays from one compiled pass: no groupby and no DataFrame, so a
    sweep of a few flows costs little.
    """
    n_slots = len(slot_state)
    slot = windows["slot"].astype(np.int64, copy=False)
    nbytes = windows["bytes"].astype(np.int64, copy=False)
    label = windows["label"].astype(np.int64)
    analysed, count, printable_sum, head_bytes, head_row = _sums(
        slot, windows["window"].astype(np.int64, copy=False), nbytes,
        windows["printable"].astype(np.float64, copy=False), n_slots)
    entropy = windows["entropy"].astype(np.float64, copy=False)
    chi2 = windows["chi2"].astype(np.float64, copy=False)
    has_head = head_row >= 0
    head = np.where(has_head, head_row, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        printable_share = np.where(count > 0, printable_sum / analysed, np.nan)
    out = {
        "analysed_bytes": analysed,
        "windows": count,
        "entropy": _medians(slot, entropy, count),
        "chi2": _medians(slot, chi2, count),
        "printable": printable_share,
        "head_bytes": head_bytes,
        "head_entropy": np.where(has_head, entropy[head] if entropy.size else np.nan, np.nan),
        "head_chi2": np.where(has_head, chi2[head] if chi2.size else np.nan, np.nan),
        "head_label": np.where(has_head, label[head] if label.size else -1, -1).astype(np.int8),
        "covered_bytes": slot_state[:, K.SL_COVERED],
        **{"body_" + name: slot_state[:, K.SL_BODY_RANDOM + k] for k, name in enumerate(WINDOW_LABELS)},
        "block_plain": slot_state[:, K.SL_BLOCK_PLAIN],
    }
    out["body_bytes"] = out["body_random"] + out["body_compressed"] + out["body_plain"]
    return out
