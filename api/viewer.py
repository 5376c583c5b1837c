"""The web pages: the embeddable viewer (/v/ID), the showroom walk-through (/showroom/ID), a
merchant's storefront (/shop/NAME), the merchant page (/app), their static files and the npm
packages they load (never a CDN)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import quote

from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    jsonify,
    render_template,
    request,
    send_from_directory,
)
from markupsafe import Markup
from sqlalchemy import select

from api.auth import current_merchant
from api.context import db
from api.db import Merchant, Model, Showroom
from api.serialize import model_json

VIEWER_DIR = Path(__file__).resolve().parents[1] / "viewer"
STATIC_DIR = VIEWER_DIR / "static"
# Installed by `make setup` (npm ci); RECON_NODE_MODULES_DIR points elsewhere.
NODE_MODULES_DIR = Path(__file__).resolve().parents[1] / "node_modules"
# The browser packages served under /viewer/vendor/: URL folder -> folder in node_modules.
VENDOR_DIRS = {
    "model-viewer": "@google/model-viewer/dist",
    "draco": "three/examples/jsm/libs/draco/gltf",  # glTF-only Draco decoder (wasm)
    "basis": "three/examples/jsm/libs/basis",  # KTX2 transcoder
    "three": "three/build",  # the showroom's three.js (an import map names these two)
    "three-addons": "three/examples/jsm",
}
SHOP_PAGE_SIZE = 60
# Pages that shops may put in an <iframe>; every other page (the merchant page, the API)
# refuses to be framed, so a key-holding page cannot be clickjacked.
FRAMABLE_PREFIXES = ("/v/", "/showroom/", "/shop/", "/viewer/")

pages = Blueprint("viewer", __name__, template_folder=str(VIEWER_DIR / "templates"))
account = Blueprint("account", __name__)  # under /api/v1: who the key belongs to


def register(app: Flask, api_prefix: str) -> None:
    """Add the pages, their files and the framing rules to the app."""
    app.register_blueprint(pages)
    app.register_blueprint(account, url_prefix=api_prefix)
    app.after_request(_framing_headers)


@pages.get("/v/<model_id>")
def viewer_page(model_id: str) -> Response | str:
    """The viewer of one published model: full-window, made to sit in a shop's <iframe>.
    ?dimensions=1 opens the size overlay; ?autorotate=0 keeps the model still."""
    model = db().get(Model, model_id)
    if model is None or not model.published:
        return _not_found_page("This 3D model is not published, or no longer exists.")
    origin = request.host_url.rstrip("/")
    return render_template(
        "viewer.html",
        model=model_json(model, public=True),
        origin=origin,
        jsonld=_jsonld(_model_jsonld(model, origin)),
        show_dimensions=request.args.get("dimensions") in ("1", "true"),
        auto_rotate=request.args.get("autorotate") not in ("0", "false"),
    )


@pages.get("/showroom/<showroom_id>")
def showroom_page(showroom_id: str) -> Response | str:
    """The walk-through of one showroom (viewer/static/showroom.js), made to sit in an <iframe>
    like the viewer; it loads the layout from /api/v1/public/showrooms/ID."""
    showroom = db().get(Showroom, showroom_id)
    scene = db().get(Model, showroom.scene_model_id) if showroom else None
    if scene is None or not scene.published:
        return _not_found_page("This showroom does not exist, or its space is no longer published.")
    return render_template(
        "showroom.html", showroom_id=showroom.id, name=showroom.name or "Showroom"
    )


@pages.get("/shop/<merchant_name>")
def storefront(merchant_name: str) -> Response | str:
    """A merchant's published products, newest first, with schema.org 3DModel markup."""
    merchant = db().scalar(select(Merchant).where(Merchant.name == merchant_name))
    if merchant is None:
        return _not_found_page(f"There is no shop called {merchant_name!r}.")
    try:
        page = max(1, min(int(request.args.get("page", 1)), 100_000))
    except ValueError:
        page = 1
    models = list(
        db().scalars(
            select(Model)
            .where(Model.merchant_id == merchant.id, Model.published.is_(True))
            .order_by(Model.published_at.desc(), Model.id)
            .offset((page - 1) * SHOP_PAGE_SIZE)
            .limit(SHOP_PAGE_SIZE + 1)
        )
    )
    more, models = len(models) > SHOP_PAGE_SIZE, models[:SHOP_PAGE_SIZE]
    origin = request.host_url.rstrip("/")
    listing = {
        "@context": "https://schema.org",
        "@type": "ItemList",
        "name": f"{merchant.name}: products in 3D",
        "itemListElement": [
            {"@type": "ListItem", "position": (page - 1) * SHOP_PAGE_SIZE + i + 1,
             "item": _model_jsonld(model, origin)}
            for i, model in enumerate(models)
        ],
    }  # fmt: skip
    return render_template(
        "shop.html",
        merchant=merchant.name,
        models=[model_json(model, public=True) for model in models],
        jsonld=_jsonld(listing),
        page=page,
        more=more,
    )


