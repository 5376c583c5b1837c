"""Showrooms: a merchant's scene model with published products placed in it (recon.showroom's
layout), for the walk-through page /showroom/ID."""

from __future__ import annotations

import math
from typing import Any

import trimesh
from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select

from api.auth import current_merchant
from api.context import db, owned, page_of, settings, storage
from api.db import Model, Showroom, new_id, utcnow
from api.errors import ApiError, not_found
from api.serialize import API, timestamp
from recon import showroom as layouts
from recon.errors import InputError

blueprint = Blueprint("showrooms", __name__)
public = Blueprint("public_showrooms", __name__)

MAX_PRODUCTS = 50  # placement checks every pair; a bigger shop is several showrooms
MAX_NAME = 200
# A product in a showroom is one of several on screen: its phone-sized tier when it has one.
PRODUCT_FILES = ("model_50k.glb", "model.glb")


@blueprint.post("/showrooms")
def create_showroom() -> Response:
    """Places the products on the scene's free surfaces (recon.showroom.place_products)."""
    merchant = current_merchant(db())
    body = _json_body()
    unknown = set(body) - {"scene_model_id", "product_model_ids", "name"}
    if unknown:
        raise ApiError(400, "bad_request", f"unknown field(s): {', '.join(sorted(unknown))}")
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name.strip()) > MAX_NAME):
        raise ApiError(400, "bad_request", f"name must be text of at most {MAX_NAME} characters")
    scene_id = body.get("scene_model_id")
    if not isinstance(scene_id, str) or not scene_id:
        raise ApiError(400, "bad_request", "scene_model_id must name a scene model (its id)")
    product_ids = body.get("product_model_ids")
    if (
        not isinstance(product_ids, list)
        or not 1 <= len(product_ids) <= MAX_PRODUCTS
        or not all(isinstance(p, str) and p for p in product_ids)
    ):
        raise ApiError(
            400, "bad_request",
            f"product_model_ids must list 1–{MAX_PRODUCTS} product model ids",
        )  # fmt: skip

    scene, scene_files = _usable_model(scene_id, "scene")
    placing = [
        _product(f"p{i}", *_usable_model(product_id, "object"))
        for i, product_id in enumerate(product_ids)
    ]
    scene_mesh = _scene_mesh(scene, scene_files)
    try:
        layout = layouts.place_products(
            scene_mesh,
            _surfaces(scene, scene_files, scene_mesh),
            placing,
            scene_model=_public_glb(scene),
            units=scene_files.units,
        )
    except InputError as error:
        raise ApiError(422, "no_room", str(error)) from None
    showroom = Showroom(
        id=new_id("shr"),
        merchant_id=merchant.id,
        name=(name or "").strip() or scene.name or "Showroom",
        scene_model_id=scene.id,
        layout=layout.to_json(),
    )
    db().add(showroom)
    db().commit()
    response = jsonify(showroom_json(showroom))
    response.status_code = 201
    response.headers["Location"] = f"{API}/showrooms/{showroom.id}"
    return response


@blueprint.get("/showrooms")
def list_showrooms() -> Response:
    merchant = current_merchant(db())
    query = select(Showroom).where(Showroom.merchant_id == merchant.id)
    showrooms, paging = page_of(query, Showroom.created_at.desc(), Showroom.id)
    return jsonify(showrooms=[showroom_json(s) for s in showrooms], **paging)


@blueprint.get("/showrooms/<showroom_id>")
def get_showroom(showroom_id: str) -> Response:
    return jsonify(showroom_json(owned(Showroom, showroom_id, "showroom")))


