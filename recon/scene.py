"""Scene mode's own pieces: a room's region instead of a product's, its floor, its frame.

A scene (a shop space filmed inside-out) has no product to cut out: the region the dense stages
work in is the whole space the sparse points span, less the far-flung few (sky through a window,
mismatches), and the "ground" is the floor — the lowest large horizontal plane, "horizontal"
judged first by the cameras' up vectors (people hold phones upright) and then by the plane
itself. The model frame puts that floor on y = 0 with +Y up and the walls along X and Z.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from recon.cameras import Camera
from recon.errors import ReconError, StageError
from recon.geometry import fit_plane, fit_similarity_robust
from recon.masks import ObjectRegion, mean_camera_up, up_aligned_axes
from recon.surfaces import detect_surfaces

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class SceneOptions:
    """How a space's region, floor and frame are found. Relative sizes are × the scene's extent
    (the diagonal of its sparse points' robust bounding box)."""

    keep_percentile: float = 1.0  # sparse points outside this percentile each way are dropped
    # from the region (far/sky points and mismatches)
    box_margin: float = 0.05  # the region grows by this fraction of its size on every side
    plane_distance_rel: float = 0.004  # plane fit: inlier distance
    max_tilt_deg: float = 30.0  # a floor's normal lies within this of the cameras' up
    floor_min_share: float = 0.01  # the floor's height band (the lowest that is not noise)
    # holds at least this share of the points under the cameras: a floor seen at a glance
    # from eye height holds few (3 % in the shop room's walk) and walls fill every band
    min_floor_points: int = 30
    ransac_iterations: int = 600
    below_floor_rel: float = 0.03  # depths this far below the floor are dropped by fusion (the
    # sparse floor may be a few degrees off: the dense one is found after fusion)
    eye_height_m: float = 1.5  # without a known size, the cameras are taken to have been held
    # this high above the floor: the model comes out in roughly metres (units stay "unknown")
    seed: int = 0


@dataclass(frozen=True)
class Floor:
    """A floor plane: n·x + d = 0 with n the unit up direction (pointing into the room)."""

    plane: np.ndarray  # (4,) [n, d]
    inliers: int  # points on it
    source: str  # how it was found


def scene_region(
    cameras: list[Camera], points: dict[str, np.ndarray], options: SceneOptions
) -> ObjectRegion:
    """The scene's region in the SfM frame: up and ground from the floor (see `find_floor`),
    the box around the sparse points less the outlying `keep_percentile` each way."""
    xyz = points["xyz"]
    if len(xyz) < 20:
        raise StageError(
            "masks",
            f"only {len(xyz)} sparse points: too few to tell the space's extent; film it "
            "slowly with overlapping views of textured surfaces",
        )
    up_hint = mean_camera_up(cameras)
    floor = find_floor(xyz, up_hint, cameras, options)
    up = floor.plane[:3] if floor is not None else up_hint
    axes = up_aligned_axes(up)
    local = xyz @ axes.T
    low = np.percentile(local, options.keep_percentile, axis=0)
    high = np.percentile(local, 100 - options.keep_percentile, axis=0)
    size = high - low
    low, high = low - options.box_margin * size, high + options.box_margin * size
    if floor is not None:  # the space reaches down to its floor, not below
        low[1] = -floor.plane[3] - options.box_margin * size[1]
    corners = np.array(
        [[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])]
    )
    centers = np.array([camera.center for camera in cameras])
    center = centers.mean(axis=0)
    return ObjectRegion(
        center=center,
        up=up,
        box_corners=corners @ axes,
        ground=None if floor is None else floor.plane,
        camera_distance=float(np.median(np.linalg.norm(xyz - center, axis=1))),
    )


