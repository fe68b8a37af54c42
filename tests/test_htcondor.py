"""The htcondor work pool: submit descriptions built with the real htcondor2.Submit, and flow runs
that run as jobs of the fake schedd, followed through their genuine user logs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import htcondor2
import pytest
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.states import Cancelling

from canfar_catalogue.boundaries.errors import PermanentError, PermissionDenied
from canfar_catalogue.flows.batch import catalogue_batch
from canfar_catalogue.worker.htcondor import HTCondorJobConfiguration

from .conftest import BIN, _SESSION, deploy_exposures_on, parent_pid, stop, wait_for_first_question
from .fake_schedd import COMPLETED, RUNNING, FakePool, FakeSchedd

ROOT = Path(__file__).parents[1]


def _configuration(tmp_path: Path, **fields) -> HTCondorJobConfiguration:
    configuration = HTCondorJobConfiguration(log_directory=tmp_path / "logs", **fields)
    flow_run = type("FlowRun", (), {"id": uuid.uuid4(), "name": "clever-heron", "model_dump": lambda self, **_: {}})()
    configuration.prepare_for_flow_run(flow_run)
    configuration._flow_run_id = str(flow_run.id)
    return configuration


# -- submit descriptions ------------------------------------------------------------------------
def test_the_submit_description_asks_for_the_image_flavour_and_resources_like_canfar_submit(tmp_path):
    configuration = _configuration(
        tmp_path, image="canfar-catalogue-0.1.0", project="megapipe", flavour="c2-7.5gb-30",
        request_cpus=2, request_memory="7 GB", request_disk="20 GB", submit_commands={"+JobPriority": "5"},
    )
    description = configuration.submit_description(configuration._flow_run_id)
    parsed = htcondor2.Submit(str(description))  # what condor_submit would read back
    assert parsed["MY.VMType"] == '"megapipe:canfar-catalogue-0.1.0"'
    assert parsed["MY.VMInstanceType"] == '"c2-7.5gb-30"'
    assert "VMType" in parsed["requirements"] and "megapipe:canfar-catalogue-0.1.0" in parsed["requirements"]
    assert (parsed["request_cpus"], parsed["request_memory"], parsed["request_disk"]) == ("2", "7 GB", "20 GB")
    assert parsed["MY.CanfarFlowRunId"] == f'"{configuration._flow_run_id}"'
    assert parsed["MY.JobPriority"] == "5"
    assert parsed["arguments"] == "-m canfar_catalogue.worker.job"
    run = tmp_path / "logs" / configuration._flow_run_id
    assert parsed["log"] == str(run / "job.log") and parsed["error"] == str(run / "job.err")
    environment = parsed["environment"]
    assert f"PREFECT__FLOW_RUN_ID={configuration._flow_run_id}" in environment
    assert "PREFECT_API_URL=" in environment and "CANFAR_CATALOGUE_EXPECTED_VERSION=" in environment


def test_secrets_travel_as_owner_only_files_never_in_the_environment(tmp_path):
    from prefect.settings import PREFECT_API_KEY, temporary_settings

    token = tmp_path / "cadc-token"
    token.write_text("marker-token")
    token.chmod(0o644)
    proxy = tmp_path / "proxy.pem"
    from .cadc_emulator import CadcEmulator

    CadcEmulator(tmp_path / "ca").issue_proxy(proxy, days=5)
    with temporary_settings({PREFECT_API_KEY: "pnu_marker_key"}):
        configuration = _configuration(tmp_path, secret_files=[token], x509_proxy=proxy)
    with pytest.raises(PermissionDenied, match=f"chmod 600 {token}"):
        configuration.check_credentials()
    token.chmod(0o600)
    configuration.check_credentials()
    description = str(configuration.submit_description(configuration._flow_run_id))
    assert "marker" not in description and "pnu_" not in description
    parsed = htcondor2.Submit(description)
    assert parsed["x509userproxy"] == str(proxy)
    key_file = tmp_path / "logs" / configuration._flow_run_id / "PREFECT_API_KEY.secret"
    assert str(key_file) in parsed["transfer_input_files"] and str(token) in parsed["transfer_input_files"]
    assert key_file.read_text() == "pnu_marker_key" and key_file.stat().st_mode & 0o077 == 0

    with pytest.raises(PermissionDenied, match="cadc-get-cert -n"):
        _configuration(tmp_path, x509_proxy=proxy, proxy_min_hours=24 * 6).check_credentials()
    with pytest.raises(PermanentError, match="MY_TOKEN look like secrets.*secret_files"):
        _configuration(tmp_path, env={"MY_TOKEN": "x"})


def test_a_job_on_an_execute_node_with_another_version_fails_at_start_saying_so(tmp_path):
    environment = {**os.environ, "CANFAR_CATALOGUE_EXPECTED_VERSION": "0.0.1", "_CONDOR_SCRATCH_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "canfar_catalogue.worker.job"], env=environment, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 3
    assert "expects 0.0.1" in done.stderr and "worker image" in done.stderr


def test_a_job_reads_its_runs_state_with_the_api_key_it_was_sent_and_no_prefect(tmp_path):
    """One GET of ``/flow_runs/<id>``, authenticated with the key from the job's ``.secret`` file; no
    Prefect import in the job's own process (every job pays for this read)."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    asked = []

    class Api(BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append((self.path, self.headers.get("Authorization")))
            body = json.dumps({"id": "r", "state": {"type": "COMPLETED", "name": "Completed"}}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    (tmp_path / "PREFECT_API_KEY.secret").write_text("pnu_job_key")
    environment = {**os.environ, "_CONDOR_SCRATCH_DIR": str(tmp_path), "PREFECT__FLOW_RUN_ID": "1234-run",
                   "PREFECT_API_URL": f"http://127.0.0.1:{server.server_address[1]}/api"}
    environment.pop("PREFECT_API_KEY", None)
    probe = "import runpy, sys; runpy.run_module('canfar_catalogue.worker.job', run_name='__main__')"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", probe], env=environment, capture_output=True,
                          text=True, timeout=60)
    server.shutdown()
    assert done.returncode == 0 and "flow run 1234-run is already COMPLETED" in done.stderr
    assert asked == [("/api/flow_runs/1234-run", "Bearer pnu_job_key")]
    imported = [line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "canfar_catalogue.worker" in imported and not [m for m in imported if m.startswith("prefect")]


def test_a_job_uses_the_cores_its_slot_gives_it_not_the_hosts(tmp_path, monkeypatch):
    """HTCondor does not pin a job: its affinity is the whole execute node.  The slot's cores are in the
    machine ad and the thread variables the starter sets, as the fake schedd sets them for its jobs."""
    from canfar_catalogue.science import cores
    from canfar_catalogue.science.pipeline import default_workers

    from .fake_schedd import _provisioned

    host = len(os.sched_getaffinity(0))
    for name in ("BATCH_SYSTEM", "_CONDOR_MACHINE_AD", "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # a user's own setting, outside HTCondor: not ours to obey
    assert default_workers() == host
    for name, value in _provisioned(tmp_path, {"RequestCpus": 1}).items():
        monkeypatch.setenv(name, value)
    assert default_workers() == 1  # a 1-core slot on a larger node
    (tmp_path / ".machine.ad").write_text("Cpus = 64\nMemory = 2048\n")
    assert default_workers() == host  # never more than the process may run on
    monkeypatch.delenv("_CONDOR_MACHINE_AD")
    assert cores.htcondor_cpus(os.environ) == 1  # the thread variables alone, in a job
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert cores.htcondor_cpus(os.environ) is None and default_workers() == host


_ENGINE_TARGET = """
import gc, json, os, sys, threading, time
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # as Prefect's engine has threads by then
from canfar_catalogue.science import pipeline
with pipeline._pool(1) as pool:
    print(json.dumps({"server": pool.submit(os.getppid).result(), "name": __name__,
                      "collecting": gc.isenabled(), "frozen": gc.get_freeze_count()}), flush=True)
    sys.stdin.readline()
"""


def _engine(tmp_path: Path, warm: tuple[str, ...], **environment: str) -> tuple[subprocess.Popen, dict]:
    """``worker/engine.py`` running a stand-in for Prefect's engine that starts CCD workers; what it saw."""
    (tmp_path / "engine_target.py").write_text(_ENGINE_TARGET)
    probe = f"from canfar_catalogue.worker import engine; engine.main('engine_target', {warm!r})"
    outside = {k: v for k, v in os.environ.items() if k not in ("BATCH_SYSTEM", "_CONDOR_MACHINE_AD", "OMP_NUM_THREADS")}
    run = subprocess.Popen([sys.executable, "-c", probe], cwd=tmp_path,
                           env={**outside, "PYTHONPATH": str(tmp_path), **environment},
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return run, json.loads(run.stdout.readline())


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="a CCD worker pool needs two cores to run on")
def test_a_jobs_engine_forks_its_ccd_workers_fork_server_from_itself_after_importing_with_the_collector_paused(tmp_path):
    """No second Python imports the science for the CCD workers, and what the imports made is frozen."""
    run, said = _engine(tmp_path, ("canfar_catalogue.science.pipeline",))
    try:
        server = said["server"]
        assert said["name"] == "__main__" and said["collecting"] and said["frozen"] > 0
        assert parent_pid(server) == run.pid and _cmdline(server) == _cmdline(run.pid)
        assert Path(f"/proc/{server}/comm").read_text().strip() == "ccd-workers"
    finally:
        run.communicate("\n", timeout=60)
    assert run.returncode == 0


def test_a_jobs_engine_in_a_one_core_slot_forks_no_fork_server(tmp_path):
    """Its CCD is measured in the engine's own process; a fork server would sit idle."""
    from .fake_schedd import _provisioned

    run, said = _engine(tmp_path, ("canfar_catalogue.science.pipeline",), **_provisioned(tmp_path, {"RequestCpus": 1}))
    try:
        assert said["name"] == "__main__" and said["frozen"] > 0
        assert _cmdline(said["server"]) != _cmdline(run.pid)  # the stand-in's pool: multiprocessing's own server
    finally:
        run.communicate("\n", timeout=60)
    assert run.returncode == 0


def test_a_jobs_engine_whose_warm_import_fails_runs_all_the_same(tmp_path):
    """The module meets the failure itself, as it would have; the CCD workers' fork server is then multiprocessing's."""
    run, said = _engine(tmp_path, ("canfar_catalogue.no_such_module",))
    try:
        assert said["name"] == "__main__" and said["collecting"]
        assert _cmdline(said["server"]) != _cmdline(run.pid)
    finally:
        run.communicate("\n", timeout=60)
    assert run.returncode == 0


def test_the_cluster_label_is_put_again_after_the_job_only_if_it_was_lost():
    """Each label write is a read-then-write transaction on the server; the one after the job ends is
    only needed when a concurrent update dropped the label."""
    import asyncio
    from types import SimpleNamespace

    from canfar_catalogue.worker.htcondor import HTCondorWorker

    class Server:
        def __init__(self):
            self.labels, self.writes = {"prefect.worker.type": "htcondor"}, 0

        async def update_flow_run_labels(self, flow_run_id, labels):
            self.writes += 1
            self.labels = {**self.labels, **labels}

        async def read_flow_run(self, flow_run_id):
            return SimpleNamespace(labels=dict(self.labels))

    worker = HTCondorWorker.__new__(HTCondorWorker)
    worker._client = server = Server()
    run = SimpleNamespace(id=uuid.uuid4())
    asyncio.run(worker._label(run, 7))
    assert server.labels["htcondor.cluster-id"] == "7" and server.writes == 1
    asyncio.run(worker._label(run, 7, check_first=True))
    assert server.writes == 1  # still there: nothing written
    server.labels = {"prefect.worker.type": "htcondor"}  # a concurrent merge lost it
    asyncio.run(worker._label(run, 7, check_first=True))
    assert server.labels["htcondor.cluster-id"] == "7" and server.writes == 2


# -- flow runs as jobs ----------------------------------------------------------------------------
_JOB_VARIABLES = {
    "python": sys.executable,
    "log_directory": str(_SESSION / "condor-logs"),
    "image": "canfar-catalogue-test",
    "project": "megapipe",
    "flavour": "c2-7.5gb-30",
    "request_cpus": 1,
}


@pytest.fixture(scope="module")
def condor_site(local_site):
    """An htcondor work pool, its worker on the fake schedd, and an exposure deployment on it."""
    env = {**local_site["env"], "PYTHONPATH": str(ROOT)}
    _pool_with_exposures(env, "condor-pool", "condor")
    site = {**local_site, "condor_env": env, "schedd": FakeSchedd(Path(os.environ["FAKE_SCHEDD_STATE"]))}
    site["worker"] = _start_worker(env)
    yield site
    stop(site["worker"])


def _pool_with_exposures(env: dict, pool: str, name: str) -> str:
    """An htcondor work pool, made as a user makes one, and a copy of the exposure deployment on it (``name``)."""
    created = subprocess.run(
        [str(BIN / "prefect"), "work-pool", "create", pool, "--type", "htcondor", "--overwrite"],
        env=env, capture_output=True, text=True,
    )
    assert created.returncode == 0, created.stdout + created.stderr
    job_variables = {**_JOB_VARIABLES, "env": {"CANFAR_CATALOGUE_SETTINGS": os.environ["CANFAR_CATALOGUE_SETTINGS"]}}
    return deploy_exposures_on(pool, name, job_variables)


def _start_worker(env: dict, pool: str = "condor-pool") -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", pool, "--type", "htcondor"],
        env=env, stdout=open(_SESSION / f"{pool}-worker.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )


def _wait_for_run(deployment: str, state_type: str, timeout: float = 120):
    """The first run of ``deployment`` to reach ``state_type``."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, FlowRunFilter, FlowRunFilterState, FlowRunFilterStateType

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[state_type]))),
                deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment.split("/")[1]])),
            )
            if runs:
                return runs[0]
            time.sleep(0.2)
    raise TimeoutError(f"no run of {deployment} became {state_type}")


def _jobs_of(schedd: FakeSchedd, flow_run_id) -> list[dict]:
    return [ad for ad in schedd.ads() if ad.get("CanfarFlowRunId") == str(flow_run_id)]


def _wait_for_job(schedd: FakeSchedd, flow_run_id, status: int, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [ad for ad in _jobs_of(schedd, flow_run_id) if ad["JobStatus"] == status]
        if running:
            return running[-1]
        time.sleep(0.3)
    raise TimeoutError(f"no job of flow run {flow_run_id} reached status {status}: {_jobs_of(schedd, flow_run_id)}")


def _final_state(flow_run_id, timeout: float = 180):
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.is_final():
                return run
            time.sleep(0.5)
    raise TimeoutError(f"flow run {flow_run_id} did not finish: {run.state}")


def _start_exposure(observation_id: str, destination: str):
    return run_deployment(
        "catalogue-exposure/condor", parameters={"observation_id": observation_id, "destination": destination}, timeout=0
    )


def _batch(site, observation_id: str, tmp_path, deployment: str = "catalogue-exposure/condor") -> list[dict]:
    return catalogue_batch(ids=[observation_id], destination=f"file://{tmp_path}/out", archive=site["archive"],
                           exposure_deployment=deployment)


def _act_on_first_running_job(schedd: FakeSchedd, action):
    """In the background: ``action(cluster)`` on the first job that starts running from now on, once
    its flow run is Running; the future's result is the job's ad as it was then.

    The job's processes are frozen (SIGSTOP) while the action is taken, so that a small exposure
    cannot finish in between: the signals the action sends land when they are thawed."""
    from concurrent.futures import ThreadPoolExecutor

    seen = {ad["ClusterId"] for ad in schedd.ads()}

    def act() -> dict:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            for ad in schedd.ads():
                if ad["ClusterId"] not in seen and ad["JobStatus"] == RUNNING and ad.get("JobPid"):
                    _wait_for_state(ad["CanfarFlowRunId"], "RUNNING")
                    with _frozen(ad["JobPid"]):
                        action(ad["ClusterId"])
                    return ad
            time.sleep(0.1)
        raise TimeoutError("no job started running")

    return ThreadPoolExecutor(1).submit(act)


def _next_job(schedd: FakeSchedd, seen: set[int], timeout: float = 180) -> dict:
    """The first job not in ``seen`` whose process has started."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = next((ad for ad in schedd.ads() if ad["ClusterId"] not in seen and ad.get("JobPid")), None)
        if job:
            return job
        time.sleep(0.05)
    raise TimeoutError("no new job started")


@contextlib.contextmanager
def _frozen(session: int):
    """Every process of a job (its session) stopped, then continued."""
    def signal_all(sig):
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                if int(stat.read_text().rsplit(")", 1)[1].split()[3]) == session:
                    os.kill(int(stat.parent.name), sig)
            except (OSError, IndexError):
                pass

    signal_all(signal.SIGSTOP)
    try:
        yield
    finally:
        signal_all(signal.SIGCONT)


def _wait_for_state(flow_run_id, state_type: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            run = client.read_flow_run(flow_run_id)
            if run.state and run.state.type.value == state_type:
                return
            time.sleep(0.05)
    raise TimeoutError(f"flow run {flow_run_id} never became {state_type}")


def _state_types(flow_run_id) -> list[str]:
    """The run's states, oldest first."""
    with get_client(sync_client=True) as client:
        states = client.read_flow_run_states(flow_run_id)
    return [s.type.value for s in sorted(states, key=lambda s: s.timestamp)]


def _runs_named(observation_id: str) -> list:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(like_=observation_id)))


def test_a_batch_runs_each_exposure_as_an_htcondor_job(condor_site, tmp_path):
    destination = f"file://{tmp_path}/out"
    results = catalogue_batch(
        ids=["1056213p", "1056215p"], destination=destination, archive=condor_site["archive"],
        exposure_deployment="catalogue-exposure/condor",
    )
    assert {r["id"]: r["status"] for r in results} == {"1056213p": "completed", "1056215p": "completed"}
    for result in results:
        assert (tmp_path / "out" / f"{result['id']}.cat").stat().st_size > 1000
        jobs = _jobs_of(condor_site["schedd"], result["flow_run"])
        assert len(jobs) == 1
        assert condor_site["schedd"].wait_for(jobs[0]["ClusterId"], COMPLETED, timeout=60)["ExitCode"] == 0
        assert jobs[0]["VMType"] == "megapipe:canfar-catalogue-test" and jobs[0]["VMInstanceType"] == "c2-7.5gb-30"
        # the engine reports the run Completed before the worker reads the job's end and labels it again
        deadline = time.monotonic() + 60
        with get_client(sync_client=True) as client:
            while True:
                run = client.read_flow_run(result["flow_run"])
                if run.labels.get("htcondor.cluster-id") or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        assert run.labels.get("htcondor.cluster-id") == str(jobs[0]["ClusterId"]), run.labels
        assert run.infrastructure_pid == str(jobs[0]["ClusterId"])


def test_the_worker_asks_for_a_new_run_when_the_server_announces_it_not_only_on_its_timer(condor_site, tmp_path):
    """A worker whose timer asks every 10 minutes still submits a run created after its first question
    within seconds: the server's announcement of the run (its Scheduled event, on the pool) made it ask."""
    deployment = _pool_with_exposures(condor_site["condor_env"], "condor-announced", "condor-announced")
    worker = _start_worker({**condor_site["condor_env"], "PREFECT_WORKER_QUERY_SECONDS": "600"}, "condor-announced")
    try:
        wait_for_first_question("condor-announced")  # the worker's first question, at its start
        time.sleep(2)  # well after it: the next question on the timer is 10 minutes away
        run = run_deployment(deployment, parameters={"observation_id": "1056216p", "destination": f"file://{tmp_path}/out"},
                             timeout=0)
        job = _wait_for_job(condor_site["schedd"], run.id, RUNNING, timeout=60)
        assert _final_state(run.id).state.type.value == "COMPLETED"
        assert condor_site["schedd"].wait_for(job["ClusterId"], COMPLETED, timeout=60)["ExitCode"] == 0
    finally:
        stop(worker)


@pytest.mark.fault('execution', 'HTCondor job held (SIGTERM, 004 then 012)',
                   'run Crashed once, with the hold reason; job removed; the batch runs the exposure again once')
def test_a_held_job_crashes_its_run_and_the_batch_starts_the_exposure_again(condor_site, tmp_path, record_property):
    schedd = condor_site["schedd"]
    held = _act_on_first_running_job(
        schedd, lambda cluster: schedd.hold(cluster, "Transfer input files failure: missing input file", code=13))
    results = _batch(condor_site, "1056216p", tmp_path)
    first = held.result()
    states = _state_types(first["CanfarFlowRunId"])
    record_property("did", f"held run: {' > '.join(states)}; batch row {results[0]['status']} after {results[0]['runs']} runs")
    assert results[0]["status"] == "completed" and results[0]["runs"] == 2
    crashed = _final_state(first["CanfarFlowRunId"])
    assert crashed.state.type.value == "CRASHED" and "missing input file" in crashed.state.message
    assert states.count("CRASHED") == 1  # never the engine's own report of the SIGTERM
    assert schedd._load(first["ClusterId"])["JobStatus"] == 3  # removed, so only the batch retries it
    log = (Path(_SESSION) / "condor-logs" / first["CanfarFlowRunId"] / "job.log").read_text()
    assert log.index("Job was evicted. Code 13") < log.index("Job was held.") < log.index("Job was aborted.")


@pytest.mark.fault('execution', 'run cancelled in Prefect while its job runs',
                   'job removed; Cancelled by the worker with its own message, never crashed; no catalogue')
def test_cancelling_a_run_removes_its_job(condor_site, tmp_path, record_property):
    run = _start_exposure("1056217p", f"file://{tmp_path}/out")
    job = _wait_for_job(condor_site["schedd"], run.id, RUNNING)
    _wait_for_state(run.id, "RUNNING")
    with _frozen(job["JobPid"]):  # so that the small exposure cannot finish first
        with get_client(sync_client=True) as client:
            client.set_flow_run_state(run.id, Cancelling(), force=True)
        condor_site["schedd"].wait_for(job["ClusterId"], 3, timeout=60)
    ended = _final_state(run.id)
    states = _state_types(run.id)
    record_property("did", f"{' > '.join(states)}: {ended.state.message}")
    assert ended.state.type.value == "CANCELLED" and "CRASHED" not in states
    assert ended.state.message == f"cancelled in Prefect: HTCondor job {job['ClusterId']} was removed"
    assert not (tmp_path / "out" / "1056217p.cat").exists()


@pytest.mark.fault('execution', 'cancel in Prefect crossing the job\'s own exit (005 then 009)',
                   'Cancelled at once by the worker, not by the server\'s timeout; the stored catalogue counts as done')
def test_a_cancel_that_crosses_the_jobs_own_exit_ends_at_once_and_keeps_the_catalogue(condor_site, tmp_path, record_property):
    from concurrent.futures import ThreadPoolExecutor

    schedd, record = condor_site["schedd"], tmp_path / "out" / "1056215p.provenance.json"
    seen = {ad["ClusterId"] for ad in schedd.ads()}

    def cancel_once_the_catalogue_is_stored() -> dict:
        deadline = time.monotonic() + 180
        job = _next_job(schedd, seen)
        schedd.race_removal_with_exit(job["ClusterId"])
        while not record.exists() and time.monotonic() < deadline:
            time.sleep(0.002)
        with _frozen(job["JobPid"]):  # stored, and the engine not yet done: the user cancels now
            with get_client(sync_client=True) as client:
                client.set_flow_run_state(job["CanfarFlowRunId"], Cancelling(), force=True)
            while schedd._load(job["ClusterId"])["JobStatus"] != 3:
                time.sleep(0.1)
        return job

    cancelled = ThreadPoolExecutor(1).submit(cancel_once_the_catalogue_is_stored)
    results = _batch(condor_site, "1056215p", tmp_path)
    job = cancelled.result()
    run = _final_state(job["CanfarFlowRunId"])
    record_property("did", f"{run.state.type.value}: {run.state.message}; batch row {results[0]['status']}: {results[0]['message']}")
    assert run.state.type.value == "CANCELLED"
    assert run.state.message.startswith(f"cancelled in Prefect as HTCondor job {job['ClusterId']} finished")
    assert results[0]["status"] == "completed" and results[0]["message"] == "cancelled after its catalogue was stored"
    assert results[0]["runs"] == 1 and results[0]["flow_run"] == job["CanfarFlowRunId"]
    log = (Path(_SESSION) / "condor-logs" / job["CanfarFlowRunId"] / "job.log").read_text()
    assert log.index("Job terminated.") < log.index("Job was aborted.") and "Job was evicted" not in log


@pytest.mark.fault('execution', 'HTCondor job vacated (SIGTERM, then run again)',
                   'pending while HTCondor runs the job again, never crashed; one run, one job, completed once')
def test_a_vacated_job_runs_again_and_its_exposure_is_catalogued_once(condor_site, tmp_path, record_property):
    schedd = condor_site["schedd"]
    vacated = _act_on_first_running_job(schedd, schedd.vacate)
    results = _batch(condor_site, "1056213p", tmp_path)
    job = vacated.result()
    states = _state_types(job["CanfarFlowRunId"])
    record_property("did", f"batch row {results[0]['status']} after {results[0]['runs']} run; run states {' > '.join(states)}")
    assert results[0]["status"] == "completed" and results[0]["runs"] == 1  # the batch never started it again
    assert "CRASHED" not in states and states[-1] == "COMPLETED" and states.count("COMPLETED") == 1
    ad = schedd.wait_for(job["ClusterId"], COMPLETED, timeout=60)
    assert ad["Runs"] == 2 and ad["ExitCode"] == 0
    assert len(_jobs_of(schedd, job["CanfarFlowRunId"])) == 1
    log = (Path(_SESSION) / "condor-logs" / job["CanfarFlowRunId"] / "job.log").read_text()
    assert "Job was evicted. Code 1022" in log and log.count("Job executing") == 2
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    def eviction_seen() -> bool:
        with get_client(sync_client=True) as client:
            pending = [s for s in client.read_flow_run_states(job["CanfarFlowRunId"]) if s.type.value == "PENDING"]
            logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[job["CanfarFlowRunId"]])))
        return any("evicted (Job vacated by schedd)" in (s.message or "") for s in pending) or any(
            f"HTCondor job {job['ClusterId']} was evicted (Job vacated by schedd)" in log.message for log in logs)

    # The worker reads the 004 at its next look at the user log.  When the job has run again and finished by
    # then (the fake runs a vacated job again at once; a job of 1 CCD takes 3 s), the run is already Completed
    # and stays so: the eviction is then in the run's log only, which the worker sends in batches (every 2 s).
    deadline = time.monotonic() + 20
    while not eviction_seen() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert eviction_seen()


