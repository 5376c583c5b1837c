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
  order and a spread subsample, not every pair) and in 120 (three rings of 40) must meet the
  same bars (the fold check once refused both, placed right), and the twin_box on plain paper in
  48 views must still be placed right or fail clearly. The 72 and the 48 again with the photos
  renamed in a shuffled order (the names then say nothing of the capture order), held to the
  same outcomes.

Writes ``OUT/hard_captures.json``.

    python benchmarks/hard_captures.py --out out/bench/hard
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
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
DENSE = [("ycb_006_mustard_bottle", "table", 72), ("ycb_006_mustard_bottle", "table", 120)]
DENSE_SHUFFLED_VIEWS = 72  # the dense capture also run with its photos named out of order
DENSE_LOOKALIKE_VIEWS = 48
SHUFFLED = "_shuffled"  # suffix of a dense capture's copy with its photos named out of order


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
    # (background, views, names shuffled) of the look-alike captures
    lookalikes = [(background, args.views, False) for background in args.backgrounds]
    lookalikes += [("plain", DENSE_LOOKALIKE_VIEWS, shuffled) for shuffled in (False, True)]
    for background, views, shuffled in lookalikes:
        capture = args.out / "captures" / f"twin_box_{background}_{views}"
        if not (capture / "truth" / "cameras.json").exists():
            recon(["synth", "twin_box", str(capture), "--views", str(views), "--size", "960",
                   "--background", background, "--overwrite"])  # fmt: skip
        if shuffled:
            capture = shuffled_copy(capture)
        entry = reconstruct_and_score(capture, args.out / "runs" / capture.name, args.preset)
        entry.update(product="twin_box", background=background, views=views, shuffled=shuffled)
        entry["outcome"], entry["acceptable"] = lookalike_outcome(entry)
        results.append(entry)
        print(json.dumps({k: entry.get(k) for k in ("background", "views", "shuffled", "outcome",
                                                    "acceptable")}))  # fmt: skip
    dense = [(*capture, False) for capture in DENSE]
    dense += [(*capture, True) for capture in DENSE if capture[2] == DENSE_SHUFFLED_VIEWS]
    for model, background, views, shuffled in [(m, b, 24, False) for m, b in BACKDROPS] + dense:
        name = f"{model}_{background}" + ("" if views == 24 else f"_{views}")
        capture = args.out / "captures" / name
        if not (capture / "truth" / "cameras.json").exists():
            recon(["synth", str(args.shared / "models" / model), str(capture),
                   "--views", str(views), "--size", "960", "--background", background,
                   "--overwrite"])  # fmt: skip
        if shuffled:
            capture = shuffled_copy(capture)
        entry = reconstruct_and_score(capture, args.out / "runs" / capture.name, args.preset)
        entry.update(product=model, background=background, views=views, shuffled=shuffled)
        entry["acceptable"] = backdrop_acceptable(entry.get("scores", {}))
        results.append(entry)
        print(json.dumps({k: entry.get(k) for k in ("product", "background", "views", "shuffled",
                                                    "acceptable")}))  # fmt: skip
    (args.out / "hard_captures.json").write_text(json.dumps(results, indent=1) + "\n")
    return 0


def shuffled_copy(capture: Path, seed: int = 7) -> Path:
    """A copy of `capture` beside it whose photos are named in a shuffled order (photo_000.jpg
    is any of them), its truth cameras and masks renamed alike; made once."""
    copy = capture.with_name(capture.name + SHUFFLED)
    if copy.exists():
        return copy
    photos = sorted(path.name for path in (capture / "images").iterdir())
    order = random.Random(seed).sample(photos, len(photos))
    new_names = {name: f"photo_{index:03d}{Path(name).suffix}" for index, name in enumerate(order)}
    partial = copy.with_name(copy.name + ".partial")  # renamed when whole
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(capture / "truth", partial / "truth", ignore=shutil.ignore_patterns("masks"))
    (partial / "images").mkdir()
    (partial / "truth" / "masks").mkdir()
    for name, new in new_names.items():
        shutil.copyfile(capture / "images" / name, partial / "images" / new)
        for mask in (capture / "truth" / "masks").glob(f"{Path(name).stem}.*"):
            shutil.copyfile(mask, partial / "truth" / "masks" / (Path(new).stem + mask.suffix))
    cameras_path = partial / "truth" / "cameras.json"
    cameras = json.loads(cameras_path.read_text())
    for camera in cameras["cameras"]:
        camera["image"] = new_names[camera["image"]]
    cameras_path.write_text(json.dumps(cameras, indent=1) + "\n")
    partial.rename(copy)
    return copy


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
