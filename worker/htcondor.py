"""A Prefect worker that runs each flow run as an HTCondor job.

To start it, on an HTCondor submit host (``CONDOR_CONFIG`` set, a token or
other credential for the schedd in place):

```bash
prefect work-pool create catalogue-htcondor --type htcondor
prefect worker start --pool catalogue-htcondor --type htcondor
```

Each flow run becomes one job. The job runs Prefect's own engine
(``python -m prefect.engine``, started warm, behind a version check) on the execute node,
with the Prefect API address and the flow run id in its environment. Jobs
carry CANFAR's ``VMType`` / ``VMInstanceType`` attributes, as ``canfar_submit``
writes them, so the provisioning flow can boot the right VMs. The worker then
follows the job's user log with ``htcondor2.JobEventLog``:

| HTCondor event | Prefect |
|---|---|
| submitted | pending (the run's log says so) |
| executing | running (the engine in the job reports it) |
| terminated, return value 0 | completed |
| terminated, other value | failed, with the end of the job's error file |
| evicted (vacate, or the first step of a hold or removal) | back to pending; HTCondor runs the job again, or holds or removes it |
| held | crashed with the hold reason; the job is removed, so the batch starts the exposure again |
| aborted (removed) | cancelled |

The user log is the only source of these outcomes: the job's own process
keeps HTCondor's SIGTERM from the engine (``worker/job.py``), so a run never
reports itself Crashed behind the worker's back.  A run cancelled in Prefect
has its job removed and ends Cancelled, also when the job finishes at that
moment.  Every worker of the pool also looks, every ``pending_scan_seconds``,
for runs of the pool left Pending with no job (their worker went away between
claiming them and submitting), and ends them Crashed, so a batch starts them
again.

The worker asks its pool for runs on Prefect's timer and also as soon as the
server announces a new run or a freed slot (:mod:`.announcements`): a new
exposure's job is submitted at once, without a question to the server every
second.

Secrets never go into the job's environment (anyone on the submit host can
read it with ``condor_q -l``): the proxy travels as ``x509userproxy``, other
secrets as owner-only files named by path, and a Prefect API key is moved
from the environment into such a file.
"""

from __future__ import annotations

import re
import stat
import sys
from datetime import datetime, timedelta, timezone
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import anyio
import anyio.abc
from pydantic import BaseModel, Field, PrivateAttr
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType, WorkPoolFilter, WorkPoolFilterName
from prefect.client.schemas.objects import StateType
from prefect.exceptions import InfrastructureNotFound
from prefect.states import Failed, Pending
from prefect.workers.base import BaseJobConfiguration, BaseVariables, BaseWorker, BaseWorkerResult

from ..boundaries.cadc import ProxyFile, write_private
from ..boundaries.credentials import require_lifetime
from ..boundaries.errors import PermanentError, PermissionDenied
from ..boundaries.schedd import FLOW_RUN_ATTRIBUTE, Schedd, flow_run_constraint, flow_run_jobs, open_schedd
from ..config import settings
from .announcements import ask_worker_when_announced

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

SETTINGS = settings()["htcondor"]
#: Environment variable names that look like secrets: refused in ``env``.
SECRET_NAME = re.compile(r"KEY|TOKEN|PASSWORD|PASSWD|SECRET|AUTH_STRING|CREDENTIAL", re.IGNORECASE)
#: Prefect settings that hold secrets: moved from the environment into files.
PREFECT_SECRETS = ("PREFECT_API_KEY", "PREFECT_API_AUTH_STRING")
HELD_EXIT_CODE = -1
#: The run's label that names its job (``condor_q <id>``), shown in the UI.
CLUSTER_LABEL = "htcondor.cluster-id"


def _installed_version() -> str:
    return version("canfar-catalogue")


