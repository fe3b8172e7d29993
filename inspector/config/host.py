"""One host's configuration, read and reduced to what the audit judges:
the effective migration settings (defaults where a file leaves them out),
the SSH access of the nova users and the firewall's input rules.

Only the audited keys are kept; everything else a file holds (passwords,
transport_url, database connection strings) is parsed and dropped.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from inspector.config.discover import HostFiles, Problem, compute_nova_conf
from inspector.config.firewall import Ruleset, parse_ruleset
from inspector.config.parsers import (
    Malformed,
    parse_libvirt_conf,
    parse_oslo_ini,
    parse_policy,
)
from inspector.config.ssh import (
    AuthorizedKey,
    PrivateKey,
    SshdConfig,
    parse_authorized_keys,
    parse_private_key,
    parse_sshd_config,
)

NOVA_DEFAULTS = {  # nova 26 (Zed) option defaults, as its shipped nova.conf documents them
    ("libvirt", "live_migration_with_native_tls"): "false",
    ("libvirt", "live_migration_tunnelled"): "false",
    ("libvirt", "live_migration_scheme"): "",
    ("libvirt", "live_migration_uri"): "",
    ("libvirt", "live_migration_inbound_addr"): "",
    ("libvirt", "live_migration_permit_post_copy"): "false",
    ("libvirt", "virt_type"): "kvm",
    ("DEFAULT", "my_ip"): "",
}
LIBVIRTD_DEFAULTS: dict[str, int | str] = {  # libvirtd.conf's documented defaults (libvirt 9.0)
    "listen_tcp": 0, "listen_tls": 1, "auth_tcp": "sasl", "auth_tls": "none", "tls_no_verify_certificate": 0,
}
QEMU_DEFAULTS: dict[str, int | str] = {  # qemu.conf's documented defaults (libvirt 9.0)
    "migrate_tls_force": 0, "default_tls_x509_verify": 1, "migration_port_min": 49152, "migration_port_max": 49215,
    "migration_address": "0.0.0.0",
}
MIGRATION_POLICIES = ("os_compute_api:os-migrate-server:migrate_live", "compute_extension:admin_actions:migrateLive")
"""Policy rules that allow live migration: today's and the pre-Newton name."""
NOVA_USERS = ("nova", "nova_migration")
"""Users whose SSH access carries migrations (the guide's locked-down ``nova_migration``)."""
SECRET_IN_URI = re.compile(r"(?<=://)([^/@:\s]*):[^@/\s]*@")


def redacted(value: str) -> str:
    """A URI without the password of its user part."""
    return SECRET_IN_URI.sub(r"\1:***@", value)


def parse_bool(value: str) -> bool | None:
    """oslo.config's booleans: true/false, yes/no, on/off, 1/0 (any case); None when none of those."""
    return {"true": True, "yes": True, "on": True, "1": True,
            "false": False, "no": False, "off": False, "0": False}.get(value.strip().lower())


@dataclass
class SshAccess:
    user: str
    file: str
    keys: list[AuthorizedKey]


