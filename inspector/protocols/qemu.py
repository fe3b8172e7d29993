"""QEMU live migration: the main channel (QEVM stream) and multifd channels.

Main channel (qemu/qemu migration/savevm.c, migration/ram.c):
  "QEVM" be32 version 3, an optional CONFIGURATION section (be32 length +
  machine type), then sections. START/FULL: type, be32 section id, u8 length
  + idstr (device name), be32 instance id, be32 version id; PART/END: type,
  be32 section id. Device state is opaque (no length): a section ends with a
  FOOTER 7E + be32 section id (machine types >= 2.4 send footers). RAM
  sections hold page records: be64 (offset | flags), a u8 length + RAMBlock
  name unless CONTINUE, then ZERO: 1 byte, PAGE: 4096 bytes of guest memory,
  XBZRLE: 01 + be16 length + delta, COMPRESS_PAGE: be32 length + data, up to
  EOS. After EOF: VMDESCRIPTION 06 + be32 length + JSON.

Multifd channel (migration/multifd.h, multifd.c): a 64-byte init packet
  (be32 magic 0x11223344, be32 version 1, VM UUID, u8 channel id, padding),
  then packets: magic, version, be32 flags, pages_alloc, normal_pages,
  next_packet_size, be64 packet_num, be32 zero_pages (QEMU >= 9.0, unused
  before), reserved, ramblock[256], be64 offset[pages_alloc], then
  next_packet_size bytes of pages (raw 4 KiB pages or compressed).

Measured on the QEMU 7.2 captures (captures/): a multifd packet without
pages (normal_pages 0: SYNC packets and the last packet of a channel)
carries the next_packet_size of the previous packet but no payload, so the
next header follows right after its offset array.

Fields of a 'qemu-migration' detection: version, machine, sections (idstr in
order of appearance), ram_blocks, pages, zero_pages, xbzrle_pages,
xbzrle_bytes, compressed_pages, guest_bytes (PAGE count * 4096: guest memory
in clear in the data given), compression ('zlib', only when COMPRESS_PAGE records
outnumber PAGE records: the legacy `compress` capability), mem_size, eos, eof, vm_description,
vm_description_devices, page_size, records, stop ('end': data exhausted,
'bad': unparsed byte, 'opaque': device state whose footer is not in the data).

Fields of a 'qemu-multifd' detection: version, uuid, channel_id (None
mid-stream), packets, sync_packets, normal_pages, zero_pages, compression
('none', 'zlib', 'zstd', 'qpl', 'uadk', 'qatzip'), compression_magic_seen,
ramblocks, payload_bytes, guest_bytes (raw pages only), device_state_packets.
"""

from __future__ import annotations

import heapq
import re
from itertools import islice

import numpy as np

from inspector.units import human_bytes

from .base import (CLEARTEXT, EVERY_BYTE, Detection, anywhere, clean, cstring, lead, line, listing,
                   name_at, signature, u16, u32, u64)

# ------------------------------------------------------------------ main channel

QEVM = b"QEVM"              # QEMU_VM_FILE_MAGIC, migration/savevm.c
FILE_VERSIONS = (3, 2)      # QEMU_VM_FILE_VERSION, QEMU_VM_FILE_VERSION_COMPAT

# Section types, migration/savevm.h
EOF, START, PART, END, FULL, SUBSECTION, VMDESCRIPTION, CONFIGURATION, COMMAND = range(9)
FOOTER = 0x7E
SECTION_NAMES = {EOF: "EOF", START: "START", PART: "PART", END: "END", FULL: "FULL",
                 SUBSECTION: "SUBSECTION", VMDESCRIPTION: "VMDESCRIPTION",
                 CONFIGURATION: "CONFIGURATION", COMMAND: "COMMAND", FOOTER: "FOOTER"}

# RAM page record flags, migration/ram.c (RAM_SAVE_FLAG_*)
ZERO, MEM_SIZE, PAGE, EOS, CONTINUE, XBZRLE, HOOK, COMPRESS_PAGE, MULTIFD_FLUSH = (
    0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0x100, 0x200)
