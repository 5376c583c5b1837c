"""Catalogue batches: many products reconstructed in parallel, a summary, and a product feed.

A catalogue is a folder with one entry per product (a sub-folder of photos, a .zip, or a video;
the SKU is its name) or a CSV (`sku,path,height_m,width_m,depth_m,name`; paths relative to the
CSV). Each product gets OUT/<sku>/ (model.glb, model.usdz, poster.webp, report.json). The batch
writes OUT/summary.json and OUT/summary.csv after every product, so a stopped batch resumes:
products that succeeded with the same input and options are skipped, the others run again.

How products run is an `Engine`: `LocalEngine` runs `--jobs N` processes on this machine; the
service adds a Celery engine (api/batch.py) that sends them to `recon worker` machines.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import multiprocessing
import queue
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from recon import pipeline
from recon.capture import VIDEO_SUFFIXES
from recon.errors import InputError, ReconError
from recon.progress import ProgressCallback
from recon.workspace import Workspace, write_json_atomic

logger = logging.getLogger(__name__)

SUMMARY_JSON = "summary.json"
SUMMARY_CSV = "summary.csv"
# Google Merchant Center's supplemental-feed columns: `id` is the item id (the SKU here) and
# `virtual_model_link` the product's 3D model (a GLB URL).
FEED_CSV = "product_feed.csv"
DIMENSIONS = ("height", "width", "depth")
SUMMARY_COLUMNS = (
    "sku", "status", "skipped", "input", "preset", "registered_images", "total_images", "faces",
    "units", "bbox_m", "glb_bytes", "seconds", "warnings", "error", "model", "link", "job_id",
)  # fmt: skip


@dataclass(frozen=True, kw_only=True)
class Product:
    """One catalogue line: what to reconstruct and what is known of it."""

    sku: str
    input_path: Path  # a folder of photos, a .zip or a video
    dimensions_m: dict[str, float] = field(default_factory=dict)  # height/width/depth, metres
    name: str | None = None

    @property
    def folder_name(self) -> str:
        """The product's folder under OUT: the SKU made safe for any file system."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.sku).strip("._-") or "product"

    def signature(self, preset: str) -> dict:
        """What makes a finished product still current (a changed one runs again)."""
        return {
            "input": str(self.input_path.resolve()),
            "preset": preset,
            "dimensions_m": dict(sorted(self.dimensions_m.items())),
        }


@dataclass(frozen=True, kw_only=True)
class BatchOptions:
    preset: str = "standard"  # detail level of every product (recon.pipeline.Preset)
    jobs: int = 1  # products reconstructed at once by the local engine (each uses every core)
    overwrite: bool = False  # run every product again, even those already done
    server_url: str | None = None  # where the models are served: makes the feed's links
    keep_work: bool = False  # keep each succeeded product's checkpoints (OUT/<sku>/work)


@dataclass(frozen=True)
class Outcome:
    """How one product's run ended, as an engine reports it."""

    sku: str
    error: str | None = None  # None: succeeded, OUT/<sku>/report.json is written
    seconds: float = 0.0
    link: str | None = None  # the published GLB's URL, when the engine publishes
    job_id: str | None = None


class Engine(Protocol):
    """Runs `products` into OUT/<folder_name>; calls `progress(sku, fraction, message)` as they
    go, `started(sku, job_id)` when a product is handed to a remote worker, and `done(outcome)`
    once per product. `previous` holds the last summary's rows by SKU (to follow jobs already
    submitted by a batch that was stopped)."""

    name: str

    def __call__(
        self,
        products: Sequence[Product],
        out_dir: Path,
        options: BatchOptions,
        *,
        previous: dict[str, dict],
        progress: Callable[[str, float, str], None],
        started: Callable[[str, str], None],
        done: Callable[[Outcome], None],
    ) -> None: ...


