"""Every table's columns and every vocabulary, in one place.

A leaf: every stage imports it and it imports nothing of inspector, so
there are no import circles. The DataFrame dtypes (``inspector.tables``),
the JSON schema (docs/result.schema.json) and the column and vocabulary
tables of docs/schema.md (``markdown()``, printed by ``inspector schema
--markdown``) are all generated from here.

A table is a dict ``column -> (dtype, meaning)``; ``category`` columns take
their categories from ``CATEGORIES`` (ordered for ``ORDERED`` columns);
``list`` columns hold a Python list of strings per row (``LIST_COLUMNS``).
"""

from __future__ import annotations

Columns = dict[str, tuple[str, str]]

# ---------------------------------------------------------------- vocabularies

VERDICTS = ("plaintext", "compressed", "encrypted", "unknown")
"""Verdict of a flow or a direction (``flows.verdict``)."""

WINDOW_LABELS = ("random", "compressed", "plain")
"""Label of one statistics window (``windows.label``, see inspector/classify/statistics.py)."""

ROLES = ("migration", "libvirtd", "ssh", "internal-api", "none")
"""Watchlist roles in priority order: a flow takes the first that matches (``flows.watch``)."""

CLOSED_BY = ("fin", "rst", "idle", "end", "open")
"""How a flow ended (``flows.closed_by``)."""

PROTOCOLS = ("qemu-migration", "qemu-multifd", "libvirt-rpc", "nbd", "ssh", "tls", "http", "amqp", "mysql",
             "rfb", "spice", "redis", "memcached", "ovsdb", "openvpn", "esp", "ike", "wireguard", "quic", "dtls",
             "smtp", "imap", "pop3", "ftp", "xmpp", "ldap", "postgresql", "rdp", "text")
"""Protocols the detectors recognise, in the order that names a flow showing several (``flows.protocol``)."""

DIRECTIONS = ("orig", "resp")
"""Sides of a flow: the originator's and the responder's payload."""

PROVES = ("cleartext", "encrypted", "nothing")
"""What a detection proves about its stream (``evidence.proves``): framing in clear, a validated
TLS/SSH session, or neither (a greeting before STARTTLS)."""

SEVERITIES = ("critical", "high", "medium", "low", "info")
"""Finding severities, most severe first; ``--fail-on`` compares on this order."""

RISKS = ("denial of service", "data leakage", "data manipulation", "code injection")
"""The risks of cleartext migration named by the OpenStack security guide."""

PROTECTIONS = ("libvirt tunnel over plain TCP", "none", "compressed only", "SSH", "libvirt tunnel over TLS",
               "TLS", "unknown")
"""How a migration event's guest data was protected (``events.protection``, see inspector/events.py)."""

CLEAR = ("plaintext", "compressed")
"""Verdicts whose payload crossed the wire readable."""

TUNNELS = ("", "vxlan", "geneve", "gre", "erspan1", "erspan2", "erspan3", "ipip", "6in4", "pppoe", "mpls",
           "teredo", "ayiya", "gtp-u", "gre-udp")
"""Tunnels a mirror port or provider network delivers, by decoder code ('' for none; ``flows.tunnel``):
ipip is IP protocol 4 (IPv4 inside IPv4 or IPv6), 6in4 IP protocol 41 (IPv6 inside), gre-udp GRE in UDP
(RFC 8086); pppoe and mpls at the link layer have no outer addresses."""

SECRET_KINDS = ("private-key", "password", "cloud-credential", "token", "basic-auth")
"""Kinds of secret the scan of cleartext payload finds (``secrets.kind``)."""

ALERT_KINDS = ("cleartext-migration", "nbd-disk-in-clear", "credentials")
"""What a live alert says a flow exposed."""

CAPTURE_ENDS = ("stopped", "duration", "capture-failed")
"""How a live capture ended (``inputs.end``): SIGINT/SIGTERM, ``--duration``, or tcpdump ended, froze or lost
its interface before the stop (the reports are then from an incomplete capture; the ``capture-failed``
anomaly says why)."""

