"""The QA numbers and pictures: seeing from stars, numbers that match the catalogue, the focal plane
from headers, and PNGs within their limits."""

from __future__ import annotations

import io
import json
import math
import subprocess

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from canfar_catalogue.science import load_config, run_exposure
from canfar_catalogue.science.exposure import CCD, list_ccds
from canfar_catalogue.science.focal_plane import CCD_HEIGHT, CCD_WIDTH, GAP, layout
from canfar_catalogue.science.qa import assess, limiting_magnitude
from canfar_catalogue.science.qa_figure import SKIPPED_COLOUR, batch_figure, draw_focal_plane, exposure_figure
from canfar_catalogue.science.seeing import stellar_locus
from canfar_catalogue.science.synthetic import ExposureSpec, write_exposure

from .conftest import BIN

#: The synthetic stars are Gaussians of sigma 1.5 px (scatter 0.05); on pixels, sigma^2 gains 1/12.
SYNTHETIC_FWHM = 2 * math.sqrt(2 * math.log(2)) * math.sqrt(1.5**2 + 1 / 12)
COLUMNS = ("NUMBER", "EXT_NUMBER", "FLAGS", "MAG_AUTO", "FLUX_AUTO")


@pytest.fixture(scope="module")
def with_a_blank_ccd(tmp_path_factory):
    """Three CCDs, the middle one all NaN (it is skipped), measured with the catalogue's own columns."""
    folder = tmp_path_factory.mktemp("qa")
    plain = folder / "plain.fits"
    write_exposure(plain, ExposureSpec(nccd=3, shape=(1024, 2048), seed=5, pixel_type="float32"))
    with fits.open(plain) as hdul:
        hdul[2].data = np.full_like(hdul[2].data, np.nan)
        hdul.writeto(folder / "exposure.fits")
    param = folder / "qa.param"
    param.write_text("\n".join(COLUMNS) + "\n")
    config = load_config(overrides=["-PARAMETERS_NAME", str(param), "-MAG_ZEROPOINT", "30"])
    result = run_exposure(folder / "exposure.fits", config, folder / "exposure.cat")
    return result, config


def test_stellar_locus_picks_the_narrow_peak_of_stars_among_spread_out_galaxies():
    rng = np.random.default_rng(1)
    stars = rng.normal(1.8, 0.02, 40)
    galaxies = rng.uniform(2.4, 8.0, 80)
    on = stellar_locus(np.concatenate([stars, galaxies, [np.nan]]))
    assert on[:40].all() and not on[40:].any()


def test_seeing_is_measured_from_the_stars_of_each_ccd(with_a_blank_ccd):
    result, config = with_a_blank_ccd
    measured = [c for c in result.ccds if c.error is None]
    for ccd in measured:
        assert ccd.seeing.stars >= 20
        assert abs(ccd.seeing.fwhm - SYNTHETIC_FWHM) < 0.05 * SYNTHETIC_FWHM, (ccd.label, ccd.seeing)
        assert ccd.seeing.ellipticity < 0.05  # round stars


def test_the_numbers_match_the_catalogue(with_a_blank_ccd):
    result, config = with_a_blank_ccd
    quality = assess(result, config.mag_zeropoint)
    rows = np.genfromtxt(result.catalogue, names=COLUMNS)
    assert [c.ccd for c in quality.ccds] == ["ccd00", "ccd01", "ccd02"]
    assert quality.ccds[1].skipped and "NaN" in quality.ccds[1].skipped
    for ccd in quality.ccds:
        mine = rows[rows["EXT_NUMBER"] == ccd.ext_number]
        assert ccd.sources == len(mine)
        assert ccd.saturated == int(np.count_nonzero(mine["FLAGS"].astype(int) & 4))
    assert quality.sources == len(rows)

    magnitudes = rows["MAG_AUTO"][rows["MAG_AUTO"] < 99]
    assert sum(quality.histogram_counts) == len(magnitudes)
    counts, edges = np.histogram(magnitudes, bins=np.array(quality.histogram_edges))
    peak = int(np.argmax(counts))
    assert quality.turnover_magnitude == pytest.approx((edges[peak] + edges[peak + 1]) / 2)

    good = [c for c in quality.ccds if not c.skipped]
    assert quality.fwhm == pytest.approx(np.median([c.fwhm for c in good]))
    assert quality.rms == pytest.approx(np.median([c.rms for c in good]))
    npix = math.pi * quality.fwhm**2  # an aperture of diameter 2 x FWHM
    assert quality.limiting_magnitude == pytest.approx(30 - 2.5 * math.log10(5 * quality.rms * math.sqrt(npix)))
    assert not quality.instrumental
    assert limiting_magnitude(0.0, 3.0, 30) != limiting_magnitude(0.0, 3.0, 30)  # NaN without noise

    stored = json.loads(json.dumps(quality.to_dict(), allow_nan=False))  # fit for the provenance record
    assert stored["ccds"][1]["fwhm"] is None and stored["ccds"][0]["sources"] == quality.ccds[0].sources


