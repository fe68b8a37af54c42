"""Classic funpack + source-extractor against our pipeline on one full-size exposure.

    python bench/bench_science.py [--nccd 36] [--repeat 3] [--workdir .bench] [--threads] [--weights] [--check-images]
                                  [--floor]

Runs the variants in turn on the same Rice-compressed exposure, in every
repetition (paired, so all see the same machine load): the tutorial's
configuration, then a survey's ``.param`` (every supported column, apertures
and light fractions as vectors) with source-extractor given the same.  Prints the
median wall time and core-seconds (user + system of the whole process tree)
of each, with their ratios to classic taken run by run, the peak resident
memory of the whole process tree, and the bytes each leaves on disk.  Record
what it prints in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from canfar_catalogue import config
from canfar_catalogue.science.columns import COLUMNS
from canfar_catalogue.science.sexconfig import FLAG_COLUMNS
from canfar_catalogue.science.synthetic import ExposureSpec, beside, write_exposure, write_weights

#: A survey's .param: every column we support but the VIGNET stamps, the vectors as survey pipelines
#: ask for them.
SURVEY_SIZES = {"FLUX_APER": 3, "FLUXERR_APER": 3, "MAG_APER": 3, "MAGERR_APER": 3, "FLUX_RADIUS": 2}
SURVEY_SETTINGS = ["-PHOT_APERTURES", "5,10,20", "-PHOT_FLUXFRAC", "0.5,0.9"]


WEIGHTED_CLASSIC = "classic, MAP_WEIGHT (the weight map funpacked too)"
CHECK_CLASSIC = "classic, 3 check images"
#: Three check images a user asks for most: the segmentation, the background and the image without sources.
CHECK_TYPES = ["-CHECKIMAGE_TYPE", "SEGMENTATION,BACKGROUND,-OBJECTS"]


# sep's own calls and the decoder on every CCD, nothing of ours around them: what sep left unmodified
# costs before any column is measured.  The same calls with the same settings as measure_ccd's for the
# tutorial's configuration (source-extractor's defaults), in one process; sep.extract through
# measure_ccd's own call of it (its pixel stack, grown only when a CCD overflows it).
FLOOR = """
import sys
import numpy as np, sep
from canfar_catalogue.science import list_ccds, load_config
from canfar_catalogue.science.exposure import read_ccd
from canfar_catalogue.science.measure import _extract
from canfar_catalogue.science.memory import reuse_freed_memory
reuse_freed_memory()  # as our CCD workers do
path = sys.argv[1]
config = load_config()
kernel = config.kernel()
for ccd in list_ccds(path):
    data, _ = read_ccd(path, ccd)
    background = sep.Background(data, bw=config.back_size[0], bh=config.back_size[1], fw=config.back_filtersize[0],
                                fh=config.back_filtersize[1], fthresh=config.back_filtthresh)
    data -= background.back(dtype=np.float32)
    _extract(data, config.detect_thresh * background.globalrms, minarea=config.detect_minarea,
             filter_kernel=kernel, filter_type="conv", deblend_nthresh=config.deblend_nthresh,
             deblend_cont=config.deblend_mincont, clean=config.clean, clean_param=config.clean_param,
             segmentation_map=True)
"""


def write_survey_param(path: Path) -> Path:
    columns = [name for name, column in COLUMNS.items() if column.dims < 2 and name not in FLAG_COLUMNS]
    path.write_text("".join(f"{c}({SURVEY_SIZES[c]})\n" if c in SURVEY_SIZES else f"{c}\n" for c in columns))
    return path


# The same per-CCD work in two threads of one process.
THREADED = """
import sys
from concurrent.futures import ThreadPoolExecutor
from canfar_catalogue.science import list_ccds, load_config
from canfar_catalogue.science.pipeline import measure_one
path = sys.argv[1]
config = load_config()
with ThreadPoolExecutor(2) as pool:
    list(pool.map(lambda ccd: measure_one(path, ccd, config), list_ccds(path)))
