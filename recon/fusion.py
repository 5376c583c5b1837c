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
    hull_free_space_views: int = 1  # ... by at least this many photos
    # Close the surface from the hull: where no depth map reached (the base on the table, a
    # white mug's wall left without depths), the hull's own surface stands in, in space no
    # photo's stereo looks through (on a table only: see run).
    hull_close: bool = True


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
    grid = tsdf_grid(voxel)
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
    clearance = options.ground_clearance_rel * diagonal
    # Only the product's own stereo depths tell of its hollows: the table's depth, which
    # stereo bleeds onto the foot of a plain product (its windows hold table texture), lies
    # beyond the hull there too, and punched holes all round a white mug's foot.
    evidence = {
        i: (cameras[i], product_depth(
            depth, confidence, K, cameras[i], masks[i], region.for_photo(cameras[i].name),
            min_confidence=options.min_confidence, clearance=clearance,
        ), K)
        for i, (depth, confidence, K) in maps.items()
    } if field is not None else {}  # fmt: skip
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
            others = [evidence[i] for i in maps if i != index]
            filled = hull.drop_seen_through(
                filled, camera, K, others, options.hull_free_space_rel,
                options.hull_free_space_views,
            )  # fmt: skip
            hull_pixels += int((filled > 0).sum())
            depth = np.where(filled > 0, filled, depth)
            confidence = np.where(filled > 0, 1.0, confidence).astype(np.float32)
        depth = product_depth(  # each photo's own table (a flipped capture's passes differ)
            depth, confidence, K, camera, mask, region.for_photo(camera.name),
            min_confidence=options.min_confidence, clearance=clearance,
        )  # fmt: skip
        if (depth > 0).any():  # open3d aborts on a map that touches no voxel
            integrate(grid, depth, K, camera, options.truncation_voxels)
            views += 1
        if progress:
            progress("fusion", (index + 1) / len(cameras), camera.name)
    if views == 0:
        raise StageError("fusion", "no depth maps to fuse: the depth stage produced none")
    # Only on a table: with none (plain paper), no photo bounds the hull's underside, and
    # closing it put a bulge under a cereal box (F@1 % 0.99 -> 0.96 at 960 px).
    if field is not None and options.hull_close and region.ground is not None:
        closed = close_with_hull(
            grid, field, list(evidence.values()), voxel=voxel,
            truncation_voxels=options.truncation_voxels, min_weight=options.min_weight,
            margin_rel=options.hull_free_space_rel, ground=region.ground, clearance=clearance,
        )  # fmt: skip
        logger.info("the hull closed %d voxels no depth map reached", closed)
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


def close_with_hull(
    grid: o3d.t.geometry.VoxelBlockGrid,
    field: hull.HullField,
    others: list[tuple[Camera, np.ndarray, np.ndarray]],
    *,
    voxel: float,
    truncation_voxels: float,
    min_weight: float,
    margin_rel: float,
    ground: np.ndarray | None = None,
    clearance: float = 0.0,
) -> int:
    """Give the TSDF voxels near the hull's surface that too few depth maps reached the hull's
    signed distance, unless a photo's stereo (`others`: camera, product depth map, K) looks
    through them; returns how many voxels were set. The TSDF is then defined all round the
    product, and its surface closed."""
    truncation = truncation_voxels * voxel
    cells = np.argwhere(np.abs(field.values) < truncation + field.voxel)
    if len(cells) == 0:
        return 0
    block = 8 * voxel  # the grid's block_resolution × voxel
    corners = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    keys = np.unique(
        np.floor(
            (((cells[:, None, :] + corners) * field.voxel + field.origin) @ field.axes).reshape(
                -1, 3
            )
            / block
        ).astype(np.int32),
        axis=0,
    )
    # And their neighbours: the surface needs voxels on both sides of it, also past the hull
    # grid's edge (the base, where the grid stands on the table).
    steps = np.array([[x, y, z] for x in (-1, 0, 1) for y in (-1, 0, 1) for z in (-1, 0, 1)])
    keys = np.unique((keys[:, None, :] + steps).reshape(-1, 3).astype(np.int32), axis=0)
    hashmap = grid.hashmap()
    hashmap.activate(o3d.core.Tensor(keys))
    buffers, found = hashmap.find(o3d.core.Tensor(keys))
    buffers = buffers[found].to(o3d.core.int32)
    coordinates, flat = grid.voxel_coordinates_and_flattened_indices(buffers)
    tsdf = grid.attribute("tsdf").reshape((-1,))
    weight = grid.attribute("weight").reshape((-1,))
    xyz = coordinates.numpy().astype(np.float64)
    flat_np = flat.numpy()
    old_weight = weight[flat].numpy()
    index = np.flatnonzero(old_weight < min_weight)
    distance = hull.sample(field, xyz[index])
    if ground is not None:
        # The product ends where the depths were cut, `clearance` above the table: a hull
        # closed below it put a skirt under table captures (2 % too tall, 5 mm below y = 0).
        height = xyz[index] @ ground[:3] + ground[3]
        distance = np.minimum(distance, height - clearance)
    near = np.abs(distance) < truncation  # the hull's surface, not the air in a mug's hollow
    index, distance = index[near], distance[near]
    if len(index) == 0:
        return 0
    # open3d's TSDF is positive in front of the surface, in truncation units; the hull's
    # distance is positive inside. Space a photo's stereo looks through is empty, whatever
    # the hull says (else the hull's surface and the seen one meet in a seam of holes).
    hull_tsdf = np.clip(-distance / truncation, -1.0, 1.0)
    hull_tsdf[hull.seen_through_votes(xyz[index], others, margin_rel) > 0] = 1.0
    # What depth maps said of a voxel keeps its share.
    old_tsdf = tsdf[flat[o3d.core.Tensor(index)]].numpy()
    share = old_weight[index] / min_weight
    value = share * old_tsdf + (1 - share) * hull_tsdf
    targets = o3d.core.Tensor(flat_np[index])
    tsdf[targets] = o3d.core.Tensor(value.astype(np.float32))
    # open3d extracts voxels whose weight exceeds the threshold.
    weight[targets] = o3d.core.Tensor(np.full(len(index), min_weight + 0.5, np.float32))
    return len(index)


def tsdf_grid(voxel: float, block_count: int = 100_000) -> o3d.t.geometry.VoxelBlockGrid:
    """An empty TSDF volume (signed distance and weight per voxel) of `voxel` spacing."""
    return o3d.t.geometry.VoxelBlockGrid(
        attr_names=("tsdf", "weight"),
        attr_dtypes=(o3d.core.float32, o3d.core.float32),
        attr_channels=((1), (1)),
        voxel_size=voxel,
        block_resolution=8,
        block_count=block_count,
    )


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
