"""Real captures of encryption that is not TLS or SSH, made by real programs.

Each maker records what real software sends and returns the pcap, or skips
with the reason it cannot run here (root, network namespaces, TUN, the
program). Namespaces are joined by a veth pair; tcpdump runs on one end.

- WireGuard: wireguard-go (userspace, a TUN device per namespace) and wg.
- IKEv2 and ESP in UDP 4500: strongSwan's charon with kernel-libipsec (ESP
  in userspace over a TUN device; the kernel here has no ESP), swanctl.
- QUIC: aioquic's client and server on 127.0.0.1.
- DTLS 1.2: openssl s_server -dtls / s_client -dtls on 127.0.0.1.
- OpenVPN 2.6 in TLS mode (UDP or TCP), peer fingerprints, two namespaces.
- ESP in IP protocol 50: scapy's ESP over a real TCP stream (no kernel ESP here).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

MIGRATION_PORT = 49152
PAYLOAD = b"".join(b"QEVM-like cleartext page %06d " % i + bytes(range(256)) * 8 for i in range(400))
"""What the programs carry inside their tunnels: readable, highly structured bytes (~830 KB)."""


def need(*programs: str) -> None:
    """Skip unless root and these programs are here."""
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, TUN devices, tcpdump)")
    missing = [p for p in programs if shutil.which(p) is None and not Path(p).exists()]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (see .ci/apt-packages.txt)")


def run(*cmd: str, ns: str | None = None, **kw) -> subprocess.CompletedProcess:
    full = ["ip", "netns", "exec", ns, *cmd] if ns else list(cmd)
    return subprocess.run(full, check=True, capture_output=True, text=True, timeout=60, **kw)


@contextmanager
def namespaces(tag: str) -> Iterator[tuple[str, str]]:
    """Two namespaces ``<tag>a``/``<tag>b`` joined by a veth pair: 10.231.0.1 <-> 10.231.0.2."""
    a, b = f"{tag}a{os.getpid() % 10000}", f"{tag}b{os.getpid() % 10000}"
    try:
        run("ip", "netns", "add", a)
        run("ip", "netns", "add", b)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"network namespaces unavailable: {exc.stderr.strip()}")
    try:
        run("ip", "link", "add", "veth0", "netns", a, "type", "veth", "peer", "name", "veth0", "netns", b)
        for ns, addr in ((a, "10.231.0.1/24"), (b, "10.231.0.2/24")):
            run("ip", "addr", "add", addr, "dev", "veth0", ns=ns)
            run("ip", "link", "set", "veth0", "up", ns=ns)
            run("ip", "link", "set", "lo", "up", ns=ns)
        yield a, b
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "pids", ns], capture_output=True)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


@contextmanager
def daemons() -> Iterator[Callable[..., subprocess.Popen]]:
    """Yields ``start(argv, env=None)``: the programs it starts (output discarded) are terminated at the end."""
    started: list[subprocess.Popen] = []

    def start(argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        started.append(subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        return started[-1]

    try:
        yield start
    finally:
        for process in started:
            process.terminate()
            process.wait(timeout=10)


@contextmanager
def tcpdump(pcap: Path, iface: str, capture_filter: str = "", ns: str | None = None) -> Iterator[Path]:
    """tcpdump on ``iface`` (in ``ns``) while the block runs."""
    cmd = ["tcpdump", "-U", "--immediate-mode", "-B", "65536", "-Z", "root", "-s", "0", "-i", iface, "-w", str(pcap)]
    cmd += capture_filter.split() if capture_filter else []
    proc = subprocess.Popen((["ip", "netns", "exec", ns] if ns else []) + cmd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()
    if "listening on" not in line:
        proc.kill()
        pytest.fail(f"tcpdump did not start: {line.strip()}")
    try:
        yield pcap
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)


def send_stream(ns_from: str | None, ns_to: str | None, address: str, port: int = MIGRATION_PORT,
                payload: bytes = PAYLOAD) -> None:
    """A TCP stream of ``payload`` from ``ns_from`` to a receiver in ``ns_to``."""
    receiver = subprocess.Popen(
        (["ip", "netns", "exec", ns_to] if ns_to else []) + [sys.executable, "-c", _RECEIVER, address, str(port)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout.readline().strip() == "ready"
        run(sys.executable, "-c", _SENDER, address, str(port), str(len(payload)), ns=ns_from)
        assert receiver.wait(timeout=60) == 0
    finally:
        if receiver.poll() is None:
            receiver.kill()


_RECEIVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1); print("ready", flush=True)
c, _ = s.accept()
while c.recv(65536): pass
"""
_SENDER = """
import socket, sys, time
for _ in range(50):
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5); break
    except OSError:
        time.sleep(0.2)
n = int(sys.argv[3])
data = b"".join(b"QEVM-like cleartext page %06d " % i + bytes(range(256)) * 8 for i in range(400))[:n]
c.sendall(data); c.close()
"""


