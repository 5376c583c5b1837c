"""The `recon` command: one verb per job, each a thin shell over the library."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
from rich.table import Table

from recon import __version__
from recon.errors import InputError, ReconError
from recon.progress import ProgressCallback

console = Console(stderr=True, soft_wrap=True)  # soft wrap: messages stay greppable


def main(
    argv: Sequence[str] | None = None,
    *,
    extra_verbs: Callable[[argparse._SubParsersAction], None] | None = None,
) -> int:
    """Run the command. `extra_verbs` adds the service's verbs (serve, admin): the `recon`
    script is `api.cli:main`, so that this library needs nothing of the API."""
    parser = _build_parser(extra_verbs)
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    set_log_levels(args.verbose)
    try:
        return args.handler(args)
    except ReconError as error:
        console.print(f"[bold red]error:[/] {error}", highlight=False)
        return 2
    except KeyboardInterrupt:
        console.print("interrupted")
        return 130
    finally:
        if argv is None:  # the command line: the process ends next
            # Its last garbage collection would walk every object the job left (1-2 s after a
            # reconstruction); frozen, they are simply dropped with the process.
            gc.freeze()


OWN_LOGGERS = ("recon", "api")


def set_log_levels(verbose: bool, quiet_level: int = logging.WARNING) -> None:
    """Verbose: our own loggers say everything, the libraries what they tell users (INFO);
    else `quiet_level` for all. Not the libraries' debug output: numba's, compiling the
    stereo's functions on a first run, was 256,000 lines."""
    logging.getLogger().setLevel(logging.INFO if verbose else quiet_level)
    for name in OWN_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.NOTSET)


