"""What a newcomer types in a notebook works on what the library returns:
watchlist options as plain Python values, plots fed straight from the
``Analysis`` tables, secrets redacted unless asked for, findings filtered by
severity, list-valued columns as lists (issue 13, "Library and notebooks")."""

from __future__ import annotations

import inspect
from functools import cache
from pathlib import Path

import pytest

import inspector
from inspector.report import plots

ROOT = Path(__file__).resolve().parents[1]
CAPTURES = ROOT / "captures"


@cache
def analysed() -> inspector.Analysis:
    return inspector.analyze([CAPTURES / name for name in ("qemu-plain.pcap.gz", "qemu-tls.pcap.gz",
                                                           "http-api.pcap")])


# ---------------------------------------------------------------- watchlist options


@pytest.mark.parametrize("ports", [[22, 2222], (22, "2222"), range(2222, 2223), "22,2222", {2222}])
def test_watchlist_takes_any_iterable_of_ports(ports):
    watch = inspector.Watchlist(ssh_ports=ports)
    assert 2222 in watch.ssh_ports and all(type(p) is int for p in watch.ssh_ports)
    flows = inspector.analyze(CAPTURES / "ssh-bulk.pcap.gz", watch=watch).flows
    assert list(flows["watch"].astype(str)) == ["ssh"]


def test_watchlist_ranges_as_strings_and_networks_as_text():
    watch = inspector.Watchlist(migration_ports=["49152-49153", 5000], internal_nets=["192.168.24.0/24"])
    assert watch.migration_ports == {49152, 49153, 5000}
    assert [str(n) for n in watch.internal_nets] == ["192.168.24.0/24"]
    assert watch == inspector.Watchlist(migration_ports="5000,49152-49153", internal_nets="192.168.24.0/24")


@pytest.mark.parametrize("ports", [[22, "x"], [70000], 2.5])
def test_watchlist_rejects_bad_ports_in_one_line(ports):
    with pytest.raises(inspector.ConfigError, match="ssh_ports: .* (is not a port|is outside)"):
        inspector.Watchlist(ssh_ports=ports)


def test_analyze_takes_every_watchlist_option_of_the_cli(tmp_path):
    ssh = CAPTURES / "ssh-bulk.pcap.gz"
    assert list(inspector.analyze(ssh).flows["watch"].astype(str)) == ["none"]
    assert list(inspector.analyze(ssh, ssh_ports=[22, 2222]).flows["watch"].astype(str)) == ["ssh"]
    assert list(inspector.analyze(ssh, migration_ports="2222").flows["watch"].astype(str)) == ["migration"]
    assert list(inspector.analyze(ssh, libvirtd_ports=[2222]).flows["watch"].astype(str)) == ["libvirtd"]
    config = tmp_path / "watch.toml"
    config.write_text('[watch]\nssh_ports = [2222]\n')
    result = inspector.analyze(ssh, watch_config=config)
    assert list(result.flows["watch"].astype(str)) == ["ssh"] and result.watch.ssh_ports == {2222}
    # the keywords are the CLI's option names
    from inspector.cli import analyze_command

    options = {p.name for p in analyze_command.params}
    keywords = set(inspect.signature(inspector.analyze).parameters)
    assert {"watch_config", "migration_ports", "libvirtd_ports", "ssh_ports", "internal_nets"} <= options & keywords


# ---------------------------------------------------------------- plots take the API's tables


def test_plots_take_the_tables_the_api_returns():
    result = analysed()
    scatter = plots.entropy_vs_chi2(result.windows)  # no verdict column: coloured by window label
    assert {"random", "plain"} <= {t.get_text() for t in scatter.get_legend().get_texts()}
    plain = result.flows[result.flows["protocol"] == "qemu-migration"].iloc[0]
    series = plots.entropy_series(result.windows_of(plain.uid))
    assert len(series.get_lines()) >= 1 and plain.uid in series.get_legend().get_texts()[0].get_text()
    histograms = plots.byte_histograms(result.byte_histograms)
    drawn = {(uid, d) for uid, d in result.byte_histograms.groupby(["uid", "direction"], observed=True).groups}
    assert len(histograms.get_lines()) == min(len(drawn), plots.MAX_LINES) + 1  # + the uniform line
    for ax in (scatter, series, histograms):
        ax.figure.savefig(Path("/dev/null"), format="png")


# ---------------------------------------------------------------- secrets redacted unless asked for


def test_secrets_are_redacted_unless_asked_for():
    result = inspector.analyze(CAPTURES / "http-api.pcap")
    raw = result.secrets_raw()
    assert len(raw) and raw["excerpt"].map(type).eq(bytes).all()
    payload = b"".join(raw["excerpt"])
    shown = result.secrets.to_string() + result.secrets.to_html() + repr(result.secrets["excerpt"].tolist())
    assert "secrets_raw()" in shown  # the redaction says how to opt in
    # the Keystone password and the Fernet tokens of the capture are in the raw excerpts only
    for value in (b"s3cr3t-Adm1n-pw", b"gAAAAA"):
        assert value in payload and value.decode() not in shown
    assert result.secrets.drop(columns="excerpt").equals(raw.drop(columns="excerpt"))
    raw.loc[0, "excerpt"] = b""  # a copy: the analysis keeps its bytes
    assert result.secrets_raw()["excerpt"].iloc[0] != b""


