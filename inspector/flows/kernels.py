"""Compiled per-packet flow work: keys, counters and windowed byte histograms.

State lives in a few 2-D arrays owned by ``FlowTable`` (rows named below);
these kernels only index into them, so per-packet work is a handful of
array writes plus one histogram increment per payload byte that falls in a
sampled window.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from inspector.capture import constants as C
from inspector.capture import decode as D

# Columns of FlowTable.flow (int64, one row per flow)
FL_FIRST_TS = 0
FL_LAST_TS = 1
FL_SYN_DIR = 2  # direction (0 = A->B, 1 = B->A) of the first SYN without ACK, -1 none
FL_SYNACK_DIR = 3  # direction of the first SYN+ACK, -1 none
FL_FIRST_DIR = 4  # direction of the first packet captured
FL_CLOSED = 5  # 1 after RST or FIN from both sides
FL_VLAN = 6
FL_A_PORT = 7
FL_B_PORT = 8
FL_PROTO = 9
FL_IP_VERSION = 10
N_FLOW_COLS = 11

# Columns of FlowTable.slot (int64, one row per flow direction: 2*flow + dir)
SL_PKTS = 0
SL_BYTES = 1  # transport payload bytes on the wire
SL_CAP_BYTES = 2  # payload bytes captured (snaplen may cut)
SL_STREAM_OFF = 3  # payload bytes seen so far in this direction (wire count)
SL_CUR_WIN = 4  # index of the window being filled, -1 none
SL_WIN_N = 5  # captured bytes in the window being filled
SL_ROW = 6  # histogram row in use, -1 none
SL_FIN = 7
N_SLOT_COLS = 8

# Columns of FlowTable.windows (float64, one row per finished window)
WR_SLOT = 0
WR_INDEX = 1  # window index in the direction's byte stream (0 = head)
WR_BYTES = 2  # captured bytes histogrammed (<= window size)
WR_ENTROPY = 3  # Shannon entropy, bits per byte
WR_CHI2 = 4  # chi-square against 256 equiprobable byte values (255 d.o.f.)
WR_PRINTABLE = 5  # share of bytes that are printable ASCII, TAB, CR or LF
N_WINDOW_COLS = 6

# Windows: full-stream statistics would be dominated by framing (TLS record
# headers push a 19 MB TLS stream to chi2 ~6600); 64 KiB windows keep TLS and
# SSH at ~245-280 while compressed data scores ~850-3700.
WINDOW_BYTES = 65536
# Window 0 is the stream head, kept apart because it holds the cleartext
# handshakes of encrypted protocols (TLS hellos and certificates, SSH banner
# and KEXINIT: 1-6 KiB). Windows 1, 2, ... are WINDOW_BYTES long after it.
HEAD_BYTES = 8192
# Every window of the first DENSE_WINDOWS (1 MiB) is analysed, then 8 per
# doubling of the stream (stride 2, 4, 8, ...): cost and state grow with the
# logarithm of a direction's size, not its length.
DENSE_WINDOWS = 16

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


@njit(cache=True, inline="always")
def _mix(h, v):
    """splitmix64 finaliser over h ^ v."""
    z = h ^ v
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


@njit(cache=True)
def flow_keys(fields, addrs):
    """Direction-agnostic 64-bit key per packet and its direction.

    Endpoint A is the lower (address, port); direction 0 means A sent the
    packet. Packets that did not decode get key 0.
    """
    n = fields.shape[1]
    keys = np.zeros(n, dtype=np.uint64)
    dirs = np.zeros(n, dtype=np.int8)
    for i in range(n):
        if fields[D.F_STATUS, i] != C.STATUS_OK:
            continue
        s_hi, s_lo, d_hi, d_lo = addrs[0, i], addrs[1, i], addrs[2, i], addrs[3, i]
        sp, dp = fields[D.F_SPORT, i], fields[D.F_DPORT, i]
        src_first = s_hi < d_hi or (s_hi == d_hi and (s_lo < d_lo or (s_lo == d_lo and sp <= dp)))
        if src_first:
            a_hi, a_lo, b_hi, b_lo, ap, bp = s_hi, s_lo, d_hi, d_lo, sp, dp
        else:
            a_hi, a_lo, b_hi, b_lo, ap, bp = d_hi, d_lo, s_hi, s_lo, dp, sp
            dirs[i] = 1
        h = _mix(np.uint64(0x9E3779B97F4A7C15), a_hi)
        h = _mix(h, a_lo)
        h = _mix(h, b_hi)
        h = _mix(h, b_lo)
        h = _mix(h, np.uint64((ap << 24) | (bp << 8) | fields[D.F_PROTO, i]))
        keys[i] = h if h != 0 else np.uint64(1)
    return keys, dirs


@njit(cache=True)
def first_index(codes, k):
    """Index of the first packet of each of ``k`` codes."""
    first = np.full(k, -1, dtype=np.int64)
    for i in range(codes.size):
        c = codes[i]
        if c >= 0 and first[c] < 0:
            first[c] = i
    return first


@njit(cache=True, inline="always")
def is_sampled_window(w):
    if w < DENSE_WINDOWS:
        return True
    level = 0
    q = w // DENSE_WINDOWS
    while q:
        level += 1
        q >>= 1
    return w % (np.int64(1) << level) == 0


@njit(cache=True)
def _finish_window(s, slot, hist, windows, n_windows):
    """Turn the histogram of slot ``s``'s current window into one result row."""
    n = slot[s, SL_WIN_N]
    row = slot[s, SL_ROW]
    if n == 0 or row < 0:
        return n_windows
    expected = n / 256.0
    entropy = 0.0
    chi2 = 0.0
    printable = 0
    for b in range(256):
        c = hist[row, b]
        if c:
            p = c / n
            entropy -= p * np.log2(p)
            if (32 <= b < 127) or b == 9 or b == 10 or b == 13:
                printable += c
            hist[row, b] = 0
        chi2 += (c - expected) * (c - expected) / expected
    k = n_windows
    windows[k, WR_SLOT] = s
    windows[k, WR_INDEX] = slot[s, SL_CUR_WIN]
    windows[k, WR_BYTES] = n
    windows[k, WR_ENTROPY] = entropy
    windows[k, WR_CHI2] = chi2
    windows[k, WR_PRINTABLE] = printable / n
    slot[s, SL_WIN_N] = 0
    return k + 1


