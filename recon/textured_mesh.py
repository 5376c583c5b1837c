"""Textured triangle meshes flattened into drawable primitives, loaded from GLB, glTF or OBJ."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import trimesh

from recon.compress import decompress_glb, is_draco_glb
from recon.errors import InputError


@dataclass(frozen=True, kw_only=True)
class Primitive:
    """One drawable part: triangles with a single base-colour material."""

    vertices: np.ndarray  # (n, 3) float64 positions
    faces: np.ndarray  # (m, 3) int64 vertex indices
    normals: np.ndarray  # (n, 3) float64 unit vertex normals
    uv: np.ndarray | None = None  # (n, 2) texture coordinates, origin at the image's bottom-left
    texture: np.ndarray | None = None  # (h, w, 3) uint8 sRGB base colour; row 0 is the image top
    vertex_colors: np.ndarray | None = None  # (n, 3) float sRGB in [0, 1]
    base_color: tuple[float, float, float] = (1.0, 1.0, 1.0)  # linear factor, as in glTF


@dataclass(frozen=True)
class TexturedMesh:
    """A whole model: its primitives, all in one world frame."""

    primitives: tuple[Primitive, ...]

    @property
    def bounds(self) -> np.ndarray:
        """(2, 3) axis-aligned min and max corners."""
        stacked = np.concatenate([p.vertices for p in self.primitives])
        return np.stack([stacked.min(axis=0), stacked.max(axis=0)])

    def transformed(self, matrix: np.ndarray) -> TexturedMesh:
        """The mesh under a 4×4 similarity transform (rotation, uniform scale, translation)."""
        linear = matrix[:3, :3]
        rotation = linear / np.cbrt(np.linalg.det(linear))
        return TexturedMesh(
            tuple(
                replace(
                    p,
                    vertices=p.vertices @ linear.T + matrix[:3, 3],
                    normals=p.normals @ rotation.T,
                )
                for p in self.primitives
            )
        )

    def to_trimesh(self) -> trimesh.Trimesh:
        """All triangles as one untextured trimesh (for geometry: sampling, distances, export)."""
        offsets = np.cumsum([0] + [len(p.vertices) for p in self.primitives[:-1]])
        return trimesh.Trimesh(
            vertices=np.concatenate([p.vertices for p in self.primitives]),
            faces=np.concatenate(
                [p.faces + o for p, o in zip(self.primitives, offsets, strict=True)]
            ),
            process=False,
        )


def load_textured_mesh(path: Path) -> TexturedMesh:
    """Load a GLB, glTF or OBJ (with its textures) into world-space primitives."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"model file {path} does not exist")
    try:
        if path.suffix.lower() == ".glb" and is_draco_glb(data := path.read_bytes()):
            # trimesh does not decode Draco geometry (model.glb made with --compress)
            scene = trimesh.load(io.BytesIO(decompress_glb(data)), file_type="glb", force="scene")
        else:
            scene = trimesh.load(path, force="scene")
    except Exception as error:  # trimesh raises many kinds for broken files
        raise InputError(f"cannot read model {path}: {error}") from error
    return from_trimesh(scene, source=str(path))


def from_trimesh(
    geometry: trimesh.Scene | trimesh.Trimesh, *, source: str = "mesh"
) -> TexturedMesh:
    """Flatten a trimesh scene or mesh (transforms applied) into primitives."""
    meshes = geometry.dump() if isinstance(geometry, trimesh.Scene) else [geometry]
    primitives = tuple(
        _primitive_from_trimesh(mesh)
        for mesh in meshes
        if isinstance(mesh, trimesh.Trimesh) and len(mesh.faces) > 0
    )
    if not primitives:
        raise InputError(f"{source} contains no triangles")
    return TexturedMesh(primitives)


def _primitive_from_trimesh(mesh: trimesh.Trimesh) -> Primitive:
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    normals = np.asarray(mesh.vertex_normals, dtype=np.float64)
    visual = mesh.visual
    if isinstance(visual, trimesh.visual.TextureVisuals):
        material = visual.material
        if not isinstance(material, trimesh.visual.material.PBRMaterial):
            material = material.to_pbr()
        factor = _linear_rgb(material.baseColorFactor)
        image = material.baseColorTexture
        uv = None if visual.uv is None else np.asarray(visual.uv, dtype=np.float64)
        if image is not None and uv is not None and len(uv) == len(vertices):
            texture = np.asarray(image.convert("RGB"), dtype=np.uint8)
            return Primitive(
                vertices=vertices,
                faces=faces,
                normals=normals,
                uv=uv,
                texture=texture,
                base_color=factor,
            )
        return Primitive(vertices=vertices, faces=faces, normals=normals, base_color=factor)
    colors = getattr(visual, "vertex_colors", None)
    if colors is not None and len(colors) == len(vertices) and visual.kind == "vertex":
        return Primitive(
            vertices=vertices,
            faces=faces,
            normals=normals,
            vertex_colors=np.asarray(colors[:, :3], dtype=np.float64) / 255.0,
        )
    if visual.kind == "face":
        # Per-face colours: give each triangle its own vertices so the colour stays flat.
        face_colors = np.asarray(visual.face_colors[:, :3], dtype=np.float64) / 255.0
        corner_vertices = vertices[faces].reshape(-1, 3)
        corner_normals = np.repeat(np.asarray(mesh.face_normals), 3, axis=0)
        return Primitive(
            vertices=corner_vertices,
            faces=np.arange(len(corner_vertices)).reshape(-1, 3),
            normals=corner_normals,
            vertex_colors=np.repeat(face_colors, 3, axis=0),
        )
    return Primitive(vertices=vertices, faces=faces, normals=normals)


def _linear_rgb(factor: Sequence[float] | None) -> tuple[float, float, float]:
    """glTF baseColorFactor as linear RGB; trimesh stores it as uint8 RGBA, glTF as floats."""
    if factor is None:
        return (1.0, 1.0, 1.0)
    array = np.asarray(factor)
    values = array[:3].astype(np.float64)
    if np.issubdtype(array.dtype, np.integer):
        values = values / 255.0
    return (float(values[0]), float(values[1]), float(values[2]))
