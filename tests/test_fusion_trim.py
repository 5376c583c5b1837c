"""Fusion trims stereo to the visual hull on plain backdrops only, and there finds the ground
below the product where its stereo ends, not where stereo carried past its foot."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import open3d as o3d
import pytest
import trimesh
from PIL import Image

from recon import fusion, masks
from recon.cameras import Camera
from recon.masks import ObjectRegion
from recon.morphology import grow_mask
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
    assert read_region(workspace).ground is not None
    camera, cut = cut_mask(workspace)
    fusion.run(workspace)
    assert share_kept(workspace, capture, camera, cut) > 0.95


def test_only_one_pass_on_plain_paper_is_trimmed_to_the_hull(tmp_path) -> None:
    """On plain paper stereo is trimmed to the hull, but not in a capture of two passes (upright,
    then on its side), whose hull cut away the side the product lay on: there, as on a table,
    a part two photos' masks lost is kept. A part one photo's mask lost is kept on plain
    paper too (a hand in front of the product in that photo): it takes two to trim it."""
    capture = SAMPLE_CAPTURES_DIR / "cereal_box"
    workspace = truth_workspace(capture, tmp_path)
    masks.run(workspace)
    write_truth_depth(workspace, capture)
    camera, cut = cut_mask(workspace)
    one_pass = read_region(workspace)
    assert one_pass.ground is None
    assert one_pass.ground_by_photo is None
    fusion.run(workspace)
    assert share_kept(workspace, capture, camera, cut) > 0.95
    cut_mask(workspace, photo=1)
    fusion.run(workspace)
    assert share_kept(workspace, capture, camera, cut) < 0.5
    # Two passes on plain paper: each photo's own pass shows no table (recon.passes).
    names = [c.name for c in workspace.read_sfm_cameras()]
    two_passes = dataclasses.replace(one_pass, ground_by_photo=dict.fromkeys(names))
    workspace.region_path.write_text(json.dumps(two_passes.to_json()))
    fusion.run(workspace)
    assert share_kept(workspace, capture, camera, cut) > 0.95


def read_region(workspace) -> ObjectRegion:
    return ObjectRegion.from_json(json.loads(workspace.region_path.read_text()))


def cut_mask(workspace, photo: int = 0) -> tuple[Camera, np.ndarray]:
    """The `photo`-th photo's mask less the product's lower third; that photo's camera and the
    (h, w) bool pixels cut."""
    camera = workspace.read_sfm_cameras()[photo]
    path = workspace.mask_path(camera.name)
    mask = np.asarray(Image.open(path)).copy()
    rows = np.flatnonzero(mask.any(axis=1))
    cut_from = rows[0] + 2 * (rows[-1] - rows[0]) // 3
    cut = np.zeros(mask.shape, dtype=bool)
    cut[cut_from:] = mask[cut_from:] > 0
    mask[cut] = 0
    Image.fromarray(mask).save(path)
    return camera, cut


def share_kept(workspace, capture, camera: Camera, cut: np.ndarray) -> float:
    """Share of the truth surface that `camera` sees in its `cut` pixels (above 1 % of the
    diagonal: the part's own surface, not its foot) within 0.5 % of the diagonal of the fused
    surface."""
    truth = trimesh.load(capture / "truth" / "mesh.ply", process=False)
    diagonal = float(np.linalg.norm(np.ptp(truth.vertices, axis=0)))
    points, _ = trimesh.sample.sample_surface(truth, 20_000, seed=0)
    uv, depth = camera.project(points)
    pixel = np.round(uv).astype(int)
    on_photo = (depth > 0) & (pixel >= 0).all(axis=1)
    on_photo &= (pixel[:, 0] < cut.shape[1]) & (pixel[:, 1] < cut.shape[0])
    lost = np.zeros(len(points), dtype=bool)
    lost[on_photo] = cut[pixel[on_photo, 1], pixel[on_photo, 0]]
    lost &= points[:, 1] > 0.01 * diagonal
    assert lost.sum() > 1000
    fused = o3d.io.read_triangle_mesh(str(workspace.fused_mesh_path))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(fused))
    distance = scene.compute_distance(o3d.core.Tensor(points[lost].astype(np.float32))).numpy()
    return float((distance < 0.005 * diagonal).mean())


def carry_depths_onto_the_paper(workspace, capture) -> None:
    """Each photo's mask its true outline grown by the masks stage's margin, and its depth map
    as PatchMatch leaves it at worst beside a product on plain paper: every pixel of that margin
    takes the depth of the nearest product pixel (its window's plane carried onto the paper)."""
    margin = masks.MaskOptions().mask_dilate_rel
    for camera in workspace.read_sfm_cameras():
        truth = cv2.imread(str(capture / "truth" / "masks" / f"{Path(camera.name).stem}.png"), 0)
        grown = grow_mask((truth > 0).astype(np.uint8), round(margin * max(truth.shape)))
        cv2.imwrite(str(workspace.mask_path(camera.name)), grown * 255)
        path = workspace.depth_path(camera.name)
        with np.load(path) as saved:
            maps = dict(saved)
        depth = maps["depth"]
        mask = cv2.resize(grown, depth.shape[::-1], interpolation=cv2.INTER_NEAREST)
        _, labels = cv2.distanceTransformWithLabels(
            (depth <= 0).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
        )
        nearest = np.zeros(labels.max() + 1, np.float32)
        nearest[labels[depth > 0]] = depth[depth > 0]
        empty = (mask > 0) & (depth <= 0)
        depth[empty] = nearest[labels[empty]]
        maps["depth"], maps["confidence"] = depth, np.where(depth > 0, 1.0, 0.0).astype(np.float32)
        np.savez(path, **maps)


def fused_base_height(workspace) -> float:
    """Height (truth frame, y up) of the lowest 0.1 % of the fused surface's vertices."""
    fused = o3d.io.read_triangle_mesh(str(workspace.fused_mesh_path))
    return float(np.percentile(np.asarray(fused.vertices)[:, 1], 0.1))


def test_depths_carried_onto_the_paper_do_not_sink_a_plain_products_base(tmp_path) -> None:
    """On plain paper the ground is where the product's stereo ends; depths that stereo carries
    from a face past the product's foot onto the paper, in the masks' margin, lie below it and
    must not pull the base down with them."""
    capture = SAMPLE_CAPTURES_DIR / "cereal_box"
    workspace = truth_workspace(capture, tmp_path)
    masks.run(workspace)
    assert ObjectRegion.from_json(json.loads(workspace.region_path.read_text())).ground is None
    write_truth_depth(workspace, capture)
    carry_depths_onto_the_paper(workspace, capture)
    truth = trimesh.load(capture / "truth" / "mesh.ply", process=False)
    diagonal = float(np.linalg.norm(np.ptp(truth.vertices, axis=0)))

    fusion.run(workspace)
    base = fused_base_height(workspace)
    # Set by all the product's depths, margin and all, the base sinks into the paper.
    fusion.run(workspace, fusion.FusionOptions(plain_ground_allowance_rel=1.0))
    sunk = fused_base_height(workspace)
    assert abs(base) < 0.008 * diagonal
    assert sunk < -0.015 * diagonal


def test_legs_outside_the_masks_outline_keep_the_ground_at_their_feet() -> None:
    """A mask that holds a product's thin legs too thinly to keep an outline: the ground is
    lifted at most FusionOptions.plain_ground_max_lift_rel above their feet, not to its body."""
    # Looking along +z at a board on two legs, 2 m away; the world's y is up.
    camera = Camera(
        name="front", width=200, height=200,
        K=np.array([[200.0, 0, 100], [0, 200, 100], [0, 0, 1]]),
        R=np.diag([-1.0, -1.0, 1.0]), t=np.array([0.0, 0.5, 2.0]),
    )  # fmt: skip
    body = np.zeros((200, 200), np.uint8)
    body[70:120, 70:131] = 255  # y 0.3-0.8 m
    legs = np.zeros_like(body)
    legs[120:151, 72:74] = legs[120:151, 127:129] = 255  # y 0-0.3 m, 1 cm thick
    mask = np.maximum(grow_mask(body, 3), legs)
    depth = np.where((body | legs) > 0, 2.0, 0.0).astype(np.float32)
    options = fusion.FusionOptions()
    diagonal = 1.0

    ground = fusion.plain_ground(
        {0: (camera, depth, camera.K)}, [mask], np.array([0.0, 1.0, 0.0]), options, diagonal
    )

    # With no lift allowed the ground is the lowest of all the depths: the legs' feet.
    feet = fusion.plain_ground(
        {0: (camera, depth, camera.K)}, [mask], np.array([0.0, 1.0, 0.0]),
        fusion.FusionOptions(plain_ground_max_lift_rel=0.0), diagonal,
    )  # fmt: skip
    assert feet[3] == pytest.approx(0.0, abs=0.02)  # y = 0 m
    lift = feet[3] - ground[3]  # planes are [up, -height]
    assert 0 <= lift <= options.plain_ground_max_lift_rel * diagonal + 1e-9
    # Without the cap the legs would go: cut at the body's foot, 0.3 m up.
    uncapped = fusion.FusionOptions(plain_ground_max_lift_rel=1.0)
    body_foot = -fusion.plain_ground(
        {0: (camera, depth, camera.K)}, [mask], np.array([0.0, 1.0, 0.0]), uncapped, diagonal
    )[3]
    assert body_foot > 0.25
