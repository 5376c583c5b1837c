"""Structure from motion: camera poses and sparse points of the photos (COLMAP, through pycolmap).

Steps, each reported as progress of the "sfm" stage:

1. *extract*: SIFT keypoints of every working photo into a COLMAP database, with one shared
   camera per device (same size, same EXIF camera and focal) and the EXIF focal as a prior;
   product masks limit the keypoints when every photo has one. Photos with few keypoints are
   searched again at twice the size, and plain ones (with their neighbours in capture order,
   to be described alike) once more with a low contrast threshold.
2. *match*: exhaustive for small sets, else sequential neighbours (closing the ring) plus every
   pair among a spread-out subsample (loop closure without a vocabulary tree); COLMAP verifies
   each pair geometrically.
3. *map*: incremental mapping with COLMAP's thresholds; the model with the most photos wins.
   Photos it leaves out get a second, relaxed pass, and stay only if a chain of well-matched
   pairs that the model explains ties them to it (weak links are where mirror-like sides and
   plain products produce wrong placements). A final global bundle adjustment with a robust
   (Cauchy) loss refines poses, focal length and distortion, and the principal point where
   the data clearly asks for it (never on a plain capture); a plain capture's points seen by
   two photos only are left out of it where their photos have others.
4. *undistort*: the photos are resampled to the pinhole camera with the same K and size
   (``workspace.sfm_image_path``); cameras.json and points.npz describe them. A model whose
   photos miss points it puts in plain view of them is folded (look-alike sides taken for one
   another) and fails the stage (`visibility_consistency`) instead of reaching the asset. A fold
   that every match agrees with (a box printed alike front and back) is caught by placing the
   photos again from neighbours in capture order only (`check_capture_order`). When both
   placements fail that check (a box whose logo repeats on every face: most pairs match one
   face onto another), a third is made from each photo's strongest pair and successive photos,
   grown by the pairs its model explains (`place_by_consensus`); it is kept only if it too
   walks smoothly round the product. A model still folded after all this, or none kept, is
   placed once more from the pairs near each other on rings of equal size taken one after
   another (`place_in_rings`: photos above one another tie the rings), and failing that from
   the calibrated pairs one place apart only, by global mapping; a ring model's photos are then
   matched again along its epipolar lines, where look-alikes elsewhere on the product do not
   compete (`rematch_along_model`).

Why the robust loss, scaled to the measured noise: a plain least-squares adjustment lets the
long tail of SIFT's localisation errors and the few mismatches that survive verification pull
every pose; on the 640 px synthetic captures it cuts the rotation error two- to five-fold.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum
from itertools import combinations, pairwise
from pathlib import Path

import cv2
import numpy as np
import pycolmap

from recon import masks
from recon.cameras import Camera, nearest_point_to_axes, sightings_in, spread_cameras
from recon.errors import CaptureError, InputError, StageError
from recon.geometry import Similarity, relative_rotation_differences_deg
from recon.progress import ProgressCallback
from recon.track_refine import (
    PreparedPhotos,
    TrackRefineOptions,
    complete_tracks,
    refine_keypoints,
)
from recon.turntable import TurntableOptions, mask_still_background
from recon.workspace import Workspace

logger = logging.getLogger(__name__)

STAGE = "sfm"

CAPTURE_ADVICE = (
    "the photos share too few features: take photos every 10–15° around the product, "
    "with the product filling most of the frame, in even light; a plain product (white "
    "ceramics, plain fabric) needs a patterned surface under it, such as a newspaper or a "
    "printed mat"
)

# COLMAP camera models whose distortion OpenCV can undo, with the OpenCV coefficients they map to.
_OPENCV_DISTORTION = {
    "SIMPLE_PINHOLE": (),
    "PINHOLE": (),
    "SIMPLE_RADIAL": ("k",),
    "RADIAL": ("k1", "k2"),
    "OPENCV": ("k1", "k2", "p1", "p2"),
    "FULL_OPENCV": ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"),
}

# Share of the stage's progress bar taken by each step.
_STEPS = {
    "extract": (0.0, 0.35),
    "match": (0.35, 0.6),
    "map": (0.6, 0.92),
    "undistort": (0.92, 1.0),
}


# Where a failed capture's photos, in capture.json's order (by name, or by EXIF time), are
# seldom neighbours (see successive_share).
NAMES_OUT_OF_ORDER = (
    ". The photos, in the order of their names (or of the times in their EXIF), seldom follow "
    "one another round the product, so the placement could not be checked against a walk "
    "round it: name them in the order they were taken, as the camera does"
)


class Matcher(StrEnum):
    AUTO = "auto"  # exhaustive up to `max_exhaustive_photos`, else sequential
    EXHAUSTIVE = "exhaustive"  # every pair: best for the usual 20–60 photos around a product
    SEQUENTIAL = "sequential"  # neighbours in capture order + pairs among a subsample (video)


class PrincipalPoint(StrEnum):
    CENTRE = "centre"  # keep it at the image centre (right for phones, and for synthetic photos)
    REFINE = "refine"  # always refine it in the final bundle adjustment
    AUTO = "auto"  # refine it; keep it only if it moves clearly and the fit clearly improves


@dataclass(frozen=True, kw_only=True)
class SfmOptions:
    """How photos are matched and placed. Pixel sizes are in working-photo pixels."""

    matcher: Matcher = Matcher.AUTO
    max_exhaustive_photos: int = 60  # AUTO matches every pair up to this many photos
    sequential_overlap: int = 10  # SEQUENTIAL: each photo meets this many next ones (wrapping)
    loop_closure_photos: int = 30  # SEQUENTIAL: plus every pair among this many spread photos
    min_successive_share: float = 0.5  # the photos' names follow the capture order when this
    # share of successive photos are among each other's `successive_top` strongest pairs (see
    # successive_share); else AUTO matches every pair however many photos there are, and the
    # fold check cannot ask for a walk (see visibility_photos). In order: 0.94 (mustard, 48
    # photos on 3 rings), 0.99 (72), 0.89 (Middlebury temple ring), 0.81 (twin-print box, 48);
    # the mustard's shuffled: 0.15 and 0.24. Not asked of 24 photos or fewer: on two rings of
    # 12 the photo above is nearer than the next (0.48-1.0 on the benchmark's captures)
    successive_top: int = 4
    max_features: int = 8192  # SIFT keypoints kept per photo (the strongest)
    upsample_below_features: int = 1000  # photos with fewer keypoints are searched again at
    # twice the size (SIFT octave -1, 4× the time): small or plain products need it, textured
    # scenes do not. 0: never; above max_features: always. (At 2,000, 8 to 24 of the 24 photos
    # of each 960 px product on a table were; at 1,000, none (mustard, cracker box, shoe,
    # WaterBottle) to 21 (avocado): standard 1.4-9.8 s faster, soup can 87.5 -> 78.5 s; median
    # rotation errors 0.0014-0.0036° (plain soup can 0.007 -> 0.010°), F@1 % at most 0.0012
    # lower (shoe 0.766 -> 0.785), PSNR within 0.1 dB (mustard 31.7 -> 32.1 dB); the Middlebury
    # temple rings and Kermit placed exactly as before.)
    upsample_max_px: int = 1024  # ... but only photos up to this long side: a larger one is
    # searched again at its own size with the low contrast threshold instead, in a quarter of
    # the time (an avocado on a table photographed at 1,920 px, standard at 1,600 px: feature
    # search 42 -> 14 s, SfM 59 -> 35 s, F@1 % 0.998 both, PSNR 36.5 -> 36.2 dB; the plain shoe
    # SfM 43 -> 31 s). Plain photos are searched at twice the size at low contrast after it.
    low_contrast_below_features: int = 500  # photos with fewer keypoints even at twice the
    # size (plain products) are searched again with
    low_contrast_peak_threshold: float = 0.001  # this contrast threshold: on a plain avocado
    # COLMAP's threshold kept 27 keypoints a photo and placed none; this placed all 24. At
    # 0.0005 the plain avocado's median rotation error went 0.112 -> 0.100°, but the plain
    # mustard's 0.134 -> 0.155° and the plain water bottle placed 14 of 24 photos, 174° off.
    # ... keeping at most this many keypoints a photo, the largest, in a plain capture: sensor
    # noise makes SIFT keypoints at its finest scale, thousands of them (a plain avocado's
    # photos with noise of σ 6 grey levels: 17,800 a photo), and guided matching compares
    # every keypoint of a pair with every other (10 GB and 150 s for those photos). A plain
    # product's own are fewer: 290-2,300 a photo on the benchmark's plain captures.
    low_contrast_max_keypoints: int = 5000
    low_contrast_neighbours: int = 1  # ... and so are the photos this near a plain one in
    # capture order: a plain photo's thousands of weak keypoints beside its neighbours' few
    # strong ones fail the ratio test (an avocado on a table: its one such photo met its
    # neighbours with no verified pair and was left out)
    plain_probe_below_features: int = 50  # a photo (up to upsample_max_px) with fewer
    # keypoints at its own size is plain: at twice the size it had up to 9.3× as many (24 ×
    # 800 px plain captures: avocado 9-36 -> 12-105, water bottle 14-80 -> 31-256, shoe 46-59
    # -> 267-548), under low_contrast_below_features from under 50; so it and its neighbours go
    # straight to the low contrast search, without the twice-the-size search it would replace
    guided_matching: bool = False  # re-match verified pairs along their epipolar geometry:
    # it placed every photo of the 640 px cereal box, but was 10× slower on textured tables
    # and let a repeating wood texture join two half rings into a model with two bottles.
    plain_capture_share: float = 0.5  # when more than this share of the photos needed the
    # low-contrast search (a plain product on a plain backdrop: no wood texture to repeat),
    # guided_matching and two_view_points are turned on, and min_pair_agreement becomes
    # plain_min_pair_agreement: on the Middlebury dino's sparse ring the weakest neighbour
    # pairs rose from 17–28 to 47–85 matches, and 5 → 16 of 16 photos were placed
    plain_min_pair_agreement: float = 0.5  # guided matches on a plain surface sit looser (up
    # to the verification's error): the dino's right neighbours agreed 0.59–0.91 with the
    # model; a misplaced photo's pairs agree near 0
    min_pair_inliers: int = 15  # a pair counts as overlapping with this many verified matches
    ransac_max_error_px: float = 4.0  # verification: epipolar distance of an inlier
    relaxed_pass: bool = True  # photos the strict pass (COLMAP's thresholds) leaves out get
    # a second, relaxed chance, and keep it only if verified matches tie them to the model
    min_pose_inliers: int = 15  # relaxed pass: a photo joins with this many 2D-3D inliers
    max_pose_error_px: float = 4.0  # ... each within this reprojection error
    min_support_inliers: int = 30  # relaxed pass: a pair ties two photos with this many
    min_pair_agreement: float = 0.8  # ... verified matches, this share of them explained
    two_view_points: bool = False  # relaxed pass: triangulate points seen by two photos only
    # (COLMAP skips them): in a sparse ring of a plain product most points are, and a photo
    # past a weak link finds no other points to be placed by; on the textured temple's ring
    # they cost accuracy (0.21° → 1.6° rotation error: the principal point went astray)
    structure_less_registration: bool = True  # a photo that no 2D-3D pose places is tried
    # from its matches with placed photos alone (COLMAP's fallback). It placed the plain
    # WaterBottle's look-alike views at 960 px, but it is slow where it fails: each photo
    # left over is tried again after every photo placed (the relaxed pass at 800 px: 22 s
    # with it, 0.3 s without). Neither the order check's second placement (see
    # check_capture_order) nor the relaxed pass after the strict one (see _place_photos)
    # uses it.
    merge_models: bool = True  # relaxed pass: join models that share placed photos (the two
    # halves of a ring that meet only through weak links) through the shared photos' poses
    refine_distortion_while_mapping: bool = False  # the final adjustment refines it anyway;
    # while mapping, a narrow lens (the Middlebury dino: 11° field of view) cannot tell
    # distortion from pose, and COLMAP drops photos whose camera gets |k| > 1
    shared_intrinsics: bool = True  # one camera for photos of one device (size, EXIF camera)
    camera_model: str = "SIMPLE_RADIAL"  # COLMAP model; see _OPENCV_DISTORTION for the choices
    principal_point: PrincipalPoint = PrincipalPoint.AUTO
    principal_point_min_shift: float = 0.01  # AUTO: × the long side; smaller shifts are noise
    principal_point_min_evidence: float = 200.0  # AUTO: and only if the fit gains this much
    # χ²: the Middlebury temple's off-centre lens gains 434 (16 photos) and 2634 (47); on the
    # synthetic (centred) captures noise reached 47, and a plain mustard bottle 30-32 with a
    # 1.2-1.3 % shift, which kept turned its cameras by 0.6° instead of 0.12-0.13°
    principal_point_min_photos: int = 8  # AUTO refines only cameras shared by this many photos
    min_long_track_observations: int = 50  # the final adjustment leaves out points seen by
    # two photos only, where both photos see at least this many points seen three times
    refine_keypoints: bool = True  # the final adjustment is run again after each point's
    # keypoints are aligned to one another by their patches (see recon.track_refine): median
    # rotation error 0.134 -> 0.031° on a plain mustard bottle, 0.112 -> 0.049° on a plain
    # avocado, 0.017 -> 0.004° on a cracker box on a table, 0.21 -> 0.16° on the Middlebury
    # temple's sparse ring, for 1-3 CPU-s
    complete_tracks: bool = True  # once the model is chosen, its tracks are completed and its
    # poses adjusted again (complete_and_adjust): median rotation error 0.160 -> 0.082° on the
    # plain WaterBottle, 0.049 -> 0.037° on a plain avocado, 0.010 -> 0.007° on a soup can, for
    # 0.4-1.3 s
    track_refine: TrackRefineOptions = field(default_factory=TrackRefineOptions)
    robust_loss_factor: float = 1.0  # Cauchy scale of the final adjustment, × the median error
    max_reprojection_error_px: float = 4.0  # points worse than this after adjustment are dropped
    min_visibility_consistency: float = 0.45  # below this (see visibility_consistency) the
    # model is folded: look-alike sides put photos on the wrong side, and sfm fails
    visibility_max_photos: int = 24  # ... judged on this many photos spread round the product
    # and the points two of them see (0: all): a denser capture adds points that only photos a
    # few degrees apart match, which the photos 20-40° away miss. A mustard bottle's 72 photos
    # on 3 rings, placed right (relative rotations within 0.007°), scored 0.41 on all of them
    # and were refused; 0.56 on 24 (48 photos: 0.54 -> 0.68). Up to 24 photos: all, as before;
    # and all where the photos do not walk round in capture order (see visibility_photos)
    min_photo_agreement: float = 0.3  # a photo whose verified matches the model explains under
    # this share of (photo_agreement) is named as maybe misplaced: a cereal box photo placed 73°
    # off had 15 %; right photos of our captures 42-100 % (look-alike pairs, verified and then
    # contradicted, pull a look-alike box's or bottle's down)
    order_check: bool = True  # with exhaustive matching, place the photos a second time from
    # pairs near in capture order only, and compare (see check_capture_order)
    order_window: int = 3  # ... pairs at most this far apart in capture order (wrapping)
    order_min_photos: int = 8  # ... only for captures of at least this many photos
    order_max_disagreement: float = 0.1  # the models disagree when more than this share of
    order_disagreement_deg: float = 10.0  # photo pairs differ by more than this in relative turn
    order_min_compared_share: float = 0.5  # their agreement counts only when the ordered model
    # places this share of the photos the all-pairs model does: a cereal box on its side on
    # plain paper was placed 5 of 24 in order, in agreement, while the all-pairs model put a
    # sixth 73° off; with fewer, the all-pairs model is judged by its turns alone
    order_max_step_ratio: float = 3.0  # the ordered model is trusted only if no two successive
    order_max_step_deg: float = 100.0  # photos turn more than this × the median turn, nor this
    order_step_floor_deg: float = 35.0  # ... but a turn up to this always passes: the step up
    # to the next ring of a dense capture (the mustard's 120 photos on 3 rings of 40: median
    # turn 7.8°, up a ring 28.3°; placed right, within 0.02°, yet refused as folded), where a
    # photo put on a look-alike side turns 54° (the cereal box's mirror pose) and more
    order_max_backtrack: int = 2  # ... nor turn back round the product for this many steps or
    # fewer and on again (see backtracks)
    order_min_step_deg: float = 1.0  # ... and only if they turn at least this much (median): a
    # turntable's unmasked still room held successive photos within 0.1° of each other, where
    # a walk round a product turns 5–30° a photo (360 photos would still turn 1°)
    consensus: bool = True  # when both placements fail the order check, place the photos a
    # third time from the pairs a model built on trusted pairs explains (see place_by_consensus)
    consensus_rounds: int = 8  # ... at most this many global mappings
    consensus_min_agreement: float = 0.8  # ... a pair is explained when this share of its
    # verified matches fits the model (the cracker box's true pairs: 0.8–1; look-alike: < 0.5)
    rings: bool = True  # when the kept model is folded (see visibility_consistency), or the
    # order check kept none, place the photos again from the pairs near each other if the
    # capture went round in rings of equal count, one ring after another (see place_in_rings)
    ring_min_photos: int = 6  # ... rings of at least this many photos
    ring_max_off_plane: float = 0.1  # ... kept only if each ring's cameras lie this near one
    # plane (RMS over the ring's radius; see rings_go_round): synthetic rings lie within 0.03,
    # a hand-held walk round bobs more
    ring_rematch: bool = True  # the ring model's photos are matched again along its epipolar
    # lines, and it is refined again (see rematch_along_model)
    rematch_max_epipolar_px: float = 2.0  # ... a match lies this near the model's epipolar line
    rematch_max_view_angle_deg: float = 60.0  # ... in pairs whose viewing directions differ
    # by at most this (the bottle's look-alike sides were 90° apart)
    rematch_max_ratio: float = 0.8  # ... and its descriptor is this much nearer than the next
    # candidate's on that line
    product_only: bool = True  # when the model is still folded, place the photos a last time
    # from features on the product alone (see place_from_product): a repeating table
    product_only_min_background_share: float = 0.1  # ... unless under this share of the
    # keypoints lie on the background (background_keypoint_share), where the product alone
    # has the same features: 0.94 on the armchair's wooden table (which it placed), 0.00-0.02
    # on the benchmarks' plain backdrops, where it placed no capture the first try had not and
    # took 105 of the twin-print box's 132 s to fail
    min_features: int = 64  # fewer keypoints: the photo is reported as blurry or plain
    use_masks: bool = True  # extract only inside product masks when every photo has one
    # A turntable capture's still background is masked out first (recon.turntable)
    turntable: TurntableOptions = field(default_factory=TurntableOptions)
    num_threads: int = -1  # -1: every core
    # The final adjustment runs on one thread up to this many residuals (COLMAP's threshold is
    # 50,000): Ceres's threads add the Schur complement up in varying order, and a product
    # over it came out a little different every run (cereal box on a turntable 5,594 to 5,596
    # points, novel-view PSNR 26.49 or 26.21 dB; shoe on a table 6,979 to 6,982), on one
    # thread the same each time, in no more time. A room's walk (~500,000) keeps its threads.
    adjustment_threads_min_residuals: int = 300_000
    seed: int = 0  # RANSAC and mapper randomness (same input, same result)


@dataclass(frozen=True)
class SfmResult:
    cameras: list[Camera]  # registered photos, pinhole, undistorted, in capture order
    registered: int
    total: int
    unregistered: list[dict]  # {"image": name, "reason": why it is not in the model}
    points: int  # sparse points written to points.npz
    mean_reprojection_error_px: float
    visibility_consistency: float  # see visibility_consistency: ~0.7 placed right, ~0.3 folded
    timings_s: dict[str, float] = field(default_factory=dict)  # per step


def run(
    workspace: Workspace,
    options: SfmOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> SfmResult:
    """Place the working photos of `workspace` and write cameras.json, points.npz and the
    undistorted photos. Raises CaptureError when fewer than three photos can be placed."""
    options = options or SfmOptions()
    _validate(options)
    report = _Progress(progress)
    photos = _read_photos(workspace)
    names = [photo["name"] for photo in photos]
    timings: dict[str, float] = {}

    _clean(workspace)
    database_path = workspace.sfm_database_path
    with _quiet_colmap():
        start = time.perf_counter()
        report("extract", 0.0, f"finding features in {len(names)} photos")
        turntable = mask_still_background(workspace, names, options.turntable)
        masks_dir = _masks_dir(workspace, names) if options.use_masks else None
        _create_database(database_path, workspace.images_dir, photos, options)
        upsampled, plain = _extract_features(database_path, workspace, photos, masks_dir, options)
        if upsampled:
            logger.info("sfm: %d photos searched again for more features", upsampled)
        if is_plain_capture(plain, len(names), options):
            logger.info("sfm: a plain capture: guided matching and two-photo points")
            options = plain_capture_options(options)
        timings["extract"] = time.perf_counter() - start

        start = time.perf_counter()
        report("match", 0.0, "matching photos")
        every_pair = _match(database_path, names, options)
        # Whether a dense capture's names follow the capture order (with fewer photos, on rings
        # of 12, neighbours above match as well as those beside): see visibility_photos.
        in_order = len(names) <= options.visibility_max_photos or (
            successive_share(database_path, names, options) >= options.min_successive_share
        )
        timings["match"] = time.perf_counter() - start

        start = time.perf_counter()
        report("map", 0.0, "placing photos")
        best, models, stats = _place_photos(database_path, workspace, names, options, report)
        timings["map"] = time.perf_counter() - start
        order_check: dict = {}
        order_failure: CaptureError | None = None  # raised unless the product alone places
        if options.order_check and every_pair:
            # Under order_min_photos every pair is near in capture order: no second placement
            # from neighbours alone to compare with, so the walk alone judges.
            check = (
                check_capture_order if len(names) >= options.order_min_photos else check_short_walk
            )
            start = time.perf_counter()
            report("map", 0.85, "checking the placement against the capture order")
            try:
                best, order_check = check(database_path, workspace, names, best, options)
            except CaptureError as error:
                order_failure = error
            timings["order_check"] = time.perf_counter() - start
        consistency = 0.0
        if order_failure is None:
            start = time.perf_counter()
            report("map", 0.9, "refining cameras")
            best = refine(best, options, _photo_loader(workspace))
            timings["refine"] = time.perf_counter() - start
            judged_on = visibility_photos(
                best, names, options, in_order=in_order, confirmed=order_check.get("agreed", False)
            )
            consistency = model_visibility(best, names, judged_on)
            if not in_order:
                order_check["names_in_capture_order"] = False
        # Also when the order check failed: rings tie photos above one another, which neither
        # capture order nor a look-alike product's strongest pairs do (the 640 px cracker box).
        if (options.rings and in_order) and (
            consistency < options.min_visibility_consistency
            or order_check.get("walks_in_order") is False
        ):
            start = time.perf_counter()
            report("map", 0.95, "placing the photos again, ring by ring")
            placed, order_check["rings"] = place_in_rings(
                database_path, workspace, names, best, options
            )
            if order_check["rings"]["kept"]:
                best, order_failure = placed, None
                consistency = model_visibility(best, names, visibility_photos(best, names, options))
            timings["rings"] = time.perf_counter() - start
        if (
            options.product_only
            and consistency < options.min_visibility_consistency
            and masks_dir is None
        ):
            start = time.perf_counter()
            share = background_keypoint_share(database_path, workspace)
            if share < options.product_only_min_background_share:
                logger.info(
                    "sfm: %.0f %% of the keypoints lie on the background: the product alone has "
                    "the same features, so the photos are not placed again from it",
                    100 * share,
                )
                order_check["product_only"] = {
                    "tried": False,
                    "background_share": round(share, 4),
                }
            else:
                report("map", 0.97, "placing the photos again from the product alone")
                placed = place_from_product(workspace, photos, options, report)
                order_check["product_only"] = placed.summary
                if placed.kept:
                    best, models, stats, consistency = (
                        placed.model, placed.models, placed.stats, placed.visibility
                    )  # fmt: skip
                    order_failure = None
            timings["product_only"] = time.perf_counter() - start
        if order_failure is not None:
            raise CaptureError(f"{order_failure}{'' if in_order else NAMES_OUT_OF_ORDER}")
        if (
            options.complete_tracks
            and options.refine_keypoints
            and consistency >= options.min_visibility_consistency
        ):
            start = time.perf_counter()
            report("map", 0.98, "completing the tracks")
            added = complete_and_adjust(best, options, _photo_loader(workspace))
            logger.info("sfm: %d observations found by completing the tracks", added)
            timings["complete"] = time.perf_counter() - start
        workspace.sfm_model_dir.mkdir(parents=True, exist_ok=True)
        best.write(workspace.sfm_model_dir)
    if consistency < options.min_visibility_consistency:
        raise CaptureError(
            f"the photos could not be placed consistently: points the model puts in plain "
            f"view of a photo are missing from it (visibility consistency {consistency:.2f}, "
            f"under {options.min_visibility_consistency}). Sides that look alike (the same "
            "print on two faces) or a pattern that repeats (tiles, wood grain, a grid) were "
            "probably taken for one another. Take the photos in order around the product "
            "with more overlap, and put it on a patterned mat or newspaper whose print does "
            "not repeat, so every side has a distinct background"
            + ("" if in_order else NAMES_OUT_OF_ORDER)
        )

    start = time.perf_counter()
    report("undistort", 0.0, "undistorting photos")
    images_by_name = {image.name: image for image in _posed(best)}
    registered = [name for name in names if name in images_by_name]
    cameras = []
    workspace.sfm_images_dir.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(registered):
        image = images_by_name[name]
        camera = pinhole_camera(name, image.camera, image.cam_from_world().matrix())
        undistort_photo(
            workspace.image_path(name), workspace.sfm_image_path(name), image.camera, camera.K
        )
        cameras.append(camera)
        report("undistort", (index + 1) / len(registered), name)
    unregistered = [
        {"image": name, "reason": _unregistered_reason(name, stats, models, options)}
        for name in names
        if name not in images_by_name
    ]
    points = sparse_points(best, {name: index for index, name in enumerate(registered)})
    error = float(best.compute_mean_reprojection_error())
    agreement = agreement_summary(
        photo_agreement(best, database_path, options.max_pose_error_px),
        options.min_photo_agreement,
    )
    workspace.write_sfm_points(**points)
    timings["undistort"] = time.perf_counter() - start
    workspace.write_sfm_cameras(
        cameras,
        registered=len(cameras),
        total=len(names),
        unregistered=unregistered,
        mean_reprojection_error_px=round(error, 4),
        visibility_consistency=round(consistency, 4),
        match_agreement=agreement,
        order_check=order_check,
        turntable=turntable,
        intrinsics=[_intrinsics_json(camera) for camera in best.cameras.values()],
        timings_s={step: round(seconds, 2) for step, seconds in timings.items()},
    )
    for entry in unregistered:
        logger.warning("sfm: %s not placed: %s", entry["image"], entry["reason"])
    logger.info(
        "sfm: %d of %d photos placed, %d points, %.2f px; %s",
        len(cameras),
        len(names),
        len(points["xyz"]),
        error,
        ", ".join(f"{step} {seconds:.1f} s" for step, seconds in timings.items()),
    )
    return SfmResult(
        cameras=cameras,
        registered=len(cameras),
        total=len(names),
        unregistered=unregistered,
        points=len(points["xyz"]),
        mean_reprojection_error_px=error,
        visibility_consistency=consistency,
        timings_s=timings,
    )


# -- steps ------------------------------------------------------------------------------------


def _read_photos(workspace: Workspace) -> list[dict]:
    if not workspace.capture_path.exists():
        raise StageError(STAGE, f"{workspace.capture_path} is missing: run the capture stage first")
    photos = workspace.read_capture().get("images", [])
    if not isinstance(photos, list) or not photos:
        raise StageError(STAGE, f"{workspace.capture_path} lists no photos")
    missing = [p["name"] for p in photos if not workspace.image_path(p["name"]).exists()]
    if missing:
        raise StageError(
            STAGE, f"working photos missing from {workspace.images_dir}: {', '.join(missing[:5])}"
        )
    return photos


def _clean(workspace: Workspace) -> None:
    """Start from nothing: COLMAP appends to an existing database instead of replacing it, and
    features are searched only inside masks found in the workspace (a turntable's, written
    next): an earlier run's product masks, left from before the options changed, would have
    narrowed the search (a rerun of the avocado on a table placed it 0.113° off, not 0.038°)."""
    workspace.sfm_dir.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-shm", "-wal"):
        Path(f"{workspace.sfm_database_path}{suffix}").unlink(missing_ok=True)
    for folder in (workspace.sfm_images_dir, workspace.sfm_model_dir, workspace.masks_dir):
        shutil.rmtree(folder, ignore_errors=True)


def _masks_dir(workspace: Workspace, names: list[str]) -> Path | None:
    """The masks folder when every photo has a mask (COLMAP skips a photo whose mask is missing).

    COLMAP reads ``<mask_path>/<image name>.png`` and drops keypoints where it is 0, which is
    the layout of ``workspace.mask_path``.
    """
    if all(workspace.mask_path(name).exists() for name in names):
        return workspace.masks_dir
    return None


def camera_groups(photos: list[dict], shared: bool) -> list[list[int]]:
    """Indices of the photos that share one camera: same size, EXIF camera and focal prior."""
    if not shared:
        return [[index] for index in range(len(photos))]
    groups: dict[tuple, list[int]] = {}
    for index, photo in enumerate(photos):
        focal = photo.get("focal_px")
        key = (
            int(photo["width"]),
            int(photo["height"]),
            str(photo.get("camera") or ""),
            None if focal is None else round(float(focal), 1),
        )
        groups.setdefault(key, []).append(index)
    return list(groups.values())


def _create_database(
    database_path: Path, images_dir: Path, photos: list[dict], options: SfmOptions
) -> None:
    """Write the cameras (with focal priors) and import the photos, one group at a time."""
    pycolmap.Database.open(database_path).close()
    for group in camera_groups(photos, options.shared_intrinsics):
        first = photos[group[0]]
        width, height = int(first["width"]), int(first["height"])
        focal = first.get("focal_px")
        # COLMAP's own guess without EXIF (1.2 × the long side, about a 45° field of view).
        camera = pycolmap.Camera.create_from_model_name(
            0,
            options.camera_model,
            float(focal) if focal else 1.2 * max(width, height),
            width,
            height,
        )
        camera.has_prior_focal_length = bool(focal)
        database = pycolmap.Database.open(database_path)
        try:
            camera_id = database.write_camera(camera)
        finally:
            database.close()
        reader = pycolmap.ImageReaderOptions()
        reader.existing_camera_id = camera_id
        pycolmap.import_images(
            database_path,
            images_dir,
            image_names=[photos[index]["name"] for index in group],
            options=reader,
        )


def _extract_features(
    database_path: Path,
    workspace: Workspace,
    photos: list[dict],
    masks_dir: Path | None,
    options: SfmOptions,
) -> tuple[int, int]:
    """Keypoints of every photo into the database; returns how many photos were searched again,
    and how many of those were plain (searched once more, at twice the size, at low contrast).

    A first pass at the working size (cheap) probes each photo; photos with fewer than
    `upsample_below_features` keypoints are searched again at twice the size, where SIFT finds
    the fine print of a small product (photos over `upsample_max_px`: at their own size with
    the low contrast threshold). Photos with fewer than `low_contrast_below_features` even then
    show a plain product, and are searched once more at twice the size with a low contrast
    threshold, and so are their neighbours; photos with fewer than
    `plain_probe_below_features` at the working size are plain without the search between.
    """
    names = [photo["name"] for photo in photos]
    threshold = options.upsample_below_features
    hopeless: list[str] = []  # plain already at the working size: see plain_probe_below_features
    skipped: set[str] = set()  # these and their neighbours, left for the low contrast search
    if threshold <= 0 or threshold > options.max_features:
        upsample = threshold > 0
        _extract(database_path, workspace.images_dir, names, masks_dir, options, upsample=upsample)
        poor = names if upsample else []
    else:
        with tempfile.TemporaryDirectory(dir=workspace.sfm_dir) as folder:
            probe_path = Path(folder) / "probe.db"
            _create_database(probe_path, workspace.images_dir, photos, options)
            _extract(probe_path, workspace.images_dir, names, masks_dir, options, upsample=False)
            counts = keypoint_counts(probe_path)
            rich = [name for name in names if counts.get(name, 0) >= threshold]
            copy_features(probe_path, database_path, rich)
        poor = [name for name in names if name not in set(rich)]
        large = {
            photo["name"]
            for photo in photos
            if max(photo["width"], photo["height"]) > options.upsample_max_px
        }
        if options.low_contrast_below_features > 0:  # else no photo counts as plain
            hopeless = [
                name
                for name in poor
                if name not in large and counts.get(name, 0) < options.plain_probe_below_features
            ]
        skipped = set(with_neighbours(names, hopeless, options.low_contrast_neighbours))
        if small := [name for name in poor if name not in large and name not in skipped]:
            _extract(database_path, workspace.images_dir, small, masks_dir, options, upsample=True)
        if big := [name for name in poor if name in large]:  # see upsample_max_px
            _extract(database_path, workspace.images_dir, big, masks_dir, options, upsample=False,
                     peak_threshold=options.low_contrast_peak_threshold)  # fmt: skip
    counts = keypoint_counts(database_path)
    # (a skipped neighbour of a plain photo is not counted plain: its count is not known)
    plain = hopeless + [
        name
        for name in poor
        if name not in skipped and counts[name] < options.low_contrast_below_features
    ]
    if plain:
        alike = with_neighbours(names, plain, options.low_contrast_neighbours)
        # Only guided matching, which a plain capture gets, needs the keypoints capped: the
        # wood under an avocado gave 4 photos beside its plain one 5,000-5,600, and capped,
        # its novel-view PSNR fell 35.5 -> 35.0 dB.
        capped = is_plain_capture(len(plain), len(names), options)
        _search_plain_photos(
            database_path, workspace, photos, alike, masks_dir, options,
            max_keypoints=options.low_contrast_max_keypoints if capped else None,
        )  # fmt: skip
    return len(poor), len(plain)


def is_plain_capture(plain: int, count: int, options: SfmOptions) -> bool:
    """Whether a capture of `count` photos, `plain` of them plain, is a plain product's (see
    plain_capture_share)."""
    return plain > options.plain_capture_share * count


def with_neighbours(names: list[str], chosen: list[str], reach: int) -> list[str]:
    """`chosen` and the photos up to `reach` places from one of them in the capture order
    `names` (not wrapping: a ring's last photo need not be its first's neighbour), in order."""
    positions = {names.index(name) for name in chosen}
    near = {i + step for i in positions for step in range(-reach, reach + 1)}
    return [name for index, name in enumerate(names) if index in near]


def _search_plain_photos(
    database_path: Path,
    workspace: Workspace,
    photos: list[dict],
    plain: list[str],
    masks_dir: Path | None,
    options: SfmOptions,
    *,
    max_keypoints: int | None = None,
) -> None:
    """Search `plain` photos again at twice the size with the low contrast threshold, keeping
    the others' keypoints (weak keypoints only where the strong ones are too few), and at most
    `max_keypoints` of a plain photo's (the largest)."""
    logger.info("sfm: %d plain photos searched for low-contrast features", len(plain))
    with tempfile.TemporaryDirectory(dir=workspace.sfm_dir) as folder:
        previous_path = Path(folder) / "previous.db"
        shutil.move(database_path, previous_path)
        _create_database(database_path, workspace.images_dir, photos, options)
        others = [photo["name"] for photo in photos if photo["name"] not in set(plain)]
        copy_features(previous_path, database_path, others)
        search_path = Path(folder) / "search.db"
        _create_database(search_path, workspace.images_dir, photos, options)
        _extract(search_path, workspace.images_dir, plain, masks_dir, options, upsample=True,
                 peak_threshold=options.low_contrast_peak_threshold)  # fmt: skip
        copy_features(search_path, database_path, plain, max_keypoints)


