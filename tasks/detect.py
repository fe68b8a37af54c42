"""Measure an exposure and write its catalogue in the scratch directory."""

from __future__ import annotations

import time
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from .. import config
from ..science import ExtractionConfig, run_exposure
from ..science.results import CCDResult, ExposureResult
from ..science.turns import LockFileTurn

SETTINGS = config.settings()["detect"]
#: The progress bar is redrawn at most this often: each redraw is a write to the server.
PROGRESS_SECONDS = float(SETTINGS["progress_seconds"])


@task(name="detect", timeout_seconds=float(SETTINGS["timeout_seconds"]))
def detect(exposure: Path, config_json: str, catalogue: Path, turns: Path | None = None) -> ExposureResult:
    """Decompress and measure every CCD on all cores, then write the catalogue atomically.

    One task for the whole exposure.  Its progress is a progress artifact (the
    run's Artifacts tab draws it as a bar), redrawn as CCDs finish but at most
    every ``progress_seconds``: a log line per CCD cost the server more than
    the rest of the run's logs together.  A skipped CCD is still logged, and
    each CCD's sources and seconds are in the exposure's table artifact.
    ``turns`` is the lock file by which the runs on this machine take turns at
    its cores (:mod:`..science.turns`).
    """
    logger = get_run_logger()
    extraction = ExtractionConfig.from_json(config_json)
    turn = None
    if turns is not None:
        turn = LockFileTurn(turns, waiting=lambda: logger.info(
            "%s: waiting for the cores, another exposure is being measured on this machine", exposure.name))
    bar = create_progress_artifact(0.0, description=f"{exposure.name}: CCDs measured")
    drawn = time.monotonic()

    def progress(ccd: CCDResult, done: int, total: int) -> None:
        nonlocal drawn
        if ccd.error:
            logger.warning("%s: %s skipped: %s", exposure.name, ccd.label, ccd.error)
        if done == total or time.monotonic() - drawn >= PROGRESS_SECONDS:
            update_progress_artifact(bar, 100.0 * done / total)
            drawn = time.monotonic()

    result = run_exposure(exposure, extraction, catalogue, progress=progress, turn=turn)
    if result.waited >= 0.1:
        logger.info("%s: waited %.1f s for the cores", exposure.name, result.waited)
    logger.info("%s: %d sources from %d CCDs in %.1f s", exposure.name, result.count, len(result.ccds), result.seconds)
    return result
