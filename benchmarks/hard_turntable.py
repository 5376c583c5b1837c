"""Benchmark turntable captures (issue 4): a tripod camera, the product turning on a disc before a
still, patterned wall and table.

- cereal_box (procedural) and ycb_006_mustard_bottle (shared models), `recon synth --background
  turntable`, 24 views at 960 px (two tripod heights), `standard` preset: registered share,
  median rotation error, F@1 % / F@0.5 %, accuracy@1 %, PSNR, the share of the model outside the
  product's box (a disc or room left in the asset), what report.json says it detected, and the
  stage timings. Targets: the textured-product bars of benchmarks/reconstruction.py (all views
  registered, rotation error ≤ 0.1°, F@1 % ≥ 0.97, F@0.5 % ≥ 0.85, PSNR ≥ 25 dB) and at most
  0.5 % of the model's surface more than 1 % of the diagonal outside the product's box.
- The first product again with the turntable masking turned off (SfmOptions.turntable.detect),
  to show what the still room does to SfM without it.

Writes ``OUT/hard_turntable.json``.

    python benchmarks/hard_turntable.py --out out/bench/hard_turntable
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reconstruction import REPO, SHARED_DATA, recon, reconstruct_and_score
from reconstruction import TARGETS as RECONSTRUCTION_TARGETS

PRODUCTS = ("cereal_box", "ycb_006_mustard_bottle")
# the textured-product bars (benchmarks/reconstruction.py), which issue 4 asks of a turntable
TARGETS = {k: RECONSTRUCTION_TARGETS[k] for k in (
    "rotation_error_deg", "f_score_1", "f_score_0.5", "psnr_db", "outside_truth_box"
)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench" / "hard_turntable")
    parser.add_argument(
        "--shared",
        type=Path,
        default=SHARED_DATA,
    )
    parser.add_argument("--products", nargs="*", default=list(PRODUCTS))
    parser.add_argument("--views", type=int, default=24)
    parser.add_argument("--size", type=int, default=960)
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--skip-unmasked", action="store_true", help="skip the run without masks")
    # internal: one reconstruction with the turntable masking off (run in its own process)
    parser.add_argument("--unmasked-run", nargs=3, metavar=("IMAGES", "OUT", "PRESET"))
    args = parser.parse_args()
    if args.unmasked_run:
        return reconstruct_unmasked(*args.unmasked_run)
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"targets": TARGETS, "runs": []}
    for product in args.products:
        capture = synthesise(product, args)
        entry = reconstruct_and_score(capture, args.out / "runs" / capture.name, args.preset)
        entry.update(product=product, masking="auto", summary=summary(entry))
        entry["detected"] = detected(args.out / "runs" / capture.name)
        entry["checks"] = checks(entry)
        results["runs"].append(entry)
        print(json.dumps({k: entry[k] for k in ("product", "masking", "summary", "checks")}))
    if not args.skip_unmasked and args.products:
        capture = synthesise(args.products[0], args)
        out = args.out / "runs" / f"{capture.name}_unmasked"
        entry = {"product": args.products[0], "masking": "off", "run": unmasked(capture, out, args)}
        if entry["run"]["returncode"] == 0:
            scores_path = out / "scores.json"
            scored = recon(["evaluate", str(capture), str(out), "--json", str(scores_path)])
            if scored["returncode"] == 0:
                entry["scores"] = json.loads(scores_path.read_text())
            entry["detected"] = detected(out)
        entry["summary"] = summary(entry)
        results["runs"].append(entry)
        print(json.dumps({k: entry[k] for k in ("product", "masking", "summary")}))
    path = args.out / "hard_turntable.json"
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results in {path}")
    return 0


def synthesise(product: str, args: argparse.Namespace) -> Path:
    """The turntable capture of `product` (a procedural name or a shared model), made once."""
    capture = args.out / "captures" / f"{product}_turntable_{args.views}x{args.size}"
    model = args.shared / "models" / product
    if not (capture / "truth" / "cameras.json").exists():
        made = recon(["synth", str(model) if model.exists() else product, str(capture),
                      "--views", str(args.views), "--size", str(args.size),
                      "--background", "turntable", "--overwrite"])  # fmt: skip
        if made["returncode"] != 0:
            raise SystemExit(f"synth {product} failed: {made.get('error')}")
    return capture


def unmasked(capture: Path, out: Path, args: argparse.Namespace) -> dict:
    """This script's --unmasked-run in its own process: wall time, exit code, error text."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, __file__, "--unmasked-run", str(capture / "images"), str(out),
         args.preset],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False,
    )  # fmt: skip
    result = {"seconds": round(time.perf_counter() - start, 2), "returncode": done.returncode}
    if done.returncode != 0:
        result["error"] = done.stderr[-1500:]
    return result


def reconstruct_unmasked(images: str, out: str, preset: str) -> int:
    """Reconstruct with the turntable's still background left in (masking off)."""
    import dataclasses

    sys.path.insert(0, str(REPO))
    from recon.pipeline import ReconOptions, reconstruct
    from recon.turntable import TurntableOptions

    options = ReconOptions.for_preset(preset)
    off = dataclasses.replace(options.sfm, turntable=TurntableOptions(detect=False))
    reconstruct(Path(images), Path(out), dataclasses.replace(options, sfm=off), overwrite=True)
    return 0


def detected(out: Path) -> dict | None:
    """report.json's capture.turntable record (what was detected, and the message)."""
    report_path = out / "report.json"
    if not report_path.exists():
        return None
    report = json.loads(report_path.read_text())
    return {"status": report.get("status"), **report.get("capture", {}).get("turntable", {})}


def summary(entry: dict) -> dict:
    """The headline figures of a run (None where it failed before them)."""
    scores = entry.get("scores", {})
    if entry["run"]["returncode"] != 0 or "pose" not in scores:
        error = entry["run"].get("error", "").strip().splitlines()
        return {"failed": error[-1] if error else "no scores"}
    geometry = scores["geometry"]
    return {
        "registered_share": scores["images"]["registered_fraction"],
        "rotation_error_deg_median": round(scores["pose"]["rotation_error_deg"]["median"], 4),
        "f_score_1": round(geometry["f_score"]["1"], 4),
        "f_score_0.5": round(geometry["f_score"]["0.5"], 4),
        "accuracy_1": round(geometry["accuracy"]["1"], 4),
        "outside_truth_box": round(geometry["outside_truth_box"]["1"], 4),
        "psnr_db": scores.get("texture", {}).get("psnr_db"),
        "seconds": entry["run"]["seconds"],
        "sfm_s": entry.get("stages_s", {}).get("sfm"),
    }


def checks(entry: dict) -> dict:
    figures = entry["summary"]
    if "failed" in figures:
        return {"reconstructed and scored": False}
    return {
        "all views registered": figures["registered_share"] == 1.0,
        f"rotation error <= {TARGETS['rotation_error_deg']} deg":
            figures["rotation_error_deg_median"] <= TARGETS["rotation_error_deg"],
        f"F@1% >= {TARGETS['f_score_1']}": figures["f_score_1"] >= TARGETS["f_score_1"],
        f"F@0.5% >= {TARGETS['f_score_0.5']}": figures["f_score_0.5"] >= TARGETS["f_score_0.5"],
        f"PSNR >= {TARGETS['psnr_db']} dB": (figures["psnr_db"] or 0) >= TARGETS["psnr_db"],
        f"no disc or room (outside the product's box <= {TARGETS['outside_truth_box']})":
            figures["outside_truth_box"] <= TARGETS["outside_truth_box"],
        "turntable detected": bool((entry.get("detected") or {}).get("detected")),
    }  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
