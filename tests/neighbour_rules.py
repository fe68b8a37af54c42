"""source-extractor's neighbour masking and its sums, written out for the tests that hold the C loops to them."""

from __future__ import annotations

import numpy as np

from canfar_catalogue.science.photometry import NeighbourMask


def in_order(terms) -> float:
    """A sum taken one term after the other, as a C loop takes it (np.sum pairs terms up)."""
    return float(np.cumsum(terms)[-1]) if len(terms) else 0.0


def masked_for(mask: NeighbourMask, i: int, flat: np.ndarray) -> np.ndarray:
    """Whether each pixel ``flat`` is masked for source i: blank, a bad weight, or another source's
    above the threshold (segmentation ids are i + 1)."""
    out = np.zeros(flat.size, dtype=bool)
    for layer in (mask.blank, mask.bad):
        if layer is not None:
            out |= layer[flat]
    if mask.masking is not None:
        out |= mask.masking[flat] & (mask.seg[flat] != i + 1)
    return out


def measured_source(mask: NeighbourMask, i: int, xs, ys, m2x: float, m2y: float) -> np.ndarray:
    """The flat index each pixel's value comes from for source i: itself, its mirror through the centre
    whose doubled coordinates are m2x, m2y (a masked pixel under CORRECT), or -1 (counted as 0)."""
    flat = ys * mask.width + xs
    source = flat.copy()
    for k in np.flatnonzero(masked_for(mask, i, flat)):
        source[k] = -1
        x2, y2 = int(m2x - xs[k]), int(m2y - ys[k])
        if mask.correct and 0 <= x2 < mask.width and 0 <= y2 < mask.height:
            mirror = y2 * mask.width + x2
            if not masked_for(mask, i, np.array([mirror]))[0]:
                source[k] = mirror
    return source