def _build_parser(
    extra_verbs: Callable[[argparse._SubParsersAction], None] | None = None,
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recon", description="Product photos to textured, real-scale 3D assets."
    )
    parser.add_argument("--version", action="version", version=f"recon {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    reconstruct = verbs.add_parser(
        "reconstruct",
        help="photos (a folder or .zip) or a video to a textured model",
        description="Reconstruct a textured 3D model (OUT/model.glb) and its report "
        "(OUT/report.json) from photos taken all around a product. A run that was stopped "
        "continues where it left off when started again with the same command.",
    )
    reconstruct.add_argument(
        "input", type=Path, help="folder of JPEG/PNG/HEIC photos, a .zip, or an MP4/MOV/WebM video"
    )
    reconstruct.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    reconstruct.add_argument(
        "--preset",
        choices=["preview", "standard", "high"],
        default="standard",
        help="detail level (standard)",
    )
    reconstruct.add_argument(
        "--mode",
        choices=["object", "scene"],
        default="object",
        help="object: one product, masked from its background (default); scene: a space "
        "filmed from inside (a shop room): floor on y = 0, surfaces for placing products",
    )
    reconstruct.add_argument(
        "--overwrite", action="store_true", help="start afresh instead of resuming finished stages"
    )
    for dimension, axis in (
        ("height", "up"),
        ("width", "side to side"),
        ("depth", "front to back"),
    ):
        reconstruct.add_argument(
            f"--{dimension}-m",
            type=float,
            default=None,
            metavar="M",
            help=f"the product's known {dimension} ({axis}) in metres: the model is made in metres",
        )
    reconstruct.add_argument(
        "--compress",
        action="store_true",
        help="Draco-compress the GLB geometry (smaller files; the USDZ stays uncompressed)",
    )
    reconstruct.add_argument(
        "--max-mb",
        type=float,
        default=None,
        metavar="MB",
        help="fit model.glb under this many MB (lower JPEG quality, texture size, triangles)",
    )
    reconstruct.add_argument(
        "--depth-on",
        choices=["cpu", "cuda"],
        default="cpu",
        help="where depth maps are searched: cpu (default; faster and better on our benchmarks) "
        "or cuda (COLMAP's PatchMatch on an NVIDIA GPU; needs pycolmap-cuda12)",
    )
    reconstruct.set_defaults(handler=_reconstruct)

    check = verbs.add_parser(
        "check",
        help="check a capture in seconds before reconstructing it",
        description="Check photos (a folder or .zip) or a video before reconstructing them: "
        "blurry, near-duplicate, badly exposed and unconnected photos, gaps around the "
        "product, too few photos. Exit status 0: the capture is fine (advice may follow); "
        "1: it should be reshot; 2: it could not be read.",
    )
    check.add_argument(
        "input", type=Path, help="folder of JPEG/PNG/HEIC photos, a .zip, or an MP4/MOV/WebM video"
    )
    check.add_argument("--json", type=Path, default=None, help="also write the result here")
    check.set_defaults(handler=_check)

    synth = verbs.add_parser(
        "synth",
        help="render a synthetic capture with exact ground truth",
        description="Photograph a textured model (GLB, glTF, OBJ, or a procedural product name: "
        "cereal_box, bottle, mug, twin_box, white_mug) from rings of cameras, and write the truth "
        "beside the photos. With --scene (and no model), film the procedural shop room inside-out "
        "along a walk.",
    )
    synth.add_argument("model", nargs="?", help="model file, or a procedural product name")
    synth.add_argument("out", type=Path, help="capture folder to create")
    synth.add_argument(
        "--scene",
        action="store_true",
        help="a shop room (6 × 4 × 2.8 m: posters, shelves, a counter) filmed from inside",
    )
    synth.add_argument(
        "--views",
        type=int,
        default=None,
        help="photos around the product (24), or of a scene (100)",
    )
    synth.add_argument("--size", type=int, default=960, dest="size_px", help="photo size, px (960)")
    synth.add_argument(
        "--background",
        choices=["plain", "table", "turntable", "black", "white"],
        default="plain",
        help="plain grey studio paper, a wooden tabletop under the product, a turntable (a "
        "tripod camera before a patterned wall, the product turning on a disc), or a black or "
        "white backdrop",
    )
    synth.add_argument(
        "--lighting",
        choices=["studio", "unlit"],
        default="studio",
        help="studio: soft world-fixed lights; unlit: base colour only",
    )
    synth.add_argument(
        "--video",
        action="store_true",
        help="film one continuous orbit into OUT/video.mp4 (H.264) instead of taking photos",
    )
    synth.add_argument(
        "--frames", type=int, default=240, dest="video_frames", help="frames of --video (240)"
    )
    synth.add_argument(
        "--blur-frames",
        type=_frame_range,
        default=None,
        metavar="A-B",
        help="motion-blur frames (or photos) A to B, 0-based and inclusive: a blurred stretch",
    )
    synth.add_argument("--seed", type=int, default=0, help="random seed for the camera jitter")
    synth.add_argument("--novel-views", type=int, default=6, help="held-out views for scoring (6)")
    synth.add_argument("--up", choices=["y", "z"], default="y", help="the model file's up axis")
    synth.add_argument(
        "--size-m",
        type=float,
        default=None,
        help="longest side of the product in metres (default: from the units)",
    )
    synth.add_argument(
        "--mat",
        nargs="?",
        const="a4",
        default=None,
        choices=["a4", "letter"],
        help="lay the printed scale mat (`recon mat`, A4 unless named) under the product",
    )
    synth.add_argument(
        "--flip",
        action="store_true",
        help="two passes of --views photos: upright (images/upright), then on its side "
        "(images/flipped) to show the base",
    )
    synth.add_argument("--overwrite", action="store_true", help="replace an existing capture")
    synth.set_defaults(handler=_synth)

    mat = verbs.add_parser(
        "mat",
        help="write the printable scale mat (PDF)",
        description="Write a one-page PDF of ArUco/ChArUco markers to print at 100 % and lay "
        "under the product: photos that show it give the model its real size in metres and its "
        "ground, with nothing to type in.",
    )
    mat.add_argument("--out", type=Path, required=True, help="PDF file to write (mat.pdf)")
    mat.add_argument("--paper", choices=["a4", "letter"], default="a4", help="paper size (a4)")
    mat.set_defaults(handler=_mat)

    evaluate = verbs.add_parser(
        "evaluate",
        help="score a reconstruction against ground truth",
        description="Align OUT_DIR's cameras (report.json) to the truth of CAPTURE_DIR and score "
        "registration, poses, surface (F-score) and texture (masked PSNR/SSIM).",
    )
    evaluate.add_argument(
        "capture_dir",
        type=Path,
        help="capture written by `recon synth`, or a folder with a Middlebury *_par.txt",
    )
    evaluate.add_argument("out_dir", type=Path, help="a reconstruction's output folder")
    evaluate.add_argument("--json", type=Path, default=None, help="also write the scores here")
    evaluate.add_argument("--no-texture", action="store_true", help="skip texture scoring")
    evaluate.add_argument(
        "--renders",
        type=Path,
        default=None,
        help="save each held-out view beside the model's render in this folder",
    )
    evaluate.set_defaults(handler=_evaluate)

    showroom = verbs.add_parser(
        "showroom",
        help="place reconstructed products in a reconstructed space",
        description="Place the products (reconstruction output folders) on the shelves, tables "
        "and floor of a scene (a `--mode scene` output folder) and write OUT/showroom.json with "
        "copies of the models, for the walk-through page.",
    )
    showroom.add_argument("scene", type=Path, help="the scene's reconstruction output folder")
    showroom.add_argument(
        "--products", type=Path, nargs="+", required=True, help="product output folders"
    )
    showroom.add_argument("-o", "--out", type=Path, required=True, help="showroom folder")
    showroom.add_argument(
        "--units-per-metre",
        type=float,
        default=None,
        metavar="U",
        help="scene units in one metre, for a scene of unknown units (products are scaled by it)",
    )
    showroom.set_defaults(handler=_showroom)
    if extra_verbs is not None:
        extra_verbs(verbs)
    return parser


