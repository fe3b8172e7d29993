"""Other protocols' framing that the Redis and memcached detectors used to claim.

IRC: a small IRC server (RFC 2812 replies) and a client on 127.0.0.1, recorded with tcpdump.
IAX2: voice calls sent over UDP on 127.0.0.1, the datagrams built from the IAX2 framing of
RFC 5456 8.1 (full frames with 12-byte headers, mini frames with 4-byte headers) around random
codec payload; no IAX2 software runs here. The POP3/FTP exchanges are in tests/test_starttls.py.
"""

from __future__ import annotations

import random
import socket
import socketserver
import struct
from pathlib import Path

import pytest

import inspector
from inspector.protocols import detect
from inspector.protocols.services import memcached_at_start, redis_client_at_start, redis_server_at_start
from tests.loopback_capture import loopback_capture, serving

CLAIMERS = {"redis", "memcached"}


class _Irc(socketserver.BaseRequestHandler):
    """Registration replies (RFC 2812 5.1: 001-004), a PING, then QUIT."""

    def handle(self) -> None:
        sock = self.request
        sock.sendall(b":irc.internal NOTICE * :*** Looking up your hostname...\r\n")
        reader = sock.makefile("rb")
        nick = b"*"
        for line in reader:
            word = line.split(b" ", 1)[0].upper()
            if word == b"NICK":
                nick = line.split()[1]
            elif word == b"USER":
                sock.sendall(b":irc.internal 001 " + nick + b" :Welcome to the Internet Relay Network\r\n"
                             b":irc.internal 002 " + nick + b" :Your host is irc.internal, running version 2.11\r\n"
                             b":irc.internal 003 " + nick + b" :This server was created today\r\n"
                             b":irc.internal 004 " + nick + b" irc.internal 2.11 aoOirw abeiIklmnoOpqrstv\r\n"
                             b"PING :irc.internal\r\n")
            elif word == b"QUIT":
                sock.sendall(b"ERROR :Closing link\r\n")
                return


def test_irc_exchange_is_not_redis(tmp_path):
    pcap = tmp_path / "irc.pcap"
    with serving(socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Irc)) as port:
        with loopback_capture(pcap, f"tcp port {port}"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                reader = sock.makefile("rb")
                reader.readline()
                sock.sendall(b"NICK nova\r\nUSER nova 0 * :Nova Compute\r\n")
                for line in reader:
                    if line.startswith(b"PING"):
                        sock.sendall(b"PONG :irc.internal\r\nJOIN #ops\r\nPRIVMSG #ops :migration done\r\n"
                                     b"QUIT :bye\r\n")
                    if line.startswith(b"ERROR"):
                        break
    result = inspector.analyze(pcap)
    assert not CLAIMERS & set(result.evidence["protocol"]), result.evidence[["protocol", "evidence"]]
    row = result.flows.iloc[0]
    assert row["protocol"] == "text" and row["verdict"] == "plaintext", row["reason"]   # short-flow framing


def _iax2_full(src: int, dst: int, ts: int, oseq: int, iseq: int, ftype: int, sub: int, payload: bytes) -> bytes:
    """RFC 5456 8.1.1: F|source call, R|destination call, timestamp, OSeqno, ISeqno, type, C|subclass."""
    return struct.pack(">HHIBBBB", 0x8000 | src, dst, ts, oseq, iseq, ftype, sub) + payload


def _iax2_mini(src: int, ts: int, payload: bytes) -> bytes:
    """RFC 5456 8.1.2: F=0|source call, low 16 bits of the timestamp, then the voice data."""
    return struct.pack(">HH", src & 0x7FFF, ts & 0xFFFF) + payload


def _iax2_call(rng: random.Random, src: int, dst: int) -> list[bytes]:
    """A call's datagrams one way: NEW, a voice full frame (ulaw, 0x04), then mini frames every 20 ms."""
    ies = b"\x0b\x02\x00\x02" + b"\x01\x04nova" + b"\x09\x04\x00\x00\x00\x04"   # version 2, called number, format
    out = [_iax2_full(src, 0, 3, 0, 0, 0x06, 0x01, ies),
           _iax2_full(src, dst, 20, 1, 1, 0x02, 0x04, rng.randbytes(160))]
    out += [_iax2_mini(src, 40 + 20 * i, rng.randbytes(160)) for i in range(50)]
    return out


@pytest.mark.parametrize("src", [0, 1, 2, 7, 0x0A, 0x10, 0x21, 300])
def test_iax2_frames_are_not_memcached(src):
    rng = random.Random(src)
    for dst in (0, 1, 3, 0x8000 | 5, 200):
        for datagram in _iax2_call(rng, src, dst):
            assert memcached_at_start(datagram) is None, datagram[:12].hex()
            assert not CLAIMERS & {d.protocol for d in detect(datagram, direction="any", at_start=True)}


def test_iax2_voice_over_udp_is_not_memcached(tmp_path: Path):
    rng = random.Random(4569)
    pcap = tmp_path / "iax2.pcap"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
        rx.bind(("127.0.0.1", 0))
        port = rx.getsockname()[1]
        with loopback_capture(pcap, f"udp port {port}"):
            for src in (1, 2, 0x0A):
                for datagram in _iax2_call(rng, src, 3):
                    tx.sendto(datagram, ("127.0.0.1", port))
    result = inspector.analyze(pcap)
    assert not CLAIMERS & set(result.evidence["protocol"]), result.evidence[["protocol", "evidence"]]


@pytest.mark.parametrize("line", [b"AUTH TLS\r\n", b"AUTH SSL\r\n", b"AUTH GSSAPI\r\n", b"AUTH PLAIN\r\n",
                                  b"AUTH\r\n", b"AUTH LOGIN\r\nUSER nova\r\n", b"PING :irc.internal\r\n",
                                  b"QUIT :bye\r\n"])
def test_redis_inline_rejects_other_protocols_lines(line):
    """FTP (RFC 4217), GridFTP (RFC 2228 AUTH GSSAPI), POP3/SMTP SASL AUTH, IRC PING/QUIT."""
    assert redis_client_at_start(line) is None


def test_redis_still_reads_inline_and_resp():
    assert redis_client_at_start(b"AUTH s3cret\r\nPING\r\n").fields["commands"] == ["AUTH", "PING"]
    assert redis_client_at_start(b"PING\r\n") is not None
    assert redis_server_at_start(b":1\r\n+OK\r\n$3\r\nabc\r\n") is not None
    assert redis_server_at_start(b":irc.internal 001 nova :Welcome\r\n") is None