@njit(cache=True)
def _release(s, slot, free_rows, n_free):
    row = slot[s, SL_ROW]
    if row >= 0:
        free_rows[n_free] = row
        n_free += 1
        slot[s, SL_ROW] = -1
    return n_free


@njit(cache=True)
def _add_payload(s, buf, off, cap, wire, slot, hist, free_rows, n_free, windows, n_windows):
    """Histogram the captured payload into the sampled windows of slot ``s``."""
    pos = slot[s, SL_STREAM_OFF]
    j = 0
    while j < cap:
        if pos < HEAD_BYTES:
            w = 0
        else:
            w = 1 + (pos - HEAD_BYTES) // WINDOW_BYTES
        take = min(cap - j, HEAD_BYTES + w * WINDOW_BYTES - pos)
        if w != slot[s, SL_CUR_WIN]:
            n_windows = _finish_window(s, slot, hist, windows, n_windows)
            slot[s, SL_CUR_WIN] = w
        if is_sampled_window(w):
            row = slot[s, SL_ROW]
            if row < 0:
                n_free -= 1
                row = free_rows[n_free]
                slot[s, SL_ROW] = row
            for k in range(off + j, off + j + take):
                hist[row, buf[k]] += 1
            slot[s, SL_WIN_N] += take
        pos += take
        j += take
    slot[s, SL_STREAM_OFF] += max(wire, cap)
    return n_free, n_windows


