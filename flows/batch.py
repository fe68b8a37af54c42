"""Many exposures: what users run, with ``prefect deployment run 'catalogue/batch'``.

The batch checks every ID and the configuration before anything starts,
skips exposures already catalogued, and starts one run of the per-exposure
deployment for each of the others, with a bounded number unfinished at once.
IDs are looked up a few at a time, then in doubling steps, so the first
exposures start while the rest are still being looked up.
A child that crashes or fails for a transient reason is started again, up to
``max_attempts`` runs; Prefect's own flow retries do not apply to crashed runs.

A batch that is run again after a crash re-attaches to the children still in
flight from the earlier one instead of starting second copies: before starting
an exposure it looks for runs of the same work (exposure, input md5,
configuration, destination, and ``force``) that have not finished.  A run
left Pending with no infrastructure for ``stuck_pending_seconds`` (its worker
went away after claiming it) cannot progress and is not waited on.  Runs that
finished before the batch started are never re-attached: finished work is
skipped by its stored record, and ``force`` starts a new run.  A run that
completed while the batch ran (after it looked the exposure up) is followed
like one in flight, and counts by its stored record.  The idempotency key of a new run numbers it after
the earlier runs of the same work, so two batches started at the same moment
still start one run.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments import run_deployment

from .. import config
from ..boundaries import ids
from ..boundaries.archive import open_archive
from ..boundaries.credentials import require_lifetime
from ..boundaries.errors import NotFound
from ..boundaries.provenance import catalogue_name, is_done
from ..boundaries.storage import Destination, open_destination
from ..science import load_config
from ..tasks.policy import task_options
from . import attempts, companions, outputs, qa_view

SETTINGS = config.settings()["batch"]
#: Each exposure's key quality numbers, in the batch's table (from its provenance record).
QA_COLUMNS = ("fwhm", "ellipticity", "limiting_magnitude")
DOWNLOAD = config.settings()["download"]


class BatchFailed(Exception):
    """Some exposures ended without a catalogue; each is named with its reason."""


@dataclass
class Exposure:
    """One ID's way through the batch."""

    id: str
    input_md5: str = ""
    companion_md5: dict[str, str] = field(default_factory=dict)  # its weight and flag maps' and header's ("": none)
    status: str = "pending"  # pending, skipped, running, completed, failed, cancelled
    attempts: int = 0  # runs followed, started or re-attached to (at most max_attempts)
    started: int = 0  # runs this batch started
    flow_run_id: str | None = None
    reattached: bool = False  # the run followed now was in flight from an earlier batch
    message: str = ""
    sources: int | None = None
    qa: dict | None = None  # the quality numbers stored with its catalogue
    made_by: str | None = None  # the run that made the catalogue this batch skipped
    ended: set[str] = field(default_factory=set)  # the runs this batch has followed to their end


@task(name="plan", **task_options(DOWNLOAD))
def plan(
    observation_ids: list[str], archive: str, destination: str, config_hash: str, force: bool,
    patterns: dict[str, str] | None = None,
) -> list[Exposure]:
    """Look up every input md5 (with ``patterns``, those of the weight and flag maps and the external
    header named so too; "" for a header that is not there)
    and skip what is already catalogued, without downloading.

    Each ID costs a few small requests to the archive and the destination, so
    they are made from several threads: a 10,000-ID batch plans in minutes, not hours.
    """
    source = open_archive(archive)
    target = open_destination(destination)

    def look_up(observation_id: str) -> Exposure:
        exposure = Exposure(observation_id)
        try:
            exposure.input_md5 = source.checksum(observation_id)
            for kind, name in companions.names(patterns or {}, list(patterns or {}), observation_id).items():
                exposure.companion_md5[kind] = _checksum(source, observation_id, name, kind in companions.OPTIONAL)
        except NotFound as exc:
            exposure.status, exposure.message = "failed", str(exc)
            return exposure
        record = None if force else is_done(target, observation_id, exposure.input_md5, config_hash,
                                            companions.present(exposure.companion_md5))
        if record:
            exposure.status, exposure.sources, exposure.message = "skipped", record.sources, "already catalogued"
            exposure.qa, exposure.made_by = record.qa, record.flow_run_id
        return exposure

    with ThreadPoolExecutor(max_workers=int(SETTINGS["lookup_threads"])) as pool:
        return list(pool.map(look_up, observation_ids))


