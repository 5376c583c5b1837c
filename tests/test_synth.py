"""`recon synth`: captures of real and procedural products, with truth that matches the photos."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from recon import cli, synth
from recon.cameras import read_cameras_json
from recon.errors import InputError
from tests.test_render import iou, rasterized_silhouette

SMALL = synth.SynthOptions(views=6, size_px=256, novel_views=2)


def check_capture(capture: Path, options: synth.SynthOptions, *, min_iou: float = 0.98) -> None:
    """Every photo's truth mask agrees with the truth mesh projected through its truth camera."""
    cameras = read_cameras_json(capture / "truth" / "cameras.json")
    assert len(cameras) == options.views
    assert sorted(p.name for p in (capture / "images").iterdir()) == [c.name for c in cameras]
    mesh = trimesh.load(capture / "truth" / "mesh.ply", process=False)
    assert mesh.bounds[0, 1] == pytest.approx(0.0, abs=1e-9)  # resting on y = 0
    np.testing.assert_allclose((mesh.bounds[0] + mesh.bounds[1])[[0, 2]], 0.0, atol=1e-9)
    for camera in cameras:
        photo = np.asarray(Image.open(capture / "images" / camera.name))
        assert photo.shape == (options.size_px, options.size_px, 3)
        mask = np.asarray(
            Image.open(capture / "truth" / "masks" / camera.name.replace(".jpg", ".png"))
        )
        expected = rasterized_silhouette(mesh, camera)
        assert iou(mask.astype(bool), expected) >= min_iou, camera.name
        # The product is in the photo, whole, and not a blank render.
        assert 0.02 < mask.mean() < 0.8
        border = np.concatenate([mask[0], mask[-1], mask[:, 0], mask[:, -1]])
        assert not border.any()
        assert photo[mask.astype(bool)].std() > 5
    novel = read_cameras_json(capture / "truth" / "novel" / "cameras.json")
    assert len(novel) == options.novel_views
    for camera in novel:
        rgba = np.asarray(Image.open(capture / "truth" / "novel" / camera.name))
        assert rgba.shape[2] == 4
        assert iou(rgba[..., 3] >= 128, rasterized_silhouette(mesh, camera)) >= min_iou


@pytest.mark.parametrize("product", ["cereal_box", "bottle", "mug"])
def test_procedural_products(product: str, tmp_path: Path) -> None:
    result = synth.run(product, tmp_path / "capture", SMALL)
    check_capture(result.out_dir, SMALL)
    scene = json.loads((result.out_dir / "truth" / "scene.json").read_text())
    assert scene["model"] == f"procedural:{product}"
    assert scene["units"] == "metre"


@pytest.mark.shared_data
def test_every_shared_model(shared_data: Path, tmp_path: Path) -> None:
    folders = sorted(p for p in (shared_data / "models").iterdir() if p.is_dir())
    assert len(folders) >= 10
    for folder in folders:
        capture = tmp_path / folder.name
        synth.run(folder, capture, SMALL)
        check_capture(capture, SMALL)


def test_table_background_is_in_the_photos_but_not_the_truth(tmp_path: Path) -> None:
    options = synth.SynthOptions(
        views=4, size_px=256, novel_views=1, background=synth.Background.TABLE
    )
    result = synth.run("bottle", tmp_path / "capture", options)
    camera = result.cameras[0]
    photo = np.asarray(Image.open(result.out_dir / "images" / camera.name)).astype(int)
    mask = np.asarray(Image.open(result.out_dir / "truth" / "masks" / "img_000.png")).astype(bool)
    plain = np.array(synth.PLAIN_BACKGROUND_RGB)
    bottom_rows = photo[-40:][~mask[-40:]]
    # The tabletop fills the bottom of the frame with wood, not the plain backdrop.
    assert np.abs(bottom_rows - plain).sum(axis=1).mean() > 60
    assert bottom_rows.std() > 10
    truth = trimesh.load(result.out_dir / "truth" / "mesh.ply", process=False)
    assert truth.extents.max() < 0.3  # the table (≈ 1 m) is not part of the truth


@pytest.mark.parametrize("background", [synth.Background.BLACK, synth.Background.WHITE])
def test_black_and_white_backdrops_surround_the_product(tmp_path: Path, background) -> None:
    options = synth.SynthOptions(views=3, size_px=128, novel_views=1, background=background)
    result = synth.run("bottle", tmp_path / "capture", options)
    photo = np.asarray(Image.open(result.out_dir / "images" / "img_000.jpg")).astype(int)
    mask = np.asarray(Image.open(result.out_dir / "truth" / "masks" / "img_000.png")).astype(bool)
    around = photo[~mask]
    # JPEG blurs the product's edge into a few of them; the rest is the backdrop's colour.
    assert np.median(np.abs(around - synth.backdrop_rgb(background)).sum(axis=1)) < 6
    assert np.abs(photo[mask] - synth.backdrop_rgb(background)).sum(axis=1).mean() > 60


