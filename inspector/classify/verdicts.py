"""Verdicts from randomness statistics: per direction, then per flow.

Direction rules, first match wins (N = payload bytes analysed; "body":
every window after the 8 KiB head, each labelled as it finished, so the
rules see the whole captured stream, not only the sampled windows):

1. N < ``MIN_BYTES``: ``unknown``.
2. At least 97 % printable bytes: ``plaintext`` (text: HTTP, JSON, config).
   Ciphertext and compressed data are ~37 % printable; an SSH banner with
   its KEXINIT name lists, the cleartext start of an encrypted session, is
   92-95 %.
3. At least ``MIN_BODY_BYTES`` after the 8 KiB head: judge the body windows.
   Encryption never yields non-random windows after its handshake.
   ``plain`` windows holding >= 20 % of the body mean ``plaintext``; other
   non-random windows holding >= 10 % mean ``compressed`` (compressed
   streams keep some framing in clear: multifd headers score as ``plain``
   in ~4 % of a zstd channel); plain windows of ``PLAIN_BYTES`` or more
   mean ``plaintext`` whatever their share. Then cleartext diluted in
   random bytes: ``DILUTED_PLAIN_BYTES`` in plain 4 KiB blocks mean
   ``plaintext``. A block among random bytes is plain once it holds
   ~1.2 KiB of text (~320 B of zeros), so cleartext pieces of 2.4 KiB or
   more make one plain wherever they sit: 4 KiB of text every 1 MiB is
   caught by the 16th piece (a 16 MiB stream). Else ``encrypted``, more
   confident the more bytes were seen (compressed data shows its bias
   within ~16 KiB). Out of reach: cleartext spread thinner than ~1.2 KiB
   per 4 KiB block and ~1 KiB per 64 KiB window (under ~1.6 % of the
   stream), which leaves every block unplain and the windows random; from
   ~1 KiB per window on, windows fail the random test and such a stream is
   ``compressed``, not ``encrypted``. (Measured with
   ``flows.randomness.label`` on text, JSON and zeros placed at random in
   random bytes.)
4. Only the head: the handshakes of TLS and SSH look like cleartext binary
   (~5.9-6.8 bits/byte), so only a very low-entropy head is called
   ``plaintext``. A head of uniform bytes (TLS 1.3 encrypts its handshake
   after the ServerHello) is ``encrypted`` from ``HEAD_RANDOM_MIN_BYTES``
   on, with a confidence that says compressed data is not yet ruled out.
   Anything else is ``unknown``.

A flow is ``plaintext`` if either direction is; otherwise it takes the
verdict of the decided direction with more analysed bytes.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping

import numpy as np

from inspector.schema import VERDICTS, WINDOW_LABELS
from inspector.units import human_bytes

PLAINTEXT, COMPRESSED, ENCRYPTED, UNKNOWN = range(4)  # codes into VERDICTS
# What a direction's verdict rests on: picks the reason text.
BASES = ("little", "text", "plain", "compressed", "diluted", "encrypted", "head_plain", "head_encrypted",
         "head_unknown")

MIN_BYTES = 16
TEXT_PRINTABLE = 0.97
MIN_BODY_BYTES = 4096
PLAIN_SHARE = 0.20
PLAIN_BYTES = 4 * 65536  # cleartext windows this large make a direction plaintext whatever their share:
                         # a sender cannot hide megabytes of cleartext among more megabytes of random bytes
NONRANDOM_SHARE = 0.10
DILUTED_PLAIN_BYTES = 16 * 4096  # plain 4 KiB blocks in a random body: 16 such blocks are 16 pieces of
                                 # cleartext. Ciphertext never makes one (chi2 >= n + 255 on 4096 uniform
                                 # bytes); nor do SSH re-keys, sent under the keys in force (RFC 4253 9).
HEAD_PLAIN_ENTROPY = 4.0
HEAD_PLAIN_MIN_BYTES = 2048
HEAD_RANDOM_MIN_BYTES = 2048
COMPRESSION_VISIBLE_BYTES = 16384  # zlib/zstd bias shows by then


def direction_verdict_columns(stats: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Verdict (codes into ``VERDICTS``), confidence and basis (codes into
    ``BASES``) of each direction, from its statistics (``statistics_columns``)."""
    n = np.asarray(stats["analysed_bytes"])
    body = np.asarray(stats["body_bytes"])
    safe_body = np.maximum(body, 1)
    plain_share = np.asarray(stats["body_plain"]) / safe_body
    nonrandom_share = (np.asarray(stats["body_plain"]) + np.asarray(stats["body_compressed"])) / safe_body
    printable = np.nan_to_num(np.asarray(stats["printable"], dtype=np.float64), nan=0.0)
    head_entropy = np.nan_to_num(np.asarray(stats["head_entropy"], dtype=np.float64), nan=8.0)
    head_random = np.asarray(stats["head_label"]) == WINDOW_LABELS.index("random")

    too_little = n < MIN_BYTES
    text = ~too_little & (printable >= TEXT_PRINTABLE)
    judged_body = ~too_little & ~text & (body >= MIN_BODY_BYTES)
    body_plain = judged_body & ((plain_share >= PLAIN_SHARE) | (np.asarray(stats["body_plain"]) >= PLAIN_BYTES))
    body_compressed = judged_body & ~body_plain & (nonrandom_share >= NONRANDOM_SHARE)
    diluted = judged_body & ~body_plain & ~body_compressed & (np.asarray(stats["block_plain"]) >= DILUTED_PLAIN_BYTES)
    body_encrypted = judged_body & ~body_plain & ~body_compressed & ~diluted
    head_only = ~too_little & ~text & ~judged_body
    head_plain = head_only & (head_entropy < HEAD_PLAIN_ENTROPY) & (n >= HEAD_PLAIN_MIN_BYTES)
    head_encrypted = head_only & head_random & (n >= HEAD_RANDOM_MIN_BYTES)

    verdict = np.select(  # codes into VERDICTS
        [text | body_plain | diluted | head_plain, body_compressed, body_encrypted | head_encrypted],
        [PLAINTEXT, COMPRESSED, ENCRYPTED],
        UNKNOWN,
    ).astype(np.int8)
    confidence = np.select(
        [
            text,
            body_plain,
            head_plain,
            body_compressed,
            diluted,
            body_encrypted,
            head_encrypted,
        ],
        [
            0.6 + 0.39 * np.minimum(1.0, n / 1024),
            np.minimum(0.99, 0.7 + plain_share),
            np.full(n.shape, 0.7),
            0.5 + 0.49 * np.minimum(1.0, nonrandom_share / 0.5) * np.minimum(1.0, body / 65536),
            np.full(n.shape, 0.9),  # the blocks are cleartext beyond doubt; how much of the stream is unknown
            # A window of zlib data looks uniform about half the time (chi2
            # 242-510 measured on multifd+zlib): k random windows leave a
            # compressed stream a chance of about 0.5**k.
            (0.5 + 0.49 * (1 - 0.5 ** (body / 65536))) * (1 - nonrandom_share),
            0.5 + 0.4 * np.minimum(1.0, n / COMPRESSION_VISIBLE_BYTES),
        ],
        0.0,
    )
    confidence = np.round(np.minimum(confidence, 0.99), 2)
    basis = np.select(  # codes into BASES
        [too_little, text, body_plain, body_compressed, diluted, body_encrypted, head_plain, head_encrypted],
        list(range(8)),
        8,
    ).astype(np.int8)
    return {"verdict": verdict, "confidence": confidence, "basis": basis}


