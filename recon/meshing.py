"""Meshing: the fused surface cleaned to the product alone and simplified to the face budget."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import fast_simplification
import numpy as np
import trimesh
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from recon import decimation
from recon.cameras import Camera
from recon.depth import DepthMap, read_depth_map
from recon.errors import StageError
from recon.progress import ProgressCallback
from recon.workspace import Workspace, atomic_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class MeshOptions:
    """How big the surface may be and what counts as the product."""

    max_faces: int = 100_000  # the preset's face budget
    max_gap_rel: float = 0.02  # keep pieces this close to the product (× its bbox diagonal)
    min_component_faces: int = 50  # ... and at least this big; the rest is stereo noise
    max_hole_perimeter_rel: float = 1.5  # fill holes whose rim is at most this long (× the
    # bbox diagonal; rims of marching cubes zigzag, ~1.5× the smooth length): stereo leaves
    # such holes on plain patches (a can's white label); filling them took the can's
    # completeness at 1 % from 0.953 to 0.979 at the same accuracy. Unseen bottoms stay open.
    max_hole_bend: float = 0.2  # ... and whose rim is roughly flat: at most this far from its
    # plane, × its radius (0.03-0.16 on the can's label; a mug's rim-to-inside gap is 0.29,
    # and a fan across it put 2 % of the mug's surface where no surface is)
    # A flat hole up to this long is filled too when photos look into it from outside: a face
    # the photos saw, where stereo found nothing. The unseen base, which no photo faces, stays
    # open. (The sample cereal box at preview: stereo left 10 % of its top open, and the rim
    # measured 1.3-1.6 × the diagonal from run to run, so 1.5 alone filled it in one run of
    # six; open, the photos' front print showed through onto its top: 21.3 dB against 24.9.)
    max_seen_hole_perimeter_rel: float = 3.0
    # A small hole is filled however its rim bends, up to `small_hole_max_bend`: the zigzag of
    # a marching-cubes rim a few voxels round bends 0.2-0.4 on a curved side, and where the
    # fused surface is not closed from the hull (preview's, until it was) such holes stayed open
    # and showed the backdrop through the model (a shoe's side). Preview, open, six 24 × 960 px
    # captures: novel-view PSNR +0.0 to +0.14 dB, F@1 % within 0.0002; the shoe's holes 14 -> 7.
    small_hole_perimeter_rel: float = 0.15
    small_hole_max_bend: float = 0.5
    min_hole_views: int = 2  # ... by at least this many photos
    hole_view_cos: float = 0.15  # ... each facing the hole's outside at most acos(this) off
    # ... unless their depths see through it: beyond this share of their depths within the
    # hole lie farther than `hole_depth_rel` behind it. A mug's opening, whose inside stereo
    # missed at preview, is seen through (60-74 % of each upper photo's depths, the cup's
    # floor); the cereal box's top is not (0-5 %, the depths lie on the fan).
    max_hole_see_through: float = 0.2
    hole_depth_rel: float = 0.02
    # Fusion leaves out depths just above the table (0.4 % of the product box's diagonal), so
    # the surface stops short of the ground the product stands on: the band this far above the
    # ground (× the box's diagonal) is stretched down to meet it. 0: leave the surface as fused.
    ground_band_rel: float = 0.008


# A sparse point counts for the closed piece it lies within this × the mesh's diagonal of.
PIECE_POINT_REACH_REL = 0.01


@dataclass(frozen=True)
class MeshResult:
    vertices: int
    faces: int
    watertight: bool
    seconds: float


def run(
    workspace: Workspace,
    options: MeshOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> MeshResult:
    """Clean and simplify the fused surface of `workspace` and save it as the product mesh."""
    options = options or MeshOptions()
    start = time.perf_counter()
    mesh = trimesh.load(workspace.fused_mesh_path, process=False)
    if progress:
        progress("mesh", 0.1, "components")
    if mesh.is_watertight:
        # Fusion closed every piece from the hull (recon.fusion.close_with_hull): gaps are
        # bridged already, so a piece apart from the product is a bubble of stereo noise. A
        # closed surface has no holes, duplicate faces or unshared vertices to repair.
        points = (
            workspace.read_sfm_points()["xyz"]
            if workspace.sfm_points_path.exists()
            else np.empty((0, 3))
        )
        mesh = product_piece(mesh, points)
    else:
        mesh = keep_product_components(mesh, options.max_gap_rel, options.min_component_faces)
        if progress:
            progress("mesh", 0.3, "repair")
        # Before simplifying: filling adds faces.
        mesh = repair(
            mesh, options, lambda: read_depth_maps(workspace, workspace.read_sfm_cameras())
        )
    if len(mesh.faces) == 0:
        raise StageError("mesh", "nothing of the product survived cleaning the fused surface")
    # Before simplifying: the fused base is flat at fusion's cut, while a simplified one can
    # have vertices under it, and the stretch takes the lowest for the base (the turntable
    # cereal box's base then stopped 0.7 mm short of the ground; stretched first: 0.03 mm).
    if options.ground_band_rel > 0 and workspace.region_path.exists():
        region = json.loads(workspace.region_path.read_text())
        if region.get("ground") is not None:
            diagonal = float(np.linalg.norm(np.ptp(np.asarray(region["box_corners"]), axis=0)))
            mesh.vertices = rest_on_ground(
                mesh.vertices, np.asarray(region["ground"]), options.ground_band_rel * diagonal
            )
    if len(mesh.faces) > options.max_faces:
        if progress:
            progress("mesh", 0.6, "simplify")
        mesh = simplify(mesh, options.max_faces)
    with atomic_path(workspace.mesh_path) as tmp:
        mesh.export(tmp)
    if progress:
        progress("mesh", 1.0, f"{len(mesh.faces)} faces")
    return MeshResult(
        len(mesh.vertices), len(mesh.faces), bool(mesh.is_watertight), time.perf_counter() - start
    )


def keep_product_components(
    mesh: trimesh.Trimesh, max_gap_rel: float, min_faces: int
) -> trimesh.Trimesh:
    """The connected pieces that make the product: the largest, and every piece of at least
    `min_faces` faces that lies within `max_gap_rel` × the largest's diagonal of what is kept.

    Where stereo finds no texture (a can's white label, the rim of its lid) the fused surface
    breaks into pieces that sit next to each other across narrow gaps; noise floats apart. A
    rule by size alone dropped a soup can's whole lid.
    """
    labels = trimesh.graph.connected_component_labels(mesh.face_adjacency, len(mesh.faces))
    counts = np.bincount(labels)
    if len(counts) <= 1:
        return mesh
    # One sort groups the faces of every piece (stereo noise leaves thousands of pieces).
    order = np.argsort(labels, kind="stable")
    faces_of = np.split(order, np.cumsum(counts)[:-1])
    largest = int(np.argmax(counts))
    candidates = [
        label for label in range(len(counts)) if label != largest and counts[label] >= min_faces
    ]
    vertices_of = {
        label: np.unique(mesh.faces[faces_of[label]]) for label in [largest, *candidates]
    }
    points = mesh.vertices[vertices_of[largest]]
    gap = max_gap_rel * float(np.linalg.norm(np.ptp(points, axis=0)))
    kept = {largest}
    tree = cKDTree(points)
    grown = True
    while grown:  # a piece next to a kept piece is kept too (a lid beside its rim)
        grown = False
        for label in candidates:
            if label in kept:
                continue
            distances, _ = tree.query(
                mesh.vertices[vertices_of[label]], k=1, distance_upper_bound=gap
            )
            if np.isfinite(distances).any():
                kept.add(label)
                grown = True
        if grown:
            tree = cKDTree(mesh.vertices[np.concatenate([vertices_of[label] for label in kept])])
    return mesh.submesh([np.concatenate([faces_of[label] for label in sorted(kept)])], append=True)


def product_piece(
    mesh: trimesh.Trimesh, points: np.ndarray, reach_rel: float = PIECE_POINT_REACH_REL
) -> trimesh.Trimesh:
    """The connected piece of `mesh` that holds the most of the sparse `points` (n, 3) within
    `reach_rel` × the mesh's diagonal; the one with the most faces where no piece holds any
    (pieces joined by a vertex count as one: the vertex graph's components cost a tenth of
    trimesh's face adjacency and submesh on a fused million faces).

    The most faces alone kept a slab of the Middlebury temple's black ground at preview (60k
    faces and 2 sparse points, the temple 40k faces and 1,410): the product is where SfM found
    its features. On the benchmark's 24 captures both rules keep the same piece."""
    faces = np.asarray(mesh.faces)
    count = len(mesh.vertices)
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]]])
    graph = coo_matrix(
        (np.ones(len(edges), dtype=bool), (edges[:, 0], edges[:, 1])), (count, count)
    )
    pieces, labels = connected_components(graph, directed=False)
    if pieces <= 1:
        return mesh
    face_labels = labels[faces[:, 0]]
    chosen = int(np.argmax(np.bincount(face_labels, minlength=pieces)))
    if len(points):
        reach = reach_rel * float(np.linalg.norm(np.ptp(mesh.vertices, axis=0)))
        distances, nearest = cKDTree(mesh.vertices).query(points, distance_upper_bound=reach)
        held = np.bincount(labels[nearest[np.isfinite(distances)]], minlength=pieces)
        if held.max() > held[chosen]:
            chosen = int(np.argmax(held))
    keep = face_labels == chosen
    used = np.zeros(count, dtype=bool)
    used[faces[keep].ravel()] = True
    renumber = np.cumsum(used) - 1
    return trimesh.Trimesh(mesh.vertices[used], renumber[faces[keep]], process=False)


