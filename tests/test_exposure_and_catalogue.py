"""Reading exposures, writing catalogues, and every kind of bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import ascii, fits

from canfar_catalogue.cli.main import main
from canfar_catalogue.science import ExposureError, list_ccds, load_config, read_ccd, run_exposure
from canfar_catalogue.science.catalogue import format_header, write_catalogue
from canfar_catalogue.science.errors import CCDError
from canfar_catalogue.science.scaling import Scaling, to_float32
from canfar_catalogue.science.synthetic import ExposureSpec, ccd_image

from . import reference

ALL_PARAM = reference.write_param(Path(os.environ.get("TMPDIR", "/tmp")) / "canfar-catalogue-all-columns.param")
ALL = load_config(overrides=["-PARAMETERS_NAME", str(ALL_PARAM)])


def test_ccds_decompress_in_memory_with_headers_and_bzero(small_exposure):
    ccds = list_ccds(small_exposure)
    assert [c.ext_number for c in ccds] == [1, 2]
    assert [c.extname for c in ccds] == ["ccd00", "ccd01"]
    data, header = read_ccd(small_exposure, ccds[1])
    assert data.dtype == np.float32 and data.flags.c_contiguous
    assert header["GAIN"] == 1.6 and header["SATURATE"] == 65000.0 and header["CTYPE1"] == "RA---TAN"
    pixels, _ = ccd_image(ExposureSpec.small(seed=11), 2)
    assert np.array_equal(data, pixels.astype(np.float32))  # BZERO=32768 applied exactly


def test_nan_pixels_are_blank_not_sources(workdir):
    pixels, _ = ccd_image(ExposureSpec.small(seed=2, nccd=1, size=256), 1)
    data = pixels.astype(np.float32)
    data[100:110, :] = np.nan
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data)]).writeto("nan.fits")
    result = run_exposure("nan.fits", ALL, "nan.cat", workers=1)
    table = ascii.read("nan.cat", format="sextractor")
    assert len(table) > 10 and not result.failed
    assert np.all(np.isfinite(table["MAG_AUTO"]))


def test_the_header_is_byte_for_byte_source_extractors(workdir, small_exposure):
    if not reference.have_reference():
        pytest.skip("source-extractor is not installed")
    param = reference.write_param(workdir / "p.param")
    theirs = reference.run_classic(small_exposure, workdir / "classic", param)
    header = "".join(line for line in theirs.read_text().splitlines(keepends=True) if line.startswith("#"))
    assert format_header(reference.ALL_COLUMNS) == header
    # And every row has source-extractor's field widths.
    run_exposure(small_exposure, ALL, workdir / "ours.cat", workers=1)
    # NUMBER counts in a different order; the rest of each row has the same layout, and most
    # rows match to the last digit (others differ by 1 in the last digit of Y_IMAGE or an error).
    # BACKGROUND is left out of that: sep's background map and source-extractor's back() interpolate
    # the same mesh differently, 0.02% apart (docs/parity.md).  So is ERRTHETAWIN_IMAGE: the error
    # angle of a nearly round window moves by 0.01 deg, its last printed digit, between the window's
    # final position (ours) and the one before source-extractor's last step, < 1e-4 pixel away.
    ours_rows = [l[10:] for l in (workdir / "ours.cat").read_text().splitlines() if not l.startswith("#")]
    their_rows = [l[10:] for l in theirs.read_text().splitlines() if not l.startswith("#")]
    assert len(ours_rows) == len(their_rows)
    assert {len(r) for r in ours_rows} == {len(r) for r in their_rows}
    left_out = {reference.ALL_COLUMNS.index(name) - 1 for name in ("BACKGROUND", "ERRTHETAWIN_IMAGE")}  # NUMBER is cut off

    def compared(rows: list[str]) -> set[tuple[str, ...]]:
        return {tuple(f for i, f in enumerate(row.split()) if i not in left_out) for row in rows}

    assert len(compared(ours_rows) & compared(their_rows)) > 0.5 * len(their_rows)


def test_catalogue_reads_back_with_astropy_and_numbers_restart_per_extension(workdir, small_exposure):
    result = run_exposure(small_exposure, ALL, "out.cat", workers=2)
    table = ascii.read("out.cat", format="sextractor")
    assert table.colnames == list(reference.ALL_COLUMNS)
    assert len(table) == result.count > 100
    for ext in (1, 2):
        numbers = table["NUMBER"][table["EXT_NUMBER"] == ext]
        assert list(numbers) == list(range(1, len(numbers) + 1))
    assert table["X_IMAGE"].unit == "pixel" or str(table["X_IMAGE"].unit) == "pix"


def test_positions_are_one_based_fits_pixels(workdir):
    """A lone star rendered at 0-based (x, y) = (40.0, 60.0) is at X_IMAGE 41, Y_IMAGE 61."""
    yy, xx = np.mgrid[:128, :128]
    rng = np.random.default_rng(0)
    data = (1000 + rng.normal(0, 5, (128, 128)) + 5e4 * np.exp(-((xx - 40.0) ** 2 + (yy - 60.0) ** 2) / 4.5)).astype(np.float32)
    fits.PrimaryHDU(data).writeto("star.fits")
    run_exposure("star.fits", ALL, "star.cat", workers=1)
    table = ascii.read("star.cat", format="sextractor")
    brightest = table[np.argmin(table["MAG_AUTO"])]
    assert brightest["X_IMAGE"] == pytest.approx(41.0, abs=0.02)
    assert brightest["Y_IMAGE"] == pytest.approx(61.0, abs=0.02)
    assert brightest["EXT_NUMBER"] == 1


def test_writer_is_atomic(workdir):
    rows = np.zeros(3, dtype=[("NUMBER", "i8"), ("FLAGS", "i2")])

    def explode():
        yield rows
        raise RuntimeError("disk gone")

    (workdir / "keep.cat").write_text("old\n")
    with pytest.raises(RuntimeError):
        write_catalogue(workdir / "keep.cat", explode(), ("NUMBER", "FLAGS"))
    assert (workdir / "keep.cat").read_text() == "old\n"
    assert sorted(p.name for p in workdir.iterdir()) == ["keep.cat"]


# ---- bad input ---------------------------------------------------------------


def _mef(path: Path, *extensions: fits.ImageHDU) -> Path:
    fits.HDUList([fits.PrimaryHDU(), *extensions]).writeto(path)
    return path


def _good(seed=1) -> fits.ImageHDU:
    pixels, _ = ccd_image(ExposureSpec.small(seed=seed, nccd=1, size=256), 1)
    return fits.ImageHDU(pixels, name=f"good{seed}")


def test_not_fits_is_a_bad_file(workdir):
    Path("x.fits.fz").write_text("SIMPLE? no, this is a text file\n" * 100)
    with pytest.raises(ExposureError, match="x.fits.fz"):
        run_exposure("x.fits.fz", ALL, "x.cat")
    assert not Path("x.cat").exists()
    assert main(["detect", "x.fits.fz", "-CATALOG_NAME", "x.cat"]) == 2


def test_truncated_fz_is_a_bad_file_and_writes_nothing(workdir, small_exposure):
    data = small_exposure.read_bytes()
    Path("cut.fits.fz").write_bytes(data[: len(data) * 2 // 3])
    assert main(["detect", "cut.fits.fz", "-CATALOG_NAME", "cut.cat", "-q"]) == 2
    assert not Path("cut.cat").exists()


def test_missing_file_and_missing_config_are_bad_input(workdir, capsys):
    assert main(["detect", "absent.fits.fz"]) == 2
    assert "absent.fits.fz" in capsys.readouterr().err
    assert main(["detect", "absent.fits.fz", "-c", "nope.sex"]) == 2
    assert "nope.sex" in capsys.readouterr().err


def test_a_catalogue_name_in_a_missing_directory_is_refused_before_measuring(workdir, small_exposure, capsys):
    assert main(["detect", str(small_exposure), "-CATALOG_NAME", "nowhere/x.cat"]) == 2
    said = capsys.readouterr().err
    assert "CATALOG_NAME nowhere/x.cat: the directory nowhere does not exist" in said and "sources in" not in said


@pytest.mark.parametrize(
    "bad, reason",
    [
        (fits.ImageHDU(None, name="EMPTY"), "no data"),
        (fits.ImageHDU(np.zeros((2, 64, 64), dtype=np.float32), name="CUBE"), "3-D"),
        (fits.ImageHDU(np.full((64, 64), np.nan, dtype=np.float32), name="ALLNAN"), "NaN"),
        (fits.ImageHDU(np.full((64, 64), 7.0, dtype=np.float32), name="FLAT"), "same value"),
    ],
)
def test_a_bad_ccd_is_skipped_and_the_others_are_kept(workdir, capsys, bad, reason):
    _mef(workdir / "mixed.fits", _good(1), bad, _good(2))
    code = main(["detect", "mixed.fits", "-CATALOG_NAME", "mixed.cat"])
    err = capsys.readouterr().err
    assert code == 3
    assert reason in err and bad.name.lower() in err.lower() and "mixed.fits" in err
    table = ascii.read("mixed.cat", format="sextractor")
    assert len(table) > 10


def test_a_ccd_with_no_sources_is_not_an_error(workdir):
    rng = np.random.default_rng(5)
    _mef(workdir / "sky.fits", fits.ImageHDU(rng.normal(1000, 10, (128, 128)).astype(np.float32)), _good(3))
    result = run_exposure("sky.fits", load_config(overrides=["-DETECT_THRESH", "50"]), "sky.cat", workers=1)
    assert not result.failed
    assert result.ccds[0].count == 0


def test_a_file_with_only_bad_ccds_writes_no_catalogue(workdir):
    _mef(workdir / "dead.fits", fits.ImageHDU(np.full((64, 64), np.nan, dtype=np.float32)))
    assert main(["detect", "dead.fits", "-CATALOG_NAME", "dead.cat"]) == 2
    assert not Path("dead.cat").exists()


def test_cli_help_and_config_errors(workdir, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["detect", "--help"])
    assert exit_.value.code == 0
    assert "-CATALOG_NAME" in capsys.readouterr().out
    assert main(["detect", "whatever.fits", "-DETECT_THRES", "3"]) == 2
    assert "DETECT_THRES" in capsys.readouterr().err


def test_cli_does_not_import_prefect_or_cloud_clients():
    import subprocess
    import sys

    code = "import sys, canfar_catalogue.cli.main as m; m.build_parser(); " \
        "import canfar_catalogue.science; print(sorted(k for k in sys.modules if k.split('.')[0] in ('prefect','vos','cadcdata','openstack','htcondor2')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_quantised_float_exposures_read_like_megacam_p_files(workdir):
    """Processed MegaCam files are float32, Rice-compressed with quantisation and dithering."""
    pixels, _ = ccd_image(ExposureSpec.small(seed=4, nccd=1, size=256), 1)
    data = pixels.astype(np.float32) * np.float32(1.25) - np.float32(200.0)
    data[10, 10:20] = np.nan
    hdu = fits.CompImageHDU(data, compression_type="RICE_1", quantize_level=16.0, name="ccd00")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto("float.fits.fz")
    ccd = list_ccds("float.fits.fz")[0]
    read, _ = read_ccd("float.fits.fz", ccd)
    assert read.dtype == np.float32
    assert np.isnan(read[10, 10:20]).all()
    finite = np.isfinite(data)
    assert np.allclose(read[finite], data[finite], atol=2.0)  # within the quantisation step
    result = run_exposure("float.fits.fz", ALL, "float.cat", workers=1)
    assert result.count > 10 and not result.failed


def test_synthetic_float32_exposures_are_quantised_rice_like_megacam(workdir):
    spec = ExposureSpec(nccd=1, shape=(256, 256), seed=3, pixel_type="float32")
    from canfar_catalogue.science.synthetic import write_exposure

    write_exposure("f.fits.fz", spec)
    write_exposure("again.fits.fz", spec)
    assert Path("f.fits.fz").read_bytes() == Path("again.fits.fz").read_bytes()  # deterministic from the seed
    with fits.open("f.fits.fz", disable_image_compression=True) as hdul:
        assert hdul[1].header["ZBITPIX"] == -32 and hdul[1].header["ZCMPTYPE"] == "RICE_1"
        assert "ZSCALE" in hdul[1].columns.names  # quantised, as fpack does for floats
        assert hdul[1].header["ZQUANTIZ"] == "SUBTRACTIVE_DITHER_1"  # and dithered, as fpack does
    data, _ = read_ccd("f.fits.fz", list_ccds("f.fits.fz")[0])
    pixels, _ = ccd_image(spec, 1)
    assert np.abs(data - pixels).max() < 10.0  # within the quantisation of a sky with sigma ~25


def _rice_layouts():
    rng = np.random.default_rng(0)
    floats = rng.normal(1000, 10, (50, 64)).astype(np.float32)
    floats[3, 5] = np.nan
    floats[10, 0:3] = np.nan
    floats[20, 7] = 0.0  # SUBTRACTIVE_DITHER_2 keeps exact zeros
    for method, code in (("NO_DITHER", -1), ("SUBTRACTIVE_DITHER_1", 1), ("SUBTRACTIVE_DITHER_2", 2)):
        for rows in (1, 7):  # one row a tile (fpack's default), and a last tile cut short
            yield f"float32-{method}-{rows}-rows", fits.CompImageHDU(
                floats, compression_type="RICE_1", quantize_level=4.0, quantize_method=code,
                dither_seed=17, tile_shape=(rows, 64),
            ), True
    yield "uint16", fits.CompImageHDU(rng.integers(0, 65535, (50, 64)).astype(np.uint16), compression_type="RICE_1"), True
    # every kind of Rice block: constant (all differences zero), full-range noise (stored whole), and sky
    mixed = rng.normal(1000, 5, (60, 70))
    mixed[10:20] = 1234
    mixed[30:40] = rng.integers(-32768, 32767, (10, 70))
    for dtype in (np.int16, np.uint16, np.int32):
        yield f"{np.dtype(dtype).name}-mixed-blocks", fits.CompImageHDU(
            mixed.astype(dtype), compression_type="RICE_1", tile_shape=(1, 70)), True
    yield "int16-last-tile-short", fits.CompImageHDU(mixed.astype(np.int16), compression_type="RICE_1",
                                                     tile_shape=(7, 70)), True
    yield "int32", fits.CompImageHDU(rng.integers(-2**30, 2**30, (50, 64)).astype(np.int32), compression_type="RICE_1"), True
    scaled = fits.CompImageHDU(mixed.astype(np.int16), compression_type="RICE_1")
    scaled.header.update(BSCALE=2.5, BZERO=100.0, BLANK=1234)  # the constant rows are blank
    yield "int16-bscale-blank", scaled, True
    yield "square-tiles", fits.CompImageHDU(floats, compression_type="RICE_1", tile_shape=(16, 16)), False
    yield "gzip", fits.CompImageHDU(floats, compression_type="GZIP_1"), False


@pytest.mark.parametrize("name, hdu, fast", list(_rice_layouts()), ids=lambda v: v if isinstance(v, str) else "")
def test_rice_row_tiles_decode_to_the_same_bits_as_astropy(workdir, name, hdu, fast):
    from canfar_catalogue.science.rice import decode_rice_rows

    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto("x.fits.fz")
    with fits.open("x.fits.fz", do_not_scale_image_data=True) as hdul:
        expected = hdul[1].data
    ccd = list_ccds("x.fits.fz")[0]
    got = decode_rice_rows("x.fits.fz", ccd.header_offset, ccd.data_offset)
    if not fast:
        assert got is None  # a layout fpack does not write: astropy's general path
        data, _ = read_ccd("x.fits.fz", ccd)
        assert np.array_equal(data, expected, equal_nan=True)
        return
    assert got is not None and got.dtype == expected.dtype and got.flags.writeable
    assert np.array_equal(got, expected, equal_nan=expected.dtype.kind == "f")
    # as pixel values (integers converted as they are decoded): the bits scaling.to_float32 gives
    scaling = Scaling.of(fits.Header.fromstring(ccd.header))
    pixels = decode_rice_rows("x.fits.fz", ccd.header_offset, ccd.data_offset, scaling)
    assert pixels.dtype == np.float32 and pixels.flags.c_contiguous and pixels.flags.writeable
    assert np.array_equal(pixels.view(np.uint32), to_float32(expected, scaling).view(np.uint32))
    data, _ = read_ccd("x.fits.fz", ccd)
    assert np.array_equal(data.view(np.uint32), pixels.view(np.uint32))


@pytest.mark.parametrize("blank, nan_at", [(5, [0]), (5.0, [0]), (True, [2]), (-2**63, []), (5.5, []),
                                            ("5", []), (10**30, []), (None, [])])
def test_blank_marks_the_stored_values_it_equals_as_a_number(blank, nan_at):
    """BLANK is compared with the stored integers as a number, whatever type the header gives it; one no
    stored integer can equal marks nothing, and never stops the CCD being read."""
    header = fits.Header()
    if blank is not None:
        header["BLANK"] = blank
    stored = np.array([5, 6, 1], dtype=np.int16)
    assert np.flatnonzero(np.isnan(to_float32(stored, Scaling.of(header)))).tolist() == nan_at


@pytest.mark.parametrize("bytepix", [1, 2, 4])
def test_rice_tiles_decode_as_cfitsio_decodes_them_and_corrupt_ones_are_refused(bytepix):
    """Our decoder against cfitsio's (astropy's decompress_rice_1_c), tile by tile: the same pixels from
    every kind of block and block size, and an error wherever cfitsio reports one (cut short, bytes
    left over, garbage)."""
    from astropy.io.fits.hdu.compressed._compression import compress_rice_1_c, decompress_rice_1_c

    from canfar_catalogue.science import _rice

    rng = np.random.default_rng(bytepix)
    draws = np.random.default_rng(100 + bytepix)  # the scalings' own: the tiles stay those cfitsio is known to survive
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[bytepix]
    info = np.iinfo(dtype)
    agreed = refused = blanks = 0
    for trial in range(300):
        n, blocksize = int(rng.integers(1, 300)), int(rng.choice([16, 32]))
        kind = trial % 4
        if kind == 0:
            pixels = np.full(n, rng.integers(info.min, info.max))  # constant: empty blocks
        elif kind == 1:
            pixels = rng.integers(info.min, info.max, n, endpoint=True)  # full range: stored whole
        else:
            pixels = np.clip(rng.normal(0, 10.0 ** rng.uniform(0, 3), n).cumsum() * (kind - 2) + rng.normal(50, 5, n),
                             info.min, info.max)
        tile = compress_rice_1_c(pixels.astype(dtype).tobytes(), blocksize, bytepix)
        if trial % 3 == 1:  # damage it: cut short, one byte too many, or garbage in the middle
            tile = [tile[:-1], tile + b"\x00", tile[:2] + bytes(rng.integers(0, 256, len(tile)).astype(np.uint8))
                    ][trial % 9 // 3]
        try:
            expected = np.frombuffer(decompress_rice_1_c(tile, blocksize, bytepix, n), dtype=dtype)
        except Exception:
            expected = None
        out = np.empty(n, dtype=dtype)
        spans = np.array([[len(tile), 0]], dtype=np.int64)
        if expected is None:
            with pytest.raises(ValueError, match="tile 1: corrupt"):
                _rice.decode(tile, spans, n, bytepix, blocksize, out)
            refused += 1
        else:
            _rice.decode(tile, spans, n, bytepix, blocksize, out)
            assert np.array_equal(out, expected), trial
            agreed += 1
            if bytepix > 1:  # decoded straight into pixel values: the same floats as scaling.to_float32's
                scaling = Scaling(float(draws.normal(0, 3e4)), [1.0, float(draws.uniform(0.1, 3))][trial % 2],
                                  int(expected[draws.integers(n)]) if trial % 3 else None)
                pixels = np.empty(n, dtype=np.float32)
                _rice.decode(tile, spans, n, bytepix, blocksize, pixels,
                             (scaling.zero, scaling.scale, scaling.blank))
                wanted = to_float32(expected, scaling)
                assert np.array_equal(pixels.view(np.uint32), wanted.view(np.uint32)), trial
                blanks += int(np.isnan(wanted).sum())
    assert agreed > 150 and refused > 30
    assert bytepix == 1 or blanks > 50


@pytest.mark.parametrize("bytepix", [1, 2, 4])
@pytest.mark.parametrize("method", [1, 2])
def test_dithered_tiles_are_restored_as_cfitsio_restores_them(bytepix, method):
    """Our unquantiser against cfitsio's (astropy's unquantize_float_c), tile by tile, to the bit: seeds
    near the end of the dither sequence and tiles long enough to wrap it, blank pixels (which use up a
    dither) and SUBTRACTIVE_DITHER_2's exact zeros."""
    from astropy.io.fits.hdu.compressed._compression import unquantize_float_c

    from canfar_catalogue.science import _dither

    rng = np.random.default_rng(10 * bytepix + method)
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[bytepix]
    info = np.iinfo(dtype)
    for trial in range(40):
        tile_pixels, tiles = int(rng.integers(1, 12_000)), int(rng.integers(1, 4))
        pixels = tile_pixels * tiles - int(rng.integers(0, tile_pixels))  # the last tile may be short
        stored = rng.integers(max(info.min, -5000), min(info.max, 5000), pixels, endpoint=True).astype(dtype)
        blank = int(stored[rng.integers(0, pixels)]) if trial % 2 else None
        if bytepix == 4:
            stored[rng.random(pixels) < 0.01] = -2147483646  # SUBTRACTIVE_DITHER_2's zero
        zdither0 = int(rng.choice([1, 9_999, 10_000, rng.integers(1, 10_000)]))
        scales, zeros = rng.uniform(0.01, 3.0, tiles), rng.uniform(-100.0, 1000.0, tiles)
        out = np.empty(pixels, dtype=np.float32)
        _dither.unquantise(stored, bytepix, tile_pixels, zdither0, scales, zeros, method, blank, out)
        for t, first in enumerate(range(0, pixels, tile_pixels)):
            tile = stored[first : first + tile_pixels]
            expected = np.frombuffer(unquantize_float_c(
                tile.tobytes(), zdither0 + t, tile.size, scales[t], zeros[t], method, int(blank is not None),
                blank or 0, float("nan"), bytepix), dtype=np.float32)
            assert np.array_equal(out[first : first + tile.size], expected, equal_nan=True), (trial, t)


