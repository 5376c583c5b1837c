"""The embedded worker: runs queued jobs in child processes and recovers orphaned ones.

It is a thread of `recon serve`. Each job runs in a process of its own (`api.job_runner`), so a
crash or an out-of-memory kill takes one job down, not the server; the job is then resumed from
its last finished stage, up to `job_max_attempts` times. When the server itself dies, its job
processes die with it, and the next start resumes their jobs.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from api.db import Job, JobState, make_engine, make_sessions, utcnow
from api.settings import Settings
from api.storage import Storage
from api.webhooks import queue_job_webhook

logger = logging.getLogger(__name__)


@dataclass
class _Running:
    process: subprocess.Popen
    started: float
    cancelling: bool = False


class EmbeddedWorker:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.sessions: sessionmaker = make_sessions(make_engine(settings.resolved_database_url))
        self.storage = Storage(settings.storage_dir)
        self.running: dict[str, _Running] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.storage.create()
        self.storage.clear_incoming()
        self._thread = threading.Thread(target=self._run, name="recon-worker", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop taking jobs; running ones are stopped and queued again (they resume later)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        for job_id, run in list(self.running.items()):
            terminate(run.process)
            self._requeue(job_id, reason=None, count_attempt=False)
        self.running.clear()

    def _run(self) -> None:
        first = True
        while not self._stop.is_set():
            try:
                if first:  # whatever a dead server left running, before anything new
                    self.recover_orphans()
                    first = False
                self.step()
            except Exception:  # the worker must outlive a bad moment of the database
                logger.exception("worker step failed")
            self._stop.wait(self.settings.worker_poll_s)

    # -- one round ------------------------------------------------------------------------------
    def step(self) -> None:
        self._reap()
        self._honour_cancels_and_timeouts()
        self.recover_orphans(stale_only=True)
        while len(self.running) < self.settings.worker_concurrency and self._start_next():
            pass

    def _start_next(self) -> bool:
        with self.sessions() as session:
            job_id = session.scalar(
                select(Job.id)
                .where(Job.state == JobState.QUEUED)
                .order_by(Job.created_at, Job.id)
                .limit(1)
            )
            if job_id is None:
                return False
            claimed = claim_queued(session, job_id, pid=None)  # the child's pid comes next
        if claimed:
            self._spawn(job_id)
        return True

    def _spawn(self, job_id: str) -> None:
        env = {**os.environ, "RECON_WORKER_SETTINGS": self.settings.to_json()}
        process = subprocess.Popen(
            [sys.executable, "-m", "api.job_runner", job_id, str(os.getpid())],
            env=env,
            start_new_session=True,  # a terminal's Ctrl-C goes to the server, which stops it
        )
        with self.sessions() as session:
            session.execute(update(Job).where(Job.id == job_id).values(worker_pid=process.pid))
            session.commit()
        self.running[job_id] = _Running(process, time.monotonic())
        logger.info("job %s started (pid %d)", job_id, process.pid)

    def _reap(self) -> None:
        for job_id, run in list(self.running.items()):
            code = run.process.poll()
            if code is None:
                continue
            del self.running[job_id]
            # A job that ended by itself has recorded it; _requeue then leaves it alone. Otherwise
            # it was cancelled, timed out, or died.
            why = f"signal {-code}" if code < 0 else f"exit code {code}"
            self._requeue(job_id, reason=f"the worker process died ({why})")

    def _honour_cancels_and_timeouts(self) -> None:
        if not self.running:
            return
        with self.sessions() as session:
            cancelled = set(
                session.scalars(
                    select(Job.id).where(Job.id.in_(self.running), Job.cancel_requested)
                )
            )
        for job_id, run in self.running.items():
            overdue = time.monotonic() - run.started > self.settings.job_timeout_s
            if (job_id in cancelled or overdue) and not run.cancelling:
                run.cancelling = True
                if overdue:
                    with self.sessions() as session:
                        job = session.get(Job, job_id)
                        job.error_code = "timeout"
                        job.error_message = (
                            f"the reconstruction ran longer than {self.settings.job_timeout_s:.0f} "
                            "s and was stopped; try the preview preset or fewer photos"
                        )
                        job.cancel_requested = True
                        session.commit()
                terminate(run.process)

    # -- orphans: jobs marked running that no process works on ---------------------------------
    def recover_orphans(self, *, stale_only: bool = False) -> None:
        """Jobs left `running` by a server or worker that died: resume them (or fail them after
        too many attempts). A job is orphaned when its heartbeat is older than the lease, or —
        at start-up — when its process on this host is gone."""
        with self.sessions() as session:
            candidates = session.scalars(
                select(Job).where(Job.state == JobState.RUNNING, Job.id.not_in(list(self.running)))
            ).all()
            orphans = [
                job.id
                for job in candidates
                if orphaned(job, self.settings.job_lease_s, check_process=not stale_only)
            ]
        for job_id in orphans:
            self._requeue(job_id, reason="the server or worker stopped during the job")

    def _requeue(self, job_id: str, *, reason: str | None, count_attempt: bool = True) -> None:
        with self.sessions() as session:
            job = session.get(Job, job_id)
        if job is not None and job.state == JobState.RUNNING:
            release_job(self.sessions, self.settings, job, reason, count_attempt=count_attempt)


def release_job(
    sessions: sessionmaker,
    settings: Settings,
    job: Job,
    reason: str | None,
    *,
    count_attempt: bool = True,
) -> bool:
    """A running job whose process ended without recording it: queued again to resume from its
    checkpoints (True), or ended — failed when it timed out or died `job_max_attempts` times,
    cancelled when asked. `count_attempt=False` (a server stopping) does not count the run.
    The update applies only if the job is still in the run seen in `job` (same attempt), so two
    workers noticing the same dead job release it once."""
    timed_out = job.error_code == "timeout"  # the error is recorded; only the state is left
    ended = timed_out or job.cancel_requested or job.attempts >= settings.job_max_attempts
    if timed_out:
        values: dict = {"state": JobState.FAILED}
    elif job.cancel_requested:
        values = {"state": JobState.CANCELLED}
    elif ended:
        values = {
            "state": JobState.FAILED,
            "error_code": "worker_died",
            "error_message": f"{reason} {job.attempts} times; the photos may need more memory "
            "than the machine running them has — try the preview preset, or contact support",
        }
    else:
        values = {"state": JobState.QUEUED}
        if reason:
            values["warnings"] = [*job.warnings, f"{reason}; resumed from its last finished stage"]
        if not count_attempt:
            values["attempts"] = max(0, job.attempts - 1)
    if ended:
        values.update(finished_at=utcnow(), eta_s=None)
    with sessions() as session:
        changed = session.execute(
            update(Job)
            .where(Job.id == job.id, Job.state == JobState.RUNNING, Job.attempts == job.attempts)
            .values(worker_pid=None, heartbeat_at=None, **values)
        ).rowcount
        if changed and ended:
            queue_job_webhook(session, session.get(Job, job.id))
        session.commit()
    if changed:
        logger.warning("job %s %s: %s", job.id, values["state"], reason or "server stopping")
    return bool(changed) and not ended


def claim_queued(session: Session, job_id: str, *, pid: int | None) -> bool:
    """Mark a queued job running on this host (and `pid`, when known); False when another
    worker's claim came first (only one update finds it still queued)."""
    now = utcnow()
    claimed = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state == JobState.QUEUED)
        .values(
            state=JobState.RUNNING,
            attempts=Job.attempts + 1,
            started_at=now,
            heartbeat_at=now,
            worker_host=socket.gethostname(),
            worker_pid=pid,
        )
    ).rowcount
    session.commit()
    return bool(claimed)


def orphaned(job: Job, lease_s: float, *, check_process: bool = True) -> bool:
    """A running job nobody works on: its heartbeat is older than the lease, or (with
    `check_process`) its process on this host is gone."""
    if job.heartbeat_at is None or job.heartbeat_at < utcnow() - dt.timedelta(seconds=lease_s):
        return True
    return check_process and not may_be_alive(job)


def may_be_alive(job: Job) -> bool:
    """Whether the job's process may still live: on another host we cannot tell (trust the
    heartbeat); on this one, whether its pid runs."""
    if job.worker_host != socket.gethostname():
        return True
    if job.worker_pid is None:
        return False
    try:
        os.kill(job.worker_pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def terminate(process: subprocess.Popen, grace_s: float = 5.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
