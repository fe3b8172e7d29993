#!/usr/bin/env python3
"""Derive harder capture variants from the REAL captures in captures/.

Run after make_captures.py (no root needed, standard library only):

  python3 captures/derive_variants.py            # all variants
  python3 captures/derive_variants.py --list

The variants are rewritten copies of real captures, packet for packet; no
packet content is invented.  Four kinds (written to captures/variants/):

  midflow   the capture starts mid-flow: the first packets of the source,
            including the SYN/SYN-ACK and the first ~300 KB of payload, are
            dropped; the next ~384 KB of payload are kept, so the variant
            also ends mid-flow (a window).  Truth stays the same.
  vlan      an 802.1Q tag (TPID 0x8100, VID 100), or an 802.1ad S-tag (TPID
            0x88A8, VID 200) followed by an 802.1Q C-tag (VID 100), inserted
            after the MAC addresses of every frame; the first ~384 KB of
            payload are kept (from the SYN on).
  snaplen   every frame cut to 256 bytes (pcap snaplen 256; orig_len keeps
            the wire length), the whole source capture.
  tunnel    every frame wrapped whole, as a remote mirror port delivers it:
            in VXLAN (RFC 7348, VNI 100, UDP to 4789) or in ERSPAN type III
            (session 7, in GRE with a sequence number), inside IPv4 from the
            mirror source 192.0.2.1 to the collector 192.0.2.2 (documentation
            addresses; nothing is sent); the first ~384 KB of payload.

The fourth kind of hard case, a real capture at Ethernet MTU 1500, is not
derived: make_captures.py records it (qemu-plain-mtu1500, qemu-tls-mtu1500)
between two network namespaces.

manifest.json gets a "variants" list (make_captures.py keeps it as is):

  {"name", "file", "source", "source_file", "source_sha256", "kind",
   "transform": {...}, "description", "file_bytes", "sha256", "linktype",
   "flows": [{"proto", "orig_h", "orig_p", "resp_h", "resp_p", "truth",
              "protocol", "note", "has_syn", "orig_pkts", "resp_pkts",
              "orig_bytes", "resp_bytes", "orig_captured_bytes",
              "resp_captured_bytes"}]}

orig/resp are the TRUE originator and responder, taken from the source
capture's manifest entry (a mid-flow variant has no SYN to tell them apart).
*_bytes are TCP payload bytes on the wire (from the IP total length, as
Zeek counts them); *_captured_bytes are the payload bytes present in the file
(smaller only for the snaplen variants).
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import socket
import struct
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.dont_write_bytecode = True          # no __pycache__ in captures/
from make_captures import MANIFEST, _pcap_packets_ts, _tcp_segment, load_manifest  # noqa: E402

OUT = HERE / "variants"
MIDFLOW_DROP = 300_000        # payload bytes dropped before the window starts
WINDOW = 384 * 1024           # payload bytes kept (midflow and vlan)
SNAPLEN = 256

VARIANTS = [
    # (name, source capture, kind, options)
    ("qemu-plain-mtu1500-midflow", "qemu-plain-mtu1500", "midflow", {}),
    ("qemu-tls-mtu1500-midflow", "qemu-tls-mtu1500", "midflow", {}),
    ("libvirt-tunnelled-tcp-midflow", "libvirt-tunnelled-tcp", "midflow", {}),
    ("qemu-plain-mtu1500-dot1q", "qemu-plain-mtu1500", "vlan", {"tags": [(0x8100, 100)]}),
    ("qemu-tls-mtu1500-dot1q", "qemu-tls-mtu1500", "vlan", {"tags": [(0x8100, 100)]}),
    ("qemu-plain-mtu1500-qinq", "qemu-plain-mtu1500", "vlan", {"tags": [(0x88A8, 200), (0x8100, 100)]}),
    ("qemu-tls-mtu1500-qinq", "qemu-tls-mtu1500", "vlan", {"tags": [(0x88A8, 200), (0x8100, 100)]}),
    ("qemu-plain-snap256", "qemu-plain", "snaplen", {}),
    ("qemu-tls-snap256", "qemu-tls", "snaplen", {}),
    ("qemu-multifd-zstd-snap256", "qemu-multifd-zstd", "snaplen", {}),
    ("qemu-plain-mtu1500-snap256", "qemu-plain-mtu1500", "snaplen", {}),
    ("qemu-tls-mtu1500-snap256", "qemu-tls-mtu1500", "snaplen", {}),
    ("qemu-plain-mtu1500-vxlan", "qemu-plain-mtu1500", "tunnel", {"tunnel": "vxlan"}),
    ("qemu-tls-mtu1500-erspan3", "qemu-tls-mtu1500", "tunnel", {"tunnel": "erspan3"}),
]
TUNNEL_SRC, TUNNEL_DST = "192.0.2.1", "192.0.2.2"   # mirror source -> collector
VXLAN_PORT, VXLAN_VNI = 4789, 100
ERSPAN_SESSION = 7


def log(msg: str) -> None:
    print(f"[derive_variants] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# classic pcap in/out


def read_pcap(path: Path) -> tuple[int, list[tuple[int, int, int, bytes]]]:
    """(linktype, [(ts_sec, ts_frac, orig_len, frame)]) of a classic pcap (gz ok)."""
    linktype, packets = None, []
    for lt, ts_s, ts_f, orig_len, frame in _pcap_packets_ts(path):
        linktype = lt
        packets.append((ts_s, ts_f, orig_len, frame))
    if linktype is None:
        raise RuntimeError(f"{path}: no packets")
    return linktype, packets


def pcap_header_magic(path: Path) -> bytes:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        return f.read(4)


def write_pcap(dest: Path, linktype: int, packets, *, snaplen: int = 262144, magic: bytes) -> None:
    """Little-endian classic pcap with the source's timestamp resolution, gzip'd (mtime 0)."""
    nsec = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    body = bytearray(struct.pack("<IHHiIII", 0xA1B23C4D if nsec else 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))
    for ts_s, ts_f, orig_len, frame in packets:
        body += struct.pack("<IIII", ts_s, ts_f, len(frame), orig_len) + frame
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    with open(tmp, "wb") as out:
        with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=9) as gz:
            gz.write(body)
    os.replace(tmp, dest)


# --------------------------------------------------------------------------
# per-packet helpers


def wire_payload_len(linktype: int, frame: bytes) -> tuple[tuple, int, int, bytes] | None:
    """(endpoints (src, sport, dst, dport), tcp flags, wire payload length, captured payload)."""
    seg = _tcp_segment(linktype, frame)
    if seg is None:
        return None
    src, sport, dst, dport, flags, payload = seg
    off = 14
    etype = struct.unpack_from("!H", frame, 12)[0]
    while etype in (0x8100, 0x88A8):
        etype = struct.unpack_from("!H", frame, off + 2)[0]
        off += 4
    if etype != 0x0800:
        raise RuntimeError("only IPv4 over Ethernet is expected in these captures")
    ihl = (frame[off] & 0x0F) * 4
    total = struct.unpack_from("!H", frame, off + 2)[0]
    doff = (frame[off + ihl + 12] >> 4) * 4
    return (src, sport, dst, dport), flags, total - ihl - doff, payload


def add_tags(frame: bytes, tags: list[tuple[int, int]]) -> bytes:
    """Insert VLAN tags (outermost first) between the MAC addresses and the EtherType."""
    ins = b"".join(struct.pack("!HH", tpid, vid & 0x0FFF) for tpid, vid in tags)
    return frame[:12] + ins + frame[12:]


def ipv4_checksum(header: bytes) -> int:
    """RFC 1071 checksum of a 20-byte IPv4 header whose checksum field is zero."""
    total = sum(struct.unpack("!10H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def mirror_ipv4(proto: int, payload: bytes) -> bytes:
    """Ethernet and IPv4 (DF, TTL 64) from the mirror source to the collector, before ``payload``."""
    header = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0,
                                   socket.inet_aton(TUNNEL_SRC), socket.inet_aton(TUNNEL_DST)))
    header[10:12] = struct.pack("!H", ipv4_checksum(bytes(header)))
    macs = bytes.fromhex("020000000002" "020000000001")   # collector, mirror source (locally administered)
    return macs + struct.pack("!H", 0x0800) + bytes(header) + payload


def in_vxlan(frame: bytes, _seq: int) -> bytes:
    """The frame in VXLAN (I flag, VNI) in UDP to 4789, UDP checksum 0 (allowed over IPv4)."""
    vxlan = struct.pack("!B3xI", 0x08, VXLAN_VNI << 8) + frame
    return mirror_ipv4(17, struct.pack("!HHHH", 49152, VXLAN_PORT, 8 + len(vxlan), 0) + vxlan)


def in_erspan3(frame: bytes, seq: int) -> bytes:
    """The frame in ERSPAN type III (version 2, Ethernet PDU) in GRE with sequence number ``seq``."""
    erspan = struct.pack("!HHIHH", 2 << 12, ERSPAN_SESSION, 0, 0, 0x8000) + frame
    return mirror_ipv4(47, struct.pack("!HHI", 0x1000, 0x22EB, seq) + erspan)


TUNNELS = {"vxlan": (in_vxlan, VXLAN_VNI), "erspan3": (in_erspan3, ERSPAN_SESSION)}


def in_tunnel(packets, tunnel: str):
    """Every frame wrapped whole in ``tunnel``; orig_len grows by the tunnel's headers."""
    wrap, _tunnel_id = TUNNELS[tunnel]
    out = []
    for seq, (ts_s, ts_f, orig_len, frame) in enumerate(packets):
        wrapped = wrap(frame, seq)
        out.append((ts_s, ts_f, orig_len + len(wrapped) - len(frame), wrapped))
    return out


