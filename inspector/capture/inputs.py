"""What ``analyze`` reads: capture files, binary file objects, scapy packets.

Each becomes an ``Input`` that opens a ``CaptureReader`` and, for the
drill-down (``Analysis.packets``), opens it again: a file by its path, a
seekable file object from where it was, a sequence of scapy packets from its
start. A file named twice is read once (``InputWarning``): reading it twice
would count every packet twice. A folder stands for the capture files in it,
a glob pattern for the files it matches, in natural name order (``x-9``
before ``x-10``: the order tcpdump's rotated files are written in).

Several inputs are one capture unless grouped (``capture_groups``): by
file, or by folder (one folder per sensor).
"""

from __future__ import annotations

import glob
import io
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any, BinaryIO

from inspector.capture import scapy_io
from inspector.capture.reader import CaptureReader
from inspector.errors import CaptureError, ConfigError, InputWarning
from inspector.schema import GROUPINGS
from inspector.text import file_name

PathLike = str | os.PathLike


@dataclass
class Input:
    """One input: exactly one of ``path``, ``fileobj`` or ``packets`` is set."""

    name: str
    path: Path | None = None
    fileobj: BinaryIO | None = None
    packets: Iterable[Any] | None = None
    start: int = field(default=0, repr=False)  # where a seekable file object's capture begins

    def reader(self) -> CaptureReader:
        """A reader of this input from its start (the first time for a file object or packets)."""
        if self.path is not None:
            return CaptureReader(self.path)
        if self.fileobj is not None:
            return CaptureReader(self.name, stream=self.fileobj)
        return CaptureReader(self.name, stream=scapy_io.PacketStream(self.packets))  # type: ignore[arg-type]

    def reread(self) -> CaptureReader:
        """A reader of this input again, for the drill-down; ``CaptureError`` when it cannot be read twice."""
        if self.fileobj is not None:
            if self.fileobj.closed or not self.fileobj.seekable():
                raise CaptureError(self.name, "this file object is closed or cannot seek, so its packets cannot be "
                                              "read again; analyze the capture file by its path")
            self.fileobj.seek(self.start)
        elif self.packets is not None and not isinstance(self.packets, Sequence) \
                and not scapy_io.is_packet_list(self.packets):
            raise CaptureError(self.name, "these scapy packets came from an iterator, which cannot be read again; "
                                          "pass a PacketList or a list")
        return self.reader()

    def size(self) -> int:
        """Bytes of the file, for progress (0 when unknown)."""
        try:
            if self.path is not None:
                return self.path.stat().st_size
            if self.fileobj is not None:
                return os.fstat(self.fileobj.fileno()).st_size - self.start
        except (OSError, ValueError):
            pass
        return 0


def inputs_of(sources: Any) -> list[Input]:
    """The inputs ``analyze`` was given: a path, a binary file object, scapy
    packets, or an iterable of paths, file objects and packet lists; a file
    named twice is kept once, with a warning."""
    if _is_single(sources):
        items: Iterable[Any] = [sources]
    else:
        iterator = iter(sources)
        first = next(iterator, None)
        if scapy_io.is_packet(first):  # an iterable of packets is one input (a list stays one: read again)
            items = [sources if isinstance(sources, Sequence) else chain([first], iterator)]
        else:
            items = [] if first is None else chain([first], iterator)
    inputs: list[Input] = []
    seen: dict[tuple[int, int], str] = {}
    for item in chain.from_iterable(map(_expanded, items)):
        one = _input_of(item, len(inputs))
        identity = _file_identity(one.path) if one.path is not None else None
        if identity is not None and identity in seen:
            warnings.warn(InputWarning(f"{one.name}: the same file as {seen[identity]}, given again; read once"),
                          stacklevel=3)
            continue
        if identity is not None:
            seen[identity] = one.name
        inputs.append(one)
    _name_apart(inputs)
    return inputs


CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap", ".dmp", ".gz")


