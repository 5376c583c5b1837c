"""Procedural products (cereal box, bottle, mug, plain white mug) for synthetic test captures."""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence

import numpy as np
import trimesh
from PIL import Image, ImageDraw, ImageFont

# twin_box: the cereal box printed alike front and back, and left and right — the look-alike
# sides that fold structure-from-motion. white_mug: the mug's shape glazed plain white, no print
# — a low-texture product that stereo cannot see, only silhouettes.
PRODUCT_NAMES: tuple[str, ...] = ("cereal_box", "bottle", "mug", "twin_box", "white_mug")

_TEX = 2048  # texture edge in pixels (power of two for mipmapping)
_SYLLABLES = (
    "ka", "lo", "mi", "ra", "ten", "sol", "ve", "nu", "tri", "bel", "or", "an", "gra", "pe",
    "di", "su", "fo", "lin", "et", "cor", "ma", "vi", "zen", "ul", "bro", "sta", "qui", "den",
)  # fmt: skip

RGB = tuple[int, int, int]
RGBA = tuple[int, int, int, int]
Rect = tuple[float, float, float, float]
Font = ImageFont.FreeTypeFont | ImageFont.ImageFont
# (rng, width_px, height_px, px_per_mm) -> band image; drawn isotropically, resized by the caller.
Painter = Callable[[np.random.Generator, int, int, float], Image.Image]
# Each band: (rows in the texture, physical width m, physical height m, painter).
Band = tuple[int, float, float, Painter]


def make_product(name: str) -> trimesh.Trimesh:
    """Build the named procedural product: metres, +Y up, resting on y = 0, centred on x = z = 0."""
    # Seed from the name with a stable hash so every run draws the same product.
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    if name == "cereal_box":
        return _cereal_box(rng)
    if name == "twin_box":
        return _cereal_box(rng, twin_sides=True)
    if name == "bottle":
        return _bottle(rng)
    if name == "mug":
        return _mug(rng)
    if name == "white_mug":
        return _white_mug()
    raise ValueError(
        f"unknown procedural product {name!r}; choose one of: {', '.join(PRODUCT_NAMES)}"
    )


# ----------------------------------------------------------------------------------------------
# Generic drawing helpers
# ----------------------------------------------------------------------------------------------


def _font(size: float) -> Font:
    try:
        return ImageFont.load_default(size=max(6, round(size)))
    except TypeError:  # Pillow < 10.1 only has the fixed-size bitmap font
        return ImageFont.load_default()


def _fit_font(text: str, max_w: float, size: float) -> Font:
    """Largest default font up to `size` px whose rendering of `text` fits in `max_w` px."""
    font = _font(size)
    length = font.getlength(text)
    return font if length <= max_w else _font(size * max_w / length)


def _text(
    d: ImageDraw.ImageDraw,
    xy: tuple[float, float],
    text: str,
    font: Font,
    fill: int | RGB | RGBA,
    anchor: str = "lt",
    stroke: int = 0,
    stroke_fill: RGB | None = None,
) -> None:
    """Draw text aligned by its ink box ("l/m/r" + "t/m/b"); works for bitmap fonts too."""
    left, top, right, bottom = d.textbbox((0, 0), text, font=font, stroke_width=stroke)
    x = xy[0] - {"l": left, "m": (left + right) / 2, "r": right}[anchor[0]]
    y = xy[1] - {"t": top, "m": (top + bottom) / 2, "b": bottom}[anchor[1]]
    d.text((x, y), text, fill=fill, font=font, stroke_width=stroke, stroke_fill=stroke_fill)


def _rotated_text(
    img: Image.Image,
    centre: tuple[float, float],
    text: str,
    font: Font,
    fill: RGB,
    angle: float,
    stroke: int = 0,
    stroke_fill: RGB | None = None,
) -> None:
    probe = ImageDraw.Draw(img)
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font, stroke_width=stroke)
    tmp = Image.new("RGBA", (int(right - left) + 4, int(bottom - top) + 4), (0, 0, 0, 0))
    ImageDraw.Draw(tmp).text(
        (2 - left, 2 - top),
        text,
        font=font,
        fill=(*fill, 255),
        stroke_width=stroke,
        stroke_fill=None if stroke_fill is None else (*stroke_fill, 255),
    )
    rot = tmp.rotate(angle, expand=True, resample=Image.Resampling.BICUBIC)
    img.paste(rot, (round(centre[0] - rot.width / 2), round(centre[1] - rot.height / 2)), rot)


def _fancy_text(
    img: Image.Image,
    centre: tuple[float, float],
    text: str,
    font: Font,
    top: RGB,
    bottom: RGB,
    outline: RGB,
    stroke: int,
) -> None:
    """Headline text: drop shadow, thick outline and a vertical gradient fill."""
    d = ImageDraw.Draw(img, "RGBA")
    off = max(2, stroke)
    _text(d, (centre[0] + off, centre[1] + off), text, font, (0, 0, 0, 90), "mm", stroke, None)
    _text(d, centre, text, font, outline, "mm", stroke, outline)
    mask = Image.new("L", img.size, 0)
    _text(ImageDraw.Draw(mask), centre, text, font, 255, "mm")
    box = mask.getbbox()
    if box is None:
        return
    grad = _vgradient(box[2] - box[0], box[3] - box[1], top, bottom)
    img.paste(grad, box[:2], mask.crop(box))


def _vgradient(w: int, h: int, top: RGB, bottom: RGB) -> Image.Image:
    t = np.linspace(0.0, 1.0, max(h, 1), dtype=np.float32)[:, None, None]
    col = (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)
    return Image.fromarray(np.broadcast_to(col, (max(h, 1), max(w, 1), 3)).astype(np.uint8))


def _jitter(rng: np.random.Generator, colour: Sequence[int], amount: float) -> RGB:
    c = np.clip(np.asarray(colour[:3], float) + rng.uniform(-amount, amount, 3), 0, 255)
    return (int(c[0]), int(c[1]), int(c[2]))


def _alpha(colour: RGB, a: int) -> RGBA:
    return (colour[0], colour[1], colour[2], a)


def _word(rng: np.random.Generator, lo: int = 1, hi: int = 4) -> str:
    parts = rng.integers(0, len(_SYLLABLES), int(rng.integers(lo, hi + 1)))
    return "".join(_SYLLABLES[i] for i in parts)


def _words(rng: np.random.Generator, n: int, title: bool = False) -> str:
    words = [_word(rng) for _ in range(n)]
    return " ".join(w.capitalize() if title else w for w in words)


def _paragraph(
    d: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    box: Rect,
    size: float,
    fill: RGB,
    leading: float = 1.3,
) -> float:
    """Fill `box` with lines of pseudo-words (unique text, so no repeated patches); returns y."""
    font = _font(size)
    x0, y0, x1, y1 = box
    y = y0
    while y + size <= y1:
        line = _word(rng).capitalize() if rng.random() < 0.3 else _word(rng)
        length = font.getlength(line)
        while True:
            word = _word(rng)
            if rng.random() < 0.15:
                word = f"{word}{',.'[int(rng.integers(2))]}"
            if rng.random() < 0.1:
                word = str(int(rng.integers(1, 999)))
            extra = font.getlength(f" {word}")  # summing avoids re-measuring the whole line
            if length + extra > x1 - x0:
                break
            line, length = f"{line} {word}", length + extra
        d.text((x0, y), line, fill=fill, font=font)
        y += size * leading
    return y


def _blob(
    rng: np.random.Generator, cx: float, cy: float, r: float, n: int = 9, jitter: float = 0.3
) -> list[tuple[float, float]]:
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    rad = r * (1 + rng.uniform(-jitter, jitter, n))
    return [(cx + a * math.cos(t), cy + a * math.sin(t)) for a, t in zip(rad, ang, strict=True)]


def _ellipse_poly(
    cx: float, cy: float, rx: float, ry: float, angle: float, n: int = 24
) -> list[tuple[float, float]]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    ca, sa = math.cos(angle), math.sin(angle)
    x, y = rx * np.cos(t), ry * np.sin(t)
    return [(cx + a * ca - b * sa, cy + a * sa + b * ca) for a, b in zip(x, y, strict=True)]


def _star(
    cx: float, cy: float, r: float, points: int, inner: float, rot: float
) -> list[tuple[float, float]]:
    t = rot + np.arange(2 * points) * np.pi / points
    rad = np.where(np.arange(2 * points) % 2 == 0, r, r * inner)
    return [(cx + a * math.cos(b), cy + a * math.sin(b)) for a, b in zip(rad, t, strict=True)]


def _wrap_xs(x: float, r: float, w: int) -> list[float]:
    """x positions to draw a shape at so it wraps seamlessly around a cylinder's u seam."""
    xs = [x]
    if x - r < 0:
        xs.append(x + w)
    if x + r > w:
        xs.append(x - w)
    return xs


def _barcode(
    d: ImageDraw.ImageDraw, rng: np.random.Generator, box: Rect, digits: bool = True
) -> None:
    x0, y0, x1, y1 = box
    d.rectangle(box, fill=(255, 255, 255))
    pad = 0.06 * (x1 - x0)
    widths = rng.integers(1, 5, 64)
    unit = (x1 - x0 - 2 * pad) / widths.sum()
    text_h = 0.22 * (y1 - y0) if digits else 0.0
    x = x0 + pad
    for i, m in enumerate(widths):
        if i % 2 == 0:
            d.rectangle(
                [x, y0 + pad * 0.5, x + m * unit - 0.5, y1 - pad * 0.5 - text_h], fill=(0, 0, 0)
            )
        x += m * unit
    if digits:
        code = "".join(str(int(c)) for c in rng.integers(0, 10, 13))
        font = _fit_font(code, x1 - x0 - 2 * pad, text_h * 1.1)
        _text(d, ((x0 + x1) / 2, y1 - pad * 0.3), code, font, (0, 0, 0), "mb")


