"""The storage folder: the only code that knows where uploads, job folders and models live.

Layout under STORAGE_DIR::

    recon.db                    the database (SQLite, unless DATABASE_URL names another)
    incoming/ID/                an upload being written; moved to uploads/ID when complete
    uploads/JOB/                the merchant's files, kept as sent (never deleted by a failure)
    jobs/JOB/                   the reconstruction's output folder (checkpoints in work/)
    models/MODEL/               a finished model's files: model.glb, report.json, ...
"""

from __future__ import annotations

import hashlib
import os
import shutil
import time
import uuid
from pathlib import Path

# Files a model may have (the pipeline's published outputs), and how they are served; a model
# lists just the files it has.
MODEL_FILES: dict[str, str] = {
    "model.glb": "model/gltf-binary",
    "model_50k.glb": "model/gltf-binary",  # size tiers for phones (recon.workspace.tier_file)
    "model_25k.glb": "model/gltf-binary",
    "model.usdz": "model/vnd.usdz+zip",
    "poster.webp": "image/webp",
    "thumbnail.webp": "image/webp",
    "report.json": "application/json",
}


class Storage:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def create(self) -> None:
        for folder in (self.incoming_dir, self.uploads_dir, self.jobs_dir, self.models_dir):
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def incoming_dir(self) -> Path:
        return self.root / "incoming"

    @property
    def uploads_dir(self) -> Path:
        return self.root / "uploads"

    @property
    def jobs_dir(self) -> Path:
        return self.root / "jobs"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def upload_dir(self, job_id: str) -> Path:
        return self.uploads_dir / job_id

    def job_dir(self, job_id: str) -> Path:
        return self.jobs_dir / job_id

    def model_dir(self, model_id: str) -> Path:
        return self.models_dir / model_id

    def new_incoming_dir(self) -> Path:
        path = self.incoming_dir / uuid.uuid4().hex
        path.mkdir(parents=True)
        return path

    def clear_incoming(self, older_than_s: float = 3600.0) -> None:
        """Uploads that were being written when a server stopped: never accepted, so removed.
        Recent ones may belong to another server sharing this storage, and are left."""
        self.incoming_dir.mkdir(parents=True, exist_ok=True)
        for entry in self.incoming_dir.iterdir():
            if time.time() - entry.stat().st_mtime > older_than_s:
                shutil.rmtree(entry, ignore_errors=True)

    def publish_model(self, model_id: str, files: dict[str, Path]) -> dict[str, dict]:
        """Copy `files` (served name -> source) into models/MODEL at once: a staged folder is
        renamed into place, replacing an earlier attempt. Returns name -> {bytes, etag}."""
        staged = self.incoming_dir / f"{model_id}.{uuid.uuid4().hex}"
        staged.mkdir(parents=True)
        listing = {}
        try:
            for name, source in files.items():
                shutil.copyfile(source, staged / name)
                listing[name] = {"bytes": (staged / name).stat().st_size, "etag": file_etag(source)}
            target = self.model_dir(model_id)
            if target.exists():  # a retried job: its earlier, unrecorded copy is replaced
                shutil.rmtree(target)
            os.replace(staged, target)
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        return listing

    def delete_model(self, model_id: str) -> None:
        shutil.rmtree(self.model_dir(model_id), ignore_errors=True)


def file_etag(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:32]
