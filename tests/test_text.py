"""The one sanitiser (inspector/text.py) over every code point that can hide or forge text."""

from __future__ import annotations

import sys
import unicodedata

from inspector.text import csv_cell, file_name, inert

HIDING = ("Cc", "Cf", "Zl", "Zp", "Cs")


def test_inert_leaves_no_control_format_or_separator_character():
    every = "".join(chr(c) for c in range(sys.maxunicode + 1))
    shown = inert(every)
    assert not [c for c in set(shown) if unicodedata.category(c) in HIDING]
    assert inert("ok: é, 日本, ->") == "ok: é, 日本, ->"


def test_file_name_escapes_bytes_that_are_not_utf8():
    assert file_name(b"capture-\xe9\xff.pcap") == "capture-\\xe9\\xff.pcap"
    assert file_name("ünïcode.pcap") == "ünïcode.pcap"
    assert inert(file_name(b"a\x1b]0;t\x07.pcap")) == "a\\x1b]0;t\\x07.pcap"


def test_csv_cell_is_the_owasp_rule():
    assert [csv_cell(v) for v in ("=1+1", "+cmd", "-2", "@SUM(1)", "\tx", "\rx", "'q", "ok", 3)] == \
        ["'=1+1", "'+cmd", "'-2", "'@SUM(1)", "'\tx", "'\rx", "''q", "ok", 3]
