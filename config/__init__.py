"""SExtractor configuration files shipped with canfar-catalogue.

``pipeline.toml`` says how the pipeline runs (retries, time limits,
concurrency).  ``default.sex``, ``default.conv`` and ``default.nnw`` (the
CLASS_STAR neural network) are the ones Debian's source-extractor 2.25
installs in ``/usr/share/source-extractor/``; ``default.param`` holds the columns
of the CANFAR batch tutorial.  They are package data so that an execute node
running the installed package finds them without a checkout.
"""

import os
import tomllib
from importlib.resources import files
from pathlib import Path
from typing import Any


def path(name: str) -> Path:
    """Return the installed path of a file in this folder, e.g. ``path("default.sex")``."""
    return Path(str(files(__name__).joinpath(name)))


def settings() -> dict[str, Any]:
    """``pipeline.toml``, with the file named by ``CANFAR_CATALOGUE_SETTINGS`` merged on top."""
    merged = tomllib.loads(path("pipeline.toml").read_text())
    override = os.environ.get("CANFAR_CATALOGUE_SETTINGS")
    if override:
        for section, values in tomllib.loads(Path(override).read_text()).items():
            merged.setdefault(section, {}).update(values)
    return merged
