"""Flat surfaces of a scene mesh (floor, tables, shelves, walls) for placing products on."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

import cv2
import numpy as np
import trimesh

from recon.errors import InputError

log = logging.getLogger(__name__)

UP = np.array([0.0, 1.0, 0.0])


class SurfaceKind(StrEnum):
    FLOOR = "floor"
    TABLE = "table"  # tables and counters: waist height
    SHELF = "shelf"  # any other horizontal surface above the floor
    WALL = "wall"


HORIZONTAL_KINDS = frozenset({SurfaceKind.FLOOR, SurfaceKind.TABLE, SurfaceKind.SHELF})


@dataclass(frozen=True, kw_only=True)
class Surface:
    """One flat surface of the scene, in the scene's model frame (+Y up, model units).

    Horizontal kinds carry the plane's height and the outline of the flat top in x-z
    (counter-clockwise: positive shoelace area with x as the first and z as the second
    coordinate). A wall's `polygon_xz` is its trace on the floor, two points (start, end)
    with the wall's free side on the left of start → end; its `height_m` is None.
    """

    id: int
    kind: SurfaceKind
    normal: tuple[float, float, float]  # unit, pointing into free space
    height_m: float | None
    polygon_xz: tuple[tuple[float, float], ...]
    area_m2: float
    bounds_min: tuple[float, float, float]
    bounds_max: tuple[float, float, float]

    @property
    def horizontal(self) -> bool:
        return self.kind in HORIZONTAL_KINDS

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind.value,
            "normal": [_round(v) for v in self.normal],
            "height_m": None if self.height_m is None else _round(self.height_m),
            "polygon_xz": [[_round(x), _round(z)] for x, z in self.polygon_xz],
            "area_m2": _round(self.area_m2),
            "bounds": {
                "min": [_round(v) for v in self.bounds_min],
                "max": [_round(v) for v in self.bounds_max],
            },
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Surface:
        """Parse `to_json`'s output; a malformed entry raises InputError naming the field."""
        where = f"surface {data.get('id', '?')}" if isinstance(data, Mapping) else "surface"
        if not isinstance(data, Mapping):
            raise InputError(f"{where}: expected a JSON object, got {type(data).__name__}")
        try:
            kind = SurfaceKind(data["kind"])
        except KeyError as error:
            raise InputError(f"{where}: missing field 'kind'") from error
        except ValueError as error:
            raise InputError(
                f"{where}: kind {data['kind']!r} is not one of "
                f"{', '.join(k.value for k in SurfaceKind)}"
            ) from error
        height = data.get("height_m")
        if kind in HORIZONTAL_KINDS and height is None:
            raise InputError(f"{where}: a {kind.value} needs 'height_m'")
        bounds = _field(data, "bounds", where)
        if not isinstance(bounds, Mapping):
            raise InputError(f"{where}: 'bounds' must be {{'min': [x, y, z], 'max': [x, y, z]}}")
        polygon = tuple(_vector(p, 2, f"{where} polygon_xz point") for p in data["polygon_xz"])
        if kind in HORIZONTAL_KINDS and len(polygon) < 3:
            raise InputError(f"{where}: a {kind.value}'s polygon_xz needs at least 3 points")
        return cls(
            id=int(_field(data, "id", where)),
            kind=kind,
            normal=_vector(_field(data, "normal", where), 3, f"{where} normal"),
            height_m=None if height is None else float(height),
            polygon_xz=polygon,
            area_m2=float(_field(data, "area_m2", where)),
            bounds_min=_vector(_field(bounds, "min", where), 3, f"{where} bounds.min"),
            bounds_max=_vector(_field(bounds, "max", where), 3, f"{where} bounds.max"),
        )