def _extract(
    database_path: Path,
    images_dir: Path,
    names: list[str],
    masks_dir: Path | None,
    options: SfmOptions,
    *,
    upsample: bool,
    peak_threshold: float | None = None,
) -> None:
    """SIFT keypoints of `names` into the database; `upsample`: at twice the size;
    `peak_threshold`: SIFT's contrast threshold, when not COLMAP's."""
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = _threads(options)
    extraction.sift.max_num_features = options.max_features
    # Octave -2 (4× the size) for the plain photos of a plain water bottle: a third more true
    # matches between neighbours, but about 2.5× the SfM CPU and rotation error median 0.47 ->
    # 0.30°, mean 0.91 -> 0.90° (one photo 7.8° off): not worth it.
    extraction.sift.first_octave = -1 if upsample else 0
    if peak_threshold is not None:  # else COLMAP's default
        extraction.sift.peak_threshold = peak_threshold
    # Affine shapes and domain-size pooling cost 2–3× the time; on the synthetic captures they
    # gave no better poses and once a wrong, self-consistent model (bottle on a table).
    extraction.sift.estimate_affine_shape = False
    extraction.sift.domain_size_pooling = False
    reader = pycolmap.ImageReaderOptions()
    if masks_dir is not None:
        reader.mask_path = str(masks_dir)
    pycolmap.extract_features(
        database_path,
        images_dir,
        image_names=names,
        reader_options=reader,
        extraction_options=extraction,
        device=pycolmap.Device.cpu,
    )


