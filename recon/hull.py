"""Visual hull: where stereo finds no texture, the product's silhouettes still bound its surface.

The hull is the zero level of a field over the product box: at each point, the smallest (over
photos) signed distance to the silhouette's outline, in world units (pixels × depth / focal
length). Inside every silhouette it is positive. Its depth in a photo is where that photo's rays
first cross into it. A plain white bottle, which stereo leaves almost empty, gets its shape this
way; concave parts (a mug's opening) cannot be told by silhouettes, so the fusion stage uses hull
depths only where stereo found nothing.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numba
import numpy as np
from scipy import ndimage

from recon.cameras import Camera
from recon.masks import up_aligned_axes

logger = logging.getLogger(__name__)

# (depths a cell needs from each photo, photos) for stereo to count a surface in it (see
# stereo_cells): strictly, against a white glaze's stray depths; loosely, for a container's
# walls that stereo saw (see container_walls).
STRICT_STEREO = (8, 2)
LOOSE_STEREO = (2, 3)

# A point must be inside the frame of this many photos to be judged (the rest are not hull).
MIN_JUDGING_VIEWS = 3


@dataclass(frozen=True)
class HullField:
    origin: np.ndarray  # (3,) min corner of the grid in the box frame
    axes: np.ndarray  # (3, 3) rows: the box frame's axes in the world (x, up, z)
    voxel: float  # grid spacing, world units
    values: np.ndarray  # (nx, ny, nz) float32 signed distance to the hull, > 0 inside
    # (nx, ny, nz) bool: cells whose surface this field alone decides, not stereo (a
    # container's walls and hollow, see container_walls); None: none.
    owned: np.ndarray | None = None

    def to_grid(self, xyz: np.ndarray) -> np.ndarray:
        """(n, 3) world points in grid index units (fractional)."""
        return (xyz @ self.axes.T - self.origin) / self.voxel


def silhouette_field(
    cameras: list[Camera],
    masks: list[np.ndarray],
    box_corners: np.ndarray,
    up: np.ndarray,
    *,
    outvoted_views: int = 0,
    **options: Any,
) -> HullField:
    """The hull field of silhouette_fields at one `outvoted_views`."""
    fields = silhouette_fields(
        cameras, masks, box_corners, up, outvoted_views=(outvoted_views,), **options
    )
    return fields[0]


def silhouette_fields(
    cameras: list[Camera],
    masks: list[np.ndarray],
    box_corners: np.ndarray,
    up: np.ndarray,
    *,
    resolution: int = 128,
    erode_px: list[float] | None = None,
    min_judging_views: int = MIN_JUDGING_VIEWS,
    outvoted_views: tuple[int, ...] = (0,),
) -> list[HullField]:
    """The hull fields over the box `box_corners` (8, 3) from (h, w) uint8 `masks` (0 / 255,
    the photos' sizes), one for each of `outvoted_views`, the photos projected once;
    `erode_px` per photo shrinks each silhouette (a mask's safety margin). A point inside the
    frames of fewer than `min_judging_views` photos is not hull. A point outside the
    silhouettes of up to `outvoted_views` photos still is (the field is each point's
    (outvoted_views + 1)-th smallest distance): one mask that missed the product would
    otherwise carve it all away, and a hand in front of it in one photo cut it."""
    axes = up_aligned_axes(np.asarray(up, dtype=np.float64))
    local = box_corners @ axes.T
    low, high = local.min(axis=0), local.max(axis=0)
    voxel = float((high - low).max()) / resolution
    shape = np.maximum(np.ceil((high - low) / voxel).astype(int), 2)
    # Each point's max(outvoted_views) + 1 smallest distances, ascending.
    smallest = np.full((*shape, max(outvoted_views) + 1), np.inf, dtype=np.float32)
    judged = np.zeros(tuple(shape), dtype=np.int16)
    # Grid index (i, j, k) sits at corner + i·steps[0] + j·steps[1] + k·steps[2] in the world.
    corner, steps = low @ axes, voxel * axes
    for index, (camera, mask) in enumerate(zip(cameras, masks, strict=True)):
        inside = (mask > 0).astype(np.uint8)
        signed = cv2.distanceTransform(inside, cv2.DIST_L2, 5) - cv2.distanceTransform(
            1 - inside, cv2.DIST_L2, 5
        )
        if erode_px is not None:
            signed -= erode_px[index]
        # K·(R·x + t): the third row is the depth, as K's is (0, 0, 1).
        KR, Kt = camera.K @ camera.R, camera.K @ camera.t
        _carve(smallest, judged, KR @ corner + Kt, steps @ KR.T, signed, 1.0 / camera.K[0, 0])
    fields = []
    for outvoted in outvoted_views:
        values = np.ascontiguousarray(smallest[..., outvoted])
        values[judged < min_judging_views] = -voxel
        fields.append(HullField(low, axes, voxel, values))
    return fields


@numba.njit(cache=True, nogil=True)
def _carve(
    smallest: np.ndarray,
    judged: np.ndarray,
    start: np.ndarray,
    steps: np.ndarray,
    signed: np.ndarray,
    per_focal: float,
) -> None:
    """Insert one photo's signed silhouette distance (world units) into `smallest` (nx, ny,
    nz, k), each grid point's k smallest so far in ascending order, at every grid point it
    sees, and count the photo in `judged`. start: (3,) K·(R·x + t) of
    grid point (0, 0, 0); steps: (3, 3) its change per index along each grid axis (rows);
    signed: (h, w) float32 distance to the outline in pixels, > 0 inside. One pass, no
    temporaries: the (n, 3) projections of the numpy version took 0.6 s a photo."""
    nx, ny, nz, kept = smallest.shape
    h, w = signed.shape
    for i in range(nx):
        for j in range(ny):
            row_start = start + i * steps[0] + j * steps[1]
            for k in range(nz):
                px = row_start[0] + k * steps[2, 0]
                py = row_start[1] + k * steps[2, 1]
                depth = row_start[2] + k * steps[2, 2]
                if depth <= 0:
                    continue
                col = int(np.floor(px / depth + 0.5))
                row = int(np.floor(py / depth + 0.5))
                if col < 0 or row < 0 or col >= w or row >= h:
                    continue
                distance = signed[row, col] * depth * per_focal
                slot = kept - 1
                if distance < smallest[i, j, k, slot]:
                    while slot > 0 and distance < smallest[i, j, k, slot - 1]:
                        smallest[i, j, k, slot] = smallest[i, j, k, slot - 1]
                        slot -= 1
                    smallest[i, j, k, slot] = distance
                judged[i, j, k] += 1


def hull_depth(field: HullField, camera: Camera, K: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """(h, w) float32 depth along the optical axis where the `wanted` (h, w) pixels' rays of
    the camera (intrinsics `K` at the map's size) first enter the hull; 0 where they miss."""
    rows, cols = np.nonzero(wanted)
    out = np.zeros(wanted.shape, dtype=np.float32)
    if len(rows) == 0:
        return out
    rays = (np.linalg.inv(K) @ np.vstack([cols, rows, np.ones_like(cols)]).astype(np.float64)).T
    directions_world = rays @ camera.R  # R^T · ray, row-wise
    # In grid units: origin and per-unit-depth step of every ray (depth along the optical axis).
    origin = field.to_grid(camera.center[None])[0]
    steps = directions_world @ field.axes.T / field.voxel
    z = _march(field.values, origin, steps)
    out[rows, cols] = z
    return out


@numba.njit(cache=True, nogil=True)
def trilinear(values: np.ndarray, x: float, y: float, z: float, outside: float) -> float:
    """`values` (nx, ny, nz) interpolated at grid point (x, y, z); `outside` off the grid."""
    nx, ny, nz = values.shape
    if x < 0 or y < 0 or z < 0 or x > nx - 1 or y > ny - 1 or z > nz - 1:
        return outside
    i, j, k = min(int(x), nx - 2), min(int(y), ny - 2), min(int(z), nz - 2)
    fx, fy, fz = x - i, y - j, z - k
    c00 = values[i, j, k] * (1 - fx) + values[i + 1, j, k] * fx
    c10 = values[i, j + 1, k] * (1 - fx) + values[i + 1, j + 1, k] * fx
    c01 = values[i, j, k + 1] * (1 - fx) + values[i + 1, j, k + 1] * fx
    c11 = values[i, j + 1, k + 1] * (1 - fx) + values[i + 1, j + 1, k + 1] * fx
    return (c00 * (1 - fy) + c10 * fy) * (1 - fz) + (c01 * (1 - fy) + c11 * fy) * fz


@numba.njit(cache=True, nogil=True)
def _march(values: np.ndarray, origin: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Per ray: the depth (in units of `steps`) of the first outside→inside crossing of the
    field's zero level, by half-voxel steps and linear interpolation; 0 when none."""
    nx, ny, nz = values.shape
    out = np.zeros(len(steps), dtype=np.float32)
    for r in range(len(steps)):
        sx, sy, sz = steps[r, 0], steps[r, 1], steps[r, 2]
        length = np.sqrt(sx * sx + sy * sy + sz * sz)
        if length == 0:
            continue
        # Clip the ray to the grid box (slab method), in depth units.
        near, far = 0.0, np.inf
        for o, s, n in ((origin[0], sx, nx), (origin[1], sy, ny), (origin[2], sz, nz)):
            if abs(s) < 1e-12:
                if o < 0 or o > n - 1:
                    far = -1.0
                continue
            a, b = (0 - o) / s, (n - 1 - o) / s
            near, far = max(near, min(a, b)), min(far, max(a, b))
        if far <= near:
            continue
        dt = 0.5 / length
        t = near
        previous = -1.0
        while t <= far:
            value = trilinear(
                values, origin[0] + sx * t, origin[1] + sy * t, origin[2] + sz * t, -1.0
            )
            if value > 0 and previous <= 0 and t > near:
                out[r] = t - dt * value / (value - previous)
                break
            previous = value
            t += dt
    return out


@dataclass(frozen=True)
class DepthStack:
    """Several photos' depth maps packed for the compiled kernels: one flat array, not a list."""

    projections: np.ndarray  # (c, 3, 4) float64 K·[R | t] per photo (K at its map's size)
    depths: np.ndarray  # (sum of h·w,) float32 the maps' pixels, one map after another
    offsets: np.ndarray  # (c,) int64 where each map starts in `depths`
    shapes: np.ndarray  # (c, 2) int64 each map's (h, w)


def stack_depths(others: list[tuple[Camera, np.ndarray, np.ndarray]]) -> DepthStack:
    """The (camera, depth map, K at the map's size) of `others` as one DepthStack."""
    projections = np.zeros((len(others), 3, 4))
    for index, (camera, _, K) in enumerate(others):
        projections[index] = K @ np.column_stack([camera.R, camera.t])
    sizes = [depth.size for _, depth, _ in others]
    return DepthStack(
        projections,
        np.concatenate([depth.ravel() for _, depth, _ in others]).astype(np.float32)
        if others
        else np.zeros(0, np.float32),
        np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        if others
        else np.zeros(0, np.int64),
        np.array([depth.shape for _, depth, _ in others], dtype=np.int64).reshape(-1, 2),
    )


def world_points(
    camera: Camera, K: np.ndarray, depth: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """(n, 3) world points of the (n,) pixels (`rows`, `cols`) of a depth map (depth along the
    optical axis) of `camera`, with intrinsics `K` at the map's size."""
    rays = np.linalg.inv(K) @ np.vstack([cols, rows, np.ones_like(cols)]).astype(np.float64)
    return (camera.R.T @ (rays * depth[rows, cols] - camera.t[:, None])).T


def drop_seen_through(
    depth: np.ndarray,
    camera: Camera,
    K: np.ndarray,
    others: list[tuple[Camera, np.ndarray, np.ndarray]] | DepthStack,
    margin_rel: float,
    min_views: int = 1,
    exclude: int = -1,
) -> np.ndarray:
    """`depth` (hull depths of one photo, 0 = none) without the points that at least
    `min_views` other photos' stereo looks through: its depth map, at the point's pixel, lies
    beyond the point by more than `margin_rel` × depth. `others` holds (camera, depth map, K at
    the map's size), or their DepthStack, less its photo `exclude`."""
    return drop_points(
        depth,
        camera,
        K,
        lambda xyz: seen_through_votes(xyz, others, margin_rel, exclude) >= min_views,
    )


def drop_outside(
    depth: np.ndarray, camera: Camera, K: np.ndarray, field: HullField, tolerance_cells: float
) -> np.ndarray:
    """`depth` (K at the map's size) without the points that lie outside the hull `field` by
    more than `tolerance_cells` × its cell: outside some photo's silhouette."""
    return drop_points(
        depth, camera, K, lambda xyz: sample(field, xyz) < -tolerance_cells * field.voxel
    )


def drop_points(
    depth: np.ndarray, camera: Camera, K: np.ndarray, dropped: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """`depth` (K at the map's size) with 0 at the pixels whose world points (n, 3) the
    `dropped` test marks (n,) True; the rest unchanged."""
    rows, cols = np.nonzero(depth > 0)
    if len(rows) == 0:
        return depth
    drop = dropped(world_points(camera, K, depth, rows, cols))
    out = depth.copy()
    out[rows[drop], cols[drop]] = 0
    return out


def seen_through_votes(
    xyz: np.ndarray,
    others: list[tuple[Camera, np.ndarray, np.ndarray]] | DepthStack,
    margin_rel: float,
    exclude: int = -1,
) -> np.ndarray:
    """(n,) int32: for (n, 3) world points, how many of the `others` (camera, depth map, K at
    the map's size; or their DepthStack, less its photo `exclude`) see a surface beyond the
    point, by more than `margin_rel` × its depth: the point lies in space that photo looks
    through."""
    stack = others if isinstance(others, DepthStack) else stack_depths(others)
    votes = np.zeros(len(xyz), dtype=np.int32)
    _count_seen_through(
        np.ascontiguousarray(xyz, dtype=np.float64), stack.projections, stack.depths,
        stack.offsets, stack.shapes, margin_rel, exclude, votes,
    )  # fmt: skip
    return votes


@numba.njit(cache=True, nogil=True, inline="always")
def _seen_through(
    x: float,
    y: float,
    z: float,
    projections: np.ndarray,
    depths: np.ndarray,
    offsets: np.ndarray,
    shapes: np.ndarray,
    margin_rel: float,
    exclude: int,
) -> int:
    """How many of the stacked maps (see DepthStack) see a surface beyond world point
    (x, y, z) by more than `margin_rel` × its depth."""
    votes = 0
    for c in range(len(projections)):
        if c == exclude:
            continue
        P = projections[c]
        depth = P[2, 0] * x + P[2, 1] * y + P[2, 2] * z + P[2, 3]
        if depth <= 0:
            continue
        col = int(np.floor((P[0, 0] * x + P[0, 1] * y + P[0, 2] * z + P[0, 3]) / depth + 0.5))
        row = int(np.floor((P[1, 0] * x + P[1, 1] * y + P[1, 2] * z + P[1, 3]) / depth + 0.5))
        height, width = shapes[c, 0], shapes[c, 1]
        if col < 0 or row < 0 or col >= width or row >= height:
            continue
        observed = depths[offsets[c] + row * width + col]
        if observed > 0 and observed > depth * (1 + margin_rel):
            votes += 1
    return votes


@numba.njit(cache=True, nogil=True)
def _count_seen_through(
    xyz: np.ndarray,
    projections: np.ndarray,
    depths: np.ndarray,
    offsets: np.ndarray,
    shapes: np.ndarray,
    margin_rel: float,
    exclude: int,
    out: np.ndarray,
) -> None:
    """out[i] = _seen_through(xyz[i]); the numpy version's (n, 3) temporaries per photo cost
    10 s on the 20M voxels round a soup can."""
    for i in range(len(xyz)):
        out[i] = _seen_through(
            xyz[i, 0], xyz[i, 1], xyz[i, 2], projections, depths, offsets, shapes, margin_rel,
            exclude,
        )  # fmt: skip


def carve_seen_through(
    field: HullField,
    others: list[tuple[Camera, np.ndarray, np.ndarray]],
    margin_rel: float,
    min_views: int = 1,
    fill_px: int = 5,
    open_cells: int = 1,
    sink_floor_rel: float = 0.0,
    agreeing_margin_rel: float = 0.0,
    agreeing_views: int = 2,
    sink_min_opening: float = 0.0,
    sink_min_outside: float = 0.0,
    sink_min_well_depth: float = 0.0,
    sink_wall_rel: float = 0.0,
) -> HullField:
    """The hull less the space that at least `min_views` of the `others` (camera, depth map,
    K at the map's size) look through by `margin_rel`, or `agreeing_views` of them by
    `agreeing_margin_rel` (> 0; see seen_through_votes, with each map's holes up to
    `fill_px` wide filled, and the carved cells opened by `open_cells`): the hollow of a mug,
    which no silhouette shows. The carved part's signed distance comes from its cells (half a
    cell off at worst); the hull's own surface keeps its smooth distance. With `sink_floor_rel`
    > 0 a hollow carved this way from the top sinks down to its floor (see sink_hollows; the
    floor's thickness is this × the grid's height) when its opening spans `sink_min_opening` of
    the hull's plan at least and its walls are thin (`sink_min_outside`) or it is a well
    (`sink_min_well_depth`, see sink_hollows);
    with `sink_wall_rel` > 0 its walls are then this × the grid's longest side thick, and the
    field alone decides them and the hollow where stereo saw no surface (see
    container_walls)."""
    values = field.values
    candidates = np.argwhere(values > -field.voxel)  # in the hull or at its rim
    seen = np.zeros(values.shape, dtype=bool)
    owned = None
    if len(candidates) and others:
        xyz = (candidates * field.voxel + field.origin) @ field.axes
        # Stereo's maps are sparse on a hollow's far wall: a cell whose pixel has no depth
        # takes the nearest surface round it (a min over the window), which keeps the vote
        # safe (a point beyond even that is seen through) and the carved hollow whole.
        filled = [(camera, nearest_depth(depth, fill_px), K) for camera, depth, K in others]
        votes = seen_through_votes(xyz, filled, margin_rel)
        carve = votes >= min_views
        if agreeing_margin_rel > 0:
            carve |= seen_through_votes(xyz, filled, agreeing_margin_rel) >= agreeing_views
        seen[tuple(candidates[carve].T)] = True
        # Lone cells are stereo noise (a white mug's glaze): carved, they leave a hollow of
        # crumbs where the hull's solid hid them.
        seen = ndimage.binary_opening(seen, iterations=open_cells) if open_cells else seen
        if sink_floor_rel > 0 and seen.any():
            floor_cells = max(2, round(sink_floor_rel * values.shape[1]))
            # Where stereo put a surface, strictly (stereo_cells' default: stops a sinking
            # hollow) and loosely (a container's walls stereo saw, see container_walls): the
            # photos' depths projected once for both.
            levels = functools.cache(
                lambda: stereo_cell_levels(field, others, (STRICT_STEREO, LOOSE_STEREO))
            )

            def occupied() -> np.ndarray:
                return levels()[0]

            seen, openings = sink_hollows(
                seen, values > 0, occupied, floor_cells,
                2 * floor_cells,
                min_opening=sink_min_opening, min_outside=sink_min_outside,
                min_well_depth=sink_min_well_depth,
            )  # fmt: skip
            if sink_wall_rel > 0 and openings.any():
                seen, owned = container_walls(
                    seen, values > 0, openings, sink_wall_rel * max(values.shape), occupied(),
                    seen_walls=levels()[1],
                )  # fmt: skip
    if not seen.any():
        return field
    # Signed distance to the seen region's outline, > 0 inside it (cells, then world units).
    inside_seen = ndimage.distance_transform_edt(seen) - ndimage.distance_transform_edt(~seen)
    carved = np.minimum(values, -inside_seen.astype(np.float32) * field.voxel)
    return HullField(field.origin, field.axes, field.voxel, carved, owned)


def sink_hollows(
    seen: np.ndarray,
    inside: np.ndarray,
    occupied: np.ndarray | Callable[[], np.ndarray],
    floor_cells: int,
    min_run: int,
    close_cells: int = 2,
    min_opening: float = 0.0,
    min_outside: float = 0.0,
    min_well_depth: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """(nx, ny, nz) bool: the `seen` (carved) cells with each hollow that stereo saw into from
    above carried straight down (grid axis 1 is up) through the hull (`inside`) until a cell
    that stereo put a surface in (`occupied`, or a function that makes it, called only when
    an opening sinks) or `floor_cells` above the hull's lowest cell.

    Stereo finds depths on a plain white mug's inner wall only near the rim: the carve stops a
    few centimetres down and the hull's solid makes a ragged lid inside the mug (F@1 % 0.70).
    A column carved down `min_run` cells at least, from the hull's top, is an opening (noise
    carves a cell or two); each opening's footprint, closed by `close_cells` and taken as its
    convex outline (the far wall's depths are patchy), is carried down whole: what lies under
    an opening, unseen, is more of the hollow. Only an opening whose convex outline covers
    `min_opening` of the hull's plan at least sinks: a container's (a mug's opening, 0.42 of
    its plan with the handle) leads straight down to its floor, while under a narrow one (a
    shoe's collar, 0.06-0.09) the cavity's floor (the insole, a third of the way up) is unknown,
    and sinking to the sole cost the shoe on a table F@1 % 0.776 -> 0.765. Nor does one whose
    ring of cells just outside it lies less than `min_outside` outside the hull: its walls
    are not thin (an armchair's seat sank through, F@1 % 0.908 -> 0.869) -- unless it is a
    well: stereo carved it `min_well_depth` × its width down at least (> 0; the median column;
    the width of a disc as big as its outline) and saw no surface at the bottom of the carve
    under most columns. A ring of photos sees a well's far wall only so far down and its floor
    not at all: the project's printed mug, whose carved opening stops 7-8 cells in from the
    hull's outline (its ring inside the hull, as round the dino's back), was carved 0.51 of
    its width down to a false floor 6 cm up. What stereo saw down to its floor is carved to
    it: a soup can's recessed end, 0.14 (its floor seen under 91 % of the columns); and the
    dino's back is 0.21 (0.57 across its narrower side), an armchair's seat 0.10. Also returns
    the (nx, nz) plan of the openings that sank (none: all False).
    """
    nx, ny, nz = seen.shape
    whole = np.zeros((nx, nz), dtype=np.uint8)  # an image of rows x, columns z
    any_inside = inside.any(axis=1)
    lowest = np.where(any_inside, np.argmax(inside, axis=1), ny)  # (nx, nz)
    highest = np.where(any_inside, ny - 1 - np.argmax(inside[:, ::-1, :], axis=1), -1)
    # Carved cells in the top 2 × min_run of each column (the rim's top cells and stray
    # depths leave gaps in a run from the very top).
    depth_below_top = highest[:, None, :] - np.arange(ny)[None, :, None]
    window = (depth_below_top >= 0) & (depth_below_top < 2 * min_run)
    run = (seen & window).sum(axis=1)
    footprint = run >= min_run
    if not footprint.any():
        return seen, whole > 0
    footprint = ndimage.binary_closing(footprint, iterations=close_cells) | footprint
    # The far wall's depths are patchy: each opening is taken whole, as its convex outline.
    labels, count = ndimage.label(footprint)
    plan = float(any_inside.sum())
    for label in range(1, count + 1):
        points = np.argwhere(labels == label)[:, ::-1].astype(np.int32)  # OpenCV's (col, row)
        outline = cv2.convexHull(points)
        share = cv2.contourArea(outline) / max(plan, 1.0)
        if share < min_opening:
            continue
        opening = np.zeros((nx, nz), dtype=np.uint8)
        cv2.fillPoly(opening, [outline], 1)
        # A container's walls are thin: the ring `floor_cells` + 1 cells round its opening
        # lies mostly outside the hull (a white mug: 0.71 of it). An opening inside a wide
        # body (an armchair's seat between its arms and back: 0.0) has no known floor.
        ring = ndimage.binary_dilation(opening > 0, iterations=floor_cells + 1) & (opening == 0)
        outside = float((~any_inside[ring]).mean()) if ring.any() else 0.0
        if outside >= min_outside:
            logger.info(
                "a hollow's opening, %.2f of the plan, %.2f of its ring outside, sinks to its "
                "floor", share, outside,
            )  # fmt: skip
            whole |= opening
        elif min_well_depth > 0:
            depth, bottom_seen = _carved_well(seen, inside, highest, labels == label, occupied)
            width = math.sqrt(4 * cv2.contourArea(outline) / math.pi)  # a disc's, as big
            if depth >= min_well_depth * width and bottom_seen < 0.5:
                logger.info(
                    "a hollow's opening, %.2f of the plan, is a well stereo saw %.2f of its "
                    "width down: sinks to its floor", share, depth / width,
                )  # fmt: skip
                whole |= opening
    if not whole.any():
        return seen, whole > 0
    occupied = occupied() if callable(occupied) else occupied
    # Stereo finds no depths next to the rim, so the carved opening stops short of the inner
    # wall: grown out to a wall of `floor_cells` // 2 + 1 cells from the hull's outline.
    wall = ndimage.distance_transform_edt(any_inside) > floor_cells // 2 + 1
    footprint = (whole > 0) & any_inside
    footprint |= ndimage.binary_dilation(footprint, iterations=2 * floor_cells, mask=wall)
    sinking = footprint.copy()
    out = seen.copy()
    for j in range(ny - 1, -1, -1):
        carry = sinking & inside[:, j, :] & ~occupied[:, j, :] & (j >= lowest + floor_cells)
        sinking &= carry | (j > highest)  # a stereo surface or the floor stops the column
        out[:, j, :] |= carry
    return out, whole > 0


def _carved_well(
    seen: np.ndarray,
    inside: np.ndarray,
    highest: np.ndarray,
    columns: np.ndarray,
    occupied: np.ndarray | Callable[[], np.ndarray],
    bottom_cells: int = 3,
) -> tuple[float, float]:
    """How far stereo carved down the (nx, nz) bool `columns` of an opening: the median run of
    `seen` cells from each column's highest hull cell, and the share of the columns with a
    stereo surface (`occupied`, or a function that makes it) within `bottom_cells` below the
    run's end or a cell above it."""
    xs, zs = np.nonzero(columns)
    blocked = inside[xs, :, zs] & ~seen[xs, :, zs]  # (columns, ny)
    rows = np.arange(inside.shape[1])
    top = highest[xs, zs]
    # The run ends at the highest blocked cell at or under the top (no blocked cell: it
    # reaches the grid's bottom).
    end = np.where(blocked & (rows[None, :] <= top[:, None]), rows[None, :], -1).max(axis=1)
    occupied = occupied() if callable(occupied) else occupied
    near = np.clip(end[:, None] + np.arange(-bottom_cells, 2)[None, :], 0, len(rows) - 1)
    bottom = occupied[xs[:, None], near, zs[:, None]].any(axis=1)
    return float(np.median(top - end)), float(bottom.mean())


def container_walls(
    seen: np.ndarray,
    inside: np.ndarray,
    openings: np.ndarray,
    wall_cells: float,
    occupied: np.ndarray,
    margin_cells: int = 2,
    seen_walls: np.ndarray | None = None,
    min_seen_wall: float = 0.3,
) -> tuple[np.ndarray, np.ndarray]:
    """A container's walls (round the (nx, nz) plan of `openings` that sank, see
    sink_hollows), which stereo cannot place on a plain glaze: the `seen` (carved) cells less,
    at every height up to the rim, the hull's (`inside`) cells within `wall_cells` of its
    outline at that height; and (nx, ny, nz) bool the cells whose surface the hull alone
    decides: the container's walls, hollow and floor, and `margin_cells` round them, but none
    within `margin_cells` of a cell stereo put a surface in (`occupied`, see stereo_cells):
    there stereo places it (the sample printed mug fused from its true depths, whose speckled
    inside stereo sees, under an opening rule that sank it: F@1 % 0.864 with all its cells the
    hull's, 0.933 so; 0.921 not sunk). Where stereo saw the walls -- `min_seen_wall` of the
    cells in the outermost 2 of the walls up to the rim are `seen_walls` (looser stereo
    cells, see stereo_cells) -- those cells stand for what stereo saw instead. The project's
    printed mug has 0.39-0.43 of them with 2 depths from 3 photos each (its plain white twin
    0.12); by 8 depths from 2 photos its outer wall was the hull's, which the handle's
    silhouettes widen by 1-2 mm beside it, and its print there came out in ghosts (novel-view
    PSNR 24.5 and 24.0 dB on plain paper and a table; 26.6 and 26.9 so). (The looser cells on
    the white mug too cost it 1.0 dB.)

    On a plain white mug stereo sees through its 4 mm wall as often as into its hollow (of
    the hull's cells 1.5-3 mm inside its outline, and 6-10 mm inside, 60 % and 64 % were seen
    through by a photo at least): the carved hollow reached the hull's outline, the wall was
    only as thick as the TSDF's truncation (1 mm), and it tore where stereo's depths on the
    wall scattered. Kept from stereo too, the noise left pockets in the wall, and the surface's
    thousands of handles stopped its simplification.
    """
    areas = inside.sum(axis=(0, 2))
    # The rim: the highest layer at 0.8 of the widest; above it the hull's cap over the opening
    # (stereo carves it), which narrows fast.
    rim = int(np.nonzero(areas >= 0.8 * areas.max())[0].max())
    plan = ndimage.binary_dilation(openings, iterations=int(np.ceil(wall_cells)) + 2)
    around = ndimage.binary_dilation(plan, iterations=margin_cells)
    out = seen.copy()
    owned = np.zeros(inside.shape, dtype=bool)
    skin = np.zeros(inside.shape, dtype=bool)  # the walls' outermost 2 cells
    for j in range(rim + 1):
        layer = inside[:, j, :]
        if not layer.any():
            continue
        depth = ndimage.distance_transform_edt(layer)
        out[:, j, :] &= ~(layer & plan & (depth <= wall_cells))
        owned[:, j, :] = ndimage.binary_dilation(layer, iterations=margin_cells) & around
        skin[:, j, :] = layer & plan & (depth <= 2)
    if seen_walls is not None and skin.any():
        share = float(seen_walls[skin].mean())
        logger.info("a container's walls: stereo saw %.2f of their skin", share)
        occupied = seen_walls if share >= min_seen_wall else occupied
    return out, owned & ~ndimage.binary_dilation(occupied, iterations=margin_cells)


def stereo_cells(
    field: HullField,
    others: list[tuple[Camera, np.ndarray, np.ndarray]],
    min_points: int = STRICT_STEREO[0],
    min_views: int = STRICT_STEREO[1],
) -> np.ndarray:
    """(nx, ny, nz) bool: the field's cells that at least `min_views` of the `others` (camera,
    depth map, K at the map's size) put `min_points` depths > 0 in each (a textured surface
    gives tens per photo; a plain one's stray matches a few).

    A white mug's glaze gets a few stray depths a cell from several photos: counted together
    (8 in all) and grown by a cell they stopped the sinking hollow in pillars and ledges along
    the inner wall (F@1 % of its fused surface 0.75; 0.95 asking 8 from each of 2 photos)."""
    return stereo_cell_levels(field, others, ((min_points, min_views),))[0]


def stereo_cell_levels(
    field: HullField,
    others: list[tuple[Camera, np.ndarray, np.ndarray]],
    levels: tuple[tuple[int, int], ...],
) -> list[np.ndarray]:
    """stereo_cells at each (min_points, min_views) of `levels`, the depths projected once."""
    views = np.zeros((len(levels), field.values.size), dtype=np.int32)
    shape = np.array(field.values.shape)
    for camera, depth, K in others:
        rows, cols = np.nonzero(depth > 0)
        cells = np.round(field.to_grid(world_points(camera, K, depth, rows, cols))).astype(np.int64)
        cells = cells[((cells >= 0) & (cells < shape)).all(axis=1)]
        counts = np.bincount(
            np.ravel_multi_index(tuple(cells.T), field.values.shape), minlength=views.shape[1]
        )
        for level, (min_points, _) in enumerate(levels):
            views[level] += counts >= min_points
    return [
        (count >= min_views).reshape(field.values.shape)
        for count, (_, min_views) in zip(views, levels, strict=True)
    ]


def nearest_depth(depth: np.ndarray, window_px: int) -> np.ndarray:
    """(h, w) float32: at each pixel the least depth > 0 in the `window_px` square round it,
    0 where there is none."""
    if window_px <= 1:
        return depth
    none = np.finfo(np.float32).max  # cv2.erode pads with it, and keeps no inf
    far = np.where(depth > 0, depth, none).astype(np.float32)
    nearest = cv2.erode(far, np.ones((window_px, window_px), np.uint8))
    return np.where(nearest < none, nearest, 0).astype(np.float32)


def sample(field: HullField, xyz: np.ndarray) -> np.ndarray:
    """(n,) float32: the field's signed distance (world units, > 0 inside) at (n, 3) world
    points, trilinear; points off the grid are outside (-1 voxel)."""
    grid = field.to_grid(xyz)
    return ndimage.map_coordinates(
        field.values, grid.T, order=1, mode="constant", cval=-field.voxel
    ).astype(np.float32)
