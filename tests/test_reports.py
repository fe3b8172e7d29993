"""Report files and the audit-pipeline commands: Markdown, exports, --fail-on,
diff, rules, the progress bar."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
from click.testing import CliRunner

import inspector
from inspector.cli import ExitStatus, main
from inspector.pipeline import ClosedFlows
from inspector.report.export import TABLES
from inspector.report.json_report import flow_chunks, json_schema, write_json
from inspector.schema import FLOW_COLUMNS
from inspector.streaming import JsonLines
from inspector.tables import json_bytes, typed

ROOT = Path(__file__).resolve().parents[1]
PLAIN = ROOT / "captures" / "qemu-plain.pcap.gz"
TLS = ROOT / "captures" / "qemu-tls.pcap.gz"
API = ROOT / "captures" / "http-api.pcap"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_fail_on_sets_the_exit_status(tmp_path):
    assert invoke("analyze", PLAIN, "-q", "--fail-on", "critical").exit_code == ExitStatus.FINDINGS
    assert invoke("analyze", TLS, "-q", "--fail-on", "low").exit_code == ExitStatus.OK
    assert invoke("analyze", TLS, "-q", "--fail-on", "info").exit_code == ExitStatus.FINDINGS
    assert invoke("analyze", API, "-q", "--fail-on", "critical").exit_code == ExitStatus.OK
    assert invoke("analyze", API, "-q", "--fail-on", "high").exit_code == ExitStatus.FINDINGS
    bad = invoke("analyze", PLAIN, "-q", "--fail-on", "severe")
    assert bad.exit_code == ExitStatus.BAD_INPUT and "severe" in bad.output


def test_reports_still_written_when_fail_on_trips(tmp_path):
    out = tmp_path / "r.json"
    result = invoke("analyze", PLAIN, API, "-q", "--json", out, "--fail-on", "high")
    assert result.exit_code == ExitStatus.FINDINGS
    document = json.loads(out.read_text())
    jsonschema.validate(document, json_schema())
    assert document["summary"]["findings"] == {"critical": 1, "high": 2, "medium": 0, "low": 0, "info": 0}
    assert [f["rule"] for f in document["findings"]] == ["plaintext-migration", "api-credentials-in-clear",
                                                         "secrets-in-cleartext"]
    assert document["findings"][0]["remediation"][0].startswith("Enable QEMU native TLS")


def test_json_document_holds_the_tables_values(tmp_path):
    """Every flow's columns as the flows table holds them (times RFC 3339 to
    the microsecond, durations in seconds, floats to 6 decimals), its evidence
    as the evidence table's rows with their fields as objects, secrets with
    their times; one record per line, whatever the chunk size."""
    result = inspector.analyze([PLAIN, TLS, API])
    buffer = io.StringIO()
    write_json(result, buffer)
    document = json.loads(buffer.getvalue())
    flows, evidence = result.flows, result.evidence
    assert [f["uid"] for f in document["flows"]] == flows["uid"].tolist()
    for flow, row in zip(document["flows"], flows.itertuples(index=False)):
        assert list(flow) == list(FLOW_COLUMNS) + ["evidence"]
        assert flow["ts"] == row.ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        assert flow["duration"] == round(row.duration.total_seconds(), 6)
        assert flow["orig_entropy"] is None if pd.isna(row.orig_entropy) else \
            flow["orig_entropy"] == round(row.orig_entropy, 6)
        assert flow["vlan"] is None and flow["tls_version"] == (None if pd.isna(row.tls_version) else row.tls_version)
        own = evidence[evidence["uid"] == row.uid]
        assert [e["fields"] for e in flow["evidence"]] == own["fields"].tolist()
        assert [e["offset"] for e in flow["evidence"]] == own["offset"].tolist()
    assert sum(len(f["evidence"]) for f in document["flows"]) == len(evidence) > 0
    assert [s["ts"] for s in document["secrets"]] == [t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
                                                      for t in result.secrets["ts"]]
    records = [line.rstrip(",") for line in buffer.getvalue().splitlines() if line.startswith("  {")]
    assert len(records) == sum(len(document[key]) for key in ("inputs", "anomalies", "findings", "secrets",
                                                               "secret_counts", "events", "flows"))
    assert all(isinstance(json.loads(record), dict) for record in records)
    one_by_one = b"".join(line for chunk in flow_chunks(flows, evidence, chunk=1) for line in chunk)
    assert one_by_one == b"".join(line for chunk in flow_chunks(flows, evidence) for line in chunk)


def test_json_flows_of_a_table_joined_from_parts_are_the_same():
    """A flows table joined from several closes holds its Arrow columns in
    chunks; each column is encoded whole all the same."""
    result = inspector.analyze([PLAIN, TLS, API])
    flows, half = result.flows, len(result.flows) // 2
    joined = typed(pd.concat([flows.iloc[:half], flows.iloc[half:]], ignore_index=True), FLOW_COLUMNS)
    assert joined["uid"].array._pa_array.num_chunks == 2
    assert [line for chunk in flow_chunks(joined, result.evidence) for line in chunk] == \
        [line for chunk in flow_chunks(flows, result.evidence) for line in chunk]


def test_jsonl_flow_records_are_the_json_flows():
    result = inspector.analyze([PLAIN, API])
    buffer = io.StringIO()
    closed = ClosedFlows(flows=result.flows.drop(columns="event"), windows=result.windows,
                         evidence=result.evidence.drop(columns="event"), secrets=result.secrets,
                         secret_counts=result.secret_counts, byte_histograms=result.byte_histograms)
    JsonLines(buffer).flows(closed)
    document = io.StringIO()
    write_json(result, document)
    want = [{"type": "flow", **flow, "event": ""} for flow in json.loads(document.getvalue())["flows"]]
    assert [json.loads(line) for line in buffer.getvalue().splitlines()] == want


def test_json_values_orjson_refuses_fall_back_to_the_standard_encoder():
    value = {"big": 2**70, "nan": float("nan"), "nested": [{"x": float("nan")}]}
    assert json.loads(json_bytes(value)) == {"big": 2**70, "nan": None, "nested": [{"x": None}]}


def test_terminal_summary_shows_findings_first():
    output = invoke("analyze", PLAIN).output
    assert output.index("CRITICAL F1 Live migration sends guest RAM in clear") < output.index("migration events")
    assert "fix: Enable QEMU native TLS" in output


def test_markdown_report(tmp_path):
    out = tmp_path / "r.md"
    assert invoke("analyze", PLAIN, API, "-q", "--markdown", out).exit_code == 0
    text = out.read_text()
    for heading in ("# inspector report", "## Findings", "### F1 CRITICAL", "## Migration events", "## Watched flows"):
        assert heading in text
    assert "| M1 | 127.0.0.1 | 127.0.0.1 |" in text


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_export_every_table(tmp_path, fmt):
    folder = tmp_path / "tables"
    assert invoke("analyze", PLAIN, "-q", "--export", folder, "--export-format", fmt).exit_code == 0
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["tables"] == list(TABLES) and meta["format"] == fmt and meta["payload_shown"] is False
    read = pd.read_csv if fmt == "csv" else pd.read_parquet
    flows, findings = read(folder / f"flows.{fmt}"), read(folder / f"findings.{fmt}")
    assert len(flows) == 1 and flows["verdict"].iloc[0] == "plaintext"
    assert findings["rule"].tolist() == ["plaintext-migration", "secrets-in-cleartext"]
    secrets = read(folder / f"secrets.{fmt}")
    assert "excerpt" not in secrets.columns and "excerpt_hex" not in secrets.columns


def test_outputs_never_overwrite_inputs(tmp_path):
    capture = tmp_path / "flows.csv"
    capture.write_bytes(PLAIN.read_bytes())
    result = invoke("analyze", capture, "-q", "--export", tmp_path)
    assert result.exit_code == ExitStatus.BAD_INPUT and "refusing to overwrite" in result.output
    assert capture.read_bytes() == PLAIN.read_bytes()
    result = invoke("analyze", capture, "-q", "--markdown", capture)
    assert result.exit_code == ExitStatus.BAD_INPUT


def test_diff_after_a_remediation(tmp_path):
    before, after = tmp_path / "before.json", tmp_path / "after.json"
    invoke("analyze", PLAIN, API, "-q", "--json", before)
    invoke("analyze", TLS, API, "-q", "--json", after)
    out = tmp_path / "diff.json"
    result = invoke("diff", before, after, "--json", out)
    assert result.exit_code == 0, result.output
    assert "2 fixed  1 new  1 unchanged" in result.output
    comparison = json.loads(out.read_text())
    assert [f["rule"] for f in comparison["fixed"]] == ["plaintext-migration", "secrets-in-cleartext"]
    assert [f["rule"] for f in comparison["new"]] == ["tls-protected-migration"]
    assert [f["rule"] for f in comparison["unchanged"]] == ["api-credentials-in-clear"]
    # A capture on either side is analysed on the fly; --fail-on looks at AFTER.
    assert invoke("diff", before, TLS, "--fail-on", "high").exit_code == ExitStatus.OK
    assert invoke("diff", TLS, before, "--fail-on", "high").exit_code == ExitStatus.FINDINGS


def test_diff_bad_input_is_one_line(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"flows": []}')
    result = invoke("diff", broken, PLAIN)
    assert result.exit_code == ExitStatus.BAD_INPUT
    assert result.output.strip() == (f"inspector: error: {broken}: not an inspector JSON result with findings "
                                     "(write one with `inspector analyze --json`)")
    result = invoke("diff", tmp_path / "missing.json", PLAIN)
    assert result.exit_code == ExitStatus.BAD_INPUT


def test_rules_command_lists_every_rule():
    from inspector.findings.rules import RULES

    lines = invoke("rules").output.splitlines()
    assert [line.split()[0] for line in lines] == [r.id for r in RULES]


def test_progress_bar_on_a_terminal_only(tmp_path):
    """On a pseudo-terminal a long run draws a bar on stderr; piped, nothing."""
    inputs = []  # 80 MB of input: above the bar's threshold (copies: the same file twice is read once)
    for number in range(60):
        inputs.append(str(tmp_path / f"{number}.pcap.gz"))
        Path(inputs[-1]).write_bytes(PLAIN.read_bytes())
    command = [sys.executable, "-m", "inspector", "analyze", *inputs]
    leader, follower = pty.openpty()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    seen = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    assert proc.wait(timeout=300) == 0
    os.close(leader)
    assert b"reading" in seen and b"packets" in seen
    piped = subprocess.run(command, capture_output=True, timeout=300)
    assert piped.returncode == 0 and piped.stderr == b""
    quiet = subprocess.run(command + ["-q"], stdin=subprocess.DEVNULL, capture_output=True, timeout=300)
    assert quiet.stdout == quiet.stderr == b""


def test_payload_excerpts_only_on_request(tmp_path):
    """Secrets found in guest RAM are labelled in every report; their bytes
    appear only with --show-payload, and then as hex and dotted ASCII."""
    shared, revealed = tmp_path / "shared", tmp_path / "revealed"
    for folder, extra in ((shared, []), (revealed, ["--show-payload"])):
        folder.mkdir()
        result = invoke("analyze", PLAIN, "-q", "--json", folder / "r.json", "--markdown", folder / "r.md",
                        "--export", folder / "tables", *extra)
        assert result.exit_code == 0, result.output
    hidden = json.loads((shared / "r.json").read_text())
    shown = json.loads((revealed / "r.json").read_text())
    assert hidden["secrets"] and not any("excerpt_hex" in s for s in hidden["secrets"])
    assert all(bytes.fromhex(s["excerpt_hex"]) for s in shown["secrets"]) and shown["summary"]["payload_shown"]
    secret_text = next(s["excerpt_text"] for s in shown["secrets"] if s["kind"] == "cloud-credential")
    assert "rabbit://" in secret_text or "mysql+pymysql://" in secret_text
    for folder in (shared,):
        for report in (folder / "r.json", folder / "r.md", folder / "tables" / "secrets.csv"):
            assert "openstack:" not in report.read_text() and "nova:" not in report.read_text(), report
    assert "excerpt redacted" in (shared / "r.md").read_text()
    from inspector.report.payload import hexdump

    first = bytes.fromhex(shown["secrets"][0]["excerpt_hex"])
    assert hexdump(first).splitlines()[0] in (revealed / "r.md").read_text()
    assert "excerpt_hex" in pd.read_csv(revealed / "tables" / "secrets.csv").columns


def test_hostile_wire_strings_stay_inert_in_markdown_and_terminal(tmp_path):
    """XSS payloads from SNI, HTTP, SSH banners and QEMU names appear as text:
    entity-escaped in Markdown (renderers pass HTML through), plain in the terminal."""
    from hostile_capture import PAYLOADS, write_hostile_capture

    capture = write_hostile_capture(tmp_path / "hostile.pcap")
    out = tmp_path / "r.md"
    result = invoke("analyze", capture, "--all", "--markdown", out, "--internal-net", "127.0.0.0/8")
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "&lt;script" in text and "&lt;img src=x" in text
    assert not any(tag in text.lower() for tag in ("<script", "<img", "<svg"))
    assert any(payload in result.output for payload in PAYLOADS)  # shown verbatim, never interpreted
