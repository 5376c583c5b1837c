"""Take the merchant's photos (a folder, a .zip or a video) into the workspace: checked, upright,
resized."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import logging
import math
import os
import re
import shutil
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from recon import capture_qa, video
from recon.errors import CaptureError, InputError
from recon.progress import ProgressCallback
from recon.threads import PHOTOS_AT_ONCE, each_photo
from recon.workspace import Workspace, atomic_path, write_json_atomic

logger = logging.getLogger(__name__)

STAGE = "capture"

# A flipped-object capture (recon.passes) comes as two sub-folders, one per pass: the product
# upright, then laid on its side or upside down to show its base. Folder names (any case, "-"
# or " " for "_") that mark each pass; both must be present.
UPRIGHT_PASS, FLIPPED_PASS = "upright", "flipped"
PASS_FOLDERS: dict[str, frozenset[str]] = {
    UPRIGHT_PASS: frozenset({"upright", "up", "standing"}),
    FLIPPED_PASS: frozenset(
        {"flipped", "flip", "side", "on_side", "base", "bottom", "upside_down", "turned"}
    ),
}

# EXIF tags (Pillow's Image.Exif is keyed by number).
_TAG_MAKE = 0x010F
_TAG_MODEL = 0x0110
_TAG_ORIENTATION = 0x0112
_IFD_EXIF = 0x8769
_TAG_FOCAL_LENGTH = 0x920A
_TAG_FOCAL_PLANE_X_RESOLUTION = 0xA20E
_TAG_FOCAL_PLANE_RESOLUTION_UNIT = 0xA210
_TAG_FOCAL_LENGTH_35MM = 0xA405
_TAG_DATETIME_ORIGINAL = 0x9003
_TAG_SUBSEC_TIME_ORIGINAL = 0x9291
_EXIF_DATETIME = re.compile(r"\d{4}:\d{2}:\d{2} \d{2}:\d{2}:\d{2}")

# FocalPlaneResolutionUnit -> millimetres per unit (1 = "no unit" is unusable; 5 = µm is seen
# in the wild although the standard stops at 4).
_MM_PER_UNIT = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}

# Brands of the ISO base media file types that libheif opens as HEIC/HEIF photos.
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1"}

# Files that operating systems drop into folders and zips; never the merchant's photos.
_OS_JUNK = {"thumbs.db", "desktop.ini", "__macosx"}

# A focal length outside this many long sides is an EXIF error, not a lens (fisheye ≈ 0.3,
# long telephoto on a phone-sized sensor ≈ 10).
_FOCAL_RANGE_LONG_SIDES = (0.2, 20.0)

SUPPORTED = "JPEG, PNG or HEIC"
# Extensions that promise a video: such a file that does not open as one is a damaged video, not
# "neither a folder nor a zip". Which path a file takes is decided by its content.
VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".qt", ".webm", ".mkv", ".3gp"}


@dataclass(frozen=True, kw_only=True)
class CaptureOptions:
    max_image_px: int | None = 1600  # long side of working copies; None keeps full resolution
    retry_image_px: int | None = None  # photos shrunk to max_image_px that SfM cannot place
    # are taken in again at up to this long side and placed once more (see retry_size); None:
    # no second try. Preview's 800 px photos of a plain water bottle on plain paper failed
    # SfM's checks where the same 960 px photos were placed
    max_pixels: int = 100_000_000  # per-photo pixel cap: larger photos are refused, not decoded
    min_images: int = 3  # fewer usable photos than this cannot make a model
    max_zip_bytes: int = 2 * 2**30  # total uncompressed size allowed from a zip
    max_files: int = 10_000  # files in a folder / members in a zip looked at; more is refused
    jpeg_quality: int = 95  # working copies of JPEG and HEIC inputs, and of video frames
    # A video input (one file, recognised by its content):
    max_video_frames: int = 36  # frames kept: the sharpest, spread evenly along the orbit.
    # As many as the photos the later stages are tuned for: on a 240-frame synthetic orbit, 36
    # frames were all placed (sfm visibility consistency 0.58) and 60 were placed as well but
    # failed sfm's folded-model check (0.44 < 0.45), which reads dense views as inconsistent
    max_decoded_frames: int = 9000  # longer videos are refused (5 min at 30 fps) before
    # they cost more decoding time; frames are also held to max_pixels each
    video_blur_ratio: float = 0.25  # frames less sharp than this share of the sharp frames
    # around them (90th percentile of their Laplacian variance) are dropped as blurry: a
    # 1.5 px blur gives 0.02-0.05, a 9 px smear 0.1-0.3; a box's narrow sides stay above 0.5
    video_sharpness_window: float = 0.05  # "around them": this far along the orbit, in image
    # motion (× the long side; about 15° of orbit when the product fills the frame)
    video_min_motion: float = 0.01  # kept frames lie at least this much image motion apart,
    # in long sides of the frame (the picture moving 1 % of its width); closer is a duplicate

    def __post_init__(self) -> None:
        for name in ("max_image_px", "retry_image_px"):
            value = getattr(self, name)
            if value is not None and value < 16:
                raise InputError(f"{name} {value}: choose 16 px or more, or None")
        if self.max_pixels < 1 or self.max_zip_bytes < 1 or self.max_files < 1:
            raise InputError("max_pixels, max_zip_bytes and max_files must be positive")
        if not 1 <= self.jpeg_quality <= 100:
            raise InputError(f"jpeg_quality {self.jpeg_quality}: choose 1–100")
        if self.max_video_frames < 1 or self.max_decoded_frames < 1:
            raise InputError("max_video_frames and max_decoded_frames must be positive")
        if not 0 <= self.video_blur_ratio < 1:
            raise InputError(f"video_blur_ratio {self.video_blur_ratio}: choose 0 to below 1")
        if self.video_sharpness_window <= 0 or self.video_min_motion <= 0:
            raise InputError("video_sharpness_window and video_min_motion must be positive")


@dataclass(frozen=True)
class CaptureResult:
    images: list[dict]  # the capture.json "images" entries, in order
    rejected: list[dict] = field(default_factory=list)  # {"image": source path, "reason": ...}
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _InputFile:
    """One file of the input: where it came from and how to read it (never a path we write)."""

    source: str  # path relative to the input folder, or the zip member's name; "/"-separated
    parts: tuple[str, ...]  # source split into safe path components
    open: Callable[[], BinaryIO]
    in_zip: bool


class _RejectedError(Exception):
    """A photo that cannot be used; the message is the reason shown to the merchant."""


def run(
    input_path: Path,
    workspace: Workspace,
    options: CaptureOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> CaptureResult:
    """Copy the usable photos of `input_path` into `workspace.images_dir` and write capture.json.

    Working copies are upright (EXIF orientation applied), 8-bit RGB, at most
    `max_image_px` on the long side, named as in the input (files in sub-folders get the
    sub-folder path joined by "__"; a folder prefix shared by every photo is dropped).
    A single video file gives its chosen frames instead (see `take_video`). Photos in two
    sub-folders named for the passes of a flipped-object capture (`PASS_FOLDERS`: upright/,
    flipped/) are recorded with their pass, the upright pass first (see `recon.passes`).
    """
    options = options or CaptureOptions()
    input_path = Path(input_path)
    _check_input_path(input_path, workspace)
    if input_path.is_file():
        with input_path.open("rb") as stream:
            video_format = video.sniff_video_format(stream.read(64))
        if video_format or input_path.suffix.lower() in VIDEO_SUFFIXES:
            return take_video(input_path, workspace, options, progress=progress)
    logger.info("capture from %s with %s", input_path, options)
    heif_available = register_heif_opener()

    rejected: list[dict] = []
    warnings: list[str] = []
    images: list[dict] = []
    with _input_files(input_path, workspace, options) as (files, unsafe_sources):
        rejected += [
            {"image": s, "reason": "unsafe path in the zip ('..' or absolute); not extracted"}
            for s in unsafe_sources
        ]
        kinds = {file.source: _sniff(file) for file in files}
        photos = [f for f in files if kinds[f.source] in ("JPEG", "PNG", "HEIF")]
        others = [f for f in files if kinds[f.source] not in ("JPEG", "PNG", "HEIF")]
        if not photos:
            found = f" (found {len(files)} other files)" if files else ""
            raise InputError(f"no photos found in {input_path}: expected {SUPPORTED} files{found}")
        for file in others:
            kind = kinds[file.source]
            if kind is None:
                reason = "not an image"
            elif kind.startswith("video"):
                reason = f"a {kind}: send a video on its own, not in a folder or zip with photos"
            else:
                reason = f"unsupported image format {kind}: export it as {SUPPORTED}"
            rejected.append({"image": file.source, "reason": reason})

        names = _working_names(photos)
        passes = photo_passes(photos)
        by_name: dict[str, _InputFile] = {}
        for file in photos:
            name = names[file.source]
            if name in by_name:
                rejected.append(
                    {
                        "image": file.source,
                        "reason": f"same working name {name!r} as {by_name[name].source}; "
                        "rename one of them",
                    }
                )
            else:
                by_name[name] = file
        # The upright pass first: its table gives the model's up and ground (recon.passes).
        rank = {UPRIGHT_PASS: 0, FLIPPED_PASS: 1}
        order = sorted(
            by_name,
            key=lambda n: (rank[passes[by_name[n].source]] if passes else 0, natural_key(n)),
        )

        # A photo sent twice (uploaded again, copied into the folder) adds nothing and would
        # be placed twice at one spot: its copies go.
        copies = exact_copies([by_name[name] for name in order])
        for copy, original in copies.items():
            rejected.append(
                {"image": copy, "reason": f"an exact copy of {original}; the copy is left out"}
            )
        order = [name for name in order if by_name[name].source not in copies]

        # Old working copies belong to another input: remove them (and the capture.json that
        # lists them) before writing, so a failure never leaves a mix of old and new photos.
        workspace.create()
        workspace.capture_path.unlink(missing_ok=True)
        _clear_dir(workspace.images_dir)
        workspace.images_dir.mkdir(parents=True, exist_ok=True)

        def take(name: str) -> dict | _RejectedError:
            file = by_name[name]
            try:
                if kinds[file.source] == "HEIF" and not heif_available:
                    raise _RejectedError("HEIC photos need the pillow-heif package; install it")
                entry = _take_photo(file, kinds[file.source], name, workspace, options)
            except _RejectedError as why:
                return why
            if passes:
                entry["pass"] = passes[file.source]
            return entry

        # Photos are taken on a thread per core: Pillow lets go of the GIL while it decodes,
        # resizes and encodes. Results (and progress) still come in photo order; on an error
        # the photos not started are cancelled and those under way finish before the cleanup.
        # At most PHOTOS_AT_ONCE, as capture QA reads them.
        try:
            with contextlib.closing(each_photo(take, order, most=PHOTOS_AT_ONCE)) as taking:
                for index, (name, taken) in enumerate(zip(order, taking, strict=True)):
                    if isinstance(taken, _RejectedError):
                        rejected.append({"image": by_name[name].source, "reason": str(taken)})
                    else:
                        images.append(taken)
                    if progress is not None:
                        progress(STAGE, (index + 1) / len(order), name)
            rejected.sort(key=lambda r: natural_key(r["image"]))
            order_by = in_time_order(
                images, [rank[entry["pass"]] for entry in images] if passes else None
            )
            warnings += [f"{r['image']}: skipped ({r['reason']})" for r in rejected]

            if len(images) < options.min_images:
                raise CaptureError(
                    f"only {len(images)} usable photos (of {len(files) + len(unsafe_sources)} "
                    f"files) in {input_path}; at least {options.min_images} are needed — take "
                    f"20–40 photos all around the product{_summarise(rejected)}"
                )
            warnings += _capture_warnings(images)
            write_json_atomic(
                workspace.capture_path,
                {
                    "version": 1,
                    "input": str(input_path),
                    "images": images,
                    "order": order_by,
                    "rejected": rejected,
                    "warnings": warnings,
                    "qa": photo_checks(workspace, images),
                    **({"passes": [UPRIGHT_PASS, FLIPPED_PASS]} if passes else {}),
                },
            )
        except BaseException:
            _clear_dir(workspace.images_dir)
            raise
    for warning in warnings:
        logger.warning(warning)
    logger.info("capture: %d photos taken in, %d rejected", len(images), len(rejected))
    return CaptureResult(images=images, rejected=rejected, warnings=warnings)


# -- a video --------------------------------------------------------------------------------------


def take_video(
    video_path: Path,
    workspace: Workspace,
    options: CaptureOptions,
    *,
    progress: ProgressCallback | None = None,
) -> CaptureResult:
    """Write the chosen frames of a video as working copies ``frame_NNNNNN.jpg`` and capture.json.

    Two decoding passes keep memory flat however long the video: the first measures every
    frame small (sharpness, motion), the second writes only the chosen ones, upright and at
    most `max_image_px` long. Every frame left out is in capture.json's "rejected" with why;
    the warnings summarise them. A video has no EXIF, so focal lengths are left to SfM.
    """
    name = video_path.name
    logger.info("capture from the video %s with %s", video_path, options)

    def report(start: float, span: float) -> Callable[[float], None] | None:
        if progress is None:
            return None
        return lambda fraction: progress(STAGE, start + span * fraction, name)

    measures = video.measure_frames(
        video_path,
        max_frames=options.max_decoded_frames,
        max_pixels=options.max_pixels,
        progress=report(0.0, 0.8),
    )
    relative = video.relative_sharpness(
        measures.sharpness,
        measures.damaged,
        video.orbit_path(measures.motion),
        options.video_sharpness_window,
        blur_ratio=options.video_blur_ratio,
    )
    choice = video.choose_frames(
        relative,
        measures.motion,
        measures.damaged,
        max_count=options.max_video_frames,
        min_motion=options.video_min_motion,
        blur_ratio=options.video_blur_ratio,
    )
    total = len(measures.sharpness)
    if len(choice.chosen) < options.min_images:
        raise CaptureError(_too_few_frames(name, total, choice, options))

    workspace.create()
    workspace.capture_path.unlink(missing_ok=True)
    _clear_dir(workspace.images_dir)
    workspace.images_dir.mkdir(parents=True, exist_ok=True)
    wanted = set(choice.chosen)
    images: list[dict] = []
    try:
        _, frames = video.decode_frames(
            video_path, max_frames=options.max_decoded_frames, max_pixels=options.max_pixels
        )
        with contextlib.closing(frames):
            for decoded in frames:
                if decoded.index not in wanted:
                    continue
                images.append(_take_frame(decoded, name, workspace, options))
                if progress is not None:
                    progress(STAGE, 0.8 + 0.2 * len(images) / len(wanted), images[-1]["name"])
                if len(images) == len(wanted):
                    break
        if len(images) < len(wanted):
            raise InputError(
                f"{name} decoded to fewer frames the second time ({len(images)} of the "
                f"{len(wanted)} chosen were found): the file is damaged; upload it again"
            )
        rejected = [
            {"image": video.frame_name(index), "reason": reason}
            for index, reason in sorted(choice.rejected.items())
        ]
        warnings = _video_warnings(name, measures, choice)
        write_json_atomic(
            workspace.capture_path,
            {
                "version": 1,
                "input": str(video_path),
                "images": images,
                "rejected": rejected,
                "warnings": warnings,
                "qa": photo_checks(workspace, images),
                "video": {
                    "frames": total,
                    "fps": round(measures.info.fps, 3),
                    "rotation_deg": measures.rotation_deg,
                    "kept": len(images),
                    "dropped": choice.counts,
                    "path_length": round(choice.path_length, 4),
                    "spacing": round(choice.spacing, 4),
                },
            },
        )
    except BaseException:
        _clear_dir(workspace.images_dir)
        raise
    for warning in warnings:
        logger.warning(warning)
    logger.info("capture: %d of %d frames of %s taken in", len(images), total, name)
    return CaptureResult(images=images, rejected=rejected, warnings=warnings)


def _take_frame(
    decoded: video.DecodedFrame, source: str, workspace: Workspace, options: CaptureOptions
) -> dict:
    rgb = video.upright_rgb(decoded)
    shown = (rgb.shape[1], rgb.shape[0])
    target = working_size(shown, options.max_image_px)
    image = Image.fromarray(rgb)
    if target != shown:
        image = image.resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
    name = video.frame_name(decoded.index)
    with atomic_path(workspace.image_path(name)) as tmp:
        image.save(tmp, format="JPEG", quality=options.jpeg_quality, subsampling=0)
    return {
        "name": name,
        "source": source,
        "frame_index": decoded.index,
        "time_s": None if decoded.time_s is None else round(float(decoded.time_s), 4),
        "width": target[0],
        "height": target[1],
        "original_width": shown[0],
        "original_height": shown[1],
        "focal_px": None,
        "focal_source": None,
        "exif_camera": None,
    }


def _too_few_frames(
    name: str, total: int, choice: video.FrameChoice, options: CaptureOptions
) -> str:
    kept = len(choice.chosen)
    if choice.path_length < options.video_min_motion * options.min_images:
        return (
            f"{name}: the camera hardly moves in its {total} frames, so only {kept} different "
            f"views could be taken (at least {options.min_images} are needed): walk slowly all "
            "the way around the product while filming, or turn the product on a turntable"
        )
    return (
        f"only {kept} usable frames in {name} ({total} frames: {_counts_text(choice.counts)}); "
        f"at least {options.min_images} are needed — film a slow, steady orbit all around the "
        "product in good light (30–60 s)"
    )


def _video_warnings(
    name: str, measures: video.FrameMeasures, choice: video.FrameChoice
) -> list[str]:
    total = len(measures.sharpness)
    warnings = [
        f"{name}: {len(choice.chosen)} of {total} frames taken (the sharpest, spread evenly "
        f"along the orbit); left out {_counts_text(choice.counts)}"
    ]
    if runs := video.blurry_runs(choice.rejected):
        stretches = ", ".join(_stretch_text(first, last, measures.times_s) for first, last in runs)
        warnings.append(
            f"{name}: blurry stretches at {stretches}: move the camera more slowly there or add "
            "light"
        )
    declared = measures.info.declared_frames
    if declared > total:
        warnings.append(
            f"{name}: its header promises {declared} frames but only {total} decode: the file "
            "may be cut short; the frames that decode were used"
        )
    warnings.append(
        f"{name}: a video records no focal length: it will be estimated from the frames"
    )
    return warnings


def _counts_text(counts: dict[str, int]) -> str:
    words = {
        "blurry": "blurry",
        "duplicate": "near-duplicates of kept frames",
        "damaged": "damaged",
        "spacing": "between the kept frames",
    }
    parts = [f"{counts[kind]} {words[kind]}" for kind in words if counts.get(kind)]
    return ", ".join(parts) or "none"


def _stretch_text(first: int, last: int, times_s: np.ndarray) -> str:
    frames = f"frames {first}–{last}" if last > first else f"frame {first}"
    start, end = times_s[first], times_s[last]
    if math.isfinite(start) and math.isfinite(end):
        return (
            f"{start:.1f}–{end:.1f} s ({frames})" if last > first else f"{start:.1f} s ({frames})"
        )
    return frames


# -- the input: a folder or a zip ------------------------------------------------------------------


def _check_input_path(input_path: Path, workspace: Workspace) -> None:
    if not input_path.exists():
        raise InputError(f"{input_path} does not exist: give a folder of photos or a .zip of them")
    resolved = input_path.resolve()
    work_dir = workspace.work_dir.resolve()
    if resolved == work_dir or work_dir in resolved.parents:
        raise InputError(
            f"{input_path} is inside the job folder {workspace.out_dir}, which capture clears: "
            "give the original photos"
        )
    if not input_path.is_dir() and not input_path.is_file():
        raise InputError(f"{input_path} is not a folder or a file: give a folder or a .zip")


@contextlib.contextmanager
def _input_files(
    input_path: Path, workspace: Workspace, options: CaptureOptions
) -> Iterator[tuple[list[_InputFile], list[str]]]:
    """The candidate files of a folder or zip, without OS junk; and the unsafe zip members."""
    if input_path.is_dir():
        yield _folder_files(input_path, workspace, options), []
        return
    if not zipfile.is_zipfile(input_path):
        if input_path.suffix.lower() == ".zip":
            raise InputError(
                f"{input_path} is not a readable zip (damaged or an incomplete upload): "
                "create the zip again"
            )
        raise InputError(
            f"{input_path} is neither a folder nor a .zip: give a folder of {SUPPORTED} photos, "
            f"a .zip of them, or one {video.SUPPORTED_VIDEO} video"
        )
    try:
        archive = zipfile.ZipFile(input_path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise InputError(
            f"{input_path} is not a readable zip ({exc}): create the zip again"
        ) from None
    with archive:
        yield _zip_files(input_path, archive, options)


def _folder_files(folder: Path, workspace: Workspace, options: CaptureOptions) -> list[_InputFile]:
    out_dir = workspace.out_dir.resolve()
    files = []
    for root, dirs, names in os.walk(folder):
        root_path = Path(root)
        # Prune hidden folders, OS junk and the job folder itself when it lies inside the input
        # (its working copies would otherwise be taken in again on a re-run).
        dirs[:] = sorted(
            d for d in dirs if not _is_junk(d) and (root_path / d).resolve() != out_dir
        )
        for name in sorted(names):
            if _is_junk(name):
                continue
            path = root_path / name
            if not path.is_file():
                continue
            parts = path.relative_to(folder).parts
            files.append(
                _InputFile(
                    source="/".join(parts),
                    parts=tuple(parts),
                    open=functools.partial(path.open, "rb"),
                    in_zip=False,
                )
            )
            if len(files) > options.max_files:
                raise InputError(
                    f"{folder} holds more than {options.max_files} files: give the folder with "
                    "just the product's photos"
                )
    return files


def _zip_files(
    zip_path: Path, archive: zipfile.ZipFile, options: CaptureOptions
) -> tuple[list[_InputFile], list[str]]:
    members = [info for info in archive.infolist() if not info.is_dir()]
    if len(members) > options.max_files:
        raise InputError(
            f"{zip_path} holds {len(members)} files, more than {options.max_files}: zip just the "
            "product's photos"
        )
    files, unsafe = [], []
    total_bytes = 0
    for info in members:
        parts = zip_member_parts(info.filename)
        if parts is None:
            unsafe.append(info.filename)
        elif not any(_is_junk(part) for part in parts):
            total_bytes += info.file_size
            files.append(
                _InputFile(
                    source="/".join(parts),
                    parts=parts,
                    open=functools.partial(archive.open, info),
                    in_zip=True,
                )
            )
    # Declared sizes bound what zipfile will inflate (it stops at file_size and checks the CRC),
    # so summing them refuses a zip bomb before anything is decompressed.
    if total_bytes > options.max_zip_bytes:
        raise InputError(
            f"{zip_path} unpacks to {_bytes_text(total_bytes)}, more than the "
            f"{_bytes_text(options.max_zip_bytes)} allowed: send fewer or smaller photos"
        )
    return files, unsafe


def zip_member_parts(member_name: str) -> tuple[str, ...] | None:
    """Path components of a zip member name, or None when it tries to leave the folder.

    Both separators count ("\\" from Windows zippers); empty and "." components and a drive
    letter are dropped; any ".." makes the member unsafe (zip-slip).
    """
    parts = [p for p in re.split(r"[\\/]+", member_name) if p not in ("", ".")]
    if parts and re.fullmatch(r"[A-Za-z]:", parts[0]):
        parts = parts[1:]
    if not parts or ".." in parts or member_name.startswith(("/", "\\")):
        return None
    return tuple(parts)


def _is_junk(part: str) -> bool:
    """Hidden files and folders (.DS_Store, AppleDouble "._x.jpg") and OS droppings."""
    return part.startswith(".") or part.lower() in _OS_JUNK


def photo_passes(photos: list[_InputFile]) -> dict[str, str] | None:
    """source -> pass (UPRIGHT_PASS or FLIPPED_PASS) when the photos, below the folders they
    all share, lie in exactly two sub-folders named for the two passes (PASS_FOLDERS); else
    None: a capture in one pass."""
    common = _common_folders(photos)
    if any(len(photo.parts) < common + 2 for photo in photos):
        return None  # some photo is not in a pass folder
    folders = {photo.source: photo.parts[common] for photo in photos}
    by_folder = {}
    for folder in set(folders.values()):
        key = re.sub(r"[- ]+", "_", folder.strip().lower())
        matches = [name for name, aliases in PASS_FOLDERS.items() if key in aliases]
        if len(matches) != 1:
            return None
        by_folder[folder] = matches[0]
    if sorted(by_folder.values()) != sorted(PASS_FOLDERS):
        return None
    return {source: by_folder[folder] for source, folder in folders.items()}


def _common_folders(photos: list[_InputFile]) -> int:
    """How many leading folders every photo's path shares."""
    common = len(photos[0].parts) - 1
    for photo in photos:
        same = 0
        for a, b in zip(photo.parts[:-1], photos[0].parts[:-1], strict=False):
            if a != b:
                break
            same += 1
        common = min(common, same, len(photo.parts) - 1)
    return common


