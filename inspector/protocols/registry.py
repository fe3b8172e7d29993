"""The detector table and the functions that run it.

``DETECTORS`` is data: one row per (protocol, role), each naming which
side of a flow sends what it matches, a cheap prefix filter, where the
format is defined, and signatures of what it can accept (which
``prefilter.py`` evaluates in compiled code for many regions at once).
``detect`` runs the rows for one direction; ``detect_flow``
runs both directions and merges the two halves of a TLS or SSH handshake
into one detection.

Rules ``detect`` applies:
- ``at_start=True``: rows whose ``at_start`` accepts the data (after the
  prefix filter); the generic text-lines row only when no other did. If none does and ``fallback`` is set, the mid-stream rows
  run too: a stream may open with something unknown (a preamble, a protocol
  not in the table) and turn into a known framing later. That scan costs
  ~0.1 ms per 4 KiB head, so the analysis of many short flows turns it off.
- ``at_start=False``: only the mid-stream rows.
- In-band upgrades: a detection whose fields carry ``tls_from`` (STARTTLS
  of SMTP/IMAP/POP3/FTP/XMPP/LDAP/NBD, PostgreSQL and MySQL SSLRequest, RDP
  negotiation, HTTP CONNECT) hands the bytes from there to the TLS rows,
  with offsets counted in the original data; its ``upgrade`` field names it.
- A detector that raises is a bug, but never the caller's problem: the
  exception is swallowed and the row yields nothing.
- Results are ordered by offset; one per (protocol, offset).
"""

from __future__ import annotations

from . import dtls, http, ipsec, libvirt, nbd, openvpn, qemu, quic, services, ssh, starttls, tls, wireguard
from .base import ANY, BOTH, ORIG, RESP, Detection, Detector

O, R = frozenset({ORIG}), frozenset({RESP})
TCP, UDP, ESP = frozenset({6}), frozenset({17}), frozenset({50})   # IP protocol numbers (IANA)
TEXT_LINES = "text-lines"

