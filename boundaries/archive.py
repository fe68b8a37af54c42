"""Where exposures come from: ``cadc:CFHT`` in production, a folder by default.

An archive is named by a URI: ``file:///data/archive`` (a folder of
``<id>.fits.fz`` files) or ``cadc:CFHT`` (the CADC archive).  It can give an
exposure's md5 without downloading it (so a finished exposure is skipped for
the price of one small request), fetch it into a directory, and list what
arrived since a date (for the nightly run).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from . import checksums
from .checksums import CHUNK
from .errors import ChecksumMismatch, NotFound, PermanentError, TransientError
from .ids import file_name
from .registry import Registry


@dataclass(frozen=True)
class Fetched:
    """A complete, verified local copy of an exposure."""

    path: Path
    md5: str
    size: int


class Archive(Protocol):
    uri: str
    #: A service that other users share (CADC): downloads from it hold one of the download
    #: slots, so that a big batch does not flood it.  A local folder needs no such bound.
    shared: bool

    def checksum(self, observation_id: str, name: str | None = None) -> str:
        """The md5 (hex) of the exposure's file (or of ``name``, a file that goes with it, such as
        its weight map), without downloading it."""

    def fetch(self, observation_id: str, directory: Path, name: str | None = None) -> Fetched:
        """Download the exposure (or ``name``) into ``directory``; a partial file never has the
        final name."""

    def list_since(self, since: datetime) -> list[str]:
        """Observation IDs that arrived at or after ``since`` (UTC), oldest first."""


class LocalArchive:
    """A folder of ``<id>.fits.fz`` files standing in for the CADC archive."""

    shared = False

    def __init__(self, uri: str):
        self.uri = uri
        self.root = Path(urlparse(uri).path)
        if not self.root.is_dir():
            raise PermanentError(f"archive {uri}: {self.root} is not a directory")

    def _path(self, observation_id: str, name: str | None = None) -> Path:
        path = self.root / (name or file_name(observation_id))
        if not path.is_file():
            what = f"the file {name} of observation {observation_id}" if name else f"observation {observation_id}"
            raise NotFound(f"{what} is not in the archive {self.uri} (no {path.name})")
        return path

    def checksum(self, observation_id: str, name: str | None = None) -> str:
        return checksums.archive_md5(self._path(observation_id, name))

    def fetch(self, observation_id: str, directory: Path, name: str | None = None) -> Fetched:
        """Link the file into ``directory`` (a copy when the two are on different file systems, or
        the file is not ours to link), hashing it as it is read unless its md5 is remembered.

        A link writes nothing: a copy wrote the file's 300 MB again for every exposure, most of a
        second of CPU, to be removed minutes later.  The archive's file is only ever read through
        it.  The folder's md5 is the file's own: a link to a file whose md5 is remembered
        (:mod:`.checksums`; the batch hashed it when it planned) is that file, unread; otherwise the
        file is hashed as it is read, and must not change meanwhile."""
        source = self._path(observation_id, name)
        before = checksums.identity(source)
        expected = checksums.remembered(source, before)
        directory.mkdir(parents=True, exist_ok=True)
        target = directory / source.name
        partial = directory / f".{source.name}.{uuid.uuid4().hex}.part"
        digest = hashlib.md5()
        size = 0
        try:
            try:
                os.link(source, partial)
                copying = None
            except OSError:  # another file system, or a file we may read but not link
                copying = open(partial, "xb")
            if copying is None and expected is not None and checksums.identity(source) == before:
                os.replace(partial, target)
                return Fetched(target, expected, before.size)
            with open(source, "rb") as handle, copying or contextlib.nullcontext() as out:
                while chunk := handle.read(CHUNK):
                    digest.update(chunk)
                    if out:
                        out.write(chunk)
                    size += len(chunk)
            if expected is None:
                if checksums.identity(source) != before:
                    raise TransientError(f"observation {observation_id}: {source} changed while it was copied")
                expected = digest.hexdigest()
                checksums.remember(source, before, expected)
            if digest.hexdigest() != expected:
                raise ChecksumMismatch(
                    f"observation {observation_id}: md5 {digest.hexdigest()} does not match the archive's {expected}"
                )
            os.replace(partial, target)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise TransientError(f"observation {observation_id}: copy from {self.uri} failed: {exc}") from exc
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return Fetched(target, expected, size)

    def list_since(self, since: datetime) -> list[str]:
        from .ids import observation_id_of

        cutoff = since.timestamp()
        found = []
        for path in self.root.glob("*.fits.fz"):
            observation_id = observation_id_of(path.name)
            mtime = path.stat().st_mtime
            if observation_id and mtime >= cutoff:
                found.append((mtime, observation_id))
        return [observation_id for _, observation_id in sorted(found)]


def _cadc(uri: str) -> Archive:
    from .cadc_archive import CadcArchive  # the CADC clients load only when used

    return CadcArchive(uri)


ARCHIVES: Registry[Archive] = Registry("archive", {"file": LocalArchive, "cadc": _cadc})
#: Make ``scheme:`` URIs open with a factory (tests register their own).
register = ARCHIVES.register
#: The archive a URI names: ``file:///path`` or ``cadc:CFHT``.
open_archive = ARCHIVES.open
