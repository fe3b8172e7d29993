"""Other services of an OpenStack control plane: AMQP, MySQL/MariaDB, RFB (VNC),
SPICE, Redis, memcached, OVSDB.

None of these has a real capture in captures/ yet: the tests feed byte
samples written from the specifications cited below. Each detector reads
only framing; credentials are reported as presence and length.

- AMQP 0-9-1 (amqp0-9-1 specification 4.2): client "AMQP" 00 00 09 01, then
  frames: u8 type (1 method, 2 header, 3 body, 8 heartbeat), be16 channel,
  be32 size, payload, frame-end 0xCE. Method payload: be16 class, be16 method.
  Connection.Start-Ok carries the SASL mechanism and its response (PLAIN:
  "\\0user\\0password" in clear). AMQPS is direct TLS on 5671. AMQP 1.0
  headers ("AMQP" 00 01 00 00, SASL 03 01 00 00, TLS 02 01 00 00) are named too.
- MySQL/MariaDB (MySQL client/server protocol, "Connection Phase"): packets
  are u24 LE length + u8 sequence. Server greeting: protocol 10, NUL-terminated
  version, connection id, salt, capability flags (CLIENT_SSL 0x800). The
  client answers with SSLRequest (32-byte payload with CLIENT_SSL, then TLS)
  or HandshakeResponse41 (user name in clear).
- RFB (rfbproto.rst): "RFB 003.008\\n" both ways; then the server offers
  security types (1 None, 2 VNC auth, 18 TLS, 19 VeNCrypt, ...) and the
  client picks one. Only TLS/VeNCrypt-style types encrypt the session.
- SPICE (spice-protocol spice/protocol.h): SpiceLinkHeader "REDQ", u32 LE
  major 2, minor 2, size; client SpiceLinkMess (connection id, channel type,
  channel id, caps); server SpiceLinkReply (error, 162-byte RSA public key,
  caps). SPICE over TLS uses a separate port that starts with TLS.
- Redis (RESP, redis.io/docs/reference/protocol-spec): commands as arrays
  "*N\\r\\n$len\\r\\narg\\r\\n..."; replies "+", "-", ":", "$", "*" (RESP3 more).
- memcached (protocol.txt, protocol_binary.h): text commands ("get key\\r\\n",
  "set key flags exptime bytes\\r\\n" + data) and replies; binary 24-byte
  headers with magic 0x80 (request) / 0x81 (response).
- OVSDB (RFC 7047): JSON-RPC objects {"method": ..., "params": ..., "id": ...}
  on 6640-6642 (ssl: direct TLS).
"""

from __future__ import annotations

import re

from .base import (CLEARTEXT, DIGIT, EVERY_BYTE, NOTHING, Detection, anywhere, clean, cstring, lead, line, listing,
                   name_at, nocase, signature, u16, u32)

# --------------------------------------------------------------------------- AMQP

AMQP_HEADERS = {b"AMQP\x00\x00\x09\x01": "0-9-1", b"AMQP\x01\x01\x00\x09": "0-9",
                b"AMQP\x01\x01\x08\x00": "0-8", b"AMQP\x00\x01\x00\x00": "1.0",
                b"AMQP\x03\x01\x00\x00": "1.0 SASL", b"AMQP\x02\x01\x00\x00": "1.0 TLS"}
FRAME_END = 0xCE
FRAME_TYPES = {1: "method", 2: "header", 3: "body", 4: "heartbeat", 8: "heartbeat"}
FRAME_MAX = 1 << 20
AMQP_METHODS = {(10, 10): "connection.start", (10, 11): "connection.start-ok",
                (10, 20): "connection.secure", (10, 21): "connection.secure-ok",
                (10, 30): "connection.tune", (10, 31): "connection.tune-ok",
                (10, 40): "connection.open", (10, 41): "connection.open-ok",
                (10, 50): "connection.close", (10, 51): "connection.close-ok",
                (20, 10): "channel.open", (20, 11): "channel.open-ok", (20, 40): "channel.close",
                (40, 10): "exchange.declare", (50, 10): "queue.declare", (50, 20): "queue.bind",
                (60, 20): "basic.consume", (60, 40): "basic.publish", (60, 60): "basic.deliver",
                (60, 80): "basic.ack", (90, 10): "tx.select"}


