"""Fidelity self-check: the finished model drawn from photos held out of texturing and compared
with them, so a capture without ground truth still gets a measure of how faithful its model is."""

from __future__ import annotations

import cv2
import numpy as np

from recon.cameras import Camera
from recon.masks import MaskOptions
from recon.morphology import shrink_mask
from recon.render import Lighting, OffscreenRenderer, Rendering
from recon.textured_mesh import TexturedMesh

# Held-out photos are at least this far apart in viewing direction, so no part of the product
# loses two neighbouring photos at once.
MIN_HOLDOUT_SEPARATION_DEG = 60.0
# Silhouettes agree where they are within this share of the photo size of each other: product
# masks are grown a little on purpose (masks.MaskOptions.mask_dilate_rel) and edges are soft.
SILHOUETTE_TOLERANCE_REL = 0.02
# A photo pixel this close (RGB, 8-bit) to a main colour of its background, or to a blend of
# two of them, is taken for background: seen through a gap that the (filled) product mask
# covers, or in the margin the mask is grown by.
BACKGROUND_COLOUR_DISTANCE = 15.0
# A part the model lacks shows in the photo as at least this many touching pixels unlike the
# background: the odd pixel beyond it is the photo's JPEG ringing beside a dark outline, a few
# pixels out on light paper (10 such pixels took 1.8 dB off the avocado on plain paper, whose
# check read 1.9 dB below the truth's).
MIN_MISSING_PART_PX = 4
# The background's main colours are read in this ring around the product mask (a share of the
# photo size wide), away from the photo's edge by BORDER_REL: the backdrop the outline blends
# with. Read over the whole photo they took in the black corners undistortion left then (its
# corners now repeat the photo's edge), and a dark product's pixels passed for backdrop (the
# shoe on plain paper read 4 dB off).
BACKDROP_RING_REL = 0.05
BORDER_REL = 0.01
# The outline band, this share of the photo size wide (2 px at least) on either side of the
# render's outline. `recon evaluate` draws the model and the truth over black and scores the
# truth's silhouette (alpha >= 0.5), so along the outline it counts the share of each pixel
# the model misses (or covers too much) times the product's colour, not the backdrop. There
# the photo is un-blended from its backdrop: photo = share × model colour + (1 - share) ×
# backdrop colour, fitted per pixel (BLEND_TOLERANCE_REL), and compared, less the backdrop's
# part, where the product's share is half or more. A model a pixel or two wider than the
# product thus costs little, and one a pixel narrower costs what it costs in the truth: the
# white mug read 6 dB kinder than the truth when the band was only left out.
OUTLINE_BAND_REL = 0.004
# The blend fits within BACKGROUND_COLOUR_DISTANCE or this share of the distance between the
# backdrop and the model's colour, whichever is more: the model's colour at the edge comes from
# another photo, and a lit rim (a dark avocado's skin on light paper) strays from it by 20-30
# levels.
BLEND_TOLERANCE_REL = 0.25
# Where the model's colour is within this distance of the backdrop's, the share cannot be told
# from the photo's colours: such an outline pixel is product where the mask, less the margin it
# is grown by, holds it (mask_core), and is compared as the photo shows it. The armchair's
# metal legs, lit as grey as the pale paper, read 2.5 dB kinder than the truth when their
# outline, and so most of the legs, a few pixels wide, was left out: evaluate counts the model's
# legs a pixel or two off there. Beyond the model's outline, a band pixel that looks like the
# backdrop is backdrop, as beyond the band: wood grain fitted a blend of the table and a brown
# avocado seed's edge (the check read 1.2 dB below the truth's at that view).
UNBLEND_MIN_CONTRAST = 2 * BACKGROUND_COLOUR_DISTANCE
# On a turntable the product turns under the room's lights, so each photo shows it shaded as no
# other photo does, and the texture (taken from its neighbours) cannot match a held-out photo's
# shading: the check read 2.9 dB below `recon evaluate`'s novel views on the turntable cereal
# box (those are lit alike from every side). There the render is compared after a grey gain,
# linear in the surface normal in the camera's frame (where the room's lights stay), is fitted
# to the photo: shading, a smooth function of the normal, is matched, while misprinted,
# blurred or misplaced texture and missing parts still count (the box's held-out photos 23.5
# and 22.5 -> 24.5 and 25.0 dB, its novel views 25.9). The gain is kept within these bounds.
SHADING_GAIN_RANGE = (0.5, 2.0)
# Elsewhere a held-out photo keeps its own exposure and white balance (auto exposure), while
# the texture is levelled to the photos it came from (texturing's exposure gains): the render is
# compared after a gain is fitted to the photo: an exposure (one gain, within
# SHADING_GAIN_RANGE) and a white balance (each channel's own gain within WHITE_BALANCE_RANGE
# of it; wider, it would take a product printed in the wrong colours for the right one).
# Misprinted, blurred or misplaced texture and missing parts still count. Every photo ±0.6 EV
# and ±10 % per channel (benchmarks/phone_photos.py), the check against the truth's novel
# views: mustard bottle on a table 25.6 -> 30.8 dB (truth 31.9), plain soup can 26.1 -> 28.8
# (29.4), plain avocado 29.3 -> 34.4 (35.4); on the photos as rendered +0.03 to +0.1 dB.
WHITE_BALANCE_RANGE = (0.9, 1.1)
# A rendered depth pixel gives a normal where its four neighbours are on the model and their
# depths differ by under this share of its own (a face seen 87° off still passes at 960 px).
NORMAL_MAX_DEPTH_STEP_REL = 0.05


