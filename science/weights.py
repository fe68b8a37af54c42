"""Weight maps: each pixel's own noise, as source-extractor reads ``WEIGHT_TYPE``.

A weight map goes with the exposure CCD by CCD (``WEIGHT_IMAGE``) and becomes a
variance map (``weight_to_var`` in weight.c):

===========  =====================================================================
WEIGHT_TYPE  variance of a pixel
===========  =====================================================================
MAP_WEIGHT   s² / w, where w > 0; "infinite" (1e30) where w <= 0
MAP_VAR      s² · v
MAP_RMS      r²
BACKGROUND   the background RMS map², no file needed
===========  =====================================================================

``s`` rescales relative weights to the image's noise (``RESCALE_WEIGHTS Y``, the
default; back.c's ``makeback``): the median, over the background meshes, of the
image's background RMS over the square root of the variance map's background.
With ``RESCALE_WEIGHTS N``, ``s`` is 1 and the background RMS is divided by it instead.

Bad pixels are first filled in, line by line, as source-extractor's ``interpolate``
(interpolate.c) does with ``INTERP_TYPE ALL`` (the default): image and variance from
the last good pixel to their left when it is at most ``INTERP_MAXXLAG`` pixels away,
else from the pixel above when that one is at most ``INTERP_MAXYLAG`` lines from a
good one.  A filled-in pixel is a good pixel from then on.  ``INTERP_TYPE NONE`` fills
nothing in; VAR_ONLY is refused, as Debian's source-extractor 2.25 stops on it
("WEIGHT_IMAGE missing", measured), leaving nothing to match.

A pixel whose variance still reaches ``WEIGHT_THRESH`` (converted to a variance with
``s`` = 1, as source-extractor converts it before measuring ``s``; default 0 for
MAP_WEIGHT, that is w <= 0, and none for the others) is bad: left out of the
background, never detected, and measured as a neighbour's pixel is (mirrored under
MASK_TYPE CORRECT).  Elsewhere the variance sets the detection threshold,
``DETECT_THRESH · sqrt(filtered variance)`` (the variance convolved with the same
normalised filter as the image), and the error of every flux: a pixel replaced by
its mirror takes the mirror's variance, one replaced by 0 has none.  With
``WEIGHT_GAIN Y`` (the default) a positive pixel adds ``value / GAIN · variance /
RMS²`` to its flux's variance, instead of the flux adding ``flux / GAIN``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sep

#: source-extractor's BIG: the variance of a pixel that has none to give.
BIG = np.float32(1e30)
#: The WEIGHT_TYPE values implemented (NONE aside); all but BACKGROUND read WEIGHT_IMAGE.
WEIGHT_TYPES = ("MAP_WEIGHT", "MAP_VAR", "MAP_RMS", "BACKGROUND")
FROM_FILE = ("MAP_WEIGHT", "MAP_VAR", "MAP_RMS")


def default_threshold(weight_type: str) -> float | None:
    """WEIGHT_THRESH when none is given: 0 for weights (w <= 0 is bad), none for the others."""
    return 0.0 if weight_type == "MAP_WEIGHT" else None


def to_variance(weight_type: str, pixels: np.ndarray) -> np.ndarray:
    """A weight-map CCD as a variance map (float32, before rescaling)."""
    pixels = np.asarray(pixels, dtype=np.float32)
    if weight_type == "MAP_WEIGHT":
        variance = np.full(pixels.shape, BIG, dtype=np.float32)
        positive = pixels > 0
        np.divide(np.float32(1.0), pixels, out=variance, where=positive)
        return variance
    if weight_type == "MAP_VAR":
        return pixels.copy()
    if weight_type == "MAP_RMS":
        return np.where(pixels < BIG, pixels * pixels, pixels).astype(np.float32)
    raise ValueError(f"{weight_type} has no weight file")


def from_weight_map(weight_type: str, pixels: np.ndarray, threshold: float | None) -> tuple[np.ndarray, np.float32]:
    """A weight-map CCD as a variance map (non-finite values bad) and the variance from which a
    pixel is bad (WEIGHT_THRESH, None for the type's default)."""
    variance = to_variance(weight_type, pixels)
    variance[~np.isfinite(variance)] = BIG
    return variance, variance_threshold(weight_type, threshold if threshold is not None else default_threshold(weight_type))


def rescale(weight_type: str, variance: np.ndarray, factor: float) -> None:
    """Scale a variance map by ``factor``² in place, as ``weight_to_var`` does with the measured
    factor: a weight of 0 stays "infinite"; a variance map is scaled whole, its "infinite" pixels
    too (which then no longer reach BIG, so are not bad: measured against source-extractor)."""
    square = np.float32(factor * factor)
    if weight_type == "MAP_WEIGHT":
        variance[variance < BIG] *= square
    else:
        variance *= square


def variance_threshold(weight_type: str, threshold: float | None) -> np.float32:
    """WEIGHT_THRESH as a variance, converted as source-extractor does before rescaling."""
    if threshold is None:
        return BIG
    if weight_type == "MAP_WEIGHT":
        return np.float32(1.0) / np.float32(threshold) if threshold > 0 else BIG
    if weight_type == "MAP_RMS":
        return np.float32(threshold) * np.float32(threshold)
    return np.float32(threshold)


def interpolate(data: np.ndarray, variance: np.ndarray, limit: np.float32, xlag: int, ylag: int) -> np.ndarray:
    """Fill in bad pixels (variance >= ``limit``) in place, as source-extractor's ``interpolate``
    does while it reads the lines in; returns the pixels left bad."""
    bad = variance >= limit
    rows = np.flatnonzero(bad.any(axis=1))
    if rows.size == 0:
        return bad
    width = data.shape[1]
    ytimeout = np.zeros(width, dtype=np.int64)
    previous = -2
    for y in rows.tolist():
        if y > 0 and previous != y - 1:  # a line without bad pixels before this one reset every column
            ytimeout[:] = ylag
        previous = y
        row_bad = bad[y]
        good = ~row_bad
        starts = np.flatnonzero(row_bad & ~np.r_[False, row_bad[:-1]])
        ends = np.flatnonzero(row_bad & ~np.r_[row_bad[1:], False]) + 1
        for start, end in zip(starts.tolist(), ends.tolist()):
            vertical_from = start
            if start > 0:  # copies of the good pixel to the left, up to xlag of them
                vertical_from = min(end, start + xlag)
                variance[y, start:vertical_from] = variance[y, start - 1]
                data[y, start:vertical_from] = data[y, start - 1]
            if vertical_from < end and y > 0:  # then the line above, while its columns have not timed out
                columns = np.arange(vertical_from, end)
                columns = columns[ytimeout[columns] > 0]
                ytimeout[columns] -= 1
                variance[y, columns] = variance[y - 1, columns]
                data[y, columns] = data[y - 1, columns]
        ytimeout[good] = ylag
    return variance >= limit


def _segments_x(width: int, mesh: int, nodes: int) -> np.ndarray:
    """Which spline segment (between nodes k and k+1) each pixel of a line is interpolated in,
    as source-extractor's ``subbackline`` walks a line: the next segment starts half a mesh in."""
    column = np.arange(width)
    within, index = column % mesh, column // mesh
    segment = np.where((within >= mesh // 2) | (index == 0), index, index - 1)
    return np.clip(segment, 0, max(nodes - 2, 0))


def _segments_y(height: int, mesh: int, nodes: int) -> np.ndarray:
    """The same along a column: ``(int)(y / mesh - 0.5)``, the last segment extended."""
    return np.clip(np.trunc(np.arange(height) / mesh - 0.5).astype(np.int64), 0, max(nodes - 2, 0))


def _at_nodes(values: np.ndarray, positions: np.ndarray, segments: np.ndarray, nodes: int) -> np.ndarray:
    """Values at the nodes (axis 0) of a map sampled on pixels: inside a segment the spline is one
    cubic, so the four pixels of the node's segment nearest it give its value exactly."""
    out = np.empty((nodes,) + values.shape[1:])
    pixels = np.arange(len(values))
    for node in range(nodes):
        position = positions[node]
        segment = min(node, max(nodes - 2, 0))
        candidates = pixels[segments == segment]
        nearest = np.sort(candidates[np.argsort(np.abs(candidates - position), kind="stable")[:4]])
        if len(nearest) < 4:  # a map of fewer than four pixels a segment: take the nearest
            out[node] = values[nearest[np.argmin(np.abs(nearest - position))]]
            continue
        weights = np.array([np.prod([(position - other) / (sample - other) for other in nearest if other != sample])
                            for sample in nearest])
        out[node] = np.tensordot(weights, values[nearest].astype(np.float64), axes=1)
    return out


def mesh_nodes(background_map: np.ndarray, mesh_w: int, mesh_h: int) -> np.ndarray:
    """The background meshes' own values, recovered from the bicubic spline sep interpolates
    between them (as source-extractor's ``subbackline``): nodes sit at ``mesh_h·(j + ½)`` along y
    and ``mesh_w·(i + ½) - ½`` along x."""
    height, width = background_map.shape
    ny, nx = -(-height // mesh_h), -(-width // mesh_w)
    rows = _at_nodes(background_map, mesh_h * (np.arange(ny) + 0.5), _segments_y(height, mesh_h, ny), ny)
    nodes = _at_nodes(rows.T, mesh_w * (np.arange(nx) + 0.5) - 0.5, _segments_x(width, mesh_w, nx), nx)
    return nodes.T


def scale_factor(rms_map: np.ndarray, variance: np.ndarray, bad: np.ndarray | None, mesh_options: dict) -> float:
    """``s``: the median over the meshes of the image's background RMS over the root of the
    variance map's background, measured as source-extractor measures both (bad pixels left out)."""
    background = sep.Background(variance, mask=bad, **mesh_options)
    var_nodes = mesh_nodes(background.back(), mesh_options["bw"], mesh_options["bh"])
    rms_nodes = mesh_nodes(rms_map, mesh_options["bw"], mesh_options["bh"])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(var_nodes > 0, rms_nodes / np.sqrt(np.where(var_nodes > 0, var_nodes, 1.0)), 0.0)
    ratio = ratio[ratio > 0].astype(np.float32)
    return float(np.median(ratio)) if ratio.size else 1.0


@dataclass(frozen=True)
class Noise:
    """What the error columns add for each measured pixel, with or without a variance map."""

    #: the background RMS (ADU): every pixel's noise without a variance map
    backsig: float
    gain: float
    #: each pixel's variance (flat float32), or None
    variance: np.ndarray | None = None
    #: WEIGHT_GAIN: with a variance map, the Poisson term is per pixel and scaled by its variance
    weight_gain: bool = False

    @property
    def backnoise2(self) -> float:
        return float(np.float32(self.backsig) * np.float32(self.backsig))

    @property
    def per_pixel_gain(self) -> bool:
        return self.variance is not None and self.weight_gain

    def for_sums(self) -> tuple:
        """The noise as the C loops take it (``_source_pixels.h``): (variance, gain, backnoise2,
        per_pixel_gain)."""
        return (self.variance, self.gain, self.backnoise2, self.per_pixel_gain)

    def pixel_poisson(self, value: np.ndarray, var: np.ndarray | float) -> np.ndarray | float:
        """The Poisson term each pixel adds itself (WEIGHT_GAIN with a variance map), else 0."""
        if not self.per_pixel_gain or self.gain <= 0:
            return 0.0
        return np.where(value > 0, value / self.gain * var / self.backnoise2, 0.0)

    def flux_poisson(self, flux: np.ndarray) -> np.ndarray | float:
        """The Poisson term a flux adds as a whole (when pixels do not add their own)."""
        if self.per_pixel_gain or self.gain <= 0:
            return 0.0
        return np.where(flux > 0, flux / self.gain, 0.0)
