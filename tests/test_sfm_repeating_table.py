"""A plain armchair on a wooden table whose grain repeats: the table's keypoints outnumber the
chair's fifty to one and match the wrong tile in every pair, so every placement from all
features folds. Placed from the product's own features instead, not failed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recon import sfm, synth
from tests.test_lookalike_sides import relative_rotation_errors_deg, synthetic_capture


@pytest.mark.slow
def test_a_plain_product_on_a_repeating_table_is_placed_from_the_product_alone(
    shared_data: Path, tmp_path: Path
) -> None:
    model = shared_data / "models" / "kaolin_armchair"
    options = synth.SynthOptions(
        views=24, size_px=960, novel_views=0, background=synth.Background.TABLE
    )
    capture, workspace = synthetic_capture(model, tmp_path, options)
    result = sfm.run(workspace)

    assert result.registered == 24
    order_check = json.loads(workspace.sfm_cameras_path.read_text())["order_check"]
    assert order_check["product_only"]["kept"]
    errors = relative_rotation_errors_deg(capture.out_dir, result.cameras)
    assert np.median(errors) < 0.1
    assert errors.max() < 1.0