_REASONS = {
    "little": lambda s: "no payload" if s.analysed_bytes == 0 else f"only {s.analysed_bytes} B of payload",
    "text": lambda s: f"text: {s.printable:.0%} printable bytes over {human_bytes(s.analysed_bytes)}",
    "plain": lambda s: (f"structured cleartext in {s.body_plain / s.body_bytes:.0%} of "
                        f"{human_bytes(s.body_bytes)} after the head (median {s.entropy:.2f} bits/byte)"),
    "compressed": lambda s: (f"high entropy (median {s.entropy:.3f} bits/byte) but not uniform (median "
                             f"chi2 {s.chi2:.0f}) in {(s.body_compressed + s.body_plain) / s.body_bytes:.0%} "
                             f"of {human_bytes(s.body_bytes)}: compressed, not encrypted"),
    "diluted": lambda s: (f"cleartext diluted in random bytes: {human_bytes(s.block_plain)} in plain 4 KiB blocks "
                          f"among {human_bytes(s.body_bytes)} after the head (windows {s.body_random / s.body_bytes:.0%} "
                          "uniform)"),
    "encrypted": lambda s: (f"uniform bytes in {s.body_random / s.body_bytes:.0%} of {human_bytes(s.body_bytes)} "
                            f"(median chi2 {s.chi2:.0f}, {s.entropy:.3f} bits/byte, {s.windows} windows)"),
    "head_plain": lambda s: (f"low-entropy stream head ({s.head_entropy:.2f} bits/byte over "
                             f"{human_bytes(s.analysed_bytes)})"),
    "head_encrypted": lambda s: (f"uniform bytes over {human_bytes(s.analysed_bytes)} (chi2 {s.head_chi2:.0f}, "
                                 f"{s.head_entropy:.2f} bits/byte); under 16 KiB compressed data is not ruled out"),
    "head_unknown": lambda s: (f"only {human_bytes(s.analysed_bytes)}, mostly stream head "
                               f"({s.head_entropy:.2f} bits/byte, chi2 {s.head_chi2:.0f}): too little to tell "
                               "cleartext from a handshake or ciphertext"),
}


