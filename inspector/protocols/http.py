"""HTTP/1.x (RFC 9112): the OpenStack APIs on the internal API network.

Request line "METHOD target HTTP/1.x", status line "HTTP/1.x NNN reason",
header lines up to an empty line, then Content-Length bytes of body (or
chunked). Several messages per connection (keep-alive) are walked.

Credentials are reported as presence and length only: 'X-Auth-Token' and
'X-Subject-Token' (keystone tokens), 'Authorization' (scheme named: Basic
is a reversible password), 'Cookie'/'Set-Cookie', and a JSON body with a
"password" key. The request target is reported without its query string.

Measured on http-api (Python http.server + curl): the first connection is
the keystone-style token POST (password in the JSON body, X-Subject-Token
in the response), the other two carry X-Auth-Token headers.

Fields, request side: role, version, requests, methods, first_request
('METHOD /path'), paths, host, user_agent, x_auth_token (count, lengths),
x_subject_token, authorization (list of schemes with lengths), cookie,
password_in_body, password_keys. Response side: role, version, responses, statuses,
server, x_subject_token, set_cookie, password_in_body, password_keys.
"""

from __future__ import annotations

import re

from .base import CLEARTEXT, DIGIT, NOTHING, Detection, anywhere, clean, lead, line, listing, signature

METHODS = (b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE")
_REQUEST = re.compile(rb"(GET|POST|PUT|DELETE|HEAD|OPTIONS|PATCH|CONNECT|TRACE) ([\x21-\x7e]{1,4096}) HTTP/(1\.[01])\r?\n")
_STATUS = re.compile(rb"HTTP/(1\.[01]) ([1-5]\d\d)(?: [\x20-\x7e\x80-\xff]*)?\r?\n")
_HEADER = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}):[ \t]*([^\r\n]*)\r?\n")
_MID_REQUEST = re.compile(rb"(?:GET|POST|PUT|DELETE|HEAD|OPTIONS|PATCH) /[\x21-\x7e]{0,4096} HTTP/1\.[01]\r?\n")
_PASSWORD = re.compile(rb'"(password|passwd|admin_password|adminPass|secret)"\s*:\s*"')
MAX_MESSAGES = 256
MAX_HEADERS = 128
BODY_SCAN = 65536             # bytes of each body searched for "password" keys

# What each detector can accept (prefilter.py): a request line, a status line, "HTTP/1." anywhere.
REQUEST_START = signature(*((lead(m + b" "), anywhere(b" HTTP/1.")) for m in METHODS))
RESPONSE_START = signature(lead(b"HTTP/1.", set(b"01"), b" ", set(b"12345"), DIGIT, DIGIT))
MID = signature(anywhere(b"HTTP/1."))


def _new(role: str) -> dict:
    f = {"role": role, "version": None, "x_auth_token": [], "x_subject_token": [], "authorization": [],
         "cookie": 0, "password_in_body": False, "password_keys": []}
    if role == "client":
        f.update({"requests": 0, "methods": [], "first_request": None, "paths": [], "host": None,
                  "user_agent": None})
    else:
        f.update({"responses": 0, "statuses": [], "server": None, "set_cookie": 0})
    return f