DETECTORS: tuple[Detector, ...] = (
    Detector("qemu-main", "qemu-migration", O, qemu.main_at_start, qemu.main_mid_stream,
             (qemu.QEVM,), "qemu migration/savevm.c, migration/ram.c", qemu.MAIN_START, qemu.MAIN_MID),
    Detector("qemu-multifd", "qemu-multifd", O, qemu.multifd_at_start, qemu.multifd_mid_stream,
             (qemu.MULTIFD_HEAD,), "qemu migration/multifd.h", qemu.MULTIFD_START, qemu.MULTIFD_MID),
    Detector("libvirt-rpc", "libvirt-rpc", BOTH, libvirt.at_start, libvirt.mid_stream,
             (), "libvirt src/rpc/virnetprotocol.x, src/remote/remote_protocol.x", libvirt.START, libvirt.MID),
    Detector("nbd-server", "nbd", R, nbd.server_at_start, nbd.server_mid_stream,
             (nbd.NBDMAGIC,), "NBD doc/proto.md", nbd.SERVER_START, nbd.SERVER_MID),
    Detector("nbd-client", "nbd", O, nbd.client_at_start, nbd.client_mid_stream,
             (b"\x00\x00\x00",), "NBD doc/proto.md", nbd.CLIENT_START, nbd.CLIENT_MID),
    Detector("tls-client-hello", "tls", O, tls.client_at_start, None,
             (b"\x16\x03",), "RFC 8446 4.1.2, RFC 5246 7.4.1.2", tls.CLIENT_START),
    Detector("tls-server-hello", "tls", R, tls.server_at_start, None,
             (b"\x16\x03",), "RFC 8446 4.1.3, RFC 5246 7.4.1.3", tls.SERVER_START),
    Detector("tls-records", "tls", BOTH, None, tls.mid_stream,
             (), "RFC 8446 5.1, RFC 5246 6.2", mid_signature=tls.RECORDS_MID),
    Detector("ssh", "ssh", BOTH, ssh.at_start, ssh.mid_stream,
             (), "RFC 4253 4.2, 6, 7.1, RFC 5647 7.3", ssh.START, ssh.MID),
    Detector("http-request", "http", O, http.request_at_start, None,
             tuple(m + b" " for m in http.METHODS), "RFC 9112 3", http.REQUEST_START),
    Detector("http-response", "http", R, http.response_at_start, None,
             (b"HTTP/1.",), "RFC 9112 4", http.RESPONSE_START),
    Detector("http-messages", "http", BOTH, None, http.mid_stream,
             (), "RFC 9112", mid_signature=http.MID),
    Detector("amqp-client", "amqp", O, services.amqp_client_at_start, None,
             (b"AMQP",), "AMQP 0-9-1 specification 4.2.2", services.AMQP_CLIENT_START),
    Detector("amqp-server", "amqp", R, services.amqp_server_at_start, None,
             (b"\x01\x00\x00",), "AMQP 0-9-1 specification 4.2.3", services.AMQP_SERVER_START),
    Detector("amqp-frames", "amqp", BOTH, None, services.amqp_mid_stream,
             (), "AMQP 0-9-1 specification 4.2.3", mid_signature=services.AMQP_MID),
    Detector("mysql-server", "mysql", R, services.mysql_server_at_start, None,
             (), "MySQL protocol: Connection Phase, Protocol::HandshakeV10", services.MYSQL_SERVER_START),
    Detector("mysql-client", "mysql", O, services.mysql_client_at_start, None,
             (), "MySQL protocol: Protocol::SSLRequest, HandshakeResponse41", services.MYSQL_CLIENT_START),
    Detector("rfb-server", "rfb", R, services.rfb_server_at_start, None,
             (b"RFB ",), "rfbproto.rst 7.1", services.RFB_START),
    Detector("rfb-client", "rfb", O, services.rfb_client_at_start, None,
             (b"RFB ",), "rfbproto.rst 7.1", services.RFB_START),
    Detector("spice-link", "spice", BOTH, services.spice_at_start, None,
             (services.SPICE_MAGIC,), "spice-protocol spice/protocol.h", services.SPICE_START),
    Detector("redis-client", "redis", O, services.redis_client_at_start, services.redis_mid_stream,
             (), "Redis serialization protocol (RESP)", services.REDIS_CLIENT_START, services.REDIS_MID),
    Detector("redis-server", "redis", R, services.redis_server_at_start, None,
             (b"+", b"-", b":", b"$", b"*", b"%", b"_"), "Redis serialization protocol (RESP)",
             services.REDIS_SERVER_START),
    Detector("memcached", "memcached", BOTH, services.memcached_at_start, None,
             (), "memcached protocol.txt, protocol_binary.h", services.MEMCACHED_START),
    Detector("ovsdb", "ovsdb", BOTH, services.ovsdb_at_start, services.ovsdb_mid_stream,
             (), "RFC 7047 4", services.OVSDB_START, services.OVSDB_MID),
    Detector("esp", "esp", BOTH, ipsec.esp_at_start, None,
             (), "RFC 4303 2, RFC 2410", ipsec.ESP_START, transports=ESP),
    Detector("esp-in-udp", "esp", BOTH, ipsec.esp_in_udp_at_start, None,
             (), "RFC 3948 2, RFC 4303 2", ipsec.ESP_IN_UDP_START, transports=UDP),
    Detector("ike", "ike", BOTH, ipsec.ike_at_start, None,
             (), "RFC 7296 3.1-3.2, RFC 2408 3.1, RFC 3948 2.2", ipsec.IKE_START, transports=UDP),
    Detector("wireguard", "wireguard", BOTH, wireguard.at_start, None,
             (), "WireGuard whitepaper 5.4", wireguard.START, transports=UDP),
    Detector("quic", "quic", BOTH, quic.at_start, None,
             (), "RFC 9000 17, RFC 8999 5, RFC 9369 3", quic.START, transports=UDP),
    Detector("dtls", "dtls", BOTH, dtls.at_start, None,
             (), "RFC 6347 4.1, RFC 9147 4", dtls.START, transports=UDP),
    Detector("openvpn-udp", "openvpn", BOTH, openvpn.udp_at_start, None,
             (), "openvpn src/openvpn/ssl_pkt.h, ssl.c", openvpn.UDP_START, transports=UDP),
    Detector("openvpn-tcp", "openvpn", BOTH, openvpn.tcp_at_start, None,
             (), "openvpn src/openvpn/ssl_pkt.h, ssl.c", openvpn.TCP_START, transports=TCP),
    # In-band TLS upgrades (starttls.py): clear-text starts that hand over to the TLS rows.
    Detector("smtp-client", "smtp", O, starttls.smtp_client_at_start, None,
             (), "RFC 5321 4.1.1.1, RFC 3207", starttls.SMTP_CLIENT_START),
    Detector("ftp-client", "ftp", O, starttls.ftp_client_at_start, None,
             (), "RFC 959, RFC 4217 4", starttls.FTP_CLIENT_START),
    Detector("smtp-ftp-server", "smtp", R, starttls.reply_220_at_start, None,
             (b"220",), "RFC 5321 4.2, RFC 959 4.2, RFC 4217 4", starttls.REPLY_220_START),
    Detector("imap-client", "imap", O, starttls.imap_client_at_start, None,
             (), "RFC 9051 6.2.1", starttls.IMAP_CLIENT_START),
    Detector("imap-server", "imap", R, starttls.imap_server_at_start, None,
             (b"* ",), "RFC 9051 7.1", starttls.IMAP_SERVER_START),
    Detector("pop3-client", "pop3", O, starttls.pop3_client_at_start, None,
             (), "RFC 1939, RFC 2595 4", starttls.POP3_CLIENT_START),
    Detector("pop3-server", "pop3", R, starttls.pop3_server_at_start, None,
             (b"+OK ",), "RFC 1939 4, RFC 2595 4", starttls.POP3_SERVER_START),
    Detector("xmpp", "xmpp", BOTH, starttls.xmpp_at_start, None,
             (b"<?xml", b"<stream:stream"), "RFC 6120 5.4", starttls.XMPP_START),
    Detector("ldap-client", "ldap", O, starttls.ldap_client_at_start, None,
             (b"\x30",), "RFC 4511 4.12, 4.14", starttls.LDAP_CLIENT_START),
    Detector("ldap-server", "ldap", R, starttls.ldap_server_at_start, None,
             (b"\x30",), "RFC 4511 4.12, 4.14", starttls.LDAP_SERVER_START),
    Detector("postgresql-client", "postgresql", O, starttls.postgresql_client_at_start, None,
             (starttls.PG_SSL_REQUEST,), "PostgreSQL protocol-flow 55.2.10", starttls.PG_CLIENT_START),
    Detector("postgresql-server", "postgresql", R, starttls.postgresql_server_at_start, None,
             (b"S\x16\x03",), "PostgreSQL protocol-flow 55.2.10", starttls.PG_SERVER_START),
    Detector("rdp-client", "rdp", O, starttls.rdp_client_at_start, None,
             (b"\x03\x00",), "MS-RDPBCGR 2.2.1.1", starttls.RDP_CLIENT_START),
    Detector("rdp-server", "rdp", R, starttls.rdp_server_at_start, None,
             (b"\x03\x00",), "MS-RDPBCGR 2.2.1.2", starttls.RDP_SERVER_START),
    # Last resort (detect runs it only when no other row matched): any printable line protocol.
    Detector(TEXT_LINES, "text", BOTH, starttls.text_lines_at_start, None,
             (), "RFC 5234 (CRLF lines); request/response line protocols", starttls.TEXT_START),
)
ROW_BIT = {d.name: 1 << i for i, d in enumerate(DETECTORS)}
"""Each row's bit in a ``rows`` mask (``detect``; the prefilter computes them)."""
ALL_ROWS = (1 << len(DETECTORS)) - 1


