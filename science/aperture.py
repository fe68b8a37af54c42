"""FLUX_APER and FLUXERR_APER as source-extractor's ``computeaperflux`` measures them.

A circle of diameter PHOT_APERTURES[i] around the object's barycentre:

* a pixel whose centre lies within ``r - 0.75`` counts whole; one beyond
  ``r + 0.75`` not at all; in between, the fraction of a 5 x 5 grid of
  sub-pixel points that falls inside the circle (the fraction summed in float32,
  as source-extractor sums it);
* masked pixels (neighbours under MASK_TYPE CORRECT, blank pixels) take their
  mirror's value, or 0 (:class:`.photometry.NeighbourMask`);
* the error is ``sqrt(area * sigma_bkg² + flux / gain)``, the area counting
  masked pixels too; with a variance map, each pixel's variance times its share
  of the circle instead, and (WEIGHT_GAIN) its own Poisson term (:mod:`.weights`);
* a circle that leaves the image is cut at its edge and flags the source
  (FLAGS bit 16), like an AUTO aperture.

sep's ``sum_circle`` oversamples the same way but rescales masked pixels
instead of mirroring them, which is why this is not sep.
"""

from __future__ import annotations

import numpy as np

from .photometry import NeighbourMask, box_pixels, circle_box, subpixel_area
from .weights import Noise

APER_OVERSAMP = 5


def aperture_photometry(
    mask: NeighbourMask,
    objects: np.ndarray,
    diameters: tuple[float, ...],
    *,
    noise: Noise,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FLUX_APER and FLUXERR_APER, shaped (objects, apertures), and which sources had an aperture
    cut by the image's edge."""
    n = len(objects)
    flux = np.zeros((n, len(diameters)))
    fluxerr = np.zeros((n, len(diameters)))
    incomplete = np.zeros(n, dtype=bool)
    if n == 0:
        return flux, fluxerr, incomplete
    mx = objects["x"].astype(np.float32)
    my = objects["y"].astype(np.float32)
    backnoise2 = noise.backnoise2
    for i, diameter in enumerate(diameters):
        radius = np.float32(diameter / 2.0)
        radius2 = radius * radius
        inner = radius - np.float32(0.75)
        inner2 = inner * inner if inner > 0 else np.float32(0.0)
        outer2 = (radius + np.float32(0.75)) * (radius + np.float32(0.75))
        xmin, xmax, clipped_x = circle_box(mx, radius, mask.width)
        ymin, ymax, clipped_y = circle_box(my, radius, mask.height)
        incomplete |= clipped_x | clipped_y
        tv, area, pixel_variance = np.zeros(n), np.zeros(n), np.zeros(n)
        for owner, x, y in box_pixels(xmin, xmax, ymin, ymax):
            dx = x.astype(np.float32) - mx[owner]
            dy = y.astype(np.float32) - my[owner]
            r2 = dx * dx + dy * dy
            near = r2 < outer2
            owner, x, y, dx, dy, r2 = (v[near] for v in (owner, x, y, dx, dy, r2))
            locarea = np.ones(owner.size, dtype=np.float32)
            edge = np.flatnonzero(r2 > inner2)
            locarea[edge] = subpixel_area(dx[edge], dy[edge], radius2, APER_OVERSAMP)
            value, _, source = mask.replaced(owner, y * mask.width + x, mx, my)
            tv += np.bincount(owner, weights=locarea.astype(np.float64) * value, minlength=n)
            area += np.bincount(owner, weights=locarea.astype(np.float64), minlength=n)
            if noise.variance is not None:
                var = noise.pixel_variance(source)
                pixel_variance += np.bincount(
                    owner, weights=var * locarea + noise.pixel_poisson(value, var), minlength=n)
        variance = area * backnoise2 if noise.variance is None else pixel_variance
        variance = variance + noise.flux_poisson(tv)
        flux[:, i] = tv
        fluxerr[:, i] = np.sqrt(variance)
    return flux, fluxerr, incomplete
