"""The secrets audit: markers in every kind of credential, searched for everywhere they must not be.

A batch runs from the CADC emulator to its VOSpace with each exposure as an HTCondor job (the fake
schedd), using a proxy certificate, a CADC token and a ``.netrc`` (sent as job files), and a Prefect
API key (which the worker must move out of the job's environment); then a provisioning cycle runs
against the fake OpenStack with a marked password and pool token.  While all that runs, the command
line of every process on the machine is sampled.  Afterwards every Prefect log line and artifact,
every flow run's parameters, the worker's output, every HTCondor user log, output and error file,
every job's submit description and environment, and every sampled command line are searched for
the markers.  There must be none.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import htcondor2
import pytest

from canfar_catalogue.flows.batch import catalogue_batch

from .conftest import BIN, CADC, deploy_exposures_on, everything_prefect_holds, stop
from .fake_cloud import FakeOpenStack
from .fake_schedd import FakePool, FakeSchedd

ROOT = Path(__file__).parents[1]


class CommandLines:
    """Every process's command line, sampled every 0.2 s while running."""

    def __init__(self):
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        while not self._stop.is_set():
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        self.seen.add((entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
                    except OSError:
                        continue
            time.sleep(0.2)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _files_under(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".secret"))


@pytest.mark.fault("secrets", "proxy, token, .netrc, API key, OpenStack password, pool token",
                   "in no log, artifact, parameter, user log, job description or environment, or command line")
def test_no_secret_reaches_a_log_an_artifact_a_job_or_a_command_line(local_site, cadc, small_exposure, tmp_path, monkeypatch, record_property):
    api_key = f"pnu_audit{uuid.uuid4().hex}"
    key_lines = [line for line in CADC["certificate"].read_text().splitlines() if not line.startswith("-----")]
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {cadc.user} password {cadc.password}\n")
    token = tmp_path / "cadc-token"
    token.write_text(cadc.token)
    for path in (netrc, token):
        path.chmod(0o600)
    logs = tmp_path / "condor-logs"

    env = {**local_site["env"], "PYTHONPATH": str(ROOT), "PREFECT_API_KEY": api_key}
    created = subprocess.run([str(BIN / "prefect"), "work-pool", "create", "audit-pool", "--type", "htcondor", "--overwrite"],
                             env=env, capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    job_variables = {
        "python": sys.executable, "log_directory": str(logs), "image": "canfar-catalogue-test", "project": "megapipe",
        "flavour": "c2-7.5gb-30", "request_cpus": 1, "x509_proxy": str(CADC["certificate"]),
        "secret_files": [str(token), str(netrc)],
        "env": {"CANFAR_CATALOGUE_SETTINGS": os.environ["CANFAR_CATALOGUE_SETTINGS"], "HOME": os.environ["HOME"]},
    }
    deploy_exposures_on("audit-pool", "audit", job_variables)
    ids = ["1056213p", "1056215p"]
    for observation_id in ids:
        cadc.add_exposure(f"{observation_id}.fits.fz", small_exposure.read_bytes())
    worker_log = tmp_path / "worker.log"
    with CommandLines() as command_lines:
        worker = subprocess.Popen(
            [str(BIN / "prefect"), "worker", "start", "--pool", "audit-pool", "--type", "htcondor"],
            env=env, stdout=open(worker_log, "ab"), stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            results = catalogue_batch(ids=ids, destination="vos:jdoe/audit", archive="cadc:CFHT",
                                      exposure_deployment="catalogue-exposure/audit")
        finally:
            stop(worker)
        assert [r["status"] for r in results] == ["completed", "completed"]

        os_password = f"os-{uuid.uuid4().hex}"
        pool_token = tmp_path / "pool.token"
        pool_token.write_text(f"eyJ{uuid.uuid4().hex}")
        pool_token.chmod(0o600)
        state = tmp_path / "provisioning"
        state.mkdir()
        (state / "matchmaking").touch()
        monkeypatch.setenv("FAKE_SCHEDD_STATE", str(state))
        FakeSchedd(state).submit(htcondor2.Submit({
            "executable": "/bin/true", "request_cpus": "1",
            "MY.VMType": '"megapipe:canfar-catalogue-test"', "MY.VMInstanceType": '"c2-7.5gb-30"',
        }))
        from canfar_catalogue.flows.provision import provision

        with FakeOpenStack(password=os_password) as cloud:
            for key, value in cloud.environment().items():
                monkeypatch.setenv(key, value)
            cloud.on_active = lambda server: FakePool(state).join(server.id, server.metadata["vm_type"])
            summary = provision(project="megapipe", keypair="jdoe-key", network="megapipe-vlan",
                                central_manager="cm.example.org", pool_token_file=str(pool_token), owner="jdoe",
                                policy={"boot_wait_seconds": 2, "api_retries": 0})
        assert summary["booted"] == 1

    secrets = {
        "CADC token": cadc.token, ".netrc password": cadc.password, "Prefect API key": api_key,
        "OpenStack password": os_password, "pool token": pool_token.read_text(),
        **{f"proxy key line {i}": line for i, line in enumerate(key_lines[1:4])},
    }
    jobs = FakeSchedd(Path(local_site["env"]["FAKE_SCHEDD_STATE"])).ads()
    audit_jobs = [ad for ad in jobs if ad.get("log", "").startswith(str(logs))]
    assert len(audit_jobs) == 2 and all("x509userproxy" in ad and "transfer_input_files" in ad for ad in audit_jobs)
    places = {
        "Prefect logs, artifacts and run parameters": everything_prefect_holds(),
        "the worker's output": worker_log.read_text(errors="replace"),
        "HTCondor user logs, output and error files": _files_under(logs),
        "submit descriptions and job environments": json.dumps(audit_jobs),
        "command lines of every process": "\n".join(command_lines.seen),
    }
    assert "vos:jdoe/audit" in places["Prefect logs, artifacts and run parameters"]  # the search sees what the runs wrote
    assert any("worker start" in c for c in command_lines.seen), command_lines.seen
    assert any(m in c for c in command_lines.seen for m in ("prefect.engine", "worker.pilot", "worker.job")), command_lines.seen
    hits = [f"{what} in {where}" for where, text in places.items() for what, secret in secrets.items() if secret in text]
    searched = sum(len(text.splitlines()) for text in places.values())
    record_property("did", f"{len(secrets)} markers, {searched} lines in {len(places)} kinds of place: {len(hits)} hits {hits[:3]}")
    assert hits == []
