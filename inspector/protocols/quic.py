"""QUIC (RFC 9000 17, RFC 8999 invariants, RFC 9369 for version 2).

Long header: first byte 1 1 T T x x x x (form, fixed bit, type), version
(4 bytes), DCID length (<= 20) and DCID, SCID length and SCID; Initial
packets then carry a token (varint length), and Initial, 0-RTT and
Handshake packets a Length (varint) that covers packet number and payload,
so coalesced packets and the datagrams of a flow's head chain from one
header to the next (past zeros that pad a datagram). Short header: first byte 0 1 x x x x x x, then the
DCID (of the length the peer chose), then the protected packet number and
payload, to the end of the datagram.

Proof: long headers that chain (same version, same SCID) and then short
headers carrying the DCID the last long header named; or, for a flow seen
mid-connection, a short header whose DCID (4-20 bytes) starts at least
two more of the packets that follow, with random bytes between them. Handshake, 0-RTT and 1-RTT payloads
are sealed (RFC 9001 5): they prove encryption. Initial packets alone
prove nothing: their keys derive from the DCID on the wire (RFC 9001 5.2).

Fields: ``version`` (hex), ``long`` (long-header packets by type),
``short`` (short-header packets seen), ``dcid_len``, ``ciphertext``.
"""

from __future__ import annotations

from .base import ENCRYPTED, NOTHING, Detection, byte_statistics, lead, line, sample_line, signature, u32

VERSIONS = {1: "1", 0x6B3343CF: "2"}     # RFC 9000, RFC 9369
LONG_TYPES = {"1": ("Initial", "0-RTT", "Handshake", "Retry"), "2": ("Retry", "Initial", "0-RTT", "Handshake")}
MAX_CID = 20
MIN_SHORT_CID = 4                        # shorter DCIDs repeat by chance too often to count
MIN_SHORT = 3                            # short-header packets that must share the DCID mid-connection
MAX_PACKETS = 256


def _varint(data: bytes, pos: int) -> tuple[int, int] | None:
    """(value, end) of the RFC 9000 16 variable-length integer at ``pos``."""
    if pos >= len(data):
        return None
    size = 1 << (data[pos] >> 6)
    if pos + size > len(data):
        return None
    value = data[pos] & 0x3F
    for b in data[pos + 1:pos + size]:
        value = value << 8 | b
    return value, pos + size


def _version_name(version: int) -> str | None:
    if version in VERSIONS:
        return VERSIONS[version]
    if version >> 8 == 0xFF0000:          # IETF drafts
        return f"draft-{version & 0xFF}"
    return None


def _long(data: bytes, pos: int) -> tuple[dict, int] | None:
    """The long-header packet at ``pos``: (fields, end of the packet)."""
    if pos + 7 > len(data) or data[pos] & 0xC0 != 0xC0:
        return None
    version = u32(data, pos + 1)
    name = _version_name(version)
    if name is None:
        return None
    dcid_len = data[pos + 5]
    if dcid_len > MAX_CID or pos + 7 + dcid_len > len(data):
        return None
    dcid = data[pos + 6:pos + 6 + dcid_len]
    scid_len = data[pos + 6 + dcid_len]
    p = pos + 7 + dcid_len
    if scid_len > MAX_CID or p + scid_len > len(data):
        return None
    scid = data[p:p + scid_len]
    p += scid_len
    kind = LONG_TYPES.get(name, LONG_TYPES["1"])[(data[pos] >> 4) & 3]
    if kind == "Retry":
        return None                         # runs to the datagram's end: nothing to chain
    if kind == "Initial":
        token = _varint(data, p)
        if token is None:
            return None
        p = token[1] + token[0]
    length = _varint(data, p)
    if length is None or length[0] < 20:   # a packet number and a 16-byte AEAD tag at least
        return None
    fields = {"version": version, "type": kind, "dcid": dcid, "scid": scid, "header": length[1] - pos}
    return fields, length[1] + length[0]


