"""`inspector live` on real loopback traffic: tcpdump -> pipe -> the pipeline (root, as in CI)."""

from __future__ import annotations

import gzip
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import dpkt
import pytest

from inspector.live import capture_filter
from inspector.watch import Watchlist

pytestmark = pytest.mark.slow  # a real sensor on loopback

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root (the CI runs the tests as root)")


# The sensor compiles its kernels before it starts tcpdump: seconds with a
# warm numba cache, up to a minute on a fresh clone.
STARTUP_SECONDS = 120


def _originator_payload(pcap: Path) -> bytes:
    """The reassembled client-to-server bytes of the single TCP flow of a capture."""
    segments: dict[int, bytes] = {}
    client = None
    with gzip.open(pcap, "rb") as handle:
        for _ts, buf in dpkt.pcap.Reader(handle):
            ip = _ip(buf)
            if ip is None or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            tcp = ip.data
            if client is None and tcp.flags & dpkt.tcp.TH_SYN and not tcp.flags & dpkt.tcp.TH_ACK:
                client = tcp.sport
            if tcp.sport == client and tcp.data:
                segments.setdefault(tcp.seq, bytes(tcp.data))
    data, at = bytearray(), min(segments)
    while at in segments:
        data += segments[at]
        at += len(segments[at])
    return bytes(data)


def _ip(buf: bytes):
    eth = dpkt.ethernet.Ethernet(buf)
    return eth.data if isinstance(eth.data, (dpkt.ip.IP, dpkt.ip6.IP6)) else None


