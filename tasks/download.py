"""Fetch an exposure from the archive into the job's scratch directory."""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

from prefect import task
from prefect.concurrency.sync import concurrency

from .. import config
from ..boundaries.archive import Fetched, open_archive
from .policy import task_options

SETTINGS = config.settings()["download"]


@task(name="download", **task_options(SETTINGS))
def download(observation_id: str, archive: str, scratch: Path, name: str | None = None) -> Fetched:
    """Fetch ``<id>.fits.fz`` (or ``name``, a file that goes with it: its weight map) with its md5
    verified, holding one download slot when the archive is shared (CADC).

    The global concurrency limit caps simultaneous downloads from a shared
    archive across every flow run; ``strict=True`` makes a missing limit an
    error, not "no limit".  A local folder takes no slot: the slot costs two
    requests to the Prefect server, and on SQLite a 2 s retry whenever the
    server is writing something else (bench/RESULTS.md).
    """
    source = open_archive(archive)
    slot = concurrency(SETTINGS["concurrency_limit"], occupy=1, strict=True) if source.shared else nullcontext()
    with slot:
        if name is None:
            return source.fetch(observation_id, scratch)
        return source.fetch(observation_id, scratch, name)


@task(name="archive checksum", **task_options(SETTINGS))
def archive_checksum(observation_id: str, archive: str, name: str | None = None) -> str:
    """The exposure's md5 (or that of ``name``, its weight map) from the archive, without downloading it."""
    if name is None:
        return open_archive(archive).checksum(observation_id)
    return open_archive(archive).checksum(observation_id, name)
