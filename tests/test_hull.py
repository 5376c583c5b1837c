"""The visual hull: silhouettes of a known shape give back its depth; seen-through depths go."""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from recon import fusion, hull
from recon.synth import SynthOptions, ring_cameras

RADIUS = 0.1  # a sphere at the origin


def sphere_mask(camera) -> np.ndarray:
    """(h, w) uint8 silhouette of the sphere, by ray–sphere intersection per pixel."""
    rows, cols = np.mgrid[0 : camera.height, 0 : camera.width]
    rays = np.linalg.inv(camera.K) @ np.stack([cols.ravel(), rows.ravel(), np.ones(cols.size)])
    directions = (camera.R.T @ rays).T
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    closest = -(directions @ camera.center)  # along each ray, nearest approach to the origin
    miss = np.linalg.norm(camera.center + closest[:, None] * directions, axis=1)
    return ((miss < RADIUS) * 255).astype(np.uint8).reshape(camera.height, camera.width)


def sphere_depth(camera) -> np.ndarray:
    rows, cols = np.mgrid[0 : camera.height, 0 : camera.width]
    rays = (np.linalg.inv(camera.K) @ np.stack([cols.ravel(), rows.ravel(), np.ones(cols.size)])).T
    directions = rays @ camera.R  # world directions per unit of depth
    # |c + s d|² = r²  →  s² |d|² + 2 s c·d + |c|² − r² = 0; depth = s (d's z is 1)
    a = (directions**2).sum(axis=1)
    b = 2 * directions @ camera.center
    c = camera.center @ camera.center - RADIUS**2
    disc = b * b - 4 * a * c
    depth = np.where(disc > 0, (-b - np.sqrt(np.maximum(disc, 0))) / (2 * a), 0)
    return depth.reshape(camera.height, camera.width)


def sphere_hull(size_px: int, resolution: int) -> tuple[list, hull.HullField]:
    """A ring of 24 cameras round the sphere and the visual hull of its silhouettes."""
    options = SynthOptions(views=24, size_px=size_px)
    cameras = ring_cameras(np.zeros(3), 3 * RADIUS, 24, options, np.random.default_rng(0))
    masks = [sphere_mask(camera) for camera in cameras]
    box = np.array([[x, y, z] for x in (-0.15, 0.15) for y in (-0.15, 0.15) for z in (-0.15, 0.15)])
    up = np.array([0, 1.0, 0])
    return cameras, hull.silhouette_field(cameras, masks, box, up, resolution=resolution)


def test_the_hull_of_a_sphere_lies_on_it_and_stereo_that_sees_through_it_wins() -> None:
    cameras, field = sphere_hull(size_px=160, resolution=96)

    camera = cameras[0]
    truth = sphere_depth(camera)
    depth = hull.hull_depth(field, camera, camera.K, truth > 0)
    inner = truth > 0
    assert (depth[inner] > 0).mean() > 0.97
    # Within a pixel or so of the truth (a pixel here is about 2 mm at the sphere).
    error = np.abs(truth - depth)[inner & (depth > 0)]
    assert np.median(error) < 0.003
    assert np.percentile(error, 90) < 0.006
    assert (depth[~inner] == 0).mean() > 0.99

    # Another photo's stereo sees a surface behind the sphere's front (as through a mug's
    # opening): the hull depths it looks through are dropped; a consistent map keeps them.
    other = cameras[1]
    far = np.where(sphere_mask(other) > 0, sphere_depth(other) * 1.5, 0).astype(np.float32)
    kept = hull.drop_seen_through(depth, camera, camera.K, [(other, far, other.K)], 0.02)
    assert (kept > 0).sum() < 0.8 * (depth > 0).sum()
    same = sphere_depth(other).astype(np.float32)
    kept = hull.drop_seen_through(depth, camera, camera.K, [(other, same, other.K)], 0.02)
    assert (kept > 0).sum() > 0.95 * (depth > 0).sum()


