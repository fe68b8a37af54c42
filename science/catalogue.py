"""Write catalogues in source-extractor's ASCII_HEAD (or ASCII) format, atomically.

A reader never sees a half-written catalogue: rows go to a temporary file in
the same directory, which is flushed to disk and then renamed into place.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from .columns import COLUMNS, header_line


def format_header(parameters: tuple[str, ...]) -> str:
    return "".join(header_line(i, name) for i, name in enumerate(parameters, start=1))


def format_rows(sources: np.ndarray) -> str:
    """Format a structured array whose fields are catalogue columns, one line a source."""
    if len(sources) == 0:
        return ""
    names = sources.dtype.names
    fmt = " ".join(COLUMNS[name].fmt for name in names) + "\n"
    columns = [sources[name].tolist() for name in names]
    return "".join(fmt % row for row in zip(*columns))


def write_catalogue(
    path: str | Path,
    blocks: Iterable[np.ndarray],
    parameters: tuple[str, ...],
    catalog_type: str = "ASCII_HEAD",
) -> Path:
    """Write ``blocks`` (one structured array per CCD, in order) to ``path`` atomically."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "w") as out:
            if catalog_type == "ASCII_HEAD":
                out.write(format_header(parameters))
            for block in blocks:
                out.write(format_rows(block))
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
