"""The hash partitions of `inspector live --workers N`, run by tcpdump itself
on recorded captures (`tcpdump -r FILE -w PART TERM`, no privilege needed):
every packet in exactly one partition, every flow whole in one."""

from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest

import inspector
from inspector.live_partition import link_header_bytes, partition_term

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = [
    ROOT / "tests" / "data" / "lo_mixed.pcap",   # Ethernet, IPv4 and IPv6, TCP and UDP
    ROOT / "tests" / "data" / "any_sll.pcap",    # Linux cooked v1
    ROOT / "tests" / "data" / "any_sll2.pcap",   # Linux cooked v2
    ROOT / "captures" / "http-api.pcap",
    ROOT / "captures" / "variants" / "qemu-plain-mtu1500-vxlan.pcap.gz",   # inner flows of a tunnel
    ROOT / "captures" / "variants" / "qemu-tls-mtu1500-erspan3.pcap.gz",   # GRE
    ROOT / "captures" / "variants" / "qemu-tls-mtu1500-dot1q.pcap.gz",     # VLAN tag: not IP at libpcap's offsets
]
TCPDUMP = shutil.which("tcpdump")
pytestmark = pytest.mark.skipif(TCPDUMP is None, reason="tcpdump is not installed")


def _plain(path: Path, folder: Path) -> Path:
    """tcpdump reads no gzip."""
    if path.suffix != ".gz":
        return path
    out = folder / path.stem
    with gzip.open(path, "rb") as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return out


def _records(path: Path) -> list[str]:
    """Every packet of a capture as tcpdump prints it (time and headers)."""
    done = subprocess.run([TCPDUMP, "-r", str(path), "-n", "-tt", "-v"], capture_output=True, text=True, check=True)
    return sorted(line for line in done.stdout.splitlines() if line[:1].isdigit())


def _flows(path: Path) -> list[tuple]:
    flows = inspector.analyze(path).flows
    return sorted(zip(flows["uid"], flows["orig_pkts"], flows["resp_pkts"], flows["verdict"], strict=True))


@pytest.mark.parametrize("capture", CAPTURES, ids=lambda p: p.name)
@pytest.mark.parametrize("count", [2, 3])
def test_each_packet_in_one_partition_each_flow_whole(capture: Path, count: int, tmp_path: Path) -> None:
    whole = _plain(capture, tmp_path)
    link = link_header_bytes(TCPDUMP, ["-r", str(whole)])
    parts = []
    for index in range(count):
        part = tmp_path / f"part-{index}.pcap"
        subprocess.run([TCPDUMP, "--time-stamp-precision", "nano", "-r", str(whole), "-w", str(part),
                        partition_term(index, count, link)], capture_output=True, check=True)
        parts.append(part)
    assert sorted(sum((_records(p) for p in parts), [])) == _records(whole)
    assert sorted(sum((_flows(p) for p in parts if _records(p)), [])) == _flows(whole)


def test_flows_spread_over_both_partitions() -> None:
    """lo_mixed's flows (127.0.0.1 and ::1 only: the ports make the difference) land in both partitions of 2."""
    capture = CAPTURES[0]
    link = link_header_bytes(TCPDUMP, ["-r", str(capture)])
    counts = [len(_records_matching(capture, partition_term(k, 2, link))) for k in range(2)]
    assert all(counts) and sum(counts) == len(_records(capture))


def _records_matching(path: Path, expression: str) -> list[str]:
    done = subprocess.run([TCPDUMP, "-r", str(path), "-n", "-tt", "-v", expression], capture_output=True, text=True,
                          check=True)
    return [line for line in done.stdout.splitlines() if line[:1].isdigit()]


def test_a_wrong_partition_is_refused() -> None:
    with pytest.raises(ValueError):
        partition_term(2, 2, 14)
