"""What measuring an exposure gives: each CCD's result, the exposure's, and what a catalogue says of
the run that made it.  The pipeline fills them; the catalogue writers and the QA read them, and depend
on this module rather than on the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .focal_plane import Box
from .seeing import Seeing
from .sexconfig import ExtractionConfig


@dataclass
class CCDResult:
    """What happened to one CCD; ``error`` is set when it was skipped."""

    ext_number: int
    extname: str | None
    seconds: float
    sources: np.ndarray | None = None
    background: float = float("nan")
    rms: float = float("nan")
    threshold: float = float("nan")
    error: str | None = None
    seeing: Seeing | None = None
    magnitudes: np.ndarray | None = field(default=None, repr=False)
    saturated: int = 0
    zeropoint: float = float("nan")  # of its magnitudes
    #: its extension of each check image, encoded (:func:`.check_image_files.encode_ccd`), until written
    check_images: dict[str, bytes] | None = field(default=None, repr=False)

    @property
    def count(self) -> int:
        return 0 if self.sources is None else len(self.sources)

    @property
    def label(self) -> str:
        return self.extname or f"extension {self.ext_number}"


@dataclass
class ExposureResult:
    path: Path
    ccds: list[CCDResult] = field(default_factory=list)
    seconds: float = 0.0  # measuring it, without its wait for a turn at the cores
    waited: float = 0.0  # its wait for a turn at the cores (:mod:`.turns`)
    catalogue: Path | None = None
    #: the check images written, by type
    check_images: dict[str, Path] = field(default_factory=dict)
    #: Where each CCD sits on the focal plane, by label (:func:`.focal_plane.layout`).
    layout: dict[str, Box] = field(default_factory=dict)
    #: Each CCD's header text, by extension number (what a FITS_LDAC catalogue carries).
    headers: dict[int, str] = field(default_factory=dict, repr=False)

    @property
    def failed(self) -> list[CCDResult]:
        return [c for c in self.ccds if c.error is not None]

    @property
    def count(self) -> int:
        return sum(c.count for c in self.ccds)

    def zeropoint(self, default: float) -> float:
        """The median zeropoint of the measured CCDs' magnitudes (``default`` when none was measured)."""
        values = [c.zeropoint for c in self.measured() if np.isfinite(c.zeropoint)]
        return float(np.median(values)) if values else default

    def measured(self) -> list[CCDResult]:
        """The CCDs that were measured (not skipped), in extension order."""
        return [c for c in sorted(self.ccds, key=lambda c: c.ext_number) if c.sources is not None]

    def blocks(self) -> list[np.ndarray]:
        return [c.sources for c in self.measured()]


@dataclass(frozen=True)
class Extraction:
    """What a catalogue carries besides its rows (FITS_LDAC each CCD's header and figures, FITS_1.0 the
    extraction's cards, ASCII_VOTABLE its metadata): the analysed file's name, the configuration, the result."""

    image: str
    config: ExtractionConfig
    result: ExposureResult
