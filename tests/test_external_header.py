"""HEADER_SUFFIX: an external header's cards over each CCD's own, as source-extractor reads them (SCAMP's
.head moves the WCS, and every column derived from it follows)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from canfar_catalogue.science import ConfigError, load_config, run_exposure
from canfar_catalogue.science.external_header import beside, merged, read_blocks
from canfar_catalogue.science.synthetic import ExposureSpec, write_exposure

from . import reference

SHIFTED = "CRVAL1  =                151.0 / refined\nCOMMENT from SCAMP\nEND\nCRVAL1  =                152.0\nEND\n"
COLUMNS = ("NUMBER", "EXT_NUMBER", "X_IMAGE", "Y_IMAGE", "ALPHA_J2000", "DELTA_J2000")


@pytest.fixture(scope="module")
def exposure(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("head") / "1056213p.fits.fz"
    write_exposure(path, ExposureSpec(nccd=2, shape=(1024, 1024), seed=8))
    return path


def test_a_block_replaces_its_ccds_cards_but_not_how_the_pixels_are_stored(tmp_path):
    head = tmp_path / "x.fits.head"
    head.write_text("CRVAL1  =                151.0 / refined\nBITPIX  =                   16\nCOMMENT scamp\nEND\n"
                    "CRVAL2  =                 -2.5\nEND\n")
    blocks = read_blocks(head)
    assert len(blocks) == 2 and [c.keyword for c in blocks[0]] == ["CRVAL1", "BITPIX", "COMMENT"]
    header = fits.Header([("BITPIX", -32), ("NAXIS", 0), ("CRVAL1", 150.0), ("CRVAL2", 2.0)])
    after = fits.Header.fromstring(merged(header.tostring(), blocks[0]))
    assert after["CRVAL1"] == 151.0 and after.comments["CRVAL1"] == "refined" and after["BITPIX"] == -32
    assert after["CRVAL2"] == 2.0 and list(after["COMMENT"]) == ["scamp"]
    assert beside(Path("/d/x.fits.fz"), ".head") == Path("/d/x.fits.head")
    assert beside(Path("x.fits"), ".ahead") == Path("x.ahead")
    head.write_text("CRVAL1  =                151.0\nnot a card at all = = =\nEND\n")
    with pytest.raises(ConfigError, match=r"x\.fits\.head, line 2"):
        read_blocks(head)


def test_the_external_header_moves_the_sky_positions_of_each_ccd(exposure, tmp_path):
    param = tmp_path / "sky.param"
    param.write_text("\n".join(COLUMNS) + "\n")
    plain = run_exposure(exposure, load_config(overrides=["-PARAMETERS_NAME", str(param)], image=exposure),
                         tmp_path / "plain.cat")
    head = beside(exposure, ".head")
    head.write_text(SHIFTED)
    try:
        config = load_config(overrides=["-PARAMETERS_NAME", str(param), "-CATALOG_TYPE", "FITS_LDAC"], image=exposure)
        assert config.header_file == str(head) and any(str(head) in note for note in config.notes)
        assert config.fingerprint() == load_config(overrides=["-PARAMETERS_NAME", str(param), "-CATALOG_TYPE",
                                                              "FITS_LDAC"]).fingerprint()
        moved = run_exposure(exposure, config, tmp_path / "moved.ldac.fits")
    finally:
        head.unlink()
    before = reference.read(plain.catalogue)
    with fits.open(moved.catalogue) as hdul:
        after = np.concatenate([np.asarray(h.data) for h in hdul if h.name == "LDAC_OBJECTS"])
        carried = [fits.Header.fromstring("".join(str(c).ljust(80) for c in h.data[0][0]))["CRVAL1"]
                   for h in hdul if h.name == "LDAC_IMHEAD"]
    assert carried == [151.0, 152.0]  # the catalogue's copy of each CCD header has the new cards
    assert np.allclose(after["X_IMAGE"], before["X_IMAGE"], atol=1e-4)  # the same pixels, the same sources
    for ext, shift in ((1, 1.0), (2, 2.0)):
        one = before["EXT_NUMBER"] == ext
        assert np.median(after["ALPHA_J2000"][one] - before["ALPHA_J2000"][one]) == pytest.approx(shift, abs=0.05)


@pytest.mark.parity
@pytest.mark.skipif(not reference.have_reference(), reason="Debian's source-extractor/funpack are not installed")
def test_the_external_header_moves_positions_as_source_extractor_moves_them(exposure, tmp_path):
    param = reference.write_param(tmp_path / "sky.param", COLUMNS)
    workdir = tmp_path / "classic"
    theirs_plain = reference.read(reference.run_classic(exposure, workdir, param, name="plain.cat"))
    (workdir / "1056213p.head").write_text(SHIFTED)  # beside 1056213p.fits, as source-extractor names it
    theirs = reference.read(reference.run_classic(exposure, workdir, param, name="moved.cat"))
    beside(exposure, ".head").write_text(SHIFTED)
    try:
        ours = reference.read(run_exposure(exposure, load_config(overrides=["-PARAMETERS_NAME", str(param)],
                                                                 image=exposure), tmp_path / "o.cat").catalogue)
    finally:
        beside(exposure, ".head").unlink()
    assert not np.allclose(theirs["ALPHA_J2000"], theirs_plain["ALPHA_J2000"])  # their positions did move
    matched = reference.match(ours, theirs)
    assert matched.fraction_of_theirs > 0.98
    assert np.max(np.abs(matched.ours["ALPHA_J2000"] - matched.theirs["ALPHA_J2000"])) < 1e-5
    assert np.max(np.abs(matched.ours["DELTA_J2000"] - matched.theirs["DELTA_J2000"])) < 1e-5


def test_the_flows_read_an_exposures_header_from_the_archive_and_run_it_again_when_it_changes(local_site, tmp_path):
    """``{id}.fits.head`` beside ``{id}.fits.fz`` in the archive: fetched, applied, its md5 in the record; a
    new one makes the exposure run again; an exposure without one is measured without it."""
    import json

    from canfar_catalogue.flows.batch import catalogue_batch
    from canfar_catalogue.flows.exposure import catalogue_exposure

    archive = tmp_path / "archive"
    for seed, observation_id in enumerate(("1056240p", "1056241p")):
        write_exposure(archive / f"{observation_id}.fits.fz", ExposureSpec.small(seed=seed))
    (archive / "1056240p.fits.head").write_text(SHIFTED)
    param = tmp_path / "sky.param"
    param.write_text("\n".join(COLUMNS) + "\n")
    out = tmp_path / "out"
    rows = catalogue_batch(ids=["1056240p", "1056241p"], destination=f"file://{out}", archive=f"file://{archive}",
                           overrides=["-PARAMETERS_NAME", str(param)])
    assert [row["status"] for row in rows] == ["completed", "completed"]
    records = {i: json.loads((out / f"{i}.provenance.json").read_text()) for i in ("1056240p", "1056241p")}
    assert set(records["1056240p"]["companion_md5"]) == {"header"} and records["1056241p"]["companion_md5"] == {}
    moved, plain = (reference.read(out / f"{i}.cat") for i in ("1056240p", "1056241p"))
    first = moved["EXT_NUMBER"] == 1
    assert np.median(moved["ALPHA_J2000"][first]) == pytest.approx(151.0, abs=0.6)  # the header's CRVAL1
    assert np.median(plain["ALPHA_J2000"][plain["EXT_NUMBER"] == 1]) == pytest.approx(150.0, abs=0.6)

    again = catalogue_batch(ids=["1056240p", "1056241p"], destination=f"file://{out}", archive=f"file://{archive}",
                            overrides=["-PARAMETERS_NAME", str(param)])
    assert [row["status"] for row in again] == ["skipped", "skipped"]  # with and without a header: done
    (archive / "1056240p.fits.head").write_text(SHIFTED.replace("151.0", "149.0"))
    direct = catalogue_exposure("1056240p", f"file://{archive}", f"file://{out}",
                                config_json=load_config(overrides=["-PARAMETERS_NAME", str(param)]).to_json())
    assert direct["status"] == "completed"  # a new header is new input
    assert json.loads((out / "1056240p.provenance.json").read_text())["companion_md5"]["header"] != \
        records["1056240p"]["companion_md5"]["header"]
