"""FITS_LDAC catalogues, laid out as source-extractor writes them: what SCAMP and PSFEx read.

An empty primary HDU, then for each CCD two binary tables:

* ``LDAC_IMHEAD``: one row, one column ``Field Header Card`` holding the CCD's
  image header as 80-character cards (``TFORM1 = '<80 n>A'``,
  ``TDIM1 = '(80, n)'``), followed by what source-extractor adds about the
  extraction (``FITSFILE``, ``FITSEXT``, ``SEXBKGND``, ``SEXBKDEV``,
  ``SEXTHLD``, ``SEXGAIN``, ...), then ``END``;
* ``LDAC_OBJECTS``: the CCD's sources, one column per catalogue parameter,
  with source-extractor's binary formats, units, ``TDISP`` and descriptions.

The layout was read off Debian's source-extractor 2.25 output and is checked
against it by the parity tests.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Sequence

import numpy as np
from astropy.io import fits

from .columns import COLUMNS, parameter
from .measure import header_float
from .sexconfig import ExtractionConfig

if TYPE_CHECKING:
    from .results import CCDResult

#: "%11.4f" -> "F11.4", "%10d" -> "I10", "%12.7g" -> "G12.7", "%+11.7f" -> "F11.7"
_PRINTF = re.compile(r"%\+?(\d+)(?:\.(\d+))?([dfgeE])")
_TDISP_LETTER = {"d": "I", "f": "F", "g": "G", "e": "E", "E": "E"}


def tdisp(fmt: str) -> str:
    width, precision, kind = _PRINTF.fullmatch(fmt).groups()
    return f"{_TDISP_LETTER[kind]}{width}" + (f".{precision}" if precision else "")


def imhead(header_text: str, extra: dict[str, tuple[object, str]]) -> fits.BinTableHDU:
    """The ``LDAC_IMHEAD`` table: the CCD's header cards, the ``extra`` (value, comment) cards, ``END``.

    The cards are written byte for byte, blanks included.  astropy turns a string column's
    trailing blanks into NULs when it writes one, and PSFEx's header reader then runs past
    ``END`` and crashes (measured: a segmentation fault), so the table is built from its bytes.
    """
    header = fits.Header.fromstring(header_text)
    for key, (value, comment) in extra.items():
        header[key] = (value, comment)
    cards = "".join(str(card) for card in header.cards) + "END".ljust(80)
    table = fits.Header([
        ("XTENSION", "BINTABLE", "binary table extension"),
        ("BITPIX", 8, "array data type"),
        ("NAXIS", 2, "number of array dimensions"),
        ("NAXIS1", len(cards), "bytes per row"),
        ("NAXIS2", 1, "number of rows"),
        ("PCOUNT", 0, "number of group parameters"),
        ("GCOUNT", 1, "number of groups"),
        ("TFIELDS", 1, "number of table fields"),
        ("EXTNAME", "LDAC_IMHEAD", "TABLE NAME"),
        ("TTYPE1", "Field Header Card"),
        ("TFORM1", f"{len(cards)}A"),
        ("TDIM1", f"(80, {len(cards) // 80})"),
    ])
    data = cards.encode("ascii")
    return fits.BinTableHDU.fromstring(table.tostring().encode("ascii") + data + b"\0" * (-len(data) % 2880))


def objects(sources: np.ndarray, parameters: Sequence[str], extname: str = "LDAC_OBJECTS") -> fits.BinTableHDU:
    """The ``LDAC_OBJECTS`` table of one CCD's sources (FITS_1.0's ``OBJECTS`` is the same table)."""
    columns, names = [], []
    for column in map(parameter, parameters):
        spec = COLUMNS[column.name]
        dim = f"({', '.join(map(str, column.shape))})" if len(column.shape) > 1 else None
        columns.append(fits.Column(name=column.name, format=f"{column.size}{spec.ldac[1:]}", unit=spec.unit or None,
                                   disp=tdisp(spec.fmt), dim=dim, array=sources[column.name]))
        names.append(column.name)
    hdu = fits.BinTableHDU.from_columns(columns)
    for index, name in enumerate(names, start=1):
        hdu.header.comments[f"TTYPE{index}"] = COLUMNS[name].description
    hdu.header["EXTNAME"] = (extname, "TABLE NAME")
    return hdu


def ldac_hdus(
    tables: Sequence[tuple[str, dict[str, tuple[object, str]], np.ndarray]], parameters: Sequence[str]
) -> fits.HDUList:
    """The whole catalogue: ``tables`` holds, per CCD in order, its header text, extra cards and sources."""
    hdus: list[fits.hdu.base.ExtensionHDU] = []
    for header_text, extra, sources in tables:
        hdus += [imhead(header_text, extra), objects(sources, parameters)]
    return fits.HDUList([fits.PrimaryHDU(), *hdus])


def software() -> str:
    """What made the catalogue, as its ``SEXVERS`` / ``ORIGIN`` card names it."""
    try:
        return f"canfar-catalogue {version('canfar-catalogue')}"
    except PackageNotFoundError:
        return "canfar-catalogue"


def extraction_cards(
    config: ExtractionConfig, ccd: "CCDResult", header_text: str, file_name: str, extensions: int
) -> dict[str, tuple[object, str]]:
    """What source-extractor writes about the extraction after a CCD's header cards (those it
    has a value for here): SCAMP and PSFEx read the background noise, gain and saturation."""
    header = fits.Header.fromstring(header_text)
    now = datetime.now(timezone.utc)
    return {
        "FITSFILE": (file_name, "File name of the analysed image"),
        "FITSEXT": (ccd.ext_number, "FITS Extension number"),
        "FITSNEXT": (extensions, "Number of FITS image extensions in file"),
        "SEXVERS": (software(), "Extraction software"),
        "SEXDATE": (now.strftime("%d/%m/%Y"), "Extraction date"),
        "SEXTIME": (now.strftime("%H:%M:%S"), "Extraction time"),
        "SEXELAPS": (round(ccd.seconds, 3), "Elapsed time during extraction (s)"),
        "SEXBKGND": (ccd.background, "Median background level (ADU)"),
        "SEXBKDEV": (ccd.rms, "Median background RMS (ADU)"),
        "SEXTHLD": (ccd.threshold, "Extraction threshold (ADU)"),
        "SEXATHLD": (config.analysis_threshold(ccd.rms), "Analysis threshold (ADU)"),
        "SEXNFIN": (ccd.count, "Final number of extracted sources"),
        "SEXNPARA": (len(config.parameters), "Number of parameters per source"),
        "SEXGAIN": (header_float(header, config.gain_key, config.gain), "Gain used (e-/ADU)"),
        "SEXFLTR": (config.filter_kernel is not None, "Detection filtering activated (flag)"),
        "SEXMINAR": (config.detect_minarea, "Minimum area used for detection (pixels)"),
        "SEXDBLDN": (config.deblend_nthresh, "Number of deblending thresholds"),
        "SEXDBLDC": (config.deblend_mincont, "Minimum contrast used for deblending"),
        "SEXCLN": (config.clean, "Cleaning activated (flag)"),
        "SEXCLNPA": (config.clean_param, "Cleaning parameter"),
        "SEXAUTP1": (config.phot_autoparams[0], "Parameter #1 used for automatic magnitudes"),
        "SEXAUTP2": (config.phot_autoparams[1], "Parameter #2 used for automatic magnitudes"),
        "SEXSATLV": (header_float(header, config.satur_key, config.satur_level), "Saturation level used for flagging (ADU)"),
        "SEXMGZPT": (ccd.zeropoint, "Zero-point used for magnitudes"),
        "SEXBKGSX": (config.back_size[0], "Mesh width used for background mapping (pixels)"),
        "SEXBKGSY": (config.back_size[1], "Mesh height used for background mapping (pixels"),
        "SEXBKGFX": (config.back_filtersize[0], "Mask width used for background map filtering"),
        "SEXBKGFY": (config.back_filtersize[1], "Mask height used for background map filtering"),
    }
