"""A warm process that starts a ``process`` pool's flow runs: Prefect and the project imported once, not per run.

    python -m canfar_catalogue.worker.pilot      (a process pool's command, set by deployments/deploy.sh)

Prefect's process worker starts every flow run as a new process, and a new
Python spends about 2 core-seconds importing Prefect, the project and
matplotlib before the run does anything (``bench/bench_batch.py``).  On a
machine whose cores are measuring the exposure before, that is time taken
from the science.  So the pool's command is this small client instead.  It
asks a *pilot*, a process that has imported everything once, to fork a copy
of itself for the run.  The copy takes the client's standard streams,
environment and working directory, and runs ``python -m prefect.engine`` as
the client would have.  Each exposure stays its own flow run, with its own
process, logs and artifacts.  The copy also forks, while it still has one
thread, the fork server its CCD workers will come from
(:mod:`canfar_catalogue.science.warm_forkserver`), instead of a new Python
importing the science modules again.

The client stands for the run towards the worker, so the worker's view is
unchanged:

- signals sent to the client (the worker's SIGTERM on cancellation, Ctrl-C)
  are passed on to the run's process;
- the client exits as the run's process did: with its exit code, or killed by
  the same signal;
- a client killed outright (``kill -9``) takes the run's process with it, as
  killing the engine would: the run's process watches the client's end of
  their socket and kills itself when it closes.

Where there is no pilot, the client starts one and hands it the run once it
has imported (what the run would have imported itself: about 0.6 s longer,
and 1.4 core-seconds less than importing both, `bench/RESULTS.md`).  Where
the pilot does not come up, or cannot be reached, the client runs the engine
itself, as runs did before pilots.
The run's process is only forked once the client has its pid in hand, so a
run never starts twice.  A pilot serves the clients of one interpreter, one
installation and one environment (its address is a hash of them, the
per-run ``PREFECT__`` variables left out), so an upgrade or another
configuration gets a pilot of its own.  A pilot with no run left exits after
``[process_pool] pilot_idle_seconds``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path

from . import engine
from .engine import ENGINE, import_frozen, run_as_main

#: Imported by the pilot before it forks anything (what every flow run of ours imports; each copy's CCD
#: workers come from a fork server, which a 1-core HTCondor job has none of).
WARM_MODULES = (
    *engine.WARM_MODULES, "prefect.task_engine", "multiprocessing.popen_forkserver",
    "canfar_catalogue.flows.batch", "canfar_catalogue.flows.nightly",
    "matplotlib.figure", "matplotlib.backends.backend_agg", "matplotlib.patches", "PIL.Image",
    "cadcdata", "vos",
)
#: Signals the client passes on to the run's process.
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)
_GO = b"g"
#: How long a client waits for the pilot's copy (a new pilot may still be importing) before running the engine itself.
HANDOVER_SECONDS = 60.0
#: How long a client that has just started a pilot waits for it to listen (it listens before it imports).
STARTING_SECONDS = 5.0
_HEADER = struct.Struct("!I")


# -- where the pilot listens ------------------------------------------------------------------------------------

def address(environment: dict[str, str]) -> bytes:
    """The pilot's abstract socket name for this interpreter, installation and environment."""
    kept = sorted((k, v) for k, v in environment.items() if not k.startswith("PREFECT__"))
    stamp = json.dumps([sys.executable, _installation_stamp(), kept])
    return b"\0canfar-catalogue-pilot-" + hashlib.sha256(stamp.encode()).hexdigest()[:32].encode()


def _installation_stamp() -> list:
    """Changes when a package is installed or removed, or a file of this project is changed."""
    package = Path(__file__).resolve().parents[1]
    folders = [p for p in map(Path, sys.path) if p.name == "site-packages" and p.is_dir()]
    files = sorted(package.glob("*/*.py")) + sorted(package.glob("*/*.toml"))
    return [(str(p), p.stat().st_mtime_ns) for p in folders + files]


def same_user(sock: socket.socket) -> bool:
    """Whether the process at the other end of ``sock`` runs as this one's user.

    An abstract socket has no file permissions: any user of the machine could
    connect to a pilot (and have it run code as us), or take a pilot's address
    first (and be sent a run's environment, credentials included).  Both
    ends check.
    """
    _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid == os.getuid()


# -- messages -----------------------------------------------------------------------------------------------------

def _send(sock: socket.socket, message: dict, fds: list[int] = ()) -> None:
    data = json.dumps(message).encode()
    frame = _HEADER.pack(len(data)) + data
    sent = socket.send_fds(sock, [frame], list(fds)) if fds else sock.send(frame)
    sock.sendall(frame[sent:])


