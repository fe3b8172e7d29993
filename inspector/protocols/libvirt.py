"""libvirt RPC (libvirtd on 16509/TCP, 16514/TLS, or over SSH).

Format (libvirt/libvirt src/rpc/virnetprotocol.x): every message starts
with a 28-byte header, all big-endian u32: total length (including the
header), program, version, procedure, type, serial, status. Programs and
procedure numbers: src/remote/remote_protocol.x, src/rpc/virkeepaliveprotocol.x,
src/admin/admin_protocol.x, src/remote/qemu_protocol.x. The procedure names
below were checked against libvirt 9.0's generated table
(/usr/share/systemtap/tapset/libvirt_functions.stp) and, for 304 and 306,
on the libvirt-tunnelled-tcp capture.

Tunnelled migration sends the QEMU migration stream as STREAM messages
(type 3, status CONTINUE) of the PREPARE_TUNNEL* call: its first payload,
at offset 28, starts "QEVM 00 00 00 03". Over plain TCP this is guest memory
in clear; the payloads are joined and read with the QEMU stream walker.

SASL (auth_sasl_*) may negotiate a security layer after which messages are
wrapped (be32 length + opaque data): then the header chain breaks, and a
chain that only shows the SASL exchange proves nothing about what follows.

Fields: programs, messages, calls (procedure names of CALL messages in
order), procedures ({name: count}), stream_messages, stream_bytes,
keepalives, errors, sasl, tunnelled_qevm, tunnel (fields of the QEMU stream
read from the joined payloads, or None), chained.
"""

from __future__ import annotations

import struct

from inspector.units import human_bytes

from .base import CLEARTEXT, EVERY_BYTE, NOTHING, Detection, anywhere, lead, line, listing, signature
from . import qemu

HEADER_SIZE = 28
MESSAGE_MAX = 33554432        # VIR_NET_MESSAGE_MAX, virnetprotocol.x

PROGRAMS = {                  # program number -> (name, version)
    0x20008086: ("REMOTE", 1),
    0x20008087: ("QEMU", 1),
    0x06900690: ("ADMIN", 1),
    0x6B656570: ("KEEPALIVE", 1),     # "keep"
    0x0EA7BEEF: ("LOCK_SPACE", 1),
    0x00068000: ("LXC", 1),
    0x12341234: ("LXC_MONITOR", 1),
}
REMOTE, QEMU_PROG, ADMIN, KEEPALIVE = 0x20008086, 0x20008087, 0x06900690, 0x6B656570
PROGRAM_BYTES = tuple(p.to_bytes(4, "big") for p in (REMOTE, QEMU_PROG, ADMIN, KEEPALIVE))

TYPES = {0: "CALL", 1: "REPLY", 2: "MESSAGE", 3: "STREAM", 4: "CALL_WITH_FDS",
         5: "REPLY_WITH_FDS", 6: "STREAM_HOLE"}
CALL, REPLY, MESSAGE, STREAM, CALL_WITH_FDS = 0, 1, 2, 3, 4
STATUS = {0: "OK", 1: "ERROR", 2: "CONTINUE"}

