"""Shared fixtures: where the shared test data and the bundled sample captures are, and a real
browser for the page tests."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_CAPTURES_DIR = REPO_ROOT / "sample_captures"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"  # Debian's, driven by Playwright


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


@pytest.fixture(scope="module")
def browser():
    """Chromium through Playwright, one per test module."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            # WebGL through SwiftShader (no GPU here); newer Chromium wants it asked for.
            args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
        )
        yield browser
        browser.close()
