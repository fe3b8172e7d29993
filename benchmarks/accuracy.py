#!/usr/bin/env python3
"""Accuracy of inspector's verdicts on the labelled capture corpus, by prefix size.

Every capture listed in captures/manifest.json ("captures" and "variants")
is cut so that each direction of each TCP flow keeps at most K payload bytes
(K = 1, 4, 16, 64 KiB, and "full" = the file as recorded). Each cut is
analysed twice, with the protocol detectors and with the payload statistics
alone (``inspector.analyze(path, detectors=False)``), and every flow is
matched to its manifest entry by (orig_p, resp_p).

For each mode and K the script prints a confusion matrix (rows: truth,
columns: verdict including unknown), accuracy over the labelled flows,
coverage (share of flows not unknown), accuracy on the decided flows, the
number of critical errors (cleartext called encrypted or encrypted called
cleartext) and the same in a 3-class view (cleartext / encrypted / unknown).
Published figures of other classifiers are printed for comparison.

    python benchmarks/accuracy.py                   # all K, captures + variants (~1 min)
    python benchmarks/accuracy.py --quick           # K = 4 KiB and full, captures only
    python benchmarks/accuracy.py --out acc.json    # also write every number as JSON

Needs dpkt (a test extra of the repository) for the cutter; inspector is
imported from the repository checkout.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import gzip
import json
import platform
import struct
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import dpkt  # noqa: E402

import inspector  # noqa: E402

CAPTURES = ROOT / "captures"
KIB = 1024
PREFIXES: list[int | None] = [1 * KIB, 4 * KIB, 16 * KIB, 64 * KIB, None]   # None = full capture
QUICK_PREFIXES: list[int | None] = [4 * KIB, None]
CLASSES = ["plaintext", "compressed", "encrypted"]
VERDICTS = CLASSES + ["unknown"]
SIDE = {"plaintext": "cleartext", "compressed": "cleartext", "encrypted": "encrypted",
        "unknown": "unknown"}
SIDES = ["cleartext", "encrypted"]
SIDE_VERDICTS = SIDES + ["unknown"]
MODES = [("detectors", True, "with detectors"), ("statistics", False, "statistics only")]
CONFIDENT = 0.8   # the confidence the tests treat as "confident"

# Published figures (see /work/shared/reference/peers.md). Other data sets,
# per-packet / per-fragment tasks: indicative only.
PUBLISHED = [
    {"system": "HEDGE", "ref": "Casino, Choo, Patsakis, IEEE TIFS 2019",
     "task": "encrypted vs compressed, per packet (randomness tests)",
     "points": [{"size": "1 KB", "accuracy": 0.706}, {"size": "64 KB", "accuracy": 0.947}]},
    {"system": "EnCoD", "ref": "De Gaspari et al., 2020",
     "task": "encrypted vs compressed (vs text), per fragment",
     "points": [{"size": "512 B", "accuracy": 0.82}, {"size": "8 KB", "accuracy": 0.92}]},
]

# ---------------------------------------------------------------------------
# Cutter: classic pcap in, classic pcap out, at most K payload bytes per
# direction of each TCP flow. Timestamps, byte order, resolution and the
# original frame length (orig_len) are carried over record by record.
# ---------------------------------------------------------------------------

PCAP_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", False), b"\xa1\xb2\xc3\xd4": (">", False),
    b"\x4d\x3c\xb2\xa1": ("<", True), b"\xa1\xb2\x3c\x4d": (">", True),
}
LINKTYPE_ETHERNET = 1


class CutError(Exception):
    """The capture cannot be cut by this script (format or link type)."""


def _open(path: Path):
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _tcp_payload(frame: bytes):
    """Decode an Ethernet frame (802.1Q / 802.1ad tags included).

    Returns (eth, ip, tcp, key, wire_payload) for an unfragmented TCP segment,
    else None. ``wire_payload`` comes from the IP length, so a frame cut by a
    snaplen counts what was on the wire, not what was captured."""
    eth = dpkt.ethernet.Ethernet(frame)
    ip = eth.data
    if isinstance(ip, dpkt.ip.IP):
        if ip.mf or ip.offset:
            return None
        tcp = ip.data
        if not isinstance(tcp, dpkt.tcp.TCP):
            return None
        wire = ip.len - ip.hl * 4 - tcp.off * 4
    elif isinstance(ip, dpkt.ip6.IP6):
        tcp = ip.data
        if not isinstance(tcp, dpkt.tcp.TCP):
            return None
        ext = sum(len(bytes(h)) for h in getattr(ip, "all_extension_headers", []) or [])
        wire = ip.plen - ext - tcp.off * 4
    else:
        return None
    if wire < 0:
        return None
    return eth, ip, tcp, (ip.src, tcp.sport, ip.dst, tcp.dport), wire


def cut_capture(src: Path, dst: Path, limit: int) -> dict:
    """Copy ``src`` (pcap or pcap.gz, Ethernet) to ``dst`` keeping at most
    ``limit`` payload bytes per TCP flow direction.

    The segment that crosses the limit is shortened (IP length and orig_len
    reduced by the bytes removed; for a frame cut by a snaplen only the
    captured part that is left is written); later segments with payload are
    dropped; segments without payload (SYN, ACK, FIN) are kept. A frame that
    does not decode as TCP over IP (or cannot be re-encoded) is written as it
    is. Returns counts of what was done."""
    counts = Counter()
    sent: dict[tuple, int] = {}
    with _open(src) as fin, open(dst, "wb") as fout:
        head = fin.read(24)
        if len(head) < 24 or head[:4] not in PCAP_MAGICS:
            raise CutError(f"{src}: not a classic pcap file (pcapng is not supported by the cutter)")
        order, _nsec = PCAP_MAGICS[head[:4]]
        linktype = struct.unpack(order + "I", head[20:24])[0] & 0x0FFFFFFF
        if linktype != LINKTYPE_ETHERNET:
            raise CutError(f"{src}: link type {linktype}, the cutter handles Ethernet (1) only")
        fout.write(head)
        rec = struct.Struct(order + "IIII")
        while True:
            hdr = fin.read(16)
            if len(hdr) < 16:
                break
            sec, frac, caplen, wirelen = rec.unpack(hdr)
            frame = fin.read(caplen)
            if len(frame) < caplen:
                counts["truncated_record_at_end"] += 1
                break
            counts["frames_in"] += 1
            try:
                dec = _tcp_payload(frame)
            except (dpkt.UnpackError, ValueError, struct.error, IndexError):
                dec = None
            if dec is None or dec[4] == 0:
                counts["frames_kept_as_is" if dec is None else "frames_no_payload"] += 1
                fout.write(hdr + frame)
                continue
            eth, ip, tcp, key, wire = dec
            room = limit - sent.get(key, 0)
            if room <= 0:
                counts["frames_dropped"] += 1
                continue
            if wire <= room:
                sent[key] = sent.get(key, 0) + wire
                counts["frames_unchanged"] += 1
                fout.write(hdr + frame)
                continue
            removed = wire - room
            try:
                tcp.data = bytes(tcp.data)[:room]
                if isinstance(ip, dpkt.ip.IP):
                    ip.len -= removed
                    ip.sum = 0          # recomputed by dpkt; the TCP checksum is left stale
                else:
                    ip.plen -= removed
                out = bytes(eth)
            except (dpkt.PackError, ValueError, struct.error):
                counts["frames_kept_as_is"] += 1
                fout.write(hdr + frame)
                continue
            sent[key] = limit
            counts["frames_shortened"] += 1
            if len(frame) < wirelen:
                counts["frames_shortened_snaplen"] += 1
            new_wirelen = max(wirelen - removed, len(out))
            fout.write(rec.pack(sec, frac, len(out), new_wirelen) + out)
    counts["directions_cut"] = sum(1 for v in sent.values() if v >= limit)
    return dict(counts)


# ---------------------------------------------------------------------------
# Running inspector and scoring
# ---------------------------------------------------------------------------

def k_label(k: int | None) -> str:
    return "full" if k is None else f"{k // KIB} KiB"


def load_entries(manifest: dict, quick: bool, only: list[str]) -> list[dict]:
    entries = [dict(c, section="captures") for c in manifest["captures"]]
    if not quick:
        entries += [dict(v, section="variants") for v in manifest.get("variants", [])]
    if only:
        names = {e["name"] for e in entries}
        missing = [n for n in only if n not in names]
        if missing:
            raise SystemExit(f"accuracy.py: error: not in the manifest: {', '.join(missing)}")
        entries = [e for e in entries if e["name"] in only]
    return entries


def match_flows(entry: dict, flows, k: int | None, mode: str) -> list[dict]:
    """One row per manifest flow: truth, verdict (unknown when not found)."""
    rows = []
    for truth in entry["flows"]:
        sel = flows[(flows.orig_p == truth["orig_p"]) & (flows.resp_p == truth["resp_p"])
                    & (flows.proto == truth.get("proto", "tcp"))]
        matched = "direct"
        if sel.empty:   # a mid-flow capture may name the responder as originator
            sel = flows[(flows.orig_p == truth["resp_p"]) & (flows.resp_p == truth["orig_p"])
                        & (flows.proto == truth.get("proto", "tcp"))]
            matched = "swapped"
        if sel.empty:
            rows.append({"capture": entry["name"], "section": entry["section"],
                         "kind": entry.get("kind", "real"), "k": k, "mode": mode,
                         "orig_p": truth["orig_p"], "resp_p": truth["resp_p"],
                         "truth": truth["truth"], "protocol": truth["protocol"],
                         "verdict": "unknown", "confidence": 0.0, "matched": "missing",
                         "detected": "", "reason": "flow not found in inspector's output"})
            continue
        row = sel.iloc[0]
        rows.append({"capture": entry["name"], "section": entry["section"],
                     "kind": entry.get("kind", "real"), "k": k, "mode": mode,
                     "orig_p": truth["orig_p"], "resp_p": truth["resp_p"],
                     "truth": truth["truth"], "protocol": truth["protocol"],
                     "verdict": str(row.verdict), "confidence": float(row.confidence),
                     "matched": matched, "detected": str(row.protocol or ""),
                     "reason": str(row.reason)})
    return rows


def score(rows: list[dict]) -> dict:
    labelled = [r for r in rows if r["truth"] in CLASSES]
    n = len(labelled)
    matrix = {t: {v: 0 for v in VERDICTS} for t in CLASSES}
    side_matrix = {t: {v: 0 for v in SIDE_VERDICTS} for t in SIDES}
    for r in labelled:
        matrix[r["truth"]][r["verdict"]] += 1
        side_matrix[SIDE[r["truth"]]][SIDE[r["verdict"]]] += 1
    correct = sum(matrix[c][c] for c in CLASSES)
    decided = sum(1 for r in labelled if r["verdict"] != "unknown")
    side_correct = sum(side_matrix[s][s] for s in SIDES)
    critical = [r for r in labelled
                if r["verdict"] != "unknown" and SIDE[r["verdict"]] != SIDE[r["truth"]]]
    # encrypted-vs-compressed subset: the task of HEDGE and EnCoD
    ec = [r for r in labelled if r["truth"] in ("compressed", "encrypted")]
    ec_correct = sum(1 for r in ec if r["verdict"] == r["truth"])
    ec_decided = [r for r in ec if r["verdict"] in ("compressed", "encrypted")]
    ec_decided_correct = sum(1 for r in ec_decided if r["verdict"] == r["truth"])

    def ratio(a, b):
        return a / b if b else None

    return {
        "flows": len(rows), "labelled": n, "unlabelled": len(rows) - n,
        "missing": sum(1 for r in rows if r["matched"] == "missing"),
        "swapped": sum(1 for r in rows if r["matched"] == "swapped"),
        "confusion": matrix,
        "correct": correct, "decided": decided,
        "accuracy": ratio(correct, n), "coverage": ratio(decided, n),
        "accuracy_decided": ratio(correct, decided),
        "critical_errors": len(critical),
        "critical_errors_confident": sum(1 for r in critical if r["confidence"] >= CONFIDENT),
        "critical": [{k: r[k] for k in ("capture", "orig_p", "resp_p", "truth", "verdict",
                                         "confidence", "reason")} for r in critical],
        "three_class": {"confusion": side_matrix, "correct": side_correct,
                        "accuracy": ratio(side_correct, n),
                        "accuracy_decided": ratio(side_correct, decided)},
        "encrypted_vs_compressed": {"flows": len(ec), "correct": ec_correct,
                                    "accuracy": ratio(ec_correct, len(ec)),
                                    "decided": len(ec_decided),
                                    "accuracy_decided": ratio(ec_decided_correct, len(ec_decided))},
    }


# ---------------------------------------------------------------------------
# Printing
# ---------------------------------------------------------------------------

def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def frac(a: int, b: int) -> str:
    return f"({a}/{b})"


def print_matrix(title: str, matrix: dict, rows: list[str], cols: list[str]) -> None:
    w = max(len(title), *(len(r) for r in rows)) + 2
    print(f"  {title:<{w}}" + "".join(f"{c:>12}" for c in cols) + f"{'total':>8}")
    for r in rows:
        print(f"  {r:<{w}}" + "".join(f"{matrix[r][c]:>12}" for c in cols)
              + f"{sum(matrix[r].values()):>8}")


def print_block(label: str, k: int | None, s: dict) -> None:
    print(f"\n== {label}, K = {k_label(k)} per direction: {s['labelled']} labelled flows"
          + (f", {s['missing']} not found" if s["missing"] else "")
          + (f", {s['swapped']} matched with orig/resp swapped" if s["swapped"] else ""))
    print_matrix("truth \\ verdict", s["confusion"], CLASSES, VERDICTS)
    print(f"  accuracy {pct(s['accuracy'])} {frac(s['correct'], s['labelled'])}"
          f"  coverage {pct(s['coverage'])} {frac(s['decided'], s['labelled'])}"
          f"  accuracy on decided {pct(s['accuracy_decided'])} {frac(s['correct'], s['decided'])}"
          f"  critical errors {s['critical_errors']}"
          f" ({s['critical_errors_confident']} at confidence >= {CONFIDENT})")
    t = s["three_class"]
    print_matrix("3-class truth \\ verdict", t["confusion"], SIDES, SIDE_VERDICTS)
    print(f"  3-class accuracy {pct(t['accuracy'])} {frac(t['correct'], s['labelled'])}"
          f"  on decided {pct(t['accuracy_decided'])} {frac(t['correct'], s['decided'])}")
    for c in s["critical"]:
        print(f"  critical: {c['capture']} {c['orig_p']}->{c['resp_p']} truth {c['truth']},"
              f" verdict {c['verdict']} {c['confidence']:.2f}: {c['reason'][:110]}")


def print_summary(results: dict, prefixes: list[int | None]) -> None:
    print("\n== summary (accuracy = verdict == truth over labelled flows; coverage = not unknown;"
          " critical = cleartext <-> encrypted)")
    hdr = (f"  {'mode':<16}{'K':>9}{'flows':>7}{'accuracy':>10}{'coverage':>10}"
           f"{'acc.decided':>13}{'critical':>10}{'3-class':>9}{'enc/comp':>10}")
    print(hdr)
    print("  " + "-" * (len(hdr) - 2))
    for mode, _, label in MODES:
        for k in prefixes:
            s = results[mode][k_label(k)]
            crit = f"{s['critical_errors']}({s['critical_errors_confident']})"
            ec = s["encrypted_vs_compressed"]
            print(f"  {label:<16}{k_label(k):>9}{s['labelled']:>7}{pct(s['accuracy']):>10}"
                  f"{pct(s['coverage']):>10}{pct(s['accuracy_decided']):>13}{crit:>10}"
                  f"{pct(s['three_class']['accuracy']):>9}{pct(ec['accuracy']):>10}")
    print("  critical: all (at confidence >= 0.8); 3-class: cleartext/encrypted/unknown accuracy;"
          "\n  enc/comp: accuracy on the flows whose truth is encrypted or compressed"
          " (the HEDGE/EnCoD task), unknown counted wrong")


def print_published(results: dict, prefixes: list[int | None]) -> None:
    print("\n== published figures (other data sets; per-packet / per-fragment tasks; indicative only)")
    for p in PUBLISHED:
        pts = ", ".join(f"{pt['accuracy'] * 100:.1f}% at {pt['size']}" for pt in p["points"])
        print(f"  {p['system']:<6} ({p['ref']}): {p['task']}: {pts}")
    print("  These numbers come from other corpora and classify single packets or fragments")
    print("  (mostly encrypted vs compressed); the figures above classify whole flows of this")
    print("  corpus, with K payload bytes per direction. The comparison is indicative, not a")
    print("  like-for-like benchmark.")
    for mode, _, label in MODES:
        parts = []
        for k in prefixes:
            ec = results[mode][k_label(k)]["encrypted_vs_compressed"]
            parts.append(f"{pct(ec['accuracy'])} at {k_label(k)} {frac(ec['correct'], ec['flows'])}")
        print(f"  inspector {label}, encrypted vs compressed flows: " + ", ".join(parts))


# ---------------------------------------------------------------------------


def git_state() -> dict:
    """Commit of the checkout and whether inspector/ has local changes (None without git)."""
    import subprocess
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "inspector"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "inspector_modified": None}
    return {"commit": head, "inspector_modified": bool(dirty) if head else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="write all numbers (and every flow's verdict) as JSON")
    ap.add_argument("--quick", action="store_true",
                    help="K in {4 KiB, full} and only the 'captures' list (no variants)")
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help="only this manifest entry (repeatable)")
    ap.add_argument("--manifest", type=Path, default=CAPTURES / "manifest.json")
    ap.add_argument("--list-flows", action="store_true",
                    help="print every flow's verdict, not only the critical errors")
    args = ap.parse_args(argv)

    manifest = json.loads(args.manifest.read_text())
    base = args.manifest.resolve().parent
    entries = load_entries(manifest, args.quick, args.only)
    prefixes = QUICK_PREFIXES if args.quick else PREFIXES
    t0 = time.monotonic()
    rows: list[dict] = []
    cut_stats: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="inspector-accuracy-") as tmp:
        for entry in entries:
            src = base / entry["file"]
            for k in prefixes:
                if k is None:
                    path = src
                else:
                    path = Path(tmp) / f"{entry['name']}-{k}.pcap"
                    cut_stats[f"{entry['name']}@{k_label(k)}"] = cut_capture(src, path, k)
                for mode, det, _ in MODES:
                    flows = inspector.analyze(path, detectors=det).flows
                    rows += match_flows(entry, flows, k, mode)
                if k is not None:
                    path.unlink()
    elapsed = time.monotonic() - t0

    n_flows = sum(len(e["flows"]) for e in entries)
    kinds = Counter(e.get("kind", "real") for e in entries)
    truths = Counter(f["truth"] for e in entries for f in e["flows"])
    print(f"inspector accuracy on {len(entries)} capture(s)"
          f" ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}),"
          f" {n_flows} labelled flows ({', '.join(f'{truths[c]} {c}' for c in CLASSES)})"
          f"; K = {', '.join(k_label(k) for k in prefixes)} payload bytes per direction;"
          f" {elapsed:.1f} s")

    results: dict = {mode: {} for mode, _, _ in MODES}
    for mode, _, label in MODES:
        for k in prefixes:
            s = score([r for r in rows if r["mode"] == mode and r["k"] == k])
            results[mode][k_label(k)] = s
            print_block(label, k, s)
            if args.list_flows:
                for r in rows:
                    if r["mode"] == mode and r["k"] == k:
                        print(f"    {r['capture']:<32} {r['orig_p']:>5}->{r['resp_p']:<5}"
                              f" {r['truth']:<10} {r['verdict']:<10} {r['confidence']:.2f}"
                              f" {r['reason'][:80]}")
    print_summary(results, prefixes)
    print_published(results, prefixes)

    if args.out:
        doc = {
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.argv[0]).name] + (sys.argv[1:] if argv is None else argv)),
            "python": platform.python_version(), "inspector": inspector.__version__,
            "dpkt": dpkt.__version__, "git": git_state(), "elapsed_s": round(elapsed, 2),
            "quick": args.quick, "prefixes": [k_label(k) for k in prefixes],
            "prefix_bytes": prefixes,
            "captures": [{"name": e["name"], "section": e["section"], "file": e["file"],
                          "kind": e.get("kind", "real"), "flows": len(e["flows"])} for e in entries],
            "confident": CONFIDENT,
            "results": results,
            "published": PUBLISHED,
            "published_note": ("other data sets and per-packet / per-fragment tasks; "
                               "the comparison is indicative"),
            "cut": cut_stats,
            "flows": rows,
        }
        tmp_out = args.out.with_name(args.out.name + ".tmp")
        tmp_out.write_text(json.dumps(doc, indent=1) + "\n")
        tmp_out.replace(args.out)
        print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
