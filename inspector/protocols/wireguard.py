"""WireGuard (whitepaper "WireGuard: Next Generation Kernel Network Tunnel", 5.4).

Every message starts with a type byte and three reserved zero bytes:

1 handshake initiation  148 bytes (sender index, ephemeral, sealed static and timestamp, mac1, mac2)
2 handshake response     92 bytes (sender and receiver index, ephemeral, sealed empty, mac1, mac2)
3 cookie reply           64 bytes (receiver index, nonce, sealed cookie)
4 transport data         16-byte header (receiver index, 64-bit little-endian counter), then the
                         sealed packet: padded to 16 bytes (or to the MTU) plus a 16-byte tag: 32 + 16k bytes

A flow's head is its datagrams without their boundaries (``ipsec`` says
why); handshake messages have fixed sizes, and a transport message ends
where the next ``04 00 00 00 || receiver || counter + k`` starts. Two
transport messages of a valid size in a row prove WireGuard: its data is
always sealed (ChaCha20-Poly1305), so it proves encryption; the statistics
of the sealed bytes (headers left out) go in the evidence.

Fields: ``messages`` (count per type name), ``receiver`` (hex, of the
transport messages), ``ciphertext`` (label of the sealed bytes).
"""

from __future__ import annotations

import struct

from .base import ENCRYPTED, NOTHING, Detection, counter_chain, lead, line, sample_line, signature
from .ipsec import MIN_PACKETS

TYPES = {1: ("handshake initiation", 148), 2: ("handshake response", 92), 3: ("cookie reply", 64)}
TRANSPORT = 4
HEADER = 16              # type, reserved, receiver index, counter
MIN_TRANSPORT = 32       # header and the tag of an empty (keepalive) packet
_RESERVED = b"\0\0\0"
_U64LE = struct.Struct("<Q")


def _counter(data: bytes, pos: int) -> int | None:
    return _U64LE.unpack_from(data, pos)[0] if 0 <= pos and pos + 8 <= len(data) else None


def at_start(data: bytes) -> Detection | None:
    """WireGuard messages of one direction of a UDP flow."""
    pos, counts = 0, {}
    while pos < len(data) and data[pos] in TYPES and data.startswith(_RESERVED, pos + 1):
        name, size = TYPES[data[pos]]
        if pos + size > len(data) and sum(counts.values()) == 0:
            return None
        counts[name] = counts.get(name, 0) + 1
        pos += size
    if pos == len(data) and counts:         # handshake messages only, each of its exact size
        return Detection("wireguard", 0, line(f"WireGuard {_listing(counts)}", "no transport data seen"),
                         NOTHING, {"messages": counts, "receiver": "", "ciphertext": ""})
    if data[pos:pos + 1] != bytes([TRANSPORT]) or not data.startswith(_RESERVED, pos + 1):
        return None
    key = data[pos:pos + 8]
    packets = counter_chain(data, pos, key, _counter, MIN_TRANSPORT)
    sizes = [b - a for (a, _), (b, _) in zip(packets, packets[1:])]
    good, full = 0, max(sizes, default=0)   # a packet of the tunnel's MTU is not padded further
    for size in sizes:
        if size < MIN_TRANSPORT or size % 16 and size != full:
            break
        good += 1
    if good + 1 < MIN_PACKETS:
        return None
    packets = packets[:good + 1]
    counts["transport data"] = len(packets)
    sample = b"".join(data[a + HEADER:b] for (a, _), (b, _) in zip(packets, packets[1:]))
    receiver = data[pos + 4:pos + 8][::-1].hex()
    stats, label = sample_line(f"sealed bytes after the {HEADER}-byte headers", sample)
    fields = {"messages": counts, "receiver": receiver, "ciphertext": label}
    return Detection("wireguard", 0, line(
        f"WireGuard {_listing(counts)}; receiver index 0x{receiver}, counters {packets[0][1]}..{packets[-1][1]}",
        stats, "sealed with ChaCha20-Poly1305"), ENCRYPTED, fields)


def _listing(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {name}" for name, n in counts.items())


START = signature(lead({1, 2, 3, TRANSPORT}, _RESERVED, min_len=64))
