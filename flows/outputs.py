"""What an exposure run stores besides its catalogue: the check images its configuration asks for.

One CHECKIMAGE_NAME cannot serve every exposure of a batch, so in the flows
each check image's name is a pattern with ``{id}``, as the weight map's is: a
CHECKIMAGE_NAME holding ``{id}`` is taken as that pattern, and any other name
(Debian's ``default.sex`` says ``check.fits``) gives way to the type's default
below, which the batch's log names.  They are stored beside the catalogue,
tile-compressed without loss (:mod:`..science.check_images`), named in the
provenance record and part of the skip check.
"""

from __future__ import annotations

import dataclasses

from ..boundaries import ids
from ..boundaries.provenance import catalogue_name
from ..science import ConfigError, ExtractionConfig

#: Each check image's default name pattern in the flows; OBJECTS and -OBJECTS are told apart by name.
DEFAULT_PATTERNS = {
    "BACKGROUND": "{id}.background.fits.fz",
    "BACKGROUND_RMS": "{id}.background_rms.fits.fz",
    "MINIBACKGROUND": "{id}.miniback.fits.fz",
    "MINIBACK_RMS": "{id}.miniback_rms.fits.fz",
    "-BACKGROUND": "{id}.subtracted.fits.fz",
    "FILTERED": "{id}.filtered.fits.fz",
    "OBJECTS": "{id}.objects.fits.fz",
    "-OBJECTS": "{id}.minus_objects.fits.fz",
    "SEGMENTATION": "{id}.segmentation.fits.fz",
    "APERTURES": "{id}.apertures.fits.fz",
}
#: Any valid ID, to try a pattern on before any exposure is known.
_SAMPLE_ID = "1000000p"


def for_flows(extraction: ExtractionConfig) -> tuple[ExtractionConfig, list[str]]:
    """The configuration with each check image's name turned into its pattern, and a note for each
    name that gave way to a default.  Refuses, by name, what a flow cannot store."""
    if extraction.catalog_type == "NONE":
        raise ConfigError("CATALOG_TYPE NONE: the flows store a catalogue for every exposure (its record and skip "
                          "check rest on it); give a catalogue type, and the check images are stored beside it")
    patterns, notes = [], []
    for kind, name in extraction.check_images:
        if "{id}" in name:
            pattern = name
        else:
            pattern = DEFAULT_PATTERNS[kind]
            notes.append(f"CHECKIMAGE_NAME {name} would name every exposure's {kind} image alike; each is stored "
                         f"as {pattern} (give a name with {{id}} to choose another)")
        patterns.append((kind, pattern))
    extraction = dataclasses.replace(extraction, check_images=tuple(patterns))
    names(extraction, _SAMPLE_ID)  # a pattern that cannot name a file is refused now
    return extraction, notes


def names(extraction: ExtractionConfig, observation_id: str) -> dict[str, str]:
    """Each check image's file name for this exposure, from the patterns :func:`for_flows` left."""
    named: dict[str, str] = {}
    taken = {catalogue_name(observation_id, extraction.catalog_type)}
    for kind, pattern in extraction.check_images:
        try:
            name = ids.companion_name(pattern, observation_id)
        except ids.InvalidID as exc:
            raise ConfigError(f"CHECKIMAGE_NAME for {kind}: {exc}") from None
        if name in taken:
            raise ConfigError(f"CHECKIMAGE_NAME for {kind}: {pattern} names a file already stored for the exposure "
                              f"({name}); give each check image its own name")
        taken.add(name)
        named[kind] = name
    return named
