"""The configuration checks, kept as data like ``inspector.findings.rules``:
one ``Rule`` per kind of finding, with the security guide's risks, a
concrete remediation and references; its matcher reads the hosts'
configuration (and, for the cross-checks, a capture analysis) and yields
one ``findings.rules.Match`` per thing to report."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from inspector.config.firewall import ANY
from inspector.config.host import NOVA_USERS, HostConfig
from inspector.findings.rules import Match, Rule
from inspector.schema import RISKS

if TYPE_CHECKING:
    from inspector.analysis import Analysis
    from inspector.config.discover import Problem

DOS, LEAK, TAMPER, INJECT = RISKS
GUIDE = "OpenStack Security Guide, 'Instance migration' (live migration in plaintext)"
NATIVE_TLS_DOC = "nova [libvirt] live_migration_with_native_tls / live_migration_scheme"
SSH_GUIDE = "OpenStack Security Guide, 'Instance migration' (nova_migration SSH user, migration wrapper)"
CLEAR_PROTECTIONS = ("none", "compressed only", "libvirt tunnel over plain TCP")
CLAIMED_SAFE = ("TLS", "libvirt tunnel over TLS", "SSH")
AUDIT_AGAIN = "Run `inspector config-audit` on the changed files again; the finding is gone once every host is fixed."
NATIVE_TLS = (
    "On every compute host, nova.conf `[libvirt] live_migration_with_native_tls = true` and "
    "`live_migration_scheme = tls`, with the x509 certificates in /etc/pki/qemu (ca-cert.pem, server-cert.pem, "
    "server-key.pem, client-cert.pem, client-key.pem) and /etc/pki/libvirt; restart nova-compute and libvirtd.",
    "Until then block TCP 49152-49261 between compute hosts (nft: `tcp dport 49152-49261 drop`; iptables: "
    "`-p tcp --dport 49152:49261 -j DROP`), or disable live migration in policy "
    "(`\"os_compute_api:os-migrate-server:migrate_live\": \"!\"`).",
)


@dataclass(frozen=True)
class Scope:
    """What the checks read: every host's configuration, the problems met reading it, maybe a capture analysis."""

    hosts: list[HostConfig]
    problems: list[Problem] = field(default_factory=list)
    analysis: Analysis | None = None

    @property
    def compute(self) -> list[HostConfig]:
        return [h for h in self.hosts if h.has_nova]


def _per_host(test: Callable[[HostConfig], str | None], what: str,
              hosts: Callable[[Scope], list[HostConfig]] = lambda s: s.compute) -> Callable[[Scope], Iterable[Match]]:
    """One match over every host whose ``test`` gives an evidence line."""
    def matches(scope: Scope) -> Iterable[Match]:
        hits = [(h.name, line) for h in hosts(scope) if (line := test(h))]
        if hits:
            yield Match((), f"{len(hits)} of {len(hosts(scope))} host(s): {what}", tuple(f"{name}: {line}" for name, line in hits), hosts=tuple(n for n, _ in hits))
    return matches


# ---------------------------------------------------------------- configuration checks


def _problems(scope: Scope) -> Iterable[Match]:
    problems = list(scope.problems) + [p for h in scope.hosts for p in h.problems]
    if problems:
        hosts = tuple(h.name for h in scope.hosts if h.problems)
        yield Match((), f"{len(problems)} file(s) or folder(s) not (fully) read: the audit of what they "
                          "hold is incomplete", tuple(f"{p.file}: {p.problem}" for p in problems), hosts=hosts)


def _in_clear(host: HostConfig) -> str | None:
    if host.protection not in CLEAR_PROTECTIONS:
        return None
    low, high = host.migration_ports
    how = (f"live_migration_tunnelled = true over {host.uri_scheme}: the libvirt tunnel on 16509 is plain TCP"
           if host.tunnelled else f"QEMU streams guest RAM over plain TCP to ports {low}-{high}")
    return (f"live_migration_with_native_tls = {host.nova_value('libvirt', 'live_migration_with_native_tls')}, "
            f"live_migration_tunnelled = {host.nova_value('libvirt', 'live_migration_tunnelled')} "
            f"({host.nova_files[-1]}): {how}")