def test_reports_keep_their_show_payload_behaviour(tmp_path):
    import json

    from inspector.report.json_report import write_json

    result = inspector.analyze(CAPTURES / "http-api.pcap")
    hexed = [bytes(b).hex() for b in result.secrets_raw()["excerpt"]]
    for show_payload in (False, True):
        with open(tmp_path / "r.json", "w") as handle:
            write_json(result, handle, show_payload=show_payload)
        secrets = json.loads((tmp_path / "r.json").read_text())["secrets"]
        assert [s.get("excerpt_hex") for s in secrets] == (hexed if show_payload else [None] * len(hexed))
    result.export(tmp_path / "export", "parquet", show_payload=True)
    assert inspector.load(tmp_path / "export").secrets_raw()["excerpt"].tolist() == result.secrets_raw()[
        "excerpt"].tolist()


def test_spool_keeps_payload_private(tmp_path):
    import stat

    from inspector.capture.reader import CaptureReader
    from inspector.spool import SpooledTables

    path = CAPTURES / "http-api.pcap"
    with SpooledTables(tmp_path / "spool", flush_flows=1) as spool:
        result = inspector.analysis.analyze_readers([CaptureReader(path)], watch=inspector.Watchlist(),
                                                    names=[str(path)], store=spool)
        assert spool.files["secrets"], "no secrets were spooled"
        assert stat.S_IMODE((tmp_path / "spool").stat().st_mode) == 0o700
        modes = {stat.S_IMODE(p.stat().st_mode) for paths in spool.files.values() for p in paths}
        assert modes == {0o600}
    assert result.secrets_raw()["excerpt"].map(type).eq(bytes).all()
    with SpooledTables() as spool:  # the default temporary folder
        assert stat.S_IMODE(spool.folder.stat().st_mode) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    with pytest.raises(inspector.InspectorError, match="other users can read this folder"):
        SpooledTables(shared)


# ---------------------------------------------------------------- severities and list columns


def test_findings_filter_by_severity():
    findings = analysed().findings
    assert findings["severity"].dtype.ordered
    severe = findings[findings.severity >= "high"]
    assert list(severe["severity"].astype(str)) == ["critical", "high", "high"]
    assert set(findings[findings.severity < "high"]["severity"].astype(str)) == {"info"}
    assert findings.sort_values("severity", ascending=False)["finding"].tolist()[0] == "F1"


def test_list_valued_columns_are_lists():
    result = analysed()
    for table, columns in (("events", ["uids", "channels"]), ("findings", ["uids", "events", "risks"])):
        for column in columns:
            assert all(type(v) is list and all(type(x) is str for x in v) for v in getattr(result, table)[column]), (
                table, column)
    critical = result.findings[result.findings.severity == "critical"].iloc[0]
    assert "data leakage" in critical.risks and critical.events == ["M1"]
    assert set(critical.uids) <= set(result.flows["uid"])  # joins without splitting
    assert result.events.set_index("event").loc["M1", "channels"] == ["main"]
    exploded = result.findings.explode("uids").merge(result.flows[["uid", "resp_p"]], left_on="uids", right_on="uid")
    assert len(exploded) == sum(len(u) for u in result.findings["uids"])


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_list_columns_survive_export_and_load(tmp_path, fmt):
    import pandas as pd

    result = analysed()
    result.export(tmp_path, fmt)
    if fmt == "csv":  # one documented rule: CSV joins list items with ', '
        cells = pd.read_csv(tmp_path / "findings.csv", dtype=str, keep_default_na=False)
        assert cells["risks"].iloc[0] == ", ".join(result.findings["risks"].iloc[0])
    loaded = inspector.load(tmp_path)
    for table, column in (("events", "uids"), ("events", "channels"), ("findings", "uids"),
                          ("findings", "events"), ("findings", "risks")):
        assert getattr(loaded, table)[column].tolist() == getattr(result, table)[column].tolist(), (table, column)
    assert loaded.findings["severity"].dtype == result.findings["severity"].dtype


# ---------------------------------------------------------------- byte histograms of every bulk channel


@pytest.mark.parametrize("name", ["qemu-multifd-zstd", "qemu-multifd-zlib"])
def test_compressed_multifd_channels_have_byte_histograms(name):
    """The channels move 540-860 KiB, under the first probe (1 MiB): their
    16 KiB heads are counted, and the bytes are nearly uniform, not text."""
    import gzip

    import dpkt
    import numpy as np

    from inspector.flows.kernels import REGION_BYTES

    path = CAPTURES / f"{name}.pcap.gz"
    result = inspector.analyze(path)
    multifd = result.flows[result.flows["protocol"] == "qemu-multifd"]
    assert len(multifd) == 2 and (multifd["orig_bytes"] < 1 << 20).all()
    for flow in multifd.itertuples(index=False):
        histogram = result.byte_histogram(flow.uid)["orig"]
        assert histogram.sum() == REGION_BYTES
        # the head as dpkt reads it from the capture: the first 16 KiB the originator sent
        with gzip.open(path, "rb") as handle:
            stream = b"".join(bytes(tcp.data) for _ts, frame in dpkt.pcap.Reader(handle)
                              if (tcp := dpkt.ethernet.Ethernet(frame).data.data).sport == flow.orig_p)
        head = np.bincount(np.frombuffer(stream[:REGION_BYTES], dtype=np.uint8), minlength=256)
        assert histogram.tolist() == head.tolist()
        share = histogram.to_numpy()[1:] / histogram.sum()  # 0x00: the multifd packet headers
        assert share.max() < 4 / 256  # compressed: nearly flat


def test_short_watched_flows_keep_no_histogram():
    result = inspector.analyze(CAPTURES / "libvirt-tunnelled-tls.pcap.gz")
    sent = result.flows.set_index("uid")[["orig_bytes", "resp_bytes"]]
    for (uid, direction), _ in result.byte_histograms.groupby(["uid", "direction"], observed=True):
        assert sent.loc[uid, f"{direction}_bytes"] >= 256 * 1024
