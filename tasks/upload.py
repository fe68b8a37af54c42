"""Store a catalogue and its provenance record at the destination."""

from __future__ import annotations

from pathlib import Path

from prefect import task

from .. import config
from ..boundaries.provenance import Provenance, record_name
from ..boundaries.storage import open_destination
from .policy import task_options

SETTINGS = config.settings()["upload"]


@task(name="upload", **task_options(SETTINGS))
def upload(catalogue: Path, record: Provenance, destination: str, check_images: dict[str, Path] | None = None) -> str:
    """Put the check images, the catalogue (each under its own file name), then ``<id>.provenance.json``:
    the record marks them complete, and names them.

    Returns where the catalogue is.  The local copy is left in place; the
    flow removes the scratch directory only after this succeeds.
    """
    target = open_destination(destination)
    record.check_images = {kind: {"name": path.name, "md5": target.put(path, path.name)}
                           for kind, path in (check_images or {}).items()}
    record.catalogue = catalogue.name
    record.catalogue_md5 = target.put(catalogue, catalogue.name)
    sidecar = catalogue.with_name(record_name(record.observation_id))
    sidecar.write_text(record.to_json())
    target.put(sidecar, record_name(record.observation_id))
    return target.location(catalogue.name)
