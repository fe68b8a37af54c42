"""md5s of files, and of a local archive's files remembered across processes while they stay as they are.

An exposure in a local folder (``file://``, the embedded default, or a
mounted project space) is hashed when a batch plans it, to see whether it is
catalogued already.  Its run, another process, then fetched it and hashed it
again (300 MB, half a core-second), and a batch re-run over a night of
finished exposures read every one of them again to find nothing to do.  So
an archive file's md5 is remembered under what the file system says of it:
device, inode, size and modification time (nanoseconds).  A file replaced
by another (a copy, rsync, an editor's save) has another inode; one written
in place has a new modification time.  The change time would also catch a
file whose modification time was set back, but linking the file into a run's
scratch folder changes it, so it cannot be part of the key.  A file modified
in the last seconds is not remembered: file times advance in clock ticks, and
a second write within the tick of the first would keep its time (git's "racy
clean" files).

Each remembered md5 is one small JSON file under
``$XDG_CACHE_HOME/canfar-catalogue/md5`` (``~/.cache`` by default), written
whole or not at all, so that concurrent runs never read half an entry.  Where
that folder cannot be written, md5s are remembered by the process only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import NamedTuple

CHUNK = 1 << 20
#: A file modified less than this long ago (ns) is hashed each time: a write in the same clock tick keeps its time.
RACY_NS = 2_000_000_000


class Identity(NamedTuple):
    """What the file system says of a file that changes when its bytes do."""

    device: int
    inode: int
    size: int
    mtime_ns: int


def identity(path: Path) -> Identity:
    stat = path.stat()
    return Identity(stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)


_seen: dict[tuple[str, Identity], str] = {}


def md5_of(path: Path) -> str:
    """The md5 of a file, remembered by this process for as long as the file stays as it is
    (a flow run asks for a catalogue's md5 when it stores it and when it records it)."""
    key = (str(path), identity(path))
    if key not in _seen:
        _seen[key] = hash_file(path)
    return _seen[key]


def hash_file(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cache_folder() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "canfar-catalogue" / "md5"


def _entry(path: Path) -> Path:
    return cache_folder() / f"{hashlib.sha256(str(path.absolute()).encode()).hexdigest()[:40]}.json"


def remembered(path: Path, now: Identity) -> str | None:
    """The md5 remembered for ``path`` while it is ``now``, or None."""
    if (str(path), now) in _seen:
        return _seen[(str(path), now)]
    try:
        entry = json.loads(_entry(path).read_text())
        if entry["path"] == str(path.absolute()) and Identity(*entry["identity"]) == now:
            _seen[(str(path), now)] = entry["md5"]
            return entry["md5"]
    except (OSError, ValueError, KeyError, TypeError):
        pass  # not remembered, or an entry from another version: hash it
    return None


def remember(path: Path, then: Identity, md5: str) -> None:
    """Remember ``md5`` as the md5 of ``path`` while it is ``then``, unless it was modified just now."""
    if time.time_ns() - then.mtime_ns < RACY_NS:
        return
    _seen[(str(path), then)] = md5
    entry = _entry(path)
    partial = entry.with_name(f".{entry.name}.{uuid.uuid4().hex}")
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        partial.write_text(json.dumps({"path": str(path.absolute()), "identity": list(then), "md5": md5}))
        os.replace(partial, entry)
    except OSError:  # a read-only home: this process remembers it
        with contextlib.suppress(OSError):
            partial.unlink()


def archive_md5(path: Path) -> str:
    """An archive file's md5: remembered across processes, hashed when it is not (or the file changed)."""
    before = identity(path)
    md5 = remembered(path, before)
    if md5 is None:
        md5 = hash_file(path)
        if identity(path) == before:  # not written while it was read
            remember(path, before, md5)
    return md5