# Procedures worth naming around a migration (remote_protocol.x, libvirt 9.0).
REMOTE_PROCEDURES = {
    1: "connect_open", 2: "connect_close", 3: "connect_get_type", 4: "connect_get_version",
    7: "connect_get_capabilities", 11: "domain_define_xml", 14: "domain_get_xml_desc",
    23: "domain_lookup_by_name", 24: "domain_lookup_by_uuid", 59: "connect_get_hostname",
    60: "connect_supports_feature", 61: "domain_migrate_prepare", 62: "domain_migrate_perform",
    63: "domain_migrate_finish", 66: "auth_list", 67: "auth_sasl_init", 68: "auth_sasl_start",
    69: "auth_sasl_step", 70: "auth_polkit", 108: "domain_migrate_prepare2",
    109: "domain_migrate_finish2", 110: "connect_get_uri",
    148: "domain_migrate_prepare_tunnel", 149: "connect_is_secure",
    157: "connect_get_lib_version", 163: "domain_get_job_info", 164: "domain_abort_job",
    166: "domain_migrate_set_max_downtime", 207: "domain_migrate_set_max_speed",
    212: "domain_get_state", 213: "domain_migrate_begin3", 214: "domain_migrate_prepare3",
    215: "domain_migrate_prepare_tunnel3", 216: "domain_migrate_perform3",
    217: "domain_migrate_finish3", 218: "domain_migrate_confirm3",
    242: "domain_migrate_get_max_speed", 277: "domain_get_hostname", 298: "domain_get_job_stats",
    299: "domain_migrate_get_compression_cache", 300: "domain_migrate_set_compression_cache",
    302: "domain_migrate_begin3_params", 303: "domain_migrate_prepare3_params",
    304: "domain_migrate_prepare_tunnel3_params", 305: "domain_migrate_perform3_params",
    306: "domain_migrate_finish3_params", 307: "domain_migrate_confirm3_params",
    318: "domain_event_callback_lifecycle", 359: "domain_event_callback_migration_iteration",
    360: "connect_register_close_callback", 361: "connect_unregister_close_callback",
    364: "domain_migrate_start_post_copy", 387: "domain_migrate_get_max_downtime",
    442: "domain_abort_job_flags",
}
PROCEDURES = {REMOTE: REMOTE_PROCEDURES,
              KEEPALIVE: {1: "ping", 2: "pong"},               # virkeepaliveprotocol.x
              QEMU_PROG: {1: "domain_monitor_command", 2: "domain_attach",
                          3: "domain_agent_command", 7: "domain_monitor_command_with_files"},
              ADMIN: {1: "connect_open", 2: "connect_close"}}
PROC_MAX = 1000               # no program has this many procedures (REMOTE: ~450 in 9.x)
TUNNEL_PROCS = (148, 215, 304)
SASL_PROCS = (67, 68, 69)
AUTH_PROCS = (66, 67, 68, 69, 70, 60)    # exchanged before/while authenticating
MAX_MESSAGES = 100_000
MIN_CHAIN = 3


def _header_pattern() -> tuple:
    """The byte values a header that ``_header`` accepts may hold, position by position."""
    progs = [p.to_bytes(4, "big") for p in PROGRAMS]
    versions = [v.to_bytes(4, "big") for _, v in PROGRAMS.values()]
    return (range((MESSAGE_MAX >> 24) + 1), EVERY_BYTE, EVERY_BYTE, EVERY_BYTE,      # length
            *({p[i] for p in progs} for i in range(4)), *({v[i] for v in versions} for i in range(4)),
            b"\0\0", range((PROC_MAX >> 8) + 1), EVERY_BYTE,                           # procedure
            b"\0\0\0", set(TYPES), EVERY_BYTE, EVERY_BYTE, EVERY_BYTE, EVERY_BYTE,      # type, serial
            b"\0\0\0", set(STATUS))


# What at_start / mid_stream can accept (prefilter.py): a header, at the start or anywhere.
START = signature(lead(*_header_pattern()))
MID = signature(anywhere(*_header_pattern()))


_HEADER = struct.Struct(">7I")  # len, prog, vers, proc, type, serial, status


def _header(d: bytes, pos: int):
    """Header at pos as a tuple, or None if it is not a plausible libvirt header."""
    if pos < 0 or pos + HEADER_SIZE > len(d):
        return None
    length, prog, vers, proc, typ, serial, status = _HEADER.unpack_from(d, pos)
    known = PROGRAMS.get(prog)
    if (known is None or vers != known[1] or not HEADER_SIZE <= length <= MESSAGE_MAX
            or typ not in TYPES or status not in STATUS or proc >= PROC_MAX):
        return None
    return length, prog, proc, typ, serial, status


def proc_name(prog: int, proc: int) -> str:
    return PROCEDURES.get(prog, {}).get(proc, f"{PROGRAMS[prog][0].lower()}_proc_{proc}")


