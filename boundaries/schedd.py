"""The HTCondor schedd: where the htcondor work pool submits jobs and the provisioning flow reads demand.

The interface is ``htcondor2.Schedd``'s own ``submit``, ``query``, ``history`` and ``act``,
so production passes the real object through unchanged.  Which schedd is used
is a ``module:callable`` in the ``[htcondor]`` settings: the default returns
the local schedd (or one located by name through the collector); the tests
name a fake with the same surface that runs jobs as local processes.
"""

from __future__ import annotations

from typing import Any, Protocol

from .errors import TransientError
from .registry import load_factory

#: The job attribute that ties an HTCondor job to its Prefect flow run.
FLOW_RUN_ATTRIBUTE = "CanfarFlowRunId"


class Schedd(Protocol):
    def submit(self, description: Any, count: int = 0, spool: bool = False, itemdata: Any = ..., queue: Any = None) -> Any:
        """Queue a job; the result's ``cluster()`` is its cluster id."""

    def query(self, constraint: Any = "True", projection: Any = (), **options: Any) -> list[Any]:
        """Job ClassAds matching ``constraint``."""

    def history(self, constraint: Any = "True", projection: Any = (), match: int = -1, since: Any = None) -> Any:
        """ClassAds of jobs that have left the queue (completed or removed), newest first."""

    def act(self, action: Any, job_spec: Any, reason: str | None = None) -> Any:
        """Hold, release, vacate or remove the jobs ``job_spec`` names."""


def local_schedd(name: str = "") -> Schedd:
    """The schedd on this host, or the one called ``name`` located through the collector."""
    import htcondor2

    try:
        if not name:
            return htcondor2.Schedd()
        ad = htcondor2.Collector().locate(htcondor2.DaemonType.Schedd, name)
        return htcondor2.Schedd(ad)
    except htcondor2.HTCondorException as exc:
        where = f"schedd {name!r}" if name else "the local schedd"
        raise TransientError(
            f"cannot reach {where}: {exc}; check CONDOR_CONFIG and that this host is an HTCondor submit host"
        ) from None


def open_schedd(name: str = "") -> Schedd:
    """The schedd the ``[htcondor] schedd_factory`` setting names."""
    factory = load_factory("htcondor", "schedd_factory")
    return factory(name) if name else factory()


#: Jobs still in the queue: neither removed (3) nor completed (4).
STILL_QUEUED = "JobStatus =!= 3 && JobStatus =!= 4"


def flow_run_jobs(flow_run_id: str | None = None) -> str:
    """Jobs of a flow run (of any flow run, without an id), in the queue or in the history."""
    return f'{FLOW_RUN_ATTRIBUTE} == "{flow_run_id}"' if flow_run_id else f"{FLOW_RUN_ATTRIBUTE} =!= undefined"


def flow_run_constraint(flow_run_id: str | None = None) -> str:
    """Jobs of a flow run (of any flow run, without an id) that are still in the queue."""
    return f"{flow_run_jobs(flow_run_id)} && {STILL_QUEUED}"
