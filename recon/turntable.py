"""Turntable captures: find the still background of photos taken from a tripod while the product
turns, and mask it out of structure from motion.

On a turntable the room behind the product is the same in every photo taken from one tripod
position. Its features match perfectly between those photos and say that the camera never
moved, against the product's features, which say it circled the product: SfM then pins the
cameras together or builds the room instead of the product (FIELD_NOTES: colmap#2576,
Meshroom#283). So, before features are found:

1. Photos are compared small (`analysis_px`). Two photos come from the same tripod position when
   a good share of their *textured* pixels is identical (plain pixels, such as studio paper,
   are identical in any capture and prove nothing). Such pairs join into groups, one a tripod
   height; a hand-held capture forms none.
2. Where every photo of a group agrees (within `still_tolerance`), the picture is still; a
   group whose still pixels hold enough texture (`min_still_textured_share` of the frame) is a
   turntable ring.
3. A pixel of a ring photo is background when several other photos of the ring show the same
   colour there (the room repeats; the turning product does not). Each photo keeps, for
   features, only the rest: the product and the turning disc (`feature_masks`), written where
   SfM reads feature masks (``workspace.mask_path``; 0 drops keypoints).

The disc turns with the product, so it places cameras like a table under a hand-held capture
does, and the masks stage cuts it away like one (a ground plane under the product).

For the masks stage, `sure_background` marks what is surely not the product: the still room
round it and the disc beside it. The lights stay with the room, so a plain part of the product
is lit alike at every turn and repeats at its place like the room; what the room or the disc
seems to hold inside the product's outline is therefore left to the segmentation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from recon.cameras import Camera
from recon.errors import InputError, StageError
from recon.morphology import disc_kernel, grow_mask
from recon.workspace import Workspace

if TYPE_CHECKING:
    from recon.masks import ObjectRegion

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TurntableOptions:
    """How a turntable capture is recognised and its still background masked."""

    detect: bool = True  # look for a still background before SfM; False: never mask
    analysis_px: int = 256  # photos are compared at this long side (averaging out noise)
    still_tolerance: float = 4.0  # a pixel is still within this many levels (0-255, any channel)
    texture_min_gradient: float = 12.0  # a pixel is textured with this grey gradient (Sobel)
    same_tripod_share: float = 0.25  # two photos share a tripod position when this share of
    # the pixels textured in both is identical (a ring's neighbours: 0.5-0.7; hand-held: < 0.02)
    background_repeats: int = 2  # a pixel of a ring photo is background when this many of
    # the ring's other photos show the same colour there (one more could be chance)
    min_group_photos: int = 3  # a ring has at least this many photos
    min_still_textured_share: float = 0.05  # a ring's still, textured pixels cover this share
    # of the frame (a wall and a table: 0.3-0.5) or the background is plain and harmless
    close_rel: float = 0.03  # holes in a photo's moving part up to this × the long side close
    # (product print that matched the background's colour by chance)
    margin_rel: float = 0.005  # the moving part grows by this × the long side, so features on
    # the product's outline keep their whole neighbourhood
    # For the masks stage (`sure_background`): the still room, less this × the long side (the
    # undistorted photos it segments moved a little from the working photos compared here)
    background_margin_rel: float = 0.015
    disc_distance_rel: float = 0.008  # sparse points this close to the ground plane (× the
    # camera distance) are the disc's (the masks stage keeps those above it for the product)
    # The disc's own colours are learnt where it lies this × the long side clear of the
    # product's points; only disc pixels of those colours are surely not the product
    disc_colour_clearance_rel: float = 0.06
    disc_colours: int = 4  # typical colours of the disc (its top, its marks, their edges)
    disc_colour_distance: float = 18.0  # Lab distance (lightness counted half: shade) within
    # which a pixel has the disc's colour (disc: 99 % within 18-25; a yellow bottle: 27 up)

    def __post_init__(self) -> None:
        if self.analysis_px < 32:
            raise InputError(f"analysis_px {self.analysis_px}: choose 32 px or more")
        if self.min_group_photos < 2:
            raise InputError("min_group_photos: a ring has at least 2 photos")
        if not 0 < self.same_tripod_share <= 1 or not 0 < self.min_still_textured_share <= 1:
            raise InputError("same_tripod_share and min_still_textured_share lie in (0, 1]")


@dataclass(frozen=True)
class TurntableFinding:
    """What the photos showed: the rings found, each photo's moving part (analysis size)."""

    rings: list[list[int]]  # photo indices of each turntable ring (a tripod position)
    still_share: list[float]  # per ring: share of the frame still in all its photos
    still_textured_share: list[float]  # per ring: ... and textured
    moving: dict[int, np.ndarray] = field(default_factory=dict)  # photo index -> (h, w) bool

    @property
    def detected(self) -> bool:
        return bool(self.rings)


