"""Who the live sensor parses packets as: root only until its capture is open.

The packets the sensor decodes are written by whoever is on the wire. As
Suricata (``--user``/``--group``) and tcpdump (``-Z``) do, the sensor drops
to an unprivileged user once tcpdump has opened the capture and before the
first packet is parsed (``drop``: supplementary groups, group, user, in that
order, then checked with ``getresuid``/``getresgid`` and by failing to get
root back). tcpdump is given ``-Z`` the same user, so the sensor can still
signal it (SIGUSR1 for its counters, SIGINT to stop).

Which user (``resolve``): ``--user``/``--group``; else the user behind sudo
(``SUDO_UID``/``SUDO_GID``), who then owns the reports they asked for;
else, run as root with neither, it stays root and says so in one line, as
Suricata does without ``--user``: a root service's reports often go to
root's folders, and a silent default of ``nobody`` would refuse them. Not
run as root (tcpdump has the capabilities): there is nothing to drop.

The outputs are checked writable by that user at the start (``as_user``
runs the checks in a child that has dropped already), and what the sensor
made as root before the drop (the spool folder, a new ``--jsonl``, the
evidence folder) is handed over to it (``hand_over``).
"""

from __future__ import annotations

import grp
import os
import pwd
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from inspector import reaper
from inspector.errors import InspectorError


class PrivilegeError(InspectorError):
    """A user or group that does not exist, or a drop that did not take."""


@dataclass(frozen=True)
class Identity:
    """The unprivileged user the sensor parses packets as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementary groups: the user's (initgroups), as tcpdump -Z sets them

    def __str__(self) -> str:
        return f"{self.name} (uid {self.uid}, gid {self.gid})"


def _user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(name)) if name.isdigit() else pwd.getpwnam(name)
    except (KeyError, OverflowError):
        raise PrivilegeError(f"--user {name}: no such user") from None


def _group(name: str) -> int:
    try:
        return grp.getgrgid(int(name)).gr_gid if name.isdigit() else grp.getgrnam(name).gr_gid
    except (KeyError, OverflowError):
        raise PrivilegeError(f"--group {name}: no such group") from None


def resolve(user: str | None, group: str | None, environ: Mapping[str, str] = os.environ) -> Identity | None:
    """The user to drop to, or None to stay as is (see the module's docstring)."""
    if os.geteuid() != 0:
        if user and _user(user).pw_uid != os.geteuid() or group and _group(group) != os.getegid():
            raise PrivilegeError("--user/--group: only root can parse packets as another user; "
                                 "run it with sudo, or leave them out")
        return None
    sudo_uid = environ.get("SUDO_UID", "")
    if user:
        entry = _user(user)
        gid = entry.pw_gid
    elif sudo_uid.isdigit() and int(sudo_uid) != 0:
        entry = _user(sudo_uid)
        gid = int(environ["SUDO_GID"]) if environ.get("SUDO_GID", "").isdigit() else entry.pw_gid
    elif group:
        raise PrivilegeError(f"--group {group}: give --user too (as root without sudo the sensor stays root)")
    else:
        return None
    if group:
        gid = _group(group)
    if entry.pw_uid == 0:
        return None  # --user root: stays root, as asked
    return Identity(entry.pw_name, entry.pw_uid, gid, tuple(sorted(set(os.getgrouplist(entry.pw_name, gid)))))


def drop(identity: Identity | None) -> None:
    """Become ``identity`` for good (a no-op for None or when not root); keeps
    the parent-death signal, which the kernel clears on a change of user."""
    if identity is None or os.geteuid() != 0:
        return
    death = reaper.parent_death_signal()
    jit = sys.modules.get("inspector.jit")  # loaded: kernels may compile after the drop
    if jit:
        jit.load_before_drop()
    reaper.seal()  # the reaper, still root, takes no orders from an unprivileged sensor
    _become(identity)
    if death:
        reaper.end_with_parent(death)
    if jit:
        jit.stop_caching_if_unwritable()


def _become(identity: Identity) -> None:
    """setgroups, setgid, setuid (in that order), then prove root is gone."""
    os.setgroups(list(identity.groups))
    os.setgid(identity.gid)
    os.setuid(identity.uid)
    if os.getresuid() != (identity.uid,) * 3 or os.getresgid() != (identity.gid,) * 3:
        raise PrivilegeError(f"could not become {identity}: uids {os.getresuid()}, gids {os.getresgid()}")
    try:
        os.setuid(0)
    except PermissionError:
        pass
    else:
        raise PrivilegeError(f"became {identity} but could get root back")


def hand_over(identity: Identity | None, path: str | os.PathLike | None) -> None:
    """Give ``identity`` what root made at ``path`` (and under it, for a
    folder) before the drop; never through a link, others' files untouched."""
    if identity is None or path is None or os.geteuid() != 0:
        return
    top = Path(path)
    if not top.exists():
        return
    entries = [top] + ([Path(folder) / name for folder, dirs, files in os.walk(top) for name in dirs + files]
                       if top.is_dir() and not top.is_symlink() else [])
    for entry in entries:
        try:
            if entry.lstat().st_uid == 0:
                os.lchown(entry, identity.uid, identity.gid)
        except FileNotFoundError:
            continue


def as_user(identity: Identity | None, check: Callable[[], None]) -> None:
    """Run ``check`` (which raises ``InspectorError``) with the rights of
    ``identity``: in a forked child that drops first, so the kernel itself
    (modes, ACLs, read-only mounts) answers; the error comes back as one line."""
    if identity is None or os.geteuid() != 0:
        check()
        return
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no return from here
        status = 0
        try:
            os.close(read)
            _become(identity)
            check()
        except InspectorError as exc:
            os.write(write, f"{exc} (as user {identity.name}, who parses the packets: see --user)".encode())
            status = 1
        except OSError as exc:
            os.write(write, f"{exc.filename}: cannot be written: {exc.strerror} (as user {identity.name}, who "
                            "parses the packets: see --user)".encode())
            status = 1
        except BaseException as exc:  # noqa: BLE001 - told to the parent, which fails with it
            os.write(write, f"checking the outputs as user {identity.name}: {exc}".encode())
            status = 1
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        said = pipe.read().decode("utf-8", "replace")
    _, status = os.waitpid(pid, 0)
    if status != 0:
        raise PrivilegeError(said or f"checking the outputs as user {identity.name} failed (status {status})")


def check_file_writable(path: str | os.PathLike) -> None:
    """An output appended to (``--jsonl``): an existing file must be writable
    itself, a new one needs a writable folder."""
    from inspector.report.output import check_writable

    check_writable(path)
    if os.path.lexists(path) and not os.access(path, os.W_OK):
        raise InspectorError(f"{path}: cannot be written (permission denied)")
