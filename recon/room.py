"""A procedural shop room (floor, posters on the walls, shelves, a counter) and walks through it.

The room is the project's own test space for scene mode: every surface is textured by code at
about the detail a 960 px photo resolves from 1–3 m (a few millimetres a texel), with no texture
repeated across a surface, so structure from motion and stereo see a real-looking interior. The
frame is the truth frame of a scene capture: metres, +Y up, the floor on y = 0, the room centred
on x = z = 0 with its long side along X.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from recon.cameras import Camera, look_at
from recon.procedural import (
    _barcode,
    _blob,
    _fancy_text,
    _fit_font,
    _font,
    _fractal_noise,
    _grain,
    _jitter,
    _paragraph,
    _star,
    _text,
    _words,
)
from recon.textured_mesh import Primitive, TexturedMesh

RGB = tuple[int, int, int]

_WALL_COLOURS: tuple[RGB, ...] = (
    (222, 214, 196),
    (196, 210, 214),
    (226, 206, 190),
    (204, 214, 192),
)
_POSTER_COLOURS: tuple[RGB, ...] = (
    (200, 50, 45), (30, 90, 160), (40, 130, 80), (235, 170, 30), (120, 60, 150), (20, 20, 30),
)  # fmt: skip
_BOX_COLOURS: tuple[RGB, ...] = (
    (210, 60, 50), (40, 110, 190), (60, 160, 90), (240, 190, 40), (150, 80, 170), (240, 240, 235),
    (30, 40, 60), (230, 120, 40),
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class RoomOptions:
    """The room's size and furnishing."""

    width_m: float = 6.0  # along X
    depth_m: float = 4.0  # along Z
    height_m: float = 2.8
    texels_per_m: float = 340.0  # wall, floor and ceiling texture resolution (~3 mm a texel)
    table: bool = False  # a wooden table in a free corner, as a real shop's display table
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class WalkOptions:
    """How the walk through the room is filmed: one loop around its middle, looking outward."""

    frames: int = 100
    size_px: int = 960  # square frames
    hfov_deg: float = 60.0
    eye_height_m: float = 1.5
    path_margin_m: float = 1.7  # the loop keeps this far from the walls at its widest
    pitch_deg: float = -18.0  # looking a little down: floor, shelves and counter in view
    nod_deg: float = 10.0  # ... and now and then more or less so (the floor, the top shelves)
    sway_deg: float = 15.0  # the gaze swings this far left and right of straight outward
    seed: int = 0