def at_start(data: bytes) -> Detection | None:
    """QUIC packets of one direction of a UDP flow."""
    pos, longs = 0, []
    while pos < len(data) and len(longs) < MAX_PACKETS:
        found = _long(data, pos)
        if found is None:
            break
        if longs and (found[0]["version"] != longs[0][0]["version"] or found[0]["scid"] != longs[0][0]["scid"]):
            return None
        longs.append((found[0], pos, found[1]))
        pos = _after_padding(data, found[1])
    if not longs:
        return _short_only(data)
    if pos > len(data) and len(longs) < 2:
        return None                          # one long header that does not fit the data
    shorts = _shorts(data, pos, longs[-1][0]["dcid"]) if pos < len(data) else []
    if pos < len(data) and not shorts and len(longs) < 2:
        return None
    kinds: dict[str, int] = {}
    for f, _, _ in longs:
        kinds[f["type"]] = kinds.get(f["type"], 0) + 1
    version = _version_name(longs[0][0]["version"])
    sealed = [data[a + f["header"]:min(b, len(data))] for f, a, b in longs if f["type"] != "Initial"]
    sealed += [data[a + 1 + len(longs[-1][0]["dcid"]):b] for a, b in zip(shorts, shorts[1:])]
    fields = {"version": version, "long": kinds, "short": len(shorts), "dcid_len": len(longs[-1][0]["dcid"])}
    text = f"QUIC v{version}: " + ", ".join(f"{n} {k}" for k, n in kinds.items()) + (
        f", then {len(shorts)} short-header packets" if shorts else "")
    if not sealed:
        fields["ciphertext"] = ""
        return Detection("quic", 0, line(text, "Initial packets only (keys derived from the connection id)"),
                         NOTHING, fields)
    stats, label = sample_line("sealed payloads after their headers", b"".join(sealed))
    fields["ciphertext"] = label
    return Detection("quic", 0, line(text, stats, "Handshake and 1-RTT packets are AEAD-sealed"), ENCRYPTED,
                     fields)


def _after_padding(data: bytes, pos: int) -> int:
    """Past the zeros some senders append to fill a datagram to 1200 bytes
    (RFC 9000 14.1): no packet starts with a zero byte (its fixed bit is 1)."""
    end = pos
    while end < len(data) and data[end] == 0:
        end += 1
    return end


def _shorts(data: bytes, pos: int, dcid: bytes) -> list[int]:
    """Starts of short-header packets carrying ``dcid`` from ``pos`` on, the
    first one at ``pos``."""
    if len(dcid) < MIN_SHORT_CID or data[pos] & 0xC0 != 0x40 or data[pos + 1:pos + 1 + len(dcid)] != dcid:
        return []
    out = [pos]
    while len(out) < MAX_PACKETS:
        nxt = data.find(dcid, out[-1] + 1 + len(dcid) + 20)
        while nxt >= 0 and data[nxt - 1] & 0xC0 != 0x40:
            nxt = data.find(dcid, nxt + 1)
        if nxt < 0:
            break
        out.append(nxt - 1)
    return out


def _short_only(data: bytes) -> Detection | None:
    """A flow seen mid-connection: short headers whose DCID repeats."""
    if not data or data[0] & 0xC0 != 0x40:
        return None
    for size in range(MAX_CID, MIN_SHORT_CID - 1, -1):
        shorts = _shorts(data, 0, data[1:1 + size])
        if len(shorts) >= MIN_SHORT:
            sample = b"".join(data[a + 1 + size:b] for a, b in zip(shorts, shorts[1:]))
            if byte_statistics(sample)[2] != "random":
                continue                     # a repeated phrase of text, not sealed packets
            stats, label = sample_line("sealed payloads after their headers", sample)
            return Detection("quic", 0, line(f"QUIC short-header packets: {len(shorts)} with one {size}-byte DCID",
                                             stats, "1-RTT packets are AEAD-sealed"), ENCRYPTED,
                             {"version": "", "long": {}, "short": len(shorts), "dcid_len": size,
                              "ciphertext": label})
    return None


START = signature(lead(range(0x40, 0x100), min_len=24))
