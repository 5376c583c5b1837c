"""Jobs: upload photos (or a zip, or a video) to start one; watch, list and cancel them."""

from __future__ import annotations

import logging
import math
import os
import shutil
from pathlib import Path

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select

from api.auth import current_merchant
from api.context import db, owned, page_of, settings, storage
from api.db import FINISHED_STATES, Job, JobState, new_id, utcnow
from api.errors import ApiError
from api.serialize import job_json
from api.uploads import Upload, accept_upload
from api.webhooks import check_callback_url, queue_job_webhook
from recon import capture_qa
from recon.errors import ReconError

logger = logging.getLogger(__name__)
blueprint = Blueprint("jobs", __name__)

PRESETS = ("preview", "standard", "high")
# object: one product, masked from its background; scene: a shop space, for showrooms.
MODES = ("object", "scene")
DIMENSIONS = ("height", "width", "depth")
TRUE_WORDS, FALSE_WORDS = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
MAX_MB_RANGE = (0.1, 1000.0)  # model.glb size budgets a job may ask for


@blueprint.post("/jobs")  # rate-limited more strictly than the rest (api.ratelimit)
def create_job() -> Response:
    merchant = current_merchant(db())
    options = _job_options(request.form)
    callback_url = request.form.get("callback_url") or None
    if callback_url is not None:
        why = check_callback_url(callback_url, allow_private=settings().webhook_allow_private)
        if why is not None:
            raise ApiError(400, "bad_callback_url", why)
    upload = accept_upload(request.files.getlist("files"), settings(), storage())
    checked = _check_before_queueing(upload)
    job = Job(
        id=new_id("job"),
        merchant_id=merchant.id,
        options=options,
        # The capture check rides in the input's JSON: no new column, so databases made
        # before it need no migration (create_all adds tables, never columns).
        input={**upload.to_json(), "name": upload.input_name, "check": checked},
        callback_url=callback_url,
    )
    target = storage().upload_dir(job.id)
    os.replace(upload.folder, target)
    try:
        db().add(job)
        db().commit()
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    if settings().broker_url:  # Celery workers run it; otherwise the embedded worker finds it
        _enqueue(job.id)
    response = jsonify(job_json(job))
    response.status_code = 202
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return response


@blueprint.post("/checks")
def check_capture() -> Response:
    """Check an upload as a job would be checked, without keeping it or starting a job: the
    photos' problems, advice, and whether to reshoot (videos too)."""
    current_merchant(db())
    upload = accept_upload(request.files.getlist("files"), settings(), storage())
    try:
        result = capture_qa.check(_upload_input(upload))
    except ReconError as error:
        raise ApiError(422, "unusable_capture", str(error)) from None
    finally:
        shutil.rmtree(upload.folder, ignore_errors=True)
    return jsonify(result.summary_json())


def _check_before_queueing(upload: Upload) -> dict | None:
    """The quick capture check of a job's upload (recon.capture_qa), kept with the job. Refuses
    (422, upload removed) only a capture that cannot make a model; anything else is accepted
    with the advice. Videos are checked when the job runs: choosing their frames decodes the
    whole video, too long to hold the upload's request."""
    if upload.kind == "video":
        return None
    try:
        result = capture_qa.check(_upload_input(upload))
    except ReconError as error:
        shutil.rmtree(upload.folder, ignore_errors=True)
        raise ApiError(422, "unusable_capture", str(error)) from None
    except Exception:  # the check advises; a fault in it must not turn uploads away
        logger.exception("capture check failed; the job is accepted unchecked")
        return None
    if result.cannot_work:
        shutil.rmtree(upload.folder, ignore_errors=True)
        raise ApiError(422, "unusable_capture", "; ".join(result.reshoot + result.advice[:3]))
    return result.summary_json()


def _upload_input(upload: Upload) -> Path:
    return upload.folder / upload.input_name if upload.input_name else upload.folder


@blueprint.get("/jobs")
def list_jobs() -> Response:
    merchant = current_merchant(db())
    query = select(Job).where(Job.merchant_id == merchant.id)
    if state := request.args.get("state"):
        if state not in tuple(JobState):
            raise ApiError(
                400, "bad_request", f"state must be one of {', '.join(JobState)}, not {state!r}"
            )
        query = query.where(Job.state == state)
    jobs, paging = page_of(query, Job.created_at.desc(), Job.id)
    return jsonify(jobs=[job_json(job) for job in jobs], **paging)


@blueprint.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    return jsonify(job_json(merchant_job(job_id)))


@blueprint.post("/jobs/<job_id>/cancel")
def cancel_job(job_id: str) -> Response:
    """A queued job is cancelled at once (200); a running one is stopped by the worker within
    seconds (202; watch its state)."""
    job = merchant_job(job_id)
    if job.state in FINISHED_STATES:
        raise ApiError(409, "conflict", f"job {job.id} has already {job.state}; nothing to cancel")
    status = 202
    if job.state == JobState.QUEUED:
        job.state, job.finished_at, status = JobState.CANCELLED, utcnow(), 200
        queue_job_webhook(db(), job)
    else:
        job.cancel_requested = True
    db().commit()
    response = jsonify(job_json(job))
    response.status_code = status
    return response


def _enqueue(job_id: str) -> None:
    from api.queue import enqueue

    try:
        enqueue(settings(), job_id)
    except Exception:  # the job stays queued: the workers' sweep sends it when the broker is back
        logger.exception("job %s not sent to the queue", job_id)


def merchant_job(job_id: str) -> Job:
    return owned(Job, job_id, "job")


def _job_options(form) -> dict:
    """The job's options from the form fields, checked before the upload is read."""
    preset = form.get("preset", "standard")
    if preset not in PRESETS:
        raise ApiError(400, "bad_option", f"preset must be one of {', '.join(PRESETS)}")
    options: dict = {"preset": preset}
    if (mode := form.get("mode", "").strip()) and mode not in MODES:
        raise ApiError(
            400, "bad_option", f"mode must be one of {', '.join(MODES)} (a product or a space)"
        )
    if mode:
        options["mode"] = mode
    for field, limit in (("name", 200), ("sku", 100)):
        if value := form.get(field, "").strip():
            if len(value) > limit:
                raise ApiError(400, "bad_option", f"{field} is longer than {limit} characters")
            options[field] = value
    dimensions = {}
    for dimension in DIMENSIONS:
        text = form.get(f"{dimension}_m", "").strip()
        if not text:
            continue
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not 0.001 <= value <= 100:
            raise ApiError(
                400, "bad_option", f"{dimension}_m must be a length in metres (0.001–100)"
            )
        dimensions[dimension] = value
    if dimensions:
        options["dimensions_m"] = dimensions
    compress = form.get("compress", "").strip().lower()
    if compress not in ("", *TRUE_WORDS, *FALSE_WORDS):
        raise ApiError(400, "bad_option", "compress must be true or false")
    if compress in TRUE_WORDS:
        options["compress"] = True
    if text := form.get("max_mb", "").strip():
        try:
            max_mb = float(text)
        except ValueError:
            max_mb = math.nan
        if not MAX_MB_RANGE[0] <= max_mb <= MAX_MB_RANGE[1]:
            low, high = MAX_MB_RANGE
            raise ApiError(
                400, "bad_option", f"max_mb must be a file size in MB ({low:g}–{high:g})"
            )
        options["max_mb"] = max_mb
    return options
