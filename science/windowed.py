"""XWIN_IMAGE and YWIN_IMAGE: source-extractor's windowed positions (``compute_winpos``).

Starting from the barycentre, the position moves to the centroid of the
pixels weighted by a circular Gaussian of sigma = 2 FLUX_RADIUS(0.5) / 2.35,
summed within 4 sigma, with a step twice the centroid's offset; at most 16
steps, stopping after one shorter than 1e-4 pixel.  Pixels near the window's
edge are oversampled 11 x 11, and masked pixels take their mirror's value
(:class:`.photometry.NeighbourMask`), as in source-extractor.

A window cut by the image's edge flags the source (FLAGS bit 16).
source-extractor also cuts windows at the edge of the image lines it holds in
memory (MEMORY_BUFSIZE), and flags those: a source-extractor artefact not
reproduced here (docs/parity.md).
"""

from __future__ import annotations

import numpy as np
import sep

from .photometry import NeighbourMask, box_pixels, circle_box, subpixel_area
from .weights import Noise

WINPOS_NITERMAX = 16
WINPOS_NSIG = np.float32(4.0)
WINPOS_OVERSAMP = 11
WINPOS_STEPMIN = 0.0001
WINPOS_FAC = 2.0

#: Margin around a window's start and centre in the box copied for sep: this many pixels, or this
#: fraction of the window's radius when larger (big windows wander further).
DRIFT = 2.0
DRIFT_FRACTION = 0.25
#: Rounds of re-centring the mirror before falling back to iterating here.
MIRROR_ROUNDS = 4
#: Windows wider than this radius (pixels; only saturated stars and large blends have them) take
#: their first round's end: iterating them pixel by pixel costs seconds a CCD, and their rounds
#: swing by pixels rather than settle (docs/parity.md, "What still differs").
GIANT_RADIUS = 50.0


def _mirror(m: np.ndarray) -> np.ndarray:
    """The integer that fixes every pixel's mirror through a centre at ``m``."""
    return np.trunc(2 * m + 0.49999).astype(np.int64)


def window_sigma(half_light_radius: np.ndarray) -> np.ndarray:
    """The window's sigma: 2 FLUX_RADIUS(0.5) / 2.35, from half the FWHM, in float32."""
    return (half_light_radius.astype(np.float32) * np.float32(2.0) / np.float32(2.35)).astype(np.float32)


