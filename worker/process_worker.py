"""Prefect's process worker, asking for runs when the server announces one rather than every second.

    python -m canfar_catalogue.worker.process_worker --pool catalogue-local     (as deployments/deploy.sh prints it)

``prefect worker start --type process`` finds its runs by asking the pool
every ``PREFECT_WORKER_QUERY_SECONDS``.  At Prefect's default, 10 s, an
exposure queued behind the pool's slots waits up to 10 s after a slot frees,
with that core idle: a batch of 8 took 1.81x the tutorial's time against
1.51x asking every second (``bench/RESULTS.md``).  Asking every second costs
the server about 30 ms of CPU a question, about a quarter of a core-second
per exposure of a batch, taken from the science on the same cores.

This starts the same worker, Prefect's own ``ProcessWorker``, on Prefect's
default timer, and has it ask whenever the server announces a new run or a
freed slot (:mod:`.announcements`), as the htcondor worker does.  The pool
stays a ``process`` pool: ``prefect worker start --pool <pool> --type
process`` serves it too, finding the runs on its timer alone.

Ctrl-C or SIGTERM stops it: the worker is cancelled and ends the runs it
started, as Prefect's does.  Prefect's own handling (``prefect worker
start``) cancels the worker's task once; with Prefect 3.9.1 an idle worker
went on running after it, its loops still waiting, until a second signal
killed it.  Here the cancellation holds until every loop has ended, and a
second signal ends the process at once.
"""

from __future__ import annotations

import argparse
import signal
import sys

import anyio

#: The work pool type this worker serves.
POOL_TYPE = "process"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m canfar_catalogue.worker.process_worker", description=__doc__.split("\n\n")[0],
        epilog="It is Prefect's own process worker on Prefect's timer (PREFECT_WORKER_QUERY_SECONDS, 10 s by "
               "default), which also asks for runs whenever the server announces a new run or a freed slot: an "
               "exposure starts as soon as a slot frees, without a question to the server every second.  "
               "'prefect worker start --pool POOL --type process' serves the same pool on its timer alone.  "
               "Ctrl-C stops it.",
    )
    parser.add_argument("-p", "--pool", required=True, help="the work pool to serve, of type process (created if absent)")
    parser.add_argument("-n", "--name", help="the worker's name in the UI (default: Prefect's, a new one each start)")
    return parser


async def _refusal(pool: str) -> str | None:
    """Why this worker cannot serve ``pool``, or None when it can (a pool that does not exist yet is created)."""
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound
    from prefect.settings import PREFECT_API_URL

    try:
        async with get_client() as client:
            kind = (await client.read_work_pool(pool)).type
    except ObjectNotFound:
        return None
    except Exception as exc:
        return (f"cannot reach the Prefect server at {PREFECT_API_URL.value() or '(PREFECT_API_URL unset)'} ({exc}): "
                "start it (prefect server start, or make demo) or set PREFECT_API_URL")
    if kind != POOL_TYPE:
        return (f"work pool {pool!r} is of type {kind}, not {POOL_TYPE}: start its worker with "
                f"prefect worker start --pool {pool} --type {kind}")
    return None


async def serve(pool: str, name: str | None = None) -> None:
    """Run Prefect's process worker on ``pool`` until interrupted, asking for runs as they are announced."""
    from prefect.settings import PREFECT_WORKER_HEARTBEAT_SECONDS, PREFECT_WORKER_PREFETCH_SECONDS
    from prefect.workers.process import ProcessWorker

    from . import client_tls
    from .announcements import ask_worker_when_announced

    client_tls.share()  # the clients it makes for each run it starts: one TLS context, not three a run
    refusal = await _refusal(pool)
    if refusal:
        raise SystemExit(refusal)
    worker = ProcessWorker(
        work_pool_name=pool, name=name, prefetch_seconds=PREFECT_WORKER_PREFETCH_SECONDS.value(),
        heartbeat_interval_seconds=int(PREFECT_WORKER_HEARTBEAT_SECONDS.value()),
    )
    async with anyio.create_task_group() as group:
        group.start_soon(_stop_on_signal, group.cancel_scope, pool)
        group.start_soon(ask_worker_when_announced, worker)
        await worker.start(printer=print)
        group.cancel_scope.cancel()


async def _stop_on_signal(scope: anyio.CancelScope, pool: str) -> None:
    """Cancel ``scope`` at the first SIGINT or SIGTERM.  The scope stays cancelled, so a loop that swallows
    one cancellation is cancelled again at its next wait; once this returns, a second signal does what
    it does to any Python: Ctrl-C raises KeyboardInterrupt, SIGTERM ends the process."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for received in signals:
            print(f"received {signal.Signals(received).name}: stopping the process worker on {pool} "
                  "and the runs it started", file=sys.stderr, flush=True)
            scope.cancel()
            return


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        anyio.run(serve, args.pool, args.name)
    except KeyboardInterrupt:  # a second Ctrl-C while the first was stopping the worker
        sys.exit(130)
    print(f"the process worker on {args.pool} stopped", file=sys.stderr)


if __name__ == "__main__":
    main()
