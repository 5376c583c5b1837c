"""Masks, fusion, meshing and orientation on a workspace built from a capture's exact truth.

The earlier stages (SfM, depth) are replaced by the truth: true cameras, sparse points sampled on
the true surface (and on the table), and depth maps rendered from the true scene with noise. So
these tests score the later stages alone.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from recon import fusion, masks, meshing, orient, synth
from recon.cameras import Camera, look_at, read_cameras_json, write_cameras_json
from recon.depth import DepthMap
from recon.evaluation import EvaluateOptions, evaluate
from recon.render import OffscreenRenderer
from recon.textured_mesh import TexturedMesh, from_trimesh
from recon.workspace import Workspace
from tests.conftest import SAMPLE_CAPTURES_DIR

DEPTH_NOISE = 0.001  # relative depth noise, about what good stereo gives


def fake_sparse_points(mesh: trimesh.Trimesh, cameras: list[Camera], table: bool, seed: int = 0):
    """Points on the true surface (and table), with the cameras that see them."""
    rng = np.random.default_rng(seed)
    points, _ = trimesh.sample.sample_surface(mesh, 3000, seed=seed)
    if table:
        radius = np.sqrt(rng.uniform(0, 1, 3000)) * 0.5
        angle = rng.uniform(0, 2 * np.pi, 3000)
        points = np.vstack([points, np.c_[radius * np.cos(angle), np.zeros(3000),
                                          radius * np.sin(angle)]])  # fmt: skip
    pairs = []
    for index, camera in enumerate(cameras):
        uv, depth = camera.project(points)
        inside = (depth > 0) & (uv >= 0).all(axis=1) & (uv[:, 0] < camera.width)
        inside &= uv[:, 1] < camera.height
        pairs += [(point, index) for point in np.flatnonzero(inside)]
    visible_in = np.array(pairs, dtype=np.int32)
    return {
        "xyz": points,
        "rgb": np.zeros((len(points), 3), np.uint8),
        "error": np.zeros(len(points)),
        "track": np.bincount(visible_in[:, 0], minlength=len(points)),
        "visible_in": visible_in,
    }


def truth_workspace(capture: Path, root: Path) -> Workspace:
    workspace = Workspace(root / capture.name)
    workspace.create()
    cameras = read_cameras_json(capture / "truth" / "cameras.json")
    workspace.write_sfm_cameras(cameras)
    workspace.sfm_images_dir.mkdir(parents=True)
    for camera in cameras:
        shutil.copy(capture / "images" / camera.name, workspace.sfm_image_path(camera.name))
    mesh = trimesh.load(capture / "truth" / "mesh.ply", process=False)
    table = "table" in capture.name
    workspace.write_sfm_points(**fake_sparse_points(mesh, cameras, table))
    return workspace


def write_truth_depth(workspace: Workspace, capture: Path) -> None:
    scene = from_trimesh(trimesh.load(capture / "truth" / "mesh.ply", process=False))
    if "table" in capture.name:
        scene = TexturedMesh((*scene.primitives, synth.make_tabletop(1.0)))
    rng = np.random.default_rng(1)
    workspace.depth_dir.mkdir(parents=True, exist_ok=True)
    with OffscreenRenderer(scene) as renderer:
        for camera in workspace.read_sfm_cameras():
            depth = renderer.render(camera).depth
            noisy = np.where(depth > 0, depth * (1 + rng.normal(0, DEPTH_NOISE, depth.shape)), 0)
            np.savez(
                workspace.depth_path(camera.name),
                depth=noisy.astype(np.float32),
                normal=np.zeros((*depth.shape, 3), np.float32),
                confidence=np.ones_like(depth),
                K=camera.K,
            )


@pytest.fixture(scope="module")
def table_workspace(tmp_path_factory) -> tuple[Workspace, Path]:
    capture = SAMPLE_CAPTURES_DIR / "bottle_table"
    workspace = truth_workspace(capture, tmp_path_factory.mktemp("ws"))
    masks.run(workspace)
    write_truth_depth(workspace, capture)
    fusion.run(workspace)
    meshing.run(workspace)
    return workspace, capture


def mask_scores(workspace: Workspace, capture: Path) -> tuple[float, float]:
    """(lowest recall, mean precision) of the product masks against the true silhouettes."""
    recalls, precisions = [], []
    for camera in workspace.read_sfm_cameras():
        mask = np.asarray(Image.open(workspace.mask_path(camera.name))) > 0
        truth = (
            np.asarray(
                Image.open(capture / "truth" / "masks" / camera.name.replace(".jpg", ".png"))
            )
            > 0
        )
        recalls.append((mask & truth).sum() / truth.sum())
        precisions.append((mask & truth).sum() / mask.sum())
    return float(min(recalls)), float(np.mean(precisions))


def test_masks_hold_the_whole_product_on_a_plain_background(tmp_path) -> None:
    capture = SAMPLE_CAPTURES_DIR / "mug"
    workspace = truth_workspace(capture, tmp_path)
    result = masks.run(workspace)
    assert result.region.ground is None  # nothing but the product has texture
    # With no table, "up" comes from how the photos were held: upright within a few degrees.
    assert np.degrees(np.arccos(result.region.up @ [0, 1, 0])) < 3
    lowest_recall, precision = mask_scores(workspace, capture)
    assert lowest_recall > 0.999  # a mask never cuts the product
    assert precision > 0.75


def test_masks_find_the_table_and_keep_the_product(table_workspace) -> None:
    workspace, capture = table_workspace
    region = masks.ObjectRegion.from_json(json.loads(workspace.region_path.read_text()))
    assert region.ground is not None
    assert np.degrees(np.arccos(region.ground[:3] @ [0, 1, 0])) < 0.5
    assert abs(region.ground[3]) < 1e-3  # the table top is y = 0 in the truth frame
    lowest_recall, precision = mask_scores(workspace, capture)
    assert lowest_recall > 0.999
    assert precision > 0.55


def test_fused_mesh_is_the_product_without_the_table(table_workspace, tmp_path) -> None:
    workspace, capture = table_workspace
    out = tmp_path / "out"
    out.mkdir()
    write_cameras_json(out / "report.json", workspace.read_sfm_cameras())
    mesh = trimesh.load(workspace.mesh_path, process=False)
    assert len(mesh.faces) <= meshing.MeshOptions().max_faces * 1.01
    mesh.export(out / "model.glb")
    geometry = evaluate(capture, out, EvaluateOptions(score_texture=False))["geometry"]
    assert geometry["accuracy"]["0.5"] > 0.99  # no table, no floating junk
    assert geometry["f_score"]["0.5"] > 0.97
    assert geometry["f_score"]["1"] > 0.99


def test_fusion_skips_a_depth_map_with_nothing_in_it(tmp_path) -> None:
    """A photo left with no depth (none found, no product in its mask for the visual hull to
    fill) adds nothing; open3d would abort on it."""
    capture = SAMPLE_CAPTURES_DIR / "bottle_table"
    workspace = truth_workspace(capture, tmp_path)
    masks.run(workspace)
    write_truth_depth(workspace, capture)
    cameras = workspace.read_sfm_cameras()
    with np.load(workspace.depth_path(cameras[0].name)) as saved:
        arrays = dict(saved)
    arrays["depth"] = np.zeros_like(arrays["depth"])
    np.savez(workspace.depth_path(cameras[0].name), **arrays)
    mask_path = workspace.mask_path(cameras[0].name)
    Image.fromarray(np.zeros_like(np.asarray(Image.open(mask_path)))).save(mask_path)
    result = fusion.run(workspace)
    assert result.views == len(cameras) - 1
    assert result.faces > 0


def test_orientation_puts_the_product_upright_on_the_origin(table_workspace) -> None:
    workspace, _ = table_workspace
    # Pretend SfM chose a rotated, shifted frame: orientation must undo it.
    frame = np.eye(4)
    frame[:3, :3] = trimesh.transformations.rotation_matrix(0.7, [1, 2, 3])[:3, :3]
    frame[:3, 3] = [0.3, -0.2, 0.5]
    moved = Workspace(workspace.out_dir.parent / "moved")
    moved.create()
    moved.write_sfm_cameras([c.transformed(frame) for c in workspace.read_sfm_cameras()])
    region = json.loads(workspace.region_path.read_text())
    rotate = frame[:3, :3]
    ground = np.asarray(region["ground"])
    moved_normal = rotate @ ground[:3]
    region.update(
        center=(rotate @ region["center"] + frame[:3, 3]).tolist(),
        up=(rotate @ region["up"]).tolist(),
        box_corners=(np.asarray(region["box_corners"]) @ rotate.T + frame[:3, 3]).tolist(),
        ground=[*moved_normal, ground[3] - moved_normal @ frame[:3, 3]],
    )
    moved.region_path.write_text(json.dumps(region))
    mesh = trimesh.load(workspace.mesh_path, process=False)
    mesh.apply_transform(frame)
    moved.mesh_path.parent.mkdir(parents=True)
    mesh.export(moved.mesh_path)

    result = orient.run(moved)
    assert result.up_source == "table plane"
    oriented = mesh.copy()
    oriented.apply_transform(result.matrix)
    low, high = oriented.bounds
    assert abs(low[1]) < 0.004  # standing on y = 0 (the mesh stops just above the table)
    np.testing.assert_allclose((low + high)[[0, 2]] / 2, 0, atol=1e-6)  # float32 PLY
    np.testing.assert_allclose(np.ptp(oriented.vertices, axis=0)[1], 0.24, rtol=0.02)
    # The first photo looks at the product's front: seen from above, it stands on the +Z axis.
    first = moved.read_sfm_cameras()[0].transformed(result.matrix)
    horizontal = first.center[[0, 2]] / np.linalg.norm(first.center[[0, 2]])
    assert horizontal[1] > 0.995
    assert first.center[1] > 0  # above the table
    assert result.scale_source == "unknown"

    # A known height (here 3× the true 0.24 m, as if SfM had come out in other units) scales
    # the model about its bottom centre; the cameras keep seeing it where they did.
    scaled = orient.run(moved, orient.OrientOptions(height_m=0.72))
    assert scaled.scale_source == "height_m"
    big = mesh.copy()
    big.apply_transform(scaled.matrix)
    factor = 0.72 / np.ptp(oriented.vertices, axis=0)[1]
    np.testing.assert_allclose(
        np.ptp(big.vertices, axis=0), np.ptp(oriented.vertices, axis=0) * factor
    )
    assert abs(big.bounds[0][1]) < factor * 0.004
    camera = moved.read_sfm_cameras()[0]
    point = mesh.vertices[0]
    uv_big, depth_big = camera.transformed(scaled.matrix).project(big.vertices[:1])
    uv, depth = camera.project(point[None])
    np.testing.assert_allclose(uv_big, uv, atol=1e-3)
    np.testing.assert_allclose(depth_big, depth * factor, rtol=1e-5)

    # The texture stage then flattens the top a little lower (by 1 mm): the typed height still
    # holds on the finished surface, and the orientation's matrix keeps the cameras with it.
    flattened = big.vertices.copy()
    flattened[:, 1] = np.minimum(flattened[:, 1], flattened[:, 1].max() - 0.001)
    hold = orient.hold_known_size(moved.orient_path, flattened)
    assert np.ptp(flattened[:, 1] * hold) == pytest.approx(0.72)
    matrix = np.asarray(json.loads(moved.orient_path.read_text())["matrix"])
    np.testing.assert_allclose(matrix, scaled.matrix * [[hold], [hold], [hold], [1]])
    assert orient.hold_known_size(moved.orient_path, flattened * hold) == pytest.approx(1.0)
    orient.run(moved)  # no size typed: the surface keeps its size
    assert orient.hold_known_size(moved.orient_path, flattened) == 1.0


def test_small_holes_are_filled_and_big_ones_kept() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=3)
    small_hole = sphere.copy()
    small_hole.update_faces(np.arange(len(sphere.faces)) != 0)
    small_hole.remove_unreferenced_vertices()
    options = meshing.MeshOptions(max_hole_perimeter_rel=0.5, max_seen_hole_perimeter_rel=0)
    repaired = meshing.repair(small_hole, options)
    assert repaired.is_watertight
    assert repaired.is_winding_consistent
    cap = sphere.copy()
    cap.update_faces(sphere.triangles_center[:, 1] < 0.8)  # a hole of many edges
    cap.remove_unreferenced_vertices()
    assert not meshing.repair(cap, options).is_watertight


def test_a_small_hole_is_filled_however_its_rim_bends() -> None:
    """A hole in a saddle (z = x² - y²): its rim rises and falls, 0.36 × its radius off its
    plane, above max_hole_bend. Small, it is filled; counted large, it is left open (a fan
    across a bent rim the size of a mug's opening would be made up)."""
    xs = np.linspace(-1, 1, 41)
    x, y = np.meshgrid(xs, xs)
    vertices = np.column_stack([x.ravel(), y.ravel(), (x**2 - y**2).ravel()])
    corners = (np.arange(40)[:, None] * 41 + np.arange(40)[None, :]).ravel()
    faces = np.concatenate(
        [np.column_stack([corners, corners + 1, corners + 42]),
         np.column_stack([corners, corners + 42, corners + 41])]
    )  # fmt: skip
    saddle = trimesh.Trimesh(vertices, faces, process=False)
    saddle.update_faces(np.hypot(*saddle.triangles_center[:, :2].T) > 0.4)
    saddle.remove_unreferenced_vertices()

    def open_loops(mesh: trimesh.Trimesh) -> int:
        edges = mesh.edges[trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)]
        return len(trimesh.graph.connected_components(edges, min_len=3, engine="scipy"))

    assert open_loops(saddle) == 2  # the hole (1.04 × the diagonal round) and the outer edge
    options = meshing.MeshOptions(max_hole_perimeter_rel=1.2, max_seen_hole_perimeter_rel=0)
    small = dataclasses.replace(options, small_hole_perimeter_rel=1.2)
    repaired = meshing.repair(saddle.copy(), small)
    assert open_loops(repaired) == 1
    assert repaired.is_winding_consistent
    large = dataclasses.replace(options, small_hole_perimeter_rel=1.0)
    assert open_loops(meshing.repair(saddle.copy(), large)) == 2


