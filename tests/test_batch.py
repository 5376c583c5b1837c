"""`recon batch`: catalogues read from folders and CSVs, products that fail without stopping the
others, summaries and feeds, and re-runs that skip what is done."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from api.process import recon_command
from recon import batch
from recon.batch import BatchOptions, Outcome, Product
from recon.errors import InputError
from recon.workspace import Workspace
from tests.conftest import SAMPLE_CAPTURES_DIR


def test_a_catalogue_folder_has_one_product_per_folder_zip_or_video(tmp_path) -> None:
    (tmp_path / "MUG-1").mkdir()
    (tmp_path / "BOX-2.zip").write_bytes(b"PK")
    (tmp_path / "CAN 3.mp4").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("not a product")
    (tmp_path / ".cache").mkdir()
    products = batch.read_catalogue(tmp_path)
    assert [(p.sku, p.input_path.name) for p in products] == [
        ("BOX-2", "BOX-2.zip"),
        ("CAN 3", "CAN 3.mp4"),
        ("MUG-1", "MUG-1"),
    ]
    assert products[1].folder_name == "CAN_3"


def test_a_catalogue_csv_gives_paths_relative_to_it_and_known_sizes(tmp_path) -> None:
    (tmp_path / "catalogue.csv").write_text(
        "SKU,path,height_m,name,price\nA-1,photos/a,0.25,Mug,9.99\n,,,,\nB-2,/abs/b.zip,,,\n"
    )
    a, b = batch.read_catalogue(tmp_path / "catalogue.csv")
    assert a == Product(
        sku="A-1", input_path=tmp_path / "photos" / "a", dimensions_m={"height": 0.25}, name="Mug"
    )
    assert b.input_path == Path("/abs/b.zip")
    assert b.dimensions_m == {}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("sku,file\nA,a\n", "needs the columns sku and path"),
        ("sku,path\nA,\n", "line 2: every product needs a sku and a path"),
        ("sku,path,height_m\nA,a,tall\n", "line 2: height_m must be a length in metres"),
        ("sku,path\nA/1,a\nA_1,b\n", "would share the folder"),
        ("sku,path\n", "lists no products"),
    ],
)
def test_a_bad_catalogue_csv_is_refused_with_the_line(tmp_path, text, why) -> None:
    (tmp_path / "c.csv").write_text(text)
    with pytest.raises(InputError, match=why):
        batch.read_catalogue(tmp_path / "c.csv")


class FakeEngine:
    """Pretends to reconstruct: writes a report (or fails the SKUs in `fail`)."""

    name = "fake"

    def __init__(self, fail: set[str] = frozenset()) -> None:
        self.fail = fail
        self.ran: list[str] = []

    def __call__(self, products, out_dir, options, *, previous, progress, started, done) -> None:
        for product in products:
            self.ran.append(product.sku)
            progress(product.sku, 0.5, "depth")
            if product.sku in self.fail:
                done(Outcome(product.sku, error="only 2 of 24 photos overlap", seconds=1.0))
                continue
            workspace = Workspace(out_dir / product.folder_name)
            workspace.out_dir.mkdir(parents=True, exist_ok=True)
            workspace.model_path.write_bytes(b"glTF" + bytes(96))
            workspace.report_path.write_text(
                json.dumps(
                    {
                        "units": "metre",
                        "warnings": ["dim light"],
                        "images": {"registered": 23, "total": 24},
                        "mesh": {"faces": 29999, "bbox_m": [0.1, 0.3, 0.07]},
                    }
                )
            )
            done(Outcome(product.sku, seconds=2.0))


def test_a_batch_records_each_product_and_skips_the_done_ones_next_time(tmp_path) -> None:
    products = [Product(sku=s, input_path=tmp_path / s) for s in ("A", "B", "C")]
    options = BatchOptions(preset="preview", server_url="https://cdn.example/models/")
    seen = []
    engine = FakeEngine(fail={"B"})
    rows = batch.run_batch(
        products, tmp_path / "out", engine, options, progress=lambda *event: seen.append(event)
    )
    assert [(r["sku"], r["status"]) for r in rows] == [
        ("A", "succeeded"),
        ("B", "failed"),
        ("C", "succeeded"),
    ]
    assert rows[1]["error"] == "only 2 of 24 photos overlap"
    assert rows[0]["registered_images"] == 23
    assert rows[0]["glb_bytes"] == 100
    assert rows[0]["link"] == "https://cdn.example/models/A/model.glb"
    fractions = [fraction for _stage, fraction, _message in seen]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0

    out = tmp_path / "out"
    with (out / "summary.csv").open() as stream:
        sheet = list(csv.DictReader(stream))
    assert [row["status"] for row in sheet] == ["succeeded", "failed", "succeeded"]
    assert sheet[0]["bbox_m"] == "0.1 x 0.3 x 0.07"
    assert sheet[0]["warnings"] == "dim light"
    assert (out / "product_feed.csv").read_text().splitlines() == [
        "id,virtual_model_link",
        "A,https://cdn.example/models/A/model.glb",
        "C,https://cdn.example/models/C/model.glb",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"] == {"succeeded": 2, "failed": 1, "running": 0, "skipped": 0}

    again = FakeEngine()
    rows = batch.run_batch(products, out, again, options)
    assert again.ran == ["B"]  # failures are retried; the done ones skipped
    assert [r["skipped"] for r in rows] == [True, False, True]
    assert {r["status"] for r in rows} == {"succeeded"}
    # Another preset is another product: everything runs again.
    third = FakeEngine()
    batch.run_batch(products, out, third, BatchOptions(preset="standard"))
    assert third.ran == ["A", "B", "C"]


def test_recon_batch_runs_a_folder_with_a_broken_product_and_resumes(tmp_path) -> None:
    catalogue = tmp_path / "catalogue"
    catalogue.mkdir()
    shutil.copytree(SAMPLE_CAPTURES_DIR / "cereal_box" / "images", catalogue / "cereal-box")
    shutil.copytree(SAMPLE_CAPTURES_DIR / "mug" / "images", catalogue / "mug")
    (catalogue / "broken.zip").write_bytes(b"PK\x03\x04 this zip was cut short")
    out = tmp_path / "out"
    command = recon_command(
        "batch", str(catalogue), "-o", str(out), "--preset", "preview", "--jobs", "2"
    )
    first = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert first.returncode == 1, first.stderr  # one product failed
    rows = {r["sku"]: r for r in json.loads((out / "summary.json").read_text())["products"]}
    assert rows["cereal-box"]["status"] == rows["mug"]["status"] == "succeeded"
    assert rows["broken"]["status"] == "failed"
    assert "not a readable zip" in rows["broken"]["error"]
    assert "broken: " in first.stderr
    for sku in ("cereal-box", "mug"):
        assert rows[sku]["registered_images"] == 24
        assert rows[sku]["faces"] > 5000
        assert (out / sku / "model.glb").stat().st_size == rows[sku]["glb_bytes"]
        assert not (out / sku / "work").exists()  # checkpoints go once a product is done

    started = time.monotonic()
    second = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert second.returncode == 1
    assert time.monotonic() - started < 60  # nothing reconstructed again
    again = {r["sku"]: r for r in json.loads((out / "summary.json").read_text())["products"]}
    assert again["cereal-box"]["skipped"]
    assert again["mug"]["skipped"]
    assert again["cereal-box"]["faces"] == rows["cereal-box"]["faces"]
    assert not again["broken"]["skipped"]
    assert again["broken"]["status"] == "failed"
    assert "2 done earlier" in second.stderr
