"""Compiled hot path: walk capture records and decode frame headers.

One numba kernel per file format walks the records of a buffer and decodes
each frame (link layer, VLAN tags, IPv4/IPv6 with options and extension
headers, TCP/UDP) into columns of a :class:`PacketColumns` batch. Nothing here
allocates per packet: a Python loop or dpkt objects manage about 40 k
packets/s, this about 5 M.

Tunnels a mirror port or provider network delivers (VXLAN, GENEVE, GRE and
GRE in UDP, ERSPAN I/II/III, IP in IP, Teredo, AYIYA, GTP-U, MPLS, PPPoE)
are followed to the inner packet, so flows are keyed and analysed on what
was carried; the outermost tunnel's kind, id and endpoints are kept apart.
IP tunnels are recognised once the outer packet is decoded (a tunnel port,
GRE, IP protocol 4 or 41), MPLS and PPPoE where an EtherType names them, so
the path of untunnelled Ethernet/IP traffic stays as it was. Link types
other than Ethernet, cooked and raw IP are found in ``linklayer.py``.
"""

from __future__ import annotations

import numpy as np

from inspector.capture import constants as C
from inspector.capture.linklayer import network_layer, ppp_ethertype
from inspector.capture.wire import be16 as _be16
from inspector.capture.wire import be32 as _be32
from inspector.capture.wire import le32 as _le32
from inspector.jit import njit

# Rows of PacketColumns.fields (int64) -------------------------------------
F_TS = 0  # timestamp, ns since the epoch
F_WIRE_LEN = 1  # frame length on the wire
F_CAP_LEN = 2  # frame bytes captured
F_IFACE = 3  # pcapng interface id (0 for pcap)
F_IP_VERSION = 4  # 4, 6 or 0 (not IP)
F_PROTO = 5  # IP protocol number
F_SPORT = 6
F_DPORT = 7
F_TCP_FLAGS = 8
F_TCP_SEQ = 9
F_PAYLOAD_OFF = 10  # offset of the transport payload in the batch buffer
F_PAYLOAD_CAP = 11  # payload bytes captured
F_PAYLOAD_LEN = 12  # payload bytes on the wire (from the IP length)
F_VLAN = 13  # outermost VLAN id, -1 without a tag
F_STATUS = 14  # constants.STATUS_*
F_TUNNEL = 15  # constants.TUNNEL_*: the outermost tunnel the packet came in
# Set only when F_TUNNEL is not TUNNEL_NONE:
F_TUNNEL_ID = 16  # VNI, GRE key or ERSPAN session id; -1 when the tunnel has none
F_TUNNEL_IP_VERSION = 17  # 4 or 6: the outer IP header's version
F_FRAME_OFF = 18  # offset of the frame (link-layer header) in the batch buffer: the record's bytes
N_FIELDS = 19

# Rows of PacketColumns.addrs (uint64): IPv6 or IPv4-mapped addresses
A_SRC_HI, A_SRC_LO, A_DST_HI, A_DST_LO = 0, 1, 2, 3
# The outermost tunnel's endpoints, set only when F_TUNNEL is not TUNNEL_NONE
A_TUNNEL_SRC_HI, A_TUNNEL_SRC_LO, A_TUNNEL_DST_HI, A_TUNNEL_DST_LO = 4, 5, 6, 7
N_ADDRS = 8

# What a tunnel decoder returns: where the layer the tunnel carries starts,
# and its EtherType; -1 when there is no tunnel to follow.
_NO_INNER = (0, -1)

IPV4_MAPPED_PREFIX = np.uint64(0xFFFF00000000)


@njit(cache=True, inline="always")
def _u32(buf, i, big):
    return _be32(buf, i) if big else _le32(buf, i)


@njit(cache=True, inline="always")
def _be64u(buf, i):
    v = np.uint64(0)
    for k in range(8):
        v = (v << np.uint64(8)) | np.uint64(buf[i + k])
    return v


@njit(cache=True, inline="always")
def _clear_layer(fields, n, start):
    """Reset what the IP and transport decoders fill in: per frame, and per tunnelled packet."""
    fields[F_IP_VERSION, n] = 0
    fields[F_PROTO, n] = 0
    fields[F_SPORT, n] = 0
    fields[F_DPORT, n] = 0
    fields[F_TCP_FLAGS, n] = 0
    fields[F_TCP_SEQ, n] = 0
    fields[F_PAYLOAD_OFF, n] = start
    fields[F_PAYLOAD_CAP, n] = 0
    fields[F_PAYLOAD_LEN, n] = 0


@njit(cache=True, inline="always")
def _tunnel_header_present(stop, end, ip_end, fields, n):
    """True when a recognised tunnel header, up to ``stop``, was captured.

    Otherwise marks why not: a header longer than its packet is malformed, a
    header the snaplen cut off is cut.
    """
    if stop > ip_end:
        fields[F_STATUS, n] = C.STATUS_BAD_TUNNEL
        return False
    if stop > end:
        fields[F_STATUS, n] = C.STATUS_HEADERS_CUT
        return False
    return True