class _JobFields(BaseModel):
    """The job's settings: in the work pool's template (variables) and in each run's configuration."""

    image: str = Field(default="", description="VM image (snapshot) the job needs, e.g. canfar-catalogue-0.1.0. Empty: any execute node.")
    project: str = Field(default="", description="OpenStack project that owns the image; the job asks for VMType = \"<project>:<image>\".")
    flavour: str = Field(default="", description="VM flavour for the job (VMInstanceType), e.g. c2-7.5gb-30.")
    request_cpus: int = Field(
        default=1, ge=1,
        description="Cores the job measures its CCDs on. 1, as the tutorial's jobs: a batch of 1-core jobs keeps every "
                    "core busy while each job starts, downloads and stores (bench/bench_batch.py: 1.73x the tutorial's "
                    "wall time against 1.92x with 2-core jobs on a 2-core node); more for one exposure sooner.")
    request_memory: str = Field(default="3 GB", description="Memory the job needs (HTCondor units, e.g. 3 GB): two 1-core jobs "
                                "fit a c2-7.5gb-30 VM; measuring on one core took at most 460 MB (survey .param, bench/RESULTS.md).")
    request_disk: str = Field(default="10 GB", description="Scratch disk the job needs for one exposure, its catalogue and "
                              "check images; two jobs fit the 31 GB ephemeral disk of a c2-7.5gb-30 VM.")
    x509_proxy: Optional[Path] = Field(default=None, description="Your CADC proxy certificate on the submit host (cadc-get-cert -n); sent with the job as x509userproxy.")
    proxy_min_hours: float = Field(default=12.0, description="Refuse to submit when the proxy has less time left than this.")
    secret_files: list[Path] = Field(default_factory=list, description="Other secrets (a CADC token file named cadc-token, a .netrc) sent with the job; each must be readable only by you.")
    submit_commands: dict[str, str] = Field(default_factory=dict, description="Extra HTCondor submit commands, e.g. {\"+JobPriority\": \"5\"}.")
    log_directory: Path = Field(default=Path("~/.canfar-catalogue/htcondor"), description="Submit-side folder for each flow run's user log, output and error files.")
    python: str = Field(default="/opt/canfar-catalogue/bin/python", description="The Python of the installed project on the execute node (the worker image).")
    schedd: str = Field(default="", description="Name of the schedd to submit to; empty: the local one.")


class HTCondorJobConfiguration(BaseJobConfiguration, _JobFields):
    """One flow run's HTCondor job, filled from the work pool's base job template."""

    _secrets: dict[str, str] = PrivateAttr(default_factory=dict)  # Prefect secrets taken out of ``env``

    def prepare_for_flow_run(self, flow_run: "FlowRun", *args: Any, **kwargs: Any) -> None:
        super().prepare_for_flow_run(flow_run, *args, **kwargs)
        self._secrets = {name: self.env.pop(name) for name in PREFECT_SECRETS if self.env.get(name)}
        named = sorted(name for name in self.env if SECRET_NAME.search(name) and name not in PREFECT_SECRETS)
        if named:
            raise PermanentError(
                f"environment variables {', '.join(named)} look like secrets; a job's environment is readable by "
                "anyone on the submit host (condor_q -l): put them in secret_files instead"
            )

    def run_directory(self, flow_run_id: str) -> Path:
        return self.log_directory.expanduser() / flow_run_id

    def check_credentials(self) -> None:
        """Fail before submitting when a secret is missing, readable by others, or about to expire."""
        for path in [*self.secret_files, *([self.x509_proxy] if self.x509_proxy else [])]:
            path = path.expanduser()
            if not path.is_file():
                raise PermissionDenied(f"{path} does not exist; it is named in the work pool's job configuration")
            if stat.S_IMODE(path.stat().st_mode) & 0o077:
                raise PermissionDenied(f"{path} is readable by others; run `chmod 600 {path}` first")
        if self.x509_proxy:
            require_lifetime([ProxyFile(self.x509_proxy.expanduser())], timedelta(hours=self.proxy_min_hours))

    def submit_description(self, flow_run_id: str) -> Any:
        """The job, as ``htcondor2.Submit``: what ``condor_submit`` would read."""
        import htcondor2

        run = self.run_directory(flow_run_id)
        run.mkdir(parents=True, exist_ok=True, mode=0o700)
        inputs = [str(p.expanduser()) for p in self.secret_files]
        for name, value in self._secrets.items():
            secret = run / f"{name}.secret"
            write_private(secret, value)
            inputs.append(str(secret))
        # the job refuses to run on an execute node whose installed release differs from this one
        environment = {**self.env, "CANFAR_CATALOGUE_EXPECTED_VERSION": _installed_version()}
        description = {
            "universe": "vanilla",
            "executable": self.python,
            "arguments": "-m canfar_catalogue.worker.job",
            "transfer_executable": "false",
            "environment": _environment(environment),
            "request_cpus": str(self.request_cpus),
            "request_memory": self.request_memory,
            "request_disk": self.request_disk,
            "log": str(run / "job.log"),
            "output": str(run / "job.out"),
            "error": str(run / "job.err"),
            "should_transfer_files": "YES",
            "when_to_transfer_output": "ON_EXIT",
            f"MY.{FLOW_RUN_ATTRIBUTE}": f'"{flow_run_id}"',
            "MY.PrefectFlowRunName": _quoted(self.name or ""),
        }
        if inputs:
            description["transfer_input_files"] = ", ".join(inputs)
        if self.x509_proxy:
            description["x509userproxy"] = str(self.x509_proxy.expanduser())
        if self.image:
            vm_type = f"{self.project}:{self.image}" if self.project else self.image
            description["MY.VMType"] = _quoted(vm_type)
            description["requirements"] = f"(VMType =?= {_quoted(vm_type)})"
        if self.flavour:
            description["MY.VMInstanceType"] = _quoted(self.flavour)
        for key, value in self.submit_commands.items():
            description[f"MY.{key[1:]}" if key.startswith("+") else key] = value
        return htcondor2.Submit(description)


