"""Videos as captures: recognise the container, pick sharp, well-spaced frames, decode them."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from recon.errors import InputError

logger = logging.getLogger(__name__)

# Major brands of ISO base media files that are videos. QuickTime ("qt  ") is MOV; the rest
# (ISO, MPEG-4, 3GPP from older Android phones, DASH segments, Sony XAVC) play as MP4.
_MOV_BRANDS = {b"qt  "}
_MP4_BRANDS = {
    b"isom", b"iso2", b"iso3", b"iso4", b"iso5", b"iso6", b"iso7", b"iso8", b"iso9",
    b"mp41", b"mp42", b"mp71", b"avc1", b"hvc1", b"av01", b"M4V ", b"M4VH", b"M4VP", b"mmp4",
    b"dash", b"msdh", b"3gp4", b"3gp5", b"3gp6", b"3gg6", b"3g2a", b"MSNV", b"XAVC", b"f4v ",
}  # fmt: skip
# Major brands of ISO media that are still images (recon.capture's HEIC, AVIF) or camera RAW
# (Canon CR3): never a video, whatever compatible brands they list.
_STILL_BRANDS = {
    b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1",
    b"avif", b"avis", b"crx ",
}  # fmt: skip
# QuickTime files from before `ftyp` start with one of these atoms.
_OLD_QUICKTIME_ATOMS = {b"moov", b"mdat", b"wide", b"pnot"}
_EBML_MAGIC = b"\x1a\x45\xdf\xa3"  # Matroska and WebM

SUPPORTED_VIDEO = "MP4, MOV or WebM"

# Sharpness is measured on frames this long (px): small enough to be quick, large enough that
# a few pixels of motion blur in a 1080p frame still show. Motion is measured at half of it.
_ANALYSIS_PX = 640
_MIN_TRACKS = 12  # fewer tracked corners than this: motion from phase correlation instead
_MIN_FRAME_PX = 64  # shorter sides than this are not a product video
_SHARP_PERCENTILE = 90  # "the sharp frames around it": this percentile of their sharpness
_GLOBAL_SHARE = 0.6  # ... and at least this share of the whole video's median sharpness
_STILL_MOTION = 1e-3  # × the long side: less than this from the previous frame is no motion


def sniff_video_format(head: bytes) -> str | None:
    """The video container of a file from its first (at least 12) bytes: "MP4", "MOV", "WEBM",
    "MKV", or None (HEIC and AVIF photos, which share MP4's box structure, are not videos)."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        major = head[8:12]
        if major in _STILL_BRANDS:
            return None
        if major in _MOV_BRANDS:
            return "MOV"
        if major in _MP4_BRANDS:
            return "MP4"
        # An unfamiliar major brand: the compatible brands (after the minor version) decide.
        box_size = int.from_bytes(head[:4], "big")
        compatible = head[16 : min(len(head), box_size)]
        brands = {compatible[i : i + 4] for i in range(0, len(compatible) - 3, 4)}
        if brands & _STILL_BRANDS:
            return None
        if brands & _MOV_BRANDS:
            return "MOV"
        if brands & _MP4_BRANDS:
            return "MP4"
        return None
    if len(head) >= 8 and head[4:8] in _OLD_QUICKTIME_ATOMS:
        return "MOV"
    if head.startswith(_EBML_MAGIC):
        # The DocType sits in the EBML header, within the first 40 or so bytes.
        return "WEBM" if b"webm" in head[:64] else "MKV"
    return None


def frame_name(index: int) -> str:
    """The working name of a video frame: its 0-based index in decode order, six digits."""
    return f"frame_{index:06d}.jpg"


# -- decoding ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecodedFrame:
    index: int  # 0-based, in the order the decoder returns frames
    time_s: float | None  # presentation time
    frame: Any  # the av.VideoFrame, as stored (not yet turned upright)
    rotation_deg: int  # counter-clockwise turn that shows it upright: 0, 90, 180 or 270
    damaged: bool  # the decoder flagged it as corrupt


@dataclass(frozen=True)
class VideoInfo:
    fps: float  # average frame rate (30 when the file does not say)
    declared_frames: int  # frame count in the container's header; 0 when unknown
    width: int  # of the stored frames, before rotation
    height: int


def decode_frames(
    path: Path, *, max_frames: int, max_pixels: int
) -> tuple[VideoInfo, Iterator[DecodedFrame]]:
    """Open `path` and decode its first video stream frame by frame.

    Refuses (InputError) what cannot be read, a file with no video stream, frames over
    `max_pixels` and videos with more than `max_frames` frames, checked while decoding so a
    file whose header lies is stopped all the same.
    """
    import av

    name = Path(path).name
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"{name} is not a readable video (damaged or an incomplete upload: {exc}); "
            f"export it from the phone again as {SUPPORTED_VIDEO}"
        ) from None
    try:
        if not container.streams.video:
            raise InputError(
                f"{name} holds no video picture (audio only?): film the product, or send photos"
            )
        stream = container.streams.video[0]
        width, height = stream.codec_context.width, stream.codec_context.height
        _check_frame_size(name, width, height, max_pixels)
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate and 0 < float(rate) < 1000 else 30.0
        info = VideoInfo(
            fps=fps, declared_frames=int(stream.frames or 0), width=width, height=height
        )
        stream.thread_type = "AUTO"
        # Older files carry the turn as a `rotate` tag (degrees clockwise); newer ones as a
        # display matrix, which PyAV reads back per frame as degrees counter-clockwise.
        tag_rotation = -_int_or_zero(stream.metadata.get("rotate"))
    except BaseException:
        container.close()
        raise
    return info, _frames(container, stream, name, tag_rotation, max_frames, max_pixels)


