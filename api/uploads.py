"""Checking an upload (photos, one zip, or one video) by content before anything is stored."""

from __future__ import annotations

import re
import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from PIL import Image
from werkzeug.datastructures import FileStorage
from werkzeug.utils import secure_filename

from api.errors import ApiError
from api.settings import Settings
from api.storage import Storage
from recon.capture import SUPPORTED, register_heif_opener, sniff_image_format, zip_member_parts
from recon.video import sniff_video_format

PHOTO_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "HEIF": ".heic"}
VIDEO_FORMATS = {"MP4": ".mp4", "MOV": ".mov", "WEBM": ".webm", "MKV": ".mkv"}
WHAT_TO_SEND = f"send {SUPPORTED} photos, one .zip of them, or one MP4/MOV/WebM video"


@dataclass(frozen=True)
class Upload:
    """An accepted upload, written to `folder` (the caller moves it to its job)."""

    folder: Path
    kind: str  # "photos", "zip" or "video"
    input_name: str | None  # the file to reconstruct from; None: the folder of photos
    files: int
    bytes: int

    def to_json(self) -> dict:
        return {"kind": self.kind, "files": self.files, "bytes": self.bytes}


def accept_upload(files: Sequence[FileStorage], settings: Settings, storage: Storage) -> Upload:
    """Check `files` by content (types, counts, pixel and unpacked-size caps, unsafe zip paths),
    then write them to a new incoming folder. Raises ApiError (4xx) and writes nothing when the
    upload is refused."""
    files = [f for f in files if f.filename or _size(f.stream)]
    if not files:
        raise ApiError(400, "no_files", f"no files in the upload: {WHAT_TO_SEND} as 'files'")
    if len(files) > settings.max_files:
        raise ApiError(
            413,
            "too_many_files",
            f"{len(files)} files sent, at most {settings.max_files} are taken: send the best "
            "photos, or a video",
        )
    kinds = [_sniff(file) for file in files]
    singles = [(f, k) for f, k in zip(files, kinds, strict=True) if k in ("ZIP", *VIDEO_FORMATS)]
    if singles and len(files) > 1:
        raise ApiError(
            400,
            "mixed_upload",
            f"{_label(singles[0][0])} is a {singles[0][1]} sent with other files: send either "
            "photos, or one zip, or one video",
        )
    if singles:
        file, kind = singles[0]
        if kind == "ZIP":
            count = _check_zip(file, settings)
            return _write(storage, [(file, "photos.zip")], "zip", "photos.zip", count)
        name = "video" + VIDEO_FORMATS[kind]
        return _write(storage, [(file, name)], "video", name, 1)

    if len(files) < settings.min_photos:
        raise ApiError(
            400,
            "too_few_photos",
            f"{len(files)} photo(s) sent, at least {settings.min_photos} are needed: take 20–40 "
            "photos all around the product",
        )
    names: set[str] = set()
    placed = []
    for index, (file, kind) in enumerate(zip(files, kinds, strict=True)):
        _check_photo(file.stream, kind, _label(file), settings)
        placed.append((file, _unique_name(file.filename, index, PHOTO_FORMATS[kind], names)))
    return _write(storage, placed, "photos", None, len(placed))


def _sniff(file: FileStorage) -> str:
    """JPEG/PNG/HEIF, ZIP, MP4/MOV/WEBM/MKV; anything else is refused here, naming the file."""
    stream = file.stream
    stream.seek(0)
    head = stream.read(64)
    stream.seek(0)
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "ZIP"
    image_format = sniff_image_format(head)
    if image_format in PHOTO_FORMATS:
        return image_format
    video_format = sniff_video_format(head)
    if video_format is not None:
        return video_format
    found = f"a {image_format} image" if image_format else "not a photo, zip or video"
    raise ApiError(415, "unsupported_media_type", f"{_label(file)} is {found}: {WHAT_TO_SEND}")


