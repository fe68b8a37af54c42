"""Synthetic MegaCam-like exposures for tests, the demo and benchmarks.

A processed MegaCam ``p`` file is an empty primary HDU plus 36 CCDs of
2048×4612 unsigned 16-bit pixels (stored as int16 with BZERO = 32768),
Rice-compressed.  We write the same structure with a sky, Poisson noise,
stars, galaxies, close pairs, saturated stars and a hot column, and a TAN WCS
per CCD laid out on MegaCam's 9×4 mosaic.  Everything follows from the seed,
so a test can regenerate the same exposure instead of storing it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits

MEGACAM_SHAPE = (4612, 2048)  # (ny, nx) of one CCD
MEGACAM_NCCD = 36
PIXEL_SCALE = 0.187 / 3600.0  # degrees per pixel
#: The zeropoint written in each CCD's PHOTZP keyword (used only when asked for, --zeropoint-key PHOTZP).
PHOTZP = 30.0
SATURATE = 65000.0
GAIN = 1.6  # e-/ADU
SKY = 1000.0  # ADU
SOURCE_DENSITY = 6.5e-4  # sources per pixel: about 3,100 detections per full CCD with default.sex

TRUTH_DTYPE = np.dtype(
    [("ext_number", "i2"), ("x", "f8"), ("y", "f8"), ("flux", "f8"), ("kind", "U6")]
)


@dataclass(frozen=True)
class ExposureSpec:
    """What to generate; the defaults make a full-size MegaCam exposure."""

    nccd: int = MEGACAM_NCCD
    shape: tuple[int, int] = MEGACAM_SHAPE
    seed: int = 0
    ra: float = 150.0
    dec: float = 2.2
    density: float = SOURCE_DENSITY
    #: "uint16" (int16 + BZERO, lossless Rice) or "float32" (quantised Rice, like processed MegaCam files)
    pixel_type: str = "uint16"
    #: "round" (the same round Gaussian everywhere) or "varying" (elliptical, changing across each CCD;
    #: see :func:`star_shape`), so that a PSF model built from a catalogue can be right or wrong
    psf: str = "round"

    @classmethod
    def small(cls, seed: int = 0, nccd: int = 2, size: int = 1024) -> "ExposureSpec":
        """A few small CCDs: what tests and the quick demo use."""
        return cls(nccd=nccd, shape=(size, size), seed=seed)


def ccd_header(spec: ExposureSpec, ext: int) -> fits.Header:
    ny, nx = spec.shape
    column, row = (ext - 1) % 9, (ext - 1) // 9
    header = fits.Header()
    header["EXTNAME"] = (f"ccd{ext - 1:02d}", "CCD name")
    x0, y0 = column * nx + 1, row * ny + 1  # the WCS below puts row 0 south, column 0 east
    header["DETSEC"] = (f"[{x0}:{x0 + nx - 1},{y0}:{y0 + ny - 1}]", "the CCD's pixels on the mosaic")
    header["GAIN"] = (GAIN, "e-/ADU")
    header["SATURATE"] = (SATURATE, "saturation level (ADU)")
    header["PHOTZP"] = (PHOTZP, "mag zeropoint, as MegaPipe products carry one")
    header["CTYPE1"] = "RA---TAN"
    header["CTYPE2"] = "DEC--TAN"
    header["CRVAL1"] = spec.ra
    header["CRVAL2"] = spec.dec
    header["CRPIX1"] = (4.5 - column) * (nx + 80) + nx / 2
    header["CRPIX2"] = (2.0 - row) * (ny + 80) + ny / 2
    header["CD1_1"] = -PIXEL_SCALE
    header["CD1_2"] = 0.0
    header["CD2_1"] = 0.0
    header["CD2_2"] = PIXEL_SCALE
    header["CUNIT1"] = "deg"
    header["CUNIT2"] = "deg"
    return header


def _add_profile(image, x, y, flux, sigma_x, sigma_y, theta, exponential: bool):
    """Add an elliptical Gaussian (stars) or exponential (galaxies) of total ``flux``."""
    ny, nx = image.shape
    half = int(np.ceil((8.0 if exponential else 5.0) * max(sigma_x, sigma_y))) + 1
    x0, x1 = max(int(x) - half, 0), min(int(x) + half + 1, nx)
    y0, y1 = max(int(y) - half, 0), min(int(y) + half + 1, ny)
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dx, dy = xx - x, yy - y
    c, s = np.cos(theta), np.sin(theta)
    u = (c * dx + s * dy) / sigma_x
    v = (-s * dx + c * dy) / sigma_y
    if exponential:
        r = np.sqrt(u * u + v * v)
        profile = np.exp(-r) / (2 * np.pi * sigma_x * sigma_y)
    else:
        profile = np.exp(-0.5 * (u * u + v * v)) / (2 * np.pi * sigma_x * sigma_y)
    image[y0:y1, x0:x1] += flux * profile


#: The varying PSF: its sigma grows by this fraction from the bottom of a CCD to the top, ...
PSF_SIZE_GRADIENT = 0.12
#: ... its ellipticity 1 - b/a goes from the first value on the CCD's left edge to the second on its right, ...
PSF_ELLIPTICITY = (0.02, 0.14)
#: ... and its major axis turns from the first angle (radians, from +x) at the bottom to the second at the top.
PSF_ANGLE = (0.3, 1.2)


def star_shape(spec: ExposureSpec, x: float, y: float, sigma: float) -> tuple[float, float, float]:
    """The (sigma along the major axis, sigma along the minor axis, angle) of a star at (x, y).

    A round PSF of ``sigma`` everywhere unless ``spec.psf`` is "varying".  The varying one changes
    smoothly (linearly, like a quadratic PSF model can follow) and stays within what PSFEx's defaults
    select as stars (FWHM variability under 20%, (A-B)/(A+B) under 0.3).
    """
    if spec.psf == "round":
        return sigma, sigma, 0.0
    if spec.psf != "varying":
        raise ValueError(f"unknown PSF {spec.psf!r}: 'round' or 'varying'")
    ny, nx = spec.shape
    across, up = x / nx, y / ny
    size = sigma * (1.0 + PSF_SIZE_GRADIENT * (up - 0.5))
    ellipticity = PSF_ELLIPTICITY[0] + (PSF_ELLIPTICITY[1] - PSF_ELLIPTICITY[0]) * across
    angle = PSF_ANGLE[0] + (PSF_ANGLE[1] - PSF_ANGLE[0]) * up
    major = size / np.sqrt(1.0 - ellipticity)  # keeps the area of the round PSF of that size
    return major, major * (1.0 - ellipticity), angle


def ccd_image(spec: ExposureSpec, ext: int) -> tuple[np.ndarray, np.ndarray]:
    """Render CCD ``ext`` (1-based): the uint16 pixels and the truth table of its sources."""
    rng = np.random.default_rng([spec.seed, ext])
    ny, nx = spec.shape
    image = np.zeros(spec.shape, dtype=np.float64)
    count = int(spec.density * nx * ny)
    truth = []

    def add(x, y, flux, kind):
        if kind == "star":
            major, minor, angle = star_shape(spec, x, y, rng.normal(1.5, 0.05))
            _add_profile(image, x, y, flux, major, minor, angle, exponential=False)
        else:
            scale = rng.uniform(1.0, 3.5)
            axis_ratio = rng.uniform(0.4, 1.0)
            _add_profile(image, x, y, flux, scale, scale * axis_ratio, rng.uniform(0, np.pi), exponential=True)
        truth.append((ext, x + 1.0, y + 1.0, flux, kind))

    # Faint-heavy power-law fluxes (in ADU): most sources near the threshold, a tail of bright ones.
    fluxes = 300.0 * (1.0 - rng.uniform(0, 1, count)) ** (-1.0 / 0.6)
    fluxes = np.minimum(fluxes, 2.0e6)
    for flux in fluxes:
        x, y = rng.uniform(2, nx - 3), rng.uniform(2, ny - 3)
        add(x, y, flux, "star" if rng.uniform() < 0.4 else "galaxy")
    # Close pairs for the deblender.
    for _ in range(max(count // 60, 2)):
        x, y = rng.uniform(20, nx - 21), rng.uniform(20, ny - 21)
        separation, angle = rng.uniform(4.0, 9.0), rng.uniform(0, np.pi)
        flux = rng.uniform(5e3, 8e4)
        add(x, y, flux, "star")
        add(x + separation * np.cos(angle), y + separation * np.sin(angle), flux * rng.uniform(0.2, 1.0), "star")
    # Saturated stars.
    for _ in range(max(count // 600, 1)):
        add(rng.uniform(30, nx - 31), rng.uniform(30, ny - 31), rng.uniform(2e6, 8e6), "star")

    electrons = rng.poisson((image + SKY) * GAIN)
    pixels = electrons / GAIN
    # A hot column over part of the CCD.
    column = int(rng.integers(10, nx - 10))
    start = int(rng.integers(0, ny // 2))
    pixels[start : start + ny // 3, column] += 400.0
    pixels = np.clip(np.rint(pixels), 0, 65535).astype(np.uint16)
    return pixels, np.array(truth, dtype=TRUTH_DTYPE)


#: The synthetic weight maps: inverse variance of the sky noise, falling by this fraction to one corner, ...
WEIGHT_FALLOFF = 0.3
#: ... with dead columns and a dead square wider than source-extractor's interpolation lags (16) ...
DEAD_COLUMNS, DEAD_SQUARE = 2, 40
#: ... and a band of rows at this fraction of the weight.
LOW_WEIGHT = 0.05


def ccd_weights(spec: ExposureSpec, ext: int) -> np.ndarray:
    """A weight map for CCD ``ext`` (float32, ADU⁻²), as a survey's pipeline would give one: the
    sky's inverse variance ``GAIN / SKY``, lower towards one corner (as behind a vignetted flat),
    0 on dead columns and a dead square, and low on a band of rows (a satellite trail masked soft)."""
    rng = np.random.default_rng([spec.seed, ext, 7])
    ny, nx = spec.shape
    across = np.arange(nx, dtype=np.float32) / nx
    up = np.arange(ny, dtype=np.float32)[:, None] / ny
    weights = np.float32(GAIN / SKY) * (np.float32(1.0) - np.float32(WEIGHT_FALLOFF) * across * up)
    for column in rng.integers(0, nx, DEAD_COLUMNS):
        weights[:, column] = 0.0
    side = min(DEAD_SQUARE, nx // 4, ny // 4)
    x0, y0 = int(rng.integers(0, nx - side)), int(rng.integers(0, ny - side))
    weights[y0 : y0 + side, x0 : x0 + side] = 0.0
    band = int(rng.integers(0, max(ny - 8, 1)))
    weights[band : band + 8] *= np.float32(LOW_WEIGHT)
    return weights


def beside(exposure: str | Path, kind: str) -> Path:
    """Where an exposure's weight or flag map goes: ``1056213p.fits.fz`` ->
    ``1056213p.weight.fits.fz`` (kind "weight"), as the archive's default patterns
    ``{id}.weight.fits.fz`` and ``{id}.flag.fits.fz`` name them."""
    exposure = Path(exposure)
    for suffix in (".fits.fz", ".fits"):
        if exposure.name.endswith(suffix):
            return exposure.with_name(f"{exposure.name[: -len(suffix)]}.{kind}{suffix}")
    raise ValueError(f"{exposure}: expected a .fits or .fits.fz name")


def ccd_flags(spec: ExposureSpec, ext: int) -> np.ndarray:
    """A flag map for CCD ``ext`` (int16) matching :func:`ccd_weights`: 1 on its dead pixels,
    2 on its low-weight band, as a survey's pipeline marks what it masked."""
    weights = ccd_weights(spec, ext)
    flags = np.zeros(weights.shape, dtype=np.int16)
    flags[weights == 0] = 1
    flags[(weights > 0) & (weights < np.float32(0.5 * GAIN / SKY))] = 2  # the falloff alone stays above half
    return flags


