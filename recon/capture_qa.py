"""Capture QA: what is wrong with each photo and what to reshoot, before and after reconstruction.

Per photo: blurry, near-duplicate, under- or over-exposed, not overlapping. For the whole
capture: gaps in coverage around the product, no views from above, too few photos, too many
with problems. Three uses share the same checks and wording:

* the capture stage measures every working photo (cheap: blur, exposure, exact copies) and
  keeps the result in capture.json (`check_photos`);
* `recon check` and the API add a quick pose estimate (SIFT on the part of each photo that
  shows detail, at most 480 px, essential matrices of every pair, rotations chained along the
  pairs that agree) for overlap, near duplicates and coverage, in seconds (`check`);
* report.json repeats the analysis on the solved cameras (`after_reconstruction`).

Blur and exposure are judged against the capture's own median photo, so a soft-looking
product, a dark backdrop or a white one is not flagged; a photo is flagged when it is much
worse than its siblings, or beyond any use (nothing brighter than dark grey).
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from enum import StrEnum
from itertools import combinations, pairwise
from pathlib import Path

import cv2
import numpy as np

from recon import turntable
from recon.cameras import Camera
from recon.errors import InputError
from recon.morphology import grow_mask
from recon.textured_mesh import TexturedMesh
from recon.threads import PHOTOS_AT_ONCE, available_cores, each_photo

logger = logging.getLogger(__name__)

QA_VERSION = 1
_SCREEN_FEATURES = 200  # keypoints a pair is screened with before it is matched in full
_CONTRAST = 0.02  # SIFT's contrast threshold for the check's keypoints (OpenCV's: 0.04)
_LOW_CONTRAST = 0.005  # ... for photos with too few of them, and a second look (see match_photos)


class Check(StrEnum):
    """What can be wrong with one photo."""

    UNREADABLE = "unreadable"  # capture could not take the file in
    BLURRY = "blurry"
    DUPLICATE = "near-duplicate"
    UNDEREXPOSED = "under-exposed"
    OVEREXPOSED = "over-exposed"
    NOT_OVERLAPPING = "not overlapping"


# Problems that make a photo useless whatever the others show; "not overlapping" depends on the
# rest of the capture and is judged on its own.
_PHOTO_DEFECTS = (Check.UNREADABLE, Check.BLURRY, Check.DUPLICATE, Check.UNDEREXPOSED,
                  Check.OVEREXPOSED)  # fmt: skip

_ADVICE = {
    Check.UNREADABLE: "copy them from the camera again ({names})",
    Check.BLURRY: "hold the camera still, add light, and tap the product to focus ({names})",
    Check.DUPLICATE: "they add nothing: step 10–15° around the product between photos ({names})",
    Check.UNDEREXPOSED: "add light or lock the exposure on the product ({names})",
    Check.OVEREXPOSED: "lower the exposure or move the lights back ({names})",
    Check.NOT_OVERLAPPING: "each photo should share most of its view with the photos beside it; "
    "take photos every 10–15° around the product ({names})",
}


@dataclass(frozen=True, kw_only=True)
class QaOptions:
    """Thresholds of the checks. Sizes are long sides in pixels; brightness is 0–255 luma."""

    analysis_px: int = 800  # photos are measured this long (blur, exposure)
    blur_ratio: float = 0.25  # sharper than this share of the capture's median photo, or
    # blurry. Content-normalised sharpness (see `edge_sharpness`) of the sharp photos of the
    # sample captures and Middlebury rings stays within 0.33–1.8 of their median; a 1 px
    # Gaussian blur drops textured products to 0.08–0.17, a 5 px smear to 0.08–0.22
    min_highlight: float = 48.0  # the brightest 1 % of a photo darker than this: under-exposed
    dark_ratio: float = 0.5  # mean brightness below this share of the median photo's (a
    # stop darker): under-exposed (a dark product on black keeps its siblings' brightness, a
    # slip of exposure does not)
    bright_clipped_share: float = 0.6  # a photo with more of its pixels blown out (≥ 250)
    # than this and than twice the median photo's share (+ 0.1): over-exposed; a white
    # backdrop blown out in every photo is the capture's style, not a fault
    duplicate_difference: float = 0.03  # mean difference of normalised 32 px thumbnails
    # below this: a copy of another photo (neighbours on a 15° ring differ by 0.13–0.3)
    duplicate_motion: float = 0.01  # matched features moved less than this × the long side
    # between two photos (the same view twice; video frames are kept this far apart too)
    max_duplicate_distance: int = 3  # photos matched as the same view this far apart in
    # capture order or less are near-duplicates (exact copies anywhere, by their thumbnails)
    estimate_poses: bool = True  # `check`: estimate rotations for overlap and coverage
    pose_px: int = 480  # features are found on the part of a photo with detail, this long at
    # most: on a plain backdrop the product gets up to analysis_px / pose_px times the pixels
    max_features: int = 800  # SIFT keypoints per photo
    min_keypoints: int = 300  # fewer (at a lower contrast threshold too): a photo with too
    # little detail for the check to say it overlaps nothing (see `estimated_coverage`)
    max_exhaustive_photos: int = 30  # more photos: neighbours in order plus a spread subset
    min_pair_inliers: int = 20  # a pair overlaps with this many essential-matrix inliers
    max_gap_deg: float = 50.0  # no photos over a wider sector around the product: reshoot
    estimate_margin_deg: float = 10.0  # `check` names a gap only this much wider than
    # max_gap_deg (estimated angles are 5-20° off: the plain shoe's ring squeezed into a false
    # 53° gap; photos missing between 90° and 150° leave 75-100°)
    min_veto_inliers: int = 40  # a pair of photos proves a gap false (see `coverage`) only with
    # this many inliers: on a table, two-view rotations of 20-46 inliers were 60-90° off on
    # the cracker box (with 30 the twin box's missing sector went unseen, with 60 its whole
    # ring showed a false gap)
    min_steps_in_order: float = 0.7  # fewer steps between photos in capture order going on
    # round by the estimated angles: they are not judged (`_steps_in_order`; well placed
    # synthetic captures 0.74-1.0, a folded mustard bottle 0.61)
    min_top_elevation_deg: float = 35.0  # no photo higher than this above the product's
    # middle: "no views from above" (the sample captures' upper rings sit at 45–52°)
    min_photos: int = 3  # fewer photos without defects cannot make a model
    min_good_photos: int = 12  # fewer usable photos: reshoot
    recommended_photos: int = 20  # fewer usable photos: advise more
    max_problem_share: float = 0.25  # more of the photos with problems: reshoot

    def __post_init__(self) -> None:
        if self.analysis_px < 64 or self.pose_px < 64:
            raise InputError("analysis_px and pose_px must be 64 px or more")
        if not 0 < self.blur_ratio < 1 or not 0 < self.dark_ratio < 1:
            raise InputError("blur_ratio and dark_ratio must lie between 0 and 1")
        if not 0 < self.max_gap_deg < 360:
            raise InputError(f"max_gap_deg {self.max_gap_deg}: choose 0–360")
        if self.min_photos < 1 or self.min_pair_inliers < 5:
            raise InputError("min_photos must be 1 or more and min_pair_inliers 5 or more")


# -- one photo ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhotoMeasures:
    name: str
    sharpness: float  # content-normalised (edge_sharpness); NaN on a photo without edges
    brightness: float  # mean luma, 0–255
    highlight: float  # 99th percentile of luma
    clipped_share: float  # share of pixels with luma ≥ 250
    thumbnail: np.ndarray = field(repr=False)  # (32, 32) float32, zero mean, unit spread

    def to_json(self) -> dict:
        return {
            "sharpness": None if math.isnan(self.sharpness) else round(self.sharpness, 4),
            "brightness": round(self.brightness, 1),
            "highlight": round(self.highlight, 1),
            "clipped_share": round(self.clipped_share, 4),
        }


def read_grey(path: Path, max_px: int) -> np.ndarray:
    """(h, w) uint8 luma of a photo, at most `max_px` long. JPEGs decode straight at 1/2, 1/4
    or 1/8 of their size when that is still at least `max_px` long (much faster)."""
    flags = cv2.IMREAD_GRAYSCALE
    try:
        header = cv2.imread(str(path), cv2.IMREAD_REDUCED_GRAYSCALE_8)
    except cv2.error:  # other formats are shrunk after decoding: under 8 px a side, to nothing
        header = cv2.imread(str(path), flags)
        flags = cv2.IMREAD_REDUCED_GRAYSCALE_8  # (the whole photo is read already)
    if header is None:
        raise InputError(f"{path} cannot be read as an image")
    long_full = max(header.shape) * 8  # within 8 px of the real size: enough to choose
    for factor, reduced in ((8, cv2.IMREAD_REDUCED_GRAYSCALE_8),
                            (4, cv2.IMREAD_REDUCED_GRAYSCALE_4),
                            (2, cv2.IMREAD_REDUCED_GRAYSCALE_2)):  # fmt: skip
        if long_full / factor >= max_px:
            flags = reduced
            break
    grey = header if flags == cv2.IMREAD_REDUCED_GRAYSCALE_8 else cv2.imread(str(path), flags)
    return shrink(grey, max_px)


def shrink(image: np.ndarray, max_px: int) -> np.ndarray:
    """`image` area-averaged down to at most `max_px` on its long side."""
    scale = max_px / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def measure_photo(name: str, grey: np.ndarray) -> PhotoMeasures:
    """Sharpness, exposure and a thumbnail of one (h, w) uint8 grey photo."""
    values = grey.ravel()
    thumbnail = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    thumbnail = (thumbnail - thumbnail.mean()) / max(float(thumbnail.std()), 1.0)
    return PhotoMeasures(
        name=name,
        sharpness=edge_sharpness(grey),
        brightness=float(values.mean()),
        highlight=float(np.percentile(values, 99)),
        clipped_share=float((values >= 250).mean()),
        thumbnail=thumbnail,
    )


def edge_sharpness(grey: np.ndarray, *, block: int = 4, edge_percentile: float = 97.0) -> float:
    """How sharp the strongest edges of a (h, w) uint8 photo are, whatever their contrast.

    Per direction (x, y): the fine-scale second-derivative energy over the coarse-scale
    (1/`block`) gradient energy, on the blocks whose coarse gradient is among the strongest
    3 %. Blur removes the fine energy much faster than the coarse one, so the ratio falls with
    blur, while the amount and contrast of print a side shows cancels out (the plain narrow
    side of a box scores like its printed front). Only strong edges count, so sensor noise on
    plain backgrounds does not pass for detail. The smaller of the two directions is returned:
    a camera shake blurs one direction. NaN when the photo has no edges.
    """
    image = grey.astype(np.float32)
    height, width = (image.shape[0] // block) * block, (image.shape[1] // block) * block
    if height < 4 * block or width < 4 * block:
        return math.nan
    image = image[:height, :width]
    coarse = cv2.resize(image, (width // block, height // block), interpolation=cv2.INTER_AREA)
    ratios = []
    for dx, dy in ((1, 0), (0, 1)):
        fine = cv2.Sobel(image, cv2.CV_32F, 2 * dx, 2 * dy, ksize=3) ** 2
        fine_blocks = fine.reshape(height // block, block, width // block, block).mean(axis=(1, 3))
        gradient = cv2.Sobel(coarse, cv2.CV_32F, dx, dy, ksize=3) ** 2 / 64.0
        # at least 2 grey levels per coarse pixel: flat photos have no edges to judge
        strong = gradient >= max(float(np.percentile(gradient, edge_percentile)), 4.0)
        if strong.sum() >= 8:
            ratios.append(float(fine_blocks[strong].mean() / gradient[strong].mean()))
    return min(ratios) if ratios else math.nan


# -- the checks of single photos -----------------------------------------------------------------


def photo_problems(measures: Sequence[PhotoMeasures], options: QaOptions) -> dict[str, list[dict]]:
    """name -> [{"check", "reason"}] from blur, exposure and exact copies, each photo judged
    against the capture's median photo."""
    problems: dict[str, list[dict]] = {m.name: [] for m in measures}
    if not measures:
        return problems
    sharp = np.array([m.sharpness for m in measures])
    median_sharpness = float(np.nanmedian(sharp)) if np.isfinite(sharp).any() else math.nan
    median_brightness = float(np.median([m.brightness for m in measures]))
    median_clipped = float(np.median([m.clipped_share for m in measures]))
    for m in measures:
        exposure = _exposure_problem(m, median_brightness, median_clipped, options)
        if exposure is not None:
            problems[m.name].append(exposure)
        elif math.isfinite(m.sharpness) and m.sharpness < options.blur_ratio * median_sharpness:
            # (a photo too dark or blown out has lost its edges to that, not to blur)
            problems[m.name].append(
                problem(
                    Check.BLURRY,
                    f"{m.sharpness / median_sharpness:.0%} as sharp as the capture's typical "
                    f"photo (needs {options.blur_ratio:.0%})",
                )
            )
    thumbnails = np.stack([m.thumbnail.ravel() for m in measures])
    for i, j in combinations(range(len(measures)), 2):
        difference = float(np.abs(thumbnails[i] - thumbnails[j]).mean())
        if difference < options.duplicate_difference:
            add_duplicate(problems, measures[j].name, measures[i].name, "a copy of")
    return problems