def _check_photo(stream: BinaryIO, kind: str, label: str, settings: Settings) -> None:
    """Read the photo's header only: its pixel count against the cap, and that it opens."""
    if kind == "HEIF" and not register_heif_opener():
        raise ApiError(415, "unsupported_media_type", f"{label}: HEIC is not supported here")
    stream.seek(0)
    try:
        with Image.open(stream, formats=[kind]) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        width = height = settings.max_pixels + 1  # Pillow refused it as even larger
    except Exception as exc:  # Pillow raises many types for damaged headers
        raise ApiError(
            400, "damaged_image", f"{label} is a damaged {kind} file ({exc}): copy it again"
        ) from None
    finally:
        stream.seek(0)
    if width * height > settings.max_pixels:
        raise ApiError(
            413,
            "image_too_large",
            f"{label} has more than the {settings.max_pixels / 1e6:.0f} megapixels allowed per "
            "photo: send it smaller",
        )


def _check_zip(file: FileStorage, settings: Settings) -> int:
    """Members within the caps, no path leaving the folder, enough photos; their count."""
    label = _label(file)
    try:
        archive = zipfile.ZipFile(file.stream)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise ApiError(
            400, "damaged_zip", f"{label} is not a readable zip ({exc}): zip again"
        ) from None
    with archive:
        members = [info for info in archive.infolist() if not info.is_dir()]
        if len(members) > settings.max_files:
            raise ApiError(
                413,
                "too_many_files",
                f"{label} holds {len(members)} files, at most {settings.max_files} are taken: "
                "zip just the product's photos",
            )
        for info in members:
            if zip_member_parts(info.filename) is None:
                raise ApiError(
                    400,
                    "unsafe_zip",
                    f"{label} holds {info.filename!r}, a path leaving the folder ('..' or "
                    "absolute): zip the photos themselves",
                )
        # zipfile stops inflating at each member's declared size (and then checks its CRC),
        # so the declared total bounds what a zip bomb could unpack.
        unpacked = sum(info.file_size for info in members)
        if unpacked > settings.max_zip_bytes:
            raise ApiError(
                413,
                "zip_too_large",
                f"{label} unpacks to {unpacked / 2**30:.1f} GiB, more than the "
                f"{settings.max_zip_bytes / 2**30:.1f} GiB allowed: send fewer or smaller photos",
            )
        photos = 0
        for info in members:
            if any(part.startswith(".") for part in zip_member_parts(info.filename) or ()):
                continue  # .DS_Store and friends: capture skips them too
            try:
                with archive.open(info) as member:
                    kind = sniff_image_format(member.read(64))
                    if kind in PHOTO_FORMATS:
                        _check_photo(member, kind, f"{label}: {info.filename}", settings)
                        photos += 1
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError) as exc:
                raise ApiError(
                    400,
                    "damaged_zip",
                    f"{label}: {info.filename} cannot be read ({exc}); zip again without "
                    "encryption",
                ) from None
    if photos < settings.min_photos:
        raise ApiError(
            400,
            "too_few_photos",
            f"{label} holds {photos} photo(s) ({SUPPORTED}), at least {settings.min_photos} are "
            "needed: take 20–40 photos all around the product",
        )
    return photos


def _write(
    storage: Storage, files: list[tuple[FileStorage, str]], kind: str, input_name: str | None,
    count: int,
) -> Upload:  # fmt: skip
    folder = storage.new_incoming_dir()
    total = 0
    try:
        for file, name in files:
            file.stream.seek(0)
            with (folder / name).open("wb") as out:
                shutil.copyfileobj(file.stream, out, 1 << 20)
            total += (folder / name).stat().st_size
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return Upload(folder, kind, input_name, count, total)


def _unique_name(filename: str | None, index: int, suffix: str, taken: set[str]) -> str:
    """A safe file name that keeps the merchant's (cameras in the report are named by it)."""
    name = secure_filename(filename or "") or f"photo_{index:04d}{suffix}"
    stem, dot, ext = name.rpartition(".")
    if not dot:
        stem, ext = name, suffix.lstrip(".")
    candidate, number = name, 1
    while candidate.lower() in taken:
        number += 1
        candidate = f"{stem}_{number}.{ext}"
    taken.add(candidate.lower())
    return candidate


def _label(file: FileStorage) -> str:
    name = re.sub(r"[\x00-\x1f\x7f]", "?", file.filename or "")[:200]
    return f"'{name}'" if name else "an unnamed file"


def _size(stream: BinaryIO) -> int:
    stream.seek(0, 2)
    size = stream.tell()
    stream.seek(0)
    return size
