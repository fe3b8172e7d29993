"""In-band TLS upgrades: a clear-text protocol that switches its connection to TLS.

Each detector reads the clear-text start of one direction. When the upgrade
command (client) or its acceptance (server) is followed at once by a TLS
record, the detection sets ``tls_from`` (the offset of the ClientHello or
ServerHello) and ``upgrade`` (what was upgraded, e.g. "smtp STARTTLS");
``registry.detect`` then hands the bytes from ``tls_from`` to the TLS rows
and the flow's verdict is the TLS session's (classify/evidence.py). Such a
detection proves NOTHING by itself; clear-text exchanges that never upgrade
prove CLEARTEXT.

Formats (the client's upgrade request -> the server's acceptance):
- SMTP (RFC 3207): "EHLO" ... "STARTTLS" -> "220"; FTP (RFC 4217): "AUTH TLS"
  or "AUTH SSL" -> "234"; both servers greet with "220".
- IMAP (RFC 9051 6.2.1): "tag STARTTLS" -> "tag OK"; POP3 (RFC 2595 4): "STLS" -> "+OK".
- XMPP (RFC 6120 5.4): <starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/> -> <proceed .../>.
- LDAP (RFC 4511 4.14): ExtendedRequest with requestName 1.3.6.1.4.1.1466.20037 ->
  ExtendedResponse resultCode success (0).
- PostgreSQL (protocol-flow 55.2.10): SSLRequest (length 8, code 80877103) -> 'S'.
- RDP (MS-RDPBCGR 2.2.1.1/2.2.1.2): X.224 Connection Request carrying RDP_NEG_REQ
  with PROTOCOL_SSL/HYBRID -> Connection Confirm with RDP_NEG_RSP; then TLS.
HTTP CONNECT (RFC 9110 9.3.6) is read by http.py, MySQL and NBD by their modules.

Fields: role ('client'/'server'), commands (the first words of the lines, or
message names), upgrade, tls_from (None without a TLS record after the upgrade).
"""

from __future__ import annotations

import re

from .base import (CLEARTEXT, EVERY_BYTE, NOTHING, TEXT, Detection, anywhere, lead, line, listing, nocase,
                   signature)

TLS_RECORD = b"\x16\x03"
MAX_LINES = 256
_LINE = re.compile(rb"[\t\x20-\x7e]{0,2048}\r?\n")


def text_lines(data: bytes, pos: int = 0) -> tuple[list[bytes], int]:
    """The printable lines (CRLF or LF ended) from ``pos`` and the offset after the last one."""
    lines = []
    for _ in range(MAX_LINES):
        m = _LINE.match(data, pos)
        if m is None:
            break
        lines.append(m.group().rstrip(b"\r\n"))
        pos = m.end()
    return lines, pos


def _tls_after(data: bytes, end: int) -> int | None:
    return end if data.startswith(TLS_RECORD, end) else None


def _words(lines: list[bytes], skip_tag: bool = False) -> list[str]:
    out: list[str] = []
    for raw in lines[:MAX_LINES]:
        parts = raw.split(b" ")
        word = parts[1] if skip_tag and len(parts) > 1 else parts[0]
        name = word[:16].decode("ascii", "replace").upper()
        if name and name not in out:
            out.append(name)
    return out


def _upgrade_detection(protocol: str, role: str, head: str, lines: list[bytes], commands: list[str],
                       upgrade: str, upgraded: bool, tls_from: int | None) -> Detection:
    """The detection of a text exchange that did (``upgraded``: its last line asks for or
    accepts the upgrade) or did not upgrade."""
    f = {"role": role, "commands": commands, "lines": len(lines), "upgrade": upgrade if upgraded else None,
         "tls_from": tls_from}
    shown = f"{len(lines)} line{'s' if len(lines) != 1 else ''}: {listing(commands, 5)}"
    if tls_from is not None:
        return Detection(protocol, 0, line(head, shown, f"{upgrade}: TLS from offset {tls_from}"), NOTHING, f)
    if upgraded:
        return Detection(protocol, 0, line(head, shown, f"{upgrade} (no TLS record seen after it)"), NOTHING, f)
    return Detection(protocol, 0, line(head, shown, "no TLS upgrade: the exchange is in clear"), CLEARTEXT, f)


# ----------------------------------------------------------------- SMTP / FTP

