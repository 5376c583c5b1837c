"""Fusion trims stereo to the visual hull on plain backdrops only."""

from __future__ import annotations

import json

import numpy as np
import open3d as o3d
import trimesh
from PIL import Image

from recon import fusion, masks
from recon.masks import ObjectRegion
from tests.conftest import SAMPLE_CAPTURES_DIR
from tests.test_geometry_stages import truth_workspace, write_truth_depth


def test_a_mask_short_of_a_part_on_a_table_keeps_that_part(tmp_path) -> None:
    """On a table one photo's mask can stop short of a table-coloured part (a shoe's white
    sole): the hull loses the part, but stereo, which the other photos give, keeps it (the
    trim to the hull, plain backdrops only, would cut it)."""
    capture = SAMPLE_CAPTURES_DIR / "bottle_table"
    workspace = truth_workspace(capture, tmp_path)
    masks.run(workspace)
    write_truth_depth(workspace, capture)
    region = ObjectRegion.from_json(json.loads(workspace.region_path.read_text()))
    assert region.ground is not None
    # The first photo's mask loses the product's lower third.
    camera = workspace.read_sfm_cameras()[0]
    path = workspace.mask_path(camera.name)
    mask = np.asarray(Image.open(path)).copy()
    rows = np.flatnonzero(mask.any(axis=1))
    cut_from = rows[0] + 2 * (rows[-1] - rows[0]) // 3
    cut = np.zeros(mask.shape, dtype=bool)
    cut[cut_from:] = mask[cut_from:] > 0
    mask[cut] = 0
    Image.fromarray(mask).save(path)

    fusion.run(workspace)

    truth = trimesh.load(capture / "truth" / "mesh.ply", process=False)
    points, _ = trimesh.sample.sample_surface(truth, 20_000, seed=0)
    uv, depth = camera.project(points)
    pixel = np.round(uv).astype(int)
    on_photo = (depth > 0) & (pixel >= 0).all(axis=1)
    on_photo &= (pixel[:, 0] < mask.shape[1]) & (pixel[:, 1] < mask.shape[0])
    lost = np.zeros(len(points), dtype=bool)
    lost[on_photo] = cut[pixel[on_photo, 1], pixel[on_photo, 0]]
    # Above the fusion's table clearance: the part's own surface, not its foot.
    lost &= points[:, 1] > 0.01 * np.linalg.norm(np.ptp(truth.vertices, axis=0))
    assert lost.sum() > 1000
    fused = o3d.io.read_triangle_mesh(str(workspace.fused_mesh_path))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(fused))
    distance = scene.compute_distance(o3d.core.Tensor(points[lost].astype(np.float32))).numpy()
    diagonal = float(np.linalg.norm(np.ptp(truth.vertices, axis=0)))
    assert (distance < 0.005 * diagonal).mean() > 0.95
