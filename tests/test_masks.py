"""Product masks: holes the segmentation leaves inside a product are filled, real openings kept;
the table's plane is found the same on every run; outlines sit on the photo's edge."""

from __future__ import annotations

import cv2
import numpy as np

from recon.cameras import Camera, look_at
from recon.masks import (
    MaskOptions,
    ObjectRegion,
    box_cuts_product,
    camera_up,
    fill_small_holes,
    fill_tinted_holes,
    fit_ground_plane,
    ransac_plane,
    recover_from_other_views,
    refine_outline,
    rim_distance,
    rim_likeness,
    unlike_rim_region,
)
from recon.morphology import disc_kernel


def test_a_box_that_cuts_one_side_of_the_product_off_grows() -> None:
    """The box comes from the sparse points; a side with few (an avocado's cut face) is cut
    off in the photos that see it edge-on, not in the median photo: those decide."""
    options = MaskOptions()
    one_side = [0.0] * 15 + [0.09, 0.16, 0.23, 0.25, 0.42, 0.46, 0.49, 0.5, 0.61]  # of 24
    assert np.median(one_side) < options.box_touch_max
    assert box_cuts_product(one_side, options)
    assert box_cuts_product([0.3] * 24, options)
    # a part of the table or a stray outline in a photo or two is no cut side
    assert not box_cuts_product([0.0] * 21 + [0.04, 0.016, 0.004], options)
    assert not box_cuts_product([0.0] * 24, options)
    # a box drawn round the outlines meets the product by construction: half the photos decide
    assert not box_cuts_product(one_side, options, from_outlines=True)


def test_small_holes_in_a_product_mask_are_filled_and_openings_kept() -> None:
    mask = np.zeros((100, 100), np.uint8)
    mask[10:90, 10:90] = 1  # the product: 6400 px
    mask[20:25, 20:25] = 0  # a speck GrabCut lost (25 px: 0.4 %)
    mask[50:70, 50:70] = 0  # a handle's opening (400 px: 6 %)
    mask[40:45, 85:90] = 0  # a notch at the outline: open to the background, no hole
    mask[40:45, 90:] = 0
    filled = fill_small_holes(mask, 0.01)
    assert filled[20:25, 20:25].all()
    assert not filled[50:70, 50:70].any()
    assert not filled[40:45, 85:90].any()
    # surely background (seen through the product) stays open, however small
    keep_open = np.zeros((100, 100), bool)
    keep_open[20:25, 20:25] = True
    assert not fill_small_holes(mask, 0.01, keep_open)[20:25, 20:25].any()
    assert fill_small_holes(mask, 0.0)[20:25, 20:25].sum() == 0  # 0: nothing filled


def test_a_face_tinted_almost_like_the_backdrop_is_filled_and_an_opening_kept() -> None:
    """A white frame on pale grey paper: the face of its front leg, 2 Lab units from the paper
    and too large for fill_small_holes, lies between the leg's shaded edges, one of them broken;
    the paper seen through the frame beside it is the paper's own colour and stays open."""
    photo = np.full((200, 200, 3), (220, 216, 215), np.uint8)  # the paper (BGR)
    mask = np.zeros((200, 200), np.uint8)
    mask[40:60, 40:160] = 1  # the seat
    mask[60:160, 40:43] = mask[60:160, 67:70] = 1  # the leg's shaded edges ...
    mask[150:160, 40:70] = 1  # ... and its foot
    mask[100:102, 40:43] = 0  # a gap in one edge: the face touches the paper
    photo[60:150, 43:67] = (214, 214, 214)  # the leg's face, lit as pale as the paper
    mask[60:160, 110:113] = mask[60:160, 137:140] = mask[150:160, 110:140] = 1  # the opening
    distance, spread = rim_distance(photo, 8)
    backdrop = ~(distance > 4)
    assert backdrop[60:150, 43:67].all()  # one by one, the face's pixels are the paper's
    filled = fill_tinted_holes(mask, distance, spread, backdrop, 1.0, 0.9, gap_px=2)
    assert filled[60:150, 43:67].all()
    assert not filled[60:150, 113:137].any()
    assert not filled[100:102, :40].any()  # nothing beyond the broken edge
    # without room for the gap the face is open to the paper, and stays so
    assert not fill_tinted_holes(mask, distance, spread, backdrop, 1.0, 0.9)[60:150, 43:67].any()
    # surely background stays open
    keep_open = np.zeros((200, 200), bool)
    keep_open[70, 50] = True
    assert not fill_tinted_holes(mask, distance, spread, backdrop, 1.0, 0.9, keep_open, 2)[
        60:150, 43:67
    ].any()


