"""What Prefect costs: the per-exposure flow against the same work without Prefect.

    python bench/bench_prefect.py [--exposures 2] [--nccd 36] [--repeat 2]

Starts a local Prefect server (SQLite, throwaway home), makes full-size
synthetic exposures, and for each one, in the same run and alternating order:

- direct: the same steps without Prefect (copy from the archive folder with
  md5 check, measure and write the catalogue, store it and its record);
- flow: the ``catalogue-exposure`` flow in this process, against the server.

Prints the median wall time of each and the overhead in percent.  Then the
dispatch latency of a deployment run (created → running on a process worker
polling every 2 s) is measured on its own, with a small exposure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(home: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A Prefect server with ``env`` (this process's environment by default); its output goes to server.log."""
    env = env if env is not None else dict(os.environ)
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start"],
        env=env, stdout=open(home / "server.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = env["PREFECT_API_URL"] + "/health"
    for _ in range(240):
        try:
            urllib.request.urlopen(url, timeout=2)
            return process
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.5)
    raise SystemExit(f"the Prefect server did not start; see {home / 'server.log'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exposures", type=int, default=2)
    parser.add_argument("--nccd", type=int, default=36)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--postgres", action="store_true", help="run the Prefect server on PostgreSQL, not SQLite")
    args = parser.parse_args()
    if args.postgres:
        from postgres import postgres

        with postgres(free_port()) as url:
            os.environ["PREFECT_API_DATABASE_CONNECTION_URL"] = url
            run(args)
    else:
        run(args)


def run(args: argparse.Namespace) -> None:

    home = Path(tempfile.mkdtemp(prefix="bench-prefect-"))
    port = free_port()
    os.environ.update({
        "PREFECT_HOME": str(home / "prefect"), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "PREFECT_LOGGING_LEVEL": "WARNING",
        "CANFAR_CATALOGUE_SCRATCH": str(home / "scratch"), "PREFECT_WORKER_QUERY_SECONDS": "2",
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",  # no nightly run (10:00 UTC) beside the measurement
    })
    from canfar_catalogue import config
    from canfar_catalogue.boundaries.archive import LocalArchive
    from canfar_catalogue.boundaries.provenance import Provenance, catalogue_name, record_name
    from canfar_catalogue.boundaries.storage import LocalStorage
    from canfar_catalogue.science import load_config, run_exposure
    from canfar_catalogue.science.synthetic import ExposureSpec, write_exposure

    server = start_server(home)
    try:
        archive = home / "archive"
        ids = [f"10562{n:02d}p" for n in range(args.exposures)]
        for n, observation_id in enumerate(ids):
            print(f"generating {observation_id} ({args.nccd} CCDs) ...", flush=True)
            write_exposure(archive / f"{observation_id}.fits.fz", ExposureSpec(nccd=args.nccd, seed=100 + n))
        extraction = load_config()
        subprocess.run(
            [str(Path(sys.executable).parent / "prefect"), "global-concurrency-limit", "create",
             config.settings()["download"]["concurrency_limit"], "--limit", "4"],
            check=True, capture_output=True,
        )
        from canfar_catalogue.flows.exposure import catalogue_exposure

        def direct(observation_id: str, out: Path) -> None:
            scratch = home / "scratch" / "direct"
            fetched = LocalArchive(f"file://{archive}").fetch(observation_id, scratch)
            result = run_exposure(fetched.path, extraction, scratch / catalogue_name(observation_id))
            target = LocalStorage(f"file://{out}")
            record = Provenance(observation_id, fetched.md5, extraction.fingerprint(), "", result.count, len(result.ccds))
            record.catalogue_md5 = target.put(result.catalogue, catalogue_name(observation_id))
            (scratch / record_name(observation_id)).write_text(record.to_json())
            target.put(scratch / record_name(observation_id), record_name(observation_id))
            shutil.rmtree(scratch)

        def with_prefect(observation_id: str, out: Path) -> None:
            state = catalogue_exposure(observation_id, f"file://{archive}", f"file://{out}",
                                       config_json=extraction.to_json(), force=True, return_state=True)
            assert state.is_completed(), state.message

        with_prefect(ids[0], home / "warm")  # first flow run imports and registers everything
        times: dict[str, list[float]] = {"direct": [], "flow": []}
        for repeat in range(args.repeat):
            for observation_id in ids:
                order = [("direct", direct), ("flow", with_prefect)]
                if repeat % 2:
                    order.reverse()
                for name, run in order:
                    start = time.perf_counter()
                    run(observation_id, home / name)
                    times[name].append(time.perf_counter() - start)
                    print(f"  {observation_id} {name}: {times[name][-1]:.2f} s", flush=True)
        d, f = statistics.median(times["direct"]), statistics.median(times["flow"])
        database = "PostgreSQL" if os.environ.get("PREFECT_API_DATABASE_CONNECTION_URL") else "SQLite"
        print(f"\nper-exposure flow on {args.nccd}-CCD exposures, Prefect server on {database}, "
              f"median of {len(times['flow'])} paired runs")
        print(f"  direct (same steps, no Prefect) {d:8.2f} s")
        print(f"  catalogue-exposure flow         {f:8.2f} s   overhead {100 * (f - d) / d:+.1f}%")

        print("\ndispatch latency of a deployment run (process worker, 2 s poll) ...", flush=True)
        print(f"  {dispatch_latency(home, archive):.1f} s median from creation to Running")
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def dispatch_latency(home: Path, archive: Path, runs: int = 3) -> float:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    from canfar_catalogue.science.synthetic import ExposureSpec, write_exposure

    write_exposure(archive / "1056213p.fits.fz", ExposureSpec.small(seed=1, nccd=1, size=256))
    env = {
        **os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "CANFAR_CATALOGUE_POOL": "bench-pool", "CANFAR_CATALOGUE_ARCHIVE": f"file://{archive}",
        "CANFAR_CATALOGUE_DESTINATION": f"file://{home}/latency",
    }
    root = Path(__file__).resolve().parents[1]
    subprocess.run(["bash", str(root / "deployments/deploy.sh")], env=env, check=True, capture_output=True)
    worker = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", "bench-pool", "--type", "process"],
        env=env, stdout=open(home / "worker.log", "wb"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    latencies = []
    try:
        for n in range(runs):
            run = run_deployment("catalogue-exposure/exposure", parameters={"observation_id": "1056213p", "force": True},
                                 timeout=300, poll_interval=0.5, as_subflow=False)
            with get_client(sync_client=True) as client:
                run = client.read_flow_run(run.id)
            latencies.append((run.start_time - run.created).total_seconds())
            print(f"  run {n + 1}: {latencies[-1]:.1f} s", flush=True)
    finally:
        os.killpg(worker.pid, 2)  # Prefect's worker stops on SIGINT, not SIGTERM
        worker.wait(timeout=30)
    return statistics.median(latencies)


if __name__ == "__main__":
    main()
