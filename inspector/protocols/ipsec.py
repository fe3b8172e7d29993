"""IPsec: ESP (IP protocol 50, or in UDP 4500 behind NAT) and IKEv1/IKEv2.

A datagram flow's head is its datagrams one after the other, without
their boundaries (``flows.kernels``: non-TCP payloads are appended in
capture order), so the detectors find the boundaries from the framing:

ESP (RFC 4303 2): every packet starts with the SPI of its SA (4 bytes,
1-255 reserved) and a sequence number that grows by one per packet. A
packet ends where the next ``SPI || seq + k`` (0 < k <= 64, a few lost)
starts: three such packets in a row are the proof. What lies between two
headers is IV, ciphertext, padding and ICV; their statistics, without the
8 cleartext header bytes, say whether the SA encrypts: ESP with the NULL
cipher (RFC 2410) carries the inner packet readable, and proves cleartext.

ESP in UDP (RFC 3948): on UDP 4500, datagrams that start with four zero
bytes (the non-ESP marker) carry IKE; a single 0xFF byte is a NAT
keepalive; the others are ESP packets as above.

IKE (RFC 7296 3.1-3.2, RFC 2408 3.1): a 28-byte header (initiator SPI,
responder SPI, next payload, version 0x20 or 0x10, exchange type, flags,
message id, length), then a chain of generic payload headers (next payload,
flags, length) that must end exactly at the message's length. IKE_SA_INIT
/ Main Mode is a cleartext key exchange (proves nothing); an IKEv2 message
with an Encrypted payload (SK, 46) or an IKEv1 message with the E flag
proves the exchange encrypted.

Fields (esp): ``spi`` (hex), ``packets`` (delimited), ``first_seq``,
``last_seq``, ``encapsulation`` ('' or 'udp'), ``ciphertext`` (label of the
delimited payload bytes), ``null_cipher``. Fields (ike): ``version`` (1 or
2), ``exchanges`` (names in order, once each), ``messages``, ``encrypted``
(messages with encrypted payloads), ``nat_t`` (behind the non-ESP marker).
"""

from __future__ import annotations

import re

from .base import (CLEARTEXT, ENCRYPTED, EVERY_BYTE, NOTHING, Detection, counter_chain, lead, line,
                   sample_line, signature, u16, u32)

_TEXT = re.compile(rb"[\x20-\x7e]{4}")
ESP_HEADER = 8           # SPI + sequence number: cleartext on every packet
ESP_MIN_PACKET = 16      # header, pad length, next header, and an ICV of at least 8 bytes (RFC 4303 2.8)
MIN_PACKETS = 3          # packets delimited before ESP is proven
NON_ESP_MARKER = b"\0\0\0\0"   # RFC 3948 2.2
NAT_KEEPALIVE = 0xFF           # RFC 3948 2.3

IKE_HEADER = 28
IKEV2_EXCHANGES = {34: "IKE_SA_INIT", 35: "IKE_AUTH", 36: "CREATE_CHILD_SA", 37: "INFORMATIONAL",
                   43: "IKE_SESSION_RESUME", 44: "IKE_INTERMEDIATE"}      # RFC 7296 3.1, IANA
IKEV1_EXCHANGES = {2: "Main Mode", 4: "Aggressive Mode", 5: "Informational", 32: "Quick Mode",
                   33: "New Group Mode"}                                 # RFC 2408 3.1, RFC 2409 5
IKEV2_PAYLOADS = frozenset({0, *range(33, 55)})                           # IANA IKEv2 payload types
IKEV1_PAYLOADS = frozenset({*range(0, 17), 20, 21, 130, 131})             # RFC 2408 3.1, RFC 3947
SK = 46                                                                    # RFC 7296 3.14
IKEV1_ENCRYPTED_FLAG = 0x01


def _esp(data: bytes, start: int, encapsulation: str) -> Detection | None:
    """ESP packets chained from ``start``."""
    spi = u32(data, start)
    if spi is None or spi < 256 or _TEXT.match(data, start + 4, start + ESP_HEADER):
        return None                   # a sequence number of 4 printable bytes is 2^29 packets in: text
    packets = counter_chain(data, start, data[start:start + 4], u32, ESP_MIN_PACKET)
    if len(packets) < MIN_PACKETS:
        return None
    bounds = [p for p, _ in packets]
    sample = b"".join(data[a + ESP_HEADER:b] for a, b in zip(bounds, bounds[1:]))
    stats, label = sample_line(f"payload after the {ESP_HEADER}-byte headers", sample)
    null_cipher = label == "plain"
    seqs = f"seq {packets[0][1]}..{packets[-1][1]}"
    where = "in UDP (NAT-T, RFC 3948)" if encapsulation else "IP protocol 50"
    fields = {"spi": f"0x{spi:08x}", "packets": len(packets), "first_seq": packets[0][1],
              "last_seq": packets[-1][1], "encapsulation": encapsulation, "ciphertext": label,
              "null_cipher": null_cipher}
    if null_cipher:
        return Detection("esp", start, line(f"ESP {where} SPI 0x{spi:08x}, {len(packets)} packets {seqs}",
                                            stats, "readable: NULL encryption (RFC 2410), integrity only"),
                         CLEARTEXT, fields)
    return Detection("esp", start, line(f"ESP {where} SPI 0x{spi:08x}, {len(packets)} packets {seqs}",
                                        stats, "encrypted at the network layer"), ENCRYPTED, fields)


