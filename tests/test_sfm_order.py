"""The capture-order check's reading of a model: how far successive photos turn, across gaps
in the sequence (a video's dropped blurred stretch), and photos that do not turn at all (a
turntable's still room pinning every camera)."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pycolmap
import pytest

from recon import report, sfm
from recon.cameras import look_at
from recon.errors import CaptureError
from recon.workspace import Workspace


def ring_model(angles_deg: list[float], names: list[str]) -> pycolmap.Reconstruction:
    """A model of cameras on a level ring around the origin at `angles_deg` (so their viewing
    directions turn by the same angles), named `names`."""
    model = pycolmap.Reconstruction()
    model.add_camera_with_trivial_rig(
        pycolmap.Camera.create_from_model_name(1, "SIMPLE_PINHOLE", 800.0, 640, 640)
    )
    for image_id, (angle, name) in enumerate(zip(angles_deg, names, strict=True), start=1):
        radians = np.radians(angle)
        R, t = look_at(np.array([4 * np.cos(radians), 0.0, 4 * np.sin(radians)]), np.zeros(3))
        model.add_image_with_trivial_frame(
            pycolmap.Image(name=name, keypoints=np.zeros((0, 2)), camera_id=1, image_id=image_id),
            pycolmap.Rigid3d(pycolmap.Rotation3d(R), t),
        )
    return model


def test_capture_indices_are_a_videos_decode_indices_else_positions() -> None:
    frames = [{"name": f"frame_{i:06d}.jpg", "frame_index": i} for i in (10, 15, 40)]
    assert sfm.capture_indices(frames).tolist() == [10, 15, 40]
    # Photos: their numbers (IMG_0412, a clock) are no measure of how far the camera went.
    photos = [{"name": "IMG_0412.JPG"}, {"name": "IMG_0415.JPG"}, {"name": "IMG_0500.JPG"}]
    assert sfm.capture_indices(photos).tolist() == [0, 1, 2]


def test_a_dropped_stretch_of_a_video_is_not_a_jump() -> None:
    """Frames every 5 of an orbit turning 3° a frame, with frames 40-59 dropped as blurred:
    the step across the gap is 75° in all, but 15° per usual gap, like the others."""
    frames = [frame for frame in range(0, 120, 5) if not 40 <= frame < 60]
    names = [f"frame_{frame:06d}.jpg" for frame in frames]
    indices = sfm.capture_indices(
        [{"name": name, "frame_index": frame} for name, frame in zip(names, frames, strict=True)]
    )
    model = ring_model([3.0 * frame for frame in frames], names)
    steps = sfm.order_steps_deg(model, names, indices)
    assert steps == pytest.approx(np.full(len(frames) - 1, 15.0), abs=0.01)
    largest, smooth = sfm.smooth_in_order(model, names, sfm.SfmOptions(), indices)
    assert smooth
    assert largest == pytest.approx(15.0, abs=0.1)
    # Without the frame indices the gap is a real jump.
    assert sfm.order_steps_deg(model, names).max() == pytest.approx(75.0, abs=0.01)
    assert not sfm.smooth_in_order(model, names, sfm.SfmOptions())[1]


def test_a_photo_left_out_of_the_model_halves_the_step_over_it() -> None:
    names = [f"img_{index:03d}.jpg" for index in range(12)]
    model = ring_model([30.0 * index for index in range(12) if index != 5], names[:5] + names[6:])
    steps = sfm.order_steps_deg(model, names)
    assert steps == pytest.approx(np.full(10, 30.0), abs=0.01)


def test_photos_that_do_not_turn_are_not_a_walk_around_the_product() -> None:
    """A turntable's still room, unmasked, holds every camera in place: no turn is larger than
    three times the median, yet the model is no walk around the product."""
    names = [f"img_{index:03d}.jpg" for index in range(12)]
    model = ring_model([0.01 * index for index in range(12)], names)
    assert sfm.median_step_deg(model, names) < 0.1
    assert not sfm.smooth_in_order(model, names, sfm.SfmOptions())[1]
    turning = ring_model([30.0 * index for index in range(12)], names)
    assert sfm.median_step_deg(turning, names) == pytest.approx(30.0, abs=0.01)
    assert sfm.smooth_in_order(turning, names, sfm.SfmOptions())[1]


def test_the_consensus_seed_is_each_photos_strongest_pair_and_successive_photos() -> None:
    """Look-alike faces give pairs with many matches (a-d: 300), but each photo's strongest
    pair is its true neighbour's; successive photos in capture order are trusted too, and
    pairs that were never verified are not made up."""
    names = ["a.jpg", "b.jpg", "c.jpg", "d.jpg", "e.jpg"]
    pairs = {
        frozenset(("a.jpg", "b.jpg")): 500,
        frozenset(("a.jpg", "d.jpg")): 300,
        frozenset(("b.jpg", "c.jpg")): 400,
        frozenset(("c.jpg", "d.jpg")): 350,
        frozenset(("d.jpg", "e.jpg")): 320,
        frozenset(("b.jpg", "e.jpg")): 200,
    }
    assert sfm.strongest_partner(pairs) == {
        "a.jpg": "b.jpg",
        "b.jpg": "a.jpg",
        "c.jpg": "b.jpg",
        "d.jpg": "c.jpg",
        "e.jpg": "d.jpg",
    }
    seed = sfm.consensus_seed(pairs, names)
    # e-a closes the ring but was never verified; b-e and a-d are neither strongest nor
    # successive.
    assert seed == {
        frozenset(("a.jpg", "b.jpg")),
        frozenset(("b.jpg", "c.jpg")),
        frozenset(("c.jpg", "d.jpg")),
        frozenset(("d.jpg", "e.jpg")),
    }


def test_ring_pairs_are_neighbours_along_a_ring_and_above_one_another() -> None:
    """Two rings of 6: photos one place apart along a ring (round it: 0-5) and photos of the
    next ring within one place of `offset` along it (ring 2 starts 2 places on)."""
    pairs = sfm.ring_pairs(12, 6, offset=2, window=1)
    along = {(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 5)}
    along |= {(i + 6, j + 6) for i, j in along}
    # photo 0 (place 0) sits under places 1, 2, 3 of ring 2: photos 7, 8, 9
    above = {(i, 6 + (i + 2 + step) % 6) for i in range(6) for step in (-1, 0, 1)}
    assert pairs == along | above
    assert (0, 6) not in pairs
    assert (0, 2) not in pairs
    assert (0, 2) in sfm.ring_pairs(12, 6, offset=2, window=2)


def test_ring_offset_follows_the_matches_between_rings() -> None:
    """Each photo of the first ring (of 8) sits under place 3 on from its own on the second:
    those pairs match."""
    pairs = {(i, 8 + (i + 3) % 8): 100 for i in range(8)}
    pairs[(0, 8)] = 60  # one look-alike pair does not outvote the others
    assert sfm.ring_offset(pairs, 8) == 3


def test_ring_sizes_put_the_true_rings_first_despite_look_alike_pairs() -> None:
    """24 photos in two rings of 12 (30° apart): neighbours along a ring and above one another
    match; every photo also matches the one half a ring away (a look-alike side, 180° off),
    which a ring of 6 would take for the photo above it. Rings of 12 come first; sizes that do
    not divide 24, and one ring of 24, are never tried."""
    pairs = {}
    for i in range(24):
        ring, place = divmod(i, 12)
        pairs[tuple(sorted((i, ring * 12 + (place + 1) % 12)))] = 80
        if ring == 0:
            pairs[(i, 12 + place)] = 60
        pairs[tuple(sorted((i, ring * 12 + (place + 6) % 12)))] = 50
    sizes = sfm.ring_sizes(pairs, 24, 6)
    assert sizes[0] == 12
    assert set(sizes) <= {6, 8, 12}
    # 13 photos cannot be equal rings of 6 or more: nothing to try
    assert sfm.ring_sizes(pairs, 13, 6) == []


def rings_model(
    angles_deg: list[float], heights: list[float], looking_from_deg: list[float] | None = None
) -> pycolmap.Reconstruction:
    """Cameras at `angles_deg` round the vertical axis, 4 from it, at `heights`, looking at the
    origin (or as if from `looking_from_deg` round the axis); named in order img_000.jpg, ..."""
    model = pycolmap.Reconstruction()
    model.add_camera_with_trivial_rig(
        pycolmap.Camera.create_from_model_name(1, "SIMPLE_PINHOLE", 800.0, 640, 640)
    )
    looking_from_deg = angles_deg if looking_from_deg is None else looking_from_deg
    for image_id, (angle, height, looking_from) in enumerate(
        zip(angles_deg, heights, looking_from_deg, strict=True), start=1
    ):
        radians, looking = np.radians(angle), np.radians(looking_from)
        centre = np.array([4 * np.cos(radians), height, 4 * np.sin(radians)])
        R, _ = look_at(np.array([4 * np.cos(looking), height, 4 * np.sin(looking)]), np.zeros(3))
        model.add_image_with_trivial_frame(
            pycolmap.Image(
                name=f"img_{image_id - 1:03d}.jpg",
                keypoints=np.zeros((0, 2)),
                camera_id=1,
                image_id=image_id,
            ),
            pycolmap.Rigid3d(pycolmap.Rotation3d(R), -R @ centre),
        )
    return model


def test_rings_go_round_once_in_order_near_one_plane() -> None:
    """Two rings of 12 (30° apart, the second higher): round when read as rings of 12, also
    with a photo missing; not round as rings of 8 (a ring of 8 is two thirds of a true ring
    and closes with a 150° step, or spans both), nor when a photo steps back, a ring turns the
    other way, or a ring's cameras bob up and down off its plane."""
    options = sfm.SfmOptions()
    names = [f"img_{index:03d}.jpg" for index in range(24)]
    angles = [30.0 * (index % 12) for index in range(24)]
    heights = [1.0] * 12 + [2.5] * 12

    found = sfm.rings_go_round(rings_model(angles, heights), names, 12, options)
    assert found["round"]
    assert found["windings"] in ([1.0, 1.0], [-1.0, -1.0])
    assert found["off_plane"] < 0.01
    assert found["worst_step"] == pytest.approx(1.0, abs=0.01)

    missing = rings_model(angles, heights)
    missing.deregister_frame(missing.image(5).frame_id)
    assert sfm.rings_go_round(missing, names, 12, options)["round"]

    assert not sfm.rings_go_round(rings_model(angles, heights), names, 8, options)["round"]

    stepped_back = angles.copy()
    stepped_back[3], stepped_back[4] = stepped_back[4], stepped_back[3]
    assert not sfm.rings_go_round(rings_model(stepped_back, heights), names, 12, options)["round"]

    other_way = angles[:12] + [-angle for angle in angles[12:]]
    found = sfm.rings_go_round(rings_model(other_way, heights), names, 12, options)
    assert not found["round"]
    assert sorted(found["windings"]) == [-1.0, 1.0]

    bobbing = [height + (0.6 if index % 2 else -0.6) for index, height in enumerate(heights)]
    found = sfm.rings_go_round(rings_model(angles, bobbing), names, 12, options)
    assert not found["round"]
    assert found["off_plane"] > options.ring_max_off_plane


