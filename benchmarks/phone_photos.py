"""Benchmark photos with a phone's faults: the reconstruction benchmark's captures degraded the
ways a merchant's photos are, each scored against the same capture untouched.

Each 24 × 960 px capture (rendered as `reconstruction.py` renders them, or reused from its
--out) is reconstructed as it is and with every photo, or a few, degraded:

- exposure: every photo's exposure and white balance drawn anew (±0.6 EV, ±10 % per channel),
  as auto exposure leaves them;
- noise: every photo with sensor noise (σ 6 grey levels) saved at JPEG quality 70, a dim room
  and a messaging app's compression;
- shaken: three photos smeared 15 px by camera shake;
- hand: three photos with a hand (a skin-coloured blob) reaching in from the bottom edge.

Each run must end in a model or a clear error, never a traceback; the JSON gives each one's
rotation error, F-scores and novel-view PSNR beside the untouched capture's.

Writes ``OUT/phone_photos.json``.

    python benchmarks/phone_photos.py --out out/bench/phone_photos
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reconstruction import (
    derived_parser,
    outcome_summary,
    reconstruct_and_score,
    rendered_capture,
    run_outcome,
)

CAPTURES = [
    ("ycb_006_mustard_bottle", "table"),
    ("ycb_005_tomato_soup_can", "plain"),
    ("MaterialsVariantsShoe", "table"),
    ("Avocado", "plain"),
]
FAULTS = ("exposure", "noise", "shaken", "hand")
JPEG_QUALITY = 95  # the photos' own (recon synth's) quality, where a fault sets none


def main() -> int:
    parser = derived_parser(__doc__.splitlines()[0], "phone_photos")
    parser.add_argument("--faults", nargs="*", default=list(FAULTS), choices=list(FAULTS))
    args = parser.parse_args()
    captures = args.captures or args.out / "captures"
    results = []
    for model, background in CAPTURES:
        capture = rendered_capture(
            args.shared, model, background, captures / f"{model}_{background}"
        )
        for fault in ["none", *args.faults]:
            folder = capture if fault == "none" else degraded_capture(capture, fault, args.out)
            entry = reconstruct_and_score(folder, args.out / "runs" / folder.name, args.preset)
            entry.update(model=model, background=background, fault=fault, **run_outcome(entry))
            results.append(entry)
            shown = ("model", "background", "fault", "outcome", "rotation_deg", "f_score_1",
                     "psnr_db", "message")  # fmt: skip
            print(json.dumps({key: entry.get(key) for key in shown}))
    summary = {**outcome_summary(results), "psnr_db_against_untouched": psnr_changes(results)}
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"preset": args.preset, "summary": summary, "runs": results}
    (args.out / "phone_photos.json").write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(summary))
    return 0


def degraded_capture(capture: Path, fault: str, out: Path) -> Path:
    """A copy of `capture` (its truth linked) with its photos degraded by `fault`."""
    folder = out / "faulty" / f"{capture.name}_{fault}"
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "images").mkdir(parents=True)
    (folder / "truth").symlink_to((capture / "truth").resolve())
    rng = np.random.default_rng(7)
    for index, photo in enumerate(sorted((capture / "images").iterdir())):
        image, quality = degrade(cv2.imread(str(photo)).astype(np.float32), fault, index, rng)
        cv2.imwrite(str(folder / "images" / photo.with_suffix(".jpg").name), image,
                    [cv2.IMWRITE_JPEG_QUALITY, quality])  # fmt: skip
    return folder


def degrade(
    image: np.ndarray, fault: str, index: int, rng: np.random.Generator
) -> tuple[np.ndarray, int]:
    """The (h, w, 3) float BGR photo number `index` with `fault`, as uint8, and its JPEG quality."""
    quality = JPEG_QUALITY
    if fault == "exposure":
        linear = (image / 255) ** 2.2 * 2 ** rng.uniform(-0.6, 0.6) * rng.uniform(0.9, 1.1, 3)
        image = np.clip(linear, 0, 1) ** (1 / 2.2) * 255
    elif fault == "noise":
        image, quality = image + rng.normal(0, 6, image.shape), 70
    elif fault == "shaken" and index % 8 == 3:
        kernel = np.zeros((15, 15), np.float32)
        kernel[7, :] = 1 / 15
        turn = cv2.getRotationMatrix2D((7, 7), rng.uniform(0, 180), 1)
        kernel = cv2.warpAffine(kernel, turn, (15, 15))
        image = cv2.filter2D(image, -1, kernel / kernel.sum())
    elif fault == "hand" and index % 8 == 5:
        height, width = image.shape[:2]
        blob = np.zeros((height, width), np.uint8)
        axes = (int(0.09 * width), int(0.28 * height))
        centre = (int(rng.uniform(0.2, 0.8) * width), height)
        cv2.ellipse(blob, centre, axes, rng.uniform(-25, 25), 0, 360, 255, -1)
        skin = np.array([120, 150, 205], np.float32) + rng.normal(0, 8, (height, width, 1))
        weight = cv2.GaussianBlur(blob, (9, 9), 0)[..., None] / 255
        image = image * (1 - weight) + skin * weight
    return np.clip(image, 0, 255).astype(np.uint8), quality


def psnr_changes(results: list[dict]) -> dict:
    """Per fault, the novel-view PSNR change against the untouched capture, per product."""
    untouched = {
        (r["model"], r["background"]): r.get("psnr_db") for r in results if r["fault"] == "none"
    }
    changes: dict[str, dict] = {}
    for r in results:
        base = untouched.get((r["model"], r["background"]))
        if r["fault"] != "none" and r.get("psnr_db") is not None and base is not None:
            changes.setdefault(r["fault"], {})[f"{r['model']}_{r['background']}"] = round(
                r["psnr_db"] - base, 2
            )
    return changes


if __name__ == "__main__":
    sys.exit(main())