def choose_holdout(
    cameras: list[Camera], count: int, candidates: set[int] | None = None
) -> list[int]:
    """Indices of up to `count` photos to keep out of texturing: the most redundant ones (whose
    nearest other photo looks the most alike in direction), spread apart around the product,
    from the `candidates` (indices; None: every photo)."""
    if count <= 0 or len(cameras) < 3:
        return []
    axes = np.array([camera.R[2] for camera in cameras])  # optical axes in the world
    cosines = np.clip(axes @ axes.T, -1.0, 1.0)
    np.fill_diagonal(cosines, -1.0)
    nearest_deg = np.degrees(np.arccos(cosines.max(axis=1)))
    separation_cos = np.cos(np.radians(MIN_HOLDOUT_SEPARATION_DEG))
    chosen: list[int] = []
    for index in np.argsort(nearest_deg, kind="stable"):
        if candidates is not None and index not in candidates:
            continue
        if all(axes[index] @ axes[other] < separation_cos for other in chosen):
            chosen.append(int(index))
        if len(chosen) == count:
            break
    return sorted(chosen)


def check_fidelity(
    model: TexturedMesh,
    cameras: list[Camera],
    images: list[np.ndarray],
    masks: list[np.ndarray | None],
    *,
    match_shading: bool = False,
    still_room: list[np.ndarray | None] | None = None,
) -> list[dict]:
    """Per held-out photo: PSNR (dB) of the unlit render against the photo over the product,
    and the IoU of the render's silhouette with the photo's product mask, up to
    SILHOUETTE_TOLERANCE_REL (None without a mask; then the PSNR is over the whole render).
    The PSNR is taken after the render's colours are matched to the photo's exposure and
    white balance (`matched_exposure`), or with `match_shading` (a turntable's photos: see
    SHADING_GAIN_RANGE) to its shading (`matched_shading`); the entry also holds the PSNR
    before (`psnr_db_unmatched`) and the gain (`colour_gain` per channel, or `shading_gain`'s
    coefficients).
    `still_room`: per photo, (h, w) bool where it shows a turntable's room unchanged, or None
    (see product_as_evaluated).

    The product is what `recon evaluate` scores in its novel views, as far as the photo shows
    it: the mask, less what looks like background in it, with the outline band un-blended from
    the backdrop (see OUTLINE_BAND_REL). A hole or a missing part, thin ones too (a chair's
    legs), counts as the black drawn in its place, as it does in the truth's novel views.

    images: (h, w, 3) uint8 RGB at the cameras' sizes; masks: (h, w) bool or None.
    """
    results = []
    still_room = still_room or [None] * len(cameras)
    with OffscreenRenderer(model, lighting=Lighting.UNLIT) as renderer:
        for camera, image, mask, still in zip(cameras, images, masks, still_room, strict=True):
            rendering = renderer.render(camera, supersample=2)
            drawn = rendering.mask
            size_px = max(camera.width, camera.height)
            compared, target = drawn, image
            if mask is not None:
                compared, target = product_as_evaluated(rendering, image, mask, size_px, still)
            psnr, matching = None, {}
            if compared.any():
                if match_shading:
                    colour, gain = matched_shading(rendering, camera, target, compared)
                    key = "shading_gain"
                else:
                    colour, gain = matched_exposure(rendering, target, compared)
                    key = "colour_gain"
                unmatched = masked_psnr_db(rendering.rgb, target, compared)
                matching = {
                    "psnr_db_unmatched": round(unmatched, 2),
                    key: [round(float(c), 4) for c in gain],
                }
                psnr = round(masked_psnr_db(colour, target, compared), 2)
            iou = None
            if mask is not None and (mask | drawn).any():
                iou = round(tolerant_iou(mask, drawn, SILHOUETTE_TOLERANCE_REL * size_px), 4)
            results.append(
                {"image": camera.name, "psnr_db": psnr, "silhouette_iou": iou, **matching}
            )
    return results


