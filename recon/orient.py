"""Orientation: the transform from the SfM frame to the asset frame (+Y up, front +Z, base at 0)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np
import trimesh

from recon.cameras import Camera
from recon.masks import ObjectRegion
from recon.progress import ProgressCallback
from recon.workspace import Workspace, write_json_atomic


@dataclass(frozen=True, kw_only=True)
class OrientOptions:
    """Where the asset's front is, and its real size when the merchant knows one dimension."""

    front_photo: int = 0  # the product's front faces this photo (index in capture order)
    # Known outer dimensions in metres (height along +Y, width along X, depth along the front
    # axis Z): the first one given, in this order, scales the model to metres.
    height_m: float | None = None
    width_m: float | None = None
    depth_m: float | None = None


@dataclass(frozen=True)
class OrientResult:
    matrix: np.ndarray  # (4, 4) SfM frame -> asset frame
    up_source: str
    bbox: np.ndarray  # (3,) extent of the oriented mesh
    scale_source: str  # "unknown", or the dimension that gave metres ("height_m", ...)
    seconds: float


def run(
    workspace: Workspace,
    options: OrientOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> OrientResult:
    """Find up, front and base of the product and save the transform to orient.json."""
    options = options or OrientOptions()
    start = time.perf_counter()
    region = ObjectRegion.from_json(json.loads(workspace.region_path.read_text()))
    cameras = workspace.read_sfm_cameras()
    mesh = trimesh.load(workspace.mesh_path, process=False)
    front_camera = cameras[min(options.front_photo, len(cameras) - 1)]
    matrix = asset_transform(np.asarray(mesh.vertices), region, front_camera)
    up_source = "table plane" if region.ground is not None else "camera ring"
    oriented = mesh.vertices @ matrix[:3, :3].T + matrix[:3, 3]
    scale, scale_source = known_scale(np.ptp(oriented, axis=0), options)
    matrix[:3] *= scale  # about the origin, the product's bottom centre, which stays put
    bbox = np.ptp(oriented, axis=0) * scale
    write_json_atomic(
        workspace.orient_path,
        {"matrix": matrix.tolist(), "up_source": up_source, "front": front_camera.name,
         "scale": scale_source},
    )  # fmt: skip
    if progress:
        progress("orient", 1.0, up_source)
    return OrientResult(matrix, up_source, bbox, scale_source, time.perf_counter() - start)


def known_scale(extent: np.ndarray, options: OrientOptions) -> tuple[float, str]:
    """(factor to metres, which dimension gave it) from the first known dimension in `options`
    (height, width, depth) and the oriented model's (3,) `extent` (x, y, z); (1, "unknown")
    when none is known."""
    for field_name, axis in (("height_m", 1), ("width_m", 0), ("depth_m", 2)):
        known = getattr(options, field_name)
        if known is not None and known > 0 and extent[axis] > 0:
            return float(known / extent[axis]), field_name
    return 1.0, "unknown"


def asset_transform(vertices: np.ndarray, region: ObjectRegion, front: Camera) -> np.ndarray:
    """(4, 4) rigid transform: `region.up` to +Y, the `front` camera's side to +Z, and the
    bottom centre of the product to the origin."""
    up = region.up / np.linalg.norm(region.up)
    toward_front = front.center - region.center
    toward_front -= (toward_front @ up) * up  # level it: the front is a horizontal direction
    if np.linalg.norm(toward_front) < 1e-9:  # the photo looks straight down: any front will do
        toward_front = np.cross(up, [1.0, 0.0, 0.0] if abs(up[0]) < 0.9 else [0.0, 0.0, 1.0])
    z_axis = toward_front / np.linalg.norm(toward_front)
    x_axis = np.cross(up, z_axis)
    rotation = np.stack([x_axis, up, z_axis])  # rows: where the new axes point in the old frame
    rotated = vertices @ rotation.T
    low, high = rotated.min(axis=0), rotated.max(axis=0)
    # The product stands on the table when one was seen; otherwise on its lowest point.
    base = -region.ground[3] if region.ground is not None else low[1]
    matrix = np.eye(4)
    matrix[:3, :3] = rotation
    matrix[:3, 3] = -np.array([(low[0] + high[0]) / 2, base, (low[2] + high[2]) / 2])
    return matrix
