"""Dense depth maps on the CPU: PatchMatch multi-view stereo, coarse to fine, then a cross-check.

Each photo (the *reference*) gets a depth, a normal and a confidence per pixel from a few
neighbour photos chosen by the sparse points they share. The per-pixel search is PatchMatch
stereo in the style of ACMH (Xu & Tao 2019): every pixel holds a slanted plane (depth + normal),
scored by bilateral-weighted NCC of a sparse window mapped into each neighbour by the plane's
homography; half the pixels at a time (a checkerboard) try the planes of their best-scoring
neighbours in eight directions and random perturbations of their own. It runs first at half the
working size from random planes, then at the working size from the upsampled planes. A depth is
finally kept only where enough neighbour depth maps agree with it (COLMAP's fusion check), and
averaged with those that agree.

Pixels outside the product mask (grown a little) and pixels whose window has no
texture at all (flat rendered paper) are never searched and stay invalid (depth 0). The inner
loops are numba kernels that release the GIL; a thread pool runs them over chunks of pixels on
every core.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numba
import numpy as np

from recon import patchmatch_cuda
from recon.cameras import Camera, sightings_in, spread_cameras
from recon.errors import StageError
from recon.morphology import grow_mask
from recon.progress import ProgressCallback
from recon.workspace import Workspace, atomic_path

logger = logging.getLogger(__name__)

STAGE = "depth"


@dataclass(frozen=True, kw_only=True)
class DepthOptions:
    """How depth maps are searched and checked. Pixel sizes are at the computing size."""

    # The long side at which depth is computed: chosen so that the median product mask covers
    # about target_mask_px pixels (cost goes with it), within [min_image_px, max_image_px];
    # min_image_px without masks. Photos are downsized to it, never enlarged.
    max_image_px: int = 960
    min_image_px: int = 480
    target_mask_px: int = 48_000
    num_neighbors: int = 4  # neighbour photos matched against each reference photo
    top_k_views: int = 2  # a plane's cost: mean of its best this-many neighbour costs (occlusion)
    # Half-size of the matching window. (3, 4 × 4 samples, is a sixth faster, but a single
    # cereal-box map within 0.5 % of the truth fell from 0.948 to 0.932.)
    window_radius_px: int = 4
    window_step_px: int = 2  # sample every this-many pixels of the window (ACMH's sparse window)
    sigma_color: float = 0.04  # bilateral weight falls off with grey difference (0-1 scale)
    sigma_space_px: float = 4.0  # bilateral weight falls off with distance from the centre
    # PatchMatch iterations at half the computing size, from random planes: the 4th changed
    # nothing measurable (completeness 0.823 -> 0.822, within 0.5 % 0.980 -> 0.980).
    coarse_iterations: int = 3
    fine_iterations: int = 1  # PatchMatch iterations at the computing size
    perturb_depth: float = 0.1  # first refinement step, × the depth range (halves every iteration)
    perturb_normal: float = 0.5  # first refinement step of normals (halves every iteration)
    # Windows flatter than this (weighted grey std) are not searched, nor pixels whose own 5×5
    # neighbourhood is flatter than min_center_std. Faint grain of a grey level or two still
    # matches: at 0.005 / 0.002 the water bottle's sleeve, cap and body went unsearched (its
    # maps on truth masks: completeness 0.21, within 0.5 % 0.80; at 0.001 / 0.0005 0.75, 0.93).
    min_texture_std: float = 0.001
    min_center_std: float = 0.0005
    max_cost: float = 0.5  # 1 - NCC above which a depth is dropped
    min_triangulation_deg: float = 4.0  # neighbour choice: points seen at smaller ray angles
    max_triangulation_deg: float = 50.0  # count little, at larger ones not at all
    depth_margin: float = 0.25  # the sparse points' depth range grows by this × itself each way
    # Masks grow by this × the long side before searching in them. Beyond the masks stage's
    # own 1.5 % margin the ring is mostly background (8-11 % of the searched pixels of the soup
    # can, water bottle and shoe), but its depths keep a printed mat out of a box on it: with
    # 0 the preview box on the mat took the mat in (test_mat, accuracy@1 % 0.949 < 0.95).
    mask_dilate_rel: float = 0.01
    # Depth maps for at most this many photos, spread round the product (None: every photo);
    # the texture still takes its colours from every photo. A mustard bottle's 72 photos on a
    # table (3 rings of 24, 15° apart), all 72 -> 36 -> 24: depth 76 -> 29 -> 20 s, whole run
    # 191 -> 139 -> 127 s, F@1 % 0.988 -> 0.996 -> 0.994, F@0.5 % 0.959 -> 0.975 -> 0.968,
    # PSNR 30.9 -> 31.7 -> 31.6 dB: more maps than that add more noise than surface.
    max_views: int | None = 36
    min_consistent_views: int = 2  # a depth survives if this many neighbour maps agree with it
    max_reprojection_px: float = 1.0  # agreement: the round trip lands this close
    max_relative_depth_error: float = 0.01  # agreement: depths differ by less than this fraction
    geometric_iterations: int = 1  # second pass: iterations with ACMM's geometric term (0: none)
    geometric_weight: float = 0.2  # cost added per pixel of forward-backward reprojection error
    geometric_clip_px: float = 3.0  # ... up to this many pixels
    average_consistent: bool = True  # replace each kept depth by the mean of the agreeing ones
    workers: int = 0  # threads for the pixel loops; 0: one per available core
    seed: int = 0  # drives the random planes (results do not depend on the number of threads)
    # Where the search runs: "cpu" (ours, above) or "cuda" (COLMAP's PatchMatch on an NVIDIA GPU,
    # recon.patchmatch_cuda, which says why it is not the default; the cross-check still applies).
    device: str = "cpu"


@dataclass(frozen=True)
class DepthResult:
    views: int  # depth maps written
    valid_fraction: float  # mean over views of valid pixels within the mask (or the image)
    seconds: float
    long_side_px: int  # the size depth was computed at (see working_long_side)
    device: str  # where the search ran: "cpu" or "cuda"


@dataclass(frozen=True)
class DepthMap:
    """One view's maps at the computing size."""

    depth: np.ndarray  # (h, w) float32 depth along the optical axis, 0 = invalid
    normal: np.ndarray  # (h, w, 3) float32 unit normal in the world frame, 0 where invalid
    confidence: np.ndarray  # (h, w) float32 in [0, 1], 0 where invalid
    camera: Camera  # the camera of the maps (K scaled to their size; R, t of the photo)


