"""Webhooks: a signed POST to the job's callback_url when it finishes, retried with backoff."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import urllib.error
import urllib.request
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

import recon
from api.db import Job, Merchant, WebhookDelivery, make_engine, make_sessions, new_id, utcnow
from api.serialize import job_json
from api.settings import Settings

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Recon-Signature"  # "sha256=" + hex HMAC-SHA256(merchant secret, body)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_callback_url(url: str, *, allow_private: bool) -> str | None:
    """Why `url` cannot receive webhooks, or None when it can. Private and loopback addresses
    are refused (unless allowed) so a callback cannot reach into the server's own network."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "callback_url must be an absolute http:// or https:// URL"
    if len(url) > 2000:
        return "callback_url is longer than 2000 characters"
    if allow_private:
        return None
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, None)}
    except (socket.gaierror, UnicodeError):
        return f"callback_url's host {parts.hostname!r} does not resolve"
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        if not ip.is_global:
            return f"callback_url's host {parts.hostname!r} is a private or local address"
    return None


def job_event_body(job: Job) -> bytes:
    """The webhook body: the job as GET /jobs/ID shows it, with the event name."""
    payload = {"event": f"job.{job.state}", "sent_at": utcnow().isoformat(), "job": job_json(job)}
    return json.dumps(payload, separators=(",", ":")).encode()


def queue_job_webhook(session: Session, job: Job) -> None:
    """Record the finished job's webhook for delivery (in the caller's transaction)."""
    if not job.callback_url:
        return
    session.add(
        WebhookDelivery(
            id=new_id("whd"),
            job_id=job.id,
            url=job.callback_url,
            event=f"job.{job.state}",
            body=job_event_body(job).decode(),
        )
    )


def deliver_due(sessions: sessionmaker, settings: Settings) -> int:
    """POST every webhook that is due; returns how many were tried."""
    with sessions() as session:
        due = session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= utcnow())
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(20)
        ).all()
        for delivery in due:
            job = session.get(Job, delivery.job_id)
            merchant = session.get(Merchant, job.merchant_id)
            error = _post(delivery, merchant.webhook_secret, settings)
            delivery.attempts += 1
            if error is None:
                delivery.state, delivery.delivered_at, delivery.last_error = (
                    "delivered",
                    utcnow(),
                    None,
                )
            else:
                delivery.last_error = error
                if delivery.attempts >= settings.webhook_max_attempts:
                    delivery.state = "failed"
                else:
                    wait = settings.webhook_backoff_s * 4 ** (delivery.attempts - 1)
                    delivery.next_attempt_at = utcnow() + dt.timedelta(seconds=wait)
                logger.warning("webhook %s to %s: %s", delivery.id, delivery.url, error)
            session.commit()
        return len(due)


def _post(delivery: WebhookDelivery, secret: str, settings: Settings) -> str | None:
    """One attempt; None on a 2xx answer, else what went wrong."""
    why = check_callback_url(delivery.url, allow_private=settings.webhook_allow_private)
    if why is not None:
        return why
    body = delivery.body.encode()
    request = urllib.request.Request(
        delivery.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": f"recon-webhooks/{recon.__version__}",
            "X-Recon-Event": delivery.event,
            "X-Recon-Delivery": delivery.id,
            SIGNATURE_HEADER: sign(secret, body),
        },
    )
    try:
        with _NO_REDIRECTS.open(request, timeout=settings.webhook_timeout_s) as response:
            response.read(1024)
            return None
    except urllib.error.HTTPError as error:
        return f"HTTP {error.code}"
    except (urllib.error.URLError, OSError, ValueError) as error:
        return f"{type(error).__name__}: {getattr(error, 'reason', error)}"


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect could lead past the private-address check; the receiver must answer itself."""

    def redirect_request(self, *args, **kwargs):  # type: ignore[override]
        return None


_NO_REDIRECTS = urllib.request.build_opener(_RefuseRedirects)


class WebhookSender:
    """`recon serve`'s thread that sends the finished jobs' webhooks (whoever ran the jobs: the
    embedded worker or Celery workers), polling the database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recon-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        engine = make_engine(self.settings.resolved_database_url)
        sessions = make_sessions(engine)
        while not self._stop.wait(self.settings.worker_poll_s):
            try:
                deliver_due(sessions, self.settings)
            except Exception:
                logger.exception("webhook delivery failed")
        engine.dispose()