# -- the catalogue ------------------------------------------------------------------------------
def read_catalogue(path: Path | str) -> list[Product]:
    """The products of a catalogue folder or CSV file (see the module docstring)."""
    path = Path(path)
    if not path.exists():
        raise InputError(
            f"{path} does not exist: give a folder with one entry per product, or a CSV"
        )
    products = _read_csv(path) if path.is_file() else _read_folder(path)
    if not products:
        raise InputError(
            f"{path} holds no products: give one sub-folder of photos, .zip or video per product"
            if path.is_dir()
            else f"{path} lists no products: give a CSV with columns sku,path"
        )
    seen: dict[str, str] = {}
    for product in products:
        key = product.folder_name.lower()
        if key in seen:
            raise InputError(
                f"SKUs {seen[key]!r} and {product.sku!r} would share the folder "
                f"{product.folder_name!r}: give every product its own SKU"
            )
        seen[key] = product.sku
    return products


def _read_folder(folder: Path) -> list[Product]:
    products = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir() or entry.suffix.lower() in {".zip", *VIDEO_SUFFIXES}:
            products.append(
                Product(sku=entry.stem if entry.is_file() else entry.name, input_path=entry)
            )
        else:
            logger.info("catalogue: %s is not a folder, zip or video; ignored", entry)
    return products


def _read_csv(csv_path: Path) -> list[Product]:
    if csv_path.suffix.lower() != ".csv":
        raise InputError(f"{csv_path} is a file but not a .csv: give a catalogue folder or a CSV")
    with csv_path.open(newline="", encoding="utf-8-sig") as stream:
        reader = csv.DictReader(stream)
        columns = {name.strip().lower() for name in reader.fieldnames or []}
        if not {"sku", "path"} <= columns:
            raise InputError(
                f"{csv_path} needs the columns sku and path (found: {', '.join(sorted(columns))})"
            )
        products = []
        for line, raw in enumerate(reader, start=2):
            row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items()}
            if not any(row.values()):
                continue
            if not row["sku"] or not row["path"]:
                raise InputError(f"{csv_path} line {line}: every product needs a sku and a path")
            dimensions = {}
            for dimension in DIMENSIONS:
                if text := row.get(f"{dimension}_m", ""):
                    try:
                        value = float(text)
                    except ValueError:
                        value = float("nan")
                    if not 0.001 <= value <= 100:
                        raise InputError(
                            f"{csv_path} line {line}: {dimension}_m must be a length in metres "
                            f"(0.001–100), not {text!r}"
                        )
                    dimensions[dimension] = value
            input_path = (csv_path.parent / row["path"]).expanduser()
            products.append(
                Product(
                    sku=row["sku"],
                    input_path=input_path,
                    dimensions_m=dimensions,
                    name=row.get("name") or None,
                )
            )
    return products


