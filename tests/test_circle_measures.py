"""The C loops over circles against source-extractor 2.25's own routines, written out here one source at
a time from its photom.c (computeaperflux: FLUX_APER), growth.c (makeavergrowth: FLUX_RADIUS) and
winpos.c (compute_winpos: XWIN_IMAGE and its errors): every flux, radius, position and sum the same
double, on a CCD with neighbours, blank pixels, bad weights and circles over its edges."""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np
import pytest

from canfar_catalogue.science import _aperture_sums, _growth, _winpos
from canfar_catalogue.science.photometry import NeighbourMask

from .neighbour_rules import in_order, measured_source

f32 = np.float32
_LIBM = ctypes.CDLL(ctypes.util.find_library("m"))
_LIBM.expf.restype, _LIBM.expf.argtypes = ctypes.c_float, [ctypes.c_float]


def _expf(values: np.ndarray) -> np.ndarray:
    """The C library's expf, element by element (numpy's own float32 exp rounds differently)."""
    return np.array([_LIBM.expf(float(v)) for v in values], dtype=f32)


def _box(mx, my, raper, width, height):
    """compute_winpos's and makeavergrowth's box, clipped, and whether the image cut it."""
    xmin, xmax = int(mx - raper + 0.499999), int(mx + raper + 1.499999)
    ymin, ymax = int(my - raper + 0.499999), int(my + raper + 1.499999)
    cut = xmin < 0 or xmax > width or ymin < 0 or ymax > height
    return max(xmin, 0), min(xmax, width), max(ymin, 0), min(ymax, height), cut


def _computeaperflux(mask, i, mx, my, raper, variance, gain, backnoise2, per_pixel_gain):
    """photom.c's computeaperflux for source i (float centre mx, my) and the circle of radius raper:
    the flux, its variance before the flux's own Poisson term, and whether the image cut the circle."""
    raper2 = raper * raper
    rintlim = f32(float(raper) - 0.75)
    rintlim2 = rintlim * rintlim if rintlim > 0 else f32(0.0)
    rextlim2 = f32((float(raper) + 0.75) * (float(raper) + 0.75))
    scale = f32(1.0 / 5)
    scale2, offset = scale * scale, f32(0.5 * (float(scale) - 1.0))
    xmin, xmax = int(float(mx - raper) + 0.499999), int(float(mx + raper) + 1.499999)
    ymin, ymax = int(float(my - raper) + 0.499999), int(float(my + raper) + 1.499999)
    cut = xmin < 0 or xmax > mask.width or ymin < 0 or ymax > mask.height
    ys, xs = (g.ravel() for g in np.mgrid[max(ymin, 0):min(ymax, mask.height), max(xmin, 0):min(xmax, mask.width)])
    dx, dy = xs.astype(f32) - mx, ys.astype(f32) - my
    r2 = dx * dx + dy * dy
    near = r2 < rextlim2
    xs, ys, dx, dy, r2 = xs[near], ys[near], dx[near], dy[near], r2[near]
    locarea = np.ones(xs.size, dtype=f32)
    for k in np.flatnonzero(r2 > rintlim2):
        locarea[k], sub_y = f32(0.0), dy[k] + offset
        for _ in range(5):
            sub_x, sub_y2 = dx[k] + offset, sub_y * sub_y
            for _ in range(5):
                if sub_x * sub_x + sub_y2 < raper2:
                    locarea[k] += scale2
                sub_x += scale
            sub_y += scale
    source = measured_source(mask, i, xs, ys, float(f32(2 * mx)) + 0.49999, float(f32(2 * my)) + 0.49999)
    pix = np.where(source >= 0, mask.pixels[np.maximum(source, 0)].astype(np.float64), 0.0)
    if variance is None:
        var = np.full(xs.size, backnoise2)
    else:
        var = np.where(source >= 0, variance[np.maximum(source, 0)].astype(np.float64), 0.0)
    own = np.where((pix > 0) & (gain > 0), pix / gain * var / backnoise2, 0.0) if per_pixel_gain else 0.0 * pix
    # each pixel adds its variance, then its own Poisson term, to the one sum
    sigtv = in_order(np.column_stack([var * locarea.astype(np.float64), own]).ravel())
    return in_order(locarea.astype(np.float64) * pix), sigtv, cut