def test_rings_read_at_the_wrong_size_do_not_wind_once() -> None:
    """What `_place_ring_pairs` refuses before refining: two rings of 12 read as rings of 6
    (half rings, closing with a 180° step) or 24 (both rings, twice round), or one ring turned
    the other way. Two rings of 12 read as such wind once each, either way round."""
    options = sfm.SfmOptions()
    names = [f"img_{index:03d}.jpg" for index in range(24)]
    angles = [30.0 * (index % 12) for index in range(24)]
    model = rings_model(angles, [1.0] * 12 + [2.5] * 12)

    assert sfm.winds_once(sfm.rings_go_round(model, names, 12, options)["windings"])
    backwards = rings_model([-angle for angle in angles], [1.0] * 12 + [2.5] * 12)
    assert sfm.winds_once(sfm.rings_go_round(backwards, names, 12, options)["windings"])
    for size in (6, 24):
        assert not sfm.winds_once(sfm.rings_go_round(model, names, size, options)["windings"])
    assert not sfm.winds_once([1.0, -1.0])
    assert not sfm.winds_once([])


def test_a_photo_put_on_a_faces_mirror_side_turns_back_round_the_product() -> None:
    """Two rings of 12 (30° apart). Photo 5 placed past photo 6 (195° instead of 150°, the
    mirror pose of a flat face that the cereal box on its side got): its viewing direction
    turns 75° and 15° from its neighbours, within three times the median, but back round the
    ring. Two such photos in a row, too. A second ring walked the other way, and a photo
    stepping back 3° (jitter), are walks."""
    options = sfm.SfmOptions()
    names = [f"img_{index:03d}.jpg" for index in range(24)]
    angles = [30.0 * (index % 12) for index in range(24)]
    heights = [1.0] * 12 + [2.5] * 12
    assert sfm.smooth_in_order(rings_model(angles, heights), names, options)[1]

    mirrored = angles.copy()
    mirrored[5] = 195.0
    model = rings_model(mirrored, heights)
    assert sfm.order_steps_deg(model, names).max() < options.order_max_step_ratio * 30.0
    assert sfm.backtracks(model, names, options) == 1
    assert not sfm.smooth_in_order(model, names, options)[1]

    two = angles.copy()
    two[4], two[5] = 200.0, 190.0
    assert sfm.backtracks(rings_model(two, heights), names, options) == 1

    other_way = angles[:12] + [-angle for angle in angles[12:]]
    assert sfm.backtracks(rings_model(other_way, heights), names, options) == 0
    jitter = angles.copy()
    jitter[5] = 117.0  # 3° back from photo 4
    assert sfm.backtracks(rings_model(jitter, heights), names, options) == 0