def test_cameras_ring_the_product_and_look_at_it() -> None:
    options = synth.SynthOptions(views=24)
    cameras = synth.ring_cameras(np.array([0, 0.1, 0]), 0.15, 24, options, np.random.default_rng(0))
    centers = np.array([c.center for c in cameras])
    elevations = np.degrees(
        np.arcsin((centers[:, 1] - 0.1) / np.linalg.norm(centers - [0, 0.1, 0], axis=1))
    )
    assert np.allclose(np.sort(elevations)[:12], 15, atol=3.01)
    assert np.allclose(np.sort(elevations)[12:], 40, atol=3.01)
    azimuths = np.sort(np.degrees(np.arctan2(centers[:12, 0], centers[:12, 2])) % 360)
    assert np.diff(azimuths).max() < 40  # no gap in the lower ring
    for camera in cameras:
        uv, depth = camera.project(np.array([[0, 0.1, 0]]))
        assert depth[0] > 0
        assert np.linalg.norm(uv[0] - [479.5, 479.5]) < 0.08 * 960  # near the image centre


def test_seed_makes_captures_reproducible(tmp_path: Path) -> None:
    a = synth.run("mug", tmp_path / "a", SMALL)
    b = synth.run("mug", tmp_path / "b", SMALL)
    c = synth.run(
        "mug", tmp_path / "c", synth.SynthOptions(views=6, size_px=256, novel_views=2, seed=5)
    )
    np.testing.assert_array_equal(a.cameras[3].R, b.cameras[3].R)
    assert (tmp_path / "a/images/img_003.jpg").read_bytes() == (
        tmp_path / "b/images/img_003.jpg"
    ).read_bytes()
    assert not np.allclose(a.cameras[3].R, c.cameras[3].R)


def test_photos_carry_a_35mm_focal_length(tmp_path: Path) -> None:
    result = synth.run("mug", tmp_path / "capture", SMALL)
    exif = Image.open(result.out_dir / "images" / "img_000.jpg").getexif().get_ifd(0x8769)
    camera = result.cameras[0]
    assert exif[0xA405] == round(camera.K[0, 0] / camera.width * 36)  # ≈ 39 mm for a 50° view


def test_units_are_guessed_and_recorded() -> None:
    assert synth.guess_scale(0.21, None)[0] == 1.0
    assert synth.guess_scale(111.8, None) == (0.01, "model units taken as centimetres")
    assert synth.guess_scale(0.0202, None)[0] == pytest.approx(0.25 / 0.0202)
    assert synth.guess_scale(2.0, 0.5)[0] == pytest.approx(0.25)


def test_z_up_models_are_turned_upright(tmp_path: Path) -> None:
    tall = trimesh.creation.box((0.05, 0.08, 0.3))  # 30 cm along z: a Z-up file's height
    tall.export(tmp_path / "tall.glb")
    upright, _ = synth.load_product(tmp_path / "tall.glb", up_axis=synth.UpAxis.Z)
    extent = upright.bounds[1] - upright.bounds[0]
    np.testing.assert_allclose(extent, [0.05, 0.3, 0.08], atol=1e-9)
    assert upright.bounds[0, 1] == pytest.approx(0.0)


def test_bad_input_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="neither a model file nor a procedural product"):
        synth.run("teapot", tmp_path / "x")
    with pytest.raises(InputError, match="at least 3 photos"):
        synth.run("mug", tmp_path / "x", synth.SynthOptions(views=2))
    (tmp_path / "broken.glb").write_bytes(b"glTF not really")
    with pytest.raises(InputError, match="cannot read model"):
        synth.run(tmp_path / "broken.glb", tmp_path / "x")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no model file"):
        synth.run(tmp_path / "empty", tmp_path / "x")
    synth.run("mug", tmp_path / "done", SMALL)
    with pytest.raises(InputError, match="already holds a capture"):
        synth.run("mug", tmp_path / "done", SMALL)
    assert not (tmp_path / "x").exists()


def test_cli_synth_and_its_errors(tmp_path: Path, capsys) -> None:
    code = cli.main(
        [
            "synth",
            "bottle",
            str(tmp_path / "cap"),
            "--views",
            "4",
            "--size",
            "200",
            "--novel-views",
            "1",
            "--background",
            "table",
        ]
    )
    assert code == 0
    assert len(list((tmp_path / "cap" / "images").glob("*.jpg"))) == 4
    assert cli.main(["synth", "teapot", str(tmp_path / "other")]) == 2
    error = capsys.readouterr().err
    assert "neither a model file nor a procedural product" in error
    assert "Traceback" not in error
