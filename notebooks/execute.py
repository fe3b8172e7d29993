#!/usr/bin/env python3
"""Run the notebooks top to bottom and save them with their outputs, as committed.

    python3 notebooks/execute.py                      # every notebook here
    python3 notebooks/execute.py notebooks/classifier-explained.ipynb

Each runs in a kernel of this interpreter with notebooks/ as its working
directory; no run timestamps are recorded, so a re-run changes only what
the outputs show. Needs the ``notebooks`` extra (``pip install -e '.[notebooks]'``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
CELL_TIMEOUT = 300  # seconds


def execute(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)  # timestamps of an earlier run
    NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3", record_timing=False,
                   resources={"metadata": {"path": str(HERE)}}).execute()
    nbformat.write(nb, path)


def main(paths: list[str]) -> None:
    for path in [Path(p) for p in paths] or sorted(HERE.glob("*.ipynb")):
        print(f"executing {path.name}", file=sys.stderr)
        execute(path)


if __name__ == "__main__":
    main(sys.argv[1:])