def _receive(sock: socket.socket, max_fds: int = 0) -> tuple[dict, list[int]]:
    """One message (and up to ``max_fds`` file descriptors sent with it)."""
    if max_fds:
        first, fds, _, _ = socket.recv_fds(sock, 65536, max_fds)
    else:
        first, fds = sock.recv(65536), []
    buffer = bytearray(first)
    while len(buffer) < _HEADER.size or len(buffer) < _HEADER.size + _HEADER.unpack_from(buffer)[0]:
        more = sock.recv(65536)
        if not more:
            for fd in fds:
                os.close(fd)
            raise ConnectionError("the other side closed the connection mid-message")
        buffer += more
    (length,) = _HEADER.unpack_from(buffer)
    return json.loads(buffer[_HEADER.size:_HEADER.size + length]), fds


# -- the client: what the worker starts --------------------------------------------------------------------------

def run(module: str = ENGINE) -> None:
    """Run ``python -m <module>`` in a copy of the pilot, or here when there is none; exit as it did."""
    here = address(dict(os.environ))
    pilot = _connect(here)
    if pilot is None:
        _start_pilot(here)
        pilot = _connect(here, wait=STARTING_SECONDS)
        if pilot is None:  # it did not come up: run here, as runs did before pilots
            _become(module)
    if not same_user(pilot):  # someone else's process holds the address: tell it nothing
        print("pilot: the pilot's address is held by another user's process; running the engine here",
              file=sys.stderr)
        pilot.close()
        _become(module)
    pending: list[int] = []
    child: list[int] = []

    def forward(signum, frame):
        if child:
            os.kill(child[0], signum)
        else:
            pending.append(signum)

    for signum in FORWARDED:
        signal.signal(signum, forward)
    try:
        pilot.settimeout(HANDOVER_SECONDS)
        _send(pilot, {"module": module, "cwd": os.getcwd(), "environment": dict(os.environ)}, _standard_streams())
        started, _ = _receive(pilot)
        child.append(int(started["pid"]))
        pilot.sendall(_GO)
        pilot.settimeout(None)
    except (OSError, ValueError, KeyError):  # no copy started (it would have waited for the go): run here
        pilot.close()
        for signum in FORWARDED:
            signal.signal(signum, signal.SIG_DFL)
        for signum in pending:
            os.kill(os.getpid(), signum)
        _become(module)
    for signum in pending:
        os.kill(child[0], signum)
    try:
        ended, _ = _receive(pilot)
    except (OSError, ValueError):
        print(f"pilot: the flow run's process {child[0]} ended and its pilot gave no exit status "
              "(the pilot was killed?)", file=sys.stderr)
        sys.exit(1)
    if ended.get("signal"):
        signal.signal(ended["signal"], signal.SIG_DFL)
        os.kill(os.getpid(), ended["signal"])
    sys.exit(ended.get("code", 1))


def _connect(where: bytes, wait: float = 0.0) -> socket.socket | None:
    """A connection to the pilot at ``where``, tried for ``wait`` seconds (a pilot just started
    listens a moment later); None when there is none."""
    deadline = time.monotonic() + wait
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(where)
            return sock
        except OSError:
            sock.close()
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)


def _standard_streams() -> list[int]:
    """This process's stdin, stdout and stderr; /dev/null for one that is closed."""
    streams = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            streams.append(fd)
        except OSError:
            streams.append(os.open(os.devnull, os.O_RDWR))
    return streams


def _become(module: str) -> None:
    """Replace this process with ``python -m <module>`` (the way runs started before there was a pilot)."""
    os.execv(sys.executable, [sys.executable, "-m", module])


def _start_pilot(where: bytes) -> None:
    """Start a pilot for ``where`` in the background, detached from this process and its output."""
    if os.fork() == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                # without the first run's PREFECT__ variables: the pilot stands for no run in particular
                environment = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT__")}
                os.execve(sys.executable, [sys.executable, "-m", __spec__.name, "--serve", where[1:].decode()],
                          environment)
        finally:
            os._exit(0)
    os.wait()


# -- the pilot ---------------------------------------------------------------------------------------------------

class _Start:
    """What a forked copy of the pilot needs to become a client's flow run."""

    def __init__(self, connection: socket.socket, request: dict, streams: list[int], inherited: list):
        self.connection, self.request, self.streams, self.inherited = connection, request, streams, inherited


