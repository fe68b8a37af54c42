"""One exposure: download, detect, write, upload.  What the batch dispatches.

Each exposure is its own flow run, so a work pool (``process`` locally,
``htcondor`` on the cloud) runs it wherever the per-exposure deployment says.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run
from prefect.states import Cancelled, State

from ..boundaries import ids
from ..boundaries.errors import NotFound, PermanentError
from ..boundaries.provenance import Provenance, catalogue_name, is_done, software_versions, stored
from ..boundaries.storage import open_destination
from .. import config
from ..science import ExtractionConfig, InputError, load_config
from ..science.qa import assess
from ..science.qa_figure import exposure_title
from ..tasks.detect import detect
from ..tasks.download import archive_checksum, download
from ..tasks.upload import upload
from . import attempts, companions, outputs, qa_view
from .scratch import scratch_root, sweep_stale


STALE_SCRATCH_HOURS = float(config.settings()["detect"]["stale_scratch_hours"])
#: How long a run waits, before it stores, for the run it replaced to settle if that one is Running.
SETTLE_SECONDS = float(config.settings()["batch"]["stuck_pending_seconds"]) * 2
#: In the scratch root: the runs sharing it (one machine's) take turns at its cores by it.
TURNS = ".measuring"


class PermanentFailure(Exception):
    """This exposure cannot succeed as it is (bad ID, missing observation, corrupt file, no permission).

    The batch does not start it again; the message says what to check.
    """


def artifact_key(observation_id: str, suffix: str = "") -> str:
    return f"exposure-{observation_id}{suffix}"


@flow(name="catalogue-exposure", flow_run_name="{observation_id}", persist_result=False)
def catalogue_exposure(
    observation_id: str,
    archive: str,
    destination: str,
    config_json: str | None = None,
    force: bool = False,
    scratch: str | None = None,
    input_md5: str | None = None,
    weight_pattern: str = companions.PATTERNS["weight"],
    flag_pattern: str = companions.PATTERNS["flag"],
    header_pattern: str = companions.PATTERNS["header"],
    companion_md5: dict[str, str] | None = None,
    replaces: str | None = None,
) -> dict | State:
    """Make the catalogue of one exposure and store it as ``<destination>/<id>.cat`` (``.ldac.fits``
    for CATALOG_TYPE FITS_LDAC, ``.cat.fits`` for FITS_1.0, ``.cat.xml`` for ASCII_VOTABLE).

    Skips the exposure when the destination already holds its catalogue for
    the same input md5 and configuration, unless ``force``.  ``input_md5`` is
    the exposure's md5 when the caller has looked it up already (the batch
    has): the archive is then not asked again; the download still checks it.
    With a WEIGHT_TYPE that reads a weight map, the map is the archive's
    ``weight_pattern`` file beside the exposure, and with IMAFLAGS_ISO its flag
    map the ``flag_pattern`` file; its external header is the ``header_pattern``
    file when the archive has one; their md5s (``companion_md5`` when the batch
    has them) join the exposure's in the skip check and the record.  A run
    that a batch has replaced by a later attempt of the same work ends
    Cancelled without storing anything, and the later attempt (``replaces``
    names the run it replaced) ends Cancelled as not needed should the
    replaced run have stored the catalogue after all (:mod:`.attempts`).
    """
    logger = get_run_logger()
    try:
        observation_id = ids.check(observation_id)
        extraction = ExtractionConfig.from_json(config_json) if config_json else load_config()
        extraction, _ = outputs.for_flows(extraction)  # the batch has said what its notes say
        check_names = outputs.names(extraction, observation_id)
        patterns = companions.patterns(extraction, weight_pattern, flag_pattern, header_pattern)
        files = companions.names(patterns, companions.needed(extraction), observation_id)
        target = open_destination(destination)  # a bad URI fails here, before any download
    except (ids.InvalidID, InputError, PermanentError) as exc:
        raise PermanentFailure(str(exc)) from None
    this_run = attempts.read_run(flow_run.get_id())
    later = attempts.later_attempt(this_run, observation_id)
    if later:
        return _superseded(later, logger)
    config_hash = extraction.fingerprint()
    workdir = scratch_root(scratch) / str(flow_run.get_id() or observation_id)
    for stale in sweep_stale(workdir.parent, STALE_SCRATCH_HOURS, keep=workdir):
        logger.info("removed %s, left by a run killed more than %g hours ago", stale, STALE_SCRATCH_HOURS)
    catalogue = workdir / catalogue_name(observation_id, extraction.catalog_type)
    check_images = {kind: workdir / name for kind, name in check_names.items()}
    try:
        input_md5 = input_md5 or archive_checksum(observation_id, archive)
        known = companion_md5 or {}
        md5s = companions.present({kind: known[kind] if kind in known else _checksum(observation_id, archive, name, kind)
                                   for kind, name in files.items()})
        if replaced_stored(target, observation_id, replaces, wait=0):
            shutil.rmtree(workdir, ignore_errors=True)
            return _redundant(replaces, logger)
        done = None if force else is_done(target, observation_id, input_md5, config_hash, md5s)
        if done:
            logger.info("%s: already catalogued (%d sources, %s); skipping", observation_id, done.sources, done.created)
            _publish(observation_id, "skipped", done.sources, [], target.location(catalogue.name),
                     {kind: target.location(image["name"]) for kind, image in done.check_images.items()})
            return {"id": observation_id, "status": "skipped", "sources": done.sources}
        qa_view.preload()  # while the exposure downloads; a skipped exposure draws nothing
        fetched = download(observation_id, archive, workdir)
        if fetched.md5 != input_md5:
            logger.warning("%s: the archive's file changed since the batch looked (md5 %s, now %s); "
                           "catalogued as it is now", observation_id, input_md5, fetched.md5)
        beside = {kind: download(observation_id, archive, workdir, files[kind]) for kind in md5s}
        md5s = {kind: got.md5 for kind, got in beside.items()}
        extraction = dataclasses.replace(extraction, **{companions.SETTING[kind]: str(got.path)
                                                        for kind, got in beside.items()},
                                         check_images=tuple((kind, str(path)) for kind, path in check_images.items()))
        result = detect(fetched.path, extraction.to_json(), catalogue, workdir.parent / TURNS)
        quality = assess(result, result.zeropoint(extraction.mag_zeropoint))
        figure = qa_view.draw_in_background(quality, result.layout, exposure_title(observation_id, quality))
        record = Provenance(
            observation_id=observation_id,
            input_md5=fetched.md5,
            companion_md5=md5s,
            config_hash=config_hash,
            catalogue_md5="",
            sources=result.count,
            ccds=len(result.ccds) - len(result.failed),
            skipped_ccds=[f"{c.label}: {c.error}" for c in result.failed],
            archive=archive,
            software=software_versions(),
            flow_run_id=flow_run.get_id(),
            qa=quality.to_dict(),
        )
        later = attempts.later_attempt(this_run, observation_id)  # stored by one run only
        if later:
            shutil.rmtree(workdir, ignore_errors=True)
            return _superseded(later, logger)
        if replaced_stored(target, observation_id, replaces, wait=SETTLE_SECONDS):
            shutil.rmtree(workdir, ignore_errors=True)
            return _redundant(replaces, logger)
        location = upload(catalogue, record, destination, check_images)
    except (ids.InvalidID, InputError, PermanentError) as exc:
        _clean(workdir, catalogue, check_images, logger)
        raise PermanentFailure(f"{observation_id}: {exc}") from None
    except BaseException:
        _clean(workdir, catalogue, check_images, logger)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    rows = [
        {"ccd": c.label, "sources": c.count, "seconds": round(c.seconds, 2), "skipped": c.error or ""}
        for c in result.ccds
    ]
    _publish(observation_id, "completed", result.count, rows, location,
             {kind: target.location(path.name) for kind, path in check_images.items()})
    waiting = time.perf_counter()
    try:
        png = figure.result()
        logger.info("%s: QA picture ready (the run waited %.2f s for it)", observation_id, time.perf_counter() - waiting)
    except Exception as exc:  # the numbers are published all the same
        logger.warning("%s: the QA figure could not be drawn: %s", observation_id, exc)
        png = None
    qa_view.publish_exposure(observation_id, quality, png)
    logger.info("%s: %d sources -> %s", observation_id, result.count, location)
    return {"id": observation_id, "status": "completed", "sources": result.count, "catalogue": location}


def _checksum(observation_id: str, archive: str, name: str, kind: str) -> str:
    """A file's md5 in the archive; "" for an optional one (the external header) that is not there."""
    try:
        return archive_checksum(observation_id, archive, name)
    except NotFound:
        if kind in companions.OPTIONAL:
            return ""
        raise


