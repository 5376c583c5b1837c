"""The Celery queue: `recon worker` processes, on as many machines as needed, run the jobs the
API sends to a Redis broker (RECON_BROKER_URL) — with the same job function as the embedded
worker (api.job_runner.run_job), the same database and the same storage.

The database stays the truth about a job; a message only says "look at job J". A task claims
its job with an atomic update (queued → running) before running it, so a message delivered twice
runs the job once; a job already finished is a no-op. Messages are acknowledged late (when the
job has ended) and a worker that dies mid-job leaves its message unacknowledged for Redis to
deliver again after the visibility timeout — set above the longest job, so a live job is never
delivered twice. Long before that, the other workers notice the dead job (its process gone on
this host, or its heartbeat older than RECON_JOB_LEASE_S) and queue it again: it resumes from
the pipeline's checkpoints on the next free worker.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import subprocess
import sys
import threading
import time

from celery import Celery
from celery.signals import worker_process_init
from flask import Config
from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from api.db import FINISHED_STATES, Job, JobState, make_engine, make_sessions, utcnow
from api.job_runner import die_with_parent
from api.settings import Settings
from api.webhooks import queue_job_webhook
from api.worker import claim_queued, orphaned, release_job, terminate

logger = logging.getLogger(__name__)

TASK_NAME = "recon.run_job"
QUEUE = "recon"
# Celery's hard time limit sits this far above the job's own timeout, which the task enforces
# itself (stopping the job's process and failing it with advice); the limit is the backstop.
TIME_LIMIT_GRACE_S = 300.0


def settings_from_env() -> Settings:
    """The service's settings from RECON_* variables, read as the API reads them."""
    config = Config(".")
    config.from_prefixed_env("RECON")
    return Settings.from_config(config)


def visibility_timeout_s(settings: Settings) -> float:
    """How long Redis waits for an unacknowledged message before delivering it again: above the
    longest a job may run (its timeout, then Celery's backstop), or a live job would be sent to
    a second worker."""
    return settings.job_timeout_s + TIME_LIMIT_GRACE_S + 3600.0


@functools.cache
def celery_app(settings: Settings) -> Celery:
    """A Celery app on `settings.broker_url` with the reliability settings Celery advises for
    long jobs; the task is registered, so workers and senders share one configuration."""
    app = Celery("recon", broker=settings.broker_url, set_as_current=False)
    app.conf.update(
        task_default_queue=QUEUE,
        task_ignore_result=True,  # the database holds every job's state and outcome
        task_acks_late=True,  # acknowledged when the job has ended, not when it starts
        task_reject_on_worker_lost=True,  # a pool process killed mid-job: the message returns
        worker_prefetch_multiplier=1,  # a busy worker holds no second job hostage
        task_time_limit=settings.job_timeout_s + TIME_LIMIT_GRACE_S,
        broker_transport_options={"visibility_timeout": visibility_timeout_s(settings)},
        broker_connection_retry_on_startup=True,
        # A broker blip must not stop hours of work: the job goes on, the database tracks it.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        worker_hijack_root_logger=False,
    )

    @app.task(name=TASK_NAME)
    def run_queued_job_task(job_id: str) -> str:
        return run_queued_job(settings, job_id)

    return app


def enqueue(settings: Settings, job_id: str) -> None:
    """Tell the workers about job `job_id` (already committed as queued)."""
    celery_app(settings).send_task(TASK_NAME, args=[job_id], queue=QUEUE)


# -- the task -----------------------------------------------------------------------------------
def run_queued_job(settings: Settings, job_id: str) -> str:
    """Claim job `job_id` and run it to its end in a child process (api.job_runner, the embedded
    worker's job process); returns its state. A job that is finished, or running live on
    another worker, is left alone."""
    engine = make_engine(settings.resolved_database_url)
    sessions = make_sessions(engine)
    try:
        attempt = claim_job(sessions, settings, job_id)
        if attempt is None:
            with sessions() as session:
                job = session.get(Job, job_id)
                state = job.state if job else "missing"
            logger.info("job %s is %s: nothing to do", job_id, state)
            return state
        return supervise_job(sessions, settings, job_id, attempt)
    finally:
        engine.dispose()


def claim_job(sessions: sessionmaker, settings: Settings, job_id: str) -> int | None:
    """Mark the job running for this process; its attempt number, or None when it is not this
    task's to run (finished, missing, or running on a live worker). A running job whose worker
    died is first released (queued again, or ended after too many attempts)."""
    with sessions() as session:
        job = session.get(Job, job_id)
        if job is None or job.state in FINISHED_STATES:
            return None
        if job.state == JobState.RUNNING:
            if not orphaned(job, settings.job_lease_s):
                return None
            if not release_job(sessions, settings, job, "the worker running it stopped"):
                return None
        if not claim_queued(session, job_id, pid=os.getpid()):
            return None
        return session.scalar(select(Job.attempts).where(Job.id == job_id))


