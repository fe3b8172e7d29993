"""Randomness statistics per flow direction, aggregated from byte windows.

Each direction's payload is histogrammed in windows (``flows.kernels``: an
8 KiB head, then 64 KiB windows, sampled logarithmically past 1 MiB). Every
window is labelled on its own, then a direction is summarised by
byte-weighted shares of those labels, so a few odd windows (a handshake, a
page of random guest memory) cannot swing the verdict.

Window labels
-------------
``random``      chi-square consistent with uniform bytes: z = (chi2 - 255) /
                sqrt(510) below ``Z_RANDOM``. Under uniform bytes chi2 has
                mean 255 and variance 510 (1 - 1/n) for any sample size n, so
                the test is valid on small windows too.
``compressed``  not random, but the bias per byte is small: the collision
                entropy estimate H2 = 8 - log2(1 + (chi2 - 255) / n) is at
                least ``H2_COMPRESSED``. zlib/zstd data scores H2 ~7.93-7.99.
``plain``       not random and strongly biased: text, code, headers, zeros.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from inspector.flows import kernels as K
from inspector.schema import WINDOW_LABELS

Z_RANDOM = 5.0  # one-sided z on chi2(255); ciphertext windows sit at ~0 +- 1
H2_COMPRESSED = 7.0  # collision entropy bound between compressed and plain


def label_windows(windows: np.ndarray) -> pd.DataFrame:
    """One row per finished window with its statistics and label."""
    n = windows[:, K.WR_BYTES]
    chi2 = windows[:, K.WR_CHI2]
    z = (chi2 - 255.0) / np.sqrt(510.0)
    excess = np.maximum(chi2 - 255.0, 0.0) / np.maximum(n, 1.0)
    h2 = 8.0 - np.log2(1.0 + excess)
    label = np.where(z < Z_RANDOM, 0, np.where(h2 >= H2_COMPRESSED, 1, 2))
    return pd.DataFrame(
        {
            "slot": windows[:, K.WR_SLOT].astype(np.int64),
            "window": windows[:, K.WR_INDEX].astype(np.int64),
            "bytes": n.astype(np.int64),
            "entropy": windows[:, K.WR_ENTROPY],
            "chi2": chi2,
            "printable": windows[:, K.WR_PRINTABLE],
            "label": pd.Categorical.from_codes(label, WINDOW_LABELS),
        }
    )


def direction_statistics(windows: pd.DataFrame, n_slots: int) -> pd.DataFrame:
    """Summarise windows per direction (slot = 2 * flow + direction).

    Columns: ``analysed_bytes``, ``windows``, ``entropy`` and ``chi2`` (medians
    over windows), ``printable`` (byte-weighted), ``head_*`` (window 0),
    ``body_bytes`` and ``body_{random,compressed,plain}`` (bytes per label in
    windows after the head).
    """
    out = pd.DataFrame(index=pd.RangeIndex(n_slots, name="slot"))
    if windows.empty:
        for col in ("analysed_bytes", "windows", "body_bytes", "head_bytes",
                    "body_random", "body_compressed", "body_plain"):
            out[col] = 0
        for col in ("entropy", "chi2", "printable", "head_entropy", "head_chi2"):
            out[col] = np.nan
        out["head_label"] = pd.Categorical([None] * n_slots, WINDOW_LABELS)
        return out
    w = windows
    grouped = w.groupby("slot", sort=False)
    out["analysed_bytes"] = grouped["bytes"].sum()
    out["windows"] = grouped.size()
    out["entropy"] = grouped["entropy"].median()
    out["chi2"] = grouped["chi2"].median()
    printable_bytes = (w["printable"] * w["bytes"]).groupby(w["slot"]).sum()
    out["printable"] = printable_bytes / out["analysed_bytes"]
    head = w[w["window"] == 0].groupby("slot", sort=False).agg(
        head_bytes=("bytes", "sum"), head_entropy=("entropy", "first"),
        head_chi2=("chi2", "first"), head_label=("label", "first"),
    )
    out = out.join(head)
    body = w[w["window"] > 0]
    by_label = body.pivot_table(index="slot", columns="label", values="bytes", aggfunc="sum",
                                fill_value=0, observed=False)
    for label in WINDOW_LABELS:
        out["body_" + label] = by_label[label] if label in by_label else 0
    for col in ("analysed_bytes", "windows", "head_bytes", "body_random", "body_compressed", "body_plain"):
        out[col] = out[col].fillna(0).astype(np.int64)
    out["body_bytes"] = out["body_random"] + out["body_compressed"] + out["body_plain"]
    return out
