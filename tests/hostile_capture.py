"""A capture whose wire strings are XSS payloads, for the report safety tests.

Every string a detector copies into a flow's reason, evidence or handshake
columns carries markup: the TLS SNI, the HTTP request path, Host and Server
headers, the SSH banners, and the QEMU machine type, device section and
RAMBlock names. Each stays inside what its detector accepts (visible ASCII,
no spaces where the format forbids them, under the length caps of
``inspector.protocols.base.clean``/``listing``), so it reaches the report.
The bytes are written by hand from the protocol specifications cited per
builder; every flow runs between 127.0.0.x addresses on a watched port.
"""

from __future__ import annotations

import random
import socket
import struct
from pathlib import Path

import dpkt

from capture_variants import Rec, write_pcap

SCRIPT = "<script>document.title='PWNED'</script>"
IMG_ATTRIBUTE = "<img src=x onerror=\"document.title='PWNED'\">"
SVG_NO_SPACE = "<svg/onload=document.title='PWNED'>"   # for names that allow no spaces
PAYLOADS = (SCRIPT, IMG_ATTRIBUTE, SVG_NO_SPACE)

MSS = 1448
START_NS = 1_790_000_000 * 10**9
_RANDOM = random.Random(20261123)


def _random_bytes(n: int) -> bytes:
    return _RANDOM.randbytes(n)


# ------------------------------------------------------------------ TCP


def _segment(src: tuple[str, int], dst: tuple[str, int], seq: int, ack: int, flags: int,
             data: bytes = b"") -> bytes:
    tcp = dpkt.tcp.TCP(sport=src[1], dport=dst[1], seq=seq, ack=ack, flags=flags, win=65535, data=data)
    ip = dpkt.ip.IP(src=socket.inet_aton(src[0]), dst=socket.inet_aton(dst[0]), p=dpkt.ip.IP_PROTO_TCP,
                    ttl=64, data=tcp)
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x02" * 6, type=dpkt.ethernet.ETH_TYPE_IP,
                                        data=ip))


def tcp_flow(client: tuple[str, int], server: tuple[str, int], to_server: bytes, to_client: bytes,
             start_ns: int) -> list[Rec]:
    """Handshake, the client's bytes, the server's bytes, then FINs (1 ms apart)."""
    c_seq, s_seq = 1_000_000, 7_000_000
    ack, syn, fin, push = dpkt.tcp.TH_ACK, dpkt.tcp.TH_SYN, dpkt.tcp.TH_FIN, dpkt.tcp.TH_PUSH
    frames = [_segment(client, server, c_seq, 0, syn), _segment(server, client, s_seq, c_seq + 1, syn | ack),
              _segment(client, server, c_seq + 1, s_seq + 1, ack)]
    c_seq, s_seq = c_seq + 1, s_seq + 1
    for i in range(0, len(to_server), MSS):
        frames.append(_segment(client, server, c_seq + i, s_seq, ack | push, to_server[i:i + MSS]))
    c_seq += len(to_server)
    for i in range(0, len(to_client), MSS):
        frames.append(_segment(server, client, s_seq + i, c_seq, ack | push, to_client[i:i + MSS]))
    s_seq += len(to_client)
    frames += [_segment(client, server, c_seq, s_seq, fin | ack), _segment(server, client, s_seq, c_seq + 1, fin | ack),
               _segment(client, server, c_seq + 1, s_seq + 1, ack)]
    return [Rec(start_ns + i * 1_000_000, frame, len(frame)) for i, frame in enumerate(frames)]


# ------------------------------------------------------------------ TLS (RFC 8446)


def _tls_record(content_type: int, body: bytes, version: int = 0x0303) -> bytes:
    return struct.pack(">BHH", content_type, version, len(body)) + body


def _handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def _extensions(*items: tuple[int, bytes]) -> bytes:
    body = b"".join(struct.pack(">HH", kind, len(data)) + data for kind, data in items)
    return struct.pack(">H", len(body)) + body


