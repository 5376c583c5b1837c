"""Benchmark scene mode: the procedural shop room filmed along a walk, reconstructed, scored.

Renders the room (`recon synth --scene`: FRAMES frames at SIZE px) unless the capture exists,
reconstructs it with `recon reconstruct --mode scene` in this process, and scores it with
`recon evaluate` (F-score at τ = % of the room's bounding-box diagonal) plus the floor's level
(`recon.scene.floor_errors`). Writes ``OUT/scene.json``: per-stage wall times, the process's CPU
time (the machine is often shared: CPU seconds over the cores is the better guide to what a
dedicated machine would take), registered frames, F-scores, floor tilt, mesh and GLB sizes.

    python benchmarks/scene.py --out out/bench_scene [--frames 100] [--size 960] [--preset standard]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from a checkout

from recon import evaluation, pipeline, scene, synth  # noqa: E402
from recon.cameras import read_cameras_json  # noqa: E402

# The acceptance for a 80–120-frame, 960 px walk.
TARGETS = {"f_score_1pct": 0.85, "floor_tilt_deg": 1.0, "total_s": 360.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench_scene")
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--size", type=int, default=960)
    parser.add_argument("--preset", choices=[p.value for p in pipeline.Preset], default="standard")
    parser.add_argument("--table", action="store_true", help="a wooden table in the room too")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    capture_dir = args.out / f"room_{args.frames}_{args.size}{'_table' if args.table else ''}"
    synth_s = None
    if not (capture_dir / "truth" / "cameras.json").exists():
        start = time.perf_counter()
        synth.run(
            None,
            capture_dir,
            synth.SynthOptions(
                scene=True,
                views=args.frames,
                size_px=args.size,
                background=synth.Background.TABLE if args.table else synth.Background.PLAIN,
            ),
        )
        synth_s = time.perf_counter() - start

    out_dir = args.out / f"recon_{capture_dir.name}_{args.preset}"
    options = pipeline.ReconOptions.for_preset(args.preset, pipeline.Mode.SCENE)
    cpu_before = _cpu_s()
    start = time.perf_counter()
    result = pipeline.reconstruct(capture_dir / "images", out_dir, options, overwrite=True)
    wall_s = time.perf_counter() - start
    cpu_s = _cpu_s() - cpu_before
    report = result.report

    scores = evaluation.evaluate(capture_dir, out_dir, evaluation.EvaluateOptions())
    floor = scene.floor_errors(
        read_cameras_json(result.report_path),
        read_cameras_json(capture_dir / "truth" / "cameras.json"),
    )
    geometry = scores.get("geometry") or {}
    summary = {
        "capture": str(capture_dir),
        "frames": args.frames,
        "size_px": args.size,
        "preset": args.preset,
        "cores": os.cpu_count(),
        "load_average_1min_at_end": os.getloadavg()[0],
        "synth_s": synth_s,
        "reconstruct_wall_s": round(wall_s, 1),
        "reconstruct_cpu_s": round(cpu_s, 1),
        "stage_s": report["timings_s"],
        "registered": report["images"]["registered"],
        "total": report["images"]["total"],
        "f_score": geometry.get("f_score"),
        "accuracy": geometry.get("accuracy"),
        "completeness": geometry.get("completeness"),
        "diagonal_m": geometry.get("diagonal_m"),
        "pose": scores.get("pose"),
        "texture": scores.get("texture"),
        "floor_tilt_deg": floor["tilt_deg"],
        "floor_height_m": floor["height_m"],
        "mesh": report["mesh"],
        "texture_size": report["texture"]["size"],
        "glb_bytes": report["files"].get("model.glb"),
        "units": report["units"],
        "surfaces": [(s["kind"], s["height_m"], s["area_m2"]) for s in report["surfaces"]],
        "warnings": report["warnings"],
    }
    summary["meets"] = {
        "all_registered": summary["registered"] == summary["total"],
        "f_score_1pct": (summary["f_score"] or {}).get("1", 0.0) >= TARGETS["f_score_1pct"],
        "floor_tilt_deg": summary["floor_tilt_deg"] <= TARGETS["floor_tilt_deg"],
        "total_s": wall_s <= TARGETS["total_s"],
    }
    (args.out / "scene.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(json.dumps(summary, indent=1))
    return 0


def _cpu_s() -> float:
    """CPU seconds used so far by this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


if __name__ == "__main__":
    sys.exit(main())