def _reconstruct(args: argparse.Namespace) -> int:
    from recon import pipeline

    known = {d: getattr(args, f"{d}_m") for d in ("height", "width", "depth")}
    for name, value in known.items():
        if value is not None and not value > 0:
            raise InputError(f"--{name}-m must be a length above 0 metres")
    if args.max_mb is not None and not args.max_mb > 0:
        raise InputError("--max-mb must be a size above 0 MB (e.g. --max-mb 5)")
    options = (
        pipeline.ReconOptions.for_preset(args.preset, args.mode)
        .with_known_dimensions(known)
        .with_asset_budget(compress=args.compress, max_mb=args.max_mb)
        .with_depth_device(args.depth_on)
    )
    with progress_bar() as progress:
        result = pipeline.reconstruct(
            args.input, args.out, options, overwrite=args.overwrite, progress=progress
        )
    report = result.report
    for warning in report["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False)
    console.print(
        f"{report['images']['registered']} of {report['images']['total']} photos used; "
        f"{report['mesh']['faces']} faces, {report['texture']['size']}² texture, "
        f"{report['timings_s']['total']:.0f} s\nmodel: {result.model_path}"
        f" ({report['glb']['bytes'] / 1e6:.2f} MB)\n"
        f"commerce check: {_commerce_line(report['commerce'])}\nreport: {result.report_path}",
        highlight=False,
    )
    return 0


def _commerce_line(commerce: dict) -> str:
    if commerce["passed"]:
        return f"all {len(commerce['rules'])} rules pass"
    return "fails " + ", ".join(commerce["failed"])


def _check(args: argparse.Namespace) -> int:
    from recon import capture_qa
    from recon.workspace import write_json_atomic

    result = capture_qa.check(args.input)
    if args.json:
        write_json_atomic(args.json, result.to_json())
    out = Console(soft_wrap=True)
    if any(photo["problems"] for photo in result.photos):
        out.print(_check_table(result))
    else:
        out.print(f"no problems found in {len(result.photos)} photos")
    for line in result.advice:
        out.print(f"- {line}", highlight=False)
    for note in result.notes:
        out.print(f"[dim]note: {note}[/]", highlight=False)
    timing = f"({result.timings_s.get('total', 0.0):.1f} s)"
    if result.reshoot:
        out.print(f"[bold red]reshoot:[/] {'; '.join(result.reshoot)} {timing}", highlight=False)
        return 1
    out.print(f"[bold green]fine:[/] {result.usable} usable photos {timing}", highlight=False)
    return 0


def _check_table(result) -> Table:
    flagged = [photo for photo in result.photos if photo["problems"]]
    table = Table(
        title=f"{len(flagged)} of {len(result.photos)} photos with problems", title_justify="left"
    )
    table.add_column("photo")
    table.add_column("problem")
    table.add_column("why")
    for photo in flagged:
        for index, item in enumerate(photo["problems"]):
            table.add_row(photo["image"] if index == 0 else "", item["check"], item["reason"])
    return table


def _frame_range(text: str) -> tuple[int, int]:
    """`A-B` (or one frame `A`) as (first, last)."""
    first, _, last = text.partition("-")
    try:
        return int(first), int(last or first)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give frames as A-B, e.g. 100-130 (0-based, inclusive)"
        ) from None


def _synth(args: argparse.Namespace) -> int:
    from recon import synth

    if args.scene and args.model is not None:
        raise InputError(f"--scene films the procedural shop room: drop the model {args.model}")
    options = synth.SynthOptions(
        views=args.views or (100 if args.scene else 24),
        scene=args.scene,
        size_px=args.size_px,
        background=synth.Background(args.background),
        lighting=synth.Lighting(args.lighting),
        seed=args.seed,
        novel_views=args.novel_views,
        up_axis=synth.UpAxis(args.up),
        size_m=args.size_m,
        video=args.video,
        video_frames=args.video_frames,
        blur_frames=args.blur_frames,
        mat=None if args.mat is None else synth.Paper(args.mat),
        flip=args.flip,
        overwrite=args.overwrite,
    )
    with progress_bar() as progress:
        result = synth.run(args.model, args.out, options, progress=progress)
    width, height, depth = result.size_m
    taken = (
        f"a {len(result.cameras)}-frame video" if args.video else f"{len(result.cameras)} photos"
    )
    console.print(
        f"wrote {taken} and {len(result.novel_cameras)} held-out views of a "
        f"{width:.3f} × {height:.3f} × {depth:.3f} m {'room' if args.scene else 'product'} "
        f"to {result.out_dir}"
    )
    return 0


