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
from .detection_filter import filtered, filtered_above
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
    masking = filtered_above(image, kernel, threshold)
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
    detection_variance = filtered(variance, kernel) if variance is not None and config.thresh_type == "RELATIVE" \
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
        above=lambda: filtered_above(data, kernel, pixel_threshold()),
        blanked=blanked if masking is None else lambda: masking, minarea=config.detect_minarea,
        clean_param=config.clean_param, filtered=lambda: filtered(data, kernel), objects=objects, kron=phot.kron_radius,
        crowded=(phot.flags & FLAG_CROWDED) != 0, apertures=config.phot_apertures,
    ) if config.check_images else None
    return CCDMeasurement(
        rows, global_back, rms, float(threshold), seeing, mag[np.isfinite(mag)].astype(np.float32), saturated, zeropoint,
        check,
    )
