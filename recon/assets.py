"""The export stage: the textured model staged for publishing as GLB, USDZ (AR) and a poster."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass, field

from recon.errors import InputError, ReconError, StageError
from recon.poster import PosterOptions, write_poster
from recon.progress import ProgressCallback
from recon.textured_mesh import load_textured_mesh
from recon.usdz import UsdzOptions, arkit_compliance, write_usdz
from recon.workspace import (
    MODEL_FILE,
    POSTER_FILE,
    PUBLISHED_FILES,
    USDZ_FILE,
    Workspace,
    atomic_path,
)

logger = logging.getLogger(__name__)

STAGE = "export"


@dataclass(frozen=True, kw_only=True)
class AssetOptions:
    """Which files besides the GLB a job publishes, and how they are made."""

    usdz: bool = True  # model.usdz for iOS AR Quick Look
    poster: bool = True  # poster.webp, a 3/4 view still
    usdz_options: UsdzOptions = field(default_factory=UsdzOptions)
    poster_options: PosterOptions = field(default_factory=PosterOptions)


@dataclass(frozen=True)
class AssetResult:
    files: dict[str, int]  # staged file name -> bytes
    usdz_arkit_compliant: bool | None  # USD's ARKit checker passed (None: no USDZ or no checker)
    warnings: list[str]
    seconds: float


def run(
    workspace: Workspace,
    options: AssetOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> AssetResult:
    """Stage model.glb, model.usdz and poster.webp in the workspace's export folder.

    Reads textured_model_path (the texture stage's GLB, already +Y up and in metres when the
    scale is known); the USDZ and the poster show that same model in the same frame.
    """
    options = options or AssetOptions()
    started = time.perf_counter()
    source = workspace.textured_model_path
    if not source.exists():
        raise StageError(STAGE, f"no textured model at {source}: run the texture stage first")
    workspace.export_dir.mkdir(parents=True, exist_ok=True)
    for name in PUBLISHED_FILES:  # nothing stale from an earlier run with other options
        workspace.staged_path(name).unlink(missing_ok=True)
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
    files = {
        name: workspace.staged_path(name).stat().st_size
        for name in PUBLISHED_FILES
        if workspace.staged_path(name).exists()
    }
    if progress:
        progress(STAGE, 1.0, ", ".join(files))
    return AssetResult(files, compliant, warnings, time.perf_counter() - started)