def _makeavergrowth(mask, i, mx, my, rlim, flux_auto, fractions):
    """growth.c's makeavergrowth for source i: its radii at each fraction, its half-light radius,
    whether the image cut its box, and the flux within rlim."""
    raper = rlim + 1.5
    stepdens = 64 / rlim
    step = 1 / stepdens
    scale = 1.0 / 5
    scale2, offset = scale * scale, 0.5 * (scale - 1.0)
    xmin, xmax, ymin, ymax, cut = _box(mx, my, raper, mask.width, mask.height)
    ys, xs = (g.ravel() for g in np.mgrid[ymin:ymax, xmin:xmax])
    dx, dy = xs - mx, ys - my
    r2 = dx * dx + dy * dy
    inside = r2 < raper * raper
    xs, ys, dx, dy, r2 = xs[inside], ys[inside], dx[inside], dy[inside], r2[inside]
    source = measured_source(mask, i, xs, ys, 2 * mx + 0.49999, 2 * my + 0.49999)
    pix = np.where(source >= 0, mask.pixels[np.maximum(source, 0)].astype(np.float64), 0.0)
    r = np.sqrt(r2)
    d = np.fmod(r, step)
    ring, share = [], []  # each contribution, in the order the C loops add them
    for k in range(xs.size):
        if d[k] < 0.75 or d[k] > step - 0.75:
            sub_y = dy[k] + offset
            for _ in range(5):
                sub_x = dx[k] + offset
                for _ in range(5):
                    ring.append(int(np.sqrt(sub_x * sub_x + sub_y * sub_y) * stepdens))
                    share.append(scale2 * pix[k])
                    sub_x += scale
                sub_y += scale
        else:
            ring.append(int(r[k] * stepdens))
            share.append(pix[k])
    ring, share = np.array(ring, dtype=np.int64), np.array(share)
    growth = np.array([in_order(share[ring == j]) for j in range(64)])
    growth = np.cumsum(growth)  # integrated one ring after the other

    def radius(tv):
        i = 0
        while i < 63 and growth[i] < tv:
            i += 1
        if i == 0:
            return step * (tv / growth[0] if growth[0] != 0.0 else 0.0)
        at = min(i, 62)  # growth.c leaves its pointer on ring 62 when the fraction is never reached
        dg = growth[at] - growth[at - 1]
        return step * (i + (tv - growth[at - 1]) / dg if dg != 0.0 else i)

    radii = [min(radius(f * flux_auto), rlim) for f in fractions]
    half_light = max(min(abs(radius(0.5 * flux_auto)), rlim), 0.5)
    return radii, half_light, cut, growth[-1]