@pytest.mark.fault('execution', 'HTCondor job vacated after its run completed, before the job exited (force=true)',
                   'the restarted job leaves the finished run alone: one Running state, one execution, one store')
def test_a_job_vacated_after_its_run_completed_does_not_run_it_again(condor_site, tmp_path, record_property):
    """On a real pool a vacate that lands between the run's Completed state and the job's exit starts the
    job again (NumJobStarts 2), and Prefect's engine would execute the finished run once more.  Here the
    job's own process (not its engine) is frozen, so the engine completes the run and exits while the job
    cannot: the vacate lands in that window, every time."""
    from concurrent.futures import ThreadPoolExecutor

    schedd = condor_site["schedd"]
    record = tmp_path / "out" / "1056216p.provenance.json"
    seen = {ad["ClusterId"] for ad in schedd.ads()}

    def vacate_once_completed() -> tuple[dict, str]:
        job = _next_job(schedd, seen)
        _wait_for_state(job["CanfarFlowRunId"], "RUNNING")  # the engine has started
        os.kill(job["JobPid"], signal.SIGSTOP)  # the job's own process only: its engine goes on
        try:
            _wait_for_state(job["CanfarFlowRunId"], "COMPLETED")
            stored = record.read_text()
            schedd.vacate(job["ClusterId"])
        finally:
            os.kill(job["JobPid"], signal.SIGCONT)
        return job, stored

    vacating = ThreadPoolExecutor(1).submit(vacate_once_completed)
    results = catalogue_batch(ids=["1056216p"], destination=f"file://{tmp_path}/out", archive=condor_site["archive"],
                              exposure_deployment="catalogue-exposure/condor", force=True)
    job, stored = vacating.result()
    ad = schedd.wait_for(job["ClusterId"], COMPLETED, timeout=120)
    states = _state_types(job["CanfarFlowRunId"])
    err = (Path(_SESSION) / "condor-logs" / job["CanfarFlowRunId"] / "job.err").read_text()
    log = (Path(_SESSION) / "condor-logs" / job["CanfarFlowRunId"] / "job.log").read_text()
    record_property("did", f"job started {ad['Runs']} times, exit {ad['ExitCode']}; run states {' > '.join(states)}; "
                           f"record unchanged: {record.read_text() == stored}")
    assert results[0]["status"] == "completed" and results[0]["runs"] == 1
    assert "Job was evicted. Code 1022" in log and log.count("Job executing") == 2  # HTCondor did run it again
    assert ad["Runs"] == 2 and ad["ExitCode"] == 0
    assert f"flow run {job['CanfarFlowRunId']} is already COMPLETED" in err
    assert states.count("RUNNING") == 1 and states[-1] == "COMPLETED" and states.count("COMPLETED") == 1
    assert record.read_text() == stored  # stored once: a second store would write a new record
    assert len(_jobs_of(schedd, job["CanfarFlowRunId"])) == 1


