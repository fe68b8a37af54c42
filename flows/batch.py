"""Many exposures: what users run, with ``prefect deployment run 'catalogue/batch'``.

The batch checks every ID and the configuration before anything starts,
skips exposures already catalogued, and starts one run of the per-exposure
deployment for each of the others, with a bounded number unfinished at once.
A child that crashes or fails for a transient reason is started again, up to
``max_attempts`` runs; Prefect's own flow retries do not apply to crashed runs.
Children are created with an idempotency key, so a batch that is run again
after a crash re-attaches to the children still running instead of starting
second copies.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.deployments import run_deployment

from .. import config
from ..boundaries import ids
from ..boundaries.archive import open_archive
from ..boundaries.credentials import require_lifetime
from ..boundaries.errors import NotFound
from ..boundaries.provenance import is_done
from ..boundaries.storage import Destination, open_destination
from ..science import load_config
from ..tasks.policy import task_options

SETTINGS = config.settings()["batch"]
DOWNLOAD = config.settings()["download"]


class BatchFailed(Exception):
    """Some exposures ended without a catalogue; each is named with its reason."""


@dataclass
class Exposure:
    """One ID's way through the batch."""

    id: str
    input_md5: str = ""
    status: str = "pending"  # pending, skipped, running, completed, failed, cancelled
    attempts: int = 0
    flow_run_id: str | None = None
    message: str = ""
    sources: int | None = None


@task(name="plan", **task_options(DOWNLOAD))
def plan(observation_ids: list[str], archive: str, destination: str, config_hash: str, force: bool) -> list[Exposure]:
    """Look up every input md5 and skip what is already catalogued, without downloading.

    Each ID costs a few small requests to the archive and the destination, so
    they are made from several threads: a 10,000-ID batch plans in minutes, not hours.
    """
    source = open_archive(archive)
    target = open_destination(destination)

    def look_up(observation_id: str) -> Exposure:
        exposure = Exposure(observation_id)
        try:
            exposure.input_md5 = source.checksum(observation_id)
        except NotFound as exc:
            exposure.status, exposure.message = "failed", str(exc)
            return exposure
        record = None if force else is_done(target, observation_id, exposure.input_md5, config_hash)
        if record:
            exposure.status, exposure.sources, exposure.message = "skipped", record.sources, "already catalogued"
        return exposure

    with ThreadPoolExecutor(max_workers=int(SETTINGS["lookup_threads"])) as pool:
        return list(pool.map(look_up, observation_ids))


def _idempotency_key(exposure: Exposure, config_hash: str, destination: str) -> str:
    """Same exposure, input, configuration, destination and attempt: the same child run."""
    where = hashlib.sha256(destination.encode()).hexdigest()[:12]
    return f"catalogue:{exposure.id}:{exposure.input_md5}:{config_hash}:{where}:{exposure.attempts}"


def _is_permanent(state) -> bool:
    return "PermanentFailure" in (state.message or "")


