"""Synthetic captures: photos of a textured model from known cameras, with exact ground truth.

Layout written to OUT (read by `recon evaluate` and the tests)::

    images/img_000.jpg ...        the "photos" (JPEG, EXIF 35 mm focal length)
    images/upright/img_000.jpg    instead, with `flip`: two passes (recon.passes), the product
    images/flipped/img_000.jpg    upright, then laid on its side on the same table; their truth
                                  cameras (product frame) are named upright__img_000.jpg ...,
                                  as capture names them
    video.mp4                     instead of images/ with `video`: one continuous orbit (H.264)
    truth/cameras.json            their cameras, in the report.json camera format (a video's
                                  frames are named frame_000000.jpg ..., as capture names them)
    truth/mesh.ply                the product surface, truth frame: metres, +Y up, base on y = 0
    truth/masks/img_000.png ...   the product's silhouette in each photo (or frame)
    truth/novel/view_00.png ...   held-out views (RGBA: alpha is the product mask)
    truth/novel/cameras.json      their cameras
    truth/scene.json              how the truth frame was made from the model file (with
                                  `mat`: its paper and where its board lies, board_to_truth)

With `scene`, the "model" is the procedural shop room (recon.room), filmed inside-out along a walk
round its middle; truth/mesh.ply is the whole room (floor on y = 0) and the masks cover each
whole photo.

With the `turntable` background (recon.synth_turntable) the camera stands on a tripod (one ring
of photos per height) and the product turns on a disc before a still wall and table; the truth
cameras are still the product's view of them, and truth/scene.json's `turntable` holds the
disc's size, each photo's turn and its tripod camera in the room's frame.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from recon.cameras import Camera, look_at, write_cameras_json
from recon.errors import InputError
from recon.mat import Paper, mat_primitive
from recon.progress import ProgressCallback
from recon.render import PHOTO_ANISOTROPY, Lighting, OffscreenRenderer
from recon.textured_mesh import Primitive, TexturedMesh, from_trimesh, load_textured_mesh
from recon.video import H264Writer, frame_name

logger = logging.getLogger(__name__)


class Background(StrEnum):
    PLAIN = "plain"  # seamless studio paper: one even colour
    TABLE = "table"  # a wooden tabletop under the product, like a real turntable shot
    BLACK = "black"  # black velvet or card, as jewellery and Middlebury's dino are shot
    WHITE = "white"  # a white light box: white products and labels meet a white backdrop
    # a tripod camera before a patterned wall, the product turning on a disc on a table
    # (recon.synth_turntable): only the product and the disc move between photos
    TURNTABLE = "turntable"


class UpAxis(StrEnum):
    Y = "y"  # glTF's convention
    Z = "z"  # CAD and many scanners


@dataclass(frozen=True, kw_only=True)
class SynthOptions:
    """How to photograph the model."""

    views: int = 24  # photos on the rings around the product
    size_px: int = 960  # long side of each photo (photos are square)
    background: Background = Background.PLAIN
    lighting: Lighting = Lighting.STUDIO
    seed: int = 0  # drives the camera jitter
    novel_views: int = 6  # held-out views for texture scoring
    hfov_deg: float = 50.0  # horizontal field of view of the simulated camera
    up_axis: UpAxis = UpAxis.Y  # the model file's up axis
    size_m: float | None = None  # longest side of the product in metres; None: guess from units
    jpeg_quality: int = 92
    supersample: int = 2  # anti-aliasing factor, as a real lens and sensor blur edges
    video: bool = False  # film one continuous orbit into video.mp4 instead of taking photos
    video_frames: int = 240  # frames of the video: one turn per photo ring, so 120 a turn
    video_fps: float = 24.0
    scene: bool = False  # film the procedural shop room (recon.room) inside-out along a walk:
    # `views` (or `video_frames`) frames; a TABLE background puts a wooden table in the room
    # The printed scale mat (`recon mat`) lying flat under the product, at its true size: on the
    # table (which then sits a sheet's thickness lower) or alone on the plain background.
    mat: Paper | None = None
    # Frames (or photos) first to last, 0-based and inclusive, smeared by motion blur as when the
    # camera swings faster than its shutter: a video's blurred stretch. None: all sharp.
    blur_frames: tuple[int, int] | None = None
    # Two passes of `views` photos each: upright, then laid on its side (turned 90° about the
    # front axis Z, base towards +X) to show the base (recon.passes).
    flip: bool = False
    overwrite: bool = False


@dataclass(frozen=True)
class SynthResult:
    out_dir: Path
    cameras: list[Camera]
    novel_cameras: list[Camera]
    size_m: np.ndarray  # (3,) product extent in the truth frame


PLAIN_BACKGROUND_RGB = (214, 216, 220)
# The even colour behind the product (beyond the table or turntable too).
BACKDROP_RGB = {Background.BLACK: (14, 14, 16), Background.WHITE: (247, 247, 247)}
VIDEO_NAME = "video.mp4"
_TABLE_SIZE_FACTOR = 8.0  # tabletop side, in multiples of the product's bounding radius
_PAPER_M = 0.0002  # the mat's thickness: its top is y = 0, where the product stands
_MAT_YAW_DEG = 10.0  # laid down by hand, not quite square to the product's front
# Length of `blur_frames`' smear, × the frame size: 2 % (19 px at 960) is a phone swung about
# four times faster than a 1/30 s shutter allows along the orbit.
_BLUR_LENGTH_REL = 0.02


def run(
    model: str | Path | None,
    out_dir: Path,
    options: SynthOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> SynthResult:
    """Render a synthetic capture of `model` (see `load_product`; None with `scene`) into
    `out_dir`."""
    options = options or SynthOptions()
    _validate(options)
    out_dir = Path(out_dir)
    if (out_dir / "truth" / "cameras.json").exists() and not options.overwrite:
        raise InputError(f"{out_dir} already holds a capture; pass overwrite to replace it")
    turntable_photos = None  # a turntable capture's photos, rendered as they are taken
    if options.scene:
        product, scene_info, cameras, novel = _scene_setup(options)
        bounds = product.bounds
        radius = float(np.linalg.norm(bounds[1] - bounds[0]) / 2)
    else:
        if model is None:
            raise InputError("give a model file or a procedural product name (or ask for a scene)")
        product, scene_info = load_product(model, up_axis=options.up_axis, size_m=options.size_m)
        bounds = product.bounds
        center = bounds.mean(axis=0)
        radius = float(np.linalg.norm(bounds[1] - bounds[0]) / 2)
        rng = np.random.default_rng(options.seed)
        if options.video:
            cameras = orbit_cameras(center, radius, options.video_frames, options, rng)
        elif options.background == Background.TURNTABLE:
            from recon import synth_turntable

            cameras, turntable_photos, scene_info["turntable"] = synth_turntable.setup(
                product, center, radius, options, rng, backdrop_rgb(options.background)
            )
        else:
            cameras = ring_cameras(center, radius, options.views, options, rng)
        novel = novel_cameras(center, radius, options.novel_views, options)

    staging = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for sub in ("truth/masks", "truth/novel", *(() if options.video else ("images",))):
        (staging / sub).mkdir(parents=True)
    if options.flip:  # two passes, each with its own scene: photographed here
        cameras = take_flipped_passes(product, radius, staging, options, rng, progress=progress)
    full_scene = product
    if options.background == Background.TABLE and not options.scene:
        tabletop = make_tabletop(
            radius * _TABLE_SIZE_FACTOR, top_m=-_PAPER_M if options.mat is not None else 0.0
        )
        full_scene = TexturedMesh((*product.primitives, tabletop))
    if options.mat is not None:
        mat_page, board_to_truth = mat_primitive(options.mat, yaw_deg=_MAT_YAW_DEG)
        full_scene = TexturedMesh((*full_scene.primitives, mat_page))
        scene_info["mat"] = {
            "paper": str(options.mat),
            "board_to_truth": board_to_truth.round(12).tolist(),  # board metres -> truth frame
        }
    total = len(cameras) + len(novel)
    with (
        OffscreenRenderer(
            full_scene, lighting=options.lighting, anisotropy=PHOTO_ANISOTROPY
        ) as photographer,
        # A room surrounds every camera: its photos need no second render for their masks.
        contextlib.nullcontext()
        if options.scene
        else OffscreenRenderer(
            product, lighting=options.lighting, anisotropy=PHOTO_ANISOTROPY
        ) as product_only,
        H264Writer(staging / VIDEO_NAME, options.size_px, options.size_px, options.video_fps)
        if options.video
        else contextlib.nullcontext() as film,
    ):
        for index, camera in enumerate([] if options.flip else cameras):
            photo = (
                next(turntable_photos)
                if turntable_photos is not None
                else photographer.render(
                    camera,
                    background=backdrop_rgb(options.background),
                    supersample=options.supersample,
                )
            )
            silhouette = (
                photo.mask
                if product_only is None
                else product_only.render(camera, supersample=options.supersample).mask
            )
            if options.blur_frames and options.blur_frames[0] <= index <= options.blur_frames[1]:
                # The camera moves sideways along the orbit, so the smear runs along the rows.
                blurred = motion_blur(photo.rgb, _BLUR_LENGTH_REL * options.size_px)
                photo = replace(photo, rgb=blurred)
            if film is not None:
                film.write(photo.rgb)
            else:
                _write_jpeg(staging / "images" / camera.name, photo.rgb, camera, options)
            Image.fromarray(silhouette).save(
                staging / "truth" / "masks" / Path(camera.name).with_suffix(".png")
            )
            if progress:
                progress("synth", (index + 1) / total, camera.name)
        for index, camera in enumerate(novel):
            view = (product_only or photographer).render(camera, supersample=options.supersample)
            rgba = np.dstack([view.rgb, view.mask.astype(np.uint8) * 255])
            Image.fromarray(rgba).save(staging / "truth" / "novel" / camera.name)
            if progress:
                progress("synth", (len(cameras) + index + 1) / total, camera.name)

    write_cameras_json(staging / "truth" / "cameras.json", cameras, units="metre")
    write_cameras_json(staging / "truth" / "novel" / "cameras.json", novel, units="metre")
    product.to_trimesh().export(staging / "truth" / "mesh.ply")
    scene_info.update(
        options={k: (str(v) if isinstance(v, StrEnum) else v) for k, v in asdict(options).items()},
        bbox_m=(bounds[1] - bounds[0]).round(6).tolist(),
        units="metre",
    )
    (staging / "truth" / "scene.json").write_text(json.dumps(scene_info, indent=1) + "\n")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    staging.rename(out_dir)
    kind = "video frames" if options.video else "photos"
    logger.info("wrote %d %s and %d novel views to %s", len(cameras), kind, len(novel), out_dir)
    return SynthResult(out_dir, cameras, novel, bounds[1] - bounds[0])


# The pose of the product in the flipped pass: on its side, turned +90° about the front axis Z
# (its top towards -X, its base towards +X, its front still facing +Z), resting on y = 0 (see
# `flipped_pose`). A box then stands on a narrow side; laid flat on its face instead, it
# showed so little above the table that SfM misplaced a third of that pass's photos.
_FLIP_ROTATION = np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])


def flipped_pose(bounds: np.ndarray) -> np.ndarray:
    """(4, 4) truth frame -> the flipped pass's world: the product (truth-frame `bounds`,
    (2, 3)) turned onto its side and standing on y = 0, centred over the origin."""
    corners = np.array(
        [[x, y, z] for x in bounds[:, 0] for y in bounds[:, 1] for z in bounds[:, 2]]
    )
    turned = corners @ _FLIP_ROTATION.T
    low, high = turned.min(axis=0), turned.max(axis=0)
    pose = np.eye(4)
    pose[:3, :3] = _FLIP_ROTATION
    pose[:3, 3] = -np.array([(low[0] + high[0]) / 2, low[1], (low[2] + high[2]) / 2])
    return pose


def take_flipped_passes(
    product: TexturedMesh,
    radius: float,
    staging: Path,
    options: SynthOptions,
    rng: np.random.Generator,
    *,
    progress: ProgressCallback | None = None,
) -> list[Camera]:
    """Photograph both passes of a flipped-object capture into `staging`/images/PASS/ and their
    silhouettes into truth/masks; the cameras of all photos in the product's (truth) frame, named
    as capture names them (PASS__img_000.jpg)."""
    from recon.capture import FLIPPED_PASS, UPRIGHT_PASS

    cameras = []
    poses = {UPRIGHT_PASS: np.eye(4), FLIPPED_PASS: flipped_pose(product.bounds)}
    for number, (pass_name, pose) in enumerate(poses.items()):
        posed = product.transformed(pose)
        scene = posed
        if options.background == Background.TABLE:
            scene = TexturedMesh((*posed.primitives, make_tabletop(radius * _TABLE_SIZE_FACTOR)))
        (staging / "images" / pass_name).mkdir(parents=True)
        shots = ring_cameras(posed.bounds.mean(axis=0), radius, options.views, options, rng)
        with (
            OffscreenRenderer(
                scene, lighting=options.lighting, anisotropy=PHOTO_ANISOTROPY
            ) as photographer,
            OffscreenRenderer(
                posed, lighting=options.lighting, anisotropy=PHOTO_ANISOTROPY
            ) as product_only,
        ):
            for index, shot in enumerate(shots):
                photo = photographer.render(
                    shot,
                    background=backdrop_rgb(options.background),
                    supersample=options.supersample,
                )
                silhouette = product_only.render(shot, supersample=options.supersample).mask
                _write_jpeg(staging / "images" / pass_name / shot.name, photo.rgb, shot, options)
                name = f"{pass_name}__{shot.name}"
                Image.fromarray(silhouette).save(
                    staging / "truth" / "masks" / Path(name).with_suffix(".png")
                )
                # x_truth = pose⁻¹ x_world: the camera as seen from the product
                cameras.append(replace(shot.transformed(np.linalg.inv(pose)), name=name))
                if progress:
                    done = (number * len(shots) + index + 1) / (
                        2 * len(shots) + options.novel_views
                    )
                    progress("synth", done, name)
    return cameras


def backdrop_rgb(background: Background) -> tuple[int, int, int]:
    """The colour of the backdrop behind the product (and behind a table or turntable)."""
    return BACKDROP_RGB.get(background, PLAIN_BACKGROUND_RGB)


def load_product(
    model: str | Path, *, up_axis: UpAxis = UpAxis.Y, size_m: float | None = None
) -> tuple[TexturedMesh, dict]:
    """The model in the truth frame (+Y up, metres, base centre at the origin), and how.

    `model` is a file (GLB, glTF, OBJ), a folder holding one, or a procedural product's name.
    """
    from recon import procedural

    path = Path(model)
    if path.is_dir():
        path = find_model_file(path)
    if path.exists():
        mesh = load_textured_mesh(path)
        source = str(path)
    elif str(model) in procedural.PRODUCT_NAMES:
        mesh = from_trimesh(procedural.make_product(str(model)), source=str(model))
        source = f"procedural:{model}"
    else:
        raise InputError(
            f"{model} is neither a model file nor a procedural product; give a .glb/.gltf/.obj "
            f"path or one of: {', '.join(procedural.PRODUCT_NAMES)}"
        )
    to_truth = np.eye(4)
    if up_axis == UpAxis.Z:  # rotate +Z to +Y (and +Y to -Z), keeping the frame right-handed
        to_truth[:3, :3] = [[1, 0, 0], [0, 0, 1], [0, -1, 0]]
    bounds = mesh.transformed(to_truth).bounds
    longest = float((bounds[1] - bounds[0]).max())
    scale, unit_note = guess_scale(longest, size_m)
    base_center = np.array(
        [(bounds[0, 0] + bounds[1, 0]) / 2, bounds[0, 1], (bounds[0, 2] + bounds[1, 2]) / 2]
    )
    place = np.eye(4)
    place[:3, :3] *= scale
    place[:3, 3] = -scale * base_center
    to_truth = place @ to_truth
    info = {"model": source, "to_truth": to_truth.round(12).tolist(), "scale_note": unit_note}
    return mesh.transformed(to_truth), info


def _scene_setup(
    options: SynthOptions,
) -> tuple[TexturedMesh, dict, list[Camera], list[Camera]]:
    """The shop room (truth frame), its truth notes, the walk's cameras and held-out views."""
    from recon import room

    room_options = room.RoomOptions(table=options.background == Background.TABLE)
    mesh = room.make_room(room_options)
    count = options.video_frames if options.video else options.views
    names = [frame_name(i) if options.video else f"img_{i:03d}.jpg" for i in range(count)]
    walk = room.WalkOptions(
        frames=count, size_px=options.size_px, hfov_deg=options.hfov_deg, seed=options.seed
    )
    cameras = room.walk_cameras(room_options, walk, names)
    # Held-out views: half-way between frames of the walk, the gaze swinging the other way.
    novel = room.walk_cameras(
        room_options,
        replace(walk, sway_deg=-walk.sway_deg),
        [f"view_{i:02d}.png" for i in range(options.novel_views)],
        phase=0.5 / count,
    )
    info = {
        "model": "procedural:shop_room",
        "to_truth": np.eye(4).tolist(),
        "scale_note": "the room is built in metres",
        "room": asdict(room_options),
    }
    return mesh, info, cameras, novel


