"""`reconstruct`: photos in, textured model and report out — the stages run in order, resumably."""

from __future__ import annotations

import dataclasses
import json
import logging
import resource
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from recon import (
    assets,
    capture,
    commerce,
    depth,
    fusion,
    masks,
    meshing,
    orient,
    passes,
    scene,
    sfm,
    texturing,
)
from recon.errors import CaptureError, InputError, QualityError, ReconError, StageError
from recon.progress import ProgressCallback
from recon.report import TrustOptions, build_report, trust_failures
from recon.workspace import MODEL_FILE, USDZ_FILE, Workspace, atomic_path, write_json_atomic

logger = logging.getLogger(__name__)


class Preset(StrEnum):
    """Detail levels (DESIGN.md): working photo size, face budget, texture size."""

    PREVIEW = "preview"  # 800 px, 30k faces, 1024² — a fast check while the merchant waits
    STANDARD = "standard"  # 1600 px, 100k faces, 2048² — the default shop asset
    HIGH = "high"  # full resolution, 250k faces, 4096² — hero products


class Mode(StrEnum):
    """What the photos show (DESIGN.md, "Products and spaces")."""

    OBJECT = "object"  # one product, masked from its background, upright on y = 0
    SCENE = "scene"  # a space filmed inside-out: no mask, floor on y = 0, surfaces reported


