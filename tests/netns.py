"""A private network namespace with a veth pair, for live-sensor tests.

``Namespace()`` makes ``ip netns`` NAME (unique per use: the pid and a
counter) holding a veth pair ``send`` <-> ``recv`` with IPv6 off (no router
or neighbour chatter in a capture); closing it deletes the namespace and
the pair with it, also when the test failed. Commands run inside through
``ip netns exec`` (``cmd``, ``run``, ``popen``). Needs root and iproute2.

Example::

    with Namespace() as ns:
        sensor = ns.popen(["python", "-m", "inspector", "live", "-i", ns.recv, ...])
        ns.run(["tcpreplay", "-i", ns.send, "burst.pcap"], check=True)
"""

from __future__ import annotations

import itertools
import os
import shutil
import struct
import subprocess
from pathlib import Path

_COUNT = itertools.count()


def available() -> str:
    """Why namespace tests cannot run here ('' when they can)."""
    if os.geteuid() != 0:
        return "needs root (ip netns)"
    missing = [tool for tool in ("ip", "tcpdump", "tcpreplay") if shutil.which(tool) is None]
    return f"needs {', '.join(missing)}" if missing else ""


class Namespace:
    """``ip netns add NAME`` with a veth pair ``send``/``recv`` inside; removed on close."""

    def __init__(self, prefix: str = "insptest", send: str = "send0", recv: str = "recv0") -> None:
        self.name = f"{prefix}-{os.getpid()}-{next(_COUNT)}"
        self.send = send
        self.recv = recv

    def _ip(self, *args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True, text=True)

    def __enter__(self) -> Namespace:
        self._ip("netns", "add", self.name)
        try:
            for key in ("all", "default"):
                self.run(["sysctl", "-qw", f"net.ipv6.conf.{key}.disable_ipv6=1"], check=False, capture_output=True)
            self._ip("-n", self.name, "link", "add", self.send, "type", "veth", "peer", "name", self.recv)
            for dev in (self.send, self.recv):
                self._ip("-n", self.name, "link", "set", dev, "up")
        except BaseException:
            self.close()
            raise
        return self

    def cmd(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.cmd(argv), **kwargs)  # noqa: PLW1510 - the caller says check or not

    def popen(self, argv: list[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(self.cmd(argv), **kwargs)

    def counter(self, dev: str, name: str) -> int:
        """A counter of /sys/class/net/DEV/statistics as the namespace sees it."""
        return int(self.run(["cat", str(Path("/sys/class/net", dev, "statistics", name))], check=True,
                            capture_output=True, text=True).stdout)

    def delete_link(self, dev: str) -> None:
        self._ip("-n", self.name, "link", "del", dev)

    def close(self) -> None:
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)  # the veth pair goes with it

    def __exit__(self, *exc) -> None:
        self.close()


def udp_burst(path: Path, packets: int, port: int = 5001) -> Path:
    """A pcap of ``packets`` 1,042-byte UDP frames to ``port`` from 1,000 source ports (flows for every partition)."""
    records = []
    for i in range(packets):
        payload = struct.pack("!I", i) + bytes(996)
        udp = struct.pack("!HHHH", 40000 + i % 1000, port, 8 + len(payload), 0)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28 + len(payload), i & 0xFFFF, 0, 64, 17, 0,
                         bytes([10, 99, 0, 1]), bytes([10, 99, 0, 2]))
        frame = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00" + ip + udp + payload
        records.append(struct.pack("<IIII", 1, i, len(frame), len(frame)) + frame)
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + b"".join(records))
    return path
