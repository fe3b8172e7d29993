"""Flows end as they time out, on real traffic: the tables are the same as
when every flow ends with the capture, the flow table reuses the memory of
ended flows, an idle gap splits a flow, long flows are reported open."""

from __future__ import annotations

import http.client
import http.server
import os
import socket
import struct
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import inspector
from inspector.analysis import assemble
from inspector.capture import reader as reader_module
from inspector.capture.reader import CaptureReader
from inspector.meters import default_meters
from inspector.pipeline import ClosedFlows, ClosedTables, Pipeline, Timeouts
from tests.loopback_capture import loopback_capture, serving

CAPTURES = Path(__file__).resolve().parent.parent / "captures"
NEVER = Timeouts(idle=1e9, after_close=1e9)  # every flow ends with the capture
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="capturing needs root (the CI runs the tests as root)")
TABLES = ("flows", "windows", "evidence", "secrets", "secret_counts", "byte_histograms", "events", "findings")
KEYS = {"flows": ["uid"], "windows": ["uid", "direction", "window"], "evidence": ["uid", "direction", "offset",
        "protocol"], "secrets": ["uid", "direction", "offset", "kind"], "secret_counts": ["uid", "direction", "kind"],
        "byte_histograms": ["uid", "direction", "byte"], "events": ["event"], "findings": ["finding"]}