class HTCondorVariables(BaseVariables, _JobFields):
    """What a deployment or a run may set (``job_variables``); shown in the work pool's UI."""


class HTCondorWorkerResult(BaseWorkerResult):
    """How the job ended; ``identifier`` is its HTCondor cluster id."""


class HTCondorWorker(BaseWorker[HTCondorJobConfiguration, HTCondorVariables, HTCondorWorkerResult]):
    type = "htcondor"
    job_configuration = HTCondorJobConfiguration
    job_configuration_variables = HTCondorVariables
    _description = "Run each flow run as an HTCondor job, on CANFAR cloud workers booted from a VM image."
    _display_name = "HTCondor"
    _documentation_url = "https://github.com/canfar-catalogue/canfar-catalogue#htcondor-work-pool"

    async def run(
        self,
        flow_run: "FlowRun",
        configuration: HTCondorJobConfiguration,
        task_status: Optional[anyio.abc.TaskStatus[str]] = None,
    ) -> HTCondorWorkerResult:
        logger = self.get_flow_run_logger(flow_run)
        flow_run_id = str(flow_run.id)
        schedd = open_schedd(configuration.schedd)
        queued = await anyio.to_thread.run_sync(lambda: schedd.query(flow_run_constraint(flow_run_id), ["ClusterId"]))
        if queued:
            cluster = int(queued[0]["ClusterId"])
            logger.info("HTCondor job %d already runs this flow run: following it instead of submitting again", cluster)
        else:
            configuration.check_credentials()
            description = configuration.submit_description(flow_run_id)
            result = await anyio.to_thread.run_sync(lambda: schedd.submit(description, count=1))
            cluster = result.cluster()
            logger.info("submitted as HTCondor job %d (condor_q %d)", cluster, cluster)
        # Labelled before the worker is told the job started: it then writes the cluster id as the run's
        # infrastructure_pid at once, and two writes to one run at the same moment collide on SQLite
        # (a 503, and 2 s before the label is sent again).
        try:
            await self._label(flow_run, cluster)
        except Exception as exc:  # the job runs all the same, and is followed; only its label is missing
            logger.warning("could not label the run with HTCondor job %d's cluster id: %s", cluster, exc)
        if task_status is not None:
            task_status.started(str(cluster))
        result = await self._follow(flow_run, schedd, cluster, configuration.run_directory(flow_run_id) / "job.log")
        await self._label(flow_run, cluster, check_first=True)  # a concurrent update by the job's engine can lose it
        return result

    async def _label(self, flow_run: "FlowRun", cluster: int, check_first: bool = False) -> None:
        """Put the cluster id on the run, so ``condor_q <id>`` finds its job; checked, since the
        server merges labels by read-modify-write and a concurrent update can drop ours.

        With ``check_first`` (the label was put there before) it is only put again if it is gone:
        on SQLite each such write is a transaction that can collide with the runs' own writes,
        which then wait 2 s to send theirs again (``bench/RESULTS.md``)."""
        label = {CLUSTER_LABEL: str(cluster)}

        async def present() -> bool:
            current = await self.client.read_flow_run(flow_run.id)
            return current.labels.get(CLUSTER_LABEL) == label[CLUSTER_LABEL]

        if check_first and await present():
            return
        for _ in range(3):
            await self.client.update_flow_run_labels(flow_run.id, label)
            if await present():
                return

    async def setup(self) -> None:
        await super().setup()
        self._runs_task_group.start_soon(self._resume_following)
        self._runs_task_group.start_soon(self._scan_for_runs_without_jobs)
        self._runs_task_group.start_soon(ask_worker_when_announced, self)  # runs as soon as announced

    def _pool_schedd(self) -> Schedd:
        """The schedd named in the work pool's base job template (``schedd``), where its jobs are."""
        variables = (self._work_pool.base_job_template if self._work_pool else {}).get("variables", {})
        return open_schedd(variables.get("properties", {}).get("schedd", {}).get("default") or "")

    async def _resume_following(self) -> None:
        """After a restart, follow again the jobs of this pool's unfinished runs, so that a job
        held or removed while no worker watched still ends its run."""
        try:
            schedd = self._pool_schedd()
            ads = await anyio.to_thread.run_sync(
                lambda: schedd.query(
                    flow_run_constraint(),
                    ["ClusterId", FLOW_RUN_ATTRIBUTE, "UserLog"],
                )
            )
        except Exception as exc:  # the worker still starts; new runs will say what is wrong
            self._logger.warning("could not look for jobs submitted before this worker started: %s", exc)
            return
        for ad in ads:
            try:
                flow_run = await self.client.read_flow_run(ad[FLOW_RUN_ATTRIBUTE])
            except Exception:
                continue
            if flow_run.work_pool_name != self._work_pool_name or (flow_run.state and flow_run.state.is_final()):
                continue
            self.get_flow_run_logger(flow_run).info("worker restarted: following HTCondor job %d again", ad["ClusterId"])
            self._runs_task_group.start_soon(self._follow_adopted, flow_run, schedd, int(ad["ClusterId"]), Path(ad["UserLog"]))

    async def _follow_adopted(self, flow_run: "FlowRun", schedd: Schedd, cluster: int, log_path: Path) -> None:
        try:
            await self._follow(flow_run, schedd, cluster, log_path)
        except Exception:  # one lost job must not stop the worker
            self.get_flow_run_logger(flow_run).exception("stopped following HTCondor job %d", cluster)

    async def _follow(self, flow_run: "FlowRun", schedd: Schedd, cluster: int, log_path: Path) -> HTCondorWorkerResult:
        """Read the job's user log until it ends; remove the job if the run is cancelled."""
        import htcondor2

        logger = self.get_flow_run_logger(flow_run)
        events = None
        removing = unreadable = False
        while True:
            if events is None and log_path.exists() and not unreadable:
                events = htcondor2.JobEventLog(str(log_path))
            try:
                batch = await anyio.to_thread.run_sync(lambda: list(events.events(stop_after=0)) if events else [])
            except htcondor2.HTCondorException as exc:
                logger.warning(
                    "cannot read the user log %s (%s); following HTCondor job %d through the schedd instead",
                    log_path, exc, cluster,
                )
                events, batch, unreadable = None, [], True
            for event in batch:
                if event.cluster != cluster:
                    continue
                kind = event.type
                if kind == htcondor2.JobEventType.SUBMIT:
                    logger.info("HTCondor job %d is idle, waiting for an execute node", cluster)
                elif kind == htcondor2.JobEventType.EXECUTE:
                    logger.info("HTCondor job %d is running on %s", cluster, event.get("ExecuteHost", "an execute node"))
                elif kind in (htcondor2.JobEventType.JOB_EVICTED, htcondor2.JobEventType.SHADOW_EXCEPTION):
                    await self._evicted(flow_run, cluster, event.get("Reason", "") or event.get("Message", ""))
                elif kind == htcondor2.JobEventType.JOB_HELD:
                    return await self._held(flow_run, schedd, cluster, _hold_reason(event))
                elif kind == htcondor2.JobEventType.JOB_ABORTED:
                    return await self._removed(flow_run, cluster, event.get("Reason", ""), cancelled_in_prefect=removing)
                elif kind == htcondor2.JobEventType.JOB_TERMINATED:
                    return await self._exited(flow_run, cluster, int(event.get("ReturnValue", -1)), log_path)
            if unreadable:
                ended = await self._ended_in_queue(flow_run, schedd, cluster, log_path)
                if ended is not None:
                    return ended
            current = await self.client.read_flow_run(flow_run.id)
            if not removing and current.state and current.state.type == StateType.CANCELLING:
                logger.info("cancelled in Prefect: removing HTCondor job %d", cluster)
                await self._remove(schedd, cluster, "cancelled in Prefect")
                removing = True
            await anyio.sleep(float(SETTINGS["poll_seconds"]))

    async def _ended_in_queue(self, flow_run: "FlowRun", schedd: Schedd, cluster: int, log_path: Path):
        """The same outcomes as the user log's, read from the job's ad; None while it runs."""
        projection = ["JobStatus", "ExitCode", "HoldReason", "HoldReasonCode"]
        ads = await anyio.to_thread.run_sync(lambda: schedd.query(f"ClusterId == {cluster}", projection))
        if not ads:  # it has left the queue: the schedd's history says how it ended
            ads = await anyio.to_thread.run_sync(lambda: list(schedd.history(f"ClusterId == {cluster}", projection, match=1)))
        if not ads:  # not even in the history: the engine in the job reported how it ended
            current = await self.client.read_flow_run(flow_run.id)
            code = 0 if current.state and current.state.is_completed() else 1
            return await self._exited(flow_run, cluster, code, log_path)
        ad = ads[0]
        status = int(ad.get("JobStatus", 0))
        if status == 5:
            return await self._held(flow_run, schedd, cluster, _hold_reason(ad))
        if status == 3:
            return await self._removed(flow_run, cluster, "")
        if status == 4:
            return await self._exited(flow_run, cluster, int(ad.get("ExitCode", 1)), log_path)
        return None

    async def _held(self, flow_run: "FlowRun", schedd: Schedd, cluster: int, reason: str) -> HTCondorWorkerResult:
        self.get_flow_run_logger(flow_run).error("HTCondor job %d was held: %s; removing it", cluster, reason)
        await self._remove(schedd, cluster, "held: the batch starts the exposure again")
        await self._propose_crashed_state(flow_run, f"HTCondor job {cluster} was held: {reason}")
        return HTCondorWorkerResult(status_code=HELD_EXIT_CODE, identifier=str(cluster))

    async def _evicted(self, flow_run: "FlowRun", cluster: int, reason: str) -> None:
        """The job left its execute node: HTCondor runs it again, or a hold or removal follows."""
        logger = self.get_flow_run_logger(flow_run)
        why = f" ({reason})" if reason else ""
        current = await self.client.read_flow_run(flow_run.id)
        if current.state and (current.state.is_final() or current.state.type == StateType.CANCELLING):
            # it had finished, or is being cancelled: the 004 changes nothing, a 009 or 005 follows
            logger.warning("HTCondor job %d was evicted%s; its run is %s", cluster, why, current.state.type.value)
            return
        logger.warning("HTCondor job %d was evicted from its execute node%s; waiting for HTCondor to run it again", cluster, why)
        await self.client.set_flow_run_state(
            flow_run.id, Pending(message=f"HTCondor job {cluster} evicted{why}"), force=True
        )

    async def _removed(
        self, flow_run: "FlowRun", cluster: int, reason: str, cancelled_in_prefect: bool = False
    ) -> HTCondorWorkerResult:
        logger = self.get_flow_run_logger(flow_run)
        logger.info("HTCondor job %d was removed%s", cluster, f" ({reason})" if reason else "")
        current = await self.client.read_flow_run(flow_run.id)
        if current.state and current.state.is_final() and not current.state.is_cancelled():
            return HTCondorWorkerResult(status_code=0, identifier=str(cluster))  # it ended first; that stands
        message = (
            f"cancelled in Prefect: HTCondor job {cluster} was removed" if cancelled_in_prefect
            else f"HTCondor job {cluster} was removed" + (f" ({reason})" if reason else "")
        )
        await self._mark_flow_run_as_cancelled(current, state_updates={"message": message})
        return HTCondorWorkerResult(status_code=0, identifier=str(cluster))

    async def _exited(self, flow_run: "FlowRun", cluster: int, code: int, log_path: Path) -> HTCondorWorkerResult:
        current = await self.client.read_flow_run(flow_run.id)
        if current.state and current.state.type == StateType.CANCELLING:
            # the cancellation crossed the job's own exit: the run ends as the user asked, now
            await self._mark_flow_run_as_cancelled(
                current,
                state_updates={"message": f"cancelled in Prefect as HTCondor job {cluster} finished (exit code {code})"},
            )
            return HTCondorWorkerResult(status_code=0, identifier=str(cluster))
        if code != 0:
            await self._fail(flow_run, cluster, code, log_path.with_name("job.err"))
        return HTCondorWorkerResult(status_code=code, identifier=str(cluster))

    async def _fail(self, flow_run: "FlowRun", cluster: int, code: int, error_file: Path) -> None:
        """A job that exits non-zero without the engine reporting it ends Failed, saying why."""
        current = await self.client.read_flow_run(flow_run.id)
        if current.state and current.state.is_final():
            return
        tail = error_file.read_text(errors="replace").strip().splitlines()[-3:] if error_file.exists() else []
        message = f"HTCondor job {cluster} exited with {code}" + (": " + " | ".join(tail) if tail else "")
        await self.client.set_flow_run_state(flow_run.id, Failed(message=message), force=True)

    async def _remove(self, schedd: Schedd, cluster: int, reason: str) -> int:
        import htcondor2

        result = await anyio.to_thread.run_sync(
            lambda: schedd.act(htcondor2.JobAction.Remove, f"ClusterId == {cluster}", reason=reason)
        )
        return int(result.get("TotalSuccess", 0))

    async def _scan_for_runs_without_jobs(self) -> None:
        """Every ``pending_scan_seconds``: end Crashed the runs of this pool that have been Pending for
        ``pending_without_job_seconds`` with no job carrying their flow run id, in the queue or in the
        schedd's history.  Their worker claimed them and went away before submitting; no worker
        will ever take a Pending run again, and the batch waiting for them starts them anew once
        they are Crashed.  Any worker of the pool does this, so it works when that worker never
        comes back."""
        while True:
            await anyio.sleep(float(SETTINGS["pending_scan_seconds"]))
            try:
                await self._crash_runs_without_jobs(timedelta(seconds=float(SETTINGS["pending_without_job_seconds"])))
            except Exception as exc:  # the next scan tries again
                self._logger.warning("could not look for pending runs without an HTCondor job: %s", exc)

    async def _crash_runs_without_jobs(self, older_than: timedelta) -> None:
        now = datetime.now(timezone.utc)
        stale = [run for run in await self._pending_runs() if run.state and now - run.state.timestamp > older_than]
        if not stale:
            return
        schedd = self._pool_schedd()
        queued = await anyio.to_thread.run_sync(lambda: schedd.query(flow_run_constraint(), [FLOW_RUN_ATTRIBUTE]))
        in_queue = {ad[FLOW_RUN_ATTRIBUTE] for ad in queued}  # idle (waiting for a VM) or running: not ours to touch
        for run in stale:
            if str(run.id) in in_queue:
                continue
            ended = await anyio.to_thread.run_sync(lambda: list(schedd.history(flow_run_jobs(str(run.id)), ["ClusterId"], match=1)))
            if ended:
                continue  # it had a job, which ended: whoever follows it says how
            seconds = (now - run.state.timestamp).total_seconds()
            waited = f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"
            claimed_by = run.labels.get("prefect.worker.name", "a worker")
            message = f"pending for {waited} with no HTCondor job: {claimed_by} claimed it and went away before submitting one"
            self.get_flow_run_logger(run).warning("%s; marking it crashed so that it can be run again", message)
            await self._propose_crashed_state(run, message)

    async def _pending_runs(self) -> list["FlowRun"]:
        """Every Pending run of this pool (a pool waiting for VMs may have thousands)."""
        runs, page = [], 200
        while True:
            batch = await self.client.read_flow_runs(
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.PENDING]))),
                work_pool_filter=WorkPoolFilter(name=WorkPoolFilterName(any_=[self._work_pool_name])),
                limit=page, offset=len(runs),
            )
            runs += batch
            if len(batch) < page:
                return runs

    async def kill_infrastructure(
        self, infrastructure_pid: str, configuration: HTCondorJobConfiguration, grace_seconds: int = 30
    ) -> None:
        """Cancelling a run that has not started yet removes its job."""
        schedd = open_schedd(configuration.schedd)
        if not await self._remove(schedd, int(infrastructure_pid), "cancelled in Prefect"):
            raise InfrastructureNotFound(f"HTCondor job {infrastructure_pid} is not in the queue")


def _hold_reason(record: Any) -> str:
    """Why a job was held, from its held event or its job ad (both have the same keys)."""
    return f"{record.get('HoldReason', 'no reason given')} (code {record.get('HoldReasonCode', '?')})"


def _quoted(value: str) -> str:
    """A ClassAd string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _environment(values: dict[str, str | None]) -> str:
    """The submit language's ``environment = "A=1 B='two words'"``."""
    items = []
    for name, value in sorted(values.items()):
        if value is None:
            continue
        text = str(value).replace("'", "''").replace('"', '""')
        items.append(f"{name}='{text}'" if any(c in text for c in " \t'") else f"{name}={text}")
    return '"' + " ".join(items) + '"'


if __name__ == "__main__":  # pragma: no cover - a hint for someone who runs the module
    sys.exit("start this worker with: prefect worker start --pool <pool> --type htcondor")