def test_the_table_plane_is_found_exactly_and_the_same_every_run() -> None:
    """open3d's threaded RANSAC gave another table (and other masks) from run to run."""
    rng = np.random.default_rng(3)
    normal = np.array([0.1, 0.98, -0.17])
    normal /= np.linalg.norm(normal)
    along = np.linalg.svd(normal[None])[2][1:]  # (2, 3) directions in the plane
    table = rng.uniform(-1, 1, (700, 2)) @ along + 0.5 * normal  # n·x - 0.5 = 0
    table += rng.normal(0, 0.001, table.shape)
    product = rng.uniform(-0.2, 0.2, (1500, 3)) + normal * 0.9  # a box of points above it
    xyz = np.vstack([product, table])
    plane, inliers = ransac_plane(xyz, 0.005, 2000, np.random.default_rng(0))
    sign = np.sign(plane[:3] @ normal)
    np.testing.assert_allclose(plane * sign, [*normal, -0.5], atol=2e-3)
    assert np.array_equal(inliers, np.arange(1500, 2200))  # the table's points, and only they
    center, up = normal * 0.9, normal
    grounds = [fit_ground_plane(xyz, center, up, 2.0, MaskOptions()) for _ in range(3)]
    assert grounds[0] is not None
    np.testing.assert_allclose(grounds[0], [*normal, -0.5], atol=2e-3)
    assert all(np.array_equal(grounds[0], ground) for ground in grounds[1:])


def _disc_photo(radius: float, rim: float) -> tuple[np.ndarray, np.ndarray]:
    """A 200 px photo of a red disc of `radius` px with a dark rim `rim` px wide on a pale
    backdrop, edges anti-aliased as a camera's; and its pixel distances from the centre."""
    scale = 4  # drawn 4x larger, then averaged down: mixed pixels along the outline
    yy, xx = np.mgrid[0 : 200 * scale, 0 : 200 * scale]
    distance = np.hypot(yy - 100 * scale + 0.5, xx - 100 * scale + 0.5) / scale
    big = np.empty((200 * scale, 200 * scale, 3), np.uint8)
    big[:] = (150, 170, 190)
    big[distance < radius] = (50, 45, 40)
    big[distance < radius - rim] = (40, 40, 200)
    photo = cv2.resize(big, (200, 200), interpolation=cv2.INTER_AREA)
    yy, xx = np.mgrid[0:200, 0:200]
    return photo, np.hypot(yy - 99.5, xx - 99.5)


def _refine(photo: np.ndarray, mask: np.ndarray) -> np.ndarray:
    options = MaskOptions()
    return refine_outline(
        photo, mask.astype(np.uint8), band_px=5, trim_px=2,
        min_contrast=options.refine_min_contrast, min_share=options.refine_share,
    )  # fmt: skip


def test_an_outline_segmented_small_is_moved_onto_the_photo_edge() -> None:
    """GrabCut's small pixels leave the outline's mixed pixels in the mask: 1-3 px too wide
    at full size. The outline moves onto the colour edge, a dark rim (a can's) and all."""
    photo, distance = _disc_photo(60, rim=4)
    truth = distance < 60
    wide = _refine(photo, distance < 62)
    assert wide[truth].all()  # the rim is kept, though its colour is unlike the label's
    assert not wide[distance >= 61].any()
    plain, distance = _disc_photo(60, rim=0)
    narrow = _refine(plain, distance < 58)  # (too narrow: it grows out onto the edge)
    assert narrow[distance < 59.5].all()
    assert not narrow[distance >= 60.5].any()


def test_an_outline_is_kept_where_product_and_background_look_alike() -> None:
    photo = np.full((200, 200, 3), 128, np.uint8)
    yy, xx = np.mgrid[0:200, 0:200]
    mask = (np.hypot(yy - 99.5, xx - 99.5) < 63).astype(np.uint8)
    assert (_refine(photo, mask) == mask).all()