def test_photos_standing_in_order_but_looking_back_turn_back_round_the_product() -> None:
    """The cracker box's first five photos: its narrow side taken for its front, photos 0 and
    1 were put looking where 3 and 4 look, while their centres still stood in order round it.
    Where they look turns +30°, −60°, +30°, +30°: a turn back, though where they stand does
    not."""
    names = [f"img_{index:03d}.jpg" for index in range(5)]
    standing = [0.0, 30.0, 60.0, 90.0, 120.0]
    options = sfm.SfmOptions()
    assert sfm.backtracks(rings_model(standing, [1.0] * 5), names, options) == 0
    folded = rings_model(standing, [1.0] * 5, looking_from_deg=[90.0, 120.0, 60.0, 90.0, 120.0])
    assert sfm.backtracks(folded, names, options) == 1


def test_a_short_capture_that_turns_back_is_placed_again_by_consensus_or_refused(
    tmp_path, monkeypatch
) -> None:
    """Five photos: too few for the order check's second placement, so the walk alone judges
    the model. One that walks round is kept without another placement; one that turns back is
    replaced by the consensus placement when that walks round, kept (not walking in order:
    a warning) when the consensus placement agrees with it (photos named out of order), and
    refused with advice when that turns back elsewhere, or when there is none."""
    names = [f"img_{index:03d}.jpg" for index in range(5)]
    workspace = Workspace(tmp_path)
    standing = [0.0, 30.0, 60.0, 90.0, 120.0]

    def placed(looking_from_deg: list[float] | None = None) -> pycolmap.Reconstruction:
        return rings_model(standing, [1.0] * 5, looking_from_deg=looking_from_deg)

    walking = placed()
    folded = placed([90.0, 120.0, 60.0, 90.0, 120.0])
    options = sfm.SfmOptions()
    placed_again: list[pycolmap.Reconstruction | None] = []
    monkeypatch.setattr(sfm, "place_by_consensus", lambda *args: placed_again[-1])

    kept, finding = sfm.check_short_walk(tmp_path / "db", workspace, names, walking, options)
    assert kept is walking
    assert finding["walks_in_order"] is True

    placed_again.append(walking)
    kept, finding = sfm.check_short_walk(tmp_path / "db", workspace, names, folded, options)
    assert kept is walking
    assert finding["kept"] == "consensus of trusted pairs"
    assert finding["walks_in_order"] is True  # no placement warning for the model kept

    placed_again.append(placed([90.0, 120.0, 60.0, 90.0, 120.0]))  # the same placement again
    kept, finding = sfm.check_short_walk(tmp_path / "db", workspace, names, folded, options)
    assert kept is folded
    assert finding["walks_in_order"] is False
    assert finding["consensus_agrees"] is True

    # turning back too, but with photos 0 and 1 20° off `folded`'s
    for consensus in (placed([110.0, 140.0, 60.0, 90.0, 120.0]), None):
        placed_again.append(consensus)
        with pytest.raises(CaptureError, match=r"sides that look alike.*patterned mat"):
            sfm.check_short_walk(tmp_path / "db", workspace, names, folded, options)


