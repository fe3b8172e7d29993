"""Issue 13, "Reports and CLI": what a newcomer saw in the reports and the
terminal, on the shipped captures: piped output, a closed pipe, file modes,
Markdown arrows, HTML remediation code, TLS versions, link type names."""

from __future__ import annotations

import io
import json
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
    return subprocess.run([sys.executable, "-m", "inspector", *map(str, args)], env=env, cwd=ROOT, check=False,
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
    assert any(line.startswith("secrets to rotate: ") and " distinct (" in line for line in lines)
    assert any("rabbit://<9 bytes>:<10 bytes>@controller:5672" in line for line in lines)


def test_a_closed_pipe_ends_the_output_not_the_run():
    """`inspector analyze ... | head -1`: the reader goes away after one line."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"} | {"PYTHONPATH": str(ROOT)}
    done = subprocess.run(f"{sys.executable} -m inspector analyze {PLAIN} {API} --all | head -1; "
                          "echo status=${PIPESTATUS[0]} >&2", shell=True, executable="/bin/bash", env=env,
                          cwd=ROOT, capture_output=True, check=False)
    assert done.stdout.decode().startswith("inspector 2 file(s)")
    assert _errors(done.stderr) == ["status=0"]


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


@pytest.fixture(scope="module")
def every_capture():
    """All shipped captures analysed together (the newcomer's run: 17 findings)."""
    return inspector.analyze(sorted((ROOT / "captures").glob("*.pcap*")))


def _section(page: str, anchor: str) -> str:
    start = page.index(f'<section id="{anchor}">')
    return page[start:page.index("</section>", start)]


def _html(result) -> str:
    handle = io.StringIO()
    write_html(result, handle)
    return handle.getvalue()


def test_html_summary_lists_every_finding_above_info(every_capture, monkeypatch):
    from inspector.report import html

    summary = _section(_html(every_capture), "summary")
    findings = every_capture.findings
    above_info = findings[findings["severity"] > "info"]
    assert len(above_info) > 5
    for f in above_info.itertuples():
        assert f'href="#{f.finding}"' in summary, f.title
    for title in ("libvirt RPC readable on the network", "API credentials cross the network in clear",
                  "Secrets readable in cleartext payload"):
        assert title in summary
    monkeypatch.setattr(html, "MAX_SUMMARY_FINDINGS", 4)
    summary = _section(_html(every_capture), "summary")
    assert f'<a href="#findings">{len(above_info) - 4} more</a>' in summary


def test_reports_name_the_distinct_secrets_to_rotate(every_capture, tmp_path):
    from inspector.report.markdown import write_markdown
    from inspector.report.secret_digest import distinct_secrets

    digest = distinct_secrets(every_capture.secrets_raw(), every_capture.flows)
    listed = every_capture.secrets
    assert 1 < len(digest) < len(listed)
    assert digest.groupby(["kind", "hosts"]).size().sum() == len(digest)
    assert digest["occurrences"].sum() == len(listed)
    page = _html(every_capture)
    secrets = _section(page, "secrets")
    assert f"{len(digest)} distinct secrets to rotate" in secrets
    assert "rabbit://&lt;9 bytes&gt;:&lt;10 bytes&gt;@controller:5672" in secrets
    assert "10.48.0.1 -&gt; 10.48.0.2" in secrets and "127.0.0.1 -&gt; 127.0.0.1" in secrets
    assert "s3cr3t-Adm1n-pw" not in page and "1df4376f2b" not in page and "openstack:" not in page
    secrets_finding = page[page.index('id="F11"'):]
    exposed = secrets_finding.split("bytes exposed</dt><dd>", 1)[1].split("</dd>", 1)[0]
    assert exposed != "none" and "MiB" in exposed
    assert f"{len(digest)} distinct secrets to rotate</a>" in secrets_finding
    markdown = io.StringIO()
    write_markdown(every_capture, markdown)
    assert f"{len(digest)} distinct secret(s) to rotate" in markdown.getvalue()
    assert "rabbit://&lt;9 bytes>:&lt;10 bytes>@controller:5672" in markdown.getvalue()


MTU1500 = ROOT / "captures" / "qemu-plain-mtu1500.pcap.gz"


def test_diff_takes_the_watchlist_options_of_analyze(tmp_path):
    out = tmp_path / "diff.json"
    result = CliRunner().invoke(main, ["diff", str(MTU1500), str(MTU1500), "--internal-net", "10.47.0.0/16",
                                       "--ssh-ports", "22,2222", "--migration-ports", "49152-49261",
                                       "--libvirtd-ports", "16509", "--json", str(out)])
    assert result.exit_code == 0, result.output
    unchanged = [f["rule"] for f in json.loads(out.read_text())["unchanged"]]
    assert "migration-on-api-network" in unchanged  # only with the internal network named
    config = tmp_path / "watch.toml"
    config.write_text('[watch]\ninternal_nets = ["10.47.0.0/16"]\n')
    result = CliRunner().invoke(main, ["diff", str(MTU1500), str(MTU1500), "--watch-config", str(config)])
    assert result.exit_code == 0, result.output
    assert "[migration-on-api-network]" in result.output
    result = CliRunner().invoke(main, ["diff", str(MTU1500), str(MTU1500), "--ssh-ports", "x"])
    assert result.exit_code == 2 and result.output.startswith("inspector: error: ")


def test_diff_a_protection_lost_is_a_regression_not_a_fix(tmp_path):
    out = tmp_path / "diff.json"
    result = CliRunner().invoke(main, ["diff", str(TLS), str(PLAIN), "--json", str(out)])
    assert result.exit_code == 0, result.output
    comparison = json.loads(out.read_text())
    assert [f["rule"] for f in comparison["regressed"]] == ["tls-protected-migration"]
    assert comparison["fixed"] == []
    assert "0 fixed  2 new  0 unchanged  1 regressed" in result.output
    assert "regressed info     [tls-protected-migration]" in result.output
    # AFTER without a migration at all: nothing at or above --fail-on, but the protection is gone.
    result = CliRunner().invoke(main, ["diff", str(TLS), str(ROOT / "captures" / "ssh-bulk.pcap.gz"),
                                       "--fail-on", "critical"])
    assert "1 regressed" in result.output and "critical" not in result.output.split("regressed", 1)[1]
    assert result.exit_code == 3


def test_timeline_draws_every_flow_visibly(every_capture):
    from inspector.report import plots

    ax = plots.flow_timeline(every_capture.watched)
    ax.figure.canvas.draw()
    widths = [abs(bar.get_window_extent().width) for bar in ax.patches]
    assert len(widths) == len(every_capture.watched)
    shortest = every_capture.watched["duration"].min()
    assert shortest.total_seconds() < 0.05  # the critical 20 ms plaintext burst
    assert min(widths) >= 6 * ax.figure.dpi / 100  # pixels, not a 1-pixel sliver


def test_byte_histogram_legend_covers_no_line(every_capture):
    from inspector.report import plots

    ax = plots.byte_histograms(every_capture.byte_histograms, plots.notable_flows(every_capture.watched))
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    assert len(ax.get_legend().get_texts()) >= 3
    assert not legend.overlaps(ax.get_window_extent(renderer))
    assert not legend.overlaps(ax.xaxis.label.get_window_extent(renderer))
    assert ax.figure.bbox.contains(legend.x0, legend.y0) and ax.figure.bbox.contains(legend.x1, legend.y1)


def test_distinct_secrets_without_excerpts_count_each_match(tmp_path):
    """An export written without payload has no excerpts: distinctness is unknown, so no match is merged."""
    from inspector.report import export
    from inspector.report.secret_digest import distinct_secrets

    result = inspector.analyze(API)
    export.export_tables(result, tmp_path, "parquet")
    loaded = export.load(tmp_path)
    assert len(distinct_secrets(result.secrets_raw(), result.flows)) < len(result.secrets)
    assert len(distinct_secrets(loaded.secrets_raw(), loaded.flows)) == len(loaded.secrets)
