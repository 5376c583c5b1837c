"""The Celery task's bookkeeping, without a broker: a message runs its job at most once at a
time, a dead worker's job is released once, and a finished job is left alone."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess

import pytest

from api import queue, worker
from api.db import Job, JobState, Merchant, WebhookDelivery, make_engine, make_sessions, utcnow
from api.settings import Settings


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(storage_dir=tmp_path, job_max_attempts=3, job_lease_s=60.0)


@pytest.fixture
def sessions(settings):
    engine = make_engine(settings.resolved_database_url)
    sessions = make_sessions(engine)
    with sessions() as session:
        session.add(
            Merchant(id=1, name="alice", key_hash="0" * 64, key_hint="0000", webhook_secret="s")
        )
        session.commit()
    yield sessions
    engine.dispose()


def add_job(sessions, job_id: str = "job_1", **values) -> None:
    with sessions() as session:
        session.add(Job(id=job_id, merchant_id=1, callback_url="http://127.0.0.1:9/hook", **values))
        session.commit()


def job(sessions, job_id: str = "job_1") -> Job:
    with sessions() as session:
        return session.get(Job, job_id)


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_queued_job_is_claimed_once(sessions, settings) -> None:
    add_job(sessions)
    assert queue.claim_job(sessions, settings, "job_1") == 1
    claimed = job(sessions)
    assert claimed.state == JobState.RUNNING
    assert claimed.worker_pid == os.getpid()
    # The same message again (Redis redelivers it), while this process runs the job: a no-op.
    assert queue.claim_job(sessions, settings, "job_1") is None
    assert job(sessions).attempts == 1
    assert queue.claim_job(sessions, settings, "job_missing") is None


@pytest.mark.parametrize("state", [JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED])
def test_a_finished_job_is_left_alone(sessions, settings, state) -> None:
    add_job(sessions, state=state, attempts=1)
    assert queue.claim_job(sessions, settings, "job_1") is None
    assert job(sessions).state == state
    assert job(sessions).attempts == 1


def test_a_job_whose_worker_died_is_reclaimed_and_resumed(sessions, settings) -> None:
    add_job(
        sessions,
        state=JobState.RUNNING,
        attempts=1,
        heartbeat_at=utcnow(),
        worker_host=socket.gethostname(),
        worker_pid=dead_pid(),
    )
    assert queue.claim_job(sessions, settings, "job_1") == 2
    resumed = job(sessions)
    assert resumed.state == JobState.RUNNING
    assert any("resumed from its last finished stage" in w for w in resumed.warnings)


def test_a_live_job_on_another_host_is_trusted_until_its_heartbeat_is_stale(
    sessions, settings
) -> None:
    add_job(
        sessions,
        state=JobState.RUNNING,
        attempts=1,
        heartbeat_at=utcnow(),
        worker_host="elsewhere",
        worker_pid=dead_pid(),
    )
    assert queue.claim_job(sessions, settings, "job_1") is None
    with sessions() as session:
        session.get(Job, "job_1").heartbeat_at = utcnow() - dt.timedelta(seconds=61)
        session.commit()
    assert queue.claim_job(sessions, settings, "job_1") == 2


def test_a_dead_job_is_released_once_and_failed_after_its_last_attempt(sessions, settings) -> None:
    add_job(sessions, state=JobState.RUNNING, attempts=3, heartbeat_at=None)
    seen = job(sessions)
    assert not worker.release_job(sessions, settings, seen, "the worker running it stopped")
    failed = job(sessions)
    assert failed.state == JobState.FAILED
    assert failed.error_code == "worker_died"
    assert "preview" in failed.error_message
    # A second worker that saw the same dead run changes nothing (and sends no second webhook).
    assert not worker.release_job(sessions, settings, seen, "the worker running it stopped")
    with sessions() as session:
        events = [d.event for d in session.query(WebhookDelivery).all()]
    assert events == ["job.failed"]


def test_a_dead_job_that_was_being_cancelled_ends_cancelled(sessions, settings) -> None:
    add_job(sessions, state=JobState.RUNNING, attempts=1, heartbeat_at=None, cancel_requested=True)
    assert queue.claim_job(sessions, settings, "job_1") is None
    assert job(sessions).state == JobState.CANCELLED


def test_settings_for_long_jobs(settings) -> None:
    app = queue.celery_app(Settings(broker_url="redis://127.0.0.1:1/0", job_timeout_s=7200))
    conf = app.conf
    assert conf.task_acks_late
    assert conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_time_limit > 7200
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert queue.TASK_NAME in app.tasks
