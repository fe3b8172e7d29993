"""SSH (RFC 4253): banner, KEXINIT algorithm lists, NEWKEYS.

Banner "SSH-protoversion-softwareversion[ comments]\\r\\n" (<= 255 bytes);
a server may send other lines first, none starting with "SSH-". Then binary
packets: be32 packet_length, u8 padding_length, payload, padding (no MAC
before the first NEWKEYS). KEXINIT (20): 16-byte cookie, ten name-lists
(kex, host key, ciphers c2s/s2c, MACs c2s/s2c, compression c2s/s2c,
languages c2s/s2c), first_kex_packet_follows, reserved. After NEWKEYS (21)
this side's packets are encrypted (with chacha20-poly1305, the default of
OpenSSH, even the lengths), so nothing after it is parsed.

Mid-stream (``mid_stream``): with AES-GCM (RFC 5647 7.3) and the
encrypt-then-MAC MACs (OpenSSH PROTOCOL 1.7) the be32 packet_length stays
in clear: a multiple of the block size, followed by the encrypted packet
and a tag/MAC of fixed size. At least ``MID_CHAIN`` such headers chained
name the stream ssh (an encrypted session picked up mid-flow); this proves
nothing about the bytes (the statistics decide), it names them. Bulk
transfers send 32 KiB packets, more than a 16 KiB probe holds: those stay
unnamed.

Measured on ssh-bulk / qemu-ssh-tunnel (OpenSSH 9.2p1 Debian): both sides
send their banner and KEXINIT in the first segment, NEWKEYS follows the
ECDH exchange; cipher chacha20-poly1305@openssh.com.

Fields: banner, proto, software, comments, kex, host_key, ciphers_c2s,
ciphers_s2c, macs_c2s, macs_s2c, compression_c2s, packets, newkeys,
strict_kex. detect_flow adds 'negotiated' (the algorithms both sides pick:
the first of the client's list that the server also offers).
"""

from __future__ import annotations

import re

from .base import ENCRYPTED, NOTHING, TEXT, Detection, anywhere, clean, lead, line, listing, signature, u32

KEXINIT, NEWKEYS = 20, 21
MSG_NAMES = {1: "DISCONNECT", 2: "IGNORE", 20: "KEXINIT", 21: "NEWKEYS", 30: "KEX_ECDH_INIT",
             31: "KEX_ECDH_REPLY", 34: "KEX_DH_GEX_REQUEST"}
NAME_LISTS = ("kex", "host_key", "ciphers_c2s", "ciphers_s2c", "macs_c2s", "macs_s2c",
              "compression_c2s", "compression_s2c", "languages_c2s", "languages_s2c")
PACKET_MAX = 256 * 1024        # RFC 4253 6.1 requires 35000; OpenSSH accepts up to 256 KiB
BANNER_MAX = 255
PREAMBLE_MAX = 8192            # other lines a server may send before its banner
_BANNER = re.compile(rb"SSH-(\d+\.\d+)-([\x21-\x2c\x2e-\x7e]+)(?: ([\x20-\x7e]*))?\r?\n")
PLAIN_CIPHERS = ("none",)
# What at_start can accept (prefilter.py): text up to the end of a banner (at least
# "SSH-2.0-x\n", 10 bytes), at the start or after a line end within the preamble.
START = signature((lead(*[TEXT] * 10), lead(b"SSH-")),
                  (lead(*[TEXT] * 10), anywhere(b"\nSSH-", within=PREAMBLE_MAX)))


MID_CHAIN = 4
MID_CANDIDATES = 64            # packet starts tried (small packets: a boundary comes early)
MAC_SIZES = (16, 32, 20, 64, 8)     # GCM tag / umac-128, hmac-sha2-256, hmac-sha1, hmac-sha2-512, umac-64
_LENGTH_CAND = re.compile(rb"\x00[\x00-\x04]", re.S)   # the high bytes of a be32 packet_length <= 256 KiB
MID = signature((anywhere(b"\0", range(5)), lead(min_len=4 + 16 + 8)))


def _chain(data: bytes, pos: int, mac: int) -> int:
    """Packets chained from ``pos`` with ``mac`` bytes after each (the last may run out)."""
    n = 0
    for _ in range(4096):
        length = u32(data, pos)
        if length is None or length % 8 or not 16 <= length <= PACKET_MAX:
            return n
        n += 1
        pos += 4 + length + mac
        if pos >= len(data):
            return n if pos == len(data) or n >= MID_CHAIN else n - 1
    return n


def mid_stream(data: bytes) -> Detection | None:
    """Encrypted SSH packets whose lengths are in clear (AES-GCM, *-etm MACs), anywhere."""
    m = _LENGTH_CAND.search(data)
    for _ in range(MID_CANDIDATES):
        if m is None:
            return None
        pos = m.start()
        m = _LENGTH_CAND.search(data, pos + 1)      # overlapping candidates too
        for mac in MAC_SIZES:
            n = _chain(data, pos, mac)
            if n >= MID_CHAIN:
                f = {"packets": n, "mac_bytes": mac, "lengths_in_clear": True}
                return Detection("ssh", pos, line(f"SSH binary packets mid-stream: {n} chained lengths in clear",
                                                  f"{mac}-byte tag/MAC (AES-GCM or encrypt-then-MAC)"),
                                 NOTHING, f)
    return None