@pytest.mark.fault('execution', 'HTCondor job removed by the user (condor_rm)',
                   'cancelled, never passing through crashed; the batch does not start it again')
def test_a_job_removed_with_condor_rm_cancels_its_run_and_nothing_else(condor_site, tmp_path, record_property):
    import htcondor2

    schedd = condor_site["schedd"]
    removed = _act_on_first_running_job(
        schedd, lambda cluster: schedd.act(htcondor2.JobAction.Remove, f"ClusterId == {cluster}"))
    with pytest.raises(Exception, match="1 of 1 exposures have no catalogue"):
        _batch(condor_site, "1056215p", tmp_path)
    job = removed.result()
    run = _final_state(job["CanfarFlowRunId"])
    states = _state_types(job["CanfarFlowRunId"])
    record_property("did", f"run states {' > '.join(states)}: {run.state.message}")
    assert states[-1] == "CANCELLED" and "CRASHED" not in states
    assert run.state.message == f"HTCondor job {job['ClusterId']} was removed (via condor_rm (by user jdoe))"
    assert len([r for r in _runs_named("1056215p") if str(r.id) != job["CanfarFlowRunId"] and r.created > run.created]) == 0
    log = (Path(_SESSION) / "condor-logs" / job["CanfarFlowRunId"] / "job.log").read_text()
    assert log.index("Job was evicted. Code 1023") < log.index("Job was aborted.")