@dataclass(frozen=True, kw_only=True)
class SurfaceOptions:
    """How surfaces are found. Lengths are in metres and converted to model units with
    `model_units_per_metre`; None (a scene of unknown units) estimates it from the scene's
    height, taking the space to be `assumed_room_height_m` tall."""

    model_units_per_metre: float | None = 1.0
    assumed_room_height_m: float = 2.6  # floor to the top of the walls, for unknown units
    max_tilt_deg: float = 15.0  # faces this close to level (or to vertical, for walls) count
    height_tolerance_m: float = 0.02  # faces within this of a plane belong to it (noise)
    cell_m: float = 0.02  # occupancy grid cell for outlines
    max_grid_cells: int = 1200  # per side: coarser cells for very large scenes
    hole_fill_m: float = 0.06  # gaps and holes narrower than this are closed (mesh noise)
    min_width_m: float = 0.12  # narrower strips are dropped (wall tops, shelf lips)
    min_area_m2: float = 0.1  # smaller horizontal regions are dropped (tops of goods)
    min_fill: float = 0.35  # regions covering less of their outline are rims (tops of walls)
    floor_band_m: float = 0.3  # the floor is the largest plane this close to the lowest one
    table_height_m: tuple[float, float] = (0.6, 1.15)  # above the floor: tables and counters
    shelf_gap_m: float = 0.7  # a waist-high board with another this close above is a shelf
    min_shelf_height_m: float = 0.05  # lower plates are plinths, not shelves
    wall_min_height_m: float = 1.2
    wall_min_area_m2: float = 0.5
    wall_min_width_m: float = 0.6  # narrower vertical planes are sides of furniture
    floor_probe_m: float = 0.3  # a wall faces the space when the floor is this far in front


def detect_surfaces(mesh: trimesh.Trimesh, options: SurfaceOptions | None = None) -> list[Surface]:
    """Horizontal surfaces (floor, tables, shelves) and walls of a scene mesh (+Y up).

    Returns surfaces ordered floor, tables, shelves (each by height), walls; ids are their
    positions in that list.
    """
    options = options or SurfaceOptions()
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if len(faces) == 0:
        raise InputError("the scene mesh has no triangles; reconstruct the scene first")
    triangles = vertices[faces]
    cross = np.cross(triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0])
    doubled = np.linalg.norm(cross, axis=1)
    keep = doubled > 0
    triangles, normals = triangles[keep], cross[keep] / doubled[keep, None]
    areas = doubled[keep] / 2.0
    unit = _units_per_metre(triangles, normals, options)
    scale = _Scale(options, unit)

    # A reconstructed mesh's small faces tilt every which way around the true plane: a face
    # counts as level (or upright) when its own normal or the mean over its corners' faces is.
    smooth = _smoothed_normals(faces[keep], len(vertices), normals, areas)
    cos_tilt, sin_tilt = (
        np.cos(np.radians(options.max_tilt_deg)),
        np.sin(np.radians(options.max_tilt_deg)),
    )
    level = (normals[:, 1] >= cos_tilt) | (smooth[:, 1] >= cos_tilt)
    horizontal = _horizontal_regions(triangles[level], areas[level], scale)
    if not horizontal:
        raise InputError(
            "found no horizontal surface in the scene mesh: is +Y up and are the units right? "
            "(give SurfaceOptions.model_units_per_metre for a scene not in metres)"
        )
    surfaces = _classify(horizontal, scale)
    upright = (np.abs(normals[:, 1]) <= sin_tilt) | (np.abs(smooth[:, 1]) <= sin_tilt)
    walls = _walls(triangles[upright], smooth[upright], areas[upright], scale)
    surfaces += _facing_the_floor(walls, surfaces, scale)
    return [_with_id(s, i) for i, s in enumerate(surfaces)]


