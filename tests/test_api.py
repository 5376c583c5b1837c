"""The Flask API through its test client: keys, uploads and refusals, jobs, models, webhooks."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.server
import io
import json
import os
import socket
import threading
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from PIL import Image

import recon
from api import create_app
from api.auth import create_merchant
from api.db import Job, JobState, Merchant, Model, WebhookDelivery, utcnow
from api.job_runner import model_id_for
from api.webhooks import deliver_due, queue_job_webhook, sign
from api.worker import EmbeddedWorker

# -- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def config(tmp_path) -> dict:
    return {
        "TESTING": True,
        "STORAGE_DIR": str(tmp_path / "storage"),
        "RATE_LIMIT_ENABLED": False,
        "WEBHOOK_ALLOW_PRIVATE": True,
        "MAX_FILES": 40,
        "MAX_PIXELS": 20_000_000,
    }


@pytest.fixture
def app(config):
    return create_app(config)


@pytest.fixture
def client(app):
    return app.test_client()


def sessions(app):
    return app.extensions["recon"]["sessions"]


def new_merchant(app, name: str) -> dict:
    with sessions(app)() as session:
        _, key = create_merchant(session, name)
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def alice(app) -> dict:
    return new_merchant(app, "alice")


@pytest.fixture
def bob(app) -> dict:
    return new_merchant(app, "bob")


def jpeg_bytes(size=(64, 48), seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(out, "JPEG")
    return out.getvalue()


def photos(count: int = 3, **kwargs) -> list[tuple[io.BytesIO, str]]:
    return [(io.BytesIO(jpeg_bytes(seed=i, **kwargs)), f"img_{i:03d}.jpg") for i in range(count)]


def zip_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def upload(client, headers, files, **form):
    return client.post(
        "/api/v1/jobs", headers=headers, data={"files": files, **form},
        content_type="multipart/form-data",
    )  # fmt: skip


def stored_files(app) -> list[Path]:
    """Everything in storage but the database: what an upload left behind."""
    root = Path(app.config["STORAGE_DIR"])
    return [p for p in root.rglob("*") if p.is_file() and not p.name.startswith("recon.db")]


def error_of(response) -> dict:
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    return body["error"]


# -- basics -----------------------------------------------------------------------------------


def test_health_reports_the_version(client) -> None:
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "version": recon.__version__}


def test_config_comes_from_recon_environment_variables(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("RECON_STORAGE_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("RECON_MAX_FILES", "7")
    settings = create_app().extensions["recon"]["settings"]
    assert settings.storage_dir == tmp_path / "env"
    assert settings.max_files == 7
    assert (tmp_path / "env" / "recon.db").exists()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/jobs"),
        ("post", "/api/v1/jobs"),
        ("get", "/api/v1/jobs/job_x"),
        ("post", "/api/v1/jobs/job_x/cancel"),
        ("get", "/api/v1/models"),
        ("get", "/api/v1/models/mdl_x"),
        ("delete", "/api/v1/models/mdl_x"),
        ("post", "/api/v1/models/mdl_x/publish"),
        ("get", "/api/v1/models/mdl_x/files/model.glb"),
    ],
)
@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer rk_wrong"}, {"X-API-Key": "nope"}, {"Authorization": "Basic x"}],
)
def test_a_missing_or_bad_key_is_401(client, alice, method, path, headers) -> None:
    response = getattr(client, method)(path, headers=headers)
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_keys_are_stored_only_as_hashes(app) -> None:
    headers = new_merchant(app, "carol")
    key = headers["Authorization"].split()[1]
    # The database with its write-ahead log (SQLite WAL keeps recent writes there).
    database = b"".join(p.read_bytes() for p in Path(app.config["STORAGE_DIR"]).glob("recon.db*"))
    assert key.encode() not in database
    assert hashlib.sha256(key.encode()).hexdigest().encode() in database
    assert app.test_client().get("/api/v1/jobs", headers={"X-API-Key": key}).status_code == 200


def test_unknown_paths_and_methods_answer_in_the_error_format(client, alice) -> None:
    assert error_of(client.get("/api/v1/nothing"))["code"] == "not_found"
    response = client.put("/api/v1/jobs", headers=alice)
    assert response.status_code == 405
    assert error_of(response)["code"] == "method_not_allowed"


# -- uploads ----------------------------------------------------------------------------------


def test_photos_are_accepted_and_kept_as_sent(client, app, alice) -> None:
    files = photos(3)
    response = upload(client, alice, files, preset="preview", name="Mug", sku="M-1", height_m="0.1")
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert response.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert "Retry-After" not in response.headers
    assert job["state"] == "queued"
    assert job["input"] == {"kind": "photos", "files": 3, "bytes": job["input"]["bytes"]}
    assert job["options"] == {
        "preset": "preview", "name": "Mug", "sku": "M-1", "dimensions_m": {"height": 0.1},
    }  # fmt: skip
    upload_dir = app.extensions["recon"]["storage"].upload_dir(job["id"])
    assert sorted(p.name for p in upload_dir.iterdir()) == [
        "img_000.jpg",
        "img_001.jpg",
        "img_002.jpg",
    ]
    assert (upload_dir / "img_001.jpg").read_bytes() == jpeg_bytes(seed=1)
    assert client.get(f"/api/v1/jobs/{job['id']}", headers=alice).get_json() == job


def test_a_zip_is_accepted_whole(client, app, alice) -> None:
    data = zip_bytes({f"shoot/img_{i}.jpg": jpeg_bytes(seed=i) for i in range(4)})
    response = upload(client, alice, [(io.BytesIO(data), "shoot.zip")])
    assert response.status_code == 202, response.get_json()
    job = response.get_json()
    assert job["input"]["kind"] == "zip"
    assert job["input"]["files"] == 4
    stored = app.extensions["recon"]["storage"].upload_dir(job["id"]) / "photos.zip"
    assert stored.read_bytes() == data


def test_a_video_is_accepted_by_its_content(client, app, alice) -> None:
    av = pytest.importorskip("av")
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(5):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 40, np.uint8), "rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    response = upload(client, alice, [(io.BytesIO(out.getvalue()), "clip.bin")])
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["input"]["kind"] == "video"


def _too_big(config):
    config["MAX_UPLOAD_BYTES"] = 20_000
    return photos(3, size=(200, 200)), "payload_too_large", 413


def _wrong_type(config):
    return (
        [*photos(2), (io.BytesIO(b"%PDF-1.4 not a photo"), "img_9.jpg")],
        "unsupported_media_type",
        415,
    )


def _gif(config):
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "GIF")
    return [*photos(2), (io.BytesIO(buffer.getvalue()), "a.gif")], "unsupported_media_type", 415


def _zip_slip(config):
    members = {f"img_{i}.jpg": jpeg_bytes(seed=i) for i in range(3)}
    members["../../evil.jpg"] = jpeg_bytes()
    return [(io.BytesIO(zip_bytes(members)), "photos.zip")], "unsafe_zip", 400


def _zip_bomb(config):
    config["MAX_ZIP_BYTES"] = 10_000_000
    members = {f"img_{i}.jpg": jpeg_bytes(seed=i) for i in range(3)}
    members["padding.bin"] = bytes(50_000_000)  # 50 MB of zeros, ~50 kB compressed
    return [(io.BytesIO(zip_bytes(members)), "photos.zip")], "zip_too_large", 413


def _too_many_files(config):
    config["MAX_FILES"] = 5
    return photos(6), "too_many_files", 413


def _too_many_in_zip(config):
    config["MAX_FILES"] = 5
    members = {f"img_{i}.jpg": jpeg_bytes(seed=i) for i in range(6)}
    return [(io.BytesIO(zip_bytes(members)), "photos.zip")], "too_many_files", 413


def _too_many_pixels(config):
    config["MAX_PIXELS"] = 3000
    return photos(3, size=(64, 48)), "image_too_large", 413


def _too_many_pixels_in_zip(config):
    config["MAX_PIXELS"] = 3000
    members = {f"img_{i}.jpg": jpeg_bytes(seed=i) for i in range(3)}
    return [(io.BytesIO(zip_bytes(members)), "photos.zip")], "image_too_large", 413


def _too_few(config):
    return photos(2), "too_few_photos", 400


def _zip_without_photos(config):
    return [(io.BytesIO(zip_bytes({"notes.txt": b"hello"})), "photos.zip")], "too_few_photos", 400


def _damaged(config):
    return [*photos(2), (io.BytesIO(b"\xff\xd8\xff\xe0garbage"), "img_9.jpg")], "damaged_image", 400


def _mixed(config):
    return (
        [*photos(3), (io.BytesIO(zip_bytes({"a.jpg": jpeg_bytes()})), "more.zip")],
        "mixed_upload",
        400,
    )


def _nothing(config):
    return [], "no_files", 400


@pytest.mark.parametrize(
    "case",
    [_too_big, _wrong_type, _gif, _zip_slip, _zip_bomb, _too_many_files, _too_many_in_zip,
     _too_many_pixels, _too_many_pixels_in_zip, _too_few, _zip_without_photos, _damaged, _mixed,
     _nothing],
    ids=lambda case: case.__name__.strip("_"),
)  # fmt: skip
def test_bad_uploads_are_refused_and_leave_nothing_in_storage(config, case) -> None:
    files, code, status = case(config)
    app = create_app(config)
    response = upload(app.test_client(), new_merchant(app, "alice"), files)
    assert response.status_code == status, response.get_json()
    error = error_of(response)
    assert error["code"] == code
    assert len(error["message"]) > 20  # says what to do, not just "bad request"
    assert stored_files(app) == []
    with sessions(app)() as session:
        assert session.query(Job).count() == 0


@pytest.mark.parametrize(
    ("form", "word"),
    [
        ({"preset": "ultra"}, "preset"),
        ({"height_m": "-1"}, "height_m"),
        ({"width_m": "tall"}, "width_m"),
        ({"callback_url": "ftp://example.com/x"}, "callback_url"),
        ({"sku": "x" * 101}, "sku"),
    ],
)
def test_bad_options_are_refused_before_the_upload_is_read(client, app, alice, form, word) -> None:
    response = upload(client, alice, photos(3), **form)
    assert response.status_code == 400
    assert word in error_of(response)["message"]
    assert stored_files(app) == []


def test_private_callback_urls_are_refused_unless_allowed(config) -> None:
    config["WEBHOOK_ALLOW_PRIVATE"] = False
    app = create_app(config)
    response = upload(
        app.test_client(), new_merchant(app, "alice"), photos(3),
        callback_url="http://127.0.0.1:9/hook",
    )  # fmt: skip
    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_callback_url"


def test_uploads_are_rate_limited_per_key(config) -> None:
    config.update(RATE_LIMIT_ENABLED=True, UPLOAD_RATE_LIMIT="2 per minute")
    app = create_app(config)
    client = app.test_client()
    alice, bob = new_merchant(app, "alice"), new_merchant(app, "bob")
    assert [upload(client, alice, photos(3)).status_code for _ in range(3)] == [202, 202, 429]
    limited = upload(client, alice, photos(3))
    assert error_of(limited)["code"] == "rate_limited"
    assert "Retry-After" in limited.headers
    assert upload(client, bob, photos(3)).status_code == 202  # another key, its own budget


# -- jobs -------------------------------------------------------------------------------------


def test_merchants_never_see_each_others_jobs(client, alice, bob) -> None:
    job = upload(client, alice, photos(3)).get_json()
    for method, path in [("get", f"/api/v1/jobs/{job['id']}"),
                         ("post", f"/api/v1/jobs/{job['id']}/cancel")]:  # fmt: skip
        response = getattr(client, method)(path, headers=bob)
        assert response.status_code == 404
        assert error_of(response)["code"] == "not_found"
    assert client.get("/api/v1/jobs", headers=bob).get_json()["total"] == 0
    assert client.get(f"/api/v1/jobs/{job['id']}", headers=alice).status_code == 200


def test_jobs_are_listed_newest_first_by_page_and_state(client, alice) -> None:
    ids = [upload(client, alice, photos(3)).get_json()["id"] for _ in range(5)]
    client.post(f"/api/v1/jobs/{ids[0]}/cancel", headers=alice)
    first = client.get("/api/v1/jobs?per_page=2", headers=alice).get_json()
    assert (first["total"], first["pages"], first["page"]) == (5, 3, 1)
    assert [j["id"] for j in first["jobs"]] == ids[::-1][:2]
    last = client.get("/api/v1/jobs?per_page=2&page=3", headers=alice).get_json()
    assert [j["id"] for j in last["jobs"]] == [ids[0]]
    cancelled = client.get("/api/v1/jobs?state=cancelled", headers=alice).get_json()
    assert [j["id"] for j in cancelled["jobs"]] == [ids[0]]
    for query in ("state=done", "page=0", "per_page=1000", "page=x"):
        assert client.get(f"/api/v1/jobs?{query}", headers=alice).status_code == 400


def test_cancelling(client, app, alice) -> None:
    queued = upload(client, alice, photos(3)).get_json()
    response = client.post(f"/api/v1/jobs/{queued['id']}/cancel", headers=alice)
    assert response.status_code == 200
    assert response.get_json()["state"] == "cancelled"
    assert client.post(f"/api/v1/jobs/{queued['id']}/cancel", headers=alice).status_code == 409
    # A running job is flagged; the worker stops its process.
    running = upload(client, alice, photos(3)).get_json()
    with sessions(app)() as session:
        session.get(Job, running["id"]).state = JobState.RUNNING
        session.commit()
    response = client.post(f"/api/v1/jobs/{running['id']}/cancel", headers=alice)
    assert response.status_code == 202
    with sessions(app)() as session:
        assert session.get(Job, running["id"]).cancel_requested


# -- models -----------------------------------------------------------------------------------


def finished_model(app, headers, client) -> str:
    """A job whose reconstruction 'finished': a model with files, as the job runner leaves it
    (the real pipeline runs in tests/test_api_server.py)."""
    job_id = upload(client, headers, photos(3), name="Mug", sku="M-1").get_json()["id"]
    storage = app.extensions["recon"]["storage"]
    source = storage.root / "made"
    source.mkdir(exist_ok=True)
    (source / "model.glb").write_bytes(b"glTF" + bytes(range(256)) * 4)
    (source / "report.json").write_text(json.dumps({"units": "metre"}))
    model_id = model_id_for(job_id)
    listing = storage.publish_model(model_id, {n: source / n for n in ("model.glb", "report.json")})
    with sessions(app)() as session:
        job = session.get(Job, job_id)
        job.state, job.model_id = JobState.SUCCEEDED, model_id
        session.add(Model(id=model_id, merchant_id=job.merchant_id, job_id=job_id, name="Mug",
                          sku="M-1", files=listing, summary={"units": "metre"}))  # fmt: skip
        session.commit()
    return model_id


def test_models_are_private_until_published(client, app, alice, bob) -> None:
    model_id = finished_model(app, alice, client)
    model = client.get(f"/api/v1/models/{model_id}", headers=alice).get_json()
    assert model["published"] is False
    assert model["public_url"] is None
    assert set(model["files"]) == {"model.glb", "report.json"}
    private = client.get(model["files"]["model.glb"]["url"], headers=alice)
    assert private.status_code == 200
    assert private.data.startswith(b"glTF")
    assert private.mimetype == "model/gltf-binary"
    for path in (f"/api/v1/models/{model_id}", model["files"]["model.glb"]["url"]):
        assert client.get(path, headers=bob).status_code == 404
    assert client.post(f"/api/v1/models/{model_id}/publish", headers=bob).status_code == 404
    public = f"/api/v1/public/models/{model_id}"
    assert client.get(public).status_code == 404
    assert client.get(f"{public}/model.glb").status_code == 404

    published = client.post(f"/api/v1/models/{model_id}/publish", headers=alice).get_json()
    assert published["published"] is True
    assert published["public_url"] == public
    meta = client.get(public)
    assert meta.status_code == 200
    assert "job_id" not in meta.get_json()
    glb = client.get(f"{public}/model.glb", headers={"Origin": "https://shop.example"})
    assert glb.status_code == 200
    assert glb.data == private.data
    assert glb.headers["Access-Control-Allow-Origin"] == "*"
    assert glb.headers["Cache-Control"].startswith("public")
    etag = glb.headers["ETag"].strip('"')
    assert etag == published["files"]["model.glb"]["etag"]
    again = client.get(f"{public}/model.glb", headers={"If-None-Match": f'"{etag}"'})
    assert again.status_code == 304
    assert client.get(f"{public}/model.obj").status_code == 404

    client.post(f"/api/v1/models/{model_id}/unpublish", headers=alice)
    assert client.get(f"{public}/model.glb").status_code == 404


def test_models_are_listed_and_deleted(client, app, alice, bob) -> None:
    model_id = finished_model(app, alice, client)
    listing = client.get("/api/v1/models?sku=M-1", headers=alice).get_json()
    assert [m["id"] for m in listing["models"]] == [model_id]
    assert client.get("/api/v1/models?published=true", headers=alice).get_json()["total"] == 0
    assert client.get("/api/v1/models", headers=bob).get_json()["total"] == 0
    assert client.delete(f"/api/v1/models/{model_id}", headers=bob).status_code == 404
    assert client.delete(f"/api/v1/models/{model_id}", headers=alice).status_code == 204
    assert client.get(f"/api/v1/models/{model_id}", headers=alice).status_code == 404
    assert not app.extensions["recon"]["storage"].model_dir(model_id).exists()
    job = client.get("/api/v1/jobs", headers=alice).get_json()["jobs"][0]
    assert job["model_id"] is None  # the job and its photos stay


# -- webhooks ---------------------------------------------------------------------------------


class _Receiver(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[list[int]] = []
    received: ClassVar[list[tuple[dict, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(type(self).answers.pop(0) if type(self).answers else 200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_webhooks_are_signed_and_retried_with_backoff(config, app, client, alice) -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Receiver.answers, _Receiver.received = [500], []
    url = f"http://127.0.0.1:{server.server_port}/hook"
    job_id = upload(client, alice, photos(3), callback_url=url).get_json()["id"]
    client.post(f"/api/v1/jobs/{job_id}/cancel", headers=alice)  # a finished job: one event
    settings = app.extensions["recon"]["settings"]
    settings = type(settings)(**{**settings.__dict__, "webhook_backoff_s": 0.0})
    try:
        assert deliver_due(sessions(app), settings) == 1  # answered 500: retried later
        assert deliver_due(sessions(app), settings) == 1
        assert deliver_due(sessions(app), settings) == 0  # delivered: nothing left
    finally:
        server.shutdown()
    assert len(_Receiver.received) == 2
    headers, body = _Receiver.received[-1]
    with sessions(app)() as session:
        merchant_secret = session.get(Merchant, session.get(Job, job_id).merchant_id).webhook_secret
        delivery = session.query(WebhookDelivery).one()
        assert (delivery.state, delivery.attempts) == ("delivered", 2)
    expected = "sha256=" + hmac.new(merchant_secret.encode(), body, hashlib.sha256).hexdigest()
    assert headers["X-Recon-Signature"] == expected == sign(merchant_secret, body)
    event = json.loads(body)
    assert event["event"] == "job.cancelled"
    assert event["job"]["id"] == job_id


def test_webhooks_give_up_after_the_last_attempt(app, client, alice) -> None:
    job_id = upload(client, alice, photos(3), callback_url="http://127.0.0.1:9/closed").get_json()
    settings = app.extensions["recon"]["settings"]
    settings = type(settings)(**{**settings.__dict__, "webhook_backoff_s": 0.0,
                                 "webhook_max_attempts": 2, "webhook_timeout_s": 2.0})  # fmt: skip
    with sessions(app)() as session:
        job = session.get(Job, job_id["id"])
        job.state = JobState.FAILED
        queue_job_webhook(session, job)
        session.commit()
    deliver_due(sessions(app), settings)
    deliver_due(sessions(app), settings)
    with sessions(app)() as session:
        delivery = session.query(WebhookDelivery).one()
        assert (delivery.state, delivery.attempts) == ("failed", 2)
        assert delivery.last_error


# -- the worker's bookkeeping (the real processes run in tests/test_api_server.py) -------------


def test_orphaned_jobs_are_resumed_then_failed_after_too_many_attempts(app, client, alice) -> None:
    settings = app.extensions["recon"]["settings"]
    worker = EmbeddedWorker(settings)
    job_id = upload(client, alice, photos(3)).get_json()["id"]
    with sessions(app)() as session:
        job = session.get(Job, job_id)
        # Running, as a server that was killed left it: a dead pid on this host.
        job.state, job.attempts, job.worker_pid = JobState.RUNNING, 1, 2**22 + 7
        job.worker_host = socket.gethostname()
        session.commit()
    worker.recover_orphans()
    with sessions(app)() as session:
        job = session.get(Job, job_id)
        assert job.state == JobState.QUEUED
        assert "resumed" in job.warnings[-1]
        # A live process with a fresh heartbeat is left alone; a silent one is not.
        job.state, job.worker_pid, job.heartbeat_at = JobState.RUNNING, os.getpid(), utcnow()
        session.commit()
    worker.recover_orphans()
    worker.recover_orphans(stale_only=True)
    with sessions(app)() as session:
        job = session.get(Job, job_id)
        assert job.state == JobState.RUNNING
        job.heartbeat_at = utcnow() - dt.timedelta(seconds=settings.job_lease_s + 1)
        session.commit()
    worker.recover_orphans(stale_only=True)
    with sessions(app)() as session:
        job = session.get(Job, job_id)
        assert job.state == JobState.QUEUED
        assert job.attempts == 1
        job.state, job.attempts = JobState.RUNNING, settings.job_max_attempts
        session.commit()
    worker.recover_orphans()
    with sessions(app)() as session:
        job = session.get(Job, job_id)
        assert job.state == JobState.FAILED
        assert job.error_code == "worker_died"
