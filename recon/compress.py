"""Draco geometry compression of GLB files (KHR_draco_mesh_compression), and its undoing."""

from __future__ import annotations

import math
from dataclasses import dataclass

import DracoPy
import numpy as np
import pygltflib

DRACO_EXTENSION = "KHR_draco_mesh_compression"

# glTF accessor component types and element widths (the spec's numbers).
_COMPONENT_DTYPES: dict[int, np.dtype] = {
    5120: np.dtype(np.int8),
    5121: np.dtype(np.uint8),
    5122: np.dtype(np.int16),
    5123: np.dtype(np.uint16),
    5125: np.dtype(np.uint32),
    5126: np.dtype(np.float32),
}
_TYPE_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
_FLOAT, _UNSIGNED_SHORT, _UNSIGNED_INT = 5126, 5123, 5125
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_TRIANGLES = 4
# Draco's attribute types (draco::GeometryAttribute::Type) for the glTF attributes we encode.
_DRACO_POSITION, _DRACO_NORMAL, _DRACO_TEX_COORD = 0, 1, 3


@dataclass(frozen=True, kw_only=True)
class DracoOptions:
    """How finely Draco quantises each attribute, and how hard it compresses."""

    position_bits: int = 14  # per axis over the bounding box: 1/16384 of the size (~0.02 mm/30 cm)
    normal_bits: int = 10  # octahedral normals: ~0.2° steps, invisible in shading
    # Texture coordinates get log2(texture size) + this many bits: a quarter texel at 2 extra.
    uv_extra_bits: int = 2
    compression_level: int = 7  # 0 (fast) – 10 (smallest); 7 is Draco's usual web setting
    # Keep the vertex and triangle order: off lets Draco reorder for a smaller file.
    preserve_order: bool = False


def is_draco_glb(data: bytes) -> bool:
    """Whether the GLB `data` uses Draco geometry compression."""
    return DRACO_EXTENSION in (_load(data).extensionsUsed or [])


def compress_glb(
    data: bytes, options: DracoOptions | None = None, *, texture_size: int | None = None
) -> bytes:
    """The GLB `data` with every triangle primitive's geometry Draco-compressed.

    Positions, normals, the first texture coordinates and indices go into one Draco buffer per
    primitive; images, materials and nodes are kept byte for byte. `texture_size` (px) sets the
    texture-coordinate precision (default: the largest image in the file, or 4096). Accessor
    counts and POSITION bounds are those of the decoded geometry, so a loader's buffers match.

    Raises ValueError for a GLB that is already compressed or has non-triangle primitives.
    """
    options = options or DracoOptions()
    gltf = _load(data)
    if DRACO_EXTENSION in (gltf.extensionsUsed or []):
        raise ValueError("the GLB is already Draco-compressed")
    blob = gltf.binary_blob() or b""
    uv_bits = _uv_bits(texture_size or _largest_image_px(gltf, blob) or 4096, options)
    builder = _BlobBuilder()
    geometry_views: set[int] = set()
    for mesh in gltf.meshes:
        for primitive in mesh.primitives:
            if primitive.mode not in (None, _TRIANGLES):
                raise ValueError(f"primitive mode {primitive.mode} is not triangles")
            if primitive.targets:
                raise ValueError("morph targets cannot be Draco-compressed here")
            attributes = {
                name: index
                for name, index in vars(primitive.attributes).items()
                if index is not None
            }
            unsupported = set(attributes) - {"POSITION", "NORMAL", "TEXCOORD_0"}
            if unsupported:
                raise ValueError(f"cannot compress attributes {sorted(unsupported)}")
            positions = read_accessor(gltf, blob, attributes["POSITION"]).astype(np.float64)
            if primitive.indices is None:
                faces = np.arange(len(positions)).reshape(-1, 3)
            else:
                faces = read_accessor(gltf, blob, primitive.indices).reshape(-1, 3)
            normals = uv = None
            if "NORMAL" in attributes:
                normals = read_accessor(gltf, blob, attributes["NORMAL"]).astype(np.float64)
            if "TEXCOORD_0" in attributes:
                uv = read_accessor(gltf, blob, attributes["TEXCOORD_0"]).astype(np.float64)
            for index in (*attributes.values(), primitive.indices):
                if index is not None and gltf.accessors[index].bufferView is not None:
                    geometry_views.add(gltf.accessors[index].bufferView)
            encoded = DracoPy.encode(
                positions,
                faces.astype(np.uint32),
                quantization_bits=options.position_bits,
                compression_level=options.compression_level,
                preserve_order=options.preserve_order,
                normals=normals,
                tex_coord=uv,
                normal_quantization_bits=options.normal_bits if normals is not None else None,
                tex_coord_quantization_bits=uv_bits if uv is not None else None,
            )
            decoded = DracoPy.decode(encoded)
            ids = {
                name: _unique_id(decoded, draco_type)
                for name, draco_type in (
                    ("POSITION", _DRACO_POSITION),
                    ("NORMAL", _DRACO_NORMAL),
                    ("TEXCOORD_0", _DRACO_TEX_COORD),
                )
                if name in attributes
            }
            points = np.asarray(decoded.points, dtype=np.float32)
            for name, index in attributes.items():
                accessor = gltf.accessors[index]
                accessor.bufferView, accessor.byteOffset = None, None
                accessor.count = len(points)
                if name == "POSITION":
                    accessor.min = points.min(axis=0).tolist()
                    accessor.max = points.max(axis=0).tolist()
            triangles = len(np.asarray(decoded.faces).reshape(-1, 3))
            if primitive.indices is None:  # Draco always stores indices: give them an accessor
                gltf.accessors.append(pygltflib.Accessor(count=0, type=pygltflib.SCALAR))
                primitive.indices = len(gltf.accessors) - 1
            indices = gltf.accessors[primitive.indices]
            indices.bufferView, indices.byteOffset = None, None
            indices.count = 3 * triangles
            indices.componentType = _UNSIGNED_SHORT if len(points) < 65535 else _UNSIGNED_INT
            indices.type = pygltflib.SCALAR
            indices.min = indices.max = None
            primitive.extensions = {
                **(primitive.extensions or {}),
                DRACO_EXTENSION: {"bufferView": builder.reserve(encoded), "attributes": ids},
            }
    return _rebuild(gltf, blob, builder, drop_views=geometry_views, extension_added=True)


