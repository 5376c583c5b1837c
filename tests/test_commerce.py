"""The commerce check: rules measured on written files pass for a shop-ready asset and fail, one
by one, for crafted faults (non-power-of-two texture, two materials, unknown units ...)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import trimesh
from PIL import Image

from recon import assets, commerce, pipeline, texturing
from recon import capture as recon_capture
from recon.commerce import MB, check, evaluate_rules, inspect_glb
from recon.compress import compress_glb
from recon.errors import InputError
from recon.export import glb_bytes
from recon.poster import PosterOptions
from tests.conftest import SAMPLE_CAPTURES_DIR
from tests.test_assets import textured_workspace
from tests.test_export import quadrant_texture
from tests.test_texturing import truth_workspace

SHOP_READY = {"units": "metre", "up_source": "table plane"}


def standing_box_glb(offset=(0.0, 0.0, 0.0), texture=None) -> bytes:
    """A 20 × 10 × 5 cm box standing on y = 0, centred on the origin (unless offset)."""
    box = trimesh.creation.box(extents=(0.2, 0.1, 0.05))
    box.apply_translation(np.array([0.0, 0.05, 0.0]) + offset)
    vertices = box.vertices[box.faces].reshape(-1, 3)
    faces = np.arange(len(vertices)).reshape(-1, 3)
    uv = np.random.default_rng(3).uniform(0.05, 0.95, (len(vertices), 2))
    return glb_bytes(vertices, faces, uv, quadrant_texture() if texture is None else texture)


def rules_of(result: dict) -> dict:
    return {rule["id"]: rule for rule in result["rules"]}


def test_a_shop_ready_asset_passes_every_rule(tmp_path) -> None:
    workspace = textured_workspace(tmp_path)
    workspace.textured_model_path.write_bytes(standing_box_glb())
    options = assets.AssetOptions(poster=False, tiers=(), poster_options=PosterOptions())
    assets.run(workspace, options)

    result = check(workspace.staged_path("model.glb"),
                   usdz_path=workspace.staged_path("model.usdz"), **SHOP_READY)  # fmt: skip

    assert result["passed"] is True, result["failed"]
    rules = rules_of(result)
    # Measured values, not just verdicts
    assert rules["khronos_triangles"]["measured"] == 12
    assert (
        rules["khronos_file_size"]["measured"] == workspace.staged_path("model.glb").stat().st_size
    )
    assert rules["khronos_power_of_two"]["measured"] == [64]
    assert rules["shopify_one_material"]["measured"] == 1
    assert rules["arkit_usdz_compliant"]["measured"] is True  # the checker ran on the file
    sources = (commerce.KHRONOS, commerce.GOOGLE, commerce.SHOPIFY, commerce.APPLE_ARKIT)
    for rule in result["rules"]:  # every rule says where it comes from
        assert (rule["source"], rule["url"]) in sources


def test_the_check_reads_compressed_models_too(tmp_path) -> None:
    path = tmp_path / "model.glb"
    path.write_bytes(compress_glb(standing_box_glb()))
    result = check(path, **SHOP_READY)
    rules = rules_of(result)
    assert rules["khronos_triangles"]["measured"] == 12
    assert rules["khronos_origin_bottom_centre"]["passed"] is True
    assert result["failed"] == ["khronos_usdz_present", "arkit_usdz_compliant"]  # no USDZ here


def test_unknown_units_and_no_up_fail(tmp_path) -> None:
    path = tmp_path / "model.glb"
    path.write_bytes(standing_box_glb())
    result = check(path, units="unknown", up_source=None)
    failed = set(result["failed"])
    assert {"khronos_units_metres", "khronos_y_up"} <= failed
    assert rules_of(result)["khronos_units_metres"]["measured"] == "unknown"


def test_an_origin_off_the_bottom_centre_fails(tmp_path) -> None:
    path = tmp_path / "model.glb"
    path.write_bytes(standing_box_glb(offset=(0.05, 0.0, 0.0)))  # 5 cm to the side
    rule = rules_of(check(path, **SHOP_READY))["khronos_origin_bottom_centre"]
    assert rule["passed"] is False
    assert rule["measured"] == pytest.approx(0.05 / np.linalg.norm([0.2, 0.1, 0.05]), rel=1e-3)
    path.write_bytes(standing_box_glb(offset=(0.0, 0.004, 0.0)))  # floating 4 mm: 1.7 % of 0.23 m
    assert rules_of(check(path, **SHOP_READY))["khronos_origin_bottom_centre"]["passed"] is False


def trimesh_glb(meshes: list[trimesh.Trimesh]) -> bytes:
    return trimesh.Scene(meshes).export(file_type="glb")


def textured_trimesh(width: int, height: int, colour=(200, 30, 30)) -> trimesh.Trimesh:
    box = trimesh.creation.box(extents=(0.1, 0.1, 0.1))
    box.apply_translation([0.0, 0.05, 0.0])
    image = Image.new("RGB", (width, height), colour)
    uv = np.random.default_rng(0).uniform(0, 1, (len(box.vertices), 2))
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=image)
    box.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    return box


def test_a_non_power_of_two_png_texture_fails_the_texture_rules(tmp_path) -> None:
    path = tmp_path / "model.glb"
    path.write_bytes(trimesh_glb([textured_trimesh(300, 200)]))
    rules = rules_of(check(path, **SHOP_READY))
    assert rules["khronos_power_of_two"]["passed"] is False
    assert rules["khronos_power_of_two"]["measured"] == [200, 300]
    assert rules["shopify_jpeg_textures"]["passed"] is False  # trimesh writes PNG
    assert rules["khronos_texture_size"]["passed"] is True  # 300 px is small enough


def test_two_materials_fail_the_one_material_rule(tmp_path) -> None:
    second = textured_trimesh(64, 64, colour=(0, 0, 255))
    second.apply_translation([0.2, 0.0, 0.0])
    path = tmp_path / "model.glb"
    path.write_bytes(trimesh_glb([textured_trimesh(64, 64), second]))
    rule = rules_of(check(path, **SHOP_READY))["shopify_one_material"]
    assert rule["measured"] == 2
    assert rule["passed"] is False


def test_vertex_colours_fail(tmp_path) -> None:
    box = trimesh.creation.box(extents=(0.1, 0.1, 0.1))
    box.visual.vertex_colors = np.tile([255, 0, 0, 255], (len(box.vertices), 1))
    path = tmp_path / "model.glb"
    path.write_bytes(trimesh_glb([box]))
    facts = inspect_glb(path.read_bytes())
    assert facts.vertex_colors is True
    assert rules_of(check(path, **SHOP_READY))["shopify_no_vertex_colors"]["passed"] is False


def test_size_triangle_and_texture_limits_follow_each_source() -> None:
    facts = inspect_glb(standing_box_glb())
    rules = lambda f: rules_of(  # noqa: E731
        evaluate_rules(f, usdz_present=True, usdz_arkit_compliant=True, **SHOP_READY)
    )
    six_mb = rules(dataclasses.replace(facts, bytes=6 * MB))
    assert six_mb["khronos_file_size"]["passed"] is False  # Khronos: ideally < 5 MB
    assert six_mb["google_file_size"]["passed"] is True  # Google: ≤ 15 MB
    assert six_mb["shopify_file_size"]["passed"] is True
    sixteen_mb = rules(dataclasses.replace(facts, bytes=16 * MB))
    assert sixteen_mb["google_file_size"]["passed"] is False
    assert sixteen_mb["shopify_file_size"]["passed"] is False
    many = rules(dataclasses.replace(facts, triangles=100_001))
    assert many["khronos_triangles"]["passed"] is False
    assert rules(dataclasses.replace(facts, triangles=100_000))["khronos_triangles"]["passed"]
    big = [{**facts.textures[0], "width": 4096, "height": 4096}]
    four_k = rules(dataclasses.replace(facts, textures=big))
    assert four_k["khronos_texture_size"]["passed"] is False  # Khronos: 1k or 2k
    assert four_k["google_texture_size"]["passed"] is True  # Google: up to 4K
    assert four_k["khronos_power_of_two"]["passed"] is True
    lights = rules(dataclasses.replace(facts, lights=True))
    assert lights["khronos_no_lights"]["passed"] is False


def test_a_broken_file_is_refused_clearly(tmp_path) -> None:
    path = tmp_path / "model.glb"
    path.write_bytes(b"PK\x03\x04 not a glb")
    with pytest.raises(InputError, match="not a GLB"):
        check(path, **SHOP_READY)
    with pytest.raises(InputError, match="no model"):
        check(tmp_path / "missing.glb", **SHOP_READY)


def test_image_sizes_are_read_from_the_embedded_jpeg() -> None:
    texture = np.zeros((128, 128, 3), np.uint8)
    facts = inspect_glb(standing_box_glb(texture=texture))
    (entry,) = facts.textures
    assert (entry["width"], entry["height"], entry["mime_type"]) == (128, 128, "image/jpeg")
    assert entry["bytes"] == facts.image_bytes > 0


def test_the_report_checks_the_published_model(tmp_path) -> None:
    """A job whose stages up to texture are done (the mug's truth): reconstruct runs only the
    export, with --compress and a budget, and the report carries glb, budget and commerce."""
    workspace, capture = truth_workspace(tmp_path / "job", "mug", masks=False)
    photos = SAMPLE_CAPTURES_DIR / "mug" / "images"
    options = (
        pipeline.ReconOptions.for_preset("preview")
        .with_known_dimensions({"height": 0.1})
        .with_asset_budget(compress=True, max_mb=1.0)
    )
    options = dataclasses.replace(
        options,
        texture=dataclasses.replace(options.texture, texture_size=256),
        export=dataclasses.replace(options.export, poster=False, tiers=()),
    )
    names = [camera.name for camera in capture.cameras]
    recon_capture.run(photos, workspace, options.capture)  # seconds: capture.json as it is
    workspace.write_sfm_points(xyz=np.zeros((0, 3)))
    orientation = {"matrix": np.eye(4).tolist(), "up_source": "table plane", "front": names[0],
                   "scale": "height_m"}  # fmt: skip
    workspace.orient_path.write_text(json.dumps(orientation))
    textured = texturing.run(workspace, options.texture)
    stage_options = pipeline.options_by_stage(photos, options)
    for stage, stage_option in stage_options.items():
        if stage == "export":
            continue
        info = pipeline.stage_info(textured) if stage == "texture" else {}
        workspace.mark_done(stage, stage_option, seconds=1.0, info=info)

    result = pipeline.reconstruct(photos, workspace.out_dir, options)

    report = result.report
    assert set(json.loads(workspace.state_path.read_text())) == set(pipeline.STAGES)
    assert report["units"] == "metre"
    written = workspace.model_path.read_bytes()
    assert report["glb"]["bytes"] == len(written) <= 1.0 * MB
    assert report["glb"]["compression"] == "draco"
    assert report["glb"]["faces"] == len(capture.faces)
    assert report["glb"]["texture_size"] == 256
    assert report["budget"]["fits"] is True
    rules = rules_of(report["commerce"])
    assert rules["khronos_file_size"]["measured"] == len(written)
    assert rules["khronos_units_metres"]["passed"] is True
    assert rules["arkit_usdz_compliant"]["passed"] is True
    assert report["commerce"]["failed"] == [
        r["id"] for r in report["commerce"]["rules"] if not r["passed"]
    ]
    assert json.loads(workspace.report_path.read_text())["commerce"] == report["commerce"]