def test_a_big_hole_the_photos_look_into_is_filled_and_the_unseen_base_is_not() -> None:
    """A box 19 × 28 × 7 with its top and its base open (stereo left the top open, the base
    stood on the paper): each rim is 1.5 × the diagonal long. Photos on rings above the table
    look into the top, none into the base. Where their depths lie beyond the top, down on a
    floor inside (a mug's opening), it is a hollow and stays open too."""
    box = trimesh.creation.box(extents=[0.19, 0.28, 0.07]).subdivide().subdivide()
    box.apply_translation([0, 0.14, 0])
    normals = box.face_normals
    box.update_faces(np.abs(normals[:, 1]) < 0.5)  # top and base gone
    box.remove_unreferenced_vertices()

    def depth_maps(surface_height: float) -> list[DepthMap]:
        """Each photo's depths of a level surface at `surface_height`, as stereo saw it."""
        K = np.array([[250.0, 0, 160], [0, 250, 160], [0, 0, 1]])
        pixels = np.stack(np.meshgrid(np.arange(320), np.arange(320)), axis=-1).reshape(-1, 2)
        maps = []
        for a in np.linspace(0, 2 * np.pi, 12, endpoint=False):
            for height in (0.2, 0.45):
                eye = np.array([0.6 * np.cos(a), height, 0.6 * np.sin(a)])
                R, t = look_at(eye, [0, 0.14, 0])
                camera = Camera(name="photo", width=320, height=320, K=K, R=R, t=t)
                rays = np.column_stack([pixels, np.ones(len(pixels))]) @ np.linalg.inv(K).T @ R
                with np.errstate(divide="ignore"):  # rays level with the surface
                    depth = (surface_height - eye[1]) / rays[:, 1]  # along the optical axis
                depth = np.where(depth > 0, depth, 0).reshape(320, 320).astype(np.float32)
                maps.append(DepthMap(depth, np.zeros((320, 320, 3)), np.ones((320, 320)), camera))
        return maps

    repaired = meshing.repair(box.copy(), meshing.MeshOptions(), lambda: depth_maps(0.28))
    assert repaired.is_winding_consistent
    new_faces = repaired.faces[len(box.faces) :]
    heights = repaired.vertices[new_faces].mean(axis=1)[:, 1]
    assert len(new_faces) > 0
    assert (heights > 0.27).all()  # the top is filled, the base is not
    # ... and its normals face up, out of the box.
    assert (repaired.face_normals[len(box.faces) :, 1] > 0.99).all()
    # Without photos that see it, a hole that long stays open; seen through, too.
    assert len(meshing.repair(box.copy(), meshing.MeshOptions()).faces) == len(box.faces)
    hollow = meshing.repair(box.copy(), meshing.MeshOptions(), lambda: depth_maps(0.05))
    assert len(hollow.faces) == len(box.faces)


