"""Where a flow run keeps its local files while it works.

On an HTCondor execute node the job's own scratch directory
(``_CONDOR_SCRATCH_DIR``) is used, never a shared path; elsewhere
``CANFAR_CATALOGUE_SCRATCH`` or the system's temporary directory.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def scratch_root(explicit: str | None = None) -> Path:
    for candidate in (explicit, os.environ.get("_CONDOR_SCRATCH_DIR"), os.environ.get("CANFAR_CATALOGUE_SCRATCH")):
        if candidate:
            return Path(candidate)
    return Path(tempfile.gettempdir()) / "canfar-catalogue"