_SMTP_HELLO = re.compile(rb"(EHLO|HELO|LHLO) [\x21-\x7e]", re.I)
_FTP_FIRST = re.compile(rb"(AUTH (TLS|SSL|TLS-C|TLS-P)|FEAT|SYST|OPTS [\x21-\x7e]+)\r?\Z", re.I)
_FTP_UPGRADE = re.compile(rb"AUTH (TLS|SSL|TLS-C|TLS-P)\Z", re.I)
_REPLY = re.compile(rb"([2-5]\d\d)([ -]|\Z)")
SMTP_CLIENT_START = signature(*(lead(*nocase(w), b" ") for w in (b"EHLO", b"HELO", b"LHLO")))
FTP_CLIENT_START = signature(*(lead(*nocase(w)) for w in (b"AUTH ", b"FEAT", b"SYST", b"OPTS ")))
REPLY_220_START = signature(lead(b"220", {0x20, 0x2D}))


def smtp_client_at_start(data: bytes) -> Detection | None:
    lines, end = text_lines(data)
    if not lines or not _SMTP_HELLO.match(lines[0]):
        return None
    upgraded = lines[-1].upper() == b"STARTTLS"
    return _upgrade_detection("smtp", "client", "SMTP client", lines, _words(lines), "smtp STARTTLS",
                              upgraded, _tls_after(data, end) if upgraded else None)


def ftp_client_at_start(data: bytes) -> Detection | None:
    lines, end = text_lines(data)
    if not lines or not _FTP_FIRST.match(lines[0]):
        return None
    upgraded = bool(_FTP_UPGRADE.match(lines[-1]))
    name = f"ftp {lines[-1].decode().upper()}" if upgraded else "ftp AUTH TLS"
    return _upgrade_detection("ftp", "client", "FTP client", lines, _words(lines), name,
                              upgraded, _tls_after(data, end) if upgraded else None)


def reply_220_at_start(data: bytes) -> Detection | None:
    """An SMTP or FTP server (both greet with 220): named by the greeting, then the codes.

    Upgrade accepted: 220 after the greeting (SMTP STARTTLS) or 234 (FTP AUTH TLS)."""
    lines, end = text_lines(data)
    if not lines or not lines[0].startswith((b"220 ", b"220-")):
        return None
    codes = [m.group(1) for m in map(_REPLY.match, lines) if m]
    if len(codes) * 2 < len(lines):     # mostly reply lines (multi-line replies allow some free text)
        return None
    greeting = lines[0].upper()
    last = codes[-1] if codes and _REPLY.match(lines[-1]) else None
    if b"234" in codes or b"FTP" in greeting:
        protocol = "ftp"
    elif b"SMTP" in greeting or b"250" in codes or (last == b"220" and len(codes) > 1):
        protocol = "smtp"
    else:
        return None
    upgraded = (last == b"234") if protocol == "ftp" else (last == b"220" and len(lines) > 1)
    upgrade = "ftp AUTH TLS" if protocol == "ftp" else "smtp STARTTLS"
    return _upgrade_detection(protocol, "server", f"{protocol.upper()} server replies", lines,
                              [c.decode() for c in dict.fromkeys(codes)], upgrade, upgraded,
                              _tls_after(data, end) if upgraded else None)


# ----------------------------------------------------------------- IMAP / POP3

_IMAP_COMMANDS = (b"CAPABILITY", b"STARTTLS", b"LOGIN", b"AUTHENTICATE", b"NOOP", b"ID", b"LOGOUT")
_IMAP_FIRST = re.compile(rb"[\x21-\x7e]{1,32} (" + b"|".join(_IMAP_COMMANDS) + rb")( |\Z)", re.I)
_IMAP_UPGRADE = re.compile(rb"[\x21-\x7e]{1,32} STARTTLS\Z", re.I)
_IMAP_TAGGED_OK = re.compile(rb"[\x21-\x29\x2c-\x7e][\x21-\x7e]{0,31} OK( |\Z)", re.I)
IMAP_CLIENT_START = signature(*((lead(set(range(0x21, 0x7F))), anywhere(b" ", *nocase(c), within=44))
                                for c in _IMAP_COMMANDS))
IMAP_SERVER_START = signature(lead(b"* OK"), lead(b"* PREAUTH"))


