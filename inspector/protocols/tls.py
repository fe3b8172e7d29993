"""TLS (RFC 8446, RFC 5246): record chains, ClientHello, ServerHello, CertificateRequest.

Record: u8 type (20 change_cipher_spec, 21 alert, 22 handshake, 23
application_data, 24 heartbeat), be16 version 0x0300-0x0304, be16 length
(<= 2^14 + 2048). Handshake messages (u8 type, be24 length) may span
records; they are read until the first ChangeCipherSpec or application_data
record (what follows is encrypted). ClientHello: legacy version, random,
session id, cipher suites, compression methods, extensions (server_name 0,
ALPN 16, supported_versions 43, key_share 51). ServerHello: legacy version,
random, session id, cipher suite, compression, extensions; supported_versions
0x0304 means TLS 1.3. In TLS 1.3 everything after the ServerHello is
encrypted (CertificateRequest too): client_cert_requested is then None
(not visible), not False.

Measured on the captures: GnuTLS (QEMU native TLS, libvirt 16514, NBD
STARTTLS) and OpenSSL (Python ssl server, curl) all negotiate TLS 1.3 with
TLS_AES_256_GCM_SHA384 and send the middlebox-compatibility
ChangeCipherSpec; GnuTLS sends no SNI.

Fields, client side: role, record_version, legacy_version, offered_versions,
sni, alpn, cipher_suites_offered, ccs, application_data_records,
client_certificate_sent (TLS <= 1.2 only), truncated (the ClientHello is cut
short by the end of the data: sni/offered_versions may be missing, offered_versions
is None when unknown). Server side: role, version,
cipher, cipher_id, hello_retry_request, group, alpn, client_cert_requested,
server_certificates (TLS <= 1.2: certificates sent in clear), ccs,
application_data_records, null_cipher, anonymous. Mid-stream: records,
application_data_records, record_version, readable_payload.
"""

from __future__ import annotations

from .base import (CLEARTEXT, ENCRYPTED, EVERY_BYTE, NOTHING, Detection, anywhere, clean, lead, line, listing,
                   name_at, signature, u16)

CHANGE_CIPHER_SPEC, ALERT, HANDSHAKE, APPLICATION_DATA, HEARTBEAT = 20, 21, 22, 23, 24
RECORD_TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data",
                24: "heartbeat"}
RECORD_MAX = (1 << 14) + 2048          # TLSCiphertext.length limit, RFC 5246 6.2.3
CLIENT_HELLO, SERVER_HELLO, CERTIFICATE, SERVER_KEY_EXCHANGE = 1, 2, 11, 12
CERTIFICATE_REQUEST, SERVER_HELLO_DONE, CLIENT_KEY_EXCHANGE = 13, 14, 16
VERSIONS = {0x0300: "SSL 3.0", 0x0301: "TLS 1.0", 0x0302: "TLS 1.1", 0x0303: "TLS 1.2",
            0x0304: "TLS 1.3"}
EXT_SERVER_NAME, EXT_ALPN, EXT_SUPPORTED_VERSIONS, EXT_KEY_SHARE = 0, 16, 43, 51
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")  # RFC 8446 4.1.3