def test_the_backdrops_own_colours_are_told_and_nothing_on_a_table() -> None:
    """A pale bottle on a grey backdrop, with GrabCut's halo of backdrop shades round it:
    the backdrop and the halo are alike (surely background off the table), the bottle is not."""
    photo = np.full((200, 200, 3), (205, 208, 210), np.uint8)
    cv2.rectangle(photo, (60, 40), (140, 190), (208, 211, 213), 6)  # a shade of the backdrop
    photo[50:180, 70:130] = (120, 190, 200)  # a pale yellow bottle
    unlike, like = rim_likeness(photo, 8)
    assert like[:36].all()  # the backdrop
    assert like[40:180, 57:63].all()  # ... and its shade
    assert not like[50:180, 70:130].any()
    assert unlike[50:180, 70:130].all()
    assert (unlike ^ like).all()
    rng = np.random.default_rng(0)
    wood = rng.integers(60, 160, (200, 200, 3), dtype=np.uint8)
    unlike, like = rim_likeness(wood, 8)
    assert not unlike.any()
    assert not like.any()


def test_the_backdrop_is_learnt_without_undistortions_black_corners() -> None:
    """Undistortion fills a photo's corners from outside it: the backdrop's colours, and how
    far each pixel is from them, are the same with or without those few black pixels."""
    rng = np.random.default_rng(0)
    paper = np.clip(rng.normal(200, 2.0, (320, 320, 3)), 0, 255).astype(np.uint8)
    paper[100:220, 140:180] = (60, 90, 200)
    filled = paper.copy()
    for rows in (slice(0, 3), slice(-3, None)):
        for columns in (slice(0, 3), slice(-3, None)):
            filled[rows, columns] = 0
    plain, plain_spread = rim_distance(paper, 12)
    cornered, cornered_spread = rim_distance(filled, 12)
    assert cornered_spread == plain_spread
    np.testing.assert_array_equal(cornered[3:-3, 3:-3], plain[3:-3, 3:-3])


def test_a_product_on_a_patterned_table_is_found_before_any_camera() -> None:
    """An orange seat on a white frame, on brown wood grain before a grey backdrop: the region
    holds the whole product and little of the table, though the rim is no plain backdrop."""
    rng = np.random.default_rng(1)
    photo = np.full((240, 320, 3), (222, 217, 215), np.uint8)  # grey backdrop (BGR)
    grain = cv2.resize(rng.uniform(0.5, 1.2, (20, 40)), (320, 140))[..., None]
    photo[100:] = np.clip(grain * (64, 107, 158), 0, 255).astype(np.uint8)  # brown wood
    product = np.zeros((240, 320), bool)
    product[80:150, 110:210] = True  # the seat
    product[150:190, 115:125] = product[150:190, 195:205] = True  # white legs
    photo[80:150, 110:210] = (0, 150, 245)
    photo[150:190, 115:125] = photo[150:190, 195:205] = (245, 245, 245)
    region = unlike_rim_region(photo) > 0
    assert region[product].mean() > 0.98
    table = np.zeros_like(product)
    table[100:] = True
    assert (region & table & ~product).sum() < 0.1 * table.sum()