def polygon_area(polygon: np.ndarray) -> float:
    """Signed shoelace area of an (n, 2) polygon; positive when counter-clockwise."""
    x, y = polygon[:, 0], polygon[:, 1]
    return float(0.5 * (np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(n,) bool: which (n, 2) points lie inside the (m, 2) polygon (even-odd rule)."""
    points = np.atleast_2d(points)
    x, y = points[:, 0:1], points[:, 1:2]
    ax, ay = polygon[:, 0], polygon[:, 1]
    bx, by = np.roll(ax, -1), np.roll(ay, -1)
    straddles = (ay > y) != (by > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        cross_x = ax + (y - ay) * (bx - ax) / (by - ay)
    return (np.count_nonzero(straddles & (x < cross_x), axis=1) % 2) == 1


def distance_to_polygon_edges(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(n,) distance from (n, 2) points to the nearest edge of the (m, 2) polygon."""
    points = np.atleast_2d(points)
    a = polygon[None, :, :]
    b = np.roll(polygon, -1, axis=0)[None, :, :]
    p = points[:, None, :]
    edge = b - a
    length2 = np.maximum((edge**2).sum(axis=2), 1e-300)
    t = np.clip(((p - a) * edge).sum(axis=2) / length2, 0.0, 1.0)
    closest = a + t[..., None] * edge
    return np.sqrt(((p - closest) ** 2).sum(axis=2)).min(axis=1)


def offset_polygon(polygon: np.ndarray, distance: float) -> np.ndarray:
    """The (n, 2) counter-clockwise polygon with every edge moved `distance` outward (mitred;
    a negative distance moves inward)."""
    edges = np.roll(polygon, -1, axis=0) - polygon
    lengths = np.linalg.norm(edges, axis=1, keepdims=True)
    outward = np.stack([edges[:, 1], -edges[:, 0]], axis=1) / np.maximum(lengths, 1e-300)
    before, after = np.roll(outward, 1, axis=0), outward  # edges ending and starting at a vertex
    bisector = before + after
    # Mitre length 1 / cos(half the turn), capped so a needle-sharp corner can't shoot off.
    scale = 1.0 / np.maximum((before * after).sum(axis=1, keepdims=True) + 1.0, 0.25)
    return polygon + distance * bisector * scale


# -- internals --------------------------------------------------------------------------------


def _smoothed_normals(
    faces: np.ndarray, vertex_count: int, normals: np.ndarray, areas: np.ndarray
) -> np.ndarray:
    """(n, 3) unit normals of (n, 3) faces averaged, by area, over the faces sharing a corner."""
    weighted = normals * areas[:, None]
    corner_sums = np.zeros((vertex_count, 3))
    for k in range(3):
        np.add.at(corner_sums, faces[:, k], weighted)
    smooth = corner_sums[faces].sum(axis=1)
    length = np.linalg.norm(smooth, axis=1, keepdims=True)
    return np.where(length > 0, smooth / np.maximum(length, 1e-300), normals)


@dataclass(frozen=True)
class _Scale:
    """Options converted to model units."""

    options: SurfaceOptions
    units_per_metre: float

    def length(self, metres: float) -> float:
        return metres * self.units_per_metre

    def area(self, square_metres: float) -> float:
        return square_metres * self.units_per_metre**2


@dataclass(frozen=True)
class _Region:
    height: float
    polygon: np.ndarray  # (n, 2) x-z, counter-clockwise
    area: float
    bounds: np.ndarray  # (2, 3)


def _units_per_metre(triangles: np.ndarray, normals: np.ndarray, options: SurfaceOptions) -> float:
    if options.model_units_per_metre is not None:
        if not options.model_units_per_metre > 0:
            raise InputError("model_units_per_metre must be above 0")
        return float(options.model_units_per_metre)
    # Unknown units: the floor is the low end of the up-facing surface, the top of the
    # walls the high end of everything; percentiles keep stray noise out.
    up = normals[:, 1] >= np.cos(np.radians(options.max_tilt_deg))
    heights = triangles[:, :, 1]
    floor = np.percentile(heights[up], 1.0) if up.any() else heights.min()
    top = np.percentile(heights, 99.5)
    if not top > floor:
        raise InputError("the scene mesh is flat; cannot estimate its units from its height")
    unit = float((top - floor) / options.assumed_room_height_m)
    log.info("scene units unknown: taking %.4g model units per metre from its height", unit)
    return unit


def _cluster_1d(values: np.ndarray, weights: np.ndarray, tolerance: float, min_mass: float):
    """Greedy clustering of (n,) values: repeatedly take the densest ±tolerance window.

    Yields (centre, member indices) with the centre the weighted median of the members.
    """
    order = np.argsort(values)
    values, weights = values[order], weights[order]
    free = np.ones(len(values), dtype=bool)
    lo = np.searchsorted(values, values - tolerance, side="left")
    hi = np.searchsorted(values, values + tolerance, side="right")
    while free.any():
        cumulative = np.concatenate([[0.0], np.cumsum(np.where(free, weights, 0.0))])
        mass = np.where(free, cumulative[hi] - cumulative[lo], -1.0)
        best = int(np.argmax(mass))
        if mass[best] < min_mass:
            return
        members = np.flatnonzero(free & (np.abs(values - values[best]) <= tolerance))
        centre = _weighted_median(values[members], weights[members])
        members = np.flatnonzero(free & (np.abs(values - centre) <= tolerance))
        free[members] = False
        if len(members):
            yield _weighted_median(values[members], weights[members]), order[members]


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2.0)])


