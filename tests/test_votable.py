"""CATALOG_TYPE ASCII_VOTABLE: laid out as source-extractor writes it, mended where it is wrong (vector
arraysize, IDs, namespace), read by astropy without a warning, equal to ASCII_HEAD, and stored and
skipped by the flows as ``<id>.cat.xml``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from xml.etree import ElementTree

import numpy as np
import pytest
from astropy.io import votable

from canfar_catalogue.flows.exposure import catalogue_exposure
from canfar_catalogue.science import load_config, run_exposure
from canfar_catalogue.science.synthetic import ExposureSpec, write_exposure
from canfar_catalogue.science.votable import NAMESPACE

from . import reference

COLUMNS = ("NUMBER", "EXT_NUMBER", "X_IMAGE", "Y_IMAGE", "ALPHA_J2000", "MAG_AUTO", "FLUX_APER(2)", "FLUX_RADIUS(2)",
           "ISOAREA_IMAGE", "FLAGS", "MU_MAX", "VIGNET(5,3)")
EXTRA = ["-PHOT_APERTURES", "5,10", "-PHOT_FLUXFRAC", "0.5,0.9"]


@pytest.fixture(scope="module")
def exposure(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("votable") / "1056213p.fits.fz"
    write_exposure(path, ExposureSpec(nccd=3, shape=(1024, 1024), seed=8))
    return path


def _config(tmp_path: Path, catalog_type: str, columns=COLUMNS):
    param = tmp_path / "cols.param"
    param.write_text("\n".join(columns) + "\n")
    return load_config(overrides=["-PARAMETERS_NAME", str(param), "-CATALOG_TYPE", catalog_type, *EXTRA])


def _parse(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning fails the test
        return votable.parse(str(path), verify="warn")


def test_votable_reads_without_a_warning_and_holds_the_rows_of_ascii_head(exposure, tmp_path):
    config = _config(tmp_path, "ASCII_VOTABLE")
    xml = run_exposure(exposure, config, tmp_path / "x.cat.xml")
    rows = reference.read(run_exposure(exposure, _config(tmp_path, "ASCII_HEAD"), tmp_path / "x.cat").catalogue)
    document = _parse(xml.catalogue)
    sources = document.get_table_by_id("Source_List").to_table()
    assert len(sources) == len(rows) == xml.count > 1000
    fields = {f.name: f for f in document.get_table_by_id("Source_List").fields}
    assert fields["FLUX_APER"].arraysize == "2" and fields["VIGNET"].arraysize == "5x3"
    assert sources["FLUX_APER"].shape == (len(rows), 2) and sources["VIGNET"].shape == (len(rows), 3, 5)
    for name in ("NUMBER", "EXT_NUMBER", "ISOAREA_IMAGE", "FLAGS"):
        assert np.array_equal(sources[name], rows[name]), name
    for name in ("X_IMAGE", "Y_IMAGE", "ALPHA_J2000", "MAG_AUTO", "MU_MAX"):
        assert np.allclose(sources[name], rows[name], rtol=1e-6, atol=0), name
    assert np.allclose(sources["FLUX_APER"][:, 1], rows["FLUX_APER_1"], rtol=1e-6)
    assert np.allclose(sources["FLUX_RADIUS"][:, 1], rows["FLUX_RADIUS_1"], rtol=1e-6)
    assert np.allclose(sources["VIGNET"][:, 1, 2], rows["VIGNET_7"], rtol=1e-6)  # row 1, column 2: the stamp's centre
    extensions = document.get_table_by_id("Extension_Data").to_table()
    assert list(extensions["Extension"]) == [ccd.ext_number for ccd in xml.measured()]
    assert list(extensions["NSextracted"]) == [ccd.count for ccd in xml.measured()]
    assert np.allclose(extensions["Background_StDev"], [ccd.rms for ccd in xml.measured()], rtol=1e-6)
    config_params = {p.name: p.value for p in document.resources[0].resources[0].resources[0].params}
    assert config_params["Fingerprint"] == config.fingerprint() and config_params["Detect_Thresh"] == "1.5"


@pytest.mark.parity
@pytest.mark.skipif(not reference.have_reference(), reason="Debian's source-extractor/funpack are not installed")
def test_votable_is_laid_out_as_source_extractor_writes_it(exposure, tmp_path):
    """Every column's FIELD as source-extractor's (name, datatype, unit, UCD), but where it is wrong."""
    param = reference.write_param(tmp_path / "all.param", (*reference.ALL_COLUMNS, "FLUX_APER(2)", "VIGNET(5,3)"))
    theirs = reference.run_classic(exposure, tmp_path / "classic", param, "-CATALOG_TYPE", "ASCII_VOTABLE",
                                   "-PHOT_APERTURES", "5,10", name="t.xml")
    config = load_config(overrides=["-PARAMETERS_NAME", str(param), "-CATALOG_TYPE", "ASCII_VOTABLE",
                                    "-PHOT_APERTURES", "5,10"])
    ours = run_exposure(exposure, config, tmp_path / "o.cat.xml").catalogue
    their_root = ElementTree.parse(theirs).getroot()  # no namespace there
    our_root = ElementTree.parse(ours).getroot()
    assert our_root.tag == f"{{{NAMESPACE}}}VOTABLE"
    ns = {"v": NAMESPACE}
    their_fields = their_root.findall("RESOURCE/TABLE/FIELD")
    our_fields = our_root.findall("v:RESOURCE/v:TABLE/v:FIELD", ns)
    mended = {"VIGNET": "phot.count;obs.image"}
    assert [f.get("name") for f in our_fields] == [f.get("name") for f in their_fields]
    for mine, theirs_field in zip(our_fields, their_fields):
        name = mine.get("name")
        assert mine.get("datatype") == theirs_field.get("datatype"), name
        assert (mine.get("unit") or "") == theirs_field.get("unit"), name
        assert mine.get("ucd") == mended.get(name, theirs_field.get("ucd").strip()), name
        assert mine.find("v:DESCRIPTION", ns).text == theirs_field.find("DESCRIPTION").text, name
    assert theirs_field.get("arraysize") == mine.get("arraysize") == "5x3"  # VIGNET, the last column
    flux_aper = [f for f in their_fields if f.get("name") == "FLUX_APER"][-1]
    assert flux_aper.get("arraysize") is None  # what source-extractor gets wrong, and ours does not
    their_tables = [t.get("ID") for t in their_root.iter("TABLE")]
    our_tables = [t.get("ID") for t in our_root.iter(f"{{{NAMESPACE}}}TABLE")]
    assert our_tables == their_tables == ["Source_List", "Extension_Data", "Warnings"]
    assert len(our_root.findall("v:RESOURCE/v:TABLE/v:DATA/v:TABLEDATA/v:TR", ns)) == \
        pytest.approx(len(their_root.findall("RESOURCE/TABLE/DATA/TABLEDATA/TR")), rel=0.01)


def test_the_flows_store_and_skip_a_votable_under_its_own_name(local_site, tmp_path):
    config = _config(tmp_path, "ASCII_VOTABLE", ("NUMBER", "EXT_NUMBER", "X_IMAGE", "Y_IMAGE", "MAG_AUTO"))
    destination = f"file://{tmp_path}/out"
    first = catalogue_exposure("1056217p", local_site["archive"], destination, config_json=config.to_json())
    assert first["status"] == "completed" and first["catalogue"].endswith("1056217p.cat.xml")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["1056217p.cat.xml", "1056217p.provenance.json"]
    record = json.loads((tmp_path / "out" / "1056217p.provenance.json").read_text())
    assert record["catalogue"] == "1056217p.cat.xml"
    assert len(_parse(tmp_path / "out" / "1056217p.cat.xml").get_first_table().array) == record["sources"]
    again = catalogue_exposure("1056217p", local_site["archive"], destination, config_json=config.to_json())
    assert again["status"] == "skipped"
