"""Issue 13, "Reports and CLI": what a newcomer saw in the reports and the
terminal, on the shipped captures: piped output, a closed pipe, file modes,
Markdown arrows, HTML remediation code, TLS versions, link type names."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import inspector
from inspector.cli import main
from inspector.findings.facts import pages
from inspector.report.html import write_html

ROOT = Path(__file__).resolve().parents[1]
PLAIN = ROOT / "captures" / "qemu-plain.pcap.gz"
TLS = ROOT / "captures" / "qemu-tls.pcap.gz"
API = ROOT / "captures" / "http-api.pcap"


def _run_cli(*args: object, **kwargs) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {"PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "inspector", *map(str, args)], env=env, cwd=ROOT,
                          capture_output=kwargs.pop("stdout", None) is None, **kwargs)


def _errors(stderr: bytes) -> list[str]:
    """stderr lines other than the one-time 'compiling' notice."""
    return [line for line in stderr.decode().splitlines() if "compiling" not in line]


def test_piped_summary_is_100_columns_without_padding():
    done = _run_cli("analyze", PLAIN)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.decode().splitlines()
    assert max(map(len, lines)) <= 100
    assert not [line for line in lines if line != line.rstrip()]
    assert any(line.rstrip().endswith("2.9 MiB / 0 B") for line in lines)  # never wrapped inside the cell


def test_a_closed_pipe_ends_the_output_not_the_run():
    """`inspector analyze ... | head -1`: the reader is gone before the summary is written."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = _run_cli("analyze", PLAIN, stdout=write_end, stderr=subprocess.PIPE)
    finally:
        os.close(write_end)
    assert done.returncode == 0
    assert _errors(done.stderr) == []


def test_every_output_file_is_private(tmp_path):
    previous = os.umask(0o022)
    try:
        for fmt in ("csv", "parquet"):
            out = tmp_path / fmt
            out.mkdir()
            result = CliRunner().invoke(main, ["analyze", str(PLAIN), "-q", "--html", str(out / "r.html"),
                                               "--markdown", str(out / "r.md"), "--json", str(out / "r.json"),
                                               "--csv", str(out / "flows.csv"), "--export", str(out / "tables"),
                                               "--export-format", fmt])
            assert result.exit_code == 0, result.output
    finally:
        os.umask(previous)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 20
    assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {p.name: "0o600" for p in written}
    assert "mode 0600" in (ROOT / "README.md").read_text()


def test_markdown_arrows_are_arrows(tmp_path):
    out = tmp_path / "r.md"
    result = CliRunner().invoke(main, ["analyze", str(PLAIN), "-q", "--markdown", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "127.0.0.1:57972 -> 127.0.0.1:49152" in text and "-&gt;" not in text


@pytest.fixture(scope="module")
def plain_and_tls_page() -> str:
    handle = io.StringIO()
    write_html(inspector.analyze([PLAIN, TLS]), handle)
    return handle.getvalue()


def test_html_remediation_shows_code_not_backticks(plain_and_tls_page):
    page = plain_and_tls_page
    assert "<code>[libvirt] live_migration_with_native_tls = true</code>" in page
    remediation = page.split("<h4>Remediation</h4>")[1:]
    assert remediation and not any("`" in part.split("</ol>")[0] for part in remediation)


def test_html_names_tls_version_and_link_type_once(plain_and_tls_page):
    assert "TLS 1.3" in plain_and_tls_page and "TLS TLS" not in plain_and_tls_page
    assert "<td>Ethernet (1)</td>" in plain_and_tls_page


def test_pages_are_named_only_when_a_whole_page_fits():
    assert pages(3000) == "2.9 KiB"
    assert pages(4096) == "4.0 KiB (up to 1 4 KiB page)"
    assert pages(3 * 1024 * 1024) == "3.0 MiB (up to 768 4 KiB pages)"