def test_stereo_depths_beside_the_outline_leave_and_those_on_the_surface_stay() -> None:
    """PatchMatch carries a product's depth out onto a plain backdrop by a pixel or two: those
    depths lie outside the hull (outside the other photos' silhouettes) and go; the surface's
    own depths, the hull's surface among them, stay."""
    # A hull cell of about 5 px, as round a product in 960 px photos.
    cameras, field = sphere_hull(size_px=320, resolution=64)
    camera = cameras[0]
    truth = sphere_depth(camera).astype(np.float32)
    on = truth > 0
    # Each pixel within 6 of the outline takes the depth of the rim beside it (a grey dilation).
    fattened = np.where(on, truth, cv2.dilate(truth, np.ones((13, 13), np.uint8)))
    outside_px = cv2.distanceTransform((~on).astype(np.uint8), cv2.DIST_L2, 5)
    beside = ~on & (fattened > 0) & (outside_px >= 4)
    assert beside.sum() > 100

    kept = hull.drop_outside(fattened, camera, camera.K, field, 0.5)
    # (The hull looks its silhouettes' distances up at the nearest pixel, which puts it about a
    # pixel inside: a few depths at the outline go too.)
    assert (kept[on] > 0).mean() > 0.94
    assert (kept[beside] > 0).mean() < 0.1
    assert np.array_equal(kept[kept > 0], fattened[kept > 0])  # kept depths are unchanged


def test_two_photos_that_agree_carve_a_shallow_recess_and_stereo_noise_carves_nothing() -> None:
    """Two photos whose depths lie 3 % beyond the sphere in the middle of their views (a soup
    can's lid below its rim) carve the hull in front of their depths at fusion's margins; one photo
    alone does not (stereo's outliers); depths on the surface, with the 0.2 % noise of stereo,
    carve nothing."""
    cameras, field = sphere_hull(size_px=160, resolution=96)
    pair = cameras[:2]
    cells = np.argwhere(np.ones(field.values.shape, dtype=bool))
    radius = np.linalg.norm((cells * field.voxel + field.origin) @ field.axes, axis=1)
    in_sphere = (radius < RADIUS - 0.001).reshape(field.values.shape)
    options = fusion.FusionOptions()
    rng = np.random.default_rng(0)

    def carved(cameras: list, recess: float) -> np.ndarray:
        others = []
        for camera in cameras:
            rows, cols = np.mgrid[0 : camera.height, 0 : camera.width]
            disc = (rows - camera.height / 2) ** 2 + (cols - camera.width / 2) ** 2 < 10**2
            noise = 1 + rng.normal(0, 0.002, (camera.height, camera.width))
            depth = sphere_depth(camera) * np.where(disc, 1 + recess, 1) * noise
            others.append((camera, depth.astype(np.float32), camera.K))
        carved = hull.carve_seen_through(
            field, others, options.hull_free_space_rel, options.hull_close_carve_views,
            agreeing_margin_rel=options.hull_carve_agreeing_rel,
        )  # fmt: skip
        return (field.values > 0) & (carved.values <= 0)

    assert (carved(pair, 0.03) & in_sphere).sum() > 100
    assert not (carved(pair[:1], 0.03) & in_sphere).any()
    assert not carved(pair, 0.0).any()


def test_only_a_wide_opening_in_thin_walls_sinks_to_its_floor() -> None:
    """A container (walls 1 cell thick round an opening carved 6 layers down) sinks to its
    floor; the same opening in a body 5 cells wider all round (an armchair's seat between its
    arms) does not, nor does a narrow opening (a shoe's collar) in the thin-walled one."""
    inside = np.zeros((24, 24, 28), dtype=bool)
    inside[5:19, 2:22, 5:23] = True  # the container: 14 x 18 cells, layers 2..21
    seen = np.zeros_like(inside)
    seen[6:18, 16:22, 6:22] = True  # its opening, 12 x 16 of the 14 x 18 cells
    occupied = np.zeros_like(inside)
    sunk, _ = hull.sink_hollows(
        seen, inside, occupied, floor_cells=2, min_run=4, min_opening=0.2, min_outside=0.5
    )
    assert sunk[12, 4:16, 14].all()  # down to the floor (layer 2 + 2) ...
    assert not sunk[12, :4, 14].any()  # ... which stays
    body = np.zeros_like(inside)
    body[0:24, 2:22, 0:28] = True  # the same opening in a wide body
    np.testing.assert_array_equal(
        hull.sink_hollows(
            seen, body, occupied, floor_cells=2, min_run=4, min_opening=0.2, min_outside=0.5
        )[0],
        seen,
    )
    collar = np.zeros_like(inside)
    collar[10:13, 16:22, 12:15] = True  # 3 x 3 cells: narrow
    np.testing.assert_array_equal(
        hull.sink_hollows(
            collar, inside, occupied, floor_cells=2, min_run=4, min_opening=0.2, min_outside=0.5
        )[0],
        collar,
    )


