"""Headless rendering of textured meshes at OpenCV cameras (moderngl on EGL; runs on the CPU)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import cv2
import moderngl
import numpy as np

from recon.cameras import Camera
from recon.errors import ReconError
from recon.textured_mesh import TexturedMesh


class Lighting(StrEnum):
    """How surfaces are lit; both are view-independent, so all photos agree on a colour."""

    UNLIT = "unlit"  # base colour only: what a baked photogrammetry texture already contains
    STUDIO = "studio"  # ambient plus two soft lights fixed in the world, like a product light box


@dataclass(frozen=True)
class Rendering:
    """What one camera sees."""

    rgb: np.ndarray | None  # (h, w, 3) uint8 sRGB, background where nothing was hit (None:
    # a depth-only rendering)
    depth: np.ndarray  # (h, w) float32 depth along the optical axis in world units, 0 where empty
    mask: np.ndarray  # (h, w) bool, True where the mesh covers the pixel (≥ half of it)
    # (h, w) float32 share of each pixel the mesh covers (supersampled; else `mask` as 0 or 1)
    coverage: np.ndarray | None = None


_VERTEX_SHADER = """
#version 330
uniform mat4 world_to_clip;
uniform mat4 world_to_camera;
in vec3 in_position;
in vec3 in_normal;
in vec2 in_uv;
in vec3 in_color;
out vec3 v_normal;
out vec2 v_uv;
out vec3 v_color;
out float v_depth;
void main() {
    gl_Position = world_to_clip * vec4(in_position, 1.0);
    v_depth = (world_to_camera * vec4(in_position, 1.0)).z;
    v_normal = in_normal;
    v_uv = in_uv;
    v_color = in_color;
}
"""

_FRAGMENT_SHADER = """
#version 330
uniform sampler2D base_texture;
uniform vec3 base_color;
uniform bool studio_lighting;
in vec3 v_normal;
in vec2 v_uv;
in vec3 v_color;
in float v_depth;
layout(location = 0) out vec4 out_color;
layout(location = 1) out float out_depth;

vec3 to_linear(vec3 c) {
    return mix(c / 12.92, pow((c + 0.055) / 1.055, vec3(2.4)), step(0.04045, c));
}
vec3 to_srgb(vec3 c) {
    return mix(c * 12.92, 1.055 * pow(c, vec3(1.0 / 2.4)) - 0.055, step(0.0031308, c));
}

