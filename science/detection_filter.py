"""The detection filter, as sep and source-extractor apply it to a CCD before thresholding.

sep filters inside ``sep.extract`` and does not hand the filtered image back,
yet three things need it: the CORRECT mask (pixels above the threshold in the
filtered image, :func:`filtered_above`), the detection variance under a weight
map, and the FILTERED check image (:func:`filtered`).

Out-of-CCD pixels count as zero.  A separable kernel (default.conv and the
gauss_*.conv files are) is applied as a column pass then a row pass, in
float32; the C loops (``_filter.c``) run them one output row at a time, so
no CCD-sized temporary is made.
"""

from __future__ import annotations

import numpy as np

from . import _filter


def passes(kernel: np.ndarray) -> tuple[tuple[np.ndarray, int, int], ...]:
    """The kernel as the filter's passes, ``(float32 weights, height, width)`` each: a column
    and a row when it is separable (rank 1 to a part in a million), else itself."""
    u, s, vt = np.linalg.svd(kernel.astype(np.float64))
    kh, kw = kernel.shape
    if len(s) > 1 and s[1] <= 1e-6 * s[0]:
        column = (u[:, 0] * np.sqrt(s[0])).astype(np.float32)
        row = (vt[0] * np.sqrt(s[0])).astype(np.float32)
        return (column, kh, 1), (row, 1, kw)
    return ((np.ascontiguousarray(kernel, dtype=np.float32), kh, kw),)


def filtered_above(image: np.ndarray, kernel: np.ndarray | None, threshold: float | np.ndarray) -> np.ndarray:
    """Pixels above ``threshold`` (a float for all, or a float32 map of each pixel's) in the
    filtered image; in the image itself without a filter."""
    if kernel is None:
        return image > threshold
    if np.ndim(threshold):
        threshold = np.ascontiguousarray(threshold, dtype=np.float32)
    else:  # numpy compares float32 pixels with a Python float in float32; the C loop does too
        threshold = float(threshold)
    return _correlate(image, kernel, threshold, np.empty(image.shape, dtype=bool))


def filtered(image: np.ndarray, kernel: np.ndarray | None) -> np.ndarray:
    """The whole filtered image (float32); the image itself without a filter."""
    if kernel is None:
        return image
    return _correlate(image, kernel, None, np.empty(image.shape, dtype=np.float32))


def _correlate(image: np.ndarray, kernel: np.ndarray, threshold, out: np.ndarray) -> np.ndarray:
    """``out`` filled by the C loop from ``image`` as float32 (no copy when it is one already)."""
    _filter.correlate(np.ascontiguousarray(image, dtype=np.float32), image.shape[1], passes(kernel), threshold, out)
    return out