def _compute_winpos(mask, i, x, y, cxx, cyy, cxy, hl_radius, variance, gain, backnoise2, weight_gain):
    """winpos.c's compute_winpos for source i, from its sep barycentre (0-based): XWIN, YWIN,
    the last step's sums (tv, esum, emx2, emy2, emxy), whether a step's box was cut, and win_flag."""
    sig = f32(float(hl_radius) * 2.0 / 2.35)
    invtwosig2 = f32(1.0 / (2.0 * float(sig) * float(sig)))
    raper = f32(4 * sig)
    raper2 = raper * raper
    rintlim = f32(float(raper) - 0.75)
    rintlim2 = rintlim * rintlim if rintlim > 0 else f32(0.0)
    rextlim2 = f32((float(raper) + 0.75) * (float(raper) + 0.75))
    scale = f32(1.0 / 11)
    scale2, offset = scale * scale, f32(0.5 * (float(scale) - 1.0))
    locareas = [f32(0.0)]
    for _ in range(121):
        locareas.append(locareas[-1] + scale2)
    locareas = np.array(locareas, dtype=f32)
    invgain = 1.0 / gain if gain > 0 else 0.0
    posx, posy = x + 1.0, y + 1.0
    mx, my = posx - 1.0, posy - 1.0
    cut = False
    for step in range(16):
        xmin, xmax, ymin, ymax, clipped = _box(mx, my, float(raper), mask.width, mask.height)
        cut |= clipped
        ys, xs = (g.ravel() for g in np.mgrid[ymin:ymax, xmin:xmax])
        dx, dy = (xs - mx).astype(f32), (ys - my).astype(f32)
        r2 = dx * dx + dy * dy
        near = r2 < rextlim2
        xs, ys, dx, dy, r2 = xs[near], ys[near], dx[near], dy[near], r2[near]
        hits = np.zeros(xs.size, dtype=np.int64)
        edge = r2 > rintlim2
        sub_y = dy[edge] + offset
        for _ in range(11):
            sub_x, sub_y2 = dx[edge] + offset, sub_y * sub_y
            for _ in range(11):
                hits[edge] += (sub_x * sub_x + sub_y2) < raper2
                sub_x = sub_x + scale
            sub_y = sub_y + scale
        locarea = np.where(edge, locareas[hits], f32(1.0)).astype(f32)
        locarea = locarea * _expf(-r2 * invtwosig2)
        source = measured_source(mask, i, xs, ys, mx * 2.0 + 0.49999, my * 2.0 + 0.49999)
        pix = np.where(source >= 0, mask.pixels[np.maximum(source, 0)].astype(np.float64), 0.0)
        if variance is None:
            var = np.full(xs.size, backnoise2)
        else:
            var = np.where(source >= 0, variance[np.maximum(source, 0)].astype(np.float64), 0.0)
        locpix = locarea.astype(np.float64) * pix
        x64, y64 = dx.astype(np.float64), dy.astype(np.float64)
        positive = (pix > 0) & (invgain > 0)
        poisson = pix * invgain * var / backnoise2 if weight_gain and variance is not None else pix * invgain
        err = var + np.where(positive, poisson, 0.0)
        err2 = (locarea * locarea).astype(np.float64) * err
        tv, dxpos, dypos = in_order(locpix), in_order(locpix * x64), in_order(locpix * y64)
        esum = in_order(err2)
        emx2 = in_order(err2 * ((dx * dx).astype(np.float64) + 0.0833))
        emy2 = in_order(err2 * ((dy * dy).astype(np.float64) + 0.0833))
        emxy = in_order(err2 * x64 * y64)
        mx2, my2, mxy = in_order(locpix * x64 * x64), in_order(locpix * y64 * y64), in_order(locpix * x64 * y64)
        if not tv > 0:
            break
        dxpos, dypos = dxpos / tv, dypos / tv
        mx, my = mx + dxpos * 2.0, my + dypos * 2.0
        if dxpos * dxpos + dypos * dypos < 0.0001 * 0.0001:
            break
    with np.errstate(divide="ignore", invalid="ignore"):
        mx2, my2, mxy = (np.float64(mx2) / tv - dxpos * dxpos, np.float64(my2) / tv - dypos * dypos,
                         np.float64(mxy) / tv - dxpos * dypos)
    xwin, ywin = mx + 1.0, my + 1.0
    ddx, ddy = xwin - posx, ywin - posy
    wandered = ddx * ddx > 1.0 and ddy * ddy > 1.0 and (
        float(cxx) * ddx * ddx + float(cyy) * ddy * ddy + float(cxy) * ddx * ddy) > 1.0
    flag = 8 * wandered | 4 * (tv <= 0.0) | 2 * (mx2 < 0.0 or my2 < 0.0) | (mx2 * my2 - mxy * mxy < 0.0)
    if flag:
        xwin, ywin = posx, posy
    return (xwin, ywin, tv, esum, emx2, emy2, emxy), cut, flag


def _scene(correct: bool, with_bad: bool, seed: int = 4):
    """A small CCD of Gaussian sources, some blended, some over the edge, one wide and bright, with a
    segmentation map that hands pixels to neighbours, a masking map, blank pixels and bad weights."""
    rng = np.random.default_rng(seed)
    height, width = 70, 90
    n = 40
    x = rng.uniform(-1.5, width + 0.5, n)
    y = rng.uniform(-1.5, height + 0.5, n)
    sigma = rng.uniform(0.8, 3.0, n)
    sigma[0], x[0], y[0] = 9.0, 45.3, 33.7  # a bright wide source whose window reaches the edges
    # centres whose mirrors, 2 m + 0.49999, fall just short of an integer in double and on it in float
    x[5:8], y[5:8] = (np.array([[89.50001, 67.50001], [95.50001, 61.50001], [80.50001, 75.50001]]).T / 2 - 7e-7)
    amplitude = rng.uniform(20, 400, n)
    amplitude[0] = 5000
    yy, xx = np.mgrid[0:height, 0:width]
    image = rng.normal(0.0, 5.0, (height, width))
    for k in range(n):
        image += amplitude[k] * np.exp(-((xx - x[k]) ** 2 + (yy - y[k]) ** 2) / (2 * sigma[k] ** 2))
    image = image.astype(f32)
    nearest = np.argmin((xx[..., None] - x) ** 2 + (yy[..., None] - y) ** 2, axis=-1)
    segmap = np.where(image > 15, nearest + 1, 0).astype(np.int32)
    masking = image > 15
    blank = rng.random((height, width)) < 0.01
    bad = rng.random((height, width)) < 0.02 if with_bad else None
    mask = NeighbourMask(image, segmap, masking, blank, correct, bad=bad)
    cxx = rng.uniform(0.05, 1.0, n).astype(f32)
    cyy = rng.uniform(0.05, 1.0, n).astype(f32)
    cxy = rng.uniform(-0.1, 0.1, n).astype(f32)
    a = (sigma * rng.uniform(0.8, 1.2, n)).astype(f32).astype(np.float64)
    flux = 2 * np.pi * sigma**2 * amplitude * rng.uniform(0.9, 1.05, n)
    return mask, x, y, a, flux, (cxx, cyy, cxy), rng


