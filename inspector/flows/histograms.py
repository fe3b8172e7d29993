"""Byte-value histograms of bulk watched flows, from the regions already reassembled.

The detectors read each direction's head (16 KiB) and probes further in
(1, 2, 4 MiB ...); counting the probes' byte values costs one ``bincount``
per region and samples the whole stream. Directions of watched flows that
reach the first probe (1 MiB) keep their probes' counts. A direction that
ends between ``HEAD_ONLY_BYTES`` and 1 MiB (a compressed multifd channel
moves 0.5-0.9 MiB) never has a probe: it keeps the counts of its head, so
every bulk channel of a migration has a histogram. Heads are counted only
when full (16 KiB) and held at 256 uint16 per direction until the flow ends:
a capture of many short flows keeps none.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from inspector.flows.kernels import REGION_BYTES
from inspector.flows.table import Region

HEAD_ONLY_BYTES = 256 * 1024
"""Payload a direction without a probe must move for its head histogram to be
kept: bulk data (4 statistics windows), not a control exchange."""


class RegionHistograms:
    """Counts byte values of the regions of the flows ``keep(flow)`` selects."""

    def __init__(self, keep: Callable[[int], bool]) -> None:
        self.keep = keep
        self.counts: dict[int, np.ndarray] = {}  # slot -> 256 counts of its probes
        self.heads: dict[int, np.ndarray] = {}  # slot -> 256 counts of its full head (uint16: <= 16 KiB)

    def on_region(self, region: Region) -> None:
        if region.index == 0:  # every flow has a head; only a full one can belong to a bulk direction
            if len(region.data) == REGION_BYTES and not region.islands and self.keep(region.slot // 2):
                self.heads[region.slot] = np.bincount(np.frombuffer(region.data, dtype=np.uint8),
                                                      minlength=256).astype(np.uint16)
            return
        if region.slot not in self.counts:
            if not self.keep(region.slot // 2):
                return
            self.counts[region.slot] = np.zeros(256, dtype=np.int64)
        counts = self.counts[region.slot]
        for data in (region.data, *(piece for _, piece in region.islands)):
            counts += np.bincount(np.frombuffer(data, dtype=np.uint8), minlength=256)

    def take(self, fids: list[int], uids: np.ndarray, orig_slot: np.ndarray, sent: np.ndarray, *,
             ended: bool = True) -> pd.DataFrame:
        """Tidy table (``BYTE_HISTOGRAM_COLUMNS``) of these flows: 256 rows
        per kept direction; ``ended`` drops their counts (ids are reused).

        ``uids[i]`` and ``orig_slot[i]`` (a slot of the flows numbered by
        their position in ``fids``) belong to flow ``fids[i]``; ``sent[2 * i
        + d]`` is the payload direction ``d`` of that flow moved."""
        rows, counts = [], []
        if self.counts or self.heads:
            for i, flow in enumerate(fids):
                for d in (0, 1):
                    slot = 2 * flow + d
                    probes = self.counts.pop(slot, None) if ended else self.counts.get(slot)
                    head = self.heads.pop(slot, None) if ended else self.heads.get(slot)
                    if probes is not None:
                        rows.append((i, d))
                        counts.append(probes)
                    elif head is not None and sent[2 * i + d] >= HEAD_ONLY_BYTES:
                        rows.append((i, d))
                        counts.append(head.astype(np.int64))
        if not rows:
            return _NONE.copy()
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
