"""The process pool's pilot (worker/pilot.py): runs forked from a warm process, with the client standing for them.

Each test has a pilot of its own (a fresh environment gives a fresh address).
The module run here, in place of Prefect's engine, says who it is and then
does what ``behaviour.json`` in its working directory says, so that the
clients' environments stay equal (which they must, to share a pilot).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from canfar_catalogue.worker import pilot

from .conftest import parent_pid

TARGET = textwrap.dedent("""
    import json, os, sys, time
    behaviour = json.loads(open("behaviour.json").read()) if os.path.exists("behaviour.json") else {}
    print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(),
                      "run": os.environ.get("PREFECT__FLOW_RUN_ID"), "argv": sys.argv, "path0": sys.path[0]}),
          flush=True)
    print("to stderr", file=sys.stderr, flush=True)
    if behaviour.get("pool"):  # a flow run's CCD workers, started as a run with threads starts them
        import threading
        threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
        from canfar_catalogue.science import pipeline
        with pipeline._pool(2) as pool:
            print(json.dumps({"worker": pool.submit(os.getpid).result(), "server": pool.submit(os.getppid).result()}),
                  flush=True)
            time.sleep(behaviour.get("sleep", 0))
    time.sleep(behaviour.get("sleep", 0))
    sys.exit(behaviour.get("exit", 0))
""")


@pytest.fixture
def site(tmp_path):
    """An environment of its own (so a pilot of its own), with the target module importable."""
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "pilot_target.py").write_text(TARGET)
    settings = tmp_path / "settings.toml"
    settings.write_text("[process_pool]\npilot_idle_seconds = 4\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "modules"), "CANFAR_CATALOGUE_SETTINGS": str(settings),
           "PILOT_TEST": uuid.uuid4().hex}
    yield env
    for pid in _pilots(env):
        os.kill(pid, signal.SIGKILL)


def _pilots(env: dict) -> list[int]:
    name = pilot.address(env)[1:]
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and name in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _wait_for(condition, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _client(env: dict, cwd: Path, run: str = "", **behaviour) -> subprocess.Popen:
    cwd.mkdir(exist_ok=True)
    (cwd / "behaviour.json").write_text(json.dumps(behaviour))
    return subprocess.Popen([sys.executable, "-m", "canfar_catalogue.worker.pilot", "pilot_target"], cwd=cwd,
                            env={**env, "PREFECT__FLOW_RUN_ID": run}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _started_pilot(env: dict, tmp_path: Path) -> int:
    """Run once with no pilot: the client starts one and the run is its first copy; the pilot's pid."""
    assert not _pilots(env)
    first = _client(env, tmp_path / "first", run="first")
    out, _ = first.communicate(timeout=60)
    assert first.returncode == 0
    warm = _pilots(env)
    said = json.loads(out)
    assert len(warm) == 1 and said["ppid"] == warm[0] and said["pid"] != first.pid
    return warm[0]


def test_a_run_is_a_copy_of_the_pilot_with_the_clients_streams_environment_folder_and_exit_code(site, tmp_path):
    warm = _started_pilot(site, tmp_path)
    client = _client(site, tmp_path / "second", run="run-2", exit=3)
    out, err = client.communicate(timeout=60)
    said = json.loads(out)
    assert said["ppid"] == warm and said["pid"] != client.pid
    assert said["run"] == "run-2" and said["cwd"] == said["path0"] == str(tmp_path / "second")
    assert said["argv"][0].endswith("pilot_target.py")
    assert "to stderr" in err
    assert client.returncode == 3
    assert _pilots(site) == [warm]  # the same pilot serves the next run


