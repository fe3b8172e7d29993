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
LINKTYPE_IEEE802_5 = 6  # Token Ring: AC, FC, addresses, optional routing field, then LLC
LINKTYPE_SLIP = 8  # 16-octet direction/compression header, then IP
LINKTYPE_PPP = 9  # PPP (RFC 1661), with or without the ff 03 of HDLC-like framing (RFC 1662)
LINKTYPE_FDDI = 10  # frame control and addresses (13 octets), then LLC
LINKTYPE_RAW_12 = 12  # DLT_RAW on most platforms
LINKTYPE_RAW_14 = 14  # DLT_RAW on OpenBSD
LINKTYPE_ATM_CLIP = 19  # Linux Classical IP over ATM: LLC/SNAP
LINKTYPE_PPP_HDLC = 50  # PPP in HDLC-like framing (ff 03), or Cisco HDLC (0f/8f)
LINKTYPE_PPP_ETHER = 51  # PPPoE session header (RFC 2516), then PPP
LINKTYPE_ATM_RFC1483 = 100  # LLC/SNAP (RFC 1483)
LINKTYPE_RAW = 101
LINKTYPE_C_HDLC = 104  # Cisco HDLC: address, control, EtherType
LINKTYPE_IEEE802_11 = 105
LINKTYPE_FRELAY = 107  # Frame Relay Q.922 address, then RFC 2427 NLPID
LINKTYPE_LOOP = 108  # OpenBSD loopback, address family in network byte order
LINKTYPE_ENC = 109  # OpenBSD IPsec: 12-octet header, then IP
LINKTYPE_LINUX_SLL = 113
LINKTYPE_PFLOG = 117  # OpenBSD pflog: header length in octet 0 (padded to 4), then IP
LINKTYPE_IEEE802_11_PRISM = 119  # Prism monitor header (length at 4, little-endian), then 802.11
LINKTYPE_IEEE802_11_RADIOTAP = 127  # radiotap (length at 2, little-endian), then 802.11
LINKTYPE_APPLE_IP_OVER_IEEE1394 = 138  # 18-octet header, EtherType last
LINKTYPE_DOCSIS = 143  # DOCSIS MAC header (with extended header), then Ethernet
LINKTYPE_IEEE802_11_AVS = 163  # AVS monitor header (length at 4, big-endian), then 802.11
LINKTYPE_PPP_PPPD = 166  # as PPP_HDLC
LINKTYPE_PPI = 192  # Per-Packet Information: length at 2, inner link type at 4 (little-endian)
LINKTYPE_PPP_WITH_DIR = 204  # a direction octet, then PPP
LINKTYPE_C_HDLC_WITH_DIR = 205  # a direction octet, then Cisco HDLC
LINKTYPE_MPLS = 219  # an MPLS label stack
LINKTYPE_IPNET = 226  # Solaris ipnet: 24-octet header, then IP
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_NFLOG = 239  # Linux NFLOG: 4-octet header, then TLVs; NFULA_PAYLOAD (9) holds the packet
LINKTYPE_NETANALYZER = 240  # 4-octet header, then Ethernet
LINKTYPE_NETANALYZER_TRANSPARENT = 241  # 4-octet header, preamble and SFD, then Ethernet
LINKTYPE_IPOIB = 242  # IP over InfiniBand: a 40-octet GRH pseudo-header, then RFC 4391's EtherType and reserved
LINKTYPE_PKTAP = 258  # Apple PKTAP: length at 0, inner link type at 8 (little-endian)
LINKTYPE_LINUX_SLL2 = 276

