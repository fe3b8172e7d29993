"""Compiled link-layer decoders for the link types beyond Ethernet, cooked and raw IP.

Each finds where the frame's network layer starts and what it is, as an
EtherType (or ``ETH_IP_BY_VERSION``, ``ETH_LLC``); ``decode.py`` goes on
from there exactly as for Ethernet, so VLAN tags, MPLS, PPPoE, LLC/SNAP and
tunnels are followed the same way whatever the link. Wrappers that name the
link type inside (radiotap, PPI, PKTAP, Prism, AVS) are peeled first.
Layouts: https://www.tcpdump.org/linktypes.html and the pages it links.

numba's cache stamps a kernel by its own file only: the cached kernels of
``decode.py`` hold these compiled in, so after editing this file touch
``decode.py`` (an install rewrites both).
"""

from __future__ import annotations

import numpy as np

from inspector.capture import constants as C
from inspector.capture.wire import be16, be32, le16, le32
from inspector.jit import njit

_NOT_IP = (0, C.LINK_NOT_IP)
_CUT = (0, C.LINK_CUT)
_UNSUPPORTED = (0, C.LINK_UNSUPPORTED)

AVS_MAGIC = 0x80211001  # first word of an AVS header, found in some Prism-typed files too
RADIOTAP_DATAPAD = 0x20  # Flags: padding between the 802.11 header and its payload, to 32 bits
NFLOG_PAYLOAD = 9  # NFULA_PAYLOAD: the packet itself (linux/netfilter/nfnetlink_log.h)
NFLOG_MAX_TLVS = 64
WRAPPER_DEPTH = 3  # PPI around radiotap-less 802.11, PKTAP around Ethernet: never deeper


@njit(cache=True)
def ppp_ethertype(protocol):
    """The EtherType of what a PPP protocol number carries, or ``LINK_NOT_IP`` (LCP, IPCP, ...)."""
    if protocol == C.PPP_IPV4:
        return C.ETH_IPV4
    if protocol == C.PPP_IPV6:
        return C.ETH_IPV6
    if protocol == C.PPP_MPLS:
        return C.ETH_MPLS
    return C.LINK_NOT_IP


@njit(cache=True)
def _ppp(buf, i, end):
    """PPP at ``i``: optional ff 03 (RFC 1662), then a 1- or 2-octet protocol (RFC 1661 s6.5 compression)."""
    if i + 2 <= end and buf[i] == C.HDLC_ADDRESS_PPP and buf[i + 1] == C.LLC_UI:
        i += 2
    if i >= end:
        return _CUT
    if buf[i] & 1:  # a compressed protocol field: one odd octet
        return i + 1, ppp_ethertype(buf[i])
    if i + 2 > end:
        return _CUT
    return i + 2, ppp_ethertype(be16(buf, i))


@njit(cache=True)
def _hdlc(buf, i, end):
    """PPP in HDLC-like framing (ff 03) or Cisco HDLC (0f/8f 00, then an EtherType)."""
    if i + 4 > end:
        return _CUT
    if buf[i] == C.HDLC_ADDRESS_PPP:
        return _ppp(buf, i, end)
    if buf[i] == C.HDLC_CISCO_UNICAST or buf[i] == C.HDLC_CISCO_MULTICAST:
        return i + 4, be16(buf, i + 2)
    return _NOT_IP


@njit(cache=True)
def _ieee802_11(buf, i, end, padded):
    """An 802.11 data frame: its LLC header, after QoS, HT control and the first A-MSDU subframe header;
    ``padded``: the header is padded to 4 octets (radiotap's DATAPAD flag)."""
    if i + 24 > end:
        return _CUT
    control, flags = buf[i], buf[i + 1]
    if control & 0x0F != 0x08:  # protocol version 0, type 2 (data)
        return _NOT_IP
    subtype = control >> 4
    if subtype & 0x4 or flags & 0x40:  # no body (null, CF-ack/poll), or protected (WEP/WPA): nothing to read
        return _NOT_IP
    at = i + 24
    amsdu = 0
    if flags & 0x03 == 0x03:  # to and from DS: a fourth address
        at += 6
    if subtype & 0x8:  # QoS data: a QoS control field, HT control with the order bit
        if at + 2 > end:
            return _CUT
        amsdu = buf[at] & 0x80
        at += 2
        if flags & 0x80:
            at += 4
    if padded:
        at = i + ((at - i + 3) & ~3)
    if amsdu:  # the first subframe: destination, source, length, then LLC
        at += 14
    return at, C.ETH_LLC