@dataclass(frozen=True, kw_only=True)
class ReconOptions:
    """Everything a reconstruction can be told, one part per stage."""

    preset: Preset = Preset.STANDARD
    mode: Mode = Mode.OBJECT  # each stage's part below already says how; this names it
    capture: capture.CaptureOptions = field(default_factory=capture.CaptureOptions)
    sfm: sfm.SfmOptions = field(default_factory=sfm.SfmOptions)
    masks: masks.MaskOptions = field(default_factory=masks.MaskOptions)
    depth: depth.DepthOptions = field(default_factory=depth.DepthOptions)
    fusion: fusion.FusionOptions = field(default_factory=fusion.FusionOptions)
    mesh: meshing.MeshOptions = field(default_factory=meshing.MeshOptions)
    orient: orient.OrientOptions = field(default_factory=orient.OrientOptions)
    texture: texturing.TextureOptions = field(default_factory=texturing.TextureOptions)
    export: assets.AssetOptions = field(default_factory=assets.AssetOptions)
    trust: TrustOptions = field(default_factory=TrustOptions)
    # A flipped-object capture (photos in upright/ and flipped/ folders): how the passes join.
    passes: passes.PassOptions = field(default_factory=passes.PassOptions)
    # SfM's second try, at capture.retry_image_px (None: `sfm` again). Preview's is standard's
    # SfM, so a capture it fails on has failed what standard does.
    sfm_retry: sfm.SfmOptions | None = None

    @classmethod
    def for_preset(
        cls, preset: Preset | str = Preset.STANDARD, mode: Mode | str = Mode.OBJECT
    ) -> ReconOptions:
        preset = Preset(preset)
        if Mode(mode) == Mode.SCENE:
            return cls.for_scene(preset)
        sizes = {
            Preset.PREVIEW: (800, 400, 30_000, 1024, 0.003),
            Preset.STANDARD: (1600, depth.DepthOptions().max_image_px, 100_000, 2048, 0.0015),
            Preset.HIGH: (None, 960, 250_000, 4096, 0.001),
        }
        image_px, depth_px, faces, texture_px, fusion_voxel = sizes[preset]
        # Preview works at 800 px. At 640 SfM placed plain products worse for no time saved
        # (24 × 960 px, 640 -> 800, whole preview run: avocado on plain paper rotation 0.58 ->
        # 0.08°, PSNR 27.6 -> 32.6 dB, 19 -> 22 s; plain mustard 0.13 -> 0.08°, 28.5 -> 29.4
        # dB, 35 -> 29 s; plain cracker box 26.8 -> 28.0 dB, 47 s both; on a table cracker
        # box, soup can, shoe within 0.5 dB and 2 s, WaterBottle 24.3 -> 23.5 dB, 22 -> 27 s).
        # Its depth aims at half standard's mask pixels, 360 px at least (soup can on a table,
        # 320 px at least: depth 12.2 -> 8.4 s, F@1 % 0.989 -> 0.988, F@0.5 % 0.935 -> 0.929;
        # but the printed mat under a 640 px cereal box bled into its base, accuracy@1 % 0.953
        # -> 0.948, and 360 px gives 0.955).
        quick = preset == Preset.PREVIEW
        depth_options = dataclasses.replace(depth.DepthOptions(), max_image_px=depth_px)
        mask_options = masks.MaskOptions()
        sfm_options = sfm.SfmOptions()
        texture_options = texturing.TextureOptions()
        if quick:
            # Only photos under 600 keypoints are searched at twice the size (at 640 px every
            # photo of the plain mustard, cracker box and cereal box but one; products on a
            # table had 650-2500 and are placed without). At 640 px, SfM CPU, soup can on a
            # table 24 -> 8 s (F@1 % 0.986 -> 0.983, PSNR 20.3 -> 19.7 dB), shoe on a table
            # 28 -> 21 s (F@1 % 0.790 -> 0.777, F@0.5 % 0.710 -> 0.663, PSNR 17.9 both).
            # No track completion either: its 0.4-1.3 s buy poses a few hundredths of a degree
            # better (a tenth on the plain WaterBottle), which a preview does not show. No
            # structure-less registration: at 800 px it placed no photo of our captures that
            # PnP did not, and it is slow where it fails (the plain WaterBottle, which 800 px
            # cannot place, failed in 30 s with it, 7.5 s without, before its second try at
            # standard's size and SfM; the turntable mustard bottle's SfM 27.5 -> 11.3 s).
            sfm_options = dataclasses.replace(
                sfm_options,
                upsample_below_features=600,
                complete_tracks=False,
                structure_less_registration=False,
            )
            # Two coarse iterations and a 4 × 4-sample window: depth CPU, soup can on a table
            # 29 -> 20 s (F@1 % 0.989 -> 0.986, PSNR 21.2 -> 20.3 dB), shoe on a table 21 -> 14
            # s (F@1 % 0.793 -> 0.790, PSNR 17.9 both). On the soup can one coarse iteration
            # lost 2.5 dB, three neighbours 5 dB, no geometric pass 4 dB.
            depth_options = dataclasses.replace(
                depth_options,
                target_mask_px=24_000,
                min_image_px=360,
                coarse_iterations=2,
                window_radius_px=3,
            )
            # GrabCut has settled after 2 iterations: the masks differ by 0.3 % of the mask
            # pixels on the soup can on a table, 0.1 % on the shoe, none on the avocado, and
            # cost a fifth to a quarter less (soup can masks CPU 4.3 -> 3.6 s). GrabCut at 256
            # px (the outline is refined at full size anyway) and the table told apart in 6
            # photos, not 10: masks CPU soup can on a table 4.5 -> 2.7 s (F@1 % 0.981 both,
            # PSNR 19.6 -> 19.7 dB), shoe on a table 8.8 -> 6.1 s (F@1 % 0.776 -> 0.773,
            # accuracy@1 % 0.962 -> 0.959, PSNR 18.0 -> 17.8 dB), plain mustard F@1 % 0.998 both.
            mask_options = dataclasses.replace(
                mask_options, grabcut_iterations=2, segment_px=256, table_max_views=6
            )
            # Colours from 12 photos spread round the product, not 22: texture 3.2-3.7 -> 2.4-2.8
            # s, novel-view PSNR mustard on a table 29.53 -> 29.39 dB, avocado on a table 29.22
            # -> 29.27, plain shoe 20.28 -> 20.26, soup can on a table 20.86 -> 20.77.
            texture_options = dataclasses.replace(texture_options, max_photos=12)
        return cls(
            preset=preset,
            # Photos preview cannot place get a second try at standard's size.
            capture=capture.CaptureOptions(
                max_image_px=image_px,
                retry_image_px=sizes[Preset.STANDARD][0] if quick else None,
            ),
            sfm=sfm_options,
            sfm_retry=sfm.SfmOptions() if quick else None,
            masks=mask_options,
            # (Without the geometric depth pass preview is faster, but the sample cereal box's
            # novel-view PSNR fell from 21.4 to 19.4 dB: it stays.)
            depth=depth_options,
            # Preview's surface is closed from the hull too: its truncation, 2.6 of its 0.3 %
            # voxels, is within hull_close_max_truncation_rel (at 4 voxels, 1.2 %, it was not,
            # and its open surface showed the product's inside through holes stereo left in a
            # can's metal lid or a shoe's side). 24 × 960 px, novel-view PSNR: soup can 21.4 ->
            # 27.1 dB plain, 20.8 -> 27.4 on a table; shoe 20.3 -> 24.1, 19.8 -> 23.8; avocado
            # 33.2 -> 35.4, 29.4 -> 35.1; the six others -0.2 to +1.3 dB; fusion and mesh 0.2-0.6
            # s longer. F@1 % as standard's: the avocado 0.958 -> 0.994 on a table, the soup can
            # 0.983 -> 0.954 (its unseen recessed base now closed flat, as standard closes it).
            # Before closing, the hull is carved only where two photos see through it: one
            # photo's too-deep depths, noisier at preview, carved a sheet into the sample cereal
            # box's top (accuracy@1 % 0.890 -> 0.921, as standard's 0.920; the sample mug's hollow
            # F@1 % 0.946 both; the six captures above within 0.1 dB).
            fusion=fusion.FusionOptions(
                voxel_rel=fusion_voxel,
                **({"truncation_voxels": 2.6, "hull_close_carve_views": 2} if quick else {}),
            ),
            mesh=meshing.MeshOptions(max_faces=faces),
            texture=dataclasses.replace(texture_options, texture_size=texture_px),
            # Preview's 30k faces already fit a phone: no size tiers textured afresh.
            export=assets.AssetOptions(
                max_mb=PRESET_MAX_MB[preset], **({"tiers": ()} if quick else {})
            ),
        )

    @classmethod
    def for_scene(cls, preset: Preset | str = Preset.STANDARD) -> ReconOptions:
        """Options for a space filmed inside-out (a shop room): the same stages, sized for a
        room. The budget is the web's (≤ 300k faces, ≤ 4096² texture, GLB ≤ 20 MB); working
        and depth sizes and the fusion voxel keep a 100-frame walk within minutes on 2 cores."""
        preset = Preset(preset)
        image_px, depth_px, faces, texture_px, fusion_voxel = {
            Preset.PREVIEW: (640, 256, 100_000, 1024, 0.004),
            # 100-frame 960 px walk of the shop room: voxel 0.0035 gave F@1 % 0.842, 0.0025
            # gives 0.860 for 2 s more fusion (and 100k faces instead of 50k)
            Preset.STANDARD: (960, 320, 300_000, 2048, 0.0025),
            Preset.HIGH: (1600, 480, 300_000, 4096, 0.0018),
        }[preset]
        scene_options = scene.SceneOptions()
        return cls(
            preset=preset,
            mode=Mode.SCENE,
            capture=capture.CaptureOptions(max_image_px=image_px, max_video_frames=120),
            # A walk: each frame meets its next ones, and a spread-out subsample closes loops.
            sfm=sfm.SfmOptions(
                matcher=sfm.Matcher.SEQUENTIAL,
                sequential_overlap=8,
                loop_closure_photos=30,
                visibility_max_photos=0,  # measured round products only
                max_features=4096,
                upsample_below_features=500,
            ),
            masks=masks.MaskOptions(scene=scene_options),
            # No second, geometric pass: it doubles the time, and a walk's many overlapping
            # frames cross-check each other anyway.
            depth=dataclasses.replace(
                depth.DepthOptions(),
                max_image_px=depth_px,
                min_image_px=depth_px,
                max_views=None,  # a walk's frames are not spread round one point
                geometric_iterations=0,
                # Walking past things, a frame's neighbours each see only part of its view: one
                # agreeing neighbour keeps the rest (fusion still asks two depth maps a voxel).
                min_consistent_views=1,
            ),
            fusion=fusion.FusionOptions(
                voxel_rel=fusion_voxel,
                hull_resolution=0,  # a room has no silhouette to carve
                # keep the floor itself: only depths well under it are dropped
                ground_clearance_rel=-scene_options.below_floor_rel,
            ),
            mesh=meshing.MeshOptions(
                max_faces=faces,
                max_gap_rel=10.0,  # every piece of the room counts, however far apart
                min_component_faces=200,  # smaller pieces floating in a room are stereo noise
                max_hole_perimeter_rel=0.3,  # patch holes up to ~2 m round, not whole walls
                small_hole_perimeter_rel=0.0,  # bent small holes: measured on products only
                ground_band_rel=0.0,  # the floor is kept as fused (no product stands on it)
            ),
            orient=orient.OrientOptions(scene=scene_options),
            # Surface offsets (texturing.refine_surface) and flat faces (recon/planes.py) were
            # measured on products only (offsets ~9 CPU-s for 100k faces and 24 photos); a room
            # has 3× the faces and 4× the frames: off until measured there.
            texture=dataclasses.replace(
                texturing.TextureOptions(),
                texture_size=texture_px,
                offset_search_px=0.0,
                planes=None,
                max_photos=None,  # a walk's frames are not spread round one point
            ),
            # A room is walked through in the browser: no AR file, poster or phone tiers.
            export=assets.AssetOptions(usdz=False, poster=False, tiers=()),
        )

    def with_known_dimensions(self, dimensions_m: Mapping[str, float | None]) -> ReconOptions:
        """These options with the product's known outer size ({"height": 0.3, ...}, metres;
        None or absent: unknown), which scales the model to metres (OrientOptions)."""
        known = {f"{name}_m": value for name, value in dimensions_m.items() if value is not None}
        if not known:
            return self
        return dataclasses.replace(self, orient=dataclasses.replace(self.orient, **known))

    def with_asset_budget(
        self, *, compress: bool = False, max_mb: float | None = None
    ) -> ReconOptions:
        """These options with Draco-compressed GLBs (`compress`) and model.glb fitted under
        `max_mb` MB (None: the preset's budget); the export stage alone re-runs for a change."""
        if max_mb is not None and not max_mb > 0:
            raise InputError(f"the size budget must be above 0 MB, got {max_mb}")
        export = dataclasses.replace(
            self.export, compress=compress, max_mb=self.export.max_mb if max_mb is None else max_mb
        )
        return dataclasses.replace(self, export=export)

    def with_depth_device(self, device: str) -> ReconOptions:
        """These options with the depth search on "cpu" (default) or "cuda" (COLMAP's
        PatchMatch on an NVIDIA GPU: recon.patchmatch_cuda)."""
        options = dataclasses.replace(self, depth=dataclasses.replace(self.depth, device=device))
        try:  # refused now, not after SfM
            depth.search_device(options.depth)
        except StageError as error:
            raise InputError(error.why) from error
        return options


