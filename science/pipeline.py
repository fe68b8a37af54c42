"""One exposure in, one catalogue out: CCDs measured in parallel worker processes.

sep holds the GIL for its whole run and astropy's decompression does not
scale with threads (measured: two threads are slower than one), so CCDs go to
worker processes.  Each worker opens the file itself and decompresses only
its CCD, so no pixel array is ever pickled between processes.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Callable

from . import cores
from .catalogue import write_catalogue
from .check_image_files import CheckImageFiles, encode_ccd
from .errors import CCDError, ExposureError
from .exposure import CCD, list_ccds, read_ccd, read_flags, read_weights
from .external_header import merged, read_blocks
from .focal_plane import layout
from .measure import EmptyCCD, measure_ccd
from .lifetime import PARENT_ENV, die_with_parent
from .memory import reuse_freed_memory
from .results import CCDResult, ExposureResult, Extraction
from .sexconfig import ExtractionConfig, MissingZeropoint
from .turns import Turn


def measure_one(
    path: str, ccd: CCD, config: ExtractionConfig, flag_ccd: CCD | None = None, weight_ccd: CCD | None = None
) -> CCDResult:
    """Read and measure a single CCD, with its flag map's ``flag_ccd`` and its weight map's
    ``weight_ccd`` when the configuration reads them; bad data becomes an error on the result,
    not an exception."""
    start = time.perf_counter()
    try:
        data, header = read_ccd(path, ccd)
        flags = read_flags(config.flag_image, flag_ccd, data.shape) if flag_ccd is not None else None
        weights = read_weights(config.weight_image, weight_ccd, data.shape) if weight_ccd is not None else None
        measured = measure_ccd(data, header, config, ccd.ext_number, flag_map=flags, weight_map=weights)
        check = encode_ccd(config.check_images, measured.check.make, header, config.back_size) if measured.check \
            else None
    except (CCDError, EmptyCCD, MissingZeropoint) as exc:
        reason = exc.reason if isinstance(exc, CCDError) else str(exc)
        return CCDResult(ccd.ext_number, ccd.extname, time.perf_counter() - start, error=reason)
    return CCDResult(
        ccd.ext_number,
        ccd.extname,
        time.perf_counter() - start,
        sources=measured.sources,
        background=measured.background,
        rms=measured.rms,
        threshold=measured.threshold,
        seeing=measured.seeing,
        magnitudes=measured.magnitudes,
        saturated=measured.saturated,
        zeropoint=measured.zeropoint,
        check_images=check,
    )


#: The parent's main module, by name, for the fork server (:mod:`.forkserver_preload`).
MAIN_ENV = "CANFAR_CATALOGUE_POOL_MAIN"


def with_external_header(ccds: list[CCD], header_file: str) -> list[CCD]:
    """The CCDs with the external header's cards over their own (HEADER_SUFFIX): the n-th block for
    the n-th image extension, as source-extractor reads it; a CCD with no block keeps its header."""
    if not header_file:
        return ccds
    blocks = read_blocks(header_file)
    return [dataclasses.replace(ccd, header=merged(ccd.header, blocks[ccd.ext_number - 1]))
            if ccd.header is not None and ccd.ext_number <= len(blocks) else ccd for ccd in ccds]


def default_workers() -> int:
    """One process per core the scheduler gives us (an HTCondor slot or a cgroup may give fewer than the
    machine has: :mod:`.cores`)."""
    return cores.available()


def _pool(workers: int) -> ProcessPoolExecutor:
    """Worker processes that start with our modules already imported.

    A single-threaded parent (the CLI) is forked directly.  A parent with
    other threads (a Prefect task run, HTTP clients) must not fork, so it uses
    a fork server that imports the science modules once and forks workers
    from it.  Either way the workers die with their parent.
    """
    if threading.active_count() == 1:
        context = multiprocessing.get_context("fork")
        parent: int | None = os.getpid()
    else:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([f"{__package__}.forkserver_preload"])
        os.environ[PARENT_ENV] = str(os.getpid())  # read by the fork server when it starts
        os.environ[MAIN_ENV] = getattr(sys.modules["__main__"].__spec__, "name", None) or ""
        parent = None  # the fork server, alive when it forks a worker
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_start_worker, initargs=(parent,)
    )


def _started() -> None:
    """Nothing: submitted once per worker, to have them all started (and importing done)."""


class _NoTurn:
    """Measuring alone: nothing to wait for."""

    def take(self) -> None:
        pass

    def give_back(self) -> None:
        pass


_NO_TURN = _NoTurn()


def _start_worker(parent: int | None) -> None:
    """Each CCD worker dies with the process that started it, and reuses freed memory."""
    die_with_parent(parent)
    reuse_freed_memory()


def measure_exposure(
    path: str | Path,
    config: ExtractionConfig,
    *,
    workers: int | None = None,
    progress: Callable[[CCDResult, int, int], None] | None = None,
    turn: Turn | None = None,
) -> ExposureResult:
    """Measure every CCD of an exposure.

    Raises :class:`ExposureError` for a file that cannot be used at all (before
    any CCD is measured).  A bad CCD is recorded on the result and skipped.
    ``progress(result, done, total)`` is called as each CCD finishes.  With a
    ``turn`` (:mod:`.turns`), the CCD workers are started first, the turn is
    taken before the first CCD and given back once the last CCDs are in
    progress, so that the next exposure's CCDs follow on the cores at once.
    """
    path = Path(path)
    start = time.perf_counter()
    ccds = with_external_header(list_ccds(path), config.header_file)
    flag_ccds = _matching_ccds(config.flag_image, "flag map", path, ccds) if config.flag_image else [None] * len(ccds)
    weight_ccds = (_matching_ccds(config.weight_image, "weight map", path, ccds) if config.weight_image
                   else [None] * len(ccds))
    workers = min(workers or default_workers(), len(ccds))
    result = ExposureResult(path, layout=layout(ccds), headers={c.ext_number: c.header or "" for c in ccds})
    check_files = CheckImageFiles(config.check_images, result.headers, config.back_size)

    def finished(ccd_result: CCDResult) -> None:
        check_files.add(ccd_result)
        result.ccds.append(ccd_result)
        if progress:
            progress(ccd_result, len(result.ccds), len(ccds))

    held = turn or _NO_TURN

    def take_turn() -> None:
        asked = time.perf_counter()
        held.take()
        result.waited = time.perf_counter() - asked

    try:
        with check_files:  # written in place only if some CCD was measured
            _measure_all(path, config, ccds, flag_ccds, weight_ccds, workers, turn, held, take_turn, finished)
            result.ccds.sort(key=lambda c: c.ext_number)
            if len(result.failed) == len(result.ccds):
                reasons = "; ".join(f"{c.label}: {c.error}" for c in result.failed[:3])
                raise ExposureError(f"{path}: no CCD could be measured ({reasons})")
    finally:
        held.give_back()
    result.check_images = check_files.written
    result.seconds = time.perf_counter() - start - result.waited
    return result


def _measure_all(path: Path, config: ExtractionConfig, ccds: list[CCD], flag_ccds: list, weight_ccds: list,
                 workers: int, turn: Turn | None, held, take_turn: Callable[[], None],
                 finished: Callable[[CCDResult], None]) -> None:
    """Measure every CCD, in this process or in ``workers`` worker processes, calling ``finished`` with each."""
    if workers <= 1:
        reuse_freed_memory()
        take_turn()
        for ccd, flag_ccd, weight_ccd in zip(ccds, flag_ccds, weight_ccds):
            finished(measure_one(str(path), ccd, config, flag_ccd, weight_ccd))
    else:
        with _pool(workers) as pool:
            if turn is not None:
                wait([pool.submit(_started) for _ in range(workers)])  # workers up before the turn
            take_turn()
            pending = {pool.submit(measure_one, str(path), ccd, config, flag_ccd, weight_ccd)
                       for ccd, flag_ccd, weight_ccd in zip(ccds, flag_ccds, weight_ccds)}
            while pending:
                if len(pending) <= workers:  # every CCD left is in a worker's hands
                    held.give_back()
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    finished(future.result())


def _matching_ccds(companion: str, what: str, path: Path, ccds: list[CCD]) -> list[CCD]:
    """The CCDs of an image that goes with the exposure CCD by CCD (a flag or weight map), checked to match."""
    theirs = list_ccds(companion)
    if len(theirs) != len(ccds):
        raise ExposureError(f"{companion}: the {what} has {len(theirs)} image extensions and the exposure "
                            f"{path.name} has {len(ccds)}; it must match the exposure CCD by CCD")
    return theirs


def run_exposure(
    path: str | Path,
    config: ExtractionConfig,
    catalogue: str | Path | None = None,
    *,
    workers: int | None = None,
    progress: Callable[[CCDResult, int, int], None] | None = None,
    turn: Turn | None = None,
) -> ExposureResult:
    """Measure an exposure and write its catalogue atomically (CATALOG_NAME by default; none for
    CATALOG_TYPE NONE), and the check images its configuration asks for."""
    result = measure_exposure(path, config, workers=workers, progress=progress, turn=turn)
    if config.catalog_type == "NONE":
        return result
    target = Path(catalogue if catalogue is not None else config.catalog_name)
    about = Extraction(Path(path).name, config, result)
    result.catalogue = write_catalogue(target, result.blocks(), config.parameters, config.catalog_type, about)
    return result