# ------------------------------------------------------------------ WireGuard

def wireguard_capture(tmp: Path) -> Path:
    """wireguard-go between two namespaces, a TCP stream to the migration port through it."""
    need("wireguard-go", "wg", "tcpdump", "ip")
    keys = {}
    for side in "ab":
        private = run("wg", "genkey").stdout.strip()
        keys[side] = (private, run("wg", "pubkey", input=private).stdout.strip())
    pcap = tmp / "wireguard.pcap"
    with namespaces("wg") as (a, b), daemons() as start:
        for ns, side, other, inner, outer in ((a, "a", "b", "10.232.0.1", "10.231.0.2"),
                                              (b, "b", "a", "10.232.0.2", "10.231.0.1")):
            device = f"wg{side}{os.getpid() % 10000}"  # its UAPI socket in /var/run/wireguard is not per namespace
            key_file = tmp / f"wg-{side}.key"
            key_file.write_text(keys[side][0] + "\n")
            start(["ip", "netns", "exec", ns, "wireguard-go", "-f", device],
                  env={**os.environ, "LOG_LEVEL": "error", "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"})
            for _ in range(50):
                if subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "show", device],
                                  capture_output=True).returncode == 0:
                    break
                time.sleep(0.1)
            else:
                pytest.skip(f"wireguard-go made no {device} device (no /dev/net/tun?)")
            run("wg", "set", device, "private-key", str(key_file), "listen-port", "51820", "peer",
                keys[other][1], "allowed-ips", "10.232.0.0/24", "endpoint", f"{outer}:51820", ns=ns)
            run("ip", "addr", "add", f"{inner}/24", "dev", device, ns=ns)
            run("ip", "link", "set", device, "up", ns=ns)
        with tcpdump(pcap, "veth0", ns=a):
            send_stream(a, b, "10.232.0.2")
    return pcap


# ------------------------------------------------------------------ QUIC