@dataclass
class HostConfig:
    name: str
    folder: str
    problems: list[Problem] = field(default_factory=list)
    nova: dict[tuple[str, str], str] = field(default_factory=dict)
    nova_files: list[str] = field(default_factory=list)
    libvirtd: dict[str, int | str | list[str]] | None = None
    libvirtd_file: str = ""
    qemu: dict[str, int | str | list[str]] | None = None
    qemu_file: str = ""
    policy: dict[str, tuple[str, str]] = field(default_factory=dict)  # rule -> (check string, file)
    sshd: SshdConfig | None = None
    sshd_file: str = ""
    ssh_access: list[SshAccess] = field(default_factory=list)
    private_keys: list[tuple[str, str, PrivateKey]] = field(default_factory=list)  # user, file, key
    firewalls: list[tuple[str, Ruleset]] = field(default_factory=list)

    # ------------------------------------------------------------ nova.conf

    def nova_value(self, section: str, key: str) -> str:
        return self.nova.get((section, key), NOVA_DEFAULTS[(section, key)])

    def nova_bool(self, key: str) -> bool:
        value = parse_bool(self.nova_value("libvirt", key))
        if value is None:
            self.problems.append(Problem(self.nova_files[-1], f"[libvirt] {key}: {self.nova_value('libvirt', key)!r} "
                                                              "is not a boolean; read as false, oslo.config refuses it"))
            self.nova[("libvirt", key)] = "false"
            return False
        return value

    @property
    def has_nova(self) -> bool:
        return bool(self.nova_files)

    @property
    def native_tls(self) -> bool:
        return self.nova_bool("live_migration_with_native_tls")

    @property
    def tunnelled(self) -> bool:
        return self.nova_bool("live_migration_tunnelled")

    @property
    def uri_scheme(self) -> str:
        """The transport of nova's libvirt connection to the destination: tcp, tls, ssh ...
        (``live_migration_uri`` wins over ``live_migration_scheme``; nova's default is tcp)."""
        uri = self.nova_value("libvirt", "live_migration_uri")
        if uri:
            scheme = uri.split("://", 1)[0]
            return scheme.split("+", 1)[1] if "+" in scheme else "unix"
        return self.nova_value("libvirt", "live_migration_scheme") or "tcp"

    @property
    def protection(self) -> str:
        """What protects guest RAM by this configuration, in the words of ``events.protection``."""
        if self.native_tls:
            return "TLS"
        if self.tunnelled:
            return {"tls": "libvirt tunnel over TLS", "ssh": "SSH"}.get(self.uri_scheme, "libvirt tunnel over plain TCP")
        return "none"

    # ------------------------------------------------------------ libvirt

    def libvirtd_value(self, key: str) -> int | str:
        assert self.libvirtd is not None
        return self.libvirtd.get(key, LIBVIRTD_DEFAULTS[key])  # type: ignore[return-value]

    def qemu_value(self, key: str) -> int | str:
        assert self.qemu is not None
        if key == "migrate_tls_x509_verify":
            return self.qemu.get(key, self.qemu_value("default_tls_x509_verify"))  # type: ignore[return-value]
        return self.qemu.get(key, QEMU_DEFAULTS[key])  # type: ignore[return-value]

    @property
    def migration_ports(self) -> tuple[int, int]:
        if self.qemu is None:
            return int(QEMU_DEFAULTS["migration_port_min"]), int(QEMU_DEFAULTS["migration_port_max"])
        return int(self.qemu_value("migration_port_min")), int(self.qemu_value("migration_port_max"))

    @property
    def addresses(self) -> list[str]:
        """Addresses the configuration gives this host (an address for a hostname is not looked up)."""
        candidates = [self.nova_value("DEFAULT", "my_ip"), self.nova_value("libvirt", "live_migration_inbound_addr"),
                      str(self.qemu_value("migration_address")) if self.qemu is not None else "", self.name]
        out = []
        for candidate in candidates:
            try:
                address = ipaddress.ip_address(candidate)
            except ValueError:
                continue
            if not address.is_unspecified and str(address) not in out:
                out.append(str(address))
        return out

    def migration_policy(self) -> tuple[str, str, str] | None:
        """(rule, check string, file) of the live-migration policy rule the files set, if any."""
        for rule in MIGRATION_POLICIES:
            if rule in self.policy:
                return (rule, *self.policy[rule])
        return None

    # ------------------------------------------------------------ the settings table

    def settings(self) -> list[dict[str, str]]:
        """The audited settings, effective values, one row each (``CONFIG_SETTING_COLUMNS``)."""
        rows = []

        def add(kind: str, file: str, section: str, key: str, value: object, source: str) -> None:
            rows.append({"host": self.name, "kind": kind, "file": file if source == "set" else "", "section": section,
                         "key": key, "value": redacted(str(value)), "source": source})

        if self.has_nova:
            for (section, key), default in NOVA_DEFAULTS.items():
                set_here = (section, key) in self.nova
                add("nova", self.nova_files[-1], section, key, self.nova.get((section, key), default),
                    "set" if set_here else "default")
        if self.libvirtd is not None:
            for key, default in LIBVIRTD_DEFAULTS.items():
                add("libvirtd", self.libvirtd_file, "", key, self.libvirtd.get(key, default),
                    "set" if key in self.libvirtd else "default")
        if self.qemu is not None:
            for key in (*QEMU_DEFAULTS, "migrate_tls_x509_verify"):
                add("qemu", self.qemu_file, "", key, self.qemu_value(key), "set" if key in self.qemu else "default")
        for rule, (check, file) in self.policy.items():
            if rule in MIGRATION_POLICIES:
                add("nova-policy", file, "", rule, check, "set")
        if self.sshd is not None:
            for user in NOVA_USERS:
                applied = self.sshd.for_user(user)
                for key in ("forcecommand", "authorizedkeysfile", "passwordauthentication", "allowusers"):
                    if key in applied:
                        add("sshd", self.sshd_file, f"user {user}", key, applied[key], "set")
        for access in self.ssh_access:
            for key in access.keys:
                options = ", ".join(f"{k}={v!r}" if v else k for k, v in key.options.items()) or "no options"
                add("authorized-keys", access.file, f"user {access.user}", f"{key.key_type} {key.fingerprint}",
                    options, "set")
        for user, file, private in self.private_keys:
            add("ssh-private-key", file, f"user {user}", private.fingerprint or Path(file).name,
                "passphrase-protected" if private.encrypted else "no passphrase", "set")
        for file, ruleset in self.firewalls:
            for port in self.checked_ports():
                sources = ruleset.sources_reaching(port)
                add("firewall", file, ruleset.kind, f"tcp/{port}", ", ".join(sources) or "dropped", "set")
        return rows

    def checked_ports(self) -> tuple[int, ...]:
        """The ports the firewall check asks about: both ends of the migration range, libvirtd's two."""
        low, high = self.migration_ports
        return tuple(dict.fromkeys((low, high, 16509, 16514)))


# ---------------------------------------------------------------- reading


