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

from .photometry import NeighbourMask, ramp, runs

WINPOS_NITERMAX = 16
WINPOS_NSIG = np.float32(4.0)
WINPOS_OVERSAMP = 11
WINPOS_STEPMIN = 0.0001
WINPOS_FAC = 2.0

_SCALE = np.float32(1.0 / WINPOS_OVERSAMP)
_OFFSET = np.float32(0.5 * (_SCALE - 1.0))
#: locarea after k of the 121 sub-pixel points fell inside: float32 additions of scale², in order.
_LOCAREA = np.cumsum(np.r_[np.float32(0.0), np.full(WINPOS_OVERSAMP**2, _SCALE * _SCALE, dtype=np.float32)],
                     dtype=np.float32)
_STEPS = np.arange(WINPOS_OVERSAMP)


def _sub_positions(start: np.ndarray) -> np.ndarray:
    """The 11 sub-pixel offsets of each pixel, each the float32 sum of the previous and 1/11."""
    out = np.empty((start.size, WINPOS_OVERSAMP), dtype=np.float32)
    out[:, 0] = start + _OFFSET
    for k in range(1, WINPOS_OVERSAMP):
        out[:, k] = out[:, k - 1] + _SCALE
    return out


def _oversampled_area(dx: np.ndarray, dy: np.ndarray, radius2: np.ndarray) -> np.ndarray:
    sub_x = _sub_positions(dx)
    sub_y = _sub_positions(dy)
    x2 = sub_x * sub_x
    hits = np.zeros(dx.size, dtype=np.int64)
    for k in range(WINPOS_OVERSAMP):
        y2 = sub_y[:, k] * sub_y[:, k]
        hits += np.count_nonzero((x2 + y2[:, None]) < radius2[:, None], axis=1)
    return _LOCAREA[hits]


def windowed_positions(
    mask: NeighbourMask, objects: np.ndarray, half_light_radius: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """XWIN_IMAGE and YWIN_IMAGE (1-based) of sep's ``objects``, and which windows the image's
    edge cut (FLAGS bit 16).  ``half_light_radius`` is FLUX_RADIUS at 0.5."""
    n = len(objects)
    mx = objects["x"].astype(np.float64).copy()
    my = objects["y"].astype(np.float64).copy()
    cut = np.zeros(n, dtype=bool)
    sig = (half_light_radius.astype(np.float32) * np.float32(2.0) / np.float32(2.35)).astype(np.float32)
    with np.errstate(divide="ignore", over="ignore"):
        invtwosig2 = (1.0 / (2.0 * sig.astype(np.float64) * sig)).astype(np.float32)
    raper = WINPOS_NSIG * sig
    raper2 = raper * raper
    inner = raper - np.float32(0.75)
    inner2 = np.where(inner > 0, inner * inner, np.float32(0.0)).astype(np.float32)
    outer2 = ((raper + np.float32(0.75)) * (raper + np.float32(0.75))).astype(np.float32)
    active = np.flatnonzero(np.isfinite(raper) & (raper > 0))
    f_mx = mx.astype(np.float32)  # for the mirror rule's arithmetic
    f_my = my.astype(np.float32)
    for _ in range(WINPOS_NITERMAX):
        if active.size == 0:
            break
        xmin = np.trunc(mx[active] - raper[active] + 0.499999).astype(np.int64)
        xmax = np.trunc(mx[active] + raper[active] + 1.499999).astype(np.int64)
        ymin = np.trunc(my[active] - raper[active] + 0.499999).astype(np.int64)
        ymax = np.trunc(my[active] + raper[active] + 1.499999).astype(np.int64)
        cut[active] |= (xmin < 0) | (xmax > mask.width) | (ymin < 0) | (ymax > mask.height)
        xmin, xmax = np.clip(xmin, 0, mask.width), np.clip(xmax, 0, mask.width)
        ymin, ymax = np.clip(ymin, 0, mask.height), np.clip(ymax, 0, mask.height)
        widths = np.maximum(xmax - xmin, 0)
        npix = widths * np.maximum(ymax - ymin, 0)
        tv, xsum, ysum = (np.zeros(active.size) for _ in range(3))
        f_mx[active] = mx[active]
        f_my[active] = my[active]
        for lo, hi in runs(npix):
            counts = npix[lo:hi]
            slot = np.repeat(np.arange(lo, hi), counts)
            row, column = np.divmod(ramp(counts), widths[slot])
            owner = active[slot]
            x = xmin[slot] + column
            y = ymin[slot] + row
            dx = (x - mx[owner]).astype(np.float32)
            dy = (y - my[owner]).astype(np.float32)
            r2 = dx * dx + dy * dy
            near = r2 < outer2[owner]
            slot, owner, x, y, dx, dy, r2 = (v[near] for v in (slot, owner, x, y, dx, dy, r2))
            locarea = np.ones(owner.size, dtype=np.float32)
            edge = np.flatnonzero(r2 > inner2[owner])
            locarea[edge] = _oversampled_area(dx[edge], dy[edge], raper2[owner[edge]])
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
    return mx + 1.0, my + 1.0, cut
