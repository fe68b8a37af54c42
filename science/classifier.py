"""CLASS_STAR: source-extractor's star/galaxy neural network.

The network is read from a ``.nnw`` file (STARNNW_NAME; ``config/default.nnw``
is Debian's).  It takes ten inputs per source, as source-extractor's
``analyse.c`` builds them:

* the log of the source's area above eight isophotes, in units of the seeing
  disc's (SEEING_FWHM / pixel scale)² — the isophotes are spaced
  geometrically from the analysis threshold to the peak, and an empty one
  counts as 0.01;
* in second place, the log of the peak over the analysis threshold;
* last, the log of SEEING_FWHM (arcsec).

Each layer is ``sigmoid(bias + weights · previous)``; the output is then
un-scaled, giving 1 for a point source and 0 for an extended one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import ConfigError

NISO = 8


@dataclass(frozen=True)
class Network:
    """A feed-forward network as a ``.nnw`` file describes it."""

    sizes: tuple[int, ...]
    inbias: np.ndarray
    inscale: np.ndarray
    weights: tuple[np.ndarray, ...]  # layer l: (sizes[l+1], sizes[l])
    biases: tuple[np.ndarray, ...]
    outbias: np.ndarray
    outscale: np.ndarray

    @classmethod
    def from_numbers(cls, numbers: tuple[float, ...]) -> "Network":
        """The network from the numbers of a ``.nnw`` file, in file order (see :func:`read_nnw`)."""
        values = list(numbers)
        count = int(values.pop(0))
        sizes = tuple(int(values.pop(0)) for _ in range(count))

        def take(n: int) -> np.ndarray:
            taken = np.array(values[:n], dtype=np.float64)
            del values[:n]
            if len(taken) != n:
                raise ValueError("the file ends early")
            return taken

        inbias, inscale = take(sizes[0]), take(sizes[0])
        weights, biases = [], []
        for inputs, outputs in zip(sizes, sizes[1:]):
            rows = take(outputs * (inputs + 1)).reshape(outputs, inputs + 1)  # a line: weights, then bias
            weights.append(rows[:, :inputs])
            biases.append(rows[:, inputs])
        outbias, outscale = take(sizes[-1]), take(sizes[-1])
        if values:
            raise ValueError(f"{len(values)} numbers left over after the output scale")
        return cls(sizes, inbias, inscale, tuple(weights), tuple(biases), outbias, outscale)

    def respond(self, inputs: np.ndarray) -> np.ndarray:
        """The outputs for each row of ``inputs`` (sources x sizes[0])."""
        layer = inputs * self.inscale + self.inbias
        for weights, bias in zip(self.weights, self.biases):
            layer = 1.0 / (1.0 + np.exp(-(layer @ weights.T + bias)))
        return (layer - self.outbias) / self.outscale


def read_nnw(path: Path) -> tuple[float, ...]:
    """The numbers of a ``.nnw`` file in order, checked to make a 10-input, 1-output network.

    A ConfigError names the file and what is wrong with it."""
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise ConfigError(f"{path}: neural network file (STARNNW_NAME) not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the neural network file (STARNNW_NAME): {exc}") from None
    if not lines or not lines[0].startswith("NNW"):
        raise ConfigError(f"{path}: not a neural network file (the first line must start with NNW)")
    words = [word for line in lines[1:] if not line.lstrip().startswith("#") for word in line.split()]
    try:
        numbers = tuple(float(word) for word in words)
        network = Network.from_numbers(numbers)
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"{path}: not a readable neural network: {exc}") from None
    if network.sizes[0] != 2 + NISO or network.sizes[-1] != 1:
        raise ConfigError(
            f"{path}: CLASS_STAR needs a network with {2 + NISO} inputs and 1 output, this one has "
            f"{network.sizes[0]} and {network.sizes[-1]}"
        )
    return numbers


def isophotal_areas(data: np.ndarray, segmap: np.ndarray, objects: np.ndarray,
                    threshold: float | np.ndarray) -> np.ndarray:
    """Each source's pixels above its eight isophotes, (sources x 8), as ``examineiso`` counts them:
    a pixel counts for isophote k when it lies above isophotes 0..k.  ``threshold`` is the analysis
    threshold, one for all or each source's (under a variance map)."""
    count = len(objects)
    peak = objects["peak"].astype(np.float64)
    thresh = np.broadcast_to(np.asarray(threshold, dtype=np.float32), peak.shape)[:, None]
    steps = np.arange(NISO) / NISO
    with np.errstate(divide="ignore", invalid="ignore"):
        levels = np.where(
            ((peak[:, None] > 0) & (thresh > 0)), thresh * np.power(peak[:, None] / thresh, steps), 0.0
        ).astype(np.float32)
    flat = segmap.ravel()
    where = np.flatnonzero(flat)
    source = flat[where].astype(np.int64) - 1
    value = data.ravel()[where]
    areas = np.zeros((count, NISO), dtype=np.int64)
    still = np.ones(len(where), dtype=bool)
    for k in range(NISO):
        still &= value > levels[source, k]
        areas[:, k] = np.bincount(source[still], minlength=count)
    return areas


def class_star(
    network: Network,
    areas: np.ndarray,
    peak: np.ndarray,
    threshold: float | np.ndarray,
    seeing_fwhm: float,
    pixel_scale: float,
) -> np.ndarray:
    """CLASS_STAR of each source from its :func:`isophotal_areas` and peak, the analysis threshold
    (ADU), SEEING_FWHM (arcsec) and the pixel scale (arcsec/pixel)."""
    fac2 = (seeing_fwhm / pixel_scale) ** 2
    scaled = np.where(areas > 0, areas / fac2, 0.01)
    with np.errstate(divide="ignore", invalid="ignore"):
        if np.ndim(threshold) == 0:
            peak_ratio = (np.log10(np.where(peak > 0, peak / threshold, 0.1)) if threshold > 0
                          else np.full(len(peak), -1.0))
        else:  # each source's own (under a variance map)
            peak_ratio = np.where(threshold > 0, np.log10(np.where(peak > 0, peak / threshold, 0.1)), -1.0)
    inputs = np.column_stack(
        [np.log10(scaled[:, 0]), peak_ratio, np.log10(scaled[:, 1:]), np.full(len(peak), np.log10(seeing_fwhm))]
    )
    return network.respond(inputs)[:, 0].astype(np.float32)