# IANA TLS cipher suite registry: the common ones, and every NULL / anonymous one that matters.
CIPHER_SUITES = {
    0x1301: "TLS_AES_128_GCM_SHA256", 0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256", 0x1304: "TLS_AES_128_CCM_SHA256",
    0x1305: "TLS_AES_128_CCM_8_SHA256",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", 0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", 0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAA: "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256", 0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256", 0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA", 0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256", 0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", 0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", 0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", 0xC024: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", 0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    0x0033: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA", 0x0039: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA", 0x0005: "TLS_RSA_WITH_RC4_128_SHA",
    # integrity only: records readable on the wire
    0x0000: "TLS_NULL_WITH_NULL_NULL", 0x0001: "TLS_RSA_WITH_NULL_MD5", 0x0002: "TLS_RSA_WITH_NULL_SHA",
    0x003B: "TLS_RSA_WITH_NULL_SHA256", 0xC006: "TLS_ECDHE_ECDSA_WITH_NULL_SHA",
    0xC010: "TLS_ECDHE_RSA_WITH_NULL_SHA", 0x002C: "TLS_PSK_WITH_NULL_SHA",
    0x00B0: "TLS_PSK_WITH_NULL_SHA256", 0x00B1: "TLS_PSK_WITH_NULL_SHA384",
    0xC0B4: "TLS_SHA256_SHA256", 0xC0B5: "TLS_SHA384_SHA384",          # RFC 9150
    # anonymous Diffie-Hellman: encrypted, but no authentication (e.g. QEMU tls-creds-anon)
    0x0034: "TLS_DH_anon_WITH_AES_128_CBC_SHA", 0x003A: "TLS_DH_anon_WITH_AES_256_CBC_SHA",
    0x00A6: "TLS_DH_anon_WITH_AES_128_GCM_SHA256", 0x00A7: "TLS_DH_anon_WITH_AES_256_GCM_SHA384",
    0x006C: "TLS_DH_anon_WITH_AES_128_CBC_SHA256", 0x006D: "TLS_DH_anon_WITH_AES_256_CBC_SHA256",
    0xC018: "TLS_ECDH_anon_WITH_AES_128_CBC_SHA", 0xC019: "TLS_ECDH_anon_WITH_AES_256_CBC_SHA",
}
GROUPS = {0x0017: "secp256r1", 0x0018: "secp384r1", 0x0019: "secp521r1", 0x001D: "x25519",
          0x001E: "x448", 0x0100: "ffdhe2048", 0x0101: "ffdhe3072", 0x0102: "ffdhe4096",
          0x11EC: "X25519MLKEM768", 0x6399: "X25519Kyber768Draft00"}
MAX_RECORDS = 100_000
MIN_CHAIN = 3

_RECORD_STARTS = tuple(bytes([t, 3]) for t in RECORD_TYPES)      # type byte + major version

# What each detector can accept (prefilter.py). At the start: a handshake record whose
# first message is the hello, long enough for a 38-byte hello body; mid-stream: a record
# header (type, 3, minor <= 4, length <= RECORD_MAX) anywhere.
_HELLO_MIN = 5 + 4 + 38
CLIENT_START = signature(lead({HANDSHAKE}, b"\x03", range(5), EVERY_BYTE, EVERY_BYTE, {CLIENT_HELLO},
                              min_len=_HELLO_MIN))
SERVER_START = signature(lead({HANDSHAKE}, b"\x03", range(5), EVERY_BYTE, EVERY_BYTE, {SERVER_HELLO},
                              min_len=_HELLO_MIN))
RECORDS_MID = signature(anywhere(set(RECORD_TYPES), b"\x03", range(5), range((RECORD_MAX >> 8) + 1), EVERY_BYTE))


def is_grease(v: int) -> bool:
    return (v & 0x0F0F) == 0x0A0A and (v >> 8) == (v & 0xFF)


def version_name(v) -> str | None:
    return VERSIONS.get(v, f"0x{v:04x}") if v is not None else None


def cipher_name(cs: int) -> str:
    return CIPHER_SUITES.get(cs, f"0x{cs:04x}")


def is_null_cipher(cs: int) -> bool:
    return "_NULL_" in CIPHER_SUITES.get(cs, "") or cs in (0xC0B4, 0xC0B5)


def is_anonymous(cs: int) -> bool:
    return "_anon_" in CIPHER_SUITES.get(cs, "")


def _record(d: bytes, pos: int):
    """(type, version, length) of a valid record header at pos, else None."""
    if pos + 5 > len(d):
        return None
    t, major, minor, length = d[pos], d[pos + 1], d[pos + 2], u16(d, pos + 3)
    if t not in RECORD_TYPES or major != 3 or minor > 4 or not 0 < length <= RECORD_MAX:
        return None
    return t, 0x0300 | minor, length


def walk_records(d: bytes, pos: int):
    """Records chained from pos: list of (offset, type, version, length)."""
    out = []
    for _ in range(MAX_RECORDS):
        r = _record(d, pos)
        if r is None:
            break
        out.append((pos, *r))
        pos += 5 + r[2]
        if pos >= len(d):
            break
    return out