def find_turntable(
    images: Sequence[np.ndarray], options: TurntableOptions | None = None
) -> TurntableFinding:
    """Turntable rings among `images` ((h, w, 3) uint8 each, at about `analysis_px`; photos of
    another size than their ring's are never in it)."""
    options = options or TurntableOptions()
    textured = [texture_mask(image, options.texture_min_gradient) for image in images]
    pairs = [
        (i, j)
        for i in range(len(images))
        for j in range(i + 1, len(images))
        if images[i].shape == images[j].shape
        and same_tripod(images[i], images[j], textured[i] & textured[j], options)
    ]
    rings, still_shares, textured_shares, moving = [], [], [], {}
    for group in connected_groups(len(images), pairs):
        if len(group) < options.min_group_photos:
            continue
        stack = np.stack([images[i] for i in group])
        agreeing = agreement_counts(stack, options.still_tolerance)  # (n, h, w)
        still = agreeing.min(axis=0) == len(group) - 1
        still_textured = still & textured[group[0]]
        if still_textured.mean() < options.min_still_textured_share:
            continue
        rings.append(group)
        still_shares.append(float(still.mean()))
        textured_shares.append(float(still_textured.mean()))
        # A pixel shows the background when enough other photos of the ring show the same:
        # the product, turning, rarely repeats itself at one place, the room always does
        # (a median background would take the product's colours where it stands most often).
        repeats = min(options.background_repeats, len(group) - 1)
        for index, count in zip(group, agreeing, strict=True):
            moving[index] = moving_part(count < repeats, options)
    return TurntableFinding(rings, still_shares, textured_shares, moving)


def agreement_counts(stack: np.ndarray, tolerance: float) -> np.ndarray:
    """(n, h, w) int: for each photo of the (n, h, w, 3) uint8 `stack` and pixel, how many of
    the other photos hold the same colour there (every channel within `tolerance`)."""
    counts = np.zeros(stack.shape[:3], np.int32)
    for i in range(len(stack)):
        for j in range(i + 1, len(stack)):
            same = same_colour(stack[i], stack[j], tolerance)
            counts[i] += same
            counts[j] += same
    return counts


def same_colour(a: np.ndarray, b: np.ndarray, tolerance: float) -> np.ndarray:
    """(h, w) bool: where the (h, w, 3) uint8 images `a` and `b` hold the same colour (every
    channel within `tolerance`)."""
    # (OpenCV's absdiff and inRange: a tenth of NumPy's int16 difference and max over channels)
    limit = (int(np.floor(tolerance)),) * 3
    return cv2.inRange(cv2.absdiff(a, b), (0, 0, 0), limit) > 0


def still_pixels(
    image: np.ndarray, others: Sequence[np.ndarray], options: TurntableOptions | None = None
) -> np.ndarray:
    """(h, w) bool: where the (h, w, 3) uint8 photo `image` shows what enough of `others`
    (photos from the same tripod position, the same size) show at the same place: the still
    room, as `find_turntable` tells it (`background_repeats`, `still_tolerance`).

    The photos are compared smoothed over 3 × 3 pixels, as the finder compares them small:
    sensor and JPEG noise of a few levels then keeps the room still (with noise of σ 2 levels
    added, the turntable mustard bottle's fidelity check read 27.9 dB smoothed, 27.4 not, 27.6
    without the noise), and a pixel beside the turning product takes some of its colour and
    is not still."""
    options = options or TurntableOptions()
    repeats = min(options.background_repeats, len(others))
    if repeats == 0:
        return np.zeros(image.shape[:2], bool)
    smoothed = cv2.blur(image, (3, 3))
    agreeing = np.zeros(image.shape[:2], np.int32)
    for other in others:
        agreeing += same_colour(smoothed, cv2.blur(other, (3, 3)), options.still_tolerance)
    return agreeing >= repeats


def texture_mask(image: np.ndarray, min_gradient: float) -> np.ndarray:
    """(h, w) bool: where the (h, w, 3) uint8 image has texture (grey Sobel gradient)."""
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3) / 4
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3) / 4
    return np.hypot(gx, gy) >= min_gradient