FLAG_MASK = 0x3FF           # flags live below the page offset (target pages >= 1 KiB)
KINDS = {ZERO: "ZERO", MEM_SIZE: "MEM_SIZE", PAGE: "PAGE", EOS: "EOS", XBZRLE: "XBZRLE",
         HOOK: "HOOK", COMPRESS_PAGE: "COMPRESS_PAGE", MULTIFD_FLUSH: "MULTIFD_FLUSH"}
NAMED_KINDS = (ZERO, PAGE, XBZRLE, COMPRESS_PAGE)   # carry a RAMBlock name unless CONTINUE
TARGET_PAGE_SIZE = 4096     # x86 target page; PAGE records carry exactly one
ENCODING_FLAG_XBZRLE = 0x01
RAM_IDSTR = "ram"           # the iterative section holding page records

MAX_UNITS = 200_000         # records + sections walked per call (a 16 KiB head holds < 2000)
FOOTER_TRIES = 16
ZERO_RUN_STEP = 9 * 1024       # bytes of ZERO records matched per step (bounds work per candidate)
LONG_RUN = 32               # strict: a run of ZERO records this long is checked in numpy
MIN_CHAIN = 3               # records/sections needed to accept a mid-stream sync point

# A run of ZERO|CONTINUE records (9 bytes each, fill byte 0, offsets < 1 TiB): the
# bulk of a paused guest's stream, skipped in C instead of one Python step each.
_HI_NIBBLE = b"".join(re.escape(bytes([b << 4])) for b in range(16))
_ZERO_RUN = re.compile(rb"(?:\x00\x00\x00[\x00-\xff]{3}[" + _HI_NIBBLE + rb"]\x22\x00)+", re.S)
# Mid-stream sync candidates: a page record header (ZERO, PAGE, XBZRLE, EOS, +CONTINUE) ...
# (no lookahead: a literal first byte lets the regex engine skip ahead in C; the
# search is restarted one byte after each candidate, so overlapping ones are seen)
# ... or a COMPRESS_PAGE|CONTINUE record (the legacy `compress` capability: flag 0x100 in
# byte 6) with its be32 length of at most 8 KiB ...
_HI_NIBBLE_COMPRESS = b"".join(re.escape(bytes([b << 4 | 1])) for b in range(16))
_RECORD_CAND = re.compile(rb"\x00\x00\x00[\x00-\xff]{3}(?:[" + _HI_NIBBLE +
                          rb"][\x02\x08\x10\x22\x28\x40\x60]|[" + _HI_NIBBLE_COMPRESS +
                          rb"]\x20\x00\x00[\x00-\x20])", re.S)
# ... a START/FULL section header with a short idstr ...
_SECTION_CAND = re.compile(rb"[\x01\x04]\x00\x00[\x00-\xff]{2}[\x01-\x7f][\x21-\x7e]", re.S)
# ... or the VM description that ends the stream.
_VMDESC_CAND = re.compile(rb"\x06[\x00-\xff]{4}\{\"page_size\"", re.S)
_PAGE_SIZE_JSON = re.compile(rb"\"page_size\":\s*(\d{1,7})")
# Inside the VM description JSON (its opening may be before the window): device entries.
_VMDESC_DEVICE = re.compile(rb'\{"name": "([\x21-\x7e]{1,64})", "instance_id": \d{1,6}, '
                            rb'"vmsd_name": "[\x21-\x7e]{1,64}", "version": \d{1,6}')
# ... or its field entries (migration/vmstate.c vmsd_desc_field_start)
_VMDESC_FIELD = re.compile(rb'\{"name": "[\x21-\x7e]{1,64}", (?:"index": \d{1,6}, )?"type": "[\x20-\x7e]{1,32}", '
                           rb'(?:"size": \d|"struct": \{"vmsd_name": ")')

