"""Decompress gzip'd captures as they are read, keeping what a cut stream held.

``gzip.GzipFile`` raises ``EOFError`` when the data ends before the
end-of-stream marker (a ``.pcap.gz`` copied while tcpdump was still writing
it) and loses the bytes it decompressed in that same read. This stream hands
over every byte it could decompress, then ends and says why in ``damage``:
the reader then analyses the records it got, like a plain pcap cut short.
"""

from __future__ import annotations

import zlib
from typing import BinaryIO

RAW_CHUNK = 256 * 1024  # compressed bytes read at a time
OUT_CHUNK = 1024 * 1024  # most bytes one step decompresses (zeroed RAM pages compress ~1000:1)
GZIP_WBITS = 16 + zlib.MAX_WBITS  # zlib: expect a gzip header and trailer (and check its CRC)


class GzipStream:
    """A readable binary stream of the decompressed bytes of every gzip member in ``fileobj``.

    ``cut`` is True when the compressed data ended inside a member, ``damage``
    names what stopped it early (a cut, or data zlib could not decode); both
    are set once ``readinto`` has returned 0. ``fileobj`` is not closed here.
    """

    def __init__(self, fileobj: BinaryIO) -> None:
        self.fileobj = fileobj
        self.cut = False
        self.damage = ""
        self._inflate = zlib.decompressobj(GZIP_WBITS)
        self._input = b""  # compressed bytes not yet fed to zlib
        self._output = memoryview(b"")  # decompressed bytes not yet handed over
        self._ended = False

    def readinto(self, view: memoryview) -> int:
        """Fill ``view`` with decompressed bytes; 0 at the end (clean, cut or damaged)."""
        done = 0
        while done < len(view):
            if not self._output:
                if self._ended:
                    break
                self._step()
                continue
            n = min(len(view) - done, len(self._output))
            view[done : done + n] = self._output[:n]
            self._output = self._output[n:]
            done += n
        return done

    def _step(self) -> None:
        """Decompress the next piece into ``_output`` (or note the end)."""
        inflate = self._inflate
        if inflate.eof:  # a member ended: another may follow (concatenated .gz files)
            self._input = inflate.unused_data or self.fileobj.read(RAW_CHUNK)
            if not self._input:
                self._ended = True
                return
            self._inflate = inflate = zlib.decompressobj(GZIP_WBITS)
        elif not self._input:
            self._input = self.fileobj.read(RAW_CHUNK)
            if not self._input:
                self.cut = True
                self._stop(f"the gzip data ends before its end-of-stream marker, after {self._compressed_bytes()} "
                           "compressed bytes (a copy of a capture still being written?)")
                return
        before = inflate.copy()  # zlib drops what the failing call decompressed: replay it from here
        try:
            self._output = memoryview(inflate.decompress(self._input, OUT_CHUNK))
        except zlib.error as exc:
            self._output = memoryview(_up_to_damage(before, self._input))
            self._stop(f"damaged gzip data after {self._compressed_bytes()} compressed bytes: {exc}")
            return
        self._input = inflate.unconsumed_tail

    def _stop(self, why: str) -> None:
        self.damage = why
        self._ended = True

    def _compressed_bytes(self) -> int:
        try:
            return self.fileobj.tell() - len(self._input)
        except (OSError, ValueError):
            return 0


SALVAGE_PIECE = 64  # compressed bytes a replay feeds at a time before going byte by byte


def _up_to_damage(inflate, data: bytes, piece: int = SALVAGE_PIECE) -> bytes:
    """What ``inflate`` decompresses from ``data`` before zlib finds the damage
    (a flipped bit, a bad CRC or length in the trailer, junk after a member),
    fed a piece at a time so only the output of the damaged piece is lost;
    the damaged piece is replayed byte by byte. Capped at OUT_CHUNK, as the
    call it replaces."""
    out = bytearray()
    for at in range(0, len(data), piece):
        state = inflate.copy()
        try:
            out += inflate.decompress(data[at:at + piece])
        except zlib.error:
            if piece > 1:
                out += _up_to_damage(state, data[at:at + piece], 1)
            break
        if len(out) >= OUT_CHUNK or inflate.eof:
            break
    return bytes(out[:OUT_CHUNK])