class _Api(http.server.BaseHTTPRequestHandler):
    """An API-like server: JSON bodies of varied size, a token in every reply."""

    protocol_version = "HTTP/1.1"  # the client closes first: its port waits in TIME_WAIT, no 5-tuple is reused

    def do_GET(self) -> None:
        size = int(self.path.rsplit("/", 1)[-1])
        body = (b'{"servers": [' + b'{"id": "%d", "status": "ACTIVE"},' * (size // 32) + b'{}]}') % tuple(
            range(size // 32))
        self.send_response(200)
        self.send_header("X-Subject-Token", "gAAAAABl" + "x" * 120)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def many_short_flows(tmp_path_factory) -> Path:
    """1,200 real HTTP connections on loopback, one after the other, over a few seconds."""
    pcap = tmp_path_factory.mktemp("expiry") / "many.pcap"
    sizes = np.random.default_rng(7).choice([40, 400, 4000, 40000, 200000], 1200, p=[0.3, 0.3, 0.25, 0.1, 0.05])
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api)) as port:
        with loopback_capture(pcap, f"tcp port {port}"):
            for size in sizes.tolist():
                client = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                client.request("GET", f"/servers/{size}")
                client.getresponse().read()
                client.close()
    return pcap


def _run(path: Path, timeouts: Timeouts) -> tuple[inspector.Analysis, Pipeline, list[ClosedFlows]]:
    """The pipeline over one capture (it sweeps after every batch), and what it handed over."""
    store, parts = ClosedTables(), []

    def closed(part: ClosedFlows) -> None:
        parts.append(part)
        if not part.interim:
            store.add(part)

    watch = inspector.Watchlist.default()
    pipeline = Pipeline(watch, [str(path)], meters=default_meters(), on_closed=closed, timeouts=timeouts)
    stats = pipeline.run([CaptureReader(path)])
    return assemble(store.tables(), stats, watch), pipeline, parts


def _same(a: inspector.Analysis, b: inspector.Analysis) -> None:
    for name in TABLES:
        left = getattr(a, name).sort_values(KEYS[name]).reset_index(drop=True)
        right = getattr(b, name).sort_values(KEYS[name]).reset_index(drop=True)
        pd.testing.assert_frame_equal(left, right, check_categorical=False, obj=name)


@needs_root
def test_ended_flows_free_the_table_and_change_no_table(many_short_flows, monkeypatch):
    """With flows ending 0.2 s after their FINs, the table holds less than
    half of the 1,200 flows at any time, and every table (verdicts,
    windows, evidence, secrets, events, findings) is the one an analysis
    that ends every flow with the capture gives."""
    monkeypatch.setattr(reader_module, "CHUNK_BYTES", 256 * 1024)  # sweeps come between batches: many small ones
    swept, pipeline, parts = _run(many_short_flows, Timeouts(after_close=0.2, sweep=0.02))
    whole = inspector.analyze(many_short_flows, timeouts=NEVER)
    # ~1,200 (a 5-tuple reused after a close whose FIN the capture missed stays one flow)
    assert 1150 < len(whole.flows) == pipeline.table.flows_seen <= 1200
    # ids, rows and buffers were reused: ~1,000 flows a second, ended 0.2 s after their FINs
    assert len(parts) > 20 and pipeline.table.n_ids < len(whole.flows) // 2
    assert int(pipeline.table.counters[0]) == pipeline.table.hist.shape[0]  # every histogram row is free again
    assert (swept.flows["closed_by"].isin(["fin", "rst"])).mean() > 0.99, swept.flows["closed_by"].value_counts()
    assert len(swept.secret_counts) > 0.99 * len(whole.flows) and len(swept.windows) > 2 * len(whole.flows)
    _same(swept, whole)


def test_flows_of_several_captures_end_between_them():
    """Captures taken seconds apart, read as one: each capture's flows end
    (5 s after their FINs) while the next ones are read."""
    paths = [CAPTURES / name for name in ("qemu-plain.pcap.gz", "qemu-tls.pcap.gz", "qemu-ssh-tunnel.pcap.gz",
                                          "https-api.pcap.gz", "http-api.pcap")]
    closed: list[ClosedFlows] = []
    swept = inspector.analysis.analyze_readers([CaptureReader(p) for p in paths], watch=inspector.Watchlist.default(),
                                               names=[str(p) for p in paths], on_closed=closed.append,
                                               timeouts=Timeouts(sweep=1.0))
    assert len(closed) > 1
    _same(swept, inspector.analyze(paths, timeouts=NEVER))


def _conversation_with_a_pause(pcap: Path, pause: float) -> None:
    """One TCP connection on loopback: a request, ``pause`` seconds of silence, another, then close."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def echo() -> None:
        conn, _ = server.accept()
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data.upper())

    thread = threading.Thread(target=echo, daemon=True)
    with loopback_capture(pcap, f"tcp port {port}"):
        thread.start()
        with socket.create_connection(("127.0.0.1", port)) as client:
            client.sendall(b"first request " * 100)
            client.recv(65536)
            time.sleep(pause)
            client.sendall(b"second request " * 100)
            client.recv(65536)
        thread.join(5)
    server.close()


@needs_root
def test_a_flow_silent_longer_than_the_idle_timeout_is_two_flows(tmp_path):
    pcap = tmp_path / "pause.pcap"
    _conversation_with_a_pause(pcap, 2.5)
    one = inspector.analyze(pcap)
    assert len(one.flows) == 1 and one.flows["closed_by"].tolist() == ["fin"]
    two = inspector.analyze(pcap, timeouts=Timeouts(idle=1.0, sweep=0.5))
    first, second = two.flows.itertuples(index=False)
    assert (first.closed_by, second.closed_by) == ("idle", "fin")
    assert not first.mid_stream and second.mid_stream  # the second part has no SYN
    assert first.uid != second.uid and (first.orig_p, first.resp_p) == (second.orig_p, second.resp_p)
    assert second.ts - (first.ts + first.duration) >= pd.Timedelta(seconds=2)
    assert first.orig_bytes + second.orig_bytes == one.flows["orig_bytes"].iloc[0]


def test_long_flows_are_reported_open_then_end_once(monkeypatch):
    """At the active timeout a flow is reported as it is so far (closed_by
    'open', same uid), and keeps going: the result holds it once, as if no
    report had been made."""
    monkeypatch.setattr(reader_module, "CHUNK_BYTES", 256 * 1024)  # reports come between batches
    path = CAPTURES / "qemu-plain.pcap.gz"
    result, _pipeline, parts = _run(path, Timeouts(active=0.004, sweep=0.001))  # the migration takes 20 ms
    interim = [p for p in parts if p.interim]
    assert interim and all((p.flows["closed_by"] == "open").all() for p in interim)
    migration = result.flows[result.flows["protocol"] == "qemu-migration"]
    assert len(migration) == 1 and migration["closed_by"].iloc[0] == "fin"
    uid = migration["uid"].iloc[0]
    reports = [p.flows.set_index("uid").loc[uid] for p in interim if uid in set(p.flows["uid"])]
    assert len(reports) >= 2
    assert [r["orig_bytes"] for r in reports] == sorted(r["orig_bytes"] for r in reports)
    assert reports[-1]["orig_bytes"] <= migration["orig_bytes"].iloc[0]
    _same(result, inspector.analyze(path, timeouts=NEVER))


def test_timeouts_must_be_positive():
    with pytest.raises(inspector.InspectorError, match="idle"):
        Timeouts(idle=0)


def test_spooled_flows_come_back_as_they_were(tmp_path):
    """The sensor keeps ended flows on disk (Parquet, a file per sweep
    here); the tables read back for the reports are those kept in memory."""
    from inspector.spool import SpooledTables

    paths = [CAPTURES / name for name in ("qemu-plain.pcap.gz", "qemu-multifd-zstd.pcap.gz", "https-api.pcap.gz",
                                          "http-api.pcap")]
    with SpooledTables(tmp_path / "spool", flush_flows=1) as spool:
        spooled = inspector.analysis.analyze_readers([CaptureReader(p) for p in paths],
                                                     watch=inspector.Watchlist.default(),
                                                     names=[str(p) for p in paths], store=spool,
                                                     timeouts=Timeouts(after_close=1.0, sweep=0.5))
        assert len(spool.files["flows"]) >= 2
    _same(spooled, inspector.analyze(paths))
    assert spooled.secrets_raw()["excerpt"].map(type).eq(bytes).all()


@needs_root
def test_flows_that_end_mid_batch_are_classified_together(tmp_path):
    """A UDP 5-tuple reused after the idle timeout, 150 times within one
    batch (a syslog or DNS client on a fixed port): each use is a flow of
    its own, and they are classified in one go at the next sweep, not one
    table build per flow (which took 12-33 s for 145 such flows)."""
    pcap = tmp_path / "udp.pcap"
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client.bind(("127.0.0.1", 0))
    with loopback_capture(pcap, f"udp port {server.getsockname()[1]}"):
        for i in range(150):
            client.sendto(b"<14>inspector test %d" % i, server.getsockname())
            server.recvfrom(100)
            time.sleep(0.004)
    server.close()
    client.close()
    result, pipeline, parts = _run(pcap, Timeouts(idle=0.002, sweep=3600))
    assert len(result.flows) == 150 and (result.flows["closed_by"] == "idle").sum() == 149
    assert len(parts) <= 2  # the first sweep (the batch's end: 1 h of capture clock never passes), then finish
    assert pipeline.table.flows_seen == 150


@needs_root
def test_a_reused_4_tuple_gives_a_flow_per_connection_closed_a_few_at_a_time(tmp_path, monkeypatch):
    """300 real connections from one client port to one server port, each
    reset by the client (SO_LINGER 0: no TIME_WAIT, the 4-tuple is free at
    once), as an attacker who wants a flow ended inside the packet path for
    every third packet sends them: one flow per connection with the
    endpoints and watch role of the first, and with ``most`` the sweeps close
    at most that many at once, yet the tables are those of one close at the end."""
    pcap = tmp_path / "reuse.pcap"
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    client_port = _free_port()
    with loopback_capture(pcap, f"tcp port {server.getsockname()[1]}"):
        for i in range(300):
            client = socket.socket()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            client.bind(("127.0.0.1", client_port))
            client.connect(server.getsockname())
            accepted, _peer = server.accept()
            client.sendall(b"GET /servers/%d HTTP/1.1\r\nHost: api\r\nX-Auth-Token: gAAAAABl%s\r\n\r\n" % (i, b"x" * 80))
            accepted.recv(4096)
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            accepted.close()
            time.sleep(0.002)  # tcpdump keeps up
    server.close()
    monkeypatch.setattr(reader_module, "CHUNK_BYTES", 16 * 1024)  # sweeps come between batches: many small ones
    swept, pipeline, parts = _run(pcap, Timeouts(idle=1e9, after_close=1e9, sweep=0.001, most=16))
    whole = inspector.analyze(pcap, timeouts=NEVER)
    assert 250 < len(whole.flows) == pipeline.table.flows_seen <= 300  # each SYN after a RST: a new flow
    assert whole.flows[["orig_h", "orig_p", "resp_h", "resp_p", "watch"]].drop_duplicates().shape[0] == 1
    assert max(len(part.flows) for part in parts[:-1]) <= 16 and len(parts) > 5  # the last: at the end
    assert pipeline.table.n_ids < 250  # ids were freed and reused as the flows were closed
    _same(swept, whole)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
