"""The preview preset's speed-ups (ReconOptions.for_preset): what it changes, and that standard
keeps the stages' own defaults there."""

from __future__ import annotations

from recon import depth, masks, pipeline, sfm


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
    assert standard.sfm == sfm.SfmOptions()
