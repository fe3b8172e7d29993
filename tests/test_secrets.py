"""Secrets in cleartext payload: real HTTP traffic recorded on loopback with
tcpdump, the pattern table on byte strings, a TLS capture and guest RAM."""

from __future__ import annotations

import base64
import gzip
import http.client
import http.server
import os
import random
import re
import time
from pathlib import Path
from typing import NamedTuple

import dpkt
import numpy as np
import pandas as pd
import pytest

import inspector
from inspector.capture import constants as C
from inspector.capture import decode as D
from inspector.capture.reader import PacketBatch
from inspector.findings import secret_match as M
from inspector.schema import SECRET_COLUMNS
from inspector.findings.secrets import (
    EXCERPT_CONTEXT,
    EXCERPT_MAX,
    MAX_KEPT,
    PATTERNS,
    SECRET_COUNT_COLUMNS,
    SecretScanner,
)
from inspector.flows import kernels as K
from loopback_capture import serving, start_tcpdump, stop_tcpdump

CAPTURES = Path(__file__).resolve().parents[1] / "captures"

FERNET = b"gAAAAAB" + base64.urlsafe_b64encode(os.urandom(135)).rstrip(b"=")
SUBJECT_TOKEN = b"gAAAAAB" + base64.urlsafe_b64encode(os.urandom(120)).rstrip(b"=")
BASIC = base64.b64encode(b"admin:basic-pw-77")
PEM = (b"-----BEGIN RSA PRIVATE KEY-----\n"
       + b"\n".join(re.findall(rb".{1,64}", base64.b64encode(os.urandom(1190))))
       + b"\n-----END RSA PRIVATE KEY-----")
NOVA_CONF = b"""[DEFAULT]
transport_url = rabbit://nova:s3cret-rabbit-pw@ctl:5672/
#admin_password = <None>

[database]
connection = mysql+pymysql://nova:db-pw-0042@ctl/nova

[keystone_authtoken]
auth_type = password
admin_password = hunter2-admin

[security_compliance]
password_expires_days = 90
"""
BODY = NOVA_CONF + b'\n{"auth": {"identity": {"methods": ["password"]}}}\n' + PEM + b"\n"
SECRET_VALUES = [b"s3cret-rabbit-pw", b"db-pw-0042", b"hunter2-admin", FERNET, SUBJECT_TOKEN, BASIC,
                 PEM.splitlines()[1]]

EXPECTED = {  # (direction, kind, label): the bytes at the row's stream offset
    ("orig", "token", f"X-Auth-Token: <{len(FERNET)} bytes> (Keystone Fernet)"): b"X-Auth-Token: " + FERNET,
    ("orig", "basic-auth", f"Authorization: Basic <{len(BASIC)} bytes>"): b"Authorization: Basic " + BASIC,
    ("orig", "cloud-credential", "rabbit:// URL with credentials"): b"rabbit://nova:s3cret-rabbit-pw@",
    ("orig", "cloud-credential", "mysql+pymysql:// URL with credentials"): b"mysql+pymysql://nova:db-pw-0042@",
    ("orig", "password", "admin_password = <13 bytes>"): b"admin_password = hunter2-admin",
    ("orig", "private-key", "PEM RSA private key"): PEM,
    ("resp", "token", f"X-Subject-Token: <{len(SUBJECT_TOKEN)} bytes> (Keystone Fernet)"):
        b"X-Subject-Token: " + SUBJECT_TOKEN,
}


class _Api(http.server.BaseHTTPRequestHandler):
    """Answers a POST like Keystone issuing a token; GETs are capture probes."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(201)
        self.send_header("X-Subject-Token", SUBJECT_TOKEN.decode())
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def do_GET(self) -> None:
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def _get(port: int, path: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        conn.getresponse().read()
    finally:
        conn.close()


def _wait_until_captured(pcap: Path, port: int, marker: str) -> None:
    """Send probe requests until one shows in the file (tcpdump -U writes each packet)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        _get(port, marker)
        if pcap.exists() and marker.encode() in pcap.read_bytes():
            return
        time.sleep(0.1)
    pytest.fail(f"tcpdump did not record the probe {marker} within 15 s")


