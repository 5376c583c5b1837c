"""Dense depth maps on the CPU: PatchMatch multi-view stereo, coarse to fine, then a cross-view check.

Each photo (the *reference*) gets a depth, a normal and a confidence per pixel from a few
neighbour photos chosen by the sparse points they share. The per-pixel search is PatchMatch
stereo in the style of ACMH (Xu & Tao 2019): every pixel holds a slanted plane (depth + normal),
scored by bilateral-weighted NCC of a sparse window warped into each neighbour by the plane's
homography; half the pixels at a time (a checkerboard) try the planes of well-scoring pixels in
eight directions and random perturbations of their own. It runs first at half the working size
from random planes, then at the working size from the upsampled result. Depths are then kept
only where at least a few neighbour depth maps agree (as COLMAP's fusion checks), and averaged
with those that agree.

All inner loops are numba kernels run over the pixels in parallel; pixels outside the (dilated)
product mask and pixels with no texture (a plain studio background) are never searched and stay
invalid (depth 0).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import cv2
import numba
import numpy as np

from recon.cameras import Camera
from recon.errors import StageError
from recon.progress import ProgressCallback
from recon.workspace import Workspace, atomic_path

logger = logging.getLogger(__name__)

STAGE = "depth"


@dataclass(frozen=True, kw_only=True)
class DepthOptions:
    """How depth maps are searched and checked."""

    max_image_px: int = 480  # long side at which depth is computed (photos are downsized to it)
    num_neighbors: int = 4  # neighbour photos matched against each reference photo
    top_k_views: int = 2  # a plane's cost is the mean of its best this-many neighbour costs
    window_radius_px: int = 5  # half-size of the matching window (at the computing size)
    window_step_px: int = 2  # sample every this-many pixels of the window (ACMH's sparse window)
    sigma_color: float = 0.08  # bilateral weight: grey-level difference (0-1 scale) halving it
    sigma_space_px: float = 4.0  # bilateral weight: distance from the centre pixel
    coarse_iterations: int = 4  # PatchMatch iterations at half the computing size
    fine_iterations: int = 2  # PatchMatch iterations at the computing size
    perturb_depth: float = 0.1  # first random refinement step, × the depth range (then halves)
    perturb_normal: float = 0.5  # first random refinement step of normals (then halves)
    min_texture_std: float = 0.01  # reference windows flatter than this (grey 0-1) are not searched
    max_cost: float = 0.5  # 1 - NCC above which a depth is dropped
    min_triangulation_deg: float = 4.0  # neighbour choice: shared points seen at smaller angles
    max_triangulation_deg: float = 50.0  # count little, and at larger ones not at all
    depth_margin: float = 0.15  # the sparse points' depth range grows by this × itself each way
    mask_dilate_rel: float = 0.01  # masks grow by this × the long side before searching in them
    min_consistent_views: int = 2  # a depth survives if this many neighbour maps agree with it
    max_reprojection_px: float = 1.0  # agreement: the round trip lands this close (computing px)
    max_relative_depth_error: float = 0.01  # agreement: depths differ by less than this fraction
    average_consistent: bool = True  # replace each kept depth by the mean of the agreeing ones
    seed: int = 0  # drives the random planes (results do not depend on thread count)


@dataclass(frozen=True)
class DepthResult:
    views: int  # depth maps written
    valid_fraction: float  # mean over views of valid pixels within the mask (or the image)
    seconds: float


@dataclass(frozen=True)
class DepthMap:
    """One view's depth search result at the computing size."""

    depth: np.ndarray  # (h, w) float32 depth along the optical axis, 0 = invalid
    normal: np.ndarray  # (h, w, 3) float32 unit normal in the world frame (0 where invalid)
    confidence: np.ndarray  # (h, w) float32 in [0, 1]
    camera: Camera  # the camera at the depth map's size


