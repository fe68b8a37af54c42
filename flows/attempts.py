"""The runs of one piece of work, numbered: which is the latest, and which has been superseded.

A batch names each per-exposure run by the work it does (the exposure, its
inputs' md5s, the configuration and the destination) and an attempt number:
its idempotency key is ``<work>:<n>``.  A batch starts attempt n + 1 when
attempt n crashed, or when it has sat Pending with no process for longer
than ``stuck_pending_seconds``.  That second case can be wrong: with the
Prefect server down, a worker cannot record the process it did start, and
that process's engine retries until the server is back, then runs.  Prefect
lets a run leave Crashed or Cancelled for Running, so marking the old run
does not stop it.  Instead the latest attempt wins: a run that finds a later
attempt of its own work, when it starts and again before it stores its
catalogue, stops there and ends Cancelled as superseded; a batch that was
following it follows the later one.

The other way round: the later attempt is told which run it replaces
(``replaces``).  Should that run have stored the catalogue after all (it ran
while the batch, reading a stale Pending state, was starting its
replacement), the later attempt does not complete as a second run of the
work: it ends Cancelled as not needed, and the batch counts the catalogue.
Before it stores, it waits for a replaced run that is Running to settle, so
that of the two exactly one stores and completes (``tests/test_faults.py``,
the server-restart row, shows the interleaving).
"""

from __future__ import annotations

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId, FlowRunFilterName
from prefect.client.schemas.objects import FlowRun, State

#: How a superseded run's Cancelled state message begins.
SUPERSEDED = "superseded by"
#: How a run's Cancelled state message begins when the run it replaced stored the catalogue after all.
REDUNDANT = "not needed:"


def number(run: FlowRun) -> int:
    """The run's attempt number (0 for a run no batch started)."""
    tail = (run.idempotency_key or "").rsplit(":", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def runs_of(deployment_id, observation_id: str, work: str, *more: str) -> list[FlowRun]:
    """Every run of this work (and of the ``more`` works), whichever batch started it."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]), name=FlowRunFilterName(like_=observation_id)
            ),
            limit=200,
        )
    return [run for run in runs if any(is_of(run, one) for one in (work, *more))]


def is_of(run: FlowRun, work: str) -> bool:
    """Whether ``run`` is an attempt at ``work`` (its idempotency key is the work's and a number)."""
    return (run.idempotency_key or "").startswith(work + ":")


def read_run(flow_run_id: str | None) -> FlowRun | None:
    """The flow run ``flow_run_id`` (None outside one): its idempotency key says which attempt it is."""
    if not flow_run_id:
        return None
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def later_attempt(run: FlowRun | None, observation_id: str) -> FlowRun | None:
    """The latest run of the same work as ``run`` with a higher attempt number, if any."""
    if run is None or not number(run) or run.deployment_id is None:
        return None
    work = run.idempotency_key.rsplit(":", 1)[0]
    later = [other for other in runs_of(run.deployment_id, observation_id, work) if number(other) > number(run)]
    return max(later, key=number, default=None)


def same_work(runs: list[FlowRun], run_id: str) -> list[FlowRun]:
    """Those of ``runs`` that are attempts at the work the run ``run_id`` is an attempt at."""
    key = next((run.idempotency_key for run in runs if str(run.id) == run_id), None)
    return [run for run in runs if is_of(run, key.rsplit(":", 1)[0])] if key else []


def stored_by_later(runs: list[FlowRun], run_id: str, stored_by: str | None) -> bool:
    """Whether ``stored_by`` (the run a catalogue's record names) is a later attempt than ``run_id``,
    both among ``runs``, the runs of one piece of work."""
    numbers = {str(run.id): number(run) for run in runs}
    return stored_by in numbers and run_id in numbers and numbers[stored_by] > numbers[run_id]


def superseded_message(later: FlowRun) -> str:
    return f"{SUPERSEDED} run {later.name} ({later.id}), a later attempt of the same work"


def is_superseded(state: State) -> bool:
    return state.is_cancelled() and (state.message or "").startswith(SUPERSEDED)


def redundant_message(replaced: str) -> str:
    return f"{REDUNDANT} run {replaced}, which the batch replaced by this one as lost, ran after all and stored the catalogue"


def is_redundant(state: State) -> bool:
    return state.is_cancelled() and (state.message or "").startswith(REDUNDANT)


def settled(run_id: str, timeout: float, poll: float = 1.0) -> FlowRun | None:
    """The run ``run_id`` once it is no longer Running (at most ``timeout`` seconds of waiting): a
    replaced run that came back either stores its catalogue and completes, or stops as superseded."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        run = read_run(run_id)
        if run is None or run.state is None or not run.state.is_running() or time.monotonic() > deadline:
            return run
        time.sleep(poll)
