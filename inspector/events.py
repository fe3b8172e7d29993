"""Migration events: the flows of one live migration, grouped and judged.

One migration is several flows from the source host to the destination:
a main channel, multifd channels, NBD disk flows, and the libvirtd
connection (which carries everything when the migration is tunnelled).
Flows are grouped by (source, destination) when their time spans overlap
(a main channel may also follow within ``GAP``); a main channel that opens
after the previous one closed starts the next migration. Each event says what moved (RAM and disk bytes, how
many of them in clear) and how it was protected.

Protection, in order:
``libvirt tunnel over plain TCP``  a libvirt RPC stream carries the QEMU stream in clear
``none``                           RAM or disk bytes crossed in clear, uncompressed
``compressed only``                cleartext, but >= 80 % of the cleartext bytes are compressed
``SSH``                            an SSH flow carries the volume; cleartext legs are loopback only
``libvirt tunnel over TLS``        the data flows through libvirtd's TLS port
``TLS``                            QEMU native TLS on the migration flows
``unknown``                        data flows whose protection could not be established
"""

from __future__ import annotations

from collections import namedtuple
from dataclasses import dataclass

import numpy as np
import pandas as pd

from inspector.schema import CLEAR, EVENT_COLUMNS
from inspector.tables import table_of

GAP = pd.Timedelta(seconds=30)
BULK_BYTES = 64 * 1024  # a migration data flow moves at least this much
LOOPBACK_PREFIXES = ("127.", "::1")


MAIN_KINDS = ("main", "migration", "tls-migration", "tunnel", "tunnel-tls")


@dataclass(frozen=True)
class _Role:
    kind: str  # main, multifd, nbd, tunnel, tls-migration, migration, tunnel-tls, libvirtd, ssh
    carries: str  # ram, disk or control


ROLES = {kind: _Role(kind, carries) for kind, carries in (
    ("main", "ram"), ("multifd", "ram"), ("nbd", "disk"), ("tunnel", "ram"), ("tls-migration", "ram"),
    ("migration", "ram"), ("tunnel-tls", "ram"), ("libvirtd", "control"), ("ssh", "ram"))}


def _tunnel_flows(evidence: pd.DataFrame) -> set[str]:
    """uids of libvirt RPC flows whose STREAM messages carry a migration."""
    uids = set()
    rpc = evidence[evidence["protocol"] == "libvirt-rpc"]
    for uid, fields in zip(rpc["uid"].tolist(), rpc["fields"].tolist()):
        if fields.get("tunnel") or fields.get("tunnelled_qevm"):
            uids.add(uid)
    return uids


def _nbd_flows(evidence: pd.DataFrame) -> set[str]:
    """uids of flows with NBD framing: also those NBD upgraded to TLS (named tls)."""
    return set(evidence.loc[evidence["protocol"] == "nbd", "uid"].tolist())


def _roles(flows: pd.DataFrame, tunnels: set[str], nbd: set[str] = frozenset()) -> np.ndarray:
    """The role kind of each flow in a migration, '' for none (vectorised)."""
    protocol = flows["protocol"].to_numpy(dtype=object, na_value="")
    is_nbd = (protocol == "nbd") | flows["uid"].isin(nbd).to_numpy()
    watch = flows["watch"].astype(str).to_numpy(dtype=object)
    data = (flows["orig_bytes"] + flows["resp_bytes"]).to_numpy()
    tunnel = flows["uid"].isin(tunnels).to_numpy()
    migration_port, libvirtd_port = watch == "migration", watch == "libvirtd"
    return np.select(
        [protocol == "qemu-migration", protocol == "qemu-multifd", is_nbd, tunnel,
         migration_port & (data >= BULK_BYTES) & (protocol == "tls"), migration_port & (data >= BULK_BYTES),
         libvirtd_port & (protocol == "tls") & (data >= 16 * BULK_BYTES), libvirtd_port,
         (protocol == "ssh") & (data >= 16 * BULK_BYTES)],
        ["main", "multifd", "nbd", "tunnel", "tls-migration", "migration", "tunnel-tls", "libvirtd", "ssh"],
        "",
    )


def migration_pairs(flows: pd.DataFrame, evidence: pd.DataFrame) -> set[tuple[str, str]]:
    """(source, destination) of the flows that can make an event (a role
    other than SSH or libvirtd): a libvirtd flow between other hosts never
    joins an event."""
    kinds = _roles(flows, _tunnel_flows(evidence), _nbd_flows(evidence))
    strong = (kinds != "") & (kinds != "ssh") & (kinds != "libvirtd")
    return set(zip(flows["orig_h"].astype(str)[strong], flows["resp_h"].astype(str)[strong]))


_Member = namedtuple("_Member", "uid orig_h resp_h orig_bytes resp_bytes verdict")


def _with_data_flows(flows: pd.DataFrame, kinds: np.ndarray) -> np.ndarray:
    """Rows of the flows with a role whose (source, destination) also has a
    data flow: the SSH and libvirtd flows of other host pairs can only make
    events that are dropped (thousands of libvirtd connections on a busy
    controller would each be grouped one by one for nothing)."""
    picked = np.flatnonzero(kinds != "")
    data = ~np.isin(kinds[picked], ("ssh", "libvirtd"))
    if data.all():
        return picked
    hosts = flows.iloc[picked][["orig_h", "resp_h"]].assign(data=data)
    return picked[hosts.groupby(["orig_h", "resp_h"], sort=False, dropna=False)["data"].transform("any").to_numpy(dtype=bool)]