def find_model_file(folder: Path) -> Path:
    """The model in a folder: its GLB or glTF (the richer formats), else its OBJ."""
    for pattern in ("*.glb", "*.gltf", "*.obj"):
        if files := sorted(folder.glob(pattern)):
            return files[0]
    raise InputError(f"{folder} holds no model file: expected a .glb, .gltf or .obj inside")


def guess_scale(longest: float, size_m: float | None) -> tuple[float, str]:
    """Scale factor from model units to metres, and a note saying why."""
    if longest <= 0:
        raise InputError("the model is flat or empty: its bounding box has no extent")
    if size_m is not None:
        return size_m / longest, f"scaled so the longest side is {size_m} m (as asked)"
    if 0.03 <= longest <= 3.0:  # from a ring to a chair; outside that, units are likelier wrong
        return 1.0, "model units taken as metres"
    if 20 <= longest <= 300:
        return 0.01, "model units taken as centimetres"
    if 300 < longest <= 3000:
        return 0.001, "model units taken as millimetres"
    return 0.25 / longest, "units unknown: scaled so the longest side is 0.25 m"


def ring_cameras(
    center: np.ndarray, radius: float, views: int, options: SynthOptions, rng: np.random.Generator
) -> list[Camera]:
    """`views` cameras on 2–3 rings around `center`, jittered like a hand-held capture."""
    elevations_deg = (15.0, 40.0) if views < 36 else (12.0, 35.0, 60.0)
    per_ring = np.array_split(np.arange(views), len(elevations_deg))
    cameras = []
    for ring, (elevation, members) in enumerate(zip(elevations_deg, per_ring, strict=True)):
        step = 360.0 / len(members)
        for k, index in enumerate(members):
            azimuth = k * step + ring * step / 2 + rng.uniform(-0.1, 0.1) * step
            cameras.append(
                _orbit_camera(
                    f"img_{index:03d}.jpg",
                    center,
                    radius,
                    options,
                    azimuth_deg=azimuth,
                    elevation_deg=elevation + rng.uniform(-3, 3),
                    distance_factor=rng.uniform(0.95, 1.08),
                    roll_deg=rng.uniform(-2, 2),
                    target_offset=rng.uniform(-0.03, 0.03, 3) * radius,
                )
            )
    return cameras


