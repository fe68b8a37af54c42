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
#: their first round's end: iterating them pixel by pixel costs seconds a CCD, and their end
#: is chaotic in source-extractor itself (docs/parity.md).
GIANT_RADIUS = 50.0


def _mirror(m: np.ndarray) -> np.ndarray:
    """The integer that fixes every pixel's mirror through a centre at ``m``."""
    return np.trunc(2 * m + 0.49999).astype(np.int64)


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
    sig = (half_light_radius.astype(np.float32) * np.float32(2.0) / np.float32(2.35)).astype(np.float32)
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
        on_ccd = []
        for k, source in enumerate(which):
            stamp = mask.box(source, left[k], right[k], bottom[k], top[k], centre_x, centre_y)
            if stamp is None:  # no masked pixel: the CCD itself, all such windows in one call below
                on_ccd.append(k)
                continue
            px, py, _ = sep.winpos(stamp, x0[source:source + 1] - left[k], y0[source:source + 1] - bottom[k],
                                   sig64[source:source + 1])
            mx[source], my[source] = px[0] + left[k], py[0] + bottom[k]
        plain = which[on_ccd]
        if plain.size:
            mx[plain], my[plain], _ = sep.winpos(data, x0[plain], y0[plain], sig64[plain])
        moved = np.hypot(mx[which] - cx[which], my[which] - cy[which])
        same = (_mirror(mx[which]) == _mirror(cx[which])) & (_mirror(my[which]) == _mirror(cy[which]))
        done = (moved <= margin) & (same | np.isin(np.arange(which.size), on_ccd)) | (raper[which] > GIANT_RADIUS)
        pending[which] = ~done
        cx[which], cy[which] = mx[which], my[which]

    redo = np.flatnonzero(pending)
    mx[redo], my[redo] = x0[redo], y0[redo]
    cut = np.zeros(len(objects), dtype=bool)
    for ex, ey in ((x0, y0), (mx, my)):  # sep's windows: cut at the start or the end
        cut |= valid & (circle_box(ex, raper, mask.width)[2] | circle_box(ey, raper, mask.height)[2])
    cut |= _iterate(mask, mx, my, sig, redo)
    return mx + 1.0, my + 1.0, cut


def _iterate(mask: NeighbourMask, mx: np.ndarray, my: np.ndarray, sig: np.ndarray, active: np.ndarray) -> np.ndarray:
    """Move the windows ``active`` from ``mx``, ``my`` (0-based, updated in place) as
    ``compute_winpos`` does, masked pixels replaced; returns which windows the image cut."""
    cut = np.zeros(len(mx), dtype=bool)
    with np.errstate(divide="ignore", over="ignore"):
        invtwosig2 = (1.0 / (2.0 * sig.astype(np.float64) * sig)).astype(np.float32)
    raper = WINPOS_NSIG * sig
    raper2 = raper * raper
    inner = raper - np.float32(0.75)
    inner2 = np.where(inner > 0, inner * inner, np.float32(0.0)).astype(np.float32)
    outer2 = ((raper + np.float32(0.75)) * (raper + np.float32(0.75))).astype(np.float32)
    f_mx = mx.astype(np.float32)  # for the mirror rule's arithmetic
    f_my = my.astype(np.float32)
    for _ in range(WINPOS_NITERMAX):
        if active.size == 0:
            break
        xmin, xmax, cut_x = circle_box(mx[active], raper[active], mask.width)
        ymin, ymax, cut_y = circle_box(my[active], raper[active], mask.height)
        cut[active] |= cut_x | cut_y
        tv, xsum, ysum = (np.zeros(active.size) for _ in range(3))
        f_mx[active] = mx[active]
        f_my[active] = my[active]
        for slot, x, y in box_pixels(xmin, xmax, ymin, ymax):
            owner = active[slot]
            dx = (x - mx[owner]).astype(np.float32)
            dy = (y - my[owner]).astype(np.float32)
            r2 = dx * dx + dy * dy
            near = np.flatnonzero(r2 < outer2[owner])
            slot, owner, x, y, dx, dy, r2 = (v[near] for v in (slot, owner, x, y, dx, dy, r2))
            locarea = np.ones(owner.size, dtype=np.float32)
            edge = np.flatnonzero(r2 > inner2[owner])
            locarea[edge] = subpixel_area(dx[edge], dy[edge], raper2[owner[edge]], WINPOS_OVERSAMP)
            locarea *= np.exp(-r2 * invtwosig2[owner])
            value, _ = mask.values(owner, y * mask.width + x, f_mx, f_my)
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
