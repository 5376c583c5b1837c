"""The bundled sample captures: small, consistent with their truth, and what synth makes today."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from recon import synth
from tests.conftest import SAMPLE_CAPTURES_DIR
from tests.test_synth import check_capture

SAMPLES = sorted(p for p in SAMPLE_CAPTURES_DIR.iterdir() if (p / "truth").is_dir())


def recorded_options(capture: Path) -> synth.SynthOptions:
    """The options a capture was made with, as synth recorded them in truth/scene.json."""
    recorded = json.loads((capture / "truth" / "scene.json").read_text())["options"]
    return synth.SynthOptions(**{**recorded, "overwrite": True})


def test_there_are_samples_to_run() -> None:
    assert {p.name for p in SAMPLES} >= {"cereal_box", "mug", "bottle_table"}


@pytest.mark.parametrize("capture", SAMPLES, ids=lambda p: p.name)
def test_sample_is_small_and_consistent(capture: Path) -> None:
    size_mb = sum(p.stat().st_size for p in capture.rglob("*") if p.is_file()) / 2**20
    assert size_mb <= 3.0
    check_capture(capture, recorded_options(capture))


@pytest.mark.parametrize("capture", SAMPLES, ids=lambda p: p.name)
def test_sample_matches_what_synth_makes_now(capture: Path, tmp_path: Path) -> None:
    """Fails when synth, the renderer or the products changed: run `make sample-captures`."""
    model = json.loads((capture / "truth" / "scene.json").read_text())["model"]
    fresh = synth.run(
        model.removeprefix("procedural:"), tmp_path / "fresh", recorded_options(capture)
    )
    committed_cameras = json.loads((capture / "truth" / "cameras.json").read_text())
    fresh_cameras = json.loads((fresh.out_dir / "truth" / "cameras.json").read_text())
    assert fresh_cameras == committed_cameras
    for name in ("img_000.jpg", "img_013.jpg"):
        committed = np.asarray(Image.open(capture / "images" / name), dtype=float)
        now = np.asarray(Image.open(fresh.out_dir / "images" / name), dtype=float)
        assert np.abs(committed - now).mean() < 1.0, name
