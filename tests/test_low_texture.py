"""Low-texture products: silhouettes find, mask and close what stereo cannot see."""

from __future__ import annotations

import numpy as np
import trimesh

from recon import fusion, hull, masks, synth
from recon.synth import SynthOptions, ring_cameras
from tests.test_geometry_stages import mask_scores, truth_workspace
from tests.test_hull import RADIUS, sphere_depth, sphere_mask

BOX = np.array([[x, y, z] for x in (-0.15, 0.15) for y in (-0.15, 0.15) for z in (-0.15, 0.15)])


def sphere_cameras(views: int = 24):
    options = SynthOptions(views=views, size_px=160)
    return ring_cameras(np.zeros(3), 3 * RADIUS, views, options, np.random.default_rng(0))


def test_seen_through_votes_count_the_photos_that_look_past_a_point() -> None:
    cameras = sphere_cameras()
    near, far = cameras[0], cameras[12]  # opposite sides of the ring
    front = near.center * RADIUS / np.linalg.norm(near.center)  # on the sphere, facing `near`
    inside_air = front * 1.3  # between `near` and the sphere: free space
    depth = sphere_depth(near).astype(np.float32)
    votes = hull.seen_through_votes(np.stack([front, inside_air]), [(near, depth, near.K)], 0.02)
    np.testing.assert_array_equal(votes, [0, 1])
    # A photo that sees only the far side knows nothing of the front point.
    far_depth = sphere_depth(far).astype(np.float32)
    assert hull.seen_through_votes(front[None], [(far, far_depth, far.K)], 0.02)[0] == 0
    # drop_seen_through asks for `min_views` such photos.
    seen = hull.hull_depth(
        hull.silhouette_field(cameras, [sphere_mask(c) for c in cameras], BOX, np.eye(3)[1]),
        near, near.K, sphere_depth(near) > 0,
    )  # fmt: skip
    beyond = [(c, (sphere_depth(c) * 1.5).astype(np.float32), c.K) for c in cameras[1:3]]
    assert (hull.drop_seen_through(seen, near, near.K, beyond[:1], 0.02, 2) > 0).sum() == (
        seen > 0
    ).sum()
    assert (hull.drop_seen_through(seen, near, near.K, beyond, 0.02, 2) > 0).sum() < 0.8 * (
        seen > 0
    ).sum()


def test_the_hull_closes_a_tsdf_that_one_photo_saw_half_of() -> None:
    cameras = sphere_cameras()
    field = hull.silhouette_field(
        cameras, [sphere_mask(c) for c in cameras], BOX, np.eye(3)[1], resolution=96
    )
    voxel = 0.004
    grid = fusion.tsdf_grid(voxel, block_count=10_000)
    camera = cameras[0]
    depth = sphere_depth(camera).astype(np.float32)
    for _ in range(3):  # weight 3: above the extraction threshold, like three agreeing photos
        fusion.integrate(grid, depth, camera.K, camera, 4.0)
    open_mesh = grid.extract_triangle_mesh(weight_threshold=2.0).to_legacy()
    closed_voxels = fusion.close_with_hull(
        grid, field, [(camera, depth, camera.K)], voxel=voxel, truncation_voxels=4.0,
        min_weight=2.0, margin_rel=0.02,
    )  # fmt: skip
    assert closed_voxels > 0
    legacy = grid.extract_triangle_mesh(weight_threshold=2.0).to_legacy()
    closed = trimesh.Trimesh(np.asarray(legacy.vertices), np.asarray(legacy.triangles))
    before = trimesh.Trimesh(np.asarray(open_mesh.vertices), np.asarray(open_mesh.triangles))
    before.merge_vertices()
    closed.merge_vertices()
    assert not before.is_watertight  # one photo sees one side
    assert closed.is_watertight
    radii = np.linalg.norm(closed.vertices, axis=1)
    assert np.median(np.abs(radii - RADIUS)) < 0.003  # the hull of 24 views hugs the sphere
    assert closed.area > 0.9 * 4 * np.pi * RADIUS**2


def test_rim_likeness_finds_a_pale_part_on_plain_paper_and_nothing_on_a_table() -> None:
    paper = np.full((200, 200, 3), (220, 216, 214), np.uint8)
    paper[80:120, 60:140] = (232, 230, 229)  # a white frame, a little brighter than the paper
    found, _ = masks.rim_likeness(paper, 8)
    assert found[85:115, 65:135].all()
    assert found.sum() == 40 * 80
    rng = np.random.default_rng(0)
    wood = rng.integers(60, 160, (200, 200, 3), dtype=np.uint8)
    wood[80:120, 60:140] = (232, 230, 229)
    assert not masks.rim_likeness(wood, 8)[0].any()


def test_masks_of_a_plain_white_mug_on_a_table_from_its_outline(tmp_path) -> None:
    capture = tmp_path / "white_mug_table"
    synth.run("white_mug", capture, SynthOptions(views=16, size_px=320, novel_views=0,
                                                background=synth.Background.TABLE))  # fmt: skip
    workspace = truth_workspace(capture, tmp_path / "ws")
    points = workspace.read_sfm_points()
    on_table = np.abs(points["xyz"][:, 1]) < 1e-6  # SfM finds nothing on the white glaze
    renumber = np.cumsum(on_table) - 1
    seen = points["visible_in"][on_table[points["visible_in"][:, 0]]]
    workspace.write_sfm_points(
        **{key: points[key][on_table] for key in ("xyz", "rgb", "error", "track")},
        visible_in=np.column_stack([renumber[seen[:, 0]], seen[:, 1]]).astype(np.int32),
    )
    result = masks.run(workspace)
    assert result.object_points == 0
    lowest_recall, precision = mask_scores(workspace, capture)
    assert lowest_recall > 0.99  # the handle too
    assert precision > 0.6
    size = np.ptp(result.region.box_corners @ masks.up_aligned_axes(result.region.up).T, axis=0)
    assert (size > [0.116, 0.1, 0.084]).all()
    assert (size < [0.116, 0.1, 0.084] * np.array(2.0)).all()
