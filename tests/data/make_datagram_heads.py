"""Write tests/data/datagram_heads/: the first 3000 bytes of each direction of
real datagram flows, and OpenVPN over TCP (payloads one after the other, as the flow table hands a
head to the detectors), from captures made by tests/crypto_captures.py.

    sudo python tests/data/make_datagram_heads.py   # needs what the makers need (root, strongSwan, ...)
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.utils import rdpcap

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import crypto_captures  # noqa: E402

HEAD = 3000
MAKERS = {"wireguard": crypto_captures.wireguard_capture, "ipsec": crypto_captures.ipsec_capture,
          "esp": crypto_captures.esp_capture, "quic": crypto_captures.quic_capture,
          "dtls": crypto_captures.dtls_capture, "openvpn": crypto_captures.openvpn_capture,
          "openvpn-tcp": lambda tmp: crypto_captures.openvpn_capture(tmp, "tcp")}


def heads(pcap: Path) -> dict[str, bytes]:
    """Per (flow, direction) the concatenated payloads: UDP or TCP payloads, or the IP payload of ESP."""
    out: dict[str, bytes] = {}
    for packet in rdpcap(str(pcap)):
        if IP not in packet:
            continue
        ip = packet[IP]
        if UDP in ip:
            key, data = f"udp-{ip.src}-{ip[UDP].sport}", bytes(ip[UDP].payload)
        elif TCP in ip and crypto_captures.MIGRATION_PORT not in (ip[TCP].sport, ip[TCP].dport):
            key, data = f"tcp-{ip.src}-{ip[TCP].sport}", bytes(ip[TCP].payload)  # in order on a veth: no reordering
        elif ip.proto == 50:
            key, data = f"ip50-{ip.src}", bytes(ip.payload)
        else:
            continue
        out[key] = (out.get(key, b"") + data)[:HEAD]
    return out


def main() -> None:
    target = HERE / "datagram_heads"
    target.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in MAKERS.items():
            for key, data in heads(make(Path(tmp))).items():
                (target / f"{name}-{key}.bin").write_bytes(data)


if __name__ == "__main__":
    main()
