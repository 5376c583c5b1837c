"""The service's settings: defaults here, overridden by the app config or RECON_* variables."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GIB = 2**30


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every knob of the API and its worker. Config key = field name in upper case
    (`RECON_MAX_FILES=200` in the environment sets `max_files`)."""

    storage_dir: Path = Path("storage")  # uploads, job folders, published models, the database
    database_url: str = ""  # SQLAlchemy URL; empty: SQLite at STORAGE_DIR/recon.db
    # -- uploads --------------------------------------------------------------------------------
    max_upload_bytes: int = GIB  # one request's body (photos, a zip or a video)
    max_files: int = 500  # photos in one upload, or members in one zip
    min_photos: int = 3  # fewer cannot make a model: refused at upload, in seconds
    max_pixels: int = 100_000_000  # per photo; larger ones are refused before decoding
    max_zip_bytes: int = 4 * GIB  # total unpacked size of one zip (declared sizes; zip bombs)
    # -- rate limits (Flask-Limiter syntax), per API key, or per address without one ------------
    rate_limit: str = "1200 per minute"
    upload_rate_limit: str = "120 per hour"
    rate_limit_storage_uri: str = "memory://"  # redis://... when several servers share limits
    rate_limit_enabled: bool = True
    # -- the worker -----------------------------------------------------------------------------
    worker_concurrency: int = 1  # reconstructions at once (each already uses every core)
    worker_poll_s: float = 1.0  # how often the worker looks for new jobs and webhooks
    job_max_attempts: int = 3  # a job whose worker died is resumed this many times in all
    job_lease_s: float = 60.0  # a running job whose heartbeat is older is taken as orphaned
    job_timeout_s: float = 3 * 3600.0  # a reconstruction running longer is stopped and failed
    keep_job_workspaces: bool = False  # keep a succeeded job's checkpoints (for debugging)
    # Celery on Redis (redis://host:6379/0): jobs go to `recon worker` processes, possibly on
    # other machines sharing the database and storage; empty: the embedded worker runs them.
    broker_url: str = ""
    # -- webhooks -------------------------------------------------------------------------------
    webhook_max_attempts: int = 6
    webhook_backoff_s: float = 30.0  # first retry after this; each further one waits 4× longer
    webhook_timeout_s: float = 10.0
    webhook_allow_private: bool = False  # allow callback URLs on loopback / private networks
    # -- published files ------------------------------------------------------------------------
    public_max_age_s: int = 300  # Cache-Control max-age of published files (they keep an ETag)
    cors_origins: str = "*"  # Access-Control-Allow-Origin of published files

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Settings:
        """Settings from a Flask config (or any mapping) holding upper-case field names."""
        values = {}
        for item in dataclasses.fields(cls):
            key = item.name.upper()
            if key in config and config[key] is not None:
                values[item.name] = Path(config[key]) if item.name == "storage_dir" else config[key]
        return cls(**values)

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.storage_dir / 'recon.db').resolve()}"

    def to_json(self) -> str:
        """For a worker process: the same settings, as text."""
        values = dataclasses.asdict(self)
        values["storage_dir"] = str(self.storage_dir)
        return json.dumps(values)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        values = json.loads(text)
        values["storage_dir"] = Path(values["storage_dir"])
        return cls(**values)
