"""The printed scale mat: a ChArUco board to print (PDF), and finding it in registered photos.

The mat gives a reconstruction its real size and its ground: each chessboard corner of the
board seen in two or more photos is triangulated from the SfM cameras, and the similarity that
maps the board's known layout (metres) onto those points gives metres per SfM unit and the mat's
plane, on which the product stands.

Every paper size has one fixed board, and the boards use disjoint marker ids, so the markers
found in a photo tell which board it is: detection needs nothing from the user.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from recon.cameras import Camera
from recon.errors import InputError
from recon.geometry import Similarity, fit_similarity
from recon.textured_mesh import Primitive

logger = logging.getLogger(__name__)


class Paper(StrEnum):
    A4 = "a4"
    LETTER = "letter"


@dataclass(frozen=True)
class MatLayout:
    """One paper size's page: its board and where the board lies on the page."""

    paper: Paper
    page_mm: tuple[float, float]  # width, height
    squares: tuple[int, int]  # columns, rows of the chessboard (odd rows: no legacy ambiguity)
    square_mm: float
    marker_mm: float
    first_id: int  # the board's markers are first_id, first_id + 1, ...
    board_top_mm: float  # distance from the page's top edge to the board's

    @property
    def marker_ids(self) -> np.ndarray:
        """(k,) the ids of the board's markers (one in every white square)."""
        columns, rows = self.squares
        return self.first_id + np.arange(columns * rows // 2)

    @property
    def board_mm(self) -> tuple[float, float]:
        return self.squares[0] * self.square_mm, self.squares[1] * self.square_mm

    @property
    def board_left_mm(self) -> float:
        return (self.page_mm[0] - self.board_mm[0]) / 2

    @property
    def corner_count(self) -> int:
        """Chessboard corners: ids 0 .. corner_count - 1, as OpenCV numbers them."""
        return (self.squares[0] - 1) * (self.squares[1] - 1)

    def page_corners_m(self) -> np.ndarray:
        """(4, 2) the page's corners in board coordinates (metres, as `point_positions_m`: x
        along the columns, y down the rows), clockwise from the top-left."""
        left, top = -self.board_left_mm / 1000.0, -self.board_top_mm / 1000.0
        right, bottom = left + self.page_mm[0] / 1000.0, top + self.page_mm[1] / 1000.0
        return np.array([[left, top], [right, top], [right, bottom], [left, bottom]])

    def point_positions_m(self, ids: np.ndarray) -> np.ndarray:
        """(n, 3) board positions of points `ids`, in metres: x along the board's columns, y
        down its rows (from the page's top), z = 0 (into the paper).

        Ids below `corner_count` are chessboard corners; MARKER_POINT_ID + 4 k + j is corner j
        (clockwise from top-left, as OpenCV reports them) of the board's k-th marker.
        """
        ids = np.asarray(ids, dtype=np.int64)
        columns = self.squares[0]
        square_m, marker_m = self.square_mm / 1000.0, self.marker_mm / 1000.0
        positions = np.zeros((len(ids), 3))
        chess = ids < self.corner_count
        positions[chess, 0] = (ids[chess] % (columns - 1) + 1) * square_m
        positions[chess, 1] = (ids[chess] // (columns - 1) + 1) * square_m
        marker, corner = np.divmod(ids[~chess] - MARKER_POINT_ID, 4)
        # Markers sit in the white squares, (row + column) odd, numbered row by row.
        white = np.array([(r, c) for r in range(self.squares[1]) for c in range(columns)
                          if (r + c) % 2 == 1])  # fmt: skip
        row, column = white[marker, 0], white[marker, 1]
        inset = (square_m - marker_m) / 2
        positions[~chess, 0] = column * square_m + inset + marker_m * np.isin(corner, (1, 2))
        positions[~chess, 1] = row * square_m + inset + marker_m * np.isin(corner, (2, 3))
        return positions


# Markers of 4×4 bits are the easiest to read when small and slanted (the low photo ring sees
# the mat at a grazing angle); 50 codes leave the most bits between any two.
DICTIONARY = cv2.aruco.DICT_4X4_50
LAYOUTS: dict[Paper, MatLayout] = {
    Paper.A4: MatLayout(
        paper=Paper.A4, page_mm=(210.0, 297.0), squares=(5, 7), square_mm=36.0,
        marker_mm=27.0, first_id=0, board_top_mm=10.0,
    ),
    Paper.LETTER: MatLayout(
        paper=Paper.LETTER, page_mm=(215.9, 279.4), squares=(5, 7), square_mm=34.0,
        marker_mm=25.5, first_id=20, board_top_mm=8.0,
    ),
}  # fmt: skip
RULER_MM = 100.0
MARKER_POINT_ID = 1000  # point ids from here on are marker corners (MatLayout.point_positions_m)
PDF_PX_PER_MM = 20  # 508 dpi: every square and marker cell is a whole number of pixels


def layout_for(paper: Paper | str) -> MatLayout:
    try:
        return LAYOUTS[Paper(str(paper).lower())]
    except ValueError as error:
        raise InputError(
            f"unknown paper {paper!r}: the mat is made for {', '.join(p.value for p in Paper)}"
        ) from error


def charuco_board(layout: MatLayout) -> cv2.aruco.CharucoBoard:
    """The OpenCV board of a layout (sizes in metres)."""
    return cv2.aruco.CharucoBoard(
        layout.squares,
        layout.square_mm / 1000.0,
        layout.marker_mm / 1000.0,
        cv2.aruco.getPredefinedDictionary(DICTIONARY),
        layout.marker_ids.astype(np.int32),
    )


# -- the printed page --------------------------------------------------------------------------
def render_page(paper: Paper | str, *, px_per_mm: float = PDF_PX_PER_MM) -> np.ndarray:
    """(h, w) uint8 image of the whole page (white paper, black ink) at `px_per_mm`: the board,
    a 10 cm ruler to check the print's scale, and short instructions."""
    layout = layout_for(paper)
    width, height = (round(side * px_per_mm) for side in layout.page_mm)
    page = Image.new("L", (width, height), 255)
    board_w, board_h = (round(side * px_per_mm) for side in layout.board_mm)
    board = charuco_board(layout).generateImage((board_w, board_h), marginSize=0, borderBits=1)
    left, top = round(layout.board_left_mm * px_per_mm), round(layout.board_top_mm * px_per_mm)
    page.paste(Image.fromarray(board), (left, top))

    draw = ImageDraw.Draw(page)

    def mm(value: float) -> float:
        return value * px_per_mm

    # The ruler: exactly RULER_MM between the outer edges of its end ticks' centres.
    ruler_y = layout.board_top_mm + layout.board_mm[1] + 7.0
    x0 = layout.board_left_mm
    line = max(1, round(mm(0.4)))
    draw.line([(mm(x0), mm(ruler_y)), (mm(x0 + RULER_MM), mm(ruler_y))], fill=0, width=line)
    for cm in range(int(RULER_MM // 10) + 1):
        tick = 3.0 if cm in (0, RULER_MM // 10) else 1.5
        x = mm(x0 + 10.0 * cm)
        draw.line([(x, mm(ruler_y - tick)), (x, mm(ruler_y))], fill=0, width=line)
    small = ImageFont.load_default(size=max(6, round(mm(3.0))))
    text = ImageFont.load_default(size=max(6, round(mm(2.8))))
    draw.text((mm(x0 + RULER_MM + 3.0), mm(ruler_y - 3.2)), "10 cm", fill=0, font=small)
    side = f"{layout.square_mm:g} mm squares, ArUco 4x4 ids {layout.marker_ids[0]}-"
    side += f"{layout.marker_ids[-1]}"
    lines = (
        "The line above must measure exactly 10 cm. If it does not, print again at 100 %",
        '("Actual size", not "Fit to page"): the model\'s size is read from this mat.',
        f"recon scale mat, {layout.paper.value.upper()}: {side}.",
        "Lay it flat, stand the product in the middle, keep the mat in the photos all around.",
    )
    for index, sentence in enumerate(lines):
        draw.text((mm(x0), mm(ruler_y + 2.5 + 4.0 * index)), sentence, fill=0, font=text)
    return np.asarray(page)


def write_mat_pdf(path: Path | str, paper: Paper | str = Paper.A4) -> Path:
    """Write the printable mat as a one-page PDF whose page is exactly the paper's size."""
    path = Path(path)
    if path.suffix.lower() != ".pdf":
        raise InputError(f"{path}: the mat is written as a PDF; give a file name ending in .pdf")
    if not path.parent.is_dir():
        raise InputError(f"{path.parent} does not exist: create the folder first")
    page = render_page(paper, px_per_mm=PDF_PX_PER_MM)
    # Bilevel: stored losslessly (CCITT G4), so edges print as sharp as the printer allows.
    image = Image.fromarray(page).point(lambda value: 255 if value >= 128 else 0).convert("1")
    image.save(path, "PDF", resolution=PDF_PX_PER_MM * 25.4, title="recon scale mat")
    return path


def mat_primitive(
    paper: Paper | str, *, yaw_deg: float = 0.0, px_per_mm: float = 8.0
) -> tuple[Primitive, np.ndarray]:
    """The printed page lying flat on y = 0, its board centred on the origin, turned `yaw_deg`
    about +Y (page top towards -Z at 0°); and the (4, 4) transform from board coordinates
    (metres, as `MatLayout.point_positions_m`) to that frame."""
    layout = layout_for(paper)
    page = render_page(layout.paper, px_per_mm=px_per_mm)
    # Board coordinates (x right, y down, metres) lie on the ground as x → +X, y → +Z, with
    # the board's centre at the origin.
    centre = np.array(layout.board_mm) / 2000.0
    corners_page = layout.page_corners_m() - centre
    yaw = math.radians(yaw_deg)
    turn = np.array(
        [[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]]
    )
    vertices = np.column_stack([corners_page[:, 0], np.zeros(4), corners_page[:, 1]]) @ turn.T
    primitive = Primitive(
        vertices=vertices,
        faces=np.array([[0, 2, 1], [0, 3, 2]]),
        normals=np.tile([0.0, 1.0, 0.0], (4, 1)),
        uv=np.array([[0, 1], [1, 1], [1, 0], [0, 0]], dtype=np.float64),  # v = 0: image bottom
        texture=np.repeat(page[..., None], 3, axis=2),
    )
    # Board frame: x along the page's x, y along its y (→ +Z), z into the paper (→ -Y).
    board_to_page = np.eye(4)
    board_to_page[:3, :3] = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=np.float64)
    board_to_page[:3, 3] = [-centre[0], 0.0, -centre[1]]
    place = np.eye(4)
    place[:3, :3] = turn
    return primitive, place @ board_to_page


# -- finding the mat ----------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class MatOptions:
    """How the mat is found and when it is trusted."""

    min_views: int = 2  # a corner must be seen in this many photos to be triangulated
    max_reprojection_px: float = 2.0  # a sighting further than this from its triangulated corner
    # (in the photo) is dropped; × long side / 1000 for photos larger than 1000 px
    min_ray_angle_deg: float = 2.0  # the sightings of a corner must span this angle (depth)
    min_points: int = 8  # triangulated board points needed, spread over the board
    max_residual_rel: float = 0.03  # RMS distance to the fitted board layout, × square size


@dataclass(frozen=True)
class MatDetection:
    """The board in one photo: its chessboard corners, and the corners of its markers (more
    points to go on where the product hides most of the board)."""

    image: str
    paper: Paper
    point_ids: np.ndarray  # (n,) int, as MatLayout.point_positions_m numbers them
    points_px: np.ndarray  # (n, 2) float pixel positions (OpenCV pixel-centre convention)
    markers: int  # markers read


@dataclass(frozen=True)
class MatFit:
    """The mat in the SfM frame."""

    paper: Paper
    metres_per_unit: float
    board_to_world: Similarity  # board metres -> SfM frame
    plane: np.ndarray  # (4,) [n, d], n·x + d = 0 on the mat's top, n: unit, towards the cameras
    point_ids: np.ndarray  # (n,) board points used (MatLayout.point_positions_m)
    points_world: np.ndarray  # (n, 3) their triangulated positions (SfM frame)
    residual_m: float  # RMS distance between the triangulated points and the fitted layout
    reprojection_px: float  # mean distance between sightings and triangulated points
    photos: list[str]  # photos whose sightings were used
    # Photos that see the mat far from where the fit puts it: their SfM poses are suspect.
    disagreeing: list[str] = field(default_factory=list)

    @property
    def up(self) -> np.ndarray:
        return self.plane[:3]

    def page_corners(self) -> np.ndarray:
        """(4, 3) the printed page's corners in the SfM frame, round its edge."""
        corners = LAYOUTS[self.paper].page_corners_m()
        return self.board_to_world.apply(np.column_stack([corners, np.zeros(4)]))


@dataclass(frozen=True)
class MatFinding:
    """What the photos showed of the mat."""

    seen_in: list[str] = field(default_factory=list)  # photos where its board was read
    fit: MatFit | None = None  # None: no mat, or too little of it to measure
    problem: str = ""  # why a mat that was seen gives no scale

    def to_json(self) -> dict:
        info: dict = {"found": self.fit is not None, "seen_in": self.seen_in}
        if self.problem:
            info["problem"] = self.problem
        if (fit := self.fit) is not None:
            layout = LAYOUTS[fit.paper]
            chess = fit.point_ids < layout.corner_count
            info.update(
                paper=fit.paper.value,
                square_mm=layout.square_mm,
                metres_per_unit=fit.metres_per_unit,
                points=len(fit.point_ids),
                chessboard_corners=int(chess.sum()),
                marker_corners=int((~chess).sum()),
                photos=fit.photos,
                residual_mm=round(fit.residual_m * 1000.0, 4),
                reprojection_px=round(fit.reprojection_px, 4),
                photos_disagreeing=fit.disagreeing,
                plane=fit.plane.tolist(),
            )
        return info


def detect_in_image(image: np.ndarray, name: str = "") -> MatDetection | None:
    """The mat's chessboard corners in one photo ((h, w) grey or (h, w, 3) BGR), or None.

    The board is the one whose marker ids were read most; corners next to covered markers
    (the product stands on the middle) are simply not returned.
    """
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    dictionary = cv2.aruco.getPredefinedDictionary(DICTIONARY)
    parameters = cv2.aruco.DetectorParameters()
    parameters.cornerRefinementMethod = cv2.aruco.CORNER_REFINE_SUBPIX
    corners, ids, _ = cv2.aruco.ArucoDetector(dictionary, parameters).detectMarkers(grey)
    if ids is None or len(ids) == 0:
        return None
    ids = ids.ravel()
    layout = max(LAYOUTS.values(), key=lambda item: np.isin(ids, item.marker_ids).sum())
    mine = np.flatnonzero(np.isin(ids, layout.marker_ids))
    if len(mine) < 2:  # one marker: a stray code, or too little of the board to place corners
        return None
    charuco = cv2.aruco.CharucoDetector(charuco_board(layout))
    charuco_corners, charuco_ids, _, _ = charuco.detectBoard(
        grey, markerCorners=tuple(corners[i] for i in mine), markerIds=ids[mine].reshape(-1, 1)
    )
    index = {int(marker): k for k, marker in enumerate(layout.marker_ids)}
    marker_points = [MARKER_POINT_ID + 4 * index[int(ids[i])] + j for i in mine for j in range(4)]
    point_ids = [marker_points]
    points_px = [np.concatenate([corners[i].reshape(4, 2) for i in mine])]
    if charuco_ids is not None and len(charuco_ids) > 0:
        point_ids.insert(0, charuco_ids.ravel())
        points_px.insert(0, charuco_corners.reshape(-1, 2))
    return MatDetection(
        image=name,
        paper=layout.paper,
        point_ids=np.concatenate(point_ids).astype(np.int64),
        points_px=np.concatenate(points_px).astype(np.float64),
        markers=len(mine),
    )


def triangulate(cameras: Sequence[Camera], uv: np.ndarray) -> np.ndarray:
    """(3,) least-squares point (DLT, normalised per sighting) seen by `cameras` at (n, 2) `uv`."""
    rows = []
    for camera, (u, v) in zip(cameras, np.asarray(uv, dtype=np.float64), strict=True):
        P = camera.K @ np.hstack([camera.R, camera.t[:, None]])
        for row in (u * P[2] - P[0], v * P[2] - P[1]):
            rows.append(row / np.linalg.norm(row[:3]))
    _, _, vt = np.linalg.svd(np.asarray(rows))
    point = vt[-1]
    return point[:3] / point[3]


def reprojection_errors(cameras: Sequence[Camera], uv: np.ndarray, point: np.ndarray):
    """(n,) pixel distances between the sightings (n, 2) `uv` and `point` projected; inf where
    the point is behind a camera."""
    errors = np.empty(len(cameras))
    for index, camera in enumerate(cameras):
        projected, depth = camera.project(point[None])
        ok = depth[0] > 0
        errors[index] = np.linalg.norm(projected[0] - uv[index]) if ok else np.inf
    return errors


def ray_angle_deg(cameras: Sequence[Camera], point: np.ndarray) -> float:
    """The widest angle between the rays from `point` to the cameras, in degrees."""
    rays = np.array([camera.center - point for camera in cameras])
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    cosines = np.clip(rays @ rays.T, -1.0, 1.0)
    return float(np.degrees(np.arccos(cosines.min())))


def triangulate_points(
    cameras: Mapping[str, Camera], detections: Iterable[MatDetection], options: MatOptions
) -> dict[int, tuple[np.ndarray, list[str], float]]:
    """Each board point seen in `options.min_views` photos or more: (its (3,) position, the
    photos whose sightings agree with it, their mean reprojection error in px). Sightings that
    disagree (a corner interpolated behind the product, a misread marker) are dropped, worst
    first."""
    sightings: dict[int, list[tuple[Camera, np.ndarray]]] = {}
    for detection in detections:
        camera = cameras[detection.image]
        for point_id, uv in zip(detection.point_ids, detection.points_px, strict=True):
            sightings.setdefault(int(point_id), []).append((camera, uv))
    points = {}
    for point_id, seen in sorted(sightings.items()):
        views = [camera for camera, _ in seen]
        uv = np.array([position for _, position in seen])
        limit = np.array(
            [options.max_reprojection_px * max(1.0, max(c.width, c.height) / 1000) for c in views]
        )
        while len(views) >= options.min_views:
            point = triangulate(views, uv)
            errors = reprojection_errors(views, uv, point)
            worst = int(np.argmax(errors / limit))
            if errors[worst] <= limit[worst]:
                if ray_angle_deg(views, point) >= options.min_ray_angle_deg:
                    points[point_id] = (point, [c.name for c in views], float(errors.mean()))
                break
            del views[worst]
            uv, limit = np.delete(uv, worst, axis=0), np.delete(limit, worst)
    return points


def fit_board(
    layout: MatLayout, point_ids: np.ndarray, points: np.ndarray, *, rounds: int = 3
) -> tuple[Similarity, np.ndarray]:
    """The similarity from the board (metres) onto the (n, 3) triangulated `points` of
    `point_ids`, refitted without points far off the layout; and a (n,) bool of those kept."""
    board = layout.point_positions_m(point_ids)
    keep = np.ones(len(board), dtype=bool)
    similarity = fit_similarity(board, points)
    for _ in range(rounds):
        residual = np.linalg.norm(similarity.apply(board) - points, axis=1) / similarity.scale
        # Metres on the board; a point off by over a twentieth of a square is a bad one.
        limit = max(3.0 * float(np.median(residual)), layout.square_mm / 1000.0 / 20.0)
        new_keep = residual <= limit
        if new_keep.sum() < 3 or np.array_equal(new_keep, keep):
            break
        keep = new_keep
        similarity = fit_similarity(board[keep], points[keep])
    return similarity, keep


def locate_mat(
    cameras: Sequence[Camera], detections: Sequence[MatDetection], options: MatOptions
) -> MatFinding:
    """The mat in the SfM frame of `cameras`, from its `detections` in their photos."""
    seen_in = [detection.image for detection in detections]
    if not detections:
        return MatFinding()
    papers = [detection.paper for detection in detections]
    paper = max(set(papers), key=papers.count)
    layout = LAYOUTS[paper]
    by_name = {camera.name: camera for camera in cameras}
    usable = [d for d in detections if d.paper == paper and d.image in by_name]
    triangulated = triangulate_points(by_name, usable, options)
    ids = np.array(sorted(triangulated), dtype=np.int64)
    points = np.array([triangulated[i][0] for i in ids]).reshape(-1, 3)
    keep = np.zeros(len(ids), dtype=bool)
    if len(ids) >= 3:
        similarity, keep = fit_board(layout, ids, points)
    ids, points = ids[keep], points[keep]
    square_m = layout.square_mm / 1000.0
    board = layout.point_positions_m(ids)
    # Points along one line leave the plane's tilt about that line unknown.
    spread = np.linalg.svd(board - board.mean(axis=0), compute_uv=False) if len(ids) else [0, 0]
    if len(ids) < options.min_points or spread[1] / np.sqrt(len(ids)) < 0.25 * square_m:
        return MatFinding(
            seen_in,
            None,
            f"the printed mat was read in {len(seen_in)} photo(s) but only {len(ids)} of its "
            f"points could be placed in 3D, not spread over the board (at least "
            f"{options.min_points} are needed): keep more of the mat in view, from several sides",
        )
    residual_m = float(
        np.sqrt(np.mean(np.sum((similarity.apply(board) - points) ** 2, axis=1))) / similarity.scale
    )
    if residual_m > options.max_residual_rel * square_m:
        return MatFinding(
            seen_in,
            None,
            f"the printed mat's points do not lie as printed (off by {residual_m * 1000:.1f} mm "
            "on average): lay the mat flat and make sure it was printed at 100 %",
        )
    # Board z points into the paper; the mat's up is the other way, towards the cameras.
    normal = -similarity.rotation[:, 2]
    centre = similarity.apply(board.mean(axis=0, keepdims=True))[0]
    photos = sorted({name for i in ids for name in triangulated[int(i)][1]})
    if np.mean([(by_name[name].center - centre) @ normal for name in photos]) < 0:
        normal = -normal  # seen from below the paper: a mirrored print or a glass table
    fit = MatFit(
        paper=paper,
        metres_per_unit=1.0 / similarity.scale,
        board_to_world=similarity,
        plane=np.append(normal, -normal @ centre),
        point_ids=ids,
        points_world=points,
        residual_m=residual_m,
        reprojection_px=float(np.mean([triangulated[int(i)][2] for i in ids])),
        photos=photos,
        disagreeing=disagreeing_photos(layout, similarity, by_name, usable, options),
    )
    logger.info(
        "mat (%s) found: %d points from %d photos, %.3f mm RMS, %.4g m per unit",
        paper, len(ids), len(photos), residual_m * 1000, fit.metres_per_unit,
    )  # fmt: skip
    return MatFinding(seen_in, fit, "")


def disagreeing_photos(
    layout: MatLayout,
    board_to_world: Similarity,
    cameras: Mapping[str, Camera],
    detections: Iterable[MatDetection],
    options: MatOptions,
    *,
    min_points: int = 4,
) -> list[str]:
    """Photos whose sightings of the mat lie, at the median, over 5× the reprojection limit
    from the fitted board: the mat is flat and rigid, so their cameras must be misplaced (SfM
    can fold a ring of photos where sides look alike)."""
    disagreeing = []
    for detection in detections:
        if len(detection.point_ids) < min_points:
            continue
        camera = cameras[detection.image]
        world = board_to_world.apply(layout.point_positions_m(detection.point_ids))
        uv, depth = camera.project(world)
        errors = np.where(depth > 0, np.linalg.norm(uv - detection.points_px, axis=1), np.inf)
        limit = options.max_reprojection_px * max(1.0, max(camera.width, camera.height) / 1000)
        if np.median(errors) > 5 * limit:
            disagreeing.append(detection.image)
    return disagreeing


def detect_mat(
    cameras: Sequence[Camera], image_paths: Sequence[Path], options: MatOptions | None = None
) -> MatFinding:
    """Find the printed mat in the photos at `image_paths` (undistorted, matching `cameras`
    one to one) and place it in the cameras' frame."""

    def read(path: Path) -> np.ndarray | None:
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if Path(path).exists() else None
        if image is None:  # the mat is optional: a photo that can't be read just shows none
            logger.warning("cannot read %s: not searched for the mat", path)
        return image

    return find_mat(cameras, (read(path) for path in image_paths), options)


def find_mat(
    cameras: Sequence[Camera],
    images: Iterable[np.ndarray | None],
    options: MatOptions | None = None,
) -> MatFinding:
    """Find the printed mat in `images` ((h, w) grey or (h, w, 3) BGR, matching `cameras` one
    to one; None: not searched) and place it in the cameras' frame."""
    detections = [
        detection
        for camera, image in zip(cameras, images, strict=True)
        if image is not None and (detection := detect_in_image(image, camera.name)) is not None
    ]
    return locate_mat(cameras, detections, options or MatOptions())
