"""The process worker as deploy.sh prints it: Prefect's own, asking for runs when the server announces one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from prefect.deployments import run_deployment

from .conftest import BIN, deploy_exposures_on, stop, wait_for_first_question

COMMAND = [sys.executable, "-m", "canfar_catalogue.worker.process_worker"]


def _process_pool_with_exposures(env: dict, pool: str) -> str:
    """A process pool whose runs start from the pilot, as deploy.sh makes it, and the exposure deployment on it."""
    subprocess.run([str(BIN / "prefect"), "work-pool", "create", pool, "--type", "process"], env=env, check=True,
                   capture_output=True)
    subprocess.run([sys.executable, "-m", "canfar_catalogue.worker.process_pool", pool], env=env, check=True)
    return deploy_exposures_on(pool, pool, {})


def test_the_worker_starts_a_run_the_server_announces_between_two_questions_and_stops_on_ctrl_c(local_site, tmp_path):
    """With its timer asking every 10 minutes, a run created after the worker's first question still
    completes within a minute: the run's Scheduled event on the pool made the worker ask."""
    env = local_site["env"]
    deployment = _process_pool_with_exposures(env, "process-announced")
    log = tmp_path / "worker.log"
    worker = subprocess.Popen([*COMMAND, "--pool", "process-announced"], env={**env, "PREFECT_WORKER_QUERY_SECONDS": "600"},
                              stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_first_question("process-announced")
        time.sleep(2)  # well after it: the timer's next question is 10 minutes away
        out = tmp_path / "out"
        run = run_deployment(deployment, parameters={"observation_id": "1056216p", "destination": f"file://{out}"},
                             timeout=60, poll_interval=0.5)
        assert run.state.is_completed(), f"{run.state!r}\n{log.read_text()[-2000:]}"
        assert (out / "1056216p.cat").exists()
        time.sleep(2)  # idle again: Prefect's own worker, given a Ctrl-C now, ran on until a second one
        worker.send_signal(signal.SIGINT)  # Ctrl-C
        assert worker.wait(timeout=30) == 0
        assert "the process worker on process-announced stopped" in log.read_text()
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    finally:
        stop(worker)


def test_a_pool_of_another_type_is_refused_by_name_with_the_command_that_serves_it(local_site):
    env = local_site["env"]
    subprocess.run([str(BIN / "prefect"), "work-pool", "create", "not-a-process-pool", "--type", "htcondor"], env=env,
                   check=True, capture_output=True)
    refused = subprocess.run([*COMMAND, "--pool", "not-a-process-pool"], env=env, capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode != 0
    assert "work pool 'not-a-process-pool' is of type htcondor, not process" in refused.stderr
    assert "prefect worker start --pool not-a-process-pool --type htcondor" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_no_server_is_an_error_that_says_where_it_looked(tmp_path):
    env = {**os.environ, "PREFECT_API_URL": "http://127.0.0.1:9/api", "PREFECT_HOME": str(tmp_path)}
    refused = subprocess.run([*COMMAND, "--pool", "anything"], env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0
    assert "cannot reach the Prefect server at http://127.0.0.1:9/api" in refused.stderr
    assert "Traceback" not in refused.stderr
