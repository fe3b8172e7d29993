"""Writing report files safely: atomically, never over an input, and
readable by their owner only (mode 0600): reports, exports and evidence can
hold hosts, credentials found in clear and payload, so every output file of
inspector gets the same private mode, whatever the umask."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from inspector.errors import InspectorError

EXPORT_FORMATS = ("csv", "parquet")  # of export.export_tables; here so --help need not load pandas


def check_not_input(out: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse to write a report over one of the capture files being read."""
    target = Path(out).resolve()
    for path in inputs:
        if Path(path).resolve() == target:
            raise InspectorError(f"{out}: refusing to overwrite an input capture with a report")


PRIVATE_MODE = 0o600


def open_private(path: str | os.PathLike, mode: str = "wb") -> IO:
    """``open(path, mode)`` for writing or appending, the file created with (or
    set to) PRIVATE_MODE."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_APPEND if mode.startswith("a") else os.O_TRUNC)
    descriptor = os.open(path, flags, PRIVATE_MODE)
    try:
        os.fchmod(descriptor, PRIVATE_MODE)  # an existing file keeps its mode through O_CREAT
        return os.fdopen(descriptor, mode, **({} if "b" in mode else {"encoding": "utf-8"}))
    except BaseException:
        os.close(descriptor)
        raise


def private_temporary(target: Path) -> Path:
    """An empty PRIVATE_MODE file beside ``target`` to write into before renaming it in place."""
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise InspectorError(f"{target}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)  # mkstemp: mode 0600
    os.close(fd)
    return Path(tmp)


def write_atomically(path: str | os.PathLike, write: Callable[[IO[str]], None]) -> None:
    """Write through a temporary file in the same folder, then rename it in place."""
    target = Path(path)
    tmp = private_temporary(target)
    try:
        with open(tmp, "w", encoding="utf-8", newline="") as handle:
            write(handle)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
