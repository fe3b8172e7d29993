"""Errors the library raises; the CLI turns them into one-line messages."""

from __future__ import annotations

from pathlib import Path

from inspector.text import file_name


class InspectorError(Exception):
    """Base class: anything the user can fix (bad input, bad option)."""


class CaptureError(InspectorError):
    """An input file that cannot be read as a capture."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{file_name(path)}: {problem}")

    def __reduce__(self):
        """Pickled whole: a worker process or a Dask worker raises it in the caller."""
        return CaptureError, (self.path, self.problem)


class ConfigError(InspectorError):
    """A watchlist file or option that does not make sense."""


class InputWarning(UserWarning):
    """Inputs were given oddly but could be read (a file named twice is read once)."""


class OutputWarning(UserWarning):
    """An output the run writes as it goes (``--jsonl``, ``--write-pcap``, the
    spool) could take no more (a full disk): it stopped whole, the run goes on.
    The message names the output and what is lost; the CLI shows it as one line."""


class OutputError(InspectorError):
    """Some reports could not be written (a full disk, an I/O error); every
    other one was. ``failures``: one line each, naming the output."""

    def __init__(self, failures: list[str]) -> None:
        self.failures = failures
        super().__init__("; ".join(failures))

    def __reduce__(self):
        return OutputError, (self.failures,)
