"""Flipped-object captures (recon.passes): passes found by capture, joined by their product
features, and a synthetic two-pass capture reconstructed whole, base included."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image
from scipy.spatial.transform import Rotation

from recon import capture, passes, sfm, synth
from recon.cameras import Camera, look_at, read_cameras_json
from recon.errors import CaptureError
from recon.geometry import Similarity, rotation_angle_deg
from recon.masks import ObjectRegion, up_aligned_axes
from recon.workspace import Workspace
from tests.test_capture import copy_photos
from tests.test_render import iou, rasterized_silhouette

# -- pass detection -----------------------------------------------------------------------------


def test_upright_and_flipped_folders_are_passes_upright_first(tmp_path: Path) -> None:
    photos = tmp_path / "shoot"
    copy_photos(photos / "Upright", 3)
    copy_photos(photos / "on-side", 3, start=3)
    workspace = Workspace(tmp_path / "out")
    capture.run(photos, workspace, capture.CaptureOptions(max_image_px=64))
    info = workspace.read_capture()
    assert info["passes"] == ["upright", "flipped"]
    assert [image["pass"] for image in info["images"]] == ["upright"] * 3 + ["flipped"] * 3
    assert info["images"][0]["name"].startswith("Upright__")  # natural order put it second
    assert passes.has_passes(workspace)


def test_passes_found_in_a_zip_below_a_shared_folder(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    copy_photos(staging / "flipped", 3)
    copy_photos(staging / "upright", 3, start=3)
    archive_path = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive_path, "w") as archive:
        for path in sorted(staging.rglob("*.jpg")):
            archive.write(path, "product/" + path.relative_to(staging).as_posix())
    workspace = Workspace(tmp_path / "out")
    capture.run(archive_path, workspace, capture.CaptureOptions(max_image_px=64))
    info = workspace.read_capture()
    assert info["passes"] == ["upright", "flipped"]
    assert info["images"][0]["name"].startswith("upright__")


@pytest.mark.parametrize(
    "folders",
    [("left", "right"), ("upright", "standing"), ("upright",), ("upright", "flipped", "extra")],
)
def test_other_folders_make_one_pass(tmp_path: Path, folders: tuple[str, ...]) -> None:
    photos = tmp_path / "shoot"
    for index, folder in enumerate(folders):
        copy_photos(photos / folder, 2, start=2 * index)
    if len(folders) == 1:
        copy_photos(photos, 2, start=4)  # photos beside the folder, not in a pass
    workspace = Workspace(tmp_path / "out")
    capture.run(photos, workspace, capture.CaptureOptions(max_image_px=64))
    info = workspace.read_capture()
    assert "passes" not in info
    assert all("pass" not in image for image in info["images"])
    assert not passes.has_passes(workspace)


def test_a_pass_with_too_few_photos_is_refused(tmp_path: Path) -> None:
    photos = tmp_path / "shoot"
    copy_photos(photos / "upright", 5)
    copy_photos(photos / "flipped", 2, start=5)
    workspace = Workspace(tmp_path / "out")
    capture.run(photos, workspace, capture.CaptureOptions(max_image_px=64))
    with pytest.raises(CaptureError, match="flipped pass has 2 photo"):
        passes.split_pass(workspace, workspace.read_capture()["images"], "flipped")


# -- registration maths -------------------------------------------------------------------------


def known_similarity(seed: int = 1) -> Similarity:
    rng = np.random.default_rng(seed)
    return Similarity(2.5, Rotation.random(random_state=seed).as_matrix(), rng.normal(0, 3, 3))


def test_ransac_recovers_the_similarity_among_outliers() -> None:
    rng = np.random.default_rng(0)
    truth = known_similarity()
    src = rng.uniform(-1, 1, (200, 3))
    dst = truth.apply(src) + rng.normal(0, 0.002, (200, 3))
    wrong = rng.choice(200, 120, replace=False)  # 60 % mismatches
    dst[wrong] = rng.uniform(-8, 8, (120, 3))
    found, inliers = passes.ransac_similarity(
        src, dst, threshold=0.05, iterations=2000, rng=np.random.default_rng(3)
    )
    assert found is not None
    assert found.scale == pytest.approx(2.5, rel=1e-3)
    assert rotation_angle_deg(found.rotation @ truth.rotation.T) < 0.1
    np.testing.assert_allclose(found.translation, truth.translation, atol=0.02)
    expected = np.ones(200, dtype=bool)
    expected[wrong] = False
    assert (inliers == expected).mean() > 0.98


def test_ransac_gives_up_on_too_few_pairs() -> None:
    found, inliers = passes.ransac_similarity(
        np.zeros((2, 3)), np.ones((2, 3)), threshold=0.1, iterations=10,
        rng=np.random.default_rng(0),
    )  # fmt: skip
    assert found is None
    assert not inliers.any()


BOX = np.array([[x, y, z] for x in (-1, 1) for y in (0, 2) for z in (-1, 1)], float)


def features(
    xyz: np.ndarray, descriptors: np.ndarray, sightings: int, rng, corners: np.ndarray = BOX
) -> passes.PassFeatures:
    """Features of points `xyz` seen `sightings` times each with slightly different descriptors
    (rows of `descriptors`, one per point), the product box `corners` (8, 3)."""
    repeated = np.repeat(descriptors, sightings, axis=0)
    noisy = repeated + rng.normal(0, 2, repeated.shape)
    region = ObjectRegion(
        center=np.zeros(3), up=np.array([0, 1.0, 0]), box_corners=corners, ground=None,
        camera_distance=5.0,
    )  # fmt: skip
    return passes.PassFeatures(
        xyz=xyz,
        descriptors=noisy.astype(np.float32),
        point_of=np.repeat(np.arange(len(xyz)), sightings),
        region=region,
    )


def test_product_features_of_two_passes_join_them() -> None:
    rng = np.random.default_rng(0)
    xyz = rng.uniform([-0.8, 0.1, -0.8], [0.8, 1.9, 0.8], (150, 3))
    descriptors = rng.uniform(0, 120, (150, 128))
    truth = known_similarity(4)  # flipped frame -> upright frame
    upright = features(xyz, descriptors, 3, rng)
    # The flipped pass saw 100 of the points (in its own frame) and 50 points of its own table.
    seen = rng.permutation(150)[:100]

    def to_flipped(points: np.ndarray) -> np.ndarray:
        return (points - truth.translation) @ truth.rotation / truth.scale

    flipped_xyz = np.vstack([to_flipped(xyz[seen]), rng.normal(0, 1, (50, 3))])
    flipped_descriptors = np.vstack([descriptors[seen], rng.uniform(0, 120, (50, 128))])
    flipped = features(flipped_xyz, flipped_descriptors, 2, rng, to_flipped(BOX))
    sources, targets = passes.match_points(flipped, upright, ratio=0.8, neighbours=8)
    assert len(sources) >= 95
    on_product = sources < 100
    assert (targets[on_product] == seen[sources[on_product]]).mean() > 0.95
    registration = passes.register(upright, flipped, passes.PassOptions())
    assert registration.inliers >= 95
    assert registration.similarity.scale == pytest.approx(truth.scale, rel=1e-6)
    assert rotation_angle_deg(registration.similarity.rotation @ truth.rotation.T) < 1e-4


def test_passes_that_share_no_product_features_fail_with_advice() -> None:
    rng = np.random.default_rng(0)
    upright = features(rng.uniform(-1, 1, (150, 3)), rng.uniform(0, 120, (150, 128)), 3, rng)
    flipped = features(rng.uniform(-1, 1, (150, 3)), rng.uniform(0, 120, (150, 128)), 3, rng)
    with pytest.raises(CaptureError, match=r"could not be joined.*laid on its side"):
        passes.register(upright, flipped, passes.PassOptions())


def test_planes_and_boxes_move_with_the_flipped_pass() -> None:
    rng = np.random.default_rng(0)
    similarity = known_similarity(2)
    normal = np.array([0.0, 0.6, 0.8])
    plane = np.append(normal, -0.7)
    # points on the plane stay on it, and the normal stays a unit normal
    on_plane = rng.normal(0, 1, (20, 3))
    on_plane -= np.outer(on_plane @ normal + plane[3], normal)
    moved = passes.transform_plane(plane, similarity)
    assert np.linalg.norm(moved[:3]) == pytest.approx(1.0)
    np.testing.assert_allclose(similarity.apply(on_plane) @ moved[:3] + moved[3], 0, atol=1e-9)
    up = np.array([0.0, 0.0, 1.0])
    a = rng.normal(0, 1, (8, 3))
    b = rng.normal(5, 1, (8, 3))
    box = passes.union_box(a, b, up)
    local = box @ up_aligned_axes(up).T
    inside = np.vstack([a, b]) @ up_aligned_axes(up).T
    assert (inside >= local.min(axis=0) - 1e-9).all()
    assert (inside <= local.max(axis=0) + 1e-9).all()


def test_a_region_gives_each_photo_its_own_pass_table() -> None:
    upright, flipped = np.array([0, 1.0, 0, 0.5]), np.array([1.0, 0, 0, 2.0])
    region = ObjectRegion(
        center=np.zeros(3), up=np.array([0, 1.0, 0]), box_corners=np.zeros((8, 3)),
        ground=upright, camera_distance=4.0,
        ground_by_photo={"upright__a.jpg": upright, "flipped__a.jpg": flipped, "x.jpg": None},
    )  # fmt: skip
    again = ObjectRegion.from_json(json.loads(json.dumps(region.to_json())))
    np.testing.assert_array_equal(again.for_photo("flipped__a.jpg").ground, flipped)
    np.testing.assert_array_equal(again.for_photo("upright__a.jpg").ground, upright)
    assert again.for_photo("x.jpg").ground is None
    assert again.for_photo("other.jpg") is again  # not in a pass: the region as it is


# -- synthetic captures ---------------------------------------------------------------------------


def test_synth_flip_photographs_both_passes_with_truth_in_the_product_frame(
    tmp_path: Path,
) -> None:
    options = synth.SynthOptions(views=6, size_px=192, novel_views=1, flip=True)
    synth.run("cereal_box", tmp_path / "capture", options)
    capture_dir = tmp_path / "capture"
    cameras = read_cameras_json(capture_dir / "truth" / "cameras.json")
    assert [c.name for c in cameras] == [
        f"{name}__img_{i:03d}.jpg" for name in ("upright", "flipped") for i in range(6)
    ]
    for folder in ("upright", "flipped"):
        assert len(list((capture_dir / "images" / folder).glob("*.jpg"))) == 6
    mesh = trimesh.load(capture_dir / "truth" / "mesh.ply", process=False)
    for camera in cameras:
        mask = np.asarray(
            Image.open(capture_dir / "truth" / "masks" / camera.name.replace(".jpg", ".png"))
        )
        assert iou(mask.astype(bool), rasterized_silhouette(mesh, camera)) >= 0.97, camera.name
    # The upright pass looks from above the table; the flipped one sees the base (y = 0) too.
    assert min(c.center[1] for c in cameras[:6]) > 0
    assert min(c.center[1] for c in cameras[6:]) < 0


def base_completeness(capture_dir: Path, out_dir: Path, tau_pct: float = 1.0) -> float:
    """Share of the product's base (truth faces facing down) within `tau_pct` % of the truth
    diagonal of the model, aligned to the truth by its cameras as `recon evaluate` does."""
    from recon.evaluation import distance_to_mesh
    from recon.geometry import fit_similarity_robust, sample_surface
    from recon.textured_mesh import load_textured_mesh

    truth = trimesh.load(capture_dir / "truth" / "mesh.ply", process=False)
    truth_cameras = {c.name: c for c in read_cameras_json(capture_dir / "truth" / "cameras.json")}
    cameras = [c for c in read_cameras_json(out_dir / "report.json") if c.name in truth_cameras]
    to_truth = fit_similarity_robust(
        np.array([c.center for c in cameras]),
        np.array([truth_cameras[c.name].center for c in cameras]),
    )
    model = load_textured_mesh(out_dir / "model.glb").transformed(to_truth.matrix()).to_trimesh()
    base = truth.submesh([np.flatnonzero(truth.face_normals[:, 1] < -0.9)], append=True)
    points = sample_surface(base, 5000)
    diagonal = float(np.linalg.norm(np.ptp(truth.bounds, axis=0)))
    return float((distance_to_mesh(model, points) < tau_pct / 100 * diagonal).mean())


@pytest.mark.slow
def test_two_passes_make_a_model_with_its_base(tmp_path: Path) -> None:
    from recon import evaluation
    from recon.pipeline import ReconOptions, reconstruct

    capture_dir, out_dir = tmp_path / "capture", tmp_path / "out"
    options = synth.SynthOptions(views=20, size_px=480, novel_views=2, flip=True,
                                 background=synth.Background.TABLE)  # fmt: skip
    synth.run("cereal_box", capture_dir, options)
    result = reconstruct(capture_dir / "images", out_dir, ReconOptions.for_preset("preview"))
    scores = evaluation.evaluate(
        capture_dir, out_dir, evaluation.EvaluateOptions(score_texture=False)
    )
    assert scores["images"]["registered_fraction"] == 1.0
    assert scores["pose"]["rotation_error_deg"]["max"] < 1.0  # no pass (or photo) misplaced
    assert scores["geometry"]["f_score"]["1"] >= 0.85
    assert result.report["orientation"]["up"] == "table plane"  # the upright pass's table
    assert base_completeness(capture_dir, out_dir) >= 0.8
    # Each pass's own placement check stays on record (the report warns from it).
    joined = json.loads(Workspace(out_dir).sfm_cameras_path.read_text())
    assert set(joined["order_check_by_pass"]) == {"upright", "flipped"}


def ring(count: int, distance: float = 4.0) -> list[Camera]:
    """`count` cameras on a ring round the origin, looking at it from 20° above."""
    cameras = []
    for index in range(count):
        angle = 2 * np.pi * index / count
        eye = distance * np.array([np.sin(angle), np.tan(np.radians(20)), np.cos(angle)])
        R, _ = look_at(eye, np.zeros(3))
        K = np.array([[500.0, 0, 320], [0, 500, 240], [0, 0, 1]])
        cameras.append(Camera(name=f"img_{index:03d}.jpg", width=640, height=480, K=K, R=R,
                              t=-R @ eye))  # fmt: skip
    return cameras


def test_photos_placed_far_off_the_ring_are_strays() -> None:
    cameras = ring(20)
    far, near = cameras[3], cameras[11]
    cameras[3] = far.transformed(np.diag([1e4, 1e4, 1e4, 1.0]))  # SfM put it 10 000× away
    cameras[11] = Camera(name=near.name, width=640, height=480, K=near.K, R=near.R, t=near.t / 3)
    strays = passes.stray_cameras(cameras, 1.67)
    assert np.flatnonzero(strays).tolist() == [3, 11]
    assert not passes.stray_cameras(ring(20), 1.67).any()


def test_strays_are_left_out_of_a_pass_with_a_reason(tmp_path: Path) -> None:
    cameras = ring(6)
    cameras[2] = Camera(name="img_002.jpg", width=640, height=480, K=cameras[2].K,
                        R=cameras[2].R, t=cameras[2].t * 5)  # fmt: skip
    sub = Workspace(tmp_path)
    # The stray contradicts its matches; with it left out, no kept photo is doubtful.
    shares = {camera.name: 0.9 for camera in cameras} | {"img_002.jpg": 0.1}
    agreement = sfm.agreement_summary(shares, 0.3)
    sub.write_sfm_cameras(
        cameras, registered=6, total=6, unregistered=[], match_agreement=agreement
    )
    visible = np.array([[0, 0], [0, 2], [0, 3], [1, 2], [1, 4]], dtype=np.int32)
    sub.write_sfm_points(
        xyz=np.zeros((2, 3)),
        rgb=np.zeros((2, 3), np.uint8),
        error=np.zeros(2),
        track=np.array([3, 2], np.int32),
        visible_in=visible,
    )
    passes.leave_out_strays(sub, 1.67, 0.3)
    info = json.loads(sub.sfm_cameras_path.read_text())
    assert info["match_agreement"]["doubtful"] == {}
    assert info["match_agreement"]["min"] == 0.9
    assert "img_002.jpg" not in info["match_agreement"]["photos"]
    assert [c.name for c in sub.read_sfm_cameras()] == [f"img_{i:03d}.jpg" for i in (0, 1, 3, 4, 5)]
    assert info["registered"] == 5
    assert [entry["image"] for entry in info["unregistered"]] == ["img_002.jpg"]
    points = sub.read_sfm_points()
    assert points["visible_in"].tolist() == [[0, 0], [0, 2], [1, 3]]  # camera 3 is now 2
    assert points["track"].tolist() == [2, 1]


@pytest.mark.slow
def test_passes_of_different_products_fail_instead_of_making_a_model(tmp_path: Path) -> None:
    from recon.pipeline import ReconOptions, reconstruct

    options = synth.SynthOptions(views=16, size_px=480, novel_views=1, flip=True,
                                 background=synth.Background.TABLE)  # fmt: skip
    synth.run("cereal_box", tmp_path / "box", options)
    synth.run("bottle", tmp_path / "bottle", options)
    photos = tmp_path / "photos"
    shutil.copytree(tmp_path / "box" / "images" / "upright", photos / "upright")
    shutil.copytree(tmp_path / "bottle" / "images" / "flipped", photos / "flipped")
    with pytest.raises(CaptureError, match="could not be joined"):
        reconstruct(photos, tmp_path / "out", ReconOptions.for_preset("preview"))
    assert not (tmp_path / "out" / "model.glb").exists()
