"""What each source-extractor keyword we do not implement asks of us.

Every keyword a configuration may hold (``source-extractor -dd`` lists 73)
is one of three things: it has an effect (:data:`.sexconfig.DEFAULTS`), it
asks for nothing and is passed over in silence, or the value given asks for
an output or a behaviour we do not give, and the configuration is refused by
name before any work.  Debian's own ``default.sex`` sets many keywords of the
second kind (``WRITE_XML N``, the MEMORY_* sizes, the ASSOC set without
ASSOC columns), so staying quiet about them keeps a note meaningful when one
is printed.  ``docs/keywords.md`` has the whole table.
"""

from __future__ import annotations

#: Keywords that ask for nothing whatever their value, and why.
ASKS_NOTHING: dict[str, str] = {
    **{key: "read only for the ASSOC columns (VECTOR_ASSOC, NUMBER_ASSOC), which the .param cannot ask for here"
       for key in ("ASSOC_NAME", "ASSOC_DATA", "ASSOC_PARAMS", "ASSOCCOORD_TYPE", "ASSOC_RADIUS", "ASSOC_TYPE",
                   "ASSOCSELEC_TYPE")},
    "BACKPHOTO_THICK": "read only with BACKPHOTO_TYPE LOCAL, which is refused",
    "DGEO_IMAGE": "names the map DGEO_TYPE asks for; alone it asks for nothing",
    "MAG_GAMMA": "read only with DETECT_TYPE PHOTO, which is refused",
    **{key: "sizes source-extractor's internal buffers; nothing here overflows them"
       for key in ("MEMORY_OBJSTACK", "MEMORY_PIXSTACK", "MEMORY_BUFSIZE")},
    "NTHREADS": "source-extractor's threads; CCDs are measured on every core the process may use (science/cores.py)",
    "PATTERN_TYPE": "read only for pattern-fitting columns, which the .param cannot ask for here",
    "PHOT_PETROPARAMS": "read only for the Petrosian columns (FLUX_PETRO ...), which the .param cannot ask for here",
    "PSF_NAME": "read only for PSF-fitting columns, which the .param cannot ask for here",
    "PSF_NMAX": "read only for PSF-fitting columns, which the .param cannot ask for here",
    "SOM_NAME": "read only for the SOM columns, which the .param cannot ask for here",
    "VERBOSE_TYPE": "how much source-extractor prints while it runs; the run's log says what happened",
    "XML_NAME": "names the file WRITE_XML Y asks for; alone it asks for nothing",
    "XSL_URL": "a style sheet named in that XML file; alone it asks for nothing",
}

#: Keywords whose every value but one asks for an output or a behaviour we do not give:
#: keyword -> (the value that asks for nothing, what to do instead).
ASKS_NOTHING_ONLY_AS: dict[str, tuple[str, str]] = {
    "DGEO_TYPE": ("NONE", "differential geometry maps are not applied; remove DGEO_TYPE (or set it to NONE)"),
    "FITS_UNSIGNED": ("N", "integer images are read as their BZERO and BSCALE say (MegaCam's uint16 CCDs "
                           "carry BZERO 32768); remove FITS_UNSIGNED (or set it to N)"),
    "WRITE_XML": ("N", "the XML run summary is not written; remove WRITE_XML (or set it to N)"),
}

def refusal(key: str, value: str) -> str | None:
    """Why ``key value`` is refused, or None when it asks for nothing (or is not ours to judge)."""
    if key in ASKS_NOTHING_ONLY_AS:
        quiet, instead = ASKS_NOTHING_ONLY_AS[key]
        if value.strip().upper() not in (quiet, ""):
            return f"{key} {value.strip()}: {instead}"
    return None


def fate(key: str) -> str:
    """One line for the table in ``docs/keywords.md``."""
    if key in ASKS_NOTHING_ONLY_AS:
        quiet, instead = ASKS_NOTHING_ONLY_AS[key]
        return f"asks for nothing as {quiet}; any other value is refused: {instead}"
    return f"asks for nothing: {ASKS_NOTHING[key]}"


#: Every keyword with a fate here.
KEYWORDS = frozenset(ASKS_NOTHING) | frozenset(ASKS_NOTHING_ONLY_AS)
