"""Open MegaCam exposures (``.fits.fz`` or ``.fits``) one CCD at a time, in memory.

A Rice-compressed 36-CCD exposure is 1.3 GB once decompressed; ``funpack``
writes all of it to disk.  Here each CCD is decompressed on its own, straight
into the float32 array the detection code works on, and nothing touches disk.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from astropy.io import fits

from .errors import CCDError, ExposureError
from .rice import decode_rice_rows
from .scaling import Scaling, to_float32

_IMAGE_HDUS = (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)


@dataclass(frozen=True)
class CCD:
    """Where a CCD lives in its file, and its header.

    ``ext_number`` counts image extensions from 1, as source-extractor's
    EXT_NUMBER does; ``hdu`` is the HDU index astropy uses.  The byte offsets
    and the header text let a worker read its CCD without parsing the headers
    of every HDU before it (real MegaCam headers have hundreds of cards).
    """

    ext_number: int
    hdu: int
    extname: str | None
    header_offset: int | None = field(default=None, repr=False)
    data_offset: int | None = field(default=None, repr=False)
    compressed: bool = field(default=False, repr=False)
    header: str | None = field(default=None, repr=False)


def _open(path: Path, lazy: bool = False) -> fits.HDUList:
    if not path.exists():
        raise ExposureError(f"{path}: no such file")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            hdul = fits.open(path, memmap=False, lazy_load_hdus=lazy, do_not_scale_image_data=True)
    except (OSError, ValueError, TypeError) as exc:
        raise ExposureError(f"{path}: not a readable FITS file ({exc})") from None
    for warning in caught:
        if "truncated" in str(warning.message):
            hdul.close()
            raise ExposureError(f"{path}: the file is truncated ({warning.message}); download it again")
    return hdul


def list_ccds(path: str | Path) -> list[CCD]:
    """The CCD slots of an exposure, checking that the file is whole.

    A truncated or non-FITS file raises :class:`ExposureError` before any CCD
    is measured, so a bad file never yields a partial catalogue.
    """
    path = Path(path)
    with _open(path) as hdul:
        size = path.stat().st_size
        # each HDU's own fileinfo(): the list's also asks whether any HDU was resized, walking all of
        # them each time (a tenth of a second per exposure)
        last = hdul[-1].fileinfo()
        if last["datLoc"] + last["datSpan"] > size:
            raise ExposureError(f"{path}: the file is truncated; download it again")
        ccds = []
        for index, hdu in enumerate(hdul):
            if not isinstance(hdu, _IMAGE_HDUS):
                continue
            if index == 0 and len(hdul) > 1 and not hdu.header.get("NAXIS", 0):
                continue  # the empty primary HDU of a multi-extension file
            info = hdu.fileinfo()
            ccds.append(CCD(
                len(ccds) + 1, index, hdu.header.get("EXTNAME"),
                header_offset=info["hdrLoc"], data_offset=info["datLoc"],
                compressed=isinstance(hdu, fits.CompImageHDU), header=hdu.header.tostring(),
            ))
    if not ccds:
        raise ExposureError(f"{path}: no image extensions")
    return ccds


def read_ccd(path: str | Path, ccd: CCD) -> tuple[np.ndarray, fits.Header]:
    """Decompress one CCD into a native float32 array (NaN where pixels are blank).

    Integer data are read unscaled and converted once, with BZERO/BSCALE
    applied in float32 (:mod:`.scaling`); this avoids astropy's intermediate
    uint16/float copies.  A Rice-compressed CCD is converted tile by tile as
    it is decoded.
    """
    path = Path(path)
    if ccd.header is None or ccd.header_offset is None:
        return _read_ccd_with_astropy(path, ccd)
    header = fits.Header.fromstring(ccd.header)
    _check_shape(path, ccd, header)
    data = None
    if ccd.compressed:
        try:
            data = decode_rice_rows(path, ccd.header_offset, ccd.data_offset, Scaling.of(header))
        except Exception as exc:  # corrupt tiles raise many types
            raise CCDError(str(path), ccd.ext_number, ccd.extname, f"cannot decompress the data ({exc})") from None
    if data is None:
        return _read_ccd_with_astropy(path, ccd)
    return data, header


def _check_shape(path: Path, ccd: CCD, header: fits.Header) -> None:
    naxis = header.get("NAXIS", 0)
    if naxis == 0:
        raise CCDError(str(path), ccd.ext_number, ccd.extname, "the extension has no data")
    if naxis != 2:
        shape = tuple(header.get(f"NAXIS{i}") for i in range(naxis, 0, -1))
        raise CCDError(
            str(path), ccd.ext_number, ccd.extname, f"{naxis}-D data of shape {shape}; expected a 2-D CCD image"
        )


def _read_ccd_with_astropy(path: Path, ccd: CCD) -> tuple[np.ndarray, fits.Header]:
    """Any layout astropy reads: plain images, and compressed ones fpack would not write."""
    with _open(path, lazy=True) as hdul:  # the file was checked whole by list_ccds
        hdu = hdul[ccd.hdu]
        header = hdu.header.copy()
        _check_shape(path, ccd, header)
        try:
            raw = hdu.data
        except Exception as exc:  # astropy raises many types for corrupt tiles
            raise CCDError(str(path), ccd.ext_number, ccd.extname, f"cannot decompress the data ({exc})") from None
        if raw is None:
            raise CCDError(str(path), ccd.ext_number, ccd.extname, "the extension has no data")
        data = to_float32(raw, Scaling.of(header))
    return data, header


def read_flags(path: str | Path, ccd: CCD, shape: tuple[int, int]) -> np.ndarray:
    """One CCD of a flag map, as 64-bit integers holding source-extractor's 32-bit unsigned flags.

    ``ccd`` is the flag map's own CCD (from :func:`list_ccds` on it); ``shape`` is the exposure
    CCD's, which the flag map must match pixel for pixel.
    """
    path = Path(path)
    with _open(path, lazy=True) as hdul:
        hdu = hdul[ccd.hdu]
        _check_shape(path, ccd, hdu.header)
        try:
            raw = hdu.data
        except Exception as exc:  # astropy raises many types for corrupt tiles
            raise CCDError(str(path), ccd.ext_number, ccd.extname, f"cannot read the flags ({exc})") from None
        if raw is None or raw.dtype.kind not in "iu":
            kind = "no data" if raw is None else f"{raw.dtype} pixels"
            raise CCDError(str(path), ccd.ext_number, ccd.extname, f"a flag map holds integers; this one has {kind}")
        if raw.shape != shape:
            raise CCDError(str(path), ccd.ext_number, ccd.extname,
                           f"flag map of shape {raw.shape}, but the exposure's CCD is {shape}")
        # read unscaled (see _open): unsigned flags are stored signed with BZERO 2**15 or 2**31
        return (raw.astype(np.int64) + int(hdu.header.get("BZERO", 0))) & 0xFFFFFFFF


def read_weights(path: str | Path, ccd: CCD, shape: tuple[int, int]) -> np.ndarray:
    """One CCD of a weight map (float32), which must match the exposure's CCD pixel for pixel."""
    weights, _ = read_ccd(path, ccd)
    if weights.shape != shape:
        raise CCDError(str(path), ccd.ext_number, ccd.extname,
                       f"weight map of shape {weights.shape}, but the exposure's CCD is {shape}")
    return weights
