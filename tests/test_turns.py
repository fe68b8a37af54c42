"""Exposures on one machine take turns at its cores, and the next one's CCDs follow at once."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

from canfar_catalogue.science import load_config, measure_exposure
from canfar_catalogue.science.synthetic import ExposureSpec, write_exposure
from canfar_catalogue.science.turns import LockFileTurn

HOLDER = """
import sys
from pathlib import Path
from canfar_catalogue.science.turns import LockFileTurn
LockFileTurn(Path(sys.argv[1])).take()
print("held", flush=True)
sys.stdin.read()
"""


class Recorded(LockFileTurn):
    """A lock-file turn that notes, when taken and given back, how many of each exposure's CCDs were done."""

    def __init__(self, path: Path, name: str, events: list, done: dict):
        super().__init__(path)
        self.name, self.events, self.done = name, events, done

    def take(self) -> None:
        super().take()
        self.events.append(("take", self.name, self.done[self.name]))

    def give_back(self) -> None:
        if self._fd is not None:
            self.events.append(("give back", self.name, self.done[self.name]))
        super().give_back()


def test_the_next_exposure_measures_once_the_last_ccds_of_the_one_before_are_in_progress(tmp_path):
    exposures = {}
    for n, name in enumerate(("first", "second")):
        exposures[name] = tmp_path / f"105621{n}p.fits.fz"
        write_exposure(exposures[name], ExposureSpec.small(seed=40 + n, nccd=6, size=512))
    config = load_config()
    alone = {name: measure_exposure(path, config, workers=2).count for name, path in exposures.items()}

    events: list = []
    done = {"first": 0, "second": 0}
    first_holds = threading.Event()
    turns = {name: Recorded(tmp_path / ".measuring", name, events, done) for name in exposures}
    results = {}

    def measure(name: str) -> None:
        def progress(_ccd, count, _total):
            done[name] = count
            if name == "first" and count == 1:
                first_holds.set()

        results[name] = measure_exposure(exposures[name], config, workers=2, progress=progress, turn=turns[name])

    def measure_second() -> None:
        if first_holds.wait(60):
            measure("second")

    # The first in the main thread, as a flow run measures: the CCD workers' fork server dies with
    # the thread that started it, and this one outlives the other.
    second = threading.Thread(target=measure_second)
    second.start()
    measure("first")
    second.join(120)

    assert [e[:2] for e in events] == [("take", "first"), ("give back", "first"), ("take", "second"),
                                       ("give back", "second")]
    # given back once no more CCDs were left than workers (two), before the last one finished
    # (two finishing together make it 5)
    assert events[1][2] in (4, 5)
    assert events[2][2] == 0  # the second had measured nothing before its turn
    assert {name: r.count for name, r in results.items()} == alone
    assert turns["first"]._fd is None and turns["second"]._fd is None


def test_a_turn_is_given_back_when_measuring_fails(tmp_path):
    broken = tmp_path / "broken.fits.fz"
    broken.write_bytes(b"SIMPLE  =                    T" + b" " * 50)
    turn = LockFileTurn(tmp_path / ".measuring")
    try:
        measure_exposure(broken, load_config(), workers=2, turn=turn)
    except Exception:
        pass
    other = LockFileTurn(tmp_path / ".measuring")
    other.take()  # would block for ever if the failed exposure kept it
    other.give_back()


def test_a_killed_run_does_not_keep_the_turn(tmp_path):
    lock = tmp_path / ".measuring"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        waiting = []
        turn = LockFileTurn(lock, waiting=lambda: waiting.append(True))
        taken = threading.Thread(target=turn.take, daemon=True)
        taken.start()
        taken.join(1.0)
        assert taken.is_alive() and waiting == [True]  # held by the other process
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        taken.join(10)
        assert not taken.is_alive(), "the turn stayed taken after its holder was killed"
        turn.give_back()
    finally:
        holder.kill()
        holder.wait()
