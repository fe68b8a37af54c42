"""Where catalogues go: ``vos:`` in production, a folder by default.

A destination is named by a URI: ``file:///data/catalogues`` or
``vos:<space>/<path>``.  Writes go under a temporary name and are then moved
into place, so a reader never sees a half-written catalogue; missing folders
(containers) are created.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Protocol
from urllib.parse import urlparse

from .checksums import md5_of
from .errors import PermanentError, PermissionDenied, TransientError
from .registry import Registry


class Destination(Protocol):
    uri: str

    def stat(self, name: str) -> str | None:
        """The md5 (hex) of a stored file, or None when it does not exist."""

    def read(self, name: str) -> bytes:
        """A stored file's bytes."""

    def put(self, local: Path, name: str) -> str:
        """Store ``local`` as ``name`` atomically; return its md5."""

    def location(self, name: str) -> str:
        """Where ``name`` is (or would be), for messages and summaries."""


def _check_name(name: str) -> str:
    if not name or "/" in name or name.startswith("."):
        raise PermanentError(f"{name!r} is not a plain file name")
    return name


class LocalStorage:
    """A folder standing in for VOSpace."""

    def __init__(self, uri: str):
        self.uri = uri
        self.root = Path(urlparse(uri).path)

    def location(self, name: str) -> str:
        return str(self.root / _check_name(name))

    def stat(self, name: str) -> str | None:
        path = self.root / _check_name(name)
        return md5_of(path) if path.is_file() else None

    def read(self, name: str) -> bytes:
        path = self.root / _check_name(name)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise PermanentError(f"{self.location(name)} does not exist") from None

    def put(self, local: Path, name: str) -> str:
        target = self.root / _check_name(name)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd, partial = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=self.root)
        except PermissionError as exc:
            raise PermissionDenied(f"cannot write to {self.root}: {exc.strerror}; check the destination's permissions") from None
        except (NotADirectoryError, FileExistsError) as exc:
            raise PermanentError(f"cannot write to {self.root}: {exc.strerror}; the destination must be a folder") from None
        except OSError as exc:
            raise TransientError(f"cannot write to {self.root}: {exc}") from exc
        try:
            with os.fdopen(fd, "wb") as out, open(local, "rb") as source:
                shutil.copyfileobj(source, out)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(partial, 0o644)
            os.replace(partial, target)
        except OSError as exc:
            Path(partial).unlink(missing_ok=True)
            raise TransientError(f"writing {target} failed: {exc}") from exc
        return md5_of(target)


def _vos(uri: str) -> Destination:
    from .vospace import VOSpace  # the CADC clients load only when used

    return VOSpace(uri)


DESTINATIONS: Registry[Destination] = Registry("destination", {"file": LocalStorage, "vos": _vos})
#: Make ``scheme:`` URIs open with a factory (tests register their own).
register = DESTINATIONS.register
#: The destination a URI names: ``file:///path`` or ``vos:<space>/<path>``.
open_destination = DESTINATIONS.open
