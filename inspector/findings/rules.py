"""The rules, kept as data: one ``Rule`` row per kind of finding.

A row says how bad the finding is, which risks of the security guide it
realises, how to fix it and where to read more; its matcher reads the
analysis (``Facts``) and yields one ``Match`` per thing to report (an
event, or the flows that share the problem). The engine turns matches into
the findings table; ``inspector rules`` prints this table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from inspector.findings.facts import FLOW_LINE_COLUMNS, LINE_CHUNK, Facts, flow_line, flow_lines, pages
from inspector.schema import CLEAR, RISKS
from inspector.tables import python_values, rows_of
from inspector.units import flow_endpoints, human_bytes

DOS, LEAK, TAMPER, INJECT = RISKS
GUIDE = "OpenStack Security Guide, 'Instance migration' (live migration in plaintext)"
NATIVE_TLS_DOC = "nova [libvirt] live_migration_with_native_tls / live_migration_scheme"
CHECK_AGAIN = ("Re-capture a migration and run `inspector analyze CAPTURE --json after.json --fail-on high`; "
               "`inspector diff before.json after.json` lists this finding as fixed.")
NATIVE_TLS = (
    "Enable QEMU native TLS on every compute host: nova.conf `[libvirt] live_migration_with_native_tls = true`, "
    "with the libvirt/QEMU x509 certificates in /etc/pki/qemu (ca-cert.pem, server-cert.pem, server-key.pem, "
    "client-cert.pem, client-key.pem) and `default_tls_x509_verify = 1` in /etc/libvirt/qemu.conf.",
    "OSSN-0089 pitfall: set `[libvirt] live_migration_scheme = tls` as well. Without it nova still reaches the "
    "destination libvirtd over plain qemu+tcp:// (16509) and the migration can run in clear although native "
    "TLS looks configured.",
    "Until then, block TCP 49152-49261 between compute hosts (nft: `tcp dport 49152-49261 drop`; iptables: "
    "`-p tcp --dport 49152:49261 -j DROP`) so an unprotected migration fails instead of leaking, or disable "
    "live migration in policy (`os_compute_api:os-migrate-server:migrate_live: '!'`).",
)


@dataclass(frozen=True)
class Match:
    """One thing a rule found: the flows and events, the numbers, the proof."""

    uids: tuple[str, ...]
    summary: str
    evidence: tuple[str, ...]
    events: tuple[str, ...] = ()
    bytes_exposed: int = 0
    hosts: tuple[str, ...] = ()  # what it names (config audit: host names); empty: its flows' host pairs


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    title: str
    risks: tuple[str, ...]
    remediation: tuple[str, ...]
    references: tuple[str, ...]
    matches: Callable[[Any], Iterable[Match]]  # over Facts (an analysis) or a config Scope (inspector.config)


# ---------------------------------------------------------------- matchers

PROTECTED = ("TLS", "libvirt tunnel over TLS", "SSH")


def _events(protection: str) -> Callable[[Facts], Iterable[Match]]:
    """One match per migration event with this protection."""
    def matches(facts: Facts) -> Iterable[Match]:
        if facts.events.empty:  # most captures: filtering an empty table still costs ~2 ms a rule
            return
        events = facts.events[facts.events["protection"] == protection]
        facts.rows([uid for uids in events["uids"] for uid in uids])  # every event's flows in one read
        for event in events.itertuples(index=False):
            flows = facts.event_flows(event)
            clear = int(event.ram_bytes_clear)  # disk bytes in clear are nbd-disk-in-clear's
            if protection in PROTECTED:
                # cleartext legs of an SSH tunnel are loopback: they never leave their hosts
                local = f" ({human_bytes(clear)} in clear on loopback legs inside the hosts)" if clear else ""
                moved, clear = f"RAM {human_bytes(int(event.ram_bytes))} carried encrypted{local}", 0
            else:
                moved = f"RAM {pages(int(event.ram_bytes_clear))} in clear"
            if event.disk_bytes:
                moved += f", disk {human_bytes(int(event.disk_bytes_clear))} of {human_bytes(int(event.disk_bytes))} in clear"
            summary = (f"migration {event.event} {event.src_h} -> {event.dst_h} at {event.start:%Y-%m-%d %H:%M:%S} "
                       f"({', '.join(event.channels)}): {moved}")
            lines = [flow_line(f) for f in flows] + _guest_details(facts, flows)
            yield Match(tuple(f.uid for f in flows), summary, tuple(lines), (event.event,), clear)
    return matches


def _guest_details(facts: Facts, flows: list) -> list[str]:
    """What the detectors read of the guest: machine, RAM blocks, pages seen."""
    lines = []
    for flow in flows:
        for fields in facts.fields.get((flow.uid, "qemu-migration"), []):
            if fields.get("machine") or fields.get("pages") or fields.get("zero_pages"):
                lines.append(
                    f"{flow.uid} at offset {fields['offset']}: QEMU stream"
                    + (f", machine {fields['machine']}" if fields.get("machine") else "")
                    + (f", RAM blocks {', '.join(fields['ram_blocks'][:4])}" if fields.get("ram_blocks") else "")
                    + f"; in the regions read: {fields.get('pages', 0)} PAGE records "
                      f"({human_bytes(fields.get('guest_bytes', 0))} of guest memory readable), "
                      f"{fields.get('zero_pages', 0)} ZERO, {fields.get('xbzrle_pages', 0)} XBZRLE")
        for fields in facts.fields.get((flow.uid, "qemu-multifd"), []):
            if fields.get("normal_pages"):
                lines.append(f"{flow.uid} at offset {fields['offset']}: multifd channel "
                             f"{fields.get('channel_id', '?')}, {fields['normal_pages']} pages, compression "
                             f"{fields.get('compression') or 'none'}")
    return lines


def _orphan_migration_flows(facts: Facts) -> Iterable[Match]:
    """Cleartext bulk on migration ports that no event explains."""
    f = facts.flows
    orphans = f[(f["watch"] == "migration") & f["verdict"].isin(CLEAR) & (f["event"] == "")]
    if len(orphans):
        total = int((orphans["orig_bytes"] + orphans["resp_bytes"]).sum())
        yield Match(tuple(python_values(orphans["uid"])), f"{len(orphans)} flow(s) on migration ports carry {human_bytes(total)} "
                    "in clear outside any recognised migration", flow_lines(orphans),
                    bytes_exposed=total)


def _nbd_in_clear(facts: Facts) -> Iterable[Match]:
    flows = facts.clear_flows("nbd")
    if not len(flows):
        return
    lines, total = [], 0
    for flow in flows.itertuples(index=False):
        total += int(flow.orig_bytes + flow.resp_bytes)
        lines.append(flow_line(flow))
        for fields in facts.fields.get((flow.uid, "nbd"), []):
            if fields.get("write_bytes"):
                lines.append(f"{flow.uid}: NBD export {fields.get('export') or '(default)'}, "
                             f"{human_bytes(fields['write_bytes'])} of WRITE data read in the sampled regions, "
                             f"STARTTLS {'requested' if fields.get('starttls') else 'not requested'}")
    events = tuple(sorted({e for e in flows["event"] if e}))
    yield Match(tuple(flows["uid"]), f"{len(flows)} NBD flow(s): {human_bytes(total)} of disk traffic in clear",
                tuple(lines), events, total)


def _libvirt_rpc_in_clear(facts: Facts) -> Iterable[Match]:
    flows = facts.clear_flows("libvirt-rpc")
    if not len(flows):
        return
    lines = []
    for flow in flows.itertuples(index=False):
        lines.append(flow_line(flow))
        calls = Counter()
        sasl = False
        for fields in facts.fields.get((flow.uid, "libvirt-rpc"), []):
            calls.update(fields.get("procedures") or {})
            sasl |= bool(fields.get("sasl"))
        auth = ("SASL authentication seen, but the messages after it are readable (no SASL security layer)"
                if sasl else "no SASL exchange: the client was let in without credentials (auth none)"
                if "connect_open" in calls else "authentication not seen")
        lines.append(f"{flow.uid}: {auth}; procedures {', '.join(sorted(calls)[:8]) or 'none seen'}")
    yield Match(tuple(flows["uid"]), f"{len(flows)} libvirt RPC connection(s) readable on the wire "
                f"({', '.join(sorted({str(p) for p in flows['resp_p']}))})", tuple(lines),
                tuple(sorted({e for e in flows["event"] if e})))


WEAK_VERSIONS = ("SSL 3.0", "TLS 1.0", "TLS 1.1")
WEAK_CIPHER_PARTS = ("NULL", "EXPORT", "RC4", "_DES_", "3DES", "DES_CBC", "anon", "MD5")


def _weak_tls(facts: Facts) -> Iterable[Match]:
    f = facts.flows
    tls = f[f["tls_version"].notna() | f["tls_cipher"].notna()]
    if tls.empty:
        return
    weak = []
    for flow in tls.itertuples(index=False):
        version, cipher = str(flow.tls_version or ""), str(flow.tls_cipher or "")
        problems = ([f"version {version}"] if version in WEAK_VERSIONS else []) + \
            ([f"cipher {cipher}"] if any(p in cipher for p in WEAK_CIPHER_PARTS) else [])
        if problems:
            weak.append((flow, problems))
    if weak:
        yield Match(tuple(fl.uid for fl, _ in weak), f"{len(weak)} TLS flow(s) below TLS 1.2 or with weak ciphers",
                    tuple(f"{fl.uid} {flow_endpoints(fl)}: {', '.join(p)}" for fl, p in weak),
                    tuple(sorted({fl.event for fl, _ in weak if fl.event})))


def _api_credentials(facts: Facts) -> Iterable[Match]:
    flows = facts.clear_flows("http")
    hits = []
    for flow in flows.itertuples(index=False):
        kinds = Counter()
        for fields in facts.fields.get((flow.uid, "http"), []):
            kinds["X-Auth-Token header"] += len(fields.get("x_auth_token") or [])
            kinds["X-Subject-Token header"] += len(fields.get("x_subject_token") or [])
            kinds["Authorization header"] += len(fields.get("authorization") or [])
            if fields.get("password_in_body"):
                kinds[f"password in JSON body ({', '.join(fields.get('password_keys') or [])})"] += 1
        kinds = +kinds
        if kinds:
            network = " (internal API network)" if flow.watch == "internal-api" else ""
            hits.append((flow, f"{flow.uid} {flow_endpoints(flow)}{network}: "
                               + ", ".join(f"{k} x{n}" for k, n in kinds.items())))
    if hits:
        yield Match(tuple(fl.uid for fl, _ in hits), f"{len(hits)} HTTP flow(s) carry API credentials in clear "
                    "(values not shown)", tuple(line for _, line in hits))


HTTP_CREDENTIAL_KINDS = ("token", "basic-auth", "password")


def _secrets(facts: Facts) -> Iterable[Match]:
    """Secrets in cleartext payload, but for HTTP credentials (api-credentials-in-clear)."""
    f, e = facts.flows, facts.events
    http = set(f.loc[f["protocol"] == "http", "uid"])
    # the cleartext legs of an SSH-tunnelled migration are loopback, inside the hosts
    protected = set(f.loc[f["event"].isin(e.loc[e["protection"].isin(PROTECTED), "event"]), "uid"])

    def reported(table: pd.DataFrame) -> pd.DataFrame:
        return table[~(table["uid"].isin(http) & table["kind"].isin(HTTP_CREDENTIAL_KINDS))
                     & ~table["uid"].isin(protected)]

    counts, rows = reported(facts.secret_counts), reported(facts.secrets)
    if counts.empty:
        return
    kinds = counts.groupby("kind")["count"].sum().sort_values(ascending=False)
    uids = tuple(dict.fromkeys(map(str, python_values(counts["uid"]))))
    lines = [f"{row.uid} {row.direction} at offset {row.offset}: {row.kind}: {row.label}"
             for start in range(0, len(rows), LINE_CHUNK)  # 134 k secrets as rows at once: ~40 MB
             for row in rows_of(rows.iloc[start : start + LINE_CHUNK], ["uid", "direction", "offset", "kind", "label"])]
    if int(kinds.sum()) > len(rows):
        lines.append(f"(first {len(rows)} of {int(kinds.sum())} matches listed; every match is counted)")
    events = facts.events_of(uids)
    yield Match(uids, "secrets readable in cleartext payload: "
                + ", ".join(f"{n:,} {k}" for k, n in kinds.items()), tuple(lines), events)


def _service_in_clear(protocol: str, what: str) -> Callable[[Facts], Iterable[Match]]:
    def matches(facts: Facts) -> Iterable[Match]:
        flows = facts.clear_flows(protocol)
        if len(flows):
            total = int((flows["orig_bytes"] + flows["resp_bytes"]).sum())
            yield Match(tuple(python_values(flows["uid"])), f"{len(flows)} {what} connection(s) without TLS, "
                        f"{human_bytes(total)} in clear", flow_lines(flows),
                        bytes_exposed=total)
    return matches


API_PROTOCOLS = ("http", "amqp", "mysql")


def _migration_on_api_network(facts: Facts) -> Iterable[Match]:
    """Migration flows between hosts of the named internal API network(s), or,
    when none is named, between hosts that also exchange API traffic."""
    if facts.events.empty:
        return
    f = facts.flows
    api_hosts = set(f.loc[f["protocol"].isin(API_PROTOCOLS) | (f["watch"] == "internal-api"), "orig_h"]) | \
        set(f.loc[f["protocol"].isin(API_PROTOCOLS) | (f["watch"] == "internal-api"), "resp_h"])
    for event in facts.events.itertuples(index=False):
        if facts.watch.internal_nets:
            shared = facts.in_internal_nets(event.src_h) or facts.in_internal_nets(event.dst_h)
            why = "its hosts are on the internal API network " + ", ".join(map(str, facts.watch.internal_nets))
        else:
            shared = event.src_h in api_hosts or event.dst_h in api_hosts
            why = "its hosts also exchange API traffic (HTTP, AMQP or MySQL) on the same addresses"
        if shared and not (event.src_h.startswith("127.") and event.dst_h.startswith("127.")):
            channels = ", ".join(event.channels)
            yield Match(tuple(event.uids), f"migration {event.event} {event.src_h} -> {event.dst_h}: {why}",
                        (f"{event.event}: {channels}, protection {event.protection}",), (event.event,))


NETWORK_LAYER = {"esp": "IPsec ESP", "wireguard": "WireGuard", "openvpn": "OpenVPN"}
"""Protocols that encrypt everything between two hosts, by the name a finding gives them."""


def _network_layer_encryption(facts: Facts) -> Iterable[Match]:
    """One match per host pair whose traffic crosses inside ESP, WireGuard or OpenVPN
    (proven encrypted), when no migration port between them was seen in clear:
    a migration between them is then protected whatever QEMU and libvirt do."""
    f = facts.flows
    sealed = f[f["protocol"].isin(list(NETWORK_LAYER)).fillna(False).to_numpy(dtype=bool)
               & (f["verdict"] == "encrypted").to_numpy(dtype=bool)]
    if sealed.empty:
        return
    clear = f[(f["watch"] == "migration").to_numpy(dtype=bool) & f["verdict"].isin(CLEAR).to_numpy(dtype=bool)]
    exposed = {frozenset(pair) for pair in zip(python_values(clear["orig_h"]), python_values(clear["resp_h"]))}
    pairs: dict[frozenset, list] = {}
    for flow in rows_of(sealed, FLOW_LINE_COLUMNS):
        pairs.setdefault(frozenset((flow.orig_h, flow.resp_h)), []).append(flow)
    for pair, flows in sorted(pairs.items(), key=lambda item: sorted(item[0])):
        if pair in exposed:
            continue
        a, b = sorted(pair) if len(pair) == 2 else (next(iter(pair)),) * 2
        names = ", ".join(sorted({NETWORK_LAYER[str(flow.protocol)] for flow in flows}))
        total = sum(int(flow.orig_bytes + flow.resp_bytes) for flow in flows)
        yield Match(tuple(flow.uid for flow in flows),
                    f"traffic between {a} and {b} is encrypted at the network layer ({names}): {len(flows)} "
                    f"flow(s), {human_bytes(total)}; no migration port seen in clear between them",
                    tuple(flow_line(flow) for flow in flows), facts.events_of([flow.uid for flow in flows]))


# ---------------------------------------------------------------- the table

RULES: tuple[Rule, ...] = (
    Rule("plaintext-migration", "critical", "Live migration sends guest RAM in clear",
         RISKS, NATIVE_TLS + (CHECK_AGAIN,), (GUIDE, "OSSN-0089", NATIVE_TLS_DOC), _events("none")),
    Rule("nbd-disk-in-clear", "critical", "Block migration sends guest disk data over NBD in clear",
         RISKS,
         ("With `live_migration_with_native_tls = true` (and `live_migration_scheme = tls`) libvirt runs the NBD "
          "disk copy over TLS too; or avoid disk copies with shared storage (Ceph RBD, NFS over a protected "
          "network) and `block_migration=False`.", NATIVE_TLS[2], CHECK_AGAIN),
         (GUIDE, NATIVE_TLS_DOC), _nbd_in_clear),
    # multifd zlib/zstd and XBZRLE are documented formats: anyone on the path can decompress and alter them
    Rule("compressed-cleartext-migration", "high", "Live migration is compressed, not encrypted",
         RISKS,
         NATIVE_TLS + (CHECK_AGAIN,),
         (GUIDE, "OSSN-0089", NATIVE_TLS_DOC), _events("compressed only")),
    Rule("libvirt-tunnel-plain-tcp", "high", "Tunnelled migration runs over plain TCP: 'tunnelled' is not encrypted",
         RISKS,
         ("A libvirt tunnel is only as protected as the libvirtd connection: use `[libvirt] live_migration_scheme = tls` "
          "(qemu+tls://, port 16514, certificates in /etc/pki/libvirt and /etc/pki/CA/cacert.pem) or `ssh`.",
          "Better, on current releases: `live_migration_tunnelled = false` with `live_migration_with_native_tls = true`.",
          "Disable the plain listener: `listen_tcp = 0` in libvirtd.conf (or stop libvirtd-tcp.socket).", CHECK_AGAIN),
         (GUIDE, "OSSN-0007", NATIVE_TLS_DOC), _events("libvirt tunnel over plain TCP")),
    Rule("cleartext-on-migration-ports", "high", "Cleartext traffic on the migration port range",
         (LEAK, TAMPER, INJECT),
         ("Identify the programs behind these flows; if they are migrations the detectors did not recognise, the "
          "migration fixes apply (native TLS).", NATIVE_TLS[2]), (GUIDE,), _orphan_migration_flows),
    Rule("plain-libvirt-rpc", "high", "libvirt RPC readable on the network (unencrypted libvirtd listener)",
         (DOS, TAMPER, INJECT),
         ("Set `listen_tcp = 0` (16509) in /etc/libvirt/libvirtd.conf (or disable the libvirtd-tcp.socket unit) and use "
          "`listen_tls = 1` (16514) with x509 certificates, or qemu+ssh://.",
          "If TCP must stay: `auth_tcp = \"sasl\"` with a mechanism that gives a security layer (GSSAPI, or "
          "scram-sha-256 over TLS) in /etc/sasl2/libvirt.conf, and restrict 16509 to the compute hosts.",
          CHECK_AGAIN),
         ("OSSN-0007", GUIDE), _libvirt_rpc_in_clear),
    Rule("api-credentials-in-clear", "high", "API credentials cross the network in clear",
         (LEAK, TAMPER),
         ("Serve every API endpoint over TLS (haproxy or Apache mod_ssl in front of each service) and register "
          "https endpoints in the Keystone catalog; set `[keystone_authtoken] cafile` and `insecure = false`.",
          "Treat the exposed credentials as compromised: revoke the tokens (`openstack token revoke`), change "
          "the passwords."),
         ("OpenStack Security Guide, 'Secure communication' (TLS for API endpoints)",), _api_credentials),
    Rule("secrets-in-cleartext", "high", "Secrets readable in cleartext payload",
         (LEAK,),
         ("Rotate every secret listed (keys, passwords, tokens), then remove the cleartext channel that carried "
          "it (see the other findings for these flows).",),
         (GUIDE,), _secrets),
    Rule("weak-tls", "medium", "TLS below 1.2 or with weak ciphers",
         (LEAK, TAMPER),
         ("libvirt/QEMU: `tls_priority = \"@LIBVIRT,SYSTEM:-VERS-TLS1.0:-VERS-TLS1.1\"` in libvirtd.conf and "
          "qemu.conf; API servers: TLS 1.2+ with AEAD ciphers (e.g. Mozilla 'intermediate').",),
         ("OpenStack Security Guide, 'TLS and SSL'",), _weak_tls),
    Rule("amqp-without-tls", "medium", "Message queue (AMQP) traffic without TLS", (LEAK, TAMPER),
         ("`[oslo_messaging_rabbit] ssl = true` with `ssl_ca_file`, transport_url on port 5671; in rabbitmq.conf "
          "`listeners.ssl.default = 5671` and `listeners.tcp = none`.",),
         ("OpenStack Security Guide, 'Messaging security'",), _service_in_clear("amqp", "AMQP")),
    Rule("mysql-without-tls", "medium", "Database (MySQL/MariaDB) traffic without TLS", (LEAK, TAMPER),
         ("Append `?ssl_ca=/etc/mysql/ca.pem` (pymysql) to `[database] connection` and set "
          "`require_secure_transport = ON` on the server.",),
         ("OpenStack Security Guide, 'Database transport security'",), _service_in_clear("mysql", "MySQL")),
    Rule("migration-on-api-network", "medium", "Migration traffic shares the internal API network",
         (DOS, LEAK),
         ("Move migrations to a dedicated network: `[libvirt] live_migration_inbound_addr = <address on the "
          "migration network>` on each compute host, and allow 49152-49261 only on that network.",),
         (GUIDE,), _migration_on_api_network),
    Rule("unknown-migration-protection", "medium", "Migration protection could not be established",
         (LEAK,),
         ("Capture the whole migration with a full snaplen (e.g. `tcpdump -s 0`), then analyse again.",),
         (GUIDE,), _events("unknown")),
    Rule("tls-protected-migration", "info", "Live migration is protected by TLS", (),
         ("Nothing to fix. Keep `live_migration_with_native_tls` (or the TLS tunnel) and check certificates "
          "are verified (`default_tls_x509_verify = 1`).",), (NATIVE_TLS_DOC,), _events("TLS")),
    Rule("tls-tunnelled-migration", "info", "Tunnelled migration runs over libvirt TLS", (),
         ("Nothing to fix. Native TLS (`live_migration_with_native_tls`) avoids the tunnel's extra copies.",),
         (NATIVE_TLS_DOC,), _events("libvirt tunnel over TLS")),
    Rule("ssh-tunnelled-migration", "info", "Live migration is carried inside SSH", (),
         ("Nothing to fix on the wire. Lock the SSH access down: a dedicated `nova_migration` user, keys "
          "restricted to the compute network, and a command wrapper.",), (GUIDE,), _events("SSH")),
    Rule("network-layer-encryption", "info", "Traffic between hosts is encrypted at the network layer (IPsec, WireGuard, OpenVPN)",
         (),
         ("Nothing to fix on the wire between these hosts. Check that the IPsec policy or WireGuard allowed-ips "
          "cover the migration network of every compute host pair (a pair outside the tunnel shows its migration "
          "ports in clear), and keep QEMU native TLS where hosts may migrate outside it.",),
         (GUIDE, "RFC 4303 (IPsec ESP)", "WireGuard whitepaper"), _network_layer_encryption),
)
