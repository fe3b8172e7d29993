"""The HTML report: self-contained, complete on the real captures, and safe.

Safety: a capture whose wire strings are XSS payloads (tests/hostile_capture.py)
is analysed and reported, then rendered by headless Chromium, with and
without the report's Content-Security-Policy: nothing may run. A control
page with the same payloads unescaped proves the harness would notice.
"""

from __future__ import annotations

import html
import io
import subprocess
import sys
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import inspector
from capture_variants import write_pcap
from hostile_capture import IMG_ATTRIBUTE, PAYLOADS, SCRIPT, SVG_NO_SPACE, write_hostile_capture
from inspector.analysis import empty_frame
from inspector.schema import FINDING_COLUMNS, SECRET_COLUMNS
from inspector.report import plots
from inspector.report.html import CSP, MAX_FLOW_ROWS, SECTIONS, write_html

pytestmark = pytest.mark.slow  # headless chromium

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
MIGRATIONS = [CAPTURES / name for name in ("qemu-plain.pcap.gz", "qemu-tls.pcap.gz", "qemu-multifd-zstd.pcap.gz")]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CSP_META = f'<meta http-equiv="Content-Security-Policy" content="{html.escape(CSP)}">'


class Page(HTMLParser):
    """Elements of a document as (tag, attributes), its title, and the text of its sections by id."""

    def __init__(self, document: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.title = ""
        self.sections: dict[str, str] = {}
        self._open: list[str] = []  # ids of the sections being read
        self._in_title = False
        self.feed(document)
        self.close()

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        self.elements.append((tag, attributes))
        self._in_title = tag == "title"
        if tag == "section":
            self._open.append(attributes.get("id", ""))
            self.sections[self._open[-1]] = ""

    def handle_endtag(self, tag):
        self._in_title = False
        if tag == "section" and self._open:
            self._open.pop()

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        for anchor in self._open:
            self.sections[anchor] += data + " "

    def tags(self, name: str) -> list[dict[str, str | None]]:
        return [attributes for tag, attributes in self.elements if tag == name]


def report(result: inspector.Analysis, **options) -> str:
    handle = io.StringIO()
    write_html(result, handle, **options)
    return handle.getvalue()


@pytest.fixture(scope="module")
def migrations():
    return inspector.analyze(MIGRATIONS)


@pytest.fixture(scope="module")
def migrations_page(migrations):
    return report(migrations)


def test_report_is_self_contained(migrations_page):
    page = Page(migrations_page)
    assert migrations_page.startswith("<!DOCTYPE html>\n<html lang=\"en\">")
    assert not page.tags("script") and "<script" not in migrations_page
    assert [m["content"] for m in page.tags("meta") if m.get("http-equiv") == "Content-Security-Policy"] == [CSP]
    images = page.tags("img")
    assert len(images) == 6  # bytes by verdict and protection, timeline, windows, entropy series, byte values
    assert all(img["src"].startswith("data:image/png;base64,") for img in images)
    for _tag, attributes in page.elements:
        for name in ("src", "href"):
            assert not (attributes.get(name) or "").lower().startswith(("http:", "https:", "//")), attributes
    assert not any(name.startswith("on") for _tag, attributes in page.elements for name in attributes)


def test_report_has_every_section_in_order(migrations_page):
    page = Page(migrations_page)
    sections = [anchor for anchor, _heading in SECTIONS if anchor != "configuration"]  # only with analyze --config
    assert [s["id"] for s in page.tags("section")] == sections
    links = [a["href"] for a in page.tags("a")]
    assert links[:len(sections)] == [f"#{anchor}" for anchor in sections]
    targets = {attributes["id"] for _tag, attributes in page.elements if attributes.get("id")}
    assert all(link.startswith("#") and link[1:] in targets for link in links)  # the summary links its findings
    assert page.title == "inspector report: qemu-plain.pcap.gz, qemu-tls.pcap.gz, qemu-multifd-zstd.pcap.gz"


def test_report_lists_events_flows_and_the_verdict(migrations, migrations_page):
    sections = Page(migrations_page).sections
    assert "2 of 3 migrations crossed the network in clear: 4.4 MiB of guest RAM exposed." in sections["summary"]
    for event in migrations.events.itertuples():
        assert event.event in sections["events"] and event.protection in sections["events"]
    for flow in migrations.watched.itertuples():
        assert flow.uid in sections["flows"] and str(flow.reason) in sections["flows"]
    assert "3 files, 329 packets, 7.4 MiB, 5 flows, 5 watched, 0 anomalies" in migrations_page


def test_plaintext_capture_report_stays_small(tmp_path):
    result = inspector.analyze(CAPTURES / "qemu-plain.pcap.gz")
    path = tmp_path / "report.html"
    with path.open("w", encoding="utf-8") as handle:
        write_html(result, handle)
    assert 50_000 < path.stat().st_size < 400_000


def test_api_flows_are_listed_when_their_network_is_named():
    result = inspector.analyze(CAPTURES / "http-api.pcap", internal_nets=["127.0.0.0/8"])
    sections = Page(report(result)).sections
    assert sections["flows"].count("internal-api") == 3
    assert "No migration events." in sections["events"]
    assert "No live migration was seen in the capture." in sections["summary"]


def test_an_empty_capture_says_what_is_missing(tmp_path):
    result = inspector.analyze(write_pcap(tmp_path / "empty.pcap", 1, []))
    sections = Page(report(result)).sections
    assert "No findings." in sections["findings"]
    assert "No migration events." in sections["events"]
    assert "No secrets found in cleartext payload." in sections["secrets"]
    assert "No flow matched the watchlist" in sections["flows"]
    assert "No watched flows to plot." in sections["plots"]
    assert "No anomalies" in sections["anomalies"]


def test_flow_rows_are_capped(migrations):
    copies = MAX_FLOW_ROWS // len(migrations.watched) + 1
    many = pd.concat([migrations.flows.assign(uid=migrations.flows["uid"] + f"-{i}") for i in range(copies)],
                     ignore_index=True)
    page = Page(report(replace(migrations, flows=many)))
    flow_rows = page.sections["flows"].count("\u2192 127.0.0.1:4915")
    assert flow_rows == MAX_FLOW_ROWS
    assert f"{len(many) - MAX_FLOW_ROWS:,} more watched flows are not listed here" in page.sections["flows"]


# ------------------------------------------------------------------ findings and secrets


def _frame(columns: dict, rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=list(columns))
    return pd.concat([empty_frame(columns), frame], ignore_index=True) if rows else empty_frame(columns)


def _finding(finding: str, severity: str, title: str, **extra) -> dict:
    return {"finding": finding, "rule": "test-rule", "severity": severity, "title": title, "risks": "data leakage",
            "summary": "1 flow", "evidence": "first line\nsecond line", "uids": "C1,C2", "events": "M1",
            "bytes_exposed": 2048, "remediation": "step one\nstep two", "references": "OSSN-0089", **extra}


def test_findings_are_listed_most_severe_first_with_their_parts(migrations):
    findings = _frame(FINDING_COLUMNS, [_finding("F1", "low", "minor thing"),
                                        _finding("F2", "critical", "guest RAM in clear", evidence=SCRIPT)])
    page = report(replace(migrations, findings=findings))
    section = Page(page).sections["findings"]
    assert section.index("guest RAM in clear") < section.index("minor thing")
    assert "step one" in section and "OSSN-0089" in section and "2.0 KiB" in section
    assert html.escape(SCRIPT) in page
    summary = Page(page).sections["summary"]
    assert "1 critical" in summary and "1 low" in summary and "0 high" in summary


def _secret(label: str, excerpt: bytes) -> dict:
    return {"uid": "C3PdFzH5DsDv", "direction": "orig", "kind": "password",
            "ts": pd.Timestamp("2026-11-23 21:44:32", tz="UTC"), "offset": 4096, "length": 12, "label": label,
            "excerpt": excerpt}


SECRET_EXCERPT = b'{"password": "hunter2-' + SCRIPT.encode() + b'"}'


def test_secret_excerpts_are_redacted_by_default(migrations):
    secrets = _frame(SECRET_COLUMNS, [_secret("password = <12 bytes>", SECRET_EXCERPT)])
    page = report(replace(migrations, secrets=secrets))
    section = Page(page).sections["secrets"]
    assert "password = <12 bytes>" in section and "127.0.0.1:57972\u00a0\u2192 127.0.0.1:49152 tcp" in section
    assert "Payload excerpts are redacted" in section and "--show-payload" in section
    assert "hunter2" not in page and "7b 22 70 61" not in page


def test_show_payload_reveals_excerpts_as_escaped_hex_dumps(migrations):
    secrets = _frame(SECRET_COLUMNS, [_secret("password = <12 bytes>", SECRET_EXCERPT)])
    page = report(replace(migrations, secrets=secrets), show_payload=True)
    assert "0000  7b 22 70 61 73 73 77 6f 72 64 22 3a 20 22 68 75  {&quot;password&quot;: &quot;hu" in page
    assert "0010  6e 74 65 72 32 2d 3c 73 63 72 69 70 74 3e 64 6f  nter2-&lt;script&gt;do" in page
    assert "<script" not in page


# ------------------------------------------------------------------ plots


def test_report_imports_matplotlib_only_when_plotting():
    code = "import sys, inspector.report.html; print('matplotlib' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"


def test_each_plot_returns_axes_and_copes_with_no_data(migrations):
    watched = migrations.watched
    windows = plots.windows_with_verdicts(migrations.windows, watched)
    assert set(windows["verdict"]) == {"plaintext", "compressed", "encrypted"}
    drawn = [plots.entropy_vs_chi2(windows), plots.flow_timeline(watched), plots.bytes_by_verdict(watched),
             plots.bytes_by_protection(migrations.events),
             plots.entropy_series(migrations.windows, plots.notable_flows(watched))]
    empty = [plots.entropy_vs_chi2(windows.head(0)), plots.flow_timeline(watched.head(0)),
             plots.bytes_by_verdict(watched.head(0)), plots.bytes_by_protection(migrations.events.head(0)),
             plots.entropy_series(migrations.windows, watched.head(0))]
    for ax in drawn + empty:
        assert plots.figure_png_base64(ax).startswith("iVBORw0KGgo")  # PNG signature
    assert all(ax.has_data() for ax in drawn) and not any(ax.has_data() for ax in empty)


def test_notable_flows_are_the_cleartext_migrations_and_one_encrypted(migrations):
    notable = plots.notable_flows(migrations.watched)
    assert list(notable["verdict"].astype(str)) == ["plaintext", "compressed", "compressed", "encrypted"]


# ------------------------------------------------------------------ hostile capture in Chromium


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    result = inspector.analyze(write_hostile_capture(folder / "hostile.pcap"), internal_nets=["127.0.0.0/8"])
    path = folder / "report.html"
    with path.open("w", encoding="utf-8") as handle:
        write_html(result, handle)
    return result, path


def test_hostile_strings_reach_the_report_escaped(hostile):
    result, path = hostile
    page = path.read_text(encoding="utf-8")
    assert set(result.watched["protocol"]) == {"tls", "http", "ssh", "qemu-migration"}
    assert result.watched["tls_sni"].dropna().tolist() == [SCRIPT]
    assert result.watched["ssh_client"].dropna().tolist() == [SCRIPT]
    for payload in PAYLOADS:
        assert payload not in page
        assert html.escape(payload, quote=True) in page, payload
    assert f"SNI {html.escape(SCRIPT)}" in page and f"(host {html.escape(IMG_ATTRIBUTE)})" in page
    assert f"machine {html.escape(SCRIPT)}" in page and f"ram, {html.escape(SVG_NO_SPACE)}" in page


def chromium(profile: Path, *arguments: str) -> subprocess.CompletedProcess:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run .ci/install-system-deps (it installs chromium)")
    return subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments],
                          capture_output=True, text=True, timeout=60, check=True)