class _Chain:
    def __init__(self):
        self.messages = 0
        self.programs: dict[str, None] = {}
        self.calls: list[str] = []
        self.procedures: dict[str, int] = {}
        self.stream_messages = self.stream_bytes = self.keepalives = self.errors = 0
        self.unknown_procs = 0
        self.sasl = False
        self.after_sasl_clear = False
        self.tunnel = bytearray()
        self.tunnel_first = None      # payload start of the first tunnel STREAM message
        self.end = 0

    def walk(self, d: bytes, pos: int) -> int:
        for _ in range(MAX_MESSAGES):
            h = _header(d, pos)
            if h is None:
                break
            length, prog, proc, typ, _serial, status = h
            self.messages += 1
            self.programs[PROGRAMS[prog][0]] = None
            name = proc_name(prog, proc)
            self.unknown_procs += proc not in PROCEDURES.get(prog, {})
            self.procedures[name] = self.procedures.get(name, 0) + 1
            if prog == KEEPALIVE:
                self.keepalives += 1
            if typ in (CALL, CALL_WITH_FDS) and name not in self.calls:
                self.calls.append(name)
            if status == 1:
                self.errors += 1
            if prog == REMOTE and proc in SASL_PROCS:
                self.sasl = True
                self.after_sasl_clear = False
            elif self.sasl and prog != KEEPALIVE and proc not in AUTH_PROCS:
                self.after_sasl_clear = True
            if typ == STREAM:
                self.stream_messages += 1
                self.stream_bytes += length - HEADER_SIZE
                if prog == REMOTE and proc in TUNNEL_PROCS and length > HEADER_SIZE:
                    payload = d[pos + HEADER_SIZE:pos + length]
                    if self.tunnel_first is None:
                        self.tunnel_first = bytes(payload[:8])
                    self.tunnel += payload
            pos += length
            if pos >= len(d):
                break
        self.end = pos
        return self.messages

    def fields(self, chained: int) -> dict:
        tunnel = None
        qevm = bool(self.tunnel_first and self.tunnel_first.startswith(qemu.QEVM))
        if self.tunnel:
            data = bytes(self.tunnel)
            det = qemu.main_at_start(data) if qevm else qemu.main_mid_stream(data)
            tunnel = dict(det.fields) if det else None
        return {"programs": list(self.programs), "messages": self.messages, "calls": self.calls,
                "procedures": self.procedures, "stream_messages": self.stream_messages,
                "stream_bytes": self.stream_bytes, "keepalives": self.keepalives,
                "errors": self.errors, "sasl": self.sasl, "tunnelled_qevm": qevm,
                "tunnel": tunnel, "chained": chained}


def _detection(c: _Chain, pos: int, head: str) -> Detection:
    f = c.fields(c.messages)
    parts = [f"{head} ({c.messages} messages)"]
    t = f["tunnel"]
    if f["tunnelled_qevm"]:
        what = f"machine {t['machine']}, " if t and t.get("machine") else ""
        exposed = f"{human_bytes(t['guest_bytes'])} guest memory" if t else "QEMU stream"
        parts.append(f"tunnelled migration in clear: STREAM payload starts QEVM v3 ({what}{exposed})")
    elif t:
        parts.append(f"QEMU page records in STREAM payloads ({human_bytes(t['guest_bytes'])} guest memory)")
    if c.stream_messages:
        parts.append(f"{c.stream_messages} STREAM message{'s' if c.stream_messages != 1 else ''} "
                     f"({human_bytes(c.stream_bytes)})")
    if c.calls:
        parts.append(f"calls {listing(c.calls, 3)}")
    if c.keepalives:
        parts.append(f"{c.keepalives} keepalive")
    proves = CLEARTEXT
    if c.sasl and not c.after_sasl_clear and not c.stream_messages:
        proves = NOTHING
        parts.append("SASL authentication: a SASL security layer may wrap what follows")
    return Detection("libvirt-rpc", pos, line(*parts), proves, f)


def at_start(data: bytes) -> Detection | None:
    h = _header(data, 0)
    if h is None:
        return None
    c = _Chain()
    c.walk(data, 0)
    progs = "/".join(c.programs)
    return _detection(c, 0, f"libvirt RPC {progs} v1 header chain")


def mid_stream(data: bytes) -> Detection | None:
    cands = []
    for pb in PROGRAM_BYTES:
        p = data.find(pb, 4)
        for _ in range(64):
            if p < 0:
                break
            cands.append(p - 4)
            p = data.find(pb, p + 1)
    for pos in sorted(cands)[:256]:
        if _header(data, pos) is None:
            continue
        c = _Chain()
        n = c.walk(data, pos)
        # Fewer than MIN_CHAIN headers only when the data ends before the next one
        # could start, and every header names a procedure we know.
        short_ok = c.end >= len(data) and not c.unknown_procs
        if n >= MIN_CHAIN or short_ok:
            return _detection(c, pos, f"libvirt RPC header at offset {pos}, {n} chained")
    return None