@blueprint.patch("/showrooms/<showroom_id>/products/<product_id>")
def move_product(showroom_id: str, product_id: str) -> Response:
    """Moves one product (recon.showroom.move_product): 422 with the reason when the new place
    is not free or not on a surface."""
    showroom = owned(Showroom, showroom_id, "showroom")
    if not any(p.get("id") == product_id for p in showroom.layout.get("products", [])):
        raise not_found(f"product {product_id} of showroom {showroom_id}")
    body = _json_body()
    unknown = set(body) - {"position", "surface", "rotation_y_deg"}
    if unknown:
        raise ApiError(400, "bad_request", f"unknown field(s): {', '.join(sorted(unknown))}")
    if not body:
        raise ApiError(
            400, "bad_request", "say where to: position [x, y, z], surface (an id), rotation_y_deg"
        )
    position = body.get("position")
    if position is not None and not (
        isinstance(position, list) and len(position) == 3 and all(map(_is_number, position))
    ):
        raise ApiError(400, "bad_request", "position must be [x, y, z], three numbers")
    surface = body.get("surface")
    if surface is not None and (not isinstance(surface, int) or isinstance(surface, bool)):
        raise ApiError(400, "bad_request", "surface must be a surface id (a whole number)")
    rotation = body.get("rotation_y_deg")
    if rotation is not None and not _is_number(rotation):
        raise ApiError(400, "bad_request", "rotation_y_deg must be a number of degrees")

    scene = db().get(Model, showroom.scene_model_id)
    try:
        scene_files = layouts.load_reconstruction(storage().model_dir(showroom.scene_model_id))
    except InputError:
        scene_files = None
    if scene is None or scene_files is None:
        raise ApiError(
            409, "conflict", f"the showroom's scene model {showroom.scene_model_id} was deleted"
        )
    scene_mesh = _scene_mesh(scene, scene_files)
    try:
        moved = layouts.move_product(
            layouts.Layout.from_json(showroom.layout),
            scene_mesh,
            product_id,
            position=None if position is None else [float(v) for v in position],
            surface=surface,
            rotation_y_deg=None if rotation is None else float(rotation),
        )
    except InputError as error:
        raise ApiError(422, "not_free", str(error)) from None
    showroom.layout = moved.to_json()
    showroom.updated_at = utcnow()
    db().commit()
    return jsonify(showroom_json(showroom))


@blueprint.delete("/showrooms/<showroom_id>")
def delete_showroom(showroom_id: str) -> Response:
    """Deletes the showroom (its layout); the scene and product models stay."""
    showroom = owned(Showroom, showroom_id, "showroom")
    db().delete(showroom)
    db().commit()
    return Response(status=204)


@public.get("/public/showrooms/<showroom_id>")
def get_public_showroom(showroom_id: str) -> Response:
    """The layout for the walk-through page and shops' pages (no key; CORS): products whose
    model is no longer published are left out; 404 once the scene is not published."""
    showroom = db().get(Showroom, showroom_id)
    scene = db().get(Model, showroom.scene_model_id) if showroom else None
    if scene is None or not scene.published:
        raise not_found(f"showroom {showroom_id}")
    layout = dict(showroom.layout)
    shown = _published_ids(showroom)
    layout["products"] = [p for p in layout.get("products", []) if p.get("model_id") in shown]
    response = jsonify(
        id=showroom.id,
        name=showroom.name,
        updated_at=timestamp(showroom.updated_at),
        page_url=f"/showroom/{showroom.id}",
        layout=layout,
    )
    # Revalidated every time (ETag): a product the merchant just moved shows at once.
    response.headers["Cache-Control"] = "public, no-cache"
    response.add_etag()
    return response.make_conditional(request)


@public.after_request
def _allow_embedding(response: Response) -> Response:
    """Shops' pages on other origins read the layout, as they read published models."""
    response.headers["Access-Control-Allow-Origin"] = settings().cors_origins
    response.headers["Vary"] = "Origin"
    return response


def showroom_json(showroom: Showroom) -> dict:
    products = showroom.layout.get("products", [])
    shown = _published_ids(showroom)
    return {
        "id": showroom.id,
        "name": showroom.name,
        "scene_model_id": showroom.scene_model_id,
        "product_model_ids": [p.get("model_id") for p in products],
        # Unpublished or deleted since: the page leaves these out until they are back.
        "hidden_product_ids": [p["id"] for p in products if p.get("model_id") not in shown],
        "warnings": _warnings(showroom),
        "layout": showroom.layout,
        "created_at": timestamp(showroom.created_at),
        "updated_at": timestamp(showroom.updated_at),
        "page_url": f"/showroom/{showroom.id}",
        "public_url": f"{API}/public/showrooms/{showroom.id}",
    }


