"""Closed product meshes: fusion closes the surface from the hull, meshing keeps it closed."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import trimesh

from recon import fusion, hull, masks, meshing, pipeline
from recon.cameras import read_cameras_json
from recon.evaluation import EvaluateOptions, evaluate, score_surface
from recon.synth import SynthOptions, ring_cameras
from tests.conftest import SAMPLE_CAPTURES_DIR
from tests.test_geometry_stages import truth_workspace, write_truth_depth


def welded(path: Path) -> trimesh.Trimesh:
    """The model's surface with its texture seams welded (xatlas splits vertices there)."""
    mesh = trimesh.load(path, force="mesh", process=False)
    surface = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    surface.merge_vertices()
    return surface


@pytest.fixture(scope="module")
def sample_mug(tmp_path_factory) -> Path:
    """The sample mug (a hollow with a handle, on plain paper) reconstructed at preview."""
    root = tmp_path_factory.mktemp("mug")
    shutil.copytree(SAMPLE_CAPTURES_DIR / "mug" / "images", root / "photos")
    preview = pipeline.ReconOptions.for_preset("preview")
    return pipeline.reconstruct(root / "photos", root / "out", preview).out_dir


def test_fusing_a_mug_closes_its_unseen_base_and_keeps_its_hollow(tmp_path) -> None:
    """Fusion and meshing alone on the sample mug's true cameras and noisy true depths (the
    CI variant of the end-to-end test below): no photo sees the base, which the hull closes;
    the hollow, which stereo sees into, stays open to its floor."""
    capture = SAMPLE_CAPTURES_DIR / "mug"
    workspace = truth_workspace(capture, tmp_path)
    masks.run(workspace)
    write_truth_depth(workspace, capture)
    fusion.run(workspace, fusion.FusionOptions(voxel_rel=0.004, truncation_voxels=2.0))
    result = meshing.run(workspace, meshing.MeshOptions(max_faces=30_000))
    assert result.watertight
    surface = trimesh.load(workspace.mesh_path, process=False)
    assert len(surface.split(only_watertight=False)) == 1
    truth = trimesh.load(capture / "truth" / "mesh.ply", process=False)
    diagonal = float(np.linalg.norm(np.ptp(truth.vertices, axis=0)))
    cameras = read_cameras_json(capture / "truth" / "cameras.json")
    options = EvaluateOptions(surface_samples=20_000, score_texture=False)
    scores = score_surface(truth, surface, cameras, diagonal, options)
    assert scores["f_score"]["1"] > 0.9  # a solid drum would miss the whole inside


@pytest.mark.slow
def test_a_reconstructed_sample_is_one_closed_surface(sample_mug: Path) -> None:
    surface = welded(sample_mug / "model.glb")
    assert surface.is_watertight
    assert len(surface.split(only_watertight=False)) == 1
    # Closed round its hollow, not filled to the rim: the hull alone would give a solid drum.
    assert evaluate(SAMPLE_CAPTURES_DIR / "mug", sample_mug)["geometry"]["f_score"]["1"] > 0.75


def test_simplifying_a_closed_surface_keeps_it_closed() -> None:
    rng = np.random.default_rng(0)
    sphere = trimesh.creation.icosphere(subdivisions=5)  # 20k faces
    sphere.vertices *= 1 + rng.normal(0, 0.01, (len(sphere.vertices), 1))  # a stereo-rough skin
    simplified = meshing.simplify(sphere.copy(), 2_000)
    assert len(simplified.faces) <= 2_000
    assert simplified.is_watertight
    assert simplified.volume == pytest.approx(sphere.volume, rel=0.02)


def test_vertices_one_in_float32_are_welded() -> None:
    """Two vertices a hair apart are one once stored (PLY, glTF): welded, a surface that names
    one here and the other there is closed."""
    sphere = trimesh.creation.icosphere(subdivisions=2)
    vertices = np.vstack([sphere.vertices, sphere.vertices[:1] * (1 + 1e-9)])
    faces = sphere.faces.copy()
    around = np.flatnonzero((faces == 0).any(axis=1))[:2]
    faces[around] = np.where(faces[around] == 0, len(sphere.vertices), faces[around])
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert not mesh.is_watertight
    meshing.drop_collapsed_faces(mesh)
    assert mesh.is_watertight
    assert len(mesh.vertices) == len(sphere.vertices)
    assert len(mesh.faces) == len(sphere.faces)


def test_simplifying_ends_when_the_fast_decimator_stalls(monkeypatch) -> None:
    """fast_simplification can stop collapsing above its target (a sunk white mug's inner wall
    stayed at 110,790 faces call after call): the loop that asked again never ended."""
    calls = []

    def stalled(vertices, faces, target_reduction):
        calls.append(len(faces))
        if len(calls) > 20:
            raise AssertionError("asked the stalled decimator 20 times")
        return vertices, faces[: max(len(faces) - 3, 2_100)]  # a few faces, then none

    monkeypatch.setattr(meshing.fast_simplification, "simplify", stalled)
    open_sphere = trimesh.creation.icosphere(subdivisions=5)
    open_sphere.update_faces(np.arange(1, len(open_sphere.faces)))  # not closed: no check
    simplified = meshing.simplify(open_sphere, 2_000)
    assert len(simplified.faces) <= 2_000
    assert len(calls) <= 3


