"""Assemble each check image's file from its CCDs' extensions, as the CCD workers finish them.

A 36-CCD float map is about 1.3 GB uncompressed, so no process ever holds a
whole one: each CCD worker makes its CCD's extension and encodes it
(tile-compressing it for a ``.fz`` name, :func:`.check_images.encode`), and
hands back only those bytes.  Here they are appended to the file in extension
order; a CCD that finishes before an earlier one waits in memory, compressed,
until its turn.  Each file is written atomically (:mod:`.atomic`), so a run that
fails leaves no half-made check image, and a file is complete when it appears.
"""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

from astropy.io import fits

from .atomic import atomically
from .check_images import encode, header_for, is_compressed, primary
from .results import CCDResult


class CheckImageFiles:
    """The check images a configuration asks for, one file per type, filled CCD by CCD.

    ``requested`` is ``((type, file name), ...)``; ``ccds`` maps each CCD's
    extension number to its header text, in the order the files hold them.
    Use as a context manager: on a clean exit every file is renamed into place.
    """

    def __init__(self, requested: tuple[tuple[str, str], ...], ccds: dict[int, str], back_size: tuple[int, int]):
        self.requested = requested
        self.order = sorted(ccds)
        self.headers = ccds
        self.back_size = back_size
        self.written: dict[str, Path] = {}
        self._waiting: dict[int, dict[str, bytes]] = {}
        self._next = 0
        self._stack = ExitStack()
        self._files: dict[str, BinaryIO] = {}

    def __enter__(self) -> "CheckImageFiles":
        self._stack.__enter__()
        for kind, name in self.requested:
            tmp = self._stack.enter_context(atomically(name))
            out = self._stack.enter_context(open(tmp, "wb"))
            out.write(primary(len(self.order)))
            self._files[kind] = out
        return self

    def add(self, result: CCDResult) -> None:
        """Take a finished CCD's extensions (an empty one for a CCD that was not measured) and write
        every extension whose turn has come."""
        pieces = result.check_images or {kind: self._empty(kind, result.ext_number) for kind, _ in self.requested}
        result.check_images = None  # held here until written, then dropped
        self._waiting[result.ext_number] = pieces
        while self._next < len(self.order) and self.order[self._next] in self._waiting:
            for kind, piece in self._waiting.pop(self.order[self._next]).items():
                self._files[kind].write(piece)
            self._next += 1

    def _empty(self, kind: str, ext_number: int) -> bytes:
        header = header_for(kind, fits.Header.fromstring(self.headers[ext_number]), self.back_size)
        return encode(kind, None, header, False)

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None and self._next < len(self.order):
            missing = ", ".join(str(ext) for ext in self.order[self._next:])
            error = RuntimeError(f"check images are missing extensions {missing}")
            self._stack.__exit__(RuntimeError, error, None)  # the files are discarded
            raise error
        self._stack.__exit__(kind, value, traceback)  # closed, then renamed into place (or discarded)
        if kind is None:
            self.written = {kind_: Path(name) for kind_, name in self.requested}


def encode_ccd(requested: tuple[tuple[str, str], ...], make, header: fits.Header,
               back_size: tuple[int, int]) -> dict[str, bytes]:
    """A measured CCD's extension of each requested check image; ``make(kind)`` gives its pixels.
    Each map is made, encoded and let go before the next, so a worker holds one at a time."""
    return {kind: encode(kind, make(kind), header_for(kind, header, back_size), is_compressed(name))
            for kind, name in requested}
