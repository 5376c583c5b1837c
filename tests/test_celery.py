"""Scale-out for real: a Redis broker, `recon worker` processes and the API sending them jobs.
A worker killed mid-job loses nothing (its job resumes on another from its checkpoints and
every job succeeds exactly once); a catalogue batch on the workers makes what a local one makes."""

from __future__ import annotations

import csv
import datetime as dt
import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import requests

from api.cluster import RedisServer, WorkerProcess
from api.db import Job, make_engine, make_sessions, utcnow
from api.process import ServiceProcess, recon_command
from api.settings import Settings
from tests.conftest import SAMPLE_CAPTURES_DIR

JOB_TIMEOUT_S = 900
CAPTURES = ("cereal_box", "mug", "bottle_table")


@pytest.fixture(scope="module")
def redis(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    try:
        server.start()
    except FileNotFoundError as error:
        pytest.skip(str(error))
    yield server
    server.stop()


@pytest.fixture
def env(tmp_path, redis) -> dict[str, str]:
    return {
        "RECON_BROKER_URL": redis.url,
        "RECON_STORAGE_DIR": str(tmp_path / "storage"),
        "RECON_WORKER_POLL_S": "0.5",
        "RECON_WEBHOOK_ALLOW_PRIVATE": "true",
    }


@pytest.fixture
def workers(tmp_path, env):
    started: list[WorkerProcess] = []

    def start(count: int) -> list[WorkerProcess]:
        for _ in range(count):
            worker = WorkerProcess(tmp_path / f"worker{len(started)}.log", env)
            started.append(worker)
            worker.start()
        return started[-count:]

    yield start
    for worker in started:
        worker.stop(signal.SIGKILL)


def database(env: dict[str, str]) -> sqlite3.Connection:
    return sqlite3.connect(Path(env["RECON_STORAGE_DIR"]) / "recon.db")


def upload(server: ServiceProcess, headers: dict, capture: str) -> str:
    photos = sorted((SAMPLE_CAPTURES_DIR / capture / "images").glob("*.jpg"))
    response = requests.post(
        f"{server.url}/jobs",
        headers=headers,
        files=[("files", (p.name, p.read_bytes(), "image/jpeg")) for p in photos],
        # Nobody listens there: the deliveries stay on record, one per job event.
        data={"preset": "preview", "name": capture, "callback_url": "http://127.0.0.1:9/hook"},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def test_a_killed_worker_loses_no_job_and_every_job_succeeds_once(tmp_path, env, workers) -> None:
    server = ServiceProcess(Path(env["RECON_STORAGE_DIR"]), env=env)
    alice = {"Authorization": f"Bearer {server.create_merchant('alice')}"}
    server.start()
    try:
        pool = workers(2)
        job_ids = [upload(server, alice, capture) for capture in CAPTURES]

        # The first job to reach the depth stage: its worker is killed there.
        deadline = time.monotonic() + JOB_TIMEOUT_S
        victim = None
        while victim is None:
            assert time.monotonic() < deadline, "no job reached the depth stage"
            with database(env) as db:
                victim = db.execute(
                    "select id, worker_pid from jobs where state = 'running' and stage in "
                    "('depth', 'fusion', 'mesh') limit 1"
                ).fetchone()
            time.sleep(0.3)
        job_id, job_pid = victim
        work = Path(env["RECON_STORAGE_DIR"]) / "jobs" / job_id / "work"
        sfm_seconds = json.loads((work / "state.json").read_text())["sfm"]["seconds"]
        (killed,) = [worker for worker in pool if worker.runs(job_pid)]
        killed.stop(signal.SIGKILL)
        # The job's process goes with its worker (nothing runs it unsupervised).
        gone_by = time.monotonic() + 15
        while Path(f"/proc/{job_pid}").exists() and time.monotonic() < gone_by:
            time.sleep(0.1)
        assert not Path(f"/proc/{job_pid}").exists()

        jobs = {}
        for each in job_ids:
            while (job := requests.get(f"{server.url}/jobs/{each}", headers=alice).json())[
                "state"
            ] in ("queued", "running"):
                assert time.monotonic() < deadline, f"{job}\n{pool[0].log()}\n{pool[1].log()}"
                time.sleep(1)
            jobs[each] = job
        survivor = next(worker for worker in pool if worker is not killed)
        assert survivor.process.poll() is None
    finally:
        server.stop()

    assert {job["state"] for job in jobs.values()} == {"succeeded"}, jobs
    assert jobs[job_id]["attempts"] == 2
    assert any("resumed" in warning for warning in jobs[job_id]["warnings"])
    assert [jobs[other]["attempts"] for other in job_ids if other != job_id] == [1, 1]
    # Resumed from its checkpoints: structure-from-motion was not run again.
    report = json.loads(
        (
            Path(env["RECON_STORAGE_DIR"]) / "models" / jobs[job_id]["model_id"] / "report.json"
        ).read_text()
    )
    assert report["timings_s"]["sfm"] == pytest.approx(sfm_seconds, abs=1e-3)
    # Exactly once: one model and one finished-job event per job.
    with database(env) as db:
        events = db.execute(
            "select job_id, event from webhook_deliveries order by job_id"
        ).fetchall()
        models = db.execute("select job_id from models order by job_id").fetchall()
    assert sorted(events) == sorted((each, "job.succeeded") for each in job_ids)
    assert sorted(models) == sorted((each,) for each in job_ids)


def test_a_job_whose_message_the_broker_lost_is_sent_again(tmp_path, env, workers) -> None:
    """A queued job without a message (a Redis restart without persistence) is found by the
    workers' sweep and run: here one whose upload is missing, which fails in seconds."""
    ServiceProcess(Path(env["RECON_STORAGE_DIR"]), env=env).create_merchant("alice")
    sessions = make_sessions(
        make_engine(Settings(storage_dir=Path(env["RECON_STORAGE_DIR"])).resolved_database_url)
    )
    with sessions() as session:
        session.add(
            Job(
                id="job_lost",
                merchant_id=1,
                options={"preset": "preview"},
                created_at=utcnow() - dt.timedelta(minutes=5),
            )
        )
        session.commit()
    workers(1)
    deadline = time.monotonic() + 120
    while (job := _job(sessions, "job_lost")).state in ("queued", "running"):
        assert time.monotonic() < deadline, job.state
        time.sleep(0.5)
    assert job.state == "failed"
    assert job.attempts == 1
    assert "does not exist" in job.error_message


def _job(sessions, job_id: str) -> Job:
    with sessions() as session:
        return session.get(Job, job_id)


def test_a_catalogue_on_the_workers_matches_a_local_batch(tmp_path, env, workers) -> None:
    catalogue = tmp_path / "catalogue.csv"
    with catalogue.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["sku", "path", "height_m", "name"])
        writer.writerow(["CB-1", SAMPLE_CAPTURES_DIR / "cereal_box" / "images", "0.3", "Cereal"])
    ServiceProcess(Path(env["RECON_STORAGE_DIR"]), env=env).create_merchant("batch")
    workers(1)
    runs = {}
    for engine in ("local", "celery"):
        out = tmp_path / engine
        command = recon_command(
            *("batch", str(catalogue), "-o", str(out), "--preset", "preview", "--engine", engine),
            *("--server-url", "https://shop.example"),
        )
        done = subprocess.run(command, env={**env}, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        runs[engine] = json.loads((out / "summary.json").read_text())["products"][0]
        assert (out / "CB-1" / "model.glb").stat().st_size == runs[engine]["glb_bytes"]
    local, celery = runs["local"], runs["celery"]
    assert local["status"] == celery["status"] == "succeeded"
    assert celery["job_id"].startswith("job_")
    assert local["registered_images"] == celery["registered_images"] == 24
    assert local["units"] == celery["units"] == "metre"
    assert celery["faces"] == pytest.approx(local["faces"], rel=0.02)
    assert celery["bbox_m"] == pytest.approx(local["bbox_m"], rel=0.02)
    assert celery["bbox_m"][1] == pytest.approx(0.3, rel=1e-3)
    # The feed links to the published model on the server, or to OUT as served.
    assert local["link"] == "https://shop.example/CB-1/model.glb"
    model_id = "mdl_" + celery["job_id"].removeprefix("job_")
    assert celery["link"] == f"https://shop.example/api/v1/public/models/{model_id}/model.glb"
    with database(env) as db:
        assert db.execute("select published from models where id = ?", (model_id,)).fetchone() == (
            1,
        )


def test_a_running_job_on_a_worker_can_be_cancelled(tmp_path, env, workers) -> None:
    server = ServiceProcess(Path(env["RECON_STORAGE_DIR"]), env=env)
    alice = {"Authorization": f"Bearer {server.create_merchant('alice')}"}
    with server:
        workers(1)
        job_id = upload(server, alice, "mug")
        deadline = time.monotonic() + 120
        while not (job := requests.get(f"{server.url}/jobs/{job_id}", headers=alice).json())[
            "stage"
        ]:
            assert time.monotonic() < deadline, job
            time.sleep(0.3)
        response = requests.post(f"{server.url}/jobs/{job_id}/cancel", headers=alice)
        assert response.status_code == 202
        stopped_by = time.monotonic() + 15
        while (job := requests.get(f"{server.url}/jobs/{job_id}", headers=alice).json())[
            "state"
        ] == "running":
            assert time.monotonic() < stopped_by, job
            time.sleep(0.3)
        # With a broker, the server (not a worker) sends the webhooks.
        tried_by = time.monotonic() + 15
        while not _webhook_attempts(env):
            assert time.monotonic() < tried_by, server.log()
            time.sleep(0.3)
    assert job["state"] == "cancelled"
    assert job["model_id"] is None
    with database(env) as db:
        (pid,) = db.execute("select worker_pid from jobs where id = ?", (job_id,)).fetchone()
        assert db.execute("select event from webhook_deliveries").fetchall() == [("job.cancelled",)]
    assert pid is None or not Path(f"/proc/{pid}").exists()


def _webhook_attempts(env: dict[str, str]) -> int:
    with database(env) as db:
        return db.execute("select coalesce(sum(attempts), 0) from webhook_deliveries").fetchone()[0]
