"""`recon evaluate` against cases whose scores are known exactly."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import trimesh
from scipy.spatial.transform import Rotation

from recon import cli, synth
from recon.cameras import Camera, look_at, read_cameras_json, write_cameras_json
from recon.errors import InputError
from recon.evaluation import (
    EvaluateOptions,
    evaluate,
    score_surface,
    score_texture_in_best_frame,
    views_seeing,
)
from recon.geometry import Similarity
from recon.textured_mesh import load_textured_mesh

# An arbitrary frame for "reconstructions": evaluation must undo it from the cameras alone.
RECON_FRAME = Similarity(
    2.7, Rotation.from_euler("xyz", [30, -50, 80], degrees=True).as_matrix(), np.array([1, -2, 3.0])
)
SPHERE_DIAGONAL = 2 * math.sqrt(3)  # bounding box of the unit sphere


def write_reconstruction(
    out_dir: Path,
    cameras: list[Camera],
    model: trimesh.Trimesh | trimesh.Scene,
    frame: Similarity = RECON_FRAME,
) -> Path:
    """A reconstruction output folder: report.json cameras and model.glb, both in `frame`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    write_cameras_json(out_dir / "report.json", [c.transformed(frame.matrix()) for c in cameras])
    moved = model.copy()
    moved.apply_transform(frame.matrix())
    moved.export(out_dir / "model.glb")
    return out_dir


@pytest.fixture(scope="module")
def sphere_capture(tmp_path_factory) -> tuple[Path, list[Camera]]:
    """Truth: the unit sphere, seen from all around so that every point counts for completeness."""
    capture = tmp_path_factory.mktemp("sphere_capture")
    (capture / "truth").mkdir()
    trimesh.creation.icosphere(subdivisions=5, radius=1.0).export(capture / "truth" / "mesh.ply")
    K = np.array([[300.0, 0, 199.5], [0, 300.0, 199.5], [0, 0, 1]])
    cameras = []
    for index, eye in enumerate(trimesh.creation.icosphere(subdivisions=1, radius=4.0).vertices):
        up = (0, 1, 0) if abs(eye[1]) < 3.9 else (1, 0, 0)
        R, t = look_at(eye, np.zeros(3), up)
        cameras.append(Camera(name=f"img_{index:03d}.jpg", width=400, height=400, K=K, R=R, t=t))
    write_cameras_json(capture / "truth" / "cameras.json", cameras)
    return capture, cameras


