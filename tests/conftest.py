"""Shared fixtures: small synthetic exposures, one Prefect server and one CADC emulator for the session.

The environment is set here, before any test module imports Prefect, the
CADC clients or the project's tasks (which read their settings at import): a
throwaway HOME (the CADC clients keep their registry cache there) and
PREFECT_HOME, a fixed free port, no telemetry, short retry delays, and CADC
credentials and CA bundle at fixed paths that the emulator fixture fills.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

#: The real-Nova suite runs in its own environment (make test-nova), not here.
collect_ignore = ["nova"]

_SESSION = Path(tempfile.mkdtemp(prefix="canfar-catalogue-tests-"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_PORT = _free_port()
HOME = _SESSION / "home"
CADC = {
    "certificate": HOME / ".ssl" / "cadcproxy.pem",
    "token_file": HOME / ".ssl" / "cadc-token",
    "netrc": HOME / ".netrc",
    "ca_bundle": _SESSION / "cadc" / "ca.pem",
}
(_SESSION / "settings.toml").write_text(
    "[download]\nretry_delay_seconds = 0.2\n[upload]\nretry_delay_seconds = 0.2\n[batch]\npoll_seconds = 1\nstuck_pending_seconds = 10\n"
    "[cadc]\n" + "".join(f'{key} = "{value}"\n' for key, value in CADC.items())
    + '[htcondor]\nschedd_factory = "tests.fake_schedd:from_environment"\npool_factory = "tests.fake_schedd:pool_from_environment"\npoll_seconds = 0.5\n'
)
for _package in ("cadcdata", "cadcutils", "cadctap", "vos"):  # no PyPI version check from the tests
    _cache = HOME / ".config" / _package / "caches" / ".pypi_versions.json"
    _cache.parent.mkdir(parents=True)
    _cache.write_text('{"releases": {}}')
os.environ.update(
    {
        "HOME": str(HOME),
        "FAKE_SCHEDD_STATE": str(_SESSION / "schedd"),
        "PREFECT_HOME": str(_SESSION / "prefect"),
        "PREFECT_API_URL": f"http://127.0.0.1:{_PORT}/api",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(_PORT),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_CLOUD_ENABLE_ORCHESTRATION_TELEMETRY": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        # No runs from schedules: the nightly deployment's (10:00 UTC) would otherwise catalogue the
        # session's archive in the middle of a session that spans it.
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "CANFAR_CATALOGUE_SETTINGS": str(_SESSION / "settings.toml"),
        "CANFAR_CATALOGUE_SCRATCH": str(_SESSION / "scratch"),
    }
)
BIN = Path(sys.executable).parent

from canfar_catalogue.science.synthetic import ExposureSpec, beside, write_exposure, write_flags, write_weights  # noqa: E402


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start_server(env: dict | None = None, log: Path | None = None) -> subprocess.Popen:
    """A Prefect server on the session's port (tests that restart a server use their own env)."""
    env = {**os.environ, **(env or {})}
    log = log or _SESSION / "server.log"
    process = subprocess.Popen(
        [str(BIN / "prefect"), "server", "start"], env=env, stdout=open(log, "ab"), stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not _healthy(env["PREFECT_API_URL"]):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the Prefect server did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return process


def parent_pid(pid: int) -> int:
    """A process's parent, from ``/proc/<pid>/stat`` (the field after the state)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def stop(process: subprocess.Popen) -> None:
    """SIGINT (Prefect's worker ignores SIGTERM), then SIGKILL for whatever is left."""
    if process.poll() is None:
        os.killpg(process.pid, 2)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, 9)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="session")
def prefect_server():
    """The session's Prefect server; its API URL is already in the environment."""
    process = start_server()
    yield os.environ["PREFECT_API_URL"]
    stop(process)