@njit(cache=True)
def _enter_tunnel(kind, tunnel_id, fields, addrs, n):
    """Keep the outermost tunnel's kind, id and endpoints before the inner packet overwrites them."""
    if fields[F_TUNNEL, n] == C.TUNNEL_NONE:
        fields[F_TUNNEL, n] = kind
        fields[F_TUNNEL_ID, n] = tunnel_id
        fields[F_TUNNEL_IP_VERSION, n] = fields[F_IP_VERSION, n]
        for k in range(4):
            addrs[A_TUNNEL_SRC_HI + k, n] = addrs[A_SRC_HI + k, n]


@njit(cache=True)
def _inner_ethernet(buf, i, end, ip_end, fields, n):
    """The layer after the header of the Ethernet frame a tunnel carries at ``i``."""
    if not _tunnel_header_present(i + 14, end, ip_end, fields, n):
        return _NO_INNER
    return i + 14, _be16(buf, i + 12)


@njit(cache=True)
def _inner_by_type(buf, i, end, ip_end, ethertype, fields, n):
    """The layer a GRE or GENEVE protocol type names: Ethernet (TEB), IP or MPLS."""
    if ethertype == C.ETH_TEB:
        return _inner_ethernet(buf, i, end, ip_end, fields, n)
    if ethertype == C.ETH_IPV4 or ethertype == C.ETH_IPV6 or ethertype == C.ETH_MPLS:
        return i, ethertype
    fields[F_STATUS, n] = C.STATUS_NOT_IP
    return _NO_INNER


@njit(cache=True)
def _vxlan(buf, i, end, ip_end, fields, addrs, n):
    """VXLAN (RFC 7348) at UDP payload ``i``; an ordinary UDP packet without the I flag."""
    if i + C.VXLAN_HEADER_BYTES > min(end, ip_end) or not buf[i] & C.VXLAN_FLAG_I:
        return _NO_INNER
    _enter_tunnel(C.TUNNEL_VXLAN, _be32(buf, i + 4) >> 8, fields, addrs, n)
    return _inner_ethernet(buf, i + C.VXLAN_HEADER_BYTES, end, ip_end, fields, n)


@njit(cache=True)
def _geneve(buf, i, end, ip_end, fields, addrs, n):
    """GENEVE (RFC 8926) at UDP payload ``i``; an ordinary UDP packet unless version 0."""
    if i + C.GENEVE_HEADER_BYTES > min(end, ip_end) or buf[i] >> C.GENEVE_VERSION_SHIFT != 0:
        return _NO_INNER
    inner = i + C.GENEVE_HEADER_BYTES + (np.int64(buf[i]) & 0x3F) * 4
    if not _tunnel_header_present(inner, end, ip_end, fields, n):
        return _NO_INNER
    _enter_tunnel(C.TUNNEL_GENEVE, _be32(buf, i + 4) >> 8, fields, addrs, n)
    return _inner_by_type(buf, inner, end, ip_end, _be16(buf, i + 2), fields, n)


@njit(cache=True)
def _erspan(buf, i, end, ip_end, has_sequence, fields, addrs, n):
    """ERSPAN type I (no header) or II at the GRE payload ``i``."""
    if not has_sequence:  # type I: the mirrored frame right after GRE
        _enter_tunnel(C.TUNNEL_ERSPAN1, -1, fields, addrs, n)
        return _inner_ethernet(buf, i, end, ip_end, fields, n)
    if not _tunnel_header_present(i + C.ERSPAN2_HEADER_BYTES, end, ip_end, fields, n):
        return _NO_INNER
    if buf[i] >> 4 != C.ERSPAN2_VERSION:
        fields[F_STATUS, n] = C.STATUS_BAD_TUNNEL
        return _NO_INNER
    _enter_tunnel(C.TUNNEL_ERSPAN2, _be16(buf, i + 2) & C.ERSPAN_SESSION_MASK, fields, addrs, n)
    return _inner_ethernet(buf, i + C.ERSPAN2_HEADER_BYTES, end, ip_end, fields, n)


@njit(cache=True)
def _erspan3(buf, i, end, ip_end, fields, addrs, n):
    """ERSPAN type III at the GRE payload ``i``, with its optional platform subheader."""
    if not _tunnel_header_present(i + C.ERSPAN3_HEADER_BYTES, end, ip_end, fields, n):
        return _NO_INNER
    if buf[i] >> 4 != C.ERSPAN3_VERSION:
        fields[F_STATUS, n] = C.STATUS_BAD_TUNNEL
        return _NO_INNER
    inner = i + C.ERSPAN3_HEADER_BYTES
    if buf[i + 11] & 1:  # O: a platform-specific subheader follows
        inner += C.ERSPAN3_SUBHEADER_BYTES
    if not _tunnel_header_present(inner, end, ip_end, fields, n):
        return _NO_INNER
    _enter_tunnel(C.TUNNEL_ERSPAN3, _be16(buf, i + 2) & C.ERSPAN_SESSION_MASK, fields, addrs, n)
    if (buf[i + 10] >> 2) & 0x1F != C.ERSPAN3_FRAME_ETHERNET:
        fields[F_STATUS, n] = C.STATUS_NOT_IP
        return _NO_INNER
    return _inner_ethernet(buf, inner, end, ip_end, fields, n)


