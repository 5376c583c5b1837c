"""Benchmark the measuring tools themselves: synthetic captures of every model and their scoring.

For each model (the shared product models and the project's procedural ones) this renders a
24-view 960 px capture, scores the truth against itself with `recon evaluate` (it must come out
perfect: F = 1, zero pose error), and records wall time and peak memory of both steps. Each step
runs in its own process so its peak memory is its own. Writes ``OUT/synth_and_evaluate.json`` and a
contact sheet ``OUT/captures.png``.

    python benchmarks/synth_and_evaluate.py --out out/bench [--shared ../shared/data] [--size 960]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PROCEDURAL = ("cereal_box", "bottle", "mug")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench")
    parser.add_argument(
        "--shared",
        type=Path,
        default=Path(os.environ.get("RECON_SHARED_DATA", REPO.parent / "shared" / "data")),
    )
    parser.add_argument("--size", type=int, default=960)
    parser.add_argument("--views", type=int, default=24)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    models: list[tuple[str, str]] = [(name, name) for name in PROCEDURAL]
    if (args.shared / "models").is_dir():
        folders = sorted(p for p in (args.shared / "models").iterdir() if p.is_dir())
        models += [(folder.name, str(folder)) for folder in folders]
    else:
        print(f"shared data not found at {args.shared}: benchmarking procedural products only")

    results = []
    for name, model in models:
        for background in ("plain", "table"):
            capture = args.out / "captures" / f"{name}_{background}"
            synth_run = run_timed(
                [
                    sys.executable,
                    "-m",
                    "recon.cli",
                    "synth",
                    model,
                    str(capture),
                    "--overwrite",
                    "--views",
                    str(args.views),
                    "--size",
                    str(args.size),
                    "--background",
                    background,
                ]
            )
            entry = {"model": name, "background": background, "synth": synth_run}
            if synth_run["returncode"] == 0:
                perfect = make_perfect_reconstruction(capture, args.out / "perfect" / capture.name)
                scores_path = perfect / "scores.json"
                entry["evaluate"] = run_timed(
                    [
                        sys.executable,
                        "-m",
                        "recon.cli",
                        "evaluate",
                        str(capture),
                        str(perfect),
                        "--json",
                        str(scores_path),
                        "--no-texture",  # the stand-in model is untextured
                    ]
                )
                if scores_path.exists():
                    scores = json.loads(scores_path.read_text())
                    entry["truth_vs_itself"] = {
                        "f_score": scores["geometry"]["f_score"],
                        "rotation_error_deg_max": scores["pose"]["rotation_error_deg"]["max"],
                        "center_error_pct_max": scores["pose"]["center_error_pct"]["max"],
                        "seen_fraction": scores["geometry"]["seen_fraction"],
                        # of that, the share two photos or more see (what stereo can reach)
                        "seen_twice_fraction": scores["geometry"]["seen_twice"]["fraction"],
                    }
                entry["capture_mb"] = folder_mb(capture)
            results.append(entry)
            print(json.dumps(entry))

    summary = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "views": args.views,
        "size_px": args.size,
        "results": results,
    }
    (args.out / "synth_and_evaluate.json").write_text(json.dumps(summary, indent=1) + "\n")
    contact_sheet(args.out / "captures", args.out / "captures.png")
    failed = [
        r
        for r in results
        if r["synth"]["returncode"] != 0 or r.get("evaluate", {}).get("returncode", 1) != 0
    ]
    print(
        f"{len(results) - len(failed)} of {len(results)} captures rendered and scored; "
        f"results in {args.out / 'synth_and_evaluate.json'}"
    )
    return 1 if failed else 0


def run_timed(command: list[str]) -> dict:
    """Run a command; its wall time, peak resident memory and exit code."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    result = {
        "seconds": round(seconds, 2),
        "peak_memory_mb": round(usage.ru_maxrss / 1024, 1),
        "returncode": os.waitstatus_to_exitcode(status),
    }
    if result["returncode"] != 0:
        result["stderr_tail"] = stderr[-2000:]
    return result


def make_perfect_reconstruction(capture: Path, out: Path) -> Path:
    """An output folder holding the truth itself: truth cameras and the truth surface as GLB."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    cameras = json.loads((capture / "truth" / "cameras.json").read_text())
    (out / "report.json").write_text(json.dumps({"version": 1, "cameras": cameras["cameras"]}))
    trimesh.load(capture / "truth" / "mesh.ply", process=False).export(out / "model.glb")
    return out


def folder_mb(folder: Path) -> float:
    return round(sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 2)


def contact_sheet(captures: Path, path: Path, tile: int = 192) -> None:
    """The first photo of every capture in a grid, so a person can look at them all at once."""
    photos = sorted(captures.glob("*/images/img_001.jpg"))
    if not photos:
        return
    columns = 6
    rows = int(np.ceil(len(photos) / columns))
    sheet = Image.new("RGB", (columns * tile, rows * tile), "white")
    for index, photo in enumerate(photos):
        image = Image.open(photo)
        image.thumbnail((tile, tile))
        sheet.paste(image, ((index % columns) * tile, (index // columns) * tile))
    sheet.save(path)


if __name__ == "__main__":
    sys.exit(main())