@pytest.fixture(scope="session")
def local_site(prefect_server):
    """A local archive with small exposures, a local destination, deployments and a process worker."""
    archive = _SESSION / "archive"
    archive.mkdir()
    for seed, observation_id in enumerate(("1056213p", "1056215p", "1056216p", "1056217p"), start=1):
        write_exposure(archive / f"{observation_id}.fits.fz", ExposureSpec.small(seed=seed))
        write_weights(beside(archive / f"{observation_id}.fits.fz", "weight"), ExposureSpec.small(seed=seed))
        write_flags(beside(archive / f"{observation_id}.fits.fz", "flag"), ExposureSpec.small(seed=seed))
    (archive / "1056299p.fits.fz").write_bytes(b"SIMPLE  =                    T" + b" " * 2850)  # corrupt
    env = {
        **os.environ,
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "CANFAR_CATALOGUE_POOL": "test-pool",
        "CANFAR_CATALOGUE_ARCHIVE": f"file://{archive}",
        "CANFAR_CATALOGUE_DESTINATION": f"file://{_SESSION / 'vospace'}",
        "CANFAR_CATALOGUE_EXPOSURE_SLOTS": "2",
    }
    root = Path(__file__).parents[1]
    subprocess.run(["bash", str(root / "deployments/deploy.sh")], env=env, check=True, capture_output=True)
    worker = subprocess.Popen(  # as deploy.sh prints it
        [str(BIN / "python"), "-m", "canfar_catalogue.worker.process_worker", "--pool", "test-pool"],
        env=env, stdout=open(_SESSION / "worker.log", "ab"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    yield {"archive": f"file://{archive}", "archive_path": archive, "root": _SESSION, "env": env}
    stop(worker)


def deploy_exposures_on(pool: str, name: str, job_variables: dict) -> str:
    """A copy of the per-exposure deployment on another work pool; returns its full name."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        template = client.read_deployment_by_name("catalogue-exposure/exposure")
        client.create_deployment(
            flow_id=template.flow_id, name=name, entrypoint=template.entrypoint, path=template.path,
            parameters=template.parameters, parameter_openapi_schema=template.parameter_openapi_schema,
            work_pool_name=pool, job_variables=job_variables, pull_steps=[],
        )
    return f"catalogue-exposure/{name}"


def wait_for_first_question(pool: str, timeout: float = 60) -> None:
    """Wait until a worker has asked ``pool`` for runs (the server records it on the pool's queues)."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while not any(queue.last_polled for queue in client.read_work_queues(work_pool_name=pool)):
            assert time.monotonic() < deadline, f"no worker asked {pool} for runs"
            time.sleep(0.2)


def everything_prefect_holds() -> str:
    """Every log line, artifact, run parameter and job variable on the test server, as one text:
    where a secret must never be found."""
    import json

    from prefect.client.orchestration import get_client

    texts = []
    with get_client(sync_client=True) as client:
        offset = 0
        while logs := client.read_logs(limit=200, offset=offset):
            texts += [log.message for log in logs]
            offset += len(logs)
        texts += [json.dumps(a.data) + (a.description or "") for a in client.read_artifacts()]
        texts += [json.dumps(run.parameters) + json.dumps(run.job_variables or {}) for run in client.read_flow_runs(limit=200)]
    return "\n".join(texts)


@pytest.fixture(scope="session")
def small_exposure(tmp_path_factory) -> Path:
    """Two 1024×1024 Rice-compressed CCDs."""
    path = tmp_path_factory.mktemp("exposures") / "1056213p.fits.fz"
    write_exposure(path, ExposureSpec.small(seed=11))
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A scratch directory that is also the current directory, as for source-extractor."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="session")
def cadc_service():
    """The CADC emulator, found by the real clients through the registry cache in HOME.

    It holds the user's proxy certificate and token at the paths the
    session's settings name; the archive is empty until a test adds to it.
    """
    from .cadc_emulator import CadcEmulator

    emulator = CadcEmulator(CADC["ca_bundle"].parent).start()
    emulator.point_registry(HOME)
    emulator.issue_proxy(CADC["certificate"])
    CADC["token_file"].write_text(emulator.token + "\n")
    CADC["token_file"].chmod(0o600)
    yield emulator
    emulator.stop()
    assert not emulator.errors, "the emulator itself failed:\n" + "\n".join(emulator.errors)


@pytest.fixture
def cadc(cadc_service):
    """The session's emulator with no faults left over from an earlier test."""
    cadc_service.clear_faults()
    yield cadc_service
    cadc_service.clear_faults()


# -- the fault matrix ------------------------------------------------------------------------------
# A test marked ``@pytest.mark.fault(family, fault, must)`` is a row of the matrix printed at the end
# of the run: the fault, what the system must do, what it did (the test's ``record_property("did",
# ...)``), and whether the test, which checks the invariants, passed.
_MATRIX: list[tuple[str, str, str, str, str]] = []


def pytest_configure(config):
    config.addinivalue_line("markers", "fault(family, fault, must): a row of the fault matrix printed after the run")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    marks = list(item.iter_markers("fault"))
    if not marks or report.when not in ("setup", "call") or (report.when == "setup" and report.passed):
        return
    did = dict(item.user_properties).get("did", "")
    if report.failed:
        did = (did + "; " if did else "") + f"test failed: {str(report.longrepr).splitlines()[-1][:120]}"
    verdict = "pass" if report.passed else ("skip" if report.skipped else "FAIL")
    for mark in marks:
        _MATRIX.append((*mark.args, did, verdict))


def pytest_terminal_summary(terminalreporter):
    if not _MATRIX:
        return
    write = terminalreporter.write_line
    terminalreporter.section("fault matrix")
    widths = [max(len(row[i]) for row in _MATRIX) for i in range(2)]
    for family, fault, must, did, verdict in sorted(_MATRIX, key=lambda row: row[:2]):
        write(f"{verdict:<4}  {family:<{widths[0]}}  {fault:<{widths[1]}}  must: {must}")
        if did:
            write(f"{'':<4}  {'':<{widths[0]}}  {'':<{widths[1]}}  did:  {did}")
    failed = sum(row[4] == "FAIL" for row in _MATRIX)
    write(f"{len(_MATRIX)} faults, {failed} failed")
