"""Cameras (projection, JSON, Middlebury) and the similarity alignment used by evaluation."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from recon.cameras import (
    Camera,
    look_at,
    read_cameras_json,
    read_middlebury_par,
    write_cameras_json,
)
from recon.errors import InputError
from recon.geometry import (
    Similarity,
    canonical_order,
    fit_similarity,
    fit_similarity_robust,
    relative_rotation_differences_deg,
    rotation_angle_deg,
)


def make_camera(eye=(0.3, 0.2, 0.5), target=(0, 0.05, 0), name="img_000.jpg") -> Camera:
    R, t = look_at(np.array(eye), np.array(target))
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    return Camera(name=name, width=640, height=480, K=K, R=R, t=t)


def test_look_at_puts_the_target_at_the_principal_point_with_y_down() -> None:
    camera = make_camera()
    uv, depth = camera.project(np.array([[0, 0.05, 0], [0, 0.15, 0]]))
    np.testing.assert_allclose(uv[0], [319.5, 239.5], atol=1e-9)
    assert depth[0] == pytest.approx(np.linalg.norm(np.array([0.3, 0.15, 0.5])))
    assert uv[1, 1] < uv[0, 1]  # a point above the target appears higher in the image
    np.testing.assert_allclose(camera.center, [0.3, 0.2, 0.5], atol=1e-12)
    np.testing.assert_allclose(camera.R @ camera.R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(camera.R) == pytest.approx(1.0)


def test_scaled_camera_projects_to_scaled_pixels() -> None:
    camera = make_camera()
    double = camera.scaled(2)
    points = np.random.default_rng(0).uniform(-0.05, 0.05, (20, 3))
    uv, _ = camera.project(points)
    uv2, _ = double.project(points)
    # Pixel centres: pixel i at scale 1 covers pixels 2i and 2i+1, centred at 2i + 0.5.
    np.testing.assert_allclose(uv2, uv * 2 + 0.5, atol=1e-9)
    assert (double.width, double.height) == (1280, 960)


def test_cameras_json_round_trip(tmp_path) -> None:
    cameras = [make_camera(name="a.jpg"), make_camera(eye=(-0.4, 0.3, 0.1), name="b.jpg")]
    write_cameras_json(tmp_path / "cameras.json", cameras, units="metre")
    loaded = read_cameras_json(tmp_path / "cameras.json")
    assert [c.name for c in loaded] == ["a.jpg", "b.jpg"]
    for original, copy in zip(cameras, loaded, strict=True):
        np.testing.assert_allclose(copy.K, original.K)
        np.testing.assert_allclose(copy.R, original.R, atol=1e-12)
        np.testing.assert_allclose(copy.t, original.t, atol=1e-12)


def test_malformed_cameras_json_names_the_problem(tmp_path) -> None:
    path = tmp_path / "cameras.json"
    path.write_text('{"cameras": [{"image": "x.jpg", "width": 10}]}')
    with pytest.raises(InputError, match=r"x\.jpg"):
        read_cameras_json(path)
    path.write_text("not json")
    with pytest.raises(InputError, match="not valid JSON"):
        read_cameras_json(path)
    with pytest.raises(InputError, match="does not exist"):
        read_cameras_json(tmp_path / "missing.json")


@pytest.mark.shared_data
def test_middlebury_calibration_reproduces_its_projection_matrices(shared_data) -> None:
    par = shared_data / "captures" / "middlebury_temple_sparse_ring" / "templeSR_par.txt"
    cameras = read_middlebury_par(par)
    assert len(cameras) == 16
    assert cameras[0].name == "templeSR0001.png"
    assert (cameras[0].width, cameras[0].height) == (640, 480)
    # The temple (bounding box from the dataset's README) projects inside every image.
    center = np.array([-0.022357, 0.10181, 0.025146])  # centre of that box
    for camera in cameras:
        uv, depth = camera.project(center[None])
        assert depth[0] > 0
        assert 0 < uv[0, 0] < 640
        assert 0 < uv[0, 1] < 480
        assert np.linalg.det(camera.R) == pytest.approx(1.0, abs=1e-4)


def random_similarity(seed: int) -> Similarity:
    rng = np.random.default_rng(seed)
    return Similarity(
        float(rng.uniform(0.2, 5)),
        Rotation.random(random_state=seed).as_matrix(),
        rng.normal(size=3),
    )


def test_fit_similarity_recovers_a_known_transform() -> None:
    truth = random_similarity(1)
    src = np.random.default_rng(2).normal(size=(30, 3))
    fitted = fit_similarity(src, truth.apply(src))
    assert fitted.scale == pytest.approx(truth.scale, rel=1e-10)
    np.testing.assert_allclose(fitted.rotation, truth.rotation, atol=1e-10)
    np.testing.assert_allclose(fitted.translation, truth.translation, atol=1e-10)


def test_robust_fit_ignores_a_few_lost_cameras() -> None:
    truth = random_similarity(3)
    src = np.random.default_rng(4).normal(size=(24, 3))
    dst = truth.apply(src)
    dst[:3] += np.array([5.0, -3.0, 2.0])  # three cameras placed far off
    plain = fit_similarity(src, dst)
    robust = fit_similarity_robust(src, dst)
    assert rotation_angle_deg(plain.rotation @ truth.rotation.T) > 1.0
    assert rotation_angle_deg(robust.rotation @ truth.rotation.T) < 1e-6
    assert robust.scale == pytest.approx(truth.scale, rel=1e-9)


def test_rotation_angle() -> None:
    assert rotation_angle_deg(np.eye(3)) == 0.0
    for angle in (0.05, 30.0, 179.0):
        matrix = Rotation.from_rotvec(np.radians(angle) * np.array([0.6, 0.0, 0.8])).as_matrix()
        assert rotation_angle_deg(matrix) == pytest.approx(angle, abs=1e-6)


def test_relative_rotations_ignore_the_world_frame_and_show_a_turned_photo() -> None:
    rotations = Rotation.random(5, random_state=3).as_matrix()
    world = Rotation.random(random_state=4).as_matrix()
    np.testing.assert_allclose(
        relative_rotation_differences_deg(rotations, rotations @ world.T), 0, atol=1e-5
    )
    turned = rotations.copy()
    turned[2] = Rotation.from_euler("y", 180, degrees=True).as_matrix() @ turned[2]
    differences = relative_rotation_differences_deg(rotations, turned)
    np.testing.assert_allclose(differences[2, [0, 1, 3, 4]], 180, atol=1e-4)
    np.testing.assert_allclose(np.delete(np.delete(differences, 2, 0), 2, 1), 0, atol=1e-5)


def test_canonical_order_lists_a_reshuffled_mesh_the_same_way() -> None:
    """However a mesh's vertices and faces are listed, and wherever each face's listing starts,
    the canonical listing is the same, and it is the same surface with the same winding."""
    rng = np.random.default_rng(0)
    vertices = rng.normal(size=(200, 3))
    faces = np.array([rng.choice(200, 3, replace=False) for _ in range(300)])
    order, canonical = canonical_order(vertices, faces)

    shuffle = rng.permutation(200)  # vertex i of the shuffle is vertex shuffle[i]
    renamed = np.argsort(shuffle)[faces][rng.permutation(300)]
    renamed = np.roll(renamed, 1, axis=1)  # each face listed from another corner
    order2, canonical2 = canonical_order(vertices[shuffle], renamed)

    np.testing.assert_array_equal(vertices[shuffle][order2], vertices[order])
    np.testing.assert_array_equal(canonical2, canonical)

    # The same triangles, with the same winding (the normal keeps its sign).
    def normals(points, tris):
        a, b, c = (points[tris[:, k]] for k in range(3))
        return np.cross(b - a, c - a)

    ordered = vertices[order]
    before = {tuple(np.round(n, 9)) for n in normals(vertices, faces)}
    after = {tuple(np.round(n, 9)) for n in normals(ordered, canonical)}
    assert before == after