def _ossn_0089(host: HostConfig) -> str | None:
    if not host.native_tls or host.uri_scheme != "tcp":
        return None
    uri = host.nova_value("libvirt", "live_migration_uri")
    scheme = host.nova_value("libvirt", "live_migration_scheme")
    said = f"live_migration_uri = {uri}" if uri else (f"live_migration_scheme = {scheme}" if scheme
                                                      else "live_migration_scheme and live_migration_uri unset")
    return (f"live_migration_with_native_tls = true but {said} ({host.nova_files[-1]}): nova connects to the "
            "destination over qemu+tcp:// (16509)")


def _tls_not_forced(host: HostConfig) -> str | None:
    if host.protection != "TLS" or host.qemu is None or host.qemu_value("migrate_tls_force") == 1:
        return None
    return (f"migrate_tls_force = {host.qemu_value('migrate_tls_force')} ({host.qemu_file or 'default'}): libvirt "
            "runs any migration asked without VIR_MIGRATE_TLS in clear")


def _peers_not_verified(host: HostConfig) -> str | None:
    lines = []
    if host.protection == "TLS" and host.qemu is not None and host.qemu_value("migrate_tls_x509_verify") == 0:
        lines.append(f"migrate_tls_x509_verify (or default_tls_x509_verify) = 0 in {host.qemu_file}: the migration "
                     "destination accepts any client")
    if host.libvirtd is not None and host.libvirtd_value("tls_no_verify_certificate") == 1 and (
            host.uri_scheme == "tls" or host.libvirtd_value("listen_tls") == 1):
        lines.append(f"tls_no_verify_certificate = 1 in {host.libvirtd_file}: libvirtd accepts TLS clients without a "
                     "valid certificate")
    return "; ".join(lines) or None


def _libvirtd_tcp_no_auth(host: HostConfig) -> str | None:
    if host.libvirtd is None or host.libvirtd_value("listen_tcp") != 1 or host.libvirtd_value("auth_tcp") != "none":
        return None
    return (f"listen_tcp = 1 and auth_tcp = \"none\" in {host.libvirtd_file}: anyone who reaches 16509 has full "
            "control of libvirt (start, stop, migrate, read guests)")


def _libvirt_hosts(scope: Scope) -> list[HostConfig]:
    return [h for h in scope.hosts if h.libvirtd is not None]


def _ports_open(scope: Scope) -> Iterable[Match]:
    """Migration range or libvirtd ports accepted from anywhere, or from networks holding no audited host's address."""
    addresses = [ipaddress.ip_address(a) for h in scope.hosts for a in h.addresses]
    hits = []
    for host in scope.hosts:
        for file, ruleset in host.firewalls:
            for port in host.checked_ports():
                beyond = [s for s in ruleset.sources_reaching(port) if _beyond(s, addresses)]
                if beyond:
                    hits.append((host.name, f"{host.name}: tcp/{port} accepted from {', '.join(beyond)} ({file}, "
                                            f"{ruleset.kind})"))
    if hits:
        yield Match((), f"{len(hits)} port check(s) open beyond the compute hosts' addresses", tuple(line for _, line in hits), hosts=tuple(dict.fromkeys(n for n, _ in hits)))


def _beyond(source: str, addresses: list) -> bool:
    if source == ANY:
        return True
    if source.startswith("via ") or not addresses:
        return False  # an interface, or no host address to compare with: the files do not tell
    try:
        network = ipaddress.ip_network(source, strict=False)
    except ValueError:
        return False  # a set name or a hostname: not judged
    return not any(a in network for a in addresses if a.version == network.version) and not network.is_loopback


