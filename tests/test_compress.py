"""Draco-compressed GLBs and size budgets: valid, same triangles, smaller; budgets really fit."""

from __future__ import annotations

import dataclasses
import functools
import http.server
import json
import shutil
import threading
from pathlib import Path
from typing import ClassVar

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
from tests.conftest import REPO_ROOT, SAMPLE_CAPTURES_DIR
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
    assert steps[0] == "full_colour"  # the JPEG's colour halved first
    assert set(steps) <= {"full_colour", "jpeg_quality", "texture_size"}
    assert result.glb["full_colour"] is False
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
    # Without --max-mb the preset's budget holds: standard assets stay under Khronos' 5 MB
    assert ReconOptions.for_preset("standard").with_asset_budget().export.max_mb == 5.0
    assert ReconOptions.for_preset("high").export.max_mb == 15.0
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


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
MODEL_VIEWER = REPO_ROOT / "node_modules" / "@google" / "model-viewer" / "dist"
DRACO_DECODER = REPO_ROOT / "node_modules" / "three" / "examples" / "jsm" / "libs" / "draco"

VIEWER_PAGE = """<!doctype html><html><body>
<script>self.ModelViewerElement = {dracoDecoderLocation: "/draco/gltf/"};</script>
<script type="module" src="/model-viewer/model-viewer.min.js"></script>
<model-viewer src="/model.glb" style="width:256px;height:256px"></model-viewer>
<script>
  const viewer = document.querySelector("model-viewer");
  viewer.addEventListener("load", () => { document.title = "loaded"; });
  viewer.addEventListener("error", (event) => { document.title = "error " + event.detail.type; });
</script></body></html>"""


@pytest.mark.skipif(
    not Path(CHROMIUM).exists() or not MODEL_VIEWER.is_dir() or not DRACO_DECODER.is_dir(),
    reason="needs chromium (make setup) and node_modules (npm ci)",
)
def test_model_viewer_decodes_the_draco_glb_with_its_local_decoder(tmp_path) -> None:
    """What the viewer ships (model-viewer + three's Draco decoder, no CDN) shows the model."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    site = tmp_path / "site"
    site.mkdir()
    (site / "model-viewer").symlink_to(MODEL_VIEWER)
    (site / "draco").symlink_to(DRACO_DECODER)
    (site / "index.html").write_text(VIEWER_PAGE)
    plain, _ = mug_glb()
    (site / "model.glb").write_bytes(compress_glb(plain))
    handler = functools.partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    requests: list[str] = []
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM,
                args=["--use-angle=swiftshader", "--enable-unsafe-swiftshader"],
            )
            page = browser.new_page()
            page.on("request", lambda request: requests.append(request.url))
            page.goto(f"http://127.0.0.1:{server.server_port}/index.html")
            page.wait_for_function("document.title !== ''", timeout=120_000)
            title = page.title()
            browser.close()
    finally:
        server.shutdown()
    assert title == "loaded"
    assert any("draco_decoder" in url or "draco_wasm" in url for url in requests)
    local = f"http://127.0.0.1:{server.server_port}/"
    remote = [u for u in requests if u.startswith(("http:", "https:")) and not u.startswith(local)]
    assert remote == []  # no CDN (blob: and data: URLs are the page's own)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {
        **http.server.SimpleHTTPRequestHandler.extensions_map,
        ".wasm": "application/wasm",  # the Draco decoder compiles only with this type
        ".js": "text/javascript",
    }

    def log_message(self, *args) -> None:
        pass


def test_the_api_accepts_compress_and_a_budget_and_refuses_bad_ones() -> None:
    from api.errors import ApiError
    from api.jobs import _job_options

    options = _job_options({"compress": "true", "max_mb": "2.5"})
    assert options["compress"] is True
    assert options["max_mb"] == 2.5
    assert "compress" not in _job_options({"compress": "false"})
    for bad in ({"compress": "maybe"}, {"max_mb": "0"}, {"max_mb": "lots"}, {"max_mb": "nan"}):
        with pytest.raises(ApiError, match=r"compress|max_mb"):
            _job_options(bad)
