"""SfM on sparse rings of plain products: joining models through shared photos, and the
Middlebury dino (16 photos of a plaster dinosaur on black, ~22° apart)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recon import sfm
from recon.cameras import read_middlebury_par
from recon.geometry import Similarity, rotation_angle_deg
from tests.test_sfm import check_outputs, make_workspace, pose_errors, ring_of_cameras


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q @ np.diag(np.sign(np.diag(r)))
    return q if np.linalg.det(q) > 0 else -q


@pytest.mark.parametrize("shared", [1, 3])
def test_similarity_from_shared_photos_recovers_the_frames(shared: int) -> None:
    """A second model of the same ring, in its own frame and scale, is brought back onto the
    first through the photos both hold: poses of every photo agree afterwards."""
    rng = np.random.default_rng(shared)
    cameras = ring_of_cameras(8)
    truth = Similarity(scale=0.37, rotation=random_rotation(rng), translation=rng.normal(size=3))
    # The target frame is the cameras' own; the source frame is x_s = (R^T (x_t - t)) / s.
    poses_target = np.array([np.column_stack([c.R, c.t]) for c in cameras])
    inverse_rotation = truth.rotation.T
    poses_source = []
    for pose in poses_target:
        rotation = pose[:, :3] @ truth.rotation
        translation = (pose[:, 3] + pose[:, :3] @ truth.translation) / truth.scale
        poses_source.append(np.column_stack([rotation, translation]))
    poses_source = np.array(poses_source)
    object_depth = np.array([np.linalg.norm(c.center) for c in cameras])  # product at origin

    similarity = sfm.similarity_from_shared_photos(
        poses_target[:shared],
        poses_source[:shared],
        object_depth[:shared],
        object_depth[:shared] / truth.scale,
    )

    assert similarity.scale == pytest.approx(truth.scale, rel=1e-9)
    assert rotation_angle_deg(similarity.rotation @ inverse_rotation) < 1e-6
    np.testing.assert_allclose(similarity.translation, truth.translation, atol=1e-9)
    for target, source in zip(poses_target, poses_source, strict=True):
        np.testing.assert_allclose(sfm.moved_pose(source, similarity), target, atol=1e-9)


@pytest.mark.slow
def test_middlebury_dino_sparse_ring(shared_data: Path, tmp_path: Path) -> None:
    """A matte, almost textureless dinosaur: the neighbours at two places on the ring share
    only ~20 SIFT matches and no points seen three times; guided matching, two-photo points
    and joining the two half-ring models place ≥ 14 of 16 (COLMAP's defaults: 5)."""
    capture_dir = shared_data / "captures" / "middlebury_dino_sparse_ring"
    truth = read_middlebury_par(capture_dir / "dinoSR_par.txt")
    workspace = make_workspace(tmp_path / "job", [capture_dir / c.name for c in truth])
    result = sfm.run(workspace)

    assert result.registered >= 14
    centers = np.array([c.center for c in truth])
    diagonal = float(np.linalg.norm(centers.max(axis=0) - centers.min(axis=0)))
    errors = pose_errors(result.cameras, truth, diagonal)
    assert errors["rotation_error_deg"]["median"] < 1.0
    assert result.cameras[0].K[0, 0] == pytest.approx(truth[0].K[0, 0], rel=0.05)
    check_outputs(workspace, result)