"""


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    total = 0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f"/proc/{p}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as children:
                    stack.extend(int(c) for c in children.read().split())
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def _children_cpu() -> float:
    """User + system seconds of every child process waited for so far (each waits for its own)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_measured(commands: list[list[str]], cwd: Path) -> tuple[float, float, int]:
    """Run commands one after the other; wall seconds, core-seconds of the process trees and peak tree RSS."""
    peak = 0
    start, cpu = time.perf_counter(), _children_cpu()
    for command in commands:
        process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        done = threading.Event()

        def sample(process: subprocess.Popen = process, done: threading.Event = done) -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, _tree_rss(process.pid))
                done.wait(0.05)

        sampler = threading.Thread(target=sample)
        sampler.start()
        _, err = process.communicate()
        done.set()
        sampler.join()
        if process.returncode not in (0, 3):
            raise SystemExit(f"{command[0]} failed ({process.returncode}): {err.decode()[-2000:]}")
    return time.perf_counter() - start, _children_cpu() - cpu, peak


def disk_bytes(directory: Path, before: set[Path]) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p not in before and p.is_file())


TUTORIAL = "classic funpack -D + source-extractor"
SURVEY_CLASSIC = f"{TUTORIAL}, survey .param"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nccd", type=int, default=36)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path(".bench"))
    parser.add_argument("--pixels", choices=("uint16", "float32"), default="uint16",
                        help="pixel type of the synthetic exposure (float32 like processed MegaCam files)")
    parser.add_argument("--threads", action="store_true",
                        help="also run the CCDs in two threads of one process (shows that sep holds the GIL)")
    parser.add_argument("--weights", action="store_true",
                        help="also both with the exposure's weight map (WEIGHT_TYPE MAP_WEIGHT); source-extractor "
                        "gets it funpacked too, as the tutorial would")
    parser.add_argument("--check-images", action="store_true",
                        help="also both writing SEGMENTATION, BACKGROUND and -OBJECTS check images (ours as .fits, "
                        "as source-extractor writes them, and tile-compressed as .fits.fz, as the flows store them)")
    parser.add_argument("--floor", action="store_true",
                        help="also sep's calls and the decoder alone on every CCD, one process: the floor under "
                        "ours with sep unmodified")
    args = parser.parse_args()

    sextractor = shutil.which("source-extractor") or shutil.which("sex")
    funpack = shutil.which("funpack")
    if not (sextractor and funpack):
        raise SystemExit("needs Debian's source-extractor and funpack: apt-get install source-extractor libcfitsio-bin")
    ours = [sys.executable, "-m", "canfar_catalogue.cli.main", "detect"]

    args.workdir.mkdir(exist_ok=True)
    exposure = args.workdir / f"bench-{args.nccd}ccd-{args.pixels}.fits.fz"
    if not exposure.exists():
        print(f"generating {exposure} ({args.nccd} CCDs of 2048x4612, {args.pixels}) ...", flush=True)
        write_exposure(exposure, ExposureSpec(nccd=args.nccd, seed=1056213, pixel_type=args.pixels))
    weights = beside(exposure, "weight")
    if args.weights and not weights.exists():
        print(f"generating {weights} ...", flush=True)
        write_weights(weights, ExposureSpec(nccd=args.nccd, seed=1056213, pixel_type=args.pixels))
    sex = str(config.path("default.sex"))
    conv = str(config.path("default.conv"))
    param = str(config.path("default.param"))
    survey = str(write_survey_param(args.workdir.resolve() / "survey.param"))
    nnw = str(config.path("default.nnw"))

    def classic(d: Path, *options: str) -> list[list[str]]:
        return [
            [funpack, "-D", "-O", str(d / "x.fits"), str(d / "x.fits.fz")],
            [sextractor, "x.fits", "-c", sex, "-FILTER_NAME", conv, "-STARNNW_NAME", nnw, *options],
        ]

    variants = {
        TUTORIAL: lambda d: classic(d, "-PARAMETERS_NAME", param, "-CATALOG_NAME", "c.cat"),
        "ours, 1 process": lambda d: [[*ours, str(exposure.resolve()), "-q", "--workers", "1", "-CATALOG_NAME", "serial.cat"]],
        "ours, 2 processes": lambda d: [[*ours, str(exposure.resolve()), "-q", "--workers", "2", "-CATALOG_NAME", "parallel.cat"]],
        SURVEY_CLASSIC: lambda d: classic(d, "-PARAMETERS_NAME", survey, *SURVEY_SETTINGS, "-CATALOG_NAME", "s.cat"),
        "ours, 1 process, survey .param": lambda d: [[*ours, str(exposure.resolve()), "-q", "--workers", "1",
                                                       "-PARAMETERS_NAME", survey, *SURVEY_SETTINGS, "-CATALOG_NAME", "s.cat"]],
        "ours, 2 processes, survey .param": lambda d: [[*ours, str(exposure.resolve()), "-q", "--workers", "2",
                                                         "-PARAMETERS_NAME", survey, *SURVEY_SETTINGS, "-CATALOG_NAME", "s.cat"]],
    }
    if args.weights:
        weighted = ["-WEIGHT_TYPE", "MAP_WEIGHT"]
        variants[WEIGHTED_CLASSIC] = lambda d: [
            [funpack, "-D", "-O", str(d / "w.fits"), str(d / "w.fits.fz")],
            *classic(d, "-PARAMETERS_NAME", param, "-CATALOG_NAME", "cw.cat", *weighted, "-WEIGHT_IMAGE", "w.fits"),
        ]
        variants["ours, 2 processes, MAP_WEIGHT"] = lambda d: [[
            *ours, str(exposure.resolve()), "-q", "--workers", "2", "-CATALOG_NAME", "w.cat", *weighted,
            "-WEIGHT_IMAGE", str(weights.resolve())]]
    if args.check_images:
        def names(suffix: str) -> list[str]:
            return [*CHECK_TYPES, "-CHECKIMAGE_NAME", ",".join(f"{n}{suffix}" for n in ("seg", "back", "subobj"))]
        variants[CHECK_CLASSIC] = lambda d: classic(d, "-PARAMETERS_NAME", param, "-CATALOG_NAME", "k.cat", *names(".fits"))
        variants["ours, 2 processes, 3 check images (.fits)"] = lambda d: [[
            *ours, str(exposure.resolve()), "-q", "--workers", "2", "-CATALOG_NAME", "k.cat", *names(".fits")]]
        variants["ours, 2 processes, 3 check images (.fits.fz)"] = lambda d: [[
            *ours, str(exposure.resolve()), "-q", "--workers", "2", "-CATALOG_NAME", "k.cat", *names(".fits.fz")]]
    if args.floor:
        variants["sep's calls and the decoder alone, 1 process"] = lambda d: [[sys.executable, "-c", FLOOR,
                                                                              str(exposure.resolve())]]
    if args.threads:
        variants["ours, 2 threads (to show sep holds the GIL)"] = lambda d: [[sys.executable, "-c", THREADED, str(exposure.resolve())]]
    times: dict[str, list[float]] = {name: [] for name in variants}
    cores: dict[str, list[float]] = {name: [] for name in variants}
    peaks: dict[str, int] = {name: 0 for name in variants}
    written: dict[str, int] = {}
    for repeat in range(args.repeat):
        for name, commands in variants.items():
            work = args.workdir / "run"
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir()
            shutil.copy(exposure, work / "x.fits.fz")  # funpack -D deletes its input, as in the tutorial
            if args.weights:
                shutil.copy(weights, work / "w.fits.fz")
            before = set(work.iterdir())
            seconds, cpu, peak = run_measured(commands(work.resolve()), work)
            times[name].append(seconds)
            cores[name].append(cpu)
            peaks[name] = max(peaks[name], peak)
            written[name] = disk_bytes(work, before)
            print(f"  run {repeat + 1}: {name}: {seconds:.2f} s, {cpu:.2f} core-s", flush=True)
        shutil.rmtree(args.workdir / "run", ignore_errors=True)

    def reference(name: str) -> str:
        """The classic run with the same .param, weights and check images."""
        return SURVEY_CLASSIC if "survey" in name else WEIGHTED_CLASSIC if "MAP_WEIGHT" in name \
            else CHECK_CLASSIC if "check images" in name else TUTORIAL

    def paired(figures: dict[str, list[float]], name: str) -> float:
        """The median of the ratios run by run: each pair saw the same machine load."""
        return statistics.median(a / b for a, b in zip(figures[name], figures[reference(name)]))

    print(f"\n{args.nccd} {args.pixels} CCDs of 2048x4612, median of {args.repeat} paired runs, {os.cpu_count()} cores; "
          "each ratio is to classic with the same .param, weights and check images, pair by pair; core-s are user + "
          "system seconds of the whole process tree")
    print(f"{'variant':52s} {'wall s':>8s} {'ratio':>6s} {'core-s':>8s} {'ratio':>6s} {'peak RSS MB':>12s} "
          f"{'disk MB':>9s}")
    for name in variants:
        print(f"{name:52s} {statistics.median(times[name]):8.2f} {paired(times, name):6.2f} "
              f"{statistics.median(cores[name]):8.2f} {paired(cores, name):6.2f} {peaks[name] / 1e6:12.0f} "
              f"{written[name] / 1e6:9.1f}")


if __name__ == "__main__":
    main()
