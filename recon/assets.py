"""The export stage: the textured model staged for publishing as GLB, USDZ (AR) and a poster."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from dataclasses import dataclass, field

import numpy as np
import trimesh

from recon import meshing, texturing
from recon.errors import InputError, ReconError, StageError
from recon.export import write_glb
from recon.poster import PosterOptions, write_poster
from recon.progress import ProgressCallback
from recon.textured_mesh import TexturedMesh, load_textured_mesh
from recon.usdz import UsdzOptions, arkit_compliance, write_usdz
from recon.workspace import (
    MODEL_FILE,
    POSTER_FILE,
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
    poster: bool = True  # poster.webp, a 3/4 view still
    usdz_options: UsdzOptions = field(default_factory=UsdzOptions)
    poster_options: PosterOptions = field(default_factory=PosterOptions)
    # Phone-sized variants (the "≤ 25k and ≤ 50k triangles with 1024² textures"): the
    # product mesh simplified and textured afresh from the photos (a new atlas suits the new
    # triangles). A tier the model already fits is the model itself, listed, not copied.
    tiers: tuple[SizeTier, ...] = (
        SizeTier(max_faces=50_000, texture_size=1024),
        SizeTier(max_faces=25_000, texture_size=1024),
    )


@dataclass(frozen=True)
class AssetResult:
    files: dict[str, int]  # staged file name -> bytes
    tiers: list[dict]  # {"file", "faces", "texture_size", "bytes"} per tier, largest first
    usdz_arkit_compliant: bool | None  # USD's ARKit checker passed (None: no USDZ or no checker)
    warnings: list[str]
    seconds: float


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
    tiers are baked like the texture stage's model, with `texture_options` (but their own size).
    """
    options = options or AssetOptions()
    started = time.perf_counter()
    source = workspace.textured_model_path
    if not source.exists():
        raise StageError(STAGE, f"no textured model at {source}: run the texture stage first")
    workspace.export_dir.mkdir(parents=True, exist_ok=True)
    for name in workspace.staged_files():  # nothing stale from a run with other options
        workspace.staged_path(name).unlink()
    with atomic_path(workspace.staged_path(MODEL_FILE)) as tmp:
        shutil.copyfile(source, tmp)
    try:
        mesh = load_textured_mesh(source)
    except InputError as error:
        raise StageError(
            STAGE, f"cannot read the textured model ({error}); re-run texture"
        ) from error

    warnings: list[str] = []
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
            write_poster(workspace.staged_path(POSTER_FILE), mesh, options.poster_options)
        except ReconError as error:  # no OpenGL on this machine: the model is still good
            warnings.append(f"no poster.webp: {error}")
            logger.warning(warnings[-1])
    tiers = []
    if options.tiers:
        if progress:
            progress(STAGE, 0.6, "size tiers")
        tiers = write_tiers(workspace, mesh, options, texture_options or texturing.TextureOptions())
    files = {name: workspace.staged_path(name).stat().st_size for name in workspace.staged_files()}
    if progress:
        progress(STAGE, 1.0, ", ".join(files))
    return AssetResult(files, tiers, compliant, warnings, time.perf_counter() - started)


def write_tiers(
    workspace: Workspace,
    model: TexturedMesh,
    options: AssetOptions,
    texture_options: texturing.TextureOptions,
) -> list[dict]:
    """Stage a GLB per size tier that the model exceeds; list every tier, largest first."""
    faces = sum(len(p.faces) for p in model.primitives)
    texture_size = max((p.texture.shape[0] for p in model.primitives if p.texture is not None),
                       default=0)  # fmt: skip
    full_size = workspace.staged_path(MODEL_FILE).stat().st_size
    listed = []
    views = None
    for tier in sorted(options.tiers, key=lambda t: -t.max_faces):
        if faces <= tier.max_faces and texture_size <= tier.texture_size:
            listed.append({"file": MODEL_FILE, "max_faces": tier.max_faces, "faces": faces,
                           "texture_size": texture_size, "bytes": full_size})  # fmt: skip
            continue
        if views is None:
            views = _read_views(workspace)
        name = tier_file(tier.max_faces)
        tier_faces = _bake_tier(workspace.staged_path(name), tier, views, texture_options)
        listed.append({"file": name, "max_faces": tier.max_faces, "faces": tier_faces,
                       "texture_size": tier.texture_size,
                       "bytes": workspace.staged_path(name).stat().st_size})  # fmt: skip
    return listed


def _read_views(workspace: Workspace) -> tuple[trimesh.Trimesh, np.ndarray, list, list, list]:
    """What the texture stage bakes from: the product mesh, SfM → asset matrix, cameras in the
    asset frame, photos and masks (None where a photo has none)."""
    mesh = trimesh.load(workspace.mesh_path, process=False, force="mesh")
    matrix = texturing.read_orientation(workspace.orient_path)
    cameras = [camera.transformed(matrix) for camera in workspace.read_sfm_cameras()]
    images, masks = texturing.read_photos_and_masks(workspace, cameras)
    return mesh, matrix, cameras, images, masks


def _bake_tier(path, tier: SizeTier, views, texture_options: texturing.TextureOptions) -> int:
    """Simplify the product mesh to the tier, bake its texture, write the GLB; returns faces."""
    mesh, matrix, cameras, images, masks = views
    simplified = meshing.simplify(mesh.copy(), tier.max_faces)
    vertices = np.asarray(simplified.vertices) @ matrix[:3, :3].T + matrix[:3, 3]
    options = dataclasses.replace(texture_options, texture_size=tier.texture_size)
    baked = texturing.bake_texture(
        vertices,
        np.asarray(simplified.faces, dtype=np.int64),
        cameras,
        images,
        masks if any(m is not None for m in masks) else None,
        options,
    )
    write_glb(path, baked.vertices, baked.faces, baked.uv, baked.texture,
              normals=baked.normals, options=options.export)  # fmt: skip
    return len(baked.faces)
