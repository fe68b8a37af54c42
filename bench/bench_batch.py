"""What a user's whole batch costs against its science: the batch, a detect loop, the classic loop.

    python bench/bench_batch.py [--exposures 4] [--nccd 36] [--slots 2] [--workdir .bench]
                                [--pool htcondor [--request-cpus N] [--execute-node-cores N]]
                                [--postgres] [--worker-query-seconds S] [--openings]

On the embedded default (a local Prefect server on SQLite, the ``process``
work pool, a local archive and storage folder), in one run, on the same
full-size synthetic exposures:

1. ``canfar-catalogue detect`` on each file in a shell-like loop;
2. the tutorial's loop: ``funpack -D`` then ``source-extractor`` on each file;
3. the tutorial's job run as many at a time as there are cores, as HTCondor
   runs it one per 1-core slot (each in its own folder: ``funpack -O``,
   ``source-extractor``, the folder removed): the baseline a night is
   measured against;
4. the batch, timed from the start of
   ``prefect deployment run 'catalogue/batch' --param ids=[...] --watch`` to
   its exit, and to the batch run's end as the server records it (without
   the CLI's wait after the end) (``force=true``, so every exposure is
   measured).

Prints each wall time and busy core-seconds per exposure (``/proc/stat``:
everything the machine did meanwhile, the Prefect server included; for the
batch, less this benchmark's own sampling while it runs), the
batch's ratios to the detect loop and to the tutorial's jobs, then what the
batch's time went to: the batch run's opening (its log lines and tasks up to
its first exposure run); per exposure, dispatch (created to Running; "claimed":
created to Pending, the worker's poll), process start (Running to its first
task), download, detect, upload and the end (last task to the run's final
state; ``--openings`` lists each run's first log lines); the share of core
time left idle (``/proc/stat``) while the batch ran, and the busy
core-seconds of the batch against the detect loop's; each kind of process's
own CPU while the batch ran (the server, the worker, the flow runs, the CCD
workers); and the Prefect server's CPU per flow run, per log line and per
event, the events by kind, and the requests it answered 503 (SQLite lock
conflicts, each a client's 2 s wait).

``--pool htcondor`` runs the exposures as jobs on the tests' fake schedd
instead (each job a local process with its own scratch directory and a
genuine user log), and adds each job's life: from its submission to its
run's Running state, and from its end to its run's final state.  With
``--execute-node-cores N`` the jobs are matched to the free cores of one
execute node of N cores, as HTCondor's negotiator would, so that jobs of
``--request-cpus`` cores wait in the queue for a slot as on a real pool.

``--postgres`` puts the Prefect server on a throwaway PostgreSQL cluster
(``bench/postgres.py``), as in production.  The workers start as
``deploy.sh`` prints them, asking for runs when the server announces one;
``--worker-query-seconds S`` starts the process pool's instead as Prefect's
``prefect worker start``, asking every S seconds (as the demo did before).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import re
import resource
import signal
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench_prefect import free_port, start_server

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[1]


#: Who a process is, from its name and command line ("[name] command line"): the first role all of whose
#: strings appear in it.  The CCD workers come first: a fork server's command line holds the flow run's
#: paths, "prefect" among them, and one forked from a pilot's copy has the pilot's command line.
CCD_WORKERS = "CCD workers (fork servers and their workers)"
PILOT_RUNS = "flow runs (the pilot and its runs: the batch's and each exposure's)"
ENGINE_RUNS = "flow runs in an engine of their own (each HTCondor job's; a run with no pilot yet)"
ROLES = [
    (CCD_WORKERS, ("[ccd-workers]",)),
    (CCD_WORKERS, ("multiprocessing.forkserver",)),
    ("the Prefect server", ("prefect server start",)),
    ("the Prefect server's PostgreSQL (--postgres)", ("[postgres]",)),
    ("the HTCondor worker", ("prefect worker start", "htcondor")),
    ("the process worker", ("canfar_catalogue.worker.process_worker",)),
    ("the process worker", ("prefect worker start",)),  # --worker-query-seconds: Prefect's command
    ("the CLI (prefect deployment run)", ("prefect deployment run",)),
    (PILOT_RUNS, ("canfar_catalogue.worker.pilot",)),
    (ENGINE_RUNS, ("canfar_catalogue.worker.engine",)),  # an HTCondor job's engine, started warm
    (ENGINE_RUNS, ("prefect.engine",)),
    ("HTCondor jobs (each exposure's engine on the execute node)", ("canfar_catalogue.worker.job",)),
    ("the fake schedd's starters", ("tests.fake_schedd",)),
    ("this benchmark (its sampling; left out of the batch's figures above)", ("bench_batch.py",)),
]


class ProcessSampler:
    """Every process's own CPU (``/proc/<pid>/stat``, user + system), sampled every ``interval`` seconds
    and summed by role (:data:`ROLES`): steadier than the machine's busy time, and it says who spent it.
    A process's last ``interval`` before it exits is not seen."""

    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self.seen: dict[tuple[int, int], tuple[str, float, float]] = {}  # (pid, start) -> role, first, last
        self.lives: dict[tuple[int, int], tuple[int, float, float]] = {}  # (pid, start) -> ppid, first and last seen
        self.words: dict[tuple[int, int], str] = {}  # (pid, start) -> "[name] command line"
        self.started = False  # after the first sample: a process seen later began while sampling
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "ProcessSampler":
        self._sample()  # what the processes running now have spent so far is not the batch's
        self.started = True
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self._sample()

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            self._sample()

    def _sample(self) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = process_stat(entry)
                key = (int(entry), int(stat[19]))
                cpu = own_cpu_seconds(stat)
                role, first = self.seen[key][:2] if key in self.seen else ("other", None)
                command = ""
                if role in ("other", PILOT_RUNS):  # a fork's first moments: not yet what it becomes
                    command = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode(errors="replace")
                if command:  # (an exited process not yet waited for has none: it stays what it was)
                    words = f"[{open(f'/proc/{entry}/comm').read().strip()}] {command}"
                    role = next((name for name, needed in ROLES if all(w in words for w in needed)), "other")
                    self.words[key] = words
                if first is None:  # a process that began while sampling: all it spent is the batch's
                    first = 0.0 if self.started else cpu
                self.seen[key] = (role, first, cpu)
                now = time.monotonic()
                self.lives[key] = (int(stat[1]), self.lives.get(key, (0, now))[1], now)
            except (OSError, IndexError, ValueError):
                continue

    def by_role(self) -> dict[str, float]:
        """CPU seconds spent while sampling, by role."""
        spent: dict[str, float] = collections.Counter()
        for role, first, last in self.seen.values():
            spent[role] += last - first
        return dict(spent)

    def pilot_processes(self) -> dict[str, list[float]]:
        """The pilots' own CPU (their imports and first uses) apart from their copies'; of the copies, the
        longest-lived is the batch's run, the others the exposures'."""
        serving = {key: words for key, words in self.words.items()
                   if self.seen[key][0] == PILOT_RUNS and "canfar_catalogue.worker.pilot --serve" in words}
        pids = {key[0] for key in serving}
        copies = {key: self.lives[key] for key in serving if self.lives[key][0] in pids}
        spent = {key: self.seen[key][2] - self.seen[key][1] for key in serving}
        batch = max(copies, key=lambda key: copies[key][2] - copies[key][1], default=None)
        return {
            "the pilot (its imports and first uses, once per pilot)": [  # the pilots that served this batch
                spent[k] for k in serving if k not in copies and k[0] in {ppid for ppid, _, _ in copies.values()}],
            "the batch's run": [spent[batch]] if batch else [],
            "each exposure's run": sorted(spent[k] for k in copies if k != batch),
        }

    def others(self, top: int = 5) -> list[tuple[str, float]]:
        """The processes of no role that spent the most while sampling, by name and command (cut short)."""
        spent: dict[str, float] = collections.Counter()
        for key, (role, first, last) in self.seen.items():
            if role == "other":
                spent[self.words.get(key, "?")[:100]] += last - first
        return sorted(spent.items(), key=lambda item: -item[1])[:top]


