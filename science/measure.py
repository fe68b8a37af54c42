"""Detect and measure the sources of one CCD with source-extractor's semantics.

Background mesh, threshold and deblending are sep's (sep is source-extractor's
own code as a library); MAG_AUTO and FLAGS follow source-extractor exactly
(see :mod:`.photometry`).  Input: a float32 CCD and its header.  Output: a
structured array with one field per requested catalogue column.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import sep

from .aperture import aperture_photometry
from .classifier import Network, class_star, isophotal_areas
from .columns import dtype_for, parameter
from .errors import ConfigError
from .photometry import (
    FLAG_APERTURE_INCOMPLETE,
    FLAG_DEBLEND_OVERFLOW,
    FLAG_MERGED,
    FLAG_SATURATED,
    FLAG_TRUNCATED,
    NeighbourMask,
    auto_photometry,
    magnitudes,
)
from .flag_maps import isophotal_flags
from .isophotal import gaussian_fwhm, isophotal_area, isophotal_flux, source_thresholds
from .radius import GROWTH_MINHLRAD, flux_radius
from .seeing import Seeing, measure_seeing
from .sexconfig import ExtractionConfig
from .vignet import vignets
from .weights import FROM_FILE, Noise, from_weight_map, interpolate, rescale, scale_factor
from .windowed import window_errors, windowed_positions

# sep touches its whole pixel stack on every call, so start from
# source-extractor's own MEMORY_PIXSTACK default and grow only on overflow.
_PIXSTACK_START = 300_000
_PIXSTACK_MAX = 40_000_000
# Rows filtered at a time for the CORRECT mask (about 1 MB of float32 per band).
_FILTER_BAND = 128
sep.set_sub_object_limit(4096)

# sep's own flag bits
_SEP_MERGED = 0x0001
_SEP_TRUNC = 0x0002
_SEP_DOVERFLOW = 0x0004


class EmptyCCD(ValueError):
    """The CCD has no usable pixels (all NaN, or constant)."""


@dataclass
class CCDMeasurement:
    """A CCD's catalogue rows plus what a progress line or the QA view wants to show.

    The QA numbers come from the internal measurement, whatever columns the
    user's ``.param`` asks for: ``magnitudes`` are every source's MAG_AUTO at
    the CCD's ``zeropoint``, ``saturated`` counts sources flagged saturated.
    """

    sources: np.ndarray
    background: float
    rms: float
    threshold: float
    seeing: Seeing
    magnitudes: np.ndarray
    saturated: int
    zeropoint: float


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


def header_float(header, key: str, default: float) -> float:
    """``header[key]`` as a float, or ``default`` when there is no key, no card or no number."""
    value = header.get(key) if key else None
    try:
        return float(value) if value is not None else default
    except (TypeError, ValueError):
        return default


def _filtered_above(image: np.ndarray, kernel: np.ndarray | None, threshold: float | np.ndarray) -> np.ndarray:
    """Pixels above threshold (one for all, or each pixel's) in the filtered image, as sep and
    source-extractor filter it.

    Out-of-CCD pixels count as zero.  A separable kernel (default.conv and the
    gauss_*.conv files are) is applied as a column pass then a row pass.  The
    CCD is filtered in bands of rows small enough to stay in the CPU cache:
    three times faster than whole-CCD passes, and no CCD-sized temporaries.
    """
    if kernel is None:
        return image > threshold
    above = np.empty(image.shape, dtype=bool)
    for (y0, y1), band in _filtered_bands(image, kernel):
        np.greater(band, threshold[y0:y1] if np.ndim(threshold) else threshold, out=above[y0:y1])
    return above


def _filtered(image: np.ndarray, kernel: np.ndarray | None) -> np.ndarray:
    """The whole filtered image (float32); the image itself without a filter."""
    if kernel is None:
        return image
    out = np.empty(image.shape, dtype=np.float32)
    for (y0, y1), band in _filtered_bands(image, kernel):
        out[y0:y1] = band
    return out


def _filtered_bands(image: np.ndarray, kernel: np.ndarray):
    """``((y0, y1), rows y0..y1 of the filtered image)`` for bands of rows covering the CCD."""
    u, s, vt = np.linalg.svd(kernel.astype(np.float64))
    if len(s) > 1 and s[1] <= 1e-6 * s[0]:
        column = (u[:, 0] * np.sqrt(s[0])).astype(np.float32)[:, None]
        row = (vt[0] * np.sqrt(s[0])).astype(np.float32)[None, :]
        passes = [column, row]
    else:
        passes = [kernel.astype(np.float32)]
    kh, kw = kernel.shape
    ry, rx = kh // 2, kw // 2
    ny, nx = image.shape
    # Zero padding makes every shift of the kernel a contiguous 1-D slice.
    padded = np.zeros((_FILTER_BAND + kh - 1, nx + kw - 1), dtype=np.float32)
    for y0 in range(0, ny, _FILTER_BAND):
        y1 = min(y0 + _FILTER_BAND, ny)
        lo, hi = max(y0 - ry, 0), min(y1 + ry, ny)
        if (lo, hi) != (y0 - ry, y1 + ry):
            padded[:] = 0.0  # a band at the CCD's edge: rows outside it are zero
        top = lo - (y0 - ry)
        padded[top : top + hi - lo, rx : rx + nx] = image[lo:hi]
        band = padded
        for weights in passes:
            band = _correlate_flat(band, weights)
        yield (y0, y1), band[ry : ry + y1 - y0, rx : rx + nx]


def _correlate_flat(padded: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlate a zero-padded image with a small kernel using flat, contiguous shifts.

    Values within the padding come out as garbage; the padding must be at
    least the kernel's half-size, so that the interior is exact.
    """
    width = padded.shape[1]
    src = padded.ravel()
    out = np.zeros_like(src)
    scratch = np.empty_like(src)
    kh, kw = kernel.shape
    for j in range(kh):
        for i in range(kw):
            weight = kernel[j, i]
            if weight == 0:
                continue
            shift = (j - kh // 2) * width + (i - kw // 2)
            lo, hi = max(-shift, 0), src.size - max(shift, 0)
            product = scratch[: hi - lo]
            np.multiply(src[lo + shift : hi + shift], weight, out=product)
            out[lo:hi] += product
    return out.reshape(padded.shape)


def _connected_groups(ys: np.ndarray, xs: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """8-connected groups of a sparse set of pixels (given in row-major order).

    Returns each group's size and each pixel's group.  Only a few thousand
    pixels are set on a CCD, so the groups come from joining neighbouring
    pixels' labels rather than from labelling the whole CCD.
    """
    flat = ys.astype(np.int64) * width + xs
    firsts, seconds = [], []
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
        x2 = xs + dx
        target = flat + dy * width + dx
        where = np.minimum(np.searchsorted(flat, target), len(flat) - 1)
        hit = (flat[where] == target) & (x2 >= 0) & (x2 < width)
        firsts.append(np.flatnonzero(hit))
        seconds.append(where[hit])
    labels = _join_labels(len(flat), np.concatenate(firsts), np.concatenate(seconds))
    return np.bincount(labels, minlength=len(flat)), labels


def _join_labels(count: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Each element's group (its smallest member) given pairs ``a[k]``, ``b[k]`` in the same group.

    Each round hooks every root onto the smaller root it is paired with, then
    jumps pointers until every element points at its root; the small groups on
    a CCD need a few rounds.
    """
    labels = np.arange(count)
    while True:
        la, lb = labels[a], labels[b]
        apart = la != lb
        if not apart.any():
            return labels
        low = np.minimum(la[apart], lb[apart])
        np.minimum.at(labels, la[apart], low)
        np.minimum.at(labels, lb[apart], low)
        while True:
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped


def _masking_pixels(
    image: np.ndarray, kernel: np.ndarray | None, threshold: float | np.ndarray, segmap: np.ndarray, minarea: int
) -> np.ndarray:
    """Pixels that mask an object's neighbours under MASK_TYPE CORRECT.

    source-extractor blanks every pixel above the detection threshold, gives
    each object its own pixels back while measuring it, and pastes back for
    good the pixels of detections removed by CLEAN.  sep leaves both CLEANed
    detections and islands smaller than DETECT_MINAREA out of its
    segmentation map; a connected group of at least DETECT_MINAREA such
    pixels was a detection, so it is unmasked.
    """
    masking = _filtered_above(image, kernel, threshold)
    flat = np.flatnonzero(masking)
    flat = flat[segmap.ravel()[flat] == 0]
    ys, xs = np.divmod(flat, image.shape[1])
    if len(ys):
        sizes, labels = _connected_groups(ys, xs, image.shape[1])
        cleaned = sizes[labels] >= minarea
        masking[ys[cleaned], xs[cleaned]] = False
    return masking


def _extract(data: np.ndarray, threshold: float, **options):
    """sep.extract, retried with a larger pixel stack when a crowded CCD overflows it."""
    stack = max(sep.get_extract_pixstack(), _PIXSTACK_START)
    while True:
        sep.set_extract_pixstack(stack)
        try:
            return sep.extract(data, threshold, **options)
        except Exception as exc:
            if "pixel buffer full" not in str(exc) or stack >= _PIXSTACK_MAX:
                raise
            stack *= 4


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


def measure_ccd(
    data: np.ndarray, header, config: ExtractionConfig, ext_number: int = 1, flag_map: np.ndarray | None = None,
    weight_map: np.ndarray | None = None,
) -> CCDMeasurement:
    """Measure one CCD.  ``data`` (float32, C-contiguous) is background-subtracted in place.
    ``flag_map`` is the CCD's flag map, for IMAFLAGS_ISO and NIMAFLAGS_ISO; ``weight_map`` its
    weight map, for WEIGHT_TYPE MAP_WEIGHT, MAP_VAR or MAP_RMS (:mod:`.weights`)."""
    # The extremes tell, in two fast passes, whether any pixel is NaN or infinite
    # (those are blank; min and max propagate NaN) and whether the CCD is constant.
    low, high = data.min(), data.max()
    blank = None
    if not (np.isfinite(low) and np.isfinite(high)):
        blank = ~np.isfinite(data)
        if blank.all():
            raise EmptyCCD("every pixel is NaN")
        usable = data[~blank]
        low, high = usable.min(), usable.max()
        data[blank] = 0.0
    if low == high:
        raise EmptyCCD(f"every pixel has the same value ({float(low)}); there is nothing to measure")

    bw, bh = config.back_size
    fw, fh = config.back_filtersize
    mesh = dict(bw=bw, bh=bh, fw=fw, fh=fh, fthresh=config.back_filtthresh)
    variance = bad = None
    unmeasured = blank  # what the background leaves out
    if config.weight_type in FROM_FILE:
        if weight_map is None:
            raise ConfigError(f"WEIGHT_TYPE {config.weight_type} needs a weight map (-WEIGHT_IMAGE weights.fits)")
        variance, weight_limit = from_weight_map(config.weight_type, weight_map, config.weight_thresh)
        bad = variance >= weight_limit
        if bad.any():
            unmeasured = bad if blank is None else bad | blank
    bkg = sep.Background(data, mask=unmeasured, **mesh)
    rms = float(bkg.globalrms)
    if config.weight_type == "BACKGROUND":
        variance = np.square(bkg.rms(dtype=np.float32))
    elif config.weight_type in ("MAP_WEIGHT", "MAP_VAR"):
        factor = scale_factor(bkg.rms(), variance, unmeasured, mesh)
        if config.rescale_weights:
            rescale(config.weight_type, variance, factor)
        else:
            rms /= factor
    if config.back_type == "MANUAL":
        level = np.float32(config.back_value)
        background_map = None
        data -= level
        global_back = float(level)
    else:
        background_map = bkg.back(dtype=np.float32)
        data -= background_map
        global_back = float(bkg.globalback)
    if variance is not None and config.weight_type in FROM_FILE:
        # bad pixels filled in where they can be, against the limit converted before the rescaling, as there
        bad = interpolate(data, variance, weight_limit, *config.interp_lags) if config.interp_type == "ALL" \
            else variance >= weight_limit
    if blank is not None:
        data[blank] = 0.0

    threshold = config.detect_thresh * rms if config.thresh_type == "RELATIVE" else config.detect_thresh
    kernel = config.kernel()
    # With a variance map a relative threshold is each pixel's, DETECT_THRESH · sqrt(the variance
    # filtered as the image is); sep 1.4 takes the root of the variance it is given unfiltered
    # (measured), so it is given the filtered one.
    detection_variance = _filtered(variance, kernel) if variance is not None and config.thresh_type == "RELATIVE" \
        else None
    objects, segmap = _extract(
        data,
        config.detect_thresh if detection_variance is not None else threshold,
        var=detection_variance,
        mask=blank,
        minarea=config.detect_minarea,
        filter_kernel=kernel,
        filter_type="conv",
        deblend_nthresh=config.deblend_nthresh,
        deblend_cont=config.deblend_mincont,
        clean=config.clean,
        clean_param=config.clean_param,
        segmentation_map=True,
    )
    if config.detect_maxarea > 0:
        keep = objects["npix"] <= config.detect_maxarea
        if not keep.all():
            ids = np.flatnonzero(keep) + 1
            lookup = np.zeros(len(objects) + 1, dtype=segmap.dtype)
            lookup[ids] = np.arange(1, len(ids) + 1)
            segmap = lookup[segmap]
            objects = objects[keep]

    gain = header_float(header, config.gain_key, config.gain)
    satur = header_float(header, config.satur_key, config.satur_level)
    correct = config.mask_type == "CORRECT"
    if correct:
        pixel_threshold = threshold if detection_variance is None else \
            np.float32(config.detect_thresh) * np.sqrt(detection_variance)
        masking = _masking_pixels(data, kernel, pixel_threshold, segmap, config.detect_minarea)
    else:
        masking = None
    mask = NeighbourMask(data, segmap, masking, blank, correct, bad=bad if bad is not None and bad.any() else None)
    noise = Noise(rms, gain, variance.ravel() if variance is not None else None, config.weight_gain)
    phot = auto_photometry(
        mask,
        objects,
        kron_fact=config.phot_autoparams[0],
        min_radius=config.phot_autoparams[1],
        autoapers=config.phot_autoapers,
        noise=noise,
    )

    flags = phot.flags.copy()
    sep_flags = objects["flag"]
    flags[(sep_flags & _SEP_MERGED) != 0] |= FLAG_MERGED
    flags[(sep_flags & _SEP_TRUNC) != 0] |= FLAG_TRUNCATED
    flags[(sep_flags & _SEP_DOVERFLOW) != 0] |= FLAG_DEBLEND_OVERFLOW
    # Saturated when the peak plus the background under the centre reaches the level.
    ix = np.clip((objects["x"] + 0.5).astype(np.int64), 0, data.shape[1] - 1)
    iy = np.clip((objects["y"] + 0.5).astype(np.int64), 0, data.shape[0] - 1)
    under = background_map[iy, ix] if background_map is not None else global_back
    flags[objects["peak"] + under >= satur] |= FLAG_SATURATED
    seeing = measure_seeing(mask, objects, phot.flux, phot.fluxerr, flags)
    zeropoint = config.zeropoint(header)
    mag, magerr = phot.magnitudes(zeropoint)

    rows = np.zeros(len(objects), dtype=dtype_for(config.parameters))
    columns = {column.name: column for column in map(parameter, config.parameters)}
    names = set(columns)
    if config.phot_apertures:  # only when an _APER column asks for them: they may flag the source
        aper_flux, aper_fluxerr, cut = aperture_photometry(mask, objects, config.phot_apertures, noise=noise)
        flags[cut] |= FLAG_APERTURE_INCOMPLETE
        aper_mag, aper_magerr = magnitudes(aper_flux, aper_fluxerr, zeropoint)
    windowed = {"XWIN_IMAGE", "YWIN_IMAGE", "ERRAWIN_IMAGE", "ERRBWIN_IMAGE", "ERRTHETAWIN_IMAGE", "SNR_WIN"}
    if names & ({"FLUX_RADIUS"} | windowed):
        # The growth curve's box may flag the source: source-extractor builds it for either.
        fractions = config.phot_fluxfrac if "FLUX_RADIUS" in names else ()
        radii, growth_cut = flux_radius(mask, objects, phot.flux, (*fractions, 0.5))
        flags[growth_cut] |= FLAG_APERTURE_INCOMPLETE
        half_light = np.maximum(radii[:, -1], GROWTH_MINHLRAD)
        radii = radii[:, :-1]
    if names & windowed:
        xwin, ywin, window_cut = windowed_positions(mask, objects, half_light)
        flags[window_cut] |= FLAG_APERTURE_INCOMPLETE
    if names & (windowed - {"XWIN_IMAGE", "YWIN_IMAGE"}):
        snr_win, errawin, errbwin, errthetawin = window_errors(mask, objects, xwin, ywin, half_light, noise)
    x_image = objects["x"] + 1.0
    y_image = objects["y"] + 1.0
    global_analysis = config.analysis_threshold(rms)

    # Under a variance map each pixel has its own analysis threshold and each source the lowest
    # over its pixels (examineiso); worked out only when a column asks, it is a CCD-sized map.
    @functools.cache
    def pixel_analysis() -> float | np.ndarray:
        if variance is None:
            return global_analysis
        return np.float32(global_analysis / rms if rms > 0 else 1.0) * np.sqrt(variance)

    @functools.cache
    def analysis() -> float | np.ndarray:
        if variance is None:
            return global_analysis
        return source_thresholds(segmap, len(objects), pixel_analysis())
    background_under = np.broadcast_to(np.asarray(under, dtype=np.float64), (len(objects),))

    @functools.cache
    def fwhm_image() -> np.ndarray:
        return gaussian_fwhm(data, segmap, objects, analysis(), satur - background_under)

    @functools.cache
    def scale() -> np.ndarray:  # degrees per pixel at each source
        if config.pixel_scale:
            return np.full(len(objects), config.pixel_scale / 3600.0)
        return _pixel_scale(header, x_image, y_image)

    def surface_brightness(level: np.ndarray) -> np.ndarray:
        """mag arcsec⁻² of ``level`` ADU per pixel above the background (99 where not positive)."""
        area = (scale() * 3600.0) ** 2  # arcsec**2 per pixel
        level = np.broadcast_to(np.asarray(level, dtype=np.float64), area.shape)
        with np.errstate(divide="ignore", invalid="ignore"):
            mu = zeropoint - 2.5 * np.log10(level / area)
        return np.where((level > 0) & (area > 0), mu, 99.0)

    def mu_max() -> np.ndarray:
        return surface_brightness(objects["peak"])

    def mu_threshold() -> np.ndarray:
        return surface_brightness(analysis())

    def stellarity() -> np.ndarray:
        pixel_scale = config.pixel_scale or float(
            _pixel_scale(header, np.array([data.shape[1] / 2.0]), np.array([data.shape[0] / 2.0]))[0] * 3600.0
        )
        if pixel_scale <= 0:
            raise ConfigError("CLASS_STAR needs the pixel scale: set PIXEL_SCALE, or give the CCDs a celestial WCS")
        areas = isophotal_areas(data, segmap, objects, analysis())
        network = Network.from_numbers(config.star_nnw)
        # the isophotes start at the source's threshold, the peak is over the CCD's (analyse.c)
        return class_star(network, areas, objects["peak"], global_analysis, config.seeing_fwhm, pixel_scale)

    @functools.cache
    def image_flags() -> tuple[np.ndarray, np.ndarray]:
        if flag_map is None:
            raise ConfigError("IMAFLAGS_ISO and NIMAFLAGS_ISO need a flag map (-FLAG_IMAGE flags.fits)")
        return isophotal_flags(segmap, flag_map, len(objects), config.flag_type)

    iso_flux, iso_fluxerr = isophotal_flux(objects, noise, data, segmap)
    iso_mag, iso_magerr = magnitudes(iso_flux, iso_fluxerr, zeropoint)
    values = {
        "NUMBER": lambda: np.arange(1, len(objects) + 1),
        "EXT_NUMBER": lambda: np.full(len(objects), ext_number),
        "X_IMAGE": lambda: x_image,
        "Y_IMAGE": lambda: y_image,
        "FLUX_AUTO": lambda: phot.flux,
        "FLUXERR_AUTO": lambda: phot.fluxerr,
        "KRON_RADIUS": lambda: phot.kron_radius,
        "A_IMAGE": lambda: objects["a"],
        "B_IMAGE": lambda: objects["b"],
        "THETA_IMAGE": lambda: np.degrees(objects["theta"]),
        "FLAGS": lambda: flags,
        "ELONGATION": lambda: objects["a"] / objects["b"],
        "ELLIPTICITY": lambda: 1.0 - objects["b"] / objects["a"],
        "BACKGROUND": lambda: background_under,
        "ISOAREA_IMAGE": lambda: isophotal_area(data, segmap, len(objects), pixel_analysis()),
        "FLUX_MAX": lambda: objects["peak"],
        "FLUX_ISO": lambda: iso_flux,
        "FLUXERR_ISO": lambda: iso_fluxerr,
        "MAG_ISO": lambda: iso_mag,
        "MAGERR_ISO": lambda: iso_magerr,
        "FLUX_RADIUS": lambda: radii,
        "FLUX_APER": lambda: aper_flux,
        "FLUXERR_APER": lambda: aper_fluxerr,
        "MAG_APER": lambda: aper_mag,
        "MAGERR_APER": lambda: aper_magerr,
        "XWIN_IMAGE": lambda: xwin,
        "YWIN_IMAGE": lambda: ywin,
        "ERRAWIN_IMAGE": lambda: errawin,
        "ERRBWIN_IMAGE": lambda: errbwin,
        "ERRTHETAWIN_IMAGE": lambda: errthetawin,
        "SNR_WIN": lambda: snr_win,
        "MU_THRESHOLD": mu_threshold,
        "IMAFLAGS_ISO": lambda: image_flags()[0],
        "NIMAFLAGS_ISO": lambda: image_flags()[1],
        "FWHM_IMAGE": fwhm_image,
        "FWHM_WORLD": lambda: fwhm_image() * scale(),
        "MU_MAX": mu_max,
        "CLASS_STAR": stellarity,
        "VIGNET": lambda: vignets(mask, objects, *columns["VIGNET"].shape),
    }
    for name, compute in values.items():
        if name in names:
            _store(rows, name, compute())
    if names & {"MAG_AUTO", "MAGERR_AUTO"}:
        if "MAG_AUTO" in names:
            rows["MAG_AUTO"] = mag
        if "MAGERR_AUTO" in names:
            rows["MAGERR_AUTO"] = magerr
    if names & {"ALPHA_J2000", "DELTA_J2000", "X_WORLD", "Y_WORLD"}:
        alpha, delta = _celestial(header, x_image, y_image)  # the world axes are RA and Dec
        for name, value in (("ALPHA_J2000", alpha), ("DELTA_J2000", delta), ("X_WORLD", alpha), ("Y_WORLD", delta)):
            if name in names:
                rows[name] = value
    saturated = int(np.count_nonzero(flags & FLAG_SATURATED))
    return CCDMeasurement(
        rows, global_back, rms, float(threshold), seeing, mag[np.isfinite(mag)].astype(np.float32), saturated, zeropoint
    )