def _expanded(item: Any) -> Iterable[Any]:
    """A folder's capture files, a glob pattern's matches (naturally sorted), or the item itself."""
    if not isinstance(item, (str, os.PathLike)):
        return [item]
    path = Path(item)
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and _is_capture_name(p.name)]
        if not found:
            raise CaptureError(path, "a folder without capture files (*.pcap, *.pcapng, *.cap, *.dmp, or gzip'd)")
        return sorted(found, key=natural_key)
    if not path.exists() and glob.has_magic(str(item)):
        matches = [m for m in glob.glob(str(item)) if Path(m).is_file()]
        if not matches:
            raise CaptureError(str(item), "no file matches this pattern")
        return sorted(matches, key=natural_key)
    return [item]


def _is_capture_name(name: str) -> bool:
    """tcpdump's rotated files end in a number after the suffix (``x.pcap12``)."""
    return not name.startswith(".") and re.sub(r"\d+$", "", name.lower()).endswith(CAPTURE_SUFFIXES)


def natural_key(path: PathLike) -> list[Any]:
    """Sort key putting ``x-9`` before ``x-10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", str(path))]


def capture_groups(inputs: list[Input], group_by: str = "none") -> list[list[Input]]:
    """The captures among ``inputs`` (each read in order as one, a flow
    crossing two files staying one flow): all of them (``none``), each file
    (``file``), or the files of each folder (``folder``: one sensor's rotated
    files per folder), in the order first given."""
    if group_by not in GROUPINGS:
        raise ConfigError(f"group_by must be one of {', '.join(GROUPINGS)}, not {group_by!r}")
    if group_by == "none":
        return [inputs] if inputs else []
    groups: dict[Any, list[Input]] = {}
    for number, one in enumerate(inputs):
        key = number if group_by == "file" or one.path is None else one.path.resolve().parent
        groups.setdefault(key, []).append(one)
    return list(groups.values())


def _is_single(source: Any) -> bool:
    return isinstance(source, (str, os.PathLike, bytes)) or hasattr(source, "read") \
        or scapy_io.is_packet_list(source) or scapy_io.is_packet(source)


def _input_of(item: Any, index: int) -> Input:
    if isinstance(item, (str, os.PathLike)):
        return Input(file_name(item), path=Path(item))
    if isinstance(item, bytes):
        raise ConfigError("analyze() takes paths, binary file objects or scapy packets, not bytes: "
                          "wrap them in io.BytesIO")
    if hasattr(item, "read"):
        return _file_object_input(item, index)
    if scapy_io.is_packet(item):
        return Input("<scapy packets>", packets=[item])
    if scapy_io.is_packet_list(item):
        return Input(f"<scapy {item.listname}>", packets=item)
    if isinstance(item, Iterable):
        return Input("<scapy packets>", packets=item)
    raise ConfigError(f"analyze() takes paths, binary file objects or scapy packets, not {type(item).__name__}")


def _file_object_input(fileobj: Any, index: int) -> Input:
    if isinstance(fileobj, io.TextIOBase):
        raise ConfigError(f"{getattr(fileobj, 'name', 'a file object')}: opened in text mode; open it with 'rb'")
    name = getattr(fileobj, "name", None)
    start = fileobj.tell() if _seekable(fileobj) else 0
    return Input(name if isinstance(name, str) else f"<file object {index + 1}>", fileobj=fileobj, start=start)


def _seekable(fileobj: Any) -> bool:
    try:
        return bool(fileobj.seekable())
    except (AttributeError, OSError, ValueError):
        return False


def _file_identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of an existing file; None for one the reader will report as missing."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _name_apart(inputs: list[Input]) -> None:
    """Give inputs that share a name (two packet lists, two file objects) distinct ones: ``flows.input`` names them."""
    taken: dict[str, int] = {}
    for one in inputs:
        taken[one.name] = taken.get(one.name, 0) + 1
    for name in [n for n, count in taken.items() if count > 1]:
        for number, one in enumerate([i for i in inputs if i.name == name], start=1):
            one.name = f"{name} #{number}"
