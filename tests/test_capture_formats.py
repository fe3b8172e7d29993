"""Capture-layer formats: every variant of the base captures must give the
same flows as the dpkt oracle computes from the base capture.

Variants are generated at test time (tests/capture_variants.py) into a tmp
directory; the committed base captures come from tests/data/.
"""
from __future__ import annotations

import ipaddress
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import capture_variants as cv  # noqa: E402

# A nanosecond base written at usec resolution loses up to 999 ns.
TS_TOL_NS = 999
DUR_TOL_NS = 1998
TS_TOL_US = 1       # tshark comparisons (tshark prints rounded usec here)


# ---------------------------------------------------------------------------
# fixtures and helpers
# ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def inspector():
    import inspector as mod     # a failure here is a real failure, not a skip
    return mod


@pytest.fixture(scope="session")
def variant_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("capture-variants")


_built: dict[tuple[str, str], Path] = {}


def variant(name: str, outdir: Path, base: str = cv.DEFAULT_BASE) -> Path:
    key = (name, base)
    if key not in _built:
        try:
            _built[key] = cv.make_variant(name, outdir / base, base)
        except cv.MissingTool as e:
            pytest.skip(f"variant {name} needs {e}")
    return _built[key]


def host(x) -> str:
    return str(ipaddress.ip_address(str(x)))


def flow_rows(flows_df) -> dict[tuple, dict]:
    rows = {}
    for r in flows_df.to_dict("records"):
        key = (str(r["proto"]), host(r["orig_h"]), int(r["orig_p"]),
               host(r["resp_h"]), int(r["resp_p"]))
        assert key not in rows, f"flow {key} appears twice in result.flows"
        rows[key] = r
    return rows


def ts_ns(v) -> int:
    import pandas as pd
    return int(pd.Timestamp(v).value)


def dur_ns(v) -> int:
    import pandas as pd
    return int(pd.Timedelta(v).value)


def compare_flows(got_df, want: dict[tuple, cv.OFlow], *, times: bool = True,
                  skip_keys: tuple = ()) -> list[str]:
    """Differences between result.flows and the oracle, as readable lines."""
    got = flow_rows(got_df)
    problems = []
    for k in sorted(set(want) - set(got)):
        if k not in skip_keys:
            problems.append(f"missing flow {k}")
    for k in sorted(set(got) - set(want)):
        problems.append(f"unexpected flow {k}")
    for k in sorted(set(got) & set(want)):
        if k in skip_keys:
            continue
        g, w = got[k], want[k]
        for col in ("orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes"):
            if int(g[col]) != getattr(w, col):
                problems.append(f"{k}: {col} = {int(g[col])}, oracle says {getattr(w, col)}")
        if times:
            if abs(ts_ns(g["ts"]) - w.ts_ns) > TS_TOL_NS:
                problems.append(f"{k}: ts = {g['ts']} ({ts_ns(g['ts'])} ns), "
                                f"oracle says {w.ts_ns} ns")
            if abs(dur_ns(g["duration"]) - w.duration_ns) > DUR_TOL_NS:
                problems.append(f"{k}: duration = {g['duration']}, oracle says "
                                f"{w.duration_ns} ns")
        for d in ("orig", "resp"):
            ab = int(g[f"{d}_analysed_bytes"])
            if not 0 <= ab <= int(g[f"{d}_bytes"]):
                problems.append(f"{k}: {d}_analysed_bytes = {ab} outside "
                                f"0..{d}_bytes ({int(g[f'{d}_bytes'])})")
    return problems


def one_input_row(result, path: Path) -> dict:
    rows = result.inputs.to_dict("records")
    assert len(rows) == 1, f"result.inputs should have one row per file, got {rows}"
    row = rows[0]
    assert Path(str(row["file"])).name == path.name, row
    return row


def base_packet_count(base: str) -> int:
    return len(cv.read_pcap(cv.BASES[base]).records)


# ---------------------------------------------------------------------------
# the oracle and the generators themselves (no inspector needed)
# ---------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("base", list(cv.BASES))
def test_oracle_agrees_with_tshark(base):
    """Cross-check the dpkt oracle against tshark on the committed captures."""
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    rows, _ = cv.tshark_summary(cv.BASES[base])
    pkts = cv.oracle_packets(cv.BASES[base])
    assert len(rows) == len(pkts) == base_packet_count(base)
    for row, p in zip(rows, pkts):
        t, src, dst, sport, dport, plen = row
        assert abs(t - p.ts_ns / 1000) <= TS_TOL_US
        assert (host(src), int(sport), host(dst), int(dport)) == (p.src, p.sport, p.dst, p.dport)
        want = p.payload if p.proto == "tcp" else p.payload + 8   # udp.length has the header
        assert int(plen) == want