def transport_rows(transport: int) -> int:
    """The ``ROW_BIT`` mask of the rows that read flows of this IP protocol."""
    mask = _TRANSPORT_ROWS.get(transport)
    if mask is None:
        mask = _TRANSPORT_ROWS[transport] = sum(
            ROW_BIT[d.name] for d in DETECTORS if d.transports is None or transport in d.transports)
    return mask


_TRANSPORT_ROWS: dict[int, int] = {}

_TLS_AT_START = tuple(d for d in DETECTORS if d.protocol == "tls" and d.at_start is not None)


def _run(fn, data: bytes) -> Detection | None:
    try:
        det = fn(data)
    except Exception:   # noqa: BLE001 - a detector bug must not stop an analysis
        return None
    return det if isinstance(det, Detection) else None


def _wanted(d: Detector, direction: str) -> bool:
    return direction == ANY or direction in d.directions


# The rows each direction runs, computed once (detect runs once per flow direction).
_START_ROWS = {side: tuple(d for d in DETECTORS if d.at_start is not None and _wanted(d, side)
                           and d.name != TEXT_LINES) for side in (ORIG, RESP, ANY)}
_LAST_RESORT = next(d for d in DETECTORS if d.name == TEXT_LINES)
_MID_ROWS = {side: tuple(d for d in DETECTORS if d.mid_stream is not None and _wanted(d, side))
             for side in (ORIG, RESP, ANY)}


