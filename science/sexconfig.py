"""Read SExtractor configuration the way source-extractor 2.25 does.

A ``.sex`` file, the ``PARAMETERS_NAME`` and ``FILTER_NAME`` files it points to,
and command-line style overrides (``-DETECT_THRESH 3``) become one immutable
:class:`ExtractionConfig`.  Users keep their existing files: every SExtractor
keyword is accepted, and the ones we do not implement are reported by name —
an error when they would change a requested column, a note otherwise.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from . import check_images, external_header, keyword_fates
from .columns import COLUMNS, parameter
from .classifier import read_nnw
from .flag_maps import FLAG_TYPES
from .weights import FROM_FILE, WEIGHT_TYPES
from .errors import ConfigError

#: Every keyword source-extractor 2.25 knows (``source-extractor -dd``).
KNOWN_KEYS = frozenset(
    """CATALOG_NAME CATALOG_TYPE PARAMETERS_NAME DETECT_TYPE DETECT_MINAREA
    DETECT_MAXAREA THRESH_TYPE DETECT_THRESH ANALYSIS_THRESH FILTER FILTER_NAME
    FILTER_THRESH DEBLEND_NTHRESH DEBLEND_MINCONT CLEAN CLEAN_PARAM MASK_TYPE
    WEIGHT_TYPE RESCALE_WEIGHTS WEIGHT_IMAGE WEIGHT_GAIN WEIGHT_THRESH FLAG_IMAGE
    FLAG_TYPE DGEO_TYPE DGEO_IMAGE PHOT_APERTURES PHOT_AUTOPARAMS PHOT_PETROPARAMS
    PHOT_AUTOAPERS PHOT_FLUXFRAC SATUR_LEVEL SATUR_KEY MAG_ZEROPOINT MAG_GAMMA GAIN
    GAIN_KEY PIXEL_SCALE SEEING_FWHM STARNNW_NAME BACK_TYPE BACK_VALUE BACK_SIZE
    BACK_FILTERSIZE BACKPHOTO_TYPE BACKPHOTO_THICK BACK_FILTTHRESH CHECKIMAGE_TYPE
    CHECKIMAGE_NAME MEMORY_OBJSTACK MEMORY_PIXSTACK MEMORY_BUFSIZE ASSOC_NAME
    ASSOC_DATA ASSOC_PARAMS ASSOCCOORD_TYPE ASSOC_RADIUS ASSOC_TYPE ASSOCSELEC_TYPE
    VERBOSE_TYPE HEADER_SUFFIX WRITE_XML XML_NAME XSL_URL NTHREADS FITS_UNSIGNED
    INTERP_MAXXLAG INTERP_MAXYLAG INTERP_TYPE PSF_NAME PSF_NMAX PATTERN_TYPE
    SOM_NAME""".split()
)

#: Keywords we implement, with source-extractor's built-in defaults.
DEFAULTS: dict[str, str] = {
    "CATALOG_NAME": "test.cat",
    "CATALOG_TYPE": "ASCII_HEAD",
    "PARAMETERS_NAME": "default.param",
    "DETECT_TYPE": "CCD",
    "DETECT_MINAREA": "5",
    "DETECT_MAXAREA": "0",
    "THRESH_TYPE": "RELATIVE",
    "DETECT_THRESH": "1.5",
    "ANALYSIS_THRESH": "1.5",
    "PIXEL_SCALE": "0.0",
    "FILTER": "Y",
    "FILTER_NAME": "default.conv",
    "DEBLEND_NTHRESH": "32",
    "DEBLEND_MINCONT": "0.005",
    "CLEAN": "Y",
    "CLEAN_PARAM": "1.0",
    "MASK_TYPE": "CORRECT",
    "WEIGHT_TYPE": "NONE",
    "PHOT_AUTOPARAMS": "2.5,3.5",
    "PHOT_AUTOAPERS": "0.0,0.0",
    "PHOT_FLUXFRAC": "0.5",
    "PHOT_APERTURES": "5",
    "SEEING_FWHM": "1.2",
    "STARNNW_NAME": "default.nnw",
    "SATUR_LEVEL": "50000.0",
    "SATUR_KEY": "SATURATE",
    "MAG_ZEROPOINT": "0.0",
    "GAIN": "0.0",
    "GAIN_KEY": "GAIN",
    "BACK_TYPE": "AUTO",
    "BACK_VALUE": "0.0",
    "BACK_SIZE": "64",
    "BACK_FILTERSIZE": "3",
    "BACKPHOTO_TYPE": "GLOBAL",
    "BACK_FILTTHRESH": "0.0",
    "FILTER_THRESH": "",
    "FLAG_IMAGE": "flag.fits",
    "FLAG_TYPE": "OR",
    "WEIGHT_IMAGE": "weight.fits",
    "WEIGHT_GAIN": "Y",
    "WEIGHT_THRESH": "",
    "RESCALE_WEIGHTS": "Y",
    "INTERP_TYPE": "ALL",
    "INTERP_MAXXLAG": "16",
    "INTERP_MAXYLAG": "16",
    "HEADER_SUFFIX": ".head",
    "CHECKIMAGE_TYPE": "NONE",
    "CHECKIMAGE_NAME": "check.fits",
}

#: Values of implemented keywords that we cannot honour: (key, value) -> why.
_UNSUPPORTED_VALUES = {
    ("DETECT_TYPE", "PHOTO"): "photographic (PHOTO) detection is not implemented; use CCD",
    ("MASK_TYPE", "BLANK"): "MASK_TYPE BLANK is not implemented; use CORRECT or NONE",
    ("BACKPHOTO_TYPE", "LOCAL"): "local photometric background (BACKPHOTO_TYPE LOCAL) is not implemented; use GLOBAL",
    ("CATALOG_TYPE", "ASCII_SKYCAT"): "SkyCat tables are not written; use ASCII_HEAD (the same rows, with "
    "a header every reader knows), FITS_1.0 or ASCII_VOTABLE",
    ("INTERP_TYPE", "VAR_ONLY"): "VAR_ONLY is not implemented: Debian's source-extractor 2.25 stops on it "
    "(\"WEIGHT_IMAGE missing\"), so there is nothing to match; use ALL or NONE",
}

_ALLOWED = {
    "CATALOG_TYPE": {"ASCII_HEAD", "ASCII", "FITS_LDAC", "FITS_1.0", "ASCII_VOTABLE", "ASCII_SKYCAT", "NONE"},
    "DETECT_TYPE": {"CCD", "PHOTO"},
    "THRESH_TYPE": {"RELATIVE", "ABSOLUTE"},
    "MASK_TYPE": {"NONE", "CORRECT", "BLANK"},
    "BACK_TYPE": {"AUTO", "MANUAL"},
    "BACKPHOTO_TYPE": {"GLOBAL", "LOCAL"},
    "FLAG_TYPE": set(FLAG_TYPES),
    "INTERP_TYPE": {"NONE", "VAR_ONLY", "ALL"},
}


@dataclass(frozen=True)
class ExtractionConfig:
    """Everything that decides a catalogue's content, in SExtractor's terms.

    Two configurations with the same :meth:`fingerprint` produce the same
    catalogue from the same exposure; the pipeline keys its "already done"
    check on it.
    """

    parameters: tuple[str, ...]
    catalog_name: str = "test.cat"
    catalog_type: str = "ASCII_HEAD"
    detect_minarea: int = 5
    detect_maxarea: int = 0
    thresh_type: str = "RELATIVE"
    detect_thresh: float = 1.5
    analysis_thresh: float = 1.5
    #: arcsec per pixel; 0: from the WCS at each source
    pixel_scale: float = 0.0
    filter_kernel: tuple[tuple[float, ...], ...] | None = None
    deblend_nthresh: int = 32
    deblend_mincont: float = 0.005
    clean: bool = True
    clean_param: float = 1.0
    mask_type: str = "CORRECT"
    phot_autoparams: tuple[float, float] = (2.5, 3.5)
    phot_autoapers: tuple[float, float] = (0.0, 0.0)
    #: light fractions for FLUX_RADIUS (the scalar column uses the first)
    phot_fluxfrac: tuple[float, ...] = (0.5,)
    #: aperture diameters (pixels) for FLUX_APER and its kin, as many as the columns ask for
    phot_apertures: tuple[float, ...] = ()
    #: CLASS_STAR's seeing (arcsec) and network (the .nnw file's numbers); unset without CLASS_STAR
    seeing_fwhm: float = 0.0
    star_nnw: tuple[float, ...] = ()
    satur_level: float = 50000.0
    satur_key: str = "SATURATE"
    mag_zeropoint: float = 0.0
    #: a header keyword holding each CCD's zeropoint (MegaPipe's PHOTZP), used instead of
    #: MAG_ZEROPOINT; only when asked for, never silently
    zeropoint_key: str = ""
    #: the flag map (a multi-extension image matching the exposure) and how its flags combine over a
    #: source's pixels; unset without IMAFLAGS_ISO or NIMAFLAGS_ISO
    flag_image: str = ""
    flag_type: str = ""
    #: WEIGHT_TYPE ("" for NONE) and its settings (see :mod:`.weights`); unset without one
    weight_type: str = ""
    weight_image: str = ""
    weight_gain: bool = False
    #: WEIGHT_THRESH as given, None for the type's default
    weight_thresh: float | None = None
    rescale_weights: bool = False
    #: INTERP_TYPE and its lags: how bad pixels are filled in ("" without weights)
    interp_type: str = ""
    interp_lags: tuple[int, ...] = ()
    gain: float = 0.0
    gain_key: str = "GAIN"
    back_type: str = "AUTO"
    back_value: float = 0.0
    back_size: tuple[int, int] = (64, 64)
    back_filtersize: tuple[int, int] = (3, 3)
    back_filtthresh: float = 0.0
    #: HEADER_SUFFIX, and the external header found with it (``""``: none); the header's cards, not
    #: its name, decide the catalogue, so neither is in the fingerprint (its md5 joins a flow's record)
    header_suffix: str = ".head"
    header_file: str = ""
    #: CHECKIMAGE_TYPE and CHECKIMAGE_NAME as ``((type, file name), ...)`` (:mod:`.check_images`); in the
    #: fingerprint when asked for, so that a flow makes them for exposures catalogued without them
    check_images: tuple[tuple[str, str], ...] = ()
    #: Keywords read but not implemented, reported to the user; not part of the fingerprint.
    notes: tuple[str, ...] = field(default=(), compare=False)

    def analysis_threshold(self, rms: float) -> float:
        """ANALYSIS_THRESH in ADU above the background, for a CCD whose background RMS is ``rms``."""
        return self.analysis_thresh * rms if self.thresh_type == "RELATIVE" else self.analysis_thresh

    def zeropoint(self, header) -> float:
        """The zeropoint of a CCD's magnitudes: MAG_ZEROPOINT, or its header's ``zeropoint_key``.
        A CCD without that keyword raises MissingZeropoint: it is skipped, not given another."""
        if not self.zeropoint_key:
            return self.mag_zeropoint
        value = header.get(self.zeropoint_key)
        try:
            return float(value)
        except (TypeError, ValueError):
            found = "has none" if value is None else f"has {value!r}, not a number"
            raise MissingZeropoint(
                f"the zeropoint was to come from its {self.zeropoint_key} header keyword, and it {found}"
            ) from None

    def kernel(self) -> np.ndarray | None:
        """The (already normalised) detection filter as a float32 array, or None."""
        if self.filter_kernel is None:
            return None
        return np.array(self.filter_kernel, dtype=np.float32)

    def measurement_dict(self) -> dict:
        """The values that decide a catalogue's content (the catalogue name does not).

        Settings that only some columns use are left out while unset, so that a
        configuration without those columns keeps the fingerprint it had before
        they existed, and its stored catalogues stay done."""
        values = asdict(self)
        values.pop("notes")
        values.pop("catalog_name")
        values.pop("header_suffix")
        values.pop("header_file")
        for key in _UNSET_WITHOUT_THEIR_COLUMNS:
            if not values[key]:
                values.pop(key)
        return values

    def fingerprint(self) -> str:
        """A short stable hash of :meth:`measurement_dict`, for caching and provenance."""
        blob = json.dumps(self.measurement_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_json(self) -> str:
        """Serialise for passing between processes and flow runs."""
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ExtractionConfig":
        raw = json.loads(text)
        for key in ("parameters", "phot_autoparams", "phot_autoapers", "phot_fluxfrac", "phot_apertures", "star_nnw", "back_size", "back_filtersize", "interp_lags", "notes"):
            raw[key] = tuple(raw[key])
        raw["check_images"] = tuple(tuple(pair) for pair in raw.get("check_images", ()))
        if raw["filter_kernel"] is not None:
            raw["filter_kernel"] = tuple(tuple(row) for row in raw["filter_kernel"])
        return cls(**raw)


_UNSET_WITHOUT_THEIR_COLUMNS = ("check_images", "phot_apertures", "seeing_fwhm", "star_nnw", "zeropoint_key", "flag_image", "flag_type",
                                "weight_type", "weight_image", "weight_gain", "weight_thresh", "rescale_weights",
                                "interp_type", "interp_lags")
#: The columns that read the flag map.
FLAG_COLUMNS = frozenset({"IMAFLAGS_ISO", "NIMAFLAGS_ISO"})
#: A FITS header keyword.
_HEADER_KEY = re.compile(r"[A-Z0-9_-]{1,8}")


def _read_lines(path: Path, what: str) -> list[str]:
    """The lines of a configuration file, or a ConfigError naming it and what it is."""
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {exc}") from None


def parse_keyword_file(path: Path) -> dict[str, str]:
    """Read ``KEY value  # comment`` lines; later keys win, as in source-extractor."""
    values: dict[str, str] = {}
    for number, line in enumerate(_read_lines(path, "configuration file"), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, *rest = line.split(None, 1)
        key = key.upper()
        value = rest[0] if rest else ""
        if key not in KNOWN_KEYS:
            raise ConfigError(f"{path}, line {number}: unknown keyword {key!r}")
        values[key] = value.strip()
    return values


def parse_overrides(args: Sequence[str]) -> dict[str, str]:
    """Read source-extractor style ``-KEY value`` pairs from a command line."""
    values: dict[str, str] = {}
    args = list(args)
    i = 0
    while i < len(args):
        word = args[i]
        if not word.startswith("-") or len(word) < 2:
            raise ConfigError(f"expected -KEYWORD on the command line, got {word!r}")
        key = word[1:].upper()
        if key not in KNOWN_KEYS:
            raise ConfigError(f"unknown keyword {word!r} on the command line")
        if i + 1 >= len(args):
            raise ConfigError(f"keyword {word} on the command line has no value")
        values[key] = args[i + 1]
        i += 2
    return values


def read_parameters(path: Path) -> tuple[str, ...]:
    """Read a ``.param`` file: one column a line, ``NAME``, ``NAME(n)`` for a vector or
    ``NAME(w,h)`` for a stamp, ``#`` comments."""
    lines = _read_lines(path, "parameter file (PARAMETERS_NAME)")
    spellings, names = [], set()
    for number, line in enumerate(lines, start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            column = parameter(line.split()[0])
        except ValueError as exc:
            written = {0: "", 1: "(n)", 2: "(w,h)"}
            supported = ", ".join(name + written[spec.dims] for name, spec in COLUMNS.items())
            raise ConfigError(f"{path}, line {number}: {exc}; supported parameters: {supported}") from None
        if column.name not in names:
            names.add(column.name)
            spellings.append(str(column))
    if not spellings:
        raise ConfigError(f"{path}: no output parameters (every line is empty or commented out)")
    return tuple(spellings)


def read_filter(path: Path) -> tuple[tuple[tuple[float, ...], ...], str | None]:
    """Read an ASCII ``.conv`` kernel and normalise it as source-extractor does.

    Returns the kernel rows and a note when the file has no normalisation
    keyword (source-extractor then assumes ``NORM``).
    """
    lines = _read_lines(path, "filter file (FILTER_NAME)")
    if not lines or not lines[0].startswith("CONV"):
        raise ConfigError(f"{path}: not a convolution filter (the first line must start with CONV)")
    header = lines[0]
    note = None
    if "NORM" in header:
        normalise = "NONORM" not in header
    else:
        normalise = True
        note = f"{path}: no NORM/NONORM on the CONV line; normalising, as source-extractor does"
    rows: list[list[float]] = []
    for number, line in enumerate(lines[1:], start=2):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        try:
            rows.append([float(word) for word in words])
        except ValueError:
            raise ConfigError(f"{path}, line {number}: not a row of numbers: {line.strip()!r}") from None
    if not rows:
        raise ConfigError(f"{path}: the convolution mask has no rows")
    width = max(len(row) for row in rows)
    if any(len(row) != width for row in rows):
        raise ConfigError(f"{path}: rows of the convolution mask have different lengths")
    kernel = np.array(rows, dtype=np.float64)
    if normalise:
        total = np.abs(kernel).sum()
        if total == 0.0:
            raise ConfigError(f"{path}: the convolution mask is all zeros")
        kernel = kernel / total
    # float32, as source-extractor stores it, then back to Python floats for hashing
    kernel32 = kernel.astype(np.float32)
    return tuple(tuple(float(v) for v in row) for row in kernel32), note


def _floats(key: str, value: str, count: int) -> tuple[float, ...]:
    parts = [p for p in value.replace(",", " ").split() if p]
    if len(parts) == 1 and count == 2:
        parts = parts * 2
    try:
        numbers = tuple(float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"{key}: expected {count} number(s), got {value!r}") from None
    if len(numbers) != count:
        raise ConfigError(f"{key}: expected {count} number(s), got {value!r}")
    return numbers


def _int(key: str, value: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        raise ConfigError(f"{key}: expected a whole number, got {value!r}") from None


def _bool(key: str, value: str) -> bool:
    word = value.strip().upper()[:1]
    if word not in ("Y", "N"):
        raise ConfigError(f"{key}: expected Y or N, got {value!r}")
    return word == "Y"


def _weight_settings(values: dict[str, str], where: Path, from_archive: bool) -> tuple[str, str, float | None]:
    """WEIGHT_TYPE ("" for NONE), the weight file (resolved where the user is; "" for BACKGROUND,
    or when each exposure's comes from the archive) and WEIGHT_THRESH (None: the type's default)."""
    types = [t.strip().upper() for t in values["WEIGHT_TYPE"].split(",") if t.strip()] or ["NONE"]
    if len(set(types)) > 1:
        raise ConfigError(f"WEIGHT_TYPE {values['WEIGHT_TYPE']}: separate detection and measurement weights "
                          "are not implemented; give one type")
    weight_type = types[0]
    if weight_type == "NONE":
        return "", "", None
    if weight_type not in WEIGHT_TYPES:
        raise ConfigError(f"WEIGHT_TYPE {weight_type} is not implemented; use one of NONE, {', '.join(WEIGHT_TYPES)}")
    thresholds = _number_list("WEIGHT_THRESH", values["WEIGHT_THRESH"], lambda v: v >= 0, "a number >= 0") \
        if values["WEIGHT_THRESH"].strip() else ()
    if len(thresholds) > 1 and len(set(thresholds)) > 1:
        raise ConfigError("WEIGHT_THRESH: separate detection and measurement thresholds are not implemented; give one")
    threshold = float(thresholds[0]) if thresholds else None
    if weight_type not in FROM_FILE or from_archive:
        return weight_type, "", threshold
    path = _companion_image("WEIGHT_IMAGE", values["WEIGHT_IMAGE"], where, "weight map",
                            f"WEIGHT_TYPE {weight_type} needs", "separate detection and measurement weight maps")
    return weight_type, path, threshold


def _companion_image(key: str, value: str, where: Path, what: str, needed_by: str, several: str) -> str:
    """The one file ``key`` names, resolved where the user is (even the packaged default.sex's
    names: these are the user's data) and checked to exist."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    if len(set(names)) != 1:
        raise ConfigError(f"{key} {value!r}: give one {what} ({several} are not implemented)")
    path = _resolve(names[0], where)
    if not path.is_file():
        raise ConfigError(f"{key} {path}: no such file; {needed_by} a {what} matching the exposure CCD by CCD "
                          f"(-{key} {what.split()[0]}s.fits)")
    return str(path)


def _resolve(name: str, base: Path) -> Path:
    path = Path(name).expanduser()
    return path if path.is_absolute() else base / path


def _number_list(key: str, value: str, valid, what: str) -> tuple[float, ...]:
    """One or more numbers, comma- or space-separated, each passing ``valid``."""
    parts = [p for p in value.replace(",", " ").split() if p]
    try:
        numbers = tuple(float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"{key}: expected {what}, got {value!r}") from None
    if not numbers or not all(valid(n) for n in numbers):
        raise ConfigError(f"{key}: expected {what}, got {value!r}")
    return numbers


def _fractions(key: str, value: str) -> tuple[float, ...]:
    return _number_list(key, value, lambda f: 0 < f < 1, "numbers between 0 and 1")


def _diameters(key: str, value: str) -> tuple[float, ...]:
    return _number_list(key, value, lambda d: d > 0, "positive aperture diameters in pixels")


def _vector_notes(parameters: tuple[str, ...], apertures: int, fractions: int) -> list[str]:
    """source-extractor's warning when a vector column asks for more elements than are configured
    (the extra elements stay 0), and which columns only use part of the configuration."""
    notes = []
    for name, shape in map(parameter, parameters):
        size = shape[0] if shape else 1
        available, key = (fractions, "PHOT_FLUXFRAC") if name == "FLUX_RADIUS" else (apertures, "PHOT_APERTURES")
        if COLUMNS[name].dims == 1 and size > available:
            notes.append(f"{name}({size}) asks for {size} values but {key} gives {available}: "
                         f"the last {size - available} stay 0, as in source-extractor")
    return notes


def _positive(key: str, value: str) -> float:
    number = _floats(key, value.split(",")[0], 1)[0]
    if number <= 0:
        raise ConfigError(f"{key} must be positive, got {number}")
    return number


class MissingZeropoint(ValueError):
    """A CCD lacks the header keyword its zeropoint was asked to come from."""


def load_config(
    sex_file: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    cwd: str | Path | None = None,
    zeropoint_key: str | None = None,
    maps_from_archive: bool = False,
    image: str | Path | None = None,
) -> ExtractionConfig:
    """Build an :class:`ExtractionConfig` as ``source-extractor -c FILE OVERRIDES`` would.

    Without ``sex_file`` the project's ``config/default.sex`` is used, and its
    relative file names resolve beside it.  ``zeropoint_key`` names a header
    keyword holding each CCD's zeropoint, to use instead of MAG_ZEROPOINT.
    ``maps_from_archive`` leaves WEIGHT_IMAGE and FLAG_IMAGE out: the flows fetch each exposure's
    weight and flag maps from the archive, and their md5s, not their names, join the record.  A user's file resolves relative
    names against ``cwd`` (the current directory), as source-extractor does.
    A keyword we do not implement is passed over in silence when it asks for
    nothing, and refused by name when it does (:mod:`.keyword_fates`).  With
    ``image``, an external header beside it (HEADER_SUFFIX, :mod:`.external_header`) is read over
    each CCD's header; the flows fetch it from the archive instead.
    """
    from .. import config as packaged

    if sex_file is None:
        sex_path = packaged.path("default.sex")
        base = sex_path.parent
    else:
        sex_path = Path(sex_file).expanduser()
        base = Path(cwd) if cwd is not None else Path.cwd()
        if not sex_path.is_absolute():
            sex_path = base / sex_path
    values = dict(DEFAULTS)
    from_file = parse_keyword_file(sex_path)
    values.update(from_file)
    from_cli = parse_overrides(list(overrides))
    values.update(from_cli)
    # A user override of a file name is relative to the current directory even
    # when the packaged defaults are used.
    cli_base = Path(cwd) if cwd is not None else Path.cwd()

    def file_value(key: str) -> Path:
        return _resolve(values[key], cli_base if key in from_cli else base)

    for key, value in values.items():
        if key in _ALLOWED and value.upper() not in _ALLOWED[key]:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(sorted(_ALLOWED[key]))}")
        if (key, value.upper()) in _UNSUPPORTED_VALUES:
            raise ConfigError(f"{key}: {_UNSUPPORTED_VALUES[(key, value.upper())]}")

    parameters = read_parameters(file_value("PARAMETERS_NAME"))
    notes: list[str] = []

    weight_type, weight_image, weight_thresh = _weight_settings(values, cli_base, maps_from_archive)
    if values["FILTER_THRESH"].strip():
        raise ConfigError("FILTER_THRESH is not implemented and would change detections; remove it")
    thresh = _floats("DETECT_THRESH", values["DETECT_THRESH"].split(",")[0], 1)[0]
    if "," in values["DETECT_THRESH"]:
        raise ConfigError(
            "DETECT_THRESH in <threshold>,<ZP> (surface brightness) form is not implemented; give one number"
        )

    use_filter = _bool("FILTER", values["FILTER"])
    kernel = None
    if use_filter:
        kernel, note = read_filter(file_value("FILTER_NAME"))
        if note:
            notes.append(note)

    for key in sorted((set(from_file) | set(from_cli)) - set(DEFAULTS)):
        refused = keyword_fates.refusal(key, values[key])
        if refused:
            raise ConfigError(refused)
    header_suffix = values["HEADER_SUFFIX"].strip()
    header_file = external_header.beside(Path(image), header_suffix) if image is not None and header_suffix else None
    if header_file is not None and header_file.is_file():
        external_header.read_blocks(header_file)  # a malformed one is refused now, not in every CCD's worker
        notes.append(f"each CCD's header is read with the cards of {header_file} over it (HEADER_SUFFIX)")

    check = check_images.requested(values["CHECKIMAGE_TYPE"], values["CHECKIMAGE_NAME"])
    noise_maps = {"BACKGROUND_RMS", "MINIBACK_RMS"} & {kind for kind, _ in check}
    if noise_maps and weight_type in FROM_FILE:
        raise ConfigError(f"CHECKIMAGE_TYPE {', '.join(sorted(noise_maps))} with WEIGHT_TYPE {weight_type}: the noise "
                          "map a weight map gives is not written here; ask for BACKGROUND_RMS without the weight map")
    if values["CATALOG_TYPE"].upper() == "NONE" and not check:
        raise ConfigError("CATALOG_TYPE NONE writes no catalogue, and no CHECKIMAGE_TYPE asks for anything else; "
                          "give a catalogue type, or check images to make")

    back_size = tuple(int(v) for v in _floats("BACK_SIZE", values["BACK_SIZE"], 2))
    back_filtersize = tuple(int(v) for v in _floats("BACK_FILTERSIZE", values["BACK_FILTERSIZE"], 2))
    if min(back_size) < 1 or min(back_filtersize) < 1:
        raise ConfigError("BACK_SIZE and BACK_FILTERSIZE must be at least 1")
    minarea = _int("DETECT_MINAREA", values["DETECT_MINAREA"])
    if minarea < 1:
        raise ConfigError("DETECT_MINAREA must be at least 1")
    if thresh <= 0:
        raise ConfigError(f"DETECT_THRESH must be positive, got {thresh}")
    if "," in values["ANALYSIS_THRESH"]:
        raise ConfigError(
            "ANALYSIS_THRESH in <threshold>,<ZP> (surface brightness) form is not implemented; give one number"
        )

    phot_apertures = _diameters("PHOT_APERTURES", values["PHOT_APERTURES"])
    phot_fluxfrac = _fractions("PHOT_FLUXFRAC", values["PHOT_FLUXFRAC"])
    # Only the apertures some column asks for are measured (and can flag a source), as in source-extractor.
    wanted = max((column.size for column in map(parameter, parameters) if column.name.endswith("_APER")), default=0)
    notes += _vector_notes(parameters, len(phot_apertures), len(phot_fluxfrac))
    seeing_fwhm, star_nnw = 0.0, ()
    if "CLASS_STAR" in parameters:
        seeing_fwhm = _floats("SEEING_FWHM", values["SEEING_FWHM"], 1)[0]
        if seeing_fwhm <= 0:
            raise ConfigError(
                f"SEEING_FWHM {values['SEEING_FWHM']}: CLASS_STAR needs the seeing in arcsec; taking it from a "
                "PSF model (SEEING_FWHM 0) is not implemented"
            )
        star_nnw = read_nnw(file_value("STARNNW_NAME"))
    flag_image, flag_type = "", ""
    if FLAG_COLUMNS & {parameter(p).name for p in parameters}:
        flag_image = "" if maps_from_archive else _companion_image(
            "FLAG_IMAGE", values["FLAG_IMAGE"], cli_base, "flag map", "IMAFLAGS_ISO and NIMAFLAGS_ISO need",
            "several, for IMAFLAGS_ISO(n),")
        flag_type = values["FLAG_TYPE"].strip().upper()
    key = (zeropoint_key or "").strip().upper()
    if key:
        if not _HEADER_KEY.fullmatch(key):
            raise ConfigError(f"zeropoint keyword {zeropoint_key!r} is not a FITS header keyword (1-8 of A-Z 0-9 _ -)")
        notes.append(f"magnitudes use each CCD's {key} header keyword as their zeropoint, "
                     f"not MAG_ZEROPOINT {values['MAG_ZEROPOINT']}")
    return ExtractionConfig(
        parameters=parameters,
        zeropoint_key=key,
        flag_image=flag_image,
        flag_type=flag_type,
        weight_type=weight_type,
        weight_image=weight_image,
        weight_gain=bool(weight_type) and _bool("WEIGHT_GAIN", values["WEIGHT_GAIN"]),
        weight_thresh=weight_thresh,
        rescale_weights=bool(weight_type) and _bool("RESCALE_WEIGHTS", values["RESCALE_WEIGHTS"]),
        interp_type=values["INTERP_TYPE"].strip().upper() if weight_type else "",
        interp_lags=(_int("INTERP_MAXXLAG", values["INTERP_MAXXLAG"]), _int("INTERP_MAXYLAG", values["INTERP_MAXYLAG"]))
        if weight_type else (),
        catalog_name=values["CATALOG_NAME"],
        catalog_type=values["CATALOG_TYPE"].upper(),
        detect_minarea=minarea,
        detect_maxarea=_int("DETECT_MAXAREA", values["DETECT_MAXAREA"]),
        thresh_type=values["THRESH_TYPE"].upper(),
        detect_thresh=thresh,
        analysis_thresh=_positive("ANALYSIS_THRESH", values["ANALYSIS_THRESH"]),
        pixel_scale=_floats("PIXEL_SCALE", values["PIXEL_SCALE"], 1)[0],
        filter_kernel=kernel,
        deblend_nthresh=_int("DEBLEND_NTHRESH", values["DEBLEND_NTHRESH"]),
        deblend_mincont=_floats("DEBLEND_MINCONT", values["DEBLEND_MINCONT"], 1)[0],
        clean=_bool("CLEAN", values["CLEAN"]),
        clean_param=_floats("CLEAN_PARAM", values["CLEAN_PARAM"], 1)[0],
        mask_type=values["MASK_TYPE"].upper(),
        phot_autoparams=_floats("PHOT_AUTOPARAMS", values["PHOT_AUTOPARAMS"], 2),
        phot_autoapers=_floats("PHOT_AUTOAPERS", values["PHOT_AUTOAPERS"], 2),
        phot_fluxfrac=phot_fluxfrac,
        phot_apertures=phot_apertures[:wanted],
        seeing_fwhm=seeing_fwhm,
        star_nnw=star_nnw,
        satur_level=_floats("SATUR_LEVEL", values["SATUR_LEVEL"], 1)[0],
        satur_key=values["SATUR_KEY"].upper(),
        mag_zeropoint=_floats("MAG_ZEROPOINT", values["MAG_ZEROPOINT"], 1)[0],
        gain=_floats("GAIN", values["GAIN"], 1)[0],
        gain_key=values["GAIN_KEY"].upper(),
        back_type=values["BACK_TYPE"].upper(),
        back_value=_floats("BACK_VALUE", values["BACK_VALUE"].split(",")[0], 1)[0],
        back_size=back_size,  # type: ignore[arg-type]
        back_filtersize=back_filtersize,  # type: ignore[arg-type]
        back_filtthresh=_floats("BACK_FILTTHRESH", values["BACK_FILTTHRESH"], 1)[0],
        header_suffix=header_suffix,
        header_file=str(header_file) if header_file is not None and header_file.is_file() else "",
        check_images=check,
        notes=tuple(notes),
    )
