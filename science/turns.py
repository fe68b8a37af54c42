"""Exposures taking turns at one machine's cores.

An exposure's measurement keeps every core busy (one CCD worker per core).
Two exposures measuring at once only share the cores, and, started together,
they end together: then both store their catalogues and the next two start,
download and import while the cores wait.  With turns, one exposure measures
while the next one's run starts, downloads its file and starts its CCD
workers; it takes its turn as soon as the measuring one's last CCDs are in
progress, so the cores go from one exposure's CCDs to the next one's.

A turn is an exclusive ``flock`` on a file that every run on the machine
names (the flows use one in their scratch root).  The kernel gives it back
when its holder exits, however it exits, so a killed run never keeps the
others waiting.  Runs on different machines, or in HTCondor jobs (each with
its own scratch directory and its own share of the cores), never wait for
each other.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Callable, Protocol


class Turn(Protocol):
    """What :func:`.pipeline.measure_exposure` waits for before its first CCD."""

    def take(self) -> None:
        """Block until this exposure may measure."""

    def give_back(self) -> None:
        """Let the next exposure start (its last CCDs are in progress).  Harmless when not held."""


class LockFileTurn:
    """A turn held as an exclusive ``flock`` on ``path`` (created if missing)."""

    def __init__(self, path: Path, waiting: Callable[[], None] | None = None):
        self.path = Path(path)
        self.waiting = waiting  # called once, when the turn is not free at once
        self._fd: int | None = None

    def take(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if self.waiting:
                    self.waiting()
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def give_back(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the only descriptor releases the lock
