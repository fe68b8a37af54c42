"""CHECKIMAGE_TYPE: each check image laid out as Debian's source-extractor 2.25 writes it for a multi-extension
input, and compared with its pixels; names, compression and refusals as a user meets them."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from scipy.spatial import cKDTree

from canfar_catalogue.science import ConfigError, load_config, run_exposure
from canfar_catalogue.science.check_images import TYPES, interpolation_weights, mesh, requested
from canfar_catalogue.science.synthetic import ExposureSpec, write_exposure

from . import reference

#: Every type, and the file name source-extractor is given for it.
NAMES = {kind: f"{kind.lower().replace('-', 'minus_')}.fits" for kind in TYPES}
PARAM = "NUMBER\nX_IMAGE\nY_IMAGE\nFLUX_AUTO\nKRON_RADIUS\nFLAGS\nFLUX_APER\n"


@pytest.fixture(scope="module")
def exposure(tmp_path_factory) -> Path:
    """Two CCDs whose sides are not multiples of BACK_SIZE, so the last mesh cells are partial."""
    path = tmp_path_factory.mktemp("check") / "1056213p.fits.fz"
    write_exposure(path, ExposureSpec(nccd=2, shape=(700, 600), seed=8))
    return path


def _overrides(tmp_path: Path, names: dict[str, str], *extra: str) -> list[str]:
    param = tmp_path / "check.param"
    param.write_text(PARAM)
    return ["-PARAMETERS_NAME", str(param), "-PHOT_APERTURES", "12",
            "-CHECKIMAGE_TYPE", ",".join(names), "-CHECKIMAGE_NAME", ",".join(names.values()), *extra]


@pytest.fixture(scope="module")
def both(exposure, tmp_path_factory):
    """Every check image from source-extractor and from us, with both catalogues."""
    if not reference.have_reference():
        pytest.skip("Debian's source-extractor/funpack are not installed")
    theirs, ours = tmp_path_factory.mktemp("theirs"), tmp_path_factory.mktemp("ours")
    plain = reference.funpack(exposure, theirs / "x.fits")
    extra = _overrides(theirs, {kind: str(theirs / name) for kind, name in NAMES.items()})
    reference.run_sextractor(plain, theirs, theirs / "check.param", *extra[2:])
    config = load_config(overrides=_overrides(ours, {kind: str(ours / name) for kind, name in NAMES.items()}))
    result = run_exposure(exposure, config, ours / "ours.cat")
    assert set(result.check_images) == set(TYPES)
    return theirs, ours, reference.read(theirs / "classic.cat"), reference.read(ours / "ours.cat")


def _pair(both, kind: str):
    theirs, ours, *_ = both
    return fits.open(theirs / NAMES[kind]), fits.open(ours / NAMES[kind])


def _per_ccd(table):
    starts = list(np.flatnonzero(table["NUMBER"] == 1)) + [len(table)]
    return [table[a:b] for a, b in zip(starts, starts[1:])]


@pytest.mark.parity
@pytest.mark.parametrize("kind", list(TYPES))
def test_each_check_image_is_laid_out_as_source_extractor_writes_it(both, kind):
    """A primary HDU without data, then one image HDU per CCD with the CCD's header (EXTNAME, WCS, GAIN,
    SATURATE), less the CCD's now stale checksums; BITPIX 32 for SEGMENTATION, -32 for the rest."""
    theirs, ours = _pair(both, kind)
    assert len(ours) == len(theirs) == 3
    assert ours[0].header["NAXIS"] == 0 and ours[0].header["NEXTEND"] == theirs[0].header["NEXTEND"] == 2
    for mine, reference_hdu in zip(ours[1:], theirs[1:]):
        assert mine.header["BITPIX"] == reference_hdu.header["BITPIX"] == (32 if kind == "SEGMENTATION" else -32)
        assert mine.data.shape == reference_hdu.data.shape
        assert mine.header["EXTNAME"] == reference_hdu.header["EXTNAME"] and mine.header["CTYPE1"] == "RA---TAN"
        for key in ("GAIN", "SATURATE", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD2_2"):
            assert mine.header[key] == pytest.approx(reference_hdu.header[key], rel=1e-12), key
        assert "CHECKSUM" not in mine.header and "DATASUM" not in mine.header


@pytest.mark.parity
@pytest.mark.parametrize("kind", ["BACKGROUND", "BACKGROUND_RMS", "MINIBACKGROUND", "MINIBACK_RMS", "-BACKGROUND"])
def test_the_background_maps_are_source_extractors_pixel_for_pixel(both, kind):
    """Both interpolate the same mesh with the same spline; the mesh itself is recovered from sep's map."""
    theirs, ours = _pair(both, kind)
    for mine, reference_hdu in zip(ours[1:], theirs[1:]):
        assert np.array_equal(mine.data, reference_hdu.data)


@pytest.mark.parity
def test_the_filtered_image_differs_from_source_extractors_by_rounding_only(both):
    """The same kernel on the same pixels, summed in float32 in another order: a few float32 steps apart
    at most (3 measured), and almost every pixel within one."""
    theirs, ours = _pair(both, "FILTERED")
    for mine, reference_hdu in zip(ours[1:], theirs[1:]):
        a, b = mine.data.astype(np.float64), reference_hdu.data.astype(np.float64)
        step = np.spacing(np.maximum(np.abs(a), np.abs(b)).astype(np.float32)).astype(np.float64)
        steps = np.abs(a - b) / step
        assert steps.max() <= 4 and np.mean(steps <= 1) > 0.999 and np.mean(a == b) > 0.9


@pytest.mark.parity
def test_segmentation_and_objects_follow_source_extractors(both):
    """The same pixels are sky; OBJECTS is identical; each unblended source has the same pixels under its
    NUMBER (the detections CLEAN merged into one included), bar the rare one that CLEAN gave another source."""
    *_, their_cat, our_cat = both
    theirs, ours = _pair(both, "SEGMENTATION")
    their_objects, our_objects = _pair(both, "OBJECTS")
    exact = unblended = 0
    for e, (their_rows, our_rows) in enumerate(zip(_per_ccd(their_cat), _per_ccd(our_cat)), start=1):
        seg, mine = theirs[e].data, ours[e].data
        assert np.array_equal(seg > 0, mine > 0)
        assert np.array_equal(our_objects[e].data, their_objects[e].data)
        distance, nearest = cKDTree(np.c_[our_rows["X_IMAGE"], our_rows["Y_IMAGE"]]).query(
            np.c_[their_rows["X_IMAGE"], their_rows["Y_IMAGE"]])
        for i in np.flatnonzero(distance < 1.0):
            j = nearest[i]
            if (their_rows["FLAGS"][i] | our_rows["FLAGS"][j]) & 2:
                continue
            unblended += 1
            exact += np.array_equal(seg == their_rows["NUMBER"][i], mine == our_rows["NUMBER"][j])
    assert unblended > 200 and exact >= 0.99 * unblended


@pytest.mark.parity
def test_minus_objects_blanks_what_source_extractor_blanks(both):
    """Every pixel above the detection threshold is 0, less the CLEANed detections source-extractor pastes
    back; the few pixels that differ are all in such a detection (source-extractor leaves one or two of
    their pixels blanked)."""
    theirs, ours = _pair(both, "-OBJECTS")
    segmentation = _pair(both, "SEGMENTATION")[1]
    for e in (1, 2):
        differ = ours[e].data != theirs[e].data
        assert differ.sum() < 1e-4 * differ.size
        assert np.all(theirs[e].data[differ] == 0) and np.all(segmentation[e].data[differ] > 0)


@pytest.mark.parity
def test_apertures_draw_source_extractors_outlines(both):
    """Compared: where neither draws, both are the background-subtracted image; what is drawn is that image
    plus 30 × the background RMS per outline crossing the pixel.  Outline vertices are rounded to the
    nearest pixel, so a Kron radius or centre that differs in its last digits moves a pixel: at least
    97% of source-extractor's drawn pixels are drawn by us with the same value."""
    theirs, ours = _pair(both, "APERTURES")
    subtracted = _pair(both, "-BACKGROUND")[1]
    for e in (1, 2):
        base, mine, reference_pixels = subtracted[e].data, ours[e].data, theirs[e].data
        drawn = reference_pixels != base
        assert np.mean(mine[drawn] == reference_pixels[drawn]) >= 0.97
        assert abs(np.count_nonzero(mine != base) - drawn.sum()) < 0.01 * drawn.sum()
        overlay = np.unique(np.round(mine[mine != base] - base[mine != base], 1))
        assert len(overlay) >= 2 and np.allclose(overlay / overlay[0], np.round(overlay / overlay[0]), atol=1e-3)


def test_a_fz_name_writes_the_same_map_tile_compressed(exposure, tmp_path):
    """SEGMENTATION and the smooth maps without loss; the noisy image quantised finely, its zeros exact."""
    names = {"SEGMENTATION": "seg", "BACKGROUND": "back", "-OBJECTS": "subobjects"}
    plain = load_config(overrides=_overrides(tmp_path, {k: str(tmp_path / f"{v}.fits") for k, v in names.items()}))
    packed = load_config(overrides=_overrides(tmp_path, {k: str(tmp_path / f"{v}.fits.fz") for k, v in names.items()}))
    run_exposure(exposure, plain, tmp_path / "a.cat")
    run_exposure(exposure, packed, tmp_path / "b.cat")
    for name in names.values():
        with fits.open(tmp_path / f"{name}.fits") as flat, fits.open(tmp_path / f"{name}.fits.fz") as tiled:
            assert [type(h).__name__ for h in tiled] == ["PrimaryHDU", "CompImageHDU", "CompImageHDU"]
            for a, b in zip(flat[1:], tiled[1:]):
                assert b.header["EXTNAME"] == a.header["EXTNAME"]
                if name == "subobjects":  # at most a tenth of the noise off, and every blanked pixel still 0
                    rms = 1.4826 * np.median(np.abs(np.diff(a.data[a.data != 0]))) / np.sqrt(2)
                    assert np.abs(b.data - a.data).max() < 0.1 * rms and np.array_equal(a.data == 0, b.data == 0)
                else:
                    assert np.array_equal(a.data, b.data)
        with fits.open(tmp_path / f"{name}.fits.fz", disable_image_compression=True) as raw:
            assert raw[1].header["ZCMPTYPE"] == ("GZIP_2" if name == "back" else "RICE_1")
    ratio = {name: (tmp_path / f"{name}.fits").stat().st_size / (tmp_path / f"{name}.fits.fz").stat().st_size
             for name in names.values()}
    assert ratio["seg"] > 10 and ratio["back"] > 1.5 and ratio["subobjects"] > 3


def test_a_ccd_that_cannot_be_measured_keeps_its_place_in_every_check_image(tmp_path):
    path = tmp_path / "x.fits"
    good = np.random.default_rng(1).normal(1000, 10, size=(300, 300)).astype(np.float32)
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.full((300, 300), 7, np.float32), name="flat"),
                  fits.ImageHDU(good, name="good")]).writeto(path)
    config = load_config(overrides=_overrides(tmp_path, {"SEGMENTATION": str(tmp_path / "seg.fits")}))
    result = run_exposure(path, config, tmp_path / "x.cat")
    assert [c.error is not None for c in result.ccds] == [True, False]
    with fits.open(tmp_path / "seg.fits") as seg:
        assert [h.name for h in seg] == ["PRIMARY", "FLAT", "GOOD"]
        assert seg[1].data is None and seg[2].data.shape == (300, 300)