def _post_secrets(port: int) -> int:
    """POST nova.conf and a private key with a token and basic auth; return the client port."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.connect()
        client_port = conn.sock.getsockname()[1]
        conn.request("POST", "/v2.1/os-migrate-config", body=BODY,
                     headers={"X-Auth-Token": FERNET.decode(), "Authorization": "Basic " + BASIC.decode(),
                              "Content-Type": "text/plain"})
        conn.getresponse().read()
    finally:
        conn.close()
    return client_port


@pytest.fixture(scope="module")
def api_capture(tmp_path_factory) -> tuple[Path, int]:
    """A real capture of one API exchange that carries every kind of secret."""
    pcap = tmp_path_factory.mktemp("secrets") / "api.pcap"
    with serving(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api)) as port:
        tcpdump = start_tcpdump(pcap, f"tcp port {port}")
        try:
            _wait_until_captured(pcap, port, "/capture-ready")
            client_port = _post_secrets(port)
            _wait_until_captured(pcap, port, "/capture-done")
        finally:
            stop_tcpdump(tcpdump)
    return pcap, client_port


def _streams(pcap: Path, open_file=open) -> dict[tuple[int, int], bytes]:
    """Each TCP direction reassembled by dpkt, from the byte after the SYN."""
    segments: dict[tuple[int, int], dict[int, bytes]] = {}
    base: dict[tuple[int, int], int] = {}
    with open_file(pcap, "rb") as handle:
        for _ts, frame in dpkt.pcap.Reader(handle):
            tcp = dpkt.ethernet.Ethernet(frame).data.data
            key = (tcp.sport, tcp.dport)
            if tcp.flags & dpkt.tcp.TH_SYN:
                base[key] = tcp.seq + 1
            elif tcp.data:
                segments.setdefault(key, {})[tcp.seq] = bytes(tcp.data)
    streams = {}
    for key, parts in segments.items():
        stream = bytearray()
        for seq, data in sorted(parts.items()):
            at = (seq - base[key]) & 0xFFFFFFFF
            stream[at:at + len(data)] = data
        streams[key] = bytes(stream)
    return streams


def _at_offsets_are_the_matches(rows: pd.DataFrame, flow: pd.Series, streams: dict) -> list[bytes]:
    """The bytes at each row's stream offset, checked against its excerpt."""
    found = []
    for row in rows.itertuples(index=False):
        key = (flow.orig_p, flow.resp_p) if row.direction == "orig" else (flow.resp_p, flow.orig_p)
        matched = streams[key][row.offset:row.offset + row.length]
        assert len(matched) == row.length and matched[:200] in row.excerpt, row.label
        found.append(matched)
    return found


def test_real_api_exchange_exposes_every_kind(api_capture):
    pcap, client_port = api_capture
    result = inspector.analyze(pcap)
    flow = result.flows[result.flows["orig_p"] == client_port].iloc[0]
    assert flow.verdict == "plaintext"
    raw = result.secrets_raw()
    rows = raw[raw["uid"] == flow.uid]
    assert set(zip(rows["direction"], rows["kind"], rows["label"])) == set(EXPECTED)
    assert len(rows) == len(EXPECTED)
    matched = _at_offsets_are_the_matches(rows, flow, _streams(pcap))
    for row, at_offset in zip(rows.itertuples(index=False), matched):
        assert at_offset == EXPECTED[(row.direction, row.kind, row.label)]
    counts = result.secret_counts[result.secret_counts["uid"] == flow.uid]
    assert dict(zip(zip(counts["direction"], counts["kind"]), counts["count"])) == {
        ("orig", "token"): 1, ("orig", "basic-auth"): 1, ("orig", "cloud-credential"): 2,
        ("orig", "password"): 1, ("orig", "private-key"): 1, ("resp", "token"): 1}


