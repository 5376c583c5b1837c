"""GLB export: round trips through trimesh and pygltflib, and the Khronos glTF-Validator."""

from __future__ import annotations

import io
import struct

import numpy as np
import pygltflib
import pytest
import trimesh
from PIL import Image, JpegImagePlugin

from recon.export import ExportOptions, glb_bytes, vertex_normals, write_glb
from tests.gltf_validator import issue_summary, validate_glb, validator_missing

# Quadrant colours of the test texture: row 0 is the image top, so v near 1.
TOP_LEFT, TOP_RIGHT = (230, 30, 30), (30, 200, 40)
BOTTOM_LEFT, BOTTOM_RIGHT = (40, 60, 220), (240, 220, 40)


def quadrant_texture(size: int = 64) -> np.ndarray:
    texture = np.zeros((size, size, 3), np.uint8)
    half = size // 2
    texture[:half, :half] = TOP_LEFT
    texture[:half, half:] = TOP_RIGHT
    texture[half:, :half] = BOTTOM_LEFT
    texture[half:, half:] = BOTTOM_RIGHT
    return texture


def textured_box() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A box with its vertices split per side (as an atlas splits them) and UVs in [0, 1]."""
    box = trimesh.creation.box(extents=(0.2, 0.1, 0.05))
    box.apply_translation([0.3, 0.05, -0.1])
    vertices = box.vertices[box.faces].reshape(-1, 3)
    faces = np.arange(len(vertices)).reshape(-1, 3)
    rng = np.random.default_rng(3)
    uv = rng.uniform(0.05, 0.95, (len(vertices), 2))
    return vertices, faces, uv


def test_round_trip_through_trimesh_keeps_geometry_uv_and_texture(tmp_path) -> None:
    vertices, faces, uv = textured_box()
    path = tmp_path / "model.glb"
    write_glb(path, vertices, faces, uv, quadrant_texture())

    mesh = trimesh.load(path, force="mesh", process=False)
    assert len(mesh.vertices) == len(vertices)
    assert len(mesh.faces) == len(faces)
    np.testing.assert_allclose(mesh.vertices, vertices, atol=1e-6)
    np.testing.assert_array_equal(mesh.faces, faces)
    # trimesh flips glTF's v back: the UVs come back as given (origin bottom-left).
    np.testing.assert_allclose(mesh.visual.uv, uv, atol=1e-6)
    image = np.asarray(mesh.visual.material.baseColorTexture.convert("RGB"))
    assert image.shape == (64, 64, 3)
    # The colour at known UVs: (u, v) = (0.25, 0.75) is the top-left quadrant, and so on.
    for (u, v), expected in [
        ((0.25, 0.75), TOP_LEFT),
        ((0.75, 0.75), TOP_RIGHT),
        ((0.25, 0.25), BOTTOM_LEFT),
        ((0.75, 0.25), BOTTOM_RIGHT),
    ]:
        row, column = int((1 - v) * 64), int(u * 64)
        np.testing.assert_allclose(image[row, column], expected, atol=12)  # JPEG


def test_gltf_structure_is_as_specified() -> None:
    vertices, faces, uv = textured_box()
    options = ExportOptions(roughness=0.7, jpeg_quality=80)
    data = glb_bytes(vertices, faces, uv, quadrant_texture(), options=options)
    gltf = pygltflib.GLTF2.load_from_bytes(data)
    assert gltf.asset.generator == "recon"
    assert len(gltf.meshes) == 1
    assert len(gltf.meshes[0].primitives) == 1
    primitive = gltf.meshes[0].primitives[0]
    assert primitive.attributes.COLOR_0 is None  # no vertex colours
    assert primitive.attributes.TANGENT is None

    position = gltf.accessors[primitive.attributes.POSITION]
    assert (position.componentType, position.type) == (pygltflib.FLOAT, pygltflib.VEC3)
    np.testing.assert_allclose(position.min, vertices.min(axis=0), atol=1e-6)
    np.testing.assert_allclose(position.max, vertices.max(axis=0), atol=1e-6)
    indices = gltf.accessors[primitive.indices]
    assert indices.componentType == pygltflib.UNSIGNED_SHORT  # few vertices: 16-bit indices
    assert indices.count == faces.size

    # The stored texture coordinates are (u, 1 - v).
    blob = gltf.binary_blob()
    texcoord = gltf.accessors[primitive.attributes.TEXCOORD_0]
    view = gltf.bufferViews[texcoord.bufferView]
    stored = np.frombuffer(blob, np.float32, texcoord.count * 2, view.byteOffset).reshape(-1, 2)
    np.testing.assert_allclose(stored[:, 0], uv[:, 0], atol=1e-6)
    np.testing.assert_allclose(stored[:, 1], 1 - uv[:, 1], atol=1e-6)
    assert all(v.byteOffset % 4 == 0 for v in gltf.bufferViews)
    assert len(gltf.bufferViews) == 5  # positions, normals, uv, indices, image: nothing unused
    assert len(blob) % 4 == 0

    material = gltf.materials[0].pbrMetallicRoughness
    assert material.metallicFactor == 0.0
    assert material.roughnessFactor == pytest.approx(0.7)
    assert material.baseColorTexture.index == 0
    sampler = gltf.samplers[gltf.textures[0].sampler]
    assert (sampler.magFilter, sampler.minFilter) == (9729, 9987)  # LINEAR, LINEAR_MIPMAP_LINEAR
    assert (sampler.wrapS, sampler.wrapT) == (10497, 10497)  # REPEAT
    image = gltf.images[0]
    assert image.mimeType == "image/jpeg"
    jpeg = gltf.bufferViews[image.bufferView]
    decoded = Image.open(io.BytesIO(blob[jpeg.byteOffset : jpeg.byteOffset + jpeg.byteLength]))
    assert (decoded.format, decoded.size) == ("JPEG", (64, 64))
    assert JpegImagePlugin.get_sampling(decoded) == 0  # colour at full size (4:4:4)
    # GLB header: magic, version 2, total length.
    magic, version, length = struct.unpack("<4sII", data[:12])
    assert (magic, version, length) == (b"glTF", 2, len(data))


def test_large_meshes_get_32_bit_indices() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=7)  # 163842 vertices
    uv = (sphere.vertices[:, :2] + 1) / 2
    gltf = pygltflib.GLTF2.load_from_bytes(
        glb_bytes(sphere.vertices, sphere.faces, uv, quadrant_texture(16))
    )
    primitive = gltf.meshes[0].primitives[0]
    assert gltf.accessors[primitive.indices].componentType == pygltflib.UNSIGNED_INT


def test_normals_are_unit_and_shared_across_split_vertices() -> None:
    vertices, faces, _ = textured_box()
    normals = vertex_normals(vertices, faces)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-12)
    # Copies of one box corner (split per side) all get the same normal.
    corner = np.all(np.isclose(vertices, vertices.max(axis=0)), axis=1)
    assert corner.sum() >= 3
    np.testing.assert_allclose(normals[corner], normals[corner][:1].repeat(corner.sum(), 0))
    assert (normals[corner][0] > 0.1).all()  # out of the box, between its three sides


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"texture": np.zeros((48, 48, 3), np.uint8)}, "power-of-two"),
        ({"texture": np.zeros((64, 32, 3), np.uint8)}, "power-of-two"),
        ({"texture": np.zeros((64, 64, 3), np.float32)}, "uint8"),
        ({"faces": np.array([[0, 1, 999]])}, "outside"),
        ({"uv": np.zeros((3, 2))}, "uv"),
        ({"vertices": np.full((36, 3), np.nan)}, "NaN"),
    ],
)
def test_bad_input_raises_value_error(change: dict, message: str) -> None:
    vertices, faces, uv = textured_box()
    arguments = {"vertices": vertices, "faces": faces, "uv": uv, "texture": quadrant_texture()}
    arguments.update(change)
    with pytest.raises(ValueError, match=message):
        glb_bytes(**arguments)


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path) -> None:
    vertices, faces, uv = textured_box()
    path = tmp_path / "model.glb"
    path.write_bytes(b"old")
    with pytest.raises(ValueError, match="power-of-two"):
        write_glb(path, vertices, faces, uv, np.zeros((3, 3, 3), np.uint8))
    assert path.read_bytes() == b"old"  # a failed export keeps the previous file
    write_glb(path, vertices, faces, uv, quadrant_texture())
    assert path.read_bytes()[:4] == b"glTF"
    assert [p.name for p in tmp_path.iterdir()] == ["model.glb"]
    assert path.stat().st_mode & 0o044 == 0o044  # readable by a web server, not only by us


def test_khronos_validator_reports_no_errors_or_warnings(tmp_path) -> None:
    if reason := validator_missing():
        pytest.skip(reason)
    vertices, faces, uv = textured_box()
    path = tmp_path / "model.glb"
    write_glb(path, vertices, faces, uv, quadrant_texture())
    report = validate_glb(path)
    issues = report["issues"]
    assert issues["numErrors"] == 0, issue_summary(report)
    assert issues["numWarnings"] == 0, issue_summary(report)
    assert report["info"]["totalTriangleCount"] == len(faces)
    assert report["info"]["generator"] == "recon"


def test_validator_catches_a_broken_file(tmp_path) -> None:
    """The validator helper itself must be able to fail (a test that cannot fail is a bug)."""
    if reason := validator_missing():
        pytest.skip(reason)
    vertices, faces, uv = textured_box()
    data = bytearray(glb_bytes(vertices, faces, uv, quadrant_texture()))
    data[8:12] = struct.pack("<I", len(data) + 100)  # a header length that lies
    path = tmp_path / "broken.glb"
    path.write_bytes(bytes(data))
    assert validate_glb(path)["issues"]["numErrors"] > 0
