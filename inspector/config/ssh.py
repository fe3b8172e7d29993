"""OpenSSH files: sshd_config (with its Match blocks), authorized_keys lines
with their options, and whether a private key is protected by a passphrase.

Nothing here keeps key material: a key is known by its SHA256 fingerprint,
the form ``ssh-keygen -l`` prints.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import shlex
import struct
from dataclasses import dataclass, field

from inspector.config.parsers import Malformed

KEY_TYPE = re.compile(r"(ssh-(rsa|dss|ed25519|ed448)|ecdsa-sha2-\S+|sk-\S+@openssh\.com|\S+-cert-v01@openssh\.com)$")


@dataclass(frozen=True)
class MatchBlock:
    """``Match`` criteria (lower-case names, e.g. {'user': 'nova_migration'}) and the keywords under them."""

    criteria: dict[str, str]
    settings: dict[str, str]


@dataclass(frozen=True)
class SshdConfig:
    settings: dict[str, str] = field(default_factory=dict)  # lower-case keyword -> value; first one wins, as sshd reads
    blocks: tuple[MatchBlock, ...] = ()

    def for_user(self, user: str) -> dict[str, str]:
        """The keywords sshd applies to ``user``: the global ones, overridden by ``Match User`` blocks naming the user."""
        matched: dict[str, str] = {}  # a Match block overrides the global value; the first block that matches wins
        for block in self.blocks:
            users = block.criteria.get("user", "")
            if users and any(_glob(pattern, user) for pattern in users.split(",")):
                for key, value in block.settings.items():
                    matched.setdefault(key, value)
        return {**self.settings, **matched}

    def address_restricted(self, user: str) -> bool:
        """True when a ``Match User`` block for ``user`` also names ``Address``, or AllowUsers pins the user to hosts."""
        allow = self.settings.get("allowusers", "")
        if any("@" in entry and entry.split("@")[0] == user for entry in allow.split()):
            return True
        return any("address" in b.criteria and any(_glob(p, user) for p in b.criteria.get("user", "").split(","))
                   for b in self.blocks)


def _glob(pattern: str, name: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(name, pattern.strip())


def parse_sshd_config(text: str) -> SshdConfig:
    """Keywords are case-insensitive, values may be quoted; ``Match`` starts a block up to the next one."""
    settings: dict[str, str] = {}
    blocks: list[MatchBlock] = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            raise Malformed(f"line {number}: an unclosed quote") from None
        if not words:
            continue
        if "=" in words[0] and not words[0].startswith("="):  # Keyword=value
            words = words[0].split("=", 1) + words[1:]
        keyword, args = words[0].lower(), [w for w in words[1:] if w != "="]
        if keyword == "match":
            if len(args) % 2 and args != ["all"]:
                raise Malformed(f"line {number}: Match needs criterion-value pairs")
            criteria = {args[i].lower(): args[i + 1] for i in range(0, len(args) - 1, 2)}
            blocks.append(MatchBlock(criteria, {}))
            continue
        target = blocks[-1].settings if blocks else settings
        target.setdefault(keyword, " ".join(args))
    return SshdConfig(settings, tuple(blocks))


@dataclass(frozen=True)
class AuthorizedKey:
    line: int
    key_type: str
    fingerprint: str
    comment: str
    options: dict[str, str]  # option name (lower-case) -> value ('' for flags such as no-pty)

    @property
    def command(self) -> str:
        return self.options.get("command", "")

    @property
    def sources(self) -> str:
        return self.options.get("from", "")

    @property
    def restricted(self) -> bool:
        """``restrict`` (all forwarding, PTY, X11, agent and rc off), or the same flags one by one."""
        return "restrict" in self.options or all(f in self.options for f in
                                                 ("no-pty", "no-port-forwarding", "no-agent-forwarding",
                                                  "no-x11-forwarding"))


def parse_authorized_keys(text: str) -> list[AuthorizedKey]:
    """Every key line: ``[options] type base64 [comment]``; options are comma-separated,
    values in double quotes may hold commas, spaces and ``\\"`` (sshd(8) AUTHORIZED_KEYS FILE FORMAT)."""
    keys = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        options: dict[str, str] = {}
        first = line.split(None, 1)[0]
        if not KEY_TYPE.match(first):
            options_text, rest = _split_options(line, number)
            options = _options(options_text, number)
            line = rest
        parts = line.split(None, 2)
        if len(parts) < 2 or not KEY_TYPE.match(parts[0]):
            raise Malformed(f"line {number}: no key type and key after the options")
        keys.append(AuthorizedKey(number, parts[0], fingerprint(parts[1], number),
                                  parts[2] if len(parts) > 2 else "", options))
    return keys