# What main_at_start / main_mid_stream can accept (the prefilter, prefilter.py): the
# file header; mid-stream, at least 16 bytes holding one of the sync candidates the
# walk starts from, or the opening of a VM description entry.
MAIN_START = signature(lead(QEVM, b"\0\0\0", set(FILE_VERSIONS)))
_AT_LEAST_16 = lead(min_len=16)
MAIN_MID = signature(
    (lead(QEVM, b"\0\0\0", set(FILE_VERSIONS)), _AT_LEAST_16),
    (anywhere(b"\0\0\0", EVERY_BYTE, EVERY_BYTE, EVERY_BYTE, {b << 4 for b in range(16)},
              {0x02, 0x08, 0x10, 0x22, 0x28, 0x40, 0x60}), _AT_LEAST_16),                # _RECORD_CAND
    (anywhere(b"\0\0\0", EVERY_BYTE, EVERY_BYTE, EVERY_BYTE, {b << 4 | 1 for b in range(16)}, b"\x20\0\0",
              range(0x21)), _AT_LEAST_16),                                                # (COMPRESS_PAGE)
    (anywhere({1, 4}, b"\0\0", EVERY_BYTE, EVERY_BYTE, range(0x01, 0x80), range(0x21, 0x7F)),
     _AT_LEAST_16),                                                                      # _SECTION_CAND
    (anywhere(b"\x06", EVERY_BYTE, EVERY_BYTE, EVERY_BYTE, EVERY_BYTE, b'{"page_size"'), _AT_LEAST_16),
    (anywhere(b'{"name": "'), _AT_LEAST_16),                        # _VMDESC_DEVICE, _VMDESC_FIELD
)


