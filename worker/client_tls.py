"""Prefect's API clients in one process share their TLS context instead of each loading the CA bundle.

Every Prefect client, as it is made, builds an ``ssl.SSLContext`` and loads
a CA bundle into it (certifi's, or ``PREFECT_API_SSL_CERT_FILE``), also for
an ``http://`` API that never uses it: about 18 ms of CPU each.  A flow run
makes four (two clients in its engine, one in the observer of its own state
and one for the observer's version check), and the process worker three
more for each run it starts, about 0.13 core-seconds per exposure in all
(``bench/RESULTS.md``).

:func:`share` gives Prefect's client module a view of :mod:`ssl` whose
``create_default_context`` returns one context per set of arguments, made
at the first call, and made again when the CA file named has changed.  Only
Prefect's client module sees it: the CADC and
VOSpace clients, which load a user's proxy certificate into their contexts,
still get new ones from :mod:`ssl` itself.  Prefect only sets verification
on its contexts, the same way each time, so the clients can share them.  If
a Prefect release no longer reaches for ``ssl`` in that module, nothing is
changed.
"""

from __future__ import annotations

import os
import ssl
import threading
import types

#: Where Prefect builds its clients' TLS contexts.
CLIENT_MODULE = "prefect.client.orchestration"


class _SharedContexts(types.ModuleType):
    """:mod:`ssl`, but with one ``create_default_context(...)`` per set of arguments."""

    def __init__(self) -> None:
        super().__init__("ssl", ssl.__doc__)
        self._made: dict[tuple, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(ssl, name)

    def create_default_context(self, *args, **kwargs) -> ssl.SSLContext:
        key = (args, tuple(sorted(kwargs.items())), _stamp(kwargs.get("cafile")))
        with self._lock:
            if key not in self._made:
                self._made[key] = ssl.create_default_context(*args, **kwargs)
            return self._made[key]


def _stamp(path) -> tuple | None:
    """When and how the CA file was last written: a new stamp makes a new context."""
    try:
        status = os.stat(path) if path else None
    except OSError:
        return None
    return status and (status.st_mtime_ns, status.st_size, status.st_ino)


def share() -> bool:
    """Have this process's Prefect clients share their TLS contexts; False where Prefect builds them elsewhere."""
    import importlib

    module = importlib.import_module(CLIENT_MODULE)
    if getattr(module, "ssl", None) is ssl:
        module.ssl = _SharedContexts()
    return isinstance(getattr(module, "ssl", None), _SharedContexts)
