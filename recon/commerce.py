"""The commerce check: a written GLB (and USDZ) measured against published 3D-commerce rules."""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from recon.errors import InputError

MB = 1_000_000  # bytes: the platforms' "MB", read the strict (decimal) way

# The documents the rules come from (name, address), cited by every rule below.
KHRONOS = (
    "Khronos 3D Commerce Real-time Asset Creation Guidelines 1.0 (summary)",
    "https://github.com/KhronosGroup/3DC-Asset-Creation/blob/main/asset-creation-guidelines/"
    "RealtimeAssetCreationGuidelines.md",
)
GOOGLE = (
    "Google Merchant Center Help: 3D model link [virtual_model_link]",
    "https://support.google.com/merchants/answer/13674896",
)
SHOPIFY = (
    "Shopify Help Center: 3D modeling checklist for Shopify Partners",
    "https://help.shopify.com/en/partners/resources/creating-media/3d-models/"
    "creating-3d-models/3d-modeling-checklist",
)
APPLE_ARKIT = (
    "Apple AR Quick Look via USD's ARKit compliance checker (usdchecker --arkit, usd-core)",
    "https://openusd.org/release/toolset.html#usdchecker",
)


@dataclass(frozen=True)
class GlbFacts:
    """What a GLB holds, read from its bytes (works for Draco-compressed geometry too)."""

    bytes: int
    version: int  # GLB container version (2 for glTF 2.0)
    asset_version: str  # asset.version in the JSON
    triangles: int
    vertices: int
    materials: int
    textures: list[dict]  # {"image", "width", "height", "mime_type", "bytes"} per image
    image_bytes: int  # bytes of all embedded images
    vertex_colors: bool  # some primitive has COLOR_n
    lights: bool  # KHR_lights_punctual is used
    extensions: list[str]  # extensionsUsed
    pbr_metallic_roughness: bool  # every material is metallic-roughness PBR
    bounds: np.ndarray | None  # (2, 3) min and max corners in the scene frame, None when unknown


def inspect_glb(data: bytes) -> GlbFacts:
    """Measure the GLB `data`: triangles, materials, textures, bounds (from accessor bounds and
    node transforms, which glTF requires for POSITION), extensions.

    Raises InputError when `data` is not a GLB.
    """
    if len(data) < 20 or data[:4] != b"glTF":
        raise InputError("not a GLB file (binary glTF starts with 'glTF'): export it as .glb")
    version, _ = struct.unpack_from("<II", data, 4)
    chunk_length, chunk_type = struct.unpack_from("<II", data, 12)
    if chunk_type != 0x4E4F534A:  # "JSON"
        raise InputError("the GLB's first chunk is not JSON: the file is damaged")
    gltf = json.loads(data[20 : 20 + chunk_length])
    binary = b""
    offset = 20 + chunk_length
    if offset + 8 <= len(data):
        binary_length, _ = struct.unpack_from("<II", data, offset)
        binary = data[offset + 8 : offset + 8 + binary_length]
    accessors = gltf.get("accessors", [])
    views = gltf.get("bufferViews", [])
    triangles = vertices = 0
    vertex_colors = False
    for mesh in gltf.get("meshes", []):
        for primitive in mesh.get("primitives", []):
            attributes = primitive.get("attributes", {})
            count = accessors[attributes["POSITION"]]["count"] if "POSITION" in attributes else 0
            vertices += count
            vertex_colors |= any(name.startswith("COLOR_") for name in attributes)
            if primitive.get("mode", 4) == 4:  # TRIANGLES
                if "indices" in primitive:
                    triangles += accessors[primitive["indices"]]["count"] // 3
                else:
                    triangles += count // 3
    textures = []
    for index, image in enumerate(gltf.get("images", [])):
        entry = {"image": index, "width": None, "height": None,
                 "mime_type": image.get("mimeType"), "bytes": 0}  # fmt: skip
        if "bufferView" in image:
            view = views[image["bufferView"]]
            start = view.get("byteOffset", 0)
            content = binary[start : start + view["byteLength"]]
            entry["bytes"] = len(content)
            try:
                with Image.open(io.BytesIO(content)) as picture:
                    entry["width"], entry["height"] = picture.size
                    entry["mime_type"] = entry["mime_type"] or Image.MIME.get(picture.format)
            except OSError:
                pass  # an unreadable image: its size stays unknown and fails the size rules
        textures.append(entry)
    materials = gltf.get("materials", [])
    used = list(gltf.get("extensionsUsed", []))
    return GlbFacts(
        bytes=len(data),
        version=version,
        asset_version=str(gltf.get("asset", {}).get("version", "")),
        triangles=triangles,
        vertices=vertices,
        materials=len(materials),
        textures=textures,
        image_bytes=sum(t["bytes"] for t in textures),
        vertex_colors=vertex_colors,
        lights="KHR_lights_punctual" in used,
        extensions=used,
        # glTF's materials are metallic-roughness unless the old spec-gloss extension says not
        pbr_metallic_roughness=bool(materials)
        and all(
            "KHR_materials_pbrSpecularGlossiness" not in m.get("extensions", {}) for m in materials
        ),
        bounds=_scene_bounds(gltf),
    )