@njit(cache=True)
def _gre(buf, i, end, ip_end, kind, fields, addrs, n):
    """GRE (RFC 2784, 2890) at ``i``: IP, Ethernet, MPLS (RFC 4023) or ERSPAN inside; ``kind`` is
    TUNNEL_GRE, or TUNNEL_GRE_UDP in UDP (RFC 8086).

    GRE this does not decode (other protocol types, source routing, PPTP's
    version 1) stays an ordinary flow of IP protocol 47.
    """
    if i + C.GRE_BASE_BYTES > min(end, ip_end):
        return _NO_INNER
    flags = _be16(buf, i)
    ethertype = _be16(buf, i + 2)
    known = (ethertype == C.ETH_IPV4 or ethertype == C.ETH_IPV6 or ethertype == C.ETH_TEB
             or ethertype == C.ETH_ERSPAN_1_2 or ethertype == C.ETH_ERSPAN_3 or ethertype == C.ETH_MPLS)
    if flags & (C.GRE_ROUTING | C.GRE_VERSION) or not known:
        return _NO_INNER
    key_at = i + C.GRE_BASE_BYTES + (4 if flags & C.GRE_CHECKSUM else 0)
    inner = key_at + (4 if flags & C.GRE_KEY else 0) + (4 if flags & C.GRE_SEQUENCE else 0)
    if not _tunnel_header_present(inner, end, ip_end, fields, n):
        return _NO_INNER
    if ethertype == C.ETH_ERSPAN_1_2:
        return _erspan(buf, inner, end, ip_end, flags & C.GRE_SEQUENCE, fields, addrs, n)
    if ethertype == C.ETH_ERSPAN_3:
        return _erspan3(buf, inner, end, ip_end, fields, addrs, n)
    _enter_tunnel(kind, _be32(buf, key_at) if flags & C.GRE_KEY else -1, fields, addrs, n)
    return _inner_by_type(buf, inner, end, ip_end, ethertype, fields, n)


@njit(cache=True)
def _teredo(buf, i, end, ip_end, fields, addrs, n):
    """Teredo (RFC 4380) at UDP payload ``i``: optional authentication and origin indications, then an
    IPv6 packet filling the datagram; an ordinary UDP packet otherwise."""
    for _ in range(2):
        if i + 2 > end:
            return _NO_INNER
        indicator = _be16(buf, i)
        if indicator == 0x0001 and i + 4 <= end:  # authentication: id and value lengths, nonce, confirmation
            i += 4 + np.int64(buf[i + 2]) + np.int64(buf[i + 3]) + 9
        elif indicator == 0x0000:  # origin indication
            i += 8
    if i + 40 > min(end, ip_end) or buf[i] >> 4 != 6 or i + 40 + _be16(buf, i + 4) != ip_end:
        return _NO_INNER
    _enter_tunnel(C.TUNNEL_TEREDO, -1, fields, addrs, n)
    return i, C.ETH_IPV6


@njit(cache=True)
def _ayiya(buf, i, end, ip_end, fields, addrs, n):
    """AYIYA (draft-massar-v6ops-ayiya) at UDP payload ``i``: identity and signature, then the packet its
    Next Header names; an ordinary UDP packet unless a forward of IPv4 or IPv6."""
    if i + 8 > min(end, ip_end) or buf[i + 2] & 0x0F != C.AYIYA_OPCODE_FORWARD:
        return _NO_INNER
    next_header = buf[i + 3]
    if next_header != C.IPPROTO_IPV6 and next_header != C.IPPROTO_IPIP:
        return _NO_INNER
    inner = i + 8 + (np.int64(1) << (buf[i] >> 4)) + (np.int64(buf[i + 1]) >> 4) * 4  # 2^IdLen, 4 x SigLen
    if not _tunnel_header_present(inner + 1, end, ip_end, fields, n):
        return _NO_INNER
    _enter_tunnel(C.TUNNEL_AYIYA, -1, fields, addrs, n)
    return inner, C.ETH_IPV6 if next_header == C.IPPROTO_IPV6 else C.ETH_IPV4


