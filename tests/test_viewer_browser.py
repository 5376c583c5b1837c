"""The viewer, the embeds, the storefront and the merchant page in a real browser (Debian's
chromium, headless, driven by Playwright) against the real server.

One reconstruction serves the whole module: the merchant page uploads the sample capture through
its file input, watches the job to the end and publishes the model; the other tests look at that
model. Screenshots are kept in the test's temporary output (the path is printed)."""

from __future__ import annotations

import http.server
import io
import json
import re
import socket
import threading
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests
from PIL import Image

from api.process import ServiceProcess
from tests.conftest import CHROMIUM, SAMPLE_CAPTURES_DIR

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev extra)")

CAPTURE = SAMPLE_CAPTURES_DIR / "cereal_box" / "images"
HEIGHT_CM = 28  # the sample box's real height, given on the merchant page
MERCHANT = "Corner Shop"  # a space: the storefront URL is quoted
JOB_TIMEOUT_MS = 900_000  # a 2-core machine reconstructs the sample (preview) in about a minute
RENDER_TIMEOUT_MS = 120_000  # software WebGL: the first frame compiles shaders for seconds
BACKGROUND_RGB = (244, 244, 242)  # the viewer's stage (recon-viewer.css)

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="chromium is not installed (make setup installs it)"
)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("viewer-screenshots")
    print(f"\nscreenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    service = ServiceProcess(
        tmp_path_factory.mktemp("viewer") / "storage", env={"RECON_WORKER_POLL_S": "0.2"}
    )
    key = service.create_merchant(MERCHANT)
    service.start()
    yield service, key
    service.stop()


class Page:
    """A browser tab that records every request and script error, to check none left
    localhost (no CDN) and nothing failed."""

    def __init__(self, browser, **options) -> None:
        self.context = browser.new_context(**options)
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.set_default_timeout(RENDER_TIMEOUT_MS)

    def outside_hosts(self) -> set[str]:
        return {
            urlsplit(url).netloc
            for url in self.requests
            if not url.startswith(("blob:", "data:"))
            and urlsplit(url).hostname not in ("127.0.0.1", "localhost")
        }

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def tab(browser):
    tab = Page(browser, viewport={"width": 900, "height": 700})
    yield tab
    tab.close()


@pytest.fixture(scope="module")
def published(service, browser, screenshots) -> dict:
    """The sample capture uploaded, reconstructed and published through /app; what was seen."""
    server, key = service
    tab = Page(browser, viewport={"width": 1100, "height": 900})
    try:
        return merchant_page_flow(tab.page, server, key, screenshots) | {
            "outside_hosts": tab.outside_hosts(),
            "errors": tab.errors,
        }
    except Exception:
        tab.page.screenshot(path=screenshots / "app-failed.png", full_page=True)
        raise
    finally:
        tab.close()


def merchant_page_flow(page, server: ServiceProcess, key: str, screenshots: Path) -> dict:
    page.goto(server.origin + "/app")
    page.fill("#key", key)
    page.click("#sign-in button[type=submit]")
    page.wait_for_selector("#upload", state="visible")
    signed_in_as = page.text_content("#merchant-name")

    # Every change of the job's display, as the merchant would have seen it.
    page.evaluate("""() => {
        window.seenJob = [];
        const record = () => window.seenJob.push({
            state: document.querySelector('#job').dataset.state,
            active: document.querySelector('#stages li.active')?.dataset.stage ?? null,
            progress: Number(document.querySelector('#job-progress').value),
            status: document.querySelector('#job-status').textContent,
        });
        new MutationObserver(record).observe(document.querySelector('#job'),
            {subtree: true, childList: true, attributes: true, characterData: true});
    }""")
    page.set_input_files("#files", sorted(CAPTURE.glob("*.jpg")))
    chosen = page.text_content("#chosen")
    page.select_option("#preset", "preview")
    page.fill("#name", "Cereal box")
    page.fill("#height", str(HEIGHT_CM))
    page.click("#start")
    page.wait_for_selector("#upload-progress .label:text('Uploaded')")
    upload_percent = page.eval_on_selector("#upload-progress progress", "p => p.value")
    page.wait_for_selector("#job[data-state=succeeded], #job[data-state=failed]",
                           state="attached", timeout=JOB_TIMEOUT_MS)  # fmt: skip
    assert page.get_attribute("#job", "data-state") == "succeeded", (
        page.text_content("#job-error") + "\n" + server.log()
    )
    page.wait_for_selector("#result recon-viewer[state=loaded]", state="attached")
    page.wait_for_timeout(1500)  # a few frames of the model
    page.screenshot(path=screenshots / "app-result.png", full_page=True)
    model_id = page.get_attribute("#result", "data-model-id")
    page.click("#publish")
    page.wait_for_selector("#result[data-published=true]", state="attached")
    page.wait_for_selector("#embed", state="visible")
    page.screenshot(path=screenshots / "app-published.png", full_page=True)
    return {
        "model_id": model_id,
        "signed_in_as": signed_in_as,
        "chosen": chosen,
        "upload_percent": upload_percent,
        "seen": page.evaluate("window.seenJob"),
        "stages": page.eval_on_selector_all("#stages li", "items => items.map(i => i.className)"),
        "status": page.text_content("#job-status"),
        "row": page.text_content(f"#models tr[data-model-id='{model_id}']"),
        "iframe_snippet": page.input_value("#embed-iframe"),
        "component_snippet": page.input_value("#embed-component"),
    }


