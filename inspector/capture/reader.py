"""Read capture files (pcap, pcapng, gzip'd) as a stream of packet batches.

The file is read in fixed-size chunks into one reusable buffer and the
compiled walkers in ``decode.py`` turn whole records into columns, so memory
does not grow with the size of the capture. A record cut by the end of the
file, a damaged record header or an undecodable frame is counted as an
anomaly; only a file that is not a capture at all raises ``CaptureError``.
"""

from __future__ import annotations

import select
import struct
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from inspector.capture import constants as C
from inspector.capture import decode as D
from inspector.capture.gzip_stream import GzipStream
from inspector.errors import CaptureError
from inspector.text import file_name

CHUNK_BYTES = 8 * 1024 * 1024
BATCH_ROWS = 131072
LIVE_TICK = 1.0  # seconds a live reader waits for packets before it hands over an empty batch


@dataclass
class PacketBatch:
    """Decoded packets of one chunk. Views into reused buffers: consume
    before asking the reader for the next batch."""

    buf: np.ndarray  # uint8: the chunk the payload offsets point into
    fields: np.ndarray  # int64 [decode.N_FIELDS, n]
    addrs: np.ndarray  # uint64 [decode.N_ADDRS, n]

    @property
    def n(self) -> int:
        return self.fields.shape[1]


@dataclass
class InputStats:
    """What one input file held: counts for the ``inputs`` table."""

    file: str
    format: str = ""
    linktypes: set[int] = field(default_factory=set)
    packets: int = 0
    captured_bytes: int = 0
    wire_bytes: int = 0
    truncated_packets: int = 0  # captured shorter than on the wire (snaplen)
    non_ip_packets: int = 0
    anomalies: Counter[str] = field(default_factory=Counter)
    anomaly_details: dict[str, str] = field(default_factory=dict)
    # a live capture's accounting (inspector.live.Sensor.close); None: unknown, or a file
    dropped_kernel: int | None = None
    dropped_interface: int | None = None
    unread_at_stop: int | None = None
    end: str = ""  # schema.CAPTURE_ENDS for a live capture

    def anomaly(self, kind: str, detail: str, count: int = 1) -> None:
        self.anomalies[kind] += count
        self.anomaly_details.setdefault(kind, detail)


class _Chunker:
    """A growable byte window over a stream: ``buf[pos:end]`` is unread."""

    def __init__(self, stream: BinaryIO, path: str, live: bool = False) -> None:
        self.stream = stream
        self.path = path
        self.live = live  # a pipe: hand over what arrived instead of waiting for a full chunk
        self.buf = np.empty(CHUNK_BYTES, dtype=np.uint8)
        self.pos = 0
        self.end = 0
        self.eof = False
        self.idle = False  # live: the last fill waited LIVE_TICK and nothing arrived
        self.consumed_before = 0  # file offset of buf[0]

    @property
    def offset(self) -> int:
        return self.consumed_before + self.pos

    def fill(self, need: int = 0) -> None:
        """Compact and read more; grow the buffer when one record needs it."""
        remaining = self.end - self.pos
        if need > self.buf.size:
            bigger = np.empty(max(need, 2 * self.buf.size), dtype=np.uint8)
            bigger[:remaining] = self.buf[self.pos : self.end]
            self.buf = bigger
        elif self.pos:
            self.buf[:remaining] = self.buf[self.pos : self.end]
        self.consumed_before += self.pos
        self.pos, self.end = 0, remaining
        view = memoryview(self.buf)
        want = max(need, remaining + 1) if self.live else self.buf.size
        self.idle = False
        while self.end < self.buf.size and not self.eof:
            if self.live and not _readable(self.stream, 0.0 if self.end >= want else LIVE_TICK):
                # what the pipe holds now: low-rate traffic is not held back; nothing for a tick: say so
                self.idle = self.end < want
                break
            try:
                got = self.stream.readinto(view[self.end :])
            except OSError as exc:
                raise _ReadFailed(str(exc) or type(exc).__name__) from exc
            if not got:
                self.eof = True
            else:
                self.end += got

    def available(self) -> int:
        return self.end - self.pos

    def take(self, size: int) -> bytes:
        if self.available() < size:
            self.fill(size)
        data = self.buf[self.pos : self.pos + size].tobytes()
        self.pos += len(data)
        return data


def _readable(stream: BinaryIO, wait: float) -> bool:
    """More bytes can be read from the pipe without blocking (within ``wait`` seconds)."""
    return bool(select.select([stream], [], [], wait)[0])