def _qr(d: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, y: float, size: float) -> None:
    n = 25
    bits = rng.random((n, n)) < 0.5
    for fx, fy in ((0, 0), (n - 7, 0), (0, n - 7)):  # finder squares
        bits[fy : fy + 7, fx : fx + 7] = True
        bits[fy + 1 : fy + 6, fx + 1 : fx + 6] = False
        bits[fy + 2 : fy + 5, fx + 2 : fx + 5] = True
    cell = size / (n + 2)
    d.rectangle([x, y, x + size, y + size], fill=(255, 255, 255))
    for j, i in np.argwhere(bits):
        px, py = x + (i + 1) * cell, y + (j + 1) * cell
        d.rectangle([px, py, px + cell - 0.5, py + cell - 0.5], fill=(15, 15, 15))


def _colour_bar(
    d: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, y: float, cell: float, n: int
) -> None:
    """Printer's colour-control strip: cells of random tints, as found on flaps."""
    for i in range(n):
        col = _jitter(rng, (int(rng.integers(0, 256)), 128, int(rng.integers(0, 256))), 120)
        d.rectangle([x + i * cell, y, x + (i + 1) * cell - 1, y + cell], fill=col)


def _recycle(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, ink: RGB, label: str) -> None:
    w = max(1, round(r * 0.16))
    pts = [
        (cx + r * math.cos(a), cy + r * math.sin(a)) for a in (-np.pi / 2, np.pi / 6, 5 * np.pi / 6)
    ]
    for i in range(3):
        (ax, ay), (bx, by) = pts[i], pts[(i + 1) % 3]
        ex, ey = ax + 0.8 * (bx - ax), ay + 0.8 * (by - ay)
        d.line([(ax + 0.2 * (bx - ax), ay + 0.2 * (by - ay)), (ex, ey)], fill=ink, width=w)
        d.regular_polygon(
            (ex, ey, r * 0.22),
            3,
            rotation=-math.degrees(math.atan2(by - ay, bx - ax)) + 90,
            fill=ink,
        )
    _text(d, (cx, cy + r * 1.25), label, _font(r * 0.6), ink, "mt")


def _flakes(
    d: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int, k: float, n: int
) -> None:
    """Scattered oat flakes and specks: random, multi-scale background detail."""
    for _ in range(n):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        r = k * rng.uniform(0.4, 3.5) ** 1.3
        col = _jitter(rng, (245, 215, 150), 40)
        d.polygon(_blob(rng, x, y, r, 7, 0.35), fill=_alpha(col, int(rng.integers(70, 200))))
        if r > 2 * k:
            d.line(
                [(x - r * 0.5, y), (x + r * 0.4, y + r * 0.2)], fill=(160, 110, 50, 120), width=1
            )


def _doodles(
    d: ImageDraw.ImageDraw, rng: np.random.Generator, w: int, h: int, k: float, n: int
) -> None:
    palette = ((230, 80, 60), (60, 140, 210), (80, 170, 90), (240, 170, 40), (170, 90, 190))
    for _ in range(n):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        r = k * rng.uniform(1.0, 6.0)
        col = _alpha(_jitter(rng, palette[int(rng.integers(len(palette)))], 30), 90)
        kind = int(rng.integers(4))
        if kind == 0:
            d.polygon(_star(x, y, r, 5, 0.45, rng.uniform(0, 6.3)), fill=col)
        elif kind == 1:
            d.ellipse([x - r, y - r, x + r, y + r], outline=col, width=max(1, round(0.5 * k)))
        elif kind == 2:
            t = np.linspace(0, 1, 12)
            pts = [(x + 3 * r * a, y + r * 0.5 * math.sin(a * 9 + r)) for a in t]
            d.line(pts, fill=col, width=max(1, round(0.4 * k)))
        else:
            d.ellipse([x - r * 0.4, y - r * 0.4, x + r * 0.4, y + r * 0.4], fill=col)


def _fractal_noise(
    rng: np.random.Generator, h: int, w: int, octaves: Sequence[tuple[int, float]]
) -> np.ndarray:
    """Sum of random octaves, given as (blob size px, weight) from coarse to fine.

    Built as a pyramid (upsample the running sum, add the next octave) so that only one
    full-size resize is needed; each octave has unit variance before upsampling.
    """
    acc = np.zeros((2, 2), np.float32)
    for size, weight in octaves:
        lh, lw = max(2, -(-h // size)), max(2, -(-w // size))
        octave = (rng.random((lh, lw), dtype=np.float32) - 0.5) * np.float32(3.46 * weight)
        octave += np.asarray(Image.fromarray(acc).resize((lw, lh), Image.Resampling.BICUBIC))
        acc = octave
    if acc.shape != (h, w):
        acc = np.asarray(Image.fromarray(acc).resize((w, h), Image.Resampling.BICUBIC))
    return acc


def _grain(img: Image.Image, rng: np.random.Generator, amount: float) -> Image.Image:
    """Multi-scale luminance noise plus a slow colour drift: print grain, paper and ink variation.

    Guarantees local contrast everywhere (even inside flat ink) at scales SIFT can use.
    """
    arr = np.asarray(img, dtype=np.float32)
    h, w = arr.shape[:2]
    lum = _fractal_noise(rng, h, w, ((256, 0.7), (64, 0.5), (16, 0.6), (4, 0.8), (1, 0.9)))
    arr += np.float32(amount) * lum[..., None]
    drift = _fractal_noise(rng, h, w, ((128, 0.35 * amount),))
    arr[..., 0] += drift
    arr[..., 2] -= drift
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _speckle(
    d: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    w: int,
    h: int,
    k: float,
    density: float,
    colours: Sequence[RGB],
    size_mm: tuple[float, float] = (0.15, 0.9),
) -> None:
    """Random glaze / glass speckles; `density` is speckles per square centimetre."""
    n = int(density * (w / k / 10) * (h / k / 10))
    xs, ys = rng.uniform(0, w, n), rng.uniform(0, h, n)
    rs = k * rng.uniform(size_mm[0], size_mm[1], n) ** 1.5
    picks = rng.integers(0, len(colours), n)
    alphas = rng.integers(90, 230, n)
    for x, y, r, c, a in zip(xs, ys, rs, picks, alphas, strict=True):
        d.ellipse([x - r, y - r, x + r, y + r], fill=_alpha(colours[c], int(a)))


# ----------------------------------------------------------------------------------------------
# Geometry helpers
# ----------------------------------------------------------------------------------------------


def _grid_face(
    origin: Sequence[float], u_axis: Sequence[float], v_axis: Sequence[float], nu: int, nv: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Planar quad grid; normal = u_axis x v_axis. Returns vertices, faces and (a, b) in [0,1]^2."""
    a, b = np.meshgrid(np.linspace(0, 1, nu + 1), np.linspace(0, 1, nv + 1))
    verts = (
        np.asarray(origin, float)
        + a[..., None] * np.asarray(u_axis, float)
        + b[..., None] * np.asarray(v_axis, float)
    ).reshape(-1, 3)
    idx = np.arange((nu + 1) * (nv + 1)).reshape(nv + 1, nu + 1)
    i00, i10, i01, i11 = idx[:-1, :-1], idx[:-1, 1:], idx[1:, :-1], idx[1:, 1:]
    faces = np.concatenate(
        [np.stack([i00, i10, i11], -1).reshape(-1, 3), np.stack([i00, i11, i01], -1).reshape(-1, 3)]
    )
    return verts, faces, np.stack([a.ravel(), b.ravel()], -1)


def _lathe(
    profile_r_y: np.ndarray, v: np.ndarray, segments: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Revolve an (r, y) profile about +Y. u runs around (u = 0.5 faces +Z), v is given per point.

    Profile points with r == 0 become poles closed by triangle fans, so a profile running from
    axis to axis yields a closed surface. Seam and pole vertices are duplicated for the UVs.
    """
    r, y = profile_r_y[:, 0], profile_r_y[:, 1]
    n, m = len(r), segments + 1
    theta = np.linspace(-np.pi, np.pi, m)
    verts = np.stack(
        [
            r[:, None] * np.sin(theta),
            np.broadcast_to(y[:, None], (n, m)),
            r[:, None] * np.cos(theta),
        ],
        axis=-1,
    ).reshape(-1, 3)
    u = np.broadcast_to(np.linspace(0, 1, m), (n, m)).copy()
    pole = r == 0.0
    u[pole] = np.minimum(np.linspace(0, 1, m) + 0.5 / segments, 1.0)  # centre of each fan wedge
    uv = np.stack([u, np.broadcast_to(v[:, None], (n, m))], -1).reshape(-1, 2)
    idx = np.arange(n * m).reshape(n, m)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]
    t1 = np.stack([a, b, c], -1)[~pole[:-1]]  # degenerate where row i is a pole
    t2 = np.stack([a, c, d], -1)[~pole[1:]]  # degenerate where row i+1 is a pole
    faces = np.concatenate([t1.reshape(-1, 3), t2.reshape(-1, 3)])
    return _compact(verts, _outward(verts, faces), uv)


def _outward(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Flip a closed surface's winding if its signed volume is negative."""
    tri = verts[faces]
    vol = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum()
    return faces if vol > 0 else faces[:, ::-1].copy()


def _compact(
    verts: np.ndarray, faces: np.ndarray, uv: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    used = np.unique(faces)
    remap = np.full(len(verts), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    return verts[used], remap[faces], uv[used]


def _join(
    parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    verts, faces, uvs, base = [], [], [], 0
    for v, f, uv in parts:
        verts.append(v)
        faces.append(f + base)
        uvs.append(uv)
        base += len(v)
    return np.concatenate(verts), np.concatenate(faces), np.concatenate(uvs)


def _line(p0: tuple[float, float], p1: tuple[float, float], n: int) -> np.ndarray:
    return np.linspace(p0, p1, n)


def _arc(cx: float, cy: float, rad: float, a0: float, a1: float, n: int) -> np.ndarray:
    t = np.linspace(a0, a1, n)
    return np.stack([cx + rad * np.cos(t), cy + rad * np.sin(t)], -1)


def _chain(*pieces: np.ndarray) -> np.ndarray:
    """Concatenate profile pieces that share end points."""
    return np.concatenate([pieces[0], *(p[1:] for p in pieces[1:])])


def _arc_length(profile: np.ndarray) -> float:
    return float(np.linalg.norm(np.diff(profile, axis=0), axis=1).sum())


def _mean_circumference(profile: np.ndarray) -> float:
    seg = np.linalg.norm(np.diff(profile, axis=0), axis=1)
    mid_r = 0.5 * (profile[1:, 0] + profile[:-1, 0])
    return float(2 * np.pi * (mid_r * seg).sum() / max(seg.sum(), 1e-12))


def _allocate_rows(lengths: Sequence[float], fixed: Sequence[int | None], total: int) -> list[int]:
    """Texture rows per band: fixed ones as given, the rest shared in proportion to length."""
    free = total - sum(f for f in fixed if f is not None)
    flex = sum(ln for ln, f in zip(lengths, fixed, strict=True) if f is None)
    rows = [
        f if f is not None else max(8, round(free * ln / flex))
        for ln, f in zip(lengths, fixed, strict=True)
    ]
    biggest = max((i for i, f in enumerate(fixed) if f is None), key=lambda i: rows[i])
    rows[biggest] += total - sum(rows)
    return rows


def _sections_v(sections: Sequence[np.ndarray], rows: Sequence[int], row_offset: int) -> np.ndarray:
    """v per joined-profile point: linear in arc length inside each section's band of rows."""
    profile = _chain(*sections)
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(profile, axis=0), axis=1))])
    knots = np.cumsum([0] + [len(sec) - 1 for sec in sections])
    v_knots = (row_offset + np.concatenate([[0], np.cumsum(rows)])) / _TEX
    return np.interp(s, s[knots], v_knots)


def _stack_bands(rng: np.random.Generator, bands: Sequence[Band]) -> Image.Image:
    """Paint horizontal texture bands from the image bottom (v = 0) upwards.

    Each band is drawn at an isotropic resolution matching its physical size, then resized to
    its rows, so that print looks undistorted once wrapped onto the surface.
    """
    atlas = Image.new("RGB", (_TEX, _TEX))
    bottom = _TEX
    for rows, phys_w, phys_h, painter in bands:
        density = min(_TEX / phys_w, rows / phys_h)  # px per metre
        wi, hi = max(8, round(phys_w * density)), max(8, round(phys_h * density))
        band = painter(rng, wi, hi, density / 1000.0)
        if band.size != (_TEX, rows):
            band = band.resize((_TEX, rows), Image.Resampling.BICUBIC)
        atlas.paste(band, (0, bottom - rows))
        bottom -= rows
    return atlas


def _finish(
    verts: np.ndarray, faces: np.ndarray, uv: np.ndarray, texture: Image.Image, roughness: float
) -> trimesh.Trimesh:
    """Rest on y = 0, centre the bounding box in x/z, attach a PBR texture material."""
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    verts = verts - np.array([(lo[0] + hi[0]) / 2, lo[1], (lo[2] + hi[2]) / 2])
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=texture, metallicFactor=0.0, roughnessFactor=roughness
    )
    visual = trimesh.visual.TextureVisuals(uv=np.clip(uv, 0.0, 1.0), material=material)
    return trimesh.Trimesh(vertices=verts, faces=faces, visual=visual, process=False)


# ----------------------------------------------------------------------------------------------
# Cereal box
# ----------------------------------------------------------------------------------------------

_BOX_W, _BOX_H, _BOX_D = 0.19, 0.28, 0.07


def _cereal_box(rng: np.random.Generator, *, twin_sides: bool = False) -> trimesh.Trimesh:
    """The cereal box; `twin_sides` prints the back like the front and the right like the left
    (the same pixels, as seen from outside)."""
    w, h, dp = _BOX_W, _BOX_H, _BOX_D
    # face: (origin, u axis = texture right, v axis = texture up); u x v points outward.
    faces_spec: dict[str, tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]] = {
        "front": ((-w / 2, 0, dp / 2), (w, 0, 0), (0, h, 0)),
        "back": ((w / 2, 0, -dp / 2), (-w, 0, 0), (0, h, 0)),
        "left": ((-w / 2, 0, -dp / 2), (0, 0, dp), (0, h, 0)),
        "right": ((w / 2, 0, dp / 2), (0, 0, -dp), (0, h, 0)),
        "top": ((-w / 2, h, dp / 2), (w, 0, 0), (0, 0, -dp)),
        "bottom": ((-w / 2, 0, -dp / 2), (w, 0, 0), (0, 0, dp)),
    }
    atlas, rects = _box_atlas(rng)
    if twin_sides:
        rects = {**rects, "back": rects["front"], "right": rects["left"]}
    parts = []
    for name, (origin, u_axis, v_axis) in faces_spec.items():
        nu = math.ceil(np.linalg.norm(u_axis) / 0.01 - 1e-9)  # ~1 cm cells
        nv = math.ceil(np.linalg.norm(v_axis) / 0.01 - 1e-9)
        verts, faces, ab = _grid_face(origin, u_axis, v_axis, nu, nv)
        x0, y0, fw, fh, rotated = rects[name]
        if rotated:  # face canvas was turned 90 degrees counter-clockwise into the atlas
            px = x0 + (1 - ab[:, 1]) * fh
            py = y0 + (1 - ab[:, 0]) * fw
        else:
            px = x0 + ab[:, 0] * fw
            py = y0 + (1 - ab[:, 1]) * fh
        parts.append((verts, faces, np.stack([px / _TEX, 1 - py / _TEX], -1)))
    verts, faces, uv = _join(parts)
    return _finish(verts, faces, uv, atlas, roughness=0.8)