@njit(cache=True)
def _gtpu(buf, i, end, ip_end, fields, addrs, n):
    """GTP-U (3GPP TS 29.281) at UDP payload ``i``: a G-PDU's user packet after the optional fields and
    extension headers; echo and other messages stay ordinary UDP."""
    if i + C.GTPU_HEADER_BYTES > min(end, ip_end) or buf[i] & 0xF8 != C.GTPU_VERSION_PT:
        return _NO_INNER
    if buf[i + 1] != C.GTPU_G_PDU or i + C.GTPU_HEADER_BYTES + _be16(buf, i + 2) != ip_end:
        return _NO_INNER
    teid = _be32(buf, i + 4)
    inner = i + C.GTPU_HEADER_BYTES
    if buf[i] & C.GTPU_FLAGS_E_S_PN:
        inner += C.GTPU_OPTIONAL_BYTES
        if not _tunnel_header_present(inner, end, ip_end, fields, n):
            return _NO_INNER
        next_type = buf[inner - 1] if buf[i] & 0x04 else 0
        for _ in range(16):  # extension headers: length in 4-octet units, the next type last
            if next_type == 0:
                break
            if not _tunnel_header_present(inner + 1, end, ip_end, fields, n):
                return _NO_INNER
            length = np.int64(buf[inner]) * 4
            if length == 0 or not _tunnel_header_present(inner + length, end, ip_end, fields, n):
                fields[F_STATUS, n] = C.STATUS_BAD_TUNNEL
                return _NO_INNER
            next_type = buf[inner + length - 1]
            inner += length
        if next_type != 0:
            fields[F_STATUS, n] = C.STATUS_BAD_TUNNEL
            return _NO_INNER
    if not _tunnel_header_present(inner + 1, end, ip_end, fields, n):
        return _NO_INNER
    _enter_tunnel(C.TUNNEL_GTPU, teid, fields, addrs, n)
    return inner, C.ETH_IP_BY_VERSION


@njit(cache=True)
def _open_tunnel(buf, start, end, ip_end, fields, addrs, n):
    """The layer carried by the tunnel whose payload the decoded packet has at ``start``.

    UDP to a tunnel port, GRE, or IP in IP; ``_NO_INNER`` when it is no tunnel.
    """
    proto = fields[F_PROTO, n]
    if proto == C.IPPROTO_UDP:
        dport, sport = fields[F_DPORT, n], fields[F_SPORT, n]
        if dport == C.UDP_PORT_VXLAN:
            return _vxlan(buf, start, end, ip_end, fields, addrs, n)
        if dport == C.UDP_PORT_GENEVE:
            return _geneve(buf, start, end, ip_end, fields, addrs, n)
        if dport == C.UDP_PORT_GRE:
            return _gre(buf, start, end, ip_end, C.TUNNEL_GRE_UDP, fields, addrs, n)
        if dport == C.UDP_PORT_MPLS and start + C.MPLS_ENTRY_BYTES <= min(end, ip_end):
            _enter_tunnel(C.TUNNEL_MPLS, _be32(buf, start) >> 12, fields, addrs, n)
            return start, C.ETH_MPLS
        if dport == C.UDP_PORT_GTPU or sport == C.UDP_PORT_GTPU:
            return _gtpu(buf, start, end, ip_end, fields, addrs, n)
        if dport == C.UDP_PORT_TEREDO or sport == C.UDP_PORT_TEREDO:
            return _teredo(buf, start, end, ip_end, fields, addrs, n)
        if dport == C.UDP_PORT_AYIYA or sport == C.UDP_PORT_AYIYA:
            return _ayiya(buf, start, end, ip_end, fields, addrs, n)
    elif proto == C.IPPROTO_GRE:
        return _gre(buf, start, end, ip_end, C.TUNNEL_GRE, fields, addrs, n)
    elif proto == C.IPPROTO_IPIP:
        _enter_tunnel(C.TUNNEL_IPIP, -1, fields, addrs, n)
        return start, C.ETH_IPV4
    elif proto == C.IPPROTO_IPV6:
        _enter_tunnel(C.TUNNEL_6IN4, -1, fields, addrs, n)
        return start, C.ETH_IPV6
    return _NO_INNER


@njit(cache=True)
def _decode_transport(buf, i, l4, end, ip_end, proto, fields, n):
    """Decode TCP/UDP at ``l4``; sets ports, flags and payload columns."""
    fields[F_PROTO, n] = proto
    if proto == C.IPPROTO_TCP:
        if l4 + 20 > end:
            fields[F_STATUS, n] = C.STATUS_HEADERS_CUT if ip_end > end else C.STATUS_BAD_L4
            return
        doff = (np.int64(buf[l4 + 12]) >> 4) * 4
        if doff < 20 or l4 + doff > ip_end:
            fields[F_STATUS, n] = C.STATUS_BAD_L4
            return
        fields[F_SPORT, n] = _be16(buf, l4)
        fields[F_DPORT, n] = _be16(buf, l4 + 2)
        fields[F_TCP_SEQ, n] = _be32(buf, l4 + 4)
        fields[F_TCP_FLAGS, n] = buf[l4 + 13]
        start = l4 + doff
    elif proto == C.IPPROTO_UDP:
        if l4 + 8 > end:
            fields[F_STATUS, n] = C.STATUS_HEADERS_CUT if ip_end > end else C.STATUS_BAD_L4
            return
        fields[F_SPORT, n] = _be16(buf, l4)
        fields[F_DPORT, n] = _be16(buf, l4 + 2)
        start = l4 + 8
    else:
        start = l4
    fields[F_PAYLOAD_OFF, n] = start
    fields[F_PAYLOAD_LEN, n] = max(ip_end - start, 0)
    fields[F_PAYLOAD_CAP, n] = max(min(ip_end, end) - start, 0)


