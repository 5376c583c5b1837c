"""Where the product is: its 3D region (above the table, inside the camera ring) and 2D masks.

A product capture is a ring of cameras looking at one thing. The point nearest to every optical
axis is the product's centre; sparse points near it, above the dominant ground/table plane, are
the product. Its bounding box, projected into each photo, bounds where dense stereo looks, and a
colour segmentation (GrabCut) seeded by the projected product points and the box refines that into
a product mask. On a table, the pixels that show it are found by its plane (a table pixel looks
the same where other photos see its point of the plane; `table_pixels`), so product parts coloured
like the grain or the backdrop are not given to the background. When the sparse points hold too
little of the table to tell it (SfM matched the product's features alone), its plane is found
where the photos' table patterns agree (`ground_by_photos`). The table itself is removed in 3D
by its plane, later, in fusion.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
from scipy import ndimage

from recon import mat, turntable
from recon.cameras import Camera, nearest_point_to_axes
from recon.errors import StageError
from recon.morphology import disc_kernel, grow_mask
from recon.progress import ProgressCallback
from recon.threads import each_photo
from recon.workspace import Workspace, write_json_atomic

if TYPE_CHECKING:
    from recon.scene import SceneOptions

logger = logging.getLogger(__name__)

NO_PRODUCT_ADVICE = (
    "could not find the product between the cameras: photograph it from all around, "
    "keeping it in the middle of every photo"
)
MIN_PRODUCT_POINTS = 10  # fewer sparse points on the product: its box comes from outlines
MIN_UP_AGREEMENT = 0.7  # photos whose "image up" directions average to a shorter vector than
# this were shot rolled: up is then the cameras' plane normal (camera_up)
SILHOUETTE_HULL_RESOLUTION = 64  # the coarse hull that boxes a product with no points
# ... from the space this share of the photos frame at least: the product stands in the middle
# of every photo, while space off to its side is framed by fewer, and there seedless outlines
# that took a pale backdrop (a white mug's lower ring: 3-4x its area) left it all hull.
SILHOUETTE_MIN_FRAMED_SHARE = 0.75
# ... and it stays hull outside this share of the outlines (rounded down): an outline that
# missed the product (the green side of an avocado on brown wood, segmented with no seeds)
# carved the whole product away, and the masks stage failed.
SILHOUETTE_OUTVOTED_SHARE = 0.1
PLANE_RANSAC_ITERATIONS = 2000  # planes tried per search for the table
GROUND_MAX_BELOW_SHARE = 0.02  # a plane with more of the sparse points below it is no ground
RANSAC_SCORED_POINTS = 1500  # ... each scored on about this many of the sparse points
GROUND_SWEEP_PHOTOS = 8  # photos whose table patterns place a table the sparse points miss
GROUND_SWEEP_POINTS = 4000  # ... each giving at most this many points of it
GROUND_SWEEP_MIN_POINTS = 200  # fewer agreeing points all told: no table there
RIM_EDGE_REL = 0.01  # the backdrop's colours are learnt this far (× the long side) in from the edge


@dataclass(frozen=True, kw_only=True)
class MaskOptions:
    """How the product is told apart from its surroundings."""

    box_margin: float = 0.12  # the product box grows by this fraction of its size on every side
    plane_distance_rel: float = 0.004  # RANSAC inlier distance, × median camera distance
    plane_max_tilt_deg: float = 30.0  # a ground plane's normal is within this of "up"
    plane_min_inliers: float = 0.12  # fraction of sparse points a ground plane must hold
    plane_min_level_inliers: float = 0.03  # ... when found as the densest level under the product
    ground_min_reach: float = 1.5  # ... which must spread this many times wider than the product
    segment: bool = True  # refine the box projection with colour segmentation (GrabCut)
    segment_px: int = 320  # GrabCut works at this long side (it is slow at full size)
    grabcut_iterations: int = 4
    grabcut_margin_rel: float = 0.03  # GrabCut sees the box and this × the long side round it
    rim_colours: int = 8  # typical background colours taken from each photo's rim
    outline_close_rel: float = 0.02  # close the product's outlines over this × the long side
    # GrabCut's small pixels keep the outline's mixed pixels: its masks were 1-3 px too wide
    # at 960 px, and so was the visual hull on a plain backdrop. At full size, each pixel near
    # the outline goes to the side whose colour it is nearer to (`refine_outline`).
    refine_band_rel: float = 0.005  # the outline moves out by up to this × the long side
    refine_trim_rel: float = 0.002  # ... and in by up to this (more lost a can's dark rim)
    refine_min_contrast: float = 12.0  # sides' colours nearer (8-bit Lab) tell nothing
    refine_share: float = 0.5  # product from this share of the way to the product's colour
    mask_dilate_rel: float = 0.015  # grow final masks by this × image size: never clip the product
    # Holes inside a product's mask smaller than this × its area are filled: the visual hull
    # carves along every ray of every mask, so a speck that segmentation lost (a barcode's
    # bars, a plain patch) is a tunnel through the model; a real opening (a mug's handle) is
    # larger and seen in many photos.
    max_hole_rel: float = 0.01
    # Larger holes are filled too where the backdrop's colours fill them pixel by pixel, but
    # their median colour lies more than this (8-bit Lab) beyond the backdrop's own spread
    # from its colours (`fill_tinted_holes`): a white armchair's front legs on pale paper,
    # 2.2 from its grey and lit alike, were holes between their shaded edges in all the photos
    # from the front half, so no visual hull held them; paper seen through an opening is the
    # paper's own colour. 0: larger holes stay open.
    tinted_hole_min: float = 1.0
    tinted_hole_share: float = 0.9  # ... and this share of their pixels has its colours
    # ... whose outlines may have gaps 2 × this × the long side wide (at segmentation size)
    tinted_hole_gap_rel: float = 0.0125
    # A part lit like the backdrop in a run of neighbouring photos (an armchair's white front
    # legs on pale paper, 2.2 Lab from its grey in the 9 photos from the front half, their
    # faces open to the paper, no holes) is lost from their masks, and from the visual hull
    # that each mask carves: fusion trims stereo to it on a plain backdrop. Where the masks of
    # all but this many photos hold a point of the product box, every photo's mask takes back
    # the tinted pixels round it (`recover_from_other_views`; plain backdrops only; 0: none).
    recover_max_dissent: int = 3
    recover_resolution: int = 96  # grid cells along the product box's longest side
    recover_median_px: int = 5  # tint judged by its median over this window (segmentation px)
    # ... and only where the pixels taken back are wider than twice this (segmentation px):
    # the tinted halo round a product's outline (its mixed pixels and the contact shadow)
    # stays out. (Without: armchair 26.8 dB but accuracy@1 % 0.904 -> 0.885, and the cracker
    # box on plain paper, its masks 0.8 % wider, 29.35 -> 28.81 dB, F@0.5 % 0.990 -> 0.982)
    recover_open_px: int = 1
    # The box comes from the sparse points, which a plain product has only where it is printed
    # (a bottle's logo): when the segmented product runs into the box's outline in the photos,
    # the box grows and the photos are segmented again.
    box_touch_max: float = 0.02  # product along the box outline, × the long side, in more
    box_touch_share: float = 0.25  # than this share of the photos: a side the box cuts off
    # shows in the photos that see it edge-on, not in the median one (an avocado on a table
    # at 1,920 px, whose cut face held few points: 11 of 24 photos, 2-60 % of the long side;
    # preview F@1 % 0.897 -> 0.961, PSNR 24.0 -> 29.1 dB)
    box_growth: float = 0.35  # each growth adds this × the box's size on every side but the base
    box_growths: int = 3  # at most this many growths
    box_growth_min_gain: float = 0.03  # a growth that widened the masks by more is tried again
    # On a table, GrabCut's background colours include the table's, so a product part coloured
    # like its grain (a black holder on dark wood) or like the backdrop (a pale sole) went to
    # the background. The table is told apart by its plane instead (`table_pixels`): a pixel
    # showing it looks the same, patch for patch, where photos further round see its point of
    # the plane; one showing the product hides that point and does not.
    table_plane: bool = True  # False: tables are told apart by colour alone
    table_views_deg: tuple[float, float] = (30.0, 100.0)  # photos compared, by the angle
    # between viewing directions: nearer ones see a part low over the table (a sole) almost
    # where its table point would be, and alike; further ones see the table's far side
    table_max_views: int = 10  # at most this many of them, spread over the range
    # Photos nearer round, down to this angle, tell what covers the table (not what the table
    # is): a cap high over the table's far part hides table that photos 30 deg round rarely
    # hold in their frames
    table_covered_min_deg: float = 15.0
    table_min_views: int = 2  # a table pixel looks alike in this many (others see the product)
    table_window_px: int = 5  # patches compared at the segmentation size
    table_min_ncc: float = 0.85  # normalised cross-correlation of grey patches to look alike
    # A patch of table still agrees when an edge crosses its side, and a product's foot lies
    # on the plane, so agrees too: the recognised table reached 2 px (segmentation size) up a
    # bottle's black foot on dark wood, and GrabCut had to give those to the background (7 px
    # of its outline missing at 960 px). Next to what stands on it over the product's
    # footprint, the table is sure background only this far in from its recognised edge.
    table_sure_inset_px: int = 2
    table_max_colour_difference: float = 8.0  # ... and their colours within this (8-bit Lab)
    table_min_texture: float = 2.0  # grey std in the patch: plain patches prove nothing
    table_close_rel: float = 0.015  # gaps in the table (plain grain) closed over this × long side
    table_min_share: float = 0.005  # table parts smaller than this × the photo are ignored
    table_max_reach: float = 3.0  # the table's extent counts to this × the camera distance
    table_min_colour_change: float = 25.0  # a table point seen in another colour (8-bit Lab)
    table_unlike_ncc: float = -1.0  # ... or in another pattern (a plain cap over grain)
    # When the sparse points show no table (SfM kept the product's features alone: a plain
    # armchair over repeating grain), the plane where the photos' table patterns agree is the
    # table if a median photo recognises this share of its pixels by it (the armchair's: 29 %)
    table_found_min_share: float = 0.05
    # A product's part lying on the table (an armchair's white runner tube) lies on its plane
    # too, and its patches, mostly grain, agree where other photos see them: what the photo
    # recognises is table only where its colour is one of the recognised table's own
    table_own_colours: bool = True
    # The printed mat (recon.mat), which the photos read, lies on the table in no table
    # colour (white paper, black print): what is not the table there does not stand on it.
    # Taken for the product, a cereal box's 16 photos on an A4 mat grew its box threefold and
    # the hull closed the mat into its base (standard, accuracy@1 % 0.79 -> 0.99).
    find_mat: bool = True
    mat_margin_rel: float = 0.02  # the page's outline grows by this × its long side
    # Table hidden from the photos further round (under an armchair's seat) looks covered
    # there; it stands on the table as product only where its colour is not the table's
    table_colours_covered: bool = True
    # Off the table, pixels of a plain backdrop's own colours (`rim_likeness`) are surely
    # background: GrabCut gave the product a grey halo of backdrop, up to 10 px at 960 px,
    # round a pale bottle's shoulders and cap and along the table's far edge (its share of
    # mask outline more than 4 px outside the true one 0.126 -> 0.074, avocado 0.070 -> 0.052)
    backdrop_beyond_table: bool = True
    # A scene (a space filmed inside-out, recon.scene) has no product: its region is the whole
    # space, its ground the floor, and no photo gets a mask. None: a product capture.
    scene: SceneOptions | None = None


@dataclass(frozen=True)
class ObjectRegion:
    """The product's place in the SfM frame."""

    center: np.ndarray  # (3,) point nearest to all optical axes
    up: np.ndarray  # (3,) unit vector away from the ground
    box_corners: np.ndarray  # (8, 3) product box, grown by the margin, bottom on the ground
    ground: np.ndarray | None  # (4,) plane [n, d] with n·x + d = 0, n = up; None if no table seen
    camera_distance: float  # median distance from cameras to the centre
    # A flipped-object capture (recon.passes): the table under the product in each photo's
    # pass, by photo name (None: no table seen); `ground` is the upright pass's.
    ground_by_photo: dict[str, np.ndarray | None] | None = None

    @property
    def plain_one_pass(self) -> bool:
        """No table seen, in a capture of one pass (a flipped capture's passes each have
        their own ground, ground_by_photo)."""
        return self.ground is None and self.ground_by_photo is None

    def for_photo(self, name: str) -> ObjectRegion:
        """The region as one photo sees it: its own pass's table as the ground."""
        if self.ground_by_photo is None or name not in self.ground_by_photo:
            return self
        return dataclasses.replace(self, ground=self.ground_by_photo[name], ground_by_photo=None)

    def to_json(self) -> dict:
        data = {
            "center": self.center.tolist(),
            "up": self.up.tolist(),
            "box_corners": self.box_corners.tolist(),
            "ground": None if self.ground is None else self.ground.tolist(),
            "camera_distance": self.camera_distance,
        }
        if self.ground_by_photo is not None:
            data["ground_by_photo"] = {
                name: None if plane is None else plane.tolist()
                for name, plane in self.ground_by_photo.items()
            }
        return data

    @classmethod
    def from_json(cls, data: dict) -> ObjectRegion:
        ground = data.get("ground")
        by_photo = data.get("ground_by_photo")
        return cls(
            center=np.asarray(data["center"], dtype=np.float64),
            up=np.asarray(data["up"], dtype=np.float64),
            box_corners=np.asarray(data["box_corners"], dtype=np.float64),
            ground=None if ground is None else np.asarray(ground, dtype=np.float64),
            camera_distance=float(data["camera_distance"]),
            ground_by_photo=None
            if by_photo is None
            else {
                name: None if plane is None else np.asarray(plane, dtype=np.float64)
                for name, plane in by_photo.items()
            },
        )


