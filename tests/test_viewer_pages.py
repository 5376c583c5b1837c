"""The web pages through Flask's test client: who may frame what, the storefront's schema.org
markup, unpublished models hidden, and the files the viewer loads served locally (no CDN)."""

from __future__ import annotations

import json
import re

import pytest

from api import create_app
from api.auth import create_merchant
from api.db import Merchant, Model

GLB = b"glTF" + b"\0" * 16


@pytest.fixture
def app(tmp_path):
    return create_app({"TESTING": True, "STORAGE_DIR": str(tmp_path / "storage")})


@pytest.fixture
def client(app):
    return app.test_client()


def add_model(app, merchant: str, *, published: bool, name: str, files=("model.glb",)) -> str:
    """A model row with real files in storage, as the worker would leave it."""
    storage = app.extensions["recon"]["storage"]
    with app.extensions["recon"]["sessions"]() as session:
        owner = session.query(Merchant).filter_by(name=merchant).one_or_none()
        owner = owner or create_merchant(session, merchant)[0]
        model_id = f"mdl_{len(session.query(Model).all()):04d}"
        folder = storage.model_dir(model_id)
        folder.mkdir(parents=True)
        listing = {}
        for file in files:
            (folder / file).write_bytes(GLB)
            listing[file] = {"bytes": len(GLB), "etag": "e" + model_id}
        session.add(
            Model(
                id=model_id, merchant_id=owner.id, job_id="job_" + model_id, name=name,
                published=published, files=listing,
                summary={"units": "metre", "bbox": [0.19, 0.28, 0.07]},
            )
        )  # fmt: skip
        session.commit()
    return model_id


def jsonld(html: str) -> dict:
    (text,) = re.findall(r'<script type="application/ld\+json">(.*?)</script>', html, re.S)
    return json.loads(text)


def test_viewer_pages_may_be_framed_anywhere_and_private_pages_nowhere(app, client) -> None:
    model_id = add_model(app, "acme", published=True, name="Mug")
    for path in (f"/v/{model_id}", "/shop/acme", "/viewer/recon-viewer.js"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["Content-Security-Policy"] == "frame-ancestors *", path
        assert "X-Frame-Options" not in response.headers, path
    for path in ("/app", "/api/v1/health", f"/api/v1/public/models/{model_id}"):
        response = client.get(path)
        assert response.status_code == 200, path
        assert response.headers["Content-Security-Policy"] == "frame-ancestors 'none'", path
        assert response.headers["X-Frame-Options"] == "DENY", path


def test_a_shop_loads_the_viewer_script_and_its_decoders_from_us(client) -> None:
    for path in ("/viewer/recon-viewer.js", "/viewer/vendor/model-viewer/model-viewer.min.js",
                 "/viewer/vendor/draco/draco_decoder.wasm",
                 "/viewer/vendor/basis/basis_transcoder.wasm"):  # fmt: skip
        response = client.get(path, headers={"Origin": "https://shop.example"})
        assert response.status_code == 200, path
        assert response.headers["Access-Control-Allow-Origin"] == "*", path
    script = client.get("/viewer/recon-viewer.js").get_data(as_text=True)
    assert "vendor/draco/" in script
    assert "vendor/basis/" in script
    assert "gstatic" not in script
    assert "https://" not in script
    assert client.get("/viewer/vendor/three/package.json").status_code == 404
    assert client.get("/viewer/vendor/draco/../../../../package.json").status_code == 404


def test_unpublished_and_unknown_models_have_no_viewer_page(app, client) -> None:
    model_id = add_model(app, "acme", published=False, name="Secret")
    for path in (f"/v/{model_id}", "/v/mdl_missing", "/shop/nobody"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.mimetype == "text/html"
    assert "Secret" not in client.get("/shop/acme").get_data(as_text=True)


def test_the_storefront_lists_only_published_models_with_3dmodel_markup(app, client) -> None:
    shown = add_model(app, "Acme Shoes", published=True, name="Boot </script>",
                      files=("model.glb", "model.usdz", "poster.webp"))  # fmt: skip
    add_model(app, "Acme Shoes", published=False, name="Draft")
    add_model(app, "other", published=True, name="Not ours")
    response = client.get("/shop/Acme%20Shoes")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert html.count('class="product"') == 1
    assert f'href="/v/{shown}"' in html
    assert f"/api/v1/public/models/{shown}/poster.webp" in html
    assert "19.0 × 28.0 × 7.0 cm" in html
    assert "Draft" not in html
    assert "Not ours" not in html
    listing = jsonld(html)  # the name's "</script>" did not end the markup early
    assert listing["@type"] == "ItemList"
    (entry,) = listing["itemListElement"]
    item = entry["item"]
    assert item["@type"] == "3DModel"
    assert item["name"] == "Boot </script>"
    assert item["url"] == f"http://localhost/v/{shown}"
    formats = {e["encodingFormat"]: e["contentUrl"] for e in item["encoding"]}
    assert formats == {
        "model/gltf-binary": f"http://localhost/api/v1/public/models/{shown}/model.glb",
        "model/vnd.usdz+zip": f"http://localhost/api/v1/public/models/{shown}/model.usdz",
    }
    assert item["height"]["value"] == pytest.approx(0.28)
    assert client.get(formats["model/gltf-binary"]).data == GLB


def test_the_viewer_page_names_its_model(app, client) -> None:
    model_id = add_model(app, "acme", published=True, name="Mug & saucer")
    html = client.get(f"/v/{model_id}?dimensions=1&autorotate=0").get_data(as_text=True)
    assert f'<recon-viewer model="{model_id}" dimensions autorotate="false">' in html
    assert "<title>Mug &amp; saucer in 3D</title>" in html
    assert jsonld(html)["@type"] == "3DModel"


def test_the_merchant_endpoint_names_the_key_holder(app, client) -> None:
    with app.extensions["recon"]["sessions"]() as session:
        key = create_merchant(session, "Acme Shoes")[1]
    response = client.get("/api/v1/merchant", headers={"Authorization": f"Bearer {key}"})
    assert response.json == {
        "name": "Acme Shoes",
        "key_hint": key[-4:],
        "storefront_url": "/shop/Acme%20Shoes",
    }
    assert client.get("/api/v1/merchant").status_code == 401