def test_pieces_beside_the_product_are_kept_and_floating_noise_dropped() -> None:
    body = trimesh.creation.cylinder(radius=0.5, height=2.0, sections=64)  # a can's wall
    body.apply_translation([0, 0, -0.01])
    lid = trimesh.creation.cylinder(radius=0.45, height=0.02, sections=64)  # across a gap
    lid.apply_translation([0, 0, 1.01])  # 1 % of the diagonal above the wall
    noise = trimesh.creation.icosphere(subdivisions=1, radius=0.05)  # 80 faces
    noise.apply_translation([2.0, 0, 0])  # far out: stereo noise
    speck = trimesh.creation.box(extents=[0.01, 0.01, 0.01])  # beside it, but a speck
    speck.apply_translation([0.52, 0, 0])
    mesh = trimesh.util.concatenate([body, lid, noise, speck])
    kept = meshing.keep_product_components(mesh, max_gap_rel=0.02, min_faces=50)
    assert len(kept.faces) == len(body.faces) + len(lid.faces)
    assert kept.bounds[1][2] == pytest.approx(lid.bounds[1][2])
    assert kept.bounds[1][0] == pytest.approx(0.5, abs=1e-6)


def test_a_sparse_table_under_a_busy_product_is_found_and_a_ring_is_not() -> None:
    """A printed can holds most sparse points: RANSAC's biggest planes are vertical slabs of
    it, and its few table points are found as the densest level under it. Without the table,
    a horizontal ring of the can's own points is no ground."""
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, 6000)
    height = rng.uniform(0.0, 1.0, 6000)
    can = np.column_stack([0.3 * np.cos(angle), height, 0.3 * np.sin(angle)])
    can[:600, 1] = 0.25  # a printed band: a dense horizontal ring
    radius = np.sqrt(rng.uniform(0.35**2, 1.2**2, 300))
    around = rng.uniform(0, 2 * np.pi, 300)
    table = np.column_stack([radius * np.cos(around), np.zeros(300), radius * np.sin(around)])
    up, center = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.5, 0.0])
    options = masks.MaskOptions()
    ground = masks.fit_ground_plane(np.vstack([can, table]), center, up, 4.0, options)
    assert ground is not None
    np.testing.assert_allclose(ground, [0, 1, 0, 0], atol=0.02)
    assert masks.fit_ground_plane(can, center, up, 4.0, options) is None


