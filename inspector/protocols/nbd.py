"""NBD, the disk copy of a block migration (qemu-nbd / QEMU's NBD server).

Format (NetworkBlockDevice/nbd doc/proto.md; qemu include/block/nbd.h):
  server greeting  "NBDMAGIC" "IHAVEOPT" be16 handshake flags (newstyle), or
                   "NBDMAGIC" 00420281861253 be64 size be32 flags + 124 zero bytes (oldstyle)
  client           be32 client flags, then options: "IHAVEOPT" be32 option be32 length data
  option reply     be64 0x0003e889045565a9, be32 option, be32 reply type, be32 length, data
  STARTTLS (5)     after its ACK both sides speak TLS: the detection says where (tls_from)
  request          be32 0x25609513, be16 flags, be16 type, be64 cookie, be64 offset, be32 length;
                   WRITE carries `length` bytes of disk data (in clear without TLS)
  extended request be32 0x21e41c71, ..., be64 length (EXTENDED_HEADERS)
  replies          simple be32 0x67446698 be32 error be64 cookie (+ READ data);
                   structured be32 0x668e33ef be16 flags be16 type be64 cookie be32 length data

Checked on qemu-nbd-plain / qemu-nbd-tls (QEMU 7.2 NBD server and client).

Fields: role ('client'/'server'), style ('newstyle'/'oldstyle'), options (names in
order), starttls, tls_from (offset of the TLS ClientHello/ServerHello, or None),
export, requests ({command: count}), write_bytes (disk data in clear in the data
given), replies, chained.
"""

from __future__ import annotations

from inspector.units import human_bytes

from .base import (CLEARTEXT, NOTHING, Detection, anywhere, clean, lead, line, listing, name_at, signature,
                   u16, u32, u64)

NBDMAGIC = b"NBDMAGIC"
IHAVEOPT = b"IHAVEOPT"                     # NBD_OPTS_MAGIC
CLISERV_MAGIC = (0x00420281861253).to_bytes(8, "big")   # oldstyle
OPT_REPLY_MAGIC = bytes.fromhex("0003e889045565a9")
REQUEST_MAGIC = bytes.fromhex("25609513")
EXT_REQUEST_MAGIC = bytes.fromhex("21e41c71")
SIMPLE_REPLY_MAGIC = bytes.fromhex("67446698")
STRUCTURED_REPLY_MAGIC = bytes.fromhex("668e33ef")

OPTIONS = {1: "EXPORT_NAME", 2: "ABORT", 3: "LIST", 4: "PEEK_EXPORT", 5: "STARTTLS", 6: "INFO",
           7: "GO", 8: "STRUCTURED_REPLY", 9: "LIST_META_CONTEXT", 10: "SET_META_CONTEXT",
           11: "EXTENDED_HEADERS"}
STARTTLS, EXPORT_NAME, GO, INFO = 5, 1, 7, 6
REP_ACK = 1
COMMANDS = {0: "READ", 1: "WRITE", 2: "DISC", 3: "FLUSH", 4: "TRIM", 5: "CACHE",
            6: "WRITE_ZEROES", 7: "BLOCK_STATUS", 8: "RESIZE"}
READ, WRITE = 0, 1
OPTION_MAX = 65536            # option data a server accepts (qemu: NBD_MAX_BUFFER_SIZE is larger; names are short)
PAYLOAD_MAX = 1 << 26         # 64 MiB: more than any server's maximum block size
MAX_UNITS = 100_000
MIN_CHAIN = 2

# What each detector can accept (prefilter.py): its greeting at the start, a header magic anywhere.
SERVER_START = signature(lead(NBDMAGIC, {CLISERV_MAGIC[0], IHAVEOPT[0]}, min_len=16))
SERVER_MID = signature(anywhere(SIMPLE_REPLY_MAGIC), anywhere(STRUCTURED_REPLY_MAGIC))
CLIENT_START = signature(lead(b"\0\0\0", range(4), IHAVEOPT))       # be32 flags <= 3, IHAVEOPT
CLIENT_MID = signature(anywhere(REQUEST_MAGIC))