CONFIG_KINDS = ("nova", "nova-policy", "libvirtd", "qemu", "sshd", "authorized-keys", "ssh-private-key", "firewall")
"""Kinds of configuration file ``inspector config-audit`` reads (``config_files.kind``), found by name."""

ANOMALY_KINDS: dict[str, str] = {
    "truncated-last-record": "the file ends inside a record (the usual result of copying a capture that is "
                             "still being written)",
    "damaged-record-header": "an impossible pcap record length; the rest of the file cannot be resynchronised "
                             "and was not read",
    "damaged-block-header": "an impossible pcapng block length or byte-order magic; the rest of the file cannot "
                            "be resynchronised and was not read",
    "truncated-compressed-stream": "the gzip data ends before its end-of-stream marker (a `.gz` copied while still "
                                   "being written); the records it held were analysed",
    "damaged-compressed-stream": "the gzip data broke after some packets; the rest was not read",
    "read-error": "reading the file failed (an I/O error) after some packets; the rest was not read",
    "headers-cut-by-snaplen": "the snaplen ended inside the IP, transport or tunnel headers; the packet is "
                              "counted but not keyed to a flow",
    "malformed-ip-header": "an IP header with impossible lengths or version",
    "malformed-transport-header": "a TCP/UDP header with impossible lengths",
    "ip-fragment-not-reassembled": "non-first IP fragments (no ports to key on)",
    "malformed-tunnel-header": "a tunnel header (VXLAN, GENEVE, GRE, ERSPAN, MPLS, PPPoE, GTP-U, AYIYA ...) "
                               "recognised but with impossible lengths or version, or tunnels nested more than 4 "
                               "deep; the packet is counted but not keyed to a flow",
    "unsupported-link-type": "packets of a link type that is not decoded (a number libpcap does not document "
                             "as carrying IP, or private use); counted, not analysed",
    "link-type-without-ip": "packets of a link type that carries no IP (USB, Bluetooth, CAN, IEEE 802.15.4 ...); "
                            "the file is read and counted, nothing in it is analysed",
    "undeclared-interface": "a pcapng packet block naming an interface that was never described",
    "flow-key-collision": "two flows shared a 64-bit key hash (never seen in practice); those packets were not "
                          "counted",
    "kernel-drops": "`inspector live` only (input `live:IFACE`): packets the kernel capture buffer dropped "
                    "(tcpdump's count); the analysis misses them",
    "interface-drops": "`inspector live` only: growth of the interface's `rx_dropped` during the run (dropped by "
                       "the NIC or driver, possibly other traffic)",
    "capture-failed": "`inspector live` only: the capture ended before the sensor was stopped (tcpdump killed, "
                      "its interface deleted, an error) or tcpdump had to be killed at the stop (frozen); the "
                      "detail has tcpdump's exit and messages. The reports are from an incomplete capture",
    "capture-stalled": "`inspector live` only: the capture delivered nothing and tcpdump did not answer a request "
                       "for its counters within seconds while it was alive (frozen, e.g. SIGSTOP); counted once a "
                       "stall",
    "unread-at-stop": "`inspector live` only: packets the filter accepted that were still in the kernel capture "
                      "buffer when tcpdump stopped (the drain at the stop is bounded); the analysis misses them",
    "capture-process-failed": "`inspector live --workers N` only: a capture process failed or its tcpdump ended "
                              "before the sensor was stopped (the detail says which and why); the sensor stopped "
                              "there, and that process's partition of the traffic is missing from then on",
    "spool-resumed": "`inspector live --spool DIR --spool-resume` only: the ended flows of an earlier (killed or "
                     "finished) run spooled in DIR joined this run's reports; the flows that run had open, and "
                     "those that ended in its last seconds, are missing",
}
"""Anomaly kinds (``anomalies.kind``) and what each means."""

# ---------------------------------------------------------------- tables