def test_the_figure_is_a_png_within_its_limits_and_marks_the_skipped_ccd(with_a_blank_ccd):
    from matplotlib.colors import to_rgba
    from matplotlib.figure import Figure

    result, config = with_a_blank_ccd
    quality = assess(result, config.mag_zeropoint)
    png = exposure_figure(quality, result.layout, "QA")
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size[0] >= 800 and image.size[1] >= 600
    assert len(png) <= 150_000

    patches = draw_focal_plane(Figure().subplots(), quality, result.layout)
    skipped, measured = patches["ccd01"], patches["ccd00"]
    assert skipped.get_edgecolor() == to_rgba(SKIPPED_COLOUR) and skipped.get_facecolor() == to_rgba("white")
    assert measured.get_edgecolor() != to_rgba(SKIPPED_COLOUR) and measured.get_facecolor() != to_rgba("white")

    rows = [{"id": f"10562{n:02d}p", "fwhm": 3.5 + n / 10, "limiting_magnitude": 24 - n / 10} for n in range(12)]
    batch = batch_figure(rows + [{"id": "1056299p", "fwhm": None, "limiting_magnitude": None}], 30)
    image = Image.open(io.BytesIO(batch))
    assert image.format == "PNG" and image.size[0] >= 800 and image.size[1] >= 600 and len(batch) <= 150_000


def _ccd(number: int, header: str | None = None) -> CCD:
    return CCD(number + 1, number + 1, f"ccd{number:02d}", header=header)


def _overlap(a, b) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def test_the_40_ccd_layout_comes_out_of_the_headers():
    boxes = layout([_ccd(n) for n in range(40)])
    assert len(boxes) == 40
    assert not any(_overlap(a, b) for i, a in enumerate(boxes.values()) for b in list(boxes.values())[i + 1:])
    block = 9 * (CCD_WIDTH + GAP)
    science = [boxes[f"ccd{n:02d}"] for n in range(36)]
    assert all(0 <= x < block for x, *_ in science)
    ears = [boxes[f"ccd{n}"] for n in (36, 37, 38, 39)]
    assert all(x < 0 or x >= block for x, *_ in ears)  # beyond both ends of the rows
    middle_rows = {boxes["ccd09"][1], boxes["ccd18"][1]}
    assert {y for _, y, *_ in ears} == middle_rows
    assert boxes["ccd00"][1] > boxes["ccd27"][1]  # ccd00 in the top row


def test_detsec_places_the_ccds_when_every_header_has_it(tmp_path):
    path = tmp_path / "tiny.fits.fz"
    write_exposure(path, ExposureSpec(nccd=36, shape=(128, 64), seed=2))
    boxes = layout(list_ccds(path))
    assert boxes["ccd00"] == (0, 0, 64, 128) and boxes["ccd35"] == (8 * 64, 3 * 128, 64, 128)
    header = fits.Header({"DETSEC": "[2049:4096,1:4612]"}).tostring()
    assert layout([_ccd(0, header), _ccd(1)])["ccd00"] == (0, 0 + (CCD_HEIGHT + GAP) * 3, CCD_WIDTH, CCD_HEIGHT)
    # (DETSEC on only some CCDs: the EXTNAME layout is used for all)


def test_detect_writes_the_same_figure_for_users_without_prefect(small_exposure, tmp_path):
    done = subprocess.run(
        [str(BIN / "canfar-catalogue"), "detect", str(small_exposure), "-CATALOG_NAME", str(tmp_path / "x.cat"),
         "--qa", str(tmp_path / "qa.png"), "-q"], capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    image = Image.open(tmp_path / "qa.png")
    assert image.format == "PNG" and image.size == (960, 640)
    assert not list(tmp_path.glob(".*.part"))
