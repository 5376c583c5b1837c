"""Flipped-object captures: two passes (upright, then on its side) joined into one frame.

A merchant photographs the product standing, then lays it on its side (or upside down) and
photographs it again to show its base. Each pass is a normal capture with its own table, so
each gets its own structure from motion and product masks (in ``OUT/work/passes/PASS``). The
table must not join them: it sits differently under the product in each pass. Only the
product's own features do: SIFT descriptors of the sparse points on the product (above the
pass's table, inside its product box) are matched across the passes, giving 3D-3D pairs, and
a similarity transform fitted to them with RANSAC moves the flipped pass into the upright
pass's frame. Its cameras, points, photos and masks then join the upright pass's, and every
later stage (depth, fusion, mesh, texture) works on all photos at once: each photo's depth is
cut at its own pass's table (``ObjectRegion.ground_by_photo``), the upright pass's table gives
up and the ground the model rests on.

When too few product features agree, the capture fails with what to reshoot, never a model
with a misplaced pass.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
import pycolmap

from recon import masks, sfm
from recon.capture import FLIPPED_PASS, UPRIGHT_PASS
from recon.errors import CaptureError, StageError
from recon.geometry import Similarity, fit_similarity
from recon.masks import ObjectRegion, up_aligned_axes
from recon.workspace import Workspace, write_json_atomic

if TYPE_CHECKING:
    from recon.progress import ProgressCallback

logger = logging.getLogger(__name__)

PASSES: tuple[str, ...] = (UPRIGHT_PASS, FLIPPED_PASS)  # the upright pass's frame is the model's

RESHOOT_ADVICE = (
    "photograph the flipped pass with the product laid on its side (not flat on its face), "
    "so the sides seen in the upright pass show again, with the product filling the frame; "
    "keep the same lighting, and turn it over rather than swapping it for another one"
)


@dataclass(frozen=True, kw_only=True)
class PassOptions:
    """How the flipped pass is joined to the upright one."""

    ratio: float = 0.8  # Lowe's ratio: best match against the best of another product point
    neighbours: int = 8  # descriptors looked at per feature (one point has several sightings)
    ransac_iterations: int = 4000
    inlier_distance_rel: float = 0.01  # a pair agrees within this × the product box diagonal
    min_inliers: int = 25  # fewer agreeing pairs cannot be trusted to place a whole pass
    min_inlier_spread_rel: float = 0.25  # ... and they must spread over this × the diagonal
    # (a single printed patch could be matched on the wrong face of a look-alike box)
    # A photo of a pass placed this many times nearer or farther from the product than the
    # pass's median is misplaced (SfM put one of the flipped cereal box's photos 15 000× away,
    # which would drag the product's centre off): it is left out of the model.
    max_distance_ratio: float = 1.67
    seed: int = 0


@dataclass(frozen=True)
class PassFeatures:
    """The product's sparse points in one pass's frame, with the SIFT descriptors of their
    sightings."""

    xyz: np.ndarray  # (n, 3) product points
    descriptors: np.ndarray  # (m, 128) float32, one per sighting
    point_of: np.ndarray  # (m,) int: the point (row of xyz) each descriptor belongs to
    region: ObjectRegion  # the pass's product region


@dataclass(frozen=True)
class Registration:
    """The flipped pass in the upright pass's frame."""

    similarity: Similarity  # x_upright = similarity.apply(x_flipped)
    pairs: int  # product point pairs matched across the passes
    inliers: int  # ... that the similarity explains
    median_error_rel: float  # inliers' distance after the transform, × the box diagonal
    turn_deg: float  # how far the product was turned between the passes


@dataclass(frozen=True)
class PassesResult:
    """The sfm stage's result for a capture in passes (the fields of sfm.SfmResult that the
    pipeline records, and the registration)."""

    registered: int
    total: int
    unregistered: list[dict]
    points: int
    mean_reprojection_error_px: float
    pairs: int
    inliers: int
    median_error_rel: float
    turn_deg: float
    seconds: float


def has_passes(workspace: Workspace) -> bool:
    """True when the capture stage found a capture in passes (capture.json "passes")."""
    return workspace.capture_path.exists() and bool(workspace.read_capture().get("passes"))