def orbit_cameras(
    center: np.ndarray, radius: float, frames: int, options: SynthOptions, rng: np.random.Generator
) -> list[Camera]:
    """`frames` cameras along one continuous orbit, as a phone filming the product: a turn at
    each elevation of `ring_cameras`, gliding up to the next over half a turn, with the slow
    sway of a hand-held camera (smooth, so consecutive frames stay close). Named as capture
    names video frames."""
    elevations_deg = (15.0, 40.0) if options.views < 36 else (12.0, 35.0, 60.0)
    turns = len(elevations_deg)
    phase = rng.uniform(0, 2 * math.pi, 5)
    cameras = []
    for index in range(frames):
        turn = index / frames * turns  # turns done so far
        elevation = elevations_deg[0]
        for ring in range(1, turns):
            # smoothstep from ring - 0.25 to ring + 0.25 turns
            x = min(max((turn - ring + 0.25) / 0.5, 0.0), 1.0)
            elevation += (elevations_deg[ring] - elevations_deg[ring - 1]) * x * x * (3 - 2 * x)

        def sway(k: int, cycles: float, turn: float = turn) -> float:
            return math.sin(2 * math.pi * cycles * turn + phase[k])

        cameras.append(
            _orbit_camera(
                frame_name(index),
                center,
                radius,
                options,
                azimuth_deg=360.0 * turn,
                elevation_deg=elevation + 2.0 * sway(0, 1.7),
                distance_factor=1.0 + 0.04 * sway(1, 1.3),
                roll_deg=1.5 * sway(2, 2.1),
                target_offset=0.02 * radius * np.array([sway(3, 0.9), sway(4, 1.1), 0.0]),
            )
        )
    return cameras


