#!/usr/bin/env python3
"""Regenerate the ground-truth capture corpus in captures/ from REAL programs.

Every capture is made by running real, unmodified programs on the loopback
interface (127.0.0.1 only) while tcpdump records them; nothing is synthesised
packet by packet.  Afterwards the flows are enumerated from the capture itself
(a small stdlib classic-pcap reader) and each one is labelled with its true class in manifest.json.

Captures (name: what runs, server port):

  qemu-plain         QEMU live migration, plaintext main channel       49152
  qemu-tls           QEMU live migration with native TLS (x509)        49153
  qemu-multifd-zstd  QEMU multifd migration, 2 channels, zstd          49154
  ssh-bulk           private sshd + ssh copying ~2 MiB of mixed data   2222
  http-api           http.server JSON API (OpenStack-like) + curl      8774
  https-api          the same over TLS (Python ssl) + curl -k          13774

QEMU guests are tiny, paused (-S, never booted) TCG machines with 32 MiB of
RAM; a ~3 MiB image of mixed content (English/config text, x86 machine code
cut from /usr/bin binaries, zero runs, random bytes) is loaded into guest RAM
at 1 MiB with `-device loader,...,force-raw=on`, so the migration stream
carries realistic memory pages.  Both QEMUs are driven over QMP unix sockets;
the destination uses `-incoming defer` + `migrate-incoming`.

Certificates, keys, the sshd configuration and all scratch files live in a
temporary directory that is removed afterwards; every process started here is
terminated before the script exits.

Programs needed (Debian bookworm packages):
  qemu-system-x86 (qemu-system-x86_64), qemu-utils, tcpdump,
  openssh-server (sshd), openssh-client (ssh, ssh-keygen),
  gnutls-bin (certtool, for the QEMU TLS credentials), openssl (HTTPS cert),
  curl, python3 (standard library only; no third-party Python packages).

Usage (as root, because of tcpdump and sshd):
  sudo python3 captures/make_captures.py                # everything
  sudo python3 captures/make_captures.py --only qemu-tls [--only ssh-bulk]
  python3 captures/make_captures.py --list

The script is idempotent: it overwrites the capture files it makes and
rewrites manifest.json (with --only, the other captures' entries are kept).
Gzip output uses mtime 0, but the captures themselves differ from run to run
(keys, ports, timing), so the manifest records each file's sha256.
"""

from __future__ import annotations

import argparse
import contextlib
import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
MANIFEST = HERE / "manifest.json"
LOOPBACK = "127.0.0.1"          # the only address anything here ever uses
QEMU = "qemu-system-x86_64"
PAGE = 4096

# --------------------------------------------------------------------------
# process bookkeeping: everything we start is registered and torn down


class Procs:
    """Registry of started processes; stop_all() ends each one by its pid."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], **kw) -> subprocess.Popen:
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(argv, **kw)
        self.procs.append((name, p))
        return p

    def stop(self, p: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                p.wait(5)
        for stream in (p.stdout, p.stderr):
            if stream is not None:
                with contextlib.suppress(Exception):
                    stream.close()

    def stop_all(self) -> None:
        for _name, p in reversed(self.procs):
            self.stop(p)
        self.procs.clear()


PROCS = Procs()


def log(msg: str) -> None:
    print(f"[make_captures] {msg}", file=sys.stderr, flush=True)


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("check", True)
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(argv, **kw)


def listening(port: int) -> bool:
    """True if something listens on 127.0.0.1:port (read /proc; no probe connection)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[1] == want and parts[3] == "0A":
                return True
    return False


def port_in_use(port: int) -> bool:
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[3] in ("06", "07"):      # TIME_WAIT / CLOSE: harmless leftovers
                continue
            for addr in (parts[1], parts[2]):
                if int(addr.split(":")[1], 16) == port:
                    return True
    return False


def ensure_free(port: int) -> None:
    if port_in_use(port):
        raise RuntimeError(f"port {port} is already in use on this machine")


def wait_for(pred, what: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what}: process exited with status {proc.returncode}")
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


# --------------------------------------------------------------------------
# tcpdump