@dataclass(frozen=True)
class Result:
    out_dir: Path
    model_path: Path
    report_path: Path
    report: dict


# model.glb size budget per preset, MB (assets.fit_budget): the Khronos 3D Commerce target for
# web and mobile AR ("ideally less than 5MB") for shop assets; Google's and Shopify's 15 MB limit
# for hero products (recon/commerce.py cites them).
PRESET_MAX_MB: dict[Preset, float] = {Preset.PREVIEW: 5.0, Preset.STANDARD: 5.0, Preset.HIGH: 15.0}

# Order matters: each stage reads what the ones before it wrote.
STAGES: tuple[str, ...] = (
    "capture", "sfm", "masks", "depth", "fusion", "mesh", "orient", "texture", "export",
)  # fmt: skip

# Each stage's typical share of a standard run's time (24 photos, this benchmark's split), so a
# job's overall progress and ETA advance at a steady pace.
STAGE_SHARE: dict[str, float] = {
    "capture": 0.02, "sfm": 0.25, "masks": 0.04, "depth": 0.42, "fusion": 0.03, "mesh": 0.03,
    "orient": 0.01, "texture": 0.12, "export": 0.08,
}  # fmt: skip


def overall_fraction(stage: str, fraction: float) -> float:
    """The whole run's fraction done when `stage` is `fraction` done (stages run in order)."""
    if stage not in STAGE_SHARE:
        return 0.0
    before = sum(STAGE_SHARE[s] for s in STAGES[: STAGES.index(stage)])
    return min(1.0, before + STAGE_SHARE[stage] * min(max(fraction, 0.0), 1.0))


