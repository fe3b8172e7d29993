"""A progress bar for long captures, on the terminal only."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from inspector.analysis import Progress

SHOW_AFTER_BYTES = 64 * 1024 * 1024  # small captures finish before a bar helps


@contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Callable[[Progress], None] | None]:
    """Yield an ``on_progress`` callback drawing a rich bar on stderr, or None
    when stderr is not a terminal, the inputs are small, or it is disabled."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    bar = task = None

    def update(progress: Progress) -> None:
        nonlocal bar, task
        if task is None:
            if progress.file_bytes_total < SHOW_AFTER_BYTES:
                return
            bar = _bar()  # made only now: rich.progress costs a small capture's run ~20 ms to import
            bar.start()
            task = bar.add_task("read", total=progress.file_bytes_total, packets=0, files="")
        files = f"file {min(progress.files + 1, progress.files_total)}/{progress.files_total}" \
            if progress.files_total > 1 else ""
        bar.update(task, completed=progress.file_bytes, packets=progress.packets, files=files)

    try:
        yield update
    finally:
        if task is not None:
            bar.stop()


def _bar():
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress as Bar, TextColumn, TimeRemainingColumn

    return Bar(TextColumn("reading"), TextColumn("{task.fields[files]}"), BarColumn(), DownloadColumn(),
               TextColumn("{task.fields[packets]:,} packets"),
               TimeRemainingColumn(), console=Console(stderr=True), transient=True)
