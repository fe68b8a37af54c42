"""Every night: find new exposures in the archive and catalogue them.

It looks back to the start of the last successful discovery run, minus a
margin (late arrivals, clock skew), and hands what it finds to the batch,
which skips anything already catalogued.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.client.schemas.sorting import FlowRunSort

from .. import config
from ..boundaries.archive import open_archive
from ..boundaries.credentials import refresh, require_lifetime
from ..boundaries.storage import open_destination
from .batch import catalogue_batch

SETTINGS = config.settings()["nightly"]
FLOW_NAME = "catalogue-nightly"


def last_success() -> datetime | None:
    """When the last completed discovery run started, from the Prefect API."""
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[FLOW_NAME])),
            flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.COMPLETED]))),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
    return runs[0].start_time if runs and runs[0].start_time else None


@flow(name=FLOW_NAME, persist_result=False)
def catalogue_nightly(
    destination: str,
    archive: str = "cadc:CFHT",
    sex_file: str | None = None,
    overrides: list[str] | None = None,
    job_variables: dict | None = None,
    exposure_deployment: str = config.settings()["batch"]["exposure_deployment"],
    since: datetime | None = None,
    lookback_hours: float = float(SETTINGS["lookback_hours"]),
    expected_hours: float = float(config.settings()["batch"]["expected_hours"]),
) -> list[dict]:
    """Catalogue what arrived in ``archive`` since the last successful night."""
    logger = get_run_logger()
    boundaries = [open_archive(archive), open_destination(destination)]
    for uri in refresh(boundaries):
        logger.info("renewed the credential for %s", uri)
    require_lifetime(boundaries, timedelta(hours=expected_hours))
    if since is None:
        previous = last_success()
        since = (
            previous - timedelta(hours=lookback_hours)
            if previous
            else datetime.now(timezone.utc) - timedelta(days=float(SETTINGS["first_run_days"]))
        )
    found = open_archive(archive).list_since(since)
    logger.info("%d exposures in %s since %s", len(found), archive, since.isoformat(timespec="minutes"))
    if not found:
        return []
    return catalogue_batch(
        ids=found,
        destination=destination,
        archive=archive,
        sex_file=sex_file,
        overrides=overrides,
        job_variables=job_variables,
        exposure_deployment=exposure_deployment,
        expected_hours=expected_hours,
    )
