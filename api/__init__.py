"""The Flask API: validate, enqueue, serve. No reconstruction logic lives here.

The app (`create_app`, in api.app) loads on first use: the `recon` command starts in api.cli,
and a reconstruction needs neither Flask nor the blueprints (0.5-0.8 CPU-s a run).
"""

from __future__ import annotations

from typing import Any

_APP_NAMES = ("create_app", "API_PREFIX")


def __getattr__(name: str) -> Any:
    if name in _APP_NAMES:
        from api import app

        return getattr(app, name)
    raise AttributeError(f"module 'api' has no attribute {name!r}")
