"""The legacy QEMU `compress` capability (QEMU <= 9.0; Debian's 7.2 has it): RAM pages go as
COMPRESS_PAGE records (be32 length + a zlib stream, migration/ram.c) on the main channel. A real
migration between two QEMUs on 127.0.0.1 (captures/make_captures.py's QemuPair) is compressed,
not plaintext, from its start and from mid-flow (the first half of its packets cut by editcap)."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

import inspector

ROOT = Path(__file__).resolve().parents[1]
PORT = 49181
pytestmark = pytest.mark.slow   # two QEMUs and a migration


def _make_captures():
    spec = importlib.util.spec_from_file_location("make_captures", ROOT / "captures" / "make_captures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def compress_pcap(tmp_path_factory) -> Path:
    missing = [t for t in ("qemu-system-x86_64", "tcpdump", "editcap", "capinfos") if shutil.which(t) is None]
    assert not missing, f"{', '.join(missing)} not installed: run .ci/install-system-deps"
    mc = _make_captures()
    tmp = tmp_path_factory.mktemp("compress")
    raw, image = tmp / "compress.pcap", tmp / "guest-ram.img"
    image.write_bytes(mc.mixed_content(3 << 20, seed=0x51455654))
    mc.ensure_free(PORT)
    with mc.QemuPair(tmp, image, [], []) as qp:
        for q in (qp.qd, qp.qs):
            q.cmd("migrate-set-capabilities", capabilities=[{"capability": "compress", "state": True}])
            q.cmd("migrate-set-parameters", **{"compress-threads": 1, "decompress-threads": 1})
        with mc.Capture(raw, PORT):
            status = qp.migrate(f"tcp:127.0.0.1:{PORT}", PORT)
            qp.quit()
    assert status["compression"]["pages"] > 100, status   # QEMU says it compressed the pages
    return raw


def _migration(pcap: Path):
    flows = inspector.analyze(pcap).flows
    return flows[flows["resp_p"] == PORT].iloc[0]


def test_compress_capability_is_compressed(compress_pcap):
    row = _migration(compress_pcap)
    assert row["protocol"] == "qemu-migration" and row["verdict"] == "compressed", row["reason"]
    assert "COMPRESS_PAGE" in row["reason"]


def test_compress_capability_mid_flow(compress_pcap, tmp_path):
    packets = int(subprocess.run(["capinfos", "-c", "-M", str(compress_pcap)], capture_output=True, text=True,
                                 check=True).stdout.split()[-1])
    cut = tmp_path / "midflow.pcap"
    subprocess.run(["editcap", "-r", str(compress_pcap), str(cut), f"{packets // 2}-{packets}"], check=True)
    row = _migration(cut)
    assert row["verdict"] == "compressed", row["reason"]
    assert row["protocol"] == "qemu-migration" and "COMPRESS_PAGE" in row["reason"], row["reason"]