def rest_on_ground(vertices: np.ndarray, ground: np.ndarray, band: float) -> np.ndarray:
    """(n, 3) `vertices` with their bottom stretched down onto the `ground` plane [n, d]
    (n·x + d = 0, n up), when the lowest lies within `band` of it: heights from the lowest up
    to `band` are mapped linearly onto 0 .. `band`, so the surface keeps its order and no face
    collapses; everything higher stays put."""
    height = vertices @ ground[:3] + ground[3]
    lowest = float(height.min())
    if not -band < lowest < band:
        return vertices  # floating above the ground or sunk into it: not a fusion gap
    stretched = np.where(height < band, band * (height - lowest) / (band - lowest), height)
    return vertices + np.outer(stretched - height, ground[:3])


def simplify(mesh: trimesh.Trimesh, max_faces: int) -> trimesh.Trimesh:
    """Quadric-error decimation to at most `max_faces` faces; a closed mesh stays closed."""
    if mesh.is_watertight:
        # fast_simplification collapses edges whose ends share more than two neighbours,
        # which pinches a closed surface into non-manifold edges (2,400 of them on a white
        # mug's 30k faces); recon.decimation checks that (open3d's decimation does too, at
        # 4-5x the time).
        vertices, faces = decimation.decimate(mesh.vertices, mesh.faces, max_faces)
        simplified = trimesh.Trimesh(vertices, faces, process=False)
        drop_collapsed_faces(simplified)
        if len(simplified.faces) <= max_faces and simplified.is_watertight:
            return simplified
        logger.warning(
            "simplifying kept the surface closed only at %d faces: decimated without the check",
            len(simplified.faces),
        )
    vertices = np.asarray(mesh.vertices, dtype=np.float32)
    faces = np.asarray(mesh.faces, dtype=np.int32)
    target = max_faces
    while len(faces) > max_faces:  # the decimator can stop a little above its target
        before = len(faces)
        vertices, faces = fast_simplification.simplify(
            vertices, faces, target_reduction=1.0 - target / len(faces)
        )
        if len(faces) > max_faces and len(faces) >= before - max(1, before // 100):
            # Stalled on knots it will not collapse (a sunk white mug's inner wall: 110,790
            # faces for ever, 10 s a call); open3d's decimation takes any edge.
            vertices, faces = _open3d_decimate(vertices, faces, max_faces)
            break
        target = int(target * 0.98)
    simplified = trimesh.Trimesh(vertices.astype(np.float64), faces, process=True)
    drop_collapsed_faces(simplified)
    return simplified


def _open3d_decimate(
    vertices: np.ndarray, faces: np.ndarray, max_faces: int
) -> tuple[np.ndarray, np.ndarray]:
    import open3d as o3d  # the mesh stage needs it only here

    mesh = o3d.geometry.TriangleMesh(
        o3d.utility.Vector3dVector(vertices.astype(np.float64)),
        o3d.utility.Vector3iVector(faces.astype(np.int32)),
    ).simplify_quadric_decimation(max_faces)
    return np.asarray(mesh.vertices, np.float32), np.asarray(mesh.triangles, np.int32)


def drop_collapsed_faces(mesh: trimesh.Trimesh) -> None:
    """Weld vertices that are one once stored as float32 (as PLY and glTF store them), then
    drop faces that name a vertex twice and the vertices no face uses. Thin faces stay:
    dropping those (trimesh's nondegenerate_faces) would open a closed surface.

    (Decimation can leave two vertices a hair apart: stored, the Middlebury dino's closed
    surface had two faces with a corner twice, which the GLB's welded seams showed as an
    open piece.)"""
    stored = np.asarray(mesh.vertices, dtype=np.float32)
    _, first, same = np.unique(stored, axis=0, return_index=True, return_inverse=True)
    if len(first) < len(stored):
        mesh.faces = first[same.reshape(-1)][mesh.faces]
    faces = mesh.faces
    keep = (
        (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    )
    if not keep.all():
        mesh.update_faces(keep)
    mesh.remove_unreferenced_vertices()


def read_depth_maps(workspace: Workspace, cameras: Sequence[Camera]) -> list[DepthMap]:
    """The depth stage's maps of the `cameras` that have one."""
    paths = [(workspace.depth_path(camera.name), camera.name) for camera in cameras]
    return [read_depth_map(path, name) for path, name in paths if path.exists()]


def repair(
    mesh: trimesh.Trimesh,
    options: MeshOptions,
    depth_maps: Callable[[], Sequence[DepthMap]] = list,
) -> trimesh.Trimesh:
    """Merge duplicate vertices, drop degenerate faces, fill small holes and those the photos
    look into (`depth_maps`: called for the photos' maps when a hole needs them).

    Winding needs no repair: marching cubes orients every face outwards and decimation keeps it.
    """
    mesh.merge_vertices()
    drop_collapsed_faces(mesh)
    mesh.update_faces(mesh.unique_faces())
    mesh.remove_unreferenced_vertices()
    fill_holes(mesh, options, depth_maps)
    return mesh


def fill_holes(
    mesh: trimesh.Trimesh, options: MeshOptions, depth_maps: Callable[[], Sequence[DepthMap]]
) -> None:
    """Close each roughly flat boundary loop (no farther than `max_hole_bend` × its radius from
    its best-fit plane) with a fan round its centroid: when it is at most
    `max_hole_perimeter_rel` × the mesh's diagonal long, or `max_seen_hole_perimeter_rel` and
    the photos look into it (`seen_into`)."""
    boundary = trimesh.grouping.group_rows(mesh.edges_sorted, require_count=1)
    if len(boundary) == 0:
        return
    diagonal = float(np.linalg.norm(mesh.extents))
    longest = max(options.max_hole_perimeter_rel, options.max_seen_hole_perimeter_rel) * diagonal
    edges = mesh.edges[boundary]
    loops = trimesh.graph.connected_components(edges, min_len=3, engine="scipy")
    new_vertices = [mesh.vertices]
    new_faces = [mesh.faces]
    count = len(mesh.vertices)
    maps: Sequence[DepthMap] | None = None
    for loop in loops:
        loop_edges = edges[np.isin(edges[:, 0], loop)]
        perimeter = np.linalg.norm(
            mesh.vertices[loop_edges[:, 0]] - mesh.vertices[loop_edges[:, 1]], axis=1
        ).sum()
        if perimeter > longest:
            continue
        offsets = mesh.vertices[loop] - mesh.vertices[loop].mean(axis=0)
        normal = np.linalg.svd(offsets, full_matrices=False)[2][2]
        radius = np.linalg.norm(offsets, axis=1).max()
        small = perimeter <= options.small_hole_perimeter_rel * diagonal
        bend = options.small_hole_max_bend if small else options.max_hole_bend
        if np.abs(offsets @ normal).max() > bend * radius:
            continue  # a fan across a bent rim (a mug's rim to its inside) would be made up
        centroid = mesh.vertices[loop].mean(axis=0)
        # Boundary edges run along the hole in the direction of their own face; the fan keeps
        # that orientation reversed so the patch's normals agree with its neighbours.
        fan = np.column_stack([loop_edges[:, 1], loop_edges[:, 0], np.full(len(loop_edges), count)])
        if perimeter > options.max_hole_perimeter_rel * diagonal:
            maps = depth_maps() if maps is None else maps
            if not seen_into(mesh.vertices[fan[:, :2]], centroid, maps, options):
                continue
        new_vertices.append(centroid[None])
        new_faces.append(fan)
        count += 1
    if count > len(mesh.vertices):
        mesh.vertices = np.vstack(new_vertices)
        mesh.faces = np.vstack(new_faces)


def seen_into(
    rim: np.ndarray, centroid: np.ndarray, maps: Sequence[DepthMap], options: MeshOptions
) -> bool:
    """Whether the photos see a surface where a fan (`rim`: (k, 2, 3) the outer corners of its
    triangles round `centroid`) would close a hole: `min_hole_views` of them face its outside,
    and their depths within it do not lie behind it (a hollow's opening, not a face)."""
    spokes = rim - centroid
    outside = np.cross(spokes[:, 0], spokes[:, 1]).sum(axis=0)  # the area-weighted normal
    outside /= max(float(np.linalg.norm(outside)), 1e-12)
    # Points spread evenly over the fan, the same every run.
    weights = np.random.default_rng(0).random((2000, 2))
    beyond = weights.sum(axis=1) > 1  # folded back into the triangle
    weights[beyond] = 1 - weights[beyond]
    triangle = np.random.default_rng(1).integers(0, len(rim), len(weights))
    points = centroid + np.einsum("nk,nkd->nd", weights, spokes[triangle])
    facing, behind, depths = 0, 0, 0
    for depth_map in maps:
        camera = depth_map.camera
        towards = camera.center - centroid
        if towards @ outside < options.hole_view_cos * np.linalg.norm(towards):
            continue  # an unseen base faces no photo and stays open
        facing += 1
        uv, z = camera.project(points)
        pixel = np.round(uv).astype(int)
        inside = (pixel >= 0).all(axis=1) & (pixel[:, 0] < camera.width)
        inside &= (pixel[:, 1] < camera.height) & (z > 0)
        seen = depth_map.depth[pixel[inside, 1], pixel[inside, 0]]
        valid = seen > 0
        depths += int(valid.sum())
        behind += int((seen[valid] > z[inside][valid] * (1 + options.hole_depth_rel)).sum())
    if facing < options.min_hole_views:
        return False
    return behind <= options.max_hole_see_through * depths
