"""A showroom: a reconstructed space with products standing on its surfaces, as a JSON layout."""

from __future__ import annotations

import json
import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import trimesh

from recon.errors import InputError
from recon.surfaces import (
    Surface,
    SurfaceKind,
    SurfaceOptions,
    detect_surfaces,
    distance_to_polygon_edges,
    points_in_polygon,
    polygon_area,
)
from recon.workspace import MODEL_FILE

log = logging.getLogger(__name__)

LAYOUT_VERSION = 1
REPORT_FILE = "report.json"
SHOWROOM_FILE = "showroom.json"
UNITS = ("metre", "unknown")


# -- the layout (contract: showroom.json, read by the API and the walk-through page) ----------


@dataclass(frozen=True, kw_only=True)
class Product:
    """A product in the showroom. `bbox_m` is its extent in its own model frame (+Y up, base on
    y = 0, origin at the bottom centre), in metres; `scale` maps it into scene units (1 for a
    scene in metres). `position` is where its origin sits in the scene; None until placed."""

    id: str
    model: str
    name: str
    bbox_m: tuple[float, float, float]
    model_id: str | None = None
    viewer_url: str | None = None
    surface: int | None = None
    position: tuple[float, float, float] | None = None
    rotation_y_deg: float = 0.0
    scale: float = 1.0

    @property
    def size(self) -> np.ndarray:
        """(3,) width, height, depth in scene units."""
        return np.asarray(self.bbox_m, dtype=np.float64) * self.scale

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model": self.model,
            "name": self.name,
            "model_id": self.model_id,
            "viewer_url": self.viewer_url,
            "bbox_m": [round(float(v), 6) for v in self.bbox_m],
            "surface": self.surface,
            "position": None
            if self.position is None
            else [round(float(v), 6) for v in self.position],
            "rotation_y_deg": round(float(self.rotation_y_deg), 6),
            "scale": float(self.scale),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Product:
        if not isinstance(data, Mapping):
            raise InputError(f"product: expected a JSON object, got {type(data).__name__}")
        where = f"product {data.get('id', '?')}"
        bbox = _numbers(_field(data, "bbox_m", where), 3, f"{where} bbox_m")
        if not all(v > 0 for v in bbox):
            raise InputError(f"{where}: bbox_m {list(bbox)} must be three lengths above 0")
        position = data.get("position")
        surface = data.get("surface")
        scale = float(data.get("scale", 1.0))
        if not scale > 0:
            raise InputError(f"{where}: scale must be above 0, got {scale}")
        return cls(
            id=str(_field(data, "id", where)),
            model=str(_field(data, "model", where)),
            name=str(data.get("name") or data["id"]),
            bbox_m=bbox,
            model_id=data.get("model_id"),
            viewer_url=data.get("viewer_url"),
            surface=None if surface is None else int(surface),
            position=None if position is None else _numbers(position, 3, f"{where} position"),
            rotation_y_deg=float(data.get("rotation_y_deg", 0.0)),
            scale=scale,
        )