def _handshake_bytes(d: bytes, records) -> tuple[bytes, int, int]:
    """Cleartext handshake bytes (up to the first CCS / application data), CCS count, app-data count."""
    buf = bytearray()
    ccs = app = 0
    clear = True
    for pos, t, _v, length in records:
        if t == CHANGE_CIPHER_SPEC:
            ccs += 1
            clear = False
        elif t == APPLICATION_DATA:
            app += 1
            clear = False
        elif t == HANDSHAKE and clear:
            buf += d[pos + 5:pos + 5 + length]
    return bytes(buf), ccs, app


def _messages(hs: bytes):
    """Handshake messages: list of (type, body) (the last may be truncated)."""
    out, pos = [], 0
    for _ in range(64):
        if pos + 4 > len(hs):
            break
        t, length = hs[pos], int.from_bytes(hs[pos + 1:pos + 4], "big")
        out.append((t, hs[pos + 4:pos + 4 + length]))
        pos += 4 + length
    return out


def _extensions(body: bytes, pos: int) -> dict:
    """Extension type -> data, from a be16-length-prefixed list at pos.

    The key None is set when the list is cut short by the end of the data.
    """
    exts = {}
    total = u16(body, pos)
    if total is None:
        exts[None] = True
        return exts
    pos += 2
    if pos + total > len(body):
        exts[None] = True
    end = min(len(body), pos + total)
    for _ in range(128):
        if pos + 4 > end:
            break
        et, el = u16(body, pos), u16(body, pos + 2)
        exts.setdefault(et, body[pos + 4:pos + 4 + el])
        pos += 4 + el
    return exts


def _sni(ext: bytes | None) -> str | None:
    if not ext or len(ext) < 5:
        return None
    # ServerNameList: be16 list length, u8 name type (0 host_name), be16 length, name
    if ext[2] != 0:
        return None
    return name_at(ext, 5, u16(ext, 3))


def _alpn(ext: bytes | None) -> list[str]:
    out = []
    if not ext:
        return out
    pos = 2
    for _ in range(32):
        if pos >= len(ext):
            break
        n = ext[pos]
        name = name_at(ext, pos + 1, n)
        if name:
            out.append(name)
        pos += 1 + n
    return out


def parse_client_hello(body: bytes) -> dict | None:
    if len(body) < 38:
        return None
    legacy = u16(body, 0)
    if legacy not in VERSIONS:
        return None
    pos = 34
    sid = body[pos]
    pos += 1 + sid
    ncs = u16(body, pos)
    if sid > 32 or ncs is None or ncs % 2:
        return None
    suites = [u16(body, pos + 2 + i) for i in range(0, ncs, 2) if pos + 4 + i <= len(body)]
    pos += 2 + ncs
    if pos >= len(body):
        return {"legacy_version": legacy, "cipher_suites_offered": len(suites), "sni": None,
                "offered_versions": None, "alpn": [], "truncated": True}
    pos += 1 + body[pos]
    exts = _extensions(body, pos)
    offered = []
    sv = exts.get(EXT_SUPPORTED_VERSIONS)
    if sv:
        for i in range(1, min(len(sv), 1 + sv[0]) - 1, 2):
            v = u16(sv, i)
            if v is not None and not is_grease(v):
                offered.append(version_name(v))
    elif None in exts:
        offered = None                # cut before supported_versions: unknown
    else:
        offered.append(version_name(legacy))
    return {"legacy_version": legacy, "cipher_suites_offered": len(suites),
            "sni": _sni(exts.get(EXT_SERVER_NAME)), "offered_versions": offered,
            "alpn": _alpn(exts.get(EXT_ALPN)), "truncated": None in exts}


def parse_server_hello(body: bytes) -> dict | None:
    if len(body) < 38:
        return None
    legacy = u16(body, 0)
    if legacy not in VERSIONS:
        return None
    hrr = body[2:34] == HRR_RANDOM
    pos = 34
    sid = body[pos]
    pos += 1 + sid
    cs = u16(body, pos)
    if sid > 32 or cs is None or pos + 3 > len(body):
        return None
    pos += 3                                  # cipher suite + compression method
    exts = _extensions(body, pos)
    version = legacy
    sv = exts.get(EXT_SUPPORTED_VERSIONS)
    if sv and len(sv) == 2:
        version = u16(sv, 0)
    group = None
    ks = exts.get(EXT_KEY_SHARE)
    if ks and len(ks) >= 2:
        g = u16(ks, 0)
        group = GROUPS.get(g, f"0x{g:04x}")
    return {"version": version, "cipher_id": cs, "hello_retry_request": hrr, "group": group,
            "alpn": _alpn(exts.get(EXT_ALPN))}