def find_floor(
    xyz: np.ndarray, up_hint: np.ndarray, cameras: list[Camera], options: SceneOptions
) -> Floor | None:
    """The lowest large horizontal plane under the cameras, or None when there is none.

    xyz: (n, 3) points; up_hint: (3,) unit vector, roughly up. The points' heights along the
    hint are binned coarsely (so a hint a few degrees off still stacks a floor's points into one
    or two bins); the floor's band is the lowest holding at least `floor_min_share` of the
    points under the cameras (stray points under the floor gather nowhere). A plane is fitted to the
    band (RANSAC among normals within `max_tilt_deg` of the hint, least-squares refit) and
    refit to every point near it.
    """
    extent = _robust_extent(xyz)
    distance = options.plane_distance_rel * extent
    rng = np.random.default_rng(options.seed)
    heights = xyz @ up_hint
    camera_height = float(np.median(np.array([camera.center for camera in cameras]) @ up_hint))
    below = heights < camera_height - 5 * distance
    if below.sum() < options.min_floor_points:
        logger.warning("scene: no points under the cameras; up from the cameras alone")
        return None
    bin_size = 0.02 * extent  # coarse: a hint 5° off still gathers a 4 m floor in ~2 bins
    low = float(heights[below].min())
    bins = np.floor((heights[below] - low) / bin_size).astype(int)
    counts = np.bincount(bins)
    # Two neighbouring bins together: a level floor may straddle a bin edge.
    pairs = counts[:-1] + counts[1:] if len(counts) > 1 else counts
    needed = max(options.min_floor_points, options.floor_min_share * below.sum())
    enough = np.flatnonzero(pairs >= needed)
    if len(enough) == 0:
        return None
    first = int(enough[0])
    band_low = low + first * bin_size - bin_size
    band = np.flatnonzero((heights > band_low) & (heights < band_low + 4 * bin_size))
    found = fit_horizontal_plane(
        xyz[band], up_hint, distance, options.max_tilt_deg, options.ransac_iterations, rng
    )
    if found is None or len(found[1]) < options.min_floor_points:
        logger.warning("scene: no floor plane in the lowest band; up from the cameras alone")
        return None
    plane = found[0]
    # Again among the points near that plane, more tightly: the bottoms of walls and furniture
    # touch the floor's band, and a plane tilted through them must lose to the level one.
    near = np.flatnonzero(np.abs(xyz @ plane[:3] + plane[3]) < 3 * distance)
    refound = fit_horizontal_plane(
        xyz[near], plane[:3], distance / 2, 10.0, options.ransac_iterations, rng
    )
    if refound is not None and len(refound[1]) >= options.min_floor_points:
        plane = refound[0]
    count = int((np.abs(xyz @ plane[:3] + plane[3]) < distance).sum())
    tilt = math.degrees(math.acos(min(1.0, abs(float(plane[:3] @ up_hint)))))
    logger.info("scene: floor with %d points, %.1f° from the cameras' up", count, tilt)
    return Floor(plane=plane, inliers=count, source="floor plane")


def fit_horizontal_plane(
    xyz: np.ndarray,
    up_hint: np.ndarray,
    distance: float,
    max_tilt_deg: float,
    iterations: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray] | None:
    """The plane with the most points within `distance` whose normal lies within
    `max_tilt_deg` of `up_hint`: ((4,) [n, d] with n·up_hint > 0, (k,) indices of its points),
    refit by least squares to them; None when no sample gives such a plane."""
    if len(xyz) < 3:
        return None
    samples = rng.integers(0, len(xyz), (iterations, 3))
    a, b, c = xyz[samples[:, 0]], xyz[samples[:, 1]], xyz[samples[:, 2]]
    normals = np.cross(b - a, c - a)
    lengths = np.linalg.norm(normals, axis=1)
    valid = lengths > 1e-12
    normals = normals[valid] / lengths[valid, None]
    normals *= np.sign(normals @ up_hint)[:, None]
    level = normals @ up_hint >= math.cos(math.radians(max_tilt_deg))
    normals, anchors = normals[level], a[valid][level]
    if len(normals) == 0:
        return None
    offsets = -(normals * anchors).sum(axis=1)
    best, best_count = None, -1
    for start in range(0, len(normals), 64):  # chunks keep the (hypotheses, points) table small
        distances = np.abs(xyz @ normals[start : start + 64].T + offsets[start : start + 64])
        counts = (distances < distance).sum(axis=0)
        top = int(np.argmax(counts))
        if counts[top] > best_count:
            best, best_count = start + top, int(counts[top])
    plane = np.append(normals[best], offsets[best])
    for _ in range(3):  # refit to the inliers, which the refit plane then gathers again
        inliers = np.flatnonzero(np.abs(xyz @ plane[:3] + plane[3]) < distance)
        if len(inliers) < 3:
            return None
        plane = fit_plane(xyz[inliers], up_hint)
    inliers = np.flatnonzero(np.abs(xyz @ plane[:3] + plane[3]) < distance)
    return plane, inliers


def refine_floor(
    vertices: np.ndarray, faces: np.ndarray, region: ObjectRegion, options: SceneOptions
) -> np.ndarray | None:
    """The region's floor refit to the dense surface (vertices (n, 3), faces (m, 3)): the
    area-weighted plane through the centres of its level faces near the floor, which are many
    more than the sparse points and, chosen by their normals, free of walls' bottoms. None when
    the region has no floor."""
    if region.ground is None:
        return None
    triangles = vertices[faces]
    centres = triangles.mean(axis=1)
    normals = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    areas = np.linalg.norm(normals, axis=1)
    valid = areas > 0
    normals[valid] /= areas[valid, None]
    distance = options.plane_distance_rel * _robust_extent(vertices)
    plane = region.ground
    for reach in (8.0, 4.0, 2.0, 2.0):  # a sparse floor a few degrees off: start wide
        level = np.abs(normals @ plane[:3]) > math.cos(math.radians(15.0))
        near = valid & level & (np.abs(centres @ plane[:3] + plane[3]) < reach * distance)
        if areas[near].sum() <= 0 or near.sum() < 3:
            return plane
        plane = fit_plane(centres[near], region.ground[:3], areas[near])
    return plane