@dataclass(frozen=True)
class MaskResult:
    region: ObjectRegion
    object_points: int
    mean_mask_fraction: float
    seconds: float


def run(
    workspace: Workspace,
    options: MaskOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> MaskResult:
    """Find the product region, write it to region.json and a mask per photo."""
    options = options or MaskOptions()
    start = time.perf_counter()
    cameras = workspace.read_sfm_cameras()
    points = workspace.read_sfm_points()
    if options.scene is not None:
        from recon.scene import scene_region  # scene imports this module

        region = scene_region(cameras, points, options.scene)
        write_json_atomic(workspace.region_path, region.to_json())
        shutil.rmtree(workspace.masks_dir, ignore_errors=True)  # every pixel counts
        if progress:
            progress("masks", 1.0, "scene: no masks")
        return MaskResult(region, len(points["xyz"]), 1.0, time.perf_counter() - start)
    region, object_mask = find_object_region(cameras, points, options)
    object_xyz = points["xyz"][object_mask]

    def read(camera: Camera) -> np.ndarray:
        image = cv2.imread(str(workspace.sfm_image_path(camera.name)), cv2.IMREAD_COLOR)
        if image is None:
            raise StageError("masks", f"cannot read {workspace.sfm_image_path(camera.name)}")
        return image

    images = list(each_photo(read, cameras))
    mat_page = None
    if options.find_mat and (found := mat.find_mat(cameras, images).fit) is not None:
        mat_page = found.page_corners()
    tables = table_pixels(cameras, images, region, options, mat_page=mat_page)
    if region.plain_one_pass:
        region, object_mask, tables = table_by_photos(cameras, images, points, region,
                                                      object_mask, tables, options,
                                                      mat_page=mat_page)  # fmt: skip
        object_xyz = points["xyz"][object_mask]
    if len(object_xyz) < MIN_PRODUCT_POINTS:
        # A plain product (a white mug on a table) leaves SfM nothing to match on itself: only
        # the table holds points. Its outline in every photo still tells where it is; the
        # photos are then segmented in its box with no seeds (seeds deep inside it made
        # GrabCut drop a mug's handle).
        region = silhouette_region(cameras, images, region, options, tables)
        object_xyz = np.empty((0, 3))
        logger.info("the product has no sparse points of its own: its box came from outlines")
    # A turntable's still room and its disc are surely not the product (recon.turntable)
    surely_not = turntable.sure_background(workspace, cameras, points["xyz"], object_xyz, region)

    def segment(camera: Camera, image: np.ndarray, table: TableView | None, box: ObjectRegion):
        return product_mask(
            image, camera, box, object_xyz, options, surely_not.get(camera.name), table=table
        )

    previous_area = 0.0
    for growth in range(options.box_growths + 1):
        masks, touching = [], []
        segmented = each_photo(segment, cameras, images, tables, [region] * len(cameras))
        for index, (camera, (mask, touch)) in enumerate(zip(cameras, segmented, strict=True)):
            masks.append(mask)
            touching.append(touch)
            if progress:  # each pass its share of the bar, as if all the growths were needed
                done = (growth + (index + 1) / len(cameras)) / (options.box_growths + 1)
                progress("masks", done, camera.name)
        # Segmentation may stop at the box's edge without touching it (a bottle's cap cut by
        # the box), so after a growth the box grows again while the masks keep growing too.
        area = float(np.mean([mask.mean() for mask in masks]))
        grew = growth > 0 and area > previous_area * (1 + options.box_growth_min_gain)
        previous_area = area
        cut = box_cuts_product(touching, options, from_outlines=len(object_xyz) == 0)
        if growth == options.box_growths or (not cut and not grew):
            break
        logger.info(
            "the product runs into its box in %d of %d photos: box grown",
            np.sum(np.array(touching) > options.box_touch_max), len(touching),
        )  # fmt: skip
        region = dataclasses.replace(
            region, box_corners=grown_box(region.box_corners, region.up, region.ground,
                                          options.box_growth),
        )  # fmt: skip
    if options.recover_max_dissent > 0 and region.plain_one_pass:
        masks = recover_from_other_views(cameras, images, masks, region, options)
    if progress:
        progress("masks", 1.0, "")
    write_json_atomic(workspace.region_path, region.to_json())
    workspace.masks_dir.mkdir(parents=True, exist_ok=True)
    for camera, mask in zip(cameras, masks, strict=True):
        cv2.imwrite(str(workspace.mask_path(camera.name)), mask.astype(np.uint8) * 255)
    return MaskResult(
        region,
        int(object_mask.sum()),
        float(np.mean([mask.mean() for mask in masks])),
        time.perf_counter() - start,
    )


def box_cuts_product(
    touching: list[float], options: MaskOptions, *, from_outlines: bool = False
) -> bool:
    """Whether the product runs into its box (`product_mask`'s second value, each photo's)
    in more than `box_touch_share` of the photos; in more than half of them for a box drawn
    round the product's outlines (`silhouette_region`), which the product meets where its
    outline was widest (a white mug on a table, at a quarter: 3-4× its size, grown twice)."""
    share = 0.5 if from_outlines else options.box_touch_share
    return float(np.mean(np.array(touching) > options.box_touch_max)) > share


def find_object_region(
    cameras: list[Camera],
    points: dict[str, np.ndarray],
    options: MaskOptions,
    *,
    ground: np.ndarray | None = None,
) -> tuple[ObjectRegion, np.ndarray]:
    """The product region and a (n,) bool mask of the sparse points that belong to the product.
    `ground`: the table's plane [n, d] when known (else fitted to the sparse points)."""
    xyz = points["xyz"]
    center = nearest_point_to_axes(cameras)
    distances = np.array([np.linalg.norm(c.center - center) for c in cameras])
    camera_distance = float(np.median(distances))
    up = camera_up(cameras)
    if ground is None:
        ground = fit_ground_plane(xyz, center, up, camera_distance, options)
    if ground is not None:
        up = ground[:3]
    # Product points: near the centre (the product fills part of each frame, never all of it),
    # above the ground, and seen by enough photos to be real.
    near = np.linalg.norm(xyz - center, axis=1) < 0.6 * camera_distance
    keep = near & (points["track"] >= 3)
    if ground is not None:
        keep &= xyz @ ground[:3] + ground[3] > options.plane_distance_rel * camera_distance * 2
    if keep.sum() < MIN_PRODUCT_POINTS:  # a plain product: the box every photo frames whole
        box_corners = framed_box(cameras, center, up, ground)
        return ObjectRegion(center, up, box_corners, ground, camera_distance), np.zeros_like(keep)
    # Trim far-flung points (background glimpsed between views) robustly around their median.
    spread = np.linalg.norm(xyz - np.median(xyz[keep], axis=0), axis=1)
    keep &= spread <= 2.5 * np.percentile(spread[keep], 90)
    box_corners = product_box(xyz[keep], up, ground, options.box_margin)
    return ObjectRegion(center, up, box_corners, ground, camera_distance), keep


def table_by_photos(
    cameras: list[Camera],
    images: list[np.ndarray],
    points: dict[str, np.ndarray],
    region: ObjectRegion,
    object_mask: np.ndarray,
    tables: list[TableView | None],
    options: MaskOptions,
    *,
    mat_page: np.ndarray | None = None,
) -> tuple[ObjectRegion, np.ndarray, list[TableView | None]]:
    """The region, product points and `table_pixels` with the table the photos agree on
    (`ground_by_photos`) when the sparse points showed none, if it is one: a plane whose
    patches a median photo recognises over `table_found_min_share` of its pixels. Else the
    arguments as they came. `mat_page`: as for table_pixels."""
    if not (options.segment and options.table_plane):
        return region, object_mask, tables
    ground = ground_by_photos(cameras, images, points["xyz"], region, options)
    if ground is None:
        return region, object_mask, tables
    found, found_mask = find_object_region(cameras, points, options, ground=ground)
    found_tables = table_pixels(cameras, images, found, options, mat_page=mat_page)
    shares = [0.0 if view is None else float(view.table.mean()) for view in found_tables]
    if np.median(shares) < options.table_found_min_share or found_mask.sum() < MIN_PRODUCT_POINTS:
        logger.info("a plane under the product is no table (median photo recognises %.1f %%)",
                    100 * np.median(shares))  # fmt: skip
        return region, object_mask, tables
    logger.info("the table came from the photos: a median photo recognises %.0f %% of it",
                100 * np.median(shares))  # fmt: skip
    return found, found_mask, found_tables


def ground_by_photos(
    cameras: list[Camera],
    images: list[np.ndarray],
    xyz: np.ndarray,
    region: ObjectRegion,
    options: MaskOptions,
) -> np.ndarray | None:
    """[n, d] of the table under a product whose sparse points hold too little of it to be
    told from the product (or None): the plane of the densest level at the product's foot,
    moved and tilted onto the plane where the photos' table patterns agree (`sweep_ground`).

    SfM on a plain product over repeating grain matches features on the product alone
    (sfm.place_from_product), which keeps only the table seen round the product's foot and
    between its legs: an armchair's table held 10 % of its points, all within its footprint,
    which fit_ground_plane takes for a ring on the product. That plane was 0.5 deg and 0.1 %
    of the camera distance off the true one, and a table patch then matched no photo further
    round at the segmentation size (`table_pixels`); swept onto the photos' agreement it did.
    Whether that plane is a table is for the caller to check (how much of the photos it
    recognises): the level might be a product's base ring on plain paper."""
    distance = options.plane_distance_rel * region.camera_distance
    rng = np.random.default_rng(0)
    height = (xyz - region.center) @ region.up
    below = np.flatnonzero(height < 0)
    if len(below) < max(30, options.plane_min_level_inliers * len(xyz)):
        return None
    levels = np.floor(height[below] / distance).astype(int)
    values, counts = np.unique(levels, return_counts=True)
    level = values[np.argmax(counts)]
    band = below[np.abs(levels - level) <= 2]
    if len(band) < max(30, options.plane_min_level_inliers * len(xyz)):
        return None
    plane, _, _ = _plane_under(xyz, band, region.center, region.up, distance, rng, options)
    if plane is None:
        return None
    views = [segmentation_view(image, camera, options.segment_px) for camera, image
             in zip(cameras, images, strict=True)]  # fmt: skip
    greys = [cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32) for small, _ in views]
    directions = np.array([camera.R[2] for camera in cameras])
    angles = np.degrees(np.arccos(np.clip(directions @ directions.T, -1.0, 1.0)))
    pairs = []
    for index in range(0, len(cameras), max(1, len(cameras) // GROUND_SWEEP_PHOTOS)):
        usable = np.flatnonzero(angles[index] >= options.table_views_deg[0])
        if len(usable):
            partner = usable[np.argmin(angles[index, usable])]
            pairs.append(((greys[index], views[index][1]), (greys[partner], views[partner][1])))
    if not pairs:
        return None
    reach = 2 * distance
    for steps in (16, 8):  # coarse, then fine about the coarse plane
        swept = sweep_ground(pairs, plane, reach, steps, options)
        if len(swept) < GROUND_SWEEP_MIN_POINTS:
            return None
        step = 2 * reach / steps
        fitted, inliers = ransac_plane(swept, step, PLANE_RANSAC_ITERATIONS, rng)
        if len(inliers) < GROUND_SWEEP_MIN_POINTS:
            return None
        if fitted[:3] @ region.up < 0:
            fitted = -fitted
        tilt = np.degrees(np.arccos(np.clip(fitted[:3] @ region.up, -1, 1)))
        if tilt > options.plane_max_tilt_deg or fitted[:3] @ region.center + fitted[3] <= 0:
            return None
        plane, reach = fitted, 2 * step
    return plane


def sweep_ground(
    pairs: list[tuple[tuple[np.ndarray, Camera], tuple[np.ndarray, Camera]]],
    plane: np.ndarray,
    reach: float,
    steps: int,
    options: MaskOptions,
) -> np.ndarray:
    """(m, 3) points where the photos of `pairs` ((grey (h, w) float32, camera) of a photo and
    of one further round) agree on a plane parallel to `plane` [n, d], moved along n by up to
    `reach` either way in `steps` steps: each textured pixel's best-matching plane, where its
    patch matches (normalised cross-correlation) better than `table_min_ncc` at a plane
    inside the sweep (at its ends the match may lie beyond)."""
    window = (options.table_window_px, options.table_window_px)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    offsets = np.linspace(-reach, reach, steps + 1)
    found = []
    for (grey, camera), (other_grey, other) in pairs:
        height, width = grey.shape
        mean = cv2.blur(grey, window)
        variance = cv2.blur(grey * grey, window) - mean * mean
        best = np.full((height, width), -1.0, np.float32)
        best_at = np.zeros((height, width), np.int32)
        for at, offset in enumerate(offsets):
            moved = np.append(plane[:3], plane[3] - offset)  # offset along n, up from the table
            homography = plane_homography(camera, other, moved)
            warped = cv2.warpPerspective(other_grey, homography, (width, height), flags=flags)
            seen = cv2.warpPerspective(np.ones_like(other_grey, np.uint8), homography,
                                       (width, height), flags=flags) > 0  # fmt: skip
            other_mean = cv2.blur(warped, window)
            other_variance = cv2.blur(warped * warped, window) - other_mean * other_mean
            covariance = cv2.blur(grey * warped, window) - mean * other_mean
            ncc = covariance / np.sqrt(np.maximum(variance * other_variance, 1e-6))
            ncc[~seen | (other_variance <= options.table_min_texture**2)] = -1.0
            better = ncc > best
            best[better], best_at[better] = ncc[better], at
        good = (best > options.table_min_ncc) & (variance > options.table_min_texture**2)
        good &= (best_at > 0) & (best_at < steps)
        rows, cols = np.nonzero(good)
        if len(rows) == 0:
            continue
        if len(rows) > GROUND_SWEEP_POINTS:  # evenly thinned: RANSAC needs no more
            pick = np.linspace(0, len(rows) - 1, GROUND_SWEEP_POINTS).astype(int)
            rows, cols = rows[pick], cols[pick]
        rays = np.stack([cols, rows, np.ones_like(cols)], axis=-1).astype(np.float64)
        rays = rays @ np.linalg.inv(camera.K).T @ camera.R
        offset = offsets[best_at[rows, cols]]
        along = -(plane[:3] @ camera.center + plane[3] - offset) / (rays @ plane[:3])
        ahead = along > 0
        found.append(camera.center + along[ahead, None] * rays[ahead])
    return np.concatenate(found) if found else np.empty((0, 3))


def framed_box(
    cameras: list[Camera], center: np.ndarray, up: np.ndarray, ground: np.ndarray | None
) -> np.ndarray:
    """(8, 3) corners of the up-aligned cube around `center` whose sphere every photo frames
    whole (a product photographed all round sits inside it), standing on the `ground`."""
    radius = np.inf
    for camera in cameras:
        uv, depth = camera.project(center[None])
        if depth[0] <= 0:
            continue
        to_edge = min(uv[0, 0], uv[0, 1], camera.width - uv[0, 0], camera.height - uv[0, 1])
        radius = min(radius, max(to_edge, 0.0) * depth[0] / camera.K[0, 0])
    if not np.isfinite(radius) or radius <= 0:
        raise StageError("masks", NO_PRODUCT_ADVICE)
    axes = up_aligned_axes(up)
    low, high = center @ axes.T - radius, center @ axes.T + radius
    if ground is not None:
        low[1] = -ground[3]
    corners = np.array(
        [[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])]
    )
    return corners @ axes


def silhouette_region(
    cameras: list[Camera],
    images: list[np.ndarray],
    region: ObjectRegion,
    options: MaskOptions,
    tables: list[np.ndarray | None] | None = None,
) -> ObjectRegion:
    """`region` with the box of a product that has no sparse points of its own: every photo
    segmented inside `region`'s box with no seeds, the outlines carved into a coarse visual
    hull, the box fitted around it. `tables`: each photo's sure table (`table_pixels`)."""
    from recon import hull  # hull imports this module

    tables = tables or [None] * len(cameras)

    def outline(camera: Camera, image: np.ndarray, table: TableView | None) -> np.ndarray:
        mask = product_mask(image, camera, region, np.empty((0, 3)), options, table=table)[0]
        return mask.astype(np.uint8) * 255

    masks = list(each_photo(outline, cameras, images, tables))
    field = hull.silhouette_field(
        cameras,
        masks,
        region.box_corners,
        region.up,
        resolution=SILHOUETTE_HULL_RESOLUTION,
        min_judging_views=max(
            hull.MIN_JUDGING_VIEWS, math.ceil(SILHOUETTE_MIN_FRAMED_SHARE * len(cameras))
        ),
        outvoted_views=int(SILHOUETTE_OUTVOTED_SHARE * len(cameras)),
    )
    inside = np.argwhere(field.values > 0)
    if len(inside) < MIN_PRODUCT_POINTS:
        raise StageError("masks", NO_PRODUCT_ADVICE)
    xyz = (inside * field.voxel + field.origin) @ field.axes
    if region.ground is not None:
        xyz = xyz[xyz @ region.ground[:3] + region.ground[3] > field.voxel]
    if len(xyz) < MIN_PRODUCT_POINTS:
        raise StageError("masks", NO_PRODUCT_ADVICE)
    # Hull cells are no stray matches: a mug's handle is a sliver of them, and must stay in.
    box_corners = product_box(xyz, region.up, region.ground, options.box_margin, trim_percent=0)
    return dataclasses.replace(region, box_corners=box_corners)


def camera_up(cameras: list[Camera]) -> np.ndarray:
    """(3,) unit vector away from the ground: the photos' mean "image up" (mean_camera_up)
    where they agree on it, else the normal of the plane the cameras lie in, on the side
    they look down from.

    The Middlebury temple and dino rings were shot with the camera rolled a quarter turn and
    more: their photos' ups pointed round the ring and averaged to a vector 0.04-0.44 long,
    90° from up, and the temple's product region stood on its side (its masks matched the
    model's outline 18 %, so the run failed its quality check). Upright photos agree to
    0.86-0.87 (the synthetic rings, 20-50° from level).
    """
    ups = np.array([-camera.R[1] for camera in cameras])
    agreement = np.linalg.norm(ups.sum(axis=0)) / len(ups)
    if agreement >= MIN_UP_AGREEMENT or len(cameras) < 3:
        return mean_camera_up(cameras)
    centres = np.array([camera.center for camera in cameras])
    normal = np.linalg.svd(centres - centres.mean(axis=0))[2][2]
    looking = np.array([camera.R[2] for camera in cameras]).sum(axis=0) @ normal
    if abs(looking) > 1e-3 * len(cameras):  # photos look down on the product
        return normal if looking < 0 else -normal
    return normal if normal @ ups.sum(axis=0) >= 0 else -normal


def mean_camera_up(cameras: list[Camera]) -> np.ndarray:
    """(3,) unit vector: the average of the photos' "image up" directions in the world.

    Photos are mostly taken upright, so this points away from the ground; the ring's plane
    normal would be as good for a level ring, but not for tilted hand-held captures.
    """
    ups = np.array([-camera.R[1] for camera in cameras])
    mean = ups.sum(axis=0)
    return mean / np.linalg.norm(mean)


def fit_ground_plane(
    xyz: np.ndarray, center: np.ndarray, up: np.ndarray, scale: float, options: MaskOptions
) -> np.ndarray | None:
    """[n, d] of a table/ground plane under the product (n along `up`), or None.

    First the biggest planes of the sparse points (the biggest may be a box face: a few are
    tried); then, since a well-printed product can hold most points (a soup can's label left
    its textured table 6 % of them, and RANSAC found only vertical slabs of the can), the
    densest level below the centre, kept only if it reaches well beyond the product's
    footprint, as a table does and a horizontal ring on the product does not.
    """
    if len(xyz) < 50:
        return None
    # Seeded and single-threaded: open3d's segment_plane draws in threads, and the same points
    # gave another table (and masks missing 0.1 % or 9.6 % of a bottle) from run to run.
    rng = np.random.default_rng(0)
    distance = options.plane_distance_rel * scale
    remaining = np.arange(len(xyz))
    for _ in range(3):
        if len(remaining) < 50:
            break
        plane, count, inliers = _plane_under(xyz, remaining, center, up, distance, rng, options)
        if plane is not None and count >= options.plane_min_inliers * len(xyz):
            return plane
        remaining = np.delete(remaining, inliers)
    return _level_under(xyz, center, up, distance, rng, options)


def _plane_under(
    xyz: np.ndarray,
    indices: np.ndarray,
    center: np.ndarray,
    up: np.ndarray,
    distance: float,
    rng: np.random.Generator,
    options: MaskOptions,
) -> tuple[np.ndarray | None, int, np.ndarray]:
    """RANSAC's biggest plane among the points `indices` of `xyz`: ([n, d] when it can be the
    ground, else None; inlier count; the inliers as indices of `indices`).

    The ground is level (within `plane_max_tilt_deg` of `up`), below the centre, and under
    the whole product: a plane with more than GROUND_MAX_BELOW_SHARE of all the points below
    it is on the product. A plain shoe seen from above only (its upper ring) left no point on
    the paper, and its biggest level plane ran along its side with 37 % of the points below
    it: the table cut the shoe in half and the model was its upper half (outline 45 %,
    refused). Tables found in the benchmark's captures have 0-1.4 % below them."""
    plane, inliers = ransac_plane(xyz[indices], distance, PLANE_RANSAC_ITERATIONS, rng)
    normal, offset = plane[:3], plane[3]
    if normal @ up < 0:
        normal, offset = -normal, -offset
    tilt = np.degrees(np.arccos(np.clip(normal @ up, -1, 1)))
    ground = (
        tilt <= options.plane_max_tilt_deg
        and normal @ center + offset > 0
        and np.mean(xyz @ normal + offset < -2 * distance) <= GROUND_MAX_BELOW_SHARE
    )
    return (np.append(normal, offset) if ground else None), len(inliers), inliers


def ransac_plane(
    xyz: np.ndarray,
    distance: float,
    iterations: int,
    rng: np.random.Generator,
    probability: float = 0.9999,
) -> tuple[np.ndarray, np.ndarray]:
    """The plane holding the most of the (n, 3) points `xyz` (n >= 3) within `distance`:
    ((4,) unit [n, d] with n·x + d = 0, refit by least squares to its points; (k,) indices
    of its points). Up to `iterations` planes through 3 points drawn from `rng` are tried,
    fewer once a plane that holds many points is surely among them (`probability`)."""
    samples = rng.integers(0, len(xyz), (iterations, 3))
    a, b, c = xyz[samples[:, 0]], xyz[samples[:, 1]], xyz[samples[:, 2]]
    normals = np.cross(b - a, c - a)
    lengths = np.linalg.norm(normals, axis=1)
    valid = lengths > 1e-12
    normals, anchors = normals[valid] / lengths[valid, None], a[valid]
    offsets = -(normals * anchors).sum(axis=1)
    # Planes are scored on at most RANSAC_SCORED_POINTS of the points, evenly picked (a
    # plane's share shows as well in them), in float32 about their middle: a fraction of the
    # work, and distances of a few millimetres stay exact to far below one
    middle = xyz.mean(axis=0)
    local = (xyz[:: max(1, len(xyz) // RANSAC_SCORED_POINTS)] - middle).astype(np.float32)
    local_offsets = (offsets + normals @ middle).astype(np.float32)
    normals32 = normals.astype(np.float32)
    best, best_count, chunk = 0, -1, 64
    for start in range(0, len(normals), chunk):  # chunks keep the (points, planes) table small
        near = np.abs(
            local @ normals32[start : start + chunk].T + local_offsets[start : start + chunk]
        )
        counts = (near < distance).sum(axis=0)
        top = int(np.argmax(counts))
        if counts[top] > best_count:
            best, best_count = start + top, int(counts[top])
        # as open3d's segment_plane: enough draws to have hit 3 of its points at least once
        share = best_count / len(local)
        if share >= 1 or (
            share > 0 and start + chunk >= np.log(1 - probability) / np.log(1 - share**3)
        ):
            break
    if best_count < 0:  # every sample degenerate (all points on one line)
        return np.array([0.0, 0.0, 1.0, -float(xyz[0, 2])]), np.arange(0)
    plane = np.append(normals[best], offsets[best])
    inliers = np.flatnonzero(np.abs(xyz @ plane[:3] + plane[3]) < distance)
    for _ in range(2):  # refit to the inliers, which the refit plane then gathers again
        if len(inliers) < 3:
            break
        centroid = xyz[inliers].mean(axis=0)
        normal = np.linalg.svd(xyz[inliers] - centroid, full_matrices=False)[2][2]
        refit = np.append(normal, -normal @ centroid)
        refit_inliers = np.flatnonzero(np.abs(xyz @ refit[:3] + refit[3]) < distance)
        if len(refit_inliers) < len(inliers):
            break
        plane, inliers = refit, refit_inliers
    return plane, inliers


def _level_under(
    xyz: np.ndarray,
    center: np.ndarray,
    up: np.ndarray,
    distance: float,
    rng: np.random.Generator,
    options: MaskOptions,
) -> np.ndarray | None:
    """A ground plane through one of the densest height levels below the centre, or None."""
    height = (xyz - center) @ up
    below = np.flatnonzero(height < 0)
    if len(below) < 50:
        return None
    levels = np.floor(height[below] / distance).astype(int)
    values, counts = np.unique(levels, return_counts=True)
    tried: list[int] = []
    for level in values[np.argsort(-counts)]:  # densest first: a printed band, then the table
        if len(tried) == 3:
            break
        if any(abs(level - other) <= 2 for other in tried):
            continue
        tried.append(level)
        band = below[np.abs(levels - level) <= 2]
        if len(band) < max(30, options.plane_min_level_inliers * len(xyz)):
            break
        plane = _wide_plane(xyz, band, center, up, distance, rng, options)
        if plane is not None:
            return plane
    return None


def _wide_plane(
    xyz: np.ndarray,
    band: np.ndarray,
    center: np.ndarray,
    up: np.ndarray,
    distance: float,
    rng: np.random.Generator,
    options: MaskOptions,
) -> np.ndarray | None:
    """The plane of the points `band` if it can be the ground and spreads wider than what
    stands on it, else None."""
    plane, _, inliers = _plane_under(xyz, band, center, up, distance, rng, options)
    if plane is None:
        return None
    on_plane = band[inliers]
    above = xyz @ plane[:3] + plane[3] > 2 * distance

    def reach(points: np.ndarray) -> float:
        """How far the points spread sideways from the vertical line through the centre."""
        offsets = points - center
        sideways = offsets - np.outer(offsets @ plane[:3], plane[:3])
        return float(np.percentile(np.linalg.norm(sideways, axis=1), 90))

    if above.sum() < 10 or reach(xyz[on_plane]) < options.ground_min_reach * reach(xyz[above]):
        return None
    return plane


def product_box(
    xyz: np.ndarray,
    up: np.ndarray,
    ground: np.ndarray | None,
    margin: float,
    *,
    trim_percent: float = 0.5,
) -> np.ndarray:
    """(8, 3) corners of an up-aligned box around the points (less the outer `trim_percent` %
    on every side: stray matches), grown by `margin` of its size."""
    axes = up_aligned_axes(up)
    local = xyz @ axes.T
    low = np.percentile(local, trim_percent, axis=0)
    high = np.percentile(local, 100 - trim_percent, axis=0)
    size = high - low
    low, high = low - margin * size.max(), high + margin * size.max()
    if ground is not None:  # the box stands on the table; it does not reach below it
        low[1] = -ground[3]
    corners = np.array(
        [[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1]) for z in (low[2], high[2])]
    )
    return corners @ axes


def grown_box(
    corners: np.ndarray, up: np.ndarray, ground: np.ndarray | None, growth: float
) -> np.ndarray:
    """(8, 3) the up-aligned box `corners` grown by `growth` × its size on every side (but
    not below the ground)."""
    axes = up_aligned_axes(up)
    local = corners @ axes.T
    low, high = local.min(axis=0), local.max(axis=0)
    size = high - low
    low, high = low - growth * size, high + growth * size
    if ground is not None:
        low[1] = -ground[3]
    return (
        np.array(
            [
                [x, y, z]
                for x in (low[0], high[0])
                for y in (low[1], high[1])
                for z in (low[2], high[2])
            ]
        )
        @ axes
    )


def up_aligned_axes(up: np.ndarray) -> np.ndarray:
    """(3, 3) rows: x, up, z — an orthonormal frame whose second axis is `up`."""
    helper = np.array([1.0, 0, 0]) if abs(up[0]) < 0.9 else np.array([0, 0, 1.0])
    x = np.cross(up, helper)
    x /= np.linalg.norm(x)
    z = np.cross(x, up)
    return np.stack([x, up, z])


def rim_likeness(
    image: np.ndarray,
    colours: int,
    rim_rel: float = 0.03,
    max_rim_spread: float = 2.5,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """((h, w) bool, (h, w) bool): pixels of the (h, w, 3) BGR `image` whose colour is unlike
    the rim, and the rest (the plain backdrop's colours). Unlike: far from all of `colours`
    typical colours of its outer `rim_rel` band (the background around a product in the middle
    of the photo); far: 3× the rim's spread about them, at least 4 (8-bit Lab). Both none
    unless the rim is a plain backdrop (90 % of it within `max_rim_spread` of those colours):
    a wooden table near the product differs from the table at the rim, and was taken for
    product. `exclude`: (h, w) bool, rim pixels not to learn from (the table, found by its
    plane, leaves the backdrop behind it)."""
    found = rim_distance(image, colours, rim_rel, max_rim_spread, exclude)
    return split_by_backdrop(found, image.shape[:2])


def split_by_backdrop(
    found: tuple[np.ndarray, float] | None, shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """rim_likeness's two (h, w) bool halves from rim_distance's result `found`: both none
    when it is None (no plain backdrop)."""
    if found is None:
        none = np.zeros(shape, bool)
        return none, none
    unlike = unlike_backdrop(*found)
    return unlike, ~unlike


def unlike_backdrop(distance: np.ndarray, spread: float) -> np.ndarray:
    """(h, w) bool: rim_distance's pixels unlike the backdrop (see rim_likeness)."""
    return distance > max(4.0, 3.0 * spread)


def rim_distance(
    image: np.ndarray,
    colours: int,
    rim_rel: float = 0.03,
    max_rim_spread: float = 2.5,
    exclude: np.ndarray | None = None,
) -> tuple[np.ndarray, float] | None:
    """The (h, w) float32 distance (8-bit Lab) of each pixel's colour to the nearest of the
    rim's typical colours, and the rim's own spread (the median of those distances over it:
    its noise); None unless the rim is a plain backdrop (see rim_likeness)."""
    lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB).astype(np.float32)
    rim = max(1, round(rim_rel * max(image.shape[:2])))
    band = np.ones(image.shape[:2], bool)
    band[rim:-rim, rim:-rim] = False
    # Not the photo's very edge: undistortion fills its corners from outside the photo. Black
    # (as it was), those few dark pixels took a colour of the rim's model and moved its
    # threshold enough to lose a white armchair's legs on pale paper in every photo; they now
    # repeat the photo's edge, stretched, and are no rim sample either.
    edge = max(1, round(RIM_EDGE_REL * max(image.shape[:2])))
    band[:edge] = band[-edge:] = False
    band[:, :edge] = band[:, -edge:] = False
    if exclude is not None:
        band &= ~exclude
    samples = lab[band]
    if len(samples) < colours:
        return None
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    count = min(colours, len(samples))
    # Seeded here, not only per photo: how many draws earlier steps took depends on the photo,
    # so a photo a resampling apart drew other centres.
    cv2.setRNGSeed(0)
    _, _, centres = cv2.kmeans(samples, count, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    distance = np.full(image.shape[:2], np.inf, np.float32)
    for centre in centres:
        distance = np.minimum(distance, colour_distance(lab, centre))
    if np.percentile(distance[band], 90) > max_rim_spread:
        return None
    return distance, float(np.median(distance[band]))


def unlike_rim_region(
    image: np.ndarray,
    colours: int = 12,
    min_share: float = 0.002,
    grow_rel: float = 0.015,
) -> np.ndarray:
    """(h, w) uint8, 255 where the product in the middle of the BGR `image` probably is, known
    before any camera is: colours unlike all `colours` typical colours of the photo's rim,
    whatever the rim shows (table and backdrop alike, so not only a plain backdrop), without
    specks smaller than `min_share` of the photo, closed and grown by `grow_rel` × the long
    side so the product's outline stays inside. On the armchair on a wooden table it held
    91–100 % of the true silhouette, and the silhouette 68–85 % of it. SfM extracts features
    only there when the table's repeating grain folded the model (sfm.place_from_product)."""
    unlike, _ = rim_likeness(image, colours, max_rim_spread=np.inf)
    height, width = unlike.shape
    opened = cv2.morphologyEx(unlike.astype(np.uint8), cv2.MORPH_OPEN, disc_kernel(2))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(opened)
    large = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] > min_share * height * width]
    region = np.isin(labels, large).astype(np.uint8)
    radius = max(1, round(grow_rel * max(height, width)))
    region = cv2.morphologyEx(region, cv2.MORPH_CLOSE, disc_kernel(radius))
    return grow_mask(region, radius) * np.uint8(255)


def colour_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(h, w) float32: the Euclidean distance between the colours of the (h, w, 3) float32
    image `a` and those of `b`, another such image or one (3,) colour."""
    # (OpenCV's arithmetic: a third of NumPy's norm over the channels, and no temporaries)
    other = b if np.ndim(b) == 3 else (*map(float, b), 0.0)
    difference = cv2.subtract(a, other)
    squared = cv2.transform(cv2.multiply(difference, difference), np.ones((1, 3), np.float32))
    return cv2.sqrt(squared)


def segmentation_view(
    image: np.ndarray, camera: Camera, segment_px: int
) -> tuple[np.ndarray, Camera]:
    """The (h', w', 3) photo at the segmentation size (long side `segment_px`) and its camera."""
    scale = segment_px / max(camera.width, camera.height)
    size = (max(1, round(camera.width * scale)), max(1, round(camera.height * scale)))
    small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return small, camera.scaled(scale)


@dataclass(frozen=True)
class TableView:
    """What the table's plane tells about one photo, at the segmentation size."""

    table: np.ndarray  # (h', w') bool: surely the table
    covered: np.ndarray  # (h', w') bool: something stands in front of the table there
    extent: np.ndarray  # (h', w') bool: rays that meet the table (as far as any photo saw it)
    points: np.ndarray  # (h', w', 3) float32: where each ray meets the table's plane
    ahead: np.ndarray  # (h', w') bool: ... in front of the camera (below the horizon)
    mat: np.ndarray | None = None  # (h', w') bool: rays that meet the printed mat's page


def plane_homography(source: Camera, target: Camera, plane: np.ndarray) -> np.ndarray:
    """(3, 3) H taking a pixel of `source` to the pixel of `target` that sees the same point
    of the world plane [n, d] (n·x + d = 0): target ~ H @ [u, v, 1]."""
    normal = source.R @ plane[:3]  # the plane in the source camera's frame: normal·x + offset = 0
    offset = plane[3] - normal @ source.t
    rotation = target.R @ source.R.T
    translation = target.t - rotation @ source.t
    return target.K @ (rotation - np.outer(translation, normal) / offset) @ np.linalg.inv(source.K)


def plane_points(camera: Camera, plane: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """((h, w, 3) where each pixel's ray meets the plane [n, d], (h, w) bool: in front of the
    camera)."""
    u, v = np.meshgrid(np.arange(camera.width, dtype=np.float64),
                       np.arange(camera.height, dtype=np.float64))  # fmt: skip
    rays = np.stack([u, v, np.ones_like(u)], axis=-1) @ np.linalg.inv(camera.K).T @ camera.R
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = -(plane[:3] @ camera.center + plane[3]) / (rays @ plane[:3])
    ahead = np.isfinite(distance) & (distance > 0)
    distance = np.where(ahead, distance, 0.0)
    return camera.center + distance[..., None] * rays, ahead


def table_pixels(
    cameras: list[Camera],
    images: list[np.ndarray],
    region: ObjectRegion,
    options: MaskOptions,
    *,
    mat_page: np.ndarray | None = None,
) -> list[TableView | None]:
    """Per photo, what its table's plane tells (None: no table under that photo's product, or
    no photos to compare with). `mat_page`: (4, 3) the printed mat's corners, when found.

    A pixel showing the table shows a point of its plane, and photos further round that see
    the same point show the same patch of table there (the plane maps one photo onto another);
    a pixel showing the product hides that point, and those photos see something else. A plain
    patch agrees with anything plain (a black holder with its own base seen from elsewhere),
    so only textured patches count. Photos of another pass (a flipped product) stand on
    another table. The table's extent is what all photos recognised of it: far off, seen
    flat, its grain blurs and one photo alone does not recognise it.
    """
    grounds = [region.for_photo(camera.name).ground for camera in cameras]
    if not (options.segment and options.table_plane) or all(g is None for g in grounds):
        return [None] * len(cameras)
    views = [segmentation_view(image, camera, options.segment_px) for camera, image
             in zip(cameras, images, strict=True)]  # fmt: skip
    directions = np.array([camera.R[2] for camera in cameras])
    angles = np.degrees(np.arccos(np.clip(directions @ directions.T, -1.0, 1.0)))
    greys = [cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32) for small, _ in views]
    labs = [cv2.cvtColor(small, cv2.COLOR_BGR2LAB).astype(np.float32) for small, _ in views]
    low, high = options.table_views_deg

    def recognise(index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        ground = grounds[index]
        same = [
            other
            for other, plane in enumerate(grounds)
            if other != index
            and plane is not None
            and ground is not None
            and np.array_equal(plane, ground)
        ]
        others = [other for other in same if low <= angles[index, other] <= high]
        if len(others) < options.table_min_views:
            return None
        others.sort(key=lambda other: angles[index, other])
        if len(others) > options.table_max_views:  # spread over the range of angles
            picks = np.linspace(0, len(others) - 1, options.table_max_views).round().astype(int)
            others = [others[pick] for pick in picks]
        nearer = [o for o in same if options.table_covered_min_deg <= angles[index, o] < low]
        points, ahead = plane_points(views[index][1], ground)
        table, covered = table_in_photo(
            (greys[index], labs[index], views[index][1]),
            [(greys[other], labs[other], views[other][1], True) for other in others]
            + [(greys[other], labs[other], views[other][1], False) for other in nearer],
            ground,
            points,
            ahead,
            options,
        )
        if options.table_own_colours:  # (a part lying on it lies over the product's footprint)
            footprint = over_footprint(points, ahead, region.box_corners, ground[:3])
            table &= ~(unlike_colours(labs[index], table, options.rim_colours) & footprint)
        return table, covered, points, ahead

    found = list(each_photo(recognise, range(len(cameras))))
    tables: list[TableView | None] = [None] * len(cameras)
    # The outline of what every photo of a pass recognised: the hull of each photo's own hull
    # (the same outline as the hull of all their points, for a fraction of the work).
    hulls: dict[int, np.ndarray] = {}
    reach = region.camera_distance * options.table_max_reach
    for index, ground in enumerate(grounds):
        if found[index] is not None:
            axes = up_aligned_axes(ground[:3])[[0, 2]]
            hull = table_outline([found[index][2][found[index][0]] @ axes.T],
                                 region.center @ axes.T, reach)  # fmt: skip
            hulls[index] = np.empty((0, 2)) if hull is None else hull
    outlines: dict[int, np.ndarray | None] = {}
    for index, ground in enumerate(grounds):
        if found[index] is None:
            continue
        same = [other for other, plane in enumerate(grounds)
                if found[other] is not None and np.array_equal(plane, ground)]  # fmt: skip
        axes = up_aligned_axes(ground[:3])[[0, 2]]
        if same[0] not in outlines:  # once per pass: its photos share the table
            outlines[same[0]] = table_outline(
                [hulls[other] for other in same], region.center @ axes.T, reach
            )
        outline = outlines[same[0]]
        table, covered, points, ahead = found[index]
        extent = np.zeros(table.shape, bool)
        if outline is not None:
            extent = inside_convex(points @ axes.T, outline) & ahead
        on_mat = None
        if mat_page is not None:
            on_mat = on_page(points, ahead, mat_page, ground[:3], options.mat_margin_rel)
        tables[index] = TableView(
            table=table, covered=covered, extent=extent, points=points.astype(np.float32),
            ahead=ahead, mat=on_mat,
        )  # fmt: skip
    return tables


def table_in_photo(
    photo: tuple[np.ndarray, np.ndarray, Camera],
    others: list[tuple[np.ndarray, np.ndarray, Camera, bool]],
    plane: np.ndarray,
    points: np.ndarray,
    ahead: np.ndarray,
    options: MaskOptions,
) -> tuple[np.ndarray, np.ndarray]:
    """For `photo` (grey (h, w) float32, Lab (h, w, 3) float32, camera) and `others` (the same,
    and whether the photo may recognise the table), with `points` (h, w, 3) and `ahead` (h, w)
    bool from `plane_points`: (h, w) bool the table: pixels whose patch the plane [n, d] maps
    onto an alike patch in `table_min_views` of the others that may; (h, w) bool covered:
    pixels whose table point, textured where most others see it, has another colour here."""
    grey, lab, camera = photo
    height, width = grey.shape
    window = (options.table_window_px, options.table_window_px)
    mean = cv2.blur(grey, window)
    variance = cv2.blur(grey * grey, window) - mean * mean
    textured = variance > options.table_min_texture**2
    agree = np.zeros((height, width), np.int32)
    differ = np.zeros((height, width), np.int32)
    seen_textured = np.zeros((height, width), np.int32)
    any_alike = np.zeros((height, width), bool)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for other_grey, other_lab, other, recognises in others:
        homography = plane_homography(camera, other, plane)
        # the plane's point must lie in front of the other camera too, and inside its frame
        seen = ahead & ((points @ other.R[2] + other.t[2]) > 0)
        frame = np.ones(other_grey.shape, np.uint8)
        seen &= cv2.warpPerspective(frame, homography, (width, height), flags=flags) > 0
        warped = cv2.warpPerspective(other_grey, homography, (width, height), flags=flags)
        warped_lab = cv2.warpPerspective(other_lab, homography, (width, height), flags=flags)
        other_mean = cv2.blur(warped, window)
        other_variance = cv2.blur(warped * warped, window) - other_mean * other_mean
        covariance = cv2.blur(grey * warped, window) - mean * other_mean
        ncc = covariance / np.sqrt(np.maximum(variance * other_variance, 1e-6))
        difference = cv2.blur(colour_distance(lab, warped_lab), (3, 3))
        seen &= other_variance > options.table_min_texture**2
        alike = seen & textured & (ncc > options.table_min_ncc)
        alike &= difference < options.table_max_colour_difference
        agree += alike & recognises
        any_alike |= alike
        seen_textured += seen
        differ += seen & (
            (difference > options.table_min_colour_change) | (ncc < options.table_unlike_ncc)
        )
    table = agree >= options.table_min_views
    # Where most photos that see the table point textured see other colours, and none sees
    # it alike, something stands in front of it here: the product (a dark red cap high over
    # dark grain). (Photos near round see the product in front of the table just behind it:
    # one that sees the table point alike tells it is table.)
    covered = (differ * 2 > seen_textured) & (seen_textured >= options.table_min_views)
    covered &= ~any_alike
    return table, covered


def unlike_colours(lab: np.ndarray, sample: np.ndarray, colours: int) -> np.ndarray:
    """(h, w) bool: pixels of the (h, w, 3) float32 Lab image whose colour is far from all
    `colours` typical colours of its pixels `sample` ((h, w) bool): 3× their spread about
    them, at least 8 (8-bit Lab). No pixel when the sample is too small to tell."""
    samples = lab[sample]
    if len(samples) < 20 * colours:
        return np.zeros(sample.shape, bool)
    samples = np.ascontiguousarray(samples[:: max(1, len(samples) // 5000)])
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    cv2.setRNGSeed(0)  # k-means draws from OpenCV's generator (per thread): the same each run
    _, labels, centres = cv2.kmeans(samples, colours, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    # (a colour few of them have is no typical one: the product's pixels the sample holds)
    typical = np.bincount(labels.ravel(), minlength=colours) >= 0.25 * len(samples) / colours
    distance = np.full(sample.shape, np.inf, np.float32)
    for centre in centres[typical]:
        distance = np.minimum(distance, colour_distance(lab, centre))
    return distance > max(8.0, 3.0 * float(np.median(distance[sample])))


def table_outline(points: list[np.ndarray], center: np.ndarray, reach: float) -> np.ndarray | None:
    """(k, 2) convex outline of the table from its recognised points (each (n, 2), in the
    plane's coordinates) within `reach` of `center` (2,), or None when there are none."""
    near = [chunk[np.linalg.norm(chunk - center, axis=1) <= reach] for chunk in points]
    stacked = np.concatenate([chunk for chunk in near if len(chunk)] or [np.empty((0, 2))])
    if len(stacked) < 3:
        return None
    return cv2.convexHull(stacked.astype(np.float32))[:, 0].astype(np.float64)


def inside_convex(points: np.ndarray, outline: np.ndarray) -> np.ndarray:
    """(...) bool: which of the (..., 2) points lie inside the convex (k, 2) `outline`."""
    edges = np.roll(outline, -1, axis=0) - outline
    left = np.ones(points.shape[:-1], bool)
    right = np.ones(points.shape[:-1], bool)
    for corner, edge in zip(outline, edges, strict=True):  # an edge at a time: little memory
        cross = edge[0] * (points[..., 1] - corner[1]) - edge[1] * (points[..., 0] - corner[0])
        left &= cross >= 0
        right &= cross <= 0
    return left | right


def over_footprint(
    points: np.ndarray, ahead: np.ndarray, box_corners: np.ndarray, up: np.ndarray
) -> np.ndarray:
    """(h, w) bool: pixels whose ray meets a plane (at `points` (h, w, 3), in front of the
    camera where `ahead` (h, w) bool, from `plane_points`) inside the footprint of the
    up-aligned box (8, 3) `box_corners`."""
    inside = ahead.copy()
    axes = up_aligned_axes(up)
    local = points @ axes.T
    box = box_corners @ axes.T
    low, high = box.min(axis=0), box.max(axis=0)
    for axis in (0, 2):
        inside &= (local[..., axis] >= low[axis]) & (local[..., axis] <= high[axis])
    return inside


def on_page(
    points: np.ndarray, ahead: np.ndarray, page: np.ndarray, up: np.ndarray, margin_rel: float
) -> np.ndarray:
    """(h, w) bool: pixels whose ray meets a plane (at `points` (h, w, 3), in front of the
    camera where `ahead`, from `plane_points`) within the (4, 3) corners `page`, grown by
    `margin_rel` × its long side, seen along `up`."""
    axes = up_aligned_axes(up)[[0, 2]]
    corners = page @ axes.T
    centre = corners.mean(axis=0)
    long_side = float(np.linalg.norm(corners - np.roll(corners, 1, axis=0), axis=1).max())
    offsets = corners - centre
    lengths = np.linalg.norm(offsets, axis=1, keepdims=True)
    grown = centre + offsets * (1 + margin_rel * long_side / lengths)  # each corner outwards
    return ahead & inside_convex(points @ axes.T, grown)


def standing_alone(mask: np.ndarray) -> np.ndarray:
    """(h, w) bool: the parts of the (h, w) bool `mask` that stand alone in the photo, not
    reaching the frame's edge once its speckles are joined (closed 3 × 3). Grain speckles the
    far table left unrecognised beyond the table's edge (its dark grain unlike the backdrop,
    its light grain alike): each speckle stood alone, and seen from above the far strip of a
    wooden table was taken for a cracker box's and grew its box away."""
    joined = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    return mask & ~turntable.reaching_border(joined > 0)


def close_table(table: np.ndarray, options: MaskOptions) -> np.ndarray:
    """(h, w) bool: the sure table pixels (h, w) bool with their plain gaps (dark grain) closed,
    specks left out."""
    size = max(3, round(options.table_close_rel * max(table.shape)) | 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    closed = cv2.morphologyEx(table.astype(np.uint8), cv2.MORPH_CLOSE, kernel)
    _, parts, stats, _ = cv2.connectedComponentsWithStats(closed, connectivity=8)
    large = stats[:, cv2.CC_STAT_AREA] >= options.table_min_share * table.size
    large[0] = False
    return large[parts]


def project_box(camera: Camera, corners: np.ndarray) -> np.ndarray:
    """(h, w) bool: the convex hull of the box corners in the photo."""
    uv, depth = camera.project(corners)
    mask = np.zeros((camera.height, camera.width), np.uint8)
    if (depth <= 0).any():  # a camera inside the box: everything may be product
        mask[:] = 1
        return mask.astype(bool)
    hull = cv2.convexHull(np.round(uv * 16).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1, shift=4)
    return mask.astype(bool)


def product_mask(
    image: np.ndarray,
    camera: Camera,
    region: ObjectRegion,
    object_xyz: np.ndarray,
    options: MaskOptions,
    background: np.ndarray | None = None,
    *,
    table: TableView | None = None,
) -> np.ndarray:
    """(h, w) bool: the product in one photo (generous at the edges); and how much of the box's
    outline in the photo the product covers, as a fraction of the photo's long side (it should
    stay inside the box: more means the box cuts it). `background`: (h, w) bool, surely not
    the product (a turntable's still room and disc); `table`: at the segmentation size, the
    pixels that surely show the table and those where something stands in front of it
    (`table_pixels`)."""
    box = project_box(camera, region.box_corners)
    if not options.segment:
        return box, 0.0
    cv2.setRNGSeed(0)  # k-means and GrabCut draw from OpenCV's generator: the same masks each run
    small, small_camera = segmentation_view(image, camera, options.segment_px)
    small_size = (small.shape[1], small.shape[0])
    small_box = cv2.resize(box.astype(np.uint8), small_size, interpolation=cv2.INTER_NEAREST)
    labels = np.where(small_box > 0, cv2.GC_PR_BGD, cv2.GC_BGD).astype(np.uint8)
    on_table = None
    ground = region.for_photo(camera.name).ground
    # (A product with no points of its own is found from its outline in a box framed wide
    # round it, whose footprint holds much plain table: it is left to colour, as before.)
    if table is not None and ground is not None and len(object_xyz) > 0:
        table_view = table
        table, covered, on_table = table.table, table.covered, table.extent
        table_closed = close_table(table, options)
        # What is not the table there stands on it (a black holder over dark grain, a pale
        # sole the backdrop's colour) where its ray meets the table under the product's box,
        # or in front of table seen elsewhere (a dark red cap high over dark grain); the far
        # table, too foreshortened to be recognised, is neither
        standing = on_table & ~table_closed & (small_box > 0)
        if table_view.mat is not None:  # the mat is not the table, but it does not stand on it
            standing &= ~table_view.mat
        # (only a start for GrabCut under the box: a mat's plain paper is no table pattern)
        footprint = over_footprint(
            table_view.points, table_view.ahead, region.box_corners, region.up
        )
        footing = standing & footprint
        standing &= covered
        if options.table_colours_covered:
            # Table hidden from the photos further round (under an armchair's seat) differs
            # there too: what has the recognised table's colours is table seen here
            lab = cv2.cvtColor(small, cv2.COLOR_BGR2LAB).astype(np.float32)
            standing &= unlike_colours(lab, table, options.rim_colours)
        # (not along the table's far edge: the backdrop beside it joined the product there)
        foot_edge = grow_mask(
            (~table_closed & footprint).astype(np.uint8), options.table_sure_inset_px
        )
        sure_table = table & (foot_edge == 0)
    else:
        table = None
    # Parts with no sparse points of their own (an armchair's white frame under its printed
    # seat) start as product where their colour is unlike anything on the photo's rim, which
    # is background. A white frame on pale paper differs from it only along its edges and
    # shaded faces: closing those outlines fills the tubes between them.
    rim_colour = rim_distance(small, options.rim_colours, exclude=on_table)
    unlike_anywhere, backdrop = split_by_backdrop(rim_colour, small.shape[:2])
    unlike = unlike_anywhere & (small_box > 0)
    if on_table is not None:
        # the backdrop's colours tell only above the horizon: below it lies more table or
        # floor than was recognised (round a mat), unlike the backdrop, out to the frame's
        # edge. What stands alone there is the product, over the backdrop beyond the
        # table's far edge (a bottle's cap, seen from low)
        beyond = unlike_anywhere & table_view.ahead & ~on_table
        unlike &= ~table_view.ahead | standing_alone(beyond)
        # Over the table its plane tells, not colour: what stands on it and is not the table
        # is the product (a black holder on dark grain, a pale sole the backdrop's colour)
        unlike = (unlike & ~on_table) | standing
    close = max(3, round(options.outline_close_rel * max(small_size))) | 1
    unlike = cv2.morphologyEx(
        unlike.astype(np.uint8), cv2.MORPH_CLOSE, np.ones((close, close), np.uint8)
    )
    if table is not None:
        unlike[table] = 0
    labels[unlike > 0] = cv2.GC_PR_FGD
    if table is not None:
        labels[footing & ~table] = cv2.GC_PR_FGD
    # Projected product points mark sure foreground (their 3D positions came from matches).
    uv, depth = small_camera.project(object_xyz)
    inside = (depth > 0) & (uv[:, 0] >= 0) & (uv[:, 1] >= 0)
    inside &= (uv[:, 0] < small_size[0] - 1) & (uv[:, 1] < small_size[1] - 1)
    seeds = np.round(uv[inside]).astype(int)
    if len(seeds) >= MIN_PRODUCT_POINTS:
        hull = cv2.convexHull(seeds.astype(np.int32))
        cv2.fillConvexPoly(labels, hull, cv2.GC_PR_FGD)
        labels[seeds[:, 1], seeds[:, 0]] = cv2.GC_FGD
    elif len(object_xyz) > 0:
        return box, 0.0  # the product's points miss this photo: keep the box
    else:  # no points at all (a plain product): the box alone, as in GrabCut's rectangle mode
        labels[small_box > 0] = cv2.GC_PR_FGD
        # The product stands in the middle of the photo, so the frame's rim is background.
        rim = max(1, round(0.02 * max(small_size)))
        labels[:rim], labels[-rim:], labels[:, :rim], labels[:, -rim:] = (cv2.GC_BGD,) * 4
    if table is not None:  # (a product point's own pixel stays: a point is no guess)
        labels[sure_table & (labels != cv2.GC_FGD)] = cv2.GC_BGD
    if table is not None and options.backdrop_beyond_table:
        labels[backdrop & ~on_table & (labels != cv2.GC_FGD)] = cv2.GC_BGD
    labels[small_box == 0] = cv2.GC_BGD
    surely_not = None
    if background is not None:
        surely_not = cv2.resize(
            background.astype(np.uint8), small_size, interpolation=cv2.INTER_NEAREST
        ).astype(bool)
        labels[surely_not] = cv2.GC_BGD
    # GrabCut's cost goes with its pixels, and outside the box all is background already: it
    # segments the box's surroundings, whose background colours are those that border it.
    x, y, w, h = cv2.boundingRect(small_box)
    margin = round(options.grabcut_margin_rel * max(small_size))
    x0, y0 = max(0, x - margin), max(0, y - margin)
    x1, y1 = min(small_size[0], x + w + margin), min(small_size[1], y + h + margin)
    crop = labels[y0:y1, x0:x1].copy()
    background_model = np.zeros((1, 65), np.float64)
    foreground_model = np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(
            np.ascontiguousarray(small[y0:y1, x0:x1]),
            crop,
            None,
            background_model,
            foreground_model,
            options.grabcut_iterations,
            cv2.GC_INIT_WITH_MASK,
        )
    except cv2.error:  # degenerate colour models (e.g. a one-colour photo): keep the box
        return box, 0.0
    labels[y0:y1, x0:x1] = crop
    foreground = np.isin(labels, (cv2.GC_FGD, cv2.GC_PR_FGD)).astype(np.uint8)
    # GrabCut still gives such parts to the background, whose colour they share: whatever
    # unlike the rim hangs together with the product is kept as product.
    count, parts = cv2.connectedComponents(foreground | unlike, connectivity=8)
    touching = np.zeros(count, bool)
    touching[parts[foreground > 0]] = True
    if table is not None and len(seeds) >= MIN_PRODUCT_POINTS:
        # On a table only what hangs together with the product's points: the table's far
        # edge, too foreshortened to be recognised, is unlike the backdrop and went to the
        # product's colours, apart from it
        touching[:] = False
        touching[parts[seeds[:, 1], seeds[:, 0]]] = True
    touching[0] = False
    foreground = touching[parts].astype(np.uint8)
    if len(object_xyz) == 0:  # unseeded: bright bits of the table's far edge join a white mug
        count, parts, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
        if count > 2:
            foreground = (parts == 1 + np.argmax(stats[1:, cv2.CC_STAT_AREA])).astype(np.uint8)
    if background is not None:
        foreground[surely_not] = 0
    if table is not None:  # the table seen through a handle is no hole to fill
        surely_not = table if surely_not is None else surely_not | table
    if rim_colour is not None and options.tinted_hole_min > 0:
        foreground = fill_tinted_holes(
            foreground, *rim_colour, backdrop, options.tinted_hole_min, options.tinted_hole_share,
            surely_not, round(options.tinted_hole_gap_rel * max(small_size)),
        )  # fmt: skip
    foreground = fill_small_holes(foreground, options.max_hole_rel, surely_not)
    # The outline is where the box's projection meets the rest of the frame (not the frame's
    # edge: a product cut by the frame is not cut by the box).
    inner = cv2.erode(small_box, np.ones((3, 3), np.uint8), iterations=2, borderValue=1)
    outline = (small_box > 0) & (inner == 0)
    touch = float(foreground[outline].sum()) / max(small_size)
    full = cv2.resize(foreground, (camera.width, camera.height), interpolation=cv2.INTER_LINEAR)
    if options.refine_band_rel > 0:
        long_side = max(camera.width, camera.height)
        full = refine_outline(
            image, full,
            band_px=max(1, round(options.refine_band_rel * long_side)),
            trim_px=max(1, round(options.refine_trim_rel * long_side)),
            min_contrast=options.refine_min_contrast, min_share=options.refine_share,
        )  # fmt: skip
    radius = max(1, round(options.mask_dilate_rel * max(camera.width, camera.height)))
    return grow_mask(full, radius).astype(bool) & box, touch


def refine_outline(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    band_px: int,
    trim_px: int,
    min_contrast: float,
    min_share: float,
) -> np.ndarray:
    """(h, w) uint8 0 / 1: `mask` (h, w) uint8 0 / 1, upsampled from the segmentation size,
    with its outline moved onto the photo's (h, w, 3) colour edge, out by up to `band_px` and
    in by up to `trim_px`. A pixel there is product where its colour lies at least `min_share`
    of the way from the colour of the nearest pixel `band_px` outside the outline to that of
    the nearest pixel `band_px` inside it (a mixed pixel, half covered: half-way), or, inside
    the outline, to that of the nearest pixel `trim_px` inside it: the product's edge may be
    unlike its inner part (a can's dark rim under its pale label). Sides whose colours differ
    by less than `min_contrast` (8-bit Lab) tell nothing."""
    if not mask.any():
        return mask
    reach = 2 * band_px + 2  # the band and the pixels that colour it
    x, y, w, h = cv2.boundingRect(mask)
    x0, y0 = max(0, x - reach), max(0, y - reach)
    x1, y1 = min(mask.shape[1], x + w + reach), min(mask.shape[0], y + h + reach)
    crop = mask[y0:y1, x0:x1]
    inner = cv2.erode(crop, disc_kernel(band_px)) > 0
    kept = cv2.erode(crop, disc_kernel(trim_px)) > 0
    outer = grow_mask(crop, band_px) > 0
    band_y, band_x = np.nonzero(outer & ~kept)
    if not inner.any() or outer.all() or len(band_y) == 0:
        return mask
    lab = cv2.cvtColor(image[y0:y1, x0:x1], cv2.COLOR_BGR2LAB).astype(np.float32)
    smooth = cv2.blur(lab, (3, 3))  # the sides' samples: one JPEG pixel is a noisy sample

    def nearest_colours(side: np.ndarray) -> np.ndarray:
        """(n, 3): the colour of each band pixel's nearest pixel of `side`."""
        _, nearest = cv2.distanceTransformWithLabels(
            (~side).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
        )
        side_y, side_x = np.nonzero(side)  # (the labels number them in raster order)
        index = nearest[band_y, band_x] - 1
        return smooth[side_y[index], side_x[index]]

    background = nearest_colours(~outer)
    colour = lab[band_y, band_x] - background
    was_product = crop[band_y, band_x] > 0
    product = np.zeros(len(band_y), bool)
    decided = np.zeros(len(band_y), bool)
    # (the edge's colour only keeps pixels: out beyond a wide outline it may be background)
    for side, applies in ((inner, True), (kept, was_product)):
        across = nearest_colours(side) - background
        contrast2 = (across * across).sum(axis=1)
        telling = (contrast2 >= min_contrast**2) & applies
        share = (colour * across).sum(axis=1) / np.maximum(contrast2, 1e-6)
        product |= telling & (share >= min_share)
        decided |= telling
    refined = kept.astype(np.uint8)
    refined[band_y, band_x] = np.where(decided, product, was_product)
    out = mask.copy()
    out[y0:y1, x0:x1] = refined
    return out


def recover_from_other_views(
    cameras: list[Camera],
    images: list[np.ndarray],
    masks: list[np.ndarray],
    region: ObjectRegion,
    options: MaskOptions,
) -> list[np.ndarray]:
    """The (h, w) bool `masks` of the photos (BGR `images`) of a product on a plain backdrop,
    each with the parts it lost taken back from the others: a cell of a grid over the product
    box is held by the photos whose mask, less its safety margin, holds its centre, or that do
    not see it; where all but `recover_max_dissent` photos hold it, each photo's mask gains the
    pixels round its projection whose colour is tinted off the backdrop (the median over a
    `recover_median_px` window more than `tinted_hole_min` beyond the backdrop's spread, see
    fill_tinted_holes) though too little for one pixel to tell (rim_likeness), less what an
    opening by `recover_open_px` removes. The backdrop's own colour is never taken."""
    radius = max(1, round(options.mask_dilate_rel * max(cameras[0].width, cameras[0].height)))
    axes = up_aligned_axes(region.up)
    local = region.box_corners @ axes.T
    low, high = local.min(axis=0), local.max(axis=0)
    voxel = float((high - low).max()) / options.recover_resolution
    shape = np.maximum(np.ceil((high - low) / voxel).astype(int), 2)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    centres = ((grid + 0.5) * voxel + low) @ axes
    dissent = np.zeros(len(centres), np.int16)
    views = []

    def pixels(camera: Camera, size: tuple[int, int], points: np.ndarray):
        uv, depth = camera.project(points)
        col, row = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
        inside = (depth > 0) & (col >= 0) & (row >= 0) & (col < size[0]) & (row < size[1])
        return col[inside], row[inside], inside

    for camera, image, mask in zip(cameras, images, masks, strict=True):
        small, small_camera = segmentation_view(image, camera, options.segment_px)
        size = (small.shape[1], small.shape[0])
        base = cv2.erode(mask.astype(np.uint8), disc_kernel(radius))
        held = cv2.resize(base, size, interpolation=cv2.INTER_AREA) > 0
        views.append((small, small_camera, size, held))
        # (cells more photos than that leave out are left out from then on)
        col, row, inside = pixels(small_camera, size, centres)
        excluded = np.zeros(len(centres), bool)
        excluded[np.flatnonzero(inside)[~held[row, col]]] = True
        dissent += excluded
        keep = dissent <= options.recover_max_dissent
        centres, dissent = centres[keep], dissent[keep]
    result = []
    for mask, camera, (small, small_camera, size, held) in zip(masks, cameras, views, strict=True):
        found = rim_distance(small, options.rim_colours)
        if found is None or len(centres) == 0:
            result.append(mask)
            continue
        distance, spread = found
        tint = cv2.medianBlur(distance, options.recover_median_px) - spread
        tinted = (tint > options.tinted_hole_min) & ~unlike_backdrop(distance, spread)
        hull = np.zeros((size[1], size[0]), np.uint8)
        col, row, _ = pixels(small_camera, size, centres)
        hull[row, col] = 1
        hull = cv2.morphologyEx(hull, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
        gain = (tinted & (hull > 0) & ~held).astype(np.uint8)
        gain = cv2.morphologyEx(gain, cv2.MORPH_OPEN, disc_kernel(options.recover_open_px))
        if not gain.any():
            result.append(mask)
            continue
        full = cv2.resize(gain, (camera.width, camera.height), interpolation=cv2.INTER_NEAREST)
        result.append(mask | (grow_mask(full, radius) > 0))
    return result


def fill_tinted_holes(
    mask: np.ndarray,
    distance: np.ndarray,
    spread: float,
    backdrop: np.ndarray,
    min_tint: float,
    min_share: float,
    keep_open: np.ndarray | None = None,
    gap_px: int = 0,
) -> np.ndarray:
    """(h, w) uint8: `mask` (h, w) uint8 0 / 1 with the holes it encloses filled where their
    pixels have the backdrop's colours (`backdrop`, (h, w) bool, for `min_share` of them at
    least) one by one, but their median distance to its colours (rim_distance's `distance`,
    (h, w)) exceeds the backdrop's own `spread` by `min_tint` (8-bit Lab): a pale face between
    a product's outlines, tinted unlike the backdrop though too little for one noisy pixel to
    tell, and no opening onto the backdrop, which is its colour. Holes holding pixels of
    `keep_open` ((h, w) bool: surely background) stay open. A hole's outline may have gaps up
    to 2 × `gap_px` wide (a shaded edge one pixel wide, broken where the JPEG blurred it): the
    holes are found among the pixels farther than `gap_px` from the mask, and each pixel off
    the mask goes with the nearest of them."""
    free = (mask == 0).astype(np.uint8)
    core = cv2.erode(free, disc_kernel(gap_px), borderValue=1) if gap_px > 0 else free
    count, parts = cv2.connectedComponents(core, connectivity=4)
    if count <= 2:  # the background alone: no hole
        return mask
    index = np.arange(1, count)
    tint = np.asarray(ndimage.median(distance, parts, index)) - spread
    share = np.asarray(ndimage.mean(backdrop, parts, index))
    fill = np.zeros(count, bool)
    fill[1:] = (tint > min_tint) & (share >= min_share)
    # (label 0 is the mask and its gap_px rim; what reaches the frame's edge is no hole)
    fill[np.unique(np.concatenate([parts[0], parts[-1], parts[:, 0], parts[:, -1]]))] = False
    if keep_open is not None:
        fill[np.unique(parts[keep_open])] = False
    fill[0] = False
    if not fill.any():
        return mask
    owner = parts
    if gap_px > 0:  # each pixel off the mask belongs where its nearest core pixel does
        _, nearest = cv2.distanceTransformWithLabels(
            1 - core, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
        )
        core_y, core_x = np.nonzero(core)  # (the labels number them in raster order)
        owner = parts[core_y, core_x][nearest - 1]
    filled = mask.copy()
    filled[fill[owner] & (free > 0)] = 1
    return filled


def fill_small_holes(
    mask: np.ndarray, max_share: float, keep_open: np.ndarray | None = None
) -> np.ndarray:
    """(h, w) uint8: `mask` (h, w) uint8 0 / 1 with the holes it encloses filled where they
    are smaller than `max_share` × its area, but for the pixels of `keep_open` ((h, w) bool:
    surely background, seen through the product)."""
    _, parts, stats, _ = cv2.connectedComponentsWithStats(
        (mask == 0).astype(np.uint8), connectivity=4
    )
    small = stats[:, cv2.CC_STAT_AREA] <= max_share * float(mask.sum())
    # (label 0 is the mask itself; what reaches the frame's edge is no hole)
    small[np.unique(np.concatenate([parts[0], parts[-1], parts[:, 0], parts[:, -1]]))] = False
    small[0] = False
    filled = mask.copy()
    fill = small[parts]
    if keep_open is not None:
        fill &= ~keep_open
    filled[fill] = 1
    return filled