def background_keypoint_share(database_path: Path, workspace: Workspace) -> float:
    """Share of the database's keypoints outside the product as the photos' colours show it
    (masks.unlike_rim_region: on the table or backdrop). 0 when there are none."""
    database = pycolmap.Database.open(database_path)
    try:
        outside = total = 0
        for image in database.read_all_images():
            keypoints = database.read_keypoints(image.image_id)
            photo = cv2.imread(str(workspace.image_path(image.name)), cv2.IMREAD_COLOR)
            if photo is None or not len(keypoints):
                continue
            product = masks.unlike_rim_region(photo) > 0
            height, width = product.shape
            # COLMAP's keypoints put pixel centres at +0.5
            cols = np.clip(np.floor(keypoints[:, 0]).astype(int), 0, width - 1)
            rows = np.clip(np.floor(keypoints[:, 1]).astype(int), 0, height - 1)
            outside += int((~product[rows, cols]).sum())
            total += len(keypoints)
    finally:
        database.close()
    return outside / total if total else 0.0


def keypoint_counts(database_path: Path) -> dict[str, int]:
    """Keypoints per photo name (photos COLMAP could not read have none)."""
    database = pycolmap.Database.open(database_path)
    try:
        return {
            image.name: database.num_keypoints_for_image(image.image_id)
            if database.exists_keypoints(image.image_id)
            else 0
            for image in database.read_all_images()
        }
    finally:
        database.close()


def descriptor_array(database: pycolmap.Database, image_id: int) -> np.ndarray:
    """(n, 128) SIFT descriptors of an image's keypoints, in keypoint order."""
    descriptors = database.read_descriptors(image_id)
    return np.asarray(getattr(descriptors, "data", descriptors))


def copy_features(
    source_path: Path, target_path: Path, names: list[str], max_keypoints: int | None = None
) -> None:
    """Copy keypoints and descriptors of `names` between databases that list the same photos;
    with `max_keypoints`, at most that many of a photo's, the largest (in their order)."""
    source = pycolmap.Database.open(source_path)
    target = pycolmap.Database.open(target_path)
    try:
        for name in names:
            source_id = source.read_image_with_name(name).image_id
            target_id = target.read_image_with_name(name).image_id
            keypoints = source.read_keypoints(source_id)
            descriptors = source.read_descriptors(source_id)
            if max_keypoints is not None and len(keypoints) > max_keypoints:
                # (the scale of the keypoint's affine frame: the length of its first column)
                scale = np.hypot(keypoints[:, 2], keypoints[:, 3])
                keep = np.sort(np.argsort(-scale, kind="stable")[:max_keypoints])
                keypoints = keypoints[keep]
                descriptors = pycolmap.FeatureDescriptors(
                    descriptors.type, np.asarray(descriptors.data)[keep]
                )
            target.write_keypoints(target_id, keypoints)
            target.write_descriptors(target_id, descriptors)
    finally:
        source.close()
        target.close()


def _threads(options: SfmOptions) -> int:
    """-1 means every core; COLMAP warns about memory unless told the number."""
    return options.num_threads if options.num_threads > 0 else (os.cpu_count() or 1)


def _match(database_path: Path, names: list[str], options: SfmOptions) -> bool:
    """Match the photos' features; whether every pair was matched."""
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = _threads(options)
    matching.guided_matching = options.guided_matching
    verification = pycolmap.TwoViewGeometryOptions()
    verification.min_num_inliers = options.min_pair_inliers
    verification.ransac.max_error = options.ransac_max_error_px
    verification.ransac.random_seed = options.seed

    def match_every_pair() -> None:  # (pairs already matched are not matched again)
        pycolmap.match_exhaustive(
            database_path,
            matching_options=matching,
            verification_options=verification,
            device=pycolmap.Device.cpu,
        )

    if _matches_exhaustively(len(names), options):
        match_every_pair()
        return True
    pairs = sequential_pairs(len(names), options.sequential_overlap, options.loop_closure_photos)
    with tempfile.TemporaryDirectory(dir=database_path.parent) as folder:
        pairs_path = Path(folder) / "pairs.txt"
        pairs_path.write_text("".join(f"{names[a]} {names[b]}\n" for a, b in pairs))
        pairing = pycolmap.ImportedPairingOptions()
        pairing.match_list_path = str(pairs_path)
        pycolmap.match_image_pairs(
            database_path,
            matching_options=matching,
            pairing_options=pairing,
            verification_options=verification,
            device=pycolmap.Device.cpu,
        )
    # Sequential pairs assume the names follow the capture order. 72 photos shuffled met
    # mostly strangers: 70 placed, refused as folded after 160 s.
    share = successive_share(database_path, names, options)
    if options.matcher != Matcher.AUTO or share >= options.min_successive_share:
        return False
    logger.warning(
        "sfm: successive photos are seldom neighbours (%.0f %%): the names do not follow the "
        "capture order, so every pair of the %d photos is matched",
        100 * share,
        len(names),
    )
    match_every_pair()
    return True


def _matches_exhaustively(count: int, options: SfmOptions) -> bool:
    return options.matcher == Matcher.EXHAUSTIVE or (
        options.matcher == Matcher.AUTO and count <= options.max_exhaustive_photos
    )


def check_capture_order(
    database_path: Path,
    workspace: Workspace,
    names: list[str],
    best: pycolmap.Reconstruction,
    options: SfmOptions,
) -> tuple[pycolmap.Reconstruction, dict]:
    """The model to keep, after placing the photos again from the pairs near each other in
    capture order only (`order_window`), and what the comparison found.

    Sides printed alike (a box with the same front and back) match each other as well as true
    neighbours do, and a model from all pairs can fold them onto one another with no sign of
    trouble: every match agrees with it. Neighbours in capture order rarely show look-alike
    sides, so a model from them alone does not fold that way (though, less tied together, it
    can go wrong in other ways). When the two models agree the first is kept (more pairs,
    better poses); when they agree on too few photos to tell (`order_min_compared_share`), it
    is kept too, with "walks_in_order" saying whether its successive photos turn smoothly
    (the sfm stage places the photos again ring by ring when they do not). When they
    disagree, the one whose successive photos turn smoothly is kept, the all-pairs model first,
    the ordered one only if it places nearly as many photos, then one placed by consensus
    (`place_by_consensus`) on the same terms; else the capture fails with advice (naming a
    still background instead of look-alike sides where the photos do not turn at all).

    Neither placement here uses the structure-less registration: from neighbouring pairs
    alone many photos have no 2D-3D pose, and trying each again after every photo placed
    took 12 of the turntable mustard bottle's 16 s of SfM (0.6 s without, the same model
    kept; the plain WaterBottle's check 4.8 -> 1.5 s, the same model).
    """
    options = replace(options, structure_less_registration=False)
    with tempfile.TemporaryDirectory(dir=workspace.sfm_dir) as folder:
        ordered_path = Path(folder) / "ordered.db"
        shutil.copyfile(database_path, ordered_path)
        keep_pairs_near_in_order(ordered_path, names, options.order_window)
        quiet = _Progress(None)
        models = _map(ordered_path, workspace, len(names), options, quiet, relaxed=False)
        ordered = models[0] if models else None
        if options.relaxed_pass and (ordered is None or ordered.num_reg_images() < len(names)):
            ordered = _extend(ordered_path, workspace, len(names), options, quiet, ordered)
    if ordered is None:
        return best, {"compared": False, "reason": "no model from neighbouring photos"}
    disagreeing, compared = rotation_disagreement(best, ordered, options.order_disagreement_deg)
    finding = {
        "compared": True,
        "photos_placed_in_order": ordered.num_reg_images(),
        "pairs_compared": compared,
        "pairs_disagreeing": round(disagreeing, 4),
    }
    indices = capture_indices(workspace.read_capture().get("images", []))
    if len(indices) != len(names):
        indices = None
    if disagreeing <= options.order_max_disagreement:
        if ordered.num_reg_images() >= options.order_min_compared_share * best.num_reg_images():
            return best, {**finding, "kept": "all pairs", "agreed": True}
        # Too few photos placed in order for their agreement to clear the model: it is judged
        # by its turns alone. One that does not walk round in order is placed again ring by
        # ring where it can be (see run), else kept: photos not taken in order (the Middlebury
        # temple's sparse ring) walk nowhere either.
        largest_all, all_smooth = smooth_in_order(best, names, options, indices)
        finding["largest_step_deg"] = {"all pairs": largest_all}
        return best, {**finding, "kept": "all pairs", "walks_in_order": all_smooth}
    logger.warning(
        "sfm: %.0f %% of photo pairs turn differently when only neighbours in capture order are "
        "matched (look-alike sides, or a still background?)",
        100 * disagreeing,
    )
    # Which model to believe: successive photos of a walk around the product turn a little each
    # time; a model that puts photos on the wrong look-alike side turns half-way round between
    # neighbours (the ordered model can be wrong too: less tied together, it can turn a run of
    # photos by 90° on a box).
    largest_all, all_smooth = smooth_in_order(best, names, options, indices)
    largest_ordered, ordered_smooth = smooth_in_order(ordered, names, options, indices)
    finding["largest_step_deg"] = {"all pairs": largest_all, "in order": largest_ordered}
    still = median_step_deg(ordered, names, indices)
    finding["median_step_deg"] = {
        "all pairs": median_step_deg(best, names, indices),
        "in order": still,
    }
    if all_smooth:
        return best, {**finding, "kept": "all pairs"}
    if ordered.num_reg_images() >= 0.9 * best.num_reg_images() and ordered_smooth:
        return ordered, {**finding, "kept": "neighbours in capture order"}
    if options.consensus:
        consensus = place_by_consensus(database_path, workspace, names, options)
        if consensus is not None:
            largest, smooth = smooth_in_order(consensus, names, options, indices)
            finding["largest_step_deg"]["consensus"] = largest
            finding["photos_placed_by_consensus"] = consensus.num_reg_images()
            if consensus.num_reg_images() >= 0.9 * best.num_reg_images() and smooth:
                return consensus, {**finding, "kept": "consensus of trusted pairs"}
    if best.num_reg_images() < options.order_min_compared_share * len(names):
        # Under half the photos placed, by all pairs: too little to tell look-alike sides or
        # a still background from photos that share too few features (a plain avocado's noisy
        # photos: 7 of 24, and 2 in capture order, 0.9° apart, were taken for a still room).
        raise CaptureError(
            f"only {best.num_reg_images()} of {len(names)} photos could be placed consistently: "
            f"{CAPTURE_ADVICE}"
        )
    if still is not None and still < options.order_min_step_deg:
        # Not look-alike sides: the photos share something that never moved (the room behind a
        # product turning on a turntable, when it could not be masked), which pins the cameras
        # together while the product's own features say they went round it.
        raise CaptureError(
            f"the photos could not be placed consistently: successive photos hardly turn "
            f"against what they share (a median of {still:.1f}° in capture order): something "
            "stayed still in every photo while the product turned (the room behind a turntable, "
            "or a mark on the lens). Shoot a turntable against a plain backdrop, or walk around "
            "the product instead of turning it"
        )
    placed_in_order = (
        f"place only {ordered.num_reg_images()} of {len(names)}"
        if ordered.num_reg_images() < 0.9 * best.num_reg_images()
        else f"turn {largest_ordered:.0f}° between two successive photos"
    )
    raise CaptureError(
        f"the photos could not be placed consistently: sides that look alike (the same print "
        f"on two faces) were taken for one another ({100 * disagreeing:.0f} % of photo pairs "
        f"disagree with the capture order), and the photos in capture order alone "
        f"{placed_in_order}. Take the photos in order around the "
        "product, each overlapping the last, and put a patterned mat or newspaper under it so "
        "every side has a distinct background"
    )


def check_short_walk(
    database_path: Path,
    workspace: Workspace,
    names: list[str],
    best: pycolmap.Reconstruction,
    options: SfmOptions,
) -> tuple[pycolmap.Reconstruction, dict]:
    """The model to keep for a capture too small for `check_capture_order` (under
    `order_min_photos` photos every pair is near in capture order: there is no second
    placement to compare with), judged by its walk alone. One that turns back round the
    product and on again (`backtracks`) has taken a side for a look-alike one, or its photos'
    names do not follow the capture order: it is placed again by consensus
    (`place_by_consensus`). That placement is kept if it walks on; the first is kept, with
    "walks_in_order" false (a warning), if the two agree (the names' order, then); else the
    capture fails with advice. The cracker box's first five photos (120° of its lower ring)
    placed its narrow side where its front is and were published 127–173° off; by consensus 3
    of the 5 are placed, right. Photos 120° apart (every fourth of two rings) do not turn
    back."""
    if not backtracks(best, names, options):
        return best, {"compared": False, "walks_in_order": True}
    finding: dict = {"compared": False, "walks_in_order": False}
    consensus = (
        place_by_consensus(database_path, workspace, names, options) if options.consensus else None
    )
    if consensus is not None:
        finding["photos_placed_by_consensus"] = consensus.num_reg_images()
        if not backtracks(consensus, names, options):
            return consensus, {
                **finding,
                "walks_in_order": True,
                "kept": "consensus of trusted pairs",
            }
        disagreeing, _ = rotation_disagreement(best, consensus, options.order_disagreement_deg)
        if (
            disagreeing <= options.order_max_disagreement
            and consensus.num_reg_images() >= best.num_reg_images()
        ):
            return best, {**finding, "kept": "all pairs", "consensus_agrees": True}
    raise CaptureError(
        "the photos could not be placed consistently: as placed, in the order of their names, "
        "they turn back round the product and on again, and no other placement of these "
        f"{len(names)} photos holds: sides that look alike (the same print on two faces) were "
        "probably taken for one another. Take more photos in order around the product, each "
        "overlapping the last (about every 15°) and named in the order taken, and put a "
        "patterned mat or newspaper under it so every side has a distinct background"
    )


