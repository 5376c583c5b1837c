"""A box printed alike front and back, left and right: placed right when the table tells the
sides apart, a clear failure when nothing does — never a folded model passed on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recon import sfm, synth
from recon.cameras import read_cameras_json
from recon.errors import CaptureError
from recon.geometry import relative_rotation_differences_deg
from tests.test_sfm import make_workspace


def relative_rotation_errors_deg(capture_dir: Path, placed: list) -> np.ndarray:
    """Per pair of placed photos, how far their relative rotation is from the truth's (the
    cameras `recon synth` wrote into `capture_dir`)."""
    truth_path = capture_dir / "truth" / "cameras.json"
    truth = {camera.name: camera for camera in read_cameras_json(truth_path)}
    angles = relative_rotation_differences_deg(
        np.array([camera.R for camera in placed]),
        np.array([truth[camera.name].R for camera in placed]),
    )
    return angles[np.triu_indices(len(placed), k=1)]


def synthetic_capture(model, tmp_path: Path, options: synth.SynthOptions):
    """A capture of `model` (path or procedural name) and a workspace holding its photos."""
    capture = synth.run(model, tmp_path / "capture", options)
    photos = sorted((capture.out_dir / "images").glob("*.jpg"))
    return capture, make_workspace(tmp_path / "job", photos)


def twin_box_capture(tmp_path: Path, background: str):
    options = synth.SynthOptions(
        views=24, size_px=480, novel_views=0, background=synth.Background(background)
    )
    return synthetic_capture("twin_box", tmp_path, options)


def test_a_table_under_the_twin_box_gives_the_right_poses(tmp_path) -> None:
    capture, workspace = twin_box_capture(tmp_path, "table")
    # Searched at twice the size (1,000-2,100 keypoints a photo at its own, the table's grain
    # most of them), the look-alike print matches across sides as well as the table does.
    result = sfm.run(workspace, sfm.SfmOptions(upsample_below_features=2000))
    assert result.registered == 24
    order_check = json.loads(workspace.sfm_cameras_path.read_text())["order_check"]
    # All pairs folded the look-alike sides onto each other; the capture order put them right.
    assert order_check["pairs_disagreeing"] > 0.2
    assert order_check["kept"] == "neighbours in capture order"
    # A walk around the box; the folded model turned half-way round between neighbours.
    assert order_check["largest_step_deg"]["in order"] < 60
    assert order_check["largest_step_deg"]["all pairs"] > 100
    errors = relative_rotation_errors_deg(capture.out_dir, result.cameras)
    assert np.median(errors) < 0.5
    assert errors.max() < 2.0
    # At their own size (the default) the table outweighs the print: all pairs place it right.
    result = sfm.run(workspace)
    assert result.registered == 24
    errors = relative_rotation_errors_deg(capture.out_dir, result.cameras)
    assert np.median(errors) < 0.5
    assert errors.max() < 2.0


def test_a_plain_twin_box_fails_with_advice(tmp_path) -> None:
    _, workspace = twin_box_capture(tmp_path, "plain")
    with pytest.raises(CaptureError, match="sides that look alike") as failure:
        sfm.run(workspace)
    assert "patterned mat" in str(failure.value)
    assert not workspace.sfm_cameras_path.exists()  # nothing for the later stages to use
