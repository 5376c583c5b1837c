"""report.json: what a reconstruction made and how (the contract in DESIGN.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from recon import capture_qa, fidelity
from recon.errors import ReconError
from recon.masks import MaskOptions
from recon.textured_mesh import load_textured_mesh
from recon.workspace import Workspace

REPORT_VERSION = 1
# Below these, a held-out photo disagrees with the model (recon/fidelity.py). The IoU is taken
# against the photo's product mask, which can itself hold bits of a mat or shadow (a cracker
# box on the printed mat, its model right: 0.81), so only a clear disagreement warns.
FIDELITY_MIN_IOU = 0.75
FIDELITY_MIN_PSNR_DB = 12.0
UNKNOWN_SCALE_WARNING = (
    "scale unknown: the model's units are arbitrary; give a known dimension or put the printed "
    "scale mat in the photos for real-world size"
)


@dataclass(frozen=True, kw_only=True)
class TrustOptions:
    """When the report's quality figures say the model is wrong. Such a model is not published:
    report.json says status "failed" with the reasons (`trust_failures`). Good captures sit far
    from these bars (all photos placed, 0.3-0.8 px, mask agreement and held-out outlines
    0.95-1.0); a model that misses them is partial, misplaced or not the product."""

    # fewer photos placed: the sides only the others show are guessed or missing
    min_registered_share: float = 0.5
    # the photos disagree about where the cameras were: the geometry cannot be right
    max_reprojection_error_px: float = 2.0
    # the model's outline against the product masks (mean over a dozen placed photos)
    min_mask_iou: float = 0.6
    # the model's outline against photos held out of texturing (the worst one)
    min_fidelity_iou: float = 0.5

    def too_few_placed(self, share: float) -> bool:
        """Whether a model placing this share of the photos is refused (`min_registered_share`)."""
        return share < self.min_registered_share


def trust_failures(report: dict, options: TrustOptions | None = None) -> list[str]:
    """Why the report's own figures say its model is wrong, each with what to do; [] if none."""
    options = options or TrustOptions()
    quality = report.get("quality") or {}
    failures = []
    share = quality.get("registered_share")
    if share is not None and options.too_few_placed(share):
        images = report.get("images", {})
        failures.append(
            f"only {images.get('registered')} of {images.get('total')} photos could be placed "
            f"({share:.0%}, under {options.min_registered_share:.0%}): the model would miss or "
            "guess the sides the others show. Retake the photos with more overlap (a step of "
            "about 15° around the product) and the product filling the frame"
        )
    error = quality.get("mean_reprojection_error_px")
    if error is not None and error > options.max_reprojection_error_px:
        failures.append(
            f"the photos disagree about where they were taken from (reprojection error "
            f"{error:.2f} px, over {options.max_reprojection_error_px} px): the shape cannot be "
            "trusted. Keep the product still, avoid zoom changes and moving backgrounds"
        )
    agreement = quality.get("mask_agreement") or {}
    mean_iou = agreement.get("mean_iou")
    if mean_iou is not None and mean_iou < options.min_mask_iou:
        failures.append(
            f"the model's outline matches the product in the photos only {mean_iou:.0%} on "
            f"average (under {options.min_mask_iou:.0%}; worst {agreement.get('worst_image')}): "
            "the model is not the product's shape. Photograph the product against a plain, "
            "contrasting background, filling the frame"
        )
    held_out = (report.get("fidelity") or {}).get("silhouette_iou_min")
    if held_out is not None and held_out < options.min_fidelity_iou:
        failures.append(
            f"seen from a photo kept out of the texture to check it, the model's outline matches "
            f"the product only {held_out:.0%} (under {options.min_fidelity_iou:.0%}): parts are "
            "missing, extra or misplaced. Add photos of every side with more overlap"
        )
    return failures


def placement_warnings(order_check: dict) -> list[str]:
    """A warning when SfM kept photos that, placed, do not go round the product in the order
    they were taken (sfm.check_capture_order's "walks_in_order") and placing them ring by ring
    did not replace them: right for photos not taken in order, a misplaced photo otherwise."""
    if order_check.get("walks_in_order") is not False or order_check.get("rings", {}).get("kept"):
        return []
    return [
        "the photos, as placed, do not go round the product in the order they were taken "
        "(successive photos jump or turn back): if they were taken in order, one may be placed "
        "on the wrong side of a face that looks alike. Look at the model from every side; a "
        "capture in one steady walk round the product, each photo overlapping the last, avoids it"
    ]


