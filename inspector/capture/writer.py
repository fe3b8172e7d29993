"""Write decoded packets back out as classic pcap records.

The records are the frames as captured (``PacketBatch.buf`` from
``F_FRAME_OFF``, ``F_CAP_LEN`` bytes) with their timestamps and wire
lengths; timestamps are written with nanosecond resolution (the reader's
``F_TS``), so nothing is rounded.
"""

from __future__ import annotations

import struct

import numpy as np

from inspector.capture import constants as C
from inspector.capture import decode as D
from inspector.capture.reader import PacketBatch

FILE_HEADER = struct.Struct("<IHHiIII")  # magic, version 2.4, thiszone, sigfigs, snaplen, linktype
RECORD_HEADER = struct.Struct("<IIII")  # ts_sec, ts_nsec, incl_len, orig_len
FILE_HEADER_BYTES = FILE_HEADER.size
RECORD_HEADER_BYTES = RECORD_HEADER.size


def pcap_header(linktype: int, snaplen: int) -> bytes:
    """The 24-byte file header of a little-endian, nanosecond pcap."""
    return FILE_HEADER.pack(C.PCAP_MAGIC_NS, 2, 4, 0, 0, snaplen, linktype)


def record_sizes(batch: PacketBatch, rows: np.ndarray) -> np.ndarray:
    """Bytes each selected packet takes in a pcap file (record header included)."""
    return batch.fields[D.F_CAP_LEN, rows] + RECORD_HEADER_BYTES


def pcap_record(batch: PacketBatch, row: int) -> bytes:
    """One packet of the batch as a pcap record (header and captured frame)."""
    f = batch.fields[:, row]
    ts, cap, off = int(f[D.F_TS]), int(f[D.F_CAP_LEN]), int(f[D.F_FRAME_OFF])
    head = RECORD_HEADER.pack(ts // 1_000_000_000, ts % 1_000_000_000, cap, int(f[D.F_WIRE_LEN]))
    return head + batch.buf[off : off + cap].tobytes()
