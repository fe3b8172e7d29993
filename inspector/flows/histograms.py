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

BYTE_HISTOGRAM_COLUMNS: dict[str, tuple[str, str]] = {
    "uid": ("string", "flow id (joins flows.uid); directions of watched flows longer than 1 MiB only"),
    "direction": ("string", "orig or resp"),
    "byte": ("int64", "byte value 0-255"),
    "count": ("int64", "occurrences in the reassembled probe regions of that direction (16 KiB at 1, 2, 4 MiB ...)"),
}


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

    def frame(self, uids: np.ndarray, orig_slot: np.ndarray) -> pd.DataFrame:
        """Tidy table (``BYTE_HISTOGRAM_COLUMNS``): 256 rows per kept flow direction.

        ``uids[i]`` and ``orig_slot[i]`` belong to flow-table id ``i``."""
        slots = sorted(self.counts)
        n = len(slots)
        frame = pd.DataFrame({
            "uid": pd.array(np.repeat([uids[s // 2] for s in slots], 256), dtype="string"),
            "direction": pd.array(np.repeat(["orig" if s == orig_slot[s // 2] else "resp" for s in slots], 256),
                                  dtype="string"),
            "byte": np.tile(np.arange(256, dtype=np.int64), n),
            "count": np.concatenate([self.counts[s] for s in slots]) if n else np.zeros(0, dtype=np.int64),
        })
        return frame
