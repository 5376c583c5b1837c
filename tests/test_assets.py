"""The export stage and publishing: GLB, USDZ and poster staged, published atomically, withdrawn."""

from __future__ import annotations

import dataclasses
import json

import cv2
import numpy as np
import trimesh
from PIL import Image
from pxr import Usd, UsdGeom

from recon import assets, pipeline, texturing
from recon.export import write_glb
from recon.poster import PosterOptions
from recon.textured_mesh import load_textured_mesh
from recon.texturing import TextureOptions
from recon.workspace import PUBLISHED_FILES, Workspace
from tests.gltf_validator import issue_summary, validate_glb, validator_missing
from tests.test_export import quadrant_texture, textured_box
from tests.test_texturing import truth_workspace


def textured_workspace(tmp_path) -> Workspace:
    """A job folder whose texture stage has finished (a small textured box)."""
    workspace = Workspace(tmp_path / "out")
    workspace.create()
    vertices, faces, uv = textured_box()
    write_glb(workspace.textured_model_path, vertices, faces, uv, quadrant_texture())
    return workspace


SMALL = assets.AssetOptions(poster_options=PosterOptions(size_px=128), tiers=())


def test_export_stages_glb_usdz_and_poster_of_the_same_model(tmp_path) -> None:
    workspace = textured_workspace(tmp_path)
    result = assets.run(workspace, SMALL)

    assert set(result.files) == set(PUBLISHED_FILES)
    assert result.usdz_arkit_compliant is True
    assert result.warnings == []
    glb = workspace.staged_path("model.glb")
    assert glb.read_bytes() == workspace.textured_model_path.read_bytes()
    # Same frame and scale: the USDZ's points are the GLB's vertices.
    mesh = trimesh.load(glb, force="mesh", process=False)
    stage = Usd.Stage.Open(str(workspace.staged_path("model.usdz")))
    usd_mesh = next(UsdGeom.Mesh(p) for p in stage.Traverse() if p.IsA(UsdGeom.Mesh))
    np.testing.assert_allclose(np.asarray(usd_mesh.GetPointsAttr().Get()), mesh.vertices, atol=1e-6)
    assert result.files["poster.webp"] == workspace.staged_path("poster.webp").stat().st_size > 0
    with Image.open(workspace.staged_path("thumbnail.webp")) as thumbnail:
        assert thumbnail.size == (256, 256)


def test_export_can_leave_out_usdz_and_poster(tmp_path) -> None:
    workspace = textured_workspace(tmp_path)
    result = assets.run(workspace, assets.AssetOptions(usdz=False, poster=False))
    assert set(result.files) == {"model.glb"}
    assert result.usdz_arkit_compliant is None


def test_publish_puts_every_staged_file_and_the_report_in_place_and_unpublish_removes_them(
    tmp_path,
) -> None:
    workspace = textured_workspace(tmp_path)
    assets.run(workspace, SMALL)
    report = {"version": 1, "status": "succeeded"}
    pipeline.publish(workspace, report)

    for name in PUBLISHED_FILES:
        published = workspace.published_path(name)
        assert published.read_bytes() == workspace.staged_path(name).read_bytes()
    assert json.loads(workspace.report_path.read_text()) == report
    leftovers = [p.name for p in workspace.out_dir.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no temporary names left behind

    pipeline.unpublish(workspace)
    assert not workspace.report_path.exists()
    assert not any(workspace.published_path(name).exists() for name in PUBLISHED_FILES)
    assert workspace.staged_path("model.usdz").exists()  # a resumed job can publish again


def test_publish_withdraws_an_old_file_that_the_new_run_did_not_make(tmp_path) -> None:
    workspace = textured_workspace(tmp_path)
    assets.run(workspace, SMALL)
    pipeline.publish(workspace, {"version": 1})
    assets.run(workspace, assets.AssetOptions(poster=False))
    pipeline.publish(workspace, {"version": 1})
    assert workspace.model_path.exists()
    assert workspace.usdz_path.exists()
    assert not workspace.poster_path.exists()


def test_size_tiers_are_smaller_copies_of_the_model_in_its_frame(tmp_path) -> None:
    """The mug's true mesh and photos in a workspace; the tiers are baked from them."""
    workspace, capture = truth_workspace(tmp_path / "job", "mug", masks=False)
    matrix = np.diag([2.0, 2.0, 2.0, 1.0])  # an orientation that scales: tiers must follow it
    matrix[:3, 3] = [0.1, -0.2, 0.3]
    workspace.orient_path.write_text(json.dumps({"matrix": matrix.tolist()}))
    texture_options = TextureOptions(texture_size=256)
    texturing.run(workspace, texture_options)
    faces = len(capture.faces)  # 15,616
    options = dataclasses.replace(
        SMALL,
        usdz=False,
        tiers=(
            assets.SizeTier(max_faces=20_000, texture_size=256),
            assets.SizeTier(max_faces=16_000, texture_size=128),
            assets.SizeTier(max_faces=4_000, texture_size=128),
        ),
    )

    result = assets.run(workspace, options, texture_options=texture_options)

    fits, shrunk, smaller = result.tiers
    # Few enough faces, too large a texture: the model's own mesh with its texture shrunk.
    assert shrunk["file"] == "model_16k.glb"
    assert shrunk["faces"] == faces
    shrunk_mesh = load_textured_mesh(workspace.staged_path("model_16k.glb")).primitives[0]
    model_mesh = load_textured_mesh(workspace.staged_path("model.glb")).primitives[0]
    assert shrunk_mesh.texture.shape == (128, 128, 3)
    np.testing.assert_allclose(shrunk_mesh.uv, model_mesh.uv, atol=1e-6)
    expected = cv2.resize(model_mesh.texture, (128, 128), interpolation=cv2.INTER_AREA)
    # The same picture, up to JPEG (a busy 128² atlas: mean difference ~6 levels).
    assert np.corrcoef(expected.reshape(-1), shrunk_mesh.texture.reshape(-1))[0, 1] > 0.9
    assert fits["file"] == "model.glb"  # the model already fits: listed, not copied
    assert fits["faces"] == faces
    assert smaller["file"] == "model_4k.glb"
    assert smaller["texture_size"] == 128
    assert 3_000 < smaller["faces"] <= 4_000
    assert smaller["bytes"] == result.files["model_4k.glb"]
    model = load_textured_mesh(workspace.staged_path("model.glb"))
    tier = load_textured_mesh(workspace.staged_path("model_4k.glb"))
    assert tier.primitives[0].texture.shape == (128, 128, 3)
    diagonal = float(np.linalg.norm(np.ptp(model.bounds, axis=0)))
    np.testing.assert_allclose(tier.bounds, model.bounds, atol=0.01 * diagonal)
    if validator_missing() is None:  # the tier is a GLB like the model: valid for shops too
        validation = validate_glb(workspace.staged_path("model_4k.glb"))
        assert validation["issues"]["numErrors"] == 0, issue_summary(validation)

    pipeline.publish(workspace, {"version": 1})
    assert workspace.published_path("model_4k.glb").exists()
    pipeline.unpublish(workspace)
    assert workspace.published_files() == []
