"""The CADC archive, ``cadc:CFHT``: what ``cadcget cadc:CFHT/<id>.fits.fz`` does, as an Archive.

Downloads go through ``cadcdata.StorageInventoryClient`` to a hidden name in
the scratch directory and are renamed only once their md5 matches the one the
archive announced, so a partial file never looks like a finished download.
Discovery asks CADC's CAOM TAP service (``cadctap``) for processed MegaPrime
exposures observed since a date.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime, timezone
from pathlib import Path

from . import ids
from .archive import Fetched
from .checksums import md5_of
from .cadc import CadcAuth, UsesCadcCredential, own_retries_off, translated
from .errors import ChecksumMismatch, PermanentError

#: Processed MegaPrime exposures observed since an MJD, oldest first.
DISCOVERY = """\
SELECT Plane.productID, Plane.time_bounds_lower
FROM caom2.Observation AS Observation
JOIN caom2.Plane AS Plane ON Observation.obsID = Plane.obsID
WHERE Observation.collection = '{collection}'
  AND Observation.instrument_name = 'MegaPrime'
  AND Plane.productID LIKE '%p'
  AND Plane.time_bounds_lower >= {mjd:.6f}
ORDER BY Plane.time_bounds_lower"""

MJD_EPOCH = datetime(1858, 11, 17, tzinfo=timezone.utc)


def mjd(moment: datetime) -> float:
    """Modified Julian Date of a UTC time (CAOM's time axis)."""
    moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
    return (moment - MJD_EPOCH).total_seconds() / 86400.0


class CadcArchive(UsesCadcCredential):
    """``cadc:<collection>``, for example ``cadc:CFHT``."""

    shared = True

    def __init__(self, uri: str, auth: CadcAuth | None = None):
        self.uri = uri
        self.collection = uri.split(":", 1)[1].strip("/")
        if not self.collection or "/" in self.collection:
            raise PermanentError(f"archive {uri!r}: expected cadc:<collection>, like cadc:CFHT")
        self.tap_service = self._use_credential(auth)["tap_service"]
        self._client = None

    def _storage(self):
        if self._client is None:
            from cadcdata import StorageInventoryClient

            with translated(f"connecting to the CADC archive for {self.uri}", self.auth):
                client = StorageInventoryClient(self.auth.subject())
            own_retries_off(client._cadc_client)
            self._client = client
        return self._client

    def _file_uri(self, observation_id: str, name: str | None = None) -> str:
        return f"cadc:{self.collection}/{name or ids.file_name(observation_id)}"

    def checksum(self, observation_id: str, name: str | None = None) -> str:
        file_uri = self._file_uri(observation_id, name)
        with translated(f"observation {observation_id} ({file_uri})", self.auth):
            info = self._storage().cadcinfo(file_uri)
        if not info.md5sum:
            raise PermanentError(f"observation {observation_id}: the archive gave no md5 for {file_uri}")
        return info.md5sum

    def fetch(self, observation_id: str, directory: Path, name: str | None = None) -> Fetched:
        file_uri = self._file_uri(observation_id, name)
        expected = self.checksum(observation_id, name)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / (name or ids.file_name(observation_id))
        partial = directory / f".{target.name}.download"
        try:
            with translated(f"downloading observation {observation_id} ({file_uri})", self.auth):
                self._storage().cadcget(file_uri, dest=str(partial))
            got = md5_of(partial)
            if got != expected:
                raise ChecksumMismatch(
                    f"observation {observation_id}: downloaded md5 {got} does not match the archive's {expected}"
                )
            size = partial.stat().st_size
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
            for leftover in directory.glob(f".{target.name}.download-*.part"):
                leftover.unlink(missing_ok=True)  # the client's own partial file
        return Fetched(target, expected, size)

    def list_since(self, since: datetime) -> list[str]:
        from cadctap import CadcTapClient

        query = DISCOVERY.format(collection=self.collection, mjd=mjd(since))
        out = io.StringIO()
        asking = f"asking {self.tap_service} for {self.collection} exposures since {since:%Y-%m-%d %H:%M}"
        with translated(asking, self.auth):
            client = CadcTapClient(self.auth.subject(), resource_id=self.tap_service)
            own_retries_off(client._tap_client)
            client.query(query, output_file=out, response_format="tsv", data_only=True)
        rows = list(csv.reader(io.StringIO(out.getvalue()), delimiter="\t"))
        found = []
        for row in rows[1:]:  # the first row names the columns
            if row and ids.observation_id_of(row[0] + ids.SUFFIX):
                found.append(row[0])
        return list(dict.fromkeys(found))
