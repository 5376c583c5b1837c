"""Draco-compressed GLBs and size budgets: valid, same triangles, smaller; budgets really fit."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import trimesh
from pxr import Usd, UsdGeom
from scipy.spatial import cKDTree

from recon import assets, texturing
from recon.commerce import MB, inspect_glb
from recon.compress import DracoOptions, compress_glb, decompress_glb, is_draco_glb
from recon.export import glb_bytes
from recon.pipeline import ReconOptions
from recon.poster import PosterOptions
from recon.textured_mesh import load_textured_mesh
from recon.texturing import TextureOptions
from tests.conftest import SAMPLE_CAPTURES_DIR
from tests.gltf_validator import issue_summary, validate_glb, validator_missing
from tests.test_assets import textured_workspace
from tests.test_texturing import truth_workspace

NO_EXTRAS = assets.AssetOptions(usdz=False, poster=False, tiers=())


def mug_glb(texture_px: int = 256) -> tuple[bytes, trimesh.Trimesh]:
    """The sample mug's true mesh (15,616 triangles) with planar UVs and a noisy texture."""
    mesh = trimesh.load(SAMPLE_CAPTURES_DIR / "mug" / "truth" / "mesh.ply", process=False)
    low, high = mesh.bounds
    uv = (mesh.vertices[:, [0, 1]] - low[[0, 1]]) / (high - low)[[0, 1]]
    rng = np.random.default_rng(1)
    texture = rng.integers(0, 255, (texture_px, texture_px, 3), dtype=np.uint8)
    return glb_bytes(mesh.vertices, mesh.faces, uv, texture), mesh


def assert_valid(path) -> None:
    if validator_missing() is None:
        validation = validate_glb(path)
        assert validation["issues"]["numErrors"] == 0, issue_summary(validation)


def test_draco_glb_is_valid_smaller_and_has_the_same_triangles(tmp_path) -> None:
    plain, mesh = mug_glb()
    compressed = compress_glb(plain)
    path = tmp_path / "model.glb"
    path.write_bytes(compressed)

    assert is_draco_glb(compressed)
    assert not is_draco_glb(plain)
    assert_valid(path)
    geometry = len(plain) - inspect_glb(plain).image_bytes
    compressed_geometry = len(compressed) - inspect_glb(compressed).image_bytes
    assert compressed_geometry < geometry / 5  # 0.75 MB of floats and indices → ~0.1 MB
    facts = inspect_glb(compressed)  # accessors still tell the counts
    assert facts.triangles == len(mesh.faces)
    # trimesh cannot decode Draco: load_textured_mesh decodes it first (via DracoPy).
    loaded = load_textured_mesh(path)
    assert sum(len(p.faces) for p in loaded.primitives) == len(mesh.faces)
    assert loaded.primitives[0].texture.shape == (256, 256, 3)
    # 14-bit positions: within 1/16384 of the size of the original surface.
    size = float(np.max(np.ptp(mesh.vertices, axis=0)))
    np.testing.assert_allclose(loaded.bounds, mesh.bounds, atol=size / 2**13)
    distances, _ = cKDTree(mesh.vertices).query(loaded.primitives[0].vertices)
    assert distances.max() < size / 2**13  # every vertex is a quantised original


def test_decompressing_gives_a_plain_glb_with_the_decoded_geometry(tmp_path) -> None:
    plain, mesh = mug_glb()
    decoded = decompress_glb(compress_glb(plain, DracoOptions(compression_level=10)))
    path = tmp_path / "plain.glb"
    path.write_bytes(decoded)
    assert not is_draco_glb(decoded)
    assert_valid(path)
    loaded = trimesh.load(path, force="mesh", process=False)
    assert len(loaded.faces) == len(mesh.faces)
    assert decompress_glb(plain) == plain  # nothing to undo


def test_compressing_twice_is_refused() -> None:
    plain, _ = mug_glb()
    with pytest.raises(ValueError, match="already"):
        compress_glb(compress_glb(plain))


def test_export_compresses_the_glb_but_not_the_usdz(tmp_path) -> None:
    workspace = textured_workspace(tmp_path)
    options = assets.AssetOptions(
        compress=True, poster_options=PosterOptions(size_px=64), tiers=(), poster=False
    )
    result = assets.run(workspace, options)

    glb = workspace.staged_path("model.glb")
    assert is_draco_glb(glb.read_bytes())
    assert result.glb["compression"] == "draco"
    assert result.glb["faces"] == 12
    assert_valid(glb)
    assert result.usdz_arkit_compliant is True  # ARKit cannot read Draco: the USDZ has none
    stage = Usd.Stage.Open(str(workspace.staged_path("model.usdz")))
    usd_mesh = next(UsdGeom.Mesh(p) for p in stage.Traverse() if p.IsA(UsdGeom.Mesh))
    source = load_textured_mesh(workspace.textured_model_path).primitives[0]
    np.testing.assert_allclose(np.asarray(usd_mesh.GetPointsAttr().Get()), source.vertices,
                               atol=1e-6)  # fmt: skip


