"""benchmarks/accuracy.py runs in its quick mode and its output parses."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "accuracy.py"


def test_quick_run_on_two_captures(tmp_path):
    out = tmp_path / "acc.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--only", "qemu-plain", "--only", "qemu-tls",
         "--out", str(out)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    for heading in ("== with detectors, K = 4 KiB", "== with detectors, K = full",
                    "== statistics only, K = 4 KiB", "== statistics only, K = full",
                    "== summary", "== published figures", "HEDGE", "EnCoD", "indicative"):
        assert heading in text, heading

    doc = json.loads(out.read_text())
    assert doc["quick"] is True
    assert doc["prefixes"] == ["4 KiB", "full"]
    assert [c["name"] for c in doc["captures"]] == ["qemu-plain", "qemu-tls"]
    assert len(doc["flows"]) == 2 * 2 * 2          # 2 flows x 2 prefixes x 2 modes
    for mode in ("detectors", "statistics"):
        for k in ("4 KiB", "full"):
            s = doc["results"][mode][k]
            assert s["labelled"] == 2 and s["missing"] == 0
            assert sum(sum(row.values()) for row in s["confusion"].values()) == 2
            assert sum(sum(row.values()) for row in s["three_class"]["confusion"].values()) == 2
            assert 0 <= s["accuracy"] <= s["coverage"] <= 1
            assert s["correct"] <= s["decided"] <= s["labelled"]
    # the full captures are classified right with the detectors on
    full = doc["results"]["detectors"]["full"]
    assert full["accuracy"] == 1.0 and full["critical_errors"] == 0
    # the cutter shortened the one payload direction of each capture at 4 KiB
    for name in ("qemu-plain", "qemu-tls"):
        assert doc["cut"][f"{name}@4 KiB"]["frames_shortened"] >= 1