@njit(cache=True)
def _decode_ipv4(buf, i, end, wire_end, fields, addrs, n):
    if i + 20 > end:
        fields[F_STATUS, n] = C.STATUS_HEADERS_CUT
        return
    if (buf[i] >> 4) != 4:
        fields[F_STATUS, n] = C.STATUS_BAD_IP
        return
    ihl = (np.int64(buf[i]) & 0xF) * 4
    total = _be16(buf, i + 2)
    if ihl < 20 or total < ihl:
        fields[F_STATUS, n] = C.STATUS_BAD_IP
        return
    if i + ihl > end:
        fields[F_STATUS, n] = C.STATUS_HEADERS_CUT
        return
    fields[F_IP_VERSION, n] = 4
    addrs[A_SRC_HI, n] = 0
    addrs[A_SRC_LO, n] = IPV4_MAPPED_PREFIX | np.uint64(_be32(buf, i + 12))
    addrs[A_DST_HI, n] = 0
    addrs[A_DST_LO, n] = IPV4_MAPPED_PREFIX | np.uint64(_be32(buf, i + 16))
    proto = np.int64(buf[i + 9])
    fields[F_PROTO, n] = proto
    if (_be16(buf, i + 6) & 0x1FFF) != 0:  # fragment offset: no L4 header here
        fields[F_STATUS, n] = C.STATUS_FRAGMENT
        return
    # TSO/GSO captures may write IP total length 0: the frame length rules then.
    ip_end = min(i + total, wire_end) if total > 0 else wire_end
    _decode_transport(buf, i, i + ihl, end, ip_end, proto, fields, n)


@njit(cache=True)
def _decode_ipv6(buf, i, end, wire_end, fields, addrs, n):
    if i + 40 > end:
        fields[F_STATUS, n] = C.STATUS_HEADERS_CUT
        return
    if (buf[i] >> 4) != 6:
        fields[F_STATUS, n] = C.STATUS_BAD_IP
        return
    fields[F_IP_VERSION, n] = 6
    addrs[A_SRC_HI, n] = _be64u(buf, i + 8)
    addrs[A_SRC_LO, n] = _be64u(buf, i + 16)
    addrs[A_DST_HI, n] = _be64u(buf, i + 24)
    addrs[A_DST_LO, n] = _be64u(buf, i + 32)
    ip_end = min(i + 40 + _be16(buf, i + 4), wire_end)
    nxt = np.int64(buf[i + 6])
    off = i + 40
    for _ in range(16):  # bounded walk of the extension-header chain
        is_ext = (nxt == C.IPV6_HOPOPTS or nxt == C.IPV6_ROUTING or nxt == C.IPV6_DSTOPTS
                  or nxt == C.IPV6_MOBILITY or nxt == C.IPV6_AH or nxt == C.IPV6_FRAGMENT)
        if not is_ext:
            break
        if off + 8 > end:
            fields[F_STATUS, n] = C.STATUS_HEADERS_CUT
            return
        if nxt == C.IPV6_FRAGMENT:
            if (_be16(buf, off + 2) & 0xFFF8) != 0:  # not the first fragment
                fields[F_PROTO, n] = buf[off]
                fields[F_STATUS, n] = C.STATUS_FRAGMENT
                return
            length = 8
        elif nxt == C.IPV6_AH:
            length = (np.int64(buf[off + 1]) + 2) * 4  # RFC 4302: 4-octet units
        else:
            length = (np.int64(buf[off + 1]) + 1) * 8  # RFC 8200: 8-octet units
        nxt = np.int64(buf[off])
        off += length
        if off > ip_end:
            fields[F_STATUS, n] = C.STATUS_BAD_IP
            return
    _decode_transport(buf, i, off, end, ip_end, nxt, fields, n)


@njit(cache=True)
def _decode_ip(buf, i, end, wire_end, fields, addrs, n):
    if i >= end:
        fields[F_STATUS, n] = C.STATUS_HEADERS_CUT
        return
    version = buf[i] >> 4
    if version == 4:
        _decode_ipv4(buf, i, end, wire_end, fields, addrs, n)
    elif version == 6:
        _decode_ipv6(buf, i, end, wire_end, fields, addrs, n)
    else:
        fields[F_STATUS, n] = C.STATUS_BAD_IP


@njit(cache=True)
def _mpls(buf, i, end, fields, addrs, n):
    """An MPLS label stack (RFC 3032) at ``i``: what its bottom carries, by the first nibble (IPv4, IPv6,
    or 0 for a pseudowire control word, RFC 4385, then an Ethernet frame)."""
    bottom = False
    for k in range(C.MPLS_MAX_LABELS):
        if i + C.MPLS_ENTRY_BYTES > end:
            fields[F_STATUS, n] = C.STATUS_HEADERS_CUT
            return _NO_INNER
        entry = _be32(buf, i)
        if k == 0:
            _enter_tunnel(C.TUNNEL_MPLS, entry >> 12, fields, addrs, n)
        i += C.MPLS_ENTRY_BYTES
        if entry & 0x100:
            bottom = True
            break
    if not bottom:
        fields[F_STATUS, n] = C.STATUS_BAD_TUNNEL
        return _NO_INNER
    if i >= end:
        fields[F_STATUS, n] = C.STATUS_HEADERS_CUT
        return _NO_INNER
    nibble = buf[i] >> 4
    if nibble == 4:
        return i, C.ETH_IPV4
    if nibble == 6:
        return i, C.ETH_IPV6
    if nibble == 0:
        i += C.MPLS_CONTROL_WORD_BYTES
        if i + 14 > end:
            fields[F_STATUS, n] = C.STATUS_HEADERS_CUT
            return _NO_INNER
        return i + 14, _be16(buf, i + 12)
    fields[F_STATUS, n] = C.STATUS_NOT_IP
    return _NO_INNER


