"""In-band TLS upgrades recorded on loopback: real clients (smtplib, imaplib, poplib, ftplib,
``openssl s_client -starttls``, curl through a CONNECT proxy) against small servers that answer the
upgrade and run a real OpenSSL handshake (tests/text_servers.py). The flow is TLS, encrypted, and
its reason names the upgrade; the clear-text sessions of the same protocols are plaintext and no
other protocol's detector (Redis, memcached) claims them."""

from __future__ import annotations

import ftplib
import imaplib
import poplib
import smtplib
import ssl
import subprocess
from pathlib import Path

import pytest

import inspector
from tests.loopback_capture import loopback_capture
from tests.protocols_samples import MYSQL_GREETING_TLS, MYSQL_SSL_REQUEST
from tests.text_servers import (connect_upgrade, ftp, ftp_without_tls, imap, ldap_upgrade, line_server,
                                mysql_upgrade, pop3, postgresql_upgrade, rdp_upgrade, server_context, smtp, upgrade_server,
                                xmpp_upgrade)

CLIENT_TLS = ssl._create_unverified_context()  # a throw-away certificate on loopback


def _flow(pcap: Path):
    result = inspector.analyze(pcap)
    flows = result.flows
    assert len(flows) == 1, flows[["orig_p", "resp_p", "protocol", "verdict"]]
    return flows.iloc[0], result.evidence


def _record(tmp_path: Path, protocol, client, tls: bool = True) -> tuple:
    ctx = server_context(tmp_path) if tls else None
    pcap = tmp_path / "flow.pcap"
    with line_server(protocol, ctx) as port, loopback_capture(pcap, f"tcp port {port}"):
        client(port)
    return _flow(pcap)


def _assert_upgraded(row, upgrade: str) -> None:
    assert row["protocol"] == "tls", row["reason"]
    assert row["verdict"] == "encrypted", row["reason"]
    assert f"{upgrade} at offset " in row["reason"] and "TLS 1.3" in row["reason"], row["reason"]


def test_smtp_starttls_smtplib(tmp_path):
    def client(port):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
            s.ehlo("compute-1")
            s.starttls(context=CLIENT_TLS)
            s.ehlo("compute-1")
            s.mail("nova@compute-1")
            s.rcpt("ops@internal")
    row, _ = _record(tmp_path, smtp, client)
    _assert_upgraded(row, "smtp STARTTLS")


def test_imap_starttls_imaplib(tmp_path):
    def client(port):
        m = imaplib.IMAP4("127.0.0.1", port, timeout=10)
        m.starttls(ssl_context=CLIENT_TLS)
        m.noop()
        m.logout()
    row, _ = _record(tmp_path, imap, client)
    _assert_upgraded(row, "imap STARTTLS")


def test_pop3_stls_poplib(tmp_path):
    def client(port):
        p = poplib.POP3("127.0.0.1", port, timeout=10)
        p.stls(context=CLIENT_TLS)
        p.user("nova")
        p.pass_("s3cret")
        p.stat()
        p.quit()
    row, _ = _record(tmp_path, pop3, client)
    _assert_upgraded(row, "pop3 STLS")


def test_ftp_auth_tls_ftplib(tmp_path):
    def client(port):
        f = ftplib.FTP_TLS(context=CLIENT_TLS, timeout=10)
        f.connect("127.0.0.1", port)
        f.login("nova", "s3cret")   # AUTH TLS first, then USER/PASS inside TLS
        f.prot_p()
        f.pwd()
        f.quit()
    row, _ = _record(tmp_path, ftp, client)
    _assert_upgraded(row, "ftp AUTH TLS")


@pytest.mark.parametrize("protocol,name", [(smtp, "smtp"), (imap, "imap"), (pop3, "pop3"), (ftp, "ftp")])
def test_openssl_s_client_starttls(tmp_path, protocol, name):
    def client(port):
        subprocess.run(["openssl", "s_client", "-starttls", name, "-connect", f"127.0.0.1:{port}"],
                       input=b"", capture_output=True, timeout=20, check=False)
    row, _ = _record(tmp_path, protocol, client)
    assert row["protocol"] == "tls" and row["verdict"] == "encrypted", row["reason"]
    assert f"{name} " in row["reason"], row["reason"]


