"""Fusion: the per-photo depth maps merged into one surface of the product (TSDF)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass

import cv2
import numpy as np
import open3d as o3d

from recon import hull
from recon.cameras import Camera
from recon.errors import StageError
from recon.masks import ObjectRegion, up_aligned_axes
from recon.progress import ProgressCallback
from recon.workspace import Workspace, atomic_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class FusionOptions:
    """How depth maps become one surface."""

    voxel_rel: float = 0.0015  # TSDF voxel size, × the product box diagonal
    truncation_voxels: float = 4.0  # signed distances are cut off this many voxels from a surface
    min_weight: float = 2.0  # keep surface seen by at least this many depth maps
    min_confidence: float = 0.0  # ignore depths the stereo stage trusted less than this
    ground_clearance_rel: float = 0.004  # ignore depths this close to the table (× box diagonal)
    # Where stereo found nothing inside the product's mask (plain surfaces), the visual hull's
    # depth stands in (see recon.hull); 0 turns it off.
    hull_resolution: int = 128  # hull grid cells along the product box's longest side
    hull_mask_margin_rel: float = 0.015  # the masks' safety margin (MaskOptions), taken off again
    # A hull depth that another photo's stereo sees through (its surface lies farther than the
    # hull point by this × depth) is a concavity silhouettes cannot see, such as a mug's
    # opening: dropped.
    hull_free_space_rel: float = 0.02


@dataclass(frozen=True)
class FusionResult:
    views: int
    faces: int
    seconds: float


def run(
    workspace: Workspace,
    options: FusionOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> FusionResult:
    """Integrate the product's depths from every photo into a TSDF and extract its surface."""
    options = options or FusionOptions()
    start = time.perf_counter()
    cameras = workspace.read_sfm_cameras()
    region = ObjectRegion.from_json(json.loads(workspace.region_path.read_text()))
    diagonal = float(np.linalg.norm(np.ptp(region.box_corners, axis=0)))
    voxel = options.voxel_rel * diagonal
    grid = o3d.t.geometry.VoxelBlockGrid(
        attr_names=("tsdf", "weight"),
        attr_dtypes=(o3d.core.float32, o3d.core.float32),
        attr_channels=((1), (1)),
        voxel_size=voxel,
        block_resolution=8,
        block_count=100_000,
    )
    masks = [  # a scene's photos have none: every pixel counts
        cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path.exists() else None
        for path in (workspace.mask_path(camera.name) for camera in cameras)
    ]
    field = None
    if options.hull_resolution > 0 and all(mask is not None for mask in masks):
        field = hull.silhouette_field(
            cameras, masks, region.box_corners, region.up, resolution=options.hull_resolution,
            erode_px=[options.hull_mask_margin_rel * max(c.width, c.height) for c in cameras],
        )  # fmt: skip
    maps: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for index, camera in enumerate(cameras):
        path = workspace.depth_path(camera.name)
        if path.exists():
            with np.load(path) as depth_map:
                maps[index] = (
                    depth_map["depth"].astype(np.float32),
                    depth_map["confidence"],
                    depth_map["K"].astype(np.float64),
                )
    views, hull_pixels, stereo_pixels = 0, 0, 0
    for index, (camera, mask) in enumerate(zip(cameras, masks, strict=True)):
        if index not in maps:
            continue
        depth, confidence, K = maps[index]
        stereo_pixels += int((depth > 0).sum())
        if field is not None:
            height, width = depth.shape
            inside = cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST) > 0
            filled = hull.hull_depth(field, camera, K, inside & (depth <= 0))
            others = [(cameras[i], *maps[i][::2]) for i in maps if i != index]
            filled = hull.drop_seen_through(filled, camera, K, others, options.hull_free_space_rel)
            hull_pixels += int((filled > 0).sum())
            depth = np.where(filled > 0, filled, depth)
            confidence = np.where(filled > 0, 1.0, confidence).astype(np.float32)
        depth = product_depth(  # each photo's own table (a flipped capture's passes differ)
            depth, confidence, K, camera, mask, region.for_photo(camera.name),
            min_confidence=options.min_confidence,
            clearance=options.ground_clearance_rel * diagonal,
        )  # fmt: skip
        if (depth > 0).any():  # open3d aborts on a map that touches no voxel
            integrate(grid, depth, K, camera, options.truncation_voxels)
            views += 1
        if progress:
            progress("fusion", (index + 1) / len(cameras), camera.name)
    if views == 0:
        raise StageError("fusion", "no depth maps to fuse: the depth stage produced none")
    mesh = grid.extract_triangle_mesh(weight_threshold=options.min_weight).to_legacy()
    if len(mesh.triangles) == 0:
        raise StageError(
            "fusion",
            "dense stereo found almost no surface on the product: the photos may be blurred, "
            "or the product plain or shiny; add texture around it or take sharper photos",
        )
    with atomic_path(workspace.fused_mesh_path) as tmp:
        o3d.io.write_triangle_mesh(str(tmp), mesh)
    logger.info(
        "fused %d depth maps into %d faces (%.0f %% of depths from the visual hull)",
        views, len(mesh.triangles), 100 * hull_pixels / max(1, hull_pixels + stereo_pixels),
    )  # fmt: skip
    return FusionResult(views, len(mesh.triangles), time.perf_counter() - start)