def check(
    glb_path: Path,
    *,
    usdz_path: Path | None = None,
    units: str = "unknown",
    up_source: str | None = None,
    usdz_arkit_compliant: bool | None = None,
) -> dict:
    """Check the written model against the 3D-commerce rules: the `commerce` report section.

    glb_path: the GLB as published; usdz_path: the USDZ beside it (None or missing: none);
    units: the report's units ("metre" or "unknown"); up_source: how the orient stage found up
    (None: it did not); usdz_arkit_compliant: USD's ARKit checker on that USDZ (None: run it
    here). Returns {"passed", "failed", "rules": [{"id", "rule", "source", "url", "measured",
    "limit", "passed"}]}.
    """
    glb_path = Path(glb_path)
    if not glb_path.exists():
        raise InputError(f"no model at {glb_path}: the commerce check reads the written GLB")
    facts = inspect_glb(glb_path.read_bytes())
    usdz = usdz_path is not None and Path(usdz_path).exists()
    if usdz and usdz_arkit_compliant is None:
        from recon.usdz import arkit_compliance  # usd-core is large: only when needed

        usdz_arkit_compliant = arkit_compliance(Path(usdz_path))["passed"]
    return evaluate_rules(
        facts,
        units=units,
        up_source=up_source,
        usdz_present=usdz,
        usdz_arkit_compliant=usdz_arkit_compliant if usdz else None,
    )


def evaluate_rules(
    facts: GlbFacts,
    *,
    units: str,
    up_source: str | None,
    usdz_present: bool,
    usdz_arkit_compliant: bool | None,
) -> dict:
    """The rules on measured facts (pure: no files), in the shape `check` returns."""
    rules: list[dict] = []

    def rule(rule_id, text, source, measured, limit, passed) -> None:
        name, url = source
        rules.append({"id": rule_id, "rule": text, "source": name, "url": url,
                      "measured": measured, "limit": limit, "passed": bool(passed)})  # fmt: skip

    sides = [side for t in facts.textures for side in (t["width"], t["height"])]
    largest = max((s for s in sides if s is not None), default=0)
    unknown_size = any(s is None for s in sides)

    # Khronos, "File Formats and Asset Structure": export glTF or binary GLB (glTF 2.0); Google
    # accepts glTF/GLB files only.
    rule("gltf2_binary", "glTF 2.0 binary (GLB)", KHRONOS,
         f"GLB v{facts.version}, asset {facts.asset_version}", "GLB v2, asset 2.0",
         facts.version == 2 and facts.asset_version.startswith("2."))  # fmt: skip
    # Khronos, "Publishing Targets / Web for Desktop and Mobile AR": "ideally less than 5MB".
    rule("khronos_file_size", "file size ≤ 5 MB", KHRONOS, facts.bytes, 5 * MB,
         facts.bytes <= 5 * MB)  # fmt: skip
    # Google, "Minimum requirements": "recommended file size is 10MB and shouldn't exceed 15MB".
    rule("google_file_size", "file size ≤ 15 MB (10 MB recommended)", GOOGLE, facts.bytes,
         15 * MB, facts.bytes <= 15 * MB)  # fmt: skip
    # Shopify, "Technical requirements": models over 15 MB are re-optimised by Shopify (lossy);
    # "model file size should be less than 15 MB".
    rule("shopify_file_size", "file size < 15 MB", SHOPIFY, facts.bytes, 15 * MB,
         facts.bytes < 15 * MB)  # fmt: skip
    # Khronos, "Publishing Targets": "Triangle Count = 100k or less".
    rule("khronos_triangles", "triangles ≤ 100,000", KHRONOS, facts.triangles, 100_000,
         facts.triangles <= 100_000)  # fmt: skip
    # Khronos, "Publishing Targets": "power of 2 textures, square not required".
    rule("khronos_power_of_two", "texture sides are powers of two", KHRONOS,
         sorted({s for s in sides if s is not None}) or None, "2^n",
         not unknown_size and all(s & (s - 1) == 0 for s in sides))  # fmt: skip
    # Khronos, "Publishing Targets": "1k or 2k albedo / ORM / normal".
    rule("khronos_texture_size", "textures ≤ 2048 px", KHRONOS, largest, 2048,
         not unknown_size and largest <= 2048)  # fmt: skip
    # Google, "Minimum requirements": "4K texture ... is the largest recommended texture size".
    rule("google_texture_size", "textures ≤ 4096 px", GOOGLE, largest, 4096,
         not unknown_size and largest <= 4096)  # fmt: skip
    # Shopify, "Technical requirements": "All textures have been converted to JPG format, if
    # possible"; Khronos, "Textures": "Use JPG textures as much as possible for albedo".
    mimes = sorted({t["mime_type"] or "unknown" for t in facts.textures})
    rule("shopify_jpeg_textures", "textures are JPEG", SHOPIFY, mimes or None, ["image/jpeg"],
         all(m == "image/jpeg" for m in mimes))  # fmt: skip
    # Shopify, "Material quality": "Only one material is assigned to the model".
    rule("shopify_one_material", "exactly one material", SHOPIFY, facts.materials, 1,
         facts.materials == 1)  # fmt: skip
    # Khronos, "Materials": "PBR materials in Metallic-Roughness format".
    rule("khronos_pbr", "metallic-roughness PBR material", KHRONOS,
         facts.pbr_metallic_roughness, True, facts.pbr_metallic_roughness)  # fmt: skip
    # Shopify, "Technical requirements": colour comes from "1 base color texture" (no vertex
    # colours); the ARKit checker rejects them in USDZ, so they would not survive to iOS either.
    rule("shopify_no_vertex_colors", "no vertex colours (base colour texture)", SHOPIFY,
         facts.vertex_colors, False, not facts.vertex_colors)  # fmt: skip
    # Khronos, "Lighting": "The final model export should not include any lighting set up".
    rule("khronos_no_lights", "no lights in the file", KHRONOS, facts.lights, False,
         not facts.lights)  # fmt: skip
    # Khronos, "Coordinate Systems and Scale": "use 1 unit as 1 meter"; Shopify, "Real-world
    # scale".
    rule("khronos_units_metres", "1 unit = 1 metre (real-world scale)", KHRONOS, units, "metre",
         units == "metre")  # fmt: skip
    # Khronos, "Coordinate Systems and Scale": "+Y as world up": the orient stage must have
    # found up (from the table plane, the camera ring or the scale mat).
    rule("khronos_y_up", "+Y up (the product stands upright)", KHRONOS, up_source,
         "up found", bool(up_source))  # fmt: skip
    # Khronos, "File Formats and Asset Structure": "the center bottom is at world 0,0,0".
    origin_offset = _origin_offset(facts.bounds)
    rule("khronos_origin_bottom_centre", "origin at the bottom centre (within 1 % of the size)",
         KHRONOS, origin_offset, 0.01,
         origin_offset is not None and origin_offset <= 0.01)  # fmt: skip
    # Khronos, "File Formats and Asset Structure": "USDZ for iOS devices".
    rule("khronos_usdz_present", "USDZ beside the GLB (iOS AR Quick Look)", KHRONOS,
         usdz_present, True, usdz_present)  # fmt: skip
    # Apple AR Quick Look: USD's ARKit compliance checker passes on the USDZ.
    rule("arkit_usdz_compliant", "USDZ passes USD's ARKit compliance checker", APPLE_ARKIT,
         usdz_arkit_compliant, True, usdz_arkit_compliant is True)  # fmt: skip
    failed = [r["id"] for r in rules if not r["passed"]]
    return {"passed": not failed, "failed": failed, "rules": rules}


