"""Bad input on the command line: exit status 2 and exactly one line on
stderr, "inspector: error: <file>: <problem>", never a traceback.

Every bad file is made here in a tmp dir from a good capture, so each one is
wrong in exactly one way.
"""
from __future__ import annotations

import gzip
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import capture_variants as cv  # noqa: E402


def good_pcap() -> bytes:
    """A small valid little-endian usec Ethernet pcap (first packets of the base)."""
    recs = cv.encap(cv.base_ip_records(cv.BASES["lo_mixed"])[:6], cv.eth)
    return cv.pcap_bytes(cv.LT_ETHERNET, recs)


def good_pcapng() -> bytes:
    w = cv.PcapngWriter()
    w.shb()
    w.idb(cv.LT_ETHERNET)
    for r in cv.encap(cv.base_ip_records(cv.BASES["lo_mixed"])[:6], cv.eth):
        w.epb(0, r)
    return w.getvalue()


def patched(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


# name -> (file name, contents); None contents = the file does not exist
def _bad_cases() -> dict[str, tuple[str, bytes | None]]:
    pcap, ng = good_pcap(), good_pcapng()
    text = b"".join(b"line %d: this is not a capture file\n" % i for i in range(30))
    return {
        "text_file": ("notes.txt", text),
        "text_named_pcap": ("notes.pcap", text),
        "empty_file": ("empty.pcap", b""),
        "shorter_than_header": ("short.pcap", pcap[:10]),
        "bad_magic": ("bad_magic.pcap", patched(pcap, 0, "<I", 0xA1B2C3D5)),
        "bad_version": ("bad_version.pcap", patched(pcap, 4, "<H", 1)),  # major 1: refused, as by tshark
        "pcapng_garbage_first_block_length":
            ("garbage_len.pcapng", patched(ng, 4, "<I", 0xDEADBEEF)),
        "pcapng_first_block_length_too_small":
            ("small_len.pcapng", patched(ng, 4, "<I", 12)),
        "pcapng_first_block_length_not_multiple_of_4":
            ("odd_len.pcapng", patched(ng, 4, "<I", 29)),
        "pcapng_bad_byte_order_magic":
            ("bad_bom.pcapng", patched(ng, 8, "<I", 0x11223344)),
        "gzip_corrupt": ("corrupt.pcap.gz",
                         gzip.compress(pcap)[:10] + bytes(range(7, 250, 3)) * 4),
        "gzip_of_text": ("text.pcap.gz", gzip.compress(text)),
        "missing_file": ("does-not-exist.pcap", None),
    }


BAD_CASES = _bad_cases()


@pytest.fixture
def bad_file(request, tmp_path) -> Path:
    name, data = BAD_CASES[request.param]
    path = tmp_path / name
    if data is not None:
        path.write_bytes(data)
    return path


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTHONWARNINGS", None)
    env["COLUMNS"] = "120"
    return env


def run_cli(*args: str, console_script: bool = False) -> subprocess.CompletedProcess:
    if console_script:
        exe = shutil.which("inspector")
        if exe is None:
            pytest.skip("console script 'inspector' is not installed")
        cmd = [exe, *args]
    else:
        cmd = [sys.executable, "-m", "inspector", *args]
    return subprocess.run(cmd, cwd=REPO, env=cli_env(), capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=300)


def assert_one_error_line(stderr: str, path: Path, where: str) -> None:
    lines = [line for line in stderr.splitlines()
             if not line.startswith("inspector: compiling packet kernels")]  # a cold kernel cache
    assert "Traceback" not in stderr, f"{where}: traceback on stderr:\n{stderr}"
    assert len(lines) == 1, f"{where}: want exactly one stderr line, got {len(lines)}:\n{stderr}"
    line = lines[0]
    assert line.startswith("inspector: error: "), f"{where}: {line!r}"
    assert str(path) in line or path.name in line, f"{where}: file not named: {line!r}"
    assert "internal error" not in line, f"{where}: {line!r}"


@pytest.mark.parametrize("bad_file", list(BAD_CASES), indirect=True)
def test_bad_input_cli_subprocess(bad_file):
    cp = run_cli("analyze", str(bad_file))
    where = f"python -m inspector analyze {bad_file.name}"
    assert "Traceback" not in cp.stdout, f"{where}: traceback on stdout:\n{cp.stdout}"
    assert_one_error_line(cp.stderr, bad_file, where)
    assert cp.returncode == 2, f"{where}: exit status {cp.returncode}\n{cp.stderr}"


@pytest.mark.parametrize("bad_file", ["text_file", "gzip_corrupt", "missing_file"], indirect=True)
def test_bad_input_console_script(bad_file):
    cp = run_cli("analyze", str(bad_file), console_script=True)
    assert_one_error_line(cp.stderr, bad_file, "inspector analyze")
    assert cp.returncode == 2


def _click_command():
    cli = pytest.importorskip("inspector.cli")
    import click
    for name in ("main", "cli"):
        cmd = getattr(cli, name, None)
        if isinstance(cmd, click.Command):
            return cmd
    pytest.skip("no click command found in inspector.cli")


@pytest.mark.parametrize("bad_file", list(BAD_CASES), indirect=True)
def test_bad_input_clirunner(bad_file):
    from click.testing import CliRunner

    res = CliRunner().invoke(_click_command(), ["analyze", str(bad_file)])
    where = f"CliRunner analyze {bad_file.name}"
    assert res.exception is None or isinstance(res.exception, SystemExit), (
        f"{where}: raised {res.exception!r}")
    assert_one_error_line(res.stderr, bad_file, where)
    assert res.exit_code == 2, f"{where}: exit code {res.exit_code}"


def test_bad_file_among_good_ones_still_fails_cleanly(tmp_path):
    good = cv.make_variant("pcap_le_usec", tmp_path)
    bad = tmp_path / "notes.txt"
    bad.write_bytes(BAD_CASES["text_file"][1])
    cp = run_cli("analyze", str(good), str(bad))
    assert_one_error_line(cp.stderr, bad, "good + bad file")
    assert cp.returncode == 2


# --- damaged but readable captures are not bad input ------------------------

@pytest.mark.parametrize("name", cv.TRUNCATED_LAST_VARIANTS + ["snaplen96"])
def test_damaged_but_readable_capture_exits_0(name, tmp_path):
    path = cv.make_variant(name, tmp_path)
    cp = run_cli("analyze", "--all", str(path))
    assert "Traceback" not in cp.stderr + cp.stdout, cp.stderr
    assert "inspector: error" not in cp.stderr, cp.stderr
    assert cp.returncode == 0, cp.stderr


def test_header_only_pcap_is_an_empty_capture_not_an_error(tmp_path):
    path = tmp_path / "header_only.pcap"
    path.write_bytes(good_pcap()[:24])
    cp = run_cli("analyze", str(path))
    assert "Traceback" not in cp.stderr + cp.stdout, cp.stderr
    assert cp.returncode == 0, cp.stderr


def test_implausible_header_snaplen_is_read_like_tshark(tmp_path):
    """The header snaplen is advisory (libpcap and tshark ignore it): the
    records still decode, so this is not bad input."""
    path = tmp_path / "absurd_snaplen.pcap"
    path.write_bytes(patched(good_pcap(), 16, "<I", 0xFFFFFFF0))
    cp = run_cli("analyze", "--all", str(path))
    assert cp.returncode == 0, cp.stderr
    assert "tcp" in cp.stdout
