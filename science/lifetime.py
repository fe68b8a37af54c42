"""Worker processes end when the process that started them ends.

If a flow run's process is killed (``kill -9``, an evicted job), the
processes measuring its CCDs must not live on: they would hold the job's
output pipes open, so whoever supervises the job would never see it end.
Linux can send a signal to a child when its parent dies; we ask for SIGKILL.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Ask the kernel to kill this process when its parent exits (Linux; a no-op elsewhere)."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)