def _namelist(body: bytes, pos: int):
    n = u32(body, pos)
    if n is None or pos + 4 + n > len(body) or n > 8192:
        return None, pos
    raw = body[pos + 4:pos + 4 + n]
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return None, pos
    return [x for x in text.split(",") if x], pos + 4 + n


def parse_kexinit(payload: bytes) -> dict | None:
    if not payload or payload[0] != KEXINIT or len(payload) < 17:
        return None
    pos = 17
    out = {}
    for key in NAME_LISTS:
        names, pos = _namelist(payload, pos)
        if names is None:
            return None
        out[key] = names
    return out


def _banner(data: bytes):
    """(match, offset) of the banner within the allowed preamble, else (None, -1)."""
    if data.startswith(b"SSH-"):
        return _BANNER.match(data, 0, BANNER_MAX + 2), 0
    i = data.find(b"\nSSH-", 0, PREAMBLE_MAX)
    if i < 0:
        return None, -1
    pre = data[:i]
    if any(b < 9 or 13 < b < 32 or b > 126 for b in pre):   # preamble lines are text
        return None, -1
    return _BANNER.match(data, i + 1, i + 1 + BANNER_MAX + 2), i + 1


def at_start(data: bytes) -> Detection | None:
    m, off = _banner(data)
    if m is None:
        return None
    f = {"banner": clean(m.group(0).rstrip(b"\r\n").decode("ascii"), 255),
         "proto": m.group(1).decode(), "software": m.group(2).decode(),
         "comments": m.group(3).decode() if m.group(3) else None,
         "packets": 0, "newkeys": False, "strict_kex": False, "messages": []}
    for key in NAME_LISTS[:7]:
        f[key] = None
    pos = m.end()
    for _ in range(64):
        length = u32(data, pos)
        if length is None or pos + 5 > len(data):
            break
        pad = data[pos + 4]
        if not 5 <= length <= PACKET_MAX or pad < 4 or pad >= length:
            break
        payload = data[pos + 5:pos + 4 + length - pad]
        if not payload:
            break
        f["packets"] += 1
        mt = payload[0]
        f["messages"].append(MSG_NAMES.get(mt, str(mt)))
        if mt == KEXINIT:
            kex = parse_kexinit(payload)
            if kex:
                for key in NAME_LISTS[:7]:
                    f[key] = kex[key]
                f["strict_kex"] = any(k.startswith("kex-strict-") for k in kex["kex"])
        pos += 4 + length
        if mt == NEWKEYS:
            f["newkeys"] = True
            break
    parts = [f"SSH-{f['proto']} banner {clean(f['software'])}"
             + (f" ({clean(f['comments'])})" if f["comments"] else "")]
    if f["kex"]:
        parts.append(f"KEXINIT kex {listing(f['kex'], 2)}")
        parts.append(f"ciphers {listing(f['ciphers_c2s'], 2)}")
    plain = bool(f["ciphers_c2s"]) and all(c in PLAIN_CIPHERS for c in f["ciphers_c2s"])
    if f["newkeys"] and not plain:
        parts.append("NEWKEYS seen: encrypted from here")
        proves = ENCRYPTED
    else:
        parts.append("cipher 'none' only" if plain else "no NEWKEYS yet")
        proves = NOTHING
    return Detection("ssh", off, line(*parts), proves, f)


def _pick(client: list | None, server: list | None):
    if not client or not server:
        return None
    return next((c for c in client if c in server), None)


def combine(client: Detection, server: Detection) -> Detection:
    c, s = client.fields, server.fields
    neg = {"kex": _pick(c["kex"], s["kex"]), "host_key": _pick(c["host_key"], s["host_key"]),
           "cipher_c2s": _pick(c["ciphers_c2s"], s["ciphers_c2s"]),
           "cipher_s2c": _pick(c.get("ciphers_s2c"), s.get("ciphers_s2c")),
           "mac_c2s": _pick(c["macs_c2s"], s["macs_c2s"])}
    f = {"client": dict(c), "server": dict(s), "negotiated": neg,
         "newkeys": (c["newkeys"], s["newkeys"])}
    both = c["newkeys"] and s["newkeys"]
    plain = neg["cipher_c2s"] in PLAIN_CIPHERS or neg["cipher_s2c"] in PLAIN_CIPHERS
    aead = neg["cipher_c2s"] and (neg["cipher_c2s"].startswith("chacha20") or "gcm" in neg["cipher_c2s"])
    ev = line(f"SSH client {clean(c['software'], 40)}, server {clean(s['software'], 40)}",
              f"kex {neg['kex']}" if neg["kex"] else "",
              f"cipher {neg['cipher_c2s']}" if neg["cipher_c2s"] else "",
              "" if aead or not neg["mac_c2s"] else f"mac {neg['mac_c2s']}",
              "NEWKEYS both ways: encrypted" if both else "NEWKEYS " + ("client" if c["newkeys"] else
                                                                         "server" if s["newkeys"] else "not seen"))
    proves = ENCRYPTED if (c["newkeys"] or s["newkeys"]) and not plain else NOTHING
    return Detection("ssh", client.offset, ev, proves, f, direction="both")
