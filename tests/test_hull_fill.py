"""Asked to (hull_fill_seen_views), the hull fills only what no photos' stereo saw: where they
did, its bulge stays out."""

from __future__ import annotations

import cv2
import numpy as np
import open3d as o3d
import trimesh

from recon import fusion, masks
from tests.conftest import SAMPLE_CAPTURES_DIR
from tests.test_geometry_stages import truth_workspace, write_truth_depth


def test_stereo_gaps_at_the_outlines_of_a_printed_box_take_no_hull_depths(tmp_path) -> None:
    """Stereo finds nothing in a band along each photo's outline (its windows straddle the
    backdrop), where the other photos' stereo sees the surface frontally. Between the photos'
    directions the hull stands off a box's flat faces: its depths there would pull the faces
    out; the other photos' depths alone leave them where they are. (True depths, emptied 6 px
    in from each map's outline.)"""
    capture = SAMPLE_CAPTURES_DIR / "cereal_box"
    workspace = truth_workspace(capture, tmp_path)
    masks.run(workspace)
    write_truth_depth(workspace, capture)
    for camera in workspace.read_sfm_cameras():
        path = workspace.depth_path(camera.name)
        maps = dict(np.load(path))
        depth = maps["depth"]
        inside = cv2.distanceTransform((depth > 0).astype(np.uint8), cv2.DIST_L2, 5)
        maps["depth"] = np.where(inside > 6, depth, 0).astype(np.float32)
        np.savez(path, **maps)
    truth = trimesh.load(capture / "truth" / "mesh.ply", process=False)
    diagonal = float(np.linalg.norm(np.ptp(truth.vertices, axis=0)))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(truth.vertices.astype(np.float32)),
        o3d.core.Tensor(truth.faces.astype(np.uint32)),
    )

    def off_truth(options: fusion.FusionOptions) -> float:
        fusion.run(workspace, options)
        fused = o3d.io.read_triangle_mesh(str(workspace.fused_mesh_path))
        vertices = o3d.core.Tensor(np.asarray(fused.vertices).astype(np.float32))
        return float((scene.compute_distance(vertices).numpy() > 0.002 * diagonal).mean())

    filled_everywhere = off_truth(fusion.FusionOptions(hull_fill_seen_views=0))
    # (measured: 19.7 % of the fused vertices over 0.2 % of the diagonal off, 16.5 % without)
    assert off_truth(fusion.FusionOptions(hull_fill_seen_views=2)) < 0.9 * filled_everywhere