void main() {
    vec3 albedo = to_linear(texture(base_texture, v_uv).rgb * v_color) * base_color;
    vec3 light = vec3(1.0);
    if (studio_lighting) {
        vec3 n = normalize(v_normal);
        if (!gl_FrontFacing) n = -n;  // the inside of a mug is lit like its outside
        float key = max(dot(n, normalize(vec3(0.45, 0.8, 0.4))), 0.0);
        float fill = max(dot(n, normalize(vec3(-0.6, 0.35, -0.5))), 0.0);
        light = vec3(0.5 + 0.4 * key + 0.2 * fill);
    }
    out_color = vec4(to_srgb(clamp(albedo * light, 0.0, 1.0)), 1.0);
    out_depth = v_depth;
}
"""


def opencv_to_clip(camera: Camera, near: float, far: float) -> np.ndarray:
    """4×4 matrix taking OpenCV camera coordinates to OpenGL clip space.

    Rows of the image go top to bottom as in OpenCV; the framebuffer read-back is flipped to
    match. Pixel centres are at integer (u, v), so the image spans [-0.5, w - 0.5].
    """
    w, h = camera.width, camera.height
    fx, fy, cx, cy = camera.K[0, 0], camera.K[1, 1], camera.K[0, 2], camera.K[1, 2]
    skew = camera.K[0, 1]
    return np.array(
        [
            [2 * fx / w, 2 * skew / w, 2 * (cx + 0.5) / w - 1, 0],
            [0, -2 * fy / h, 1 - 2 * (cy + 0.5) / h, 0],
            [0, 0, (far + near) / (far - near), -2 * far * near / (far - near)],
            [0, 0, 1, 0],
        ]
    )


# Anisotropic filtering of the renders that stand for photos (see OffscreenRenderer).
PHOTO_ANISOTROPY = 8.0


class OffscreenRenderer:
    """Renders one mesh from many cameras; the mesh is uploaded once.

    Use as a context manager (it owns a GL context):
    ``with OffscreenRenderer(mesh) as renderer: rendering = renderer.render(camera)``.

    `anisotropy` > 1 filters textures seen at a slant anisotropically, as a camera's pixel
    takes in its whole footprint: the synthetic photos and the evaluation's renders beside
    them use PHOTO_ANISOTROPY. Mesa's llvmpipe (22.3) can take seconds over one triangle
    seen nearly edge-on at any level from 2 (a soup can's preview poster: 9.1 s instead of
    0.12 s; the picture within 0.25 grey levels on average): the product's own renders
    (poster, fidelity check, capture check) do without it.
    """

    def __init__(
        self, mesh: TexturedMesh, *, lighting: Lighting = Lighting.UNLIT, anisotropy: float = 1.0
    ) -> None:
        try:
            self._ctx = moderngl.create_standalone_context(backend="egl")
        except Exception as error:
            raise ReconError(
                f"cannot open a headless OpenGL context ({error}); install Mesa's EGL drivers: "
                "apt-get install libegl1 libgl1-mesa-dri libegl-mesa0 (or run `make setup`)"
            ) from error
        self._lighting = lighting
        self._bounds = mesh.bounds
        self._program = self._ctx.program(
            vertex_shader=_VERTEX_SHADER, fragment_shader=_FRAGMENT_SHADER
        )
        white = self._ctx.texture((1, 1), 3, np.full(3, 255, np.uint8).tobytes())
        self._parts = []
        for primitive in mesh.primitives:
            corners = primitive.faces.reshape(-1)
            n = len(corners)
            uv = primitive.uv[corners] if primitive.uv is not None else np.zeros((n, 2))
            color = (
                primitive.vertex_colors[corners]
                if primitive.vertex_colors is not None
                else np.ones((n, 3))
            )
            interleaved = np.hstack(
                [primitive.vertices[corners], primitive.normals[corners], uv, color]
            ).astype(np.float32)
            buffer = self._ctx.buffer(interleaved.tobytes())
            vao = self._ctx.vertex_array(
                self._program,
                [(buffer, "3f 3f 2f 3f", "in_position", "in_normal", "in_uv", "in_color")],
            )
            texture = white
            if primitive.texture is not None and primitive.uv is not None:
                # Upload bottom row first: texture coordinates have v = 0 at the image bottom.
                image = np.ascontiguousarray(primitive.texture[::-1])
                texture = self._ctx.texture(image.shape[1::-1], 3, image.tobytes())
                texture.build_mipmaps()
                texture.anisotropy = anisotropy
                texture.repeat_x = texture.repeat_y = True
            self._parts.append((vao, texture, primitive.base_color))

    def __enter__(self) -> OffscreenRenderer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        self._ctx.release()

    def render(
        self,
        camera: Camera,
        *,
        background: tuple[int, int, int] = (0, 0, 0),
        supersample: int = 1,
        colour: bool = True,
    ) -> Rendering:
        """Render at `camera`; `supersample` > 1 anti-aliases colour and mask edges; without
        `colour` only depth and mask are read back (rgb is None), in half the read-back time."""
        if not colour and supersample != 1:
            raise ValueError("a depth-only rendering is not supersampled")
        # Several renderers may be open at once, each with its own context: make ours current.
        with self._ctx:
            return self._render(camera, background, supersample, colour)

    def _render(
        self, camera: Camera, background: tuple[int, int, int], supersample: int, colour: bool
    ) -> Rendering:
        big = camera.scaled(supersample) if supersample > 1 else camera
        near, far = self._depth_range(camera)
        size = (big.width, big.height)
        color = self._ctx.renderbuffer(size, 4)
        depth_out = self._ctx.renderbuffer(size, 1, dtype="f4")
        framebuffer = self._ctx.framebuffer(
            color_attachments=[color, depth_out],
            depth_attachment=self._ctx.depth_renderbuffer(size),
        )
        try:
            framebuffer.use()
            # Both attachments are cleared alike: the depth one to the background's red, 0 in
            # a depth-only rendering, whose mask is where a depth (≥ near > 0) was drawn.
            clear = np.asarray(background if colour else (0, 0, 0)) / 255.0
            framebuffer.clear(*clear, 0.0, depth=1.0)
            self._ctx.enable(moderngl.DEPTH_TEST)
            self._ctx.disable(moderngl.CULL_FACE)
            world_to_camera = np.eye(4)
            world_to_camera[:3, :3], world_to_camera[:3, 3] = camera.R, camera.t
            clip = opencv_to_clip(big, near, far) @ world_to_camera
            # GLSL matrices are column-major: hand over the transpose.
            self._program["world_to_clip"].write(clip.T.astype(np.float32).tobytes())
            self._program["world_to_camera"].write(world_to_camera.T.astype(np.float32).tobytes())
            self._program["studio_lighting"].value = self._lighting == Lighting.STUDIO
            for vao, texture, base_color in self._parts:
                texture.use(0)
                self._program["base_texture"].value = 0
                self._program["base_color"].value = base_color
                vao.render(moderngl.TRIANGLES)
            rgba = None
            if colour:
                raw = framebuffer.read(components=4, attachment=0, dtype="f1")
                rgba = np.frombuffer(raw, np.uint8).reshape(big.height, big.width, 4)[::-1]
            raw_depth = framebuffer.read(components=1, attachment=1, dtype="f4")
            depth = np.frombuffer(raw_depth, np.float32).reshape(big.height, big.width)[::-1]
        finally:
            framebuffer.release()
            color.release()
            depth_out.release()
        if rgba is None:
            covered = depth > 0
            return Rendering(rgb=None, depth=np.where(covered, depth, 0.0), mask=covered)
        covered = rgba[..., 3] > 0
        rgb = rgba[..., :3]
        if supersample == 1:
            return Rendering(rgb=rgb.copy(), depth=np.where(covered, depth, 0.0), mask=covered)
        out_size = (camera.width, camera.height)
        coverage = cv2.resize(covered.astype(np.float32), out_size, interpolation=cv2.INTER_AREA)
        depth_sum = cv2.resize(
            np.where(covered, depth, 0.0), out_size, interpolation=cv2.INTER_AREA
        )
        mask = coverage >= 0.5
        mean_depth = np.divide(depth_sum, coverage, out=np.zeros_like(depth_sum), where=mask)
        return Rendering(
            rgb=cv2.resize(rgb, out_size, interpolation=cv2.INTER_AREA),
            depth=mean_depth.astype(np.float32),
            mask=mask,
            coverage=coverage,
        )

    def _depth_range(self, camera: Camera) -> tuple[float, float]:
        """Near and far planes that bracket the mesh tightly, for depth-buffer precision."""
        corners = np.array(
            [
                [x, y, z]
                for x in self._bounds[:, 0]
                for y in self._bounds[:, 1]
                for z in self._bounds[:, 2]
            ]
        )
        depths = camera.to_camera(corners)[:, 2]
        extent = float(np.linalg.norm(self._bounds[1] - self._bounds[0]))
        far = max(float(depths.max()), 1e-3) * 1.01 + 1e-6
        near = max(float(depths.min()) * 0.99, far * 1e-4, extent * 1e-5)
        return near, far