def _checksum(source, observation_id: str, name: str, optional: bool) -> str:
    """A file's md5 in the archive; "" for an optional one that is not there."""
    try:
        return source.checksum(observation_id, name)
    except NotFound:
        if optional:
            return ""
        raise


def _work_key(exposure: Exposure, config_hash: str, destination: str, force: bool) -> str:
    """What makes two runs the same work; a run's idempotency key is this and its number."""
    where = hashlib.sha256(destination.encode()).hexdigest()[:12]
    mode = "force" if force else "skip"
    inputs = exposure.input_md5 + companions.key_part(exposure.companion_md5)
    return f"catalogue:{exposure.id}:{inputs}:{config_hash}:{where}:{mode}"


def _works(exposure: Exposure, config_hash: str, destination: str, force: bool) -> list[str]:
    """The works whose runs in flight this batch follows rather than start its own: its own, and,
    when it skips finished exposures, the same work forced.  A forced run stores the very catalogue
    a skipping batch wants (same inputs, configuration and destination); starting a second run beside
    it, as a nightly run beside a user's forced batch would, measures the exposure twice.  A forced
    batch follows only forced runs: it asked for a new catalogue, not for one already being made."""
    works = [_work_key(exposure, config_hash, destination, force)]
    return works if force else works + [_work_key(exposure, config_hash, destination, True)]


def _can_progress(run: FlowRun, stuck_after: timedelta) -> bool:
    """Unfinished, and not Pending without infrastructure for longer than ``stuck_after``."""
    state = run.state
    if state is None or state.is_final():
        return False
    if state.type != StateType.PENDING or run.infrastructure_pid:
        return True
    return datetime.now(timezone.utc) - state.timestamp < stuck_after


def _finished_since(run: FlowRun, since: datetime) -> bool:
    """Completed after ``since``: the batch would have followed it had it looked a moment sooner."""
    return run.state is not None and run.state.is_completed() and run.state.timestamp >= since