def test_agreement_of_too_few_photos_placed_in_order_does_not_clear_a_model(
    tmp_path, monkeypatch
) -> None:
    """The cereal box on its side on plain paper: photos placed in capture order only were 5
    of 24, agreeing with the all-pairs model, which had a photo on the wrong side of a face.
    Their agreement does not clear it: it is judged by its turns, and found not to walk round
    in order (the sfm stage then places the photos again ring by ring). Placed in order half
    of them or more, the agreement clears it as before."""
    names = [f"img_{index:03d}.jpg" for index in range(24)]
    workspace = Workspace(tmp_path)
    workspace.sfm_dir.mkdir(parents=True)
    workspace.capture_path.write_text(json.dumps({"images": [{"name": n} for n in names]}))
    database_path = workspace.sfm_database_path
    pycolmap.Database.open(database_path).close()
    angles = [30.0 * (index % 12) for index in range(24)]
    mirrored = angles.copy()
    mirrored[5] = 195.0
    heights = [1.0] * 12 + [2.5] * 12
    options = sfm.SfmOptions()

    def check(best: pycolmap.Reconstruction, placed_in_order: int) -> dict:
        ordered = rings_model(mirrored, heights)  # agrees with `best` where both place photos
        for image_id in range(placed_in_order + 1, 25):
            ordered.deregister_frame(ordered.image(image_id).frame_id)
        monkeypatch.setattr(sfm, "_map", lambda *args, **kwargs: [ordered])
        monkeypatch.setattr(sfm, "_extend", lambda *args: args[-1])
        kept, finding = sfm.check_capture_order(database_path, workspace, names, best, options)
        assert kept is best
        assert finding["kept"] == "all pairs"
        assert finding["pairs_disagreeing"] == 0.0
        return finding

    assert "walks_in_order" not in check(rings_model(mirrored, heights), 12)
    assert check(rings_model(mirrored, heights), 5)["walks_in_order"] is False
    assert check(rings_model(angles, heights), 5)["walks_in_order"] is True


