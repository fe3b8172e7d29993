"""The flows table: every column, its dtype and what it means.

Column names follow Zeek's conn.log (``orig``/``resp`` by role, payload byte
counts) so reviewers read them without a legend. This dict is the single
source for the DataFrame dtypes, the JSON schema and docs/schema.md.
"""

from __future__ import annotations

CLOSED_BY = ("fin", "rst", "idle", "end", "open")
"""Values of ``flows.closed_by``."""

FLOW_COLUMNS: dict[str, tuple[str, str]] = {
    "ts": ("datetime64[ns, UTC]", "time of the first packet of the flow"),
    "uid": ("string", "flow id, stable for the same flow in the same capture ('C' + 11 base62 chars)"),
    "proto": ("string", "transport protocol: tcp, udp, icmp, ... (IP protocol number when unnamed)"),
    "orig_h": ("string", "originator address: the sender of the first SYN; without a SYN, see 'Originator' in docs/schema.md"),
    "orig_p": ("UInt16", "originator port (0 for protocols without ports)"),
    "resp_h": ("string", "responder address"),
    "resp_p": ("UInt16", "responder port"),
    "duration": ("timedelta64[ns]", "last packet time minus first packet time"),
    "closed_by": ("category", "how the flow ended: fin (FIN from both sides), rst, idle (no packet for the idle timeout; a later packet starts a new flow), end (the capture ended or the sensor stopped), open (an interim report of a flow still open at the active timeout)"),
    "orig_pkts": ("int64", "packets sent by the originator"),
    "resp_pkts": ("int64", "packets sent by the responder"),
    "orig_bytes": ("int64", "transport payload bytes sent by the originator, from IP lengths (counts bytes a snaplen cut off; retransmissions count again)"),
    "resp_bytes": ("int64", "transport payload bytes sent by the responder"),
    "watch": ("category", "watchlist role that matched: migration, libvirtd, ssh, internal-api or none"),
    "verdict": ("category", "plaintext, compressed (cleartext, only compressed), encrypted or unknown (too little data)"),
    "confidence": ("float64", "confidence in the verdict, 0-1 (0 for unknown)"),
    "reason": ("string", "one line saying which direction decided and the statistics behind it"),
    "event": ("string", "the migration event the flow belongs to (joins events.event); empty when none"),
    "protocol": ("category", "protocol recognised from its framing (qemu-migration, qemu-multifd, libvirt-rpc, nbd, ssh, tls, http, amqp, mysql, rfb, spice, redis, memcached, ovsdb); empty when none"),
    "tls_version": ("string", "negotiated TLS version (from the ServerHello)"),
    "tls_cipher": ("string", "negotiated TLS cipher suite"),
    "tls_sni": ("string", "server name the client asked for (QEMU sends none)"),
    "tls_client_cert_requested": ("string", "True/False when the CertificateRequest is visible (TLS 1.2); empty for TLS 1.3, where it is encrypted"),
    "ssh_client": ("string", "SSH client software from its banner"),
    "ssh_server": ("string", "SSH server software from its banner"),
    "ssh_cipher": ("string", "negotiated SSH cipher (client to server)"),
    "orig_verdict": ("category", "verdict on the originator's payload statistics alone"),
    "resp_verdict": ("category", "verdict on the responder's payload statistics alone"),
    "orig_entropy": ("float64", "median Shannon entropy (bits/byte) of the originator's analysed windows; NaN without payload"),
    "resp_entropy": ("float64", "same for the responder"),
    "orig_chi2": ("float64", "median chi-square of the originator's windows against uniform bytes (255 d.o.f.; ~255 for ciphertext)"),
    "resp_chi2": ("float64", "same for the responder"),
    "orig_printable": ("float64", "share of the originator's analysed bytes that are printable ASCII, TAB, CR or LF"),
    "resp_printable": ("float64", "same for the responder"),
    "orig_analysed_bytes": ("int64", "originator payload bytes the statistics were computed on (captured bytes in sampled windows)"),
    "resp_analysed_bytes": ("int64", "same for the responder"),
    "orig_windows": ("int64", "number of analysed windows (8 KiB head, then 64 KiB windows) of the originator"),
    "resp_windows": ("int64", "same for the responder"),
    "orig_captured_bytes": ("int64", "originator payload bytes present in the capture (less than orig_bytes when a snaplen cut packets)"),
    "resp_captured_bytes": ("int64", "same for the responder"),
    "orig_missed_bytes": ("int64", "originator bytes never seen in gaps of the TCP sequence space, like Zeek's missed_bytes (0 for other protocols)"),
    "resp_missed_bytes": ("int64", "same for the responder"),
    "mid_stream": ("bool", "True when the capture holds no SYN for a TCP flow: it started before the capture"),
    "ip_version": ("int64", "4 or 6"),
    "vlan": ("Int64", "outermost 802.1Q/802.1ad VLAN id of the first packet (a tunnelled frame's when the outer frame has none); <NA> when untagged"),
    "tunnel": ("string", "tunnel the first packet came in, the outermost when nested: vxlan, geneve, gre, erspan1, erspan2 or erspan3; empty when captured directly. Addresses, ports and bytes are the inner packet's"),
    "tunnel_src": ("string", "outer source address of that tunnel in the first packet (mirror source, VTEP or GRE endpoint); empty without a tunnel"),
    "tunnel_dst": ("string", "outer destination address of that tunnel in the first packet (the collector for a mirror); empty without a tunnel"),
    "tunnel_id": ("Int64", "VXLAN or GENEVE VNI, GRE key or ERSPAN session id of that tunnel; <NA> without one"),
    "input": ("string", "the input file the flow was first seen in"),
}

WINDOW_COLUMNS: dict[str, tuple[str, str]] = {
    "uid": ("string", "flow id (joins flows.uid)"),
    "direction": ("category", "orig or resp"),
    "window": ("int64", "window index in the direction's byte stream: 0 is the 8 KiB head, then 64 KiB windows"),
    "bytes": ("int64", "captured bytes in the window"),
    "entropy": ("float64", "Shannon entropy, bits per byte"),
    "chi2": ("float64", "chi-square against uniform bytes (255 degrees of freedom)"),
    "printable": ("float64", "share of printable bytes"),
    "label": ("category", "random, compressed or plain: see inspector.classify.statistics"),
}

EVIDENCE_COLUMNS: dict[str, tuple[str, str]] = {
    "uid": ("string", "flow id (joins flows.uid)"),
    "direction": ("string", "orig, resp, or both (a TLS or SSH handshake merged from both sides)"),
    "event": ("string", "the migration event the flow belongs to (joins events.event); empty when none"),
    "protocol": ("string", "protocol the detector recognised"),
    "offset": ("int64", "where the evidence starts in that direction's reassembled stream head"),
    "proves": ("string", "cleartext (framing in clear), encrypted (validated TLS/SSH session) or nothing"),
    "evidence": ("string", "one line a reviewer reads: what was seen (never payload or credential values)"),
    "fields": ("string", "extracted fields as a JSON object"),
}
