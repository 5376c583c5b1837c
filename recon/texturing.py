"""Texture baking: a UV atlas for the mesh, filled with colour from the photos (stage `texture`).

The steps, and why each is there:

0. **Surface offsets** (`refine_surface`, from `run`): the mesh moves along its normals, by at
   most three pixel footprints, to where its photos agree on its colour: a surface a pixel off
   shows its print shifted in every other view (the cereal box: 21.3 -> 23.2 dB).
   Then flat faces (`place_planes`, recon/planes.py): found, moved to where the photos agree
   on their print (or refused where they agree less there), and made flat, their edges sharp:
   a box side a fraction of a pixel out or rough shows its print shifted in other views (the
   turntable cereal box: 24.0 -> 26.8 dB).
1. **Visibility**: the mesh's depth is rendered from every photo's camera; a face counts as seen
   when its sample points match that depth, lie inside the photo and inside the product's
   outline (`bakeable`: the mask less its grown margin, so background next to the
   silhouette is never baked).
2. **View selection**: each face prefers the photo that sees it largest and most frontally,
   away from silhouettes and depth steps (where pose error bleeds other surfaces in); a Potts
   smoothing over the face adjacency, then merging of small patches, gives large patches from
   one photo each, because seams come from switching photos.
3. **Atlas**: each patch becomes a chart laid out as its photo sees it, so texels follow the
   photo's pixels and chart borders fall where the photo changes anyway; faces no photo sees
   are box-projected. xatlas packs the charts with a gutter of `padding_px`. (xatlas' own
   charting took 6–150 s for a 100k-face mesh here, against ~0.5 s for this.)
4. **Colour levelling**: per-photo colour gains from the overlaps (exposure, white balance),
   then per-vertex additive corrections that close the remaining colour steps along seams
   (Waechter, Moehrle and Goesele, "Let there be color!", ECCV 2014).
5. **Bake**: every texel samples its face's photo (bicubic) at the projection of its 3D point;
   texels hidden in that photo fall back to the next best photo that sees them.
6. **Fill**: faces no photo sees are coloured by diffusion from their neighbours; chart borders
   are dilated by `padding_px` and the unused rest of the atlas is filled smoothly (push-pull),
   so neither mipmaps nor JPEG blocks pull black into the model.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numba
import numpy as np
import open3d as o3d
import scipy.sparse
import scipy.sparse.csgraph
import scipy.sparse.linalg
import trimesh
import xatlas

from recon import capture_qa, fidelity
from recon.cameras import Camera, spread_cameras
from recon.errors import InputError, StageError
from recon.export import ExportOptions, vertex_normals, write_glb
from recon.geometry import face_graph
from recon.masks import MaskOptions
from recon.orient import hold_known_size
from recon.planes import Plane, PlaneOptions, find_planes, nearest_planes, snap_to_planes
from recon.progress import ProgressCallback
from recon.render import Lighting, OffscreenRenderer, Rendering
from recon.textured_mesh import Primitive, TexturedMesh, load_textured_mesh
from recon.threads import each_photo
from recon.turntable import still_pixels
from recon.workspace import Workspace, atomic_path

logger = logging.getLogger(__name__)

STAGE = "texture"

# Face sample points (barycentric): the centroid and one point towards each corner. A face is
# seen by a photo only when all of them are, so partly hidden faces go to another photo.
_FACE_SAMPLES = np.array(
    [[1 / 3, 1 / 3, 1 / 3], [4 / 6, 1 / 6, 1 / 6], [1 / 6, 4 / 6, 1 / 6], [1 / 6, 1 / 6, 4 / 6]]
)
_FALLBACK_VIEWS = 4  # photos tried, best first, for texels hidden in their face's photo
_HUBER_LEVELS = 6.0  # seam colour mismatch (0-255 levels) beyond which a seam point counts less
_HUBER_LOG = 0.05  # log-colour mismatch (~5 %) beyond which an exposure sample counts less
# A photo that sees a face under this share of its best photo's quality blurs its detail: it
# neither votes in the photo-consistency check nor judges the surface offsets.
SHARP_QUALITY_SHARE = 0.3
PLANE_COARSE_STEP_PX = 0.5  # place_planes' first search steps; then plane_step_px round the best
FLAT_CHART_AREA_PX2 = 1e-6  # a face laid out in its chart with less area (photo px²) is a line


@dataclass(frozen=True, kw_only=True)
class TextureOptions:
    """How the texture is laid out and which photo colours which face."""

    texture_size: int = 2048  # atlas side in px, a power of two (presets: 1024 / 2048 / 4096)
    padding_px: int = 4  # gutter between charts and how far chart colours are dilated into it
    # Photos colour the model only inside the product's outline (see bakeable): the masks'
    mask_margin_rel: float = MaskOptions().mask_dilate_rel  # grown margin (× the long side)
    outline_inset_px: int = 2  # is taken off, and this much more
    edge_band_px: int = 3  # faces this close to a silhouette or depth step in a photo ...
    edge_penalty: float = 0.1  # ... have their quality from that photo multiplied by this
    depth_edge_ratio: float = 0.03  # depth step (relative to depth) that counts as an edge
    depth_tolerance_px: float = 1.0  # depth test slack, in pixel footprints at the face
    min_view_cos: float = 0.15  # faces seen more obliquely than acos(this) are not used
    smoothness: float = 0.4  # Potts cost of a photo change across an edge (data cost is 0..1)
    smoothing_iterations: int = 12  # rounds of greedy relabelling (ICM)
    min_patch_faces: int = 24  # patches smaller than this join a neighbouring patch's photo
    # Surface offsets (refine_surface): before baking, the mesh moves along its normals, by up to
    # offset_search_px pixel footprints in steps of offset_step_px, to where the photos that see
    # it agree best on its colour (their colour variance, summed over
    # offset_smoothing_rounds rings of neighbours, must fall by offset_min_gain). A surface
    # ~1 px off (the cereal box's sides, 0.5 mm) shows its print shifted in every other view;
    # 0 turns this off.
    offset_search_px: float = 3.0
    offset_step_px: float = 0.25
    offset_smoothing_rounds: int = 8
    offset_min_gain: float = 0.1
    offset_min_variance: float = 10.0  # levels²: photos agreeing better than this stay put
    # faces near a silhouette or depth step in more than this share of their photos stay put
    offset_rim_share: float = 0.5
    # Flat faces made flat and their edges sharp (recon/planes.py), after the offsets; None
    # turns it off.
    planes: PlaneOptions | None = field(default_factory=PlaneOptions)
    # place_planes' fine steps round its coarse best (PLANE_COARSE_STEP_PX, over
    # ±offset_search_px), in pixel footprints
    plane_step_px: float = 0.1
    # The share by which a plane's colour variance must fall for it to move: a whole face of
    # thousands of samples shows a real minimum where one face's neighbourhood shows noise
    # (the cereal box's sides: 3 % at 0.5-0.7 px in, where fusion left them 0.3-0.4 mm out).
    plane_min_gain: float = 0.01
    # A plane is refused where its faces' colour variance on it exceeds theirs as they are by
    # more than this share (measured: a box's faces -0.39 to +0.05; a soup can's ringed lid
    # +0.8, the white mug's inner floor +0.39).
    plane_max_loss: float = 0.15
    level_exposure: bool = True  # per-photo colour gains estimated from overlaps
    # A photo whose colour of a face lies this far (RGB distance, 0-255 levels) from the median
    # of the photos that see it is not used for that face (occlusions the depth test missed,
    # background bled in by pose error); 0 turns the check off.
    consistency_levels: float = 40.0
    level_seams: bool = True  # per-vertex colour corrections that close seams (Waechter 2014)
    seam_smoothness: float = 10.0  # weight of smooth corrections against closing seams
    level_blur_px: float = 1.5  # Gaussian blur of photos where levelling samples colours
    export: ExportOptions = field(default_factory=ExportOptions)  # how the GLB is written
    # Fidelity self-check (recon/fidelity.py): this many photos are kept out of the texture and
    # the model is compared with them; only when at least holdout_min_photos are registered.
    holdout_photos: int = 2
    holdout_min_photos: int = 12
    # Colours from at most this many photos, spread round the product (None: every photo). A
    # mustard bottle's 72 photos on a table (depth from 36): every photo -> 36 -> 24, texture
    # 30.5 -> 18.1 -> 12.8 s, novel-view PSNR 31.72 -> 31.73 -> 31.67 dB.
    max_photos: int | None = 36
    # Photos the capture's checks found blurry (capture_qa.blurry_photos) have their quality
    # for every face multiplied by this: they colour what no sharp photo sees well, and are
    # held out or spread over only where too few sharp ones are left. Three of 24 photos
    # smeared 15 px (benchmarks/phone_photos.py), novel-view PSNR / SSIM: mustard on a table
    # 29.7 -> 30.6 dB / 0.912 -> 0.929, plain soup can 27.4 -> 28.7 / 0.866 -> 0.897,
    # shoe on a table 25.7 both / 0.821 -> 0.824, plain avocado 35.9 -> 35.2 / 0.957 -> 0.960
    # (sharper, where the blur had hidden a slight misfit); 0.05-0.3 within 0.1 dB of each
    # other. The benchmark's avocado on a table, two upper photos called blurry (22 % as sharp
    # as the median; the table's far edge out of them): 35.53 dB both.
    blurry_photo_weight: float = 0.1


@dataclass(frozen=True)
class BakedTexture:
    """A mesh with its UV atlas and baked colour texture."""

    vertices: np.ndarray  # (k, 3) float64, split along UV seams (k ≥ input n)
    faces: np.ndarray  # (m, 3) int64, in the input's face order
    uv: np.ndarray  # (k, 2) float64 in [0, 1], origin at the texture's bottom-left
    normals: np.ndarray  # (k, 3) float64 unit normals of the unsplit mesh (no seam creases)
    texture: np.ndarray  # (S, S, 3) uint8 RGB, row 0 at the top
    source_vertex: np.ndarray  # (k,) int64: the input vertex each output vertex copies
    face_view: np.ndarray  # (m,) int64: the photo each face was coloured from, -1 for none
    stats: dict


@dataclass(frozen=True)
class TextureResult:
    model_path: Path
    vertices: int
    faces: int
    texture_size: int
    timings_s: dict[str, float]
    stats: dict
    fidelity: list[dict]  # per held-out photo (recon/fidelity.py); empty when none was held out


def run(
    workspace: Workspace,
    options: TextureOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> TextureResult:
    """Texture the workspace's mesh from its photos and write the textured GLB.

    Reads mesh_path (SfM frame), the SfM cameras and undistorted photos, masks when present and
    orient.json (SfM → output frame; identity when absent). Writes textured_model_path in the
    output frame.
    """
    options = options or TextureOptions()
    started = time.perf_counter()
    if not workspace.mesh_path.exists():
        raise StageError(STAGE, f"no mesh at {workspace.mesh_path}: run the mesh stage first")
    try:
        cameras = workspace.read_sfm_cameras()
    except InputError as error:
        raise StageError(STAGE, f"cannot read the SfM cameras ({error}); run sfm first") from error
    mesh = trimesh.load(workspace.mesh_path, process=False, force="mesh")
    if len(mesh.faces) == 0:
        raise StageError(STAGE, f"{workspace.mesh_path} has no triangles: the mesh stage failed")
    matrix = read_orientation(workspace.orient_path)
    vertices = np.asarray(mesh.vertices, dtype=np.float64) @ matrix[:3, :3].T + matrix[:3, 3]
    cameras = [camera.transformed(matrix) for camera in cameras]

    blurry: set[str] = set()
    if workspace.capture_path.exists():
        blurry = capture_qa.blurry_photos(workspace.read_capture())
    sharp = {i for i, camera in enumerate(cameras) if camera.name not in blurry}
    holdout = []
    if len(cameras) >= options.holdout_min_photos:
        # (a blurred photo held out would fault the model for the blur)
        candidates = sharp if len(sharp) >= options.holdout_min_photos else None
        holdout = fidelity.choose_holdout(cameras, options.holdout_photos, candidates)
    baked_from = [i for i in range(len(cameras)) if i not in holdout]
    if options.max_photos is not None and len(baked_from) > options.max_photos:
        sharp_left = [i for i in baked_from if i in sharp]
        pool = sharp_left if len(sharp_left) >= options.max_photos else baked_from
        spread = spread_cameras([cameras[i] for i in pool], options.max_photos)
        baked_from = [pool[i] for i in spread]
    weights = [1.0 if i in sharp else options.blurry_photo_weight for i in baked_from]
    # On a turntable the fidelity check compares each held-out photo with the rest of its
    # tripod position (still_room): every photo is read there, else only the ones used.
    turntable = json.loads(workspace.sfm_cameras_path.read_text()).get("turntable", {})
    read = range(len(cameras)) if turntable.get("rings") else sorted({*baked_from, *holdout})
    images, masks = read_photos_and_masks(workspace, cameras, read)
    loaded = time.perf_counter()
    faces = np.asarray(mesh.faces, dtype=np.int64)
    used = (
        [cameras[i] for i in baked_from],
        [images[i] for i in baked_from],
        [masks[i] for i in baked_from] if any(masks[i] is not None for i in read) else None,
    )
    # One look at the photos serves the offsets and the planes: the offsets move the surface
    # by a few pixels at most, too little to change which photos see a face. Looked at again
    # after the offsets, nine benchmark captures (standard) came out within 0.01 dB and
    # 0.0001 F-score, for ~1.2 s more each.
    views = None
    if options.offset_search_px > 0 or options.planes is not None:
        baked_cameras, baked_images, baked_masks = used
        views = analyse_views(
            vertices, faces, baked_cameras, baked_images,
            _masks_or_none(baked_masks, baked_cameras), options, photo_weights=weights,
        )  # fmt: skip
    offset_stats: dict = {}
    if options.offset_search_px > 0:
        vertices, offset_stats = refine_surface(vertices, faces, *used, options, views=views)
    offsets_done = time.perf_counter()
    plane_stats: dict = {}
    if options.planes is not None:
        footprint = median_footprint(vertices, cameras)
        planes = find_planes(vertices, faces, footprint, options.planes)
        planes, placing = place_planes(
            vertices, faces, planes, footprint, *used, options, views=views
        )
        vertices, plane_stats = snap_to_planes(vertices, faces, planes, footprint, options.planes)
        plane_stats.update(placing)
    # The surface has its final shape: a dimension the merchant typed holds on it exactly.
    factor = hold_known_size(workspace.orient_path, vertices)
    if factor != 1.0:
        scaling = np.diag([factor, factor, factor, 1.0])
        vertices = vertices * factor
        cameras = [camera.transformed(scaling) for camera in cameras]
        used = ([cameras[i] for i in baked_from], *used[1:])
    refined = time.perf_counter()
    baked = bake_texture(vertices, faces, *used, options, photo_weights=weights, progress=progress)
    written = time.perf_counter()
    # The photo of each face, by its index in cameras.json: size tiers lay their charts out so.
    face_views = np.where(baked.face_view >= 0, np.asarray(baked_from)[baked.face_view], -1)
    with atomic_path(workspace.face_views_path) as tmp, open(tmp, "wb") as file:
        np.save(file, face_views.astype(np.int32))
    write_glb(
        workspace.textured_model_path,
        baked.vertices,
        baked.faces,
        baked.uv,
        baked.texture,
        normals=baked.normals,
        options=options.export,
    )
    checked = time.perf_counter()
    # On a turntable (SfM found one: recon.turntable) the product turned under the room's
    # lights, and the room stayed still behind it: the check matches the shading and takes
    # what other photos of the tripod position show unchanged for the room.
    faithfulness = fidelity.check_fidelity(
        load_textured_mesh(workspace.textured_model_path),
        [cameras[i] for i in holdout],
        [images[i] for i in holdout],
        [masks[i] for i in holdout],
        match_shading=bool(turntable.get("detected")),
        still_room=[still_room(i, cameras, images, turntable) for i in holdout],
    )
    timings = {
        "load": loaded - started,
        "offsets": offsets_done - loaded,
        "planes": refined - offsets_done,
        **baked.stats["timings_s"],
        "write": checked - written,
        "fidelity": time.perf_counter() - checked,
        "total": time.perf_counter() - started,
    }
    return TextureResult(
        model_path=workspace.textured_model_path,
        vertices=len(baked.vertices),
        faces=len(baked.faces),
        texture_size=options.texture_size,
        timings_s=timings,
        stats={**baked.stats, **offset_stats, **plane_stats},
        fidelity=faithfulness,
    )


def still_room(
    index: int, cameras: list[Camera], images: list[np.ndarray], turntable: dict
) -> np.ndarray | None:
    """(h, w) bool where photo `index` shows the turntable's room unchanged from the other
    photos of its tripod position (turntable.still_pixels), or None off a turntable."""
    name = cameras[index].name
    ring = next((set(r) for r in turntable.get("rings", []) if name in r), set())
    shape = images[index].shape
    others = [
        image
        for camera, image in zip(cameras, images, strict=True)
        if camera.name in ring and camera.name != name and image.shape == shape
    ]
    return still_pixels(images[index], others) if others else None


def read_orientation(path: Path) -> np.ndarray:
    """The 4×4 SfM → output-frame matrix from orient.json ({"matrix": 4×4}); identity if absent."""
    if not Path(path).exists():
        return np.eye(4)
    try:
        matrix = np.asarray(json.loads(Path(path).read_text())["matrix"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as error:
        raise StageError(STAGE, f"{path} is malformed ({error}); re-run orient") from error
    if (
        matrix.shape != (4, 4)
        or not np.isfinite(matrix).all()
        or np.linalg.det(matrix[:3, :3]) <= 0
    ):
        raise StageError(STAGE, f"{path} holds no proper 4×4 similarity; re-run the orient stage")
    return matrix


def bake_texture(
    vertices: np.ndarray,
    faces: np.ndarray,
    cameras: list[Camera],
    images: list[np.ndarray],
    masks: list[np.ndarray | None] | None = None,
    options: TextureOptions | None = None,
    *,
    photo_weights: Sequence[float] | None = None,
    progress: ProgressCallback | None = None,
) -> BakedTexture:
    """Build a UV atlas for the mesh and bake the photos into it.

    vertices: (n, 3) float; faces: (m, 3) int; cameras: one per photo, in the mesh's frame;
    images: (h, w, 3) uint8 RGB photos of the cameras' sizes; masks: per photo an (h, w) bool
    product silhouette or None (no mask); photo_weights: per photo a factor on its quality
    for every face (`TextureOptions.blurry_photo_weight`; None: all 1).
    """
    options = options or TextureOptions()
    vertices, faces = _check_inputs(vertices, faces, cameras, images, masks, options)
    masks = list(masks) if masks is not None else [None] * len(cameras)
    report = _Reporter(progress)
    timings: dict[str, float] = {}

    clock = time.perf_counter()
    views = analyse_views(
        vertices, faces, cameras, images, masks, options,
        photo_weights=photo_weights, progress=report,
    )  # fmt: skip
    timings["visibility"] = time.perf_counter() - clock
    report(0.55, "views analysed")

    clock = time.perf_counter()
    gains = views.photo_gains(options)
    quality = views.quality
    rejected = 0
    if options.consistency_levels > 0:
        # Photos that see a face much smaller than its best photo blur its detail: they do
        # not outvote the sharp ones.
        sharp = views.sharp_samples()
        outliers = inconsistent_samples(views.face_colors, gains, options.consistency_levels, sharp)
        face, view = views.face_colors[0][outliers], views.face_colors[1][outliers]
        quality = quality.copy()
        quality[face, view] = 0.0
        rejected = int(outliers.sum())
    timings["consistency"] = time.perf_counter() - clock

    clock = time.perf_counter()
    adjacency = trimesh.Trimesh(vertices, faces, process=False).face_adjacency
    cost = data_cost(quality)
    raw_labels = np.where(np.isfinite(cost).any(axis=1), np.argmin(cost, axis=1), -1)
    labels = select_views(cost, adjacency, options)
    if (labels < 0).all():
        raise StageError(
            STAGE,
            "no photo sees the mesh: the cameras and the mesh are not in one frame "
            "(check sfm/cameras.json and orient.json) or the mesh lies outside every photo",
        )
    timings["selection"] = time.perf_counter() - clock

    clock = time.perf_counter()
    source_vertex, atlas_faces, uv, atlas_info = build_atlas(
        vertices, faces, labels, cameras, adjacency, options
    )
    timings["atlas"] = time.perf_counter() - clock
    report(0.6, f"atlas: {atlas_info['charts']} charts")

    clock = time.perf_counter()
    corrections = None
    if options.level_seams:
        corrections = seam_corrections(vertices, faces, labels, views, gains, adjacency, options)
    timings["levelling"] = time.perf_counter() - clock
    report(0.7, "colours levelled")

    clock = time.perf_counter()
    size = options.texture_size
    face_id, bary = rasterize_atlas(uv * size, atlas_faces, size)
    timings["rasterize"] = time.perf_counter() - clock
    clock = time.perf_counter()
    colors, baked_mask, bake_stats = _bake_texels(
        vertices, faces, face_id, bary, labels, cost, views, images, gains, corrections
    )
    timings["sample"] = time.perf_counter() - clock
    report(0.9, "texels sampled")

    clock = time.perf_counter()
    colors = _fill_unseen(vertices, faces, face_id, bary, colors, baked_mask)
    texture = fill_atlas(colors, face_id >= 0, options.padding_px)
    timings["fill"] = time.perf_counter() - clock
    report(1.0, "texture baked")

    baked = _textured(
        vertices,
        faces,
        (source_vertex, atlas_faces, uv, atlas_info),
        texture,
        labels,
        face_id >= 0,
        timings,
        patches_unsmoothed=count_patches(raw_labels, adjacency),
        patches=count_patches(labels, adjacency),
        exposure_gains=np.round(gains, 3).tolist(),
        inconsistent_views=rejected,
        **bake_stats,
    )
    stats = baked.stats
    logger.info(
        "baked %d² texture: %d charts, %d patches (%d before smoothing), %d unseen faces, %.1f s",
        size,
        stats["charts"],
        stats["patches"],
        stats["patches_unsmoothed"],
        stats["unseen_faces"],
        sum(timings.values()),
    )
    return baked


def _textured(
    vertices: np.ndarray,
    faces: np.ndarray,
    atlas: tuple[np.ndarray, np.ndarray, np.ndarray, dict],
    texture: np.ndarray,
    labels: np.ndarray,
    covered: np.ndarray,
    timings: dict[str, float],
    **stats,
) -> BakedTexture:
    """The BakedTexture of the (n, 3) `vertices` / (m, 3) `faces` surface laid out by `atlas`
    (build_atlas's source_vertex, atlas faces, uv and info), with the stats every texture
    reports (its size, faces, unseen faces, the (S, S) bool `covered` texels' share, timings)
    and the caller's own `stats` before the timings."""
    source_vertex, atlas_faces, uv, atlas_info = atlas
    return BakedTexture(
        vertices=vertices[source_vertex],
        faces=atlas_faces,
        uv=uv,
        normals=vertex_normals(vertices, faces)[source_vertex],
        texture=texture,
        source_vertex=source_vertex,
        face_view=labels,
        stats={
            **atlas_info,
            "faces": len(faces),
            "vertices": len(source_vertex),
            "texture_size": len(texture),
            "used_texel_fraction": float(covered.mean()),
            "unseen_faces": int((labels < 0).sum()),
            **stats,
            "timings_s": {key: round(value, 3) for key, value in timings.items()},
        },
    )


def transfer_texture(
    source: Primitive,
    vertices: np.ndarray,
    faces: np.ndarray,
    cameras: list[Camera],
    options: TextureOptions | None = None,
    *,
    source_views: np.ndarray | None = None,
) -> BakedTexture:
    """A textured copy of `source` on another surface near it (a simplified copy: size tiers),
    its colour taken from source's texture rather than the photos.

    source: a textured primitive (its texture already levelled and seamless); vertices (n, 3),
    faces (m, 3): the new surface in source's frame; cameras: the photos' cameras in that frame;
    source_views: (source faces,) int photo each source face was coloured from (-1: none), or
    None. Each new face takes the photo of the source face nearest it, so its charts are laid
    out as that photo saw them (as bake_texture's); without source_views, all are
    box-projected. Every texel takes the colour of the closest point on source.

    Baking from the photos again costs the whole visibility and levelling work (soup can,
    100k -> 50k faces at 1024², loaded machine: 4.0 CPU-s against 1.9 for this), for no better
    a picture (novel-view PSNR of the 50k / 25k tiers: soup can 26.85 / 26.85 -> 26.83 / 26.76
    dB, shoe 24.59 / 24.53 -> 24.65 / 24.59).
    """
    options = options or TextureOptions()
    size = options.texture_size
    if source.texture is None or source.uv is None:
        raise ValueError("the source primitive has no texture to transfer")
    vertices, faces = _check_mesh(vertices, faces, size)
    if source_views is not None and len(source_views) != len(source.faces):
        raise ValueError(
            f"source_views has {len(source_views)} entries for {len(source.faces)} source faces"
        )
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(
        o3d.core.Tensor(np.asarray(source.vertices, np.float32)),
        o3d.core.Tensor(np.asarray(source.faces, np.uint32)),
    )
    corners = vertices[faces]
    labels = np.full(len(faces), -1, np.int64)
    adjacency = trimesh.Trimesh(vertices, faces, process=False).face_adjacency
    if source_views is not None:
        nearest = _closest_points(scene, corners.mean(axis=1))[0]
        labels = np.asarray(source_views, np.int64)[nearest]
        # How squarely each photo faces each face: a face its photo sees from behind (the
        # simplified surface turned) would fold its chart over, so it is box-projected; the
        # label borders come out ragged, so small patches join a neighbour's photo that faces
        # them (as in select_views) rather than making thousands of tiny charts.
        normals = unit_face_normals(corners)
        rays = np.array([camera.center for camera in cameras])[None] - corners.mean(axis=1)[:, None]
        cos = np.einsum("fd,fvd->fv", normals, rays) / np.linalg.norm(rays, axis=2)
        cost = np.where(cos >= options.min_view_cos, 1.0 - cos, np.inf).astype(np.float32)
        seen = np.flatnonzero(labels >= 0)
        labels[seen[cos[seen, labels[seen]] <= 0]] = -1
        seen = np.flatnonzero(labels >= 0)
        cost[seen, labels[seen]] = 0.0
        if len(adjacency):
            a = np.concatenate([adjacency[:, 0], adjacency[:, 1]])
            b = np.concatenate([adjacency[:, 1], adjacency[:, 0]])
            labels = _merge_small_patches(labels, cost, a, b, options.min_patch_faces)
    source_vertex, atlas_faces, uv, atlas_info = build_atlas(
        vertices, faces, labels, cameras, adjacency, options
    )
    timings["atlas"] = time.perf_counter() - clock

    clock = time.perf_counter()
    face_id, bary = rasterize_atlas(uv * size, atlas_faces, size)
    covered = face_id >= 0
    # Flat indices and float32 throughout: a 2048² atlas holds millions of texels, and boolean
    # indexing of (S, S, 3) arrays or float64 temporaries cost more than the queries.
    flat = np.flatnonzero(covered.reshape(-1))
    texel_face = face_id.reshape(-1)[flat]
    texel_bary = bary.reshape(-1, 3)[flat]
    corners32 = corners.astype(np.float32)
    points = texel_bary[:, :1] * corners32[texel_face, 0]
    for k in (1, 2):
        points += texel_bary[:, k : k + 1] * corners32[texel_face, k]
    ids, weights = _closest_points(scene, points)
    corner_uv = np.asarray(source.uv, np.float32)[source.faces[ids]]
    source_uv = weights[:, :1] * corner_uv[:, 0]
    for k in (1, 2):
        source_uv += weights[:, k : k + 1] * corner_uv[:, k]
    texture = np.asarray(source.texture)
    if texture.shape[0] > size or texture.shape[1] > size:
        # Texels here span several of the source's: average them first (no aliasing).
        texture = cv2.resize(texture, (size, size), interpolation=cv2.INTER_AREA)
    height, width = texture.shape[:2]
    source_uv[:, 0] = source_uv[:, 0] * width - 0.5
    source_uv[:, 1] = (1.0 - source_uv[:, 1]) * height - 0.5
    colors = np.zeros((size * size, 3), np.float32)
    colors[flat] = _sample(texture, source_uv)
    colors = colors.reshape(size, size, 3)
    texture = fill_atlas(colors, covered, options.padding_px)
    timings["sample"] = time.perf_counter() - clock
    atlas = (source_vertex, atlas_faces, uv, atlas_info)
    return _textured(vertices, faces, atlas, texture, labels, covered, timings)


def _closest_points(
    scene: o3d.t.geometry.RaycastingScene, points: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For (n, 3) points: ((n,) int64 index of the closest triangle, (n, 3) float32
    barycentric weights of the closest point on it)."""
    result = scene.compute_closest_points(o3d.core.Tensor(np.asarray(points, np.float32)))
    ids = result["primitive_ids"].numpy().astype(np.int64)
    uv = result["primitive_uvs"].numpy()
    weights = np.empty((len(uv), 3), np.float32)
    weights[:, 0] = 1.0 - uv[:, 0] - uv[:, 1]
    weights[:, 1:] = uv
    return ids, weights


# -- 1. visibility --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ViewAnalysis:
    """What each photo sees of the mesh (V photos, m faces)."""

    cameras: list[Camera]
    quality: np.ndarray  # (m, V) float32: projected px² × cos(view angle), 0 where not usable
    tolerance: np.ndarray  # (m, V) float32 depth-test slack per face and photo, world units
    depths: list[np.ndarray]  # per photo (h, w) float32 rendered depth, 0 off the mesh
    masks: list[np.ndarray | None]  # per photo (h, w) bool pixels it may bake (bakeable), or None
    edge_bands: list[np.ndarray]  # per photo (h, w) bool: near a silhouette or depth step
    blurred: list[np.ndarray]  # per photo (h, w, 3) uint8, blurred for levelling samples
    # (face, photo, (k, 3) rgb) centroid colours of every usable (face, photo) pair, blurred
    face_colors: tuple[np.ndarray, np.ndarray, np.ndarray]
    sample_near_edge: np.ndarray  # (k,) bool: that face lies near an edge in that photo

    def exposure_samples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """face_colors away from silhouettes and depth steps (blur mixes other surfaces in)."""
        keep = ~self.sample_near_edge
        return tuple(values[keep] for values in self.face_colors)

    def photo_gains(self, options: TextureOptions) -> np.ndarray:
        """(V, 3) per-photo colour gains (`exposure_gains`; all 1 without level_exposure)."""
        if not options.level_exposure:
            return np.ones((len(self.cameras), 3))
        return self._exposure_gains

    @functools.cached_property
    def _exposure_gains(self) -> np.ndarray:
        # Worked out once: the surface offsets and the planes ask the same analysis (~0.6 s).
        gains = exposure_gains(self.exposure_samples(), len(self.cameras))
        gains.flags.writeable = False
        return gains

    def sharp_samples(self) -> np.ndarray:
        """(k,) bool: face_colors samples from a photo that sees their face at least
        SHARP_QUALITY_SHARE as well as the face's best photo does."""
        face, view, _ = self.face_colors
        return self.quality[face, view] >= SHARP_QUALITY_SHARE * self.quality.max(axis=1)[face]


def analyse_views(
    vertices: np.ndarray,
    faces: np.ndarray,
    cameras: list[Camera],
    images: list[np.ndarray],
    masks: list[np.ndarray | None],
    options: TextureOptions,
    *,
    photo_weights: Sequence[float] | None = None,
    progress: Callable[[float, str], None] | None = None,
) -> ViewAnalysis:
    """Per face and photo: visibility (z-buffer), and the quality of the photo for that face
    (times the photo's weight in `photo_weights`, if given)."""
    corners = vertices[faces]
    surface = _Surface(
        vertices=vertices,
        faces=faces,
        centroids=corners.mean(axis=1),
        normals=unit_face_normals(corners),
        samples=np.einsum("sk,fkd->sfd", _FACE_SAMPLES, corners).reshape(-1, 3),
    )
    mesh = TexturedMesh(
        (Primitive(vertices=vertices, faces=faces, normals=vertex_normals(vertices, faces)),)
    )
    # The renderer's GL context belongs to this thread; the photos' arrays are looked at on a
    # thread per core (standard preset, 100k faces: ~2.6 s a look on one core).
    with OffscreenRenderer(mesh, lighting=Lighting.UNLIT) as renderer:
        renderings = [renderer.render(camera, colour=False) for camera in cameras]
    looking = each_photo(
        lambda *view: _look_at_view(surface, *view, options), cameras, images, masks, renderings
    )
    looks = []
    for look, camera in zip(looking, cameras, strict=True):
        looks.append(look)
        if progress:
            progress(0.25 + 0.3 * len(looks) / len(cameras), f"visibility in {camera.name}")
    face_colors = (
        np.concatenate([look.seen for look in looks]),
        np.concatenate([np.full(len(look.seen), v) for v, look in enumerate(looks)]),
        np.concatenate([look.colors for look in looks]),
    )
    near_edge = np.concatenate([look.edges for look in looks])
    quality = np.stack([look.quality for look in looks], axis=1)
    if photo_weights is not None:
        quality *= np.asarray(photo_weights, dtype=np.float32)
    return ViewAnalysis(
        list(cameras),
        quality,
        np.stack([look.tolerance for look in looks], axis=1),
        [look.depth for look in looks],
        [look.product for look in looks],
        [look.band for look in looks],
        [look.blurred for look in looks],
        face_colors,
        near_edge,
    )


@dataclass(frozen=True)
class _Surface:
    """The mesh as analyse_views looks at it from every photo."""

    vertices: np.ndarray  # (n, 3)
    faces: np.ndarray  # (m, 3)
    centroids: np.ndarray  # (m, 3)
    normals: np.ndarray  # (m, 3) unit
    samples: np.ndarray  # (s * m, 3): _FACE_SAMPLES of every face, sample-major


@dataclass(frozen=True)
class _ViewLook:
    """One photo's part of a ViewAnalysis."""

    depth: np.ndarray  # (h, w) float32 rendered depth
    product: np.ndarray | None  # (h, w) bool bakeable product pixels (None: no mask)
    band: np.ndarray  # (h, w) bool near a silhouette or depth step
    blurred: np.ndarray  # (h, w, 3) uint8
    quality: np.ndarray  # (m,) float32
    tolerance: np.ndarray  # (m,) float32
    seen: np.ndarray  # (k,) faces usable in this photo
    colors: np.ndarray  # (k, 3) their blurred centroid colours
    edges: np.ndarray  # (k,) bool: near an edge


def _look_at_view(
    surface: _Surface,
    camera: Camera,
    image: np.ndarray,
    mask: np.ndarray | None,
    rendering: Rendering,
    options: TextureOptions,
) -> _ViewLook:
    """Visibility, quality and colours of every face in one photo (see analyse_views)."""
    faces, centroids, normals = surface.faces, surface.centroids, surface.normals
    n_faces, n_samples = len(faces), len(_FACE_SAMPLES)
    depth = rendering.depth.astype(np.float32)
    product = None
    if mask is not None:
        product = bakeable(mask, options) & rendering.mask
    band = _edge_band(depth, rendering.mask, options)
    blur = cv2.GaussianBlur(image, (0, 0), options.level_blur_px)

    # Face geometry in this photo.
    to_camera = camera.center - centroids
    distance = np.linalg.norm(to_camera, axis=1)
    cos = np.abs(np.einsum("fd,fd->f", normals, to_camera)) / np.maximum(distance, 1e-30)
    vertex_uv, vertex_z = project(camera, surface.vertices)
    tri_uv = vertex_uv[faces]
    area = 0.5 * np.abs(
        (tri_uv[:, 1, 0] - tri_uv[:, 0, 0]) * (tri_uv[:, 2, 1] - tri_uv[:, 0, 1])
        - (tri_uv[:, 1, 1] - tri_uv[:, 0, 1]) * (tri_uv[:, 2, 0] - tri_uv[:, 0, 0])
    )
    in_front = (vertex_z[faces] > 0).all(axis=1)
    # One pixel spans z / f at the face; tilted faces change depth faster across it.
    z_centroid = project(camera, centroids)[1]
    footprint = np.abs(z_centroid) / camera.K[0, 0]
    tangent = np.sqrt(np.maximum(1 - cos**2, 0)) / np.maximum(cos, 0.1)
    slack = footprint * (options.depth_tolerance_px + 1.5 * tangent)

    # The z-buffer test at each sample point (nearest pixel).
    sample_uv, sample_z = project(camera, surface.samples)
    ok, px, py = _depth_test(sample_uv, sample_z, np.tile(slack, n_samples), depth, product, camera)
    ok = ok.reshape(n_samples, n_faces).all(axis=0)
    near_edge = band[py, px].reshape(n_samples, n_faces).any(axis=0)
    usable = ok & in_front & (cos >= options.min_view_cos)
    score = area * cos * np.where(near_edge, options.edge_penalty, 1.0)

    # Colours at the centroids: for exposure gains (away from edges) and for the
    # photo-consistency check (all usable photos).
    seen = np.flatnonzero(usable)
    return _ViewLook(
        depth=depth,
        product=product,
        band=band,
        blurred=blur,
        quality=np.where(usable, score, 0.0).astype(np.float32),
        tolerance=slack.astype(np.float32),
        seen=seen,
        colors=_sample(blur, sample_uv[seen]),  # rows < m: centroids
        edges=near_edge[seen],
    )


def refine_surface(
    vertices: np.ndarray,
    faces: np.ndarray,
    cameras: list[Camera],
    images: list[np.ndarray],
    masks: list[np.ndarray | None] | None,
    options: TextureOptions,
    *,
    views: ViewAnalysis | None = None,
) -> tuple[np.ndarray, dict]:
    """(n, 3) `vertices` moved along their normals to where the photos agree on the surface's
    colour, and facts about the move (bake_texture's inputs and options; `views`: their
    `analyse_views`, when already made).

    A surface a pixel off its true place is coloured from each photo at a point shifted towards
    that photo, so other views see its print shifted and seams misalign (the cereal box's
    sides, 0.4-0.5 mm ≈ 1 px out: 21.3 dB novel-view PSNR where its true surface gets 28).
    Each face's centroid is moved along its normal in steps of offset_step_px pixel footprints
    up to ±offset_search_px; at each offset the colour variance across its sharp photos (exposure
    gains applied) is summed over offset_smoothing_rounds rings of neighbouring faces, and the
    offset of least variance is kept where it beats none by offset_min_gain, lies inside the
    search (not at its end) and the photos disagreed by more than offset_min_variance at none.
    Faces near a silhouette in more than offset_rim_share of their photos stay (the avocado's
    rim moved in by 1 px cost it 1 dB: the outline came up short). Vertices take the mean of
    their faces' offsets. Measured (novel-view PSNR, standard preset): turntable cereal box
    21.26 -> 23.17 dB, cracker box 26.93 -> 29.48, soup can 27.68 -> 28.63, shoe on a table
    25.89 -> 26.78, WaterBottle 26.58 -> 27.17, mustard 31.63 -> 31.71, avocado 35.64 ->
    35.61; ~9 CPU-s on a 100k-face mesh.
    """
    vertices, faces = _check_inputs(vertices, faces, cameras, images, masks, options)
    if views is None:
        views = analyse_views(
            vertices, faces, cameras, images, _masks_or_none(masks, cameras), options
        )
    face, _, _ = views.face_colors
    n_faces = len(faces)
    # Faces near the silhouette (or a depth step) in most of their photos stay: the masks fix
    # the outline there, and a rim moved in leaves the product's outline short in other views.
    near = np.bincount(face[views.sample_near_edge], minlength=n_faces)
    rim = near > options.offset_rim_share * np.bincount(face, minlength=n_faces)
    corners = vertices[faces]
    centroids = corners.mean(axis=1)
    normals = unit_face_normals(corners)
    steps = np.arange(
        -options.offset_search_px, options.offset_search_px + 1e-9, options.offset_step_px
    )
    gains = views.photo_gains(options)
    variance, counts, footprint = _offset_variance(centroids, normals, views, steps, gains)
    # Faces seen sharply by < 3 photos carry no weight; the neighbourhood sums speak for them.
    weight = (counts >= 3).astype(np.float64)
    variance = np.where(weight[:, None] > 0, variance, 0.0)
    adjacency = trimesh.Trimesh(vertices, faces, process=False).face_adjacency
    graph = face_graph(adjacency, n_faces)
    summed, summed_weight = variance * weight[:, None], weight
    for _ in range(options.offset_smoothing_rounds):
        summed, summed_weight = graph @ summed, graph @ summed_weight
    with np.errstate(invalid="ignore", divide="ignore"):
        smoothed = summed / summed_weight[:, None]
    best = np.argmin(np.nan_to_num(smoothed, nan=np.inf), axis=1)
    zero = int(np.argmin(np.abs(steps)))
    valid = (summed_weight > 0) & np.isfinite(footprint)
    better = smoothed[np.arange(n_faces), best] < (1 - options.offset_min_gain) * smoothed[:, zero]
    # A least variance at the end of the search is no minimum found (shading that changes with
    # the photo, a plain surface): those faces stay.
    inside = (best > 0) & (best < len(steps) - 1)
    # Photos that already agree within noise (a plain surface) have nothing to say.
    disagree = smoothed[:, zero] >= options.offset_min_variance
    chosen = np.where(valid & better & inside & disagree & ~rim, steps[best], 0.0)
    offset = chosen * np.where(np.isfinite(footprint), footprint, 0.0)
    vertex_sum = np.zeros(len(vertices))
    vertex_count = np.zeros(len(vertices))
    for j in range(3):
        np.add.at(vertex_sum, faces[:, j], offset)
        np.add.at(vertex_count, faces[:, j], 1.0)
    vertex_offset = vertex_sum / np.maximum(vertex_count, 1)
    moved = vertices + vertex_offset[:, None] * vertex_normals(vertices, faces)
    stats = {
        "offset_moved_faces": int((chosen != 0).sum()),
        "offset_median_px": float(np.median(chosen[chosen != 0])) if (chosen != 0).any() else 0.0,
        "offset_max_px": float(np.abs(chosen).max(initial=0.0)),
    }
    return moved, stats


def _offset_variance(
    centroids: np.ndarray,
    directions: np.ndarray,
    views: ViewAnalysis,
    steps: np.ndarray,
    gains: np.ndarray,
    judged: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """How much the photos disagree on each face's colour as it moves along `directions`:
    ((m, s) colour variance at each of the `steps` (pixel footprints), (m,) how many sharp
    photos judge it, (m,) a pixel's footprint at the face in the nearest of them). gains: the
    photos' colour gains (ViewAnalysis.photo_gains); judged: (m,) bool, the faces to look at
    (default all; the others get no photos)."""
    face, view, _ = views.face_colors
    # Sharp photos away from silhouettes and depth steps (as the consistency check's voters).
    keep = ~views.sample_near_edge & views.sharp_samples()
    if judged is not None:
        keep &= judged[face]
    face, view = face[keep], view[keep]
    n_faces = len(centroids)
    footprint = np.full(n_faces, np.inf)
    for v, camera in enumerate(views.cameras):
        mine = face[view == v]
        depth = project(camera, centroids[mine])[1]
        footprint[mine] = np.minimum(footprint[mine], np.abs(depth) / camera.K[0, 0])
    counts = np.bincount(face, minlength=n_faces).astype(np.float64)
    variance = np.zeros((n_faces, len(steps)))
    rows_of = [np.flatnonzero(view == v) for v in range(len(views.cameras))]

    def colours_at_steps(v: int) -> np.ndarray:
        """(steps, rows, 3) float32: photo v's colours of its faces at each step."""
        mine = face[rows_of[v]]
        out = np.empty((len(steps), len(mine), 3), np.float32)
        for k, step in enumerate(steps):
            points = centroids[mine] + (step * footprint[mine])[:, None] * directions[mine]
            out[k] = _sample(views.blurred[v], project(views.cameras[v], points)[0]) * gains[v]
        return out

    per_photo = list(each_photo(colours_at_steps, range(len(views.cameras))))
    for k in range(len(steps)):
        colours = np.zeros((len(face), 3), np.float32)
        for v, rows in enumerate(rows_of):
            colours[rows] = per_photo[v][k]
        total = np.stack(
            [np.bincount(face, colours[:, c], minlength=n_faces) for c in range(3)], axis=1
        )
        square = np.bincount(face, (colours.astype(np.float64) ** 2).sum(axis=1), minlength=n_faces)
        with np.errstate(invalid="ignore", divide="ignore"):
            variance[:, k] = square / counts - (total**2).sum(axis=1) / counts**2
    return variance, counts, footprint


def place_planes(
    vertices: np.ndarray,
    faces: np.ndarray,
    planes: list[Plane],
    footprint: float,
    cameras: list[Camera],
    images: list[np.ndarray],
    masks: list[np.ndarray | None] | None,
    options: TextureOptions,
    *,
    views: ViewAnalysis | None = None,
) -> tuple[list[Plane], dict]:
    """The planes the photos agree with, each moved along its normal to where they agree best
    on the colour of its faces, and facts about it (`plane_shifts_px`: each kept plane's move
    in pixel footprints; `plane_losses`: for each plane the photos see, how much more their
    colours differ on it than on the surface as it is; `planes_refused`).

    Summed over thousands of faces, the photos place a plane to a tenth of a pixel, where one
    face's neighbourhood (refine_surface) is off by a pixel: the turntable cereal box's narrow
    sides come out of fusion and offsets 0.3-0.4 mm (~0.7 px) too far out. A plane is refused
    where the faces it would pull (within snap_px of it) show the photos' colours less alike on
    it than where they are: flat in outline but not in fact (a soup can's lid, its rings a few
    tenths of a millimetre deep, lost 0.6 dB pulled flat)."""
    if not planes:
        return planes, {"plane_shifts_px": [], "plane_losses": [], "planes_refused": 0}
    if views is None:
        views = analyse_views(
            vertices, faces, cameras, images, _masks_or_none(masks, cameras), options
        )
    gains = views.photo_gains(options)
    corners = vertices[faces]
    centroids = corners.mean(axis=1)
    plane_of = nearest_planes(vertices, faces, planes, footprint, options.planes)
    on_plane, directions = centroids.copy(), np.zeros_like(centroids)
    for k, plane in enumerate(planes):
        mine = plane_of == k
        own = centroids[mine]
        # Faces are judged where they will lie: on the plane.
        on_plane[mine] = own - np.outer(own @ plane.normal - plane.offset, plane.normal)
        directions[mine] = plane.normal
    pulled = plane_of >= 0
    as_is, counts, face_footprint = _offset_variance(
        centroids, unit_face_normals(corners), views, np.zeros(1), gains, pulled
    )
    # The search, coarse then fine: each plane's own faces at every coarse step, then at fine
    # steps round its best (24 looks at each face where fine steps throughout took 61).
    reach = options.offset_search_px
    coarse = np.arange(-reach, reach + 1e-9, PLANE_COARSE_STEP_PX)
    region = np.zeros(len(faces), bool)
    for plane in planes:
        region[plane.faces] = True
    coarse_variance = _offset_variance(on_plane, directions, views, coarse, gains, region)[0]
    zero = int(np.argmin(np.abs(coarse)))
    placed, moves, losses, refused = [], [], [], 0
    for k, plane in enumerate(planes):
        judged = (plane_of == k) & (counts >= 3) & np.isfinite(face_footprint)
        if not judged.any():  # no photo sees it (a base closed by the hull): it stays flat
            placed.append(plane)
            moves.append(0.0)
            continue
        own = np.zeros(len(faces), bool)
        own[plane.faces] = True
        own &= judged
        if not own.any():
            own = judged
        curve = coarse_variance[own].mean(axis=0)
        best = int(np.argmin(curve))
        step = 0.0
        # As refine_surface: a minimum at the search's end is none.
        if 0 < best < len(coarse) - 1:
            half = PLANE_COARSE_STEP_PX
            fine = coarse[best] + np.arange(-half, half + 1e-9, options.plane_step_px)
            fine_curve = _offset_variance(on_plane, directions, views, fine, gains, own)[0][
                own
            ].mean(axis=0)
            # A small gain is noise.
            if fine_curve.min() < (1 - options.plane_min_gain) * curve[zero]:
                step = float(fine[np.argmin(fine_curve)])
        there = _offset_variance(on_plane, directions, views, np.array([step]), gains, judged)[0]
        loss = there[judged, 0].mean() / as_is[judged, 0].mean() - 1
        losses.append(round(float(loss), 3))
        if loss > options.plane_max_loss:
            refused += 1
            continue
        shift = step * float(np.median(face_footprint[judged]))
        placed.append(dataclasses.replace(plane, offset=plane.offset + shift))
        moves.append(round(step, 2))
    return placed, {"plane_shifts_px": moves, "plane_losses": losses, "planes_refused": refused}


def _masks_or_none(
    masks: list[np.ndarray | None] | None, cameras: list[Camera]
) -> list[np.ndarray | None]:
    return list(masks) if masks is not None else [None] * len(cameras)


def median_footprint(vertices: np.ndarray, cameras: list[Camera]) -> float:
    """The length one photo pixel spans at the mesh's centre, median over the photos."""
    center = vertices.mean(axis=0, keepdims=True)
    return float(np.median([abs(project(c, center)[1][0]) / c.K[0, 0] for c in cameras]))


def _depth_test(
    uv: np.ndarray,
    z: np.ndarray,
    slack: np.ndarray,
    depth: np.ndarray,
    mask: np.ndarray | None,
    camera: Camera,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n,) bool: points whose depth matches the rendered depth at their nearest pixel, inside
    the photo (and the mask); and that pixel's (n,) column and row, clipped into the image."""
    with np.errstate(invalid="ignore"):
        px = np.rint(np.nan_to_num(uv[:, 0], nan=-1.0)).astype(np.int64)
        py = np.rint(np.nan_to_num(uv[:, 1], nan=-1.0)).astype(np.int64)
    inside = (px >= 0) & (px < camera.width) & (py >= 0) & (py < camera.height) & (z > 0)
    px = np.clip(px, 0, camera.width - 1)
    py = np.clip(py, 0, camera.height - 1)
    rendered = depth[py, px]
    ok = inside & (rendered > 0) & (np.abs(z - rendered) <= slack)
    if mask is not None:
        ok &= mask[py, px]
    return ok, px, py


def _edge_band(depth: np.ndarray, covered: np.ndarray, options: TextureOptions) -> np.ndarray:
    """(h, w) bool: pixels near the mesh's silhouette or a depth step in this photo."""
    kernel = np.ones((3, 3), np.uint8)
    far = np.where(covered, depth, np.float32(np.inf)).astype(np.float32)
    nearest = cv2.erode(far, kernel)
    farthest = cv2.dilate(np.where(covered, depth, 0).astype(np.float32), kernel)
    with np.errstate(invalid="ignore"):
        step = (farthest - nearest) > options.depth_edge_ratio * np.maximum(depth, 1e-12)
    silhouette = covered & ~_erode(covered, 1)
    edges = ((step & covered) | silhouette).astype(np.uint8)
    size = 2 * options.edge_band_px + 1
    return cv2.dilate(edges, np.ones((size, size), np.uint8)).astype(bool)


def bakeable(mask: np.ndarray, options: TextureOptions) -> np.ndarray:
    """(h, w) bool: the pixels of a photo that may colour the model: inside the product's
    outline (its mask less the margin the masks stage grew it by, `mask_margin_rel`) by at
    least `outline_inset_px`.

    Stereo carries a product's foot on a little onto plain paper, and the masks' margin let
    that rim take the paper's colour in every photo: a pale line round the black base of the
    plain WaterBottle, where 42 % of its novel views' squared error lay in its lowest 2 %.
    Such faces are now filled from their neighbours (24 × 960 px, standard, novel-view PSNR:
    26.23 -> 28.73 dB; the other synthetic captures within -0.37 and +0.36 dB). Pixels on the
    outline blend the product with the backdrop: baking from 1 px in scored the bottle 0.02 dB
    lower, from 3 px in 0.01 dB lower."""
    outline = fidelity.mask_core(mask, max(mask.shape), options.mask_margin_rel)
    return _erode(outline, options.outline_inset_px)


def _erode(mask: np.ndarray, radius_px: int) -> np.ndarray:
    if radius_px <= 0:
        return mask.astype(bool)
    size = 2 * radius_px + 1
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
    # Pixels outside the image count as background, so products touching the border erode too.
    return cv2.erode(mask.astype(np.uint8), kernel, borderValue=0).astype(bool)


# -- 2. view selection ----------------------------------------------------------------------------


def data_cost(quality: np.ndarray) -> np.ndarray:
    """(m, V) float32 cost of colouring each face from each photo: 0 for its best photo, up to 1
    for a barely usable one, inf where the photo does not see it."""
    best = quality.max(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        cost = 1.0 - quality / best
    return np.where(quality > 0, cost, np.inf).astype(np.float32)


def inconsistent_samples(
    face_colors: tuple[np.ndarray, np.ndarray, np.ndarray],
    gains: np.ndarray,
    levels: float,
    voters: np.ndarray | None = None,
) -> np.ndarray:
    """(k,) bool: the (face, photo) colour samples that disagree with the other photos of their
    face, farther than `levels` (RGB distance) from the per-channel median of the face's voting
    samples (with photo gains applied). voters: (k,) bool samples that vote (default: all);
    the others are only judged. Only faces with ≥ 3 voters are judged, and only when some
    voter lies within `levels` of the median (else no majority says which photo is right)."""
    face, view, rgb = face_colors
    voters = np.ones(len(face), bool) if voters is None else voters
    outliers = np.zeros(len(face), bool)
    if not voters.any():
        return outliers
    counts = np.bincount(face[voters], minlength=int(face.max()) + 1)
    judged = np.flatnonzero(counts[face] >= 3)
    if len(judged) == 0:
        return outliers
    _, rows = np.unique(face[judged], return_inverse=True)
    colour = rgb[judged] * gains[view[judged]].astype(np.float32)
    # Per face, voters in a dense (faces, photos, 3) table with NaN where a photo has none,
    # a block of faces at a time (a scene's hundred photos would make the whole table large).
    voting = voters[judged]
    median = np.empty((rows.max() + 1, 3), np.float32)
    block = max(1, 2_000_000 // gains.shape[0])
    for first in range(0, len(median), block):
        part = voting & (rows >= first) & (rows < first + block)
        table = np.full((min(block, len(median) - first), gains.shape[0], 3), np.nan, np.float32)
        table[rows[part] - first, view[judged][part]] = colour[part]
        median[first : first + len(table)] = np.nanmedian(table, axis=1)  # ≥ 3 voters each
    distance = np.linalg.norm(colour - median[rows], axis=1)
    far = distance > levels
    agreed = np.bincount(rows, ~far & voting, minlength=len(median)) > 0
    outliers[judged] = far & agreed[rows]
    return outliers


def select_views(cost: np.ndarray, adjacency: np.ndarray, options: TextureOptions) -> np.ndarray:
    """(m,) photo per face (-1: none sees it), trading data cost against patch borders.

    cost: (m, V) from `data_cost`; adjacency: (e, 2) pairs of faces sharing an edge. Greedy
    relabelling (ICM) of a Potts energy, then small patches merge into a neighbouring photo
    that sees all their faces.
    """
    n_faces, n_views = cost.shape
    seen = np.isfinite(cost).any(axis=1)
    labels = np.where(seen, np.argmin(cost, axis=1), -1)
    if n_views == 1 or len(adjacency) == 0:
        return labels
    a = np.concatenate([adjacency[:, 0], adjacency[:, 1]])
    b = np.concatenate([adjacency[:, 1], adjacency[:, 0]])
    degree = np.bincount(a, minlength=n_faces).astype(np.float32)
    rng = np.random.default_rng(0)
    for _ in range(options.smoothing_iterations):
        labelled = labels[b] >= 0
        agree = np.bincount(
            a[labelled] * n_views + labels[b][labelled], minlength=n_faces * n_views
        ).reshape(n_faces, n_views)
        energy = cost + options.smoothness * (degree[:, None] - agree)
        best = np.argmin(energy, axis=1)
        # Updating only a random half each round keeps neighbours from swapping back and forth.
        update = seen & (best != labels) & (rng.random(n_faces) < 0.5)
        if not update.any():
            break
        labels[update] = best[update]
    return _merge_small_patches(labels, cost, a, b, options.min_patch_faces)


def _merge_small_patches(
    labels: np.ndarray, cost: np.ndarray, a: np.ndarray, b: np.ndarray, min_faces: int
) -> np.ndarray:
    """Relabel patches smaller than `min_faces`, smallest first, with the photo of a neighbouring
    patch that sees all their faces (the cheapest such photo). One patch at a time, so that two
    small neighbours cannot swap photos and stay apart."""
    labels = labels.copy()
    for _ in range(3):
        patch = _patch_ids(labels, a, b)
        sizes = np.bincount(patch)
        small = np.flatnonzero((sizes < min_faces) & (np.bincount(patch, labels >= 0) > 0))
        if len(small) == 0:
            break
        members = _group(patch, len(sizes))
        across = patch[a] != patch[b]
        neighbours = _group(patch[a[across]], len(sizes), values=b[across])
        moved = 0
        for index in small[np.argsort(sizes[small], kind="stable")]:
            faces = members[index]
            own = labels[faces[0]]
            around = labels[neighbours[index]]
            if (around == own).any():
                continue  # an earlier merge joined it to a larger patch
            candidates = np.unique(around[around >= 0])
            if len(candidates) == 0:
                continue
            totals = cost[np.ix_(faces, candidates)].sum(axis=0)
            best = int(np.argmin(totals))
            if np.isfinite(totals[best]):
                labels[faces] = candidates[best]
                moved += 1
        if moved == 0:
            break
    return labels


def _group(keys: np.ndarray, n: int, *, values: np.ndarray | None = None) -> list[np.ndarray]:
    """values (default: positions) grouped by their key in 0..n-1."""
    order = np.argsort(keys, kind="stable")
    bounds = np.searchsorted(keys[order], np.arange(n + 1))
    items = order if values is None else values[order]
    return [items[bounds[k] : bounds[k + 1]] for k in range(n)]


def _patch_ids(labels: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(m,) connected-component id of each face among neighbours with the same label."""
    same = labels[a] == labels[b]
    graph = scipy.sparse.coo_matrix(
        (np.ones(int(same.sum()), np.int8), (a[same], b[same])), shape=(len(labels),) * 2
    )
    return scipy.sparse.csgraph.connected_components(graph, directed=False)[1]


def count_patches(labels: np.ndarray, adjacency: np.ndarray) -> int:
    """Number of connected same-photo patches among the faces some photo sees."""
    if len(adjacency) == 0:
        return int((labels >= 0).sum())
    patch = _patch_ids(labels, adjacency[:, 0], adjacency[:, 1])
    return len(np.unique(patch[labels >= 0]))


# -- 3. atlas -------------------------------------------------------------------------------------


def build_atlas(
    vertices: np.ndarray,
    faces: np.ndarray,
    labels: np.ndarray,
    cameras: list[Camera],
    adjacency: np.ndarray,
    options: TextureOptions,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict]:
    """UV charts packed into a square atlas: each patch of faces coloured from one photo is laid
    out as that photo sees it, so texels follow the photo's pixels and seams between charts
    fall where the photo changes anyway.

    Faces no photo sees are box-projected at half the density (their colour is smooth), in
    patches of faces facing the same axis. xatlas packs the charts.

    Returns source_vertex (k,) int (the input vertex each atlas vertex copies: vertices split
    where charts meet), faces (m, 3) int into the atlas vertices in the input order, uv (k, 2)
    in [0, 1] (origin bottom-left) and facts about the atlas.
    """
    n_vertices, n_views = len(vertices), len(cameras)
    seen = labels >= 0
    # Faces no photo sees are box-projected: grouped by the axis their normal is closest to.
    chart_label = labels.copy()
    chart_label[~seen] = n_views + _box_axes(vertices, faces, ~seen, adjacency, options)
    if len(adjacency):
        patch = _patch_ids(chart_label, adjacency[:, 0], adjacency[:, 1])
    else:
        patch = np.arange(len(faces))
    # One chart vertex per (patch, mesh vertex).
    keys = patch[:, None] * n_vertices + faces
    unique_keys, inverse = np.unique(keys, return_inverse=True)
    source = unique_keys % n_vertices
    vertex_patch = unique_keys // n_vertices
    patch_label = np.zeros(patch.max() + 1, np.int64)
    patch_label[patch] = chart_label
    vertex_label = patch_label[vertex_patch]
    uv_faces = inverse.reshape(-1, 3)
    uv_px = np.zeros((len(source), 2))
    for label in np.unique(vertex_label[vertex_label < n_views]):
        # Seen patches lie as their photo sees them: one texel per photo pixel, before scaling.
        mine = vertex_label == label
        uv_px[mine] = project(cameras[label], vertices[source[mine]])[0]
    if seen.any():
        seen_uv_area = _triangle_areas_2d(uv_px[uv_faces[seen]])
        px_per_m = math.sqrt(seen_uv_area.sum() / _face_areas(vertices, faces[seen]).sum())
    else:  # all box-projected (a size tier without photo labels): any scale, packing rescales
        px_per_m = 1.0 / math.sqrt(max(_face_areas(vertices, faces).sum(), 1e-24))
    for axis in range(6):
        # Unseen patches at half the density of the seen surface: their colour is smooth.
        mine = vertex_label == n_views + axis
        kept = [d for d in range(3) if d != axis % 3]
        uv_px[mine] = vertices[source[mine]][:, kept] * (0.5 * px_per_m)

    # xatlas finds charts by shared UV positions: spread the charts apart so that patches from
    # different photos (all in the same pixel range) never touch.
    uv_px = _spread(uv_px, vertex_patch)

    # Aim at filling ~60 % of the texture: xatlas then makes an atlas of about the right size,
    # which is scaled to the texture exactly (so the gutter stays near padding_px).
    total_area = float(_triangle_areas_2d(uv_px[uv_faces]).sum())
    size = options.texture_size
    pack_options = xatlas.PackOptions()
    pack_options.resolution = 0  # one atlas, as large as texels_per_unit makes it
    pack_options.texels_per_unit = math.sqrt(0.6 * size * size / max(total_area, 1e-12))
    pack_options.padding = options.padding_px
    pack_options.bruteForce = False  # brute-force placement is ~10× slower for a few % of space
    pack_options.bilinear = True  # a texel of border around charts for bilinear filtering
    atlas = xatlas.Atlas()
    atlas.add_uv_mesh(uv_px.astype(np.float32), uv_faces.astype(np.uint32))
    atlas.generate(xatlas.ChartOptions(), pack_options)
    mapping, atlas_faces, uv = atlas[0]
    atlas_faces = atlas_faces.astype(np.int64)
    if atlas_faces.shape != faces.shape:
        raise StageError(STAGE, "xatlas dropped faces while packing; the atlas cannot be used")
    source_vertex = source[mapping.astype(np.int64)]
    # xatlas normalises u and v by its atlas' width and height: back to texels, then fit the
    # longer side to the texture. Photos run y down and v runs up: flipping v shows each patch
    # in the texture image the way its photo does (easier to read; the model is the same).
    texels = uv.astype(np.float64) * [atlas.width, atlas.height]
    uv = texels / max(atlas.width, atlas.height)
    uv[:, 1] = 1.0 - uv[:, 1]
    # A face that is a line as its photo sees it (a sliver planes.snap_to_planes squashed onto
    # a box's edge: it covers nothing) xatlas leaves unpacked, stretched across the atlas (up
    # to 2,259 texels on the turntable cereal box), where it took the texels of the faces it
    # crossed: they showed its colour, a neighbouring side's, as thin streaks. Its corners get
    # atlas vertices of their own, all at one point, so it takes no texel.
    flat = np.flatnonzero(_triangle_areas_2d(uv_px[uv_faces]) <= FLAT_CHART_AREA_PX2)
    if len(flat):
        corners = atlas_faces[flat]
        atlas_faces[flat] = len(source_vertex) + np.arange(corners.size).reshape(-1, 3)
        source_vertex = np.concatenate([source_vertex, source_vertex[corners.ravel()]])
        uv = np.concatenate([uv, np.repeat(uv[corners[:, 0]], 3, axis=0)])
    info = {
        "charts": int(atlas.chart_count),
        "flat_faces": len(flat),
        "atlas_utilization": float(atlas.utilization),
        "texels_per_photo_px": float(
            pack_options.texels_per_unit * size / max(atlas.width, atlas.height)
        ),
    }
    return source_vertex, atlas_faces, uv, info


def _spread(uv: np.ndarray, chart: np.ndarray) -> np.ndarray:
    """(k, 2) uv with each chart (given per vertex) moved to its own place, side by side in rows
    (a compact layout keeps coordinates small, so float32 keeps tiny triangles intact)."""
    if len(uv) == 0:
        return uv
    _, chart = np.unique(chart, return_inverse=True)
    n_charts = chart.max() + 1
    low = np.full((n_charts, 2), np.inf)
    high = np.full((n_charts, 2), -np.inf)
    np.minimum.at(low, chart, uv)
    np.maximum.at(high, chart, uv)
    extent = high - low + 8.0
    row_width = max(
        math.sqrt(float((extent[:, 0] * extent[:, 1]).sum())), float(extent[:, 0].max())
    )
    corner = np.zeros((n_charts, 2))
    x = y = row_height = 0.0
    for index in np.argsort(-extent[:, 1], kind="stable"):
        if x > 0 and x + extent[index, 0] > row_width:
            x, y, row_height = 0.0, y + row_height, 0.0
        corner[index] = x, y
        x += extent[index, 0]
        row_height = max(row_height, extent[index, 1])
    return uv - low[chart] + corner[chart]


def _box_axes(
    vertices: np.ndarray,
    faces: np.ndarray,
    chosen: np.ndarray,
    adjacency: np.ndarray,
    options: TextureOptions,
) -> np.ndarray:
    """(c,) axis 0..5 (+x, +y, +z, -x, -y, -z) to project each chosen face along, smoothed
    like the view selection so the charts come out large."""
    corners = vertices[faces[chosen]]
    normals = unit_face_normals(corners)
    alignment = np.hstack([normals, -normals])
    # Up to ~70° off the axis still projects without folding; the best axis is ≤ 55° off.
    cost = np.where(alignment > 0.35, 1.0 - alignment, np.inf).astype(np.float32)
    cost[~np.isfinite(cost).any(axis=1), 1] = 0.0  # degenerate faces: any axis
    index = np.full(len(faces), -1)
    index[chosen] = np.arange(int(chosen.sum()))
    if len(adjacency):
        inside = chosen[adjacency[:, 0]] & chosen[adjacency[:, 1]]
        pairs = index[adjacency[inside]]
    else:
        pairs = np.zeros((0, 2), np.int64)
    return select_views(cost, pairs, options)


def _triangle_areas_2d(triangles: np.ndarray) -> np.ndarray:
    """(t,) areas of (t, 3, 2) triangles."""
    a = triangles[:, 1] - triangles[:, 0]
    b = triangles[:, 2] - triangles[:, 0]
    return 0.5 * np.abs(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0])


# -- 4. colour levelling --------------------------------------------------------------------------


def exposure_gains(
    face_colors: tuple[np.ndarray, np.ndarray, np.ndarray], n_views: int, *, rounds: int = 3
) -> np.ndarray:
    """(V, 3) per-photo RGB gains that make overlapping photos agree on the same faces.

    face_colors: (face, photo, rgb) samples. Log colours are modelled as surface + photo offset
    and fitted by least squares (the surfaces eliminated, a V×V system per channel), reweighted
    so that highlights and occlusions count less. The gains are normalised to a geometric mean
    of 1 and kept within [0.5, 2] so that a bad estimate cannot wreck a photo.
    """
    face, view, rgb = face_colors
    # Saturated and very dark samples say nothing about exposure.
    good = (rgb.min(axis=1) > 8) & (rgb.max(axis=1) < 247)
    face, view, log_rgb = face[good], view[good], np.log(rgb[good].astype(np.float64))
    _, face, per_face = np.unique(face, return_inverse=True, return_counts=True)
    shared = per_face[face] >= 2
    face, view, log_rgb = face[shared], view[shared], log_rgb[shared]
    if len(face) == 0:
        return np.ones((n_views, 3))
    n_faces = face.max() + 1
    offsets = np.zeros((n_views, 3))
    weight = np.ones((len(face), 3))
    for _ in range(rounds):
        for c in range(3):
            offsets[:, c] = _exposure_offsets(
                face, view, log_rgb[:, c], weight[:, c], n_faces, n_views
            )
        corrected = log_rgb - offsets[view]
        totals = np.stack(
            [np.bincount(face, weight[:, c], minlength=n_faces) for c in range(3)], axis=1
        )
        sums = np.stack(
            [
                np.bincount(face, weight[:, c] * corrected[:, c], minlength=n_faces)
                for c in range(3)
            ],
            axis=1,
        )
        residual = np.abs(corrected - (sums / np.maximum(totals, 1e-12))[face])
        weight = np.minimum(1.0, _HUBER_LOG / np.maximum(residual, 1e-12))
    return np.clip(np.exp(-offsets), 0.5, 2.0)


def _exposure_offsets(
    face: np.ndarray,
    view: np.ndarray,
    value: np.ndarray,
    weight: np.ndarray,
    n_faces: int,
    n_views: int,
) -> np.ndarray:
    """(V,) offsets a minimising Σ w (value - a_view - m_face)² over a and m, with Σ a = 0."""
    # Each (face, photo) pair is sampled once: a dense (m, V) table is small, and its products
    # run in BLAS (building the sparse ones took most of the levelling's time).
    indicator = np.zeros((n_faces, n_views))
    indicator[face, view] = weight
    face_weight = indicator.sum(axis=1)
    per_view = indicator.sum(axis=0)
    # m_face = Σ w (value - a) / Σ w; substituting it leaves a V×V system in a.
    system = np.diag(per_view) - indicator.T @ (indicator / np.maximum(face_weight, 1e-12)[:, None])
    face_mean = np.bincount(face, weight * value, minlength=n_faces) / np.maximum(
        face_weight, 1e-12
    )
    rhs = np.bincount(view, weight * (value - face_mean[face]), minlength=n_views)
    # The offsets are defined up to a constant: pin their mean to 0 (and photos that share no
    # face with another stay at 0).
    system += np.ones((n_views, n_views)) / n_views + np.eye(n_views) * 1e-9
    return np.linalg.solve(system, rhs)


def seam_corrections(
    vertices: np.ndarray,
    faces: np.ndarray,
    labels: np.ndarray,
    views: ViewAnalysis,
    gains: np.ndarray,
    adjacency: np.ndarray,
    options: TextureOptions,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-vertex additive colour corrections that close the colour steps along patch seams.

    Every (vertex, photo) pair used by some face gets an RGB offset g; least squares makes
    `colour + g` agree across each seam while g varies smoothly inside patches (Waechter et al.
    2014). Returns corner_var (m, 3) int (the offset index of each face corner for the face's
    photo, -1 for unseen faces) and offsets (k, 3) float32.
    """
    n_faces, n_views = len(faces), gains.shape[0]
    labelled = labels >= 0
    keys = faces * n_views + labels[:, None]
    keys[~labelled] = -1
    unique_keys, inverse = np.unique(keys[labelled], return_inverse=True)
    corner_var = np.full((n_faces, 3), -1, np.int64)
    corner_var[labelled] = inverse.reshape(-1, 3)
    n_vars = len(unique_keys)
    if n_vars == 0:
        return corner_var, np.zeros((0, 3), np.float32)

    def var(vertex: np.ndarray, view: np.ndarray) -> np.ndarray:
        return np.searchsorted(unique_keys, vertex * n_views + view)

    # Seams: shared edges whose two faces use different photos. Compare both photos' colours
    # at points on the edge near each of its ends, where both photos really see the point.
    fa, fb = adjacency[:, 0], adjacency[:, 1]
    la, lb = labels[fa], labels[fb]
    seam = np.flatnonzero((la >= 0) & (lb >= 0) & (la != lb))
    edge_vertices = _shared_edges(faces, adjacency[seam])
    rows_plus, rows_minus, targets = [], [], []
    for end in (0, 1):
        near, far = edge_vertices[:, end], edge_vertices[:, 1 - end]
        points = 0.8 * vertices[near] + 0.2 * vertices[far]
        color_a = _sample_views(points, la[seam], fa[seam], gains, views)
        color_b = _sample_views(points, lb[seam], fb[seam], gains, views)
        valid = np.isfinite(color_a).all(axis=1) & np.isfinite(color_b).all(axis=1)
        rows_plus.append(var(near[valid], la[seam][valid]))
        rows_minus.append(var(near[valid], lb[seam][valid]))
        targets.append(color_b[valid] - color_a[valid])
    plus, minus = np.concatenate(rows_plus), np.concatenate(rows_minus)
    target = np.concatenate(targets).astype(np.float64)

    # Smoothness: the offsets of a face's corners for its photo should agree.
    fv = corner_var[labelled]
    smooth = difference_gram(
        np.concatenate([fv[:, 0], fv[:, 1], fv[:, 2]]),
        np.concatenate([fv[:, 1], fv[:, 2], fv[:, 0]]),
        np.full(3 * len(fv), options.seam_smoothness),
        n_vars,
    )
    # A small pull towards 0 fixes the free constant of each patch.
    regular = scipy.sparse.identity(n_vars, format="csr") * 0.1
    # Iteratively reweighted least squares: seam points where the photos disagree wildly (a
    # highlight, an occlusion the depth test missed) must not drag whole patches along.
    weight = np.ones(len(target))
    offsets = np.zeros((n_vars, 3))
    for _ in range(2):
        gram = difference_gram(plus, minus, weight, n_vars) + smooth + regular
        rhs = np.zeros((n_vars, 3))
        np.add.at(rhs, plus, weight[:, None] * target)
        np.add.at(rhs, minus, -weight[:, None] * target)
        # The system is symmetric: a symmetric fill-reducing order factorises it ~20 % faster
        # than SuperLU's default (the same solution).
        solve = scipy.sparse.linalg.splu(
            gram.tocsc(), permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True}
        ).solve
        offsets = solve(rhs)
        residual = np.abs(offsets[plus] - offsets[minus] - target).max(axis=1, initial=0.0)
        weight = np.minimum(1.0, _HUBER_LEVELS / np.maximum(residual, 1e-9))
    return corner_var, offsets.astype(np.float32)


def difference_gram(
    i: np.ndarray, j: np.ndarray, weight: np.ndarray, n: int
) -> scipy.sparse.csr_matrix:
    """(n, n) normal matrix of the rows w·(x_i - x_j)²."""
    return scipy.sparse.coo_matrix(
        (
            np.concatenate([weight, weight, -weight, -weight]),
            (np.concatenate([i, j, i, j]), np.concatenate([i, j, j, i])),
        ),
        shape=(n, n),
    ).tocsr()


def _shared_edges(faces: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """(e, 2) vertex indices of the edge each pair of adjacent faces shares."""
    if len(pairs) == 0:
        return np.zeros((0, 2), np.int64)
    a, b = faces[pairs[:, 0]], faces[pairs[:, 1]]
    in_b = (a[:, :, None] == b[:, None, :]).any(axis=2)  # (e, 3): corners of a also in b
    # Exactly two corners are shared; take them in order.
    order = np.argsort(~in_b, axis=1, kind="stable")[:, :2]
    return np.take_along_axis(a, order, axis=1)


def _sample_views(
    points: np.ndarray,
    view_of_point: np.ndarray,
    face_of_point: np.ndarray,
    gains: np.ndarray,
    views: ViewAnalysis,
) -> np.ndarray:
    """(n, 3) colour of each point in its (blurred) photo with the photo's gain applied; NaN
    where the photo does not see the point."""
    out = np.full((len(points), 3), np.nan, np.float32)
    for v in np.unique(view_of_point):
        mine = np.flatnonzero(view_of_point == v)
        camera = views.cameras[v]
        uv, z = project(camera, points[mine])
        slack = views.tolerance[face_of_point[mine], v]
        ok, px, py = _depth_test(uv, z, slack, views.depths[v], views.masks[v], camera)
        # Blurred colours next to a silhouette or depth step mix in other surfaces.
        ok &= ~views.edge_bands[v][py, px]
        out[mine[ok]] = _sample(views.blurred[v], uv[ok]) * gains[v].astype(np.float32)
    return out


# -- 5. bake --------------------------------------------------------------------------------------


def rasterize_atlas(
    uv_texels: np.ndarray, faces: np.ndarray, size: int, *, reach_texels: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Which face covers each texel, and where: ((S, S) int32 face or -1, (S, S, 3) float32
    barycentrics).

    uv_texels: (k, 2) uv × S. Texel (row r, column c) has its centre at uv ((c + ½)/S,
    1 - (r + ½)/S). Texels within `reach_texels` of a triangle but outside every triangle take
    the nearest triangle's closest point, so bilinear lookups along chart borders read colour of
    the right surface, not gutter.
    """
    xy = np.column_stack([uv_texels[:, 0], size - uv_texels[:, 1]]).astype(np.float64)
    face_id = np.full((size, size), -1, np.int32)
    bary = np.zeros((size, size, 3), np.float32)
    distance = np.full((size, size), np.inf, np.float32)
    _rasterize(xy, faces.astype(np.int64), reach_texels, face_id, bary, distance)
    return face_id, bary


@numba.njit(cache=True, nogil=True)
def _rasterize(xy, faces, reach, face_id, bary, distance):  # pragma: no cover - compiled
    size = face_id.shape[0]
    for f in range(faces.shape[0]):
        ax, ay = xy[faces[f, 0], 0], xy[faces[f, 0], 1]
        bx, by = xy[faces[f, 1], 0], xy[faces[f, 1], 1]
        cx, cy = xy[faces[f, 2], 0], xy[faces[f, 2], 1]
        det = (bx - ax) * (cy - ay) - (by - ay) * (cx - ax)
        if abs(det) < 1e-12:
            continue
        # Edge lengths turn barycentrics into distances from the edges' lines (a lower bound
        # of the distance to the triangle), to skip far bounding-box corners cheaply.
        scale0 = abs(det) / max(math.hypot(cx - bx, cy - by), 1e-12)
        scale1 = abs(det) / max(math.hypot(ax - cx, ay - cy), 1e-12)
        scale2 = abs(det) / max(math.hypot(bx - ax, by - ay), 1e-12)
        x0 = max(math.floor(min(ax, bx, cx) - reach - 0.5), 0)
        x1 = min(math.ceil(max(ax, bx, cx) + reach - 0.5), size - 1)
        y0 = max(math.floor(min(ay, by, cy) - reach - 0.5), 0)
        y1 = min(math.ceil(max(ay, by, cy) + reach - 0.5), size - 1)
        for row in range(y0, y1 + 1):
            py = row + 0.5
            for col in range(x0, x1 + 1):
                px = col + 0.5
                w0 = ((bx - px) * (cy - py) - (by - py) * (cx - px)) / det
                w1 = ((cx - px) * (ay - py) - (cy - py) * (ax - px)) / det
                w2 = 1.0 - w0 - w1
                d = 0.0
                if w0 < 0.0 or w1 < 0.0 or w2 < 0.0:
                    if distance[row, col] == 0.0:
                        continue  # inside another triangle already: nothing can be nearer
                    if max(-w0 * scale0, -w1 * scale1, -w2 * scale2) > reach:
                        continue
                    # Outside: the closest point on the triangle's border.
                    d = np.inf
                    for e in range(3):
                        if e == 0:
                            ux, uy, vx, vy = ax, ay, bx, by
                        elif e == 1:
                            ux, uy, vx, vy = bx, by, cx, cy
                        else:
                            ux, uy, vx, vy = cx, cy, ax, ay
                        ex, ey = vx - ux, vy - uy
                        length2 = ex * ex + ey * ey
                        t = ((px - ux) * ex + (py - uy) * ey) / length2 if length2 > 0 else 0.0
                        t = min(max(t, 0.0), 1.0)
                        dx, dy = ux + t * ex - px, uy + t * ey - py
                        de = math.sqrt(dx * dx + dy * dy)
                        if de < d:
                            d = de
                            if e == 0:
                                w0, w1, w2 = 1.0 - t, t, 0.0
                            elif e == 1:
                                w0, w1, w2 = 0.0, 1.0 - t, t
                            else:
                                w0, w1, w2 = t, 0.0, 1.0 - t
                    if d > reach:
                        continue
                if d < distance[row, col]:
                    distance[row, col] = d
                    face_id[row, col] = f
                    bary[row, col, 0] = w0
                    bary[row, col, 1] = w1
                    bary[row, col, 2] = w2


def _bake_texels(
    vertices: np.ndarray,
    faces: np.ndarray,
    face_id: np.ndarray,
    bary: np.ndarray,
    labels: np.ndarray,
    cost: np.ndarray,
    views: ViewAnalysis,
    images: list[np.ndarray],
    gains: np.ndarray,
    corrections: tuple[np.ndarray, np.ndarray] | None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Sample the photos for every covered texel: ((S, S, 3) float32 colours, (S, S) bool
    baked, stats).

    Each texel tries its face's photo first, then the face's next best photos, until one sees
    the texel's point (depth test and mask)."""
    size = face_id.shape[0]
    flat = np.flatnonzero(face_id.reshape(-1) >= 0)
    texel_face = face_id.reshape(-1)[flat].astype(np.int64)
    texel_bary = bary.reshape(-1, 3)[flat]
    # float32 positions are exact to ~1e-7 of the model size: plenty, at half the memory.
    corners = vertices.astype(np.float32)[faces]
    points = np.zeros((len(flat), 3), np.float32)
    for k in range(3):
        points += texel_bary[:, k, None] * corners[texel_face, k]
    del corners
    colors = np.zeros((len(flat), 3), np.float32)
    done = np.zeros(len(flat), bool)

    n_views = cost.shape[1]
    ranked = np.argsort(cost, axis=1)[:, :_FALLBACK_VIEWS]

    def sample_photo(v: int, mine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The texels `mine` photo v sees, and their colours (a thread per photo)."""
        camera = views.cameras[v]
        uv, z = project(camera, points[mine])
        tolerance = views.tolerance[:, v][texel_face[mine]]
        ok, _, _ = _depth_test(uv, z, tolerance, views.depths[v], views.masks[v], camera)
        hit = mine[ok]
        color = _sample(images[v], uv[ok]) * gains[v].astype(np.float32)
        if corrections is not None:
            corner_var, offsets = corrections
            # Offsets exist for the face's own photo; fallback photos take its gain only.
            own = labels[texel_face[hit]] == v
            variables = corner_var[texel_face[hit[own]]]
            color[own] += np.einsum("tk,tkc->tc", texel_bary[hit[own]], offsets[variables])
        return hit, color

    fallback_used = 0
    for attempt in range(ranked.shape[1] + 1):
        pending = np.flatnonzero(~done)
        if len(pending) == 0:
            break
        pending_faces = texel_face[pending]
        if attempt == 0:
            view_of = labels[pending_faces]
        else:
            view_of = ranked[pending_faces, attempt - 1]
            # Texels of faces no photo sees stay pending (filled by diffusion later).
            usable = np.isfinite(cost[pending_faces, view_of]) & (view_of != labels[pending_faces])
            view_of = np.where(usable, view_of, -1)
        # Group the pending texels by photo once (comparing per photo costs V passes); a
        # stable sort of 16-bit keys is a radix sort, ~4× faster than of int64.
        order = np.argsort(view_of.astype(np.int16), kind="stable")
        bounds = np.searchsorted(view_of[order], np.arange(n_views + 1))
        photos = [v for v in range(n_views) if bounds[v + 1] > bounds[v]]
        groups = [pending[order[bounds[v] : bounds[v + 1]]] for v in photos]
        for hit, color in each_photo(sample_photo, photos, groups):
            colors[hit] = color
            done[hit] = True
            if attempt > 0:
                fallback_used += len(hit)
    image = np.zeros((size * size, 3), np.float32)
    baked = np.zeros(size * size, bool)
    image[flat] = colors
    baked[flat] = done
    stats = {
        "texels": len(flat),
        "fallback_texels": int(fallback_used),
        "unbaked_texels": int((~done).sum()),
    }
    return image.reshape(size, size, 3), baked.reshape(size, size), stats


def _sample(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """(n, 3) float32 bicubic samples of an (h, w, 3) image at (n, 2) pixel coordinates (bicubic
    keeps the photo's sharpness: +0.7 dB against held-out views over bilinear)."""
    n = len(uv)
    if n == 0:
        return np.zeros((0, 3), np.float32)
    # cv2.remap takes 2-D maps: lay the points out in rows of 1024.
    width = 1024
    rows = -(-n // width)
    padded = np.zeros((rows * width, 2), np.float32)
    padded[:n] = uv
    maps = padded.reshape(rows, width, 2)
    sampled = cv2.remap(
        image, maps[..., 0], maps[..., 1], cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    return sampled.reshape(-1, 3)[:n].astype(np.float32)


# -- 6. fill --------------------------------------------------------------------------------------


def _fill_unseen(
    vertices: np.ndarray,
    faces: np.ndarray,
    face_id: np.ndarray,
    bary: np.ndarray,
    colors: np.ndarray,
    baked: np.ndarray,
) -> np.ndarray:
    """Colour texels no photo could give colour to, by diffusing vertex colours over the mesh."""
    covered = face_id >= 0
    missing = covered & ~baked
    if not missing.any():
        return colors
    n_vertices = len(vertices)
    # Mean baked colour per face, then per vertex.
    texel_face = face_id[baked]
    baked_colors = colors[baked]
    counts = np.bincount(texel_face, minlength=len(faces))
    sums = np.stack(
        [np.bincount(texel_face, baked_colors[:, c], minlength=len(faces)) for c in range(3)],
        axis=1,
    )
    has = counts > 0
    vertex_sum = np.zeros((n_vertices, 3))
    vertex_count = np.zeros(n_vertices)
    for k in range(3):
        np.add.at(vertex_sum, faces[has, k], sums[has] / counts[has, None])
        np.add.at(vertex_count, faces[has, k], 1)
    known = vertex_count > 0
    vertex_color = np.zeros((n_vertices, 3))
    vertex_color[known] = vertex_sum[known] / vertex_count[known, None]
    if not known.any():
        raise StageError(STAGE, "no photo sees the mesh: check that cameras and mesh share a frame")
    unknown = np.flatnonzero(~known)
    if len(unknown):
        vertex_color[unknown] = _harmonic_fill(faces, n_vertices, known, vertex_color)
    ids = face_id[missing]
    filled = np.einsum("tk,tkc->tc", bary[missing].astype(np.float64), vertex_color[faces[ids]])
    colors[missing] = filled.astype(np.float32)  # in place: the caller's array is scratch
    return colors


def _harmonic_fill(
    faces: np.ndarray, n_vertices: int, known: np.ndarray, values: np.ndarray
) -> np.ndarray:
    """Values at unknown vertices that are the average of their neighbours (Laplace equation);
    pieces with no known vertex at all get the mean of the known values."""
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    adjacency = scipy.sparse.coo_matrix(
        (np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n_vertices, n_vertices)
    ).tocsr()
    adjacency = ((adjacency + adjacency.T) > 0).astype(np.float64)
    unknown = np.flatnonzero(~known)
    known_ids = np.flatnonzero(known)
    a_uu = adjacency[unknown][:, unknown]
    a_uk = adjacency[unknown][:, known_ids]
    degree = np.asarray(adjacency[unknown].sum(axis=1)).reshape(-1)
    # A small pull towards the mean keeps islands without known vertices solvable.
    epsilon = 1e-6
    mean = values[known].mean(axis=0)
    system = scipy.sparse.diags(degree + epsilon) - a_uu
    rhs = a_uk @ values[known_ids] + epsilon * mean
    solve = scipy.sparse.linalg.factorized(system.tocsc())
    return np.stack([solve(rhs[:, c]) for c in range(3)], axis=1)


def fill_atlas(colors: np.ndarray, covered: np.ndarray, padding_px: int) -> np.ndarray:
    """(S, S, 3) uint8: covered texels as they are, `padding_px` rings of dilated chart colour
    around them, and a smooth push-pull fill of the unused rest (for mipmaps and JPEG)."""
    weight = covered.astype(np.float32)
    premultiplied = colors * weight[..., None]
    for _ in range(padding_px):
        total = cv2.boxFilter(premultiplied, -1, (3, 3), normalize=False)
        count = cv2.boxFilter(weight, -1, (3, 3), normalize=False)
        grow = (weight == 0) & (count > 0)
        # In-place masked ufuncs: boolean fancy indexing of a 2048² image cost 4× the time.
        np.divide(total, count[..., None], out=premultiplied, where=grow[..., None])
        np.copyto(weight, 1.0, where=grow)
    filled = _push_pull(premultiplied, weight)
    return np.clip(np.rint(filled), 0, 255).astype(np.uint8)


def _push_pull(premultiplied: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Colours where weight is 1 kept, zero-weight texels filled with a smooth interpolation.

    premultiplied: (h, w, 3) colour × weight; weight: (h, w) in {0, 1}. Averages are pushed
    down a pyramid, then pulled back up into the holes (Gortler et al. 1996)."""
    if weight.all() or not weight.any():
        return premultiplied
    pyramid = [(premultiplied, weight)]
    while min(pyramid[-1][1].shape) > 1:
        p, w = pyramid[-1]
        half = (max(p.shape[1] // 2, 1), max(p.shape[0] // 2, 1))
        pyramid.append(
            (
                cv2.resize(p, half, interpolation=cv2.INTER_AREA),
                cv2.resize(w, half, interpolation=cv2.INTER_AREA),
            )
        )
    p, w = pyramid[-1]
    estimate = p / np.maximum(w, 1e-12)[..., None]
    for p, w in reversed(pyramid[1:-1]):
        up = cv2.resize(estimate, (w.shape[1], w.shape[0]), interpolation=cv2.INTER_LINEAR)
        alpha = np.minimum(w, 1.0)[..., None]
        estimate = alpha * (p / np.maximum(w, 1e-12)[..., None]) + (1 - alpha) * up
    # The finest level has weights 0 or 1: keep the colours, take the estimate elsewhere.
    up = cv2.resize(estimate, (weight.shape[1], weight.shape[0]), interpolation=cv2.INTER_LINEAR)
    out = premultiplied.copy()
    np.copyto(out, up, where=(weight == 0)[..., None])
    return out


# -- helpers --------------------------------------------------------------------------------------


class _Reporter:
    def __init__(self, progress: ProgressCallback | None) -> None:
        self._progress = progress

    def __call__(self, fraction: float, message: str) -> None:
        if self._progress:
            self._progress(STAGE, fraction, message)


def project(camera: Camera, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`Camera.project` for many points (K upper triangular): ((n, 2) pixels, (n,) depth).

    The same maths written per coordinate: BLAS is slow on (n, 3) @ (3, 3) products (~10×
    here), and texturing projects millions of points.
    """
    x, y, z = (np.asarray(points, dtype=np.float64)[:, k] for k in range(3))
    R, t, K = camera.R, camera.t, camera.K
    cam = [R[j, 0] * x + R[j, 1] * y + R[j, 2] * z + t[j] for j in range(3)]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (K[0, 0] * cam[0] + K[0, 1] * cam[1]) / cam[2] + K[0, 2]
        v = K[1, 1] * cam[1] / cam[2] + K[1, 2]
    return np.column_stack([u, v]), cam[2]


def unit_face_normals(corners: np.ndarray) -> np.ndarray:
    """(m, 3) unit normals of the (m, 3, 3) triangle `corners` (zero for a degenerate one)."""
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-30)


def _face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    corners = vertices[faces]
    return 0.5 * np.linalg.norm(
        np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0]), axis=1
    )


def _check_mesh(
    vertices: np.ndarray, faces: np.ndarray, texture_size: int
) -> tuple[np.ndarray, np.ndarray]:
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or not np.isfinite(vertices).all():
        raise ValueError(f"vertices must be a finite (n, 3) array, got shape {vertices.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or len(faces) == 0:
        raise ValueError(f"faces must be a non-empty (m, 3) array, got shape {faces.shape}")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise ValueError("faces index vertices that do not exist")
    if texture_size < 64 or texture_size & (texture_size - 1):
        raise ValueError(
            f"texture_size {texture_size} must be a power of two ≥ 64 (1024, 2048, 4096)"
        )
    return vertices, faces


def _check_inputs(
    vertices: np.ndarray,
    faces: np.ndarray,
    cameras: list[Camera],
    images: list[np.ndarray],
    masks: list[np.ndarray | None] | None,
    options: TextureOptions,
) -> tuple[np.ndarray, np.ndarray]:
    vertices, faces = _check_mesh(vertices, faces, options.texture_size)
    if not cameras:
        raise ValueError("at least one camera is needed to texture a mesh")
    if len(images) != len(cameras) or (masks is not None and len(masks) != len(cameras)):
        raise ValueError("cameras, images and masks must come in equal numbers")
    for index, (camera, image) in enumerate(zip(cameras, images, strict=True)):
        if image.shape != (camera.height, camera.width, 3) or image.dtype != np.uint8:
            raise ValueError(
                f"image {index} ({camera.name}) is {image.dtype} {image.shape}; its camera "
                f"needs uint8 ({camera.height}, {camera.width}, 3)"
            )
        mask = masks[index] if masks is not None else None
        if mask is not None and mask.shape != (camera.height, camera.width):
            raise ValueError(f"mask {index} ({camera.name}) has shape {mask.shape}")
    return vertices, faces


def read_photos_and_masks(
    workspace: Workspace, cameras: list[Camera], indices: Iterable[int]
) -> tuple[list[np.ndarray | None], list[np.ndarray | None]]:
    """The undistorted photos of the `cameras` at `indices` and their product masks (None
    where a photo has none, and for the cameras not asked for), checked against the cameras'
    sizes."""
    images: list[np.ndarray | None] = [None] * len(cameras)
    masks: list[np.ndarray | None] = [None] * len(cameras)
    for index in indices:
        camera = cameras[index]
        images[index] = _read_photo(workspace.sfm_image_path(camera.name), camera)
        mask_path = workspace.mask_path(camera.name)
        masks[index] = _read_mask(mask_path, camera) if mask_path.exists() else None
    return images, masks


def _read_photo(path: Path, camera: Camera) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise StageError(STAGE, f"cannot read photo {path}; re-run the sfm stage to undistort it")
    if image.shape[:2] != (camera.height, camera.width):
        raise StageError(
            STAGE,
            f"{path} is {image.shape[1]}×{image.shape[0]} but its camera is "
            f"{camera.width}×{camera.height}; re-run the sfm stage",
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _read_mask(path: Path, camera: Camera) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None or mask.shape != (camera.height, camera.width):
        raise StageError(STAGE, f"mask {path} is unreadable or not the photo's size")
    return mask > 127