def esp_at_start(data: bytes) -> Detection | None:
    """ESP packets of an IP protocol 50 flow."""
    return _esp(data, 0, "")


def esp_in_udp_at_start(data: bytes) -> Detection | None:
    """ESP packets of a UDP flow (NAT-T), after any IKE messages behind the
    non-ESP marker and NAT keepalives."""
    pos = 0
    for _ in range(64):
        if data.startswith(NON_ESP_MARKER, pos):
            message = ike_message(data, pos + 4)
            if message is None or message[1] > len(data):
                return None
            pos = message[1]
        else:
            found = _esp(data, pos, "udp")
            if found is None and data[pos:pos + 1] == bytes([NAT_KEEPALIVE]):
                found = _esp(data, pos + 1, "udp")
            return found
    return None


def ike_message(data: bytes, pos: int) -> tuple[dict, int] | None:
    """The IKE message at ``pos``: (fields, end), its payload chain checked
    as far as the data goes; None when the header or the chain is wrong."""
    length = u32(data, pos + 24)
    if length is None or data[pos:pos + 8] == bytes(8) or not IKE_HEADER <= length <= 65535:
        return None
    next_payload, version, exchange, flags = data[pos + 16:pos + 20]
    if version == 0x20:
        names, payloads, encrypted = IKEV2_EXCHANGES, IKEV2_PAYLOADS, next_payload == SK
        if flags & ~0x38:      # only Initiator, Version and Response (RFC 7296 3.1)
            return None
    elif version == 0x10:
        names, payloads, encrypted = IKEV1_EXCHANGES, IKEV1_PAYLOADS, bool(flags & IKEV1_ENCRYPTED_FLAG)
        if flags & ~0x07:      # Encryption, Commit, Authentication only (RFC 2408 3.1)
            return None
    else:
        return None
    if exchange not in names or next_payload not in payloads:
        return None
    end = pos + length
    p, kind = pos + IKE_HEADER, next_payload
    if not (version == 0x10 and encrypted):
        for _ in range(64):
            if kind == 0:
                if p != end:
                    return None
                break
            size = u16(data, p + 2)
            if size is None:
                if end <= len(data):
                    return None
                break                      # the region ends inside the message: checked so far
            if size < 4 or p + size > end or data[p] not in payloads:
                return None
            if kind == SK:
                encrypted = True
                if p + size != end:
                    return None
                break
            p, kind = p + size, data[p]
        else:
            return None
    fields = {"version": version >> 4, "exchange": names[exchange], "response": bool(flags & 0x20),
              "encrypted": encrypted}
    return fields, end


def ike_at_start(data: bytes) -> Detection | None:
    """IKE messages of a UDP flow (500, or 4500 behind the non-ESP marker)."""
    nat_t = data.startswith(NON_ESP_MARKER)
    pos, messages = 0, []
    while pos < len(data) and len(messages) < 64:
        at = pos + 4 if nat_t else pos
        if nat_t and not data.startswith(NON_ESP_MARKER, pos):
            break                            # ESP follows (esp_in_udp_at_start)
        found = ike_message(data, at)
        if found is None:
            break
        messages.append(found[0])
        pos = found[1]
    if not messages or (pos < len(data) and not nat_t) or (pos > len(data) and len(messages) < 2):
        return None                          # a lone message must end where the data does
    if len({m["version"] for m in messages}) != 1:
        return None
    version = messages[0]["version"]
    exchanges = list(dict.fromkeys(m["exchange"] for m in messages))
    encrypted = sum(m["encrypted"] for m in messages)
    fields = {"version": version, "exchanges": exchanges, "messages": len(messages), "encrypted": encrypted,
              "nat_t": nat_t, "spi_i": data[(4 if nat_t else 0):(4 if nat_t else 0) + 8].hex()}
    text = f"IKEv{version} {', '.join(exchanges)}: {len(messages)} message(s)" + (
        " behind the non-ESP marker (UDP 4500)" if nat_t else "")
    if encrypted:
        return Detection("ike", 0, line(text, f"{encrypted} with encrypted payloads"
                                        + (" (SK)" if version == 2 else " (E flag)")), ENCRYPTED, fields)
    return Detection("ike", 0, line(text, "cleartext key exchange only (SA, KE, nonces)"), NOTHING, fields)


_SPI_SET = frozenset(range(1, 256))
# SPI >= 256: one of its first three bytes is not zero.
ESP_START = signature(lead(_SPI_SET, min_len=ESP_MIN_PACKET * 2 + 8),
                      lead(EVERY_BYTE, _SPI_SET, min_len=ESP_MIN_PACKET * 2 + 8),
                      lead(EVERY_BYTE, EVERY_BYTE, _SPI_SET, min_len=ESP_MIN_PACKET * 2 + 8))
ESP_IN_UDP_START = ESP_START + signature(lead(NON_ESP_MARKER, min_len=IKE_HEADER + 4))
_IKE_AT = (EVERY_BYTE,) * 17 + ({0x10, 0x20}, frozenset({*IKEV2_EXCHANGES, *IKEV1_EXCHANGES}))
IKE_START = signature(lead(*_IKE_AT, min_len=IKE_HEADER), lead(NON_ESP_MARKER, *_IKE_AT, min_len=IKE_HEADER + 4))