def read_host(files: HostFiles) -> HostConfig:
    """Parse every file found for a host; a file that cannot be read or
    parsed becomes a ``Problem`` and the rest is read on."""
    host = HostConfig(files.name, str(files.folder))
    nova_files = compute_nova_conf(files.files.get("nova", []))
    for path in nova_files:
        sections = _read(host, path, parse_oslo_ini)
        if sections is not None:
            host.nova_files.append(str(path))
            host.nova.update({(section, key): value for section, keys in sections.items() for key, value in keys.items()
                              if (section, key) in NOVA_DEFAULTS})  # nothing else kept: it may be a secret
    host.libvirtd, host.libvirtd_file = _first(host, files.files.get("libvirtd", []), parse_libvirt_conf)
    _check_types(host, host.libvirtd, host.libvirtd_file, LIBVIRTD_DEFAULTS)
    host.qemu, host.qemu_file = _first(host, files.files.get("qemu", []), parse_libvirt_conf)
    _check_types(host, host.qemu, host.qemu_file, {**QEMU_DEFAULTS, "migrate_tls_x509_verify": 1})
    for path in sorted(files.files.get("nova-policy", []), key=lambda p: (p.parent.name != "policy.d", str(p))):
        rules = _read(host, path, partial(parse_policy, name=path.name))
        for rule, check in (rules or {}).items():
            if rule in MIGRATION_POLICIES:
                host.policy[rule] = (check, str(path))  # policy.d files, then policy.yaml: the later one wins
    _read_sshd(host, files.files.get("sshd", []))
    for path in files.files.get("authorized-keys", []):
        user = _key_user(path, files.folder, host.sshd)
        if user in NOVA_USERS:
            keys = _read(host, path, parse_authorized_keys)
            if keys is not None:
                host.ssh_access.append(SshAccess(user, str(path), keys))
    for path in files.files.get("ssh-private-key", []):
        user = _key_user(path, files.folder, host.sshd)
        if user in NOVA_USERS:
            private = _read(host, path, parse_private_key)
            if private is not None:
                host.private_keys.append((user, str(path), private))
    for path in files.files.get("firewall", []):
        ruleset = _read(host, path, parse_ruleset)
        if ruleset is not None:
            host.firewalls.append((str(path), ruleset))
    return host


def _read(host: HostConfig, path: Path, parse):
    """``parse`` of the file's text, or None with the problem recorded."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        host.problems.append(Problem(str(path), "not UTF-8 text"))
        return None
    except OSError as exc:
        host.problems.append(Problem(str(path), f"cannot read: {exc.strerror or exc}"))
        return None
    try:
        return parse(text)
    except Malformed as exc:
        host.problems.append(Problem(str(path), f"malformed: {exc}"))
        return None


def _check_types(host: HostConfig, settings: dict | None, file: str, defaults: dict[str, int | str]) -> None:
    """An audited setting of the wrong type (``listen_tcp = "1"``) is a problem, and its default applies,
    as libvirtd refuses to start with it."""
    for key, default in defaults.items():
        if settings is not None and key in settings and type(settings[key]) is not type(default):
            host.problems.append(Problem(file, f"{key}: expected {'a number' if type(default) is int else 'a quoted string'}"
                                               "; its default is assumed"))
            del settings[key]


def _first(host: HostConfig, paths: list[Path], parse) -> tuple[dict | None, str]:
    """The first of several files of one kind that parses (shortest path first: /etc before a backup copy)."""
    for path in sorted(paths, key=lambda p: (len(p.parts), str(p))):
        value = _read(host, path, parse)
        if value is not None:
            return value, str(path)
    return None, ""


def _read_sshd(host: HostConfig, paths: list[Path]) -> None:
    """sshd_config with its sshd_config.d drop-ins first (Debian's ``Include`` is the file's first line)."""
    drop_ins = sorted((p for p in paths if p.parent.name == "sshd_config.d"), key=lambda p: p.name)
    mains = sorted((p for p in paths if p.name == "sshd_config"), key=lambda p: (len(p.parts), str(p)))
    texts = []
    for path in drop_ins + mains[:1]:
        parsed = _read(host, path, lambda text: (parse_sshd_config(text), text)[1])
        if parsed is not None:
            texts.append(parsed)
    if mains:
        host.sshd, host.sshd_file = parse_sshd_config("\n".join(texts)), str(mains[0])


def _key_user(path: Path, folder: Path, sshd: SshdConfig | None) -> str:
    """Whose keys a file holds: the user of a ``Match User`` block whose
    AuthorizedKeysFile names it, else the home folder's owner around
    ``.ssh``, else the kolla/TripleO folder it sits in."""
    posix = path.as_posix()
    for block in sshd.blocks if sshd else ():
        keys_file = block.settings.get("authorizedkeysfile", "")
        if keys_file and posix.endswith("/" + keys_file.lstrip("/")) and block.criteria.get("user"):
            return block.criteria["user"]
    parts = path.relative_to(folder).parts[:-1]
    if ".ssh" in parts:
        i = parts.index(".ssh")
        return parts[i - 1] if i else "root"
    if "nova-ssh" in parts:  # kolla's nova-ssh container: user nova
        return "nova"
    if "migration" in parts and "nova" in parts:  # TripleO: /etc/nova/migration/authorized_keys
        return "nova_migration"
    return ""