def test_base_captures_are_what_the_tests_assume():
    for base, path in cv.BASES.items():
        assert path.stat().st_size < 100_000, path
        flows = cv.oracle_for_base(base)
        protos = {k[0] for k in flows}
        fams = {ipaddress.ip_address(k[1]).version for k in flows}
        assert protos == {"tcp", "udp"}, (base, protos)
        assert fams == {4, 6}, (base, fams)
        # only loopback traffic was ever recorded
        assert all(ipaddress.ip_address(k[1]).is_loopback and
                   ipaddress.ip_address(k[3]).is_loopback for k in flows)
    assert cv.read_pcap(cv.BASES["lo_mixed"]).linktype == cv.LT_ETHERNET
    assert cv.read_pcap(cv.BASES["any_sll"]).linktype == cv.LT_LINUX_SLL
    p = cv.read_pcap(cv.BASES["any_sll2"])
    assert p.linktype == cv.LT_LINUX_SLL2 and p.nsec


GENERATOR_CHECK_BASES = ["lo_mixed", "any_sll2"]


@pytest.mark.slow
@pytest.mark.parametrize("base", GENERATOR_CHECK_BASES)
@pytest.mark.parametrize("name", list(cv.VARIANTS))
def test_generated_variant_parses_in_tshark(name, base, variant_dir):
    """Each generated file decodes in tshark to the base's packets."""
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    v = cv.VARIANTS[name]
    path = variant(name, variant_dir, base)
    rows, err = cv.tshark_summary(path)
    ref, _ = cv.tshark_summary(cv.BASES[base])
    want = ref[:-1] if v.truncated_last else ref
    assert cv.same_packets(rows, want, payload_too=not v.truncated_snaplen), (
        f"{path}: tshark sees {len(rows)} packets, base has {len(want)}; {err}")
    if v.truncated_last:
        assert "cut short" in err, err
    if v.gz:
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    if v.truncated_snaplen:
        p = cv.read_pcap(path)
        assert max(len(r.data) for r in p.records) <= v.truncated_snaplen
        assert any(len(r.data) < r.wirelen for r in p.records)


def test_two_interface_pcapng_really_has_two_link_types(variant_dir):
    if shutil.which("capinfos") is None:
        pytest.skip("capinfos not installed")
    path = variant("pcapng_two_interfaces", variant_dir)
    out = subprocess.run(["capinfos", str(path)], capture_output=True, text=True).stdout
    assert "Number of interfaces in file: 2" in out
    assert "Ethernet" in out and "Raw IP" in out
    assert "nanoseconds" in out and "microseconds" in out


# ---------------------------------------------------------------------------
# inspector.analyze against the oracle
# ---------------------------------------------------------------------------

def check_variant(inspector, name: str, base: str, variant_dir: Path) -> None:
    v = cv.VARIANTS[name]
    path = variant(name, variant_dir, base)
    result = inspector.analyze([str(path)])

    snap = v.truncated_snaplen
    extra = 14 - cv.base_link_len(base) if snap else 0   # snaplen variant is Ethernet
    want = cv.oracle_for_base(base, snaplen=snap, extra_link_bytes=extra)
    problems = compare_flows(result.flows, want)
    assert not problems, f"{name} ({path.name}) from {base}:\n  " + "\n  ".join(problems)

    row = one_input_row(result, path)
    assert int(row["packets"]) == base_packet_count(base), row
    fmt = str(row["format"]).lower()
    if v.container == "pcapng":
        assert "pcapng" in fmt, f"format column {row['format']!r} for a pcapng file"
    else:
        assert "pcap" in fmt and "pcapng" not in fmt, (
            f"format column {row['format']!r} for a classic pcap file")

    if snap:
        n_cut = cv.oracle_truncated_count(base, snap, extra)
        assert n_cut > 0
        assert int(row["truncated_packets"]) == n_cut, (
            f"truncated_packets = {row['truncated_packets']}, {n_cut} frames are longer "
            f"than the {snap}-byte snaplen")
        got = flow_rows(result.flows)
        for k, w in want.items():
            for d in ("orig", "resp"):
                ab = int(got[k][f"{d}_analysed_bytes"])
                cap = getattr(w, f"{d}_captured")
                assert ab <= cap, (f"{k}: {d}_analysed_bytes = {ab} but only {cap} "
                                   f"payload bytes were captured")
        assert sum(w.orig_captured + w.resp_captured for w in want.values()) < \
            sum(w.orig_bytes + w.resp_bytes for w in want.values())
    else:
        assert int(row["truncated_packets"]) == 0, row
        if not name.startswith("pcapng_two_interfaces"):
            assert int(row["anomalies"]) == 0, f"clean capture reported anomalies: {row}"


@pytest.mark.parametrize("name", cv.FULL_VARIANTS)
def test_variant_gives_oracle_flows(inspector, name, variant_dir):
    check_variant(inspector, name, cv.DEFAULT_BASE, variant_dir)


