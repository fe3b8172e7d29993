"""Turn raw flow state into the tidy flows table (roles, addresses, counts).

Originator rule, in order:
1. the sender of the first SYN without ACK;
2. else the receiver of the first SYN+ACK;
3. else, when exactly one side's port is a service port (on the watchlist,
   or below 1024), the other side;
4. else the sender of the first packet captured.
"""

from __future__ import annotations

import ipaddress

import numpy as np
import pandas as pd

from inspector.capture.constants import IP_PROTOCOL_NAMES, TUNNEL_NAMES
from inspector.flows import kernels as K
from inspector.flows.table import FlowState

_BASE62 = np.frombuffer(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", dtype=np.uint8)


def originator_is_a(flow: np.ndarray, service_ports: frozenset[int]) -> np.ndarray:
    """True where endpoint A (the lower one) is the originator."""
    syn, synack, first = flow[:, K.FL_SYN_DIR], flow[:, K.FL_SYNACK_DIR], flow[:, K.FL_FIRST_DIR]
    table = np.zeros(65536, dtype=bool)
    table[list(service_ports)] = True
    table[:1024] = True
    a_port, b_port = flow[:, K.FL_A_PORT], flow[:, K.FL_B_PORT]
    a_service, b_service = table[a_port], table[b_port]
    return np.select(
        [syn >= 0, synack >= 0, b_service & ~a_service, a_service & ~b_service],
        [syn == 0, synack == 1, True, False],
        first == 0,
    )


def originator_is_a_one(flow_row: np.ndarray, service_ports: frozenset[int]) -> bool:
    """``originator_is_a`` for one flow (a row of the flow table), without numpy overhead."""
    syn, synack, first = int(flow_row[K.FL_SYN_DIR]), int(flow_row[K.FL_SYNACK_DIR]), int(flow_row[K.FL_FIRST_DIR])
    if syn >= 0:
        return syn == 0
    if synack >= 0:
        return synack == 1
    a_port, b_port = int(flow_row[K.FL_A_PORT]), int(flow_row[K.FL_B_PORT])
    a_service = a_port < 1024 or a_port in service_ports
    b_service = b_port < 1024 or b_port in service_ports
    if a_service != b_service:
        return b_service
    return first == 0


def format_addresses(hi: np.ndarray, lo: np.ndarray, version: np.ndarray) -> list[str]:
    """Text form of IPv4-mapped or IPv6 addresses, formatting each distinct one once."""
    if (version == 4).all():  # the common case: factorise one word, no row sort
        inverse, uniq_lo = pd.factorize(lo)
        uniq = np.stack([np.zeros_like(uniq_lo), uniq_lo, np.full_like(uniq_lo, 4)], axis=1)
    else:
        pairs = np.stack([hi, lo, version.astype(np.uint64)], axis=1)
        uniq, inverse = np.unique(pairs, axis=0, return_inverse=True)
    text = [
        str(ipaddress.IPv4Address(int(l) & 0xFFFFFFFF)) if v == 4
        else str(ipaddress.IPv6Address((int(h) << 64) | int(l)))
        for h, l, v in uniq
    ]
    return [text[i] for i in inverse.ravel()]


def tunnel_columns(state: FlowState) -> dict[str, object]:
    """The tunnel each flow's first packet came in: kind, outer endpoints, id.

    Empty strings and <NA> for flows captured directly; only tunnelled flows
    have their outer addresses formatted, and none for a tunnel at the link
    layer (PPPoE, MPLS), which has no outer IP header.
    """
    kind = state.flow[:, K.FL_TUNNEL]
    inside = np.flatnonzero((kind > 0) & (state.flow[:, K.FL_TUNNEL_IP_VERSION] != 0))
    src = np.full(kind.size, "", dtype=object)
    dst = np.full(kind.size, "", dtype=object)
    if inside.size:
        outer = state.tunnel_addr[inside]
        version = state.flow[inside, K.FL_TUNNEL_IP_VERSION]
        hosts = format_addresses(np.concatenate([outer[:, 0], outer[:, 2]]),
                                 np.concatenate([outer[:, 1], outer[:, 3]]), np.concatenate([version, version]))
        src[inside], dst[inside] = hosts[: inside.size], hosts[inside.size :]
    tunnel_id = state.flow[:, K.FL_TUNNEL_ID]
    has_id = (kind > 0) & (tunnel_id >= 0)
    return {
        "tunnel": np.array(TUNNEL_NAMES, dtype=object)[np.maximum(kind, 0)],
        "tunnel_src": src,
        "tunnel_dst": dst,
        "tunnel_id": pd.arrays.IntegerArray(np.where(has_id, tunnel_id, 0), ~has_id),
    }


def flow_uids(words: list[np.ndarray]) -> np.ndarray:
    """Deterministic Zeek-style ids ('C' + 11 base62 chars) from key words."""
    h = K.mix_rows(np.stack([w.astype(np.uint64) for w in words], axis=1))
    chars = np.empty((h.size, 12), dtype=np.uint8)
    chars[:, 0] = ord("C")
    for i in range(11, 0, -1):
        chars[:, i] = _BASE62[(h % np.uint64(62)).astype(np.int64)]
        h //= np.uint64(62)
    return chars.view("S12").ravel().astype(str)


def flow_columns(state: FlowState, service_ports: frozenset[int], inputs: list[str],
                 capture: int = 0) -> tuple[dict[str, object], np.ndarray, np.ndarray]:
    """Flow identity and counters, oriented orig/resp (no verdicts yet), as
    ready arrays: the pipeline builds one frame from them and the
    classifier's columns at once (each pandas step costs per close).

    ``capture`` numbers the capture among those analysed apart
    (``group_by``): the same packets seen by two sensors make two flows
    with two uids; the first capture's uids are those of a lone analysis.

    Also returns, per flow, the state slot of its originator and responder
    direction, which the classifier needs to find their windows."""
    f = state.flow
    n = f.shape[0]
    orig_a = originator_is_a(f, service_ports)
    a_hi, a_lo, b_hi, b_lo = state.flow_addr.T
    version = f[:, K.FL_IP_VERSION]
    o_hi, o_lo = np.where(orig_a, a_hi, b_hi), np.where(orig_a, a_lo, b_lo)
    r_hi, r_lo = np.where(orig_a, b_hi, a_hi), np.where(orig_a, b_lo, a_lo)
    hosts = format_addresses(np.concatenate([o_hi, r_hi]), np.concatenate([o_lo, r_lo]),
                             np.concatenate([version, version])) if n else []
    orig_p = np.where(orig_a, f[:, K.FL_A_PORT], f[:, K.FL_B_PORT])
    resp_p = np.where(orig_a, f[:, K.FL_B_PORT], f[:, K.FL_A_PORT])
    orig_slot = 2 * np.arange(n) + np.where(orig_a, 0, 1)
    resp_slot = 2 * np.arange(n) + np.where(orig_a, 1, 0)
    s = state.slot
    proto = f[:, K.FL_PROTO]
    vlan = f[:, K.FL_VLAN]
    no_port = np.zeros(n, dtype=bool)
    columns = {
        "ts": pd.DatetimeIndex(f[:, K.FL_FIRST_TS].astype("datetime64[ns]")).tz_localize("UTC"),
        "uid": flow_uids([o_hi, o_lo, r_hi, r_lo, orig_p, resp_p, proto, f[:, K.FL_FIRST_TS]]
                         + ([np.full(n, capture)] if capture else []))
        if n else np.zeros(0, dtype=object),
        "proto": _names(proto, IP_PROTOCOL_NAMES),
        "orig_h": _objects(hosts[:n]),
        "orig_p": pd.arrays.IntegerArray(orig_p.astype(np.uint16), no_port),
        "resp_h": _objects(hosts[n:]),
        "resp_p": pd.arrays.IntegerArray(resp_p.astype(np.uint16), no_port),
        "duration": (f[:, K.FL_LAST_TS] - f[:, K.FL_FIRST_TS]).astype("timedelta64[ns]"),
        "orig_pkts": s[orig_slot, K.SL_PKTS],
        "resp_pkts": s[resp_slot, K.SL_PKTS],
        "orig_bytes": s[orig_slot, K.SL_BYTES],
        "resp_bytes": s[resp_slot, K.SL_BYTES],
        "orig_captured_bytes": s[orig_slot, K.SL_CAP_BYTES],
        "resp_captured_bytes": s[resp_slot, K.SL_CAP_BYTES],
        "orig_missed_bytes": s[orig_slot, K.SL_MISSED],
        "resp_missed_bytes": s[resp_slot, K.SL_MISSED],
        "mid_stream": (proto == 6) & (f[:, K.FL_SYN_DIR] < 0) & (f[:, K.FL_SYNACK_DIR] < 0),
        "ip_version": version,
        "vlan": pd.arrays.IntegerArray(np.maximum(vlan, 0).astype(np.int64), vlan < 0),
        **tunnel_columns(state),
        "input": np.array(inputs, dtype=object)[state.input_index] if n else np.zeros(0, dtype=object),
    }
    return columns, orig_slot, resp_slot


def _names(codes: np.ndarray, names: dict[int, str]) -> np.ndarray:
    """Object array of the name of each code (the code as text when unnamed), formatting each distinct code once."""
    distinct, inverse = np.unique(codes, return_inverse=True)
    return np.array([names.get(int(c), str(int(c))) for c in distinct], dtype=object)[inverse.ravel()]


def _objects(values: list[str]) -> np.ndarray:
    """An object array of these strings (a column pandas takes as it is)."""
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out