@njit(cache=True, inline="always")
def _is_vlan(ethertype):
    return ethertype == C.ETH_VLAN or ethertype == C.ETH_QINQ or ethertype == C.ETH_QINQ_OLD


@njit(cache=True, inline="always")
def _vlan_tag(buf, i, end, fields, n):
    """An 802.1Q/802.1ad tag at ``i``: the first one's VLAN id kept; the EtherType after it (-1: cut)."""
    if i + 4 > end:
        fields[F_STATUS, n] = C.STATUS_HEADERS_CUT
        return _NO_INNER
    if fields[F_VLAN, n] < 0:
        fields[F_VLAN, n] = _be16(buf, i) & 0x0FFF
    return i + 4, _be16(buf, i + 2)


@njit(cache=True)
def _pppoe(buf, i, end, fields, addrs, n):
    """A PPPoE session header (RFC 2516 s4) at ``i``, then PPP: what the PPP protocol carries."""
    if i + C.PPPOE_HEADER_BYTES + 2 > end:
        fields[F_STATUS, n] = C.STATUS_HEADERS_CUT
        return _NO_INNER
    if buf[i] != C.PPPOE_VER_TYPE or buf[i + 1] != 0:  # version 1, type 1, code 0 (session data)
        fields[F_STATUS, n] = C.STATUS_BAD_TUNNEL
        return _NO_INNER
    _enter_tunnel(C.TUNNEL_PPPOE, _be16(buf, i + 2), fields, addrs, n)
    ethertype = ppp_ethertype(_be16(buf, i + C.PPPOE_HEADER_BYTES))
    if ethertype < 0:
        fields[F_STATUS, n] = C.STATUS_NOT_IP
        return _NO_INNER
    return i + C.PPPOE_HEADER_BYTES + 2, ethertype


@njit(cache=True)
def _decode_encapsulated(buf, i, end, wire_end, ethertype, fields, addrs, n):
    """Follow what the common path does not (LLC/SNAP, MPLS, PPPoE, IP by version, tags below them)
    from the layer ``ethertype`` names at ``i`` to the IP header."""
    for _ in range(16):  # bounded: each layer moves on at least 4 octets
        if ethertype == C.ETH_IPV4:
            _decode_ipv4(buf, i, end, wire_end, fields, addrs, n)
            return
        if ethertype == C.ETH_IPV6:
            _decode_ipv6(buf, i, end, wire_end, fields, addrs, n)
            return
        if ethertype == C.ETH_IP_BY_VERSION:
            _decode_ip(buf, i, end, wire_end, fields, addrs, n)
            return
        if _is_vlan(ethertype):
            i, ethertype = _vlan_tag(buf, i, end, fields, n)
            if ethertype < 0:
                return
        elif ethertype <= C.ETH_MAX_LENGTH or ethertype == C.ETH_LLC:
            if i + 3 > end:
                fields[F_STATUS, n] = C.STATUS_HEADERS_CUT
                return
            if buf[i] != C.LLC_SNAP_SAP or buf[i + 1] != C.LLC_SNAP_SAP or buf[i + 2] != C.LLC_UI:
                fields[F_STATUS, n] = C.STATUS_NOT_IP  # spanning tree, NetBIOS, IPX ...
                return
            if i + C.LLC_SNAP_BYTES > end:
                fields[F_STATUS, n] = C.STATUS_HEADERS_CUT
                return
            ethertype = _be16(buf, i + 6)
            i += C.LLC_SNAP_BYTES
        elif ethertype == C.ETH_MPLS or ethertype == C.ETH_MPLS_MULTICAST:
            i, ethertype = _mpls(buf, i, end, fields, addrs, n)
            if ethertype < 0:
                return
        elif ethertype == C.ETH_PPPOE_SESSION:
            i, ethertype = _pppoe(buf, i, end, fields, addrs, n)
            if ethertype < 0:
                return
        else:
            fields[F_STATUS, n] = C.STATUS_NOT_IP
            return
    fields[F_STATUS, n] = C.STATUS_BAD_TUNNEL


