"""Orientation: the transform from the SfM frame to the asset frame (+Y up, front +Z, base at 0)."""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import trimesh

from recon.cameras import Camera
from recon.masks import ObjectRegion
from recon.mat import MatFinding, MatFit, MatOptions, detect_mat
from recon.progress import ProgressCallback
from recon.workspace import Workspace, write_json_atomic

if TYPE_CHECKING:
    from recon.scene import SceneOptions


@dataclass(frozen=True, kw_only=True)
class OrientOptions:
    """Where the asset's front is, and its real size: from the printed scale mat in the photos,
    else from one dimension the merchant knows."""

    front_photo: int = 0  # the product's front faces this photo (index in capture order)
    # Known outer dimensions in metres (height along +Y, width along X, depth along the front
    # axis Z): the first one given, in this order, scales the model to metres.
    height_m: float | None = None
    width_m: float | None = None
    depth_m: float | None = None
    find_mat: bool = True  # look for the printed scale mat (`recon mat`) under a product
    mat: MatOptions = field(default_factory=MatOptions)
    # The mat wins over a known dimension; beyond this relative difference the report warns.
    max_scale_disagreement: float = 0.02
    # A mat tilted further than this from the photos' up (propped against something) gives
    # the scale but not the ground.
    max_mat_tilt_deg: float = 30.0
    # A scene (recon.scene): the floor on y = 0, walls along X and Z, centred; None: a product.
    scene: SceneOptions | None = None


# The dimensions a merchant may type, in the order they are taken, and their asset axes.
KNOWN_DIMENSION_AXES = {"height_m": 1, "width_m": 0, "depth_m": 2}


@dataclass(frozen=True)
class OrientResult:
    matrix: np.ndarray  # (4, 4) SfM frame -> asset frame
    up_source: str
    bbox: np.ndarray  # (3,) extent of the oriented mesh
    scale_source: str  # "unknown", "mat", or the dimension that gave metres ("height_m", ...)
    seconds: float
    mat_found: bool = False
    warnings: list[str] = field(default_factory=list)


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
    finding = MatFinding()
    if options.find_mat and options.scene is None:
        paths = [workspace.sfm_image_path(camera.name) for camera in cameras]
        finding = detect_mat(cameras, paths, options.mat)
    region, mat_ground, warnings = stand_on_mat(region, finding, options)
    if options.scene is not None:
        from recon.scene import scene_transform  # scene imports masks, which this imports

        matrix, up_source = scene_transform(
            np.asarray(mesh.vertices), np.asarray(mesh.faces), region, options.scene
        )
    else:
        matrix = asset_transform(np.asarray(mesh.vertices), region, front_camera)
        up_source = "table plane" if region.ground is not None else "camera ring"
        up_source = "printed mat" if mat_ground else up_source
    oriented = mesh.vertices @ matrix[:3, :3].T + matrix[:3, 3]
    extent = np.ptp(oriented, axis=0)
    scale, scale_source = known_scale(extent, options)
    if finding.fit is not None:  # the mat first: it measures, where a typed size may be a guess
        warnings += scale_disagreement(extent, finding.fit, options)
        scale, scale_source = finding.fit.metres_per_unit, "mat"
    matrix[:3] *= scale  # about the origin, the product's bottom centre, which stays put
    bbox = extent * scale
    # A typed dimension is what the finished model must measure: the texture stage, which
    # still moves the surface (offsets, planes), holds it to it (hold_known_size).
    known = {}
    if scale_source in KNOWN_DIMENSION_AXES:
        known = {"known_m": {"axis": KNOWN_DIMENSION_AXES[scale_source],
                             "metres": float(getattr(options, scale_source))}}  # fmt: skip
    write_json_atomic(
        workspace.orient_path,
        {"matrix": matrix.tolist(), "up_source": up_source, "front": front_camera.name,
         "scale": scale_source, "mat": finding.to_json(), "warnings": warnings, **known},
    )  # fmt: skip
    if progress:
        progress("orient", 1.0, up_source)
    return OrientResult(
        matrix, up_source, bbox, scale_source, time.perf_counter() - start,
        mat_found=finding.fit is not None, warnings=warnings,
    )  # fmt: skip