def _box_atlas(
    rng: np.random.Generator,
) -> tuple[Image.Image, dict[str, tuple[int, int, int, int, bool]]]:
    """Lay out the six printed faces (front|back|left / top|bottom / right turned 90 degrees).

    Returns the atlas and, per face, (x0, y0, width, height, rotated) of the upright face canvas.
    """
    gutter, bleed = 12, 5
    s = (_TEX - 4 * gutter) / (2 * _BOX_W + _BOX_D)  # px per metre, limited by the atlas width
    fw, fh, fd = round(_BOX_W * s), round(_BOX_H * s), round(_BOX_D * s)
    g = gutter
    rects = {
        "front": (g, g, fw, fh, False),
        "back": (2 * g + fw, g, fw, fh, False),
        "left": (3 * g + 2 * fw, g, fd, fh, False),
        "top": (g, 2 * g + fh, fw, fd, False),
        "bottom": (2 * g + fw, 2 * g + fh, fw, fd, False),
        "right": (g, 3 * g + fh + fd, fd, fh, True),
    }
    painters: dict[str, Callable[[np.random.Generator, int, int], Image.Image]] = {
        "front": _draw_box_front,
        "back": _draw_box_back,
        "left": _draw_box_side_nutrition,
        "right": _draw_box_side_info,
        "top": _draw_box_top,
        "bottom": _draw_box_bottom,
    }
    # Unused atlas area: plain cardboard, never sampled by the mesh.
    atlas = np.asarray(_vgradient(_TEX, _TEX, (190, 160, 120), (170, 140, 100))).copy()
    for name, (x0, y0, w, h, rotated) in rects.items():
        face = painters[name](rng, w, h)
        if rotated:
            face = face.transpose(Image.Transpose.ROTATE_90)
        arr = np.pad(np.asarray(face), ((bleed, bleed), (bleed, bleed), (0, 0)), mode="edge")
        atlas[y0 - bleed : y0 - bleed + arr.shape[0], x0 - bleed : x0 - bleed + arr.shape[1]] = arr
    return _grain(Image.fromarray(atlas), rng, 4.0), rects