def sphere(radius: float = 1.0, center=(0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    mesh = trimesh.creation.icosphere(subdivisions=5, radius=radius)
    mesh.apply_translation(center)
    return mesh


def expected_shifted_sphere_score(shift: float, tau: float) -> float:
    """Fraction of a unit sphere moved by `shift` lying within `tau` of the original.

    A point at angle θ from the shift direction is at |√(1 + s² + 2s·cosθ) − 1| from the unit
    sphere, and cosθ is uniform on [-1, 1] for points spread evenly over the sphere.
    """
    low = ((1 - tau) ** 2 - 1 - shift**2) / (2 * shift)
    high = ((1 + tau) ** 2 - 1 - shift**2) / (2 * shift)
    return (min(high, 1) - max(low, -1)) / 2


def test_truth_scores_perfect(sphere_capture, tmp_path) -> None:
    capture, cameras = sphere_capture
    scores = evaluate(capture, write_reconstruction(tmp_path / "out", cameras, sphere()))
    assert scores["images"] == {
        "truth": 42,
        "registered": 42,
        "registered_fraction": 1.0,
        "missing": [],
    }
    assert scores["pose"]["scale"] == pytest.approx(1 / RECON_FRAME.scale, rel=1e-9)
    assert scores["pose"]["rotation_error_deg"]["max"] < 1e-4
    assert scores["pose"]["center_error_pct"]["max"] < 1e-7
    geometry = scores["geometry"]
    assert geometry["seen_fraction"] == 1.0
    assert geometry["seen_twice"] == {
        "fraction": 1.0,
        "completeness": {"0.5": 1.0, "1": 1.0},
        "reachable_f_score": {"0.5": 1.0, "1": 1.0},
    }
    assert geometry["f_score"] == {"0.5": 1.0, "1": 1.0}
    assert geometry["outside_truth_box"] == {"0.5": 0.0, "1": 0.0}
    # The surface ICP finds nothing to correct but the noise of sampling a sphere.
    assert geometry["accuracy_median_pct"] < 1e-3
    assert scores["alignment"]["icp_shift_pct"] < 1e-3


def test_views_seeing_counts_the_cameras_facing_each_point(sphere_capture) -> None:
    _, cameras = sphere_capture
    mesh = sphere()
    points = mesh.vertices[::5]
    # On a sphere a camera sees a point when it lies beyond the point's tangent plane; the
    # whole sphere fits in each image, so nothing else hides it.
    facing = np.array([c.center for c in cameras]) @ points.T  # eye · p, |p| = 1
    # Away from grazing rays: one that dips less than a facet's sagitta into the true sphere
    # passes the faceted one (at eye · p = 0.93 it dips 0.00016).
    clear = (np.abs(facing - 1) > 0.2).all(axis=0)
    counts = views_seeing(mesh, points, cameras)
    np.testing.assert_array_equal(counts[clear], (facing > 1).sum(axis=0)[clear])
    assert counts.min() >= 2
    # Seen by one camera only: on the far side of the others, the only count is that one
    np.testing.assert_array_equal(
        views_seeing(mesh, points, cameras[:1])[clear], (facing[0] > 1)[clear]
    )


# The metric itself, on surfaces placed off on purpose: without the surface ICP, which would
# pull a shifted sphere back.
METRIC_ONLY = EvaluateOptions(refine_alignment=False)


def test_surface_offset_between_the_two_thresholds(sphere_capture, tmp_path) -> None:
    capture, cameras = sphere_capture
    # Every point 0.75 % of the diagonal off: outside τ = 0.5 %, inside τ = 1 %.
    radius = 1 + 0.0075 * SPHERE_DIAGONAL
    out = write_reconstruction(tmp_path / "out", cameras, sphere(radius))
    scores = evaluate(capture, out, METRIC_ONLY)
    assert scores["geometry"]["f_score"] == {"0.5": 0.0, "1": 1.0}
    assert scores["geometry"]["accuracy_median_pct"] == pytest.approx(0.75, abs=0.01)


def test_mesh_moved_by_two_percent_of_the_diagonal(sphere_capture, tmp_path) -> None:
    capture, cameras = sphere_capture
    shift = 0.02 * SPHERE_DIAGONAL
    direction = np.array([1.0, 2.0, -2.0]) / 3.0
    moved = sphere(center=shift * direction)
    scores = evaluate(capture, write_reconstruction(tmp_path / "out", cameras, moved), METRIC_ONLY)
    for key, tau_pct in (("0.5", 0.5), ("1", 1.0)):
        expected = expected_shifted_sphere_score(shift, tau_pct / 100 * SPHERE_DIAGONAL)
        assert scores["geometry"]["accuracy"][key] == pytest.approx(expected, abs=0.01)
        assert scores["geometry"]["completeness"][key] == pytest.approx(expected, abs=0.01)
        assert scores["geometry"]["f_score"][key] == pytest.approx(expected, abs=0.01)
    assert scores["geometry"]["f_score"]["1"] < 0.55  # about 0.50: clearly worse than 1


def test_a_guess_where_no_photo_looks_counts_against_accuracy_but_not_on_the_observed_surface(
    tmp_path,
) -> None:
    # Photos from 15° up and higher (eyes at height ≥ 1 on a radius-4 shell) see no point of
    # the unit sphere below y = -0.9: the model closes that cap flat, as a can's unseen base
    # is closed.
    capture = tmp_path / "capture"
    (capture / "truth").mkdir(parents=True)
    sphere().export(capture / "truth" / "mesh.ply")
    K = np.array([[300.0, 0, 199.5], [0, 300.0, 199.5], [0, 0, 1]])
    eyes = trimesh.creation.icosphere(subdivisions=2, radius=4.0).vertices
    cameras = []
    for eye in eyes[(eyes[:, 1] >= 1.0) & (eyes[:, 1] < 3.9)]:
        R, t = look_at(eye, np.zeros(3), (0, 1, 0))
        name = f"img_{len(cameras):03d}.jpg"
        cameras.append(Camera(name=name, width=400, height=400, K=K, R=R, t=t))
    write_cameras_json(capture / "truth" / "cameras.json", cameras)
    flat = sphere()
    flat.vertices[:, 1] = np.maximum(flat.vertices[:, 1], -0.9)
    scores = evaluate(capture, write_reconstruction(tmp_path / "out", cameras, flat), METRIC_ONLY)
    geometry = scores["geometry"]
    # The cap is 5 % of the sphere (the lowest photos, 15° up, miss 7 %); the disc closing it
    # lies up to 0.1 (2.9 % of the diagonal) from it.
    assert geometry["seen_fraction"] < 0.95
    assert geometry["completeness"]["1"] == pytest.approx(1.0, abs=0.001)
    assert 0.95 < geometry["accuracy"]["1"] < 0.985
    observed = geometry["observed"]
    # Off the cap the model is the truth: its observed share is the seen one.
    assert observed["fraction"] == pytest.approx(geometry["seen_fraction"], abs=0.01)
    assert observed["accuracy"]["1"] == pytest.approx(1.0, abs=0.001)
    assert observed["f_score"]["1"] == pytest.approx(1.0, abs=0.001)
    assert geometry["f_score"]["1"] < 0.99


def test_surface_one_photo_alone_sees_is_in_reach_only_near_a_silhouette_outline() -> None:
    # Two photos side by side see a cap of the unit sphere (eyes 4 away see 37.5 % of it), a
    # third the opposite cap, 29° of arc from the first: no stereo reaches that one, and its
    # photo's silhouette tells only the band within τ of its outline (the cone's rim, 61-75.5°
    # from its axis at τ = 1 %: 12 % of the sphere). The truth itself scores perfect, for
    # completeness counts surface seen at all; stereo alone would reach recall 1/2, F 2/3.
    K = np.array([[300.0, 0, 199.5], [0, 300.0, 199.5], [0, 0, 1]])
    cameras = [
        Camera(name=f"img_{i}.jpg", width=400, height=400, K=K, R=R, t=t)
        for i, (R, t) in enumerate(
            look_at(np.array(eye), np.zeros(3), (0, 1, 0))
            for eye in [(4.0, 0, 0.05), (4.0, 0, -0.05), (-4.0, 0, 0)]
        )
    ]
    geometry = score_surface(sphere(), sphere(), cameras, SPHERE_DIAGONAL, METRIC_ONLY)
    assert geometry["seen_fraction"] == pytest.approx(0.75, abs=0.01)
    assert geometry["f_score"]["1"] == pytest.approx(1.0, abs=0.001)
    assert geometry["seen_twice"]["fraction"] == pytest.approx(0.5, abs=0.01)
    reachable = geometry["seen_twice"]["reachable_f_score"]
    band = (math.cos(math.radians(61)) - 0.25) / 2 / 0.75  # of the seen surface
    assert reachable["1"] == pytest.approx(2 * (0.5 + band) / (1.5 + band), abs=0.02)
    assert 2 / 3 < reachable["0.5"] < reachable["1"]


def test_a_table_left_under_the_product_is_measured_outside_its_box(sphere_capture, tmp_path):
    capture, cameras = sphere_capture
    # A 6 × 6 square of table under the sphere's south pole, wider than its 2 × 2 box.
    table = trimesh.creation.box(extents=(6.0, 0.01, 6.0))
    table.apply_translation((0.0, -1.0, 0.0))
    model = trimesh.util.concatenate([sphere(), table])
    scores = evaluate(capture, write_reconstruction(tmp_path / "out", cameras, model), METRIC_ONLY)
    # The table holds 2 × 36 of the model's 4π + 72 area; the share of it beyond the box
    # grown by 1 % of the diagonal (0.035), about (36 - 2.07²) / 36 of it, is outside.
    table_share = 72 / (4 * math.pi + 72)
    outside = table_share * (36 - (2 + 2 * 0.01 * SPHERE_DIAGONAL) ** 2) / 36
    assert scores["geometry"]["outside_truth_box"]["1"] == pytest.approx(outside, abs=0.01)


def test_surface_icp_puts_back_a_model_slightly_off_its_cameras_and_says_how_far(
    sphere_capture, tmp_path
) -> None:
    capture, cameras = sphere_capture
    shift = 0.008 * SPHERE_DIAGONAL  # camera centres a few millimetres off: a model this far
    moved = sphere(center=shift * np.array([1.0, 2.0, -2.0]) / 3.0)
    out = write_reconstruction(tmp_path / "out", cameras, moved)
    assert evaluate(capture, out, METRIC_ONLY)["geometry"]["f_score"]["0.5"] < 0.9
    scores = evaluate(capture, out)
    assert scores["alignment"]["icp_shift_pct"] == pytest.approx(0.8, abs=0.05)
    assert scores["geometry"]["f_score"]["0.5"] > 0.99
    assert scores["pose"]["center_error_pct"]["max"] < 1e-7  # poses keep the camera alignment


def test_pose_errors_of_perturbed_cameras(sphere_capture, tmp_path) -> None:
    capture, cameras = sphere_capture
    tilted = []
    for camera in cameras:
        # Turn each camera by 0.5° about its own optical axis: the centre stays put.
        roll = Rotation.from_rotvec([0, 0, math.radians(0.5)]).as_matrix()
        R = roll @ camera.R
        tilted.append(
            Camera(
                name=camera.name,
                width=camera.width,
                height=camera.height,
                K=camera.K,
                R=R,
                t=-R @ camera.center,
            )
        )
    scores = evaluate(capture, write_reconstruction(tmp_path / "out", tilted[:30], sphere()))
    assert scores["images"]["registered"] == 30
    assert len(scores["images"]["missing"]) == 12
    assert scores["pose"]["rotation_error_deg"]["median"] == pytest.approx(0.5, abs=1e-6)
    assert scores["pose"]["center_error_pct"]["max"] < 1e-7


def test_missing_model_is_reported_not_crashed(sphere_capture, tmp_path) -> None:
    capture, cameras = sphere_capture
    out = write_reconstruction(tmp_path / "out", cameras, sphere())
    (out / "model.glb").unlink()
    scores = evaluate(capture, out)
    assert scores["geometry"] is None
    assert "model.glb is missing" in scores["warnings"][0]


def test_bad_folders_get_clear_errors(sphere_capture, tmp_path) -> None:
    capture, _ = sphere_capture
    with pytest.raises(InputError, match=r"no report\.json"):
        evaluate(capture, tmp_path)
    with pytest.raises(InputError, match="has no ground truth"):
        evaluate(tmp_path, tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        evaluate(tmp_path / "nope", tmp_path)


@pytest.fixture(scope="module")
def product_capture(tmp_path_factory) -> Path:
    """A small unlit capture of a procedural product (unlit: its texture is exactly the photos)."""
    out = tmp_path_factory.mktemp("product") / "capture"
    synth.run(
        "cereal_box",
        out,
        synth.SynthOptions(views=12, size_px=320, novel_views=3, lighting=synth.Lighting.UNLIT),
    )
    return out


def truth_model(capture: Path) -> trimesh.Scene:
    """The textured truth model in the truth frame, rebuilt from what synth recorded."""
    from recon import procedural

    info = json.loads((capture / "truth" / "scene.json").read_text())
    mesh = procedural.make_product(info["model"].removeprefix("procedural:"))
    mesh.apply_transform(np.array(info["to_truth"]))
    return trimesh.Scene(mesh)


def test_textured_truth_scores_perfect_and_a_sphere_scores_bad(product_capture, tmp_path) -> None:
    cameras = read_cameras_json(product_capture / "truth" / "cameras.json")
    perfect = evaluate(
        product_capture, write_reconstruction(tmp_path / "a", cameras, truth_model(product_capture))
    )
    assert perfect["geometry"]["f_score"] == {"0.5": 1.0, "1": 1.0}
    assert perfect["texture"]["views"] == 3
    assert perfect["texture"]["psnr_db"] > 40
    assert perfect["texture"]["ssim"] > 0.99
    assert perfect["texture"]["coverage"] > 0.999
    assert set(perfect["texture"]["psnr_db_by_frame"]) == {"cameras", "surface ICP"}

    bbox = np.array(json.loads((product_capture / "truth" / "scene.json").read_text())["bbox_m"])
    blob = sphere(radius=float(bbox.max()) / 2, center=(0, bbox[1] / 2, 0))
    bad = evaluate(
        product_capture,
        write_reconstruction(tmp_path / "b", cameras, blob),
        EvaluateOptions(score_texture=True),
    )
    assert bad["geometry"]["f_score"]["1"] < 0.1
    assert bad["texture"]["psnr_db"] < 15


def test_texture_is_scored_in_the_frame_where_it_agrees_best(product_capture, tmp_path) -> None:
    cameras = read_cameras_json(product_capture / "truth" / "cameras.json")
    frame = Similarity(1.0, np.eye(3), np.zeros(3))  # written in the truth frame
    out = write_reconstruction(tmp_path / "out", cameras, truth_model(product_capture), frame)
    model = load_textured_mesh(out / "model.glb")
    nudged = np.eye(4)
    nudged[:3, 3] = (0.004, 0.003, 0.0)  # a few pixels off at the held-out views
    frames = {"nudged": model.transformed(nudged), "right": model}
    scores = score_texture_in_best_frame(frames, product_capture / "truth" / "novel")
    assert scores["frame"] == "right"
    assert scores["psnr_db"] > 40
    assert scores["psnr_db_by_frame"]["nudged"] < 30


def test_cli_writes_json(product_capture, tmp_path, capsys) -> None:
    cameras = read_cameras_json(product_capture / "truth" / "cameras.json")
    out = write_reconstruction(tmp_path / "out", cameras, truth_model(product_capture))
    code = cli.main(
        [
            "evaluate",
            str(product_capture),
            str(out),
            "--json",
            str(tmp_path / "s.json"),
            "--no-texture",
        ]
    )
    assert code == 0
    scores = json.loads((tmp_path / "s.json").read_text())
    assert scores["geometry"]["f_score"]["1"] == 1.0
    assert "texture" not in scores
    assert "F-score @ 1 %" in capsys.readouterr().out
