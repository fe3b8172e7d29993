"""A partition of the flows by their symmetric key, so workers share a capture.

``kernels.flow_keys`` gives both directions of a flow (and the inner flow of
a tunnel, whatever tunnel carried it) the same 64-bit key; its high bits
pick one of ``count`` partitions. A worker reads every packet of the
capture and keeps those of its partition's flows: flows never straddle two
workers, so their tables come out exactly as one process makes them and
merge by concatenation (``inspector.parallel``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inspector.capture.reader import PacketBatch

_SHIFT = np.uint64(32)  # the key's high word: its mixer spreads every input bit there


def partition_of(keys: np.ndarray, count: int) -> np.ndarray:
    """The partition (0 .. count-1) of each flow key (``kernels.flow_keys``;
    undecoded packets have key 0, so partition 0)."""
    return ((keys >> _SHIFT) % np.uint64(count)).astype(np.int64)


@dataclass(frozen=True)
class Partition:
    """Partition ``index`` of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"partition {self.index} of {self.count}")

    def own(self, batch: PacketBatch, keys: np.ndarray,
            dirs: np.ndarray) -> tuple[PacketBatch, np.ndarray, np.ndarray]:
        """The packets of ``batch`` in this partition, with their keys and
        directions (payload offsets still point into the same buffer)."""
        if self.count == 1:
            return batch, keys, dirs
        mine = partition_of(keys, self.count) == self.index
        return PacketBatch(batch.buf, batch.fields[:, mine], batch.addrs[:, mine]), keys[mine], dirs[mine]
