"""Pure geometry helpers: similarity alignment, rotation angles, surface sampling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse
import trimesh


@dataclass(frozen=True)
class Similarity:
    """``x_dst = scale * rotation @ x_src + translation``."""

    scale: float
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(n, 3) points -> (n, 3) transformed points."""
        return self.scale * points @ self.rotation.T + self.translation

    def matrix(self) -> np.ndarray:
        """The 4×4 homogeneous matrix."""
        matrix = np.eye(4)
        matrix[:3, :3] = self.scale * self.rotation
        matrix[:3, 3] = self.translation
        return matrix


def fit_plane(
    points: np.ndarray, facing: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """(4,) least-squares plane [n, d] through (k, 3) points, n·x + d = 0, n turned towards
    `facing`; `weights` (k,) weigh the points (faces by their area), equal by default."""
    if len(points) < 3:
        raise ValueError(f"a plane needs three points or more to fit, got {len(points)}")
    if weights is None:
        centroid = points.mean(axis=0)
        spread = points - centroid
    else:
        weights = weights / weights.sum()
        centroid = weights @ points
        spread = (points - centroid) * np.sqrt(weights)[:, None]
    normal = np.linalg.svd(spread, full_matrices=False)[2][2]
    if normal @ facing < 0:
        normal = -normal
    return np.append(normal, -normal @ centroid)


def face_graph(adjacency: np.ndarray, n_faces: int) -> scipy.sparse.csr_matrix:
    """(m, m) sparse 0/1 matrix linking each face to itself and to the faces in its (k, 2)
    `adjacency` pairs: one product with it sums a value over each face's ring of neighbours."""
    a = np.concatenate([adjacency[:, 0], adjacency[:, 1], np.arange(n_faces)])
    b = np.concatenate([adjacency[:, 1], adjacency[:, 0], np.arange(n_faces)])
    return scipy.sparse.csr_matrix((np.ones(len(a)), (a, b)), shape=(n_faces, n_faces))


def fit_similarity(src: np.ndarray, dst: np.ndarray) -> Similarity:
    """Least-squares similarity mapping (n, 3) `src` onto (n, 3) `dst` (Umeyama 1991); n ≥ 3."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mean_src, mean_dst = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mean_src, dst - mean_dst
    covariance = b.T @ a / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:  # a reflection is not a rotation
        sign[2, 2] = -1
    rotation = u @ sign @ vt
    variance = (a**2).sum() / len(src)
    scale = float(np.trace(np.diag(singular) @ sign) / variance) if variance > 0 else 1.0
    return Similarity(scale, rotation, mean_dst - scale * rotation @ mean_src)


def fit_similarity_robust(src: np.ndarray, dst: np.ndarray, *, rounds: int = 3) -> Similarity:
    """`fit_similarity`, refitted on the points that agree, so a few lost cameras can't skew it."""
    keep = np.ones(len(src), dtype=bool)
    similarity = fit_similarity(src, dst)
    for _ in range(rounds):
        residual = np.linalg.norm(similarity.apply(src) - dst, axis=1)
        spread = np.linalg.norm(dst - dst.mean(axis=0), axis=1).mean()
        new_keep = residual <= max(3.0 * np.median(residual), 1e-3 * spread)
        if new_keep.sum() < 3 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
        similarity = fit_similarity(src[keep], dst[keep])
    return similarity


def rotation_angle_deg(rotation: np.ndarray) -> float:
    """Angle of a 3×3 rotation matrix, in degrees."""
    cos = (np.trace(rotation) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


def relative_rotation_differences_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, n) angles by which each pair's relative rotation R_i R_jᵀ differs between two sets
    of (n, 3, 3) world-to-camera rotations of the same photos; no alignment is needed, as
    relative rotations do not depend on either set's world frame."""
    relative_a = np.einsum("iab,jcb->ijac", a, a)
    relative_b = np.einsum("iab,jcb->ijac", b, b)
    trace = np.einsum("ijab,ijab->ij", relative_a, relative_b)  # of relative_a relative_bᵀ
    return np.degrees(np.arccos(np.clip((trace - 1) / 2, -1.0, 1.0)))


def sample_surface(mesh: trimesh.Trimesh, count: int, *, seed: int = 0) -> np.ndarray:
    """(count, 3) points spread uniformly by area over the mesh surface."""
    points, _ = trimesh.sample.sample_surface(mesh, count, seed=seed)
    return np.asarray(points, dtype=np.float64)


def canonical_order(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same surface listed in an order fixed by its geometry alone: (order, faces), where
    `vertices[order]` are sorted by x, then y, then z, and `faces` (m, 3) index them, each
    face starting at its lowest index (winding kept) and the faces sorted.

    A mesh whose vertices come out in a varying order (open3d hands voxel blocks out in
    thread order) then gives the stages after it the same input, and them the same result."""
    order = np.lexsort(vertices.T[::-1])
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    renamed = rank[faces]
    first = renamed.argmin(axis=1)
    rows = np.arange(len(renamed))[:, None]
    rotated = renamed[rows, (first[:, None] + np.arange(3)) % 3]
    return order, rotated[np.lexsort(rotated.T[::-1])]
