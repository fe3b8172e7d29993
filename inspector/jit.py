"""Compiled kernels: numba's ``njit``, cached in the user's cache folder.

By default numba caches a kernel beside its source (``__pycache__``), that
is inside site-packages, where the files outlive a reinstall and can shadow
an editable install. Here the cache lives in ``$NUMBA_CACHE_DIR`` when the
user set it, else ``$XDG_CACHE_HOME/inspector/numba`` (``~/.cache/...``).
When that folder cannot be written, kernels are compiled in memory on every
run (slow, but no traceback): numba would otherwise fall back to the source
folder, or fail at import with "no locator available".

Loading a cached kernel skips numba's registry refresh (see ``_KernelCache``);
compiling one still does it, as numba's compiler refreshes on its own.

The modules with kernels import ``njit`` from here; ``tell_when_compiling``
lets the command line say why a first run is slow.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache, cached_property
from hashlib import sha256
from pathlib import Path

import llvmlite.binding as llvm
import numba
from numba.core import environment, event
from numba.core.caching import FunctionCache, NullCache
from numba.core.runtime import rtsys


def cache_folder() -> Path | None:
    """Where compiled kernels are kept, or None when no absolute folder is known."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"]).expanduser().absolute()
    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):  # the XDG spec: a relative value is ignored
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base, "inspector", "numba") if os.path.isabs(base) else None


def _writable(folder: Path | None) -> bool:
    """Create the folder if needed and check a file can be written in it (numba's own test)."""
    if folder is None:
        return False
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=folder).close()
    except OSError:
        return False
    return True


class _KernelCache(FunctionCache):
    """numba's own on-disk cache (same files, same index keys), but loading a
    kernel only starts numba's runtime (NRT) instead of refreshing the target
    context: a refresh imports every numba implementation module (~0.15 CPU s)
    and, through ``numba.np.arraymath``'s BLAS check, all of ``scipy.linalg``
    where scipy is installed (~0.25 CPU s). A cached kernel is already linked
    machine code and needs none of them; a cache miss compiles through
    numba's compiler, which refreshes the context itself. Nor does loading
    import the numba modules whose code a kernel inlined (see ``_environment``).

    numba stamps a kernel by its own file's content, but a kernel compiles in
    the kernels and constants of the modules it imports (``decode.py`` holds
    ``linklayer.py``, ``wire.py`` and ``constants.py``): the stamp here also
    covers the other modules of its folder and of ``inspector/capture``, so
    editing one of them recompiles instead of loading stale machine code."""

    def __init__(self, py_func: Callable) -> None:
        super().__init__(py_func)
        folder = Path(py_func.__code__.co_filename).parent
        self._cache_file._source_stamp = (self._cache_file._source_stamp, _sources_stamp(folder))

    def load_overload(self, sig, target_context):
        rtsys.initialize(target_context)
        rebuild, environment._rebuild_env = environment._rebuild_env, _environment
        try:
            with self._guard_against_spurious_io_errors(), _no_llvm_lock_events():
                return self._load_overload(sig, target_context)
        finally:
            environment._rebuild_env = rebuild


@cache
def _sources_stamp(folder: Path) -> str:
    """A digest of the Python sources a kernel of ``folder`` may compile in."""
    digest = sha256()
    for source in sorted({*folder.glob("*.py"), *(Path(__file__).parent / "capture").glob("*.py")}):
        digest.update(source.name.encode() + b"\0" + source.read_bytes())
    return digest.hexdigest()


@contextmanager
def _no_llvm_lock_events() -> Iterator[None]:
    """Without numba's callbacks on llvmlite's lock: loading a kernel makes
    ~250 LLVM calls, and around each numba broadcasts two events to time its
    compiles (~0.02 CPU s for the ten kernels a small capture loads). Where
    llvmlite keeps its callbacks elsewhere, nothing changes."""
    lock = getattr(getattr(llvm.ffi, "lib", None), "_lock", None)
    callbacks = list(getattr(lock, "_cblist", ()))
    for acquired, released in callbacks:
        llvm.ffi.unregister_lock_callback(acquired, released)
    try:
        yield
    finally:
        for acquired, released in callbacks:
            llvm.ffi.register_lock_callback(acquired, released)


def _environment(module: str, consts: list, name: str) -> environment.Environment:
    """numba's ``_rebuild_env`` (what unpickling a kernel calls for each function
    it holds), minus the import of a numba module not loaded yet: a kernel
    that inlined ``np.empty`` holds an environment of ``numba.np.arrayobj``,
    whose import costs ~0.08 CPU s. An environment's module dict is read only
    by object-mode code, which numba's own implementations never are; its
    ``__name__`` is kept for pickling."""
    if not module.startswith("numba.") or module in sys.modules:
        return _rebuild_env(module, consts, name)
    env = environment.lookup_environment(name)
    if env is None:
        env = environment.Environment({"__name__": module})
        env.consts[:] = consts
        env.env_name = name
        environment.Environment._memo[name] = env
    return env


