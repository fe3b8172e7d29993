"""DTLS (RFC 6347 4.1, RFC 9147 4).

A DTLS record: content type (20 change_cipher_spec, 21 alert, 22
handshake, 23 application_data, 25 ack), version (fe ff DTLS 1.0, fe fd
1.2 and 1.3's records in clear), epoch (2 bytes), sequence number (6 bytes),
length (2 bytes, at most 2^14 + 2048), then the fragment. Records never
span datagrams and carry their length, so a flow's head (datagrams one
after the other) chains from record to record exactly; handshake records
of epoch 0 carry a 12-byte handshake header whose fragment fits the record.
DTLS 1.3 protects records under a unified header (RFC 9147 4: 0 0 1 C S L
E E); one with its length bit set chains as well, one without runs to the
datagram's end (the chain stops there).

Proof: two records that chain (or one that ends where the data does).
Records of epoch >= 1, application data, or unified headers are sealed
and prove encryption; a handshake in epoch 0 alone proves nothing.

Fields: ``version``, ``records`` (count per content type), ``epochs``
(highest seen), ``handshakes`` (epoch-0 handshake message types), ``ciphertext``.
"""

from __future__ import annotations

from .base import ENCRYPTED, NOTHING, Detection, lead, line, sample_line, signature, u16

TYPES = {20: "change_cipher_spec", 21: "alert", 22: "handshake", 23: "application_data", 25: "ack"}
VERSIONS = {b"\xfe\xff": "DTLS 1.0", b"\xfe\xfd": "DTLS 1.2"}
HANDSHAKES = {0: "hello_request", 1: "client_hello", 2: "server_hello", 3: "hello_verify_request",
              4: "new_session_ticket", 11: "certificate", 12: "server_key_exchange", 13: "certificate_request",
              14: "server_hello_done", 15: "certificate_verify", 16: "client_key_exchange", 20: "finished"}
HEADER = 13
MAX_LENGTH = (1 << 14) + 2048
MAX_RECORDS = 512


def _record(data: bytes, pos: int) -> tuple[str, int, int, int] | None:
    """(content type, epoch, start of the fragment, end) of the record at ``pos``."""
    first = data[pos] if pos < len(data) else -1
    if first in TYPES:
        length = u16(data, pos + 11)
        if length is None or data[pos + 1:pos + 3] not in VERSIONS or not 1 <= length <= MAX_LENGTH:
            return None
        epoch = u16(data, pos + 3)
        if first == 22 and epoch == 0:
            fragment = (int.from_bytes(data[pos + 22:pos + 25], "big") if pos + 25 <= len(data) else None)
            if data[pos + HEADER:pos + HEADER + 1] and data[pos + HEADER] not in HANDSHAKES or (
                    fragment is not None and fragment + 12 > length):
                return None
        return TYPES[first], epoch, pos + HEADER, pos + HEADER + length
    if first & 0xE0 == 0x20 and first & 0x04:      # DTLS 1.3 unified header with a length
        if first & 0x10:
            return None                               # a connection id of unknown length: stop here
        p = pos + 1 + (2 if first & 0x08 else 1)      # the sequence number's low 8 or 16 bits
        length = u16(data, p)
        if length is None or not 17 <= length <= MAX_LENGTH:
            return None
        return "sealed", 1, p + 2, p + 2 + length
    return None


def at_start(data: bytes) -> Detection | None:
    """DTLS records of one direction of a UDP flow."""
    pos, records, version = 0, [], None
    while pos < len(data) and len(records) < MAX_RECORDS:
        found = _record(data, pos)
        if found is None:
            break
        if found[0] != "sealed":      # a ClientHello may come in a DTLS 1.0 record (RFC 6347 4.1): keep the highest
            version = max(version or "", VERSIONS[data[pos + 1:pos + 3]])
        records.append((pos, *found))
        pos = found[3]
    if not records or (len(records) < 2 and pos != len(data)) or not version:
        return None
    counts: dict[str, int] = {}
    for _, kind, *_ in records:
        counts[kind] = counts.get(kind, 0) + 1
    handshakes = list(dict.fromkeys(HANDSHAKES[data[start]] for _, kind, epoch, start, end in records
                                    if kind == "handshake" and epoch == 0 and start < len(data)))
    sealed = b"".join(data[start:end] for _, kind, epoch, start, end in records
                      if epoch >= 1 or kind == "application_data")
    fields = {"version": version, "records": counts, "epochs": max(r[2] for r in records),
              "handshakes": handshakes}
    text = f"{version} records: " + ", ".join(f"{n} {k}" for k, n in counts.items()) + (
        f"; handshake {', '.join(handshakes)}" if handshakes else "")
    if not sealed:
        fields["ciphertext"] = ""
        return Detection("dtls", 0, line(text, "no record of epoch >= 1 seen"), NOTHING, fields)
    stats, label = sample_line("record fragments of epoch >= 1", sealed)
    fields["ciphertext"] = label
    return Detection("dtls", 0, line(text, stats, "sealed after ChangeCipherSpec"), ENCRYPTED, fields)


START = signature(lead(set(TYPES), b"\xfe", {0xFF, 0xFD}, min_len=HEADER + 1))
