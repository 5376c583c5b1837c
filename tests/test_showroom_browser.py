"""The showroom walk-through in a real browser (Debian's chromium, headless, driven by
Playwright) against the real server: a scene model and three products (the bundled procedural
products, no reconstruction) stored as the worker would leave them, a showroom made through the
API, then /showroom/ID: the scene and the products render, walking forward changes the view,
a product lights up under the pointer with its name and opens its viewer when clicked.

Screenshots go to the test's temporary folder (the path is printed) and to out/screenshots/."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import requests
import trimesh
from PIL import Image
from sqlalchemy import select

from api.db import Merchant, Model, make_engine, make_sessions
from api.process import ServiceProcess
from api.storage import file_etag
from recon.compress import compress_glb, is_draco_glb
from recon.procedural import make_product
from recon.surfaces import detect_surfaces
from tests.conftest import CHROMIUM
from tests.test_viewer_browser import RENDER_TIMEOUT_MS, Page

sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev extra)")

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="chromium is not installed (make setup installs it)"
)

REPO_ROOT = Path(__file__).resolve().parents[1]
KEPT_SCREENSHOTS = REPO_ROOT / "out" / "screenshots"  # for people to look at (git-ignored)
MERCHANT = "Corner Shop"
PRODUCTS = {"mug": "Mug", "cereal_box": "Cereal box", "bottle": "Bottle"}
DRACO_PRODUCT = "bottle"  # stored Draco-compressed: the page decodes it with the local decoder
BACKGROUND_RGB = (233, 232, 228)  # the page's clear colour (showroom.js BACKGROUND)
ROOM = (5.0, 2.6, 4.0)  # width, height, depth, metres


# -- the models -------------------------------------------------------------------------------


def _box(lo, hi, rgb) -> trimesh.Trimesh:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    mesh = trimesh.creation.box(extents=hi - lo)
    mesh.apply_translation((lo + hi) / 2)
    # glTF vertex colours are linear; `rgb` is what the eye should see (sRGB).
    linear = np.round(255 * (np.asarray(rgb) / 255) ** 2.2).astype(int)
    mesh.visual.vertex_colors = [*linear, 255]
    return mesh


def room_mesh() -> trimesh.Trimesh:
    """A shop room in vertex colours, +Y up, metres, floor on y = 0: a tiled floor, four
    walls of different colours, a table in the middle, a counter and a shelf board."""
    w, h, d = (v / 2 if i != 1 else v for i, v in enumerate(ROOM))
    tile = 0.5
    parts = []
    for i, x in enumerate(np.arange(-w, w, tile)):
        for j, z in enumerate(np.arange(-d, d, tile)):
            rgb = (196, 170, 132) if (i + j) % 2 else (160, 128, 92)
            parts.append(_box([x, -0.05, z], [x + tile, 0, z + tile], rgb))
    walls = [
        ([-w - 0.1, 0, -d - 0.1], [w + 0.1, h, -d], (226, 222, 210)),  # back
        ([-w - 0.1, 0, d], [w + 0.1, h, d + 0.1], (214, 226, 232)),  # front
        ([-w - 0.1, 0, -d], [-w, h, d], (232, 214, 204)),  # left
        ([w, 0, -d], [w + 0.1, h, d], (208, 226, 208)),  # right
    ]
    parts += [_box(lo, hi, rgb) for lo, hi, rgb in walls]
    for x in np.linspace(-w + 0.6, w - 0.6, 6):  # posters on the back wall, to see movement
        parts.append(_box([x - 0.25, 1.1, -d], [x + 0.25, 1.8, -d + 0.01], (60, 90, 160)))
    table = (120, 82, 50)
    parts.append(_box([-0.7, 0.72, -0.4], [0.7, 0.75, 0.4], table))
    for x in (-0.65, 0.6):
        for z in (-0.35, 0.3):
            parts.append(_box([x, 0, z], [x + 0.05, 0.72, z + 0.05], table))
    parts.append(_box([w - 0.7, 0, -1.2], [w - 0.1, 0.95, 1.2], (90, 90, 100)))  # counter
    parts.append(_box([-1.5, 1.0, -d], [0.0, 1.03, -d + 0.35], table))  # a shelf board
    return trimesh.util.concatenate(parts)


def product_mesh(name: str) -> trimesh.Trimesh:
    """A procedural product with its texture shrunk (software WebGL, three at once)."""
    mesh = make_product(name)
    material = mesh.visual.material
    material.baseColorTexture = material.baseColorTexture.convert("RGB").resize((512, 512))
    return mesh


def store_model(
    storage: Path, sessions, merchant_id: int, model_id: str, mesh, *, mode, name, draco=False
):
    """A published model's files and row, as the job runner and publishing leave them
    (`draco`: its geometry Draco-compressed, as `compress` jobs make them)."""
    folder = storage / "models" / model_id
    folder.mkdir(parents=True)
    glb = mesh.export(file_type="glb")
    (folder / "model.glb").write_bytes(compress_glb(glb) if draco else glb)
    report = {
        "version": 1,
        "status": "succeeded",
        "mode": mode,
        "units": "metre",
        "mesh": {"bbox_m": mesh.extents.tolist(), "faces": len(mesh.faces)},
    }
    if mode == "scene":
        report["surfaces"] = [s.to_json() for s in detect_surfaces(mesh)]
    (folder / "report.json").write_text(json.dumps(report))
    files = {
        file: {"bytes": (folder / file).stat().st_size, "etag": file_etag(folder / file)}
        for file in ("model.glb", "report.json")
    }
    with sessions() as session:
        session.add(
            Model(
                id=model_id,
                merchant_id=merchant_id,
                job_id=f"job_{model_id}",
                name=name,
                published=True,
                files=files,
                summary={"units": "metre", "bbox": mesh.extents.tolist(), "mode": mode},
            )
        )
        session.commit()


# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("showroom-screenshots")
    print(f"\nscreenshots: {folder} (kept in {KEPT_SCREENSHOTS})")
    return folder


def shoot(target, screenshots: Path, name: str) -> bytes:
    """Screenshot of `target` (a page or locator) into the test's folder and out/screenshots."""
    png = target.screenshot(path=screenshots / name)
    KEPT_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(screenshots / name, KEPT_SCREENSHOTS / f"showroom-{name}")
    return png


