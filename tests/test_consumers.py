"""Our FITS_LDAC catalogues, read by the programs that consume them: Debian's PSFEx 3.21.1 and SCAMP 2.10.0.

Each program runs offline on our catalogue and on source-extractor's catalogue of the same
CCDs, with its own default configuration apart from where it writes, and the two results are
compared.  SCAMP's internal dispersion needs overlapping exposures; for one exposure it reports
zero, so its dispersion against the reference catalogue (made from the synthetic truth) is
compared instead.  Both programs write their results as VOTable XML (``-XML_NAME``); PSFEx writes floats
into fields it declares int, which astropy's VOTable reader refuses, so the rows are read from
the XML directly.

One setting beyond the output paths: ``-CHECKPLOT_TYPE NONE``.  The default check-plots are PNGs
through PLplot, whose PNG driver Debian installs only with recommended packages; without it
both programs stop at an interactive "Enter device number" prompt.
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS

from canfar_catalogue.science import load_config, run_exposure
from canfar_catalogue.science.ldac import imhead
from canfar_catalogue.science.synthetic import PHOTZP, ExposureSpec, ccd_header, ccd_image, write_exposure

from . import reference

PSFEX = shutil.which("psfex")
SCAMP = shutil.which("scamp")

pytestmark = pytest.mark.skipif(
    not (reference.have_reference() and PSFEX and SCAMP),
    reason="needs Debian's source-extractor, funpack, psfex and scamp (.ci/run installs them)",
)

#: What PSFEx's defaults read (VIGNET, FLUX_APER(1), FLUXERR_APER(1), FLUX_RADIUS, ELONGATION, FLAGS,
#: SNR_WIN, X/Y_IMAGE) and what SCAMP's defaults read (XWIN/YWIN_IMAGE, their errors, FLUX_AUTO).
PARAMETERS = """VIGNET(35,35) X_IMAGE Y_IMAGE FLUX_APER(1) FLUXERR_APER(1) FLUX_RADIUS ELONGATION FLAGS SNR_WIN
XWIN_IMAGE YWIN_IMAGE ERRAWIN_IMAGE ERRBWIN_IMAGE ERRTHETAWIN_IMAGE FLUX_AUTO FLUXERR_AUTO""".split()

SPEC = ExposureSpec(nccd=2, shape=(2048, 1024), seed=3, psf="varying")


@pytest.fixture(scope="module")
def catalogues(tmp_path_factory) -> dict[str, Path]:
    """Our LDAC catalogue and source-extractor's, of the same varying-PSF exposure."""
    workdir = tmp_path_factory.mktemp("consumers")
    exposure = workdir / "1056213p.fits.fz"
    write_exposure(exposure, SPEC)
    param = reference.write_param(workdir / "consumers.param", PARAMETERS)
    config = load_config(overrides=["-PARAMETERS_NAME", str(param), "-CATALOG_TYPE", "FITS_LDAC"])
    ours = run_exposure(exposure, config, workdir / "ours.ldac").catalogue
    theirs = reference.run_classic(exposure, workdir / "classic", param, "-CATALOG_TYPE", "FITS_LDAC",
                                   name="theirs.ldac")
    return {"ours": ours, "theirs": theirs}


def _rows(xml: Path, table: str) -> list[dict[str, str]]:
    """The rows of one TABLE of a VOTable, as {field name: text}."""
    for element in ElementTree.parse(xml).getroot().iter():
        if element.tag.endswith("TABLE") and element.get("name") == table:
            names = [field.get("name") for field in element if field.tag.endswith("FIELD")]
            return [dict(zip(names, (cell.text for cell in row)))
                    for row in element.iter() if row.tag.endswith("TR")]
    raise AssertionError(f"{xml} has no table {table}")


def _run(program: str, catalogue: Path, workdir: Path, *options: str) -> Path:
    workdir.mkdir()
    xml = workdir / "out.xml"
    done = subprocess.run([program, str(catalogue), "-XML_NAME", str(xml), "-CHECKPLOT_TYPE", "NONE", *options],
                          cwd=workdir, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=300)
    assert done.returncode == 0, f"{program} failed on {catalogue.name}:\n{done.stderr[-2000:]}"
    return xml