@pytest.mark.fault('execution', 'worker restarted mid-run', 'the job goes on; no second job; completed')
def test_a_worker_restart_does_not_submit_a_job_twice(condor_site, tmp_path, record_property):
    record_property("did", 'one job, completed')
    run = _start_exposure("1056215p", f"file://{tmp_path}/out")
    _wait_for_job(condor_site["schedd"], run.id, RUNNING)
    stop(condor_site["worker"])
    condor_site["worker"] = _start_worker(condor_site["condor_env"])
    assert _final_state(run.id).state.type.value == "COMPLETED"
    assert len(_jobs_of(condor_site["schedd"], run.id)) == 1


# -- a pool whose jobs go to a named schedd -------------------------------------------------------
SCAN = {"pending_scan_seconds": 1, "pending_without_job_seconds": 6}


@pytest.fixture(scope="module")
def named_site(condor_site):
    """A second htcondor pool whose base job template names the schedd ``named``, and its worker,
    which looks for runs left Pending without a job every second and crashes them after 6 s."""
    from prefect.client.schemas.actions import WorkPoolCreate

    from canfar_catalogue.worker.htcondor import HTCondorWorker

    template = HTCondorWorker.get_default_base_job_template()
    template["variables"]["properties"]["schedd"]["default"] = "named"
    with get_client(sync_client=True) as client:
        client.create_work_pool(WorkPoolCreate(name="condor-named", type="htcondor", base_job_template=template),
                                overwrite=True)
    settings = _SESSION / "named-settings.toml"
    text = Path(os.environ["CANFAR_CATALOGUE_SETTINGS"]).read_text()
    settings.write_text(text.replace("[htcondor]\n", "[htcondor]\n" + "".join(f"{k} = {v}\n" for k, v in SCAN.items())))
    env = {**condor_site["condor_env"], "CANFAR_CATALOGUE_SETTINGS": str(settings)}
    job_variables = {**_JOB_VARIABLES, "env": {"CANFAR_CATALOGUE_SETTINGS": str(settings)}}
    site = {**condor_site, "named_env": env, "deployment": deploy_exposures_on("condor-named", "condor-named", job_variables),
            "named": FakeSchedd(Path(os.environ["FAKE_SCHEDD_STATE"]) / "schedds" / "named")}
    site["named_worker"] = _start_worker(env, "condor-named")
    yield site
    stop(site["named_worker"])