def _occupancy(
    triangles_2d: np.ndarray, scale: _Scale
) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """Rasterise (k, 3, 2) triangles into a boolean grid.

    Returns the grid (rows along the second coordinate), its origin (2,), cell size and each
    triangle's (row, col) cell (k, 2) of its centroid.
    """
    options = scale.options
    low = triangles_2d.reshape(-1, 2).min(axis=0)
    high = triangles_2d.reshape(-1, 2).max(axis=0)
    cell = max(scale.length(options.cell_m), float((high - low).max()) / options.max_grid_cells)
    pad = 2 + int(np.ceil(scale.length(options.hole_fill_m) / cell))
    origin = low - pad * cell
    shape = (
        int(np.ceil((high[1] - origin[1]) / cell)) + pad + 1,
        int(np.ceil((high[0] - origin[0]) / cell)) + pad + 1,
    )
    grid = np.zeros(shape, dtype=bool)
    pixels = (triangles_2d - origin) / cell  # (k, 3, 2) in cell units, x = column
    centroids = pixels.mean(axis=1)
    extent = (pixels.max(axis=1) - pixels.min(axis=1)).max(axis=1)
    # Triangles up to `_LATTICE_MAX_CELLS` across mark the cells under the centroids of their
    # pieces when split into k² (at most half a cell apart: a dense mesh covers its cells that
    # way, closing fills what is left, and interior points keep outlines from growing);
    # larger ones are filled exactly, one by one.
    pieces = np.maximum(np.ceil(2.0 * extent), 1).astype(np.int64)
    for k in np.unique(pieces[extent <= _LATTICE_MAX_CELLS]):
        points = np.einsum("mc,ncd->nmd", _piece_centroids(int(k)), pixels[pieces == k])
        marks = points.reshape(-1, 2).astype(np.int64)
        grid[np.clip(marks[:, 1], 0, shape[0] - 1), np.clip(marks[:, 0], 0, shape[1] - 1)] = True
    for triangle in pixels[extent > _LATTICE_MAX_CELLS]:
        _fill_triangle(grid, triangle)
    centroid_cells = np.floor(centroids[:, ::-1]).astype(np.int64)
    return grid, origin, cell, np.clip(centroid_cells, 0, np.array(shape) - 1)


_LATTICE_MAX_CELLS = 12.0


