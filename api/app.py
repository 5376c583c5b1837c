"""The Flask app: its settings, storage, database and blueprints (`create_app`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from api import health, jobs, models, openapi, showrooms, viewer
from api.context import close_db
from api.db import make_engine, make_sessions
from api.errors import register_error_handlers
from api.ratelimit import add_rate_limits
from api.settings import Settings
from api.storage import Storage

API_PREFIX = "/api/v1"


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults (api.settings.Settings), then `test_config` or RECON_*
    environment variables (`RECON_STORAGE_DIR=/srv/recon`)."""
    app = Flask(__name__)
    if test_config is None:
        app.config.from_prefixed_env("RECON")
    else:
        app.config.from_mapping(test_config)
    settings = Settings.from_config(app.config)
    app.config["STORAGE_DIR"] = str(settings.storage_dir)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_upload_bytes,
        # Werkzeug's multipart parser: one part per photo plus the form fields.
        MAX_FORM_PARTS=settings.max_files + 50,
    )
    storage = Storage(settings.storage_dir)
    storage.create()
    engine = make_engine(settings.resolved_database_url)
    app.extensions["recon"] = {
        "settings": settings,
        "storage": storage,
        "engine": engine,
        "sessions": make_sessions(engine),
    }
    app.teardown_appcontext(close_db)
    register_error_handlers(app)
    for blueprint in (health.blueprint, jobs.blueprint, models.blueprint, models.public,
                      showrooms.blueprint, showrooms.public, openapi.blueprint):  # fmt: skip
        app.register_blueprint(blueprint, url_prefix=API_PREFIX)
    # The web pages (/v/ID, /shop/NAME, /app), and who may frame which page.
    viewer.register(app, API_PREFIX)
    # Kept on the app: Flask-Limiter's decorators hold the limiter only by a weak reference.
    app.extensions["recon"]["limiter"] = add_rate_limits(
        app, settings, uploads="jobs.create_job", exempt=(health.blueprint, openapi.blueprint)
    )
    return app
