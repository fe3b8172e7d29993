"""Byte samples for protocols that have no real capture in captures/.

Written by hand from the protocol specifications (cited per sample), with
realistic values (OpenStack service names, RabbitMQ/MariaDB versions as
Debian 12 ships them). They are NOT captured traffic: when real captures
of these protocols exist, test against those instead.

``tls12_handshake()`` is different: it runs a real TLS 1.2 handshake
between two Python ``ssl`` objects over memory BIOs (OpenSSL produces every
byte), with a throw-away self-signed certificate made by the ``openssl``
command, and returns what each side sent.
"""
from __future__ import annotations

import shutil
import ssl
import struct
import subprocess
from pathlib import Path


def _shortstr(s: bytes) -> bytes:
    return bytes([len(s)]) + s


def _longstr(s: bytes) -> bytes:
    return struct.pack(">I", len(s)) + s


def _amqp_method(cls: int, meth: int, args: bytes, channel: int = 0) -> bytes:
    # AMQP 0-9-1 spec 4.2.3: type 1, channel, size, payload, frame-end 0xCE
    payload = struct.pack(">HH", cls, meth) + args
    return struct.pack(">BHI", 1, channel, len(payload)) + payload + b"\xce"


def _table(entries: dict[bytes, bytes]) -> bytes:
    body = b"".join(_shortstr(k) + b"S" + _longstr(v) for k, v in entries.items())
    return _longstr(body)


AMQP_PASSWORD = b"Rabb1t-s3cret"

# Client: protocol header, Connection.Start-Ok (PLAIN), Tune-Ok, Open (spec 4.2.2, 1.4.2).
AMQP_CLIENT = (b"AMQP\x00\x00\x09\x01"
               + _amqp_method(10, 11, _table({b"product": b"py-amqp", b"version": b"5.1.1"})
                              + _shortstr(b"PLAIN") + _longstr(b"\x00nova\x00" + AMQP_PASSWORD)
                              + _shortstr(b"en_US"))
               + _amqp_method(10, 31, struct.pack(">HIH", 2047, 131072, 60))
               + _amqp_method(10, 40, _shortstr(b"/") + _shortstr(b"") + b"\x00"))

# Server: Connection.Start (version 0-9, server properties, mechanisms, locales), Tune.
AMQP_SERVER = (_amqp_method(10, 10, b"\x00\x09" + _table({b"product": b"RabbitMQ", b"version": b"3.10.8"})
                            + _longstr(b"AMQPLAIN PLAIN") + _longstr(b"en_US"))
               + _amqp_method(10, 30, struct.pack(">HIH", 2047, 131072, 60)))

# Mid-stream AMQP: basic.publish method + content header + body frames, then a heartbeat.
AMQP_PUBLISH = (_amqp_method(60, 40, b"\x00\x00" + _shortstr(b"nova") + _shortstr(b"compute.host1") + b"\x00", 1)
                + struct.pack(">BHI", 2, 1, 14) + struct.pack(">HHQH", 60, 0, 5, 0) + b"\xce"
                + struct.pack(">BHI", 3, 1, 5) + b"hello" + b"\xce"
                + b"\x08\x00\x00\x00\x00\x00\x00\xce")


def _mysql_packet(seq: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "little") + bytes([seq]) + payload


def _greeting(caps_low: int) -> bytes:
    # MariaDB 10.11 greeting (Protocol::HandshakeV10)
    return _mysql_packet(0, b"\x0a" + b"5.5.5-10.11.6-MariaDB-0+deb12u1\x00" + struct.pack("<I", 31)
                         + b"J=q^2+0x" + b"\x00" + struct.pack("<H", caps_low) + b"\x2d"
                         + struct.pack("<H", 0x0002) + struct.pack("<H", 0x81FF) + b"\x15"
                         + b"\x00" * 6 + struct.pack("<I", 0x1D) + b"Zb@k%9#ce/7Y" + b"\x00"
                         + b"mysql_native_password\x00")


