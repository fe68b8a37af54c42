"""Isophotal measurements: each source's own pixels, as source-extractor's ``examineiso`` reads them.

A source's pixels are those the segmentation map gives it (detection on the
filtered image, after deblending); the values are those of the unfiltered,
background-subtracted CCD.  Every function works on all sources at once with
``np.bincount`` over the map's labels (source ``i`` is label ``i + 1``).

* ISOAREA_IMAGE counts the pixels above the analysis threshold;
* FLUX_ISO sums all the pixels; its variance is the background's per pixel
  plus FLUX_ISO / GAIN (source-extractor 2.25's ``examineiso``), or with a
  variance map each pixel's own, plus its own Poisson term under WEIGHT_GAIN;
* with a variance map the analysis threshold is each pixel's own,
  ANALYSIS_THRESH · sqrt(variance), and a source's threshold (for FWHM_IMAGE,
  CLASS_STAR and MU_THRESHOLD) the lowest over its pixels;
* FWHM_IMAGE fits ``log(pixel)`` against the squared distance to the
  barycentre, weighted by ``pixel**2``, over the pixels between
  max(peak / 5, analysis threshold) and saturation; the slope is kept at
  least 1 / (13 A B), so that the FWHM is at most about 6 sigma, and the
  result loses 1 / (4 FWHM) for undersampling, as source-extractor does.
"""

from __future__ import annotations

import numpy as np

from .weights import Noise


def _labelled(segmap: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the pixels that belong to a source, and the source index of each."""
    flat = segmap.ravel()
    where = np.flatnonzero(flat)
    return where, flat[where].astype(np.int64) - 1


def isophotal_area(data: np.ndarray, segmap: np.ndarray, count: int, threshold: float | np.ndarray) -> np.ndarray:
    """ISOAREA_IMAGE: each source's pixels above ``threshold`` (one for all, or a map of the CCD)."""
    where, source = _labelled(segmap)
    level = threshold.ravel()[where] if np.ndim(threshold) == 2 else threshold
    above = data.ravel()[where] > level
    return np.bincount(source[above], minlength=count).astype(np.int32)


def source_thresholds(segmap: np.ndarray, count: int, threshold_map: np.ndarray) -> np.ndarray:
    """Each source's analysis threshold under a variance map: the lowest over its pixels."""
    where, source = _labelled(segmap)
    lowest = np.full(count, np.inf, dtype=np.float32)
    np.minimum.at(lowest, source, threshold_map.ravel()[where])
    return lowest


def isophotal_flux(objects: np.ndarray, noise: Noise, data: np.ndarray, segmap: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
    """FLUX_ISO and FLUXERR_ISO from sep's sums over each source's pixels (and, with a variance
    map, sums of each pixel's variance over the segmentation map).

    source-extractor keeps the flux and its variance in single precision before
    the square root, so the printed digits follow only if we do the same."""
    flux = objects["flux"].astype(np.float32)
    if noise.variance is None:
        variance = objects["npix"] * float(noise.backsig) ** 2
    else:
        where, source = _labelled(segmap)
        var = noise.variance[where].astype(np.float64)
        terms = var + noise.pixel_poisson(data.ravel()[where].astype(np.float64), var)
        variance = np.bincount(source, weights=terms, minlength=len(objects))
    variance = variance + noise.flux_poisson(flux)
    return flux, np.sqrt(variance.astype(np.float32).astype(np.float64)).astype(np.float32)


def gaussian_fwhm(
    data: np.ndarray,
    segmap: np.ndarray,
    objects: np.ndarray,
    threshold: float,
    saturation: np.ndarray,
) -> np.ndarray:
    """FWHM_IMAGE of every source; ``saturation`` is the level above the background under each."""
    count = len(objects)
    where, source = _labelled(segmap)
    pixel = data.ravel()[where].astype(np.float64)
    floor = np.maximum(objects["peak"].astype(np.float64) / 5.0, threshold)
    use = (pixel > floor[source]) & (pixel < saturation[source])
    where, source, pixel = where[use], source[use], pixel[use]
    y, x = np.divmod(where, data.shape[1])
    d2 = (x - objects["x"][source]) ** 2 + (y - objects["y"][source]) ** 2
    weight = pixel * pixel
    log_pixel = np.log(pixel)

    def total(values: np.ndarray) -> np.ndarray:
        return np.bincount(source, weights=values, minlength=count)

    s, sx, sxx = total(weight), total(d2 * weight), total(d2 * d2 * weight)
    sy, sxy = total(log_pixel * weight), total(log_pixel * d2 * weight)
    determinant = s * sxx - sx * sx
    fitted = np.abs(determinant) > 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.where(fitted, -(s * sxy - sx * sy) / np.where(fitted, determinant, 1.0), 0.0)
        steepest = 1.0 / (13.0 * objects["a"].astype(np.float64) * objects["b"].astype(np.float64))
        slope = np.where(slope < steepest, steepest, slope)
        fwhm = (1.6651 / np.sqrt(slope)).astype(np.float32)  # single precision from here, as there
    fwhm = np.where(fwhm > 0, fwhm - np.float32(1) / (np.float32(4) * fwhm), fwhm)
    return np.where(fitted & (floor > 0), fwhm, np.float32(0)).astype(np.float32)
