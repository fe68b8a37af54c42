"""Reading SExtractor configuration files as source-extractor does."""

import shutil
from pathlib import Path

import numpy as np
import pytest

from canfar_catalogue.science import ConfigError, ExtractionConfig, load_config

DEBIAN_SEX = Path("/usr/share/source-extractor/default.sex")


def test_packaged_defaults_are_debians_with_the_tutorial_columns():
    config = load_config()
    assert config.parameters == ("NUMBER", "MAG_AUTO", "X_IMAGE", "Y_IMAGE")
    assert config.detect_minarea == 3
    assert config.detect_thresh == 1.5
    assert config.mask_type == "CORRECT"  # absent from default.sex: source-extractor's default
    assert config.back_size == (64, 64)
    assert config.phot_autoparams == (2.5, 3.5)
    kernel = config.kernel()
    assert kernel.shape == (3, 3)
    assert kernel.sum() == pytest.approx(1.0)
    assert kernel[1, 1] == pytest.approx(4 / 16)


@pytest.mark.skipif(not DEBIAN_SEX.exists(), reason="Debian's source-extractor is not installed")
def test_debians_default_sex_with_the_tutorials_param_says_nothing(workdir, small_exposure):
    """Its CHECKIMAGE_TYPE NONE, WRITE_XML N, ASSOC set without ASSOC columns and the rest ask for nothing:
    no note, from the library or from the command."""
    import subprocess
    import sys

    (workdir / "default.param").write_text("NUMBER\nMAG_AUTO\nX_IMAGE\nY_IMAGE\n")  # the tutorial's
    (workdir / "default.conv").write_text(Path("/usr/share/source-extractor/default.conv").read_text())
    config = load_config(DEBIAN_SEX)
    assert config.parameters == ("NUMBER", "MAG_AUTO", "X_IMAGE", "Y_IMAGE")
    assert config.notes == ()
    done = subprocess.run([sys.executable, "-m", "canfar_catalogue.cli.main", "detect", str(small_exposure), "--quiet",
                           "-c", str(DEBIAN_SEX), "-CATALOG_NAME", "out.cat"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "" and (workdir / "out.cat").stat().st_size > 1000


@pytest.mark.skipif(shutil.which("source-extractor") is None, reason="Debian's source-extractor is not installed")
def test_every_keyword_source_extractor_knows_has_a_fate():
    """Each keyword of ``source-extractor -dd`` has an effect, asks for nothing, or is refused for the values
    that ask for something we do not make; docs/keywords.md names them all."""
    import subprocess

    from canfar_catalogue.science import keyword_fates
    from canfar_catalogue.science.sexconfig import DEFAULTS, KNOWN_KEYS

    listed = subprocess.run(["source-extractor", "-dd"], capture_output=True, text=True).stdout
    keywords = {line.split()[0] for line in listed.splitlines() if line.split() and not line.split()[0].startswith("#")}
    assert len(keywords) == 73 and keywords == KNOWN_KEYS
    assert not [key for key in keywords if key not in DEFAULTS and key not in keyword_fates.KEYWORDS]
    assert not set(DEFAULTS) & keyword_fates.KEYWORDS
    table = (Path(__file__).parents[1] / "docs" / "keywords.md").read_text()
    assert not [key for key in keywords if f"| `{key}` |" not in table]


@pytest.mark.parametrize("keyword, value", [("WRITE_XML", "Y"), ("DGEO_TYPE", "PIXEL"), ("FITS_UNSIGNED", "Y")])
def test_a_keyword_asking_for_what_is_not_made_is_refused_by_name(keyword, value):
    with pytest.raises(ConfigError, match=f"^{keyword} {value}: .*remove {keyword}"):
        load_config(overrides=[f"-{keyword}", value])


@pytest.mark.parametrize("value, advice", [("NONE", "no CHECKIMAGE_TYPE asks"), ("ASCII_SKYCAT", "use ASCII_HEAD"),
                                           ("FITS", "not one of")])
def test_a_catalogue_type_that_is_not_written_is_refused_saying_what_to_use(value, advice):
    with pytest.raises(ConfigError, match=f"CATALOG_TYPE.*{advice}"):
        load_config(overrides=["-CATALOG_TYPE", value])


def test_the_same_keywords_asking_for_nothing_pass_in_silence():
    config = load_config(overrides=["-CHECKIMAGE_TYPE", "NONE", "-WRITE_XML", "N", "-DGEO_TYPE", "NONE",
                                    "-CHECKIMAGE_NAME", "seg.fits", "-NTHREADS", "4", "-ASSOC_NAME", "sky.list"])
    assert config.notes == ()


def test_an_external_header_beside_the_image_is_found_by_its_suffix(workdir):
    image = workdir / "1056213p.fits.fz"
    image.write_bytes(b"")
    assert load_config(image=image).header_file == ""  # no 1056213p.fits.head: nothing is asked, nothing said
    assert load_config(image=image).notes == ()
    (workdir / "1056213p.fits.head").write_text("CRVAL1  =                 10.0\nEND\n")
    found = load_config(image=image)
    assert found.header_file == str(workdir / "1056213p.fits.head") and "HEADER_SUFFIX" in found.notes[0]
    assert load_config(image=image, overrides=["-HEADER_SUFFIX", ".scamp"]).header_file == ""  # another name



def test_overrides_win_over_the_file():
    config = load_config(overrides=["-DETECT_THRESH", "3", "-MAG_ZEROPOINT", "30", "-PHOT_AUTOPARAMS", "2.0,4.0"])
    assert config.detect_thresh == 3.0
    assert config.mag_zeropoint == 30.0
    assert config.phot_autoparams == (2.0, 4.0)


def test_relative_file_names_resolve_against_the_current_directory(workdir):
    (workdir / "mine.param").write_text("NUMBER\nFLAGS\n")
    (workdir / "box.conv").write_text("CONV NORM\n1 1\n1 1\n")
    (workdir / "mine.sex").write_text("PARAMETERS_NAME mine.param\nFILTER_NAME box.conv\n")
    config = load_config("mine.sex")
    assert config.parameters == ("NUMBER", "FLAGS")
    assert np.allclose(config.kernel(), 0.25)


def test_unknown_keyword_is_an_error_naming_it(workdir):
    (workdir / "bad.sex").write_text("DETECT_THRES 3\n")
    with pytest.raises(ConfigError, match="DETECT_THRES"):
        load_config("bad.sex")
    with pytest.raises(ConfigError, match="-NOPE"):
        load_config(overrides=["-NOPE", "1"])


def test_unsupported_parameter_is_named_with_the_supported_list(workdir):
    (workdir / "p.param").write_text("NUMBER\nFLUX_PETRO\n")
    with pytest.raises(ConfigError) as error:
        load_config(overrides=["-PARAMETERS_NAME", "p.param"])
    assert "FLUX_PETRO" in str(error.value) and "MAG_AUTO" in str(error.value) and "FLUX_APER(n)" in str(error.value)


def test_vector_parameters_take_a_size_and_scalars_refuse_one(workdir):
    (workdir / "v.param").write_text("NUMBER\nflux_aper(3)\nMAG_APER(2)\nFLUX_RADIUS(1)\nFLUXERR_APER\n")
    config = load_config(overrides=["-PARAMETERS_NAME", "v.param", "-PHOT_APERTURES", "4,8", "-PHOT_FLUXFRAC", "0.5"])
    assert config.parameters == ("NUMBER", "FLUX_APER(3)", "MAG_APER(2)", "FLUX_RADIUS", "FLUXERR_APER")
    assert config.phot_apertures == (4.0, 8.0)  # FLUX_APER(3) wants three; two are configured
    assert any("FLUX_APER(3) asks for 3 values but PHOT_APERTURES gives 2" in note for note in config.notes)
    (workdir / "s.param").write_text("NUMBER\nX_IMAGE(2)\n")
    with pytest.raises(ConfigError, match=r"s.param, line 2: parameter X_IMAGE is a single value"):
        load_config(overrides=["-PARAMETERS_NAME", "s.param"])
    for wrong, message in (("VIGNET", r"stamp of pixels: give its width and height"), ("VIGNET(5)", "width and height"),
                           ("FLUX_APER(2,2)", "give one size")):
        (workdir / "w.param").write_text(f"NUMBER\n{wrong}\n")
        with pytest.raises(ConfigError, match=message):
            load_config(overrides=["-PARAMETERS_NAME", "w.param"])
    (workdir / "ok.param").write_text("NUMBER\nvignet(25,15)\n")
    assert load_config(overrides=["-PARAMETERS_NAME", "ok.param"]).parameters == ("NUMBER", "VIGNET(25,15)")
    (workdir / "z.param").write_text("FLUX_APER(0)\n")
    with pytest.raises(ConfigError, match="at least 1"):
        load_config(overrides=["-PARAMETERS_NAME", "z.param"])


def test_only_the_apertures_a_column_asks_for_are_measured(workdir):
    (workdir / "one.param").write_text("NUMBER\nFLUX_APER\n")
    (workdir / "none.param").write_text("NUMBER\nMAG_AUTO\n")
    one = load_config(overrides=["-PARAMETERS_NAME", "one.param", "-PHOT_APERTURES", "4,8,16"])
    none = load_config(overrides=["-PARAMETERS_NAME", "none.param", "-PHOT_APERTURES", "4,8,16"])
    assert one.phot_apertures == (4.0,) and none.phot_apertures == ()
    assert none.fingerprint() == load_config(overrides=["-PARAMETERS_NAME", "none.param"]).fingerprint()
    with pytest.raises(ConfigError, match="PHOT_APERTURES"):
        load_config(overrides=["-PARAMETERS_NAME", "one.param", "-PHOT_APERTURES", "4,-1"])


def test_keys_that_would_change_columns_are_errors():
    with pytest.raises(ConfigError, match="WEIGHT_TYPE"):
        load_config(overrides=["-WEIGHT_TYPE", "MAP_WEIGHT,MAP_RMS"])
    with pytest.raises(ConfigError, match="BACKPHOTO_TYPE"):
        load_config(overrides=["-BACKPHOTO_TYPE", "LOCAL"])
    with pytest.raises(ConfigError, match="MASK_TYPE"):
        load_config(overrides=["-MASK_TYPE", "BLANK"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("1 2 1\n", "CONV"),
        ("CONV NORM\n1 2\n1 2 3\n", "different lengths"),
        ("CONV NORM\n1 x 1\n", "line 2"),
        ("CONV NORM\n", "no rows"),
    ],
)
def test_malformed_conv_names_the_file(workdir, text, message):
    (workdir / "bad.conv").write_text(text)
    with pytest.raises(ConfigError, match=message) as error:
        load_config(overrides=["-FILTER_NAME", "bad.conv"])
    assert "bad.conv" in str(error.value)


def test_norm_divides_by_the_sum_of_absolute_values_and_nonorm_keeps_the_kernel(workdir):
    (workdir / "raw.conv").write_text("CONV NONORM\n1 2 1\n")
    assert np.allclose(load_config(overrides=["-FILTER_NAME", "raw.conv"]).kernel(), [[1, 2, 1]])
    (workdir / "mexhat.conv").write_text("CONV NORM\n-1 2 -1\n")
    kernel = load_config(overrides=["-FILTER_NAME", "mexhat.conv"]).kernel()
    assert np.allclose(kernel, [[-0.25, 0.5, -0.25]])
    (workdir / "zero.conv").write_text("CONV NORM\n0 0\n")
    with pytest.raises(ConfigError, match="all zeros"):
        load_config(overrides=["-FILTER_NAME", "zero.conv"])


def test_missing_files_are_named(workdir):
    with pytest.raises(ConfigError, match="nope.sex"):
        load_config("nope.sex")
    with pytest.raises(ConfigError, match="gone.param"):
        load_config(overrides=["-PARAMETERS_NAME", "gone.param"])


def test_fingerprint_follows_the_measurement_not_the_catalogue_name():
    base = load_config()
    assert load_config(overrides=["-CATALOG_NAME", "x.cat"]).fingerprint() == base.fingerprint()
    assert load_config(overrides=["-DETECT_THRESH", "2"]).fingerprint() != base.fingerprint()


def test_json_round_trip_keeps_everything():
    config = load_config(overrides=["-DETECT_THRESH", "2.5"])
    again = ExtractionConfig.from_json(config.to_json())
    assert again == config
    assert again.fingerprint() == config.fingerprint()


def test_class_star_reads_its_network_and_needs_a_seeing(workdir):
    (workdir / "c.param").write_text("NUMBER\nCLASS_STAR\n")
    config = load_config(overrides=["-PARAMETERS_NAME", "c.param", "-SEEING_FWHM", "0.7"])
    assert config.seeing_fwhm == 0.7 and config.star_nnw[:4] == (3.0, 10.0, 10.0, 1.0)
    assert config.fingerprint() != load_config(overrides=["-PARAMETERS_NAME", "c.param"]).fingerprint()
    with pytest.raises(ConfigError, match="SEEING_FWHM"):
        load_config(overrides=["-PARAMETERS_NAME", "c.param", "-SEEING_FWHM", "0"])
    (workdir / "bad.nnw").write_text("NNW\n 3 10 10 1\n 1 2 3\n")
    with pytest.raises(ConfigError, match=r"bad.nnw: not a readable neural network"):
        load_config(overrides=["-PARAMETERS_NAME", "c.param", "-STARNNW_NAME", "bad.nnw"])
    (workdir / "other.nnw").write_text("NNW\n 2 3 1\n" + "0 " * 6 + "\n" + "0 0 0 0\n" + "0 1\n")
    with pytest.raises(ConfigError, match="10 inputs and 1 output, this one has 3 and 1"):
        load_config(overrides=["-PARAMETERS_NAME", "c.param", "-STARNNW_NAME", "other.nnw"])
    with pytest.raises(ConfigError, match="missing.nnw: neural network file"):
        load_config(overrides=["-PARAMETERS_NAME", "c.param", "-STARNNW_NAME", "missing.nnw"])


def test_settings_of_columns_not_asked_for_leave_the_fingerprint_alone():
    """A catalogue stored before CLASS_STAR and FLUX_APER existed stays done: their settings only
    count when their columns are asked for."""
    plain = load_config()
    assert load_config(overrides=["-SEEING_FWHM", "0.6", "-PHOT_APERTURES", "3,6"]).fingerprint() == plain.fingerprint()
    assert {"seeing_fwhm", "star_nnw", "phot_apertures"}.isdisjoint(plain.measurement_dict())
