"""USDZ export: a round trip through USD, the texture in the package, USD's ARKit checker."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from PIL import Image
from pxr import Sdf, Usd, UsdGeom, UsdShade

from recon.textured_mesh import Primitive, TexturedMesh
from recon.usdz import UsdzOptions, arkit_compliance, write_usdz
from tests.test_export import BOTTOM_LEFT, TOP_LEFT, TOP_RIGHT, quadrant_texture, textured_box


def textured_mesh(texture: np.ndarray | None = None) -> TexturedMesh:
    vertices, faces, uv = textured_box()
    normals = np.tile([0.0, 1.0, 0.0], (len(vertices), 1))
    return TexturedMesh(
        (
            Primitive(
                vertices=vertices,
                faces=faces,
                normals=normals,
                uv=uv,
                texture=quadrant_texture() if texture is None else texture,
            ),
        )
    )


def only_mesh(stage: Usd.Stage) -> UsdGeom.Mesh:
    meshes = [UsdGeom.Mesh(p) for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]
    assert len(meshes) == 1
    return meshes[0]


def test_round_trip_keeps_geometry_uv_scale_and_up(tmp_path) -> None:
    model = textured_mesh()
    path = tmp_path / "model.usdz"
    write_usdz(path, model)
    primitive = model.primitives[0]

    stage = Usd.Stage.Open(str(path))
    assert UsdGeom.GetStageUpAxis(stage) == UsdGeom.Tokens.y
    assert UsdGeom.GetStageMetersPerUnit(stage) == 1.0
    assert stage.GetDefaultPrim().GetName() == "product"
    mesh = only_mesh(stage)
    np.testing.assert_allclose(
        np.asarray(mesh.GetPointsAttr().Get()), primitive.vertices, atol=1e-6
    )
    assert list(mesh.GetFaceVertexCountsAttr().Get()) == [3] * len(primitive.faces)
    np.testing.assert_array_equal(
        np.asarray(mesh.GetFaceVertexIndicesAttr().Get()).reshape(-1, 3), primitive.faces
    )
    assert mesh.GetSubdivisionSchemeAttr().Get() == UsdGeom.Tokens.none
    st = UsdGeom.PrimvarsAPI(mesh).GetPrimvar("st")
    np.testing.assert_allclose(np.asarray(st.Get()), primitive.uv, atol=1e-6)
    assert not UsdGeom.PrimvarsAPI(mesh).GetPrimvar("displayColor").HasAuthoredValue()
    world = UsdGeom.Xformable(mesh).ComputeLocalToWorldTransform(Usd.TimeCode.Default())
    np.testing.assert_allclose(np.asarray(world), np.eye(4))  # no hidden transform


def test_the_same_model_gives_the_same_bytes(tmp_path) -> None:
    first, second = tmp_path / "first.usdz", tmp_path / "second.usdz"
    write_usdz(first, textured_mesh())
    write_usdz(second, textured_mesh())
    assert first.read_bytes() == second.read_bytes()
    # Not the time of writing, which would differ on a run a few seconds later.
    with zipfile.ZipFile(first) as package:
        assert {info.date_time[:2] for info in package.infolist()} == {(1980, 1)}


def test_material_reads_the_base_colour_texture_inside_the_package(tmp_path) -> None:
    path = tmp_path / "model.usdz"
    write_usdz(path, textured_mesh())

    stage = Usd.Stage.Open(str(path))
    material, _ = UsdShade.MaterialBindingAPI(only_mesh(stage).GetPrim()).ComputeBoundMaterial()
    shader = material.ComputeSurfaceSource()[0]
    assert shader.GetIdAttr().Get() == "UsdPreviewSurface"
    source = shader.GetInput("diffuseColor").GetConnectedSources()[0][0].source
    texture = UsdShade.Shader(source.GetPrim())
    assert texture.GetIdAttr().Get() == "UsdUVTexture"
    file_name = texture.GetInput("file").Get().path
    assert file_name.endswith(".jpg")

    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        assert names[0].endswith(".usdc")  # ARKit reads the first file as the root layer
        assert file_name in names
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        image = np.asarray(Image.open(io.BytesIO(archive.read(file_name))).convert("RGB"))
    assert image.shape == (64, 64, 3)
    np.testing.assert_allclose(image[16, 16], TOP_LEFT, atol=12)  # JPEG
    np.testing.assert_allclose(image[16, 48], TOP_RIGHT, atol=12)
    np.testing.assert_allclose(image[48, 16], BOTTOM_LEFT, atol=12)


def test_package_passes_the_arkit_compliance_checker(tmp_path) -> None:
    path = tmp_path / "model.usdz"
    write_usdz(path, textured_mesh())
    result = arkit_compliance(path)
    assert result["passed"] is True, result
    assert result["warnings"] == []


def test_checker_catches_a_package_that_breaks_the_rules(tmp_path) -> None:
    # The test above could pass with a checker that checks nothing: this one must fail it.
    layer = tmp_path / "bare.usda"
    stage = Usd.Stage.CreateNew(str(layer))
    UsdGeom.Mesh.Define(stage, "/mesh")
    stage.GetRootLayer().Save()
    path = tmp_path / "bare.usdz"
    writer = Sdf.ZipFileWriter.CreateNew(str(path))
    writer.AddFile(str(layer), layer.name)
    writer.Save()
    result = arkit_compliance(path)
    assert result["passed"] is False
    assert any("upAxis" in failure for failure in result["failed_checks"])


def test_odd_sized_texture_becomes_a_power_of_two(tmp_path) -> None:
    path = tmp_path / "model.usdz"
    write_usdz(path, textured_mesh(np.full((300, 500, 3), 90, np.uint8)))
    with zipfile.ZipFile(path) as archive:
        jpeg = next(name for name in archive.namelist() if name.endswith(".jpg"))
        assert Image.open(io.BytesIO(archive.read(jpeg))).size == (512, 512)
    assert arkit_compliance(path)["passed"] is True


def test_untextured_and_vertex_coloured_parts_get_a_plain_colour(tmp_path) -> None:
    vertices, faces, _ = textured_box()
    normals = np.tile([0.0, 0.0, 1.0], (len(vertices), 1))
    plain = Primitive(vertices=vertices, faces=faces, normals=normals, base_color=(0.2, 0.4, 0.6))
    painted = Primitive(
        vertices=vertices + 1.0,
        faces=faces,
        normals=normals,
        vertex_colors=np.full((len(vertices), 3), 0.5),
    )
    path = tmp_path / "model.usdz"
    write_usdz(path, TexturedMesh((plain, painted)), options=UsdzOptions(meters_per_unit=0.01))

    stage = Usd.Stage.Open(str(path))
    assert UsdGeom.GetStageMetersPerUnit(stage) == 0.01
    meshes = [UsdGeom.Mesh(p) for p in stage.Traverse() if p.IsA(UsdGeom.Mesh)]
    assert len(meshes) == 2
    material, _ = UsdShade.MaterialBindingAPI(meshes[0].GetPrim()).ComputeBoundMaterial()
    colour = material.ComputeSurfaceSource()[0].GetInput("diffuseColor").Get()
    np.testing.assert_allclose(list(colour), [0.2, 0.4, 0.6], atol=1e-6)
    assert all(
        not UsdGeom.PrimvarsAPI(mesh).GetPrimvar("displayColor").HasAuthoredValue()
        for mesh in meshes
    )
    assert arkit_compliance(path)["passed"] is True


def test_bad_options_are_refused(tmp_path) -> None:
    with pytest.raises(ValueError, match="jpeg_quality"):
        write_usdz(tmp_path / "x.usdz", textured_mesh(), options=UsdzOptions(jpeg_quality=0))
    assert not (tmp_path / "x.usdz").exists()
