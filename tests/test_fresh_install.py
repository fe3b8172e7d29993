"""A newcomer's first hour (issue 13): the README's install-and-run command,
then the test command's editable install, in one fresh virtual environment,
must leave an ``inspector`` that works from any folder. The first run used to
write numba cache files into site-packages; after ``pip install -e`` those
folders shadowed the editable package (ImportError outside the repo root).

The venv sees the system's packages (numpy, pandas, numba ... are not
downloaded again); pip builds inspector itself from a copy of the tree."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SKIP = shutil.ignore_patterns(".git", "__pycache__", "build", "*.egg-info", ".data", ".pytest_cache", "report.html")


def readme_commands() -> tuple[str, str]:
    """The install-and-analyse command and the test command, as README.md gives them."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    first = re.search(r"^    (python3 -m pip install \. && inspector analyze .*)$", text, re.M)
    second = re.search(r"^    (bash \.ci/install-system-deps && python3 -m pip install -e '\.\[test\]' .*)$", text, re.M)
    assert first and second, "README.md no longer starts with the two commands this test follows"
    return first.group(1), second.group(1)


def run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800, check=False)


def test_readme_commands_in_one_venv_leave_a_working_inspector(tmp_path):
    analyse_command, test_command = readme_commands()
    tree = tmp_path / "inspector"
    shutil.copytree(ROOT, tree, ignore=SKIP)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    bin_dir = venv / "bin"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", HOME=str(tmp_path / "home"),
               VIRTUAL_ENV=str(venv), PIP_DISABLE_PIP_VERSION_CHECK="1")

    # 1. the README's first command, as written (python3 is the venv's)
    install, analyse = analyse_command.split(" && ", 1)
    done = run(["bash", "-c", install], tree, env)
    assert done.returncode == 0, done.stderr[-2000:]
    done = run(["bash", "-c", analyse], tree, env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "compiling" in done.stderr  # a first run says what it is doing
    assert (tree / "report.html").stat().st_size > 10_000
    site = Path(run(["python3", "-c", "import inspector, pathlib; print(pathlib.Path(inspector.__file__).parent)"],
                    tmp_path, env).stdout.strip())
    assert site.is_relative_to(venv), site
    assert not [p for pattern in ("*.nbi", "*.nbc") for p in site.rglob(pattern)], "kernel caches in site-packages"

    # 2. the test command's editable install (not the system packages or the suite: this test runs inside it)
    editable = test_command.split(" && ")[1]
    done = run(["bash", "-c", editable], tree, env)
    assert done.returncode == 0, done.stderr[-2000:]

    # 3. afterwards, from another folder
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = run(["inspector", "--version"], elsewhere, env)
    assert done.returncode == 0 and "inspector" in done.stdout, done.stderr
    done = run(["python3", "-c", "import inspector.capture.writer, inspector; print(inspector.__file__)"], elsewhere, env)
    assert done.returncode == 0 and done.stdout.strip().startswith(str(tree)), done.stderr
