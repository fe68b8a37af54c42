"""FLAG_IMAGE and FLAG_TYPE: IMAFLAGS_ISO and NIMAFLAGS_ISO as source-extractor composites them,
and a flag map that does not fit the exposure refused by name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from canfar_catalogue.science import load_config, run_exposure
from canfar_catalogue.science.errors import ConfigError, ExposureError
from canfar_catalogue.science.flag_maps import isophotal_flags
from canfar_catalogue.science.synthetic import ExposureSpec, write_exposure

from . import reference

PARAMETERS = ["NUMBER", "EXT_NUMBER", "X_IMAGE", "Y_IMAGE", "IMAFLAGS_ISO", "NIMAFLAGS_ISO", "ISOAREA_IMAGE"]
SPEC = ExposureSpec(nccd=2, shape=(1024, 1024), seed=11)


def _flag_map(path: Path, nccd: int = SPEC.nccd, shape=SPEC.shape, dtype=np.int32) -> Path:
    """Rectangles of bits 1, 2 and 4 (overlapping) and a sprinkle of single pixels flagged 8, 16 or 32."""
    rng = np.random.default_rng(5)
    hdus: list = [fits.PrimaryHDU()]
    for _ in range(nccd):
        flags = np.zeros(shape, dtype=dtype)
        flags[100:400, 100:300] += 1
        flags[300:600, 200:500] += 2
        flags[700:800, :] += 4
        sprinkled = rng.uniform(size=shape) < 0.02
        flags[sprinkled] += rng.choice([8, 16, 32], size=int(sprinkled.sum())).astype(dtype)
        hdus.append(fits.ImageHDU(flags))
    fits.HDUList(hdus).writeto(path)
    return path


@pytest.fixture(scope="module")
def exposure(tmp_path_factory) -> tuple[Path, Path, Path]:
    workdir = tmp_path_factory.mktemp("flags")
    path = workdir / "1056213p.fits.fz"
    write_exposure(path, SPEC)
    return path, _flag_map(workdir / "flags.fits"), reference.write_param(workdir / "flags.param", PARAMETERS)


def test_each_flag_type_composites_the_flags_of_a_sources_pixels_as_source_extractor_does():
    segmap = np.array([[1, 1, 1, 0],
                       [1, 1, 2, 2],
                       [3, 3, 2, 2]])
    flags = np.array([[4, 4, 1, 9],
                      [0, 2, 0, 0],
                      [0, 0, 0, 0]])
    expected = {  # source 1 holds flags 4, 4, 1, 2; source 2 none; source 3 none; the 9 is on the sky
        "OR": ([7, 0, 0], [4, 0, 0]),
        "AND": ([0, 0, 0], [4, 0, 0]),  # source-extractor starts its AND from 0
        "MIN": ([1, 0, 0], [1, 0, 0]),
        "MAX": ([4, 0, 0], [2, 0, 0]),
        "MOST": ([4, 0, 0], [2, 0, 0]),
    }
    for flag_type, (imaflags, count) in expected.items():
        got = isophotal_flags(segmap, flags, 3, flag_type)
        assert got[0].tolist() == imaflags and got[1].tolist() == count, flag_type
    # 32-bit unsigned flags: a negative int32 in the file is its unsigned value
    assert isophotal_flags(np.array([[1]]), np.array([[-1]]) & 0xFFFFFFFF, 1)[0].tolist() == [0xFFFFFFFF]


@pytest.mark.skipif(not reference.have_reference(), reason="Debian's source-extractor/funpack are not installed")
@pytest.mark.parametrize("flag_type, flags_equal, counts_equal", [("OR", 0.99, 0.96), ("MAX", 0.99, 0.97),
                                                                   ("MOST", 0.95, 0.97)])
def test_imaflags_agree_with_source_extractor_given_the_same_flag_map(
    exposure, tmp_path, flag_type, flags_equal, counts_equal
):
    """The rows that differ are sources whose pixels differ by a few on their boundary (sep and
    source-extractor share out the pixels of blended sources differently), and, for MIN and MOST,
    sources that absorbed a detection removed by CLEAN, whose flags source-extractor merges in."""
    path, flag_map, param = exposure
    options = ["-FLAG_IMAGE", str(flag_map), "-FLAG_TYPE", flag_type]
    ours = run_exposure(path, load_config(overrides=["-PARAMETERS_NAME", str(param), *options]), tmp_path / "o.cat")
    theirs = reference.run_classic(path, tmp_path / "classic", param, *options)
    matched = reference.match(reference.read(ours.catalogue), reference.read(theirs))
    assert matched.fraction_of_theirs > 0.99
    mine, their = matched.ours, matched.theirs
    assert (their["NIMAFLAGS_ISO"] > 0).sum() > 300  # the test sees many flagged sources
    assert np.mean(mine["IMAFLAGS_ISO"] == their["IMAFLAGS_ISO"]) > flags_equal
    assert np.mean(mine["NIMAFLAGS_ISO"] == their["NIMAFLAGS_ISO"]) > counts_equal
    apart = np.abs(mine["NIMAFLAGS_ISO"].astype(int) - their["NIMAFLAGS_ISO"])
    assert np.all(apart <= np.maximum(8, 0.15 * their["NIMAFLAGS_ISO"]))  # a few boundary pixels


def test_an_unsigned_flag_map_means_its_unsigned_values(exposure, tmp_path):
    """FITS stores unsigned 16-bit pixels signed, with BZERO 32768.  source-extractor gives sources on
    such a map's unflagged pixels IMAFLAGS_ISO 32768 (measured); here the pixels mean their values."""
    path, signed, param = exposure
    unsigned = _flag_map(tmp_path / "unsigned.fits", dtype=np.uint16)
    assert fits.getheader(unsigned, 1)["BZERO"] == 32768
    results = []
    for flag_map in (signed, unsigned):
        config = load_config(overrides=["-PARAMETERS_NAME", str(param), "-FLAG_IMAGE", str(flag_map)])
        results.append(reference.read(run_exposure(path, config, tmp_path / f"{flag_map.stem}.cat").catalogue))
    assert (results[0]["NIMAFLAGS_ISO"] > 0).sum() > 300
    for column in ("IMAFLAGS_ISO", "NIMAFLAGS_ISO"):
        assert list(results[0][column]) == list(results[1][column])


