"""Shared fixtures: small synthetic exposures generated once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from canfar_catalogue.science.synthetic import ExposureSpec, write_exposure


@pytest.fixture(scope="session")
def small_exposure(tmp_path_factory) -> Path:
    """Two 1024×1024 Rice-compressed CCDs."""
    path = tmp_path_factory.mktemp("exposures") / "1056213p.fits.fz"
    write_exposure(path, ExposureSpec.small(seed=11))
    return path


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    """A scratch directory that is also the current directory, as for source-extractor."""
    monkeypatch.chdir(tmp_path)
    return tmp_path
