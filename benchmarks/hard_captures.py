"""Benchmark the hard captures of issue 4: look-alike sides, and how faithful the self-check is.

- twin_box (the project's cereal box printed alike front/back and left/right), 24 views at 960 px,
  plain and table backgrounds, `standard` preset: either all views placed with rotation error
  ≤ 0.5° and F@1 % ≥ 0.90, or a clear failure naming the look-alike sides — never a wrong model
  reported as succeeded.
- Every successful run records the report's fidelity self-check (photos held out of texturing)
  beside the truth's novel-view PSNR (reconstruct_and_score), so the two can be compared.
- Dark and plain backdrops: the mustard bottle on black, the soup can in a white light box
  (shared models), 24 views at 960 px: all placed, rotation ≤ 0.1°, F@1 % ≥ 0.97, no backdrop.
- Many photos: the mustard bottle on a table in 72 views (three rings of 24, matched in capture
  order and a spread subsample, not every pair) must meet the same bars (the fold check once
  refused such a capture, placed right), and the twin_box on plain paper in 48 views must still
  be placed right or fail clearly.

Writes ``OUT/hard_captures.json``.

    python benchmarks/hard_captures.py --out out/bench/hard
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reconstruction import REPO, SHARED_DATA, recon, reconstruct_and_score
from reconstruction import TARGETS as RECONSTRUCTION_TARGETS

LOOKALIKE_TARGETS = {"rotation_error_deg": 0.5, "f_score_1": 0.90}
LOOKALIKE_FAILURE = "sides that look alike"
# Dark and plain backdrops: a textured product on black velvet and one in a white light box
# must meet the textured-product bars (issue 3's rotation bar is 0.1°).
BACKDROPS = [("ycb_006_mustard_bottle", "black"), ("ycb_005_tomato_soup_can", "white")]
BACKDROP_TARGETS = {"rotation_error_deg": 0.1, "f_score_1": 0.97}
# (product, background, views) of the many-photo captures held to the backdrop bars, and the
# look-alike capture's views when photographed densely.
DENSE = [("ycb_006_mustard_bottle", "table", 72)]
DENSE_LOOKALIKE_VIEWS = 48


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench" / "hard")
    parser.add_argument("--backgrounds", nargs="*", default=["plain", "table"])
    parser.add_argument("--views", type=int, default=24)
    parser.add_argument("--preset", default="standard")
    parser.add_argument(
        "--shared",
        type=Path,
        default=SHARED_DATA,
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = []
    lookalikes = [(background, args.views) for background in args.backgrounds]
    for background, views in [*lookalikes, ("plain", DENSE_LOOKALIKE_VIEWS)]:
        capture = args.out / "captures" / f"twin_box_{background}_{views}"
        if not (capture / "truth" / "cameras.json").exists():
            recon(["synth", "twin_box", str(capture), "--views", str(views), "--size", "960",
                   "--background", background, "--overwrite"])  # fmt: skip
        entry = reconstruct_and_score(capture, args.out / "runs" / capture.name, args.preset)
        entry.update(product="twin_box", background=background, views=views)
        entry["outcome"], entry["acceptable"] = lookalike_outcome(entry)
        results.append(entry)
        print(
            json.dumps({k: entry.get(k) for k in ("background", "views", "outcome", "acceptable")})
        )
    for model, background, views in [(m, b, 24) for m, b in BACKDROPS] + DENSE:
        name = f"{model}_{background}" + ("" if views == 24 else f"_{views}")
        capture = args.out / "captures" / name
        if not (capture / "truth" / "cameras.json").exists():
            recon(["synth", str(args.shared / "models" / model), str(capture),
                   "--views", str(views), "--size", "960", "--background", background,
                   "--overwrite"])  # fmt: skip
        entry = reconstruct_and_score(capture, args.out / "runs" / capture.name, args.preset)
        entry.update(product=model, background=background, views=views)
        entry["acceptable"] = backdrop_acceptable(entry.get("scores", {}))
        results.append(entry)
        print(
            json.dumps({k: entry.get(k) for k in ("product", "background", "views", "acceptable")})
        )
    (args.out / "hard_captures.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


def backdrop_acceptable(scores: dict) -> bool:
    if not scores.get("geometry"):
        return False
    rotation = scores["pose"]["rotation_error_deg"]["median"]
    geometry = scores["geometry"]
    return (
        scores["images"]["registered_fraction"] == 1.0
        and rotation <= BACKDROP_TARGETS["rotation_error_deg"]
        and geometry["f_score"]["1"] >= BACKDROP_TARGETS["f_score_1"]
        # nothing of the backdrop
        and geometry["outside_truth_box"]["1"] <= RECONSTRUCTION_TARGETS["outside_truth_box"]
    )


def lookalike_outcome(entry: dict) -> tuple[str, bool]:
    """("placed right" | "clear failure" | what went wrong, whether the issue accepts it)."""
    if entry["run"]["returncode"] != 0:
        clear = LOOKALIKE_FAILURE in entry["run"].get("error", "").lower()
        return ("clear failure" if clear else "failed without naming look-alike sides"), clear
    scores = entry.get("scores", {})
    if "pose" not in scores or "geometry" not in scores:
        return "succeeded but could not be scored", False
    rotation = scores["pose"]["rotation_error_deg"]["median"]
    f_score = scores["geometry"]["f_score"]["1"]
    right = (
        scores["images"]["registered_fraction"] == 1.0
        and rotation <= LOOKALIKE_TARGETS["rotation_error_deg"]
        and f_score >= LOOKALIKE_TARGETS["f_score_1"]
    )
    summary = f"rotation {rotation:.3f}°, F@1 % {f_score:.3f}"
    return ("placed right: " if right else "WRONG model reported as succeeded: ") + summary, right


if __name__ == "__main__":
    sys.exit(main())
