"""FLUX_RADIUS and the half-light radius: source-extractor's growth curve (``makeavergrowth``).

Each source's pixels within ``rlim + 1.5`` of its barycentre, rlim being
``6 A_IMAGE`` (or PHOT_AUTOAPERS' first value when larger), are shared out
over 64 rings; the rings' cumulative sums are its growth curve, read at
PHOT_FLUXFRAC × FLUX_AUTO and capped at rlim.  A masked pixel (a neighbour's,
under MASK_TYPE CORRECT) takes its mirror's value
(:class:`.photometry.NeighbourMask`).  The half-light radius that sizes the
XWIN window is the curve read at half FLUX_AUTO, at least GROWTH_MINHLRAD.
The box, ``rlim + 1.5`` pixels around the barycentre, flags the source
(FLAGS bit 16) when the image's edge cuts it, as source-extractor flags it.
The loops are C (``_growth.c``), in makeavergrowth's own arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from . import _growth
from .photometry import NeighbourMask

#: The growth curve reaches this many A_IMAGE (GROWTH_NSIG).
GROWTH_NSIG = 6.0
#: The half-light radius that sizes the XWIN window is at least this (pixels).
GROWTH_MINHLRAD = 0.5


@dataclass
class Growth:
    """Per source: FLUX_RADIUS at each fraction (sources × fractions), the half-light radius, and
    whether the image's edge cut the growth curve's box."""

    radius: np.ndarray
    half_light: np.ndarray
    cut: np.ndarray


def growth_curves(
    mask: NeighbourMask,
    objects: np.ndarray,
    flux: np.ndarray,
    fractions: Sequence[float],
    *,
    min_radius: float = 0.0,
    index: np.ndarray | None = None,
    rlim: np.ndarray | None = None,
) -> Growth:
    """The growth curves of sep's ``objects`` (FLUX_AUTO ``flux``), read at each of ``fractions``.

    ``min_radius`` is PHOT_AUTOAPERS' first value.  ``index`` picks some of ``objects`` (default:
    all); ``rlim`` ends their curves elsewhere than at 6 A_IMAGE, which is only source-extractor's
    FLUX_RADIUS while the fraction is reached within it."""
    index = np.arange(len(objects)) if index is None else np.asarray(index, dtype=np.int64)
    chosen = objects[index]
    n = len(chosen)
    if rlim is None:
        rlim = np.maximum(GROWTH_NSIG * chosen["a"].astype(np.float64), min_radius)
    rlim = np.ascontiguousarray(rlim, dtype=np.float64)
    frac = np.ascontiguousarray(fractions, dtype=np.float64)
    growth = Growth(np.zeros((n, frac.size)), np.full(n, GROWTH_MINHLRAD), np.zeros(n, dtype=bool))
    # a source with no extent has no curve: radius 0, as a curve that stays at 0 gives
    valid = np.flatnonzero((rlim > 0) & np.isfinite(rlim))
    if valid.size == 0:
        return growth
    radius, half_light, cut = np.zeros((valid.size, frac.size)), np.zeros(valid.size), np.zeros(valid.size, dtype=bool)
    flux = np.asarray(flux)[index][valid].astype(np.float32).astype(np.float64)  # source-extractor keeps it in float
    sources = (chosen["x"][valid].astype(np.float64), chosen["y"][valid].astype(np.float64), rlim[valid], flux,
               index[valid])
    _growth.radii(mask.for_sums(), sources, frac, (radius, half_light, cut))
    growth.radius[valid], growth.half_light[valid], growth.cut[valid] = radius, half_light, cut
    return growth