class _Walk:
    """Bounded walk over a main-channel stream; collects what it can name."""

    def __init__(self, data: bytes, strict: bool):
        self.d = data
        self.n = len(data)
        # strict (mid-stream): ZERO fill byte 0, bare EOS/HOOK/FLUSH headers, page offsets
        # that never repeat, footers that match the section being walked
        self.strict = strict
        self.units = 0
        self.version = None
        self.machine = None
        self.sections: dict[int, str] = {}
        self.names: dict[str, None] = {}
        self.blocks: dict[str, None] = {}
        self.pages = self.zero = self.xbzrle = self.xbzrle_bytes = self.compressed = 0
        self.n_records = self.eos = 0
        self.mem_size = None
        self.eof = False
        self.vmdesc = None            # (offset, length)
        self.vmdesc_devices = None
        self.page_size = None
        self.stop = ""
        self.last_offset = -1         # strict: page offsets of one block ascend ...
        self.wraps = 0                # ... but for one wrap-around (a pass resumes mid-block)
        self.current = None           # id of the section being walked, when known

    # -- page records
    def records(self, pos: int) -> tuple[int, str]:
        d, n = self.d, self.n
        while self.units < MAX_UNITS:
            if pos < 0 or pos + 8 > n:
                return pos, "end"
            m = _ZERO_RUN.match(d, pos, pos + ZERO_RUN_STEP)
            if m:
                k = (m.end() - pos) // 9
                if self.strict:      # the records before the first repeated offset
                    k = (self.ascending_run(d, pos, k) if k >= LONG_RUN
                         else self.ascending(u64(d, q) & ~0xFFF for q in range(pos, m.end(), 9)))
                if k:
                    self.zero += k
                    self.n_records += k
                    self.units += k
                    pos += 9 * k
                    continue
            h = u64(d, pos)
            flags = h & FLAG_MASK
            kind = flags & ~CONTINUE
            if kind not in KINDS or h & 0xC00:
                return pos, "bad"
            if flags & CONTINUE and kind not in NAMED_KINDS:
                return pos, "bad"
            if self.strict:
                # EOS, HOOK, MULTIFD_FLUSH are the bare flag; page offsets ascend within a block
                if kind not in NAMED_KINDS and kind != MEM_SIZE and h != kind:
                    return pos, "bad"
                if kind in NAMED_KINDS:
                    if not flags & CONTINUE:
                        self.last_offset, self.wraps = -1, 0
                    if not self.ascending((h & ~0xFFF,)):
                        return pos, "bad"
            p = pos + 8
            if kind in NAMED_KINDS and not flags & CONTINUE:
                if p >= n:
                    return pos, "end"
                length = d[p]
                name = name_at(d, p + 1, length)
                if name is None:
                    return pos, "end" if p + 1 + length > n else "bad"
                self.blocks[name] = None
                p += 1 + length
            if kind == ZERO:
                if p < n and self.strict and d[p] != 0:
                    return pos, "bad"
                self.zero += 1
                p += 1
            elif kind == PAGE:
                self.pages += 1
                p += TARGET_PAGE_SIZE
            elif kind == XBZRLE:
                if p + 3 > n:
                    return pos, "end"
                size = u16(d, p + 1)
                if d[p] != ENCODING_FLAG_XBZRLE or size > TARGET_PAGE_SIZE * 2:
                    return pos, "bad"
                self.xbzrle += 1
                self.xbzrle_bytes += size
                p += 3 + size
            elif kind == COMPRESS_PAGE:
                size = u32(d, p)
                if size is None:
                    return pos, "end"
                if size > TARGET_PAGE_SIZE * 2:
                    return pos, "bad"
                self.compressed += 1
                p += 4 + size
            elif kind == MEM_SIZE:
                p = self.block_list(p, h & ~0xFFF)
                if p < 0:
                    return pos, "bad"
            self.n_records += 1
            if kind == EOS:
                self.eos += 1
                self.last_offset, self.wraps = -1, 0
                return p, "eos"
            self.units += 1
            pos = p
        return pos, "cap"

    def ascending(self, offsets) -> int:
        """Strict mode: how many of ``offsets`` follow the rule, which is that page offsets
        in a block never repeat and wrap around at most once per pass (state kept for them).

        Measured on qemu-xbzrle-running: the dirty-page scan of a pass resumes where the
        previous one stopped and wraps to the start of the block (0x5f000 -> 0x20000).
        """
        ok = 0
        for off in offsets:
            if off == self.last_offset or (off < self.last_offset and self.wraps >= 1):
                break
            if off < self.last_offset:
                self.wraps += 1
            self.last_offset = off
            ok += 1
        return ok

    def ascending_run(self, d: bytes, pos: int, k: int) -> int:
        """``ascending`` over the offsets of the ``k`` 9-byte records at ``pos``, in numpy."""
        heads = np.frombuffer(d, dtype=np.uint8, count=9 * k, offset=pos).reshape(k, 9)[:, :8]
        offs = np.ascontiguousarray(heads).view(">u8").ravel() & np.uint64(~0xFFF & (1 << 64) - 1)
        prev = np.empty(k, dtype=np.uint64)
        prev[1:] = offs[:-1]
        prev[0] = max(self.last_offset, 0)
        repeated, down = offs == prev, offs < prev
        if self.last_offset < 0:
            repeated[0] = down[0] = False
        wraps = np.cumsum(down)
        bad = repeated | (down & (self.wraps + wraps - down >= 1))
        ok = int(np.argmax(bad)) if bad.any() else k
        if ok:
            self.last_offset = int(offs[ok - 1])
            self.wraps += int(wraps[ok - 1])
        return ok

    def block_list(self, pos: int, total: int) -> int:
        """RAM_SAVE_FLAG_MEM_SIZE: (u8 len + idstr + be64 used_length)... summing to ``total``."""
        d, n = self.d, self.n
        self.mem_size = total
        seen = 0
        for _ in range(1024):
            if seen == total or pos >= n:
                return pos
            length = d[pos]
            name = name_at(d, pos + 1, length)
            used = u64(d, pos + 1 + length)
            if name is None or used is None:
                return pos if pos + 9 + length > n else -1
            self.blocks[name] = None
            seen += used
            pos += 9 + length
            # postcopy page size / ignore-shared address: extra be64 fields per block
            for _extra in range(2):
                if seen == total or pos >= n or name_at(d, pos + 1, d[pos]) is not None:
                    break
                pos += 8
        return -1

    # -- sections
    def section_header(self, pos: int):
        """START/FULL header at pos: (section id, idstr, end) or None."""
        d = self.d
        sid = u32(d, pos + 1)
        if sid is None or pos + 6 > self.n:
            return None
        length = d[pos + 5]
        name = name_at(d, pos + 6, length)
        end = pos + 6 + length
        inst, ver = u32(d, end), u32(d, end + 4)
        if name is None or inst is None or ver is None or inst > 0xFFFF or ver > 0xFFFF:
            return None
        return sid, name, end + 8

    def skip_to_footer(self, pos: int, sid: int) -> int:
        """Position of the FOOTER of section ``sid`` after opaque device state, or -1."""
        d, n = self.d, self.n
        needle = bytes([FOOTER]) + sid.to_bytes(4, "big")
        start = pos
        for _ in range(FOOTER_TRIES):
            f = d.find(needle, start)
            if f < 0:
                return -1
            after = f + 5
            if after >= n or d[after] in SECTION_NAMES:
                return f
            start = f + 1
        return -1

    def sections_from(self, pos: int) -> tuple[int, str]:
        d, n = self.d, self.n
        while self.units < MAX_UNITS:
            if pos >= n:
                return pos, "end"
            t = d[pos]
            if t in (START, FULL):
                hdr = self.section_header(pos)
                if hdr is None:
                    return pos, "end" if pos + 300 > n else "bad"
                sid, name, p = hdr
                self.sections[sid] = name
                self.names[name] = None
                self.units += 1
                self.current = sid
                pos, status = self.section_body(p, sid, name)
                if status:
                    return pos, status
            elif t in (PART, END):
                sid = u32(d, pos + 1)
                if sid is None:
                    return pos, "end"
                name = self.sections.get(sid)
                if name is None and self.strict:
                    # mid-stream: section ids seen before the window are unknown
                    name = RAM_IDSTR if self.looks_like_record(pos + 5) else ""
                if name is None:
                    return pos, "bad"
                self.current = sid
                self.units += 0 if self.strict else 1
                pos, status = self.section_body(pos + 5, sid, name)
                if status:
                    return pos, status
            elif t == FOOTER:
                sid = u32(d, pos + 1)
                if sid is None:
                    return pos, "end"
                if self.strict and self.current is not None and sid != self.current:
                    return pos, "bad"
                self.units += 1 if self.current == sid else 0
                self.current = None
                pos += 5
            elif t == EOF:
                # only the VM description (or the end of the stream) follows EOF
                if self.eof or (pos + 1 < n and d[pos + 1] != VMDESCRIPTION):
                    return pos, "bad"
                self.eof = True
                pos += 1
            elif t == VMDESCRIPTION:
                size = u32(d, pos + 1)
                if size is None:
                    return pos, "end"
                if d[pos + 5:pos + 6] not in (b"{", b""):
                    return pos, "bad"
                self.vmdesc = (pos, size)
                body = d[pos + 5:pos + 5 + min(size, n)]
                m = _PAGE_SIZE_JSON.search(body, 0, 64)
                if m:
                    self.page_size = int(m.group(1))
                if len(body) == size:
                    self.vmdesc_devices = body.count(b'"instance_id"')
                self.units += 3   # a 13-byte literal opening: as strong as a chain
                pos += 5 + size
            elif t == CONFIGURATION:
                size = u32(d, pos + 1)
                if size is None:
                    return pos, "end"
                name = name_at(d, pos + 5, size) if 0 < size <= 255 else None
                if name is None:
                    return pos, "end" if pos + 5 + size > n else "bad"
                self.machine = name
                self.units += 1
                pos = self.subsections(pos + 5 + size)
                if pos < 0:
                    return -pos, "bad"
            elif t == COMMAND:
                size = u16(d, pos + 3)
                if size is None:
                    return pos, "end"
                self.units += 1
                pos += 5 + size
            else:
                return pos, "bad"
        return pos, "cap"

    def section_body(self, p: int, sid: int, name: str) -> tuple[int, str]:
        """After a section header: RAM records, or opaque state up to the footer."""
        if name == RAM_IDSTR:
            pos, status = self.records(p)
            return (pos, "") if status == "eos" else (pos, status)
        f = self.skip_to_footer(p, sid)
        if f < 0:
            return p, "opaque"
        return f, ""

    def looks_like_record(self, pos: int) -> bool:
        h = u64(self.d, pos)
        return h is not None and (h & FLAG_MASK & ~CONTINUE) in KINDS and not h & 0xC00

    def subsections(self, pos: int) -> int:
        """Known subsections of the configuration section (migration/savevm.c)."""
        d, n = self.d, self.n
        for _ in range(8):
            if pos >= n or d[pos] != SUBSECTION:
                return pos
            length = d[pos + 1] if pos + 1 < n else 0
            name = name_at(d, pos + 2, length)
            if name is None:
                return pos
            p = pos + 2 + length + 4          # + be32 version id
            if name == "configuration/target-page-bits":
                p += 4
            elif name == "configuration/capabilities":
                count = u32(d, p)
                if count is None or count > 64:
                    return -pos
                p += 4
                for _cap in range(count):
                    if p >= n:
                        return p
                    p += 1 + d[p]
            elif name == "configuration/uuid":
                p += 16
            else:
                return -pos
            pos = p
        return pos

    # -- reporting
    def fields(self) -> dict:
        return {
            "version": self.version, "machine": self.machine,
            "sections": list(self.names), "ram_blocks": list(self.blocks),
            "pages": self.pages, "zero_pages": self.zero, "xbzrle_pages": self.xbzrle,
            "xbzrle_bytes": self.xbzrle_bytes, "compressed_pages": self.compressed,
            "guest_bytes": self.pages * TARGET_PAGE_SIZE, "mem_size": self.mem_size,
            "eos": self.eos, "eof": self.eof, "vm_description": self.vmdesc is not None,
            "vm_description_devices": self.vmdesc_devices, "page_size": self.page_size,
            "records": self.n_records, "stop": self.stop,
            # legacy `compress` capability: pages sent as zlib streams (migration/ram.c do_compress_ram_page)
            **({"compression": "zlib"} if self.compressed and self.compressed >= self.pages else {}),
        }

    def summary(self) -> str:
        parts = []
        recs = []
        if self.pages:
            recs.append(f"{self.pages} PAGE ({human_bytes(self.pages * TARGET_PAGE_SIZE)} guest memory in clear)")
        if self.zero:
            recs.append(f"{self.zero} ZERO")
        if self.xbzrle:
            recs.append(f"{self.xbzrle} XBZRLE ({human_bytes(self.xbzrle_bytes)} of deltas)")
        if self.compressed:
            recs.append(f"{self.compressed} COMPRESS_PAGE")
        if recs:
            parts.append("RAM records " + ", ".join(recs))
        if self.names:
            parts.append(f"{len(self.names)} section{'s' if len(self.names) != 1 else ''}: {listing(self.names, 3)}")
        if self.blocks:
            parts.append(f"blocks {listing(self.blocks, 2)}")
        if self.vmdesc is not None:
            dev = f" ({self.vmdesc_devices} devices)" if self.vmdesc_devices is not None else ""
            parts.append(f"VM description JSON{dev}")
        return line(*parts)


