"""The catalogue columns we measure, described as source-extractor 2.25 writes them.

Descriptions, units and printf formats are those of source-extractor's own
ASCII_HEAD output, so that ``astropy.io.ascii`` (format ``sextractor``) and
users' existing scripts read our catalogues unchanged; binary formats are
those of its FITS_LDAC output (positions and fluxes are single precision
there, celestial coordinates double).
"""

import re
from typing import NamedTuple

import numpy as np


class Column(NamedTuple):
    description: str
    unit: str
    fmt: str  # printf format in ASCII catalogues (and TDISP in FITS_LDAC)
    dtype: type  # in memory
    ldac: str  # binary TFORM of one element in FITS_LDAC, as source-extractor 2.25 writes it
    vector: bool = False  # may be asked for as NAME(n): one element per aperture or light fraction


COLUMNS: dict[str, Column] = {
    "NUMBER": Column("Running object number", "", "%10d", np.int64, "1J"),
    "EXT_NUMBER": Column("FITS extension number", "", "%3d", np.int16, "1I"),
    "X_IMAGE": Column("Object position along x", "pixel", "%11.4f", np.float64, "1E"),
    "Y_IMAGE": Column("Object position along y", "pixel", "%11.4f", np.float64, "1E"),
    "MAG_AUTO": Column("Kron-like elliptical aperture magnitude", "mag", "%8.4f", np.float32, "1E"),
    "MAGERR_AUTO": Column("RMS error for AUTO magnitude", "mag", "%8.4f", np.float32, "1E"),
    "FLUX_AUTO": Column("Flux within a Kron-like elliptical aperture", "count", "%12.7g", np.float64, "1E"),
    "FLUXERR_AUTO": Column("RMS error for AUTO flux", "count", "%12.7g", np.float64, "1E"),
    "KRON_RADIUS": Column("Kron apertures in units of A or B", "", "%5.2f", np.float32, "1E"),
    "A_IMAGE": Column("Profile RMS along major axis", "pixel", "%9.3f", np.float32, "1E"),
    "B_IMAGE": Column("Profile RMS along minor axis", "pixel", "%9.3f", np.float32, "1E"),
    "THETA_IMAGE": Column("Position angle (CCW/x)", "deg", "%6.2f", np.float32, "1E"),
    "FLAGS": Column("Extraction flags", "", "%3d", np.int16, "1I"),
    "ALPHA_J2000": Column("Right ascension of barycenter (J2000)", "deg", "%11.7f", np.float64, "1D"),
    "DELTA_J2000": Column("Declination of barycenter (J2000)", "deg", "%+11.7f", np.float64, "1D"),
    "X_WORLD": Column("Barycenter position along world x axis", "deg", "%18.10e", np.float64, "1D"),
    "Y_WORLD": Column("Barycenter position along world y axis", "deg", "%18.10e", np.float64, "1D"),
    "ELONGATION": Column("A_IMAGE/B_IMAGE", "", "%8.3f", np.float32, "1E"),
    "ELLIPTICITY": Column("1 - B_IMAGE/A_IMAGE", "", "%8.3f", np.float32, "1E"),
    "BACKGROUND": Column("Background at centroid position", "count", "%12.7g", np.float32, "1E"),
    "ISOAREA_IMAGE": Column("Isophotal area above Analysis threshold", "pixel**2", "%9d", np.int32, "1J"),
    "FLUX_MAX": Column("Peak flux above background", "count", "%12.7g", np.float32, "1E"),
    "FLUX_ISO": Column("Isophotal flux", "count", "%12.7g", np.float32, "1E"),
    "FLUXERR_ISO": Column("RMS error for isophotal flux", "count", "%12.7g", np.float32, "1E"),
    "MAG_ISO": Column("Isophotal magnitude", "mag", "%8.4f", np.float32, "1E"),
    "MAGERR_ISO": Column("RMS error for isophotal magnitude", "mag", "%8.4f", np.float32, "1E"),
    "FLUX_RADIUS": Column("Fraction-of-light radii", "pixel", "%10.3f", np.float32, "1E", vector=True),
    "FLUX_APER": Column("Flux vector within fixed circular aperture(s)", "count", "%12.7g", np.float32, "1E", vector=True),
    "FLUXERR_APER": Column("RMS error vector for aperture flux(es)", "count", "%12.7g", np.float32, "1E", vector=True),
    "MAG_APER": Column("Fixed aperture magnitude vector", "mag", "%8.4f", np.float32, "1E", vector=True),
    "MAGERR_APER": Column("RMS error vector for fixed aperture mag.", "mag", "%8.4f", np.float32, "1E", vector=True),
    "CLASS_STAR": Column("S/G classifier output", "", "%6.3f", np.float32, "1E"),
    "XWIN_IMAGE": Column("Windowed position estimate along x", "pixel", "%11.4f", np.float64, "1D"),
    "YWIN_IMAGE": Column("Windowed position estimate along y", "pixel", "%11.4f", np.float64, "1D"),
    "FWHM_IMAGE": Column("FWHM assuming a gaussian core", "pixel", "%8.2f", np.float32, "1E"),
    "FWHM_WORLD": Column("FWHM assuming a gaussian core", "deg", "%12.7g", np.float32, "1E"),
    "MU_MAX": Column("Peak surface brightness above background", "mag * arcsec**(-2)", "%8.4f", np.float32, "1E"),
}


class Parameter(NamedTuple):
    """One line of a ``.param`` file: a column and how many elements it has (1: a scalar)."""

    name: str
    size: int = 1

    def __str__(self) -> str:
        return f"{self.name}({self.size})" if self.size > 1 else self.name


_SPELLING = re.compile(r"([A-Z0-9_]+)\s*(?:\(\s*(\d+)\s*\))?")


def parameter(spelling: str) -> Parameter:
    """``"FLUX_APER(3)"`` -> ``Parameter("FLUX_APER", 3)``; ValueError saying why for anything else."""
    match = _SPELLING.fullmatch(spelling.strip().upper())
    if not match:
        raise ValueError(f"{spelling!r} is not a parameter name")
    name, size = match.group(1), int(match.group(2) or 1)
    if name not in COLUMNS:
        raise ValueError(f"parameter {name} is not supported")
    if match.group(2) and not COLUMNS[name].vector:
        raise ValueError(f"parameter {name} is a single value, not a vector; write it without ({match.group(2)})")
    if size < 1:
        raise ValueError(f"parameter {spelling.strip()} asks for no elements; give a size of at least 1")
    return Parameter(name, size)


def header_line(index: int, name: str) -> str:
    """One ``#   1 NUMBER ...`` line of an ASCII_HEAD catalogue, newline included."""
    column = COLUMNS[name]
    line = f"#{index:4d} {name:<22s} {column.description:<58s}"
    if column.unit:
        line += f" [{column.unit}]"
    return line + "\n"


def dtype_for(parameters: tuple[str, ...]) -> np.dtype:
    """The structured dtype of a catalogue with these columns (``.param`` spellings), in this order;
    a vector column is a sub-array of its size."""
    fields = []
    for name, size in map(parameter, parameters):
        fields.append((name, COLUMNS[name].dtype, (size,)) if size > 1 else (name, COLUMNS[name].dtype))
    return np.dtype(fields)