def run(
    workspace: Workspace,
    options: DepthOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> DepthResult:
    """Compute, cross-check and write a depth map (``workspace.depth_path``) for every photo."""
    options = options or DepthOptions()
    start = time.perf_counter()
    cameras = workspace.read_sfm_cameras()
    if len(cameras) < 2:
        raise StageError(STAGE, f"only {len(cameras)} camera(s): dense stereo needs at least two")
    points = _read_points(workspace)
    images = [_load_gray(workspace, camera, options.max_image_px) for camera in cameras]
    small = [_resized_camera(cam, img.shape[1], img.shape[0]) for cam, img in zip(cameras, images)]
    masks = [
        _load_mask(workspace, camera, img.shape, options) for camera, img in zip(cameras, images)
    ]
    neighbors = select_neighbors(
        cameras,
        points,
        options.num_neighbors,
        options.min_triangulation_deg,
        options.max_triangulation_deg,
    )
    raw: list[DepthMap] = []
    for index, camera in enumerate(small):
        depth_range = view_depth_range(camera, points, index, masks[index], options.depth_margin)
        others = neighbors[index]
        result = compute_depth_map(
            images[index],
            camera,
            [images[j] for j in others],
            [small[j] for j in others],
            depth_range,
            masks[index],
            options,
        )
        raw.append(result)
        if progress:
            progress(STAGE, 0.9 * (index + 1) / len(cameras), camera.name)
    filtered = filter_consistent(raw, neighbors, options)
    workspace.depth_dir.mkdir(parents=True, exist_ok=True)
    fractions = []
    for index, (camera, depth_map) in enumerate(zip(cameras, filtered)):
        write_depth_map(workspace.depth_path(camera.name), depth_map)
        region = masks[index] if masks[index] is not None else np.ones_like(depth_map.depth, bool)
        fractions.append(float((depth_map.depth[region] > 0).mean()) if region.any() else 0.0)
    if progress:
        progress(STAGE, 1.0, f"{len(cameras)} depth maps")
    seconds = time.perf_counter() - start
    logger.info(
        "depth: %d maps at %d px, %.0f %% valid, %.1f s",
        len(cameras),
        options.max_image_px,
        100 * np.mean(fractions),
        seconds,
    )
    return DepthResult(
        views=len(cameras), valid_fraction=float(np.mean(fractions)), seconds=seconds
    )


# -- inputs ---------------------------------------------------------------------------------------
def _read_points(workspace: Workspace) -> dict[str, np.ndarray]:
    if not workspace.sfm_points_path.exists():
        raise StageError(
            STAGE, f"{workspace.sfm_points_path} is missing: run the sfm stage before depth"
        )
    return workspace.read_sfm_points()


def _load_gray(workspace: Workspace, camera: Camera, max_image_px: int) -> np.ndarray:
    path = workspace.sfm_image_path(camera.name)
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise StageError(STAGE, f"cannot read {path}: re-run the sfm stage to undistort photos")
    return downsized_gray(image, max_image_px)


def downsized_gray(image: np.ndarray, max_image_px: int) -> np.ndarray:
    """(h, w) uint8 or (h, w, 3) BGR -> (h', w') float32 grey in [0, 1], long side ≤ max."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    height, width = image.shape
    factor = min(1.0, max_image_px / max(height, width))
    if factor < 1.0:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image.astype(np.float32) / 255.0


def _load_mask(
    workspace: Workspace, camera: Camera, shape: tuple[int, ...], options: DepthOptions
) -> np.ndarray | None:
    path = workspace.mask_path(camera.name)
    if not path.exists():
        return None
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise StageError(STAGE, f"cannot read mask {path}: re-run the masks stage")
    mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 127
    radius = round(options.mask_dilate_rel * max(shape))
    if radius > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
        mask = cv2.dilate(mask.astype(np.uint8), kernel) > 0
    return mask


def _resized_camera(camera: Camera, width: int, height: int) -> Camera:
    """The camera of the photo resized to width × height (pixel centres at integers)."""
    sx, sy = width / camera.width, height / camera.height
    K = np.asarray(camera.K, dtype=np.float64).copy()
    K[0, 0] *= sx
    K[0, 1] *= sx
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 1] *= sy
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return Camera(name=camera.name, width=width, height=height, K=K, R=camera.R, t=camera.t)


def select_neighbors(
    cameras: list[Camera],
    points: dict[str, np.ndarray],
    count: int,
    min_angle_deg: float,
    max_angle_deg: float,
) -> list[list[int]]:
    """For each camera, the indices of its `count` best stereo partners.

    A partner scores for every sparse point both see, by the angle between their rays to it:
    little below `min_angle_deg` (too short a baseline to measure depth), fully up to
    `max_angle_deg`, and nothing beyond (the views look too different to match), as in
    COLMAP's and ACMM's view selection. Cameras that share no points fall back to the angle
    between their viewing directions.
    """
    n = len(cameras)
    centers = np.array([camera.center for camera in cameras])
    scores = np.zeros((n, n))
    xyz = points.get("xyz")
    pairs = points.get("visible_in")
    if xyz is not None and pairs is not None and len(pairs):
        pairs = np.asarray(pairs, dtype=np.int64)
        pairs = pairs[(pairs[:, 1] >= 0) & (pairs[:, 1] < n)]
        by_point = np.argsort(pairs[:, 0], kind="stable")
        pairs = pairs[by_point]
        starts = np.flatnonzero(np.r_[True, pairs[1:, 0] != pairs[:-1, 0]])
        ends = np.r_[starts[1:], len(pairs)]
        for begin, end in zip(starts, ends):
            views = pairs[begin:end, 1]
            if len(views) < 2:
                continue
            rays = xyz[pairs[begin, 0]] - centers[views]
            rays /= np.linalg.norm(rays, axis=1, keepdims=True)
            angles = np.degrees(np.arccos(np.clip(rays @ rays.T, -1.0, 1.0)))
            weight = np.clip(angles / max(min_angle_deg, 1e-6), 0.0, 1.0) ** 2
            weight[angles > max_angle_deg] = 0.0
            scores[np.ix_(views, views)] += weight
    np.fill_diagonal(scores, 0.0)
    axes = np.array([camera.R[2] for camera in cameras])
    axis_angles = np.degrees(np.arccos(np.clip(axes @ axes.T, -1.0, 1.0)))
    # Tie-breaker and fallback: prefer partners looking the same way, never beyond the max angle.
    fallback = np.where(axis_angles <= max_angle_deg, 1e-3 / (1.0 + axis_angles), 0.0)
    np.fill_diagonal(fallback, -np.inf)
    ranked = scores + fallback
    count = max(1, min(count, n - 1))
    return [[int(j) for j in np.argsort(-ranked[i], kind="stable")[:count]] for i in range(n)]


def view_depth_range(
    camera: Camera,
    points: dict[str, np.ndarray],
    index: int,
    mask: np.ndarray | None,
    margin: float,
) -> tuple[float, float]:
    """(near, far) depths to search in one view, from the sparse points it sees.

    Uses the points recorded as visible in the view (all points in front of it when it has too
    few), inside its mask when one is given; the 2-98 % depth range grows by `margin` × itself.
    """
    xyz = np.asarray(points["xyz"], dtype=np.float64)
    pairs = points.get("visible_in")
    chosen = xyz
    if pairs is not None and len(pairs):
        pairs = np.asarray(pairs, dtype=np.int64)
        seen = xyz[pairs[pairs[:, 1] == index, 0]]
        if len(seen) >= 20:
            chosen = seen
    uv, depth = camera.project(chosen)
    inside = (
        (depth > 0)
        & (uv[:, 0] > -0.5)
        & (uv[:, 1] > -0.5)
        & (uv[:, 0] < camera.width - 0.5)
        & (uv[:, 1] < camera.height - 0.5)
    )
    if mask is not None and inside.any():
        cols = np.clip(np.round(uv[:, 0]), 0, camera.width - 1).astype(int)
        rows = np.clip(np.round(uv[:, 1]), 0, camera.height - 1).astype(int)
        in_mask = inside & mask[rows, cols]
        if in_mask.sum() >= 5:
            inside = in_mask
    if inside.sum() < 3:
        raise StageError(
            STAGE,
            f"{camera.name}: too few sparse points in view to bound its depth; "
            "check that the sfm stage registered this photo with the others",
        )
    near, far = np.percentile(depth[inside], [2.0, 98.0])
    spread = max(far - near, 0.05 * far)
    return float(max(near - margin * spread, 1e-3 * far)), float(far + margin * spread)


# -- the search -------------------------------------------------------------------------------------
def compute_depth_map(
    reference: np.ndarray,
    camera: Camera,
    neighbor_images: list[np.ndarray],
    neighbor_cameras: list[Camera],
    depth_range: tuple[float, float],
    mask: np.ndarray | None = None,
    options: DepthOptions | None = None,
) -> DepthMap:
    """Depth, normal and confidence of one reference view from its neighbours.

    `reference` (h, w) and `neighbor_images` (h_i, w_i) are float32 grey images in [0, 1] whose
    sizes match `camera` and `neighbor_cameras`; `depth_range` is (near, far) along the optical
    axis; `mask` (h, w) bool limits the search (None: everywhere). Returns maps at (h, w):
    depth float32 (0 = invalid), world-frame normal (h, w, 3) float32, confidence in [0, 1]
    (the mean NCC of the best-matching neighbours, clipped at 0).
    """
    options = options or DepthOptions()
    if reference.shape != (camera.height, camera.width):
        raise ValueError(f"reference image {reference.shape} does not match camera size")
    if not neighbor_images:
        raise ValueError("compute_depth_map needs at least one neighbour view")
    near, far = depth_range
    top_k = max(1, min(options.top_k_views, len(neighbor_images)))
    offsets = _window_offsets(options.window_radius_px, options.window_step_px)
    prop = _propagation_offsets()
    height, width = reference.shape

    # Coarse level: half size, random planes.
    coarse_h, coarse_w = max(8, height // 2), max(8, width // 2)
    levels = [
        (coarse_h, coarse_w, options.coarse_iterations),
        (height, width, options.fine_iterations),
    ]
    if options.coarse_iterations <= 0:
        levels = [(height, width, options.fine_iterations)]
    depth = normal = cost = None
    previous = camera
    iteration = 0
    for level_h, level_w, iterations in levels:
        if (level_h, level_w) == (height, width):
            ref = reference
            cam = camera
            srcs = neighbor_images
            src_cams = neighbor_cameras
            level_mask = mask
        else:
            ref = cv2.resize(reference, (level_w, level_h), interpolation=cv2.INTER_AREA)
            cam = _resized_camera(camera, level_w, level_h)
            srcs, src_cams = [], []
            for image, src_cam in zip(neighbor_images, neighbor_cameras):
                sh = max(8, round(image.shape[0] * level_h / height))
                sw = max(8, round(image.shape[1] * level_w / width))
                srcs.append(cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA))
                src_cams.append(_resized_camera(src_cam, sw, sh))
            level_mask = (
                None
                if mask is None
                else cv2.resize(
                    mask.astype(np.uint8), (level_w, level_h), interpolation=cv2.INTER_NEAREST
                )
                > 0
            )
        active = _active_pixels(ref, level_mask, offsets, options)
        stack, sizes, M, kt = _pack_sources(srcs, src_cams, cam)
        kinv = np.linalg.inv(cam.K)
        if depth is None:
            depth = np.zeros((level_h, level_w), np.float32)
            normal = np.zeros((level_h, level_w, 3), np.float32)
            _random_init(active, depth, normal, kinv, near, far, options.seed)
        else:
            depth, normal = _upsample_planes(
                depth,
                normal,
                cost,
                np.linalg.inv(previous.K),
                active,
                kinv,
                level_h,
                level_w,
                near,
                far,
                options.seed + 7,
            )
        previous = cam
        cost = np.full((level_h, level_w), 3.0, np.float32)
        _initial_costs(
            active,
            depth,
            normal,
            cost,
            ref,
            kinv,
            stack,
            sizes,
            M,
            kt,
            offsets,
            top_k,
            options.sigma_color,
            options.sigma_space_px,
        )
        parity = (active[:, 0] + active[:, 1]) % 2
        colored = [np.ascontiguousarray(active[parity == p]) for p in (0, 1)]
        for _ in range(iterations):
            scale = 0.5**iteration
            for color in (0, 1):
                _patchmatch_pass(
                    colored[color],
                    depth,
                    normal,
                    cost,
                    ref,
                    kinv,
                    stack,
                    sizes,
                    M,
                    kt,
                    offsets,
                    prop,
                    top_k,
                    options.sigma_color,
                    options.sigma_space_px,
                    near,
                    far,
                    options.perturb_depth * scale * (far - near),
                    options.perturb_normal * scale,
                    options.seed,
                    iteration * 2 + color,
                )
            iteration += 1
    valid = (depth > 0) & (cost < options.max_cost)
    depth = np.where(valid, depth, 0.0).astype(np.float32)
    normal_world = (normal.reshape(-1, 3) @ camera.R).reshape(normal.shape)  # R^T n per pixel
    normal_world = np.where(valid[..., None], normal_world, 0.0).astype(np.float32)
    confidence = np.where(valid, np.clip(1.0 - cost, 0.0, 1.0), 0.0).astype(np.float32)
    return DepthMap(depth=depth, normal=normal_world, confidence=confidence, camera=camera)


def _window_offsets(radius: int, step: int) -> np.ndarray:
    """(s, 2) int32 (dx, dy) window samples: a grid of `step` spacing within ±radius."""
    ticks = np.arange(-radius, radius + 1, max(1, step))
    dx, dy = np.meshgrid(ticks, ticks)
    return np.stack([dx.ravel(), dy.ravel()], axis=1).astype(np.int32)


def _propagation_offsets() -> np.ndarray:
    """(8, 11, 2) int32 (dx, dy) candidate positions of ACMH's adaptive checkerboard sampling.

    Four V-shaped near regions (7 positions, padded by repeating) and four far strips (11
    positions), all at odd (dx + dy) so they are of the other checkerboard colour.
    """
    near = [(0, -1), (-1, -2), (1, -2), (-2, -3), (2, -3), (-3, -4), (3, -4)]
    near = near + [near[-1]] * (11 - len(near))
    far = [(0, -d) for d in range(5, 27, 2)]
    regions = []
    for base in (near, far):
        for quarter in range(4):
            rotated = []
            for dx, dy in base:
                for _ in range(quarter):
                    dx, dy = -dy, dx
                rotated.append((dx, dy))
            regions.append(rotated)
    return np.asarray(regions, dtype=np.int32)


def _active_pixels(
    ref: np.ndarray, mask: np.ndarray | None, offsets: np.ndarray, options: DepthOptions
) -> np.ndarray:
    """(p, 2) int32 (row, col) pixels to search: inside the mask, the window inside the image,
    and textured enough (grey standard deviation over the window ≥ min_texture_std)."""
    height, width = ref.shape
    radius = int(np.abs(offsets).max())
    size = 2 * radius + 1
    mean = cv2.boxFilter(ref, -1, (size, size), borderType=cv2.BORDER_REFLECT)
    mean_sq = cv2.boxFilter(ref * ref, -1, (size, size), borderType=cv2.BORDER_REFLECT)
    std = np.sqrt(np.maximum(mean_sq - mean * mean, 0.0))
    keep = std >= options.min_texture_std
    keep[:radius] = keep[-radius:] = False
    keep[:, :radius] = keep[:, -radius:] = False
    if mask is not None:
        keep &= mask
    rows, cols = np.nonzero(keep)
    return np.stack([rows, cols], axis=1).astype(np.int32)


def _pack_sources(
    images: list[np.ndarray], cameras: list[Camera], reference: Camera
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Neighbour images stacked (n, h, w) float32 (zero-padded), their (n, 2) int32 (w, h), and
    the homography parts M = K_s R_rel K_r⁻¹ (n, 3, 3) and K_s t_rel (n, 3), float64."""
    count = len(images)
    height = max(image.shape[0] for image in images)
    width = max(image.shape[1] for image in images)
    stack = np.zeros((count, height, width), np.float32)
    sizes = np.zeros((count, 2), np.int32)
    M = np.zeros((count, 3, 3))
    kt = np.zeros((count, 3))
    kinv = np.linalg.inv(reference.K)
    for i, (image, camera) in enumerate(zip(images, cameras)):
        stack[i, : image.shape[0], : image.shape[1]] = image
        sizes[i] = (image.shape[1], image.shape[0])
        R_rel = camera.R @ reference.R.T
        t_rel = camera.t - R_rel @ reference.t
        M[i] = camera.K @ R_rel @ kinv
        kt[i] = camera.K @ t_rel
    return stack, sizes, M, kt


# -- numba kernels ---------------------------------------------------------------------------------
_INVALID_COST = 2.0


@numba.njit(cache=True, inline="always")
def _hash_uniform(seed: np.uint64) -> float:
    """A uniform number in [0, 1) from a 64-bit seed (splitmix64): thread-order independent."""
    z = seed + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return float(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True, inline="always")
def _pixel_seed(seed: int, row: int, col: int, step: int, draw: int) -> np.uint64:
    value = np.uint64(seed) * np.uint64(0x100000001B3)
    value = (value ^ np.uint64(row)) * np.uint64(0x100000001B3)
    value = (value ^ np.uint64(col)) * np.uint64(0x100000001B3)
    value = (value ^ np.uint64(step)) * np.uint64(0x100000001B3)
    return (value ^ np.uint64(draw)) * np.uint64(0x100000001B3)


@numba.njit(cache=True)
def _random_normal(seed: np.uint64, rx: float, ry: float, rz: float) -> tuple:
    """A random unit normal facing the camera (against the viewing ray r)."""
    z = 2.0 * _hash_uniform(seed) - 1.0
    phi = 2.0 * math.pi * _hash_uniform(seed + np.uint64(1))
    s = math.sqrt(max(0.0, 1.0 - z * z))
    nx, ny, nz = s * math.cos(phi), s * math.sin(phi), z
    if nx * rx + ny * ry + nz * rz > 0.0:
        nx, ny, nz = -nx, -ny, -nz
    return nx, ny, nz


@numba.njit(cache=True, parallel=True)
def _random_init(active, depth, normal, kinv, near, far, seed):
    for i in numba.prange(active.shape[0]):
        row, col = active[i, 0], active[i, 1]
        rx = kinv[0, 0] * col + kinv[0, 1] * row + kinv[0, 2]
        ry = kinv[1, 1] * row + kinv[1, 2]
        base = _pixel_seed(seed, row, col, 0, 0)
        depth[row, col] = near + (far - near) * _hash_uniform(base)
        nx, ny, nz = _random_normal(base + np.uint64(2), rx, ry, 1.0)
        normal[row, col, 0] = nx
        normal[row, col, 1] = ny
        normal[row, col, 2] = nz


@numba.njit(cache=True, parallel=True)
def _upsample_planes(
    depth, normal, cost, coarse_kinv, active, kinv, height, width, near, far, seed
):
    """Planes for the active pixels of a finer level: each takes the plane of the best-scoring
    coarse pixel among the four nearest it, intersected with its own ray (a random plane where
    none of them has one)."""
    fine_depth = np.zeros((height, width), np.float32)
    fine_normal = np.zeros((height, width, 3), np.float32)
    coarse_h, coarse_w = depth.shape
    scale_r = coarse_h / height
    scale_c = coarse_w / width
    for i in numba.prange(active.shape[0]):
        row, col = active[i, 0], active[i, 1]
        rx = kinv[0, 0] * col + kinv[0, 1] * row + kinv[0, 2]
        ry = kinv[1, 1] * row + kinv[1, 2]
        # position in the coarse image (pixel centres at integers at both levels)
        cr = (row + 0.5) * scale_r - 0.5
        cc = (col + 0.5) * scale_c - 0.5
        r0 = int(math.floor(cr))
        c0 = int(math.floor(cc))
        best = 1e30
        best_d = 0.0
        best_n = (0.0, 0.0, 0.0)
        for rr in range(r0, r0 + 2):
            for ccol in range(c0, c0 + 2):
                if rr < 0 or ccol < 0 or rr >= coarse_h or ccol >= coarse_w:
                    continue
                d = depth[rr, ccol]
                if d <= 0 or cost[rr, ccol] >= best:
                    continue
                nx = normal[rr, ccol, 0]
                ny = normal[rr, ccol, 1]
                nz = normal[rr, ccol, 2]
                qx = coarse_kinv[0, 0] * ccol + coarse_kinv[0, 1] * rr + coarse_kinv[0, 2]
                qy = coarse_kinv[1, 1] * rr + coarse_kinv[1, 2]
                denom = nx * rx + ny * ry + nz
                if denom > -1e-6:
                    continue
                fine = d * (nx * qx + ny * qy + nz) / denom
                if fine < near or fine > far:
                    continue
                best = cost[rr, ccol]
                best_d = fine
                best_n = (nx, ny, nz)
        if best_d > 0:
            fine_depth[row, col] = best_d
            fine_normal[row, col, 0] = best_n[0]
            fine_normal[row, col, 1] = best_n[1]
            fine_normal[row, col, 2] = best_n[2]
        else:
            base = _pixel_seed(seed, row, col, 0, 0)
            fine_depth[row, col] = near + (far - near) * _hash_uniform(base)
            nx, ny, nz = _random_normal(base + np.uint64(2), rx, ry, 1.0)
            fine_normal[row, col, 0] = nx
            fine_normal[row, col, 1] = ny
            fine_normal[row, col, 2] = nz
    return fine_depth, fine_normal


@numba.njit(cache=True, fastmath=True)
def _reference_window(ref, row, col, offsets, sigma_color, sigma_space, weights, centered):
    """Bilateral weights (normalised) and weighted, mean-free reference values of one window.

    Returns the weighted variance of the reference window."""
    center = ref[row, col]
    total = 0.0
    inv_c = 1.0 / (2.0 * sigma_color * sigma_color)
    inv_s = 1.0 / (2.0 * sigma_space * sigma_space)
    for s in range(offsets.shape[0]):
        dx, dy = offsets[s, 0], offsets[s, 1]
        value = ref[row + dy, col + dx]
        diff = value - center
        w = math.exp(-diff * diff * inv_c - (dx * dx + dy * dy) * inv_s)
        weights[s] = w
        total += w
    mean = 0.0
    for s in range(offsets.shape[0]):
        weights[s] /= total
        mean += weights[s] * ref[row + offsets[s, 1], col + offsets[s, 0]]
    var = 0.0
    for s in range(offsets.shape[0]):
        value = ref[row + offsets[s, 1], col + offsets[s, 0]] - mean
        centered[s] = weights[s] * value
        var += weights[s] * value * value
    return var


@numba.njit(cache=True, fastmath=True)
def _plane_cost(
    row,
    col,
    d,
    nx,
    ny,
    nz,
    kinv,
    stack,
    sizes,
    M,
    kt,
    offsets,
    weights,
    centered,
    ref_var,
    top_k,
    view_costs,
):
    """Mean of the `top_k` best (1 - bilateral NCC) over the neighbours for the plane through
    depth d at (row, col) with camera-frame normal n."""
    rx = kinv[0, 0] * col + kinv[0, 1] * row + kinv[0, 2]
    ry = kinv[1, 1] * row + kinv[1, 2]
    c = d * (nx * rx + ny * ry + nz)  # n · X, negative for a plane facing the camera
    if c > -1e-9:
        return _INVALID_COST * 1.5
    # a = K⁻ᵀ n / c, so that aᵀ q̃ = n·(K⁻¹ q̃) / c
    ax = (kinv[0, 0] * nx) / c
    ay = (kinv[0, 1] * nx + kinv[1, 1] * ny) / c
    az = (kinv[0, 2] * nx + kinv[1, 2] * ny + nz) / c
    n_views = stack.shape[0]
    radius = 0.0
    for s in range(offsets.shape[0]):
        radius = max(radius, abs(offsets[s, 0]), abs(offsets[s, 1]))
    for v in range(n_views):
        # H = M + kt aᵀ: on the plane nᵀX / c = 1, so X_s = R X + t = (R + t nᵀ / c) X
        h00 = M[v, 0, 0] + kt[v, 0] * ax
        h01 = M[v, 0, 1] + kt[v, 0] * ay
        h02 = M[v, 0, 2] + kt[v, 0] * az
        h10 = M[v, 1, 0] + kt[v, 1] * ax
        h11 = M[v, 1, 1] + kt[v, 1] * ay
        h12 = M[v, 1, 2] + kt[v, 1] * az
        h20 = M[v, 2, 0] + kt[v, 2] * ax
        h21 = M[v, 2, 1] + kt[v, 2] * ay
        h22 = M[v, 2, 2] + kt[v, 2] * az
        bx = h00 * col + h01 * row + h02
        by = h10 * col + h11 * row + h12
        bz = h20 * col + h21 * row + h22
        if bz <= 1e-9:
            view_costs[v] = _INVALID_COST
            continue
        # Over a window of a few pixels the homography is affine to within a few hundredths
        # of a pixel: map the window by its Jacobian at the centre, no division per sample.
        inv_z = 1.0 / bz
        uc = bx * inv_z
        wc = by * inv_z
        du_dx = (h00 - uc * h20) * inv_z
        du_dy = (h01 - uc * h21) * inv_z
        dw_dx = (h10 - wc * h20) * inv_z
        dw_dy = (h11 - wc * h21) * inv_z
        reach_u = radius * (abs(du_dx) + abs(du_dy))
        reach_w = radius * (abs(dw_dx) + abs(dw_dy))
        if (
            uc - reach_u < 0.0
            or wc - reach_w < 0.0
            or uc + reach_u >= sizes[v, 0] - 1
            or wc + reach_w >= sizes[v, 1] - 1
        ):
            view_costs[v] = _INVALID_COST
            continue
        image = stack[v].ravel()
        row_stride = np.uint64(stack.shape[2])
        s_sum = 0.0
        s_sq = 0.0
        s_cov = 0.0
        for s in range(offsets.shape[0]):
            dx = offsets[s, 0]
            dy = offsets[s, 1]
            u = uc + du_dx * dx + du_dy * dy
            w = wc + dw_dx * dx + dw_dy * dy
            # Unsigned indices spare numba's negative-index wraparound in the hottest loop.
            u0 = np.uint64(u)
            w0 = np.uint64(w)
            fu = u - float(u0)
            fw = w - float(w0)
            k = w0 * row_stride + u0
            p00 = image[k]
            p01 = image[k + np.uint64(1)]
            p10 = image[k + row_stride]
            p11 = image[k + row_stride + np.uint64(1)]
            top = p00 + fu * (p01 - p00)
            bottom = p10 + fu * (p11 - p10)
            value = top + fw * (bottom - top)
            s_sum += weights[s] * value
            s_sq += weights[s] * value * value
            s_cov += centered[s] * value
        var = s_sq - s_sum * s_sum
        if var < 1e-8:
            view_costs[v] = _INVALID_COST
            continue
        ncc = s_cov / math.sqrt(var * ref_var)
        view_costs[v] = 1.0 - ncc
    # mean of the top_k smallest (n_views is small: partial selection sort)
    total = 0.0
    for k in range(top_k):
        best = k
        for v in range(k + 1, n_views):
            if view_costs[v] < view_costs[best]:
                best = v
        tmp = view_costs[k]
        view_costs[k] = view_costs[best]
        view_costs[best] = tmp
        total += view_costs[k]
    return total / top_k


@numba.njit(cache=True, parallel=True)
def _initial_costs(
    active,
    depth,
    normal,
    cost,
    ref,
    kinv,
    stack,
    sizes,
    M,
    kt,
    offsets,
    top_k,
    sigma_color,
    sigma_space,
):
    n_samples = offsets.shape[0]
    for i in numba.prange(active.shape[0]):
        row, col = active[i, 0], active[i, 1]
        weights = np.empty(n_samples)
        centered = np.empty(n_samples)
        view_costs = np.empty(stack.shape[0])
        ref_var = _reference_window(
            ref, row, col, offsets, sigma_color, sigma_space, weights, centered
        )
        if ref_var < 1e-8:
            cost[row, col] = 3.0
            continue
        cost[row, col] = _plane_cost(
            row,
            col,
            depth[row, col],
            normal[row, col, 0],
            normal[row, col, 1],
            normal[row, col, 2],
            kinv,
            stack,
            sizes,
            M,
            kt,
            offsets,
            weights,
            centered,
            ref_var,
            top_k,
            view_costs,
        )


@numba.njit(cache=True, parallel=True)
def _patchmatch_pass(
    pixels,
    depth,
    normal,
    cost,
    ref,
    kinv,
    stack,
    sizes,
    M,
    kt,
    offsets,
    prop,
    top_k,
    sigma_color,
    sigma_space,
    near,
    far,
    perturb_depth,
    perturb_normal,
    seed,
    step,
):
    """One checkerboard half-pass: propagate planes from 8 regions, then refine randomly."""
    height, width = depth.shape
    n_samples = offsets.shape[0]
    for i in numba.prange(pixels.shape[0]):
        row, col = pixels[i, 0], pixels[i, 1]
        weights = np.empty(n_samples)
        centered = np.empty(n_samples)
        view_costs = np.empty(stack.shape[0])
        ref_var = _reference_window(
            ref, row, col, offsets, sigma_color, sigma_space, weights, centered
        )
        if ref_var < 1e-8:
            continue
        rx = kinv[0, 0] * col + kinv[0, 1] * row + kinv[0, 2]
        ry = kinv[1, 1] * row + kinv[1, 2]
        best_d = depth[row, col]
        best_nx = normal[row, col, 0]
        best_ny = normal[row, col, 1]
        best_nz = normal[row, col, 2]
        best_c = cost[row, col]
        # Propagation: the best-scoring pixel of each region lends its plane.
        for region in range(prop.shape[0]):
            pick_r = -1
            pick_c = -1
            pick_cost = 2.5
            for k in range(prop.shape[1]):
                rr = row + prop[region, k, 1]
                cc = col + prop[region, k, 0]
                if rr < 0 or cc < 0 or rr >= height or cc >= width:
                    continue
                if cost[rr, cc] < pick_cost:
                    pick_cost = cost[rr, cc]
                    pick_r = rr
                    pick_c = cc
            if pick_r < 0:
                continue
            nx = normal[pick_r, pick_c, 0]
            ny = normal[pick_r, pick_c, 1]
            nz = normal[pick_r, pick_c, 2]
            # The neighbour's plane, intersected with this pixel's ray.
            qx = kinv[0, 0] * pick_c + kinv[0, 1] * pick_r + kinv[0, 2]
            qy = kinv[1, 1] * pick_r + kinv[1, 2]
            plane = depth[pick_r, pick_c] * (nx * qx + ny * qy + nz)
            denom = nx * rx + ny * ry + nz
            if denom > -1e-6:
                continue
            d = plane / denom
            if d < near or d > far:
                continue
            if nx == best_nx and ny == best_ny and nz == best_nz and abs(d - best_d) < 1e-6 * d:
                continue  # the same plane as ours (copied around while converging): no news
            c = _plane_cost(
                row,
                col,
                d,
                nx,
                ny,
                nz,
                kinv,
                stack,
                sizes,
                M,
                kt,
                offsets,
                weights,
                centered,
                ref_var,
                top_k,
                view_costs,
            )
            if c < best_c:
                best_c = c
                best_d = d
                best_nx = nx
                best_ny = ny
                best_nz = nz
        # Refinement: random and perturbed depths and normals, alone and combined.
        base = _pixel_seed(seed, row, col, step, 0)
        rand_d = near + (far - near) * _hash_uniform(base)
        pert_d = best_d + perturb_depth * (2.0 * _hash_uniform(base + np.uint64(1)) - 1.0)
        pert_d = min(max(pert_d, near), far)
        rnx, rny, rnz = _random_normal(base + np.uint64(2), rx, ry, 1.0)
        pnx = best_nx + perturb_normal * (2.0 * _hash_uniform(base + np.uint64(4)) - 1.0)
        pny = best_ny + perturb_normal * (2.0 * _hash_uniform(base + np.uint64(5)) - 1.0)
        pnz = best_nz + perturb_normal * (2.0 * _hash_uniform(base + np.uint64(6)) - 1.0)
        norm = math.sqrt(pnx * pnx + pny * pny + pnz * pnz)
        pnx /= norm
        pny /= norm
        pnz /= norm
        if pnx * rx + pny * ry + pnz > 0.0:
            pnx, pny, pnz = best_nx, best_ny, best_nz
        cur_d, cur_nx, cur_ny, cur_nz = best_d, best_nx, best_ny, best_nz
        for trial in range(5):
            if trial == 0:
                d, nx, ny, nz = rand_d, cur_nx, cur_ny, cur_nz
            elif trial == 1:
                d, nx, ny, nz = cur_d, rnx, rny, rnz
            elif trial == 2:
                d, nx, ny, nz = pert_d, cur_nx, cur_ny, cur_nz
            elif trial == 3:
                d, nx, ny, nz = cur_d, pnx, pny, pnz
            else:
                d, nx, ny, nz = pert_d, pnx, pny, pnz
            c = _plane_cost(
                row,
                col,
                d,
                nx,
                ny,
                nz,
                kinv,
                stack,
                sizes,
                M,
                kt,
                offsets,
                weights,
                centered,
                ref_var,
                top_k,
                view_costs,
            )
            if c < best_c:
                best_c = c
                best_d = d
                best_nx = nx
                best_ny = ny
                best_nz = nz
        depth[row, col] = best_d
        normal[row, col, 0] = best_nx
        normal[row, col, 1] = best_ny
        normal[row, col, 2] = best_nz
        cost[row, col] = best_c


# -- cross-view check --------------------------------------------------------------------------------
def filter_consistent(
    maps: list[DepthMap], neighbors: list[list[int]], options: DepthOptions
) -> list[DepthMap]:
    """Keep depths that `min_consistent_views` neighbour maps agree with (COLMAP-style check).

    A neighbour agrees when the reference point, projected into it and lifted with the
    neighbour's depth at that pixel, comes back within `max_reprojection_px` of where it started
    and within `max_relative_depth_error` of its depth. Kept depths are averaged with the
    agreeing ones when `average_consistent`; confidence is scaled by the fraction that agreed.
    """
    filtered = []
    for index, ref in enumerate(maps):
        others = [maps[j] for j in neighbors[index]]
        if not others:
            filtered.append(ref)
            continue
        hmax = max(m.depth.shape[0] for m in others)
        wmax = max(m.depth.shape[1] for m in others)
        depths = np.zeros((len(others), hmax, wmax), np.float32)
        for k, m in enumerate(others):
            depths[k, : m.depth.shape[0], : m.depth.shape[1]] = m.depth
        cam = ref.camera
        rel_R = np.zeros((len(others), 3, 3))
        rel_t = np.zeros((len(others), 3))
        src_K = np.zeros((len(others), 3, 3))
        for k, m in enumerate(others):
            rel_R[k] = m.camera.R @ cam.R.T
            rel_t[k] = m.camera.t - rel_R[k] @ cam.t
            src_K[k] = m.camera.K
        count = np.zeros(ref.depth.shape, np.int32)
        summed = np.zeros(ref.depth.shape, np.float32)
        _consistency(
            ref.depth,
            np.linalg.inv(cam.K),
            cam.K,
            depths,
            src_K,
            rel_R,
            rel_t,
            options.max_reprojection_px,
            options.max_relative_depth_error,
            count,
            summed,
        )
        keep = (ref.depth > 0) & (count >= options.min_consistent_views)
        depth = ref.depth
        if options.average_consistent:
            depth = (ref.depth + summed) / (1 + count)
        depth = np.where(keep, depth, 0.0).astype(np.float32)
        confidence = np.where(keep, ref.confidence * np.minimum(1.0, count / len(others)), 0.0)
        filtered.append(
            DepthMap(
                depth=depth,
                normal=np.where(keep[..., None], ref.normal, 0.0).astype(np.float32),
                confidence=confidence.astype(np.float32),
                camera=cam,
            )
        )
    return filtered


@numba.njit(cache=True, parallel=True)
def _consistency(depth, kinv, K, src_depths, src_K, rel_R, rel_t, max_px, max_rel, count, summed):
    height, width = depth.shape
    for row in numba.prange(height):
        for col in range(width):
            d = depth[row, col]
            if d <= 0:
                continue
            x = d * (kinv[0, 0] * col + kinv[0, 1] * row + kinv[0, 2])
            y = d * (kinv[1, 1] * row + kinv[1, 2])
            z = d
            for v in range(src_depths.shape[0]):
                R = rel_R[v]
                t = rel_t[v]
                sx = R[0, 0] * x + R[0, 1] * y + R[0, 2] * z + t[0]
                sy = R[1, 0] * x + R[1, 1] * y + R[1, 2] * z + t[1]
                sz = R[2, 0] * x + R[2, 1] * y + R[2, 2] * z + t[2]
                if sz <= 0:
                    continue
                Ks = src_K[v]
                u = (Ks[0, 0] * sx + Ks[0, 1] * sy) / sz + Ks[0, 2]
                w = Ks[1, 1] * sy / sz + Ks[1, 2]
                ui = int(u + 0.5)
                wi = int(w + 0.5)
                if ui < 0 or wi < 0 or wi >= src_depths.shape[1] or ui >= src_depths.shape[2]:
                    continue
                ds = src_depths[v, wi, ui]
                if ds <= 0:
                    continue
                # Lift the neighbour's pixel with its depth and bring it back to the reference.
                ky = (wi - Ks[1, 2]) / Ks[1, 1]
                kx = (ui - Ks[0, 2] - Ks[0, 1] * ky) / Ks[0, 0]
                px = ds * kx - t[0]
                py = ds * ky - t[1]
                pz = ds - t[2]
                # R^T (p - t)
                bx = R[0, 0] * px + R[1, 0] * py + R[2, 0] * pz
                by = R[0, 1] * px + R[1, 1] * py + R[2, 1] * pz
                bz = R[0, 2] * px + R[1, 2] * py + R[2, 2] * pz
                if bz <= 0:
                    continue
                bu = (K[0, 0] * bx + K[0, 1] * by) / bz + K[0, 2]
                bv = K[1, 1] * by / bz + K[1, 2]
                if (bu - col) ** 2 + (bv - row) ** 2 > max_px * max_px:
                    continue
                if abs(bz - d) > max_rel * d:
                    continue
                count[row, col] += 1
                summed[row, col] += bz


# -- output ------------------------------------------------------------------------------------------
def write_depth_map(path, depth_map: DepthMap) -> None:
    """Write one view's maps: depth, normal (world), confidence, K, R, t, width, height."""
    camera = depth_map.camera
    with atomic_path(path) as tmp:
        np.savez_compressed(
            tmp,
            depth=depth_map.depth.astype(np.float32),
            normal=depth_map.normal.astype(np.float32),
            confidence=depth_map.confidence.astype(np.float32),
            K=np.asarray(camera.K, dtype=np.float64),
            R=np.asarray(camera.R, dtype=np.float64),
            t=np.asarray(camera.t, dtype=np.float64),
            width=np.int64(camera.width),
            height=np.int64(camera.height),
        )


def read_depth_map(path, name: str = "") -> DepthMap:
    """The maps written by `write_depth_map`."""
    with np.load(path) as data:
        camera = Camera(
            name=name,
            width=int(data["width"]),
            height=int(data["height"]),
            K=data["K"],
            R=data["R"],
            t=data["t"],
        )
        return DepthMap(
            depth=data["depth"], normal=data["normal"], confidence=data["confidence"], camera=camera
        )