_USERINFO = re.compile(rb"^([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def _without_userinfo(target: bytes) -> bytes:
    """An absolute-form target (RFC 9112 3.2.2) without its ``user:password@``:
    ``http://admin:pw@host/x`` -> ``http://host/x``."""
    return _USERINFO.sub(rb"\1", target)


def _headers(d: bytes, pos: int, f: dict):
    """Parse header lines from pos; returns (end of headers, content length, chunked) or None."""
    length, chunked = None, False
    for _ in range(MAX_HEADERS):
        if d.startswith(b"\r\n", pos) or d.startswith(b"\n", pos):
            return pos + (2 if d[pos] == 13 else 1), length, chunked
        m = _HEADER.match(d, pos)
        if m is None:
            return None
        name, value = m.group(1).lower(), m.group(2).strip()
        pos = m.end()
        if name == b"content-length" and value.isdigit():
            length = int(value)
        elif name == b"transfer-encoding" and b"chunked" in value.lower():
            chunked = True
        elif name == b"x-auth-token":
            f["x_auth_token"].append(len(value))
        elif name == b"x-subject-token":
            f["x_subject_token"].append(len(value))
        elif name in (b"authorization", b"proxy-authorization"):
            scheme, space, _credentials = value.partition(b" ")
            named = clean(scheme.decode("ascii", "replace"), 16) if space else "without a scheme"  # else: the secret
            f["authorization"].append(f"{named} ({len(value)} chars)")
        elif name == b"cookie":
            f["cookie"] += 1
        elif name == b"set-cookie" and "set_cookie" in f:
            f["set_cookie"] += 1
        elif name == b"host" and "host" in f and f["host"] is None:
            f["host"] = clean(value.decode("ascii", "replace"), 80)
        elif name == b"user-agent" and "user_agent" in f and f["user_agent"] is None:
            f["user_agent"] = clean(value.decode("ascii", "replace"), 60)
        elif name == b"server" and "server" in f and f["server"] is None:
            f["server"] = clean(value.decode("ascii", "replace"), 60)
    return None


def _passwords(d: bytes, start: int, end: int, f: dict) -> None:
    """Flag JSON keys that carry a password (the key names, never the values)."""
    for m in _PASSWORD.finditer(d, start, end):
        f["password_in_body"] = True
        key = m.group(1).decode()
        if key not in f["password_keys"]:
            f["password_keys"].append(key)


def _skip_chunked(d: bytes, pos: int, f: dict) -> int:
    for _ in range(4096):
        eol = d.find(b"\r\n", pos, pos + 32)
        if eol < 0:
            return len(d)
        try:
            size = int(d[pos:eol].split(b";")[0], 16)
        except ValueError:
            return len(d)
        _passwords(d, eol + 2, eol + 2 + min(size, BODY_SCAN), f)
        pos = eol + 2 + size + 2
        if size == 0:
            return pos
    return len(d)


def _walk(d: bytes, pos: int, f: dict, need_headers: bool = False) -> tuple[int, int]:
    """Walk messages from pos; returns how many were parsed (with their headers if need_headers)
    and where the last one ended."""
    n = 0
    client = f["role"] == "client"
    for _ in range(MAX_MESSAGES):
        m = (_REQUEST if client else _STATUS).match(d, pos)
        if m is None:
            break
        n += 1
        if client:
            method, target, version = m.group(1).decode(), m.group(2), m.group(3).decode()
            path = clean(_without_userinfo(target.split(b"?", 1)[0]).decode("ascii", "replace"), 80)
            if b"?" in target:
                path += "?..."
            f["requests"] += 1
            if method not in f["methods"]:
                f["methods"].append(method)
            if f["first_request"] is None:
                f["first_request"] = f"{method} {path}"
            if len(f["paths"]) < 16:
                f["paths"].append(f"{method} {path}")
        else:
            version, status = m.group(1).decode(), int(m.group(2))
            f["responses"] += 1
            f["statuses"].append(status)
        f["version"] = f["version"] or f"HTTP/{version}"
        h = _headers(d, m.end(), f)
        if h is None:
            if need_headers:
                n -= 1
            break
        pos, length, chunked = h
        if chunked:
            pos = _skip_chunked(d, pos, f)
        elif length:
            _passwords(d, pos, pos + min(length, BODY_SCAN), f)
            pos += length
        if pos >= len(d):
            break
    return n, pos


def _tunnel(d: bytes, end: int, f: dict) -> str:
    """A CONNECT request or its 2xx answer followed at once by TLS: set ``tls_from``/``upgrade``."""
    if not d.startswith(b"\x16\x03", end):
        return ""
    last = f["paths"][-1] if f["role"] == "client" and f["paths"] else ""
    if f["role"] == "client" and not last.startswith("CONNECT "):
        return ""
    if f["role"] == "server" and not (f["statuses"] and 200 <= f["statuses"][-1] < 300):
        return ""
    f["upgrade"], f["tls_from"] = "http CONNECT", end
    return f"CONNECT tunnel: TLS from offset {end}"


def _credentials(f: dict) -> str:
    found = []
    if f["x_auth_token"]:
        found.append(f"X-Auth-Token header in clear ({len(f['x_auth_token'])}x, {f['x_auth_token'][0]} chars)")
    if f["x_subject_token"]:
        found.append(f"X-Subject-Token header in clear ({f['x_subject_token'][0]} chars)")
    if f["authorization"]:
        found.append(f"Authorization {f['authorization'][0]} in clear")
    if f["cookie"] or f.get("set_cookie"):
        found.append("cookies in clear")
    if f["password_in_body"]:
        keys = ", ".join(f'"{k}"' for k in f["password_keys"])
        found.append(f"JSON body with {keys} key in clear")
    return "; ".join(found)


def _request_detection(d: bytes, pos: int, head: str, mid: bool = False) -> Detection | None:
    f = _new("client")
    n, end = _walk(d, pos, f, need_headers=mid)
    if n <= 0:
        return None
    host = f" (host {f['host']})" if f["host"] else ""
    reqs = f"{f['requests']} request{'s' if f['requests'] > 1 else ''}: {listing(f['paths'], 2)}{host}"
    tunnel = _tunnel(d, end, f)
    return Detection("http", pos, line(f"{head} {f['version']}", reqs, _credentials(f), tunnel),
                     NOTHING if tunnel else CLEARTEXT, f)


def _response_detection(d: bytes, pos: int, head: str, mid: bool = False) -> Detection | None:
    f = _new("server")
    n, end = _walk(d, pos, f, need_headers=mid)
    if n <= 0:
        return None
    statuses = f"{f['responses']} response{'s' if f['responses'] > 1 else ''}: {listing(f['statuses'], 4)}"
    server = f"server {f['server']}" if f["server"] else ""
    tunnel = _tunnel(d, end, f)
    return Detection("http", pos, line(f"{head} {f['version']}", statuses, server, _credentials(f), tunnel),
                     NOTHING if tunnel else CLEARTEXT, f)


def request_at_start(data: bytes) -> Detection | None:
    return _request_detection(data, 0, "HTTP requests")


def response_at_start(data: bytes) -> Detection | None:
    return _response_detection(data, 0, "HTTP responses")


def mid_stream(data: bytes) -> Detection | None:
    """A request or status line with a complete header block, anywhere in the data.

    Anchored on "HTTP/1." (the start of a status line, the end of a request line), found
    with bytes.find. A message may follow the previous body without a line break.
    """
    i = data.find(b"HTTP/1.")
    tried = set()
    for _ in range(64):
        if i < 0:
            return None
        if _STATUS.match(data, i):
            start = i
        else:
            m = _MID_REQUEST.search(data, max(data.rfind(b"\n", max(0, i - 4200), i) + 1, i - 4200), i + 10)
            start = m.start() if m else -1
        if start >= 0 and start not in tried:
            tried.add(start)
            if data.startswith(b"HTTP/", start):
                det = _response_detection(data, start, "HTTP response mid-stream,", mid=True)
            else:
                det = _request_detection(data, start, "HTTP request mid-stream,", mid=True)
            if det is not None:
                return det
        i = data.find(b"HTTP/1.", i + 1)
    return None