_rebuild_env = environment._rebuild_env


CACHE_FOLDER = cache_folder()
CACHING = _writable(CACHE_FOLDER)
_CACHED_KERNELS: list = []  # for stop_caching_if_unwritable
_QUIET = False  # a compile that is not the kernels' (load_before_drop): not told


def njit(cache: bool = False, **options) -> Callable[[Callable], Callable]:
    """``numba.njit(**options)``, caching (when asked) only where ``CACHE_FOLDER``
    is writable. numba fixes a kernel's cache path when it makes its cache, so
    ``numba.config.CACHE_DIR`` is ours only meanwhile: the caller's own
    kernels keep their cache where they had it."""
    def decorate(function: Callable) -> Callable:
        kernel = numba.njit(**options)(function)
        if cache and CACHING:
            kernel._cache = _LazyCache(kernel.py_func)  # what cache=True does, with our cache class
            _CACHED_KERNELS.append(kernel)
        return kernel
    return decorate


def load_before_drop() -> None:
    """Before a change of user (``privileges.drop``): load every kernel
    specialization in the cache, and the modules numba's compiler uses
    (its target context's refresh, a tiny compile, not told as one), while
    this process can still read them: a Python or cache under /root is
    closed to ``nobody``, and a packet must not be what first needs one."""
    from numba.core.registry import cpu_target

    context = cpu_target.target_context
    context.refresh()
    codegen = context.codegen()
    for kernel in _CACHED_KERNELS:
        try:
            index = kernel._cache._cache_file._load_index()
        except (OSError, EOFError, ValueError):
            continue
        for key in index:
            if key == kernel._cache._index_key(key[0], codegen):  # this code's, on this machine
                kernel.compile(key[0])
    global _QUIET
    _QUIET = True
    try:
        numba.njit(_tiny)(0)
    finally:
        _QUIET = False


def _tiny(n: int) -> int:
    return n + 1


def stop_caching_if_unwritable() -> None:
    """After a change of user (``privileges.drop``): when the cache folder is
    no longer this process's (``~root/.cache`` for ``--user nobody``), kernels
    not loaded yet compile in memory; reading its index would fail."""
    if CACHING and not _writable(CACHE_FOLDER):
        for kernel in _CACHED_KERNELS:
            kernel._cache = NullCache()


class _LazyCache:
    """A kernel's ``_KernelCache``, made when numba first asks for it: making one
    looks for the cache folder and checks it is writable (~0.1 ms), and most of
    the ~70 kernels are never called from Python (inlined, or not on the path
    of a given capture)."""

    def __init__(self, py_func: Callable) -> None:
        self._py_func = py_func

    @cached_property
    def _cache(self) -> _KernelCache:
        saved, numba.config.CACHE_DIR = numba.config.CACHE_DIR, str(CACHE_FOLDER)
        try:
            return _KernelCache(self._py_func)
        finally:
            numba.config.CACHE_DIR = saved

    def __getattr__(self, name: str):
        return getattr(self._cache, name)


def compiling_notice() -> str:
    """The line that tells why the first run is slow, and where the result is kept."""
    if not CACHING:
        where = f"cache folder {CACHE_FOLDER} is not writable, so every run compiles" if CACHE_FOLDER \
            else "no cache folder (set XDG_CACHE_HOME or NUMBA_CACHE_DIR), so every run compiles"
        return f"compiling packet kernels (up to a minute; {where})"
    home = os.path.expanduser("~")  # "~" itself when there is no home: then the full path is shown
    shown = f"~/{CACHE_FOLDER.relative_to(home)}" if os.path.isabs(home) and CACHE_FOLDER.is_relative_to(home) \
        else str(CACHE_FOLDER)
    return f"compiling packet kernels once (up to a minute; cached in {shown})"


class _FirstCompile(event.Listener):
    """Calls ``tell`` once, when numba starts compiling (a kernel found in the
    cache is loaded without a compile event)."""

    def __init__(self, tell: Callable[[str], None]) -> None:
        self.tell: Callable[[str], None] | None = tell

    def on_start(self, _event: event.Event) -> None:
        if self.tell and not _QUIET:
            tell, self.tell = self.tell, None
            tell(compiling_notice())

    def on_end(self, _event: event.Event) -> None:
        pass


def tell_when_compiling(tell: Callable[[str], None]) -> None:
    """Call ``tell`` with ``compiling_notice()`` the first time this process
    compiles a kernel: never when every kernel it uses is cached."""
    event.register("numba:compile", _FirstCompile(tell))
