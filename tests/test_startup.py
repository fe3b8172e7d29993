"""Start-up (issues 11 and 13): compiled kernels are cached in the user's
cache folder and never inside the package, a process that can write no
cache still works, the first run says it is compiling, a cached kernel loads
without numba's registries, and ``--help`` loads none of the heavy modules."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import inspector

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(inspector.__file__).resolve().parent
CAPTURE = ROOT / "captures" / "http-api.pcap"
HEAVY = ("numpy", "pandas", "numba", "pyarrow", "matplotlib", "rich")
COMPILING = "inspector: compiling packet kernels"
UNCREATABLE = "/proc/inspector-cache"  # not even root can create a folder in /proc


def cli_env(**changes: str) -> dict[str, str]:
    """The test's environment without the cache settings the test sets itself."""
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(changes)
    return env


def kernel_cache_files(folder: Path) -> dict[Path, int]:
    """numba's index (.nbi) and code (.nbc) files under ``folder``, with their mtimes."""
    return {p: p.stat().st_mtime_ns for pattern in ("*.nbi", "*.nbc") for p in folder.rglob(pattern)}


def analyze(out: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inspector", "analyze", str(CAPTURE), "--json", str(out), "-q"],
                          cwd=out.parent, env=env, capture_output=True, text=True, timeout=900, check=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    """A first run on an empty cache, a second run on the same cache, and a
    run that can create no cache folder (each in a process of its own)."""
    home = tmp_path_factory.mktemp("home")
    package_before = kernel_cache_files(PACKAGE)
    env = cli_env(HOME=str(home), XDG_CACHE_HOME=str(home / "cache"))
    first = analyze(home / "first.json", env)
    second = analyze(home / "second.json", env)
    package_after = kernel_cache_files(PACKAGE)
    uncached = analyze(home / "uncached.json", cli_env(HOME=str(home), XDG_CACHE_HOME=UNCREATABLE))
    return {"home": home, "first": first, "second": second, "uncached": uncached,
            "package_before": package_before, "package_after": package_after}


@pytest.mark.slow
def test_kernels_are_cached_in_the_user_cache_folder_not_in_the_package(runs):
    assert runs["first"].returncode == 0, runs["first"].stderr
    assert kernel_cache_files(runs["home"] / "cache" / "inspector" / "numba"), "no kernel cached in XDG_CACHE_HOME"
    assert runs["package_after"] == runs["package_before"], "kernel cache files written inside the package"


@pytest.mark.slow
def test_first_run_says_it_compiles_once_and_a_cached_run_says_nothing(runs):
    notices = [line for line in runs["first"].stderr.splitlines() if line.startswith(COMPILING)]
    assert notices == [f"{COMPILING} once (up to a minute; cached in ~/cache/inspector/numba)"], runs["first"].stderr
    assert runs["second"].returncode == 0, runs["second"].stderr
    assert runs["second"].stderr == ""


@pytest.mark.slow
def test_a_process_that_can_write_no_cache_still_works(runs):
    done = runs["uncached"]
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    notice = f"{COMPILING} (up to a minute; cache folder {UNCREATABLE}/inspector/numba is not writable, so every run compiles)"
    assert done.stderr.splitlines() == [notice]
    first = json.loads((runs["home"] / "first.json").read_text())
    uncached = json.loads((runs["home"] / "uncached.json").read_text())
    assert uncached == first
    assert [f["rule"] for f in uncached["findings"]] == ["api-credentials-in-clear"]


@pytest.mark.slow
def test_cached_kernels_load_without_numba_registries(runs):
    """A kernel loaded from the cache imports none of numba's implementation
    modules (nor, through their BLAS check, scipy.linalg; nor those whose code
    it inlined), and a kernel the caller compiles afterwards still gets them all."""
    probe = ("import sys, numba, numpy as np, inspector\n"
             "flows = inspector.analyze(sys.argv[1]).flows\n"
             "print(len(flows), sorted(m for m in ('numba.np.arraymath', 'numba.np.arrayobj', 'scipy.linalg')\n"
             "                         if m in sys.modules))\n"
             "print(numba.njit(lambda a: np.sum(np.sort(a)))(np.ones(3)))\n")
    env = cli_env(HOME=str(runs["home"]), XDG_CACHE_HOME=str(runs["home"] / "cache"))
    done = subprocess.run([sys.executable, "-c", probe, str(CAPTURE)], env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["3 []", "3.0"]


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["analyze", "--help"], ["live", "--help"]])
def test_help_and_version_load_no_heavy_module(argv):
    probe = ("import atexit, runpy, sys\n"
             f"atexit.register(lambda: print(sorted(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr))\n"
             f"sys.argv = ['inspector', *{argv!r}]\n"
             "runpy.run_module('inspector', run_name='__main__')\n")
    done = subprocess.run([sys.executable, "-c", probe], env=cli_env(), capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.strip()
    assert done.stderr.strip() == "[]"


def test_import_inspector_loads_no_heavy_module_until_a_name_is_used():
    probe = ("import sys, inspector\n"
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
             "inspector.Watchlist\n"
             "print('numpy' in sys.modules)\n"
             "print(inspector.analysis.analyze_readers.__name__)\n")
    done = subprocess.run([sys.executable, "-c", probe], env=cli_env(), capture_output=True, text=True,
                          timeout=120, check=True)
    assert done.stdout.splitlines() == ["[]", "True", "analyze_readers"]


@pytest.mark.parametrize("env, folder", [
    ({"NUMBA_CACHE_DIR": "/srv/kernels", "XDG_CACHE_HOME": "/xdg"}, "/srv/kernels"),
    ({"XDG_CACHE_HOME": "/xdg"}, "/xdg/inspector/numba"),
    ({"XDG_CACHE_HOME": "relative/ignored", "HOME": "/home/u"}, "/home/u/.cache/inspector/numba"),
    ({"HOME": "/home/u"}, "/home/u/.cache/inspector/numba"),
])
def test_cache_folder_follows_numba_then_xdg_then_home(monkeypatch, env, folder):
    from inspector.jit import cache_folder

    for name in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cache_folder() == Path(folder)


def test_the_callers_own_kernels_keep_their_cache_folder(tmp_path):
    """inspector's cache folder is numba's only while inspector's kernels are decorated."""
    (tmp_path / "mine.py").write_text("from numba import njit\n\n@njit(cache=True)\ndef twice(x):\n    return 2 * x\n")
    probe = "import inspector.flows.kernels, mine\nassert mine.twice(21) == 42\n"
    env = cli_env(HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache"))
    env["PYTHONPATH"] += os.pathsep + str(tmp_path)
    subprocess.run([sys.executable, "-c", probe], env=env, cwd=tmp_path, timeout=300, check=True)
    assert [p.name for p in (tmp_path / "__pycache__").glob("mine.twice-*.nbi")], "the caller's kernel moved"
    assert not [p for p in (tmp_path / "cache").rglob("*.nbi") if "twice" in p.name]


def test_live_tells_a_wrong_interface_before_compiling(tmp_path):
    """The sensor's checks run before its warm-up, which compiles on a cold cache."""
    done = subprocess.run([sys.executable, "-m", "inspector", "live", "-i", "nosuch0"],
                          env=cli_env(HOME=str(tmp_path), XDG_CACHE_HOME=str(tmp_path / "cache")), cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and "nosuch0" in done.stderr
    assert not kernel_cache_files(tmp_path / "cache")
