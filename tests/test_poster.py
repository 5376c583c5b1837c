"""Poster stills: a framed 3/4 view of the model, right size, its colours, clean background."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from recon.poster import PosterOptions, poster_camera, write_poster
from recon.textured_mesh import Primitive, TexturedMesh
from tests.test_export import TOP_LEFT, textured_box


def red_box() -> TexturedMesh:
    """The 20 × 10 × 5 cm test box, its texture all one colour."""
    vertices, faces, uv = textured_box()
    normals = np.tile([0.0, 1.0, 0.0], (len(vertices), 1))
    texture = np.empty((16, 16, 3), np.uint8)
    texture[:] = TOP_LEFT
    return TexturedMesh(
        (Primitive(vertices=vertices, faces=faces, normals=normals, uv=uv, texture=texture),)
    )


def test_camera_looks_from_front_right_above_and_frames_the_model() -> None:
    model = red_box()
    vertices = model.primitives[0].vertices
    camera = poster_camera(vertices, PosterOptions(size_px=512, fill=0.8))
    centre = vertices.min(axis=0) / 2 + vertices.max(axis=0) / 2
    offset = camera.center - centre
    assert offset[0] > 0
    assert offset[1] > 0
    assert offset[2] > offset[0]
    pixels, depth = camera.project(vertices)
    assert (depth > 0).all()
    low, high = pixels.min(axis=0), pixels.max(axis=0)
    assert max(high - low) == pytest.approx(0.8 * 512, abs=1)
    np.testing.assert_allclose((low + high) / 2, [255.5, 255.5], atol=1)


def test_poster_is_a_framed_picture_of_the_model_on_white(tmp_path) -> None:
    path, thumbnail = tmp_path / "poster.webp", tmp_path / "thumbnail.webp"
    write_poster(
        path, red_box(), PosterOptions(size_px=256, thumbnail_px=64), thumbnail_path=thumbnail
    )
    small = np.asarray(Image.open(thumbnail).convert("RGB")).astype(int)
    assert small.shape == (64, 64, 3)
    shrunk = np.asarray(Image.open(path).convert("RGB").resize((64, 64), Image.LANCZOS)).astype(int)
    assert np.abs(small - shrunk).mean() < 4  # the same picture, small
    image = Image.open(path)
    assert image.format == "WEBP"
    assert image.size == (256, 256)
    pixels = np.asarray(image.convert("RGB")).astype(int)
    background = (pixels > 245).all(axis=2)
    assert background[0].all()
    assert background[-1].all()
    product = np.abs(pixels - TOP_LEFT).max(axis=2) < 30  # the texture's colour (lossy WebP)
    assert 0.1 < product.mean() < 0.9
    rows, columns = np.nonzero(~background)
    spans = rows.max() - rows.min(), columns.max() - columns.min()
    assert max(spans) == pytest.approx(PosterOptions().fill * 256, abs=4)


def test_transparent_poster_has_alpha_only_where_the_model_is(tmp_path) -> None:
    path = tmp_path / "poster.webp"
    write_poster(path, red_box(), PosterOptions(size_px=128, background=None))
    rgba = np.asarray(Image.open(path).convert("RGBA"))
    assert rgba.shape == (128, 128, 4)
    alpha = rgba[..., 3]
    assert alpha[0, 0] == 0
    assert alpha[64, 64] == 255
    assert 0.1 < (alpha > 128).mean() < 0.9
    # Edge pixels keep the product's colour (not darkened by the black they were drawn on).
    edge = (alpha > 40) & (alpha < 215)
    assert edge.any()
    np.testing.assert_allclose(rgba[edge][:, :3].mean(axis=0), TOP_LEFT, atol=30)
