"""The job folder: the only code that knows file names inside it.

Layout of one reconstruction's output folder OUT::

    OUT/model.glb, OUT/model.usdz,      published outputs (moved into place at the very end,
    OUT/poster.webp, OUT/report.json    the report last), and smaller GLBs for phones:
    OUT/model_50k.glb, model_25k.glb    size tiers (at most 50k / 25k triangles)
    OUT/work/state.json                 which stages finished, with the options they ran with
    OUT/work/capture.json               the photos taken in, their sizes, focal priors, rejections
    OUT/work/images/NAME                working copies of the photos (EXIF-rotated, resized)
    OUT/work/sfm/                       COLMAP database and model; cameras.json, points.npz
    OUT/work/sfm/images/NAME            undistorted photos: what every later stage reads, with
                                        the pinhole cameras of sfm/cameras.json
    OUT/work/region.json                where the product is: centre, up, box, table plane
    OUT/work/masks/NAME.png             product silhouettes per photo (uint8 0/255)
    OUT/work/depth/NAME.npz             depth, normal and confidence maps per photo
    OUT/work/fusion/mesh.ply            raw surface of the fused depth maps (TSDF)
    OUT/work/mesh/mesh.ply              the product surface (SfM frame, untextured)
    OUT/work/orient.json                SfM frame -> output frame (+Y up, base on y = 0)
    OUT/work/texture/                   textured mesh in the output frame; face_views.npy: the
                                        photo each face was coloured from (-1: none)
    OUT/work/export/NAME                files staged for publishing (NAME in PUBLISHED_FILES)
    OUT/work/passes/PASS/work/          a flipped-object capture (recon.passes): each pass's own
                                        capture.json, images, sfm and masks, in its own frame
    OUT/work/sfm/passes.json            how the passes were joined (the flipped pass's transform)

Stages record completion in state.json; a stage that finished with the same options is skipped
on a re-run (unless `overwrite`), which is what makes a killed job resumable.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from recon.cameras import Camera, read_cameras_json, write_cameras_json

# What a finished job publishes besides report.json, in OUT and staged in OUT/work/export (the
# contract in DESIGN.md: the API serves these names).
MODEL_FILE, USDZ_FILE, POSTER_FILE = "model.glb", "model.usdz", "poster.webp"
THUMBNAIL_FILE = "thumbnail.webp"  # the poster, small, for listings
PUBLISHED_FILES: tuple[str, ...] = (MODEL_FILE, USDZ_FILE, POSTER_FILE, THUMBNAIL_FILE)
# Smaller GLBs for phones (size tiers), published beside the model: model_50k.glb, model_25k.glb
TIER_FILE_PATTERN = "model_*k.glb"


def tier_file(max_faces: int) -> str:
    """The file name of the size tier holding at most `max_faces` triangles."""
    return f"model_{max_faces // 1000}k.glb"


class Workspace:
    """Paths and small read/write helpers for one job folder."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.work_dir = self.out_dir / "work"

    # -- published outputs ------------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        return self.out_dir / MODEL_FILE

    @property
    def usdz_path(self) -> Path:
        return self.out_dir / USDZ_FILE

    @property
    def poster_path(self) -> Path:
        return self.out_dir / POSTER_FILE

    def published_path(self, name: str) -> Path:
        """Where a published file (one of PUBLISHED_FILES) lives in OUT."""
        return self.out_dir / name

    @property
    def report_path(self) -> Path:
        return self.out_dir / "report.json"

    # -- stage files ----------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.work_dir / "state.json"

    @property
    def capture_path(self) -> Path:
        return self.work_dir / "capture.json"

    @property
    def images_dir(self) -> Path:
        return self.work_dir / "images"

    @property
    def sfm_dir(self) -> Path:
        return self.work_dir / "sfm"

    @property
    def sfm_cameras_path(self) -> Path:
        return self.sfm_dir / "cameras.json"

    @property
    def sfm_points_path(self) -> Path:
        return self.sfm_dir / "points.npz"

    @property
    def sfm_images_dir(self) -> Path:
        return self.sfm_dir / "images"

    def sfm_image_path(self, name: str) -> Path:
        """An undistorted photo, matching the pinhole camera of the same name in cameras.json."""
        return self.sfm_images_dir / name

    @property
    def region_path(self) -> Path:
        return self.work_dir / "region.json"

    @property
    def masks_dir(self) -> Path:
        return self.work_dir / "masks"

    @property
    def depth_dir(self) -> Path:
        return self.work_dir / "depth"

    @property
    def fused_mesh_path(self) -> Path:
        return self.work_dir / "fusion" / "mesh.ply"

    @property
    def mesh_path(self) -> Path:
        return self.work_dir / "mesh" / "mesh.ply"

    @property
    def orient_path(self) -> Path:
        return self.work_dir / "orient.json"

    @property
    def texture_dir(self) -> Path:
        return self.work_dir / "texture"

    @property
    def textured_model_path(self) -> Path:
        return self.texture_dir / "model.glb"

    @property
    def face_views_path(self) -> Path:
        """(m,) int photo index (cameras.json order) each mesh face's texture came from, -1 for
        none: size tiers lay out their charts as those photos saw them."""
        return self.texture_dir / "face_views.npy"

    @property
    def export_dir(self) -> Path:
        return self.work_dir / "export"

    def staged_path(self, name: str) -> Path:
        """A published file (one of PUBLISHED_FILES, or a tier) as the export stage leaves it."""
        return self.export_dir / name

    def staged_files(self) -> list[str]:
        """Names of the files the export stage left to publish: PUBLISHED_FILES, then tiers."""
        tiers = sorted(p.name for p in self.export_dir.glob(TIER_FILE_PATTERN))
        return [name for name in PUBLISHED_FILES if self.staged_path(name).exists()] + tiers

    def published_files(self) -> list[str]:
        """Names of the published files in OUT (report.json aside)."""
        tiers = sorted(p.name for p in self.out_dir.glob(TIER_FILE_PATTERN))
        return [name for name in PUBLISHED_FILES if self.published_path(name).exists()] + tiers

    def image_path(self, name: str) -> Path:
        return self.images_dir / name

    def mask_path(self, name: str) -> Path:
        return self.masks_dir / f"{name}.png"

    def depth_path(self, name: str) -> Path:
        return self.depth_dir / f"{name}.npz"

    # -- stage bookkeeping ------------------------------------------------------------------
    def create(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)

    def stage_done(self, stage: str, options: Any) -> bool:
        """True when `stage` finished earlier with the same options."""
        entry = self._state().get(stage)
        return entry is not None and entry.get("options_hash") == options_hash(options)

    def mark_done(
        self, stage: str, options: Any, *, seconds: float, info: dict | None = None
    ) -> None:
        state = self._state()
        state[stage] = {"options_hash": options_hash(options), "seconds": seconds, **(info or {})}
        write_json_atomic(self.state_path, state)

    def forget_from(self, stages: list[str]) -> None:
        """Mark stages as not done (their inputs changed)."""
        state = self._state()
        for stage in stages:
            state.pop(stage, None)
        write_json_atomic(self.state_path, state)

    def stage_info(self, stage: str) -> dict:
        return self._state().get(stage, {})

    def _state(self) -> dict:
        if not self.state_path.exists():
            return {}
        return json.loads(self.state_path.read_text())

    # -- shared data of several stages ------------------------------------------------------
    def read_capture(self) -> dict:
        return json.loads(self.capture_path.read_text())

    def read_sfm_cameras(self) -> list[Camera]:
        return read_cameras_json(self.sfm_cameras_path)

    def write_sfm_cameras(self, cameras: list[Camera], **extra: Any) -> None:
        self.sfm_dir.mkdir(parents=True, exist_ok=True)
        write_cameras_json(self.sfm_cameras_path, cameras, **extra)

    def read_sfm_points(self) -> dict[str, np.ndarray]:
        """Sparse points: xyz (n, 3), rgb (n, 3) uint8, error (n,) px, track (n,) image count,
        and visible_in: (m, 2) int pairs (point index, camera index in cameras.json order)."""
        with np.load(self.sfm_points_path) as data:
            return {key: data[key] for key in data.files}

    def write_sfm_points(self, **arrays: np.ndarray) -> None:
        self.sfm_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.sfm_points_path) as tmp:
            np.savez_compressed(tmp, **arrays)

    # -- sfm internals (added by the sfm stage) -------------------------------------------------
    @property
    def sfm_database_path(self) -> Path:
        """COLMAP database: keypoints, matches and verified image pairs."""
        return self.sfm_dir / "database.db"

    @property
    def passes_path(self) -> Path:
        """How the passes of a flipped-object capture were joined (recon.passes)."""
        return self.sfm_dir / "passes.json"

    def pass_workspace(self, name: str) -> Workspace:
        """The job folder of one pass of a flipped-object capture, inside this one."""
        return Workspace(self.work_dir / "passes" / name)

    @property
    def sfm_model_dir(self) -> Path:
        """The chosen COLMAP model (binary cameras/images/points3D.bin), before undistortion."""
        return self.sfm_dir / "model"


def options_hash(options: Any) -> str:
    """A short stable hash of a (dataclass) options object, to know when a stage must re-run."""
    import dataclasses

    payload = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else options
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON so that a crash leaves either the old file or the new one, never half of one."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1) + "\n")


class atomic_path:  # noqa: N801 - used like a function, as a context manager
    """``with atomic_path(p) as tmp:`` write to tmp; it replaces p only if the block succeeds."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(
            prefix=f".{self.path.stem}.", suffix=self.path.suffix, dir=self.path.parent
        )
        os.close(handle)
        # mkstemp makes files private (0600); published files are read by servers and users.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(name, 0o666 & ~umask)
        self.tmp = Path(name)
        return self.tmp

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)
