"""VOSpace, ``vos:<space>/<path>``: what ``vcp <id>.cat vos:<space>/<path>/`` does, as a Destination.

A file goes up under a hidden temporary node, its md5 is checked against the
local copy, and only then is it moved to its name, so a reader never sees a
half-written catalogue.  Missing containers are created, and a node that
already holds the same md5 is not sent again.  All of it through the
unmodified ``vos.Client``.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

from .archive import md5_of
from .cadc import CadcAuth, UsesCadcCredential, own_retries_off, translated
from .errors import NotFound, PermanentError, TransientError


class VOSpace(UsesCadcCredential):
    """``vos:<space>/<path>``, for example ``vos:jdoe/megacam/catalogues``."""

    def __init__(self, uri: str, auth: CadcAuth | None = None):
        path = uri.split(":", 1)[1].strip("/")
        if not path or any(part in ("", ".", "..") for part in path.split("/")):
            raise PermanentError(f"destination {uri!r}: expected vos:<space>/<path>, like vos:jdoe/catalogues")
        self.uri = f"vos:{path}"
        self._use_credential(auth)
        self._client = None

    def _vos(self):
        if self._client is None:
            import vos

            with translated(f"connecting to VOSpace for {self.uri}"):
                client = vos.Client(**self.auth.vos_arguments())
                own_retries_off(client.get_endpoints(self.uri).conn.ws_client)
                own_retries_off(client._get_si_client(self.uri))
            self._client = client
        return self._client

    def location(self, name: str) -> str:
        return f"{self.uri}/{_plain(name)}"

    def _node(self, uri: str):
        """The node at ``uri``, or None when there is none."""
        try:
            with translated(f"reading {uri}"):
                return self._vos().get_node(uri, limit=0, force=True)
        except NotFound:
            return None

    def _data_node(self, name: str):
        """The file node called ``name``, or None; a container by that name is an error."""
        node = self._node(self.location(name))
        if node is not None and node.isdir():
            raise PermanentError(f"{self.location(name)} is a container, not a file; remove it or choose another destination")
        return node

    def stat(self, name: str) -> str | None:
        node = self._data_node(name)
        return node.props.get("MD5") if node is not None else None

    def read(self, name: str) -> bytes:
        uri = self.location(name)
        with tempfile.TemporaryDirectory(prefix="canfar-catalogue-") as folder:
            local = Path(folder) / _plain(name)
            with translated(f"reading {uri}"):
                self._vos().copy(uri, str(local))
            return local.read_bytes()

    def _make_containers(self) -> None:
        """Create ``self.uri`` and any missing parent, like ``vmkdir -p``."""
        parts = self.uri.split(":", 1)[1].split("/")
        for depth in range(1, len(parts) + 1):
            uri = "vos:" + "/".join(parts[:depth])
            node = self._node(uri)
            if node is None:
                with translated(f"creating the container {uri}"):
                    self._vos().mkdir(uri)
            elif not node.isdir():
                raise PermanentError(f"{uri} is a file, not a container; choose another destination")

    def put(self, local: Path, name: str) -> str:
        target = self.location(name)
        md5 = md5_of(local)
        existing = self._data_node(name)
        if existing is not None and existing.props.get("MD5") == md5:
            return md5
        self._make_containers()
        temporary = self.location(f".{name}.{uuid.uuid4().hex[:12]}.part")
        client = self._vos()
        try:
            with translated(f"uploading {local} to {temporary}"):
                client.copy(str(local), temporary)
            stored = self._node(temporary)
            stored_md5 = stored.props.get("MD5") if stored else None
            if stored_md5 != md5:
                raise TransientError(f"{temporary}: VOSpace holds md5 {stored_md5}, the local copy has {md5}")
            if existing is not None:
                with translated(f"replacing {target}"):
                    client.delete(target)
            with translated(f"moving {temporary} to {target}"):
                client.move(temporary, target)
        except BaseException:
            self._remove_quietly(temporary)
            raise
        return md5

    def _remove_quietly(self, uri: str) -> None:
        """Best effort: a temporary node left behind is hidden and harmless."""
        try:
            if self._node(uri) is not None:
                with translated(f"removing {uri}"):
                    self._vos().delete(uri)
        except Exception:
            pass


def _plain(name: str) -> str:
    if not name or "/" in name or name in (".", ".."):
        raise PermanentError(f"{name!r} is not a plain file name")
    return name
