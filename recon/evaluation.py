"""Scoring a reconstruction against ground truth: registration, camera poses, surface and texture.

The reconstruction is first brought into the truth frame by the similarity that best maps its
camera centres onto the true ones, so scores do not depend on the arbitrary frame, scale or
orientation SfM chose. Camera poses are scored in that frame. Surface and texture are scored after
refining it by rigid ICP of the model onto the true surface (within the 1 % threshold, as the
Tanks and Temples benchmark does): camera centres a millimetre off move a fitted frame by about
as much, which at 960 px shifts printed detail by pixels and would score the cameras a second
time instead of the model. The correction is reported (`alignment`). Texture is scored in both
frames, the cameras' and the refined one, and the better is kept (`texture.frame`): the texture
was baked through the cameras, so where ICP pulls a slightly biased surface (a box 0.1° round),
it shifts the print by a pixel (cracker box on a table: 25.9 dB in the cameras' frame, 24.0
after ICP), and where the cameras are off (mustard: 22.8 dB), the surface puts it right (29.3).
Either is one rigid frame for all held-out views. Thresholds are relative to the truth's
bounding-box diagonal.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import open3d as o3d
import trimesh
from PIL import Image
from scipy.spatial import cKDTree

from recon.cameras import Camera, read_cameras_json, read_middlebury_par
from recon.errors import InputError
from recon.fidelity import masked_psnr_db
from recon.geometry import (
    Similarity,
    fit_similarity_robust,
    rotation_angle_deg,
    sample_surface,
)
from recon.render import PHOTO_ANISOTROPY, Lighting, OffscreenRenderer
from recon.textured_mesh import TexturedMesh, load_textured_mesh

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class EvaluateOptions:
    """How finely to score."""

    thresholds_pct: tuple[float, ...] = (0.5, 1.0)  # τ as % of the truth bbox diagonal
    surface_samples: int = 100_000  # points sampled on each surface
    # The surface two photos see, sampled this finely for `seen_twice.reachable_f_score`
    # (within 0.001 of its limit: the shoe's 0.9632, 0.9642, 0.9648, 0.9652 at 1, 2, 4, 8 × 100k
    # without the visual hull)
    reachable_samples: int = 800_000
    seed: int = 0
    score_texture: bool = True  # render the model at the held-out views (needs a GL context)
    # refine the camera-centre alignment by ICP of the surfaces before scoring them (see above)
    refine_alignment: bool = True
    icp_max_distance_pct: float = 1.0  # of the truth bbox diagonal: only near points pull
    render_dir: Path | None = None  # save each held-out view beside the model's render here


@dataclass(frozen=True)
class Truth:
    """What is known about a capture."""

    cameras: list[Camera]
    mesh_path: Path | None  # truth surface (synthetic captures only)
    novel_dir: Path | None  # held-out views with their cameras.json
    kind: str  # "synthetic" or "calibrated"


def load_truth(capture_dir: Path) -> Truth:
    """Ground truth of a synthetic capture (`recon synth`) or a Middlebury-calibrated one."""
    capture_dir = Path(capture_dir)
    if not capture_dir.is_dir():
        raise InputError(f"capture folder {capture_dir} does not exist")
    truth_dir = capture_dir / "truth"
    if (truth_dir / "cameras.json").exists():
        mesh_path = truth_dir / "mesh.ply"
        novel_dir = truth_dir / "novel"
        return Truth(
            cameras=read_cameras_json(truth_dir / "cameras.json"),
            mesh_path=mesh_path if mesh_path.exists() else None,
            novel_dir=novel_dir if (novel_dir / "cameras.json").exists() else None,
            kind="synthetic",
        )
    calibrations = sorted(capture_dir.glob("*_par.txt"))
    if calibrations:
        return Truth(read_middlebury_par(calibrations[0]), None, None, kind="calibrated")
    raise InputError(
        f"{capture_dir} has no ground truth: expected truth/cameras.json (from `recon synth`) "
        "or a Middlebury *_par.txt calibration"
    )


def evaluate(capture_dir: Path, out_dir: Path, options: EvaluateOptions | None = None) -> dict:
    """Score the reconstruction in `out_dir` (report.json, model.glb) against the truth."""
    options = options or EvaluateOptions()
    truth = load_truth(capture_dir)
    out_dir = Path(out_dir)
    report_path = out_dir / "report.json"
    if not report_path.exists():
        raise InputError(f"{out_dir} has no report.json: is it a reconstruction's output folder?")
    recon_cameras = {camera.name: camera for camera in read_cameras_json(report_path)}
    truth_by_name = {camera.name: camera for camera in truth.cameras}
    matched = [name for name in truth_by_name if name in recon_cameras]
    scores: dict = {
        "capture": str(capture_dir),
        "reconstruction": str(out_dir),
        "truth": truth.kind,
        "images": {
            "truth": len(truth.cameras),
            "registered": len(matched),
            "registered_fraction": len(matched) / len(truth.cameras),
            "missing": sorted(set(truth_by_name) - set(matched)),
        },
    }
    if len(matched) < 3:
        scores["error"] = f"only {len(matched)} cameras match the truth; 3 are needed to align"
        return scores

    truth_matched = [truth_by_name[name] for name in matched]
    recon_matched = [recon_cameras[name] for name in matched]
    to_truth = fit_similarity_robust(
        np.array([c.center for c in recon_matched]), np.array([c.center for c in truth_matched])
    )
    truth_mesh = trimesh.load(truth.mesh_path, process=False) if truth.mesh_path else None
    if truth_mesh is not None:
        diagonal = float(np.linalg.norm(truth_mesh.bounds[1] - truth_mesh.bounds[0]))
        reference = "truth bounding-box diagonal"
    else:
        centers = np.array([c.center for c in truth.cameras])
        diagonal = float(np.linalg.norm(centers.max(axis=0) - centers.min(axis=0)))
        reference = "diagonal of the true camera centres' bounding box"
    scores["pose"] = score_poses(truth_matched, recon_matched, to_truth, diagonal)
    scores["pose"]["center_error_reference"] = reference

    model_path = out_dir / "model.glb"
    if truth_mesh is not None and model_path.exists():
        recon_mesh = load_textured_mesh(model_path).transformed(to_truth.matrix())
        frames = {"cameras": recon_mesh}
        if options.refine_alignment and len(recon_mesh.to_trimesh().faces):
            correction, scores["alignment"] = refine_alignment(
                truth_mesh, recon_mesh.to_trimesh(), diagonal, options
            )
            recon_mesh = recon_mesh.transformed(correction)
            frames["surface ICP"] = recon_mesh
        scores["geometry"] = score_surface(
            truth_mesh, recon_mesh.to_trimesh(), truth.cameras, diagonal, options
        )
        if options.score_texture and truth.novel_dir is not None:
            scores["texture"] = score_texture_in_best_frame(
                frames, truth.novel_dir, options.render_dir
            )
    elif truth_mesh is not None:
        scores["geometry"] = None
        scores["warnings"] = [f"{model_path} is missing: surface and texture not scored"]
    return scores


def refine_alignment(
    truth_mesh: trimesh.Trimesh,
    recon_mesh: trimesh.Trimesh,
    diagonal: float,
    options: EvaluateOptions,
) -> tuple[np.ndarray, dict]:
    """The rigid (4, 4) correction that ICP (point-to-plane) finds from the reconstruction onto
    the true surface, starting from the camera alignment, and how large it is. Points farther
    than icp_max_distance_pct from the truth (leftovers, missing parts) do not pull."""
    samples = min(options.surface_samples, 50_000)

    def cloud(points: np.ndarray) -> o3d.geometry.PointCloud:
        result = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
        result.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(16))
        return result

    source = cloud(sample_surface(recon_mesh, samples, seed=options.seed + 2))
    target = cloud(sample_surface(truth_mesh, samples, seed=options.seed + 3))
    fit = o3d.pipelines.registration.registration_icp(
        source,
        target,
        options.icp_max_distance_pct / 100 * diagonal,
        np.eye(4),
        o3d.pipelines.registration.TransformationEstimationPointToPlane(),
        o3d.pipelines.registration.ICPConvergenceCriteria(max_iteration=50),
    )
    correction = np.asarray(fit.transformation)
    return correction, {
        "method": "camera centres, refined by surface ICP",
        "icp_rotation_deg": round(rotation_angle_deg(correction[:3, :3]), 4),
        "icp_shift_pct": round(float(np.linalg.norm(correction[:3, 3]) / diagonal * 100), 4),
        "icp_inlier_fraction": round(float(fit.fitness), 4),
    }


def score_poses(
    truth: list[Camera], recon: list[Camera], to_truth: Similarity, diagonal: float
) -> dict:
    """Rotation and camera-centre errors of matched cameras after alignment."""
    rotation_errors, center_errors = [], []
    for true_camera, camera in zip(truth, recon, strict=True):
        # A world-to-camera rotation seen from the truth frame: R_recon · A^T.
        aligned_rotation = camera.R @ to_truth.rotation.T
        rotation_errors.append(rotation_angle_deg(aligned_rotation @ true_camera.R.T))
        aligned_center = to_truth.apply(camera.center[None])[0]
        center_errors.append(np.linalg.norm(aligned_center - true_camera.center) / diagonal * 100)
    return {
        "aligned_cameras": len(truth),
        "scale": to_truth.scale,
        "rotation_error_deg": _summary(rotation_errors),
        "center_error_pct": _summary(center_errors),
    }


def score_surface(
    truth_mesh: trimesh.Trimesh,
    recon_mesh: trimesh.Trimesh,
    cameras: list[Camera],
    diagonal: float,
    options: EvaluateOptions,
) -> dict:
    """Accuracy (reconstruction → truth), completeness (seen truth → reconstruction) and F-score."""
    all_truth_points = sample_surface(truth_mesh, options.surface_samples, seed=options.seed)
    views = views_seeing(truth_mesh, all_truth_points, cameras)
    seen = views > 0
    truth_points, twice = all_truth_points[seen], views[seen] >= 2
    if len(recon_mesh.faces) == 0:
        recon_points = np.empty((0, 3))
        accuracy_distances = np.array([np.inf])
        completeness_distances = np.full(len(truth_points), np.inf)
        observed = np.ones(1, dtype=bool)
    else:
        recon_points = sample_surface(recon_mesh, options.surface_samples, seed=options.seed + 1)
        accuracy_distances = distance_to_mesh(truth_mesh, recon_points)
        completeness_distances = distance_to_mesh(recon_mesh, truth_points)
        # The model's points whose nearest truth lies where some photo sees it.
        _, nearest = cKDTree(all_truth_points).query(recon_points)
        observed = seen[nearest]
    result: dict = {
        "diagonal_m": diagonal,
        "seen_fraction": float(seen.mean()),
        "accuracy_median_pct": float(np.median(accuracy_distances) / diagonal * 100),
        "completeness_median_pct": float(np.median(completeness_distances) / diagonal * 100),
        "accuracy": {},
        "completeness": {},
        "f_score": {},
        "outside_truth_box": {},
        # What stereo could reach at all: surface one photo alone sees (a shoe's inside seen
        # through its opening) cannot be triangulated, yet counts in completeness above. So
        # completeness again over the surface at least two photos see, and its share.
        "seen_twice": {
            "fraction": float(twice.mean()) if len(twice) else 0.0,
            "completeness": {},
            # The F-score of a model holding that surface and the truth's visual hull, nothing
            # else: the most a model the photos tell (by stereo or silhouettes) can reach.
            "reachable_f_score": {},
        },
        # DTU's protocol (its observability mask): accuracy only over the model's surface
        # by truth some photo sees. What no photo sees (a can's recessed base, closed flat;
        # a shoe's inside) the model can only guess, and the accuracy above counts that guess
        # too. The same completeness, so an F-score of what the photos could tell.
        "observed": {
            "fraction": float(observed.mean()),
            "accuracy": {},
            "f_score": {},
        },
    }
    to_told = distance_to_told_surface(truth_mesh, truth_points, twice, cameras, diagonal, options)
    for tau_pct in options.thresholds_pct:
        tau = tau_pct / 100 * diagonal
        reachable = float((to_told < tau).mean()) if len(to_told) else 0.0
        result["seen_twice"]["reachable_f_score"][f"{tau_pct:g}"] = 2 * reachable / (1 + reachable)
        # Table, backdrop or turntable left in the asset lie outside the product's box; an
        # inaccurate part of the product itself (an unseen base closed flat) does not.
        result["outside_truth_box"][f"{tau_pct:g}"] = outside_box_share(
            recon_points, truth_mesh.bounds, tau
        )
        precision = float((accuracy_distances < tau).mean())
        recall = float((completeness_distances < tau).mean())
        f_score = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        key = f"{tau_pct:g}"
        result["accuracy"][key] = precision
        result["completeness"][key] = recall
        result["f_score"][key] = f_score
        result["seen_twice"]["completeness"][key] = (
            float((completeness_distances[twice] < tau).mean()) if twice.any() else 0.0
        )
        observed_precision = (
            float((accuracy_distances[observed] < tau).mean()) if observed.any() else 0.0
        )
        result["observed"]["accuracy"][key] = observed_precision
        result["observed"]["f_score"][key] = (
            2 * observed_precision * recall / (observed_precision + recall)
            if observed_precision + recall > 0
            else 0.0
        )
    return result


def distance_to_told_surface(
    truth_mesh: trimesh.Trimesh,
    seen_points: np.ndarray,
    twice: np.ndarray,
    cameras: list[Camera],
    diagonal: float,
    options: EvaluateOptions,
) -> np.ndarray:
    """(n,) how far each seen truth point lies from the surface the photos tell, at most: the
    truth surface two photos see, which stereo can triangulate (0 for those points), and the
    truth's visual hull, which exact silhouettes bound. A point one photo alone sees is in reach
    only as far as either lies within τ of it. The first is sampled finely near such points,
    and only there (its visibility is the cost); for the second the distance to the nearest
    silhouette cone stands in, which the hull's surface, made of such cones, is never nearer
    than: a reach measured generously."""
    distances = np.zeros(len(seen_points))
    once = ~twice
    if not once.any():
        return distances
    lone = seen_points[once]
    reach = max(options.thresholds_pct) / 100 * diagonal
    dense = sample_surface(truth_mesh, options.reachable_samples, seed=options.seed + 2)
    near, _ = cKDTree(lone).query(dense, distance_upper_bound=reach)
    dense = dense[np.isfinite(near)]
    targets = np.vstack([seen_points[twice], dense[views_seeing(truth_mesh, dense, cameras) >= 2]])
    to_twice_seen = cKDTree(targets).query(lone)[0] if len(targets) else np.full(len(lone), np.inf)
    distances[once] = np.minimum(
        to_twice_seen, distance_to_silhouette_cones(truth_mesh, lone, cameras)
    )
    return distances


def distance_to_silhouette_cones(
    mesh: trimesh.Trimesh, points: np.ndarray, cameras: list[Camera]
) -> np.ndarray:
    """(n,) for each point inside the mesh's silhouette cones, the least over the cameras that
    frame it of its distance to that camera's cone: pixels from the silhouette's outline (the
    mesh cast into the photo) × depth / focal length; inf where no camera frames it."""
    scene = raycasting_scene(mesh)
    distances = np.full(len(points), np.inf)
    for camera in cameras:
        silhouette = np.zeros((camera.height, camera.width), np.uint8)
        # rays only where the mesh's vertices fall (the whole photo if any lies behind it)
        uv, depth = camera.project(np.asarray(mesh.vertices))
        low, high = np.zeros(2, int), np.array([camera.width, camera.height])
        if (depth > 0).all():
            low = np.clip(np.floor(uv.min(axis=0)).astype(int) - 1, 0, high)
            high = np.clip(np.ceil(uv.max(axis=0)).astype(int) + 2, low, high)
        rows, cols = np.mgrid[low[1] : high[1], low[0] : high[0]]
        pixels = np.stack([cols.ravel() + 0.0, rows.ravel() + 0.0, np.ones(cols.size)], axis=1)
        directions = pixels @ np.linalg.inv(camera.K).T @ camera.R  # world frame
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        rays = np.hstack([np.broadcast_to(camera.center, directions.shape), directions])
        hits = scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))["t_hit"].numpy()
        silhouette[low[1] : high[1], low[0] : high[0]] = np.isfinite(hits).reshape(rows.shape)
        # pixels from each silhouette pixel to the nearest one outside it (the frame's edge,
        # beyond which the camera tells nothing, is no outline)
        outline_distance = cv2.distanceTransform(
            cv2.copyMakeBorder(silhouette, 1, 1, 1, 1, cv2.BORDER_REPLICATE), cv2.DIST_L2, 5
        )[1:-1, 1:-1]
        uv, depth = camera.project(points)
        col, row = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
        framed = np.flatnonzero(
            (depth > 0) & (col >= 0) & (row >= 0) & (col < camera.width) & (row < camera.height)
        )
        # (less half a pixel: from a pixel's centre to the outline between it and the next)
        outline_px = np.maximum(outline_distance[row[framed], col[framed]] - 0.5, 0.0)
        cone = outline_px * depth[framed] / camera.K[0, 0]
        distances[framed] = np.minimum(distances[framed], cone)
    return distances


def outside_box_share(points: np.ndarray, bounds: np.ndarray, margin: float) -> float:
    """Share of `points` farther than `margin` outside the (2, 3) axis-aligned box `bounds`."""
    if len(points) == 0:
        return 0.0
    outside = (points < bounds[0] - margin) | (points > bounds[1] + margin)
    return float(outside.any(axis=1).mean())


def raycasting_scene(mesh: trimesh.Trimesh) -> o3d.t.geometry.RaycastingScene:
    """Open3D's ray-casting scene of the mesh's triangles (rays, distances)."""
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(mesh.vertices, dtype=np.float32)),
        o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)),
    )
    return scene


def distance_to_mesh(mesh: trimesh.Trimesh, points: np.ndarray) -> np.ndarray:
    """(n,) exact distances from (n, 3) points to the nearest point on the mesh's triangles."""
    scene = raycasting_scene(mesh)
    distances = scene.compute_distance(o3d.core.Tensor(points.astype(np.float32)))
    return distances.numpy().astype(np.float64)


