"""Scene mode: the procedural shop room, its walk, floor finding, the scene frame, end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import trimesh
from PIL import Image

from recon import pipeline, scene, synth
from recon.cameras import Camera, look_at, read_cameras_json
from recon.cli import main as cli_main
from recon.errors import InputError
from recon.evaluation import evaluate
from recon.masks import ObjectRegion


def _rotation(axis: np.ndarray, angle_deg: float) -> np.ndarray:
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    return trimesh.transformations.rotation_matrix(math.radians(angle_deg), axis)[:3, :3]


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return math.degrees(math.acos(np.clip(cosine, -1.0, 1.0)))


def _walk_in(rotation: np.ndarray, offset: np.ndarray, scale: float) -> list[Camera]:
    """Eight cameras 1.5 m above a y = 0 floor looking outward, all moved into another frame
    (x_new = scale · rotation · x + offset), like an SfM frame."""
    cameras = []
    for k in range(8):
        angle = 2 * math.pi * k / 8
        eye = np.array([math.cos(angle), 1.5, 0.6 * math.sin(angle)])
        R, _ = look_at(eye, eye + np.array([math.cos(angle), -0.3, math.sin(angle)]))
        K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
        camera = Camera(name=f"c{k}", width=640, height=480, K=K, R=R, t=-R @ eye)
        matrix = np.eye(4)
        matrix[:3, :3], matrix[:3, 3] = scale * rotation, offset
        cameras.append(camera.transformed(matrix))
    return cameras


def _room_points(rng: np.random.Generator) -> np.ndarray:
    """Sparse points of a 6 × 4 × 2.8 m room (floor on y = 0, +Y up): a big floor, walls, a
    counter top at 0.95 m, a ceiling, and a few mismatched points under the floor."""
    floor = np.column_stack([rng.uniform(-3, 3, 1500), np.zeros(1500), rng.uniform(-2, 2, 1500)])
    walls = np.column_stack([rng.choice([-3, 3], 2000), rng.uniform(0, 2.8, 2000),
                             rng.uniform(-2, 2, 2000)])  # fmt: skip
    counter = np.column_stack([rng.uniform(2, 2.6, 400), np.full(400, 0.95),
                               rng.uniform(-0.8, 0.8, 400)])  # fmt: skip
    ceiling = np.column_stack([rng.uniform(-3, 3, 300), np.full(300, 2.8), rng.uniform(-2, 2, 300)])
    below = np.column_stack([rng.uniform(-3, 3, 40), rng.uniform(-1.5, -0.3, 40),
                             rng.uniform(-2, 2, 40)])  # fmt: skip
    points = np.vstack([floor, walls, counter, ceiling, below])
    return points + rng.normal(0, 0.004, points.shape)


@pytest.mark.parametrize("tilt_deg", [0.0, 12.0])
def test_find_floor_is_the_lowest_large_level_plane(tilt_deg: float) -> None:
    rng = np.random.default_rng(3)
    rotation = _rotation([1, 0, 0.4], tilt_deg) @ _rotation([0, 1, 0], 33)
    offset, scale = np.array([0.5, -2.0, 1.0]), 0.37
    xyz = scale * _room_points(rng) @ rotation.T + offset
    cameras = _walk_in(rotation, offset, scale)
    # The cameras' up, off by a few degrees (people tilt their phones).
    hint = _rotation([0, 0, 1], 6) @ rotation @ [0.0, 1.0, 0.0]
    floor = scene.find_floor(xyz, hint, cameras, scene.SceneOptions())
    assert floor is not None
    true_up = rotation @ [0.0, 1.0, 0.0]
    assert _angle_deg(floor.plane[:3], true_up) < 0.3
    # The floor (not the counter top, the ceiling or the stray points under it) passes
    # through the true floor's origin.
    assert abs(offset @ floor.plane[:3] + floor.plane[3]) < 0.01 * scale


def test_scene_region_and_transform_put_the_floor_at_zero_with_walls_on_the_axes() -> None:
    rng = np.random.default_rng(5)
    rotation = _rotation([0.3, 0.2, 1.0], 140.0)
    offset, scale = np.array([3.0, 1.0, -2.0]), 2.5
    truth_points = _room_points(rng)
    xyz = scale * truth_points @ rotation.T + offset
    cameras = _walk_in(rotation, offset, scale)
    options = scene.SceneOptions()
    region = scene.scene_region(cameras, {"xyz": xyz}, options)
    assert region.ground is not None
    # A stand-in for the dense mesh: the room's box (inside out does not matter here).
    box = trimesh.creation.box(extents=[6.0, 2.8, 4.0])
    box.apply_translation([0.0, 1.4, 0.0])
    vertices = scale * np.asarray(box.vertices) @ rotation.T + offset
    subdivided_vertices, faces = trimesh.remesh.subdivide_to_size(vertices, box.faces, 0.3)
    matrix, up_source = scene.scene_transform(subdivided_vertices, faces, region, options)
    assert up_source == "floor plane"
    model = subdivided_vertices @ matrix[:3, :3].T + matrix[:3, 3]
    low, high = model.min(axis=0), model.max(axis=0)
    # Floor on y = 0, long side along X, centred; metres from the cameras' 1.5 m eye height.
    np.testing.assert_allclose(low, [-3.0, 0.0, -2.0], atol=0.03)
    np.testing.assert_allclose(high, [3.0, 2.8, 2.0], atol=0.03)
    moved = [camera.transformed(matrix) for camera in cameras]
    np.testing.assert_allclose([camera.center[1] for camera in moved], 1.5, atol=0.02)
    errors = scene.floor_errors(moved, _walk_in(np.eye(3), np.zeros(3), 1.0))
    # Walls on the axes up to a quarter turn: the floor is level and at zero either way.
    assert errors["tilt_deg"] < 0.2
    assert abs(errors["height_m"]) < 0.02


def test_floor_errors_measure_a_tilted_model() -> None:
    truth = _walk_in(np.eye(3), np.zeros(3), 1.0)
    tilted = _walk_in(_rotation([1, 0, 0], 2.0), np.array([0, 0.1, 0]), 1.0)
    errors = scene.floor_errors(tilted, truth)
    assert errors["tilt_deg"] == pytest.approx(2.0, abs=1e-6)
    # The model's origin sits 0.1 m up its own (tilted) axis: back in the truth frame, lower.
    assert errors["height_m"] == pytest.approx(-0.1 * math.cos(math.radians(2.0)), abs=1e-9)


def test_scene_region_refuses_a_capture_without_points() -> None:
    cameras = _walk_in(np.eye(3), np.zeros(3), 1.0)
    with pytest.raises(Exception, match="too few to tell the space's extent"):
        scene.scene_region(cameras, {"xyz": np.zeros((5, 3))}, scene.SceneOptions())


def test_synth_scene_writes_a_capture_that_evaluate_reads(tmp_path) -> None:
    capture = tmp_path / "room"
    code = cli_main(["synth", "--scene", str(capture), "--views", "6", "--size", "96",
                     "--novel-views", "2"])  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in (capture / "images").iterdir()) == [
        f"img_{i:03d}.jpg" for i in range(6)
    ]
    truth = read_cameras_json(capture / "truth" / "cameras.json")
    assert len(truth) == 6
    assert len(list((capture / "truth" / "masks").iterdir())) == 6
    info = json.loads((capture / "truth" / "scene.json").read_text())
    assert info["model"] == "procedural:shop_room"
    # The room at real size, floor on y = 0; the walk inside it at eye height.
    mesh = trimesh.load(capture / "truth" / "mesh.ply", process=False)
    np.testing.assert_allclose(mesh.bounds, [[-3.0, 0.0, -2.0], [3.0, 2.8, 2.0]], atol=1e-6)
    centers = np.array([camera.center for camera in truth])
    assert np.all(np.abs(centers[:, [0, 2]]) < [2.0, 1.2])
    np.testing.assert_allclose(centers[:, 1], 1.5, atol=0.05)
    for camera in truth:  # the room surrounds every camera; its photos have texture to match
        mask = np.asarray(Image.open(capture / "truth" / "masks" / f"{camera.name[:-4]}.png"))
        assert mask.all()
        assert np.asarray(Image.open(capture / "images" / camera.name)).std() > 20
    # The truth scored against itself is perfect: evaluate reads a scene capture as any other.
    out = tmp_path / "out"
    out.mkdir()
    truth_report = {"cameras": [camera.to_json() for camera in truth]}
    (out / "report.json").write_text(json.dumps(truth_report))
    scores = evaluate(capture, out)
    assert scores["images"]["registered"] == 6
    assert scores["pose"]["rotation_error_deg"]["max"] < 1e-3
    assert cli_main(["synth", "mug", str(tmp_path / "x"), "--scene"]) == 2  # a model and --scene
    with pytest.raises(InputError, match="give a model file"):
        synth.run(None, tmp_path / "y", synth.SynthOptions())


def test_scene_options_fit_the_web_budget_and_reach_each_stage() -> None:
    for preset in pipeline.Preset:
        options = pipeline.ReconOptions.for_preset(preset, "scene")
        assert options.mode == pipeline.Mode.SCENE
        assert options.mesh.max_faces <= 300_000
        assert options.texture.texture_size <= 4096
        assert options.masks.scene is not None
        assert options.orient.scene is not None
        assert options.fusion.hull_resolution == 0  # nothing to carve in a room
        assert options.sfm.matcher == pipeline.sfm.Matcher.SEQUENTIAL
    product = pipeline.ReconOptions.for_preset("standard")
    assert product.mode == pipeline.Mode.OBJECT
    assert product.masks.scene is None


def test_a_region_without_a_floor_keeps_the_cameras_up() -> None:
    region = ObjectRegion(
        center=np.array([0.0, 1.5, 0.0]),
        up=np.array([0.0, 1.0, 0.0]),
        box_corners=np.zeros((8, 3)),
        ground=None,
        camera_distance=1.0,
    )
    box = trimesh.creation.box(extents=[4.0, 2.0, 3.0])
    box.apply_translation([0.0, 1.0, 0.0])
    matrix, up_source = scene.scene_transform(
        np.asarray(box.vertices), np.asarray(box.faces), region, scene.SceneOptions()
    )
    assert up_source == "camera up vectors"
    model = np.asarray(box.vertices) @ matrix[:3, :3].T + matrix[:3, 3]
    assert model[:, 1].min() == pytest.approx(0.0, abs=1e-9)


# -- end to end ------------------------------------------------------------------------------


@pytest.mark.slow
def test_room_walk_reconstructs_in_scene_mode(tmp_path) -> None:
    capture = tmp_path / "room"
    synth.run(None, capture, synth.SynthOptions(scene=True, views=60, size_px=480))
    out = tmp_path / "out"
    options = pipeline.ReconOptions.for_preset("standard", "scene")
    result = pipeline.reconstruct(capture / "images", out, options)
    report = result.report
    assert report["mode"] == "scene"
    assert report["images"]["registered"] == 60
    assert report["mesh"]["faces"] <= 300_000
    assert any(surface["kind"] == "floor" for surface in report["surfaces"])
    scores = evaluate(capture, out)
    assert scores["geometry"]["f_score"]["1"] >= 0.7
    floor = scene.floor_errors(
        read_cameras_json(result.report_path), read_cameras_json(capture / "truth" / "cameras.json")
    )
    assert floor["tilt_deg"] < 1.0
    assert abs(floor["height_m"]) < 0.05


@pytest.mark.slow
def test_room_with_a_table_gives_a_clear_report(tmp_path) -> None:
    """The real-photo stand-in: the room with a wooden table, filmed hand-held and sparsely."""
    capture = tmp_path / "room"
    synth.run(
        None,
        capture,
        synth.SynthOptions(scene=True, views=32, size_px=400, background=synth.Background.TABLE),
    )
    result = pipeline.reconstruct(
        capture / "images", tmp_path / "out", pipeline.ReconOptions.for_preset("preview", "scene")
    )
    report = result.report
    assert report["status"] == "succeeded"
    assert report["mode"] == "scene"
    assert report["images"]["registered"] + len(report["images"]["rejected"]) == 32
    assert isinstance(report["surfaces"], list)
    assert any("scene size estimated" in warning for warning in report["warnings"])
    assert result.model_path.stat().st_size < 20e6
