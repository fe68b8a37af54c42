"""Run one test again and again, and count how often it fails: for races that a single run rarely shows.

    python bench/repeat_test.py [--times 20] [NODE ...]

NODE defaults to the fault matrix's server-restart row.  Each run is a fresh
``pytest`` session (its own Prefect server), one after another.  Prints a line
per run and the tally; the output of every failed run is kept in
``bench/repeat-<n>.log`` beside this script.  Not part of CI: a run of 20
takes about 25 minutes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]
DEFAULT = ["tests/test_faults.py::test_a_server_restarted_mid_batch_loses_nothing"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--times", type=int, default=20, help="how many runs (20)")
    parser.add_argument("nodes", nargs="*", default=DEFAULT, help="pytest node ids (the server-restart row)")
    arguments = parser.parse_args()
    failed = 0
    for n in range(1, arguments.times + 1):
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *arguments.nodes],
                              cwd=ROOT, capture_output=True, text=True)
        verdict = "pass" if done.returncode == 0 else "FAIL"
        if done.returncode:
            failed += 1
            (Path(__file__).parent / f"repeat-{n}.log").write_text(done.stdout + done.stderr)
        print(f"run {n:2d}: {verdict} in {time.monotonic() - started:.0f} s", flush=True)
    print(f"{failed} of {arguments.times} runs failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
