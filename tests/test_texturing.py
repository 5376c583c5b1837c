"""Texture baking against the sample captures' truth: held-out views, seams, fill, workspace I/O."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import open3d as o3d
import pytest
import trimesh

from recon import capture_qa, meshing
from recon.cameras import Camera, read_cameras_json
from recon.errors import StageError
from recon.evaluation import distance_to_mesh, score_texture
from recon.export import write_glb
from recon.planes import find_planes, snap_to_planes
from recon.textured_mesh import load_textured_mesh
from recon.texturing import (
    BakedTexture,
    TextureOptions,
    bake_texture,
    bakeable,
    count_patches,
    data_cost,
    exposure_gains,
    fill_atlas,
    inconsistent_samples,
    median_footprint,
    place_planes,
    rasterize_atlas,
    refine_surface,
    run,
    select_views,
    transfer_texture,
)
from recon.workspace import Workspace
from tests.conftest import SAMPLE_CAPTURES_DIR
from tests.gltf_validator import issue_summary, validate_glb, validator_missing

# Measured on the sample captures (truth mesh and cameras, 640 px photos, 1024² texture):
# bottle_table 31.9 dB, cereal_box 28.1 dB. The thresholds leave ~2 dB for JPEG and GL drift.
BOTTLE_MIN_PSNR_DB = 29.5
CEREAL_MIN_PSNR_DB = 26.5
# The truth's masks are the product's own outline: not grown, as the masks stage's are.
OPTIONS = TextureOptions(texture_size=1024, mask_margin_rel=0.0)


@dataclasses.dataclass(frozen=True)
class Capture:
    vertices: np.ndarray
    faces: np.ndarray
    cameras: list[Camera]
    images: list[np.ndarray]
    masks: list[np.ndarray]
    novel_dir: Path


def truth_workspace(path: Path, name: str, *, masks: bool) -> tuple[Workspace, Capture]:
    """A job folder holding a sample capture's true mesh, cameras, photos (and masks) as the
    stages before texturing would leave them, in the truth frame."""
    capture = load_capture(name)
    workspace = Workspace(path)
    workspace.create()
    folder = SAMPLE_CAPTURES_DIR / name
    workspace.mesh_path.parent.mkdir(parents=True)
    shutil.copyfile(folder / "truth" / "mesh.ply", workspace.mesh_path)
    workspace.write_sfm_cameras(capture.cameras)
    workspace.sfm_images_dir.mkdir(parents=True)
    if masks:
        workspace.masks_dir.mkdir(parents=True)
    for camera, mask in zip(capture.cameras, capture.masks, strict=True):
        shutil.copyfile(folder / "images" / camera.name, workspace.sfm_image_path(camera.name))
        if masks:
            cv2.imwrite(str(workspace.mask_path(camera.name)), mask.astype(np.uint8) * 255)
    return workspace, capture


def load_capture(name: str) -> Capture:
    """A sample capture with its true mesh, cameras and product masks."""
    folder = SAMPLE_CAPTURES_DIR / name
    mesh = trimesh.load(folder / "truth" / "mesh.ply", process=False)
    cameras = read_cameras_json(folder / "truth" / "cameras.json")
    images = [
        cv2.cvtColor(cv2.imread(str(folder / "images" / c.name)), cv2.COLOR_BGR2RGB)
        for c in cameras
    ]
    masks = [
        cv2.imread(str(folder / "truth" / "masks" / Path(c.name).with_suffix(".png")), 0) > 127
        for c in cameras
    ]
    return Capture(
        np.asarray(mesh.vertices),
        np.asarray(mesh.faces),
        cameras,
        images,
        masks,
        folder / "truth" / "novel",
    )


def bake_and_score(
    capture: Capture, tmp_path: Path, options: TextureOptions = OPTIONS, **changes
) -> tuple[BakedTexture, dict, Path]:
    fields = {"images": capture.images, **changes}
    baked = bake_texture(
        capture.vertices,
        capture.faces,
        capture.cameras,
        fields["images"],
        capture.masks,
        options,
    )
    path = tmp_path / "model.glb"
    write_glb(path, baked.vertices, baked.faces, baked.uv, baked.texture, normals=baked.normals)
    return baked, score_texture(load_textured_mesh(path), capture.novel_dir), path


@pytest.fixture(scope="module")
def bottle(tmp_path_factory) -> tuple[BakedTexture, dict, Path]:
    """The bottle on a wooden table: the table is in every photo, never in the model."""
    return bake_and_score(load_capture("bottle_table"), tmp_path_factory.mktemp("bottle"))


def test_baked_texture_reproduces_held_out_views(bottle) -> None:
    baked, score, _ = bottle
    assert score["views"] >= 4
    assert score["psnr_db"] >= BOTTLE_MIN_PSNR_DB, score
    assert score["ssim"] >= 0.9, score
    assert score["coverage"] >= 0.99, score
    size = baked.texture.shape[0]
    assert baked.texture.shape == (size, size, 3)
    assert baked.texture.dtype == np.uint8
    assert size == OPTIONS.texture_size
    assert size & (size - 1) == 0


def test_glb_passes_the_khronos_validator(bottle) -> None:
    if reason := validator_missing():
        pytest.skip(reason)
    _, _, path = bottle
    report = validate_glb(path)
    assert report["issues"]["numErrors"] == 0, issue_summary(report)
    assert report["issues"]["numWarnings"] == 0, issue_summary(report)


def test_no_black_texels_where_the_model_reads_them(bottle) -> None:
    """The bottle's photos hold no black; neither may any texel the mesh or mipmaps read: unseen
    faces (its bottom) are filled by diffusion, gutters by dilation and push-pull."""
    baked, _, _ = bottle
    size = baked.texture.shape[0]
    face_id, _ = rasterize_atlas(baked.uv * size, baked.faces, size)
    # Unfilled texels would be (0, 0, 0); the darkest print (a barcode) stays above 3.
    darkest = baked.texture.max(axis=2)
    assert (darkest[face_id >= 0] < 3).sum() == 0
    assert (darkest < 3).sum() == 0  # gutters and unused space too
    unseen = baked.face_view < 0
    assert 0 < unseen.sum() < 0.3 * len(unseen)  # the bottom: no photo looks from below
    unseen_texels = np.isin(face_id, np.flatnonzero(unseen))
    assert darkest[unseen_texels].min() >= 12


def test_uv_and_faces_describe_the_input_mesh(bottle) -> None:
    baked, _, _ = bottle
    capture = load_capture("bottle_table")
    np.testing.assert_array_equal(baked.source_vertex[baked.faces], capture.faces)
    np.testing.assert_allclose(baked.vertices, capture.vertices[baked.source_vertex])
    assert (baked.uv >= 0).all()
    assert (baked.uv <= 1).all()
    assert baked.stats["used_texel_fraction"] > 0.4  # the atlas is not mostly empty


def test_a_face_squashed_to_a_line_takes_no_texel() -> None:
    """Faces that are lines (slivers snapped flat onto a box's edge) cover nothing: xatlas
    left them unpacked, stretched across the atlas, where they took other faces' texels."""
    capture = load_capture("bottle_table")
    vertices, faces = capture.vertices, capture.faces
    edges = faces[:: len(faces) // 200, :2]  # 200 edges of the mesh, each given a sliver
    middles = len(vertices) + np.arange(len(edges))
    vertices = np.vstack([vertices, vertices[edges].mean(axis=1)])
    slivers = np.column_stack([edges[:, 0], middles, edges[:, 1]])
    faces = np.vstack([faces, slivers])
    baked = bake_texture(vertices, faces, capture.cameras, capture.images, capture.masks, OPTIONS)
    size = baked.texture.shape[0]
    flat = np.arange(len(capture.faces), len(faces))
    corners = baked.uv[baked.faces[flat]] * size
    assert np.abs(corners - corners[:, :1]).max() == 0.0  # each at one point of the atlas
    face_id, _ = rasterize_atlas(baked.uv * size, baked.faces, size)
    assert not np.isin(face_id, flat).any()
    assert baked.stats["flat_faces"] >= len(flat)


def test_view_selection_smoothing_makes_large_patches(bottle) -> None:
    baked, _, _ = bottle
    stats = baked.stats
    assert stats["patches"] < 0.7 * stats["patches_unsmoothed"], stats
    capture = load_capture("bottle_table")
    adjacency = trimesh.Trimesh(capture.vertices, capture.faces, process=False).face_adjacency
    assert count_patches(baked.face_view, adjacency) == stats["patches"]


def test_transfer_texture_copies_the_model_onto_a_simplified_surface(bottle, tmp_path) -> None:
    """A size tier: the bottle simplified to half its faces takes the baked model's colours,
    its charts laid out as the photos of the model's faces saw them, nearly as well as baking
    the simplified surface from the photos again (measured: 28.1 against 28.6 dB)."""
    baked, _, path = bottle
    capture = load_capture("bottle_table")
    source = load_textured_mesh(path).primitives[0]
    target = meshing.simplify(
        trimesh.Trimesh(capture.vertices, capture.faces, process=False), len(capture.faces) // 2
    )
    options = dataclasses.replace(OPTIONS, texture_size=512)
    rebaked = bake_texture(
        target.vertices, target.faces, capture.cameras, capture.images, capture.masks, options
    )

    def score(result: BakedTexture, name: str) -> dict:
        glb = tmp_path / name
        write_glb(glb, result.vertices, result.faces, result.uv, result.texture)
        return score_texture(load_textured_mesh(glb), capture.novel_dir)

    rebaked_score = score(rebaked, "rebaked.glb")
    # Faces no photo saw in the model (its base) stay unseen; the rest keep a photo's layout.
    unseen = (baked.face_view < 0).mean() + 0.03
    for views, most_unseen in ((baked.face_view, unseen), (None, 1.0)):
        tier = transfer_texture(
            source, target.vertices, target.faces, capture.cameras, options, source_views=views
        )
        assert tier.texture.shape == (512, 512, 3)
        assert len(tier.faces) == len(target.faces)
        assert tier.stats["unseen_faces"] <= most_unseen * len(tier.faces)
        tier_score = score(tier, f"tier_{views is None}.glb")
        assert tier_score["psnr_db"] >= rebaked_score["psnr_db"] - 1.0, (tier_score, rebaked_score)
        assert tier_score["coverage"] >= 0.99
    with pytest.raises(ValueError, match="source_views"):
        transfer_texture(
            source, target.vertices, target.faces, capture.cameras, source_views=np.zeros(3)
        )


def test_exposure_levelling_hides_photo_to_photo_brightness(tmp_path) -> None:
    """Photos with ±20 % gain per colour channel (auto exposure and white balance)."""
    capture = load_capture("cereal_box")
    rng = np.random.default_rng(5)
    true_gains = rng.uniform(0.8, 1.2, (len(capture.images), 3))
    images = [
        np.clip(image * gain, 0, 255).astype(np.uint8)
        for image, gain in zip(capture.images, true_gains, strict=True)
    ]
    levelled, score, _ = bake_and_score(capture, tmp_path, images=images)
    plain = dataclasses.replace(OPTIONS, level_exposure=False, level_seams=False)
    _, plain_score, _ = bake_and_score(capture, tmp_path, plain, images=images)
    assert score["psnr_db"] >= plain_score["psnr_db"] + 3.0, (score, plain_score)
    assert score["psnr_db"] >= CEREAL_MIN_PSNR_DB - 1.5, score
    # The estimated gains undo the applied ones, up to one common factor.
    product = np.asarray(levelled.stats["exposure_gains"]) * true_gains
    assert (product.std(axis=0) / product.mean(axis=0)).max() < 0.03


def test_a_dense_capture_is_coloured_from_photos_spread_round_it(tmp_path) -> None:
    """Capped at 8 photos, the mug's faces take their colours from 8 of its 22 baked photos
    (24 less the two held out), as many as face it enough to be chosen."""
    workspace, _ = truth_workspace(tmp_path / "job", "mug", masks=True)
    run(workspace, dataclasses.replace(OPTIONS, max_photos=8))
    face_views = np.load(workspace.face_views_path)
    used = set(face_views[face_views >= 0].tolist())
    assert 6 <= len(used) <= 8
    assert (face_views >= 0).mean() > 0.6


def test_blurry_photos_colour_only_what_no_sharp_photo_sees(tmp_path) -> None:
    """Four of the cereal box's photos shaken (a 15 px smear): the capture's checks call them
    blurry, and the texture takes (almost) no face from them and holds none out; without the
    checks' verdict they colour their share of the faces."""
    workspace, capture = truth_workspace(tmp_path / "job", "cereal_box", masks=True)
    names = [camera.name for camera in capture.cameras]
    shaken = [2, 8, 14, 20]
    smear = np.full((1, 15), 1 / 15, np.float32)
    for index in shaken:
        path = workspace.sfm_image_path(names[index])
        cv2.imwrite(str(path), cv2.filter2D(cv2.imread(str(path)), -1, smear))
    checks = capture_qa.check_photos([workspace.sfm_image_path(name) for name in names])
    assert {name for name, entry in checks.items() if entry["problems"]} == {
        names[i] for i in shaken
    }

    def share_from_shaken(qa: dict) -> tuple[float, set[str]]:
        """The share of faces coloured from the shaken photos, and the photos held out."""
        workspace.capture_path.write_text(
            json.dumps({"images": [{"name": name} for name in names], "qa": qa})
        )
        result = run(workspace, OPTIONS)
        face_views = np.load(workspace.face_views_path)
        held_out = {photo["image"] for photo in result.fidelity}
        return float(np.isin(face_views, shaken).mean()), held_out

    share, held_out = share_from_shaken({"images": checks})
    assert share < 0.02
    assert not {names[i] for i in shaken} & held_out
    assert share_from_shaken({})[0] > 0.08


def test_run_reads_and_writes_the_workspace(tmp_path) -> None:
    """A workspace in an SfM frame (the truth frame) with orient.json taking it elsewhere."""
    workspace, capture = truth_workspace(tmp_path / "job", "mug", masks=True)
    angle = np.radians(35)
    matrix = np.eye(4)
    matrix[:3, :3] = 2.0 * np.array(
        [[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]]
    )
    matrix[:3, 3] = [0.1, -0.2, 0.3]
    workspace.orient_path.write_text(json.dumps({"matrix": matrix.tolist()}))

    events: list[tuple[str, float, str]] = []
    result = run(
        workspace, OPTIONS, progress=lambda stage, f, message: events.append((stage, f, message))
    )

    assert result.model_path == workspace.textured_model_path
    assert result.model_path.exists()
    assert result.faces == len(capture.faces)
    assert result.timings_s["total"] > 0
    assert {stage for stage, _, _ in events} == {"texture"}
    assert events[-1][1] == 1.0
    fractions = [fraction for _, fraction, _ in events]
    assert fractions == sorted(fractions)
    # The photo of each face, as an index into cameras.json (held-out photos colour none).
    face_views = np.load(workspace.face_views_path)
    assert face_views.shape == (len(capture.faces),)
    assert (face_views >= 0).mean() > 0.6  # measured 0.68: no photo sees inside the mug
    assert face_views.max() < len(capture.cameras)
    held_out = set(range(len(capture.cameras))) - set(face_views.tolist())
    assert len(held_out) >= OPTIONS.holdout_photos

    model = load_textured_mesh(result.model_path)
    expected = capture.vertices @ matrix[:3, :3].T + matrix[:3, 3]
    # (Within 0.1 mm: the flat base is found as a plane and its vertices put on the fit.)
    np.testing.assert_allclose(model.bounds, [expected.min(0), expected.max(0)], atol=1e-4)
    # The held-out views, seen by the same cameras moved into the output frame.
    novel = read_cameras_json(capture.novel_dir / "cameras.json")
    moved_dir = tmp_path / "novel"
    moved_dir.mkdir()
    for camera in novel:
        shutil.copyfile(capture.novel_dir / camera.name, moved_dir / camera.name)
    cameras_json = {"cameras": [camera.transformed(matrix).to_json() for camera in novel]}
    (moved_dir / "cameras.json").write_text(json.dumps(cameras_json))
    score = score_texture(model, moved_dir)
    # Measured 28.1 dB: lower than the bottle because no photo sees the mug's inner floor.
    assert score["psnr_db"] >= 26.0, score


# -- the pure parts ---------------------------------------------------------------------------


def test_rasterized_texels_know_their_triangle_and_position() -> None:
    size = 32
    uv_texels = np.array([[4.0, 4.0], [28.0, 6.0], [10.0, 27.0]])
    face_id, bary = rasterize_atlas(uv_texels, np.array([[0, 1, 2]]), size)
    rows, columns = np.nonzero(face_id == 0)
    # Texel (row r, column c) sits at uv-texel (c + ½, S - r - ½): barycentrics must rebuild it,
    # exactly inside the triangle and as the nearest point on it in the one-texel ring outside.
    centres = np.column_stack([columns + 0.5, size - rows - 0.5])
    rebuilt = bary[rows, columns].astype(np.float64) @ uv_texels
    distance = np.linalg.norm(rebuilt - centres, axis=1)
    assert distance.max() <= 1.0 + 1e-4
    (ax, ay), (bx, by) = uv_texels[1] - uv_texels[0], uv_texels[2] - uv_texels[0]
    area = 0.5 * abs(ax * by - ay * bx)
    inside = distance < 1e-4
    assert abs(inside.sum() - area) < 0.1 * area
    assert (bary[rows, columns] >= -1e-6).all()
    np.testing.assert_allclose(bary[rows, columns].sum(axis=1), 1.0, atol=1e-5)
    assert (face_id[0] == -1).all()  # far from the triangle: untouched


def test_smoothing_merges_noisy_labels_into_patches() -> None:
    """A strip of faces seen almost equally well by two photos, with noise deciding each face."""
    n = 400
    rng = np.random.default_rng(0)
    quality = np.column_stack([1.0 + 0.1 * rng.random(n), 1.0 + 0.1 * rng.random(n)])
    quality[:50, 1] = 0.0  # the first faces are hidden from photo 1
    adjacency = np.column_stack([np.arange(n - 1), np.arange(1, n)])
    cost = data_cost(quality)
    raw = np.argmin(cost, axis=1)
    smoothed = select_views(cost, adjacency, OPTIONS)
    assert count_patches(raw, adjacency) > 50
    assert count_patches(smoothed, adjacency) <= count_patches(raw, adjacency) // 10
    assert (smoothed[:50] == 0).all()  # never a photo that does not see the face


def test_exposure_gains_recover_known_gains() -> None:
    rng = np.random.default_rng(1)
    n_faces, n_views = 500, 6
    albedo = rng.uniform(40, 200, (n_faces, 3))
    gains = rng.uniform(0.7, 1.3, (n_views, 3))
    face = np.repeat(np.arange(n_faces), n_views)
    view = np.tile(np.arange(n_views), n_faces)
    colors = albedo[face] * gains[view] * rng.normal(1, 0.01, (len(face), 1))
    estimated = exposure_gains((face, view, colors.astype(np.float32)), n_views)
    product = estimated * gains
    np.testing.assert_allclose(product / product.mean(axis=0), 1.0, atol=0.01)


def test_fill_keeps_texels_and_leaves_no_holes() -> None:
    colors = np.zeros((64, 64, 3), np.float32)
    covered = np.zeros((64, 64), bool)
    covered[20:30, 20:30] = True
    colors[covered] = (200, 100, 50)
    texture = fill_atlas(colors, covered, padding_px=3)
    np.testing.assert_array_equal(texture[covered], np.tile([200, 100, 50], (100, 1)))
    np.testing.assert_array_equal(texture[17:33, 17:33].reshape(-1, 3)[0], [200, 100, 50])
    assert (texture.max(axis=2) > 0).all()


def test_photos_colour_the_model_only_inside_the_products_outline() -> None:
    # A product's outline as the masks stage finds it, then grown by its margin (400 px photo).
    rows, columns = np.mgrid[:400, :400]
    outline = (rows - 200) ** 2 + (columns - 180) ** 2 <= 120**2
    options = TextureOptions()
    margin_px = round(options.mask_margin_rel * 400)
    grown = cv2.dilate(
        outline.astype(np.uint8),
        cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin_px + 1,) * 2),
    ).astype(bool)
    assert (grown & ~outline).sum() > 2000  # the margin: backdrop a photo must not bake
    allowed = bakeable(grown, options)
    assert not (allowed & ~outline).any()
    depth_inside = cv2.distanceTransform(outline.astype(np.uint8), cv2.DIST_L2, 5)
    assert not allowed[depth_inside <= options.outline_inset_px - 0.5].any()  # outline blends
    assert allowed[depth_inside > options.outline_inset_px + 1.5].all()
    # A mask that was not grown (mask_margin_rel 0) only loses the blended outline.
    tight = bakeable(outline, dataclasses.replace(options, mask_margin_rel=0.0))
    assert tight[depth_inside > options.outline_inset_px + 1.5].all()
    assert not (tight & ~outline).any()


