"""VIGNET(w,h): the pixels around each source, as source-extractor cuts them (``copyimage``).

A ``w`` x ``h`` stamp of the background-subtracted CCD whose pixel
``(w // 2, h // 2)`` is the source's pixel, ``(int)(x + 0.49999)``,
``(int)(y + 0.49999)`` (0-based).  Pixels outside the CCD, and pixels masked
for the source (its neighbours' under MASK_TYPE CORRECT, blank ones), hold
-1e30, source-extractor's -BIG, which PSFEx reads as "no data".  Pixels a weight map
marks bad keep their values (filled in, when they were): source-extractor copies the
image as it holds it.
"""

from __future__ import annotations

import numpy as np

from .photometry import NeighbourMask

#: What source-extractor writes for a pixel it has no value for.
NO_DATA = np.float32(-1e30)


def vignets(mask: NeighbourMask, objects: np.ndarray, width: int, height: int) -> np.ndarray:
    """Every source's stamp, shaped (sources, height, width), float32."""
    n = len(objects)
    ix = np.trunc(objects["x"].astype(np.float64) + 0.49999).astype(np.int64)
    iy = np.trunc(objects["y"].astype(np.float64) + 0.49999).astype(np.int64)
    x = ix[:, None, None] - width // 2 + np.arange(width)[None, None, :]
    y = iy[:, None, None] - height // 2 + np.arange(height)[None, :, None]
    x, y = np.broadcast_arrays(x, y)
    inside = (x >= 0) & (x < mask.width) & (y >= 0) & (y < mask.height)
    owner = np.broadcast_to(np.arange(n)[:, None, None], inside.shape)[inside]
    flat = y[inside] * mask.width + x[inside]
    stamps = np.full((n, height, width), NO_DATA, dtype=np.float32)
    values = mask.pixels[flat].astype(np.float32)
    values[mask.masked(owner, flat, with_bad_weights=False)] = NO_DATA  # bad-weight pixels show their values there
    stamps[inside] = values
    return stamps