def _amqp_frames(d: bytes, pos: int, f: dict) -> int:
    n = 0
    for _ in range(4096):
        if pos + 8 > len(d):
            break
        t, size = d[pos], u32(d, pos + 3)
        if t not in FRAME_TYPES or size > FRAME_MAX:
            break
        end = pos + 7 + size
        if end < len(d) and d[end] != FRAME_END:
            break
        n += 1
        if t == 1 and size >= 4:
            cls, meth = u16(d, pos + 7), u16(d, pos + 9)
            name = AMQP_METHODS.get((cls, meth), f"{cls}.{meth}")
            if name not in f["methods"]:
                f["methods"].append(name)
            if name == "connection.start-ok":
                _amqp_start_ok(d[pos + 11:end], f)
            elif name == "connection.start":
                _amqp_start(d[pos + 11:end], f)
        pos = end + 1
        if pos >= len(d):
            break
    f["frames"] += n
    return n


def _amqp_start_ok(body: bytes, f: dict) -> None:
    # client-properties (table: be32 length + ...), mechanism shortstr, response longstr
    tlen = u32(body, 0)
    if tlen is None:
        return
    pos = 4 + tlen
    if pos >= len(body):
        return
    mech = name_at(body, pos + 1, body[pos])
    pos += 1 + body[pos]
    resp = u32(body, pos)
    f["mechanism"] = mech
    if mech in ("PLAIN", "AMQPLAIN") and resp:
        f["credentials_in_clear"] = f"{mech} response in clear ({resp} bytes)"


def _amqp_start(body: bytes, f: dict) -> None:
    if len(body) >= 2:
        f["server_version"] = f"{body[0]}-{body[1]}"
    i = body.find(b"\x07productS")
    if i >= 0:
        n = u32(body, i + 9)
        if n is not None and n <= 64:
            f["product"] = name_at(body, i + 13, n) or clean(body[i + 13:i + 13 + n].decode("ascii", "replace"))


def _amqp_fields() -> dict:
    return {"protocol_version": None, "frames": 0, "methods": [], "mechanism": None,
            "credentials_in_clear": None, "product": None, "server_version": None}


def _amqp_detection(f: dict, pos: int, head: str) -> Detection:
    parts = [head]
    if f["frames"]:
        parts.append(f"{f['frames']} frames: {listing(f['methods'], 4)}")
    if f["product"]:
        parts.append(f"product {f['product']}")
    if f["credentials_in_clear"]:
        parts.append(f["credentials_in_clear"])
    proves = NOTHING if f["protocol_version"] == "1.0 TLS" else CLEARTEXT
    return Detection("amqp", pos, line(*parts), proves, f)


# What the AMQP detectors can accept (prefilter.py): a protocol header; a connection.start
# method frame; mid-stream, 3 chained frames (>= 24 bytes) from the start or after a frame end.
_FRAME_SIZE = (b"\0", range((FRAME_MAX >> 16) + 1))             # be32 size <= FRAME_MAX, high bytes
AMQP_CLIENT_START = signature(*(lead(h) for h in AMQP_HEADERS))
AMQP_SERVER_START = signature(lead(b"\x01\x00\x00", *_FRAME_SIZE, EVERY_BYTE, EVERY_BYTE, b"\x00\x0a\x00\x0a"))
AMQP_MID = signature((lead({1, 2, 3, 8}, EVERY_BYTE, EVERY_BYTE, *_FRAME_SIZE), lead(min_len=24)),
                     (anywhere(b"\xce", {1, 2, 3, 8}, b"\x00", EVERY_BYTE, *_FRAME_SIZE), lead(min_len=24)))


def amqp_client_at_start(data: bytes) -> Detection | None:
    version = AMQP_HEADERS.get(data[:8])
    if version is None:
        return None
    f = _amqp_fields()
    f["protocol_version"] = version
    if version.startswith("0-"):
        _amqp_frames(data, 8, f)
    return _amqp_detection(f, 0, f"AMQP {version} protocol header")


def amqp_server_at_start(data: bytes) -> Detection | None:
    if data[:3] != b"\x01\x00\x00" or data[7:11] != b"\x00\x0a\x00\x0a":   # method frame, connection.start
        return None
    f = _amqp_fields()
    if not _amqp_frames(data, 0, f):
        return None
    f["protocol_version"] = "0-9-1"
    return _amqp_detection(f, 0, "AMQP connection.start")


# A frame end followed by the next frame's type and the high byte of a channel number.
_AMQP_CAND = re.compile(rb"\xce[\x01\x02\x03\x08]\x00")
MAX_CANDIDATES = 512


def amqp_mid_stream(data: bytes) -> Detection | None:
    starts = [0] if data[:1] in (b"\x01", b"\x02", b"\x03", b"\x08") else []
    starts += [m.start() + 1 for _, m in zip(range(MAX_CANDIDATES), _AMQP_CAND.finditer(data))]
    for pos in starts:
        f = _amqp_fields()
        if _amqp_frames(data, pos, f) >= 3:
            f["protocol_version"] = "0-9-1"
            return _amqp_detection(f, pos, "AMQP frames chained mid-stream")
    return None