def make_room(options: RoomOptions | None = None) -> TexturedMesh:
    """The shop room, in the truth frame (see the module docstring)."""
    options = options or RoomOptions()
    rng = np.random.default_rng(options.seed)
    w, d, h = options.width_m / 2, options.depth_m / 2, options.height_m
    k = options.texels_per_m
    primitives = [
        _quad((-w, 0, d), (2 * w, 0, 0), (0, 0, -2 * d), _floor_texture(rng, 2 * w, 2 * d, k)),
        _quad((-w, h, -d), (2 * w, 0, 0), (0, 0, 2 * d), _ceiling_texture(rng, 2 * w, 2 * d, k)),
    ]
    # Walls face into the room: (origin at the floor's left end seen from inside, along-wall axis)
    walls = (
        ((-w, 0, -d), (2 * w, 0, 0)),  # back wall (z = -d)
        ((w, 0, -d), (0, 0, 2 * d)),  # right wall (x = +w)
        ((w, 0, d), (-2 * w, 0, 0)),  # front wall (z = +d)
        ((-w, 0, d), (0, 0, -2 * d)),  # left wall (x = -w)
    )
    for index, (origin, along) in enumerate(walls):
        length = float(np.linalg.norm(along))
        texture = _wall_texture(rng, length, h, k, _WALL_COLOURS[index])
        primitives.append(_quad(origin, along, (0, h, 0), texture))

    wood_boxes: list[tuple[np.ndarray, np.ndarray]] = []
    product_boxes: list[tuple[np.ndarray, np.ndarray]] = []
    # Shelf units against the back and the left wall: two sides, a plinth, four boards.
    for lo, hi in (
        ((-w + 0.5, 0.0, -d), (-w + 2.3, 2.0, -d + 0.38)),
        ((-0.2, 0.0, -d), (1.6, 2.0, -d + 0.38)),
        ((-w, 0.0, -d + 0.7), (-w + 0.38, 1.8, 0.6)),
    ):
        wood_boxes += _shelf_unit(np.array(lo), np.array(hi), rng, product_boxes)
    # The counter stands near the right wall, room for the clerk behind it.
    counter_lo, counter_hi = np.array([w - 1.0, 0.0, -0.8]), np.array([w - 0.4, 0.95, 0.8])
    wood_boxes.append((counter_lo, counter_hi))
    primitives.append(
        _quad(
            (counter_lo[0] - 0.004, 0.08, counter_lo[2] + 0.05),  # faces the room (-X)
            (0, 0, counter_hi[2] - counter_lo[2] - 0.1),
            (0, 0.8, 0),
            _poster_texture(rng, counter_hi[2] - counter_lo[2] - 0.1, 0.8, k * 1.5),
        )
    )
    for _ in range(4):  # goods on the counter
        x = rng.uniform(counter_lo[0] + 0.1, counter_hi[0] - 0.25)
        z = rng.uniform(counter_lo[2] + 0.1, counter_hi[2] - 0.3)
        size = rng.uniform([0.08, 0.1, 0.08], [0.2, 0.3, 0.2])
        product_boxes.append((np.array([x, 0.95, z]), np.array([x, 0.95, z]) + size))
    if options.table:
        top = 0.75
        lo, hi = np.array([-w + 0.9, top - 0.04, d - 1.3]), np.array([-w + 2.3, top, d - 0.5])
        wood_boxes.append((lo, hi))
        for x in (lo[0] + 0.05, hi[0] - 0.1):
            for z in (lo[2] + 0.05, hi[2] - 0.1):
                wood_boxes.append(
                    (np.array([x, 0.0, z]), np.array([x + 0.05, top - 0.04, z + 0.05]))
                )
        for _ in range(3):
            x, z = rng.uniform(lo[0] + 0.1, hi[0] - 0.3), rng.uniform(lo[2] + 0.1, hi[2] - 0.3)
            size = rng.uniform([0.1, 0.08, 0.1], [0.25, 0.3, 0.2])
            product_boxes.append((np.array([x, top, z]), np.array([x, top, z]) + size))
    primitives.append(_wood_boxes(wood_boxes, rng))
    primitives.append(_printed_boxes(product_boxes, rng))
    return TexturedMesh(tuple(primitives))


def walk_cameras(
    room: RoomOptions, walk: WalkOptions, names: Sequence[str], *, phase: float = 0.0
) -> list[Camera]:
    """Cameras along one loop around the room's middle, one per name, looking outward (towards
    the walls and what stands along them) with a slow sway of the gaze, as someone filming the
    room while walking round it. `phase` (in loops) shifts the walk, for held-out views."""
    rng = np.random.default_rng(walk.seed)
    wobble = rng.uniform(0, 2 * math.pi, 5)
    a = max(room.width_m / 2 - walk.path_margin_m, 0.2)
    b = max(room.depth_m / 2 - walk.path_margin_m * 0.75, 0.2)
    half_fov = math.radians(walk.hfov_deg) / 2
    focal = (walk.size_px / 2) / math.tan(half_fov)
    c = (walk.size_px - 1) / 2
    K = np.array([[focal, 0, c], [0, focal, c], [0, 0, 1.0]])
    cameras = []
    for index, name in enumerate(names):
        turn = index / len(names) + phase
        angle = 2 * math.pi * turn
        eye = np.array(
            [
                a * math.cos(angle),
                walk.eye_height_m + 0.04 * math.sin(7 * angle + wobble[0]),
                b * math.sin(angle),
            ]
        )
        yaw = angle + math.radians(walk.sway_deg) * math.sin(2 * angle + wobble[1])
        pitch = math.radians(walk.pitch_deg + walk.nod_deg * math.sin(3 * angle + wobble[2]))
        forward = np.array(
            [math.cos(yaw) * math.cos(pitch), math.sin(pitch), math.sin(yaw) * math.cos(pitch)]
        )
        R, _ = look_at(eye, eye + forward)
        roll = math.radians(2.0 * math.sin(4 * angle + wobble[3]))
        roll_matrix = np.array(
            [[math.cos(roll), -math.sin(roll), 0], [math.sin(roll), math.cos(roll), 0], [0, 0, 1]]
        )
        R = roll_matrix @ R
        cameras.append(
            Camera(name=name, width=walk.size_px, height=walk.size_px, K=K, R=R, t=-R @ eye)
        )
    return cameras