def views_seeing(mesh: trimesh.Trimesh, points: np.ndarray, cameras: list[Camera]) -> np.ndarray:
    """(n,) int: how many cameras see each surface point (inside the image, not occluded)."""
    scene = raycasting_scene(mesh)
    diagonal = float(np.linalg.norm(mesh.bounds[1] - mesh.bounds[0]))
    count = np.zeros(len(points), dtype=np.int32)
    for camera in cameras:
        uv, depth = camera.project(points)
        inside = (
            (depth > 0)
            & (uv[:, 0] >= -0.5)
            & (uv[:, 0] < camera.width - 0.5)
            & (uv[:, 1] >= -0.5)
            & (uv[:, 1] < camera.height - 0.5)
        )
        candidates = np.flatnonzero(inside)
        if len(candidates) == 0:
            continue
        rays_to = points[candidates] - camera.center
        distance = np.linalg.norm(rays_to, axis=1)
        rays = np.hstack(
            [np.tile(camera.center, (len(candidates), 1)), rays_to / distance[:, None]]
        )
        hits = scene.cast_rays(o3d.core.Tensor(rays.astype(np.float32)))["t_hit"].numpy()
        # Visible when the first hit is the point itself (up to float32 precision).
        count[candidates[hits >= distance - 1e-4 * diagonal]] += 1
    return count