def decompress_glb(data: bytes) -> bytes:
    """The GLB `data` with Draco geometry decoded into plain accessors (for readers such as
    trimesh that do not decode Draco); a GLB without Draco comes back unchanged."""
    gltf = _load(data)
    if DRACO_EXTENSION not in (gltf.extensionsUsed or []):
        return data
    blob = gltf.binary_blob() or b""
    builder = _BlobBuilder()
    draco_views: set[int] = set()
    for mesh in gltf.meshes:
        for primitive in mesh.primitives:
            extension = (primitive.extensions or {}).get(DRACO_EXTENSION)
            if extension is None:
                continue
            draco_views.add(extension["bufferView"])
            decoded = DracoPy.decode(_view_bytes(gltf, blob, extension["bufferView"]))
            for name, unique_id in extension["attributes"].items():
                values = np.asarray(
                    decoded.get_attribute_by_unique_id(unique_id)["data"], dtype=np.float32
                )
                accessor = gltf.accessors[getattr(primitive.attributes, name)]
                accessor.bufferView = builder.add(values.tobytes(), _ARRAY_BUFFER)
                accessor.byteOffset, accessor.componentType = None, _FLOAT
                accessor.count = len(values)
            faces = np.asarray(decoded.faces).reshape(-1)
            small = int(faces.max(initial=0)) < 65535
            indices = gltf.accessors[primitive.indices]
            indices.bufferView = builder.add(
                faces.astype(np.uint16 if small else np.uint32).tobytes(), _ELEMENT_ARRAY_BUFFER
            )
            indices.byteOffset, indices.count = None, len(faces)
            indices.componentType = _UNSIGNED_SHORT if small else _UNSIGNED_INT
            del primitive.extensions[DRACO_EXTENSION]
    return _rebuild(gltf, blob, builder, drop_views=draco_views, extension_added=False)


def read_accessor(gltf: pygltflib.GLTF2, blob: bytes, index: int) -> np.ndarray:
    """An accessor's values as an (count, width) array ((count,) for scalars), from `blob`.

    Raises ValueError for an accessor without data (sparse or Draco-compressed).
    """
    accessor = gltf.accessors[index]
    if accessor.bufferView is None:
        raise ValueError(f"accessor {index} has no buffer view (sparse or compressed)")
    dtype = _COMPONENT_DTYPES[accessor.componentType]
    width = _TYPE_WIDTHS[accessor.type]
    view = gltf.bufferViews[accessor.bufferView]
    start = (view.byteOffset or 0) + (accessor.byteOffset or 0)
    element = dtype.itemsize * width
    stride = view.byteStride or element
    raw = np.frombuffer(blob, dtype=np.uint8, count=stride * (accessor.count - 1) + element,
                        offset=start)  # fmt: skip
    rows = np.lib.stride_tricks.as_strided(
        raw, shape=(accessor.count, element), strides=(stride, 1)
    )
    values = np.ascontiguousarray(rows).view(dtype).reshape(accessor.count, width)
    return values[:, 0] if width == 1 else values


