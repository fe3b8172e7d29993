"""Which credentials to rotate: the distinct secrets of an analysis, redacted.

The secrets table lists matches (the same password in every copy of a
config file in guest RAM is one match each); a reviewer needs the distinct
secrets, per kind and host pair, and enough of each to find it (the URL's
scheme and host, the key's name) but never the secret or the account.
Distinctness is decided on the matched bytes, which stay in this module:
only the redacted form and counts leave it.
"""

from __future__ import annotations

import re

import pandas as pd

DIGEST_COLUMNS = ["kind", "hosts", "what", "occurrences", "flows", "first_seen"]
# The match starts this far into its excerpt unless the packet began closer
# (findings.secrets.EXCERPT_CONTEXT).
CONTEXT = 48
_URL_CREDENTIALS = re.compile(rb"^([a-z][a-z0-9+.-]*://)([^:/@\s]*):([^@\s]*)@$", re.IGNORECASE)
_HOST = re.compile(rb"^[A-Za-z0-9.:\[\]_-]{1,80}")


def distinct_secrets(secrets_raw: pd.DataFrame, flows: pd.DataFrame) -> pd.DataFrame:
    """One row per distinct secret (kind, host pair, matched bytes) of the
    listed matches: its redacted form, how often it was listed, in how many
    flows, and when first seen; most widespread first."""
    if secrets_raw.empty:
        return pd.DataFrame(columns=DIGEST_COLUMNS)
    hosts = {str(f.uid): f"{f.orig_h} -> {f.resp_h}"  # host pairs, as findings name them
             for f in flows[flows["uid"].isin(secrets_raw["uid"])].itertuples(index=False)}
    rows = []
    for s in secrets_raw.itertuples(index=False):
        secret, after = _matched(s.excerpt, int(s.length), str(s.label))
        if not secret:  # no excerpt (an export written without payload): each match counts on its own
            secret = f"{s.uid} {s.direction} {s.offset}".encode()
        rows.append({"kind": str(s.kind), "hosts": hosts.get(str(s.uid), ""), "secret": secret,
                     "what": _redacted(secret, after, str(s.label)), "uid": str(s.uid), "ts": s.ts})
    table = pd.DataFrame(rows)
    digest = (table.groupby(["kind", "hosts", "secret"], sort=False)
              .agg(what=("what", "first"), occurrences=("uid", "size"), flows=("uid", "nunique"),
                   first_seen=("ts", "min"))
              .reset_index()
              .sort_values(["occurrences", "first_seen"], ascending=[False, True], kind="stable"))
    return digest[DIGEST_COLUMNS].reset_index(drop=True)


def _matched(excerpt: object, length: int, label: str) -> tuple[bytes, bytes]:
    """The matched bytes inside their excerpt, and the bytes after them: CONTEXT
    bytes in, or nearer the start when the packet began closer (the match
    opens with the label's first word)."""
    data = bytes(excerpt) if isinstance(excerpt, (bytes, bytearray, memoryview)) else b""
    opening = label.split(" ", 1)[0].rstrip(":").encode("ascii", "ignore").lower()
    latest = min(CONTEXT, max(len(data) - length, 0))
    for position in range(latest, -1, -1):
        candidate = data[position:position + length]
        if opening and candidate.lower().startswith(opening):
            return candidate, data[position + length:]
    # a label that does not open the match (PEM keys): CONTEXT bytes in
    return data[latest:latest + length], data[latest + length:]


def _redacted(secret: bytes, after: bytes, label: str) -> str:
    """A URL keeps its scheme and host (the service whose account to rotate),
    user and password become their lengths; anything else is the scanner's
    label, which names the key and the length only."""
    url = _URL_CREDENTIALS.match(secret)
    if not url:
        return label
    host = _HOST.match(after)
    return (url.group(1).decode("ascii", "replace") + f"<{len(url.group(2))} bytes>:"
            f"<{len(url.group(3))} bytes>@" + (host.group(0).decode("ascii") if host else ""))
