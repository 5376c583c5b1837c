"""Benchmark a plain product on a black backdrop: the Middlebury dino sparse ring (issue 4).

16 photos (640×480) of a matte, almost textureless plaster dinosaur, ~22° apart on one ring,
with a calibration (``dinoSR_par.txt``). Reconstructed with the `standard` preset and scored
by `recon evaluate` against the calibration. Acceptance: ≥ 14 of 16 photos registered, median
rotation error ≤ 1°, and a closed mesh you would recognise. Writes ``OUT/hard_dino.json`` and
``OUT/dino.png`` (photos above, the textured model from the same solved cameras in the middle,
its untextured shape lit below) so a person can look.

    python benchmarks/hard_dino.py --out out/bench/hard_dino
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reconstruction import REPO, SHARED_DATA, reconstruct_and_score

CAPTURE = "middlebury_dino_sparse_ring"
TARGETS = {"registered": 14, "rotation_error_deg": 1.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "out" / "bench" / "hard_dino")
    parser.add_argument(
        "--shared",
        type=Path,
        default=SHARED_DATA,
    )
    parser.add_argument("--preset", default="standard")
    args = parser.parse_args()
    capture = args.shared / "captures" / CAPTURE
    if not capture.is_dir():
        print(f"{capture} not found; set RECON_SHARED_DATA")
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    out = args.out / "runs" / CAPTURE
    entry = reconstruct_and_score(capture, out, args.preset)
    entry.update(name=CAPTURE, preset=args.preset)
    if entry["run"]["returncode"] == 0:
        report = json.loads((out / "report.json").read_text())
        entry["sfm"] = report.get("sfm")
        entry["mesh"] = mesh_figures(out / "model.glb")
        picture(out, capture, args.out / "dino.png")
    entry["checks"] = checks(entry)
    path = args.out / "hard_dino.json"
    path.write_text(json.dumps(entry, indent=1) + "\n")
    print(json.dumps({k: entry.get(k) for k in ("run", "mesh", "checks")}))
    print(f"results in {path}")
    return 0


def mesh_figures(model_path: Path) -> dict:
    """Faces, whether the surface is closed (texture seams welded first) and its pieces."""
    sys.path.insert(0, str(REPO))
    from recon.textured_mesh import load_textured_mesh

    mesh = load_textured_mesh(model_path).to_trimesh()
    mesh.merge_vertices(merge_tex=True, merge_norm=True)
    edges = np.sort(mesh.edges, axis=1)
    _, uses = np.unique(edges, axis=0, return_counts=True)
    return {
        "faces": len(mesh.faces),
        "closed": bool(mesh.is_watertight),
        "open_edges": int((uses == 1).sum()),
        "pieces": len(mesh.split(only_watertight=False)),
    }


def checks(entry: dict) -> dict:
    scores = entry.get("scores", {})
    if entry["run"]["returncode"] != 0 or "pose" not in scores:
        return {"reconstructed and scored": False}
    registered = scores["images"]["registered"]
    rotation = scores["pose"]["rotation_error_deg"]["median"]
    return {
        f"registered >= {TARGETS['registered']} of 16": registered >= TARGETS["registered"],
        f"rotation error <= {TARGETS['rotation_error_deg']} deg":
            rotation <= TARGETS["rotation_error_deg"],
        "closed mesh": entry["mesh"]["closed"],
    }  # fmt: skip


def picture(out: Path, photos: Path, path: Path, views: int = 4) -> None:
    """Photos (top), the textured model (middle) and its lit shape (bottom) from `views`
    solved cameras spread around the ring."""
    sys.path.insert(0, str(REPO))
    from recon.cameras import Camera
    from recon.render import OffscreenRenderer
    from recon.textured_mesh import from_trimesh, load_textured_mesh

    report = json.loads((out / "report.json").read_text())
    cameras = [Camera.from_json(camera) for camera in report["cameras"]]
    chosen = [cameras[i] for i in np.linspace(0, len(cameras) - 1, views).round().astype(int)]
    textured = load_textured_mesh(out / "model.glb")
    shape = from_trimesh(textured.to_trimesh())
    rows = [[np.asarray(Image.open(photos / c.name).convert("RGB")) for c in chosen]]
    with OffscreenRenderer(textured) as renderer:
        rows.append([renderer.render(c, background=(255, 255, 255), supersample=2).rgb
                     for c in chosen])  # fmt: skip
    with OffscreenRenderer(shape) as renderer:
        rows.append([shaded(renderer.render(c, supersample=2).depth, c) for c in chosen])
    sheet = np.vstack([np.hstack([resize(tile, chosen[0]) for tile in row]) for row in rows])
    Image.fromarray(sheet).resize((sheet.shape[1] // 2, sheet.shape[0] // 2)).save(path)


def shaded(depth: np.ndarray, camera) -> np.ndarray:
    """(h, w, 3) uint8 grey shape lit from the camera, from a (h, w) depth map (0: empty):
    holes and flaps show, which the photo-coloured texture hides."""
    v, u = np.mgrid[: depth.shape[0], : depth.shape[1]].astype(np.float64)
    rays = np.stack([(u - camera.K[0, 2]) / camera.K[0, 0], (v - camera.K[1, 2]) / camera.K[1, 1],
                     np.ones_like(u)], axis=-1)  # fmt: skip
    points = rays * depth[..., None]
    normal = np.cross(np.gradient(points, axis=1), np.gradient(points, axis=0))
    normal /= np.maximum(np.linalg.norm(normal, axis=-1, keepdims=True), 1e-12)
    light = np.abs((normal * rays / np.linalg.norm(rays, axis=-1, keepdims=True)).sum(axis=-1))
    grey = np.where(depth > 0, 40 + 200 * light, 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def resize(tile: np.ndarray, camera) -> np.ndarray:
    if tile.shape[:2] == (camera.height, camera.width):
        return tile
    return np.asarray(Image.fromarray(tile).resize((camera.width, camera.height)))


if __name__ == "__main__":
    sys.exit(main())
