"""``inspector live --user``: the packets are parsed by an unprivileged process once tcpdump has opened
the capture (issue 17). A real sensor on loopback as root (as in CI), dropping to ``nobody``."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inspector.errors import InspectorError
from inspector.privileges import Identity, PrivilegeError, as_user, check_file_writable, resolve

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs root (the CI runs as root)")
STARTUP_SECONDS = 120  # the kernels compile before tcpdump starts: up to a minute on a fresh clone


def _nobody() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        pytest.skip("no user 'nobody'")


@pytest.fixture
def nobody_folder() -> Iterator[Path]:
    """A folder ``nobody`` owns and can reach (pytest's tmp_path is root's, mode 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="inspector-privileges-", dir="/tmp"))
    os.chown(folder, _nobody().pw_uid, _nobody().pw_gid)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def _status(pid: int, field: str) -> list[int]:
    line = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith(field))
    return [int(n) for n in line.split()[1:]]


def _descendants(pid: int) -> dict[int, str]:
    """pid -> command name of every process under ``pid`` (the reaper's ``python`` included)."""
    parents: dict[int, tuple[int, str]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        parents[int(stat.parent.name)] = (int(text[text.rindex(")") + 2:].split()[1]),
                                          text[text.index("(") + 1:text.rindex(")")])
    found, todo = {}, [pid]
    while todo:
        parent = todo.pop()
        for child, (ppid, name) in parents.items():
            if ppid == parent and child not in found:
                found[child] = name
                todo.append(child)
    return found


@needs_root
@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sensor_parses_as_nobody_and_still_captures(nobody_folder: Path, workers: int) -> None:
    nobody = _nobody()
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def sink() -> None:
        while True:
            conn, _ = server.accept()
            with conn:
                while conn.recv(1 << 16):
                    pass

    threading.Thread(target=sink, daemon=True).start()
    proc = subprocess.Popen([sys.executable, "-m", "inspector", "live", "-i", "lo", "-q", "--user", "nobody",
                             "--filter", f"tcp port {port}", "--idle-timeout", "1", "--stats-interval", "1",
                             "--jsonl", "live.jsonl", "--json", "result.json", "--csv", "flows.csv",
                             "--spool", "spool", "--workers", str(workers)],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=nobody_folder)
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not any("capturing on lo" in line for line in lines):
        assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
        time.sleep(0.05)
    try:
        assert _status(proc.pid, "Uid:") == [nobody.pw_uid] * 4, "".join(lines)
        assert _status(proc.pid, "Gid:") == [nobody.pw_gid] * 4
        tcpdumps = [pid for pid, name in _descendants(proc.pid).items() if name == "tcpdump"]
        capture_processes = [pid for pid in _descendants(proc.pid)  # forked: the sensor's command line
                             if b"inspector\0live" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert len(tcpdumps) == workers and len(capture_processes) == (workers if workers > 1 else 0)
        for pid in tcpdumps + capture_processes:
            assert _status(pid, "Uid:") == [nobody.pw_uid] * 4, pid
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"GET / HTTP/1.1\r\nHost: parsed-as-nobody\r\n\r\n")
        deadline = time.monotonic() + 20
        while not any("stats" in line and "kernel drops 0" in line and " 0 packets" not in line for line in lines):
            assert time.monotonic() < deadline, "".join(lines)  # tcpdump (as nobody) answers SIGUSR1
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGINT)  # a signal nobody's sensor passes on to nobody's tcpdump
    assert proc.wait(60) == 0, "".join(lines)
    assert "parsed as nobody" in "".join(lines)
    result = json.loads((nobody_folder / "result.json").read_text())
    assert any(f["resp_p"] == port for f in result["flows"])
    made = [nobody_folder / name for name in ("live.jsonl", "result.json", "flows.csv", "spool")]
    made += list((nobody_folder / "spool").rglob("*"))
    assert {(p.name, p.stat().st_uid) for p in made} == {(p.name, nobody.pw_uid) for p in made}


@needs_root
def test_an_output_nobody_cannot_write_is_refused_at_start(tmp_path: Path) -> None:
    """tmp_path is root's (0700): root could write there, the sensor after the drop could not."""
    for option in ("--json", "--jsonl", "--write-pcap", "--spool"):
        out = tmp_path / "out"
        done = subprocess.run([sys.executable, "-m", "inspector", "live", "-i", "lo", "--duration", "30",
                               "--user", "nobody", option, str(out)],
                              capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and len(lines) == 1, done.stderr
        assert str(tmp_path) in lines[0] and "nobody" in lines[0] and "cannot be written" in lines[0], lines
        assert not out.exists()


@needs_root
def test_the_user_behind_sudo_is_the_default() -> None:
    nobody = _nobody()
    identity = resolve(None, None, {"SUDO_UID": str(nobody.pw_uid), "SUDO_GID": str(nobody.pw_gid)})
    assert identity is not None and (identity.name, identity.uid, identity.gid) == ("nobody", nobody.pw_uid,
                                                                                   nobody.pw_gid)
    assert resolve(None, None, {}) is None  # root, no sudo, no --user: stays root (and says so)
    assert resolve(None, None, {"SUDO_UID": "0", "SUDO_GID": "0"}) is None
    assert resolve("root", None, {"SUDO_UID": str(nobody.pw_uid)}) is None  # asked for


@needs_root
def test_unknown_user_or_group_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(PrivilegeError, match="--user no-such-user-x: no such user"):
        resolve("no-such-user-x", None, {})
    with pytest.raises(PrivilegeError, match="--group no-such-group-x: no such group"):
        resolve("nobody", "no-such-group-x", {})
    done = subprocess.run([sys.executable, "-m", "inspector", "live", "-i", "lo", "--user", "no-such-user-x"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False)
    assert done.returncode == 2 and done.stderr.strip() == "inspector: error: --user no-such-user-x: no such user"


@needs_root
def test_checks_run_with_the_users_rights(tmp_path: Path, nobody_folder: Path) -> None:
    nobody = resolve("nobody", None, {})
    assert isinstance(nobody, Identity)
    as_user(nobody, lambda: check_file_writable(nobody_folder / "live.jsonl"))
    with pytest.raises(InspectorError, match=r"cannot be written.*as user nobody"):
        as_user(nobody, lambda: check_file_writable(tmp_path / "live.jsonl"))
    (nobody_folder / "roots.jsonl").write_text("")  # root's, 0644: nobody cannot append to it
    with pytest.raises(InspectorError, match=r"roots.jsonl: cannot be written \(permission denied\)"):
        as_user(nobody, lambda: check_file_writable(nobody_folder / "roots.jsonl"))
    assert os.getresuid() == (0, 0, 0)  # the checks ran in a child