def _warnings(showroom: Showroom) -> list[str]:
    if showroom.layout.get("scene", {}).get("units") == "metre":
        return []
    return [
        "the space's real size is unknown (its reconstruction had no scale mat or known "
        "length), so products stand in it at 1 scene unit per metre and may look too big or "
        "too small; reconstruct the space with the printed mat in view to fix it"
    ]


def _published_ids(showroom: Showroom) -> set[str]:
    ids = {p.get("model_id") for p in showroom.layout.get("products", [])} - {None}
    if not ids:
        return set()
    return set(db().scalars(select(Model.id).where(Model.id.in_(ids), Model.published.is_(True))))


def _json_body() -> dict:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "send a JSON object (Content-Type: application/json)")
    return body


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _usable_model(model_id: str, mode: str) -> tuple[Model, layouts.Reconstruction]:
    """The merchant's published model of `mode` ('scene' or 'object') and its files, or a
    4xx saying why not."""
    model = owned(Model, model_id, "model")
    if not model.published:
        raise ApiError(
            422, "unusable_model",
            f"model {model.id} is not published: publish it first "
            f"(POST {API}/models/{model.id}/publish), since the showroom page is public",
        )  # fmt: skip
    try:
        files = layouts.load_reconstruction(storage().model_dir(model.id))
    except InputError:  # its message names server paths: say it in the model's terms
        raise ApiError(
            422, "unusable_model",
            f"model {model.id} lacks its model.glb or report.json; reconstruct it again",
        ) from None  # fmt: skip
    actual = files.report.get("mode", "object")  # models from before scenes are objects
    if actual != mode:
        role, why = (
            ("the showroom's space", "a space must be reconstructed with mode 'scene' (an "
             "inside-out capture or a walk through the room)")
            if mode == "scene"
            else ("a product", "products must be single objects (mode 'object'), not spaces")
        )  # fmt: skip
        raise ApiError(
            422, "unusable_model",
            f"model {model.id} is {'a scene' if actual == 'scene' else 'an object'} model, not "
            f"{role}: {why}",
        )  # fmt: skip
    return model, files


def _model_error(model: Model, error: InputError) -> ApiError:
    why = str(error).replace(str(storage().model_dir(model.id)), f"model {model.id}")
    return ApiError(422, "unusable_model", why)


def _scene_mesh(scene: Model, files: layouts.Reconstruction) -> trimesh.Trimesh:
    try:
        return files.mesh()
    except InputError as error:
        raise _model_error(scene, error) from None


def _surfaces(scene: Model, files: layouts.Reconstruction, mesh: trimesh.Trimesh) -> list:
    """The scene's surfaces from its report; found afresh for a report without them."""
    try:
        return files.surfaces(mesh)
    except InputError as error:
        raise ApiError(
            422, "unusable_model",
            f"scene model {scene.id} has no surfaces to stand products on: "
            f"{_model_error(scene, error).message}",
        ) from None  # fmt: skip


def _product(product_id: str, model: Model, files: layouts.Reconstruction) -> layouts.Product:
    """One product for place_products: its size (metres) and the public URLs the page loads."""
    if files.units != "metre":
        raise ApiError(
            422, "unusable_model",
            f"model {model.id}'s real size is unknown (units 'unknown'), so it cannot stand in "
            "a showroom at its true size: reconstruct it with a known height, width or depth "
            "(height_m, ...)",
        )  # fmt: skip
    try:
        bbox_m = files.bbox_m
    except InputError as error:
        raise _model_error(model, error) from None
    file = next(name for name in PRODUCT_FILES if name in (model.files or {}))
    return layouts.Product(
        id=product_id,
        model=f"{API}/public/models/{model.id}/{file}",
        name=model.name or model.sku or "Product",
        bbox_m=bbox_m,
        model_id=model.id,
        viewer_url=f"/v/{model.id}",
    )


def _public_glb(model: Model) -> str:
    return f"{API}/public/models/{model.id}/model.glb"
