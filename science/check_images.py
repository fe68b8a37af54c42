"""Check images: the maps source-extractor writes beside a catalogue when CHECKIMAGE_TYPE asks.

Each is made from what measuring a CCD computes anyway (the background mesh
and its interpolation, the background-subtracted image, the segmentation, the
Kron ellipses), so asking for one adds the cost of filling its pixels and no
second measurement.  Pixel for pixel they follow Debian's source-extractor 2.25
(``tests/test_check_images.py`` compares them):

- ``BACKGROUND``, ``BACKGROUND_RMS``, ``-BACKGROUND``: sep's interpolated mesh,
  the same spline as source-extractor's, so identical;
- ``MINIBACKGROUND``, ``MINIBACK_RMS``: the mesh itself, one pixel per
  BACK_SIZE cell, with the WCS scaled to it.  sep does not hand its mesh back,
  so it is recovered from the interpolated map by least squares through the
  interpolation's own (linear) weights, :func:`interpolation_weights`;
- ``FILTERED``: the background-subtracted image convolved with the detection filter;
- ``SEGMENTATION``: each pixel's source NUMBER (restarting on each CCD), 0 for
  sky, with the detections CLEAN merged into a source under its NUMBER, as
  source-extractor relabels them (:func:`.segments.segmentation_with_cleaned`);
- ``OBJECTS``: the background-subtracted pixels of the segmentation's sources, 0 elsewhere;
  ``-OBJECTS``: the background-subtracted image with what source-extractor
  blanks set to 0: every pixel above the detection threshold, less the
  detections CLEAN removed (it pastes them back);
- ``APERTURES``: ``-BACKGROUND`` with the outline of each source's Kron ellipse
  (and of its PHOT_APERTURES circles when an ``_APER`` column asks for them)
  added at 30 times the background RMS, dotted for a source with neighbours.
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from typing import Callable

import numpy as np
from astropy.io import fits

from .errors import ConfigError
from .segments import segmentation_with_cleaned

#: The types made here, and what each holds.
TYPES: dict[str, str] = {
    "BACKGROUND": "the background map",
    "BACKGROUND_RMS": "the background noise map",
    "MINIBACKGROUND": "the background mesh, one pixel per BACK_SIZE cell",
    "MINIBACK_RMS": "the background noise mesh, one pixel per BACK_SIZE cell",
    "-BACKGROUND": "the background-subtracted image",
    "FILTERED": "the background-subtracted image convolved with the detection filter",
    "OBJECTS": "the detected sources' pixels, 0 elsewhere",
    "-OBJECTS": "the background-subtracted image with the sources' pixels set to 0",
    "SEGMENTATION": "each pixel's source NUMBER, 0 for sky",
    "APERTURES": "the background-subtracted image with each source's Kron ellipse drawn",
}
#: source-extractor's other types: each needs PSF or model fitting (or ASSOC), which are not done here.
NOT_MADE = ("IDENTICAL", "ASSOC", "PSFPROTOS", "-PSFPROTOS", "PROFILES", "-PROFILES", "SPHEROIDS", "-SPHEROIDS",
            "DISKS", "-DISKS", "MODELS", "-MODELS", "PATTERNS", "MAPSOM", "OTHER", "MASK", "-MASK")
#: Every outline in APERTURES is this many times the CCD's background RMS (source-extractor's overlay).
OVERLAY_SIGMAS = 30.0
#: Cards of the CCD's header that would be wrong on a check image: scaling, checksums of other data.
_STALE = ("CHECKSUM", "DATASUM", "BZERO", "BSCALE", "BLANK", "ZIMAGE", "ZQUANTIZ", "ZDITHER0")
#: How a ``.fz`` name compresses each type, chosen by measuring one full-size CCD (bench/RESULTS.md):
#: - SEGMENTATION: Rice, without loss (29 times smaller);
#: - the maps that are the noisy image itself: Rice, quantised at 1/16 of each row's noise with zeros kept
#:   exact (SUBTRACTIVE_DITHER_2, seeded from the data, so the same map gives the same file).  They are
#:   4.4-4.9 times smaller, at most 0.04 sigma off, in a third of the time; without loss they would shrink
#:   by 1.25 at 2.4 s of a core per CCD, more than measuring the CCD costs;
#: - the smooth and the sparse maps: GZIP with shuffled bytes, without loss.  A quantiser set from their
#:   own noise saves nothing on a smooth map and, on OBJECTS' sea of zeros, misjudges the noise (35 ADU off).
#: A ``.fits`` name writes any type without compression, exactly as source-extractor does.
_EXACT = dict(compression_type="GZIP_2", quantize_level=0.0)
_NOISY = dict(compression_type="RICE_1", quantize_level=16.0, quantize_method=2, dither_seed=-1)
COMPRESSION = {"SEGMENTATION": dict(compression_type="RICE_1"),
               **{kind: _NOISY for kind in ("-BACKGROUND", "FILTERED", "-OBJECTS", "APERTURES")},
               **{kind: _EXACT for kind in ("BACKGROUND", "BACKGROUND_RMS", "MINIBACKGROUND", "MINIBACK_RMS", "OBJECTS")}}


def requested(types_value: str, names_value: str) -> tuple[tuple[str, str], ...]:
    """CHECKIMAGE_TYPE and CHECKIMAGE_NAME (comma lists, as source-extractor reads them) as
    ``((type, name), ...)``; ``()`` for NONE.  A type not made here is refused by name."""
    types = [t.strip().upper() for t in types_value.split(",") if t.strip()]
    if types in ([], ["NONE"]):
        return ()
    names = [n.strip() for n in names_value.split(",") if n.strip()]
    for kind in types:
        if kind in NOT_MADE:
            raise ConfigError(f"CHECKIMAGE_TYPE {kind}: this check image needs PSF or model fitting, which is not "
                              f"done here; the types made are {', '.join(TYPES)}")
        if kind not in TYPES:
            raise ConfigError(f"CHECKIMAGE_TYPE {kind!r} is not a check-image type; use NONE or any of "
                              f"{', '.join(TYPES)}")
    if len(names) != len(types):
        raise ConfigError(f"CHECKIMAGE_TYPE names {len(types)} type(s) and CHECKIMAGE_NAME {len(names)} file(s); "
                          "give one name per type, in the same order (source-extractor refuses this too)")
    for seen, name in enumerate(names):
        if name in names[:seen]:
            raise ConfigError(f"CHECKIMAGE_NAME {name} is given for two check images; give each its own file")
    return tuple(zip(types, names))


def is_compressed(name: str) -> bool:
    """A ``.fz`` name is written tile-compressed; any other name as source-extractor writes it."""
    return str(name).endswith(".fz")


@dataclass
class CheckSource:
    """What measuring one CCD computed that its check images are made from.

    ``image`` is the background-subtracted CCD; ``background`` sep's
    Background; ``level`` the constant subtracted instead of its map under
    BACK_TYPE MANUAL (None otherwise); ``segmap`` sep's segmentation;
    ``above`` gives the pixels above the detection threshold in the filtered
    image, and ``blanked`` those less the detections CLEAN removed (MASK_TYPE
    CORRECT's mask, already made under CORRECT), each computed only if a
    check image asks; ``kron`` the KRON_RADIUS
    column and ``crowded`` whether each source has neighbours (FLAGS bit 1).
    """

    image: np.ndarray
    background: object
    level: float | None
    back_size: tuple[int, int]
    rms: float
    segmap: np.ndarray
    above: Callable[[], np.ndarray]
    blanked: Callable[[], np.ndarray]
    minarea: int
    clean_param: float
    filtered: Callable[[], np.ndarray]
    objects: np.ndarray
    kron: np.ndarray
    crowded: np.ndarray
    apertures: tuple[float, ...]

    def make(self, kind: str) -> np.ndarray:
        """The CCD's pixels of check image ``kind``."""
        if kind == "BACKGROUND":
            if self.level is not None:
                return np.full(self.image.shape, self.level, dtype=np.float32)
            return self.background.back(dtype=np.float32)
        if kind == "BACKGROUND_RMS":
            return self.background.rms(dtype=np.float32)
        if kind in ("MINIBACKGROUND", "MINIBACK_RMS"):
            interpolated = (self.background.back if kind == "MINIBACKGROUND" else self.background.rms)(dtype=np.float64)
            return mesh(interpolated, self.back_size)
        if kind == "-BACKGROUND":
            return self.image.copy()
        if kind == "FILTERED":
            return np.array(self.filtered(), dtype=np.float32, copy=True)
        if kind == "OBJECTS":
            return np.where(self.segmentation > 0, self.image, np.float32(0.0))
        if kind == "-OBJECTS":  # source-extractor blanks what is above the threshold; it pastes CLEANed detections back
            return np.where(self.blanked() | (self.segmap > 0), np.float32(0.0), self.image)
        if kind == "SEGMENTATION":
            return self.segmentation
        if kind == "APERTURES":
            return self._apertures()
        raise ValueError(f"no check image {kind!r}")

    @functools.cached_property
    def segmentation(self) -> np.ndarray:
        """Each pixel's source NUMBER, with the detections CLEAN merged into a source (:func:`segmentation_with_cleaned`)."""
        return segmentation_with_cleaned(self.above(), self.segmap, self.minarea, self.objects, self.clean_param)

    def _apertures(self) -> np.ndarray:
        drawn = self.image.copy()
        overlay = np.float32(OVERLAY_SIGMAS * self.rms)
        x, y = self.objects["x"], self.objects["y"]
        for diameter in self.apertures:
            radius = np.full(len(x), diameter / 2.0)
            add_outlines(drawn, *ellipse_points(x, y, radius, radius, np.zeros(len(x))), np.zeros(len(x), bool),
                         overlay)
        kron = self.kron.astype(np.float64)
        theta = np.degrees(self.objects["theta"]).astype(np.float32).astype(np.float64)
        add_outlines(drawn, *ellipse_points(x, y, self.objects["a"] * kron, self.objects["b"] * kron, theta),
                     self.crowded, overlay)
        return drawn


def header_for(kind: str, ccd_header: fits.Header, back_size: tuple[int, int]) -> fits.Header:
    """The CCD's header as the check image's extension carries it: without cards that describe the
    CCD's stored pixels (scaling, checksums), and for a mesh with the WCS scaled to a pixel per cell."""
    header = ccd_header.copy()
    for key in _STALE:
        header.remove(key, ignore_missing=True, remove_all=True)
    if kind in ("MINIBACKGROUND", "MINIBACK_RMS"):
        bw, bh = back_size
        for axis, size in ((1, bw), (2, bh)):
            if f"CRPIX{axis}" in header:
                header[f"CRPIX{axis}"] = (header[f"CRPIX{axis}"] - 0.5) / size + 0.5
            if f"CDELT{axis}" in header:
                header[f"CDELT{axis}"] = header[f"CDELT{axis}"] * size
            for row in (1, 2):  # CDi_j scales with the size of axis j
                if f"CD{row}_{axis}" in header:
                    header[f"CD{row}_{axis}"] = header[f"CD{row}_{axis}"] * size
    return header


def encode(kind: str, pixels: np.ndarray | None, header: fits.Header, compressed: bool) -> bytes:
    """One CCD's extension of a check image, as the bytes it takes in the file (header and padded data).
    ``pixels`` None writes the header alone: a CCD that could not be measured keeps its place."""
    if pixels is None:
        hdu: fits.ImageHDU | fits.CompImageHDU = fits.ImageHDU(header=header)
    elif compressed:
        hdu = fits.CompImageHDU(pixels, header=header, **COMPRESSION[kind])
    else:
        hdu = fits.ImageHDU(pixels, header=header)
    buffer = io.BytesIO()
    primary = fits.PrimaryHDU()
    fits.HDUList([primary, hdu]).writeto(buffer)
    return buffer.getvalue()[len(primary.header.tostring()):]


def primary(extensions: int) -> bytes:
    """The file's primary HDU: no data, and NEXTEND, as source-extractor writes it for a multi-extension input."""
    header = fits.PrimaryHDU().header
    header["NEXTEND"] = (extensions, "Number of extensions")
    return header.tostring().encode("ascii")


# --- the background mesh, recovered from its interpolation --------------------------------------------


def mesh(interpolated: np.ndarray, back_size: tuple[int, int]) -> np.ndarray:
    """The mesh values (float32, one per BACK_SIZE cell) that sep interpolated into ``interpolated``.

    The interpolation is linear in the mesh values and separable, ``map = Wy · mesh · Wxᵀ``, so the
    mesh is the least-squares solution of that system, exact to the map's float rounding."""
    height, width = interpolated.shape
    bw, bh = back_size
    wx = interpolation_weights(width, bw, first_node=(bw - 1) / 2.0)
    wy = interpolation_weights(height, bh, first_node=bh / 2.0)
    rows = np.linalg.lstsq(wx, interpolated.T, rcond=None)[0].T  # each row's values at the x nodes
    return np.linalg.lstsq(wy, rows, rcond=None)[0].astype(np.float32)


def interpolation_weights(pixels: int, size: int, first_node: float) -> np.ndarray:
    """``(pixels, nodes)`` weights of the mesh values along one axis in sep's (and source-extractor's)
    background interpolation: a cubic spline through nodes ``size`` pixels apart, the first at
    ``first_node`` (sep places x nodes half a pixel earlier than y nodes), the end pieces extended.

    The spline's curvature terms are solved as both programs solve them, with the division by 6 inside
    the back substitution (which makes it a little stiffer than a textbook natural spline); that is what
    the interpolated map holds, so it is what is inverted here.
    """
    nodes = (pixels - 1) // size + 1
    if nodes == 1:
        return np.ones((pixels, 1))
    identity = np.eye(nodes)
    curvature = _curvature(identity)
    position = (np.arange(pixels) - first_node) / size
    low = np.clip(np.floor(position).astype(np.int64), 0, nodes - 2)
    t = (position - low)[:, None]
    s = 1.0 - t
    return (s * (identity[low] + (s * s - 1.0) * curvature[low])
            + t * (identity[low + 1] + (t * t - 1.0) * curvature[low + 1]))


def _curvature(values: np.ndarray) -> np.ndarray:
    """The spline's curvature terms for ``values`` along axis 0 (zero at both ends)."""
    count = len(values)
    curvature = np.zeros(values.shape)
    if count < 3:
        return curvature
    pivot = np.zeros(count)
    carried = np.zeros(values.shape)
    for k in range(1, count - 1):
        pivot[k] = -1.0 / (pivot[k - 1] + 4.0)
        carried[k] = pivot[k] * (carried[k - 1] - 6.0 * (values[k + 1] + values[k - 1] - 2.0 * values[k]))
    for k in range(count - 2, 0, -1):
        curvature[k] = (pivot[k] * curvature[k + 1] + carried[k]) / 6.0
    return curvature


# --- outlines -----------------------------------------------------------------------------------------

#: The 37 vertices of every outline, 10° apart, in single precision as source-extractor holds them.
_ANGLES = np.radians(np.arange(37) * 10.0)
_COS = np.cos(_ANGLES).astype(np.float32).astype(np.float64)
_SIN = np.sin(_ANGLES).astype(np.float32).astype(np.float64)


def ellipse_points(x, y, a, b, theta_deg) -> tuple[np.ndarray, np.ndarray]:
    """Each source's outline as ``(xs, ys)``, shape ``(sources, 37)``: vertex 0 on the major axis, then
    every 10° round to it again."""
    ct, st = np.cos(np.radians(theta_deg))[:, None], np.sin(np.radians(theta_deg))[:, None]
    a, b = np.asarray(a, np.float64)[:, None], np.asarray(b, np.float64)[:, None]
    xs = x[:, None] + a * _COS * ct - b * _SIN * st
    ys = y[:, None] + a * _COS * st + b * _SIN * ct
    return xs, ys


def add_outlines(image: np.ndarray, xs: np.ndarray, ys: np.ndarray, dotted: np.ndarray, value: np.float32) -> None:
    """Add ``value`` along each outline's sides: one pixel per column (or row, where the side is steeper)
    after its first vertex, rounded to the nearest pixel.  A dotted outline draws every other side."""
    sides = np.ones((len(xs), 36), dtype=bool)
    sides[dotted, 1::2] = False  # sides ending on an even vertex are skipped
    x1, y1 = xs[:, :-1][sides], ys[:, :-1][sides]
    x2, y2 = xs[:, 1:][sides], ys[:, 1:][sides]
    along_x = np.abs(x2 - x1) > np.abs(y2 - y1)
    for flat, (u1, v1, u2, v2) in ((True, (x1, y1, x2, y2)), (False, (y1, x1, y2, x2))):
        pick = along_x if flat else ~along_x
        u1, v1, u2, v2 = u1[pick], v1[pick], u2[pick], v2[pick]
        du = u2 - u1
        slope = (v2 - v1) / np.where(du == 0.0, 1.0, du)
        start, end = _rint(u1), _rint(u2)
        steps = np.abs(end - start)
        side = np.repeat(np.arange(len(start)), steps)
        k = np.arange(len(side)) - np.repeat(np.cumsum(steps) - steps, steps) + 1
        u = start[side] + np.sign(end - start)[side] * k
        v = _rint(v1[side] + (u - u1[side]) * slope[side])
        col, row = (u, v) if flat else (v, u)
        inside = (col >= 0) & (col < image.shape[1]) & (row >= 0) & (row < image.shape[0])
        np.add.at(image, (row[inside], col[inside]), value)


def _rint(values: np.ndarray) -> np.ndarray:
    return np.floor(values + 0.5).astype(np.int64)
