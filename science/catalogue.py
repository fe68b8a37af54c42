"""Write catalogues in source-extractor's ASCII_HEAD, ASCII, FITS_LDAC, FITS_1.0 or ASCII_VOTABLE format,
atomically (:mod:`.atomic`): a reader never sees a half-written catalogue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from .atomic import atomically
from .columns import COLUMNS, header_line, parameter
from .fits10 import fits10_hdus, primary_cards
from .ldac import extraction_cards, ldac_hdus
from .results import Extraction
from .votable import write_votable

#: The catalogue types written here, and the ending of a catalogue's file name in the flows
#: (``<id><ending>``): distinct per format, so that a reader knows each by its name.
SUFFIXES = {"ASCII_HEAD": ".cat", "ASCII": ".cat", "FITS_LDAC": ".ldac.fits", "FITS_1.0": ".cat.fits",
            "ASCII_VOTABLE": ".cat.xml"}


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


def write_catalogue(
    path: str | Path,
    blocks: Iterable[np.ndarray],
    parameters: tuple[str, ...],
    catalog_type: str = "ASCII_HEAD",
    about: Extraction | None = None,
) -> Path:
    """Write ``blocks`` (one structured array per CCD, in order) to ``path`` atomically.

    FITS_LDAC, FITS_1.0 and ASCII_VOTABLE also carry what ``about`` says of the
    run: each CCD's header and figures (:func:`.ldac.extraction_cards`), the
    extraction's cards (:func:`.fits10.primary_cards`), its metadata (:mod:`.votable`)."""
    path = Path(path)
    blocks = list(blocks)
    if catalog_type not in SUFFIXES:
        raise ValueError(f"CATALOG_TYPE {catalog_type!r} is not one of {', '.join(SUFFIXES)}")
    if catalog_type in ("FITS_LDAC", "FITS_1.0", "ASCII_VOTABLE") and about is None:
        raise ValueError(f"a {catalog_type} catalogue needs to know about the extraction")
    with atomically(path) as tmp:
        if catalog_type == "FITS_LDAC":
            ldac_hdus(_ldac_tables(blocks, about), parameters).writeto(tmp, overwrite=True)
        elif catalog_type == "FITS_1.0":
            extensions, sources = len(about.result.ccds), sum(len(block) for block in blocks)
            cards = primary_cards(about.config, about.image, extensions, sources)
            fits10_hdus(blocks, parameters, cards).writeto(tmp, overwrite=True)
        elif catalog_type == "ASCII_VOTABLE":
            with open(tmp, "w") as out:
                write_votable(out, blocks, parameters, about)
        else:
            with open(tmp, "w") as out:
                if catalog_type == "ASCII_HEAD":
                    out.write(format_header(parameters))
                for block in blocks:
                    out.write(format_rows(block))
    return path


def _ldac_tables(blocks: list[np.ndarray], about: Extraction) -> list[tuple[str, dict, np.ndarray]]:
    """Per measured CCD: its header text, the extraction's cards about it, its rows."""
    measured = about.result.measured()
    if len(measured) != len(blocks):
        raise ValueError("a FITS_LDAC catalogue needs each CCD's header")
    extensions = len(about.result.ccds)
    return [(about.result.headers[ccd.ext_number],
             extraction_cards(about.config, ccd, about.result.headers[ccd.ext_number], about.image, extensions), block)
            for ccd, block in zip(measured, blocks)]