def reconstruct(
    input_path: Path | str,
    out_dir: Path | str,
    options: ReconOptions | None = None,
    *,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> Result:
    """Reconstruct the photos at `input_path` (a folder or .zip) into `out_dir`.

    Finished stages are kept in ``out_dir/work`` and skipped when run again with the same
    options, so a killed job continues where it stopped; `overwrite` starts afresh. The model
    and report appear in `out_dir` only when everything succeeded.
    """
    options = options or ReconOptions()
    input_path, out_dir = Path(input_path), Path(out_dir)
    if not input_path.exists():
        raise InputError(f"{input_path} does not exist: give a folder of photos or a .zip of them")
    workspace = Workspace(out_dir)
    created_out_dir = not out_dir.exists()
    if overwrite and workspace.work_dir.exists():
        shutil.rmtree(workspace.work_dir)
    workspace.create()
    runners: dict[str, Callable[[], Any]] = {
        "capture": lambda: capture.run(input_path, workspace, options.capture, progress=progress),
        "sfm": lambda: place_photos(input_path, workspace, options, progress=progress),
        "masks": lambda: (
            passes.run_masks(workspace, options.masks, progress=progress)
            if passes.has_passes(workspace)
            else masks.run(workspace, options.masks, progress=progress)
        ),
        "depth": lambda: depth.run(workspace, options.depth, progress=progress),
        "fusion": lambda: fusion.run(workspace, options.fusion, progress=progress),
        "mesh": lambda: meshing.run(workspace, options.mesh, progress=progress),
        "orient": lambda: orient.run(workspace, options.orient, progress=progress),
        "texture": lambda: texturing.run(workspace, options.texture, progress=progress),
        "export": lambda: assets.run(
            workspace, options.export, texture_options=options.texture, progress=progress
        ),
    }
    stage_options = options_by_stage(input_path, options)
    start = time.perf_counter()
    rerun_rest = False
    try:
        for stage in STAGES:
            if not rerun_rest and workspace.stage_done(stage, stage_options[stage]):
                logger.info("%s: already done, skipped", stage)
                continue
            if not rerun_rest:  # this stage and all after it are stale: unpublish the old model
                unpublish(workspace)
            rerun_rest = True
            stage_start = time.perf_counter()
            result = runners[stage]()
            info = stage_info(result)
            info["peak_memory_mb"] = peak_memory_mb()
            workspace.mark_done(
                stage, stage_options[stage], seconds=time.perf_counter() - stage_start, info=info
            )
    except ReconError:
        if workspace.stage_info("capture") == {} and created_out_dir:
            shutil.rmtree(out_dir, ignore_errors=True)  # bad input: leave nothing behind
        raise
    report = build_report(workspace, options, total_seconds=time.perf_counter() - start)
    exported = workspace.stage_info("export")
    report["warnings"] += exported.get("warnings", [])
    report["files"] = {
        name: workspace.staged_path(name).stat().st_size for name in workspace.staged_files()
    }
    report["tiers"] = exported.get("tiers", [])
    report["usdz"] = {
        "arkit_compliant": exported.get("usdz_arkit_compliant"),
        # glTF's unit is the metre; the USDZ says so too, whatever `units` is
        "meters_per_unit": options.export.usdz_options.meters_per_unit,
        "up_axis": "Y",
    }
    # model.glb as written (after compression and the budget): bytes, faces, texture size
    report["glb"] = exported.get("glb", {})
    if exported.get("budget") is not None:
        report["budget"] = exported["budget"]
    report["commerce"] = commerce.check(
        workspace.staged_path(MODEL_FILE),
        usdz_path=workspace.staged_path(USDZ_FILE),
        units=report["units"],
        up_source=report["orientation"]["up"],
        usdz_arkit_compliant=exported.get("usdz_arkit_compliant"),
    )
    report["mode"] = str(options.mode)
    if options.mode == Mode.SCENE:
        surfaces, warnings = scene.scene_report(workspace.staged_path(MODEL_FILE), report)
        report["surfaces"] = surfaces
        report["warnings"] += warnings
    failures = trust_failures(report, options.trust)
    if failures:
        report["status"] = "failed"
        report["failure"] = {"stage": "quality", "reasons": failures}
        publish_failure(workspace, report)
        raise QualityError(
            "the model is not published, as its quality figures say it is wrong: "
            + "; ".join(failures)
            + f" (figures in {workspace.report_path})"
        )
    publish(workspace, report)
    return Result(out_dir, workspace.model_path, workspace.report_path, report)


def options_by_stage(input_path: Path, options: ReconOptions) -> dict[str, Any]:
    """What each stage's checkpoint is kept for (workspace.mark_done): a stage whose entry
    changes runs again, and so do the stages after it."""
    sfm_extras = {
        name: value
        for name, value, default in (
            ("passes", options.passes, passes.PassOptions()),
            ("retry", options.sfm_retry, None),
        )
        if value != default
    }
    return {
        "capture": {"input": str(input_path.resolve()), "options": options.capture},
        "sfm": {"sfm": options.sfm, **sfm_extras} if sfm_extras else options.sfm,
        "masks": options.masks,
        "depth": options.depth,
        "fusion": options.fusion,
        "mesh": options.mesh,
        "orient": options.orient,
        "texture": options.texture,
        "export": options.export,
    }


def place_photos(
    input_path: Path,
    workspace: Workspace,
    options: ReconOptions,
    *,
    progress: ProgressCallback | None = None,
) -> Any:
    """The sfm stage. A capture in two passes (upright, flipped) places and masks each pass,
    then joins them. Photos shrunk for speed that cannot be placed are taken in again larger
    (`CaptureOptions.retry_image_px`, preview's) and placed once more, by `sfm_retry`
    (preview's: standard's SfM): a failure then means the capture, not the preset, and a
    merchant is not told to reshoot what standard places. So are photos of which the first
    try placed too few for the model to be published (`TrustOptions.too_few_placed`)."""

    def place(sfm_options: sfm.SfmOptions) -> Any:
        if passes.has_passes(workspace):
            return passes.run_sfm(
                workspace, sfm_options, options.masks, options.passes, progress=progress
            )
        return sfm.run(workspace, sfm_options, progress=progress)

    if capture.was_retried(workspace):  # resumed during the second try
        return place(options.sfm_retry or options.sfm)
    failure: CaptureError | None = None
    try:
        placed = place(options.sfm)
    except CaptureError as error:
        failure, why = error, str(error)
    else:
        # (The plain WaterBottle's 1920 px photos: 8 of 24 placed at 800 px, all at 1600.)
        if not options.trust.too_few_placed(placed.registered / placed.total):
            return placed
        why = f"only {placed.registered} of {placed.total} photos were placed"
    size = capture.retry_size(workspace, options.capture)
    if size is None:
        if failure is not None:
            raise failure
        return placed
    first_size = capture.working_long_side(workspace)
    logger.warning("sfm: %s; taking the photos in again at %d px", why, size)
    larger = dataclasses.replace(options.capture, max_image_px=size)

    def retaking(_stage: str, _fraction: float, message: str) -> None:
        if progress is not None:  # still the sfm stage: a job's progress does not go back
            progress("sfm", 0.0, f"taking the photos in again at {size} px: {message}")

    capture.run(input_path, workspace, larger, progress=retaking)
    capture.note_retry(workspace, first_size)  # kept through a kill and resume from here on
    return place(options.sfm_retry or options.sfm)


def peak_memory_mb() -> float:
    """This process's peak resident memory so far (Linux reports it in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def stage_info(result: Any) -> dict:
    """The small facts of a stage result worth keeping (counts, flags), JSON-safe."""
    if not dataclasses.is_dataclass(result):
        return {}
    info = {}
    for item in dataclasses.fields(result):
        value = getattr(result, item.name)
        plain = isinstance(value, bool | int | float | str) or (
            isinstance(value, list) and all(isinstance(v, dict | str) for v in value)
        )
        # JSON-safe dicts too: e.g. the export's glb facts and budget record
        if plain or (isinstance(value, dict) and _json_safe(value)):
            info[item.name] = value
    return info


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def publish(workspace: Workspace, report: dict) -> None:
    """Move the staged files (model.glb, model.usdz, poster.webp, size tiers) into place, each
    under a temporary name then renamed, and the report last: a report means a complete job.

    The staged copies stay in the workspace, so a resumed job can publish again.
    """
    staged = workspace.staged_files()
    for name in set(workspace.published_files()) - set(staged):
        workspace.published_path(name).unlink()  # e.g. no poster without OpenGL this time
    for name in staged:
        with atomic_path(workspace.published_path(name)) as tmp:
            shutil.copyfile(workspace.staged_path(name), tmp)
    write_json_atomic(workspace.report_path, report)


def publish_failure(workspace: Workspace, report: dict) -> None:
    """Publish only the report of a model judged wrong (status "failed", its reasons): the
    merchant learns why, and no asset is there for a shop to show."""
    unpublish(workspace)
    write_json_atomic(workspace.report_path, report)


def unpublish(workspace: Workspace) -> None:
    """Remove published outputs that the stages about to run will replace (the report first:
    without it, the folder holds no finished job)."""
    workspace.report_path.unlink(missing_ok=True)
    for name in workspace.published_files():
        workspace.published_path(name).unlink(missing_ok=True)