def client_at_start(data: bytes) -> Detection | None:
    records = walk_records(data, 0)
    if not records or records[0][1] != HANDSHAKE:
        return None
    hs, ccs, app = _handshake_bytes(data, records)
    msgs = _messages(hs)
    if not msgs or msgs[0][0] != CLIENT_HELLO:
        return None
    ch = parse_client_hello(msgs[0][1])
    if ch is None:
        return None
    cert_sent = None
    for t, body in msgs[1:]:
        if t == CERTIFICATE:
            cert_sent = len(body) > 3 and int.from_bytes(body[:3], "big") > 0
    f = {"role": "client", "record_version": version_name(records[0][2]),
         "legacy_version": version_name(ch["legacy_version"]), "offered_versions": ch["offered_versions"],
         "sni": ch["sni"], "alpn": ch["alpn"], "cipher_suites_offered": ch["cipher_suites_offered"],
         "ccs": ccs, "application_data_records": app, "client_certificate_sent": cert_sent,
         "records": len(records), "truncated": ch["truncated"]}
    sni = (f"SNI {clean(ch['sni'])}" if ch["sni"] else
           "SNI not seen (ClientHello cut short)" if ch["truncated"] else "no SNI")
    offers = f"offers {listing(ch['offered_versions'], 4)}" if ch["offered_versions"] else ""
    enc = app > 0 or ccs > 0
    tail = (f"then {app} application_data records (encrypted)" if app
            else "then ChangeCipherSpec" if ccs else "no encrypted records yet")
    return Detection("tls", 0, line("TLS ClientHello", sni, offers, tail),
                     ENCRYPTED if enc else NOTHING, f)


def server_at_start(data: bytes) -> Detection | None:
    records = walk_records(data, 0)
    if not records or records[0][1] != HANDSHAKE:
        return None
    hs, ccs, app = _handshake_bytes(data, records)
    msgs = _messages(hs)
    if not msgs or msgs[0][0] != SERVER_HELLO:
        return None
    sh = parse_server_hello(msgs[0][1])
    if sh is None:
        return None
    version = sh["version"]
    tls13 = version == 0x0304
    types = [t for t, _ in msgs[1:]]
    if tls13:
        requested = True if CERTIFICATE_REQUEST in types else None
    elif CERTIFICATE_REQUEST in types:
        requested = True
    elif SERVER_HELLO_DONE in types:
        requested = False
    else:
        requested = None
    certs = None
    group = sh["group"]
    if not tls13:
        for t, body in msgs[1:]:
            if t == CERTIFICATE:
                certs = _count_certificates(body)
            elif t == SERVER_KEY_EXCHANGE and len(body) >= 3 and body[0] == 3:   # ECDHE named_curve
                g = u16(body, 1)
                group = GROUPS.get(g, f"0x{g:04x}")
    cs = sh["cipher_id"]
    f = {"role": "server", "version": version_name(version), "cipher": cipher_name(cs),
         "cipher_id": cs, "hello_retry_request": sh["hello_retry_request"], "group": group,
         "alpn": sh["alpn"], "client_cert_requested": requested, "server_certificates": certs,
         "ccs": ccs, "application_data_records": app, "null_cipher": is_null_cipher(cs),
         "anonymous": is_anonymous(cs), "records": len(records)}
    return Detection("tls", 0, line(f"TLS ServerHello {f['version']}, {f['cipher']}", *_server_notes(f)),
                     _server_proves(f), f)


def _count_certificates(body: bytes) -> int:
    total = int.from_bytes(body[:3], "big") if len(body) >= 3 else 0
    pos, n = 3, 0
    for _ in range(16):
        if pos + 3 > min(len(body), 3 + total):
            break
        n += 1
        pos += 3 + int.from_bytes(body[pos:pos + 3], "big")
    return n