SUPPORTED_LINKTYPES: dict[int, str] = {
    LINKTYPE_NULL: "NULL (BSD loopback)",
    LINKTYPE_ETHERNET: "Ethernet",
    LINKTYPE_IEEE802_5: "Token Ring",
    LINKTYPE_SLIP: "SLIP",
    LINKTYPE_PPP: "PPP",
    LINKTYPE_FDDI: "FDDI",
    LINKTYPE_RAW_12: "raw IP",
    LINKTYPE_RAW_14: "raw IP",
    LINKTYPE_ATM_CLIP: "ATM CLIP",
    LINKTYPE_PPP_HDLC: "PPP in HDLC framing",
    LINKTYPE_PPP_ETHER: "PPPoE",
    LINKTYPE_ATM_RFC1483: "ATM RFC 1483",
    LINKTYPE_RAW: "raw IP",
    LINKTYPE_C_HDLC: "Cisco HDLC",
    LINKTYPE_IEEE802_11: "802.11",
    LINKTYPE_FRELAY: "Frame Relay",
    LINKTYPE_LOOP: "LOOP (OpenBSD loopback)",
    LINKTYPE_ENC: "OpenBSD enc",
    LINKTYPE_LINUX_SLL: "Linux cooked (SLL)",
    LINKTYPE_PFLOG: "OpenBSD pflog",
    LINKTYPE_IEEE802_11_PRISM: "802.11 with Prism header",
    LINKTYPE_IEEE802_11_RADIOTAP: "802.11 with radiotap",
    LINKTYPE_APPLE_IP_OVER_IEEE1394: "IP over IEEE 1394",
    LINKTYPE_DOCSIS: "DOCSIS",
    LINKTYPE_IEEE802_11_AVS: "802.11 with AVS header",
    LINKTYPE_PPP_PPPD: "PPP (pppd)",
    LINKTYPE_PPI: "PPI",
    LINKTYPE_PPP_WITH_DIR: "PPP with direction",
    LINKTYPE_C_HDLC_WITH_DIR: "Cisco HDLC with direction",
    LINKTYPE_MPLS: "MPLS",
    LINKTYPE_IPNET: "Solaris ipnet",
    LINKTYPE_IPV4: "raw IPv4",
    LINKTYPE_IPV6: "raw IPv6",
    LINKTYPE_NFLOG: "Linux NFLOG",
    LINKTYPE_NETANALYZER: "netANALYZER",
    LINKTYPE_NETANALYZER_TRANSPARENT: "netANALYZER transparent",
    LINKTYPE_IPOIB: "IP over InfiniBand",
    LINKTYPE_PKTAP: "Apple PKTAP",
    LINKTYPE_LINUX_SLL2: "Linux cooked v2 (SLL2)",
}
"""Link types whose frames are decoded to IP (the ``inputs`` table's names for them)."""

LINKTYPES_WITHOUT_IP: dict[int, str] = {
    3: "AX.25", 139: "SS7 MTP2 with pseudo-header", 140: "SS7 MTP2", 141: "SS7 MTP3", 142: "SS7 SCCP",
    144: "Linux IrDA", 177: "Linux LAPD", 187: "Bluetooth HCI H4", 189: "USB (Linux)", 190: "CAN 2.0B",
    195: "IEEE 802.15.4 with FCS", 201: "Bluetooth HCI H4 with pseudo-header", 215: "IEEE 802.15.4 non-ASK PHY",
    220: "USB (Linux, memory-mapped)", 224: "Fibre Channel FC-2", 225: "Fibre Channel FC-2 with delimiters",
    227: "SocketCAN", 230: "IEEE 802.15.4 without FCS", 231: "D-Bus", 235: "DVB-CI", 249: "USBPcap",
    251: "Bluetooth LE link layer", 253: "Linux netlink", 254: "Bluetooth Linux monitor",
    255: "Bluetooth BR/EDR baseband", 256: "Bluetooth LE link layer with pseudo-header", 266: "USB (Darwin)",
    271: "vsock", 272: "Nordic BLE sniffer", 283: "IEEE 802.15.4 TAP", 288: "USB 2.0", 293: "USB 2.0 low speed",
    294: "USB 2.0 full speed", 295: "USB 2.0 high speed",
}
"""Link types that carry no IP (buses, radios, signalling): a file of them is read, nothing analysed."""

LINKTYPE_NAMES: dict[int, str] = {**LINKTYPES_WITHOUT_IP, **SUPPORTED_LINKTYPES}

# What the link-layer decoder (``linklayer.py``) hands on: an EtherType, or
ETH_IP_BY_VERSION = 0x10000  # pseudo-EtherType: IPv4 or IPv6 by the version nibble
ETH_LLC = 0x10001  # pseudo-EtherType: an IEEE 802.2 LLC header (SNAP carries the EtherType)
LINK_NOT_IP = -1  # a frame that carries no IP (management, control, encrypted 802.11)
LINK_CUT = -2  # the snaplen ended inside the link-layer headers
LINK_UNSUPPORTED = -3  # a link type that is not decoded

# EtherTypes (IEEE 802)
ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN = 0x8100  # 802.1Q C-tag
ETH_QINQ = 0x88A8  # 802.1ad S-tag
ETH_QINQ_OLD = 0x9100  # pre-standard QinQ
ETH_MPLS = 0x8847  # MPLS unicast (RFC 3032)
ETH_MPLS_MULTICAST = 0x8848
ETH_PPPOE_SESSION = 0x8864  # PPPoE session stage (RFC 2516)
ETH_MAX_LENGTH = 1500  # an EtherType field up to this is an IEEE 802.3 length: an LLC header follows

# IEEE 802.2 LLC with SNAP (RFC 1042): aa aa 03, a 3-octet OUI, then an EtherType
LLC_SNAP_SAP = 0xAA
LLC_UI = 0x03
LLC_SNAP_BYTES = 8