def _draw_box_front(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Brand name, banner, starburst and a bowl of cereal rings over a sunburst."""
    k = w / 190.0  # px per mm
    img = _vgradient(w, h, (255, 180, 40), (222, 45, 38))
    d = ImageDraw.Draw(img, "RGBA")
    _sunburst(d, rng, (w * 0.5, 185 * k), 1.4 * h, (255, 238, 160, 55))
    _flakes(d, rng, w, h, k, 650)
    d.ellipse(
        [6 * k, 6 * k, 56 * k, 22 * k],
        fill=(255, 252, 240),
        outline=(190, 30, 40),
        width=round(1.2 * k),
    )
    _text(d, (31 * k, 14 * k), "Golden Mill", _font(6 * k), (190, 30, 40), "mm")
    d.ellipse(
        [160 * k, 5 * k, 184 * k, 29 * k],
        fill=(40, 130, 60),
        outline=(255, 255, 255),
        width=round(k),
    )
    _text(d, (172 * k, 14 * k), "375 g", _font(5 * k), (255, 255, 255), "mm")
    _text(d, (172 * k, 21 * k), "e", _font(4 * k), (255, 255, 255), "mm")
    _fancy_text(
        img,
        (95 * k, 47 * k),
        "CRUNCHY",
        _fit_font("CRUNCHY", 172 * k, 52 * k),
        (255, 250, 200),
        (255, 190, 20),
        (120, 20, 20),
        round(1.8 * k),
    )
    _fancy_text(
        img,
        (95 * k, 82 * k),
        "OAT RINGS",
        _fit_font("OAT RINGS", 140 * k, 28 * k),
        (255, 255, 255),
        (255, 225, 170),
        (30, 60, 140),
        round(1.4 * k),
    )
    _banner(d, (32 * k, 99 * k, 158 * k, 114 * k), (30, 125, 60), (18, 80, 40))
    _text(d, (95 * k, 106.5 * k), "WHOLE GRAIN GOODNESS", _font(7 * k), (255, 255, 255), "mm")
    d.polygon(
        _star(160 * k, 136 * k, 21 * k, 20, 0.8, rng.uniform(0, 1)),
        fill=(255, 228, 0),
        outline=(200, 30, 40),
        width=round(0.8 * k),
    )
    _text(d, (160 * k, 131 * k), "NEW!", _font(10 * k), (200, 30, 40), "mm")
    _text(d, (160 * k, 142 * k), "30% MORE", _font(4.8 * k), (200, 30, 40), "mm")
    _text(d, (160 * k, 148 * k), "honey taste", _font(3.5 * k), (120, 60, 20), "mm")
    _bowl(d, rng, k, 88 * k, 186 * k, 74 * k, 17 * k, 50 * k)
    _text(d, (186 * k, 243 * k), "Serving suggestion", _font(3.2 * k), (255, 240, 220), "rm")
    for i, (l1, l2, col) in enumerate(
        (
            ("HIGH", "FIBRE", (40, 120, 60)),
            ("5", "GRAINS", (30, 80, 160)),
            ("NO ADDED", "COLOURS", (130, 40, 140)),
        )
    ):
        cx, cy, r = (118 + 26 * i) * k, 262 * k, 11.5 * k
        d.ellipse(
            [cx - r, cy - r, cx + r, cy + r],
            fill=col,
            outline=(255, 255, 255),
            width=round(0.9 * k),
        )
        _text(d, (cx, cy - 3 * k), l1, _fit_font(l1, 18 * k, 5 * k), (255, 255, 255), "mm")
        _text(d, (cx, cy + 3.5 * k), l2, _fit_font(l2, 18 * k, 3.6 * k), (255, 240, 150), "mm")
    _text(
        d,
        (8 * k, 256 * k),
        "NET WT 375 g",
        _font(6 * k),
        (255, 255, 255),
        "lm",
        round(0.5 * k),
        (120, 20, 20),
    )
    _text(d, (8 * k, 265 * k), "13.2 oz  -  8 servings", _font(3.6 * k), (255, 235, 200), "lm")
    _text(d, (8 * k, 272 * k), "Made with " + _words(rng, 3), _font(3 * k), (255, 235, 200), "lm")
    return img


def _sunburst(
    d: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    centre: tuple[float, float],
    radius: float,
    fill: RGBA,
) -> None:
    edges = np.cumsum(rng.uniform(0.6, 1.6, 60))
    edges = edges / edges[-1] * 2 * np.pi
    cx, cy = centre
    for a0, a1 in zip(edges[0::2], edges[1::2], strict=True):
        d.polygon(
            [
                (cx, cy),
                (cx + radius * math.cos(a0), cy + radius * math.sin(a0)),
                (cx + radius * math.cos(a1), cy + radius * math.sin(a1)),
            ],
            fill=fill,
        )


def _banner(d: ImageDraw.ImageDraw, box: Rect, fill: RGB, dark: RGB) -> None:
    x0, y0, x1, y1 = box
    bh, tail, drop = y1 - y0, 0.1 * (x1 - x0), 0.35 * (y1 - y0)
    for sx, edge in ((-1, x0), (1, x1)):  # notched tails behind the ribbon
        inner, outer = edge - sx * tail * 0.4, edge + sx * tail
        d.polygon(
            [
                (inner, y0 + drop),
                (outer, y0 + drop),
                (outer - sx * tail * 0.4, y0 + drop + bh / 2),
                (outer, y1 + drop),
                (inner, y1 + drop),
            ],
            fill=dark,
        )
    d.rectangle(box, fill=fill)
    d.line(
        [(x0, y0 + 0.12 * bh), (x1, y0 + 0.12 * bh)],
        fill=(255, 220, 120),
        width=max(1, round(0.08 * bh)),
    )
    d.line(
        [(x0, y1 - 0.12 * bh), (x1, y1 - 0.12 * bh)],
        fill=(255, 220, 120),
        width=max(1, round(0.08 * bh)),
    )


def _bowl(
    d: ImageDraw.ImageDraw,
    rng: np.random.Generator,
    k: float,
    cx: float,
    rim_y: float,
    a: float,
    e: float,
    depth: float,
) -> None:
    """Bowl of cereal rings, berries and milk, with a spoon; drawn back to front."""
    d.ellipse([cx - a, rim_y + depth - 6 * k, cx + a, rim_y + depth + 7 * k], fill=(90, 15, 10, 90))
    d.ellipse([cx - a, rim_y - e, cx + a, rim_y + e], fill=(35, 70, 150))
    d.ellipse(
        [cx - 0.93 * a, rim_y - 0.8 * e, cx + 0.93 * a, rim_y + 0.85 * e], fill=(250, 248, 240)
    )
    n = 120
    xs = rng.uniform(-0.93, 0.93, n)
    ys = rim_y + 0.55 * e - rng.uniform(0, 1, n) ** 0.8 * (0.9 * e + 24 * k * (1 - xs**2))
    items = sorted(zip(ys, xs, strict=True))
    berries = set(rng.choice(n, 12, replace=False).tolist())
    for i, (y, xn) in enumerate(items):
        x = cx + xn * a * (0.95 if y > rim_y - e else 0.85)
        if i in berries:
            r = k * rng.uniform(3.5, 5.0)
            col = (200, 25, 45) if rng.random() < 0.6 else (60, 45, 130)
            d.ellipse([x - r, y - r, x + r, y + r], fill=col, outline=(60, 10, 20), width=1)
            d.ellipse(
                [x - 0.5 * r, y - 0.6 * r, x - 0.1 * r, y - 0.2 * r], fill=(255, 255, 255, 180)
            )
            continue
        r, sq = k * rng.uniform(4.5, 7.5), rng.uniform(0.55, 0.95)
        col = _jitter(rng, (215, 150, 60), 35)
        dark = (col[0] // 2, col[1] // 2, col[2] // 3)
        d.ellipse(
            [x - r, y - r * sq, x + r, y + r * sq],
            fill=col,
            outline=dark,
            width=max(1, round(0.5 * k)),
        )
        d.ellipse([x - 0.36 * r, y - 0.36 * r * sq, x + 0.36 * r, y + 0.36 * r * sq], fill=dark)
        for _ in range(3):  # toasted specks
            px, py = x + rng.uniform(-0.7, 0.7) * r, y + rng.uniform(-0.6, 0.6) * r * sq
            d.ellipse(
                [px - 0.5 * k, py - 0.4 * k, px + 0.5 * k, py + 0.4 * k], fill=(120, 60, 20, 160)
            )
    for _ in range(10):  # milk splashes
        x, y = cx + rng.uniform(-0.9, 0.9) * a, rim_y - rng.uniform(0, 1.2) * e
        r = k * rng.uniform(1, 3)
        d.ellipse([x - r, y - r, x + r, y + r * 1.3], fill=(255, 255, 252))
    hx0, hy0, hx1, hy1 = (
        cx - 0.3 * a,
        rim_y - 6 * k,
        cx - 1.0 * a,
        rim_y - 60 * k,
    )  # clear of starburst
    d.polygon(
        [
            (hx0 + 3 * k, hy0),
            (hx1 + 2.5 * k, hy1),
            (hx1 - 2.5 * k, hy1 + 1.5 * k),
            (hx0 - 3 * k, hy0 + 1 * k),
        ],
        fill=(200, 205, 215),
        outline=(110, 115, 130),
    )
    d.line(
        [(hx0, hy0 - 0.5 * k), (hx1, hy1 + 0.5 * k)],
        fill=(250, 250, 255),
        width=max(1, round(0.7 * k)),
    )
    d.chord(
        [cx - a, rim_y - depth, cx + a, rim_y + depth],
        0,
        180,
        fill=(45, 95, 190),
        outline=(25, 55, 120),
        width=max(1, round(k)),
    )
    for off, col in ((0.25, (250, 250, 255)), (0.5, (255, 200, 60))):
        ao = a * math.sqrt(1 - off**2)
        cy = rim_y + off * depth
        d.arc([cx - ao, cy - e, cx + ao, cy + e], 0, 180, fill=col, width=max(1, round(2.2 * k)))
        for t in np.linspace(0.15, np.pi - 0.15, 13):
            px, py = cx + ao * math.cos(t), cy + e * math.sin(t) + 4 * k
            rr = 1.2 * k
            d.ellipse([px - rr, py - rr, px + rr, py + rr], fill=(220, 60, 60))
    d.arc(
        [cx - a, rim_y - e, cx + a, rim_y + e],
        0,
        180,
        fill=(225, 235, 255),
        width=max(1, round(2 * k)),
    )


def _draw_box_back(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Puzzle back: header, maze, word search, text blocks and a coupon."""
    k = w / 190.0
    img = _vgradient(w, h, (255, 240, 170), (255, 205, 120))
    d = ImageDraw.Draw(img, "RGBA")
    _doodles(d, rng, w, h, k, 320)
    d.rectangle([0, 0, w, 28 * k], fill=(215, 40, 45))
    _text(
        d,
        (95 * k, 14 * k),
        "FUN ZONE!",
        _font(17 * k),
        (255, 255, 255),
        "mm",
        round(0.8 * k),
        (110, 10, 20),
    )
    d.rounded_rectangle(
        [8 * k, 36 * k, 112 * k, 150 * k],
        4 * k,
        fill=(255, 255, 250),
        outline=(30, 60, 140),
        width=round(0.8 * k),
    )
    _text(d, (60 * k, 41 * k), "Help Oaty reach the bowl!", _font(5 * k), (30, 60, 140), "mt")
    _maze(d, rng, (14 * k, 50 * k, 106 * k, 144 * k), 13, 13, max(1, round(0.7 * k)))
    d.rounded_rectangle(
        [118 * k, 36 * k, 182 * k, 150 * k],
        4 * k,
        fill=(230, 245, 255),
        outline=(30, 60, 140),
        width=round(0.8 * k),
    )
    _text(d, (150 * k, 41 * k), "WORD HUNT", _font(5.5 * k), (200, 30, 40), "mt")
    font = _font(5 * k)
    letters = rng.integers(65, 91, (12, 8))
    for r in range(12):
        for c in range(8):
            _text(
                d,
                ((123 + 7.3 * c) * k, (53 + 7.6 * r) * k),
                chr(letters[r, c]),
                font,
                (20, 30, 60),
                "mm",
            )
    for _ in range(4):  # found words
        r, c = int(rng.integers(12)), int(rng.integers(0, 4))
        d.rounded_rectangle(
            [
                (119.5 + 7.3 * c) * k,
                (49.5 + 7.6 * r) * k,
                (126.5 + 7.3 * (c + 3)) * k,
                (56.5 + 7.6 * r) * k,
            ],
            3 * k,
            fill=(255, 180, 0, 90),
        )
    for x0, title in ((8, "Did you know?"), (100, "Our oat story")):
        _text(
            d,
            (x0 * k, 158 * k),
            title,
            _font(6 * k),
            (170, 30, 40),
            "lt",
            max(1, round(0.2 * k)),
            (170, 30, 40),
        )
        _paragraph(d, rng, (x0 * k, 168 * k, (x0 + 82) * k, 232 * k), 3.3 * k, (60, 35, 20))
    for i in range(32):  # dashed coupon outline
        x = (8 + 3.5 * i) * k
        d.line([(x, 238 * k), (x + 2 * k, 238 * k)], fill=(60, 35, 20), width=round(0.5 * k))
        d.line([(x, 274 * k), (x + 2 * k, 274 * k)], fill=(60, 35, 20), width=round(0.5 * k))
    d.rectangle([9 * k, 239 * k, 119 * k, 273 * k], fill=(255, 255, 255, 150))
    _text(d, (14 * k, 243 * k), "SAVE 50p", _font(10 * k), (200, 30, 40), "lt")
    _paragraph(d, rng, (14 * k, 256 * k, 78 * k, 272 * k), 2.6 * k, (60, 35, 20))
    _barcode(d, rng, (82 * k, 242 * k, 116 * k, 270 * k))
    _qr(d, rng, 128 * k, 240 * k, 30 * k)
    _text(d, (161 * k, 246 * k), "Scan for", _font(4 * k), (60, 35, 20))
    _text(d, (161 * k, 252 * k), "recipes", _font(4 * k), (60, 35, 20))
    _text(d, (161 * k, 262 * k), "goldenmill.example", _font(2.4 * k), (60, 35, 20))
    return img


def _maze(
    d: ImageDraw.ImageDraw, rng: np.random.Generator, box: Rect, nx: int, ny: int, width: int
) -> None:
    """Random depth-first-search maze: unique structure, never a repeating tile."""
    right, down = np.ones((ny, nx), bool), np.ones((ny, nx), bool)
    seen = np.zeros((ny, nx), bool)
    stack, seen[0, 0] = [(0, 0)], True
    while stack:
        cy, cx = stack[-1]
        nbrs = [
            (cy + dy, cx + dx)
            for dy, dx in ((0, 1), (1, 0), (0, -1), (-1, 0))
            if 0 <= cy + dy < ny and 0 <= cx + dx < nx and not seen[cy + dy, cx + dx]
        ]
        if not nbrs:
            stack.pop()
            continue
        qy, qx = nbrs[int(rng.integers(len(nbrs)))]
        if qy == cy:
            right[cy, min(cx, qx)] = False
        else:
            down[min(cy, qy), cx] = False
        seen[qy, qx] = True
        stack.append((qy, qx))
    x0, y0, x1, y1 = box
    cw, ch = (x1 - x0) / nx, (y1 - y0) / ny
    ink = (30, 40, 80)
    for j in range(ny):
        for i in range(nx):
            if right[j, i] and i < nx - 1:
                d.line(
                    [(x0 + (i + 1) * cw, y0 + j * ch), (x0 + (i + 1) * cw, y0 + (j + 1) * ch)],
                    fill=ink,
                    width=width,
                )
            if down[j, i] and j < ny - 1:
                d.line(
                    [(x0 + i * cw, y0 + (j + 1) * ch), (x0 + (i + 1) * cw, y0 + (j + 1) * ch)],
                    fill=ink,
                    width=width,
                )
    d.line([(x0 + cw, y0), (x1, y0), (x1, y1 - ch)], fill=ink, width=width + 1)
    d.line([(x1 - cw, y1), (x0, y1), (x0, y0 + ch)], fill=ink, width=width + 1)
    d.ellipse([x0 + 0.2 * cw, y0 + 0.2 * ch, x0 + 0.8 * cw, y0 + 0.8 * ch], fill=(230, 140, 30))
    d.chord(
        [x1 - 0.9 * cw, y1 - 0.9 * ch, x1 - 0.1 * cw, y1 - 0.1 * ch], 0, 180, fill=(45, 95, 190)
    )


def _draw_box_side_nutrition(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Left side: brand strip, nutrition table with numbers, ingredients."""
    k = w / 70.0
    img = _vgradient(w, h, (255, 250, 235), (245, 232, 205))
    d = ImageDraw.Draw(img, "RGBA")
    _flakes(d, rng, w, h, k, 140)
    d.rectangle([0, 0, w, 40 * k], fill=(215, 40, 45))
    _text(
        d, (35 * k, 15 * k), "CRUNCHY", _fit_font("CRUNCHY", 60 * k, 14 * k), (255, 220, 60), "mm"
    )
    _text(d, (35 * k, 30 * k), "OAT RINGS", _font(6 * k), (255, 255, 255), "mm")
    x0, x1, y = 4 * k, 66 * k, 46 * k
    d.rectangle([x0, y, x1, 196 * k], fill=(255, 255, 255), outline=(0, 0, 0), width=round(0.5 * k))
    _text(
        d,
        (x0 + 2 * k, y + 2 * k),
        "Nutrition",
        _font(8 * k),
        (0, 0, 0),
        "lt",
        max(1, round(0.25 * k)),
        (0, 0, 0),
    )
    _text(d, (x0 + 2 * k, y + 13 * k), "Typical values", _font(3 * k), (0, 0, 0))
    _text(d, (x1 - 16 * k, y + 13 * k), "100 g", _font(3 * k), (0, 0, 0), "rt")
    _text(d, (x1 - 2 * k, y + 13 * k), "30 g", _font(3 * k), (0, 0, 0), "rt")
    d.rectangle([x0, y + 18 * k, x1, y + 20 * k], fill=(0, 0, 0))
    names = (
        "Energy kJ",
        "Energy kcal",
        "Fat",
        " saturates",
        "Carbohydrate",
        " sugars",
        "Fibre",
        "Protein",
        "Salt",
        "Vitamin D",
        "Thiamin",
        "Riboflavin",
        "Niacin",
        "Vitamin B6",
        "Folic acid",
        "Vitamin B12",
        "Iron",
    )
    font = _font(3.1 * k)
    y += 22 * k
    for name in names:
        per100 = rng.uniform(0.1, 90) if "Energy" not in name else rng.uniform(300, 1700)
        _text(d, (x0 + 2 * k, y), name, font, (0, 0, 0))
        _text(d, (x1 - 16 * k, y), f"{per100:.1f}", font, (0, 0, 0), "rt")
        _text(d, (x1 - 2 * k, y), f"{per100 * 0.3:.1f}", font, (0, 0, 0), "rt")
        y += 7.4 * k
        d.line([(x0, y - 2 * k), (x1, y - 2 * k)], fill=(0, 0, 0), width=max(1, round(0.15 * k)))
    _text(d, (4 * k, 201 * k), "INGREDIENTS", _font(4 * k), (120, 20, 20), "lt", 1, (120, 20, 20))
    _paragraph(d, rng, (4 * k, 208 * k, 66 * k, 262 * k), 2.7 * k, (40, 25, 15))
    _colour_bar(d, rng, 4 * k, 266 * k, 5 * k, 12)
    return img


def _draw_box_side_info(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Right side: vertical brand name, vitamins grid, QR code, recycling and address."""
    k = w / 70.0
    img = _vgradient(w, h, (225, 50, 45), (165, 25, 30))
    d = ImageDraw.Draw(img, "RGBA")
    _doodles(d, rng, w, h, k, 120)
    _rotated_text(
        img,
        (35 * k, 78 * k),
        "CRUNCHY OAT RINGS",
        _fit_font("CRUNCHY OAT RINGS", 140 * k, 26 * k),
        (255, 215, 50),
        90,
        round(0.8 * k),
        (110, 10, 20),
    )
    d = ImageDraw.Draw(img, "RGBA")
    d.rounded_rectangle([4 * k, 158 * k, 66 * k, 226 * k], 3 * k, fill=(255, 250, 240))
    _text(d, (35 * k, 161 * k), "Vitamins & Minerals", _font(4 * k), (170, 30, 40), "mt")
    font = _font(3 * k)
    for r in range(7):
        y = (170 + 7.8 * r) * k
        d.line([(6 * k, y), (64 * k, y)], fill=(120, 100, 90), width=1)
        _text(d, (7 * k, y + 2 * k), _word(rng, 2, 3).capitalize(), font, (40, 25, 15))
        _text(d, (46 * k, y + 2 * k), f"{rng.uniform(0.1, 30):.1f}mg", font, (40, 25, 15), "rt")
        _text(d, (63 * k, y + 2 * k), f"{int(rng.integers(5, 60))}%", font, (170, 30, 40), "rt")
    for x in (38, 50):
        d.line([(x * k, 170 * k), (x * k, 224 * k)], fill=(120, 100, 90), width=1)
    _qr(d, rng, 5 * k, 232 * k, 26 * k)
    _recycle(d, 48 * k, 240 * k, 6 * k, (255, 255, 255), "PAP 21")
    _paragraph(d, rng, (34 * k, 256 * k, 67 * k, 276 * k), 2.4 * k, (255, 235, 220))
    return img


def _draw_box_top(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Top flap: tear-open tab, brand, colour-control strip and lot text."""
    k = w / 190.0
    img = _vgradient(w, h, (255, 175, 45), (245, 120, 35))
    d = ImageDraw.Draw(img, "RGBA")
    _flakes(d, rng, w, h, k, 160)
    _text(
        d,
        (6 * k, 8 * k),
        "CRUNCHY",
        _font(11 * k),
        (200, 30, 40),
        "lt",
        round(0.4 * k),
        (255, 255, 255),
    )
    _text(d, (6 * k, 24 * k), "OAT RINGS", _font(5 * k), (30, 60, 140))
    for i in range(int(74 / 2.5)):  # perforation
        x = (62 + 2.5 * i) * k
        d.line([(x, 14 * k), (x + 1.2 * k, 14 * k)], fill=(90, 40, 20), width=round(0.4 * k))
        d.line([(x, 44 * k), (x + 1.2 * k, 44 * k)], fill=(90, 40, 20), width=round(0.4 * k))
    _text(d, (99 * k, 24 * k), "PRESS HERE TO OPEN", _font(5 * k), (90, 40, 20), "mm")
    for sx in (66, 132):
        d.polygon(
            [(sx * k, 36 * k), ((sx - 3) * k, 40 * k), ((sx + 3) * k, 40 * k)], fill=(90, 40, 20)
        )
    _text(d, (99 * k, 35 * k), _words(rng, 4), _font(3 * k), (90, 40, 20), "mm")
    _colour_bar(d, rng, 140 * k, 8 * k, 4 * k, 11)
    _barcode(d, rng, (140 * k, 16 * k, 184 * k, 42 * k), digits=False)
    _paragraph(d, rng, (6 * k, 50 * k, 184 * k, 68 * k), 2.8 * k, (90, 40, 20))
    return img


def _draw_box_bottom(rng: np.random.Generator, w: int, h: int) -> Image.Image:
    """Bottom flap: EAN barcode, best-before and lot codes, small print."""
    k = w / 190.0
    img = _vgradient(w, h, (250, 236, 205), (235, 215, 180))
    d = ImageDraw.Draw(img, "RGBA")
    _doodles(d, rng, w, h, k, 60)
    _barcode(d, rng, (8 * k, 8 * k, 62 * k, 46 * k))
    _text(d, (70 * k, 8 * k), "BEST BEFORE END", _font(4.5 * k), (40, 25, 15))
    _text(
        d,
        (70 * k, 15 * k),
        f"{int(rng.integers(1, 29)):02d} MAR 2026   L{int(rng.integers(10000, 99999))}",
        _font(5 * k),
        (20, 20, 20),
    )
    _paragraph(d, rng, (70 * k, 25 * k, 184 * k, 50 * k), 2.8 * k, (60, 40, 25))
    _recycle(d, 18 * k, 56 * k, 4 * k, (40, 110, 60), "")
    _paragraph(d, rng, (28 * k, 52 * k, 184 * k, 68 * k), 2.8 * k, (40, 110, 60))
    return img


# ----------------------------------------------------------------------------------------------
# Bottle
# ----------------------------------------------------------------------------------------------


def _bottle(rng: np.random.Generator) -> trimesh.Trimesh:
    shoulder_t = np.linspace(0, 1, 17)
    shoulder = np.stack(
        [0.0125 + 0.0225 * (1 + np.cos(np.pi * shoulder_t)) / 2, 0.150 + 0.042 * shoulder_t], -1
    )
    sections = [
        _chain(_line((0, 0), (0.031, 0), 7), _arc(0.031, 0.004, 0.004, -np.pi / 2, 0, 6)),
        _line((0.035, 0.004), (0.035, 0.030), 6),
        _line((0.035, 0.030), (0.035, 0.130), 21),
        _chain(
            _line((0.035, 0.130), (0.035, 0.150), 5),
            shoulder,
            np.array(
                [
                    [0.0125, 0.192],
                    [0.0125, 0.198],
                    [0.0125, 0.2045],
                    [0.0145, 0.2045],
                    [0.0145, 0.2075],
                    [0.0128, 0.2075],
                    [0.0128, 0.2085],
                ]
            ),
        ),
        _chain(
            np.array([[0.0128, 0.2085], [0.0152, 0.2085]]),
            _line((0.0152, 0.2085), (0.0152, 0.238), 9),
            _arc(0.0132, 0.238, 0.002, 0, np.pi / 2, 5),
        ),
        _line((0.0132, 0.240), (0, 0.240), 5),
    ]
    label_rows = round(0.100 * _TEX / (2 * np.pi * 0.035))  # isotropic print on the label
    lengths = [_arc_length(s) for s in sections]
    rows = _allocate_rows(lengths, [None, None, label_rows, None, None, None], _TEX)
    painters: list[Painter] = [
        _draw_glass_bottom,
        _draw_glass,
        _draw_label,
        _draw_glass_upper,
        _draw_cap,
        _draw_cap_top,
    ]
    bands = [
        (n, _mean_circumference(s), ln, p)
        for n, s, ln, p in zip(rows, sections, lengths, painters, strict=True)
    ]
    texture = _grain(_stack_bands(rng, bands), rng, 3.5)
    verts, faces, uv = _lathe(_chain(*sections), _sections_v(sections, rows, 0), 64)
    return _finish(verts, faces, uv, texture, roughness=0.5)


_GLASS = ((40, 120, 70), (20, 80, 45))


def _draw_glass(rng: np.random.Generator, w: int, h: int, k: float) -> Image.Image:
    """Tinted green glass: gradient, streaks, bubbles and speckles so nothing is flat."""
    img = _vgradient(w, h, _GLASS[0], _GLASS[1])
    d = ImageDraw.Draw(img, "RGBA")
    for _ in range(int(w / k / 6)):  # vertical mould streaks / baked reflections
        x, bw = rng.uniform(0, w), k * rng.uniform(0.3, 3)
        d.rectangle([x, 0, x + bw, h], fill=(200, 255, 210, int(rng.integers(10, 45))))
    _speckle(d, rng, w, h, k, 8.0, ((150, 220, 160), (10, 50, 25), (90, 170, 110)))
    for _ in range(int(w * h / (k * k) / 40)):  # tiny bubbles
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), k * rng.uniform(0.2, 0.8)
        d.ellipse([x - r, y - r, x + r, y + r], outline=(210, 255, 220, 140), width=1)
    return img


def _draw_glass_bottom(rng: np.random.Generator, w: int, h: int, k: float) -> Image.Image:
    img = _draw_glass(rng, w, h, k)
    d = ImageDraw.Draw(img, "RGBA")
    for i in range(int(w / k / 9)):  # embossed mould marks around the heel
        x = (i + rng.uniform(0.2, 0.8)) * 9 * k
        d.rectangle([x, 0.55 * h, x + 2.5 * k, 0.8 * h], fill=(170, 230, 180, 70))
    _text(
        d,
        (w * 0.3, 0.2 * h),
        f"{int(rng.integers(10, 99))} 500ML",
        _font(min(3 * k, 0.25 * h)),
        (170, 230, 180, 140),
    )
    return img


def _draw_glass_upper(rng: np.random.Generator, w: int, h: int, k: float) -> Image.Image:
    """Upper glass with a printed neck collar: gold bands and a small brand ring."""
    img = _draw_glass(rng, w, h, k)
    d = ImageDraw.Draw(img, "RGBA")
    y0, y1 = 0.08 * h, 0.45 * h  # rows nearest the cap: the neck/upper shoulder
    d.rectangle([0, y0, w, y1], fill=(245, 236, 205))
    for yy in (y0 + 0.08 * (y1 - y0), y1 - 0.08 * (y1 - y0)):
        d.line([(0, yy), (w, yy)], fill=(190, 150, 50), width=max(1, round(0.1 * (y1 - y0))))
    font = _font(0.3 * (y1 - y0))
    x = rng.uniform(0, 10 * k)
    while x < w:
        word = "AURELIA" if rng.random() < 0.3 else _word(rng, 2, 3).upper()
        _text(d, (x, (y0 + y1) / 2), word, font, (20, 80, 45), "lm")
        x += font.getlength(word) + rng.uniform(2, 5) * k
        d.polygon(_star(x - 1.4 * k, (y0 + y1) / 2, 0.8 * k, 5, 0.45, 0), fill=(190, 150, 50))
    return img


def _draw_cap(rng: np.random.Generator, w: int, h: int, k: float) -> Image.Image:
    """Crown-style cap: red enamel, jittered knurl ridges, gold print band."""
    img = _vgradient(w, h, (205, 40, 45), (150, 20, 30))
    d = ImageDraw.Draw(img, "RGBA")
    x = 0.0
    while x < w:  # knurl: uneven pitch and shade avoids a perfectly periodic pattern
        pitch = k * rng.uniform(0.8, 1.4)
        d.rectangle(
            [x, 0.1 * h, x + 0.45 * pitch, h], fill=(255, 200, 200, int(rng.integers(30, 90)))
        )
        d.line([(x + 0.5 * pitch, 0.1 * h), (x + 0.5 * pitch, h)], fill=(80, 0, 10, 120), width=1)
        x += pitch
    d.rectangle([0, 0.22 * h, w, 0.5 * h], fill=(235, 200, 90))
    font = _font(0.2 * h)
    x = rng.uniform(0, 5 * k)
    while x < w:
        word = ("TWIST", "AURELIA", "OPEN", _word(rng).upper())[int(rng.integers(4))]
        _text(d, (x, 0.36 * h), word, font, (140, 20, 30), "lm")
        x += font.getlength(word) + k * rng.uniform(2, 6)
    return img


def _draw_cap_top(rng: np.random.Generator, w: int, h: int, k: float) -> Image.Image:
    """Cap top seen in polar UVs: rows are rings, columns are angles."""
    img = _vgradient(w, h, (235, 200, 90), (200, 40, 45))
    d = ImageDraw.Draw(img, "RGBA")
    for y in np.cumsum(rng.uniform(0.05, 0.2, 10)) * h:
        d.line([(0, y), (w, y)], fill=(120, 20, 20, 160), width=max(1, round(0.05 * h)))
    for _ in range(int(w / k)):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        d.ellipse([x - 0.4 * k, y - 0.4 * k, x + 0.4 * k, y + 0.4 * k], fill=(255, 240, 180, 150))
    return img


def _draw_label(rng: np.random.Generator, w: int, h: int, k: float) -> Image.Image:
    """Wrap-around label: borders, guilloche, front badge with lemons, side panels."""
    green, gold, ink = (20, 85, 50), (200, 160, 60), (40, 40, 30)
    img = _vgradient(w, h, (250, 243, 222), (240, 228, 198))
    d = ImageDraw.Draw(img, "RGBA")
    xs = np.arange(0, w + 4, 4)
    for i in range(14):  # guilloche: sums of sines with random frequencies and phases
        f1, f2, p1, p2 = (
            rng.uniform(2, 9),
            rng.uniform(11, 23),
            rng.uniform(0, 6.3),
            rng.uniform(0, 6.3),
        )
        ys = h * (0.2 + 0.6 * i / 13) + 3 * k * (
            np.sin(xs / w * 2 * np.pi * round(f1) + p1)
            + 0.4 * np.sin(xs / w * 2 * np.pi * round(f2) + p2)
        )
        d.line(
            list(zip(xs.tolist(), ys.tolist(), strict=True)),
            fill=(190, 170, 120, 110),
            width=max(1, round(0.25 * k)),
        )
    for y0, y1 in ((0, 12 * k), (h - 12 * k, h)):
        d.rectangle([0, y0, w, y1], fill=green)
        for yy in (y0 + 2 * k, y1 - 2 * k):
            d.line([(0, yy), (w, yy)], fill=gold, width=max(1, round(0.4 * k)))
        x = rng.uniform(0, 8 * k)
        font = _font(4.2 * k)
        while x < w:
            word = _word(rng, 2, 3).upper()
            _text(d, (x, (y0 + y1) / 2), word, font, (235, 215, 150), "lm")
            x += font.getlength(word) + 3 * k
            d.ellipse(
                [x - 1.9 * k, (y0 + y1) / 2 - 0.6 * k, x - 0.7 * k, (y0 + y1) / 2 + 0.6 * k],
                fill=gold,
            )
    cx, cy = w / 2, h / 2
    for _ in range(7):  # lemons and leaves around the badge
        for side in (-1, 1):
            lx, ly = cx + side * rng.uniform(41, 48) * k, cy + rng.uniform(-30, 30) * k
            ang = rng.uniform(0, np.pi)
            d.polygon(
                _ellipse_poly(
                    lx + 6 * k * math.cos(ang + 1),
                    ly + 6 * k * math.sin(ang + 1),
                    7 * k,
                    2.6 * k,
                    ang + 1,
                ),
                fill=(60, 140, 50),
                outline=(30, 80, 30),
            )
            rx = rng.uniform(6, 9) * k
            d.polygon(
                _ellipse_poly(lx, ly, rx, rx * 0.72, ang),
                fill=_jitter(rng, (250, 215, 40), 15),
                outline=(190, 140, 20),
            )
            d.ellipse(
                [lx - 0.4 * rx, ly - 0.35 * rx, lx - 0.1 * rx, ly - 0.1 * rx],
                fill=(255, 250, 200, 200),
            )
    d.ellipse([cx - 36 * k, cy - 33 * k, cx + 36 * k, cy + 33 * k], fill=gold)
    d.ellipse([cx - 34 * k, cy - 31 * k, cx + 34 * k, cy + 31 * k], fill=green)
    d.ellipse(
        [cx - 31 * k, cy - 28 * k, cx + 31 * k, cy + 28 * k],
        outline=gold,
        width=max(1, round(0.4 * k)),
    )
    for a in np.linspace(0, 2 * np.pi, 29)[:-1]:
        d.polygon(
            _star(cx + 32.5 * k * math.cos(a), cy + 29.5 * k * math.sin(a), 0.9 * k, 5, 0.45, a),
            fill=gold,
        )
    _text(d, (cx, cy - 18 * k), "EST. 1921", _font(4 * k), (235, 215, 150), "mm")
    _text(
        d,
        (cx, cy - 5 * k),
        "AURELIA",
        _fit_font("AURELIA", 54 * k, 16 * k),
        (255, 250, 235),
        "mm",
        max(1, round(0.3 * k)),
        (255, 250, 235),
    )
    _text(d, (cx, cy + 8 * k), "SPARKLING", _font(5.5 * k), (250, 215, 60), "mm")
    _text(d, (cx, cy + 16 * k), "LEMONADE", _font(7 * k), (250, 215, 60), "mm")
    _text(d, (cx, cy + 24 * k), "with " + _words(rng, 2), _font(3.2 * k), (235, 215, 150), "mm")
    left = 4 * k  # side panels flank the front badge; the glued seam is at u = 0
    _text(d, (left, 16 * k), "INGREDIENTS", _font(4.5 * k), green, "lt", 1, green)
    _paragraph(d, rng, (left, 23 * k, left + 50 * k, 52 * k), 2.8 * k, ink)
    d.rectangle([left, 55 * k, left + 50 * k, 86 * k], outline=ink, width=max(1, round(0.25 * k)))
    for i in range(6):
        y = (58 + 4.6 * i) * k
        _text(d, (left + 2 * k, y), _word(rng, 2, 3).capitalize(), _font(2.8 * k), ink)
        _text(d, (left + 48 * k, y), f"{rng.uniform(0, 40):.1f} g", _font(2.8 * k), ink, "rt")
    right = w - 54 * k
    _text(d, (right, 16 * k), "500 ml", _font(9 * k), green)
    _text(d, (right, 28 * k), "SERVE CHILLED", _font(3.6 * k), ink)
    _paragraph(d, rng, (right, 34 * k, right + 50 * k, 50 * k), 2.6 * k, ink)
    _barcode(d, rng, (right, 54 * k, right + 30 * k, 84 * k))
    _recycle(d, right + 42 * k, 62 * k, 5 * k, green, "GLASS")
    return img


# ----------------------------------------------------------------------------------------------
# Mug
# ----------------------------------------------------------------------------------------------

_MUG_BG = (26, 96, 118)


def _mug(rng: np.random.Generator) -> trimesh.Trimesh:
    r_out, r_in = 0.042, 0.038  # 4 mm wall; rim top at y = 0.100
    sections = [
        _chain(_line((0, 0), (0.038, 0), 8), _arc(0.038, 0.004, 0.004, -np.pi / 2, 0, 6)),
        _line((r_out, 0.004), (r_out, 0.098), 39),
        _chain(
            _arc(0.040, 0.098, 0.002, 0, np.pi, 9),
            _line((r_in, 0.098), (r_in, 0.012), 35),
            _arc(0.032, 0.012, 0.006, 0, -np.pi / 2, 7),
            _line((0.032, 0.006), (0, 0.006), 8),
        ),
    ]
    centre, normal, length = _handle_centreline(48)
    handle_ra, handle_rb = 0.0045, 0.0065  # radial (in plane) and sideways half-thickness
    handle_perimeter = math.pi * math.sqrt(2 * (handle_ra**2 + handle_rb**2))
    handle_rows = 160
    print_rows = round(0.094 * _TEX / (2 * np.pi * r_out))  # isotropic outer print
    lengths = [_arc_length(s) for s in sections]
    rows = _allocate_rows(lengths, [None, print_rows, None], _TEX - handle_rows)
    rim_fraction = _arc_length(sections[2][:9]) / lengths[2]
    painters: list[Painter] = [
        _draw_mug_foot,
        _draw_mug_print,
        lambda g, w, h, k: _draw_mug_inside(g, w, h, k, rim_fraction),
    ]
    bands: list[Band] = [(handle_rows, length, handle_perimeter, _draw_mug_handle)]
    bands += [
        (n, _mean_circumference(s), ln, p)
        for n, s, ln, p in zip(rows, sections, lengths, painters, strict=True)
    ]
    texture = _grain(_stack_bands(rng, bands), rng, 3.0)
    body = _lathe(_chain(*sections), _sections_v(sections, rows, handle_rows), 64)
    handle = _tube(
        centre, normal, handle_ra, handle_rb, 24, (0.5 / _TEX, (handle_rows - 0.5) / _TEX)
    )
    verts, faces, uv = _join([body, handle])
    return _finish(verts, faces, uv, texture, roughness=0.55)


_WHITE_GLAZE = (238, 238, 233)  # a glossy white glaze, slightly warm


def _white_mug() -> trimesh.Trimesh:
    """The mug's shape (body and handle) glazed one plain white all over: no print, no speckle,
    no grain, so nothing but shading and outline tells one point of it from another."""
    textured = _mug(np.random.default_rng(0))
    texture = Image.new("RGB", (_TEX, _TEX), _WHITE_GLAZE)
    return _finish(textured.vertices, textured.faces, textured.visual.uv, texture, roughness=0.5)


def _handle_centreline(n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """D-shaped handle path in the x-y plane, leaving the wall horizontally at both ends.

    The ends sit at x = 0.040, inside the 38-42 mm wall, so the open-looking joints are hidden
    and the tube's end caps never show inside the cup. Returns points, in-plane normals, length.
    """
    th = np.linspace(np.pi / 2, -np.pi / 2, 600)
    dense = np.stack(
        [0.040 + 0.030 * np.cos(th) ** 0.6, 0.053 + 0.027 * np.sin(th), np.zeros_like(th)], -1
    )
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(dense, axis=0), axis=1))])
    t = np.linspace(0, s[-1], n)
    pts = np.stack([np.interp(t, s, dense[:, i]) for i in range(3)], -1)
    tangent = np.gradient(pts, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    normal = np.stack([-tangent[:, 1], tangent[:, 0], np.zeros(n)], -1)
    return pts, normal, float(s[-1])


def _tube(
    centre: np.ndarray,
    normal: np.ndarray,
    ra: float,
    rb: float,
    around: int,
    v_range: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closed elliptical tube along a planar path (binormal = +Z), capped with fans at both ends.

    u runs along the path (0..1), v around the section inside `v_range`.
    """
    m, n = len(centre), around + 1
    phi = np.linspace(0, 2 * np.pi, n)
    binormal = np.array([0.0, 0.0, 1.0])
    ring = (
        centre[:, None, :]
        + ra * np.cos(phi)[None, :, None] * normal[:, None, :]
        + rb * np.sin(phi)[None, :, None] * binormal
    ).reshape(-1, 3)
    u = np.linspace(0, 1, m)
    v = v_range[0] + (v_range[1] - v_range[0]) * phi / (2 * np.pi)
    uv = np.stack(np.broadcast_arrays(u[:, None], v[None, :]), -1).reshape(-1, 2)
    idx = np.arange(m * n).reshape(m, n)
    a, b, c, d = idx[:-1, :-1], idx[:-1, 1:], idx[1:, 1:], idx[1:, :-1]
    faces = np.concatenate(
        [np.stack([a, b, c], -1).reshape(-1, 3), np.stack([a, c, d], -1).reshape(-1, 3)]
    )
    # Orient the wall outward: the first triangle's normal must point away from the path.
    tri = ring[faces[0]]
    if np.dot(np.cross(tri[1] - tri[0], tri[2] - tri[0]), tri[0] - centre[0]) < 0:
        faces = faces[:, ::-1]
    caps, cap_uv, base = [], [], len(ring)
    for end, sign in ((0, -1.0), (m - 1, 1.0)):
        j = np.arange(around)
        fan = np.stack([np.full(around, base), idx[end, j + 1], idx[end, j]], -1)
        tangent = centre[min(end + 1, m - 1)] - centre[max(end - 1, 0)]
        tri = np.vstack([centre[end], ring[fan[0, 1]], ring[fan[0, 2]]])
        if np.dot(np.cross(tri[1] - tri[0], tri[2] - tri[0]), sign * tangent) < 0:
            fan = fan[:, ::-1]
        caps.append(fan)
        cap_uv.append([u[end], 0.5 * (v_range[0] + v_range[1])])
        ring = np.vstack([ring, centre[end]])
        base += 1
    return ring, np.concatenate([faces, *caps]), np.vstack([uv, np.array(cap_uv)])


def _draw_mug_print(rng: np.random.Generator, w: int, h: int, k: float) -> Image.Image:
    """All-over wrap print: blobs, leaves, flowers, geometric confetti, dots and a text band."""
    img = _vgradient(w, h, (32, 108, 130), (18, 76, 96))
    d = ImageDraw.Draw(img, "RGBA")
    palette = (
        (250, 200, 60),
        (240, 110, 90),
        (250, 240, 220),
        (120, 200, 170),
        (230, 80, 120),
        (170, 130, 230),
        (255, 160, 40),
    )

    def pick() -> RGB:
        return _jitter(rng, palette[int(rng.integers(len(palette)))], 25)

    for _ in range(45):  # soft background blobs
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), k * rng.uniform(6, 18)
        pts = _blob(rng, 0, y, r, 10, 0.3)
        col = _alpha(pick(), 45)
        for xx in _wrap_xs(x, r * 1.3, w):
            d.polygon([(px + xx, py) for px, py in pts], fill=col)
    for _ in range(160):  # leaves
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), k * rng.uniform(2.5, 7)
        ang, col = rng.uniform(0, np.pi), _jitter(rng, (90, 170, 100), 40)
        for xx in _wrap_xs(x, r, w):
            d.polygon(_ellipse_poly(xx, y, r, r * 0.38, ang, 16), fill=col)
            d.line(
                [
                    (xx - r * 0.9 * math.cos(ang), y - r * 0.9 * math.sin(ang)),
                    (xx + r * 0.9 * math.cos(ang), y + r * 0.9 * math.sin(ang)),
                ],
                fill=(40, 90, 50),
                width=1,
            )
    sizes = np.concatenate([rng.uniform(8, 14, 26), rng.uniform(3, 7, 90)]) * k
    for r in sizes:  # flowers, big first
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        petals, col, mid = int(rng.integers(5, 9)), pick(), pick()
        rot = rng.uniform(0, 2 * np.pi)
        for xx in _wrap_xs(x, r, w):
            for p in range(petals):
                a = rot + 2 * np.pi * p / petals
                px, py, pr = xx + 0.55 * r * math.cos(a), y + 0.55 * r * math.sin(a), 0.45 * r
                d.ellipse(
                    [px - pr, py - pr, px + pr, py + pr], fill=col, outline=(20, 50, 60), width=1
                )
            d.ellipse([xx - 0.3 * r, y - 0.3 * r, xx + 0.3 * r, y + 0.3 * r], fill=mid)
            for _ in range(4):
                dx, dy = rng.uniform(-0.18, 0.18, 2) * r
                d.ellipse(
                    [xx + dx - 0.05 * r, y + dy - 0.05 * r, xx + dx + 0.05 * r, y + dy + 0.05 * r],
                    fill=(60, 30, 20),
                )
    for _ in range(260):  # geometric confetti
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), k * rng.uniform(0.8, 3.5)
        col, kind, rot = pick(), int(rng.integers(3)), float(rng.uniform(0, 360))
        for xx in _wrap_xs(x, r, w):
            if kind == 0:
                d.regular_polygon((xx, y, r), 3, rotation=rot, fill=col)
            elif kind == 1:
                d.regular_polygon((xx, y, r), 4, rotation=rot, fill=col)
            else:
                d.ellipse(
                    [xx - r, y - r, xx + r, y + r], outline=col, width=max(1, round(0.35 * k))
                )
    _speckle(d, rng, w, h, k, 12.0, ((250, 240, 220), (250, 200, 60), (10, 40, 50)), (0.2, 0.8))
    y0, y1 = 0.60 * h, 0.73 * h  # text band
    d.rectangle([0, y0, w, y1], fill=(250, 240, 222))
    d.line(
        [(0, y0 + 0.8 * k), (w, y0 + 0.8 * k)], fill=(240, 110, 90), width=max(1, round(0.5 * k))
    )
    d.line(
        [(0, y1 - 0.8 * k), (w, y1 - 0.8 * k)], fill=(240, 110, 90), width=max(1, round(0.5 * k))
    )
    font = _font(0.55 * (y1 - y0))
    x = rng.uniform(2, 6) * k
    phrases = ("good morning", "sunshine", "coffee first", "bloom", "hello", "slow days")
    while x < w - 25 * k:
        word = phrases[int(rng.integers(len(phrases)))] if rng.random() < 0.4 else _words(rng, 2)
        col = ((20, 80, 100), (200, 60, 70), (120, 80, 170))[int(rng.integers(3))]
        _text(d, (x, (y0 + y1) / 2), word, font, col, "lm")
        x += font.getlength(word) + 2.5 * k
        d.polygon(_star(x, (y0 + y1) / 2, 1.4 * k, 5, 0.45, rng.uniform(0, 1)), fill=(250, 180, 40))
        x += 3 * k
    return img