def _follow_or_start(
    exposure: Exposure, runs: list[FlowRun], work: str, stuck_after: timedelta, since: datetime,
    start: Callable[[Exposure, str, str, str | None], str],
) -> None:
    """Follow the run of this work that another batch has in flight, or that completed since this batch
    started (between its look-up and now), or start the next one.

    Without the second kind, a batch that planned an exposure while another batch's run of it was
    measuring would start a second run as soon as that one completed, which would then find the
    catalogue and complete too: two completed runs of one exposure.

    ``runs`` may also hold runs of the same work forced (:func:`_works`): they are followed as well,
    but attempts are numbered, and lost ones replaced, within ``work`` alone.
    """
    earlier = [run for run in runs if attempts.is_of(run, work)]
    candidates = [run for run in runs if str(run.id) not in exposure.ended
                  and (_can_progress(run, stuck_after) or _finished_since(run, since))]
    exposure.attempts += 1
    exposure.reattached = bool(candidates)
    if candidates:
        run = max(candidates, key=lambda run: run.created)
        exposure.flow_run_id = str(run.id)
        get_run_logger().info("%s: re-attached to run %s (%s), %s", exposure.id, run.name, run.state.type.value,
                              "which finished while this batch ran" if run.state.is_final()
                              else "in flight from an earlier batch")
    else:
        exposure.started += 1
        name = exposure.id if exposure.started == 1 else f"{exposure.id} (attempt {exposure.started})"
        lost = [run for run in earlier if run.state is not None and not run.state.is_final()]  # stuck Pending
        replaces = str(max(lost, key=attempts.number).id) if lost else None
        exposure.flow_run_id = start(exposure, f"{work}:{max(map(attempts.number, earlier), default=0) + 1}", name,
                                     replaces)
    exposure.status = "running"


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
    zeropoint_key: str | None = None,
    weight_pattern: str = companions.PATTERNS["weight"],
    flag_pattern: str = companions.PATTERNS["flag"],
    header_pattern: str = companions.PATTERNS["header"],
    job_variables: dict | None = None,
    exposure_deployment: str = SETTINGS["exposure_deployment"],
    max_ids: int = int(SETTINGS["max_ids"]),
    max_in_flight: int = int(SETTINGS["max_in_flight"]),
    max_attempts: int = int(SETTINGS["max_attempts"]),
    poll_seconds: float = float(SETTINGS["poll_seconds"]),
    expected_hours: float = float(SETTINGS["expected_hours"]),
    stuck_pending_seconds: float = float(SETTINGS["stuck_pending_seconds"]),
) -> list[dict]:
    """Catalogue every exposure in ``ids`` into ``destination``.

    ``sex_file`` and ``overrides`` are source-extractor's ``-c`` file and
    ``-KEYWORD value`` pairs; they are read once here and passed to every
    exposure as data.  ``zeropoint_key`` names a header keyword holding each
    CCD's zeropoint (MegaPipe's PHOTZP), used instead of MAG_ZEROPOINT.
    With a WEIGHT_TYPE that reads a weight map, each exposure's is the
    archive's ``weight_pattern`` file (``{id}`` is the exposure's ID); with
    IMAFLAGS_ISO, its flag map is the ``flag_pattern`` file.  An exposure's
    external header (HEADER_SUFFIX, SCAMP's ``.head``) is read when the archive
    has the ``header_pattern`` file (by default ``{id}.fits`` + HEADER_SUFFIX).
    ``job_variables`` go unchanged to each per-exposure run (image, flavour
    and resources on an HTCondor pool).
    """
    logger = get_run_logger()
    since = datetime.now(timezone.utc)  # runs of this batch's work that finish from now on are followed
    wanted = _names(ids, max_ids)
    if max_in_flight < 1:
        raise ValueError(f"no exposure was started: max_in_flight must be at least 1, not {max_in_flight}")
    extraction = load_config(sex_file, overrides or [], zeropoint_key=zeropoint_key, maps_from_archive=True)
    extraction, check_notes = outputs.for_flows(extraction)
    patterns = companions.patterns(extraction, weight_pattern, flag_pattern, header_pattern)
    reads = {kind: patterns[kind] for kind in companions.needed(extraction)}
    companions.check_patterns(reads, list(reads), wanted)
    for kind, pattern in reads.items():
        if kind in companions.OPTIONAL:
            logger.info("%s: each exposure's from the archive's %s file, where there is one", kind, pattern)
        else:
            logger.info("%s maps: each exposure's from the archive's %s files", kind, pattern)
    for note in [*extraction.notes, *check_notes]:
        logger.info("configuration: %s", note)
    for kind, pattern in extraction.check_images:
        logger.info("check image %s: stored beside each catalogue as %s", kind, pattern)
    config_hash = extraction.fingerprint()
    target = open_destination(destination)
    require_lifetime([open_archive(archive), target], timedelta(hours=expected_hours))

    exposures: list[Exposure] = []
    unplanned = deque(wanted)
    todo: deque[Exposure] = deque()

    def plan_next() -> None:
        """Plan the next IDs, a few at first so that the first exposures start at once, then in
        doubling steps (a night's thousands of IDs cost minutes of look-ups)."""
        step = min(max(2, 2 * len(exposures)), int(SETTINGS["plan_step"]), len(unplanned))
        planned = plan([unplanned.popleft() for _ in range(step)], archive, destination, config_hash, force, reads)
        exposures.extend(planned)
        todo.extend(e for e in planned if e.status == "pending")
        logger.info(
            "planned %d of %d exposures: %d to do, %d already catalogued, %d not in the archive",
            len(exposures), len(wanted), sum(e.status == "pending" for e in planned),
            sum(e.status == "skipped" for e in planned), sum(e.status == "failed" for e in planned),
        )

    running: dict[str, Exposure] = {}
    parameters = {"archive": archive, "destination": destination, "config_json": extraction.to_json(), "force": force,
                  "weight_pattern": weight_pattern, "flag_pattern": flag_pattern, "header_pattern": header_pattern}
    stuck_after = timedelta(seconds=stuck_pending_seconds)
    deployment_id = None

    def start(exposure: Exposure, key: str, name: str, replaces: str | None) -> str:
        child = run_deployment(
            exposure_deployment,
            parameters={"observation_id": exposure.id, "input_md5": exposure.input_md5,
                        "companion_md5": exposure.companion_md5, "replaces": replaces, **parameters},
            job_variables=job_variables or None,
            idempotency_key=key,
            flow_run_name=name,
            timeout=0,
            as_subflow=True,
        )
        return str(child.id)

    while todo or running or unplanned:
        if unplanned and len(todo) < max_in_flight - len(running):
            plan_next()
        while todo and len(running) < max_in_flight:
            exposure = todo.popleft()
            deployment_id = deployment_id or _deployment_id(exposure_deployment)
            works = _works(exposure, config_hash, destination, force)
            _follow_or_start(exposure, attempts.runs_of(deployment_id, exposure.id, *works), works[0], stuck_after,
                             since, start)
            running[exposure.flow_run_id] = exposure
        if not running or (unplanned and len(running) < max_in_flight):
            continue  # room for more: plan the next IDs first (or finish)
        time.sleep(poll_seconds)
        for run_id, state in _states(list(running)).items():
            if not state.is_final():
                continue
            exposure = running.pop(run_id)
            exposure.ended.add(run_id)
            record = None
            superseded, redundant = attempts.is_superseded(state), attempts.is_redundant(state)
            if state.is_completed() or state.is_cancelled():
                record = is_done(target, exposure.id, exposure.input_md5, config_hash,
                                 companions.present(exposure.companion_md5))
                if record and state.is_cancelled() and record.flow_run_id != run_id:
                    runs = attempts.same_work(  # the work of the run followed: this batch's, or forced
                        attempts.runs_of(deployment_id, exposure.id, *_works(exposure, config_hash, destination, force)),
                        run_id)
                    if not (superseded and attempts.stored_by_later(runs, run_id, record.flow_run_id)
                            or redundant and attempts.stored_by_later(runs, record.flow_run_id, run_id)):
                        record = None  # a catalogue from before: this run was cancelled before storing its own
            if record:
                exposure.status, exposure.sources, exposure.qa = "completed", record.sources, record.qa
                exposure.message = (
                    "stored by a later run of the same work" if superseded
                    else "stored by the run the batch had replaced as lost, which ran after all" if redundant
                    else "cancelled after its catalogue was stored" if state.is_cancelled()
                    else "re-attached to a run in flight from an earlier batch" if exposure.reattached else ""
                )
            elif superseded:  # another batch started a later attempt: follow that one
                logger.info("%s: run %s %s; following the later one", exposure.id, run_id, state.message)
                exposure.status = "pending"
                todo.append(exposure)
            elif state.is_cancelled():
                exposure.status, exposure.message = "cancelled", state.message or "cancelled"
            else:
                # A completed run without this work's catalogue (one re-attached to whose
                # catalogue was removed since, say) is worth another run too.
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
    return _report(exposures, target, extraction.catalog_type)


