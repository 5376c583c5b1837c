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
from tests.test_sfm_order import rings_model


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


def test_matching_along_a_models_epipolar_lines_skips_look_alikes() -> None:
    """A product whose every feature repeats elsewhere on it (a holder alike every 90°): each
    keypoint of the first photo has a true match and a twin (the same descriptor, 40 px below)
    in the second. The
    ratio test over the whole photo keeps none of the true matches; along the model's
    epipolar lines (nearly level for photos side by side on a ring) every true match is
    found and no twin. A photo 120° round is not matched at all."""
    rng = np.random.default_rng(3)
    model = rings_model([0.0, 30.0, 120.0], [0.0, 0.0, 0.0])
    points = rng.uniform(-0.6, 0.6, size=(80, 3))
    codes = rng.normal(size=(len(points), 128))
    features = {}
    for image in model.images.values():
        pose = image.cam_from_world().matrix()
        xy = image.camera.img_from_cam(points @ pose[:, :3].T + pose[:, 3])
        if image.image_id > 1:  # the later photos see each feature's twin too
            xy = np.vstack([xy, xy + np.array([0.0, 40.0])])
        descriptors = codes[np.arange(len(xy)) % len(codes)]
        features[image.image_id] = (xy, descriptors + rng.normal(scale=0.02, size=(len(xy), 128)))

    matches = sfm.match_along_model(model, features, sfm.SfmOptions())

    assert set(matches) == {(1, 2)}
    true = np.column_stack([np.arange(len(points)), np.arange(len(points))])
    assert {tuple(row) for row in matches[(1, 2)]} == {tuple(row) for row in true}
    # The ratio test without the model: each keypoint's twin is as near as its true match.
    unit = [features[i][1] / np.linalg.norm(features[i][1], axis=1, keepdims=True) for i in (1, 2)]
    distance = np.sort(2 - 2 * unit[0] @ unit[1].T, axis=1)
    assert not np.any(np.sqrt(distance[:, 0]) < 0.8 * np.sqrt(distance[:, 1]))
