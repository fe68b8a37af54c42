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

    from canfar_catalogue.science.measure import _connected_groups

    rng = np.random.default_rng(3)
    for _ in range(200):
        height, width = rng.integers(3, 60, 2)
        mask = rng.random((height, width)) < rng.uniform(0.05, 0.6)
        ys, xs = np.nonzero(mask)
        if len(ys) == 0:
            continue
        sizes, labels = _connected_groups(ys, xs, int(width))
        expected, count = label(mask, structure=np.ones((3, 3)))
        theirs = expected[ys, xs]
        assert len(np.unique(labels)) == count
        # the same partition: each of our groups is exactly one of scipy's
        pairs = np.unique(np.stack([labels, theirs]), axis=1)
        assert pairs.shape[1] == count
        assert np.array_equal(sizes[labels], np.bincount(theirs)[theirs])
