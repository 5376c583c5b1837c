"""Shared fixtures: where the shared test data and the bundled sample captures are."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CAPTURES_DIR = REPO_ROOT / "sample_captures"


def shared_data_dir() -> Path:
    """RECON_SHARED_DATA, or ../shared/data beside the repository."""
    return Path(os.environ.get("RECON_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    path = shared_data_dir()
    if not (path / "models").is_dir():
        pytest.skip(
            f"shared test data not found at {path}: set RECON_SHARED_DATA to the folder holding "
            "models/ and captures/ (a fresh clone without ../shared has none)"
        )
    return path