@pytest.fixture(scope="module")
def showroom(tmp_path_factory) -> dict:
    """The running server with a showroom made through its API: its id and model ids."""
    storage = tmp_path_factory.mktemp("showroom") / "storage"
    service = ServiceProcess(storage, worker=False)
    key = service.create_merchant(MERCHANT)  # creates the database too
    sessions = make_sessions(make_engine(f"sqlite:///{(storage / 'recon.db').resolve()}"))
    with sessions() as session:
        merchant_id = session.scalar(select(Merchant.id).where(Merchant.name == MERCHANT))
    scene_id = "mdl_scene0000000000"
    store_model(
        storage, sessions, merchant_id, scene_id, room_mesh(), mode="scene", name="Corner shop"
    )
    product_ids = []
    for product, name in PRODUCTS.items():
        model_id = f"mdl_{product}"
        store_model(
            storage,
            sessions,
            merchant_id,
            model_id,
            product_mesh(product),
            mode="object",
            name=name,
            draco=product == DRACO_PRODUCT,
        )
        product_ids.append(model_id)
    service.start()
    try:
        response = requests.post(
            f"{service.url}/showrooms",
            headers={"Authorization": f"Bearer {key}"},
            json={"scene_model_id": scene_id, "product_model_ids": product_ids},
            timeout=120,
        )
        assert response.status_code == 201, response.text
        created = response.json()
        yield {
            "service": service,
            "id": created["id"],
            "layout": created["layout"],
            "scene_id": scene_id,
            "product_ids": product_ids,
        }
    finally:
        service.stop()


@pytest.fixture(scope="module")
def tab(browser, showroom, screenshots):
    """The walk-through page, loaded once for the module's tests (they run in order)."""
    tab = Page(browser, viewport={"width": 960, "height": 640})
    server = showroom["service"]
    tab.page.add_init_script(RECORD_PROGRESS)
    tab.page.goto(f"{server.origin}/showroom/{showroom['id']}")
    try:
        tab.page.wait_for_selector(
            "#showroom[data-state=ready], #showroom[data-state=error]", state="attached"
        )
    except Exception:
        tab.page.screenshot(path=screenshots / "failed.png")
        raise
    assert tab.page.get_attribute("#showroom", "data-state") == "ready", tab.page.text_content(
        ".error"
    )
    tab.page.wait_for_timeout(500)
    yield tab
    tab.close()


