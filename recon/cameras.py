"""Pinhole cameras (OpenCV convention) and their files: report.json, truth, Middlebury."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.errors import InputError


@dataclass(frozen=True, kw_only=True)
class Camera:
    """A world-to-camera pinhole camera: ``x_cam = R @ x_world + t`` (x right, y down, z forward).

    Pixel centres sit at integer coordinates, as in OpenCV: the top-left pixel spans
    [-0.5, 0.5]² in (u, v).
    """

    name: str
    width: int
    height: int
    K: np.ndarray  # (3, 3) intrinsics
    R: np.ndarray  # (3, 3) world-to-camera rotation
    t: np.ndarray  # (3,) world-to-camera translation

    @property
    def center(self) -> np.ndarray:
        """(3,) camera centre in world coordinates."""
        return -self.R.T @ self.t

    def to_camera(self, points: np.ndarray) -> np.ndarray:
        """(n, 3) world points -> (n, 3) camera-frame points."""
        return points @ self.R.T + self.t

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, 3) world points -> ((n, 2) pixel coordinates, (n,) depth along the optical axis)."""
        cam = self.to_camera(np.asarray(points, dtype=np.float64))
        depth = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = (cam @ self.K.T)[:, :2] / depth[:, None]
        return uv, depth

    def scaled(self, factor: float) -> Camera:
        """The same camera for an image resized by `factor` (pixel-centre convention kept)."""
        K = self.K.copy()
        K[0, 0] *= factor
        K[1, 1] *= factor
        K[0, 2] = (K[0, 2] + 0.5) * factor - 0.5
        K[1, 2] = (K[1, 2] + 0.5) * factor - 0.5
        return Camera(
            name=self.name,
            width=round(self.width * factor),
            height=round(self.height * factor),
            K=K,
            R=self.R,
            t=self.t,
        )

    def transformed(self, matrix: np.ndarray) -> Camera:
        """The same physical camera in a frame where ``x_new = matrix @ x_old`` (4×4 similarity).

        The scale goes into t: depths in the new frame are scaled like the world.
        """
        linear = np.asarray(matrix, dtype=np.float64)[:3, :3]
        scale = float(np.cbrt(np.linalg.det(linear)))
        rotation = linear / scale
        R = self.R @ rotation.T
        t = scale * self.t - R @ np.asarray(matrix, dtype=np.float64)[:3, 3]
        return Camera(name=self.name, width=self.width, height=self.height, K=self.K, R=R, t=t)

    def to_json(self) -> dict:
        """The camera as report.json writes it (see DESIGN.md)."""
        return {
            "image": self.name,
            "width": int(self.width),
            "height": int(self.height),
            "K": np.asarray(self.K, dtype=float).round(9).tolist(),
            "R": np.asarray(self.R, dtype=float).round(12).tolist(),
            "t": np.asarray(self.t, dtype=float).round(12).tolist(),
        }

    @classmethod
    def from_json(cls, data: dict) -> Camera:
        try:
            return cls(
                name=str(data["image"]),
                width=int(data["width"]),
                height=int(data["height"]),
                K=np.asarray(data["K"], dtype=np.float64).reshape(3, 3),
                R=np.asarray(data["R"], dtype=np.float64).reshape(3, 3),
                t=np.asarray(data["t"], dtype=np.float64).reshape(3),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(
                f"camera entry {data.get('image', '?')!r} is malformed ({error}); "
                "each camera needs image, width, height, K (3×3), R (3×3) and t (3)"
            ) from error


def look_at(eye: np.ndarray, target: np.ndarray, up: Sequence[float] = (0.0, 1.0, 0.0)):
    """World-to-camera (R, t) for a camera at `eye` looking at `target`, image-up towards `up`."""
    eye = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    if np.linalg.norm(right) < 1e-9:  # looking straight along `up`: any right vector will do
        right = np.cross(forward, [1.0, 0.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    R = np.stack([right, down, forward])
    return R, -R @ eye


def nearest_point_to_axes(cameras: list[Camera]) -> np.ndarray:
    """(3,) least-squares point closest to every camera's optical axis."""
    lhs = np.zeros((3, 3))
    rhs = np.zeros(3)
    for camera in cameras:
        axis = camera.R[2]  # viewing direction in the world
        projector = np.eye(3) - np.outer(axis, axis)
        lhs += projector
        rhs += projector @ camera.center
    return np.linalg.lstsq(lhs, rhs, rcond=None)[0]


def spread_cameras(cameras: list[Camera], count: int) -> list[int]:
    """Indices (ascending) of `count` cameras spread round the point they look at: the first,
    then each time the one farthest in direction from those chosen."""
    directions = np.array([camera.center for camera in cameras]) - nearest_point_to_axes(cameras)
    directions /= np.maximum(np.linalg.norm(directions, axis=1, keepdims=True), 1e-12)
    chosen = [0]
    nearest = directions @ directions[0]  # cosine to the nearest chosen direction
    while len(chosen) < min(count, len(cameras)):
        index = int(np.argmin(nearest))
        chosen.append(index)
        nearest = np.maximum(nearest, directions @ directions[index])
    return sorted(chosen)


def sightings_in(visible_in: np.ndarray, chosen: list[int], cameras: int) -> np.ndarray:
    """(k, 2) (point, camera) sightings of sparse points by the `chosen` of `cameras` cameras
    only, the cameras renumbered in the order of `chosen`."""
    renumber = np.full(cameras, -1)
    renumber[chosen] = np.arange(len(chosen))
    visible_in = np.asarray(visible_in, dtype=np.int64).reshape(-1, 2)
    kept = visible_in[renumber[visible_in[:, 1]] >= 0]
    return np.stack([kept[:, 0], renumber[kept[:, 1]]], axis=1)


def read_cameras_json(path: Path) -> list[Camera]:
    """Cameras from a report.json or a truth cameras.json (both keep them under "cameras")."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as error:
        raise InputError(f"{path} does not exist") from error
    except json.JSONDecodeError as error:
        raise InputError(f"{path} is not valid JSON ({error})") from error
    if not isinstance(data, dict) or not isinstance(data.get("cameras"), list):
        raise InputError(f'{path} has no "cameras" list')
    return [Camera.from_json(entry) for entry in data["cameras"]]


def write_cameras_json(path: Path, cameras: Iterable[Camera], **extra) -> None:
    """Write cameras in the report.json camera format, with any extra top-level keys."""
    payload = {"version": 1, **extra, "cameras": [camera.to_json() for camera in cameras]}
    Path(path).write_text(json.dumps(payload, indent=1) + "\n")


def read_middlebury_par(path: Path) -> list[Camera]:
    """Cameras from a Middlebury MVS ``*_par.txt`` (``name k11..k33 r11..r33 t1 t2 t3`` per line).

    The image size is read from the image next to the file when present, else 640×480,
    the size of every Middlebury MVS image.
    """
    from PIL import Image

    path = Path(path)
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    cameras = []
    for fields in lines[1:]:
        if len(fields) != 22:
            raise InputError(f"{path}: expected 22 fields per camera line, got {len(fields)}")
        values = np.asarray(fields[1:], dtype=np.float64)
        image_path = path.parent / fields[0]
        width, height = Image.open(image_path).size if image_path.exists() else (640, 480)
        cameras.append(
            Camera(
                name=fields[0],
                width=width,
                height=height,
                K=values[0:9].reshape(3, 3),
                R=values[9:18].reshape(3, 3),
                t=values[18:21],
            )
        )
    return cameras
