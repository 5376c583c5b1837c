"""Synthetic turntable captures: a camera on a tripod, the product turning on a disc before a
still room (`recon synth --background turntable`).

The set, in the room's frame (metres, +Y up, the disc's axis on x = z = 0): a patterned wall
behind the product, a wooden table in front of it, and on the table a turntable disc whose top
is y = 0, where the product (truth frame: base centre at the origin) stands. The camera stands
on a tripod in front (+Z) at one height per ring of photos; between photos only the disc and the
product turn. The room and the table are therefore the same pixels in every photo of a ring,
as in a real turntable shoot, while the truth cameras (in the product's frame, which is what
`recon evaluate` scores) orbit the product. The lights stay with the room, so the product's
shading changes as it turns.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw

from recon.cameras import Camera
from recon.procedural import _fractal_noise
from recon.render import PHOTO_ANISOTROPY, OffscreenRenderer, Rendering
from recon.textured_mesh import Primitive, TexturedMesh

if TYPE_CHECKING:
    from recon.synth import SynthOptions

# Tripod heights, as elevations of the camera above the product's middle (degrees): two for the
# usual 24 photos, three from 36 (as recon.synth.ring_cameras).
ELEVATIONS_DEG = (20.0, 40.0)
ELEVATIONS_MANY_DEG = (15.0, 35.0, 55.0)
_DISC_FOOTPRINT_FACTOR = 1.6  # disc radius, × the product footprint's half diagonal
_DISC_MIN_RADIUS_FACTOR = 0.75  # ... and at least this × the product's bounding radius
_DISC_THICKNESS_FACTOR = 0.08  # × the disc radius
_WALL_MIN_DISTANCE_M = 0.6  # the wall stands at least this far behind the disc's axis
_WALL_DISTANCE_FACTOR = 3.5  # ... and at least this × the product's bounding radius
_MAX_TEXTURE_PX = 4096


@dataclass(frozen=True)
class TurntableShot:
    """One photo: the tripod camera (room frame) and how far the disc has turned."""

    room_camera: Camera
    turn_deg: float  # the product's turn about +Y: room point = turn_matrix(turn_deg) @ product

    def product_camera(self) -> Camera:
        """The same photo's camera in the product's (truth) frame."""
        return self.room_camera.transformed(np.linalg.inv(turn_matrix(self.turn_deg)))


def turn_matrix(turn_deg: float) -> np.ndarray:
    """(4, 4) rotation about +Y by `turn_deg` (counter-clockwise seen from above)."""
    a = math.radians(turn_deg)
    matrix = np.eye(4)
    matrix[[0, 0, 2, 2], [0, 2, 0, 2]] = [math.cos(a), math.sin(a), -math.sin(a), math.cos(a)]
    return matrix


def turntable_shots(
    center: np.ndarray,
    radius: float,
    views: int,
    options: SynthOptions,
    rng: np.random.Generator,
) -> list[TurntableShot]:
    """`views` photos in one ring per tripod height: the tripod stays put for a ring (a slight,
    fixed tilt and aim), while the disc is turned by hand a step at a time (±5 % of a step).
    The product turns clockwise, so the camera circles it counter-clockwise, as in
    recon.synth.ring_cameras; each ring starts half a step on from the one before."""
    from recon.synth import _orbit_camera

    elevations = ELEVATIONS_DEG if views < 36 else ELEVATIONS_MANY_DEG
    per_ring = np.array_split(np.arange(views), len(elevations))
    shots = []
    for ring, (elevation, members) in enumerate(zip(elevations, per_ring, strict=True)):
        tripod = _orbit_camera(
            "tripod",
            center,
            radius,
            options,
            azimuth_deg=0.0,
            elevation_deg=elevation + rng.uniform(-2, 2),
            distance_factor=rng.uniform(0.97, 1.05),
            roll_deg=rng.uniform(-1.5, 1.5),
            target_offset=rng.uniform(-0.03, 0.03, 3) * radius,
        )
        step = 360.0 / len(members)
        for k, index in enumerate(members):
            turn = k * step + ring * step / 2 + rng.uniform(-0.05, 0.05) * step
            camera = Camera(
                name=f"img_{index:03d}.jpg",
                width=tripod.width,
                height=tripod.height,
                K=tripod.K,
                R=tripod.R,
                t=tripod.t,
            )
            shots.append(TurntableShot(camera, -turn))
    return shots


def make_turntable_set(
    product: TexturedMesh, radius: float, options: SynthOptions, *, seed: int = 11
) -> tuple[TexturedMesh, Primitive]:
    """The still room (wall and table, room frame) and the disc (product frame, top at y = 0)
    for `product` (truth frame) of bounding radius `radius`."""
    from recon.room import _quad, _wall_texture
    from recon.synth import make_tabletop

    rng = np.random.default_rng(seed)
    bounds = product.bounds
    footprint = float(np.hypot(*np.abs(bounds[:, [0, 2]]).max(axis=0)))
    disc_radius = max(_DISC_FOOTPRINT_FACTOR * footprint, _DISC_MIN_RADIUS_FACTOR * radius)
    thickness = _DISC_THICKNESS_FACTOR * disc_radius
    disc = make_disc(disc_radius, thickness, rng, texture_px=1024)

    wall_distance = max(_WALL_DISTANCE_FACTOR * radius, _WALL_MIN_DISTANCE_M)
    half_fov = math.radians(options.hfov_deg) / 2
    camera_distance = radius / math.sin(half_fov) / 0.8
    # The wall fills the frame of every tripod height with room to spare; its print has about
    # one texel per photo pixel (before supersampling) where the photos see it.
    seen_m = 2 * math.tan(half_fov) * (camera_distance + wall_distance)
    wall_width = 1.6 * seen_m
    wall_height = 1.2 * seen_m
    texels_per_m = min(options.supersample * options.size_px / seen_m, _MAX_TEXTURE_PX / wall_width)
    texture = _wall_texture(rng, wall_width, wall_height, texels_per_m, (214, 206, 188))
    table_top = -thickness
    wall = _quad(
        (-wall_width / 2, table_top, -wall_distance),
        (wall_width, 0, 0),
        (0, wall_height, 0),
        texture,
    )
    table = make_tabletop(2 * wall_distance, top_m=table_top)
    return TexturedMesh((wall, table)), disc


def make_disc(
    radius_m: float, thickness_m: float, rng: np.random.Generator, *, texture_px: int = 1024
) -> Primitive:
    """A turntable disc centred on the Y axis, its top at y = 0: a grey rubber mat with a
    degree scale round the rim and a fine speckle (it turns with the product, so its print
    helps place the photos; the ground plane it makes is cut away later)."""
    segments = 96
    angles = np.linspace(0, 2 * math.pi, segments, endpoint=False)
    rim = np.stack([np.cos(angles), np.zeros(segments), np.sin(angles)], axis=1) * radius_m
    bottom = rim - [0, thickness_m, 0]
    centre = np.zeros((1, 3))
    # Top: a fan round the centre; side: a band of quads. Vertices are not shared between the
    # two, so each keeps its own normal.
    vertices = np.concatenate([centre, rim, rim, bottom])
    top_faces = [[0, 1 + (i + 1) % segments, 1 + i] for i in range(segments)]
    side_faces = []
    for i in range(segments):
        a, b = 1 + segments + i, 1 + segments + (i + 1) % segments
        side_faces += [[a, b, b + segments], [a, b + segments, a + segments]]
    outward = rim / radius_m
    normals = np.concatenate([np.tile([0.0, 1.0, 0.0], (1 + segments, 1)), outward, outward])
    # The top's print spans the texture's inscribed circle; the side takes its darkest corner.
    uv_top = 0.5 + np.concatenate([centre, rim])[:, [0, 2]] * [0.5, -0.5] / radius_m
    uv_side = np.full((2 * segments, 2), 0.02)
    return Primitive(
        vertices=vertices,
        faces=np.array(top_faces + side_faces),
        normals=normals,
        uv=np.concatenate([uv_top, uv_side]),
        texture=disc_texture(rng, texture_px),
    )


def disc_texture(rng: np.random.Generator, size_px: int) -> np.ndarray:
    """(size, size, 3) uint8: dark grey rubber with a speckle, rings, and a white degree scale
    (a tick every 5°, longer every 30°) near the rim of the inscribed circle."""
    noise = _fractal_noise(rng, size_px, size_px, ((64, 0.3), (8, 0.5), (2, 0.6), (1, 0.5)))
    grey = np.clip(58 + 14 * noise, 0, 255)
    image = Image.fromarray(np.repeat(grey[..., None], 3, axis=2).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    c = size_px / 2
    for fraction in (0.35, 0.62, 0.8):
        r = fraction * c
        draw.ellipse(
            [c - r, c - r, c + r, c + r], outline=(96, 96, 96), width=max(1, size_px // 256)
        )
    for degree in range(0, 360, 5):
        a = math.radians(degree)
        inner = (0.86 if degree % 30 else 0.82) * c
        outer = 0.95 * c
        draw.line(
            [(c + inner * math.cos(a), c + inner * math.sin(a)),
             (c + outer * math.cos(a), c + outer * math.sin(a))],
            fill=(228, 228, 220),
            width=max(1, size_px // (160 if degree % 30 else 100)),
        )  # fmt: skip
    return np.asarray(image)


def setup(
    product: TexturedMesh,
    center: np.ndarray,
    radius: float,
    options: SynthOptions,
    rng: np.random.Generator,
    background: tuple[int, int, int],
) -> tuple[list[Camera], Iterator[Rendering], dict]:
    """The truth cameras (product frame) of a turntable capture of `product`, its photos (one
    rendering per camera, made as they are taken), and notes for truth/scene.json."""
    shots = turntable_shots(center, radius, options.views, options, rng)
    room, disc = make_turntable_set(product, radius, options)
    moving = TexturedMesh((*product.primitives, disc))
    disc_radius = float(np.abs(disc.vertices[:, 0]).max())
    info = {
        "disc_radius_m": round(disc_radius, 6),
        "disc_thickness_m": round(float(-disc.vertices[:, 1].min()), 6),
        "turns_deg": [round(-shot.turn_deg, 4) for shot in shots],
        # the tripod camera of each photo, in the room's frame (the still background)
        "room_cameras": [shot.room_camera.to_json() for shot in shots],
    }
    cameras = [shot.product_camera() for shot in shots]
    return cameras, photograph(room, moving, shots, options, background), info


def photograph(
    room: TexturedMesh,
    moving: TexturedMesh,
    shots: list[TurntableShot],
    options: SynthOptions,
    background: tuple[int, int, int],
) -> Iterator[Rendering]:
    """Each shot's photo: the room, and the product with its disc turned into place, lit by
    the room's lights. One renderer a shot (the turned mesh is uploaded anew); the room is
    drawn the same way each time, so its pixels repeat exactly."""
    for shot in shots:
        scene = TexturedMesh(
            (*room.primitives, *moving.transformed(turn_matrix(shot.turn_deg)).primitives)
        )
        with OffscreenRenderer(
            scene, lighting=options.lighting, anisotropy=PHOTO_ANISOTROPY
        ) as renderer:
            yield renderer.render(
                shot.room_camera, background=background, supersample=options.supersample
            )