def _split_options(line: str, number: int) -> tuple[str, str]:
    """The options field ends at the first blank outside double quotes."""
    quoted, escaped = False, False
    for i, char in enumerate(line):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char in " \t" and not quoted:
            return line[:i], line[i:].strip()
    raise Malformed(f"line {number}: unclosed quote in the options" if quoted else f"line {number}: no key after the options")


def _options(text: str, number: int) -> dict[str, str]:
    options: dict[str, str] = {}
    i = 0
    while i < len(text):
        match = re.match(r"([A-Za-z0-9-]+)(=\")?", text[i:])
        if not match:
            raise Malformed(f"line {number}: bad option syntax at column {i + 1}")
        name, i = match[1].lower(), i + match.end()
        value = ""
        if match[2]:
            chars = []
            while i < len(text) and text[i] != '"':
                if text[i] == "\\" and i + 1 < len(text) and text[i + 1] == '"':
                    i += 1
                chars.append(text[i])
                i += 1
            if i >= len(text):
                raise Malformed(f"line {number}: unclosed quote in option {name}")
            value, i = "".join(chars), i + 1
        options[name] = value
        if i < len(text):
            if text[i] != ",":
                raise Malformed(f"line {number}: options must be separated by commas (after {name})")
            i += 1
    return options


def fingerprint(blob_b64: str, number: int = 0) -> str:
    try:
        blob = base64.b64decode(blob_b64, validate=True)
    except (binascii.Error, ValueError):
        raise Malformed(f"line {number}: the key is not base64") from None
    return _fingerprint_of(blob)


def _fingerprint_of(blob: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@dataclass(frozen=True)
class PrivateKey:
    encrypted: bool
    fingerprint: str  # of its public half ('' when the format does not carry it unencrypted, e.g. PEM)


OPENSSH_MAGIC = b"openssh-key-v1\x00"  # PROTOCOL.key in OpenSSH's sources


def parse_private_key(text: str) -> PrivateKey | None:
    """Whether a private key needs a passphrase; None when the text is not a private key."""
    lines = text.strip().splitlines()
    if not lines or not lines[0].startswith("-----BEGIN ") or "PRIVATE KEY" not in lines[0]:
        return None
    if "OPENSSH PRIVATE KEY" not in lines[0]:  # PEM: encrypted ones say so in a header or the label
        return PrivateKey("ENCRYPTED" in text, "")
    try:
        blob = base64.b64decode("".join(line for line in lines[1:] if not line.startswith("-----")))
        if not blob.startswith(OPENSSH_MAGIC):
            raise Malformed("not an openssh-key-v1 private key")
        fields, offset = [], len(OPENSSH_MAGIC)
        for _ in range(3):  # ciphername, kdfname, kdfoptions
            size, = struct.unpack_from(">I", blob, offset)
            fields.append(blob[offset + 4 : offset + 4 + size])
            offset += 4 + size
        offset += 4  # number of keys
        size, = struct.unpack_from(">I", blob, offset)
        public = blob[offset + 4 : offset + 4 + size]
    except (binascii.Error, struct.error):
        raise Malformed("a damaged openssh-key-v1 private key") from None
    return PrivateKey(fields[0] != b"none", _fingerprint_of(public))
