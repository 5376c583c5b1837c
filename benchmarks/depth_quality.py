"""Benchmark the depth stage against exact truth: completeness, accuracy and seconds per view.

For each synthetic capture (the bundled sample captures, or any made with ``recon synth``) this
builds a job folder from the capture's truth (its photos as undistorted images, its cameras, sparse
points sampled from the truth surface where each camera sees it, and its product masks grown
by the masks stage's safety margin, as the pipeline's masks are), runs
`recon.depth.run`, renders the truth depth at every depth map's camera and reports, inside the
truth silhouettes:

- completeness: fraction of silhouette pixels with a valid depth,
- accuracy: fraction of valid depths within 0.25 % / 0.5 % / 1 % of the truth bounding-box
  diagonal of the truth depth,
- spill: valid depths outside the silhouette, as a fraction of the valid depths,
- surface precision: fraction of the depth maps' 3D points (a sample) within each tolerance
  of the truth surface, which is what fusion's precision will see,
- seconds per view, wall and CPU (all threads; on a busy machine CPU / cores is the better
  guide to the wall time an idle machine would take), after a warm-up run that compiles the
  numba kernels.

    python benchmarks/depth_quality.py --out out/bench/depth.json [CAPTURE ...] [--no-masks]
        [--max-image-px 480] [--views 24]

Without CAPTURE arguments it uses the three sample captures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import trimesh

from recon import depth as depth_stage
from recon.cameras import Camera, read_cameras_json
from recon.masks import MaskOptions
from recon.morphology import grow_mask
from recon.render import OffscreenRenderer
from recon.textured_mesh import from_trimesh
from recon.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]

TOLERANCES = (0.0025, 0.005, 0.01)  # fractions of the truth bounding-box diagonal


def prepare_workspace(
    capture: Path,
    out_dir: Path,
    *,
    masks: bool = True,
    views: int | None = None,
    points: int = 20000,
    seed: int = 0,
    mask_margin_rel: float = MaskOptions().mask_dilate_rel,
) -> Workspace:
    """A job folder holding what the depth stage reads, made from a synthetic capture's truth.

    The truth masks grow by `mask_margin_rel` × the long side, as the masks stage grows its own
    (the depth stage searches in them as they are)."""
    capture = Path(capture)
    workspace = Workspace(out_dir)
    workspace.create()
    cameras = read_cameras_json(capture / "truth" / "cameras.json")
    if views is not None:
        cameras = cameras[:: max(1, len(cameras) // views)][:views]
    workspace.write_sfm_cameras(cameras)
    workspace.sfm_images_dir.mkdir(parents=True, exist_ok=True)
    for camera in cameras:
        shutil.copy(capture / "images" / camera.name, workspace.sfm_image_path(camera.name))
    if masks:
        workspace.masks_dir.mkdir(parents=True, exist_ok=True)
        for camera in cameras:
            source = capture / "truth" / "masks" / Path(camera.name).with_suffix(".png")
            mask = cv2.imread(str(source), cv2.IMREAD_GRAYSCALE)
            mask = grow_mask(mask, round(mask_margin_rel * max(mask.shape)))
            cv2.imwrite(str(workspace.mask_path(camera.name)), mask)
    mesh = trimesh.load(capture / "truth" / "mesh.ply", force="mesh")
    xyz, visible_in = truth_sparse_points(mesh, cameras, points, seed)
    workspace.write_sfm_points(
        xyz=xyz,
        rgb=np.full((len(xyz), 3), 128, np.uint8),
        error=np.full(len(xyz), 0.5),
        track=np.bincount(visible_in[:, 0], minlength=len(xyz)),
        visible_in=visible_in,
    )
    return workspace


def truth_sparse_points(
    mesh: trimesh.Trimesh, cameras: list[Camera], count: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) points on the truth surface seen by ≥ 2 cameras, and (m, 2) (point, camera) pairs.

    A point counts as seen where it projects inside the photo and in front of the rendered truth
    depth there (within 0.5 % of the mesh size): what SfM would triangulate, without its noise.
    """
    rng = np.random.default_rng(seed)
    xyz = trimesh.sample.sample_surface(mesh, count, seed=int(rng.integers(1 << 31)))[0]
    tolerance = 0.005 * float(np.linalg.norm(mesh.extents))
    pairs = []
    with OffscreenRenderer(from_trimesh(mesh)) as renderer:
        for index, camera in enumerate(cameras):
            truth = renderer.render(camera).depth
            uv, z = camera.project(xyz)
            cols = np.round(uv[:, 0]).astype(int)
            rows = np.round(uv[:, 1]).astype(int)
            inside = (cols >= 0) & (rows >= 0) & (cols < camera.width) & (rows < camera.height)
            seen = np.zeros(len(xyz), bool)
            surface = truth[rows[inside], cols[inside]]
            seen[inside] = (surface > 0) & (np.abs(z[inside] - surface) < tolerance)
            pairs.append(np.stack([np.flatnonzero(seen), np.full(seen.sum(), index)], axis=1))
    visible_in = np.concatenate(pairs).astype(np.int64)
    tracks = np.bincount(visible_in[:, 0], minlength=len(xyz))
    keep = tracks >= 2
    renumber = np.cumsum(keep) - 1
    visible_in = visible_in[keep[visible_in[:, 0]]]
    visible_in[:, 0] = renumber[visible_in[:, 0]]
    return xyz[keep], visible_in


