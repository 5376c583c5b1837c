"""Depth maps by COLMAP's PatchMatch stereo on an NVIDIA GPU, for the depth stage.

Used instead of our CPU search (recon.depth) when asked for (`--depth-on cuda`) and pycolmap was
built with CUDA (the `pycolmap-cuda12` wheel, on a machine with an NVIDIA driver). It sees
exactly what the CPU search sees: the same downsized grey photos and cameras, the same
neighbour photos and the same depth range, and its maps are cut to the same grown product
masks, so the depth stage's own cross-check, fusion and everything after them are unchanged.

It is not the default, even on a GPU: on an H200 it took about 3 minutes for 24 photos of
500-600 px (COLMAP sweeps a photo with one GPU thread per column, so a photo this small leaves
the GPU idle: 0.9 s per iteration, 5 iterations, two passes) where ours takes 14 s on 2 CPU
cores, and the plain avocado's model scored lower: F@0.5 % 0.974 against 0.992, PSNR 33.3
against 36.0 dB. (Searching 8 photos at once on the one GPU, as COLMAP allows by listing it 8
times, was no faster and failed the plane test; the plain cracker box's maps from that run gave
0.981 against 0.990 and 28.8 against 30.1 dB.)

COLMAP reads a small dense workspace written here (``images/``, ``sparse/`` as text,
``stereo/patch-match.cfg`` naming each photo's neighbours) and writes its photometric and
geometric maps into ``stereo/``; the geometric ones (filtered by their agreement with the
neighbours' maps) are read back.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
from scipy.spatial.transform import Rotation

from recon.cameras import Camera
from recon.errors import StageError

logger = logging.getLogger(__name__)

STAGE = "depth"


def available() -> bool:
    """Whether pycolmap can run PatchMatch here (built with CUDA; a GPU is checked when it runs)."""
    import pycolmap

    return bool(pycolmap.has_cuda)


def compute_depth_maps(
    root: Path,
    images: list[np.ndarray],
    cameras: list[Camera],
    neighbors: list[list[int]],
    depth_range: tuple[float, float],
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per photo, (depth (h, w), world-frame normal (h, w, 3)) from COLMAP's PatchMatch.

    `images` are (h, w) float32 grey in [0, 1] with their `cameras` at that size; `neighbors`
    lists each photo's source photos by index; `depth_range` bounds every photo's search.
    Invalid pixels have depth 0. `root` is an empty folder for COLMAP's workspace.
    """
    import pycolmap

    write_workspace(root, images, cameras, neighbors)
    options = pycolmap.PatchMatchOptions()
    options.depth_min, options.depth_max = (float(v) for v in depth_range)
    options.max_image_size = -1  # the photos are already at the working size
    options.geom_consistency = True  # photometric pass, then one with the neighbours' maps
    options.filter = True
    try:
        pycolmap.patch_match_stereo(root, workspace_format="COLMAP", options=options)
    except Exception as error:  # pycolmap raises plain RuntimeErrors (no GPU, out of memory)
        raise StageError(
            STAGE,
            f"COLMAP's CUDA PatchMatch failed ({error}); run with the CPU depth search instead "
            "(recon reconstruct --depth-on cpu)",
        ) from error
    maps = []
    for index, camera in enumerate(cameras):
        stem = _image_file(index)
        depth_file = root / "stereo" / "depth_maps" / f"{stem}.geometric.bin"
        normal_file = root / "stereo" / "normal_maps" / f"{stem}.geometric.bin"
        shape = (camera.height, camera.width)
        if not depth_file.exists() or not normal_file.exists():
            logger.warning("depth: COLMAP wrote no map for %s", camera.name)
            maps.append((np.zeros(shape, np.float32), np.zeros((*shape, 3), np.float32)))
            continue
        depth = read_colmap_array(depth_file)
        normal = read_colmap_array(normal_file)
        if depth.shape != shape:
            raise StageError(
                STAGE,
                f"COLMAP's depth map of {camera.name} is {depth.shape[1]}×{depth.shape[0]}, "
                f"not {camera.width}×{camera.height}: re-run with --depth-on cpu",
            )
        depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
        # COLMAP's normals are in the photo's camera frame, facing it; ours are in the world's.
        world = (normal.reshape(-1, 3) @ camera.R).reshape(normal.shape)
        world[depth <= 0] = 0.0
        maps.append((depth, world.astype(np.float32)))
    return maps


def write_workspace(
    root: Path, images: list[np.ndarray], cameras: list[Camera], neighbors: list[list[int]]
) -> None:
    """COLMAP's dense workspace: 8-bit grey PNGs, a PINHOLE model as text, source photos."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "sparse").mkdir(exist_ok=True)
    (root / "stereo" / "depth_maps").mkdir(parents=True, exist_ok=True)
    (root / "stereo" / "normal_maps").mkdir(parents=True, exist_ok=True)
    (root / "stereo" / "consistency_graphs").mkdir(parents=True, exist_ok=True)
    camera_lines, image_lines = [], []
    for index, (image, camera) in enumerate(zip(images, cameras, strict=True)):
        grey = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
        if not cv2.imwrite(str(root / "images" / _image_file(index)), grey):
            raise StageError(STAGE, f"cannot write {root / 'images' / _image_file(index)}")
        fx, fy = float(camera.K[0, 0]), float(camera.K[1, 1])
        # COLMAP puts pixel centres at +0.5, we put them at 0 (recon.cameras).
        cx, cy = float(camera.K[0, 2]) + 0.5, float(camera.K[1, 2]) + 0.5
        camera_lines.append(
            f"{index + 1} PINHOLE {camera.width} {camera.height} {fx!r} {fy!r} {cx!r} {cy!r}"
        )
        qx, qy, qz, qw = (float(v) for v in Rotation.from_matrix(camera.R).as_quat())
        tx, ty, tz = (float(v) for v in camera.t)
        image_lines.append(
            f"{index + 1} {qw!r} {qx!r} {qy!r} {qz!r} {tx!r} {ty!r} {tz!r} {index + 1} "
            f"{_image_file(index)}\n"  # and an empty line: no 2-D points
        )
    (root / "sparse" / "cameras.txt").write_text("\n".join(camera_lines) + "\n")
    (root / "sparse" / "images.txt").write_text("\n".join(image_lines) + "\n")
    (root / "sparse" / "points3D.txt").write_text("")
    # Each photo, then its source photos: the neighbours the CPU search would use.
    config = []
    for index, others in enumerate(neighbors):
        config += [_image_file(index), ", ".join(_image_file(j) for j in others)]
    (root / "stereo" / "patch-match.cfg").write_text("\n".join(config) + "\n")


def read_colmap_array(path: Path) -> np.ndarray:
    """A COLMAP depth or normal map (.bin): "width&height&channels&" then float32 planes.
    Returns (h, w) for one channel, else (h, w, channels)."""
    raw = path.read_bytes()
    fields, offset = [], 0
    for _ in range(3):
        end = raw.index(b"&", offset)
        fields.append(int(raw[offset:end]))
        offset = end + 1
    width, height, channels = fields
    data = np.frombuffer(raw, dtype="<f4", count=width * height * channels, offset=offset)
    planes = data.reshape(channels, height, width)
    return planes[0].copy() if channels == 1 else np.moveaxis(planes, 0, -1).copy()


def _image_file(index: int) -> str:
    # Plain names: COLMAP names its maps after the image files; photos' own names may hold
    # characters or extensions it would mishandle.
    return f"{index:05d}.png"