@njit(cache=True)
def _radiotap_flags(buf, i, end):
    """The Flags field of the radiotap header ``buf[i:end]``, 0 without one. Fields are aligned to their
    size from the header's start; TSFT (bit 0, 8 octets) is the only one before Flags (bit 1)."""
    present = le32(buf, i + 4)
    at = i + 8
    for _ in range(8):  # further presence words while bit 31 is set
        if not le32(buf, at - 4) & 0x80000000:
            break
        at += 4
        if at > end:
            return 0
    if not present & 0x2:
        return 0
    if present & 0x1:
        at = i + ((at - i + 7) & ~7) + 8
    return buf[at] if at < end else 0


@njit(cache=True)
def _nflog(buf, i, end):
    """Linux NFLOG: the NFULA_PAYLOAD TLV's value. TLV lengths and types are in the writer's byte order."""
    if i + 8 > end:
        return _CUT
    if buf[i + 1] != 0:  # version 0
        return _NOT_IP
    at = i + 4
    big = buf[at + 2] == 0 and buf[at + 3] != 0  # types are small: their zero octet shows the order
    for _ in range(NFLOG_MAX_TLVS):
        if at + 4 > end:
            return _CUT
        length = be16(buf, at) if big else le16(buf, at)
        kind = be16(buf, at + 2) if big else le16(buf, at + 2)
        if length < 4:
            return _NOT_IP
        if kind == NFLOG_PAYLOAD:
            return at + 4, C.ETH_IP_BY_VERSION
        at += (length + 3) & ~3
    return _NOT_IP


