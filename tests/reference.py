"""Run Debian's funpack + source-extractor, the reference our science is measured against."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import ascii
from astropy.table import Table

from canfar_catalogue.science.columns import COLUMNS
from canfar_catalogue.science.sexconfig import FLAG_COLUMNS

SEXTRACTOR = shutil.which("source-extractor") or shutil.which("sex")
FUNPACK = shutil.which("funpack")
#: Every column that takes no size (VIGNET needs one) and reads no flag map (IMAFLAGS_ISO); those have their own tests.
ALL_COLUMNS = tuple(name for name, column in COLUMNS.items() if column.dims < 2 and name not in FLAG_COLUMNS)


def have_reference() -> bool:
    return SEXTRACTOR is not None and FUNPACK is not None


def write_param(path: Path, columns=ALL_COLUMNS) -> Path:
    path.write_text("\n".join(columns) + "\n")
    return path


def run_sextractor(image: Path, workdir: Path, param: Path, *extra: str, name: str = "classic.cat") -> Path:
    """source-extractor with our packaged default.sex/default.conv/default.nnw (Debian's) and ``param``."""
    from canfar_catalogue import config

    catalogue = workdir / name
    command = [
        SEXTRACTOR, str(image), "-c", str(config.path("default.sex")),
        "-FILTER_NAME", str(config.path("default.conv")), "-STARNNW_NAME", str(config.path("default.nnw")),
        "-PARAMETERS_NAME", str(param),
        "-CATALOG_NAME", str(catalogue), *extra,
    ]
    subprocess.run(command, check=True, capture_output=True, cwd=workdir)
    return catalogue


def funpack(fz: Path, plain: Path) -> Path:
    """``funpack -O plain fz``: the reference decompression, written to disk as the tutorial does."""
    subprocess.run([FUNPACK, "-O", str(plain), str(fz)], check=True, capture_output=True)
    return plain


def run_classic(fz: Path, workdir: Path, param: Path, *extra: str, name: str = "classic.cat") -> Path:
    """The tutorial's two steps: ``funpack -D``, then source-extractor."""
    workdir.mkdir(parents=True, exist_ok=True)
    plain = workdir / fz.name.removesuffix(".fz")
    if not plain.exists():
        shutil.copy(fz, workdir / fz.name)
        subprocess.run([FUNPACK, "-D", str(workdir / fz.name)], check=True, capture_output=True)
    return run_sextractor(plain, workdir, param, *extra, name=name)


def read(path: Path) -> Table:
    return ascii.read(path, format="sextractor")


@dataclass
class Matched:
    """Sources matched within ``radius`` pixels, per EXT_NUMBER."""

    ours: Table
    theirs: Table
    fraction_of_theirs: float
    fraction_of_ours: float


def _nearest(x_from, y_from, x_to, y_to):
    from scipy.spatial import cKDTree

    if len(x_to) == 0:
        return np.full(len(x_from), np.inf), np.zeros(len(x_from), dtype=int)
    return cKDTree(np.c_[x_to, y_to]).query(np.c_[x_from, y_from])


def match(ours: Table, theirs: Table, radius: float = 1.0) -> Matched:
    from astropy.table import vstack

    pairs_ours, pairs_theirs = [], []
    n_theirs_matched = n_ours_matched = 0
    for ext in np.union1d(np.unique(ours["EXT_NUMBER"]), np.unique(theirs["EXT_NUMBER"])):
        a = ours[ours["EXT_NUMBER"] == ext]
        b = theirs[theirs["EXT_NUMBER"] == ext]
        d, i = _nearest(b["X_IMAGE"], b["Y_IMAGE"], a["X_IMAGE"], a["Y_IMAGE"])
        ok = d < radius
        n_theirs_matched += int(ok.sum())
        pairs_ours.append(a[i[ok]])
        pairs_theirs.append(b[ok])
        d2, _ = _nearest(a["X_IMAGE"], a["Y_IMAGE"], b["X_IMAGE"], b["Y_IMAGE"])
        n_ours_matched += int((d2 < radius).sum())
    return Matched(
        vstack(pairs_ours),
        vstack(pairs_theirs),
        n_theirs_matched / max(len(theirs), 1),
        n_ours_matched / max(len(ours), 1),
    )