def _server_notes(f: dict) -> list[str]:
    notes = []
    if f["group"]:
        notes.append(f"group {f['group']}")
    if f["hello_retry_request"]:
        notes.append("HelloRetryRequest")
    if f["null_cipher"]:
        notes.append("NULL cipher: records are authenticated, NOT encrypted")
    elif f["anonymous"]:
        notes.append("anonymous DH: encrypted but unauthenticated")
    if f["client_cert_requested"]:
        notes.append("client certificate requested")
    elif f["client_cert_requested"] is None and f["version"] == "TLS 1.3":
        notes.append("CertificateRequest not visible (encrypted in TLS 1.3)")
    elif f["client_cert_requested"] is False:
        notes.append("no client certificate requested")
    if f["server_certificates"]:
        notes.append(f"{f['server_certificates']} server certificates in clear")
    return notes


def _server_proves(f: dict) -> str:
    if f["null_cipher"]:
        return CLEARTEXT
    if f["hello_retry_request"] and not f["application_data_records"]:
        return NOTHING
    return ENCRYPTED


def combine(client: Detection, server: Detection) -> Detection:
    """One 'tls' detection from both sides of a handshake (detect_flow)."""
    c, s = client.fields, server.fields
    f = dict(s)
    f.update({"role": "both", "sni": c.get("sni"), "offered_versions": c.get("offered_versions"),
              "client_alpn": c.get("alpn"), "client_certificate_sent": c.get("client_certificate_sent"),
              "client_application_data_records": c.get("application_data_records"),
              "server_application_data_records": s.get("application_data_records")})
    f["client_truncated"] = c.get("truncated")
    sni = (f"SNI {clean(f['sni'])}" if f["sni"] else
           "SNI not seen (ClientHello cut short)" if c.get("truncated") else "no SNI")
    ev = line(f"{f['version']} handshake: {f['cipher']}", sni, *_server_notes(f))
    proves = _server_proves(f)
    if proves == NOTHING and ENCRYPTED in (client.proves, server.proves):
        proves = ENCRYPTED
    return Detection("tls", client.offset, ev, proves, f, direction="both")


def _readable(d: bytes, records) -> bool:
    """Most application_data payload bytes printable: a NULL cipher carrying text?"""
    sample = b"".join(d[p + 5:p + 5 + min(n, 256)] for p, t, _v, n in records[:8] if t == APPLICATION_DATA)
    if len(sample) < 64:
        return False
    printable = sum(1 for b in sample if 32 <= b < 127 or b in (9, 10, 13))
    return printable / len(sample) > 0.9


def _candidates(data: bytes):
    """Offsets of possible record headers, in order (bytes.find per record type)."""
    nxt = {p: data.find(p) for p in _RECORD_STARTS}
    while True:
        live = [v for v in nxt.values() if v >= 0]
        if not live:
            return
        pos = min(live)
        yield pos
        for p, v in nxt.items():
            if v == pos:
                nxt[p] = data.find(p, pos + 1)


def mid_stream(data: bytes) -> Detection | None:
    for _, pos in zip(range(512), _candidates(data)):
        if data[pos + 2:pos + 3] > b"\x04":
            continue
        records = walk_records(data, pos)
        n = len(records)
        app = sum(1 for r in records if r[1] == APPLICATION_DATA)
        last = records[-1] if records else None
        runs_out = last is not None and last[0] + 5 + last[3] >= len(data)
        # two strict TLS 1.2+/1.3 application_data headers chained to the end of the data are
        # as unlikely by chance as three: a 16 KiB window rarely holds three 16 KiB records
        strict2 = n == 2 and runs_out and all(r[1] == APPLICATION_DATA and r[2] == 0x0303 for r in records)
        if n >= MIN_CHAIN or strict2:
            readable = _readable(data, records)
            f = {"records": n, "application_data_records": app,
                 "record_version": version_name(records[0][2]), "readable_payload": readable}
            kinds = {}
            for r in records:
                kinds[RECORD_TYPES[r[1]]] = kinds.get(RECORD_TYPES[r[1]], 0) + 1
            ev = line(f"TLS record chain mid-stream: {n} records "
                      f"({', '.join(f'{v} {k}' for k, v in kinds.items())})",
                      "payload readable: NULL cipher?" if readable else "")
            proves = ENCRYPTED if app and not readable else NOTHING
            return Detection("tls", pos, ev, proves, f)
    return None
