"""Files that go with an exposure in the archive: its weight map, its flag map, its external header.

A configuration that reads one (``WEIGHT_TYPE`` MAP_WEIGHT, MAP_VAR or MAP_RMS; the
IMAFLAGS_ISO columns) gets each exposure's from the archive beside it, named by a
pattern (``config/pipeline.toml``: ``{id}.weight.fits.fz``, ``{id}.flag.fits.fz``).
An external header (HEADER_SUFFIX, SCAMP's ``.head``) is read when the archive has one:
by default the exposure's file name with its last extension replaced by the suffix,
``{id}.fits.head``, as source-extractor names it beside an image; an exposure without
one is measured without it.  Their md5s join the exposure's wherever "the same input"
is decided: the plan's skip check, the batch's idempotency key and the provenance
record; so a new weight map, or a new header, makes its exposure run again, and
nothing else.
"""

from __future__ import annotations

from .. import config
from ..boundaries import ids
from ..science import ExtractionConfig
from ..science.weights import FROM_FILE

SETTINGS = config.settings()["download"]
#: Each kind of file's default name in the archive ("" for the header: named by HEADER_SUFFIX).
PATTERNS = {"weight": SETTINGS["weight_pattern"], "flag": SETTINGS["flag_pattern"],
            "header": SETTINGS["header_pattern"]}
#: The configuration setting each kind fills in once fetched.
SETTING = {"weight": "weight_image", "flag": "flag_image", "header": "header_file"}
#: Kinds an exposure may lack in the archive: it is then measured without one.
OPTIONAL = frozenset({"header"})


def needed(extraction: ExtractionConfig) -> list[str]:
    """The kinds of file the configuration reads beside each exposure."""
    return [kind for kind, reads in (("weight", extraction.weight_type in FROM_FILE),
                                      ("flag", bool(extraction.flag_type)),
                                      ("header", bool(extraction.header_suffix))) if reads]


def patterns(extraction: ExtractionConfig, weight: str, flag: str, header: str) -> dict[str, str]:
    """Each kind's pattern; an empty header pattern names the exposure's file (``{id}.fits.fz``) with
    its last extension replaced by HEADER_SUFFIX, as source-extractor names it beside an image."""
    return {"weight": weight, "flag": flag, "header": header or "{id}.fits" + extraction.header_suffix}


def names(patterns: dict[str, str], kinds: list[str], observation_id: str) -> dict[str, str]:
    """Each needed file's name in the archive for this exposure (InvalidID for a bad pattern)."""
    return {kind: ids.companion_name(patterns[kind], observation_id, fits_file=kind != "header") for kind in kinds}


def check_patterns(patterns: dict[str, str], kinds: list[str], observation_ids: list[str]) -> None:
    """A pattern that cannot name every exposure's file stops the batch before anything starts."""
    for kind in kinds:
        try:
            for observation_id in observation_ids:
                names(patterns, [kind], observation_id)
        except ids.InvalidID as exc:
            raise ValueError(f"no exposure was started: {kind}_pattern: {exc}") from None


def present(md5s: dict[str, str]) -> dict[str, str]:
    """The files there are: an optional kind looked up and not found has an empty md5."""
    return {kind: md5 for kind, md5 in md5s.items() if md5}


def key_part(md5s: dict[str, str]) -> str:
    """The files' md5s as they join the exposure's in an idempotency key."""
    return "".join(f"+{kind}={md5}" for kind, md5 in sorted(present(md5s).items()))
