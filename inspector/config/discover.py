"""Find each host's configuration files by name, wherever they sit: an /etc
tree (``etc/nova/nova.conf``), a sosreport (``etc/...`` plus
``sos_commands/...``), a kolla folder (``nova-compute/nova.conf``,
``nova-libvirt/qemu.conf``), a TripleO puppet-generated tree
(``nova_libvirt/etc/nova/nova.conf``); or a folder of such folders, one per
host."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

FIREWALL_NAMES = ("iptables-save", "ip6tables-save", "rules.v4", "rules.v6", "nftables.conf", "nftables.nft")
"""Saved rulesets: command output (sosreport ``sos_commands/.../iptables-save``,
``nft_-a_list_ruleset``) or the files iptables-persistent and nftables load."""

HOST_PARTS = frozenset({"etc", "var", "home", "root", "sos_commands", "config-data", "puppet-generated", "kolla",
                        "nova", "libvirt", "ssh", "sysconfig", "iptables", "nftables"})
"""Folder names that are parts of one host's tree, never a host."""

COMPUTE_HINTS = ("nova_libvirt", "nova-libvirt", "nova_compute", "nova-compute")
"""Path parts of the nova.conf a compute host's services read, among a TripleO or kolla host's several."""

PRIVATE_KEY_NAMES = ("id_rsa", "id_ecdsa", "id_ed25519", "id_dsa")


def kind_of(relative: PurePosixPath) -> str | None:
    """The kind of configuration file (``inspector.schema.CONFIG_KINDS``) a path names, or None."""
    name, parent = relative.name, relative.parent.name
    parts = set(relative.parts[:-1])
    if name == "nova.conf" or (parent == "nova.conf.d" and name.endswith(".conf")):
        return "nova"
    if name in ("libvirtd.conf", "virtproxyd.conf"):
        return "libvirtd"
    if name == "qemu.conf":
        return "qemu"
    if name == "sshd_config" or (parent == "sshd_config.d" and name.endswith(".conf")):
        return "sshd"
    if name in ("authorized_keys", "authorized_keys2"):
        return "authorized-keys"
    if name in PRIVATE_KEY_NAMES and (parent == ".ssh" or "nova-ssh" in parts or "migration" in parts):
        return "ssh-private-key"
    if any(part.startswith("nova") for part in parts) and (
            name in ("policy.yaml", "policy.json") or (parent == "policy.d" and name.endswith((".yaml", ".json")))):
        return "nova-policy"
    if name.startswith(FIREWALL_NAMES) or (name.startswith("nft") and "ruleset" in name) or (
            parent == "sysconfig" and name in ("iptables", "ip6tables")):
        return "firewall"
    return None


@dataclass
class HostFiles:
    """One host's folder and the configuration files found in it, by kind."""

    folder: Path
    name: str
    files: dict[str, list[Path]] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    file: str
    problem: str


def discover(paths: list[Path]) -> tuple[list[HostFiles], list[Problem]]:
    """The hosts under ``paths`` (each a host's folder, a folder of hosts' folders, or one file)."""
    hosts: list[HostFiles] = []
    problems: list[Problem] = []
    for path in paths:
        if not path.exists():
            problems.append(Problem(str(path), "no such file or folder"))
            continue
        if path.is_file():
            kind = kind_of(PurePosixPath(path.name))
            if kind is None:
                problems.append(Problem(str(path), "not a configuration file this audit knows by name"))
                continue
            hosts.append(HostFiles(path.parent, path.parent.name or str(path.parent), {kind: [path]}))
            continue
        found = _files_under(path, problems)
        members = _host_folders(path, found)
        if members:
            for folder in members:
                hosts.append(_host(folder, {k: [f for f in fs if folder in f.parents] for k, fs in found.items()}))
        elif found:
            hosts.append(_host(path, found))
        else:
            problems.append(Problem(str(path), "no configuration file found (nova.conf, libvirtd.conf, qemu.conf, "
                                               "sshd_config, authorized_keys, policy, firewall rules)"))
    _unique_names(hosts)
    return hosts, problems


def _files_under(folder: Path, problems: list[Problem]) -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}

    def unreadable(error: OSError) -> None:
        problems.append(Problem(str(error.filename), f"cannot list the folder: {error.strerror}"))

    for root, dirs, files in os.walk(folder, onerror=unreadable):
        dirs.sort()
        for name in sorted(files):
            path = Path(root, name)
            kind = kind_of(PurePosixPath(path.relative_to(folder).as_posix()))
            if kind and path.is_file():  # a dangling link is no configuration
                found.setdefault(kind, []).append(path)
    return found


def _host_folders(folder: Path, found: dict[str, list[Path]]) -> list[Path]:
    """The subfolders that are hosts, when ``folder`` is a folder of hosts: those
    holding a nova.conf or libvirt configuration, when no subfolder is named
    like a part of one host's tree (etc, var, nova-compute ...) and no
    configuration file sits directly in it."""
    tops: dict[str, set[str]] = {}
    for kind, files in found.items():
        for path in files:
            parts = path.relative_to(folder).parts
            if len(parts) == 1:
                return []
            tops.setdefault(parts[0], set()).add(kind)
    if any(top in HOST_PARTS or top.startswith(("nova", "libvirt", "neutron")) for top in tops):
        return []
    return [folder / top for top, kinds in sorted(tops.items()) if kinds & {"nova", "libvirtd", "qemu"}]


def _host(folder: Path, found: dict[str, list[Path]]) -> HostFiles:
    return HostFiles(folder, _hostname(folder), {kind: files for kind, files in found.items() if files})


def _hostname(folder: Path) -> str:
    for candidate in (folder / "hostname", folder / "etc" / "hostname"):
        try:
            name = candidate.read_text(encoding="utf-8").strip().split()[0]
        except (OSError, UnicodeDecodeError, IndexError):
            continue
        if name:
            return name
    return folder.resolve().name or str(folder)


def _unique_names(hosts: list[HostFiles]) -> None:
    seen: dict[str, int] = {}
    for host in hosts:
        seen[host.name] = seen.get(host.name, 0) + 1
        if seen[host.name] > 1:
            host.name = f"{host.name} ({host.folder})"


def compute_nova_conf(files: list[Path]) -> list[Path]:
    """The nova.conf files a compute host's nova-compute reads, in the order they apply:
    the compute service's own (TripleO, kolla) when there are several, else the
    shortest path (etc/nova/nova.conf); then its nova.conf.d drop-ins in name order."""
    mains = [f for f in files if f.name == "nova.conf"]
    drop_ins = sorted((f for f in files if f.parent.name == "nova.conf.d"), key=lambda f: f.name)
    hinted = [f for f in mains if any(h in f.parts for h in COMPUTE_HINTS)]
    pick = min(hinted or mains, key=lambda f: (len(f.parts), str(f))) if mains else None
    return ([pick] if pick else []) + drop_ins