def stand_on_mat(
    region: ObjectRegion, finding: MatFinding, options: OrientOptions
) -> tuple[ObjectRegion, bool, list[str]]:
    """The region with the mat's plane as its ground and the mat's normal as up, when the
    mat was found lying flat enough; whether it was; warnings about the mat."""
    warnings = [finding.problem] if finding.problem else []
    if finding.fit is None:
        return region, False, warnings
    if disagreeing := finding.fit.disagreeing:
        names = ", ".join(disagreeing[:4]) + (", ..." if len(disagreeing) > 4 else "")
        warnings.append(
            f"{len(disagreeing)} photo(s) ({names}) see the printed mat far from where the "
            "others place it: their cameras are misplaced (sides that look alike can fold the "
            "ring of photos), so the model is likely wrong; retake with the mat in every photo"
        )
    tilt = _angle_deg(finding.fit.up, region.up)
    if tilt > options.max_mat_tilt_deg:
        warnings.append(
            f"the printed mat is tilted {tilt:.0f}° from the photos' up: it gave the size but "
            "not the ground; lay it flat under the product"
        )
        return region, False, warnings
    ground = dataclasses.replace(region, up=finding.fit.up, ground=finding.fit.plane)
    return ground, True, warnings


def scale_disagreement(extent: np.ndarray, fit: MatFit, options: OrientOptions) -> list[str]:
    """A warning for each known dimension that the mat's scale contradicts by more than
    `options.max_scale_disagreement` (`extent`: (3,) the oriented model's, in SfM units)."""
    warnings = []
    for field_name, axis in (("height_m", 1), ("width_m", 0), ("depth_m", 2)):
        known = getattr(options, field_name)
        if known is None or extent[axis] <= 0:
            continue
        measured = extent[axis] * fit.metres_per_unit
        if abs(measured / known - 1) > options.max_scale_disagreement:
            warnings.append(
                f"the printed mat makes the product {measured:.3f} m in {field_name[:-2]} but "
                f"{known:g} m was given: the mat's scale was kept; if the given size is right, "
                "the mat was not printed at 100 % (its ruler must measure 10 cm)"
            )
    return warnings


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))


def known_scale(extent: np.ndarray, options: OrientOptions) -> tuple[float, str]:
    """(factor to metres, which dimension gave it) from the first known dimension in `options`
    (height, width, depth) and the oriented model's (3,) `extent` (x, y, z); (1, "unknown")
    when none is known."""
    for field_name, axis in KNOWN_DIMENSION_AXES.items():
        known = getattr(options, field_name)
        if known is not None and known > 0 and extent[axis] > 0:
            return float(known / extent[axis]), field_name
    return 1.0, "unknown"


def hold_known_size(orient_path: Path, vertices: np.ndarray) -> float:
    """The factor that gives the asset-frame `vertices` the dimension typed for the model
    (orient.json's "known_m"), about the origin (the bottom centre); 1 when none was typed.
    orient.json's matrix takes the factor too, so the cameras and size tiers stay in the
    model's frame.

    The orient stage measured the surface as meshed; the texture stage moves it after (a box's
    top flattened onto its plane lost the rim's zigzag: a typed 30 cm came out 29.88)."""
    if not Path(orient_path).exists():  # a workspace textured without orienting: no size
        return 1.0
    orientation = json.loads(Path(orient_path).read_text())
    known = orientation.get("known_m")
    if known is None:
        return 1.0
    extent = float(np.ptp(vertices[:, known["axis"]]))
    factor = known["metres"] / extent if extent > 0 else 1.0
    if factor != 1.0:
        matrix = np.asarray(orientation["matrix"], dtype=np.float64)
        matrix[:3] *= factor
        write_json_atomic(orient_path, {**orientation, "matrix": matrix.tolist()})
    return factor


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