def test_a_flag_map_that_does_not_fit_the_exposure_is_refused_by_name(exposure, tmp_path):
    path, _, param = exposure

    def run(flag_map: Path) -> None:
        config = load_config(overrides=["-PARAMETERS_NAME", str(param), "-FLAG_IMAGE", str(flag_map)])
        run_exposure(path, config, tmp_path / "x.cat")

    with pytest.raises(ExposureError, match=r"three\.fits: the flag map has 3 image extensions and the exposure "
                                            r"1056213p\.fits\.fz has 2"):
        run(_flag_map(tmp_path / "three.fits", nccd=3))
    with pytest.raises(ExposureError, match=r"no CCD could be measured.*flag map of shape \(512, 512\)"):
        run(_flag_map(tmp_path / "small.fits", shape=(512, 512)))
    assert not (tmp_path / "x.cat").exists()
    with pytest.raises(ExposureError, match=r"a flag map holds integers; this one has >?f"):
        run(_flag_map(tmp_path / "float.fits", dtype=np.float32))


def test_flag_columns_without_a_usable_flag_map_setting_are_refused_by_name(exposure, tmp_path, monkeypatch):
    _, flag_map, param = exposure
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"FLAG_IMAGE .*flag\.fits: no such file; IMAFLAGS_ISO"):
        load_config(overrides=["-PARAMETERS_NAME", str(param)])  # source-extractor's default name, here
    with pytest.raises(ConfigError, match="give one flag map"):
        load_config(overrides=["-PARAMETERS_NAME", str(param), "-FLAG_IMAGE", f"{flag_map},other.fits"])
    with pytest.raises(ConfigError, match="FLAG_TYPE: 'SUM' is not one of AND, MAX, MIN, MOST, OR"):
        load_config(overrides=["-PARAMETERS_NAME", str(param), "-FLAG_IMAGE", str(flag_map), "-FLAG_TYPE", "SUM"])
    # without the flag columns the flag map is not read, and does not change the fingerprint
    plain = load_config()
    assert load_config(overrides=["-FLAG_IMAGE", "nowhere.fits"]).fingerprint() == plain.fingerprint()
    with_flags = load_config(overrides=["-PARAMETERS_NAME", str(param), "-FLAG_IMAGE", str(flag_map)])
    assert with_flags.flag_image == str(flag_map) and with_flags.flag_type == "OR"