def matched_exposure(
    rendering: Rendering, target: np.ndarray, compared: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The render's (h, w, 3) float colours times the gains per colour channel that best fit
    them to the photo `target` over the `compared` pixels (least squares): one exposure gain
    within SHADING_GAIN_RANGE, each channel's within WHITE_BALANCE_RANGE of it; and the (3,)
    gains."""
    colour = rendering.rgb.astype(np.float64)
    drawn, photo = colour[compared], target[compared].astype(np.float64)
    exposure = (drawn * photo).sum() / max(float((drawn * drawn).sum()), 1e-9)
    channels = (drawn * photo).sum(axis=0) / np.maximum((drawn * drawn).sum(axis=0), 1e-9)
    exposure = float(np.clip(exposure, *SHADING_GAIN_RANGE))
    gain = exposure * np.clip(channels / exposure, *WHITE_BALANCE_RANGE)
    return np.clip(colour * gain, 0.0, 255.0), gain


def matched_shading(
    rendering: Rendering, camera: Camera, target: np.ndarray, compared: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The render's (h, w, 3) float colours times the grey gain a + b·n (n: the surface normal
    in `camera`'s frame) that best fits them to the photo `target` over the `compared` pixels
    the model draws, and the gain's (a, bx, by, bz): see SHADING_GAIN_RANGE."""
    colour = rendering.rgb.astype(np.float64)
    normals, valid = depth_normals(rendering.depth, camera.K)
    fitted = compared & valid
    if not fitted.any():
        return colour, np.array([1.0, 0.0, 0.0, 0.0])
    basis = np.hstack([np.ones((int(fitted.sum()), 1)), normals[fitted]])
    drawn_grey = colour[fitted].mean(axis=1)
    photo_grey = target[fitted].astype(np.float64).mean(axis=1)
    coefficients, *_ = np.linalg.lstsq(basis * drawn_grey[:, None], photo_grey, rcond=None)
    normals = nearest_filled(normals, valid)  # outline pixels take their neighbours' normal
    gain = np.clip(coefficients[0] + normals @ coefficients[1:], *SHADING_GAIN_RANGE)
    return np.clip(colour * gain[..., None], 0.0, 255.0), coefficients


def depth_normals(depth: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(h, w, 3) unit surface normals in the camera's frame, facing it, from a rendered (h, w)
    depth map (0 where empty) with intrinsics K, and (h, w) bool where they can be trusted:
    the four neighbours are on the model, within NORMAL_MAX_DEPTH_STEP_REL in depth."""
    h, w = depth.shape
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    z = depth.astype(np.float64)
    points = np.dstack([(cols - K[0, 2]) / K[0, 0] * z, (rows - K[1, 2]) / K[1, 1] * z, z])
    along_row = np.zeros_like(points)
    along_col = np.zeros_like(points)
    along_row[:, 1:-1] = points[:, 2:] - points[:, :-2]
    along_col[1:-1] = points[2:] - points[:-2]
    normals = np.cross(along_row, along_col)
    normals[(normals * points).sum(axis=2) > 0] *= -1.0
    length = np.linalg.norm(normals, axis=2)
    centre = z[1:-1, 1:-1]
    valid = np.zeros((h, w), bool)
    valid[1:-1, 1:-1] = centre > 0
    for neighbour in (z[1:-1, 2:], z[1:-1, :-2], z[2:, 1:-1], z[:-2, 1:-1]):
        valid[1:-1, 1:-1] &= np.abs(neighbour - centre) <= NORMAL_MAX_DEPTH_STEP_REL * centre
    valid &= length > 0
    normals[valid] /= length[valid][:, None]
    return normals, valid


def product_as_evaluated(
    rendering: Rendering,
    image: np.ndarray,
    mask: np.ndarray,
    size_px: int,
    still_room: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The (h, w) bool pixels to compare and the (h, w, 3) float photo to compare them with:
    the photo over the product, un-blended from the backdrop along the render's outline.

    Beyond the render's outline, `still_room` ((h, w) bool or None) is backdrop too: the masks
    stage grows a product's mask a little, and on a turntable it may take in some of the
    patterned room beside the product (the mustard bottle's masks held wall lettering 30 px
    out), which the backdrop's main colours (backdrop_palette) cannot tell from a part missing
    from the model: the check read 4 dB below the novel views there. The room stays put while
    the product turns, so a pixel other photos of the same tripod position repeat
    (turntable.still_pixels) is the room. (A plain part the model lacks, lit alike at every
    turn, repeats too and goes uncounted in the PSNR; the silhouette IoU still counts it.)"""
    drawn = rendering.mask
    palette = backdrop_palette(image, mask, size_px=size_px)
    room = np.zeros_like(mask) if still_room is None else still_room
    width = max(2.0, OUTLINE_BAND_REL * size_px)
    inside = cv2.distanceTransform(drawn.astype(np.uint8), cv2.DIST_L2, 5)
    outside = cv2.distanceTransform((~drawn).astype(np.uint8), cv2.DIST_L2, 5)
    band = mask & (np.where(drawn, inside, outside) <= width)
    target = image.astype(np.float32)
    product_in_band = np.zeros_like(band)
    if band.any():
        covered = rendering.mask if rendering.coverage is None else rendering.coverage > 0.05
        colour = nearest_filled(unblended_colour(rendering), covered)
        share, backdrop = unblend(image, colour, band, palette)
        untold = np.isnan(share)  # the product's colour is the backdrop's: the mask tells
        share[untold] = mask_core(mask, size_px)[band][untold]
        target[band] -= (1.0 - share[:, None]) * backdrop
        product_in_band[band] = share >= 0.5
        beside = band & ~drawn
        product_in_band &= drawn | ~(room | looks_like_background(image, beside, palette))
    beyond = mask & ~drawn & ~band  # a missing part, or the margin the mask is grown by
    missing = beyond & ~room & ~looks_like_background(image, beyond & ~room, palette)
    _, labels, stats, _ = cv2.connectedComponentsWithStats(missing.astype(np.uint8))
    missing &= (stats[:, cv2.CC_STAT_AREA] >= MIN_MISSING_PART_PX)[labels]
    compared = (drawn & mask & ~band) | product_in_band | missing
    return compared, np.clip(target, 0.0, 255.0)


def mask_core(
    mask: np.ndarray, size_px: int, grown_rel: float = MaskOptions().mask_dilate_rel
) -> np.ndarray:
    """(h, w) bool: the product mask less the margin the masks stage grows it by (`grown_rel`
    of `size_px`, masks.MaskOptions.mask_dilate_rel; 0 for a mask that was not grown): the
    product's silhouette as the masks stage found it, by cues the photo's colours alone may
    not show."""
    radius = max(1, round(grown_rel * size_px)) if grown_rel > 0 else 0
    return shrink_mask(mask.astype(np.uint8), radius) > 0


def masked_psnr_db(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, 8-bit scale) of two (h, w, 3) images over the (h, w) bool `mask`; 100 when
    they are equal there."""
    difference = a.astype(np.float64) - b.astype(np.float64)
    mse = float((difference[mask] ** 2).mean())
    return 100.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def backdrop_palette(
    image: np.ndarray, mask: np.ndarray, *, size_px: int | None = None, colours: int = 8
) -> np.ndarray:
    """(k, 3) float32 main colours (k-means, k <= `colours`) of the photo in a ring around the
    product mask (BACKDROP_RING_REL of `size_px`, the photo's long side by default), away from
    the photo's edge; (0, 3) when there is no such pixel."""
    size_px = size_px or max(image.shape[:2])
    distance = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
    ring = (distance > 0) & (distance <= max(2.0, BACKDROP_RING_REL * size_px))
    border = max(1, round(BORDER_REL * size_px))
    ring[:border] = ring[-border:] = False
    ring[:, :border] = ring[:, -border:] = False
    outside = image[ring].astype(np.float32)
    if not len(outside):
        return np.zeros((0, 3), np.float32)
    rng = np.random.default_rng(0)
    sample = outside[rng.choice(len(outside), min(len(outside), 20000), replace=False)]
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    count = min(colours, len(sample))
    cv2.setRNGSeed(0)  # k-means++ seeding draws from OpenCV's generator: the same palette each run
    _, _, centres = cv2.kmeans(sample, count, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    return centres


def looks_like_background(image: np.ndarray, where: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(h, w) bool: pixels of `where` within BACKGROUND_COLOUR_DISTANCE of one of the (k, 3)
    `palette` colours or of a blend of two of them (where a wall meets a table)."""
    result = np.zeros(where.shape, dtype=bool)
    if not where.any() or not len(palette):
        return result
    pixels = image[where].astype(np.float32)  # (n, 3)
    limit = BACKGROUND_COLOUR_DISTANCE**2
    matched = np.zeros(len(pixels), dtype=bool)
    for colour in palette:
        matched |= ((pixels - colour) ** 2).sum(axis=1) < limit
    rest = pixels[~matched]  # the blends of two colours, for those no one colour explains
    nearest = np.full(len(rest), np.inf, np.float32)  # squared distance to the nearest blend
    for first in range(len(palette)):
        for second in range(first + 1, len(palette)):
            start, step = palette[first], palette[second] - palette[first]
            along = np.clip((rest - start) @ step / max(float(step @ step), 1e-6), 0.0, 1.0)
            offset = rest - start - along[:, None] * step
            np.minimum(nearest, (offset**2).sum(axis=1), out=nearest)
    matched[~matched] = nearest < limit
    result[where] = matched
    return result


def unblend(
    image: np.ndarray, model_rgb: np.ndarray, where: np.ndarray, palette: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For the pixels of `where`: the product's share (n,) of each and the backdrop colour (n, 3)
    it is blended with, fitting the photo's colour as a blend of a `palette` colour and the
    model's colour there (`model_rgb`, (h, w, 3)) within BACKGROUND_COLOUR_DISTANCE or
    BLEND_TOLERANCE_REL of their distance. A pixel no blend fits is all product (share 1, no
    backdrop); one whose model colour is within UNBLEND_MIN_CONTRAST of the backdrop it fits
    gets a NaN share: it cannot be told from the backdrop."""
    count = int(where.sum())
    if not len(palette):
        return np.ones(count, np.float32), np.zeros((count, 3), np.float32)
    photo = image[where].astype(np.float32)[:, None, :]  # (n, 1, 3)
    model = model_rgb[where].astype(np.float32)[:, None, :]
    backdrop = palette[None]  # (1, k, 3)
    towards_model = model - backdrop
    contrast = np.linalg.norm(towards_model, axis=2)  # (n, k)
    product_share = np.clip(
        ((photo - backdrop) * towards_model).sum(axis=2) / np.maximum(contrast**2, 1e-6), 0.0, 1.0
    )
    blend = backdrop + product_share[..., None] * towards_model
    residual = np.linalg.norm(photo - blend, axis=2)
    fits = residual < np.maximum(BACKGROUND_COLOUR_DISTANCE, BLEND_TOLERANCE_REL * contrast)
    best = np.where(fits, residual, np.inf).argmin(axis=1)
    rows = np.arange(count)
    fitted = fits[rows, best]
    share = np.where(fitted, product_share[rows, best], 1.0)
    share[fitted & (contrast[rows, best] < UNBLEND_MIN_CONTRAST)] = np.nan
    return share.astype(np.float32), np.where(fitted[:, None], palette[best], 0.0)


def nearest_filled(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(h, w, c) `values` with each pixel outside the (h, w) bool `valid` given the value of the
    nearest valid pixel; unchanged when none or all is valid."""
    if valid.all() or not valid.any():
        return values
    _, labels = cv2.distanceTransformWithLabels(
        (~valid).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
    )
    # The labels number the valid pixels in scan order, from 1.
    source = np.zeros(labels.max() + 1, np.int64)
    valid_flat = np.flatnonzero(valid.ravel())
    source[labels.ravel()[valid_flat]] = valid_flat
    flat = values.reshape(-1, values.shape[-1])
    return flat[source[labels.ravel()]].reshape(values.shape)


def unblended_colour(on_black: Rendering) -> np.ndarray:
    """(h, w, 3) float: the model's own colour at each pixel of `on_black` (a supersampled
    rendering over black), with its anti-aliased outline un-blended from the black by the share
    of each pixel the model covers. (That share was read from a second rendering over white:
    the same figure to within 8-bit rounding, for another 0.3 s a photo.)"""
    black = on_black.rgb.astype(np.float32)
    covered = on_black.mask.astype(np.float32) if on_black.coverage is None else on_black.coverage
    return np.clip(black / np.maximum(covered, 0.05)[..., None], 0.0, 255.0)


def tolerant_iou(a: np.ndarray, b: np.ndarray, tolerance_px: float) -> float:
    """IoU of two (h, w) bool silhouettes where a pixel of one counts as matched when the other
    has a pixel within `tolerance_px`: 1 - (unmatched pixels) / (union)."""
    union = int((a | b).sum())
    if union == 0:
        return 1.0
    unmatched = 0
    for inside, other in ((a, b), (b, a)):
        if not other.any():
            unmatched += int(inside.sum())
            continue
        # distance from every pixel to the nearest pixel of `other`
        distance = cv2.distanceTransform((~other).astype(np.uint8), cv2.DIST_L2, 5)
        unmatched += int((inside & (distance > tolerance_px)).sum())
    return 1.0 - unmatched / union


def summarise(per_photo: list[dict]) -> dict:
    """The report's `fidelity` section from check_fidelity's per-photo figures."""
    summary: dict = {"photos": [item["image"] for item in per_photo], "per_photo": per_photo}
    for key in ("psnr_db", "silhouette_iou"):
        values = [item[key] for item in per_photo if item[key] is not None]
        summary[key] = round(float(np.mean(values)), 4) if values else None
        summary[f"{key}_min"] = round(float(np.min(values)), 4) if values else None
    return summary
