"""`recon serve`: the API under waitress (a production WSGI server) with the embedded worker."""

from __future__ import annotations

import logging
import signal

import waitress

from api import create_app
from api.webhooks import WebhookSender
from api.worker import EmbeddedWorker

logger = logging.getLogger(__name__)


def serve(*, host: str, port: int, threads: int = 8, worker: bool = True) -> None:
    """Serve until SIGINT/SIGTERM; settings come from RECON_* environment variables. Running
    jobs are stopped on the way out and resume at the next start."""
    app = create_app()
    settings = app.extensions["recon"]["settings"]
    server = waitress.create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        # Waitress reads a whole body before the app sees it and refuses larger ones in plain
        # text: leave it room, so uploads somewhat over the cap get the API's JSON 413.
        max_request_body_size=2 * settings.max_upload_bytes,
        clear_untrusted_proxy_headers=True,
    )
    embedded = EmbeddedWorker(settings) if worker and not settings.broker_url else None
    if embedded is not None:
        embedded.start()
    webhooks = WebhookSender(settings) if worker else None
    if webhooks is not None:
        webhooks.start()

    def _stop(_signum, _frame) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    logger.warning(
        "serving the API on http://%s:%s/api/v1 (storage %s, %s)",
        host, server.effective_port, settings.storage_dir.resolve(),
        "with the embedded worker" if embedded
        else "jobs sent to Celery workers" if settings.broker_url else "no worker",
    )  # fmt: skip
    try:
        server.run()
    except KeyboardInterrupt:
        logger.warning("stopping")
    finally:
        server.close()
        if embedded is not None:
            embedded.stop()
        if webhooks is not None:
            webhooks.stop()
