"""`recon batch --engine celery`: a catalogue's products as jobs of the service, run by the
`recon worker` machines; the models are copied back into OUT like the local engine's.

The batch runs where the service's database, storage and broker are reachable (the RECON_*
variables of `recon worker`); its jobs belong to a merchant and are checked like uploads.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from sqlalchemy import select
from werkzeug.datastructures import FileStorage

from api.db import (
    FINISHED_STATES,
    Job,
    JobState,
    Merchant,
    Model,
    make_engine,
    make_sessions,
    new_id,
    utcnow,
)
from api.errors import ApiError
from api.queue import enqueue
from api.serialize import API
from api.settings import Settings
from api.storage import MODEL_FILES, Storage
from api.uploads import accept_upload
from recon.batch import BatchOptions, Outcome, Product
from recon.errors import InputError
from recon.workspace import Workspace

logger = logging.getLogger(__name__)


class CeleryEngine:
    """Submits each product as a job owned by `merchant`, follows the jobs in the database,
    and copies each finished model into OUT/<sku>/ (published, with its public link, when the
    batch has a server URL)."""

    name = "celery"

    def __init__(self, settings: Settings, merchant: str, *, poll_s: float = 1.0) -> None:
        if not settings.broker_url:
            raise InputError(
                "--engine celery needs the service's broker: set RECON_BROKER_URL (and "
                "RECON_STORAGE_DIR / RECON_DATABASE_URL as for `recon worker`)"
            )
        self.settings = settings
        self.merchant = merchant
        self.poll_s = poll_s

    def __call__(
        self,
        products: Sequence[Product],
        out_dir: Path,
        options: BatchOptions,
        *,
        previous: dict[str, dict],
        progress: Callable[[str, float, str], None],
        started: Callable[[str, str], None],
        done: Callable[[Outcome], None],
    ) -> None:
        engine = make_engine(self.settings.resolved_database_url)
        sessions = make_sessions(engine)
        storage = Storage(self.settings.storage_dir)
        storage.create()
        try:
            with sessions() as session:
                merchant = session.scalar(select(Merchant).where(Merchant.name == self.merchant))
            if merchant is None:
                raise InputError(
                    f"no merchant named {self.merchant!r}: create it with "
                    f"`recon admin create-merchant {self.merchant}`, or name one with --merchant"
                )
            following: dict[str, Product] = {}
            for product in products:
                job_options = _job_options(product, options)
                job_id = (previous.get(product.sku) or {}).get("job_id")
                with sessions() as session:
                    earlier = session.get(Job, job_id) if job_id else None
                    if not (
                        earlier is not None
                        and earlier.merchant_id == merchant.id
                        and earlier.options == job_options
                        and earlier.state in (JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED)
                    ):
                        try:
                            job_id = _submit(
                                session, storage, self.settings, merchant.id, product, job_options
                            )
                        except ApiError as error:
                            done(Outcome(product.sku, error=error.message))
                            continue
                following[job_id] = product
                started(product.sku, job_id)
            self._follow(sessions, storage, following, out_dir, options, progress, done)
        finally:
            engine.dispose()

    def _follow(
        self,
        sessions,
        storage: Storage,
        following: dict[str, Product],
        out_dir: Path,
        options: BatchOptions,
        progress: Callable[[str, float, str], None],
        done: Callable[[Outcome], None],
    ) -> None:
        while following:
            with sessions() as session:
                jobs = session.scalars(select(Job).where(Job.id.in_(list(following)))).all()
                for job in jobs:
                    product = following[job.id]
                    if job.state not in FINISHED_STATES:
                        progress(product.sku, job.progress or 0.0, job.stage or job.state)
                        continue
                    del following[job.id]
                    seconds = ((job.finished_at or utcnow()) - job.created_at).total_seconds()
                    if job.state != JobState.SUCCEEDED or job.model_id is None:
                        why = job.error_message or f"the job was {job.state}"
                        done(Outcome(product.sku, error=why, seconds=seconds, job_id=job.id))
                        continue
                    model = session.get(Model, job.model_id)
                    _copy_model(storage.model_dir(model.id), out_dir / product.folder_name)
                    link = None
                    if options.server_url:  # the feed links to it: it must be public
                        if not model.published:
                            model.published, model.published_at = True, utcnow()
                            session.commit()
                        origin = options.server_url.rstrip("/")
                        link = f"{origin}{API}/public/models/{model.id}/model.glb"
                    done(Outcome(product.sku, seconds=seconds, link=link, job_id=job.id))
            if following:
                time.sleep(self.poll_s)


def _job_options(product: Product, options: BatchOptions) -> dict:
    """The job's options as the API would record them for this product."""
    job_options: dict = {"preset": options.preset, "sku": product.sku}
    if product.name:
        job_options["name"] = product.name
    if product.dimensions_m:
        job_options["dimensions_m"] = dict(product.dimensions_m)
    return job_options


def _submit(
    session,
    storage: Storage,
    settings: Settings,
    merchant_id: int,
    product: Product,
    job_options: dict,
) -> str:
    """The product's files checked like an upload (ApiError when refused), stored, and its job
    queued and sent to the workers."""
    if not product.input_path.exists():
        raise ApiError(400, "bad_input", f"{product.input_path} does not exist")
    with _upload_files(product.input_path) as files:
        upload = accept_upload(files, settings, storage)
    job = Job(
        id=new_id("job"),
        merchant_id=merchant_id,
        options=job_options,
        input={**upload.to_json(), "name": upload.input_name},
    )
    target = storage.upload_dir(job.id)
    os.replace(upload.folder, target)
    try:
        session.add(job)
        session.commit()
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    enqueue(settings, job.id)
    logger.info("%s: job %s queued", product.sku, job.id)
    return job.id


@contextlib.contextmanager
def _upload_files(input_path: Path) -> Iterator[list[FileStorage]]:
    """A product's input as upload parts: a file as itself, a folder as one zip of it (capture
    names the photos of a zip as those of the folder: the same cameras in the report)."""
    with contextlib.ExitStack() as stack:
        if input_path.is_dir():
            stream = stack.enter_context(tempfile.TemporaryFile())
            with zipfile.ZipFile(stream, "w", zipfile.ZIP_STORED) as archive:
                for path in sorted(input_path.rglob("*")):
                    if path.is_file():
                        archive.write(path, path.relative_to(input_path).as_posix())
            filename = f"{input_path.name}.zip"
        else:
            stream = stack.enter_context(input_path.open("rb"))
            filename = input_path.name
        stream.seek(0)
        yield [FileStorage(stream=stream, filename=filename)]


def _copy_model(model_dir: Path, product_dir: Path) -> None:
    """The published model's files into the product's folder, each under a temporary name then
    renamed, the report last (a report means a complete product, as with the local engine)."""
    workspace = Workspace(product_dir)
    product_dir.mkdir(parents=True, exist_ok=True)
    workspace.report_path.unlink(missing_ok=True)
    names = sorted(
        (n for n in MODEL_FILES if (model_dir / n).exists()), key=lambda n: n == "report.json"
    )
    for name in names:
        tmp = product_dir / f".{name}.tmp"
        shutil.copyfile(model_dir / name, tmp)
        tmp.replace(product_dir / name)