def test_a_closed_fused_surface_keeps_its_product_piece_alone() -> None:
    body = trimesh.creation.icosphere(subdivisions=3)
    bubble = trimesh.creation.icosphere(subdivisions=1, radius=0.1)  # 80 faces, beside it
    bubble.apply_translation([1.05, 0, 0])
    fused = trimesh.util.concatenate([body, bubble])
    no_points = np.empty((0, 3))
    kept = meshing.product_piece(fused, no_points)  # the most faces, without sparse points
    assert len(kept.faces) == len(body.faces)
    assert kept.is_watertight
    # A slab of dark ground fused larger than the product (the Middlebury temple at preview):
    # the piece SfM's points lie on is the product.
    slab = trimesh.creation.box(extents=[4.0, 0.2, 4.0])
    slab = slab.subdivide().subdivide().subdivide().subdivide()
    slab.apply_translation([0, -2.0, 0])
    assert len(slab.faces) > len(body.faces)
    on_body = body.vertices[::10] * 1.001
    kept = meshing.product_piece(trimesh.util.concatenate([body, slab]), on_body)
    assert len(kept.faces) == len(body.faces)
    kept = meshing.product_piece(trimesh.util.concatenate([body, slab]), no_points)
    assert len(kept.faces) == len(slab.faces)


def test_block_keys_are_made_unique_like_numpy_does() -> None:
    keys = np.random.default_rng(0).integers(-300, 300, (5_000, 3)).astype(np.int32)
    keys = np.vstack([keys, keys[:500]])
    np.testing.assert_array_equal(fusion.unique_keys(keys), np.unique(keys, axis=0))


def test_carving_empties_what_stereo_looks_through_and_keeps_the_rest() -> None:
    """A box-shaped hull less the space one photo's stereo sees through: its depth map lies
    past the whole box, so what it sees of the box is carved; a second photo is asked for
    by min_views=2, and without it nothing is carved."""
    values = np.full((20, 20, 20), 1.0, np.float32)
    field = hull.HullField(np.zeros(3), np.eye(3), 0.1, values)
    camera = ring_cameras(np.ones(3), 6.0, 2, SynthOptions(views=2, size_px=64),
                          np.random.default_rng(0))[0]  # fmt: skip
    # A depth map far beyond the grid: every cell in view is seen through.
    depth = np.full((64, 64), 1000.0, np.float32)
    carved = hull.carve_seen_through(field, [(camera, depth, camera.K)], 0.02, min_views=1)
    assert (carved.values < 0).mean() > 0.5
    untouched = hull.carve_seen_through(field, [(camera, depth, camera.K)], 0.02, min_views=2)
    np.testing.assert_array_equal(untouched.values, values)


def test_nearest_depth_fills_small_holes_with_the_nearer_surface() -> None:
    depth = np.zeros((9, 9), np.float32)
    depth[4, 3], depth[4, 5] = 2.0, 3.0
    filled = hull.nearest_depth(depth, 3)
    assert filled[4, 4] == 2.0  # between the two: the nearer
    assert filled[0, 0] == 0.0  # nothing round it


def test_a_hollow_seen_from_above_sinks_to_its_floor_and_stops_at_a_seen_surface() -> None:
    """A solid block of hull, 20 layers high, with its top 6 layers carved in an off-centre
    patch (what stereo saw of a white mug's inside near the rim): the carve goes down to 2
    cells above the hull's bottom, except under a cell stereo put a surface in, grown out to
    a wall 2 cells from the hull's outline; a dent of 2 layers (noise) does not sink."""
    inside = np.zeros((16, 24, 20), dtype=bool)
    inside[1:15, 2:22, 1:19] = True  # the hull: layers 2..21 (up is axis 1)
    seen = np.zeros_like(inside)
    seen[5:9, 16:22, 4:13] = True  # the opening, carved 6 layers down from the top
    occupied = np.zeros_like(inside)
    occupied[6, 10, 6] = True  # a textured surface inside, under the opening
    sunk, openings = hull.sink_hollows(seen, inside, occupied, floor_cells=2, min_run=4)
    assert openings[5:9, 4:13].all()  # the opening that sank
    assert openings.sum() == 4 * 9
    assert sunk[7, 4:16, 8].all()  # carried down to the floor (layer 2 + 2)
    assert not sunk[7, :4, 8].any()  # the floor stays
    assert sunk[6, 11:16, 6].all()  # down to the surface stereo saw ...
    assert not sunk[6, :11, 6].any()  # ... and no farther
    assert sunk[3:13, 12, 8].all()  # the opening grown out to the wall ...
    assert sunk[7, 12, 3:17].all()
    assert not sunk[:3].any()  # ... which stays
    assert not sunk[13:].any()
    assert not sunk[:, :, :3].any()
    assert not sunk[:, :, 17:].any()
    dent = np.zeros_like(inside)
    dent[5:9, 20:22, 4:13] = True  # 2 layers: noise
    sunk, openings = hull.sink_hollows(dent, inside, occupied, floor_cells=2, min_run=4)
    np.testing.assert_array_equal(sunk, dent)
    assert not openings.any()


