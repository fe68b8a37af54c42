"""FLUX_APER and FLUXERR_APER as source-extractor's ``computeaperflux`` measures them.

A circle of diameter PHOT_APERTURES[i] around the object's barycentre:

* a pixel whose centre lies within ``r - 0.75`` counts whole; one beyond
  ``r + 0.75`` not at all; in between, the fraction of a 5 x 5 grid of
  sub-pixel points that falls inside the circle (the fraction summed in float32,
  as source-extractor sums it);
* masked pixels (neighbours under MASK_TYPE CORRECT, blank pixels) take their
  mirror's value, or 0 (:class:`.photometry.NeighbourMask`);
* the error is ``sqrt(sum of sigma_bkg² x share + flux / gain)`` over the circle's
  pixels, masked ones too; with a variance map, each pixel's variance times its
  share of the circle instead, and (WEIGHT_GAIN) its own Poisson term (:mod:`.weights`);
* a circle that leaves the image is cut at its edge and flags the source
  (FLAGS bit 16), like an AUTO aperture.

sep's ``sum_circle`` oversamples the same way but rescales masked pixels
instead of mirroring them, which is why this is not sep.
"""

from __future__ import annotations

import numpy as np

from . import _aperture_sums
from .photometry import NeighbourMask
from .weights import Noise


def aperture_photometry(
    mask: NeighbourMask,
    objects: np.ndarray,
    diameters: tuple[float, ...],
    *,
    noise: Noise,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """FLUX_APER and FLUXERR_APER, shaped (objects, apertures), and which sources had an aperture
    cut by the image's edge.  The pixel loops are C (``_aperture_sums.c``)."""
    n = len(objects)
    flux = np.zeros((n, len(diameters)))
    variance = np.zeros((n, len(diameters)))
    cut = np.zeros(n, dtype=bool)
    if n == 0 or not diameters:
        return flux, variance, cut
    centres = (objects["x"].astype(np.float32), objects["y"].astype(np.float32))  # float, as in photom.c
    radii = np.array([diameter / 2.0 for diameter in diameters], dtype=np.float32)
    _aperture_sums.circle_sums(mask.for_sums(), centres, radii, noise.for_sums(), (flux, variance, cut))
    return flux, np.sqrt(variance + noise.flux_poisson(flux)), cut
