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
    #: 0: one value; 1: NAME(n), one per aperture or light fraction; 2: NAME(w,h), a stamp of pixels
    dims: int = 0


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
    "FLUX_RADIUS": Column("Fraction-of-light radii", "pixel", "%10.3f", np.float32, "1E", dims=1),
    "FLUX_APER": Column("Flux vector within fixed circular aperture(s)", "count", "%12.7g", np.float32, "1E", dims=1),
    "FLUXERR_APER": Column("RMS error vector for aperture flux(es)", "count", "%12.7g", np.float32, "1E", dims=1),
    "MAG_APER": Column("Fixed aperture magnitude vector", "mag", "%8.4f", np.float32, "1E", dims=1),
    "MAGERR_APER": Column("RMS error vector for fixed aperture mag.", "mag", "%8.4f", np.float32, "1E", dims=1),
    "CLASS_STAR": Column("S/G classifier output", "", "%6.3f", np.float32, "1E"),
    "VIGNET": Column("Pixel data around detection", "count", "%12.7g", np.float32, "1E", dims=2),
    "XWIN_IMAGE": Column("Windowed position estimate along x", "pixel", "%11.4f", np.float64, "1D"),
    "YWIN_IMAGE": Column("Windowed position estimate along y", "pixel", "%11.4f", np.float64, "1D"),
    "ERRAWIN_IMAGE": Column("RMS windowed pos error along major axis", "pixel", "%9.5f", np.float32, "1E"),
    "ERRBWIN_IMAGE": Column("RMS windowed pos error along minor axis", "pixel", "%9.5f", np.float32, "1E"),
    "ERRTHETAWIN_IMAGE": Column("Windowed error ellipse pos angle (CCW/x)", "deg", "%6.2f", np.float32, "1E"),
    "SNR_WIN": Column("Gaussian-weighted SNR", "", "%10.4g", np.float32, "1E"),
    "IMAFLAGS_ISO": Column("FLAG-image flags OR'ed over the iso. profile", "", "%9d", np.int64, "1J"),
    "NIMAFLAGS_ISO": Column("Number of flagged pixels entering IMAFLAGS_ISO", "", "%9d", np.int32, "1J"),
    "MU_THRESHOLD": Column("Analysis threshold above background", "mag * arcsec**(-2)", "%8.4f", np.float32, "1E"),
    "FWHM_IMAGE": Column("FWHM assuming a gaussian core", "pixel", "%8.2f", np.float32, "1E"),
    "FWHM_WORLD": Column("FWHM assuming a gaussian core", "deg", "%12.7g", np.float32, "1E"),
    "MU_MAX": Column("Peak surface brightness above background", "mag * arcsec**(-2)", "%8.4f", np.float32, "1E"),
}


class Parameter(NamedTuple):
    """One line of a ``.param`` file: a column and its size as written, ``(n,)`` for a vector,
    ``(w, h)`` for a stamp, ``()`` for one value."""

    name: str
    shape: tuple[int, ...] = ()

    @property
    def size(self) -> int:
        """How many values the column holds per source."""
        return int(np.prod(self.shape)) if self.shape else 1

    @property
    def array_shape(self) -> tuple[int, ...]:
        """The shape of one source's values in memory: ``(h, w)`` for a ``(w, h)`` stamp, rows
        of x, as FITS lays out ``TDIM = '(w, h)'``."""
        return tuple(reversed(self.shape))

    def __str__(self) -> str:
        return f"{self.name}({','.join(map(str, self.shape))})" if self.shape else self.name


_SPELLING = re.compile(r"([A-Z0-9_]+)\s*(?:\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\))?")


def parameter(spelling: str) -> Parameter:
    """``"FLUX_APER(3)"`` -> ``Parameter("FLUX_APER", (3,))``, ``"VIGNET(25,25)"`` ->
    ``Parameter("VIGNET", (25, 25))``; a ValueError saying why for anything else."""
    match = _SPELLING.fullmatch(spelling.strip().upper())
    if not match:
        raise ValueError(f"{spelling!r} is not a parameter name")
    name = match.group(1)
    shape = tuple(int(n) for n in match.group(2, 3) if n is not None)
    if name not in COLUMNS:
        raise ValueError(f"parameter {name} is not supported")
    dims = COLUMNS[name].dims
    written = spelling.strip()[len(name):].strip()
    if shape and dims == 0:
        raise ValueError(f"parameter {name} is a single value, not a vector; write it without {written}")
    if dims == 2 and len(shape) != 2:
        raise ValueError(f"parameter {name} is a stamp of pixels: give its width and height, like {name}(25,25)")
    if dims == 1 and len(shape) > 1:
        raise ValueError(f"parameter {name} is a vector: give one size, like {name}(3), not {written}")
    if any(n < 1 for n in shape):
        raise ValueError(f"parameter {spelling.strip()} asks for no elements; give sizes of at least 1")
    if dims == 1 and shape == (1,):
        shape = ()  # FLUX_APER(1) is FLUX_APER
    return Parameter(name, shape)


def header_line(index: int, name: str) -> str:
    """One ``#   1 NUMBER ...`` line of an ASCII_HEAD catalogue, newline included."""
    column = COLUMNS[name]
    line = f"#{index:4d} {name:<22s} {column.description:<58s}"
    if column.unit:
        line += f" [{column.unit}]"
    return line + "\n"


def dtype_for(parameters: tuple[str, ...]) -> np.dtype:
    """The structured dtype of a catalogue with these columns (``.param`` spellings), in this order;
    a vector or stamp column is a sub-array of its shape."""
    fields = []
    for column in map(parameter, parameters):
        dtype = COLUMNS[column.name].dtype
        fields.append((column.name, dtype, column.array_shape) if column.shape else (column.name, dtype))
    return np.dtype(fields)
