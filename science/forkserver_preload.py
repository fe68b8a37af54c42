"""Imported by the fork server of the CCD worker pool, and only there.

The fork server is a child of the flow run's process; its workers are its
own children.  Dying with its parent (then its workers dying with it) keeps a
killed flow run from leaving processes behind.  It also imports the science
modules once, so that each worker starts in milliseconds.
"""

import os
import sys
from importlib.machinery import ModuleSpec

from .lifetime import PARENT_ENV, die_with_parent, watch_parent

# Bound to the parent before the heavy imports below: a flow run killed while its fork server
# was still importing left the fork server alive (measured in CI), holding the run's pipes open.
_parent = int(os.environ[PARENT_ENV]) if os.environ.get(PARENT_ENV) else os.getppid()
die_with_parent(_parent)
watch_parent(_parent)

from . import pipeline  # noqa: E402  (imported for the workers)

# multiprocessing has every worker it starts run the parent's main module again, as ``__mp_main__``,
# unless the worker's ``__main__`` already bears that module's name.  A flow run's main module is
# Prefect's engine: each CCD worker imported all of Prefect, about a core-second and 50 MB, for
# nothing (the workers run only this package's functions).  Naming our ``__main__`` after it skips that.
_main = os.environ.get(pipeline.MAIN_ENV)
if _main:
    sys.modules["__main__"].__spec__ = ModuleSpec(_main, None)