@njit(cache=True)
def _frame_layer(buf, i, end, linktype):
    """Where the network layer of a frame of ``linktype`` at ``i`` starts, and what it is."""
    if linktype == C.LINKTYPE_ETHERNET:
        return (i + 14, be16(buf, i + 12)) if i + 14 <= end else _CUT
    if linktype == C.LINKTYPE_IEEE802_11:
        return _ieee802_11(buf, i, end, False)
    if linktype == C.LINKTYPE_PPP:
        return _ppp(buf, i, end)
    if linktype == C.LINKTYPE_PPP_WITH_DIR:
        return _ppp(buf, i + 1, end)
    if linktype == C.LINKTYPE_PPP_HDLC or linktype == C.LINKTYPE_PPP_PPPD or linktype == C.LINKTYPE_C_HDLC:
        return _hdlc(buf, i, end)
    if linktype == C.LINKTYPE_C_HDLC_WITH_DIR:
        return _hdlc(buf, i + 1, end)
    if linktype == C.LINKTYPE_PPP_ETHER:
        return i, C.ETH_PPPOE_SESSION
    if linktype == C.LINKTYPE_MPLS:
        return i, C.ETH_MPLS
    if linktype == C.LINKTYPE_NFLOG:
        return _nflog(buf, i, end)
    if linktype == C.LINKTYPE_FDDI:
        if i + 13 > end:
            return _CUT
        return (i + 13, C.ETH_LLC) if buf[i] & 0x30 == 0x10 else _NOT_IP  # frame control: an LLC frame
    if linktype == C.LINKTYPE_IEEE802_5:
        if i + 15 > end:
            return _CUT
        if buf[i + 1] & 0xC0 != 0x40:  # frame control: an LLC frame, not MAC
            return _NOT_IP
        routing = buf[i + 14] & 0x1F if buf[i + 8] & 0x80 else 0  # source route present: its length
        return i + 14 + routing, C.ETH_LLC
    if linktype == C.LINKTYPE_ATM_RFC1483 or linktype == C.LINKTYPE_ATM_CLIP:
        return i, C.ETH_LLC
    if linktype == C.LINKTYPE_FRELAY:
        if i + 4 > end:
            return _CUT
        if buf[i + 2] != C.LLC_UI:
            return _NOT_IP
        at = i + 3 + (1 if buf[i + 3] == 0 else 0)  # an optional pad octet before the NLPID (RFC 2427 s3)
        if at + 6 > end:
            return _CUT
        nlpid = buf[at]
        if nlpid == 0xCC:
            return at + 1, C.ETH_IPV4
        if nlpid == 0x8E:
            return at + 1, C.ETH_IPV6
        if nlpid == 0x80:  # SNAP: OUI, then an EtherType
            return at + 6, be16(buf, at + 4)
        return _NOT_IP
    if linktype == C.LINKTYPE_DOCSIS:
        if i + 6 > end:
            return _CUT
        if buf[i] >> 6 != 0:  # FC type: a packet PDU carries an Ethernet frame; MAC messages do not
            return _NOT_IP
        at = i + 6 + (buf[i + 1] if buf[i] & 1 else 0)  # EHDR_ON: MAC_PARM is the extended header's length
        return (at + 14, be16(buf, at + 12)) if at + 14 <= end else _CUT
    if linktype == C.LINKTYPE_NETANALYZER:
        return (i + 18, be16(buf, i + 16)) if i + 18 <= end else _CUT
    if linktype == C.LINKTYPE_NETANALYZER_TRANSPARENT:
        return (i + 26, be16(buf, i + 24)) if i + 26 <= end else _CUT
    if linktype == C.LINKTYPE_IPOIB:  # a 40-octet GRH pseudo-header first
        return (i + 44, be16(buf, i + 40)) if i + 44 <= end else _CUT
    if linktype == C.LINKTYPE_APPLE_IP_OVER_IEEE1394:
        return (i + 18, be16(buf, i + 16)) if i + 18 <= end else _CUT
    if linktype == C.LINKTYPE_LINUX_SLL:
        return (i + 16, be16(buf, i + 14)) if i + 16 <= end else _CUT
    if linktype == C.LINKTYPE_LINUX_SLL2:
        return (i + 20, be16(buf, i)) if i + 20 <= end else _CUT
    if linktype == C.LINKTYPE_SLIP:
        return i + 16, C.ETH_IP_BY_VERSION
    if linktype == C.LINKTYPE_ENC:
        return i + 12, C.ETH_IP_BY_VERSION
    if linktype == C.LINKTYPE_IPNET:
        return i + 24, C.ETH_IP_BY_VERSION
    if linktype == C.LINKTYPE_NULL or linktype == C.LINKTYPE_LOOP:
        return i + 4, C.ETH_IP_BY_VERSION
    if linktype == C.LINKTYPE_PFLOG:
        return (i + ((np.int64(buf[i]) + 3) & ~3), C.ETH_IP_BY_VERSION) if i < end else _CUT  # header length, word-aligned
    if (linktype == C.LINKTYPE_RAW or linktype == C.LINKTYPE_RAW_12 or linktype == C.LINKTYPE_RAW_14
            or linktype == C.LINKTYPE_IPV4 or linktype == C.LINKTYPE_IPV6):
        return i, C.ETH_IP_BY_VERSION
    return _UNSUPPORTED


@njit(cache=True)
def network_layer(buf, start, end, linktype):
    """Where the network layer of the frame at ``buf[start:end]`` starts and what it is (an EtherType,
    ``ETH_IP_BY_VERSION`` or ``ETH_LLC``), or ``(0, LINK_*)`` when it carries none, is cut or not decoded."""
    i = start
    for _ in range(WRAPPER_DEPTH):
        if linktype == C.LINKTYPE_IEEE802_11_RADIOTAP:
            if i + 8 > end:
                return _CUT
            length = le16(buf, i + 2)
            if i + length > end:
                return _CUT
            return _ieee802_11(buf, i + length, end, _radiotap_flags(buf, i, i + length) & RADIOTAP_DATAPAD)
        elif linktype == C.LINKTYPE_PPI:
            if i + 8 > end:
                return _CUT
            linktype = le32(buf, i + 4)
            i += le16(buf, i + 2)
        elif linktype == C.LINKTYPE_PKTAP:
            if i + 8 > end:
                return _CUT
            linktype = le32(buf, i + 8)  # after the header length and next-header type
            i += le32(buf, i)
        elif linktype == C.LINKTYPE_IEEE802_11_PRISM or linktype == C.LINKTYPE_IEEE802_11_AVS:
            if i + 8 > end:
                return _CUT
            i += be32(buf, i + 4) if be32(buf, i) == AVS_MAGIC else le32(buf, i + 4)
            linktype = C.LINKTYPE_IEEE802_11
        else:
            return _frame_layer(buf, i, end, linktype)
    return _UNSUPPORTED