def imap_client_at_start(data: bytes) -> Detection | None:
    lines, end = text_lines(data)
    if not lines or not _IMAP_FIRST.match(lines[0]) or lines[0].startswith((b"* ", b"+ ")):
        return None
    upgraded = bool(_IMAP_UPGRADE.match(lines[-1]))
    return _upgrade_detection("imap", "client", "IMAP client", lines, _words(lines, skip_tag=True),
                              "imap STARTTLS", upgraded, _tls_after(data, end) if upgraded else None)


def imap_server_at_start(data: bytes) -> Detection | None:
    lines, end = text_lines(data)
    if not lines or not lines[0].startswith((b"* OK", b"* PREAUTH")):
        return None
    upgraded = len(lines) > 1 and bool(_IMAP_TAGGED_OK.match(lines[-1]))
    return _upgrade_detection("imap", "server", "IMAP server", lines, _words(lines, skip_tag=True),
                              "imap STARTTLS", upgraded, _tls_after(data, end) if upgraded else None)


_POP3_FIRST = re.compile(rb"(CAPA|STLS|APOP [\x21-\x7e])", re.I)
POP3_CLIENT_START = signature(*(lead(*nocase(w)) for w in (b"CAPA", b"STLS", b"APOP ")))
POP3_SERVER_START = signature(lead(b"+OK "))


def pop3_client_at_start(data: bytes) -> Detection | None:
    lines, end = text_lines(data)
    if not lines or not _POP3_FIRST.match(lines[0]):
        return None
    upgraded = lines[-1].upper() == b"STLS"
    return _upgrade_detection("pop3", "client", "POP3 client", lines, _words(lines), "pop3 STLS",
                              upgraded, _tls_after(data, end) if upgraded else None)


def pop3_server_at_start(data: bytes) -> Detection | None:
    lines, end = text_lines(data)
    if not lines or not lines[0].startswith(b"+OK "):
        return None
    status = [raw for raw in lines if raw.startswith((b"+OK", b"-ERR"))]
    upgraded = len(lines) > 1 and lines[-1].startswith(b"+OK")
    return _upgrade_detection("pop3", "server", "POP3 server", lines, _words(status), "pop3 STLS",
                              upgraded, _tls_after(data, end) if upgraded else None)


# ----------------------------------------------------------------- XMPP

_XMPP_TLS = re.compile(rb"<(starttls|proceed)\s+xmlns\s*=\s*['\"]urn:ietf:params:xml:ns:xmpp-tls['\"]\s*/>")
_XML_TEXT = re.compile(rb"[\t\r\n\x20-\x7e]*\Z")
XMPP_START = signature(lead(b"<?xml"), lead(b"<stream:stream"))


def xmpp_at_start(data: bytes) -> Detection | None:
    if not data.startswith((b"<?xml", b"<stream:stream")) or b"<stream:stream" not in data[:512]:
        return None
    head = data[:8192]
    if b"jabber:" not in head and b"xmpp" not in head:
        return None
    role = "server" if b"<stream:features" in head or b"<proceed" in head else "client"
    for m in _XMPP_TLS.finditer(head):
        wanted = "client" if m.group(1) == b"starttls" else "server"
        if wanted != role or not _XML_TEXT.match(data[:m.start()]):
            continue
        tls_from = _tls_after(data, m.end())
        f = {"role": role, "commands": [m.group(1).decode()], "lines": None, "upgrade": "xmpp STARTTLS",
             "tls_from": tls_from}
        tail = f"TLS from offset {tls_from}" if tls_from is not None else "no TLS record seen after it"
        return Detection("xmpp", 0, line(f"XMPP stream, {role} <{m.group(1).decode()}/>", tail), NOTHING, f)
    if role == "client" and b"<starttls" in head:
        return None        # asked for, answer not yet seen: proves nothing
    f = {"role": role, "commands": [], "lines": None, "upgrade": None, "tls_from": None}
    return Detection("xmpp", 0, f"XMPP {role} stream without STARTTLS: the exchange is in clear", CLEARTEXT, f)


# ----------------------------------------------------------------- LDAP

LDAP_STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"
LDAP_CLIENT_START = signature((lead(b"\x30"), anywhere(b"\x77", within=16), anywhere(LDAP_STARTTLS_OID, within=64)))
LDAP_SERVER_START = signature((lead(b"\x30"), anywhere(b"\x78", within=16), anywhere(b"\x0a\x01\x00", within=24)))


