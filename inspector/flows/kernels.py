"""Compiled per-packet flow work: keys, counters and windowed byte histograms.

State lives in a few 2-D arrays owned by ``FlowTable`` (rows named below);
these kernels only index into them, so per-packet work is a handful of
array writes plus one histogram increment per captured payload byte: every
window is histogrammed and labelled, so no part of a stream escapes the
statistics, while only sampled windows become rows of the windows table.
"""

from __future__ import annotations

import numpy as np

from inspector.capture import constants as C
from inspector.capture import decode as D
from inspector.flows import randomness
from inspector.jit import njit

# Columns of FlowTable.flow (int64, one row per flow)
FL_FIRST_TS = 0
FL_LAST_TS = 1
FL_SYN_DIR = 2  # direction (0 = A->B, 1 = B->A) of the first SYN without ACK, -1 none
FL_SYNACK_DIR = 3  # direction of the first SYN+ACK, -1 none
FL_FIRST_DIR = 4  # direction of the first packet captured
FL_CLOSED = 5  # 1 after FIN from both sides, 2 after a RST
FL_VLAN = 6
FL_A_PORT = 7
FL_B_PORT = 8
FL_PROTO = 9
FL_IP_VERSION = 10
FL_TUNNEL = 11  # constants.TUNNEL_* of the first packet (its outermost tunnel)
FL_TUNNEL_ID = 12  # that tunnel's VNI, GRE key or ERSPAN session id, -1 none
FL_TUNNEL_IP_VERSION = 13  # IP version of that tunnel's outer header
FL_REPORTED_TS = 14  # when the flow, still open, was last reported (active timeout), -1 never
N_FLOW_COLS = 15

# Columns of FlowTable.slot (int64, one row per flow direction: 2*flow + dir)
SL_PKTS = 0
SL_BYTES = 1  # transport payload bytes on the wire
SL_CAP_BYTES = 2  # payload bytes captured (snaplen may cut)
SL_MAX_END = 3  # highest stream offset reached (TCP: from sequence numbers)
SL_CUR_WIN = 4  # index of the window being filled, -1 none
SL_WIN_N = 5  # captured bytes in the window being filled
SL_ROW = 6  # histogram row in use, -1 none
SL_FIN = 7
SL_BASE_SEQ = 8  # TCP sequence number of stream offset 0, -1 until known
SL_AT_START = 9  # 1 when offset 0 is the true stream start (SYN seen), 0 mid-stream
SL_MISSED = 10  # bytes never seen in gaps of the stream (like Zeek's missed_bytes)
SL_GAP_START = 11  # the latest gap, so that a late segment filling it is not counted
SL_GAP_END = 12
SL_REG_ROW = 13  # row of the region buffer in use (in the pool SL_REG_CAP names), -1 none
SL_REG_STATE = 14  # 0 waiting for the region, 1 collecting
SL_REG_LEN = 15  # contiguous bytes from the region start
SL_REG_OOO = 16  # end of bytes kept after a hole (0: none, bitmap unused)
SL_REG_INDEX = 17  # 0: the head, k >= 1: the probe at PROBE_FIRST << (k - 1)
SL_REG_START = 18  # stream offset of the region's first byte
SL_REG_CAP = 19  # bytes the region's row holds: SMALL_REGION_BYTES (small pool) or REGION_BYTES
SL_REG_COV = 20  # row of the coverage bitmap pool, -1 until the region has a hole
SL_CUR_BLOCK = 21  # index (stream offset // BLOCK_BYTES) of the body block being filled, -1 none
SL_BLOCK_BASE = 22  # captured bytes of the current window before that block
SL_COVERED = 23  # captured bytes histogrammed: every window, the head included
SL_BODY_RANDOM = 24  # captured bytes of finished windows after the head labelled random (every window)
SL_BODY_COMPRESSED = 25  # ... labelled compressed
SL_BODY_PLAIN = 26  # ... labelled plain
SL_BLOCK_PLAIN = 27  # captured bytes of blocks after the head labelled plain
N_SLOT_COLS = 28
BODY_LABEL_COLS = (SL_BODY_RANDOM, SL_BODY_COMPRESSED, SL_BODY_PLAIN)  # in randomness label order

# Columns of FlowTable.ready (int64): regions handed over, one row each
RD_SLOT, RD_ROW, RD_START, RD_LEN, RD_INDEX, RD_KEPT_END, RD_CAP, RD_COV = range(8)
N_READY_COLS = 8

