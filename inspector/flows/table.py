"""The flow table: bidirectional flows built from packet batches.

A flow is keyed direction-agnostically (endpoint A is the lower address and
port). Per-packet work runs in ``kernels.update_flows``; this class owns the
state arrays, grows them, and maps 64-bit keys to flow ids with one dict
lookup per distinct flow in a batch (not per packet).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from inspector.capture import decode as D
from inspector.capture.reader import PacketBatch
from inspector.flows import kernels as K


@dataclass
class FlowState:
    """Raw flow state at the end of the input, for the next stage.

    ``flow``/``flow_addr``/``tunnel_addr``/``slot`` have one row per flow
    (per direction for ``slot``: row ``2*flow + dir``); columns are named in
    ``kernels``. ``tunnel_addr`` holds the outer source and destination (hi,
    lo words) of the tunnel the flow's first packet came in, if any.
    ``windows`` has one row per finished window, see ``kernels.WR_*``.
    """

    flow: np.ndarray
    flow_addr: np.ndarray
    tunnel_addr: np.ndarray
    slot: np.ndarray
    windows: np.ndarray
    input_index: np.ndarray  # which input file first showed the flow
    hash_collisions: int


def _grow(arr: np.ndarray, need: int, fill: int | float = 0) -> np.ndarray:
    """Return ``arr`` with at least ``need`` rows (doubling)."""
    cap = arr.shape[0]
    if need <= cap:
        return arr
    out = np.full((max(need, 2 * cap),) + arr.shape[1:], fill, dtype=arr.dtype)
    out[:cap] = arr
    return out


MAX_ISLANDS = 16
"""Islands handed over per region; a snaplen-cut stream has one per segment."""
MIN_ISLAND = 8


@dataclass(frozen=True)
class Region:
    """A reassembled region of one direction's stream.

    ``data`` is the contiguous part from ``offset``. When a hole follows it
    (lost packets, or a snaplen that cut every segment), the bytes seen beyond
    the hole come as ``islands``: (stream offset, bytes) runs in stream order,
    so detectors can still read headers that start a segment.
    """

    slot: int             # 2 * flow + direction (0: endpoint A sent)
    index: int            # 0: the head, then probes further in
    offset: int           # stream offset of data[0]
    data: bytes
    at_start: bool        # data starts at the true stream start
    islands: tuple[tuple[int, bytes], ...] = ()


RegionHandler = Callable[[Region], None]


class FlowTable:
    """Accumulates flows over any number of batches and input files.

    ``on_region`` receives each reassembled region of a direction (its head,
    then probes further in) as soon as it is complete or the flow ends, so
    region buffers live only while a region is being filled.
    """

    def __init__(self, on_region: RegionHandler | None = None, initial_flows: int = 1024,
                 initial_rows: int = 256) -> None:
        self.on_region = on_region
        self.index: dict[int, int] = {}
        self.n_flows = 0
        self.flow = np.full((initial_flows, K.N_FLOW_COLS), -1, dtype=np.int64)
        self.flow_addr = np.zeros((initial_flows, 4), dtype=np.uint64)
        self.tunnel_addr = np.zeros((initial_flows, 4), dtype=np.uint64)
        self.input_index = np.zeros(initial_flows, dtype=np.int64)
        self.slot = self._empty_slots(2 * initial_flows)
        self.counters = np.zeros(K.N_COUNTERS, dtype=np.int64)
        self.hist = np.zeros((initial_rows, 256), dtype=np.uint32)
        self.free_rows = np.arange(initial_rows - 1, -1, -1, dtype=np.int64)
        self.counters[K.CT_FREE_HIST] = initial_rows
        self.heads = np.zeros((initial_rows, K.REGION_BYTES), dtype=np.uint8)
        self.head_cov = np.zeros((initial_rows, K.REGION_BYTES // 8), dtype=np.uint8)
        self.head_free = np.arange(initial_rows - 1, -1, -1, dtype=np.int64)
        self.counters[K.CT_FREE_HEADS] = initial_rows
        self.ready = np.zeros((65536, K.N_READY_COLS), dtype=np.int64)
        self.windows = np.zeros((4096, K.N_WINDOW_COLS), dtype=np.float64)
        self.hash_collisions = 0

    @staticmethod
    def _empty_slots(n: int) -> np.ndarray:
        slot = np.zeros((n, K.N_SLOT_COLS), dtype=np.int64)
        slot[:, K.SL_CUR_WIN] = -1
        slot[:, K.SL_ROW] = -1
        slot[:, K.SL_BASE_SEQ] = -1
        slot[:, K.SL_REG_ROW] = -1
        return slot

    def add(self, batch: PacketBatch, input_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Fold a batch of decoded packets into the table.

        Returns each packet's flow id (-1: not decoded) and direction (0:
        endpoint A sent it), for consumers of the packets' payload.
        """
        keys, dirs = K.flow_keys(batch.fields, batch.addrs)
        codes, uniques = pd.factorize(keys)
        flow_of_code = self._flow_ids(np.asarray(uniques, dtype=np.uint64), codes, dirs, batch, input_index)
        flow_ids = flow_of_code[codes]
        start = 0
        while start < batch.n:
            start, collisions = K.update_flows(
                start, batch.fields, batch.addrs, batch.buf, flow_ids, dirs,
                self.flow, self.flow_addr, self.tunnel_addr, self.slot, self.hist, self.free_rows,
                self.windows, self.heads, self.head_cov, self.head_free, self.ready, self.counters,
            )
            self.hash_collisions += collisions
            self._drain_heads()
            if start < batch.n:
                self._grow_work_space()
        return flow_ids, dirs

    def _drain_heads(self) -> None:
        """Hand complete regions to ``on_region`` and recycle their buffers."""
        c = self.counters
        for s, row, start, length, index, kept_end in self.ready[: c[K.CT_READY]].tolist():
            if self.on_region is not None:
                at_start = index == 0 and bool(self.slot[s, K.SL_AT_START])
                islands = self._islands(row, start, length, kept_end) if kept_end > length else ()
                self.on_region(Region(s, index, start, self.heads[row, :length].tobytes(),
                                      at_start, islands))
            self.head_free[c[K.CT_FREE_HEADS]] = row
            c[K.CT_FREE_HEADS] += 1
        c[K.CT_READY] = 0

    def _islands(self, row: int, start: int, length: int, kept_end: int) -> tuple[tuple[int, bytes], ...]:
        """Runs of bytes kept after the first hole of a region (coverage bitmap)."""
        bitmap = self.head_cov[row, : (kept_end + 7) // 8]
        covered = np.unpackbits(bitmap, bitorder="little")[:kept_end]
        covered[:length] = 0
        edges = np.flatnonzero(np.diff(np.concatenate(([0], covered.astype(np.int8), [0]))))
        runs = [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2]) if b - a >= MIN_ISLAND]
        return tuple((start + a, self.heads[row, a:b].tobytes()) for a, b in runs[:MAX_ISLANDS])

    def _flow_ids(self, uniques: np.ndarray, codes: np.ndarray, dirs: np.ndarray,
                  batch: PacketBatch, input_index: int) -> np.ndarray:
        ids = np.empty(uniques.size, dtype=np.int64)
        new_codes = []
        index = self.index
        for code, key in enumerate(uniques.tolist()):
            if key == 0:  # packets that did not decode
                ids[code] = -1
                continue
            fid = index.get(key)
            if fid is None:
                fid = self.n_flows + len(new_codes)
                index[key] = fid
                new_codes.append(code)
            ids[code] = fid
        if new_codes:
            self._create(np.asarray(new_codes), codes, dirs, batch, input_index, ids)
        return ids

    def _create(self, new_codes: np.ndarray, codes: np.ndarray, dirs: np.ndarray,
                batch: PacketBatch, input_index: int, ids: np.ndarray) -> None:
        """Initialise the flows first seen in this batch, oriented A < B."""
        first = K.first_index(codes, int(codes.max()) + 1)[new_codes]
        need = self.n_flows + new_codes.size
        self.flow = _grow(self.flow, need, -1)
        self.flow_addr = _grow(self.flow_addr, need)
        self.tunnel_addr = _grow(self.tunnel_addr, need)
        self.input_index = _grow(self.input_index, need)
        if 2 * need > self.slot.shape[0]:
            grown = self._empty_slots(max(2 * need, 2 * self.slot.shape[0]))
            grown[: self.slot.shape[0]] = self.slot
            self.slot = grown
        fids = ids[new_codes]
        flipped = dirs[first] == 1
        f, a = batch.fields, batch.addrs
        src_hi, src_lo, dst_hi, dst_lo = (a[r, first] for r in range(4))
        self.flow_addr[fids, 0] = np.where(flipped, dst_hi, src_hi)
        self.flow_addr[fids, 1] = np.where(flipped, dst_lo, src_lo)
        self.flow_addr[fids, 2] = np.where(flipped, src_hi, dst_hi)
        self.flow_addr[fids, 3] = np.where(flipped, src_lo, dst_lo)
        sport, dport = f[D.F_SPORT, first], f[D.F_DPORT, first]
        self.flow[fids] = -1
        self.flow[fids, K.FL_CLOSED] = 0
        self.flow[fids, K.FL_A_PORT] = np.where(flipped, dport, sport)
        self.flow[fids, K.FL_B_PORT] = np.where(flipped, sport, dport)
        self.flow[fids, K.FL_PROTO] = f[D.F_PROTO, first]
        self.flow[fids, K.FL_IP_VERSION] = f[D.F_IP_VERSION, first]
        self.input_index[fids] = input_index
        self.n_flows = need

    def _grow_work_space(self) -> None:
        """Double whichever pool ran short: histogram rows, head buffers, windows."""
        c = self.counters
        if c[K.CT_FREE_HIST] < 1:
            self.hist, self.free_rows = _grow_pool(self.hist, self.free_rows, c, K.CT_FREE_HIST)
        if c[K.CT_FREE_HEADS] < 1:
            old = self.heads.shape[0]
            self.heads, self.head_free = _grow_pool(self.heads, self.head_free, c, K.CT_FREE_HEADS)
            self.head_cov = np.concatenate([self.head_cov, np.zeros_like(self.head_cov[:old])])
        if self.windows.shape[0] - c[K.CT_WINDOWS] < 512:  # a 16 MiB record spans 256 windows
            self.windows = _grow(self.windows, 2 * self.windows.shape[0])

    def finish(self) -> FlowState:
        """Close every open window, hand over every head, return the state."""
        self.windows = _grow(self.windows, int(self.counters[K.CT_WINDOWS]) + 2 * self.n_flows + 1)
        self.ready = _grow(self.ready, 2 * self.n_flows + 1)  # one open region per direction
        K.finish_all(2 * self.n_flows, self.slot, self.hist, self.free_rows, self.windows,
                     self.ready, self.counters)
        self._drain_heads()
        n = self.n_flows
        return FlowState(
            flow=self.flow[:n],
            flow_addr=self.flow_addr[:n],
            tunnel_addr=self.tunnel_addr[:n],
            slot=self.slot[: 2 * n],
            windows=self.windows[: self.counters[K.CT_WINDOWS]],
            input_index=self.input_index[:n],
            hash_collisions=self.hash_collisions,
        )


def _grow_pool(rows: np.ndarray, free: np.ndarray, counters: np.ndarray, which: int):
    """Double a pool of rows and put the new ones on its free stack."""
    old = rows.shape[0]
    rows = np.concatenate([rows, np.zeros_like(rows)])
    free = np.concatenate([np.arange(2 * old - 1, old - 1, -1, dtype=np.int64), np.zeros(old, dtype=np.int64)])
    counters[which] = old
    return rows, free
