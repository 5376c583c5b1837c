"""Flat faces of a product found in its mesh and made flat, and sharp where two meet.

Packaging is mostly boxes. Fused depth leaves a box's faces ~0.1 mm rough and its edges rounded
over a few pixel footprints, and texture is drawn from each photo where that photo sees the
surface: a rounded edge shows each photo's print smeared round it and other views see the
smear (the turntable cereal box: 24.0 dB novel-view PSNR; its true surface, textured the same
way from the same cameras, 28). Planes are found by RANSAC over the faces: one is kept where it
covers a real share of the surface and the faces it would pull do not bow away from it (a strip
of a cylinder, flat within a pixel, bows by several over the band it would flatten). The
texture stage then moves each plane to where the photos agree on its colour, or refuses it
(texturing.place_planes), and vertices near one plane move onto it, those near two or three onto
their edge or corner.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse
import scipy.sparse.csgraph
import scipy.spatial
import trimesh

from recon.geometry import face_graph, fit_plane

# A face moved onto a plane or edge that keeps under this share of its area is squashed, not
# folded over its neighbours.
SQUASHED_AREA_SHARE = 0.25


@dataclass(frozen=True, kw_only=True)
class PlaneOptions:
    """How flat faces are found and how far vertices may move onto them.

    Lengths are in pixel footprints (the size of a photo pixel on the surface), the scale at
    which stereo errs and at which a texture shows a shifted surface."""

    max_planes: int = 16  # the most planes a product keeps (a box has 6)
    min_area_share: float = 0.02  # a plane covers at least this share of the surface
    inlier_px: float = 1.0  # faces this close to a plane (and facing its way) belong to it
    inlier_angle_deg: float = 15.0  # ... and turned from it by at most this (normals smoothed)
    snap_px: float = 3.0  # vertices this close to one plane (near its faces) move onto it
    # Vertices this close to two or three planes move onto their edge or corner (0: none). The
    # cereal box's novel-view PSNR: on a turntable 25.9 -> 26.8 dB, on plain paper 25.7 -> 26.3
    # (24 × 960 px; slivers squashed onto an edge cover nothing and take no texel).
    edge_px: float = 4.0
    # A plane pulls vertices this close to its faces only: fused edges are rounded over a few
    # footprints, so a face's flat region stops short of its edge.
    reach_px: float = 12.0
    min_edge_angle_deg: float = 30.0  # planes meeting at a shallower angle make no edge
    # The quadric through a plane's faces bows away from it by more than this (peak to peak):
    # the faces are curved (a strip of a can's side, a bottle's shoulder) and stay as they are.
    max_bow_px: float = 1.0
    hypotheses: int = 256  # RANSAC draws per plane
    max_misses: int = 3  # the search ends after this many draws found no large flat region
    seed: int = 0  # RANSAC's random draws, so a resumed run gives the same mesh


@dataclass(frozen=True)
class Plane:
    normal: np.ndarray  # (3,) unit
    offset: float  # points x on the plane have normal · x == offset
    faces: np.ndarray  # (k,) int64 faces of the mesh that lie on it (one connected region)


def snap_to_planes(
    vertices: np.ndarray,
    faces: np.ndarray,
    planes: list[Plane],
    footprint: float,
    options: PlaneOptions,
) -> tuple[np.ndarray, dict]:
    """(n, 3) vertices moved onto the planes (found by find_planes, maybe moved since), their
    edges and corners, and facts about it. footprint: the length one photo pixel spans on the
    surface (the mesh's units)."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if not planes:
        return vertices, {"planes": 0, "plane_vertices": 0, "edge_vertices": 0, "kept_vertices": 0}
    moved, on_edge = _snap(vertices, faces, planes, footprint, options)
    # A vertex pulled past a neighbour would fold its triangle over: such vertices go back, until
    # no face is folded (each round puts some back, so this ends, at worst with none moved).
    kept = 0
    while (folded := _folded_faces(vertices, moved, faces)).any():
        # Of each folded face, the vertex that moved farthest goes back.
        corners = faces[folded]
        travel = np.linalg.norm(moved[corners] - vertices[corners], axis=2)
        stay = np.unique(corners[np.arange(len(corners)), np.argmax(travel, axis=1)])
        kept += len(stay)
        moved[stay] = vertices[stay]
    changed = np.any(moved != vertices, axis=1)
    return moved, {
        "planes": len(planes),
        "plane_vertices": int((changed & ~on_edge).sum()),
        "edge_vertices": int((changed & on_edge).sum()),
        "kept_vertices": kept,
    }


def find_planes(
    vertices: np.ndarray, faces: np.ndarray, footprint: float, options: PlaneOptions
) -> list[Plane]:
    """The mesh's flat regions, largest first. footprint: the length one photo pixel spans on
    the surface (the mesh's units)."""
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    corners = vertices[faces]
    centroids = corners.mean(axis=1)
    cross = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    areas = 0.5 * np.linalg.norm(cross, axis=1)
    total_area = areas.sum()
    if len(faces) < 16 or total_area <= 0:
        return []
    adjacency = trimesh.graph.face_adjacency(faces)
    graph = face_graph(adjacency, len(faces))
    normals = _smoothed_normals(cross, graph)
    distance_max = options.inlier_px * footprint
    snap_max = options.snap_px * footprint
    angle = np.radians(options.inlier_angle_deg)
    cos_min = np.cos(angle)
    rng = np.random.default_rng(options.seed)
    free = areas > 0
    planes: list[Plane] = []
    misses = 0
    while len(planes) < options.max_planes:
        candidates = np.flatnonzero(free)
        if areas[candidates].sum() < options.min_area_share * total_area:
            break
        draws = rng.choice(
            candidates,
            size=min(options.hypotheses, len(candidates)),
            p=areas[candidates] / areas[candidates].sum(),
        )
        best = _best_hypothesis(draws, centroids, normals, areas, free, distance_max, cos_min)
        if best is None:
            break
        normal, offset = normals[best], float(normals[best] @ centroids[best])
        for _ in range(3):  # refit to the inliers, then take them again
            inliers = _inliers(centroids, normals, free, normal, offset, distance_max, cos_min)
            # Three faces at least to refit through (a rough patch's best draw may meet one
            # or two; the region test below then drops it as scattered).
            if np.count_nonzero(inliers) < 3 or areas[inliers].sum() <= 0:
                break
            plane = fit_plane(centroids[inliers], normal, areas[inliers])
            normal, offset = plane[:3], float(-plane[3])
        inliers = _inliers(centroids, normals, free, normal, offset, distance_max, cos_min)
        region = _largest_region(inliers, adjacency, areas)
        if areas[region].sum() < options.min_area_share * total_area:
            # Flat in scattered bits only (a rough surface): those faces leave the search.
            free[inliers] = False
            misses += 1
            if misses == options.max_misses:
                break
            continue
        free[region] = False
        # Judge flatness over every face the plane would pull (its faces, and those round them
        # within snap_px and twice the angle, taken or not): a strip of a cylinder, flat
        # within inlier_px, bows by pixels over the band it would flatten, while a box face
        # gains only the start of its rounded edges.
        band = _inliers(centroids, normals, areas > 0, normal, offset, snap_max, np.cos(2 * angle))
        band = _connected_to(region, band, adjacency)
        if _sagitta(centroids[band], areas[band], normal) > options.max_bow_px * footprint:
            continue  # curved: its faces leave the search, the mesh keeps them as they are
        planes.append(Plane(normal, offset, region))
    return planes


def _snap(
    vertices: np.ndarray,
    faces: np.ndarray,
    planes: list[Plane],
    footprint: float,
    options: PlaneOptions,
) -> tuple[np.ndarray, np.ndarray]:
    """Vertices moved onto one plane, or the edge or corner of two or three: ((n, 3), (n,) bool
    on an edge)."""
    normals, offsets = _stacked(planes)
    distance, near_region = plane_gaps(vertices, vertices, faces, planes, footprint, options)
    edge_close = near_region & (distance <= options.edge_px * footprint) & (options.edge_px > 0)
    snap_close = near_region & (distance <= options.snap_px * footprint)
    moved = vertices.copy()
    on_edge = np.zeros(len(vertices), bool)
    edge_cos = np.cos(np.radians(options.min_edge_angle_deg))
    for i in np.flatnonzero(snap_close.any(axis=1) | (edge_close.sum(axis=1) >= 2)):
        chosen = _independent_planes(np.flatnonzero(edge_close[i]), distance[i], normals, edge_cos)
        if len(chosen) < 2:
            if not snap_close[i].any():
                continue
            chosen = [int(np.argmin(np.where(snap_close[i], distance[i], np.inf)))]
        else:
            on_edge[i] = True
        n = normals[chosen]
        # The nearest point meeting every chosen plane: x = v - Nᵀ (N Nᵀ)⁻¹ (N v - d).
        residual = n @ vertices[i] - offsets[chosen]
        moved[i] = vertices[i] - n.T @ np.linalg.solve(n @ n.T, residual)
    return moved, on_edge


def _stacked(planes: list[Plane]) -> tuple[np.ndarray, np.ndarray]:
    """The planes' (p, 3) normals and (p,) offsets."""
    normals = np.array([plane.normal for plane in planes])
    return normals, np.array([plane.offset for plane in planes])


def plane_gaps(
    points: np.ndarray,
    vertices: np.ndarray,
    faces: np.ndarray,
    planes: list[Plane],
    footprint: float,
    options: PlaneOptions,
) -> tuple[np.ndarray, np.ndarray]:
    """How far each of the (n, 3) points lies from each plane ((n, p)), and whether it lies
    within reach_px of that plane's own faces ((n, p) bool): a plane pulls only what is near
    its faces, not the rest of its infinite extent."""
    normals, offsets = _stacked(planes)
    distance = np.abs(points @ normals.T - offsets)
    near_region = np.empty(distance.shape, bool)
    for k, plane in enumerate(planes):
        region = vertices[np.unique(faces[plane.faces])]
        reach = scipy.spatial.cKDTree(region).query(points)[0]
        near_region[:, k] = reach <= options.reach_px * footprint
    return distance, near_region


def nearest_planes(
    vertices: np.ndarray,
    faces: np.ndarray,
    planes: list[Plane],
    footprint: float,
    options: PlaneOptions,
) -> np.ndarray:
    """(m,) int: the plane each face would be pulled to (its own, or the nearest within snap_px
    of it and reach_px of its faces), -1 for none."""
    centroids = vertices[faces].mean(axis=1)
    gap, near_region = plane_gaps(centroids, vertices, faces, planes, footprint, options)
    distance = np.where(near_region & (gap <= options.snap_px * footprint), gap, np.inf)
    plane_of = np.where(np.isfinite(distance).any(axis=1), np.argmin(distance, axis=1), -1)
    for k, plane in enumerate(planes):
        plane_of[plane.faces] = k
    return plane_of


def _independent_planes(
    candidates: np.ndarray, distance: np.ndarray, normals: np.ndarray, edge_cos: float
) -> list[int]:
    """Up to three of the candidate planes, nearest first, each meeting the ones before at a
    real angle (parallel planes have no edge)."""
    chosen: list[int] = []
    for k in candidates[np.argsort(distance[candidates])]:
        if all(abs(normals[k] @ normals[j]) < edge_cos for j in chosen):
            chosen.append(int(k))
            if len(chosen) == 3:
                break
    if len(chosen) == 3 and abs(np.linalg.det(normals[chosen])) < 0.1:
        chosen = chosen[:2]  # three planes round one line meet in no single corner
    return chosen


def _folded_faces(before: np.ndarray, after: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(m,) bool: faces turned over by moving their vertices, and left larger than
    SQUASHED_AREA_SHARE of their area. Faces squashed (nearly) flat are fine, turned or not: a
    band of faces round a rounded edge collapses onto the sharp edge, and putting back every
    vertex of such a sliver left the turntable cereal box's edges ragged (1 dB)."""

    def cross(v: np.ndarray) -> np.ndarray:
        c = v[faces]
        return np.cross(c[:, 1] - c[:, 0], c[:, 2] - c[:, 0])

    old, new = cross(before), cross(after)
    old_area, new_area = np.linalg.norm(old, axis=1), np.linalg.norm(new, axis=1)
    turned = np.einsum("fd,fd->f", old, new) < 0
    return turned & (new_area > SQUASHED_AREA_SHARE * old_area)


def _smoothed_normals(cross: np.ndarray, graph: scipy.sparse.csr_matrix) -> np.ndarray:
    """(m, 3) unit face normals averaged (area-weighted) over two rings of neighbours: a fused
    surface's single faces tilt by ~10° where its flat regions are flat to a tenth of a pixel."""
    smoothed = graph @ (graph @ cross)
    return smoothed / np.maximum(np.linalg.norm(smoothed, axis=1, keepdims=True), 1e-30)


def _inliers(
    centroids: np.ndarray,
    normals: np.ndarray,
    free: np.ndarray,
    normal: np.ndarray,
    offset: float,
    distance_max: float,
    cos_min: float,
) -> np.ndarray:
    close = np.abs(centroids @ normal - offset) <= distance_max
    return free & close & (normals @ normal >= cos_min)


def _best_hypothesis(
    draws: np.ndarray,
    centroids: np.ndarray,
    normals: np.ndarray,
    areas: np.ndarray,
    free: np.ndarray,
    distance_max: float,
    cos_min: float,
) -> int | None:
    """The drawn face whose plane (its centroid and smoothed normal) covers the most free area."""
    free_ids = np.flatnonzero(free)
    points, point_normals, point_areas = centroids[free_ids], normals[free_ids], areas[free_ids]
    best, best_area = None, 0.0
    for chunk in np.array_split(draws, max(1, len(draws) // 16)):
        n = normals[chunk]  # (c, 3)
        d = np.einsum("cd,cd->c", n, centroids[chunk])
        close = np.abs(points @ n.T - d) <= distance_max  # (f, c)
        facing = point_normals @ n.T >= cos_min
        covered = (close & facing).T.astype(np.float64) @ point_areas  # (c,)
        k = int(np.argmax(covered))
        if covered[k] > best_area:
            best, best_area = int(chunk[k]), float(covered[k])
    return best


def _largest_region(inliers: np.ndarray, adjacency: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """(k,) faces of the inliers' largest connected region, by area."""
    ids, label = _regions(inliers, adjacency)
    if len(ids) == 0:
        return ids
    return ids[label == np.argmax(np.bincount(label, weights=areas[ids]))]


def _connected_to(region: np.ndarray, band: np.ndarray, adjacency: np.ndarray) -> np.ndarray:
    """(k,) faces of the band (and the region) connected to the region's faces."""
    mask = band.copy()
    mask[region] = True
    ids, label = _regions(mask, adjacency)
    local = np.full(len(mask), -1)
    local[ids] = np.arange(len(ids))
    return ids[np.isin(label, label[local[region]])]


def _regions(mask: np.ndarray, adjacency: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The masked faces and the label of the connected region each belongs to."""
    ids = np.flatnonzero(mask)
    both = mask[adjacency[:, 0]] & mask[adjacency[:, 1]]
    local = np.full(len(mask), -1)
    local[ids] = np.arange(len(ids))
    pairs = local[adjacency[both]]
    graph = scipy.sparse.coo_matrix(
        (np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(ids), len(ids))
    )
    return ids, scipy.sparse.csgraph.connected_components(graph, directed=False)[1]


def _sagitta(points: np.ndarray, weights: np.ndarray, normal: np.ndarray) -> float:
    """How far (peak to peak, in the mesh's units) the quadric height field that fits the
    points best bows away from the plane that fits them best: ~0 for a flat face, however
    rough (thousands of points average the roughness out); a cylinder's strip bows by as
    much as the strip is thick."""
    u = np.cross(normal, [1.0, 0.0, 0.0] if abs(normal[0]) < 0.9 else [0.0, 1.0, 0.0])
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    center = np.average(points, axis=0, weights=weights)
    x, y = (points - center) @ u, (points - center) @ v
    height = (points - center) @ normal
    scale = max(float(np.sqrt(np.average(x**2 + y**2, weights=weights))), 1e-30)
    x, y = x / scale, y / scale
    design = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=1)
    sqrt_w = np.sqrt(weights / weights.sum())[:, None]
    linear = np.linalg.lstsq(design[:, :3] * sqrt_w, height * sqrt_w[:, 0], rcond=None)[0]
    quadric = np.linalg.lstsq(design * sqrt_w, height * sqrt_w[:, 0], rcond=None)[0]
    bow = design @ quadric - design[:, :3] @ linear
    return float(np.ptp(bow))