FLOW_COLUMNS: Columns = {
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
    "protocol": ("category", f"protocol recognised from its framing ({', '.join(PROTOCOLS)}); empty when none"),
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
    "orig_analysed_bytes": ("int64", "originator payload bytes in the sampled windows (the rows of the windows table: every window of the first 1 MiB, then 8 per doubling), which the medians and printable share are computed on"),
    "resp_analysed_bytes": ("int64", "same for the responder"),
    "orig_windows": ("int64", "number of sampled windows (8 KiB head, then 64 KiB windows) of the originator"),
    "resp_windows": ("int64", "same for the responder"),
    "orig_covered_bytes": ("int64", "originator payload bytes the verdict's statistics covered: captured bytes that went through a window, every window labelled (random, compressed, plain), sampled or not; like orig_captured_bytes it counts a retransmitted byte again while its window is open, and it leaves out bytes that arrive after their window finished"),
    "resp_covered_bytes": ("int64", "same for the responder"),
    "orig_captured_bytes": ("int64", "originator payload bytes present in the capture (less than orig_bytes when a snaplen cut packets)"),
    "resp_captured_bytes": ("int64", "same for the responder"),
    "orig_missed_bytes": ("int64", "originator bytes never seen in gaps of the TCP sequence space, like Zeek's missed_bytes (0 for other protocols)"),
    "resp_missed_bytes": ("int64", "same for the responder"),
    "mid_stream": ("bool", "True when the capture holds no SYN for a TCP flow: it started before the capture"),
    "ip_version": ("int64", "4 or 6"),
    "vlan": ("Int64", "outermost 802.1Q/802.1ad VLAN id of the first packet (a tunnelled frame's when the outer frame has none); <NA> when untagged"),
    "tunnel": ("string", f"tunnel the first packet came in, the outermost when nested: {', '.join(TUNNELS[1:-1])} or {TUNNELS[-1]}; empty when captured directly. Addresses, ports and bytes are the inner packet's"),
    "tunnel_src": ("string", "outer source address of that tunnel in the first packet (mirror source, VTEP or GRE endpoint); empty without a tunnel or for one at the link layer (pppoe, mpls)"),
    "tunnel_dst": ("string", "outer destination address of that tunnel in the first packet (the collector for a mirror); empty without a tunnel"),
    "tunnel_id": ("Int64", "VXLAN or GENEVE VNI, GRE key, ERSPAN session id, outermost MPLS label, PPPoE session id or GTP-U TEID of that tunnel; <NA> without one"),
    "input": ("string", "the input file the flow was first seen in"),
}

WINDOW_COLUMNS: Columns = {
    "uid": ("string", "flow id (joins flows.uid)"),
    "direction": ("category", "orig or resp"),
    "window": ("int64", "window index in the direction's byte stream: 0 is the 8 KiB head, then 64 KiB windows"),
    "bytes": ("int64", "captured bytes in the window"),
    "entropy": ("float64", "Shannon entropy, bits per byte"),
    "chi2": ("float64", "chi-square against uniform bytes (255 degrees of freedom)"),
    "printable": ("float64", "share of printable bytes"),
    "label": ("category", "random, compressed or plain: see inspector.classify.statistics"),
}

EVIDENCE_COLUMNS: Columns = {
    "uid": ("string", "flow id (joins flows.uid)"),
    "direction": ("string", "orig, resp, or both (a TLS or SSH handshake merged from both sides)"),
    "event": ("string", "the migration event the flow belongs to (joins events.event); empty when none"),
    "protocol": ("string", "protocol the detector recognised"),
    "offset": ("int64", "where the evidence starts in that direction's reassembled stream head"),
    "proves": ("string", "cleartext (framing in clear), encrypted (validated TLS/SSH session) or nothing"),
    "evidence": ("string", "one line a reviewer reads: what was seen (never payload or credential values)"),
    "fields": ("object", "extracted fields: a dict per row (JSON values only); CSV and Parquet files hold it as "
                         "JSON text, which `inspector.load` parses back"),
}