def _option_name(opt: int) -> str:
    return OPTIONS.get(opt, f"option_{opt}")


def _export(d: bytes, pos: int, opt: int, length: int) -> str | None:
    if opt == EXPORT_NAME:
        return name_at(d, pos, length) if length else ""
    if opt in (GO, INFO):
        n = u32(d, pos)
        if n is not None and n + 4 <= length:
            return name_at(d, pos + 4, n) if n else ""
    return None


def _requests(d: bytes, pos: int, out: dict) -> int:
    """Walk requests from pos; returns the number of headers and sets out['end']."""
    count = 0
    for _ in range(MAX_UNITS):
        magic = d[pos:pos + 4]
        if magic == REQUEST_MAGIC and pos + 28 <= len(d):
            flags, typ, length = u16(d, pos + 4), u16(d, pos + 6), u32(d, pos + 24)
            size = 28
        elif magic == EXT_REQUEST_MAGIC and pos + 32 <= len(d):
            flags, typ, length = u16(d, pos + 4), u16(d, pos + 6), u64(d, pos + 24)
            size = 32
        else:
            break
        if typ not in COMMANDS or flags > 0xFF or length > PAYLOAD_MAX:
            break
        count += 1
        name = COMMANDS[typ]
        out["requests"][name] = out["requests"].get(name, 0) + 1
        pos += size
        if typ == WRITE:
            out["write_bytes"] += length
            pos += length
        if pos >= len(d):
            break
    out["end"] = pos
    return count


def _replies(d: bytes, pos: int, out: dict) -> int:
    count = 0
    for _ in range(MAX_UNITS):
        magic = d[pos:pos + 4]
        if magic == SIMPLE_REPLY_MAGIC and pos + 16 <= len(d):
            if u32(d, pos + 4) > 0xFFFF:       # errno values are small
                break
            pos += 16                          # READ data length is only in the request: stop guessing
        elif magic == STRUCTURED_REPLY_MAGIC and pos + 20 <= len(d):
            length = u32(d, pos + 16)
            if u16(d, pos + 4) > 0xFF or length > PAYLOAD_MAX:
                break
            pos += 20 + length
        else:
            break
        count += 1
        if pos >= len(d):
            break
    out["replies"] = out.get("replies", 0) + count
    out["end"] = pos
    return count


def _fields(role: str) -> dict:
    return {"role": role, "style": None, "options": [], "starttls": False, "tls_from": None,
            "export": None, "requests": {}, "write_bytes": 0, "replies": 0, "chained": 0}


def _request_text(f: dict) -> str:
    if not f["requests"]:
        return ""
    total = sum(f["requests"].values())
    kinds = ", ".join(f"{n} {k}" for k, n in f["requests"].items())
    exposed = f" ({human_bytes(f['write_bytes'])} of disk data in clear)" if f["write_bytes"] else ""
    return f"{total} requests: {kinds}{exposed}"


def client_at_start(data: bytes) -> Detection | None:
    flags = u32(data, 0)
    if flags is None or flags > 3 or data[4:12] != IHAVEOPT:
        return None
    f = _fields("client")
    f["style"] = "newstyle"
    pos = 4
    for _ in range(256):
        if data[pos:pos + 8] != IHAVEOPT:
            break
        opt, length = u32(data, pos + 8), u32(data, pos + 12)
        if opt is None or length is None or length > OPTION_MAX:
            break
        f["options"].append(_option_name(opt))
        export = _export(data, pos + 16, opt, length)
        if export is not None:
            f["export"] = export
        pos += 16 + length
        if opt == STARTTLS:
            f["starttls"] = True
            f["tls_from"] = pos if pos < len(data) else None
            break
        if opt == EXPORT_NAME:
            break
    if not f["starttls"]:
        f["chained"] = _requests(data, pos, f)
    opts = f"options {listing(f['options'], 5)}" if f["options"] else ""
    export = f"export {clean(f['export'], 40)}" if f["export"] else ""
    if f["starttls"]:
        tail = f"STARTTLS: TLS from offset {f['tls_from']}" if f["tls_from"] else "STARTTLS requested"
        return Detection("nbd", 0, line("NBD client, fixed newstyle", opts, export, tail), NOTHING, f)
    return Detection("nbd", 0, line("NBD client, fixed newstyle", opts, export, _request_text(f),
                                    "negotiation without STARTTLS"), CLEARTEXT, f)


