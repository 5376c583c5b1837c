"""The preview preset's speed-ups (ReconOptions.for_preset): what it changes, and that standard
keeps the stages' own defaults there."""

from __future__ import annotations

from recon import masks, pipeline


def test_standard_keeps_the_stage_defaults_that_preview_changes() -> None:
    standard = pipeline.ReconOptions.for_preset("standard")
    assert standard.masks == masks.MaskOptions()
    preview = pipeline.ReconOptions.for_preset("preview")
    assert preview.masks.grabcut_iterations < standard.masks.grabcut_iterations