def _exposure_problem(
    m: PhotoMeasures, median_brightness: float, median_clipped: float, options: QaOptions
) -> dict | None:
    if m.highlight < options.min_highlight:
        return problem(
            Check.UNDEREXPOSED,
            f"too dark: even its brightest parts are at {m.highlight:.0f} of 255",
        )
    if m.brightness < options.dark_ratio * median_brightness:
        return problem(
            Check.UNDEREXPOSED,
            f"much darker than the other photos (mean brightness {m.brightness:.0f} against "
            f"{median_brightness:.0f})",
        )
    blown = m.clipped_share > max(options.bright_clipped_share, 2 * median_clipped + 0.1)
    # Half-way from the median photo's brightness to white, with more blown out than it has.
    brighter = m.brightness > median_brightness + 0.5 * (255 - median_brightness)
    if blown or (brighter and m.clipped_share > 2 * median_clipped + 0.05):
        return problem(
            Check.OVEREXPOSED,
            f"{m.clipped_share:.0%} of it is blown out to white (the other photos: "
            f"{median_clipped:.0%}; mean brightness {m.brightness:.0f} against "
            f"{median_brightness:.0f})",
        )
    return None


def problem(check: Check, reason: str) -> dict:
    return {"check": str(check), "reason": reason}


def add_duplicate(problems: dict[str, list[dict]], name: str, original: str, how: str) -> None:
    """Flag `name` (the later photo) as a near-duplicate of `original`, once."""
    if not any(p["check"] == Check.DUPLICATE for p in problems[name]) and not any(
        p["check"] == Check.DUPLICATE for p in problems[original]
    ):
        problems[name].append(problem(Check.DUPLICATE, f"{how} {original}"))