# FlowTable.counters (int64): free/used counts of the shared pools
CT_FREE_HIST = 0
CT_WINDOWS = 1
CT_FREE_HEADS = 2
CT_READY = 3  # regions handed over, listed in FlowTable.ready
CT_FREE_SMALL = 4
CT_FREE_COV = 5
N_COUNTERS = 6

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
# Regions of each direction are reassembled (by TCP sequence number, first
# copy wins) for the protocol detectors: the head (the first REGION_BYTES),
# then probes of REGION_BYTES from 1 MiB, 2 MiB, 4 MiB, ... into the stream,
# where mid-stream framing (page records, multifd or libvirt headers) shows.
REGION_BYTES = 16384
# A region starts in a small row and moves to a full one only when its data
# reaches past it: most directions (requests, DNS or syslog exchanges, short
# API calls) never carry more, and a UDP flow that never closes holds its
# row until the idle timeout. A coverage bitmap is taken only at a hole.
SMALL_REGION_BYTES = 2048
PROBE_FIRST = 1 << 20
MAX_PROBES = 12
# Every window of the first DENSE_WINDOWS (1 MiB) becomes a row of the
# windows table, then 8 per doubling of the stream (stride 2, 4, 8, ...): the
# table grows with the logarithm of a direction's size, not its length. The
# other windows are labelled as they finish and summed per label in the slot.
DENSE_WINDOWS = 16
# Windows after the head are also labelled in blocks of BLOCK_BYTES: a
# cleartext piece of 2.4 KiB or more makes a block plain wherever it sits,
# while in a 64 KiB window of random bytes it only looks compressed.
# Cost of covering every byte: ~0.34 ns per byte counted from cache (eight
# per 64-bit load, _count_bytes), ~0.5 ns on a bulk capture with the blocks
# and memory traffic (benchmarks/floor.py: flow kernels 0.47 -> 1.67 CPU s
# on 2.3 GB of payload, of which 91 MB were counted before).
BLOCK_BYTES = 4096

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
def mix_rows(words):
    """One 64-bit hash per row of ``words`` (uint64 [n, m]), same mixer as the keys."""
    out = np.empty(words.shape[0], dtype=np.uint64)
    for i in range(words.shape[0]):
        h = np.uint64(0x9E3779B97F4A7C15)
        for j in range(words.shape[1]):
            h = _mix(h, words[i, j])
        out[i] = h
    return out


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


@njit(cache=True, inline="always")
def _chi2(squares, n):
    """Chi-square against uniform bytes of ``n`` bytes whose counts squared sum to ``squares``."""
    return squares * (256.0 / n) - n


@njit(cache=True)
def _finish_block(s, slot, hist):
    """Label the block of slot ``s`` being filled and count its bytes if plain.

    Its counts are the window's minus those when the block started, which
    the second half of the histogram row keeps."""
    row = slot[s, SL_ROW]
    n = slot[s, SL_WIN_N] - slot[s, SL_BLOCK_BASE]
    if row < 0 or n <= 0:
        return
    h = hist[row]
    squares = 0
    for b in range(256):
        c = np.int64(h[b]) - np.int64(h[256 + b])
        squares += c * c
    h[256:] = h[:256]
    if randomness.label(n, _chi2(squares, n)) == randomness.PLAIN:
        slot[s, SL_BLOCK_PLAIN] += n
    slot[s, SL_BLOCK_BASE] = slot[s, SL_WIN_N]


