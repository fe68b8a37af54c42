"""CATALOG_TYPE FITS_1.0: laid out as source-extractor writes it for a multi-extension image (a primary
HDU with the extraction's cards, one OBJECTS table per CCD), the same rows as ASCII_HEAD, and stored and
skipped by the flows as ``<id>.cat.fits``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table, vstack
from astropy.utils.exceptions import AstropyUserWarning

from canfar_catalogue.flows.exposure import catalogue_exposure
from canfar_catalogue.science import load_config, run_exposure
from canfar_catalogue.science.synthetic import ExposureSpec, write_exposure

from . import reference


@pytest.fixture(scope="module")
def exposure(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fits10") / "1056213p.fits.fz"
    write_exposure(path, ExposureSpec(nccd=3, shape=(1024, 1024), seed=8))
    return path


def _config(tmp_path: Path, catalog_type: str, *extra: str):
    param = tmp_path / "cols.param"
    param.write_text("NUMBER\nEXT_NUMBER\nX_IMAGE\nY_IMAGE\nMAG_AUTO\nFLUX_APER(2)\nFLAGS\n")
    return load_config(overrides=["-PARAMETERS_NAME", str(param), "-CATALOG_TYPE", catalog_type,
                                  "-PHOT_APERTURES", "5,10", *extra])


def test_fits10_holds_one_objects_table_per_ccd_with_the_rows_of_ascii_head(exposure, tmp_path):
    table = run_exposure(exposure, _config(tmp_path, "FITS_1.0"), tmp_path / "x.cat.fits")
    text = run_exposure(exposure, _config(tmp_path, "ASCII_HEAD"), tmp_path / "x.cat")
    rows = reference.read(text.catalogue)
    with fits.open(table.catalogue) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY", "OBJECTS", "OBJECTS", "OBJECTS"]
        assert hdul[0].header["NAXIS"] == 0 and hdul[0].header["SEXNFIN"] == table.count == len(rows)
        assert hdul[0].header["FITSNEXT"] == 3 and hdul[0].header["SEXNPARA"] == 7
        assert hdul[0].header["SEXAPERD"] == 5.0
        for ccd, hdu in zip(table.measured(), hdul[1:]):
            assert hdu.data["NUMBER"][0] == 1 and len(hdu.data) == ccd.count  # NUMBER starts again in each CCD
            assert set(hdu.data["EXT_NUMBER"]) == {ccd.ext_number}
            assert hdu.columns["FLUX_APER"].format == "2E" and hdu.columns["X_IMAGE"].unit == "pixel"
    every_ccd = vstack([Table.read(table.catalogue, hdu=n) for n in (1, 2, 3)])  # as the README says to read it
    with pytest.warns(AstropyUserWarning, match="reading in first available table"):
        assert len(Table.read(table.catalogue)) < len(every_ccd) == len(rows)  # Table.read alone: the first CCD only
    assert np.array_equal(every_ccd["NUMBER"], rows["NUMBER"]) and np.array_equal(every_ccd["EXT_NUMBER"], rows["EXT_NUMBER"])
    assert np.allclose(every_ccd["X_IMAGE"], rows["X_IMAGE"], atol=5e-4)
    assert np.allclose(every_ccd["FLUX_APER"][:, 1], rows["FLUX_APER_1"], rtol=1e-6)


@pytest.mark.parity
@pytest.mark.skipif(not reference.have_reference(), reason="Debian's source-extractor/funpack are not installed")
def test_fits10_is_laid_out_as_source_extractor_writes_it(exposure, tmp_path):
    param = reference.write_param(tmp_path / "all.param")
    theirs = reference.run_classic(exposure, tmp_path / "classic", param, "-CATALOG_TYPE", "FITS_1.0", name="t.cat.fits")
    config = load_config(overrides=["-PARAMETERS_NAME", str(param), "-CATALOG_TYPE", "FITS_1.0"])
    ours = run_exposure(exposure, config, tmp_path / "o.cat.fits").catalogue
    described = lambda h: [(c.name, c.format, c.unit, c.disp, c.dim) for c in h.columns]  # noqa: E731
    with fits.open(theirs) as t, fits.open(ours) as o:
        assert [h.name for h in o] == [h.name for h in t] == ["PRIMARY"] + ["OBJECTS"] * 3
        assert o[0].header["NAXIS"] == t[0].header["NAXIS"] == 0
        common = {"FITSFILE", "FITSNEXT", "SEXGAIN", "SEXTHLDT", "SEXTHLD", "SEXMINAR", "SEXDBLDN", "SEXDBLDC",
                  "SEXCLN", "SEXSATLV", "SEXMGZPT", "SEXBKGSX", "SEXNFIN", "SEXNPARA"}
        assert common <= set(o[0].header) and common <= set(t[0].header)
        for key in ("SEXTHLDT", "SEXTHLD", "SEXMINAR", "SEXDBLDN", "SEXNPARA", "FITSNEXT"):
            assert o[0].header[key] == t[0].header[key], key
        for mine, reference_hdu in zip(o[1:], t[1:]):
            assert described(mine) == described(reference_hdu)
            assert [mine.header.comments[f"TTYPE{i}"] for i in range(1, len(mine.columns) + 1)] == \
                   [reference_hdu.header.comments[f"TTYPE{i}"] for i in range(1, len(mine.columns) + 1)]
            assert mine.data["NUMBER"][0] == reference_hdu.data["NUMBER"][0] == 1
            assert abs(len(mine.data) - len(reference_hdu.data)) <= 0.01 * len(reference_hdu.data)


def test_the_flows_store_and_skip_a_fits10_catalogue_under_its_own_name(local_site, tmp_path):
    config = _config(tmp_path, "FITS_1.0")
    destination = f"file://{tmp_path}/out"
    first = catalogue_exposure("1056216p", local_site["archive"], destination, config_json=config.to_json())
    assert first["status"] == "completed" and first["catalogue"].endswith("1056216p.cat.fits")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["1056216p.cat.fits", "1056216p.provenance.json"]
    record = json.loads((tmp_path / "out" / "1056216p.provenance.json").read_text())
    assert record["catalogue"] == "1056216p.cat.fits"
    with fits.open(tmp_path / "out" / "1056216p.cat.fits") as hdul:
        assert sum(len(h.data) for h in hdul[1:]) == record["sources"]
    again = catalogue_exposure("1056216p", local_site["archive"], destination, config_json=config.to_json())
    assert again["status"] == "skipped"
