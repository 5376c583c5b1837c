"""Mask morphology shared by the stages that cut products out of photos (masks, turntable,
capture QA) and those that take their cut-outs (depth, fusion, fidelity): one disc for growing
and shrinking outlines."""

from __future__ import annotations

import cv2
import numpy as np


def disc_kernel(radius_px: int) -> np.ndarray:
    """The structuring element of a disc `radius_px` round its centre pixel."""
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius_px + 1, 2 * radius_px + 1))


def grow_mask(mask: np.ndarray, radius_px: int) -> np.ndarray:
    """`mask` (h, w) uint8 dilated by a disc of `radius_px` (unchanged for 0)."""
    if radius_px <= 0:
        return mask
    return cv2.dilate(mask, disc_kernel(radius_px))


def shrink_mask(mask: np.ndarray, radius_px: int) -> np.ndarray:
    """`mask` (h, w) uint8 eroded by a disc of `radius_px` (unchanged for 0)."""
    if radius_px <= 0:
        return mask
    return cv2.erode(mask, disc_kernel(radius_px))