@flow(name="catalogue", persist_result=False)
def catalogue_batch(
    ids: list[str],
    destination: str,
    archive: str = "cadc:CFHT",
    sex_file: str | None = None,
    overrides: list[str] | None = None,
    force: bool = False,
    job_variables: dict | None = None,
    exposure_deployment: str = SETTINGS["exposure_deployment"],
    max_ids: int = int(SETTINGS["max_ids"]),
    max_in_flight: int = int(SETTINGS["max_in_flight"]),
    max_attempts: int = int(SETTINGS["max_attempts"]),
    poll_seconds: float = float(SETTINGS["poll_seconds"]),
    expected_hours: float = float(SETTINGS["expected_hours"]),
) -> list[dict]:
    """Catalogue every exposure in ``ids`` into ``destination``.

    ``sex_file`` and ``overrides`` are source-extractor's ``-c`` file and
    ``-KEYWORD value`` pairs; they are read once here and passed to every
    exposure as data.  ``job_variables`` go unchanged to each per-exposure run
    (image, flavour and resources on an HTCondor pool).
    """
    logger = get_run_logger()
    wanted = _names(ids, max_ids)
    extraction = load_config(sex_file, overrides or [])
    for note in extraction.notes:
        logger.info("configuration: %s", note)
    config_hash = extraction.fingerprint()
    target = open_destination(destination)
    require_lifetime([open_archive(archive), target], timedelta(hours=expected_hours))

    exposures = plan(wanted, archive, destination, config_hash, force)
    todo = deque(e for e in exposures if e.status == "pending")
    logger.info(
        "%d exposures: %d to do, %d already catalogued, %d not in the archive",
        len(exposures), len(todo), sum(e.status == "skipped" for e in exposures),
        sum(e.status == "failed" for e in exposures),
    )
    running: dict[str, Exposure] = {}
    parameters = {"archive": archive, "destination": destination, "config_json": extraction.to_json(), "force": force}
    while todo or running:
        while todo and len(running) < max_in_flight:
            exposure = todo.popleft()
            exposure.attempts += 1
            child = run_deployment(
                exposure_deployment,
                parameters={"observation_id": exposure.id, **parameters},
                job_variables=job_variables or None,
                idempotency_key=_idempotency_key(exposure, config_hash, destination),
                flow_run_name=exposure.id if exposure.attempts == 1 else f"{exposure.id} (attempt {exposure.attempts})",
                timeout=0,
                as_subflow=True,
            )
            exposure.flow_run_id, exposure.status = str(child.id), "running"
            running[exposure.flow_run_id] = exposure
        if not running:
            break
        time.sleep(poll_seconds)
        for run_id, state in _states(list(running)).items():
            if not state.is_final():
                continue
            exposure = running.pop(run_id)
            record = is_done(target, exposure.id, exposure.input_md5, config_hash) if state.is_completed() else None
            if record:
                exposure.status, exposure.message, exposure.sources = "completed", "", record.sources
            elif state.is_cancelled():
                exposure.status, exposure.message = "cancelled", state.message or "cancelled"
            else:
                # A completed run without a catalogue is an old run re-attached by its
                # idempotency key whose catalogue is gone since: worth another run too.
                reason = "completed without storing a catalogue" if state.is_completed() else (
                    state.message or state.type.value
                )
                if (state.is_completed() or not _is_permanent(state)) and exposure.attempts < max_attempts:
                    logger.warning("%s: run %d ended %s (%s); starting it again",
                                   exposure.id, exposure.attempts, state.type.value, reason)
                    exposure.status = "pending"
                    todo.append(exposure)
                else:
                    exposure.status, exposure.message = "failed", reason
    return _report(exposures, target)


def _names(observation_ids: list[str], limit: int) -> list[str]:
    try:
        return ids.check_all(observation_ids, limit)
    except ids.InvalidID as exc:
        raise ValueError(f"no exposure was started: {exc}") from None


def _states(run_ids: list[str]) -> dict:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids)))
    return {str(run.id): run.state for run in runs if run.state is not None}


def _report(exposures: list[Exposure], target: Destination) -> list[dict]:
    rows = []
    for exposure in exposures:
        rows.append({
            "id": exposure.id,
            "status": exposure.status,
            "sources": exposure.sources if exposure.sources is not None else "",
            "runs": exposure.attempts,
            "flow_run": exposure.flow_run_id or "",
            "catalogue": target.location(f"{exposure.id}.cat") if exposure.status in ("completed", "skipped") else "",
            "message": exposure.message,
        })
    create_table_artifact(key="catalogue-batch", table=rows, description="one row per exposure")
    counts = {s: sum(r["status"] == s for r in rows) for s in ("completed", "skipped", "failed", "cancelled")}
    lines = [f"### Batch of {len(rows)} exposures", ""]
    lines += [f"- {status}: {count}" for status, count in counts.items() if count]
    failed = [r for r in rows if r["status"] in ("failed", "cancelled")]
    if failed:
        lines += ["", "#### Without a catalogue", ""] + [f"- `{r['id']}`: {r['message']}" for r in failed]
    create_markdown_artifact(key="catalogue-batch-summary", markdown="\n".join(lines) + "\n")
    if failed:
        names = ", ".join(f"{r['id']} ({r['message']})" for r in failed[:20])
        raise BatchFailed(f"{len(failed)} of {len(rows)} exposures have no catalogue: {names}")
    return rows
