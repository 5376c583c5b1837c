"""Fidelity self-check: the finished model drawn from photos held out of texturing and compared
with them, so a capture without ground truth still gets a measure of how faithful its model is."""

from __future__ import annotations

import cv2
import numpy as np

from recon.cameras import Camera
from recon.render import Lighting, OffscreenRenderer, Rendering
from recon.textured_mesh import TexturedMesh

# Held-out photos are at least this far apart in viewing direction, so no part of the product
# loses two neighbouring photos at once.
MIN_HOLDOUT_SEPARATION_DEG = 60.0
# Silhouettes agree where they are within this share of the photo size of each other: product
# masks are grown a little on purpose (masks.MaskOptions.mask_dilate_rel) and edges are soft.
SILHOUETTE_TOLERANCE_REL = 0.02
# A photo pixel this close (RGB, 8-bit) to a main colour of its background, or to a blend of
# one with the model's colour there, is taken for background: seen through a gap that the
# (filled) product mask covers, or beside the product where the model's outline overhangs.
BACKGROUND_COLOUR_DISTANCE = 15.0
# The render's outline band, this share of the photo size wide (2 px at least): a model a
# pixel or two wider than the product draws over the backdrop there. That is a silhouette error
# (the IoU reports it), not a colour one; counted as colour, a light backdrop beside a dark
# product cost the PSNR up to 8 dB against `recon evaluate`, which scores colour inside the
# true silhouette.
OUTLINE_BAND_REL = 0.004
# There, the blend fits within BACKGROUND_COLOUR_DISTANCE or this share of the distance between
# the backdrop and the model's colour, whichever is more: the model's colour at the edge comes
# from another photo, and a lit rim (a dark avocado's skin on light paper) strays from it by
# 20-30 levels. With the fixed distance alone such rims counted as colour error, and the check
# read 7 dB below the truth's PSNR on the avocado (3 dB with the share).
BLEND_TOLERANCE_REL = 0.25


def choose_holdout(cameras: list[Camera], count: int) -> list[int]:
    """Indices of up to `count` photos to keep out of texturing: the most redundant ones (whose
    nearest other photo looks the most alike in direction), spread apart around the product."""
    if count <= 0 or len(cameras) < 3:
        return []
    axes = np.array([camera.R[2] for camera in cameras])  # optical axes in the world
    cosines = np.clip(axes @ axes.T, -1.0, 1.0)
    np.fill_diagonal(cosines, -1.0)
    nearest_deg = np.degrees(np.arccos(cosines.max(axis=1)))
    separation_cos = np.cos(np.radians(MIN_HOLDOUT_SEPARATION_DEG))
    chosen: list[int] = []
    for index in np.argsort(nearest_deg, kind="stable"):
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
) -> list[dict]:
    """Per held-out photo: PSNR (dB) of the unlit render against the photo over the product,
    and the IoU of the render's silhouette with the photo's product mask, up to
    SILHOUETTE_TOLERANCE_REL (None without a mask; then the PSNR is over the whole render).

    The product is where the render and the mask overlap, plus the mask's core (the mask shrunk
    by the tolerance, well inside the product outline): a hole or a missing part there counts
    against the PSNR as the background drawn in its place, as it does in `recon evaluate`'s
    novel views. Without the core the check would pass over what the model lacks and read
    5–13 dB kinder than the truth on models with holes.

    images: (h, w, 3) uint8 RGB at the cameras' sizes; masks: (h, w) bool or None.
    """
    results = []
    with OffscreenRenderer(model, lighting=Lighting.UNLIT) as renderer:
        for camera, image, mask in zip(cameras, images, masks, strict=True):
            rendering = renderer.render(camera, supersample=2)
            drawn = rendering.mask
            size_px = max(camera.width, camera.height)
            compared = drawn
            if mask is not None:
                palette = backdrop_palette(image, mask)
                missing = mask_core(mask, SILHOUETTE_TOLERANCE_REL * size_px) & ~drawn
                outline = drawn & mask & ~mask_core(drawn, max(2.0, OUTLINE_BAND_REL * size_px))
                over_backdrop = mostly_backdrop(
                    image, unblended_colour(rendering), outline, palette
                )
                compared = (drawn & mask & ~over_backdrop) | (
                    missing & ~looks_like_background(image, missing, palette)
                )
            psnr = None
            if compared.any():
                psnr = round(masked_psnr_db(rendering.rgb, image, compared), 2)
            iou = None
            if mask is not None and (mask | drawn).any():
                iou = round(tolerant_iou(mask, drawn, SILHOUETTE_TOLERANCE_REL * size_px), 4)
            results.append({"image": camera.name, "psnr_db": psnr, "silhouette_iou": iou})
    return results