@pytest.mark.fault('execution', 'job held while no worker watched (named schedd)',
                   'the restarted worker finds the job on the pool\'s schedd and crashes the run with the reason')
def test_a_job_held_while_no_worker_watched_still_crashes_its_run(named_site, tmp_path, record_property):
    schedd = named_site["named"]
    run = run_deployment(named_site["deployment"], timeout=0,
                         parameters={"observation_id": "1056216p", "destination": f"file://{tmp_path}/out"})
    job = _wait_for_job(schedd, run.id, RUNNING)
    _wait_for_state(run.id, "RUNNING")
    with _frozen(job["JobPid"]):
        stop(named_site["named_worker"])
        schedd.hold(job["ClusterId"], "Job has gone over memory limit of 7168 megabytes", code=34)
    named_site["named_worker"] = _start_worker(named_site["named_env"], "condor-named")
    ended = _final_state(run.id)
    record_property("did", f"{ended.state.type.value}: {ended.state.message}")
    assert ended.state.type.value == "CRASHED" and "memory limit" in ended.state.message
    assert schedd.wait_for(job["ClusterId"], 3, timeout=60)["JobStatus"] == 3
    assert _jobs_of(named_site["schedd"], run.id) == []  # nothing went to the local schedd


@pytest.mark.fault('execution', 'worker went away between claiming a run and submitting its job',
                   'the run ends Crashed, saying so, within the scan time; the batch starts the exposure again')
