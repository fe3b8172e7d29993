"""Byte-value histograms of bulk watched flows, from the regions already reassembled.

The detectors read each direction's head (16 KiB) and probes further in
(1, 2, 4 MiB ...); counting the probes' byte values costs one ``bincount``
per region and samples the whole stream. Only directions of watched flows
that reach the first probe (1 MiB) are kept, 256 counts each: a capture of
many short flows keeps none, and the bulk flows a reviewer looks at (a
migration, a tunnel) all have one.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from inspector.flows.table import Region


class RegionHistograms:
    """Counts byte values of the regions of the flows ``keep(flow)`` selects."""

    def __init__(self, keep: Callable[[int], bool]) -> None:
        self.keep = keep
        self.counts: dict[int, np.ndarray] = {}  # slot -> 256 counts

    def on_region(self, region: Region) -> None:
        if region.index == 0:  # heads: every flow has one; only probes mark a bulk flow
            return
        if region.slot not in self.counts:
            if not self.keep(region.slot // 2):
                return
            self.counts[region.slot] = np.zeros(256, dtype=np.int64)
        counts = self.counts[region.slot]
        for data in (region.data, *(piece for _, piece in region.islands)):
            counts += np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)

    def take(self, fids: list[int], uids: np.ndarray, orig_slot: np.ndarray, *, ended: bool = True) -> pd.DataFrame:
        """Tidy table (``BYTE_HISTOGRAM_COLUMNS``) of these flows: 256 rows
        per kept direction; ``ended`` drops their counts (ids are reused).

        ``uids[i]`` and ``orig_slot[i]`` (a slot of the flows numbered by
        their position in ``fids``) belong to flow ``fids[i]``."""
        rows = [(i, d) for i, flow in enumerate(fids) for d in (0, 1) if 2 * flow + d in self.counts] \
            if self.counts else []
        if not rows:
            return _NONE.copy()
        counts = [self.counts.pop(2 * fids[i] + d) if ended else self.counts[2 * fids[i] + d] for i, d in rows]
        n = len(rows)
        return pd.DataFrame({
            "uid": pd.array(np.repeat(np.array([uids[i] for i, _ in rows], dtype=object), 256), dtype="string"),
            "direction": pd.array(np.repeat(np.array(["orig" if orig_slot[i] == 2 * i + d else "resp"
                                                      for i, d in rows], dtype=object), 256), dtype="string"),
            "byte": np.tile(np.arange(256, dtype=np.int64), n),
            "count": np.concatenate(counts),
        })


_NONE = pd.DataFrame({"uid": pd.array([], dtype="string"), "direction": pd.array([], dtype="string"),
                      "byte": np.zeros(0, dtype=np.int64), "count": np.zeros(0, dtype=np.int64)})
"""The table of no kept direction (most closes): built once."""