# --------------------------------------------------------------------------- MySQL

CLIENT_PROTOCOL_41, CLIENT_SSL = 0x0200, 0x0800
MYSQL_COMMANDS = {0x01: "COM_QUIT", 0x02: "COM_INIT_DB", 0x03: "COM_QUERY", 0x0E: "COM_PING",
                  0x16: "COM_STMT_PREPARE", 0x17: "COM_STMT_EXECUTE"}


def _mysql_packet(d: bytes, pos: int):
    if pos + 4 > len(d):
        return None
    return int.from_bytes(d[pos:pos + 3], "little"), d[pos + 3]


# What the MySQL detectors can accept (prefilter.py). Server: a 40..1024-byte packet 0 of
# protocol 10 with a visible version string, >= 22 bytes. Client: a 32..4096-byte packet 1
# with CLIENT_PROTOCOL_41 and 23 zero filler bytes.
MYSQL_SERVER_START = signature(lead(EVERY_BYTE, range(5), b"\x00\x00\x0a", range(0x21, 0x7F), min_len=22))
MYSQL_CLIENT_START = signature(lead(EVERY_BYTE, range(0x11), b"\x00\x01", EVERY_BYTE,
                                    {b for b in range(256) if b & (CLIENT_PROTOCOL_41 >> 8)},
                                    *[EVERY_BYTE] * 7, bytes(23)))


def mysql_server_at_start(data: bytes) -> Detection | None:
    p = _mysql_packet(data, 0)
    if p is None or p[1] != 0 or not 40 <= p[0] <= 1024 or data[4:5] != b"\x0a":
        return None
    version = cstring(data, 5, 80)
    if version is None:
        return None
    pos = 5 + len(version) + 1 + 4 + 8
    if pos + 1 + 2 > len(data) or data[pos] != 0:
        return None
    caps = int.from_bytes(data[pos + 1:pos + 3], "little")
    if pos + 8 <= len(data):
        caps |= int.from_bytes(data[pos + 6:pos + 8], "little") << 16
    ssl = bool(caps & CLIENT_SSL)
    plugin = None
    end = 4 + p[0]
    if end <= len(data):
        tail = data[4:end].rstrip(b"\0").rsplit(b"\0", 1)[-1]
        plugin = name_at(tail, 0, len(tail))
    f = {"server_version": version, "ssl_supported": ssl, "auth_plugin": plugin, "tls_from": None,
         "next_server_packet": None}
    proves = NOTHING if ssl else CLEARTEXT
    after = ""
    if end < len(data):
        if data[end:end + 3] == b"\x16\x03\x03" or data[end:end + 2] == b"\x16\x03":
            f["tls_from"] = end
            after = f"TLS from offset {end}"
        else:
            nxt = _mysql_packet(data, end)
            if nxt and nxt[1] >= 2 and nxt[0] < 1 << 24:
                f["next_server_packet"] = nxt[1]
                proves, after = CLEARTEXT, "session continues in clear"
    ev = line(f"MySQL/MariaDB greeting, server {clean(version)}",
              "offers TLS (CLIENT_SSL)" if ssl else "no TLS support (no CLIENT_SSL)",
              f"auth plugin {plugin}" if plugin else "", after)
    return Detection("mysql", 0, ev, proves, f)


def mysql_client_at_start(data: bytes) -> Detection | None:
    p = _mysql_packet(data, 0)
    if p is None or p[1] != 1 or not 32 <= p[0] <= 4096 or len(data) < 36:
        return None
    caps = int.from_bytes(data[4:8], "little")
    if not caps & CLIENT_PROTOCOL_41 or any(data[13:36]):
        return None
    f = {"ssl_request": False, "tls_from": None, "user_in_clear": None, "commands": []}
    if p[0] == 32 and caps & CLIENT_SSL:
        f["ssl_request"] = True
        f["tls_from"] = 36 if len(data) > 36 else None
        return Detection("mysql", 0, line("MySQL SSLRequest (CLIENT_SSL 0x800)",
                                          f"TLS from offset {f['tls_from']}" if f["tls_from"] else ""),
                         NOTHING, f)
    user = cstring(data, 36, 256)
    if user is not None:
        f["user_in_clear"] = len(user)
    pos = 4 + p[0]
    for _ in range(64):
        q = _mysql_packet(data, pos)
        if q is None or pos + 4 >= len(data):
            break
        f["commands"].append(MYSQL_COMMANDS.get(data[pos + 4], f"0x{data[pos + 4]:02x}"))
        pos += 4 + q[0]
    ev = line("MySQL HandshakeResponse41 without SSLRequest",
              f"user name in clear ({f['user_in_clear']} chars)" if f["user_in_clear"] else "",
              f"then {listing(f['commands'], 3)}" if f["commands"] else "")
    return Detection("mysql", 0, ev, CLEARTEXT, f)


