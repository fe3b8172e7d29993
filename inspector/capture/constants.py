"""Wire constants for the capture layer, kept as data.

Numbers cite their source; the numba kernels in ``decode.py`` import them as
compile-time constants.
"""

from __future__ import annotations

from inspector.schema import TUNNELS

# --- capture file magics -------------------------------------------------
PCAP_MAGIC_US = 0xA1B2C3D4  # classic pcap, microsecond timestamps (libpcap)
PCAP_MAGIC_NS = 0xA1B23C4D  # classic pcap, nanosecond timestamps
# Alexey Kuznetsov's modified libpcap (Red Hat/SuSE tcpdump of the late 1990s):
# microseconds, and 8 more bytes after each record header (ifindex, protocol,
# pkt_type, pad), as wiretap/libpcap.c reads it
PCAP_MAGIC_MODIFIED = 0xA1B2CD34
PCAP_MODIFIED_EXTRA = 8
PCAP_MAGICS = (PCAP_MAGIC_US, PCAP_MAGIC_NS, PCAP_MAGIC_MODIFIED)
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
IPPROTO_GRE = 47

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
STATUS_BAD_TUNNEL = 7  # tunnel header recognised but inconsistent, or nested too deep

STATUS_ANOMALY_KINDS: dict[int, str] = {
    STATUS_HEADERS_CUT: "headers-cut-by-snaplen",
    STATUS_BAD_IP: "malformed-ip-header",
    STATUS_BAD_L4: "malformed-transport-header",
    STATUS_FRAGMENT: "ip-fragment-not-reassembled",
    STATUS_UNSUPPORTED_LINK: "unsupported-link-type",
    STATUS_BAD_TUNNEL: "malformed-tunnel-header",
}

# --- tunnels that mirror ports deliver -------------------------------------
# The decoder follows them to the inner packet; F_TUNNEL keeps the outermost,
# as an index into TUNNEL_NAMES (the flows table's `tunnel` column).
TUNNEL_NAMES = TUNNELS
(TUNNEL_NONE, TUNNEL_VXLAN, TUNNEL_GENEVE, TUNNEL_GRE,
 TUNNEL_ERSPAN1, TUNNEL_ERSPAN2, TUNNEL_ERSPAN3) = range(len(TUNNEL_NAMES))

# Tunnels inside tunnels (VXLAN in GRE in ERSPAN ...) are followed this deep;
# hostile input cannot make the decoder loop.
MAX_TUNNEL_DEPTH = 4

UDP_PORT_VXLAN = 4789  # RFC 7348 s5 (IANA)
VXLAN_HEADER_BYTES = 8
VXLAN_FLAG_I = 0x08  # RFC 7348 s5: the VNI is valid; a header without it is not VXLAN

UDP_PORT_GENEVE = 6081  # RFC 8926 s3.3 (IANA)
GENEVE_HEADER_BYTES = 8  # plus Opt Len (low 6 bits of octet 0) 4-octet words of options
GENEVE_VERSION_SHIFT = 6  # Ver: the top 2 bits of octet 0, 0 in RFC 8926

ETH_TEB = 0x6558  # Transparent Ethernet Bridging: an Ethernet frame follows (GRE, GENEVE)
ETH_ERSPAN_1_2 = 0x88BE  # ERSPAN type II; type I when GRE has no sequence number (draft-foschiano-erspan-03)
ETH_ERSPAN_3 = 0x22EB  # ERSPAN type III

# GRE flags and version, first 16 bits (RFC 2784 s2.1, RFC 2890 s2)
GRE_BASE_BYTES = 4
GRE_CHECKSUM = 0x8000  # C: 4 octets of checksum + reserved follow
GRE_ROUTING = 0x4000  # R: RFC 1701 source routing, not decoded
GRE_KEY = 0x2000  # K: 4 octets of key follow (RFC 2890)
GRE_SEQUENCE = 0x1000  # S: 4 octets of sequence number follow (RFC 2890)
GRE_VERSION = 0x0007  # 0 for GRE; 1 is PPTP's enhanced GRE (RFC 2637), not decoded

# ERSPAN headers after GRE (draft-foschiano-erspan-03 s4.2, s4.3)
ERSPAN2_HEADER_BYTES = 8
ERSPAN3_HEADER_BYTES = 12
ERSPAN3_SUBHEADER_BYTES = 8  # platform-specific subheader, present when O (last bit) is set
ERSPAN2_VERSION = 1  # Ver: top 4 bits of the first octet
ERSPAN3_VERSION = 2
ERSPAN_SESSION_MASK = 0x03FF  # low 10 bits of octets 2-3
ERSPAN3_FRAME_ETHERNET = 0  # FT: bits 1-5 of octet 10; 2 is IP, not decoded

# --- live capture (tcpdump) -----------------------------------------------
SNAPLEN = 262144  # tcpdump -s: libpcap's largest snaplen, whole packets
BUFFER_MB = 64
"""The kernel capture buffer (tcpdump -B). libpcap's default, 2 MiB, overflows
on one burst of a migration: 3 MB sent in 4 ms over loopback lost a third
of its packets, and a 10 Gbit/s mirror fills 2 MiB in under 2 ms."""
