"""Benchmark video captures against photo captures of the same product, and a glass product.

- For each product (the YCB mustard bottle from ../shared/data and the procedural cereal box):
  a photo capture (24 views, 960 px) and a video capture (`recon synth --video`, one 240-frame
  orbit, 960 px) on the same background, both reconstructed with the `standard` preset and
  scored by `recon evaluate`. Issue 4 asks the video's F@1 % to be within 0.05 of the photos'.
- The same video with a blurred stretch (`recon synth --video --blur-frames A-B`, half a
  second and 1.25 s): the blurred frames must be left out (none of them used) and the quality
  must hold (within 0.05 F@1 % of the photos).
- GlassVaseFlowers (glass vases with flowers, ../shared/data): 24 photos, `standard`, on the
  plain and the table background. The outcome must be a usable model or a clear warning or
  failure, never a crash. Note: synth's renderer draws every material opaque (no transmission
  or alpha blending), so this checks the pipeline on glass-shaped, plain surfaces (a grey and a
  white vase) rather than on see-through ones.

Writes ``OUT/hard_video.json``.

    python benchmarks/hard_video.py --out out/bench/hard_video [--products ycb_006_mustard_bottle]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reconstruction import REPO, SHARED_DATA, recon, reconstruct_and_score

PRODUCTS = ("ycb_006_mustard_bottle", "cereal_box")
GLASS = "GlassVaseFlowers"
MAX_F_SCORE_GAP = 0.05  # video vs photos, F@1 % (issue 4)
# Blurred stretches of the 240-frame orbit (two turns of 5 s at 24 fps, 3° a frame), on the first
# (lowest) turn; the second sees the same side from higher up. Half a second (36° of this quick
# orbit, a second or two of a merchant's 30-60 s one) and 1.25 s (90°: a quarter of the turn).
BLURS = {"video_blurred": (60, 71), "video_blurred_long": (60, 89)}
# Below this F@1 % a glass model is not usable, and must come with a warning or a failure.
GLASS_USABLE_F_SCORE = 0.85


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench" / "hard_video")
    parser.add_argument(
        "--shared",
        type=Path,
        default=SHARED_DATA,
    )
    parser.add_argument("--products", nargs="*", default=list(PRODUCTS))
    parser.add_argument("--background", default="plain", choices=["plain", "table"])
    parser.add_argument("--preset", default="standard")
    parser.add_argument(
        "--kinds",
        nargs="*",
        default=["photos", "video", *BLURS],
        choices=["photos", "video", *BLURS],
        help="captures of each product (the photos are needed to judge the others)",
    )
    parser.add_argument(
        "--glass-backgrounds", nargs="*", default=["plain", "table"], choices=["plain", "table"]
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="reuse runs already reconstructed and scored under OUT/runs (seconds from report)",
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict = {"video": [], "glass": []}

    for product in args.products:
        model = args.shared / "models" / product
        source = str(model) if model.is_dir() else product  # else a procedural product
        kinds = {
            "photos": ["--views", "24"],
            "video": ["--video"],
            **{
                kind: ["--video", "--blur-frames", f"{first}-{last}"]
                for kind, (first, last) in BLURS.items()
            },
        }
        entries = {}
        for kind, flags in kinds.items():
            if kind not in args.kinds and kind != "photos":
                continue
            capture = args.out / "captures" / capture_name(product, args.background, kind)
            synth = synthesise(source, capture, [*flags, "--background", args.background])
            entry = reconstruct(capture, args.out / "runs" / capture.name, args.preset, args.resume)
            entry.update(product=product, background=args.background, kind=kind, synth=synth)
            entry["summary"] = summary(entry, args.out / "runs" / capture.name)
            entries[kind] = entry
            results["video"].append(entry)
            shown = {k: v for k, v in entry["summary"].items() if k not in ("used", "warnings")}
            print(json.dumps({"product": product, "kind": kind, **shown}))
        for kind in [kind for kind in ("video", *BLURS) if kind in entries]:
            entries[kind]["checks"] = video_checks(entries[kind], entries["photos"])
            print(json.dumps({"product": product, "kind": kind, "checks": entries[kind]["checks"]}))

    model = args.shared / "models" / GLASS
    if args.glass_backgrounds and not model.is_dir():
        print(f"{model} not found; set RECON_SHARED_DATA")
        return 2
    for background in args.glass_backgrounds:
        capture = args.out / "captures" / capture_name(GLASS, background, "photos")
        synth = synthesise(str(model), capture, ["--views", "24", "--background", background])
        entry = {"synth": synth, "product": GLASS, "background": background}
        if synth["returncode"] == 0:
            run_dir = args.out / "runs" / capture.name
            entry.update(reconstruct(capture, run_dir, args.preset, args.resume))
            entry["summary"] = summary(entry, run_dir)
        entry["outcome"], entry["acceptable"] = glass_outcome(entry)
        results["glass"].append(entry)
        shown = ("product", "background", "outcome", "acceptable")
        print(json.dumps({k: entry.get(k) for k in shown}))

    (args.out / "hard_video.json").write_text(json.dumps(results, indent=1) + "\n")
    missed = [e for e in results["video"] if e.get("checks") and not all(e["checks"].values())]
    missed += [entry for entry in results["glass"] if not entry["acceptable"]]
    print(f"{len(missed)} runs missed a target; results in {args.out / 'hard_video.json'}")
    return 0


def capture_name(product: str, background: str, kind: str) -> str:
    return f"{product}_{kind}" if background == "plain" else f"{product}_{background}_{kind}"


def reconstruct(capture: Path, run_dir: Path, preset: str, resume: bool) -> dict:
    """reconstruct_and_score, or with `resume` the figures of a run already scored there."""
    report_path, scores_path = run_dir / "report.json", run_dir / "scores.json"
    if not (resume and report_path.exists() and scores_path.exists()):
        return reconstruct_and_score(capture, run_dir, preset)
    report = json.loads(report_path.read_text())
    memory = report.get("peak_memory_mb") or {}
    return {
        "run": {
            "seconds": report["timings_s"]["total"],
            "peak_memory_mb": max(memory.values(), default=None),
            "returncode": 0,
            "resumed": True,
        },
        "stages_s": report["timings_s"],
        "stage_peak_memory_mb": memory,
        "faces": report["mesh"]["faces"],
        "glb_mb": round((run_dir / "model.glb").stat().st_size / 2**20, 2),
        "scores": json.loads(scores_path.read_text()),
    }


def synthesise(source: str, capture: Path, flags: list[str]) -> dict:
    """`recon synth` into `capture` unless a finished capture is already there."""
    if (capture / "truth" / "cameras.json").exists():
        return {"returncode": 0, "reused": True}
    return recon(["synth", source, str(capture), "--size", "960", *flags, "--overwrite"])


def summary(entry: dict, run_dir: Path) -> dict:
    """The figures compared across captures: scores, frames used and left out, time, warnings."""
    out: dict = {"seconds": entry["run"]["seconds"], "returncode": entry["run"]["returncode"]}
    if entry["run"]["returncode"] != 0:
        out["error"] = entry["run"].get("error", "")[-400:]
        return out
    report = json.loads((run_dir / "report.json").read_text())
    out["status"] = report.get("status")
    out["used"] = sorted(camera["image"] for camera in report["cameras"])
    out["images"] = {k: report["images"][k] for k in ("total", "registered")}
    capture_path = run_dir / "work" / "capture.json"
    if capture_path.exists() and "video" in (capture := json.loads(capture_path.read_text())):
        # frames decoded, kept, and left out by kind: blurry, duplicate, spacing, damaged
        out["frames"] = {k: capture["video"][k] for k in ("frames", "kept", "dropped")}
    out["blurry"] = sorted(
        item["image"]
        for item in report["images"]["rejected"]
        if item["reason"].startswith("blurry")
    )
    out["warnings"] = report.get("warnings", [])
    out["fidelity"] = {
        k: v for k, v in (report.get("fidelity") or {}).items() if k not in ("per_photo", "photos")
    }
    out["timings_s"] = report["timings_s"]
    scores = entry.get("scores") or {}
    if "geometry" in scores:
        out["f_score_1"] = scores["geometry"]["f_score"]["1"]
        out["f_score_0.5"] = scores["geometry"]["f_score"]["0.5"]
        out["rotation_error_deg"] = scores["pose"]["rotation_error_deg"]["median"]
        out["registered_fraction"] = scores["images"]["registered_fraction"]
        out["psnr_db"] = (scores.get("texture") or {}).get("psnr_db")
    return out


def video_checks(video: dict, photos: dict) -> dict[str, bool]:
    """Issue 4's video bar against the photo capture of the same product (and, for the blurred
    video, that no blurred frame was used)."""
    got, reference = video["summary"], photos["summary"]
    if "f_score_1" not in got or "f_score_1" not in reference:
        return {"video and photos reconstructed and scored": False}
    checks = {
        f"F@1 % within {MAX_F_SCORE_GAP} of the photos' ({reference['f_score_1']:.3f})": (
            got["f_score_1"] >= reference["f_score_1"] - MAX_F_SCORE_GAP
        ),
    }
    if video["kind"] in BLURS:
        first, last = BLURS[video["kind"]]
        used = [int(name[6:12]) for name in got["used"]]
        checks[f"no blurred frame ({first}-{last}) used"] = not any(
            first <= index <= last for index in used
        )
    return checks


def glass_outcome(entry: dict) -> tuple[str, bool]:
    """(what happened, whether issue 4 accepts it): a usable model, or a clear warning or
    failure; a traceback or a poor model without warning is not accepted."""
    for stage in ("synth", "run"):
        run = entry.get(stage)
        if run is None or run["returncode"] == 0:
            continue
        error = run.get("error", "")
        if "Traceback" in error:
            return f"{stage} crashed: {error[-300:]}", False
        return f"clear failure in {stage}: {error.strip().splitlines()[-1][:300]}", True
    got = entry.get("summary", {})
    if "f_score_1" not in got:
        return "succeeded but could not be scored", False
    f_score = got["f_score_1"]
    if f_score >= GLASS_USABLE_F_SCORE:
        return f"usable model: F@1 % {f_score:.3f}", True
    # The report's own warnings that the model misses parts: the fidelity self-check's outline
    # warnings, or a glass-specific one.
    signs = ("outline matches", "glass", "transparent", "see-through")
    warned = [w for w in got["warnings"] if any(sign in w for sign in signs)]
    if got.get("status") == "failed" or warned:
        return f"poor model (F@1 % {f_score:.3f}) with a warning: {warned[:1]}", True
    return f"poor model (F@1 % {f_score:.3f}) reported without a warning", False


if __name__ == "__main__":
    sys.exit(main())