def budget_workspace(tmp_path, texture_px: int):
    """The mug's true mesh and photos, textured at texture_px²: a budget can re-bake from it."""
    workspace, _ = truth_workspace(tmp_path / "job", "mug", masks=False)
    texture_options = TextureOptions(texture_size=texture_px)
    texturing.run(workspace, texture_options)
    return workspace, texture_options


def test_a_budget_shrinks_the_texture_first_and_the_written_file_fits(tmp_path) -> None:
    workspace, texture_options = budget_workspace(tmp_path, 1024)
    plain = assets.run(workspace, dataclasses.replace(NO_EXTRAS, compress=True),
                       texture_options=texture_options)  # fmt: skip
    full = plain.files["model.glb"]
    # Texture-heavy once compressed: the budget should come from the texture, not the mesh.
    options = dataclasses.replace(NO_EXTRAS, compress=True, max_mb=0.6 * full / MB)

    result = assets.run(workspace, options, texture_options=texture_options)

    written = workspace.staged_path("model.glb").stat().st_size
    assert written == result.files["model.glb"] == result.budget["bytes"]
    assert written <= 0.6 * full
    assert result.budget["fits"] is True
    assert result.budget["target_bytes"] == int(0.6 * full)
    steps = [step["step"] for step in result.budget["reduced"]]
    assert steps
    assert set(steps) <= {"jpeg_quality", "texture_size"}
    assert result.glb["faces"] == 15_616  # the mesh was left alone
    assert result.glb["bytes"] == written
    assert_valid(workspace.staged_path("model.glb"))
    assert result.warnings == []


def test_a_budget_simplifies_a_geometry_heavy_model(tmp_path) -> None:
    workspace, texture_options = budget_workspace(tmp_path, 128)
    full = assets.run(workspace, NO_EXTRAS, texture_options=texture_options).files["model.glb"]
    # Uncompressed floats and indices dominate: halving the triangles is what helps.
    options = dataclasses.replace(NO_EXTRAS, max_mb=0.4 * full / MB)

    result = assets.run(workspace, options, texture_options=texture_options)

    assert result.budget["fits"] is True
    assert workspace.staged_path("model.glb").stat().st_size <= 0.4 * full
    assert "faces" in [step["step"] for step in result.budget["reduced"]]
    model = load_textured_mesh(workspace.staged_path("model.glb"))
    faces = sum(len(p.faces) for p in model.primitives)
    assert faces == result.glb["faces"] <= 15_616 // 2
    assert_valid(workspace.staged_path("model.glb"))


def test_an_impossible_budget_warns_and_keeps_the_smallest_model(tmp_path) -> None:
    workspace = textured_workspace(tmp_path)  # a box without photos: no re-baking possible
    options = dataclasses.replace(NO_EXTRAS, max_mb=0.0001)
    result = assets.run(workspace, options)
    assert result.budget["fits"] is False
    assert result.budget["bytes"] > 100
    assert any("0.0001 MB budget" in w and "--max-mb" in w for w in result.warnings)
    assert workspace.staged_path("model.glb").exists()


def test_budget_options_flow_from_the_command_line_and_are_checked(tmp_path, capsys) -> None:
    options = ReconOptions.for_preset("preview").with_asset_budget(compress=True, max_mb=2.5)
    assert options.export.compress is True
    assert options.export.max_mb == 2.5
    from recon import cli

    code = cli.main(["reconstruct", str(tmp_path), "-o", str(tmp_path / "o"), "--max-mb", "0"])
    assert code == 2
    assert "--max-mb" in capsys.readouterr().err


def test_the_export_stage_records_glb_facts_in_its_state(tmp_path) -> None:
    """Facts of the written GLB survive in state.json, so a resumed job reports them too."""
    from recon import pipeline

    workspace = textured_workspace(tmp_path)
    result = assets.run(workspace, dataclasses.replace(NO_EXTRAS, compress=True, max_mb=5.0))
    info = pipeline.stage_info(result)
    assert info["glb"]["compression"] == "draco"
    assert info["budget"]["fits"] is True
    json.dumps(info)  # what mark_done writes
