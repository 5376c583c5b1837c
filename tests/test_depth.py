"""Dense depth against exact truth: a sample capture's own cameras, its rendered truth depth."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import trimesh

from recon import depth
from recon.cameras import Camera, read_cameras_json, sightings_in, spread_cameras
from recon.errors import StageError
from recon.render import OffscreenRenderer
from recon.textured_mesh import from_trimesh
from recon.workspace import Workspace
from tests.conftest import SAMPLE_CAPTURES_DIR

BOX = SAMPLE_CAPTURES_DIR / "cereal_box"
FAST = depth.DepthOptions(max_image_px=240)


@dataclasses.dataclass(frozen=True)
class Truth:
    """A sample capture's truth: cameras, surface, and sparse points as SfM would give them."""

    capture: Path
    cameras: list[Camera]
    mesh: trimesh.Trimesh
    diagonal: float
    points: dict[str, np.ndarray]

    def render_depth(self, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
        """(h, w) truth depth (0 where empty) and (h, w) bool silhouette at `camera`."""
        with OffscreenRenderer(from_trimesh(self.mesh)) as renderer:
            rendering = renderer.render(camera)
        return rendering.depth, rendering.mask


def truth_points(mesh: trimesh.Trimesh, cameras: list[Camera], count: int) -> dict:
    """Points on the truth surface and the cameras that see them (in front of the truth depth)."""
    xyz = trimesh.sample.sample_surface(mesh, count, seed=3)[0]
    tolerance = 0.005 * float(np.linalg.norm(mesh.extents))
    pairs = []
    with OffscreenRenderer(from_trimesh(mesh)) as renderer:
        for index, camera in enumerate(cameras):
            surface = renderer.render(camera).depth
            uv, z = camera.project(xyz)
            cols = np.clip(np.round(uv[:, 0]).astype(int), 0, camera.width - 1)
            rows = np.clip(np.round(uv[:, 1]).astype(int), 0, camera.height - 1)
            seen = (surface[rows, cols] > 0) & (np.abs(z - surface[rows, cols]) < tolerance)
            pairs.append(np.stack([np.flatnonzero(seen), np.full(seen.sum(), index)], axis=1))
    visible_in = np.concatenate(pairs)
    return {"xyz": xyz, "visible_in": visible_in, "track": np.bincount(visible_in[:, 0])}


@pytest.fixture(scope="module")
def box() -> Truth:
    cameras = read_cameras_json(BOX / "truth" / "cameras.json")
    mesh = trimesh.load(BOX / "truth" / "mesh.ply", force="mesh")
    return Truth(
        capture=BOX,
        cameras=cameras,
        mesh=mesh,
        diagonal=float(np.linalg.norm(mesh.extents)),
        points=truth_points(mesh, cameras, 4000),
    )


def make_workspace(truth: Truth, out_dir: Path, views: list[int], *, masks: bool) -> Workspace:
    """A job folder with what the depth stage reads, for a subset of the capture's photos."""
    workspace = Workspace(out_dir)
    workspace.create()
    cameras = [truth.cameras[i] for i in views]
    workspace.write_sfm_cameras(cameras)
    workspace.sfm_images_dir.mkdir(parents=True)
    if masks:
        workspace.masks_dir.mkdir(parents=True)
    for camera in cameras:
        shutil.copy(truth.capture / "images" / camera.name, workspace.sfm_image_path(camera.name))
        if masks:
            mask = truth.capture / "truth" / "masks" / Path(camera.name).with_suffix(".png")
            shutil.copy(mask, workspace.mask_path(camera.name))
    workspace.write_sfm_points(
        xyz=truth.points["xyz"],
        visible_in=sightings_in(truth.points["visible_in"], views, len(truth.cameras)),
        track=truth.points["track"],
    )
    return workspace


def depth_of_view(truth: Truth, index: int, size_px: int, *, use_mask: bool) -> depth.DepthMap:
    """compute_depth_map for one photo of the capture with its chosen neighbours."""
    options = dataclasses.replace(FAST, max_image_px=size_px)
    neighbors = depth.select_neighbors(truth.cameras, truth.points, 4, 4.0, 50.0)[index]
    images, cameras = [], []
    for i in [index, *neighbors]:
        photo = cv2.imread(str(truth.capture / "images" / truth.cameras[i].name))
        image, camera = depth.working_view(photo, truth.cameras[i], size_px)
        images.append(image)
        cameras.append(camera)
    mask = truth.render_depth(cameras[0])[1] if use_mask else None
    near_far = depth.view_depth_range(cameras[0], truth.points, index, mask, options.depth_margin)
    return depth.compute_depth_map(
        images[0], cameras[0], images[1:], cameras[1:], near_far, mask, options
    )


def test_neighbors_are_the_nearest_views_on_the_rings(box: Truth) -> None:
    neighbors = depth.select_neighbors(box.cameras, box.points, 4, 4.0, 50.0)
    axes = np.array([camera.R[2] for camera in box.cameras])
    for index, chosen in enumerate(neighbors):
        assert index not in chosen
        assert len(set(chosen)) == 4
        angles = np.degrees(np.arccos(np.clip(axes[chosen] @ axes[index], -1, 1)))
        # 24 photos on two rings, 30° apart on each: partners are the adjacent ones (25-35°
        # away) or, where the product shows another face, the next but one (≤ 50°).
        assert angles.max() < 50.0, (index, chosen, angles)
        assert (angles < 36.0).sum() >= 2, (index, chosen, angles)


def test_depth_range_brackets_the_truth(box: Truth) -> None:
    for index in (0, 7, 18):
        camera = box.cameras[index]
        truth_depth, silhouette = box.render_depth(camera)
        near, far = depth.view_depth_range(
            camera, box.points, index, silhouette, depth.DepthOptions().depth_margin
        )
        seen = truth_depth[silhouette]
        assert near <= seen.min()
        assert far >= seen.max()
        assert far - near < 2.0 * (seen.max() - seen.min()) + 0.02


def test_depth_map_matches_rendered_truth(box: Truth) -> None:
    result = depth_of_view(box, 0, 320, use_mask=True)
    truth_depth, silhouette = box.render_depth(result.camera)
    valid = result.depth > 0
    inside = valid & silhouette
    error = np.abs(result.depth - truth_depth)[inside]
    completeness = inside.sum() / silhouette.sum()
    assert completeness > 0.85
    assert (error < 0.005 * box.diagonal).mean() > 0.93
    assert np.median(error) < 0.001 * box.diagonal
    # The front of the box faces +Z: its normals, in the world frame, point there.
    facing = result.normal[inside] @ np.array([0.0, 0.0, 1.0])
    assert np.median(facing) > 0.97
    assert result.confidence[valid].min() >= 0.0
    assert result.confidence.max() <= 1.0
    assert result.depth.dtype == np.float32
    assert result.normal.shape == (*result.depth.shape, 3)


def test_faint_print_is_still_searched(box: Truth) -> None:
    # The box's print at 5 % of its contrast, back in 8 bits: a grey level or two, like the
    # grain of a plain plastic bottle. The old texture thresholds (0.005 / 0.002) searched
    # half of it (completeness 0.50); the matching itself still finds it (0.95).
    index, size_px = 0, 320
    options = dataclasses.replace(FAST, max_image_px=size_px)
    neighbors = depth.select_neighbors(box.cameras, box.points, 4, 4.0, 50.0)[index]
    images, cameras = [], []
    for i in [index, *neighbors]:
        photo = cv2.imread(str(box.capture / "images" / box.cameras[i].name), cv2.IMREAD_GRAYSCALE)
        faint = np.round(128 + 0.05 * (photo.astype(np.float32) - 128)).astype(np.uint8)
        image, camera = depth.working_view(faint, box.cameras[i], size_px)
        images.append(image)
        cameras.append(camera)
    truth_depth, silhouette = box.render_depth(cameras[0])
    near_far = depth.view_depth_range(cameras[0], box.points, index, silhouette, 0.25)
    result = depth.compute_depth_map(
        images[0], cameras[0], images[1:], cameras[1:], near_far, silhouette, options
    )
    inside = (result.depth > 0) & silhouette
    error = np.abs(result.depth - truth_depth)[inside]
    assert inside.sum() / silhouette.sum() > 0.85
    assert (error < 0.005 * box.diagonal).mean() > 0.93


def test_plain_background_stays_invalid_without_a_mask(box: Truth) -> None:
    result = depth_of_view(box, 5, 240, use_mask=False)
    _, silhouette = box.render_depth(result.camera)
    near_product = cv2.dilate(silhouette.astype(np.uint8), np.ones((9, 9))) > 0
    valid = result.depth > 0
    assert valid[silhouette].mean() > 0.7
    # No depth is invented on the plain studio paper, away from the product's edges.
    assert (valid & ~near_product).sum() < 0.002 * valid.size


def test_consistency_filter_removes_injected_outliers(box: Truth) -> None:
    views = [0, 1, 11, 12, 23]  # view 0 and four photos around it on both rings
    maps = []
    for index in views:
        camera = box.cameras[index].scaled(0.25)
        truth_depth, _ = box.render_depth(camera)
        normal = np.zeros((*truth_depth.shape, 3), np.float32)
        normal[truth_depth > 0] = (0.0, 0.0, 1.0)
        confidence = (truth_depth > 0).astype(np.float32)
        maps.append(depth.DepthMap(truth_depth, normal, confidence, camera))
    rng = np.random.default_rng(1)
    reference = maps[0]
    valid = np.flatnonzero(reference.depth.ravel() > 0)
    outliers = rng.choice(valid, size=len(valid) // 10, replace=False)
    noisy = reference.depth.copy().ravel()
    noisy[outliers] *= rng.choice([0.9, 0.95, 1.05, 1.1], size=len(outliers)).astype(np.float32)
    maps[0] = dataclasses.replace(reference, depth=noisy.reshape(reference.depth.shape))
    neighbors = [[1, 2, 3, 4], [0, 2, 3, 4], [0, 1, 3, 4], [0, 1, 2, 4], [0, 1, 2, 3]]
    options = dataclasses.replace(FAST, min_consistent_views=2, average_consistent=False)
    kept = depth.filter_consistent(maps, neighbors, options)[0].depth.ravel()
    inliers = np.setdiff1d(valid, outliers)
    assert (kept[outliers] == 0).mean() > 0.97
    assert (kept[inliers] > 0).mean() > 0.85
    assert np.array_equal(kept[inliers][kept[inliers] > 0], noisy[inliers][kept[inliers] > 0])


def test_run_writes_checked_maps_and_reports_progress(box: Truth, tmp_path: Path) -> None:
    views = list(range(0, 12))  # the lower ring: photos 30° apart
    workspace = make_workspace(box, tmp_path / "job", views, masks=True)
    events: list[tuple[str, float, str]] = []
    result = depth.run(
        workspace, dataclasses.replace(FAST, max_image_px=200), progress=lambda *e: events.append(e)
    )
    assert result.views == 12
    assert 0.5 < result.valid_fraction <= 1.0
    assert result.seconds > 0
    fractions = [fraction for stage, fraction, _ in events]
    assert {stage for stage, _, _ in events} == {"depth"}
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0
    assert len(events) >= 12
    for camera in workspace.read_sfm_cameras():
        with np.load(workspace.depth_path(camera.name)) as data:
            assert set(data.files) >= {
                "depth",
                "normal",
                "confidence",
                "K",
                "R",
                "t",
                "width",
                "height",
            }
            height, width = int(data["height"]), int(data["width"])
            assert max(height, width) == 200
            assert data["depth"].shape == (height, width)
            assert data["depth"].dtype == np.float32
            assert data["normal"].shape == (height, width, 3)
            assert data["confidence"].shape == (height, width)
            np.testing.assert_allclose(data["K"], camera.scaled(200 / camera.width).K)
            np.testing.assert_allclose(data["R"], camera.R)
            np.testing.assert_allclose(data["t"], camera.t)
            valid = data["depth"] > 0
            assert np.allclose(np.linalg.norm(data["normal"][valid], axis=1), 1.0, atol=1e-3)
            assert (data["confidence"][valid] > 0).all()
            assert (data["confidence"][~valid] == 0).all()


def test_a_dense_capture_gets_depth_maps_for_photos_spread_round_it(
    box: Truth, tmp_path: Path
) -> None:
    """Capped at 12 maps, the 24 photos get maps for 12 spread round the box, bit for bit the
    maps of a capture of those 12 photos alone; the others get none."""
    options = dataclasses.replace(FAST, max_image_px=160, max_views=12)
    workspace = make_workspace(box, tmp_path / "all", list(range(24)), masks=True)
    result = depth.run(workspace, options)
    chosen = spread_cameras(box.cameras, 12)
    assert result.views == 12
    gaps = np.diff(chosen)
    assert gaps.min() >= 1
    assert gaps.max() <= 3
    alone = make_workspace(box, tmp_path / "alone", chosen, masks=True)
    depth.run(alone, dataclasses.replace(options, max_views=None))
    for index, camera in enumerate(box.cameras):
        path = workspace.depth_path(camera.name)
        if index not in chosen:
            assert not path.exists()
            continue
        expected = depth.read_depth_map(alone.depth_path(camera.name)).depth
        assert (expected > 0).sum() > 100
        np.testing.assert_array_equal(depth.read_depth_map(path).depth, expected)


def test_a_run_again_leaves_no_map_of_an_earlier_run_behind(box: Truth, tmp_path: Path) -> None:
    """Run again with fewer maps allowed (a resumed job whose options changed): the photos
    left out lose their earlier maps, which fusion would otherwise read."""
    workspace = make_workspace(box, tmp_path / "job", list(range(12)), masks=True)
    options = dataclasses.replace(FAST, max_image_px=120)
    depth.run(workspace, options)
    names = [camera.name for camera in workspace.read_sfm_cameras()]
    assert all(workspace.depth_path(name).exists() for name in names)
    depth.run(workspace, dataclasses.replace(options, max_views=6))
    chosen = spread_cameras(workspace.read_sfm_cameras(), 6)
    mapped = [index for index, name in enumerate(names) if workspace.depth_path(name).exists()]
    assert mapped == chosen


def test_run_without_sparse_points_says_what_to_do(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "job")
    workspace.create()
    workspace.write_sfm_cameras(read_cameras_json(BOX / "truth" / "cameras.json")[:3])
    with pytest.raises(StageError, match="run the sfm stage"):
        depth.run(workspace)


def test_maps_do_not_depend_on_the_number_of_threads(box: Truth, tmp_path: Path) -> None:
    # Views are searched side by side, each pixel's random draws are its own: one thread or
    # two must give the same maps, bit for bit.
    views = [0, 1, 2, 3, 11, 12]
    maps = []
    for workers in (1, 2):
        workspace = make_workspace(box, tmp_path / f"job{workers}", views, masks=True)
        depth.run(workspace, dataclasses.replace(FAST, max_image_px=160, workers=workers))
        maps.append(
            [
                depth.read_depth_map(workspace.depth_path(camera.name)).depth
                for camera in workspace.read_sfm_cameras()
            ]
        )
    assert sum((m > 0).sum() for m in maps[0]) > 1000
    for one, two in zip(*maps, strict=True):
        np.testing.assert_array_equal(one, two)
