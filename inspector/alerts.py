"""Early alerts of the live sensor: a watched flow showed what must not cross
the wire in clear, told as soon as a head region is detected or a secret
matches, long before the flow ends.

An alert names the flow by its endpoints (the uid is only known when the
flow table is finished), the protocol, and the evidence line of the
detection or the redacted label of the secret; never payload bytes.

``EvidencePcaps`` keeps the packets themselves, when asked: from the batch
in which a flow's alert fired on, the packets of that flow go to one pcap
file per flow, each file and all of them together capped in size.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from inspector.capture import writer as W
from inspector.capture.reader import CaptureReader, PacketBatch
from inspector.errors import InspectorError, OutputWarning
from inspector.flows import kernels as K
from inspector.flows.frame import format_addresses
from inspector.meters import Meter
from inspector.protocols import CLEARTEXT, Detection
from inspector.report.output import append_whole, open_private
from inspector.text import file_name

_MIGRATION_PROTOCOLS = ("qemu-migration", "qemu-multifd")
_HTTP_CREDENTIALS = ("x_auth_token", "x_subject_token", "authorization", "password_in_body")


@dataclass(frozen=True)
class Alert:
    """One early alert; ``record()`` is its JSONL object."""

    ts: str           # when it fired, RFC 3339 UTC
    flow_start: str   # first packet of the flow, RFC 3339 UTC
    kind: str         # one of schema.ALERT_KINDS
    protocol: str     # detection protocol, or "secret:<kind>" for a secret-scan match
    orig: str         # originator host:port
    resp: str         # responder host:port
    transport: str    # tcp, udp, ...
    evidence: str     # the evidence line (redacted label for secrets)
    evidence_pcap: str = ""  # the flow's packets from this alert on (--write-pcap), "" when not kept

    def record(self) -> dict[str, str]:
        return {"type": "alert", **asdict(self)}

    def line(self) -> str:
        pcap = f" (packets: {self.evidence_pcap})" if self.evidence_pcap else ""
        return (f"ALERT {self.ts} {self.kind}: {self.orig} -> {self.resp} {self.transport} "
                f"[{self.protocol}] {self.evidence}{pcap}")


def alert_kind(d: Detection) -> str | None:
    """The alert a detection raises, if any: cleartext migration framing,
    NBD in clear, a libvirt tunnel carrying a QEMU stream, HTTP credentials."""
    if d.proves != CLEARTEXT:
        return None
    fields = d.fields if isinstance(d.fields, dict) else {}
    if d.protocol in _MIGRATION_PROTOCOLS:
        return "cleartext-migration"
    if d.protocol == "nbd":
        return "nbd-disk-in-clear"
    if d.protocol == "libvirt-rpc" and (fields.get("tunnelled_qevm") or fields.get("tunnel")):
        return "cleartext-migration"
    if d.protocol == "http" and any(fields.get(key) for key in _HTTP_CREDENTIALS):
        return "credentials"
    return None


def rfc3339(ns: int | None = None) -> str:
    when = datetime.now(UTC) if ns is None else datetime.fromtimestamp(ns / 1e9, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Alerter(Meter):
    """Turns detections and secret matches of watched flows into ``Alert``
    objects for ``emit``, once per (flow, kind): a meter whose
    ``on_detect`` and ``on_secret`` the detections and the secret scan call
    (``default_meters(on_detect=..., on_secret=...)``).

    ``evidence(flow, kind, orig, resp)``, when given, starts keeping the
    flow's packets and returns the file they go to (``EvidencePcaps.keep``).
    """

    def __init__(self, emit: Callable[[Alert], None],
                 evidence: Callable[[int, str, str, str], str] | None = None) -> None:
        self.emit = emit
        self.evidence = evidence
        self.told: set[tuple[int, str]] = set()

    def _endpoints(self, flow: int) -> tuple[str, str, str]:
        table = self.flows.table
        row, addr = table.flow[flow], table.flow_addr[flow]
        version = np.array([row[K.FL_IP_VERSION]] * 2)
        a, b = format_addresses(addr[[0, 2]], addr[[1, 3]], version)
        a = f"[{a}]" if ":" in a else a
        b = f"[{b}]" if ":" in b else b
        ends = (f"{a}:{row[K.FL_A_PORT]}", f"{b}:{row[K.FL_B_PORT]}")
        orig, resp = ends if self.flows.orig_is_a(flow) else ends[::-1]
        return orig, resp, {6: "tcp", 17: "udp", 132: "sctp"}.get(int(row[K.FL_PROTO]), str(row[K.FL_PROTO]))

    def _tell(self, flow: int, kind: str, protocol: str, evidence: str) -> None:
        if (flow, kind) in self.told or not self.flows.watched(flow):
            return
        self.told.add((flow, kind))
        orig, resp, transport = self._endpoints(flow)
        start = int(self.flows.table.flow[flow, K.FL_FIRST_TS])
        pcap = self.evidence(flow, kind, orig, resp) if self.evidence else ""
        self.emit(Alert(rfc3339(), rfc3339(start), kind, protocol, orig, resp, transport, evidence, pcap))

    def on_detect(self, flow: int, hits: list[Detection]) -> None:
        for d in hits:
            kind = alert_kind(d)
            if kind:
                self._tell(flow, kind, d.protocol, f"{d.direction or 'flow'}: {d.evidence}")

    def on_secret(self, flow: int, direction: int, kind: str, label: str) -> None:
        self._tell(flow, "credentials", f"secret:{kind}", label)

    def forget(self, fids: list[int]) -> None:
        """These flows ended: their ids will name new flows."""
        gone = set(fids)
        self.told = {(flow, kind) for flow, kind in self.told if flow not in gone}


MB = 1_000_000


@dataclass
class EvidenceFile:
    """One flow's evidence pcap: where, how much, and whether a cap stopped it."""

    path: Path
    packets: int = 0
    bytes: int = 0      # file size, headers included
    capped: str = ""    # "file" or "total" once a cap stopped it, "full" once its disk could take no more
    started: bool = field(default=False, repr=False)


