"""The OpenAPI 3 description of the API, served at /api/v1/openapi.json (tests hold code to it)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

import recon
from api.context import MAX_PAGE, MAX_PER_PAGE
from api.jobs import DIMENSIONS, MAX_MB_RANGE, MODES, PRESETS
from api.showrooms import MAX_NAME, MAX_PRODUCTS
from api.storage import MODEL_FILES
from recon.capture_qa import Check

blueprint = Blueprint("openapi", __name__)


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERROR = {"default": _json(_ref("Error"), "the request was refused (4xx) or failed (5xx)")}
_NULLABLE_STRING = {"type": "string", "nullable": True}
_TIME = {"type": "string", "format": "date-time", "nullable": True}
_PAGE_PARAMETERS = [
    {
        "name": "page",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": 1},
    },
    {
        "name": "per_page",
        "in": "query",
        "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PER_PAGE, "default": 20},
    },
]
_FILE_NAME = {"name": "name", "in": "path", "required": True, "schema": {"enum": list(MODEL_FILES)}}
_FILE_RESPONSES = {
    "200": {
        "description": "the file (ETag; If-None-Match and Range honoured)",
        "content": {
            mime: {"schema": {"type": "string", "format": "binary"}}
            for mime in MODEL_FILES.values()
        },
    },
    "304": {"description": "not modified since the ETag sent"},
    **_ERROR,
}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "Job": {
        "type": "object",
        "required": ["id", "state", "progress", "warnings", "options", "created_at", "links"],
        "properties": {
            "id": {"type": "string"},
            "state": {"enum": ["queued", "running", "succeeded", "failed", "cancelled"]},
            "stage": {**_NULLABLE_STRING, "description": "the pipeline stage running now"},
            "progress": {"type": "number", "minimum": 0, "maximum": 1},
            "eta_s": {"type": "number", "nullable": True, "description": "seconds left"},
            "message": _NULLABLE_STRING,
            "warnings": {"type": "array", "items": {"type": "string"}},
            "error": {
                "type": "object",
                "nullable": True,
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            },
            "options": {"type": "object"},
            "input": {
                "type": "object",
                "properties": {
                    "kind": {"enum": ["photos", "zip", "video"]},
                    "files": {"type": "integer"},
                    "bytes": {"type": "integer"},
                },
            },
            "capture_check": {
                "allOf": [_ref("CaptureCheck")],
                "nullable": True,
                "description": "the quick check of the upload before it was queued (null: "
                "not checked; videos are checked when the job runs)",
            },
            "callback_url": _NULLABLE_STRING,
            "attempts": {"type": "integer"},
            "model_id": _NULLABLE_STRING,
            "created_at": _TIME,
            "started_at": _TIME,
            "finished_at": _TIME,
            "links": {"type": "object", "additionalProperties": {"type": "string"}},
        },
    },
    "CaptureCheck": {
        "type": "object",
        "required": ["verdict", "reshoot", "cannot_work", "advice", "photos", "usable", "images"],
        "properties": {
            "version": {"type": "integer"},
            "verdict": {"enum": ["ok", "reshoot"]},
            "reshoot": {
                "type": "array",
                "items": {"type": "string"},
                "description": "why the capture should be taken again; empty when it is fine",
            },
            "cannot_work": {
                "type": "boolean",
                "description": "too few usable photos for any model (a job is refused)",
            },
            "advice": {"type": "array", "items": {"type": "string"}},
            "photos": {"type": "integer"},
            "usable": {"type": "integer", "description": "photos without any problem"},
            "problems": {"type": "object", "additionalProperties": {"type": "integer"}},
            "poses": {"enum": ["estimated", "solved", "none"]},
            "coverage": {
                "type": "object",
                "nullable": True,
                "description": "gaps around the product (degrees from the first photo), "
                "largest_gap_deg, elevation_deg {min, max}, views_from_above, judged (false: "
                "gaps left to the reconstruction), little_detail (photos too bare to match)",
            },
            "images": {
                "type": "array",
                "description": "the photos with problems",
                "items": {
                    "type": "object",
                    "required": ["image", "problems"],
                    "properties": {
                        "image": {"type": "string"},
                        "problems": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["check", "reason"],
                                "properties": {
                                    "check": {"enum": [str(check) for check in Check]},
                                    "reason": {"type": "string"},
                                },
                            },
                        },
                    },
                },
            },
            "notes": {"type": "array", "items": {"type": "string"}},
            "timings_s": {"type": "object"},
        },
    },
    "JobList": {
        "type": "object",
        "required": ["jobs", "page", "per_page", "total", "pages"],
        "properties": {
            "jobs": {"type": "array", "items": _ref("Job")},
            "page": {"type": "integer"},
            "per_page": {"type": "integer"},
            "total": {"type": "integer"},
            "pages": {"type": "integer"},
        },
    },
    "ModelFile": {
        "type": "object",
        "required": ["url", "bytes", "etag"],
        "properties": {
            "url": {"type": "string"},
            "bytes": {"type": "integer"},
            "etag": {"type": "string"},
        },
    },
    "PublicModel": {
        "type": "object",
        "required": ["id", "published", "files", "summary"],
        "properties": {
            "id": {"type": "string"},
            "name": _NULLABLE_STRING,
            "sku": _NULLABLE_STRING,
            "published": {"type": "boolean"},
            "published_at": _TIME,
            "created_at": _TIME,
            "summary": {
                "type": "object",
                "description": "units ('metre' or 'unknown'), bbox [w, h, d], faces, vertices, "
                "texture_px, photos_used, photos_total, preset, mode ('object' or 'scene')",
            },
            "files": {"type": "object", "additionalProperties": _ref("ModelFile")},
        },
    },
    "Model": {
        "allOf": [
            _ref("PublicModel"),
            {
                "type": "object",
                "required": ["job_id"],
                "properties": {"job_id": {"type": "string"}, "public_url": _NULLABLE_STRING},
            },
        ]
    },
    "ModelList": {
        "type": "object",
        "required": ["models", "page", "per_page", "total", "pages"],
        "properties": {
            "models": {"type": "array", "items": _ref("Model")},
            "page": {"type": "integer"},
            "per_page": {"type": "integer"},
            "total": {"type": "integer"},
            "pages": {"type": "integer"},
        },
    },
    "ShowroomLayout": {
        "type": "object",
        "description": "showroom.json (recon.showroom.Layout): the scene's GLB URL, units and "
        "surfaces; each product's GLB URL, model_id, viewer_url, bbox_m, surface, position "
        "[x, y, z] of its bottom centre, rotation_y_deg and scale; the visitor's spawn",
        "required": ["version", "scene", "products", "spawn"],
        "properties": {
            "version": {"type": "integer"},
            "scene": {
                "type": "object",
                "required": ["model", "units", "surfaces"],
                "properties": {
                    "model": {"type": "string"},
                    "units": {"enum": ["metre", "unknown"]},
                    "surfaces": {"type": "array", "items": {"type": "object"}},
                },
            },
            "products": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["id", "model", "name", "bbox_m", "position"],
                    "properties": {
                        "id": {"type": "string"},
                        "model": {"type": "string"},
                        "name": {"type": "string"},
                        "model_id": _NULLABLE_STRING,
                        "viewer_url": _NULLABLE_STRING,
                        "bbox_m": {"type": "array", "items": {"type": "number"}},
                        "surface": {"type": "integer", "nullable": True},
                        "position": {
                            "type": "array",
                            "items": {"type": "number"},
                            "nullable": True,
                        },
                        "rotation_y_deg": {"type": "number"},
                        "scale": {"type": "number"},
                    },
                },
            },
            "spawn": {"type": "object"},
        },
    },
    "PublicShowroom": {
        "type": "object",
        "required": ["id", "layout", "page_url"],
        "properties": {
            "id": {"type": "string"},
            "name": _NULLABLE_STRING,
            "updated_at": _TIME,
            "page_url": {"type": "string", "description": "the walk-through page"},
            "layout": _ref("ShowroomLayout"),
        },
    },
    "Showroom": {
        "type": "object",
        "required": ["id", "scene_model_id", "product_model_ids", "layout", "page_url"],
        "properties": {
            "id": {"type": "string"},
            "name": _NULLABLE_STRING,
            "scene_model_id": {"type": "string"},
            "product_model_ids": {"type": "array", "items": _NULLABLE_STRING},
            "hidden_product_ids": {
                "type": "array",
                "items": {"type": "string"},
                "description": "products whose model is no longer published: left out of "
                "the public layout until it is again",
            },
            "warnings": {"type": "array", "items": {"type": "string"}},
            "layout": _ref("ShowroomLayout"),
            "created_at": _TIME,
            "updated_at": _TIME,
            "page_url": {"type": "string"},
            "public_url": {"type": "string"},
        },
    },
    "ShowroomList": {
        "type": "object",
        "required": ["showrooms", "page", "per_page", "total", "pages"],
        "properties": {
            "showrooms": {"type": "array", "items": _ref("Showroom")},
            "page": {"type": "integer"},
            "per_page": {"type": "integer"},
            "total": {"type": "integer"},
            "pages": {"type": "integer"},
        },
    },
}

_JOB_FORM = {
    "type": "object",
    "required": ["files"],
    "properties": {
        "files": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": "JPEG/PNG/HEIC photos (3 or more), or one .zip of them, or one "
            "MP4/MOV/WebM video; types are told by content, not by name",
        },
        "preset": {"enum": list(PRESETS), "default": "standard"},
        "mode": {
            "enum": list(MODES),
            "default": "object",
            "description": "object: one product, masked from its background; scene: a shop "
            "space captured inside-out or walked through (a showroom's scene)",
        },
        "name": {"type": "string", "maxLength": 200},
        "sku": {"type": "string", "maxLength": 100},
        **{
            f"{d}_m": {
                "type": "number",
                "minimum": 0.001,
                "maximum": 100,
                "description": f"known {d} in metres: the model comes out in metres",
            }
            for d in DIMENSIONS
        },
        "compress": {
            "type": "boolean",
            "default": False,
            "description": "Draco-compress the GLB geometry (the USDZ stays uncompressed)",
        },
        "max_mb": {
            "type": "number",
            "minimum": MAX_MB_RANGE[0],
            "maximum": MAX_MB_RANGE[1],
            "description": "fit model.glb under this many MB (10^6 bytes): lower JPEG quality, "
            "texture size, then triangles",
        },
        "callback_url": {
            "type": "string",
            "format": "uri",
            "description": "POSTed the job (JSON) when it finishes, signed: X-Recon-Signature = "
            "'sha256=' + hex HMAC-SHA256 of the body with the merchant's webhook secret",
        },
    },
}


def _job_id() -> dict:
    return {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _model_id() -> dict:
    return {"name": "model_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _path(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


_SHOWROOM_BODY = {
    "type": "object",
    "required": ["scene_model_id", "product_model_ids"],
    "additionalProperties": False,
    "properties": {
        "scene_model_id": {
            "type": "string",
            "description": "a published model reconstructed with mode 'scene'",
        },
        "product_model_ids": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_PRODUCTS,
            "items": {"type": "string"},
            "description": "published object models in metres, placed in this order",
        },
        "name": {"type": "string", "maxLength": MAX_NAME},
    },
}
_MOVE_BODY = {
    "type": "object",
    "minProperties": 1,
    "additionalProperties": False,
    "properties": {
        "position": {
            "type": "array",
            "items": {"type": "number"},
            "minItems": 3,
            "maxItems": 3,
            "description": "where the product's bottom centre goes, scene units",
        },
        "surface": {
            "type": "integer",
            "description": "a surface id of the layout: alone, the best free spot on it",
        },
        "rotation_y_deg": {"type": "number"},
    },
}


def spec() -> dict:
    job = _json(_ref("Job"), "the job")
    model = _json(_ref("Model"), "the model")
    showroom = _json(_ref("Showroom"), "the showroom")
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "recon: product photos to 3D models",
            "version": recon.__version__,
            "description": "Upload photos of a product; get a textured glTF model to embed. "
            'Errors are JSON: {"error": {"code", "message"}}.',
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
            "schemas": SCHEMAS,
        },
        "paths": {
            "/health": {
                "get": {
                    "summary": "Is the service up",
                    "security": [],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["status", "version"],
                                "properties": {
                                    "status": {"type": "string"},
                                    "version": {"type": "string"},
                                },
                            },
                            "the service answers",
                        )
                    },
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This description",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3 document")},
                }
            },
            "/merchant": {
                "get": {
                    "summary": "Whose key this is, and the merchant's storefront page",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["name", "key_hint", "storefront_url"],
                                "properties": {
                                    "name": {"type": "string"},
                                    "key_hint": {"type": "string"},
                                    "storefront_url": {"type": "string"},
                                },
                            },
                            "the merchant",
                        ),
                        **_ERROR,
                    },
                }
            },
            "/jobs": {
                "post": {
                    "summary": "Start a reconstruction from photos, a zip or a video (photos "
                    "are checked first: 422 unusable_capture when they cannot make a model)",
                    "requestBody": {
                        "required": True,
                        "content": {"multipart/form-data": {"schema": _JOB_FORM}},
                    },
                    "responses": {
                        "202": {
                            **job,
                            "headers": {"Location": {"schema": {"type": "string"}}},
                        },
                        **_ERROR,
                    },
                },
                "get": {
                    "summary": "The merchant's jobs, newest first",
                    "parameters": [
                        {
                            "name": "state",
                            "in": "query",
                            "schema": {
                                "enum": ["queued", "running", "succeeded", "failed", "cancelled"]
                            },
                        },
                        *_PAGE_PARAMETERS,
                    ],
                    "responses": {"200": _json(_ref("JobList"), "one page of jobs"), **_ERROR},
                },
            },
            "/checks": {
                "post": {
                    "summary": "Check photos, a zip or a video in seconds without starting a job "
                    "(nothing is kept)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "required": ["files"],
                                    "properties": {"files": _JOB_FORM["properties"]["files"]},
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _json(_ref("CaptureCheck"), "the capture's problems and advice"),
                        **_ERROR,
                    },
                }
            },
            "/jobs/{job_id}": {
                "get": {
                    "summary": "A job's state, stage, progress and ETA",
                    "parameters": [_job_id()],
                    "responses": {"200": job, **_ERROR},
                }
            },
            "/jobs/{job_id}/cancel": {
                "post": {
                    "summary": "Cancel a job (200: cancelled; 202: the running job is stopping)",
                    "parameters": [_job_id()],
                    "responses": {"200": job, "202": job, **_ERROR},
                }
            },
            "/models": {
                "get": {
                    "summary": "The merchant's models, newest first",
                    "parameters": [
                        {"name": "published", "in": "query", "schema": {"enum": ["true", "false"]}},
                        {"name": "sku", "in": "query", "schema": {"type": "string"}},
                        *_PAGE_PARAMETERS,
                    ],
                    "responses": {"200": _json(_ref("ModelList"), "one page of models"), **_ERROR},
                }
            },
            "/models/{model_id}": {
                "get": {
                    "summary": "A model's metadata and file links",
                    "parameters": [_model_id()],
                    "responses": {"200": model, **_ERROR},
                },
                "delete": {
                    "summary": "Delete a model and its files (the job and its photos stay)",
                    "parameters": [_model_id()],
                    "responses": {"204": {"description": "deleted"}, **_ERROR},
                },
            },
            "/models/{model_id}/files/{name}": {
                "get": {
                    "summary": "One of the model's files",
                    "parameters": [_model_id(), _FILE_NAME],
                    "responses": _FILE_RESPONSES,
                }
            },
            "/models/{model_id}/publish": {
                "post": {
                    "summary": "Make the model's files public for shops to embed",
                    "parameters": [_model_id()],
                    "responses": {"200": model, **_ERROR},
                }
            },
            "/models/{model_id}/unpublish": {
                "post": {
                    "summary": "Take the model's public files down",
                    "parameters": [_model_id()],
                    "responses": {"200": model, **_ERROR},
                }
            },
            "/public/models/{model_id}": {
                "get": {
                    "summary": "A published model's metadata (no key; CORS; cacheable)",
                    "security": [],
                    "parameters": [_model_id()],
                    "responses": {"200": _json(_ref("PublicModel"), "the model"), **_ERROR},
                }
            },
            "/showrooms": {
                "post": {
                    "summary": "Make a showroom: the products placed automatically on the free "
                    "surfaces of the scene (422 with the reason when they do not fit)",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _SHOWROOM_BODY}},
                    },
                    "responses": {
                        "201": {
                            **showroom,
                            "headers": {"Location": {"schema": {"type": "string"}}},
                        },
                        **_ERROR,
                    },
                },
                "get": {
                    "summary": "The merchant's showrooms, newest first",
                    "parameters": _PAGE_PARAMETERS,
                    "responses": {
                        "200": _json(_ref("ShowroomList"), "one page of showrooms"),
                        **_ERROR,
                    },
                },
            },
            "/showrooms/{showroom_id}": {
                "get": {
                    "summary": "A showroom and its layout",
                    "parameters": [_path("showroom_id")],
                    "responses": {"200": showroom, **_ERROR},
                },
                "delete": {
                    "summary": "Delete a showroom (its models stay)",
                    "parameters": [_path("showroom_id")],
                    "responses": {"204": {"description": "deleted"}, **_ERROR},
                },
            },
            "/showrooms/{showroom_id}/products/{product_id}": {
                "patch": {
                    "summary": "Move, turn or re-shelve one product (422 with the reason when "
                    "the place is not free or not on a surface)",
                    "parameters": [_path("showroom_id"), _path("product_id")],
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _MOVE_BODY}},
                    },
                    "responses": {"200": showroom, **_ERROR},
                }
            },
            "/public/showrooms/{showroom_id}": {
                "get": {
                    "summary": "A showroom's layout for the walk-through page /showroom/ID (no "
                    "key; CORS; revalidated by ETag; products no longer published left out)",
                    "security": [],
                    "parameters": [_path("showroom_id")],
                    "responses": {
                        "200": _json(_ref("PublicShowroom"), "the showroom (ETag)"),
                        "304": {"description": "not modified since the ETag sent"},
                        **_ERROR,
                    },
                }
            },
            "/public/models/{model_id}/{name}": {
                "get": {
                    "summary": "A published model's file (no key; CORS; ETag; cacheable)",
                    "security": [],
                    "parameters": [_model_id(), _FILE_NAME],
                    "responses": _FILE_RESPONSES,
                }
            },
        },
    }


@blueprint.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(spec())