def test_a_run_of_a_module_the_pilot_imported_says_nothing_of_it(site, tmp_path):
    """The pilot imports what runs need, Prefect's engine among them; running such a module as
    __main__ in a copy made runpy warn on every run's stderr."""
    _started_pilot(site, tmp_path)
    (tmp_path / "warm").mkdir()
    client = subprocess.Popen([sys.executable, "-m", "canfar_catalogue.worker.pilot", "prefect.task_engine"],
                              cwd=tmp_path / "warm", env=site, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, err = client.communicate(timeout=60)
    assert client.returncode == 0
    assert "RuntimeWarning" not in err and "sys.modules" not in err


def test_a_signal_to_the_client_reaches_the_run_and_the_client_ends_as_the_run_did(site, tmp_path):
    _started_pilot(site, tmp_path)
    client = _client(site, tmp_path / "signalled", run="run-term", sleep=60)
    run = json.loads(client.stdout.readline())["pid"]
    client.send_signal(signal.SIGTERM)
    client.wait(timeout=30)
    assert client.returncode == -signal.SIGTERM
    _wait_for(lambda: not _alive(run), 5)


def test_a_client_killed_outright_takes_its_run_with_it(site, tmp_path):
    warm = _started_pilot(site, tmp_path)
    client = _client(site, tmp_path / "killed", run="run-kill", sleep=60)
    run = json.loads(client.stdout.readline())["pid"]
    client.kill()
    client.wait(timeout=30)
    _wait_for(lambda: not _alive(run), 5)
    assert _alive(warm)  # the pilot lives on for the next run


def test_a_runs_ccd_workers_come_from_a_fork_server_forked_from_the_run_not_a_new_python(site, tmp_path):
    warm = _started_pilot(site, tmp_path)
    client = _client(site, tmp_path / "pool", run="run-pool", pool=True, sleep=60)
    run = json.loads(client.stdout.readline())["pid"]
    pool = json.loads(client.stdout.readline())
    server, worker = pool["server"], pool["worker"]
    assert parent_pid(server) == run and parent_pid(run) == warm
    assert Path(f"/proc/{server}/cmdline").read_bytes() == Path(f"/proc/{warm}/cmdline").read_bytes()
    assert Path(f"/proc/{server}/comm").read_text().strip() == "ccd-workers"
    assert Path(f"/proc/{worker}/comm").read_text().strip() == "ccd-workers"
    client.kill()  # the run goes with its client, and its fork server and workers with it
    client.wait(timeout=30)
    _wait_for(lambda: not any(map(_alive, (run, server, worker))), 10)
    assert _alive(warm)


def test_a_pilot_with_no_run_left_exits(site, tmp_path):
    warm = _started_pilot(site, tmp_path)
    client = _client(site, tmp_path / "last", run="run-last", sleep=1)
    client.communicate(timeout=60)
    assert client.returncode == 0 and _alive(warm)
    _wait_for(lambda: not _alive(warm), 30)  # pilot_idle_seconds = 4, counted from the last run's end


def test_a_client_whose_pilot_does_not_answer_runs_the_module_itself(site, tmp_path):
    mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    mute.bind(pilot.address(site))  # takes the address: no pilot can start, and this one closes every connection
    mute.listen(4)
    try:
        client = _client(site, tmp_path / "mute", run="run-mute", exit=5)
        connection, _ = mute.accept()
        connection.close()
        out, _ = client.communicate(timeout=60)
    finally:
        mute.close()
    assert json.loads(out)["pid"] == client.pid
    assert client.returncode == 5


def test_a_client_whose_pilot_cannot_start_runs_the_module_itself(site, tmp_path):
    settings = tmp_path / "broken.toml"
    settings.write_text("[process_pool\n")  # the pilot reads its settings before it listens, and stops
    env = {**site, "CANFAR_CATALOGUE_SETTINGS": str(settings)}
    client = _client(env, tmp_path / "alone", run="run-alone", exit=4)
    out, _ = client.communicate(timeout=60)
    assert json.loads(out)["pid"] == client.pid
    assert client.returncode == 4 and not _pilots(env)


FIRST_USES = textwrap.dedent("""
    import json, sys, pydantic, matplotlib.font_manager, PIL.Image
    from canfar_catalogue.worker import engine, pilot

    def incomplete():
        models, left = pydantic.BaseModel.__subclasses__(), set()
        while models:
            model = models.pop()
            models.extend(model.__subclasses__())
            if model.__pydantic_complete__ is False:
                left.add(model)
        return len(left)

    def state():
        tls = getattr(sys.modules["prefect.client.orchestration"].ssl, "_made", {})  # the shared TLS contexts made
        return [incomplete(), PIL.Image._initialized, matplotlib.font_manager._get_font.cache_info().currsize, len(tls)]

    engine.import_frozen(pilot.WARM_MODULES)
    before = state()
    pilot.first_uses()
    print(json.dumps({"before": before, "after": state()}))
""")


def test_the_pilot_does_once_what_each_run_would_do_the_first_time():
    """Prefect's models left to be built at first use, PIL's image plugins and matplotlib's font:
    done in the pilot, they are shared by every copy instead of done again in each run."""
    said = json.loads(subprocess.run([sys.executable, "-c", FIRST_USES], capture_output=True, text=True,
                                     check=True, timeout=120).stdout.splitlines()[-1])
    assert said["before"][0] > 100 and said["before"][1:] == [0, 0, 0]  # what the imports alone leave to each run
    assert said["after"][0] == 0  # every model complete
    assert said["after"][1] >= 1 and said["after"][2] >= 1  # PIL's common plugins imported, a font loaded
    assert said["after"][3] == 1  # the TLS context every run's Prefect clients share


def test_the_pilots_address_changes_with_the_environment_but_not_with_a_runs_own_variables():
    env = {"PATH": "/usr/bin", "PREFECT_API_URL": "http://127.0.0.1:4200/api"}
    assert pilot.address(env) == pilot.address({**env, "PREFECT__FLOW_RUN_ID": "x", "PREFECT__CONTROL_TOKEN": "t"})
    assert pilot.address(env) != pilot.address({**env, "PREFECT_API_URL": "http://127.0.0.1:4201/api"})
    assert pilot.address(env).startswith(b"\0canfar-catalogue-pilot-")


def test_a_pilot_and_its_clients_deal_only_with_processes_of_their_own_user(monkeypatch):
    """An abstract socket has no permissions: each end checks who is at the other (SO_PEERCRED)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        assert pilot.same_user(ours)
        other = os.getuid() + 1
        monkeypatch.setattr(pilot.os, "getuid", lambda: other)
        assert not pilot.same_user(ours)
