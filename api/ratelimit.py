"""Rate limits per API key (per client address for requests without one), by Flask-Limiter."""

from __future__ import annotations

from flask import Blueprint, Flask
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

from api.auth import hash_key, presented_key
from api.settings import Settings


def rate_limit_key() -> str:
    key = presented_key()
    # The key's hash, not the key: limiter storage (maybe a shared Redis) never holds secrets.
    return f"key:{hash_key(key)[:24]}" if key else f"addr:{get_remote_address()}"


def add_rate_limits(
    app: Flask, settings: Settings, *, uploads: str, exempt: tuple[Blueprint, ...]
) -> Limiter:
    """The app's limiter: `settings.rate_limit` on every request, the stricter
    `settings.upload_rate_limit` on the `uploads` endpoint, none on `exempt` blueprints."""
    app.config.update(
        RATELIMIT_DEFAULT=settings.rate_limit,
        RATELIMIT_STORAGE_URI=settings.rate_limit_storage_uri,
        RATELIMIT_ENABLED=settings.rate_limit_enabled,
        RATELIMIT_HEADERS_ENABLED=True,
    )

    # Registered before the limiter's own hook, so it runs after it: Flask-Limiter adds
    # Retry-After to every response, but on a 202 it would tell clients when to poll.
    @app.after_request
    def _retry_after_only_when_limited(response):
        if response.status_code != 429:
            response.headers.pop("Retry-After", None)
        return response

    limiter = Limiter(key_func=rate_limit_key, app=app)
    app.view_functions[uploads] = limiter.limit(settings.upload_rate_limit)(
        app.view_functions[uploads]
    )
    for blueprint in exempt:
        limiter.exempt(blueprint)
    return limiter