def _ber_length(data: bytes, pos: int) -> tuple[int, int] | None:
    """(length, offset of the contents) of the BER length at ``pos``."""
    if pos >= len(data):
        return None
    first = data[pos]
    if first < 0x80:
        return first, pos + 1
    n = first & 0x7F
    if not 1 <= n <= 4 or pos + 1 + n > len(data):
        return None
    return int.from_bytes(data[pos + 1:pos + 1 + n], "big"), pos + 1 + n


def _ldap_message(data: bytes, op_tag: int) -> tuple[int, int, int] | None:
    """LDAPMessage at 0 with an INTEGER messageID and protocolOp ``op_tag``:
    (offset of the op's contents, its end, the message end)."""
    if data[:1] != b"\x30":
        return None
    outer = _ber_length(data, 1)
    if outer is None or outer[0] > 1 << 16 or data[outer[1]:outer[1] + 1] != b"\x02":
        return None
    mid = _ber_length(data, outer[1] + 1)
    if mid is None or not 1 <= mid[0] <= 4:
        return None
    pos = mid[1] + mid[0]
    if data[pos:pos + 1] != bytes([op_tag]):
        return None
    op = _ber_length(data, pos + 1)
    end = outer[1] + outer[0]
    if op is None or op[1] + op[0] > end:
        return None
    return op[1], op[1] + op[0], end


def _ldap_detection(role: str, message: str, end: int, data: bytes) -> Detection:
    tls_from = _tls_after(data, end)
    f = {"role": role, "commands": [message], "lines": None, "upgrade": "ldap StartTLS", "tls_from": tls_from}
    tail = f"TLS from offset {tls_from}" if tls_from is not None else "no TLS record seen after it"
    return Detection("ldap", 0, line(f"LDAP {message} (StartTLS, OID 1.3.6.1.4.1.1466.20037)", tail), NOTHING, f)


def ldap_client_at_start(data: bytes) -> Detection | None:
    msg = _ldap_message(data, 0x77)         # [APPLICATION 23] ExtendedRequest
    if msg is None or data[msg[0]:msg[0] + 1] != b"\x80" or \
            data[msg[0] + 2:msg[0] + 2 + len(LDAP_STARTTLS_OID)] != LDAP_STARTTLS_OID:
        return None
    return _ldap_detection("client", "ExtendedRequest", msg[2], data)


def ldap_server_at_start(data: bytes) -> Detection | None:
    msg = _ldap_message(data, 0x78)         # [APPLICATION 24] ExtendedResponse, resultCode first
    if msg is None or data[msg[0]:msg[0] + 3] != b"\x0a\x01\x00":
        return None
    if data[msg[0]:msg[1]].find(LDAP_STARTTLS_OID) < 0 and _tls_after(data, msg[2]) is None:
        return None     # neither names StartTLS nor is followed by TLS: another extended operation
    return _ldap_detection("server", "ExtendedResponse success", msg[2], data)


# ----------------------------------------------------------------- PostgreSQL

PG_SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"       # length 8, code 80877103
PG_CLIENT_START = signature(lead(PG_SSL_REQUEST))
PG_SERVER_START = signature(lead(b"S\x16\x03"))


def postgresql_client_at_start(data: bytes) -> Detection | None:
    if not data.startswith(PG_SSL_REQUEST):
        return None
    tls_from = _tls_after(data, 8)
    f = {"role": "client", "commands": ["SSLRequest"], "lines": None, "upgrade": "postgresql SSLRequest",
         "tls_from": tls_from}
    if tls_from is None and len(data) > 8:
        f["upgrade"] = None       # refused ('N'): the startup message follows in clear
        return Detection("postgresql", 0, "PostgreSQL SSLRequest, then the session in clear", CLEARTEXT, f)
    tail = f"TLS from offset {tls_from}" if tls_from is not None else "no TLS record seen after it"
    return Detection("postgresql", 0, line("PostgreSQL SSLRequest (80877103)", tail), NOTHING, f)


def postgresql_server_at_start(data: bytes) -> Detection | None:
    if not data.startswith(b"S\x16\x03"):
        return None
    f = {"role": "server", "commands": ["S"], "lines": None, "upgrade": "postgresql SSLRequest", "tls_from": 1}
    return Detection("postgresql", 0, "PostgreSQL accepts SSLRequest ('S'): TLS from offset 1", NOTHING, f)


# ----------------------------------------------------------------- RDP

