"""Where each CCD of an exposure sits on the camera, for pictures of the focal plane.

Taken from the headers, in this order:

1. ``DETSEC`` (``[x1:x2,y1:y2]``), the CCD's pixels in mosaic coordinates,
   when every CCD has one (``canfar-catalogue synth`` writes it);
2. the CCD number in ``EXTNAME`` (``ccd00`` ... ``ccd39``), placed as on
   MegaCam: four rows of nine science CCDs, ``ccd00`` top left, and in the
   40-CCD mode the four extra CCDs at both ends of the two middle rows;
3. otherwise a grid nine CCDs wide, in extension order.

A box is ``(x, y, width, height)`` in mosaic pixels, y pointing up.
"""

from __future__ import annotations

import re
from typing import Sequence

from .exposure import CCD

Box = tuple[float, float, float, float]

#: MegaCam's CCD size and the gaps between CCDs (pixels).
CCD_WIDTH, CCD_HEIGHT, GAP = 2048, 4612, 80
_DETSEC = re.compile(r"\[\s*(\d+)\s*:\s*(\d+)\s*,\s*(\d+)\s*:\s*(\d+)\s*\]")
_CCD_NUMBER = re.compile(r"^ccd(\d\d)$", re.IGNORECASE)
#: The 40-CCD mode's extra CCDs: (row from the top, column), outside the 9-wide block.
_EARS = {36: (1, -1), 37: (1, 9), 38: (2, -1), 39: (2, 9)}


def layout(ccds: Sequence[CCD]) -> dict[str, Box]:
    """Each CCD's box on the focal plane, by its label (EXTNAME, or ``extension N``)."""
    labels = [ccd.extname or f"extension {ccd.ext_number}" for ccd in ccds]
    sections = [_detsec(ccd) for ccd in ccds]
    if ccds and all(sections):
        return dict(zip(labels, sections))
    numbers = [_CCD_NUMBER.match(ccd.extname or "") for ccd in ccds]
    if ccds and all(numbers) and all(int(m.group(1)) < 40 for m in numbers):
        return {label: _megacam_box(int(m.group(1))) for label, m in zip(labels, numbers)}
    return {label: _grid_box(index // 9, index % 9) for index, label in enumerate(labels)}


def _detsec(ccd: CCD) -> Box | None:
    # read from the header's text, card by card: parsing hundreds of MegaCam cards per CCD costs more
    text = ccd.header or ""
    value = next((text[i + 10 : i + 80] for i in range(0, len(text), 80) if text.startswith("DETSEC  =", i)), "")
    match = _DETSEC.search(value)
    if not match:
        return None
    x1, x2, y1, y2 = (int(v) for v in match.groups())
    return (min(x1, x2) - 1, min(y1, y2) - 1, abs(x2 - x1) + 1, abs(y2 - y1) + 1)


def _megacam_box(number: int) -> Box:
    row, column = _EARS.get(number, (number // 9, number % 9))
    return _grid_box(row, column)


def _grid_box(row: int, column: int) -> Box:
    """Row 0 at the top of a four-row mosaic."""
    return (column * (CCD_WIDTH + GAP), (3 - row) * (CCD_HEIGHT + GAP), CCD_WIDTH, CCD_HEIGHT)
