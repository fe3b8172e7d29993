"""`inspector live --workers 2` against `--workers 1` on the same loopback traffic (root, as in CI)."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_live import (
    CAPTURES,
    _free_port,
    _Handler,
    _originator_payload,
    _start,
    needs_root,
)

pytestmark = pytest.mark.slow  # real sensors on loopback

MIGRATIONS, REQUESTS, DATAGRAMS, V6_CONNECTIONS = 4, 4, 8, 3
TOKEN = b"X-Auth-Token: gAAAAABsecret-token-value-0123456789abcdef"


def _sink(server: socket.socket) -> None:
    """Accept and drain connections until the server closes."""
    def drain(conn: socket.socket) -> None:
        with conn:
            while conn.recv(1 << 16):
                pass

    while True:
        try:
            conn, _ = server.accept()
        except OSError:
            return
        threading.Thread(target=drain, args=(conn,), daemon=True).start()


def _traffic(migration: int, http_port: int, udp: int, v6: int, payload: bytes) -> None:
    """Cleartext migrations, API requests with a token, UDP datagrams and IPv6 connections, each its own flow."""
    for _ in range(MIGRATIONS):
        with socket.create_connection(("127.0.0.1", migration)) as client:
            client.sendall(payload[: 1 << 20])
    for _ in range(REQUESTS):
        with socket.create_connection(("127.0.0.1", http_port)) as client:
            client.sendall(b"GET /v3/servers HTTP/1.1\r\nHost: api\r\n" + TOKEN + b"\r\nConnection: close\r\n\r\n")
            client.recv(4096)
    for i in range(DATAGRAMS):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            sender.sendto(b"datagram %d" % i * 20, ("127.0.0.1", udp))
    for _ in range(V6_CONNECTIONS):
        with socket.create_connection(("::1", v6)) as client:
            client.sendall(os.urandom(50_000))


def _partition_of_loopback(port: int, other: int) -> int:
    """Partition of 2 of a 127.0.0.1 or ::1 flow (its addresses XOR to 0), as inspector.live_partition hashes."""
    return ((port ^ other) * 0x9E3779B1 & 0xFFFFFFFF) >> 16 & 1


def _results(folder: Path) -> tuple[dict, list[dict]]:
    return (json.loads((folder / "result.json").read_text()),
            [json.loads(line) for line in (folder / "live.jsonl").read_text().splitlines()])


def _flow_rows(result: dict) -> set[tuple]:
    """Flows by 5-tuple (127.0.0.1 or ::1): each sensor's tcpdump stamps a packet itself, so first
    timestamps, and the uids made from them, differ by a microsecond between the two."""
    keys = ("proto", "orig_h", "orig_p", "resp_p", "verdict", "protocol", "orig_pkts", "resp_pkts", "orig_bytes",
            "resp_bytes")
    return {tuple(flow[k] for k in keys) for flow in result["flows"]}


@needs_root
def test_two_capture_processes_report_what_one_does(tmp_path: Path) -> None:
    payload = _originator_payload(CAPTURES / "qemu-plain.pcap.gz")
    migration = _free_port(49152, 49262)
    servers = [socket.create_server(("127.0.0.1", migration)), socket.create_server(("::1", 0), family=socket.AF_INET6)]
    for server in servers:
        threading.Thread(target=_sink, args=(server,), daemon=True).start()
    api = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=api.serve_forever, daemon=True).start()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    ports = (migration, api.server_address[1], udp.getsockname()[1], servers[1].getsockname()[1])
    expression = f"tcp port {ports[0]} or tcp port {ports[1]} or udp port {ports[2]} or tcp port {ports[3]}"
    runs = {}
    for workers in (1, 2):
        folder = tmp_path / f"workers-{workers}"
        folder.mkdir()
        runs[workers] = _start(folder, "--workers", str(workers), "--filter", expression, "--duration", "90",
                               "--internal-net", "127.0.0.0/8", "--stats-interval", "1", "--jsonl", "live.jsonl",
                               "--json", "result.json")
    try:
        _traffic(*ports, payload)
        deadline = time.monotonic() + 30
        while min(sum("ALERT" in line for line in proc.lines) for proc in runs.values()) < MIGRATIONS + REQUESTS:
            assert time.monotonic() < deadline, "".join(runs[2].lines)
            time.sleep(0.1)
        time.sleep(2)  # a stats round with every packet in it
    finally:
        for proc in runs.values():
            proc.send_signal(signal.SIGTERM)
        api.shutdown()
        for server in [*servers, udp]:
            server.close()
    for proc in runs.values():
        assert proc.wait(60) == 0, "".join(proc.lines)

    (one, one_records), (two, two_records) = _results(tmp_path / "workers-1"), _results(tmp_path / "workers-2")
    flows = _flow_rows(two)
    assert flows == _flow_rows(one)
    assert len(flows) == MIGRATIONS + REQUESTS + DATAGRAMS + V6_CONNECTIONS
    assert {_partition_of_loopback(f[2], f[3]) for f in flows} == {0, 1}  # both processes had flows

    def alerts(records: list[dict]) -> set[tuple]:
        return {(r["kind"], r["orig"], r["resp"]) for r in records if r["type"] == "alert"}

    assert alerts(two_records) == alerts(one_records) and len(alerts(two_records)) >= MIGRATIONS + REQUESTS
    assert {f["rule"] for f in two["findings"]} == {f["rule"] for f in one["findings"]}
    assert {"plaintext-migration", "api-credentials-in-clear"} <= {f["rule"] for f in two["findings"]}
    assert len(two["events"]) == len(one["events"])
    assert sorted(r["uid"] for r in two_records if r["type"] == "flow") == sorted(f["uid"] for f in two["flows"])

    assert [row["file"] for row in two["inputs"]] == ["live:lo"]
    assert two["inputs"][0]["packets"] == one["inputs"][0]["packets"]
    assert not [a for a in two["anomalies"] if a["kind"] in ("kernel-drops", "capture-process-failed")]
    stats = [r for r in two_records if r["type"] == "stats"]
    assert stats and stats[-1]["packets"] == two["inputs"][0]["packets"] and stats[-1]["kernel_drops"] == 0
    assert "kernel drops 0 (0 + 0 by process)" in "".join(runs[2].lines)


def _descendants(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += [int(c) for c in (task / "children").read_text().split()]
    return children + [d for c in children for d in _descendants(c)]


@needs_root
def test_a_capture_process_whose_tcpdump_dies_is_told(tmp_path: Path) -> None:
    port = _free_port(49152, 49262)
    proc = _start(tmp_path, "--workers", "2", "--filter", f"tcp port {port}", "--duration", "90",
                  "--json", "result.json")
    tcpdumps = [pid for pid in _descendants(proc.pid)
                if Path(f"/proc/{pid}/comm").read_text().strip() == "tcpdump"]
    assert len(tcpdumps) == 2
    os.kill(tcpdumps[0], signal.SIGKILL)
    assert proc.wait(60) == 4, "".join(proc.lines)  # cli.ExitStatus.CAPTURE_FAILED
    text = "".join(proc.lines)
    assert "tcpdump ended before the sensor was stopped (killed by SIGKILL" in text
    assert "1 of 2 capture processes failed" in text
    result = json.loads((tmp_path / "result.json").read_text())
    assert [a["kind"] for a in result["anomalies"]] == ["capture-process-failed"]