# --------------------------------------------------------------------------- RFB

_RFB = re.compile(rb"RFB (\d{3})\.(\d{3})\n")
RFB_SECURITY = {1: "None", 2: "VNC", 5: "RA2", 6: "RA2ne", 16: "Tight", 18: "TLS", 19: "VeNCrypt",
                20: "SASL", 22: "xvp", 30: "AppleDH", 113: "MSLogonII", 129: "UnixLogin"}
RFB_CLEAR_TYPES = {1, 2}        # None and VNC authentication: the session itself is not encrypted


RFB_START = signature(lead(b"RFB ", DIGIT, DIGIT, DIGIT, b".", DIGIT, DIGIT, DIGIT, b"\n"))  # prefilter.py


def _rfb_version(data: bytes):
    m = _RFB.match(data)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2))


def rfb_server_at_start(data: bytes) -> Detection | None:
    v = _rfb_version(data)
    if v is None:
        return None
    f = {"version": f"{v[0]}.{v[1]}", "security_types": None, "chosen": None}
    if v >= (3, 7) and len(data) > 12:
        n = data[12]
        f["security_types"] = [RFB_SECURITY.get(t, str(t)) for t in data[13:13 + n]]
        types = set(data[13:13 + n])
    elif len(data) >= 16:
        t = u32(data, 12)
        f["security_types"] = [RFB_SECURITY.get(t, str(t))]
        types = {t}
    else:
        types = set()
    proves = CLEARTEXT if types and types <= RFB_CLEAR_TYPES else NOTHING
    offered = f"security types {listing(f['security_types'], 6)}" if f["security_types"] else ""
    return Detection("rfb", 0, line(f"RFB {f['version']} server version", offered,
                                    "no encrypting security type offered" if proves == CLEARTEXT else ""),
                     proves, f)


def rfb_client_at_start(data: bytes) -> Detection | None:
    v = _rfb_version(data)
    if v is None:
        return None
    f = {"version": f"{v[0]}.{v[1]}", "security_types": None, "chosen": None}
    proves = NOTHING
    if v >= (3, 7) and len(data) > 12:
        f["chosen"] = RFB_SECURITY.get(data[12], str(data[12]))
        if data[12] in RFB_CLEAR_TYPES:
            proves = CLEARTEXT
    chosen = f"chooses security type {f['chosen']}" if f["chosen"] else ""
    return Detection("rfb", 0, line(f"RFB {f['version']} client version", chosen), proves, f)


# --------------------------------------------------------------------------- SPICE

SPICE_MAGIC = b"REDQ"
SPICE_CHANNELS = {1: "main", 2: "display", 3: "inputs", 4: "cursor", 5: "playback", 6: "record",
                  7: "tunnel", 8: "smartcard", 9: "usbredir", 10: "port", 11: "webdav"}
SPICE_TICKET_PUBKEY_BYTES = 162


# prefilter.py: magic, le32 major 1 or 2, le32 minor, le32 size <= 65536
SPICE_START = signature(lead(SPICE_MAGIC, {1, 2}, b"\0\0\0", *[EVERY_BYTE] * 6, range(2), b"\0"))


def _le32(d: bytes, pos: int) -> int | None:
    return int.from_bytes(d[pos:pos + 4], "little") if pos + 4 <= len(d) else None


def spice_at_start(data: bytes) -> Detection | None:
    if data[:4] != SPICE_MAGIC or len(data) < 16:
        return None
    major, minor, size = _le32(data, 4), _le32(data, 8), _le32(data, 12)
    if major not in (1, 2) or size is None or size > 65536:
        return None
    f = {"version": f"{major}.{minor}", "role": None, "channel": None, "connection_id": None,
         "error": None}
    if size >= SPICE_TICKET_PUBKEY_BYTES + 4:
        f["role"] = "server"
        f["error"] = _le32(data, 16)
        head = f"SPICE link reply v{f['version']} (error {f['error']})"
    else:
        f["role"] = "client"
        if len(data) >= 22:
            f["connection_id"] = _le32(data, 16)
            f["channel"] = SPICE_CHANNELS.get(data[20], str(data[20]))
        head = f"SPICE link message v{f['version']}, channel {f['channel']}"
    return Detection("spice", 0, line(head, "REDQ link in clear: a plaintext SPICE channel"), CLEARTEXT, f)


