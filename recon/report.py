"""report.json: what a reconstruction made and how (the contract in DESIGN.md)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from recon.textured_mesh import load_textured_mesh
from recon.workspace import Workspace

REPORT_VERSION = 1
UNKNOWN_SCALE_WARNING = (
    "scale unknown: the model's units are arbitrary; give a known dimension or put the printed "
    "scale mat in the photos for real-world size"
)


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
    scale_known = orientation.get("scale", "unknown") != "unknown"
    if not scale_known:
        warnings.append(UNKNOWN_SCALE_WARNING)
    state = json.loads(workspace.state_path.read_text())
    timings = {stage: round(float(info["seconds"]), 3) for stage, info in state.items()}
    timings["total"] = round(total_seconds, 3)
    # Peak memory so far after each stage (of the process that ran it; resumed runs start anew).
    memory = {
        stage: info["peak_memory_mb"] for stage, info in state.items() if "peak_memory_mb" in info
    }
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
        "timings_s": timings,
        "peak_memory_mb": memory,
        "warnings": warnings,
    }
