"""How a ``process`` work pool starts a flow run: forked from a warm pilot, not a new Python importing everything.

    python -m canfar_catalogue.worker.process_pool <pool>     (run by deployments/deploy.sh)

Prefect's process worker, given no ``command``, starts each flow run in a
workspace supervisor (``python -m prefect.runner._workspace_supervisor``)
that imports Prefect, resolves the run's workspace (pull steps, dependency
installation) and then execs a second interpreter, ``python -m
prefect.engine``, which imports Prefect and the flow all over again.  Our
deployments pull nothing and install nothing (the code is the installed
package), so the first interpreter is pure cost: measured on the embedded
default, about 1.2 core-seconds per flow run, and 0.5–0.8 s between a run's
creation and its Running state (``bench/bench_batch.py``).  Given a
``command``, the worker starts it directly; ours, :mod:`.pilot`, has the
engine forked from a process that imported it once.

This sets the pool's default ``command`` to that client under this
environment's interpreter, so the worker must run in the same environment as
the deployment (the embedded default's case).  A pool whose template already
names another command is left as it is (the engine command this module set
before the pilot is replaced); a job variable ``command`` still wins.
"""

from __future__ import annotations

import argparse
import sys

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolUpdate


def engine_command() -> str:
    """This environment's interpreter running Prefect's engine, forked from a warm pilot (:mod:`.pilot`)."""
    return f"{sys.executable} -m canfar_catalogue.worker.pilot"


def earlier_commands() -> tuple[str, ...]:
    """Commands that earlier versions of this module set, which a new deploy.sh replaces."""
    return (f"{sys.executable} -m prefect.engine",)


def with_engine_command(template: dict, command: str, replaces: tuple[str, ...] = ()) -> dict | None:
    """``template`` with ``command`` as its default start command, or None when it already has one
    (other than ``command`` itself and those it ``replaces``)."""
    properties = template.get("variables", {}).get("properties", {})
    if "command" not in properties:
        return None
    current = properties["command"].get("default")
    if current == command or (current and current not in replaces):
        return None
    variables = {**template["variables"], "properties": {**properties, "command": {**properties["command"], "default": command}}}
    return {**template, "variables": variables}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pool", help="a work pool of type process")
    pool_name = parser.parse_args(argv).pool
    with get_client(sync_client=True) as client:
        pool = client.read_work_pool(pool_name)
        if pool.type != "process":
            raise SystemExit(f"work pool {pool_name} is of type {pool.type}, not process: nothing to set")
        template = with_engine_command(pool.base_job_template, engine_command(), replaces=earlier_commands())
        if template is not None:
            client.update_work_pool(pool_name, WorkPoolUpdate(base_job_template=template))


if __name__ == "__main__":
    main()