# Every value the loading bar shows, as the visitor would have seen it.
RECORD_PROGRESS = """
    window.progressSeen = [];
    new MutationObserver((changes) => {
        for (const change of changes) {
            if (change.target.classList?.contains('progress')) {
                window.progressSeen.push(Number(change.target.getAttribute('aria-valuenow')));
            }
        }
    }).observe(document, {subtree: true, attributes: true, attributeFilter: ['aria-valuenow']});
"""


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def screen_point(page, product_id: str) -> dict | None:
    return page.evaluate("id => window.reconShowroom.screenPointOf(id)", product_id)


# -- tests ------------------------------------------------------------------------------------


def test_the_scene_and_three_products_render(tab, showroom, screenshots) -> None:
    page = tab.page
    canvas = page.locator("#showroom canvas")
    picture = pixels(shoot(canvas, screenshots, "spawn.png"))
    background = np.abs(picture - np.array(BACKGROUND_RGB)).max(axis=2) <= 6
    assert background.mean() < 0.2, f"{background.mean():.0%} of the canvas is empty"
    assert picture.std(axis=(0, 1)).mean() > 15  # not one flat colour
    # The scene graph holds the room and the three products, each with meshes.
    meshes = page.evaluate("""() => {
        const view = window.reconShowroom;
        const count = (name) => {
            let n = 0;
            view.scene.getObjectByName(name)?.traverse(o => { if (o.isMesh) n++; });
            return n;
        };
        return {scene: count('scene'),
                products: view.products.map(p => [p.id, p.modelId, p.loaded,
                                                  count('product:' + p.id)])};
    }""")
    assert meshes["scene"] > 0
    draco = requests.get(
        f"{showroom['service'].origin}/api/v1/public/models/mdl_{DRACO_PRODUCT}/model.glb",
        timeout=30,
    )
    assert is_draco_glb(draco.content)  # ... and it was drawn, with the local decoder:
    assert any("/viewer/vendor/draco/" in url for url in tab.requests)
    assert [m[1] for m in meshes["products"]] == showroom["product_ids"]
    assert all(loaded and count > 0 for _, _, loaded, count in meshes["products"]), meshes
    # Each product is in sight from where the visitor starts, and drawn there.
    for product in showroom["layout"]["products"]:
        point = screen_point(page, product["id"])
        assert point is not None, f"{product['name']} is out of sight from the spawn"
        x, y = round(point["x"]), round(point["y"])
        assert not background[y, x]
    assert page.locator(".progress").is_hidden()
    seen = page.evaluate("window.progressSeen")
    assert seen == sorted(seen), seen  # the bar never goes back
    assert seen[-1] == 100
    assert any(0 < value < 100 for value in seen), seen
    assert page.locator(".error").is_hidden()
    assert page.locator(".notice").is_hidden()
    assert not tab.outside_hosts()
    assert not tab.errors


def test_a_product_lights_up_and_names_itself_under_the_pointer(tab, showroom, screenshots) -> None:
    page = tab.page
    product = showroom["layout"]["products"][1]
    point = screen_point(page, product["id"])
    before = pixels(page.locator("#showroom canvas").screenshot())
    page.mouse.move(point["x"], point["y"])
    sync_api.expect(page.locator("#showroom")).to_have_attribute("data-hovered", product["id"])
    tooltip = page.locator(".tooltip")
    sync_api.expect(tooltip).to_be_visible()
    assert tooltip.text_content() == product["name"]
    page.wait_for_timeout(300)
    after = pixels(shoot(page.locator("#showroom"), screenshots, "hover.png"))
    lit = np.abs(after - before).max(axis=2) > 20
    assert lit.mean() > 0.0005, "the hovered product did not light up"
    page.mouse.move(5, 600)  # off the products
    sync_api.expect(tooltip).to_be_hidden()