def main_at_start(data: bytes) -> Detection | None:
    if data[:4] != QEVM:
        return None
    version = u32(data, 4)
    if version not in FILE_VERSIONS:
        return None
    w = _Walk(data, strict=False)
    w.version = version
    w.units = 1
    _pos, w.stop = w.sections_from(8)
    head = f"QEVM v{version} header" + (f", machine {clean(w.machine)}" if w.machine else "")
    return Detection("qemu-migration", 0, line(head, w.summary()), CLEARTEXT, w.fields())


def _candidates(rx: re.Pattern[bytes], data: bytes, mode: str):
    """``(offset, mode)`` of the first 256 matches of ``rx``, overlapping ones included."""
    m = rx.search(data)
    for _ in range(256):
        if m is None:
            return
        yield m.start(), mode
        m = rx.search(data, m.start() + 1)


def main_mid_stream(data: bytes) -> Detection | None:
    if len(data) < 16:
        return None
    if data[:4] == QEVM and u32(data, 4) in FILE_VERSIONS:
        return main_at_start(data)
    # the first 512 of the first 256 candidates of each kind, in order of offset;
    # searched lazily: the walk usually chains from one of the first few
    cands = heapq.merge(*(_candidates(rx, data, mode) for rx, mode in (
        (_RECORD_CAND, "records"), (_SECTION_CAND, "sections"), (_VMDESC_CAND, "sections"))))
    for pos, mode in islice(cands, 512):
        w = _Walk(data, strict=True)
        if mode == "records":
            p, status = w.records(pos)
            if status == "eos":
                p, status = w.sections_from(p)
        else:
            p, status = w.sections_from(pos)
        if w.units >= MIN_CHAIN:
            w.stop = status
            what = "page records" if mode == "records" else "sections"
            return Detection("qemu-migration", pos,
                             line(f"QEMU migration {what} chained mid-stream ({w.units} units)",
                                  w.summary()),
                             CLEARTEXT, w.fields())
    devices = [m for _, m in zip(range(64), _VMDESC_DEVICE.finditer(data))]
    entries = [m for _, m in zip(range(8), _VMDESC_FIELD.finditer(data))]
    if len(devices) >= 2 or (len(entries) >= 4 and b'"vmsd_name": "' in data):
        first = min(m.start() for m in devices + entries)
        w = _Walk(data, strict=True)
        w.vmdesc = (first, None)
        names = list(dict.fromkeys(m.group(1).decode() for m in devices))
        return Detection("qemu-migration", first,
                         line("QEMU VM description JSON",
                              f"devices {listing(names, 4)}" if names else "VMState field entries"),
                         CLEARTEXT, w.fields())
    return None