def rendered_dom(path: Path, tmp_path: Path) -> Page:
    """The DOM after Chromium loaded ``path`` and ran whatever it would run."""
    return Page(chromium(tmp_path / "profile", "--virtual-time-budget=2000", "--dump-dom", path.as_uri()).stdout)


def assert_nothing_ran(dom: Page) -> None:
    assert dom.title.startswith("inspector report"), dom.title
    assert not dom.tags("script") and not dom.tags("svg")
    assert not [attributes for _tag, attributes in dom.elements if any(name.startswith("on") for name in attributes)]


@pytest.mark.parametrize("with_csp", [True, False], ids=["with-csp", "escaping-only"])
def test_chromium_runs_nothing_from_the_capture(hostile, tmp_path, with_csp):
    page = hostile[1].read_text(encoding="utf-8")
    assert page.count(CSP_META) == 1
    path = tmp_path / "report.html"
    path.write_text(page if with_csp else page.replace(CSP_META, ""), encoding="utf-8")
    dom = rendered_dom(path, tmp_path)
    assert_nothing_ran(dom)
    assert SCRIPT in dom.sections["flows"]  # shown as text


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_harness_sees_an_unescaped_payload_run(payload, tmp_path):
    """Control: the same payload written raw must flip the title, or the tests above prove nothing."""
    path = tmp_path / "control.html"
    path.write_text(f"<!DOCTYPE html><html><head><title>inspector report</title></head><body><p>{payload}</p>"
                    "</body></html>", encoding="utf-8")
    assert rendered_dom(path, tmp_path).title == "PWNED"


def test_chromium_screenshot_shows_the_report(hostile, tmp_path):
    from matplotlib.image import imread

    shot = tmp_path / "shot.png"
    chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,2000", hostile[1].as_uri())
    pixels = imread(shot)
    assert pixels.shape[:2] == (2000, 1280)
    colours = np.unique((pixels[::7, ::7, :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 100  # text, badges and tables, not a blank page
