"""What the QA view costs an exposure: the figure and the seeing, on one full-size exposure.

    python bench/bench_qa.py [--nccd 36] [--repeat 3] [--workdir .bench]

In every repetition (paired, so both see the same machine load) it runs
``canfar-catalogue detect`` on the same exposure with and without ``--qa``,
and prints the median wall time of each and their ratio: the figure's whole
cost (matplotlib's import, the drawing, the PNG) when nothing hides it.  In a
flow run matplotlib is imported during the download and the figure is drawn
while the catalogue is stored, so a run pays less: the ``catalogue-exposure``
flow is run on the same exposure against a throwaway Prefect server, and the
time each run waited for its picture (it logs it) is set against the run's
wall time.  It also times, in this process, the seeing measured in each CCD's
worker (every run above includes it) and the drawing alone with matplotlib
already imported.  Record what it prints in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from canfar_catalogue.science import load_config, measure_exposure
from canfar_catalogue.science import measure as measure_module
from canfar_catalogue.science.qa import assess
from canfar_catalogue.science.synthetic import ExposureSpec, write_exposure


def _detect(exposure: Path, workdir: Path, *extra: str) -> float:
    command = [str(Path(sys.executable).with_name("canfar-catalogue")), "detect", str(exposure),
               "-CATALOG_NAME", str(workdir / "bench-qa.cat"), "-q", *extra]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - start


def _seeing_seconds(exposure: Path, ccds: int) -> tuple[float, float]:
    """Seconds spent in measure_seeing, and in the whole measurement, for the first ``ccds`` CCDs (one process)."""
    spent = [0.0]
    original = measure_module.measure_seeing

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - start

    from canfar_catalogue.science import list_ccds
    from canfar_catalogue.science.pipeline import measure_one

    measure_module.measure_seeing = timed
    try:
        config = load_config()
        start = time.perf_counter()
        for ccd in list_ccds(exposure)[:ccds]:
            measure_one(str(exposure), ccd, config)
        return spent[0], time.perf_counter() - start
    finally:
        measure_module.measure_seeing = original


def _flow_runs(exposure: Path, repeat: int) -> tuple[list[float], list[float]]:
    """Wall time of each ``catalogue-exposure`` run, and how long it waited for its QA picture."""
    import os
    import re
    import shutil
    import tempfile

    from bench_prefect import free_port, start_server

    home = Path(tempfile.mkdtemp(prefix="bench-qa-"))
    port = free_port()
    os.environ.update({
        "PREFECT_HOME": str(home / "prefect"), "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_API_HOST": "127.0.0.1", "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DO_NOT_TRACK": "1", "CANFAR_CATALOGUE_SCRATCH": str(home / "scratch"),
    })
    archive = home / "archive"
    archive.mkdir()
    shutil.copy(exposure, archive / "1056213p.fits.fz")
    server = start_server(home)
    try:
        from canfar_catalogue import config

        limit = config.settings()["download"]["concurrency_limit"]
        subprocess.run([str(Path(sys.executable).parent / "prefect"), "global-concurrency-limit", "create", limit,
                        "--limit", "4"], check=True, capture_output=True)
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        from canfar_catalogue.flows.exposure import catalogue_exposure

        walls, waits = [], []
        for repetition in range(repeat + 1):  # the first run imports and registers everything: not counted
            start = time.perf_counter()
            state = catalogue_exposure("1056213p", f"file://{archive}", f"file://{home / 'out'}", force=True,
                                       return_state=True)
            wall = time.perf_counter() - start
            assert state.is_completed(), state.message
            run_id = state.state_details.flow_run_id
            waited = None
            for _ in range(40):  # logs reach the server in batches
                with get_client(sync_client=True) as client:
                    logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])))
                found = [re.search(r"waited ([0-9.]+) s", log.message) for log in logs]
                found = [float(m.group(1)) for m in found if m]
                if found:
                    waited = found[0]
                    break
                time.sleep(0.25)
            if repetition:
                walls.append(wall)
                waits.append(waited if waited is not None else float("nan"))
                print(f"  flow run {repetition}: {wall:.2f} s, waited {waits[-1]:.2f} s for the picture", flush=True)
        return walls, waits
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nccd", type=int, default=36)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(".bench"))
    args = parser.parse_args()
    args.workdir.mkdir(exist_ok=True)
    exposure = args.workdir / f"qa-{args.nccd}.fits.fz"
    if not exposure.exists():
        print(f"writing a full-size {args.nccd}-CCD exposure to {exposure} ...", flush=True)
        write_exposure(exposure, ExposureSpec(nccd=args.nccd, seed=7, pixel_type="float32"))

    plain, with_qa = [], []
    for repetition in range(args.repeat):
        plain.append(_detect(exposure, args.workdir))
        with_qa.append(_detect(exposure, args.workdir, "--qa", str(args.workdir / "bench-qa.png")))
        print(f"  run {repetition + 1}: detect {plain[-1]:.2f} s, detect --qa {with_qa[-1]:.2f} s", flush=True)
    detect, figure = statistics.median(plain), statistics.median(with_qa)

    walls, waits = _flow_runs(exposure, args.repeat)
    seeing, measured = _seeing_seconds(exposure, 4)
    config = load_config()
    result = measure_exposure(exposure, config)
    import matplotlib.backends.backend_agg  # noqa: F401  (imported, as in a flow run by then)
    from canfar_catalogue.science.qa_figure import exposure_figure

    draws = []
    for _ in range(3):
        start = time.perf_counter()
        quality = assess(result, config.mag_zeropoint)
        png = exposure_figure(quality, result.layout, "bench")
        draws.append(time.perf_counter() - start)
    draw = statistics.median(draws)

    print(f"\nfull-size exposure, {args.nccd} CCDs, median of {args.repeat} paired runs")
    print(f"  detect                 {detect:6.2f} s")
    print(f"  detect --qa            {figure:6.2f} s   ratio {figure / detect:.3f}  "
          f"(the figure, unhidden: {figure - detect:+.2f} s, {100 * (figure - detect) / detect:+.1f}%)")
    print(f"  drawing alone          {draw:6.2f} s   {100 * draw / detect:.1f}% of detect  ({len(png) / 1000:.0f} kB PNG)")
    wall, wait = statistics.median(walls), statistics.median(waits)
    print(f"  flow run               {wall:6.2f} s   waited {wait:.2f} s for the picture: {100 * wait / wall:.1f}% "
          "of the run's wall time")
    print(f"  seeing in the workers  {seeing / measured * 100:.1f}% of the CPU time of measuring a CCD "
          f"({seeing / 4 * 1000:.0f} ms per CCD)")


if __name__ == "__main__":
    main()
