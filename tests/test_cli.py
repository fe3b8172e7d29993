"""The command line: help, outputs, watchlist options and error handling."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from inspector.cli import main
from inspector.report.json_report import json_schema

ROOT = Path(__file__).resolve().parents[1]
BASE = ROOT / "tests" / "data" / "lo_mixed.pcap"


def invoke(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_help(command):
    result = invoke(command, "--help")
    assert result.exit_code == 0, result.output
    assert main.commands[command].help


def test_json_output_follows_the_committed_schema(tmp_path):
    out = tmp_path / "r.json"
    result = invoke("analyze", BASE, "--json", out, "--quiet")
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text())
    jsonschema.validate(document, json_schema())
    committed = json.loads((ROOT / "docs" / "result.schema.json").read_text())
    assert committed == json_schema(), "regenerate docs/result.schema.json with `inspector schema`"
    assert document["inputs"][0]["packets"] > 0
    flow = document["flows"][0]
    for key in ("uid", "proto", "orig_h", "orig_p", "resp_h", "resp_p", "orig_bytes", "resp_bytes",
                "watch", "verdict", "confidence", "reason", "orig_entropy", "orig_chi2",
                "resp_entropy", "resp_chi2"):
        assert key in flow


def test_csv_has_the_same_flows_as_json(tmp_path):
    j, c = tmp_path / "r.json", tmp_path / "r.csv"
    assert invoke("analyze", BASE, "--json", j, "--csv", c, "-q").exit_code == 0
    rows = list(csv.DictReader(c.open()))
    flows = json.loads(j.read_text())["flows"]
    assert [r["uid"] for r in rows] == [f["uid"] for f in flows]
    assert [int(r["orig_bytes"]) for r in rows] == [f["orig_bytes"] for f in flows]


def test_summary_lists_watched_flows_or_says_none():
    result = invoke("analyze", BASE)
    assert result.exit_code == 0
    assert "No watched flows (use --all to list every flow)" in result.output
    every = invoke("analyze", BASE, "--all")
    assert "all flows:" in every.output and "tcp" in every.output


def test_watch_options_and_toml(tmp_path):
    out = tmp_path / "r.json"
    # Make the HTTP server port of the base capture a "migration" port via TOML.
    assert invoke("analyze", BASE, "--json", out, "-q").exit_code == 0
    flows = json.loads(out.read_text())["flows"]
    tcp = next(f for f in flows if f["proto"] == "tcp" and f["resp_bytes"] > 0)
    config = tmp_path / "watch.toml"
    config.write_text(f'[watch]\nmigration_ports = ["{tcp["resp_p"]}"]\ninternal_nets = ["127.0.0.0/8"]\n')
    assert invoke("analyze", BASE, "--watch-config", config, "--json", out, "-q").exit_code == 0
    watched = json.loads(out.read_text())["flows"]
    for flow in watched:
        same_port = tcp["resp_p"] in (flow["orig_p"], flow["resp_p"])
        on_loopback_v4 = flow["orig_h"].startswith("127.")
        expected = "migration" if same_port else "internal-api" if on_loopback_v4 else "none"
        assert flow["watch"] == expected, flow
    assert invoke("analyze", BASE, "--ssh-ports", str(tcp["resp_p"]), "--json", out, "-q").exit_code == 0
    roles = {f["uid"]: f["watch"] for f in json.loads(out.read_text())["flows"]}
    assert roles[tcp["uid"]] == "ssh"


@pytest.mark.parametrize("args, message", [
    (["--migration-ports", "99999"], "--migration-ports: '99999' is outside 0-65535"),
    (["--internal-net", "10.0.0.300/8"], "--internal-net: '10.0.0.300/8' is not a network"),
])
def test_bad_options_are_one_line_errors(args, message):
    result = subprocess.run([sys.executable, "-m", "inspector", "analyze", str(BASE), *args],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"inspector: error: {message}" + result.stderr.split(message, 1)[1].rstrip()]


def test_bad_watch_config(tmp_path):
    config = tmp_path / "w.toml"
    config.write_text("[watch]\nmigraton_ports = [1]\n")
    result = subprocess.run([sys.executable, "-m", "inspector", "analyze", str(BASE), "--watch-config", str(config)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "unknown watchlist keys ['migraton_ports']" in result.stderr


def test_refuses_to_overwrite_an_input(tmp_path):
    copy = tmp_path / "c.pcap"
    copy.write_bytes(BASE.read_bytes())
    result = subprocess.run([sys.executable, "-m", "inspector", "analyze", str(copy), "--json", str(copy)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "refusing to overwrite an input capture" in result.stderr
    assert copy.read_bytes() == BASE.read_bytes()


def test_hostile_strings_survive_json_round_trip(tmp_path):
    """Backslashes and slashes in strings (file names here) come back intact."""
    weird = tmp_path / "a\\b/"
    weird.mkdir(parents=True)
    path = weird / "x\\y \"q\".pcap"
    path.write_bytes(BASE.read_bytes())
    out = tmp_path / "r.json"
    assert invoke("analyze", path, "--json", out, "-q").exit_code == 0
    document = json.loads(out.read_text())
    assert document["flows"][0]["input"] == str(path)
    assert document["inputs"][0]["file"] == str(path)


def test_schema_doc_lists_every_column():
    from inspector.schema import markdown as columns_markdown

    doc = (ROOT / "docs" / "schema.md").read_text()
    assert columns_markdown() in doc, "regenerate the tables with `inspector schema --markdown`"


@pytest.mark.parametrize("width", [60, 80, 100, 160])
def test_summary_fits_the_terminal(width):
    from rich.console import Console

    import inspector
    from inspector.report import terminal

    captures = ROOT / "captures"
    result = inspector.analyze([captures / "qemu-plain.pcap.gz", captures / "https-api.pcap.gz"])
    console = Console(width=width, record=True, color_system=None)
    terminal.render(result, console, show_all=True)
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= width
    assert "plaintext" in text and "encrypted" in text and "49152" in text


@pytest.mark.parametrize("option, target", [("--json", "missing/out.json"), ("--html", "a-folder"),
                                            ("--csv", "missing/flows.csv")])
def test_an_output_that_cannot_be_written_fails_before_reading(tmp_path, option, target):
    (tmp_path / "a-folder").mkdir()
    out = tmp_path / target
    result = subprocess.run([sys.executable, "-m", "inspector", "analyze", str(BASE), option, str(out), "-q"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()] and str(out) in result.stderr
    assert "cannot be written" in result.stderr or "is a folder" in result.stderr