MYSQL_GREETING_TLS = _greeting(0xFFFE)        # ssl configured: CLIENT_SSL (0x800) offered
MYSQL_GREETING_NO_TLS = _greeting(0xF7FE)     # no ssl: CLIENT_SSL clear
_CAPS = 0x1 | 0x4 | 0x8 | 0x200 | 0x2000 | 0x8000 | 0x80000
# Protocol::SSLRequest: 32-byte payload, then the TLS ClientHello (appended by the test).
MYSQL_SSL_REQUEST = _mysql_packet(1, struct.pack("<IIB", _CAPS | 0x800, 16777216, 0x21) + b"\x00" * 23)
# Protocol::HandshakeResponse41 without TLS, then COM_QUERY.
MYSQL_LOGIN = (_mysql_packet(1, struct.pack("<IIB", _CAPS, 16777216, 0x21) + b"\x00" * 23 + b"nova\x00"
                             + b"\x14" + bytes(range(20)) + b"nova\x00" + b"mysql_native_password\x00")
               + _mysql_packet(0, b"\x03SELECT 1"))

# RFB 3.8 (rfbproto.rst 7.1.1, 7.1.2): server offers None only / VeNCrypt + VNC auth; client picks.
RFB_SERVER_NONE = b"RFB 003.008\n" + b"\x01\x01"
RFB_SERVER_VENCRYPT = b"RFB 003.008\n" + b"\x02\x13\x02"
RFB_CLIENT_NONE = b"RFB 003.008\n" + b"\x01"
RFB_CLIENT_VENCRYPT = b"RFB 003.008\n" + b"\x13"

# SPICE (spice/protocol.h): SpiceLinkHeader + SpiceLinkMess (main channel) / SpiceLinkReply.
SPICE_CLIENT = (b"REDQ" + struct.pack("<III", 2, 2, 22)
                + struct.pack("<IBBIII", 0, 1, 0, 1, 0, 18) + struct.pack("<I", 0x0B))
SPICE_SERVER = (b"REDQ" + struct.pack("<III", 2, 2, 4 + 162 + 12 + 8)
                + struct.pack("<I", 0) + b"\x30\x81\x9f\x30\x0d\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x01\x01"
                + b"\x05\x00\x03\x81\x8d\x00" + bytes(140) + struct.pack("<III", 1, 1, 178)
                + struct.pack("<II", 0x0B, 0x09))

REDIS_PASSWORD = b"r3dis-pw"
# RESP arrays of bulk strings (redis.io protocol spec): AUTH, PING, SET; server replies.
REDIS_CLIENT = (b"*2\r\n$4\r\nAUTH\r\n$8\r\n" + REDIS_PASSWORD + b"\r\n" + b"*1\r\n$4\r\nPING\r\n"
                + b"*3\r\n$3\r\nSET\r\n$13\r\nnova:instance\r\n$5\r\nvalue\r\n")
REDIS_SERVER = b"+OK\r\n+PONG\r\n+OK\r\n$5\r\nvalue\r\n"

# memcached text protocol (protocol.txt) and binary protocol (24-byte headers, magic 0x80/0x81).
MEMCACHED_TEXT = b"set nova:token 0 300 5\r\nhello\r\nget nova:token\r\ndelete nova:token\r\n"
MEMCACHED_TEXT_REPLY = b"STORED\r\nVALUE nova:token 0 5\r\nhello\r\nEND\r\nDELETED\r\n"
MEMCACHED_BINARY = (struct.pack(">BBHBBHIIQ", 0x80, 0x00, 3, 0, 0, 0, 3, 0xDEADBEEF, 0) + b"key"
                    + struct.pack(">BBHBBHIIQ", 0x80, 0x0A, 0, 0, 0, 0, 0, 1, 0))

# OVSDB JSON-RPC (RFC 7047 4.1): list_dbs, transact; the server's result.
OVSDB_CLIENT = (b'{"id":0,"method":"list_dbs","params":[]}'
                b'{"method":"transact","params":["Open_vSwitch",{"op":"select","table":"Bridge",'
                b'"where":[]}],"id":1}')
OVSDB_SERVER = b'{"id":0,"result":["Open_vSwitch","_Server"],"error":null}'


