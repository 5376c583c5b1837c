"""The depth stage's GPU path (COLMAP's CUDA PatchMatch): its files on any machine, its depths
against an exact plane where pycolmap has CUDA.

Only numpy, OpenCV and pycolmap are used here, so the file also runs on a GPU machine that
lacks the rest of the project's packages.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pycolmap
import pytest

from recon import depth, patchmatch_cuda
from recon.cameras import Camera, look_at
from recon.errors import StageError

SIZE = (480, 360)  # photo width, height


def plane_views(count: int = 5) -> tuple[list[np.ndarray], list[Camera], list[np.ndarray]]:
    """Grey photos of a textured plane (z = 0, 2 × 2 units), their cameras and true depths."""
    rng = np.random.default_rng(7)
    texture = np.zeros((1024, 1024), np.float32)
    for cells in (8, 32, 128, 512):  # blobs at several scales: texture for every window size
        noise = rng.random((cells, cells)).astype(np.float32)
        texture += cv2.resize(noise, (1024, 1024), interpolation=cv2.INTER_CUBIC)
    texture = (texture - texture.min()) / np.ptp(texture)
    width, height = SIZE
    K = np.array([[400.0, 0, (width - 1) / 2], [0, 400.0, (height - 1) / 2], [0, 0, 1]])
    images, cameras, depths = [], [], []
    for index in range(count):
        angle = np.radians(-24 + 12 * index)
        eye = np.array([2.2 * np.sin(angle), 0.4, -2.2 * np.cos(angle)])
        R, t = look_at(eye, np.zeros(3))
        camera = Camera(name=f"view_{index}.jpg", width=width, height=height, K=K, R=R, t=t)
        cols, rows = np.meshgrid(np.arange(width), np.arange(height))
        rays = np.stack([cols, rows, np.ones_like(cols)], -1).reshape(-1, 3) @ np.linalg.inv(K).T
        world_rays = rays @ R  # camera frame to world: Rᵀ ray
        scale = -eye[2] / world_rays[:, 2]  # ray parameter where it meets z = 0
        hits = eye + scale[:, None] * world_rays
        map_x = ((hits[:, 0] + 1) / 2 * 1023).reshape(height, width).astype(np.float32)
        map_y = ((1 - (hits[:, 1] + 1) / 2) * 1023).reshape(height, width).astype(np.float32)
        image = cv2.remap(texture, map_x, map_y, cv2.INTER_LINEAR, borderValue=0.5)
        inside = (np.abs(hits[:, :2]) < 1).all(axis=1).reshape(height, width)
        images.append(image.astype(np.float32))
        cameras.append(camera)
        depths.append(
            np.where(inside, scale.reshape(height, width) * rays[:, 2].reshape(height, width), 0)
        )
    return images, cameras, depths


def write_colmap_array(path: Path, array: np.ndarray) -> None:
    """Write (h, w) or (h, w, c) float32 as COLMAP does."""
    planes = array[None] if array.ndim == 2 else np.moveaxis(array, -1, 0)
    channels, height, width = planes.shape
    with open(path, "wb") as out:
        out.write(f"{width}&{height}&{channels}&".encode())
        out.write(np.ascontiguousarray(planes, dtype="<f4").tobytes())


def neighbours(count: int) -> list[list[int]]:
    return [[j for j in range(count) if j != i][:4] for i in range(count)]


def test_colmap_arrays_read_as_colmap_writes_them(tmp_path: Path) -> None:
    # COLMAP's layout (its read_write_dense.py): "w&h&c&", then float32 in Fortran order of
    # (w, h, c): each channel a row-major plane.
    values = np.arange(2 * 3 * 4, dtype=np.float32)
    path = tmp_path / "map.bin"
    path.write_bytes(b"4&3&2&" + values.tobytes())
    array = patchmatch_cuda.read_colmap_array(path)
    expected = values.reshape((4, 3, 2), order="F").transpose(1, 0, 2)
    np.testing.assert_array_equal(array, expected)
    write_colmap_array(tmp_path / "again.bin", array)
    assert (tmp_path / "again.bin").read_bytes() == path.read_bytes()
    single = tmp_path / "depth.bin"
    write_colmap_array(single, expected[..., 0])
    np.testing.assert_array_equal(patchmatch_cuda.read_colmap_array(single), expected[..., 0])


def test_colmap_reads_the_workspace_as_our_cameras(tmp_path: Path) -> None:
    images, cameras, _ = plane_views(3)
    patchmatch_cuda.write_workspace(tmp_path, images, cameras, [[1, 2], [0, 2], [1]])
    model = pycolmap.Reconstruction(tmp_path / "sparse")
    assert model.num_reg_images() == 3
    for index, camera in enumerate(cameras):
        image = model.image(index + 1)
        pose = image.cam_from_world()
        np.testing.assert_allclose(pose.matrix(), np.c_[camera.R, camera.t], atol=1e-9)
        # COLMAP's pixel centres are at +0.5: the same principal point, half a pixel on
        np.testing.assert_allclose(
            model.camera(image.camera_id).params,
            [400.0, 400.0, camera.K[0, 2] + 0.5, camera.K[1, 2] + 0.5],
        )
        photo = cv2.imread(str(tmp_path / "images" / image.name), cv2.IMREAD_GRAYSCALE)
        assert np.abs(photo / 255.0 - images[index]).max() <= 0.5 / 255 + 1e-6
    config = (tmp_path / "stereo" / "patch-match.cfg").read_text().split("\n")
    assert config[:2] == ["00000.png", "00001.png, 00002.png"]


def test_depth_device_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(patchmatch_cuda, "available", lambda: False)
    assert depth.search_device(depth.DepthOptions()) == "cpu"
    with pytest.raises(StageError, match=r"pycolmap-cuda12.*--depth-on cpu"):
        depth.search_device(depth.DepthOptions(device="cuda"))
    with pytest.raises(StageError, match="use cpu or cuda"):
        depth.search_device(depth.DepthOptions(device="gpu"))
    monkeypatch.setattr(patchmatch_cuda, "available", lambda: True)
    assert depth.search_device(depth.DepthOptions()) == "cpu"  # the GPU only when asked for
    assert depth.search_device(depth.DepthOptions(device="cuda")) == "cuda"


@pytest.mark.skipif(not pycolmap.has_cuda, reason="pycolmap without CUDA (pycolmap-cuda12 has it)")
def test_gpu_patchmatch_finds_the_plane(tmp_path: Path) -> None:
    images, cameras, truth = plane_views()
    maps = patchmatch_cuda.compute_depth_maps(
        tmp_path, images, cameras, neighbours(len(cameras)), (1.0, 4.0)
    )
    for (found, normal), true_depth, camera in zip(maps, truth, cameras, strict=True):
        inner = cv2.erode((true_depth > 0).astype(np.uint8), np.ones((15, 15))) > 0
        valid = inner & (found > 0)
        assert valid.sum() > 0.8 * inner.sum(), camera.name
        error = np.abs(found[valid] - true_depth[valid]) / true_depth[valid]
        assert np.median(error) < 0.002, camera.name
        assert np.mean(error < 0.01) > 0.95, camera.name
        # the plane's normal is ±z; ours face the camera, so against the view direction
        facing = normal[valid] @ camera.R[2]
        assert np.median(np.abs(normal[valid][:, 2])) > 0.98, camera.name
        assert np.median(facing) < 0, camera.name
