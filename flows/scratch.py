"""Where a flow run keeps its local files while it works.

On an HTCondor execute node the job's own scratch directory
(``_CONDOR_SCRATCH_DIR``) is used, never a shared path; elsewhere
``CANFAR_CATALOGUE_SCRATCH`` or the system's temporary directory.

A run cleans its own directory when it ends, even when it fails; a run killed
outright cannot.  HTCondor removes a job's scratch directory itself; a
``process`` worker does not, so each run sweeps away the directories nobody
has touched for longer than any run may take (``stale_scratch_hours``), or
a long-lived worker's disk fills with the exposures of killed runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from ..boundaries import ids


def scratch_root(explicit: str | None = None) -> Path:
    for candidate in (explicit, os.environ.get("_CONDOR_SCRATCH_DIR"), os.environ.get("CANFAR_CATALOGUE_SCRATCH")):
        if candidate:
            return Path(candidate)
    return Path(tempfile.gettempdir()) / "canfar-catalogue"


def _is_run_directory(name: str) -> bool:
    """A directory a run made: named after its flow run's id, or after its exposure (outside Prefect)."""
    try:
        uuid.UUID(name)
        return True
    except ValueError:
        try:
            return ids.check(name) == name
        except ids.InvalidID:
            return False


def sweep_stale(root: Path, older_than_hours: float, keep: Path | None = None) -> list[Path]:
    """Remove the run directories under ``root`` that nothing has changed for ``older_than_hours``
    (nor anything in them); returns what was removed.  Only directories named as runs name theirs
    are looked at: a scratch folder the user chose may hold other things."""
    if not root.is_dir():
        return []
    cutoff = time.time() - older_than_hours * 3600.0
    removed = []
    for directory in root.iterdir():
        if not directory.is_dir() or directory == keep or not _is_run_directory(directory.name):
            continue
        try:
            newest = max([directory.stat().st_mtime] + [p.stat().st_mtime for p in directory.rglob("*")])
        except OSError:  # being removed by its own run
            continue
        if newest < cutoff:
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(directory)
    return removed