def _origin_offset(bounds: np.ndarray | None) -> float | None:
    """How far the bottom centre sits from the origin, relative to the size (the bounding box's
    diagonal); None when the bounds are unknown."""
    if bounds is None:
        return None
    low, high = bounds
    size = float(np.linalg.norm(high - low))
    if size <= 0:
        return None
    bottom_centre = np.array([(low[0] + high[0]) / 2, low[1], (low[2] + high[2]) / 2])
    return round(float(np.linalg.norm(bottom_centre)) / size, 6)


def _scene_bounds(gltf: dict) -> np.ndarray | None:
    """(2, 3) corners of the scene's POSITION bounds under the node transforms."""
    accessors = gltf.get("accessors", [])
    nodes = gltf.get("nodes", [])
    scenes = gltf.get("scenes", [])
    roots = scenes[gltf.get("scene", 0)]["nodes"] if scenes else range(len(nodes))
    corners = []

    def visit(index: int, parent: np.ndarray) -> None:
        node = nodes[index]
        matrix = parent @ _node_matrix(node)
        if "mesh" in node:
            for primitive in gltf["meshes"][node["mesh"]].get("primitives", []):
                position = primitive.get("attributes", {}).get("POSITION")
                if position is None:
                    continue
                accessor = accessors[position]
                if "min" not in accessor or "max" not in accessor:
                    continue
                low, high = np.asarray(accessor["min"]), np.asarray(accessor["max"])
                box = np.array([[x, y, z] for x in (low[0], high[0]) for y in (low[1], high[1])
                                for z in (low[2], high[2])])  # fmt: skip
                corners.append(box @ matrix[:3, :3].T + matrix[:3, 3])
        for child in node.get("children", []):
            visit(child, matrix)

    for root in roots:
        visit(root, np.eye(4))
    if not corners:
        return None
    stacked = np.concatenate(corners)
    return np.stack([stacked.min(axis=0), stacked.max(axis=0)])


def _node_matrix(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.asarray(node["matrix"], dtype=np.float64).reshape(4, 4).T  # column-major
    x, y, z, w = node.get("rotation", [0.0, 0.0, 0.0, 1.0])
    rotation = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip
    matrix = np.eye(4)
    matrix[:3, :3] = rotation * np.asarray(node.get("scale", [1.0, 1.0, 1.0]))
    matrix[:3, 3] = node.get("translation", [0.0, 0.0, 0.0])
    return matrix
