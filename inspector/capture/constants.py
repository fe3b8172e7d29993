"""Wire constants for the capture layer, kept as data.

Numbers cite their source; the numba kernels in ``decode.py`` import them as
compile-time constants.
"""

from __future__ import annotations

# --- capture file magics -------------------------------------------------
PCAP_MAGIC_US = 0xA1B2C3D4  # classic pcap, microsecond timestamps (libpcap)
PCAP_MAGIC_NS = 0xA1B23C4D  # classic pcap, nanosecond timestamps
PCAPNG_SHB = 0x0A0D0D0A  # pcapng Section Header Block (draft-ietf-opsawg-pcapng)
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
GZIP_MAGIC = b"\x1f\x8b"

# pcapng block types
PCAPNG_IDB = 0x00000001  # Interface Description Block
PCAPNG_OPB = 0x00000002  # obsolete Packet Block
PCAPNG_SPB = 0x00000003  # Simple Packet Block
PCAPNG_EPB = 0x00000006  # Enhanced Packet Block
PCAPNG_OPT_IF_TSRESOL = 9
PCAPNG_OPT_IF_TSOFFSET = 14

# Largest record we accept: well above any real snaplen (262144 for libpcap,
# 64 KiB GSO on loopback); anything larger is a damaged header.
MAX_RECORD_BYTES = 16 * 1024 * 1024

# --- link types (https://www.tcpdump.org/linktypes.html) ------------------
LINKTYPE_NULL = 0  # BSD loopback, address family in host byte order
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_12 = 12  # DLT_RAW on most platforms
LINKTYPE_RAW_14 = 14  # DLT_RAW on OpenBSD
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108  # OpenBSD loopback, address family in network byte order
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

SUPPORTED_LINKTYPES: dict[int, str] = {
    LINKTYPE_NULL: "NULL (BSD loopback)",
    LINKTYPE_ETHERNET: "Ethernet",
    LINKTYPE_RAW_12: "raw IP",
    LINKTYPE_RAW_14: "raw IP",
    LINKTYPE_RAW: "raw IP",
    LINKTYPE_LOOP: "LOOP (OpenBSD loopback)",
    LINKTYPE_LINUX_SLL: "Linux cooked (SLL)",
    LINKTYPE_IPV4: "raw IPv4",
    LINKTYPE_IPV6: "raw IPv6",
    LINKTYPE_LINUX_SLL2: "Linux cooked v2 (SLL2)",
}

# EtherTypes (IEEE 802)
ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN = 0x8100  # 802.1Q C-tag
ETH_QINQ = 0x88A8  # 802.1ad S-tag
ETH_QINQ_OLD = 0x9100  # pre-standard QinQ

# BSD address families seen in NULL/LOOP headers
AF_INET = 2
AF_INET6_VALUES = (24, 28, 30)  # NetBSD/OpenBSD, FreeBSD, macOS

# IPv6 extension headers the decoder walks (RFC 8200 s4)
IPV6_HOPOPTS = 0
IPV6_ROUTING = 43
IPV6_FRAGMENT = 44
IPV6_DSTOPTS = 60
IPV6_AH = 51  # length in 4-octet units, RFC 4302
IPV6_MOBILITY = 135

IPPROTO_TCP = 6
IPPROTO_UDP = 17

IP_PROTOCOL_NAMES: dict[int, str] = {
    1: "icmp",
    6: "tcp",
    17: "udp",
    47: "gre",
    50: "esp",
    51: "ah",
    58: "icmp6",
    132: "sctp",
}

# TCP flags (RFC 9293)
TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10

# --- per-packet decode status (why a packet has no flow key) -------------
STATUS_OK = 0
STATUS_NOT_IP = 1  # ARP, LLDP, ...: counted, not an anomaly
STATUS_HEADERS_CUT = 2  # snaplen ended inside the headers
STATUS_BAD_IP = 3  # IP header inconsistent (version, lengths)
STATUS_BAD_L4 = 4  # TCP/UDP header inconsistent
STATUS_FRAGMENT = 5  # non-first IP fragment: no ports to key on
STATUS_UNSUPPORTED_LINK = 6  # pcapng interface with a link type we do not decode

STATUS_ANOMALY_KINDS: dict[int, str] = {
    STATUS_HEADERS_CUT: "headers-cut-by-snaplen",
    STATUS_BAD_IP: "malformed-ip-header",
    STATUS_BAD_L4: "malformed-transport-header",
    STATUS_FRAGMENT: "ip-fragment-not-reassembled",
    STATUS_UNSUPPORTED_LINK: "unsupported-link-type",
}