def server_at_start(data: bytes) -> Detection | None:
    if data[:8] != NBDMAGIC:
        return None
    f = _fields("server")
    if data[8:16] == CLISERV_MAGIC:
        f["style"] = "oldstyle"
        size = u64(data, 16)
        f["chained"] = _replies(data, 16 + 8 + 4 + 124, f)
        return Detection("nbd", 0, line("NBD oldstyle greeting (no negotiation, no TLS possible)",
                                        f"export size {human_bytes(size or 0)}"), CLEARTEXT, f)
    if data[8:16] != IHAVEOPT:
        return None
    f["style"] = "newstyle"
    pos = 18
    for _ in range(1024):
        if data[pos:pos + 8] != OPT_REPLY_MAGIC:
            break
        opt, rtype, length = u32(data, pos + 8), u32(data, pos + 12), u32(data, pos + 16)
        if opt is None or rtype is None or length is None or length > OPTION_MAX:
            break
        name = _option_name(opt)
        if not f["options"] or f["options"][-1] != name:
            f["options"].append(name)
        pos += 20 + length
        if opt == STARTTLS and rtype == REP_ACK:
            f["starttls"] = True
            f["tls_from"] = pos if pos < len(data) else None
            break
    if not f["starttls"]:
        f["chained"] = _replies(data, pos, f)
    opts = f"replies to {listing(f['options'], 5)}" if f["options"] else ""
    if f["starttls"]:
        tail = f"STARTTLS acknowledged: TLS from offset {f['tls_from']}" if f["tls_from"] else "STARTTLS acknowledged"
        return Detection("nbd", 0, line("NBDMAGIC/IHAVEOPT greeting", opts, tail), NOTHING, f)
    replies = f"{f['replies']} transmission replies" if f["replies"] else ""
    return Detection("nbd", 0, line("NBDMAGIC/IHAVEOPT greeting", opts, replies,
                                    "no STARTTLS"), CLEARTEXT, f)


def client_mid_stream(data: bytes) -> Detection | None:
    pos = data.find(REQUEST_MAGIC)
    for _ in range(256):
        if pos < 0:
            return None
        f = _fields("client")
        n = _requests(data, pos, f)
        if n >= MIN_CHAIN or (n == 1 and f["end"] >= len(data)):
            f["chained"] = n
            return Detection("nbd", pos, line(f"NBD request header at offset {pos}, {n} chained",
                                              _request_text(f)), CLEARTEXT, f)
        pos = data.find(REQUEST_MAGIC, pos + 1)
    return None


def server_mid_stream(data: bytes) -> Detection | None:
    cands = []
    for magic in (SIMPLE_REPLY_MAGIC, STRUCTURED_REPLY_MAGIC):
        p = data.find(magic)
        for _ in range(128):
            if p < 0:
                break
            cands.append(p)
            p = data.find(magic, p + 1)
    for pos in sorted(cands)[:256]:
        f = _fields("server")
        n = _replies(data, pos, f)
        if n >= 3:
            f["chained"] = n
            return Detection("nbd", pos, f"NBD reply header at offset {pos}, {n} chained",
                             CLEARTEXT, f)
    return None
