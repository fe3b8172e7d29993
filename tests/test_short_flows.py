"""Short flows decided by framing where statistics cannot: clear-text line exchanges of a few
bytes to a few hundred (real sockets on 127.0.0.1, recorded with tcpdump), and an SSH session
picked up mid-flow named ssh from its packet lengths (OpenSSH with AES-GCM, cut by editcap)."""

from __future__ import annotations

import importlib.util
import shutil
import socket
import socketserver
import subprocess
from pathlib import Path

import pytest

import inspector
from tests.loopback_capture import loopback_capture, serving

ROOT = Path(__file__).resolve().parents[1]


def _exchange(tmp_path: Path, greeting: bytes, client_lines: list[bytes], replies: dict[bytes, bytes]):
    """A server that greets, answers each line by its first word, closes on QUIT; one client."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(greeting)
            for line in self.request.makefile("rb"):
                word = line.split()[0].upper() if line.split() else b""
                self.request.sendall(replies.get(word, b"500 unknown command\r\n"))
                if word == b"QUIT":
                    return

    pcap = tmp_path / "short.pcap"
    with serving(socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)) as port:
        with loopback_capture(pcap, f"tcp port {port}"):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
                reader = sock.makefile("rb")
                reader.readline()
                for line in client_lines:
                    sock.sendall(line)
                    reader.readline()
    result = inspector.analyze(pcap)
    assert len(result.flows) == 1
    return result.flows.iloc[0]


def test_tiny_line_exchange_is_plaintext(tmp_path):
    """11 B one way, 6 B the other: too little for statistics, a reply code and a command in clear."""
    row = _exchange(tmp_path, b"220 ready\r\n", [b"QUIT\r\n"], {b"QUIT": b"221 bye\r\n"})
    assert row["verdict"] == "plaintext" and row["protocol"] == "text", row["reason"]
    assert "text framing in clear" in row["reason"]


def test_few_hundred_bytes_of_a_line_protocol_is_plaintext(tmp_path):
    lines = [b"HELO compute-1\r\n", b"STATUS migration-42\r\n", b"LIST hosts\r\n", b"QUIT\r\n"]
    replies = {b"HELO": b"250 hello compute-1\r\n", b"STATUS": b"211 migration-42 running 37%\r\n",
               b"LIST": b"211 compute-1 compute-2 compute-3\r\n", b"QUIT": b"221 bye\r\n"}
    row = _exchange(tmp_path, b"220 control.internal service ready\r\n", lines, replies)
    assert row["verdict"] == "plaintext", row["reason"]


@pytest.mark.slow   # sshd and ssh
def test_ssh_mid_flow_named_ssh(tmp_path):
    missing = [t for t in ("ssh", "ssh-keygen", "editcap", "capinfos", "tcpdump") if shutil.which(t) is None]
    assert not missing and Path("/usr/sbin/sshd").exists(), f"missing {missing} or sshd"
    spec = importlib.util.spec_from_file_location("make_captures", ROOT / "captures" / "make_captures.py")
    mc = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mc)
    port = 49222
    mc.ensure_free(port)
    pcap = tmp_path / "ssh.pcap"
    with mc.private_sshd(tmp_path, port) as ssh:
        with loopback_capture(pcap, f"tcp port {port}"):
            # AES-GCM keeps packet lengths in clear; 400 small writes make 400 small packets.
            subprocess.run([*ssh, "-c", "aes128-gcm@openssh.com", "root@127.0.0.1",
                            "for i in $(seq 400); do echo status line $i; sleep 0.002; done"],
                           capture_output=True, timeout=120, check=True)
    packets = int(subprocess.run(["capinfos", "-c", "-M", str(pcap)], capture_output=True, text=True,
                                 check=True).stdout.split()[-1])
    cut = tmp_path / "midflow.pcap"
    subprocess.run(["editcap", "-r", str(pcap), str(cut), f"{packets // 2}-{packets}"], check=True)
    row = inspector.analyze(cut).flows.iloc[0]
    assert row["protocol"] == "ssh", row["reason"]
    assert row["verdict"] != "plaintext", row["reason"]