def test_a_model_of_few_photos_is_not_blamed_on_a_still_background(tmp_path, monkeypatch) -> None:
    """A plain avocado's noisy photos: all pairs placed 7 of 24, out of order, and neighbours in
    capture order 2, 0.9° apart. Two photos are no still room behind a turntable, nor seven
    look-alike sides: the photos share too few features, and the error says so."""
    names = [f"img_{index:03d}.jpg" for index in range(24)]
    workspace = Workspace(tmp_path)
    workspace.sfm_dir.mkdir(parents=True)
    workspace.capture_path.write_text(json.dumps({"images": [{"name": n} for n in names]}))
    pycolmap.Database.open(workspace.sfm_database_path).close()
    best = ring_model([0.0, 30.0, 200.0, 60.0, 90.0, 250.0, 120.0], names[:7])
    ordered = ring_model([0.0, 0.9], names[:2])
    monkeypatch.setattr(sfm, "_map", lambda *args, **kwargs: [ordered])
    monkeypatch.setattr(sfm, "_extend", lambda *args: args[-1])
    monkeypatch.setattr(sfm, "place_by_consensus", lambda *args: None)
    options = sfm.SfmOptions()
    with pytest.raises(CaptureError, match=r"only 7 of 24 photos .*share too few features"):
        sfm.check_capture_order(workspace.sfm_database_path, workspace, names, best, options)
    # All placed, yet in order 0.9° apart each: that is a still background.
    still = ring_model([0.9 * index for index in range(24)], names)
    monkeypatch.setattr(sfm, "_map", lambda *args, **kwargs: [still])
    jumbled = ring_model([(137.0 * index) % 360 for index in range(24)], names)
    with pytest.raises(CaptureError, match=r"hardly turn"):
        sfm.check_capture_order(workspace.sfm_database_path, workspace, names, jumbled, options)