def test_bad_arguments_are_refused() -> None:
    capture = load_capture("cereal_box")
    with pytest.raises(ValueError, match="power of two"):
        bake_texture(
            capture.vertices,
            capture.faces,
            capture.cameras,
            capture.images,
            options=TextureOptions(texture_size=1000),
        )
    with pytest.raises(ValueError, match="equal numbers"):
        bake_texture(capture.vertices, capture.faces, capture.cameras, capture.images[:3])


def test_run_says_what_is_missing(tmp_path) -> None:
    workspace = Workspace(tmp_path / "job")
    workspace.create()
    with pytest.raises(StageError, match="run the mesh stage first"):
        run(workspace)
    workspace.mesh_path.parent.mkdir(parents=True)
    shutil.copyfile(SAMPLE_CAPTURES_DIR / "mug" / "truth" / "mesh.ply", workspace.mesh_path)
    with pytest.raises(StageError, match="SfM cameras"):
        run(workspace)
    workspace.write_sfm_cameras(read_cameras_json(SAMPLE_CAPTURES_DIR / "mug/truth/cameras.json"))
    workspace.orient_path.write_text(json.dumps({"matrix": [[1, 0], [0, 1]]}))
    with pytest.raises(StageError, match="orient"):
        run(workspace)
    workspace.orient_path.unlink()
    with pytest.raises(StageError, match="cannot read photo"):
        run(workspace)