def scene_transform(
    vertices: np.ndarray, faces: np.ndarray, region: ObjectRegion, options: SceneOptions
) -> tuple[np.ndarray, str]:
    """(4, 4) rigid transform from the SfM frame to the scene's model frame — floor on y = 0,
    +Y up, the walls along X and Z (the longer extent along X), centred on x = z = 0 — and
    where up came from. vertices (n, 3), faces (m, 3) of the scene's mesh in the SfM frame."""
    floor = refine_floor(vertices, faces, region, options)
    up = floor[:3] if floor is not None else region.up / np.linalg.norm(region.up)
    axes = up_aligned_axes(up)
    mesh = trimesh.Trimesh(vertices @ axes.T, faces, process=False)
    yaw = wall_direction(mesh.face_normals, mesh.area_faces)
    c, s = math.cos(yaw), math.sin(yaw)
    # Rotate about the new up axis so that the dominant wall direction becomes X.
    turn = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    rotation = turn @ axes
    rotated = vertices @ rotation.T
    low, high = np.percentile(rotated, 0.5, axis=0), np.percentile(rotated, 99.5, axis=0)
    if high[2] - low[2] > high[0] - low[0]:  # the long side along X
        quarter = np.array([[0, 0, -1], [0, 1, 0], [1, 0, 0]], dtype=np.float64)
        rotation = quarter @ rotation
        rotated = vertices @ rotation.T
        low, high = np.percentile(rotated, 0.5, axis=0), np.percentile(rotated, 99.5, axis=0)
    base = -floor[3] if floor is not None else float(rotated[:, 1].min())
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = -np.array([(low[0] + high[0]) / 2, base, (low[2] + high[2]) / 2])
    # Roughly metres: the cameras' mean height (region.center) is a person's eye height.
    eye_height = float((rotation @ region.center)[1] - base)
    if eye_height > 0:
        matrix[:3] *= options.eye_height_m / eye_height
    return matrix, "floor plane" if floor is not None else "camera up vectors"


def wall_direction(normals: np.ndarray, areas: np.ndarray) -> float:
    """The angle (radians, about +Y) of the dominant wall normal direction, modulo 90°.

    normals: (m, 3) unit face normals in a +Y-up frame; areas: (m,). Walls meet at right
    angles, so the angles of near-vertical faces are taken four times round (a 90° turn is the
    same direction) and averaged, weighted by area."""
    vertical = np.abs(normals[:, 1]) < 0.3
    if not vertical.any():
        return 0.0
    angles = np.arctan2(normals[vertical, 2], normals[vertical, 0])
    total = (areas[vertical] * np.exp(4j * angles)).sum()
    return float(np.angle(total) / 4) if abs(total) > 0 else 0.0


def floor_errors(model_cameras: list[Camera], truth_cameras: list[Camera]) -> dict[str, float]:
    """How level and how high the model's floor (y = 0, +Y up) lies in a synthetic scene's
    truth frame (floor on y = 0, +Y up, metres), the model brought there as `recon.evaluation`
    does (the similarity between the cameras' centres, matched by name): ``tilt_deg`` between
    the two ups and ``height_m``, the truth height of the model's origin on its floor."""
    truth_by_name = {camera.name: camera for camera in truth_cameras}
    matched = [camera for camera in model_cameras if camera.name in truth_by_name]
    if len(matched) < 3:
        raise ValueError(f"only {len(matched)} cameras match the truth; 3 are needed to align")
    to_truth = fit_similarity_robust(
        np.array([camera.center for camera in matched]),
        np.array([truth_by_name[camera.name].center for camera in matched]),
    )
    model_up = to_truth.rotation @ np.array([0.0, 1.0, 0.0])
    tilt = math.degrees(math.acos(min(1.0, float(model_up[1]))))
    return {"tilt_deg": tilt, "height_m": float(to_truth.apply(np.zeros((1, 3)))[0, 1])}


def scene_report(model_path: Path, report: dict) -> tuple[list[dict], list[str]]:
    """The scene's surfaces (floor, tables, shelves, walls) found in its model, as report JSON,
    and warnings for the report (a scene without surfaces is still a scene: it gets a warning,
    not a failure). `report`: the reconstruction's report so far (units, orientation)."""
    warnings = []
    if report["units"] != "metre":
        warnings.append(
            "scene size estimated from the cameras' height above the floor (taken as a held "
            "phone's, 1.5 m): roughly metres; give a known length for true metres"
        )
    if report["orientation"]["up"] != "floor plane":
        warnings.append(
            "no floor found: up comes from how the camera was held; film more of the floor"
        )
    mesh = trimesh.load(model_path, force="mesh", process=False)
    try:
        found = detect_surfaces(mesh)
    except ReconError as error:
        warnings.append(f"no surfaces to place products on: {error}")
        return [], warnings
    return [surface.to_json() for surface in found], warnings


def _robust_extent(xyz: np.ndarray) -> float:
    """Diagonal of the 1–99 % box of (n, 3) points: the scene's size, ignoring outliers."""
    low, high = np.percentile(xyz, 1, axis=0), np.percentile(xyz, 99, axis=0)
    return float(np.linalg.norm(high - low)) or 1.0
