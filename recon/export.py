"""Textured meshes as glTF 2.0 binaries (GLB) that pass the Khronos glTF-Validator."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pygltflib

from recon.workspace import atomic_path

logger = logging.getLogger(__name__)

# glTF enums (the spec's numbers; pygltflib names only some of them).
_FLOAT, _UNSIGNED_SHORT, _UNSIGNED_INT = 5126, 5123, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_LINEAR, _LINEAR_MIPMAP_LINEAR, _REPEAT = 9729, 9987, 10497
_TRIANGLES = 4


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    """How the GLB is written."""

    jpeg_quality: int = 90  # base-colour JPEG quality (1–95); 90 keeps a 2048² map near 1–2 MB
    # The JPEG's colour at full size (4:4:4); False halves it (4:2:0, JPEG's default), which a
    # size budget does first (assets.fit_budget). Halved, it blurred the fine colour print of
    # the project's printed mug (novel-view PSNR 27.00 -> 27.19 dB at full size, the GLB 3.55
    # -> 3.85 MB) and let charts' colours bleed into their neighbours; the 15 standard
    # benchmark captures' GLBs grow 2-7 % (with sfm's full-colour photos: PSNR +0.11 dB mean).
    full_colour: bool = True
    roughness: float = 0.85  # PBR roughness factor: photographed products look matte
    metallic: float = 0.0  # PBR metallic factor: photos cannot tell metal apart, so none
    double_sided: bool = False  # draw back faces too (for open, thin-walled meshes)
    generator: str = "recon"  # asset.generator
    name: str = "product"  # name of the node, mesh and material


def glb_bytes(
    vertices: np.ndarray,
    faces: np.ndarray,
    uv: np.ndarray,
    texture: np.ndarray,
    *,
    normals: np.ndarray | None = None,
    options: ExportOptions | None = None,
) -> bytes:
    """A GLB holding one textured triangle mesh.

    vertices: (n, 3) float positions; faces: (m, 3) int vertex indices; uv: (n, 2) float texture
    coordinates with the origin at the image's bottom-left (as trimesh and xatlas give them;
    glTF stores 1 - v); texture: (S, S, 3) uint8 RGB base colour, row 0 at the top, S a power of
    two; normals: (n, 3) float, computed from the faces when None (vertices at the same position
    share one normal, so UV seams do not show as shading creases).

    Raises ValueError when the arrays are malformed.
    """
    options = options or ExportOptions()
    vertices, faces, uv, texture = _checked(vertices, faces, uv, texture, options)
    if normals is None:
        normals = vertex_normals(vertices, faces)
    normals = _unit_normals(normals, len(vertices))

    positions = vertices.astype(np.float32)
    # glTF puts the texture's first row at v = 0, the flip of the bottom-left convention.
    texcoords = np.column_stack([uv[:, 0], 1.0 - uv[:, 1]]).astype(np.float32)
    # 65535 is the primitive-restart value for uint16 indices: the validator rejects it.
    small = len(vertices) < 65535
    indices = faces.astype(np.uint16 if small else np.uint32).reshape(-1)
    image = jpeg_bytes(texture, options.jpeg_quality, options.full_colour)

    blob = bytearray()
    views: list[pygltflib.BufferView] = []

    def add_view(data: bytes, target: int | None) -> int:
        # Every view starts on a 4-byte boundary: float and uint32 accessors require it.
        blob.extend(b"\0" * (-len(blob) % 4))
        views.append(
            pygltflib.BufferView(
                buffer=0, byteOffset=len(blob), byteLength=len(data), target=target
            )
        )
        blob.extend(data)
        return len(views) - 1

    accessors = [
        pygltflib.Accessor(
            bufferView=add_view(positions.tobytes(), _ARRAY_BUFFER),
            componentType=_FLOAT,
            count=len(positions),
            type=pygltflib.VEC3,
            min=positions.min(axis=0).tolist(),
            max=positions.max(axis=0).tolist(),
        ),
        pygltflib.Accessor(
            bufferView=add_view(normals.astype(np.float32).tobytes(), _ARRAY_BUFFER),
            componentType=_FLOAT,
            count=len(normals),
            type=pygltflib.VEC3,
        ),
        pygltflib.Accessor(
            bufferView=add_view(texcoords.tobytes(), _ARRAY_BUFFER),
            componentType=_FLOAT,
            count=len(texcoords),
            type=pygltflib.VEC2,
        ),
        pygltflib.Accessor(
            bufferView=add_view(indices.tobytes(), _ELEMENT_ARRAY_BUFFER),
            componentType=_UNSIGNED_SHORT if small else _UNSIGNED_INT,
            count=len(indices),
            type=pygltflib.SCALAR,
        ),
    ]
    image_view = add_view(image, None)
    blob.extend(b"\0" * (-len(blob) % 4))  # the BIN chunk's length must be a multiple of 4

    gltf = pygltflib.GLTF2(
        asset=pygltflib.Asset(version="2.0", generator=options.generator),
        scene=0,
        scenes=[pygltflib.Scene(nodes=[0])],
        nodes=[pygltflib.Node(mesh=0, name=options.name)],
        meshes=[
            pygltflib.Mesh(
                name=options.name,
                primitives=[
                    pygltflib.Primitive(
                        attributes=pygltflib.Attributes(POSITION=0, NORMAL=1, TEXCOORD_0=2),
                        indices=3,
                        material=0,
                        mode=_TRIANGLES,
                    )
                ],
            )
        ],
        materials=[
            pygltflib.Material(
                name=options.name,
                pbrMetallicRoughness=pygltflib.PbrMetallicRoughness(
                    baseColorTexture=pygltflib.TextureInfo(index=0, texCoord=0),
                    metallicFactor=float(options.metallic),
                    roughnessFactor=float(options.roughness),
                ),
                doubleSided=bool(options.double_sided),
            )
        ],
        textures=[pygltflib.Texture(sampler=0, source=0)],
        samplers=[
            pygltflib.Sampler(
                magFilter=_LINEAR, minFilter=_LINEAR_MIPMAP_LINEAR, wrapS=_REPEAT, wrapT=_REPEAT
            )
        ],
        images=[pygltflib.Image(bufferView=image_view, mimeType="image/jpeg")],
        accessors=accessors,
        bufferViews=views,
        buffers=[pygltflib.Buffer(byteLength=len(blob))],
    )
    gltf.set_binary_blob(bytes(blob))
    return b"".join(gltf.save_to_bytes())


def write_glb(
    path: Path,
    vertices: np.ndarray,
    faces: np.ndarray,
    uv: np.ndarray,
    texture: np.ndarray,
    *,
    normals: np.ndarray | None = None,
    options: ExportOptions | None = None,
) -> None:
    """Write `glb_bytes(...)` to `path`: a crash leaves the old file or the new one, never half."""
    data = glb_bytes(vertices, faces, uv, texture, normals=normals, options=options)
    with atomic_path(Path(path)) as tmp:
        tmp.write_bytes(data)
        # The temporary file is private (mkstemp); the model is served and shared.
        os.chmod(tmp, 0o644)
    logger.info("wrote %s (%.2f MB, %d triangles)", path, len(data) / 1e6, len(faces))


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(n, 3) unit normals: area-weighted face normals summed over vertices at the same position.

    Vertices that share a position (split at UV seams) get the same normal, so the seams stay
    invisible under lighting. A vertex touching only degenerate faces gets +Y.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    corners = vertices[faces]
    # The cross product's length is twice the area: summing it weights faces by area.
    face_normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    _, position_ids = np.unique(vertices, axis=0, return_inverse=True)
    position_ids = position_ids.reshape(-1)
    sums = np.zeros((position_ids.max() + 1, 3))
    for k in range(3):
        np.add.at(sums, position_ids[faces[:, k]], face_normals)
    return _unit_normals(sums[position_ids], len(vertices))


def _unit_normals(normals: np.ndarray, count: int) -> np.ndarray:
    normals = np.asarray(normals, dtype=np.float64)
    if normals.shape != (count, 3) or not np.isfinite(normals).all():
        raise ValueError(f"normals must be a finite ({count}, 3) array, got shape {normals.shape}")
    length = np.linalg.norm(normals, axis=1)
    # The validator requires unit normals everywhere; a degenerate spot gets an arbitrary one.
    good = length > 1e-12
    unit = np.tile([0.0, 1.0, 0.0], (count, 1))
    unit[good] = normals[good] / length[good, None]
    return unit


def _checked(
    vertices: np.ndarray,
    faces: np.ndarray,
    uv: np.ndarray,
    texture: np.ndarray,
    options: ExportOptions,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces)
    uv = np.asarray(uv, dtype=np.float64)
    texture = np.asarray(texture)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or len(vertices) == 0:
        raise ValueError(f"vertices must be a non-empty (n, 3) array, got shape {vertices.shape}")
    if not np.isfinite(vertices).all():
        raise ValueError("vertices contain NaN or infinite coordinates")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise ValueError(f"faces must be a non-empty (m, 3) array, got shape {faces.shape}")
    if not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"faces must hold integer vertex indices, got {faces.dtype}")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError(f"faces index vertices outside 0..{len(vertices) - 1}")
    if uv.shape != (len(vertices), 2) or not np.isfinite(uv).all():
        raise ValueError(f"uv must be a finite ({len(vertices)}, 2) array, got shape {uv.shape}")
    if texture.ndim != 3 or texture.shape[2] != 3 or texture.dtype != np.uint8:
        raise ValueError(
            f"texture must be an (S, S, 3) uint8 RGB image, got {texture.dtype} {texture.shape}"
        )
    size = texture.shape[0]
    if texture.shape[1] != size or size & (size - 1) != 0:
        raise ValueError(
            f"texture is {texture.shape[1]}×{texture.shape[0]}: shop platforms require a square "
            "power-of-two texture (e.g. 1024², 2048²)"
        )
    if not 1 <= options.jpeg_quality <= 95:
        raise ValueError(f"jpeg_quality {options.jpeg_quality} is outside 1–95")
    if not (0.0 <= options.roughness <= 1.0 and 0.0 <= options.metallic <= 1.0):
        raise ValueError("roughness and metallic factors must lie in [0, 1]")
    return vertices, faces.astype(np.int64), uv, texture


def jpeg_bytes(texture: np.ndarray, quality: int, full_colour: bool = True) -> bytes:
    """A JPEG of the (h, w, 3) uint8 RGB `texture`, Huffman-optimised, its colour at full size
    (4:4:4) or halved (4:2:0). (OpenCV's encoder: Pillow's, optimising, guesses its buffer at a
    byte a pixel and fails on a busier texture at full colour.)"""
    sampling = (
        cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444
        if full_colour
        else cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420
    )
    parameters = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_OPTIMIZE, 1,
                  cv2.IMWRITE_JPEG_SAMPLING_FACTOR, sampling]  # fmt: skip
    bgr = cv2.cvtColor(np.ascontiguousarray(texture, dtype=np.uint8), cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".jpg", bgr, parameters)
    if not ok:
        raise ValueError(f"could not encode a {texture.shape[1]}×{texture.shape[0]} JPEG")
    return encoded.tobytes()