def _working_names(photos: list[_InputFile]) -> dict[str, str]:
    """source -> working name: the folder prefix common to all photos dropped, the rest joined
    by "__", characters that break file names replaced."""
    common = _common_folders(photos)
    names = {}
    for photo in photos:
        name = "__".join(photo.parts[common:])
        names[photo.source] = re.sub(r"[\x00-\x1f\x7f\\/:]", "_", name)
    return names


def exact_copies(files: list[_InputFile]) -> dict[str, str]:
    """{source of a file: source of the file with the same bytes that is kept} over `files`.
    Of each set of copies the shortest name is kept (a copy's name usually adds to the
    original's: "IMG_1 (1).jpg", "IMG_1 copy.jpg"), the first in natural order among equals."""
    by_digest: dict[bytes, list[str]] = {}
    for file in files:
        digest = hashlib.sha256()
        try:
            with file.open() as stream:
                while chunk := stream.read(1 << 20):
                    digest.update(chunk)
        except Exception:  # (a damaged zip member): taking it in rejects it, with the reason
            continue
        by_digest.setdefault(digest.digest(), []).append(file.source)
    copies: dict[str, str] = {}
    for sources in by_digest.values():
        kept = min(sources, key=lambda source: (len(source), natural_key(source)))
        copies.update({source: kept for source in sources if source != kept})
    return copies