def supervise_job(sessions: sessionmaker, settings: Settings, job_id: str, attempt: int) -> str:
    """Run the claimed job in a child process until it ends, stopping it when cancelled, over
    its time limit, or taken over by another worker (this one was thought dead)."""
    env = {**os.environ, "RECON_WORKER_SETTINGS": settings.to_json()}
    process = subprocess.Popen(
        [sys.executable, "-m", "api.job_runner", job_id, str(os.getpid())],
        env=env,
        start_new_session=True,  # a terminal's Ctrl-C goes to the worker, which stops it
    )
    mine = (Job.id == job_id, Job.state == JobState.RUNNING, Job.attempts == attempt)
    with sessions() as session:
        session.execute(update(Job).where(*mine).values(worker_pid=process.pid))
        session.commit()
    logger.info("job %s started (attempt %d, pid %d)", job_id, attempt, process.pid)
    started = time.monotonic()
    outcome: dict | None = None
    try:
        while process.poll() is None:
            try:
                process.wait(settings.worker_poll_s)
                break
            except subprocess.TimeoutExpired:
                pass
            with sessions() as session:
                job = session.get(Job, job_id)
                if job.attempts != attempt or job.state == JobState.QUEUED:
                    logger.warning("job %s was taken over by another worker; stopping", job_id)
                    return "lost"
                if job.state != JobState.RUNNING:
                    continue  # it has just recorded its end; its process exits by itself
                if job.cancel_requested:
                    outcome = {"state": JobState.CANCELLED}
                elif time.monotonic() - started > settings.job_timeout_s:
                    outcome = {
                        "state": JobState.FAILED,
                        "error_code": "timeout",
                        "error_message": f"the reconstruction ran longer than "
                        f"{settings.job_timeout_s:.0f} s and was stopped; try the preview "
                        "preset or fewer photos",
                    }
            if outcome is not None:
                break
    finally:
        terminate(process)
    with sessions() as session:
        if outcome is not None:
            changed = session.execute(
                update(Job).where(*mine).values(finished_at=utcnow(), eta_s=None, **outcome)
            ).rowcount
            if changed:
                queue_job_webhook(session, session.get(Job, job_id))
            session.commit()
        job = session.get(Job, job_id)
    if job.state == JobState.RUNNING and job.attempts == attempt:  # its process died
        code = process.returncode
        why = f"signal {-code}" if code < 0 else f"exit code {code}"
        if release_job(sessions, settings, job, f"the job's process died ({why})"):
            enqueue(settings, job_id)
    logger.info("job %s %s", job_id, job.state)
    return job.state


# -- the sweeper: jobs of dead workers, and messages lost by the broker ----------------------------
def sweep(sessions: sessionmaker, settings: Settings) -> list[str]:
    """Queue again (and send) every orphaned running job; resend queued jobs whose message the
    broker lost (a Redis restart without persistence). Returns the ids sent."""
    with sessions() as session:
        running = session.scalars(select(Job).where(Job.state == JobState.RUNNING)).all()
    sent = []
    for job in running:
        if orphaned(job, settings.job_lease_s) and release_job(
            sessions, settings, job, "the worker running it stopped"
        ):
            enqueue(settings, job.id)
            sent.append(job.id)
    if _queue_length(settings) == 0:
        # Nothing waits in the queue, yet these have waited long: their messages are gone.
        # A duplicate message is harmless (the claim runs a job once).
        old = utcnow() - dt.timedelta(seconds=settings.job_lease_s)
        with sessions() as session:
            lost = session.scalars(
                select(Job.id)
                .where(Job.state == JobState.QUEUED, Job.created_at < old)
                .order_by(Job.created_at)
                .limit(100)
            ).all()
        for job_id in lost:
            if job_id not in sent:
                logger.warning("job %s had no message in the queue; sent again", job_id)
                enqueue(settings, job_id)
                sent.append(job_id)
    return sent


def _queue_length(settings: Settings) -> int | None:
    try:
        with celery_app(settings).connection_for_read() as connection:
            # Declaring is harmless (workers declare it too) and answers with its length.
            return connection.default_channel.queue_declare(queue=QUEUE).message_count
    except Exception:  # the broker is away: do not guess
        return None


def sweep_forever(settings: Settings, stop: threading.Event) -> None:
    """Sweep every few seconds until `stop` (a thread of each worker pool process)."""
    every_s = min(settings.job_lease_s / 4, 5 * settings.worker_poll_s)
    logger.info("sweeping for orphaned jobs every %.1f s", every_s)
    engine = make_engine(settings.resolved_database_url)
    sessions = make_sessions(engine)
    try:
        while not stop.wait(every_s):
            try:
                sweep(sessions, settings)
            except Exception:  # a busy database or broker now and then must not end sweeping
                logger.exception("sweep failed")
    finally:
        engine.dispose()


# -- `recon worker` and the API server's side ------------------------------------------------------
def run_worker(
    settings: Settings, *, concurrency: int, hostname: str | None = None, loglevel: str = "INFO"
) -> None:
    """A Celery worker taking jobs from the queue until stopped (SIGTERM: finish the jobs
    running, then stop; SIGQUIT or a crash: they resume elsewhere from their checkpoints)."""
    if not settings.broker_url:
        raise ValueError("no broker: set RECON_BROKER_URL (e.g. redis://localhost:6379/0)")
    app = celery_app(settings)
    worker_process_init.connect(functools.partial(_pool_process_init, settings), weak=False)
    app.worker_main(
        [
            "worker",
            f"--concurrency={concurrency}",
            "--pool=prefork",
            f"--queues={QUEUE}",
            f"--hostname={hostname or f'recon-{os.getpid()}@%h'}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
        ]
    )


def _pool_process_init(settings: Settings, **_kwargs) -> None:
    """Each pool process dies with its worker (so does its job's process, with it: no job runs
    unsupervised after a kill -9), and sweeps for orphans."""
    die_with_parent(os.getppid())
    threading.Thread(
        target=sweep_forever, args=(settings, threading.Event()), name="recon-sweeper", daemon=True
    ).start()