# PPP protocol numbers (RFC 1661, IANA ppp-numbers) of what the decoder follows
PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057
PPP_MPLS = 0x0281
PPPOE_HEADER_BYTES = 6  # ver/type, code, session id, length (RFC 2516 s4)
PPPOE_VER_TYPE = 0x11
HDLC_ADDRESS_PPP = 0xFF  # PPP in HDLC-like framing: ff 03 (RFC 1662 s3.1)
HDLC_CISCO_UNICAST = 0x0F  # Cisco HDLC addresses
HDLC_CISCO_MULTICAST = 0x8F

# MPLS label stack entries (RFC 3032 s2.1): label 20 bits, TC 3, S (bottom of stack) 1, TTL 8
MPLS_ENTRY_BYTES = 4
MPLS_MAX_LABELS = 8
MPLS_CONTROL_WORD_BYTES = 4  # pseudowire control word (RFC 4385): first nibble 0, an Ethernet frame follows

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

IPPROTO_IPIP = 4  # IPv4 in IP (RFC 2003)
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_IPV6 = 41  # IPv6 in IP (RFC 4213 6in4, RFC 2473)
IPPROTO_GRE = 47

IP_PROTOCOL_NAMES: dict[int, str] = {
    1: "icmp",
    4: "ipip",
    6: "tcp",
    17: "udp",
    41: "ipv6",
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
STATUS_UNSUPPORTED_LINK = 6  # a link type not decoded: counted by reader.py under the link type's anomaly
STATUS_BAD_TUNNEL = 7  # tunnel header recognised but inconsistent, or nested too deep

STATUS_ANOMALY_KINDS: dict[int, str] = {
    STATUS_HEADERS_CUT: "headers-cut-by-snaplen",
    STATUS_BAD_IP: "malformed-ip-header",
    STATUS_BAD_L4: "malformed-transport-header",
    STATUS_FRAGMENT: "ip-fragment-not-reassembled",
    STATUS_BAD_TUNNEL: "malformed-tunnel-header",
}

# --- tunnels that mirror ports deliver -------------------------------------
# The decoder follows them to the inner packet; F_TUNNEL keeps the outermost,
# as an index into TUNNEL_NAMES (the flows table's `tunnel` column).
TUNNEL_NAMES = TUNNELS
(TUNNEL_NONE, TUNNEL_VXLAN, TUNNEL_GENEVE, TUNNEL_GRE,
 TUNNEL_ERSPAN1, TUNNEL_ERSPAN2, TUNNEL_ERSPAN3, TUNNEL_IPIP, TUNNEL_6IN4, TUNNEL_PPPOE, TUNNEL_MPLS,
 TUNNEL_TEREDO, TUNNEL_AYIYA, TUNNEL_GTPU, TUNNEL_GRE_UDP) = range(len(TUNNEL_NAMES))

# Tunnels inside tunnels (VXLAN in GRE in ERSPAN ...) are followed this deep;
# hostile input cannot make the decoder loop.
MAX_TUNNEL_DEPTH = 4

UDP_PORT_VXLAN = 4789  # RFC 7348 s5 (IANA)
VXLAN_HEADER_BYTES = 8
VXLAN_FLAG_I = 0x08  # RFC 7348 s5: the VNI is valid; a header without it is not VXLAN

UDP_PORT_GENEVE = 6081  # RFC 8926 s3.3 (IANA)
GENEVE_HEADER_BYTES = 8  # plus Opt Len (low 6 bits of octet 0) 4-octet words of options
GENEVE_VERSION_SHIFT = 6  # Ver: the top 2 bits of octet 0, 0 in RFC 8926

UDP_PORT_TEREDO = 3544  # RFC 4380 s5.2.1 (IANA), either direction
UDP_PORT_AYIYA = 5072  # draft-massar-v6ops-ayiya s7 (IANA), either direction
AYIYA_OPCODE_FORWARD = 1  # the header is followed by the packet of its Next Header
UDP_PORT_GTPU = 2152  # 3GPP TS 29.281 s4.4.2
GTPU_VERSION_PT = 0x30  # version 1 (top 3 bits) and PT 1 (GTP, not GTP'), octet 0
GTPU_G_PDU = 0xFF  # message type of a user packet
GTPU_HEADER_BYTES = 8
GTPU_OPTIONAL_BYTES = 4  # sequence, N-PDU, next extension type: present when E, S or PN is set
GTPU_FLAGS_E_S_PN = 0x07
UDP_PORT_GRE = 4754  # GRE-in-UDP, RFC 8086 s3.1 (IANA)
UDP_PORT_MPLS = 6635  # MPLS-in-UDP, RFC 7510 s3 (IANA)

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
