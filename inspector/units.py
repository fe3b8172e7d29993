"""Human-readable sizes and endpoints, shared by reasons, evidence lines and reports."""

from __future__ import annotations


def human_bytes(n: float) -> str:
    """1536 -> '1.5 KiB' (B, KiB, MiB, GiB)."""
    if n < 1024:
        return f"{n:.0f} B"
    if n < 1048576:
        return f"{n / 1024:.1f} KiB"
    if n < 1073741824:
        return f"{n / 1048576:.1f} MiB"
    return f"{n / 1073741824:.1f} GiB"


def endpoint(host: object, port: object) -> str:
    """'10.0.0.1:49152', or '[fd00::1]:49152' for IPv6."""
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


def flow_endpoints(flow, between: str = " -> ") -> str:
    """'10.0.0.1:40000 -> 10.0.0.2:49152' for a flows-table row."""
    return f"{endpoint(flow.orig_h, flow.orig_p)}{between}{endpoint(flow.resp_h, flow.resp_p)}"