def masked_psnr_db(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, 8-bit scale) of two (h, w, 3) images over the (h, w) bool `mask`; 100 when
    they are equal there."""
    difference = a.astype(np.float64) - b.astype(np.float64)
    mse = float((difference[mask] ** 2).mean())
    return 100.0 if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def mask_core(mask: np.ndarray, margin_px: float) -> np.ndarray:
    """The (h, w) bool pixels of `mask` more than `margin_px` from its outline."""
    inside = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 5)
    return inside > margin_px


def backdrop_palette(image: np.ndarray, mask: np.ndarray, *, colours: int = 8) -> np.ndarray:
    """(k, 3) float32 main colours (k-means, k <= `colours`) of the photo outside the product
    mask; (0, 3) when the mask covers the whole photo."""
    outside = image[~mask].astype(np.float32)
    if not len(outside):
        return np.zeros((0, 3), np.float32)
    rng = np.random.default_rng(0)
    sample = outside[rng.choice(len(outside), min(len(outside), 20000), replace=False)]
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    count = min(colours, len(sample))
    _, _, centres = cv2.kmeans(sample, count, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    return centres


def looks_like_background(image: np.ndarray, where: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """(h, w) bool: pixels of `where` whose colour is within BACKGROUND_COLOUR_DISTANCE of one
    of the (k, 3) `palette` colours."""
    result = np.zeros(where.shape, dtype=bool)
    if not where.any() or not len(palette):
        return result
    pixels = image[where].astype(np.float32)
    distance = np.linalg.norm(pixels[:, None, :] - palette[None], axis=2).min(axis=1)
    result[where] = distance < BACKGROUND_COLOUR_DISTANCE
    return result


def mostly_backdrop(
    image: np.ndarray, model_rgb: np.ndarray, where: np.ndarray, palette: np.ndarray
) -> np.ndarray:
    """(h, w) bool: pixels of `where` that the photo shows as more backdrop than product: the
    photo's colour is a blend of a `palette` colour and the model's colour there (`model_rgb`,
    (h, w, 3)), within BACKGROUND_COLOUR_DISTANCE or BLEND_TOLERANCE_REL of their distance, with
    the backdrop's share over a half. The same line `recon evaluate` draws with the truth's
    alpha >= 0.5."""
    result = np.zeros(where.shape, dtype=bool)
    if not where.any() or not len(palette):
        return result
    photo = image[where].astype(np.float32)[:, None, :]  # (n, 1, 3)
    model = model_rgb[where].astype(np.float32)[:, None, :]
    backdrop = palette[None]  # (1, k, 3)
    towards_model = model - backdrop
    product_share = np.clip(
        ((photo - backdrop) * towards_model).sum(axis=2)
        / np.maximum((towards_model**2).sum(axis=2), 1e-6),
        0.0,
        1.0,
    )  # (n, k)
    blend = backdrop + product_share[..., None] * towards_model
    residual = np.linalg.norm(photo - blend, axis=2)
    fits = residual < np.maximum(
        BACKGROUND_COLOUR_DISTANCE, BLEND_TOLERANCE_REL * np.linalg.norm(towards_model, axis=2)
    )
    best = np.where(fits, residual, np.inf).argmin(axis=1)
    rows = np.arange(len(best))
    result[where] = (product_share[rows, best] < 0.5) & fits[rows, best]
    return result


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