@njit(cache=True)
def _finish_window(s, slot, hist, windows, n_windows):
    """Label the window of slot ``s`` being filled and count its bytes under
    its label (after the head); a sampled window also becomes a result row."""
    n = slot[s, SL_WIN_N]
    row = slot[s, SL_ROW]
    if n == 0 or row < 0:
        return n_windows
    w = slot[s, SL_CUR_WIN]
    if w > 0:
        _finish_block(s, slot, hist)
    expected = n / 256.0
    chi2 = 0.0
    k = n_windows
    if is_sampled_window(w):
        entropy = 0.0
        printable = 0
        for b in range(256):
            c = hist[row, b]
            if c:
                p = c / n
                entropy -= p * np.log2(p)
                if (32 <= b < 127) or b == 9 or b == 10 or b == 13:
                    printable += c
            chi2 += (c - expected) * (c - expected) / expected
        windows[k, WR_SLOT] = s
        windows[k, WR_INDEX] = w
        windows[k, WR_BYTES] = n
        windows[k, WR_ENTROPY] = entropy
        windows[k, WR_CHI2] = chi2
        windows[k, WR_PRINTABLE] = printable / n
        k += 1
    else:  # only the label: the same chi-square, summed in integers
        squares = 0
        for b in range(256):
            c = np.int64(hist[row, b])
            squares += c * c
        chi2 = _chi2(squares, n)
    if w > 0:
        slot[s, SL_BODY_RANDOM + randomness.label(n, chi2)] += n
    hist[row, :] = 0
    slot[s, SL_WIN_N] = 0
    slot[s, SL_BLOCK_BASE] = 0
    slot[s, SL_CUR_BLOCK] = -1
    return k


@njit(cache=True)
def _release(s, slot, free_rows, n_free):
    row = slot[s, SL_ROW]
    if row >= 0:
        free_rows[n_free] = row
        n_free += 1
        slot[s, SL_ROW] = -1
    return n_free


@njit(cache=True, inline="always")
def _count_bytes(h, buf, start, end):
    """Add the byte values of ``buf[start:end]`` to the counts ``h``: eight at a
    time from one 64-bit load (~30 % faster than a load per byte; the order
    within a word does not matter to the counts)."""
    n8 = (end - start) // 8
    words = buf[start: start + 8 * n8].view(np.uint64)
    for k in range(n8):
        v = words[k]
        h[v & 0xFF] += 1
        h[(v >> 8) & 0xFF] += 1
        h[(v >> 16) & 0xFF] += 1
        h[(v >> 24) & 0xFF] += 1
        h[(v >> 32) & 0xFF] += 1
        h[(v >> 40) & 0xFF] += 1
        h[(v >> 48) & 0xFF] += 1
        h[v >> 56] += 1
    for k in range(start + 8 * n8, end):
        h[buf[k]] += 1