def novel_cameras(
    center: np.ndarray, radius: float, views: int, options: SynthOptions
) -> list[Camera]:
    """Held-out views between and above the capture rings (no jitter: exactly reproducible)."""
    return [
        _orbit_camera(
            f"view_{index:02d}.png",
            center,
            radius,
            options,
            azimuth_deg=index * 360.0 / max(views, 1) + 37.0,
            elevation_deg=(28.0, 52.0)[index % 2],
            distance_factor=1.0,
        )
        for index in range(views)
    ]


def _orbit_camera(
    name: str,
    center: np.ndarray,
    radius: float,
    options: SynthOptions,
    *,
    azimuth_deg: float,
    elevation_deg: float,
    distance_factor: float,
    roll_deg: float = 0.0,
    target_offset: np.ndarray | None = None,
) -> Camera:
    half_fov = math.radians(options.hfov_deg) / 2
    # The bounding sphere fills about 80 % of the frame's width.
    distance = radius / math.sin(half_fov) / 0.8 * distance_factor
    az, el = math.radians(azimuth_deg), math.radians(elevation_deg)
    # Azimuth 0 looks at the product's front (+Z) from the front; angles grow counter-clockwise.
    direction = np.array([math.sin(az) * math.cos(el), math.sin(el), math.cos(az) * math.cos(el)])
    target = center + (target_offset if target_offset is not None else 0.0)
    R, _ = look_at(center + distance * direction, target)
    roll = math.radians(roll_deg)
    R = (
        np.array(
            [[math.cos(roll), -math.sin(roll), 0], [math.sin(roll), math.cos(roll), 0], [0, 0, 1]]
        )
        @ R
    )
    eye = center + distance * direction
    size = options.size_px
    focal = (size / 2) / math.tan(half_fov)
    K = np.array([[focal, 0, (size - 1) / 2], [0, focal, (size - 1) / 2], [0, 0, 1.0]])
    return Camera(name=name, width=size, height=size, K=K, R=R, t=-R @ eye)


