"""The printed scale mat: an exact-size PDF that reads back, the maths that places it from SfM
cameras, and a synthetic capture with the mat reconstructed to real size, upright on y = 0."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pypdfium2
import pytest

from recon import assets, cli, mat, orient, pipeline, synth
from recon.cameras import Camera, look_at, read_cameras_json
from recon.errors import InputError
from recon.evaluation import EvaluateOptions, evaluate
from recon.geometry import fit_similarity_robust
from recon.render import OffscreenRenderer
from recon.textured_mesh import TexturedMesh, load_textured_mesh
from recon.workspace import Workspace
from tests.conftest import SAMPLE_CAPTURES_DIR

PT_PER_MM = 72 / 25.4


# -- the printable PDF ----------------------------------------------------------------------------
@pytest.mark.parametrize("paper", list(mat.Paper))
def test_pdf_page_is_the_paper_size_and_its_board_and_ruler_measure_true(paper, tmp_path) -> None:
    path = mat.write_mat_pdf(tmp_path / "mat.pdf", paper)
    layout = mat.layout_for(paper)
    page = pypdfium2.PdfDocument(path)[0]  # PDFium: the renderer Chrome prints with
    width_pt, height_pt = page.get_size()
    assert width_pt == pytest.approx(layout.page_mm[0] * PT_PER_MM, abs=0.01)
    assert height_pt == pytest.approx(layout.page_mm[1] * PT_PER_MM, abs=0.01)

    image = page.render(scale=8.0 / PT_PER_MM, grayscale=True).to_numpy()  # 8 px/mm
    image = image if image.ndim == 2 else image[..., 0]
    # The raster rounds the page up to whole pixels: each axis has its own scale.
    px_per_mm = np.array(image.shape[::-1]) / layout.page_mm
    found = mat.detect_in_image(image, "page")
    assert found is not None
    assert found.paper == layout.paper
    chess = found.point_ids < layout.corner_count
    assert chess.sum() == layout.corner_count  # every chessboard corner of a flat page
    assert found.markers == len(layout.marker_ids)
    # Printed where the layout says, to a tenth of a millimetre.
    expected_mm = layout.point_positions_m(found.point_ids)[:, :2] * 1000
    expected_mm += [layout.board_left_mm, layout.board_top_mm]
    np.testing.assert_allclose(found.points_px / px_per_mm, expected_mm - 0.5 / px_per_mm, atol=0.1)

    # The ruler: the longest dark run on the rows just under the board is 10 cm (+ its stroke).
    ruler_mm = layout.board_top_mm + layout.board_mm[1] + 7.0
    top, bottom = (round(y * px_per_mm[1]) for y in (ruler_mm - 1, ruler_mm + 1))
    longest = max(_longest_run(row) for row in image[top:bottom] < 128)
    assert longest / px_per_mm[0] == pytest.approx(mat.RULER_MM, abs=0.6)


def _longest_run(row: np.ndarray) -> int:
    padded = np.concatenate([[0], row.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max()) if len(edges) else 0


def test_mat_verb_writes_the_pdf_and_bad_requests_are_refused(tmp_path, capsys) -> None:
    assert cli.main(["mat", "--out", str(tmp_path / "mat.pdf"), "--paper", "letter"]) == 0
    assert (tmp_path / "mat.pdf").read_bytes().startswith(b"%PDF")
    assert "print it at 100 %" in capsys.readouterr().err
    with pytest.raises(InputError, match=r"ending in \.pdf"):
        mat.write_mat_pdf(tmp_path / "mat.png")
    with pytest.raises(InputError, match="create the folder"):
        mat.write_mat_pdf(tmp_path / "missing" / "mat.pdf")
    with pytest.raises(InputError, match="a4, letter"):
        mat.layout_for("a3")
    with pytest.raises(InputError, match="under a product"):
        synth.run(None, tmp_path / "room", synth.SynthOptions(scene=True, mat=mat.Paper.A4))


def test_point_positions_match_opencv_board() -> None:
    for layout in mat.LAYOUTS.values():
        board = mat.charuco_board(layout)
        corners = np.asarray(board.getChessboardCorners(), dtype=np.float64)
        ids = np.arange(layout.corner_count)
        np.testing.assert_allclose(layout.point_positions_m(ids), corners, atol=1e-7)
        markers = np.asarray(board.getObjPoints(), dtype=np.float64).reshape(-1, 3)
        ids = mat.MARKER_POINT_ID + np.arange(len(markers))
        np.testing.assert_allclose(layout.point_positions_m(ids), markers, atol=1e-7)


def test_a_photo_of_the_laid_mat_shows_its_points_where_synth_says(tmp_path) -> None:
    """The 3D mat synth lays down (its board_to_truth) is the board the detector reads."""
    primitive, board_to_truth = mat.mat_primitive(mat.Paper.LETTER, yaw_deg=25.0)
    camera = _camera_at(np.array([0.12, 0.35, 0.3]), np.zeros(3), size_px=800)
    with OffscreenRenderer(TexturedMesh((primitive,))) as renderer:
        photo = renderer.render(camera, background=(90, 90, 90), supersample=2).rgb
    found = mat.detect_in_image(photo[..., ::-1].copy(), camera.name)
    assert found is not None
    assert found.paper == mat.Paper.LETTER
    assert len(found.point_ids) > 60
    layout = mat.LAYOUTS[mat.Paper.LETTER]
    board = layout.point_positions_m(found.point_ids)
    world = board @ board_to_truth[:3, :3].T + board_to_truth[:3, 3]
    np.testing.assert_allclose(world[:, 1], 0.0, atol=1e-12)  # lying on y = 0
    uv, _ = camera.project(world)
    assert np.median(np.linalg.norm(uv - found.points_px, axis=1)) < 0.3


# -- placing the mat from SfM cameras -------------------------------------------------------------
UNITS_PER_METRE = 7.3  # an SfM frame's arbitrary scale


def _camera_at(eye: np.ndarray, target: np.ndarray, *, size_px: int = 1000) -> Camera:
    R, t = look_at(eye, target)
    focal = size_px * 0.9
    K = np.array([[focal, 0, (size_px - 1) / 2], [0, focal, (size_px - 1) / 2], [0, 0, 1]])
    return Camera(name=f"cam_{eye.round(3)}", width=size_px, height=size_px, K=K, R=R, t=t)


def _sfm_scene(seed: int = 3):
    """A ring of cameras over an A4 mat, all in an SfM-like frame: rotated, shifted, and in
    units of 1/7.3 m. Returns (cameras, board_to_sfm, truth_to_sfm), both (4, 4)."""
    rng = np.random.default_rng(seed)
    to_sfm = np.eye(4)
    axis = rng.normal(size=3)
    axis /= np.linalg.norm(axis)
    angle = 1.1
    skew = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + math.sin(angle) * skew + (1 - math.cos(angle)) * skew @ skew
    to_sfm[:3, :3] = UNITS_PER_METRE * rotation
    to_sfm[:3, 3] = [0.4, -1.2, 2.0]
    _, board_to_truth = mat.mat_primitive(mat.Paper.A4, yaw_deg=-30.0)
    cameras = []
    for k in range(12):
        azimuth = 2 * math.pi * k / 12
        elevation = math.radians(25 if k % 2 else 45)
        eye = 0.5 * np.array(
            [math.sin(azimuth) * math.cos(elevation), math.sin(elevation),
             math.cos(azimuth) * math.cos(elevation)]
        )  # fmt: skip
        camera = _camera_at(eye, np.array([0, 0.05, 0]))
        cameras.append(camera.transformed(to_sfm))
    return cameras, to_sfm @ board_to_truth, to_sfm


def _sightings(cameras, board_to_sfm, rng, *, noise_px=0.3, keep=0.7) -> list[mat.MatDetection]:
    """What each camera would read: some of the board's points (the rest hidden by the product),
    with pixel noise."""
    layout = mat.LAYOUTS[mat.Paper.A4]
    ids = np.concatenate([np.arange(layout.corner_count), mat.MARKER_POINT_ID + np.arange(4 * 17)])
    world = layout.point_positions_m(ids) @ board_to_sfm[:3, :3].T + board_to_sfm[:3, 3]
    detections = []
    for camera in cameras:
        uv, depth = camera.project(world)
        seen = (depth > 0) & (rng.random(len(ids)) < keep)
        uv = uv[seen] + rng.normal(0, noise_px, (seen.sum(), 2))
        detections.append(mat.MatDetection(camera.name, mat.Paper.A4, ids[seen], uv, 8))
    return detections


def test_locating_the_mat_recovers_scale_plane_and_up_from_sfm_cameras() -> None:
    rng = np.random.default_rng(0)
    cameras, board_to_sfm, truth_to_sfm = _sfm_scene()
    detections = _sightings(cameras, board_to_sfm, rng)
    # A corner interpolated behind the product in one photo, 25 px off, and one photo that
    # misread the board entirely: both must be voted out.
    bad = detections[0]
    bad.points_px[0] += [25.0, -10.0]
    detections[5] = mat.MatDetection(
        detections[5].image, mat.Paper.A4, detections[5].point_ids,
        detections[5].points_px + rng.normal(0, 40, detections[5].points_px.shape), 8,
    )  # fmt: skip
    finding = mat.locate_mat(cameras, detections, mat.MatOptions())
    fit = finding.fit
    assert fit is not None, finding.problem
    assert fit.paper == mat.Paper.A4
    assert fit.metres_per_unit == pytest.approx(1 / UNITS_PER_METRE, rel=1e-3)
    true_up = truth_to_sfm[:3, :3] @ [0, 1, 0] / UNITS_PER_METRE  # truth's +Y in the SfM frame
    assert math.degrees(math.acos(min(1.0, fit.up @ true_up))) < 0.1
    # The plane passes through the truth origin (the board lies on y = 0), to 0.2 mm.
    origin = truth_to_sfm[:3, 3]
    assert abs(fit.plane[:3] @ origin + fit.plane[3]) < 0.2e-3 * UNITS_PER_METRE
    assert fit.residual_m < 0.5e-3
    assert detections[5].image not in fit.photos  # every sighting of it disagreed
    assert fit.disagreeing == [detections[5].image]  # ... as a misplaced camera's would
    assert len(fit.photos) == 11
    # The page round the board, on the mat's plane, the paper's size (the masks leave it out).
    page = fit.page_corners() / UNITS_PER_METRE
    sides = np.linalg.norm(page - np.roll(page, 1, axis=0), axis=1)
    np.testing.assert_allclose(np.sort(sides), [0.210, 0.210, 0.297, 0.297], atol=0.5e-3)
    assert np.abs(page @ fit.plane[:3] + fit.plane[3] / UNITS_PER_METRE).max() < 0.2e-3
    report = finding.to_json()
    assert report["found"]
    assert report["paper"] == "a4"
    assert report["points"] == len(fit.point_ids) > 50


def test_a_mat_seen_too_little_gives_no_scale_and_says_why() -> None:
    rng = np.random.default_rng(1)
    cameras, board_to_sfm, _ = _sfm_scene()
    detections = _sightings(cameras, board_to_sfm, rng)
    nothing = mat.locate_mat(cameras, [], mat.MatOptions())
    assert nothing.fit is None
    assert nothing.problem == ""
    assert nothing.seen_in == []
    one_photo = mat.locate_mat(cameras, detections[:1], mat.MatOptions())
    assert one_photo.fit is None
    assert one_photo.seen_in == [cameras[0].name]
    assert "from several sides" in one_photo.problem
    # Points along one row only: the plane could tilt about it.
    row = [
        mat.MatDetection(d.image, d.paper, d.point_ids[keep], d.points_px[keep], d.markers)
        for d in detections
        for keep in [np.isin(d.point_ids, [4, 5, 6, 7])]
    ]
    assert mat.locate_mat(cameras, row, mat.MatOptions()).fit is None


def test_triangulation_is_exact_without_noise() -> None:
    cameras, _, _ = _sfm_scene()
    point = np.array([0.3, -0.2, 1.9])
    uv = np.array([camera.project(point[None])[0][0] for camera in cameras[:3]])
    np.testing.assert_allclose(mat.triangulate(cameras[:3], uv), point, atol=1e-9)
    assert mat.reprojection_errors(cameras[:3], uv, point).max() < 1e-9


# -- end to end ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mat_reconstruction(tmp_path_factory):
    """A cereal box (19 × 28 × 7 cm) on the A4 mat on a wooden table: 16 photos at 640 px."""
    root = tmp_path_factory.mktemp("mat_e2e")
    options = synth.SynthOptions(
        views=16, size_px=640, background=synth.Background.TABLE, mat=mat.Paper.A4, novel_views=0
    )
    capture = synth.run("cereal_box", root / "capture", options).out_dir
    # No USDZ, poster or phone tiers: this checks size and placement, and saves seconds.
    recon_options = dataclasses.replace(
        pipeline.ReconOptions.for_preset("preview"),
        export=assets.AssetOptions(usdz=False, poster=False, tiers=()),
    )
    result = pipeline.reconstruct(capture / "images", root / "out", recon_options)
    return capture, result


def _model_to_truth(capture: Path, cameras) -> tuple:
    truth = {camera.name: camera for camera in read_cameras_json(capture / "truth/cameras.json")}
    names = [camera.name for camera in cameras if camera.name in truth]
    by_name = {camera.name: camera for camera in cameras}
    return fit_similarity_robust(
        np.array([by_name[n].center for n in names]), np.array([truth[n].center for n in names])
    )


def test_the_mat_gives_real_size_up_and_ground(mat_reconstruction) -> None:
    capture, result = mat_reconstruction
    report = result.report
    assert report["units"] == "metre"
    assert report["scale"]["source"] == "mat"
    assert report["orientation"]["up"] == "printed mat"
    found = report["scale"]["mat"]
    assert found["found"]
    assert found["paper"] == "a4"
    assert found["points"] >= 8
    assert len(found["photos"]) >= 4
    assert found["residual_mm"] < 1.0
    assert not any("scale unknown" in warning for warning in report["warnings"])

    height = json.loads((capture / "truth/scene.json").read_text())["bbox_m"][1]
    to_truth = _model_to_truth(capture, read_cameras_json(result.report_path))
    assert to_truth.scale == pytest.approx(1.0, rel=0.01)  # metres, within 1 %
    up = to_truth.rotation @ [0.0, 1.0, 0.0]
    assert math.degrees(math.acos(min(1.0, up[1]))) < 2.0
    # The truth's ground (y = 0 under the box) is the model's y = 0 ...
    truth_origin = to_truth.rotation.T @ -to_truth.translation / to_truth.scale
    assert abs(truth_origin[1]) < 0.005 * height
    # ... and the model stands on it.
    model = load_textured_mesh(result.model_path)
    assert abs(model.bounds[0][1]) < 0.005 * height


def test_the_mat_stays_out_of_the_model(mat_reconstruction) -> None:
    capture, result = mat_reconstruction
    scores = evaluate(capture, result.out_dir, EvaluateOptions(score_texture=False))
    assert scores["geometry"]["accuracy"]["1"] > 0.95  # nothing but the box
    assert scores["geometry"]["f_score"]["1"] > 0.85
    model = load_textured_mesh(result.model_path).to_trimesh()
    width, _, depth = np.ptp(model.vertices, axis=0)
    assert max(width, depth) < 0.21  # the box's 19 cm, not the mat's 25 cm board


def test_a_known_height_scales_without_the_mat_and_is_checked_against_it(
    mat_reconstruction, tmp_path
) -> None:
    capture, result = mat_reconstruction
    height = json.loads((capture / "truth/scene.json").read_text())["bbox_m"][1]
    shutil.copytree(result.out_dir / "work", tmp_path / "job" / "work")
    workspace = Workspace(tmp_path / "job")
    cameras = workspace.read_sfm_cameras()

    # No mat (as if none were in the photos), the true height given: the size is right to 1 %.
    known = orient.run(workspace, orient.OrientOptions(find_mat=False, height_m=height))
    assert known.scale_source == "height_m"
    assert not known.mat_found
    to_truth = _model_to_truth(capture, [c.transformed(known.matrix) for c in cameras])
    assert to_truth.scale == pytest.approx(1.0, rel=0.01)

    # A height that contradicts the mat by 10 %: the mat's scale stays, with a warning.
    both = orient.run(workspace, orient.OrientOptions(height_m=height * 1.1))
    assert both.scale_source == "mat"
    assert any("printed at 100 %" in warning for warning in both.warnings)
    to_truth = _model_to_truth(capture, [c.transformed(both.matrix) for c in cameras])
    assert to_truth.scale == pytest.approx(1.0, rel=0.01)
    # Within 2 %: no warning.
    agreeing = orient.run(workspace, orient.OrientOptions(height_m=height * 1.005))
    assert agreeing.warnings == []


@pytest.mark.slow
def test_height_m_without_a_mat_gives_the_true_size(tmp_path) -> None:
    """The whole pipeline on the bundled bottle on a table (no mat), told its true height.

    On plain paper, with no ground under the product, the visual hull bulges below its base
    (the cereal box came out 2.4 % too tall): a table, or the mat, bounds it."""
    capture = SAMPLE_CAPTURES_DIR / "bottle_table"
    height = json.loads((capture / "truth/scene.json").read_text())["bbox_m"][1]
    options = pipeline.ReconOptions.for_preset("preview").with_known_dimensions({"height": height})
    result = pipeline.reconstruct(capture / "images", tmp_path / "out", options)
    assert result.report["scale"]["source"] == "height_m"
    assert result.report["scale"]["mat"]["found"] is False
    to_truth = _model_to_truth(capture, read_cameras_json(result.report_path))
    assert to_truth.scale == pytest.approx(1.0, rel=0.01)