@functools.cache
def _piece_centroids(k: int) -> np.ndarray:
    """(k², 3) barycentric weights of the centroids of a triangle's k² pieces when each edge
    is cut into k."""
    points = []
    for i in range(k):
        for j in range(k - i):
            points.append(((i + 1 / 3) / k, (j + 1 / 3) / k))
            if i + j <= k - 2:
                points.append(((i + 2 / 3) / k, (j + 2 / 3) / k))
    weights = np.array(points)
    return np.column_stack([weights, 1.0 - weights.sum(axis=1)])


def _fill_triangle(grid: np.ndarray, triangle: np.ndarray) -> None:
    """Set the cells of `grid` whose centres lie in the (3, 2) triangle (cell units, x first).

    Cell centres, not cv2's inclusive fill, so that areas and outlines come out unbiased.
    """
    low = np.maximum(np.floor(triangle.min(axis=0) - 0.5).astype(int), 0)
    high = np.minimum(
        np.ceil(triangle.max(axis=0) - 0.5).astype(int), np.array(grid.shape[::-1]) - 1
    )
    if (high < low).any():
        return
    xs = np.arange(low[0], high[0] + 1) + 0.5
    ys = np.arange(low[1], high[1] + 1) + 0.5
    px, py = np.meshgrid(xs, ys)
    a, b, c = triangle
    d = (b[1] - c[1]) * (a[0] - c[0]) + (c[0] - b[0]) * (a[1] - c[1])
    if d == 0:
        return
    u = ((b[1] - c[1]) * (px - c[0]) + (c[0] - b[0]) * (py - c[1])) / d
    v = ((c[1] - a[1]) * (px - c[0]) + (a[0] - c[0]) * (py - c[1])) / d
    eps = 1e-9
    inside = (u >= -eps) & (v >= -eps) & (u + v <= 1 + eps)
    grid[low[1] : high[1] + 1, low[0] : high[0] + 1] |= inside


def _components(grid: np.ndarray, cell: float, scale: _Scale) -> tuple[np.ndarray, int]:
    """Close small holes, drop thin strips, label what remains: (labels, count)."""
    options = scale.options
    image = grid.astype(np.uint8)
    close = 2 * round(scale.length(options.hole_fill_m) / cell / 2.0) + 1
    if close > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (close, close))
        image = cv2.morphologyEx(image, cv2.MORPH_CLOSE, kernel)
    # Odd kernel sides: an even one is anchored off centre and shifts the result by a cell.
    opening = 2 * round(scale.length(options.min_width_m) / cell / 2.0) + 1
    if opening > 1:
        kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (opening, opening))
        image = cv2.morphologyEx(image, cv2.MORPH_OPEN, kernel)
    count, labels = cv2.connectedComponents(image, connectivity=8)
    return labels, count


