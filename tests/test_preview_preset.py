"""The preview preset's speed-ups (ReconOptions.for_preset): what it changes, and that standard
keeps the stages' own defaults there."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

from recon import capture, depth, masks, pipeline, sfm
from recon.errors import CaptureError, InputError
from recon.workspace import Workspace
from tests.test_capture import copy_photos


def test_standard_keeps_the_stage_defaults_that_preview_changes() -> None:
    standard = pipeline.ReconOptions.for_preset("standard")
    assert standard.masks == masks.MaskOptions()
    assert standard.depth == depth.DepthOptions()
    preview = pipeline.ReconOptions.for_preset("preview")
    # DESIGN.md's working sizes: at 640 px preview placed plain products worse (pipeline.py)
    assert preview.capture.max_image_px == 800
    assert standard.capture.max_image_px == 1600
    assert preview.masks.grabcut_iterations < standard.masks.grabcut_iterations
    # GrabCut on fewer pixels, the table told apart with fewer photos
    assert preview.masks.segment_px < standard.masks.segment_px
    assert preview.masks.table_max_views < standard.masks.table_max_views
    # a shorter coarse search and a smaller window; the geometric pass stays
    assert preview.depth.coarse_iterations < standard.depth.coarse_iterations
    assert preview.depth.window_radius_px < standard.depth.window_radius_px
    assert preview.depth.geometric_iterations == standard.depth.geometric_iterations
    # only photos with few keypoints (plain products) are searched at twice the size
    assert preview.sfm.upsample_below_features < standard.sfm.upsample_below_features
    # no structure-less registration (slow where it fails); the second try is standard's SfM
    assert not preview.sfm.structure_less_registration
    assert standard.sfm.structure_less_registration
    assert preview.sfm_retry == standard.sfm
    assert standard.sfm == sfm.SfmOptions()
    assert standard.sfm_retry is None
    # both presets' surfaces are closed from the hull (an open one showed the product's inside)
    for options in (preview, standard):
        truncation = options.fusion.truncation_voxels * options.fusion.voxel_rel
        assert truncation <= options.fusion.hull_close_max_truncation_rel


def test_preview_takes_photos_it_cannot_place_in_again_at_standards_size() -> None:
    preview = pipeline.ReconOptions.for_preset("preview")
    standard = pipeline.ReconOptions.for_preset("standard")
    assert preview.capture.retry_image_px == standard.capture.max_image_px
    assert standard.capture.retry_image_px is None  # standard's failure is the capture's
    with pytest.raises(InputError, match="retry_image_px 8"):
        capture.CaptureOptions(retry_image_px=8)


def _capture_of(tmp_path: Path, count: int, **options: int | None) -> tuple[Workspace, Path]:
    photos = tmp_path / "photos"
    copy_photos(photos, count)
    workspace = Workspace(tmp_path / "out")
    workspace.create()
    capture.run(photos, workspace, capture.CaptureOptions(**options))
    return workspace, photos


def test_photos_sfm_cannot_place_are_placed_again_larger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The sample photos are 640 px; preview-like options shrink them to 320 and may retry at 480.
    workspace, photos = _capture_of(tmp_path, 4, max_image_px=320, retry_image_px=480)
    sizes_placed: list[int] = []
    options_used: list[sfm.SfmOptions] = []

    placed_at_320: list[int] = []  # photos the first try places; none: it fails

    def fake_sfm(workspace: Workspace, options: sfm.SfmOptions, **_: object) -> SimpleNamespace:
        sizes_placed.append(capture.working_long_side(workspace))
        options_used.append(options)
        if sizes_placed[-1] == 320:
            if not placed_at_320:
                raise CaptureError("the photos could not be placed consistently")
            return SimpleNamespace(registered=placed_at_320[0], total=4)
        return SimpleNamespace(registered=4, total=4)

    monkeypatch.setattr(sfm, "run", fake_sfm)
    options = pipeline.ReconOptions.for_preset("preview")
    options = dataclasses.replace(
        options, capture=capture.CaptureOptions(max_image_px=320, retry_image_px=480)
    )
    events: list[tuple[str, float, str]] = []
    placed = pipeline.place_photos(photos, workspace, options, progress=lambda *e: events.append(e))
    assert placed.registered == 4
    assert sizes_placed == [320, 480]
    assert options_used == [options.sfm, options.sfm_retry]  # the second try is standard's SfM
    # Taking them in again is part of the sfm stage: a job's progress does not go back.
    assert {stage for stage, _, _ in events} == {"sfm"}
    taken = workspace.read_capture()
    assert {max(image["width"], image["height"]) for image in taken["images"]} == {480}
    assert taken["retried_from_px"] == 320
    assert any("taken in again at 480 px" in warning for warning in taken["warnings"])
    # Resumed after a kill during the second try: its photos, and its SfM, straight away.
    sizes_placed.clear()
    options_used.clear()
    assert pipeline.place_photos(photos, workspace, options).registered == 4
    assert (sizes_placed, options_used) == ([480], [options.sfm_retry])

    # A first try that places too few photos for the model to be published (under half) is
    # retried too; one that places half is kept.
    for placed_first, sizes in ((1, [320, 480]), (2, [320])):
        workspace, photos = _capture_of(tmp_path / f"placed{placed_first}", 4, max_image_px=320)
        sizes_placed.clear()
        placed_at_320[:] = [placed_first]
        placed = pipeline.place_photos(photos, workspace, options)
        assert sizes_placed == sizes
        assert placed.registered == (4 if len(sizes) == 2 else placed_first)
    placed_at_320.clear()

    # No second try when there is no larger size to take them in at: the photos' own size, or
    # no retry size at all. The first failure stands.
    for retry_px in (330, None):  # 330: under a tenth larger than 320, not worth it
        workspace, photos = _capture_of(tmp_path / str(retry_px), 4, max_image_px=320)
        sizes_placed.clear()
        options = dataclasses.replace(
            options, capture=capture.CaptureOptions(max_image_px=320, retry_image_px=retry_px)
        )
        with pytest.raises(CaptureError, match="placed consistently"):
            pipeline.place_photos(photos, workspace, options)
        assert sizes_placed == [320]
    # Photos already at their full size cannot grow.
    workspace, photos = _capture_of(tmp_path / "full", 4, max_image_px=None)
    assert capture.retry_size(workspace, capture.CaptureOptions(retry_image_px=1600)) is None