# --------------------------------------------------------------------------
# flows of a variant, labelled from the source capture's manifest entry


def variant_flows(linktype: int, packets, source_entry: dict) -> list[dict]:
    truth = {}
    for fl in source_entry["flows"]:
        truth[((fl["orig_h"], fl["orig_p"]), (fl["resp_h"], fl["resp_p"]))] = fl
    stats: dict[tuple, dict] = {}
    order = []
    for _s, _f, _o, frame in packets:
        info = wire_payload_len(linktype, frame)
        if info is None:
            continue
        (src, sport, dst, dport), flags, wire, captured = info
        a, b = (src, sport), (dst, dport)
        key = (a, b) if (a, b) in truth else (b, a)
        if key not in truth:
            raise RuntimeError(f"flow {a} <-> {b} is not in the source manifest")
        st = stats.get(key)
        if st is None:
            st = stats[key] = {"has_syn": False, "pkts": [0, 0], "bytes": [0, 0], "cap": [0, 0]}
            order.append(key)
        d = 0 if a == key[0] else 1
        if flags & 0x02:
            st["has_syn"] = True
        st["pkts"][d] += 1
        st["bytes"][d] += wire
        st["cap"][d] += len(captured)
    out = []
    for key in order:
        src_fl, st = truth[key], stats[key]
        out.append({
            "proto": "tcp", "orig_h": key[0][0], "orig_p": key[0][1], "resp_h": key[1][0], "resp_p": key[1][1],
            "truth": src_fl["truth"], "protocol": src_fl["protocol"], "note": src_fl["note"],
            "has_syn": st["has_syn"],
            "orig_pkts": st["pkts"][0], "resp_pkts": st["pkts"][1],
            "orig_bytes": st["bytes"][0], "resp_bytes": st["bytes"][1],
            "orig_captured_bytes": st["cap"][0], "resp_captured_bytes": st["cap"][1],
        })
    return out