def detect(data: bytes, *, direction: str, at_start: bool, fallback: bool = True,
           rows: int = ALL_ROWS) -> list[Detection]:
    """Detections in one direction of a flow, ordered by offset.

    ``data``: the reassembled stream bytes (from the first byte of the
    stream when ``at_start``, else from an arbitrary point). ``direction``:
    'orig', 'resp', or 'any' when the roles are unknown. ``rows``: a mask
    of ``ROW_BIT`` of the rows that may run (the prefilter's candidates);
    the TLS rows after an in-band upgrade always may.
    """
    if not isinstance(data, bytes):
        try:
            data = bytes(data)
        except (TypeError, ValueError):
            return []
    if not data:
        return []
    tag = direction if direction in (ORIG, RESP) else ""
    side = tag or ANY
    found: list[Detection] = []
    if at_start:
        for d in _START_ROWS[side]:
            if not rows & ROW_BIT[d.name] or d.prefixes and not data.startswith(d.prefixes):
                continue
            det = _run(d.at_start, data)
            if det is not None:
                found.append(det)
        if not found and rows & ROW_BIT[TEXT_LINES]:
            det = _run(_LAST_RESORT.at_start, data)
            if det is not None:
                found.append(det)
    if not found and (fallback or not at_start):
        for d in _MID_ROWS[side]:
            if not rows & ROW_BIT[d.name]:
                continue
            det = _run(d.mid_stream, data)
            if det is not None:
                found.append(det)
    for det in list(found):
        start = det.fields.get("tls_from") if isinstance(det.fields, dict) else None
        if isinstance(start, int) and 0 < start < len(data):
            rest = data[start:]
            for d in _TLS_AT_START:
                if _wanted(d, direction) and rest.startswith(d.prefixes):
                    up = _run(d.at_start, rest)
                    if up is not None:
                        found.append(up.shifted(start))
    seen, out = set(), []
    for det in sorted(found, key=lambda x: x.offset):
        key = (det.protocol, det.offset)
        if key not in seen:
            seen.add(key)
            out.append(det.shifted(0, direction=tag) if tag else det)
    return out


def _role(det: Detection) -> str | None:
    return det.fields.get("role") if isinstance(det.fields, dict) else None


def detect_flow(orig: bytes, resp: bytes, *, orig_at_start: bool = True,
                resp_at_start: bool = True, fallback: bool = True, orig_rows: int = ALL_ROWS,
                resp_rows: int = ALL_ROWS) -> list[Detection]:
    """Detections in both directions of a flow.

    The two halves of a TLS handshake (ClientHello from orig, ServerHello
    from resp) become one 'tls' detection with direction 'both' (version and
    cipher from the server, SNI and offered versions from the client); the
    two SSH banners/KEXINITs become one 'ssh' detection with the negotiated
    algorithms. Offsets of a merged detection are those of the orig side.
    ``orig_rows``/``resp_rows``: as ``rows`` of ``detect``.
    """
    o = detect(orig, direction=ORIG, at_start=orig_at_start, fallback=fallback, rows=orig_rows)
    r = detect(resp, direction=RESP, at_start=resp_at_start, fallback=fallback, rows=resp_rows)
    out = o + r
    ch = next((d for d in o if d.protocol == "tls" and _role(d) == "client"), None)
    sh = next((d for d in r if d.protocol == "tls" and _role(d) == "server"), None)
    if ch is not None and sh is not None:
        merged = _run(lambda _x: tls.combine(ch, sh), b"")
        if merged is not None:
            out = [d for d in out if d is not ch and d is not sh] + [merged]
    cs = next((d for d in o if d.protocol == "ssh"), None)
    ss = next((d for d in r if d.protocol == "ssh"), None)
    if cs is not None and ss is not None:
        merged = _run(lambda _x: ssh.combine(cs, ss), b"")
        if merged is not None:
            out = [d for d in out if d is not cs and d is not ss] + [merged]
    return out
