"""Surfaces of a scene mesh, product placement and the showroom layout (issue 9)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import trimesh

from recon.cli import main
from recon.errors import InputError
from recon.evaluation import distance_to_mesh
from recon.geometry import sample_surface
from recon.showroom import (
    Layout,
    PlacementOptions,
    Product,
    footprint_xz,
    load_reconstruction,
    move_product,
    place_products,
    rectangle_inside_polygon,
    triangles_hit_box,
)
from recon.surfaces import Surface, SurfaceKind, SurfaceOptions, detect_surfaces

# The test room's truth: (kind, top height m, area m²) of every horizontal surface.
SHELF_LOW, SHELF_HIGH, COUNTER = 0.6, 1.2, 0.95  # the low board is waist-high too
BOARD = (-2.0, -0.8, -2.5, -2.15)  # shelf boards: x0, x1, z0, z1 (1.2 × 0.35 m)
COUNTER_BOX = (0.8, 2.2, 0.2, 0.8)  # x0, x1, z0, z1 (1.4 × 0.6 m)


def _box(low, high) -> trimesh.Trimesh:
    low, high = np.asarray(low, dtype=float), np.asarray(high, dtype=float)
    box = trimesh.creation.box(extents=high - low)
    box.apply_translation((low + high) / 2.0)
    return box


def _quad(corner, u, v) -> trimesh.Trimesh:
    """One-sided rectangle, its normal along u × v (inside-out scenes see one side)."""
    corner, u, v = (np.asarray(a, dtype=float) for a in (corner, u, v))
    vertices = np.array([corner, corner + u, corner + u + v, corner + v])
    return trimesh.Trimesh(vertices, [[0, 1, 2], [0, 2, 3]], process=False)


def make_test_room(*, noise_m: float = 0.0, seed: int = 0) -> trimesh.Trimesh:
    """A 6 × 5 × 2.6 m room seen from inside: floor, four walls facing in, a shelf unit with
    two boards against the back wall, a counter; with `noise_m`, finely split and jittered
    like a reconstructed mesh."""
    x0, x1, z0, z1 = BOARD
    parts = [
        _quad((-3, 0, 2.5), (6, 0, 0), (0, 0, -5)),  # floor, facing up
        _quad((-3, 0, -2.5), (6, 0, 0), (0, 2.6, 0)),  # back wall, facing +z
        _quad((3, 0, 2.5), (-6, 0, 0), (0, 2.6, 0)),  # front wall, facing -z
        _quad((-3, 0, 2.5), (0, 0, -5), (0, 2.6, 0)),  # left wall, facing +x
        _quad((3, 0, -2.5), (0, 0, 5), (0, 2.6, 0)),  # right wall, facing -x
        _box((x0 - 0.03, 0, z0), (x0, 1.8, z1)),  # shelf unit sides
        _box((x1, 0, z0), (x1 + 0.03, 1.8, z1)),
        _box((x0, SHELF_LOW - 0.03, z0), (x1, SHELF_LOW, z1)),  # boards
        _box((x0, SHELF_HIGH - 0.03, z0), (x1, SHELF_HIGH, z1)),
        _box((COUNTER_BOX[0], 0, COUNTER_BOX[2]), (COUNTER_BOX[1], COUNTER, COUNTER_BOX[3])),
    ]
    mesh = trimesh.util.concatenate(parts)
    if noise_m > 0:
        vertices, faces = trimesh.remesh.subdivide_to_size(mesh.vertices, mesh.faces, 0.08)
        rng = np.random.default_rng(seed)
        vertices = vertices + rng.normal(0.0, noise_m, vertices.shape)
        mesh = trimesh.Trimesh(vertices, faces, process=False)
    return mesh


def _products() -> list[Product]:
    sizes = {
        "Mug": (0.12, 0.1, 0.09),
        "Cereal box": (0.2, 0.3, 0.07),
        "Bottle": (0.08, 0.3, 0.08),
        "Vase": (0.15, 0.4, 0.15),
    }
    return [
        Product(id=f"p{i}", model=f"products/p{i}.glb", name=name, bbox_m=size)
        for i, (name, size) in enumerate(sizes.items())
    ]


def _horizontal(surfaces: list[Surface]) -> list[tuple[SurfaceKind, float, float]]:
    return [(s.kind, s.height_m, s.area_m2) for s in surfaces if s.kind is not SurfaceKind.WALL]


@pytest.mark.parametrize("noise_m", [0.0, 0.003])
def test_detects_floor_shelves_counter_and_walls(noise_m: float) -> None:
    surfaces = detect_surfaces(make_test_room(noise_m=noise_m))
    found = _horizontal(surfaces)
    board_area = (BOARD[1] - BOARD[0]) * (BOARD[3] - BOARD[2])
    counter_area = (COUNTER_BOX[1] - COUNTER_BOX[0]) * (COUNTER_BOX[3] - COUNTER_BOX[2])
    truth = [
        (SurfaceKind.FLOOR, 0.0, 30.0),  # one quad, under the furniture too
        (SurfaceKind.TABLE, COUNTER, counter_area),
        (SurfaceKind.SHELF, SHELF_LOW, board_area),
        (SurfaceKind.SHELF, SHELF_HIGH, board_area),
    ]
    assert [kind for kind, _, _ in found] == [kind for kind, _, _ in truth]
    for (_, height, area), (_, true_height, true_area) in zip(found, truth, strict=True):
        assert height == pytest.approx(true_height, abs=0.01)
        assert area == pytest.approx(true_area, rel=0.06)  # cells of 2 cm
    shelf = surfaces[2]
    low, high = np.min(shelf.polygon_xz, axis=0), np.max(shelf.polygon_xz, axis=0)
    assert low == pytest.approx([BOARD[0], BOARD[2]], abs=0.03)
    assert high == pytest.approx([BOARD[1], BOARD[3]], abs=0.03)
    walls = [s for s in surfaces if s.kind is SurfaceKind.WALL]
    assert len(walls) == 4  # the shelf unit's sides are too narrow to be walls
    normals = sorted(tuple(np.round(w.normal, 1)) for w in walls)
    assert normals == sorted([(0, 0, 1), (0, 0, -1), (1, 0, 0), (-1, 0, 0)])
    assert [s.id for s in surfaces] == list(range(len(surfaces)))


def test_a_wall_split_by_a_doorway_is_one_wall() -> None:
    mesh = make_test_room(noise_m=0.003)
    centres = mesh.triangles_center
    # A 0.8 m wide doorway through the back wall (z = -2.5), floor to ceiling.
    doorway = (np.abs(centres[:, 2] + 2.5) < 0.01) & (np.abs(centres[:, 0] - 1.0) < 0.4)
    mesh.update_faces(~doorway)
    walls = [s for s in detect_surfaces(mesh) if s.kind is SurfaceKind.WALL]
    back = [w for w in walls if w.normal[2] > 0.9]
    assert len(walls) == 4
    assert len(back) == 1
    (x0, z0), (x1, z1) = back[0].polygon_xz
    assert sorted([x0, x1]) == pytest.approx([-3.0, 3.0], abs=0.05)
    assert [z0, z1] == pytest.approx([-2.5, -2.5], abs=0.01)
    # Going start → end the room (the wall's normal, +z) is on the left in (x, z), as for the
    # counter-clockwise outlines of horizontal surfaces.
    assert x0 < x1
    assert back[0].area_m2 == pytest.approx((6.0 - 0.8) * 2.6, rel=0.06)


def test_units_unknown_are_estimated_from_the_room_height() -> None:
    mesh = make_test_room()
    mesh.apply_scale(3.0)  # arbitrary units: 3 per metre
    surfaces = detect_surfaces(mesh, SurfaceOptions(model_units_per_metre=None))
    kinds = [s.kind for s in surfaces if s.kind is not SurfaceKind.WALL]
    assert kinds == [SurfaceKind.FLOOR, SurfaceKind.TABLE, SurfaceKind.SHELF, SurfaceKind.SHELF]
    assert surfaces[1].height_m == pytest.approx(3 * COUNTER, abs=0.03)


def test_surface_json_round_trip_and_errors() -> None:
    surfaces = detect_surfaces(make_test_room())
    for surface in surfaces:
        text = json.dumps(surface.to_json())
        assert Surface.from_json(json.loads(text)) == surface
    data = surfaces[0].to_json()
    assert set(data) == {"id", "kind", "normal", "height_m", "polygon_xz", "area_m2", "bounds"}
    with pytest.raises(InputError, match="kind 'ceiling'"):
        Surface.from_json({**data, "kind": "ceiling"})
    with pytest.raises(InputError, match="height_m"):
        Surface.from_json({**data, "height_m": None})


def test_geometry_predicates() -> None:
    # An L-shaped top: its inner corner pokes into a rectangle whose corners are all inside.
    l_shape = np.array([[0, 0], [2, 0], [2, 1], [1, 1], [1, 2], [0, 2]], dtype=float)
    square = np.array([[0.2, 0.2], [0.8, 0.2], [0.8, 0.8], [0.2, 0.8]])
    assert rectangle_inside_polygon(square, l_shape, 0.1)
    assert not rectangle_inside_polygon(square, l_shape, 0.3)  # the margin reaches the edge
    across = np.array([[0.8, 0.8], [1.6, 0.8], [1.6, 1.6], [0.8, 1.6]]) - [0.0, 0.0]
    assert not rectangle_inside_polygon(across, l_shape, 0.0)
    # Triangles against the box [-1, 1]³: through it, beside it, across a face, one inside.
    triangles = np.array(
        [
            [[-3, 0, -3], [3, 0, -3], [0, 0, 3]],  # a plane through the middle
            [[2, 0, 0], [3, 0, 0], [2, 1, 0]],  # beside
            [[0.5, 0.5, 0.5], [0.6, 0.5, 0.5], [0.5, 0.6, 0.5]],  # inside
            [[-3, 1.5, 0], [3, 1.5, 0], [0, 3, 0]],  # above
            [[1.5, -3, 0], [1.5, 3, 0], [-3, 0, 3]],  # through (0, 0, 1) on the box
            [[3.2, 0, 0], [0, 3.2, 0], [0, 0, 3.2]],  # bounds overlap, plane misses (1, 1, 1)
            [[2.9, 0, 0], [0, 2.9, 0], [0, 0, 2.9]],  # the same a little nearer: cuts the corner
        ],
        dtype=float,
    )
    hits = triangles_hit_box(triangles, np.ones(3)).tolist()
    assert hits == [True, False, True, False, True, False, True]


def _check_placed(mesh: trimesh.Trimesh, layout: Layout) -> None:
    """Independent checks: every product stands on its surface (gap ≤ 1 cm under its base),
    no scene surface passes through it, and products keep apart."""
    scene_points = sample_surface(mesh, 400_000, seed=1)
    for product in layout.products:
        surface = layout.scene.surface(product.surface)
        assert product.position[1] == pytest.approx(surface.height_m, abs=1e-6)
        corners = footprint_xz(product)
        inner = corners.mean(axis=0) + 0.9 * (corners - corners.mean(axis=0))
        base = np.column_stack([inner[:, 0], np.full(4, product.position[1]), inner[:, 1]])
        assert distance_to_mesh(mesh, base).max() <= 0.01
        # Nothing of the scene inside the product's box above its bottom centimetre.
        low = np.array([corners[:, 0].min(), product.position[1] + 0.01, corners[:, 1].min()])
        high = np.array(
            [corners[:, 0].max(), product.position[1] + product.size[1], corners[:, 1].max()]
        )
        inside = ((scene_points > low) & (scene_points < high)).all(axis=1)
        assert not inside.any(), f"{product.id} meets the scene at {scene_points[inside][:3]}"
    boxes = [
        (footprint_xz(p).min(axis=0), footprint_xz(p).max(axis=0), p.position[1], p)
        for p in layout.products
    ]
    for i, (a_low, a_high, a_y, a) in enumerate(boxes):
        for b_low, b_high, b_y, b in boxes[i + 1 :]:
            apart_xz = (a_high < b_low).any() or (b_high < a_low).any()
            apart_y = a_y + a.size[1] <= b_y or b_y + b.size[1] <= a_y
            assert apart_xz or apart_y, f"{a.id} and {b.id} overlap"


@pytest.mark.parametrize("noise_m", [0.0, 0.003])
def test_products_stand_on_shelves_and_counter(noise_m: float) -> None:
    mesh = make_test_room(noise_m=noise_m)
    surfaces = detect_surfaces(mesh)
    layout = place_products(mesh, surfaces, _products())
    kinds = [layout.scene.surface(p.surface).kind for p in layout.products]
    assert all(k in (SurfaceKind.SHELF, SurfaceKind.TABLE) for k in kinds)
    assert len({p.surface for p in layout.products}) >= 2  # spread out
    assert SurfaceKind.SHELF in kinds
    _check_placed(mesh, layout)
    # The visitor starts on the floor at eye height, looking toward the products.
    x, y, z = layout.spawn.position
    assert y == pytest.approx(1.6, abs=0.01)
    assert -3 < x < 3
    assert -2.5 < z < 2.5


def test_products_move_to_the_floor_when_shelves_are_full() -> None:
    mesh = make_test_room()
    surfaces = detect_surfaces(mesh)
    crates = [
        Product(id=f"c{i}", model=f"c{i}.glb", name="crate", bbox_m=(0.5, 0.5, 0.5))
        for i in range(3)
    ]
    layout = place_products(mesh, surfaces, crates)
    kinds = [layout.scene.surface(p.surface).kind for p in layout.products]
    assert kinds.count(SurfaceKind.FLOOR) >= 2  # a 50 cm crate fits on no 35 cm board
    _check_placed(mesh, layout)
    with pytest.raises(InputError, match="fits on no free surface"):
        place_products(
            mesh, surfaces, [Product(id="x", model="x.glb", name="wardrobe", bbox_m=(9, 2, 9))]
        )


def test_moves_are_validated() -> None:
    mesh = make_test_room()
    surfaces = detect_surfaces(mesh)
    layout = place_products(mesh, surfaces, _products())
    low_shelf = next(s for s in surfaces if s.height_m == pytest.approx(SHELF_LOW, abs=0.01))
    floor = next(s for s in surfaces if s.kind is SurfaceKind.FLOOR)
    mug = layout.product("p0")
    # Off the end of the board.
    with pytest.raises(InputError, match="leaves surface"):
        move_product(layout, mesh, "p0", position=(-0.83, SHELF_LOW, -2.33))
    # Floating between the boards.
    with pytest.raises(InputError, match="not on a surface"):
        move_product(layout, mesh, "p0", position=(-1.4, 0.8, -2.33))
    # Into another product.
    other = layout.products[1]
    with pytest.raises(InputError, match="touch product"):
        move_product(layout, mesh, "p0", position=other.position, surface=other.surface)
    # Into the counter's body (the floor under it).
    with pytest.raises(InputError, match=r"inside a solid|intersect"):
        move_product(layout, mesh, "p0", position=(1.5, 0.0, 0.5), surface=floor.id)
    # A tall product onto the low shelf: it would cut through the board above.
    tall = Product(id="t", model="t.glb", name="lamp", bbox_m=(0.15, 0.9, 0.15))
    with_tall = Layout(scene=layout.scene, products=(*layout.products, tall), spawn=layout.spawn)
    with pytest.raises(InputError, match="intersect the scene"):
        move_product(with_tall, mesh, "t", position=(-1.4, SHELF_LOW, -2.33), surface=low_shelf.id)
    # Not a surface for standing on.
    wall = next(s for s in surfaces if s.kind is SurfaceKind.WALL)
    with pytest.raises(InputError, match="wall"):
        move_product(layout, mesh, "p0", surface=wall.id)
    with pytest.raises(InputError, match="not in the showroom"):
        move_product(layout, mesh, "nope", surface=floor.id)
    # A good move: to the floor, turned.
    moved = move_product(layout, mesh, "p0", position=(0.0, 0.0, 1.5), rotation_y_deg=45.0)
    placed = moved.product("p0")
    assert placed.surface == floor.id
    assert placed.position == (0.0, 0.0, 1.5)
    assert placed.rotation_y_deg == 45.0
    assert moved.product("p1") == layout.product("p1")
    _check_placed(mesh, moved)
    # To another surface without a position: its freest spot.
    onto = move_product(layout, mesh, "p0", surface=low_shelf.id)
    assert onto.product("p0").surface == low_shelf.id
    assert mug.surface != low_shelf.id
    _check_placed(mesh, onto)


def test_layout_json_round_trip() -> None:
    mesh = make_test_room()
    layout = place_products(mesh, detect_surfaces(mesh), _products())
    data = json.loads(json.dumps(layout.to_json()))
    assert Layout.from_json(data) == layout
    assert set(data) == {"version", "scene", "products", "spawn"}
    assert set(data["products"][0]) == {
        "id", "model", "name", "model_id", "viewer_url", "bbox_m", "surface", "position",
        "rotation_y_deg", "scale",
    }  # fmt: skip
    with pytest.raises(InputError, match="version"):
        Layout.from_json({**data, "version": 2})
    with pytest.raises(InputError, match="bbox_m"):
        Layout.from_json({**data, "products": [{**data["products"][0], "bbox_m": [1, 0, 1]}]})


def test_unknown_units_scale_products_by_the_given_ratio() -> None:
    mesh = make_test_room()
    mesh.apply_scale(10.0)  # decimetres, say
    surfaces = detect_surfaces(mesh, SurfaceOptions(model_units_per_metre=None))
    layout = place_products(
        mesh,
        surfaces,
        _products()[:2],
        units="unknown",
        options=PlacementOptions(model_units_per_metre=10.0),
    )
    assert layout.scene.units == "unknown"
    assert all(p.scale == 10.0 for p in layout.products)
    assert layout.spawn.position[1] == pytest.approx(16.0)


def _write_reconstruction(folder: Path, mesh: trimesh.Trimesh, **report) -> Path:
    folder.mkdir(parents=True)
    mesh.export(folder / "model.glb")
    extent = mesh.bounds[1] - mesh.bounds[0]
    (folder / "report.json").write_text(
        json.dumps(
            {
                "version": 1,
                "status": "succeeded",
                "units": "metre",
                "mesh": {
                    "vertices": len(mesh.vertices),
                    "faces": len(mesh.faces),
                    "bbox_m": extent.tolist(),
                },
                **report,
            }
        )
    )
    return folder


def test_cli_showroom(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    room = make_test_room()
    scene = _write_reconstruction(tmp_path / "scene", room, mode="scene")
    products = []
    for name, size in (("mug", (0.1, 0.12, 0.1)), ("box", (0.2, 0.3, 0.08)), ("can", (0.07,) * 3)):
        box = trimesh.creation.box(extents=size)
        box.apply_translation((0, size[1] / 2, 0))
        products.append(_write_reconstruction(tmp_path / name, box))
    out = tmp_path / "showroom"
    code = main(["showroom", str(scene), "--products", *map(str, products), "-o", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "p0 mug" in printed
    assert "shelf" in printed
    layout = Layout.read(out / "showroom.json")
    assert (out / layout.scene.model).is_file()
    assert [p.name for p in layout.products] == ["mug", "box", "can"]
    for product in layout.products:
        assert (out / product.model).is_file()
        assert product.bbox_m == pytest.approx(
            json.loads((tmp_path / product.name / "report.json").read_text())["mesh"]["bbox_m"]
        )
    _check_placed(room, layout)
    # The report's own surfaces are used when it lists them.
    listed = tmp_path / "listed"
    _write_reconstruction(listed, room, surfaces=[s.to_json() for s in detect_surfaces(room)[:1]])
    assert [s.kind for s in load_reconstruction(listed).surfaces()] == [SurfaceKind.FLOOR]
    # A folder that is not a reconstruction: a clear error, exit code 2.
    (tmp_path / "empty").mkdir()
    code = main(["showroom", str(scene), "--products", str(tmp_path / "empty"), "-o", str(out)])
    assert code == 2
    assert "has no model.glb" in capsys.readouterr().err


def test_cli_showroom_in_a_scene_of_unknown_units(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    room = make_test_room()
    room.apply_scale(10.0)  # a reconstruction without a scale mat: decimetres, say
    scene = _write_reconstruction(tmp_path / "scene", room, mode="scene", units="unknown")
    box = trimesh.creation.box(extents=(0.1, 0.12, 0.1))
    box.apply_translation((0, 0.06, 0))
    product = _write_reconstruction(tmp_path / "mug", box)
    out = tmp_path / "showroom"
    args = ["showroom", str(scene), "--products", str(product), "-o", str(out)]
    assert main([*args, "--units-per-metre", "10"]) == 0
    assert "units are unknown: products are scaled by 10" in capsys.readouterr().err
    layout = Layout.read(out / "showroom.json")
    assert layout.scene.units == "unknown"
    (mug,) = layout.products
    assert mug.scale == 10.0
    assert layout.scene.surface(mug.surface).kind in (SurfaceKind.SHELF, SurfaceKind.TABLE)
    assert main([*args, "--units-per-metre", "0"]) == 2
    assert "--units-per-metre must be above 0" in capsys.readouterr().err


def test_products_stand_on_the_procedural_shop_rooms_shelves() -> None:
    """The scene helper's shop room (recon/room.py), as its truth mesh."""
    from recon.room import RoomOptions, make_room

    mesh = make_room(RoomOptions(texels_per_m=20)).to_trimesh()
    surfaces = detect_surfaces(mesh)
    heights = sorted({round(s.height_m, 4) for s in surfaces if s.kind is SurfaceKind.SHELF})
    # The boards of the two shelf unit sizes (2 m and 1.8 m tall, five boards each).
    for board in (0.08, 0.554, 1.501, 1.975, 0.504, 0.9275, 1.351, 1.775):
        assert min(abs(h - board) for h in heights) <= 0.01, f"no shelf at {board} m"
    counters = [s for s in surfaces if s.kind is SurfaceKind.TABLE]
    assert [round(s.height_m, 3) for s in counters] == [0.95]
    assert counters[0].area_m2 == pytest.approx(0.6 * 1.6, rel=0.03)
    assert sum(s.kind is SurfaceKind.WALL for s in surfaces) == 4
    layout = place_products(mesh, surfaces, _products())
    kinds = [layout.scene.surface(p.surface).kind for p in layout.products]
    assert all(k in (SurfaceKind.SHELF, SurfaceKind.TABLE) for k in kinds)
    assert SurfaceKind.SHELF in kinds
    _check_placed(mesh, layout)