def check_photos(image_paths: Sequence[Path], options: QaOptions | None = None) -> dict[str, dict]:
    """The capture stage's checks of its working photos: name -> {"measures", "problems"}."""
    options = options or QaOptions()
    # A photo at a time per core: OpenCV decodes and measures without the GIL.
    measures = list(
        each_photo(
            lambda p: measure_photo(p.name, read_grey(p, options.analysis_px)),
            image_paths,
            most=PHOTOS_AT_ONCE,
        )
    )
    problems = photo_problems(measures, options)
    return {m.name: {"measures": m.to_json(), "problems": problems[m.name]} for m in measures}


# -- overlap and rotations from thumbnails -------------------------------------------------------


@dataclass(frozen=True)
class PairMatch:
    i: int
    j: int
    inliers: int  # matches consistent with one essential matrix
    rotation: np.ndarray  # (3, 3) camera j from camera i: R_j = rotation @ R_i
    motion: float  # median image motion of the inliers, × the long side
    same_view: bool  # most keypoints matched and barely moved: a near-duplicate
    trusted: bool = True  # False: the rotation is ambiguous (see `_relative_pose`)


def match_photos(
    greys: Sequence[np.ndarray],
    focals_px: Sequence[float | None],
    options: QaOptions,
    masks: Sequence[np.ndarray] | None = None,
) -> tuple[list[PairMatch], list[int]]:
    """Pairs of (h, w) uint8 photos that overlap, with their relative rotations, and how
    many keypoints each photo gave.

    SIFT features, Lowe's ratio test, then an essential matrix (USAC) with the EXIF focal
    length when known, else 1.2 × the long side (sfm's prior too): rotations need only be
    good to a few degrees to find gaps of 50°. A turntable capture comes with (h, w) uint8
    `masks` of each photo's turning part (recon.turntable): features only there, and matches
    that do not move are left out (no photo of a turntable repeats a view).
    """
    turning = masks is not None
    masks = masks if masks is not None else [None] * len(greys)
    count = len(greys)
    # OpenCV's SIFT, matcher and RANSAC run on one core each and let go of the GIL: threads
    # share the work out over the cores.
    with ThreadPoolExecutor(max_workers=available_cores()) as pool:

        def match(pairs: Iterable[tuple[int, int]], found: Sequence[_Features | None], *,
                  screen: bool = True) -> list[PairMatch]:  # fmt: skip
            matched = pool.map(
                lambda pair: _match_pair(
                    *pair,
                    found,
                    greys[pair[0]].shape,
                    focals_px[pair[0]],
                    options,
                    turning=turning,
                    screen=screen,
                ),
                pairs,
            )
            return [m for m in matched if m is not None]

        features = list(
            pool.map(lambda grey, mask: _find_features(grey, mask, options), greys, masks)
        )
        if count <= options.max_exhaustive_photos:
            pairs = list(combinations(range(count), 2))
        else:
            from recon.sfm import sequential_pairs  # pycolmap is only worth loading here

            pairs = sequential_pairs(count, 8, 20)
        matches = match(pairs, features)
        # A second look at the photos that matched nothing though they show detail: a table's
        # smooth wood gave the avocado on it 430-500 keypoints a photo, and three photos 20-24
        # ratio-test matches with their neighbours, too few to verify. Found again at the low
        # contrast threshold, they and their neighbours in capture order (the photos most
        # likely to overlap them) matched with 20-36 inliers.
        linked = {m.i for m in matches} | {m.j for m in matches}
        lonely = [
            k
            for k in range(count)
            if k not in linked and len(features[k].points) >= options.min_keypoints
        ]
        near = {
            (min(k, (k + step) % count), max(k, (k + step) % count))
            for k in lonely
            for step in (-2, -1, 1, 2)
        } - {(k, k) for k in range(count)}
        if near:
            again = sorted({k for pair in near for k in pair})
            finer: list[_Features | None] = [None] * count
            found = pool.map(
                lambda k: _find_features(greys[k], masks[k], options, contrast=_LOW_CONTRAST),
                again,
            )
            for k, photo_features in zip(again, found, strict=True):
                finer[k] = photo_features
            # Few pairs, each worth matching in full: no screening by the strongest keypoints.
            # They tell overlap, not angles: from 20-36 weak keypoints' matches the avocado's
            # rotations came out 5-10° off its 30° steps, and the one 10° short, beside a
            # missing 90° sector, closed it to under what the check believes is a gap.
            matches += [replace(m, trusted=False) for m in match(sorted(near), finer, screen=False)]
        return matches, [len(f.points) for f in features]


@dataclass(frozen=True)
class _Features:
    points: np.ndarray  # (n, 2) keypoint positions, px
    descriptors: np.ndarray | None  # (n, 128) SIFT
    strongest: np.ndarray | None  # descriptors of the _SCREEN_FEATURES strongest keypoints
    pixel: float = 1.0  # photo pixels per pixel features were found at


def _find_features(
    grey: np.ndarray, mask: np.ndarray | None, options: QaOptions, contrast: float = _CONTRAST
) -> _Features:
    """SIFT keypoints of one (h, w) uint8 photo, in its pixels, found on the part of it that
    shows detail (the product, on a plain backdrop), at most `pose_px` long; at `contrast`,
    and again at _LOW_CONTRAST when that finds fewer than `min_keypoints`."""
    x0, y0, x1, y1 = _detail_box(grey if mask is None else mask)
    crop = grey[y0:y1, x0:x1]
    scale = min(1.0, options.pose_px / max(crop.shape))
    crop = shrink(crop, options.pose_px)
    crop_mask = (
        None
        if mask is None
        else cv2.resize(mask[y0:y1, x0:x1], crop.shape[::-1], interpolation=cv2.INTER_NEAREST)
    )
    keypoints, descriptors = _sift(options, contrast).detectAndCompute(crop, crop_mask)
    if len(keypoints) < options.min_keypoints and contrast > _LOW_CONTRAST:
        keypoints, descriptors = _sift(options, _LOW_CONTRAST).detectAndCompute(crop, crop_mask)
    points = np.array([k.pt for k in keypoints], dtype=np.float64).reshape(-1, 2)
    points = points / scale + (x0, y0)
    order = np.argsort([-k.response for k in keypoints])[:_SCREEN_FEATURES]
    strongest = None if descriptors is None else descriptors[order]
    return _Features(points, descriptors, strongest, 1.0 / scale)