def test_photo_consistency_keeps_an_unseen_occluder_out(tmp_path) -> None:
    """Every third photo has a red blob over the product (a hand, a reflection: something the
    depth test of the product's own mesh cannot see); the other photos of those faces agree on
    their colour and outvote it."""
    capture = load_capture("cereal_box")
    images = [image.copy() for image in capture.images]
    for image, mask in list(zip(images, capture.masks, strict=True))[::3]:
        rows, columns = np.nonzero(mask)
        centre = (int(columns.mean()), int(rows.mean()))
        cv2.circle(image, centre, int(0.3 * np.sqrt(mask.sum())), (230, 20, 20), -1)
    _, clean, _ = bake_and_score(capture, tmp_path)
    _, checked, _ = bake_and_score(capture, tmp_path, images=images)
    unchecked = dataclasses.replace(OPTIONS, consistency_levels=0.0)
    _, plain, _ = bake_and_score(capture, tmp_path, unchecked, images=images)
    # Measured: clean 28.1 dB (28.1 unchecked), blobs checked 26.4 dB, unchecked 14.2 dB.
    assert checked["psnr_db"] >= plain["psnr_db"] + 6.0, (checked, plain)
    assert checked["psnr_db"] >= clean["psnr_db"] - 2.5, (checked, clean)


