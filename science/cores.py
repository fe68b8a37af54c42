"""How many cores this process may use: one CCD worker is started per core.

On a desktop or a VM that is the CPU affinity (a cgroup or ``taskset`` may
give fewer than the machine has).  An HTCondor job is different: the starter
does not pin a job to its cores, so the affinity is the whole execute node,
and a 1-core job on an 8-core node would start 8 workers and take the cores
of the jobs beside it.  What HTCondor provisioned is in the job's
environment instead (HTCondor manual, "Environment variables for jobs"):

* ``_CONDOR_MACHINE_AD`` names a file in the scratch directory holding the
  slot's machine ad, whose ``Cpus`` is "the amount of cpus provisioned for
  this slot";
* ``OMP_NUM_THREADS`` (and ``PYTHON_CPU_COUNT`` and others in
  ``STARTER_NUM_THREADS_ENV_VARS``) is "set to the number of cpu cores
  provisioned to this job", at least ``request_cpus``;
* ``BATCH_SYSTEM`` is ``HTCondor`` in every job.

The machine ad's ``Cpus`` is read first, then ``OMP_NUM_THREADS``; either is
believed only inside an HTCondor job, since a user's own ``OMP_NUM_THREADS=1``
(common, to keep numpy single-threaded) says nothing about our processes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def available() -> int:
    """The cores this process may use: HTCondor's provisioned count in a job, else the affinity."""
    try:
        here = max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not Linux
        here = os.cpu_count() or 1
    provisioned = htcondor_cpus(os.environ)
    return min(provisioned, here) if provisioned else here


def htcondor_cpus(environment: dict[str, str] | os._Environ) -> int | None:
    """The cores HTCondor provisioned for this job, or None outside a job (or when it does not say)."""
    if environment.get("BATCH_SYSTEM") != "HTCondor" and not environment.get("_CONDOR_MACHINE_AD"):
        return None
    machine_ad = environment.get("_CONDOR_MACHINE_AD")
    if machine_ad:
        try:
            found = re.search(r"^\s*Cpus\s*=\s*(\d+)\s*$", Path(machine_ad).read_text(), re.MULTILINE | re.IGNORECASE)
        except OSError:
            found = None
        if found and int(found.group(1)) > 0:
            return int(found.group(1))
    threads = environment.get("OMP_NUM_THREADS", "")
    return int(threads) if threads.isdigit() and int(threads) > 0 else None
