"""MAG_AUTO as source-extractor measures it, neighbour masking included.

sep has Kron radii and elliptical sums, but masks neighbours by rescaling the
flux by the unmasked area.  source-extractor's default ``MASK_TYPE CORRECT``
instead replaces each neighbour pixel by the pixel mirrored through the
object's centre, and sums whole pixels whose centres fall in the aperture.
Matching it to rounding needs its exact rules, implemented here on numpy
arrays for all objects of a CCD at once:

1. Kron first moment within 6 "sigmas" (``cxx dx² + cyy dy² + cxy dx dy ≤ 36``),
   skipping masked pixels; ``k = max(PHOT_AUTOPARAMS[0] · r1/v1, PHOT_AUTOPARAMS[1])``.
2. Sum within ``k``; a masked pixel takes its mirror's value when the mirror is
   inside the image and itself unmasked, else 0.
3. A pixel is masked for an object when it is NaN, or (with CORRECT) when it
   lies above the detection threshold and belongs to anything but that object.

Arithmetic is in float32 where source-extractor uses ``float``, so that pixels
on an aperture's edge go the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KRON_NSIG = np.float32(6.0)
CROWD_THRESHOLD = 0.1

# Source-extractor's FLAGS bits.
FLAG_CROWDED = 1
FLAG_MERGED = 2
FLAG_SATURATED = 4
FLAG_TRUNCATED = 8
FLAG_APERTURE_INCOMPLETE = 16
FLAG_DEBLEND_OVERFLOW = 64

_CHUNK_PIXELS = 2_000_000


@dataclass
class AutoPhotometry:
    """Per-object MAG_AUTO results, arrays of the objects' length."""

    flux: np.ndarray
    fluxerr: np.ndarray
    kron_radius: np.ndarray
    flags: np.ndarray

    def magnitudes(self, zeropoint: float) -> tuple[np.ndarray, np.ndarray]:
        """MAG_AUTO and MAGERR_AUTO, 99 where the flux is not positive (as source-extractor)."""
        positive = self.flux > 0
        safe = np.where(positive, self.flux, 1.0)
        mag = np.where(positive, -2.5 * np.log10(safe) + zeropoint, 99.0)
        magerr = np.where(positive, 1.086 * self.fluxerr / safe, 99.0)
        return mag, magerr


def _rint(values: np.ndarray) -> np.ndarray:
    return np.floor(values + 0.5).astype(np.int64)


