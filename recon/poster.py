"""Poster stills of a textured model: a 3/4 view for listings and lazy-loading viewers."""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from recon.cameras import Camera, look_at
from recon.render import Lighting, OffscreenRenderer
from recon.textured_mesh import TexturedMesh
from recon.workspace import atomic_path

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class PosterOptions:
    """Where the poster camera stands and what the picture looks like."""

    size_px: int = 1024  # square image side
    azimuth_deg: float = 35.0  # from the front (+Z) towards the product's left (+X)
    elevation_deg: float = 22.0  # above the horizon: a shopper looking down at a table
    fill: float = 0.86  # share of the image's side the product's longer side spans
    background: tuple[int, int, int] | None = (255, 255, 255)  # sRGB, or None for transparent
    lighting: Lighting = Lighting.UNLIT  # photogrammetry textures already hold the light
    # Anti-aliasing: rendered this many times larger, then averaged. (3× cost 2.4× the CPU, a
    # 3072² software render, for edges no shopper tells apart at 1024².)
    supersample: int = 2
    webp_quality: int = 88  # lossy WebP quality (1–100)
    thumbnail_px: int = 256  # side of the small copy for listings and catalogues


def poster_camera(vertices: np.ndarray, options: PosterOptions | None = None) -> Camera:
    """A square camera seeing all of `vertices` ((n, 3), +Y up, front +Z) from the 3/4 view,
    framed so the product's silhouette spans `fill` of the image and sits in its middle."""
    options = options or PosterOptions()
    vertices = np.asarray(vertices, dtype=np.float64)
    low, high = vertices.min(axis=0), vertices.max(axis=0)
    target = (low + high) / 2
    radius = max(float(np.linalg.norm(high - low)) / 2, 1e-9)
    azimuth, elevation = np.radians(options.azimuth_deg), np.radians(options.elevation_deg)
    direction = np.array(
        [
            np.sin(azimuth) * np.cos(elevation),
            np.sin(elevation),
            np.cos(azimuth) * np.cos(elevation),
        ]
    )
    # A far camera flattens perspective like a product photographer's long lens (~35° field).
    R, t = look_at(target + 3.2 * radius * direction, target)
    side = options.size_px
    unit = Camera(name="poster", width=side, height=side, K=np.eye(3), R=R, t=t)
    cam = unit.to_camera(vertices)
    xy = cam[:, :2] / cam[:, 2:3]  # image-plane coordinates at focal length 1
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    focal = options.fill * side / max(float(np.max(hi - lo)), 1e-12)
    # The principal point moves so the silhouette's box is centred (a shifted lens).
    cx, cy = (side - 1) / 2 - focal * (lo + hi) / 2
    K = np.array([[focal, 0.0, cx], [0.0, focal, cy], [0.0, 0.0, 1.0]])
    return Camera(name="poster", width=side, height=side, K=K, R=R, t=t)


def render_poster(mesh: TexturedMesh, options: PosterOptions | None = None) -> np.ndarray:
    """(S, S, 4) uint8 RGBA: the product from the 3/4 view; alpha is its anti-aliased coverage
    (all 255 when `options.background` is a colour)."""
    options = options or PosterOptions()
    vertices = np.concatenate([p.vertices for p in mesh.primitives])
    camera = poster_camera(vertices, options)
    factor = max(1, int(options.supersample))
    with OffscreenRenderer(mesh, lighting=options.lighting) as renderer:
        # Rendered large on black and averaged here, so coverage gives a soft alpha edge.
        big = renderer.render(camera.scaled(factor) if factor > 1 else camera)
    size = (camera.width, camera.height)
    coverage = cv2.resize(big.mask.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    color = cv2.resize(big.rgb.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    # Un-premultiply: an edge pixel's colour is the product's, its coverage goes to alpha.
    color = np.divide(
        color, coverage[..., None], out=np.zeros_like(color), where=coverage[..., None] > 0
    )
    if options.background is not None:
        background = np.asarray(options.background, dtype=np.float32)
        color = color * coverage[..., None] + background * (1 - coverage[..., None])
        coverage = np.ones_like(coverage)
    alpha = np.round(coverage * 255)
    rgba = np.dstack([np.clip(np.round(color), 0, 255), alpha]).astype(np.uint8)
    return rgba


def write_poster(
    path: Path,
    mesh: TexturedMesh,
    options: PosterOptions | None = None,
    *,
    thumbnail_path: Path | None = None,
) -> None:
    """Render the poster and write it as WebP (lossy, with alpha when transparent), and a
    `thumbnail_px` copy at `thumbnail_path` when given."""
    options = options or PosterOptions()
    if not 1 <= options.webp_quality <= 100:
        raise ValueError(f"webp_quality {options.webp_quality} is outside 1–100")
    rgba = render_poster(mesh, options)
    image = Image.fromarray(rgba, "RGBA")
    if options.background is not None:
        image = image.convert("RGB")
    _write_webp(Path(path), image, options.webp_quality)
    if thumbnail_path is not None:
        side = options.thumbnail_px
        _write_webp(Path(thumbnail_path), image.resize((side, side), Image.LANCZOS),
                    options.webp_quality)  # fmt: skip


def _write_webp(path: Path, image: Image.Image, quality: int) -> None:
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=quality, method=6)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    logger.info("wrote %s (%d kB)", path, len(buffer.getvalue()) // 1000)