def _outline(mask: np.ndarray, origin: np.ndarray, cell: float) -> np.ndarray:
    """(n, 2) counter-clockwise outline of a boolean mask's largest blob, in world units."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    contour = max(contours, key=cv2.contourArea)
    simplified = cv2.approxPolyDP(contour, 1.0, True)[:, 0, :].astype(np.float64)
    polygon = origin + (simplified + 0.5) * cell
    if polygon_area(polygon) < 0:
        polygon = polygon[::-1]
    # Contours run through the centres of the boundary cells, half a cell inside the edge.
    return offset_polygon(polygon, 0.5 * cell)


def _horizontal_regions(triangles: np.ndarray, areas: np.ndarray, scale: _Scale) -> list[_Region]:
    options = scale.options
    if len(triangles) == 0:
        return []
    heights = triangles[:, :, 1].mean(axis=1)
    regions = []
    tolerance = scale.length(options.height_tolerance_m)
    min_area = scale.area(options.min_area_m2)
    for cluster_height, members in _cluster_1d(heights, areas, tolerance, min_area):
        flat = triangles[members][:, :, [0, 2]]
        grid, origin, cell, cells = _occupancy(flat, scale)
        labels, count = _components(grid, cell, scale)
        face_labels = labels[cells[:, 0], cells[:, 1]]
        for label in range(1, count):
            mask = labels == label
            area = float(mask.sum()) * cell * cell
            if area < min_area:
                continue
            polygon = _outline(mask, origin, cell)
            if area < options.min_fill * polygon_area(polygon):
                continue
            own = face_labels == label
            # Each region's own height: planes a little apart share a cluster.
            height = (
                _weighted_median(heights[members][own], areas[members][own])
                if own.any()
                else cluster_height
            )
            inside = triangles[members][own].reshape(-1, 3)
            low = np.array([polygon[:, 0].min(), height, polygon[:, 1].min()])
            high = np.array([polygon[:, 0].max(), height, polygon[:, 1].max()])
            if len(inside):
                low = np.minimum(low, inside.min(axis=0))
                high = np.maximum(high, inside.max(axis=0))
            regions.append(_Region(height, polygon, area, np.stack([low, high])))
    return regions


def _classify(regions: list[_Region], scale: _Scale) -> list[Surface]:
    options = scale.options
    regions = _without_fragments(regions, scale)
    lowest = min(r.height for r in regions)
    band = scale.length(options.floor_band_m)
    tolerance = scale.length(options.height_tolerance_m)
    # The floor plane: the one with the most area near the bottom of the scene.
    mass: dict[float, float] = {}
    for region in regions:
        if region.height <= lowest + band:
            mass[region.height] = mass.get(region.height, 0.0) + region.area
    floor = max(mass, key=mass.__getitem__)
    table_low, table_high = (scale.length(h) for h in options.table_height_m)
    surfaces = []
    for region in regions:
        above = region.height - floor
        if abs(above) <= tolerance:
            kind = SurfaceKind.FLOOR
        elif above < scale.length(options.min_shelf_height_m):
            continue  # below the floor (noise, a basement seen through a hole) or a plinth
        elif table_low <= above <= table_high and not _board_above(region, regions, scale):
            kind = SurfaceKind.TABLE
        else:
            kind = SurfaceKind.SHELF
        surfaces.append(
            Surface(
                id=-1,
                kind=kind,
                normal=(0.0, 1.0, 0.0),
                height_m=region.height,
                polygon_xz=tuple((float(x), float(z)) for x, z in region.polygon),
                area_m2=region.area,
                bounds_min=tuple(float(v) for v in region.bounds[0]),
                bounds_max=tuple(float(v) for v in region.bounds[1]),
            )
        )
    order = {SurfaceKind.FLOOR: 0, SurfaceKind.TABLE: 1, SurfaceKind.SHELF: 2}
    surfaces.sort(key=lambda s: (order[s.kind], s.height_m, -s.area_m2))
    return surfaces


def _without_fragments(regions: list[_Region], scale: _Scale) -> list[_Region]:
    """Drops pieces of a larger plane that fell into a neighbouring height cluster (a floor
    a fraction of a degree off level, heavy noise): regions lying mostly within a larger
    region's outline box, at most two tolerances above or below it."""
    tolerance = 2.0 * scale.length(scale.options.height_tolerance_m)
    kept: list[_Region] = []
    for region in sorted(regions, key=lambda r: -r.area):
        low, high = region.bounds[0, [0, 2]], region.bounds[1, [0, 2]]
        own = max(float(np.prod(high - low)), 1e-300)
        fragment = False
        for big in kept:
            if abs(big.height - region.height) > tolerance:
                continue
            overlap = np.clip(
                np.minimum(high, big.bounds[1, [0, 2]]) - np.maximum(low, big.bounds[0, [0, 2]]),
                0.0,
                None,
            )
            if np.prod(overlap) >= 0.5 * own:
                fragment = True
                break
        if not fragment:
            kept.append(region)
    return kept


