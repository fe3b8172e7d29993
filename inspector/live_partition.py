"""BPF terms that split a capture into N partitions by a symmetric flow hash.

Each capture process of ``inspector live --workers N`` runs tcpdump with
``(FILTER) and (partition k of N)``: the kernel hands every packet to exactly
one of them, and both directions of a flow to the same one (the hash XORs
source with destination, so swapping them changes nothing). The hash is
the one the flow table keys on, where BPF can reach it:

- IPv4 and IPv6 TCP/UDP (the transport header right after the IP header,
  IPv4 offset 0): addresses XOR ports, as 32-bit words, then mixed
  (multiplied by 2^32/phi, the high 16 bits kept) and taken modulo N.
- Everything else that is IP (non-first IPv4 fragments, which join no flow;
  IPv6 with extension headers, which BPF cannot walk; other protocols;
  UDP to or from the VXLAN or Geneve port and GRE, so the inner flows of a
  tunnel stay with their outer address pair): the addresses alone.
- Not IP at the offsets libpcap reads (ARP, a frame too short for its IP
  header): partition 0.

Every load sits behind a length check (``len`` against the link header plus
the bytes read), so a cut or malformed packet still matches one partition
instead of aborting the filter in all of them.
"""

from __future__ import annotations

import re
import subprocess

from inspector.errors import InspectorError

TUNNEL_PORTS = (4789, 6081)  # VXLAN (RFC 7348), Geneve (RFC 8926): the pipeline keys their inner flow
_TCP, _UDP = 6, 17
_IHL = "((ip[0] & 0xf) << 2)"
# Fibonacci hashing (Knuth, TAOCP 6.4): the XOR times 2^32/phi, mod 2^32 as BPF multiplies, then its high
# half, in which every bit of the XOR counts; the XOR's low bits alone follow the addresses and ports of
# sequential clients (a generated capture put 80 % of its packets in one partition of 2).
_GOLDEN = 0x9E3779B1
_V6_WORDS = " ^ ".join(f"ip6[{at}:4]" for at in range(8, 40, 4))  # source and destination, 4 words each


def link_header_bytes(tcpdump: str, source: list[str]) -> int:
    """Where libpcap finds the IP header on ``source`` (``["-i", IFACE]`` or
    ``["-r", FILE]``): the offset of its load of ``ip[0]``."""
    done = subprocess.run([tcpdump, "-d", *source, "ip[0] = 0x45"], capture_output=True, text=True,
                          check=False, timeout=30)
    loads = re.findall(r"ldb\s+\[(\d+)\]", done.stdout)
    if done.returncode != 0 or not loads:
        detail = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise InspectorError(f"tcpdump {' '.join(source)}: cannot place the IP header ({detail[0]})")
    return int(loads[-1])


def _tunnel_port(port: str) -> str:
    return " or ".join(f"{port} = {p}" for p in TUNNEL_PORTS)


def partition_term(index: int, count: int, link_bytes: int) -> str:
    """The BPF expression true for the packets of partition ``index`` of ``count``."""
    if not 0 <= index < count:
        raise ValueError(f"partition {index} of {count}")
    part = f"* {_GOLDEN:#x} >> 16) % {count} = {index}"
    v4 = f"ip and len >= {link_bytes + 20}"
    v4_ports = (f"ip[6:2] & 0x1fff = 0 and (ip[9] = {_TCP} or ip[9] = {_UDP}) "
                f"and len >= {link_bytes + 4} + {_IHL} "
                f"and not (ip[9] = {_UDP} and ({_tunnel_port(f'ip[{_IHL}:2]')} "
                f"or {_tunnel_port(f'ip[{_IHL} + 2:2]')}))")
    v4_hosts = "ip[12:4] ^ ip[16:4]"
    v6 = f"ip6 and len >= {link_bytes + 40}"
    v6_ports = (f"(ip6[6] = {_TCP} or ip6[6] = {_UDP}) and len >= {link_bytes + 44} "
                f"and not (ip6[6] = {_UDP} and ({_tunnel_port('ip6[40:2]')} or {_tunnel_port('ip6[42:2]')}))")
    terms = [
        (f"({v4} and (({v4_ports} and (({v4_hosts} ^ ip[{_IHL}:2] ^ ip[{_IHL} + 2:2]) {part}) "
         f"or (not ({v4_ports}) and (({v4_hosts}) {part})))"),
        (f"({v6} and (({v6_ports} and (({_V6_WORDS} ^ ip6[40:2] ^ ip6[42:2]) {part}) "
         f"or (not ({v6_ports}) and (({_V6_WORDS}) {part})))"),
    ]
    if index == 0:
        terms.append(f"(not ({v4}) and not ({v6}))")  # and/or share one precedence in BPF
    return " or ".join(terms)


def partitioned(expression: str, index: int, count: int, link_bytes: int) -> str:
    """The sensor's filter narrowed to one partition (the whole filter when ``count`` is 1)."""
    if count == 1:
        return expression
    return f"({expression}) and ({partition_term(index, count, link_bytes)})"