def _ssh_unrestricted(scope: Scope) -> Iterable[Match]:
    """Keys of the nova users that run any command, or from anywhere; plus the
    unprotected private keys that open them (passwordless SSH between hosts)."""
    holders: dict[str, list[str]] = {}  # public key fingerprint -> hosts holding its private key with no passphrase
    for host in scope.hosts:
        for user, file, private in host.private_keys:
            if not private.encrypted and private.fingerprint:
                holders.setdefault(private.fingerprint, []).append(f"{host.name} ({file})")
    hits = []
    for host in scope.hosts:
        sshd = host.sshd.for_user if host.sshd else (lambda _user: {})
        for access in host.ssh_access:
            applied = sshd(access.user)
            for key in access.keys:
                missing = []
                if not key.command and not applied.get("forcecommand"):
                    missing.append("no command= and no ForceCommand: any command")
                if not key.sources and not (host.sshd and host.sshd.address_restricted(access.user)):
                    missing.append("no from=: from any address")
                if not key.restricted and access.user == "nova_migration":
                    missing.append("no restrict/no-pty: PTY and forwarding allowed")
                if missing:
                    opened = holders.get(key.fingerprint)
                    by = f"; its private key, without passphrase, is on {', '.join(opened)}" if opened else ""
                    hits.append((host.name, f"{host.name}: {access.file} line {key.line} ({access.user}, "
                                            f"{key.key_type} {key.fingerprint}): {'; '.join(missing)}{by}"))
    if hits:
        yield Match((), f"{len(hits)} key(s) let a host log in as {' or '.join(NOVA_USERS)} without restriction", tuple(line for _, line in hits), hosts=tuple(dict.fromkeys(n for n, _ in hits)))


def _policy(allows: Callable[[str], bool], what: str) -> Callable[[Scope], Iterable[Match]]:
    def test(host: HostConfig) -> str | None:
        found = host.migration_policy()
        if found and allows(found[1].strip()):
            return f"\"{found[0]}\": \"{found[1]}\" ({found[2]})"
        return None
    return _per_host(test, what, lambda scope: [h for h in scope.hosts if h.policy])


_COMPARED: dict[str, Callable[[HostConfig], object]] = {
    "migration protection": lambda h: h.protection,
    "libvirt connection (live_migration_scheme/uri)": lambda h: h.uri_scheme,
    "live_migration_with_native_tls": lambda h: h.native_tls,
    "live_migration_tunnelled": lambda h: h.tunnelled,
    "migration port range (qemu.conf)": lambda h: "{}-{}".format(*h.migration_ports) if h.qemu is not None else None,
    "migrate_tls_force": lambda h: h.qemu_value("migrate_tls_force") if h.qemu is not None else None,
    "libvirtd listen_tcp": lambda h: h.libvirtd_value("listen_tcp") if h.libvirtd is not None else None,
    "live-migration policy": lambda h: (h.migration_policy() or (None, None))[1],
}


def _disagree(scope: Scope) -> Iterable[Match]:
    if len(scope.compute) < 2:
        return
    lines = []
    for what, value_of in _COMPARED.items():
        by_value: dict[str, list[str]] = {}
        for host in scope.compute:
            value = value_of(host)
            if value is not None:
                by_value.setdefault(str(value), []).append(host.name)
        if len(by_value) > 1:
            lines.append(f"{what}: " + "; ".join(f"{v} on {', '.join(names)}" for v, names in by_value.items()))
    if lines:
        yield Match((), f"{len(lines)} setting(s) differ between compute "
                          "hosts: a migration takes the weaker side's protection", tuple(lines), hosts=tuple(h.name for h in scope.compute))


def _no_firewall(host: HostConfig) -> str | None:
    return None if host.firewalls else "no iptables-save, nft ruleset or rules file found"


def _protected(host: HostConfig) -> str | None:
    return f"{host.protection} ({host.nova_files[-1]})" if host.protection in CLAIMED_SAFE else None


