"""The pieces of measurement that are ours rather than sep's, against an independent computation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import correlate

from canfar_catalogue.science import load_config
from canfar_catalogue.science.measure import _filtered_above


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
    got = _filtered_above(image, kernel, threshold)
    assert got.shape == shape and got.dtype == bool
    differ = got != expected
    # float32 arithmetic may tip a pixel that sits on the threshold itself, nothing else
    assert np.all(np.abs(filtered[differ] - threshold) < 1e-4)
    assert expected.sum() > 0.01 * image.size


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


def _pixels_in_boxes(ap, mx, my, width):
    """Every pixel of every aperture's box given source-extractor's float32 test, one object at a time."""
    owners, flats, r2s = [], [], []
    for i in range(len(mx)):
        ys, xs = np.mgrid[ap.ymin[i] : ap.ymax[i], ap.xmin[i] : ap.xmax[i]]
        dx = xs.ravel().astype(np.float32) - mx[i]
        dy = ys.ravel().astype(np.float32) - my[i]
        r2 = ap.cxx[i] * dx * dx + ap.cyy[i] * dy * dy + ap.cxy[i] * dx * dy
        inside = r2 <= ap.k2[i]
        owners.append(np.full(inside.sum(), i))
        flats.append((ys.ravel() * width + xs.ravel())[inside])
        r2s.append(r2[inside])
    return np.concatenate(owners), np.concatenate(flats), np.concatenate(r2s)


def test_aperture_pixels_are_exactly_those_of_the_float32_test_over_the_whole_box():
    from canfar_catalogue.science.photometry import KRON_NSIG, _apertures, _pixels_inside

    rng = np.random.default_rng(11)
    n, shape = 400, (120, 100)
    a = rng.uniform(0.3, 6.0, n)
    ratio = np.concatenate([rng.uniform(0.05, 1.0, n - 40), np.full(20, 1e-3), np.full(20, 1.0)])
    b = a * ratio
    theta = rng.uniform(-np.pi / 2, np.pi / 2, n)
    cos, sin = np.cos(theta), np.sin(theta)
    objects = np.zeros(n, dtype=[(k, "f8") for k in ("x", "y", "a", "b", "cxx", "cyy", "cxy")])
    objects["x"] = rng.uniform(-2, shape[1] + 2, n)  # some apertures cross the CCD's edges
    objects["y"] = rng.uniform(-2, shape[0] + 2, n)
    objects["a"], objects["b"] = a, b
    objects["cxx"] = cos**2 / a**2 + sin**2 / b**2
    objects["cyy"] = sin**2 / a**2 + cos**2 / b**2
    objects["cxy"] = 2 * cos * sin * (1 / a**2 - 1 / b**2)
    mx, my = objects["x"].astype(np.float32), objects["y"].astype(np.float32)
    for factor in (np.float32(KRON_NSIG), rng.uniform(0.5, 4.0, n).astype(np.float32)):
        ap = _apertures(objects, mx, my, factor, 3.0, shape)
        owner, flat, r2 = _pixels_inside(ap, mx, my, shape[1], 0, n)
        want_owner, want_flat, want_r2 = _pixels_in_boxes(ap, mx, my, shape[1])
        assert len(owner) > 10 * n
        assert np.array_equal(owner, want_owner) and np.array_equal(flat, want_flat)
        assert np.array_equal(r2, want_r2)  # the same float32 value, bit for bit


@pytest.mark.parametrize("limit", [1, 7, 100, 5000])
def test_box_pixels_bands_a_large_box_and_keeps_every_pixel_in_order(limit):
    """A box larger than a run's limit comes in bands of rows: the same pixels, in the same order, with
    no run much larger than the limit (a saturated star's window once took 300 MB in one run)."""
    from canfar_catalogue.science.photometry import box_pixels

    rng = np.random.default_rng(5)
    xmin, ymin = rng.integers(0, 50, 40), rng.integers(0, 50, 40)
    xmax, ymax = xmin + rng.integers(0, 30, 40), ymin + rng.integers(0, 300, 40)
    xmax[3] = xmin[3]  # an empty box
    want = [(i, x, y) for i in range(40) for y in range(ymin[i], ymax[i]) for x in range(xmin[i], xmax[i])]
    runs = list(box_pixels(xmin, xmax, ymin, ymax, limit))
    got = list(zip(*(np.concatenate(parts).tolist() for parts in zip(*runs))))
    assert got == want
    widest = int((xmax - xmin).max())  # a band holds at least one row
    assert max(len(owner) for owner, _, _ in runs) < 2 * limit + widest
