"""Write catalogues in source-extractor's ASCII_HEAD, ASCII, FITS_LDAC or FITS_1.0 format, atomically.

A reader never sees a half-written catalogue: it goes to a temporary file in
the same directory, which is flushed to disk and then renamed into place.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .columns import COLUMNS, header_line, parameter
from .fits10 import fits10_hdus
from .ldac import ldac_hdus

#: The catalogue types written here, and the ending of a catalogue's file name in the flows
#: (``<id><ending>``): distinct per format, so that a reader knows each by its name.
SUFFIXES = {"ASCII_HEAD": ".cat", "ASCII": ".cat", "FITS_LDAC": ".ldac.fits", "FITS_1.0": ".cat.fits"}


def format_header(parameters: tuple[str, ...]) -> str:
    """The ``#   1 NAME ...`` lines; a vector column takes as many numbers as it has elements,
    so the next column's number skips them, as in source-extractor's ASCII_HEAD."""
    lines, index = [], 1
    for column in map(parameter, parameters):
        lines.append(header_line(index, column.name))
        index += column.size
    return "".join(lines)


def format_rows(sources: np.ndarray) -> str:
    """Format a structured array whose fields are catalogue columns, one line a source; a vector
    column's elements follow one another, and a stamp's pixels row by row."""
    if len(sources) == 0:
        return ""
    formats, columns = [], []
    for name in sources.dtype.names:
        values = sources[name].reshape(len(sources), -1)  # a stamp's pixels row by row, x fastest
        for element in values.T:
            formats.append(COLUMNS[name].fmt)
            columns.append(element.tolist())
    fmt = " ".join(formats) + "\n"
    return "".join(fmt % row for row in zip(*columns))


@contextmanager
def _atomically(path: Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write; flushed to disk and renamed to ``path`` on success."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_catalogue(
    path: str | Path,
    blocks: Iterable[np.ndarray],
    parameters: tuple[str, ...],
    catalog_type: str = "ASCII_HEAD",
    headers: Sequence[tuple[str, dict]] | None = None,
    primary: dict[str, tuple[object, str]] | None = None,
) -> Path:
    """Write ``blocks`` (one structured array per CCD, in order) to ``path`` atomically.

    FITS_LDAC also needs, per block, the CCD's header text and the extraction's
    extra cards (:func:`.ldac.extraction_cards`); FITS_1.0 the primary header's
    cards (:func:`.fits10.primary_cards`)."""
    path = Path(path)
    blocks = list(blocks)
    if catalog_type not in SUFFIXES:
        raise ValueError(f"CATALOG_TYPE {catalog_type!r} is not one of {', '.join(SUFFIXES)}")
    with _atomically(path) as tmp:
        if catalog_type == "FITS_LDAC":
            if headers is None or len(headers) != len(blocks):
                raise ValueError("a FITS_LDAC catalogue needs each CCD's header")
            tables = [(text, extra, block) for (text, extra), block in zip(headers, blocks)]
            ldac_hdus(tables, parameters).writeto(tmp, overwrite=True)
        elif catalog_type == "FITS_1.0":
            fits10_hdus(blocks, parameters, primary or {}).writeto(tmp, overwrite=True)
        else:
            with open(tmp, "w") as out:
                if catalog_type == "ASCII_HEAD":
                    out.write(format_header(parameters))
                for block in blocks:
                    out.write(format_rows(block))
    return path