# --------------------------------------------------------------------------
# the transforms


def midflow(linktype, packets):
    seen, start = 0, None
    for i, (_s, _f, _o, frame) in enumerate(packets):
        info = wire_payload_len(linktype, frame)
        seen += info[2] if info else 0
        if seen >= MIDFLOW_DROP:
            start = i + 1
            break
    if start is None:
        raise RuntimeError("source capture is too small for a mid-flow window")
    kept, end = 0, len(packets)
    for j in range(start, len(packets)):
        info = wire_payload_len(linktype, packets[j][3])
        kept += info[2] if info else 0
        if kept >= WINDOW:
            end = j + 1
            break
    dropped_payload = sum((wire_payload_len(linktype, p[3]) or (0, 0, 0))[2] for p in packets[:start])
    out = packets[start:end]
    return out, {"dropped_first_packets": start, "dropped_payload_bytes": dropped_payload,
                 "kept_packets": len(out), "kept_payload_bytes": kept,
                 "dropped_after": len(packets) - end}


def head_window(linktype, packets):
    kept, end = 0, len(packets)
    for j, p in enumerate(packets):
        info = wire_payload_len(linktype, p[3])
        kept += info[2] if info else 0
        if kept >= WINDOW:
            end = j + 1
            break
    return packets[:end], {"kept_first_packets": end, "kept_payload_bytes": kept,
                           "dropped_after": len(packets) - end}


