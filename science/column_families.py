"""The catalogue's columns, family by family: what fills each, computed only when the .param asks.

:func:`.measure.measure_ccd` detects the sources and measures what every run
needs (MAG_AUTO, FLAGS, the seeing).  Every other column comes from a family
here: columns that share their work (the four aperture columns, the windowed
positions and their errors, the isophotal fluxes) share one cached
computation, and :data:`FAMILIES` is the table from a column's name to it.
Some families can flag a source (an aperture or a growth curve cut by the
CCD's edge), so FLAGS is filled last.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .aperture import aperture_photometry
from .classifier import Network, class_star, isophotal_areas
from .columns import Parameter, dtype_for, parameter
from .errors import ConfigError
from .flag_maps import isophotal_flags
from .isophotal import gaussian_fwhm, isophotal_area, isophotal_flux, source_thresholds
from .photometry import FLAG_APERTURE_INCOMPLETE, AutoPhotometry, NeighbourMask, magnitudes
from .radius import Growth, growth_curves
from .sexconfig import ExtractionConfig
from .vignet import vignets
from .weights import Noise
from .windowed import Windows, measure_windows


def _celestial_wcs(header):
    """The header's celestial WCS, or None."""
    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        wcs = WCS(header)
    return wcs.celestial if wcs.has_celestial else None