def _start(tmp_path: Path, *args: str) -> subprocess.Popen:
    """``inspector live`` started and capturing (its "capturing on" line seen)."""
    proc = subprocess.Popen([sys.executable, "-m", "inspector", "live", "-i", "lo", "-q", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    lines: list[str] = []

    def pump() -> None:
        for line in proc.stderr:
            lines.append(line)

    proc.lines = lines  # type: ignore[attr-defined]
    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + STARTUP_SECONDS
    while not any("capturing on lo" in line for line in lines):
        assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
        time.sleep(0.05)
    return proc


def _wait_for(proc: subprocess.Popen, text: str, timeout: float) -> float:
    start = time.monotonic()
    while not any(text in line for line in proc.lines):  # type: ignore[attr-defined]
        assert time.monotonic() - start < timeout, "".join(proc.lines)  # type: ignore[attr-defined]
        time.sleep(0.05)
    return time.monotonic() - start


def _free_port(lo: int, hi: int) -> int:
    for port in range(lo, hi):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    pytest.skip("no free port")


@needs_root
def test_plain_migration_alerts_before_the_end(tmp_path: Path) -> None:
    payload = _originator_payload(CAPTURES / "qemu-plain.pcap.gz")
    port = _free_port(49152, 49262)
    server = socket.create_server(("127.0.0.1", port))
    received = bytearray()

    def sink() -> None:
        conn, _ = server.accept()
        with conn:
            while chunk := conn.recv(1 << 16):
                received.extend(chunk)

    reader = threading.Thread(target=sink, daemon=True)
    reader.start()
    proc = _start(tmp_path, "--filter", f"tcp port {port}", "--duration", "12",
                  "--jsonl", "live.jsonl", "--json", "result.json")
    sent = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(payload)
        took = _wait_for(proc, "ALERT", 5)
        assert "cleartext-migration" in "".join(proc.lines) and "qemu-migration" in "".join(proc.lines)
    reader.join(5)
    server.close()
    assert took < 5 and time.monotonic() - sent < 8  # long before --duration ends
    assert proc.wait(30) == 0, "".join(proc.lines)
    result = json.loads((tmp_path / "result.json").read_text())
    flows = [f for f in result["flows"] if f["resp_p"] == port]
    assert len(flows) == 1 and flows[0]["verdict"] == "plaintext" and flows[0]["protocol"] == "qemu-migration"
    assert "plaintext-migration" in {f["rule"] for f in result["findings"]}
    assert result["inputs"][0]["file"] == "live:lo"
    records = [json.loads(line) for line in (tmp_path / "live.jsonl").read_text().splitlines()]
    assert records[0]["type"] == "alert" and records[0]["kind"] == "cleartext-migration"
    assert {"alert", "flow", "event", "finding"} <= {r["type"] for r in records}
    assert "QEVM" in records[0]["evidence"]


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args) -> None:
        pass


@needs_root
def test_http_token_alerts_and_sigterm_writes_reports(tmp_path: Path) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    proc = _start(tmp_path, "--filter", f"tcp port {port}", "--duration", "60", "--internal-net", "127.0.0.0/8",
                  "--jsonl", "live.jsonl", "--json", "result.json", "--html", "report.html")
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(b"GET /v3/servers HTTP/1.1\r\nHost: api\r\nX-Auth-Token: gAAAAABsecret-token-value-0123456789"
                       b"abcdef\r\nConnection: close\r\n\r\n")
        client.recv(4096)
    _wait_for(proc, "ALERT", 5)
    server.shutdown()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, "".join(proc.lines)
    assert time.monotonic() - start < 20  # SIGTERM, not --duration, ended it
    text = "".join(proc.lines)
    assert "credentials" in text and "X-Auth-Token" in text and "secret-token-value" not in text
    result = json.loads((tmp_path / "result.json").read_text())
    assert any(f["resp_p"] == port and f["protocol"] == "http" for f in result["flows"])
    assert "api-credentials-in-clear" in {f["rule"] for f in result["findings"]}
    assert (tmp_path / "report.html").stat().st_size > 0
    assert "kernel drops 0" in text


def test_missing_interface_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "inspector", "live", "-i", "nosuch0"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=60, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "nosuch0" in lines[0] and "lo" in lines[0].split("existing:")[1]


@needs_root
@pytest.mark.parametrize("expression", ["tcp porrt 5", "-Zroot", "-w /tmp/planted.pcap"])
def test_bad_filter_is_one_line(tmp_path: Path, expression: str) -> None:
    """A filter is never taken for a tcpdump option (``--filter=-Zroot`` kept root)."""
    done = subprocess.run([sys.executable, "-m", "inspector", "live", "-i", "lo", f"--filter={expression}"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--filter" in lines[0] and "syntax error" in lines[0]
    assert not Path("/tmp/planted.pcap").exists()


def test_unprivileged_user_is_told_how_to_grant(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o777)
    done = subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           sys.executable, "-m", "inspector", "live", "-i", "lo"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False,
                          env={**os.environ, "HOME": str(tmp_path),
                               "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    if "No module named" in done.stderr or "Permission denied" in done.stderr:
        pytest.skip(f"the unprivileged user cannot run this Python or import inspector: {done.stderr.strip()}")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "root" in lines[0] and "CAP_NET_RAW" in lines[0] and "setcap" in lines[0]


def test_no_privilege_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check itself, for hosts where the test above cannot run as nobody."""
    from inspector import live

    monkeypatch.setattr(live.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(live, "_has_capture_caps", lambda path: False)
    with pytest.raises(live.LiveError, match=r"root.*CAP_NET_RAW and CAP_NET_ADMIN.*sudo.*setcap cap_net_raw"):
        live.check_privilege("/usr/bin/tcpdump")


def test_filter_from_the_watchlist() -> None:
    watch = Watchlist.default().with_internal_nets(["192.168.24.0/24"])
    assert capture_filter(watch) == ("tcp port 22 or tcp port 16509 or tcp port 16514 or "
                                     "tcp portrange 49152-49261 or net 192.168.24.0/24")


@needs_root
def test_stats_lines_arrive_while_running(tmp_path: Path) -> None:
    port = _free_port(49152, 49262)
    proc = _start(tmp_path, "--filter", f"tcp port {port}", "--duration", "60", "--stats-interval", "1",
                  "--jsonl", "live.jsonl")
    _wait_for(proc, "inspector: stats", 5)  # during the run: --duration is far off
    assert proc.poll() is None
    running = [json.loads(line) for line in (tmp_path / "live.jsonl").read_text().splitlines()]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(20) == 0, "".join(proc.lines)
    stats = [r for r in running if r["type"] == "stats"]
    assert stats, running
    # tcpdump answered SIGUSR1 with its counters; lo has rx_dropped
    assert stats[0]["kernel_drops"] == 0 and stats[0]["interface_drops"] is not None
    assert {"ts", "elapsed_s", "packets", "flows"} <= stats[0].keys()
    line = next(line for line in proc.lines if "inspector: stats" in line)  # type: ignore[attr-defined]
    assert "packets" in line and "flows" in line and "kernel drops 0" in line


@needs_root
def test_write_pcap_keeps_the_alerted_flow_capped(tmp_path: Path) -> None:
    payload = _originator_payload(CAPTURES / "qemu-plain.pcap.gz")
    port = _free_port(49152, 49262)
    other = _free_port(port + 1, 49262)
    servers = [socket.create_server(("127.0.0.1", p)) for p in (port, other)]

    def sink(server: socket.socket) -> None:
        conn, _ = server.accept()
        with conn:
            while conn.recv(1 << 16):
                pass

    threads = [threading.Thread(target=sink, args=(s,), daemon=True) for s in servers]
    for t in threads:
        t.start()
    proc = _start(tmp_path, "--filter", f"tcp port {port} or tcp port {other}", "--duration", "60",
                  "--write-pcap", "evidence", "--write-pcap-max-mb", "0.2", "--jsonl", "live.jsonl")
    with socket.create_connection(("127.0.0.1", other)) as noise, \
            socket.create_connection(("127.0.0.1", port)) as client:
        client_port = client.getsockname()[1]
        noise.sendall(os.urandom(1 << 20))
        client.sendall(payload)
        _wait_for(proc, "ALERT", 15)
        noise.sendall(os.urandom(1 << 20))
    for t in threads:
        t.join(5)
    for s in servers:
        s.close()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, "".join(proc.lines)
    path = tmp_path / "evidence" / f"cleartext-migration_127.0.0.1-{client_port}_127.0.0.1-{port}.pcap"
    assert sorted(p.name for p in (tmp_path / "evidence").iterdir()) == [path.name]
    alert = next(json.loads(line) for line in (tmp_path / "live.jsonl").read_text().splitlines()
                 if json.loads(line)["type"] == "alert")
    assert alert["evidence_pcap"] == str(Path("evidence") / path.name)
    size = path.stat().st_size
    assert len(payload) > 1_000_000 and 100_000 < size <= 200_000  # stopped at the cap, not before
    text = "".join(proc.lines)  # type: ignore[attr-defined]
    assert f"evidence {Path('evidence') / path.name}" in text and "stopped at --write-pcap-max-mb 0.2" in text
    with open(path, "rb") as handle:
        reader = dpkt.pcap.Reader(handle)
        assert reader.datalink() == dpkt.pcap.DLT_EN10MB and reader.snaplen == 262144
        ports = [(ip.data.sport, ip.data.dport) for _ts, buf in reader if (ip := _ip(buf)) is not None]
    assert ports and set(ports) <= {(client_port, port), (port, client_port)}


def test_evidence_pcaps_select_by_flow_and_cap(tmp_path: Path) -> None:
    """The writer alone, over a capture file: the kept flow's packets, byte-identical, and both caps."""
    from inspector.alerts import EvidencePcaps
    from inspector.capture.reader import CaptureReader
    from inspector.flows.table import FlowTable

    source = CAPTURES / "http-api.pcap"

    def run(folder: Path, **caps: int) -> EvidencePcaps:
        evidence, table, reader = EvidencePcaps(folder, **caps), FlowTable(), CaptureReader(source)
        for batch in reader:
            flow_ids, _ = table.add(batch)
            for flow in (0, 1):
                evidence.keep(flow, "credentials", f"10.0.0.{flow}:1", "[fd00::1]:80")
            evidence.write(reader, batch, flow_ids)
        evidence.close()
        return evidence

    whole = run(tmp_path / "whole")
    first = whole.files[0]
    assert first.path.name == "credentials_10.0.0.0-1_fd00..1-80.pcap" and not first.capped
    with open(source, "rb") as handle:
        frames = [buf for _ts, buf in dpkt.pcap.Reader(handle)]
    with open(first.path, "rb") as handle:
        kept = [buf for _ts, buf in dpkt.pcap.Reader(handle)]

    def ends(buf: bytes) -> tuple | None:
        ip = _ip(buf)
        return (ip.src, ip.data.sport, ip.dst, ip.data.dport) if ip else None

    both = {ends(buf) for buf in kept}
    assert len(both) == 2 and first.packets == len(kept) > 0  # one flow, both directions
    assert [buf for buf in frames if ends(buf) in both] == kept
    assert first.bytes == first.path.stat().st_size
    assert first.path.stat().st_mode & 0o777 == 0o600  # evidence holds payload: owner only, like every output
    small = run(tmp_path / "small", max_file_bytes=first.bytes // 2, max_total_bytes=10**9)
    assert small.files[0].capped == "file" and small.files[0].path.stat().st_size <= first.bytes // 2
    total = run(tmp_path / "total", max_total_bytes=first.bytes // 2)
    assert total.total_bytes <= first.bytes // 2 + 24 and {f.capped for f in total.files.values()} == {"total"}


@needs_root
def test_flows_events_and_findings_stream_as_flows_end(tmp_path: Path) -> None:
    """While the sensor runs: a migration that closed is told as a flow
    record (closed_by fin) a few seconds later, with its event and finding;
    a connection left silent past --idle-timeout is told as ended (idle)
    though no packet came; the memory of both is free by then. At the end
    the final events and findings follow, with the reports' ids."""
    payload = _originator_payload(CAPTURES / "qemu-plain.pcap.gz")
    port = _free_port(49152, 49262)
    server = socket.create_server(("127.0.0.1", port))

    def drain(conn: socket.socket) -> None:
        with conn:  # closes after the client did: FIN from both sides
            while conn.recv(1 << 16):
                pass

    def accept() -> None:
        for _ in range(2):
            threading.Thread(target=drain, args=(server.accept()[0],), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    proc = _start(tmp_path, "--filter", f"tcp port {port}", "--idle-timeout", "4", "--jsonl", "live.jsonl",
                  "--json", "result.json")
    jsonl = tmp_path / "live.jsonl"

    def records() -> list[dict]:
        return [json.loads(line) for line in jsonl.read_text().splitlines()] if jsonl.exists() else []

    def wait_for_record(match, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while not (found := [r for r in records() if match(r)]):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(proc.lines)
            time.sleep(0.1)
        return found[0]

    with socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(payload)
    ended = time.monotonic()
    flow = wait_for_record(lambda r: r["type"] == "flow" and r["resp_p"] == port, 20)
    assert flow["closed_by"] == "fin" and flow["verdict"] == "plaintext" and flow["protocol"] == "qemu-migration", json.dumps(flow)[:3000]
    assert flow["evidence"] and time.monotonic() - ended < 12  # 5 s after the FINs, swept every second
    event = wait_for_record(lambda r: r["type"] == "event", 10)
    assert not event["final"] and "event" not in event and event["protection"] == "none"
    finding = wait_for_record(lambda r: r["type"] == "finding" and r["rule"] == "plaintext-migration", 10)
    assert not finding["final"] and finding["uids"] == [flow["uid"]]
    assert "FINDING critical plaintext-migration" in "".join(proc.lines)  # type: ignore[attr-defined]

    with socket.create_connection(("127.0.0.1", port)) as silent:
        silent.sendall(b"hello")
        silent_port = silent.getsockname()[1]
        idle = wait_for_record(lambda r: r["type"] == "flow" and r["orig_p"] == silent_port, 20)
        assert idle["closed_by"] == "idle" and idle["orig_bytes"] == 5
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, "".join(proc.lines)
    server.close()
    every = records()
    flows = [r for r in every if r["type"] == "flow"]
    assert len({r["uid"] for r in flows}) == len(flows) == 2  # each flow told once
    final = [r for r in every if r.get("final")]
    assert {r["type"] for r in final} == {"event", "finding"} and final[0]["event"] == "M1"
    assert any(r["type"] == "finding" and r["finding"] == "F1" for r in final)
    result = json.loads((tmp_path / "result.json").read_text())
    assert sorted(f["closed_by"] for f in result["flows"]) == ["fin", "idle"]
    # the 3 MB burst fits the 64 MiB capture buffer (libpcap's default 2 MiB lost a third of it)
    assert not [a for a in result["anomalies"] if a["kind"] == "kernel-drops"]


@needs_root
def test_an_output_that_cannot_be_written_is_told_before_the_capture(tmp_path: Path) -> None:
    out = tmp_path / "missing" / "report.json"
    done = subprocess.run([sys.executable, "-m", "inspector", "live", "-i", "lo", "--duration", "30", "--json",
                           str(out)], capture_output=True, text=True, cwd=tmp_path, timeout=60, check=False)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot be written" in lines[0] and "does not exist" in lines[0]
