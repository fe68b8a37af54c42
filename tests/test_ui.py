"""What the Prefect UI shows, seen in a real browser: Debian's Chromium, headless, takes a screenshot of
an exposure run's QA artifact page on the test server, and the picture is looked for in the pixels."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

from canfar_catalogue.flows.exposure import catalogue_exposure
from canfar_catalogue.flows.qa_view import artifact_key
from canfar_catalogue.science.qa_figure import BACKGROUND, EXPOSURE_SIZE, DPI

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH, HEIGHT = (int(inches * DPI) for inches in EXPOSURE_SIZE)

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it)")


def screenshot(url: str, out: Path, window: tuple[int, int] = (1500, 1600)) -> np.ndarray:
    """The page as the browser draws it, RGB."""
    subprocess.run(
        [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         f"--user-data-dir={out.parent / 'chromium-profile'}", f"--screenshot={out}",
         f"--window-size={window[0]},{window[1]}", "--virtual-time-budget=20000", url],
        check=True, capture_output=True, timeout=180,
    )
    return np.asarray(Image.open(out).convert("RGB")).astype(int)


def picture_box(pixels: np.ndarray) -> tuple[int, int, int, int] | None:
    """The bounding box (left, top, right, bottom) of the figures' own background tint."""
    tint = np.array([int(BACKGROUND[i : i + 2], 16) for i in (1, 3, 5)])
    where = np.argwhere(np.abs(pixels - tint).max(axis=2) <= 3)
    if len(where) < 1000:
        return None
    (top, left), (bottom, right) = where.min(axis=0), where.max(axis=0) + 1
    return left, top, right, bottom


def test_an_exposures_qa_picture_is_rendered_on_its_artifact_page(local_site, tmp_path):
    state = catalogue_exposure("1056216p", local_site["archive"], f"file://{tmp_path}/out", return_state=True)
    assert state.is_completed(), state.message
    run_id = state.state_details.flow_run_id
    record = json.loads((tmp_path / "out" / "1056216p.provenance.json").read_text())
    assert record["qa"]["sources"] == record["sources"] and record["qa"]["fwhm"] > 0
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[artifact_key("1056216p")]), flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]),
        ))
    assert len(artifacts) == 1 and "](data:image/png;base64," in artifacts[0].data

    api = os.environ["PREFECT_API_URL"]
    pixels = screenshot(f"{api.removesuffix('/api')}/artifacts/artifact/{artifacts[0].id}", tmp_path / "page.png")
    box = picture_box(pixels)
    assert box is not None, "the QA picture is not on the page"
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    assert 0.6 * WIDTH <= width <= 1.02 * WIDTH, box  # drawn at its size, or scaled to the column
    assert abs(width / height - WIDTH / HEIGHT) < 0.03, box
    inside = pixels[top:bottom, left:right].reshape(-1, 3)
    colours = len(np.unique(inside[:: max(len(inside) // 50_000, 1)], axis=0))
    assert colours > 30, f"the picture's region is nearly blank ({colours} colours)"