def test_nothing_is_written_when_no_ccd_can_be_measured(tmp_path):
    path = tmp_path / "x.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.full((64, 64), 7, np.float32))]).writeto(path)
    config = load_config(overrides=_overrides(tmp_path, {"SEGMENTATION": str(tmp_path / "seg.fits")}))
    with pytest.raises(Exception, match="no CCD could be measured"):
        run_exposure(path, config, tmp_path / "x.cat")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["check.param", "x.fits"]


def test_catalog_type_none_makes_the_check_images_only(exposure, tmp_path):
    config = load_config(overrides=_overrides(tmp_path, {"BACKGROUND": str(tmp_path / "b.fits")}, "-CATALOG_TYPE", "NONE"))
    result = run_exposure(exposure, config, tmp_path / "x.cat")
    assert result.catalogue is None and not (tmp_path / "x.cat").exists() and (tmp_path / "b.fits").exists()


@pytest.mark.parametrize("types, names, message", [
    ("SEGMENTATION,BACKGROUND", "a.fits", "names 2 type.*1 file"),
    ("SEGMENTATION", "a.fits,b.fits", "names 1 type.*2 file"),
    ("MODELS", "m.fits", "CHECKIMAGE_TYPE MODELS: .*model fitting"),
    ("-PSFPROTOS", "p.fits", "CHECKIMAGE_TYPE -PSFPROTOS: .*model fitting"),
    ("SEGMENTATIONS", "a.fits", "'SEGMENTATIONS' is not a check-image type"),
    ("SEGMENTATION,OBJECTS", "a.fits,a.fits", "a.fits is given for two"),
])
def test_what_cannot_be_made_as_asked_is_refused_by_name(types, names, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=["-CHECKIMAGE_TYPE", types, "-CHECKIMAGE_NAME", names])


