"""CATALOG_TYPE FITS_LDAC: laid out as source-extractor writes it, the same rows as ASCII_HEAD, written
atomically, and stored and skipped by the flows under its own name."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from canfar_catalogue.flows.exposure import catalogue_exposure
from canfar_catalogue.science import catalogue as catalogue_module
from canfar_catalogue.science import load_config, measure_exposure, run_exposure, write_catalogue
from canfar_catalogue.science.columns import COLUMNS
from canfar_catalogue.science.results import Extraction
from canfar_catalogue.science.synthetic import ExposureSpec, write_exposure

from . import reference

ALL = reference.ALL_COLUMNS


@pytest.fixture(scope="module")
def exposure(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ldac") / "1056213p.fits.fz"
    write_exposure(path, ExposureSpec(nccd=3, shape=(1024, 1024), seed=8))
    return path


def _config(tmp_path: Path, catalog_type: str):
    param = tmp_path / "all.param"
    param.write_text("\n".join(ALL) + "\n")
    return load_config(overrides=["-PARAMETERS_NAME", str(param), "-CATALOG_TYPE", catalog_type,
                                  "-ANALYSIS_THRESH", "2.5"])


def test_ldac_holds_each_ccds_header_and_the_same_rows_as_ascii_head(exposure, tmp_path):
    ldac = run_exposure(exposure, _config(tmp_path, "FITS_LDAC"), tmp_path / "x.ldac.fits")
    ascii_head = run_exposure(exposure, _config(tmp_path, "ASCII_HEAD"), tmp_path / "x.cat")
    rows = reference.read(ascii_head.catalogue)
    with fits.open(ldac.catalogue) as hdul:
        assert [h.name for h in hdul] == ["PRIMARY"] + ["LDAC_IMHEAD", "LDAC_OBJECTS"] * 3
        objects = np.concatenate([np.asarray(h.data) for h in hdul if h.name == "LDAC_OBJECTS"])
        heads = [h for h in hdul if h.name == "LDAC_IMHEAD"]
        for ccd, head in zip(ldac.measured(), heads):
            cards = [str(card) for card in head.data[0][0]]
            assert head.columns[0].name == "Field Header Card" and head.header["TDIM1"] == f"(80, {len(cards)})"
            header = fits.Header.fromstring("".join(c.ljust(80) for c in cards))
            assert header["EXTNAME"] == ccd.extname and header["CRVAL1"] == 150.0 and cards[-1].strip() == "END"
            assert header["FITSEXT"] == ccd.ext_number and header["SEXNFIN"] == ccd.count
            assert header["SEXBKDEV"] == pytest.approx(ccd.rms) and header["SEXGAIN"] == 1.6
            assert header["SEXTHLD"] == pytest.approx(1.5 * ccd.rms) and header["SEXATHLD"] == pytest.approx(2.5 * ccd.rms)
    assert len(objects) == len(rows) > 1000
    for name in ALL:  # equal to the printed precision of ASCII_HEAD, and to LDAC's single precision
        ours, printed = np.asarray(objects[name], dtype=float), np.asarray(rows[name], dtype=float)
        decimals = re.fullmatch(r"%\+?\d+(?:\.(\d+))?[dfge]", COLUMNS[name].fmt).group(1)
        places = 0.5 * 10.0 ** -int(decimals) if decimals and COLUMNS[name].fmt.endswith("f") else 0.0
        relative = 0.5 * 10.0 ** (1 - int(decimals)) if COLUMNS[name].fmt[-1] in "ge" else 0.0
        single = 1.2e-7 if COLUMNS[name].ldac == "1E" else 0.0
        assert np.all(np.abs(ours - printed) <= places + (relative + single) * np.abs(printed) + 1e-12), name


def test_a_failed_ldac_write_leaves_nothing_behind(exposure, tmp_path, monkeypatch):
    config = _config(tmp_path, "FITS_LDAC")
    result = measure_exposure(exposure, config)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(catalogue_module, "ldac_hdus", broken)
    target = tmp_path / "out" / "x.ldac.fits"
    target.parent.mkdir()
    with pytest.raises(OSError, match="disk full"):
        write_catalogue(target, result.blocks(), config.parameters, "FITS_LDAC", Extraction(exposure.name, config, result))
    assert list(target.parent.iterdir()) == []


@pytest.mark.parity
@pytest.mark.skipif(not reference.have_reference(), reason="Debian's source-extractor/funpack are not installed")
def test_ldac_is_laid_out_as_source_extractor_writes_it(exposure, tmp_path):
    param = reference.write_param(tmp_path / "all.param")
    theirs = reference.run_classic(exposure, tmp_path / "classic", param, "-CATALOG_TYPE", "FITS_LDAC", name="t.ldac")
    config = load_config(overrides=["-PARAMETERS_NAME", str(param), "-CATALOG_TYPE", "FITS_LDAC"])
    ours = run_exposure(exposure, config, tmp_path / "o.ldac.fits").catalogue
    with fits.open(theirs) as t, fits.open(ours) as o:
        assert [h.name for h in o] == [h.name for h in t]
        for mine, reference_hdu in zip(o, t):
            if mine.name == "LDAC_OBJECTS":
                described = lambda h: [(c.name, c.format, c.unit, c.disp) for c in h.columns]  # noqa: E731
                assert described(mine) == described(reference_hdu)
                assert [mine.header.comments[f"TTYPE{i}"] for i in range(1, len(mine.columns) + 1)] == \
                       [reference_hdu.header.comments[f"TTYPE{i}"] for i in range(1, len(mine.columns) + 1)]
                assert abs(len(mine.data) - len(reference_hdu.data)) <= 0.01 * len(reference_hdu.data)
            elif mine.name == "LDAC_IMHEAD":
                assert mine.columns[0].name == reference_hdu.columns[0].name
                assert re.fullmatch(r"\(80, \d+\)", mine.header["TDIM1"])
                theirs_keys = {str(c)[:8].strip() for c in reference_hdu.data[0][0]}
                ours_keys = {str(c)[:8].strip() for c in mine.data[0][0]}
                for key in ("EXTNAME", "CRVAL1", "CD1_1", "NAXIS1", "FITSEXT", "SEXBKDEV", "SEXGAIN", "SEXSATLV"):
                    assert key in theirs_keys and key in ours_keys, key


def test_the_flows_store_and_skip_an_ldac_catalogue_under_its_own_name(local_site, tmp_path):
    config = _config(tmp_path, "FITS_LDAC")
    destination = f"file://{tmp_path}/out"
    first = catalogue_exposure("1056215p", local_site["archive"], destination, config_json=config.to_json())
    assert first["status"] == "completed" and first["catalogue"].endswith("1056215p.ldac.fits")
    stored = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert stored == ["1056215p.ldac.fits", "1056215p.provenance.json"]
    record = json.loads((tmp_path / "out" / "1056215p.provenance.json").read_text())
    assert record["catalogue"] == "1056215p.ldac.fits"
    with fits.open(tmp_path / "out" / "1056215p.ldac.fits") as hdul:
        assert sum(len(h.data) for h in hdul if h.name == "LDAC_OBJECTS") == record["sources"]
    again = catalogue_exposure("1056215p", local_site["archive"], destination, config_json=config.to_json())
    assert again["status"] == "skipped"
    ascii_config = _config(tmp_path, "ASCII_HEAD")  # another format is other work: made, not skipped
    other = catalogue_exposure("1056215p", local_site["archive"], destination, config_json=ascii_config.to_json())
    assert other["status"] == "completed" and (tmp_path / "out" / "1056215p.cat").exists()


@pytest.mark.skipif(not reference.have_reference(), reason="Debian's source-extractor/funpack are not installed")
def test_vector_columns_are_numbered_and_laid_out_as_source_extractor_writes_them(exposure, tmp_path):
    """FLUX_APER(3) with two apertures: three elements, the last 0; the next column's number skips
    the elements in ASCII_HEAD, and FITS_LDAC holds a 3E column."""
    param = tmp_path / "vec.param"
    param.write_text("NUMBER\nEXT_NUMBER\nX_IMAGE\nY_IMAGE\nFLUX_APER(3)\nMAGERR_APER(2)\nFLUX_RADIUS(2)\nFLAGS\n"
                     "VIGNET(5,3)\n")
    extra = ["-PHOT_APERTURES", "5,10", "-PHOT_FLUXFRAC", "0.5,0.9"]
    config = load_config(overrides=["-PARAMETERS_NAME", str(param), *extra])
    theirs = reference.run_classic(exposure, tmp_path / "classic", param, *extra, name="v.cat")
    ours = run_exposure(exposure, config, tmp_path / "v.cat").catalogue
    header = lambda path: [line for line in path.read_text().splitlines() if line.startswith("#")]  # noqa: E731
    assert header(ours) == header(theirs)
    assert header(ours)[-2].split()[1:3] == ["12", "FLAGS"] and header(ours)[-1].split()[1:3] == ["13", "VIGNET"]
    rows = reference.read(ours)
    assert rows.colnames[4:7] == ["FLUX_APER", "FLUX_APER_1", "FLUX_APER_2"]
    assert (rows["FLUX_APER_2"] == 0).all() and (rows["FLUX_APER_1"] > rows["FLUX_APER"]).mean() > 0.9
    assert (rows["FLUX_RADIUS_1"] > rows["FLUX_RADIUS"]).mean() > 0.9
    assert rows.colnames[-15:] == ["VIGNET"] + [f"VIGNET_{k}" for k in range(1, 15)]  # 5 x 3 pixels, x fastest

    ldac_config = load_config(overrides=["-PARAMETERS_NAME", str(param), "-CATALOG_TYPE", "FITS_LDAC", *extra])
    theirs_ldac = reference.run_classic(exposure, tmp_path / "classic", param, "-CATALOG_TYPE", "FITS_LDAC", *extra,
                                        name="v.ldac")
    ours_ldac = run_exposure(exposure, ldac_config, tmp_path / "v.ldac.fits").catalogue
    with fits.open(theirs_ldac) as t, fits.open(ours_ldac) as o:
        described = lambda h: [(c.name, c.format, c.unit, c.disp, c.dim) for c in h.columns]  # noqa: E731
        assert described(o[2]) == described(t[2])
        objects = np.concatenate([np.asarray(h.data["FLUX_APER"]) for h in o if h.name == "LDAC_OBJECTS"])
        stamps = np.concatenate([np.asarray(h.data["VIGNET"]) for h in o if h.name == "LDAC_OBJECTS"])
    assert objects.shape == (len(rows), 3)
    assert np.allclose(objects[:, 1], rows["FLUX_APER_1"], rtol=1e-6)
    assert stamps.shape == (len(rows), 3, 5)
    assert np.allclose(stamps[:, 1, 2], rows["VIGNET_7"], rtol=1e-6)  # row 1, column 2 of the stamp: its centre
