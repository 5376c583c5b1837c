"""Merchants and their API keys: keys are shown once and stored only as a hash."""

from __future__ import annotations

import hashlib
import secrets

from flask import g, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.db import Merchant
from api.errors import ApiError

KEY_PREFIX = "rk_"


def new_api_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(key: str) -> str:
    # Keys carry 256 random bits, so a plain SHA-256 cannot be brute-forced (no salt or slow
    # hash needed, unlike passwords), and lookups stay one indexed query.
    return hashlib.sha256(key.encode()).hexdigest()


def create_merchant(session: Session, name: str) -> tuple[Merchant, str]:
    """A new merchant and its API key (returned once; only its hash is kept)."""
    name = name.strip()
    if not name:
        raise ValueError("a merchant needs a name")
    if session.scalar(select(Merchant).where(Merchant.name == name)) is not None:
        raise ValueError(f"a merchant named {name!r} already exists")
    key = new_api_key()
    merchant = Merchant(
        name=name,
        key_hash=hash_key(key),
        key_hint=key[-4:],
        webhook_secret="whsec_" + secrets.token_urlsafe(24),
    )
    session.add(merchant)
    session.commit()
    return merchant, key


def rotate_key(session: Session, merchant: Merchant) -> str:
    """Replace the merchant's key: the old one stops working at once."""
    key = new_api_key()
    merchant.key_hash, merchant.key_hint = hash_key(key), key[-4:]
    session.commit()
    return key


def presented_key() -> str | None:
    """The key of this request: `Authorization: Bearer KEY` or `X-API-Key: KEY`."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("X-API-Key") or None


def current_merchant(session: Session) -> Merchant:
    """The merchant whose key came with this request, or a 401."""
    if "merchant" in g:
        return g.merchant
    key = presented_key()
    if key is None:
        raise ApiError(401, "unauthorized", "no API key: send it as 'Authorization: Bearer <key>'")
    merchant = session.scalar(select(Merchant).where(Merchant.key_hash == hash_key(key)))
    if merchant is None:
        raise ApiError(
            401, "unauthorized", "this API key is not valid; ask for a new one (recon admin)"
        )
    g.merchant = merchant
    return merchant
