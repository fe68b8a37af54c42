"""XWIN_IMAGE, YWIN_IMAGE, SNR_WIN and the windowed position errors: source-extractor's ``compute_winpos``.

Starting from the barycentre, the position moves to the centroid of the
pixels weighted by a circular Gaussian of sigma = 2 FLUX_RADIUS(0.5) / 2.35,
summed within 4 sigma, with a step twice the centroid's offset; at most 16
steps, stopping after one shorter than 1e-4 pixel.  Pixels near the window's
edge are oversampled 11 x 11, and masked pixels take their mirror's value
through the centre of each step (:class:`.photometry.NeighbourMask`), as in
source-extractor.  A window with no flux, with moments that are not an
ellipse's, or that wandered off the isophotal ellipse ends at the barycentre
(source-extractor 2.25's ``win_flag``).  The loops are C (``_winpos.c``), in
compute_winpos's own float and double arithmetic.

The last step also sums each pixel's variance (the background's or the
variance map's, plus value / GAIN when positive, scaled by variance / RMS²
under WEIGHT_GAIN) times its weight squared, with 1/12 pixel² for the pixel's
size: SNR_WIN and the error ellipse come from those sums.  Where the windowed
flux is not positive or the windowed moments are not those of an ellipse,
source-extractor falls back to the isophotal position errors (sep's ``errx2``,
``erry2``, ``errxy``); so does this.

A window cut by the image's edge at any step flags the source (FLAGS bit 16).
source-extractor also cuts windows at the edge of the image lines it holds in
memory (MEMORY_BUFSIZE), and flags those: a source-extractor artefact not
reproduced here (docs/parity.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _winpos
from .photometry import NeighbourMask
from .weights import Noise

WINPOS_FAC = 2.0
#: compute_winpos's threshold on the summed error below which SNR_WIN is BIG (1 / BIG), and BIG.
BIG = 1e30
#: sep's object flag for isophotal moments it had to widen (source-extractor's ``singuflag``).
SEP_OBJ_SINGU = 0x0008


@dataclass
class Windows:
    """Each source's windowed position (1-based), whether the image cut its window, and, when asked,
    SNR_WIN, ERRAWIN_IMAGE, ERRBWIN_IMAGE and ERRTHETAWIN_IMAGE (degrees)."""

    x: np.ndarray
    y: np.ndarray
    cut: np.ndarray
    errors: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None


def measure_windows(mask: NeighbourMask, objects: np.ndarray, half_light_radius: np.ndarray, noise: Noise,
                    errors: bool) -> Windows:
    """The windows of sep's ``objects``, sized by ``half_light_radius`` (FLUX_RADIUS at 0.5), with
    their errors when ``errors``."""
    n = len(objects)
    hl = np.ascontiguousarray(half_light_radius, dtype=np.float32)
    use = np.isfinite(hl) & (hl > 0)
    start = tuple(objects[k].astype(np.float64) for k in ("x", "y")) + \
        tuple(objects[k].astype(np.float32) for k in ("cxx", "cyy", "cxy"))  # sep keeps the ellipse in float
    sums = [np.zeros(n) for _ in range(7)]
    cut, flag = np.zeros(n, dtype=bool), np.zeros(n, dtype=np.uint8)
    _winpos.windows(mask.for_sums(), (*start, hl, use), noise.for_sums(), errors, (*sums, cut, flag))
    xwin, ywin, tv, esum, emx2, emy2, emxy = sums
    found = _error_ellipses(objects, tv, esum, emx2, emy2, emxy, flag) if errors else None
    return Windows(xwin, ywin, cut, found)


def _error_ellipses(objects, tv, esum, emx2, emy2, emxy, flag):
    """SNR_WIN and the error ellipse from the last step's sums, as compute_winpos ends."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        # the windowed flux and its error are floats, and so is their ratio
        snr = np.where(esum > 1.0 / BIG, tv.astype(np.float32) / np.sqrt(esum).astype(np.float32), np.float32(BIG))
        norm = WINPOS_FAC * WINPOS_FAC / (tv * tv)
        emx2, emy2, emxy = emx2 * norm, emy2 * norm, emxy * norm
        # fully correlated profiles (a singular isophotal moment matrix) are widened by the pixel's size
        esum = esum * 0.08333 * norm
        singular = ((objects["flag"] & SEP_OBJ_SINGU) != 0) & (emx2 * emy2 - emxy * emxy < esum * esum)
        emx2, emy2 = np.where(singular, emx2 + esum, emx2), np.where(singular, emy2 + esum, emy2)
    fallback = flag != 0
    emx2 = np.where(fallback, objects["errx2"], emx2)
    emy2 = np.where(fallback, objects["erry2"], emy2)
    emxy = np.where(fallback, objects["errxy"], emxy)
    difference = emx2 - emy2
    with np.errstate(invalid="ignore"):
        theta = np.where(np.abs(difference) > 0, np.arctan2(2.0 * emxy, difference) / 2.0, np.pi / 4.0)
    spread = np.sqrt(0.25 * difference * difference + emxy * emxy)
    mean = 0.5 * (emx2 + emy2)
    erra = np.sqrt(mean + spread).astype(np.float32)
    errb = np.sqrt(np.maximum(mean - spread, 0.0)).astype(np.float32)
    return snr, erra, errb, (theta * 180.0 / np.pi).astype(np.float32)