def score_texture(recon_mesh, novel_dir: Path, render_dir: Path | None = None) -> dict:
    """Masked PSNR and SSIM of the model at held-out views.

    The model is drawn unlit: its texture already holds the colour the cameras saw.
    """
    cameras = read_cameras_json(novel_dir / "cameras.json")
    psnrs, ssims, coverages = [], [], []
    with OffscreenRenderer(
        recon_mesh, lighting=Lighting.UNLIT, anisotropy=PHOTO_ANISOTROPY
    ) as renderer:
        for camera in cameras:
            truth_rgba = np.asarray(Image.open(novel_dir / camera.name).convert("RGBA"))
            mask = truth_rgba[..., 3] >= 128
            if not mask.any():
                continue
            rendering = renderer.render(camera, supersample=2)
            truth_rgb = truth_rgba[..., :3].astype(np.float64)
            rendered = rendering.rgb.astype(np.float64)
            psnrs.append(masked_psnr_db(rendered, truth_rgb, mask))
            ssims.append(masked_ssim(rendered, truth_rgb, mask))
            coverages.append(float(rendering.mask[mask].mean()))
            if render_dir is not None:
                render_dir.mkdir(parents=True, exist_ok=True)
                side_by_side = np.hstack([truth_rgba[..., :3], rendering.rgb])
                Image.fromarray(side_by_side).save(render_dir / camera.name)
    if not psnrs:
        return {"views": 0}
    return {
        "views": len(psnrs),
        "psnr_db": float(np.mean(psnrs)),
        "psnr_db_min": float(np.min(psnrs)),
        "ssim": float(np.mean(ssims)),
        "coverage": float(np.mean(coverages)),
    }