def test_labels_never_carry_the_secret(api_capture):
    secrets = inspector.analyze(api_capture[0]).secrets
    assert len(secrets)
    for label in secrets["label"]:
        assert not any(value.decode() in label for value in SECRET_VALUES), label


def test_secrets_tables_have_the_documented_dtypes(api_capture):
    result = inspector.analyze(api_capture[0])
    assert list(result.secrets.columns) == list(SECRET_COLUMNS)
    assert list(result.secret_counts.columns) == list(SECRET_COUNT_COLUMNS)
    assert str(result.secrets["ts"].dtype) == "datetime64[ns, UTC]"
    for name, (dtype, _doc) in {**SECRET_COLUMNS, **SECRET_COUNT_COLUMNS}.items():
        if dtype in ("string", "int64"):
            table = result.secrets if name in SECRET_COLUMNS else result.secret_counts
            assert str(table[name].dtype) == dtype, name
    assert set(result.secrets["uid"]) <= set(result.flows["uid"])


def test_the_scan_can_be_switched_off(api_capture):
    result = inspector.analyze(api_capture[0], secrets=False)
    assert result.secrets.empty and result.secret_counts.empty
    assert list(result.secrets.columns) == list(SECRET_COLUMNS)


def test_tls_flows_expose_nothing():
    result = inspector.analyze(CAPTURES / "https-api.pcap.gz")
    assert (result.flows["verdict"] == "encrypted").all()
    assert result.secrets.empty and result.secret_counts.empty


def test_guest_ram_of_a_plaintext_migration():
    """The guest's page cache holds nova.conf-like text with broker and database
    URLs and an nss-ldap example (`#BindPasswd: secret`): real strings, found
    once per segment that carries them whole (919 and 4), and nothing else."""
    path = CAPTURES / "qemu-plain.pcap.gz"
    result = inspector.analyze(path)
    counts = dict(zip(result.secret_counts["kind"], result.secret_counts["count"]))
    with gzip.open(path, "rb") as handle:
        segments = [bytes(dpkt.ethernet.Ethernet(frame).data.data.data) for _ts, frame in dpkt.pcap.Reader(handle)]
    url_with_credentials = re.compile(rb"://[!-~]+?:[!-~]+?@")
    assert counts == {
        "cloud-credential": sum(len(url_with_credentials.findall(s)) for s in segments),
        "password": sum(s.count(b"BindPasswd: secret") for s in segments),
    }
    flow = result.flows.iloc[0]
    streams = _streams(path, gzip.open)
    for matched in _at_offsets_are_the_matches(result.secrets_raw(), flow, streams):
        assert re.fullmatch(rb"(rabbit|mysql\+pymysql)://[a-z]+:[0-9a-f]+@|BindPasswd: secret", matched), matched


# -- the pattern table, on payload bytes -------------------------------------