def _frames(
    container: Any, stream: Any, name: str, tag_rotation: int, max_frames: int, max_pixels: int
) -> Iterator[DecodedFrame]:
    import av

    with container:
        index = -1
        try:
            for index, frame in enumerate(container.decode(stream)):
                if index >= max_frames:
                    raise InputError(
                        f"{name} has more than {max_frames} frames (about "
                        f"{max_frames / 30 / 60:.0f} minutes at 30 fps): trim it to one slow "
                        "orbit of the product (30–90 s)"
                    )
                _check_frame_size(name, frame.width, frame.height, max_pixels)
                rotation = getattr(frame, "rotation", None)
                rotation = rotation or tag_rotation
                yield DecodedFrame(
                    index=index,
                    time_s=frame.time,
                    frame=frame,
                    rotation_deg=round(rotation / 90) % 4 * 90,
                    damaged=bool(getattr(frame, "is_corrupt", False)),
                )
        except av.FFmpegError as exc:
            raise InputError(
                f"{name} is damaged after frame {index + 1} ({exc}); export or upload it again"
            ) from None


def _check_frame_size(name: str, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise InputError(
            f"{name}: frames of {width} × {height} px are over the {max_pixels / 1e6:.3g} "
            "megapixel limit; export the video at 4K or less"
        )
    if min(width, height) < _MIN_FRAME_PX:
        raise InputError(
            f"{name}: frames of {width} × {height} px are too small for a model; film at "
            "720p or more"
        )


def _int_or_zero(value: object) -> int:
    try:
        return int(float(str(value)))
    except ValueError:
        return 0


def upright_rgb(decoded: DecodedFrame) -> np.ndarray:
    """(h, w, 3) uint8 RGB of a decoded frame, turned as the player would show it."""
    rgb = decoded.frame.to_ndarray(format="rgb24")
    return np.ascontiguousarray(np.rot90(rgb, k=decoded.rotation_deg // 90))


# -- measuring frames -------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameMeasures:
    """What the analysis pass learnt about every frame of a video, in decode order."""

    info: VideoInfo
    sharpness: np.ndarray  # (n,) frame_sharpness of a grey frame _ANALYSIS_PX long
    motion: np.ndarray  # (n,) image motion since the previous frame, × the long side; 0 first
    damaged: np.ndarray  # (n,) bool
    times_s: np.ndarray  # (n,) presentation times (NaN where unknown)
    shown_size: tuple[int, int]  # (width, height) of the frames as shown (after rotation)
    rotation_deg: int  # of the first frame


def measure_frames(
    path: Path,
    *,
    max_frames: int,
    max_pixels: int,
    progress: Callable[[float], None] | None = None,
) -> FrameMeasures:
    """Decode every frame once at analysis size: sharpness, and motion from the frame before.

    Only two small grey frames are held at a time, so memory does not grow with the video.
    """
    info, frames = decode_frames(path, max_frames=max_frames, max_pixels=max_pixels)
    sharpness, motion, damaged, times = [], [], [], []
    previous: np.ndarray | None = None
    first_rotation, shown_size = 0, (info.width, info.height)
    for decoded in frames:
        frame = decoded.frame
        scale = min(1.0, _ANALYSIS_PX / max(frame.width, frame.height))
        width = max(2, round(frame.width * scale))
        height = max(2, round(frame.height * scale))
        grey = frame.reformat(
            width=width, height=height, format="gray", interpolation="AREA"
        ).to_ndarray()
        small = cv2.resize(grey, (width // 2, height // 2), interpolation=cv2.INTER_AREA)
        if decoded.index == 0:
            first_rotation = decoded.rotation_deg
            turned = decoded.rotation_deg in (90, 270)
            shown_size = (frame.height, frame.width) if turned else (frame.width, frame.height)
        sharpness.append(frame_sharpness(grey))
        same_shape = previous is not None and previous.shape == small.shape
        motion.append(image_motion(previous, small) if same_shape else 0.0)
        damaged.append(decoded.damaged)
        times.append(math.nan if decoded.time_s is None else float(decoded.time_s))
        previous = small
        if progress is not None and info.declared_frames:
            progress(min(1.0, (decoded.index + 1) / info.declared_frames))
    if not sharpness:
        raise InputError(
            f"{Path(path).name} holds no decodable frames (damaged or an incomplete upload); "
            "export or upload it again"
        )
    return FrameMeasures(
        info=info,
        sharpness=np.array(sharpness),
        motion=np.array(motion),
        damaged=np.array(damaged, dtype=bool),
        times_s=np.array(times),
        shown_size=shown_size,
        rotation_deg=first_rotation,
    )


def laplacian_variance(grey: np.ndarray) -> float:
    """Sharpness of a (h, w) uint8 image: the variance of its Laplacian (blur lowers it)."""
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def frame_sharpness(grey: np.ndarray) -> float:
    """Sharpness of a (h, w) uint8 video frame: the geometric mean of the variance of its
    Laplacian and the smaller of the variances of its second derivatives along the rows and
    along the columns.

    A camera swung sideways smears the picture along one direction only: the edges across it
    keep the Laplacian up (a cereal box's lines of print kept 27 % of it under a 19 px smear,
    passing the 25 % bar), while the second derivative along the smear all but vanishes (under
    1 %). The Laplacian half keeps the measure as steady as before over a product's plainer
    sides (the smaller direction alone fell to 0.28 of the sharp frames around it along a
    mustard bottle's orbit; the mean stays above 0.38), and defocus lowers both.
    """
    image = grey.astype(np.float32)
    along_rows = float(cv2.Sobel(image, cv2.CV_32F, 2, 0, ksize=3).var())
    along_columns = float(cv2.Sobel(image, cv2.CV_32F, 0, 2, ksize=3).var())
    return math.sqrt(laplacian_variance(grey) * min(along_rows, along_columns))


def image_motion(previous: np.ndarray, current: np.ndarray) -> float:
    """How far the picture moved between two (h, w) uint8 grey frames, × the long side.

    The 75th percentile of sparse optical flow (Lucas-Kanade on corners of `previous`): a
    product turning in front of a still backdrop moves only part of the picture, and the
    percentile still sees it, while a few bad tracks do not count. Plain frames with too few
    corners fall back to the global shift of phase correlation.
    """
    long_side = max(previous.shape)
    corners = cv2.goodFeaturesToTrack(
        previous, maxCorners=300, qualityLevel=0.01, minDistance=5, blockSize=5
    )
    if corners is not None and len(corners) >= _MIN_TRACKS:
        moved, status, _ = cv2.calcOpticalFlowPyrLK(
            previous, current, corners, None, winSize=(15, 15), maxLevel=3
        )
        tracked = status.ravel() == 1
        if tracked.sum() >= _MIN_TRACKS:
            shift = np.linalg.norm((moved - corners).reshape(-1, 2)[tracked], axis=1)
            return float(np.percentile(shift, 75)) / long_side
    window = cv2.createHanningWindow(previous.shape[::-1], cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(
        previous.astype(np.float32), current.astype(np.float32), window
    )
    return float(math.hypot(dx, dy)) / long_side


def orbit_path(motion: np.ndarray) -> np.ndarray:
    """(n,) distance travelled along the video in image motion (× the long side): the running
    sum of `motion`, with the jitter of a camera standing still counted as no motion."""
    return np.cumsum(np.where(motion >= _STILL_MOTION, motion, 0.0))


def relative_sharpness(
    sharpness: np.ndarray,
    damaged: np.ndarray,
    path: np.ndarray,
    window: float,
    blur_ratio: float = 0.25,
) -> np.ndarray:
    """(n,) each frame's sharpness over that of the sharp frames that show nearly the same view.

    The reference is the 90th percentile of the undamaged frames within `window` along the
    `path` (and at least the two frames either side), and never below 60 % of the video's
    median frame. Relative, because the Laplacian also counts how much print the product shows
    from that side (a box's narrow side had a third of its front's, a mustard bottle's side 0.4
    of its label's, changing gradually along the orbit), and because a video that is soft all
    through should keep its best frames, not lose them all to a fixed threshold.

    A blurred stretch longer than the window has only blurred frames around its middle, and the
    median let one through (a second of blur over the product's busiest side: a fifth of the
    median's Laplacian, so 0.33 against the floor). Blur starts and ends abruptly, where the
    window still holds sharp frames, so the frames there fall under `blur_ratio`; their
    reference is carried on into the stretch, frame by frame from both ends, for as long as the
    frames stay under `blur_ratio` of it. A plainer side is reached gradually and keeps its
    own reference.
    """
    count = len(sharpness)
    undamaged = sharpness[~damaged]
    floor = _GLOBAL_SHARE * float(np.median(undamaged)) if len(undamaged) else 0.0
    low = np.minimum(np.searchsorted(path, path - window, side="left"), np.arange(count) - 2)
    high = np.maximum(np.searchsorted(path, path + window, side="right"), np.arange(count) + 3)
    reference = np.zeros(count)
    for index in range(count):
        start, stop = max(0, int(low[index])), min(count, int(high[index]))
        around = sharpness[start:stop][~damaged[start:stop]]
        local = float(np.percentile(around, _SHARP_PERCENTILE)) if len(around) else 0.0
        reference[index] = max(local, floor)
    carried = reference.copy()
    for order in (range(1, count), range(count - 2, -1, -1)):
        inherited = reference.copy()
        step = 1 if order.step > 0 else -1
        for index in order:
            before = index - step
            bar = blur_ratio * inherited[before]
            if not damaged[before] and sharpness[before] < bar and sharpness[index] < bar:
                inherited[index] = max(inherited[index], inherited[before])
        carried = np.maximum(carried, inherited)
    return np.divide(sharpness, carried, out=np.ones(count), where=carried > 0)


# -- choosing frames --------------------------------------------------------------------------


@dataclass(frozen=True)
class FrameChoice:
    chosen: list[int]  # frame indices kept, ascending
    rejected: dict[int, str]  # frame index -> why it was dropped
    counts: dict[str, int]  # rejections by kind: damaged, blurry, duplicate, spacing
    path_length: float  # total image motion along the video, × the long side
    spacing: float  # image motion between kept frames aimed at, × the long side


def choose_frames(
    relative: np.ndarray,
    motion: np.ndarray,
    damaged: np.ndarray,
    *,
    max_count: int,
    min_motion: float,
    blur_ratio: float,
) -> FrameChoice:
    """Pick up to `max_count` sharp frames spread evenly along the camera's path.

    The path is the running sum of `motion`; it is cut into equal stretches (never shorter
    than `min_motion`) and each stretch gives its sharpest frame, taken from its middle half
    when one there is sharp enough, so kept frames are not bunched at stretch borders. Every
    other frame gets a reason: damaged, blurry (relative sharpness under `blur_ratio`), a
    near-duplicate (within `min_motion` of a kept frame: dropped however many frames were
    wanted), or covered by the kept frames around it.
    """
    count = len(relative)
    path = orbit_path(motion)
    length = float(path[-1]) if count else 0.0
    spacing = max(length / max(max_count, 1), min_motion)
    stretches = max(1, math.ceil(length / spacing - 1e-9))
    position = np.minimum(path / spacing, stretches - 1e-9)
    usable = ~damaged & (relative >= blur_ratio)
    chosen = []
    for stretch in range(stretches):
        members = np.flatnonzero(usable & (np.floor(position) == stretch))
        if len(members) == 0:
            continue
        offset = np.abs(position[members] - stretch - 0.5)
        middle = members[offset <= 0.25]
        pool = middle if len(middle) else members
        chosen.append(int(pool[np.argmax(relative[pool])]))
    chosen.sort()

    rejected: dict[int, str] = {}
    counts = {"damaged": 0, "blurry": 0, "duplicate": 0, "spacing": 0}
    kept = np.array(chosen, dtype=int)
    for index in sorted(set(range(count)) - set(chosen)):
        if damaged[index]:
            kind, reason = "damaged", "damaged frame (the decoder flagged it as corrupt)"
        elif relative[index] < blur_ratio:
            kind = "blurry"
            reason = (
                f"blurry: {relative[index]:.0%} as sharp as the sharp frames around it "
                f"(needs {blur_ratio:.0%}); move the camera more slowly or add light"
            )
        elif len(kept) == 0:
            kind, reason = "spacing", "no frame of the video was kept"
        else:
            nearest = int(kept[np.argmin(np.abs(path[kept] - path[index]))])
            moved = abs(path[nearest] - path[index])
            if index > 0 and motion[index] < _STILL_MOTION:
                kind = "duplicate"
                reason = f"near-duplicate of {frame_name(index - 1)}: the camera did not move"
            elif moved < min_motion:
                kind = "duplicate"
                reason = (
                    f"near-duplicate of {frame_name(nearest)}: the view moved "
                    f"{moved:.1%} of the frame from it (kept frames differ by {min_motion:.0%})"
                )
            else:
                kind = "spacing"
                reason = "not needed: " + _neighbours_text(kept, index)
        counts[kind] += 1
        rejected[index] = reason
    return FrameChoice(chosen, rejected, counts, length, spacing)


def _neighbours_text(kept: np.ndarray, index: int) -> str:
    after = int(np.searchsorted(kept, index))
    names = [frame_name(int(kept[i])) for i in (after - 1, after) if 0 <= i < len(kept)]
    if len(names) == 1:
        return f"the kept frame {names[0]} covers this part of the orbit"
    return f"the kept frames {names[0]} and {names[1]} around it cover this part of the orbit"


def blurry_runs(rejected: dict[int, str], shown: int = 5) -> list[tuple[int, int]]:
    """The longest runs (first, last frame index) of consecutive blurry frames, in order."""
    runs: list[tuple[int, int]] = []
    for index in sorted(i for i, why in rejected.items() if why.startswith("blurry")):
        if runs and runs[-1][1] == index - 1:
            runs[-1] = (runs[-1][0], index)
        else:
            runs.append((index, index))
    longest = sorted(runs, key=lambda run: run[0] - run[1])[:shown]
    return sorted(longest)


# -- writing ------------------------------------------------------------------------------------


class H264Writer:
    """``with H264Writer(path, w, h, fps) as out: out.write(rgb)`` — an MP4 of (h, w, 3) uint8
    RGB frames. `rotation_deg` (counter-clockwise) is stored as a display matrix, as phones do
    when held upright."""

    def __init__(
        self,
        path: Path,
        width: int,
        height: int,
        fps: float,
        *,
        crf: int = 18,
        rotation_deg: int = 0,
    ) -> None:
        if width % 2 or height % 2:
            raise InputError(f"H.264 needs even frame sizes, not {width} × {height}")
        self.path, self.width, self.height = Path(path), width, height
        self.fps, self.crf, self.rotation_deg = fps, crf, rotation_deg

    def __enter__(self) -> H264Writer:
        import fractions

        import av

        self._container = av.open(str(self.path), mode="w", format="mp4")
        rate = fractions.Fraction(self.fps).limit_denominator(1001)
        self._stream = self._container.add_stream(
            "libx264", rate=rate, options={"crf": str(self.crf), "preset": "fast"}
        )
        self._stream.width, self._stream.height = self.width, self.height
        self._stream.pix_fmt = "yuv420p"
        if self.rotation_deg:
            self._stream.set_display_rotation(self.rotation_deg)
        return self

    def write(self, rgb: np.ndarray) -> None:
        import av

        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        self._container.mux(self._stream.encode(frame))

    def __exit__(self, exc_type: Any, exc: Any, traceback: Any) -> None:
        try:
            if exc_type is None:
                self._container.mux(self._stream.encode(None))
        finally:
            self._container.close()