def test_a_corrupt_rice_tile_is_a_clear_ccd_error(workdir):
    pixels, _ = ccd_image(ExposureSpec.small(seed=5, nccd=1, size=128), 1)
    hdu = fits.CompImageHDU(pixels.astype(np.float32), compression_type="RICE_1", quantize_method=1, name="ccd00")
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto("bad.fits.fz")
    with fits.open("bad.fits.fz", disable_image_compression=True) as hdul:
        heap = hdul.fileinfo(1)["datLoc"] + hdul[1].header["NAXIS1"] * hdul[1].header["NAXIS2"]
    raw = bytearray(Path("bad.fits.fz").read_bytes())
    raw[heap : heap + 4000] = bytes(4000)  # the first tiles' Rice codes become zeros
    Path("bad.fits.fz").write_bytes(bytes(raw))
    with pytest.raises(CCDError) as caught:
        read_ccd("bad.fits.fz", list_ccds("bad.fits.fz")[0])
    assert "CCD00" in str(caught.value) and "cannot decompress" in str(caught.value)


def test_a_zeropoint_from_the_header_is_used_only_when_asked_for_and_named(workdir, small_exposure):
    """--zeropoint-key PHOTZP: every magnitude moves by the keyword's value, LDAC records it, a note
    says so; a CCD without the keyword is skipped and named, never given MAG_ZEROPOINT instead."""
    from canfar_catalogue.science import ConfigError
    from canfar_catalogue.science.synthetic import PHOTZP

    param = workdir / "m.param"
    param.write_text("NUMBER\nEXT_NUMBER\nX_IMAGE\nY_IMAGE\nMAG_AUTO\nMAG_ISO\nMU_MAX\n")
    plain = load_config(overrides=["-PARAMETERS_NAME", str(param)])
    keyed = load_config(overrides=["-PARAMETERS_NAME", str(param)], zeropoint_key="photzp")
    assert keyed.zeropoint_key == "PHOTZP" and keyed.fingerprint() != plain.fingerprint()
    assert any("PHOTZP header keyword" in note for note in keyed.notes)
    a = ascii.read(run_exposure(small_exposure, plain, workdir / "a.cat", workers=1).catalogue, format="sextractor")
    b = ascii.read(run_exposure(small_exposure, keyed, workdir / "b.cat", workers=1).catalogue, format="sextractor")
    for name in ("MAG_AUTO", "MAG_ISO", "MU_MAX"):
        assert np.allclose(b[name] - a[name], PHOTZP, atol=2e-4), name
    command = ["detect", str(small_exposure), "-q", "--zeropoint-key", "PHOTZP", "-PARAMETERS_NAME", str(param),
               "-CATALOG_NAME", str(workdir / "cli.cat")]
    assert main(command) == 0
    assert np.array_equal(ascii.read(workdir / "cli.cat", format="sextractor")["MAG_AUTO"], b["MAG_AUTO"])

    ldac = load_config(overrides=["-PARAMETERS_NAME", str(param), "-CATALOG_TYPE", "FITS_LDAC"], zeropoint_key="PHOTZP")
    with fits.open(run_exposure(small_exposure, ldac, workdir / "c.ldac.fits", workers=1).catalogue) as hdul:
        heads = [fits.Header.fromstring("".join(str(card).ljust(80) for card in h.data[0][0]))
                 for h in hdul if h.name == "LDAC_IMHEAD"]
        assert len(heads) == 2 and {head["SEXMGZPT"] for head in heads} == {PHOTZP}

    with fits.open(small_exposure) as hdul:  # one CCD without the keyword
        del hdul[1].header["PHOTZP"]
        hdul.writeto(workdir / "nozp.fits")
    result = run_exposure(workdir / "nozp.fits", keyed, workdir / "d.cat", workers=1)
    assert [c.ext_number for c in result.failed] == [1]
    assert "PHOTZP header keyword" in result.failed[0].error and result.count > 0

    with pytest.raises(ConfigError, match="not a FITS header keyword"):
        load_config(zeropoint_key="PHOT ZP")


MAIN_PROBE = """
import os, sys, threading
if __name__ == "__mp_main__":  # multiprocessing running this main module again in a worker
    open(os.environ["PROBE"], "a").write("imported again in a CCD worker\\n")
from canfar_catalogue.science import load_config, measure_exposure
if __name__ == "__main__":
    threading.Thread(target=threading.Event().wait, daemon=True).start()  # threads, as in a flow run: a fork server
    print(measure_exposure(sys.argv[1], load_config(), workers=2).count)
"""


def test_ccd_workers_of_a_parent_with_threads_do_not_run_its_main_module_again(small_exposure, tmp_path):
    """A flow run's main module is Prefect's engine; run again in each CCD worker it imported all of Prefect."""
    (tmp_path / "main_probe.py").write_text(MAIN_PROBE)
    probe = tmp_path / "probe.txt"
    done = subprocess.run([sys.executable, "-m", "main_probe", str(small_exposure)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(tmp_path), "PROBE": str(probe)})
    assert done.returncode == 0, done.stderr
    assert int(done.stdout.split()[-1]) > 0
    assert not probe.exists(), probe.read_text()
