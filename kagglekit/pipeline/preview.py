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


def labelled_grid(items, tile: int = 192, columns: int = 4) -> np.ndarray:
    """(h, w, 3) uint8 RGB contact sheet of ``items``, ``(image, label)`` pairs (a path, a tuple of channel
    paths or an array, as :func:`kagglekit.infer.load_image` takes; a label string), each image fitted
    into a ``tile`` square (aspect kept) with its label written under it. Holds one image at a time and
    the sheet."""
    import cv2

    from kagglekit.infer import load_image

    items = list(items)
    rows = max(1, -(-len(items) // columns))
    band = 28
    sheet = np.full((rows * (tile + band), columns * tile, 3), 255, np.uint8)
    for k, (image, label) in enumerate(items):
        picture = load_image(image, tile, "pad")
        if picture.dtype != np.uint8:
            picture = (picture.astype(np.float32) * (255.0 / max(float(picture.max()), 1.0))).astype(np.uint8)
        if picture.shape[2] != 3:  # gray: replicated; RGBA or more channels: the first three
            picture = np.repeat(picture, 3, axis=2) if picture.shape[2] == 1 else picture[:, :, :3]
        y, x = (k // columns) * (tile + band), (k % columns) * tile
        sheet[y : y + tile, x : x + tile] = picture
        text = str(label) if len(str(label)) <= 24 else str(label)[:23] + "~"
        cv2.putText(sheet, text, (x + 4, y + tile + 19), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet
