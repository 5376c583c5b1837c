"""How jobs and models look in JSON: the API's responses and the webhooks share these."""

from __future__ import annotations

import datetime as dt

from api.db import Job, Model

API = "/api/v1"


def timestamp(value: dt.datetime | None) -> str | None:
    return None if value is None else value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def job_json(job: Job) -> dict:
    links = {"self": f"{API}/jobs/{job.id}"}
    if job.model_id:
        links["model"] = f"{API}/models/{job.model_id}"
    return {
        "id": job.id,
        "state": job.state,
        "stage": job.stage,
        "progress": round(job.progress or 0.0, 4),
        "eta_s": job.eta_s,
        "message": job.message,
        "warnings": list(job.warnings or []),
        "error": (
            {"code": job.error_code, "message": job.error_message} if job.error_code else None
        ),
        "options": dict(job.options or {}),
        "input": {k: v for k, v in (job.input or {}).items() if k not in ("name", "check")},
        # recon.capture_qa's quick check of the upload (None: not checked, e.g. a video)
        "capture_check": (job.input or {}).get("check"),
        "callback_url": job.callback_url,
        "attempts": job.attempts,
        "model_id": job.model_id,
        "created_at": timestamp(job.created_at),
        "started_at": timestamp(job.started_at),
        "finished_at": timestamp(job.finished_at),
        "links": links,
    }


def model_json(model: Model, *, public: bool = False) -> dict:
    """A model's metadata; `public` is what embedders see of a published model (no job, no
    private links)."""
    base = f"{API}/public/models/{model.id}" if public else f"{API}/models/{model.id}"
    files = {
        name: {
            "url": f"{base}/{name}" if public else f"{base}/files/{name}",
            "bytes": info["bytes"],
            "etag": info["etag"],
        }
        for name, info in sorted((model.files or {}).items())
    }
    body = {
        "id": model.id,
        "name": model.name,
        "sku": model.sku,
        "published": model.published,
        "published_at": timestamp(model.published_at),
        "created_at": timestamp(model.created_at),
        "summary": dict(model.summary or {}),
        "files": files,
    }
    if public:
        return body
    body["job_id"] = model.job_id
    body["public_url"] = f"{API}/public/models/{model.id}" if model.published else None
    return body
