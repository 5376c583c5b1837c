"""Flat faces found in a mesh and made flat (recon/planes.py), on shapes with known answers."""

from __future__ import annotations

import numpy as np
import trimesh

from recon.evaluation import distance_to_mesh
from recon.planes import SQUASHED_AREA_SHARE, PlaneOptions, find_planes, snap_to_planes

FOOTPRINT_MM = 1.0  # the tests' meshes are in millimetres, one photo pixel per millimetre


def flatten(
    vertices: np.ndarray, faces: np.ndarray, options: PlaneOptions | None = None
) -> tuple[np.ndarray, dict]:
    options = options or PlaneOptions()
    planes = find_planes(vertices, faces, FOOTPRINT_MM, options)
    return snap_to_planes(vertices, faces, planes, FOOTPRINT_MM, options)


def fine_mesh(mesh: trimesh.Trimesh, edge_mm: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    vertices, faces = trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces, edge_mm)
    return np.asarray(vertices, np.float64), np.asarray(faces, np.int64)


def rounded_noisy_box(
    extents: np.ndarray, radius_mm: float, noise_mm: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A box surface with its edges and corners rounded to `radius_mm` (as fused depth leaves
    them) and every vertex moved by Gaussian noise: ((n, 3) vertices, (m, 3) faces)."""
    vertices, faces = fine_mesh(trimesh.creation.box(extents=extents))
    inner = extents / 2 - radius_mm
    core = np.clip(vertices, -inner, inner)
    away = vertices - core
    length = np.linalg.norm(away, axis=1, keepdims=True)
    vertices = core + radius_mm * away / np.maximum(length, 1e-12)
    rng = np.random.default_rng(seed)
    return vertices + rng.normal(0.0, noise_mm, vertices.shape), faces


def box_edge_points(extents: np.ndarray, per_edge: int = 50) -> np.ndarray:
    """(12 · per_edge, 3) points along the sharp box's twelve edges."""
    half = extents / 2
    points = []
    t = np.linspace(-1, 1, per_edge)[:, None]
    for axis in range(3):
        others = [a for a in range(3) if a != axis]
        for s0 in (-1, 1):
            for s1 in (-1, 1):
                p = np.zeros((per_edge, 3))
                p[:, axis] = t[:, 0] * half[axis]
                p[:, others[0]] = s0 * half[others[0]]
                p[:, others[1]] = s1 * half[others[1]]
                points.append(p)
    return np.concatenate(points)


def test_a_rounded_box_gets_its_six_faces_flat_and_its_edges_sharp():
    extents = np.array([100.0, 60.0, 30.0])
    vertices, faces = rounded_noisy_box(extents, radius_mm=2.5, noise_mm=0.1)
    flat, flat_stats = flatten(vertices, faces, PlaneOptions(edge_px=0.0))  # faces only
    assert flat_stats["planes"] == 6
    assert flat_stats["edge_vertices"] == 0
    moved, stats = flatten(vertices, faces)
    assert stats["planes"] == 6
    assert stats["edge_vertices"] > 0

    def off_faces(v: np.ndarray) -> np.ndarray:  # distance to the nearest true face plane
        return np.min(np.abs(np.abs(v) - extents / 2), axis=1)

    # The faces: noise of 0.1 mm is gone wherever a vertex was moved onto a plane.
    assert np.percentile(off_faces(vertices), 50) > 0.05
    assert np.percentile(off_faces(flat), 50) < 0.02
    assert np.percentile(off_faces(moved), 50) < 0.02
    # The edges: the true sharp edges lie ~0.7 mm (r(√2-1) at most) off the rounded surface;
    # now they lie on it.
    edges = box_edge_points(extents)
    before = distance_to_mesh(trimesh.Trimesh(vertices, faces, process=False), edges)
    after = distance_to_mesh(trimesh.Trimesh(moved, faces, process=False), edges)
    assert np.median(before) > 0.6
    assert np.median(after) < 0.15
    # Faces alone leave the edges rounded (a little sharper: the faces reach further).
    assert np.median(distance_to_mesh(trimesh.Trimesh(flat, faces, process=False), edges)) > 0.3

    # No face is turned over, but for slivers squashed (nearly) flat onto an edge.
    def cross(v: np.ndarray) -> np.ndarray:
        c = v[faces]
        return np.cross(c[:, 1] - c[:, 0], c[:, 2] - c[:, 0])

    old, new = cross(vertices), cross(moved)
    turned = np.einsum("fd,fd->f", old, new) < 0
    squashed = np.linalg.norm(new, axis=1) <= SQUASHED_AREA_SHARE * np.linalg.norm(old, axis=1)
    assert not (turned & ~squashed).any()


def cylinder_mesh(radius: float, height: float) -> tuple[np.ndarray, np.ndarray]:
    """A closed cylinder of even ~1 mm triangles, as fusion makes them (a sphere's vertices
    pushed out from its centre onto the cylinder)."""
    sphere = trimesh.creation.icosphere(subdivisions=6)
    directions = np.asarray(sphere.vertices)
    scale = np.maximum(
        np.linalg.norm(directions[:, :2], axis=1) / radius, np.abs(directions[:, 2]) / (height / 2)
    )
    return directions / scale[:, None], np.asarray(sphere.faces, np.int64)


def test_a_cylinders_side_is_not_made_flat():
    radius, height = 30.0, 80.0
    vertices, faces = cylinder_mesh(radius, height)
    rng = np.random.default_rng(1)
    vertices = vertices + rng.normal(0.0, 0.05, vertices.shape)
    planes = find_planes(vertices, faces, FOOTPRINT_MM, PlaneOptions())
    # Its two lids are flat; strips of its side, flat to within a pixel, are not planes.
    assert len(planes) == 2
    assert all(abs(abs(plane.normal[2]) - 1) < 1e-3 for plane in planes)
    moved, _ = flatten(vertices, faces)
    side = np.abs(vertices[:, 2]) < height / 2 - 5
    radial = np.linalg.norm(moved[side, :2], axis=1)
    assert np.abs(radial - radius).max() < 0.3
    np.testing.assert_array_equal(moved[side], vertices[side])


def test_a_sphere_has_no_planes_and_stays():
    vertices, faces = fine_mesh(trimesh.creation.icosphere(subdivisions=3, radius=40.0))
    moved, stats = flatten(vertices, faces)
    assert stats["planes"] == 0
    np.testing.assert_array_equal(moved, vertices)


def test_scattered_faces_that_meet_no_others_give_no_plane():
    # Triangles at random turns, none touching, each under min_area_share: each RANSAC draw
    # meets itself alone (a rough fragment of a preview mesh did, and the refit asked an SVD
    # of one point for a plane).
    rng = np.random.default_rng(0)
    corners = rng.uniform(-50.0, 50.0, (200, 1, 3)) + rng.normal(0.0, 3.0, (200, 3, 3))
    vertices, faces = corners.reshape(-1, 3), np.arange(600).reshape(200, 3)
    moved, stats = flatten(vertices, faces)
    assert stats["planes"] == 0
    np.testing.assert_array_equal(moved, vertices)


def test_the_same_mesh_gives_the_same_planes():
    vertices, faces = rounded_noisy_box(np.array([80.0, 50.0, 40.0]), 2.0, 0.1, seed=3)
    first, _ = flatten(vertices, faces)
    second, _ = flatten(vertices, faces)
    np.testing.assert_array_equal(first, second)