# ------------------------------------------------------------------ multifd

MULTIFD_MAGIC = 0x11223344          # MULTIFD_MAGIC, migration/multifd.h
MULTIFD_VERSION = 1
MULTIFD_HEAD = b"\x11\x22\x33\x44\x00\x00\x00\x01"
INIT_SIZE = 64                      # MultiFDInit_t
PACKET_FIXED = 320                  # MultiFDPacket_t up to offset[]
SYNC, DEVICE_STATE = 0x01, 0x40     # MULTIFD_FLAG_SYNC, MULTIFD_FLAG_DEVICE_STATE (QEMU 10)
COMPRESSION_FLAGS = ((0x02, "zlib"), (0x04, "zstd"), (0x08, "qpl"), (0x10, "uadk"), (0x20, "qatzip"))
COMPRESSION_MAGIC = {"zstd": (b"\x28\xb5\x2f\xfd",),                         # zstd frame
                     "zlib": (b"\x78\x01", b"\x78\x5e", b"\x78\x9c", b"\x78\xda")}  # zlib header
MULTIFD_START = signature(lead(MULTIFD_HEAD, min_len=25))
MULTIFD_MID = signature(anywhere(MULTIFD_HEAD))
MAX_PAGES_ALLOC = 1 << 16
MAX_PACKETS = 4096