def test_a_noise_map_with_a_weight_map_is_refused(tmp_path):
    weights = tmp_path / "w.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((8, 8), np.float32))]).writeto(weights)
    with pytest.raises(ConfigError, match="BACKGROUND_RMS with WEIGHT_TYPE MAP_WEIGHT"):
        load_config(overrides=["-WEIGHT_TYPE", "MAP_WEIGHT", "-WEIGHT_IMAGE", str(weights),
                               "-CHECKIMAGE_TYPE", "BACKGROUND_RMS", "-CHECKIMAGE_NAME", "rms.fits"])


def test_several_types_and_names_are_read_as_source_extractor_reads_them():
    assert requested("NONE", "check.fits") == ()
    assert requested(" segmentation , -objects", "seg.fits, sub.fits") == (("SEGMENTATION", "seg.fits"),
                                                                          ("-OBJECTS", "sub.fits"))
    assert load_config(overrides=["-CHECKIMAGE_TYPE", "NONE"]).check_images == ()
    asked = load_config(overrides=["-CHECKIMAGE_TYPE", "SEGMENTATION", "-CHECKIMAGE_NAME", "s.fits"])
    assert asked.fingerprint() != load_config().fingerprint()  # a flow makes them where they were not made
    assert load_config(overrides=["-CHECKIMAGE_TYPE", "NONE"]).fingerprint() == load_config().fingerprint()