def test_inconsistent_samples_outvoted_only_by_a_majority() -> None:
    grey, red, blue, white = (120, 120, 120), (230, 20, 20), (20, 20, 230), (240, 240, 240)
    # Face 0: three photos, one red. Face 1: two photos that disagree (no majority). Face 2:
    # three photos that all disagree. Face 3: photo 1 sees it white, twice as bright as the
    # others: an outlier, unless photo 1's exposure gain is 0.5.
    face = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3])
    view = np.array([0, 2, 3, 0, 2, 0, 1, 2, 0, 1, 2])
    rgb = np.array([grey, red, grey, grey, red, grey, red, blue, grey, white, grey], np.float32)
    gains = np.ones((4, 3))
    outliers = inconsistent_samples((face, view, rgb), gains, 40.0)
    np.testing.assert_array_equal(outliers, [0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0])
    gains[1] = 0.5
    outliers = inconsistent_samples((face, view, rgb), gains, 40.0)
    np.testing.assert_array_equal(outliers, [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0])


def test_refine_surface_moves_an_inflated_box_back(tmp_path) -> None:
    """The cereal box 1 % too large (its sides ~1 px out, as the reconstructed box's were):
    its print lands shifted in other views until the surface moves back to where the photos
    agree."""
    capture = load_capture("cereal_box")
    box = trimesh.Trimesh(capture.vertices, capture.faces, process=False).subdivide()
    centre = box.bounds.mean(axis=0)
    inflated = centre + (np.asarray(box.vertices) - centre) * 1.01
    faces = np.asarray(box.faces)
    refined, stats = refine_surface(
        inflated, faces, capture.cameras, capture.images, capture.masks, OPTIONS
    )
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(capture.vertices.astype(np.float32)),
        o3d.core.Tensor(capture.faces.astype(np.uint32)),
    )

    def mean_distance(vertices: np.ndarray) -> float:
        points = o3d.core.Tensor(vertices.astype(np.float32))
        return float(scene.compute_distance(points).numpy().mean())

    # Measured: 0.71 -> 0.33 mm from the true box; 20.9 -> 26.6 dB (the true box: 28.1 dB).
    before, after = mean_distance(inflated), mean_distance(refined)
    assert after <= 0.6 * before, (before, after, stats)
    scores = {}
    for name, vertices in (("inflated", inflated), ("refined", refined)):
        folder = tmp_path / name
        folder.mkdir()
        moved = dataclasses.replace(capture, vertices=vertices, faces=faces)
        scores[name] = bake_and_score(moved, folder)[1]["psnr_db"]
    assert scores["refined"] >= scores["inflated"] + 4.0, (scores, before, after)


