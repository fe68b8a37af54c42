"""A night's traffic against one Prefect server: SQLite and PostgreSQL side by side.

    python bench/load_prefect.py [--runs 1000] [--seconds 60]

For each database, a fresh Prefect server is started and ``--runs``
per-exposure flow runs are driven through its API at once, the way the
htcondor worker and its jobs' engines would drive them: each run is submitted
as a job to the fake schedd (``tests/fake_schedd.py``, which stands in for the
pool and runs nothing here), then Scheduled, Pending, Running; four
task runs (archive checksum, download, detect, upload), each Pending, Running,
Completed; a dozen log lines in two batches; the two artifacts of a real run;
Completed.  The steps of a run are spread over ``--seconds`` (compressed
runtime), so all runs overlap.  No flow code runs: this measures the server.

Reported per database: state transitions per second, p50 and p99 latency of
the API calls, calls that failed after the client's own retries, and runs
lost (not found) or stuck (not Completed) at the end.  Needs Debian's
``postgresql`` for the PostgreSQL half (``bench/postgres.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parents[1])]  # bench helpers, tests' fakes
from bench_prefect import free_port, start_server  # noqa: E402

TASKS = ("archive checksum", "download", "detect", "upload")


def server_environment(home: Path, port: int, database_url: str | None) -> dict[str, str]:
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    return env


class Meter:
    """Latency of every API call, retried as Prefect's own client retries (5 times, exponential back-off,
    on 408/429/502/503 and dropped or timed-out connections); what still fails is an error."""

    RETRY_CODES = (408, 429, 502, 503)

    def __init__(self, http):
        import httpx

        self.http = http
        self.retry_exceptions = (httpx.ReadTimeout, httpx.PoolTimeout, httpx.ConnectTimeout, httpx.ReadError,
                                 httpx.WriteError, httpx.RemoteProtocolError, httpx.LocalProtocolError)
        self.latencies: list[float] = []
        self.errors: list[str] = []
        self.transitions = 0

    async def post(self, path: str, body, transition: bool = False):
        retried = False
        for attempt in range(6):
            started = time.perf_counter()
            try:
                response = await self.http.post(path, json=body)
            except self.retry_exceptions as exc:
                self.latencies.append(time.perf_counter() - started)
                if attempt == 5:
                    self.errors.append(type(exc).__name__)
                    return None
                retried = True
                await asyncio.sleep(2**attempt + random.random())
                continue
            self.latencies.append(time.perf_counter() - started)
            if response.status_code in self.RETRY_CODES and attempt < 5:
                retried = True
                await asyncio.sleep(2**attempt + random.random())
                continue
            if response.status_code >= 400:
                self.errors.append(f"HTTP {response.status_code}")
                return None
            result = response.json()
            if transition:
                accepted = result.get("status") == "ACCEPT"
                if not accepted and retried:  # an earlier try went through before its answer was lost
                    accepted = await self._already(path, body["state"]["type"])
                self.transitions += accepted
                if not accepted:
                    self.errors.append(f"transition refused: {result.get('details', {}).get('reason', '')[:60]}")
            return result
        return None

    async def _already(self, set_state_path: str, kind: str) -> bool:
        response = await self.http.get(set_state_path.rsplit("/", 1)[0])
        return response.status_code == 200 and (response.json().get("state") or {}).get("type") == kind


def _state(kind: str) -> dict:
    return {"type": kind, "name": kind.title()}


async def one_run(meter: Meter, schedd, flow_id: str, index: int, seconds: float) -> str | None:
    import htcondor2

    pause = seconds / 12
    await asyncio.sleep(random.uniform(0, pause))
    run = await meter.post("/flow_runs/", {"flow_id": flow_id, "name": f"{1057000 + index}p", "state": _state("SCHEDULED")})
    if run is None:
        return None
    job = htcondor2.Submit({"executable": "/bin/true", "MY.CanfarFlowRunId": f'"{run["id"]}"',
                            "MY.VMType": '"megapipe:canfar-catalogue"', "MY.VMInstanceType": '"c2-7.5gb-30"'})
    await asyncio.to_thread(schedd.submit, job)
    for kind in ("PENDING", "RUNNING"):
        await meter.post(f"/flow_runs/{run['id']}/set_state", {"state": _state(kind)}, transition=True)
    for task in TASKS:
        task_run = await meter.post("/task_runs/", {
            "flow_run_id": run["id"], "task_key": task, "dynamic_key": "0", "name": task, "state": _state("PENDING"),
        })
        if task_run is None:
            continue
        await meter.post(f"/task_runs/{task_run['id']}/set_state", {"state": _state("RUNNING")}, transition=True)
        await asyncio.sleep(random.uniform(0.5, 1.5) * pause)
        await meter.post(f"/task_runs/{task_run['id']}/set_state", {"state": _state("COMPLETED")}, transition=True)
        if task == "detect":
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            logs = [{"name": "prefect.task_runs", "level": 20, "message": f"[{n + 1}/12] ccd{n:02d}: 300 sources",
                     "timestamp": now, "flow_run_id": run["id"], "task_run_id": task_run["id"]} for n in range(12)]
            for batch in (logs[:6], logs[6:]):
                await meter.post("/logs/", batch)
    for key, kind, data in ((f"exposure-{1057000 + index}p", "table", [{"ccd": "ccd00", "sources": 300}]),
                            (f"exposure-{1057000 + index}p-summary", "markdown", "### done")):
        await meter.post("/artifacts/", {"key": key, "type": kind, "data": data, "flow_run_id": run["id"]})
    await meter.post(f"/flow_runs/{run['id']}/set_state", {"state": _state("COMPLETED")}, transition=True)
    return run["id"]


async def load(url: str, runs: int, seconds: float) -> dict:
    import httpx

    from tests.fake_schedd import FakeSchedd

    state = Path(tempfile.mkdtemp(prefix="load-schedd-"))
    (state / "matchmaking").touch()  # jobs wait for an execute node that never comes: nothing runs
    schedd = FakeSchedd(state)
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as http:
        meter = Meter(http)
        flow = await meter.post("/flows/", {"name": "catalogue-exposure"})
        started = time.perf_counter()
        ids = await asyncio.gather(*(one_run(meter, schedd, flow["id"], i, seconds) for i in range(runs)))
        wall = time.perf_counter() - started
        created = [i for i in ids if i]
        states: dict[str, str] = {}
        for chunk in range(0, len(created), 200):
            found = await http.post("/flow_runs/filter", json={"flow_runs": {"id": {"any_": created[chunk:chunk + 200]}}, "limit": 200})
            states.update({r["id"]: (r.get("state") or {}).get("type", "NONE") for r in found.json()})
    latencies = sorted(meter.latencies)
    return {
        "transitions_per_s": meter.transitions / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
        "calls": len(latencies),
        "errors": len(meter.errors),
        "error_kinds": sorted(set(meter.errors)),
        "lost": runs - len(states),
        "jobs": len(schedd.ads()),
        "stuck": sum(1 for s in states.values() if s != "COMPLETED"),
        "wall_s": wall,
    }


@contextmanager
def _database(name: str) -> Iterator[str | None]:
    """The server's database URL: None for its own SQLite file, or a throwaway PostgreSQL."""
    if name == "sqlite":
        yield None
        return
    from postgres import postgres

    with postgres(free_port()) as url:
        yield url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0, help="compressed runtime of one run (default 60)")
    parser.add_argument("--only", choices=("sqlite", "postgres"))
    args = parser.parse_args()
    random.seed(1)
    results = {}
    for database in ("sqlite", "postgres"):
        if args.only and database != args.only:
            continue
        home = Path(tempfile.mkdtemp(prefix=f"load-{database}-"))
        port = free_port()
        with _database(database) as url:
            server = start_server(home, server_environment(home, port, url))
            try:
                results[database] = asyncio.run(load(f"http://127.0.0.1:{port}/api", args.runs, args.seconds))
            finally:
                server.terminate()
                server.wait(30)
    print(f"{args.runs} concurrent per-exposure runs, steps spread over {args.seconds:g} s")
    print(f"{'database':<10} {'transitions/s':>13} {'p50 ms':>8} {'p99 ms':>8} {'calls':>7} {'errors':>7} {'lost':>5} {'stuck':>6} {'jobs':>5} {'wall s':>7}")
    for database, r in results.items():
        print(f"{database:<10} {r['transitions_per_s']:>13.1f} {r['p50_ms']:>8.0f} {r['p99_ms']:>8.0f} {r['calls']:>7} "
              f"{r['errors']:>7} {r['lost']:>5} {r['stuck']:>6} {r['jobs']:>5} {r['wall_s']:>7.0f}  {' '.join(r['error_kinds'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