def test_a_run_whose_worker_went_away_before_submitting_is_crashed_and_run_again(named_site, tmp_path, record_property):
    from concurrent.futures import ThreadPoolExecutor

    schedd = named_site["named"]
    stop(named_site["named_worker"])
    schedd.hang_submissions()
    doomed = _start_worker(named_site["named_env"], "condor-named")
    batch = ThreadPoolExecutor(1).submit(_batch, named_site, "1056217p", tmp_path, named_site["deployment"])
    try:
        claimed = _wait_for_run(named_site["deployment"], "PENDING")
        time.sleep(2)  # the worker is inside its submit call
        os.killpg(doomed.pid, signal.SIGKILL)
    finally:
        schedd.hang_submissions(False)
        named_site["named_worker"] = _start_worker(named_site["named_env"], "condor-named")
    results = batch.result(timeout=300)
    crashed = _final_state(claimed.id)
    record_property("did", f"{crashed.state.type.value}: {crashed.state.message}; batch row {results[0]['status']} "
                           f"after {results[0]['runs']} runs")
    assert crashed.state.type.value == "CRASHED" and "no HTCondor job" in crashed.state.message
    assert results[0]["status"] == "completed" and results[0]["runs"] == 2
    assert _jobs_of(schedd, claimed.id) == []