def write_flags(path: str | Path, spec: ExposureSpec = ExposureSpec()) -> Path:
    """Write the exposure's flag maps (:func:`ccd_flags`), lossless; complete or absent."""
    return _write_maps(Path(path), spec, ccd_flags)


def write_weights(path: str | Path, spec: ExposureSpec = ExposureSpec()) -> Path:
    """Write the exposure's weight maps (:func:`ccd_weights`), compressed losslessly for a ``.fz``
    name (GZIP_2 unquantised: a quantised weight map would not give both programs the same weights
    after decompression); it appears under its name only once complete."""
    return _write_maps(Path(path), spec, ccd_weights)


def _write_maps(path: Path, spec: ExposureSpec, render) -> Path:
    hdus: list[fits.hdu.base.ExtensionHDU] = []
    for ext in range(1, spec.nccd + 1):
        header = fits.Header()
        header["EXTNAME"] = (f"ccd{ext - 1:02d}", "CCD name")
        pixels = render(spec, ext)
        if path.name.endswith(".fz"):
            # tiles of 128 rows: half the size of astropy's one-row tiles, and a quarter faster to read
            hdus.append(fits.CompImageHDU(data=pixels, header=header, compression_type="GZIP_2",
                                          quantize_level=0.0, tile_shape=(min(128, spec.shape[0]), spec.shape[1])))
        else:
            hdus.append(fits.ImageHDU(data=pixels, header=header))
    _write_atomically(path, fits.HDUList([fits.PrimaryHDU(), *hdus]))
    return path