_ReasonRow = namedtuple("_ReasonRow", "analysed_bytes printable body_bytes body_plain body_compressed "
                        "body_random block_plain entropy chi2 windows head_entropy head_chi2")


def direction_reasons(columns: dict[str, np.ndarray], basis: np.ndarray) -> list[str]:
    """One line per direction saying what its verdict (``basis`` code) rests on."""
    builders = [_REASONS[name] for name in BASES]
    rows = map(_ReasonRow._make, zip(*(columns[name].tolist() for name in _ReasonRow._fields)))
    return [builders[b](row) for b, row in zip(basis.tolist(), rows)]


def _distinct_rows(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first row of each distinct row of ``values`` (compared bit for bit)
    and, per row, which of them it is: rows hashed to one word and the words
    made unique (``np.unique(axis=0)`` sorts rows with a generic comparison,
    ~10x slower), checked against their representative; rows sorted whole
    only on a hash collision."""
    bits = np.ascontiguousarray(values).view(np.uint64)
    hashed = np.zeros(len(bits), dtype=np.uint64)
    for column in bits.T:  # FNV-style: multiply, then mix in the next word
        hashed = (hashed * np.uint64(0x100000001B3)) ^ column ^ (column >> np.uint64(29))
    _, first, inverse = np.unique(hashed, return_index=True, return_inverse=True)
    if not (bits == bits[first[inverse]]).all():
        _, first, inverse = np.unique(bits, axis=0, return_index=True, return_inverse=True)
    return first, inverse.ravel()


def flow_verdicts(orig: Mapping[str, np.ndarray], resp: Mapping[str, np.ndarray],
                  orig_stats: Mapping[str, np.ndarray], resp_stats: Mapping[str, np.ndarray]) -> dict[str, object]:
    """Combine the two directions of each flow (rows aligned; columns of
    ``direction_verdict_columns`` and of the statistics):
    ``verdict`` codes, ``confidence`` and the ``reason`` lines."""
    ov, rv = np.asarray(orig["verdict"]), np.asarray(resp["verdict"])
    oc, rc = np.asarray(orig["confidence"]), np.asarray(resp["confidence"])
    orig_bytes = np.asarray(orig_stats["analysed_bytes"])
    resp_bytes = np.asarray(resp_stats["analysed_bytes"])
    o_plain, r_plain = ov == PLAINTEXT, rv == PLAINTEXT
    o_known, r_known = ov != UNKNOWN, rv != UNKNOWN
    # Which direction speaks for the flow: plaintext first, then the bigger decided one.
    use_orig = np.where(
        o_plain | r_plain,
        o_plain & (~r_plain | (oc >= rc)),
        np.where(o_known & r_known, orig_bytes >= resp_bytes, o_known | ~r_known & (orig_bytes >= resp_bytes)),
    )
    verdict = np.where(use_orig, ov, rv)
    confidence = np.where(use_orig, oc, rc)
    other = np.where(use_orig, rv, ov)
    disagree = (other != UNKNOWN) & (other != verdict) & (verdict != PLAINTEXT)
    confidence = np.round(np.where(disagree, confidence * 0.8, confidence), 2)
    deciding = {name: np.where(use_orig, np.asarray(orig_stats[name]), np.asarray(resp_stats[name]))
                for name in _ReasonRow._fields}
    basis = np.where(use_orig, np.asarray(orig["basis"]), np.asarray(resp["basis"]))
    # Each distinct combination of what a reason says is worded once (short flows repeat a few).
    said = np.column_stack([use_orig, disagree, other, basis, *deciding.values()]).astype(np.float64)
    first, inverse = _distinct_rows(said)
    texts = direction_reasons({name: values[first] for name, values in deciding.items()}, basis[first])
    worded = [
        ("orig: " if u else "resp: ") + text + (f" (the other direction looks {VERDICTS[o]})" if d else "")
        for u, text, o, d in zip(use_orig[first].tolist(), texts, other[first].tolist(), disagree[first].tolist())
    ]
    reason = np.array(worded, dtype=object)[inverse.ravel()]
    return {"verdict": verdict, "confidence": confidence, "reason": reason}
