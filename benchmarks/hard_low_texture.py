"""Benchmark the low-texture products of issue 4: a plain white mug and a fabric armchair.

- white_mug (the project's mug glazed plain white, no print) and kaolin_armchair (shared models:
  plain orange fabric on a white frame), 24 views at 960 px, plain and table backgrounds,
  `standard` preset: F@1 % ≥ 0.85 and a closed (watertight) mesh — or, where structure-from-
  motion has nothing to match (a white mug on plain paper), a clear failure.
- The project's printed mug (speckled inside): a container whose floor no photo of the ring
  sees. F@1 % ≥ 0.85, closed, and the fidelity self-check within 2 dB of the truth's PSNR
  (a false floor inside it once read 2.6 dB apart).
- Controls: the printed cereal box and the mustard bottle on plain paper, whose F@1 % the
  silhouette changes must keep.

Writes ``OUT/hard_low_texture.json`` (F@0.5 % and F@1 %, watertight, stage timings) and
``OUT/low_texture.png`` (each result rendered beside the truth).

    python benchmarks/hard_low_texture.py --out out/bench/hard_low_texture
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import trimesh

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reconstruction import REPO, SHARED_DATA, contact_sheet, recon, reconstruct_and_score

TARGETS = {"f_score_1": 0.85, "fidelity_apart_db": 2.0}
CASES = (  # (product, background, role)
    ("white_mug", "plain", "low texture"),
    ("white_mug", "table", "low texture"),
    ("kaolin_armchair", "plain", "low texture"),
    ("kaolin_armchair", "table", "low texture"),
    ("mug", "plain", "container"),
    ("mug", "table", "container"),
    ("cereal_box", "plain", "control"),
    ("ycb_006_mustard_bottle", "plain", "control"),
)
PROCEDURAL = ("white_mug", "mug", "cereal_box")
# Where the issue accepts a clear failure: a white mug on plain paper leaves SfM nothing to
# match. What such a run says (sfm's reasons) makes the failure clear.
MAY_FAIL = {("white_mug", "plain")}
CLEAR_FAILURES = ("photo", "texture", "overlap", "match", "place")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench" / "hard_low_texture")
    parser.add_argument(
        "--shared",
        type=Path,
        default=SHARED_DATA,
    )
    parser.add_argument("--views", type=int, default=24)
    parser.add_argument("--size", type=int, default=960)
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--cases", nargs="*", default=None, help="product_background names")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "hard_low_texture.json"
    results = []
    for product, background, role in CASES:
        name = f"{product}_{background}"
        if args.cases is not None and name not in args.cases:
            continue
        model = product if product in PROCEDURAL else str(args.shared / "models" / product)
        if product not in PROCEDURAL and not Path(model).is_dir():
            print(f"{name}: skipped, no {model} (set RECON_SHARED_DATA)")
            continue
        capture = args.out / "captures" / f"{name}_{args.views}x{args.size}"
        synth = None
        if not (capture / "truth" / "cameras.json").exists():
            synth = recon(["synth", model, str(capture), "--views", str(args.views), "--size",
                           str(args.size), "--background", background, "--overwrite"])  # fmt: skip
        run_dir = args.out / "runs" / capture.name
        entry = reconstruct_and_score(capture, run_dir, args.preset)
        entry.update(product=product, background=background, role=role, synth=synth)
        entry["watertight"] = watertight(run_dir / "model.glb")
        # The phone tiers (model_50k.glb, ...) are simplified afresh: closed too?
        entry["tiers_watertight"] = {
            path.name: watertight(path) for path in sorted(run_dir.glob("model_*k.glb"))
        }
        entry["outcome"], entry["acceptable"] = outcome(entry)
        results.append(entry)
        print(json.dumps({"case": name, **{k: entry.get(k) for k in ("outcome", "acceptable")}}))
        results_path.write_text(json.dumps(results, indent=1) + "\n")
    contact_sheet(args.out / "runs", args.out / "low_texture.png")
    print(f"results in {results_path}")
    return 0


def watertight(model_path: Path) -> bool | None:
    """Whether the model's surface is closed (UV seams welded), None without a model."""
    if not model_path.exists():
        return None
    mesh = trimesh.load(model_path, force="mesh", process=False)
    welded = trimesh.Trimesh(mesh.vertices, mesh.faces, process=False)
    welded.merge_vertices()
    return bool(welded.is_watertight)


def outcome(entry: dict) -> tuple[str, bool]:
    """(what happened, whether the issue accepts it)."""
    run = entry["run"]
    if run["returncode"] != 0:
        error = run.get("error", "")
        clear = any(word in error for word in CLEAR_FAILURES)
        last = error.strip().splitlines()[-1] if error.strip() else "no message"
        allowed = clear and (entry["product"], entry["background"]) in MAY_FAIL
        return ("clear failure: " if clear else "failed: ") + last[:200], allowed
    geometry = entry.get("scores", {}).get("geometry")
    if not geometry:
        return "succeeded but could not be scored", False
    f1, f05 = geometry["f_score"]["1"], geometry["f_score"]["0.5"]
    summary = f"F@1 % {f1:.3f}, F@0.5 % {f05:.3f}, watertight {entry['watertight']}"
    if entry["role"] == "control":
        return summary, True  # judged against the same capture before the change
    acceptable = f1 >= TARGETS["f_score_1"] and bool(entry["watertight"])
    if entry["role"] == "container":
        apart = entry.get("fidelity", {}).get("minus_truth_psnr_db")
        summary += f", fidelity check {apart:+.2f} dB of the truth's" if apart is not None else ""
        acceptable &= apart is not None and abs(apart) <= TARGETS["fidelity_apart_db"]
    return summary, acceptable


if __name__ == "__main__":
    sys.exit(main())