def _record_upgrade(tmp_path: Path, upgrade, client) -> tuple:
    pcap = tmp_path / "flow.pcap"
    with upgrade_server(upgrade, server_context(tmp_path)) as port, loopback_capture(pcap, f"tcp port {port}"):
        client(port)
    return _flow(pcap)


def _s_client(kind: str):
    def client(port):
        subprocess.run(["openssl", "s_client", "-starttls", kind, "-connect", f"127.0.0.1:{port}"],
                       input=b"hello\n", capture_output=True, timeout=20, check=False)
    return client


@pytest.mark.parametrize("kind,upgrade,name", [("xmpp", xmpp_upgrade, "xmpp STARTTLS"),
                                               ("postgres", postgresql_upgrade, "postgresql SSLRequest"),
                                               ("ldap", ldap_upgrade, "ldap StartTLS")])
def test_openssl_s_client_binary_upgrades(tmp_path, kind, upgrade, name):
    row, _ = _record_upgrade(tmp_path, upgrade, _s_client(kind))
    _assert_upgraded(row, name)


def test_http_connect_then_tls_curl(tmp_path):
    def client(port):
        subprocess.run(["curl", "-sk", "--max-time", "10", "-x", f"http://127.0.0.1:{port}",
                        "https://compute-1.internal/"], capture_output=True, timeout=20, check=False)
    row, _ = _record_upgrade(tmp_path, connect_upgrade, client)
    _assert_upgraded(row, "http CONNECT")


def test_rdp_negotiation_then_tls(tmp_path):
    """The X.224 Connection Request/Confirm bytes are built from MS-RDPBCGR 2.2.1.1/2.2.1.2 (no RDP
    client or server here); the TLS after them is a real OpenSSL handshake."""
    import socket

    def client(port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"\x03\x00\x00\x13\x0e\xe0\x00\x00\x00\x00\x00\x01\x00\x08\x00\x03\x00\x00\x00")
            sock.recv(19)
            with CLIENT_TLS.wrap_socket(sock) as tls:
                tls.sendall(b"hello\n")
                tls.recv(16)
    row, _ = _record_upgrade(tmp_path, rdp_upgrade, client)
    _assert_upgraded(row, "rdp SSL/HYBRID")  # what the client asked for


def test_mysql_ssl_request_then_tls(tmp_path):
    """Greeting and SSLRequest are the spec-built samples (tests/protocols_samples.py); the TLS is real."""
    import socket

    def client(port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.recv(len(MYSQL_GREETING_TLS))
            sock.sendall(MYSQL_SSL_REQUEST)
            with CLIENT_TLS.wrap_socket(sock) as tls:
                tls.sendall(b"hello\n")
                tls.recv(16)
    row, _ = _record_upgrade(tmp_path, mysql_upgrade(MYSQL_GREETING_TLS), client)
    _assert_upgraded(row, "mysql SSLRequest")


# ------------------------------------------------------------------ the same protocols in clear

def test_pop3_in_clear_is_plaintext_not_redis(tmp_path):
    def client(port):
        p = poplib.POP3("127.0.0.1", port, timeout=10)
        p.capa()
        try:
            p._shortcmd("AUTH PLAIN")   # the line the Redis detector used to take for its AUTH
        except poplib.error_proto:
            pass
        p.user("nova")
        p.pass_("s3cret")
        p.stat()
        p.quit()
    row, evidence = _record(tmp_path, pop3, client, tls=False)
    assert row["protocol"] == "pop3" and row["verdict"] == "plaintext", row["reason"]
    assert not {"redis", "memcached"} & set(evidence["protocol"]), evidence[["protocol", "evidence"]]


def test_ftp_in_clear_is_plaintext_not_redis(tmp_path):
    def client(port):
        f = ftplib.FTP(timeout=10)
        f.connect("127.0.0.1", port)
        with pytest.raises(ftplib.error_perm):
            f.sendcmd("AUTH TLS")      # refused: the session goes on in clear
        f.login("nova", "s3cret")
        f.pwd()
        f.quit()
    row, evidence = _record(tmp_path, ftp_without_tls, client, tls=False)
    assert row["protocol"] == "ftp" and row["verdict"] == "plaintext", row["reason"]
    assert not {"redis", "memcached"} & set(evidence["protocol"]), evidence[["protocol", "evidence"]]
