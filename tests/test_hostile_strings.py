"""Hostile strings in real flows and in file names never reach the reviewer live.

One loopback recording (tcpdump on lo, real programs): an HTTP client that
sends its credentials in an absolute-form request target and a bare
``Authorization`` token, ``openssl s_client`` with a spreadsheet formula as
its SNI, and SSH banners that are formulas. The capture is then given file
names with terminal control sequences, bidi overrides, newlines and bytes
that are not UTF-8. Every output must show these strings inert: escaped on
the terminal and in Markdown, neutralised in CSV, exact in Parquet/JSON.
"""

from __future__ import annotations

import csv
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

import inspector
from loopback_capture import loopback_capture

pytestmark = pytest.mark.slow  # a tcpdump recording on lo and ~25 CLI runs

ROOT = Path(__file__).resolve().parents[1]
SNI = '=HYPERLINK("http://e.vil/?x","open")'
CLIENT_BANNER = "SSH-2.0-+cmd|calc!A0"
SERVER_BANNER = "SSH-2.0-@SUM(1+1)*cmd|calc!A0"
PASSWORD, TOKEN = "hunter2pw", "tokenWithoutSpace4242"
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
UNSAFE = ("\x1b", "\x07", "\x9b", "\u202e", "\u2066")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _http_exchange(port: int) -> None:
    class Quiet(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", port), Quiet)
    threading.Thread(target=server.handle_request, daemon=True).start()
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(f"GET http://admin:{PASSWORD}@nova.internal/v2.1/servers HTTP/1.1\r\n"
                       f"Host: nova.internal\r\nAuthorization: {TOKEN}\r\n\r\n".encode())
        client.recv(4096)
    server.server_close()


def _tls_exchange(port: int, folder: Path) -> None:
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost"], check=True, capture_output=True)
    server = subprocess.Popen(["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-key", key, "-cert", cert,
                               "-naccept", "1", "-quiet"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # listening (a probe connection would be its one accepted client)
    subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", SNI],
                   input=b"hello over tls\n" * 64, capture_output=True, timeout=20)
    server.kill()
    server.wait()


def _ssh_banners(port: int) -> None:
    listener = socket.create_server(("127.0.0.1", port))

    def serve():
        conn, _ = listener.accept()
        with conn:
            conn.sendall(SERVER_BANNER.encode() + b"\r\n")
            conn.recv(4096)
            conn.sendall(os.urandom(2048))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.recv(4096)
        client.sendall(CLIENT_BANNER.encode() + b"\r\n" + os.urandom(2048))
        time.sleep(0.1)
    thread.join(5)
    listener.close()


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed")
    folder = tmp_path_factory.mktemp("hostile")
    ports = [_free_port() for _ in range(3)]
    pcap = folder / "hostile.pcap"
    with loopback_capture(pcap, " or ".join(f"tcp port {p}" for p in ports)):
        _http_exchange(ports[0])
        _tls_exchange(ports[1], folder)
        _ssh_banners(ports[2])
    return pcap


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "inspector", *args], capture_output=True, env=env, cwd=cwd,
                          timeout=600)


def test_the_recording_carries_every_hostile_string(capture):
    result = inspector.analyze(capture)
    evidence = " ".join(result.flows["reason"].astype(str)) + " ".join(result.evidence["evidence"].astype(str))
    assert SNI in evidence and CLIENT_BANNER[8:] in evidence and SERVER_BANNER[8:] in evidence


def test_http_credentials_are_not_echoed(capture, tmp_path):
    """An absolute-form target's user:password and a bare Authorization token stay out of every output."""
    result = inspector.analyze(capture)
    texts = [result.flows.to_string(), result.evidence.to_string(), result.findings.to_string()]
    out = tmp_path / "out"
    run = _cli("analyze", str(capture), "--all", "--json", str(out) + ".json", "--csv", str(out) + ".csv",
               "--markdown", str(out) + ".md", "--html", str(out) + ".html", "--export", str(out))
    assert run.returncode == 0, run.stderr
    texts += [run.stdout.decode(), *(Path(f"{out}.{ext}").read_text() for ext in ("json", "csv", "md", "html"))]
    texts += [p.read_text() for p in out.glob("*.csv")]
    for text in texts:
        assert PASSWORD not in text and TOKEN not in text
    assert "http://nova.internal/v2.1/servers" in result.flows["reason"].str.cat() + result.evidence.to_string()


