"""Encryption that is not TLS or SSH: ESP, ESP in UDP, IKE, WireGuard, QUIC, DTLS.

Two kinds of real data:
- heads in tests/data/datagram_heads (the first 3000 bytes of each direction
  of flows captured from strongSwan, wireguard-go, scapy's ESP, aioquic,
  openssl and OpenVPN; tests/data/make_datagram_heads.py), read by the detectors;
- the same programs run here (slow; root, namespaces and the programs, else
  skipped with the reason), their captures analysed end to end.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
import crypto_captures  # noqa: E402

import inspector  # noqa: E402
from inspector.protocols import CLEARTEXT, ENCRYPTED, NOTHING, detect  # noqa: E402
from inspector.protocols.registry import DETECTORS, ROW_BIT, transport_rows  # noqa: E402

HEADS = Path(__file__).resolve().parent / "data" / "datagram_heads"
DATAGRAM_PROTOCOLS = {"esp", "ike", "wireguard", "quic", "dtls", "openvpn"}
DATAGRAM_ROWS = sum(1 << i for i, d in enumerate(DETECTORS) if d.protocol in DATAGRAM_PROTOCOLS)
TCP, UDP, ESP = 6, 17, 50

# head file name prefix (and port) -> {protocol: what it proves}
EXPECTED = {
    "esp-ip50": {"esp": ENCRYPTED},
    "ipsec-udp-10.231.0.1-500": {"ike": NOTHING},
    "ipsec-udp-10.231.0.2-500": {"ike": NOTHING},
    "ipsec-udp-10.231.0.1-4500": {"ike": ENCRYPTED, "esp": ENCRYPTED},
    "ipsec-udp-10.231.0.2-4500": {"ike": ENCRYPTED, "esp": ENCRYPTED},
    "wireguard": {"wireguard": ENCRYPTED},
    "quic": {"quic": ENCRYPTED},
    "dtls": {"dtls": ENCRYPTED},
    "openvpn": {"openvpn": ENCRYPTED},
}


def _expected(name: str) -> dict[str, str]:
    return next(v for prefix, v in EXPECTED.items() if name.startswith(prefix))


def _head_files() -> list[Path]:
    return sorted(HEADS.glob("*.bin"))


def _transport(head: Path) -> int:
    return ESP if "ip50" in head.name else TCP if "-tcp-" in head.name else UDP


def _datagram_hits(data: bytes, transport: int):
    return [d for d in detect(data, direction="orig", at_start=True, rows=transport_rows(transport))
            if d.protocol in DATAGRAM_PROTOCOLS]


@pytest.mark.parametrize("head", _head_files(), ids=lambda p: p.stem)
def test_real_heads_named_and_sealed(head):
    data = head.read_bytes()
    hits = _datagram_hits(data, _transport(head))
    assert {d.protocol: d.proves for d in hits} == _expected(head.name), [d.evidence for d in hits]
    for d in hits:
        if d.proves == ENCRYPTED and d.protocol != "ike":   # the sealed bytes' statistics, headers left out
            assert d.fields["ciphertext"] == "random", d.evidence


@pytest.mark.parametrize("head", _head_files(), ids=lambda p: p.stem)
def test_cut_heads_never_cleartext(head):
    """Any prefix, or the head from a later datagram on, may prove less, never cleartext."""
    data = head.read_bytes()
    transport = _transport(head)
    for piece in [data[:n] for n in range(0, len(data), 37)] + [data[k:] for k in range(1, 400, 13)]:
        assert all(d.proves != CLEARTEXT for d in _datagram_hits(piece, transport)), piece[:32]


def test_rows_read_only_their_transport():
    """A TCP stream never runs the datagram rows: an ESP head in a TCP flow is not ESP."""
    data = next(HEADS.glob("esp-ip50-*.bin")).read_bytes()
    assert transport_rows(TCP) & DATAGRAM_ROWS == ROW_BIT["openvpn-tcp"]
    assert not _datagram_hits(data, TCP)
    assert {d.protocol for d in _datagram_hits(data, ESP)} == {"esp"}


def test_esp_null_cipher_is_cleartext():
    """ESP whose payload after SPI/sequence is readable (RFC 2410 NULL encryption)
    is named esp and proves cleartext."""
    inner = b"".join(b"\x45\x00\x05\xdc" + bytes(16) + b"GET /page/%04d HTTP/1.1\r\nHost: x\r\n\r\n" % i
                     + b"\x01\x02\x02\x04" + bytes(12) for i in range(20))
    size = len(inner) // 20
    data = b"".join(b"\xc0\xde\x00\x01" + (i + 1).to_bytes(4, "big") + inner[i * size:(i + 1) * size]
                    for i in range(20))
    (hit,) = _datagram_hits(data, ESP)
    assert (hit.protocol, hit.proves, hit.fields["null_cipher"]) == ("esp", CLEARTEXT, True), hit.evidence


TEXT_DATAGRAMS = st.lists(st.text(min_size=1, max_size=120), min_size=1, max_size=60).map(
    lambda lines: "".join(f"{line}\n" for line in lines).encode())
NUMBERED_TEXT = st.tuples(st.text(min_size=1, max_size=8), st.integers(0, 9000), st.integers(1, 200)).map(
    lambda t: b"".join(f"{t[0]}{i:08d} event at step {i}\n".encode() for i in range(t[1], t[1] + t[2])))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=3000), TEXT_DATAGRAMS, NUMBERED_TEXT))
def test_random_and_text_datagrams_trigger_nothing(data):
    for transport in (TCP, UDP, ESP):
        assert not _datagram_hits(data, transport), data[:64]


# ------------------------------------------------------------------ real programs, end to end

MAKERS = {
    "wireguard": (crypto_captures.wireguard_capture, "wireguard", True),
    "esp": (crypto_captures.esp_capture, "esp", True),
    "ipsec": (crypto_captures.ipsec_capture, "esp", True),
    "quic": (crypto_captures.quic_capture, "quic", False),
    "dtls": (crypto_captures.dtls_capture, "dtls", False),
    "openvpn-udp": (crypto_captures.openvpn_capture, "openvpn", True),
    "openvpn-tcp": (lambda tmp: crypto_captures.openvpn_capture(tmp, "tcp"), "openvpn", True),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MAKERS))
def test_real_programs_named_and_encrypted(name, tmp_path):
    make, protocol, network_layer = MAKERS[name]
    result = inspector.analyze(str(make(tmp_path)))
    flows = result.flows[result.flows["protocol"].isin(list(DATAGRAM_PROTOCOLS)).fillna(False)]
    assert protocol in set(flows["protocol"]), result.flows[["proto", "protocol", "verdict", "reason"]]
    assert "plaintext" not in set(flows["verdict"].astype(str)), flows[["protocol", "verdict", "reason"]]
    sealed = flows[flows["protocol"] == protocol]
    assert set(sealed["verdict"].astype(str)) == {"encrypted"}, sealed["reason"].tolist()
    findings = result.findings[result.findings["rule"] == "network-layer-encryption"]
    if network_layer:
        (summary,) = findings["summary"].tolist()
        assert "between 10.231.0.1 and 10.231.0.2 is encrypted at the network layer" in summary, summary
    else:
        assert findings.empty
    if name == "ipsec":  # IKE on 500: the cleartext key exchange is named and never plaintext
        ike = result.flows[result.flows["resp_p"] == 500]
        assert ike["protocol"].tolist() == ["ike"] and ike["verdict"].astype(str).tolist() != ["plaintext"]


@pytest.mark.slow
def test_esp_null_from_scapy_is_plaintext_without_network_layer_finding(tmp_path):
    result = inspector.analyze(str(crypto_captures.esp_capture(tmp_path, "NULL")))
    (flow,) = result.flows[result.flows["protocol"] == "esp"].itertuples()
    assert flow.verdict == "plaintext" and "NULL encryption" in flow.reason, flow.reason
    assert (result.findings["rule"] != "network-layer-encryption").all()
