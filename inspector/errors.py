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
