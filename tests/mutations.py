"""Mutations of real captures, for the fuzz tests and benchmarks/fuzz_campaign.py.

A seed is a small real capture (the loopback recordings in tests/data, the
first packets of the shipped QEMU, libvirt, TLS and HTTP captures), as
classic pcap, as pcapng (converted by Wireshark's editcap) and gzip'd.
``mutate`` applies a few seeded mutations, some blind (bytes flipped,
inserted, cut, duplicated), some aimed at the structure (record and block
lengths, link types, the pcapng interface options, the gzip trailer), so
both the container parsers and the packet decoders get inputs that are
almost valid.
"""

from __future__ import annotations

import gzip
import random
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEED_CAPTURES = [ROOT / "tests" / "data" / name for name in ("lo_mixed.pcap", "any_sll.pcap", "any_sll2.pcap")] + [
    ROOT / "captures" / name for name in ("http-api.pcap", "https-api.pcap.gz", "qemu-plain-mtu1500.pcap.gz",
                                          "libvirt-tunnelled-tcp.pcap.gz", "qemu-multifd-none.pcap.gz")]
SEED_PACKETS = 60  # per seed: small inputs, so a campaign tries many
INTERESTING = (0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x10000, 24, 16, 28, 32)


def seeds(folder: Path) -> list[bytes]:
    """The seed corpus: each seed capture cut to ``SEED_PACKETS`` packets, as pcap, pcapng and pcap.gz."""
    from capture_variants import pcap_bytes, read_pcap

    corpus = []
    for path in SEED_CAPTURES:
        pcap = read_pcap(path)
        data = pcap_bytes(pcap.linktype, pcap.records[:SEED_PACKETS], nsec=pcap.nsec, snaplen=pcap.snaplen)
        plain = folder / (path.name.split(".")[0] + ".pcap")
        plain.write_bytes(data)
        ng = plain.with_suffix(".pcapng")
        subprocess.run(["editcap", "-F", "pcapng", str(plain), str(ng)], check=True, capture_output=True)
        corpus += [data, ng.read_bytes(), gzip.compress(data, mtime=0)]
    return corpus


def mutate(data: bytes, rng: random.Random) -> bytes:
    """1-4 mutations of one capture."""
    if data[:2] == b"\x1f\x8b" and rng.random() < 0.5:  # the inner capture, gzip'd again
        return gzip.compress(mutate(gzip.decompress(data), rng), mtime=0)
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        out = rng.choice(MUTATORS)(out, rng)
    return bytes(out)


def _flip(out: bytearray, rng: random.Random) -> bytearray:
    for _ in range(rng.randint(1, 16)):
        if out:
            out[rng.randrange(len(out))] = rng.randrange(256)
    return out


def _cut(out: bytearray, rng: random.Random) -> bytearray:
    return out[: rng.randrange(len(out) + 1)]


def _insert(out: bytearray, rng: random.Random) -> bytearray:
    at = rng.randrange(len(out) + 1)
    return out[:at] + bytearray(rng.randbytes(rng.randint(1, 64))) + out[at:]


def _duplicate(out: bytearray, rng: random.Random) -> bytearray:
    if len(out) < 2:
        return out
    start = rng.randrange(len(out) - 1)
    piece = out[start: start + rng.randint(1, 2048)]
    at = rng.randrange(len(out) + 1)
    return out[:at] + piece + out[at:]


def _length_field(out: bytearray, rng: random.Random) -> bytearray:
    """An interesting value into a record's or block's length, or into the file header."""
    starts = _record_starts(bytes(out))
    if not starts:
        return _flip(out, rng)
    start, field = rng.choice(starts)
    at = start + field
    if at + 4 <= len(out):
        value = rng.choice(INTERESTING) if rng.random() < 0.7 else rng.getrandbits(32)
        out[at: at + 4] = struct.pack("<I", value & 0xFFFFFFFF)
    return out


def _header(out: bytearray, rng: random.Random) -> bytearray:
    """The file header: version, snaplen, link type (pcap), or the section header (pcapng)."""
    if len(out) >= 24:
        at = rng.choice((4, 6, 16, 20, 8, 12))
        out[at: at + 2] = struct.pack("<H", rng.choice(INTERESTING) & 0xFFFF)
    return out


MUTATORS: tuple[Callable[[bytearray, random.Random], bytearray], ...] = (
    _flip, _flip, _cut, _insert, _duplicate, _length_field, _length_field, _header)


def _record_starts(data: bytes) -> list[tuple[int, int]]:
    """(offset, length-field offset within it) of the first records of a little-endian pcap or pcapng."""
    starts = []
    if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        at = 24
        while at + 16 <= len(data) and len(starts) < 200:
            starts += [(at, 8), (at, 12)]
            at += 16 + struct.unpack_from("<I", data, at + 8)[0]
    elif data[:4] == b"\x0a\x0d\x0d\x0a":
        at = 0
        while at + 12 <= len(data) and len(starts) < 200:
            length = struct.unpack_from("<I", data, at + 4)[0]
            starts += [(at, 4), (at, 8)] + ([(at, 12), (at, 20)] if length > 24 else [])
            if length < 12:
                break
            at += length
    return starts
