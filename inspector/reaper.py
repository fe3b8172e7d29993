"""What a SIGKILLed sensor leaves behind, cleaned up by a tiny process that outlives it.

SIGKILL runs no handler and no ``finally``: the sensor's tcpdump would go on
capturing on a quiet link (it only notices a dead reader when it next
writes) and its temporary spool, with the secrets found in clear, would stay
on disk. ``PR_SET_PDEATHSIG`` (``end_with_parent``) does not cover tcpdump:
the kernel clears it whenever a process changes its user, and tcpdump does
so right after opening the capture (to ``tcpdump`` by default on Debian, to
``-Z USER`` when the sensor drops its privileges). A sweep at the next start
would leave the secrets on disk until then, and cannot tell a dead run's
folder from a running one's.

So the sensor starts a reaper (``python -I -S reaper.py``, stdlib only) that
reads a pipe of which only the sensor holds the write end, and tells it what
to clean: ``kill PID`` (the reaper takes a pidfd at once, so a recycled pid
is never signalled) and ``remove FOLDER``. When the pipe closes (the sensor
exited, whatever killed it) the reaper sends SIGTERM to each process still
there (SIGKILL after ``GRACE`` seconds) and removes each folder (never
through a link). A sensor that exits normally has cleaned up already; the
reaper then finds nothing to do. After ``seal`` (the sensor is about to drop
its privileges) it takes no more orders: a sensor taken over by a hostile
packet cannot make the reaper, which may still be root, kill or remove
anything else.
"""

from __future__ import annotations

import ctypes
import os
import select
import shutil
import signal
import subprocess
import sys
import time

GRACE = 2.0  # seconds between SIGTERM and SIGKILL
REMOVE_TRIES = 10  # a folder still being written by a dying capture process is removed again, 0.5 s apart
_PR_SET_PDEATHSIG = 1  # linux/prctl.h
_PR_GET_PDEATHSIG = 2


def end_with_parent(signum: int = signal.SIGTERM) -> None:
    """Have the kernel send ``signum`` to this process when its parent dies
    (Linux ``PR_SET_PDEATHSIG``; cleared by a change of user, see
    ``privileges.drop``); in a ``preexec_fn`` it covers the child."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signum)
    except (OSError, AttributeError):
        pass  # not Linux: the reaper is all there is


def parent_death_signal() -> int:
    """This process's ``PR_SET_PDEATHSIG`` signal, 0 when none."""
    value = ctypes.c_int(0)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_GET_PDEATHSIG, ctypes.byref(value))
    except (OSError, AttributeError):
        return 0
    return value.value


class _Reaper:
    """The client end: this process's reaper and the pipe to it."""

    def __init__(self) -> None:
        self._process = subprocess.Popen([sys.executable, "-I", "-S", os.path.abspath(__file__)],
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True)  # no Ctrl-C for it
        self.pid = self._process.pid

    def tell(self, order: str, argument: str = "") -> None:
        if "\n" in argument:
            raise ValueError(f"reaper: a newline in {argument!r}")
        assert self._process.stdin is not None
        self._process.stdin.write(f"{order} {argument}\n".encode("utf-8", "surrogateescape"))
        self._process.stdin.flush()

    def forget(self) -> None:
        """In a forked child: close the inherited write end (the parent's reaper
        must see its pipe close when the parent dies, not when every child has)."""
        if self._process.stdin is not None:
            self._process.stdin.close()
        self._process.returncode = 0  # not this process's child: never waited for here


_reaper: _Reaper | None = None


def _this_process() -> _Reaper:
    global _reaper
    if _reaper is None:
        _reaper = _Reaper()
    return _reaper


def _after_fork_in_child() -> None:
    global _reaper
    if _reaper is not None:
        _reaper.forget()
        _reaper = None


os.register_at_fork(after_in_child=_after_fork_in_child)


def kill_on_death(pid: int) -> None:
    """SIGTERM (then SIGKILL) process ``pid``, a child of this one, if this process dies first."""
    _this_process().tell("kill", str(pid))


def remove_on_death(folder: str | os.PathLike) -> None:
    """Remove ``folder`` if this process dies before it does."""
    _this_process().tell("remove", os.fspath(folder))


def seal() -> None:
    """No more orders (before a drop of privileges); a no-op without a reaper."""
    if _reaper is not None:
        _reaper.tell("seal")


def _open_process(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (OSError, AttributeError):
        return None


def _signal(pidfd: int, signum: int) -> None:
    try:
        signal.pidfd_send_signal(pidfd, signum)
    except OSError:
        pass  # gone already


def _serve() -> None:
    """The reaper: take orders until ``seal`` or the pipe closes, then clean up."""
    pidfds: list[int] = []
    folders: list[str] = []
    sealed = False
    for raw in sys.stdin.buffer:
        order, _, argument = raw.decode("utf-8", "surrogateescape").rstrip("\n").partition(" ")
        if sealed:
            continue
        if order == "kill" and argument.isdigit():
            pidfd = _open_process(int(argument))
            if pidfd is not None:
                pidfds.append(pidfd)
        elif order == "remove" and argument:
            folders.append(argument)
        elif order == "seal":
            sealed = True
    for pidfd in pidfds:
        _signal(pidfd, signal.SIGTERM)
    deadline = time.monotonic() + GRACE
    for pidfd in pidfds:  # a pidfd is readable once its process has exited
        if not select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            _signal(pidfd, signal.SIGKILL)
    for folder in folders:
        for _ in range(REMOVE_TRIES):
            shutil.rmtree(folder, ignore_errors=True)  # never follows a link planted at or under it
            if not os.path.lexists(folder):
                break
            time.sleep(0.5)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _serve()