def _board_above(region: _Region, regions: list[_Region], scale: _Scale) -> bool:
    """Whether another horizontal region covers much of `region` a little above it (the next
    board of a shelf unit; a table or counter has open space above)."""
    gap = scale.length(scale.options.shelf_gap_m)
    tolerance = scale.length(scale.options.height_tolerance_m)
    low, high = region.bounds[0, [0, 2]], region.bounds[1, [0, 2]]
    own = np.prod(high - low)
    for other in regions:
        if not tolerance < other.height - region.height <= gap:
            continue
        overlap = np.clip(
            np.minimum(high, other.bounds[1, [0, 2]]) - np.maximum(low, other.bounds[0, [0, 2]]),
            0.0,
            None,
        )
        if np.prod(overlap) >= 0.3 * own:
            return True
    return False


def _walls(
    triangles: np.ndarray, normals: np.ndarray, areas: np.ndarray, scale: _Scale
) -> list[Surface]:
    options = scale.options
    if len(triangles) == 0:
        return []
    min_area = scale.area(options.wall_min_area_m2)
    min_height = scale.length(options.wall_min_height_m)
    min_width = scale.length(options.wall_min_width_m)
    tolerance = scale.length(options.height_tolerance_m)
    azimuth = np.arctan2(normals[:, 2], normals[:, 0])
    window = np.radians(options.max_tilt_deg)
    walls = []
    # Directions wrap around at ±π: cluster on a copy shifted by 2π too and keep each face once.
    taken = np.zeros(len(triangles), dtype=bool)
    doubled = np.concatenate([azimuth, azimuth + 2.0 * np.pi])
    for _, members in _cluster_1d(doubled, np.concatenate([areas, areas]), window, min_area):
        members = np.unique(members % len(triangles))
        members = members[~taken[members]]
        taken[members] = True
        if areas[members].sum() < min_area:
            continue
        direction = (normals[members] * areas[members, None]).sum(axis=0)
        direction[1] = 0.0
        if np.linalg.norm(direction) == 0:
            continue
        direction /= np.linalg.norm(direction)
        along = np.array([-direction[2], 0.0, direction[0]])
        offsets = triangles[members].mean(axis=1) @ direction
        for offset, plane in _cluster_1d(offsets, areas[members], tolerance, min_area):
            plane_triangles = triangles[members[plane]]
            flat = np.stack([plane_triangles @ along, plane_triangles[:, :, 1]], axis=2)
            grid, origin, cell, _cells = _occupancy(flat, scale)
            labels, count = _components(grid, cell, scale)
            for label in range(1, count):
                mask = labels == label
                area = float(mask.sum()) * cell * cell
                rows = np.flatnonzero(mask.any(axis=1))
                columns = np.flatnonzero(mask.any(axis=0))
                if (
                    area < min_area
                    or (rows[-1] - rows[0] + 1) * cell < min_height
                    or (columns[-1] - columns[0] + 1) * cell < min_width
                ):
                    continue
                u0, u1 = origin[0] + (columns[[0, -1]] + np.array([0.0, 1.0])) * cell
                y0, y1 = origin[1] + (rows[[0, -1]] + np.array([0.0, 1.0])) * cell
                start = direction * offset + along * u0
                end = direction * offset + along * u1
                # `along` is `direction` turned clockwise in (x, z), so going start → end the
                # free side is on the left (counter-clockwise, as for the horizontal outlines).
                start, end = end, start
                walls.append(
                    Surface(
                        id=-1,
                        kind=SurfaceKind.WALL,
                        normal=tuple(float(v) for v in direction),
                        height_m=None,
                        polygon_xz=(
                            (float(start[0]), float(start[2])),
                            (float(end[0]), float(end[2])),
                        ),
                        area_m2=area,
                        bounds_min=(
                            float(min(start[0], end[0])),
                            float(y0),
                            float(min(start[2], end[2])),
                        ),
                        bounds_max=(
                            float(max(start[0], end[0])),
                            float(y1),
                            float(max(start[2], end[2])),
                        ),
                    )
                )
    return _merged_walls(walls, scale)