RDP_PROTOCOLS = {0: "RDP", 1: "SSL", 2: "HYBRID", 4: "RDSTLS", 8: "HYBRID_EX", 16: "RDSAAD"}
RDP_TLS = 0x1 | 0x2 | 0x8        # PROTOCOL_SSL, PROTOCOL_HYBRID, PROTOCOL_HYBRID_EX: the session runs in TLS
RDP_CLIENT_START = signature(lead(b"\x03\x00", EVERY_BYTE, EVERY_BYTE, EVERY_BYTE, b"\xe0"))
RDP_SERVER_START = signature(lead(b"\x03\x00", EVERY_BYTE, EVERY_BYTE, EVERY_BYTE, b"\xd0"))


def _rdp(data: bytes, pdu: int, neg_type: int, role: str) -> Detection | None:
    """TPKT (version 3) + X.224 ``pdu`` ending with an RDP_NEG structure of ``neg_type``."""
    if len(data) < 19 or data[:2] != b"\x03\x00" or data[5] != pdu:
        return None
    size = int.from_bytes(data[2:4], "big")
    if not 19 <= size <= 1024 or data[4] != size - 5 or size > len(data):
        return None
    neg = data[size - 8:size]
    if neg[0] != neg_type or neg[2:4] != b"\x08\x00":
        return None
    chosen = int.from_bytes(neg[4:8], "little")
    names = [n for bit, n in RDP_PROTOCOLS.items() if bit and chosen & bit] or ["RDP"]
    tls = bool(chosen & RDP_TLS)
    tls_from = _tls_after(data, size) if tls else None
    what = "requests" if role == "client" else "selects"
    f = {"role": role, "commands": names, "lines": None, "upgrade": f"rdp {'/'.join(names)}" if tls else None,
         "tls_from": tls_from}
    pdu_name = "Connection Request" if role == "client" else "Connection Confirm"
    head = f"RDP X.224 {pdu_name}, {what} {listing(names)}"
    if not tls:
        return Detection("rdp", 0, line(head, "standard RDP security (RC4), not TLS"), NOTHING, f)
    tail = f"TLS from offset {tls_from}" if tls_from is not None else "no TLS record seen after it"
    return Detection("rdp", 0, line(head, tail), NOTHING, f)


def rdp_client_at_start(data: bytes) -> Detection | None:
    return _rdp(data, 0xE0, 0x01, "client")       # RDP_NEG_REQ


def rdp_server_at_start(data: bytes) -> Detection | None:
    return _rdp(data, 0xD0, 0x02, "server")       # RDP_NEG_RSP


# ----------------------------------------------------------------- any line protocol

# The first token of a command or reply line: a word, a 3-digit code, a POP3/IMAP/IRC marker.
_GRAMMAR = re.compile(rb"(?:[A-Za-z][A-Za-z0-9_.-]{1,31}|\d{3}|\+OK|-ERR|\*|:[\x21-\x7e]{1,64}|"
                      rb"[A-Za-z0-9.]{1,32} [A-Za-z]{2,32})(?:[ -]|\Z)")
TEXT_MIN_BYTES = 8
_FIRST = set(b"+-*:") | set(range(0x30, 0x3A)) | set(range(0x41, 0x5B)) | set(range(0x61, 0x7B))
# (every byte of accepted data is printable or a line end, and there are at least TEXT_MIN_BYTES)
TEXT_START = signature((lead(_FIRST, *[TEXT] * 7), anywhere(b"\n", within=2050)))


def text_lines_at_start(data: bytes) -> Detection | None:
    """Any request/response line protocol: CRLF/LF-ended lines of printable ASCII, each
    opening with a command word, a reply code or a status marker, to the end of the data
    (a last line may be cut short). Run only when no other row named the stream
    (``registry.detect``): a few hundred bytes of clear text are plaintext whatever the protocol."""
    lines, end = text_lines(data)
    rest = data[end:]
    if not lines or len(data) < TEXT_MIN_BYTES or len(rest) > 2048 or not _LINE.match(rest + b"\n"):
        return None
    if not all(_GRAMMAR.match(raw) for raw in lines):
        return None
    f = {"role": None, "commands": _words(lines)[:16], "lines": len(lines), "upgrade": None, "tls_from": None}
    return Detection("text", 0, line(f"{len(lines)} line{'s' if len(lines) != 1 else ''} of printable ASCII, "
                                     "each a command or reply", f"first words {listing(f['commands'], 5)}"),
                     CLEARTEXT, f)
