"""The export stage: the textured model staged for publishing as GLB, USDZ (AR) and a poster."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np
import trimesh
from PIL import Image

from recon import meshing, texturing
from recon.commerce import MB, inspect_glb
from recon.compress import DracoOptions, compress_glb
from recon.errors import InputError, ReconError, StageError
from recon.export import ExportOptions, glb_bytes
from recon.poster import PosterOptions, write_poster
from recon.progress import ProgressCallback
from recon.textured_mesh import TexturedMesh, load_textured_mesh
from recon.usdz import UsdzOptions, arkit_compliance, write_usdz
from recon.workspace import (
    MODEL_FILE,
    POSTER_FILE,
    THUMBNAIL_FILE,
    USDZ_FILE,
    Workspace,
    atomic_path,
    tier_file,
)

logger = logging.getLogger(__name__)

STAGE = "export"


@dataclass(frozen=True, kw_only=True)
class SizeTier:
    """A smaller GLB for phones: at most this many triangles, this texture size."""

    max_faces: int
    texture_size: int = 1024  # px, a power of two


@dataclass(frozen=True, kw_only=True)
class AssetOptions:
    """Which files besides the GLB a job publishes, and how they are made."""

    usdz: bool = True  # model.usdz for iOS AR Quick Look
    poster: bool = True  # poster.webp, a 3/4 view still, and thumbnail.webp
    usdz_options: UsdzOptions = field(default_factory=UsdzOptions)
    poster_options: PosterOptions = field(default_factory=PosterOptions)
    # Phone-sized variants (the "≤ 25k and ≤ 50k triangles with 1024² textures"): the
    # product mesh simplified, with a new atlas laid out like the model's (each chart as its
    # photo saw it) and filled from the model's texture. A tier the model already fits is the
    # model itself, listed, not copied.
    tiers: tuple[SizeTier, ...] = (
        SizeTier(max_faces=50_000, texture_size=1024),
        SizeTier(max_faces=25_000, texture_size=1024),
    )
    # Draco geometry compression (KHR_draco_mesh_compression) of model.glb and the tiers; the
    # USDZ stays uncompressed (ARKit cannot read Draco).
    compress: bool = False
    draco: DracoOptions = field(default_factory=DracoOptions)
    # Fit model.glb under this many MB (10^6 bytes) by lowering the JPEG quality, the texture
    # size and the triangle count (see fit_budget); None: no budget.
    max_mb: float | None = None
    budget_min_texture_px: int = 512  # the budget never shrinks the texture below this
    budget_min_faces: int = 5_000  # ... nor the triangles below this


@dataclass(frozen=True)
class AssetResult:
    files: dict[str, int]  # staged file name -> bytes
    tiers: list[dict]  # {"file", "faces", "texture_size", "bytes"} per tier, largest first
    usdz_arkit_compliant: bool | None  # USD's ARKit checker passed (None: no USDZ or no checker)
    warnings: list[str]
    seconds: float
    # model.glb as written: bytes, faces, vertices, texture_size, jpeg_quality, full_colour,
    # compression
    glb: dict = field(default_factory=dict)
    # with max_mb: target_bytes, bytes, fits, reduced ([{"step", "from", "to", "bytes"}])
    budget: dict | None = None


def run(
    workspace: Workspace,
    options: AssetOptions | None = None,
    *,
    texture_options: texturing.TextureOptions | None = None,
    progress: ProgressCallback | None = None,
) -> AssetResult:
    """Stage model.glb, model.usdz and poster.webp in the workspace's export folder.

    Reads textured_model_path (the texture stage's GLB, already +Y up and in metres when the
    scale is known); the USDZ and the poster show that same model in the same frame. Size
    tiers take their colour from that model (`texture_options`' atlas settings, their own
    size).
    """
    options = options or AssetOptions()
    started = time.perf_counter()
    source = workspace.textured_model_path
    if not source.exists():
        raise StageError(STAGE, f"no textured model at {source}: run the texture stage first")
    workspace.export_dir.mkdir(parents=True, exist_ok=True)
    for name in workspace.staged_files():  # nothing stale from a run with other options
        workspace.staged_path(name).unlink()
    try:
        mesh = load_textured_mesh(source)
    except InputError as error:
        raise StageError(
            STAGE, f"cannot read the textured model ({error}); re-run texture"
        ) from error
    texture_options = texture_options or texturing.TextureOptions()
    views = _TierSource(workspace, mesh)

    warnings: list[str] = []
    if progress:
        progress(STAGE, 0.05, "model.glb")
    model, budget = write_model(workspace, mesh, options, texture_options, views)
    if budget is not None and not budget["fits"]:
        warnings.append(budget["message"])
        logger.warning(warnings[-1])
    compliant = None
    if options.usdz:
        if progress:
            progress(STAGE, 0.1, "usdz")
        usdz_path = workspace.staged_path(USDZ_FILE)
        write_usdz(usdz_path, mesh, options=options.usdz_options)
        check = arkit_compliance(usdz_path)
        compliant = check["passed"]
        if compliant is False:
            problems = "; ".join(check["errors"] + check["failed_checks"])
            warnings.append(f"model.usdz fails USD's ARKit compliance check: {problems}")
            logger.warning(warnings[-1])
    if options.poster:
        if progress:
            progress(STAGE, 0.5, "poster")
        try:
            write_poster(
                workspace.staged_path(POSTER_FILE),
                mesh,
                options.poster_options,
                thumbnail_path=workspace.staged_path(THUMBNAIL_FILE),
            )
        except ReconError as error:  # no OpenGL on this machine: the model is still good
            warnings.append(f"no poster.webp: {error}")
            logger.warning(warnings[-1])
    tiers = []
    if options.tiers:
        if progress:
            progress(STAGE, 0.6, "size tiers")
        tiers = write_tiers(workspace, model, options, texture_options, views)
    files = {name: workspace.staged_path(name).stat().st_size for name in workspace.staged_files()}
    if progress:
        progress(STAGE, 1.0, ", ".join(files))
    return AssetResult(
        files, tiers, compliant, warnings, time.perf_counter() - started, model, budget
    )


def write_model(
    workspace: Workspace,
    mesh: TexturedMesh,
    options: AssetOptions,
    texture_options: texturing.TextureOptions,
    views: _TierSource,
) -> tuple[dict, dict | None]:
    """Stage model.glb: the texture stage's GLB as it is, Draco-compressed with `compress`, and
    fitted under `max_mb`. Returns the written file's facts and the budget record (or None)."""
    source = workspace.textured_model_path.read_bytes()
    export = texture_options.export
    data = compress_glb(source, options.draco) if options.compress else source
    budget = None
    if options.max_mb is not None:
        data, export, budget = fit_budget(data, mesh, options, texture_options, views)
    with atomic_path(workspace.staged_path(MODEL_FILE)) as tmp:
        tmp.write_bytes(data)
        os.chmod(tmp, 0o644)  # served and shared, like every published file
    facts = inspect_glb(data)
    sizes = [max(t["width"] or 0, t["height"] or 0) for t in facts.textures]
    glb = {
        "bytes": facts.bytes,
        "faces": facts.triangles,
        "vertices": facts.vertices,
        "texture_size": max(sizes, default=0),
        "jpeg_quality": export.jpeg_quality,
        "full_colour": export.full_colour,
        "compression": "draco" if options.compress else None,
    }
    return glb, budget