def test_place_planes_moves_a_box_face_set_out_back_to_where_the_photos_agree() -> None:
    """The cereal box's faces, each found as a plane and then set 0.6 px out (as fusion left
    the reconstructed box's sides): the photos' colours over each whole face bring it back."""
    capture = load_capture("cereal_box")
    box = trimesh.Trimesh(capture.vertices, capture.faces, process=False).subdivide().subdivide()
    vertices, faces = np.asarray(box.vertices), np.asarray(box.faces)
    footprint = median_footprint(vertices, capture.cameras)
    planes = find_planes(vertices, faces, footprint, OPTIONS.planes)
    assert len(planes) == 6
    out = 0.6
    moved = [dataclasses.replace(p, offset=p.offset + out * footprint) for p in planes]
    shifted, stats = place_planes(
        vertices, faces, moved, footprint, capture.cameras, capture.images, capture.masks, OPTIONS
    )
    assert stats["planes_refused"] == 0, stats
    steps = stats["plane_shifts_px"]
    # Faces the photos see come back to within 0.25 px (0.6 px out is 0.45 mm here; measured
    # 0.7-0.8 px back); the bottom, which no photo sees, stays where it was put.
    seen = [k for k, step in enumerate(steps) if step != 0.0]
    assert len(seen) >= 5, steps
    for k in seen:
        assert abs(steps[k] + out) <= 0.25, steps
        assert abs(shifted[k].offset - planes[k].offset) <= 0.25 * footprint
    # Snapped to the shifted planes, the seen faces stay on the true box (within 0.25 px;
    # vertices near an edge may slide onto it, along the surface), away from the unseen one.
    snapped, _ = snap_to_planes(vertices, faces, shifted, footprint, OPTIONS.planes)
    away = np.ones(len(vertices), bool)
    for plane, step in zip(moved, steps, strict=True):
        if step == 0.0:
            away &= (
                np.abs(vertices @ plane.normal - plane.offset)
                > 2 * OPTIONS.planes.edge_px * footprint
            )
    on_seen = np.unique(faces[np.concatenate([planes[k].faces for k in seen])])
    on_seen = on_seen[away[on_seen]]
    true_box = trimesh.Trimesh(capture.vertices, capture.faces, process=False)
    assert distance_to_mesh(true_box, snapped[on_seen]).max() <= 0.25 * footprint


