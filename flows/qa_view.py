"""The QA view in the Prefect UI: each exposure's quality, and a batch's, as markdown artifacts.

The UI renders a PNG inside a markdown artifact when it is a data URI (inline
SVG is stripped), so the pictures of :mod:`..science.qa_figure` live in the
runs' artifacts with no other server.  The exposure's figure is drawn in a
thread while its catalogue is being stored, and matplotlib is imported while
the exposure downloads, so that the picture costs the run as little time as
possible.  A picture that cannot be drawn is reported and left out; it never
fails the exposure.
"""

from __future__ import annotations

import base64
import importlib
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.utilities.urls import url_for

from ..science.focal_plane import Box
from ..science.qa import ExposureQuality
from ..science.qa_figure import batch_figure, exposure_figure


def artifact_key(observation_id: str) -> str:
    return f"exposure-{observation_id}-qa"


def preload() -> None:
    """Import matplotlib's drawing modules in the background (about 0.4 s otherwise paid later)."""
    modules = ("matplotlib.figure", "matplotlib.backends.backend_agg", "matplotlib.patches", "PIL.Image")
    threading.Thread(target=lambda: [importlib.import_module(m) for m in modules], daemon=True).start()


def draw_in_background(quality: ExposureQuality, layout: dict[str, Box], title: str) -> Future:
    """The exposure's figure (PNG bytes), drawn in a thread."""
    pool = ThreadPoolExecutor(1, thread_name_prefix="qa-figure")
    future = pool.submit(exposure_figure, quality, layout, title)
    pool.shutdown(wait=False)
    return future


def _image(png: bytes | None, alt: str) -> str:
    if png is None:
        return "_(no picture: see the run's log)_"
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def _number(value, digits: int = 2) -> str:
    return "–" if value is None or value != value else f"{value:.{digits}f}"


def publish_exposure(observation_id: str, quality: ExposureQuality, png: bytes | None) -> None:
    """The exposure's QA artifact: the figure, the exposure's numbers and a row per CCD."""
    kind = "instrumental" if quality.instrumental else f"MAG_ZEROPOINT {quality.zeropoint:g}"
    lines = [
        f"### {observation_id}: quality", "",
        _image(png, f"QA of {observation_id}"), "",
        "| sources | FWHM (px) | ellipticity | background RMS | 5σ limit | turnover | CCDs skipped |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {quality.sources} | {_number(quality.fwhm)} | {_number(quality.ellipticity, 3)} | {_number(quality.rms)} "
        f"| {_number(quality.limiting_magnitude)} | {_number(quality.turnover_magnitude)} | {len(quality.skipped)} |",
        "", f"Magnitudes are {kind}; the limit is for a circular aperture of diameter 2 × FWHM.", "",
        "| CCD | sources | background | RMS | FWHM (px) | ellipticity | stars | saturated | seconds | skipped |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for c in quality.ccds:
        lines.append(
            f"| {c.ccd} | {c.sources} | {_number(c.background)} | {_number(c.rms)} | {_number(c.fwhm)} "
            f"| {_number(c.ellipticity, 3)} | {c.stars} | {c.saturated} | {c.seconds:.2f} | {c.skipped or ''} |"
        )
    create_markdown_artifact(key=artifact_key(observation_id), markdown="\n".join(lines) + "\n",
                             description=f"{observation_id}: quality (seeing, depth, background per CCD)")


def batch_section(rows: list[dict]) -> list[str]:
    """Markdown for the batch summary: the figure across the batch and each exposure's key numbers.

    ``rows`` are the batch table's, with ``qa`` (the stored QA numbers, or None), ``flow_run`` and, for
    a skipped exposure, ``made_by`` (the run that made its catalogue)."""
    measured = [{"id": r["id"], **(r.get("qa") or {})} for r in rows if r.get("qa")]
    if not measured:
        return []
    zeropoints = {m.get("zeropoint") for m in measured}
    try:
        png = batch_figure(measured, zeropoints.pop() if len(zeropoints) == 1 else None)
    except Exception as exc:  # the numbers still go out
        get_run_logger().warning("the batch's QA figure could not be drawn: %s", exc)
        png = None
    lines = ["", "#### Quality across the batch", "", _image(png, "FWHM and limiting magnitude per exposure"), "",
             "| exposure | status | FWHM (px) | ellipticity | 5σ limit | sources | run |",
             "|---|---|---:|---:|---:|---:|---|"]
    for row in rows:
        qa = row.get("qa") or {}
        run_id = row.get("flow_run") or row.get("made_by") or ""  # a skipped exposure: the run that made it
        link = url_for("flow-run", obj_id=run_id) if run_id else None
        run = f"[{run_id[:8]}]({link})" if link else (run_id[:8] or "–")
        lines.append(f"| {row['id']} | {row['status']} | {_number(qa.get('fwhm'))} | {_number(qa.get('ellipticity'), 3)} "
                     f"| {_number(qa.get('limiting_magnitude'))} | {qa.get('sources', '–')} | {run} |")
    return lines
