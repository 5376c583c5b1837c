"""`recon.capture`: photos from a folder or a zip into the workspace, and bad input refused."""

from __future__ import annotations

import json
import shutil
import struct
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from recon import capture
from recon.cameras import read_cameras_json
from recon.errors import CaptureError, InputError
from recon.workspace import Workspace
from tests.conftest import SAMPLE_CAPTURES_DIR

SAMPLE = SAMPLE_CAPTURES_DIR / "cereal_box"
SAMPLE_NAMES = sorted(p.name for p in (SAMPLE / "images").iterdir())


def truth_focal_px() -> dict[str, float]:
    return {c.name: float(c.K[0, 0]) for c in read_cameras_json(SAMPLE / "truth" / "cameras.json")}


def copy_photos(folder: Path, count: int, *, start: int = 0) -> list[str]:
    """`count` sample photos from the `start`-th copied into `folder`; their names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = SAMPLE_NAMES[start : start + count]
    for name in names:
        shutil.copy(SAMPLE / "images" / name, folder / name)
    return names


def two_colour_image(width: int, height: int) -> Image.Image:
    """Left half red, right half blue."""
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[:, : width // 2] = (255, 0, 0)
    rgb[:, width // 2 :] = (0, 0, 255)
    return Image.fromarray(rgb)


def exif_with(
    *, orientation: int | None = None, make: str | None = None, focal_35mm: int | None = None
) -> Image.Exif:
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if make is not None:
        exif[0x010F] = make
        exif[0x0110] = "model X"
    if focal_35mm is not None:
        exif.get_ifd(0x8769)[0xA405] = focal_35mm
    return exif


def png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width × height but whose pixel data is a few junk bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_folder_of_the_sample_capture(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "out")
    events = []
    result = capture.run(SAMPLE / "images", workspace, progress=lambda *event: events.append(event))

    assert [entry["name"] for entry in result.images] == SAMPLE_NAMES
    assert result.rejected == []
    assert result.warnings == []
    truth = truth_focal_px()
    for entry in result.images:
        assert (entry["width"], entry["height"]) == (640, 640)
        assert (entry["original_width"], entry["original_height"]) == (640, 640)
        assert entry["focal_source"] == "exif_35mm"
        assert entry["focal_px"] == pytest.approx(truth[entry["name"]], rel=0.02)
        assert entry["exif_camera"] == "recon synth virtual camera"
        # Small RGB JPEGs with no orientation are taken in byte for byte (no re-encoding).
        working = workspace.image_path(entry["name"])
        assert working.read_bytes() == (SAMPLE / "images" / entry["name"]).read_bytes()
    saved = json.loads(workspace.capture_path.read_text())
    assert saved["version"] == 1
    assert saved["input"] == str(SAMPLE / "images")
    assert saved["images"] == result.images
    assert sorted(p.name for p in workspace.images_dir.iterdir()) == SAMPLE_NAMES
    assert events[-1] == ("capture", 1.0, SAMPLE_NAMES[-1])
    assert len(events) == 24
    assert all(stage == "capture" for stage, _, _ in events)


def test_zip_with_macos_junk_and_a_folder_keeps_the_names(tmp_path: Path) -> None:
    zip_path = tmp_path / "photos.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("shoot/", "")
        for name in SAMPLE_NAMES:
            archive.write(SAMPLE / "images" / name, f"shoot/{name}")
        archive.writestr("__MACOSX/shoot/._img_000.jpg", b"\x00\x05\x16\x07junk")
        archive.writestr("shoot/.DS_Store", b"\x00\x00\x00\x01Bud1")
        archive.writestr("shoot/Thumbs.db", b"junk")

    workspace = Workspace(tmp_path / "out")
    result = capture.run(zip_path, workspace)

    assert [entry["name"] for entry in result.images] == SAMPLE_NAMES
    assert [entry["source"] for entry in result.images] == [f"shoot/{n}" for n in SAMPLE_NAMES]
    assert result.rejected == []
    assert sorted(p.name for p in workspace.images_dir.iterdir()) == SAMPLE_NAMES
    truth = truth_focal_px()
    for entry in result.images:
        assert entry["focal_px"] == pytest.approx(truth[entry["name"]], rel=0.02)


def test_photos_in_sub_folders_get_unique_names(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    copy_photos(folder / "left", 2)
    (folder / "right").mkdir()
    for index, name in enumerate(SAMPLE_NAMES[:2]):  # the same names, other photos
        shutil.copy(SAMPLE / "images" / SAMPLE_NAMES[2 + index], folder / "right" / name)
    shutil.copy(SAMPLE / "images" / SAMPLE_NAMES[5], folder / "img_2.jpg")
    shutil.copy(SAMPLE / "images" / SAMPLE_NAMES[6], folder / "img_10.jpg")

    result = capture.run(folder, Workspace(tmp_path / "out"))

    assert [entry["name"] for entry in result.images] == [
        "img_2.jpg",  # natural order: 2 before 10
        "img_10.jpg",
        "left__img_000.jpg",
        "left__img_001.jpg",
        "right__img_000.jpg",
        "right__img_001.jpg",
    ]
    assert result.images[2]["source"] == "left/img_000.jpg"


def test_resizing_scales_the_focal_length(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "out")
    options = capture.CaptureOptions(max_image_px=320)
    result = capture.run(SAMPLE / "images", workspace, options)

    truth = truth_focal_px()
    for entry in result.images:
        assert (entry["width"], entry["height"]) == (320, 320)
        assert (entry["original_width"], entry["original_height"]) == (640, 640)
        assert entry["focal_px"] == pytest.approx(truth[entry["name"]] / 2, rel=0.02)
    # The working copy is the photo made smaller, not something else of that size.
    name = SAMPLE_NAMES[0]
    original = np.asarray(Image.open(SAMPLE / "images" / name), np.float64)
    box_filtered = original.reshape(320, 2, 320, 2, 3).mean(axis=(1, 3))
    with Image.open(workspace.image_path(name)) as working:
        assert working.format == "JPEG"
        assert np.abs(np.asarray(working, np.float64) - box_filtered).mean() < 4.0


@pytest.mark.parametrize(("size", "max_image_px"), [((64, 32), None), ((400, 200), 100)])
def test_exif_orientation_is_applied(
    tmp_path: Path, size: tuple[int, int], max_image_px: int | None
) -> None:
    folder = tmp_path / "photos"
    copy_photos(folder, 3)
    # Orientation 6: the camera was turned 90° clockwise; viewers rotate the stored pixels
    # clockwise, so the stored left half (red) ends up on top.
    two_colour_image(*size).save(folder / "turned.jpg", exif=exif_with(orientation=6))

    workspace = Workspace(tmp_path / "out")
    result = capture.run(folder, workspace, capture.CaptureOptions(max_image_px=max_image_px))

    entry = next(e for e in result.images if e["name"] == "turned.jpg")
    shown = (size[1], size[0])
    expected = shown if max_image_px is None else (max_image_px // 2, max_image_px)
    assert (entry["original_width"], entry["original_height"]) == shown
    assert (entry["width"], entry["height"]) == expected
    with Image.open(workspace.image_path("turned.jpg")) as working:
        assert working.size == expected
        assert working.getexif().get(0x0112, 1) == 1  # no second turn by a later reader
        rgb = np.asarray(working, np.int64)
    height = rgb.shape[0]
    assert np.abs(rgb[: height // 2 - 2] - (255, 0, 0)).max() < 40  # top: red
    assert np.abs(rgb[height // 2 + 2 :] - (0, 0, 255)).max() < 40  # bottom: blue


def test_png_stays_png_and_sixteen_bit_is_scaled(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    copy_photos(folder, 2)
    rgba = np.dstack([np.asarray(two_colour_image(48, 40)), np.full((40, 48), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(folder / "alpha.png")
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (16, 1))
    Image.fromarray(ramp).save(folder / "deep.png")  # 16-bit greyscale ("I;16")
    assert Image.open(folder / "deep.png").mode == "I;16"

    workspace = Workspace(tmp_path / "out")
    result = capture.run(folder, workspace)

    assert [e["name"] for e in result.images][:2] == ["alpha.png", "deep.png"]
    with Image.open(workspace.image_path("alpha.png")) as working:
        assert (working.format, working.mode, working.size) == ("PNG", "RGB", (48, 40))
        np.testing.assert_array_equal(np.asarray(working), rgba[..., :3])  # lossless
    with Image.open(workspace.image_path("deep.png")) as working:
        assert (working.format, working.mode) == ("PNG", "RGB")
        grey = np.asarray(working)[0, :, 0].astype(np.int64)
    np.testing.assert_allclose(grey, np.linspace(0, 255, 64), atol=1.0)  # scaled, not clipped


def test_heic_is_read_and_kept_under_its_name(tmp_path: Path) -> None:
    pillow_heif = pytest.importorskip("pillow_heif", reason="pillow-heif is not installed")
    if not pillow_heif.libheif_info().get("encoders"):
        pytest.skip("this libheif has no HEIF encoder to make a test photo with")
    folder = tmp_path / "photos"
    copy_photos(folder, 2)
    photo = np.asarray(Image.open(SAMPLE / "images" / SAMPLE_NAMES[5]))[:480]  # 640 × 480
    heif = pillow_heif.from_pillow(Image.fromarray(photo))
    heif.save(folder / "IMG_0001.HEIC", quality=90, exif=exif_with(focal_35mm=26).tobytes())

    workspace = Workspace(tmp_path / "out")
    result = capture.run(folder, workspace, capture.CaptureOptions(max_image_px=320))

    entry = next(e for e in result.images if e["name"] == "IMG_0001.HEIC")
    assert (entry["width"], entry["height"]) == (320, 240)
    assert entry["focal_px"] == pytest.approx(26 / 36 * 320)
    with Image.open(workspace.image_path("IMG_0001.HEIC")) as working:
        assert working.format == "JPEG"  # later stages read by content
        small = np.asarray(working, np.float64)
    expected = photo.astype(np.float64).reshape(240, 2, 320, 2, 3).mean(axis=(1, 3))
    assert np.abs(small - expected).mean() < 6.0


def test_files_that_are_not_photos_are_skipped_with_a_warning(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    names = copy_photos(folder, 3)
    (folder / "notes.txt").write_text("shoot on Monday")
    (folder / "fake.jpg").write_bytes(b"this is not a JPEG")
    Image.new("RGB", (8, 8)).save(folder / "icon.gif")

    result = capture.run(folder, Workspace(tmp_path / "out"))

    assert [e["name"] for e in result.images] == names
    assert result.rejected == [
        {"image": "fake.jpg", "reason": "not an image"},
        {
            "image": "icon.gif",
            "reason": "unsupported image format GIF: export it as JPEG, PNG or HEIC",
        },
        {"image": "notes.txt", "reason": "not an image"},
    ]
    assert any("notes.txt" in w and "not an image" in w for w in result.warnings)


def test_a_photo_sent_twice_is_taken_in_once(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    names = copy_photos(folder, 4)
    shutil.copy(folder / names[1], folder / "a.jpg")  # a shorter name: it is the one kept
    shutil.copy(folder / names[2], folder / f"{Path(names[2]).stem} (1).jpg")

    result = capture.run(folder, Workspace(tmp_path / "out"))

    assert sorted(e["name"] for e in result.images) == sorted(["a.jpg", names[0], *names[2:]])
    assert result.rejected == [
        {"image": names[1], "reason": "an exact copy of a.jpg; the copy is left out"},
        {"image": f"{Path(names[2]).stem} (1).jpg",
         "reason": f"an exact copy of {names[2]}; the copy is left out"},
    ]  # fmt: skip
    assert any("exact copy" in w for w in result.warnings)


def test_truncated_and_damaged_photos_are_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    names = copy_photos(folder, 3)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    data = (SAMPLE / "images" / SAMPLE_NAMES[10]).read_bytes()
    (folder / "cut.jpg").write_bytes(data[: len(data) - 100])  # header fine, pixels cut short
    png = tmp_path / "whole.png"
    Image.open(SAMPLE / "images" / SAMPLE_NAMES[11]).save(png)
    (folder / "cut.png").write_bytes(png.read_bytes()[:5000])

    workspace = Workspace(tmp_path / "out")
    result = capture.run(folder, workspace)

    assert [e["name"] for e in result.images] == names
    reasons = {r["image"]: r["reason"] for r in result.rejected}
    assert reasons["cut.jpg"].startswith("damaged JPEG file")
    assert "truncated" in reasons["cut.jpg"]
    assert reasons["cut.png"].startswith("damaged PNG file")
    assert not workspace.image_path("cut.jpg").exists()


def test_a_damaged_zip_member_is_skipped(tmp_path: Path) -> None:
    zip_path = tmp_path / "photos.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_STORED) as archive:
        for name in SAMPLE_NAMES[:4]:
            archive.write(SAMPLE / "images" / name, name)
        member = archive.getinfo(SAMPLE_NAMES[1])
    data = bytearray(zip_path.read_bytes())
    data[member.header_offset + 30 + len(member.filename) + 5000] ^= 0xFF  # fails its CRC
    zip_path.write_bytes(bytes(data))

    result = capture.run(zip_path, Workspace(tmp_path / "out"))

    assert [e["name"] for e in result.images] == [SAMPLE_NAMES[0], *SAMPLE_NAMES[2:4]]
    assert result.rejected == [{
        "image": SAMPLE_NAMES[1],
        "reason": f"could not be read (Bad CRC-32 for file {SAMPLE_NAMES[1]!r}); "
        "copy or zip it again",
    }]  # fmt: skip


def test_too_many_pixels_are_refused_without_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "photos"
    names = copy_photos(folder, 3)
    png_header_only(folder / "bomb.png", 30000, 30000)  # beyond Pillow's own bomb limit
    png_header_only(folder / "big.png", 9000, 9000)  # 81 MP: within Pillow's, not ours
    decoded_sizes = []
    original_load = ImageFile.ImageFile.load

    def spying_load(image: ImageFile.ImageFile):
        decoded_sizes.append(image.size)
        return original_load(image)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spying_load)
    options = capture.CaptureOptions(max_pixels=50_000_000)
    result = capture.run(folder, Workspace(tmp_path / "out"), options)

    assert [e["name"] for e in result.images] == names
    reasons = {r["image"]: r["reason"] for r in result.rejected}
    assert reasons["big.png"] == "too large: 81 megapixels (limit 50); resize it"
    assert reasons["bomb.png"].startswith("too large:")
    assert reasons["bomb.png"].endswith("(limit 50); resize it")
    assert set(decoded_sizes) == {(640, 640)}  # only the real photos were decoded


def test_fewer_than_three_usable_photos_is_a_capture_error(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    copy_photos(folder, 2)
    (folder / "readme.txt").write_text("hello")
    workspace = Workspace(tmp_path / "out")

    with pytest.raises(CaptureError) as error:
        capture.run(folder, workspace)

    message = str(error.value)
    assert "only 2 usable photos (of 3 files)" in message
    assert "at least 3 are needed — take 20–40 photos all around the product" in message
    assert "readme.txt: not an image" in message
    # Nothing half-written: no capture.json, no working copies.
    assert not workspace.capture_path.exists()
    assert not any(workspace.images_dir.glob("*"))


@pytest.mark.parametrize("case", ["missing", "empty", "text file", "broken zip", "zip of text"])
def test_unusable_input_is_an_input_error(tmp_path: Path, case: str) -> None:
    path = tmp_path / {"missing": "nowhere", "empty": "empty", "text file": "list.txt"}.get(
        case, "photos.zip"
    )
    expected = {
        "missing": "does not exist",
        "empty": "no photos found in",
        "text file": "neither a folder nor a .zip",
        "broken zip": "not a readable zip",
        "zip of text": "no photos found in",
    }[case]
    if case == "empty":
        path.mkdir()
    elif case == "text file":
        path.write_text("img_000.jpg\n")
    elif case == "broken zip":
        zip_path = tmp_path / "whole.zip"
        with zipfile.ZipFile(zip_path, "w") as archive:
            archive.write(SAMPLE / "images" / SAMPLE_NAMES[0], SAMPLE_NAMES[0])
        path.write_bytes(zip_path.read_bytes()[:-30])  # the central directory's end cut off
    elif case == "zip of text":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("a.txt", "text")

    with pytest.raises(InputError, match=expected) as error:
        capture.run(path, Workspace(tmp_path / "out"))
    assert str(path) in str(error.value)
    if case in ("empty", "zip of text"):
        assert "expected JPEG, PNG or HEIC files" in str(error.value)


def test_zip_slip_members_are_never_written(tmp_path: Path) -> None:
    zip_path = tmp_path / "deep" / "photos.zip"
    zip_path.parent.mkdir()
    photo = (SAMPLE / "images" / SAMPLE_NAMES[0]).read_bytes()
    with zipfile.ZipFile(zip_path, "w") as archive:
        for name in SAMPLE_NAMES[:3]:
            archive.write(SAMPLE / "images" / name, name)
        archive.writestr("../evil.jpg", photo)
        archive.writestr("../../evil2.jpg", photo)
        archive.writestr("/tmp/evil3.jpg", photo)
        archive.writestr("ok/../../evil4.jpg", photo)
    before = set(tmp_path.rglob("*"))

    workspace = Workspace(tmp_path / "deep" / "out")
    result = capture.run(zip_path, workspace)

    assert [e["name"] for e in result.images] == SAMPLE_NAMES[:3]
    assert {r["image"] for r in result.rejected} == {
        "../evil.jpg",
        "../../evil2.jpg",
        "/tmp/evil3.jpg",
        "ok/../../evil4.jpg",
    }
    assert all(r["reason"].startswith("unsafe path") for r in result.rejected)
    written = set(tmp_path.rglob("*")) - before
    assert all(workspace.out_dir in p.parents or p == workspace.out_dir for p in written)
    assert not list(tmp_path.rglob("evil*"))
    assert not Path("/tmp/evil3.jpg").exists()


def test_zip_limits(tmp_path: Path) -> None:
    zip_path = tmp_path / "photos.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name in SAMPLE_NAMES[:4]:
            archive.write(SAMPLE / "images" / name, name)
        archive.writestr("zeros.bin", b"\x00" * 5_000_000)  # inflates 1000×
    workspace = Workspace(tmp_path / "out")

    with pytest.raises(InputError, match=r"unpacks to 5\.0 MiB, more than the 3\.8 MiB allowed"):
        capture.run(zip_path, workspace, capture.CaptureOptions(max_zip_bytes=4_000_000))
    with pytest.raises(InputError, match="holds 5 files, more than 4"):
        capture.run(zip_path, workspace, capture.CaptureOptions(max_files=4))
    assert not workspace.capture_path.exists()
    result = capture.run(zip_path, workspace)
    assert len(result.images) == 4
    assert result.rejected == [{"image": "zeros.bin", "reason": "not an image"}]


def test_a_rerun_replaces_the_old_working_copies(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    copy_photos(first, 4)
    copy_photos(second, 3, start=10)
    workspace = Workspace(tmp_path / "out")
    capture.run(first, workspace)
    result = capture.run(second, workspace)

    assert [e["name"] for e in result.images] == SAMPLE_NAMES[10:13]
    assert sorted(p.name for p in workspace.images_dir.iterdir()) == SAMPLE_NAMES[10:13]
    assert [e["name"] for e in workspace.read_capture()["images"]] == SAMPLE_NAMES[10:13]


def test_a_job_folder_inside_the_input_folder_is_not_taken_in(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    copy_photos(folder, 3)
    workspace = Workspace(folder / "out")
    capture.run(folder, workspace)
    result = capture.run(folder, workspace)  # the first run's working copies lie in folder/out
    assert [e["name"] for e in result.images] == SAMPLE_NAMES[:3]

    with pytest.raises(InputError, match="inside the job folder"):
        capture.run(workspace.images_dir, workspace)


def test_mixed_cameras_and_missing_focal_lengths_are_warned_about(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    copy_photos(folder, 2)
    photo = Image.open(SAMPLE / "images" / SAMPLE_NAMES[3])
    photo.save(folder / "phone.jpg", exif=exif_with(make="Apple"))

    result = capture.run(folder, Workspace(tmp_path / "out"))

    phone = next(e for e in result.images if e["name"] == "phone.jpg")
    assert (phone["focal_px"], phone["focal_source"]) == (None, None)
    assert phone["exif_camera"] == "Apple model X"
    assert any(
        "2 cameras (Apple model X, recon synth virtual camera)" in w for w in result.warnings
    )
    assert any("1 of 3 photos have no focal length" in w for w in result.warnings)


def test_photos_are_put_in_the_order_their_exif_says_they_were_taken(tmp_path: Path) -> None:
    """Renamed photos (an export from a photo library) are put back in the order they were
    taken, sub-seconds telling a burst apart; one photo without a time leaves the name order."""
    folder = tmp_path / "photos"
    folder.mkdir()
    taken = {  # name -> (DateTimeOriginal, SubSecTimeOriginal)
        "a.jpg": ("2026:12:06 10:00:05", None),
        "b.jpg": ("2026:12:06 10:00:01", "250"),
        "c.jpg": ("2026:12:06 10:00:01", "070"),
        "d.jpg": ("2026:12:06 09:59:58", None),
    }
    for (name, (when, subsec)), sample in zip(taken.items(), SAMPLE_NAMES, strict=False):
        exif = exif_with(make="Apple")
        exif.get_ifd(0x8769)[0x9003] = when
        if subsec is not None:
            exif.get_ifd(0x8769)[0x9291] = subsec
        Image.open(SAMPLE / "images" / sample).save(folder / name, exif=exif)

    result = capture.run(folder, Workspace(tmp_path / "out"))
    assert [entry["name"] for entry in result.images] == ["d.jpg", "c.jpg", "b.jpg", "a.jpg"]
    assert result.images[1]["taken_at"] == "2026:12:06 10:00:01.070"
    written = Workspace(tmp_path / "out").read_capture()
    assert [entry["name"] for entry in written["images"]] == ["d.jpg", "c.jpg", "b.jpg", "a.jpg"]
    assert written["order"] == "time taken"

    Image.open(SAMPLE / "images" / SAMPLE_NAMES[4]).save(folder / "e.jpg")  # no EXIF time
    result = capture.run(folder, Workspace(tmp_path / "again"))
    assert [entry["name"] for entry in result.images] == [
        "a.jpg",
        "b.jpg",
        "c.jpg",
        "d.jpg",
        "e.jpg",
    ]
    assert Workspace(tmp_path / "again").read_capture()["order"] == "name"


def test_focal_prior_from_the_focal_plane_resolution() -> None:
    exif = Image.Exif()
    exif_ifd = exif.get_ifd(0x8769)
    exif_ifd[0x920A] = 4.2  # FocalLength, mm
    exif_ifd[0xA20E] = 10000.0  # FocalPlaneXResolution: 10000 pixels per cm (1 µm pixels)
    exif_ifd[0xA210] = 3  # centimetres
    # 4.2 mm × 1000 px/mm = 4200 px on the 4000 px original; 1050 px on a 1000 px working copy.
    assert capture.focal_prior_px(exif, working_long_px=1000, original_long_px=4000) == (
        pytest.approx(1050.0),
        "exif_focal_plane",
    )
    exif_ifd[0xA405] = 18  # the 35 mm equivalent wins: half of a 36 mm frame's width
    assert capture.focal_prior_px(exif, working_long_px=1000, original_long_px=4000) == (
        pytest.approx(500.0),
        "exif_35mm",
    )
    exif_ifd[0xA405] = 0  # "unknown"
    exif_ifd[0xA20E] = 10.0  # nonsense resolution: a 1 px focal length is ignored
    assert capture.focal_prior_px(exif, working_long_px=1000, original_long_px=4000) == (None, None)


def test_zip_member_names() -> None:
    assert capture.zip_member_parts("a/b\\c.jpg") == ("a", "b", "c.jpg")
    assert capture.zip_member_parts("./a//b.jpg") == ("a", "b.jpg")
    assert capture.zip_member_parts("C:/photos/x.jpg") == ("photos", "x.jpg")
    for unsafe in ("../x.jpg", "a/../../x.jpg", "/etc/x.jpg", "\\x.jpg", "..", ""):
        assert capture.zip_member_parts(unsafe) is None
    assert capture.natural_key("img_2.jpg") < capture.natural_key("img_10.jpg")