def _multifd_packet(d: bytes, pos: int):
    """Header at pos: dict, or None when it is not a valid multifd packet header."""
    if d[pos:pos + 8] != MULTIFD_HEAD or pos + 36 > len(d):
        return None
    flags, alloc, normal, size = u32(d, pos + 8), u32(d, pos + 12), u32(d, pos + 16), u32(d, pos + 20)
    zero = u32(d, pos + 32)
    if flags & DEVICE_STATE:
        return {"device_state": True, "flags": flags, "next": None}
    if flags & ~0x3F or not 0 < alloc <= MAX_PAGES_ALLOC or normal > alloc or zero > alloc:
        return None
    if pos + 64 < len(d) and d[pos + 64] != 0:
        name = cstring(d, pos + 64, 255)
        if name is None:
            if pos + 64 + 256 <= len(d):
                return None
            name = ""
    else:
        name = ""
    comp = next((nm for bit, nm in COMPRESSION_FLAGS if flags & bit), "none")
    if comp == "none" and normal and size != normal * TARGET_PAGE_SIZE:
        return None
    offs = pos + PACKET_FIXED
    for i in range(min(normal + zero, 8)):        # first offsets: page aligned
        o = u64(d, offs + 8 * i)
        if o is not None and o & 0xFFF:
            return None
    payload_at = offs + 8 * alloc
    payload = size if normal else 0
    return {"device_state": False, "flags": flags, "normal": normal, "zero": zero, "size": payload,
            "name": name, "compression": comp, "payload_at": payload_at, "next": payload_at + payload}