def place_by_consensus(
    database_path: Path, workspace: Workspace, names: list[str], options: SfmOptions
) -> pycolmap.Reconstruction | None:
    """The photos placed from the pairs that a model built on trusted pairs explains; None
    when no model comes of it.

    On a box whose logo and pictures repeat on every face (the YCB cracker box) two in three
    verified pairs match one face onto another, many with more matches than true neighbours
    have: every model from all pairs, and from neighbours in capture order within 3, folded.
    Yet each photo's strongest pair was a true one, and so were successive photos' but one.
    From those (`consensus_seed`) a global mapping (rotation averaging first, which joins the
    faces' groups of photos where incremental mapping turned whole groups by 45–135°) places
    most photos right; the pairs that model explains are the next round's, and photos whose
    strongest pair it contradicts go back to their trusted pairs. A last incremental pass
    places those from the explained pairs (PnP lets the strong pairs outvote a wrong one).
    """
    pairs = verified_pairs(database_path, options.min_pair_inliers)
    seed = consensus_seed(pairs, names)
    strongest = strongest_partner(pairs)
    allowed: set[frozenset[str]] = set(seed)
    model, trusted, explained, seen = None, set(), set(), []
    quiet = _Progress(None)
    with tempfile.TemporaryDirectory(dir=workspace.sfm_dir) as folder:
        for round_index in range(options.consensus_rounds):
            path = Path(folder) / f"round{round_index}.db"
            shutil.copyfile(database_path, path)
            keep_only_pairs(path, allowed)
            model = _global_map(path, workspace, options, Path(folder) / f"global{round_index}")
            if model is None:
                return None
            agreement = pair_agreement(model, database_path, options.max_pose_error_px)
            explained = {
                frozenset((a, b))
                for a, b, _, fraction in agreement
                if fraction >= options.consensus_min_agreement
            }
            placed = {image.name for image in _posed(model)}
            # Trusted: the largest group the explained pairs hold together (a group joined to
            # it only by pairs the model contradicts sits turned); the others get their seed
            # pairs back, to be placed again.
            trusted = supported_component(
                agreement, set(), options.min_pair_inliers, options.consensus_min_agreement
            )
            allowed = {pair for pair in explained if pair <= trusted}
            allowed |= {pair for pair in seed if not pair <= trusted}
            state = (frozenset(trusted), frozenset(allowed))
            logger.info(
                "sfm: consensus round %d: %d photos placed, %d trusted, %d pairs explained",
                round_index + 1,
                len(placed),
                len(trusted),
                len(explained),
            )
            if state in seen:
                break
            seen.append(state)
        # A photo whose strongest pair the model contradicts was pulled by a wrong one: it is
        # placed again, by the incremental mapper, from its seed pairs.
        trusted = {
            name
            for name in trusted
            if name in strongest and frozenset((name, strongest[name])) in explained
        }
        if model is None or len(trusted) < 3:
            return None
        allowed = {pair for pair in explained if pair <= trusted}
        allowed |= {pair for pair in seed if not pair <= trusted}
        for image in _posed(model):
            if image.name not in trusted:
                model.deregister_frame(image.frame_id)
        path = Path(folder) / "finish.db"
        shutil.copyfile(database_path, path)
        keep_only_pairs(path, allowed)
        model = _extend(path, workspace, len(names), options, quiet, model) or model
        # The poses from every pair the placed photos explain, mapped afresh.
        explained = {
            frozenset((a, b))
            for a, b, _, fraction in pair_agreement(model, database_path, options.max_pose_error_px)
            if fraction >= options.consensus_min_agreement
        }
        shutil.copyfile(database_path, path)
        keep_only_pairs(path, explained)
        models = _map(path, workspace, len(names), options, quiet, relaxed=False)
        final = models[0] if models else None
        if options.relaxed_pass and (final is None or final.num_reg_images() < len(names)):
            final = _extend(path, workspace, len(names), options, quiet, final)
    if final is None or final.num_reg_images() < model.num_reg_images():
        return model
    return final