def agreement_warnings(match_agreement: dict) -> list[str]:
    """A warning per photo whose verified matches the model mostly contradicts (sfm's
    "match_agreement" "doubtful": placed far from where its matches put it)."""
    return [
        f"{name}: only {share:.0%} of its matches with other photos agree with where it was "
        "placed: it may be misplaced, and the model wrong where it sees. Look at the model from "
        "its side; retake that photo overlapping its neighbours"
        for name, share in match_agreement.get("doubtful", {}).items()
    ]


def build_report(workspace: Workspace, options: Any, *, total_seconds: float) -> dict:
    """The report of a finished reconstruction, read from its workspace."""
    capture_info = workspace.read_capture()
    sfm_info = json.loads(workspace.sfm_cameras_path.read_text())
    orientation = json.loads(workspace.orient_path.read_text())
    to_asset = np.asarray(orientation["matrix"], dtype=np.float64)
    cameras = [camera.transformed(to_asset) for camera in workspace.read_sfm_cameras()]
    points = workspace.read_sfm_points()
    model = load_textured_mesh(workspace.textured_model_path)
    bounds = model.bounds
    vertices = sum(len(p.vertices) for p in model.primitives)
    faces = sum(len(p.faces) for p in model.primitives)
    textures = [p.texture.shape[0] for p in model.primitives if p.texture is not None]
    rejected = list(capture_info.get("rejected", [])) + list(sfm_info.get("unregistered", []))
    warnings = list(capture_info.get("warnings", []))
    warnings += [
        f"{item['image']} not used: {item['reason']}" for item in sfm_info.get("unregistered", [])
    ]
    # (A capture in passes placed each pass on its own.)
    by_pass = sfm_info.get("order_check_by_pass", {}).values()
    for order_check in (sfm_info.get("order_check", {}), *by_pass):
        warnings += placement_warnings(order_check)
    warnings += agreement_warnings(sfm_info.get("match_agreement", {}))
    scale_known = orientation.get("scale", "unknown") != "unknown"
    if not scale_known:
        warnings.append(UNKNOWN_SCALE_WARNING)
    warnings += orientation.get("warnings", [])  # the printed mat: unusable, or contradicted
    fidelity_section = fidelity.summarise(workspace.stage_info("texture").get("fidelity", []))
    depth_info = workspace.stage_info("depth")
    warnings += fidelity_warnings(fidelity_section)
    state = json.loads(workspace.state_path.read_text())
    timings = {stage: round(float(info["seconds"]), 3) for stage, info in state.items()}
    timings["total"] = round(total_seconds, 3)
    # Peak memory so far after each stage (of the process that ran it; resumed runs start anew).
    memory = {
        stage: info["peak_memory_mb"] for stage, info in state.items() if "peak_memory_mb" in info
    }
    qa = capture_qa.after_reconstruction(
        capture_info,
        cameras,
        center=bounds.mean(axis=0),
        up=np.array([0.0, 1.0, 0.0]),  # the model frame's up (orient)
        unregistered=sfm_info.get("unregistered", []),
    )
    return {
        "version": REPORT_VERSION,
        "status": "succeeded",
        "preset": str(getattr(options, "preset", "")),
        "units": "metre" if scale_known else "unknown",
        "images": {
            "total": len(capture_info["images"]) + len(capture_info.get("rejected", [])),
            "registered": len(cameras),
            "rejected": rejected,
        },
        "cameras": [camera.to_json() for camera in cameras],
        "sfm": {
            "points": len(points["xyz"]),
            "mean_reprojection_error_px": sfm_info.get("mean_reprojection_error_px"),
            # share of expected sightings that the photos show (sfm.visibility_consistency)
            "visibility_consistency": sfm_info.get("visibility_consistency"),
        },
        # What kind of capture SfM saw: a turntable's still room is left out of placing the
        # photos (recon.turntable); its "message" says so to the merchant.
        "capture": {"turntable": sfm_info.get("turntable", {"detected": False, "checked": False})},
        # Where and at what size the depth maps were searched (recon.depth).
        "depth": {
            key: depth_info[key]
            for key in ("device", "long_side_px", "views", "valid_fraction")
            if key in depth_info
        },
        "mesh": {
            "vertices": vertices,
            "faces": faces,
            "bbox_m": np.ptp(bounds, axis=0).round(6).tolist(),
        },
        "texture": {"size": max(textures) if textures else 0},
        "orientation": {
            "up": orientation["up_source"],
            "front": orientation["front"],
            "scale": orientation.get("scale", "unknown"),
            "sfm_to_model": to_asset.round(12).tolist(),
        },
        "scale": scale_section(orientation, to_asset),
        "fidelity": fidelity_section,
        "timings_s": timings,
        "peak_memory_mb": memory,
        "warnings": warnings,
        "capture_qa": qa.to_json(),
        "quality": quality_figures(
            workspace, capture_info, sfm_info, cameras, model, qa, options=options
        ),
    }


