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
from reconstruction import (
    MODELS,
    derived_parser,
    outcome_summary,
    reconstruct_and_score,
    rendered_capture,
    run_outcome,
)

SUBSETS = {
    "every_other": lambda count: list(range(0, count, 2)),
    "every_fourth": lambda count: list(range(0, count, 4)),
    "first_five": lambda count: list(range(5)),
    "upper_ring": lambda count: list(range(count // 2, count)),
}


def main() -> int:
    parser = derived_parser(__doc__.splitlines()[0], "sparse_subsets")
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--backgrounds", nargs="*", default=["plain", "table"])
    parser.add_argument("--subsets", nargs="*", default=list(SUBSETS), choices=list(SUBSETS))
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
    summary = outcome_summary(results)
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
    entry.update(run_outcome(entry))
    return entry


if __name__ == "__main__":
    sys.exit(main())
