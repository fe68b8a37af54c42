"""Connected groups of the few pixels sep's segmentation leaves out, and what source-extractor made of them.

A pixel above the detection threshold belongs to a source in
source-extractor's segmentation, or to a detection that CLEAN removed (merged
into a neighbour), or to an island smaller than DETECT_MINAREA.  sep's
segmentation leaves the last two at 0.  Telling them apart needs the
8-connected groups of those pixels: a few thousand on a CCD, so they are
joined pixel to pixel instead of labelling the whole CCD.
"""

from __future__ import annotations

import numpy as np


def connected_groups(ys: np.ndarray, xs: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """8-connected groups of a sparse set of pixels (given in row-major order).

    Returns each group's size and each pixel's group.  Only a few thousand
    pixels are set on a CCD, so the groups come from joining neighbouring
    pixels' labels rather than from labelling the whole CCD.
    """
    flat = ys.astype(np.int64) * width + xs
    firsts, seconds = [], []
    for dy, dx in ((0, 1), (1, -1), (1, 0), (1, 1)):
        x2 = xs + dx
        target = flat + dy * width + dx
        where = np.minimum(np.searchsorted(flat, target), len(flat) - 1)
        hit = (flat[where] == target) & (x2 >= 0) & (x2 < width)
        firsts.append(np.flatnonzero(hit))
        seconds.append(where[hit])
    labels = _join_labels(len(flat), np.concatenate(firsts), np.concatenate(seconds))
    return np.bincount(labels, minlength=len(flat)), labels


def _join_labels(count: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Each element's group (its smallest member) given pairs ``a[k]``, ``b[k]`` in the same group.

    Each round hooks every root onto the smaller root it is paired with, then
    jumps pointers until every element points at its root; the small groups on
    a CCD need a few rounds.
    """
    labels = np.arange(count)
    while True:
        la, lb = labels[a], labels[b]
        apart = la != lb
        if not apart.any():
            return labels
        low = np.minimum(la[apart], lb[apart])
        np.minimum.at(labels, la[apart], low)
        np.minimum.at(labels, lb[apart], low)
        while True:
            jumped = labels[labels]
            if np.array_equal(jumped, labels):
                break
            labels = jumped


def cleaned_detections(above: np.ndarray, segmap: np.ndarray, minarea: int):
    """The pixels above the threshold that sep's segmentation leaves out, as ``(ys, xs, cleaned, group)``:
    ``cleaned`` marks those in a connected group of at least DETECT_MINAREA (a detection CLEAN removed),
    ``group`` numbers the groups."""
    flat = np.flatnonzero(above)
    flat = flat[segmap.ravel()[flat] == 0]
    ys, xs = np.divmod(flat, above.shape[1])
    if not len(ys):
        return ys, xs, np.zeros(0, dtype=bool), np.zeros(0, dtype=np.int64)
    sizes, groups = connected_groups(ys, xs, above.shape[1])
    return ys, xs, sizes[groups] >= minarea, groups


#: How far, in sums of the two sources' major axes, a source may clean another (source-extractor's CLEAN_ZONE).
CLEAN_ZONE = 10.0


def segmentation_with_cleaned(above: np.ndarray, segmap: np.ndarray, minarea: int, objects: np.ndarray,
                              clean_param: float) -> np.ndarray:
    """The segmentation as source-extractor writes it: the pixels of a detection that CLEAN removed are
    those of the source that removed it (sep leaves them 0).

    The source is the first, in detection order, whose CLEAN profile (a Moffat of index CLEAN_PARAM
    fitted to its filtered flux and threshold, source-extractor's model) is above its threshold at the
    detection's centre, within CLEAN_ZONE; failing that, the one whose profile is highest there.  sep
    does not say which source cleaned what, so this picks what CLEAN would find."""
    merged = segmap.astype(np.int32)
    ys, xs, cleaned, groups = cleaned_detections(above, segmap, minarea)
    ys, xs, groups = ys[cleaned], xs[cleaned], groups[cleaned]
    if not len(ys) or not len(objects):
        return merged
    ids, group_of = np.unique(groups, return_inverse=True)
    size = np.bincount(group_of).astype(np.float64)
    gx, gy = np.bincount(group_of, weights=xs) / size, np.bincount(group_of, weights=ys) / size
    a, b = objects["a"].astype(np.float64), objects["b"].astype(np.float64)
    unit_area = np.pi * a * b
    amplitude = objects["cflux"] / (2.0 * unit_area)
    with np.errstate(divide="ignore", invalid="ignore"):
        alpha = (np.power(np.maximum(amplitude / objects["thresh"], 0.0), 1.0 / clean_param) - 1.0) \
            * unit_area / objects["npix"]
    dx = gx[:, None] - objects["x"][None, :]
    dy = gy[:, None] - objects["y"][None, :]
    reach = (np.sqrt(size / np.pi)[:, None] + a[None, :]) * CLEAN_ZONE
    spread = 1.0 + alpha * (objects["cxx"] * dx * dx + objects["cyy"] * dy * dy + objects["cxy"] * dx * dy)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        profile = np.where((dx * dx + dy * dy < reach * reach) & (spread > 1.0),
                           amplitude * np.power(spread, -clean_param), -np.inf)
    over = profile > objects["thresh"][None, :]
    best = np.where(over.any(axis=1), np.argmax(over, axis=1), np.argmax(profile, axis=1))
    label = np.where(np.isfinite(profile[np.arange(len(ids)), best]), best + 1, 0).astype(np.int32)
    merged[ys, xs] = label[group_of]
    return merged
