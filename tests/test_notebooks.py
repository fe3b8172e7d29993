"""The notebooks in notebooks/ run top to bottom, use the public API only, show
no secret, and are committed with their outputs (notebooks/execute.py).

Each notebook is executed with nbclient, with notebooks/ as the working
directory and a time limit per cell; an error in any cell fails the test
(nbclient raises CellExecutionError). The kernel is this interpreter: its
kernelspec is written to a temporary folder (``ipykernel.kernelspec``), so a
fresh machine needs no ``ipykernel install`` and an older "python3"
kernelspec of another Python is never picked up.

Cells are found by their id (``setup``, ``events``, ...): the checks below
name the cells they read.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import nbformat
import pytest
from ipykernel.kernelspec import write_kernel_spec
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

pytestmark = pytest.mark.slow  # notebooks executed in a kernel

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
WALKTHROUGH = "reviewer-walkthrough.ipynb"
CLASSIFIER = "classifier-explained.ipynb"
CELL_TIMEOUT = 300  # seconds per cell


def _execute(path: Path, kernel_dirs: list[str]) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    km = AsyncKernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=kernel_dirs))
    assert km.kernel_spec.argv[0] == sys.executable, km.kernel_spec.argv
    client = NotebookClient(nb, km=km, kernel_name="python3", timeout=CELL_TIMEOUT,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute(cleanup_kc=True)  # shuts the kernel down, also after a failing cell
    return nb


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """``executed(name)``: the notebook after a run (each notebook runs once per module)."""
    specs = tmp_path_factory.mktemp("kernels")
    write_kernel_spec(specs / "python3")  # argv: sys.executable -m ipykernel_launcher
    runs: dict[str, nbformat.NotebookNode] = {}

    def run(name: str) -> nbformat.NotebookNode:
        if name not in runs:
            runs[name] = _execute(NOTEBOOKS / name, [str(specs)])
        return runs[name]

    return run


def _cell(nb: nbformat.NotebookNode, cell_id: str) -> nbformat.NotebookNode:
    cells = [cell for cell in nb.cells if cell.get("id") == cell_id]
    assert len(cells) == 1, f"no code cell with id {cell_id!r}"
    return cells[0]


def _text(cell: nbformat.NotebookNode) -> str:
    """Everything a cell showed as text: streams, and plain text and HTML of results."""
    parts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            parts.append(out.text)
        elif out.output_type in ("execute_result", "display_data"):
            parts += [str(out.data.get("text/plain", "")), str(out.data.get("text/html", ""))]
    return "\n".join(parts)


def _images(cell: nbformat.NotebookNode) -> int:
    return sum("image/png" in out.get("data", {}) for out in cell.get("outputs", []))


def test_the_notebooks_are_there():
    assert {WALKTHROUGH, CLASSIFIER} <= {path.name for path in PATHS}


# What the shipped captures' secrets look like in clear: Keystone's password, Fernet
# tokens, broker and database URLs with their passwords (captures/README.md).
SECRET_VALUES = re.compile(r"s3cr3t|gAAAAA|://[a-z]+:[0-9a-f]{4,}@|BindPasswd: secret")
PUBLIC_IMPORTS = {"import inspector", "from inspector.report import plots"}


def _shown_text(cell: nbformat.NotebookNode) -> str:
    """Every text output of a cell (images left out: base64 holds any string)."""
    return _text(cell) + "".join(str(out.get("evalue", "")) for out in cell.get("outputs", []))


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_committed_notebooks_carry_their_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    run = f"run `python3 notebooks/execute.py {path.name}` and commit the outputs"
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), run  # one run, in order
    assert sum(_images(cell) for cell in code) >= 1, run
    assert not any(out.output_type == "error" for cell in code for out in cell.outputs), run
    assert not any("execution" in cell.metadata for cell in code), run  # no run timestamps
    assert not any(SECRET_VALUES.search(_shown_text(cell)) for cell in code)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebooks_use_the_public_api_only(path):
    """A plain install plus the `notebooks` extra runs them: no benchmarks, no test
    extras (dpkt), no internal modules."""
    source = "\n".join(cell.source for cell in nbformat.read(path, as_version=4).cells if cell.cell_type == "code")
    imports = {line.strip() for line in source.splitlines() if re.match(r"\s*(import|from) \S*inspector", line)}
    assert imports <= PUBLIC_IMPORTS, imports
    assert not re.search(r"sys\.path|benchmarks|dpkt|export_tables", source)
    for name in re.findall(r"inspector\.(\w+)", source):
        assert name in inspector_public(), name


def inspector_public() -> set[str]:
    import inspector

    return set(inspector.__all__) | {"report"}


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, executed):
    nb = executed(path.name)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.execution_count is not None for cell in code)
    assert sum(_images(cell) for cell in code) >= 1, "no plot was drawn"
    # secrets are redacted in the library: no cell shows one
    assert not any(SECRET_VALUES.search(_shown_text(cell)) for cell in code)


def test_walkthrough_outputs(executed):
    nb = executed(WALKTHROUGH)
    events = _text(_cell(nb, "events"))
    for protection in ("none", "TLS", "compressed only", "libvirt tunnel over plain TCP", "libvirt tunnel over TLS"):
        assert protection in events, protection
    severities = _text(_cell(nb, "severity"))
    assert re.search(r"critical\s+3", severities) and re.search(r"info\s+2", severities)
    findings = _text(_cell(nb, "findings"))  # severity >= "high"
    assert "critical" in findings and "plaintext-migration" in findings and "api-credentials-in-clear" in findings
    assert "tls-protected-migration" not in findings and "info" not in findings
    assert "fix: " in _text(_cell(nb, "first-finding"))
    assert "qemu-migration" in _text(_cell(nb, "plain-evidence"))
    assert "TLS 1.3" in _text(_cell(nb, "tls-evidence"))
    for plot in ("plot-protection", "plot-timeline", "plot-pair", "plot-pair-scatter"):
        assert _images(_cell(nb, plot)) == 1, plot
    secrets = _text(_cell(nb, "secrets"))
    assert "URL with credentials" in secrets and "bytes>" in secrets and "redacted" in secrets
    assert "secrets.parquet" in _text(_cell(nb, "export"))
    assert "'label'" in _text(_cell(nb, "export-check"))
    assert "payload bytes in the export: False" in _text(_cell(nb, "loaded-redacted"))
    assert "plaintext-migration" in _text(_cell(nb, "loaded-explore"))


def test_classifier_outputs(executed):
    nb = executed(CLASSIFIER)
    medians = _text(_cell(nb, "medians"))
    assert all(verdict in medians for verdict in ("plaintext", "compressed", "encrypted"))
    assert "rule reproduces the labels: True" in _text(_cell(nb, "labels"))
    evidence = _text(_cell(nb, "multifd-evidence"))
    assert "zstd-compressed pages" in evidence and "zlib-compressed pages" in evidence
    reasons = _text(_cell(nb, "reasons"))
    assert "qemu-multifd framing in clear" in reasons and "compressed, not encrypted" in reasons
    sizes = _text(_cell(nb, "cut"))
    assert "1 KiB" in sizes and "256 KiB" in sizes and "unknown 0.00" in sizes
    histograms = _text(_cell(nb, "plot-histograms"))  # every bulk stream the caption names has a line
    assert histograms.count("compressed, orig") == 2 and "plaintext, orig" in histograms
    assert histograms.count("encrypted, orig") == 2  # TLS and SSH
    for plot in ("plot-scatter", "plot-histograms", "plot-series"):
        assert _images(_cell(nb, plot)) == 1, plot