# -- the batch ----------------------------------------------------------------------------------
def run_batch(
    products: Sequence[Product],
    out_dir: Path | str,
    engine: Engine,
    options: BatchOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> list[dict]:
    """Run every product not already done, each failure recorded without stopping the others;
    returns the summary rows (one per product, in catalogue order)."""
    options = options or BatchOptions()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    previous = {row["sku"]: row for row in _previous_rows(out_dir)}
    rows: dict[str, dict] = {}
    todo = []
    for product in products:
        before = previous.get(product.sku)
        report_path = Workspace(out_dir / product.folder_name).report_path
        if (
            not options.overwrite
            and before is not None
            and before.get("status") == "succeeded"
            and before.get("signature") == product.signature(options.preset)
            and report_path.exists()
        ):
            rows[product.sku] = {**before, "skipped": True}
        else:
            rows[product.sku] = _pending_row(product, options)
            todo.append(product)
    fractions = {product.sku: 0.0 for product in todo}
    skipped = len(products) - len(todo)
    by_sku = {product.sku: product for product in products}

    def tell(message: str) -> None:
        if progress is not None:
            finished = sum(1 for p in todo if rows[p.sku]["status"] in ("succeeded", "failed"))
            running = sum(fractions[p.sku] for p in todo if rows[p.sku]["status"] == "running")
            total = max(len(todo), 1)
            progress("batch", (finished + running) / total, message)

    def on_progress(sku: str, fraction: float, message: str) -> None:
        fractions[sku] = max(fractions[sku], min(max(fraction, 0.0), 1.0))
        tell(f"{sku}: {message}")

    def on_started(sku: str, job_id: str) -> None:
        rows[sku]["job_id"] = job_id
        _write_summary(out_dir, products, rows, engine.name, options)

    def on_done(outcome: Outcome) -> None:
        product = by_sku[outcome.sku]
        rows[outcome.sku] = _finished_row(product, out_dir, options, outcome)
        if outcome.error is None and not options.keep_work:
            shutil.rmtree(Workspace(out_dir / product.folder_name).work_dir, ignore_errors=True)
        _write_summary(out_dir, products, rows, engine.name, options)
        fractions[outcome.sku] = 1.0
        tell(f"{outcome.sku}: {'done' if outcome.error is None else 'failed'}")

    _write_summary(out_dir, products, rows, engine.name, options)
    if skipped:
        logger.info("%d of %d products already done; skipped", skipped, len(products))
    tell(f"{len(todo)} to do, {skipped} done before")
    if todo:
        engine(
            todo,
            out_dir,
            options,
            previous=previous,
            progress=on_progress,
            started=on_started,
            done=on_done,
        )
    _write_summary(out_dir, products, rows, engine.name, options)
    return [rows[product.sku] for product in products]


def _pending_row(product: Product, options: BatchOptions) -> dict:
    return {
        "sku": product.sku,
        "status": "running",
        "skipped": False,
        "input": str(product.input_path),
        "preset": options.preset,
        "signature": product.signature(options.preset),
    }


def _finished_row(product: Product, out_dir: Path, options: BatchOptions, outcome: Outcome) -> dict:
    row: dict[str, Any] = {
        **_pending_row(product, options),
        "status": "failed" if outcome.error else "succeeded",
        "seconds": round(outcome.seconds, 1),
        "error": outcome.error,
        "job_id": outcome.job_id,
        "warnings": [],
    }
    if outcome.error is not None:
        return row
    workspace = Workspace(out_dir / product.folder_name)
    report = _read_json(workspace.report_path)
    images, mesh = report.get("images", {}), report.get("mesh", {})
    link = outcome.link
    if link is None and options.server_url:  # OUT itself is served from server_url
        link = f"{options.server_url.rstrip('/')}/{product.folder_name}/model.glb"
    row.update(
        registered_images=images.get("registered"),
        total_images=images.get("total"),
        faces=mesh.get("faces"),
        units=report.get("units"),
        bbox_m=mesh.get("bbox_m"),
        glb_bytes=workspace.model_path.stat().st_size,
        warnings=list(report.get("warnings", [])),
        model=str(workspace.model_path.relative_to(out_dir)),
        link=link,
    )
    return row


def _previous_rows(out_dir: Path) -> list[dict]:
    summary = _read_json(out_dir / SUMMARY_JSON)
    return [row for row in summary.get("products", []) if isinstance(row, dict) and "sku" in row]


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_summary(
    out_dir: Path,
    products: Sequence[Product],
    rows: dict[str, dict],
    engine: str,
    options: BatchOptions,
) -> None:
    """summary.json (everything), summary.csv (a sheet) and the product feed, each replaced
    whole (a reader never sees half a file)."""
    ordered = [rows[product.sku] for product in products]
    counts = {
        status: sum(1 for r in ordered if r["status"] == status)
        for status in ("succeeded", "failed", "running")
    }
    counts["skipped"] = sum(1 for r in ordered if r.get("skipped"))
    write_json_atomic(
        out_dir / SUMMARY_JSON,
        {
            "version": 1,
            "engine": engine,
            "preset": options.preset,
            "counts": counts,
            "products": ordered,
        },
    )
    sheet = io.StringIO()
    writer = csv.DictWriter(sheet, SUMMARY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in ordered:
        writer.writerow({column: _cell(row.get(column)) for column in SUMMARY_COLUMNS})
    _write_text_atomic(out_dir / SUMMARY_CSV, sheet.getvalue())
    feed = io.StringIO()
    writer = csv.writer(feed, lineterminator="\n")
    writer.writerow(["id", "virtual_model_link"])
    for row in ordered:
        if row["status"] == "succeeded":
            writer.writerow([row["sku"], row.get("link") or ""])
    _write_text_atomic(out_dir / FEED_CSV, feed.getvalue())


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return (
            " x ".join(f"{v:g}" for v in value)
            if all(isinstance(v, int | float) for v in value)
            else "; ".join(map(str, value))
        )
    return str(value)


def _write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


# -- the local engine ---------------------------------------------------------------------------
class LocalEngine:
    """Products in `options.jobs` processes of this machine, one process per product (a crash
    or an out-of-memory kill takes down one product, not the batch)."""

    name = "local"

    def __call__(
        self,
        products: Sequence[Product],
        out_dir: Path,
        options: BatchOptions,
        *,
        previous: dict[str, dict],
        progress: Callable[[str, float, str], None],
        started: Callable[[str, str], None],
        done: Callable[[Outcome], None],
    ) -> None:
        # spawn: a fresh interpreter per product (the caller may hold threads and big modules)
        context = multiprocessing.get_context("spawn")
        events = context.Queue()
        waiting = list(products)
        running: dict[str, tuple[multiprocessing.process.BaseProcess, float]] = {}
        reported: set[str] = set()
        try:
            while waiting or running:
                while waiting and len(running) < max(1, options.jobs):
                    product = waiting.pop(0)
                    process = context.Process(
                        target=_reconstruct_product,
                        args=(product, out_dir / product.folder_name, options.preset, events),
                        name=f"recon-batch-{product.folder_name}",
                    )
                    process.start()
                    running[product.sku] = (process, time.monotonic())
                try:
                    kind, sku, payload = events.get(timeout=0.5)
                except queue.Empty:
                    kind = None
                if kind == "progress":
                    progress(sku, *payload)
                elif kind == "done":
                    process, began = running.pop(sku)
                    process.join()
                    reported.add(sku)
                    done(Outcome(sku, error=payload, seconds=time.monotonic() - began))
                for sku, (process, began) in list(running.items()):
                    if not process.is_alive() and events.empty():  # died without a word
                        running.pop(sku)
                        code = process.exitcode
                        why = f"signal {-code}" if code and code < 0 else f"exit code {code}"
                        done(
                            Outcome(
                                sku,
                                seconds=time.monotonic() - began,
                                error=(
                                    f"the process reconstructing it died ({why}); it may need more "
                                    "memory: try --jobs 1 or the preview preset"
                                ),
                            )
                        )
        finally:
            for process, _began in running.values():
                process.kill()
                process.join()


def _reconstruct_product(product: Product, out_dir: Path, preset: str, events: Any) -> None:
    """One product in its own process; reports ("progress", sku, (fraction, message)) events and
    one ("done", sku, error or None)."""
    last = [0.0]

    def report(stage: str, fraction: float, message: str) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5:
            last[0] = now
            overall = pipeline.overall_fraction(stage, fraction)
            events.put(("progress", product.sku, (overall, f"{stage} {message}")))

    error = None
    try:
        pipeline.reconstruct(
            product.input_path,
            out_dir,
            pipeline.ReconOptions.for_preset(preset).with_known_dimensions(product.dimensions_m),
            progress=report,
        )
    except ReconError as exc:
        error = str(exc)
    except Exception as exc:  # a bug: the summary gets a reason, the log the traceback
        logger.exception("product %s failed", product.sku)
        error = f"the reconstruction failed unexpectedly ({type(exc).__name__}: {exc})"
    events.put(("done", product.sku, error))
