"""Tests for the procedural textured products used to render synthetic captures."""

from __future__ import annotations

import functools
import io
import math

import cv2
import numpy as np
import pytest
import trimesh
from PIL import Image

from recon.procedural import PRODUCT_NAMES, make_product

# Nominal bounding-box extents (x, y, z) in metres; the mug's x includes its handle.
EXPECTED_EXTENTS = {
    "cereal_box": (0.19, 0.28, 0.07),
    "twin_box": (0.19, 0.28, 0.07),
    "bottle": (0.07, 0.24, 0.07),
    "mug": (0.1165, 0.10, 0.084),
    "white_mug": (0.1165, 0.10, 0.084),
}
# The white mug is deliberately plain (the low-texture case); the others carry print.
TEXTURED = tuple(name for name in PRODUCT_NAMES if name != "white_mug")
# Mean |Laplacian| of the grey texture; measured 35 / 23 / 24, thresholds leave ~40 % margin.
MIN_LAPLACIAN = {"cereal_box": 21.0, "twin_box": 21.0, "bottle": 14.0, "mug": 14.0}
# SIFT keypoints on the texture downsampled to 1024 px; measured 7.3k / 5.5k / 10.8k.
MIN_SIFT_KEYPOINTS = 3000


@functools.cache
def _product(name: str) -> trimesh.Trimesh:
    return make_product(name)


def _texture(mesh: trimesh.Trimesh) -> Image.Image:
    return mesh.visual.material.baseColorTexture