def test_a_well_sinks_to_its_floor_when_stereo_saw_no_floor_under_it() -> None:
    """In a wide body (the ring round the opening inside the hull, as round the printed mug's
    carved opening) an opening stereo carved down 0.4 of its width or more sinks to its floor:
    a ring of photos sees no deeper into a well. One carved a third of its width (an
    armchair's seat) does not, nor a deep one with a surface stereo saw at the bottom of the
    carve (its floor)."""
    body = np.zeros((24, 24, 28), dtype=bool)
    body[0:24, 2:22, 0:28] = True  # layers 2..21
    occupied = np.zeros_like(body)

    def sinks(seen: np.ndarray, occupied: np.ndarray) -> bool:
        sunk, _ = hull.sink_hollows(
            seen, body, occupied, floor_cells=2, min_run=4, min_opening=0.05, min_outside=0.5,
            min_well_depth=0.4,
        )  # fmt: skip
        return bool((sunk & ~seen).any())

    well = np.zeros_like(body)
    well[8:16, 14:22, 10:18] = True  # 8 x 8 cells, carved 8 layers down
    sunk, openings = hull.sink_hollows(
        well, body, occupied, floor_cells=2, min_run=4, min_opening=0.05, min_outside=0.5,
        min_well_depth=0.4,
    )  # fmt: skip
    assert openings[8:16, 10:18].all()
    assert sunk[12, 4:22, 14].all()  # down to the floor (layer 2 + 2) ...
    assert not sunk[12, :4, 14].any()  # ... which stays
    seat = np.zeros_like(body)
    seat[6:18, 18:22, 6:22] = True  # 12 x 16 cells, carved 4 layers down
    assert not sinks(seat, occupied)
    floor = occupied.copy()
    floor[8:16, 13, 10:18] = True  # stereo saw the surface the carve stopped at
    assert not sinks(well, floor)
    assert sinks(well, occupied)


def test_a_container_keeps_its_walls_where_stereo_saw_through_them() -> None:
    """A round cup of hull (radius 10 cells, 16 layers, a cap 3 layers narrower above it)
    whose carved hollow reached its outline: up to the rim a wall 3 cells thick is kept, the
    cap's carving stays, and the hull alone decides the cup's cells (and 2 round them) up to
    the rim, nothing beyond it, and none within 2 cells of where stereo saw a surface, or of
    the looser stereo cells when they cover the walls."""
    x, z = np.mgrid[0:28, 0:28]
    disc = (x - 14) ** 2 + (z - 14) ** 2 <= 10**2
    cap = (x - 14) ** 2 + (z - 14) ** 2 <= 8**2
    inside = np.zeros((28, 24, 28), dtype=bool)
    inside[:, 2:18, :] = disc[:, None, :]  # layers 2..17; the rim is layer 17
    inside[:, 18:21, :] = cap[:, None, :]  # the hull's cap over the opening
    seen = inside.copy()
    seen[:, 2:4, :] = False  # the floor
    occupied = np.zeros_like(inside)
    occupied[14, 10, 5] = True  # stereo saw the wall there
    walled, owned = hull.container_walls(seen, inside, disc, 3.0, occupied)
    depth = ndimage.distance_transform_edt(disc)  # cells in from the outline
    for layer in (4, 10, 17):
        np.testing.assert_array_equal(walled[:, layer, :], disc & (depth > 3.0))
    np.testing.assert_array_equal(walled[:, 18:21, :], seen[:, 18:21, :])  # the cap's carving
    np.testing.assert_array_equal(walled[:, 2:4, :], seen[:, 2:4, :])  # the floor
    grown = ndimage.binary_dilation(disc, iterations=2)
    for layer in (2, 17):
        np.testing.assert_array_equal(owned[:, layer, :], grown)
    assert not owned[14, 10, 5]  # where stereo saw the wall ...
    assert not owned[14, 10, 7]  # ... and 2 cells from it
    assert owned[14, 10, 8]
    assert owned[14, 13, 5]
    assert not owned[:, 18:, :].any()
    assert not owned[:, :2, :].any()
    # Where stereo saw the walls (the outermost ring of cells held 2 depths from 3 photos
    # each: a printed mug), stereo draws their outside; a few such cells are a glaze's noise.
    ring = np.zeros_like(inside)
    ring[:, 2:18, :] = (disc & (depth <= 1))[:, None, :]
    _, owned_seen = hull.container_walls(seen, inside, disc, 3.0, occupied, seen_walls=ring)
    assert not owned_seen[:, 10, :][disc & (depth <= 3)].any()
    assert owned_seen[:, 10, :][disc & (depth > 3)].all()  # the hollow stays the hull's
    few = ring & (np.arange(28) < 8)[:, None, None]
    _, owned_few = hull.container_walls(seen, inside, disc, 3.0, occupied, seen_walls=few)
    np.testing.assert_array_equal(owned_few, owned)