# --------------------------------------------------------------------------- Redis

_RESP_ARRAY = re.compile(rb"\*(\d{1,4})\r\n")
_RESP_BULK = re.compile(rb"\$(\d{1,9})\r\n")
_RESP_LINE = re.compile(rb"(?:[+\-][^\r\n]{0,1024}|[!=%~>|]\d{1,9}|:[+-]?\d{1,20}|\(-?\d{1,1024}|_|#[tf]|"
                        rb",(?:[+-]?(?:\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|inf)|nan))\r\n")
# Inline commands a client sends first; GET/SET are left out (an HTTP request line reads alike).
REDIS_INLINE = re.compile(rb"(PING|AUTH|HELLO|INFO|QUIT|SELECT)(?: [^\r\n]{0,512})?\r\n", re.I)
REDIS_SECRET_COMMANDS = ("AUTH", "HELLO", "MIGRATE", "CONFIG")


# What the Redis detectors can accept (prefilter.py): a RESP array of bulk strings
# ("*<n>\r\n$<len>\r\n...") or an inline command first; replies that start with a RESP
# type byte and end a line; mid-stream, an array of bulk strings anywhere.
REDIS_CLIENT_START = signature((lead(b"*", DIGIT), anywhere(b"\r\n$")),
                               *(lead(*nocase(w), {0x20, 0x0D})
                                 for w in (b"PING", b"AUTH", b"HELLO", b"INFO", b"QUIT", b"SELECT")))
REDIS_SERVER_START = signature((lead(set(b"+-:$*%_")), anywhere(b"\r\n")))
REDIS_MID = signature((anywhere(b"*", DIGIT), anywhere(b"\r\n$", DIGIT)))


def _resp_command(d: bytes, pos: int):
    """An array of bulk strings at pos: (command name, end) or None."""
    m = _RESP_ARRAY.match(d, pos)
    if m is None or not 0 < int(m.group(1)) <= 1024:
        return None
    p = m.end()
    name = None
    for i in range(int(m.group(1))):
        b = _RESP_BULK.match(d, p)
        if b is None:
            return (name, len(d)) if p >= len(d) and name else None
        n = int(b.group(1))
        if i == 0:
            name = name_at(d, b.end(), n)
            if name is None or not name.replace("_", "").replace("-", "").isalpha():
                return None
        p = b.end() + n
        if p < len(d) and d[p:p + 2] != b"\r\n" and p + 2 <= len(d):
            return None
        p += 2
    return name.upper(), p


def _redis_commands(d: bytes, pos: int, f: dict) -> int:
    n = 0
    for _ in range(4096):
        c = _resp_command(d, pos)
        if c is None:
            break
        n += 1
        if c[0] not in f["commands"]:
            f["commands"].append(c[0])
        pos = c[1]
        if pos >= len(d):
            break
    return n


def _redis_detection(f: dict, pos: int, head: str) -> Detection:
    secret = [c for c in f["commands"] if c in REDIS_SECRET_COMMANDS]
    return Detection("redis", pos, line(head, f"commands {listing(f['commands'], 5)}",
                                        f"{secret[0]} command in clear (arguments not shown)" if secret else ""),
                     CLEARTEXT, f)


# Lines of other protocols an inline Redis command would otherwise read like: FTP/GridFTP
# "AUTH TLS|SSL|GSSAPI", POP3/IMAP/SMTP SASL "AUTH <mechanism>", IRC "PING :server".
_NOT_REDIS_AUTH = re.compile(rb"AUTH (TLS|SSL|TLS-C|TLS-P|GSSAPI|KERBEROS_V4|PLAIN|LOGIN|CRAM-MD5|DIGEST-MD5|"
                             rb"SCRAM-[\x21-\x7e]+|XOAUTH2|OAUTHBEARER|EXTERNAL|NTLM|ANONYMOUS)\b", re.I)
_INLINE_ARGS = {b"PING": (0, 1), b"AUTH": (1, 2), b"HELLO": (0, 7), b"INFO": (0, 4), b"QUIT": (0, 0),
                b"SELECT": (1, 1)}


def _redis_inline(raw: bytes) -> bool:
    """One inline command line (without CRLF) with the argument count Redis accepts."""
    words = raw.split()
    if not words or words[0].upper() not in _INLINE_ARGS or _NOT_REDIS_AUTH.match(raw):
        return False
    low, high = _INLINE_ARGS[words[0].upper()]
    args = words[1:]
    if not low <= len(args) <= high or any(a.startswith(b":") for a in args):   # IRC trailing parameter
        return False
    return words[0].upper() != b"SELECT" or args[0].isdigit()