def _sniff(file: _InputFile) -> str | None:
    """The image format named by the file's first bytes ("JPEG", "PNG", "HEIF", or the name of
    a format we do not take, "video MP4" and the like included), or None when it is not an
    image at all."""
    try:
        with file.open() as stream:
            head = stream.read(64)
    except Exception:  # an unreadable member is just "not an image" here
        return None
    if kind := video.sniff_video_format(head):
        return f"video ({kind})"
    return sniff_image_format(head)


def sniff_image_format(head: bytes) -> str | None:
    """The image format of a file from its first (at least 12) bytes, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in _HEIF_BRANDS:
            return "HEIF"
        if brand in (b"avif", b"avis"):
            return "AVIF"
        return None  # MP4 / MOV video and other ISO media
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "TIFF (or camera RAW)"
    if head.startswith(b"BM") and len(head) >= 14 and head[6:10] == b"\x00\x00\x00\x00":
        return "BMP"
    return None


@functools.cache
def register_heif_opener() -> bool:
    """Teach Pillow to open HEIC (once per process); False when pillow-heif is missing."""
    try:
        import pillow_heif
    except ImportError:
        logger.warning("pillow-heif is not installed: HEIC photos will be rejected")
        return False
    pillow_heif.register_heif_opener()
    return True


# -- one photo -------------------------------------------------------------------------------------


def _take_photo(
    file: _InputFile, kind: str, name: str, workspace: Workspace, options: CaptureOptions
) -> dict:
    """Decode, check, turn upright, resize and write one working copy; its capture.json entry."""
    label = "HEIC" if kind == "HEIF" else kind
    try:
        stream = file.open()
        if file.in_zip:
            # Zip members are inflated into memory (bounded by max_zip_bytes): Pillow seeks,
            # and seeking back in a zip stream restarts the decompression.
            with stream:
                stream = io.BytesIO(stream.read())
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as exc:
        # Bad CRC, encrypted member, unknown compression method, I/O error.
        raise _RejectedError(f"could not be read ({exc}); copy or zip it again") from None
    with stream:
        try:
            photo = _decode(stream, kind, options)
        except (_RejectedError, MemoryError):
            raise
        except Exception as exc:  # Pillow and its plugins raise many types for bad data
            raise _RejectedError(
                f"damaged {label} file ({exc}); copy it from the camera again"
            ) from None
        with photo.image:
            # Outside the try above: a full disk is an error of the job, not of the photo.
            _write_working_copy(photo, stream, kind, workspace.image_path(name), options)

    focal_px, focal_source = focal_prior_px(
        photo.exif, working_long_px=max(photo.target), original_long_px=max(photo.shown)
    )
    return {
        "name": name,
        "source": file.source,
        "width": photo.target[0],
        "height": photo.target[1],
        "original_width": photo.shown[0],
        "original_height": photo.shown[1],
        "focal_px": focal_px,
        "focal_source": focal_source,
        "exif_camera": exif_camera(photo.exif),
        "taken_at": exif_taken_at(photo.exif),
    }


@dataclass(frozen=True)
class _Decoded:
    image: Image.Image  # fully decoded, as stored (not yet turned); maybe reduced by draft()
    exif: Image.Exif
    orientation: int  # EXIF orientation, 1 when absent
    shown: tuple[int, int]  # (width, height) as displayed, full resolution
    target: tuple[int, int]  # (width, height) of the working copy
    copy_bytes: bool  # the input file already is the working copy


def _decode(stream: BinaryIO, kind: str, options: CaptureOptions) -> _Decoded:
    try:
        image = Image.open(stream, formats=[kind])
    except Image.DecompressionBombError:
        limit = _megapixels(2 * Image.MAX_IMAGE_PIXELS)
        raise _RejectedError(
            f"too large: more than {limit} megapixels (limit {_megapixels(options.max_pixels)}); "
            "resize it"
        ) from None
    try:
        width, height = image.size
        if width * height > options.max_pixels:
            raise _RejectedError(
                f"too large: {_megapixels(width * height)} megapixels (limit "
                f"{_megapixels(options.max_pixels)}); resize it"
            )
        exif = image.getexif()
        orientation = exif.get(_TAG_ORIENTATION, 1)
        orientation = orientation if orientation in (1, 2, 3, 4, 5, 6, 7, 8) else 1
        # Sizes as displayed: orientations 5–8 swap width and height.
        shown = (height, width) if orientation >= 5 else (width, height)
        target = working_size(shown, options.max_image_px)
        scale = target[0] / shown[0]
        if scale < 1 and image.format in ("JPEG", "MPO"):
            # libjpeg can decode at 1/2, 1/4, 1/8 directly: much faster on 12–48 MP photos, and
            # never below the target size, so the final LANCZOS pass still sets the quality.
            image.draft(None, (math.ceil(width * scale), math.ceil(height * scale)))
        # A full decode: Pillow raises on truncated data (unless someone set
        # ImageFile.LOAD_TRUNCATED_IMAGES, which this module never does).
        image.load()
        copy_bytes = (
            target == shown
            and orientation == 1
            and image.mode == "RGB"
            and (image.format == "JPEG" or (image.format == "PNG" and _png_bit_depth(stream) == 8))
        )
    except BaseException:
        image.close()
        raise
    return _Decoded(image, exif, orientation, shown, target, copy_bytes)


def _write_working_copy(
    photo: _Decoded, stream: BinaryIO, kind: str, path: Path, options: CaptureOptions
) -> None:
    with atomic_path(path) as tmp:
        if photo.copy_bytes:
            # Already what later stages want: keep the bytes (no second JPEG generation).
            stream.seek(0)
            with tmp.open("wb") as out:
                shutil.copyfileobj(stream, out)
            return
        working = ImageOps.exif_transpose(photo.image) if photo.orientation != 1 else photo.image
        working = to_rgb8(working)
        if working.size != photo.target:
            working = working.resize(photo.target, Image.Resampling.LANCZOS, reducing_gap=3.0)
        if kind == "PNG":
            # Working copies are read a few times and deleted: fast compression.
            working.save(tmp, format="PNG", compress_level=1)
        else:
            # 4:4:4 chroma: colour edges end up in the texture.
            working.save(tmp, format="JPEG", quality=options.jpeg_quality, subsampling=0)


def working_size(size: tuple[int, int], max_image_px: int | None) -> tuple[int, int]:
    """(width, height) of the working copy: the long side at most `max_image_px`."""
    width, height = size
    long_side = max(width, height)
    if max_image_px is None or long_side <= max_image_px:
        return width, height
    scale = max_image_px / long_side
    if width >= height:
        return max_image_px, max(1, round(height * scale))
    return max(1, round(width * scale)), max_image_px


def to_rgb8(image: Image.Image) -> Image.Image:
    """8-bit RGB. 16-bit greyscale is scaled (a plain convert would clip it to white); alpha is
    dropped, not composited."""
    if image.mode.startswith("I"):
        values = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        grey = ((values * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    if image.mode == "F":
        grey = np.clip(np.asarray(image), 0, 255).round().astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def _png_bit_depth(stream: BinaryIO) -> int:
    stream.seek(24)  # signature (8) + IHDR length and type (8) + width and height (8)
    return stream.read(1)[0]


# -- EXIF ------------------------------------------------------------------------------------


def focal_prior_px(
    exif: Image.Exif, *, working_long_px: int, original_long_px: int
) -> tuple[float | None, str | None]:
    """Focal length in pixels of the working copy from EXIF, and which tags gave it.

    FocalLengthIn35mmFilm is taken as relative to a 36 mm wide frame on the long side (what
    phones write, and what `recon synth` writes); else FocalLength with FocalPlaneXResolution
    (pixels per unit on the sensor, for the original image size). A value outside
    0.2–20 long sides is an EXIF error and is ignored.
    """
    exif_ifd = exif.get_ifd(_IFD_EXIF)

    def tag(number: int) -> float | None:
        value = exif_ifd.get(number, exif.get(number))
        try:
            number_value = float(value)
        except (TypeError, ValueError, ZeroDivisionError):
            return None
        return number_value if math.isfinite(number_value) and number_value > 0 else None

    candidates = []
    focal_35mm = tag(_TAG_FOCAL_LENGTH_35MM)
    if focal_35mm is not None:
        candidates.append((focal_35mm / 36.0 * working_long_px, "exif_35mm"))
    focal_mm = tag(_TAG_FOCAL_LENGTH)
    resolution = tag(_TAG_FOCAL_PLANE_X_RESOLUTION)
    unit = exif_ifd.get(_TAG_FOCAL_PLANE_RESOLUTION_UNIT, 2)  # the standard's default: inches
    if focal_mm is not None and resolution is not None and unit in _MM_PER_UNIT:
        pixels_per_mm = resolution / _MM_PER_UNIT[unit]
        scale = working_long_px / original_long_px
        candidates.append((focal_mm * pixels_per_mm * scale, "exif_focal_plane"))
    low, high = _FOCAL_RANGE_LONG_SIDES
    for focal_px, source in candidates:
        if low <= focal_px / working_long_px <= high:
            return float(focal_px), source
    return None, None


def exif_taken_at(exif: Image.Exif) -> str | None:
    """When the photo was taken (EXIF DateTimeOriginal, with its sub-seconds), as text that
    sorts in time order ("2026:12:06 10:21:29.483"), or None."""
    exif_ifd = exif.get_ifd(_IFD_EXIF)
    taken = _exif_text(exif_ifd.get(_TAG_DATETIME_ORIGINAL))
    if not _EXIF_DATETIME.fullmatch(taken):
        return None
    subsec = _exif_text(exif_ifd.get(_TAG_SUBSEC_TIME_ORIGINAL))
    return f"{taken}.{subsec}" if subsec.isdigit() else taken


def in_time_order(images: list[dict], passes: list[int] | None) -> str:
    """Put `images` (in name order) in the order they were taken where every photo's EXIF
    says when (pass by pass: `passes` ranks them), and say which order they are in: "name" or
    "time taken". Names stop following it when photos are renamed, exported from a library or
    taken on two phones; SfM matches neighbours in it and checks placements against it."""
    times = [entry.get("taken_at") for entry in images]
    # (A tool that stamps one time on every photo it writes says nothing of the order.)
    if len(images) < 2 or not all(times) or len(set(times)) < len(images) / 2:
        return "name"
    rank = passes or [0] * len(images)
    order = sorted(range(len(images)), key=lambda i: (rank[i], times[i]))  # stable: name ties
    images[:] = [images[i] for i in order]
    return "time taken"


def exif_camera(exif: Image.Exif) -> str | None:
    """ "Make Model" from EXIF (the make once when the model repeats it), or None."""
    make, model = (_exif_text(exif.get(tag)) for tag in (_TAG_MAKE, _TAG_MODEL))
    if make and model and model.lower().startswith(make.lower()):
        return model
    return " ".join(part for part in (make, model) if part) or None


def _exif_text(value: object) -> str:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return str(value).replace("\x00", "").strip() if value is not None else ""


def photo_checks(workspace: Workspace, images: list[dict]) -> dict:
    """capture.json's "qa": recon.capture_qa's checks of every working copy (blur, exposure,
    copies; about 10 ms a photo), which report.json and `recon check` build on."""
    paths = [workspace.image_path(entry["name"]) for entry in images]
    return {"images": capture_qa.check_photos(paths)}


# -- a second try at a larger size ----------------------------------------------------------------

# A second try is only worth its time when the photos grow by at least this factor.
_MIN_RETRY_GROWTH = 1.1


def retry_size(workspace: Workspace, options: CaptureOptions) -> int | None:
    """The long side to take the capture in again at when SfM could not place its working
    copies: `retry_image_px`, or the photos' own size if smaller; None when no larger copies
    can be made (no retry size, or the photos are already about that size)."""
    if options.retry_image_px is None or not workspace.capture_path.exists():
        return None
    images = workspace.read_capture()["images"]
    size = min(_longest_side(images, "original_width", "original_height"), options.retry_image_px)
    return size if size >= _MIN_RETRY_GROWTH * _longest_side(images, "width", "height") else None


def working_long_side(workspace: Workspace) -> int:
    """The longest side of the capture's working copies, px."""
    return _longest_side(workspace.read_capture()["images"], "width", "height")


