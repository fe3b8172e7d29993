"""Small line-protocol servers on 127.0.0.1 for real clients (smtplib, imaplib, poplib, ftplib,
``openssl s_client -starttls``): each answers its protocol's commands and, on the upgrade command,
wraps the connection with Python's ``ssl`` (a real OpenSSL TLS handshake), then keeps answering.

The replies are the minimum each client library needs (RFC 5321, 9051, 1939/2595, 959/4217); they
are hand-written, the clients and the TLS are real.
"""

from __future__ import annotations

import socket
import socketserver
import ssl
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.loopback_capture import serving

Reply = tuple[bytes, bool, bool]
"""What a server says to one line: (reply, upgrade to TLS after it, close after it)."""


def server_context(tmp: Path) -> ssl.SSLContext:
    """A TLS server context with a throw-away self-signed certificate (the ``openssl`` command)."""
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx


def smtp(line: bytes, secure: bool) -> Reply:
    word = line.split(b" ", 1)[0].upper()
    if word == b"EHLO":
        return (b"250-mail.internal\r\n250 SIZE 10240000\r\n" if secure
                else b"250-mail.internal\r\n250-SIZE 10240000\r\n250 STARTTLS\r\n"), False, False
    if word == b"STARTTLS":
        return b"220 2.0.0 Ready to start TLS\r\n", True, False
    if word == b"QUIT":
        return b"221 2.0.0 Bye\r\n", False, True
    return b"250 2.0.0 OK\r\n", False, False


def imap(line: bytes, secure: bool) -> Reply:
    tag, _, rest = line.partition(b" ")
    word = rest.split(b" ", 1)[0].upper()
    if word == b"CAPABILITY":
        caps = b"IMAP4rev1 AUTH=PLAIN" if secure else b"IMAP4rev1 STARTTLS LOGINDISABLED"
        return b"* CAPABILITY " + caps + b"\r\n" + tag + b" OK CAPABILITY completed\r\n", False, False
    if word == b"STARTTLS":
        return tag + b" OK Begin TLS negotiation now\r\n", True, False
    if word == b"LOGOUT":
        return b"* BYE logging out\r\n" + tag + b" OK LOGOUT completed\r\n", False, True
    return tag + b" OK " + word + b" completed\r\n", False, False


def pop3(line: bytes, secure: bool) -> Reply:
    word = line.split(b" ", 1)[0].upper()
    if word == b"CAPA":
        return b"+OK Capability list follows\r\nUSER\r\n" + (b"" if secure else b"STLS\r\n") + b".\r\n", False, False
    if word == b"STLS":
        return b"+OK Begin TLS negotiation\r\n", True, False
    if word == b"STAT":
        return b"+OK 0 0\r\n", False, False
    if word == b"AUTH":
        return b"-ERR authentication mechanism not supported\r\n", False, False
    if word == b"QUIT":
        return b"+OK bye\r\n", False, True
    return b"+OK\r\n", False, False


def ftp(line: bytes, secure: bool) -> Reply:
    word = line.split(b" ", 1)[0].upper()
    if word == b"AUTH":
        return b"234 AUTH TLS successful\r\n", True, False
    if word == b"USER":
        return b"331 Password required\r\n", False, False
    if word == b"PASS":
        return b"230 Login successful\r\n", False, False
    if word in (b"PBSZ", b"PROT"):
        return b"200 OK\r\n", False, False
    if word == b"QUIT":
        return b"221 Goodbye\r\n", False, True
    if word == b"PWD":
        return b'257 "/" is the current directory\r\n', False, False
    return b"200 OK\r\n", False, False


def ftp_without_tls(line: bytes, secure: bool) -> Reply:
    """An FTP server that refuses AUTH TLS: the session goes on in clear."""
    if line.split(b" ", 1)[0].upper() == b"AUTH":
        return b"502 Command not implemented\r\n", False, False
    return ftp(line, secure)