def _table_photos(textured: bool) -> tuple[list, list[np.ndarray]]:
    """A ring of 12 cameras 25 deg above a table (the plane y = 0, +y up) round the origin,
    and their 320 px photos of it: fine wood-like grain (or plain paper) out to 3 units, a
    grey backdrop beyond."""
    from recon.cameras import Camera, look_at

    rng = np.random.default_rng(5)
    grain = cv2.resize(rng.uniform(0, 1, (150, 150)).astype(np.float32), (1200, 1200))
    cameras, photos = [], []
    for index in range(12):
        angle = np.radians(30 * index)
        eye = 4.0 * np.array(
            [np.cos(angle) * np.cos(0.44), np.sin(0.44), np.sin(angle) * np.cos(0.44)]
        )
        R, t = look_at(eye, np.array([0.0, 0.3, 0.0]))
        K = np.array([[300.0, 0, 159.5], [0, 300.0, 159.5], [0, 0, 1]])
        camera = Camera(name=f"img_{index:03d}.jpg", width=320, height=320, K=K, R=R, t=t)
        u, v = np.meshgrid(np.arange(320.0), np.arange(320.0))
        rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T @ R
        with np.errstate(divide="ignore", invalid="ignore"):
            along = -eye[1] / rays[..., 1]
        hit = eye + np.where(along > 0, along, 0)[..., None] * rays
        on_table = (along > 0) & (np.abs(hit[..., 0]) < 3) & (np.abs(hit[..., 2]) < 3)
        map_x = ((hit[..., 0] + 3) * 200).astype(np.float32)
        map_y = ((hit[..., 2] + 3) * 200).astype(np.float32)
        shade = cv2.remap(grain, map_x, map_y, cv2.INTER_LINEAR)
        shade = shade if textured else np.full_like(shade, 0.6)
        photo = np.empty((320, 320, 3), np.uint8)
        photo[:] = (215, 217, 222)
        photo[on_table] = np.clip((0.5 + shade[on_table, None]) * (40, 70, 110), 0, 255)
        cameras.append(camera)
        photos.append(photo)
    return cameras, photos


def test_a_table_the_sparse_points_miss_is_placed_by_the_photos() -> None:
    """SfM on a product's own features keeps a little of the table round its foot, a little
    off (here 0.5 deg and 1 % of the camera distance): the photos' grain places the table
    exactly, and on plain paper there is no table."""
    from recon.masks import find_object_region, table_by_photos

    rng = np.random.default_rng(2)
    product = rng.uniform((-0.4, 0.05, -0.3), (0.4, 0.8, 0.3), (900, 3))
    foot = rng.uniform((-0.4, 0.0, -0.3), (0.4, 0.0, 0.3), (80, 3))  # 8 % of the points
    tilt = np.radians(0.5)  # the sparse table: tilted about x and lifted
    foot = foot @ np.array([[1, 0, 0], [0, np.cos(tilt), -np.sin(tilt)],
                            [0, np.sin(tilt), np.cos(tilt)]]).T + (0, 0.04, 0)  # fmt: skip
    points = {"xyz": np.vstack([product, foot]), "track": np.full(980, 5)}
    options = MaskOptions(segment_px=320)
    for textured in (True, False):
        cameras, photos = _table_photos(textured)
        region, keep = find_object_region(cameras, points, options)
        assert region.ground is None  # the sparse table is no wider than the product
        tables = [None] * len(cameras)
        found, _, found_tables = table_by_photos(
            cameras, photos, points, region, keep, tables, options
        )
        if not textured:
            assert found is region
            assert found_tables is tables
            continue
        plane = found.ground
        assert plane is not None
        assert all(view is not None for view in found_tables)
        np.testing.assert_allclose(plane[:3], [0, 1, 0], atol=np.sin(np.radians(0.1)))
        assert abs(plane[3]) < 0.002  # 0.05 % of the camera distance (the sparse table: 1 %)


def test_colours_unlike_a_tables_are_told_though_its_sample_holds_a_few() -> None:
    """A white runner tube lying on wood grain agrees with the table's plane, so the table
    recognised by it holds a few of the tube's pixels: their colour is still no table's."""
    from recon.masks import unlike_colours

    rng = np.random.default_rng(4)
    grain = cv2.resize(rng.uniform(0.5, 1.2, (30, 30)), (200, 200))[..., None]
    photo = np.clip(grain * (64, 107, 158), 0, 255).astype(np.uint8)  # brown wood (BGR)
    photo[90:100] = (240, 240, 240)  # the tube
    lab = cv2.cvtColor(photo, cv2.COLOR_BGR2LAB).astype(np.float32)
    sample = np.ones((200, 200), bool)
    sample[91:99] = False  # the recognised table: all but the tube's middle
    unlike = unlike_colours(lab, sample, 8)
    assert unlike[90:100].all()
    assert unlike[:90].mean() < 0.03  # (the grain's extremes: a few per cent)
    assert unlike[100:].mean() < 0.03
    assert not unlike_colours(lab, np.zeros((200, 200), bool), 8).any()  # nothing to tell by


