"""Models: a finished job's files, private to the merchant until published for shops to embed."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request, send_file
from sqlalchemy import select

from api.auth import current_merchant
from api.context import db, owned, page_of, settings, storage
from api.db import Job, Model, utcnow
from api.errors import not_found
from api.serialize import model_json
from api.storage import MODEL_FILES

blueprint = Blueprint("models", __name__)
public = Blueprint("public_models", __name__)


@blueprint.get("/models")
def list_models() -> Response:
    merchant = current_merchant(db())
    query = select(Model).where(Model.merchant_id == merchant.id)
    if (published := request.args.get("published")) in ("true", "false"):
        query = query.where(Model.published == (published == "true"))
    if sku := request.args.get("sku"):
        query = query.where(Model.sku == sku)
    models, paging = page_of(query, Model.created_at.desc(), Model.id)
    return jsonify(models=[model_json(model) for model in models], **paging)


@blueprint.get("/models/<model_id>")
def get_model(model_id: str) -> Response:
    return jsonify(model_json(merchant_model(model_id)))


@blueprint.get("/models/<model_id>/files/<name>")
def get_model_file(model_id: str, name: str) -> Response:
    model = merchant_model(model_id)
    response = _send_model_file(model, name)
    response.headers["Cache-Control"] = "private, no-cache"
    return response


@blueprint.post("/models/<model_id>/publish")
def publish_model(model_id: str) -> Response:
    model = merchant_model(model_id)
    if not model.published:
        model.published, model.published_at = True, utcnow()
        db().commit()
    return jsonify(model_json(model))


@blueprint.post("/models/<model_id>/unpublish")
def unpublish_model(model_id: str) -> Response:
    model = merchant_model(model_id)
    if model.published:
        model.published, model.published_at = False, None
        db().commit()
    return jsonify(model_json(model))


@blueprint.delete("/models/<model_id>")
def delete_model(model_id: str) -> Response:
    """Deletes the model's files and record; the job and its uploaded photos stay."""
    model = merchant_model(model_id)
    job = db().get(Job, model.job_id)
    if job is not None:
        job.model_id = None
    db().delete(model)
    db().commit()
    storage().delete_model(model_id)
    return Response(status=204)


@public.get("/public/models/<model_id>")
def get_public_model(model_id: str) -> Response:
    """A published model's metadata and file URLs, for a shop's page (no key needed)."""
    response = jsonify(model_json(published_model(model_id), public=True))
    response.headers["Cache-Control"] = f"public, max-age={settings().public_max_age_s}"
    return response


@public.get("/public/models/<model_id>/<name>")
def get_public_model_file(model_id: str, name: str) -> Response:
    response = _send_model_file(published_model(model_id), name)
    response.headers["Cache-Control"] = f"public, max-age={settings().public_max_age_s}"
    return response


@public.after_request
def _allow_embedding(response: Response) -> Response:
    """Published models are fetched by shops' pages on other origins (model-viewer, three)."""
    response.headers["Access-Control-Allow-Origin"] = settings().cors_origins
    response.headers["Access-Control-Expose-Headers"] = "ETag, Content-Length"
    response.headers["Vary"] = "Origin"
    return response


def merchant_model(model_id: str) -> Model:
    return owned(Model, model_id, "model")


def published_model(model_id: str) -> Model:
    model = db().get(Model, model_id)
    if model is None or not model.published:
        raise not_found(f"published model {model_id}")
    return model


def _send_model_file(model: Model, name: str) -> Response:
    info = (model.files or {}).get(name)
    path = storage().model_dir(model.id) / name
    if name not in MODEL_FILES or info is None or not path.is_file():
        raise not_found(f"file {name} of model {model.id}")
    return send_file(path, mimetype=MODEL_FILES[name], etag=info["etag"], conditional=True)