class _ReadFailed(Exception):
    """Reading the file failed mid-way (an I/O error)."""


def _open_file(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")  # noqa: SIM115 - closed by the reader
    except FileNotFoundError:
        raise CaptureError(path, "no such file") from None
    except IsADirectoryError:
        raise CaptureError(path, "is a directory, not a capture file") from None
    except OSError as exc:
        raise CaptureError(path, f"cannot open: {exc.strerror or exc}") from None


def _uncompressed(raw: BinaryIO) -> BinaryIO | GzipStream:
    """The capture bytes of ``raw``: decompressed when it starts with the gzip magic."""
    if _head(raw, 2) == C.GZIP_MAGIC:
        return GzipStream(raw)
    return raw


def _head(raw: BinaryIO, size: int) -> bytes:
    """The first bytes of a stream without consuming them."""
    peek = getattr(raw, "peek", None)
    if peek is not None:
        return peek(size)[:size]
    if getattr(raw, "seekable", lambda: False)():
        at = raw.tell()
        head = raw.read(size)
        raw.seek(at)
        return head
    return b""  # an unseekable stream without peek: taken as an uncompressed capture


class CaptureReader:
    """Iterate the packets of one capture file as ``PacketBatch`` objects.

    ``stream`` reads an already-open binary stream instead (``path`` then
    only names it), which is left open. With ``live=True`` it is an
    unbuffered pipe (e.g. ``live:eth1``): each batch holds what arrived,
    handed over as soon as a whole record is there, and an empty batch when
    nothing arrived for ``LIVE_TICK`` seconds.

    Example::

        reader = CaptureReader("migration.pcap.gz")
        for batch in reader:
            ...
        reader.stats.packets
    """

    def __init__(self, path: str | Path, *, stream: BinaryIO | None = None, live: bool = False) -> None:
        self.path = Path(path)
        self.stats = InputStats(file=file_name(path))
        self.live = live
        self._stream = stream
        self.linktype: int | None = None  # of the pcap header, or the first pcapng interface
        self.snaplen: int | None = None
        self._raw: BinaryIO | None = None
        self._section: _PcapngSection | None = None  # pcapng: the interfaces of the section being read
        self._fields = np.empty((D.N_FIELDS, BATCH_ROWS), dtype=np.int64)
        self._addrs = np.empty((D.N_ADDRS, BATCH_ROWS), dtype=np.uint64)

    @property
    def file_bytes_read(self) -> int:
        """Bytes of the file read so far (compressed bytes for gzip): for progress."""
        try:
            return self._raw.tell() if self._raw is not None and not self._raw.closed else 0
        except (OSError, ValueError):
            return 0

    def linktype_of(self, interface: int) -> int:
        """The link type of the packets of the batch just read that came in on ``interface`` (``F_IFACE``)."""
        if self._section is None:
            return int(self.linktype or 0)
        return int(self._section.linktype[interface])

    def __iter__(self) -> Iterator[PacketBatch]:
        with ExitStack() as owned:
            if self._stream is not None:  # the caller's: left open
                raw = self._stream
            else:
                raw = owned.enter_context(_open_file(self.path))
            self._raw = raw
            stream = raw if self.live else _uncompressed(raw)
            yield from self._read(stream)
            if isinstance(stream, GzipStream):
                self._note_gzip_end(stream)
                self.stats.format += ".gz"

    def _read(self, stream: BinaryIO | GzipStream) -> Iterator[PacketBatch]:
        chunk = _Chunker(stream, str(self.path), live=self.live)
        try:
            chunk.fill(24 if self.live else 0)
            while chunk.idle and chunk.available() < 24:  # live: wait for the file header
                chunk.fill(24)
        except _ReadFailed as exc:
            raise CaptureError(self.path, f"cannot read: {exc}") from None
        if chunk.available() == 0 and self.live:
            self.stats.format = "pcap"  # stopped before the first packet
            return
        if chunk.available() == 0 and getattr(stream, "damage", ""):
            raise CaptureError(self.path, stream.damage)
        if chunk.available() == 0:
            raise CaptureError(self.path, "empty file, not a capture")
        if chunk.available() < 4:
            raise CaptureError(self.path, "too short to be a capture")
        magic_le = int.from_bytes(chunk.buf[:4].tobytes(), "little")
        magic_be = int.from_bytes(chunk.buf[:4].tobytes(), "big")
        try:
            if magic_le == C.PCAPNG_SHB:
                self.stats.format = "pcapng"
                yield from self._read_pcapng(chunk)
            elif magic_le in C.PCAP_MAGICS or magic_be in C.PCAP_MAGICS:
                self.stats.format = "pcap"
                yield from self._read_pcap(chunk)
            else:
                raise CaptureError(
                    self.path,
                    "not a pcap or pcapng capture (starts with "
                    f"{chunk.buf[: min(4, chunk.end)].tobytes().hex()})",
                )
        except _ReadFailed as exc:
            if self.stats.packets == 0:
                raise CaptureError(self.path, f"cannot read: {exc}") from None
            self.stats.anomaly("read-error", f"reading failed after {chunk.offset} bytes ({exc}); "
                                                  "the rest was not read")

    def _note_gzip_end(self, stream: GzipStream) -> None:
        """A gzip stream that stopped early: what it held was analysed; say why the rest was not."""
        if stream.cut:
            self.stats.anomaly("truncated-compressed-stream", f"{stream.damage}; the records before were analysed")
        elif stream.damage:
            if self.stats.packets == 0:
                raise CaptureError(self.path, stream.damage)
            self.stats.anomaly("damaged-compressed-stream", f"{stream.damage}; the rest was not read")

    # -- classic pcap -------------------------------------------------------
    def _read_pcap(self, chunk: _Chunker) -> Iterator[PacketBatch]:
        if chunk.available() < 24:
            raise CaptureError(self.path, "pcap file header cut short (< 24 bytes)")
        head = chunk.take(24)
        big = int.from_bytes(head[:4], "big") in C.PCAP_MAGICS
        endian = ">" if big else "<"
        magic, major, minor, _zone, _sigfigs, snaplen, linkfield = struct.unpack(endian + "IHHiIII", head)
        if major < 2:  # as wiretap: 2.x of any minor, and later majors, are read
            raise CaptureError(self.path, f"damaged pcap header: version {major}.{minor}, expected 2.4")
        nano = magic == C.PCAP_MAGIC_NS
        extra = C.PCAP_MODIFIED_EXTRA if magic == C.PCAP_MAGIC_MODIFIED else 0
        # before 2.3 the record header held the lengths the other way round; some 2.3 writers too
        swap = 1 if (major, minor) < (2, 3) else 2 if (major, minor) == (2, 3) else 0
        linktype = linkfield & 0xFFFF
        self._note_linktype(linktype, "the file")
        self.stats.linktypes.add(linktype)
        self.linktype, self.snaplen = linktype, snaplen
        while True:
            n, pos, damaged = D.walk_pcap(
                chunk.buf, chunk.pos, chunk.end, big, nano, linktype, extra, swap,
                self._fields, self._addrs, 0, BATCH_ROWS,
            )
            chunk.pos = pos
            if n:
                yield self._batch(chunk, n)
            if damaged:
                self.stats.anomaly(
                    "damaged-record-header",
                    f"impossible record length at file offset {chunk.offset}; the rest was not read",
                )
                return
            if n == BATCH_ROWS:
                continue
            if chunk.eof:
                self._note_truncated_tail(chunk)
                return
            incl = _pcap_incl_len(chunk, big, swap)
            chunk.fill(16 + extra + incl)
            if chunk.idle:  # a quiet link: the consumer's clock still moves on (flows time out)
                yield self._batch(chunk, 0)

    # -- pcapng -------------------------------------------------------------
    def _read_pcapng(self, chunk: _Chunker) -> Iterator[PacketBatch]:
        section = self._section = _PcapngSection(self.path)
        while True:
            n, pos, stop = D.walk_pcapng(
                chunk.buf, chunk.pos, chunk.end, section.big,
                section.linktype, section.pow2, section.exp, section.offset_s, section.snaplen,
                section.count, self._fields, self._addrs, 0, BATCH_ROWS,
            )
            chunk.pos = pos
            if n:
                yield self._batch(chunk, n)
            if stop == 1:
                if not self._pcapng_meta_block(chunk, section):
                    return
                continue
            if stop == 2:
                self._damaged_pcapng(chunk, section)
                return
            if stop == 3:
                self.stats.anomaly("undeclared-interface", "packet block for an interface with no description block")
                chunk.take(_pcapng_block_len(chunk, section.big))
                continue
            if n == BATCH_ROWS:
                continue
            if chunk.eof:
                self._note_truncated_tail(chunk)
                return
            need = _pcapng_block_len(chunk, section.big) if chunk.available() >= 8 else 12
            chunk.fill(max(need, 12))

    def _pcapng_meta_block(self, chunk: _Chunker, section: _PcapngSection) -> bool:
        """Parse a non-packet block at ``chunk.pos``; False when the file ends."""
        if chunk.available() < 12:
            chunk.fill(12)
            if chunk.available() < 12:
                self._note_truncated_tail(chunk)
                return False
        btype_raw = chunk.buf[chunk.pos : chunk.pos + 4].tobytes()
        if int.from_bytes(btype_raw, "little") == C.PCAPNG_SHB:
            bom = chunk.buf[chunk.pos + 8 : chunk.pos + 12].tobytes()
            if int.from_bytes(bom, "little") == C.PCAPNG_BYTE_ORDER_MAGIC:
                section.start(big=False)
            elif int.from_bytes(bom, "big") == C.PCAPNG_BYTE_ORDER_MAGIC:
                section.start(big=True)
            else:
                self._damaged_pcapng(chunk, section, "bad byte-order magic in section header")
                return False
        elif section.count == 0 and not section.started:
            raise CaptureError(self.path, "damaged pcapng: no section header block")
        blen = _pcapng_block_len(chunk, section.big)
        if blen < 12 or blen % 4 or blen > C.MAX_RECORD_BYTES:
            self._damaged_pcapng(chunk, section)
            return False
        if chunk.available() < blen:
            chunk.fill(blen)
            if chunk.available() < blen:
                self._note_truncated_tail(chunk)
                return False
        block = chunk.take(blen)
        btype = struct.unpack((">" if section.big else "<") + "I", block[:4])[0]
        if btype == C.PCAPNG_IDB:
            linktype = section.add_interface(block)
            self.stats.linktypes.add(linktype)
            if self.linktype is None:
                self.linktype, self.snaplen = linktype, int(section.snaplen[section.count - 1])
            self._note_linktype(linktype, f"interface {section.count - 1}")
        return True

    def _damaged_pcapng(self, chunk: _Chunker, section: _PcapngSection, why: str = "") -> None:
        why = why or f"impossible block length at file offset {chunk.offset}"
        if self.stats.packets == 0 and not section.count:
            raise CaptureError(self.path, f"damaged pcapng: {why}")
        self.stats.anomaly("damaged-block-header", f"{why}; the rest was not read")

    # -- shared -------------------------------------------------------------
    def _note_linktype(self, linktype: int, where: str) -> None:
        """A link type that carries no IP, or is not decoded, is an anomaly of a valid file, never a refusal."""
        if linktype not in C.SUPPORTED_LINKTYPES:
            kind, detail = _undecoded_link(linktype)
            self.stats.anomaly(kind, f"{where}: {detail}", 0)

    def _count_undecoded_links(self, fields: np.ndarray) -> None:
        """Count the packets of link types not decoded under their link type's anomaly kind."""
        unread = fields[D.F_STATUS] == C.STATUS_UNSUPPORTED_LINK
        if self._section is None:
            linktypes = np.full(int(unread.sum()), self.linktype or 0)
        else:
            linktypes = self._section.linktype[fields[D.F_IFACE][unread]]
        for linktype, count in zip(*np.unique(linktypes, return_counts=True), strict=True):
            kind, detail = _undecoded_link(int(linktype))
            self.stats.anomaly(kind, detail, int(count))

    def _note_truncated_tail(self, chunk: _Chunker) -> None:
        left = chunk.available()
        if left:
            self.stats.anomaly(
                "truncated-last-record",
                f"file ends {left} bytes into a record at offset {chunk.offset}",
            )
            chunk.pos = chunk.end

    def _batch(self, chunk: _Chunker, n: int) -> PacketBatch:
        fields = self._fields[:, :n]
        st = self.stats
        st.packets += n
        st.captured_bytes += int(fields[D.F_CAP_LEN].sum())
        st.wire_bytes += int(fields[D.F_WIRE_LEN].sum())
        st.truncated_packets += int(np.count_nonzero(fields[D.F_CAP_LEN] < fields[D.F_WIRE_LEN]))
        status = np.bincount(fields[D.F_STATUS], minlength=8)
        st.non_ip_packets += int(status[C.STATUS_NOT_IP])
        for code, kind in C.STATUS_ANOMALY_KINDS.items():
            if status[code]:
                st.anomaly(kind, _STATUS_DETAILS[code], int(status[code]))
        if status[C.STATUS_UNSUPPORTED_LINK]:
            self._count_undecoded_links(fields)
        return PacketBatch(buf=chunk.buf, fields=fields, addrs=self._addrs[:, :n])


_STATUS_DETAILS = {
    C.STATUS_HEADERS_CUT: "snaplen ended inside the IP, transport or tunnel headers; packet not keyed to a flow",
    C.STATUS_BAD_IP: "IP header with impossible version or lengths",
    C.STATUS_BAD_L4: "TCP/UDP header with impossible lengths",
    C.STATUS_FRAGMENT: "non-first IP fragment (fragments are not reassembled)",
    C.STATUS_BAD_TUNNEL: "a tunnel header (VXLAN, GENEVE, GRE, ERSPAN, MPLS, PPPoE, GTP-U ...) with impossible "
                         "lengths or version, "
                         f"or tunnels nested more than {C.MAX_TUNNEL_DEPTH} deep; packet not keyed to a flow",
}


def _undecoded_link(linktype: int) -> tuple[str, str]:
    """The anomaly kind and detail of a link type that is not decoded."""
    name = C.LINKTYPES_WITHOUT_IP.get(linktype)
    if name:
        return "link-type-without-ip", f"link type {linktype} ({name}) carries no IP: packets counted, not analysed"
    return "unsupported-link-type", (f"link type {linktype} is not decoded (not one libpcap documents as "
                                     "carrying IP, or private use): packets counted, not analysed")


def _pcap_incl_len(chunk: _Chunker, big: bool, swap: int) -> int:
    """The captured length of the record at ``chunk.pos`` (``swap`` as ``decode.walk_pcap``)."""
    if chunk.available() < 16:
        return 0
    first, second = struct.unpack((">" if big else "<") + "II", chunk.buf[chunk.pos + 8 : chunk.pos + 16].tobytes())
    return second if swap == 1 or (swap == 2 and first > second) else first


def _pcapng_block_len(chunk: _Chunker, big: bool) -> int:
    raw = chunk.buf[chunk.pos + 4 : chunk.pos + 8].tobytes()
    return int.from_bytes(raw, "big" if big else "little")


class _PcapngSection:
    """Interfaces of the current pcapng section, as arrays for the walker."""

    MAX_INTERFACES = 1 << 20  # 40 MB of arrays; the interfaces past it are ignored (their packets counted)

    def __init__(self, path: Path) -> None:
        self.path = path
        self.big = False
        self.started = False
        self.count = 0
        self.linktype = np.full(16, -1, dtype=np.int64)
        self.pow2 = np.zeros(16, dtype=np.bool_)
        self.exp = np.full(16, 6, dtype=np.int64)
        self.offset_s = np.zeros(16, dtype=np.int64)
        self.snaplen = np.zeros(16, dtype=np.int64)

    def start(self, big: bool) -> None:
        self.big = big
        self.started = True
        self.count = 0

    def add_interface(self, block: bytes) -> int:
        e = ">" if self.big else "<"
        if len(block) < 20:
            raise CaptureError(self.path, "damaged pcapng: interface description block too short")
        linktype, _reserved, snaplen = struct.unpack(e + "HHI", block[8:16])
        i = self.count
        if i >= self.MAX_INTERFACES:
            return int(linktype)
        if i >= self.linktype.size:
            for name in ("linktype", "pow2", "exp", "offset_s", "snaplen"):
                arr = getattr(self, name)
                setattr(self, name, np.concatenate([arr, np.zeros_like(arr)]))
        self.linktype[i] = linktype
        self.snaplen[i] = snaplen
        self.pow2[i] = False
        self.exp[i] = 6
        self.offset_s[i] = 0
        opts = block[16:-4]
        at = 0
        while at + 4 <= len(opts):
            code, length = struct.unpack(e + "HH", opts[at : at + 4])
            value = opts[at + 4 : at + 4 + length]
            if code == 0:
                break
            if code == C.PCAPNG_OPT_IF_TSRESOL and value:  # an option may claim more than its block holds
                self.pow2[i] = bool(value[0] & 0x80)
                self.exp[i] = value[0] & 0x7F
            elif code == C.PCAPNG_OPT_IF_TSOFFSET and len(value) >= 8:
                self.offset_s[i] = struct.unpack(e + "q", value[:8])[0]
            at += 4 + ((length + 3) & ~3)
        self.count += 1
        return int(linktype)
