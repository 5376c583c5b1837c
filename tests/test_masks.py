"""Product masks: holes the segmentation leaves inside a product are filled, real openings kept."""

from __future__ import annotations

import numpy as np

from recon.masks import fill_small_holes


def test_small_holes_in_a_product_mask_are_filled_and_openings_kept() -> None:
    mask = np.zeros((100, 100), np.uint8)
    mask[10:90, 10:90] = 1  # the product: 6400 px
    mask[20:25, 20:25] = 0  # a speck GrabCut lost (25 px: 0.4 %)
    mask[50:70, 50:70] = 0  # a handle's opening (400 px: 6 %)
    mask[40:45, 85:90] = 0  # a notch at the outline: open to the background, no hole
    mask[40:45, 90:] = 0
    filled = fill_small_holes(mask, 0.01)
    assert filled[20:25, 20:25].all()
    assert not filled[50:70, 50:70].any()
    assert not filled[40:45, 85:90].any()
    # surely background (seen through the product) stays open, however small
    keep_open = np.zeros((100, 100), bool)
    keep_open[20:25, 20:25] = True
    assert not fill_small_holes(mask, 0.01, keep_open)[20:25, 20:25].any()
    assert fill_small_holes(mask, 0.0)[20:25, 20:25].sum() == 0  # 0: nothing filled