def build_events(flows: pd.DataFrame, evidence: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """The events table and, per flow, its event id ('' when none)."""
    event_of = np.full(len(flows), "", dtype=object)
    kinds = _roles(flows, _tunnel_flows(evidence), _nbd_flows(evidence))
    picked = _with_data_flows(flows, kinds)
    if not len(picked):  # no flow of a migration (most captures): no event
        return table_of([], EVENT_COLUMNS), event_of
    sub = flows.iloc[picked]
    starts = sub["ts"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    ends = starts + sub["duration"].to_numpy(dtype="timedelta64[ns]").astype(np.int64)
    members = map(_Member._make, zip(*(sub[c].astype(str).tolist() if c in ("verdict", "uid", "orig_h", "resp_h")
                                       else sub[c].tolist() for c in _Member._fields)))
    gap = GAP.value
    groups: list[dict] = []
    open_groups: dict[tuple[str, str], dict] = {}
    for _, i, start, end, kind, row in sorted(zip(starts.tolist(), range(len(picked)), starts.tolist(),
                                                  ends.tolist(), kinds[picked].tolist(), members)):
        role = ROLES[kind]
        key = (row.orig_h, row.resp_h)
        group = open_groups.get(key)
        is_main = kind in MAIN_KINDS
        # Channels and tunnels must overlap the event; a main channel may follow within GAP.
        if (group is None or start > group["end"] + (gap if is_main else 0)
                or (is_main and group["main_end"] is not None and start > group["main_end"])):
            group = {"src": row.orig_h, "dst": row.resp_h, "start": start, "end": end, "members": [],
                     "main_end": None}
            open_groups[key] = group
            groups.append(group)
        group["end"] = max(group["end"], end)
        if is_main:
            group["main_end"] = end if group["main_end"] is None else max(group["main_end"], end)
        group["members"].append((int(picked[i]), row, role))
    # An SSH or libvirtd flow alone is not evidence of a migration (scp looks the same).
    groups = [g for g in groups if any(r.kind not in ("ssh", "libvirtd") for _, _, r in g["members"])]
    records = []
    for number, group in enumerate(sorted(groups, key=lambda g: g["start"]), start=1):
        event = f"M{number}"
        for i, _, _ in group["members"]:
            event_of[i] = event
        records.append({"event": event, "src_h": group["src"], "dst_h": group["dst"],
                        "start": group["start"], "end": group["end"], **_judge(group["members"])})
    return table_of(records, EVENT_COLUMNS), event_of


def _judge(members) -> dict:
    ram = ram_clear = disk = disk_clear = 0
    kinds: dict[str, int] = {}
    clear_kinds = set()
    clear_bytes = compressed_bytes = 0
    clear_on_wire = False
    ssh_bytes = data_bytes = 0
    for _, row, role in members:
        kinds[role.kind] = kinds.get(role.kind, 0) + 1
        moved = int(row.orig_bytes + row.resp_bytes)
        clear = str(row.verdict) in CLEAR
        loopback = row.orig_h.startswith(LOOPBACK_PREFIXES) and row.resp_h.startswith(LOOPBACK_PREFIXES)
        if role.carries == "ram":
            ram += moved
            ram_clear += moved if clear else 0
        elif role.carries == "disk":
            disk += moved
            disk_clear += moved if clear else 0
        if role.kind == "ssh":
            ssh_bytes += moved
        elif role.carries != "control":
            data_bytes += moved
        if clear and role.carries != "control":
            clear_kinds.add(role.kind)
            clear_bytes += moved
            compressed_bytes += moved if str(row.verdict) == "compressed" else 0
            clear_on_wire |= not loopback
    if "tunnel" in clear_kinds:
        protection = "libvirt tunnel over plain TCP"
    elif clear_kinds and ssh_bytes and not clear_on_wire:
        protection = "SSH"  # the cleartext legs are loopback: they never leave their hosts
    elif clear_kinds:
        # multifd keeps device state on a plaintext main channel; the RAM is the bulk
        protection = "compressed only" if compressed_bytes >= 0.8 * clear_bytes else "none"
    elif "tunnel-tls" in kinds:
        protection = "libvirt tunnel over TLS"
    elif any(str(row.verdict) == "encrypted" for _, row, role in members if role.carries != "control"):
        protection = "SSH" if ssh_bytes >= 0.5 * max(data_bytes, 1) else "TLS"
    else:
        protection = "unknown"
    order = ("main", "migration", "tls-migration", "multifd", "nbd", "tunnel", "tunnel-tls", "ssh", "libvirtd")
    channels = [f"{kinds[k]} {k}" if kinds[k] > 1 else k for k in order if k in kinds]
    return {"protection": protection, "ram_bytes": ram, "ram_bytes_clear": ram_clear, "disk_bytes": disk,
            "disk_bytes_clear": disk_clear, "flows": len(members),
            "uids": [row.uid for _, row, _ in members], "channels": channels}