@njit(cache=True)
def update_flows(start, fields, addrs, buf, flow_ids, dirs, flow, flow_addr, slot, hist,
                 free_rows, n_free, windows, n_windows):
    """Fold packets ``start..`` of a batch into the flow state.

    Returns ``(stop, n_free, n_windows, collisions)``. It stops early, at
    packet ``stop``, when it is out of free histogram rows or window rows; the
    caller grows them and calls again from ``stop``. A collision is a packet
    whose key hash matched a flow with other endpoints (it is not counted).
    """
    collisions = 0
    n = fields.shape[1]
    for i in range(start, n):
        f = flow_ids[i]
        if f < 0:
            continue
        if n_free < 1 or n_windows + fields[D.F_PAYLOAD_CAP, i] // WINDOW_BYTES + 4 > windows.shape[0]:
            return i, n_free, n_windows, collisions
        d = dirs[i]
        if d == 0:
            same = addrs[0, i] == flow_addr[f, 0] and addrs[1, i] == flow_addr[f, 1] \
                and addrs[2, i] == flow_addr[f, 2] and addrs[3, i] == flow_addr[f, 3] \
                and fields[D.F_SPORT, i] == flow[f, FL_A_PORT] and fields[D.F_DPORT, i] == flow[f, FL_B_PORT]
        else:
            same = addrs[2, i] == flow_addr[f, 0] and addrs[3, i] == flow_addr[f, 1] \
                and addrs[0, i] == flow_addr[f, 2] and addrs[1, i] == flow_addr[f, 3] \
                and fields[D.F_DPORT, i] == flow[f, FL_A_PORT] and fields[D.F_SPORT, i] == flow[f, FL_B_PORT]
        if not same or fields[D.F_PROTO, i] != flow[f, FL_PROTO]:
            collisions += 1
            continue
        ts = fields[D.F_TS, i]
        if flow[f, FL_FIRST_DIR] < 0:
            flow[f, FL_FIRST_DIR] = d
            flow[f, FL_FIRST_TS] = ts
            flow[f, FL_LAST_TS] = ts
            flow[f, FL_VLAN] = fields[D.F_VLAN, i]
        else:
            if ts < flow[f, FL_FIRST_TS]:
                flow[f, FL_FIRST_TS] = ts
            if ts > flow[f, FL_LAST_TS]:
                flow[f, FL_LAST_TS] = ts
        s = 2 * f + d
        slot[s, SL_PKTS] += 1
        wire = fields[D.F_PAYLOAD_LEN, i]
        cap = fields[D.F_PAYLOAD_CAP, i]
        slot[s, SL_BYTES] += wire
        slot[s, SL_CAP_BYTES] += cap
        flags = fields[D.F_TCP_FLAGS, i]
        if fields[D.F_PROTO, i] == C.IPPROTO_TCP:
            if flags & C.TCP_SYN:
                if flags & C.TCP_ACK:
                    if flow[f, FL_SYNACK_DIR] < 0:
                        flow[f, FL_SYNACK_DIR] = d
                elif flow[f, FL_SYN_DIR] < 0:
                    flow[f, FL_SYN_DIR] = d
        if wire > 0 or cap > 0:
            n_free, n_windows = _add_payload(
                s, buf, fields[D.F_PAYLOAD_OFF, i], cap, wire, slot, hist,
                free_rows, n_free, windows, n_windows,
            )
        if fields[D.F_PROTO, i] == C.IPPROTO_TCP and flags & (C.TCP_FIN | C.TCP_RST):
            if flags & C.TCP_FIN:
                slot[s, SL_FIN] = 1
            if flags & C.TCP_RST or (slot[2 * f, SL_FIN] and slot[2 * f + 1, SL_FIN]):
                if not flow[f, FL_CLOSED]:
                    flow[f, FL_CLOSED] = 1
                    for t in (2 * f, 2 * f + 1):
                        n_windows = _finish_window(t, slot, hist, windows, n_windows)
                        n_free = _release(t, slot, free_rows, n_free)
    return n, n_free, n_windows, collisions


@njit(cache=True)
def finish_all(n_slots, slot, hist, free_rows, n_free, windows, n_windows):
    """End of input: close every window still being filled."""
    for s in range(n_slots):
        n_windows = _finish_window(s, slot, hist, windows, n_windows)
        n_free = _release(s, slot, free_rows, n_free)
    return n_free, n_windows