def _multifd_chain(d: bytes, pos: int, out: dict) -> int:
    """Follow packets from pos; returns the number of headers walked."""
    count = 0
    for _ in range(MAX_PACKETS):
        pk = _multifd_packet(d, pos)
        if pk is None:
            break
        count += 1
        if pk["device_state"]:
            out["device_state_packets"] += 1
            break
        out["packets"] += 1
        if pk["flags"] & SYNC:
            out["sync_packets"] += 1
        out["normal_pages"] += pk["normal"]
        out["zero_pages"] += pk["zero"]
        if pk["name"]:
            out["ramblocks"].setdefault(pk["name"], None)
        if pk["normal"]:
            comp = pk["compression"]
            if out["compression"] in (None, "none") or comp != "none":
                out["compression"] = comp
            out["payload_bytes"] += pk["size"]
            if comp == "none":
                out["guest_bytes"] += pk["size"]
            elif not out["compression_magic_seen"]:
                head = d[pk["payload_at"]:pk["payload_at"] + 4]
                out["compression_magic_seen"] = head.startswith(COMPRESSION_MAGIC.get(comp, ()))
        pos = pk["next"]
        if pos >= len(d):
            break
    return count


def _multifd_fields() -> dict:
    return {"version": MULTIFD_VERSION, "uuid": None, "channel_id": None, "packets": 0,
            "sync_packets": 0, "normal_pages": 0, "zero_pages": 0, "compression": None,
            "compression_magic_seen": False, "ramblocks": {}, "payload_bytes": 0,
            "guest_bytes": 0, "device_state_packets": 0}


def _uuid(raw: bytes) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _multifd_evidence(f: dict, head: str) -> str:
    comp = f["compression"]
    if comp is None:
        pages = "no page payload yet"
    elif comp == "none":
        pages = f"raw 4 KiB pages ({human_bytes(f['guest_bytes'])} guest memory in clear)"
    else:
        magic = " (frame magic seen)" if f["compression_magic_seen"] else ""
        pages = f"{comp}-compressed pages{magic}"
    blocks = f"ramblock {listing(f['ramblocks'], 3)}" if f["ramblocks"] else ""
    packets = f"{f['packets']} packet{'s' if f['packets'] != 1 else ''}"
    return line(head, f"{packets}, {f['normal_pages']} pages", pages, blocks, "headers in clear")


def multifd_at_start(data: bytes) -> Detection | None:
    if data[:8] != MULTIFD_HEAD or len(data) < 25:
        return None
    if any(data[25:INIT_SIZE]):          # MultiFDInit_t padding is zero
        return None
    f = _multifd_fields()
    f["uuid"] = _uuid(data[8:24])
    f["channel_id"] = data[24]
    _multifd_chain(data, INIT_SIZE, f)
    f["ramblocks"] = list(f["ramblocks"])
    head = f"multifd init packet v1, channel {f['channel_id']}, VM UUID {f['uuid']}"
    return Detection("qemu-multifd", 0, _multifd_evidence(f, head), CLEARTEXT, f)


def multifd_mid_stream(data: bytes) -> Detection | None:
    if data[:8] == MULTIFD_HEAD and not any(data[25:INIT_SIZE]) and len(data) >= INIT_SIZE:
        return multifd_at_start(data)
    pos = data.find(MULTIFD_HEAD)
    for _ in range(64):
        if pos < 0:
            return None
        f = _multifd_fields()
        if _multifd_chain(data, pos, f):
            f["ramblocks"] = list(f["ramblocks"])
            return Detection("qemu-multifd", pos,
                             _multifd_evidence(f, "multifd packet header mid-stream"),
                             CLEARTEXT, f)
        pos = data.find(MULTIFD_HEAD, pos + 1)
    return None
