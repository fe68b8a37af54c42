"""The pieces of measurement that are ours rather than sep's, against an independent computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import correlate

from canfar_catalogue.science import load_config
from canfar_catalogue.science.detection_filter import filtered_above

from .neighbour_rules import in_order, masked_for, measured_source


@pytest.mark.parametrize("shape", [(300, 257), (128, 64), (5, 9)])
@pytest.mark.parametrize("kernel_name", ["default.conv", "non-separable"])
def test_the_filtered_threshold_map_is_a_zero_padded_correlation(shape, kernel_name):
    if kernel_name == "default.conv":
        kernel = load_config().kernel()
    else:
        kernel = np.array([[0, 1, 0], [1, 4, 2], [0, 1, 1]], dtype=np.float32) / 10
    rng = np.random.default_rng(7)
    image = rng.normal(0.0, 10.0, shape).astype(np.float32)
    threshold = 2.0
    filtered = correlate(image.astype(np.float64), kernel.astype(np.float64), mode="constant", cval=0.0)
    expected = filtered > threshold
    got = filtered_above(image, kernel, threshold)
    assert got.shape == shape and got.dtype == bool
    differ = got != expected
    # float32 arithmetic may tip a pixel that sits on the threshold itself, nothing else
    assert np.all(np.abs(filtered[differ] - threshold) < 1e-4)
    assert expected.sum() > 0.01 * image.size


def _shifted_multiply_adds(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """The filter as _filter.c documents it, in numpy: 0.0 plus, tap after tap in row-major order, the
    zero-padded image shifted under the tap times its weight, in float32, taps of weight 0 left out;
    a separable kernel as its passes."""
    from canfar_catalogue.science.detection_filter import passes

    out = image
    for weights, height, width in passes(kernel):
        weights = weights.reshape(height, width)
        ry, rx = height // 2, width // 2
        padded = np.zeros((out.shape[0] + 2 * ry, out.shape[1] + 2 * rx), dtype=np.float32)
        padded[ry:ry + out.shape[0], rx:rx + out.shape[1]] = out
        total = np.zeros(out.shape, dtype=np.float32)
        for j in range(height):
            for i in range(width):
                if weights[j, i] != 0:
                    total += padded[j:j + out.shape[0], i:i + out.shape[1]] * weights[j, i]
        out = total
    return out


@pytest.mark.parametrize("kernel_name", ["default.conv", "non-separable", "gauss 5x5", "zero rows", "7x7", "1x1"])
def test_the_filter_is_its_shifted_multiply_adds_to_the_bit(kernel_name):
    """The C loops (one pass over a row for all its taps, the image's edges pixel by pixel) against the
    arithmetic they promise, on CCDs narrower and shorter than the kernel too, with infinities and NaN."""
    from canfar_catalogue.science.detection_filter import filtered

    rng = np.random.default_rng(11)
    kernel = {
        "default.conv": load_config().kernel(),
        "non-separable": np.array([[0, 1, 0], [1, 4, 2], [0, 1, 1]], dtype=np.float32) / 10,
        "gauss 5x5": np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]).astype(np.float32) / 256,
        "zero rows": np.array([[0, 0, 0], [0, 0, 0], [1, -2, 1]], dtype=np.float32),
        "7x7": rng.normal(0, 1, (7, 7)).astype(np.float32),
        "1x1": np.array([[0.5]], dtype=np.float32),
    }[kernel_name]
    for shape in [(64, 257), (5, 9), (1, 17), (17, 1), (2, 2), (40, 3)]:
        image = rng.normal(0.0, 10.0, shape).astype(np.float32)
        image.flat[rng.integers(image.size, size=3)] = [np.inf, -np.inf, np.nan]
        with np.errstate(invalid="ignore"):  # inf - inf: NaN, as in the C
            got, expected = filtered(image, kernel), _shifted_multiply_adds(image, kernel)
        nan = np.isnan(expected)
        assert np.array_equal(np.isnan(got), nan), shape
        assert np.array_equal(got[~nan].view(np.uint32), expected[~nan].view(np.uint32)), shape


def test_connected_groups_are_scipys_8_connected_labels():
    from scipy.ndimage import label

    from canfar_catalogue.science.segments import connected_groups

    rng = np.random.default_rng(3)
    for _ in range(200):
        height, width = rng.integers(3, 60, 2)
        mask = rng.random((height, width)) < rng.uniform(0.05, 0.6)
        ys, xs = np.nonzero(mask)
        if len(ys) == 0:
            continue
        sizes, labels = connected_groups(ys, xs, int(width))
        expected, count = label(mask, structure=np.ones((3, 3)))
        theirs = expected[ys, xs]
        assert len(np.unique(labels)) == count
        # the same partition: each of our groups is exactly one of scipy's
        pairs = np.unique(np.stack([labels, theirs]), axis=1)
        assert pairs.shape[1] == count
        assert np.array_equal(sizes[labels], np.bincount(theirs)[theirs])


def _random_apertures(rng, n, shape):
    """n ellipses of every shape (some nearly degenerate, some circles) whose boxes cross the CCD's edges."""
    from canfar_catalogue.science.photometry import KRON_NSIG, _apertures

    a = rng.uniform(0.3, 6.0, n)
    ratio = np.concatenate([rng.uniform(0.05, 1.0, n - 40), np.full(20, 1e-3), np.full(20, 1.0)])
    b = a * ratio
    theta = rng.uniform(-np.pi / 2, np.pi / 2, n)
    cos, sin = np.cos(theta), np.sin(theta)
    objects = np.zeros(n, dtype=[(k, "f8") for k in ("x", "y", "a", "b", "cxx", "cyy", "cxy")])
    objects["x"] = rng.uniform(-2, shape[1] + 2, n)
    objects["y"] = rng.uniform(-2, shape[0] + 2, n)
    quarter = rng.random(n) < 0.3  # centres on quarter pixels: mirrors that land on a pixel's edge
    objects["x"][quarter] = np.round(objects["x"][quarter] * 4) / 4
    objects["y"][quarter] = np.round(objects["y"][quarter] * 4) / 4
    objects["a"], objects["b"] = a, b
    objects["cxx"] = cos**2 / a**2 + sin**2 / b**2
    objects["cyy"] = sin**2 / a**2 + cos**2 / b**2
    objects["cxy"] = 2 * cos * sin * (1 / a**2 - 1 / b**2)
    mx, my = objects["x"].astype(np.float32), objects["y"].astype(np.float32)
    factor = np.where(rng.random(n) < 0.5, KRON_NSIG, rng.uniform(0.5, 4.0, n)).astype(np.float32)
    return _apertures(objects, mx, my, factor, 3.0, shape), mx, my


def _aperture_by_hand(mask, ap, mx, my, i, variance=None, poisson_gain=0.0, backnoise2=1.0):
    """Object i's sums written out from source-extractor's rules, one aperture at a time: its box's
    pixels given the float32 test, masked ones (blank, bad weight, or another object's above the
    threshold) skipped for the Kron moments and replaced by their mirror, or 0, for the flux."""
    ys, xs = np.mgrid[ap.ymin[i]:ap.ymax[i], ap.xmin[i]:ap.xmax[i]]
    xs, ys = xs.ravel(), ys.ravel()
    dx, dy = xs.astype(np.float32) - mx[i], ys.astype(np.float32) - my[i]
    r2 = ap.cxx[i] * dx * dx + ap.cyy[i] * dy * dy + ap.cxy[i] * dx * dy
    inside = r2 <= ap.k2[i]
    xs, ys, r2 = xs[inside], ys[inside], r2[inside]
    flat = ys * mask.width + xs
    masked = masked_for(mask, i, flat)
    value = mask.pixels[flat].astype(np.float64)
    moments = (in_order(np.sqrt(r2[~masked]) * value[~masked]), in_order(value[~masked]),
               int((~masked).sum()), int(masked.sum()))
    # a masked pixel's mirror: 2 mx in float, the rest in double
    source = measured_source(mask, i, xs, ys, float(np.float32(2 * mx[i])) + 0.49999,
                             float(np.float32(2 * my[i])) + 0.49999)
    value = np.where(source >= 0, mask.pixels[np.maximum(source, 0)].astype(np.float64), 0.0)
    pixel_variance = 0.0
    if variance is not None:
        var = np.where(source >= 0, variance[np.maximum(source, 0)].astype(np.float64), 0.0)
        poisson = np.where(value > 0, value / poisson_gain * var / backnoise2, 0.0) if poisson_gain > 0 else 0.0
        pixel_variance = in_order(var + poisson)
    return moments, (in_order(value), len(value), int(masked.sum()), pixel_variance)


@pytest.mark.parametrize("correct", [True, False])
@pytest.mark.parametrize("with_variance, weight_gain", [(False, False), (True, False), (True, True)])
def test_aperture_sums_follow_source_extractors_rules_to_the_bit(correct, with_variance, weight_gain):
    """The C loops of MAG_AUTO against the rules written out one aperture at a time: every sum the
    same double, on a CCD with neighbours, blank pixels, bad weights and apertures over its edges."""
    from canfar_catalogue.science import _aperture_sums
    from canfar_catalogue.science.photometry import NeighbourMask

    rng = np.random.default_rng(11)
    n, shape = 300, (60, 300)  # wide enough for centres whose float 2 mx + 0.49999 would round up
    image = rng.normal(0.0, 10.0, shape).astype(np.float32)
    segmap = rng.integers(0, n + 1, shape).astype(np.int32)
    segmap[rng.random(shape) < 0.5] = 0
    masking = rng.random(shape) < 0.4
    blank, bad = rng.random(shape) < 0.03, rng.random(shape) < 0.03
    mask = NeighbourMask(image, segmap, masking, blank, correct, bad=bad)
    ap, mx, my = _random_apertures(rng, n, shape)
    variance = rng.uniform(50, 150, image.size).astype(np.float32) if with_variance else None
    gain, backnoise2 = (2.5, 98.0) if with_variance else (0.0, 1.0)
    poisson_gain = gain if weight_gain else 0.0  # each pixel's own Poisson term, under WEIGHT_GAIN only
    use = rng.random(n) < 0.9

    moments = (np.zeros(n), np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64))
    _aperture_sums.kron_moments(mask.for_sums(), ap.for_sums(mx, my), moments)
    sums = (np.zeros(n), np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64), np.zeros(n))
    noise = (variance, gain, backnoise2, weight_gain)  # Noise.for_sums()
    _aperture_sums.auto_sums(mask.for_sums(), ap.for_sums(mx, my), use, noise, sums)

    replaced = 0
    for i in range(n):
        want_moments, want_sums = _aperture_by_hand(mask, ap, mx, my, i, variance, poisson_gain, backnoise2)
        assert tuple(m[i] for m in moments) == want_moments, i
        assert tuple(s[i] for s in sums) == (want_sums if use[i] else (0.0, 0, 0, 0.0)), i
        replaced += want_sums[2]
    assert moments[2].sum() > 10 * n and replaced > n  # many pixels, many of them masked


