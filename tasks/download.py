"""Fetch an exposure from the archive into the job's scratch directory."""

from __future__ import annotations

from pathlib import Path

from prefect import task
from prefect.concurrency.sync import concurrency

from .. import config
from ..boundaries.archive import Fetched, open_archive
from .policy import task_options

SETTINGS = config.settings()["download"]


@task(name="download", **task_options(SETTINGS))
def download(observation_id: str, archive: str, scratch: Path) -> Fetched:
    """Fetch ``<id>.fits.fz`` with its md5 verified, holding one download slot.

    The global concurrency limit caps simultaneous downloads across every
    flow run; ``strict=True`` makes a missing limit an error, not "no limit".
    """
    with concurrency(SETTINGS["concurrency_limit"], occupy=1, strict=True):
        return open_archive(archive).fetch(observation_id, scratch)


@task(name="archive checksum", **task_options(SETTINGS))
def archive_checksum(observation_id: str, archive: str) -> str:
    """The exposure's md5 from the archive, without downloading it."""
    return open_archive(archive).checksum(observation_id)