def quic_capture(tmp: Path) -> Path:
    """aioquic's HTTP/3 example-free echo: a client sends PAYLOAD on a stream, the server echoes its length."""
    pytest.importorskip("aioquic", reason="aioquic is in the test extra")
    need("tcpdump", "openssl")
    cert, key = _certificate(tmp)
    pcap = tmp / "quic.pcap"
    server = subprocess.Popen([sys.executable, "-c", _QUIC_SERVER, str(cert), str(key)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready", server.stderr.read()
        with tcpdump(pcap, "lo", "udp port 4433"):
            run(sys.executable, "-c", _QUIC_CLIENT)
    finally:
        server.kill()
        server.wait()
    return pcap


_QUIC_SERVER = """
import asyncio, sys
from aioquic.asyncio import serve
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import StreamDataReceived

class Echo(QuicConnectionProtocol):
    def quic_event_received(self, event):
        if isinstance(event, StreamDataReceived) and event.end_stream:
            self._quic.send_stream_data(event.stream_id, b"ok", end_stream=True)
            self.transmit()

async def main():
    config = QuicConfiguration(is_client=False, alpn_protocols=["inspector-test"])
    config.load_cert_chain(sys.argv[1], sys.argv[2])
    await serve("127.0.0.1", 4433, configuration=config, create_protocol=Echo)
    print("ready", flush=True)
    await asyncio.Future()

asyncio.run(main())
"""
_QUIC_CLIENT = """
import asyncio, ssl
from aioquic.asyncio import connect
from aioquic.quic.configuration import QuicConfiguration

async def main():
    config = QuicConfiguration(is_client=True, alpn_protocols=["inspector-test"], verify_mode=ssl.CERT_NONE)
    async with connect("127.0.0.1", 4433, configuration=config) as client:
        reader, writer = await client.create_stream()
        writer.write(b"".join(b"cleartext line %06d of a request body\\n" % i for i in range(8000)))
        writer.write_eof()
        assert await reader.read() == b"ok"

asyncio.run(main())
"""


def _certificate(tmp: Path) -> tuple[Path, Path]:
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    if not cert.exists():
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=localhost")
    return cert, key


# ------------------------------------------------------------------ DTLS

def dtls_capture(tmp: Path) -> Path:
    """openssl s_server -dtls1_2 and s_client -dtls1_2 on 127.0.0.1, text both ways."""
    need("openssl", "tcpdump")
    cert, key = _certificate(tmp)
    pcap = tmp / "dtls.pcap"
    server = subprocess.Popen(["openssl", "s_server", "-dtls1_2", "-accept", "127.0.0.1:4444", "-cert", str(cert),
                               "-key", str(key), "-quiet"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        with tcpdump(pcap, "lo", "udp port 4444"):
            text = b"".join(b"cleartext line %04d typed into a DTLS session\n" % i for i in range(200))
            client = subprocess.Popen(["openssl", "s_client", "-dtls1_2", "-connect", "127.0.0.1:4444", "-quiet"],
                                      stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for chunk in range(0, len(text), 1000):
                client.stdin.write(text[chunk:chunk + 1000])
                client.stdin.flush()
                time.sleep(0.05)
            time.sleep(0.5)
            client.kill()
            client.wait()
    finally:
        server.kill()
        server.wait()
    return pcap


# ------------------------------------------------------------------ ESP (userspace, scapy)

def esp_capture(tmp: Path, cipher: str = "AES-CBC") -> Path:
    """A real TCP stream (between two namespaces, to the migration port) put through
    scapy's ESP in tunnel mode between 10.231.0.1 and 10.231.0.2, packet by
    packet: the kernel here has no ESP (CONFIG_INET_ESP), scapy implements
    RFC 4303 with the cryptography package. ``cipher``: 'AES-CBC', or 'NULL'
    (RFC 2410: integrity only)."""
    need("tcpdump")
    from scapy.layers.inet import IP, TCP
    from scapy.layers.ipsec import ESP, SecurityAssociation
    from scapy.utils import PcapWriter, rdpcap

    inner = tmp / "inner.pcap"
    if not inner.exists():
        with namespaces("esp") as (a, b), tcpdump(inner, "veth0", f"tcp port {MIGRATION_PORT}", ns=a):
            run("ethtool", "-K", "veth0", "tso", "off", "gso", "off", "gro", "off", ns=a) if shutil.which(
                "ethtool") else None
            send_stream(a, b, "10.231.0.2")
    key = bytes(range(16)) if cipher != "NULL" else None
    sas = {}
    for src, dst, spi in (("10.231.0.1", "10.231.0.2", 0xC0DE0001), ("10.231.0.2", "10.231.0.1", 0xC0DE0002)):
        sas[src] = SecurityAssociation(ESP, spi=spi, crypt_algo=cipher, crypt_key=key, auth_algo="HMAC-SHA1-96",
                                       auth_key=bytes(range(20)), tunnel_header=IP(src=src, dst=dst))
    pcap = tmp / f"esp-{cipher.lower()}.pcap"
    with PcapWriter(str(pcap), linktype=101) as out:      # raw IP
        for packet in rdpcap(str(inner)):
            if TCP not in packet:
                continue
            ip = packet[IP]
            src = "10.231.0.1" if ip[TCP].dport == MIGRATION_PORT else "10.231.0.2"
            sealed = sas[src].encrypt(ip)
            sealed.time = packet.time
            out.write(sealed)
    return pcap


# ------------------------------------------------------------------ IKEv2 and ESP in UDP (strongSwan)

CHARON = "/usr/lib/ipsec/charon"
_STRONGSWAN_CONF = """charon {{
  load = random nonce kdf aes sha1 sha2 hmac pem pkcs1 x509 pubkey openssl kernel-libipsec kernel-netlink socket-default vici
  plugins {{
    vici {{ socket = unix://{vici} }}
    kernel-libipsec {{ allow_peer_ts = yes }}
  }}
}}
"""
_SWANCTL_CONF = """connections {{
  host {{
    version = 2
    local_addrs = {outer}
    remote_addrs = {peer}
    encap = yes
    proposals = aes128-sha256-modp2048
    local {{
      auth = psk
      id = {me}
    }}
    remote {{
      auth = psk
      id = {other}
    }}
    children {{
      net {{
        local_ts = {inner}/32
        remote_ts = {peer_inner}/32
        esp_proposals = aes128-sha256
      }}
    }}
  }}
}}
secrets {{
  ike-1 {{
    id-1 = a
    id-2 = b
    secret = "inspector-test-psk"
  }}
}}
"""


def ipsec_capture(tmp: Path) -> Path:
    """strongSwan's charon in two namespaces: IKEv2 on UDP 500, then 4500 with
    UDP encapsulation forced (``encap = yes``), ESP by kernel-libipsec (in
    userspace, over a TUN device) between 10.233.0.1 and 10.233.0.2 on the
    hosts' loopbacks; a TCP stream to the migration port through it."""
    need(CHARON, "swanctl", "tcpdump", "ip")
    plugin = Path("/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so")
    if not plugin.exists():
        pytest.skip("strongSwan's kernel-libipsec plugin is missing (libcharon-extra-plugins)")
    pcap = tmp / "ipsec.pcap"
    with namespaces("sw") as (a, b), daemons() as start:
        sides = ((a, "a", "b", "10.231.0.1", "10.231.0.2", "10.233.0.1", "10.233.0.2"),
                 (b, "b", "a", "10.231.0.2", "10.231.0.1", "10.233.0.2", "10.233.0.1"))
        for ns, me, other, outer, peer, inner, peer_inner in sides:
            run("ip", "addr", "add", f"{inner}/32", "dev", "lo", ns=ns)
            vici = tmp / f"charon-{me}.vici"
            vici.unlink(missing_ok=True)
            conf = tmp / f"strongswan-{me}.conf"
            conf.write_text(_STRONGSWAN_CONF.format(vici=vici))
            (tmp / f"swanctl-{me}.conf").write_text(_SWANCTL_CONF.format(**locals()))
            # a private /run per daemon: charon's pid file is not per namespace
            start(["ip", "netns", "exec", ns, "unshare", "-m", "sh", "-c", f"mount -t tmpfs none /run && exec {CHARON}"],
                  env={**os.environ, "STRONGSWAN_CONF": str(conf)})
            for _ in range(50):
                if vici.exists():
                    break
                time.sleep(0.1)
            else:
                pytest.skip("charon did not start (no vici socket)")
            run("swanctl", "--load-all", "--uri", f"unix://{vici}", "--file", str(tmp / f"swanctl-{me}.conf"))
        with tcpdump(pcap, "veth0", ns=a):
            run("swanctl", "--initiate", "--child", "net", "--uri", f"unix://{tmp / 'charon-a.vici'}")
            send_stream(a, b, "10.233.0.2", payload=PAYLOAD[:200_000])
    return pcap


# ------------------------------------------------------------------ OpenVPN

def openvpn_capture(tmp: Path, proto: str = "udp") -> Path:
    """OpenVPN 2.6 in TLS mode between two namespaces (peer fingerprints of
    self-signed certificates, p2p, a tun device each; ``proto`` 'udp' or
    'tcp'), a TCP stream to the migration port through it."""
    need("openvpn", "openssl", "tcpdump", "ip")
    fingerprints = {}
    for side in "ab":
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(tmp / f"ovpn-{side}.key"), "-out", str(tmp / f"ovpn-{side}.crt"), "-days", "1",
            "-subj", f"/CN={side}")
        fingerprints[side] = run("openssl", "x509", "-in", str(tmp / f"ovpn-{side}.crt"), "-noout", "-fingerprint",
                                 "-sha256").stdout.strip().split("=", 1)[1]
    pcap = tmp / f"openvpn-{proto}.pcap"
    with namespaces("ov") as (a, b), daemons() as start:
        with tcpdump(pcap, "veth0", ns=a):
            for ns, me, other, outer, peer, inner, peer_inner, role in (
                    (b, "b", "a", "10.231.0.2", "10.231.0.1", "10.234.0.2", "10.234.0.1", "server"),
                    (a, "a", "b", "10.231.0.1", "10.231.0.2", "10.234.0.1", "10.234.0.2", "client")):
                transport = proto if proto == "udp" else f"tcp-{role}"
                start(
                    ["ip", "netns", "exec", ns, "openvpn", "--dev", "tun", "--proto", transport,
                     "--local", outer, "--remote", peer, "--ifconfig", inner, peer_inner,
                     f"--tls-{role}", "--cert", str(tmp / f"ovpn-{me}.crt"), "--key", str(tmp / f"ovpn-{me}.key"),
                     "--peer-fingerprint", fingerprints[other], "--verb", "0"]
                    + (["--dh", "none"] if role == "server" else []))
                time.sleep(0.5)
            for _ in range(100):
                routes = subprocess.run(["ip", "netns", "exec", a, "ip", "route", "get", "10.234.0.2"],
                                        capture_output=True, text=True).stdout
                if "tun" in routes:
                    break
                time.sleep(0.1)
            else:
                pytest.skip("openvpn made no tun device")
            time.sleep(2)   # the TLS handshake of the control channel
            send_stream(a, b, "10.234.0.2", payload=PAYLOAD[:200_000])
    return pcap