def windowed_positions(
    mask: NeighbourMask, objects: np.ndarray, half_light_radius: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """XWIN_IMAGE and YWIN_IMAGE (1-based) of sep's ``objects``, and which windows the image's
    edge cut (FLAGS bit 16).  ``half_light_radius`` is FLUX_RADIUS at 0.5.

    sep's ``winpos`` is the same iteration, in C: equal to 4e-6 pixel where it sees the same
    pixels.  A window that meets masked pixels is given a copy of its box in which they take
    their mirror's value through a centre; where it ends with the same mirrors, that is the
    image source-extractor's last steps saw, so its end is source-extractor's to its 1e-4 pixel
    stopping step.  Otherwise the centre moves there and it is tried again; the few that do not
    settle are iterated here, as source-extractor does."""
    sig = window_sigma(half_light_radius)
    raper = WINPOS_NSIG * sig
    valid = np.isfinite(raper) & (raper > 0)
    x0 = objects["x"].astype(np.float64)
    y0 = objects["y"].astype(np.float64)
    sig64 = sig.astype(np.float64)
    data = mask.pixels.reshape(mask.height, mask.width)

    mx, my = x0.copy(), y0.copy()
    pending = valid.copy()
    # Mirrors through a centre that starts at the barycentre and moves to where the window ended.
    cx, cy = x0.copy(), y0.copy()
    for _ in range(MIRROR_ROUNDS):
        which = np.flatnonzero(pending)
        if which.size == 0:
            break
        margin = np.maximum(DRIFT, DRIFT_FRACTION * raper[which])
        # The copied box holds the windows at the start and at the centre, and a margin.
        reach = raper[which] + margin
        left = circle_box(np.minimum(x0[which], cx[which]), reach, mask.width)[0]
        right = circle_box(np.maximum(x0[which], cx[which]), reach, mask.width)[1]
        bottom = circle_box(np.minimum(y0[which], cy[which]), reach, mask.height)[0]
        top = circle_box(np.maximum(y0[which], cy[which]), reach, mask.height)[1]
        centre_x, centre_y = cx.astype(np.float32), cy.astype(np.float32)
        on_ccd = np.zeros(which.size, dtype=bool)
        for k, source in enumerate(which):
            stamp = mask.box(source, left[k], right[k], bottom[k], top[k], centre_x, centre_y)
            if stamp is None:  # no masked pixel: the CCD itself, all such windows in one call below
                on_ccd[k] = True
                continue
            px, py, _ = sep.winpos(stamp, x0[source:source + 1] - left[k], y0[source:source + 1] - bottom[k],
                                   sig64[source:source + 1])
            mx[source], my[source] = px[0] + left[k], py[0] + bottom[k]
        plain = which[on_ccd]
        if plain.size:
            mx[plain], my[plain], _ = sep.winpos(data, x0[plain], y0[plain], sig64[plain])
        moved = np.hypot(mx[which] - cx[which], my[which] - cy[which])
        same = (_mirror(mx[which]) == _mirror(cx[which])) & (_mirror(my[which]) == _mirror(cy[which]))
        done = (moved <= margin) & (same | on_ccd) | (raper[which] > GIANT_RADIUS)
        pending[which] = ~done
        cx[which], cy[which] = mx[which], my[which]

    redo = np.flatnonzero(pending)
    mx[redo], my[redo] = x0[redo], y0[redo]
    cut = np.zeros(len(objects), dtype=bool)
    for ex, ey in ((x0, y0), (mx, my)):  # sep's windows: cut at the start or the end
        cut |= valid & (circle_box(ex, raper, mask.width)[2] | circle_box(ey, raper, mask.height)[2])
    cut |= _iterate(mask, mx, my, sig, redo)
    return mx + 1.0, my + 1.0, cut


#: Pixels a window pass handles at once: each carries a dozen temporaries, mirrors included.
_RUN_PIXELS = 500_000


class _Window:
    """Gaussian windows of sigma ``sig``: their radius, oversampled annulus and weights."""

    def __init__(self, sig: np.ndarray):
        with np.errstate(divide="ignore", over="ignore"):
            self.invtwosig2 = (1.0 / (2.0 * sig.astype(np.float64) * sig)).astype(np.float32)
        self.raper = WINPOS_NSIG * sig
        self.raper2 = self.raper * self.raper
        inner = self.raper - np.float32(0.75)
        self.inner2 = np.where(inner > 0, inner * inner, np.float32(0.0)).astype(np.float32)
        self.outer2 = ((self.raper + np.float32(0.75)) * (self.raper + np.float32(0.75))).astype(np.float32)

    def pixels(self, mask: NeighbourMask, mx: np.ndarray, my: np.ndarray, active: np.ndarray):
        """Which windows ``active`` (centred at ``mx``, ``my``) the image cuts, then, in runs,
        ``(slot, dx, dy, locarea, value, source)`` of their pixels: the weight of each (its share
        inside the window times the Gaussian), its value, masked pixels mirrored, and where the
        value came from (see :meth:`.NeighbourMask.replaced`)."""
        xmin, xmax, cut_x = circle_box(mx[active], self.raper[active], mask.width)
        ymin, ymax, cut_y = circle_box(my[active], self.raper[active], mask.height)
        yield cut_x | cut_y
        f_mx, f_my = mx.astype(np.float32), my.astype(np.float32)  # the mirror rule's arithmetic
        for slot, x, y in box_pixels(xmin, xmax, ymin, ymax, _RUN_PIXELS):
            owner = active[slot]
            dx = (x - mx[owner]).astype(np.float32)
            dy = (y - my[owner]).astype(np.float32)
            r2 = dx * dx + dy * dy
            near = np.flatnonzero(r2 < self.outer2[owner])
            slot, owner, x, y, dx, dy, r2 = (v[near] for v in (slot, owner, x, y, dx, dy, r2))
            locarea = np.ones(owner.size, dtype=np.float32)
            edge = np.flatnonzero(r2 > self.inner2[owner])
            locarea[edge] = subpixel_area(dx[edge], dy[edge], self.raper2[owner[edge]], WINPOS_OVERSAMP)
            locarea *= np.exp(-r2 * self.invtwosig2[owner])
            value, _, source = mask.replaced(owner, y * mask.width + x, f_mx, f_my)
            yield slot, dx, dy, locarea, value, source


def _iterate(mask: NeighbourMask, mx: np.ndarray, my: np.ndarray, sig: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Move the windows ``active`` from ``mx``, ``my`` (0-based, updated in place) as
    ``compute_winpos`` does, masked pixels replaced; returns which windows the image cut."""
    cut = np.zeros(len(mx), dtype=bool)
    window = _Window(sig)
    for _ in range(WINPOS_NITERMAX):
        if active.size == 0:
            break
        runs = window.pixels(mask, mx, my, active)
        cut[active] |= next(runs)
        tv, xsum, ysum = (np.zeros(active.size) for _ in range(3))
        for slot, dx, dy, locarea, value, _ in runs:
            locpix = locarea.astype(np.float64) * value
            tv += np.bincount(slot, weights=locpix, minlength=active.size)
            xsum += np.bincount(slot, weights=locpix * dx, minlength=active.size)
            ysum += np.bincount(slot, weights=locpix * dy, minlength=active.size)
        positive = tv > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            step_x = np.where(positive, xsum / tv, 0.0)
            step_y = np.where(positive, ysum / tv, 0.0)
        mx[active] += step_x * WINPOS_FAC
        my[active] += step_y * WINPOS_FAC
        moving = positive & (step_x * step_x + step_y * step_y >= WINPOS_STEPMIN * WINPOS_STEPMIN)
        active = active[moving]
    return cut


def window_errors(
    mask: NeighbourMask, objects: np.ndarray, xwin: np.ndarray, ywin: np.ndarray, half_light_radius: np.ndarray,
    noise: Noise,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """SNR_WIN, ERRAWIN_IMAGE, ERRBWIN_IMAGE and ERRTHETAWIN_IMAGE (degrees) at the windowed
    positions ``xwin``, ``ywin`` (1-based), summed as ``compute_winpos`` sums them in its last
    step: each pixel's variance (the background's or the variance map's, plus value / GAIN when
    positive, scaled by variance / RMS² under WEIGHT_GAIN) times its weight squared, with 1/12 pixel² for the pixel's size.  Where the windowed flux is not
    positive or the windowed moments are not those of an ellipse, source-extractor falls back
    to the isophotal position errors (sep's ``errx2``, ``erry2``, ``errxy``); so does this."""
    n = len(objects)
    sig = window_sigma(half_light_radius)
    window = _Window(sig)
    active = np.flatnonzero(np.isfinite(window.raper) & (window.raper > 0))
    mx, my = xwin - 1.0, ywin - 1.0
    sums = {key: np.zeros(n) for key in ("tv", "x", "y", "xx", "yy", "xy", "e", "ex", "ey", "exy")}
    gain = noise.gain
    runs = window.pixels(mask, mx, my, active)
    next(runs)
    for slot, dx, dy, locarea, value, source in runs:
        owner = active[slot]

        def add(key: str, term: np.ndarray) -> None:  # one term alive at a time: runs are millions of pixels
            sums[key] += np.bincount(owner, weights=term, minlength=n)

        # float32 where compute_winpos has floats (dx, dy, locarea and their products), float64 where
        # it has doubles: round windows' error angles depend on it.
        locpix = locarea.astype(np.float64) * value
        var = noise.pixel_variance(source)
        if noise.per_pixel_gain:
            poisson = noise.pixel_poisson(value, var)
        else:
            poisson = np.where(value > 0, value / gain, 0.0) if gain > 0 else 0.0
        err2 = (locarea * locarea).astype(np.float64) * (var + poisson)
        x, y = dx.astype(np.float64), dy.astype(np.float64)
        add("tv", locpix)
        add("x", locpix * x)
        add("y", locpix * y)
        add("xx", locpix * x * x)
        add("yy", locpix * y * y)
        add("xy", locpix * x * y)
        add("e", err2)
        add("ex", err2 * ((dx * dx).astype(np.float64) + 0.0833))
        add("ey", err2 * ((dy * dy).astype(np.float64) + 0.0833))
        add("exy", err2 * (dx * dy).astype(np.float64))
    tv, esum = sums["tv"], sums["e"]
    with np.errstate(divide="ignore", invalid="ignore"):
        snr = np.where(esum > 1e-30, tv / np.sqrt(esum), 1e30)
        dx, dy = sums["x"] / tv, sums["y"] / tv
        mx2, my2 = sums["xx"] / tv - dx * dx, sums["yy"] / tv - dy * dy
        mxy = sums["xy"] / tv - dx * dy
        norm = WINPOS_FAC * WINPOS_FAC / (tv * tv)
    fallback = ~((tv > 0) & (mx2 >= 0) & (my2 >= 0) & (mx2 * my2 - mxy * mxy >= 0))
    emx2 = np.where(fallback, objects["errx2"], sums["ex"] * norm)
    emy2 = np.where(fallback, objects["erry2"], sums["ey"] * norm)
    emxy = np.where(fallback, objects["errxy"], sums["exy"] * norm)
    difference = emx2 - emy2
    theta = np.where(np.abs(difference) > 0, np.arctan2(2.0 * emxy, difference) / 2.0, np.pi / 4.0)
    spread = np.sqrt(0.25 * difference * difference + emxy * emxy)
    mean = 0.5 * (emx2 + emy2)
    erra = np.sqrt(mean + spread).astype(np.float32)
    errb = np.sqrt(np.maximum(mean - spread, 0.0)).astype(np.float32)
    return snr.astype(np.float32), erra, errb, np.degrees(theta).astype(np.float32)