def test_a_part_one_photo_lost_to_its_backdrop_is_taken_back_from_the_others() -> None:
    """A pale post on grey paper, lit almost like the paper in three neighbouring photos
    (2 Lab units off it: their masks lost it), plain white in the rest: the others' silhouettes
    hold it, so the four photos' masks take its tinted pixels back, and no paper."""
    size = 160
    corners = np.array([[x, y, z] for x in (-0.1, 0.1) for y in (0.0, 0.5) for z in (-0.1, 0.1)])
    region = ObjectRegion(
        center=np.array([0.0, 0.25, 0.0]),
        up=np.array([0.0, 1.0, 0.0]),
        box_corners=corners * 1.3,
        ground=None,
        camera_distance=1.9,
    )
    options = MaskOptions(recover_max_dissent=3)
    radius = max(1, round(options.mask_dilate_rel * size))
    cameras, photos, masks, posts = [], [], [], []
    for index, angle in enumerate(np.radians(np.arange(0, 360, 30))):
        eye = np.array([1.6 * np.cos(angle), 1.0, 1.6 * np.sin(angle)])
        R, t = look_at(eye, np.array([0.0, 0.25, 0.0]), up=(0.0, 1.0, 0.0))
        K = np.array([[150.0, 0, size / 2 - 0.5], [0, 150.0, size / 2 - 0.5], [0, 0, 1]])
        camera = Camera(name=f"{index}", width=size, height=size, K=K, R=R, t=t)
        uv, _ = camera.project(corners)
        post = np.zeros((size, size), np.uint8)
        cv2.fillConvexPoly(post, cv2.convexHull(np.round(uv).astype(np.int32)), 1)
        lost = index in (2, 3, 4)
        photo = np.full((size, size, 3), (220, 216, 215), np.uint8)
        photo[post > 0] = (216, 214, 213) if lost else (250, 250, 250)
        mask = np.zeros_like(post) if lost else cv2.dilate(post, np.ones((5, 5), np.uint8))
        cameras.append(camera)
        photos.append(photo)
        masks.append(mask > 0)
        posts.append(post > 0)
    recovered = recover_from_other_views(cameras, photos, masks, region, options)
    for index in (2, 3, 4):
        inner = cv2.erode(posts[index].astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert recovered[index][inner].all()
        grown = cv2.dilate(posts[index].astype(np.uint8), disc_kernel(radius + 2)) > 0
        assert not recovered[index][~grown].any()
    for index in (0, 1, 6, 7):
        assert (recovered[index] == masks[index]).all()


def ring_cameras(roll_deg: float, elevation_deg: float = 20.0) -> list[Camera]:
    """16 cameras round the origin, up +y, looking at it from `elevation_deg` above, each
    rolled by `roll_deg` about its own axis (alternately either way)."""
    K = np.array([[400.0, 0, 160], [0, 400.0, 160], [0, 0, 1]])
    cameras = []
    for index, azimuth in enumerate(np.radians(np.arange(16) * 22.5)):
        elevation = np.radians(elevation_deg)
        eye = 3.0 * np.array(
            [
                np.cos(elevation) * np.sin(azimuth),
                np.sin(elevation),
                np.cos(elevation) * np.cos(azimuth),
            ]
        )
        R, t = look_at(eye, np.zeros(3))
        roll = np.radians(roll_deg if index % 2 else -roll_deg)
        turn = np.array(
            [[np.cos(roll), -np.sin(roll), 0], [np.sin(roll), np.cos(roll), 0], [0, 0, 1]]
        )
        cameras.append(Camera(name=f"{index}", width=320, height=320, K=K, R=turn @ R, t=turn @ t))
    return cameras


def test_up_is_the_photos_up_or_for_rolled_photos_the_ring_they_stand_on() -> None:
    """Upright photos (or tilted a little) give their own mean up; photos rolled a quarter turn
    either way (as Middlebury's were) agree on none, and up is the ring's normal on the side the
    cameras look down from."""
    for roll in (0.0, 10.0, 90.0):
        up = camera_up(ring_cameras(roll))
        assert up @ [0.0, 1.0, 0.0] > np.cos(np.radians(2.0)), roll