def redis_client_at_start(data: bytes) -> Detection | None:
    f = {"commands": [], "inline": False}
    if data[:1] == b"*":
        if _redis_commands(data, 0, f):
            return _redis_detection(f, 0, "Redis RESP commands")
        return None
    m = REDIS_INLINE.match(data)
    if not m or m.group(0).rstrip().endswith((b"HTTP/1.0", b"HTTP/1.1")):
        return None
    # Every line up to the first RESP array must be an inline command, and AUTH or QUIT
    # alone (lines of FTP, POP3, SMTP, GridFTP sessions) need another Redis command.
    pos, names = 0, []
    for _ in range(64):
        end = data.find(b"\r\n", pos, pos + 1024)
        if end < 0 or data[pos:pos + 1] == b"*":
            break
        if not _redis_inline(data[pos:end]):
            return None
        names.append(data[pos:end].split()[0].decode().upper())
        pos = end + 2
    arrays = data[pos:pos + 1] == b"*" and _redis_commands(data, pos, {"commands": [], "inline": False})
    if not names or (set(names) <= {"AUTH", "QUIT"} and not arrays):   # AUTH/QUIT alone: any line protocol
        return None
    f["inline"] = True
    f["commands"] = list(dict.fromkeys(names))
    return _redis_detection(f, 0, "Redis inline command")


def redis_server_at_start(data: bytes) -> Detection | None:
    replies, pos = 0, 0
    for _ in range(256):
        if pos >= len(data):
            break
        b = _RESP_BULK.match(data, pos)
        if b:
            pos = b.end() + int(b.group(1)) + 2
        elif data.startswith(b"$-1\r\n", pos) or data.startswith(b"*-1\r\n", pos):
            pos += 5
        else:
            m = _RESP_ARRAY.match(data, pos) or _RESP_LINE.match(data, pos)
            if m is None:
                return None          # not RESP all the way: POP3 "+OK ..." and friends
            pos = m.end()
        replies += 1
    first = data[:16]
    if replies == 0 or (first.startswith(b"+") and not first.startswith((b"+OK\r\n", b"+PONG\r\n"))):
        return None
    return Detection("redis", 0, f"Redis RESP replies ({replies})", CLEARTEXT, {"replies": replies})


_REDIS_CAND = re.compile(rb"\*\d{1,4}\r\n\$\d{1,9}\r\n")


def redis_mid_stream(data: bytes) -> Detection | None:
    for i, m in enumerate(_REDIS_CAND.finditer(data)):
        if i >= MAX_CANDIDATES:
            break
        f = {"commands": [], "inline": False}
        n = _redis_commands(data, m.start(), f)
        if n >= 2 or (n == 1 and data.find(b"*", m.end()) < 0):
            return _redis_detection(f, m.start(), "Redis RESP commands mid-stream")
    return None


# --------------------------------------------------------------------------- memcached

MC_STORAGE = (b"set", b"add", b"replace", b"append", b"prepend", b"cas")
MC_COMMANDS = MC_STORAGE + (b"get", b"gets", b"gat", b"gats", b"delete", b"incr", b"decr", b"touch",
                            b"stats", b"flush_all", b"version", b"verbosity", b"quit",
                            b"mg", b"ms", b"md", b"ma", b"mn", b"me")
_MC_LINE = re.compile(rb"([a-z_]{2,9})((?: [\x21-\x7e]{1,250}){0,24})\r\n")
_MC_REPLY = re.compile(rb"(VALUE [\x21-\x7e]{1,250} \d+ (\d+)(?: \d+)?|STORED|NOT_STORED|EXISTS|NOT_FOUND|"
                       rb"DELETED|TOUCHED|END|OK|ERROR|CLIENT_ERROR [^\r\n]*|SERVER_ERROR [^\r\n]*|"
                       rb"VERSION [^\r\n]*|STAT [^\r\n]*|HD[^\r\n]*|VA (\d+)[^\r\n]*|EN|NF|NS|EX|MN)\r\n")
MC_OPCODES = {0x00: "get", 0x01: "set", 0x02: "add", 0x03: "replace", 0x04: "delete", 0x05: "incr",
              0x06: "decr", 0x07: "quit", 0x08: "flush", 0x09: "getq", 0x0A: "noop", 0x0B: "version",
              0x0C: "getk", 0x0D: "getkq", 0x0E: "append", 0x0F: "prepend", 0x10: "stat",
              0x20: "sasl_list_mechs", 0x21: "sasl_auth", 0x22: "sasl_step"}


