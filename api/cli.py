"""The service's verbs of the `recon` command: `serve` and `admin`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from recon import cli as recon_cli

console = Console()


def main(argv: Sequence[str] | None = None) -> int:
    return recon_cli.main(argv, extra_verbs=add_service_verbs)


def add_service_verbs(verbs: argparse._SubParsersAction) -> None:
    serve = verbs.add_parser(
        "serve",
        help="run the API and its job worker",
        description="Serve the HTTP API (/api/v1) with an embedded worker that runs "
        "reconstructions in child processes. Settings come from RECON_* environment variables "
        "(RECON_STORAGE_DIR, RECON_DATABASE_URL, RECON_MAX_UPLOAD_BYTES, ...: api/settings.py).",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (8000; 0 picks a free one)")
    serve.add_argument("--threads", type=int, default=8, help="request threads (8)")
    serve.add_argument(
        "--no-worker", action="store_true", help="only serve; jobs run on other machines' workers"
    )
    serve.set_defaults(handler=_serve)

    admin = verbs.add_parser("admin", help="merchants and their API keys")
    actions = admin.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser(
        "create-merchant", help="add a merchant and print its API key (shown once)"
    )
    create.add_argument("name")
    create.set_defaults(handler=_create_merchant)
    rotate = actions.add_parser(
        "rotate-key", help="give a merchant a new API key; the old one stops working"
    )
    rotate.add_argument("name")
    rotate.set_defaults(handler=_rotate_key)
    listing = actions.add_parser("list-merchants", help="list merchants (keys are never shown)")
    listing.set_defaults(handler=_list_merchants)


def _serve(args: argparse.Namespace) -> int:
    from api.server import serve

    logging.getLogger().setLevel(logging.INFO if not args.verbose else logging.DEBUG)
    serve(host=args.host, port=args.port, threads=args.threads, worker=not args.no_worker)
    return 0


def _sessions():
    from api import create_app

    return create_app().extensions["recon"]["sessions"]


def _create_merchant(args: argparse.Namespace) -> int:
    from api.auth import create_merchant

    with _sessions()() as session:
        try:
            merchant, key = create_merchant(session, args.name)
        except ValueError as error:
            console.print(f"[bold red]error:[/] {error}", highlight=False)
            return 2
        _print_secrets(merchant.name, key, merchant.webhook_secret)
    return 0


def _rotate_key(args: argparse.Namespace) -> int:
    from api.auth import rotate_key
    from api.db import Merchant

    with _sessions()() as session:
        merchant = session.scalar(select(Merchant).where(Merchant.name == args.name))
        if merchant is None:
            console.print(f"[bold red]error:[/] no merchant named {args.name!r}", highlight=False)
            return 2
        _print_secrets(merchant.name, rotate_key(session, merchant), merchant.webhook_secret)
    return 0


def _list_merchants(_args: argparse.Namespace) -> int:
    from api.db import Job, Merchant

    table = Table("merchant", "key ends", "jobs", "created")
    with _sessions()() as session:
        for merchant in session.scalars(select(Merchant).order_by(Merchant.name)):
            jobs = session.query(Job).filter(Job.merchant_id == merchant.id).count()
            table.add_row(
                merchant.name, "…" + merchant.key_hint, str(jobs), f"{merchant.created_at:%Y-%m-%d}"
            )
    console.print(table)
    return 0


def _print_secrets(name: str, key: str, webhook_secret: str) -> None:
    """The key alone on stdout (scripts capture it); the explanation on stderr."""
    err = Console(stderr=True)
    err.print(f"API key of {name} (shown only now; store it safely):", highlight=False)
    print(key)
    err.print(f"webhook signing secret: {webhook_secret}", highlight=False)


if __name__ == "__main__":
    sys.exit(main())
