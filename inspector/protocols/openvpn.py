"""OpenVPN in TLS mode (openvpn src/openvpn/ssl_pkt.h, ssl.c: "Control Channel Protocol").

Every packet starts with one byte: opcode (5 bits) and key id (3 bits).
Control packets (hard/soft resets, P_CONTROL_V1 carrying the TLS handshake,
P_ACK_V1) follow it with the sender's 8-byte session id; the first packet a
side sends is a hard reset (P_CONTROL_HARD_RESET_CLIENT_V2/V3 or
SERVER_V2) with key id 0. Data packets P_DATA_V2: the byte, a 3-byte peer
id, then with AEAD ciphers a 4-byte packet id that grows by one per packet,
the tag and the ciphertext. Over TCP each packet is preceded by its 2-byte
length.

A flow's head is its datagrams without their boundaries (``ipsec`` says
why): a hard reset at the start, then the same session id behind control
opcodes at least twice more, name OpenVPN; data packets are found as a run
of ``opcode || peer id || packet id + k`` (as ESP's SPI and sequence) and
prove the tunnel encrypted, with the statistics of what follows their 8-byte
headers. The control channel alone (a TLS handshake inside it) proves nothing.

Static-key mode (``--secret``) has no opcode framing and is not recognised.

Fields: ``control`` (control packets seen), ``data`` (data packets
delimited), ``session`` (hex), ``transport`` ('udp' or 'tcp'), ``ciphertext``.
"""

from __future__ import annotations

from .base import ENCRYPTED, NOTHING, Detection, counter_chain, lead, line, sample_line, signature, u16, u32

HARD_RESETS = {7: "P_CONTROL_HARD_RESET_CLIENT_V2", 8: "P_CONTROL_HARD_RESET_SERVER_V2",
               10: "P_CONTROL_HARD_RESET_CLIENT_V3"}
CONTROL = frozenset({3, 4, 5, 7, 8, 10, 11})      # soft reset, P_CONTROL_V1, P_ACK_V1, resets, P_CONTROL_WKC_V1
DATA_V2 = 9
DATA_HEADER = 8                                   # opcode, peer id, packet id
MIN_DATA = DATA_HEADER + 16                       # an AEAD tag at least
MIN_CONTROL = 3                                   # packets with the session id, the hard reset included
MAX_DATA_TRIES = 64


def _packets(data: bytes, transport: str) -> Detection | None:
    """OpenVPN from the packets of one direction, one after the other."""
    opcode = data[0] >> 3 if data else 0
    if opcode not in HARD_RESETS or data[0] & 7 or len(data) < 14:
        return None
    session = data[1:9]
    controls, pos, last, others = 1, 1, 0, 0
    while controls < 256:
        pos = data.find(session, pos + 1)
        if pos < 0:
            break
        if data[pos - 1] >> 3 in CONTROL:
            controls, last = controls + 1, pos - 1
            others += data[pos - 1] >> 3 != opcode
    if controls < MIN_CONTROL or not others:
        return None                   # the handshake goes on with ACKs and P_CONTROL_V1; one line repeated does not
    chain, tries, start = [], 0, last + 10
    while tries < MAX_DATA_TRIES and len(chain) < 3:
        start = next((i for i in range(start, min(len(data), start + 4096)) if data[i] >> 3 == DATA_V2), -1)
        if start < 0:
            break
        chain = counter_chain(data, start, data[start:start + 4], u32, MIN_DATA)
        tries, start = tries + 1, start + 1
    fields = {"control": controls, "data": 0, "session": session.hex(), "transport": transport, "ciphertext": ""}
    text = f"OpenVPN ({transport}) {HARD_RESETS[opcode]}, {controls} control packets of session {session.hex()}"
    if len(chain) < 3:
        return Detection("openvpn", 0, line(text, "no data packets seen (TLS handshake in the control channel)"),
                         NOTHING, fields)
    bounds = [p for p, _ in chain]
    stats, label = sample_line(f"data after the {DATA_HEADER}-byte headers",
                               b"".join(data[a + DATA_HEADER:b] for a, b in zip(bounds, bounds[1:])))
    fields.update(data=len(chain), ciphertext=label)
    return Detection("openvpn", 0, line(text, f"{len(chain)} P_DATA_V2 packets, packet ids {chain[0][1]}.."
                                        f"{chain[-1][1]}", stats, "sealed by the data channel cipher"),
                     ENCRYPTED, fields)


def udp_at_start(data: bytes) -> Detection | None:
    """OpenVPN packets of one direction of a UDP flow."""
    return _packets(data, "udp")


def tcp_at_start(data: bytes) -> Detection | None:
    """OpenVPN over TCP: packets behind their 2-byte lengths."""
    if len(data) < 3 or data[0] or data[1] < 14:
        return None                   # a hard reset is 14-255 bytes long
    pos, packets = 0, []
    while pos < len(data) and len(packets) < 1024:
        size = u16(data, pos)
        if size is None or size == 0:
            break
        packets.append(data[pos + 2:pos + 2 + size])
        pos += 2 + size
    if len(packets) < 2 or pos < len(data) - 1:
        return None                   # the lengths must chain to the end of the data (a cut last packet aside)
    return _packets(b"".join(packets), "tcp")


_RESET_BYTES = {opcode << 3 for opcode in HARD_RESETS}
UDP_START = signature(lead(_RESET_BYTES, min_len=14))
TCP_START = signature(lead(b"\0", range(14, 256), _RESET_BYTES, min_len=16))