def run_sfm(
    workspace: Workspace,
    sfm_options: sfm.SfmOptions,
    mask_options: masks.MaskOptions,
    options: PassOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> PassesResult:
    """Place each pass's photos, join the flipped pass to the upright one, and write the
    joined cameras.json, points.npz and undistorted photos (the upright pass's frame)."""
    options = options or PassOptions()
    start = time.perf_counter()
    photos = workspace.read_capture()["images"]
    pass_workspaces = {}
    for number, name in enumerate(PASSES):
        sub = split_pass(workspace, photos, name)
        pass_workspaces[name] = sub
        try:
            sfm.run(sub, sfm_options, progress=_share(progress, "sfm", number / 2, 0.45))
            leave_out_strays(sub, options.max_distance_ratio, sfm_options.min_photo_agreement)
        except CaptureError as error:
            raise CaptureError(f"the {name} pass: {error}") from None
    features = {}
    for name, sub in pass_workspaces.items():
        try:
            features[name] = product_features(sub, mask_options)
        except StageError as error:
            raise CaptureError(f"the {name} pass: {error.why}; {RESHOOT_ADVICE}") from None
    if progress:
        progress("sfm", 0.92, "joining the passes")
    registration = register(features[UPRIGHT_PASS], features[FLIPPED_PASS], options)
    result = write_joined(workspace, pass_workspaces, registration)
    logger.info(
        "passes: flipped pass joined by %d of %d product pairs (median %.2f %% of the box "
        "diagonal), turned %.0f°",
        registration.inliers, registration.pairs, 100 * registration.median_error_rel,
        registration.turn_deg,
    )  # fmt: skip
    return dataclasses.replace(result, seconds=time.perf_counter() - start)


def run_masks(
    workspace: Workspace,
    options: masks.MaskOptions,
    *,
    progress: ProgressCallback | None = None,
) -> masks.MaskResult:
    """Each pass's product masks (found in its own frame, above its own table), gathered, and
    one region around the whole product in the upright pass's frame."""
    start = time.perf_counter()
    similarity = read_similarity(workspace)
    results = {}
    for number, name in enumerate(PASSES):
        sub = workspace.pass_workspace(name)
        results[name] = masks.run(sub, options, progress=_share(progress, "masks", number / 2, 0.5))
    upright, flipped = results[UPRIGHT_PASS].region, results[FLIPPED_PASS].region
    flipped_ground = None if flipped.ground is None else transform_plane(flipped.ground, similarity)
    ground_by_photo: dict[str, np.ndarray | None] = {}
    workspace.masks_dir.mkdir(parents=True, exist_ok=True)
    for name in PASSES:
        sub = workspace.pass_workspace(name)
        for camera in sub.read_sfm_cameras():
            shutil.copyfile(sub.mask_path(camera.name), workspace.mask_path(camera.name))
            ground_by_photo[camera.name] = (
                upright.ground if name == UPRIGHT_PASS else flipped_ground
            )
    region = dataclasses.replace(
        upright,
        box_corners=union_box(
            upright.box_corners, similarity.apply(flipped.box_corners), upright.up
        ),
        ground_by_photo=ground_by_photo,
    )
    write_json_atomic(workspace.region_path, region.to_json())
    return masks.MaskResult(
        region,
        sum(result.object_points for result in results.values()),
        float(np.mean([result.mean_mask_fraction for result in results.values()])),
        time.perf_counter() - start,
    )


# -- the passes' own job folders ----------------------------------------------------------------


def split_pass(workspace: Workspace, photos: list[dict], name: str) -> Workspace:
    """The job folder of one pass: its capture.json and working photos (linked, not copied)."""
    entries = [photo for photo in photos if photo.get("pass") == name]
    if len(entries) < 3:
        raise CaptureError(
            f"the {name} pass has {len(entries)} photo(s); each pass needs at least 3 (20-30 "
            "all around the product is best)"
        )
    sub = workspace.pass_workspace(name)
    shutil.rmtree(sub.work_dir, ignore_errors=True)  # a re-run starts the pass afresh
    sub.images_dir.mkdir(parents=True)
    for entry in entries:
        _link_or_copy(workspace.image_path(entry["name"]), sub.image_path(entry["name"]))
    write_json_atomic(sub.capture_path, {"version": 1, "images": entries, "pass": name})
    return sub


def leave_out_strays(sub: Workspace, max_distance_ratio: float, min_agreement: float) -> None:
    """Rewrite a pass's cameras.json and points.npz without the photos SfM placed far off the
    ring around the product (`stray_cameras`), listing them as not placed, and its match
    agreement over the photos kept (doubtful below `min_agreement`, as sfm.run made it).
    Raises CaptureError when fewer than 3 photos are left."""
    cameras = sub.read_sfm_cameras()
    strays = stray_cameras(cameras, max_distance_ratio)
    if not strays.any():
        return
    info = json.loads(sub.sfm_cameras_path.read_text())
    info.pop("cameras", None)
    reason = (
        "placed far from the ring of the other photos of its pass (a misplaced photo): left "
        "out; take the photos at a steady distance, each overlapping its neighbours"
    )
    info["unregistered"] = info.get("unregistered", []) + [
        {"image": camera.name, "reason": reason}
        for camera, stray in zip(cameras, strays, strict=True)
        if stray
    ]
    kept = [camera for camera, stray in zip(cameras, strays, strict=True) if not stray]
    if len(kept) < 3:
        raise CaptureError(
            f"only {len(kept)} of {len(cameras)} photos were placed on a ring around the "
            f"product; {sfm.CAPTURE_ADVICE}"
        )
    info["registered"] = len(kept)
    kept_names = {camera.name for camera in kept}
    shares = info.get("match_agreement", {}).get("photos", {})
    info["match_agreement"] = sfm.agreement_summary(
        {name: share for name, share in shares.items() if name in kept_names}, min_agreement
    )
    points = sub.read_sfm_points()
    new_index = np.cumsum(~strays) - 1
    visible = points["visible_in"][~strays[points["visible_in"][:, 1]]]
    # Every point stays (in the model's order, which product_features relies on), seen by fewer.
    sub.write_sfm_points(
        **{key: points[key] for key in ("xyz", "rgb", "error")},
        track=np.bincount(visible[:, 0], minlength=len(points["xyz"])).astype(np.int32),
        visible_in=np.column_stack([visible[:, 0], new_index[visible[:, 1]]]).astype(np.int32),
    )
    sub.write_sfm_cameras(kept, **info)
    logger.warning("passes: %d misplaced photo(s) left out of the pass", int(strays.sum()))


def stray_cameras(cameras: list, max_distance_ratio: float) -> np.ndarray:
    """(n,) bool: cameras of a ring around a product that lie more than `max_distance_ratio`
    times nearer or farther from it than the median camera. The product's centre is the median
    of the points where pairs of optical axes pass closest (in front of both cameras), which a
    few misplaced cameras cannot drag away as they drag a least-squares fit."""
    centers = np.array([camera.center for camera in cameras])
    axes = np.array([camera.R[2] for camera in cameras])
    meets = []
    for i in range(len(cameras)):
        for j in range(i + 1, len(cameras)):
            cosine = axes[i] @ axes[j]
            if abs(cosine) > np.cos(np.radians(15)):
                continue  # nearly parallel axes meet nowhere in particular
            offset = centers[i] - centers[j]
            d, e = axes[i] @ offset, axes[j] @ offset
            s = (cosine * e - d) / (1 - cosine**2)
            t = (e - cosine * d) / (1 - cosine**2)
            if s > 0 and t > 0:
                meets.append((centers[i] + s * axes[i] + centers[j] + t * axes[j]) / 2)
    if len(meets) < 3:
        return np.zeros(len(cameras), dtype=bool)
    center = np.median(np.array(meets), axis=0)
    distance = np.linalg.norm(centers - center, axis=1)
    typical = np.median(distance)
    return (distance > max_distance_ratio * typical) | (distance * max_distance_ratio < typical)


def _link_or_copy(source, target) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system, or links not allowed
        shutil.copyfile(source, target)


def _share(
    progress: ProgressCallback | None, stage: str, begin: float, span: float
) -> ProgressCallback | None:
    """A progress callback reporting into [begin, begin + span] of `stage`'s bar."""
    if progress is None:
        return None
    return lambda _stage, fraction, message: progress(stage, begin + span * fraction, message)


# -- joining ----------------------------------------------------------------------------------


def product_features(sub: Workspace, mask_options: masks.MaskOptions) -> PassFeatures:
    """The product's sparse points of one pass and the descriptors of their sightings; the
    table and background are left out (their points lie outside the product region)."""
    cameras = sub.read_sfm_cameras()
    points = sub.read_sfm_points()
    region, keep = masks.find_object_region(cameras, points, mask_options)
    placed = {camera.name for camera in cameras}
    model = pycolmap.Reconstruction(sub.sfm_model_dir)
    ids = np.array(sorted(model.point3D_ids()), dtype=np.int64)  # points.npz's order
    row_of = {int(point_id): row for row, point_id in enumerate(ids[keep])}
    database = pycolmap.Database.open(sub.sfm_database_path)
    descriptors, point_of = [], []
    try:
        for image in model.images.values():
            if not image.has_pose or image.name not in placed:
                continue
            sighted = np.array(
                [
                    row_of.get(int(p.point3D_id), -1) if p.has_point3D() else -1
                    for p in image.points2D
                ],
                dtype=np.int64,
            )
            image_descriptors = sfm.descriptor_array(database, image.image_id)
            # Keypoints past SIFT's own were found by completing the tracks (patch alignment,
            # sfm.complete_and_adjust): they have no descriptor.
            on_product = np.flatnonzero(sighted[: len(image_descriptors)] >= 0)
            if len(on_product) == 0:
                continue
            descriptors.append(image_descriptors[on_product].astype(np.float32))
            point_of.append(sighted[on_product])
    finally:
        database.close()
    if not descriptors:
        raise StageError("sfm", "no features on the product")
    return PassFeatures(
        xyz=points["xyz"][keep],
        descriptors=np.concatenate(descriptors),
        point_of=np.concatenate(point_of),
        region=region,
    )


def match_points(
    query: PassFeatures, train: PassFeatures, *, ratio: float, neighbours: int
) -> tuple[np.ndarray, np.ndarray]:
    """Product points of `query` matched to points of `train`: ((k,) rows of query.xyz,
    (k,) rows of train.xyz), each query point once, to the train point most of its sightings
    chose. A sighting chooses a point when its nearest descriptor is closer, by `ratio`, than
    the nearest descriptor of any other point (a point's own sightings look alike, so the plain
    second-nearest test would throw away the best matches)."""
    flann = cv2.FlannBasedMatcher({"algorithm": 1, "trees": 4}, {"checks": 64})
    k = min(neighbours, len(train.descriptors))
    if k < 2 or len(query.descriptors) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    knn = flann.knnMatch(query.descriptors, train.descriptors, k=k)
    votes: dict[tuple[int, int], int] = {}
    for index, candidates in enumerate(knn):
        if not candidates:
            continue
        best = int(train.point_of[candidates[0].trainIdx])
        other = next(
            (c.distance for c in candidates[1:] if train.point_of[c.trainIdx] != best), None
        )
        if other is not None and candidates[0].distance >= ratio * other:
            continue
        pair = (int(query.point_of[index]), best)
        votes[pair] = votes.get(pair, 0) + 1
    chosen: dict[int, tuple[int, int]] = {}
    for (source, target), count in votes.items():
        if source not in chosen or count > chosen[source][1]:
            chosen[source] = (target, count)
    sources = np.array(sorted(chosen), dtype=np.int64)
    targets = np.array([chosen[s][0] for s in sources], dtype=np.int64)
    return sources, targets


def ransac_similarity(
    src: np.ndarray,
    dst: np.ndarray,
    *,
    threshold: float,
    iterations: int,
    rng: np.random.Generator,
) -> tuple[Similarity | None, np.ndarray]:
    """The similarity mapping most of (n, 3) `src` onto (n, 3) `dst` within `threshold`, from
    3-point samples, refitted on its inliers; and the (n,) bool inliers. (None, all False)
    when fewer than 3 pairs or no sample spans a triangle."""
    count = len(src)
    best_inliers = np.zeros(count, dtype=bool)
    if count < 3:
        return None, best_inliers
    extent = float(np.linalg.norm(np.ptp(dst, axis=0))) or 1.0
    for _ in range(iterations):
        sample = rng.choice(count, 3, replace=False)
        a, b, c = dst[sample]
        if np.linalg.norm(np.cross(b - a, c - a)) < (0.01 * extent) ** 2:
            continue  # collinear points leave the rotation about their line open
        similarity = fit_similarity(src[sample], dst[sample])
        inliers = np.linalg.norm(similarity.apply(src) - dst, axis=1) <= threshold
        if inliers.sum() > best_inliers.sum():
            best_inliers = inliers
    if best_inliers.sum() < 3:
        return None, best_inliers
    for _ in range(3):  # refit on all inliers, which may gather a few more
        similarity = fit_similarity(src[best_inliers], dst[best_inliers])
        inliers = np.linalg.norm(similarity.apply(src) - dst, axis=1) <= threshold
        if inliers.sum() < 3 or np.array_equal(inliers, best_inliers):
            break
        best_inliers = inliers
    return fit_similarity(src[best_inliers], dst[best_inliers]), best_inliers


def register(upright: PassFeatures, flipped: PassFeatures, options: PassOptions) -> Registration:
    """The flipped pass's transform into the upright pass's frame, from product features both
    passes saw. Raises CaptureError when too few agree (the passes cannot be joined)."""
    sources, targets = match_points(
        flipped, upright, ratio=options.ratio, neighbours=options.neighbours
    )
    diagonal = box_diagonal(upright.region.box_corners)
    src, dst = flipped.xyz[sources], upright.xyz[targets]
    similarity, inliers = ransac_similarity(
        src, dst,
        threshold=options.inlier_distance_rel * diagonal,
        iterations=options.ransac_iterations,
        rng=np.random.default_rng(options.seed),
    )  # fmt: skip
    found = int(inliers.sum())
    if similarity is None or found < options.min_inliers:
        raise CaptureError(
            f"the upright and flipped passes could not be joined: only {found} of "
            f"{len(sources)} product features matched between them agree on one placement "
            f"({options.min_inliers} needed); {RESHOOT_ADVICE}"
        )
    spread = float(np.linalg.norm(np.ptp(dst[inliers], axis=0))) / diagonal
    if spread < options.min_inlier_spread_rel:
        raise CaptureError(
            f"the upright and flipped passes could not be joined reliably: the {found} product "
            f"features that agree lie on one small patch ({spread:.0%} of the product's size); "
            f"{RESHOOT_ADVICE}"
        )
    errors = np.linalg.norm(similarity.apply(src[inliers]) - dst[inliers], axis=1)
    return Registration(
        similarity=similarity,
        pairs=len(sources),
        inliers=found,
        median_error_rel=float(np.median(errors)) / diagonal,
        turn_deg=angle_deg(similarity.rotation @ flipped.region.up, upright.region.up),
    )


def write_joined(
    workspace: Workspace, pass_workspaces: dict[str, Workspace], registration: Registration
) -> PassesResult:
    """cameras.json, points.npz, undistorted photos and passes.json of the joined passes."""
    matrix = registration.similarity.matrix()
    cameras, arrays, infos = [], [], []
    workspace.sfm_dir.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(workspace.sfm_images_dir, ignore_errors=True)
    workspace.sfm_images_dir.mkdir(parents=True)
    for name, sub in pass_workspaces.items():
        joined = name != UPRIGHT_PASS
        points = sub.read_sfm_points()
        if joined:
            points["xyz"] = registration.similarity.apply(points["xyz"])
        points["visible_in"] = points["visible_in"] + np.array([0, len(cameras)], np.int32)
        arrays.append(points)
        for camera in sub.read_sfm_cameras():
            _link_or_copy(sub.sfm_image_path(camera.name), workspace.sfm_image_path(camera.name))
            cameras.append(camera.transformed(matrix) if joined else camera)
        infos.append(json.loads(sub.sfm_cameras_path.read_text()))
    offsets = np.cumsum([0] + [len(a["xyz"]) for a in arrays[:-1]])
    merged = {
        key: np.concatenate([a[key] for a in arrays]) for key in ("xyz", "rgb", "error", "track")
    }
    merged["visible_in"] = np.concatenate(
        [
            a["visible_in"] + np.array([offset, 0], np.int32)
            for a, offset in zip(arrays, offsets, strict=True)
        ]
    ).astype(np.int32)
    workspace.write_sfm_points(**merged)
    counts = [info["registered"] for info in infos]
    error = float(
        np.average([info["mean_reprojection_error_px"] for info in infos], weights=counts)
    )
    passes_info = {
        "passes": list(pass_workspaces),
        "flipped_to_upright": matrix.round(12).tolist(),
        "pairs": registration.pairs,
        "inliers": registration.inliers,
        "median_error_rel": round(registration.median_error_rel, 6),
        "turn_deg": round(registration.turn_deg, 2),
    }
    write_json_atomic(workspace.passes_path, passes_info)
    unregistered = [entry for info in infos for entry in info.get("unregistered", [])]
    workspace.write_sfm_cameras(
        cameras,
        registered=len(cameras),
        total=sum(info["total"] for info in infos),
        unregistered=unregistered,
        mean_reprojection_error_px=round(error, 4),
        visibility_consistency=min(info["visibility_consistency"] for info in infos),
        intrinsics=[item for info in infos for item in info.get("intrinsics", [])],
        passes=passes_info,
        order_check_by_pass={
            name: info.get("order_check", {})
            for name, info in zip(pass_workspaces, infos, strict=True)
        },
        match_agreement=joined_agreement([info.get("match_agreement", {}) for info in infos]),
    )
    return PassesResult(
        registered=len(cameras),
        total=sum(info["total"] for info in infos),
        unregistered=unregistered,
        points=len(merged["xyz"]),
        mean_reprojection_error_px=error,
        pairs=registration.pairs,
        inliers=registration.inliers,
        median_error_rel=registration.median_error_rel,
        turn_deg=registration.turn_deg,
        seconds=0.0,
    )


def joined_agreement(summaries: list[dict]) -> dict:
    """The passes' "match_agreement" (sfm.agreement_summary) as one: the worse pass's figures,
    with every pass's doubtful photos and shares."""
    summaries = [summary for summary in summaries if summary]
    if not summaries:
        return {}
    worse = min(summaries, key=lambda summary: summary["min"])
    joined = {
        key: {name: share for summary in summaries for name, share in summary[key].items()}
        for key in ("doubtful", "photos")
    }
    return {**worse, **joined}


def read_similarity(workspace: Workspace) -> Similarity:
    """The flipped pass's transform into the upright frame, as the sfm stage wrote it."""
    if not workspace.passes_path.exists():
        raise StageError("masks", f"{workspace.passes_path} is missing: re-run the sfm stage")
    matrix = np.asarray(json.loads(workspace.passes_path.read_text())["flipped_to_upright"])
    scale = float(np.cbrt(np.linalg.det(matrix[:3, :3])))
    return Similarity(scale, matrix[:3, :3] / scale, matrix[:3, 3])


# -- maths ------------------------------------------------------------------------------------


def transform_plane(plane: np.ndarray, similarity: Similarity) -> np.ndarray:
    """(4,) plane [n, d] (n·x + d = 0, |n| = 1) in the frame that `similarity` maps from, as
    the same plane in the frame it maps to."""
    normal = similarity.rotation @ plane[:3]
    return np.append(normal, similarity.scale * plane[3] - normal @ similarity.translation)


def union_box(a: np.ndarray, b: np.ndarray, up: np.ndarray) -> np.ndarray:
    """(8, 3) corners of the `up`-aligned box holding both (8, 3) boxes `a` and `b` (any
    orientation)."""
    axes = up_aligned_axes(up)
    local = np.vstack([a, b]) @ axes.T
    low, high = local.min(axis=0), local.max(axis=0)
    corners = np.array(
        [[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])]
    )
    return corners @ axes


def box_diagonal(corners: np.ndarray) -> float:
    return float(np.linalg.norm(np.ptp(corners, axis=0)))


def angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    cosine = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))))