EVENT_COLUMNS: Columns = {
    "event": ("string", "event id ('M' + number, in time order)"),
    "src_h": ("string", "source host (originator of the migration flows)"),
    "dst_h": ("string", "destination host"),
    "start": ("datetime64[ns, UTC]", "first packet of the event's flows"),
    "end": ("datetime64[ns, UTC]", "last packet of the event's flows"),
    "protection": ("string", "how guest data was protected on the wire (see inspector/events.py)"),
    "ram_bytes": ("int64", "bytes of the RAM/device-state channels (main, multifd, libvirt tunnel, TLS-wrapped migration)"),
    "ram_bytes_clear": ("int64", "of which on flows proven or judged cleartext"),
    "disk_bytes": ("int64", "bytes of the NBD disk flows"),
    "disk_bytes_clear": ("int64", "of which in clear"),
    "flows": ("int64", "number of flows in the event"),
    "uids": ("list", "the flows' uids (joins flows.uid)"),
    "channels": ("list", "the kinds of flows seen, e.g. ['main', '2 multifd', 'nbd', 'libvirtd']"),
}

FINDING_COLUMNS: Columns = {
    "finding": ("string", "finding id ('F' + number, most severe first)"),
    "rule": ("string", "id of the rule that matched, e.g. 'plaintext-migration' (see `inspector rules`)"),
    "severity": ("category", "ordered: info < low < medium < high < critical, so `findings[findings.severity >= "
                             "'high']` keeps high and critical"),
    "title": ("string", "one-line statement of what is wrong (or, for info, what protects)"),
    "risks": ("list", "risks realised: denial of service, data leakage, data manipulation, code injection"),
    "summary": ("string", "one line with the numbers: flows, hosts, bytes and pages exposed"),
    "evidence": ("string", "proof, one line per flow or event (newline-separated); wire strings are escaped"),
    "hosts": ("string", "host pairs involved, 'src -> dst' comma-separated (what `inspector diff` matches on); "
                        "host names for the configuration audit's `config-*` rules"),
    "uids": ("list", "the flows' uids (joins flows.uid)"),
    "events": ("list", "migration event ids (joins events.event)"),
    "bytes_exposed": ("int64", "payload bytes that crossed in clear on the flows of this finding (0 if none)"),
    "remediation": ("string", "concrete fix: configuration options, commands, or firewall rules (newline-separated steps)"),
    "references": ("string", "advisories and documents, comma-separated (e.g. OSSN-0089)"),
}

SECRET_COLUMNS: Columns = {
    "uid": ("string", "flow uid (joins flows.uid)"),
    "direction": ("string", "orig or resp"),
    "kind": ("string", f"{', '.join(SECRET_KINDS[:-1])} or {SECRET_KINDS[-1]}"),
    "ts": ("datetime64[ns, UTC]", "time of the packet that carried the match"),
    "offset": ("int64", "stream offset of the match in its direction (TCP), -1 when unknown"),
    "length": ("int64", "bytes matched"),
    "label": ("string", "what matched, without the secret: e.g. 'password = <12 bytes>'"),
    "excerpt": ("object", "bytes around the match, redacted: `Analysis.secrets` holds a note in their place, "
                          "`Analysis.secrets_raw()` the bytes (reports show them only with --show-payload)"),
}

SECRET_COUNT_COLUMNS: Columns = {
    "uid": ("string", "flow uid (joins flows.uid)"),
    "direction": ("string", "orig or resp"),
    "kind": SECRET_COLUMNS["kind"],
    "count": ("int64", "matches in this flow direction (exact; the secrets table keeps the first few)"),
}

BYTE_HISTOGRAM_COLUMNS: Columns = {
    "uid": ("string", "flow id (joins flows.uid); directions of watched flows that moved at least 256 KiB only"),
    "direction": ("string", "orig or resp"),
    "byte": ("int64", "byte value 0-255"),
    "count": ("int64", "occurrences in the reassembled probe regions of that direction (16 KiB at 1, 2, 4 MiB ...); "
                       "in its 16 KiB head when it moved less than 1 MiB (e.g. a compressed multifd channel)"),
}

