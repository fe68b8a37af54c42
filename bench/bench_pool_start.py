"""What starting a flow run's CCD workers costs: a fork server started as a new Python, or forked warm.

    python bench/bench_pool_start.py [--repeat 3]

Each measurement is a fresh process that imports what a flow run's process
has imported (the exposure flow: Prefect, the science), starts a thread (a
flow run has several, so its CCD workers come through a fork server), then
opens the CCD worker pool with 2 workers and waits for its first task.
"spawned" lets multiprocessing start the fork server, a new interpreter that
imports the science again; "warm" forks it from the process first, as a
pilot's copy does (``science/warm_forkserver.py``).  Printed: the wall time
to the first task, and the core-seconds of the fork server and its workers
(``RUSAGE_CHILDREN`` after they are waited for), each the median of the
runs, and their ratio.  Record what it prints in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

ONE = """
import json, os, resource, sys, threading, time

def main(warm):
    from multiprocessing import forkserver
    import canfar_catalogue.flows.exposure  # what a flow run's process has imported
    from canfar_catalogue.science import pipeline, warm_forkserver
    if warm:
        warm_forkserver.start()
    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()  # a flow run has threads
    started = time.perf_counter()
    with pipeline._pool(2) as pool:
        pool.submit(os.getpid).result()
        first = time.perf_counter() - started
    forkserver._forkserver._stop()  # the fork server exits and is waited for: its CPU is counted
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"first": first, "cpu": used.ru_utime + used.ru_stime}))

if __name__ == "__main__":
    main(sys.argv[1] == "warm")
"""


def measure(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", ONE, mode], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"spawned": [], "warm": []}
    for _ in range(args.repeat):  # in turn, so that both see the same machine
        for mode in runs:
            runs[mode].append(measure(mode))
    medians = {mode: {key: statistics.median(r[key] for r in rows) for key in ("first", "cpu")}
               for mode, rows in runs.items()}
    print(f"{'fork server':12s} {'first task, s':>14s} {'core-s':>8s}   (median of {args.repeat})")
    for mode, m in medians.items():
        print(f"{mode:12s} {m['first']:14.3f} {m['cpu']:8.3f}")
    spawned, warm = medians["spawned"], medians["warm"]
    print(f"warm / spawned: first task {warm['first'] / spawned['first']:.2f}x, "
          f"core-s {warm['cpu'] / spawned['cpu']:.2f}x ({spawned['cpu'] - warm['cpu']:.2f} core-s saved per exposure)")


if __name__ == "__main__":
    main()
