"""What an HTCondor job runs on the execute node, around Prefect's engine.

    python -m canfar_catalogue.worker.job

It refuses to start when the installed canfar-catalogue is not the version the
deployment expects (a worker image built from another release would compute
different catalogues), points the CADC settings at the credentials HTCondor
transferred into the job's scratch directory, loads secrets sent as files into
the engine's environment only, and then runs Prefect's engine, which runs the
flow run named by ``PREFECT__FLOW_RUN_ID`` (``python -m prefect.engine``,
started warm by :mod:`.engine`).

HTCondor's signals are for this process, not for the engine.  A hold, a
vacate or a removal sends the job SIGTERM (its ``kill_sig``); Prefect's engine
would answer by reporting the run Crashed within a second, before the worker
has read the user log, and a batch would start the exposure again while
HTCondor also runs the job again.  So the engine starts with SIGTERM blocked
(Prefect's handler can be installed but never runs), in a process group of
its own, and when SIGTERM comes this process ends the engine and its CCD
workers with SIGKILL, leaving the run's state untouched.  What happened is
then said by the worker, from the user log: evicted (pending, the job runs
again), held (crashed), removed (cancelled).

A vacate can land after the run has finished but before the job has exited.
HTCondor then starts the job again, and Prefect's engine would execute the
finished run once more (Completed, Running, Completed: Prefect allows it, as
the flow's result is not persisted); with ``force`` the exposure would be
measured and stored twice.  So before it starts the engine, the job reads the
run's state, and a run in a final state is left as it is: the job says so on
stderr and exits 0.  Every job pays for that read, so it is one plain HTTP
request, with no Prefect import.  The worker cannot do this for the job: it
reads the eviction from the user log late, when the legitimate run of a
vacated job may have completed the run already.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import tomllib
import urllib.request
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from . import engine as warm_engine  # what the job runs: Prefect's engine, started warm (no Prefect import here)

VERSION_MISMATCH = 3
#: The exit code after HTCondor asked the job to stop (128 + SIGTERM, as a shell reports it).
STOPPED_BY_HTCONDOR = 128 + signal.SIGTERM
#: Prefect's final state types: a run in one of them is never executed again by a restarted job.
FINAL_STATES = ("COMPLETED", "FAILED", "CANCELLED", "CRASHED")


def _toml(sections: dict[str, dict]) -> str:
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if isinstance(value, bool):
                lines.append(f"{key} = {'true' if value else 'false'}")
            elif isinstance(value, (int, float)):
                lines.append(f"{key} = {value}")
            else:
                lines.append(f"{key} = {json.dumps(str(value))}")  # a JSON string is a TOML basic string
    return "\n".join(lines) + "\n"


def credential_settings(scratch: Path, environment: dict[str, str]) -> dict[str, dict] | None:
    """``[cadc]`` settings for the credentials found in the job, or None when there are none."""
    cadc = {}
    if environment.get("X509_USER_PROXY"):
        cadc.update(auth="certificate", certificate=environment["X509_USER_PROXY"])
    if (scratch / "cadc-token").is_file():
        cadc.update(auth="token", token_file=str(scratch / "cadc-token"))
    if (scratch / ".netrc").is_file():
        cadc["netrc"] = str(scratch / ".netrc")
    if not cadc:
        return None
    sections: dict[str, dict] = {}
    current = environment.get("CANFAR_CATALOGUE_SETTINGS")
    if current and Path(current).is_file():
        sections = tomllib.loads(Path(current).read_text())
    sections.setdefault("cadc", {}).update(cadc)
    return sections


def main() -> int:
    expected = os.environ.get("CANFAR_CATALOGUE_EXPECTED_VERSION", "")
    try:
        installed = version("canfar-catalogue")
    except PackageNotFoundError:
        installed = "none"
    if expected and installed != expected:
        print(
            f"canfar-catalogue {installed} is installed on this execute node, but the deployment expects {expected}: "
            "rebuild the worker image at that version (deployments/worker-cloud-init.yaml) or deploy the version "
            "the image has",
            file=sys.stderr,
        )
        return VERSION_MISMATCH
    scratch = Path(os.environ.get("_CONDOR_SCRATCH_DIR", os.getcwd()))
    environment = dict(os.environ)
    for secret in scratch.glob("*.secret"):
        environment[secret.stem] = secret.read_text()
    state = run_state(environment)
    if state in FINAL_STATES:
        print(
            f"flow run {environment['PREFECT__FLOW_RUN_ID']} is already {state}: HTCondor started this job again "
            "after the run had finished (a vacate that came before the job exited); the run is left as it is",
            file=sys.stderr,
        )
        return 0
    sections = credential_settings(scratch, environment)
    if sections is not None:
        settings = scratch / "canfar-catalogue-settings.toml"
        settings.write_text(_toml(sections))
        environment["CANFAR_CATALOGUE_SETTINGS"] = str(settings)
    return run_engine(environment)


def run_state(environment: dict[str, str]) -> str | None:
    """The flow run's state type (``COMPLETED``, ``RUNNING``, ...), read with one GET of the Prefect
    API; None when it cannot be read, and the engine then decides as it always has."""
    api, run_id = environment.get("PREFECT_API_URL"), environment.get("PREFECT__FLOW_RUN_ID")
    if not api or not run_id:
        return None
    request = urllib.request.Request(f"{api.rstrip('/')}/flow_runs/{run_id}", headers={"Accept": "application/json"})
    if environment.get("PREFECT_API_KEY"):
        request.add_header("Authorization", f"Bearer {environment['PREFECT_API_KEY']}")
    elif environment.get("PREFECT_API_AUTH_STRING"):
        basic = base64.b64encode(environment["PREFECT_API_AUTH_STRING"].encode()).decode()
        request.add_header("Authorization", f"Basic {basic}")
    context = ssl.create_default_context(cafile=environment.get("PREFECT_API_SSL_CERT_FILE") or None)
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return json.load(response)["state"]["type"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print(f"could not read the state of flow run {run_id} ({exc}); the engine starts as usual", file=sys.stderr)
        return None


def run_engine(environment: dict[str, str]) -> int:
    """Run Prefect's engine until it exits (its exit code) or HTCondor stops the job."""
    stopped = []

    def stop(signum: int, frame: object) -> None:
        stopped.append(signum)
        try:
            os.killpg(engine.pid, signal.SIGKILL)
        except ProcessLookupError:  # the engine had already exited
            pass

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # inherited by the engine, its threads and children
    engine = subprocess.Popen([sys.executable, "-m", warm_engine.__name__], env=environment, process_group=0)
    signal.signal(signal.SIGTERM, stop)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # a SIGTERM that came meanwhile lands now
    code = engine.wait()
    if stopped:
        return STOPPED_BY_HTCONDOR
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    sys.exit(main())