def place_in_rings(
    database_path: Path,
    workspace: Workspace,
    names: list[str],
    folded: pycolmap.Reconstruction,
    options: SfmOptions,
) -> tuple[pycolmap.Reconstruction, dict]:
    """The photos placed, and refined, from the pairs near each other on the capture's rings,
    when that model is not folded either; else `folded` itself. Also what was found.

    A product photographed in two rings (low, then high) is tied across the rings by photos
    above one another, which neighbours in capture order (`check_capture_order`) never pair.
    On a plain water bottle whose holder looks alike every 90°, look-alike views matched as
    often as true neighbours did (51-55 matches), and every model from all pairs folded
    (visibility consistency 0.17); from the pairs of two rings of 12 all 24 photos were placed,
    0.5° off. Only the best supported ring size is tried (`ring_sizes`): rings of 8 on that
    capture placed 22 photos 30° off, yet was not folded and walked smoothly photo to photo.
    The model is kept only if it is not folded, walks smoothly round the product, each ring
    goes round once near one plane (`rings_go_round`, which refuses those rings of 8) and it
    places nearly as many photos. Before those checks its photos are matched again along its
    epipolar lines and its points triangulated afresh (`rematch_along_model`): the few pairs
    it was built from left the bottle's photos 0.37° off (median; one 6.6°), then 0.16°.

    When it is not kept, the photos are placed once more from the pairs one place apart only,
    less those whose matches fit no calibrated camera (`uncalibrated_pairs`), by global
    mapping. The 640 px cracker box's faces look alike 60° apart (000-002: 162 matches, 5 %
    true), and its successive photos' uncalibrated pairs mix a look-alike face's matches in
    (010-011: 28 % true): with either, incremental mapping turned half the photos by 90°.
    Incremental mapping from the rest placed them 0.1° off but drifted the upper ring's
    positions by up to 0.7 of its radius (joining small models through single photos); global
    mapping placed them 0.06° off, within 0.2 % of the radius.
    """
    order = {name: index for index, name in enumerate(names)}
    pairs: dict[tuple[int, int], int] = {}
    for pair, inliers in verified_pairs(database_path, options.min_pair_inliers).items():
        first, second = sorted(order[name] for name in pair)
        pairs[(first, second)] = inliers
    sizes = ring_sizes(pairs, len(names), options.ring_min_photos)
    if not sizes:
        return folded, {"kept": False, "reason": "no rings of equal size"}
    size = sizes[0]
    offset = ring_offset(pairs, size)
    # Up to a sixth of a ring apart (60°): the bottle's views 90° apart were look-alikes.
    near = ring_pairs(len(names), size, offset, window=max(1, size // 6))
    model, finding = _place_ring_pairs(
        database_path, workspace, names, near, size, folded, options, global_mapping=False
    )
    if not finding["kept"]:
        untrusted = uncalibrated_pairs(database_path)
        adjacent = {
            (i, j)
            for i, j in ring_pairs(len(names), size, offset, window=1)
            if frozenset((names[i], names[j])) not in untrusted
        }
        model, again = _place_ring_pairs(
            database_path, workspace, names, adjacent, size, folded, options, global_mapping=True
        )
        finding = {"pairs": "calibrated, one place apart", **again, "first_try": finding}
    finding = {"photos_per_ring": size, "offset": offset, **finding}
    logger.info("sfm: placed ring by ring: %s", finding)
    return (model if finding["kept"] else folded), finding


def _place_ring_pairs(
    database_path: Path,
    workspace: Workspace,
    names: list[str],
    near: set[tuple[int, int]],
    size: int,
    folded: pycolmap.Reconstruction,
    options: SfmOptions,
    *,
    global_mapping: bool,
) -> tuple[pycolmap.Reconstruction | None, dict]:
    """For `place_in_rings`: the refined model of the photos placed from the index pairs
    `near` alone (rings of `size`), and whether to keep it instead of `folded`."""
    quiet = _Progress(None)
    with tempfile.TemporaryDirectory(dir=workspace.sfm_dir) as folder:
        path = Path(folder) / "rings.db"
        shutil.copyfile(database_path, path)
        keep_only_pairs(path, {frozenset((names[i], names[j])) for i, j in near})
        if global_mapping:
            model = _global_map(path, workspace, options, Path(folder) / "global")
        else:
            models = _map(path, workspace, len(names), options, quiet, relaxed=False)
            model = models[0] if models else None
        if options.relaxed_pass and (model is None or model.num_reg_images() < len(names)):
            model = _extend(path, workspace, len(names), options, quiet, model)
    if model is None:
        return None, {"placed": 0, "kept": False}
    # Rings that do not go round once as placed are refused before the costly refinement and
    # rematching, which move cameras by degrees, not round a ring: the twin-print box read as
    # rings of 6 (windings 0) took 5 minutes to fail, the armchair on its table placed 7 photos.
    placed_rings = rings_go_round(model, names, size, options)
    if not winds_once(placed_rings["windings"]):
        return model, {"placed": model.num_reg_images(), "rings": placed_rings, "kept": False}
    load_photo = _photo_loader(workspace)
    model = refine(model, options, load_photo)
    if options.ring_rematch:
        rematched = rematch_along_model(model, database_path, workspace, options)
        # The armchair on its repeating table: 4 pairs of a few photos, none triangulated.
        if rematched.num_points3D():
            model = refine(rematched, options, load_photo)
    consistency = model_visibility(model, names, visibility_photos(model, names, options))
    _, smooth = smooth_in_order(model, names, options)
    round_rings = rings_go_round(model, names, size, options)
    return model, {
        "placed": model.num_reg_images(),
        "visibility_consistency": round(consistency, 4),
        "smooth": smooth,
        "rings": round_rings,
        "kept": consistency >= options.min_visibility_consistency
        and smooth
        and round_rings["round"]
        and model.num_reg_images() >= 0.9 * folded.num_reg_images(),
    }


def rematch_along_model(
    model: pycolmap.Reconstruction,
    database_path: Path,
    workspace: Workspace,
    options: SfmOptions,
) -> pycolmap.Reconstruction:
    """`model`'s photos, at their poses, with points triangulated afresh from keypoints matched
    along the model's epipolar lines (`match_along_model`) instead of the verified pairs'.

    The ring model of a plain water bottle was built from pairs up to two places apart on a
    ring, and those had few matches: the ratio test drops a plain product's true matches when
    its holder looks alike every 90° (neighbours 30° apart: 0-35 raw matches; photo 17 had two
    verified pairs). Photos held by few points sat in a local minimum of the adjustment
    (median rotation error 0.37°, photo 17 6.6°; the same observations adjusted from the true
    cameras end 0.13° off, at a lower cost). Along the model's epipolar lines a match need
    only beat the other keypoints on its line: 97 pairs, 7063 matches (91 % true by the true
    cameras) against 86 verified pairs, 4164 matches (35 pairs, 1208 matches look-alike).
    Refined, the photos were 0.12-0.16° off (median; the worst 0.35-0.40°). `refine` then
    adjusts the poses freely, so the model's errors are not kept."""
    database = pycolmap.Database.open(database_path)
    try:
        features = {
            image.image_id: (
                database.read_keypoints(image.image_id)[:, :2].astype(np.float64),
                descriptor_array(database, image.image_id),
            )
            for image in _posed(model)
        }
    finally:
        database.close()
    pairs = match_along_model(model, features, options)
    with tempfile.TemporaryDirectory(dir=workspace.sfm_dir) as folder:
        path = Path(folder) / "rematched.db"
        shutil.copyfile(database_path, path)
        database = pycolmap.Database.open(path)
        try:
            database.clear_two_view_geometries()
            database.clear_matches()
            for (first, second), matches in pairs.items():
                geometry = pycolmap.TwoViewGeometry()
                geometry.config = pycolmap.TwoViewGeometryConfiguration.CALIBRATED
                geometry.inlier_matches = matches.astype(np.uint32)
                database.write_matches(first, second, matches.astype(np.uint32))
                database.write_two_view_geometry(first, second, geometry)
        finally:
            database.close()
        output_path = Path(folder) / "model"
        output_path.mkdir()
        rematched = pycolmap.triangulate_points(
            pycolmap.Reconstruction(model),
            path,
            workspace.images_dir,
            output_path,
            clear_points=True,
            options=_pipeline_options(options, relaxed=True),
        )
    logger.info(
        "sfm: %d pairs matched again along the model's epipolar lines (%d matches): %d points",
        len(pairs),
        sum(len(matches) for matches in pairs.values()),
        rematched.num_points3D(),
    )
    return rematched


def match_along_model(
    model: pycolmap.Reconstruction,
    features: dict[int, tuple[np.ndarray, np.ndarray]],
    options: SfmOptions,
) -> dict[tuple[int, int], np.ndarray]:
    """Keypoint matches, (k, 2) keypoint rows by pair of image ids (first < second), of the
    placed photos whose viewing directions differ by at most `rematch_max_view_angle_deg`.
    `features`: each image's (n, 2) keypoints (COLMAP pixels) and (n, 128) descriptors.

    A keypoint's candidates are the other photo's keypoints within `rematch_max_epipolar_px`
    of its epipolar line; it matches the nearest candidate in descriptor space when that is
    nearer than the next candidate by `rematch_max_ratio` and the two choose each other.
    Pairs with fewer than `min_pair_inliers` matches are left out."""
    images = {image.image_id: image for image in _posed(model) if image.image_id in features}
    poses = {image_id: image.cam_from_world().matrix() for image_id, image in images.items()}
    rays = {
        image_id: image.camera.cam_from_img(features[image_id][0])
        for image_id, image in images.items()
    }
    descriptors = {}
    for image_id in images:
        values = features[image_id][1].astype(np.float32)
        descriptors[image_id] = values / np.maximum(
            np.linalg.norm(values, axis=1, keepdims=True), 1e-12
        )
    min_cosine = np.cos(np.radians(options.rematch_max_view_angle_deg))
    pairs = {}
    for first, second in combinations(sorted(images), 2):
        if poses[first][2, :3] @ poses[second][2, :3] < min_cosine:
            continue
        focal = 0.5 * (
            images[first].camera.mean_focal_length() + images[second].camera.mean_focal_length()
        )
        matches = epipolar_descriptor_matches(
            poses[first],
            poses[second],
            rays[first],
            rays[second],
            descriptors[first],
            descriptors[second],
            max_error=options.rematch_max_epipolar_px / focal,
            max_ratio=options.rematch_max_ratio,
        )
        if len(matches) >= options.min_pair_inliers:
            pairs[(first, second)] = matches
    return pairs


def epipolar_descriptor_matches(
    pose_a: np.ndarray,
    pose_b: np.ndarray,
    rays_a: np.ndarray,
    rays_b: np.ndarray,
    descriptors_a: np.ndarray,
    descriptors_b: np.ndarray,
    *,
    max_error: float,
    max_ratio: float,
    block_rows: int = 1024,
) -> np.ndarray:
    """(k, 2) rows of mutual nearest descriptors among the pairs whose Sampson distance under
    the (3, 4) world-to-camera poses is within `max_error` (normalized image units), each
    nearer than its row's next candidate by `max_ratio`. (n, 2) rays, (n, d) unit descriptors.
    Rows are taken `block_rows` at a time (8192 keypoints a photo would need GBs at once)."""
    if len(rays_a) == 0 or len(rays_b) < 2:
        return np.zeros((0, 2), np.int64)
    rotation = pose_b[:, :3] @ pose_a[:, :3].T
    tx, ty, tz = pose_b[:, 3] - rotation @ pose_a[:, 3]
    essential = np.array([[0, -tz, ty], [tz, 0, -tx], [-ty, tx, 0]]) @ rotation
    a = np.column_stack([rays_a, np.ones(len(rays_a))])
    b = np.column_stack([rays_b, np.ones(len(rays_b))])
    lines_a = b @ essential  # (n_b, 3): each b ray's epipolar line in a
    b_norm = lines_a[:, 0] ** 2 + lines_a[:, 1] ** 2
    best = np.zeros(len(a), np.int64)
    ratio_ok = np.zeros(len(a), bool)
    column_best = np.full(len(b), np.inf)
    column_row = np.full(len(b), -1)
    for start in range(0, len(a), block_rows):
        rows = np.arange(start, min(start + block_rows, len(a)))
        lines_b = a[rows] @ essential.T  # (r, 3): each a ray's epipolar line in b
        numerator = (lines_b @ b.T) ** 2
        denominator = (lines_b[:, :1] ** 2 + lines_b[:, 1:2] ** 2) + b_norm[None]
        on_line = numerator <= max_error**2 * np.maximum(denominator, 1e-30)
        similarity = descriptors_a[rows] @ descriptors_b.T
        distance = np.where(on_line, np.maximum(2.0 - 2.0 * similarity, 0.0), np.inf)
        two = np.argpartition(distance, 1, axis=1)[:, :2]
        local = np.arange(len(rows))
        nearest, next_nearest = distance[local, two[:, 0]], distance[local, two[:, 1]]
        best[rows] = np.where(next_nearest < nearest, two[:, 1], two[:, 0])
        nearest, next_nearest = (
            np.minimum(nearest, next_nearest), np.maximum(nearest, next_nearest)
        )  # fmt: skip
        ratio_ok[rows] = np.isfinite(nearest) & (
            np.sqrt(nearest) < max_ratio * np.sqrt(next_nearest)
        )
        block_best = distance.min(axis=0)
        better = block_best < column_best
        column_best[better] = block_best[better]
        column_row[better] = rows[np.argmin(distance, axis=0)[better]]
    rows = np.arange(len(a))
    keep = ratio_ok & (column_row[best] == rows)
    return np.column_stack([rows[keep], best[keep]])


def winds_once(windings: list[float]) -> bool:
    """Whether rings with these turns (`rings_go_round`) each go round once, all the same way
    (one capture goes round its rings one way)."""
    return (
        bool(windings)
        and all(abs(abs(winding) - 1.0) < 0.5 for winding in windings)
        and len({np.sign(winding) for winding in windings}) == 1
    )


def rings_go_round(
    model: pycolmap.Reconstruction, names: list[str], size: int, options: SfmOptions
) -> dict:
    """Whether the placed photos of each ring of `size` (photos in capture order `names`, one
    ring after another) lie near one plane and go round it once, in order, all rings the same
    way: {"round": bool, "off_plane": largest off-plane spread, "worst_step": largest step over
    its expected share of the ring, "windings": turns per ring}.

    Per ring: the camera centres' best plane; their spread off it (RMS over the radius of the
    best circle through them in that plane, at most `ring_max_off_plane`); their angles round
    that circle's centre, from each placed photo to the next and from the last back to the
    first. Walking round once, every step turns the same way, the steps add up to one turn,
    and none is more than `order_max_step_ratio` × its expected share (360° / `size` a place).
    Rings of 8 taken for the two rings of 12 of a plain water bottle placed 22 photos 30° off,
    folded nowhere and walking smoothly from photo to photo; read as rings of 8, the first has
    a step 3.9× its share (true rings: 1.3× at most), and they sit up to 0.066 off their planes
    (true rings: 0.027–0.028; hand-held rings bob more, hence the 0.1 allowed).
    Rings with fewer than three placed photos are not judged.
    """
    posed = {image.name: image for image in _posed(model)}
    normal_ref = None
    off_planes, worst_steps, windings = [], [], []
    goes_round = True
    for start in range(0, len(names) - size + 1, size):
        places = [i for i in range(size) if names[start + i] in posed]
        if len(places) < 3:
            continue
        centres = np.array([posed[names[start + i]].projection_center() for i in places])
        angles, normal, off_plane = ring_angles_deg(centres, normal_ref)
        if normal_ref is None:
            normal_ref = normal  # rings of one capture are near parallel: one way up
        steps = (np.diff(np.r_[angles, angles[0]]) + 180.0) % 360.0 - 180.0
        gaps = np.diff(np.r_[places, places[0] + size])
        winding = float(steps.sum() / 360.0)
        direction = np.sign(winding) or 1.0
        expected = 360.0 / size * gaps
        worst = float((np.abs(steps) / expected).max())
        off_planes.append(off_plane)
        worst_steps.append(worst)
        windings.append(round(winding, 2))
        goes_round &= bool(
            off_plane <= options.ring_max_off_plane
            and np.all(steps * direction > 0)
            and worst <= options.order_max_step_ratio
        )
    return {
        "round": goes_round and winds_once(windings),
        "off_plane": round(max(off_planes, default=0.0), 3),
        "worst_step": round(max(worst_steps, default=0.0), 2),
        "windings": windings,
    }


def ring_angles_deg(
    centres: np.ndarray, up: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """((n,) angles of (n, 3) camera `centres` round the best circle through them, in degrees,
    seen from the side of the normal of their best plane; that (3,) normal, turned to `up`'s
    side when given; and their RMS spread off the plane over the circle's radius). Round the
    circle's centre, not the centres' mean, which a half ring has inside its own arc; the
    photos of several rings one above another project onto circles round one centre."""
    middle = centres.mean(axis=0)
    _, _, axes = np.linalg.svd(centres - middle)
    normal = axes[2] if up is None or axes[2] @ up >= 0 else -axes[2]
    in_plane = (centres - middle) @ np.array([axes[0], np.cross(normal, axes[0])]).T
    circle, *_ = np.linalg.lstsq(
        np.column_stack([in_plane, np.ones(len(in_plane))]),
        (in_plane**2).sum(axis=1),
        rcond=None,
    )
    relative = in_plane - circle[:2] / 2
    radius = float(np.linalg.norm(relative, axis=1).mean())
    off_plane = float(np.sqrt(np.mean(((centres - middle) @ normal) ** 2)) / max(radius, 1e-12))
    return np.degrees(np.arctan2(relative[:, 1], relative[:, 0])), normal, off_plane


def plain_capture_options(options: SfmOptions) -> SfmOptions:
    """The settings for a plain product, whose photos needed the low-contrast search."""
    return replace(
        options,
        guided_matching=True,
        two_view_points=True,
        min_pair_agreement=options.plain_min_pair_agreement,
        # A plain product's few weak points cannot tell an off-centre principal point from
        # the poses: on a plain avocado AUTO kept a 3 % shift (evidence 125) and turned every
        # camera by 1.6°; on the dino's sparse ring it moved 18 %.
        principal_point=PrincipalPoint.CENTRE
        if options.principal_point == PrincipalPoint.AUTO
        else options.principal_point,
    )


@dataclass(frozen=True)
class ProductPlacement:
    """What `place_from_product` found: the model, all models of its strict pass, its
    database's counts, its visibility consistency, and a summary for the report."""

    model: pycolmap.Reconstruction
    models: list[pycolmap.Reconstruction]
    stats: _DatabaseStats | None  # None when no model was found
    kept: bool
    visibility: float
    summary: dict


def place_from_product(
    workspace: Workspace, photos: list[dict], options: SfmOptions, report: _Progress
) -> ProductPlacement:
    """Place the photos again from features on the product alone, searched as on a plain
    product (twice the size, low contrast), inside `masks.unlike_rim_region`.

    For a plain product on a table whose grain repeats: the table's thousands of keypoints
    outnumber the product's few, and their repeats matched the wrong tile in every pair (an
    armchair on a wooden table: 0 % of even neighbouring photos' verified matches agreed
    with the true cameras; visibility consistency 0.00). The product's own features, found
    the way a plain capture finds them, agreed 96 % and placed 24 of 24 photos within 0.03°.
    The model is kept only if it is not folded and walks smoothly round the product in
    capture order; then its database replaces the first one."""
    names = [photo["name"] for photo in photos]
    with tempfile.TemporaryDirectory(dir=workspace.sfm_dir) as folder:
        masks_dir = Path(folder) / "masks"
        masks_dir.mkdir()
        for name in names:
            image = cv2.imread(str(workspace.image_path(name)), cv2.IMREAD_COLOR)
            cv2.imwrite(str(masks_dir / f"{name}.png"), masks.unlike_rim_region(image))
        database_path = Path(folder) / "product.db"
        _create_database(database_path, workspace.images_dir, photos, options)
        searched = replace(
            options,
            upsample_below_features=options.max_features + 1,  # every photo at twice the size
            low_contrast_below_features=options.max_features + 1,  # ... and at low contrast
        )
        _extract_features(database_path, workspace, photos, masks_dir, searched)
        plain = plain_capture_options(options)
        _match(database_path, names, plain)
        try:
            best, models, stats = _place_photos(database_path, workspace, names, plain, report)
        except CaptureError as error:
            logger.info("sfm: the product alone did not place the photos: %s", error)
            summary = {"placed": 0, "visibility_consistency": 0.0, "kept": False}
            return ProductPlacement(pycolmap.Reconstruction(), [], None, False, 0.0, summary)
        if _matches_exhaustively(len(names), plain) and len(names) >= plain.order_min_photos:
            try:
                best, _ = check_capture_order(database_path, workspace, names, best, plain)
            except CaptureError as error:
                logger.info("sfm: the product alone folded the photos too: %s", error)
                summary = {"placed": best.num_reg_images(), "order_check": "failed", "kept": False}
                return ProductPlacement(best, models, stats, False, 0.0, summary)
        best = refine(best, plain, _photo_loader(workspace))
        visibility = model_visibility(best, names, visibility_photos(best, names, options))
        _, smooth = smooth_in_order(best, names, plain)
        kept = visibility >= options.min_visibility_consistency and smooth
        if kept:
            shutil.copyfile(database_path, workspace.sfm_database_path)
    summary = {
        "placed": best.num_reg_images(),
        "visibility_consistency": round(visibility, 4),
        "smooth": smooth,
        "kept": kept,
    }
    logger.info(
        "sfm: from the product alone %d photos placed, visibility consistency %.2f%s",
        summary["placed"],
        visibility,
        "" if kept else " (not kept)",
    )
    return ProductPlacement(best, models, stats, kept, visibility, summary)


def ring_sizes(pairs: dict[tuple[int, int], int], count: int, min_size: int) -> list[int]:
    """Photos per ring for `count` photos taken in two or more equal rings of at least
    `min_size`, best supported first (one ring is what `check_capture_order` tried). `pairs`:
    verified matches of photos (i, j), indices in capture order, i < j. Support: matches per
    pair that the rings make neighbours (one place apart: `ring_pairs`), so small rings, which
    pair more photos, gain nothing by it."""
    support = {}
    for size in range(min_size, count // 2 + 1):
        if count % size == 0:
            near = ring_pairs(count, size, ring_offset(pairs, size), window=1)
            support[size] = sum(pairs.get(pair, 0) for pair in near) / len(near)
    return sorted((size for size in support if support[size] > 0), key=lambda s: -support[s])


def ring_offset(pairs: dict[tuple[int, int], int], size: int) -> int:
    """How many places along the ring a photo of the next ring sits from the one below it (the
    next ring may start elsewhere): the shift most verified matches between rings agree with,
    those one place off counting half (rings need not turn in equal steps)."""
    support = np.zeros(size)
    for (i, j), inliers in pairs.items():
        if j // size == i // size + 1:
            shift = (j % size - i % size) % size
            for near, weight in ((-1, 0.5), (0, 1.0), (1, 0.5)):
                support[(shift + near) % size] += weight * inliers
    return int(np.argmax(support))


def ring_pairs(count: int, size: int, offset: int, window: int) -> set[tuple[int, int]]:
    """Index pairs (i < j) of photos near each other when `count` photos were taken in rings of
    `size`, one after another: up to `window` places apart along a ring (round it), and photos
    of successive rings within one place of `offset` along it."""
    pairs = set()
    for i, j in combinations(range(count), 2):
        along = (j % size - i % size) % size
        if j // size == i // size:
            near = min(along, size - along) <= window
        elif j // size == i // size + 1:
            shift = (along - offset) % size
            near = min(shift, size - shift) <= 1
        else:
            near = False
        if near:
            pairs.add((i, j))
    return pairs


def model_visibility(
    model: pycolmap.Reconstruction, names: list[str], max_photos: int = 0
) -> float:
    """`visibility_consistency` of a model's placed photos and points."""
    images = {image.name: image for image in _posed(model)}
    placed = [name for name in names if name in images]
    cameras = [
        pinhole_camera(name, images[name].camera, images[name].cam_from_world().matrix())
        for name in placed
    ]
    points = sparse_points(model, {name: index for index, name in enumerate(placed)})
    return visibility_consistency(
        cameras, points["xyz"], points["visible_in"], max_photos=max_photos
    )


def visibility_photos(
    model: pycolmap.Reconstruction,
    names: list[str],
    options: SfmOptions,
    *,
    in_order: bool = True,
    confirmed: bool = False,
) -> int:
    """How many photos `model_visibility` judges `model` on: `visibility_max_photos` spread
    round the product where its photos walk round in capture order (`smooth_in_order`), all
    (0) where they do not. The twin-print box's 48 photos on plain paper, a third of them
    placed on the wrong side, scored 0.52 on 24 and 0.43 on all 48.

    Where the names do not follow the capture order (`in_order` False, see successive_share)
    no walk can be judged, but the order check's placement from "neighbours" by name is one
    from pairs picked at random, blind to look-alike sides: spread photos where it agreed with
    the model on enough photos to clear it (`confirmed`: check_capture_order's "agreed"), all
    where it did not. Shuffled, the mustard's 72 photos agreed (61 placed that way, no pair
    disagreeing) and scored 0.68 on 24 photos (0.42 on all, refused before); the twin-print
    box's 48 disagreed (47 % of pairs) and failed the order check, as before (placed, it
    scored 0.59 on 24 photos)."""
    if model.num_reg_images() <= options.visibility_max_photos:
        return 0
    if not in_order:
        return options.visibility_max_photos if confirmed else 0
    _, smooth = smooth_in_order(model, names, options)
    return options.visibility_max_photos if smooth else 0


def verified_pairs(database_path: Path, min_inliers: int) -> dict[frozenset[str], int]:
    """Verified matches of every pair of photos with at least `min_inliers`, by the pair's names."""
    database = pycolmap.Database.open(database_path)
    try:
        names = {image.image_id: image.name for image in database.read_all_images()}
        pairs = {}
        for pair_id, inliers in zip(*database.read_two_view_geometry_num_inliers(), strict=True):
            if inliers >= min_inliers:
                first, second = pycolmap.pair_id_to_image_pair(pair_id)
                pairs[frozenset((names[first], names[second]))] = int(inliers)
    finally:
        database.close()
    return pairs


def strongest_partner(pairs: dict[frozenset[str], int]) -> dict[str, str]:
    """For each photo, the photo it shares the most verified matches with."""
    best: dict[str, tuple[int, str]] = {}
    for pair, inliers in sorted(pairs.items(), key=lambda item: sorted(item[0])):
        a, b = sorted(pair)
        for name, other in ((a, b), (b, a)):
            if inliers > best.get(name, (-1, ""))[0]:
                best[name] = (inliers, other)
    return {name: other for name, (_, other) in best.items()}


def consensus_seed(pairs: dict[frozenset[str], int], names: list[str]) -> set[frozenset[str]]:
    """The pairs trusted before any model: each photo's strongest pair (true neighbours share
    the most), and each pair of successive photos in capture order (wrapping round a ring)."""
    seed = {frozenset((name, other)) for name, other in strongest_partner(pairs).items()}
    successive = (frozenset((a, b)) for a, b in zip(names, names[1:] + names[:1], strict=True))
    seed.update(pair for pair in successive if pair in pairs)
    return seed


def uncalibrated_pairs(database_path: Path) -> set[frozenset[str]]:
    """The verified pairs, by their photos' names, whose matches fit only an uncalibrated
    geometry (COLMAP's UNCALIBRATED: a fundamental matrix explains clearly more of them than
    any essential matrix with the cameras' focal lengths). Matches of one face onto a
    look-alike face, or a mix of true and look-alike matches, fit no real pair of cameras:
    of the 640 px cracker box's 80 such pairs 3 held 80 % true matches or more; of its 153
    calibrated or planar pairs 53 did (by the true cameras)."""
    database = pycolmap.Database.open(database_path)
    try:
        return {
            pair
            for pair, _, geometry in named_two_view_geometries(database)
            if geometry.config == pycolmap.TwoViewGeometryConfiguration.UNCALIBRATED
        }
    finally:
        database.close()


def named_two_view_geometries(
    database: pycolmap.Database,
) -> list[tuple[frozenset[str], tuple[int, int], pycolmap.TwoViewGeometry]]:
    """Every verified pair of `database`: its photos' names, its image ids and its geometry."""
    names = {image.image_id: image.name for image in database.read_all_images()}
    found = []
    for pair_id, geometry in zip(*database.read_two_view_geometries(), strict=True):
        first, second = pycolmap.pair_id_to_image_pair(pair_id)
        found.append((frozenset((names[first], names[second])), (first, second), geometry))
    return found


def keep_only_pairs(database_path: Path, keep: set[frozenset[str]]) -> None:
    """Delete the verified pairs whose two photos' names are not a pair in `keep`."""
    database = pycolmap.Database.open(database_path)
    try:
        for pair, (first, second), _ in named_two_view_geometries(database):
            if pair not in keep:
                database.delete_two_view_geometry(first, second)
    finally:
        database.close()


def _global_map(
    database_path: Path, workspace: Workspace, options: SfmOptions, output_path: Path
) -> pycolmap.Reconstruction | None:
    """The largest model COLMAP's global mapper (GLOMAP) makes of the database's pairs."""
    pipeline = pycolmap.GlobalPipelineOptions()
    pipeline.min_num_matches = options.min_pair_inliers
    # One thread, as incremental mapping (see _pipeline_options): the same model every time.
    pipeline.num_threads = 1
    pipeline.random_seed = options.seed
    pipeline.mapper.random_seed = options.seed
    pipeline.mapper.num_threads = 1
    # GLOMAP asks for the GPU by default (and warns when COLMAP has no CUDA). The CPU solvers
    # always, as for features and matching: the same photos give the same model on every
    # machine, a CUDA build of pycolmap (--depth-on cuda) included, and on the CPU path alone
    # were the SfM choices here measured.
    pipeline.mapper.global_positioning.use_gpu = False
    pipeline.mapper.bundle_adjustment.ceres.use_gpu = False
    output_path.mkdir(parents=True, exist_ok=True)
    models = pycolmap.global_mapping(
        database_path, workspace.images_dir, output_path, options=pipeline
    )
    return max(models.values(), key=lambda model: model.num_reg_images(), default=None)


def smooth_in_order(
    model: pycolmap.Reconstruction,
    names: list[str],
    options: SfmOptions,
    indices: np.ndarray | None = None,
) -> tuple[float | None, bool]:
    """(largest turn between successive placed photos in degrees, whether every turn is within
    `order_max_step_ratio` × the median turn (or `order_step_floor_deg`) and
    `order_max_step_deg`, and the median turn is at least `order_min_step_deg`: photos that do
    not turn were not taken around the product). `indices`: see `order_steps_deg`."""
    steps = order_steps_deg(model, names, indices)
    if len(steps) == 0:
        return None, False
    median = float(np.median(steps))
    limit = min(
        max(options.order_max_step_ratio * median, options.order_step_floor_deg),
        options.order_max_step_deg,
    )
    smooth = (
        steps.max() <= limit
        and median >= options.order_min_step_deg
        and not backtracks(model, names, options)
    )
    return round(float(steps.max()), 1), bool(smooth)


def backtracks(model: pycolmap.Reconstruction, names: list[str], options: SfmOptions) -> int:
    """How many times successive placed photos in capture order `names` turn back round the
    product for at most `order_max_backtrack` steps and then on again the way the walk went,
    judged by where the cameras stand and, again, by where they look (the larger count).

    A walk round the product turns one way. A photo of a flat face placed on the face's other
    side (its mirror pose: the cereal box on its side on plain paper, img_005 put 54° off)
    turns from its next photo by as much as it should, the wrong way: the angle between
    viewing directions (`order_steps_deg`) cannot see it, the turn round the ring can (+102°,
    −16°, +32° there, where every placed model of the benchmark's captures turned one way).
    Where the cameras stand can hide it when few photos place each other loosely: the cracker
    box's first five photos, its narrow side taken for its front, put two cameras looking
    where two others do (8° apart, truly 88°) but at other distances, and their centres still
    went round in order; the directions they look in (a camera looks at the product, so it
    stands opposite its viewing direction) turned +31°, −58°, +27°, +31°.
    A longer run back is allowed: a second ring walked the other way. Steps under a quarter of
    the median turn are jitter and are not counted; fewer than 4 placed photos are not judged.
    """
    by_name = {image.name: image for image in _posed(model)}
    posed = [by_name[name] for name in names if name in by_name]
    if len(posed) < 4:
        return 0
    centres = np.array([image.projection_center() for image in posed])
    looking = np.array([image.cam_from_world().rotation.matrix()[2] for image in posed])
    return max(_turns_back(centres, options), _turns_back(-looking, options))


def _turns_back(places: np.ndarray, options: SfmOptions) -> int:
    """`backtracks` for (n, 3) `places` round the product, in capture order."""
    angles, _, _ = ring_angles_deg(places)
    steps = (np.diff(angles) + 180.0) % 360.0 - 180.0
    signs = np.sign(steps[np.abs(steps) >= 0.25 * np.median(np.abs(steps))])
    # Runs of one turning direction; a short run with runs the other way on both sides.
    bounds = np.flatnonzero(np.diff(signs)) + 1
    lengths = np.diff(np.r_[0, bounds, len(signs)])
    inner = lengths[1:-1]
    return int((inner <= options.order_max_backtrack).sum())


def median_step_deg(
    model: pycolmap.Reconstruction, names: list[str], indices: np.ndarray | None = None
) -> float | None:
    """Median turn between successive placed photos (see `order_steps_deg`), None for < 2."""
    steps = order_steps_deg(model, names, indices)
    return round(float(np.median(steps)), 2) if len(steps) else None


def order_steps_deg(
    model: pycolmap.Reconstruction, names: list[str], indices: np.ndarray | None = None
) -> np.ndarray:
    """Angles between the viewing directions of successive placed photos in capture order
    `names`, per usual gap between photos: a walk around the product turns a little each time;
    a photo put on the wrong look-alike side turns half-way round from its neighbours.

    (n,) `indices` say where each photo was taken in the sequence (see `capture_indices`; None:
    its position in `names`). A step across a gap (photos not placed between the two, or a
    video's dropped blurred stretch) is divided by the gap over the usual one, so a walk that
    simply went on while no photo was kept does not look like a jump.
    """
    posed = {image.name: image for image in _posed(model)}
    if indices is None:
        indices = np.arange(len(names), dtype=np.float64)
    placed = [index for index, name in enumerate(names) if name in posed]
    if len(placed) < 2:
        return np.zeros(0)
    axes = np.array([posed[names[index]].cam_from_world().rotation.matrix()[2] for index in placed])
    cosines = np.clip(np.einsum("ij,ij->i", axes[:-1], axes[1:]), -1.0, 1.0)
    usual_gap = float(np.median(np.diff(indices)))
    gaps = np.diff(np.asarray(indices, dtype=np.float64)[placed]) / max(usual_gap, 1e-9)
    return np.degrees(np.arccos(cosines)) / np.maximum(gaps, 1.0)


def capture_indices(photos: list[dict]) -> np.ndarray:
    """(n,) where each of capture.json's `photos` was taken in the capture's sequence: a
    video's decode index (``frame_index``) when every photo is a frame of one, else the
    position in the list (photo names carry no trustworthy clock)."""
    frames = [photo.get("frame_index") for photo in photos]
    if len(photos) >= 2 and all(isinstance(frame, int) for frame in frames):
        values = np.array(frames, dtype=np.float64)
        if (np.diff(values) > 0).all():
            return values
    return np.arange(len(photos), dtype=np.float64)


def successive_share(database_path: Path, names: list[str], options: SfmOptions) -> float:
    """Share of successive photos in `names` (not wrapping) that are among each other's
    `successive_top` strongest verified pairs: near 1 where the names follow the capture
    order (each photo was taken beside the last), near `successive_top` over the number of
    pairs a photo has where they do not (renamed, shuffled, or from several cameras)."""
    if len(names) < 2:
        return 1.0
    partners: dict[str, list[tuple[int, str]]] = {name: [] for name in names}
    for pair, inliers in verified_pairs(database_path, options.min_pair_inliers).items():
        a, b = sorted(pair)
        partners[a].append((inliers, b))
        partners[b].append((inliers, a))
    strongest = {
        name: {other for _, other in sorted(found, reverse=True)[: options.successive_top]}
        for name, found in partners.items()
    }
    near = [b in strongest[a] or a in strongest[b] for a, b in pairwise(names)]
    return float(np.mean(near))


def keep_pairs_near_in_order(database_path: Path, names: list[str], window: int) -> None:
    """Delete the verified pairs of photos more than `window` apart in the capture order
    `names` (wrapping around: the last photos of a ring meet its first)."""
    order = {name: index for index, name in enumerate(names)}
    database = pycolmap.Database.open(database_path)
    try:
        for pair, (first, second), _ in named_two_view_geometries(database):
            low, high = sorted(order[name] for name in pair)
            gap = high - low
            if min(gap, len(names) - gap) > window:
                database.delete_two_view_geometry(first, second)
    finally:
        database.close()


def rotation_disagreement(
    a: pycolmap.Reconstruction, b: pycolmap.Reconstruction, tolerance_deg: float
) -> tuple[float, int]:
    """(share of the photo pairs placed in both models whose relative rotation differs by more
    than `tolerance_deg` between them, number of pairs compared). Relative rotations do not
    depend on each model's own frame."""
    rotations_a = {image.name: image.cam_from_world().rotation.matrix() for image in _posed(a)}
    rotations_b = {image.name: image.cam_from_world().rotation.matrix() for image in _posed(b)}
    common = sorted(rotations_a.keys() & rotations_b.keys())
    if len(common) < 2:
        return 0.0, 0
    angles = relative_rotation_differences_deg(
        np.array([rotations_a[name] for name in common]),
        np.array([rotations_b[name] for name in common]),
    )
    upper = np.triu_indices(len(common), k=1)
    return float((angles[upper] > tolerance_deg).mean()), len(upper[0])


def sequential_pairs(count: int, overlap: int, loop_photos: int) -> list[tuple[int, int]]:
    """Image pairs (i < j) for large sets: each photo with its `overlap` successors, wrapping
    around (a capture that circles the product ends where it began), plus every pair among
    `loop_photos` photos spread evenly over the sequence, which closes loops that the order
    does not show (a second ring above the first, a restart) without a vocabulary tree."""
    pairs: set[tuple[int, int]] = set()
    for i in range(count):
        for step in range(1, overlap + 1):
            j = (i + step) % count
            if i != j:
                pairs.add((min(i, j), max(i, j)))
    spread = np.unique(np.linspace(0, count - 1, min(loop_photos, count)).round().astype(int))
    pairs.update((int(a), int(b)) for a, b in combinations(spread, 2))
    return sorted(pairs)


def _place_photos(
    database_path: Path,
    workspace: Workspace,
    names: list[str],
    options: SfmOptions,
    report: _Progress,
) -> tuple[pycolmap.Reconstruction, list[pycolmap.Reconstruction], _DatabaseStats]:
    """The model to keep, all models of the strict pass (for the reasons of the left-out
    photos) and the database's per-photo counts. Raises CaptureError below three photos."""
    models = _map(database_path, workspace, len(names), options, report, relaxed=False)
    stats = _database_stats(database_path, options.min_pair_inliers)
    best = models[0] if models else None
    placed = set() if best is None else {image.name for image in _posed(best)}
    placeable = {
        name
        for name in names
        if stats.keypoints.get(name, 0) >= options.min_features and stats.overlapping.get(name, 0)
    }
    if options.relaxed_pass and placeable - placed:
        # The strict pass has tried the structure-less fallback on every photo. Tried again
        # here, COLMAP builds model after model from scratch round a photo it cannot place:
        # the plain WaterBottle at 1,600 px, 147 s for a model of 18 photos against the
        # strict pass's 23 (kept), 0.2 s without; at 960 px mapping 15.8 -> 4.4 s, and the
        # same cameras to the last digit in the end (placed ring by ring, where it stays on).
        relaxed = replace(options, structure_less_registration=False)
        best = _extend(database_path, workspace, len(names), relaxed, report, best)
        placed = set() if best is None else {image.name for image in _posed(best)}
    if best is None or len(placed) < 3:
        raise CaptureError(
            f"only {len(placed)} of {len(names)} photos could be placed: {CAPTURE_ADVICE}"
        )
    return best, models, stats


def _map(
    database_path: Path,
    workspace: Workspace,
    count: int,
    options: SfmOptions,
    report: _Progress,
    *,
    relaxed: bool,
    start_from: pycolmap.Reconstruction | None = None,
) -> list[pycolmap.Reconstruction]:
    """All models incremental mapping finds (largest first), with their own points.

    The strict pass asks COLMAP's 30 pose inliers within 12 px of a photo; the relaxed pass
    (continuing `start_from`) takes `min_pose_inliers` within `max_pose_error_px`, which places
    the edge-on views of thin or plain products.
    """
    pipeline = _pipeline_options(options, relaxed=relaxed)
    pycolmap.set_random_seed(options.seed)
    placed = [0 if start_from is None else start_from.num_reg_images()]

    def next_image() -> None:
        placed[0] += 1
        report("map", min(0.9, 0.9 * placed[0] / count), f"placed {placed[0]} photos")

    with tempfile.TemporaryDirectory(dir=workspace.sfm_dir) as folder:
        input_path = ""
        if start_from is not None:
            input_path = str(Path(folder) / "start")
            Path(input_path).mkdir()
            start_from.write(input_path)
        output_path = Path(folder) / "models"
        output_path.mkdir()
        models = pycolmap.incremental_mapping(
            database_path,
            workspace.images_dir,
            output_path,
            options=pipeline,
            input_path=input_path,
            next_image_callback=next_image,
        )
    return sorted(models.values(), key=lambda model: -model.num_reg_images())


def _pipeline_options(options: SfmOptions, *, relaxed: bool) -> pycolmap.IncrementalPipelineOptions:
    """COLMAP's incremental mapping options for the strict or the relaxed pass (see `_map`)."""
    pipeline = pycolmap.IncrementalPipelineOptions()
    # Threaded mapping lands differently run to run: a plain capture's few weak links moved the
    # dino's median rotation error between 0.79 and 1.6°, and the sample cereal box came out
    # with 1,509 or 1,507 points (its top 3 px apart downstream). One thread gives the same
    # model every time, and mapping a product's few thousand points is quick.
    pipeline.num_threads = 1
    pipeline.random_seed = options.seed
    pipeline.min_num_matches = options.min_pair_inliers
    pipeline.ba_refine_extra_params = options.refine_distortion_while_mapping
    if relaxed:
        pipeline.mapper.abs_pose_min_num_inliers = options.min_pose_inliers
        # A tight error keeps a mirror-like side from placing a photo the wrong way round.
        pipeline.mapper.abs_pose_max_error = options.max_pose_error_px
        pipeline.triangulation.ignore_two_view_tracks = not options.two_view_points
    # Speed: fewer, shorter intermediate adjustments (the final one in `refine` polishes); on
    # the synthetic captures this halves mapping time at the same final accuracy.
    pipeline.ba_global_frames_ratio = 1.4
    pipeline.ba_global_points_ratio = 1.4
    pipeline.ba_global_max_refinements = 2
    pipeline.ba_local_max_refinements = 1
    pipeline.mapper.ba_global_ignore_redundant_points3D = True
    # Keep small separate groups too: they tell the merchant which photos went astray.
    pipeline.min_model_size = 3
    pipeline.structure_less_registration_fallback = options.structure_less_registration
    return pipeline


def _extend(
    database_path: Path,
    workspace: Workspace,
    count: int,
    options: SfmOptions,
    report: _Progress,
    core: pycolmap.Reconstruction | None,
) -> pycolmap.Reconstruction | None:
    """The strict model grown by the relaxed pass, keeping only the photos that verified
    matches tie to it; `core` itself when the relaxed pass adds nothing trustworthy.

    Weak links are where wrong placements come from: a plain mustard bottle's two labels were
    joined through a few matches on its plain sides into one model with half of it turned
    around. A photo added here stays only if a chain of pairs, each with `min_support_inliers`
    verified matches that the model explains, leads from it to the strict model.
    """
    models = _map(database_path, workspace, count, options, report, relaxed=True, start_from=core)
    core_names = set() if core is None else {image.name for image in _posed(core)}

    def pick(models: list[pycolmap.Reconstruction]) -> pycolmap.Reconstruction | None:
        return max(
            models,
            key=lambda model: (
                len(core_names & {i.name for i in _posed(model)}),
                model.num_reg_images(),
            ),
            default=None,
        )

    candidate = pick(models)
    if candidate is None:
        return core
    if options.merge_models:
        merged = merge_models(
            candidate, [m for m in models if m is not candidate], database_path, workspace, options
        )
        if merged is not candidate:  # adjust the joined model and place what it now reaches
            models = _map(
                database_path, workspace, count, options, report, relaxed=True, start_from=merged
            )
            candidate = pick(models) or candidate
    agreement = pair_agreement(candidate, database_path, options.max_pose_error_px)
    keep = supported_component(
        agreement, core_names, options.min_support_inliers, options.min_pair_agreement
    )
    loose = [image for image in _posed(candidate) if image.name not in keep]
    logger.info(
        "sfm: the relaxed pass placed %d photos; %d are not tied to the model and are dropped",
        candidate.num_reg_images(),
        len(loose),
    )
    for image in loose:
        candidate.deregister_frame(image.frame_id)
    if core is not None and candidate.num_reg_images() <= core.num_reg_images():
        return core
    return candidate


def merge_models(
    target: pycolmap.Reconstruction,
    others: list[pycolmap.Reconstruction],
    database_path: Path,
    workspace: Workspace,
    options: SfmOptions,
) -> pycolmap.Reconstruction:
    """`target` joined with the other models that share placed photos with it, their points
    triangulated again from the database; `target` itself when none adds a photo.

    Each model is moved into the target's frame through the poses of the shared photos (see
    `similarity_from_shared_photos`). This is how a sparse ring whose neighbours meet through
    weak, two-photo links comes together: the mapper grows two halves that each hold the photo
    at a weak link, but cannot carry scale across it by points seen three times. The shared
    photos are left out of the joined model, for the mapper to place again from both sides;
    it still has to earn its photos (`_extend` keeps only those verified pairs tie to it).
    """
    merged = pycolmap.Reconstruction(target)
    grew = False
    seam: set[str] = set()
    for other in others:
        placed = {image.name: image for image in _posed(merged)}
        theirs = {image.name: image for image in _posed(other)}
        shared = sorted(placed.keys() & theirs.keys())
        new = [name for name in theirs if name not in placed]
        if not shared or not new:
            continue
        seam.update(shared)
        similarity = similarity_from_shared_photos(
            np.array([placed[name].cam_from_world().matrix() for name in shared]),
            np.array([theirs[name].cam_from_world().matrix() for name in shared]),
            np.array([_median_depth(merged, placed[name]) for name in shared]),
            np.array([_median_depth(other, theirs[name]) for name in shared]),
        )
        logger.info(
            "sfm: joining a model of %d photos through %d shared (scale %.3f)",
            len(theirs),
            len(shared),
            similarity.scale,
        )
        for name in new:
            image = theirs[name]
            if not merged.exists_camera(image.camera_id):
                merged.add_camera_with_trivial_rig(other.camera(image.camera_id))
            pose = moved_pose(image.cam_from_world().matrix(), similarity)
            keypoints = np.array([point.xy for point in image.points2D]).reshape(-1, 2)
            merged.add_image_with_trivial_frame(
                pycolmap.Image(
                    name=name,
                    keypoints=keypoints,
                    camera_id=image.camera_id,
                    image_id=image.image_id,
                ),
                pycolmap.Rigid3d(pycolmap.Rotation3d(pose[:, :3]), pose[:, 3]),
            )
        grew = True
    if not grew:
        return target
    # Place the shared photos afresh (the mapper continuing from this model does): each sat at
    # the weak end of a half ring, placed from that side's few points only, and a narrow lens
    # barely tells turning from shifting; kept, one of them ended up 13° off on the dino and
    # turned a half ring by 1° with it. Placed again, they see the points of both sides.
    for name in seam:
        merged.deregister_frame(merged.find_image_with_name(name).frame_id)
    with tempfile.TemporaryDirectory(dir=workspace.sfm_dir) as folder:
        merged = pycolmap.triangulate_points(
            merged,
            database_path,
            workspace.images_dir,
            folder,
            clear_points=True,
            options=_pipeline_options(options, relaxed=True),
            refine_intrinsics=False,
        )
    if merged.num_points3D() == 0:  # nothing to place the seam's photos by (plain glass)
        return target
    return merged


def similarity_from_shared_photos(
    poses_target: np.ndarray,
    poses_source: np.ndarray,
    depths_target: np.ndarray,
    depths_source: np.ndarray,
) -> Similarity:
    """The similarity taking a source model's frame onto a target model's, from photos placed
    in both: (k, 3, 4) world-to-camera poses in each, and (k,) typical depths of the points
    each photo sees in each model (the scale: the same product at the same distance).

    One shared photo fixes rotation and translation up to scale; the depths fix the scale.
    With several, the rotations are averaged (chordal mean) and the median taken.
    """
    scale = float(np.median(depths_target / depths_source))
    rotations = np.einsum("kji,kjl->kil", poses_target[:, :, :3], poses_source[:, :, :3])
    u, _, vt = np.linalg.svd(rotations.sum(axis=0))
    rotation = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    # camera i: R_t x_t + t_t = s (R_s x_s + t_s) with x_t = s R x_s + t
    translations = np.einsum(
        "kji,kj->ki", poses_target[:, :, :3], scale * poses_source[:, :, 3] - poses_target[:, :, 3]
    )
    return Similarity(scale=scale, rotation=rotation, translation=np.median(translations, axis=0))


def moved_pose(pose: np.ndarray, similarity: Similarity) -> np.ndarray:
    """(3, 4) world-to-camera pose in the similarity's source frame -> the same camera in its
    target frame (x_target = s R x_source + t)."""
    rotation = pose[:, :3] @ similarity.rotation.T
    translation = similarity.scale * pose[:, 3] - rotation @ similarity.translation
    return np.column_stack([rotation, translation])


def _median_depth(reconstruction: pycolmap.Reconstruction, image: pycolmap.Image) -> float:
    """Median depth of the points `image` sees in `reconstruction` (1 when it sees none)."""
    observations = image.get_observation_points2D()
    if len(observations) == 0:
        return 1.0
    xyz = np.array([reconstruction.point3D(point.point3D_id).xyz for point in observations])
    pose = image.cam_from_world().matrix()
    depths = xyz @ pose[2, :3] + pose[2, 3]
    return float(np.median(depths[depths > 0])) if (depths > 0).any() else 1.0


def pair_agreement(
    reconstruction: pycolmap.Reconstruction, database_path: Path, max_error_px: float
) -> list[tuple[str, str, int, float]]:
    """For each verified pair of placed photos: (name, name, inliers, fraction of those inlier
    matches that the model's two cameras explain within `max_error_px` of epipolar distance).

    A pair the model contradicts (fraction near 0) means one of its photos is misplaced, or the
    pair matched a look-alike (the other side of a symmetric box).
    """
    images = {image.image_id: image for image in _posed(reconstruction)}
    if len(images) < 2:
        return []
    centers = np.array([image.projection_center() for image in images.values()])
    spread = float(np.median(np.linalg.norm(centers - np.median(centers, axis=0), axis=1)))
    result = []
    database = pycolmap.Database.open(database_path)
    try:
        keypoints: dict[int, np.ndarray] = {}
        for pair_id, geometry in zip(*database.read_two_view_geometries(), strict=True):
            first, second = pycolmap.pair_id_to_image_pair(pair_id)
            matches = geometry.inlier_matches
            if first not in images or second not in images or len(matches) == 0:
                continue
            for image_id in (first, second):
                if image_id not in keypoints:
                    keypoints[image_id] = database.read_keypoints(image_id)[:, :2].astype(float)
            a, b = images[first], images[second]
            rays_a = a.camera.cam_from_img(keypoints[first][matches[:, 0]])
            rays_b = b.camera.cam_from_img(keypoints[second][matches[:, 1]])
            errors = epipolar_errors(
                a.cam_from_world().matrix(), b.cam_from_world().matrix(), rays_a, rays_b, spread
            )
            if errors is None:
                continue
            focal = 0.5 * (a.camera.mean_focal_length() + b.camera.mean_focal_length())
            fraction = float((errors * focal < max_error_px).mean())
            result.append((a.name, b.name, len(matches), fraction))
    finally:
        database.close()
    return result


def photo_agreement(
    reconstruction: pycolmap.Reconstruction, database_path: Path, max_error_px: float
) -> dict[str, float]:
    """Per placed photo: the share of its verified matches, over all its pairs, that the model
    explains (`pair_agreement`). A photo placed far off contradicts nearly all of its pairs (a
    cereal box photo 73° off: 15 %, its strongest pair 2 %); a photo placed right keeps most,
    less the look-alike pairs that were verified and are contradicted (42 % at worst on the
    cracker box on plain paper, whose logo repeats on every face)."""
    matches: dict[str, int] = {}
    explained: dict[str, float] = {}
    for first, second, inliers, fraction in pair_agreement(
        reconstruction, database_path, max_error_px
    ):
        for name in (first, second):
            matches[name] = matches.get(name, 0) + inliers
            explained[name] = explained.get(name, 0.0) + inliers * fraction
    return {name: explained[name] / count for name, count in matches.items() if count}


def agreement_summary(agreement: dict[str, float], min_agreement: float) -> dict:
    """cameras.json's "match_agreement": the median and the worst photo's share of `agreement`
    (`photo_agreement`), the photos under `min_agreement` ("doubtful") and every photo's share
    ("photos", so a summary can be made again over fewer photos), each name -> share."""
    if not agreement:
        return {}
    shares = {name: round(share, 4) for name, share in agreement.items()}
    worst = min(shares, key=shares.__getitem__)
    return {
        "median": round(float(np.median(list(agreement.values()))), 4),
        "min": shares[worst],
        "worst_image": worst,
        "doubtful": {name: share for name, share in shares.items() if share < min_agreement},
        "photos": shares,
    }


def epipolar_errors(
    pose_a: np.ndarray, pose_b: np.ndarray, rays_a: np.ndarray, rays_b: np.ndarray, spread: float
) -> np.ndarray | None:
    """(n,) Sampson distances (normalized image units) of (n, 2) matched rays under two (3, 4)
    world-to-camera poses; None when the baseline is too short to define epipolar lines."""
    rotation = pose_b[:, :3] @ pose_a[:, :3].T
    translation = pose_b[:, 3] - rotation @ pose_a[:, 3]
    if np.linalg.norm(translation) < 1e-6 * max(spread, 1e-12):
        return None
    tx, ty, tz = translation
    essential = np.array([[0, -tz, ty], [tz, 0, -tx], [-ty, tx, 0]]) @ rotation
    a = np.column_stack([rays_a, np.ones(len(rays_a))])
    b = np.column_stack([rays_b, np.ones(len(rays_b))])
    line_b, line_a = a @ essential.T, b @ essential
    numerator = np.sum(b * line_b, axis=1) ** 2
    denominator = line_b[:, 0] ** 2 + line_b[:, 1] ** 2 + line_a[:, 0] ** 2 + line_a[:, 1] ** 2
    return np.sqrt(numerator / np.maximum(denominator, 1e-30))


def supported_component(
    agreement: list[tuple[str, str, int, float]],
    core: set[str],
    min_inliers: int,
    min_fraction: float,
) -> set[str]:
    """`core` plus every photo a chain of well-supported pairs leads to from it (pairs with at
    least `min_inliers` matches, `min_fraction` of them explained). Without a core: the largest
    group so connected."""
    neighbours: dict[str, set[str]] = {}
    for a, b, inliers, fraction in agreement:
        neighbours.setdefault(a, set())
        neighbours.setdefault(b, set())
        if inliers >= min_inliers and fraction >= min_fraction:
            neighbours[a].add(b)
            neighbours[b].add(a)

    def reach(start: set[str]) -> set[str]:
        seen, frontier = set(start), list(start)
        while frontier:
            for other in neighbours.get(frontier.pop(), ()):
                if other not in seen:
                    seen.add(other)
                    frontier.append(other)
        return seen

    if core:
        return reach(core)
    groups: list[set[str]] = []
    for name in neighbours:
        if not any(name in group for group in groups):
            groups.append(reach({name}))
    return max(groups, key=len, default=set())


def refine(
    reconstruction: pycolmap.Reconstruction,
    options: SfmOptions,
    load_photo: Callable[[str], np.ndarray] | None = None,
) -> pycolmap.Reconstruction:
    """Final global bundle adjustment (robust loss), then drop the points that still disagree.

    With `load_photo` (a photo's name -> its working photo) and `options.refine_keypoints`, the
    adjusted model's keypoints are then aligned along each point's track by their patches
    (recon.track_refine) and the model adjusted again.

    Focal length and distortion are refined; the principal point as `options` says. In AUTO a
    second adjustment frees it, and its result is kept only when the principal point moved
    clearly (a lens really off-centre, as in the Middlebury captures); small moves are noise
    that would tilt every camera a little.

    On plain captures the poses are as good as their observations allow, not held back here:
    started from the true cameras, the same observations end 0.12° off (median) on a plain
    mustard bottle and 0.11° on a plain avocado, as from the mapper's start (0.13°, 0.11°), and
    true intrinsics change that by 0.01° at most. Each camera's error is a slide along its
    ring with the turn that keeps the product in view (rotation error = -1.25 to -1.3 × the
    sideways centre error over the distance, correlation 0.8-1.0), the direction a product
    filling a small part of the photo pins down least. So the observations are improved: the
    keypoints of each track, aligned by their patches, disagree 0.04 px under the true cameras
    on the mustard bottle instead of 0.25 (median), and its cameras end 0.03° off.
    """
    # The loss scale follows the noise the mapper's model shows: on sharp photos (0.3 px) a
    # 1 px scale still let SIFT's long-tailed errors double the rotation error.
    if options.two_view_points:  # only a plain capture's mapping makes them on purpose
        drop_two_view_points(reconstruction, options.min_long_track_observations)
    loss_px = _loss_px(reconstruction, options)
    _adjust(reconstruction, options, loss_px=loss_px, refine_principal_point=False)
    if options.principal_point == PrincipalPoint.REFINE:
        _adjust(reconstruction, options, loss_px=loss_px, refine_principal_point=True)
    elif options.principal_point == PrincipalPoint.AUTO and _enough_photos_per_camera(
        reconstruction, options.principal_point_min_photos
    ):
        trial = pycolmap.Reconstruction(reconstruction)
        _adjust(trial, options, loss_px=loss_px, refine_principal_point=True)
        shift = max(principal_point_shift(camera) for camera in trial.cameras.values())
        evidence = fit_gain(reconstruction, trial, inlier_px=3 * loss_px)
        # Keep it when it moves clearly and the fit gets clearly better (evidence is χ²-like;
        # the noise of weak, clustered points can give tens); a move beyond 10 % is more likely
        # a degenerate fit than a real lens.
        keep = (
            options.principal_point_min_shift < shift < 0.1
            and evidence > options.principal_point_min_evidence
        )
        logger.info(
            "sfm: a refined principal point moves %.2f %% of the long side, evidence %.0f: %s",
            100 * shift,
            evidence,
            "kept" if keep else "left at the centre",
        )
        if keep:
            reconstruction = trial
    # After the principal point is settled, and it stays where it was: aligned before, they
    # lowered the Middlebury temple's evidence for its off-centre lens (16 photos: 434 -> 198,
    # under the bar, 0.82° off); freed after, they took it 5 px further from the truth.
    if options.refine_keypoints and load_photo is not None:
        stats = refine_keypoints(reconstruction, load_photo, options.track_refine)
        _adjust(
            reconstruction,
            options,
            loss_px=_loss_px(reconstruction, options),
            refine_principal_point=False,
        )
        logger.info(
            "sfm: %d of %d keypoints aligned along their tracks (median shift %.2f px, "
            "patch NCC %.3f -> %.3f)",
            stats.moved,
            stats.observations,
            stats.median_shift_px,
            stats.ncc_before,
            stats.ncc_after,
        )
    _drop_disagreeing_observations(reconstruction, options)
    return reconstruction


def complete_and_adjust(
    reconstruction: pycolmap.Reconstruction,
    options: SfmOptions,
    load_photo: Callable[[str], np.ndarray],
) -> int:
    """Complete the tracks of a refined model (recon.track_refine.complete_tracks), align its
    keypoints again and adjust the poses and points, the intrinsics held; returns how many
    observations were added.

    A plain product's photos are held by few observations each (the plain WaterBottle: ~110),
    which is what leaves their poses a tenth of a degree off, and its points show in more
    photos than SIFT found them in (2,700 observations; completing found 1,360 more).

    The intrinsics stay as the refinement left them: on a plain product the focal length is
    the least determined figure of all (the bottle's moved between -0.22 and +0.26 % with any
    small change of its observations, each as well explained, and the true cameras reproject
    those without bias). Completed in every refinement, with the intrinsics free, the bottle's
    focal length came out 0.33 % long, which shrinks the model against its cameras' ring: its
    printed edges moved by a pixel or two in the truth's novel views (26.2 -> 24.1 dB) although
    its poses were better. Completed tracks add views of the same points, not new evidence of
    the lens."""
    photos = PreparedPhotos(reconstruction, load_photo, options.track_refine)
    added = complete_tracks(reconstruction, photos, options.track_refine)
    if added:
        refine_keypoints(reconstruction, photos, options.track_refine)
        _adjust(
            reconstruction,
            options,
            loss_px=_loss_px(reconstruction, options),
            refine_principal_point=False,
            refine_intrinsics=False,
        )
        _drop_disagreeing_observations(reconstruction, options)
    return added


def _drop_disagreeing_observations(
    reconstruction: pycolmap.Reconstruction, options: SfmOptions
) -> None:
    """After an adjustment: observations still off by more than max_reprojection_error_px go,
    and points left with too few."""
    pycolmap.ObservationManager(reconstruction).filter_all_points3D(
        options.max_reprojection_error_px, 1.0
    )
    reconstruction.update_point_3d_errors()


def _loss_px(reconstruction: pycolmap.Reconstruction, options: SfmOptions) -> float:
    """The Cauchy scale of an adjustment: the noise the model's observations show."""
    errors = list(observation_errors(reconstruction).values())
    return float(np.clip(options.robust_loss_factor * np.median(errors), 0.1, 4.0))


def _photo_loader(workspace: Workspace) -> Callable[[str], np.ndarray]:
    return lambda name: cv2.imread(str(workspace.image_path(name)), cv2.IMREAD_GRAYSCALE)


def drop_two_view_points(reconstruction: pycolmap.Reconstruction, min_observations: int) -> int:
    """Delete the points seen by two photos only (`two_view_points`) unless one of the two
    photos sees fewer than `min_observations` points seen three times or more; returns how many
    were deleted.

    They tie a weak link of a plain capture's ring while mapping, but, triangulated from one
    short baseline, they are the noisiest points: left in the final adjustment they pulled a
    plain avocado's cameras (median rotation error 0.14° with them, 0.10° without). A photo
    that has little else keeps them, so it stays held in place.
    """
    long_track = dict.fromkeys(reconstruction.reg_image_ids(), 0)
    pairs = []
    for point_id, point in reconstruction.points3D.items():
        images = {element.image_id for element in point.track.elements}
        if len(images) >= 3:
            for image_id in images:
                long_track[image_id] = long_track.get(image_id, 0) + 1
        else:
            pairs.append((point_id, images))
    deleted = 0
    for point_id, images in pairs:
        if all(long_track.get(image_id, 0) >= min_observations for image_id in images):
            reconstruction.delete_point3D(point_id)
            deleted += 1
    return deleted


def _adjust(
    reconstruction: pycolmap.Reconstruction,
    options: SfmOptions,
    *,
    loss_px: float,
    refine_principal_point: bool,
    refine_intrinsics: bool = True,
) -> None:
    adjustment = adjustment_options(
        options,
        loss_px=loss_px,
        refine_principal_point=refine_principal_point,
        refine_intrinsics=refine_intrinsics,
    )
    # What pycolmap.bundle_adjustment does, less its option manager, which turns COLMAP's
    # logging back to INFO for the rest of the process: every later step (the ring-by-ring
    # placement, a flipped capture's second pass) printed its progress over the terminal's
    # progress bars. The same result, to the bit.
    pycolmap.ObservationManager(reconstruction).filter_observations_with_negative_depth()
    config = pycolmap.BundleAdjustmentConfig()
    for image_id in reconstruction.reg_image_ids():
        config.add_image(image_id)
    config.fix_gauge(pycolmap.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
    pycolmap.create_default_bundle_adjuster(adjustment, config, reconstruction).solve()
    reconstruction.update_point_3d_errors()


def adjustment_options(
    options: SfmOptions,
    *,
    loss_px: float,
    refine_principal_point: bool,
    refine_intrinsics: bool = True,
) -> pycolmap.BundleAdjustmentOptions:
    """COLMAP's options for the final adjustment (`refine`): focal length and distortion
    refined (or held), a Cauchy loss of scale `loss_px`."""
    adjustment = pycolmap.BundleAdjustmentOptions()
    adjustment.refine_focal_length = refine_intrinsics
    adjustment.refine_extra_params = refine_intrinsics
    adjustment.refine_principal_point = refine_principal_point
    adjustment.print_summary = False
    adjustment.ceres.loss_function_type = pycolmap.LossFunctionType.CAUCHY
    adjustment.ceres.loss_function_scale = loss_px
    adjustment.ceres.solver_options.num_threads = _threads(options)
    adjustment.ceres.min_num_residuals_for_cpu_multi_threading = (
        options.adjustment_threads_min_residuals
    )
    # COLMAP's default runs 100 iterations to tolerance 0; the poses stop moving long before.
    adjustment.ceres.solver_options.max_num_iterations = 40
    adjustment.ceres.solver_options.function_tolerance = 1e-7
    return adjustment


def fit_gain(
    before: pycolmap.Reconstruction, after: pycolmap.Reconstruction, *, inlier_px: float
) -> float:
    """How much better `after` explains the observations both models share (same point ids):
    the drop in squared reprojection error over the noise variance, a χ²-like score."""
    errors_before, errors_after = observation_errors(before), observation_errors(after)
    shared = [
        key
        for key, error in errors_before.items()
        if error < inlier_px and errors_after.get(key, np.inf) < inlier_px
    ]
    if not shared:
        return 0.0
    a = np.array([errors_before[key] for key in shared]) ** 2
    b = np.array([errors_after[key] for key in shared]) ** 2
    variance = max(b.sum() / (2 * len(shared)), 1e-12)  # per image coordinate
    return float((a.sum() - b.sum()) / variance)


def observation_errors(reconstruction: pycolmap.Reconstruction) -> dict[tuple[int, int], float]:
    """Reprojection error (px) of every observation, keyed by (image id, point id)."""
    errors = {}
    for image in _posed(reconstruction):
        observations = image.get_observation_points2D()
        if len(observations) == 0:
            continue
        xy = np.array([point.xy for point in observations])
        xyz = np.array([reconstruction.point3D(point.point3D_id).xyz for point in observations])
        pose = image.cam_from_world().matrix()
        uv = image.camera.img_from_cam(xyz @ pose[:, :3].T + pose[:, 3], check_cheirality=False)
        for point, error in zip(observations, np.linalg.norm(uv - xy, axis=1), strict=True):
            errors[(image.image_id, point.point3D_id)] = float(error)
    return errors


def _enough_photos_per_camera(reconstruction: pycolmap.Reconstruction, minimum: int) -> bool:
    counts: dict[int, int] = {}
    for image in _posed(reconstruction):
        counts[image.camera_id] = counts.get(image.camera_id, 0) + 1
    return min(counts.values(), default=0) >= minimum


def principal_point_shift(camera: pycolmap.Camera) -> float:
    """Distance of the principal point from the image centre, as a fraction of the long side."""
    dx = camera.principal_point_x - camera.width / 2
    dy = camera.principal_point_y - camera.height / 2
    return float(np.hypot(dx, dy) / max(camera.width, camera.height))


# -- outputs ----------------------------------------------------------------------------------


def _posed(reconstruction: pycolmap.Reconstruction) -> list[pycolmap.Image]:
    return [image for image in reconstruction.images.values() if image.has_pose]


def pinhole_camera(name: str, camera: pycolmap.Camera, cam_from_world: np.ndarray) -> Camera:
    """Our pinhole Camera for a COLMAP camera and (3, 4) pose; the distortion is dropped (the
    photo gets undistorted to it). COLMAP puts pixel centres at +0.5, we put them at 0."""
    K = np.array(
        [
            [camera.focal_length_x, 0.0, camera.principal_point_x - 0.5],
            [0.0, camera.focal_length_y, camera.principal_point_y - 0.5],
            [0.0, 0.0, 1.0],
        ]
    )
    return Camera(
        name=name,
        width=int(camera.width),
        height=int(camera.height),
        K=K,
        R=np.asarray(cam_from_world[:, :3], dtype=np.float64),
        t=np.asarray(cam_from_world[:, 3], dtype=np.float64),
    )


def opencv_distortion(camera: pycolmap.Camera) -> np.ndarray:
    """(n,) OpenCV distortion coefficients of a COLMAP camera (k1, k2, p1, p2, k3, ...)."""
    names = _OPENCV_DISTORTION[camera.model_name]
    values = dict(zip(camera.params_info.replace(" ", "").split(","), camera.params, strict=True))
    coefficients = [values[name] for name in names]
    if len(coefficients) == 1:  # SIMPLE_RADIAL: k is OpenCV's k1
        coefficients = [coefficients[0], 0.0, 0.0, 0.0]
    elif len(coefficients) == 2:
        coefficients = [*coefficients, 0.0, 0.0]
    return np.asarray(coefficients, dtype=np.float64)


def undistort_photo(
    source: Path,
    target: Path,
    camera: pycolmap.Camera,
    K: np.ndarray,
    *,
    tolerance_px: float = 0.05,
) -> None:
    """Resample the photo at `source` to the pinhole camera K of the same size.

    Keeping K and the size means later stages need no second set of intrinsics. The few border
    pixels that come from outside the photo repeat its edge: black, they were unlike any
    backdrop, and a product box grown past the frame (the plain shoe's upper ring at preview)
    took the frame's black edge for product, grew again round it, and the model was refused.
    When the distortion moves no pixel by `tolerance_px` the photo is copied as is, which
    saves a JPEG generation.
    """
    distortion = opencv_distortion(camera)
    size = (int(camera.width), int(camera.height))
    if not distortion.any() or max_distortion_px(K, distortion, size) < tolerance_px:
        shutil.copyfile(source, target)
        return
    photo = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
    if photo is None:
        raise StageError(STAGE, f"cannot read {source}")
    map_x, map_y = cv2.initUndistortRectifyMap(K, distortion, None, K, size, cv2.CV_32FC1)
    undistorted = cv2.remap(photo, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    # Colour at full size (4:4:4): the photo's own JPEG halved it already, and halving it again
    # blurred the printed mug's fine colour print in its texture (novel-view PSNR 26.58 ->
    # 27.00 dB; with the GLB's texture at full colour too, the 15 standard benchmark captures
    # +0.11 dB mean, -0.19 to +0.41).
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, 95,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]  # fmt: skip
    quality = jpeg if target.suffix.lower() in {".jpg", ".jpeg"} else []
    if not cv2.imwrite(str(target), undistorted, quality):
        raise StageError(STAGE, f"cannot write {target}")


def max_distortion_px(K: np.ndarray, distortion: np.ndarray, size: tuple[int, int]) -> float:
    """Largest shift the distortion causes along the image border and diagonals, in pixels."""
    width, height = size
    u = np.concatenate([np.linspace(0, width - 1, 33), np.linspace(0, width - 1, 33)])
    v = np.concatenate([np.linspace(0, height - 1, 33), np.linspace(height - 1, 0, 33)])
    border = np.stack([u, v], axis=1)
    corners = np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]])
    pixels = np.concatenate([border, corners]).astype(np.float64)
    undistorted = cv2.undistortPoints(pixels[:, None], K, distortion, P=K)[:, 0]
    return float(np.abs(undistorted - pixels).max())


def visibility_consistency(
    cameras: list[Camera],
    xyz: np.ndarray,
    visible_in: np.ndarray,
    *,
    radius_rel: float = 0.35,
    max_angle_deg: float = 40.0,
    max_photos: int = 0,
) -> float:
    """Median over photos of the share of the product's points that a photo sees, among
    those the model says it should see: in front, inside the frame, and facing it.

    (n, 3) `xyz` are the sparse points, (k, 2) `visible_in` their (point, camera) sightings.
    A point's facing direction is the mean direction to the cameras that saw it; points
    farther than `radius_rel` × the median camera distance from the centre of the camera ring
    (background) are left out. A folded model, where look-alike sides put photos on the wrong
    side (a cracker box with the same logo on every face), predicts points that its photos do
    not show: 0.24-0.32 there; 0.72-0.76 on eight correct synthetic captures, 0.71 on the
    hand-held Kermit, 0.59 on the self-occluding Middlebury temple (47 views), 0.98 on its
    16-view ring. With `max_photos` > 0 and more cameras, it is judged on `max_photos` of them
    spread round the product (`spread_cameras`) and the points two of those see, as if only they
    had been taken (see SfmOptions.visibility_max_photos).
    """
    if 0 < max_photos < len(cameras):
        chosen = spread_cameras(cameras, max_photos)
        visible_in = sightings_in(visible_in, chosen, len(cameras))
        seen_twice = np.flatnonzero(np.bincount(visible_in[:, 0], minlength=len(xyz)) >= 2)
        renumber_points = np.full(len(xyz), -1)
        renumber_points[seen_twice] = np.arange(len(seen_twice))
        visible_in = visible_in[renumber_points[visible_in[:, 0]] >= 0]
        visible_in = np.stack([renumber_points[visible_in[:, 0]], visible_in[:, 1]], axis=1)
        cameras, xyz = [cameras[i] for i in chosen], xyz[seen_twice]
    if len(cameras) < 2 or len(xyz) == 0:
        return 1.0
    centers = np.array([camera.center for camera in cameras])
    middle = nearest_point_to_axes(cameras)
    radius = radius_rel * float(np.median(np.linalg.norm(centers - middle, axis=1)))
    product = np.linalg.norm(xyz - middle, axis=1) < radius
    seen = np.zeros((len(cameras), len(xyz)), dtype=bool)
    seen[visible_in[:, 1], visible_in[:, 0]] = True
    xyz, seen = xyz[product], seen[:, product]
    if len(xyz) == 0:
        return 1.0

    def towards(index: int) -> np.ndarray:
        """(n, 3) unit directions from the points to camera `index`."""
        direction = centers[index] - xyz
        return direction / np.linalg.norm(direction, axis=1, keepdims=True)

    facing = np.zeros_like(xyz)
    for index in range(len(cameras)):
        facing[seen[index]] += towards(index)[seen[index]]
    facing /= np.maximum(np.linalg.norm(facing, axis=1, keepdims=True), 1e-12)
    min_cosine = np.cos(np.radians(max_angle_deg))
    shares = []
    for index, camera in enumerate(cameras):
        uv, depth = camera.project(xyz)
        inside = (depth > 0) & (uv[:, 0] >= -0.5) & (uv[:, 1] >= -0.5)
        inside &= (uv[:, 0] < camera.width - 0.5) & (uv[:, 1] < camera.height - 0.5)
        expected = inside & ((towards(index) * facing).sum(axis=1) > min_cosine)
        shares.append(seen[index].sum() / max(1, (expected | seen[index]).sum()))
    return float(np.median(shares))


def sparse_points(
    reconstruction: pycolmap.Reconstruction, camera_index: dict[str, int]
) -> dict[str, np.ndarray]:
    """The model's points as points.npz holds them (see Workspace.read_sfm_points)."""
    ids = sorted(reconstruction.point3D_ids())
    xyz = np.zeros((len(ids), 3), dtype=np.float64)
    rgb = np.zeros((len(ids), 3), dtype=np.uint8)
    error = np.zeros(len(ids), dtype=np.float64)
    track = np.zeros(len(ids), dtype=np.int32)
    visible_in: list[tuple[int, int]] = []
    index_of_image = {
        image.image_id: camera_index[image.name]
        for image in _posed(reconstruction)
        if image.name in camera_index
    }
    for index, point_id in enumerate(ids):
        point = reconstruction.point3D(point_id)
        xyz[index] = point.xyz
        rgb[index] = point.color
        error[index] = point.error
        views = {index_of_image[element.image_id] for element in point.track.elements}
        track[index] = len(views)
        visible_in.extend((index, view) for view in sorted(views))
    return {
        "xyz": xyz,
        "rgb": rgb,
        "error": error,
        "track": track,
        "visible_in": np.asarray(visible_in, dtype=np.int32).reshape(-1, 2),
    }


def _intrinsics_json(camera: pycolmap.Camera) -> dict:
    return {
        "model": camera.model_name,
        "width": int(camera.width),
        "height": int(camera.height),
        "params": [round(float(value), 6) for value in camera.params],
        "params_info": camera.params_info,
    }


# -- why a photo is missing -------------------------------------------------------------------


@dataclass(frozen=True)
class _DatabaseStats:
    keypoints: dict[str, int]  # per photo name; photos COLMAP could not read are absent
    overlapping: dict[str, int]  # verified pairs with enough inliers, per photo name


def _database_stats(database_path: Path, min_inliers: int) -> _DatabaseStats:
    keypoints = keypoint_counts(database_path)
    database = pycolmap.Database.open(database_path)
    try:
        images = {image.image_id: image.name for image in database.read_all_images()}
        overlapping = dict.fromkeys(images.values(), 0)
        for pair_id, inliers in zip(*database.read_two_view_geometry_num_inliers(), strict=True):
            if inliers < min_inliers:
                continue
            for image_id in pycolmap.pair_id_to_image_pair(pair_id):
                overlapping[images[image_id]] += 1
    finally:
        database.close()
    return _DatabaseStats(keypoints=keypoints, overlapping=overlapping)


def _unregistered_reason(
    name: str,
    stats: _DatabaseStats,
    models: list[pycolmap.Reconstruction],
    options: SfmOptions,
) -> str:
    if name not in stats.keypoints:
        return "the photo could not be read"
    if stats.keypoints[name] < options.min_features:
        return f"too few features ({stats.keypoints[name]}): blurry or plain"
    if stats.overlapping.get(name, 0) == 0:
        return "shares no features with the other photos"
    for model in models[1:]:
        if any(image.name == name for image in _posed(model)):
            return (
                "not registered in the largest model "
                f"(it formed a separate group of {model.num_reg_images()} photos)"
            )
    return "shares too few features with the placed photos to be placed among them"


# -- plumbing ---------------------------------------------------------------------------------


class _Progress:
    """Maps (step, fraction of the step) onto the stage's progress bar, which never goes back
    (the mapper's second pass counts its photos again)."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.done = 0.0

    def __call__(self, step: str, fraction: float, message: str) -> None:
        if self.callback is None:
            return
        low, high = _STEPS[step]
        self.done = max(self.done, low + (high - low) * min(max(fraction, 0.0), 1.0))
        self.callback(STAGE, self.done, message)


@contextmanager
def _quiet_colmap() -> Iterator[None]:
    """COLMAP logs every step at INFO to stderr; keep its errors only. Its warnings are its
    own working (a stray group of photos discarded, a solver step retried: on the benchmark
    captures dozens a run, 92 on a 24-photo 3024 px preview), printed over the progress bars;
    what a merchant needs to know, this module logs."""
    previous = pycolmap.logging.minloglevel
    pycolmap.logging.minloglevel = 2
    try:
        yield
    finally:
        pycolmap.logging.minloglevel = previous


def _validate(options: SfmOptions) -> None:
    if options.camera_model not in _OPENCV_DISTORTION:
        raise InputError(
            f"camera model {options.camera_model!r} is not supported; "
            f"choose one of {', '.join(_OPENCV_DISTORTION)}"
        )
    if options.max_features < 100:
        raise InputError(f"max_features is {options.max_features}; use at least 100")
    if options.sequential_overlap < 1 or options.loop_closure_photos < 0:
        raise InputError("sequential_overlap must be ≥ 1 and loop_closure_photos ≥ 0")