# -- geometry ----------------------------------------------------------------------------------


def _quad(
    origin: Sequence[float], u_axis: Sequence[float], v_axis: Sequence[float], texture: np.ndarray
) -> Primitive:
    """A rectangle with the whole `texture` on it: image left along `u_axis`, image top at the
    end of `v_axis`; it faces u × v."""
    o, u, v = (np.asarray(x, dtype=np.float64) for x in (origin, u_axis, v_axis))
    normal = np.cross(u, v)
    normal /= np.linalg.norm(normal)
    return Primitive(
        vertices=np.array([o, o + u, o + u + v, o + v]),
        faces=np.array([[0, 1, 2], [0, 2, 3]]),
        normals=np.tile(normal, (4, 1)),
        uv=np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64),
        texture=texture,
    )


def _box_faces(lo: np.ndarray, hi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The six outward faces of an axis-aligned box as (origin, u, v), normal = u × v."""
    x0, y0, z0 = lo
    x1, y1, z1 = hi
    sx, sy, sz = hi - lo
    X, Y, Z = np.eye(3)
    return [
        (np.array([x0, y0, z1]), sx * X, sy * Y),  # +Z
        (np.array([x1, y0, z0]), -sx * X, sy * Y),  # -Z
        (np.array([x1, y0, z1]), -sz * Z, sy * Y),  # +X
        (np.array([x0, y0, z0]), sz * Z, sy * Y),  # -X
        (np.array([x0, y1, z1]), sx * X, -sz * Z),  # +Y
        (np.array([x0, y0, z0]), sx * X, sz * Z),  # -Y
    ]


def _boxes_primitive(
    boxes: Sequence[tuple[np.ndarray, np.ndarray]], uv_of_face, texture: np.ndarray
) -> Primitive:
    """Boxes as one primitive; `uv_of_face(box, face, u_len, v_len)` gives the (4, 2) UVs of a
    face's corners (origin, +u, +u+v, +v)."""
    vertices, faces, normals, uvs = [], [], [], []
    for box_index, (lo, hi) in enumerate(boxes):
        for face_index, (o, u, v) in enumerate(_box_faces(np.asarray(lo), np.asarray(hi))):
            base = len(vertices) * 4
            vertices.append(np.array([o, o + u, o + u + v, o + v]))
            normal = np.cross(u, v)
            normals.append(np.tile(normal / np.linalg.norm(normal), (4, 1)))
            faces.append(np.array([[0, 1, 2], [0, 2, 3]]) + base)
            uvs.append(uv_of_face(box_index, face_index, np.linalg.norm(u), np.linalg.norm(v)))
    return Primitive(
        vertices=np.concatenate(vertices),
        faces=np.concatenate(faces),
        normals=np.concatenate(normals),
        uv=np.concatenate(uvs).astype(np.float64),
        texture=texture,
    )


def _shelf_unit(
    lo: np.ndarray, hi: np.ndarray, rng: np.random.Generator, goods: list
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Boards of a shelf unit between corners `lo` and `hi` (its back against a wall), and the
    boxed goods standing on them, appended to `goods`."""
    thick = 0.025
    along = 0 if hi[0] - lo[0] >= hi[2] - lo[2] else 2  # the unit runs along X or along Z
    side_lo, side_hi = lo.copy(), hi.copy()
    side_hi[along] = lo[along] + thick
    other_lo, other_hi = lo.copy(), hi.copy()
    other_lo[along] = hi[along] - thick
    boards = [(side_lo, side_hi), (other_lo, other_hi)]
    levels = np.linspace(0.08, hi[1] - lo[1] - thick, 5)
    for level in levels:
        board_lo, board_hi = lo.copy(), hi.copy()
        board_lo[along] += thick
        board_hi[along] -= thick
        board_lo[1], board_hi[1] = lo[1] + level - thick, lo[1] + level
        boards.append((board_lo, board_hi))
    depth_axis = 2 - along
    for level, next_level in itertools.pairwise(levels):
        position = lo[along] + thick + 0.03
        while True:
            size = rng.uniform(0.12, 0.3)
            if position + size > hi[along] - thick - 0.02:
                break
            if rng.random() < 0.8:  # gaps between goods, as on real shelves
                height = rng.uniform(0.35, 0.9) * (next_level - level - thick)
                depth = rng.uniform(0.15, 0.3)
                box_lo, box_hi = np.zeros(3), np.zeros(3)
                box_lo[along], box_hi[along] = position, position + size
                box_lo[1], box_hi[1] = lo[1] + level, lo[1] + level + height
                front = lo[depth_axis] + 0.02
                box_lo[depth_axis], box_hi[depth_axis] = front, front + depth
                goods.append((box_lo, box_hi))
            position += size + rng.uniform(0.01, 0.06)
    return boards


def _wood_boxes(boxes: Sequence[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator):
    """Furniture boards in one wood material: each face shows its own part of a 2 m tile."""
    tile_m = 2.0
    texture = _wood_texture(rng, 2048, 2048, (0.58, 0.40, 0.24))
    offsets = rng.uniform(0, 1, (len(boxes), 6, 2))

    def uv_of_face(box: int, face: int, u_len: float, v_len: float) -> np.ndarray:
        du, dv = u_len / tile_m, v_len / tile_m
        return offsets[box, face] + np.array([[0, 0], [du, 0], [du, dv], [0, dv]])

    return _boxes_primitive(boxes, uv_of_face, texture)


def _printed_boxes(boxes: Sequence[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator):
    """Boxed goods: every face has its own print in one atlas."""
    cells = 1
    while cells * cells < 6 * len(boxes):
        cells += 1
    cell_px = 2048 // cells
    atlas = Image.new("RGB", (cells * cell_px, cells * cell_px), (255, 255, 255))
    for index in range(6 * len(boxes)):
        row, col = divmod(index, cells)
        atlas.paste(_pack_print(rng, cell_px), (col * cell_px, row * cell_px))
    size = cells * cell_px
    inset = 2 / size  # keep clear of the next cell when mipmapping

    def uv_of_face(box: int, face: int, u_len: float, v_len: float) -> np.ndarray:
        row, col = divmod(box * 6 + face, cells)
        u0, u1 = col / cells + inset, (col + 1) / cells - inset
        v1, v0 = 1 - row / cells - inset, 1 - (row + 1) / cells + inset
        return np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]])

    return _boxes_primitive(boxes, uv_of_face, np.asarray(atlas))


# -- textures ----------------------------------------------------------------------------------


def _floor_texture(rng: np.random.Generator, width_m: float, depth_m: float, k: float):
    """Oak planks 18 cm wide, staggered joints, grain along each plank."""
    w, h = round(width_m * k), round(depth_m * k)
    plank_px = 0.18 * k
    rows = np.arange(h)[:, None] // plank_px
    # Each row of planks has its own joint offsets: the plank id changes along x at them.
    lengths_px = 1.4 * k
    shift = (rows * 0.37 % 1.0) * lengths_px
    plank = (np.arange(w)[None, :] + shift) // lengths_px + rows * 1000
    _, plank_id = np.unique(plank, return_inverse=True)
    plank_id = plank_id.reshape(h, w)
    tone = rng.uniform(-0.12, 0.12, plank_id.max() + 1)[plank_id]
    grain = _fractal_noise(rng, h, w // 8, ((32, 0.6), (8, 0.5), (2, 0.7), (1, 0.6)))
    grain = np.asarray(Image.fromarray(grain).resize((w, h), Image.Resampling.BICUBIC))
    fine = _fractal_noise(rng, h, w, ((16, 0.4), (4, 0.5), (1, 0.5)))
    value = 0.62 + tone + 0.07 * grain + 0.04 * fine
    edge = (np.arange(h)[:, None] % plank_px < 1.5) | (np.diff(plank_id, axis=1, prepend=-1) != 0)
    value = np.where(edge, value * 0.45, value)
    rgb = np.clip(value[..., None] * np.array([0.95, 0.70, 0.45]) * 255, 0, 255)
    return rgb.astype(np.uint8)


def _ceiling_texture(rng: np.random.Generator, width_m: float, depth_m: float, k: float):
    """Acoustic ceiling tiles: 60 cm grid, speckled."""
    w, h = round(width_m * k), round(depth_m * k)
    noise = _fractal_noise(rng, h, w, ((64, 0.3), (8, 0.5), (2, 0.8), (1, 0.8)))
    value = 228 + 9 * noise
    tile = 0.6 * k
    grid = (np.arange(h)[:, None] % tile < 3) | (np.arange(w)[None, :] % tile < 3)
    value = np.where(grid, 170, value)
    return np.repeat(np.clip(value, 0, 255)[..., None], 3, axis=2).astype(np.uint8)


def _wall_texture(
    rng: np.random.Generator, length_m: float, height_m: float, k: float, colour: RGB
) -> np.ndarray:
    """Patterned wallpaper with a skirting board, posters and small flyers pinned on it.

    The paper's motifs (leaves and dots a few centimetres across, scattered, never repeated)
    are what shop walls show a camera more often than bare paint: stereo needs them."""
    w, h = round(length_m * k), round(height_m * k)
    image = _grain(Image.new("RGB", (w, h), colour), rng, 10.0)
    draw = ImageDraw.Draw(image, "RGBA")
    darker = tuple(int(c * 0.72) for c in colour)
    lighter = tuple(min(255, int(c * 1.12)) for c in colour)
    for _ in range(round(length_m * height_m * 160)):
        cx, cy = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.008, 0.03) * k
        tone = _jitter(rng, darker if rng.random() < 0.6 else lighter, 18)
        if rng.random() < 0.5:
            draw.polygon(_blob(rng, cx, cy, r, 7, 0.45), fill=(*tone, 200))
        else:
            draw.ellipse([cx - r / 2, cy - r / 2, cx + r / 2, cy + r / 2], fill=(*tone, 220))
    draw.rectangle([0, h - round(0.1 * k), w, h], fill=(90, 70, 55))  # skirting
    # Posters: big prints at eye height, spaced along the wall.
    x = rng.uniform(0.2, 0.5) * k
    while True:
        pw, ph = rng.uniform(0.5, 0.95) * k, rng.uniform(0.6, 1.1) * k
        if x + pw > w - 0.2 * k:
            break
        top = rng.uniform(0.45, 0.9) * k
        image.paste(
            Image.fromarray(_poster_texture(rng, pw / k, ph / k, k)), (round(x), round(top))
        )
        x += pw + rng.uniform(0.25, 0.7) * k
    for _ in range(max(2, round(length_m * 1.5))):  # flyers, price lists and notices
        fw, fh = rng.uniform(0.15, 0.3) * k, rng.uniform(0.2, 0.4) * k
        fx, fy = rng.uniform(0, w - fw), rng.uniform(0.2 * k, h - fh - 0.15 * k)
        flyer = Image.new("RGB", (round(fw), round(fh)), _jitter(rng, (245, 242, 230), 10))
        flyer_draw = ImageDraw.Draw(flyer)
        ink = _POSTER_COLOURS[int(rng.integers(len(_POSTER_COLOURS)))]
        font = _fit_font("Mmmmmmmmm", fw * 0.9, fh * 0.12)
        _text(flyer_draw, (fw / 2, 6), _words(rng, 2, True), font, ink, "mt")
        _paragraph(
            flyer_draw, rng, (6, fh * 0.22, fw - 6, fh - 6), max(8.0, fh * 0.045), (40, 40, 40)
        )
        image.paste(flyer, (round(fx), round(fy)))
    return np.asarray(image)


def _poster_texture(rng: np.random.Generator, width_m: float, height_m: float, k: float):
    """A shop poster: coloured ground, shapes, a headline, small print and a barcode."""
    w, h = max(16, round(width_m * k)), max(16, round(height_m * k))
    ground = _POSTER_COLOURS[int(rng.integers(len(_POSTER_COLOURS)))]
    image = _grain(Image.new("RGB", (w, h), _jitter(rng, ground, 25)), rng, 10.0)
    draw = ImageDraw.Draw(image, "RGBA")
    for _ in range(14):
        colour = (*_jitter(rng, _POSTER_COLOURS[int(rng.integers(len(_POSTER_COLOURS)))], 60), 170)
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.03, 0.2) * min(w, h)
        if rng.random() < 0.5:
            draw.polygon(_blob(rng, cx, cy, r), fill=colour)
        else:
            draw.polygon(
                _star(cx, cy, r, int(rng.integers(5, 9)), 0.5, rng.uniform(0, 6.3)), fill=colour
            )
    headline = _words(rng, 2, True).upper()
    font = _fit_font(headline, w * 0.85, h * 0.14)
    stroke = max(1, round(h * 0.008))
    _fancy_text(image, (w / 2, h * 0.18), headline, font, (255, 250, 220), (250, 200, 60),
                (30, 20, 20), stroke)  # fmt: skip
    price = f"{int(rng.integers(2, 99))}.{int(rng.integers(0, 99)):02d}"
    _text(draw, (w * 0.7, h * 0.5), price, _font(h * 0.12), (255, 255, 255), "mm", 2, (0, 0, 0))
    box = (w * 0.08, h * 0.62, w * 0.92, h * 0.86)
    draw.rectangle(box, fill=(250, 248, 240, 230))
    _paragraph(
        draw,
        rng,
        (box[0] + 4, box[1] + 4, box[2] - 4, box[3] - 4),
        max(8.0, h * 0.03),
        (30, 30, 30),
    )
    if w * 0.42 >= 120:  # narrower, its thinnest bars would be under a pixel
        _barcode(draw, rng, (w * 0.5, h * 0.88, w * 0.92, h * 0.97))
    return np.asarray(image)


def _pack_print(rng: np.random.Generator, size_px: int) -> Image.Image:
    """One face of a boxed product: colour ground, a band, a name and some shapes."""
    ground = _jitter(rng, _BOX_COLOURS[int(rng.integers(len(_BOX_COLOURS)))], 30)
    image = _grain(Image.new("RGB", (size_px, size_px), ground), rng, 12.0)
    draw = ImageDraw.Draw(image, "RGBA")
    band = _jitter(rng, _BOX_COLOURS[int(rng.integers(len(_BOX_COLOURS)))], 30)
    top = rng.uniform(0.2, 0.6) * size_px
    draw.rectangle([0, top, size_px, top + rng.uniform(0.1, 0.3) * size_px], fill=(*band, 220))
    for _ in range(4):
        cx, cy = rng.uniform(0, size_px, 2)
        r = rng.uniform(0.05, 0.2) * size_px
        draw.polygon(_blob(rng, cx, cy, r), fill=(*_jitter(rng, (250, 250, 250), 80), 160))
    name = _words(rng, 1, True)
    _text(draw, (size_px / 2, size_px * 0.15), name, _fit_font(name, size_px * 0.85, size_px * 0.2),
          (255, 255, 255), "mm", 1, (0, 0, 0))  # fmt: skip
    return image


def _wood_texture(rng: np.random.Generator, w: int, h: int, tint: Sequence[float]) -> np.ndarray:
    """Wood: growth rings bent by slow noise, fine grain, a slow tone drift; tiles seamlessly
    enough at 2 m that no seam shows on a board."""
    x = np.tile(np.arange(w, dtype=np.float32) / w, (h, 1))
    warp = _fractal_noise(rng, h, w, ((256, 0.5), (64, 0.3)))
    rings = np.sin((x * 60 + warp * 3.0) * math.pi)
    grain = _fractal_noise(rng, h, w // 8, ((16, 0.5), (4, 0.5), (1, 0.6)))
    grain = np.asarray(Image.fromarray(grain).resize((w, h), Image.Resampling.BICUBIC))
    fine = _fractal_noise(rng, h, w, ((8, 0.4), (2, 0.4), (1, 0.4)))
    tone = 0.62 + 0.12 * rings + 0.08 * grain + 0.04 * fine
    rgb = np.clip(tone[..., None] * np.asarray(tint) * 1.3 * 255, 0, 255)
    return rgb.astype(np.uint8)