# The same on the real cooked captures (SLL from -i any, SLL2 in nsec).
COOKED_VARIANTS = ["pcap_be_usec", "pcap_le_nsec", "pcapng_two_interfaces_gz",
                   "linktype_null_be_af30", "vlan_qinq", "ipv4_options",
                   "ipv6_ext_headers", "snaplen96"]


@pytest.mark.parametrize("base", ["any_sll", "any_sll2"])
@pytest.mark.parametrize("name", COOKED_VARIANTS)
def test_variant_of_cooked_base(inspector, name, base, variant_dir):
    check_variant(inspector, name, base, variant_dir)


@pytest.mark.parametrize("base", list(cv.BASES))
def test_committed_base_capture(inspector, base):
    """The files exactly as tcpdump wrote them (Ethernet, SLL, SLL2/nsec)."""
    path = cv.BASES[base]
    result = inspector.analyze([str(path)])
    problems = compare_flows(result.flows, cv.oracle_for_base(base))
    assert not problems, f"{path.name}:\n  " + "\n  ".join(problems)
    row = one_input_row(result, path)
    assert int(row["packets"]) == base_packet_count(base)
    assert int(row["truncated_packets"]) == 0
    assert int(row["anomalies"]) == 0


@pytest.mark.parametrize("name", cv.TRUNCATED_LAST_VARIANTS)
def test_truncated_last_record_is_an_anomaly_not_an_error(inspector, name, variant_dir):
    path = variant(name, variant_dir)
    result = inspector.analyze([str(path)])    # must not raise

    pkts = cv.oracle_packets(cv.BASES[cv.DEFAULT_BASE])
    last = pkts[-1]
    full = cv.oracle_flows(pkts)
    lost = cv.oracle_flows(pkts[:-1])
    last_key = next(k for k, f in full.items()
                    if {(f.orig_h, f.orig_p), (f.resp_h, f.resp_p)} ==
                    {(last.src, last.sport), (last.dst, last.dport)})
    problems = compare_flows(result.flows, full, skip_keys=(last_key,))
    assert not problems, f"{name}:\n  " + "\n  ".join(problems)

    # The flow of the cut packet: with or without that packet, but no more.
    got = flow_rows(result.flows)[last_key]
    d = "orig" if (last.src, last.sport) == last_key[1:3] else "resp"
    allowed = {(getattr(f, f"{d}_pkts"), getattr(f, f"{d}_bytes")) for f in (full[last_key],
                                                                            lost[last_key])}
    assert (int(got[f"{d}_pkts"]), int(got[f"{d}_bytes"])) in allowed, (got, allowed)

    row = one_input_row(result, path)
    assert len(pkts) - 1 <= int(row["packets"]) <= len(pkts), row
    assert int(row["anomalies"]) >= 1, f"cut-short file gave no anomaly: {row}"
    an = result.anomalies
    mine = an[[Path(str(f)).name == path.name for f in an["file"]]]
    assert len(mine) >= 1 and int(mine["count"].sum()) >= 1, an


def test_several_files_in_one_run(inspector, variant_dir):
    """Different formats, link types and resolutions in one analyze() call."""
    picks = [("pcap_be_nsec", "lo_mixed"), ("pcapng_two_interfaces_gz", "any_sll2"),
             ("linktype_null_af30", "any_sll")]
    paths = [variant(n, variant_dir, b) for n, b in picks]
    want: dict = {}
    for _, b in picks:
        o = cv.oracle_for_base(b)
        assert not set(o) & set(want), "bases must not share a 5-tuple"
        want.update(o)
    result = inspector.analyze([str(p) for p in paths])
    problems = compare_flows(result.flows, want)
    assert not problems, "\n  ".join(problems)

    rows = result.inputs.to_dict("records")
    assert [Path(str(r["file"])).name for r in rows] == [p.name for p in paths]
    for r, (_, b) in zip(rows, picks):
        assert int(r["packets"]) == base_packet_count(b), r


def test_clean_and_damaged_file_in_one_run(inspector, variant_dir):
    """Two inputs, one a clean file and one cut short: both listed in inputs,
    only the damaged one has anomalies."""
    good = variant("pcap_le_usec", variant_dir, "any_sll")
    bad = variant("truncated_last_record", variant_dir, "lo_mixed")
    result = inspector.analyze([str(good), str(bad)])
    rows = {Path(str(r["file"])).name: r for r in result.inputs.to_dict("records")}
    assert set(rows) == {good.name, bad.name}
    assert int(rows[good.name]["anomalies"]) == 0
    assert int(rows[bad.name]["anomalies"]) >= 1
    keys = set(flow_rows(result.flows))
    assert set(cv.oracle_for_base("any_sll")) <= keys