@dataclass(frozen=True, kw_only=True)
class Scene:
    model: str  # URL or path of the scene GLB (relative to showroom.json when a path)
    units: str  # "metre" | "unknown"
    surfaces: tuple[Surface, ...]

    def surface(self, surface_id: int) -> Surface:
        for surface in self.surfaces:
            if surface.id == surface_id:
                return surface
        raise InputError(
            f"surface {surface_id} does not exist; the scene's surfaces are "
            f"{', '.join(f'{s.id} ({s.kind.value})' for s in self.surfaces) or 'none'}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "units": self.units,
            "surfaces": [s.to_json() for s in self.surfaces],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Scene:
        if not isinstance(data, Mapping):
            raise InputError("scene: expected a JSON object")
        units = str(data.get("units", "unknown"))
        if units not in UNITS:
            raise InputError(f"scene: units {units!r} is not one of {', '.join(UNITS)}")
        return cls(
            model=str(_field(data, "model", "scene")),
            units=units,
            surfaces=tuple(Surface.from_json(s) for s in data.get("surfaces", [])),
        )


@dataclass(frozen=True, kw_only=True)
class Spawn:
    """Where the visitor starts: eye position and the point looked at."""

    position: tuple[float, float, float]
    look_at: tuple[float, float, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "position": [round(float(v), 6) for v in self.position],
            "look_at": [round(float(v), 6) for v in self.look_at],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Spawn:
        if not isinstance(data, Mapping):
            raise InputError("spawn: expected a JSON object")
        return cls(
            position=_numbers(_field(data, "position", "spawn"), 3, "spawn position"),
            look_at=_numbers(_field(data, "look_at", "spawn"), 3, "spawn look_at"),
        )


@dataclass(frozen=True, kw_only=True)
class Layout:
    """The showroom: `showroom.json`."""

    scene: Scene
    products: tuple[Product, ...]
    spawn: Spawn
    version: int = LAYOUT_VERSION

    def product(self, product_id: str) -> Product:
        for product in self.products:
            if product.id == product_id:
                return product
        raise InputError(
            f"product {product_id!r} is not in the showroom; its products are "
            f"{', '.join(p.id for p in self.products) or 'none'}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "scene": self.scene.to_json(),
            "products": [p.to_json() for p in self.products],
            "spawn": self.spawn.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Layout:
        if not isinstance(data, Mapping):
            raise InputError("showroom layout: expected a JSON object")
        version = data.get("version")
        if version != LAYOUT_VERSION:
            raise InputError(
                f"showroom layout version {version!r} is not supported (this is version "
                f"{LAYOUT_VERSION}); recreate the showroom"
            )
        products = tuple(Product.from_json(p) for p in data.get("products", []))
        ids = [p.id for p in products]
        if len(set(ids)) != len(ids):
            raise InputError(f"showroom layout: product ids repeat: {ids}")
        return cls(
            scene=Scene.from_json(_field(data, "scene", "showroom layout")),
            products=products,
            spawn=Spawn.from_json(_field(data, "spawn", "showroom layout")),
            version=version,
        )

    def write(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> Layout:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError as error:
            raise InputError(f"showroom layout {path} does not exist") from error
        except json.JSONDecodeError as error:
            raise InputError(f"showroom layout {path} is not valid JSON: {error}") from error
        return cls.from_json(data)


def _field(data: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in data:
        raise InputError(f"{where}: missing field {name!r}")
    return data[name]


def _numbers(value: Any, size: int, where: str) -> tuple[float, ...]:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != size:
        raise InputError(f"{where}: expected {size} numbers, got {value!r}")
    try:
        numbers = tuple(float(v) for v in value)
    except (TypeError, ValueError) as error:
        raise InputError(f"{where}: expected {size} numbers, got {value!r}") from error
    if not all(math.isfinite(v) for v in numbers):
        raise InputError(f"{where}: expected finite numbers, got {value!r}")
    return numbers


# -- placement --------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PlacementOptions:
    """How products are placed. Lengths are in metres, converted to scene units with
    `model_units_per_metre` (1 for a scene in metres; for a scene of unknown units the caller
    gives the ratio, and products are scaled by it)."""

    model_units_per_metre: float = 1.0
    margin_m: float = 0.02  # a footprint stays this far inside its surface's outline
    spacing_m: float = 0.05  # between products' footprints
    contact_m: float = 0.01  # the most a product's base may float above (or sink into) its
    # surface; the scene may touch it only in this bottom layer (reconstruction noise)
    min_support: float = 0.6  # of the footprint's sample points must have the surface under them
    max_roughness_m: float = 0.03  # bumps of a reconstructed surface up to this high are noise
    step_m: float = 0.04  # grid of candidate spots
    eye_height_m: float = 1.6  # the visitor's eyes above the floor
    view_distance_m: float = 2.5  # the visitor starts about this far from the products
    easy_reach_m: tuple[float, float] = (0.5, 1.7)  # shelves at these heights above the
    # floor are filled first (a shopper sees and reaches them)
    face_the_room: bool = True  # turn each product's front (+Z) toward the middle of the floor


# Shelves, tables and counters first, then the floor.
_PREFERENCE = {SurfaceKind.SHELF: 0, SurfaceKind.TABLE: 0, SurfaceKind.FLOOR: 1}


class SceneGeometry:
    """The scene mesh's triangles with bounds for fast overlap tests."""

    def __init__(self, mesh: trimesh.Trimesh) -> None:
        triangles = np.asarray(mesh.vertices, dtype=np.float64)[np.asarray(mesh.faces)]
        if len(triangles) == 0:
            raise InputError("the scene mesh has no triangles")
        self._set(triangles)

    def _set(self, triangles: np.ndarray) -> None:
        self.triangles = triangles  # (n, 3, 3)
        self.normal_y = np.cross(
            triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]
        )[:, 1]  # (n,) sign of the normal's y (unnormalised)
        self.low = triangles.min(axis=1)  # (n, 3)
        self.high = triangles.max(axis=1)

    def crop(self, low: np.ndarray, high: np.ndarray) -> SceneGeometry:
        """The triangles overlapping the box [low, high] (which may reach to ±inf): what the
        tests around one surface need, many times faster to search."""
        cropped = object.__new__(SceneGeometry)
        overlap = ((self.low <= high) & (self.high >= low)).all(axis=1)
        cropped._set(self.triangles[overlap])
        return cropped

    def near(self, low: np.ndarray, high: np.ndarray) -> np.ndarray:
        """(k, 3, 3) triangles whose bounds overlap the box [low, high]."""
        overlap = ((self.low <= high) & (self.high >= low)).all(axis=1)
        return self.triangles[overlap]

    def box_hits(self, centre: np.ndarray, half: np.ndarray, rotation_y_deg: float) -> bool:
        """Whether a box (centre (3,), half extents (3,), turned about +Y) meets a triangle."""
        corners = _box_corners(centre, half, rotation_y_deg)
        candidates = self.near(corners.min(axis=0), corners.max(axis=0))
        if len(candidates) == 0:
            return False
        return bool(
            triangles_hit_box(_to_box_frame(candidates, centre, rotation_y_deg), half).any()
        )

    def covered(self, points_xz: np.ndarray, height: float) -> np.ndarray:
        """(n,) bool: which (n, 2) points at `height` are inside a solid: the first surface
        straight above them faces up (a counter's top seen from within its body)."""
        low = np.array([points_xz[:, 0].min(), height, points_xz[:, 1].min()])
        high = np.array([points_xz[:, 0].max(), np.inf, points_xz[:, 1].max()])
        overlap = ((self.low <= high) & (self.high >= low)).all(axis=1)
        candidates, up = self.triangles[overlap], self.normal_y[overlap]
        if len(candidates) == 0 or len(points_xz) == 0:
            return np.zeros(len(points_xz), dtype=bool)
        y = _heights_under(points_xz, candidates)
        y = np.where(y > height, y, np.inf)
        first = np.argmin(y, axis=1)
        hit = np.isfinite(y[np.arange(len(y)), first])
        return hit & (up[first] > 0)

    def surface_offsets(self, points_xz: np.ndarray, height: float, band: float) -> np.ndarray:
        """(n,) height of the scene surface straight above or below each (n, 2) point relative
        to `height` (the nearest within ±band), nan where there is none."""
        low = np.array([points_xz[:, 0].min(), height - band, points_xz[:, 1].min()])
        high = np.array([points_xz[:, 0].max(), height + band, points_xz[:, 1].max()])
        candidates = self.near(low, high)
        if len(candidates) == 0:
            return np.full(len(points_xz), np.nan)
        offsets = _heights_under(points_xz, candidates) - height  # (n, k), nan: missed
        distance = np.where(np.abs(offsets) <= band, np.abs(offsets), np.inf)
        nearest = np.argmin(distance, axis=1)
        found = np.isfinite(distance[np.arange(len(points_xz)), nearest])
        return np.where(found, offsets[np.arange(len(points_xz)), nearest], np.nan)


def place_products(
    scene_mesh: trimesh.Trimesh,
    surfaces: Sequence[Surface],
    products: Sequence[Product],
    *,
    scene_model: str = MODEL_FILE,
    units: str = "metre",
    options: PlacementOptions | None = None,
) -> Layout:
    """Spread `products` over the free area of the scene's surfaces (shelves and tables first,
    then the floor): each stands on a surface (base within `contact_m` of it), inside its
    outline with a margin, touching neither the scene nor another product.

    Products keep their own `scale` times `options.model_units_per_metre`. Raises InputError
    naming the product that fits nowhere.
    """
    options = options or PlacementOptions()
    _check_units(units, options)
    geometry = SceneGeometry(scene_mesh)
    unit = options.model_units_per_metre
    ids = [p.id for p in products]
    if len(set(ids)) != len(ids):
        raise InputError(f"product ids repeat: {ids}")
    horizontal = [s for s in surfaces if s.kind in _PREFERENCE]
    if not horizontal:
        raise InputError("the scene has no floor, table or shelf to place products on")
    centre = _room_centre(surfaces)
    floors = [s.height_m for s in horizontal if s.kind is SurfaceKind.FLOOR]
    floor = min(floors) if floors else min(s.height_m for s in horizontal)
    low, high = (h * unit for h in options.easy_reach_m)

    def reach(surface: Surface) -> bool:
        return surface.kind is SurfaceKind.FLOOR or low <= surface.height_m - floor <= high

    placed: list[Product] = []
    count = {s.id: 0 for s in horizontal}
    nearby: dict[int, SceneGeometry] = {}
    largest = max(
        (replace(p, scale=p.scale * unit) for p in products),
        key=lambda p: float(np.linalg.norm(p.size[[0, 2]])),
        default=None,
    )
    for product in products:
        product = replace(product, scale=product.scale * unit, surface=None, position=None)
        # Spread: preferred kinds first, then the surface that would be least crowded
        # (products per area), where surfaces out of easy reach count as three times as full.
        order = sorted(
            horizontal,
            key=lambda s: (
                _PREFERENCE[s.kind],
                (count[s.id] + 1) / max(s.area_m2, 1e-12) * (1 if reach(s) else 3),
                s.id,
            ),
        )
        for surface in order:
            rotation = _facing(surface, centre) if options.face_the_room else 0.0
            if surface.id not in nearby:  # cropped once per surface, for the largest product
                nearby[surface.id] = _around(geometry, surface, largest, options)
            spot = _best_spot(nearby[surface.id], surface, product, rotation, placed, options)
            if spot is not None:
                placed.append(spot)
                count[surface.id] += 1
                break
        else:
            w, h, d = product.size / unit
            raise InputError(
                f"product {product.id} ({product.name}, {w:.3f} × {h:.3f} × {d:.3f} m) fits on "
                "no free surface of the scene; use fewer or smaller products, or a scene with "
                "more shelf or floor space"
            )
    scene = Scene(model=scene_model, units=units, surfaces=tuple(surfaces))
    return Layout(
        scene=scene, products=tuple(placed), spawn=choose_spawn(geometry, scene, placed, options)
    )


def move_product(
    layout: Layout,
    scene_mesh: trimesh.Trimesh,
    product_id: str,
    position: Sequence[float] | None = None,
    surface: int | None = None,
    rotation_y_deg: float | None = None,
    *,
    options: PlacementOptions | None = None,
) -> Layout:
    """The layout with one product moved, turned or put on another surface.

    With `surface` and no `position`, the product goes to the best free spot of that surface;
    with `position` [x, y, z] its base goes there (y must be within `contact_m` of a surface's
    height unless `surface` is given, then y is that surface's height). Raises InputError
    saying why when the new place is not on a surface, leaves its outline, or meets the scene
    or another product.
    """
    options = options or PlacementOptions()
    product = layout.product(product_id)
    others = [p for p in layout.products if p.id != product_id]
    geometry = SceneGeometry(scene_mesh)
    rotation = product.rotation_y_deg if rotation_y_deg is None else float(rotation_y_deg)
    if rotation_y_deg is None and surface is not None and surface != product.surface:
        # Onto another surface: face the room from there, as placing does.
        new_surface = layout.scene.surface(surface)
        if options.face_the_room:
            rotation = _facing(new_surface, _room_centre(layout.scene.surfaces))
    if not math.isfinite(rotation):
        raise InputError(f"rotation_y_deg must be a finite number of degrees, got {rotation}")
    if position is None and surface is None:
        target = layout.scene.surface(product.surface) if product.surface is not None else None
        if target is None or product.position is None:
            raise InputError(f"product {product_id} is not placed; give a position or a surface")
        position = product.position
    elif position is None:
        target = layout.scene.surface(surface)
        _check_horizontal(target)
        local = _around(geometry, target, product, options)
        spot = _best_spot(local, target, product, rotation, others, options)
        if spot is None:
            raise InputError(
                f"no free spot on surface {target.id} ({target.kind.value}) fits product "
                f"{product_id}; choose another surface or move other products away"
            )
        return _with_product(layout, spot)
    position = _numbers(position, 3, "position")
    if surface is not None:
        target = layout.scene.surface(surface)
        _check_horizontal(target)
    else:
        target = _surface_at(layout.scene, position, options)
    moved = replace(
        product,
        surface=target.id,
        position=(position[0], float(target.height_m), position[2]),
        rotation_y_deg=rotation,
    )
    problem = placement_problem(
        _around(geometry, target, moved, options), target, moved, others, options
    )
    if problem:
        raise InputError(f"cannot put product {product_id} there: {problem}")
    return _with_product(layout, moved)


def placement_problem(
    geometry: SceneGeometry,
    surface: Surface,
    product: Product,
    others: Sequence[Product],
    options: PlacementOptions,
) -> str | None:
    """Why `product` (placed on `surface`) may not stand where it is, or None when it may."""
    unit = options.model_units_per_metre
    x, y, z = product.position
    w, h, d = product.size
    if surface.height_m is None or abs(y - surface.height_m) > options.contact_m * unit:
        return f"its base (y = {y:.3f}) is not on surface {surface.id}"
    footprint = footprint_xz(product)
    polygon = np.asarray(surface.polygon_xz)
    margin = options.margin_m * unit
    if not rectangle_inside_polygon(footprint, polygon, margin):
        return (
            f"its footprint ({w:.3f} × {d:.3f}) at x = {x:.3f}, z = {z:.3f} leaves surface "
            f"{surface.id} ({surface.kind.value}) or comes within {margin:.3f} of its edge"
        )
    contact = options.contact_m * unit
    samples = _footprint_samples(product)
    offsets = geometry.surface_offsets(samples, y, options.max_roughness_m * unit)
    supported = np.abs(np.nan_to_num(offsets, nan=np.inf)) <= contact
    if supported.mean() < options.min_support:
        return (
            f"only {100 * supported.mean():.0f} % of its base has surface under it within "
            f"{contact:.3f} (a hole in the scene mesh, or off the edge)"
        )
    # A rough (reconstructed) surface rises a little above its plane here and there: the
    # scene may touch the product only in that bottom layer, at least `contact_m` thick.
    rise = np.nanmax(offsets) if np.isfinite(offsets).any() else 0.0
    layer = float(np.clip(rise + 0.2 * contact, contact, options.max_roughness_m * unit))
    half = np.array([w / 2.0, (h - layer) / 2.0, d / 2.0])
    if half[1] > 0 and geometry.box_hits(
        np.array([x, y + layer + half[1], z]), half, product.rotation_y_deg
    ):
        return "it would intersect the scene (something stands there or hangs above)"
    # Above its middle: the box test found nothing between its base layer and its top, so
    # the first surface above is over the product (noise in the base layer can't count).
    if geometry.covered(samples, y + max(h / 2.0, layer)).any():
        return "it would be inside a solid part of the scene"
    spacing = options.spacing_m * unit
    for other in others:
        if other.position is not None and products_overlap(product, other, spacing):
            return f"it would touch product {other.id} ({other.name})"
    return None


def choose_spawn(
    geometry: SceneGeometry,
    scene: Scene,
    products: Sequence[Product],
    options: PlacementOptions | None = None,
) -> Spawn:
    """A free standing spot on the floor about `view_distance_m` from the products, looking at
    them (at eye height)."""
    options = options or PlacementOptions()
    unit = options.model_units_per_metre
    floors = [s for s in scene.surfaces if s.kind is SurfaceKind.FLOOR]
    if not floors:
        # No floor found: stand back from the whole scene, looking at its middle.
        low, high = geometry.low.min(axis=0), geometry.high.max(axis=0)
        middle = (low + high) / 2.0
        return Spawn(
            position=_rounded((middle[0], low[1] + options.eye_height_m * unit, high[2])),
            look_at=_rounded(_products_middle(products, middle)),
        )
    # Within the hull of the floor's pieces: the floor under the walk path, often missing
    # from a reconstruction, is the very place to start from.
    height = max(floors, key=lambda s: s.area_m2).height_m
    hull = _floor_hull(floors)
    middle = _polygon_centre(hull)
    look_at = _products_middle(products, np.array([middle[0], height + unit, middle[1]]))
    candidates = _grid_in_polygon(hull, 0.25 * unit, 0.4 * unit)
    radius = 0.4 * unit  # room to turn around
    eye = options.eye_height_m * unit
    contact = options.contact_m * unit
    visitor = Product(id="_visitor", model="", name="visitor", bbox_m=(0.8, 1.6, 0.8))
    distance = np.linalg.norm(candidates - look_at[[0, 2]], axis=1)
    for index in np.argsort(np.abs(distance - options.view_distance_m * unit), kind="stable"):
        x, z = candidates[index]
        half = np.array([radius, (eye - contact) / 2.0, radius])
        if geometry.box_hits(np.array([x, height + contact + half[1], z]), half, 0.0):
            continue
        if geometry.covered(np.array([[x, z]]), height + eye)[0]:
            continue
        standing = replace(visitor, scale=unit, position=(x, height, z))
        if any(products_overlap(standing, p, 0.0) for p in products):
            continue
        return Spawn(position=_rounded((x, height + eye, z)), look_at=_rounded(look_at))
    return Spawn(position=_rounded((middle[0], height + eye, middle[1])), look_at=_rounded(look_at))


def _products_middle(products: Sequence[Product], default: np.ndarray) -> np.ndarray:
    """(3,) the mean of the products' centres, or `default` without products."""
    if not products:
        return default
    return np.mean([np.add(p.position, (0.0, p.size[1] / 2.0, 0.0)) for p in products], axis=0)


# -- geometry (pure) --------------------------------------------------------------------------


def footprint_xz(product: Product) -> np.ndarray:
    """(4, 2) x-z corners of a placed product's footprint, counter-clockwise."""
    w, _, d = product.size
    x, _, z = product.position
    return _box_corners(
        np.array([x, 0.0, z]), np.array([w / 2, 0.0, d / 2]), product.rotation_y_deg
    )[:4, [0, 2]]


def rectangle_inside_polygon(corners: np.ndarray, polygon: np.ndarray, margin: float) -> bool:
    """Whether the (4, 2) convex rectangle, grown by `margin`, lies inside the (m, 2) polygon."""
    # Grow along the rectangle's own axes (it may be turned).
    axis_u = corners[1] - corners[0]
    axis_v = corners[3] - corners[0]
    axis_u = axis_u / max(np.linalg.norm(axis_u), 1e-300)
    axis_v = axis_v / max(np.linalg.norm(axis_v), 1e-300)
    signs = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=np.float64)
    grown = corners + margin * (signs[:, :1] * axis_u + signs[:, 1:] * axis_v)
    if not points_in_polygon(grown, polygon).all():
        return False
    # A corner of the polygon poking into the rectangle, or an edge crossing it.
    if _points_in_convex(polygon, grown).any():
        return False
    return not _segments_cross(grown, polygon)


def products_overlap(a: Product, b: Product, spacing: float) -> bool:
    """Whether two placed products' boxes come within `spacing` of each other (their heights
    overlapping)."""
    a_low, a_high = a.position[1], a.position[1] + a.size[1]
    b_low, b_high = b.position[1], b.position[1] + b.size[1]
    if a_high <= b_low or b_high <= a_low:
        return False
    return _convex_overlap(footprint_xz(a), footprint_xz(b), spacing)


def triangles_hit_box(triangles: np.ndarray, half: np.ndarray) -> np.ndarray:
    """(n,) bool: which (n, 3, 3) triangles meet the axis-aligned box [-half, half] centred on
    the origin (separating axis test, Akenine-Möller 2001)."""
    v = triangles
    edges = np.stack([v[:, 1] - v[:, 0], v[:, 2] - v[:, 1], v[:, 0] - v[:, 2]], axis=1)
    hit = np.ones(len(v), dtype=bool)
    # The box's own axes.
    hit &= (v.min(axis=1) <= half).all(axis=1) & (v.max(axis=1) >= -half).all(axis=1)
    # The triangle's plane.
    normal = np.cross(edges[:, 0], edges[:, 1])
    offset = (normal * v[:, 0]).sum(axis=1)
    reach = (np.abs(normal) * half).sum(axis=1)
    hit &= np.abs(offset) <= reach
    # Edge × box axis: nine axes.
    for k in range(3):
        box_axis = np.zeros(3)
        box_axis[k] = 1.0
        for e in range(3):
            axis = np.cross(edges[:, e], box_axis)  # (n, 3)
            projections = np.einsum("nij,nj->ni", v, axis)
            reach = (np.abs(axis) * half).sum(axis=1)
            hit &= (projections.min(axis=1) <= reach) & (projections.max(axis=1) >= -reach)
    return hit


def _box_corners(centre: np.ndarray, half: np.ndarray, rotation_y_deg: float) -> np.ndarray:
    """(8, 3) corners of a box turned about +Y; the first four are the bottom, counter-clockwise
    in x-z."""
    signs = np.array(
        [[-1, -1, -1], [1, -1, -1], [1, -1, 1], [-1, -1, 1],
         [-1, 1, -1], [1, 1, -1], [1, 1, 1], [-1, 1, 1]],
        dtype=np.float64,
    )  # fmt: skip
    local = signs * half
    return local @ _rotation_y(rotation_y_deg).T + centre


def _rotation_y(degrees: float) -> np.ndarray:
    """3×3 rotation about +Y (three.js and glTF: +Z turns toward +X for positive angles)."""
    angle = math.radians(degrees)
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _to_box_frame(triangles: np.ndarray, centre: np.ndarray, rotation_y_deg: float) -> np.ndarray:
    """(n, 3, 3) triangles in the frame of a box centred at `centre`, turned about +Y."""
    return (triangles - centre) @ _rotation_y(rotation_y_deg)


def _heights_under(points_xz: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """(n, k) height of each (k, 3, 3) triangle straight above/below each (n, 2) point; nan
    where the vertical line misses the triangle."""
    a, b, c = (triangles[:, i, [0, 2]] for i in range(3))  # (k, 2)
    p = points_xz[:, None, :]  # (n, 1, 2)
    d = (b[:, 1] - c[:, 1]) * (a[:, 0] - c[:, 0]) + (c[:, 0] - b[:, 0]) * (a[:, 1] - c[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        u = (
            (b[:, 1] - c[:, 1]) * (p[..., 0] - c[:, 0])
            + (c[:, 0] - b[:, 0]) * (p[..., 1] - c[:, 1])
        ) / d
        v = (
            (c[:, 1] - a[:, 1]) * (p[..., 0] - c[:, 0])
            + (a[:, 0] - c[:, 0]) * (p[..., 1] - c[:, 1])
        ) / d
        w = 1.0 - u - v
        y = u * triangles[:, 0, 1] + v * triangles[:, 1, 1] + w * triangles[:, 2, 1]
    eps = 1e-9
    inside = (u >= -eps) & (v >= -eps) & (w >= -eps) & (d != 0)
    return np.where(inside, y, np.nan)


def _points_in_convex(points: np.ndarray, convex: np.ndarray) -> np.ndarray:
    """(n,) bool: which (n, 2) points lie strictly inside the counter-clockwise convex polygon."""
    edges = np.roll(convex, -1, axis=0) - convex
    relative = points[:, None, :] - convex[None, :, :]
    cross = edges[None, :, 0] * relative[..., 1] - edges[None, :, 1] * relative[..., 0]
    return (cross > 1e-12).all(axis=1)


def _segments_cross(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether an edge of closed polygon `a` (n, 2) properly crosses an edge of `b` (m, 2)."""
    p, r = a[:, None, :], (np.roll(a, -1, axis=0) - a)[:, None, :]
    q, s = b[None, :, :], (np.roll(b, -1, axis=0) - b)[None, :, :]

    def cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]

    denominator = cross(r, s)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = cross(q - p, s) / denominator
        u = cross(q - p, r) / denominator
    eps = 1e-12
    return bool(((denominator != 0) & (t > eps) & (t < 1 - eps) & (u > eps) & (u < 1 - eps)).any())


def _convex_overlap(a: np.ndarray, b: np.ndarray, spacing: float) -> bool:
    """Whether two convex (n, 2) polygons come closer than `spacing` (separating axes)."""
    for polygon in (a, b):
        edges = np.roll(polygon, -1, axis=0) - polygon
        normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1)
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-300)
        pa, pb = a @ normals.T, b @ normals.T  # (n, axes)
        gap = np.maximum(pb.min(axis=0) - pa.max(axis=0), pa.min(axis=0) - pb.max(axis=0))
        if (gap >= spacing).any():
            return False
    return True


def _footprint_samples(product: Product, per_side: int = 7) -> np.ndarray:
    """(per_side², 2) points spread over a placed product's footprint (inset from its edges)."""
    corners = footprint_xz(product)
    t = (np.arange(per_side) + 0.5) / per_side
    u, v = np.meshgrid(t, t)
    origin, along_u, along_v = corners[0], corners[1] - corners[0], corners[3] - corners[0]
    return origin + u.reshape(-1, 1) * along_u + v.reshape(-1, 1) * along_v


def _grid_in_polygon(polygon: np.ndarray, step: float, margin: float) -> np.ndarray:
    """(n, 2) points of a square grid inside the polygon, at least `margin` from its edges."""
    low, high = polygon.min(axis=0), polygon.max(axis=0)
    xs = np.arange(low[0] + step / 2, high[0], step)
    zs = np.arange(low[1] + step / 2, high[1], step)
    points = np.stack(np.meshgrid(xs, zs), axis=-1).reshape(-1, 2)
    if len(points) == 0:
        return points
    inside = points_in_polygon(points, polygon)
    points = points[inside]
    if len(points) == 0:
        return points
    return points[distance_to_polygon_edges(points, polygon) >= margin]


def _polygon_centre(polygon: np.ndarray) -> np.ndarray:
    """(2,) the area centroid of an (n, 2) polygon."""
    x, y = polygon[:, 0], polygon[:, 1]
    xn, yn = np.roll(x, -1), np.roll(y, -1)
    cross = x * yn - xn * y
    area = cross.sum() / 2.0
    if abs(area) < 1e-300:
        return polygon.mean(axis=0)
    return np.array([((x + xn) * cross).sum(), ((y + yn) * cross).sum()]) / (6.0 * area)


# -- placement internals ----------------------------------------------------------------------


_BLOCKED_TRIES = 12


def _best_spot(
    geometry: SceneGeometry,
    surface: Surface,
    product: Product,
    rotation: float,
    placed: Sequence[Product],
    options: PlacementOptions,
) -> Product | None:
    """The product on `surface` at its freest allowed spot, or None when nothing fits: the
    first product goes to the middle of the free area, later ones as far from the others
    as they can. `geometry` is the scene around the surface (`_around`)."""
    unit = options.model_units_per_metre
    polygon = np.asarray(surface.polygon_xz)
    w, _, d = product.size
    reach = 0.5 * min(w, d) + options.margin_m * unit
    candidates = _grid_in_polygon(polygon, options.step_m * unit, reach)
    if len(candidates) == 0:
        return None
    height = float(surface.height_m)
    free = _free_footprints(geometry, candidates, product, rotation, height, options)
    neighbours = np.array([p.position for p in placed if p.position is not None])
    edge = distance_to_polygon_edges(candidates, polygon)
    if len(neighbours):
        points = np.column_stack(
            [candidates[:, 0], np.full(len(candidates), height), candidates[:, 1]]
        )
        nearest = np.linalg.norm(points[:, None, :] - neighbours[None, :, :], axis=2).min(axis=1)
        # Far from others first; among equally free spots, away from the edges.
        score = np.minimum(nearest, 10.0 * max(w, d)) + 1e-3 * edge
    else:
        # The first product: the middle of the free area.
        middle = np.linalg.norm(candidates - _polygon_centre(polygon), axis=1)
        score = edge - 1e-3 * middle
    # Spots whose footprint's bounding box meets nothing of the scene first: the exact tests
    # below then mostly pass at the first try (they still decide). Of the others (a large
    # slanted triangle's box may cover a free spot) only the best few are tried, so that a
    # surface with no room (a board too close above) is given up quickly.
    order = np.argsort(-score, kind="stable")
    order = np.concatenate([order[free[order]], order[~free[order]][:_BLOCKED_TRIES]])
    for index in order:
        x, z = candidates[index]
        spot = replace(
            product,
            surface=surface.id,
            position=_rounded((x, height, z)),
            rotation_y_deg=rotation,
        )
        if placement_problem(geometry, surface, spot, placed, options) is None:
            return spot
    return None


def _free_footprints(
    geometry: SceneGeometry,
    candidates: np.ndarray,
    product: Product,
    rotation: float,
    height: float,
    options: PlacementOptions,
) -> np.ndarray:
    """(n,) bool: which (n, 2) candidate spots have no scene triangle's bounding box over the
    product's footprint box at the product's height (a conservative, fast pre-test)."""
    contact = options.contact_m * options.model_units_per_metre
    top = height + product.size[1]
    blocking = (geometry.high[:, 1] > height + contact) & (geometry.low[:, 1] < top)
    if not blocking.any():
        return np.ones(len(candidates), dtype=bool)
    low, high = geometry.low[blocking][:, [0, 2]], geometry.high[blocking][:, [0, 2]]
    angle = math.radians(rotation)
    c, s = abs(math.cos(angle)), abs(math.sin(angle))
    w, _, d = product.size
    half = np.array([c * w + s * d, s * w + c * d]) / 2.0
    step = options.step_m * options.model_units_per_metre / 2.0
    origin = candidates.min(axis=0) - half - step
    shape = np.ceil((candidates.max(axis=0) + half + step - origin) / step).astype(int) + 1
    # Each blocking triangle's box marks its cells: a 2-D difference array, summed up.
    first = np.clip(np.floor((low - origin) / step).astype(int), 0, shape - 1)
    last = np.clip(np.floor((high - origin) / step).astype(int), -1, shape - 1)
    keep = (last >= 0).all(axis=1) & (high >= origin).all(axis=1)
    first, last = first[keep], last[keep] + 1
    marks = np.zeros(shape + 1, dtype=np.int64)  # [x cell, z cell]
    np.add.at(marks, (first[:, 0], first[:, 1]), 1)
    np.add.at(marks, (last[:, 0], first[:, 1]), -1)
    np.add.at(marks, (first[:, 0], last[:, 1]), -1)
    np.add.at(marks, (last[:, 0], last[:, 1]), 1)
    blocked = (marks.cumsum(axis=0).cumsum(axis=1) > 0).astype(np.int64)
    table = np.zeros((blocked.shape[0] + 1, blocked.shape[1] + 1), dtype=np.int64)
    table[1:, 1:] = blocked.cumsum(axis=0).cumsum(axis=1)
    lo = np.clip(np.floor((candidates - half - origin) / step).astype(int), 0, shape)
    hi = np.clip(np.floor((candidates + half - origin) / step).astype(int) + 1, 0, shape)
    count = (
        table[hi[:, 0], hi[:, 1]]
        - table[lo[:, 0], hi[:, 1]]
        - table[hi[:, 0], lo[:, 1]]
        + table[lo[:, 0], lo[:, 1]]
    )
    return count == 0


def _around(
    geometry: SceneGeometry, surface: Surface, product: Product, options: PlacementOptions
) -> SceneGeometry:
    """The scene near `surface`, from just under it upward, reaching past its outline by the
    product's size: all that the placement tests of `product` on it can meet."""
    reach = float(np.linalg.norm(product.size[[0, 2]])) + options.margin_m
    contact = 2.0 * options.contact_m * options.model_units_per_metre
    polygon = np.asarray(surface.polygon_xz)
    bottom = surface.height_m - contact
    return geometry.crop(
        np.array([polygon[:, 0].min() - reach, bottom, polygon[:, 1].min() - reach]),
        np.array([polygon[:, 0].max() + reach, np.inf, polygon[:, 1].max() + reach]),
    )


def _floor_hull(surfaces: Sequence[Surface]) -> np.ndarray | None:
    """(n, 2) counter-clockwise convex hull of the floor's pieces in x-z, or None without a
    floor: a reconstruction often misses the floor under the walk path, leaving pieces along
    the walls, and the room is what they surround."""
    floors = [s for s in surfaces if s.kind is SurfaceKind.FLOOR]
    if not floors:
        return None
    points = np.concatenate([np.asarray(s.polygon_xz) for s in floors]).astype(np.float32)
    hull = cv2.convexHull(points)[:, 0, :].astype(np.float64)
    return hull[::-1] if polygon_area(hull) < 0 else hull


def _room_centre(surfaces: Sequence[Surface]) -> np.ndarray | None:
    hull = _floor_hull(surfaces)
    return None if hull is None else _polygon_centre(hull)


def _facing(surface: Surface, centre: np.ndarray | None) -> float:
    """Turn (degrees about +Y, a multiple of 90) that points a product's front (+Z) on
    `surface` toward the middle of the floor."""
    if centre is None or surface.kind is SurfaceKind.FLOOR:
        return 0.0
    direction = centre - _polygon_centre(np.asarray(surface.polygon_xz))
    if np.linalg.norm(direction) == 0:
        return 0.0
    angle = math.degrees(math.atan2(direction[0], direction[1]))
    return float((round(angle / 90.0) * 90) % 360)


def _surface_at(scene: Scene, position: Sequence[float], options: PlacementOptions) -> Surface:
    x, y, z = position
    tolerance = options.contact_m * options.model_units_per_metre
    under = [
        s
        for s in scene.surfaces
        if s.height_m is not None
        and s.kind in _PREFERENCE
        and points_in_polygon(np.array([[x, z]]), np.asarray(s.polygon_xz))[0]
    ]
    on = [s for s in under if abs(s.height_m - y) <= tolerance]
    if on:
        return min(on, key=lambda s: abs(s.height_m - y))
    if under:
        nearest = min(under, key=lambda s: abs(s.height_m - y))
        raise InputError(
            f"position ({x:.3f}, {y:.3f}, {z:.3f}) is not on a surface: the nearest surface "
            f"under or over it is {nearest.kind.value} {nearest.id} at y = {nearest.height_m:.3f}"
            f"; give that height or the surface id"
        )
    raise InputError(
        f"position ({x:.3f}, {y:.3f}, {z:.3f}) is over no floor, table or shelf of the scene"
    )


def _check_horizontal(surface: Surface) -> None:
    if surface.kind not in _PREFERENCE:
        raise InputError(
            f"surface {surface.id} is a {surface.kind.value}; products stand on a floor, "
            "table or shelf"
        )


def _check_units(units: str, options: PlacementOptions) -> None:
    if units not in UNITS:
        raise InputError(f"scene units {units!r} is not one of {', '.join(UNITS)}")
    if not options.model_units_per_metre > 0:
        raise InputError("model_units_per_metre must be above 0")
    if units == "unknown" and options.model_units_per_metre == 1.0:
        log.warning(
            "the scene's units are unknown: products are placed at 1 scene unit per metre; "
            "give the scene's units per metre to place them at their real size"
        )


def _with_product(layout: Layout, product: Product) -> Layout:
    return replace(
        layout, products=tuple(product if p.id == product.id else p for p in layout.products)
    )


def _rounded(values: Sequence[float]) -> tuple[float, ...]:
    return tuple(round(float(v), 6) + 0.0 for v in values)


# -- reconstruction folders -------------------------------------------------------------------


@dataclass(frozen=True)
class Reconstruction:
    """A reconstruction's output folder (model.glb + report.json), as a showroom uses it."""

    out_dir: Path
    model_path: Path
    report: Mapping[str, Any]

    @property
    def name(self) -> str:
        return str(self.report.get("name") or self.out_dir.resolve().name)

    @property
    def units(self) -> str:
        units = self.report.get("units", "unknown")
        return units if units in UNITS else "unknown"

    @property
    def bbox_m(self) -> tuple[float, float, float]:
        """The model's extent (width, height, depth) from the report's mesh.bbox_m."""
        try:
            bbox = self.report["mesh"]["bbox_m"]
        except (KeyError, TypeError) as error:
            raise InputError(
                f"{self.out_dir / REPORT_FILE} has no mesh.bbox_m; is it a finished "
                "reconstruction's report?"
            ) from error
        values = _numbers(bbox, 3, f"{self.out_dir / REPORT_FILE} mesh.bbox_m")
        if not all(v > 0 for v in values):
            raise InputError(f"{self.out_dir / REPORT_FILE}: mesh.bbox_m {bbox} is empty")
        return values

    def mesh(self) -> trimesh.Trimesh:
        """The model's triangles, all parts in one mesh (model frame)."""
        try:
            loaded = trimesh.load(self.model_path, force="mesh", process=False)
        except Exception as error:  # trimesh raises many kinds for broken files
            raise InputError(f"cannot read {self.model_path}: {error}") from error
        if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
            raise InputError(f"{self.model_path} holds no triangles")
        return loaded

    def surfaces(
        self, mesh: trimesh.Trimesh | None = None, options: SurfaceOptions | None = None
    ) -> list[Surface]:
        """The scene's surfaces: the report's `surfaces`, else detected in the mesh."""
        listed = self.report.get("surfaces")
        if listed:
            return [Surface.from_json(s) for s in listed]
        log.info("%s lists no surfaces: detecting them in the mesh", self.out_dir / REPORT_FILE)
        if options is None:
            options = SurfaceOptions(model_units_per_metre=1.0 if self.units == "metre" else None)
        return detect_surfaces(self.mesh() if mesh is None else mesh, options)


def load_reconstruction(out_dir: Path) -> Reconstruction:
    """Read a reconstruction's output folder; InputError when it is not one."""
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise InputError(f"{out_dir} is not a folder; give a reconstruction's output folder")
    model_path, report_path = out_dir / MODEL_FILE, out_dir / REPORT_FILE
    for path in (model_path, report_path):
        if not path.is_file():
            raise InputError(
                f"{out_dir} has no {path.name}; give the folder `recon reconstruct -o` wrote"
            )
    try:
        report = json.loads(report_path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{report_path} is not valid JSON: {error}") from error
    if not isinstance(report, Mapping):
        raise InputError(f"{report_path} is not a report (expected a JSON object)")
    if report.get("status", "succeeded") != "succeeded":
        raise InputError(f"{out_dir} holds a {report.get('status')} reconstruction, not a model")
    return Reconstruction(out_dir, model_path, report)


def build_showroom(
    scene_dir: Path,
    product_dirs: Sequence[Path],
    out_dir: Path,
    *,
    options: PlacementOptions | None = None,
) -> Layout:
    """`recon showroom`: place the products of `product_dirs` in the scene of `scene_dir` and
    write OUT/showroom.json with copies of the GLBs (OUT/scene.glb, OUT/products/ID.glb), so
    that the folder stands on its own; model paths in the layout are relative to OUT."""
    options = options or PlacementOptions()
    scene = load_reconstruction(scene_dir)
    products = [load_reconstruction(d) for d in product_dirs]
    if not products:
        raise InputError("give at least one product folder (--products A B C)")
    mesh = scene.mesh()
    surface_options = None
    if scene.units != "metre" and options.model_units_per_metre != 1.0:
        # The caller knows the scene's scale: find surfaces with it rather than guessing it.
        surface_options = SurfaceOptions(model_units_per_metre=options.model_units_per_metre)
    surfaces = scene.surfaces(mesh, surface_options)
    specs = [
        Product(id=f"p{i}", model=f"products/p{i}.glb", name=p.name, bbox_m=p.bbox_m)
        for i, p in enumerate(products)
    ]
    layout = place_products(
        mesh, surfaces, specs, scene_model="scene.glb", units=scene.units, options=options
    )
    out_dir = Path(out_dir)
    (out_dir / "products").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(scene.model_path, out_dir / "scene.glb")
    for spec, product in zip(specs, products, strict=True):
        shutil.copyfile(product.model_path, out_dir / spec.model)
    layout.write(out_dir / SHOWROOM_FILE)
    return layout
