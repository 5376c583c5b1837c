"""One job, run to its end in a process of its own: reconstruct, publish the model, record.

The same function serves the embedded worker (a child process per job) and, later, Celery
workers: only the queue differs. The pipeline's checkpoints make a rerun of a job whose process
died continue from the last finished stage.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import socket
import sys
import threading
import time

from sqlalchemy import update
from sqlalchemy.orm import sessionmaker

import recon.pipeline as pipeline
from api.db import Job, JobState, Model, make_engine, make_sessions, utcnow
from api.settings import Settings
from api.storage import MODEL_FILES, Storage
from api.webhooks import queue_job_webhook
from recon.errors import CaptureError, InputError, QualityError, ReconError, StageError

logger = logging.getLogger(__name__)

# How often a running job's progress is written (the pipeline reports far more often).
PROGRESS_INTERVAL_S = 1.0


def model_id_for(job_id: str) -> str:
    """A job makes at most one model; a retried job republishes under the same id."""
    return "mdl_" + job_id.removeprefix("job_")


def run_job(settings: Settings, job_id: str) -> str:
    """Run job `job_id` (already claimed: state running) to a finished state; returns it."""
    sessions = make_sessions(make_engine(settings.resolved_database_url))
    storage = Storage(settings.storage_dir)
    with sessions() as session:
        job = session.get(Job, job_id)
        if job is None or job.state != JobState.RUNNING:
            return job.state if job else "missing"
        job.worker_host, job.worker_pid, job.heartbeat_at = (
            socket.gethostname(),
            os.getpid(),
            utcnow(),
        )
        session.commit()
        upload_dir = storage.upload_dir(job_id)
        input_path = upload_dir / job.input["name"] if job.input.get("name") else upload_dir
        options = recon_options(job.options)

    stop_heartbeat = threading.Event()
    threading.Thread(
        target=_heartbeat, args=(sessions, job_id, settings.job_lease_s / 4, stop_heartbeat),
        daemon=True,
    ).start()  # fmt: skip
    progress = _ProgressWriter(sessions, job_id)
    try:
        result = pipeline.reconstruct(
            input_path, storage.job_dir(job_id), options, progress=progress
        )
    except ReconError as error:
        return _finish(sessions, settings, job_id, JobState.FAILED, error=_error_of(error))
    except Exception as error:  # a bug: the merchant gets a reason, the log the traceback
        logger.exception("job %s failed", job_id)
        why = (
            f"the reconstruction failed unexpectedly ({type(error).__name__}); it has been "
            "logged — try again, or contact support with the job id"
        )
        return _finish(sessions, settings, job_id, JobState.FAILED, error=("internal_error", why))
    finally:
        stop_heartbeat.set()
    model_id = model_id_for(job_id)
    out_dir = storage.job_dir(job_id)
    files = {name: out_dir / name for name in MODEL_FILES if (out_dir / name).exists()}
    listing = storage.publish_model(model_id, files)
    report = result.report
    with sessions() as session:
        job = session.get(Job, job_id)
        existing = session.get(Model, model_id)
        if existing is not None:
            session.delete(existing)
            session.flush()
        session.add(
            Model(
                id=model_id,
                merchant_id=job.merchant_id,
                job_id=job_id,
                name=job.options.get("name"),
                sku=job.options.get("sku"),
                files=listing,
                summary=model_summary(report),
            )
        )
        job.model_id = model_id
        # The worker's notes (a resumed run) first, then the reconstruction's own.
        job.warnings = [*job.warnings, *report.get("warnings", [])]
        session.commit()
    # Checkpoints are only for resuming, and the model is published: free the disk before the
    # job reads as succeeded, so a client that sees it finished sees it cleaned up too.
    if not settings.keep_job_workspaces:
        shutil.rmtree(storage.job_dir(job_id), ignore_errors=True)
    return _finish(sessions, settings, job_id, JobState.SUCCEEDED)


def recon_options(job_options: dict) -> pipeline.ReconOptions:
    """The pipeline's options for a job's (api.jobs): preset, mode, known sizes, asset budget."""
    return (
        pipeline.ReconOptions.for_preset(
            job_options.get("preset", "standard"), job_options.get("mode", "object")
        )
        .with_known_dimensions(job_options.get("dimensions_m") or {})
        .with_asset_budget(
            compress=bool(job_options.get("compress")), max_mb=job_options.get("max_mb")
        )
    )


def model_summary(report: dict) -> dict:
    """What a shop or a listing needs to know of a model, from its report.json."""
    return {
        "units": report.get("units"),
        "bbox": report.get("mesh", {}).get("bbox_m"),
        "faces": report.get("mesh", {}).get("faces"),
        "vertices": report.get("mesh", {}).get("vertices"),
        "texture_px": report.get("texture", {}).get("size"),
        "photos_used": report.get("images", {}).get("registered"),
        "photos_total": report.get("images", {}).get("total"),
        "preset": report.get("preset"),
        "mode": report.get("mode", "object"),  # scene models are showrooms' spaces
    }


def _error_of(error: ReconError) -> tuple[str, str]:
    code = {
        InputError: "bad_input",
        CaptureError: "capture_unusable",
        QualityError: "model_untrustworthy",  # made, but its own figures say it is wrong
        StageError: "stage_failed",
    }
    return code.get(type(error), "reconstruction_failed"), str(error)


def _finish(
    sessions: sessionmaker, settings: Settings, job_id: str, state: JobState,
    error: tuple[str, str] | None = None,
) -> str:  # fmt: skip
    with sessions() as session:
        job = session.get(Job, job_id)
        job.state = state
        job.finished_at = utcnow()
        job.eta_s = 0.0 if state == JobState.SUCCEEDED else None
        if state == JobState.SUCCEEDED:
            job.progress = 1.0
            job.stage = None
        if error is not None:
            job.error_code, job.error_message = error
        queue_job_webhook(session, job)
        session.commit()
    logger.info("job %s %s", job_id, state)
    return state


class _ProgressWriter:
    """The pipeline's progress events, written to the job row (at most once a second)."""

    def __init__(self, sessions: sessionmaker, job_id: str) -> None:
        self.sessions = sessions
        self.job_id = job_id
        self.started = time.monotonic()
        self.first_fraction: float | None = None
        self.last_write = 0.0
        self.last_stage = ""

    def __call__(self, stage: str, fraction: float, message: str) -> None:
        now = time.monotonic()
        if stage == self.last_stage and now - self.last_write < PROGRESS_INTERVAL_S:
            return
        self.last_stage, self.last_write = stage, now
        overall = pipeline.overall_fraction(stage, fraction)
        if self.first_fraction is None:  # a resumed job starts part-way
            self.first_fraction = overall
        done_here = overall - self.first_fraction
        eta = (now - self.started) * (1.0 - overall) / done_here if done_here > 0.02 else None
        with self.sessions() as session:
            session.execute(
                update(Job)
                .where(Job.id == self.job_id)
                .values(
                    stage=stage,
                    progress=round(overall, 4),
                    eta_s=None if eta is None else round(eta, 1),
                    message=message[:500],
                    heartbeat_at=utcnow(),
                )
            )
            session.commit()


def _heartbeat(sessions: sessionmaker, job_id: str, every_s: float, stop: threading.Event) -> None:
    """Tell the worker this job's process lives, even through a long silent stage."""
    while not stop.wait(every_s):
        try:
            with sessions() as session:
                session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=utcnow()))
                session.commit()
        except Exception:  # a busy database now and then must not kill the job
            logger.warning("heartbeat of job %s not written", job_id, exc_info=True)


def die_with_parent(parent_pid: int) -> None:
    """Linux: this process gets SIGKILL when the worker that started it dies, so a killed
    server leaves no reconstruction running unsupervised (it resumes on restart)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def main(argv: list[str]) -> int:
    """`python -m api.job_runner JOB_ID PARENT_PID`, with RECON_WORKER_SETTINGS in the env."""
    job_id, parent_pid = argv[0], int(argv[1])
    die_with_parent(parent_pid)
    logging.basicConfig(level=logging.INFO, format=f"%(levelname)s job {job_id}: %(message)s")
    settings = Settings.from_json(os.environ["RECON_WORKER_SETTINGS"])
    state = run_job(settings, job_id)
    return 0 if state in (JobState.SUCCEEDED, JobState.FAILED) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