def _scan(*payloads: bytes, verdict: str = "plaintext") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scan adjacent UDP payloads of one flow direction (one batch)."""
    lengths = [len(p) for p in payloads]
    fields = np.zeros((D.N_FIELDS, len(payloads)), dtype=np.int64)
    fields[D.F_PAYLOAD_OFF] = np.cumsum([0] + lengths[:-1])
    fields[D.F_PAYLOAD_CAP] = lengths
    fields[D.F_PROTO] = C.IPPROTO_UDP
    batch = PacketBatch(np.frombuffer(b"".join(payloads), dtype=np.uint8).copy(), fields,
                        np.zeros((4, len(payloads)), dtype=np.uint64))
    scanner = SecretScanner()
    n = len(payloads)
    scanner.scan(batch, np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int8),
                 np.zeros((2, K.N_SLOT_COLS), dtype=np.int64))
    return scanner.take([0], pd.DataFrame({"uid": ["Ctest"], "verdict": [verdict]}), np.array([0]))


FERNET_100 = b"gAAAAAB" + b"x" * 100

FOUND = [
    (b"password = correct-horse\n", "password", "password = <13 bytes>"),
    (b"  admin_password: hunter2\n", "password", "admin_password: <7 bytes>"),
    (b'{"user": {"name": "admin", "password": "s3cr3t"}}', "password", "password: <6 bytes>"),
    (b"export OS_PASSWORD=hunter22\n", "password", "OS_PASSWORD = <8 bytes>"),
    (b"db_passwd=abc123;", "password", "db_passwd = <6 bytes>"),
    (b"secret = 0123456789abcdef\n", "password", "secret = <16 bytes>"),
    (b"SECRET_KEY = 'django-insecure'\n", "password", "SECRET_KEY = <15 bytes>"),
    (b"key id AKIAIOSFODNN7EXAMPLE.", "cloud-credential", "AWS access key id <20 bytes>"),
    (b"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n", "cloud-credential",
     "aws_secret_access_key = <40 bytes>"),
    (b"OS_APPLICATION_CREDENTIAL_SECRET=abcdef123\n", "cloud-credential",
     "OS_APPLICATION_CREDENTIAL_SECRET = <9 bytes>"),
    (b"transport_url = rabbit://nova:pw123@ctl:5672/\n", "cloud-credential", "rabbit:// URL with credentials"),
    (b"connection = mysql+pymysql://nova:pw@ctl/nova\n", "cloud-credential",
     "mysql+pymysql:// URL with credentials"),
    (b"X-Auth-Token: " + FERNET_100 + b"\r\n", "token", "X-Auth-Token: <107 bytes> (Keystone Fernet)"),
    (b"x-subject-token: abcdef0123456789\r\n", "token", "x-subject-token: <16 bytes>"),
    (b'{"id": "' + FERNET_100 + b'"}', "token", "Keystone Fernet token <107 bytes>"),
    (b"t=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZG1pbiJ9.c2lnbmF0dXJl&", "token", "JWT <54 bytes>"),
    (b"Authorization: Bearer abcdefghijklmnop\r\n", "token", "Authorization: Bearer <16 bytes>"),
    (b"admin_token = 0123456789abcdef\n", "token", "admin_token = <16 bytes>"),
    (b"Authorization: Basic YWRtaW46cGFzcw==\r\n", "basic-auth", "Authorization: Basic <16 bytes>"),
    (b"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
     "private-key", "OpenSSH private key"),
    (b"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----", "private-key", "PEM EC private key"),
    (b'{"private_key": "-----BEGIN PRIVATE KEY-----\\nMIIEvQ\\n-----END PRIVATE KEY-----\\n"}', "private-key",
     "PEM private key (PKCS#8)"),
    ((b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,0123\n\nMIIE\n"
      b"-----END RSA PRIVATE KEY-----"), "private-key", "PEM RSA private key, passphrase-protected"),
]


def test_every_kind_is_documented():
    documented = SECRET_COLUMNS["kind"][1].replace(" or ", ", ").split(", ")
    assert sorted({p.kind for p in PATTERNS}) == sorted(documented)


@pytest.mark.parametrize(("payload", "kind", "label"), FOUND, ids=[label for _p, _k, label in FOUND])
def test_each_pattern_finds_its_secret_once(payload, kind, label):
    secrets, counts = _scan(payload)
    assert (secrets["kind"].tolist(), secrets["label"].tolist(), counts["count"].tolist()) == ([kind], [label], [1])
    assert secrets["offset"].tolist() == [-1]  # not TCP


NOT_SECRETS = [
    b"Enter your password to continue.",
    b"password:\n",
    b"#admin_password = <None>\n",
    b"password_expires_days = 90\n",
    b'"methods": ["password"]',
    b"passwd:         files systemd\n",
    b"X-Auth-Token: {SHA256}abcdef0123456789\r\n",
    b'"password": null',
    b"password = ${DB_PASSWORD}\n",
    b"password = getpass.getpass()\n",
    b"'password': '***'",
    b'password = "*"\n',
    b"https://docs.openstack.org/nova/latest/",
    b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----",
    b"-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
    b"rabbit://openstack:e\x00\x00\x11p(afffb8bd4@controller:5672/",  # a page header cuts it
]


@pytest.mark.parametrize("payload", NOT_SECRETS)
def test_words_and_placeholders_are_not_secrets(payload):
    secrets, counts = _scan(payload)
    assert secrets.empty and counts.empty


def test_a_secret_cut_by_the_segment_boundary_is_missed():
    secrets, _ = _scan(b"GET / HTTP/1.1\r\nX-Auth-To", b"ken: abcdefghijklmnop\r\n")
    assert secrets.empty


def test_a_match_stops_at_the_end_of_its_payload():
    secrets, _ = _scan(b"password = hunter22", b"-more-text-that-is-not-it\n")
    assert secrets["label"].tolist() == ["password = <8 bytes>"]


def test_counts_are_exact_and_rows_bounded():
    secrets, counts = _scan(b"".join(b"password = value-%02d\n" % i for i in range(10)))
    assert counts["count"].tolist() == [10]
    assert len(secrets) == MAX_KEPT


def test_a_batch_with_more_anchors_than_one_kernel_call_lists():
    lines = 9000  # two anchors each (x-auth-token, token): more than _FOUND_ROWS
    _, counts = _scan(b"X-Auth-Token: abcdefgh12345678\n" * lines)
    assert counts["count"].tolist() == [lines]


def test_excerpts_are_capped_around_the_match():
    key = b"-----BEGIN PRIVATE KEY-----\n" + b"A" * 3000 + b"\n-----END PRIVATE KEY-----"
    lead = b"x" * 100
    secrets, _ = _scan(lead + key + b"y" * 100)
    row = secrets.iloc[0]
    assert row.length == len(key)
    assert row.excerpt == (lead + key)[len(lead) - EXCERPT_CONTEXT:][:EXCERPT_MAX]


def test_flows_proved_encrypted_keep_no_rows():
    secrets, counts = _scan(b"password = hunter22\n", verdict="encrypted")
    assert secrets.empty and counts.empty


# -- the compiled matchers against the regexes -------------------------------

def _regex_matches(payload: bytes) -> list[tuple[int, int, str]]:
    """Python's ``re.match`` at every anchor in order, an anchor inside a match
    skipped, the earlier pattern first at one byte: the semantics kept."""
    folded = payload.lower()  # ASCII only, as re.IGNORECASE on bytes
    hits = []
    for index, pattern in enumerate(PATTERNS):
        text = folded if pattern.ignore_case else payload
        for anchor in pattern.anchors:
            at = text.find(anchor)
            while at >= 0:
                hits.append((at, index))
                at = text.find(anchor, at + 1)
    found, reached = [], 0
    for at, index in sorted(set(hits)):
        if at >= reached and (m := PATTERNS[index].regex.match(payload, at)):
            found.append((at, m.end(), PATTERNS[index].name))
            reached = m.end()
    return found


def _compiled_matches(payload: bytes, scanner: SecretScanner) -> list[tuple[int, int, str]]:
    """Every match the compiled scan finds in one payload (none left unlisted)."""
    out = np.empty((len(payload) + 1, M.N_HIT_COLS), dtype=np.int64)
    counts = np.zeros((2, len(scanner.kinds)), dtype=np.int64)
    listed, _, _ = M.scan_payloads(np.frombuffer(payload, dtype=np.uint8).copy(), np.array([0]),
                                   np.array([len(payload)]), np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int8),
                                   np.zeros(0, dtype=np.bool_), 0, 0, *scanner.anchors, scanner.matcher,
                                   scanner.kind_of, counts, len(payload) + 1, out)
    return [(start, end, PATTERNS[index].name) for start, end, index in out[:listed, [M.HIT_START, M.HIT_END,
                                                                                       M.HIT_PATTERN]].tolist()]


_RUN_LENGTHS = (1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 63, 64, 65, 79, 80, 81, 99, 100, 101, 127, 128, 129, 255, 256, 257,
                2047, 2048, 2049, 4095, 4096, 4097, 8191, 8192, 8193, 16384, 16385)
_RUN_ALPHABETS = (b"abcXYZ019", b"AKIA0123456789XYZ", b"eyJhbGci0_-", b"A+/=9z", b"!#~}*$%.", b"*", b" \t",
                  b"abc\x80\xff", b"ab:cd", b"ab.cd")
_PIECES = sorted({a for p in PATTERNS for a in p.anchors} | {a.upper() for p in PATTERNS for a in p.anchors} | {
    b"Password", b"X-Auth-Token", b"secret_key", b"_KEY", b"passwords", b"=", b":", b" ", b"\t", b"  =  ", b": ",
    b'"', b"'", b'": "', b"*", b"***", b"none", b"NULL", b"nil", b"true ", b"falsey", b"files", b"systemd",
    b"ldapx", b"$", b"%", b"!", b"{", b"}", b"<", b">", b",", b";", b"&", b"(", b"[", b"\n", b"\r\n", b"\r",
    b"\\n", b"\\", b"\x00", b"\x01", b"\x7f", b"\xff", b"@", b"/", b".", b"-", b"_", b"+", b"~", b"basic ",
    b"Bearer\t", b"-----END ", b"RSA ", b"EC ", b"ENCRYPTED ", b"PGP ", b"OPENSSH ", b"PRIVATE KEY", b" BLOCK",
    b"-----", b"Proc-Type: ", b"DEK-Info: ", b"rabbit", b"nova", b"ctl", b"[::1]", b"eyJhbGciOiJ", b"abc"})


class _Run(NamedTuple):
    """A run of bytes drawn from ``alphabet``, its length near a repeat bound."""

    alphabet: bytes


_NEAR_BOUNDS = [n for n in _RUN_LENGTHS if n < 1000]
_BLANKS = (b"", b" ", b"  ", b"\t", b" \t ")
_VALUE = ([(b'"', b"'"), (_Run(b"ab9 *"), _Run(b"*"), _Run(b"x\x01'\""), b""), (b'"', b"'", b"")],
          [_Run(b"abcXYZ019=:/"), (b"", b"\n", b" ", b",", b";", b"&", b"<", b"(", b"\x00", b"\x01", b"\xff", b"'")],
          [(b"none", b"Null", b"nil", b"TRUE", b"falsehood"), (b"", b" ", b"x", b"_", b"-", b"\n")],
          [(b"$", b"%", b"*", b"!", b"{", b"-"), _Run(b"abc")])
_SKELETONS = (
    [(b"", b"admin_", b"OS_", b"db-"),
     (b"password", b"PASSWORD", b"Passwd", b"passphrase", b"secret", b"secret_key", b"Secret_KEY", b"secret_k",
      b"token", b"aws_secret_access_key", b"AWS_SESSION_TOKEN", b"application_credential_secret", b"passwords"),
     (b"", b"", b'"', b"'", b"s"), _BLANKS, (b"=", b":", b":", b"-"), _BLANKS, _VALUE],
    [b"passwd", _BLANKS, (b":", b"="), _BLANKS, (b"files", b"systemd", b"ldap", b"ldapx", b"sss_", b"compat"),
     (b"", b" ", b"x", b"\n")],
    [(b"", b"rabbit", b"mysql+pymysql"), b"://", _Run(b"nova0-"), (b":", b"@", b""), _Run(b"pw0!.-"),
     (b"@", b":", b""), (b"", b"ctl", b"[::1]", b"-x", b"/")],
    [(b"AKIA", b"ASIA"), _Run(b"AZ09"), (b"", b".", b"a", b"Z", b"\n")],
    [(b"Authorization", b"AUTHORIZATION"), _BLANKS, (b":", b""), _BLANKS, (b"basic", b"Bearer", b"BASIC", b"bear"),
     _BLANKS, (_Run(b"aZ9+/"), _Run(b"aZ9._~+/=-"), b""), (b"", b"=", b"==", b"===", b"\r\n")],
    [(b"X-Auth-Token", b"x-subject-token", b"X-Auth-Tok"), _BLANKS, (b":", b""), _BLANKS, (b"", b"{", b"*"),
     (_Run(b"aZ9!~{}"), _Run(b"gAAAAAB"), b"")],
    [b"gAAAAAB", (_Run(b"aZ9_-"), b""), (b"", b"=", b"==", b"===", b".")],
    [b"eyJ", _Run(b"aZ9_-"), (b".", b"", b"/"), (b"eyJ", b"eyj", b""), _Run(b"aZ9_-"), (b".", b""),
     (_Run(b"aZ9_-"), b"")],
    [b"-----BEGIN ", (b"", b"RSA ", b"EC ", b"ENCRYPTED ", b"PGP ", b"OPENSSH ", b"DSA", b"CERTIFICATE"),
     (b"PRIVATE KEY", b"PRIVATE"), (b"", b" BLOCK", b" BLOCKS"), (b"-----", b"----"),
     [(b"", b"\n", b"\r\n", b"\\n", b"\r"), (b"Proc-Type: ", b"DEK-Info: ", b"DEK-Info:"), (_Run(b"4,ENC \\"), b"")],
     [(b"", b"\n", b"\r\n", b"\\n"), (b"Proc-Type: ", b"DEK-Info: "), (_Run(b"AES-128-CBC,0123"), b"")],
     (_Run(b"aZ9+/=\n\r\\"), b""),
     (b"", b"-----END ", b"-----END RSA ", b"-----END PGP "), (b"", b"PRIVATE KEY"), (b"", b" BLOCK"),
     (b"", b"-----", b"---")],
)


def _expand(rng: random.Random, spec) -> bytes:
    """A tuple is a choice, a list a sequence (a part sometimes replaced by a random piece)."""
    if isinstance(spec, bytes):
        return spec
    if isinstance(spec, _Run):
        length = rng.choice(_NEAR_BOUNDS if rng.random() < 0.9 else _RUN_LENGTHS)
        return bytes(rng.choice(spec.alphabet) for _ in range(length))
    if isinstance(spec, tuple):
        return _expand(rng, rng.choice(spec))
    return b"".join(rng.choice(_PIECES) if rng.random() < 0.05 else _expand(rng, part) for part in spec)


def _fuzzed(rng: random.Random) -> bytes:
    """A few pattern skeletons with bounds and near misses, between random
    pieces, or a payload of the tests above mutated."""
    if rng.random() < 0.2:
        text = bytearray(rng.choice([p for p, _k, _l in FOUND] + NOT_SECRETS))
        for _ in range(rng.randint(1, 4)):
            at = rng.randint(0, len(text))
            text[at:at + rng.randint(0, 3)] = rng.choice(_PIECES)
        return bytes(text)
    parts = []
    for _ in range(rng.randint(1, 4)):
        parts += [rng.choice(_PIECES) for _ in range(rng.randint(0, 3))]
        parts.append(_expand(rng, rng.choice(_SKELETONS)))
    return b"".join(parts)


def test_compiled_matchers_end_where_the_regexes_do():
    """Thousands of generated payloads: the compiled scan finds the same
    matches, same spans, as Python's regexes at the anchors."""
    rng = random.Random(20261204)
    scanner = SecretScanner()
    matched = set()
    for _ in range(8000):
        payload = _fuzzed(rng)
        expected = _regex_matches(payload)
        assert _compiled_matches(payload, scanner) == expected, payload
        matched |= {name for _s, _e, name in expected}
    assert matched == {p.name for p in PATTERNS}  # the generator reaches every pattern