@njit(cache=True)
def _decode_ethertype(buf, i, end, wire_end, ethertype, fields, addrs, n):
    """Follow VLAN tags from an EtherType at ``i - 2`` to the IP header."""
    for _ in range(8):  # at most 8 stacked tags
        if _is_vlan(ethertype):
            i, ethertype = _vlan_tag(buf, i, end, fields, n)
            if ethertype < 0:
                return
        else:
            break
    if ethertype == C.ETH_IPV4:
        _decode_ipv4(buf, i, end, wire_end, fields, addrs, n)
    elif ethertype == C.ETH_IPV6:
        _decode_ipv6(buf, i, end, wire_end, fields, addrs, n)
    else:
        _decode_encapsulated(buf, i, end, wire_end, ethertype, fields, addrs, n)


@njit(cache=True)
def _follow_tunnels(buf, end, fields, addrs, n):
    """Decode the packets tunnels carry in place of the outer one, at most
    ``MAX_TUNNEL_DEPTH`` tunnels deep."""
    for depth in range(C.MAX_TUNNEL_DEPTH + 1):
        if fields[F_STATUS, n] != C.STATUS_OK:
            return
        start = fields[F_PAYLOAD_OFF, n]
        ip_end = start + fields[F_PAYLOAD_LEN, n]
        inner, ethertype = _open_tunnel(buf, start, end, ip_end, fields, addrs, n)
        if ethertype < 0:
            return
        if depth == C.MAX_TUNNEL_DEPTH:
            break
        _clear_layer(fields, n, inner)
        _decode_ethertype(buf, inner, min(end, ip_end), ip_end, ethertype, fields, addrs, n)
    fields[F_STATUS, n] = C.STATUS_BAD_TUNNEL


@njit(cache=True)
def decode_frame(buf, start, caplen, linktype, fields, addrs, n):
    """Decode one frame of ``linktype`` at ``buf[start:start+caplen]`` into row ``n``."""
    end = start + caplen
    fields[F_VLAN, n] = -1
    fields[F_STATUS, n] = C.STATUS_OK
    fields[F_TUNNEL, n] = C.TUNNEL_NONE
    _clear_layer(fields, n, start)
    for k in range(4):
        addrs[k, n] = 0
    wire_end = start + max(fields[F_WIRE_LEN, n], caplen)
    if linktype == C.LINKTYPE_ETHERNET:
        if caplen < 14:
            fields[F_STATUS, n] = C.STATUS_HEADERS_CUT
        else:
            _decode_ethertype(buf, start + 14, end, wire_end, _be16(buf, start + 12), fields, addrs, n)
    elif linktype == C.LINKTYPE_LINUX_SLL:
        if caplen < 16:
            fields[F_STATUS, n] = C.STATUS_HEADERS_CUT
        else:
            _decode_ethertype(buf, start + 16, end, wire_end, _be16(buf, start + 14), fields, addrs, n)
    elif linktype == C.LINKTYPE_LINUX_SLL2:
        if caplen < 20:
            fields[F_STATUS, n] = C.STATUS_HEADERS_CUT
        else:
            _decode_ethertype(buf, start + 20, end, wire_end, _be16(buf, start), fields, addrs, n)
    elif (
        linktype == C.LINKTYPE_RAW
        or linktype == C.LINKTYPE_RAW_12
        or linktype == C.LINKTYPE_RAW_14
        or linktype == C.LINKTYPE_IPV4
        or linktype == C.LINKTYPE_IPV6
    ):
        _decode_ip(buf, start, end, wire_end, fields, addrs, n)
    elif linktype == C.LINKTYPE_NULL or linktype == C.LINKTYPE_LOOP:
        if caplen < 4:
            fields[F_STATUS, n] = C.STATUS_HEADERS_CUT
        else:
            # NULL stores the family in the writer's byte order; accept either.
            _decode_ip(buf, start + 4, end, wire_end, fields, addrs, n)
    else:
        at, ethertype = network_layer(buf, start, end, linktype)
        if ethertype >= 0:
            _decode_ethertype(buf, at, end, wire_end, ethertype, fields, addrs, n)
        elif ethertype == C.LINK_CUT:
            fields[F_STATUS, n] = C.STATUS_HEADERS_CUT
        elif ethertype == C.LINK_NOT_IP:
            fields[F_STATUS, n] = C.STATUS_NOT_IP
        else:
            fields[F_STATUS, n] = C.STATUS_UNSUPPORTED_LINK
    proto = fields[F_PROTO, n]
    if proto == C.IPPROTO_UDP or proto == C.IPPROTO_GRE or proto == C.IPPROTO_IPIP or proto == C.IPPROTO_IPV6:
        _follow_tunnels(buf, end, fields, addrs, n)


