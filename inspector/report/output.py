"""Writing report files safely: atomically, and never over an input."""

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


def write_atomically(path: str | os.PathLike, write: Callable[[IO[str]], None]) -> None:
    """Write through a temporary file in the same folder, then rename it in place."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise InspectorError(f"{path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            write(handle)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