def _unique_id(decoded, draco_type: int) -> int:
    attribute = decoded.get_attribute_by_type(draco_type)
    if attribute is None:
        raise ValueError(f"Draco dropped attribute type {draco_type}")
    return int(attribute["unique_id"])


def _uv_bits(texture_size: int, options: DracoOptions) -> int:
    return min(int(math.log2(max(texture_size, 2))) + options.uv_extra_bits, 30)


def _largest_image_px(gltf: pygltflib.GLTF2, blob: bytes) -> int | None:
    import io

    from PIL import Image

    sizes = []
    for image in gltf.images or []:
        if image.bufferView is not None:
            with Image.open(io.BytesIO(_view_bytes(gltf, blob, image.bufferView))) as picture:
                sizes.append(max(picture.size))
    return max(sizes, default=None)


def _load(data: bytes) -> pygltflib.GLTF2:
    if data[:4] != b"glTF":
        raise ValueError("not a GLB file (no glTF magic)")
    return pygltflib.GLTF2.load_from_bytes(data)


def _view_bytes(gltf: pygltflib.GLTF2, blob: bytes, index: int) -> bytes:
    view = gltf.bufferViews[index]
    start = view.byteOffset or 0
    return blob[start : start + view.byteLength]


class _BlobBuilder:
    """New buffer views to append after the kept ones: (data, target) in order of creation.

    Views are numbered from 0 here and renumbered once the kept views are known.
    """

    def __init__(self) -> None:
        self.views: list[tuple[bytes, int | None]] = []

    def add(self, data: bytes, target: int | None) -> int:
        self.views.append((data, target))
        return -len(self.views)  # a placeholder, < 0: see _rebuild

    def reserve(self, data: bytes) -> int:
        return self.add(data, None)


def _rebuild(
    gltf: pygltflib.GLTF2,
    blob: bytes,
    builder: _BlobBuilder,
    *,
    drop_views: set[int],
    extension_added: bool,
) -> bytes:
    """Lay out one binary buffer: the kept views (images ...) then the builder's, renumbering
    every reference; set the extension lists; return the GLB bytes."""
    out = bytearray()
    views: list[pygltflib.BufferView] = []
    renumber: dict[int, int] = {}

    def append(data: bytes, template: pygltflib.BufferView | None, target: int | None) -> int:
        out.extend(b"\0" * (-len(out) % 4))  # 4-byte alignment for every view
        view = pygltflib.BufferView(buffer=0, byteOffset=len(out), byteLength=len(data))
        if template is not None:
            view.byteStride, view.target, view.name = (
                template.byteStride, template.target, template.name,
            )  # fmt: skip
        else:
            view.target = target
        views.append(view)
        out.extend(data)
        return len(views) - 1

    for index, view in enumerate(gltf.bufferViews):
        if index not in drop_views:
            renumber[index] = append(_view_bytes(gltf, blob, index), view, None)
    for position, (data, target) in enumerate(builder.views):
        renumber[-(position + 1)] = append(data, None, target)
    out.extend(b"\0" * (-len(out) % 4))

    for accessor in gltf.accessors:
        if accessor.bufferView is not None:
            accessor.bufferView = renumber[accessor.bufferView]
    for image in gltf.images or []:
        if image.bufferView is not None:
            image.bufferView = renumber[image.bufferView]
    for mesh in gltf.meshes:
        for primitive in mesh.primitives:
            extension = (primitive.extensions or {}).get(DRACO_EXTENSION)
            if extension is not None:
                extension["bufferView"] = renumber[extension["bufferView"]]
            if primitive.extensions == {}:
                primitive.extensions = None
    used = [e for e in (gltf.extensionsUsed or []) if e != DRACO_EXTENSION]
    required = [e for e in (gltf.extensionsRequired or []) if e != DRACO_EXTENSION]
    if extension_added:
        # Required: a loader that cannot decode Draco has no geometry to show.
        used.append(DRACO_EXTENSION)
        required.append(DRACO_EXTENSION)
    gltf.extensionsUsed = used  # pygltflib writes no empty list
    gltf.extensionsRequired = required
    gltf.bufferViews = views
    gltf.buffers = [pygltflib.Buffer(byteLength=len(out))]
    gltf.set_binary_blob(bytes(out))
    return b"".join(gltf.save_to_bytes())
