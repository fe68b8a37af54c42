"""Pictures of quality: one per exposure, one per batch, as PNG bytes.

A bad CCD, poor seeing or a shallow exposure is spotted faster in a picture
than in a table.  The Prefect UI shows these PNGs inside markdown artifacts
(as data URIs); ``canfar-catalogue detect --qa`` writes the same file.

matplotlib's object API with the Agg canvas, no pyplot: nothing global is
touched and no display is needed.  Figures are 960x640 pixels (the batch's
960x600) and weigh well under 150 kB.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np

from .focal_plane import Box
from .qa import ExposureQuality

DPI = 80
EXPOSURE_SIZE = (12.0, 8.0)  # inches at DPI: 960x640 pixels
BATCH_SIZE = (12.0, 7.5)  # 960x600
SKIPPED_COLOUR = "#d62728"
#: The figures' background: a pale tint that tells the picture apart from the page around it.
BACKGROUND = "#f7f5ee"
NO_STARS_COLOUR = "#c7c7c7"
#: Where each panel's title sits (the top of its axes).  Left to matplotlib, every title's height is
#: found by measuring the decorations of its axes and their twins, an eighth of the drawing's time,
#: to land at the same place: none of our panels has anything above it.
TITLE_Y = 1.0


def _figure(size: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=DPI, facecolor=BACKGROUND)
    figure.subplots_adjust(left=0.07, right=0.93, bottom=0.08, top=0.9, wspace=0.45, hspace=0.35)
    FigureCanvasAgg(figure)
    return figure


def _png(figure) -> bytes:
    """The figure as a PNG of at most 256 colours: a third of the bytes, the same picture."""
    from PIL import Image

    canvas = figure.canvas
    canvas.draw()
    image = Image.frombuffer("RGBA", canvas.get_width_height(), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
    out = io.BytesIO()
    image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(out, format="PNG")
    return out.getvalue()


def warm_up() -> None:
    """Draw a small figure and throw it away.

    A process's first picture also loads matplotlib's font and fills its text
    caches, and PIL imports its image plugins at its first PNG: about 0.05 s
    more than every later picture.  A process that forks the runs (the process
    pool's pilot) pays that once, here, for all of them.
    """
    figure = _figure((2.0, 2.0))
    axes = figure.add_subplot()
    axes.plot([0.0, 1.0], [0.0, 1.0], "o-")
    axes.set_title("warm-up", y=TITLE_Y)
    axes.set_xlabel("x")
    _png(figure)


def _magnitude_label(zeropoint: float) -> str:
    return "instrumental mag (MAG_ZEROPOINT 0)" if zeropoint == 0 else f"mag (MAG_ZEROPOINT {zeropoint:g})"


def draw_focal_plane(axes, quality: ExposureQuality, layout: dict[str, Box]) -> dict[str, object]:
    """The CCDs as on the camera, coloured by median FWHM; skipped CCDs crossed out in red.
    Returns each CCD's rectangle, by label."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize
    from matplotlib.patches import Rectangle

    fwhms = [c.fwhm for c in quality.ccds if not c.skipped and math.isfinite(c.fwhm)]
    middle = float(np.median(fwhms)) if fwhms else 1.0  # at least +-10% around the median: noise stays dull
    norm = Normalize(min(min(fwhms, default=middle), 0.9 * middle), max(max(fwhms, default=middle), 1.1 * middle))
    cmap = colormaps["viridis"]
    patches = {}
    for ccd in quality.ccds:
        x, y, w, h = layout.get(ccd.ccd, (0, 0, 1, 1))
        if ccd.skipped:
            colour, text = "white", "skip"
        elif math.isfinite(ccd.fwhm):
            colour, text = cmap(norm(ccd.fwhm)), f"{ccd.fwhm:.2f}"
        else:
            colour, text = NO_STARS_COLOUR, "–"
        patch = Rectangle((x, y), w, h, facecolor=colour, edgecolor="black", linewidth=0.6)
        axes.add_patch(patch)
        patches[ccd.ccd] = patch
        if ccd.skipped:
            patch.set_edgecolor(SKIPPED_COLOUR)
            patch.set_linewidth(2.0)
            axes.plot([x, x + w], [y, y + h], color=SKIPPED_COLOUR, linewidth=1.5)
            axes.plot([x, x + w], [y + h, y], color=SKIPPED_COLOUR, linewidth=1.5)
        name = ccd.ccd[3:] if ccd.ccd.lower().startswith("ccd") else str(ccd.ext_number)
        axes.text(x + w / 2, y + h / 2, f"{name}\n{text}", ha="center", va="center", fontsize=6,
                  color=SKIPPED_COLOUR if ccd.skipped else "black")
    boxes = [layout.get(c.ccd, (0, 0, 1, 1)) for c in quality.ccds]
    axes.set_xlim(min(b[0] for b in boxes) - 200, max(b[0] + b[2] for b in boxes) + 200)
    axes.set_ylim(min(b[1] for b in boxes) - 200, max(b[1] + b[3] for b in boxes) + 200)
    axes.set_aspect("equal")
    axes.set_xticks([])
    axes.set_yticks([])
    skipped = len(quality.skipped)
    axes.set_title("Focal plane: median FWHM (px) per CCD" + (f", {skipped} skipped (red)" if skipped else "")
                   + ("; grey: too few stars" if any(c.stars < 3 and not c.skipped for c in quality.ccds) else ""),
                   fontsize=10, y=TITLE_Y)
    axes.figure.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.8, label="FWHM (px)")
    return patches