# What memcached_at_start can accept (prefilter.py): a binary header (magic, known
# opcode, zero data type, 24 bytes); a text command word then a space or CR; a reply
# that opens a session's replies; text lines end with CRLF.
MEMCACHED_START = signature(
    lead({0x80, 0x81}, set(MC_OPCODES), EVERY_BYTE, EVERY_BYTE, EVERY_BYTE, b"\0", min_len=24),
    *((lead(c, {0x20, 0x0D}), anywhere(b"\r\n")) for c in MC_COMMANDS),
    *((lead(r), anywhere(b"\r\n")) for r in (b"VALUE ", b"VERSION ", b"STAT ", b"STORED\r\n", b"END\r\n")))


# Argument counts of the text commands (protocol.txt), after the command word.
_MC_ARGS = {b"get": (1, 24), b"gets": (1, 24), b"gat": (2, 24), b"gats": (2, 24), b"delete": (1, 2),
            b"incr": (2, 3), b"decr": (2, 3), b"touch": (2, 3), b"stats": (0, 2), b"flush_all": (0, 2),
            b"version": (0, 0), b"verbosity": (1, 2), b"quit": (0, 0), b"mg": (1, 24), b"ms": (2, 24),
            b"md": (1, 24), b"ma": (1, 24), b"mn": (0, 0), b"me": (1, 1)}
_MC_NUMBER_AT = {b"incr": 1, b"decr": 1, b"touch": 1, b"gat": 0, b"gats": 0, b"verbosity": 0, b"ms": 1}


def _mc_text_ok(cmd: bytes, args: list[bytes]) -> bool:
    """The argument shapes of one text command: counts, and numbers where numbers go."""
    if cmd in MC_STORAGE:     # key flags exptime bytes [cas unique] [noreply]
        if not 4 <= len(args) <= 6 or not all(a.isdigit() for a in args[1:4]):
            return False
        return cmd != b"cas" or (len(args) >= 5 and args[4].isdigit())
    low, high = _MC_ARGS.get(cmd, (0, -1))
    if not low <= len(args) <= high:
        return False
    at = _MC_NUMBER_AT.get(cmd)
    return at is None or args[at].lstrip(b"-").isdigit()


def _mc_text_commands(d: bytes, pos: int, f: dict) -> int:
    n = 0
    for _ in range(4096):
        m = _MC_LINE.match(d, pos)
        if m is None or m.group(1) not in MC_COMMANDS:
            break
        args = m.group(2).split()
        if not _mc_text_ok(m.group(1), args):
            break
        n += 1
        cmd = m.group(1).decode()
        if cmd not in f["commands"]:
            f["commands"].append(cmd)
        pos = m.end()
        if m.group(1) in MC_STORAGE:
            pos += int(args[3]) + 2
            if pos <= len(d) and d[pos - 2:pos] != b"\r\n":
                return 0       # the data block must end where its length says
        if pos >= len(d):
            break
    return n


# Extras length of each binary opcode (protocol_binary.h): requests; responses carry 4 (flags)
# on a successful get, none otherwise.
_MC_REQUEST_EXTRAS = {0x01: (8,), 0x02: (8,), 0x03: (8,), 0x05: (20,), 0x06: (20,), 0x08: (0, 4),
                      0x11: (8,), 0x12: (8,), 0x13: (8,), 0x15: (20,), 0x16: (20,), 0x18: (0, 4), 0x1B: (1, 0)}
_MC_KEYED = {0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x09, 0x0C, 0x0D, 0x0E, 0x0F}
_MC_GETS = {0x00, 0x09, 0x0C, 0x0D}
_MC_STATUSES = set(range(0x0A)) | {0x20, 0x21, 0x22, 0x23, 0x24, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86}
MC_MIN_HEADERS = 2


def _mc_header_ok(d: bytes, pos: int, magic: int) -> bool:
    """One 24-byte header consistent with its magic and opcode (extras, key, body lengths, status)."""
    op, keylen, extlen, body = d[pos + 1], u16(d, pos + 2), d[pos + 4], u32(d, pos + 8)
    if d[pos] != magic or d[pos + 5] != 0 or op not in MC_OPCODES or body < keylen + extlen or body > 1 << 20:
        return False
    if magic == 0x80:
        if extlen not in _MC_REQUEST_EXTRAS.get(op, (0,)) or (op in _MC_KEYED) != (keylen > 0):
            return False
        return op not in (0x07, 0x0A, 0x0B) or body == 0          # quit, noop, version: no body
    status = u16(d, pos + 6)
    if status not in _MC_STATUSES:
        return False
    return extlen == (4 if op in _MC_GETS and status == 0 else 0)