@pages.get("/app")
def merchant_page() -> Response:
    response = send_from_directory(STATIC_DIR, "app.html", max_age=0)
    response.headers["Cache-Control"] = "no-cache"
    return response


@pages.get("/viewer/<path:name>")
def static_file(name: str) -> Response:
    """The pages' scripts and styles; public and cross-origin, since shops load
    recon-viewer.js from their own pages."""
    response = send_from_directory(STATIC_DIR, name, max_age=300)
    return _cross_origin(response)


@pages.get("/viewer/vendor/<package>/<path:name>")
def vendor_file(package: str, name: str) -> Response:
    if package not in VENDOR_DIRS:
        abort(404)
    root = Path(current_app.config.get("NODE_MODULES_DIR") or NODE_MODULES_DIR)
    folder = root / VENDOR_DIRS[package]
    if not folder.is_dir():
        return Response(
            f"{folder} is missing: run `make setup` (npm ci) on the server\n",
            status=503,
            mimetype="text/plain",
        )
    return _cross_origin(send_from_directory(folder, name, max_age=86400))


@account.get("/merchant")
def get_merchant() -> Response:
    """Whose key this is, and where the merchant's storefront is (for the merchant page)."""
    merchant = current_merchant(db())
    return jsonify(
        name=merchant.name,
        key_hint=merchant.key_hint,
        storefront_url=f"/shop/{quote(merchant.name, safe='')}",
    )


def _model_jsonld(model: Model, origin: str) -> dict:
    """schema.org 3DModel of a published model: its GLB and USDZ as encodings, its poster."""
    public = model_json(model, public=True)
    files = public["files"]
    item: dict = {
        "@context": "https://schema.org",
        "@type": "3DModel",
        "@id": f"{origin}/v/{model.id}",
        "url": f"{origin}/v/{model.id}",
        "name": model.name or "3D model",
        "encoding": [
            {"@type": "MediaObject", "contentUrl": origin + files[name]["url"],
             "encodingFormat": mime, "contentSize": f"{files[name]['bytes']} B"}
            for name, mime in (("model.glb", "model/gltf-binary"),
                               ("model.usdz", "model/vnd.usdz+zip"))
            if name in files
        ],
    }  # fmt: skip
    if model.sku:
        item["sku"] = model.sku
    if "poster.webp" in files:
        item["image"] = origin + files["poster.webp"]["url"]
    summary = model.summary or {}
    if summary.get("units") == "metre" and summary.get("bbox"):
        width, height, depth = summary["bbox"]
        item.update(
            {key: {"@type": "QuantitativeValue", "value": round(value, 4), "unitCode": "MTR"}
             for key, value in (("width", width), ("height", height), ("depth", depth))}
        )  # fmt: skip
    return item


def _jsonld(data: dict) -> Markup:
    """JSON for a <script type="application/ld+json">: '<' escaped so no text can end it."""
    text = json.dumps(data, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
    return Markup(text.replace("&", "\\u0026"))


def _not_found_page(message: str) -> tuple[str, int]:
    return render_template("not_found.html", message=message), 404


def _cross_origin(response: Response) -> Response:
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    return response


def _framing_headers(response: Response) -> Response:
    """Viewer pages may be framed by any site; every other page by none."""
    if request.path.startswith(FRAMABLE_PREFIXES):
        response.headers.setdefault("Content-Security-Policy", "frame-ancestors *")
    else:
        response.headers.setdefault("Content-Security-Policy", "frame-ancestors 'none'")
        response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    return response
