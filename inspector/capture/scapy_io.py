"""scapy, the packet library of notebooks, on both sides of inspector.

In: scapy packets (a ``PacketList`` from ``sniff`` or ``rdpcap``, or any
iterable of them) become the bytes of a pcapng capture as the reader asks
for them, so the compiled walkers read them like a file and a generator of
packets is never held whole. Out: the records of one flow become scapy
packets to dissect. scapy is imported only here, and only when used.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

from inspector.capture import constants as C
from inspector.errors import InspectorError

LINKTYPE_USER0 = 147  # packets of a layer with no link type: counted, flagged unsupported-link-type
TS_RESOLUTION_NS = 9  # if_tsresol: 10^-9 s, so no timestamp is rounded
PACKETS_PER_FILL = 1024

_SHB = struct.pack("<IIIHHqI", C.PCAPNG_SHB, 28, C.PCAPNG_BYTE_ORDER_MAGIC, 1, 0, -1, 28)
_EPB_HEAD = struct.Struct("<IIIIIII")  # type, length, interface, ts high, ts low, captured, on the wire


def is_packet(obj: object) -> bool:
    """A scapy packet (without importing scapy: a caller who has one has imported it)."""
    module = sys.modules.get("scapy.packet")
    return module is not None and isinstance(obj, module.Packet)


def is_packet_list(obj: object) -> bool:
    """A scapy ``PacketList`` (what ``sniff`` and ``rdpcap`` return)."""
    module = sys.modules.get("scapy.plist")
    return module is not None and isinstance(obj, module.PacketList)


def _idb(linktype: int) -> bytes:
    """Interface description block: link type, no snaplen, nanosecond timestamps."""
    options = struct.pack("<HHB3xHH", C.PCAPNG_OPT_IF_TSRESOL, 1, TS_RESOLUTION_NS, 0, 0)
    length = 20 + len(options)
    return struct.pack("<IIHHI", C.PCAPNG_IDB, length, linktype, 0, 0) + options + struct.pack("<I", length)


def _nanoseconds(time: Any) -> int:
    """scapy's ``pkt.time`` (float or EDecimal seconds) in ns, without float rounding."""
    return int(Decimal(time if isinstance(time, Decimal) else repr(float(time))) * 1_000_000_000)


class PacketStream:
    """scapy packets as a readable pcapng byte stream, one interface per link type."""

    def __init__(self, packets: Iterable[Any]) -> None:
        self._packets: Iterator[Any] = iter(packets)
        self._pending = bytearray(_SHB)
        self._interfaces: dict[int, int] = {}  # link type -> interface id
        self._produced = 0
        self._ended = False

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._produced

    def readinto(self, view: memoryview) -> int:
        while len(self._pending) < len(view) and not self._ended:
            self._encode_more()
        n = min(len(view), len(self._pending))
        view[:n] = self._pending[:n]
        del self._pending[:n]
        self._produced += n
        return n

    def _encode_more(self) -> None:
        from scapy.config import conf

        layer2num = conf.l2types.layer2num
        out = self._pending
        for _ in range(PACKETS_PER_FILL):
            packet = next(self._packets, None)
            if packet is None:
                self._ended = True
                return
            linktype = layer2num.get(type(packet), LINKTYPE_USER0)
            interface = self._interfaces.get(linktype)
            if interface is None:
                interface = self._interfaces[linktype] = len(self._interfaces)
                out += _idb(linktype)
            data = bytes(packet)
            ts = _nanoseconds(packet.time)
            padded = (len(data) + 3) & ~3
            length = 32 + padded
            out += _EPB_HEAD.pack(C.PCAPNG_EPB, length, interface, ts >> 32, ts & 0xFFFFFFFF, len(data),
                                  max(packet.wirelen or 0, len(data)))
            out += data
            out += bytes(padded - len(data))
            out += struct.pack("<I", length)


def to_packets(records: Iterable[tuple[int, int, int, bytes]], name: str) -> Any:
    """A scapy ``PacketList`` of ``(ts_ns, wire_len, linktype, frame)`` records, dissected by link type."""
    try:
        from scapy.all import PacketList, Raw, conf
        from scapy.utils import EDecimal
    except ImportError:
        raise InspectorError("Analysis.packets() returns scapy packets: install scapy "
                             "(pip install 'inspector[scapy]'), or write the flow with to_pcap()") from None

    packets = []
    for ts, wire_len, linktype, frame in records:
        packet = conf.l2types.num2layer.get(linktype, Raw)(frame)
        packet.time = EDecimal(ts) / 1_000_000_000
        packet.wirelen = wire_len
        packets.append(packet)
    return PacketList(packets, name=name)