def test_the_mesh_is_recovered_exactly_from_seps_interpolated_map():
    """Any mesh, interpolated as sep interpolates it, comes back from the map: the weights are sep's."""
    import sep

    rng = np.random.default_rng(4)
    image = (1000 + rng.normal(0, 5, size=(333, 250)) + np.linspace(0, 80, 250)[None, :]).astype(np.float32)
    background = sep.Background(image, bw=32, bh=48, fw=1, fh=1)
    interpolated = background.back(dtype=np.float64)
    nodes = mesh(interpolated, (32, 48))
    assert nodes.shape == (7, 8)
    rebuilt = interpolation_weights(333, 48, 24.0) @ nodes.astype(np.float64) @ interpolation_weights(250, 32, 15.5).T
    assert np.abs(rebuilt - interpolated).max() < 1e-3


@pytest.mark.skipif(shutil.which("source-extractor") is None, reason="Debian's source-extractor is not installed")
def test_the_types_made_are_the_ones_source_extractor_offers():
    import re

    listed = subprocess.run(["source-extractor", "-dd"], capture_output=True, text=True).stdout.splitlines()
    first = next(n for n, line in enumerate(listed) if line.startswith("CHECKIMAGE_TYPE"))
    block = [listed[first]] + [line for line in listed[first + 1:first + 6] if line.startswith(" ")][:3]
    offered = set(re.findall(r"-?[A-Z][A-Z_]+", " ".join(line.split("#", 1)[1] for line in block)))
    assert set(TYPES) | {"NONE"} == offered