def score_texture_in_best_frame(
    frames: dict[str, TexturedMesh], novel_dir: Path, render_dir: Path | None = None
) -> dict:
    """score_texture of the model in each candidate frame (name → model placed in the truth
    frame); the one with the higher mean PSNR, with `frame` naming it and `psnr_db_by_frame`."""
    by_frame = {name: score_texture(model, novel_dir) for name, model in frames.items()}
    best = max(by_frame, key=lambda name: by_frame[name].get("psnr_db", -np.inf))
    scores = by_frame[best]
    if render_dir is not None:  # draw the pictures once, in the frame that was kept
        scores = score_texture(frames[best], novel_dir, render_dir)
    if scores.get("views"):
        scores["frame"] = best
        scores["psnr_db_by_frame"] = {
            name: round(result["psnr_db"], 2) for name, result in by_frame.items()
        }
    return scores


def masked_ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """Mean SSIM over masked pixels of RGB images (Wang et al. 2004; Gaussian window, σ = 1.5)."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(image: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(image, (11, 11), 1.5)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / (
        (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    )
    return float(ssim_map.mean(axis=2)[mask].mean())


def write_scores(scores: dict, path: Path) -> None:
    Path(path).write_text(json.dumps(scores, indent=1) + "\n")


def _summary(values: list[float]) -> dict:
    array = np.asarray(values, dtype=np.float64)
    return {
        "median": float(np.median(array)),
        "mean": float(array.mean()),
        "max": float(array.max()),
    }