def same_tripod(
    a: np.ndarray, b: np.ndarray, textured: np.ndarray, options: TurntableOptions
) -> bool:
    """Whether (h, w, 3) images `a` and `b` were taken from one place: they agree on a share
    of the pixels `textured` ((h, w) bool) in both, and on enough of the frame (the edges of
    a plain product on plain paper agree too, but are a sliver of the frame)."""
    if not textured.any():
        return False
    same = same_colour(a, b, options.still_tolerance)
    agreeing = float((same & textured).sum())
    return bool(
        agreeing >= options.same_tripod_share * textured.sum()
        and agreeing >= options.min_still_textured_share * textured.size
    )


def connected_groups(count: int, pairs: Sequence[tuple[int, int]]) -> list[list[int]]:
    """The connected components of `count` nodes joined by `pairs`, each sorted, in order of
    their first node."""
    parent = list(range(count))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        parent[root(i)] = root(j)
    groups: dict[int, list[int]] = {}
    for i in range(count):
        groups.setdefault(root(i), []).append(i)
    return sorted(groups.values(), key=lambda group: group[0])


def moving_part(differs: np.ndarray, options: TurntableOptions) -> np.ndarray:
    """(h, w) bool: a photo's moving part from its pixels that differ from the background:
    specks (JPEG noise at edges) removed, chance holes closed, the outline given a margin."""
    size = max(differs.shape)
    mask = differs.astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    close = max(1, round(options.close_rel * size))
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, disc_kernel(close))
    return mask.astype(bool)


def feature_masks(
    finding: TurntableFinding, sizes: Sequence[tuple[int, int]], options: TurntableOptions
) -> list[np.ndarray]:
    """(h, w) uint8 masks, 255 where features count, for photos of (width, height) `sizes`:
    a turntable photo's moving part (at full size, with its margin); everything elsewhere."""
    masks = []
    for index, (width, height) in enumerate(sizes):
        if index not in finding.moving:
            masks.append(np.full((height, width), 255, np.uint8))
            continue
        small = finding.moving[index].astype(np.uint8) * 255
        full = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR) >= 128
        grow = max(1, round(options.margin_rel * max(width, height)))
        masks.append(grow_mask(full.astype(np.uint8) * 255, grow))
    return masks