def tutorial_job(exposure: Path, scratch: Path, funpack: str, sextractor: str, config) -> None:
    """The tutorial's job on one exposure, in a folder of its own: decompress, extract, clean up."""
    work = Path(tempfile.mkdtemp(dir=scratch))
    try:
        subprocess.run([funpack, "-O", str(work / "x.fits"), str(exposure)], check=True, capture_output=True)
        subprocess.run([sextractor, "x.fits", "-c", str(config.path("default.sex")), "-FILTER_NAME",
                        str(config.path("default.conv")), "-PARAMETERS_NAME", str(config.path("default.param")),
                        "-CATALOG_NAME", "c.cat"], check=True, capture_output=True, cwd=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def cpu_times() -> tuple[float, float]:
    """(idle, total) jiffies of all cores, from /proc/stat (iowait counts as idle)."""
    fields = [float(v) for v in open("/proc/stat").readline().split()[1:]]
    return fields[3] + fields[4], sum(fields[:8])


def busy_core_seconds(before: tuple[float, float], after: tuple[float, float]) -> float:
    """Core-seconds spent busy (by anything on the machine) between two ``cpu_times()``."""
    tick = os.sysconf("SC_CLK_TCK")
    return ((after[1] - before[1]) - (after[0] - before[0])) / tick


def process_stat(pid: int | str) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name (the 3rd field, the state, first)."""
    return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()


def own_cpu_seconds(stat: list[str]) -> float:
    """User + system CPU seconds of a process, not its children's, from :func:`process_stat`."""
    return (float(stat[11]) + float(stat[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and its living descendants."""
    total, stack = 0.0, [pid]
    while stack:
        p = stack.pop()
        try:
            total += own_cpu_seconds(process_stat(p))
            for task in os.listdir(f"/proc/{p}/task"):
                stack.extend(int(c) for c in open(f"/proc/{p}/task/{task}/children").read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def timed(command: list[str], **kwargs) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, **kwargs)
    return time.perf_counter() - start


def breakdown(flow_runs) -> list[dict]:
    """Per exposure flow run: where its time went, from its states and task runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    rows = []
    with get_client(sync_client=True) as client:
        tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[r.id for r in flow_runs])))
        for run in sorted(flow_runs, key=lambda r: r.start_time):
            mine = {t.name.rsplit("-", 1)[0]: t for t in tasks if t.flow_run_id == run.id and t.start_time}
            first = min(t.start_time for t in mine.values())
            last = max(t.end_time for t in mine.values() if t.end_time)

            def seconds(name: str) -> float:
                t = mine.get(name)
                return (t.end_time - t.start_time).total_seconds() if t and t.end_time else float("nan")

            claimed = min((state.timestamp for state in client.read_flow_run_states(run.id)
                           if state.type.value == "PENDING"), default=run.start_time)
            rows.append({
                "exposure": run.name,
                "dispatch": (run.start_time - run.created).total_seconds(),
                "claimed": (claimed - run.created).total_seconds(),
                "process start": (first - run.start_time).total_seconds(),
                "download": seconds("download"),
                "detect": seconds("detect"),
                "upload": seconds("upload"),
                "end": (run.end_time - last).total_seconds(),
                "total": (run.end_time - run.created).total_seconds(),
            })
    return rows


def opening_of(client, run, since, until, until_is: str) -> list[tuple[float, str]]:
    """What a run did from ``since`` to ``until`` (which ``until_is``): its Running state, its task runs'
    creations, starts and ends and its log lines, in seconds from ``since``: where a stall goes."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, LogFilter, LogFilterFlowRunId

    marks = [(until, until_is), (run.start_time, "Running")]
    tasks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))
    for task in tasks:
        marks += [(task.created, f"task run {task.name} created")]
        marks += [(task.start_time, f"task run {task.name} Running")] if task.start_time else []
        marks += [(task.end_time, f"task run {task.name} ended")] if task.end_time else []
    logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run.id])), limit=50)
    marks += [(log.timestamp, f"log: {log.message[:70]}") for log in logs]
    return sorted(((moment - since).total_seconds(), what) for moment, what in marks
                  if moment is not None and moment <= until)


def retried_requests(server_log: str) -> collections.Counter:
    """Each request the server answered 503, as the API route it was in and the error its traceback ends
    with (``PREFECT_SERVER_LOG_RETRYABLE_ERRORS`` logs them)."""
    found = collections.Counter()
    for traceback in server_log.split("Encountered retryable exception in request")[1:]:
        routes = re.findall(r'prefect/server/api/(\w+)\.py", line \d+, in (\w+)', traceback)
        errors = [line.split(" [SQL")[0].strip() for line in traceback.splitlines()
                  if line.startswith("sqlalchemy.exc.")]
        found[(".".join(routes[-1]) if routes else "?") + ": " + (errors[0] if errors else "?")] += 1
    return found


CONDOR_POOL = "bench-condor"


def condor_environment(home: Path) -> dict[str, str]:
    """Exposures as jobs on the tests' fake schedd (tests/fake_schedd.py): each job a local process in its
    own scratch directory, with a genuine user log."""
    settings = home / "settings.toml"
    settings.write_text('[htcondor]\nschedd_factory = "tests.fake_schedd:from_environment"\n'
                        'pool_factory = "tests.fake_schedd:pool_from_environment"\n')
    return {"PYTHONPATH": str(ROOT), "FAKE_SCHEDD_STATE": str(home / "schedd"), "CANFAR_CATALOGUE_SETTINGS": str(settings),
            "CANFAR_CATALOGUE_EXPOSURE_POOL": CONDOR_POOL, "CANFAR_CATALOGUE_EXPOSURE_POOL_TYPE": "htcondor"}


def execute_node(state: Path, cores: int) -> threading.Event:
    """One execute node of ``cores`` cores in the fake schedd's pool, and a negotiator that starts idle jobs
    on its free cores every half second; set the event returned to stop it."""
    sys.path.insert(0, str(ROOT))
    from tests.fake_schedd import FakePool, FakeSchedd

    FakePool(state).join("bench-execute-node", None, cores)
    (state / "matchmaking").touch()
    stop = threading.Event()

    def negotiate() -> None:
        while not stop.wait(0.5):
            FakeSchedd(state).negotiate()

    threading.Thread(target=negotiate, daemon=True).start()
    return stop


def job_lives(flow_runs, logs: Path) -> list[dict]:
    """Per exposure run: from its job's submission (user log) to the engine's Running state, and from the
    job's end to the run's final state (the worker reading the log and reporting it)."""
    import htcondor2

    rows = []
    for run in sorted(flow_runs, key=lambda r: r.start_time):
        events = {}
        for event in htcondor2.JobEventLog(str(logs / str(run.id) / "job.log")).events(stop_after=0):
            events.setdefault(event.type, event.timestamp)  # the first of each kind
        submitted = events[htcondor2.JobEventType.SUBMIT]
        ended = events[htcondor2.JobEventType.JOB_TERMINATED]
        rows.append({
            "exposure": run.name,
            "submitted to Running": run.start_time.timestamp() - submitted,
            "job end to final state": run.end_time.timestamp() - ended,
            "job": ended - submitted,
        })
    return rows


def _stop(process: subprocess.Popen, sig: int, grace: float = 30.0) -> None:
    """Signal a process group, and kill it if it has not exited within ``grace`` seconds
    (a worker with a flow run's process still ending can take longer than that)."""
    os.killpg(process.pid, sig)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exposures", type=int, default=4)
    parser.add_argument("--nccd", type=int, default=36)
    parser.add_argument("--slots", type=int, default=None,
                        help="exposures running at once on the pool (default: deploy.sh's)")
    parser.add_argument("--workdir", type=Path, default=Path(".bench"))
    parser.add_argument("--pool", choices=("process", "htcondor"), default="process",
                        help="where the exposures run: the process pool, or jobs on the tests' fake schedd "
                             "(no target; shows the HTCondor worker's share of each job's life)")
    parser.add_argument("--request-cpus", type=int, default=os.cpu_count(),
                        help="with --pool htcondor: each job's request_cpus (default: every core)")
    parser.add_argument("--execute-node-cores", type=int, default=0,
                        help="with --pool htcondor: jobs wait in the queue for free cores on one execute node of "
                             "this many cores, matched as HTCondor's negotiator would (default: each job starts "
                             "at once, on whatever cores are free)")
    parser.add_argument("--worker-query-seconds", type=float,
                        help="start the process pool's worker as 'prefect worker start', asking for new flow runs "
                        "every this many seconds (PREFECT_WORKER_QUERY_SECONDS), not as deploy.sh prints it "
                        "(Prefect's worker on its timer, also asking when the server announces a run)")
    parser.add_argument("--postgres", action="store_true",
                        help="run the Prefect server on PostgreSQL (Debian's postgresql), as in production, not SQLite")
    parser.add_argument("--openings", action="store_true",
                        help="also each exposure run's log lines up to a second after it was Running (where a slow "
                        "dispatch went)")
    args = parser.parse_args()
    sextractor = shutil.which("source-extractor") or shutil.which("sex")
    funpack = shutil.which("funpack")
    if not (sextractor and funpack):
        raise SystemExit("needs Debian's source-extractor and funpack: apt-get install source-extractor libcfitsio-bin")

    from canfar_catalogue import config
    from canfar_catalogue.science.synthetic import ExposureSpec, write_exposure

    archive = (args.workdir / f"batch-archive-{args.nccd}ccd").resolve()
    archive.mkdir(parents=True, exist_ok=True)
    ids = [f"20{n:05d}p" for n in range(args.exposures)]
    for n, observation_id in enumerate(ids):
        if not (archive / f"{observation_id}.fits.fz").exists():
            print(f"generating {observation_id} ({args.nccd} CCDs) ...", flush=True)
            write_exposure(archive / f"{observation_id}.fits.fz", ExposureSpec(nccd=args.nccd, seed=500 + n))

    home = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    port = free_port()
    env = {
        **os.environ, "PATH": f"{BIN}:{os.environ['PATH']}",
        "PREFECT_HOME": str(home / "prefect"), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1",
        # no runs from schedules: the nightly deployment's, at 10:00 UTC, once ran beside a measured batch
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        # each request the server answers 503 (a SQLite lock conflict) is logged, to count them
        "PREFECT_SERVER_LOG_RETRYABLE_ERRORS": "true",
        "CANFAR_CATALOGUE_POOL": "bench-batch", "CANFAR_CATALOGUE_ARCHIVE": f"file://{archive}",
        "CANFAR_CATALOGUE_DESTINATION": f"file://{home}/vospace", "CANFAR_CATALOGUE_SCRATCH": str(home / "scratch"),
    }
    database = contextlib.ExitStack()  # a PostgreSQL server with --postgres, stopped with the Prefect server
    if args.postgres:
        from postgres import postgres

        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database.enter_context(postgres(free_port()))
    if args.slots:
        env["CANFAR_CATALOGUE_EXPOSURE_SLOTS"] = str(args.slots)
    job_variables = {}
    if args.pool == "htcondor":
        env.update(condor_environment(home))
        job_variables = {"python": sys.executable, "log_directory": str(home / "condor-logs"),
                         "request_cpus": args.request_cpus}
    os.environ.update({k: v for k, v in env.items() if k.startswith("PREFECT_")})
    try:
        server = start_server(home, env)
    except BaseException:
        database.close()
        raise
    worker = condor_worker = negotiator = None
    try:
        subprocess.run(["bash", str(ROOT / "deployments/deploy.sh")], env=env, check=True, capture_output=True)
        if args.worker_query_seconds is None:  # as deploy.sh prints it
            command, worker_env = [sys.executable, "-m", "canfar_catalogue.worker.process_worker", "--pool", "bench-batch"], env
        else:
            command = [str(BIN / "prefect"), "worker", "start", "--pool", "bench-batch", "--type", "process"]
            worker_env = {**env, "PREFECT_WORKER_QUERY_SECONDS": str(args.worker_query_seconds)}
        worker = subprocess.Popen(command, env=worker_env, stdout=open(home / "worker.log", "wb"),
                                  stderr=subprocess.STDOUT, start_new_session=True)
        if args.pool == "htcondor":
            condor_worker = subprocess.Popen(
                [str(BIN / "prefect"), "worker", "start", "--pool", CONDOR_POOL, "--type", "htcondor"],
                env=env,  # as deploy.sh prints it
                stdout=open(home / "condor-worker.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True)
        if args.execute_node_cores:
            negotiator = execute_node(home / "schedd", args.execute_node_cores)
        files = [archive / f"{i}.fits.fz" for i in ids]
        loop = home / "loop"
        loop.mkdir()
        loop_cpu = cpu_times()
        detect = sum(timed([str(BIN / "canfar-catalogue"), "detect", str(f), "-q", "-CATALOG_NAME", str(loop / f"{f.name}.cat")])
                     for f in files)
        loop_busy = busy_core_seconds(loop_cpu, cpu_times())
        print(f"detect loop: {detect:.1f} s", flush=True)
        classic = 0.0
        classic_cpu = cpu_times()
        for f in files:
            work = loop / "classic"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            shutil.copy(f, work / f.name)  # funpack -D deletes its input, as in the tutorial
            classic += timed([funpack, "-D", str(work / f.name)])
            classic += timed([sextractor, str(work / f.name.removesuffix(".fz")), "-c", str(config.path("default.sex")),
                              "-FILTER_NAME", str(config.path("default.conv")), "-PARAMETERS_NAME",
                              str(config.path("default.param")), "-CATALOG_NAME", str(work / "c.cat")],
                             capture_output=True, cwd=work)
        classic_busy = busy_core_seconds(classic_cpu, cpu_times())
        print(f"classic loop: {classic:.1f} s", flush=True)
        cores = os.cpu_count() or 1
        parallel_cpu = cpu_times()
        started = time.perf_counter()
        with ThreadPoolExecutor(cores) as pool:
            list(pool.map(lambda f: tutorial_job(f, loop, funpack, sextractor, config), files))
        parallel = time.perf_counter() - started
        parallel_busy = busy_core_seconds(parallel_cpu, cpu_times())
        print(f"the tutorial's job, {cores} at a time: {parallel:.1f} s", flush=True)

        samples: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append(cpu_times())
                stop.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        server_cpu = tree_cpu_seconds(server.pid)
        own_cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        sampler.start()
        cli_started = datetime.now(timezone.utc)
        with ProcessSampler() as processes:
            batch = timed([str(BIN / "prefect"), "deployment", "run", "catalogue/batch", "--param", f"ids={json.dumps(ids)}",
                           "--param", "force=true", "--param", f"job_variables={json.dumps(job_variables)}",
                           "--watch"],  # Prefect 3.9 streams the run's events; --watch-interval is ignored
                          env=env, capture_output=True)
        stop.set()
        sampler.join()
        sampling = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - own_cpu  # this benchmark's, not the batch's
        server_cpu = tree_cpu_seconds(server.pid) - server_cpu
        idle = (samples[-1][0] - samples[0][0]) / (samples[-1][1] - samples[0][1])
        batch_busy = busy_core_seconds(samples[0], samples[-1]) - sampling
        print(f"batch: {batch:.1f} s", flush=True)

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName, LogFilter, LogFilterFlowRunId
        from prefect.events.filters import EventFilter, EventOccurredFilter

        with get_client(sync_client=True) as client:
            runs = [r for r in client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["exposure"])))
                    if r.state and r.state.is_completed()]
            parent = client.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["batch"])))[0]
            every_run = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[r.id for r in runs] + [parent.id]))
            logs = 0
            while page := client.read_logs(log_filter=every_run, limit=200, offset=logs):
                logs += len(page)
            opening = opening_of(client, parent, parent.start_time, min(r.created for r in runs),
                                 "first exposure run created")
            openings = {r.name: opening_of(client, r, r.created, r.start_time + timedelta(seconds=1),
                                           "a second after Running")
                        for r in sorted(runs, key=lambda r: r.created)} if args.openings else {}
            window = EventOccurredFilter(since=parent.created, until=parent.end_time + timedelta(seconds=5))
            page = client.read_events(filter=EventFilter(occurred=window), limit=50)  # the most a page holds
            events, kinds = page.total, collections.Counter(e.event for e in page.events)
            while page.next_page:
                page = client.read_events_page(page.next_page)
                kinds.update(e.event for e in page.events)
        rows = breakdown(runs)
        retried = retried_requests((home / "server.log").read_text(errors="replace"))
        jobs = job_lives(runs, home / "condor-logs") if args.pool == "htcondor" else []
        first_child = min(r.created for r in runs)
        last_end = max(r.end_time for r in runs)
        phases = {
            "batch run dispatched (created to Running)": (parent.start_time - parent.created).total_seconds(),
            "planning (Running to its first exposure run)": (first_child - parent.start_time).total_seconds(),
            "exposures (first created to last finished)": (last_end - first_child).total_seconds(),
            "after the last exposure (to the batch's end)": (parent.end_time - last_end).total_seconds(),
        }
    finally:
        if negotiator:
            negotiator.set()
        if condor_worker:
            _stop(condor_worker, signal.SIGINT)
        if worker:
            _stop(worker, signal.SIGINT)  # Prefect's worker stops on SIGINT
        _stop(server, signal.SIGTERM)
        database.close()
        shutil.rmtree(home, ignore_errors=True)

    print(f"\n{args.exposures} exposures of {args.nccd} full-size CCDs, {os.cpu_count()} cores, "
          f"{env.get('CANFAR_CATALOGUE_EXPOSURE_SLOTS', 'default')} exposure slots, on the {args.pool} pool"
          + (f", request_cpus {args.request_cpus}" if args.pool == "htcondor" else "")
          + (f", one execute node of {args.execute_node_cores} cores" if args.execute_node_cores else "")
          + f", the Prefect server on {'PostgreSQL' if args.postgres else 'SQLite'}"
          + (f", the process worker asking for runs every {args.worker_query_seconds:g} s"
             if args.worker_query_seconds is not None else ", the workers asking when the server announces a run"))
    to_end = (parent.end_time - cli_started).total_seconds()
    n = args.exposures
    print(f"  {'':44s} {'wall s':>8s} {'core-s per exposure':>20s}")
    for name, wall, busy in (
        ("the tutorial's job, one at a time", classic, classic_busy),
        (f"the tutorial's job, {cores} at a time (the baseline)", parallel, parallel_busy),
        ("canfar-catalogue detect, one after another", detect, loop_busy),
        ("the batch, CLI start to the run's end", to_end, batch_busy),
        ("the batch, CLI start to its exit (--watch)", batch, batch_busy),
    ):
        print(f"  {name:44s} {wall:8.1f} {busy / n:20.2f}")
    print(f"  the batch (to its end): {to_end / parallel:.2f}x the tutorial's job {cores} at a time, "
          f"{to_end / detect:.2f}x the detect loop, {to_end / classic:.2f}x the classic loop; "
          f"core-seconds {batch_busy / parallel_busy:.2f}x the baseline's")
    print("\nthe batch's own time, seconds:")
    for name, seconds in phases.items():
        print(f"  {name:48s} {seconds:7.2f}")
    before = (parent.created - cli_started).total_seconds()
    print(f"  {'the CLI, before the run (its start, the run created)':48s} {before:7.2f}")
    print(f"  {'the CLI, after the run (--watch noticing, exit)':48s} "
          f"{batch - before - (parent.end_time - parent.created).total_seconds():7.2f}")
    print("\nthe batch run's opening, seconds from Running to its first exposure run:")
    for seconds, what in opening:
        print(f"  {seconds:7.2f}  {what}")
    for name, marks in openings.items():
        print(f"\n{name}'s opening, seconds from its creation:")
        for seconds, what in marks:
            print(f"  {seconds:7.2f}  {what}")
    columns = ["dispatch", "claimed", "process start", "download", "detect", "upload", "end", "total"]
    print("\nper exposure, seconds:\n  " + f"{'exposure':10s}" + "".join(f"{c:>14s}" for c in columns))
    for row in rows:
        print("  " + f"{row['exposure']:10s}" + "".join(f"{row[c]:14.2f}" for c in columns))
    print("  " + f"{'median':10s}" + "".join(f"{statistics.median(r[c] for r in rows):14.2f}" for c in columns))
    if jobs:
        columns = ["submitted to Running", "job end to final state", "job"]
        print("\neach job's life (user log events against the run's states), seconds:\n  " + f"{'exposure':10s}"
              + "".join(f"{c:>24s}" for c in columns))
        for job in jobs:
            print("  " + f"{job['exposure']:10s}" + "".join(f"{job[c]:24.2f}" for c in columns))
        print("  " + f"{'median':10s}" + "".join(f"{statistics.median(j[c] for j in jobs):24.2f}" for c in columns))
    print(f"\ncore time idle while the batch ran: {idle:.1%}")
    print(f"the batch's busy core-seconds leave out this benchmark's own sampling of the machine and its "
          f"processes: {sampling:.1f} core-s, {sampling / args.exposures:.2f} per exposure")
    print(f"busy core-seconds: batch {batch_busy:.1f}, detect loop {loop_busy:.1f}: "
          f"{(batch_busy - loop_busy) / args.exposures:.1f} more per exposure in the batch")
    print(f"Prefect server CPU: {server_cpu:.1f} s, {server_cpu / max(len(rows), 1):.2f} s per exposure flow run, "
          f"{1000 * server_cpu / max(logs, 1):.0f} ms per log line ({logs} lines), "
          f"{1000 * server_cpu / max(events, 1):.0f} ms per event ({events} events), each as if it cost all of it")
    print(f"requests the server answered 503 (on SQLite, a lock conflict; Prefect's client waits 2 s, then 4, and "
          f"sends it again): {sum(retried.values())}"
          + "".join(f"\n  {count} x {error}" for error, count in retried.most_common(5)))
    print("CPU by process while the batch ran (/proc/<pid>/stat), core-seconds per exposure:")
    for role, seconds in sorted(processes.by_role().items(), key=lambda item: -item[1]):
        print(f"  {role:72s} {seconds / args.exposures:7.2f}")
    print("  flow runs, by process (core-seconds each):")
    for name, spent in processes.pilot_processes().items():
        if spent:
            print(f"    {name:70s} " + (f"{spent[0]:7.2f}" if len(spent) == 1 else
                                         f"median {statistics.median(spent):.2f} ({spent[0]:.2f}-{spent[-1]:.2f}, {len(spent)})"))
    print("  of which \"other\", the most:")
    for words, seconds in processes.others():
        print(f"    {words:100s} {seconds / args.exposures:7.2f}")
    print("events, by kind:")
    for kind, count in kinds.most_common():
        print(f"  {kind:48s} {count:5d}")


if __name__ == "__main__":
    main()
