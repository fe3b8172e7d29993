"""The flow table: bidirectional flows built from packet batches.

A flow is keyed direction-agnostically (endpoint A is the lower address and
port). Per-packet work runs in ``kernels.update_flows``; this class owns the
state arrays, grows them, and maps 64-bit keys to flow ids with one dict
lookup per distinct flow in a batch (not per packet).

Flows end when they time out (``due``) or the input ends: ``close`` hands
their state over and puts their ids, rows and buffers back for new flows,
so the table's memory follows the number of flows open at once, not the
number seen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import repeat
from typing import NamedTuple

import numpy as np
import pandas as pd

from inspector.capture import decode as D
from inspector.capture.reader import PacketBatch
from inspector.flows import kernels as K


@dataclass
class FlowState:
    """Raw state of some flows (those that ended, or all at the end of the
    input), for the next stage, numbered 0..n-1 in the order asked for.

    ``flow``/``flow_addr``/``tunnel_addr``/``slot`` have one row per flow
    (per direction for ``slot``: row ``2*flow + dir``); columns are named in
    ``kernels``. ``tunnel_addr`` holds the outer source and destination (hi,
    lo words) of the tunnel the flow's first packet came in, if any.
    ``windows`` has one row per finished window, see ``kernels.WR_*``
    (``WR_SLOT`` renumbered like ``slot``).
    """

    flow: np.ndarray
    flow_addr: np.ndarray
    tunnel_addr: np.ndarray
    slot: np.ndarray
    windows: np.ndarray
    input_index: np.ndarray  # which input file first showed the flow


def _grow(arr: np.ndarray, need: int, fill: int | float = 0) -> np.ndarray:
    """Return ``arr`` with at least ``need`` rows (doubling)."""
    cap = arr.shape[0]
    if need <= cap:
        return arr
    out = np.full((max(need, 2 * cap),) + arr.shape[1:], fill, dtype=arr.dtype)
    out[:cap] = arr
    return out


NEVER = np.iinfo(np.int64).max  # a timeout that never fires
MAX_ISLANDS = 16
"""Islands handed over per region; a snaplen-cut stream has one per segment."""
MIN_ISLAND = 8
MIN_WINDOW_ROWS = 4096


class Region(NamedTuple):
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


RegionHandler = Callable[[list[Region]], None]


class FlowTable:
    """Accumulates flows over any number of batches and input files.

    ``on_regions`` receives the reassembled regions of flow directions (a
    head, then probes further in) completed by a batch or by flows' end, so
    region buffers live only while a region is being filled. ``on_create``
    hears the ids of flows as a batch creates them (not of a flow that
    ``restart`` begins again on its ended predecessor's key). Flow ids are
    reused once ``close`` has handed a flow over.
    """

    def __init__(self, on_regions: RegionHandler | None = None, initial_flows: int = 1024,
                 initial_rows: int = 256, on_create: Callable[[np.ndarray], None] | None = None) -> None:
        self.on_regions = on_regions
        self.on_create = on_create
        self.index: dict[int, int] = {}
        self.n_ids = 0  # ids handed out so far (the high-water mark of the arrays in use)
        self.free_ids: list[int] = []  # ids of closed flows, taken first by new flows
        self.flows_seen = 0
        self.flow = np.full((initial_flows, K.N_FLOW_COLS), -1, dtype=np.int64)
        self.flow_addr = np.zeros((initial_flows, 4), dtype=np.uint64)
        self.tunnel_addr = np.zeros((initial_flows, 4), dtype=np.uint64)
        self.input_index = np.zeros(initial_flows, dtype=np.int64)
        self.keys = np.zeros(initial_flows, dtype=np.uint64)
        self.in_use = np.zeros(initial_flows, dtype=bool)
        self.slot = self._empty_slots(2 * initial_flows)
        self.counters = np.zeros(K.N_COUNTERS, dtype=np.int64)
        # pools of rows, each with a stack of free rows (see _grow_pool)
        # a window's byte counts, then the counts when its current block started
        self.hist, self.free_rows = _new_pool(initial_rows, 512, np.uint32, self.counters, K.CT_FREE_HIST)
        self.heads, self.head_free = _new_pool(initial_rows // 4, K.REGION_BYTES, np.uint8, self.counters,
                                               K.CT_FREE_HEADS)
        self.small_heads, self.small_free = _new_pool(initial_rows, K.SMALL_REGION_BYTES, np.uint8, self.counters,
                                                      K.CT_FREE_SMALL)
        self.head_cov, self.cov_free = _new_pool(initial_rows // 16, K.REGION_BYTES // 8, np.uint8, self.counters,
                                                 K.CT_FREE_COV)
        self.ready = np.zeros((65536, K.N_READY_COLS), dtype=np.int64)
        self.windows = np.zeros((MIN_WINDOW_ROWS, K.N_WINDOW_COLS), dtype=np.float64)
        self.hash_collisions = 0

    @property
    def open_flows(self) -> int:
        return self.n_ids - len(self.free_ids)

    @staticmethod
    def _empty_slots(n: int) -> np.ndarray:
        slot = np.zeros((n, K.N_SLOT_COLS), dtype=np.int64)
        slot[:, K.SL_CUR_WIN] = -1
        slot[:, K.SL_ROW] = -1
        slot[:, K.SL_BASE_SEQ] = -1
        slot[:, K.SL_REG_ROW] = -1
        slot[:, K.SL_REG_COV] = -1
        slot[:, K.SL_CUR_BLOCK] = -1
        return slot

    def add(self, batch: PacketBatch, input_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Fold a batch of decoded packets into the table, no flow ending
        before the input does (``Pipeline`` ends them on timeouts).

        Returns each packet's flow id (-1: not decoded) and direction (0:
        endpoint A sent it), for consumers of the packets' payload.
        """
        flow_ids, dirs = self.key(batch, input_index)
        self.update(batch, flow_ids, dirs)
        return flow_ids, dirs

    def key(self, batch: PacketBatch, input_index: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Each packet's flow id and direction; flows seen first here are created."""
        keys, dirs = K.flow_keys(batch.fields, batch.addrs)
        return self.flow_ids(keys, dirs, batch, input_index), dirs

    def flow_ids(self, keys: np.ndarray, dirs: np.ndarray, batch: PacketBatch, input_index: int = 0) -> np.ndarray:
        """The flow id of each packet of ``kernels.flow_keys``; flows seen first here are created."""
        codes, uniques = pd.factorize(keys)
        flow_of_code = self._flow_ids(np.asarray(uniques, dtype=np.uint64), codes, dirs, batch, input_index)
        return flow_of_code[codes]

    def update(self, batch: PacketBatch, flow_ids: np.ndarray, dirs: np.ndarray, start: int = 0,
               idle: int = NEVER, after_close: int = NEVER) -> tuple[int, int]:
        """Fold packets ``start..`` in, until the end or a packet that comes
        after its flow ended (``kernels.update_flows``: ``idle`` and
        ``after_close`` in ns). Returns ``(stop, ended)``: the packet it
        stopped at and the flow that ended there (-1: all done); the caller
        closes that flow, calls ``restart`` and goes on from ``stop``."""
        while start < batch.n:
            start, collisions, ended = K.update_flows(
                start, batch.fields, batch.addrs, batch.buf, flow_ids, dirs,
                self.flow, self.flow_addr, self.tunnel_addr, self.slot, self.hist, self.free_rows,
                self.windows, self.heads, self.head_free, self.small_heads, self.small_free, self.head_cov,
                self.cov_free, self.ready, self.counters, idle, after_close,
            )
            self.hash_collisions += collisions
            if ended >= 0:  # regions wait in ``ready`` for the next call: one drain per batch, not per reused tuple
                return start, ended
            self._drain_heads()
            if start < batch.n:
                self._grow_work_space()
        return batch.n, -1

    def restart(self, flow_ids: np.ndarray, at: int, ended: int, input_index: int = 0) -> int:
        """Flow ``ended`` ended before packet ``at``: its 5-tuple starts a new
        flow there (a new id; the batch's later packets of it are renumbered).
        The ended flow is no longer open, but keeps its id and state until
        ``close``. Returns the new id; ``on_create`` is not told (the new
        flow's key, endpoints and ports are the ended one's, copied: a few
        scalar steps, as an attacker reusing one 4-tuple may cause this for
        every third packet)."""
        key = int(self.keys[ended])
        self.in_use[ended] = False
        fid = self._allocate()
        self.index[key] = fid
        self._grow_rows(self.n_ids)
        self.flow[fid] = -1
        self.flow[fid, _KEY_COLUMNS] = self.flow[ended, _KEY_COLUMNS]
        self.flow[fid, K.FL_CLOSED] = 0
        self.flow_addr[fid] = self.flow_addr[ended]
        self.tunnel_addr[fid] = 0
        self.slot[2 * fid : 2 * fid + 2] = _EMPTY_SLOT
        self.input_index[fid] = input_index
        self.keys[fid] = key
        self.in_use[fid] = True
        self.flows_seen += 1
        later = flow_ids[at:]
        later[later == ended] = fid
        return fid

    def _allocate(self) -> int:
        if self.free_ids:
            return self.free_ids.pop()
        self.n_ids += 1
        return self.n_ids - 1

    def _drain_heads(self) -> None:
        """Hand complete regions to ``on_regions`` and recycle their rows (at
        once: Python runs per region only to make its ``Region``)."""
        c = self.counters
        ready = self.ready[: c[K.CT_READY]]
        c[K.CT_READY] = 0
        if not len(ready):
            return
        big = ready[:, K.RD_CAP] == K.REGION_BYTES
        if self.on_regions is not None:
            at_start = (ready[:, K.RD_INDEX] == 0) & (self.slot[ready[:, K.RD_SLOT], K.SL_AT_START] != 0)
            regions = []
            for (s, row, start, length, index, kept_end, _cap, cov), large, head in zip(
                    ready.tolist(), big.tolist(), at_start.tolist()):
                rows = self.heads if large else self.small_heads
                islands = self._islands(rows[row], cov, start, length, kept_end) if kept_end > length else ()
                regions.append(Region(s, index, start, rows[row, :length].tobytes(), head, islands))
        for free, which, taken in ((self.head_free, K.CT_FREE_HEADS, ready[big, K.RD_ROW]),
                                   (self.small_free, K.CT_FREE_SMALL, ready[~big, K.RD_ROW]),
                                   (self.cov_free, K.CT_FREE_COV, ready[ready[:, K.RD_COV] >= 0, K.RD_COV])):
            free[c[which] : c[which] + taken.size] = taken
            c[which] += taken.size
        if self.on_regions is not None:
            self.on_regions(regions)

    def _islands(self, data: np.ndarray, cov: int, start: int, length: int,
                 kept_end: int) -> tuple[tuple[int, bytes], ...]:
        """Runs of bytes kept after the first hole of a region (its coverage bitmap)."""
        bitmap = self.head_cov[cov, : (kept_end + 7) // 8]
        covered = np.unpackbits(bitmap, bitorder="little")[:kept_end]
        covered[:length] = 0
        edges = np.flatnonzero(np.diff(np.concatenate(([0], covered.astype(np.int8), [0]))))
        runs = [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2]) if b - a >= MIN_ISLAND]
        return tuple((start + a, data[a:b].tobytes()) for a, b in runs[:MAX_ISLANDS])

    def _flow_ids(self, uniques: np.ndarray, codes: np.ndarray, dirs: np.ndarray,
                  batch: PacketBatch, input_index: int) -> np.ndarray:
        """The flow id of each distinct key (-1: packets that did not decode),
        creating the flows of new keys: the dict is read and filled by
        ``map``/``update``, not a Python step per key."""
        keys = uniques.tolist()
        ids = np.fromiter(map(self.index.get, keys, repeat(-1)), dtype=np.int64, count=len(keys))
        new = np.flatnonzero((ids < 0) & (uniques != 0))
        if new.size:
            ids[new] = self._allocate_many(new.size)
            self.index.update(zip(uniques[new].tolist(), ids[new].tolist()))
            first = K.first_index(codes, int(codes.max()) + 1)[new]
            self._create(ids[new], first, dirs, batch, input_index, uniques[new])
        return ids

    def _allocate_many(self, n: int) -> np.ndarray:
        """``n`` ids, as ``n`` calls of ``_allocate`` would give them."""
        reused = self.free_ids[: -n - 1 : -1] if n else []
        del self.free_ids[len(self.free_ids) - len(reused) :]
        fresh = np.arange(self.n_ids, self.n_ids + n - len(reused), dtype=np.int64)
        self.n_ids += fresh.size
        return np.concatenate([np.array(reused, dtype=np.int64), fresh])

    def _create(self, fids: np.ndarray, first: np.ndarray, dirs: np.ndarray, batch: PacketBatch,
                input_index: int, keys: np.ndarray) -> None:
        """Initialise flows from their first packets (rows ``first`` of the batch), oriented A < B."""
        self._grow_rows(self.n_ids)
        flipped = dirs[first] == 1
        f, a = batch.fields, batch.addrs
        src_hi, src_lo, dst_hi, dst_lo = (a[r, first] for r in range(4))
        self.flow_addr[fids, 0] = np.where(flipped, dst_hi, src_hi)
        self.flow_addr[fids, 1] = np.where(flipped, dst_lo, src_lo)
        self.flow_addr[fids, 2] = np.where(flipped, src_hi, dst_hi)
        self.flow_addr[fids, 3] = np.where(flipped, src_lo, dst_lo)
        self.tunnel_addr[fids] = 0
        sport, dport = f[D.F_SPORT, first], f[D.F_DPORT, first]
        self.flow[fids] = -1
        self.flow[fids, K.FL_CLOSED] = 0
        self.flow[fids, K.FL_A_PORT] = np.where(flipped, dport, sport)
        self.flow[fids, K.FL_B_PORT] = np.where(flipped, sport, dport)
        self.flow[fids, K.FL_PROTO] = f[D.F_PROTO, first]
        self.flow[fids, K.FL_IP_VERSION] = f[D.F_IP_VERSION, first]
        self.slot[np.concatenate([2 * fids, 2 * fids + 1])] = _EMPTY_SLOT  # reused ids start afresh
        self.input_index[fids] = input_index
        self.keys[fids] = keys
        self.in_use[fids] = True
        self.flows_seen += fids.size
        if self.on_create is not None:
            self.on_create(fids)

    def _grow_rows(self, need: int) -> None:
        """Room for flow ids below ``need`` in every per-flow array."""
        self.flow = _grow(self.flow, need, -1)
        self.flow_addr = _grow(self.flow_addr, need)
        self.tunnel_addr = _grow(self.tunnel_addr, need)
        self.input_index = _grow(self.input_index, need)
        self.keys = _grow(self.keys, need)
        self.in_use = _grow(self.in_use, need)
        if 2 * need > self.slot.shape[0]:
            grown = self._empty_slots(max(2 * need, 2 * self.slot.shape[0]))
            grown[: self.slot.shape[0]] = self.slot
            self.slot = grown

    def _grow_work_space(self) -> None:
        """Grow whichever pool ran short: histogram rows, region rows, bitmaps, windows."""
        c = self.counters
        if c[K.CT_FREE_HIST] < 1:
            self.hist, self.free_rows = _grow_pool(self.hist, self.free_rows, c, K.CT_FREE_HIST)
        if c[K.CT_FREE_HEADS] < 1:
            self.heads, self.head_free = _grow_pool(self.heads, self.head_free, c, K.CT_FREE_HEADS)
        if c[K.CT_FREE_SMALL] < 1:
            self.small_heads, self.small_free = _grow_pool(self.small_heads, self.small_free, c, K.CT_FREE_SMALL)
        if c[K.CT_FREE_COV] < 1:
            self.head_cov, self.cov_free = _grow_pool(self.head_cov, self.cov_free, c, K.CT_FREE_COV)
        if self.windows.shape[0] - c[K.CT_WINDOWS] < 512:  # a 16 MiB record spans 256 windows
            self.windows = _grow(self.windows, 2 * self.windows.shape[0])

    def open_ids(self) -> np.ndarray:
        """Ids of the flows open now, ascending."""
        return np.flatnonzero(self.in_use[: self.n_ids])

    def due(self, now: int, idle: int, after_close: int) -> np.ndarray:
        """Ids of the open flows that ended by ``now`` (ns, capture clock):
        no packet for ``idle`` ns, or ``after_close`` ns since the last
        packet of a flow closed by FIN from both sides or a RST (late ACKs
        and retransmissions still join it until then)."""
        n = self.n_ids
        last = self.flow[:n, K.FL_LAST_TS]
        closed = self.flow[:n, K.FL_CLOSED] > 0
        return np.flatnonzero(self.in_use[:n] & ((last <= now - idle) | (closed & (last <= now - after_close))))

    def close(self, fids: np.ndarray) -> FlowState:
        """End these flows: finish their windows and regions (``on_region``
        hears the last ones), hand over their state, free their ids."""
        fids = np.asarray(fids, dtype=np.int64)
        slots = np.stack([2 * fids, 2 * fids + 1], axis=1).ravel()
        self.windows = _grow(self.windows, int(self.counters[K.CT_WINDOWS]) + slots.size + 1)
        self.ready = _grow(self.ready, slots.size + 1)  # one open region per direction
        K.finish_slots(slots, self.slot, self.hist, self.free_rows, self.windows, self.ready, self.counters)
        self._drain_heads()
        state = self._state(fids, slots, take=True)
        for fid, key in zip(fids.tolist(), self.keys[fids].tolist()):
            if self.index.get(key) == fid:  # a flow that ended mid-batch gave its key to the next one
                del self.index[key]
        self.in_use[fids] = False
        self.free_ids.extend(fids[::-1].tolist())  # the lowest id is reused first
        return state

    def snapshot(self, fids: np.ndarray) -> FlowState:
        """The state of open flows so far (finished windows only), leaving them open."""
        fids = np.asarray(fids, dtype=np.int64)
        return self._state(fids, np.stack([2 * fids, 2 * fids + 1], axis=1).ravel(), take=False)

    def _state(self, fids: np.ndarray, slots: np.ndarray, take: bool) -> FlowState:
        """The rows of ``fids``, renumbered 0..n-1; ``take`` removes their
        windows from the table (the others are moved up)."""
        local = np.full(self.slot.shape[0], -1, dtype=np.int64)
        local[slots] = np.arange(slots.size)
        n_windows = int(self.counters[K.CT_WINDOWS])
        owner = local[self.windows[:n_windows, K.WR_SLOT].astype(np.int64)]
        mine = owner >= 0
        windows = self.windows[:n_windows][mine]
        windows[:, K.WR_SLOT] = owner[mine]
        if take:
            rest = self.windows[:n_windows][~mine]
            self.windows[: len(rest)] = rest
            self.counters[K.CT_WINDOWS] = len(rest)
            if self.windows.shape[0] > 4 * max(len(rest), MIN_WINDOW_ROWS):  # a burst of flows ended: give back
                self.windows = self.windows[: 2 * max(len(rest), MIN_WINDOW_ROWS)].copy()
        return FlowState(
            flow=self.flow[fids].copy(),
            flow_addr=self.flow_addr[fids].copy(),
            tunnel_addr=self.tunnel_addr[fids].copy(),
            slot=self.slot[slots].copy(),
            windows=windows,
            input_index=self.input_index[fids].copy(),
        )

    def finish(self) -> FlowState:
        """End every open flow (the input ended)."""
        return self.close(self.open_ids())


def _new_pool(n: int, width: int, dtype, counters: np.ndarray, which: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` rows of ``width`` and their free stack (every row free, the lowest on top)."""
    counters[which] = n
    return np.zeros((n, width), dtype=dtype), np.arange(n - 1, -1, -1, dtype=np.int64)


def _grow_pool(rows: np.ndarray, free: np.ndarray, counters: np.ndarray,
               which: int) -> tuple[np.ndarray, np.ndarray]:
    """Grow an exhausted pool of rows by half and put the new ones on its free stack.

    The new rows come from fresh zeroed pages, which cost memory only once
    written; only the old rows are copied (no zero-filled copy of the whole).
    """
    old = rows.shape[0]
    new = max(old // 2, 16)
    grown = np.zeros((old + new,) + rows.shape[1:], dtype=rows.dtype)
    grown[:old] = rows
    free = np.zeros(old + new, dtype=np.int64)
    free[:new] = np.arange(old + new - 1, old - 1, -1)
    counters[which] = new
    return grown, free


_EMPTY_SLOT = FlowTable._empty_slots(1)[0]  # the state of a direction no packet has reached
_KEY_COLUMNS = [K.FL_A_PORT, K.FL_B_PORT, K.FL_PROTO, K.FL_IP_VERSION]  # same key, same values