def motion_blur(rgb: np.ndarray, length_px: float, angle_deg: float = 0.0) -> np.ndarray:
    """(h, w, 3) uint8 image smeared over `length_px` along `angle_deg` (0: along the rows), as
    by a camera moving while its shutter is open."""
    size = max(1, round(length_px)) | 1  # odd, so the smear is centred on each pixel
    kernel = np.zeros((size, size), np.float32)
    kernel[size // 2, :] = 1.0
    turn = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), angle_deg, 1.0)
    kernel = cv2.warpAffine(kernel, turn, (size, size))
    return cv2.filter2D(rgb, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REPLICATE)


def make_tabletop(side_m: float, *, seed: int = 7, top_m: float = 0.0) -> Primitive:
    """A square wooden tabletop at y = `top_m`, centred on the origin, its texture drawn by
    code."""
    rng = np.random.default_rng(seed)
    size = 2048
    x = np.tile(np.arange(size) / size, (size, 1))
    # Wood: rings bent by low-frequency noise, plus fine grain and knots of darker colour.
    warp = _smooth_noise(rng, size, cells=6) * 0.35
    rings = np.sin((x * 38 + warp * 12 + _smooth_noise(rng, size, cells=40) * 0.8) * math.pi)
    grain = _smooth_noise(rng, size, cells=180) * 0.5 + rng.normal(0, 0.12, (size, size))
    tone = 0.55 + 0.18 * rings + 0.12 * grain + 0.1 * _smooth_noise(rng, size, cells=3)
    wood = np.array([0.62, 0.42, 0.25])
    texture = np.clip(tone[..., None] * wood * 1.25, 0, 1)
    half = side_m / 2
    vertices = np.array(
        [[-half, top_m, -half], [half, top_m, -half], [half, top_m, half], [-half, top_m, half]]
    )
    repeats = max(1.0, side_m / 0.6)  # one texture tile per 60 cm keeps the grain life-size
    return Primitive(
        vertices=vertices,
        faces=np.array([[0, 2, 1], [0, 3, 2]]),
        normals=np.tile([0.0, 1.0, 0.0], (4, 1)),
        uv=np.array([[0, repeats], [repeats, repeats], [repeats, 0], [0, 0]], dtype=np.float64),
        texture=(texture * 255).astype(np.uint8),
    )


