"""SExtractor configuration files shipped with canfar-catalogue.

``default.sex`` and ``default.conv`` are the ones Debian's source-extractor 2.25
installs in ``/usr/share/source-extractor/``; ``default.param`` holds the columns
of the CANFAR batch tutorial.  They are package data so that an execute node
running the installed package finds them without a checkout.
"""

from importlib.resources import files
from pathlib import Path


def path(name: str) -> Path:
    """Return the installed path of a file in this folder, e.g. ``path("default.sex")``."""
    return Path(str(files(__name__).joinpath(name)))