def _cells(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as handle:
        return [cell for row in csv.reader(handle) for cell in row]


def test_csv_cells_never_start_a_formula(capture, tmp_path):
    out = tmp_path / "out"
    run = _cli("analyze", "-q", str(capture), "--csv", str(out) + ".csv", "--export", str(out))
    assert run.returncode == 0, run.stderr
    files = [Path(f"{out}.csv"), *out.glob("*.csv")]
    cells = [c for f in files for c in _cells(f)]
    assert any(SNI in c for c in cells)
    assert not [c for c in cells if c.startswith(FORMULA_START)]
    exact = inspector.analyze(capture).flows["reason"].tolist()
    assert inspector.load(out).flows["reason"].tolist() == exact  # load takes the ' back off
    parquet = tmp_path / "pq"
    _cli("analyze", "-q", str(capture), "--export", str(parquet), "--export-format", "parquet")
    flows = pd.read_parquet(parquet / "flows.parquet")
    assert flows["reason"].str.contains(SNI, regex=False).any()  # Parquet keeps the exact value


HOSTILE_NAMES = [b"=HYPERLINK(1).pcap", b"osc\x1b]0;PWNED\x07title.pcap", b"clip\x1b]52;c;cm0gLXJmIH4=\x07.pcap",
                 b"c1\xc2\x9b31mred.pcap", b"bidi\xe2\x80\xaetxt.pcap", b"line\nanomaly: forged.pcap",
                 b"latin1-\xe9\xff.pcap"]


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=lambda n: n.decode("ascii", "replace")[:12])
def test_file_names_are_shown_escaped(name, capture, tmp_path):
    folder = os.fsencode(tmp_path)
    path = os.path.join(folder, name)
    data = capture.read_bytes()
    with open(path, "wb") as handle:
        handle.write(data[:-7])  # cut: an anomaly line names the file
    md, js, table = tmp_path / "r.md", tmp_path / "r.json", tmp_path / "r.csv"
    run = _cli("analyze", os.fsdecode(path), "--markdown", str(md), "--json", str(js), "--csv", str(table))
    assert run.returncode == 0, run.stderr
    shown = run.stdout.decode("utf-8") + run.stderr.decode("utf-8") + md.read_text()
    for bad in UNSAFE:
        assert bad not in shown
    assert "\nanomaly: forged" not in shown and "\n  anomaly: forged" not in shown
    assert "anomaly:" in run.stdout.decode()
    document = json.loads(js.read_text())
    assert document["inputs"]
    assert not [c for c in _cells(table) if c.startswith(FORMULA_START)]


@pytest.mark.parametrize("name", HOSTILE_NAMES[1:], ids=lambda n: n.decode("ascii", "replace")[:12])
def test_error_lines_escape_file_names(name, tmp_path):
    path = os.path.join(os.fsencode(tmp_path), name)
    with open(path, "wb") as handle:
        handle.write(b"not a capture at all")
    run = _cli("analyze", os.fsdecode(path))
    assert run.returncode == 2
    err = run.stderr.decode("utf-8")
    assert err.count("\n") == 1 and err.startswith("inspector: error: ")
    for bad in UNSAFE:
        assert bad not in err


def test_diff_prints_a_handed_result_inert(capture, tmp_path):
    run = _cli("analyze", "-q", str(capture), "--json", str(tmp_path / "a.json"))
    assert run.returncode == 0, run.stderr
    document = json.loads((tmp_path / "a.json").read_text())
    document["findings"] = [{"rule": "r\x1b]0;t\x07", "severity": "high", "title": "t\x1b[31m\u202eevil\nforged",
                             "hosts": ["h\x9b1m"], "summary": "s"}]
    (tmp_path / "b.json").write_text(json.dumps(document))
    run = _cli("diff", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    out = run.stdout.decode() + run.stderr.decode()
    for bad in UNSAFE:
        assert bad not in out
    assert "forged" in out and "\nforged" not in out


def test_diff_on_an_unknown_severity_is_one_line(capture, tmp_path):
    run = _cli("analyze", "-q", str(capture), "--json", str(tmp_path / "a.json"))
    document = json.loads((tmp_path / "a.json").read_text())
    document["findings"] = [{"rule": "r", "severity": "catastrophic", "title": "t", "hosts": ["h"], "summary": "s"}]
    (tmp_path / "b.json").write_text(json.dumps(document))
    run = _cli("diff", str(tmp_path / "a.json"), str(tmp_path / "b.json"))
    assert run.returncode == 2
    err = run.stderr.decode()
    assert err.count("\n") == 1 and "b.json" in err and "severity" in err and "Traceback" not in err


def test_diff_fail_on_compares_severities_of_a_json_result(tmp_path):
    """A JSON result's severities are ordered as an analysis's: critical trips --fail-on high."""
    source = ROOT / "captures" / "http-api.pcap"
    assert _cli("analyze", "-q", str(source), "--json", str(tmp_path / "a.json")).returncode == 0
    document = json.loads((tmp_path / "a.json").read_text())
    document["findings"] = [{"rule": "r", "severity": "critical", "title": "t", "hosts": ["h"], "summary": "s"}]
    (tmp_path / "b.json").write_text(json.dumps(document))
    assert _cli("diff", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--fail-on", "high").returncode == 3