def quality_figures(
    workspace: Workspace, capture_info: dict, sfm_info: dict, cameras: list, model: Any,
    qa: capture_qa.QaResult, *, options: Any = None,
) -> dict:  # fmt: skip
    """How far to trust the model: the share of photos placed, their reprojection error,
    how well the model's silhouettes match the product masks, and the coverage around it."""
    taken = len(capture_info["images"])
    masked = [c for c in cameras if workspace.mask_path(c.name).exists()]
    masked = masked[:: -(-len(masked) // 12) or 1]  # a dozen views spread round: ~1 s
    agreement = None
    if masked:
        # Silhouettes only: the model drawn without its texture (uploading a 2048² map and
        # its mipmaps, and sampling it, cost 0.3 s and change no pixel of the outline).
        outline = replace(
            model, primitives=tuple(replace(p, texture=None) for p in model.primitives)
        )
        try:
            ious = capture_qa.mask_agreement(
                masked,
                outline,
                [_read_mask(workspace.mask_path(c.name)) for c in masked],
                grow_rel=getattr(options, "masks", MaskOptions()).mask_dilate_rel,
            )
        except ReconError as error:  # no OpenGL here: the figure is left out, not the report
            agreement = {"error": str(error)}
        else:
            worst = int(np.argmin(ious))
            agreement = {
                "mean_iou": round(float(np.mean(ious)), 4),
                "min_iou": round(ious[worst], 4),
                "worst_image": masked[worst].name,
                "photos": len(ious),
            }
    coverage = qa.coverage or {}
    return {
        "registered_share": round(len(cameras) / taken, 4) if taken else 0.0,
        "mean_reprojection_error_px": sfm_info.get("mean_reprojection_error_px"),
        # share of each photo's verified matches the placement explains: median, worst photo
        "match_agreement": {
            key: value
            for key, value in sfm_info.get("match_agreement", {}).items()
            if key in ("median", "min", "worst_image")
        }
        or None,
        "mask_agreement": agreement,
        "coverage": {
            key: coverage.get(key)
            for key in ("largest_gap_deg", "elevation_deg", "views_from_above", "gaps")
        },
        "capture_verdict": qa.verdict,
    }


def _read_mask(path: Any) -> np.ndarray:
    import cv2

    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise OSError(f"{path} cannot be read")
    return mask


def fidelity_warnings(section: dict) -> list[str]:
    """Warnings when the model, drawn from photos kept out of texturing, does not match them."""
    warnings = []
    for item in section["per_photo"]:
        iou, psnr = item["silhouette_iou"], item["psnr_db"]
        if iou is not None and iou < FIDELITY_MIN_IOU:
            warnings.append(
                f"the model's outline matches the product's outline in {item['image']} only "
                f"{iou:.0%} (a photo kept out of the texture to check the model): parts of the "
                "product may be missing or extra; look at the model from that side, and add "
                "photos of it if so"
            )
        if psnr is not None and psnr < FIDELITY_MIN_PSNR_DB:
            warnings.append(
                f"the model's colours differ from {item['image']} ({psnr:.1f} dB, kept out of the "
                "texture to check the model): check the texture from that side"
            )
    return warnings


def scale_section(orientation: dict, to_asset: np.ndarray) -> dict:
    """Where the model's size came from: the printed mat (what it measured), a known dimension,
    or nothing ("unknown")."""
    source = orientation.get("scale", "unknown")
    section: dict = {
        "source": source,
        # metres per SfM unit: the scale of the SfM-to-model transform
        "metres_per_unit": None
        if source == "unknown"
        else round(float(np.cbrt(np.linalg.det(to_asset[:3, :3]))), 12),
    }
    if "mat" in orientation:
        section["mat"] = orientation["mat"]
    return section