@pytest.mark.fault('execution', 'job idle in the queue for longer than the Pending scan\'s limit',
                   'the run stays Pending (never crashed) and completes once the job runs')
def test_a_run_whose_job_waits_idle_in_the_queue_is_left_alone(named_site, tmp_path, record_property):
    schedd = named_site["named"]
    (schedd.state / "matchmaking").touch()  # no execute node: the job waits
    try:
        run = run_deployment(named_site["deployment"], timeout=0,
                             parameters={"observation_id": "1056213p", "destination": f"file://{tmp_path}/out"})
        job = _wait_for_job(schedd, run.id, 1)
        time.sleep(SCAN["pending_without_job_seconds"] + 4 * SCAN["pending_scan_seconds"])
        waited = _state_types(run.id)
        FakePool(schedd.state).join("idle-test-vm", job["VMType"], cpus=2)
        assert schedd.negotiate() == 1
    finally:
        (schedd.state / "matchmaking").unlink()
    ended = _final_state(run.id)
    record_property("did", f"{' > '.join(waited)} while idle, then {ended.state.type.value}")
    assert waited[-1] == "PENDING" and "CRASHED" not in waited
    assert ended.state.type.value == "COMPLETED"


# -- the tutorial's submit file ---------------------------------------------------------------------
TUTORIAL_SUB = """\
executable = do_catalogue.bash

output = do_catalogue-$(arguments).out
error  = do_catalogue-$(arguments).err
log    = do_catalogue-$(arguments).log

queue arguments from (
  1056215p
  1056216p
  1056217p
  1056218p
)
"""


