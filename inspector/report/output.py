"""Every output file inspector writes goes through here: reports, exports,
evidence pcaps, the spool, JSON Lines. They can hold hosts, credentials found
in clear and payload, and they are often written into shared folders, so
each is readable by its owner only (mode 0600, whatever the umask), is never
written through a symbolic link (one planted at the name, or at a temporary
name, fails the write instead of redirecting it), and a whole file is written
beside its target under a random name and renamed in place, so a reader (or
a failed run) sees the old file or the complete new one."""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

from inspector import text
from inspector.errors import InspectorError

EXPORT_FORMATS = ("csv", "parquet")  # of export.export_tables; here so --help need not load pandas
PRIVATE_MODE = 0o600
_OPEN_FLAGS = {"w": os.O_CREAT | os.O_TRUNC, "a": os.O_CREAT | os.O_APPEND, "x": os.O_CREAT | os.O_EXCL}


def check_not_input(out: str | os.PathLike, inputs: Iterable[str | os.PathLike]) -> None:
    """Refuse to write a report over one of the capture files being read."""
    target = Path(out).resolve()
    for path in inputs:
        if Path(path).resolve() == target:
            raise InspectorError(f"{out}: refusing to overwrite an input capture with a report")


def check_writable(out: str | os.PathLike, *, folder: bool = False) -> None:
    """Refuse an output that cannot be written: its folder missing or
    read-only (for an export folder, the nearest one that exists: it is made
    with its parents), or a folder where a file is wanted and the other way round."""
    path = Path(out)
    if path.exists() and path.is_dir() != folder:
        raise InspectorError(f"{text.file_name(path)}: is {'not ' if folder else ''}a folder; "
                             f"give {'a folder' if folder else 'a file name'} for this report")
    where = path if folder and path.exists() else path.parent
    while folder and not where.exists() and where != where.parent:  # an export folder is made with its parents
        where = where.parent
    if not where.is_dir():
        raise InspectorError(f"{text.file_name(path)}: cannot be written: folder {text.file_name(where)} "
                             "does not exist")
    if not os.access(where, os.W_OK | os.X_OK):
        raise InspectorError(f"{text.file_name(path)}: cannot be written: folder {text.file_name(where)} "
                             "is read-only")


def open_private(path: str | os.PathLike, mode: str = "wb") -> IO:
    """``open(path, mode)`` for writing (``w``), appending (``a``) or creating a
    new file only (``x``): the file created with (or set to) PRIVATE_MODE,
    never through a symbolic link."""
    flags = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | _OPEN_FLAGS[mode[0]]
    try:
        descriptor = os.open(path, flags, PRIVATE_MODE)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):  # EMLINK: O_NOFOLLOW on FreeBSD
            raise InspectorError(f"{path}: is a symbolic link; refusing to write through it") from None
        raise
    try:
        os.fchmod(descriptor, PRIVATE_MODE)  # an existing file keeps its mode through O_CREAT
        mode = mode.replace("x", "w")
        return os.fdopen(descriptor, mode, **({} if "b" in mode else {"encoding": "utf-8", "newline": ""}))
    except BaseException:
        os.close(descriptor)
        raise


class CutShort(OSError):
    """A write the disk took only part of (ENOSPC, EIO, a file size limit):
    ``kept`` bytes of it remain, up to the last whole line or record."""

    def __init__(self, cause: OSError, kept: int) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.kept = kept


def append_whole(descriptor: int, data: bytes, whole: Callable[[int], int]) -> None:
    """Append ``data`` to the file open at ``descriptor`` in whole lines or
    records: ``whole(n)`` says how many of the first ``n`` bytes make whole
    ones. A write the disk takes only part of is cut back to that many bytes
    (a reader of a JSON Lines file or a pcap never sees a torn line or
    record) and raises ``CutShort``."""
    before = os.fstat(descriptor).st_size
    view, written = memoryview(data), 0
    try:
        while written < len(data):
            count = os.write(descriptor, view[written:])
            if not count:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            written += count
    except OSError as exc:
        kept = whole(written)
        try:
            os.ftruncate(descriptor, before + kept)
        except OSError:
            pass  # the error raised says what matters; the torn tail cannot be helped
        raise CutShort(exc, kept) from None


def whole_lines(data: bytes) -> Callable[[int], int]:
    """For ``append_whole``: the bytes of the whole lines among the first ``n``."""
    return lambda n: data.rfind(b"\n", 0, n) + 1


def private_temporary(target: Path) -> tuple[int, Path]:
    """An open, empty PRIVATE_MODE file beside ``target`` under a random name
    (created exclusively: nothing planted there is followed), to write and
    then rename in place."""
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise InspectorError(f"{target}: folder {folder} does not exist")
    try:
        descriptor, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)  # O_EXCL, 0600
    except OSError as exc:
        raise InspectorError(f"{target}: cannot write in {folder}: {exc.strerror or exc}") from None
    return descriptor, Path(tmp)


def write_atomically(path: str | os.PathLike, write: Callable[[IO], None], *, binary: bool = False) -> None:
    """Write through a temporary file in the same folder, then rename it in place."""
    tmp = write_beside(path, write, binary=binary)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_beside(path: str | os.PathLike, write: Callable[[IO], None], *, binary: bool = False) -> Path:
    """``write`` a temporary file beside ``path`` (through its descriptor,
    never by name again); its path, for the caller to rename in place."""
    descriptor, tmp = private_temporary(Path(path))
    try:
        with os.fdopen(descriptor, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8",
                                                                                      "newline": ""})) as handle:
            write(handle)
    except OSError as exc:  # a full disk, a file size limit: one line naming the output
        tmp.unlink(missing_ok=True)
        raise InspectorError(f"{path}: cannot write: {exc.strerror or exc}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def replace_all(staged: list[tuple[Path, Path]]) -> None:
    """Rename each written temporary over its target; written all before
    any is renamed, so a failed write leaves the old set whole."""
    try:
        for tmp, target in staged:
            os.replace(tmp, target)
    finally:
        for tmp, _target in staged:
            tmp.unlink(missing_ok=True)