# ---------------------------------------------------------------- cross-checks with the capture


def _events_of(scope: Scope, host: HostConfig):
    """The analysis' migration events this host took part in: by its addresses;
    for a host whose files name none, every event no other host's address explains."""
    events = scope.analysis.events if scope.analysis is not None else None
    if events is None or events.empty:
        return []
    addresses = host.addresses or [a for h in scope.hosts for a in h.addresses]
    known = events["src_h"].isin(addresses) | events["dst_h"].isin(addresses)
    return list(events[known if host.addresses else ~known].itertuples(index=False))


def _cross(test: Callable[[Scope, HostConfig, object], str | None], what: str) -> Callable[[Scope], Iterable[Match]]:
    """One match over every (host, event) pair where the wire contradicts the host's configuration."""
    def matches(scope: Scope) -> Iterable[Match]:
        hits = [(host, event, line) for host in scope.compute for event in _events_of(scope, host)
                if (line := test(scope, host, event))]
        if hits:
            events = tuple(dict.fromkeys(e.event for _, e, _ in hits))
            uids = tuple(dict.fromkeys(u for _, e, _ in hits for u in e.uids))
            exposed = sum(int(e.ram_bytes_clear) + int(e.disk_bytes_clear)
                          for e in {e.event: e for _, e, _ in hits}.values())
            yield Match(uids, f"{len(events)} migration event(s): {what}",
                        tuple(f"{h.name} / {e.event} {e.src_h} -> {e.dst_h}: {line}" for h, e, line in hits),
                        events, exposed, hosts=tuple(dict.fromkeys(h.name for h, _, _ in hits)))
    return matches


def _claims_encrypted(scope: Scope, host: HostConfig, event) -> str | None:
    if host.protection in CLAIMED_SAFE and event.protection in CLEAR_PROTECTIONS:
        return (f"configured {host.protection} ({host.nova_files[-1]}), the wire shows protection "
                f"'{event.protection}' ({', '.join(event.channels)}), {event.ram_bytes_clear:,} bytes of RAM in clear")
    return None


def _direct_flows(scope: Scope, event) -> list:
    assert scope.analysis is not None
    watch = scope.analysis.watch
    flows = scope.analysis.flows
    mine = flows[flows["uid"].isin(list(event.uids))]
    return [f for f in mine.itertuples(index=False)
            if int(f.resp_p) not in watch.libvirtd_ports and int(f.resp_p) not in watch.ssh_ports]


def _tunnel_bypassed(scope: Scope, host: HostConfig, event) -> str | None:
    if not host.tunnelled or host.native_tls:
        return None
    direct = _direct_flows(scope, event)
    if direct:
        return (f"live_migration_tunnelled = true ({host.nova_files[-1]}), yet {len(direct)} direct flow(s) to "
                + ", ".join(f"{f.resp_h}:{f.resp_p}" for f in direct[:4]))
    return None


MIGRATION_PROTOCOLS = ("qemu-migration", "qemu-multifd", "tls")


def _ports_differ(scope: Scope, host: HostConfig, event) -> str | None:
    if host.qemu is None:
        return None
    low, high = host.migration_ports
    outside = sorted({int(f.resp_p) for f in _direct_flows(scope, event)
                      if str(f.protocol) in MIGRATION_PROTOCOLS and not low <= int(f.resp_p) <= high})
    if outside:
        return (f"qemu.conf migration_port_min/max {low}-{high} ({host.qemu_file}), observed migration port(s) "
                + ", ".join(map(str, outside[:8])))
    return None


# ---------------------------------------------------------------- the table

