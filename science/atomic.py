"""Write a file so that a reader sees the old file or the whole new one, never half of one.

The writing goes to a temporary file in the same directory, which is flushed
to disk and then renamed into place; on any failure it is removed.  Every
catalogue and check image is written through :func:`atomically`.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomically(path: str | Path) -> Iterator[Path]:
    """A temporary file beside ``path`` to write; flushed to disk and renamed to ``path`` on success."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as written:
            os.fsync(written.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