def test_psfex_builds_the_same_psf_models_from_our_catalogue(catalogues, tmp_path):
    models = {}
    for who, catalogue in catalogues.items():
        xml = _run(PSFEX, catalogue, tmp_path / who, "-PSF_DIR", str(tmp_path / who))
        assert (tmp_path / who / catalogue.with_suffix(".psf").name).exists()
        models[who] = _rows(xml, "PSF_Extensions")
    ours, theirs = models["ours"], models["theirs"]
    assert len(ours) == len(theirs) == SPEC.nccd
    for mine, reference_row in zip(ours, theirs):
        assert int(mine["NStars_Accepted_Mean"]) > 50
        for statistic in ("FWHM_Min", "FWHM_Mean", "FWHM_Max"):
            assert float(mine[statistic]) == pytest.approx(float(reference_row[statistic]), rel=0.01), statistic
        for statistic in ("Ellipticity_Min", "Ellipticity_Mean", "Ellipticity_Max"):
            assert float(mine[statistic]) == pytest.approx(float(reference_row[statistic]), abs=0.005), statistic
        # the model follows the synthetic PSF: nearly round on the CCD's left edge, elliptical on its right
        assert float(mine["Ellipticity_Min"]) < 0.03 and float(mine["Ellipticity_Max"]) > 0.06
        assert float(mine["FWHM_Max"]) / float(mine["FWHM_Min"]) > 1.08


def _reference_catalogue(path: Path) -> Path:
    """An astrometric reference catalogue in FITS_LDAC, from the synthetic truth through each CCD's WCS."""
    ra, dec, mag = [], [], []
    for ext in range(1, SPEC.nccd + 1):
        _, truth = ccd_image(SPEC, ext)
        world = WCS(ccd_header(SPEC, ext)).all_pix2world(truth["x"], truth["y"], 1)
        ra.append(world[0])
        dec.append(world[1])
        mag.append(PHOTZP - 2.5 * np.log10(truth["flux"]))
    ra, dec, mag = map(np.concatenate, (ra, dec, mag))
    error = np.full(len(ra), 0.01 / 3600)  # the truth is exact; SCAMP wants an error
    objects = fits.BinTableHDU.from_columns([
        fits.Column(name="X_WORLD", format="1D", unit="deg", array=ra),
        fits.Column(name="Y_WORLD", format="1D", unit="deg", array=dec),
        fits.Column(name="ERRA_WORLD", format="1E", unit="deg", array=error),
        fits.Column(name="ERRB_WORLD", format="1E", unit="deg", array=error),
        fits.Column(name="ERRTHETA_WORLD", format="1E", unit="deg", array=np.zeros(len(ra))),
        fits.Column(name="MAG", format="1E", unit="mag", array=mag),
        fits.Column(name="MAGERR", format="1E", unit="mag", array=np.full(len(ra), 0.01)),
        fits.Column(name="OBSDATE", format="1D", unit="yr", array=np.full(len(ra), 2026.9)),
    ])
    objects.header["EXTNAME"] = "LDAC_OBJECTS"
    fits.HDUList([fits.PrimaryHDU(), imhead(fits.Header().tostring(), {}), objects]).writeto(path)
    return path


def test_scamp_reads_every_ccd_of_our_catalogue_and_solves_as_for_source_extractors(catalogues, tmp_path):
    astrometric_reference = _reference_catalogue(tmp_path / "truth.ldac")
    solutions = {}
    for who, catalogue in catalogues.items():
        xml = _run(SCAMP, catalogue, tmp_path / who, "-ASTREF_CATALOG", "FILE",
                   "-ASTREFCAT_NAME", str(astrometric_reference))
        (field,) = _rows(xml, "Fields")
        (group,) = _rows(xml, "FGroups")
        assert int(field["NExtensions"]) == SPEC.nccd
        # the solution: one header per CCD, beside the catalogue
        head = catalogue.with_suffix(".head").read_text().splitlines()
        assert [line.strip() for line in head].count("END") == SPEC.nccd
        solutions[who] = field, group
    (field, group), (their_field, their_group) = solutions["ours"], solutions["theirs"]
    for key in ("AstromNDets_Reference", "AstromNDets_Reference_HighSN"):
        assert int(group[key]) > 150
        assert int(group[key]) == pytest.approx(int(their_group[key]), rel=0.10), key
    for key in ("AstromSigma_Reference", "AstromSigma_Reference_HighSN"):
        for mine, theirs in zip(map(float, group[key].split()), map(float, their_group[key].split())):
            assert 0 < mine < 0.05  # arcsec: the WCS is exact, so this is the centroids' noise
            assert mine == pytest.approx(theirs, rel=0.10), key