def _merged_walls(walls: list[Surface], scale: _Scale) -> list[Surface]:
    """One wall per plane: pieces of a wall split by holes or furniture in front of it (same
    direction within the tilt, same offset within the height tolerance) become one, spanning
    them all, with their areas summed; the largest first."""
    cos_window = np.cos(np.radians(scale.options.max_tilt_deg))
    tolerance = 2.0 * scale.length(scale.options.height_tolerance_m)
    merged: list[Surface] = []
    for wall in sorted(walls, key=lambda s: -s.area_m2):
        normal = np.array(wall.normal)
        for index, big in enumerate(merged):
            big_normal = np.array(big.normal)
            offset = np.dot(np.array(wall.polygon_xz) - big.polygon_xz[0], big_normal[[0, 2]])
            if normal @ big_normal < cos_window or np.abs(offset).max() > tolerance:
                continue
            # Extend the larger piece's trace along itself to cover both.
            start = np.array(big.polygon_xz[0])
            along = np.array(big.polygon_xz[1]) - start
            length = float(np.linalg.norm(along))
            along = along / max(length, 1e-300)
            spans = np.array([*big.polygon_xz, *wall.polygon_xz]) - start
            u = spans @ along
            low, high = (
                np.minimum(big.bounds_min, wall.bounds_min),
                np.maximum(big.bounds_max, wall.bounds_max),
            )
            new_start, new_end = start + u.min() * along, start + u.max() * along
            merged[index] = replace(
                big,
                polygon_xz=(tuple(map(float, new_start)), tuple(map(float, new_end))),
                area_m2=big.area_m2 + wall.area_m2,
                bounds_min=(
                    float(min(new_start[0], new_end[0])),
                    float(low[1]),
                    float(min(new_start[1], new_end[1])),
                ),
                bounds_max=(
                    float(max(new_start[0], new_end[0])),
                    float(high[1]),
                    float(max(new_start[1], new_end[1])),
                ),
            )
            break
        else:
            merged.append(wall)
    return merged


def _facing_the_floor(
    walls: list[Surface], horizontal: list[Surface], scale: _Scale
) -> list[Surface]:
    """The walls whose free side looks over the floor: drops the outer faces of a modelled
    room's walls, the floor's own edges and other planes that face away from the space. The
    floor is taken as the convex hull of its pieces (a reconstruction often misses the floor
    under the walk path, leaving several pieces along the walls)."""
    floors = [np.array(s.polygon_xz) for s in horizontal if s.kind is SurfaceKind.FLOOR]
    if not floors:
        return walls
    points = np.concatenate(floors).astype(np.float32)
    hull = cv2.convexHull(points)[:, 0, :].astype(np.float64)
    step = scale.length(scale.options.floor_probe_m)
    kept = []
    for wall in walls:
        middle = np.mean(wall.polygon_xz, axis=0)
        probe = middle + step * np.array([wall.normal[0], wall.normal[2]])
        if points_in_polygon(probe[None], hull)[0]:
            kept.append(wall)
    return kept


def _with_id(surface: Surface, index: int) -> Surface:
    """The surface numbered `index`, its numbers rounded as JSON keeps them (a round trip
    through `to_json` gives the same surface back)."""
    return Surface.from_json({**surface.to_json(), "id": index})


def _round(value: float) -> float:
    """Micrometre precision for JSON, without negative zeros."""
    return round(float(value), 6) + 0.0


def _field(data: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in data:
        raise InputError(f"{where}: missing field {name!r}")
    return data[name]


def _vector(value: Any, size: int, where: str) -> tuple[float, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != size:
        raise InputError(f"{where}: expected {size} numbers, got {value!r}")
    try:
        return tuple(float(v) for v in value)
    except (TypeError, ValueError) as error:
        raise InputError(f"{where}: expected {size} numbers, got {value!r}") from error