def fit_budget(
    data: bytes,
    mesh: TexturedMesh,
    options: AssetOptions,
    texture_options: texturing.TextureOptions,
    views: _TierSource,
) -> tuple[bytes, ExportOptions, dict]:
    """Shrink the GLB `data` (made from `mesh`) until it is at most options.max_mb MB.

    Each step cuts what takes more of the file, measured on the encoded bytes: while the
    texture is at least half of it, the JPEG's colour halves (4:2:0), its quality drops to 75,
    then the texture halves (not below budget_min_texture_px), then the quality drops to 50;
    otherwise the triangles halve (simplified and textured from the model, down to
    budget_min_faces), when the product mesh is there. Returns the smallest bytes tried (the
    first that fits), the export options they were written with and the budget record; the
    record's `fits` is False, with a `message`, when nothing fits.
    """
    if not options.max_mb > 0:
        raise InputError(f"max_mb must be above 0 MB, got {options.max_mb}")
    target = int(options.max_mb * MB)
    export = texture_options.export
    if len(data) <= target:  # the usual case: nothing to do
        return data, export, {"target_bytes": target, "bytes": len(data), "fits": True,
                              "reduced": []}  # fmt: skip
    primitive = _single_textured(mesh)
    geometry = (primitive.vertices, primitive.faces, primitive.uv, primitive.normals)
    texture = primitive.texture
    size = texture.shape[0]
    faces = len(primitive.faces)
    reduced: list[dict] = []
    while len(data) > target:
        texture_share = inspect_glb(data).image_bytes / len(data)
        step = None
        texture_step = _texture_step(size, export, options.budget_min_texture_px)
        can_simplify = faces > options.budget_min_faces and views.available()
        if texture_step and (texture_share >= 0.5 or not can_simplify):
            step = texture_step
        elif can_simplify:
            step = ("faces", faces, max(faces // 2, options.budget_min_faces))
        if step is None:
            break
        name, before, after = step
        if name == "full_colour":
            export = dataclasses.replace(export, full_colour=after)
        elif name == "jpeg_quality":
            export = dataclasses.replace(export, jpeg_quality=after)
        elif name == "texture_size":
            size = after
        else:
            baked = views.bake(after, size, texture_options)
            geometry = (baked.vertices, baked.faces, baked.uv, baked.normals)
            texture, faces = baked.texture, len(baked.faces)
            after = faces
        vertices, triangles, uv, normals = geometry
        data = glb_bytes(vertices, triangles, uv, _resized(texture, size), normals=normals,
                         options=export)  # fmt: skip
        if options.compress:
            data = compress_glb(data, options.draco)
        reduced.append({"step": name, "from": before, "to": after, "bytes": len(data)})
    record = {
        "target_bytes": target,
        "bytes": len(data),
        "fits": len(data) <= target,
        "reduced": reduced,
    }
    if not record["fits"]:
        record["message"] = (
            f"model.glb is {len(data) / MB:.2f} MB, above the {options.max_mb:g} MB budget even "
            f"with a {size}² texture at JPEG quality {export.jpeg_quality} and {faces} "
            "triangles: raise --max-mb, or add --compress"
            + ("" if views.available() else " (no product mesh here to simplify)")
        )
    return data, export, record


def _texture_step(
    size: int, export: ExportOptions, min_size: int
) -> tuple[str, int | bool, int | bool] | None:
    """The next texture reduction: colour at half size, quality to 75, then halve the size,
    then quality to 50."""
    if export.full_colour:
        return ("full_colour", True, False)
    if export.jpeg_quality > 75:
        return ("jpeg_quality", export.jpeg_quality, 75)
    if size // 2 >= min_size:
        return ("texture_size", size, size // 2)
    if export.jpeg_quality > 50:
        return ("jpeg_quality", export.jpeg_quality, 50)
    return None


def _resized(texture: np.ndarray, size: int) -> np.ndarray:
    """The (S, S, 3) texture at size², area-averaged (UVs are relative: they still fit)."""
    if texture.shape[0] == size:
        return texture
    image = Image.fromarray(texture, "RGB").resize((size, size), Image.Resampling.BOX)
    return np.asarray(image)


def _single_textured(mesh: TexturedMesh):
    if len(mesh.primitives) != 1 or mesh.primitives[0].texture is None:
        raise StageError(
            STAGE,
            f"the textured model has {len(mesh.primitives)} parts; a budget needs the texture "
            "stage's single textured mesh: re-run texture",
        )
    primitive = mesh.primitives[0]
    size = primitive.texture.shape[0]
    if primitive.texture.shape[1] != size or size & (size - 1):
        raise StageError(STAGE, "the texture is not a power-of-two square: re-run texture")
    return primitive


def write_tiers(
    workspace: Workspace,
    model: dict,
    options: AssetOptions,
    texture_options: texturing.TextureOptions,
    views: _TierSource,
) -> list[dict]:
    """Stage a GLB per size tier that model.glb (`model`: its facts) exceeds; list every tier,
    largest first. Tiers are Draco-compressed like the model with `compress`."""
    faces, texture_size = model["faces"], model["texture_size"]
    listed = []
    for tier in sorted(options.tiers, key=lambda t: -t.max_faces):
        if faces <= tier.max_faces and texture_size <= tier.texture_size:
            listed.append({"file": MODEL_FILE, "max_faces": tier.max_faces, "faces": faces,
                           "texture_size": texture_size, "bytes": model["bytes"]})  # fmt: skip
            continue
        name = tier_file(tier.max_faces)
        if faces <= tier.max_faces:
            # Few enough triangles, only the texture too large (e.g. after a budget's
            # simplification): the model itself with its texture shrunk.
            staged = _single_textured(load_textured_mesh(workspace.staged_path(MODEL_FILE)))
            geometry = (staged.vertices, staged.faces, staged.uv, staged.normals)
            texture = _resized(staged.texture, tier.texture_size)
        else:
            baked = views.bake(tier.max_faces, tier.texture_size, texture_options)
            geometry = (baked.vertices, baked.faces, baked.uv, baked.normals)
            texture = baked.texture
        # No finer JPEG than the model's own (a budget may have lowered it)
        export = dataclasses.replace(
            texture_options.export,
            jpeg_quality=model["jpeg_quality"],
            full_colour=model["full_colour"],
        )
        vertices, triangles, uv, normals = geometry
        data = glb_bytes(vertices, triangles, uv, texture, normals=normals, options=export)
        if options.compress:
            data = compress_glb(data, options.draco)
        with atomic_path(workspace.staged_path(name)) as tmp:
            tmp.write_bytes(data)
            os.chmod(tmp, 0o644)
        listed.append({"file": name, "max_faces": tier.max_faces, "faces": len(triangles),
                       "texture_size": tier.texture_size, "bytes": len(data)})  # fmt: skip
    return listed


class _TierSource:
    """What smaller models are made from: the product mesh (simplified to each size), its
    cameras and the photo each face was coloured from (the texture stage's), in the model's
    frame, and the textured model whose colours they take. Read once, when first needed."""

    def __init__(self, workspace: Workspace, model: TexturedMesh) -> None:
        self.workspace = workspace
        self.model = model
        self._loaded: tuple[trimesh.Trimesh, np.ndarray, list, np.ndarray | None] | None = None
        self._simplified: list[trimesh.Trimesh] = []  # the meshes simplified so far

    def available(self) -> bool:
        """Whether the product mesh and its cameras are there to simplify."""
        return self.workspace.mesh_path.exists() and self.workspace.sfm_cameras_path.exists()

    def bake(
        self, max_faces: int, texture_size: int, texture_options: texturing.TextureOptions
    ) -> texturing.BakedTexture:
        """The product mesh simplified to ≤ max_faces, textured from the model at
        texture_size²."""
        source = _single_textured(self.model)
        if self._loaded is None:
            self._loaded = self._load(len(source.faces))
        mesh, matrix, cameras, face_views = self._loaded
        # Simplified from the smallest mesh made so far that is still above the budget: the
        # 25k tier from the 50k one, not from the whole mesh again (soup can on a table: 0.19 s
        # instead of 0.54 s); quadric collapses in two steps keep the same shape.
        larger = [m for m in (mesh, *self._simplified) if len(m.faces) > max_faces]
        start = min(larger, key=lambda m: len(m.faces), default=mesh)
        simplified = meshing.simplify(start.copy(), max_faces)
        self._simplified.append(simplified)
        vertices = np.asarray(simplified.vertices) @ matrix[:3, :3].T + matrix[:3, 3]
        return texturing.transfer_texture(
            source,
            vertices,
            np.asarray(simplified.faces, dtype=np.int64),
            cameras,
            dataclasses.replace(texture_options, texture_size=texture_size),
            source_views=face_views,
        )

    def _load(
        self, source_faces: int
    ) -> tuple[trimesh.Trimesh, np.ndarray, list, np.ndarray | None]:
        workspace = self.workspace
        mesh = trimesh.load(workspace.mesh_path, process=False, force="mesh")
        matrix = texturing.read_orientation(workspace.orient_path)
        cameras = [camera.transformed(matrix) for camera in workspace.read_sfm_cameras()]
        face_views = None
        path = workspace.face_views_path
        if path.exists():
            face_views = np.load(path)
            if (
                face_views.shape != (source_faces,)
                or len(mesh.faces) != source_faces
                or face_views.max(initial=-1) >= len(cameras)
            ):
                face_views = None
        if face_views is None:
            # A texture stage of an older version: charts are box-projected (still filled
            # from the model), which costs nothing but a less tidy atlas.
            logger.info("no matching %s: size tiers' charts are box-projected", path.name)
        return mesh, matrix, cameras, face_views