def _mat(args: argparse.Namespace) -> int:
    from recon import mat

    path = mat.write_mat_pdf(args.out, args.paper)
    layout = mat.layout_for(args.paper)
    console.print(
        f"wrote {path} ({layout.paper.value.upper()}, {layout.square_mm:g} mm squares): print it "
        'at 100 % ("Actual size") and check that its ruler measures 10 cm',
        highlight=False,
    )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from recon import evaluation

    options = evaluation.EvaluateOptions(score_texture=not args.no_texture, render_dir=args.renders)
    scores = evaluation.evaluate(args.capture_dir, args.out_dir, options)
    if args.json:
        evaluation.write_scores(scores, args.json)
    Console().print(_scores_table(scores))
    return 0


def _showroom(args: argparse.Namespace) -> int:
    from recon import showroom

    scene = showroom.load_reconstruction(args.scene)
    ratio = args.units_per_metre
    if ratio is not None and not ratio > 0:
        raise InputError("--units-per-metre must be above 0")
    if scene.units == "metre" and ratio is not None and ratio != 1.0:
        raise InputError("the scene is in metres; leave out --units-per-metre")
    if scene.units != "metre":
        console.print(
            "[yellow]warning:[/] the scene's units are unknown: products are scaled by "
            f"{ratio or 1.0:g} scene units per metre"
            + ("" if ratio else " (give --units-per-metre for their real size)"),
            highlight=False,
        )
    options = showroom.PlacementOptions(model_units_per_metre=ratio or 1.0)
    layout = showroom.build_showroom(args.scene, args.products, args.out, options=options)
    table = Table(title=f"showroom: {args.out / showroom.SHOWROOM_FILE}")
    for column in ("product", "from", "surface", "position", "turn"):
        table.add_column(column)
    for product, folder in zip(layout.products, args.products, strict=True):
        surface = layout.scene.surface(product.surface)
        x, y, z = product.position
        table.add_row(
            f"{product.id} {product.name}",
            str(folder),
            f"{surface.id} {surface.kind.value}",
            f"{x:.2f}, {y:.2f}, {z:.2f}",
            f"{product.rotation_y_deg:.0f}°",
        )
    Console().print(table)
    return 0


def _scores_table(scores: dict) -> Table:
    table = Table(title=f"{scores['reconstruction']} vs {scores['capture']}", show_header=False)
    images = scores["images"]
    table.add_row("registered", f"{images['registered']} / {images['truth']}")
    if "error" in scores:
        table.add_row("error", scores["error"])
    if pose := scores.get("pose"):
        table.add_row("rotation error (median)", f"{pose['rotation_error_deg']['median']:.4f}°")
        table.add_row("centre error (median)", f"{pose['center_error_pct']['median']:.4f} %")
    if alignment := scores.get("alignment"):
        table.add_row(
            "surface ICP correction",
            f"{alignment['icp_rotation_deg']:.3f}°, {alignment['icp_shift_pct']:.3f} % "
            "(after the camera alignment)",
        )
    if geometry := scores.get("geometry"):
        for tau, f_score in geometry["f_score"].items():
            table.add_row(
                f"F-score @ {tau} %",
                f"{f_score:.4f}  (accuracy {geometry['accuracy'][tau]:.4f}, "
                f"completeness {geometry['completeness'][tau]:.4f})",
            )
        if observed := geometry.get("observed"):
            for tau, f_score in observed["f_score"].items():
                table.add_row(
                    f"… on the seen surface @ {tau} %",
                    f"{f_score:.4f}  (accuracy {observed['accuracy'][tau]:.4f} on the "
                    f"{observed['fraction']:.0%} of the model by seen truth)",
                )
    if (texture := scores.get("texture")) and texture.get("views"):
        frame = f", in the {texture['frame']} frame" if "frame" in texture else ""
        table.add_row(
            "texture PSNR",
            f"{texture['psnr_db']:.2f} dB (min {texture['psnr_db_min']:.2f}{frame})",
        )
        table.add_row("texture SSIM", f"{texture['ssim']:.4f}")
    for warning in scores.get("warnings", []):
        table.add_row("warning", warning)
    return table


@contextmanager
def progress_bar() -> Iterator[ProgressCallback]:
    """A terminal progress bar with one row per stage, fed by the library's progress events."""
    with Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[message]}"),
        console=console,
        transient=False,
    ) as bar:
        tasks: dict[str, int] = {}

        def report(stage: str, fraction: float, message: str) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=1.0, message="")
            bar.update(tasks[stage], completed=fraction, message=message)

        yield report


if __name__ == "__main__":
    sys.exit(main())