def _smooth_noise(rng: np.random.Generator, size: int, *, cells: int) -> np.ndarray:
    """(size, size) value noise in [-1, 1] with about `cells` features across; tiles seamlessly."""
    coarse = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    tiled = np.tile(coarse, (3, 3))
    big = cv2.resize(tiled, (size * 3, size * 3), interpolation=cv2.INTER_CUBIC)
    return big[size : 2 * size, size : 2 * size].astype(np.float64)


def _write_jpeg(path: Path, rgb: np.ndarray, camera: Camera, options: SynthOptions) -> None:
    """Save a photo with the EXIF a phone would write: the 35 mm-equivalent focal length."""
    image = Image.fromarray(rgb)
    exif = Image.Exif()
    exif[0x010F] = "recon synth"  # Make
    exif[0x0110] = "virtual camera"  # Model
    exif_ifd = exif.get_ifd(0x8769)
    # 35 mm equivalent: a 36 mm wide frame.
    exif_ifd[0xA405] = round(camera.K[0, 0] / camera.width * 36.0)  # FocalLengthIn35mmFilm
    image.save(path, quality=options.jpeg_quality, exif=exif)


def _validate(options: SynthOptions) -> None:
    if options.views < 3:
        raise InputError(f"--views {options.views}: a capture needs at least 3 photos")
    if not 64 <= options.size_px <= 8192:
        raise InputError(f"--size {options.size_px}: choose a photo size between 64 and 8192 px")
    if options.video and options.size_px % 2:
        raise InputError(f"--size {options.size_px}: H.264 video needs an even frame size")
    if options.video and (options.video_frames < 3 or options.video_fps <= 0):
        raise InputError("a video needs at least 3 frames and a positive frame rate")
    if not 10 <= options.hfov_deg <= 120:
        raise InputError(f"field of view {options.hfov_deg}° is outside 10–120°")
    if options.size_m is not None and options.size_m <= 0:
        raise InputError(f"--size-m {options.size_m}: the product's size must be positive")
    if options.background == Background.TURNTABLE and (
        options.video or options.scene or options.mat is not None
    ):
        raise InputError(
            "--background turntable takes photos of a product from a tripod: drop "
            "--video, --scene and --mat"
        )
    if options.mat is not None and options.scene:
        raise InputError("--mat lies under a product; a room scene has a floor of its own")
    if options.blur_frames is not None:
        first, last = options.blur_frames
        count = options.video_frames if options.video else options.views
        if not 0 <= first <= last < count:
            raise InputError(
                f"--blur-frames {first}-{last}: give a first and last frame (0-based) within the "
                f"capture's {count} frames, first ≤ last"
            )
    if options.flip and (options.video or options.scene or options.mat is not None):
        raise InputError(
            "--flip takes two passes of photos of a product: drop --video, --scene and --mat"
        )