GREETINGS = {smtp: b"220 mail.internal ESMTP ready\r\n", imap: b"* OK [CAPABILITY IMAP4rev1 STARTTLS] ready\r\n",
             pop3: b"+OK POP3 server ready\r\n", ftp: b"220 FTP server ready\r\n",
             ftp_without_tls: b"220 FTP server ready\r\n"}


@contextmanager
def line_server(protocol: Callable[[bytes, bool], Reply], ctx: ssl.SSLContext | None) -> Iterator[int]:
    """A threaded server of ``protocol`` on 127.0.0.1; yields its port. ``ctx``: the TLS context
    for the upgrade (None: refuse it by answering as if TLS were done, for clear-text tests)."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock = self.request
            sock.sendall(GREETINGS[protocol])
            reader, secure = sock.makefile("rb"), False
            while True:
                line = reader.readline(4096)
                if not line:
                    return
                reply, upgrade, close = protocol(line.rstrip(b"\r\n"), secure)
                sock.sendall(reply)
                if close:
                    return
                if upgrade and ctx is not None:
                    sock = ctx.wrap_socket(sock, server_side=True)
                    reader, secure = sock.makefile("rb"), True

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with serving(server) as port:
        yield port


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_until(sock: socket.socket, marker: bytes, limit: int = 65536) -> bytes:
    data = b""
    while marker not in data and len(data) < limit:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def xmpp_upgrade(sock: socket.socket) -> None:
    """RFC 6120 5.4: stream header and features offering <starttls/>, then <proceed/>."""
    _read_until(sock, b">")
    sock.sendall(b"<?xml version='1.0'?><stream:stream from='localhost' id='c2s-1' xmlns='jabber:client' "
                 b"xmlns:stream='http://etherx.jabber.org/streams' version='1.0'><stream:features>"
                 b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>")
    _read_until(sock, b"/>")
    sock.sendall(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")


def postgresql_upgrade(sock: socket.socket) -> None:
    """SSLRequest (8 bytes) answered with 'S'."""
    _exact(sock, 8)
    sock.sendall(b"S")


def ldap_upgrade(sock: socket.socket) -> None:
    """The StartTLS ExtendedRequest answered with an ExtendedResponse, resultCode success (RFC 4511 4.14.2)."""
    head = _exact(sock, 2)
    _exact(sock, head[1])
    sock.sendall(b"\x30\x0c\x02\x01\x01\x78\x07\x0a\x01\x00\x04\x00\x04\x00")


def connect_upgrade(sock: socket.socket) -> None:
    """An HTTP proxy's answer to CONNECT (RFC 9110 9.3.6); the TLS that follows ends here."""
    _read_until(sock, b"\r\n\r\n")
    sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")


def rdp_upgrade(sock: socket.socket) -> None:
    """X.224 Connection Confirm with RDP_NEG_RSP selecting PROTOCOL_HYBRID (MS-RDPBCGR 2.2.1.2)."""
    head = _exact(sock, 4)
    _exact(sock, int.from_bytes(head[2:4], "big") - 4)
    sock.sendall(b"\x03\x00\x00\x13\x0e\xd0\x00\x00\x12\x34\x00\x02\x1f\x08\x00\x02\x00\x00\x00")


def mysql_upgrade(greeting: bytes) -> Callable[[socket.socket], None]:
    """A MySQL server's HandshakeV10 ``greeting`` (offering CLIENT_SSL), then the client's 36-byte SSLRequest."""
    def upgrade(sock: socket.socket) -> None:
        sock.sendall(greeting)
        _exact(sock, 36)
    return upgrade


@contextmanager
def upgrade_server(upgrade: Callable[[socket.socket], None], ctx: ssl.SSLContext) -> Iterator[int]:
    """A server that runs ``upgrade`` in clear, then TLS: answers one line or HTTP request
    inside it and reads until the client closes. Yields its port."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            upgrade(self.request)
            tls = ctx.wrap_socket(self.request, server_side=True)
            try:
                data = tls.recv(4096)
                if data.startswith(b"GET "):
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                    return
                while data:
                    tls.sendall(b"ok\n")
                    data = tls.recv(4096)
            except (ssl.SSLError, OSError):
                pass

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    with serving(server) as port:
        yield port