def exposure_title(name: str, quality: ExposureQuality) -> str:
    skipped = f", {len(quality.skipped)} CCDs skipped" if quality.skipped else ""
    unit = " (instrumental)" if quality.instrumental else ""
    return (f"{name}: {quality.sources} sources, FWHM {quality.fwhm:.2f} px, "
            f"5σ limit {quality.limiting_magnitude:.2f}{unit}{skipped}")


def exposure_figure(quality: ExposureQuality, layout: dict[str, Box], title: str) -> bytes:
    """The QA figure of one exposure: focal plane, magnitude histogram, seeing and background per CCD."""
    figure = _figure(EXPOSURE_SIZE)
    plane, histogram, seeing, background = figure.subplots(2, 2).ravel()
    draw_focal_plane(plane, quality, layout)

    edges, counts = np.array(quality.histogram_edges), np.array(quality.histogram_counts)
    if counts.size:
        histogram.stairs(counts, edges, fill=True, color="#4c72b0", alpha=0.8)
        peak = quality.turnover_magnitude
        histogram.axvline(peak, color=SKIPPED_COLOUR, linestyle="--")
        histogram.annotate(f"turnover (peak)\n{peak:.2f}", (peak, counts.max()), xytext=(6, -24),
                           textcoords="offset points", color=SKIPPED_COLOUR, fontsize=9)
    histogram.set_xlabel(f"MAG_AUTO, {_magnitude_label(quality.zeropoint)}")
    histogram.set_ylabel("sources per 0.25 mag")
    histogram.set_title(f"Magnitudes of {quality.sources} sources", y=TITLE_Y)

    measured = [c for c in quality.ccds if not c.skipped]
    index = [c.ext_number for c in measured]
    seeing.plot(index, [c.fwhm for c in measured], "o-", color="#4c72b0", label="FWHM (px)")
    seeing.axhline(quality.fwhm, color="#4c72b0", linestyle=":", label=f"exposure median {quality.fwhm:.2f} px")
    seeing.set_xlabel("CCD (extension)")
    seeing.set_ylabel("median FWHM of stars (px)")
    shape = seeing.twinx()
    shape.plot(index, [c.ellipticity for c in measured], "s-", color="#dd8452", label="ellipticity")
    shape.axhline(quality.ellipticity, color="#dd8452", linestyle=":")
    shape.set_ylabel("median ellipticity")
    seeing.set_title(f"Seeing: FWHM {quality.fwhm:.2f} px, ellipticity {quality.ellipticity:.3f}", y=TITLE_Y)
    seeing.legend(loc="upper left", fontsize=8)

    background.plot(index, [c.background for c in measured], "o-", color="#55a868", label="background")
    background.set_xlabel("CCD (extension)")
    background.set_ylabel("background (ADU)")
    background.ticklabel_format(axis="y", useOffset=False)
    noise = background.twinx()
    noise.plot(index, [c.rms for c in measured], "s-", color="#8172b3", label="RMS")
    noise.set_ylabel("background RMS (ADU)")
    noise.ticklabel_format(axis="y", useOffset=False)
    background.set_title(f"Background and RMS per CCD; 5σ limit {quality.limiting_magnitude:.2f}", y=TITLE_Y)
    figure.suptitle(title)
    return _png(figure)


def batch_figure(rows: Sequence[dict], zeropoint: float | None = None) -> bytes:
    """FWHM and limiting magnitude of every exposure of a batch, so that a bad one stands out.
    ``rows`` have ``id``, ``fwhm`` and ``limiting_magnitude`` (None where unknown).  An exposure
    more than 10% off the batch's median FWHM, or 0.3 mag off its median depth, is drawn in red."""
    figure = _figure(BATCH_SIZE)
    seeing, depth = figure.subplots(2, 1, sharex=True)
    names = [row["id"] for row in rows]
    positions = np.arange(len(rows))
    panels = (
        (seeing, "fwhm", "median FWHM (px)", "#4c72b0", lambda v, m: abs(v - m) > 0.1 * abs(m)),
        (depth, "limiting_magnitude", f"5σ limit, {_magnitude_label(zeropoint or 0)}", "#55a868",
         lambda v, m: abs(v - m) > 0.3),
    )
    for axes, key, label, colour, odd in panels:
        values = np.array([row.get(key) if row.get(key) is not None else np.nan for row in rows], dtype=float)
        finite = values[np.isfinite(values)]
        median = float(np.median(finite)) if finite.size else float("nan")
        colours = [SKIPPED_COLOUR if np.isfinite(v) and odd(v, median) else colour for v in values]
        axes.scatter(positions, values, c=colours, s=60, zorder=3)
        if finite.size:
            axes.axhline(median, color="black", linestyle=":", label=f"batch median {median:.2f}")
            spread = max(float(np.ptp(finite)), 0.05 * abs(median), 0.1)
            axes.set_ylim(finite.min() - spread, finite.max() + spread)
            axes.legend(loc="upper right", fontsize=8)
        axes.set_ylabel(label)
        axes.grid(axis="y", alpha=0.3)
    seeing.set_title(f"Seeing and depth of {len(rows)} exposures (red: off the batch's median)", y=TITLE_Y)
    depth.set_xticks(positions, names, rotation=45 if len(rows) > 8 else 0, ha="right" if len(rows) > 8 else "center")
    depth.set_xlim(-0.5, len(rows) - 0.5)
    if len(rows) > 8:  # room for the slanted names
        figure.subplots_adjust(bottom=0.16)
    return _png(figure)