CONFIG_RULES: tuple[Rule, ...] = (
    Rule("config-contradicted-by-traffic", "critical",
               "The configuration claims encrypted migration; the capture shows it in clear", RISKS,
               ("Believe the wire: the running services do not use the files audited (not restarted, another "
                "nova.conf, an old libvirt), or nova builds a plain URI (OSSN-0089).",
                "Restart nova-compute and libvirtd on both hosts, check `virsh -c qemu:///system domjobinfo` during "
                "a migration, then capture again: `inspector analyze CAPTURE --config HOSTS --fail-on high`.",
                NATIVE_TLS[0]),
               (GUIDE, "OSSN-0089", NATIVE_TLS_DOC), _cross(_claims_encrypted, "configured encrypted, seen in clear")),
    Rule("config-libvirtd-tcp-no-auth", "critical", "libvirtd listens on TCP without authentication",
               (DOS, LEAK, TAMPER, INJECT),
               ("libvirtd.conf: `listen_tcp = 0` (and `systemctl disable --now libvirtd-tcp.socket`; with socket "
                "activation the .socket unit decides), `listen_tls = 1` with x509 certificates.",
                "If TCP must stay: `auth_tcp = \"sasl\"` with GSSAPI or SCRAM in /etc/sasl2/libvirt.conf, and "
                "16509 reachable only from the compute hosts.", AUDIT_AGAIN),
               ("OSSN-0007", GUIDE), _per_host(_libvirtd_tcp_no_auth, "unauthenticated libvirtd TCP listener",
                                               _libvirt_hosts)),
    Rule("config-migration-in-clear", "high", "The configuration sends live migration in clear", RISKS,
               NATIVE_TLS + (AUDIT_AGAIN,), (GUIDE, "OSSN-0089", NATIVE_TLS_DOC),
               _per_host(_in_clear, "migration not encrypted by configuration")),
    Rule("config-native-tls-plain-uri", "high",
               "Native TLS is set but nova still connects over qemu+tcp:// (OSSN-0089)", (LEAK, TAMPER, INJECT),
               ("Set `[libvirt] live_migration_scheme = tls` next to `live_migration_with_native_tls = true` (and "
                "remove a `live_migration_uri` that says qemu+tcp://) on every compute host.",
                "Then `listen_tcp = 0` in libvirtd.conf so nothing can fall back to 16509.", AUDIT_AGAIN),
               ("OSSN-0089", NATIVE_TLS_DOC), _per_host(_ossn_0089, "native TLS with a plain TCP libvirt URI")),
    Rule("config-ssh-unrestricted", "high", "Passwordless SSH between compute hosts is not restricted",
               (DOS, LEAK, TAMPER, INJECT),
               ("Give migrations a dedicated `nova_migration` user whose key line reads `restrict,from=\"<migration "
                "network>\",command=\"/bin/nova-migration-wrapper\" ssh-ed25519 ...`, or in sshd_config "
                "`Match User nova_migration Address <migration network>` with `ForceCommand "
                "/bin/nova-migration-wrapper` (the wrapper allows only `nc -U` on the libvirt socket).",
                "Remove the `nova` user's unrestricted keys (and its unprotected private keys) from every "
                "compute host.", AUDIT_AGAIN),
               (SSH_GUIDE,), _ssh_unrestricted),
    Rule("config-policy-allows-everyone", "high", "Any user may live-migrate instances (policy)",
               (DOS,),
               ("policy.yaml: `\"os_compute_api:os-migrate-server:migrate_live\": \"rule:context_is_admin\"` (the "
                "default), or `\"!\"` to disable live migration until it is encrypted.", AUDIT_AGAIN),
               (GUIDE, "nova policy os_compute_api:os-migrate-server:migrate_live"),
               _policy(lambda check: check in ("", "@"), "live migration allowed to every user")),
    Rule("config-tunnelled-but-direct", "high",
               "Tunnelled migration is configured; the capture shows direct QEMU connections", RISKS,
               ("Either the tunnel is not in use (nova-compute not restarted, a manual `virsh migrate` without "
                "--tunnelled) or another migration path exists: find the flows' source, then prefer native TLS.",
                NATIVE_TLS[0]),
               (GUIDE, NATIVE_TLS_DOC), _cross(_tunnel_bypassed, "tunnelled configured, direct flows seen")),
    Rule("config-tls-not-forced", "medium", "Native TLS is not enforced by libvirt (migrate_tls_force = 0)",
               (LEAK, TAMPER),
               ("qemu.conf: `migrate_tls_force = 1` so libvirt refuses any migration without TLS; restart "
                "libvirtd.", AUDIT_AGAIN),
               ("libvirt qemu.conf migrate_tls_force", NATIVE_TLS_DOC), _per_host(_tls_not_forced, "TLS not forced")),
    Rule("config-tls-peer-not-verified", "medium", "TLS peers are not verified", (TAMPER, INJECT),
               ("qemu.conf: `migrate_tls_x509_verify = 1` (or `default_tls_x509_verify = 1`) and client "
                "certificates in /etc/pki/qemu; libvirtd.conf: remove `tls_no_verify_certificate = 1`.",
                AUDIT_AGAIN),
               ("libvirt qemu.conf default_tls_x509_verify", NATIVE_TLS_DOC),
               _per_host(_peers_not_verified, "TLS without peer verification",
                         lambda s: [h for h in s.hosts if h.has_nova or h.libvirtd is not None])),
    Rule("config-ports-open", "medium", "Migration or libvirtd ports open beyond the migration network",
               (DOS, LEAK, TAMPER, INJECT),
               ("Accept TCP 49152-49261 and 16509/16514 only from the migration network, drop the rest: nft "
                "`ip saddr <migration network> tcp dport { 16514, 49152-49261 } accept` then "
                "`tcp dport { 16509, 16514, 49152-49261 } drop`; iptables `-A INPUT -s <net> -p tcp -m multiport "
                "--dports 16514,49152:49261 -j ACCEPT` then the same without -s and `-j DROP`.", AUDIT_AGAIN),
               (GUIDE,), _ports_open),
    Rule("config-hosts-disagree", "medium", "Compute hosts are configured differently for migration",
               (LEAK, TAMPER),
               ("Apply one migration configuration to every compute host (the strongest: native TLS, scheme tls, "
                "migrate_tls_force = 1) from the deployment tool, not by hand.", AUDIT_AGAIN),
               (GUIDE,), _disagree),
    Rule("config-ports-differ-from-traffic", "medium",
               "Migration ports seen on the wire differ from qemu.conf's range", (DOS, LEAK),
               ("The running libvirt uses another qemu.conf (or an older default): align `migration_port_min/max` "
                "with the firewall rules and restart libvirtd; analyse with the configured range "
                "(`--migration-ports`).",),
               ("libvirt qemu.conf migration_port_min/max",),
               _cross(_ports_differ, "migration ports outside the configured range")),
    Rule("config-file-problem", "low", "Configuration files could not be read", (),
               ("Give the audit readable copies of the files named (sosreport, or `tar` of /etc/nova, /etc/libvirt, "
                "/etc/ssh, the nova users' .ssh and `iptables-save`/`nft list ruleset` output).",),
               (), _problems),
    Rule("config-no-firewall-rules", "info", "No firewall rules to check", (),
               ("Add `iptables-save > iptables-save` or `nft list ruleset > nft_list_ruleset` of each compute host "
                "to its folder (a sosreport has them) to check the migration ports.",),
               (GUIDE,), _per_host(_no_firewall, "firewall not audited")),
    Rule("config-migration-disabled", "info", "Live migration is disabled by policy", (),
               ("Nothing to fix while migration stays disabled.",), (GUIDE,),
               _policy(lambda check: check == "!", "live migration disabled by policy")),
    Rule("config-migration-protected", "info", "The configuration protects live migration", (),
               ("Nothing to fix in the files; confirm on the wire with `inspector analyze CAPTURE --config HOSTS`.",),
               (NATIVE_TLS_DOC,), _per_host(_protected, "migration encrypted by configuration")),
)