def _detail_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) of the part of a (h, w) uint8 image with detail, a margin round it."""
    height, width = image.shape[:2]
    small = shrink(image, 200)
    step = height / small.shape[0]
    detail = cv2.morphologyEx(small, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 24
    ys, xs = np.nonzero(detail)
    if len(xs) < 50:
        return 0, 0, width, height
    margin = 0.08 * max(small.shape)
    xlo, xhi = np.percentile(xs, [0.5, 99.5]) + np.array([-margin, margin + 1])
    ylo, yhi = np.percentile(ys, [0.5, 99.5]) + np.array([-margin, margin + 1])
    return (
        max(0, int(xlo * step)),
        max(0, int(ylo * step)),
        min(width, int(xhi * step)),
        min(height, int(yhi * step)),
    )


def _match_pair(
    i: int, j: int, features: Sequence[_Features | None], shape: tuple[int, ...],
    focal_px: float | None, options: QaOptions, *, turning: bool = False, screen: bool = True,
) -> PairMatch | None:  # fmt: skip
    a_features, b_features = features[i], features[j]
    if a_features is None or b_features is None:
        return None
    if a_features.descriptors is None or b_features.descriptors is None:
        return None
    if min(len(a_features.points), len(b_features.points)) < 8:
        return None
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    # Most pairs of a ring share nothing: their strongest keypoints tell at 1/16 of the cost
    # of matching them all.
    if screen:
        strongest = matcher.knnMatch(a_features.strongest, b_features.strongest, k=2)
        if sum(len(m) == 2 and m[0].distance < 0.8 * m[1].distance for m in strongest) < 6:
            return None
    found = matcher.knnMatch(a_features.descriptors, b_features.descriptors, k=2)
    good = [m[0] for m in found if len(m) == 2 and m[0].distance < 0.75 * m[1].distance]
    # One match per keypoint of j too: a plain backdrop's few keypoints otherwise collect
    # dozens of matches, and RANSAC spends its full budget on pairs that share nothing.
    good = list({m.trainIdx: m for m in sorted(good, key=lambda m: -m.distance)}.values())
    if len(good) < options.min_pair_inliers * 1.25:
        return None
    # A repeated view matches most of its keypoints; a few static-looking matches of two
    # different views (on repeating print, say) do not make a duplicate.
    repeated = len(good) >= 0.3 * min(len(a_features.points), len(b_features.points))
    # The best 256 decide a rotation as well as all of them, at a fraction of the time.
    good = sorted(good, key=lambda m: m.distance)[:256]
    a = a_features.points[[m.queryIdx for m in good]]
    b = b_features.points[[m.trainIdx for m in good]]
    if turning:
        # On a turntable the product always turns between photos: what stays put is the
        # background the masks left, or the disc's scale, repeating every few degrees.
        moved = np.linalg.norm(a - b, axis=1) >= options.duplicate_motion * max(shape[:2])
        a, b, repeated = a[moved], b[moved], False
        if len(a) < options.min_pair_inliers * 1.25:
            return None
    pixel = max(a_features.pixel, b_features.pixel)
    pair = _relative_pose(a, b, shape, focal_px, options, repeated=repeated, pixel=pixel)
    if pair is None:
        return None
    inliers, rotation, motion, trusted = pair
    same_view = repeated and motion < options.duplicate_motion
    return PairMatch(i, j, inliers, rotation, motion, same_view, trusted)


def _sift(options: QaOptions, contrast: float) -> cv2.Feature2D:
    # One detector per thread; a low contrast threshold finds the print of plain products.
    return cv2.SIFT_create(nfeatures=options.max_features, contrastThreshold=contrast)


def _relative_pose(
    a: np.ndarray, b: np.ndarray, shape: tuple[int, ...], focal_px: float | None,
    options: QaOptions, *, repeated: bool, pixel: float = 1.0,
) -> tuple[int, np.ndarray, float, bool] | None:  # fmt: skip
    """(inliers, rotation of b's camera from a's, median motion × the long side, whether the
    rotation can be trusted) of matched (n, 2) pixel positions, or None when no essential
    matrix holds enough of them.

    A pair whose matches one homography explains better than the essential matrix saw mostly
    one plane (a box side filling both photos): its rotation is ambiguous, and on the
    synthetic cereal box every such pair's was 28-124° off (those with fewer homography
    inliers: under 17°). The pair still overlaps.
    """
    height, width = shape[:2]
    long_side = max(height, width)
    motion = np.linalg.norm(a - b, axis=1) / long_side
    if repeated and float(np.median(motion)) < options.duplicate_motion:
        # The same view twice: no baseline for an essential matrix, and none needed.
        return len(a), np.eye(3), float(np.median(motion)), True
    focal = focal_px or 1.2 * long_side
    K = np.array([[focal, 0, (width - 1) / 2], [0, focal, (height - 1) / 2], [0, 0, 1]])
    try:
        # 500 iterations find a pair with 40 % inliers 19 times in 20; pairs with fewer
        # are not worth the time (RANSAC's default 1000 doubled the check's run time). USAC
        # (RANSAC with local optimisation) took 2.3× less time than plain RANSAC on the
        # synthetic cracker box's pairs, and its chained rotations were as good.
        E, mask = cv2.findEssentialMat(
            a, b, K, method=cv2.USAC_DEFAULT, prob=0.99, threshold=1.5 * pixel, maxIters=500
        )
        if E is None or mask is None or E.shape[0] < 3:
            return None
        # Several solutions come stacked; the first is RANSAC's best.
        inliers, R, _, mask = cv2.recoverPose(E[:3], a, b, K, mask=mask.copy())
        _, on_plane = cv2.findHomography(a, b, cv2.RANSAC, 1.5 * pixel, maxIters=500)
    except cv2.error:  # degenerate point sets (all on a line, repeated) make the solver throw
        return None
    if inliers < options.min_pair_inliers:
        return None
    kept = mask.ravel() > 0
    planar = on_plane is not None and int(on_plane.sum()) > 1.05 * inliers
    return int(inliers), R, float(np.median(motion[kept])), not planar


def chain_rotations(
    count: int, matches: Sequence[PairMatch], *, trials: int = 64, max_error_deg: float = 5.0,
    seed: int = 0,
) -> dict[int, np.ndarray]:  # fmt: skip
    """World-to-camera rotations (3, 3) of the largest group of overlapping photos.

    Rotations chained along a spanning tree of the pairs place every photo; which tree is
    decided like RANSAC: maximum spanning trees over randomly weakened inlier counts, keeping
    the one that the most pairs (by inliers) agree with within `max_error_deg`. A box side
    filling both photos of a pair is nearly a plane, which leaves that pair's essential matrix
    ambiguous (35° off on the sample cereal box, with hundreds of inliers): the strongest
    pairs alone cannot be trusted, the agreement of the rest can. The agreeing pairs are then
    averaged. Photos outside the group are absent.
    """
    edges = _edges(count, matches)
    groups = _components(count, edges)
    if not groups:
        return {}
    group = max(groups, key=len)
    root = max(group, key=lambda k: sum(w for _, _, w in edges[k]))
    rng = np.random.default_rng(seed)
    best: tuple[float, dict[int, np.ndarray]] = (-1.0, {})
    for trial in range(trials):
        weakened = {
            (m.i, m.j): m.inliers * (1.0 if trial == 0 else rng.uniform(0.1, 1.0)) for m in matches
        }
        rotations = _spanning_tree_rotations(root, edges, weakened)
        score = sum(
            m.inliers
            for m in matches
            if m.i in rotations
            and rotation_angle_deg(m.rotation @ rotations[m.i] @ rotations[m.j].T) <= max_error_deg
        )
        if score > best[0]:
            best = (score, rotations)
    rotations = best[1]
    for _ in range(10):
        for node in rotations:
            if node == root:
                continue
            total = np.zeros((3, 3))
            for other, relative, weight in edges[node]:
                estimate = relative.T @ rotations[other]
                if rotation_angle_deg(estimate @ rotations[node].T) <= 3 * max_error_deg:
                    total += weight * estimate
            if total.any():
                rotations[node] = nearest_rotation(total)
    return rotations


def _edges(
    count: int, matches: Sequence[PairMatch]
) -> dict[int, list[tuple[int, np.ndarray, int]]]:
    """Each photo's pairs: (other photo, rotation of the other's camera from its own, inliers)."""
    edges: dict[int, list[tuple[int, np.ndarray, int]]] = {k: [] for k in range(count)}
    for m in matches:
        edges[m.i].append((m.j, m.rotation, m.inliers))  # R_j = rotation @ R_i
        edges[m.j].append((m.i, m.rotation.T, m.inliers))
    return edges


def _spanning_tree_rotations(
    root: int, edges: dict[int, list[tuple[int, np.ndarray, int]]],
    weights: dict[tuple[int, int], float],
) -> dict[int, np.ndarray]:  # fmt: skip
    """Rotations chained from `root` along the maximum spanning tree of `weights` (Prim)."""
    rotations = {root: np.eye(3)}
    frontier = [(weights[min(root, j), max(root, j)], root, j, R) for j, R, _ in edges[root]]
    while frontier:
        frontier.sort(key=lambda item: item[0])
        _, source, target, relative = frontier.pop()
        if target in rotations:
            continue
        rotations[target] = relative @ rotations[source]
        frontier += [
            (weights[min(target, j), max(target, j)], target, j, R)
            for j, R, _ in edges[target]
            if j not in rotations
        ]
    return rotations


def _components(count: int, edges: dict[int, list]) -> list[list[int]]:
    seen: set[int] = set()
    groups = []
    for start in range(count):
        if start in seen or not edges[start]:
            continue
        group, stack = [], [start]
        seen.add(start)
        while stack:
            node = stack.pop()
            group.append(node)
            for other, _, _ in edges[node]:
                if other not in seen:
                    seen.add(other)
                    stack.append(other)
        groups.append(group)
    return groups


def nearest_rotation(matrix: np.ndarray) -> np.ndarray:
    """The rotation (3, 3) closest to a (3, 3) matrix (Frobenius norm)."""
    u, _, vt = np.linalg.svd(matrix)
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def rotation_angle_deg(rotation: np.ndarray) -> float:
    """The angle (degrees) of a (3, 3) rotation."""
    return math.degrees(math.acos(np.clip((np.trace(rotation) - 1) / 2, -1.0, 1.0)))


# -- coverage --------------------------------------------------------------------------------


def orbit_angles(directions: np.ndarray, up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth and elevation (degrees) of (n, 3) directions from the product to the cameras.

    Azimuth is 0° at the first camera and grows in the direction the photos were taken (the
    way most steps between consecutive photos turn), within [0, 360); elevation is the angle
    above the plane through the product's middle, normal to the (3,) `up`.
    """
    up = up / np.linalg.norm(up)
    directions = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    elevation = np.degrees(np.arcsin(np.clip(directions @ up, -1.0, 1.0)))
    flat = directions - np.outer(directions @ up, up)
    first = flat[0] if np.linalg.norm(flat[0]) > 1e-6 else np.cross(up, [1.0, 0.0, 0.0])
    e1 = first / np.linalg.norm(first)
    e2 = np.cross(up, e1)
    azimuth = np.degrees(np.arctan2(flat @ e2, flat @ e1))
    steps = (np.diff(azimuth) + 180.0) % 360.0 - 180.0
    if len(steps) and np.median(steps) < 0:
        azimuth = -azimuth
    return azimuth % 360.0, elevation


