"""A showroom: a reconstructed space with products standing on its surfaces, as a JSON layout."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recon.errors import InputError
from recon.surfaces import (
    Surface,
)

log = logging.getLogger(__name__)

LAYOUT_VERSION = 1
REPORT_FILE = "report.json"
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