@njit(cache=True)
def _add_payload(s, pos, buf, off, cap, slot, hist, free_rows, counters, windows):
    """Histogram captured payload at stream offset ``pos`` into the windows
    (and body blocks) of slot ``s``. Bytes of windows already finished
    (retransmissions, late segments) are not counted again."""
    j = 0
    while j < cap:
        if pos < HEAD_BYTES:
            w = 0
            end = HEAD_BYTES
        else:
            w = 1 + (pos - HEAD_BYTES) // WINDOW_BYTES
            end = (pos // BLOCK_BYTES + 1) * BLOCK_BYTES  # windows after the head are whole blocks
        take = min(cap - j, end - pos)
        if w > slot[s, SL_CUR_WIN]:
            counters[CT_WINDOWS] = _finish_window(s, slot, hist, windows, counters[CT_WINDOWS])
            slot[s, SL_CUR_WIN] = w
        if w == slot[s, SL_CUR_WIN]:
            row = slot[s, SL_ROW]
            if row < 0:
                counters[CT_FREE_HIST] -= 1
                row = free_rows[counters[CT_FREE_HIST]]
                slot[s, SL_ROW] = row
            if w > 0 and pos // BLOCK_BYTES > slot[s, SL_CUR_BLOCK]:
                _finish_block(s, slot, hist)
                slot[s, SL_CUR_BLOCK] = pos // BLOCK_BYTES
            _count_bytes(hist[row], buf, off + j, off + j + take)
            slot[s, SL_WIN_N] += take
            slot[s, SL_COVERED] += take
        pos += take
        j += take


@njit(cache=True)
def unwrap_seq(seq, base_seq, near):
    """Stream offset of 32-bit sequence number ``seq`` (relative to
    ``base_seq``), unwrapped past 4 GiB to the value closest to ``near``."""
    rel32 = (seq - base_seq) & 0xFFFFFFFF
    return near + ((rel32 - (near & 0xFFFFFFFF) + 0x80000000) & 0xFFFFFFFF) - 0x80000000


@njit(cache=True)
def _stream_offset(s, proto, seq, wire, slot):
    """Where this payload starts in the direction's stream; -1 to ignore it.

    TCP uses sequence numbers (unwrapped past 4 GiB), so retransmissions and
    reordering land where they belong and gaps are counted as missed bytes.
    Other protocols append datagrams in capture order.
    """
    max_end = slot[s, SL_MAX_END]
    if proto != C.IPPROTO_TCP:
        if max_end == 0:
            slot[s, SL_AT_START] = 1
        slot[s, SL_MAX_END] = max_end + wire
        return max_end
    if slot[s, SL_BASE_SEQ] < 0:  # no SYN seen: the capture starts mid-stream
        slot[s, SL_BASE_SEQ] = seq
        slot[s, SL_AT_START] = 0
    pos = unwrap_seq(seq, slot[s, SL_BASE_SEQ], max_end)
    if pos < 0:
        return -1
    end = pos + wire
    if pos > max_end:  # a hole: count it until a late segment fills it
        slot[s, SL_MISSED] += pos - max_end
        slot[s, SL_GAP_START] = max_end
        slot[s, SL_GAP_END] = pos
    elif end <= max_end and slot[s, SL_GAP_START] < slot[s, SL_GAP_END]:
        g0, g1 = slot[s, SL_GAP_START], slot[s, SL_GAP_END]
        if pos <= g0 < end:
            filled = min(end, g1) - g0
            slot[s, SL_MISSED] -= filled
            slot[s, SL_GAP_START] = g0 + filled
        elif pos < g1 <= end:
            filled = g1 - max(pos, g0)
            slot[s, SL_MISSED] -= filled
            slot[s, SL_GAP_END] = g1 - filled
    if end > max_end:
        slot[s, SL_MAX_END] = end
    return pos


@njit(cache=True, inline="always")
def _region_start(index):
    return 0 if index == 0 else PROBE_FIRST << (index - 1)


@njit(cache=True)
def _hand_over_region(s, slot, ready, counters):
    """List the region being collected and move on to the next one.

    The buffer row goes with the ready entry, so the slot can start its next
    region at once; the caller frees the row after reading it.
    """
    if slot[s, SL_REG_STATE] != 1:
        return
    k = counters[CT_READY]
    ready[k, RD_SLOT] = s
    ready[k, RD_ROW] = slot[s, SL_REG_ROW]
    ready[k, RD_START] = slot[s, SL_REG_START]
    ready[k, RD_LEN] = slot[s, SL_REG_LEN]
    ready[k, RD_INDEX] = slot[s, SL_REG_INDEX]
    ready[k, RD_KEPT_END] = slot[s, SL_REG_OOO]
    ready[k, RD_CAP] = slot[s, SL_REG_CAP]
    ready[k, RD_COV] = slot[s, SL_REG_COV]
    counters[CT_READY] = k + 1
    slot[s, SL_REG_STATE] = 0
    slot[s, SL_REG_ROW] = -1
    slot[s, SL_REG_COV] = -1
    slot[s, SL_REG_INDEX] += 1


@njit(cache=True)
def _take_row(free, counters, which):
    counters[which] -= 1
    return free[counters[which]]


@njit(cache=True)
def _put_row(row, free, counters, which):
    free[counters[which]] = row
    counters[which] += 1


@njit(cache=True)
def _add_region(s, pos, buf, off, cap, slot, heads, head_free, small_heads, small_free, head_cov, cov_free,
                ready, counters):
    """Copy the part of the payload that falls in the region being collected.

    In-order data is appended with one copy (SL_REG_LEN is the contiguous
    length); a segment after a hole is kept aside, byte by byte with a
    coverage bitmap, until the hole is filled. The first copy of a byte wins.
    The region lives in a small row until its data reaches past it, then in
    a full one (its bytes copied over once).
    """
    if slot[s, SL_REG_STATE] == 0:
        index = slot[s, SL_REG_INDEX]
        while index <= MAX_PROBES and pos >= _region_start(index) + REGION_BYTES:
            index += 1  # the stream jumped past this region (a gap, or a mid-stream start)
        slot[s, SL_REG_INDEX] = index
        if index > MAX_PROBES or pos + cap <= _region_start(index):
            return
        slot[s, SL_REG_ROW] = _take_row(small_free, counters, CT_FREE_SMALL)
        slot[s, SL_REG_CAP] = SMALL_REGION_BYTES
        slot[s, SL_REG_COV] = -1
        slot[s, SL_REG_STATE] = 1
        slot[s, SL_REG_START] = max(pos, _region_start(index)) if index else 0
        slot[s, SL_REG_LEN] = 0
        slot[s, SL_REG_OOO] = 0
    start = slot[s, SL_REG_START]
    lo, hi = max(pos, start) - start, min(pos + cap, start + REGION_BYTES) - start
    contig = slot[s, SL_REG_LEN]
    if lo < hi and hi > contig:
        if hi > slot[s, SL_REG_CAP]:  # outgrew the small row: move to a full one
            small = slot[s, SL_REG_ROW]
            row = _take_row(head_free, counters, CT_FREE_HEADS)
            kept = max(contig, slot[s, SL_REG_OOO])
            heads[row, :kept] = small_heads[small, :kept]
            _put_row(small, small_free, counters, CT_FREE_SMALL)
            slot[s, SL_REG_ROW] = row
            slot[s, SL_REG_CAP] = REGION_BYTES
        rows = heads if slot[s, SL_REG_CAP] == REGION_BYTES else small_heads
        row = slot[s, SL_REG_ROW]
        if lo <= contig and slot[s, SL_REG_OOO] <= contig:  # the common, in-order case
            rows[row, contig:hi] = buf[off + start + contig - pos: off + start + hi - pos]
            contig = hi
        else:
            cov = slot[s, SL_REG_COV]
            if cov < 0:  # first hole: start the bitmap
                cov = _take_row(cov_free, counters, CT_FREE_COV)
                head_cov[cov, :] = 0
                slot[s, SL_REG_COV] = cov
            for k in range(max(lo, contig), hi):
                bit = 1 << (k & 7)
                if not head_cov[cov, k >> 3] & bit:
                    rows[row, k] = buf[off + start + k - pos]
                    head_cov[cov, k >> 3] |= bit
            slot[s, SL_REG_OOO] = max(slot[s, SL_REG_OOO], hi)
            while contig < REGION_BYTES and head_cov[cov, contig >> 3] & (1 << (contig & 7)):
                contig += 1
        slot[s, SL_REG_LEN] = contig
    if slot[s, SL_MAX_END] >= start + REGION_BYTES:
        _hand_over_region(s, slot, ready, counters)


@njit(cache=True, inline="always")
def _note_tunnel(f, i, fields, addrs, flow, tunnel_addr):
    """Keep the tunnel the flow's first packet came in: kind, id and outer endpoints."""
    kind = fields[D.F_TUNNEL, i]
    flow[f, FL_TUNNEL] = kind
    if kind != C.TUNNEL_NONE:
        flow[f, FL_TUNNEL_ID] = fields[D.F_TUNNEL_ID, i]
        flow[f, FL_TUNNEL_IP_VERSION] = fields[D.F_TUNNEL_IP_VERSION, i]
        for k in range(4):
            tunnel_addr[f, k] = addrs[D.A_TUNNEL_SRC_HI + k, i]


@njit(cache=True)
def update_flows(start, fields, addrs, buf, flow_ids, dirs, flow, flow_addr, tunnel_addr, slot, hist,
                 free_rows, windows, heads, head_free, small_heads, small_free, head_cov, cov_free, ready,
                 counters, idle, after_close):
    """Fold packets ``start..`` of a batch into the flow state.

    Returns ``(stop, collisions, ended)``. It stops early, at packet
    ``stop``, when a pool (histogram rows, window rows, region rows small
    and full, coverage bitmaps, the ready list) may run out; the caller drains or grows them and calls
    again from ``stop``. It also stops when packet ``stop`` comes after its
    flow ended: more than ``idle`` ns after the flow's last packet, or
    after a FIN/RST close either ``after_close`` ns later or as a new SYN;
    ``ended`` is then that flow (else -1), which the caller closes before
    the packet starts a new flow. A collision is a packet whose key hash
    matched a flow with other endpoints (it is not counted).
    """
    collisions = 0
    n = fields.shape[1]
    for i in range(start, n):
        f = flow_ids[i]
        if f < 0:
            continue
        if (counters[CT_FREE_HIST] < 1 or counters[CT_FREE_HEADS] < 1 or counters[CT_FREE_SMALL] < 1
                or counters[CT_FREE_COV] < 1 or counters[CT_READY] + 2 > ready.shape[0]
                or counters[CT_WINDOWS] + fields[D.F_PAYLOAD_CAP, i] // WINDOW_BYTES + 4 > windows.shape[0]):
            return i, collisions, -1
        d = dirs[i]
        if d == 0:
            same = addrs[0, i] == flow_addr[f, 0] and addrs[1, i] == flow_addr[f, 1] \
                and addrs[2, i] == flow_addr[f, 2] and addrs[3, i] == flow_addr[f, 3] \
                and fields[D.F_SPORT, i] == flow[f, FL_A_PORT] and fields[D.F_DPORT, i] == flow[f, FL_B_PORT]
        else:
            same = addrs[2, i] == flow_addr[f, 0] and addrs[3, i] == flow_addr[f, 1] \
                and addrs[0, i] == flow_addr[f, 2] and addrs[1, i] == flow_addr[f, 3] \
                and fields[D.F_DPORT, i] == flow[f, FL_A_PORT] and fields[D.F_SPORT, i] == flow[f, FL_B_PORT]
        proto = fields[D.F_PROTO, i]
        if not same or proto != flow[f, FL_PROTO]:
            collisions += 1
            continue
        ts = fields[D.F_TS, i]
        if flow[f, FL_FIRST_DIR] >= 0:
            gap = ts - flow[f, FL_LAST_TS]
            if gap > idle:
                return i, collisions, f
            if flow[f, FL_CLOSED]:
                syn = fields[D.F_TCP_FLAGS, i] & (C.TCP_SYN | C.TCP_ACK) == C.TCP_SYN
                if gap > after_close or (syn and proto == C.IPPROTO_TCP):
                    return i, collisions, f
        if flow[f, FL_FIRST_DIR] < 0:
            flow[f, FL_FIRST_DIR] = d
            flow[f, FL_FIRST_TS] = ts
            flow[f, FL_LAST_TS] = ts
            flow[f, FL_VLAN] = fields[D.F_VLAN, i]
            _note_tunnel(f, i, fields, addrs, flow, tunnel_addr)
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
        if proto == C.IPPROTO_TCP and flags & C.TCP_SYN:
            if flags & C.TCP_ACK:
                if flow[f, FL_SYNACK_DIR] < 0:
                    flow[f, FL_SYNACK_DIR] = d
            elif flow[f, FL_SYN_DIR] < 0:
                flow[f, FL_SYN_DIR] = d
            if slot[s, SL_BASE_SEQ] < 0:  # the SYN takes one sequence number
                slot[s, SL_BASE_SEQ] = (fields[D.F_TCP_SEQ, i] + 1) & 0xFFFFFFFF
                slot[s, SL_AT_START] = 1
        if wire > 0 or cap > 0:
            pos = _stream_offset(s, proto, fields[D.F_TCP_SEQ, i], max(wire, cap), slot)
            if pos >= 0:
                off = fields[D.F_PAYLOAD_OFF, i]
                _add_payload(s, pos, buf, off, cap, slot, hist, free_rows, counters, windows)
                _add_region(s, pos, buf, off, cap, slot, heads, head_free, small_heads, small_free, head_cov,
                            cov_free, ready, counters)
        if proto == C.IPPROTO_TCP and flags & (C.TCP_FIN | C.TCP_RST):
            if flags & C.TCP_FIN:
                slot[s, SL_FIN] = 1
            if flags & C.TCP_RST or (slot[2 * f, SL_FIN] and slot[2 * f + 1, SL_FIN]):
                if not flow[f, FL_CLOSED]:
                    flow[f, FL_CLOSED] = 2 if flags & C.TCP_RST else 1
                    for t in (2 * f, 2 * f + 1):
                        counters[CT_WINDOWS] = _finish_window(t, slot, hist, windows, counters[CT_WINDOWS])
                        counters[CT_FREE_HIST] = _release(t, slot, free_rows, counters[CT_FREE_HIST])
                        _hand_over_region(t, slot, ready, counters)
    return n, collisions, -1


@njit(cache=True)
def finish_slots(slots, slot, hist, free_rows, windows, ready, counters):
    """Flows end (timeout, end of input): close the windows of these slots
    still being filled and hand over the regions still collecting.
    ``windows`` and ``ready`` must have room for all of them."""
    for s in slots:
        counters[CT_WINDOWS] = _finish_window(s, slot, hist, windows, counters[CT_WINDOWS])
        counters[CT_FREE_HIST] = _release(s, slot, free_rows, counters[CT_FREE_HIST])
        _hand_over_region(s, slot, ready, counters)
