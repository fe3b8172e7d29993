#!/usr/bin/env python3
"""Regenerate the ground-truth capture corpus in captures/ from REAL programs.

Every capture is made by running real, unmodified programs on the loopback
interface (127.0.0.1 only), or between two network namespaces that this
script creates and removes (joined by a veth pair), while tcpdump records
them; nothing is synthesised packet by packet.  Afterwards the flows are
enumerated from the capture itself (a small stdlib classic-pcap reader) and
each one is labelled with its true class in manifest.json.

Captures (name: what runs, server port(s)):

  qemu-plain         QEMU live migration, plaintext main channel       49152
  qemu-tls           QEMU live migration with native TLS (x509)        49153
  qemu-multifd-zstd  QEMU multifd migration, 2 channels, zstd          49154
  ssh-bulk           private sshd + ssh copying ~2 MiB of mixed data   2222
  http-api           http.server JSON API (OpenStack-like) + curl      8774
  https-api          the same over TLS (Python ssl) + curl -k          13774
  qemu-multifd-none  QEMU multifd migration, 2 channels, no compression 49155
  qemu-multifd-zlib  QEMU multifd migration, 2 channels, zlib          49156
  qemu-xbzrle-running  RUNNING guest dirtying memory, xbzrle, several
                     dirty passes                                      49157
  qemu-nbd-plain     storage migration: NBD drive-mirror + RAM         10809, 49158
  qemu-nbd-tls       the same with TLS on the NBD export and the RAM   10810, 49159
  qemu-ssh-tunnel    plaintext migration through ssh -L to a private
                     sshd: SSH flow + both loopback legs               2223, 49162, 49163
  qemu-plain-mtu1500 plaintext migration between two namespaces, veth
                     MTU 1500, offloads off (10.47.0.1 -> 10.47.0.2)    49164
  qemu-tls-mtu1500   the same with native TLS                          49165
  libvirt-tunnelled-tcp  virsh migrate --live --p2p --tunnelled between
                     two libvirtd in two namespaces (10.48.0.1 -> .2)  16509
  libvirt-tunnelled-tls  the same over qemu+tls                        16514

derive_variants.py (run afterwards) derives mid-flow, VLAN-tagged and
snaplen-cut variants of some of these into variants/.

QEMU guests are tiny, paused (-S, never booted) TCG machines with 32 MiB of
RAM; a ~3 MiB image of mixed content (English/config text, x86 machine code
cut from /usr/bin binaries, zero runs, random bytes) is loaded into guest RAM
at 1 MiB with `-device loader,...,force-raw=on`, so the migration stream
carries realistic memory pages.  Both QEMUs are driven over QMP unix sockets;
the destination uses `-incoming defer` + `migrate-incoming`.

Certificates, keys, the sshd configuration and all scratch files live in a
temporary directory that is removed afterwards; every process started here is
terminated (by its pid) before the script exits.  Network namespaces are
created with unique names, only for the capture that needs them, and deleted
afterwards; the libvirtd instances bind-mount their directories inside a
private mount namespace of their own, so no mount outlives them.

Programs needed (Debian bookworm packages):
  qemu-system-x86 (qemu-system-x86_64), qemu-utils, tcpdump,
  openssh-server (sshd), openssh-client (ssh, ssh-keygen),
  gnutls-bin (certtool, for the QEMU TLS credentials), openssl (HTTPS cert),
  curl, python3 (standard library only; no third-party Python packages),
  iproute2 (ip), ethtool, util-linux (unshare), and for the libvirt captures
  libvirt-daemon-system + libvirt-clients (libvirtd, virsh).

Usage (as root, because of tcpdump, sshd, network namespaces and libvirtd):
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


def listening(port: int, host: str = LOOPBACK, pid: int | None = None) -> bool:
    """True if something listens on host:port (read /proc; no probe connection).

    With pid, the table of that process's network namespace is read
    (/proc/PID/net/tcp), e.g. for a QEMU started inside a namespace.
    """
    want = f"{struct.unpack('<I', socket.inet_aton(host))[0]:08X}:{port:04X}"
    table = f"/proc/{pid}/net/tcp" if pid else "/proc/net/tcp"
    with open(table) as f:
        next(f)
        for line in f:
            parts = line.split()
            if parts[1] in (want, f"00000000:{port:04X}") and parts[3] == "0A":
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

    bpf replaces the 'tcp port N' filter (several ports); with netns, tcpdump
    runs inside that network namespace (ip netns exec) on interface iface.
    """

    def __init__(self, raw: Path, port: int, *, bpf: str | None = None, iface: str = "lo",
                 netns: str | None = None) -> None:
        self.raw, self.port = raw, port
        self.bpf = bpf or f"tcp port {port}"
        self.iface, self.netns = iface, netns
        self.proc: subprocess.Popen | None = None
        self.stderr = b""

    def __enter__(self) -> "Capture":
        self.proc = PROCS.start(
            "tcpdump",
            [*netns_exec(self.netns),
             "tcpdump", "-i", self.iface, "-s", "0", "-U", "-n", "-Z", "root", "-B", "131072",
             "-w", str(self.raw), self.bpf],
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


# --------------------------------------------------------------------------
# network namespaces (only ones created here; removed afterwards)


def netns_exec(ns: str | None) -> list[str]:
    """argv prefix that runs a program inside network namespace ns (none: as is)."""
    return ["ip", "netns", "exec", ns] if ns else []


class NetnsPair:
    """Two network namespaces joined by a veth pair, removed again on exit.

    Each namespace gets its loopback up and one end of the veth pair with the
    given address (a /24 that exists only between these two namespaces) and
    MTU.  With offload=False, TSO/GSO/GRO and checksum offload are switched off
    on both ends (ethtool -K), so the TCP stack cuts real MSS-sized segments
    and tcpdump sees Ethernet-sized frames with valid checksums.  Nothing is
    created in the root namespace: both ends are made directly inside the
    namespaces.  Processes started inside must be stopped before exit.
    """

    def __init__(self, tag: str, addrs: tuple[str, str], mtu: int = 1500, offload: bool = False) -> None:
        suffix = f"{os.getpid() % 100000}"
        self.ns = (f"insp-{tag}-a-{suffix}", f"insp-{tag}-b-{suffix}")
        self.dev = (f"insp{suffix}a", f"insp{suffix}b")      # <= 15 characters
        self.addrs, self.mtu, self.offload = addrs, mtu, offload
        self.created: list[str] = []

    def __enter__(self) -> "NetnsPair":
        try:
            for ns in self.ns:
                if Path("/run/netns", ns).exists():
                    raise RuntimeError(f"network namespace {ns} already exists")
                run(["ip", "netns", "add", ns])
                self.created.append(ns)
            run(["ip", "link", "add", self.dev[0], "netns", self.ns[0], "type", "veth",
                 "peer", "name", self.dev[1], "netns", self.ns[1]])
            for ns, dev, addr in zip(self.ns, self.dev, self.addrs):
                ip = ["ip", "-n", ns]
                run([*ip, "link", "set", "lo", "up"])
                run([*ip, "link", "set", dev, "mtu", str(self.mtu)])
                run([*ip, "addr", "add", f"{addr}/24", "dev", dev])
                if not self.offload:
                    run([*netns_exec(ns), "ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off",
                         "tx", "off", "rx", "off"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                run([*ip, "link", "set", dev, "up"])
            wait_for(lambda: all(b"state UP" in run(["ip", "-n", ns, "link", "show", dev],
                                                    capture_output=True).stdout
                                 for ns, dev in zip(self.ns, self.dev)),
                     "veth pair up", 10)
            return self
        except BaseException:
            self.__exit__()
            raise

    def __exit__(self, *exc) -> None:
        for ns in reversed(self.created):     # deleting a namespace also deletes its veth end
            with contextlib.suppress(Exception):
                run(["ip", "netns", "del", ns], stderr=subprocess.DEVNULL)
        self.created.clear()

    def offloads(self) -> dict:
        """ethtool -k state of the first veth end (for the manifest)."""
        out = run([*netns_exec(self.ns[0]), "ethtool", "-k", self.dev[0]], capture_output=True, text=True).stdout
        keys = ("tcp-segmentation-offload", "generic-segmentation-offload", "generic-receive-offload",
                "tx-checksumming", "rx-checksumming")
        return {k: v.split()[0] for line in out.splitlines() if ":" in line
                for k, v in [line.strip().split(":", 1)] if k in keys}


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


def _pcap_packets_ts(path: Path):
    """Yield (linktype, ts_sec, ts_frac, orig_len, frame) from a classic pcap (optionally gzip'd)."""
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
            ts_s, ts_f, incl, orig = rec.unpack(h)
            frame = f.read(incl)
            if len(frame) < incl:
                return
            yield linktype, ts_s, ts_f, orig, frame


def _pcap_packets(path: Path):
    """Yield (linktype, frame) from a classic pcap (optionally gzip'd); stdlib only."""
    for linktype, _s, _f, _orig, frame in _pcap_packets_ts(path):
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


def qemu_argv(qmp: Path, image: Path, extra: list[str], *, paused: bool = True,
              netns: str | None = None) -> list[str]:
    return [*netns_exec(netns),
            QEMU, "-machine", "pc,accel=tcg", "-m", "32", "-display", "none",
            "-nodefaults", "-no-user-config", *(["-S"] if paused else []),
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


def qemu_tls_objects(tmp: Path) -> tuple[list[str], list[str]]:
    """certtool credentials in tmp/pki and the -object arguments for source, destination."""
    creds = tmp / "pki"
    creds.mkdir()
    make_qemu_tls_creds(creds)
    return (["-object", f"tls-creds-x509,id=tls0,dir={creds},endpoint=client,verify-peer=on"],
            ["-object", f"tls-creds-x509,id=tls0,dir={creds},endpoint=server,verify-peer=on"])


class QemuPair:
    """A source and a -incoming defer destination QEMU, both driven over QMP.

    Started on enter, stopped (by pid) on exit; on an error the tails of both
    QEMU logs are printed.  src_ns/dst_ns start a side inside a network
    namespace; src_paused=False lets the source guest run (boot).
    """

    def __init__(self, tmp: Path, image: Path, src_extra: list[str], dst_extra: list[str], *,
                 src_ns: str | None = None, dst_ns: str | None = None,
                 src_paused: bool = True, dst_paused: bool = True) -> None:
        self.tmp, self.image = tmp, image
        self.args = (src_extra, dst_extra, src_ns, dst_ns, src_paused, dst_paused)
        self.src = self.dst = self.qs = self.qd = None
        self.dst_ns = dst_ns
        self.logs: list = []

    def __enter__(self) -> "QemuPair":
        src_extra, dst_extra, src_ns, dst_ns, src_paused, dst_paused = self.args
        tmp = self.tmp
        try:
            dst_log, src_log = open(tmp / "dst.log", "wb"), open(tmp / "src.log", "wb")
            self.logs = [dst_log, src_log]
            self.dst = PROCS.start("qemu-dst", qemu_argv(tmp / "dst.qmp", self.image,
                                                         ["-incoming", "defer", *dst_extra],
                                                         paused=dst_paused, netns=dst_ns),
                                   stdout=dst_log, stderr=subprocess.STDOUT)
            self.src = PROCS.start("qemu-src", qemu_argv(tmp / "src.qmp", self.image, src_extra,
                                                         paused=src_paused, netns=src_ns),
                                   stdout=src_log, stderr=subprocess.STDOUT)
            self.qd, self.qs = QMP(tmp / "dst.qmp", self.dst), QMP(tmp / "src.qmp", self.src)
            return self
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise

    def __exit__(self, exc_type, *_exc) -> None:
        if exc_type is not None:
            for name in ("src.log", "dst.log"):
                with contextlib.suppress(Exception):
                    log(f"{name}: {(self.tmp / name).read_text(errors='replace')[-2000:]}")
        for q in (self.qs, self.qd):
            if q:
                q.close()
        for p in (self.src, self.dst):
            if p:
                PROCS.stop(p)
        for f in self.logs:
            f.close()

    def both(self, execute: str, **arguments) -> None:
        for q in (self.qd, self.qs):
            q.cmd(execute, **arguments)

    def migrate(self, uri: str, port: int, *, host: str = LOOPBACK, src_uri: str | None = None,
                timeout: float = 120, poll=None) -> dict:
        """migrate-incoming + migrate, poll until both sides completed; the source's last status.

        poll(status) is called on every query-migrate of the source (e.g. to
        relax downtime-limit after some dirty passes)."""
        self.qd.cmd("migrate-incoming", uri=uri)
        wait_for(lambda: listening(port, host, self.dst.pid if self.dst_ns else None),
                 f"destination listening on {host}:{port}", 30, self.dst)
        self.qs.cmd("migrate", uri=src_uri or uri)
        deadline = time.monotonic() + timeout
        while True:
            st = self.qs.cmd("query-migrate")
            if st.get("status") == "completed":
                break
            if st.get("status") in ("failed", "cancelled"):
                raise RuntimeError(f"migration failed: {st}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"migration timed out: {st}")
            if poll:
                poll(st)
            time.sleep(0.1)
        wait_for(lambda: self.qd.cmd("query-migrate").get("status") == "completed",
                 "destination to complete", 60, self.dst)
        return st

    def quit(self) -> None:
        for q in (self.qs, self.qd):
            with contextlib.suppress(Exception):
                q.cmd("quit")
        for p in (self.src, self.dst):
            p.wait(30)


def ram_stats(st: dict) -> dict:
    ram = st.get("ram", {})
    return {"transferred": ram.get("transferred"), "normal_pages": ram.get("normal"),
            "duplicate_pages": ram.get("duplicate"), "total_ram": ram.get("total")}


def qemu_migration(tmp: Path, raw: Path, port: int, *, tls: bool = False, multifd: str | None = None,
                   channels: int = 2, image_mib: int = 3, net: "NetnsPair | None" = None) -> dict:
    """Paused-guest precopy migration; with net, between the two namespaces of a veth pair."""
    if net is None:
        ensure_free(port)
    image = tmp / "guest-ram.img"
    image.write_bytes(mixed_content(image_mib << 20, seed=0x51455654))
    src_extra, dst_extra = qemu_tls_objects(tmp) if tls else ([], [])
    host = net.addrs[1] if net else LOOPBACK
    cap = (Capture(raw, port, iface=net.dev[0], netns=net.ns[0]) if net else Capture(raw, port))
    with QemuPair(tmp, image, src_extra, dst_extra,
                  src_ns=net.ns[0] if net else None, dst_ns=net.ns[1] if net else None) as qp:
        for q, side in ((qp.qd, "dst"), (qp.qs, "src")):
            if multifd:
                q.cmd("migrate-set-capabilities", capabilities=[{"capability": "multifd", "state": True}])
                q.cmd("migrate-set-parameters", **{"multifd-channels": channels,
                                                   "multifd-compression": multifd})
            if tls:
                params = {"tls-creds": "tls0"}
                if side == "src":
                    params["tls-hostname"] = "localhost"
                q.cmd("migrate-set-parameters", **params)
        with cap:
            st = qp.migrate(f"tcp:{host}:{port}", port, host=host)
            qp.quit()
        out = ram_stats(st)
        if net:
            out.update({"mtu": net.mtu, "interface": "veth, source end (inside the source namespace)",
                        "addresses": {"source": net.addrs[0], "destination": net.addrs[1]},
                        "offloads": net.offloads()})
        return out


def qemu_mtu1500(tmp: Path, raw: Path, port: int, *, tls: bool) -> dict:
    with NetnsPair("mig", MTU_NET_ADDRS, mtu=1500) as net:
        return qemu_migration(tmp, raw, port, tls=tls, image_mib=1, net=net)


# -- a running guest that keeps dirtying memory (for XBZRLE) ---------------


def dirtying_boot_sector(first_seg: int = 0x2000, end_seg: int = 0x6000) -> bytes:
    """A 512-byte real-mode boot sector that sweeps guest RAM for ever.

    Each sweep writes a 16-bit sweep counter at offsets 0, 0x400, 0x800 and
    0xC00 of every 4 KiB page in [first_seg*16, end_seg*16), so every page
    changes a little on each sweep (what XBZRLE encodes as small deltas),
    then toggles CR0.WP: under TCG a real-mode guest never flushes its TLB,
    so without the flush migration would stop seeing its writes after the
    first pass (the mov to CR0 with a changed WP bit makes QEMU flush it).

        cli; xor ax,ax; mov ss,ax; mov sp,0x7c00; xor bp,bp
    outer: inc bp; mov dx,first_seg
    seg:   mov es,dx; xor di,di
    page:  mov [es:di],bp; mov [es:di+0x400],bp; mov [es:di+0x800],bp; mov [es:di+0xc00],bp
           add di,0x1000; jnz page
           add dx,0x1000; cmp dx,end_seg; jb seg
           mov eax,cr0; xor eax,0x10000; mov cr0,eax
           mov cx,0x4000; wait: loop wait
           jmp outer
    """
    w = lambda v: struct.pack("<H", v)
    code = bytearray()
    code += b"\xFA" + b"\x31\xC0" + b"\x8E\xD0" + b"\xBC" + w(0x7C00) + b"\x31\xED"
    outer = len(code)
    code += b"\x45" + b"\xBA" + w(first_seg)
    seg = len(code)
    code += b"\x8E\xC2" + b"\x31\xFF"
    page = len(code)
    code += b"\x26\x89\x2D"
    for disp in (0x400, 0x800, 0xC00):
        code += b"\x26\x89\xAD" + w(disp)
    code += b"\x81\xC7" + w(0x1000)
    code += b"\x75" + struct.pack("b", page - (len(code) + 2))
    code += b"\x81\xC2" + w(0x1000) + b"\x81\xFA" + w(end_seg)
    code += b"\x72" + struct.pack("b", seg - (len(code) + 2))
    code += b"\x0F\x20\xC0" + b"\x66\x35" + struct.pack("<I", 0x10000) + b"\x0F\x22\xC0"
    code += b"\xB9" + w(0x4000)
    wait = len(code)
    code += b"\xE2" + struct.pack("b", wait - (len(code) + 2))
    code += b"\xEB" + struct.pack("b", outer - (len(code) + 2))
    assert len(code) <= 510
    return bytes(code).ljust(510, b"\0") + b"\x55\xAA"


def qemu_xbzrle_running(tmp: Path, raw: Path, port: int) -> dict:
    """Precopy migration of a RUNNING guest with capability xbzrle.

    The guest boots the boot sector above from an IDE disk (each side has its
    own copy); 256 KiB of mixed content is loaded at 0x20000 and dirtied by
    it, the 1 MiB mixed image sits at 1 MiB as usual.  max-bandwidth and a
    1 ms downtime-limit keep the migration iterating; once enough dirty passes
    (and XBZRLE cache hits) have been seen, downtime-limit is raised so that
    it converges.
    """
    ensure_free(port)
    image = tmp / "guest-ram.img"
    image.write_bytes(mixed_content(1 << 20, seed=0x51455654))
    low = tmp / "lowmem.img"
    low.write_bytes(mixed_content(256 << 10, seed=0x58425A52, zero_frac=0.0))
    boot = dirtying_boot_sector()
    for side in ("src", "dst"):
        (tmp / f"boot-{side}.img").write_bytes(boot.ljust(64 << 10, b"\0"))
    def extra(side):
        return ["-drive", f"file={tmp / f'boot-{side}.img'},format=raw,if=ide,index=0",
                "-device", f"loader,file={low},addr=0x20000,force-raw=on"]
    min_passes, min_hits = 8, 200
    relaxed = []
    with QemuPair(tmp, image, extra("src"), extra("dst"), src_paused=True, dst_paused=False) as qp:
        qp.both("migrate-set-capabilities", capabilities=[{"capability": "xbzrle", "state": True}])
        qp.qs.cmd("migrate-set-parameters", **{"max-bandwidth": 4 << 20, "downtime-limit": 1,
                                               "xbzrle-cache-size": 4 << 20})
        qp.qs.cmd("cont")
        time.sleep(2.0)                 # BIOS + boot sector: the guest is sweeping by now
        if qp.qs.cmd("query-status").get("status") != "running":
            raise RuntimeError("source guest is not running")

        def relax(st):
            ram, xb = st.get("ram", {}), st.get("xbzrle-cache", {})
            if (not relaxed and ram.get("dirty-sync-count", 0) >= min_passes
                    and xb.get("pages", 0) >= min_hits):
                qp.qs.cmd("migrate-set-parameters", **{"downtime-limit": 2000})
                relaxed.append(dict(ram))
        with Capture(raw, port):
            st = qp.migrate(f"tcp:{LOOPBACK}:{port}", port, timeout=180, poll=relax)
            dst_status = qp.qd.cmd("query-status").get("status")
            qp.quit()
    xb, ram = st.get("xbzrle-cache", {}), st.get("ram", {})
    if not xb.get("pages"):
        raise RuntimeError(f"no XBZRLE-encoded pages: the guest did not keep dirtying memory ({st})")
    out = ram_stats(st)
    out.update({"dirty_sync_count": ram.get("dirty-sync-count"), "xbzrle_pages": xb.get("pages"),
                "xbzrle_bytes": xb.get("bytes"), "xbzrle_cache_miss": xb.get("cache-miss"),
                "xbzrle_overflow": xb.get("overflow"), "dirty_pages_rate": ram.get("dirty-pages-rate"),
                "max_bandwidth": 4 << 20, "downtime_limit_ms": "1, raised to 2000 after "
                f"{min_passes} dirty passes", "destination_status_after": dst_status})
    return out


# -- storage migration over NBD ---------------------------------------------


def qemu_nbd_migration(tmp: Path, raw: Path, port: int, *, nbd_port: int, tls: bool) -> dict:
    """Non-shared-storage migration the way libvirt does it: destination NBD
    server exporting its (empty) disk writable, source mirrors its disk into
    it, then the RAM migration, then the mirror is cancelled (ready: the
    target is in sync) and the NBD server stopped."""
    ensure_free(port)
    ensure_free(nbd_port)
    image = tmp / "guest-ram.img"
    image.write_bytes(mixed_content(1 << 20, seed=0x51455654))
    disk_mib, data_mib = 4, 2
    rawdisk = tmp / "disk-content.raw"
    rawdisk.write_bytes(mixed_content(data_mib << 20, seed=0x4E424421).ljust(disk_mib << 20, b"\0"))
    run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", str(rawdisk), str(tmp / "src-disk.qcow2")])
    run(["qemu-img", "create", "-q", "-f", "qcow2", str(tmp / "dst-disk.qcow2"), f"{disk_mib}M"])
    src_extra, dst_extra = qemu_tls_objects(tmp) if tls else ([], [])
    def disk(side):
        return ["-blockdev", f"driver=file,node-name={side}-file,filename={tmp / f'{side}-disk.qcow2'}",
                "-blockdev", f"driver=qcow2,node-name=disk0,file={side}-file",
                "-device", "virtio-blk-pci,drive=disk0,id=vda"]
    with QemuPair(tmp, image, src_extra + disk("src"), dst_extra + disk("dst")) as qp:
        if tls:
            qp.qd.cmd("migrate-set-parameters", **{"tls-creds": "tls0"})
            qp.qs.cmd("migrate-set-parameters", **{"tls-creds": "tls0", "tls-hostname": "localhost"})
        bpf = f"tcp port {port} or tcp port {nbd_port}"
        with Capture(raw, port, bpf=bpf):
            addr = {"type": "inet", "data": {"host": LOOPBACK, "port": str(nbd_port)}}
            qp.qd.cmd("nbd-server-start", addr=addr, **({"tls-creds": "tls0"} if tls else {}))
            qp.qd.cmd("nbd-server-add", device="disk0", name="disk0", writable=True)
            if tls:
                qp.qs.cmd("blockdev-add", **{"driver": "nbd", "node-name": "mirror-target",
                                             "server": {"type": "inet", "host": LOOPBACK,
                                                        "port": str(nbd_port)},
                                             "export": "disk0", "tls-creds": "tls0",
                                             "tls-hostname": "localhost"})
                qp.qs.cmd("blockdev-mirror", **{"job-id": "mirror0", "device": "disk0",
                                                "target": "mirror-target", "sync": "full"})
            else:
                qp.qs.cmd("drive-mirror", **{"job-id": "mirror0", "device": "disk0",
                                             "target": f"nbd:{LOOPBACK}:{nbd_port}:exportname=disk0",
                                             "format": "raw", "mode": "existing", "sync": "full"})
            def job():
                jobs = [j for j in qp.qs.cmd("query-block-jobs") if j.get("device") == "mirror0"]
                return jobs[0] if jobs else None
            wait_for(lambda: (job() or {}).get("ready"), "drive mirror to be ready", 60, qp.src)
            mirrored = job()
            st = qp.migrate(f"tcp:{LOOPBACK}:{port}", port)
            qp.qs.cmd("block-job-cancel", device="mirror0")
            wait_for(lambda: job() is None, "mirror job to end", 30, qp.src)
            if tls:
                qp.qs.cmd("blockdev-del", **{"node-name": "mirror-target"})
            qp.qd.cmd("nbd-server-stop")
            time.sleep(0.5)
            qp.quit()
    # the destination's disk must now hold the source's data
    cmp = run(["qemu-img", "compare", "-q", str(tmp / "src-disk.qcow2"), str(tmp / "dst-disk.qcow2")],
              check=False)
    if cmp.returncode != 0:
        raise RuntimeError("destination disk differs from the source disk after the mirror")
    out = ram_stats(st)
    out.update({"nbd_port": nbd_port, "disk": f"qcow2, {disk_mib} MiB virtual, {data_mib} MiB mixed data",
                "mirror_bytes": mirrored.get("offset"), "mirror_len": mirrored.get("len"),
                "disks_identical_after": True})
    return out


# --------------------------------------------------------------------------
# SSH


@contextlib.contextmanager
def private_sshd(tmp: Path, port: int, address: str = LOOPBACK, netns: str | None = None):
    """A private sshd -D on address:port, inside netns when given (own host
    key, generated client key, no password auth, AllowTcpForwarding); yields
    the ssh argv prefix (without the destination)."""
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
            ListenAddress {address}
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
            AllowTcpForwarding yes
            PrintMotd no
            Compression no
            LogLevel ERROR
            """))
        sshd_log = open(tmp / "sshd.log", "wb")
        sshd = PROCS.start("sshd", [*netns_exec(netns), "/usr/sbin/sshd", "-D", "-e", "-f", str(tmp / "sshd_config")],
                           stdout=sshd_log, stderr=subprocess.STDOUT)
        try:
            wait_for(lambda: listening(port, address, sshd.pid), f"sshd listening on {port}", 20, sshd)
            yield ["ssh", "-F", "/dev/null", "-p", str(port), "-i", str(tmp / "client_ed25519"),
                   "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=no",
                   "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
                   "-o", "LogLevel=ERROR", "-o", "Compression=no"]
        except Exception:
            log("sshd.log: " + (tmp / "sshd.log").read_text(errors="replace")[-2000:])
            raise
        finally:
            PROCS.stop(sshd)
            sshd_log.close()
    finally:
        if created_privsep:
            with contextlib.suppress(OSError):
                os.rmdir("/run/sshd")


def ssh_bulk(tmp: Path, raw: Path, port: int) -> dict:
    ensure_free(port)
    payload = tmp / "payload.bin"
    payload.write_bytes(mixed_content(2 << 20, seed=0x53534821))
    with private_sshd(tmp, port) as ssh:
        with Capture(raw, port):
            with open(payload, "rb") as stdin:
                run([*ssh, f"root@{LOOPBACK}", "cat > /dev/null"], stdin=stdin, timeout=120)
    return {"payload_bytes": payload.stat().st_size}


def qemu_ssh_tunnel(tmp: Path, raw: Path, port: int, *, ssh_port: int, fwd_port: int) -> dict:
    """Plaintext QEMU migration carried by an OpenSSH port-forward:
    source QEMU -> 127.0.0.1:fwd_port (ssh -L) == SSH 127.0.0.1:ssh_port ==>
    sshd -> 127.0.0.1:port (destination QEMU).  The capture holds all three
    TCP connections: both loopback legs carry the QEVM stream in clear."""
    for p in (port, ssh_port, fwd_port):
        ensure_free(p)
    image = tmp / "guest-ram.img"
    image.write_bytes(mixed_content(1 << 20, seed=0x51455654))
    bpf = f"tcp port {port} or tcp port {ssh_port} or tcp port {fwd_port}"
    with private_sshd(tmp, ssh_port) as ssh, QemuPair(tmp, image, [], []) as qp:
        with Capture(raw, port, bpf=bpf):
            tunnel = PROCS.start("ssh-tunnel", [*ssh, "-N", "-o", "ExitOnForwardFailure=yes",
                                                "-L", f"{LOOPBACK}:{fwd_port}:{LOOPBACK}:{port}",
                                                f"root@{LOOPBACK}"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                wait_for(lambda: listening(fwd_port), f"ssh -L listening on {fwd_port}", 20, tunnel)
                st = qp.migrate(f"tcp:{LOOPBACK}:{port}", port, src_uri=f"tcp:{LOOPBACK}:{fwd_port}")
                qp.quit()
                time.sleep(0.5)
            finally:
                PROCS.stop(tunnel)
    out = ram_stats(st)
    out.update({"ssh_port": ssh_port, "forward_port": fwd_port, "migration_port": port,
                "path": f"qemu-src -> {LOOPBACK}:{fwd_port} (ssh -L) => sshd {LOOPBACK}:{ssh_port} "
                        f"-> qemu-dst {LOOPBACK}:{port}"})
    return out


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
# libvirt tunnelled migration between two libvirtd in two network namespaces

LIBVIRT_NET_ADDRS = ("10.48.0.1", "10.48.0.2")   # only inside our own namespaces
LIBVIRT_DOMAIN = "inspector-vm"
LIBVIRT_DIRS = {"etc": "/etc/libvirt", "lib": "/var/lib/libvirt", "log": "/var/log/libvirt",
                "cache": "/var/cache/libvirt"}

# Runs as: ip netns exec NS unshare --mount --uts --propagation private sh -c SCRIPT sh ROOT HOST
# A private mount namespace: ROOT/{etc,lib,log,cache} are bind-mounted over the
# host's libvirt directories and ROOT/run over /run (so /run/libvirt, and no
# host D-Bus), the UTS hostname is set; then exec libvirtd (same pid, so it is
# stopped by its pid).  All mounts die with the namespace.
LIBVIRTD_WRAPPER = r'''
set -e
root=$1
mount --bind "$root/run" /run
mkdir -p /run/libvirt
for pair in etc:/etc/libvirt lib:/var/lib/libvirt log:/var/log/libvirt cache:/var/cache/libvirt; do
    mount --bind "$root/${pair%%:*}" "${pair#*:}"
done
hostname "$2"
exec libvirtd --listen --pid-file "$root/libvirtd.pid" --config /etc/libvirt/libvirtd.conf
'''


def make_libvirt_tls_creds(d: Path, server_ip: str) -> None:
    """CA, server certificate for server_ip and a client certificate (certtool),
    laid out as libvirt's pkipath expects: cacert.pem, servercert.pem,
    serverkey.pem, clientcert.pem, clientkey.pem."""
    make_qemu_tls_creds(d)           # same CA/server/client layout, then libvirt's names
    # the server certificate must name the address the client connects to
    body = (f"organization = inspector test\ncn = dst-host\nip_address = {server_ip}\n"
            "dns_name = dst-host\ntls_www_server\nencryption_key\nsigning_key\nexpiration_days = 3650\n")
    (d / "server-ip.info").write_text(body)
    run(["certtool", "--generate-certificate", "--load-privkey", str(d / "server-key.pem"),
         "--load-ca-certificate", str(d / "ca-cert.pem"), "--load-ca-privkey", str(d / "ca-key.pem"),
         "--template", str(d / "server-ip.info"), "--outfile", str(d / "server-cert.pem")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for src, dst in (("ca-cert.pem", "cacert.pem"), ("server-cert.pem", "servercert.pem"),
                     ("server-key.pem", "serverkey.pem"), ("client-cert.pem", "clientcert.pem"),
                     ("client-key.pem", "clientkey.pem")):
        shutil.copyfile(d / src, d / dst)


class Libvirtd:
    """One libvirtd in its own network, mount and UTS namespace, with its own
    config/run/state/log/cache directories under root and its own host_uuid."""

    def __init__(self, root: Path, netns: str, hostname: str, host_uuid: str, *,
                 listen: tuple[str, str] | None = None, pki: Path | None = None) -> None:
        self.root, self.netns, self.hostname = root, netns, hostname
        for sub in ("etc", "run", "lib", "log", "cache", "etc/qemu"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        conf = [f'host_uuid = "{host_uuid}"', 'auth_unix_rw = "none"', 'auth_unix_ro = "none"',
                'unix_sock_group = "root"', 'unix_sock_rw_perms = "0700"',
                'log_outputs = "3:file:/var/log/libvirt/libvirtd.log"',
                "keepalive_interval = 5"]
        if not listen:
            conf += ["listen_tcp = 0", "listen_tls = 0"]
        else:
            addr, kind = listen
            conf += [f'listen_addr = "{addr}"']
            if kind == "tcp":
                conf += ["listen_tcp = 1", "listen_tls = 0", 'tcp_port = "16509"', 'auth_tcp = "none"']
            else:
                conf += ["listen_tcp = 0", "listen_tls = 1", 'tls_port = "16514"', 'auth_tls = "none"',
                         f'ca_file = "{pki}/cacert.pem"', f'cert_file = "{pki}/servercert.pem"',
                         f'key_file = "{pki}/serverkey.pem"', "tls_no_verify_certificate = 0"]
        (root / "etc" / "libvirtd.conf").write_text("\n".join(conf) + "\n")
        (root / "etc" / "libvirt.conf").write_text("")
        # root-owned QEMU without cgroups, sandboxing namespaces, security
        # drivers or virtlogd: nothing here needs more than a plain process
        (root / "etc" / "qemu.conf").write_text(textwrap.dedent("""\
            user = "root"
            group = "root"
            dynamic_ownership = 0
            remember_owner = 0
            security_driver = "none"
            namespaces = [ ]
            cgroup_controllers = [ ]
            stdio_handler = "file"
            vnc_listen = "127.0.0.1"
            """))
        self.sock = root / "run" / "libvirt" / "libvirt-sock"
        self.uri = f"qemu:///system?socket={self.sock}"
        self.proc: subprocess.Popen | None = None
        self.log = None

    def start(self) -> None:
        self.log = open(self.root / "libvirtd.out", "wb")
        self.proc = PROCS.start(
            f"libvirtd-{self.hostname}",
            [*netns_exec(self.netns), "unshare", "--mount", "--uts", "--propagation", "private",
             "sh", "-c", LIBVIRTD_WRAPPER, "sh", str(self.root), self.hostname],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self.sock.exists, f"libvirtd {self.hostname} socket", 60, self.proc)
        wait_for(lambda: self.virsh("uri", check=False).returncode == 0,
                 f"libvirtd {self.hostname} answering", 60, self.proc)

    def virsh(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        return run(["virsh", "-q", "-c", self.uri, *args], check=check, capture_output=True, text=True,
                   timeout=timeout)

    def qemu_pids(self) -> list[int]:
        """pids of the QEMUs this libvirtd started (its own pid files)."""
        pids = []
        for f in (self.root / "run" / "libvirt" / "qemu").glob("*.pid"):
            with contextlib.suppress(ValueError, OSError):
                pids.append(int(f.read_text().strip()))
        return pids

    def stop(self) -> None:
        """Destroy its domains, stop libvirtd, then end any QEMU it left (by pid)."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                for name in self.virsh("list", "--name", check=False, timeout=30).stdout.split():
                    self.virsh("destroy", name, check=False, timeout=60)
        leftovers = self.qemu_pids()
        if self.proc is not None:
            PROCS.stop(self.proc, timeout=20)
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for pid in leftovers:
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError):
                if Path(f"/proc/{pid}").exists():
                    os.kill(pid, signal.SIGKILL)
        if self.log:
            self.log.close()

    def tail(self) -> str:
        parts = []
        for f in (self.root / "libvirtd.out", self.root / "log" / "libvirtd.log",
                  *sorted((self.root / "log" / "qemu").glob("*.log"))):
            with contextlib.suppress(OSError):
                parts.append(f"{f.name}: {f.read_text(errors='replace')[-1500:]}")
        return "\n".join(parts)


def libvirt_domain_xml(image: Path) -> str:
    return textwrap.dedent(f"""\
        <domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
          <name>{LIBVIRT_DOMAIN}</name>
          <uuid>6c1b5f0e-3a52-4f4e-9d8c-1b2a3c4d5e6f</uuid>
          <memory unit='MiB'>32</memory>
          <vcpu>1</vcpu>
          <os><type arch='x86_64' machine='pc'>hvm</type></os>
          <clock offset='utc'/>
          <on_poweroff>destroy</on_poweroff>
          <on_reboot>restart</on_reboot>
          <on_crash>destroy</on_crash>
          <devices>
            <emulator>{shutil.which(QEMU)}</emulator>
            <controller type='usb' model='none'/>
            <memballoon model='none'/>
          </devices>
          <qemu:commandline>
            <qemu:arg value='-device'/>
            <qemu:arg value='loader,file={image},addr=0x100000,force-raw=on'/>
          </qemu:commandline>
        </domain>
        """)


def libvirt_tunnelled(tmp: Path, raw: Path, port: int, *, tls: bool) -> dict:
    """virsh migrate --live --p2p --tunnelled from libvirtd A to libvirtd B
    (qemu+tcp://B/system on 16509, or qemu+tls://B/system on 16514); the QEMU
    stream travels inside the libvirt RPC connection as STREAM messages."""
    for prog in ("libvirtd", "virsh", "unshare"):
        if shutil.which(prog) is None:
            raise RuntimeError(f"{prog} not found (apt-get install libvirt-daemon-system libvirt-clients)")
    # the Debian qemu driver looks its default user up before reading qemu.conf
    if subprocess.run(["getent", "passwd", "libvirt-qemu"], stdout=subprocess.DEVNULL).returncode != 0:
        run(["useradd", "--system", "--no-create-home", "--home-dir", "/var/lib/libvirt",
             "--shell", "/usr/sbin/nologin", "libvirt-qemu"])
    image = tmp / "guest-ram.img"
    image.write_bytes(mixed_content(1 << 20, seed=0x51455654))
    pki = None
    if tls:
        pki = tmp / "pki"
        pki.mkdir()
        make_libvirt_tls_creds(pki, LIBVIRT_NET_ADDRS[1])
    scheme = "qemu+tls" if tls else "qemu+tcp"
    peer = f"{scheme}://{LIBVIRT_NET_ADDRS[1]}/system" + (f"?pkipath={pki}" if tls else "")
    with NetnsPair("lv", LIBVIRT_NET_ADDRS, mtu=1500) as net:
        src = Libvirtd(tmp / "lv-src", net.ns[0], "src-host", "4f1c7a4e-5b2d-4c3e-8f9a-0a1b2c3d4e51")
        dst = Libvirtd(tmp / "lv-dst", net.ns[1], "dst-host", "4f1c7a4e-5b2d-4c3e-8f9a-0a1b2c3d4e52",
                       listen=(LIBVIRT_NET_ADDRS[1], "tls" if tls else "tcp"), pki=pki)
        try:
            dst.start()
            src.start()
            wait_for(lambda: listening(port, LIBVIRT_NET_ADDRS[1], dst.proc.pid),
                     f"libvirtd listening on {LIBVIRT_NET_ADDRS[1]}:{port}", 30, dst.proc)
            (tmp / "domain.xml").write_text(libvirt_domain_xml(image))
            src.virsh("create", str(tmp / "domain.xml"))
            time.sleep(1.0)
            with Capture(raw, port, iface=net.dev[0], netns=net.ns[0]):
                r = src.virsh("migrate", "--live", "--p2p", "--tunnelled", LIBVIRT_DOMAIN, peer,
                              check=False, timeout=180)
                if r.returncode != 0:
                    raise RuntimeError(f"virsh migrate failed: {r.stderr.strip()}")
                state = dst.virsh("domstate", LIBVIRT_DOMAIN, check=False).stdout.strip()
                jobinfo = dst.virsh("domjobinfo", LIBVIRT_DOMAIN, "--completed", check=False).stdout
                src_left = src.virsh("list", "--all", "--name", check=False).stdout.split()
                dst.virsh("destroy", LIBVIRT_DOMAIN, check=False)
            if state != "running" or LIBVIRT_DOMAIN in src_left:
                raise RuntimeError(f"unexpected state after migration: dst {state!r}, src {src_left}")
            virsh_version = src.virsh("version", check=False).stdout.strip().splitlines()
        except Exception:
            for lv in (src, dst):
                log(f"{lv.hostname}: {lv.tail()}")
            raise
        finally:
            src.stop()
            dst.stop()
    job = {}
    for line in jobinfo.splitlines():
        k, _, v = line.partition(":")
        if v.strip():
            job[k.strip()] = v.strip()
    return {"virsh": f"virsh migrate --live --p2p --tunnelled {LIBVIRT_DOMAIN} "
                     f"{scheme}://{LIBVIRT_NET_ADDRS[1]}/system" + ("?pkipath=..." if tls else ""),
            "addresses": {"source": LIBVIRT_NET_ADDRS[0], "destination": LIBVIRT_NET_ADDRS[1]},
            "hostnames": {"source": "src-host", "destination": "dst-host"},
            "interface": "veth, source end (inside the source namespace), MTU 1500, offloads off",
            "domjobinfo_completed": job, "virsh_version": virsh_version}


# --------------------------------------------------------------------------
# capture definitions and labelling

QEVM = b"QEVM"
MTU_NET_ADDRS = ("10.47.0.1", "10.47.0.2")       # only inside our own namespaces
MULTIFD_MAGIC = b"\x11\x22\x33\x44"


def label_qemu_plain(fl):
    if fl["orig_head"].startswith(QEVM):
        return "plaintext", "qemu-migration", "main migration channel, QEVM stream in clear (RAM pages + device state)"
    return None


def label_qemu_tls(fl):
    return "encrypted", "tls", "QEMU native TLS migration channel (GnuTLS, x509, client certificate)"


def label_multifd(fl, compression: str = "zstd"):
    if fl["orig_head"].startswith(QEVM):
        return ("plaintext", "qemu-migration",
                "multifd main channel: QEVM header, section headers and device state in clear")
    if fl["orig_head"].startswith(MULTIFD_MAGIC):
        if compression == "none":
            return ("plaintext", "qemu-multifd",
                    "multifd channel: 0x11223344 packet headers in clear, raw 4 KiB RAM pages")
        return ("compressed", "qemu-multifd",
                f"multifd channel: 0x11223344 packet headers in clear, RAM pages {compression}-compressed")
    return None


def label_xbzrle(fl):
    if fl["orig_head"].startswith(QEVM):
        return ("plaintext", "qemu-migration",
                "main channel of a running guest with XBZRLE: full pages, then several dirty passes "
                "of XBZRLE deltas (page flag 0x40), all in clear")
    return None


NBD_MAGIC = b"NBDMAGIC"
TLS_HANDSHAKE = b"\x16\x03"


def label_nbd(fl, tls: bool):
    if fl["resp_head"].startswith(NBD_MAGIC):
        if tls:
            return ("encrypted", "tls",   # the session is TLS; the NBD STARTTLS before it is evidence
                    "NBD disk copy (drive mirror): NBDMAGIC/IHAVEOPT greeting and STARTTLS option in "
                    "clear, then TLS (GnuTLS, x509, client certificate) for all requests and disk data")
        return ("plaintext", "nbd",
                "NBD disk copy (drive-mirror): NBD_CMD_WRITE/WRITE_ZEROES requests with disk data in clear")
    if not tls and fl["orig_head"].startswith(QEVM):
        return ("plaintext", "qemu-migration", "RAM migration channel, QEVM stream in clear")
    if tls and fl["orig_head"].startswith(TLS_HANDSHAKE):
        return ("encrypted", "tls", "RAM migration channel, QEMU native TLS (GnuTLS, x509, client certificate)")
    return None


def label_ssh_tunnel(fl, ssh_port: int, fwd_port: int, mig_port: int):
    if fl["resp_p"] == ssh_port and fl["resp_head"].startswith(b"SSH-2.0-"):
        return ("encrypted", "ssh",
                f"OpenSSH connection carrying the port-forward (ssh -N -L {fwd_port}:127.0.0.1:{mig_port})")
    if fl["orig_head"].startswith(QEVM) and fl["resp_p"] == fwd_port:
        return ("plaintext", "qemu-migration",
                "loopback leg 1: source QEMU -> ssh -L listener, QEVM stream in clear")
    if fl["orig_head"].startswith(QEVM) and fl["resp_p"] == mig_port:
        return ("plaintext", "qemu-migration",
                "loopback leg 2: sshd -> destination QEMU, QEVM stream in clear")
    return None


def label_ssh(fl):
    return "encrypted", "ssh", "OpenSSH session; bulk data copied over 'cat > /dev/null' after NEWKEYS"


def label_http(fl):
    return "plaintext", "http", "HTTP/1.1 JSON API calls with X-Auth-Token in clear"


def label_https(fl):
    return "encrypted", "tls", "HTTPS JSON API calls (TLS, Python ssl server, curl -k)"


LIBVIRT_REMOTE_PROGRAM = b"\x20\x00\x80\x86"


def label_libvirt(fl, tls: bool):
    if tls and fl["orig_head"].startswith(TLS_HANDSHAKE):
        return ("encrypted", "tls",
                "libvirt RPC over TLS (16514) between the two libvirtd: tunnelled migration "
                "(the QEMU stream rides in STREAM messages inside TLS)")
    if not tls and fl["orig_head"][4:8] == LIBVIRT_REMOTE_PROGRAM:
        return ("plaintext", "libvirt-rpc",
                "libvirt RPC over plain TCP (16509) between the two libvirtd: tunnelled migration, "
                "STREAM messages (type 3) carry the QEVM stream in clear")
    return None


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
    {"name": "qemu-multifd-none", "file": "qemu-multifd-none.pcap.gz", "port": 49155,
     "description": "The same QEMU migration with capability multifd, multifd-channels 2, "
                    "multifd-compression none: one main flow plus one flow per channel (raw pages), "
                    "all to port 49155",
     "make": lambda tmp, raw, port: qemu_migration(tmp, raw, port, multifd="none", channels=2),
     "label": lambda fl: label_multifd(fl, "none"), "programs": ["qemu", "tcpdump"]},
    {"name": "qemu-multifd-zlib", "file": "qemu-multifd-zlib.pcap.gz", "port": 49156,
     "description": "The same QEMU migration with capability multifd, multifd-channels 2, "
                    "multifd-compression zlib: one main flow plus one flow per channel, all to port 49156",
     "make": lambda tmp, raw, port: qemu_migration(tmp, raw, port, multifd="zlib", channels=2),
     "label": lambda fl: label_multifd(fl, "zlib"), "programs": ["qemu", "tcpdump"]},
    {"name": "qemu-xbzrle-running", "file": "qemu-xbzrle-running.pcap.gz", "port": 49157,
     "description": "QEMU precopy migration of a RUNNING TCG guest that keeps dirtying 256 KiB of memory "
                    "(boot sector toggling CR0.WP per sweep), capability xbzrle, max-bandwidth 4 MiB/s, "
                    "downtime-limit 1 ms for several dirty passes, then 2000 ms to converge; "
                    "plaintext over tcp:127.0.0.1:49157",
     "make": qemu_xbzrle_running, "label": label_xbzrle, "programs": ["qemu", "tcpdump"],
     "machine": "pc (i440fx), accel=tcg, -m 32, RUNNING (boots a 512-byte boot sector from an IDE disk "
                "that rewrites 4 words in each page of 256 KiB mixed content at 0x20000 and toggles CR0.WP "
                "per sweep), ~1 MiB mixed image at 1 MiB via -device loader"},
    {"name": "qemu-nbd-plain", "file": "qemu-nbd-plain.pcap.gz", "port": 49158, "ports": [49158, 10809],
     "description": "QEMU storage (non-shared disk) migration: destination nbd-server-start 127.0.0.1:10809 "
                    "+ nbd-server-add disk0 writable, source drive-mirror sync=full to "
                    "nbd:127.0.0.1:10809:exportname=disk0 (4 MiB qcow2 with 2 MiB mixed data), then the "
                    "plaintext RAM migration over tcp:127.0.0.1:49158, then block-job-cancel + nbd-server-stop",
     "make": lambda tmp, raw, port: qemu_nbd_migration(tmp, raw, port, nbd_port=10809, tls=False),
     "label": lambda fl: label_nbd(fl, tls=False), "programs": ["qemu", "qemu-img", "tcpdump"],
     "machine": "pc (i440fx), accel=tcg, -m 32, paused (-S), virtio-blk disk (qcow2, 4 MiB, 2 MiB mixed "
                "data), ~1 MiB mixed image via -device loader"},
    {"name": "qemu-nbd-tls", "file": "qemu-nbd-tls.pcap.gz", "port": 49159, "ports": [49159, 10810],
     "description": "The same storage migration with TLS: nbd-server-start with tls-creds (127.0.0.1:10810), "
                    "source blockdev-add nbd node with tls-creds + blockdev-mirror, RAM migration with "
                    "native TLS over tcp:127.0.0.1:49159 (tls-creds-x509, verify-peer=on, certtool)",
     "make": lambda tmp, raw, port: qemu_nbd_migration(tmp, raw, port, nbd_port=10810, tls=True),
     "label": lambda fl: label_nbd(fl, tls=True), "programs": ["qemu", "qemu-img", "certtool", "tcpdump"],
     "machine": "pc (i440fx), accel=tcg, -m 32, paused (-S), virtio-blk disk (qcow2, 4 MiB, 2 MiB mixed "
                "data), ~1 MiB mixed image via -device loader"},
    {"name": "qemu-ssh-tunnel", "file": "qemu-ssh-tunnel.pcap.gz", "port": 49163,
     "ports": [49163, 2223, 49162],
     "description": "Plaintext QEMU migration carried through an OpenSSH port-forward: source migrate "
                    "tcp:127.0.0.1:49162 (ssh -N -L 127.0.0.1:49162:127.0.0.1:49163 to a private sshd on "
                    "127.0.0.1:2223), sshd connects to the destination's migrate-incoming tcp:127.0.0.1:49163; "
                    "the capture holds the SSH connection and both loopback legs",
     "make": lambda tmp, raw, port: qemu_ssh_tunnel(tmp, raw, port, ssh_port=2223, fwd_port=49162),
     "label": lambda fl: label_ssh_tunnel(fl, 2223, 49162, 49163),
     "programs": ["qemu", "sshd", "ssh", "tcpdump"],
     "machine": "pc (i440fx), accel=tcg, -m 32, paused (-S), ~1 MiB mixed image via -device loader"},
    {"name": "qemu-plain-mtu1500", "file": "qemu-plain-mtu1500.pcap.gz", "port": 49164,
     "hosts": list(MTU_NET_ADDRS),
     "description": "Plaintext QEMU migration between two network namespaces joined by a veth pair "
                    f"({MTU_NET_ADDRS[0]} -> {MTU_NET_ADDRS[1]}:49164), MTU 1500, TSO/GSO/GRO and checksum "
                    "offload off (ethtool -K), captured on the source's veth end: real 1514-byte frames",
     "make": lambda tmp, raw, port: qemu_mtu1500(tmp, raw, port, tls=False),
     "label": label_qemu_plain, "programs": ["qemu", "iproute2", "ethtool", "tcpdump"],
     "machine": "pc (i440fx), accel=tcg, -m 32, paused (-S), ~1 MiB mixed image via -device loader"},
    {"name": "qemu-tls-mtu1500", "file": "qemu-tls-mtu1500.pcap.gz", "port": 49165,
     "hosts": list(MTU_NET_ADDRS),
     "description": "QEMU native-TLS migration between two network namespaces joined by a veth pair "
                    f"({MTU_NET_ADDRS[0]} -> {MTU_NET_ADDRS[1]}:49165), MTU 1500, offloads off, captured on "
                    "the source's veth end (tls-creds-x509, verify-peer=on, tls-hostname localhost)",
     "make": lambda tmp, raw, port: qemu_mtu1500(tmp, raw, port, tls=True),
     "label": label_qemu_tls, "programs": ["qemu", "certtool", "iproute2", "ethtool", "tcpdump"],
     "machine": "pc (i440fx), accel=tcg, -m 32, paused (-S), ~1 MiB mixed image via -device loader"},
    {"name": "libvirt-tunnelled-tcp", "file": "libvirt-tunnelled-tcp.pcap.gz", "port": 16509,
     "hosts": list(LIBVIRT_NET_ADDRS),
     "description": "Real libvirt tunnelled live migration: virsh migrate --live --p2p --tunnelled "
                    f"{LIBVIRT_DOMAIN} qemu+tcp://{LIBVIRT_NET_ADDRS[1]}/system between two libvirtd 9.0 in two "
                    "network namespaces (own config/run/state dirs and host_uuid, listen_tcp, auth_tcp none) "
                    "joined by a veth pair (MTU 1500, offloads off), captured on the source's veth end",
     "make": lambda tmp, raw, port: libvirt_tunnelled(tmp, raw, port, tls=False),
     "label": lambda fl: label_libvirt(fl, tls=False),
     "programs": ["libvirtd", "virsh", "qemu", "iproute2", "tcpdump"],
     "machine": "libvirt domain type qemu (TCG), pc machine, 32 MiB, 1 vCPU, running (SeaBIOS, no boot "
                "device), ~1 MiB mixed image via qemu:commandline -device loader"},
    {"name": "libvirt-tunnelled-tls", "file": "libvirt-tunnelled-tls.pcap.gz", "port": 16514,
     "hosts": list(LIBVIRT_NET_ADDRS),
     "description": "The same libvirt tunnelled live migration over qemu+tls://"
                    f"{LIBVIRT_NET_ADDRS[1]}/system (libvirtd listen_tls on 16514, certtool CA, server "
                    "certificate for the peer address, client certificate via pkipath)",
     "make": lambda tmp, raw, port: libvirt_tunnelled(tmp, raw, port, tls=True),
     "label": lambda fl: label_libvirt(fl, tls=True),
     "programs": ["libvirtd", "virsh", "qemu", "certtool", "iproute2", "tcpdump"],
     "machine": "libvirt domain type qemu (TCG), pc machine, 32 MiB, 1 vCPU, running (SeaBIOS, no boot "
                "device), ~1 MiB mixed image via qemu:commandline -device loader"},
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
        "qemu-img": first_line(["qemu-img", "--version"]),
        "iproute2": first_line(["ip", "-V"]),
        "ethtool": first_line(["ethtool", "--version"]),
        "libvirtd": first_line(["libvirtd", "--version"]),
        "virsh": first_line(["virsh", "--version"]),
    }


def build(spec: dict, versions: dict) -> dict:
    name, port = spec["name"], spec["port"]
    dest = HERE / spec["file"]
    log(f"{name}: capturing tcp port {'/'.join(map(str, spec.get('ports', [port])))} -> {dest.name}")
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
    hosts, ports = spec.get("hosts", [LOOPBACK]), spec.get("ports", [port])
    for fl in flows:
        if not {fl["orig_h"], fl["resp_h"]} <= set(hosts) or fl["resp_p"] not in ports:
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
        **({"ports": spec["ports"]} if "ports" in spec else {}),
        "file_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
        "details": extra,
        "flows": out_flows,
    }
    if "qemu" in spec["programs"]:
        entry["made_with"]["machine"] = spec.get(
            "machine", "pc (i440fx), accel=tcg, -m 32, paused (-S), ~3 MiB mixed image via -device loader")
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
    variants = load_manifest().get("variants")      # written by derive_variants.py: kept as is
    if variants is not None:
        m["variants"] = variants
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
    missing = [p for p in (QEMU, "qemu-img", "tcpdump", "/usr/sbin/sshd", "ssh", "ssh-keygen", "certtool",
                           "openssl", "curl", "ip", "ethtool", "unshare")
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