def _ellipse_extent(cxx, cyy, cxy, k):
    """Half-widths in x and y of the ellipse ``cxx dx² + cyy dy² + cxy dx dy = k²``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        dx = cxx - cxy * cxy / (np.float32(4.0) * cyy)
        dy = cyy - cxy * cxy / (np.float32(4.0) * cxx)
        dxlim = np.where(dx > 0, k / np.sqrt(np.where(dx > 0, dx, 1)), 0).astype(np.float32)
        dylim = np.where(dy > 0, k / np.sqrt(np.where(dy > 0, dy, 1)), 0).astype(np.float32)
    return dxlim, dylim


def _boxes(mx, my, dxlim, dylim, width, height):
    """Integer pixel boxes [xmin, xmax) × [ymin, ymax), clipped; and who was clipped."""
    xmin = _rint(mx - dxlim)
    xmax = _rint(mx + dxlim) + 1
    ymin = _rint(my - dylim)
    ymax = _rint(my + dylim) + 1
    clipped = (xmin < 0) | (xmax > width) | (ymin < 0) | (ymax > height)
    return (
        np.clip(xmin, 0, width),
        np.clip(xmax, 0, width),
        np.clip(ymin, 0, height),
        np.clip(ymax, 0, height),
        clipped,
    )


def _chunks(npix: np.ndarray):
    """Split object indices into runs whose boxes hold about _CHUNK_PIXELS pixels."""
    start = 0
    total = 0
    for i, n in enumerate(npix):
        total += int(n)
        if total >= _CHUNK_PIXELS:
            yield start, i + 1
            start, total = i + 1, 0
    if start < len(npix):
        yield start, len(npix)


def _box_pixels(xmin, xmax, ymin, ymax):
    """Every (object, x, y) in the boxes, as flat arrays."""
    nx = xmax - xmin
    ny = ymax - ymin
    npix = nx * ny
    owner = np.repeat(np.arange(len(nx)), npix)
    first = np.repeat(np.cumsum(npix) - npix, npix)
    local = np.arange(owner.size) - first
    nx_o = nx[owner]
    x = xmin[owner] + local % np.maximum(nx_o, 1)
    y = ymin[owner] + local // np.maximum(nx_o, 1)
    return owner, x, y


def auto_photometry(
    image: np.ndarray,
    segmap: np.ndarray,
    detected: np.ndarray | None,
    blank: np.ndarray | None,
    objects: np.ndarray,
    *,
    kron_fact: float,
    min_radius: float,
    autoapers: tuple[float, float],
    backsig: float,
    gain: float,
    correct: bool,
) -> AutoPhotometry:
    """Measure FLUX_AUTO, FLUXERR_AUTO and KRON_RADIUS for sep's ``objects``.

    ``image`` is background-subtracted; ``segmap`` holds 1-based object ids;
    ``detected`` marks pixels above the detection threshold in the filtered
    image (None with MASK_TYPE NONE); ``blank`` marks NaN pixels or is None.
    """
    n = len(objects)
    height, width = image.shape
    flux = np.zeros(n)
    sigtv = np.zeros(n)
    kron = np.zeros(n, dtype=np.float32)
    flags = np.zeros(n, dtype=np.int16)
    if n == 0:
        return AutoPhotometry(flux, sigtv, kron, flags)

    mx = objects["x"].astype(np.float32)
    my = objects["y"].astype(np.float32)
    a = objects["a"].astype(np.float32)
    b = objects["b"].astype(np.float32)
    cxx = objects["cxx"].astype(np.float32)
    cyy = objects["cyy"].astype(np.float32)
    cxy = objects["cxy"].astype(np.float32)
    ids = np.arange(1, n + 1, dtype=segmap.dtype)
    sqrt_ab = np.sqrt(a * b)
    one = np.ones(n, dtype=np.float32)
    zero = np.zeros(n, dtype=np.float32)

    def masked_at(owner, x, y):
        m = np.zeros(owner.size, dtype=bool)
        if blank is not None:
            m |= blank[y, x]
        if detected is not None:
            m |= detected[y, x] & (segmap[y, x] != ids[owner])
        return m

    def shape_for(factor, aper):
        """Ellipse coefficients and k², or a circle of diameter ``aper`` when too small."""
        ellipse = factor * sqrt_ab > np.float32(aper / 2.0)
        radius = np.float32(aper / 2.0)
        c_xx = np.where(ellipse, cxx, one)
        c_yy = np.where(ellipse, cyy, one)
        c_xy = np.where(ellipse, cxy, zero)
        k = np.where(ellipse, factor, radius).astype(np.float32)
        if np.any(~ellipse):
            dxlim, dylim = _ellipse_extent(cxx, cyy, cxy, factor)
            dxlim = np.where(ellipse, dxlim, radius)
            dylim = np.where(ellipse, dylim, radius)
        else:
            dxlim, dylim = _ellipse_extent(cxx, cyy, cxy, factor)
        return ellipse, c_xx, c_yy, c_xy, k * k, dxlim.astype(np.float32), dylim.astype(np.float32)

    # Pass 1: the Kron radius.
    kfac = np.full(n, KRON_NSIG, dtype=np.float32)
    _, c_xx, c_yy, c_xy, klim2, dxlim, dylim = shape_for(kfac, autoapers[0])
    xmin, xmax, ymin, ymax, clipped = _boxes(mx, my, dxlim, dylim, width, height)
    flags[clipped] |= FLAG_APERTURE_INCOMPLETE
    r1 = np.zeros(n)
    v1 = np.zeros(n)
    area = np.zeros(n)
    areab = np.zeros(n)
    npix = (xmax - xmin) * (ymax - ymin)
    for lo, hi in _chunks(npix):
        owner, x, y = _box_pixels(xmin[lo:hi], xmax[lo:hi], ymin[lo:hi], ymax[lo:hi])
        owner += lo
        dx = x.astype(np.float32) - mx[owner]
        dy = y.astype(np.float32) - my[owner]
        r2 = c_xx[owner] * dx * dx + c_yy[owner] * dy * dy + c_xy[owner] * dx * dy
        inside = r2 <= klim2[owner]
        owner, x, y, r2 = owner[inside], x[inside], y[inside], r2[inside]
        masked = masked_at(owner, x, y)
        pix = image[y, x].astype(np.float64)
        good = ~masked
        r1 += np.bincount(owner[good], weights=np.sqrt(r2[good]) * pix[good], minlength=n)
        v1 += np.bincount(owner[good], weights=pix[good], minlength=n)
        area += np.bincount(owner[good], minlength=n)
        areab += np.bincount(owner[masked], minlength=n)

    total = area + areab
    usable = total > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        kfac = np.where((r1 > 0) & (v1 > 0), np.float32(kron_fact) * (r1 / v1), min_radius)
    kfac = np.maximum(kfac, min_radius).astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        crowded = usable & (areab / np.where(usable, total, 1) > CROWD_THRESHOLD)
    flags[crowded] |= FLAG_CROWDED

    # Pass 2: the flux within k.
    ellipse, c_xx, c_yy, c_xy, klim2, dxlim, dylim = shape_for(kfac, autoapers[1])
    kfac = np.where(ellipse, kfac, np.float32(0.0))
    xmin, xmax, ymin, ymax, clipped = _boxes(mx, my, dxlim, dylim, width, height)
    clipped &= usable
    flags[clipped] |= FLAG_APERTURE_INCOMPLETE
    xmin, xmax, ymin, ymax = (np.where(usable, v, 0) for v in (xmin, xmax, ymin, ymax))
    tv = np.zeros(n)
    area2 = np.zeros(n)
    areab2 = np.zeros(n)
    npix = (xmax - xmin) * (ymax - ymin)
    for lo, hi in _chunks(npix):
        owner, x, y = _box_pixels(xmin[lo:hi], xmax[lo:hi], ymin[lo:hi], ymax[lo:hi])
        owner += lo
        dx = x.astype(np.float32) - mx[owner]
        dy = y.astype(np.float32) - my[owner]
        r2 = c_xx[owner] * dx * dx + c_yy[owner] * dy * dy + c_xy[owner] * dx * dy
        inside = r2 <= klim2[owner]
        owner, x, y = owner[inside], x[inside], y[inside]
        masked = masked_at(owner, x, y)
        pix = image[y, x].astype(np.float64)
        if masked.any():
            m_owner, m_x, m_y = owner[masked], x[masked], y[masked]
            replacement = np.zeros(m_owner.size)
            if correct:
                x2 = (np.float32(2.0) * mx[m_owner] + np.float32(0.49999) - m_x).astype(np.int64)
                y2 = (np.float32(2.0) * my[m_owner] + np.float32(0.49999) - m_y).astype(np.int64)
                inimage = (x2 >= 0) & (x2 < width) & (y2 >= 0) & (y2 < height)
                idx = np.flatnonzero(inimage)
                mirror_ok = ~masked_at(m_owner[idx], x2[idx], y2[idx])
                take = idx[mirror_ok]
                replacement[take] = image[y2[take], x2[take]]
            pix[masked] = replacement
        tv += np.bincount(owner, weights=pix, minlength=n)
        area2 += np.bincount(owner, minlength=n)
        areab2 += np.bincount(owner[masked], minlength=n)

    crowded = areab2 > CROWD_THRESHOLD * area2
    flags[crowded] |= FLAG_CROWDED
    sig = area2 * backsig * backsig
    if gain > 0:
        sig = sig + np.where(tv > 0, tv / gain, 0.0)
    flux = np.where(usable, tv, 0.0)
    fluxerr = np.where(usable, np.sqrt(sig), 0.0)
    kron = np.where(flux > 0, kfac, np.float32(0.0)).astype(np.float32)
    return AutoPhotometry(flux, fluxerr, kron, flags)
