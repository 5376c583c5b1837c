"""The export stage and publishing: GLB, USDZ and poster staged, published atomically, withdrawn."""

from __future__ import annotations

import json

import numpy as np
import trimesh
from pxr import Usd, UsdGeom

from recon import assets, pipeline
from recon.export import write_glb
from recon.poster import PosterOptions
from recon.workspace import PUBLISHED_FILES, Workspace
from tests.test_export import quadrant_texture, textured_box


def textured_workspace(tmp_path) -> Workspace:
    """A job folder whose texture stage has finished (a small textured box)."""
    workspace = Workspace(tmp_path / "out")
    workspace.create()
    vertices, faces, uv = textured_box()
    write_glb(workspace.textured_model_path, vertices, faces, uv, quadrant_texture())
    return workspace


SMALL = assets.AssetOptions(poster_options=PosterOptions(size_px=128))


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
