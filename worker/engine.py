"""Prefect's engine as an HTCondor job runs it: ``python -m prefect.engine``, started warm.

    python -m canfar_catalogue.worker.engine      (what worker/job.py runs in the job)

Every HTCondor job is a new Python that imports Prefect's engine and the
exposure flow, and then starts its CCD workers' fork server, by default a
second new Python that imports the science again.  On a slot whose core
would otherwise be measuring, both are time taken from the science
(``bench/RESULTS.md``).  So, before it runs the engine as ``__main__``:

- it imports the engine and the flow with Python's cyclic collector paused.
  The imports make a few hundred thousand objects and no garbage, and the
  collector would walk them dozens of times meanwhile: about a tenth of the
  imports' CPU time.  What they made is then frozen (``gc.freeze``), out of
  every later collection the run makes;
- where the slot has more than one core, it forks the CCD workers' fork
  server from itself while it still has one thread
  (:mod:`canfar_catalogue.science.warm_forkserver`), as a process pool's
  pilot does for its runs (:mod:`.pilot`).  A 1-core slot measures in the
  engine's own process and starts no fork server;
- the run's Prefect clients share one TLS context (:mod:`.client_tls`).

Anything that goes wrong before the engine runs is left for the engine to
meet as it would have: an import that fails here fails there, with the same
traceback, and a fork server that cannot be forked is started by
multiprocessing as before.
"""

from __future__ import annotations

import gc
import importlib
import runpy
import sys
import warnings
from typing import Callable

#: What the job runs, as ``python -m`` would.
ENGINE = "prefect.engine"
#: What every exposure run imports: before it does anything, and (the last three) once it is under way
#: (the observer of its own state, each task call, the observer's event loop).
WARM_MODULES = (
    "prefect.engine", "prefect.flow_engine", "canfar_catalogue.flows.exposure",
    "prefect._internal.observers", "prefect.utilities.visualization", "anyio._backends._asyncio",
)


def import_frozen(modules: tuple[str, ...], then: Callable[[], None] | None = None) -> None:
    """Import ``modules`` (and call ``then``) with the cyclic collector paused, then freeze what they made."""
    gc.disable()
    try:
        for module in modules:
            importlib.import_module(module)
        if then is not None:
            then()
    finally:
        gc.freeze()
        gc.enable()


def run_as_main(module: str) -> None:
    """Run ``module`` as ``__main__``, as ``python -m module`` does, though it is imported already."""
    sys.argv = [module]
    # runpy says that the module was "found in sys.modules ... unpredictable behaviour" on every run's
    # stderr, but running it afresh as __main__ is what `python -m` does.
    warnings.filterwarnings("ignore", message=r"'.*' found in sys\.modules after import of package",
                            category=RuntimeWarning)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


def main(module: str = ENGINE, warm: tuple[str, ...] = WARM_MODULES) -> None:
    """Import ``warm``, fork the CCD workers' fork server, then run ``module`` as ``__main__``."""
    try:
        import_frozen(warm)
    except Exception:  # the module imports them again and reports the failure as it always has
        pass
    else:
        from ..science import warm_forkserver
        from ..science.pipeline import default_workers
        from . import client_tls

        client_tls.share()  # one TLS context for the run's four Prefect clients

        if default_workers() > 1:  # a 1-core slot measures in the engine's own process: no fork server
            warm_forkserver.start(module)
    run_as_main(module)


if __name__ == "__main__":
    main()
