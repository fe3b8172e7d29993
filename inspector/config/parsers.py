"""Parsers of the service configuration files: oslo.config INI (nova.conf),
libvirt's ``key = value`` files (libvirtd.conf, qemu.conf) and policy files.

Each takes the file's text and returns plain values; a malformed file raises
``Malformed`` with the line and what is wrong, never the line itself (it may
hold a password).
"""

from __future__ import annotations

import ast
import configparser
import json
import re

import yaml


class Malformed(ValueError):
    """A file that does not parse: ``str()`` names the line, never its text."""


OSLO_NO_DEFAULT = "\x00"  # oslo's [DEFAULT] is an ordinary group: configparser must not copy it into the others


def parse_oslo_ini(text: str) -> dict[str, dict[str, str]]:
    """Sections -> keys -> value, as oslo.config reads them: ``[DEFAULT]`` a
    section like any other, a repeated key's last value wins (single-valued
    options), surrounding quotes stripped, indented lines continue a value."""
    parser = configparser.ConfigParser(strict=False, interpolation=None, default_section=OSLO_NO_DEFAULT,
                                       delimiters=("=",), comment_prefixes=("#", ";"), empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # oslo option names are case-sensitive
    try:
        parser.read_string(text)
    except configparser.MissingSectionHeaderError as exc:
        raise Malformed(f"line {exc.lineno}: a setting before any [section]") from None
    except configparser.ParsingError as exc:
        lines = ", ".join(str(number) for number, _line in exc.errors[:5])
        raise Malformed(f"line {lines}: not a `key = value` or `[section]` line") from None
    return {section: {key: _unquoted(value) for key, value in parser.items(section, raw=True)}
            for section in parser.sections()}


def _unquoted(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


_LIBVIRT_SETTING = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)", re.DOTALL)


def parse_libvirt_conf(text: str) -> dict[str, int | str | list[str]]:
    """libvirt's config syntax (virconf): ``name = value`` with integers,
    quoted strings and bracketed lists of strings that may span lines; ``#``
    starts a comment outside quotes."""
    settings: dict[str, int | str | list[str]] = {}
    pending, start = "", 0
    for number, line in enumerate(text.splitlines(), start=1):
        code = _without_comment(line)
        if not pending and not code.strip():
            continue
        if not pending:
            start = number
        pending += code + "\n"
        if pending.count("[") > pending.count("]"):
            continue  # a list goes on on the next line
        match = _LIBVIRT_SETTING.fullmatch(pending.strip())
        pending = ""
        if not match:
            raise Malformed(f"line {start}: not a `name = value` line")
        try:
            value = ast.literal_eval(match[2].strip())
        except (ValueError, SyntaxError):
            raise Malformed(f"line {start}: the value of {match[1]} is not a number, a quoted string or a list") from None
        if not (type(value) is int or isinstance(value, str)
                or (isinstance(value, list) and all(isinstance(v, str) for v in value))):
            raise Malformed(f"line {start}: the value of {match[1]} is not a number, a quoted string or a list")
        settings[match[1]] = value
    if pending:
        raise Malformed(f"line {start}: a list that is never closed with ]")
    return settings


def _without_comment(line: str) -> str:
    quote = ""
    for i, char in enumerate(line):
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#":
            return line[:i]
    return line


def parse_policy(text: str, name: str) -> dict[str, str]:
    """A policy file (policy.yaml, or JSON for policy.json): rule name -> check string."""
    try:
        data = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise Malformed(f"line {exc.lineno}: not valid JSON") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise Malformed(f"line {mark.line + 1 if mark else '?'}: not valid YAML") from None
    if data is None:  # every rule commented out, as packages ship it
        return {}
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise Malformed("not a mapping of rule names to check strings")
    return {str(k): v for k, v in data.items()}
