"""Findings on real loopback traffic the test makes itself: an old TLS version
(OpenSSL s_server/s_client), AMQP and MySQL conversations without TLS (Python
sockets speaking the sample bytes of protocols_samples), all recorded by
tcpdump on 127.0.0.1."""

from __future__ import annotations

import socket
import subprocess
import threading
from pathlib import Path

import pytest

import inspector
import protocols_samples as samples
from loopback_capture import loopback_capture

pytestmark = pytest.mark.slow  # real servers recorded on loopback


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rules(pcap: Path) -> dict[str, object]:
    return {row.rule: row for row in inspector.analyze(pcap).findings.itertuples()}


def test_tls_1_1_is_a_weak_tls_finding(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=compute-1.internal", "-keyout", key, "-out", cert], check=True,
                   capture_output=True)
    port = _free_port()
    old = ["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]
    with loopback_capture(tmp_path / "tls11.pcap", f"tcp port {port}") as pcap:
        server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-key", key,
                                   "-cert", cert, "-naccept", "1", *old],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            while server.stdout.readline().strip() not in (b"ACCEPT", b""):  # until it listens
                pass
            client = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}",
                                     "-servername", "compute-1.internal", *old],
                                    input=b"GET / HTTP/1.1\r\nHost: compute-1.internal\r\n\r\n" * 50,
                                    capture_output=True, timeout=30)
        finally:
            server.kill()
            server.wait()
    assert b"Protocol  : TLSv1.1" in client.stdout, client.stdout[-600:]
    weak = _rules(pcap)["weak-tls"]
    assert weak.severity == "medium" and "version TLS 1.1" in weak.evidence


def _converse(port: int, server_says: bytes, client_says: bytes, server_first: bool) -> None:
    """One TCP conversation on 127.0.0.1: each side sends its bytes, then both close."""
    listener = socket.create_server(("127.0.0.1", port))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            if not server_first:
                conn.recv(65536)
            conn.sendall(server_says)
            conn.recv(65536)

    thread = threading.Thread(target=serve)
    thread.start()
    with socket.create_connection(("127.0.0.1", port)) as client:
        if server_first:
            client.recv(65536)
        client.sendall(client_says)
        if not server_first:
            client.recv(65536)
    thread.join(10)
    listener.close()


@pytest.mark.parametrize("rule, server_says, client_says, server_first", [
    ("amqp-without-tls", samples.AMQP_SERVER, samples.AMQP_CLIENT + samples.AMQP_PUBLISH, False),
    ("mysql-without-tls", samples.MYSQL_GREETING_NO_TLS, samples.MYSQL_LOGIN, True),
])
def test_services_without_tls(tmp_path, rule, server_says, client_says, server_first):
    port = _free_port()
    with loopback_capture(tmp_path / "service.pcap", f"tcp port {port}") as pcap:
        _converse(port, server_says, client_says, server_first)
    finding = _rules(pcap)[rule]
    assert finding.severity == "medium" and "without TLS" in finding.summary
    assert finding.bytes_exposed == len(server_says) + len(client_says)
