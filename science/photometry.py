"""MAG_AUTO as source-extractor measures it, neighbour masking included.

sep has Kron radii and elliptical sums, but masks neighbours by rescaling the
flux by the unmasked area.  source-extractor's default ``MASK_TYPE CORRECT``
instead replaces each neighbour pixel by the pixel mirrored through the
object's centre, and sums whole pixels whose centres fall in the aperture.
Matching it to rounding needs its exact rules.  Per object they are numpy
here; the loops over each aperture's pixels are C (``_aperture_sums.c``):

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

from . import _aperture_sums
from .weights import Noise

KRON_NSIG = np.float32(6.0)
CROWD_THRESHOLD = 0.1

# Source-extractor's FLAGS bits.
FLAG_CROWDED = 1
FLAG_MERGED = 2
FLAG_SATURATED = 4
FLAG_TRUNCATED = 8
FLAG_APERTURE_INCOMPLETE = 16
FLAG_DEBLEND_OVERFLOW = 64


@dataclass
class AutoPhotometry:
    """Per-object MAG_AUTO results, arrays of the objects' length."""

    flux: np.ndarray
    fluxerr: np.ndarray
    kron_radius: np.ndarray
    flags: np.ndarray

    def magnitudes(self, zeropoint: float) -> tuple[np.ndarray, np.ndarray]:
        """MAG_AUTO and MAGERR_AUTO."""
        return magnitudes(self.flux, self.fluxerr, zeropoint)


def magnitudes(flux: np.ndarray, fluxerr: np.ndarray, zeropoint: float) -> tuple[np.ndarray, np.ndarray]:
    """MAG and MAGERR as source-extractor's ``computemags`` writes them: 99 where the flux is not
    positive, and 1.086 (2.5 / ln 10 to its printed precision) for the error."""
    positive = flux > 0
    safe = np.where(positive, flux, 1.0)
    mag = np.where(positive, -2.5 * np.log10(safe) + zeropoint, 99.0)
    magerr = np.where(positive, 1.086 * fluxerr / safe, 99.0)
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


@dataclass
class _Apertures:
    """Per-object ellipses ``cxx dx² + cyy dy² + cxy dx dy <= k2`` and their pixel boxes."""

    cxx: np.ndarray
    cyy: np.ndarray
    cxy: np.ndarray
    k2: np.ndarray
    xmin: np.ndarray
    xmax: np.ndarray
    ymin: np.ndarray
    ymax: np.ndarray
    clipped: np.ndarray
    ellipse: np.ndarray

    def for_sums(self, mx: np.ndarray, my: np.ndarray) -> tuple:
        """The apertures centred on ``mx``, ``my`` as :mod:`._aperture_sums` takes them."""
        return (mx, my, self.cxx, self.cyy, self.cxy, self.k2, self.xmin, self.xmax, self.ymin, self.ymax)


def _apertures(objects, mx, my, factor, aper, shape) -> _Apertures:
    """source-extractor's aperture at ``factor`` (in units of the isophotal ellipse),
    or a circle of diameter ``aper`` when the ellipse would be smaller than it."""
    height, width = shape
    a = objects["a"].astype(np.float32)
    b = objects["b"].astype(np.float32)
    cxx = objects["cxx"].astype(np.float32)
    cyy = objects["cyy"].astype(np.float32)
    cxy = objects["cxy"].astype(np.float32)
    radius = np.float32(aper / 2.0)
    ellipse = factor * np.sqrt(a * b) > radius
    dxlim, dylim = _ellipse_extent(cxx, cyy, cxy, factor)
    dxlim = np.where(ellipse, dxlim, radius)
    dylim = np.where(ellipse, dylim, radius)
    k = np.where(ellipse, factor, radius).astype(np.float32)
    xmin = _rint(mx - dxlim)
    xmax = _rint(mx + dxlim) + 1
    ymin = _rint(my - dylim)
    ymax = _rint(my + dylim) + 1
    clipped = (xmin < 0) | (xmax > width) | (ymin < 0) | (ymax > height)
    return _Apertures(
        np.where(ellipse, cxx, np.float32(1)),
        np.where(ellipse, cyy, np.float32(1)),
        np.where(ellipse, cxy, np.float32(0)),
        k * k,
        np.clip(xmin, 0, width),
        np.clip(xmax, 0, width),
        np.clip(ymin, 0, height),
        np.clip(ymax, 0, height),
        clipped,
        ellipse,
    )