def _application_data(total: int) -> bytes:
    return b"".join(_tls_record(23, _random_bytes(16384)) for _ in range(total // 16384))


def tls_with_sni(sni: str) -> tuple[bytes, bytes]:
    """TLS 1.3: ClientHello (server_name ``sni``, 4.1.2 / RFC 6066 3), ServerHello, CCS, application data."""
    name = sni.encode("ascii")
    server_name = struct.pack(">HBH", len(name) + 3, 0, len(name)) + name
    hello = _handshake(1, b"\x03\x03" + _random_bytes(32) + b"\x00" + b"\x00\x02\x13\x02" + b"\x01\x00"
                       + _extensions((0, server_name), (43, b"\x02\x03\x04"), (51, b"\x00\x00")))
    server_hello = _handshake(2, b"\x03\x03" + _random_bytes(32) + b"\x00" + b"\x13\x02" + b"\x00"
                              + _extensions((43, b"\x03\x04"), (51, b"\x00\x1d\x00\x20" + _random_bytes(32))))
    ccs = _tls_record(20, b"\x01")
    return (_tls_record(22, hello, 0x0301) + ccs + _application_data(96 * 1024),
            _tls_record(22, server_hello) + ccs + _application_data(96 * 1024))


# ------------------------------------------------------------------ SSH (RFC 4253)


def _ssh_packet(payload: bytes) -> bytes:
    padding = 4 + (-(5 + len(payload) + 4)) % 8
    return struct.pack(">IB", 1 + len(payload) + padding, padding) + payload + bytes(padding)


def _kexinit() -> bytes:
    lists = [b"curve25519-sha256", b"ssh-ed25519", b"chacha20-poly1305@openssh.com",
             b"chacha20-poly1305@openssh.com", b"hmac-sha2-256", b"hmac-sha2-256", b"none", b"none", b"", b""]
    return b"\x14" + bytes(16) + b"".join(struct.pack(">I", len(x)) + x for x in lists) + b"\x00" + bytes(4)


def ssh_with_banner(software: str, comments: str) -> tuple[bytes, bytes]:
    """Banners (4.2), KEXINIT (7.1), NEWKEYS (7.3), then ciphertext both ways."""
    session = _ssh_packet(_kexinit()) + _ssh_packet(b"\x15")
    client = f"SSH-2.0-{software} {comments}\r\n".encode("ascii") + session + _random_bytes(96 * 1024)
    server = b"SSH-2.0-OpenSSH_9.2p1\r\n" + session + _random_bytes(96 * 1024)
    return client, server


# ------------------------------------------------------------------ HTTP/1.1 (RFC 9112)


def http_with_markup(path: str, host: str, server: str) -> tuple[bytes, bytes]:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {SCRIPT}\r\nAccept: */*\r\n\r\n"
    body = b'{"servers": []}'
    response = (f"HTTP/1.1 200 OK\r\nServer: {server}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode("ascii") + body
    return request.encode("ascii"), response


# ------------------------------------------------------------------ QEMU main channel (migration/savevm.c)


def _u8_name(name: str) -> bytes:
    return bytes([len(name)]) + name.encode("ascii")


def qemu_with_names(machine: str, device: str, block: str, pages: int = 64) -> bytes:
    """QEVM v3, CONFIGURATION (machine), RAM section START (MEM_SIZE block list), a device section
    with opaque state and its FOOTER (inside the 16 KiB the detectors read), RAM PART (PAGE
    records), EOF. Page flags from migration/ram.c."""
    mem_size, page, eos, cont, footer = 0x04, 0x08, 0x10, 0x20, 0x7E
    block_size = pages * 4096
    ram_start = (b"\x01" + struct.pack(">I", 1) + _u8_name("ram") + struct.pack(">II", 0, 4)
                 + struct.pack(">Q", block_size | mem_size) + _u8_name(block) + struct.pack(">Q", block_size)
                 + struct.pack(">Q", eos) + bytes([footer]) + struct.pack(">I", 1))
    records = b"".join(struct.pack(">Q", i * 4096 | page | (cont if i else 0)) + (b"" if i else _u8_name(block))
                       + ((b"guest page %06d: " % i) * 216)[:4096]
                       for i in range(pages))
    ram_part = b"\x02" + struct.pack(">I", 1) + records + struct.pack(">Q", eos) + bytes([footer]) + struct.pack(">I", 1)
    device_state = (b"\x04" + struct.pack(">I", 2) + _u8_name(device) + struct.pack(">II", 0, 1)
                    + b"\x00\x01\x02\x03" * 8 + bytes([footer]) + struct.pack(">I", 2))
    configuration = b"\x07" + struct.pack(">I", len(machine)) + machine.encode("ascii")
    return b"QEVM" + struct.pack(">I", 3) + configuration + ram_start + device_state + ram_part + b"\x00"


# ------------------------------------------------------------------ the capture


def write_hostile_capture(path: Path) -> Path:
    """One flow per protocol, each on a port inspector watches (8774 and 443 need
    ``internal_nets=["127.0.0.0/8"]``)."""
    flows = [
        (("127.0.0.2", 40001), ("127.0.0.3", 443), *tls_with_sni(SCRIPT)),
        (("127.0.0.2", 40002), ("127.0.0.3", 8774), *http_with_markup("/" + SVG_NO_SPACE, IMG_ATTRIBUTE, SCRIPT)),
        (("127.0.0.2", 40003), ("127.0.0.3", 22), *ssh_with_banner(SCRIPT, IMG_ATTRIBUTE)),
        (("127.0.0.2", 40004), ("127.0.0.3", 49152), qemu_with_names(SCRIPT, SVG_NO_SPACE, SVG_NO_SPACE), b""),
    ]
    records = []
    for i, (client, server, to_server, to_client) in enumerate(flows):
        records += tcp_flow(client, server, to_server, to_client, START_NS + i * 10**9)
    return write_pcap(path, 1, records)
