"""Strings from outside the program made safe to show: one sanitiser for every output.

Whoever writes the traffic, and whoever names the capture files, picks these
strings. On a terminal or in Markdown a control character can retitle the
window (OSC 0), fill the clipboard (OSC 52), move the cursor (CSI, C1), a
newline forges a line and a bidi override reorders what is read. ``inert``
turns each such character into visible escape text, so the string shows
whole, on one line, in the order it was written. In a spreadsheet a cell
that starts with ``=``, ``+``, ``-``, ``@``, TAB or CR is a formula:
``csv_cell`` neutralises it (the OWASP rule). Parquet and JSON keep exact
values; only a file name that is not valid UTF-8 is escaped everywhere
(``file_name``), since neither format can hold it.
"""

from __future__ import annotations

import os
import re

# C0, DEL, C1; the line and paragraph separators; every format character
# (Unicode category Cf, 15.0: soft hyphen, bidi embeddings/overrides/isolates,
# zero-width joiners, BOM, tags ...); and the lone surrogates a non-UTF-8
# file name decodes to
_UNSAFE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff"
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the byte that was not UTF-8
        return f"\\x{code - 0xDC00:02x}"
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def inert(text: object) -> str:
    """``text`` with every control, separator and format character (and any
    byte that was not UTF-8) written as a visible ``\\xNN``/``\\uNNNN`` escape."""
    return _UNSAFE.sub(_escape, str(text))


def file_name(path: str | os.PathLike | bytes) -> str:
    """A path as valid Unicode: bytes that are not UTF-8 become ``\\xNN``, the rest is kept."""
    name = os.fsdecode(path)
    return re.sub("[\udc80-\udcff]", _escape, name)


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
TEXT_MARK = "'"  # spreadsheets take a cell starting with it as text


def csv_cell(value: object) -> object:
    """A text cell a spreadsheet shows as text: ``'`` in front of one that
    would start a formula (OWASP CSV injection), and in front of one that
    starts with ``'`` itself, so removing one leading ``'`` gives back the exact value
    (``inspector.load`` does).
    Other values are kept."""
    if isinstance(value, str) and value.startswith(FORMULA_START + (TEXT_MARK,)):
        return TEXT_MARK + value
    return value

