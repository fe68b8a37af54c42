"""Measure an exposure and write its catalogue in the scratch directory."""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task

from .. import config
from ..science import ExtractionConfig, run_exposure
from ..science.results import CCDResult, ExposureResult
from ..science.turns import LockFileTurn

SETTINGS = config.settings()["detect"]


@task(name="detect", timeout_seconds=float(SETTINGS["timeout_seconds"]))
def detect(exposure: Path, config_json: str, catalogue: Path, turns: Path | None = None) -> ExposureResult:
    """Decompress and measure every CCD on all cores, then write the catalogue atomically.

    One task for the whole exposure: progress is logged per CCD instead.
    ``turns`` is the lock file by which the runs on this machine take turns
    at its cores (:mod:`..science.turns`).
    """
    logger = get_run_logger()
    extraction = ExtractionConfig.from_json(config_json)
    turn = None
    if turns is not None:
        turn = LockFileTurn(turns, waiting=lambda: logger.info(
            "%s: waiting for the cores, another exposure is being measured on this machine", exposure.name))

    def progress(ccd: CCDResult, done: int, total: int) -> None:
        if ccd.error:
            logger.warning("%s: %s skipped: %s", exposure.name, ccd.label, ccd.error)
        else:
            logger.info("[%d/%d] %s: %d sources in %.1f s", done, total, ccd.label, ccd.count, ccd.seconds)

    result = run_exposure(exposure, extraction, catalogue, progress=progress, turn=turn)
    if result.waited >= 0.1:
        logger.info("%s: waited %.1f s for the cores", exposure.name, result.waited)
    logger.info("%s: %d sources from %d CCDs in %.1f s", exposure.name, result.count, len(result.ccds), result.seconds)
    return result
