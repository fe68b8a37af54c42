"""The quality of an exposure, in numbers: what an astronomer checks first.

Did a CCD go wrong, is the seeing as expected, how deep is it?  Computed from
the internal measurement (:class:`.results.ExposureResult`), whatever the
catalogue's columns and format, and kept in the provenance record beside the
catalogue (:meth:`ExposureQuality.to_dict`), so a batch can show the numbers
of exposures it skipped.

* Seeing per CCD: :mod:`.seeing` (median FWHM and ellipticity of its stars).
* The 5 sigma limiting magnitude is that of a circular aperture of diameter
  2 x FWHM: sigma = RMS x sqrt(Npix), Npix = pi FWHM^2.
* The turnover is the peak of the MAG_AUTO histogram (0.25 mag bins), where
  counts stop rising: a usual proxy for completeness.
* With MAG_ZEROPOINT 0 the magnitudes are instrumental, and say so.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .results import ExposureResult

HISTOGRAM_BIN = 0.25  # mag
LIMIT_SIGMA = 5.0


@dataclass
class CCDQuality:
    ccd: str
    ext_number: int
    sources: int
    background: float
    rms: float
    fwhm: float  # pixels
    ellipticity: float
    stars: int
    saturated: int
    seconds: float
    skipped: str | None = None


@dataclass
class ExposureQuality:
    ccds: list[CCDQuality]
    zeropoint: float
    fwhm: float
    ellipticity: float
    rms: float
    limiting_magnitude: float
    turnover_magnitude: float
    sources: int
    #: MAG_AUTO histogram: bin edges and counts
    histogram_edges: list[float] = field(default_factory=list)
    histogram_counts: list[int] = field(default_factory=list)

    @property
    def instrumental(self) -> bool:
        return self.zeropoint == 0

    @property
    def skipped(self) -> list[CCDQuality]:
        return [c for c in self.ccds if c.skipped]

    def to_dict(self) -> dict:
        """JSON-ready (NaN becomes None)."""
        return _json_ready(asdict(self))


def limiting_magnitude(rms: float, fwhm: float, zeropoint: float, sigma: float = LIMIT_SIGMA) -> float:
    """The magnitude of a ``sigma``-sigma source in an aperture of diameter 2 x ``fwhm`` (pixels)."""
    if not (rms > 0 and fwhm > 0):
        return float("nan")
    noise = rms * math.sqrt(math.pi * fwhm**2)
    return zeropoint - 2.5 * math.log10(sigma * noise)


def turnover(magnitudes: np.ndarray, width: float = HISTOGRAM_BIN) -> tuple[float, np.ndarray, np.ndarray]:
    """The centre of the fullest histogram bin, the bin edges and the counts."""
    magnitudes = magnitudes[np.isfinite(magnitudes)]
    if magnitudes.size == 0:
        return float("nan"), np.array([]), np.array([], dtype=int)
    low, high = np.floor(magnitudes.min() / width) * width, np.ceil(magnitudes.max() / width) * width + width
    edges = np.arange(low, high + width / 2, width)
    counts, edges = np.histogram(magnitudes, bins=edges)
    peak = int(np.argmax(counts))
    return float((edges[peak] + edges[peak + 1]) / 2), edges, counts


def assess(result: ExposureResult, zeropoint: float) -> ExposureQuality:
    """The quality of a measured exposure; ``zeropoint`` is the MAG_ZEROPOINT its magnitudes used."""
    ccds = []
    for c in sorted(result.ccds, key=lambda c: c.ext_number):
        seeing = c.seeing
        ccds.append(CCDQuality(
            ccd=c.label, ext_number=c.ext_number, sources=c.count, background=c.background, rms=c.rms,
            fwhm=seeing.fwhm if seeing else float("nan"), ellipticity=seeing.ellipticity if seeing else float("nan"),
            stars=seeing.stars if seeing else 0, saturated=c.saturated, seconds=c.seconds, skipped=c.error,
        ))
    fwhm = _median([c.fwhm for c in ccds])
    rms = _median([c.rms for c in ccds])
    mags = [c.magnitudes for c in result.ccds if c.magnitudes is not None]
    peak, edges, counts = turnover(np.concatenate(mags) if mags else np.array([]))
    return ExposureQuality(
        ccds=ccds, zeropoint=zeropoint, fwhm=fwhm, ellipticity=_median([c.ellipticity for c in ccds]), rms=rms,
        limiting_magnitude=limiting_magnitude(rms, fwhm, zeropoint), turnover_magnitude=peak,
        sources=sum(c.sources for c in ccds),
        histogram_edges=[round(float(e), 4) for e in edges], histogram_counts=[int(n) for n in counts],
    )


def _median(values: list[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.median(finite)) if finite else float("nan")


def _json_ready(value):
    if isinstance(value, float):
        return None if not math.isfinite(value) else round(value, 5)
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value
