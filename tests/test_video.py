"""`recon.video` and video captures: sniffing, frame choice, rotation, damaged files, synth."""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from recon import capture, synth, video
from recon.cameras import read_cameras_json
from recon.errors import CaptureError, InputError
from recon.workspace import Workspace
from tests.conftest import SAMPLE_CAPTURES_DIR

WIDTH, HEIGHT = 160, 96
PAN_PX = 3  # the camera's sideways motion per frame


def texture(width: int, height: int, seed: int = 0) -> np.ndarray:
    """(h, w, 3) uint8 blotchy colour print: corners everywhere, like a product's packaging."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0, 255, (height // 4, width // 4, 3)).astype(np.uint8)
    return cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)


def panning_frames(offsets: list[int]) -> list[np.ndarray]:
    """Crops of one print at the given x offsets: a camera sliding sideways (or standing)."""
    print_ = texture(WIDTH + max(offsets) + 8, HEIGHT)
    return [print_[:, x : x + WIDTH].copy() for x in offsets]


def write_video(path: Path, frames: list[np.ndarray], *, rotation_deg: int = 0) -> Path:
    height, width = frames[0].shape[:2]
    with video.H264Writer(path, width, height, 24, rotation_deg=rotation_deg) as out:
        for frame in frames:
            out.write(frame)
    return path


def take(video_path: Path, out_dir: Path, **options: object) -> capture.CaptureResult:
    return capture.run(video_path, Workspace(out_dir), capture.CaptureOptions(**options))


def reasons(result: capture.CaptureResult) -> dict[int, str]:
    return {int(r["image"][6:12]): r["reason"] for r in result.rejected}


def kept(result: capture.CaptureResult) -> list[int]:
    return [entry["frame_index"] for entry in result.images]


# -- sniffing ---------------------------------------------------------------------------------


def ftyp(brand: bytes, *compatible: bytes) -> bytes:
    body = b"ftyp" + brand + b"\x00\x00\x02\x00" + b"".join(compatible)
    return (len(body) + 4).to_bytes(4, "big") + body


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (ftyp(b"isom", b"isom", b"avc1"), "MP4"),
        (ftyp(b"mp42", b"mp41"), "MP4"),
        (ftyp(b"M4V ", b"M4V "), "MP4"),
        (ftyp(b"3gp4", b"3gp4"), "MP4"),
        (ftyp(b"qt  ", b"qt  "), "MOV"),
        (ftyp(b"abcd", b"abcd", b"mp42"), "MP4"),  # unknown major brand, MP4 compatible
        (b"\x00\x00\x00\x08wide\x00\x00\x00\x00mdat", "MOV"),  # QuickTime before ftyp
        (b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x84webm", "WEBM"),
        (b"\x1a\x45\xdf\xa3\xa3\x42\x86\x81\x01\x42\x82\x88matroska", "MKV"),
        (ftyp(b"heic", b"mif1", b"heic"), None),  # iPhone photo
        (ftyp(b"mif1", b"mif1", b"heic"), None),
        (ftyp(b"avif", b"avif", b"mif1"), None),
        (ftyp(b"abcd", b"mif1", b"mp42"), None),  # still-image brands win
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01", None),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", None),
        (b"ftyp", None),  # too short to say
        (b"", None),
    ],
)
def test_sniff_video_format(head: bytes, expected: str | None) -> None:
    assert video.sniff_video_format(head) == expected


def test_a_written_video_is_sniffed_as_mp4_and_not_as_a_photo(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.bin", panning_frames([0, 3, 6]))
    head = path.read_bytes()[:32]
    assert video.sniff_video_format(head) == "MP4"
    assert capture.sniff_image_format(head) is None


# -- choosing frames (pure) -------------------------------------------------------------------


def test_choose_frames_spreads_sharp_frames_and_gives_every_other_a_reason() -> None:
    count = 100
    relative = np.ones(count)
    relative[30:40] = 0.05  # a blurred stretch
    motion = np.full(count, 0.02)
    motion[60:80] = 0.0  # the camera stopped
    damaged = np.zeros(count, bool)
    damaged[90] = True
    choice = video.choose_frames(
        relative, motion, damaged, max_count=20, min_motion=0.01, blur_ratio=0.25
    )
    assert 15 <= len(choice.chosen) <= 20
    assert choice.chosen == sorted(choice.chosen)
    assert set(choice.chosen).isdisjoint(range(30, 40))
    assert 90 not in choice.chosen
    assert len(set(choice.chosen) & set(range(59, 80))) <= 1  # one view of the standstill
    assert set(choice.chosen) | set(choice.rejected) == set(range(count))
    assert all(choice.rejected[i].startswith("blurry") for i in range(30, 40))
    assert choice.rejected[90].startswith("damaged")
    still = [i for i in range(60, 80) if i not in choice.chosen]
    assert all(choice.rejected[i].startswith("near-duplicate") for i in still)
    assert sum(choice.counts.values()) == count - len(choice.chosen)
    # Evenly spread: the kept frames' path positions step by about the spacing.
    path = np.cumsum(motion)[[i for i in choice.chosen if not 59 <= i < 80]]
    assert np.diff(path).max() <= 3.5 * choice.spacing


def test_relative_sharpness_keeps_a_uniformly_soft_video() -> None:
    soft = np.full(50, 12.0) + np.linspace(0, 1, 50)
    path = np.linspace(0, 1, 50)
    relative = video.relative_sharpness(soft, np.zeros(50, bool), path, 0.05)
    assert relative.min() > 0.9


def test_relative_sharpness_compares_views_of_the_same_side() -> None:
    # A plain side of the product in the middle of the orbit has a third of the front's
    # Laplacian, gradually; a blurred stretch drops far more, at once.
    path = np.linspace(0, 2, 200)
    sharpness = 900 - 600 * np.exp(-(((path - 1.0) / 0.15) ** 2))
    sharpness[40:60] *= 0.03
    relative = video.relative_sharpness(sharpness, np.zeros(200, bool), path, 0.05)
    assert relative[40:60].max() < 0.1
    assert np.delete(relative, range(40, 60)).min() > 0.5  # twice the default blur_ratio


def test_frame_sharpness_sees_a_smear_along_one_direction() -> None:
    print_ = cv2.cvtColor(texture(320, 320), cv2.COLOR_RGB2GRAY)
    sideways = synth.motion_blur(np.dstack([print_] * 3), 9)[..., 0]
    defocused = cv2.GaussianBlur(print_, (0, 0), 2.0)

    def drop(measure, blurred: np.ndarray) -> float:
        return measure(blurred) / measure(print_)

    # A sideways smear drops it about twice as far as the Laplacian's variance.
    assert drop(video.frame_sharpness, sideways) < 0.2
    assert drop(video.frame_sharpness, sideways) < 0.6 * drop(video.laplacian_variance, sideways)
    assert drop(video.frame_sharpness, defocused) < 0.25
    # Less contrast lowers it in proportion, as it does the Laplacian's.
    plain = (print_ * 0.5 + 64).astype(np.uint8)
    assert drop(video.frame_sharpness, plain) == pytest.approx(
        drop(video.laplacian_variance, plain), rel=0.05
    )


def test_relative_sharpness_measures_a_long_blurred_stretch_against_the_sharp_frames() -> None:
    # A mustard bottle's orbit: 0.005 of image motion a frame, its plain side gradually 0.4 as
    # sharp as its label. Forty frames blurred to a fifth (0.2 of path, four windows long):
    # against the video's median their middle frames would pass at 0.33.
    path = np.linspace(0, 2, 400)
    sharpness = 900 - 550 * np.exp(-(((path - 0.6) / 0.1) ** 2))
    sharpness[220:260] *= 0.2
    relative = video.relative_sharpness(sharpness, np.zeros(400, bool), path, 0.05)
    assert relative[220:260].max() < 0.25
    assert np.delete(relative, range(220, 260)).min() > 0.5
    # A plain side reached abruptly but only a third as sharp is not blur: it keeps its frames.
    stepped = np.where((path > 0.5) & (path < 0.9), 300.0, 900.0)
    relative = video.relative_sharpness(stepped, np.zeros(400, bool), path, 0.05)
    assert relative.min() > 0.3


# -- video captures ---------------------------------------------------------------------------


def test_blurred_stretch_is_dropped_with_a_reason(tmp_path: Path) -> None:
    frames = panning_frames([PAN_PX * k for k in range(48)])
    blurred = range(20, 30)
    for index in blurred:
        frames[index] = cv2.GaussianBlur(frames[index], (0, 0), 2.5)
    path = write_video(tmp_path / "orbit.mp4", frames)
    result = take(path, tmp_path / "out", max_video_frames=100)
    why = reasons(result)
    assert all(why[index].startswith("blurry") for index in blurred)
    assert not any(r.startswith("blurry") for i, r in why.items() if i not in blurred)
    assert set(kept(result)).isdisjoint(blurred)
    assert len(kept(result)) >= 30
    assert any("blurry stretches" in w and "frames 20–29" in w for w in result.warnings)
    # Warnings summarise; the per-frame list is in "rejected".
    assert len(result.warnings) <= 4


def test_standstill_frames_are_near_duplicates(tmp_path: Path) -> None:
    offsets = [PAN_PX * k for k in range(20)] + [PAN_PX * 19] * 25
    offsets += [PAN_PX * (20 + k) for k in range(20)]
    path = write_video(tmp_path / "pause.mov", panning_frames(offsets))
    result = take(path, tmp_path / "out", max_video_frames=100)
    chosen, why = kept(result), reasons(result)
    assert len(set(chosen) & set(range(19, 45))) == 1
    assert set(range(19)) <= set(chosen)
    assert set(range(45, 65)) <= set(chosen)
    assert all(why[i].startswith("near-duplicate") for i in range(19, 45) if i not in chosen)
    summary = json.loads((tmp_path / "out" / "work" / "capture.json").read_text())["video"]
    assert summary["dropped"]["duplicate"] == 25  # frames 19-44 show one view
    assert summary["frames"] == 65


def test_frames_are_named_by_decode_index_and_resized(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", panning_frames([PAN_PX * k for k in range(30)]))
    result = take(path, tmp_path / "out", max_video_frames=10, max_image_px=80)
    names = [entry["name"] for entry in result.images]
    assert names == [video.frame_name(i) for i in kept(result)]
    assert all(re.fullmatch(r"frame_\d{6}\.jpg", name) for name in names)
    assert video.frame_name(7) == "frame_000007.jpg"
    assert 8 <= len(names) <= 10
    images_dir = tmp_path / "out" / "work" / "images"
    assert sorted(p.name for p in images_dir.iterdir()) == names
    for entry in result.images:
        assert (entry["width"], entry["height"]) == (80, 48)
        assert (entry["original_width"], entry["original_height"]) == (WIDTH, HEIGHT)
        assert entry["focal_px"] is None
    assert len(result.images) + len(result.rejected) == 30
    # The working copy is the frame itself (JPEG loss aside).
    frame = panning_frames([PAN_PX * k for k in range(30)])[kept(result)[0]]
    copy = cv2.cvtColor(cv2.imread(str(images_dir / names[0])), cv2.COLOR_BGR2RGB)
    expected = cv2.resize(frame, (80, 48), interpolation=cv2.INTER_AREA)
    assert np.abs(copy.astype(int) - expected).mean() < 12


@pytest.mark.parametrize("rotation_deg", [90, -90, 180])
def test_rotation_of_phone_videos_is_honoured(tmp_path: Path, rotation_deg: int) -> None:
    frames = panning_frames([PAN_PX * k for k in range(12)])
    for frame in frames:
        frame[:, :16] = (255, 0, 0)  # the stored frame's left edge is red
    path = write_video(tmp_path / "phone.mp4", frames, rotation_deg=rotation_deg)
    result = take(path, tmp_path / "out")
    entry = result.images[0]
    turned = rotation_deg % 180 != 0
    assert (entry["width"], entry["height"]) == ((HEIGHT, WIDTH) if turned else (WIDTH, HEIGHT))
    copy = cv2.cvtColor(
        cv2.imread(str(tmp_path / "out" / "work" / "images" / entry["name"])), cv2.COLOR_BGR2RGB
    )
    # Turned counter-clockwise by 90° the left edge ends at the bottom; clockwise, at the top.
    edge = {90: copy[-8:], -90: copy[:8], 180: copy[:, -8:]}[rotation_deg]
    assert edge[..., 0].mean() > 200
    assert edge[..., 2].mean() < 60
    capture_info = json.loads((tmp_path / "out" / "work" / "capture.json").read_text())
    assert capture_info["video"]["rotation_deg"] == rotation_deg % 360


def test_damaged_videos_are_refused_clearly(tmp_path: Path) -> None:
    good = write_video(tmp_path / "good.mp4", panning_frames([PAN_PX * k for k in range(24)]))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])  # an interrupted upload
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(ftyp(b"isom", b"isom") + bytes(range(256)) * 8)
    text = tmp_path / "notes.mov"
    text.write_text("not a video at all")
    for path in (cut, junk, text):
        with pytest.raises(InputError, match=rf"{path.name} is not a readable video.*again"):
            take(path, tmp_path / f"out_{path.stem}")
        assert not (tmp_path / f"out_{path.stem}" / "work" / "capture.json").exists()


def test_a_video_without_pictures_is_refused(tmp_path: Path) -> None:
    import av

    path = tmp_path / "voice.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        samples = np.zeros((1, 1024), np.float32)
        for _ in range(8):
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate = 16000
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    with pytest.raises(InputError, match=r"voice\.mp4 holds no video picture"):
        take(path, tmp_path / "out")


def test_a_video_where_the_camera_stands_still_is_refused(tmp_path: Path) -> None:
    path = write_video(tmp_path / "tripod.mp4", panning_frames([0] * 20))
    with pytest.raises(CaptureError, match=r"tripod\.mp4: the camera hardly moves.*walk slowly"):
        take(path, tmp_path / "out")


def test_too_many_frames_are_refused_while_decoding(tmp_path: Path) -> None:
    path = write_video(tmp_path / "long.mp4", panning_frames([PAN_PX * k for k in range(12)]))
    with pytest.raises(InputError, match=r"long\.mp4 has more than 10 frames.*trim"):
        take(path, tmp_path / "out", max_decoded_frames=10)
    with pytest.raises(InputError, match="megapixel limit"):
        take(path, tmp_path / "out", max_pixels=WIDTH * HEIGHT - 1)


def test_a_video_inside_a_folder_of_photos_is_rejected_with_advice(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for source in sorted((SAMPLE_CAPTURES_DIR / "cereal_box" / "images").iterdir())[:3]:
        shutil.copy(source, photos / source.name)
    write_video(photos / "walkaround.mp4", panning_frames([0, 3, 6]))
    result = take(photos, tmp_path / "out")
    assert len(result.images) == 3
    assert result.rejected == [
        {
            "image": "walkaround.mp4",
            "reason": "a video (MP4): send a video on its own, not in a folder or zip with photos",
        }
    ]


# -- synth --video ------------------------------------------------------------------------------


def test_synth_video_is_a_capture_with_truth_for_every_frame(tmp_path: Path) -> None:
    options = synth.SynthOptions(video=True, video_frames=48, size_px=128, novel_views=1)
    result = synth.run("cereal_box", tmp_path / "capture", options)
    video_path = tmp_path / "capture" / "video.mp4"
    assert not (tmp_path / "capture" / "images").exists()
    truth = read_cameras_json(tmp_path / "capture" / "truth" / "cameras.json")
    assert [camera.name for camera in truth] == [video.frame_name(i) for i in range(48)]
    assert len(list((tmp_path / "capture" / "truth" / "masks").glob("frame_*.png"))) == 48
    # One continuous orbit: two turns, neighbouring frames close together.
    centers = np.array([camera.center for camera in truth])
    steps = np.linalg.norm(np.diff(centers, axis=0), axis=1)
    assert steps.max() < 2.0 * np.median(steps)
    azimuth = np.unwrap(np.arctan2(centers[:, 0], centers[:, 2]))
    assert abs(azimuth[-1] - azimuth[0]) == pytest.approx(2 * np.pi * 47 / 24, rel=0.02)
    assert result.cameras[0].width == 128

    captured = take(video_path, tmp_path / "out", max_video_frames=24)
    names = [entry["name"] for entry in captured.images]
    assert 16 <= len(names) <= 24
    assert set(names) <= {camera.name for camera in truth}
    assert not any(r["reason"].startswith("blurry") for r in captured.rejected)
    assert captured.images[0]["width"] == 128


def test_synth_blurred_stretch_of_a_video_is_dropped(tmp_path: Path) -> None:
    blurred = range(16, 28)
    options = synth.SynthOptions(
        video=True, video_frames=48, size_px=320, novel_views=1, blur_frames=(16, 27)
    )
    synth.run("cereal_box", tmp_path / "capture", options)
    captured = take(tmp_path / "capture" / "video.mp4", tmp_path / "out", max_video_frames=24)
    why = reasons(captured)
    # Every blurred frame is dropped; by the Laplacian alone, measured against the video's
    # median, 9 of the 12 passed (the smear is 7 px at this size).
    assert all(why[i].startswith("blurry") for i in blurred)
    assert not any(r.startswith("blurry") for i, r in why.items() if i not in blurred)
    assert any("blurry stretches" in w and "frames 16" in w for w in captured.warnings)


def test_synth_blur_frames_smears_only_those_photos_along_the_rows(tmp_path: Path) -> None:
    sharp = synth.SynthOptions(views=4, size_px=200, novel_views=1, supersample=1)
    synth.run("cereal_box", tmp_path / "sharp", sharp)
    synth.run("cereal_box", tmp_path / "blurred", replace(sharp, blur_frames=(1, 2)))

    def photo(capture: str, index: int) -> np.ndarray:
        path = tmp_path / capture / "images" / f"img_{index:03d}.jpg"
        return cv2.imread(str(path), cv2.IMREAD_GRAYSCALE).astype(np.float32)

    for index in (0, 3):
        assert np.abs(photo("sharp", index) - photo("blurred", index)).max() <= 1
    for index in (1, 2):
        before, after = photo("sharp", index), photo("blurred", index)
        across = np.abs(np.diff(after, axis=1)).mean() / np.abs(np.diff(before, axis=1)).mean()
        down = np.abs(np.diff(after, axis=0)).mean() / np.abs(np.diff(before, axis=0)).mean()
        # smeared along the rows: vertical edges soften, horizontal ones much less
        assert across < 0.7
        assert down > across + 0.1


def test_motion_blur_smears_along_its_direction_and_keeps_brightness() -> None:
    edge = np.zeros((21, 21, 3), np.uint8)
    edge[:, 11:] = 200  # a vertical edge
    smeared = synth.motion_blur(edge, 5)
    assert smeared[10, 8:14, 0].tolist() == [0, 40, 80, 120, 160, 200]
    assert np.array_equal(synth.motion_blur(edge, 5, angle_deg=90), edge)
    assert np.array_equal(synth.motion_blur(edge, 1), edge)


def test_synth_refuses_blur_frames_outside_the_capture() -> None:
    with pytest.raises(InputError, match="--blur-frames 20-30"):
        synth.run("cereal_box", Path("unused"), synth.SynthOptions(views=24, blur_frames=(20, 30)))
