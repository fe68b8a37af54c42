"""Worker processes end when the process that started them ends.

If a flow run's process is killed (``kill -9``, an evicted job), the
processes measuring its CCDs must not live on: they would hold the job's
output pipes open, so whoever supervises the job would never see it end.
Linux can send a signal to a child when its parent dies; we ask for SIGKILL.
Through the same call (``prctl``) a process can also be named for ``ps``.
"""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15


PARENT_ENV = "CANFAR_CATALOGUE_POOL_PARENT"


def die_with_parent(expected: int | None = None) -> None:
    """Ask the kernel to kill this process when its parent exits (Linux; a no-op elsewhere).

    ``expected`` is the pid the parent should have.  A process that starts
    slowly (the fork server imports numpy, astropy, sep) can find its parent
    already gone; comparing with the pid it was meant to have, not the one
    it has now, catches that, and the process exits at once.
    """
    parent = expected if expected is not None else os.getppid()
    if not _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL):
        return
    if os.getppid() != parent:
        os._exit(1)


def name_this_process(name: bytes) -> None:
    """The name ``ps`` and ``top`` show for this process (and for the processes it forks); Linux only."""
    _prctl(_PR_SET_NAME, ctypes.c_char_p(name))


def _prctl(option: int, value) -> bool:
    """Linux's ``prctl(option, value)``; False where there is none."""
    try:
        # the running program's own symbols (libc's among them): find_library("c") would start
        # ldconfig and read its output, a pipe a killed parent can leave this process blocked on
        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)
    except (OSError, AttributeError):
        return False
    return True


def watch_parent(expected: int, interval: float = 0.5) -> None:
    """Exit as soon as the parent is no longer ``expected``, checked every ``interval`` seconds.

    The kernel's parent-death signal belongs to the *thread* that started this
    process, and a CI run once left the CCD workers' fork server alive (with
    the flow run's output pipes open) after its flow run was killed; this
    check does not depend on which thread started us.  Only for a process
    that does nothing but wait, as the fork server does.
    """
    import threading
    import time

    def watch() -> None:
        while os.getppid() == expected:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()