def serve(where: str, idle_seconds: float) -> _Start | None:
    """Listen at ``where``, import what the runs need, then fork a copy per client until idle.

    Returns, in a forked copy, what that copy must run; in the pilot, None
    when it is time to exit (idle, or another pilot has the address).
    """
    import selectors
    import threading

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(b"\0" + where.encode())
    except OSError:  # another pilot has it
        return None
    listener.listen(64)  # clients that come while the imports run wait in the backlog
    os.chdir("/")  # not the first run's working directory, which its worker removes
    # what is imported stays shared with the copies: the collector neither walks nor writes it
    import_frozen(WARM_MODULES, then=first_uses)
    if threading.active_count() != 1:  # forking a process with threads is not safe
        return None
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    runs: dict[int, socket.socket] = {}
    idle_since = time.monotonic()
    while runs or time.monotonic() - idle_since < idle_seconds:
        for key, _ in selector.select(timeout=min(idle_seconds, 5.0)):
            if key.fileobj is not listener:
                try:
                    while os.read(wake_read, 4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            connection, _ = listener.accept()
            if not same_user(connection):
                connection.close()
                continue
            connection.settimeout(10)
            try:
                request, streams = _receive(connection, max_fds=3)
            except (OSError, ValueError):
                connection.close()
                continue
            pid = os.fork()
            if pid == 0:
                return _Start(connection, request, streams, [selector, listener, wake_read, wake_write, *runs.values()])
            for fd in streams:
                os.close(fd)
            runs[pid] = connection
        while runs:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            connection = runs.pop(pid, None)
            if connection is not None:
                ended = ({"signal": os.WTERMSIG(status)} if os.WIFSIGNALED(status)
                         else {"code": os.waitstatus_to_exitcode(status)})
                try:
                    _send(connection, ended)
                except OSError:  # the client is gone
                    pass
                connection.close()
            if not runs:
                idle_since = time.monotonic()
    return None


def _run_in_copy(start: _Start) -> None:
    """In the pilot's forked copy: become the client's flow run, then run it as ``python -m`` would."""
    import threading

    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for other in start.inherited:
        other.close() if hasattr(other, "close") else os.close(other)
    for target, fd in zip((0, 1, 2), start.streams):
        os.dup2(fd, target)
        os.close(fd)
    connection, request = start.connection, start.request
    os.chdir(request["cwd"])
    sys.path[0] = request["cwd"]  # as ``python -m`` started there would have it
    os.environ.clear()
    os.environ.update(request["environment"])
    from prefect.context import refresh_global_settings_context

    from ..science import warm_forkserver

    refresh_global_settings_context()  # Prefect read its settings from the pilot's environment
    connection.settimeout(None)
    _send(connection, {"pid": os.getpid()})
    if connection.recv(1) != _GO:  # the client gave up (and runs the engine itself) or died
        os._exit(0)
    warm_forkserver.start(request["module"], close=(connection.fileno(),))  # while this is the only thread

    def die_with_client() -> None:
        connection.recv(1)  # returns when the client's end closes: it exited or was killed
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=die_with_client, name="die-with-client", daemon=True).start()
    run_as_main(request["module"])


def first_uses() -> None:
    """Do once, in the pilot, what every run would otherwise do for itself the first time.

    Prefect leaves the validators of most of its models (about 260 of them)
    to be built when a model is first used, so each run built a dozen anew
    (0.05 s); a model that cannot be completed yet is left to be built as
    before.  A process's first QA figure costs more than the next
    (:func:`~canfar_catalogue.science.qa_figure.warm_up`).  Each Prefect
    client loads a CA bundle, unless the clients share their TLS context
    (:mod:`.client_tls`): one client made here makes it for every run.
    """
    import pydantic
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from ..science import qa_figure
    from . import client_tls

    qa_figure.warm_up()
    if client_tls.share() and PREFECT_API_URL.value():  # (with no API URL, Prefect would start a server in-process)
        get_client()
    models = pydantic.BaseModel.__subclasses__()
    while models:
        model = models.pop()
        models.extend(model.__subclasses__())
        if model.__pydantic_complete__ is False:
            model.model_rebuild(raise_errors=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("module", nargs="?", default=ENGINE, help="what to run, as python -m would (default: %(default)s)")
    parser.add_argument("--serve", metavar="ADDRESS", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve is None:
        run(args.module)
        return
    from .. import config

    start = serve(args.serve, float(config.settings()["process_pool"]["pilot_idle_seconds"]))
    if start is not None:
        _run_in_copy(start)


if __name__ == "__main__":
    main()
