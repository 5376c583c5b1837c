"""What a request handler needs from the app: its settings, storage and a database session."""

from __future__ import annotations

import math
from typing import Any

from flask import current_app, g, request
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from api.auth import current_merchant
from api.errors import ApiError, not_found
from api.settings import Settings
from api.storage import Storage

MAX_PER_PAGE = 100
MAX_PAGE = 1_000_000  # far past any real listing; keeps offsets in range of every database


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


def owned(row_class: type, row_id: str, what: str) -> Any:
    """The requesting merchant's job or model, or 404 — also when it is another merchant's, so
    that ids are never confirmed."""
    merchant = current_merchant(db())
    row = db().get(row_class, row_id)
    if row is None or row.merchant_id != merchant.id:
        raise not_found(f"{what} {row_id}")
    return row


def page_of(query: Select, *order_by: Any) -> tuple[list, dict]:
    """The rows of the requested page (?page=, ?per_page=) and the paging facts."""
    try:
        page = int(request.args.get("page", 1))
        per_page = int(request.args.get("per_page", 20))
    except ValueError:
        raise ApiError(400, "bad_request", "page and per_page must be whole numbers") from None
    if not 1 <= page <= MAX_PAGE or not 1 <= per_page <= MAX_PER_PAGE:
        raise ApiError(
            400, "bad_request", f"page must be 1–{MAX_PAGE} and per_page 1–{MAX_PER_PAGE}"
        )
    total = db().scalar(select(func.count()).select_from(query.subquery()))
    rows = list(
        db().scalars(query.order_by(*order_by).offset((page - 1) * per_page).limit(per_page))
    )
    return rows, {
        "page": page,
        "per_page": per_page,
        "total": total,
        "pages": max(1, math.ceil(total / per_page)),
    }