def find_in_photos(
    paths: Sequence[Path], options: TurntableOptions | None = None
) -> tuple[TurntableFinding, list[tuple[int, int]]]:
    """Turntable rings among the photos at `paths`, and each photo's (width, height)."""
    options = options or TurntableOptions()
    images, sizes = [], []
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise InputError(f"cannot read {path}: is it a photo?")
        height, width = image.shape[:2]
        sizes.append((width, height))
        scale = options.analysis_px / max(width, height)
        small = (max(1, round(width * scale)), max(1, round(height * scale)))
        images.append(
            cv2.cvtColor(cv2.resize(image, small, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
        )
    return find_turntable(images, options), sizes


def message(finding: TurntableFinding, photos: int) -> str:
    """What a merchant is told about a turntable capture."""
    in_rings = sum(len(ring) for ring in finding.rings)
    still = float(np.average(finding.still_share, weights=[len(r) for r in finding.rings]))
    positions = len(finding.rings)
    return (
        f"turntable capture: the background stays still in {in_rings} of {photos} photos "
        f"({positions} tripod position{'s' if positions > 1 else ''}, {still:.0%} of each "
        "photo); it was left out when placing the photos, so only the product and the "
        "turntable decide where the camera was"
    )


def mask_still_background(
    workspace: Workspace, names: Sequence[str], options: TurntableOptions | None = None
) -> dict:
    """Look for turntable rings among the working photos `names`; when found, write a feature
    mask for every photo (workspace.mask_path: the moving part of ring photos, all of any
    other) and say so. Returns the "turntable" record for cameras.json and report.json."""
    options = options or TurntableOptions()
    if not options.detect:
        return {"detected": False, "checked": False}
    try:
        finding, sizes = find_in_photos([workspace.image_path(name) for name in names], options)
    except InputError as error:
        raise StageError("sfm", str(error)) from error
    if not finding.detected:
        return {"detected": False, "checked": True}
    workspace.masks_dir.mkdir(parents=True, exist_ok=True)
    for name, mask in zip(names, feature_masks(finding, sizes, options), strict=True):
        cv2.imwrite(str(workspace.mask_path(name)), mask)
    text = message(finding, len(names))
    logger.info(text)
    return {
        "detected": True,
        "checked": True,
        "rings": [[names[i] for i in ring] for ring in finding.rings],
        "still_share": [round(share, 4) for share in finding.still_share],
        "still_textured_share": [round(share, 4) for share in finding.still_textured_share],
        "message": text,
    }


def sure_background(
    workspace: Workspace,
    cameras: Sequence[Camera],
    xyz: np.ndarray,
    object_xyz: np.ndarray,
    region: ObjectRegion,
    options: TurntableOptions | None = None,
) -> dict[str, np.ndarray]:
    """name -> (h, w) bool: what is surely not the product in each undistorted photo of a
    turntable capture ({} for any other capture), for the masks stage to segment with.

    The still room (found again on the working photos: a stage reads only what its inputs
    say), shrunk by `background_margin_rel` for the undistortion that moved it, and only where
    it reaches the frame's edge and no ray meets the product's points (m, 3) `object_xyz`: the
    lights stay with the room, so a plain part of the product is lit alike at every turn and
    repeats at its place like the room does. And the disc: the outline of the sparse points
    (n, 3) `xyz` lying on the `region`'s ground plane (the disc turns with the product, so SfM
    placed it), where no ray can meet the product (outside the outline of its points and their
    feet on the ground), in the disc's own colours (a plain product's sides, which hold no
    points, stand over it too).

    Whatever is marked here is cut from the product's masks, and the visual hull of the
    fusion stage carves along every ray of every mask: a bite out of one mask is a tunnel
    through the model (on a plain mustard bottle: accuracy@1 % 0.79 with, 0.97 without).
    """
    options = options or TurntableOptions()
    if not options.detect or not cameras:
        return {}
    # (the undistorted photos where a workspace holds no working ones, as tests build them)
    paths = [
        workspace.image_path(camera.name)
        if workspace.image_path(camera.name).exists()
        else workspace.sfm_image_path(camera.name)
        for camera in cameras
    ]
    finding, sizes = find_in_photos(paths, options)
    if not finding.detected:
        return {}
    disc, solid = np.empty((0, 3)), object_xyz
    if region.ground is not None and len(xyz) and len(object_xyz):
        normal, offset = region.ground[:3], region.ground[3]
        height = xyz @ normal + offset
        near = np.linalg.norm(xyz - region.center, axis=1) < 0.6 * region.camera_distance
        disc = xyz[near & (np.abs(height) < options.disc_distance_rel * region.camera_distance)]
        feet = object_xyz - np.outer(object_xyz @ normal + offset, normal)
        solid = np.concatenate([object_xyz, feet])
    background = {}
    for index, (camera, (width, height)) in enumerate(zip(cameras, sizes, strict=True)):
        if index not in finding.moving or (height, width) != (camera.height, camera.width):
            continue  # not a ring photo, or not undistorted at its working size
        small = finding.moving[index].astype(np.uint8) * 255
        moving = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR) >= 128
        grow = max(1, round(options.background_margin_rel * max(width, height)))
        kernel = disc_kernel(grow)
        # Only the room round the product: a still patch it encloses is the product itself,
        # plain and lit alike at every turn (the lights stay with the room), so it repeats
        # like the room does; cut from every mask, it made tunnels through the visual hull.
        surely_not = reaching_border(cv2.dilate(moving.astype(np.uint8), kernel) == 0)
        if len(solid) >= 10 and region.ground is not None:
            meets = rays_meeting_first(camera, solid, region.ground)
            surely_not &= meets == 0  # nor is any of it seen through the product's points
        if len(disc) >= 10 and len(solid) >= 10 and region.ground is not None:
            disc_uv, disc_depth = camera.project(disc)
            if (disc_depth > 0).all():
                # grown to the disc's rim and edge, a little beyond its outermost points
                on_disc = cv2.dilate(_filled_hull(disc_uv, (height, width)), kernel, iterations=2)
                # (a wide margin here leaves a band of disc round the base in every mask,
                # which the visual hull then fills in as a skirt round the product)
                reach = max(1, round(options.margin_rel * max(width, height)))
                disc_only = (on_disc > 0) & (cv2.dilate(meets, disc_kernel(reach)) == 0)
                # The points' outline misses a plain product's sides where they stand over the
                # disc: only the disc's own colours there are surely not the product.
                clear = round(options.disc_colour_clearance_rel * max(width, height))
                # (further than `clear` from those rays: a distance transform, where dilating
                # with so wide a disc took most of the stage's time)
                away = cv2.distanceTransform((meets == 0).astype(np.uint8), cv2.DIST_L2, 5)
                learn = disc_only & (away > clear)
                photo = cv2.imread(str(workspace.sfm_image_path(camera.name)), cv2.IMREAD_COLOR)
                if photo is not None and photo.shape[:2] == (height, width):
                    disc_only &= like_colours(photo, learn, disc_only, options)
                surely_not |= disc_only
        background[camera.name] = surely_not
    return background


def reaching_border(mask: np.ndarray) -> np.ndarray:
    """(h, w) bool: the parts of the (h, w) bool `mask` that touch the frame's edge."""
    count, parts = cv2.connectedComponents(mask.astype(np.uint8), connectivity=4)
    edge = np.unique(np.concatenate([parts[0], parts[-1], parts[:, 0], parts[:, -1]]))
    keep = np.zeros(count, bool)
    keep[edge] = True
    keep[0] = False
    return keep[parts]


def like_colours(
    image: np.ndarray, learn: np.ndarray, judge: np.ndarray, options: TurntableOptions
) -> np.ndarray:
    """(h, w) bool: pixels of `judge` whose colour is within `disc_colour_distance` of one of
    `disc_colours` typical colours of the (h, w, 3) BGR `image` at the `learn` pixels (Lab,
    lightness weighted half, as the product's shadow darkens the disc); all of `judge` when
    too few pixels are there to learn from."""
    if learn.sum() < 50 * options.disc_colours:
        return judge.copy()
    weight = np.array([0.5, 1.0, 1.0], np.float32)
    lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB)
    samples = lab[learn].astype(np.float32) * weight
    if len(samples) > 20_000:  # plenty for a few colours, and k-means stays quick
        samples = samples[np.linspace(0, len(samples) - 1, 20_000).astype(int)]
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    cv2.setRNGSeed(0)  # the same masks every run
    _, _, centres = cv2.kmeans(
        samples, options.disc_colours, None, criteria, 2, cv2.KMEANS_PP_CENTERS
    )
    rows, cols = np.nonzero(judge)
    values = lab[rows, cols].astype(np.float32) * weight
    distance = np.min(np.linalg.norm(values[:, None, :] - centres[None], axis=2), axis=1)
    out = np.zeros(judge.shape, bool)
    out[rows, cols] = distance <= options.disc_colour_distance
    return out


