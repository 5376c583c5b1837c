"""The service's verbs of the `recon` command: `serve`, `worker`, `batch` and `admin`."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

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

    worker = verbs.add_parser(
        "worker",
        help="run a Celery worker that takes jobs from the queue",
        description="Take jobs from the Redis broker at RECON_BROKER_URL and run them (the API's "
        "uploads, and `recon batch --engine celery`). Every worker needs the service's database "
        "(RECON_DATABASE_URL) and storage (RECON_STORAGE_DIR). SIGTERM finishes the running "
        "jobs, then stops; a worker that dies leaves its jobs to the others, which resume them.",
    )
    worker.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="jobs at once (RECON_WORKER_CONCURRENCY, 1: each job uses every core)",
    )
    worker.add_argument("--hostname", default=None, help="Celery node name (recon-PID@host)")
    worker.set_defaults(handler=_worker)

    batch = verbs.add_parser(
        "batch",
        help="reconstruct a catalogue of products",
        description="Reconstruct every product of CATALOGUE (a folder with one sub-folder of "
        "photos, .zip or video per product, named by SKU; or a CSV with columns "
        "sku,path[,height_m,width_m,depth_m,name], paths relative to the CSV) into OUT/<sku>/, "
        "with OUT/summary.csv, OUT/summary.json and a product feed (OUT/product_feed.csv: id, "
        "virtual_model_link). Run again to resume: products done are skipped, failed ones retried.",
    )
    batch.add_argument("catalogue", type=Path, help="catalogue folder or CSV")
    batch.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    batch.add_argument(
        "--preset",
        choices=["preview", "standard", "high"],
        default="standard",
        help="detail level (standard)",
    )
    batch.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="products at once on this machine (1; each already uses every core)",
    )
    batch.add_argument(
        "--engine",
        choices=["local", "celery"],
        default="local",
        help="local processes, or the service's Celery workers (RECON_BROKER_URL, "
        "RECON_DATABASE_URL, RECON_STORAGE_DIR as for `recon worker`)",
    )
    batch.add_argument(
        "--merchant", default="batch", help="with --engine celery: the merchant owning the jobs"
    )
    batch.add_argument(
        "--server-url",
        default=None,
        metavar="URL",
        help="links in the product feed: with celery, the API's public origin (the models are "
        "published); with local, the URL that serves OUT",
    )
    batch.add_argument(
        "--overwrite", action="store_true", help="run every product again, even those done"
    )
    batch.add_argument(
        "--keep-work", action="store_true", help="keep each product's checkpoints (OUT/SKU/work)"
    )
    batch.set_defaults(handler=_batch)

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

    recon_cli.set_log_levels(args.verbose, quiet_level=logging.INFO)
    serve(host=args.host, port=args.port, threads=args.threads, worker=not args.no_worker)
    return 0


def _worker(args: argparse.Namespace) -> int:
    from api.queue import run_worker, settings_from_env

    settings = settings_from_env()
    if not settings.broker_url:
        console.print(
            "[bold red]error:[/] no broker: set RECON_BROKER_URL (e.g. redis://localhost:6379/0)",
            highlight=False,
        )
        return 2
    run_worker(
        settings,
        concurrency=args.concurrency or settings.worker_concurrency,
        hostname=args.hostname,
        loglevel="DEBUG" if args.verbose else "INFO",
    )
    return 0


def _batch(args: argparse.Namespace) -> int:
    from recon import batch

    products = batch.read_catalogue(args.catalogue)
    options = batch.BatchOptions(
        preset=args.preset,
        jobs=max(1, args.jobs),
        overwrite=args.overwrite,
        server_url=args.server_url,
        keep_work=args.keep_work,
    )
    if args.engine == "celery":
        from api.batch import CeleryEngine
        from api.queue import settings_from_env

        engine = CeleryEngine(settings_from_env(), args.merchant)
    else:
        engine = batch.LocalEngine()
    err = Console(stderr=True, soft_wrap=True)  # soft wrap: messages stay greppable
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[message]}"),
        console=err,
    ) as bar:
        task = bar.add_task(f"{len(products)} products", total=1.0, message="")

        def report(_stage: str, fraction: float, message: str) -> None:
            bar.update(task, completed=fraction, message=message[:60])

        rows = batch.run_batch(products, args.out, engine, options, progress=report)
    failed = [row for row in rows if row["status"] == "failed"]
    skipped = sum(1 for row in rows if row.get("skipped"))
    for row in failed:
        err.print(f"[bold red]failed:[/] {row['sku']}: {row['error']}", highlight=False)
    err.print(
        f"{len(rows) - len(failed)} of {len(rows)} products succeeded ({skipped} done earlier, "
        f"skipped), {len(failed)} failed; summary: {args.out / batch.SUMMARY_CSV}",
        highlight=False,
    )
    return 1 if failed else 0


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
    from sqlalchemy import select

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
    from sqlalchemy import select

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