def _merged(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Geometry only, with UV-seam duplicates welded."""
    merged = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    merged.merge_vertices()
    return merged


@pytest.mark.parametrize("name", PRODUCT_NAMES)
def test_textured_trimesh(name: str) -> None:
    mesh = _product(name)
    assert isinstance(mesh, trimesh.Trimesh)
    assert isinstance(mesh.visual, trimesh.visual.TextureVisuals)
    uv = mesh.visual.uv
    assert uv.shape == (len(mesh.vertices), 2)
    assert np.all(uv >= 0.0)
    assert np.all(uv <= 1.0)
    material = mesh.visual.material
    assert isinstance(material, trimesh.visual.material.PBRMaterial)
    assert material.metallicFactor == 0.0
    assert 0.5 <= material.roughnessFactor <= 0.9
    tex = _texture(mesh)
    assert tex.mode == "RGB"
    assert tex.size == (2048, 2048)
    assert 2_000 <= len(mesh.faces) <= 40_000
    assert len(mesh.vertices) == mesh.faces.max() + 1  # no unreferenced vertices


@pytest.mark.parametrize("name", PRODUCT_NAMES)
def test_placement_and_size(name: str) -> None:
    mesh = _product(name)
    lo, hi = mesh.bounds
    assert lo[1] == pytest.approx(0.0, abs=1e-9)
    assert (lo[0] + hi[0]) / 2 == pytest.approx(0.0, abs=1e-3)
    assert (lo[2] + hi[2]) / 2 == pytest.approx(0.0, abs=1e-3)
    np.testing.assert_allclose(mesh.extents, EXPECTED_EXTENTS[name], rtol=0.05)


@pytest.mark.parametrize("name", ["cereal_box", "bottle"])
def test_closed_products_are_watertight(name: str) -> None:
    merged = _merged(_product(name))
    assert merged.is_watertight
    assert merged.is_winding_consistent
    assert merged.volume > 0


def test_box_volume() -> None:
    assert _merged(_product("cereal_box")).volume == pytest.approx(0.19 * 0.28 * 0.07, rel=0.01)


def test_bottle_volume_between_body_bounds() -> None:
    volume = _merged(_product("bottle")).volume
    r = 0.035
    assert math.pi * r**2 * 0.15 < volume < math.pi * r**2 * 0.24


def test_mug_body_and_handle_are_closed() -> None:
    parts = sorted(_merged(_product("mug")).split(only_watertight=False), key=lambda m: -m.volume)
    assert len(parts) == 2
    body, handle = parts
    for part in parts:
        assert part.is_watertight
        assert part.is_winding_consistent
        assert part.volume > 0
    # 4 mm wall and 6 mm floor: outer cylinder minus the inner cavity, rounded edges aside.
    expected = math.pi * (0.042**2 * 0.100 - 0.038**2 * 0.094)
    assert body.volume == pytest.approx(expected, rel=0.05)
    assert handle.bounds[1][0] > body.bounds[1][0] + 0.02  # sticks out on +x


def test_white_mug_is_the_mug_glazed_plain_white() -> None:
    white, mug = _product("white_mug"), _product("mug")
    np.testing.assert_array_equal(white.vertices, mug.vertices)
    np.testing.assert_array_equal(white.faces, mug.faces)
    rgb = np.asarray(_texture(white))
    assert rgb.min() >= 200  # white everywhere
    assert rgb.reshape(-1, 3).std(axis=0).max() == 0.0  # no print, speckle or grain
    small = cv2.resize(rgb, (1024, 1024), interpolation=cv2.INTER_AREA)
    assert len(cv2.SIFT_create().detect(small, None)) == 0


def test_box_faces_use_separate_atlas_regions() -> None:
    mesh = _product("cereal_box")
    normals = np.round(mesh.face_normals).astype(int)
    boxes = []
    for axis in np.unique(normals, axis=0):
        faces = mesh.faces[np.all(normals == axis, axis=1)]
        uv = mesh.visual.uv[np.unique(faces)]
        boxes.append((uv.min(axis=0), uv.max(axis=0)))
    assert len(boxes) == 6
    for i in range(6):
        for j in range(i + 1, 6):
            (lo_a, hi_a), (lo_b, hi_b) = boxes[i], boxes[j]
            overlap = np.all(np.minimum(hi_a, hi_b) > np.maximum(lo_a, lo_b))
            assert not overlap, f"box faces {i} and {j} share texture area"


@pytest.mark.parametrize("name", TEXTURED)
def test_texture_is_detailed(name: str) -> None:
    rgb = np.asarray(_texture(_product(name)))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    assert np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean() > MIN_LAPLACIAN[name]
    small = cv2.resize(rgb, (1024, 1024), interpolation=cv2.INTER_AREA)
    assert len(cv2.SIFT_create().detect(small, None)) > MIN_SIFT_KEYPOINTS


def test_box_front_has_no_flat_tiles() -> None:
    mesh = _product("cereal_box")
    front = mesh.faces[np.all(np.round(mesh.face_normals) == (0, 0, 1), axis=1)]
    uv = mesh.visual.uv[np.unique(front)]
    x0, x1 = np.round(uv[:, 0].min() * 2048), np.round(uv[:, 0].max() * 2048)
    y0, y1 = np.round((1 - uv[:, 1].max()) * 2048), np.round((1 - uv[:, 1].min()) * 2048)
    grey = np.asarray(_texture(mesh).convert("L"), dtype=np.float32)
    region = grey[int(y0) : int(y1), int(x0) : int(x1)]
    th, tw = region.shape[0] // 64, region.shape[1] // 64
    assert th >= 15
    assert tw >= 10
    tiles = region[: th * 64, : tw * 64].reshape(th, 64, tw, 64).std(axis=(1, 3))
    assert tiles.min() >= 3.0


def test_unknown_name_raises() -> None:
    with pytest.raises(ValueError, match="unknown procedural product") as excinfo:
        make_product("teapot")
    for name in PRODUCT_NAMES:
        assert name in str(excinfo.value)


@pytest.mark.parametrize("name", PRODUCT_NAMES)
def test_deterministic(name: str) -> None:
    a, b = _product(name), make_product(name)
    np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_array_equal(a.faces, b.faces)
    np.testing.assert_array_equal(a.visual.uv, b.visual.uv)
    assert _texture(a).tobytes() == _texture(b).tobytes()


def test_glb_round_trip_keeps_texture_upright() -> None:
    mesh = _product("cereal_box")
    loaded = trimesh.load(io.BytesIO(mesh.export(file_type="glb")), file_type="glb", force="mesh")
    assert len(loaded.vertices) == len(mesh.vertices)
    np.testing.assert_allclose(loaded.vertices, mesh.vertices, atol=1e-6)
    np.testing.assert_allclose(loaded.visual.uv, mesh.visual.uv, atol=1e-6)
    before = trimesh.visual.uv_to_color(mesh.visual.uv, _texture(mesh))
    after = trimesh.visual.uv_to_color(loaded.visual.uv, loaded.visual.material.baseColorTexture)
    np.testing.assert_array_equal(before, after)
    # glTF samples images with v pointing down: the file must hold 1 - v for the same texel.
    pygltflib = pytest.importorskip("pygltflib")
    gltf = pygltflib.GLTF2.load_from_bytes(mesh.export(file_type="glb"))
    accessor = gltf.accessors[gltf.meshes[0].primitives[0].attributes.TEXCOORD_0]
    view = gltf.bufferViews[accessor.bufferView]
    start = (view.byteOffset or 0) + (accessor.byteOffset or 0)
    raw = np.frombuffer(gltf.binary_blob()[start : start + accessor.count * 8], np.float32)
    raw = raw.reshape(-1, 2)
    np.testing.assert_allclose(raw[:, 1], 1 - mesh.visual.uv[:, 1], atol=1e-6)


def test_box_front_is_upright_in_atlas() -> None:
    """The front face's top-left corner maps to the atlas's top-left cell (v = 1 is the top)."""
    mesh = _product("cereal_box")
    front = np.unique(mesh.faces[np.all(np.round(mesh.face_normals) == (0, 0, 1), axis=1)])
    corner = front[np.argmin(np.linalg.norm(mesh.vertices[front] - [-0.095, 0.28, 0.035], axis=1))]
    u, v = mesh.visual.uv[corner]
    assert u < 0.02
    assert v > 0.98


def _uv_box(mesh: trimesh.Trimesh, normal: tuple[float, float, float]) -> np.ndarray:
    """(2, 2) min and max texture coordinates of the faces facing `normal`."""
    facing = mesh.face_normals @ np.asarray(normal) > 0.99
    uv = mesh.visual.uv[mesh.faces[facing]].reshape(-1, 2)
    return np.stack([uv.min(axis=0), uv.max(axis=0)])


@pytest.mark.parametrize(("name", "alike"), [("twin_box", True), ("cereal_box", False)])
def test_twin_box_prints_front_like_back_and_left_like_right(name: str, alike: bool) -> None:
    mesh = _product(name)
    for side, opposite in (((0, 0, 1), (0, 0, -1)), ((1, 0, 0), (-1, 0, 0))):
        same = np.allclose(_uv_box(mesh, side), _uv_box(mesh, opposite), atol=1e-6)
        assert same == alike