def derive(name: str, source: str, kind: str, opts: dict, entries: dict) -> dict:
    src_entry = entries.get(source)
    if src_entry is None:
        raise RuntimeError(f"source capture {source} is not in the manifest (run make_captures.py)")
    src_path = HERE / src_entry["file"]
    data = src_path.read_bytes()
    if hashlib.sha256(data).hexdigest() != src_entry["sha256"]:
        raise RuntimeError(f"{src_path.name} does not match its manifest sha256 (stale manifest?)")
    linktype, packets = read_pcap(src_path)
    if linktype != 1:
        raise RuntimeError(f"{source}: expected Ethernet link type, got {linktype}")
    magic = pcap_header_magic(src_path)
    snaplen = 262144
    if kind == "midflow":
        out, transform = midflow(linktype, packets)
        desc = (f"{source} starting mid-flow: the first {transform['dropped_first_packets']} packets "
                f"(SYN, handshake and {transform['dropped_payload_bytes']} payload bytes) dropped, the next "
                f"{transform['kept_payload_bytes']} payload bytes kept, the rest dropped")
    elif kind == "vlan":
        out, transform = head_window(linktype, packets)
        tags = opts["tags"]
        out = [(s, f, o + 4 * len(tags), add_tags(fr, tags)) for s, f, o, fr in out]
        transform.update({"tags": [{"tpid": f"0x{t:04x}", "vid": v} for t, v in tags]})
        kind_txt = "802.1Q tag (VID 100)" if len(tags) == 1 else "802.1ad S-tag (VID 200) + 802.1Q C-tag (VID 100)"
        desc = (f"{source} with an {kind_txt} added to every frame; the first "
                f"{transform['kept_payload_bytes']} payload bytes (from the SYN on)")
    elif kind == "tunnel":
        out, transform = head_window(linktype, packets)
        tunnel_id = TUNNELS[opts["tunnel"]][1]
        transform.update({"tunnel": opts["tunnel"], "tunnel_src": TUNNEL_SRC, "tunnel_dst": TUNNEL_DST,
                          "tunnel_id": tunnel_id})
        desc = (f"{source} with every frame wrapped in {opts['tunnel']} (id {tunnel_id}) from {TUNNEL_SRC} to "
                f"{TUNNEL_DST}, as a remote mirror delivers it; the first {transform['kept_payload_bytes']} "
                "payload bytes (from the SYN on)")
    elif kind == "snaplen":
        snaplen = SNAPLEN
        out = [(s, f, o, fr[:SNAPLEN]) for s, f, o, fr in packets]
        transform = {"snaplen": SNAPLEN, "packets": len(out),
                     "cut_frames": sum(1 for p in packets if len(p[3]) > SNAPLEN)}
        desc = f"{source} with every frame cut to {SNAPLEN} bytes (pcap snaplen {SNAPLEN}, orig_len kept)"
    else:
        raise RuntimeError(f"unknown kind {kind}")
    dest = OUT / f"{name}.pcap.gz"
    write_pcap(dest, linktype, in_tunnel(out, opts["tunnel"]) if kind == "tunnel" else out,
               snaplen=snaplen, magic=magic)
    flows = variant_flows(linktype, out, src_entry)   # of the frames as captured (inside the tunnel)
    vdata = dest.read_bytes()
    entry = {"name": name, "file": f"variants/{dest.name}", "source": source,
             "source_file": src_entry["file"], "source_sha256": src_entry["sha256"], "kind": kind,
             "transform": transform, "description": desc, "file_bytes": len(vdata),
             "sha256": hashlib.sha256(vdata).hexdigest(), "linktype": linktype, "flows": flows}
    log(f"{name}: {len(vdata)} bytes, {len(out)} packets, "
        + ", ".join(f"{f['orig_p']}->{f['resp_p']} {f['truth']} (syn={f['has_syn']})" for f in flows))
    return entry


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", action="store_true", help="list the variants and exit")
    args = ap.parse_args()
    if args.list:
        for name, source, kind, _ in VARIANTS:
            print(f"{name:32} {kind:8} from {source}")
        return 0
    manifest = load_manifest()
    entries = {e["name"]: e for e in manifest.get("captures", [])}
    variants, failed = [], []
    for name, source, kind, opts in VARIANTS:
        try:
            variants.append(derive(name, source, kind, opts, entries))
        except Exception as e:  # keep going
            log(f"{name}: FAILED: {e}")
            failed.append(name)
    keep = {v["name"] for v in variants}
    old = [v for v in manifest.get("variants", []) if v["name"] not in keep and v["name"] in
           {n for n, *_ in VARIANTS}]          # a failed variant keeps its previous entry
    by_name = {v["name"]: v for v in variants + old}
    manifest["variants"] = [by_name[n] for n, *_ in VARIANTS if n in by_name]
    tmp = MANIFEST.with_name("manifest.json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, MANIFEST)
    # remove variant files that no longer belong to any variant
    wanted = {Path(v["file"]).name for v in manifest["variants"]}
    for f in OUT.glob("*.pcap.gz"):
        if f.name not in wanted:
            f.unlink()
    if failed:
        log(f"failed: {', '.join(failed)}")
        return 1
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