def _names(observation_ids: list[str], limit: int) -> list[str]:
    try:
        return ids.check_all(observation_ids, limit)
    except ids.InvalidID as exc:
        raise ValueError(f"no exposure was started: {exc}") from None


def _deployment_id(name: str):
    with get_client(sync_client=True) as client:
        return client.read_deployment_by_name(name).id


def _states(run_ids: list[str]) -> dict:
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=run_ids)))
    return {str(run.id): run.state for run in runs if run.state is not None}


def _report(exposures: list[Exposure], target: Destination, catalog_type: str) -> list[dict]:
    rows = []
    for exposure in exposures:
        rows.append({
            "id": exposure.id,
            "status": exposure.status,
            "sources": exposure.sources if exposure.sources is not None else "",
            "runs": exposure.started,
            "flow_run": exposure.flow_run_id or "",
            "run_origin": ("re-attached" if exposure.reattached else "started") if exposure.flow_run_id else "",
            "catalogue": target.location(catalogue_name(exposure.id, catalog_type))
            if exposure.status in ("completed", "skipped") else "",
            "message": exposure.message,
            **{key: (exposure.qa or {}).get(key) for key in QA_COLUMNS},
        })
    create_table_artifact(key="catalogue-batch", table=rows, description="one row per exposure")
    counts = {s: sum(r["status"] == s for r in rows) for s in ("completed", "skipped", "failed", "cancelled")}
    lines = [f"### Batch of {len(rows)} exposures", ""]
    lines += [f"- {status}: {count}" for status, count in counts.items() if count]
    failed = [r for r in rows if r["status"] in ("failed", "cancelled")]
    if failed:
        lines += ["", "#### Without a catalogue", ""] + [f"- `{r['id']}`: {r['message']}" for r in failed]
    lines += qa_view.batch_section(
        [{**row, "qa": exposure.qa, "made_by": exposure.made_by} for row, exposure in zip(rows, exposures)]
    )
    create_markdown_artifact(key="catalogue-batch-summary", markdown="\n".join(lines) + "\n")
    if failed:
        names = ", ".join(f"{r['id']} ({r['message']})" for r in failed[:20])
        raise BatchFailed(f"{len(failed)} of {len(rows)} exposures have no catalogue: {names}")
    return rows
