"""Rice-compressed CCDs decoded in one call per CCD.

``CompImageHDU.data`` handles every tiling and algorithm, and pays for it
with Python bookkeeping around each tile.  fpack writes one tile per row, so
a MegaCam CCD has 4,612 tiles, and that bookkeeping cost as much as the
decoding itself.  For the layout fpack writes (RICE_1, tiles of whole rows,
integers or quantised floats) this module decodes every tile in one C call
(``_rice.c``) straight into the CCD's array, and restores quantised floats
in another (``_dither.c``, cfitsio's dither sequence and rules).  It reads
only the bytes of its own HDU, found from offsets the caller already knows,
so the last CCD of a file costs no more than the first.  Any other layout returns None, and the caller uses astropy's general
path.  The result is identical to ``CompImageHDU.data`` read with
``do_not_scale_image_data=True``, to the bit.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from astropy.io import fits

from . import _dither, _rice
from .scaling import Scaling, to_float32

_DITHER = {"NO_DITHER": -1, "SUBTRACTIVE_DITHER_1": 1, "SUBTRACTIVE_DITHER_2": 2}
_INTEGER_BITPIX = {16: np.dtype(np.int16), 32: np.dtype(np.int32)}

# Tiles unquantised together without dithering (float64 scratch of a few MB).
_NO_DITHER_ROWS = 256


def _setting(header: fits.Header, name: str, default: int) -> int:
    """A ZNAMEn/ZVALn compression parameter (BLOCKSIZE, BYTEPIX)."""
    for i in range(1, 1000):
        key = header.get(f"ZNAME{i}")
        if key is None:
            return default
        if key.strip().upper() == name:
            return int(header[f"ZVAL{i}"])
    return default


# Binary-table column formats a tile-compressed image uses, as numpy dtypes.
_TFORM = {"P": (">i4", 2), "Q": (">i8", 2), "D": (">f8", 1), "E": (">f4", 1), "J": (">i4", 1), "K": (">i8", 1)}
_TFORM_PATTERN = re.compile(r"\s*(\d*)([A-Z])")


def _table_dtype(header: fits.Header) -> np.dtype | None:
    """The row layout of the compressed table, or None for a column format we do not read."""
    fields = []
    for i in range(1, header.get("TFIELDS", 0) + 1):
        match = _TFORM_PATTERN.match(header.get(f"TFORM{i}", ""))
        if not match or match.group(2) not in _TFORM or match.group(1) not in ("", "1"):
            return None
        code, count = _TFORM[match.group(2)]
        fields.append((header.get(f"TTYPE{i}", f"col{i}").strip(), code, (count,) if count > 1 else ()))
    try:
        dtype = np.dtype(fields)
    except (TypeError, ValueError):  # duplicate or empty column names
        return None
    return dtype if dtype.itemsize == header.get("NAXIS1") else None


def _supported(header: fits.Header, table: np.ndarray) -> bool:
    names = table.dtype.names or ()
    if header.get("ZCMPTYPE", "").strip() not in ("RICE_1", "RICE_ONE") or header.get("ZNAXIS") != 2:
        return False
    if header.get("ZTILE1", header["ZNAXIS1"]) != header["ZNAXIS1"] or "ZBLANK" in names:
        return False
    if "COMPRESSED_DATA" not in names or (table["COMPRESSED_DATA"][:, 0] == 0).any():
        return False  # some tiles are stored gzipped or raw: astropy's general path
    bitpix = header["ZBITPIX"]
    if bitpix == -32:
        return "ZSCALE" in names and "ZZERO" in names and header.get("ZQUANTIZ", "NO_DITHER") in _DITHER
    return bitpix in _INTEGER_BITPIX


def decode_rice_rows(
    path: str | Path, header_offset: int, data_offset: int, scaling: Scaling | None = None
) -> np.ndarray | None:
    """The tile-compressed CCD whose table HDU starts at these byte offsets of ``path``, or None
    when its layout needs astropy's general path.

    Only this HDU's bytes are read.  Without ``scaling``, integers come back as
    stored (int16 or int32, BZERO not applied) and quantised floats as float32
    with NaN for blank pixels, as astropy gives them.  With the image header's
    ``scaling``, every CCD comes back as its float32 pixel values
    (:func:`.scaling.to_float32`); integers are converted tile by tile as they
    are decoded.
    """
    with open(path, "rb") as raw:
        raw.seek(header_offset)
        header = fits.Header.fromstring(raw.read(data_offset - header_offset).decode("ascii"))
        if not header.get("ZIMAGE", False) or header.get("XTENSION", "").strip() != "BINTABLE":
            return None
        dtype = _table_dtype(header)
        if dtype is None:
            return None
        raw.seek(data_offset)
        table = np.frombuffer(raw.read(header["NAXIS1"] * header["NAXIS2"]), dtype=dtype)
        if len(table) != header["NAXIS2"] or not _supported(header, table):
            return None
        raw.seek(data_offset + header.get("THEAP", header["NAXIS1"] * header["NAXIS2"]))
        heap = raw.read(header["PCOUNT"])

    width, height = header["ZNAXIS1"], header["ZNAXIS2"]
    tile_rows = header.get("ZTILE2", 1)
    bitpix = header["ZBITPIX"]
    blocksize = _setting(header, "BLOCKSIZE", 32)
    bytepix = _setting(header, "BYTEPIX", 4)
    spans = np.ascontiguousarray(table["COMPRESSED_DATA"], dtype=np.int64)  # (bytes, heap offset) of each tile
    if scaling is not None and bitpix in _INTEGER_BITPIX and _INTEGER_BITPIX[bitpix].itemsize == bytepix:
        pixels = np.empty((height, width), dtype=np.float32)
        _rice.decode(heap, spans, tile_rows * width, bytepix, blocksize, pixels,
                     (scaling.zero, scaling.scale, scaling.blank))
        return pixels
    stored = np.empty((height, width), dtype=f"i{bytepix}")
    _rice.decode(heap, spans, tile_rows * width, bytepix, blocksize, stored)
    if bitpix in _INTEGER_BITPIX:
        stored = stored.astype(_INTEGER_BITPIX[bitpix], copy=False)
        return stored if scaling is None else to_float32(stored, scaling)
    if header.get("ZQUANTIZ", "NO_DITHER") == "NO_DITHER":
        scales, zeros = table["ZSCALE"].astype(np.float64), table["ZZERO"].astype(np.float64)
        out = _unquantise_without_dither(stored, scales, zeros, tile_rows, header.get("ZBLANK"))
    elif "ZDITHER0" not in header:
        return None  # dithered with no seed: astropy's general path decides
    else:
        out = np.empty((height, width), dtype=np.float32)
        scales, zeros = (np.ascontiguousarray(table[name], dtype=np.float64) for name in ("ZSCALE", "ZZERO"))
        _dither.unquantise(stored, bytepix, tile_rows * width, header["ZDITHER0"], scales, zeros,
                           _DITHER[header["ZQUANTIZ"]], header.get("ZBLANK"), out)
    return out if scaling is None else to_float32(out, scaling)


def _unquantise_without_dither(
    quantised: np.ndarray, scales: np.ndarray, zeros: np.ndarray, tile_rows: int, blank: int | None
) -> np.ndarray:
    """``value = q × ZSCALE + ZZERO`` per tile, in float64 as astropy computes it, stored as float32."""
    height, width = quantised.shape
    row_scale = np.repeat(scales, tile_rows)[:height, None]
    row_zero = np.repeat(zeros, tile_rows)[:height, None]
    out = np.empty((height, width), dtype=np.float32)
    for start in range(0, height, _NO_DITHER_ROWS):
        rows = slice(start, start + _NO_DITHER_ROWS)
        out[rows] = quantised[rows] * row_scale[rows] + row_zero[rows]
    if blank is not None:
        out[quantised == blank] = np.nan
    return out