def test_stereo_walls_end_at_the_ground_cut_like_the_hull() -> None:
    """A sphere standing in a table cut 1 cm above the table: the photos' stereo sees its sides
    below the cut, and their signed distances carry the wall on below it; closed from the hull,
    the surface ends at the cut, flat, stereo's wall included (else the mesh stage takes the
    wall's foot for the base to rest on the table)."""
    from tests.test_hull import RADIUS, sphere_depth, sphere_mask

    cameras = ring_cameras(
        np.zeros(3), 3 * RADIUS, 24, SynthOptions(views=24, size_px=160), np.random.default_rng(0)
    )
    box = np.array([[x, y, z] for x in (-0.15, 0.15) for y in (-0.15, 0.15) for z in (-0.15, 0.15)])
    field = hull.silhouette_field(
        cameras, [sphere_mask(c) for c in cameras], box, np.eye(3)[1], resolution=96
    )
    voxel, clearance = 0.004, 0.01
    ground = np.array([0.0, 1.0, 0.0, 0.6 * RADIUS])  # the table at y = -0.06, the cut at -0.05
    grid = fusion.tsdf_grid(voxel, block_count=20_000)
    seen = cameras[::4]
    depths = [(c, sphere_depth(c).astype(np.float32), c.K) for c in seen]
    for camera, depth, K in depths:
        for _ in range(3):  # above the extraction threshold, like three agreeing photos
            fusion.integrate(grid, depth, K, camera, 4.0)
    fusion.close_with_hull(
        grid, field, depths, voxel=voxel, truncation_voxels=4.0, min_weight=2.0,
        margin_rel=0.02, ground=ground, clearance=clearance,
    )  # fmt: skip
    legacy = grid.extract_triangle_mesh(weight_threshold=2.0).to_legacy()
    surface = trimesh.Trimesh(np.asarray(legacy.vertices), np.asarray(legacy.triangles))
    surface.merge_vertices()
    height = surface.vertices @ ground[:3] + ground[3]
    assert height.min() > clearance - 0.25 * voxel  # stereo's wall went on to the table
    base = np.abs(height - clearance) < 0.25 * voxel
    assert base.sum() > 100  # ... where a flat base closes it now
    assert surface.is_watertight


def test_where_the_hull_owns_the_cells_its_surface_stands_whatever_stereo_said() -> None:
    """Stereo puts a sphere's surface 2 cm too deep (a plain wall's scattered depths): closed
    from the hull, the surface stays where stereo put it, unless the hull owns the cells (a
    container's walls, hull.container_walls): then it is the hull's."""
    from tests.test_hull import RADIUS, sphere_depth, sphere_mask

    cameras = ring_cameras(
        np.zeros(3), 3 * RADIUS, 24, SynthOptions(views=24, size_px=160), np.random.default_rng(0)
    )
    box = np.array([[x, y, z] for x in (-0.15, 0.15) for y in (-0.15, 0.15) for z in (-0.15, 0.15)])
    field = hull.silhouette_field(
        cameras, [sphere_mask(c) for c in cameras], box, np.eye(3)[1], resolution=96
    )
    voxel = 0.004

    def median_radius(owned: np.ndarray | None) -> float:
        grid = fusion.tsdf_grid(voxel, block_count=20_000)
        depths = []
        for camera in cameras[::3]:
            depth = sphere_depth(camera)
            depths.append(
                (camera, np.where(depth > 0, depth + 0.02, 0).astype(np.float32), camera.K)
            )
        for camera, depth, K in depths:
            for _ in range(3):  # above the extraction threshold, like three agreeing photos
                fusion.integrate(grid, depth, K, camera, 4.0)
        fusion.close_with_hull(
            grid, dataclasses.replace(field, owned=owned), depths, voxel=voxel,
            truncation_voxels=4.0, min_weight=2.0, margin_rel=0.02,
        )  # fmt: skip
        legacy = grid.extract_triangle_mesh(weight_threshold=2.0).to_legacy()
        return float(np.median(np.linalg.norm(np.asarray(legacy.vertices), axis=1)))

    assert median_radius(None) < RADIUS - 0.005
    assert median_radius(np.ones(field.values.shape, dtype=bool)) == pytest.approx(
        RADIUS, abs=0.002
    )
