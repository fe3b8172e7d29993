"""A handshake does not make a flow encrypted, nor a header plaintext: the bytes decide.

Whoever writes the traffic can put a TLS ClientHello and ServerHello in
front of a cleartext migration stream cut into application_data records, or
negotiate a cipher that does not encrypt. Both cross the loopback for real
here (Python sockets, and OpenSSL through Python's ssl module with the
NULL-SHA256 suite), recorded by tcpdump, and must come out plaintext with
the critical finding and the secrets they carry. Layouts meant to slip
past the statistics (cleartext after megabytes of random bytes) are
plaintext, and a QEMU header in front of random bytes proves nothing. The
statistics cover every captured byte: cleartext in windows the windows
table does not sample, or cut in 4 KiB pieces among megabytes of random
bytes, is plaintext, and the flow says how many bytes were covered.
"""

from __future__ import annotations

import random
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

import inspector
from inspector.flows import kernels as K
from inspector.classify.verdicts import PLAIN_BYTES
from loopback_capture import loopback_capture

PASSWORDS = b"migrate_uri=qemu+tcp://compute-2 password=hunter2-migration-secret\n" * 2000


def _record(kind: int, body: bytes) -> bytes:
    return struct.pack("!BHH", kind, 0x0303, len(body)) + body


def _handshake(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + len(body).to_bytes(3, "big") + body


CLIENT_HELLO = _record(22, _handshake(1, b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\xc0\x2f" + b"\x01\x00"
                                      + b"\x00\x00"))
SERVER_HELLO = _record(22, _handshake(2, b"\x03\x03" + bytes(32) + b"\x00" + b"\xc0\x2f" + b"\x00" + b"\x00\x00")) \
    + _record(20, b"\x01")


def _qemu_stream() -> bytes:
    """A QEMU migration stream whose guest pages hold text with passwords."""
    page = (PASSWORDS * 2)[:4096]
    records = b"".join(struct.pack(">Q", (n << 12) | 0x08) + page for n in range(300))
    return b"QEVM\x00\x00\x00\x03" + records


def _free_port(first: int = 49152) -> int:
    for port in range(first, first + 100):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free migration port")


def _exchange(port: int, client_bytes: bytes, server_bytes: bytes, first: int = len(CLIENT_HELLO)) -> None:
    """One TCP connection on 127.0.0.1: the client's ``first`` bytes, the server's answer, the client's rest."""
    with socket.create_server(("127.0.0.1", port)) as server:
        def serve() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(server_bytes)
                while conn.recv(65536):
                    pass

        thread = threading.Thread(target=serve)
        thread.start()
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(client_bytes[:first])
            client.recv(65536)
            rest = client_bytes[first:]
            for at in range(0, len(rest), 256 * 1024):  # paced: tcpdump's buffer keeps every packet
                client.sendall(rest[at: at + 256 * 1024])
                time.sleep(0.01)
        thread.join(10)


@pytest.fixture(scope="module")
def forged(tmp_path_factory) -> dict[str, inspector.Analysis]:
    folder = tmp_path_factory.mktemp("forged")
    payloads = {"qemu": _qemu_stream(), "zeros": bytes(819_000), "text": PASSWORDS}
    out = {}
    for name, payload in payloads.items():
        records = b"".join(_record(23, payload[i:i + 16_000]) for i in range(0, len(payload), 16_000))
        port = _free_port()
        with loopback_capture(folder / f"{name}.pcap", f"tcp port {port}") as pcap:
            _exchange(port, CLIENT_HELLO + records, SERVER_HELLO)
        out[name] = inspector.analyze(pcap)
    return out


@pytest.mark.parametrize("name", ["qemu", "zeros", "text"])
def test_cleartext_in_forged_tls_records_is_plaintext(forged, name):
    result = forged[name]
    flow = result.flows.iloc[0]
    assert flow["protocol"] == "tls" and flow["watch"] == "migration"
    assert flow["verdict"] == "plaintext" and flow["confidence"] >= 0.9
    assert "tls handshake, but what follows is NOT encrypted" in flow["reason"]
    assert "plaintext-migration" in set(result.findings["rule"])
    assert "tls-protected-migration" not in set(result.findings["rule"])


def test_secrets_in_forged_tls_records_are_found(forged):
    for name in ("qemu", "text"):
        assert (forged[name].secret_counts["count"].sum()) > 100, name


@pytest.fixture(scope="module")
def null_cipher(tmp_path_factory) -> inspector.Analysis:
    """A real TLS 1.2 session (OpenSSL) with NULL-SHA256: authenticated, not encrypted."""
    folder = tmp_path_factory.mktemp("null")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=compute-2",
                    "-days", "1", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname, client_ctx.verify_mode = False, ssl.CERT_NONE
    for ctx in (server_ctx, client_ctx):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("NULL-SHA256:@SECLEVEL=0")
    port = _free_port()
    with loopback_capture(folder / "null.pcap", f"tcp port {port}") as pcap:
        with socket.create_server(("127.0.0.1", port)) as server:
            def serve() -> None:
                conn, _ = server.accept()
                with server_ctx.wrap_socket(conn, server_side=True) as tls:
                    while tls.recv(65536):
                        pass

            thread = threading.Thread(target=serve)
            thread.start()
            with client_ctx.wrap_socket(socket.create_connection(("127.0.0.1", port))) as tls:
                assert tls.cipher()[0] == "NULL-SHA256"
                tls.sendall(_qemu_stream())
            thread.join(10)
    return inspector.analyze(pcap)


def test_a_null_cipher_session_is_plaintext_migration(null_cipher):
    flow = null_cipher.flows.iloc[0]
    assert flow["protocol"] == "tls" and flow["tls_cipher"] == "TLS_RSA_WITH_NULL_SHA256"
    assert flow["verdict"] == "plaintext"
    assert "NULL cipher" in flow["reason"] or "NOT encrypted" in flow["reason"]
    assert "plaintext-migration" in set(null_cipher.findings["rule"])
    assert null_cipher.secret_counts["count"].sum() > 100


def test_real_tls_stays_encrypted():
    result = inspector.analyze(Path(__file__).resolve().parents[1] / "captures" / "qemu-tls.pcap.gz")
    assert set(result.flows["verdict"].astype(str)) == {"encrypted"}


def _window(offset: int) -> int:
    """The statistics window holding stream offset ``offset``."""
    return 0 if offset < K.HEAD_BYTES else 1 + (offset - K.HEAD_BYTES) // K.WINDOW_BYTES


def _window_start(window: int) -> int:
    return K.HEAD_BYTES + (window - 1) * K.WINDOW_BYTES


def _unsampled(offset: int, length: int) -> bool:
    """True when no window holding these bytes is a row of the windows table."""
    return not any(K.is_sampled_window(w) for w in range(_window(offset), _window(offset + length - 1) + 1))


UNSAMPLED_RUN = 65  # windows 65-71 lie between the sampled 64 and 72: 448 KiB no windows-table row shows
PIECE = (PASSWORDS * 2)[:4096]


def _diluted_stream(noise: bytes) -> tuple[bytes, list[int]]:
    """``noise`` with a 4 KiB piece of cleartext every MiB, each at an offset no
    4 KiB block starts at, in a window the windows table does not sample."""
    stream, offsets = bytearray(noise), []
    for mib in range(1, len(noise) >> 20):
        at = (mib << 20) + 300_001
        while not _unsampled(at, len(PIECE)):
            at += K.WINDOW_BYTES
        stream[at: at + len(PIECE)] = PIECE
        offsets.append(at)
    return bytes(stream), offsets


@pytest.fixture(scope="module")
def layouts(tmp_path_factory) -> dict[str, inspector.Analysis]:
    """Streams laid out by an adversary, sent over loopback to a migration port."""
    folder = tmp_path_factory.mktemp("layouts")
    noise = random.Random(7).randbytes(24 << 20)
    hidden = _window_start(UNSAMPLED_RUN)
    assert _unsampled(hidden, PLAIN_BYTES)
    streams = {"random-then-text": noise[: 2 << 20] + (PASSWORDS * 20)[: 2 << 20],
               "header-then-random": b"QEVM\x00\x00\x00\x03" + noise[: 2 << 20],
               "text-in-unsampled-windows": noise[:hidden] + (PASSWORDS * 4)[:PLAIN_BYTES] + noise[: 2 << 20],
               "diluted": _diluted_stream(noise)[0],
               "random": noise[: 8 << 20]}
    out = {}
    for name, stream in streams.items():
        port = _free_port()
        with loopback_capture(folder / f"{name}.pcap", f"tcp port {port}") as pcap:
            _exchange(port, stream, b"ok", first=8)
        out[name] = inspector.analyze(pcap)
    return out


def test_cleartext_after_megabytes_of_random_bytes_is_plaintext(layouts):
    flow = layouts["random-then-text"].flows.iloc[0]
    assert flow["verdict"] == "plaintext", flow["reason"]


def test_a_header_in_front_of_random_bytes_proves_nothing(layouts):
    flow = layouts["header-then-random"].flows.iloc[0]
    assert flow["verdict"] == "unknown"
    assert "framing at the start only" in flow["reason"] and "look encrypted" in flow["reason"]


def _covers_the_stream(flow, sent: int) -> bool:
    """Every byte sent went through a window (a retransmission may count again, as in captured bytes)."""
    return sent <= flow["orig_covered_bytes"] <= flow["orig_captured_bytes"]


def test_cleartext_in_windows_the_table_does_not_sample_is_plaintext(layouts):
    result = layouts["text-in-unsampled-windows"]
    flow = result.flows.iloc[0]
    assert flow["verdict"] == "plaintext" and flow["orig_verdict"] == "plaintext", flow["reason"]
    assert "structured cleartext" in flow["reason"]
    sampled = set(result.windows.loc[result.windows["direction"] == "orig", "window"])
    assert not sampled & set(range(UNSAMPLED_RUN, UNSAMPLED_RUN + PLAIN_BYTES // K.WINDOW_BYTES))
    assert _covers_the_stream(flow, _window_start(UNSAMPLED_RUN) + PLAIN_BYTES + (2 << 20))
    assert flow["orig_covered_bytes"] > flow["orig_analysed_bytes"]


def test_cleartext_diluted_in_pieces_among_random_bytes_is_plaintext(layouts):
    flow = layouts["diluted"].flows.iloc[0]
    assert flow["verdict"] == "plaintext" and flow["orig_verdict"] == "plaintext", flow["reason"]
    assert "cleartext diluted in random bytes" in flow["reason"]
    assert _covers_the_stream(flow, 24 << 20)


def test_the_diluted_pieces_sit_where_the_table_does_not_look():
    _, offsets = _diluted_stream(bytes(24 << 20))
    assert len(offsets) == 23 and all(_unsampled(at, len(PIECE)) and at % 4096 for at in offsets)


def test_random_bytes_alone_stay_encrypted(layouts):
    flow = layouts["random"].flows.iloc[0]
    assert flow["verdict"] == "encrypted" and flow["orig_verdict"] == "encrypted", flow["reason"]
    assert _covers_the_stream(flow, 8 << 20)