class Capture:
    """tcpdump -i lo -s 0 -U -w FILE 'tcp port N', started/stopped safely.

    -B 131072 (a 128 MiB kernel buffer): loopback carries 64 KiB GSO segments
    and a migration bursts at memory speed; the default 2 MiB buffer drops.
    A capture with any kernel drop is rejected.
    """

    def __init__(self, raw: Path, port: int) -> None:
        self.raw, self.port = raw, port
        self.proc: subprocess.Popen | None = None
        self.stderr = b""

    def __enter__(self) -> "Capture":
        self.proc = PROCS.start(
            "tcpdump",
            ["tcpdump", "-i", "lo", "-s", "0", "-U", "-n", "-Z", "root", "-B", "131072",
             "-w", str(self.raw), f"tcp port {self.port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # tcpdump says "listening on lo, ..." once the capture is really open
        deadline = time.monotonic() + 20
        os.set_blocking(self.proc.stderr.fileno(), False)
        buf = b""
        while time.monotonic() < deadline:
            chunk = self.proc.stderr.read() or b""
            buf += chunk
            if b"listening on" in buf:
                break
            if self.proc.poll() is not None:
                raise RuntimeError(f"tcpdump failed: {buf.decode(errors='replace')}")
            time.sleep(0.05)
        else:
            raise RuntimeError("tcpdump did not start listening")
        self.stderr = buf
        time.sleep(0.5)            # let the BPF filter settle before traffic
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(1.5)            # let the last FIN/ACKs arrive and be written
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        with contextlib.suppress(Exception):
            os.set_blocking(self.proc.stderr.fileno(), True)
            self.stderr += self.proc.stderr.read() or b""
        PROCS.stop(self.proc)
        text = self.stderr.decode(errors="replace")
        m = re.search(r"(\d+) packets? dropped by kernel", text)
        if m and int(m.group(1)):
            raise RuntimeError(f"tcpdump dropped {m.group(1)} packets; rerun ({text.strip()!r})")
        if not re.search(r"\d+ packets? captured", text):
            raise RuntimeError(f"tcpdump did not report its statistics: {text.strip()!r}")


def write_output(raw: Path, dest: Path) -> None:
    """Copy tcpdump's classic pcap to dest, gzip'd (mtime 0) for *.gz."""
    tmp = dest.with_name(dest.name + ".tmp")
    if dest.name.endswith(".gz"):
        with open(raw, "rb") as src, open(tmp, "wb") as out:
            with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
                shutil.copyfileobj(src, gz, 1 << 20)
    else:
        shutil.copyfile(raw, tmp)
    os.replace(tmp, dest)


# --------------------------------------------------------------------------
# flow enumeration (stdlib classic-pcap reader; no third-party packages)


def _pcap_packets(path: Path):
    """Yield (linktype, frame) from a classic pcap (optionally gzip'd); stdlib only."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        hdr = f.read(24)
        if len(hdr) < 24:
            raise RuntimeError(f"{path}: truncated pcap header")
        magic = hdr[:4]
        if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
            end = "<"
        elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
            end = ">"
        else:
            raise RuntimeError(f"{path}: not a classic pcap file")
        linktype = struct.unpack(end + "I", hdr[20:24])[0] & 0x0FFFFFFF
        rec = struct.Struct(end + "IIII")
        while True:
            h = f.read(16)
            if len(h) < 16:
                return
            _s, _u, incl, _orig = rec.unpack(h)
            frame = f.read(incl)
            if len(frame) < incl:
                return
            yield linktype, frame


def _tcp_segment(linktype: int, frame: bytes):
    """(src_ip, sport, dst_ip, dport, flags, payload) of a TCP frame, else None."""
    if linktype == 1:                                   # Ethernet
        off, etype = 14, struct.unpack_from("!H", frame, 12)[0]
        while etype in (0x8100, 0x88A8):
            etype = struct.unpack_from("!H", frame, off + 2)[0]
            off += 4
    elif linktype in (0, 108):                          # BSD loopback
        off, etype = 4, 0x0800 if 2 in (frame[0], frame[3]) else 0x86DD  # AF_INET = 2
    elif linktype == 101:                               # raw IP
        off, etype = 0, 0x0800 if frame[0] >> 4 == 4 else 0x86DD
    elif linktype == 113:                               # Linux cooked
        off, etype = 16, struct.unpack_from("!H", frame, 14)[0]
    else:
        raise RuntimeError(f"unexpected link type {linktype}")
    if etype == 0x0800 and len(frame) >= off + 20:
        ihl = (frame[off] & 0x0F) * 4
        total = struct.unpack_from("!H", frame, off + 2)[0]
        if frame[off + 9] != 6:
            return None
        src, dst = socket.inet_ntoa(frame[off + 12:off + 16]), socket.inet_ntoa(frame[off + 16:off + 20])
        tcp, ip_end = off + ihl, off + total
    elif etype == 0x86DD and len(frame) >= off + 40:
        if frame[off + 6] != 6:
            return None
        plen = struct.unpack_from("!H", frame, off + 4)[0]
        src = socket.inet_ntop(socket.AF_INET6, frame[off + 8:off + 24])
        dst = socket.inet_ntop(socket.AF_INET6, frame[off + 24:off + 40])
        tcp, ip_end = off + 40, off + 40 + plen
    else:
        return None
    sport, dport = struct.unpack_from("!HH", frame, tcp)
    doff = (frame[tcp + 12] >> 4) * 4
    flags = frame[tcp + 13]
    return src, sport, dst, dport, flags, frame[tcp + doff:min(ip_end, len(frame))]


def enumerate_flows(path: Path) -> list[dict]:
    """Bidirectional TCP flows of a pcap; orig = sender of the first SYN (without ACK)."""
    flows: dict[tuple, dict] = {}
    order: list[tuple] = []
    for linktype, frame in _pcap_packets(path):
        seg = _tcp_segment(linktype, frame)
        if seg is None:
            continue
        src, sport, dst, dport, flags, payload = seg
        a, b = (src, sport), (dst, dport)
        key = tuple(sorted((a, b)))
        fl = flows.get(key)
        if fl is None:
            fl = flows[key] = {"first": a, "syn_from": None, "pkts": {}, "bytes": {}, "head": {}}
            order.append(key)
        if (flags & 0x02) and not (flags & 0x10) and fl["syn_from"] is None:
            fl["syn_from"] = a
        fl["pkts"][a] = fl["pkts"].get(a, 0) + 1
        fl["bytes"][a] = fl["bytes"].get(a, 0) + len(payload)
        if payload and len(fl["head"].get(a, b"")) < 64:
            fl["head"][a] = fl["head"].get(a, b"") + payload[:64]
    out = []
    for key in order:
        fl = flows[key]
        orig = fl["syn_from"] or fl["first"]
        resp = key[0] if key[1] == orig else key[1]
        out.append({
            "orig_h": orig[0], "orig_p": orig[1], "resp_h": resp[0], "resp_p": resp[1],
            "has_syn": fl["syn_from"] is not None,
            "orig_pkts": fl["pkts"].get(orig, 0), "resp_pkts": fl["pkts"].get(resp, 0),
            "orig_bytes": fl["bytes"].get(orig, 0), "resp_bytes": fl["bytes"].get(resp, 0),
            "orig_head": fl["head"].get(orig, b""), "resp_head": fl["head"].get(resp, b""),
        })
    return out


# --------------------------------------------------------------------------
# realistic mixed content (guest memory image, ssh payload)

_WORDS = ("the migration of instance to destination host completed within the "
          "configured downtime while memory pages were copied over the network and "
          "the scheduler selected a compute node with enough free capacity for the "
          "flavor requested by the tenant because the placement service reported "
          "available resources after the periodic audit of the hypervisor inventory").split()


def _config_text(rng: random.Random, n: int) -> bytes:
    """nova.conf / libvirt.conf / log-like lines until n bytes."""
    out = io.StringIO()
    sections = ["DEFAULT", "libvirt", "database", "api", "keystone_authtoken", "oslo_messaging_rabbit",
                "scheduler", "placement", "neutron", "glance", "cinder", "vnc", "serial_console"]
    keys = ["live_migration_uri", "live_migration_inbound_addr", "live_migration_with_native_tls",
            "connection", "transport_url", "auth_url", "memcached_servers", "region_name",
            "project_domain_name", "user_domain_name", "cpu_mode", "virt_type", "images_type",
            "max_concurrent_live_migrations", "live_migration_permit_auto_converge",
            "live_migration_timeout_action", "debug", "log_dir", "state_path", "my_ip"]
    while out.tell() < n:
        r = rng.random()
        if r < 0.35:
            out.write(f"\n[{rng.choice(sections)}]\n")
            for _ in range(rng.randint(3, 12)):
                k = rng.choice(keys)
                v = rng.choice([
                    f"{rng.randint(1, 65535)}", "true", "false", "qemu+tls://%s/system",
                    f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
                    f"mysql+pymysql://nova:{rng.getrandbits(48):x}@controller/nova",
                    f"rabbit://openstack:{rng.getrandbits(40):x}@controller:5672/",
                    "/var/lib/nova", "/var/log/nova", "host-model", "kvm"])
                out.write(f"{k} = {v}\n")
        elif r < 0.7:
            ts = f"2024-0{rng.randint(1, 9)}-{rng.randint(10, 28)} {rng.randint(10, 23)}:{rng.randint(10, 59)}:{rng.randint(10, 59)}.{rng.randint(100, 999)}"
            msg = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 20)))
            out.write(f"{ts} {rng.randint(1000, 99999)} INFO nova.compute.manager "
                      f"[req-{rng.getrandbits(128):032x}] [instance: {rng.getrandbits(64):016x}] {msg}\n")
        else:
            words = [rng.choice(_WORDS) for _ in range(rng.randint(30, 90))]
            para = " ".join(words).capitalize() + ".\n\n"
            out.write(textwrap.fill(para, 72) + "\n\n")
    return out.getvalue().encode()[:n]


def _text_pool() -> bytes:
    parts = []
    for name in ("GPL-3", "LGPL-2.1", "Apache-2.0", "GFDL-1.3", "MPL-2.0", "Artistic"):
        p = Path("/usr/share/common-licenses") / name
        if p.exists():
            parts.append(p.read_bytes())
    for p in sorted(Path("/etc").glob("*.conf")):
        with contextlib.suppress(OSError):
            parts.append(p.read_bytes())
    return b"\n".join(parts)


def _elf_text(path: Path) -> bytes:
    """The .text section of an ELF64 file (b'' if it cannot be found)."""
    try:
        data = path.read_bytes()
    except OSError:
        return b""
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return b""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if not shoff or shstrndx >= shnum:
        return b""
    def sh(i):
        return struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)
    stroff = sh(shstrndx)[4]
    for i in range(shnum):
        name, _t, _f, _a, off, size, *_ = sh(i)
        end = data.index(b"\0", stroff + name)
        if data[stroff + name:end] == b".text":
            return data[off:off + size]
    return b""


def _code_pool() -> bytes:
    parts = []
    for name in ("qemu-img", "ssh", "curl", "tcpdump", "openssl", "certtool", "bash", "ls", "tar", "gzip"):
        p = shutil.which(name)
        if p:
            t = _elf_text(Path(os.path.realpath(p)))
            if t:
                parts.append(t)
    if not parts:
        raise RuntimeError("found no ELF .text sections in /usr/bin")
    return b"".join(parts)


def mixed_content(size: int, seed: int, text_frac=0.42, code_frac=0.33, zero_frac=0.17) -> bytes:
    """size bytes of page-aligned segments of text, code, zero runs and random bytes."""
    rng = random.Random(seed)
    text_pool, code_pool = _text_pool(), _code_pool()
    plan = {"text": text_frac, "code": code_frac, "zero": zero_frac,
            "random": 1.0 - text_frac - code_frac - zero_frac}
    budget = {k: int(size * v) for k, v in plan.items()}
    segs = []
    for kind, total in budget.items():
        left = total
        while left >= PAGE:
            n = min(left, PAGE * rng.randint(1, 16 if kind != "zero" else 32))
            left -= n
            segs.append((kind, n))
    rng.shuffle(segs)
    out = bytearray()
    for kind, n in segs:
        if kind == "zero":
            out += bytes(n)
        elif kind == "random":
            out += rng.randbytes(n)
        elif kind == "code":
            off = rng.randrange(0, max(1, len(code_pool) - n))
            out += code_pool[off:off + n].ljust(n, b"\x90")
        else:
            if rng.random() < 0.5 and len(text_pool) > n:
                off = rng.randrange(0, len(text_pool) - n)
                out += text_pool[off:off + n]
            else:
                out += _config_text(rng, n)
    return bytes(out[:size]).ljust(size, b"\0")


# --------------------------------------------------------------------------
# QEMU / QMP


class QMP:
    def __init__(self, path: Path, proc: subprocess.Popen, timeout: float = 30) -> None:
        wait_for(path.exists, f"QMP socket {path}", timeout, proc)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock.connect(str(path))
                break
            except (ConnectionRefusedError, FileNotFoundError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.sock.settimeout(60)
        self.f = self.sock.makefile("rwb")
        greeting = self._read()
        if "QMP" not in greeting:
            raise RuntimeError(f"unexpected QMP greeting {greeting}")
        self.cmd("qmp_capabilities")

    def _read(self) -> dict:
        line = self.f.readline()
        if not line:
            raise RuntimeError("QMP connection closed")
        return json.loads(line)

    def cmd(self, execute: str, **arguments):
        msg = {"execute": execute}
        if arguments:
            msg["arguments"] = arguments
        self.f.write(json.dumps(msg).encode() + b"\n")
        self.f.flush()
        while True:
            r = self._read()
            if "return" in r:
                return r["return"]
            if "error" in r:
                raise RuntimeError(f"QMP {execute} {arguments}: {r['error']}")
            # asynchronous events are ignored

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.f.close()
            self.sock.close()


def qemu_argv(qmp: Path, image: Path, extra: list[str]) -> list[str]:
    return [QEMU, "-machine", "pc,accel=tcg", "-m", "32", "-display", "none",
            "-nodefaults", "-no-user-config", "-S",
            "-qmp", f"unix:{qmp},server=on,wait=off",
            "-device", f"loader,file={image},addr=0x100000,force-raw=on",
            *extra]


def make_qemu_tls_creds(d: Path) -> None:
    """CA + server + client certificates for QEMU's tls-creds-x509 (certtool)."""
    def tmpl(name, body):
        p = d / f"{name}.info"
        p.write_text(textwrap.dedent(body))
        return str(p)
    def key(name):
        run(["certtool", "--generate-privkey", "--key-type", "rsa", "--bits", "2048",
             "--outfile", str(d / name)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    key("ca-key.pem")
    run(["certtool", "--generate-self-signed", "--load-privkey", str(d / "ca-key.pem"),
         "--template", tmpl("ca", """\
            cn = inspector test migration CA
            ca
            cert_signing_key
            expiration_days = 3650
            """), "--outfile", str(d / "ca-cert.pem")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for role, purpose, extra in (("server", "tls_www_server", "dns_name = localhost\nip_address = 127.0.0.1\n"),
                                 ("client", "tls_www_client", "")):
        key(f"{role}-key.pem")
        body = (f"organization = inspector test\ncn = {'localhost' if role == 'server' else 'migration-source'}\n"
                f"{extra}{purpose}\nencryption_key\nsigning_key\nexpiration_days = 3650\n")
        run(["certtool", "--generate-certificate", "--load-privkey", str(d / f"{role}-key.pem"),
             "--load-ca-certificate", str(d / "ca-cert.pem"), "--load-ca-privkey", str(d / "ca-key.pem"),
             "--template", tmpl(role, body), "--outfile", str(d / f"{role}-cert.pem")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def qemu_migration(tmp: Path, raw: Path, port: int, *, tls: bool = False, multifd: str | None = None,
                   channels: int = 2) -> dict:
    ensure_free(port)
    image = tmp / "guest-ram.img"
    image.write_bytes(mixed_content(3 << 20, seed=0x51455654))
    src_extra, dst_extra = [], ["-incoming", "defer"]
    if tls:
        creds = tmp / "pki"
        creds.mkdir()
        make_qemu_tls_creds(creds)
        src_extra += ["-object", f"tls-creds-x509,id=tls0,dir={creds},endpoint=client,verify-peer=on"]
        dst_extra += ["-object", f"tls-creds-x509,id=tls0,dir={creds},endpoint=server,verify-peer=on"]
    dst_sock, src_sock = tmp / "dst.qmp", tmp / "src.qmp"
    dst_log, src_log = open(tmp / "dst.log", "wb"), open(tmp / "src.log", "wb")
    dst = PROCS.start("qemu-dst", qemu_argv(dst_sock, image, dst_extra), stdout=dst_log, stderr=subprocess.STDOUT)
    src = PROCS.start("qemu-src", qemu_argv(src_sock, image, src_extra), stdout=src_log, stderr=subprocess.STDOUT)
    qd = qs = None
    try:
        qd, qs = QMP(dst_sock, dst), QMP(src_sock, src)
        for q, side in ((qd, "dst"), (qs, "src")):
            if multifd:
                q.cmd("migrate-set-capabilities", capabilities=[{"capability": "multifd", "state": True}])
                q.cmd("migrate-set-parameters", **{"multifd-channels": channels,
                                                   "multifd-compression": multifd})
            if tls:
                params = {"tls-creds": "tls0"}
                if side == "src":
                    params["tls-hostname"] = "localhost"
                q.cmd("migrate-set-parameters", **params)
        uri = f"tcp:{LOOPBACK}:{port}"
        with Capture(raw, port):
            qd.cmd("migrate-incoming", uri=uri)
            wait_for(lambda: listening(port), f"destination listening on {port}", 30, dst)
            qs.cmd("migrate", uri=uri)
            deadline = time.monotonic() + 120
            while True:
                st = qs.cmd("query-migrate")
                if st.get("status") == "completed":
                    break
                if st.get("status") in ("failed", "cancelled"):
                    raise RuntimeError(f"migration failed: {st}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"migration timed out: {st}")
                time.sleep(0.1)
            wait_for(lambda: qd.cmd("query-migrate").get("status") == "completed",
                     "destination to complete", 60, dst)
            stats = st.get("ram", {})
            for q in (qs, qd):
                with contextlib.suppress(Exception):
                    q.cmd("quit")
            for p in (src, dst):
                p.wait(30)
        return {"transferred": stats.get("transferred"), "normal_pages": stats.get("normal"),
                "duplicate_pages": stats.get("duplicate"), "total_ram": stats.get("total")}
    except Exception:
        for name in ("src.log", "dst.log"):
            with contextlib.suppress(Exception):
                log(f"{name}: {(tmp / name).read_text(errors='replace')[-2000:]}")
        raise
    finally:
        for q in (qs, qd):
            if q:
                q.close()
        PROCS.stop(src)
        PROCS.stop(dst)
        dst_log.close()
        src_log.close()


# --------------------------------------------------------------------------
# SSH


def ssh_bulk(tmp: Path, raw: Path, port: int) -> dict:
    ensure_free(port)
    created_privsep = False
    if not Path("/run/sshd").is_dir():        # sshd refuses to start without it
        os.makedirs("/run/sshd", 0o755)
        created_privsep = True
    try:
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "inspector-host",
             "-f", str(tmp / "host_ed25519")])
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "inspector-client",
             "-f", str(tmp / "client_ed25519")])
        shutil.copyfile(tmp / "client_ed25519.pub", tmp / "authorized_keys")
        (tmp / "sshd_config").write_text(textwrap.dedent(f"""\
            Port {port}
            ListenAddress {LOOPBACK}
            HostKey {tmp}/host_ed25519
            PidFile {tmp}/sshd.pid
            AuthorizedKeysFile {tmp}/authorized_keys
            PubkeyAuthentication yes
            PasswordAuthentication no
            KbdInteractiveAuthentication no
            PermitRootLogin prohibit-password
            StrictModes no
            UsePAM no
            X11Forwarding no
            PrintMotd no
            Compression no
            LogLevel ERROR
            """))
        payload = tmp / "payload.bin"
        payload.write_bytes(mixed_content(2 << 20, seed=0x53534821))
        sshd_log = open(tmp / "sshd.log", "wb")
        sshd = PROCS.start("sshd", ["/usr/sbin/sshd", "-D", "-e", "-f", str(tmp / "sshd_config")],
                           stdout=sshd_log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: listening(port), f"sshd listening on {port}", 20, sshd)
            with Capture(raw, port):
                with open(payload, "rb") as stdin:
                    run(["ssh", "-F", "/dev/null", "-p", str(port), "-i", str(tmp / "client_ed25519"),
                         "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
                         "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                         "-o", "LogLevel=ERROR", "-o", "Compression=no",
                         f"root@{LOOPBACK}", "cat > /dev/null"], stdin=stdin, timeout=120)
        except Exception:
            log("sshd.log: " + (tmp / "sshd.log").read_text(errors="replace")[-2000:])
            raise
        finally:
            PROCS.stop(sshd)
            sshd_log.close()
        return {"payload_bytes": payload.stat().st_size}
    finally:
        if created_privsep:
            with contextlib.suppress(OSError):
                os.rmdir("/run/sshd")


# --------------------------------------------------------------------------
# HTTP(S) JSON API

API_SERVER = r'''
"""A small OpenStack-compute-like JSON API (stdlib http.server)."""
import json, random, ssl, sys, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def servers(n, seed):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        sid = str(uuid.UUID(int=rng.getrandbits(128)))
        host = "compute-%02d" % rng.randint(1, 40)
        out.append({
            "id": sid, "name": "vm-%s-%04d" % (rng.choice(["web", "db", "cache", "batch", "ci"]), i),
            "status": rng.choice(["ACTIVE", "ACTIVE", "ACTIVE", "SHUTOFF", "MIGRATING"]),
            "tenant_id": "%032x" % rng.getrandbits(128), "user_id": "%032x" % rng.getrandbits(128),
            "metadata": {"owner": rng.choice(["alice", "bob", "ops"]), "env": rng.choice(["prod", "staging"])},
            "hostId": "%056x" % rng.getrandbits(224),
            "image": {"id": str(uuid.UUID(int=rng.getrandbits(128))), "links": [{"rel": "bookmark",
                      "href": "http://127.0.0.1/compute/images/%032x" % rng.getrandbits(128)}]},
            "flavor": {"vcpus": rng.choice([1, 2, 4, 8]), "ram": rng.choice([2048, 4096, 8192]),
                       "disk": rng.choice([20, 40, 80]), "ephemeral": 0, "swap": 0,
                       "original_name": rng.choice(["m1.small", "m1.medium", "m1.large"])},
            "created": "2024-05-%02dT%02d:%02d:%02dZ" % (rng.randint(1, 28), rng.randint(0, 23),
                                                        rng.randint(0, 59), rng.randint(0, 59)),
            "updated": "2024-06-%02dT%02d:%02d:%02dZ" % (rng.randint(1, 28), rng.randint(0, 23),
                                                        rng.randint(0, 59), rng.randint(0, 59)),
            "addresses": {"private": [{"version": 4, "addr": "10.0.%d.%d" % (rng.randint(0, 255), rng.randint(2, 254)),
                                       "OS-EXT-IPS:type": "fixed",
                                       "OS-EXT-IPS-MAC:mac_addr": "fa:16:3e:%02x:%02x:%02x" % tuple(rng.randbytes(3))}]},
            "accessIPv4": "", "accessIPv6": "",
            "links": [{"rel": "self", "href": "http://127.0.0.1/compute/v2.1/servers/" + sid}],
            "OS-DCF:diskConfig": "MANUAL", "progress": 0, "OS-EXT-AZ:availability_zone": "nova",
            "config_drive": "", "key_name": rng.choice(["ops-key", "ci-key", None]),
            "OS-SRV-USG:launched_at": "2024-05-01T10:00:00.000000", "OS-SRV-USG:terminated_at": None,
            "OS-EXT-SRV-ATTR:host": host, "OS-EXT-SRV-ATTR:hypervisor_hostname": host + ".example.org",
            "OS-EXT-SRV-ATTR:instance_name": "instance-%08x" % i,
            "OS-EXT-STS:task_state": None, "OS-EXT-STS:vm_state": "active", "OS-EXT-STS:power_state": 1,
            "os-extended-volumes:volumes_attached": [{"id": str(uuid.UUID(int=rng.getrandbits(128))),
                                                      "delete_on_termination": False}],
            "security_groups": [{"name": "default"}],
            "description": None, "locked": False, "tags": [], "trusted_image_certificates": None,
            "host_status": "UP",
        })
    return out

def flavors():
    out = []
    for i, (name, vcpus, ram, disk) in enumerate([("m1.tiny", 1, 512, 1), ("m1.small", 1, 2048, 20),
            ("m1.medium", 2, 4096, 40), ("m1.large", 4, 8192, 80), ("m1.xlarge", 8, 16384, 160),
            ("c1.compute", 16, 32768, 40), ("r1.memory", 8, 65536, 80), ("g1.gpu", 8, 32768, 200)]):
        out.append({"id": str(i + 1), "name": name, "vcpus": vcpus, "ram": ram, "disk": disk,
                    "OS-FLV-EXT-DATA:ephemeral": 0, "swap": "", "rxtx_factor": 1.0,
                    "os-flavor-access:is_public": True, "description": None,
                    "extra_specs": {"hw:cpu_policy": "shared", "hw:mem_page_size": "small"},
                    "links": [{"rel": "self", "href": "http://127.0.0.1/compute/v2.1/flavors/%d" % (i + 1)}]})
    return out

def catalog():
    svcs = [("compute", "nova", 8774, "/compute/v2.1"), ("identity", "keystone", 5000, "/identity"),
            ("image", "glance", 9292, "/image"), ("network", "neutron", 9696, "/networking"),
            ("placement", "placement", 8778, "/placement"), ("volumev3", "cinderv3", 8776, "/volume/v3")]
    return [{"type": t, "name": n, "id": uuid.uuid5(uuid.NAMESPACE_DNS, n).hex,
             "endpoints": [{"interface": iface, "region": "RegionOne", "region_id": "RegionOne",
                            "url": "http://127.0.0.1:%d%s" % (p, path), "id": uuid.uuid5(uuid.NAMESPACE_DNS, n + iface).hex}
                           for iface in ("public", "internal", "admin")]} for t, n, p, path in svcs]

TOKEN = "gAAAAABm" + "Q7xR2k9vLmN4pT8wYz3cVbH6jF1sD5aG0eUiO" * 3

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "openstack-api/1.0"
    sys_version = ""

    def log_message(self, *a):
        pass

    def send_json(self, code, obj, extra=()):
        body = json.dumps(obj, indent=1).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("x-openstack-request-id", "req-%s" % uuid.uuid4())
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(n) or b"{}")

    def do_GET(self):
        path, _, query = self.path.partition("?")
        q = dict(kv.split("=", 1) for kv in query.split("&") if "=" in kv)
        if path == "/compute/v2.1/servers/detail":
            self.send_json(200, {"servers": servers(int(q.get("limit", 20)), 7)})
        elif path == "/compute/v2.1/flavors/detail":
            self.send_json(200, {"flavors": flavors()})
        elif path.startswith("/compute/v2.1/os-migrations"):
            rng = random.Random(3)
            self.send_json(200, {"migrations": [{"id": i, "status": rng.choice(["completed", "running", "error"]),
                "migration_type": "live-migration", "source_compute": "compute-%02d" % rng.randint(1, 40),
                "dest_compute": "compute-%02d" % rng.randint(1, 40),
                "instance_uuid": str(uuid.UUID(int=rng.getrandbits(128))),
                "created_at": "2024-06-01T12:00:00.000000"} for i in range(int(q.get("limit", 10)))]})
        else:
            self.send_json(404, {"itemNotFound": {"code": 404, "message": "not found"}})

    def do_POST(self):
        req = self.body()
        if self.path == "/identity/v3/auth/tokens":
            self.send_json(201, {"token": {"methods": ["password"], "expires_at": "2024-06-02T12:00:00.000000Z",
                                          "project": {"id": "%032x" % 1, "name": "admin", "domain": {"id": "default"}},
                                          "roles": [{"name": "admin"}, {"name": "member"}, {"name": "reader"}],
                                          "catalog": catalog(), "user": {"id": "%032x" % 2, "name": "admin"}}},
                           extra=[("X-Subject-Token", TOKEN)])
        elif self.path == "/compute/v2.1/servers":
            srv = servers(1, 11)[0]
            srv.update({"name": req.get("server", {}).get("name", "x"), "status": "BUILD",
                        "adminPass": "Xq7%s" % uuid.uuid4().hex[:12]})
            self.send_json(202, {"server": srv})
        elif self.path.endswith("/action"):
            self.send_response(202)
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_json(404, {"itemNotFound": {"code": 404, "message": "not found"}})

port = int(sys.argv[1])
httpd = ThreadingHTTPServer(("127.0.0.1", port), H)
if len(sys.argv) > 3:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[2], sys.argv[3])
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
httpd.serve_forever()
'''

AUTH_TOKEN = "gAAAAABmQ7xR2k9vLmN4pT8wYz3cVbH6jF1sD5aG0eUiOqW3eR5tY7uI9oP1aS3dF5gH7jK9lZ2xC4vB6nM8"


def http_api(tmp: Path, raw: Path, port: int, *, tls: bool) -> dict:
    ensure_free(port)
    script = tmp / "api_server.py"
    script.write_text(API_SERVER)
    argv = [sys.executable, str(script), str(port)]
    if tls:
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
             "-keyout", str(tmp / "key.pem"), "-out", str(tmp / "cert.pem"),
             "-subj", "/O=inspector test/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        argv += [str(tmp / "cert.pem"), str(tmp / "key.pem")]
    scheme = "https" if tls else "http"
    base = f"{scheme}://{LOOPBACK}:{port}"
    common = ["-sS", "--fail", "-o", "/dev/null", "-H", "Accept: application/json",
              "-H", "User-Agent: python-novaclient", *(["-k"] if tls else [])]
    tok = ["-H", f"X-Auth-Token: {AUTH_TOKEN}"]
    post = ["-H", "Content-Type: application/json", "-X", "POST", "--data-binary"]
    auth_body = json.dumps({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": "s3cr3t-Adm1n-pw"}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    create_body = json.dumps({"server": {"name": "vm-web-new", "imageRef": "70a599e0-31e7-49b7-b260-868f441e862b",
                                         "flavorRef": "3", "networks": [{"uuid": "ff608d40-75e9-48cb-b745-77bb55b5eaf2"}],
                                         "metadata": {"owner": "alice"}, "key_name": "ops-key"}})
    migrate_body = json.dumps({"os-migrateLive": {"host": "compute-07", "block_migration": "auto"}})
    big = 160 if tls else 50       # ~2 KB of JSON per server: ~320 KB / ~100 KB
    sessions = [
        # 1: keystone token request (password in the JSON body)
        [*common, *post, auth_body, f"{base}/identity/v3/auth/tokens"],
        # 2: listing calls reusing one connection (curl --next keeps it alive)
        [*common, *tok, f"{base}/compute/v2.1/servers/detail?limit={big}",
         "--next", *common, *tok, f"{base}/compute/v2.1/flavors/detail",
         "--next", *common, *tok, f"{base}/compute/v2.1/os-migrations?limit=25"],
        # 3: create a server, then live-migrate one
        [*common, *tok, *post, create_body, f"{base}/compute/v2.1/servers",
         "--next", *common, *tok, *post, migrate_body,
         f"{base}/compute/v2.1/servers/9f2b6a4e-7d1c-4b3a-8e5f-0c1d2e3f4a5b/action"],
    ]
    srv_log = open(tmp / "server.log", "wb")
    srv = PROCS.start("api-server", argv, stdout=srv_log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: listening(port), f"API server listening on {port}", 20, srv)
        with Capture(raw, port):
            for s in sessions:
                run(["curl", *s], timeout=60)
                time.sleep(0.2)
    except Exception:
        log("server.log: " + (tmp / "server.log").read_text(errors="replace")[-2000:])
        raise
    finally:
        PROCS.stop(srv)
        srv_log.close()
    return {"curl_sessions": len(sessions)}


# --------------------------------------------------------------------------
# capture definitions and labelling

QEVM = b"QEVM"
MULTIFD_MAGIC = b"\x11\x22\x33\x44"


def label_qemu_plain(fl):
    if fl["orig_head"].startswith(QEVM):
        return "plaintext", "qemu-migration", "main migration channel, QEVM stream in clear (RAM pages + device state)"
    return None


def label_qemu_tls(fl):
    return "encrypted", "tls", "QEMU native TLS migration channel (GnuTLS, x509, client certificate)"


def label_multifd(fl):
    if fl["orig_head"].startswith(QEVM):
        return ("plaintext", "qemu-migration",
                "multifd main channel: QEVM header, section headers and device state in clear")
    if fl["orig_head"].startswith(MULTIFD_MAGIC):
        return ("compressed", "qemu-multifd",
                "multifd channel: 0x11223344 packet headers in clear, RAM pages zstd-compressed")
    return None


def label_ssh(fl):
    return "encrypted", "ssh", "OpenSSH session; bulk data copied over 'cat > /dev/null' after NEWKEYS"


def label_http(fl):
    return "plaintext", "http", "HTTP/1.1 JSON API calls with X-Auth-Token in clear"


def label_https(fl):
    return "encrypted", "tls", "HTTPS JSON API calls (TLS, Python ssl server, curl -k)"


CAPTURES = [
    {"name": "qemu-plain", "file": "qemu-plain.pcap.gz", "port": 49152,
     "description": "QEMU 7.2 precopy live migration of a paused 32 MiB TCG guest holding ~3 MiB of mixed "
                    "content (text, x86 code, zero runs, random), plaintext over tcp:127.0.0.1:49152",
     "make": lambda tmp, raw, port: qemu_migration(tmp, raw, port),
     "label": label_qemu_plain, "programs": ["qemu", "tcpdump"]},
    {"name": "qemu-tls", "file": "qemu-tls.pcap.gz", "port": 49153,
     "description": "The same QEMU migration with native TLS (tls-creds-x509, verify-peer=on, tls-hostname "
                    "localhost; certificates made with certtool)",
     "make": lambda tmp, raw, port: qemu_migration(tmp, raw, port, tls=True),
     "label": label_qemu_tls, "programs": ["qemu", "certtool", "tcpdump"]},
    {"name": "qemu-multifd-zstd", "file": "qemu-multifd-zstd.pcap.gz", "port": 49154,
     "description": "The same QEMU migration with capability multifd, multifd-channels 2, "
                    "multifd-compression zstd: one main flow plus one flow per channel, all to port 49154",
     "make": lambda tmp, raw, port: qemu_migration(tmp, raw, port, multifd="zstd", channels=2),
     "label": label_multifd, "programs": ["qemu", "tcpdump"]},
    {"name": "ssh-bulk", "file": "ssh-bulk.pcap.gz", "port": 2222,
     "description": "Private OpenSSH sshd on 127.0.0.1:2222 (own host key, generated authorized key, no "
                    "password auth); ssh copies 2 MiB of mixed data to 'cat > /dev/null'",
     "make": ssh_bulk, "label": label_ssh, "programs": ["sshd", "ssh", "tcpdump"]},
    {"name": "http-api", "file": "http-api.pcap", "port": 8774,
     "description": "Plaintext HTTP/1.1 JSON API (Python http.server, OpenStack-compute-like) on "
                    "127.0.0.1:8774; curl does a keystone-style token POST, GETs (~100 KB server list) "
                    "and POSTs with JSON bodies, with X-Auth-Token headers; 3 connections",
     "make": lambda tmp, raw, port: http_api(tmp, raw, port, tls=False),
     "label": label_http, "programs": ["python3", "curl", "tcpdump"]},
    {"name": "https-api", "file": "https-api.pcap.gz", "port": 13774,
     "description": "The same JSON API over TLS (Python ssl, self-signed certificate made with openssl) on "
                    "127.0.0.1:13774, curl -k; the server list response is ~320 KB; 3 connections",
     "make": lambda tmp, raw, port: http_api(tmp, raw, port, tls=True),
     "label": label_https, "programs": ["python3", "curl", "openssl", "tcpdump"]},
]


def program_versions() -> dict:
    def first_line(argv, stream="stdout", pick=None):
        try:
            r = subprocess.run(argv, capture_output=True, text=True, timeout=20)
            text = (r.stdout or "") + (r.stderr or "")
            lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
            if pick:
                lines = [ln for ln in lines if pick in ln] or lines
            return lines[0] if lines else None
        except (OSError, subprocess.SubprocessError):
            return None
    return {
        "qemu": first_line([QEMU, "--version"]),
        "tcpdump": first_line(["tcpdump", "--version"]),
        "libpcap": first_line(["tcpdump", "--version"], pick="libpcap"),
        "sshd": first_line(["/usr/sbin/sshd", "-V"], pick="OpenSSH"),
        "ssh": first_line(["ssh", "-V"]),
        "certtool": first_line(["certtool", "--version"]),
        "openssl": first_line(["openssl", "version"]),
        "curl": first_line(["curl", "--version"]),
        "python3": f"Python {sys.version.split()[0]}",
    }


def build(spec: dict, versions: dict) -> dict:
    name, port = spec["name"], spec["port"]
    dest = HERE / spec["file"]
    log(f"{name}: capturing tcp port {port} -> {dest.name}")
    with tempfile.TemporaryDirectory(prefix=f"inspector-{name}-") as td:
        tmp = Path(td)
        raw = tmp / "capture.pcap"
        extra = spec["make"](tmp, raw, port)
        if not raw.exists() or raw.stat().st_size <= 24:
            raise RuntimeError(f"{name}: tcpdump wrote nothing")
        write_output(raw, dest)
    flows = enumerate_flows(dest)
    if not flows:
        raise RuntimeError(f"{name}: no TCP flows captured")
    out_flows = []
    for fl in flows:
        if LOOPBACK not in (fl["orig_h"], fl["resp_h"]) or fl["resp_p"] != port:
            raise RuntimeError(f"{name}: unexpected flow {fl['orig_h']}:{fl['orig_p']} -> "
                               f"{fl['resp_h']}:{fl['resp_p']} (background traffic?); rerun")
        if fl["orig_bytes"] == 0 and fl["resp_bytes"] == 0:
            truth, proto, note = "unknown", "none", "TCP connection that carried no payload"
        else:
            lab = spec["label"](fl)
            if lab is None:
                raise RuntimeError(f"{name}: cannot label flow {fl['orig_p']}->{fl['resp_p']} "
                                   f"starting {fl['orig_head'][:16]!r}")
            truth, proto, note = lab
        out_flows.append({
            "proto": "tcp", "orig_h": fl["orig_h"], "orig_p": fl["orig_p"],
            "resp_h": fl["resp_h"], "resp_p": fl["resp_p"],
            "truth": truth, "protocol": proto, "note": note,
            "orig_pkts": fl["orig_pkts"], "resp_pkts": fl["resp_pkts"],
            "orig_bytes": fl["orig_bytes"], "resp_bytes": fl["resp_bytes"],
        })
    data = dest.read_bytes()
    entry = {
        "name": name, "file": spec["file"], "description": spec["description"],
        "made_with": {k: versions.get(k) for k in spec["programs"] + (["libpcap"] if "tcpdump" in spec["programs"] else [])},
        "port": port,
        "file_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
        "details": extra,
        "flows": out_flows,
    }
    if "qemu" in spec["programs"]:
        entry["made_with"]["machine"] = "pc (i440fx), accel=tcg, -m 32, paused (-S), ~3 MiB mixed image via -device loader"
    summary = ", ".join(f"{f['orig_p']}->{f['resp_p']} {f['truth']} ({f['orig_bytes']}/{f['resp_bytes']} B)"
                        for f in out_flows)
    log(f"{name}: {len(data)} bytes, {len(out_flows)} flow(s): {summary}")
    return entry


def load_manifest() -> dict:
    if MANIFEST.exists():
        with contextlib.suppress(ValueError):
            m = json.loads(MANIFEST.read_text())
            if m.get("schema_version") == 1:
                return m
    return {"schema_version": 1, "captures": []}


def save_manifest(entries: dict[str, dict]) -> None:
    order = [s["name"] for s in CAPTURES]
    caps = [entries[n] for n in order if n in entries]
    caps += [e for n, e in entries.items() if n not in order]   # entries added by later tooling
    m = {"schema_version": 1,
         "description": "Ground-truth labels for the captures in this directory; regenerate with "
                        "'sudo python3 captures/make_captures.py'. orig = sender of the first SYN; "
                        "*_bytes are TCP payload bytes.",
         "captures": caps}
    tmp = MANIFEST.with_name("manifest.json.tmp")
    tmp.write_text(json.dumps(m, indent=2) + "\n")
    os.replace(tmp, MANIFEST)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", action="append", metavar="NAME",
                    help="make only this capture (repeatable): " + ", ".join(s["name"] for s in CAPTURES))
    ap.add_argument("--list", action="store_true", help="list the captures and exit")
    args = ap.parse_args()
    if args.list:
        for s in CAPTURES:
            print(f"{s['name']:20} {s['file']:28} port {s['port']}")
        return 0
    names = {s["name"] for s in CAPTURES}
    for n in args.only or []:
        if n not in names:
            ap.error(f"unknown capture {n!r}; choose from {', '.join(sorted(names))}")
    if os.geteuid() != 0:
        print("make_captures.py: must run as root (tcpdump, sshd)", file=sys.stderr)
        return 2
    missing = [p for p in (QEMU, "tcpdump", "/usr/sbin/sshd", "ssh", "ssh-keygen", "certtool", "openssl", "curl")
               if shutil.which(p) is None]
    if missing:
        print(f"make_captures.py: missing programs: {' '.join(missing)}", file=sys.stderr)
        return 2

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    versions = program_versions()
    entries = {e["name"]: e for e in load_manifest().get("captures", [])}
    selected = [s for s in CAPTURES if not args.only or s["name"] in args.only]
    failed = []
    try:
        for spec in selected:
            try:
                entries[spec["name"]] = build(spec, versions)
                save_manifest(entries)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # keep going with the other captures
                log(f"{spec['name']}: FAILED: {e}")
                failed.append(spec["name"])
            finally:
                PROCS.stop_all()
    finally:
        PROCS.stop_all()
    if failed:
        log(f"failed: {', '.join(failed)} (their previous files and manifest entries are kept)")
        return 1
    log("done")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt as e:
        log(f"interrupted ({e or 'SIGINT'}); every started process was stopped")
        sys.exit(130)
