"""Every labelled flow of the real captures in captures/ gets its true verdict.

The captures were made by real programs (QEMU 7.2 migrations, OpenSSH,
curl against Python HTTP/HTTPS servers); captures/manifest.json labels each
flow. Counters are checked against the manifest too, which the capture
script took from the written files independently of inspector.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

import inspector

CAPTURES = Path(__file__).resolve().parents[1] / "captures"
MANIFEST = json.loads((CAPTURES / "manifest.json").read_text())
ENTRIES = MANIFEST["captures"] + MANIFEST.get("variants", [])
LABELLED = [(c["name"], flow) for c in ENTRIES for flow in c["flows"]]
# Flows the classifier still gets wrong, with why (none at present).
KNOWN_MISSES: set[tuple[str, str]] = set()


@cache
def analysed(name: str) -> inspector.Analysis:
    entry = next(c for c in ENTRIES if c["name"] == name)
    return inspector.analyze(CAPTURES / entry["file"])


def find(result: inspector.Analysis, flow: dict):
    f = result.flows
    match = f[(f.orig_h == flow["orig_h"]) & (f.orig_p == flow["orig_p"])
              & (f.resp_h == flow["resp_h"]) & (f.resp_p == flow["resp_p"]) & (f.proto == flow["proto"])]
    assert len(match) == 1, f"flow {flow} not found exactly once (orientation or key wrong?)"
    return match.iloc[0]


@pytest.mark.parametrize(
    "name, flow",
    [pytest.param(n, f, marks=[pytest.mark.xfail(strict=True, reason="see KNOWN_MISSES")]
                  if (n, f["protocol"]) in KNOWN_MISSES else []) for n, f in LABELLED],
    ids=[f"{n}:{f['orig_p']}->{f['resp_p']}" for n, f in LABELLED],
)
def test_verdict_matches_ground_truth(name, flow):
    row = find(analysed(name), flow)
    assert row.verdict == flow["truth"], f"{row.verdict} ({row.confidence}): {row.reason}"
    if flow["truth"] != "unknown":
        assert row.confidence >= 0.5, row.reason
    seen_as = {flow["protocol"]}
    if flow["protocol"] == "libvirt-rpc" and row.mid_stream:
        # Mid-stream, a 16 KiB head inside 64 KiB STREAM messages shows only
        # the QEMU stream they carry (in clear, so the verdict stands).
        seen_as.add("qemu-migration")
    assert row.protocol in seen_as, row.reason
    for key in ("orig_pkts", "resp_pkts", "orig_bytes", "resp_bytes", "orig_captured_bytes",
                "resp_captured_bytes"):
        if key in flow:
            assert row[key] == flow[key], key


@pytest.mark.parametrize("capture", ENTRIES, ids=lambda c: c["name"])
def test_no_unlabelled_flows(capture):
    result = analysed(capture["name"])
    assert len(result.flows) == len(capture["flows"])
    assert int(result.inputs["packets"].iloc[0]) > 0
    if capture.get("kind") == "snaplen":
        assert int(result.inputs["truncated_packets"].iloc[0]) > 0
    else:
        assert result.anomalies.empty, result.anomalies


def test_migration_flows_are_watched():
    for name, flow in LABELLED:
        if flow["protocol"].startswith("qemu") and 49152 <= flow["resp_p"] <= 49261:
            assert find(analysed(name), flow).watch == "migration"
        if flow["protocol"] == "libvirt-rpc":
            assert find(analysed(name), flow).watch == "libvirtd"


def test_captures_stay_small():
    total = sum(p.stat().st_size for p in CAPTURES.rglob("*") if p.is_file())
    assert total < 30 * 1024 * 1024