def test_place_planes_refuses_a_plane_the_photos_disagree_with() -> None:
    """A plane tilted against the box face it was found on (its ends 2 px off the face, within
    reach of the snap): no move along its normal makes the photos agree, so it is refused and
    the face stays as it is."""
    capture = load_capture("cereal_box")
    box = trimesh.Trimesh(capture.vertices, capture.faces, process=False).subdivide().subdivide()
    vertices, faces = np.asarray(box.vertices), np.asarray(box.faces)
    footprint = median_footprint(vertices, capture.cameras)
    planes = find_planes(vertices, faces, footprint, OPTIONS.planes)
    face = planes[0]  # the largest: a broad face of the box
    points = vertices[np.unique(faces[face.faces])]
    spread = points - points.mean(axis=0)
    along = np.linalg.svd(spread, full_matrices=False)[2][0]  # the face's long direction
    half_length = np.abs(spread @ along).max()
    tilt = 2 * footprint / half_length  # radians: its ends 2 px off the face
    normal = face.normal + tilt * along
    normal /= np.linalg.norm(normal)
    tilted = dataclasses.replace(face, normal=normal, offset=float(normal @ points.mean(axis=0)))
    placed, stats = place_planes(
        vertices,
        faces,
        [tilted],
        footprint,
        capture.cameras,
        capture.images,
        capture.masks,
        OPTIONS,
    )
    assert stats["planes_refused"] == 1, stats
    assert placed == []
    kept, _ = place_planes(
        vertices,
        faces,
        [face],
        footprint,
        capture.cameras,
        capture.images,
        capture.masks,
        OPTIONS,
    )
    assert len(kept) == 1