@pytest.mark.parametrize("correct", [True, False])
def test_growth_curves_are_makeavergrowths_to_the_bit(correct):
    mask, x, y, a, flux, _, _ = _scene(correct, with_bad=True)
    n = x.size
    rlim = 6.0 * a
    rlim[0] = 120.0  # the wide source, rings wider than 1.5 pixel: only pixels near a ring's boundary are split
    flux[0] = _makeavergrowth(mask, 0, x[0], y[0], rlim[0], 1.0, [])[3]  # what its neighbours leave it
    flux = flux.astype(f32).astype(np.float64)
    flux[2] = -flux[2]  # a negative FLUX_AUTO: a negative radius, a positive half-light radius
    x[8], y[8], rlim[8], flux[8] = -25.0, -25.0, 30.0, 1e9  # off the CCD: every ring empty, never reached
    fractions = np.array([0.5, 0.9, 0.2])
    radius, half_light, cut = np.zeros((n, 3)), np.zeros(n), np.zeros(n, dtype=bool)
    _growth.radii(mask.for_sums(), (x, y, rlim, flux, np.arange(n)), fractions, (radius, half_light, cut))
    for i in range(n):
        want_radii, want_half_light, want_cut, _ = _makeavergrowth(mask, i, x[i], y[i], rlim[i], flux[i], fractions)
        assert radius[i].tolist() == want_radii, i
        assert (half_light[i], bool(cut[i])) == (want_half_light, want_cut), i
    assert cut.sum() >= 5
    assert radius[2, 0] <= 0 < half_light[2]
    assert 3 < radius[0, 0] < radius[0, 1] < 20  # the wide source's curve is read within it
    assert radius[8, 0] == 63 * 30.0 / 64  # growth.c's reading of a flat curve: 63 rings


@pytest.mark.parametrize("correct", [True, False])
@pytest.mark.parametrize("with_variance, weight_gain", [(False, False), (True, False), (True, True)])
def test_windows_are_compute_winpos_to_the_bit(correct, with_variance, weight_gain):
    mask, x, y, a, flux, ellipse, rng = _scene(correct, with_bad=with_variance)
    n = x.size
    hl = (a * rng.uniform(0.5, 1.2, n)).astype(f32)
    hl[3] = np.nan  # no half-light radius: the window stays at the barycentre
    hl[4] = 0.5
    use = np.isfinite(hl)
    variance = rng.uniform(20, 40, mask.pixels.size).astype(f32) if with_variance else None
    gain, backnoise2 = 2.5, float(f32(5.0) * f32(5.0))
    sums = [np.zeros(n) for _ in range(7)]
    cut, flag = np.zeros(n, dtype=bool), np.zeros(n, dtype=np.uint8)
    _winpos.windows(mask.for_sums(), (x, y, *ellipse, hl, use), (variance, gain, backnoise2, weight_gain), True,
                    (*sums, cut, flag))
    for i in np.flatnonzero(use):
        want, want_cut, want_flag = _compute_winpos(mask, i, x[i], y[i], *(e[i] for e in ellipse), hl[i], variance,
                                                    gain, backnoise2, weight_gain)
        assert tuple(s[i] for s in sums) == want, i
        assert (bool(cut[i]), int(flag[i])) == (want_cut, want_flag), i
    assert (sums[0][3], sums[1][3], flag[3]) == (x[3] + 1.0, y[3] + 1.0, 4)
    moved = np.hypot(sums[0] - x - 1, sums[1] - y - 1)
    assert (moved[use] > 0.01).sum() >= 10 and cut.sum() >= 5  # windows that moved, windows the edge cut


def test_windows_and_growth_curves_refuse_arrays_of_the_wrong_kind():
    mask, x, y, a, flux, ellipse, _ = _scene(True, with_bad=False)
    n = x.size
    out = (np.zeros((n, 1)), np.zeros(n), np.zeros(n, dtype=bool))
    with pytest.raises(ValueError, match="rlim: expected 40 items"):
        _growth.radii(mask.for_sums(), (x, y, a[:-1], flux, np.arange(n)), np.array([0.5]), out)
    with pytest.raises(ValueError, match="source 0: its growth curve needs a positive radius"):
        _growth.radii(mask.for_sums(), (x, y, np.zeros(n), flux, np.arange(n)), np.array([0.5]), out)
    sums = [np.zeros(n) for _ in range(7)]
    with pytest.raises(TypeError, match="hl_radius"):
        _winpos.windows(mask.for_sums(), (x, y, *ellipse, a, np.ones(n, dtype=bool)), (None, 1.0, 1.0, False), True,
                        (*sums, np.zeros(n, dtype=bool), np.zeros(n, dtype=np.uint8)))


