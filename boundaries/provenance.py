"""The small record stored beside each catalogue, and the "already done" rule.

The check images a configuration asks for are stored first, then the catalogue
(``<id>.cat``, or as :data:`..science.catalogue.SUFFIXES` names it for its type),
and ``<id>.provenance.json`` last, so the record's presence means they are
complete; the record names each file.  An exposure is done when the record names
the same input md5 and configuration hash as the run that would redo it (and
the same md5s of the weight and flag maps read with it), and the catalogue and
every check image it names are there with the md5s it names.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from ..science.catalogue import SUFFIXES
from .errors import BoundaryError
from .storage import Destination

SCHEMA = 1


def catalogue_name(observation_id: str, catalog_type: str = "ASCII_HEAD") -> str:
    """The catalogue's file name: ``<id>.cat`` (ASCII_HEAD, ASCII), ``<id>.ldac.fits`` (FITS_LDAC),
    ``<id>.cat.fits`` (FITS_1.0) or ``<id>.cat.xml`` (ASCII_VOTABLE)."""
    return observation_id + SUFFIXES[catalog_type]


def record_name(observation_id: str) -> str:
    return f"{observation_id}.provenance.json"


@dataclass
class Provenance:
    observation_id: str
    input_md5: str
    config_hash: str
    catalogue_md5: str
    sources: int
    ccds: int
    skipped_ccds: list[str] = field(default_factory=list)
    archive: str = ""
    software: dict[str, str] = field(default_factory=dict)
    flow_run_id: str | None = None
    #: The catalogue's file name beside the record; older records mean ``<id>.cat``.
    catalogue: str = ""
    #: The md5s of the files read with the exposure, by kind ("weight", "flag"); none in older records.
    companion_md5: dict[str, str] = field(default_factory=dict)
    #: The check images stored with the catalogue: type -> {"name": file name, "md5": its md5}.
    check_images: dict[str, dict[str, str]] = field(default_factory=dict)
    #: The exposure's quality numbers (:meth:`..science.qa.ExposureQuality.to_dict`); older records have none.
    qa: dict | None = None
    created: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    schema: int = SCHEMA

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> "Provenance":
        raw = json.loads(text)
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        return cls(**known)


def stored(destination: Destination, observation_id: str) -> Provenance | None:
    """The record of a completed catalogue at ``destination``, or None."""
    try:
        if destination.stat(record_name(observation_id)) is None:
            return None
        record = Provenance.from_json(destination.read(record_name(observation_id)))
    except (BoundaryError, ValueError, TypeError):
        return None
    if destination.stat(record.catalogue or catalogue_name(observation_id)) != record.catalogue_md5:
        return None
    if any(destination.stat(image["name"]) != image["md5"] for image in record.check_images.values()):
        return None
    return record


def is_done(
    destination: Destination, observation_id: str, input_md5: str, config_hash: str,
    companion_md5: dict[str, str] | None = None,
) -> Provenance | None:
    """The stored record when this exposure is done with this input (the exposure, and the weight
    and flag maps read with it) and configuration."""
    record = stored(destination, observation_id)
    if (record and record.input_md5 == input_md5 and record.config_hash == config_hash
            and (record.companion_md5 or {}) == (companion_md5 or {})):
        return record
    return None


def software_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ("canfar-catalogue", "sep", "astropy", "numpy"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            pass
    return versions
