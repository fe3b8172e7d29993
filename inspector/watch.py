"""The watchlist: which ports and networks carry migration and API traffic.

Defaults follow the problem statement: the libvirt/QEMU migration port range
49152-49261 (OpenStack's documented range; libvirt's own default is
49152-49215), libvirtd 16509 (TCP) and 16514 (TLS), SSH 22. The internal API
network(s) are named by the reviewer. A TOML file can override any of it::

    [watch]
    migration_ports = ["49152-49261"]
    libvirtd_ports = [16509, 16514]
    ssh_ports = [22]
    internal_nets = ["192.168.24.0/24", "fd00:24::/64"]
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

import numpy as np

from inspector.errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
PORT_KEYS = ("migration_ports", "libvirtd_ports", "ssh_ports")



PortSpec = str | int | Iterable[int | str]
"""'49152-49261,16509', 22, [22, 2222], range(49152, 49216) or [16509, "49152-49215"]."""


def parse_ports(spec: PortSpec, what: str) -> frozenset[int]:
    """A ``PortSpec`` (any iterable of ports and ranges, or a comma-separated string) -> set of ports."""
    items = spec if isinstance(spec, Iterable) and not isinstance(spec, str) else str(spec).split(",")
    ports: set[int] = set()
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        try:
            if "-" in text:
                lo, hi = (int(x) for x in text.split("-", 1))
            else:
                lo = hi = int(text)
        except ValueError:
            raise ConfigError(f"{what}: {text!r} is not a port or a range like 49152-49261") from None
        if not (0 <= lo <= hi <= 65535):
            raise ConfigError(f"{what}: {text!r} is outside 0-65535 or reversed")
        ports.update(range(lo, hi + 1))
    return frozenset(ports)


def port_ranges(ports: frozenset[int]) -> list[str]:
    """{1, 2, 3, 7} -> ['1-3', '7']: the inverse of ``parse_ports``."""
    out: list[str] = []
    for p in sorted(ports):
        if out and int(out[-1].split("-")[-1]) == p - 1:
            out[-1] = f"{out[-1].split('-')[0]}-{p}"
        else:
            out.append(str(p))
    return out


def parse_networks(specs, what: str) -> tuple[IPNetwork, ...]:
    nets = []
    for spec in specs:
        try:
            nets.append(ipaddress.ip_network(str(spec).strip(), strict=False))
        except ValueError:
            raise ConfigError(f"{what}: {spec!r} is not a network like 192.168.24.0/24") from None
    return tuple(nets)


@dataclass(frozen=True)
class Watchlist:
    """Ports and networks whose flows a reviewer must see.

    Ports take any ``PortSpec`` and networks any iterable of CIDR strings
    (or one string); both are normalised on construction, so
    ``Watchlist(ssh_ports=[22, 2222])`` and ``Watchlist(ssh_ports="22,2222")``
    are the same watchlist.
    """

    migration_ports: frozenset[int] = field(default_factory=lambda: frozenset(range(49152, 49262)))
    libvirtd_ports: frozenset[int] = frozenset({16509, 16514})
    ssh_ports: frozenset[int] = frozenset({22})
    internal_nets: tuple[IPNetwork, ...] = ()

    def __post_init__(self) -> None:
        for key in PORT_KEYS:
            value = getattr(self, key)
            if not (isinstance(value, frozenset) and all(type(p) is int for p in value)):
                object.__setattr__(self, key, parse_ports(value, key))
        nets = self.internal_nets
        if not (isinstance(nets, tuple) and all(isinstance(n, (ipaddress.IPv4Network, ipaddress.IPv6Network))
                                                for n in nets)):
            object.__setattr__(self, "internal_nets",
                               parse_networks([nets] if isinstance(nets, str) else nets, "internal_nets"))

    @classmethod
    def default(cls) -> Watchlist:
        return cls()

    @classmethod
    def from_options(cls, *, watch: Watchlist | None = None, watch_config: str | os.PathLike | None = None,
                     migration_ports: PortSpec | None = None, libvirtd_ports: PortSpec | None = None,
                     ssh_ports: PortSpec | None = None, internal_nets: Iterable[str] = ()) -> Watchlist:
        """The watchlist the CLI's options (and ``analyze()``'s keywords of the
        same names) describe: ``watch`` (or the defaults), then the ``[watch]``
        table of ``watch_config``, then each port option given, then
        ``internal_nets`` added."""
        base = watch or cls.default()
        if watch_config is not None:
            base = cls.from_toml(watch_config, base)
        changes = {key: parse_ports(spec, f"--{key.replace('_', '-')}")
                   for key, spec in (("migration_ports", migration_ports), ("libvirtd_ports", libvirtd_ports),
                                     ("ssh_ports", ssh_ports)) if spec is not None}
        return replace(base, **changes).with_internal_nets([internal_nets] if isinstance(internal_nets, str)
                                                            else list(internal_nets))

    @classmethod
    def from_toml(cls, path: str | Path, base: Watchlist | None = None) -> Watchlist:
        """Read the ``[watch]`` table of a TOML file over ``base``."""
        import tomllib  # only here: its import compiles regexes (~5 ms) every analyze would pay

        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such watchlist file") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
        table = data.get("watch", data)
        return cls.from_dict(table, str(path), base)

    @classmethod
    def from_dict(cls, table: dict, where: str, base: Watchlist | None = None) -> Watchlist:
        """From a ``[watch]`` table (TOML file, or an export's meta.json); ``where`` names it in errors."""
        known = {"migration_ports", "libvirtd_ports", "ssh_ports", "internal_nets"}
        unknown = set(table) - known
        if unknown:
            raise ConfigError(f"{where}: unknown watchlist keys {sorted(unknown)}; known: {sorted(known)}")
        wl = base or cls()
        changes: dict = {}
        for key in PORT_KEYS:
            if key in table:
                changes[key] = parse_ports(table[key], f"{where}: {key}")
        if "internal_nets" in table:
            changes["internal_nets"] = parse_networks(table["internal_nets"], f"{where}: internal_nets")
        return replace(wl, **changes)

    def with_internal_nets(self, specs) -> Watchlist:
        nets = parse_networks(specs, "--internal-net")
        return replace(self, internal_nets=self.internal_nets + nets) if nets else self

    @cached_property
    def service_ports(self) -> frozenset[int]:
        """Ports that mark the responder of a flow whose SYN was not captured
        (computed once: the pipeline asks per region)."""
        return self.migration_ports | self.libvirtd_ports | self.ssh_ports

    @cached_property
    def _port_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """65,536-entry lookup tables of the migration, libvirtd and SSH ports."""
        def table(ports: frozenset[int]) -> np.ndarray:
            lookup = np.zeros(65536, dtype=bool)
            lookup[list(ports)] = True
            return lookup

        return table(self.migration_ports), table(self.libvirtd_ports), table(self.ssh_ports)

    @cached_property
    def _net_words(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The internal networks as the flow table stores addresses: IP version,
        (hi, lo) 64-bit words of the network and of its mask (IPv4 in the low
        32 bits of ``lo``)."""
        version, net_hi, net_lo, mask_hi, mask_lo = [], [], [], [], []
        for net in self.internal_nets:
            network, mask = int(net.network_address), int(net.netmask)
            version.append(net.version)
            net_hi.append(network >> 64)
            net_lo.append(network & 0xFFFFFFFFFFFFFFFF)
            mask_hi.append(mask >> 64)
            mask_lo.append(mask & 0xFFFFFFFFFFFFFFFF)
        return (np.array(version, dtype=np.int64),) + tuple(np.array(w, dtype=np.uint64)
                                                             for w in (net_hi, net_lo, mask_hi, mask_lo))

    def _internal(self, hi: np.ndarray, lo: np.ndarray, version: np.ndarray) -> np.ndarray:
        """Addresses (flow-table words) inside an internal network."""
        inside = np.zeros(hi.size, dtype=bool)
        v4 = lo & np.uint64(0xFFFFFFFF)
        for ver, n_hi, n_lo, m_hi, m_lo in zip(*self._net_words):
            if ver == 4:
                inside |= (version == 4) & ((v4 & m_lo) == n_lo)
            else:
                inside |= (version == 6) & ((hi & m_hi) == n_hi) & ((lo & m_lo) == n_lo)
        return inside

    def role_codes(self, a_port: np.ndarray, b_port: np.ndarray, addr: np.ndarray,
                   version: np.ndarray) -> np.ndarray:
        """The watch role of each flow as a code into ``schema.ROLES``, from the flow
        table's columns: the two ports, ``addr`` (rows of A hi, A lo, B hi, B
        lo words) and the IP version. No address is formatted."""
        migration, libvirtd, ssh = self._port_tables
        internal = np.zeros(a_port.size, dtype=bool)
        if self.internal_nets:
            internal = self._internal(addr[:, 0], addr[:, 1], version) | self._internal(addr[:, 2], addr[:, 3],
                                                                                          version)
        return np.select(
            [migration[a_port] | migration[b_port], libvirtd[a_port] | libvirtd[b_port], ssh[a_port] | ssh[b_port],
             internal],
            [0, 1, 2, 3],
            4,
        ).astype(np.int8)