def score_depth_maps(workspace: Workspace, capture: Path, *, sample: int = 4000) -> dict:
    """Completeness, accuracy and spill of the workspace's depth maps against the truth, and
    the surface precision of their points (see `surface_precision`)."""
    mesh = trimesh.load(Path(capture) / "truth" / "mesh.ply", force="mesh")
    diagonal = float(np.linalg.norm(mesh.extents))
    rng = np.random.default_rng(0)
    per_view, points = [], []
    with OffscreenRenderer(from_trimesh(mesh)) as renderer:
        for camera in workspace.read_sfm_cameras():
            result = depth_stage.read_depth_map(workspace.depth_path(camera.name), camera.name)
            truth = renderer.render(result.camera)
            per_view.append(score_depth(result.depth, truth.depth, truth.mask, diagonal))
            rows, cols = np.nonzero(result.depth > 0)
            pick = rng.choice(len(rows), size=min(sample, len(rows)), replace=False)
            points.append(back_project(result.camera, rows[pick], cols[pick], result.depth))
    keys = per_view[0].keys()
    summary = {key: float(np.mean([view[key] for view in per_view])) for key in keys}
    summary.update(surface_precision(mesh, np.concatenate(points), diagonal))
    summary["per_view"] = per_view
    return summary


def back_project(camera: Camera, rows: np.ndarray, cols: np.ndarray, depth: np.ndarray):
    """(n, 3) world points of the pixels (rows, cols) of a depth map."""
    z = depth[rows, cols].astype(np.float64)
    pixels = np.stack([cols, rows, np.ones_like(cols)], axis=1).astype(np.float64)
    in_camera = (pixels @ np.linalg.inv(camera.K).T) * z[:, None]
    return (in_camera - camera.t) @ camera.R


def surface_precision(mesh: trimesh.Trimesh, points: np.ndarray, diagonal: float) -> dict:
    """Fraction of depth-map points within each tolerance of the truth surface: what fusion's
    precision will see (a point on a surface hidden from this view still counts as right).

    Points at or below the product's base (y < 0.5 % of the diagonal: a tabletop, which a later
    stage removes) are left out, since the truth mesh holds the product only."""
    import open3d as o3d

    points = points[points[:, 1] >= 0.005 * diagonal]
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(mesh.vertices, np.float32)),
        o3d.core.Tensor(np.asarray(mesh.faces, np.uint32)),
    )
    distance = scene.compute_distance(o3d.core.Tensor(points.astype(np.float32))).numpy()
    return {
        f"surface_precision_{tolerance * 100:g}pct": float((distance < tolerance * diagonal).mean())
        for tolerance in TOLERANCES
    }