def write_exposure(path: str | Path, spec: ExposureSpec = ExposureSpec()) -> np.ndarray:
    """Write a Rice-compressed (or, for a ``.fits`` name, plain) exposure; return its truth table.

    The file appears under its name only once complete.
    """
    path = Path(path)
    compressed = path.name.endswith(".fz")
    primary = fits.PrimaryHDU()
    primary.header["ORIGIN"] = "canfar-catalogue synthetic"
    primary.header["NEXTEND"] = spec.nccd
    primary.header["SYNSEED"] = (spec.seed, "seed of the synthetic exposure")
    hdus: list[fits.hdu.base.ExtensionHDU] = []
    truths = []
    for ext in range(1, spec.nccd + 1):
        pixels, truth = ccd_image(spec, ext)
        truths.append(truth)
        header = ccd_header(spec, ext)
        if spec.pixel_type == "float32":
            pixels = pixels.astype(np.float32)
        if compressed:
            # fpack's defaults for floats: q = 4 (a quarter of the noise sigma per level) with
            # subtractive dithering; the dither seed follows ours, so the file is the same on every run
            hdus.append(fits.CompImageHDU(
                data=pixels, header=header, compression_type="RICE_1", quantize_level=4.0,
                quantize_method=1, dither_seed=1 + (spec.seed * 97 + ext) % 10000,
            ))
        else:
            hdus.append(fits.ImageHDU(data=pixels, header=header))
    _write_atomically(path, fits.HDUList([primary, *hdus]))
    return np.concatenate(truths)


def _write_atomically(path: Path, hdul: fits.HDUList) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        hdul.writeto(tmp, overwrite=True)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