def test_a_cell_is_a_stereo_surface_where_two_photos_each_put_many_depths_in_it() -> None:
    """Stray depths, 4 a photo from 8 photos, do not make a cell occupied (a white mug's
    glaze); 9 from each of two photos do."""
    field = hull.HullField(np.zeros(3), np.eye(3), 0.1, np.ones((10, 10, 10), np.float32))
    cameras = ring_cameras(np.full(3, 0.5), 3.0, 8, SynthOptions(views=8, size_px=640),
                           np.random.default_rng(0))  # fmt: skip

    def depth_at(camera, point: np.ndarray, side: int) -> np.ndarray:
        """A depth map with a `side` x `side` block of pixels round `point`'s, at its depth."""
        depth = np.zeros((camera.height, camera.width), np.float32)
        uv, z = camera.project(point[None])
        col, row = np.round(uv[0]).astype(int) - side // 2
        depth[row : row + side, col : col + side] = z[0]
        return depth

    # 3 x 3 pixels round a cell's centre stay in the cell (a pixel is 0.012 there).
    stray, dense = np.array([0.2, 0.2, 0.2]), np.array([0.7, 0.7, 0.7])
    maps = [(c, depth_at(c, stray, 2) + depth_at(c, dense, 3 if i < 2 else 0), c.K)
            for i, c in enumerate(cameras)]  # fmt: skip
    occupied = hull.stereo_cells(field, maps)
    assert occupied[7, 7, 7]
    assert not occupied[2, 2, 2]
    assert occupied.sum() == 1


def test_space_only_some_photos_frame_is_not_hull_when_asked() -> None:
    # The lower ring's outlines took the whole frame (a white mug's seedless outlines over a
    # pale backdrop); the upper ring's are right. Space off to the sphere's side is framed by the
    # lower ring alone: hull when 3 photos may judge it, not when 3/4 of the photos must
    # (masks.silhouette_region asks that).
    options = SynthOptions(views=24, size_px=120)
    cameras = ring_cameras(np.zeros(3), 3 * RADIUS, 24, options, np.random.default_rng(0))
    masks = [
        sphere_mask(camera)
        if index >= 12
        else np.full((camera.height, camera.width), 255, np.uint8)
        for index, camera in enumerate(cameras)
    ]
    box = np.array([[x, y, z] for x in (-0.4, 0.4) for y in (-0.4, 0.4) for z in (-0.4, 0.4)])
    up = np.array([0, 1.0, 0])

    def reach(min_judging_views: int) -> np.ndarray:
        field = hull.silhouette_field(
            cameras, masks, box, up, resolution=64, min_judging_views=min_judging_views
        )
        inside = np.argwhere(field.values > 0)
        return np.abs((inside * field.voxel + field.origin) @ field.axes).max(axis=0)

    assert reach(hull.MIN_JUDGING_VIEWS)[[0, 2]].min() > 3 * RADIUS
    assert reach(18)[[0, 2]].max() < 1.1 * RADIUS


def test_a_hull_outvoted_by_one_mask_that_missed_the_product_keeps_it() -> None:
    """One photo's outline that missed the product (left empty) carves the whole strict hull
    away; with one photo outvoted, the hull is the other photos', and where two photos
    missed, one outvoted photo is not enough."""
    options = SynthOptions(views=12, size_px=120)
    cameras = ring_cameras(np.zeros(3), 3 * RADIUS, 12, options, np.random.default_rng(0))
    masks = [sphere_mask(camera) for camera in cameras]
    box = np.array([[x, y, z] for x in (-0.15, 0.15) for y in (-0.15, 0.15) for z in (-0.15, 0.15)])
    up = np.array([0, 1.0, 0])
    whole = hull.silhouette_field(cameras, masks, box, up, resolution=48)
    one_missed = [np.zeros_like(masks[0]), *masks[1:]]
    strict = hull.silhouette_field(cameras, one_missed, box, up, resolution=48)
    tolerant = hull.silhouette_field(cameras, one_missed, box, up, resolution=48, outvoted_views=1)
    assert (whole.values > 0).sum() > 1000
    assert (strict.values > 0).sum() == 0
    # The other eleven photos' hull: the sphere's, a little looser for the photo lost.
    assert ((tolerant.values > 0) | ~(whole.values > 0)).all()
    assert (tolerant.values > 0).sum() < 1.2 * (whole.values > 0).sum()
    two_missed = [np.zeros_like(masks[0]), np.zeros_like(masks[0]), *masks[2:]]
    outvoted = hull.silhouette_field(cameras, two_missed, box, up, resolution=48, outvoted_views=1)
    assert (outvoted.values > 0).sum() == 0