def integrate(
    grid: o3d.t.geometry.VoxelBlockGrid,
    depth: np.ndarray,
    K: np.ndarray,
    camera: Camera,
    truncation_voxels: float,
) -> None:
    """Add one depth map (z along the optical axis, 0 = none) to the TSDF."""
    extrinsic = np.eye(4)
    extrinsic[:3, :3], extrinsic[:3, 3] = camera.R, camera.t
    image = o3d.t.geometry.Image(o3d.core.Tensor(np.ascontiguousarray(depth)))
    intrinsic = o3d.core.Tensor(K, o3d.core.float64)
    pose = o3d.core.Tensor(extrinsic, o3d.core.float64)
    far = float(depth.max()) * 1.01 + 1e-9
    blocks = grid.compute_unique_block_coordinates(
        image, intrinsic, pose, 1.0, far, truncation_voxels
    )
    grid.integrate(blocks, image, intrinsic, pose, 1.0, far, truncation_voxels)


def product_depth(
    depth: np.ndarray,
    confidence: np.ndarray,
    K: np.ndarray,
    camera: Camera,
    mask: np.ndarray | None,
    region: ObjectRegion,
    *,
    min_confidence: float,
    clearance: float,
) -> np.ndarray:
    """The depth map with everything but the product zeroed: outside its mask or box, on the
    table, or not trusted."""
    height, width = depth.shape
    keep = (depth > 0) & (confidence >= min_confidence)
    if mask is not None:
        keep &= cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST) > 0
    rows, cols = np.nonzero(keep)
    rays = np.linalg.inv(K) @ np.vstack([cols, rows, np.ones_like(cols)]).astype(np.float64)
    xyz = (camera.R.T @ (rays * depth[rows, cols] - camera.t[:, None])).T
    inside = inside_product_region(xyz, region, clearance)
    out = np.zeros_like(depth)
    out[rows[inside], cols[inside]] = depth[rows[inside], cols[inside]]
    return out


def inside_product_region(xyz: np.ndarray, region: ObjectRegion, clearance: float) -> np.ndarray:
    """(n,) bool: points inside the product box and clear of the table plane."""
    axes = up_aligned_axes(region.up)
    local = xyz @ axes.T
    corners = region.box_corners @ axes.T
    keep = ((local >= corners.min(axis=0)) & (local <= corners.max(axis=0))).all(axis=1)
    if region.ground is not None:
        keep &= xyz @ region.ground[:3] + region.ground[3] > clearance
    return keep
