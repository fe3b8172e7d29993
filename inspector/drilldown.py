"""Drill-down: the packets of one flow, read back from its capture.

Nothing per packet is kept while analysing. A flow's packets are found again
by reading its input once more through the same compiled walkers and keeping
the packets of its 5-tuple (either direction) between its first and last
packet times: the flows table already holds all of that (addresses, ports,
``proto``, ``ts``, ``duration``, ``input``). Keeping record offsets instead
would cost 8 bytes per packet of every flow for a question asked of a few
flows (a 10 GiB migration is ~7 M packets: 56 MB), so memory would grow with
the capture rather than with the flows open at once. A drill-down costs one
pass at decode speed over the flow's input, up to the flow's last packet.

Two flows with the same 5-tuple never overlap in time (a later packet after
the idle timeout or a FIN starts a new flow), so the time span tells them apart.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd

from inspector.capture import constants as C
from inspector.capture import decode as D
from inspector.capture.inputs import Input
from inspector.capture.reader import PacketBatch
from inspector.capture.writer import RECORD_HEADER, pcap_header
from inspector.errors import CaptureError, ConfigError, InspectorError
from inspector.report.output import open_private
from inspector.text import file_name

Record = tuple[int, int, int, bytes]
"""One packet read back: (timestamp ns, length on the wire, link type, frame as captured)."""

_PROTOCOL_NUMBERS = {name: number for number, name in C.IP_PROTOCOL_NAMES.items()}
_LOW_WORD = (1 << 64) - 1


def _words(host: str, ip_version: int) -> tuple[np.uint64, np.uint64]:
    """An address as the decoder's two words (IPv4 mapped into IPv6)."""
    value = int(ipaddress.ip_address(host))
    if ip_version == 4:
        value |= int(D.IPV4_MAPPED_PREFIX)
    return np.uint64(value >> 64), np.uint64(value & _LOW_WORD)


@dataclass(frozen=True)
class FlowMatch:
    """Which decoded packets belong to one flow of the flows table."""

    proto: int
    orig: tuple[np.uint64, np.uint64]
    resp: tuple[np.uint64, np.uint64]
    orig_p: int
    resp_p: int
    first_ts: int
    last_ts: int

    @classmethod
    def of(cls, flow: pd.Series) -> FlowMatch:
        proto = str(flow["proto"])
        first = int(flow["ts"].value)
        return cls(proto=_PROTOCOL_NUMBERS[proto] if proto in _PROTOCOL_NUMBERS else int(proto),
                   orig=_words(flow["orig_h"], int(flow["ip_version"])),
                   resp=_words(flow["resp_h"], int(flow["ip_version"])),
                   orig_p=int(flow["orig_p"]), resp_p=int(flow["resp_p"]),
                   first_ts=first, last_ts=first + int(flow["duration"].value))

    def rows(self, batch: PacketBatch) -> np.ndarray:
        """Rows of the batch that are packets of this flow, in either direction."""
        f, a = batch.fields, batch.addrs
        ts = f[D.F_TS]
        candidate = np.flatnonzero((ts >= self.first_ts) & (ts <= self.last_ts) & (f[D.F_PROTO] == self.proto)
                                   & (f[D.F_STATUS] == C.STATUS_OK))
        if not candidate.size:
            return candidate
        sport, dport = f[D.F_SPORT, candidate] & 0xFFFF, f[D.F_DPORT, candidate] & 0xFFFF
        src, dst = (a[D.A_SRC_HI, candidate], a[D.A_SRC_LO, candidate]), \
            (a[D.A_DST_HI, candidate], a[D.A_DST_LO, candidate])

        def sent(by: tuple[np.uint64, np.uint64], by_port: int, to: tuple[np.uint64, np.uint64],
                 to_port: int) -> np.ndarray:
            return ((src[0] == by[0]) & (src[1] == by[1]) & (sport == by_port)
                    & (dst[0] == to[0]) & (dst[1] == to[1]) & (dport == to_port))

        return candidate[sent(self.orig, self.orig_p, self.resp, self.resp_p)
                         | sent(self.resp, self.resp_p, self.orig, self.orig_p)]


def flow_records(flows: pd.DataFrame, inputs: list[Input], uid: str) -> Iterator[Record]:
    """The packets of flow ``uid``, in capture order, read again from its input
    (and the inputs after it, for a flow that goes on in the next file)."""
    match, first_input = _flow(flows, inputs, uid)
    for source in inputs[first_input:]:
        reader = source.reread()
        with closing(iter(reader)) as batches:
            for batch in batches:
                if batch.n and int(batch.fields[D.F_TS].min()) > match.last_ts:
                    return  # past the flow's last packet: the rest of the capture is not read
                rows = match.rows(batch)
                found = batch.fields[[D.F_TS, D.F_WIRE_LEN, D.F_CAP_LEN, D.F_FRAME_OFF, D.F_IFACE]][:, rows]
                for ts, wire, cap, offset, interface in found.T.tolist():
                    yield ts, wire, reader.linktype_of(interface), batch.buf[offset : offset + cap].tobytes()


def _flow(flows: pd.DataFrame, inputs: list[Input], uid: str) -> tuple[FlowMatch, int]:
    rows = flows.index[flows["uid"] == uid]
    if not len(rows):
        raise ConfigError(f"no flow with uid {uid!r} in this analysis")
    flow = flows.loc[rows[0]]
    names = [source.name for source in inputs]
    if flow["input"] not in names:
        raise CaptureError(flow["input"], "this analysis holds no capture to read packets back from (a live "
                                          "capture, or tables loaded from an export); analyze the capture file")
    return FlowMatch.of(flow), names.index(flow["input"])


def write_pcap(records: Iterator[Record], path: str | os.PathLike) -> int:
    """Write records as a nanosecond pcap readable only by its owner (0600: it holds payload); returns packets."""
    path = Path(path)
    first = next(records, None)
    linktype = first[2] if first is not None else C.LINKTYPE_ETHERNET
    count = 0
    try:
        with open_private(path, "wb") as out:
            out.write(pcap_header(linktype, C.SNAPLEN))
            for ts, wire, record_linktype, frame in chain([first] if first is not None else [], records):
                if record_linktype != linktype:
                    raise CaptureError(path, f"the flow's packets have link types {linktype} and {record_linktype};"
                                             " a pcap holds one: use Analysis.packets() instead")
                out.write(RECORD_HEADER.pack(ts // 1_000_000_000, ts % 1_000_000_000, len(frame), wire))
                out.write(frame)
                count += 1
    except OSError as exc:  # a full disk: one line naming the file, none of it left
        path.unlink(missing_ok=True)
        raise InspectorError(f"{file_name(path)}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return count