class NeighbourMask:
    """Which pixels an object may not use, and what source-extractor measures in their place.

    A pixel is masked for an object when it is blank (NaN), or, with
    ``masking`` (MASK_TYPE CORRECT), when it lies above the detection threshold
    and belongs to anything but that object.  With CORRECT a masked pixel takes
    the value of its mirror through the object's centre, when the mirror lies in
    the image and is not masked itself; otherwise it counts as 0.  AUTO,
    aperture and windowed measurements all follow these rules.
    """

    def __init__(self, image: np.ndarray, segmap: np.ndarray, masking: np.ndarray | None,
                 blank: np.ndarray | None, correct: bool, bad: np.ndarray | None = None):
        self.height, self.width = image.shape
        self.pixels = image.ravel()
        self.seg = segmap.ravel()
        self.masking = masking.ravel() if masking is not None else None
        self.blank = blank.ravel() if blank is not None else None
        #: pixels a weight map gives too little weight (:mod:`.weights`): masked for every source
        self.bad = bad.ravel() if bad is not None else None
        self.correct = correct

    def for_sums(self) -> tuple:
        """The mask as the C loops take it (``_source_pixels.h``)."""
        return (self.pixels, self.seg, self.masking, self.blank, self.bad, self.width, self.correct)

    def masked(self, owner: np.ndarray, flat: np.ndarray, *, with_bad_weights: bool = True) -> np.ndarray:
        """Whether each pixel ``flat`` is masked for the object ``owner`` (0-based) measuring it;
        ``with_bad_weights=False`` leaves the weight map's bad pixels unmasked (VIGNET shows them)."""
        masked = self.blank[flat] if self.blank is not None else np.zeros(flat.size, dtype=bool)
        if with_bad_weights and self.bad is not None:
            masked |= self.bad[flat]
        if self.masking is not None:
            maybe = np.flatnonzero(self.masking[flat])
            masked[maybe[self.seg[flat[maybe]] != owner[maybe] + 1]] = True
        return masked


def auto_photometry(
    mask: NeighbourMask,
    objects: np.ndarray,
    *,
    kron_fact: float,
    min_radius: float,
    autoapers: tuple[float, float],
    noise: Noise,
) -> AutoPhotometry:
    """Measure FLUX_AUTO, FLUXERR_AUTO and KRON_RADIUS for sep's ``objects`` on the
    background-subtracted image that ``mask`` holds.

    Two passes, as in source-extractor: the Kron radius from the pixels within
    KRON_NSIG, then the flux within the Kron ellipse.  The pixel loops of both
    are in C (:mod:`._aperture_sums`); what is per object stays here."""
    n = len(objects)
    flags = np.zeros(n, dtype=np.int16)
    if n == 0:
        return AutoPhotometry(np.zeros(0), np.zeros(0), np.zeros(0, dtype=np.float32), flags)
    shape = (mask.height, mask.width)
    mx = objects["x"].astype(np.float32)
    my = objects["y"].astype(np.float32)

    # Pass 1: the Kron radius, from unmasked pixels within KRON_NSIG.
    wide = _apertures(objects, mx, my, KRON_NSIG, autoapers[0], shape)
    flags[wide.clipped] |= FLAG_APERTURE_INCOMPLETE
    r1, v1 = np.zeros(n), np.zeros(n)
    area, areab = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    _aperture_sums.kron_moments(mask.for_sums(), wide.for_sums(mx, my), (r1, v1, area, areab))
    total = area + areab
    usable = total > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        kfac = np.where((r1 > 0) & (v1 > 0), np.float32(kron_fact) * (r1 / v1), min_radius)
        flags[usable & (areab / np.where(usable, total, 1) > CROWD_THRESHOLD)] |= FLAG_CROWDED
    kfac = np.maximum(kfac, min_radius).astype(np.float32)

    # Pass 2: the flux within the Kron radius, masked pixels replaced by their mirror.
    ap = _apertures(objects, mx, my, kfac, autoapers[1], shape)
    kron = np.where(ap.ellipse, kfac, np.float32(0.0))
    flags[ap.clipped & usable] |= FLAG_APERTURE_INCOMPLETE
    tv, pixel_variance = np.zeros(n), np.zeros(n)
    area2, areab2 = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    _aperture_sums.auto_sums(mask.for_sums(), ap.for_sums(mx, my), usable,
                             noise.for_sums(), (tv, area2, areab2, pixel_variance))

    flags[areab2 > CROWD_THRESHOLD * area2] |= FLAG_CROWDED
    if noise.variance is None:
        variance = area2 * noise.backsig * noise.backsig
    else:
        variance = pixel_variance
    variance = variance + noise.flux_poisson(tv)
    flux = np.where(usable, tv, 0.0)
    fluxerr = np.where(usable, np.sqrt(variance), 0.0)
    kron = np.where(flux > 0, kron, np.float32(0.0)).astype(np.float32)
    return AutoPhotometry(flux, fluxerr, kron, flags)