INPUT_COLUMNS: Columns = {
    "file": ("string", "the capture file as given"),
    "format": ("string", "pcap or pcapng, with .gz when gzip'd"),
    "linktypes": ("string", "link types seen, comma-separated"),
    "packets": ("int64", "records read"),
    "captured_bytes": ("int64", "bytes captured"),
    "wire_bytes": ("int64", "bytes on the wire"),
    "truncated_packets": ("int64", "records captured shorter than on the wire (snaplen)"),
    "non_ip_packets": ("int64", "records that carry no IP packet"),
    "anomalies": ("int64", "anomalies counted in this file (see the anomalies table)"),
    "dropped_kernel": ("Int64", "`live:IFACE` only: packets the filter accepted that the kernel capture buffer had "
                                "no room for (tcpdump's final 'dropped by kernel'); <NA> when unknown (tcpdump "
                                "killed or frozen) and for a file"),
    "dropped_interface": ("Int64", "`live:IFACE` only: growth of the interface's rx_dropped over the run (dropped "
                                   "by the NIC, driver or backlog before any capture saw them; possibly other "
                                   "traffic); <NA> when unknown (the interface went away) and for a file"),
    "unread_at_stop": ("Int64", "`live:IFACE` only: packets the filter accepted that were neither dropped nor "
                                "analysed: still in the kernel buffer when tcpdump stopped (its 'received by "
                                "filter' minus 'dropped by kernel' minus packets); <NA> when unknown and for a "
                                "file. Packets that reached the interface and match the filter = packets + "
                                "dropped_kernel + dropped_interface + unread_at_stop"),
    "end": ("string", f"`live:IFACE` only: how the capture ended: {', '.join(CAPTURE_ENDS)} (see 'capture end' in "
                      "the vocabularies); empty for a file"),
}

ANOMALY_COLUMNS: Columns = {
    "file": ("string", "the capture file"),
    "kind": ("string", "anomaly kind (see 'anomaly kinds' in docs/schema.md)"),
    "count": ("int64", "how many times"),
    "detail": ("string", "what was seen"),
}

SCHEMAS: dict[str, Columns] = {
    "flows": FLOW_COLUMNS, "events": EVENT_COLUMNS, "findings": FINDING_COLUMNS, "secrets": SECRET_COLUMNS,
    "secret_counts": SECRET_COUNT_COLUMNS, "evidence": EVIDENCE_COLUMNS, "windows": WINDOW_COLUMNS,
    "byte_histograms": BYTE_HISTOGRAM_COLUMNS, "inputs": INPUT_COLUMNS, "anomalies": ANOMALY_COLUMNS,
}
"""Table name -> columns (dtype, meaning), in the order reports list them."""

CONFIG_HOST_COLUMNS: Columns = {
    "host": ("string", "host name: the sosreport's or /etc tree's hostname file, else the folder name"),
    "folder": ("string", "the host's configuration folder as given"),
    "addresses": ("list", "addresses the configuration gives the host (nova my_ip, live_migration_inbound_addr, "
                          "qemu migration_address, or the folder name when it is one); cross-checks match "
                          "migration events on them"),
    "protection": ("string", "how live migration would protect guest RAM by this configuration (a "
                             "``protection`` of events: TLS, SSH, libvirt tunnel over TLS, libvirt tunnel over "
                             "plain TCP or none)"),
    "migration_ports": ("string", "qemu.conf migration_port_min-migration_port_max (libvirt's default 49152-49215)"),
}

CONFIG_SETTING_COLUMNS: Columns = {
    "host": ("string", "host (joins config_hosts.host)"),
    "kind": ("string", f"kind of file: {', '.join(CONFIG_KINDS)}"),
    "file": ("string", "the file the value was read from; empty for a default"),
    "section": ("string", "INI section (nova.conf), Match block (sshd_config), chain or user; empty when none"),
    "key": ("string", "the setting audited (only these are read into tables: never passwords, transport_url "
                      "or connection strings)"),
    "value": ("string", "its effective value; credentials inside URIs are replaced by ***"),
    "source": ("string", "'set' when the file sets it, 'default' when the documented default applies"),
}