def _mc_binary(d: bytes, pos: int, f: dict) -> int:
    """Chained headers of one magic; 0 unless they end at the end of the data or MC_MIN_HEADERS chain."""
    n, magic = 0, d[pos] if pos < len(d) else 0
    for _ in range(4096):
        if pos + 24 > len(d) or not _mc_header_ok(d, pos, magic):
            break
        n += 1
        name = MC_OPCODES[d[pos + 1]]
        if name not in f["commands"]:
            f["commands"].append(name)
        pos += 24 + u32(d, pos + 8)
        if pos >= len(d):
            return n if pos == len(d) or n >= MC_MIN_HEADERS else 0
    return n if n >= MC_MIN_HEADERS else 0


def memcached_at_start(data: bytes) -> Detection | None:
    f = {"format": None, "commands": []}
    if data[:1] in (b"\x80", b"\x81"):
        if _mc_binary(data, 0, f):
            f["format"] = "binary"
            role = "request" if data[0] == 0x80 else "response"
            sasl = " (SASL auth in clear)" if "sasl_auth" in f["commands"] else ""
            return Detection("memcached", 0, line(f"memcached binary {role} headers{sasl}",
                                                  f"opcodes {listing(f['commands'], 5)}"), CLEARTEXT, f)
        return None
    if _mc_text_commands(data, 0, f):
        f["format"] = "text"
        return Detection("memcached", 0, f"memcached text commands: {listing(f['commands'], 5)}",
                         CLEARTEXT, f)
    m = _MC_REPLY.match(data)
    if m and (m.group(1).startswith((b"VALUE", b"VERSION", b"STAT", b"STORED", b"END"))):
        f["format"] = "text"
        return Detection("memcached", 0, f"memcached text reply {clean(m.group(1).split(b' ')[0].decode())}",
                         CLEARTEXT, f)
    return None


# --------------------------------------------------------------------------- OVSDB

OVSDB_METHODS = ("list_dbs", "get_schema", "transact", "cancel", "monitor", "monitor_cond",
                 "monitor_cond_since", "monitor_cond_change", "monitor_cancel", "update", "update2",
                 "update3", "lock", "steal", "unlock", "locked", "stolen", "echo",
                 "set_db_change_aware", "convert", "get_server_id")
OVSDB_DATABASES = (b"Open_vSwitch", b"OVN_Northbound", b"OVN_Southbound", b"_Server")
_OVSDB_METHOD = re.compile(rb'\{\s*"(?:method|id)"[^{}]{0,256}?"method"\s*:\s*"([a-z_0-9]{1,32})"|'
                           rb'\{\s*"method"\s*:\s*"([a-z_0-9]{1,32})"')
_OVSDB_RESULT = re.compile(rb'\{\s*"(?:id|result|error)"\s*:')


# What the OVSDB detectors can accept (prefilter.py): a JSON object first (after
# whitespace) naming a method, or a result in its first 4 KiB; mid-stream, '{"method"'.
_JSON_START = lead(set(b" \t\r\n{"))
OVSDB_START = signature((_JSON_START, anywhere(b'"method"')),
                        (_JSON_START, anywhere(b'"result"', within=4096)))
OVSDB_MID = signature(anywhere(b'{"method"'))


def _ovsdb(data: bytes, pos: int, head: str) -> Detection | None:
    m = _OVSDB_METHOD.match(data, pos)
    if m:
        method = (m.group(1) or m.group(2)).decode()
        if method not in OVSDB_METHODS:
            return None
        dbs = [db.decode() for db in OVSDB_DATABASES if db in data[:4096]]
        f = {"method": method, "databases": dbs}
        return Detection("ovsdb", pos, line(f"{head}OVSDB JSON-RPC method {method}",
                                            f"databases {listing(dbs)}" if dbs else ""), CLEARTEXT, f)
    if _OVSDB_RESULT.match(data, pos):
        dbs = [db.decode() for db in OVSDB_DATABASES if db in data[:4096]]
        if dbs and b'"result"' in data[:4096]:
            return Detection("ovsdb", pos, f"{head}OVSDB JSON-RPC result naming {listing(dbs)}",
                             CLEARTEXT, {"method": None, "databases": dbs})
    return None


def ovsdb_at_start(data: bytes) -> Detection | None:
    pos = len(data) - len(data.lstrip(b" \t\r\n")) if data[:1] in b" \t\r\n" else 0
    if data[pos:pos + 1] != b"{":
        return None
    return _ovsdb(data, pos, "")


def ovsdb_mid_stream(data: bytes) -> Detection | None:
    i = data.find(b'{"method"')
    for _ in range(16):
        if i < 0:
            return None
        det = _ovsdb(data, i, f"at offset {i}: ")
        if det:
            return det
        i = data.find(b'{"method"', i + 1)
    return None