@pytest.mark.parametrize("unit", [b"eyJ", b"password=", b"token=:", b"AKIA", b"://a:b@", b"-----BEGIN ",
                                  b"eyJabcdefgh.eyJ", b"gAAAAAB", b"X-Auth-Token:", b'password="*'])
def test_repeated_anchors_match_as_the_regexes_do(unit):
    payload = (unit * (20000 // len(unit) + 1))[:20000]
    assert _compiled_matches(payload, SecretScanner()) == _regex_matches(payload)


def _scan_flows(payloads: list[bytes], flow_ids: list[int], skip: np.ndarray | None = None) -> pd.DataFrame:
    """Scan one UDP payload per flow id (direction 0) in one batch; the counts table."""
    fields = np.zeros((D.N_FIELDS, len(payloads)), dtype=np.int64)
    fields[D.F_PAYLOAD_OFF] = np.cumsum([0] + [len(p) for p in payloads[:-1]])
    fields[D.F_PAYLOAD_CAP] = [len(p) for p in payloads]
    fields[D.F_PROTO] = C.IPPROTO_UDP
    batch = PacketBatch(np.frombuffer(b"".join(payloads), dtype=np.uint8).copy(), fields,
                        np.zeros((4, len(payloads)), dtype=np.uint64))
    scanner = SecretScanner()
    ids = np.array(flow_ids, dtype=np.int64)
    scanner.scan(batch, ids, np.zeros(len(ids), dtype=np.int8), np.zeros((2 * ids.max() + 2, K.N_SLOT_COLS),
                                                                          dtype=np.int64), skip=skip)
    fids = sorted(set(flow_ids))
    flows = pd.DataFrame({"uid": [f"C{f}" for f in fids], "verdict": "plaintext"})
    return scanner.take(fids, flows, 2 * np.arange(len(fids)))[1]


def test_skipped_directions_are_not_read():
    skip = np.zeros(4, dtype=np.bool_)
    skip[2 * 1] = True  # flow 1, direction 0: proven encrypted
    counts = _scan_flows([b"password = hunter22\n"] * 4, [0, 1, 0, 1], skip)
    assert counts[["uid", "count"]].values.tolist() == [["C0", 2]]


def test_more_kept_matches_than_one_kernel_call_lists():
    flows = 9000  # one kept row each: more than the rows one call of scan_payloads lists
    counts = _scan_flows([b"password = hunter22\npassword = hunter23\n"] * flows, list(range(flows)))
    assert len(counts) == flows and (counts["count"] == 2).all()


def test_first_match_of_each_kind_is_told_once_with_its_label():
    payload = b"password = hunter22\npassword = hunter23\nAKIAIOSFODNN7EXAMPLE\n"
    fields = np.zeros((D.N_FIELDS, 2), dtype=np.int64)
    fields[D.F_PAYLOAD_OFF] = [0, len(payload)]
    fields[D.F_PAYLOAD_CAP] = len(payload)
    fields[D.F_PROTO] = C.IPPROTO_UDP
    batch = PacketBatch(np.frombuffer(payload * 2, dtype=np.uint8).copy(), fields, np.zeros((4, 2), dtype=np.uint64))
    heard = []
    scanner = SecretScanner(on_first=lambda *told: heard.append(told))
    scanner.scan(batch, np.array([3, 3]), np.array([0, 1], dtype=np.int8), np.zeros((8, K.N_SLOT_COLS), dtype=np.int64))
    assert sorted(heard) == sorted([(3, d, "password", "password = <8 bytes>") for d in (0, 1)]
                                   + [(3, d, "cloud-credential", "AWS access key id <20 bytes>") for d in (0, 1)])
