"""Label and fragment masks: a whole (H, W) bool mask from an array or an image file."""

from __future__ import annotations

import numpy as np

from kagglekit.errors import ShapeError

__all__ = ["read_mask"]


def read_mask(mask, shape: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W) bool, nonzero = set: ``mask`` is an array or an image file (read whole; its first channel).

    ``shape``: the (H, W) the mask must have (its image's size); a mask of another size raises a
    ShapeError naming both. Holds the decoded file once and the bool mask (1 byte per pixel).
    """
    from kagglekit.io import open_image

    name = "the mask"
    if not isinstance(mask, np.ndarray):
        name = f"mask {mask}"
        source = open_image(mask)
        mask = source.read(0, 0, *source.shape[:2])
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise ShapeError(f"{name} must be an (H, W) or (H, W, C) array, got shape {mask.shape}")
    if shape is not None and mask.shape != tuple(shape):
        raise ShapeError(f"{name} is {mask.shape[0]}x{mask.shape[1]} but its image is {shape[0]}x{shape[1]}; "
                         "give masks at the image's full resolution")
    return mask != 0