def test_clicking_a_product_opens_its_viewer(tab, showroom, screenshots) -> None:
    page = tab.page
    product = showroom["layout"]["products"][0]
    point = screen_point(page, product["id"])
    page.mouse.click(point["x"], point["y"])
    overlay = page.locator(".product-overlay")
    sync_api.expect(overlay).to_be_visible()
    frame = page.locator(".product-overlay iframe")
    assert frame.get_attribute("src") == f"/v/{product['model_id']}"
    assert page.locator(".overlay-title").text_content() == product["name"]
    viewer = page.frame_locator(".product-overlay iframe").locator("recon-viewer")
    sync_api.expect(viewer).to_have_attribute("state", "loaded", timeout=RENDER_TIMEOUT_MS)
    page.wait_for_timeout(1500)  # a few frames of software rendering
    shoot(page, screenshots, "product-viewer.png")
    assert (
        viewer.locator("model-viewer")
        .get_attribute("alt")
        .startswith(f"3D model of {product['name']}")
    )
    frame.click()  # the keys now go to the product's viewer; Escape still closes it
    page.keyboard.press("Escape")
    sync_api.expect(overlay).to_be_hidden()
    assert page.get_attribute("#showroom", "data-open-product") is None


def test_walking_forward_changes_the_view(tab, screenshots) -> None:
    page = tab.page
    canvas = page.locator("#showroom canvas")
    page.mouse.move(5, 600)
    start = page.evaluate("window.reconShowroom.camera.position.toArray()")
    before = pixels(canvas.screenshot())
    for key in ("w", "ArrowUp"):
        page.keyboard.down(key)
        page.wait_for_timeout(500)
        page.keyboard.up(key)
    page.wait_for_timeout(300)
    end = page.evaluate("window.reconShowroom.camera.position.toArray()")
    after = pixels(shoot(canvas, screenshots, "walked.png"))
    assert np.hypot(end[0] - start[0], end[2] - start[2]) > 0.3  # metres, about a second
    assert end[1] == pytest.approx(start[1])  # eyes stay at their height
    changed = np.abs(after - before).max(axis=2) > 20
    assert changed.mean() > 0.05, f"only {changed.mean():.1%} of the view changed"


def test_the_walk_stops_at_the_table(tab, screenshots) -> None:
    """Tables, counters and shelves (the layout's surfaces below eye height) are not walked
    through; the table's top spans z = -0.4 .. 0.4 in the test room."""
    page = tab.page
    page.evaluate("""() => {
        const view = window.reconShowroom;
        view.camera.position.set(0, view.eye, 1.8);
        view.yaw = 0;  // looking along -Z, at the table
        view.pitch = 0;
        view.camera.rotation.set(0, 0, 0);
        view.dirty = true;
    }""")
    page.keyboard.down("w")
    page.wait_for_timeout(2500)  # about 3.5 m at walking speed
    page.keyboard.up("w")
    x, _, z = page.evaluate("window.reconShowroom.camera.position.toArray()")
    shoot(page.locator("#showroom canvas"), screenshots, "at-the-table.png")
    assert x == pytest.approx(0.0, abs=0.01)
    assert 0.45 < z < 1.0, f"walked to z = {z:.2f}"


def test_orbit_view_turns_around_the_room(tab, screenshots) -> None:
    page = tab.page
    canvas = page.locator("#showroom canvas")
    page.click(".mode-toggle")
    assert page.get_attribute("#showroom", "data-navigation") == "orbit"
    before = pixels(canvas.screenshot())
    page.mouse.move(480, 320)
    page.mouse.down()
    page.mouse.move(300, 300, steps=8)
    page.mouse.up()
    page.wait_for_timeout(800)  # damping settles
    after = pixels(shoot(canvas, screenshots, "orbit.png"))
    assert (np.abs(after - before).max(axis=2) > 20).mean() > 0.05
    page.click(".mode-toggle")
    assert page.get_attribute("#showroom", "data-navigation") == "walk"
    assert page.evaluate("window.reconShowroom.camera.position.y") == pytest.approx(
        showroom_eye(page)
    )
    assert not tab.errors


def showroom_eye(page) -> float:
    return page.evaluate("window.reconShowroom.eye")


