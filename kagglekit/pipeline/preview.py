"""A picture of one prediction: the image's thumbnail with its RLE mask tinted on top."""

from __future__ import annotations

import numpy as np


def overlay_prediction(source, rle: str, order: str = "C", max_side: int = 1024) -> np.ndarray:
    """(h, w, 3) uint8 RGB thumbnail (longer side ``max_side``) of ``source`` (path, array or Source)
    with the mask ``rle`` (Kaggle RLE at the image's full size) drawn over it.

    Holds the full-size mask as float32 (5 bytes per pixel at the peak: decoded as uint8, then cast,
    so that the thumbnail shows fractional coverage) and the thumbnail."""
    import cv2

    from kagglekit.io import open_image
    from kagglekit.kaggle.rle import rle_decode
    from kagglekit.tiling import overlay_mask

    source = open_image(source)
    thumb = source.thumbnail(max_side)
    mask = rle_decode(rle, source.shape[:2], order=order, dtype=np.float32)
    small = cv2.resize(mask, (thumb.shape[1], thumb.shape[0]), interpolation=cv2.INTER_AREA)
    return overlay_mask(thumb, small)