CONFIG_PROBLEM_COLUMNS: Columns = {
    "file": ("string", "the file or folder"),
    "problem": ("string", "why it was not (fully) read: missing, unreadable, malformed at line N ..."),
}

CONFIG_SCHEMAS: dict[str, Columns] = {
    "config_hosts": CONFIG_HOST_COLUMNS, "config_settings": CONFIG_SETTING_COLUMNS, "findings": FINDING_COLUMNS,
    "config_problems": CONFIG_PROBLEM_COLUMNS,
}
"""Tables of a configuration audit (``inspector.audit_config``); its findings share the analysis' columns."""

GROUPINGS = ("none", "file", "folder")
"""How input files make captures (``analyze(group_by=...)``, ``--group-by``):
all one capture, one per file, one per folder (a sensor's rotated files)."""

CATEGORIES: dict[str, tuple[str, ...]] = {
    "watch": ROLES, "verdict": VERDICTS, "orig_verdict": VERDICTS, "resp_verdict": VERDICTS,
    "protocol": ("",) + PROTOCOLS, "severity": SEVERITIES[::-1], "direction": DIRECTIONS,
    "label": WINDOW_LABELS, "protection": PROTECTIONS, "closed_by": CLOSED_BY,
}
"""Categories of the columns whose dtype is 'category' ('' in protocol: none recognised),
in ascending order for the ``ORDERED`` ones."""

ORDERED = frozenset({"severity"})
"""Categorical columns that compare by their order (``severity >= 'high'``)."""

LIST_COLUMNS = frozenset(name for columns in (*SCHEMAS.values(), *CONFIG_SCHEMAS.values())
                         for name, (dtype, _doc) in columns.items() if dtype == "list")
"""Columns holding a list of strings per row in the library's tables. Files: Parquet
holds lists, CSV the items joined with ', ' (``inspector.load`` splits them back on
','), JSON arrays (but ``events.channels`` stays the text of schema_version 1)."""

MISSING_WHEN_EMPTY = frozenset(c for c in FLOW_COLUMNS if c.startswith(("tls_", "ssh_")))
"""Text columns where missing (no handshake) differs from empty; CSV writes
both as an empty cell, so loading a CSV export maps empty back to missing."""

JSON_COLUMNS = frozenset({"fields"})
"""Columns holding a dict per row; files (CSV and Parquet exports, the live
spool) hold them as JSON text, exact both ways and readable by any tool."""

VOCABULARIES: dict[str, tuple[str, ...]] = {
    "verdict": VERDICTS, "window label": WINDOW_LABELS, "watch role": ROLES, "closed_by": CLOSED_BY,
    "protocol": PROTOCOLS, "proves": PROVES, "severity": SEVERITIES, "risk": RISKS, "protection": PROTECTIONS,
    "tunnel": TUNNELS[1:], "secret kind": SECRET_KINDS, "alert kind": ALERT_KINDS,
    "anomaly kind": tuple(ANOMALY_KINDS), "configuration file kind": CONFIG_KINDS,
    "capture end": CAPTURE_ENDS,
}
"""Every vocabulary by name, for the docs."""


def markdown() -> str:
    """The columns of every table, then every vocabulary, as Markdown (docs/schema.md)."""
    lines = []
    for title, columns in {**SCHEMAS, **{k: v for k, v in CONFIG_SCHEMAS.items() if k not in SCHEMAS}}.items():
        lines += [f"### {title}", "", "| column | dtype | meaning |", "|---|---|---|"]
        lines += [f"| `{name}` | {dtype} | {doc} |" for name, (dtype, doc) in columns.items()]
        lines.append("")
    lines += ["### vocabularies", "", "| vocabulary | values |", "|---|---|"]
    lines += [f"| {name} | " + ", ".join(f"`{v}`" for v in values) + " |" for name, values in VOCABULARIES.items()]
    lines += ["", "### anomaly kinds", "", "| kind | meaning |", "|---|---|"]
    lines += [f"| `{kind}` | {meaning} |" for kind, meaning in ANOMALY_KINDS.items()]
    lines.append("")
    return "\n".join(lines)