def touch(cdp, kind: str, points) -> None:
    cdp.send(
        "Input.dispatchTouchEvent",
        {"type": kind, "touchPoints": [{"x": x, "y": y, "id": i} for i, (x, y) in points]},
    )


def test_touch_looks_by_dragging_and_walks_by_the_stick_or_two_fingers(
    browser, showroom, screenshots
) -> None:
    server = showroom["service"]
    phone = Page(browser, viewport={"width": 420, "height": 760}, has_touch=True, is_mobile=True)
    try:
        page = phone.page
        page.goto(f"{server.origin}/showroom/{showroom['id']}")
        page.wait_for_selector("#showroom[data-state=ready]", state="attached")
        stick = page.locator(".joystick")
        sync_api.expect(stick).to_be_visible()  # a touch screen gets the move stick
        cdp = page.context.new_cdp_session(page)
        view = "window.reconShowroom"

        def state():
            return page.evaluate(f"[{view}.yaw, ...{view}.camera.position.toArray()]")

        start = state()
        touch(cdp, "touchStart", [(0, (200, 300))])  # one finger: look around
        for step in range(1, 9):
            touch(cdp, "touchMove", [(0, (200 + 15 * step, 300))])
        touch(cdp, "touchEnd", [])
        looked = state()
        assert looked[0] != pytest.approx(start[0])
        assert looked[1:] == pytest.approx(start[1:])  # looking does not walk
        assert page.locator(".product-overlay").is_hidden()  # a drag is not a click

        box = stick.bounding_box()
        centre = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        touch(cdp, "touchStart", [(0, centre)])
        touch(cdp, "touchMove", [(0, (centre[0], box["y"] + 2))])  # the knob pushed up: forward
        page.wait_for_timeout(800)
        touch(cdp, "touchEnd", [])
        walked = state()
        assert np.hypot(walked[1] - looked[1], walked[3] - looked[3]) > 0.3
        assert walked[0] == pytest.approx(looked[0])
        shoot(page, screenshots, "phone.png")

        touch(cdp, "touchStart", [(0, (150, 500)), (1, (250, 500))])  # two fingers push
        for step in range(1, 9):
            y = 500 - 20 * step
            touch(cdp, "touchMove", [(0, (150, y)), (1, (250, y))])
        touch(cdp, "touchEnd", [])
        pushed = state()
        assert np.hypot(pushed[1] - walked[1], pushed[3] - walked[3]) > 0.1
        assert not phone.errors
    finally:
        phone.close()


def test_missing_things_are_said_not_left_blank(browser, showroom) -> None:
    """An unknown showroom, a browser without WebGL 2, a scene or a product file that fails."""
    server = showroom["service"]
    url = f"{server.origin}/showroom/{showroom['id']}"
    layout = showroom["layout"]
    tab = Page(browser, viewport={"width": 600, "height": 400})
    try:
        page = tab.page
        response = page.goto(f"{server.origin}/showroom/shr_0000000000000000")
        assert response.status == 404
        assert "does not exist" in page.text_content("body")

        page.route(server.origin + layout["scene"]["model"], lambda route: route.abort())
        page.goto(url)
        page.wait_for_selector("#showroom[data-state=error]", state="attached")
        assert "shop space's 3D file did not load" in page.text_content(".error")
        page.unroute(server.origin + layout["scene"]["model"])

        mug = layout["products"][0]
        page.route(server.origin + mug["model"], lambda route: route.fulfill(status=404))
        page.goto(url)
        page.wait_for_selector("#showroom[data-state=ready]", state="attached")
        sync_api.expect(page.locator(".notice")).to_have_text(
            f"A product could not be shown: {mug['name']}."
        )
        shown = page.evaluate("window.reconShowroom.products.filter(p => p.loaded).length")
        assert shown == len(layout["products"]) - 1

        # A browser without WebGL 2 gets the reason, not a blank page.
        page.add_init_script("HTMLCanvasElement.prototype.getContext = () => null;")
        page.goto(url)
        page.wait_for_selector("#showroom[data-state=error]", state="attached")
        assert "WebGL 2" in page.text_content(".error")
    finally:
        tab.close()