def rays_meeting_first(
    camera: Camera, solid: np.ndarray, ground: np.ndarray, *, step_px: int = 4
) -> np.ndarray:
    """(h, w) uint8: 1 where the camera's ray meets the convex hull of the (n, 3) points
    `solid` before it meets the `ground` plane ([n, d]), judged every `step_px` pixels.

    What stands on the disc can hide the disc only along such rays; elsewhere in the disc's
    outline the photo shows the disc (in front of the product, or beside it)."""
    uv, depth = camera.project(solid)
    if camera.center @ ground[:3] + ground[3] > 0 and (depth > 0).all():
        # From above the ground, a ray meets the hull of what stands on it (on or above the
        # ground) before the ground: those rays fill the hull of the points in the photo
        # (exact, and a small fraction of the work of meeting every ray with every face)
        return _filled_hull(np.clip(uv, -1e6, 1e6), (camera.height, camera.width))
    from scipy.spatial import ConvexHull, QhullError

    try:
        faces = ConvexHull(solid).equations  # (f, 4): normal · x + offset <= 0 inside
    except (QhullError, ValueError):
        return np.ones((camera.height, camera.width), np.uint8)
    u, v = np.meshgrid(
        np.arange(step_px // 2, camera.width, step_px),
        np.arange(step_px // 2, camera.height, step_px),
    )
    pixels = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1)
    directions = pixels @ np.linalg.inv(camera.K).T @ camera.R  # world ray directions
    centre = camera.center
    # Along centre + s · direction: the ground at s_ground, the hull between s_in and s_out.
    along = directions @ ground[:3]
    with np.errstate(divide="ignore", invalid="ignore"):
        s_ground = np.where(along < 0, -(centre @ ground[:3] + ground[3]) / along, np.inf)
        rate = directions @ faces[:, :3].T  # (p, f)
        start = centre @ faces[:, :3].T + faces[:, 3]  # (f,): < 0 where the camera is inside
        cross = -start / rate
    s_in = np.where(rate < 0, cross, -np.inf).max(axis=1)
    s_out = np.where(rate > 0, cross, np.inf).min(axis=1)
    meets = (s_in <= s_out) & (s_out > 0) & (s_in < s_ground)
    small = meets.reshape(u.shape).astype(np.uint8)
    return cv2.resize(small, (camera.width, camera.height), interpolation=cv2.INTER_NEAREST)


def _filled_hull(uv: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) uint8: 1 inside the convex hull of the (n, 2) pixel positions `uv`."""
    mask = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(uv).astype(np.int32)), 1)
    return mask