def _file_part(endpoint: str) -> str:
    """``10.0.0.1:5000`` -> ``10.0.0.1-5000``, ``[fd00::1]:80`` -> ``fd00..1-80``."""
    host, _, port = endpoint.rpartition(":")
    return re.sub(r"[^0-9A-Za-z.]", "-", host.strip("[]").replace(":", ".")) + f"-{port}"


def _whole_records(ends: np.ndarray, written: int) -> int:
    """The bytes of the whole records among the first ``written`` (records ending at ``ends``)."""
    whole = int(np.searchsorted(ends, written, side="right"))
    return int(ends[whole - 1]) if whole else 0


class EvidencePcaps(Meter):
    """The packets of alerted flows, one pcap per flow in ``folder``.

    A meter: ``keep(flow, kind, orig, resp)`` (the ``Alerter``'s ``evidence``
    hook) names the flow's file, e.g.
    ``cleartext-migration_127.0.0.1-40000_127.0.0.1-49152.pcap``; after each
    batch the batch's packets of kept flows are appended: the batch the alert fired in, then every
    later one. Selection is a numpy mask over the batch's flow ids; only the
    selected records are written one by one. A file stops before the record
    that would take it past ``max_file_bytes``, every file stops once all
    of them reach ``max_total_bytes``. Files are nanosecond pcaps with the
    capture's link type and snaplen.

    A write the disk cannot take (full, an I/O error) is cut back to the
    file's last whole record; an ``OutputWarning`` names the file and every
    file stops there (``capped == "full"``), while the capture and the
    alerts go on. A file left without even its header is removed.

    Example::

        evidence = EvidencePcaps("evidence/", max_file_bytes=8 * MB)
        alerter = Alerter(print, evidence.keep)
        meters = default_meters(on_detect=alerter.on_detect, on_secret=alerter.on_secret) + [alerter, evidence]
        analyze_readers(readers, ..., meters=meters)
        evidence.close()
    """

    def __init__(self, folder: str | Path, *, max_file_bytes: int = 8 * MB, max_total_bytes: int = 64 * MB) -> None:
        self.folder = Path(folder)
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self.files: dict[int, EvidenceFile] = {}  # open flows' files, by flow id
        self.ended: list[EvidenceFile] = []  # files of flows that ended
        self.total_bytes = 0
        self._open = np.empty(0, dtype=np.int64)  # flows whose files still take packets
        self._link = (1, 262144)
        self.failed = False  # the disk could take no more: nothing more is written
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InspectorError(f"--write-pcap {folder}: {exc.strerror or exc}") from None

    def keep(self, flow: int, kind: str, orig: str, resp: str) -> str:
        if self.failed:
            return ""
        if flow not in self.files:
            path = self._new_file(f"{kind}_{_file_part(orig)}_{_file_part(resp)}")
            if path is None:
                return ""
            self.files[flow] = EvidenceFile(path)
            if self.total_bytes < self.max_total_bytes:
                self._open = np.append(self._open, flow)
            else:
                self.files[flow].capped = "total"
        return str(self.files[flow].path)

    def on_batch(self, batch: PacketBatch, flow_ids: np.ndarray, dirs: np.ndarray) -> None:
        self.write(self.flows.reader, batch, flow_ids)

    def write(self, reader: CaptureReader, batch: PacketBatch, flow_ids: np.ndarray) -> None:
        if reader.linktype is not None:
            self._link = (reader.linktype, reader.snaplen or 262144)
        if not self._open.size:
            return
        rows = np.flatnonzero(np.isin(flow_ids, self._open))
        if not rows.size:
            return
        sizes = W.record_sizes(batch, rows)
        pending: dict[int, list[bytes]] = {}
        for row, size, flow in zip(rows.tolist(), sizes.tolist(), flow_ids[rows].tolist()):
            entry = self.files[flow]
            if entry.capped:
                continue
            if entry.bytes + size + (0 if entry.started else W.FILE_HEADER_BYTES) > self.max_file_bytes:
                self._cap(flow, "file")
                continue
            if self.total_bytes + size > self.max_total_bytes:
                for other in self._open.tolist():
                    self._cap(other, "total")
                break
            if not entry.started:
                self._start(entry)
            pending.setdefault(flow, []).append(W.pcap_record(batch, row))
            entry.packets += 1
            entry.bytes += size
            self.total_bytes += size
        for flow, records in pending.items():
            entry, data, ends = self.files[flow], b"".join(records), np.cumsum([len(r) for r in records])
            kept = self._append(entry.path, data, ends)
            if kept < len(data):  # the disk is full: the records past ``kept`` are not in the file
                entry.packets -= len(records) - int(np.searchsorted(ends, kept, side="right"))
                entry.bytes -= len(data) - kept
                self.total_bytes -= len(data) - kept

    MAX_SAME_NAME = 10_000  # flows of one kind on one 4-tuple in one folder

    def _new_file(self, stem: str) -> Path | None:
        """A file of this run's own: created empty and exclusively (never over an
        earlier flow's evidence on the same 4-tuple, nor through a planted link),
        ``stem.pcap``, else ``stem_2.pcap`` ...; None when the disk can take no file."""
        for number in range(1, self.MAX_SAME_NAME + 1):
            path = self.folder / (f"{stem}.pcap" if number == 1 else f"{stem}_{number}.pcap")
            try:
                open_private(path, "xb").close()
                return path
            except FileExistsError:
                continue
            except OSError as exc:
                self._fail(path, exc)
                return None
        raise InspectorError(f"--write-pcap {self.folder}: {self.MAX_SAME_NAME} files named {stem} already")

    def _append(self, path: Path, data: bytes, ends: np.ndarray) -> int:
        """Append whole records (or the header; ``ends``: where each ends in
        ``data``); the bytes the disk took, up to the last whole record."""
        if self.failed:
            return 0
        try:
            with open_private(path, "ab") as handle:
                append_whole(handle.fileno(), data, lambda n: _whole_records(ends, n))
        except OSError as exc:
            self._fail(path, exc)
            return getattr(exc, "kept", 0)
        return len(data)

    def _fail(self, path: Path, exc: OSError) -> None:
        """The disk took no more: every file stops at its last whole record, told once."""
        self.failed = True
        for entry in self.files.values():
            entry.capped = entry.capped or "full"
        self._open = np.empty(0, dtype=np.int64)
        warnings.warn(f"--write-pcap {file_name(path)}: {exc.strerror or exc}; no more packets are kept in "
                      f"{file_name(self.folder)} (the capture and the alerts go on)", OutputWarning, stacklevel=3)

    def _start(self, entry: EvidenceFile) -> None:
        header = W.pcap_header(*self._link)
        if self._append(entry.path, header, np.array([len(header)])):
            entry.started = True
            entry.bytes = W.FILE_HEADER_BYTES
            self.total_bytes += W.FILE_HEADER_BYTES

    def _cap(self, flow: int, why: str) -> None:
        self.files[flow].capped = self.files[flow].capped or why
        self._open = self._open[self._open != flow]

    def forget(self, fids: list[int]) -> None:
        """These flows ended: their files take no more packets (the ids will name new flows)."""
        for flow in fids:
            entry = self.files.pop(flow, None)
            if entry is not None:
                self._finish(entry)
                self.ended.append(entry)
        self._open = self._open[~np.isin(self._open, fids)]

    @property
    def written(self) -> list[EvidenceFile]:
        """Every file, of ended flows and open ones."""
        return self.ended + list(self.files.values())

    def _finish(self, entry: EvidenceFile) -> None:
        """Every file named in an alert exists, a header alone if no packet came
        (removed if a full disk left it empty: an empty file is no pcap)."""
        if not entry.started:
            self._start(entry)
        if not entry.started:
            entry.path.unlink(missing_ok=True)

    def close(self) -> list[EvidenceFile]:
        """Finish every file; the list of them."""
        for entry in self.files.values():
            self._finish(entry)
        self._open = np.empty(0, dtype=np.int64)
        return self.written