def test_the_order_checks_placement_leaves_out_the_structure_less_fallback(
    tmp_path, monkeypatch
) -> None:
    """COLMAP's structure-less registration is slow where it fails, and from neighbouring
    pairs alone it mostly fails (12 of the turntable mustard bottle's 16 s of SfM): the order
    check places without it, while the main mapping keeps it."""
    names = [f"img_{index:03d}.jpg" for index in range(12)]
    workspace = Workspace(tmp_path)
    workspace.sfm_dir.mkdir(parents=True)
    workspace.capture_path.write_text(json.dumps({"images": [{"name": n} for n in names]}))
    pycolmap.Database.open(workspace.sfm_database_path).close()
    model = ring_model([30.0 * index for index in range(12)], names)
    fallback_used: list[bool] = []

    def fake_map(*args, **kwargs) -> list[pycolmap.Reconstruction]:
        options = args[3]
        fallback_used.append(
            sfm._pipeline_options(options, relaxed=False).structure_less_registration_fallback
        )
        return [model]

    monkeypatch.setattr(sfm, "_map", fake_map)
    options = sfm.SfmOptions()
    assert options.structure_less_registration
    sfm.check_capture_order(workspace.sfm_database_path, workspace, names, model, options)
    assert fallback_used == [False]
    assert sfm._pipeline_options(options, relaxed=True).structure_less_registration_fallback


def test_the_relaxed_pass_after_the_strict_one_leaves_out_the_structure_less_fallback(
    tmp_path, monkeypatch
) -> None:
    """The strict pass has tried the structure-less fallback on every photo; tried again in the
    relaxed pass, COLMAP built model after model round a photo it could not place (147 s on
    the 1,600 px plain WaterBottle): the strict pass keeps it, the relaxed pass does not."""
    names = [f"img_{index:03d}.jpg" for index in range(12)]
    workspace = Workspace(tmp_path)
    workspace.sfm_dir.mkdir(parents=True)
    model = ring_model([30.0 * index for index in range(11)], names[:11])
    strict_fallback: list[bool] = []
    relaxed_fallback: list[bool] = []

    def fake_map(*args, relaxed: bool, **kwargs) -> list[pycolmap.Reconstruction]:
        strict_fallback.append(
            sfm._pipeline_options(args[3], relaxed=relaxed).structure_less_registration_fallback
        )
        return [model]

    def fake_extend(*args) -> pycolmap.Reconstruction:
        relaxed_fallback.append(
            sfm._pipeline_options(args[3], relaxed=True).structure_less_registration_fallback
        )
        return model

    everyone = dict.fromkeys(names, 1000)
    monkeypatch.setattr(sfm, "_map", fake_map)
    monkeypatch.setattr(sfm, "_extend", fake_extend)
    monkeypatch.setattr(
        sfm, "_database_stats", lambda *args: sfm._DatabaseStats(everyone, everyone)
    )
    options = sfm.SfmOptions()
    assert options.structure_less_registration
    sfm._place_photos(workspace.sfm_database_path, workspace, names, options, sfm._Progress(None))
    assert strict_fallback == [True]
    assert relaxed_fallback == [False]


def test_a_kept_model_that_does_not_walk_in_order_is_reported() -> None:
    """Kept because nothing placed the photos better (no rings to place them by): the report
    says the model may hold a misplaced photo. Replaced ring by ring, or cleared, it does not."""
    unconfirmed = {"kept": "all pairs", "walks_in_order": False}
    assert len(report.placement_warnings(unconfirmed)) == 1
    assert "turn back" in report.placement_warnings({**unconfirmed, "rings": {"kept": False}})[0]
    assert not report.placement_warnings({**unconfirmed, "rings": {"kept": True}})
    assert not report.placement_warnings({"kept": "all pairs", "walks_in_order": True})
    assert not report.placement_warnings({"kept": "all pairs"})