def product_share(png: bytes) -> float:
    """The share of the picture that is not the viewer's plain background."""
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    differs = np.abs(pixels - np.array(BACKGROUND_RGB)).max(axis=2) > 30
    return float(differs.mean())


def wait_until_shown(viewer) -> None:
    """`viewer` (a recon-viewer locator) got model-viewer's `load` and shows the model."""
    sync_api.expect(viewer).to_have_attribute("state", "loaded", timeout=RENDER_TIMEOUT_MS)
    viewer.locator("model-viewer").evaluate(
        "mv => new Promise(resolve => mv.modelIsVisible ? resolve()"
        " : mv.addEventListener('model-visibility', resolve, {once: true}))"
    )
    viewer.page.wait_for_timeout(1500)  # let software rendering draw a few frames


def test_the_merchant_page_uploads_watches_and_publishes(
    published, service, tab, screenshots
) -> None:
    server, _ = service
    assert published["signed_in_as"] == MERCHANT
    assert published["chosen"].startswith("24 files")
    assert published["upload_percent"] == 100
    seen = published["seen"]
    progress = [s["progress"] for s in seen if s["state"] == "running"]
    assert progress == sorted(progress)  # the bar never goes back
    active = [s["active"] for s in seen if s["active"]]
    stages_seen = list(dict.fromkeys(active))
    assert {"sfm", "depth", "texture"} <= set(stages_seen), stages_seen
    order = ["capture", "sfm", "masks", "depth", "fusion", "mesh", "orient", "texture", "export"]
    assert stages_seen == sorted(stages_seen, key=order.index)
    assert published["status"] == "Done"
    assert set(published["stages"]) == {"done"}
    assert "published" in published["row"]
    assert f"× {HEIGHT_CM:.1f} ×" in published["row"]  # width × height × depth cm
    assert not published["outside_hosts"]
    assert not published["errors"]

    model_id = published["model_id"]
    assert f'src="{server.origin}/v/{model_id}"' in published["iframe_snippet"]
    assert f'<recon-viewer model="{model_id}"' in published["component_snippet"]

    tab.page.goto(f"{server.origin}/shop/Corner%20Shop")
    tile = tab.page.locator(f".product[data-model-id='{model_id}']")
    tile.locator("img").evaluate("img => img.complete || new Promise(r => img.onload = r)")
    tab.page.screenshot(path=screenshots / "storefront.png", full_page=True)
    assert tile.locator("a").get_attribute("href") == f"/v/{model_id}"
    assert "Cereal box" in tile.text_content()
    markup = json.loads(tab.page.text_content("script[type='application/ld+json']"))
    item = markup["itemListElement"][0]["item"]
    assert item["@type"] == "3DModel"
    assert item["name"] == "Cereal box"
    glb = next(e for e in item["encoding"] if e["encodingFormat"] == "model/gltf-binary")
    assert requests.get(glb["contentUrl"], timeout=30).content[:4] == b"glTF"
    tile.locator("a").click()
    tab.page.wait_for_url(f"**/v/{model_id}")


def test_the_viewer_page_shows_the_product(published, service, tab, screenshots) -> None:
    server, _ = service
    tab.page.goto(f"{server.origin}/v/{published['model_id']}")
    viewer = tab.page.locator("recon-viewer")
    wait_until_shown(viewer)
    png = viewer.screenshot(path=screenshots / "viewer.png")
    share = product_share(png)
    assert 0.05 < share < 0.8, f"product covers {share:.1%} of the viewer ({screenshots})"
    model_viewer = viewer.locator("model-viewer")
    assert model_viewer.get_attribute("alt").startswith("3D model of Cereal box")
    assert model_viewer.evaluate("mv => mv.loaded")
    assert viewer.locator(".progress").is_hidden()
    assert viewer.locator(".error").is_hidden()
    assert not tab.outside_hosts()
    assert not tab.errors


