"""The Flask API: validate, enqueue, serve. No reconstruction logic lives here."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from api.health import blueprint as health_blueprint


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then `test_config` or RECON_* environment variables."""
    app = Flask(__name__)
    app.config.from_mapping(STORAGE_DIR="storage")
    if test_config is None:
        app.config.from_prefixed_env("RECON")
    else:
        app.config.from_mapping(test_config)
    app.register_blueprint(health_blueprint, url_prefix="/api/v1")
    return app