def test_the_fold_check_counts_every_photo_where_the_photos_do_not_walk_in_order() -> None:
    """48 photos walking round a ring are judged on 24 spread round it; the same with eight of
    them half a turn away (look-alike sides taken for one another) on every photo, as is a
    capture of 24 or fewer."""
    options = sfm.SfmOptions()
    names = [f"img_{index:03d}.jpg" for index in range(48)]
    walking = ring_model([7.5 * index for index in range(48)], names)
    assert sfm.visibility_photos(walking, names, options) == options.visibility_max_photos
    flipped = [7.5 * index + (180.0 if 8 <= index < 16 else 0.0) for index in range(48)]
    assert sfm.visibility_photos(ring_model(flipped, names), names, options) == 0
    few = ring_model([15.0 * index for index in range(24)], names[:24])
    assert sfm.visibility_photos(few, names[:24], options) == 0


def test_successive_photos_are_neighbours_only_where_the_names_follow_the_capture_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """72 photos on three rings of 24, matched the more the nearer they are: successive photos
    are each other's strongest pairs in capture order, seldom once the names are shuffled."""
    taken = [(ring, step) for ring in range(3) for step in range(24)]
    directions = {}
    for index, (ring, step) in enumerate(taken):
        azimuth, elevation = np.radians(15.0 * step), np.radians(15.0 + 25.0 * ring)
        directions[f"img_{index:03d}.jpg"] = np.array(
            [
                np.cos(elevation) * np.cos(azimuth),
                np.cos(elevation) * np.sin(azimuth),
                np.sin(elevation),
            ]
        )
    pairs = {}
    for a, b in itertools.combinations(directions, 2):
        angle = np.degrees(np.arccos(np.clip(directions[a] @ directions[b], -1.0, 1.0)))
        if angle < 60.0:
            pairs[frozenset((a, b))] = int(400 * np.cos(np.radians(1.5 * angle)))
    monkeypatch.setattr(sfm, "verified_pairs", lambda *args: pairs)
    options = sfm.SfmOptions()
    in_order = list(directions)
    assert sfm.successive_share(None, in_order, options) > 0.9
    shuffled = list(np.random.default_rng(7).permutation(in_order))
    assert sfm.successive_share(None, shuffled, options) < options.min_successive_share


def test_shuffled_photos_are_judged_on_spread_photos_where_the_order_check_agreed() -> None:
    """No walk to judge it by: shuffled, 48 photos are judged on 24 spread round the product
    where the order check's placement from pairs picked at random agreed with it, else on all."""
    options = sfm.SfmOptions()
    names = [f"img_{index:03d}.jpg" for index in range(48)]
    angles = 7.5 * np.random.default_rng(3).permutation(48)
    shuffled = ring_model(list(angles), names)
    assert sfm.visibility_photos(shuffled, names, options) == 0
    assert sfm.visibility_photos(shuffled, names, options, in_order=False) == 0
    assert (
        sfm.visibility_photos(shuffled, names, options, in_order=False, confirmed=True)
        == options.visibility_max_photos
    )


def test_a_dense_capture_walks_smoothly_up_to_its_next_ring() -> None:
    """120 photos on 3 rings of 40 (9° a photo): the step up a ring turns more than three times
    the median turn, and is still a walk; a photo turned 60° off (a look-alike side) is not."""
    angles = [9.0 * index for index in range(120)]
    heights = [2.0 * (index // 40) for index in range(120)]  # up a ring: 28°, median 8°
    names = [f"img_{index:03d}.jpg" for index in range(120)]
    options = sfm.SfmOptions()
    model = rings_model(angles, heights)
    steps = sfm.order_steps_deg(model, names)
    assert steps.max() > options.order_max_step_ratio * np.median(steps)
    assert sfm.smooth_in_order(model, names, options)[1]
    angles[70] += 60.0
    assert not sfm.smooth_in_order(rings_model(angles, heights), names, options)[1]