def run(
    workspace: Workspace,
    options: DepthOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> DepthResult:
    """Compute, cross-check and write a depth map (``workspace.depth_path``) for every photo.

    Reads the undistorted photos and pinhole cameras of the sfm stage, its sparse points (for
    depth ranges and neighbour choice) and product masks when the masks stage wrote them.
    """
    options = options or DepthOptions()
    start = time.perf_counter()
    cameras = workspace.read_sfm_cameras()
    if len(cameras) < 2:
        raise StageError(STAGE, f"only {len(cameras)} photo(s) registered: stereo needs two")
    if not workspace.sfm_points_path.exists():
        raise StageError(
            STAGE, f"{workspace.sfm_points_path} is missing: run the sfm stage before depth"
        )
    points = workspace.read_sfm_points()
    # An earlier run's maps (other options, other photos chosen) must not reach fusion.
    for stale in workspace.depth_dir.glob("*.npz"):
        stale.unlink()
    if options.max_views is not None and len(cameras) > options.max_views:
        chosen = spread_cameras(cameras, options.max_views)
        if "visible_in" in points:
            points = {
                **points,
                "visible_in": sightings_in(points["visible_in"], chosen, len(cameras)),
            }
        cameras = [cameras[i] for i in chosen]
    full_masks = [_read_mask(workspace.mask_path(camera.name)) for camera in cameras]
    long_side_px = working_long_side(cameras, full_masks, options)
    images, small, masks = [], [], []
    for camera, full_mask in zip(cameras, full_masks, strict=True):
        photo = cv2.imread(str(workspace.sfm_image_path(camera.name)), cv2.IMREAD_GRAYSCALE)
        if photo is None:
            raise StageError(
                STAGE,
                f"cannot read {workspace.sfm_image_path(camera.name)}: re-run the sfm stage",
            )
        image, view_camera = working_view(photo, camera, long_side_px)
        images.append(image)
        small.append(view_camera)
        masks.append(None if full_mask is None else _shrink_mask(full_mask, image.shape, options))
    neighbors = select_neighbors(
        cameras,
        points,
        options.num_neighbors,
        options.min_triangulation_deg,
        options.max_triangulation_deg,
    )
    ranges: list[tuple[float, float] | None] = []
    for index, camera in enumerate(small):
        try:
            ranges.append(
                view_depth_range(camera, points, index, masks[index], options.depth_margin)
            )
        except ValueError as error:
            logger.warning("depth: skipping %s: %s", camera.name, error)
            ranges.append(None)
    device = search_device(options)
    # Views run side by side, one per core, each on one thread: the kernels release the GIL,
    # so one view's Python and OpenCV steps overlap another's search instead of leaving cores
    # idle between the pixel loops (as chunks of one view at a time did).
    workers = options.workers or len(os.sched_getaffinity(0))
    view_workers = max(1, min(workers, len(small)))
    per_view = replace(options, workers=max(1, workers // view_workers))
    if device == "cuda":
        raw = _cuda_maps(workspace, images, small, masks, neighbors, ranges, progress)
    else:
        raw = _cpu_maps(images, small, masks, neighbors, ranges, per_view, view_workers, progress)

    def check_and_write(index: int) -> float:
        depth_map = consistent_map(raw[index], [raw[j] for j in neighbors[index]], per_view)
        write_depth_map(workspace.depth_path(depth_map.camera.name), depth_map)
        region = masks[index] if masks[index] is not None else np.ones(depth_map.depth.shape, bool)
        return float((depth_map.depth[region] > 0).mean()) if region.any() else 0.0

    with ThreadPoolExecutor(max_workers=view_workers) as pool:
        fractions = list(pool.map(check_and_write, range(len(small))))
    if not any(fractions):
        raise StageError(
            STAGE,
            "no photo got a usable depth map: the product needs visible texture (print, grain) "
            "and photos taken every 15-30° around it",
        )
    if progress:
        progress(STAGE, 1.0, f"{len(cameras)} depth maps")
    seconds = time.perf_counter() - start
    valid_fraction = float(np.mean(fractions))
    logger.info(
        "depth: %d maps at %d px (%s), %.0f %% valid, %.1f s",
        len(cameras),
        long_side_px,
        device,
        100 * valid_fraction,
        seconds,
    )
    return DepthResult(
        views=len(cameras),
        valid_fraction=valid_fraction,
        seconds=seconds,
        long_side_px=long_side_px,
        device=device,
    )


def search_device(options: DepthOptions) -> str:
    """Where the depth search runs ("cpu" or "cuda"), checked against what this machine has."""
    if options.device not in ("cpu", "cuda"):
        raise StageError(STAGE, f"depth device {options.device!r}: use cpu or cuda")
    if options.device == "cuda" and not patchmatch_cuda.available():
        raise StageError(
            STAGE,
            "depth on cuda needs pycolmap built with CUDA (pip install pycolmap-cuda12 in place "
            "of pycolmap) and an NVIDIA GPU; or run it on the CPU (--depth-on cpu)",
        )
    return options.device


def _cpu_maps(
    images: list[np.ndarray],
    cameras: list[Camera],
    masks: list[np.ndarray | None],
    neighbors: list[list[int]],
    ranges: list[tuple[float, float] | None],
    options: DepthOptions,
    view_workers: int,
    progress: ProgressCallback | None,
) -> list[DepthMap]:
    """Our PatchMatch search's raw maps: a photometric pass, then a geometric one."""
    passes = 2 if options.geometric_iterations > 0 else 1
    raw: list[DepthMap] = []

    def search(index: int, previous: list[DepthMap]) -> DepthMap:
        others = neighbors[index]
        if ranges[index] is None:
            return _empty_map(cameras[index])
        return compute_depth_map(
            images[index],
            cameras[index],
            [images[j] for j in others],
            [cameras[j] for j in others],
            ranges[index],
            masks[index],
            options,
            prior=previous[index] if previous else None,
            neighbor_depths=[previous[j] for j in others] if previous else None,
        )

    with ThreadPoolExecutor(max_workers=view_workers) as pool:
        for step in range(passes):
            previous = raw
            futures = [pool.submit(search, index, previous) for index in range(len(cameras))]
            raw = []
            for index, future in enumerate(futures):
                raw.append(future.result())
                if progress:
                    done = (step * len(cameras) + index + 1) / (passes * len(cameras))
                    progress(STAGE, 0.9 * done, cameras[index].name)
    return raw


def _cuda_maps(
    workspace: Workspace,
    images: list[np.ndarray],
    cameras: list[Camera],
    masks: list[np.ndarray | None],
    neighbors: list[list[int]],
    ranges: list[tuple[float, float] | None],
    progress: ProgressCallback | None,
) -> list[DepthMap]:
    """COLMAP's CUDA PatchMatch's raw maps, cut to the grown masks as the CPU search is."""
    known = [r for r in ranges if r is not None]
    if not known:
        return [_empty_map(camera) for camera in cameras]
    depth_range = (min(r[0] for r in known), max(r[1] for r in known))
    if progress:
        progress(STAGE, 0.05, f"PatchMatch on the GPU: {len(cameras)} photos")
    with tempfile.TemporaryDirectory(prefix="colmap-", dir=workspace.work_dir) as root:
        maps = patchmatch_cuda.compute_depth_maps(
            Path(root), images, cameras, neighbors, depth_range
        )
    raw = []
    for index, (camera, (depth, normal)) in enumerate(zip(cameras, maps, strict=True)):
        keep = depth > 0
        if masks[index] is not None:
            keep &= masks[index]
        if ranges[index] is None:
            keep[:] = False
        raw.append(
            DepthMap(
                depth=np.where(keep, depth, 0.0).astype(np.float32),
                normal=np.where(keep[..., None], normal, 0.0).astype(np.float32),
                confidence=keep.astype(np.float32),
                camera=camera,
            )
        )
    if progress:
        progress(STAGE, 0.9, "PatchMatch done")
    return raw


# -- inputs ----------------------------------------------------------------------------------------
def working_view(image: np.ndarray, camera: Camera, max_image_px: int) -> tuple[np.ndarray, Camera]:
    """A photo as the search uses it: (h, w) float32 grey in [0, 1], long side ≤ max_image_px,
    and its camera at that size. `image` is (H, W) uint8 grey or (H, W, 3) uint8 BGR."""
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    height, width = image.shape
    factor = min(1.0, max_image_px / max(height, width))
    if factor < 1.0:
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    gray = image.astype(np.float32) / 255.0
    return gray, resized_camera(camera, gray.shape[1], gray.shape[0])


def resized_camera(camera: Camera, width: int, height: int) -> Camera:
    """The camera of its photo resized to width × height (pixel centres stay at integers)."""
    sx, sy = width / camera.width, height / camera.height
    K = np.asarray(camera.K, dtype=np.float64).copy()
    K[0, :] *= sx
    K[1, :] *= sy
    K[0, 2] += (sx - 1) / 2
    K[1, 2] += (sy - 1) / 2
    return Camera(name=camera.name, width=width, height=height, K=K, R=camera.R, t=camera.t)


def working_long_side(
    cameras: list[Camera], masks: list[np.ndarray | None], options: DepthOptions
) -> int:
    """The long side (px) at which to compute depth: where the median product mask covers
    about `target_mask_px` pixels, within [min_image_px, max_image_px] (and the photos' size).

    The search costs per masked pixel, so this gives every capture about the same time, and
    spends it on detail where the product is small in the frame."""
    largest = max(max(camera.width, camera.height) for camera in cameras)
    fractions = [float(mask.mean()) for mask in masks if mask is not None]
    side = options.min_image_px
    if fractions and np.median(fractions) > 0:
        area = np.median([camera.width * camera.height for camera in cameras])
        scale = math.sqrt(options.target_mask_px / (np.median(fractions) * area))
        side = round(scale * largest)
    return int(min(max(side, options.min_image_px), options.max_image_px, largest))


def _read_mask(path: Path) -> np.ndarray | None:
    """(H, W) bool product mask of a photo; None when the masks stage wrote none."""
    if not path.exists():
        return None
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise StageError(STAGE, f"cannot read mask {path}: re-run the masks stage")
    return mask > 127


def _shrink_mask(mask: np.ndarray, shape: tuple[int, ...], options: DepthOptions) -> np.ndarray:
    """The mask at the computing size (h, w), dilated by `mask_dilate_rel`."""
    small = cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_AREA)
    return grow_mask(small, round(options.mask_dilate_rel * max(shape))) > 0


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
    `max_angle_deg`, and nothing beyond (the views look too different to match), as in COLMAP's
    and ACMM's view selection. Cameras sharing no points fall back to the angle between their
    viewing directions.
    """
    n = len(cameras)
    scores = np.zeros((n, n))
    xyz = points.get("xyz")
    pairs = points.get("visible_in")
    if xyz is not None and pairs is not None and len(pairs):
        pairs = np.asarray(pairs, dtype=np.int64)
        pairs = pairs[(pairs[:, 1] >= 0) & (pairs[:, 1] < n)]
        seen = np.zeros((n, len(xyz)), bool)  # (camera, point)
        seen[pairs[:, 1], pairs[:, 0]] = True
        rays = xyz[None, :, :] - np.array([camera.center for camera in cameras])[:, None, :]
        rays /= np.linalg.norm(rays, axis=2, keepdims=True)
        cos_max = np.cos(np.radians(max_angle_deg))
        for i in range(n):
            mine = np.flatnonzero(seen[i])
            cosines = np.einsum("pk,jpk->jp", rays[i, mine], rays[:, mine])  # (n, points)
            angles = np.degrees(np.arccos(np.clip(cosines, -1.0, 1.0)))
            weight = np.clip(angles / max(min_angle_deg, 1e-6), 0.0, 1.0) ** 2
            weight[(cosines < cos_max) | ~seen[:, mine]] = 0.0
            scores[i] = weight.sum(axis=1)
    axes = np.array([camera.R[2] for camera in cameras])
    axis_angles = np.degrees(np.arccos(np.clip(axes @ axes.T, -1.0, 1.0)))
    # Tie-breaker and fallback: prefer partners looking the same way, never beyond the max angle.
    ranked = scores + np.where(axis_angles <= max_angle_deg, 1e-3 / (1.0 + axis_angles), 0.0)
    np.fill_diagonal(ranked, -np.inf)
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

    Uses the points recorded as visible in view `index` (all points in front of it when it has
    too few), inside `mask` when given; their 1-99 % depth range grows by `margin` × itself each
    way. Raises ValueError when fewer than 3 points fall in the view.
    """
    xyz = np.asarray(points["xyz"], dtype=np.float64)
    chosen = xyz
    pairs = points.get("visible_in")
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
        raise ValueError(f"only {int(inside.sum())} sparse points in view: depth range unknown")
    near, far = np.percentile(depth[inside], [1.0, 99.0])
    spread = max(far - near, 0.05 * far)
    return float(max(near - margin * spread, 1e-3 * far)), float(far + margin * spread)


# -- the search ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Level:
    """One pyramid level of a reference view with everything its kernels read."""

    camera: Camera
    ref: np.ndarray  # (h, w) float32 grey
    kinv: np.ndarray  # (3, 3) inverse intrinsics
    views: tuple  # numba tuple: (n, h, w) images, (n, 2) sizes, (n, 3, 3) M, (n, 3) K t
    colors: tuple[np.ndarray, np.ndarray]  # (p, 2) int32 active (row, col) of each colour


def compute_depth_map(
    reference: np.ndarray,
    camera: Camera,
    neighbor_images: list[np.ndarray],
    neighbor_cameras: list[Camera],
    depth_range: tuple[float, float],
    mask: np.ndarray | None = None,
    options: DepthOptions | None = None,
    *,
    prior: DepthMap | None = None,
    neighbor_depths: list[DepthMap] | None = None,
) -> DepthMap:
    """Depth, normal and confidence of one reference view from its neighbours.

    `reference` (h, w) and `neighbor_images` (h_i, w_i) are float32 grey in [0, 1] of the sizes
    of `camera` and `neighbor_cameras` (see `working_view`); `depth_range` (near, far) bounds
    the depth along the optical axis; `mask` (h, w) bool limits the search (None: everywhere).

    Without `prior` this searches coarse to fine from random planes. With `prior` (this view's
    map from a first pass) and `neighbor_depths` (the neighbours' first-pass maps, in the order
    of `neighbor_cameras`) it refines the prior for `geometric_iterations` with ACMM's
    geometric-consistency term added to the matching cost.

    Returns maps at (h, w): depth (0 = invalid), world-frame unit normals, and confidence (the
    mean NCC over the best `top_k_views` neighbours, clipped to [0, 1]).
    """
    options = options or DepthOptions()
    if reference.shape != (camera.height, camera.width):
        raise ValueError(f"reference image {reference.shape} does not match its camera")
    if not neighbor_images:
        raise ValueError("compute_depth_map needs at least one neighbour view")
    near, far = depth_range
    height, width = reference.shape
    offsets = _window_offsets(options.window_radius_px, options.window_step_px)
    window = (
        offsets,
        float(options.sigma_color),
        float(options.sigma_space_px),
        float(np.abs(offsets).max()),
    )
    top_k = max(1, min(options.top_k_views, len(neighbor_images)))
    geometry = _pack_geometry(camera, neighbor_cameras, neighbor_depths)
    # (size, iterations, geometric weight) of each search stage
    if prior is not None:
        weight = options.geometric_weight if neighbor_depths else 0.0
        stages = [((height, width), options.geometric_iterations, weight)]
        iteration = options.coarse_iterations + options.fine_iterations
    else:
        stages = [((height, width), options.fine_iterations, 0.0)]
        if options.coarse_iterations > 0:
            coarse = (max(16, height // 2), max(16, width // 2))
            stages.insert(0, (coarse, options.coarse_iterations, 0.0))
        iteration = 0
    workers = options.workers or len(os.sched_getaffinity(0))
    with ThreadPoolExecutor(max_workers=workers) as pool:

        def parallel(kernel: Callable, pixels: np.ndarray, *args) -> None:
            _run_in_chunks(pool, workers, kernel, pixels, *args)

        previous: _Level | None = None
        depth = normal = cost = None
        for (level_h, level_w), iterations, weight in stages:
            level = _make_level(
                reference,
                camera,
                neighbor_images,
                neighbor_cameras,
                mask,
                level_h,
                level_w,
                window,
                options,
                parallel,
            )
            scene = (level.ref, level.kinv, level.views, window, top_k)
            scene += (geometry, weight, options.geometric_clip_px)
            active = np.concatenate(level.colors)
            new_depth = np.zeros((level_h, level_w), np.float32)
            new_normal = np.zeros((level_h, level_w, 3), np.float32)
            if previous is not None:
                parallel(
                    _upsample_planes,
                    active,
                    depth,
                    normal,
                    cost,
                    previous.kinv,
                    new_depth,
                    new_normal,
                    level.kinv,
                    near,
                    far,
                    options.seed + 1,
                )
            else:
                if prior is not None:
                    new_depth[:] = prior.depth
                    new_normal[:] = prior.normal @ camera.R.T.astype(np.float32)  # R n
                unset = active[new_depth[active[:, 0], active[:, 1]] <= 0]
                parallel(
                    _random_planes,
                    unset,
                    new_depth,
                    new_normal,
                    level.kinv,
                    near,
                    far,
                    options.seed,
                )
            depth, normal = new_depth, new_normal
            cost = np.full((level_h, level_w), _NO_COST, np.float32)
            # The final planes are judged by their photo-consistency alone: the geometric term
            # steers the search only.
            photo_cost = np.full((level_h, level_w), _NO_COST, np.float32)
            parallel(_score_planes, active, depth, normal, cost, photo_cost, scene)
            for _ in range(iterations):
                scale = 0.5**iteration
                for color in (0, 1):
                    parallel(
                        _patchmatch_pass,
                        level.colors[color],
                        depth,
                        normal,
                        cost,
                        photo_cost,
                        scene,
                        _propagation_offsets(),
                        near,
                        far,
                        options.perturb_depth * scale * (far - near),
                        options.perturb_normal * scale,
                        previous is None and prior is None,
                        _mix_seed(options.seed, 2 * iteration + color),
                    )
                iteration += 1
            previous = level
    valid = (depth > 0) & (photo_cost < options.max_cost)
    world_normal = normal @ camera.R.astype(np.float32)  # Rᵀ n for every pixel
    return DepthMap(
        depth=np.where(valid, depth, 0.0).astype(np.float32),
        normal=np.where(valid[..., None], world_normal, 0.0).astype(np.float32),
        confidence=np.where(valid, np.clip(1.0 - photo_cost, 0.0, 1.0), 0.0).astype(np.float32),
        camera=camera,
    )


def _pack_geometry(
    camera: Camera, neighbor_cameras: list[Camera], neighbor_depths: list[DepthMap] | None
) -> tuple:
    """Numba tuple for the geometric term: neighbour depths (n, h, w) float32 (zero-padded;
    (n, 1, 1) when there are none), their inverse intrinsics (n, 3, 3), the relative poses
    R_rel (n, 3, 3) and t_rel (n, 3) from this camera to theirs, and this camera's K."""
    count = len(neighbor_cameras)
    maps = neighbor_depths or []
    height = max([m.depth.shape[0] for m in maps], default=1)
    width = max([m.depth.shape[1] for m in maps], default=1)
    depths = np.zeros((count, height, width), np.float32)
    src_kinv = np.zeros((count, 3, 3))
    rel_R = np.zeros((count, 3, 3))
    rel_t = np.zeros((count, 3))
    for k, neighbor in enumerate(neighbor_cameras):
        if maps:
            if (maps[k].camera.width, maps[k].camera.height) != (neighbor.width, neighbor.height):
                raise ValueError("neighbour depth maps must match the neighbour images' size")
            depths[k, : maps[k].depth.shape[0], : maps[k].depth.shape[1]] = maps[k].depth
        src_kinv[k] = np.linalg.inv(neighbor.K)
        rel_R[k] = neighbor.R @ camera.R.T
        rel_t[k] = neighbor.t - rel_R[k] @ camera.t
    return depths, src_kinv, rel_R, rel_t, np.asarray(camera.K, dtype=np.float64)


def _make_level(
    reference: np.ndarray,
    camera: Camera,
    neighbor_images: list[np.ndarray],
    neighbor_cameras: list[Camera],
    mask: np.ndarray | None,
    height: int,
    width: int,
    window: tuple,
    options: DepthOptions,
    parallel: Callable,
) -> _Level:
    """The reference view and its neighbours resized for a pyramid level of height × width."""
    full_h, full_w = reference.shape
    if (height, width) == (full_h, full_w):
        ref, level_camera, level_mask = reference, camera, mask
        images, cameras = neighbor_images, neighbor_cameras
    else:
        ref = cv2.resize(reference, (width, height), interpolation=cv2.INTER_AREA)
        level_camera = resized_camera(camera, width, height)
        level_mask = None
        if mask is not None:
            shrunk = cv2.resize(
                mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_AREA
            )
            level_mask = shrunk > 0
        images, cameras = [], []
        for image, neighbor in zip(neighbor_images, neighbor_cameras, strict=True):
            size = (
                max(8, round(image.shape[1] * width / full_w)),
                max(8, round(image.shape[0] * height / full_h)),
            )
            images.append(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
            cameras.append(resized_camera(neighbor, *size))
    kinv = np.linalg.inv(level_camera.K)
    active = _active_pixels(
        ref, level_mask, window, options.min_texture_std, options.min_center_std, parallel
    )
    parity = (active[:, 0] + active[:, 1]) % 2
    colors = (np.ascontiguousarray(active[parity == 0]), np.ascontiguousarray(active[parity == 1]))
    return _Level(level_camera, ref, kinv, _pack_views(images, cameras, level_camera), colors)


def _window_offsets(radius: int, step: int) -> np.ndarray:
    """(s, 2) int32 (dx, dy) window samples: a grid of `step` spacing within ±radius."""
    ticks = np.arange(-radius, radius + 1, max(1, step))
    dx, dy = np.meshgrid(ticks, ticks)
    return np.stack([dx.ravel(), dy.ravel()], axis=1).astype(np.int32)


def _propagation_offsets() -> np.ndarray:
    """(8, 11, 2) int32 (dx, dy) candidate positions of ACMH's adaptive checkerboard sampling.

    Four V-shaped near regions (7 positions, padded by repeating) and four far strips (11
    positions), all at odd dx + dy: pixels of the other checkerboard colour.
    """
    near = [(0, -1), (-1, -2), (1, -2), (-2, -3), (2, -3), (-3, -4), (3, -4)]
    near += [near[-1]] * (11 - len(near))
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
    ref: np.ndarray,
    mask: np.ndarray | None,
    window: tuple,
    min_texture_std: float,
    min_center_std: float,
    parallel: Callable,
) -> np.ndarray:
    """(p, 2) int32 (row, col) pixels to search: in the mask, window inside the image, and
    textured both where the matching looks (bilateral-weighted grey std of the window) and
    right around the pixel (plain std over 5 × 5).

    Both tests fight edge fattening at the product's outline: a background pixel's window holds
    some of the product's print, and matching it would lend the pixel the product's plane."""
    height, width = ref.shape
    radius = int(window[3])
    keep = np.zeros((height, width), bool)
    keep[radius : height - radius, radius : width - radius] = True
    if mask is not None:
        keep &= mask
    # A pixel on plain paper next to the product sees the product's print at the edge of its
    # window; unless its own surroundings have some texture it would take the product's plane.
    mean = cv2.boxFilter(ref, -1, (5, 5))
    center_var = cv2.boxFilter(ref * ref, -1, (5, 5)) - mean * mean
    keep &= center_var >= min_center_std**2
    candidates = np.argwhere(keep).astype(np.int32)
    std = np.zeros((height, width), np.float32)
    parallel(_weighted_std, candidates, ref, window, std)
    return np.ascontiguousarray(candidates[std[keep] >= min_texture_std])


def _pack_views(images: list[np.ndarray], cameras: list[Camera], reference: Camera) -> tuple:
    """Neighbour images stacked (n, h, w) float32 (zero-padded), their (n, 2) int64 (w, h), and
    the plane-homography parts M = K_s R_rel K_r⁻¹ (n, 3, 3) and K_s t_rel (n, 3), float64."""
    count = len(images)
    stack = np.zeros(
        (count, max(i.shape[0] for i in images), max(i.shape[1] for i in images)), np.float32
    )
    sizes = np.zeros((count, 2), np.int64)
    M = np.zeros((count, 3, 3))
    kt = np.zeros((count, 3))
    kinv = np.linalg.inv(reference.K)
    for i, (image, camera) in enumerate(zip(images, cameras, strict=True)):
        stack[i, : image.shape[0], : image.shape[1]] = image
        sizes[i] = (image.shape[1], image.shape[0])
        R_rel = camera.R @ reference.R.T
        M[i] = camera.K @ R_rel @ kinv
        kt[i] = camera.K @ (camera.t - R_rel @ reference.t)
    return stack, sizes, M, kt


def _run_in_chunks(
    pool: ThreadPoolExecutor, workers: int, kernel: Callable, pixels: np.ndarray, *args
) -> None:
    """Run ``kernel(chunk, *args)`` over contiguous chunks of (p, 2) `pixels` on the pool.

    Kernels release the GIL and write only to the pixels of their chunk, so chunks run
    side by side; several chunks per thread even out their unequal costs."""
    if workers <= 1 or len(pixels) < 4096:
        kernel(pixels, *args)
        return
    futures = [pool.submit(kernel, chunk, *args) for chunk in np.array_split(pixels, 4 * workers)]
    for future in futures:
        future.result()


def _mix_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7919) % (1 << 62)


# -- numba kernels (all release the GIL; pixel lists are (p, 2) int32 (row, col)) ------------------
_INVALID_COST = 2.0  # a view whose window leaves the image or sees no texture
_NO_COST = 3.0  # pixels not searched: never lend their planes


@numba.njit(cache=True, nogil=True, inline="always")
def _uniform(seed: np.uint64, draw: int) -> float:
    """A uniform number in [0, 1) from a seed and a draw index (splitmix64), order-independent."""
    z = seed + np.uint64(draw + 1) * np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return float(z >> np.uint64(11)) * (1.0 / 9007199254740992.0)


@numba.njit(cache=True, nogil=True, inline="always")
def _pixel_seed(seed: int, row: int, col: int) -> np.uint64:
    value = np.uint64(seed) * np.uint64(0x100000001B3)
    value = (value ^ np.uint64(row)) * np.uint64(0x100000001B3)
    return (value ^ np.uint64(col + 0x5BD1E995)) * np.uint64(0x100000001B3)


@numba.njit(cache=True, nogil=True)
def _random_normal(seed: np.uint64, draw: int, rx: float, ry: float) -> tuple:
    """A random unit normal facing the camera (against the viewing ray (rx, ry, 1))."""
    z = 2.0 * _uniform(seed, draw) - 1.0
    phi = 2.0 * math.pi * _uniform(seed, draw + 1)
    s = math.sqrt(max(0.0, 1.0 - z * z))
    nx, ny, nz = s * math.cos(phi), s * math.sin(phi), z
    if nx * rx + ny * ry + nz > 0.0:
        return -nx, -ny, -nz
    return nx, ny, nz


@numba.njit(cache=True, nogil=True)
def _random_planes(pixels, depth, normal, kinv, near, far, seed):
    for i in range(pixels.shape[0]):
        row, col = pixels[i, 0], pixels[i, 1]
        base = _pixel_seed(seed, row, col)
        depth[row, col] = near + (far - near) * _uniform(base, 0)
        rx = kinv[0, 0] * col + kinv[0, 1] * row + kinv[0, 2]
        ry = kinv[1, 1] * row + kinv[1, 2]
        normal[row, col, 0], normal[row, col, 1], normal[row, col, 2] = _random_normal(
            base, 1, rx, ry
        )


@numba.njit(cache=True, nogil=True)
def _upsample_planes(
    pixels,
    coarse_depth,
    coarse_normal,
    coarse_cost,
    coarse_kinv,
    depth,
    normal,
    kinv,
    near,
    far,
    seed,
):
    """Planes for a finer level: each pixel takes the best-scoring plane among the four nearest
    coarse pixels, intersected with its own ray (a random plane where none fits)."""
    coarse_h, coarse_w = coarse_depth.shape
    height, width = depth.shape
    scale_r = coarse_h / height
    scale_c = coarse_w / width
    for i in range(pixels.shape[0]):
        row, col = pixels[i, 0], pixels[i, 1]
        rx = kinv[0, 0] * col + kinv[0, 1] * row + kinv[0, 2]
        ry = kinv[1, 1] * row + kinv[1, 2]
        r0 = math.floor((row + 0.5) * scale_r - 0.5)
        c0 = math.floor((col + 0.5) * scale_c - 0.5)
        best_cost = _NO_COST
        for rr in range(max(r0, 0), min(r0 + 2, coarse_h)):
            for cc in range(max(c0, 0), min(c0 + 2, coarse_w)):
                if coarse_cost[rr, cc] >= best_cost or coarse_depth[rr, cc] <= 0:
                    continue
                nx, ny, nz = (
                    coarse_normal[rr, cc, 0],
                    coarse_normal[rr, cc, 1],
                    coarse_normal[rr, cc, 2],
                )
                denom = nx * rx + ny * ry + nz
                if denom > -1e-6:
                    continue
                qx = coarse_kinv[0, 0] * cc + coarse_kinv[0, 1] * rr + coarse_kinv[0, 2]
                qy = coarse_kinv[1, 1] * rr + coarse_kinv[1, 2]
                d = coarse_depth[rr, cc] * (nx * qx + ny * qy + nz) / denom
                if d < near or d > far:
                    continue
                best_cost = coarse_cost[rr, cc]
                depth[row, col] = d
                normal[row, col, 0], normal[row, col, 1], normal[row, col, 2] = nx, ny, nz
        if best_cost >= _NO_COST:
            base = _pixel_seed(seed, row, col)
            depth[row, col] = near + (far - near) * _uniform(base, 0)
            normal[row, col, 0], normal[row, col, 1], normal[row, col, 2] = _random_normal(
                base, 1, rx, ry
            )


@numba.njit(cache=True, nogil=True, fastmath=True)
def _reference_window(ref, row, col, window, weights, centered):
    """Fill the window's normalised bilateral weights and weighted mean-free grey values;
    return its weighted variance."""
    offsets, sigma_color, sigma_space = window[0], window[1], window[2]
    center = ref[row, col]
    inv_c = 1.0 / (2.0 * sigma_color * sigma_color)
    inv_s = 1.0 / (2.0 * sigma_space * sigma_space)
    total = 0.0
    mean = 0.0
    for s in range(offsets.shape[0]):
        dx, dy = offsets[s, 0], offsets[s, 1]
        value = ref[row + dy, col + dx]
        diff = value - center
        w = math.exp(-diff * diff * inv_c - (dx * dx + dy * dy) * inv_s)
        weights[s] = w
        total += w
        mean += w * value
    mean /= total
    var = 0.0
    for s in range(offsets.shape[0]):
        weights[s] /= total
        value = ref[row + offsets[s, 1], col + offsets[s, 0]] - mean
        centered[s] = weights[s] * value
        var += centered[s] * value
    return var


@numba.njit(cache=True, nogil=True)
def _weighted_std(pixels, ref, window, out):
    weights = np.empty(window[0].shape[0])
    centered = np.empty(window[0].shape[0])
    for i in range(pixels.shape[0]):
        row, col = pixels[i, 0], pixels[i, 1]
        var = _reference_window(ref, row, col, window, weights, centered)
        out[row, col] = math.sqrt(max(var, 0.0))


@numba.njit(cache=True, nogil=True, fastmath=True)
def _plane_cost(row, col, d, nx, ny, nz, scene, weights, centered, ref_var, view_costs):
    """Cost of the plane through depth `d` at (row, col) with camera-frame normal n: the mean
    of the `top_k` smallest per-neighbour costs, each 1 - NCC (plus, with a geometric weight,
    that weight × the clipped forward-backward reprojection error through the neighbour's
    depth map, as in ACMM). Returns (cost, photometric cost): the second is the mean of the
    `top_k` smallest 1 - NCC alone (the same as the first without a geometric weight).
    `view_costs` is scratch of 2 × the neighbour count."""
    kinv, (stack, sizes, M, kt), (offsets, _, _, radius) = scene[1], scene[2], scene[3]
    top_k, geometry, geom_weight, geom_clip = scene[4], scene[5], scene[6], scene[7]
    rx = kinv[0, 0] * col + kinv[0, 1] * row + kinv[0, 2]
    ry = kinv[1, 1] * row + kinv[1, 2]
    c = d * (nx * rx + ny * ry + nz)  # n · X: negative for a plane facing the camera
    if c > -1e-9:
        return _INVALID_COST + geom_weight * geom_clip, _INVALID_COST
    # On the plane nᵀX / c = 1, so X_s = R X + t = (R + t nᵀ / c) X, and the homography is
    # H = K_s R K⁻¹ + (K_s t) aᵀ with a = K⁻ᵀ n / c.
    ax = kinv[0, 0] * nx / c
    ay = (kinv[0, 1] * nx + kinv[1, 1] * ny) / c
    az = (kinv[0, 2] * nx + kinv[1, 2] * ny + nz) / c
    row_stride = np.uint64(stack.shape[2])
    n_views = stack.shape[0]
    for v in range(n_views):
        h00 = M[v, 0, 0] + kt[v, 0] * ax
        h01 = M[v, 0, 1] + kt[v, 0] * ay
        h10 = M[v, 1, 0] + kt[v, 1] * ax
        h11 = M[v, 1, 1] + kt[v, 1] * ay
        h20 = M[v, 2, 0] + kt[v, 2] * ax
        h21 = M[v, 2, 1] + kt[v, 2] * ay
        bx = h00 * col + h01 * row + M[v, 0, 2] + kt[v, 0] * az
        by = h10 * col + h11 * row + M[v, 1, 2] + kt[v, 1] * az
        bz = h20 * col + h21 * row + M[v, 2, 2] + kt[v, 2] * az
        if bz <= 1e-9:
            view_costs[v] = _INVALID_COST
            continue
        # Over a window of a few pixels the homography is affine to within a few hundredths of
        # a pixel: map the window by its Jacobian at the centre, no division per sample.
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
            top = image[k] + fu * (image[k + np.uint64(1)] - image[k])
            k += row_stride
            bottom = image[k] + fu * (image[k + np.uint64(1)] - image[k])
            value = top + fw * (bottom - top)
            weighted = weights[s] * value
            s_sum += weighted
            s_sq += weighted * value
            s_cov += centered[s] * value
        var = s_sq - s_sum * s_sum
        if var < 1e-8:
            view_costs[v] = _INVALID_COST
            continue
        view_costs[v] = 1.0 - s_cov / math.sqrt(var * ref_var)
    if geom_weight <= 0.0:
        photometric = _smallest_mean(view_costs, 0, n_views, top_k)
        return photometric, photometric
    for v in range(n_views):
        view_costs[n_views + v] = view_costs[v] + geom_weight * _reprojection_error(
            row, col, d, v, M, kt, geometry, geom_clip
        )
    total = _smallest_mean(view_costs, n_views, n_views, top_k)
    return total, _smallest_mean(view_costs, 0, n_views, top_k)


@numba.njit(cache=True, nogil=True, inline="always")
def _smallest_mean(values, start, count, k):
    """Mean of the k smallest of values[start : start + count], by partial selection sort (a
    handful of views); reorders that slice."""
    total = 0.0
    for i in range(start, start + k):
        best = i
        for j in range(i + 1, start + count):
            if values[j] < values[best]:
                best = j
        values[i], values[best] = values[best], values[i]
        total += values[i]
    return total / k


@numba.njit(cache=True, nogil=True, fastmath=True)
def _reprojection_error(row, col, d, v, M, kt, geometry, clip):
    """Pixels between (col, row) and where its point at depth d comes back to after a trip
    through neighbour v's depth map (nearest pixel), at most `clip`."""
    depths, src_kinv, rel_R, rel_t, K = geometry
    qx = d * (M[v, 0, 0] * col + M[v, 0, 1] * row + M[v, 0, 2]) + kt[v, 0]
    qy = d * (M[v, 1, 0] * col + M[v, 1, 1] * row + M[v, 1, 2]) + kt[v, 1]
    qz = d * (M[v, 2, 0] * col + M[v, 2, 1] * row + M[v, 2, 2]) + kt[v, 2]
    if qz <= 1e-9:
        return clip
    u = math.floor(qx / qz + 0.5)
    w = math.floor(qy / qz + 0.5)
    if u < 0 or w < 0 or w >= depths.shape[1] or u >= depths.shape[2]:
        return clip
    ds = depths[v, w, u]
    if ds <= 0:
        return clip
    Ki = src_kinv[v]
    # The neighbour's point, back in this camera's frame: Rᵀ (X_s - t).
    px = ds * (Ki[0, 0] * u + Ki[0, 1] * w + Ki[0, 2]) - rel_t[v, 0]
    py = ds * (Ki[1, 1] * w + Ki[1, 2]) - rel_t[v, 1]
    pz = ds - rel_t[v, 2]
    R = rel_R[v]
    bx = R[0, 0] * px + R[1, 0] * py + R[2, 0] * pz
    by = R[0, 1] * px + R[1, 1] * py + R[2, 1] * pz
    bz = R[0, 2] * px + R[1, 2] * py + R[2, 2] * pz
    if bz <= 1e-9:
        return clip
    du = (K[0, 0] * bx + K[0, 1] * by) / bz + K[0, 2] - col
    dv = K[1, 1] * by / bz + K[1, 2] - row
    return min(math.sqrt(du * du + dv * dv), clip)


@numba.njit(cache=True, nogil=True)
def _score_planes(pixels, depth, normal, cost, photo_cost, scene):
    """Each pixel's cost (and photometric cost, see `_plane_cost`) of the plane it holds."""
    ref, window = scene[0], scene[3]
    weights = np.empty(window[0].shape[0])
    centered = np.empty(window[0].shape[0])
    view_costs = np.empty(2 * scene[2][0].shape[0])
    for i in range(pixels.shape[0]):
        row, col = pixels[i, 0], pixels[i, 1]
        ref_var = _reference_window(ref, row, col, window, weights, centered)
        d, nx, ny, nz = (
            depth[row, col],
            normal[row, col, 0],
            normal[row, col, 1],
            normal[row, col, 2],
        )
        cost[row, col], photo_cost[row, col] = _plane_cost(
            row, col, d, nx, ny, nz, scene, weights, centered, ref_var, view_costs
        )


@numba.njit(cache=True, nogil=True, inline="always")
def _tried(tried, count, d, nx, ny, nz):
    """Whether the plane (d, n) is among the first `count` rows of `tried` (n copied exactly,
    d within float noise of the ray intersection): scoring it again cannot change the pick."""
    for k in range(count):
        if (
            tried[k, 1] == nx
            and tried[k, 2] == ny
            and tried[k, 3] == nz
            and abs(tried[k, 0] - d) <= 1e-6 * d
        ):
            return True
    return False


@numba.njit(cache=True, nogil=True)
def _patchmatch_pass(
    pixels,
    depth,
    normal,
    cost,
    photo_cost,
    scene,
    propagation,
    near,
    far,
    perturb_depth,
    perturb_normal,
    random_restarts,
    seed,
):
    """One checkerboard half-pass: each pixel tries the planes of the best-scoring pixel in each
    of 8 regions around it (ACMH's adaptive propagation), then perturbed (and, while
    `random_restarts`, random) depths and normals; it keeps the lowest cost.

    Converged neighbourhoods hand the same plane around: a plane already tried at a pixel is
    not scored again, which leaves the result as it was and saves much of the fine levels'
    time."""
    ref, kinv, views, window = scene[0], scene[1], scene[2], scene[3]
    height, width = depth.shape
    weights = np.empty(window[0].shape[0])
    centered = np.empty(window[0].shape[0])
    view_costs = np.empty(2 * views[0].shape[0])
    tried = np.empty((propagation.shape[0] + 6, 4))
    for i in range(pixels.shape[0]):
        row, col = pixels[i, 0], pixels[i, 1]
        ref_var = _reference_window(ref, row, col, window, weights, centered)
        rx = kinv[0, 0] * col + kinv[0, 1] * row + kinv[0, 2]
        ry = kinv[1, 1] * row + kinv[1, 2]
        best_d = depth[row, col]
        best_nx, best_ny, best_nz = normal[row, col, 0], normal[row, col, 1], normal[row, col, 2]
        best_c = cost[row, col]
        best_p = photo_cost[row, col]
        tried[0, 0], tried[0, 1], tried[0, 2], tried[0, 3] = best_d, best_nx, best_ny, best_nz
        n_tried = 1
        for region in range(propagation.shape[0]):
            pick_r = -1
            pick_c = -1
            pick_cost = _NO_COST
            for k in range(propagation.shape[1]):
                rr = row + propagation[region, k, 1]
                cc = col + propagation[region, k, 0]
                if 0 <= rr < height and 0 <= cc < width and cost[rr, cc] < pick_cost:
                    pick_cost = cost[rr, cc]
                    pick_r = rr
                    pick_c = cc
            if pick_r < 0:
                continue
            nx, ny, nz = (
                normal[pick_r, pick_c, 0],
                normal[pick_r, pick_c, 1],
                normal[pick_r, pick_c, 2],
            )
            denom = nx * rx + ny * ry + nz
            if denom > -1e-6:
                continue
            # The neighbour's plane where this pixel's ray meets it.
            qx = kinv[0, 0] * pick_c + kinv[0, 1] * pick_r + kinv[0, 2]
            qy = kinv[1, 1] * pick_r + kinv[1, 2]
            d = depth[pick_r, pick_c] * (nx * qx + ny * qy + nz) / denom
            if d < near or d > far or _tried(tried, n_tried, d, nx, ny, nz):
                continue
            tried[n_tried, 0], tried[n_tried, 1] = d, nx
            tried[n_tried, 2], tried[n_tried, 3] = ny, nz
            n_tried += 1
            c, p = _plane_cost(
                row, col, d, nx, ny, nz, scene, weights, centered, ref_var, view_costs
            )
            if c < best_c:
                best_c, best_p, best_d, best_nx, best_ny, best_nz = c, p, d, nx, ny, nz
        base = _pixel_seed(seed, row, col)
        pert_d = best_d + perturb_depth * (2.0 * _uniform(base, 0) - 1.0)
        pert_d = min(max(pert_d, near), far)
        pnx = best_nx + perturb_normal * (2.0 * _uniform(base, 1) - 1.0)
        pny = best_ny + perturb_normal * (2.0 * _uniform(base, 2) - 1.0)
        pnz = best_nz + perturb_normal * (2.0 * _uniform(base, 3) - 1.0)
        norm = math.sqrt(pnx * pnx + pny * pny + pnz * pnz)
        pnx, pny, pnz = pnx / norm, pny / norm, pnz / norm
        if pnx * rx + pny * ry + pnz > 0.0:
            pnx, pny, pnz = best_nx, best_ny, best_nz
        rand_d = near + (far - near) * _uniform(base, 4)
        rnx, rny, rnz = _random_normal(base, 5, rx, ry)
        cur_d, cur_nx, cur_ny, cur_nz = best_d, best_nx, best_ny, best_nz
        for trial in range(0 if random_restarts else 2, 5):
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
            if _tried(tried, n_tried, d, nx, ny, nz):
                continue
            tried[n_tried, 0], tried[n_tried, 1] = d, nx
            tried[n_tried, 2], tried[n_tried, 3] = ny, nz
            n_tried += 1
            c, p = _plane_cost(
                row, col, d, nx, ny, nz, scene, weights, centered, ref_var, view_costs
            )
            if c < best_c:
                best_c, best_p, best_d, best_nx, best_ny, best_nz = c, p, d, nx, ny, nz
        depth[row, col] = best_d
        normal[row, col, 0], normal[row, col, 1], normal[row, col, 2] = best_nx, best_ny, best_nz
        cost[row, col] = best_c
        photo_cost[row, col] = best_p


# -- cross-view check ------------------------------------------------------------------------------
def filter_consistent(
    maps: list[DepthMap], neighbors: list[list[int]], options: DepthOptions
) -> list[DepthMap]:
    """Keep the depths that at least `min_consistent_views` neighbour maps agree with.

    `neighbors[i]` indexes the maps checked against map i (see `consistent_map`)."""
    return [
        consistent_map(ref, [maps[j] for j in neighbors[index]], options)
        for index, ref in enumerate(maps)
    ]


def consistent_map(ref: DepthMap, others: list[DepthMap], options: DepthOptions) -> DepthMap:
    """`ref` with only the depths that at least `min_consistent_views` of `others` agree with.

    A neighbour agrees when the point, projected into it and lifted with its depth at that
    pixel, comes back within `max_reprojection_px` of where it started and within
    `max_relative_depth_error` of its depth (COLMAP's fusion test). Kept depths become the mean
    of the agreeing ones when `average_consistent`; confidence is scaled by the fraction of
    neighbours that agreed.
    """
    pixels = np.argwhere(ref.depth > 0).astype(np.int32)
    if not others or not len(pixels):
        return ref
    stack = np.zeros(
        (
            len(others),
            max(m.depth.shape[0] for m in others),
            max(m.depth.shape[1] for m in others),
        ),
        np.float32,
    )
    rel_R = np.zeros((len(others), 3, 3))
    rel_t = np.zeros((len(others), 3))
    src_K = np.zeros((len(others), 3, 3))
    cam = ref.camera
    for k, other in enumerate(others):
        stack[k, : other.depth.shape[0], : other.depth.shape[1]] = other.depth
        rel_R[k] = other.camera.R @ cam.R.T
        rel_t[k] = other.camera.t - rel_R[k] @ cam.t
        src_K[k] = other.camera.K
    count = np.zeros(ref.depth.shape, np.int32)
    summed = np.zeros(ref.depth.shape, np.float32)
    workers = options.workers or len(os.sched_getaffinity(0))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        _run_in_chunks(
            pool,
            workers,
            _check_consistency,
            pixels,
            ref.depth,
            np.linalg.inv(cam.K),
            cam.K,
            stack,
            src_K,
            rel_R,
            rel_t,
            options.max_reprojection_px,
            options.max_relative_depth_error,
            count,
            summed,
        )
    keep = (ref.depth > 0) & (count >= options.min_consistent_views)
    depth = (ref.depth + summed) / (1 + count) if options.average_consistent else ref.depth
    agreement = np.minimum(1.0, count / len(others))
    return DepthMap(
        depth=np.where(keep, depth, 0.0).astype(np.float32),
        normal=np.where(keep[..., None], ref.normal, 0.0).astype(np.float32),
        confidence=np.where(keep, ref.confidence * agreement, 0.0).astype(np.float32),
        camera=cam,
    )


@numba.njit(cache=True, nogil=True)
def _check_consistency(
    pixels, depth, kinv, K, src_depths, src_K, rel_R, rel_t, max_px, max_rel, count, summed
):
    """Count, per pixel, the neighbour depth maps that agree with its depth, and sum their
    depths brought back to this view."""
    for i in range(pixels.shape[0]):
        row, col = pixels[i, 0], pixels[i, 1]
        d = depth[row, col]
        x = d * (kinv[0, 0] * col + kinv[0, 1] * row + kinv[0, 2])
        y = d * (kinv[1, 1] * row + kinv[1, 2])
        for v in range(src_depths.shape[0]):
            R = rel_R[v]
            t = rel_t[v]
            Ks = src_K[v]
            sx = R[0, 0] * x + R[0, 1] * y + R[0, 2] * d + t[0]
            sy = R[1, 0] * x + R[1, 1] * y + R[1, 2] * d + t[1]
            sz = R[2, 0] * x + R[2, 1] * y + R[2, 2] * d + t[2]
            if sz <= 0:
                continue
            u = math.floor((Ks[0, 0] * sx + Ks[0, 1] * sy) / sz + Ks[0, 2] + 0.5)
            w = math.floor(Ks[1, 1] * sy / sz + Ks[1, 2] + 0.5)
            if u < 0 or w < 0 or w >= src_depths.shape[1] or u >= src_depths.shape[2]:
                continue
            ds = src_depths[v, w, u]
            if ds <= 0:
                continue
            # Lift the neighbour's pixel with its depth and bring it back: Rᵀ (X_s - t).
            ky = (w - Ks[1, 2]) / Ks[1, 1]
            kx = (u - Ks[0, 2] - Ks[0, 1] * ky) / Ks[0, 0]
            px, py, pz = ds * kx - t[0], ds * ky - t[1], ds - t[2]
            bx = R[0, 0] * px + R[1, 0] * py + R[2, 0] * pz
            by = R[0, 1] * px + R[1, 1] * py + R[2, 1] * pz
            bz = R[0, 2] * px + R[1, 2] * py + R[2, 2] * pz
            if bz <= 0 or abs(bz - d) > max_rel * d:
                continue
            bu = (K[0, 0] * bx + K[0, 1] * by) / bz + K[0, 2]
            bv = K[1, 1] * by / bz + K[1, 2]
            if (bu - col) ** 2 + (bv - row) ** 2 > max_px * max_px:
                continue
            count[row, col] += 1
            summed[row, col] += bz


# -- files -----------------------------------------------------------------------------------------
def _empty_map(camera: Camera) -> DepthMap:
    shape = (camera.height, camera.width)
    return DepthMap(
        depth=np.zeros(shape, np.float32),
        normal=np.zeros((*shape, 3), np.float32),
        confidence=np.zeros(shape, np.float32),
        camera=camera,
    )


def write_depth_map(path: Path, depth_map: DepthMap) -> None:
    """Write one view's maps as .npz: depth (h, w), normal (h, w, 3) world frame, confidence
    (h, w), all float32; K (3, 3) of the maps' size, R (3, 3), t (3,), width, height."""
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


def read_depth_map(path: Path, name: str = "") -> DepthMap:
    """The maps written by `write_depth_map`; `name` names their camera."""
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
            depth=data["depth"],
            normal=data["normal"],
            confidence=data["confidence"],
            camera=camera,
        )