def score_depth(
    depth: np.ndarray, truth_depth: np.ndarray, truth_mask: np.ndarray, diagonal: float
) -> dict:
    """Scores of one (h, w) depth map against the truth depth and silhouette."""
    valid = depth > 0
    inside = valid & truth_mask & (truth_depth > 0)
    error = np.abs(depth - truth_depth)[inside]
    scores = {
        "completeness": float(inside.sum() / max(1, truth_mask.sum())),
        "spill": float((valid & ~truth_mask).sum() / max(1, valid.sum())),
        "median_error_rel": float(np.median(error) / diagonal) if error.size else float("nan"),
    }
    for tolerance in TOLERANCES:
        scores[f"accuracy_{tolerance * 100:g}pct"] = (
            float((error < tolerance * diagonal).mean()) if error.size else 0.0
        )
    return scores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("captures", nargs="*", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="JSON file to write")
    parser.add_argument("--no-masks", action="store_true", help="search whole photos")
    parser.add_argument(
        "--mask-margin-rel",
        type=float,
        default=MaskOptions().mask_dilate_rel,
        help="grow the truth masks by this × the long side (the masks stage's margin)",
    )
    parser.add_argument("--views", type=int, default=None, help="use only this many photos")
    parser.add_argument("--max-image-px", type=int, default=None)
    parser.add_argument("--option", action="append", default=[], help="NAME=VALUE override")
    parser.add_argument("--keep", type=Path, default=None, help="keep job folders under here")
    args = parser.parse_args()
    captures = args.captures or sorted(
        p for p in (REPO / "sample_captures").iterdir() if (p / "truth").is_dir()
    )
    options = depth_stage.DepthOptions()
    overrides = {}
    if args.max_image_px:
        overrides["max_image_px"] = args.max_image_px
    for item in args.option:
        name, value = item.split("=", 1)
        field_type = type(getattr(options, name))
        overrides[name] = (
            value.lower() in ("1", "true") if field_type is bool else field_type(value)
        )
    options = dataclasses.replace(options, **overrides)
    print("options:", dataclasses.asdict(options))

    results = []
    scratch = Path(tempfile.mkdtemp(prefix="depth_bench_"))
    try:
        # Compile the numba kernels (once per machine; cached after) outside the timings.
        warm = prepare_workspace(captures[0], scratch / "warmup", masks=True, points=2000)
        depth_stage.run(warm, dataclasses.replace(options, max_image_px=128))
        for capture in captures:
            job = (args.keep or scratch) / capture.name
            shutil.rmtree(job, ignore_errors=True)
            workspace = prepare_workspace(
                capture,
                job,
                masks=not args.no_masks,
                views=args.views,
                mask_margin_rel=args.mask_margin_rel,
            )
            started = time.perf_counter()
            cpu_started = time.process_time()
            result = depth_stage.run(workspace, options)
            seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
            scores = score_depth_maps(workspace, capture)
            per_view = scores.pop("per_view")
            entry = {
                "capture": str(capture),
                "views": result.views,
                "photo_px": read_cameras_json(capture / "truth" / "cameras.json")[0].width,
                "depth_px": result.long_side_px,
                "masks": not args.no_masks,
                "seconds": seconds,
                "seconds_per_view": seconds / result.views,
                "cpu_seconds_per_view": cpu_seconds / result.views,
                "valid_fraction": result.valid_fraction,
                **scores,
                "per_view": per_view,
            }
            results.append(entry)
            print(
                f"{capture.name:>16} @{result.long_side_px} px: "
                f"{entry['seconds_per_view']:.2f} s/view "
                f"({entry['cpu_seconds_per_view']:.2f} CPU s)  "
                f"complete {scores['completeness']:.3f}  "
                f"acc@0.25% {scores['accuracy_0.25pct']:.3f}  "
                f"acc@0.5% {scores['accuracy_0.5pct']:.3f}  "
                f"acc@1% {scores['accuracy_1pct']:.3f}  spill {scores['spill']:.3f}  "
                f"surface@0.25/0.5% {scores['surface_precision_0.25pct']:.3f}/"
                f"{scores['surface_precision_0.5pct']:.3f}"
            )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"options": dataclasses.asdict(options), "results": results}, indent=1) + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
