"""Benchmark sparse photo sets: the reconstruction benchmark's captures thinned the ways a
merchant thins them, to check that each run ends in a model or in a clear error, never a stack
trace or a crash.

Each 24 × 960 px capture (two rings of 12, 30° apart; rendered as `reconstruction.py` renders
them, or reused from its --out) is cut into subsets: every other photo (60° apart on each
ring), every fourth, the first five in capture order (120° of the lower ring) and the upper ring
alone. Each subset is reconstructed with the preset; a run that succeeds is scored against the
whole truth (so completeness counts what the subset could not see). Most subsets are sparser
than the capture guide asks (10-15° steps): an error naming the problem is a fine answer; a
traceback is a bug.

Writes ``OUT/sparse_subsets.json``.

    python benchmarks/sparse_subsets.py --out out/bench/sparse_subsets --preset preview
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reconstruction import MODELS, REPO, SHARED_DATA, reconstruct_and_score, rendered_capture

SUBSETS = {
    "every_other": lambda count: list(range(0, count, 2)),
    "every_fourth": lambda count: list(range(0, count, 4)),
    "first_five": lambda count: list(range(5)),
    "upper_ring": lambda count: list(range(count // 2, count)),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench" / "sparse_subsets")
    parser.add_argument("--captures", type=Path, default=None,
                        help="folder of rendered captures to reuse (reconstruction.py's "
                             "OUT/captures); rendered under --out when missing")  # fmt: skip
    parser.add_argument("--shared", type=Path, default=SHARED_DATA)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--backgrounds", nargs="*", default=["plain", "table"])
    parser.add_argument("--subsets", nargs="*", default=list(SUBSETS), choices=list(SUBSETS))
    parser.add_argument("--preset", default="standard")
    args = parser.parse_args()
    captures = args.captures or args.out / "captures"
    results = []
    for model in args.models:
        for background in args.backgrounds:
            capture = rendered_capture(
                args.shared, model, background, captures / f"{model}_{background}"
            )
            photos = sorted((capture / "images").iterdir())
            for subset in args.subsets:
                entry = run_subset(capture, photos, subset, args)
                entry.update(model=model, background=background, subset=subset)
                results.append(entry)
                shown = ("model", "background", "subset", "outcome", "f_score_1", "message")
                print(json.dumps({key: entry.get(key) for key in shown}))
    tracebacks = [r for r in results if r["outcome"] == "traceback"]
    summary = {
        "runs": len(results),
        "models": sum(r["outcome"] == "model" for r in results),
        "clear_errors": sum(r["outcome"] == "error" for r in results),
        "tracebacks": len(tracebacks),
        "no traceback": not tracebacks,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"preset": args.preset, "summary": summary, "runs": results}
    (args.out / "sparse_subsets.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


def run_subset(capture: Path, photos: list[Path], subset: str, args: argparse.Namespace) -> dict:
    """Reconstruct and score the `subset` of the capture's `photos` (a capture folder of
    links to them beside the truth)."""
    folder = args.out / "subsets" / f"{capture.name}_{subset}"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "images").mkdir(parents=True)
    (folder / "truth").symlink_to((capture / "truth").resolve())
    chosen = [photos[i] for i in SUBSETS[subset](len(photos))]
    for photo in chosen:
        (folder / "images" / photo.name).symlink_to(photo.resolve())
    entry = reconstruct_and_score(folder, args.out / "runs" / folder.name, args.preset)
    entry["photos"] = len(chosen)
    error = entry["run"].get("error", "")
    if entry["run"]["returncode"] == 0:
        entry["outcome"] = "model"
        scores = entry.get("scores", {})
        entry["f_score_1"] = scores.get("geometry", {}).get("f_score", {}).get("1")
        entry["psnr_db"] = scores.get("texture", {}).get("psnr_db")
    else:
        entry["outcome"] = "traceback" if "Traceback" in error else "error"
        lines = [line for line in error.splitlines() if line.startswith("error:")]
        entry["message"] = lines[-1] if lines else (error.strip().splitlines() or [""])[-1]
    return entry


if __name__ == "__main__":
    sys.exit(main())