def test_a_level_band_with_product_below_it_is_no_ground() -> None:
    """A plain shoe seen only from above leaves no point on the paper: its sparse points lie
    on the shoe alone, and a level band along its side (a third of them, within the tilt and
    below the centre) would have cut it in half. With the table's points as well, the table
    is the ground."""
    rng = np.random.default_rng(0)
    angle = rng.uniform(0, 2 * np.pi, 3000)
    height = rng.uniform(0.05, 1.0, 3000)
    body = np.column_stack([0.4 * np.cos(angle), height, 0.25 * np.sin(angle)])
    body[:1000, 1] = 0.45  # a dense level band along the side: 1,000 of 3,000 points
    up, center = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.6, 0.0])
    options = masks.MaskOptions()
    assert masks.fit_ground_plane(body, center, up, 4.0, options) is None
    radius = np.sqrt(rng.uniform(0.5**2, 1.5**2, 1000))
    around = rng.uniform(0, 2 * np.pi, 1000)
    table = np.column_stack([radius * np.cos(around), np.zeros(1000), radius * np.sin(around)])
    ground = masks.fit_ground_plane(np.vstack([body, table]), center, up, 4.0, options)
    assert ground is not None
    np.testing.assert_allclose(ground, [0, 1, 0, 0], atol=0.02)


def test_only_roughly_flat_holes_are_filled() -> None:
    """A box missing its top has a flat rim and is closed; a box missing its top and one side
    has a rim bent round the corner, and a fan across it would be made-up surface."""
    box = trimesh.creation.box(extents=[1.0, 1.0, 1.0])
    normals = box.face_normals
    open_top = box.copy()
    open_top.update_faces(normals[:, 2] < 0.9)
    open_top.remove_unreferenced_vertices()
    options = meshing.MeshOptions(max_hole_perimeter_rel=4.0, max_hole_bend=0.2)
    assert meshing.repair(open_top, options).is_watertight
    open_corner = box.copy()
    open_corner.update_faces((normals[:, 2] < 0.9) & (normals[:, 0] < 0.9))
    open_corner.remove_unreferenced_vertices()
    repaired = meshing.repair(open_corner, options)
    assert not repaired.is_watertight
    assert len(repaired.faces) == len(open_corner.faces)