def replaced_stored(target, observation_id: str, replaces: str | None, wait: float) -> bool:
    """Whether the run this one replaced stored the catalogue after all; a replaced run still Running
    is first waited for (up to ``wait`` seconds): it will either store and complete, or stop as
    superseded when it sees this run."""
    if not replaces:
        return False
    if wait:
        attempts.settled(replaces, wait)
    record = stored(target, observation_id)
    return record is not None and record.flow_run_id == replaces


def _redundant(replaces: str, logger) -> State:
    message = attempts.redundant_message(replaces)
    logger.warning("this run stops here: %s", message)
    return Cancelled(message=message)


def _superseded(later, logger) -> State:
    """End this run as superseded by ``later``, a later attempt of the same work (:mod:`.attempts`)."""
    message = attempts.superseded_message(later)
    logger.warning("this run stops here: %s, which a batch started while this one seemed lost", message)
    return Cancelled(message=message)


def _clean(workdir: Path, catalogue: Path, check_images: dict[str, Path], logger) -> None:
    """Remove the scratch copy, but keep a finished catalogue and its check images that could not be stored."""
    made = [catalogue, *check_images.values()]
    if catalogue.exists():
        for path in workdir.iterdir():
            if path not in made and path.is_file():
                path.unlink(missing_ok=True)
        kept = ", ".join(str(path) for path in made if path.exists())
        logger.warning("the catalogue was not stored; the local copies are kept: %s", kept)
    else:
        shutil.rmtree(workdir, ignore_errors=True)


def _link(where: str) -> str:
    """A stored file's address as a link: a ``vos:`` URI as it is (``vcp`` takes it), a local path as a file URI."""
    return where if ":" in where.split("/", 1)[0] else Path(where).resolve().as_uri()


def _publish(observation_id: str, status: str, sources: int, rows: list[dict], location: str,
             check_images: dict[str, str]) -> None:
    """The exposure's artifacts: sources and time per CCD, and a summary that links what was stored."""
    if rows:
        create_table_artifact(
            key=artifact_key(observation_id),
            table=rows,
            description=f"{observation_id}: sources and time per CCD",
        )
    create_markdown_artifact(
        key=artifact_key(observation_id, "-summary"),
        markdown=f"### {observation_id}\n\n- status: **{status}**\n- sources: {sources}\n- catalogue: `{location}`\n"
        + "".join(f"- {kind}: [{where.rsplit('/', 1)[-1]}]({_link(where)})\n" for kind, where in check_images.items()),
        description=f"{observation_id}: {status}",
    )
