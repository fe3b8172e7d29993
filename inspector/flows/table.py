"""The flow table: bidirectional flows built from packet batches.

A flow is keyed direction-agnostically (endpoint A is the lower address and
port). Per-packet work runs in ``kernels.update_flows``; this class owns the
state arrays, grows them, and maps 64-bit keys to flow ids with one dict
lookup per distinct flow in a batch (not per packet).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from inspector.capture import decode as D
from inspector.capture.reader import PacketBatch
from inspector.flows import kernels as K


@dataclass
class FlowState:
    """Raw flow state at the end of the input, for the next stage.

    ``flow``/``flow_addr``/``slot`` have one row per flow (per direction
    for ``slot``: row ``2*flow + dir``); columns are named in ``kernels``.
    ``windows`` has one row per finished window, see ``kernels.WR_*``.
    """

    flow: np.ndarray
    flow_addr: np.ndarray
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


class FlowTable:
    """Accumulates flows over any number of batches and input files."""

    def __init__(self, initial_flows: int = 1024, initial_rows: int = 256) -> None:
        self.index: dict[int, int] = {}
        self.n_flows = 0
        self.flow = np.full((initial_flows, K.N_FLOW_COLS), -1, dtype=np.int64)
        self.flow_addr = np.zeros((initial_flows, 4), dtype=np.uint64)
        self.input_index = np.zeros(initial_flows, dtype=np.int64)
        self.slot = self._empty_slots(2 * initial_flows)
        self.hist = np.zeros((initial_rows, 256), dtype=np.uint32)
        self.free_rows = np.arange(initial_rows - 1, -1, -1, dtype=np.int64)
        self.n_free = initial_rows
        self.windows = np.zeros((4096, K.N_WINDOW_COLS), dtype=np.float64)
        self.n_windows = 0
        self.hash_collisions = 0

    @staticmethod
    def _empty_slots(n: int) -> np.ndarray:
        slot = np.zeros((n, K.N_SLOT_COLS), dtype=np.int64)
        slot[:, K.SL_CUR_WIN] = -1
        slot[:, K.SL_ROW] = -1
        return slot

    def add(self, batch: PacketBatch, input_index: int = 0) -> None:
        """Fold a batch of decoded packets into the table."""
        keys, dirs = K.flow_keys(batch.fields, batch.addrs)
        codes, uniques = pd.factorize(keys)
        flow_of_code = self._flow_ids(np.asarray(uniques, dtype=np.uint64), codes, dirs, batch, input_index)
        flow_ids = flow_of_code[codes]
        start = 0
        while start < batch.n:
            start, self.n_free, self.n_windows, collisions = K.update_flows(
                start, batch.fields, batch.addrs, batch.buf, flow_ids, dirs,
                self.flow, self.flow_addr, self.slot, self.hist,
                self.free_rows, self.n_free, self.windows, self.n_windows,
            )
            self.hash_collisions += collisions
            if start < batch.n:
                self._grow_work_space()

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
        """More free histogram rows and window result columns."""
        if self.n_free < 1:
            old = self.hist.shape[0]
            self.hist = np.concatenate([self.hist, np.zeros_like(self.hist)])
            self.free_rows = np.concatenate(
                [np.arange(2 * old - 1, old - 1, -1, dtype=np.int64), np.zeros(old, dtype=np.int64)]
            )
            self.n_free = old
        self.windows = _grow(self.windows, 2 * self.windows.shape[0])

    def finish(self) -> FlowState:
        """Close every open window and hand the state to classification."""
        self.windows = _grow(self.windows, self.n_windows + 2 * self.n_flows + 1)
        self.n_free, self.n_windows = K.finish_all(
            2 * self.n_flows, self.slot, self.hist, self.free_rows, self.n_free,
            self.windows, self.n_windows,
        )
        n = self.n_flows
        return FlowState(
            flow=self.flow[:n],
            flow_addr=self.flow_addr[:n],
            slot=self.slot[: 2 * n],
            windows=self.windows[: self.n_windows],
            input_index=self.input_index[:n],
            hash_collisions=self.hash_collisions,
        )