def _longest_side(images: list[dict], width: str, height: str) -> int:
    """The longest of capture.json's `images`' `width` and `height` entries."""
    return max(max(image[width], image[height]) for image in images)


def was_retried(workspace: Workspace) -> bool:
    """Whether the working copies are a second try's (note_retry said so)."""
    return workspace.capture_path.exists() and "retried_from_px" in workspace.read_capture()


def note_retry(workspace: Workspace, first_size: int) -> None:
    """Say in capture.json (and so in the report's warnings) that the photos were taken in
    again at their present size, after SfM failed on copies `first_size` px long."""
    capture = workspace.read_capture()
    size = _longest_side(capture["images"], "width", "height")
    capture["retried_from_px"] = first_size
    capture["warnings"].append(
        f"the photos could not be placed at {first_size} px, so they were taken in again at "
        f"{size} px, which took longer: the product shows few distinct features "
        "(plain, alike on several sides, or small in the frame). A patterned mat or newspaper "
        "under it, or filling more of the frame, gives more to go on"
    )
    write_json_atomic(workspace.capture_path, capture)


# -- summaries ------------------------------------------------------------------------------------


def _capture_warnings(images: list[dict]) -> list[str]:
    warnings = []
    cameras = sorted({entry["exif_camera"] for entry in images if entry["exif_camera"]})
    if len(cameras) > 1:
        warnings.append(
            f"the photos come from {len(cameras)} cameras ({', '.join(cameras)}): each gets its "
            "own lens calibration; one camera at one zoom gives a steadier model"
        )
    without_focal = [entry["name"] for entry in images if entry["focal_px"] is None]
    if without_focal:
        warnings.append(
            f"{len(without_focal)} of {len(images)} photos have no focal length in EXIF: it "
            "will be estimated from the photos (keep the camera's original files for a "
            "steadier result)"
        )
    return warnings


def _summarise(rejected: list[dict], shown: int = 5) -> str:
    if not rejected:
        return ""
    listed = "; ".join(f"{r['image']}: {r['reason']}" for r in rejected[:shown])
    more = f"; and {len(rejected) - shown} more" if len(rejected) > shown else ""
    return f" (skipped {listed}{more})"


def _bytes_text(size: int) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.3g}"


def _clear_dir(folder: Path) -> None:
    if folder.is_dir():
        shutil.rmtree(folder)
    elif folder.exists():
        folder.unlink()


def natural_key(name: str) -> list:
    """Sort key putting img_2 before img_10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]
