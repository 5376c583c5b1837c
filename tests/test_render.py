"""The offscreen renderer against independent projections: silhouettes, texture placement, depth."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import trimesh

from recon.cameras import Camera, look_at
from recon.render import PHOTO_ANISOTROPY, Lighting, OffscreenRenderer
from recon.textured_mesh import Primitive, TexturedMesh, from_trimesh


def rasterized_silhouette(mesh: trimesh.Trimesh, camera: Camera, *, factor: int = 8) -> np.ndarray:
    """(h, w) bool: pixels at least half covered by the projected triangles, drawn with OpenCV.

    OpenCV draws polygon borders inclusively, so triangles are drawn at `factor`× resolution
    and reduced to coverage, which shrinks that bias to a fraction of a pixel.
    """
    fine = camera.scaled(factor)
    uv, depth = fine.project(np.asarray(mesh.vertices))
    mask = np.zeros((fine.height, fine.width), np.uint8)
    shift = 4  # sub-pixel precision: coordinates in 1/16 px
    for face in np.asarray(mesh.faces):
        if (depth[face] <= 0).any():
            continue
        corners = np.round(uv[face] * (1 << shift)).astype(np.int32)
        cv2.fillConvexPoly(mask, corners, 1, lineType=cv2.LINE_8, shift=shift)
    coverage = cv2.resize(
        mask.astype(np.float32), (camera.width, camera.height), interpolation=cv2.INTER_AREA
    )
    return coverage >= 0.5


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def orbit_camera(
    target: np.ndarray,
    distance: float,
    azimuth_deg: float,
    elevation_deg: float,
    size: int = 320,
    hfov_deg: float = 50.0,
) -> Camera:
    az, el = np.radians(azimuth_deg), np.radians(elevation_deg)
    eye = target + distance * np.array(
        [np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)]
    )
    R, t = look_at(eye, target)
    focal = size / 2 / np.tan(np.radians(hfov_deg) / 2)
    K = np.array([[focal, 0, (size - 1) / 2], [0, focal * 1.02, size / 2 - 3], [0, 0, 1]])
    return Camera(name="c", width=size, height=size, K=K, R=R, t=t)


@pytest.mark.parametrize("supersample", [1, 2])
def test_silhouette_matches_projection_of_the_mesh(supersample: int) -> None:
    # A non-convex, asymmetric shape so that a flipped or shifted projection would show.
    shape = trimesh.creation.annulus(r_min=0.03, r_max=0.08, height=0.05)
    shape.apply_translation([0.02, 0.03, -0.01])
    mesh = from_trimesh(shape)
    with OffscreenRenderer(mesh) as renderer:
        for azimuth, elevation in [(0, 10), (70, 35), (200, 60), (300, -20)]:
            camera = orbit_camera(np.zeros(3), 0.35, azimuth, elevation)
            rendering = renderer.render(camera, supersample=supersample)
            expected = rasterized_silhouette(shape, camera)
            assert expected.sum() > 2000
            assert iou(rendering.mask, expected) >= 0.98


def test_texture_lands_where_its_uv_says() -> None:
    # A unit quad in the z = 0 plane whose texture has four coloured quadrants.
    texture = np.zeros((64, 64, 3), np.uint8)
    texture[:32, :32] = (255, 0, 0)  # image top-left: v near 1, u near 0
    texture[:32, 32:] = (0, 255, 0)  # top-right
    texture[32:, :32] = (0, 0, 255)  # bottom-left
    texture[32:, 32:] = (255, 255, 0)  # bottom-right
    quad = Primitive(
        vertices=np.array([[-0.5, -0.5, 0], [0.5, -0.5, 0], [0.5, 0.5, 0], [-0.5, 0.5, 0]], float),
        faces=np.array([[0, 1, 2], [0, 2, 3]]),
        normals=np.tile([0.0, 0.0, 1.0], (4, 1)),
        uv=np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float),
        texture=texture,
    )
    camera = orbit_camera(np.zeros(3), 2.0, 10, 15, size=200)
    with OffscreenRenderer(TexturedMesh((quad,)), lighting=Lighting.UNLIT) as renderer:
        rgb = renderer.render(camera).rgb
    # World +y is up, so the texture's top half maps to y > 0.
    for point, color in [
        ((-0.25, 0.25, 0), (255, 0, 0)),
        ((0.25, 0.25, 0), (0, 255, 0)),
        ((-0.25, -0.25, 0), (0, 0, 255)),
        ((0.25, -0.25, 0), (255, 255, 0)),
    ]:
        uv, _ = camera.project(np.array([point]))
        u, v = uv[0]
        assert tuple(rgb[round(v), round(u)]) == color


def test_only_renders_that_stand_for_photos_filter_anisotropically() -> None:
    # Stripes across a floor seen at a grazing angle: anisotropic filtering keeps them apart
    # where a square mipmap footprint greys them out. The product's own renders do without it
    # (llvmpipe can take seconds over one edge-on triangle with it).
    stripes = np.zeros((256, 256, 3), np.uint8)
    stripes[:, ::4] = stripes[:, 1::4] = 255  # 4-texel period along u
    floor = Primitive(
        vertices=np.array([[-1, 0, -1], [1, 0, -1], [1, 0, 1], [-1, 0, 1]], float),
        faces=np.array([[0, 2, 1], [0, 3, 2]]),
        normals=np.tile([0.0, 1.0, 0.0], (4, 1)),
        uv=np.array([[0, 0], [0, 1], [1, 1], [1, 0]], float),  # u runs along z, away
        texture=stripes,
    )
    camera = orbit_camera(np.zeros(3), 2.5, 0, 8, size=200)
    contrast = {}
    for anisotropy in (None, 1.0, PHOTO_ANISOTROPY):
        extra = {} if anisotropy is None else {"anisotropy": anisotropy}
        with OffscreenRenderer(TexturedMesh((floor,)), **extra) as renderer:
            rendering = renderer.render(camera)
        rows = np.flatnonzero(rendering.mask.mean(axis=1) > 0.5)
        grey = rendering.rgb[rows].mean(axis=2)
        contrast[anisotropy] = float(np.abs(np.diff(grey, axis=0)).mean())
    assert len(rows) > 10
    assert contrast[None] == contrast[1.0]
    assert contrast[PHOTO_ANISOTROPY] > 1.5 * contrast[1.0]


def test_depth_is_distance_along_the_optical_axis() -> None:
    sphere = trimesh.creation.icosphere(subdivisions=5, radius=0.1)
    camera = orbit_camera(np.array([0.0, 0.05, 0.0]), 0.5, 30, 20)
    with OffscreenRenderer(from_trimesh(sphere)) as renderer:
        rendering = renderer.render(camera)
    rows, cols = np.nonzero(cv2.erode(rendering.mask.astype(np.uint8), np.ones((5, 5))))
    # Analytic ray–sphere intersection through each pixel centre.
    rays = np.linalg.inv(camera.K) @ np.vstack([cols, rows, np.ones_like(cols)])
    directions = (camera.R.T @ rays).T
    directions_unit = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    origin = camera.center
    b = directions_unit @ origin
    c = origin @ origin - 0.1**2
    distance = -b - np.sqrt(b**2 - c)
    expected_depth = distance / np.linalg.norm(directions, axis=1)  # rays have z = 1 in camera
    measured = rendering.depth[rows, cols]
    assert np.abs(measured - expected_depth).max() < 0.1 * 0.002  # within 0.2 % of the radius
    assert (rendering.depth[~rendering.mask] == 0).all()


def test_a_depth_only_rendering_has_the_same_depth_and_mask() -> None:
    # Its mask is where a depth was drawn, whatever the background colour would have been.
    shape = trimesh.creation.annulus(r_min=0.03, r_max=0.08, height=0.05)
    camera = orbit_camera(np.zeros(3), 0.35, 70, 35)
    with OffscreenRenderer(from_trimesh(shape)) as renderer:
        full = renderer.render(camera, background=(255, 255, 255))
        depth_only = renderer.render(camera, background=(255, 255, 255), colour=False)
        with pytest.raises(ValueError, match="supersampled"):
            renderer.render(camera, supersample=2, colour=False)
    assert depth_only.rgb is None
    assert full.mask.sum() > 2000
    assert (~full.mask).sum() > 2000
    assert np.array_equal(depth_only.mask, full.mask)
    assert np.array_equal(depth_only.depth, full.depth)


def test_background_colour_and_studio_shading() -> None:
    sphere = from_trimesh(trimesh.creation.icosphere(subdivisions=4, radius=0.1))
    camera = orbit_camera(np.zeros(3), 0.5, 0, 0)
    with OffscreenRenderer(sphere, lighting=Lighting.STUDIO) as renderer:
        rendering = renderer.render(camera, background=(10, 200, 30))
    assert tuple(rendering.rgb[0, 0]) == (10, 200, 30)
    lit = rendering.rgb[rendering.mask].astype(float).mean(axis=1)
    # A white sphere under world-fixed lights: shaded, brighter where the key light hits.
    assert lit.max() - lit.min() > 40
    with OffscreenRenderer(sphere, lighting=Lighting.UNLIT) as renderer:
        flat = renderer.render(camera).rgb[rendering.mask]
    assert (flat == 255).all()
