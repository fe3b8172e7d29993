"""Payload excerpts for reports: shown only on request, always inert.

A report is shared, so excerpts of captured payload are redacted unless the
user asks for them (``--show-payload``). When shown, bytes become hex and
printable ASCII: nothing from the wire reaches a report as raw text.
"""

from __future__ import annotations

REDACTED = "excerpt redacted (use --show-payload to include payload bytes)"


def printable(data: bytes) -> str:
    """ASCII 0x20-0x7e as is, every other byte as '.'."""
    return "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in data)


def hexdump(data: bytes, width: int = 16) -> str:
    """Classic offset / hex / ASCII lines."""
    lines = []
    for at in range(0, len(data), width):
        chunk = data[at:at + width]
        lines.append(f"{at:04x}  {chunk.hex(' '):<{3 * width - 1}}  {printable(chunk)}")
    return "\n".join(lines)