def directions_from_rotations(rotations: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(n, 3) directions from the product to the cameras, and the (3,) up direction, of
    world-to-camera rotations of cameras that look at the product. Up is the mean of the
    cameras' up axes: people hold the camera upright, and around a ring the tilt cancels."""
    stacked = np.stack(rotations)
    view = stacked[:, 2, :]  # optical axes in the world
    up = -stacked[:, 1, :].sum(axis=0)
    return -view, up / max(float(np.linalg.norm(up)), 1e-12)


def coverage(
    names: Sequence[str],
    azimuth_deg: np.ndarray,
    elevation_deg: np.ndarray,
    options: QaOptions,
    *,
    links: set[tuple[int, int]] | None = None,
) -> dict:
    """Gaps around the product and the height range of the photos; `names` in capture order.

    `links` (index pairs of photos that share features and are less than `max_gap_deg` apart
    by their own two-view rotation, see `estimated_coverage`), when given, veto gaps: a gap
    that a linked pair spans, or whose two edge photos are linked, is an error of the chained
    angles, not missing photos (two-view rotations of a small product seen from afar are
    uncertain by tens of degrees and a ring can come out squeezed or folded).

    Returns {"photos", "gaps": [{"from_deg", "to_deg", "width_deg", "after", "before"}],
    "largest_gap_deg", "elevation_deg": {"min", "max"}, "views_from_above", "angles":
    [{"image", "azimuth_deg", "elevation_deg"}]}.
    """
    angles = [
        {"image": name, "azimuth_deg": round(float(a), 1), "elevation_deg": round(float(e), 1)}
        for name, a, e in zip(names, azimuth_deg, elevation_deg, strict=True)
    ]
    result: dict = {"photos": len(names), "angles": angles, "gaps": []}
    if len(names) < 2:
        result.update(largest_gap_deg=None, elevation_deg=None, views_from_above=None)
        return result
    order = np.argsort(azimuth_deg)
    sorted_az = azimuth_deg[order]
    widths = np.diff(np.append(sorted_az, sorted_az[0] + 360.0))
    for k in np.flatnonzero(widths > options.max_gap_deg):
        start, end = float(sorted_az[k]), float(sorted_az[k] + widths[k]) % 360.0
        after, before = int(order[k]), int(order[(k + 1) % len(order)])
        if links is not None and (
            any(_spans(azimuth_deg[a], azimuth_deg[b], start, float(widths[k])) for a, b in links)
            or (min(after, before), max(after, before)) in links
        ):
            continue
        result["gaps"].append(
            {
                "from_deg": round(start, 1),
                "to_deg": round(end, 1),
                "width_deg": round(float(widths[k]), 1),
                "after": names[after],
                "before": names[before],
            }
        )
    result["gaps"].sort(key=lambda gap: -gap["width_deg"])
    result["largest_gap_deg"] = round(float(widths.max()), 1)
    result["elevation_deg"] = {
        "min": round(float(elevation_deg.min()), 1),
        "max": round(float(elevation_deg.max()), 1),
    }
    result["views_from_above"] = bool(elevation_deg.max() >= options.min_top_elevation_deg)
    return result


def _spans(a_deg: float, b_deg: float, start_deg: float, width_deg: float) -> bool:
    """Whether the shorter arc between azimuths a and b covers the arc [start, start + width)."""
    step = (b_deg - a_deg + 180.0) % 360.0 - 180.0
    low = a_deg if step >= 0 else b_deg
    offset = (start_deg - low) % 360.0
    return offset + width_deg <= abs(step) + 1e-6


# -- the verdict --------------------------------------------------------------------------------


@dataclass(frozen=True)
class QaResult:
    """The checks of one capture: per photo, advice for the whole, and whether to reshoot."""

    photos: list[dict]  # {"image", "problems": [{"check", "reason"}], "measures": {...}}
    advice: list[str]  # what to do, most important first
    reshoot: list[str]  # why the capture should be taken again; empty: it is fine
    usable: int  # photos without any problem
    cannot_work: bool  # fewer than min_photos photos without defects: no model possible
    coverage: dict | None  # see `coverage`; None without poses
    poses: str  # "estimated" (thumbnails), "solved" (reconstruction) or "none"
    notes: list[str] = field(default_factory=list)  # capture's own remarks (EXIF, video)
    timings_s: dict = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        return "reshoot" if self.reshoot else "ok"

    def summary_json(self) -> dict:
        """The result without per-photo measures and angles: what a job keeps and an API
        client reads (the photos listed are those with problems)."""
        body = self.to_json()
        body["images"] = [
            {"image": p["image"], "problems": p["problems"]} for p in self.photos if p["problems"]
        ]
        if self.coverage is not None:
            body["coverage"] = {k: v for k, v in self.coverage.items() if k != "angles"}
        return body

    def to_json(self) -> dict:
        return {
            "version": QA_VERSION,
            "verdict": self.verdict,
            "reshoot": list(self.reshoot),
            "cannot_work": self.cannot_work,
            "advice": list(self.advice),
            "photos": len(self.photos),
            "usable": self.usable,
            "problems": _problem_counts(self.photos),
            "poses": self.poses,
            "coverage": self.coverage,
            "images": self.photos,
            "notes": list(self.notes),
            "timings_s": dict(self.timings_s),
        }


def assess(
    photos: list[dict],
    coverage_info: dict | None,
    options: QaOptions,
    *,
    poses: str,
    notes: Sequence[str] = (),
    timings_s: dict | None = None,
) -> QaResult:
    """Advice and the reshoot verdict from the photos' problems and the coverage."""
    total = len(photos)
    flawless = [p for p in photos if not p["problems"]]
    without_defects = [
        p for p in photos if not any(q["check"] in _PHOTO_DEFECTS for q in p["problems"])
    ]
    advice: list[str] = []
    reshoot: list[str] = []
    cannot_work = len(without_defects) < options.min_photos
    if cannot_work:
        reshoot.append(
            f"only {len(without_defects)} of {total} photos can be used; at least "
            f"{options.min_photos} are needed, 20–40 all around the product are best"
        )
    elif len(flawless) < options.min_good_photos:
        reshoot.append(
            f"only {len(flawless)} of {total} photos are usable: take 20–40 photos all around "
            "the product, every 10–15°"
        )
    elif len(flawless) < options.recommended_photos:
        advice.append(
            f"{len(flawless)} usable photos: 20–40 all around the product give a more "
            "complete model"
        )
    flagged = total - len(flawless)
    if total and flagged / total > options.max_problem_share and not cannot_work:
        reshoot.append(
            f"{flagged} of {total} photos have problems ({_counts_text(photos)}): more than "
            f"{options.max_problem_share:.0%}"
        )
    for check in Check:
        names = [p["image"] for p in photos if any(q["check"] == check for q in p["problems"])]
        if names:
            shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            advice.append(
                f"{len(names)} {_plural(check, len(names))}: " + _ADVICE[check].format(names=shown)
            )
    estimate = coverage_info or {}
    placed = estimate.get("overlapping", estimate.get("photos", 0))
    plain = estimate.get("little_detail") or []
    if plain:
        shown = ", ".join(plain[:6]) + (f" and {len(plain) - 6} more" if len(plain) > 6 else "")
        advice.append(
            f"{len(plain)} {'photo shows' if len(plain) == 1 else 'photos show'} too little "
            f"detail for the quick check to match ({shown}), so it cannot tell whether every "
            "photo overlaps the others or the photos go all round; the reconstruction will. "
            "A plain product is placed best on a patterned surface (a newspaper or a printed "
            "mat), with a photo every 10–15°"
        )
    elif (
        poses != "none"
        and len(without_defects) >= options.min_photos
        and placed < max(options.min_photos, 0.5 * len(without_defects))
    ):
        reshoot.append(
            f"only {placed} of {len(without_defects)} photos overlap enough to be placed around "
            "the product"
        )
    if coverage_info and coverage_info.get("gaps"):
        for gap in coverage_info["gaps"]:
            text = (
                f"no photos between {_round5(gap['from_deg'])}° and {_round5(gap['to_deg'])}° "
                f"around the product (between {gap['after']} and {gap['before']}; 0° is the "
                "first photo, counted the way the photos go round): take a photo every 10–15° "
                "there"
            )
            advice.insert(0, text)
        reshoot.append(
            f"a {coverage_info['gaps'][0]['width_deg']:.0f}° stretch around the product has no "
            "photos: that side of the model would be missing or wrong"
        )
    if coverage_info and coverage_info.get("views_from_above") is False:
        advice.append(
            f"no views from above (the highest photo is "
            f"{coverage_info['elevation_deg']['max']:.0f}° above the product's middle): add a "
            "ring of photos from higher up (45–60°) so the top is covered"
        )
    return QaResult(
        photos=photos,
        advice=advice,
        reshoot=reshoot,
        usable=len(flawless),
        cannot_work=cannot_work,
        coverage=coverage_info,
        poses=poses,
        notes=list(notes),
        timings_s=dict(timings_s or {}),
    )


def _plural(check: Check, count: int) -> str:
    nouns = {
        Check.UNREADABLE: "unreadable file",
        Check.BLURRY: "blurry photo",
        Check.DUPLICATE: "near-duplicate photo",
        Check.UNDEREXPOSED: "under-exposed photo",
        Check.OVEREXPOSED: "over-exposed photo",
        Check.NOT_OVERLAPPING: "photo not overlapping the others",
    }
    noun = nouns[check]
    if count == 1:
        return noun
    if check == Check.NOT_OVERLAPPING:
        return "photos not overlapping the others"
    return noun + "s"


def _problem_counts(photos: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for photo in photos:
        for check in {q["check"] for q in photo["problems"]}:
            counts[check] = counts.get(check, 0) + 1
    return counts


def _counts_text(photos: list[dict]) -> str:
    return ", ".join(f"{count} {check}" for check, count in _problem_counts(photos).items())


def _round5(degrees: float) -> int:
    return int(5 * round(degrees / 5)) % 360


# -- before reconstruction: `recon check` --------------------------------------------------------


def check(input_path: Path | str, options: QaOptions | None = None) -> QaResult:
    """Check a capture (a folder, a .zip or a video) in seconds, before reconstructing it.

    The input is read exactly as a reconstruction reads it (recon.capture: the same photos
    taken, the same video frames chosen), into small working copies in a temporary folder,
    then measured, matched and placed. Raises InputError when the input cannot be read at all.
    """
    from recon.capture import CaptureOptions, run  # capture hooks this module's photo checks
    from recon.workspace import Workspace

    options = options or QaOptions()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="recon-check-") as folder:
        workspace = Workspace(Path(folder))
        run(
            Path(input_path),
            workspace,
            CaptureOptions(max_image_px=options.analysis_px, min_images=1, jpeg_quality=90),
        )
        info = workspace.read_capture()
        timings = {"read": round(time.perf_counter() - start, 3)}
        names = [entry["name"] for entry in info["images"]]
        photos = photos_from_capture(info)
        coverage_info, poses = None, "none"
        notes: list[str] = []
        if options.estimate_poses and len(names) >= 2:
            pose_start = time.perf_counter()
            greys = [read_grey(workspace.image_path(n), options.analysis_px) for n in names]
            focals = [
                entry["focal_px"] * max(grey.shape) / max(entry["width"], entry["height"])
                if entry.get("focal_px")
                else None
                for entry, grey in zip(info["images"], greys, strict=True)
            ]
            # A turntable's still room would match as the same view in every photo of a ring
            finding, _ = turntable.find_in_photos([workspace.image_path(n) for n in names])
            masks = None
            if finding.detected:
                notes.append(turntable.message(finding, len(names)))
                sizes = [grey.shape[::-1] for grey in greys]
                masks = turntable.feature_masks(finding, sizes, turntable.TurntableOptions())
            coverage_info = estimated_coverage(names, greys, focals, photos, options, masks)
            poses = "estimated"
            if not coverage_info["judged"] and not coverage_info["little_detail"]:
                why = (
                    "the photos record no focal length (EXIF)"
                    if any(f is None for f in focals)
                    else "the quick check could not place the photos consistently round the product"
                )
                notes.append(
                    f"{why}, so the coverage around the product is judged only after "
                    "reconstruction (report.json capture_qa)"
                )
            timings["poses"] = round(time.perf_counter() - pose_start, 3)
    timings["total"] = round(time.perf_counter() - start, 3)
    notes += [w for w in info.get("warnings", []) if "skipped (" not in w]
    return assess(photos, coverage_info, options, poses=poses, notes=notes, timings_s=timings)


def blurry_photos(info: dict) -> set[str]:
    """Names of capture.json's photos its checks found blurry: the texture takes their colours
    only where no sharp photo sees the surface well. (Not the badly exposed: the texture's
    exposure levelling serves them, and an over-exposed photo is mostly a backdrop blown out
    round a product still well shown: four such photos of 24, weighted down too, cost the
    plain soup can 0.2 dB of novel-view PSNR, benchmarks/phone_photos.py.)"""
    checked = info.get("qa", {}).get("images", {})
    return {
        name
        for name, entry in checked.items()
        if any(found["check"] == Check.BLURRY for found in entry.get("problems", []))
    }


def photos_from_capture(info: dict) -> list[dict]:
    """Per-photo entries from capture.json: its checks of each photo taken, and the files it
    could not take (photos only: frames a video leaves out were chosen against, not faulty)."""
    checked = info.get("qa", {}).get("images", {})
    photos = [
        {
            "image": entry["name"],
            "problems": list(checked.get(entry["name"], {}).get("problems", [])),
            "measures": checked.get(entry["name"], {}).get("measures", {}),
        }
        for entry in info["images"]
    ]
    for rejected in info.get("rejected", []):
        # Frames a video leaves out were chosen against, and other files are not photos.
        if not rejected["image"].startswith("frame_") and rejected["reason"] != "not an image":
            photos.append(
                {
                    "image": rejected["image"],
                    "problems": [problem(Check.UNREADABLE, rejected["reason"])],
                    "measures": {},
                }
            )
    return photos


def estimated_coverage(
    names: Sequence[str],
    greys: Sequence[np.ndarray],
    focals_px: Sequence[float | None],
    photos: list[dict],
    options: QaOptions,
    masks: Sequence[np.ndarray] | None = None,
) -> dict:
    """Match the thumbnails (features only inside `masks`, if given), flag photos that
    overlap nothing or repeat a view (in `photos`, in place), and measure the coverage of the
    photos placed by their chained rotations.

    Photos of a plain product show too little detail for thumbnails to link them all (the
    synthetic avocado and water bottle on a plain backdrop, which reconstruct fine, give 60-350
    keypoints a photo): when such a photo is left out, the check cannot tell a photo that does
    not overlap from one it could not match, so it flags none and leaves coverage to the
    reconstruction ("judged": False, "little_detail": the names).
    """
    matches, keypoints = match_photos(greys, focals_px, options, masks)
    by_name = {p["image"]: p for p in photos}
    problems = {p["image"]: p["problems"] for p in photos}
    for m in sorted(matches, key=lambda m: (m.j, m.i)):
        # Only photos taken one after another: a symmetric product's opposite sides give the
        # same picture (the synthetic twin box and water bottle, photos 180° apart).
        if m.same_view and m.j - m.i <= options.max_duplicate_distance:
            add_duplicate(
                problems,
                names[m.j],
                names[m.i],
                f"the same view as (its features moved {m.motion:.1%} of the frame from)",
            )
    edges = _edges(len(names), matches)
    groups = _components(len(names), edges)
    overlapping = set(max(groups, key=len)) if groups else set()
    left_out = [k for k in range(len(names)) if k not in overlapping]
    defective = {
        p["image"] for p in photos if any(q["check"] in _PHOTO_DEFECTS for q in p["problems"])
    }
    plain = [
        names[k]
        for k in left_out
        if keypoints[k] < options.min_keypoints and names[k] not in defective
    ]
    linked = {m.i for m in matches} | {m.j for m in matches}
    for index in [] if plain else left_out:
        if index in linked:
            reason = "overlaps only photos that do not overlap the rest (a separate group)"
        else:
            reason = (
                f"shares fewer than {options.min_pair_inliers} consistent features with any "
                "other photo"
            )
        by_name[names[index]]["problems"].append(problem(Check.NOT_OVERLAPPING, reason))
    rotations = chain_rotations(
        len(names), [m for m in matches if m.trusted and m.i in overlapping]
    )
    placed = sorted(rotations)
    if placed:
        directions, up = directions_from_rotations([rotations[k] for k in placed])
        azimuth, elevation = orbit_angles(directions, up)
        position = {k: n for n, k in enumerate(placed)}
        near = _near_pairs(matches, options.max_gap_deg, options.min_veto_inliers)
        links = {(position[i], position[j]) for i, j in near if {i, j} <= position.keys()}
        # Photos that overlap but could not be placed (only ambiguous rotations) fill the
        # gap between two placed photos they connect.
        unplaced = overlapping - rotations.keys()
        for a, b in _connected_through(edges, unplaced, set(placed)):
            links.add((position[a], position[b]))
        # Estimated angles are off by 5-20°: a gap must be wider by a margin to be believed.
        loose = replace(options, max_gap_deg=options.max_gap_deg + options.estimate_margin_deg)
        result = coverage([names[k] for k in placed], azimuth, elevation, loose, links=links)
    else:
        result = coverage([], np.zeros(0), np.zeros(0), options)
    in_order = _steps_in_order(result, options.max_gap_deg)
    result.update(
        overlapping=len(overlapping),
        little_detail=plain,
        steps_in_order=None if in_order is None else round(in_order, 3),
    )
    if plain or (in_order is not None and in_order < options.min_steps_in_order):
        # Photos left out may fill any gap or be the views from above; a folded ring's angles
        # mean nothing.
        result.update(gaps=[], largest_gap_deg=None, views_from_above=None, judged=False)
    elif any(focals_px[k] is None for k in placed):
        # With a guessed focal length two-view rotations come out scaled and skewed (the
        # Middlebury temple, 1520 px taken for 768 px, squeezed its ring into 150°): the
        # angles are kept for reference but not judged; report.json judges the solved ones.
        result.update(gaps=[], largest_gap_deg=None, views_from_above=None, judged=False)
    else:
        result["judged"] = True
    return result


def _steps_in_order(result: dict, max_gap_deg: float) -> float | None:
    """Share of steps from one placed photo to the next in capture order that go on round the
    product by less than a gap, or across a gap found. People take photos in order round the
    product; two-view rotations that fold the ring (a bottle's front taken for its back) send
    the steps back and forth."""
    angles = [a["azimuth_deg"] for a in result["angles"]]
    if len(angles) < 3:
        return None
    good = 0
    for a, b in pairwise(angles):
        step = (b - a) % 360.0
        crosses = any(_spans(a, b, g["from_deg"], g["width_deg"]) for g in result["gaps"])
        good += step <= max_gap_deg or (step < 180.0 and crosses)
    return good / (len(angles) - 1)


def _near_pairs(
    matches: Sequence[PairMatch], max_deg: float, min_inliers: int = 0
) -> set[tuple[int, int]]:
    """(i, j), i < j, of photos less than `max_deg` apart by their own rotation or through one
    photo both overlap, counting trusted pairs of `min_inliers` or more. A pair's own angle
    decides, not the mere overlap: a box's flat side shows in photos 90° apart, either side of
    a real gap."""
    onward: dict[int, list[tuple[int, np.ndarray]]] = {}  # photo -> (other, R_other @ R_photo⁻¹)
    for m in matches:
        if m.trusted and m.inliers >= min_inliers:
            onward.setdefault(m.i, []).append((m.j, m.rotation))  # R_j = rotation @ R_i
            onward.setdefault(m.j, []).append((m.i, m.rotation.T))
    near: set[tuple[int, int]] = set()
    for a, steps in onward.items():
        for c, first in steps:
            if a < c and rotation_angle_deg(first) < max_deg:
                near.add((a, c))
            for b, second in onward.get(c, ()):
                if a < b and rotation_angle_deg(second @ first) < max_deg:
                    near.add((a, b))
    return near


def _connected_through(
    edges: dict[int, list[tuple[int, np.ndarray, int]]], inner: set[int], outer: set[int]
) -> set[tuple[int, int]]:
    """(a, b), a < b, of `outer` photos joined by a path of overlapping `inner` photos
    (`edges` as `_edges` gives them)."""
    joined: set[tuple[int, int]] = set()
    for start in outer:
        seen, stack, reached = set(), [o for o, _, _ in edges[start] if o in inner], set()
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            for other, _, _ in edges[node]:
                if other in inner:
                    stack.append(other)
                elif other != start:
                    reached.add(other)
        joined |= {(min(start, o), max(start, o)) for o in reached if o in outer}
    return joined


# -- after reconstruction: report.json ------------------------------------------------------------


def after_reconstruction(
    capture_info: dict,
    cameras: Sequence[Camera],
    center: np.ndarray,
    up: np.ndarray,
    unregistered: Sequence[dict],
    options: QaOptions | None = None,
) -> QaResult:
    """The capture's checks redone with the solved cameras: photos the reconstruction could
    not place are "not overlapping" (with its reason), photos solved at the same pose as an
    earlier one are near-duplicates, and the coverage is measured from the camera centres
    around the (3,) product `center`, with the (3,) `up` of the cameras' frame."""
    options = options or QaOptions()
    photos = photos_from_capture(capture_info)
    by_name = {p["image"]: p for p in photos}
    problems = {p["image"]: p["problems"] for p in photos}
    for item in unregistered:
        if item["image"] in by_name:
            by_name[item["image"]]["problems"].append(
                problem(
                    Check.NOT_OVERLAPPING, f"not placed by the reconstruction: {item['reason']}"
                )
            )
    order = {p["image"]: k for k, p in enumerate(photos)}
    placed = sorted((c for c in cameras if c.name in order), key=lambda c: order[c.name])
    if not placed:
        return assess(photos, None, options, poses="solved")
    centers = np.stack([c.center for c in placed])
    radius = float(np.median(np.linalg.norm(centers - center, axis=1)))
    for (a, cam_a), (b, cam_b) in combinations(enumerate(placed), 2):
        moved = float(np.linalg.norm(centers[a] - centers[b]))
        turned = rotation_angle_deg(cam_a.R @ cam_b.R.T)
        if moved < options.duplicate_motion * radius and turned < 1.0:
            add_duplicate(
                problems, cam_b.name, cam_a.name, "taken from the same place as (solved poses)"
            )
    azimuth, elevation = orbit_angles(centers - center, np.asarray(up, dtype=np.float64))
    coverage_info = coverage([c.name for c in placed], azimuth, elevation, options)
    return assess(photos, coverage_info, options, poses="solved")


def mask_agreement(
    cameras: Sequence[Camera],
    mesh: TexturedMesh,
    masks: Sequence[np.ndarray],
    *,
    grow_rel: float = 0.0,
    max_px: int = 320,
) -> list[float]:
    """Per camera, the IoU of the model's silhouette with the product mask of its photo.

    The silhouette is first grown by `grow_rel` × the long side, as the masks stage grows
    its masks on purpose (masks.MaskOptions.mask_dilate_rel), so a model that fits its masks
    scores near 1.

    `mesh` is the model in the cameras' frame; `masks` are (h, w) arrays (non-zero: product)
    at the cameras' sizes. Silhouettes are rendered (recon.render) at most `max_px` long:
    agreement is about shape, not pixels. Where the model and the masks disagree, one of them
    is wrong: a missing part, a part of the table, a misplaced camera. Raises ReconError when
    no OpenGL context can be opened.
    """
    from recon.render import OffscreenRenderer  # OpenGL only when asked for

    ious = []
    with OffscreenRenderer(mesh) as renderer:
        for camera, mask in zip(cameras, masks, strict=True):
            small = camera.scaled(min(1.0, max_px / max(camera.width, camera.height)))
            drawn = renderer.render(small, colour=False).mask
            grow = round(grow_rel * max(drawn.shape))
            drawn = grow_mask(drawn.astype(np.uint8), grow).astype(bool)
            want = cv2.resize(
                (mask > 0).astype(np.uint8), drawn.shape[::-1], interpolation=cv2.INTER_NEAREST
            ).astype(bool)
            union = np.count_nonzero(drawn | want)
            ious.append(float(np.count_nonzero(drawn & want) / union) if union else 1.0)
    return ious
