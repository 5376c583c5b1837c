"""Textured meshes as USDZ packages for iOS AR Quick Look, checked with USD's ARKit rules."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from recon.export import jpeg_bytes
from recon.textured_mesh import Primitive, TexturedMesh
from recon.workspace import atomic_path

logger = logging.getLogger(__name__)

# 1980-01-02 UTC: zip's earliest date (1980-01-01, local time) with a day to spare for any zone.
ZIP_TIMESTAMP = 315_619_200


@dataclass(frozen=True, kw_only=True)
class UsdzOptions:
    """How the USDZ is written."""

    jpeg_quality: int = 90  # base-colour JPEG quality (1–95), as the GLB's
    roughness: float = 0.85  # UsdPreviewSurface roughness: photographed products look matte
    metallic: float = 0.0  # photos cannot tell metal apart, so none
    meters_per_unit: float = 1.0  # 1: one unit is a metre, as in glTF (the GLB's scale)
    name: str = "product"  # name of the root prim (the default prim) and its material


def write_usdz(path: Path, mesh: TexturedMesh, *, options: UsdzOptions | None = None) -> None:
    """Write `mesh` as an ARKit USDZ at `path` (+Y up; a crash leaves no half-written file).

    One UsdGeom.Mesh per primitive, each bound to its own UsdPreviewSurface; a textured
    primitive's base colour is a JPEG inside the package (resized to a power-of-two square when
    it is not one). Vertex colours are not written: AR Quick Look ignores them and the ARKit
    checker flags them.
    """
    from pxr import Sdf  # imported here: usd-core is large and only export needs it

    options = options or UsdzOptions()
    if not 1 <= options.jpeg_quality <= 95:
        raise ValueError(f"jpeg_quality {options.jpeg_quality} is outside 1–95")
    if not options.meters_per_unit > 0:
        raise ValueError(f"meters_per_unit must be positive, got {options.meters_per_unit}")
    if not mesh.primitives:
        raise ValueError("the mesh has no primitives")
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="usdz-") as folder:
        layer_path = Path(folder) / f"{options.name}.usdc"
        images = _write_stage(layer_path, mesh, options)
        with atomic_path(path) as tmp:
            # USD's own zip writer stores files uncompressed and 64-byte aligned, as USDZ
            # requires; ARKit wants the root layer (usdc) first. (UsdUtils'
            # CreateNewARKitUsdzPackage does the same but moves textures into numbered folders.)
            # The zip records each file's modification time: a fixed one makes the same model
            # the same bytes, run after run (caches and ETags can trust it).
            writer = Sdf.ZipFileWriter.CreateNew(str(tmp))
            for member in [layer_path, *images]:
                os.utime(member, (ZIP_TIMESTAMP, ZIP_TIMESTAMP))
                writer.AddFile(str(member), member.name)
            writer.Save()
    logger.info("wrote %s (%.2f MB)", path, path.stat().st_size / 1e6)


def arkit_compliance(path: Path) -> dict:
    """USD's ARKit compliance checker on a USDZ: {"passed", "errors", "warnings", "failed_checks"}.

    The checker lives in usd-core up to 26.5 (26.8 dropped it for UsdValidation, which has no
    ARKit rules yet); `passed` is None when it is missing.
    """
    try:
        from pxr.UsdUtils.complianceChecker import ComplianceChecker
    except ImportError:
        return {"passed": None, "errors": [], "warnings": [], "failed_checks": []}
    with warnings.catch_warnings():  # its deprecation notice: known, and why usd-core is capped
        warnings.simplefilter("ignore", DeprecationWarning)
        checker = ComplianceChecker(arkit=True)
    checker.CheckCompliance(str(path))
    errors, failed = list(checker.GetErrors()), list(checker.GetFailedChecks())
    return {
        "passed": not errors and not failed,
        "errors": errors,
        "warnings": list(checker.GetWarnings()),
        "failed_checks": failed,
    }


def _write_stage(layer_path: Path, mesh: TexturedMesh, options: UsdzOptions) -> list[Path]:
    """Write the stage's layer; returns the texture files it refers to (beside the layer)."""
    from pxr import Kind, Sdf, Usd, UsdGeom, UsdShade, Vt

    stage = Usd.Stage.CreateNew(str(layer_path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.y)
    UsdGeom.SetStageMetersPerUnit(stage, options.meters_per_unit)
    root = UsdGeom.Xform.Define(stage, f"/{options.name}")
    stage.SetDefaultPrim(root.GetPrim())
    Usd.ModelAPI(root.GetPrim()).SetKind(Kind.Tokens.component)
    UsdGeom.Scope.Define(stage, f"/{options.name}/Materials")

    images = []
    for index, primitive in enumerate(mesh.primitives):
        suffix = "" if len(mesh.primitives) == 1 else f"_{index}"
        geometry = UsdGeom.Mesh.Define(stage, f"/{options.name}/Geometry{suffix}")
        vertices = np.asarray(primitive.vertices, dtype=np.float32)
        faces = np.asarray(primitive.faces, dtype=np.int32)
        geometry.CreatePointsAttr(Vt.Vec3fArray.FromNumpy(vertices))
        geometry.CreateFaceVertexCountsAttr(Vt.IntArray.FromNumpy(np.full(len(faces), 3, np.int32)))
        geometry.CreateFaceVertexIndicesAttr(Vt.IntArray.FromNumpy(faces.reshape(-1)))
        # Triangles as they are: the default, Catmull-Clark, would round the product off.
        geometry.CreateSubdivisionSchemeAttr(UsdGeom.Tokens.none)
        geometry.CreateOrientationAttr(UsdGeom.Tokens.rightHanded)  # glTF's counter-clockwise
        geometry.CreateExtentAttr(
            Vt.Vec3fArray.FromNumpy(np.stack([vertices.min(axis=0), vertices.max(axis=0)]))
        )
        geometry.CreateNormalsAttr(
            Vt.Vec3fArray.FromNumpy(np.asarray(primitive.normals, dtype=np.float32))
        )
        geometry.SetNormalsInterpolation(UsdGeom.Tokens.vertex)
        textured = primitive.texture is not None and primitive.uv is not None
        if textured:
            # USD's st has its origin at the image's bottom-left, as Primitive.uv has.
            st = UsdGeom.PrimvarsAPI(geometry).CreatePrimvar(
                "st", Sdf.ValueTypeNames.TexCoord2fArray, UsdGeom.Tokens.vertex
            )
            st.Set(Vt.Vec2fArray.FromNumpy(np.asarray(primitive.uv, dtype=np.float32)))
        material, image = _material(stage, primitive, suffix, layer_path.parent, options)
        images += [image] if image is not None else []
        binding = UsdShade.MaterialBindingAPI.Apply(geometry.GetPrim())
        binding.Bind(material)
    stage.GetRootLayer().Save()
    return images


def _material(
    stage, primitive: Primitive, suffix: str, folder: Path, options: UsdzOptions
) -> tuple[object, Path | None]:
    """A UsdPreviewSurface material for `primitive`, and the texture file it reads (or None)."""
    from pxr import Gf, Sdf, UsdShade

    path = f"/{options.name}/Materials/{options.name}{suffix}"
    material = UsdShade.Material.Define(stage, path)
    surface = UsdShade.Shader.Define(stage, f"{path}/PreviewSurface")
    surface.CreateIdAttr("UsdPreviewSurface")
    surface.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(float(options.roughness))
    surface.CreateInput("metallic", Sdf.ValueTypeNames.Float).Set(float(options.metallic))
    material.CreateSurfaceOutput().ConnectToSource(surface.ConnectableAPI(), "surface")
    diffuse = surface.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f)
    if primitive.texture is None or primitive.uv is None:
        diffuse.Set(Gf.Vec3f(*map(float, primitive.base_color)))
        return material, None

    image_name = f"base_color{suffix}.jpg"
    image_path = folder / image_name
    image_path.write_bytes(_jpeg(primitive.texture, options.jpeg_quality))
    reader = UsdShade.Shader.Define(stage, f"{path}/TexCoordReader")
    reader.CreateIdAttr("UsdPrimvarReader_float2")
    varname = material.CreateInput("frame:stPrimvarName", Sdf.ValueTypeNames.String)
    varname.Set("st")
    reader.CreateInput("varname", Sdf.ValueTypeNames.String).ConnectToSource(varname)
    reader.CreateOutput("result", Sdf.ValueTypeNames.Float2)
    texture = UsdShade.Shader.Define(stage, f"{path}/BaseColor")
    texture.CreateIdAttr("UsdUVTexture")
    texture.CreateInput("file", Sdf.ValueTypeNames.Asset).Set(Sdf.AssetPath(image_name))
    texture.CreateInput("sourceColorSpace", Sdf.ValueTypeNames.Token).Set("sRGB")
    texture.CreateInput("wrapS", Sdf.ValueTypeNames.Token).Set("repeat")
    texture.CreateInput("wrapT", Sdf.ValueTypeNames.Token).Set("repeat")
    texture.CreateInput("st", Sdf.ValueTypeNames.Float2).ConnectToSource(
        reader.ConnectableAPI(), "result"
    )
    if tuple(primitive.base_color) != (1.0, 1.0, 1.0):
        texture.CreateInput("scale", Sdf.ValueTypeNames.Float4).Set(
            Gf.Vec4f(*primitive.base_color, 1.0)
        )
    texture.CreateOutput("rgb", Sdf.ValueTypeNames.Float3)
    diffuse.ConnectToSource(texture.ConnectableAPI(), "rgb")
    return material, image_path


def _jpeg(texture: np.ndarray, quality: int) -> bytes:
    """A JPEG of the (h, w, 3) uint8 texture, resized to a power-of-two square when it is not one
    (ARKit asks for power-of-two textures; UVs are relative, so they still fit)."""
    image = Image.fromarray(np.asarray(texture, dtype=np.uint8), "RGB")
    width, height = image.size
    if width != height or width & (width - 1):
        side = 1 << round(np.log2(max(width, height, 1)))
        image = image.resize((side, side), Image.Resampling.LANCZOS)
    return jpeg_bytes(np.asarray(image), quality)
