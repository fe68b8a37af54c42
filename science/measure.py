"""Detect and measure the sources of one CCD with source-extractor's semantics.

Background mesh, threshold and deblending are sep's (sep is source-extractor's
own code as a library); MAG_AUTO and FLAGS follow source-extractor exactly
(see :mod:`.photometry`).  Input: a float32 CCD and its header.  Output: a
structured array with one field per requested catalogue column, each filled
by its family (:mod:`.column_families`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import sep

from .check_images import CheckSource
from .column_families import Measured, catalogue_rows
from .errors import ConfigError
from .photometry import (
    FLAG_CROWDED,
    FLAG_DEBLEND_OVERFLOW,
    FLAG_MERGED,
    FLAG_SATURATED,
    FLAG_TRUNCATED,
    NeighbourMask,
    auto_photometry,
)
from .seeing import Seeing, measure_seeing
from .segments import cleaned_detections
from .sexconfig import ExtractionConfig
from .weights import FROM_FILE, Noise, from_weight_map, interpolate, rescale, scale_factor

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
    #: what the CCD's check images are made from, when the configuration asks for any
    check: CheckSource | None = None


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
    ys, xs, cleaned, _ = cleaned_detections(masking, segmap, minarea)
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

    @functools.cache
    def pixel_threshold() -> float | np.ndarray:  # a CCD-sized map under a variance map: only when asked
        return threshold if detection_variance is None else \
            np.float32(config.detect_thresh) * np.sqrt(detection_variance)

    def blanked() -> np.ndarray:
        return _masking_pixels(data, kernel, pixel_threshold(), segmap, config.detect_minarea)
    masking = blanked() if correct else None
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

    background_under = np.broadcast_to(np.asarray(under, dtype=np.float64), (len(objects),))
    rows = catalogue_rows(Measured(
        data, header, config, ext_number, objects, segmap, mask, noise, variance, rms, background_under, satur, phot,
        flags, (mag, magerr), zeropoint, flag_map))
    saturated = int(np.count_nonzero(flags & FLAG_SATURATED))
    check = CheckSource(
        data, bkg, None if background_map is not None else global_back, config.back_size, rms, segmap,
        above=lambda: _filtered_above(data, kernel, pixel_threshold()),
        blanked=blanked if masking is None else lambda: masking, minarea=config.detect_minarea,
        clean_param=config.clean_param, filtered=lambda: _filtered(data, kernel), objects=objects, kron=phot.kron_radius,
        crowded=(phot.flags & FLAG_CROWDED) != 0, apertures=config.phot_apertures,
    ) if config.check_images else None
    return CCDMeasurement(
        rows, global_back, rms, float(threshold), seeing, mag[np.isfinite(mag)].astype(np.float32), saturated, zeropoint,
        check,
    )