def _submit(*arguments: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "canfar-catalogue"), "submit", *arguments], capture_output=True, text=True, timeout=120,
        env=env or os.environ,
    )


def test_the_tutorials_submit_file_imports_as_it_is(tmp_path):
    sub = tmp_path / "do_catalogue.sub"
    sub.write_text(TUTORIAL_SUB)
    done = _submit(str(sub), "catalogue-software-2023-08-21", "c2-7.5gb-30", "--destination", "vos:me/cats",
                   "--project", "megapipe", "--dry-run")
    assert done.returncode == 0, done.stderr
    parameters = json.loads(done.stdout)
    assert parameters["ids"] == ["1056215p", "1056216p", "1056217p", "1056218p"]
    assert parameters["job_variables"] == {"image": "catalogue-software-2023-08-21", "flavour": "c2-7.5gb-30", "project": "megapipe"}
    assert "executable do_catalogue.bash is replaced" in done.stderr and "per-job files" in done.stderr


@pytest.mark.parametrize(
    "text, message",
    [
        ("executable = x\nnotify_user = me@example.org\nrequest_cpus = 4\nqueue id from (\n1056215p\n)\n",
         "not carried over.*notify_user"),
        ("executable = x\nqueue arguments from (\n1056215p\n../etc\n)\n", "'../etc' is not a CFHT ID"),
        ("executable = x\nqueue\n", "queues no observation IDs.*queue arguments from"),
    ],
)
def test_a_submit_file_that_cannot_be_carried_over_is_named(tmp_path, text, message):
    import re

    sub = tmp_path / "job.sub"
    sub.write_text(text)
    done = _submit(str(sub), "img", "c2-7.5gb-30", "--destination", "vos:me/cats", "--dry-run")
    assert re.search(message, done.stderr, re.S), done.stderr
    assert "Traceback" not in done.stderr
    if "notify_user" in message:
        assert done.returncode == 0 and json.loads(done.stdout)["job_variables"]["request_cpus"] == 4
    else:
        assert done.returncode == 2 and done.stdout == ""


def test_submit_starts_the_batch_deployment(local_site, tmp_path):
    sub = tmp_path / "do_catalogue.sub"
    sub.write_text("executable = do_catalogue.bash\nqueue arguments from (\n  1056213p\n)\n")
    done = _submit(str(sub), "img", "c2-7.5gb-30", "--destination", f"file://{tmp_path}/out",
                   "--archive", local_site["archive"], env=local_site["env"])
    assert done.returncode == 0, done.stderr
    run = _final_state(done.stdout.strip(), timeout=240)
    assert run.state.type.value == "COMPLETED", run.state.message
    assert run.parameters["job_variables"]["image"] == "img"
    assert (tmp_path / "out" / "1056213p.cat").exists()


def test_the_worker_image_installs_the_version_the_deployments_expect():
    import tomllib

    import yaml

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    image = yaml.safe_load((ROOT / "deployments" / "worker-cloud-init.yaml").read_text())
    installs = [command for command in image["runcmd"] if "pip install" in command and "canfar-catalogue==" in command]
    assert installs == [f'/opt/canfar-catalogue/bin/pip install "canfar-catalogue=={version}"']
    assert "/opt/canfar-catalogue/bin/python" == HTCondorJobConfiguration().python


@pytest.mark.fault('execution', 'schedd unreachable', 'a clear error naming CONDOR_CONFIG; retried by the batch')
def test_an_unreachable_schedd_is_a_clear_transient_error(record_property):
    record_property("did", 'TransientError: cannot reach the local schedd ... check CONDOR_CONFIG')
    from canfar_catalogue.boundaries.errors import TransientError
    from canfar_catalogue.boundaries.schedd import local_schedd

    with pytest.raises(TransientError, match="cannot reach the local schedd.*CONDOR_CONFIG"):
        local_schedd()


def test_a_run_whose_job_was_submitted_before_a_worker_crash_is_adopted_not_submitted_again(condor_site, tmp_path):
    """The worker died after submitting but before the run left Scheduled: the next one follows that job.

    The job is held at once (an input it cannot find), so what the run ends with shows whose job was followed.
    """
    from datetime import datetime, timedelta, timezone

    run = run_deployment(
        "catalogue-exposure/condor", parameters={"observation_id": "1056217p", "destination": f"file://{tmp_path}/out"},
        timeout=0, scheduled_time=datetime.now(timezone.utc) + timedelta(seconds=5),
    )
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(run.id)
        deployment = client.read_deployment(flow_run.deployment_id)
    configuration = HTCondorJobConfiguration(**deployment.job_variables)
    configuration.prepare_for_flow_run(flow_run)
    submitted = condor_site["schedd"].submit(configuration.submit_description(str(run.id)))  # what the dead worker did
    condor_site["schedd"].hold(submitted.cluster(), "Transfer input files failure: adopted job", code=13)
    ended = _final_state(run.id)
    assert ended.state.type.value == "CRASHED" and "adopted job" in ended.state.message
    assert len(_jobs_of(condor_site["schedd"], run.id)) == 1