def _celestial(header, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ALPHA_J2000/DELTA_J2000 of 1-based pixel positions; zeros without a celestial WCS."""
    celestial = _celestial_wcs(header)
    if celestial is None or len(x) == 0:
        return np.zeros(len(x)), np.zeros(len(x))
    alpha, delta = celestial.all_pix2world(x, y, 1)
    return np.asarray(alpha, dtype=np.float64), np.asarray(delta, dtype=np.float64)


def _pixel_scale(header, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Degrees per pixel at 1-based pixel positions: the square root of the WCS Jacobian's
    determinant there, as source-extractor takes it when PIXEL_SCALE is 0 (0 without a WCS)."""
    celestial = _celestial_wcs(header)
    if celestial is None or len(x) == 0:
        return np.zeros(len(x))
    lng, lat = celestial.all_pix2world(x, y, 1)
    lng_x, lat_x = celestial.all_pix2world(x + 1.0, y, 1)
    lng_y, lat_y = celestial.all_pix2world(x, y + 1.0, 1)
    cos_lat = np.cos(np.radians(lat))
    dlng_x = ((lng_x - lng + 180.0) % 360.0 - 180.0) * cos_lat
    dlng_y = ((lng_y - lng + 180.0) % 360.0 - 180.0) * cos_lat
    return np.sqrt(np.abs(dlng_x * (lat_y - lat) - dlng_y * (lat_x - lat)))


_WINDOW_ERRORS = frozenset({"ERRAWIN_IMAGE", "ERRBWIN_IMAGE", "ERRTHETAWIN_IMAGE", "SNR_WIN"})
_WINDOWED = _WINDOW_ERRORS | {"XWIN_IMAGE", "YWIN_IMAGE"}


@dataclass
class Measured:
    """What measuring one CCD computed that the columns are made from.

    ``data`` is the background-subtracted CCD, ``variance`` each pixel's with a
    weight map (None without), ``background_under`` the background under each
    source's centre, ``satur`` the saturation level, ``flags`` the FLAGS so far
    (families add to it), ``magnitude`` MAG_AUTO and MAGERR_AUTO.
    """

    data: np.ndarray
    header: object
    config: ExtractionConfig
    ext_number: int
    objects: np.ndarray
    segmap: np.ndarray
    mask: NeighbourMask
    noise: Noise
    variance: np.ndarray | None
    rms: float
    background_under: np.ndarray
    satur: float
    phot: AutoPhotometry
    flags: np.ndarray
    magnitude: tuple[np.ndarray, np.ndarray]
    zeropoint: float
    flag_map: np.ndarray | None


class Families:
    """Each family's values for one CCD, computed on first use."""

    def __init__(self, measured: Measured, columns: dict[str, Parameter]):
        self.m = measured
        self.columns = columns
        self.count = len(measured.objects)
        self.x_image = measured.objects["x"] + 1.0
        self.y_image = measured.objects["y"] + 1.0
        self.global_analysis = measured.config.analysis_threshold(measured.rms)

    @functools.cached_property
    def apertures(self) -> tuple[np.ndarray, ...]:
        """FLUX_APER, FLUXERR_APER, MAG_APER, MAGERR_APER; an aperture the CCD's edge cuts flags its source."""
        m = self.m
        flux, fluxerr, cut = aperture_photometry(m.mask, m.objects, m.config.phot_apertures, noise=m.noise)
        m.flags[cut] |= FLAG_APERTURE_INCOMPLETE
        return (flux, fluxerr, *magnitudes(flux, fluxerr, m.zeropoint))

    @functools.cached_property
    def growth(self) -> Growth:
        """FLUX_RADIUS at each PHOT_FLUXFRAC, and the half-light radius the windows are sized by; source-extractor
        builds the growth curve for either, and its box may flag the source."""
        m = self.m
        fractions = m.config.phot_fluxfrac if "FLUX_RADIUS" in self.columns else ()
        found = growth_curves(m.mask, m.objects, m.phot.flux, fractions, min_radius=m.config.phot_autoapers[0])
        m.flags[found.cut] |= FLAG_APERTURE_INCOMPLETE
        return found

    @functools.cached_property
    def windows(self) -> Windows:
        """The windowed positions, and their errors when a column asks for them; a window the CCD's edge
        cuts flags its source."""
        m = self.m
        errors = bool(self.columns.keys() & _WINDOW_ERRORS)
        found = measure_windows(m.mask, m.objects, self.growth.half_light, m.noise, errors=errors)
        m.flags[found.cut] |= FLAG_APERTURE_INCOMPLETE
        return found

    @functools.cached_property
    def pixel_analysis(self) -> float | np.ndarray:
        """The analysis threshold: one for the CCD, or each pixel's under a variance map (CCD-sized)."""
        m = self.m
        if m.variance is None:
            return self.global_analysis
        return np.float32(self.global_analysis / m.rms if m.rms > 0 else 1.0) * np.sqrt(m.variance)

    @functools.cached_property
    def analysis(self) -> float | np.ndarray:
        """Each source's analysis threshold: under a variance map the lowest over its pixels (examineiso)."""
        if self.m.variance is None:
            return self.global_analysis
        return source_thresholds(self.m.segmap, self.count, self.pixel_analysis)

    @functools.cached_property
    def fwhm_image(self) -> np.ndarray:
        m = self.m
        return gaussian_fwhm(m.data, m.segmap, m.objects, self.analysis, m.satur - m.background_under)

    @functools.cached_property
    def scale(self) -> np.ndarray:
        """Degrees per pixel at each source."""
        if self.m.config.pixel_scale:
            return np.full(self.count, self.m.config.pixel_scale / 3600.0)
        return _pixel_scale(self.m.header, self.x_image, self.y_image)

    @functools.cached_property
    def isophotal(self) -> tuple[np.ndarray, ...]:
        """FLUX_ISO, FLUXERR_ISO, MAG_ISO, MAGERR_ISO."""
        m = self.m
        flux, fluxerr = isophotal_flux(m.objects, m.noise, m.data, m.segmap)
        return (flux, fluxerr, *magnitudes(flux, fluxerr, m.zeropoint))

    @functools.cached_property
    def image_flags(self) -> tuple[np.ndarray, np.ndarray]:
        """IMAFLAGS_ISO and NIMAFLAGS_ISO."""
        if self.m.flag_map is None:
            raise ConfigError("IMAFLAGS_ISO and NIMAFLAGS_ISO need a flag map (-FLAG_IMAGE flags.fits)")
        return isophotal_flags(self.m.segmap, self.m.flag_map, self.count, self.m.config.flag_type)

    @functools.cached_property
    def sky(self) -> tuple[np.ndarray, np.ndarray]:
        """ALPHA_J2000 and DELTA_J2000 (the world axes are RA and Dec)."""
        return _celestial(self.m.header, self.x_image, self.y_image)

    def surface_brightness(self, level) -> np.ndarray:
        """mag arcsec⁻² of ``level`` ADU per pixel above the background (99 where not positive)."""
        area = (self.scale * 3600.0) ** 2  # arcsec**2 per pixel
        level = np.broadcast_to(np.asarray(level, dtype=np.float64), area.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            mu = self.m.zeropoint - 2.5 * np.log10(level / area)
        return np.where((level > 0) & (area > 0), mu, 99.0)

    def stellarity(self) -> np.ndarray:
        """CLASS_STAR: source-extractor's neural network on the isophotal areas."""
        m = self.m
        shape = m.data.shape
        pixel_scale = m.config.pixel_scale or float(
            _pixel_scale(m.header, np.array([shape[1] / 2.0]), np.array([shape[0] / 2.0]))[0] * 3600.0)
        if pixel_scale <= 0:
            raise ConfigError("CLASS_STAR needs the pixel scale: set PIXEL_SCALE, or give the CCDs a celestial WCS")
        areas = isophotal_areas(m.data, m.segmap, m.objects, self.analysis)
        network = Network.from_numbers(m.config.star_nnw)
        # the isophotes start at the source's threshold, the peak is over the CCD's (analyse.c)
        return class_star(network, areas, m.objects["peak"], self.global_analysis, m.config.seeing_fwhm, pixel_scale)


#: Each column, and how its values come from the CCD's families.
FAMILIES: dict[str, Callable[[Families], np.ndarray]] = {
    "NUMBER": lambda f: np.arange(1, f.count + 1),
    "EXT_NUMBER": lambda f: np.full(f.count, f.m.ext_number),
    "X_IMAGE": lambda f: f.x_image,
    "Y_IMAGE": lambda f: f.y_image,
    "FLUX_AUTO": lambda f: f.m.phot.flux,
    "FLUXERR_AUTO": lambda f: f.m.phot.fluxerr,
    "MAG_AUTO": lambda f: f.m.magnitude[0],
    "MAGERR_AUTO": lambda f: f.m.magnitude[1],
    "KRON_RADIUS": lambda f: f.m.phot.kron_radius,
    "A_IMAGE": lambda f: f.m.objects["a"],
    "B_IMAGE": lambda f: f.m.objects["b"],
    "THETA_IMAGE": lambda f: np.degrees(f.m.objects["theta"]),
    "ELONGATION": lambda f: f.m.objects["a"] / f.m.objects["b"],
    "ELLIPTICITY": lambda f: 1.0 - f.m.objects["b"] / f.m.objects["a"],
    "BACKGROUND": lambda f: f.m.background_under,
    "ISOAREA_IMAGE": lambda f: isophotal_area(f.m.data, f.m.segmap, f.count, f.pixel_analysis),
    "FLUX_MAX": lambda f: f.m.objects["peak"],
    "FLUX_ISO": lambda f: f.isophotal[0],
    "FLUXERR_ISO": lambda f: f.isophotal[1],
    "MAG_ISO": lambda f: f.isophotal[2],
    "MAGERR_ISO": lambda f: f.isophotal[3],
    "FLUX_RADIUS": lambda f: f.growth.radius,
    "FLUX_APER": lambda f: f.apertures[0],
    "FLUXERR_APER": lambda f: f.apertures[1],
    "MAG_APER": lambda f: f.apertures[2],
    "MAGERR_APER": lambda f: f.apertures[3],
    "XWIN_IMAGE": lambda f: f.windows.x,
    "YWIN_IMAGE": lambda f: f.windows.y,
    "SNR_WIN": lambda f: f.windows.errors[0],
    "ERRAWIN_IMAGE": lambda f: f.windows.errors[1],
    "ERRBWIN_IMAGE": lambda f: f.windows.errors[2],
    "ERRTHETAWIN_IMAGE": lambda f: f.windows.errors[3],
    "MU_THRESHOLD": lambda f: f.surface_brightness(f.analysis),
    "MU_MAX": lambda f: f.surface_brightness(f.m.objects["peak"]),
    "IMAFLAGS_ISO": lambda f: f.image_flags[0],
    "NIMAFLAGS_ISO": lambda f: f.image_flags[1],
    "FWHM_IMAGE": lambda f: f.fwhm_image,
    "FWHM_WORLD": lambda f: f.fwhm_image * f.scale,
    "CLASS_STAR": lambda f: f.stellarity(),
    "VIGNET": lambda f: vignets(f.m.mask, f.m.objects, *f.columns["VIGNET"].shape),
    "ALPHA_J2000": lambda f: f.sky[0],
    "DELTA_J2000": lambda f: f.sky[1],
    "X_WORLD": lambda f: f.sky[0],
    "Y_WORLD": lambda f: f.sky[1],
    "FLAGS": lambda f: f.m.flags,
}


def catalogue_rows(measured: Measured) -> np.ndarray:
    """The CCD's catalogue rows: one field per column the .param asks for, FLAGS filled last."""
    parameters = measured.config.parameters
    columns = {column.name: column for column in map(parameter, parameters)}
    families = Families(measured, columns)
    if measured.config.phot_apertures:  # only when an _APER column asks for them: they may flag the source
        families.apertures
    if columns.keys() & ({"FLUX_RADIUS"} | _WINDOWED):  # the growth curve may flag the source too
        families.growth
    values = {name: FAMILIES[name](families) for name in columns if name != "FLAGS"}
    rows = np.zeros(families.count, dtype=dtype_for(parameters))
    for name in columns:
        _store(rows, name, values[name] if name != "FLAGS" else measured.flags)
    return rows


def _store(rows: np.ndarray, name: str, values: np.ndarray) -> None:
    """Put a column's values in ``rows``.  ``values`` has one column per aperture or light
    fraction for a vector column: the catalogue keeps as many as it asks for, and elements
    with no aperture or fraction behind them stay 0, as in source-extractor."""
    values = np.asarray(values)
    target = rows[name]
    if target.ndim > 2:  # a stamp, already of its shape
        target[...] = values
    elif target.ndim == 1:
        rows[name] = values[:, 0] if values.ndim == 2 else values
    else:
        if values.ndim == 1:
            values = values[:, None]
        width = min(values.shape[1], target.shape[1])
        target[:, :width] = values[:, :width]