def test_aperture_sums_refuse_arrays_of_the_wrong_kind():
    """A float64 image or a box outside the CCD is an error, not a read of the wrong memory."""
    from canfar_catalogue.science import _aperture_sums
    from canfar_catalogue.science.photometry import NeighbourMask

    rng = np.random.default_rng(2)
    image = rng.normal(size=(20, 30)).astype(np.float32)
    segmap = np.zeros(image.shape, dtype=np.int32)
    ap, mx, my = _random_apertures(rng, 50, image.shape)
    out = (np.zeros(50), np.zeros(50), np.zeros(50, dtype=np.int64), np.zeros(50, dtype=np.int64))
    wide = NeighbourMask(image.astype(np.float64), segmap, None, None, True)
    with pytest.raises(TypeError, match="pixels"):
        _aperture_sums.kron_moments(wide.for_sums(), ap.for_sums(mx, my), out)
    mask = NeighbourMask(image, segmap, None, None, True)
    ap.xmax[3] = image.shape[1] + 1
    with pytest.raises(ValueError, match="aperture 3"):
        _aperture_sums.kron_moments(mask.for_sums(), ap.for_sums(mx, my), out)
    with pytest.raises(ValueError, match="r1: expected 50 items"):
        _aperture_sums.kron_moments(mask.for_sums(), ap.for_sums(mx, my), (np.zeros(49),) + out[1:])