def _draw_mug_inside(rng: np.random.Generator, w: int, h: int, k: float, rim: float) -> Image.Image:
    """Pale glaze with iron speckle; rows at the band bottom are the rim, where glaze thins."""
    img = _vgradient(w, h, (232, 238, 228), (244, 240, 226))
    d = ImageDraw.Draw(img, "RGBA")
    for _ in range(120):  # mottled glaze pooling
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), k * rng.uniform(3, 12)
        d.polygon(_blob(rng, x, y, r, 9, 0.35), fill=(200, 215, 205, 40))
    _speckle(d, rng, w, h, k, 14.0, ((110, 70, 40), (70, 50, 40), (160, 120, 80)))
    d.rectangle([0, h * (1 - rim), w, h], fill=(150, 95, 60, 170))
    _speckle(d, rng, w, round(h * rim) + 1, k, 30.0, ((240, 230, 210),))
    return img


def _draw_mug_foot(rng: np.random.Generator, w: int, h: int, k: float) -> Image.Image:
    """Unglazed stoneware foot with a maker's stamp (rows at the band bottom = centre)."""
    img = _vgradient(w, h, (200, 185, 160), (185, 165, 140))
    d = ImageDraw.Draw(img, "RGBA")
    _speckle(d, rng, w, h, k, 20.0, ((90, 60, 40), (140, 110, 80), (230, 215, 190)))
    y = 0.25 * h
    font = _font(min(4 * k, 0.12 * h))
    x = rng.uniform(0, 4 * k)
    while x < w:
        word = ("STONEWARE", "DISHWASHER SAFE", "MICROWAVE SAFE", _word(rng).upper())[
            int(rng.integers(4))
        ]
        _text(d, (x, y), word, font, (110, 80, 55), "lm")
        x += font.getlength(word) + 5 * k
    d.rectangle([0, 0.55 * h, w, 0.62 * h], fill=(26, 96, 118, 200))  # glaze line above the foot
    return img


def _draw_mug_handle(rng: np.random.Generator, w: int, h: int, k: float) -> Image.Image:
    """Handle glaze: the print's ground colour with a contrasting stripe, mottling and speckle."""
    img = _vgradient(w, h, _MUG_BG, (18, 76, 96))
    d = ImageDraw.Draw(img, "RGBA")
    for _ in range(60):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), k * rng.uniform(1, 4)
        d.polygon(_blob(rng, x, y, r, 8, 0.35), fill=(120, 200, 210, 50))
    d.rectangle([0, 0.45 * h, w, 0.55 * h], fill=(250, 200, 60))
    _speckle(d, rng, w, h, k, 30.0, ((250, 240, 220), (10, 40, 50)), (0.2, 0.6))
    return img
