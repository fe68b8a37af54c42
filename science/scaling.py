"""How an image's stored values become pixel values: BZERO, BSCALE and BLANK, in float32.

The detection code works on native float32 CCDs.  An integer CCD becomes one
in a single step, ``stored + BZERO`` then ``× BSCALE``, each in float32, with
NaN where the stored value is BLANK: no intermediate float64 or uint16 copy
as astropy's scaled ``.data`` would make.  The Rice decoder (``_rice.c``)
does the same arithmetic tile by tile as it decodes; :func:`to_float32` is
the definition it is tested against, and the path for everything else.
"""

from __future__ import annotations

from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np


@dataclass(frozen=True)
class Scaling:
    """An image header's BZERO, BSCALE and BLANK (None when it has none a stored integer can equal)."""

    zero: float = 0.0
    scale: float = 1.0
    blank: int | None = None

    @classmethod
    def of(cls, header) -> Scaling:
        return cls(float(header.get("BZERO", 0.0)), float(header.get("BSCALE", 1.0)), _blank(header.get("BLANK")))


def _blank(value) -> int | None:
    """BLANK as the integer stored values are compared with (numpy compares them with any number);
    None for a value no 64-bit integer equals (not a number, not whole, out of range), which marks nothing."""
    if isinstance(value, Integral) or isinstance(value, Real) and float(value).is_integer():
        value = int(value)
        return value if -2**63 <= value < 2**63 else None
    return None


def to_float32(stored: np.ndarray, scaling: Scaling) -> np.ndarray:
    """The pixel values of ``stored`` (integers or floats, any byte order) as a native, C-contiguous float32 array."""
    if stored.dtype.kind in "iu":
        data = np.empty(stored.shape, dtype=np.float32)
        np.add(stored, np.float32(scaling.zero), out=data, dtype=np.float32, casting="unsafe")
        if scaling.scale != 1.0:
            data *= np.float32(scaling.scale)
        if scaling.blank is not None:
            data[stored == scaling.blank] = np.nan
        return data
    data = np.asarray(stored, dtype=np.float32)
    if scaling.scale != 1.0 or scaling.zero != 0.0:
        data = data * np.float32(scaling.scale) + np.float32(scaling.zero)
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    return np.ascontiguousarray(data)