@pytest.mark.parametrize("correct", [True, False])
@pytest.mark.parametrize("with_variance, weight_gain", [(False, False), (True, False), (True, True)])
def test_circular_apertures_are_computeaperflux_to_the_bit(correct, with_variance, weight_gain):
    mask, x, y, _, _, _, rng = _scene(correct, with_bad=with_variance)
    n = x.size
    mx, my = x.astype(f32), y.astype(f32)
    mx[9:12] = [40.25, 60.75, 30.5]  # centres on quarter and half pixels: mirrors on a pixel's edge
    radii = np.array([0.5, 2.5, 5.0, 12.0], dtype=f32)  # the first all annulus: no pixel counts whole
    variance = rng.uniform(20, 40, mask.pixels.size).astype(f32) if with_variance else None
    gain, backnoise2 = 2.5, float(f32(5.0) * f32(5.0))
    flux, var, cut = np.zeros((n, radii.size)), np.zeros((n, radii.size)), np.zeros(n, dtype=bool)
    _aperture_sums.circle_sums(mask.for_sums(), (mx, my), radii, (variance, gain, backnoise2, weight_gain),
                               (flux, var, cut))
    for i in range(n):
        want = [_computeaperflux(mask, i, mx[i], my[i], r, variance, gain, backnoise2, weight_gain) for r in radii]
        assert flux[i].tolist() == [w[0] for w in want], i
        assert var[i].tolist() == [w[1] for w in want], i
        assert bool(cut[i]) == any(w[2] for w in want), i
    assert cut.sum() >= 5 and (flux[:, 3] > flux[:, 1]).sum() > n / 2


def test_window_errors_end_as_compute_winpos_ends():
    """SNR_WIN and the error ellipse from a window's sums, written out from winpos.c's last lines: a
    singular isophotal source widened by the pixel's size, a kept window, and each win_flag falling
    back to the isophotal errors."""
    from canfar_catalogue.science.windowed import SEP_OBJ_SINGU, _error_ellipses

    objects = np.zeros(4, dtype=[("flag", "i2"), ("errx2", "f8"), ("erry2", "f8"), ("errxy", "f8")])
    objects["flag"] = [SEP_OBJ_SINGU, 0, 0, SEP_OBJ_SINGU]
    objects["errx2"], objects["erry2"], objects["errxy"] = 0.04, 0.01, 0.005
    tv = np.array([1000.0, 1000.0, -5.0, 800.0])
    esum = np.array([400.0, 400.0, 30.0, 0.0])
    emx2, emy2 = np.array([50.0, 60.0, 1.0, 9.0]), np.array([20.0, 30.0, 1.0, 4.0])
    emxy = np.array([31.0, 3.0, 0.0, 6.0])
    flag = np.array([0, 0, 4, 0], dtype=np.uint8)

    def by_hand(i):
        snr = f32(tv[i]) / f32(np.sqrt(esum[i])) if esum[i] > 1e-30 else f32(1e30)
        if flag[i]:
            mx2, my2, mxy = objects["errx2"][i], objects["erry2"][i], objects["errxy"][i]
        else:
            norm = 2.0 * 2.0 / (tv[i] * tv[i])
            mx2, my2, mxy, widen = emx2[i] * norm, emy2[i] * norm, emxy[i] * norm, esum[i] * 0.08333 * norm
            if objects["flag"][i] & SEP_OBJ_SINGU and mx2 * my2 - mxy * mxy < widen * widen:
                mx2, my2 = mx2 + widen, my2 + widen
        temp = mx2 - my2
        theta = np.arctan2(2.0 * mxy, temp) / 2.0 if abs(temp) > 0 else np.pi / 4.0
        temp = np.sqrt(0.25 * temp * temp + mxy * mxy)
        mean = 0.5 * (mx2 + my2)
        return snr, f32(np.sqrt(mean + temp)), f32(np.sqrt(mean - temp)), f32(theta * 180.0 / np.pi)

    got = _error_ellipses(objects, tv, esum, emx2, emy2, emxy, flag)
    for i in range(4):
        assert tuple(g[i] for g in got) == by_hand(i), i
    assert got[0][3] == f32(1e30)  # no error summed: SNR_WIN is BIG