# -- in the flows --------------------------------------------------------------------------------------------
def test_the_flows_store_check_images_beside_the_catalogue_and_skip_only_when_all_are_there(local_site, tmp_path):
    import json

    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactCollectionFilter, ArtifactCollectionFilterKey

    from canfar_catalogue.flows.exposure import catalogue_exposure

    config = load_config(overrides=_overrides(tmp_path, {"SEGMENTATION": "check.fits", "OBJECTS": "{id}.obj.fits.fz",
                                                          "-OBJECTS": "check2.fits"}))
    destination, out = f"file://{tmp_path}/out", tmp_path / "out"
    first = catalogue_exposure("1056215p", local_site["archive"], destination, config_json=config.to_json())
    assert first["status"] == "completed"
    names = {"SEGMENTATION": "1056215p.segmentation.fits.fz", "OBJECTS": "1056215p.obj.fits.fz",
             "-OBJECTS": "1056215p.minus_objects.fits.fz"}  # a name without {id} gives way to the default
    assert sorted(p.name for p in out.iterdir()) == sorted(["1056215p.cat", "1056215p.provenance.json", *names.values()])
    record = json.loads((out / "1056215p.provenance.json").read_text())
    assert {kind: image["name"] for kind, image in record["check_images"].items()} == names
    with fits.open(out / names["SEGMENTATION"]) as seg:
        assert len(seg) == 3 and isinstance(seg[1], fits.CompImageHDU)
        assert sum(int(hdu.data.max()) for hdu in seg[1:]) == record["sources"]  # NUMBER restarts on each CCD
    with get_client(sync_client=True) as client:
        summary = client.read_latest_artifacts(artifact_filter=ArtifactCollectionFilter(
            key=ArtifactCollectionFilterKey(any_=["exposure-1056215p-summary"])))[0]
    assert f"- SEGMENTATION: [{names['SEGMENTATION']}]({(out / names['SEGMENTATION']).as_uri()})" in summary.data

    again = catalogue_exposure("1056215p", local_site["archive"], destination, config_json=config.to_json())
    assert again["status"] == "skipped"
    (out / names["-OBJECTS"]).unlink()  # a catalogue without an asked-for check image is not done
    third = catalogue_exposure("1056215p", local_site["archive"], destination, config_json=config.to_json())
    assert third["status"] == "completed" and (out / names["-OBJECTS"]).stat().st_size > 0


def test_a_flow_refuses_what_it_cannot_store_by_name():
    from canfar_catalogue.flows import outputs

    with pytest.raises(ConfigError, match="CATALOG_TYPE NONE: the flows store a catalogue"):
        outputs.for_flows(load_config(overrides=["-CATALOG_TYPE", "NONE", "-CHECKIMAGE_TYPE", "BACKGROUND",
                                                 "-CHECKIMAGE_NAME", "b.fits"]))
    clash = load_config(overrides=["-CHECKIMAGE_TYPE", "BACKGROUND", "-CHECKIMAGE_NAME", "{id}/b.fits"])
    with pytest.raises(ConfigError, match="CHECKIMAGE_NAME for BACKGROUND: .*plain"):
        outputs.for_flows(clash)
    fine, notes = outputs.for_flows(load_config(overrides=["-CHECKIMAGE_TYPE", "BACKGROUND", "-CHECKIMAGE_NAME", "b.fits"]))
    assert fine.check_images == (("BACKGROUND", "{id}.background.fits.fz"),) and "b.fits" in notes[0]


def test_a_failed_upload_keeps_the_check_images_with_the_catalogue(tmp_path):
    import logging

    from canfar_catalogue.flows.exposure import _clean

    catalogue, check_images = tmp_path / "x.cat", {"SEGMENTATION": tmp_path / "x.segmentation.fits.fz"}
    for path in [catalogue, *check_images.values(), tmp_path / "1056213p.fits.fz", tmp_path / "1056213p.weight.fits.fz"]:
        path.write_bytes(b"x")
    _clean(tmp_path, catalogue, check_images, logging.getLogger("test"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.cat", "x.segmentation.fits.fz"]
