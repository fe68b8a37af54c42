"""FITS_1.0 catalogues, laid out as Debian's source-extractor 2.25 writes them for a multi-extension
image: what TOPCAT, astropy and the VO tools open as they are.

A primary HDU (``NAXIS 0``) carrying source-extractor's cards about the
extraction (``SEX*``), then one binary table named ``OBJECTS`` per CCD, in
order, with the columns, formats, units and ``TDISP`` of FITS_LDAC's
``LDAC_OBJECTS`` (:func:`.ldac.objects`) and ``NUMBER`` starting at 1 in each.
Unlike FITS_LDAC there is no ``LDAC_IMHEAD``: the CCD headers are not carried.

Where source-extractor writes the figures of the last CCD it measured into
the primary header (``SEXNFIN``), the total over the CCDs is written, and
the cards whose value source-extractor leaves at 0 in this layout (image
size, background) are left out.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Sequence

import numpy as np
from astropy.io import fits

from .ldac import objects, software
from .sexconfig import ExtractionConfig


def primary_cards(config: ExtractionConfig, file_name: str, extensions: int, sources: int) -> dict[str, tuple[object, str]]:
    """The primary header's cards about the extraction, with source-extractor's names and comments."""
    now = datetime.now(timezone.utc)
    cards = {
        "ORIGIN": (software(), "Extraction software"),
        "FITSFILE": (file_name, "File name of the analysed image"),
        "FITSNEXT": (extensions, "Number of FITS image extensions in file"),
        "SEXDATE": (now.strftime("%d/%m/%Y"), "Extraction date"),
        "SEXTIME": (now.strftime("%H:%M:%S"), "Extraction time"),
        "SEXGAIN": (config.gain, "GAIN (IN E- PER ADU)"),
        "SEXDETT": ("CCD", "DETECTION TYPE"),
        "SEXTHLDT": ("SIGMA" if config.thresh_type == "RELATIVE" else "ADU", "THRESHOLD TYPE"),
        "SEXTHLD": (config.detect_thresh, "THRESHOLD"),
        "SEXMINAR": (config.detect_minarea, "EXTRACTION MINIMUM AREA (PIXELS)"),
        "SEXCONV": (config.filter_kernel is not None, "CONVOLUTION FLAG"),
        "SEXDBLDN": (config.deblend_nthresh, "NUMBER OF SUB-THRESHOLDS"),
        "SEXDBLDC": (config.deblend_mincont, "CONTRAST PARAMETER"),
        "SEXCLN": (config.clean, "CLEANING FLAG"),
        "SEXCLNPA": (config.clean_param, "CLEANING PARAMETER"),
        "SEXAPEK1": (config.phot_autoparams[0], "KRON PARAMETER"),
        "SEXAPEK3": (config.phot_autoparams[1], "KRON MINIMUM RADIUS"),
        "SEXSATLV": (config.satur_level, "SATURATION LEVEL (ADU)"),
        "SEXMGZPT": (config.mag_zeropoint, "MAGNITUDE ZERO-POINT"),
        "SEXBKGSX": (config.back_size[0], "BACKGROUND MESH WIDTH (PIXELS)"),
        "SEXBKGSY": (config.back_size[1], "BACKGROUND MESH HEIGHT (PIXELS)"),
        "SEXBKGFX": (config.back_filtersize[0], "BACKGROUND FILTER WIDTH"),
        "SEXBKGFY": (config.back_filtersize[1], "BACKGROUND FILTER HEIGHT"),
        "SEXPBKGT": ("GLOBAL", "PHOTOM BACKGROUND TYPE"),
        "SEXNFIN": (sources, "NB OF FINAL EXTRACTED OBJECTS (all CCDs)"),
        "SEXNPARA": (len(config.parameters), "NB OF PARAMETERS PER OBJECT"),
    }
    if config.phot_apertures:
        cards["SEXAPERD"] = (config.phot_apertures[0], "1ST APERTURE DIAMETER (PIXELS)")
    if config.seeing_fwhm:
        cards["SEXSFWHM"] = (config.seeing_fwhm, "SEEING FWHM (ARCSEC)")
    return cards


def fits10_hdus(
    blocks: Sequence[np.ndarray], parameters: Sequence[str], cards: dict[str, tuple[object, str]]
) -> fits.HDUList:
    """The whole catalogue: a primary HDU with ``cards``, then an ``OBJECTS`` table per block (CCD)."""
    primary = fits.PrimaryHDU()
    for key, (value, comment) in cards.items():
        primary.header[key] = (value, comment)
    return fits.HDUList([primary, *(objects(block, parameters, "OBJECTS") for block in blocks)])
