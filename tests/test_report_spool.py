"""`analyze --quiet --json/--csv` streams its reports from a ReportSpool: the
same bytes as the reports of the in-memory Analysis, whatever the spool's
files and chunks."""

from __future__ import annotations

import csv
import io
import stat
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import inspector
from inspector.cli import main
from inspector.report import export
from inspector.report.json_report import write_json
from inspector.report.writers import Reports
from inspector.spool import ReportSpool
from inspector.timeouts import Timeouts

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = sorted((ROOT / "captures").glob("*.pcap*")) + sorted((ROOT / "tests" / "data").glob("*.pcap"))
SHORT = Timeouts(idle=1.0, after_close=0.1, sweep=0.1, batch=1)  # flows end (and are spooled) all along


@pytest.fixture(scope="module")
def many_flows(tmp_path_factory) -> Path:
    """2,000 short flows (10 % UDP) on migration, libvirtd, SSH and other
    ports, from the benchmarks' generator: most of them are not kept."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from make_capture import generate
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    path = tmp_path_factory.mktemp("many") / "many.pcap"
    generate(str(path), "many", packets=20_000, flows=2_000, seed=3, pool_mib=1, quiet=True, udp_share=0.1)
    return path


def _in_memory(paths, timeouts: Timeouts | None = None) -> tuple[str, str]:
    result = inspector.analyze(paths, timeouts=timeouts)
    document = io.StringIO()
    write_json(result, document)
    table = io.StringIO()
    export.csv_ready(result.flows).to_csv(table, index=False, quoting=csv.QUOTE_MINIMAL)
    return document.getvalue(), table.getvalue()


def _streamed(paths, tmp_path: Path, flush_flows: int, timeouts: Timeouts | None = None,
              excerpts: bool = True) -> tuple[str, str]:
    reports = Reports(json_path=tmp_path / "r.json", csv_path=tmp_path / "r.csv")
    with ReportSpool(flush_flows=flush_flows, excerpts=excerpts) as spool:
        summary = inspector.analyze(paths, store=spool, timeouts=timeouts)
        reports.write_streamed(summary, spool)
        folder = spool.folder
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert not folder.exists()
    return reports.json_path.read_text(), reports.csv_path.read_text()


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
def test_streamed_reports_equal_the_in_memory_ones(capture, tmp_path):
    assert _streamed(capture, tmp_path, flush_flows=1) == _in_memory(capture)


def test_streamed_reports_of_captures_read_as_one(tmp_path):
    """Every shipped capture as one input: flows of many spool files whose
    start times interleave, merged back in order."""
    in_memory = _in_memory(CAPTURES)
    assert _streamed(CAPTURES, tmp_path, flush_flows=2) == in_memory
    assert _streamed(CAPTURES, tmp_path, flush_flows=10_000) == in_memory


def test_streamed_reports_of_many_short_flows(many_flows, tmp_path):
    """Flows end all along the capture, most are not kept in memory, the UDP ones end last."""
    in_memory = _in_memory(many_flows, SHORT)
    assert _streamed(many_flows, tmp_path, flush_flows=100, timeouts=SHORT) == in_memory
    assert _streamed(many_flows, tmp_path, flush_flows=100, timeouts=SHORT, excerpts=False) == in_memory
    assert _streamed(many_flows, tmp_path, flush_flows=100_000) == _in_memory(many_flows)


def test_flows_come_back_in_chunks_in_order(many_flows):
    result = inspector.analyze([many_flows, *CAPTURES], timeouts=SHORT)
    with ReportSpool(flush_flows=300) as spool:
        summary = inspector.analyze([many_flows, *CAPTURES], store=spool, timeouts=SHORT)
        event_of = dict(zip(summary.flows["uid"], summary.flows["event"]))
        parts = list(spool.flows_in_order(event_of, chunk=700))
        assert len(spool.files) >= 2
    assert len(parts) > 2 and spool.flow_count == len(result.flows) > 2 * len(summary.flows)
    assert [list(p["uid"]) for p in parts] == [list(result.flows["uid"][i:i + 700])
                                               for i in range(0, len(result.flows), 700)]
    for name in ("findings", "events", "secrets", "secret_counts", "evidence"):
        assert getattr(summary, name).equals(getattr(result, name)), name


@pytest.mark.parametrize("payload", [[], ["--show-payload"]], ids=["redacted", "show-payload"])
def test_the_command_line_streams_when_quiet(payload, tmp_path):
    """--quiet with only --json/--csv goes through the spool; the summary on the terminal does not."""
    capture = ROOT / "captures" / "http-api.pcap"
    for args, name in (([], "shown"), (["--quiet"], "quiet")):
        done = CliRunner().invoke(main, ["analyze", str(capture), "--json", str(tmp_path / f"{name}.json"),
                                         "--csv", str(tmp_path / f"{name}.csv"), *payload, *args],
                                  catch_exceptions=False)
        assert done.exit_code == 0, done.output
    for suffix in (".json", ".csv"):
        assert (tmp_path / f"quiet{suffix}").read_bytes() == (tmp_path / f"shown{suffix}").read_bytes()