def tls12_handshake(tmp: Path, *, max_version=ssl.TLSVersion.TLSv1_2,
                    server_hostname: str = "compute-1.internal") -> tuple[bytes, bytes]:
    """A real OpenSSL handshake (server requests a client certificate), then one message each way.

    Returns (client bytes, server bytes). Needs the ``openssl`` command.
    """
    if shutil.which("openssl") is None:
        raise FileNotFoundError("openssl")
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=compute-1.internal", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(cert, key)
    sctx.maximum_version = max_version
    sctx.verify_mode = ssl.CERT_OPTIONAL          # sends a CertificateRequest
    sctx.load_verify_locations(cert)
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.check_hostname = False
    cctx.verify_mode = ssl.CERT_NONE
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = cctx.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    server = sctx.wrap_bio(s_in, s_out, server_side=True)
    sent_c, sent_s = bytearray(), bytearray()

    def pump():
        a, b = c_out.read(), s_out.read()
        sent_c.extend(a)
        sent_s.extend(b)
        s_in.write(a)
        c_in.write(b)

    done_c = done_s = False
    for _ in range(20):
        for side in ("c", "s"):
            try:
                (client if side == "c" else server).do_handshake()
                if side == "c":
                    done_c = True
                else:
                    done_s = True
            except ssl.SSLWantReadError:
                pass
            pump()
        if done_c and done_s:
            break
    client.write(b"GET / HTTP/1.1\r\nHost: compute-1.internal\r\n\r\n")
    pump()
    server.read(4096)
    server.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    pump()
    return bytes(sent_c), bytes(sent_s)


# In-band TLS upgrades (protocols/starttls.py), the clear-text start of each side up to the
# first TLS record header (a stub: the record itself is not parsed by these detectors).
# Real exchanges are recorded in tests/test_starttls.py; these feed the prefilter tests.
TLS_STUB = b"\x16\x03\x01\x00\x04\x01\x00\x00\x00"
SMTP_CLIENT = b"EHLO compute-1\r\nSTARTTLS\r\n" + TLS_STUB
SMTP_SERVER = b"220 mail.internal ESMTP\r\n250-mail.internal\r\n250 STARTTLS\r\n220 2.0.0 Ready\r\n" + TLS_STUB
FTP_CLIENT = b"AUTH TLS\r\n" + TLS_STUB
FTP_SERVER = b"220 FTP server ready\r\n234 AUTH TLS successful\r\n" + TLS_STUB
IMAP_CLIENT = b"a1 CAPABILITY\r\na2 STARTTLS\r\n" + TLS_STUB
IMAP_SERVER = b"* OK ready\r\n* CAPABILITY IMAP4rev1 STARTTLS\r\na1 OK done\r\na2 OK Begin TLS\r\n" + TLS_STUB
POP3_CLIENT = b"CAPA\r\nSTLS\r\n" + TLS_STUB
POP3_SERVER = b"+OK POP3 ready\r\n+OK\r\nSTLS\r\n.\r\n+OK Begin TLS\r\n" + TLS_STUB
XMPP_CLIENT = (b"<?xml version='1.0'?><stream:stream to='example.net' xmlns='jabber:client' "
               b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>"
               b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>" + TLS_STUB)
XMPP_SERVER = (b"<?xml version='1.0'?><stream:stream from='example.net' id='1' xmlns='jabber:client' "
               b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><stream:features>"
               b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"
               b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>" + TLS_STUB)
# RFC 4511 4.12: LDAPMessage { messageID 1, ExtendedRequest [APPLICATION 23] { [0] OID } }
LDAP_CLIENT = b"\x30\x1d\x02\x01\x01\x77\x18\x80\x16" + b"1.3.6.1.4.1.1466.20037" + TLS_STUB
LDAP_SERVER = b"\x30\x0c\x02\x01\x01\x78\x07\x0a\x01\x00\x04\x00\x04\x00" + TLS_STUB
POSTGRESQL_CLIENT = b"\x00\x00\x00\x08\x04\xd2\x16\x2f" + TLS_STUB
POSTGRESQL_SERVER = b"S" + TLS_STUB
# MS-RDPBCGR 2.2.1.1: TPKT, X.224 CR (LI 14), RDP_NEG_REQ requesting PROTOCOL_SSL|PROTOCOL_HYBRID
RDP_CLIENT = b"\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x03\x00\x00\x00" + TLS_STUB
RDP_SERVER = b"\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00\x02\x1f\x08\x00\x02\x00\x00\x00" + TLS_STUB
STARTTLS_SAMPLES = [SMTP_CLIENT, SMTP_SERVER, FTP_CLIENT, FTP_SERVER, IMAP_CLIENT, IMAP_SERVER, POP3_CLIENT,
                    POP3_SERVER, XMPP_CLIENT, XMPP_SERVER, LDAP_CLIENT, LDAP_SERVER, POSTGRESQL_CLIENT,
                    POSTGRESQL_SERVER, RDP_CLIENT, RDP_SERVER]
