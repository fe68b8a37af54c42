"""FLUX_RADIUS: the radius of the circle holding a fraction of FLUX_AUTO.

source-extractor builds each source's growth curve within ``6 A_IMAGE``
(its ``makeavergrowth``) and interpolates it at PHOT_FLUXFRAC x FLUX_AUTO.
sep's ``flux_radius`` is the same growth curve.  What sep cannot do is
source-extractor's neighbour masking: a masked pixel (a neighbour's, under
MASK_TYPE CORRECT) takes its mirror's value (:class:`.photometry.NeighbourMask`).
So a source with masked pixels in its circle is measured on a copy of its
box with those pixels replaced; the others, most of them, in one call on the
CCD.  The box, ``6 A_IMAGE + 1.5`` pixels around the barycentre, flags the
source (FLAGS bit 16) when the image's edge cuts it, as source-extractor
flags it.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import sep

from .photometry import NeighbourMask, circle_box

#: The growth curve reaches this many A_IMAGE (GROWTH_NSIG).
GROWTH_NSIG = 6.0
#: The half-light radius that sizes the XWIN window is at least this (pixels).
GROWTH_MINHLRAD = 0.5


def flux_radius(
    mask: NeighbourMask,
    objects: np.ndarray,
    flux: np.ndarray,
    fractions: Sequence[float],
    index: np.ndarray | None = None,
    rmax: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """FLUX_RADIUS at each of ``fractions`` of FLUX_AUTO (``flux``), shaped (sources, fractions),
    and which sources' growth-curve box the image's edge cut.

    ``index`` picks some of ``objects`` (default: all); ``rmax`` ends their growth curves
    elsewhere than at 6 A_IMAGE, which is only source-extractor's FLUX_RADIUS while the
    fraction is reached within it."""
    index = np.arange(len(objects)) if index is None else np.asarray(index)
    mx_all, my_all = objects["x"].astype(np.float32), objects["y"].astype(np.float32)
    objects, flux = objects[index], np.asarray(flux)[index]
    n = len(objects)
    radius = np.zeros((n, len(fractions)))
    if n == 0:
        return radius, np.zeros(0, dtype=bool)
    data = mask.pixels.reshape(mask.height, mask.width)
    x = objects["x"].astype(np.float64)
    y = objects["y"].astype(np.float64)
    rmax = GROWTH_NSIG * objects["a"].astype(np.float64) if rmax is None else np.asarray(rmax, dtype=np.float64)
    frac = np.asarray(fractions, dtype=np.float64)
    xmin, xmax, cut_x = circle_box(x, rmax + 1.5, mask.width)
    ymin, ymax, cut_y = circle_box(y, rmax + 1.5, mask.height)

    def measure(stamp: np.ndarray, which: np.ndarray, dx: int = 0, dy: int = 0) -> None:
        found, _ = sep.flux_radius(stamp, x[which] - dx, y[which] - dy, rmax[which], frac,
                                   normflux=flux[which].astype(np.float64), subpix=5)
        radius[which] = np.reshape(found, (len(which), len(frac)))

    # A box with masked pixels is measured on a copy with them replaced; the others on the CCD.
    masked_any = np.zeros(n, dtype=bool)
    for k in range(n):
        stamp = mask.box(int(index[k]), xmin[k], xmax[k], ymin[k], ymax[k], mx_all, my_all)
        if stamp is not None:
            masked_any[k] = True
            measure(stamp, np.array([k]), xmin[k], ymin[k])
    plain = np.flatnonzero(~masked_any)
    if plain.size:
        measure(data, plain)
    return radius, cut_x | cut_y