@njit(cache=True)
def walk_pcap(buf, pos, end, big, nano, linktype, extra, swap, fields, addrs, n, cap):
    """Decode whole pcap records from ``buf[pos:end]`` into rows ``n..cap``.

    ``extra`` bytes follow each 16-byte record header (8 in the modified
    pcap format, magic a1b2cd34). ``swap`` says where the two length fields
    are the other way round (files before version 2.3): 0 never, 1 always,
    2 where the first is the larger (some 2.3 writers). Returns
    ``(n, pos, damaged)``: the rows filled, where the next record starts,
    and whether a record header was impossible (the walk stops there).
    """
    frac_to_ns = 1 if nano else 1000
    head = 16 + extra
    while n < cap and pos + head <= end:
        incl = _u32(buf, pos + 8, big)
        wire = _u32(buf, pos + 12, big)
        if swap == 1 or (swap == 2 and incl > wire):
            incl, wire = wire, incl
        if incl > C.MAX_RECORD_BYTES:
            return n, pos, True
        if pos + head + incl > end:
            break
        fields[F_TS, n] = _u32(buf, pos, big) * 1_000_000_000 + _u32(buf, pos + 4, big) * frac_to_ns
        fields[F_WIRE_LEN, n] = wire
        fields[F_CAP_LEN, n] = incl
        fields[F_IFACE, n] = 0
        fields[F_FRAME_OFF, n] = pos + head
        decode_frame(buf, pos + head, incl, linktype, fields, addrs, n)
        n += 1
        pos += head + incl
    return n, pos, False


@njit(cache=True, inline="always")
def _ticks_to_ns(hi, lo, resol_is_pow2, resol_exp):
    """Convert pcapng timestamp ticks ``hi * 2^32 + lo`` (units of 10^-e or
    2^-e s, e up to 127) to ns without overflowing 64 bits: ticks finer than
    a nanosecond are rounded down to it."""
    if resol_is_pow2:
        if resol_exp <= 32:
            ticks = (hi << 32) | lo
            whole = ticks >> resol_exp
            frac = ticks - (whole << resol_exp)
            return whole * 1_000_000_000 + (frac * 1_000_000_000) // (np.int64(1) << resol_exp)
        # (hi * 1e9 * 2^32 + lo * 1e9) >> e, exactly: both products are below 2^62
        shift = resol_exp - 32
        if shift >= 63:
            return np.int64(0)
        return (hi * 1_000_000_000 + ((lo * 1_000_000_000) >> 32)) >> shift
    if resol_exp <= 9:
        return ((hi << 32) | lo) * 10 ** (9 - resol_exp)
    down = resol_exp - 9
    if down > 19:  # 10^20 ticks exceed 2^64: every timestamp is under a nanosecond
        return np.int64(0)
    ticks = (np.uint64(hi) << np.uint64(32)) | np.uint64(lo)
    divisor = np.uint64(1)
    for _ in range(down):
        divisor = divisor * np.uint64(10)
    return np.int64(ticks // divisor)


@njit(cache=True)
def walk_pcapng(buf, pos, end, big, if_linktype, if_pow2, if_exp, if_offset_s, if_snaplen,
                n_if, fields, addrs, n, cap):
    """Decode packet blocks (EPB, SPB, OPB) from ``buf[pos:end]``.

    Returns ``(n, pos, stop)``. ``stop`` is 0 when the buffer or the rows ran
    out, 1 at a non-packet block (the caller parses it), 2 at a damaged block
    length, 3 at a packet for an interface not described yet.
    """
    while n < cap and pos + 12 <= end:
        btype = _u32(buf, pos, big)
        if btype != C.PCAPNG_EPB and btype != C.PCAPNG_SPB and btype != C.PCAPNG_OPB:
            return n, pos, 1
        blen = _u32(buf, pos + 4, big)
        if blen < 12 or blen % 4 != 0 or blen > C.MAX_RECORD_BYTES:
            return n, pos, 2
        if pos + blen > end:
            break
        if btype == C.PCAPNG_EPB or btype == C.PCAPNG_OPB:
            if blen < 32:
                return n, pos, 2
            if btype == C.PCAPNG_EPB:
                iface = _u32(buf, pos + 8, big)
            else:
                iface = (_u32(buf, pos + 8, big) >> 16) if big else (_u32(buf, pos + 8, big) & 0xFFFF)
            ticks_hi = _u32(buf, pos + 12, big)
            ticks_lo = _u32(buf, pos + 16, big)
            incl = _u32(buf, pos + 20, big)
            wire = _u32(buf, pos + 24, big)
            data = pos + 28
            if incl > blen - 32:
                return n, pos, 2
        else:  # SPB: one interface (0); captured length bounded by the block
            iface = 0
            wire = _u32(buf, pos + 8, big)
            data = pos + 12
            incl = min(wire, blen - 16)
            ticks_hi = -1
            ticks_lo = 0
        if iface >= n_if:
            return n, pos, 3
        if ticks_hi >= 0:
            fields[F_TS, n] = _ticks_to_ns(ticks_hi, ticks_lo, if_pow2[iface], if_exp[iface]) + if_offset_s[iface] * 1_000_000_000
        else:
            fields[F_TS, n] = fields[F_TS, n - 1] if n > 0 else 0
        if if_snaplen[iface] > 0 and incl > if_snaplen[iface] and btype == C.PCAPNG_SPB:
            incl = if_snaplen[iface]
        fields[F_WIRE_LEN, n] = wire
        fields[F_CAP_LEN, n] = incl
        fields[F_IFACE, n] = iface
        fields[F_FRAME_OFF, n] = data
        decode_frame(buf, data, incl, if_linktype[iface], fields, addrs, n)
        n += 1
        pos += blen
    return n, pos, 0
