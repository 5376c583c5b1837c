"""What a request handler needs from the app: its settings, storage and a database session."""

from __future__ import annotations

from flask import current_app, g
from sqlalchemy.orm import Session

from api.settings import Settings
from api.storage import Storage


def settings() -> Settings:
    return current_app.extensions["recon"]["settings"]


def storage() -> Storage:
    return current_app.extensions["recon"]["storage"]


def db() -> Session:
    """This request's session (closed when the request ends)."""
    if "db" not in g:
        g.db = current_app.extensions["recon"]["sessions"]()
    return g.db


def close_db(_error: BaseException | None = None) -> None:
    session = g.pop("db", None)
    if session is not None:
        session.close()