def test_the_embeds_render_on_another_origin(published, service, tab, screenshots) -> None:
    """A shop's page on another port embeds the viewer by <iframe> and by the web component;
    the merchant page refuses to be framed there."""
    server, _ = service
    model_id = published["model_id"]
    page_html = f"""<!doctype html><html><body style="margin:0;background:#fff">
        <h1 style="font:16px sans-serif">A shop</h1>
        {published["iframe_snippet"].replace('width="100%"', 'width="420"')}
        {published["component_snippet"].replace("height:480px", "height:480px;width:420px")}
        <recon-viewer id="missing" model="mdl_0000000000000000"
            style="height:200px;width:420px"></recon-viewer>
        <iframe id="private" src="{server.origin}/app" width="300" height="100"></iframe>
        </body></html>"""
    with AnotherOrigin(page_html) as shop_url:
        tab.page.set_viewport_size({"width": 900, "height": 1200})
        tab.page.goto(shop_url)
        framed = tab.page.frame_locator("iframe[src$='/v/" + model_id + "']").locator(
            "recon-viewer"
        )
        component = tab.page.locator(f"recon-viewer[model='{model_id}']")
        wait_until_shown(framed)
        wait_until_shown(component)
        tab.page.screenshot(path=screenshots / "embeds.png", full_page=True)
        for name, element in (
            ("iframe", tab.page.locator("iframe").first),
            ("component", component),
        ):
            share = product_share(element.screenshot(path=screenshots / f"embed-{name}.png"))
            assert 0.05 < share < 0.8, f"{name}: product covers {share:.1%}"
        missing = tab.page.locator("#missing")
        sync_api.expect(missing).to_have_attribute("state", "error")
        assert "not published" in missing.locator(".error").text_content()
        # The merchant page sends frame-ancestors 'none': the browser shows nothing of it.
        assert tab.page.frame_locator("#private").locator("#sign-in").count() == 0
        assert urlsplit(shop_url).netloc != urlsplit(server.origin).netloc
        assert not tab.outside_hosts()
        assert not tab.errors


def test_ar_attributes_and_the_dimensions_overlay(published, service, tab, screenshots) -> None:
    server, _ = service
    model_id = published["model_id"]
    model = requests.get(f"{server.url}/public/models/{model_id}", timeout=10).json()
    report = requests.get(server.origin + model["files"]["report.json"]["url"], timeout=10).json()
    tab.page.goto(f"{server.origin}/v/{model_id}?dimensions=1")
    viewer = tab.page.locator("recon-viewer")
    wait_until_shown(viewer)
    model_viewer = viewer.locator("model-viewer")
    assert model_viewer.get_attribute("ar") == ""
    assert model_viewer.get_attribute("ar-modes") == "webxr scene-viewer quick-look"
    assert report["units"] == "metre"
    assert model_viewer.get_attribute("ar-scale") == "fixed"
    for attribute, name in (("ios-src", "model.usdz"), ("poster", "poster.webp")):
        if name in model["files"]:
            assert (
                model_viewer.get_attribute(attribute) == server.origin + model["files"][name]["url"]
            )
        else:
            assert model_viewer.get_attribute(attribute) is None

    overlay = viewer.locator(".dimensions")
    assert overlay.is_visible()
    width, height, depth = report["mesh"]["bbox_m"]
    assert height == pytest.approx(HEIGHT_CM / 100, rel=1e-3)
    for field, metres in (("width", width), ("height", height), ("depth", depth)):
        assert overlay.locator(f"dd.{field}").text_content() == f"{metres * 100:.1f} cm"
    viewer.screenshot(path=screenshots / "viewer-dimensions.png")
    toggle = viewer.locator(".size-toggle")
    toggle.click()
    assert overlay.is_hidden()
    assert toggle.get_attribute("aria-pressed") == "false"


def test_ios_src_is_a_usdz_that_exists(published, service) -> None:
    server, _ = service
    model = requests.get(f"{server.url}/public/models/{published['model_id']}", timeout=10).json()
    if "model.usdz" not in model["files"]:
        pytest.skip("the pipeline made no USDZ for this model")
    usdz = requests.get(server.origin + model["files"]["model.usdz"]["url"], timeout=30)
    assert usdz.status_code == 200
    assert usdz.headers["Content-Type"] == "model/vnd.usdz+zip"
    assert usdz.content[:2] == b"PK"  # USDZ is an uncompressed zip


class AnotherOrigin:
    """Serves one HTML page from a second localhost port (a shop's own site)."""

    def __init__(self, html: str) -> None:
        body = html.encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://localhost:{port}/product"

    def __enter__(self) -> str:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self.url

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_nothing_in_the_viewer_names_a_cdn() -> None:
    viewer = Path(__file__).resolve().parents[1] / "viewer"
    for path in [*viewer.rglob("*.js"), *viewer.rglob("*.html"), *viewer.rglob("*.css")]:
        assert not re.search(r"https?://(?!schema\.org)", path.read_text()), path
