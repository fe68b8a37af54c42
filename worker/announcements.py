"""Ask the pool for runs when the Prefect server announces a change, not only on a timer.

A Prefect worker finds its runs by asking its pool every
``PREFECT_WORKER_QUERY_SECONDS``.  Each question costs the server about 30 ms
of CPU and two write transactions: it records the poll on the pool's queues
and on its deployments.  So asking every second costs a server 3% of a core
for each worker, all night, and on SQLite each of those writes can make
another request meet a lock and wait 2 s (``bench/RESULTS.md``).  Asking every
10 s, Prefect's default, leaves a new run, or a slot that a run has just
freed, waiting up to 10 s with the slot's core idle.

The answer only changes when a run of the pool changes state:

- a run is created or rescheduled (Scheduled, AwaitingRetry, Late);
- a run ends (Completed, Failed, Crashed, Cancelled) and frees a place in a
  queue with a concurrency limit, such as the exposure queue's slots.

The server announces each of these on its event stream.  So the worker
subscribes to them for its pool and asks right after each burst: a batch
creating its runs is one question, not one per run.  The timer stays, at
Prefect's default, for two cases no announcement covers: a run whose
scheduled time arrives, and anything missed while the subscription
reconnects.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Awaitable, Callable
from uuid import UUID

import anyio
from prefect.events.clients import get_events_subscriber
from prefect.events.filters import EventAnyResourceFilter, EventFilter, EventNameFilter

if TYPE_CHECKING:
    from prefect.workers.base import BaseWorker

#: The state changes after which the pool may have a run to give: a new or rescheduled run, or a freed place.
ANNOUNCING = tuple(f"prefect.flow-run.{state}" for state in (
    "Scheduled", "AwaitingRetry", "Late", "Completed", "Failed", "Crashed", "Cancelled",
))
#: How long announcements are gathered into one question (a batch creates its runs within a fraction of this).
GATHER_SECONDS = 0.2
#: How long after a lost subscription the worker subscribes again; its timer asks meanwhile.
RESUBSCRIBE_SECONDS = 10.0


def announcements(pool_id: UUID) -> EventFilter:
    """The events of the pool's runs after which it may have a run to give."""
    return EventFilter(
        event=EventNameFilter(name=list(ANNOUNCING)),
        any_resource=EventAnyResourceFilter(id=[f"prefect.work-pool.{pool_id}"]),
    )


async def ask_when_announced(pool_id: UUID, ask: Callable[[], Awaitable[object]], logger: logging.Logger) -> None:
    """Call ``ask`` after each burst of announcements about the pool's runs, until cancelled.

    A failed question is logged and left to the next announcement or the
    worker's timer; a lost subscription is logged and made again after
    ``RESUBSCRIBE_SECONDS``.
    """
    wanted = anyio.Event()

    async def asking() -> None:
        nonlocal wanted
        while True:
            await wanted.wait()
            await anyio.sleep(GATHER_SECONDS)  # what is announced meanwhile is in this question's answer
            wanted = anyio.Event()
            try:
                await ask()
            except Exception as exc:
                logger.warning("could not ask the pool for runs after the server announced one: %s", exc)

    async with anyio.create_task_group() as group:
        group.start_soon(asking)
        while True:
            try:
                async with get_events_subscriber(filter=announcements(pool_id)) as subscriber:
                    async for _ in subscriber:
                        wanted.set()
            except Exception as exc:
                logger.warning("lost the server's announcements of new runs (%s): asking on the worker's timer "
                               "alone, subscribing again in %g s", exc, RESUBSCRIBE_SECONDS)
            await anyio.sleep(RESUBSCRIBE_SECONDS)


async def ask_worker_when_announced(worker: "BaseWorker") -> None:
    """Have a started ``worker`` ask its pool for runs after each burst of announcements, until cancelled.

    The worker knows its pool's id once its first sync with the server has
    succeeded; until then its own loop retries the sync, and this waits.
    """
    while worker._work_pool is None:
        await anyio.sleep(1.0)
    await ask_when_announced(worker._work_pool.id, worker.get_and_submit_flow_runs, worker._logger)
