"""Foreground (tissue) masks on thumbnails, background detection and the white-to-black swap.

Slides come on two backgrounds: tissue micro-arrays (TMA) on white glass, whole-slide images (WSI)
often on black after preprocessing. Everything here works on small (h, w, C) uint8/uint16 thumbnails
or tiles through OpenCV.
"""

from __future__ import annotations

import numpy as np

from kagglekit._checks import one_of
from kagglekit.errors import ShapeError

BACKGROUNDS = ("auto", "white", "black")


def to_gray_uint8(image: np.ndarray) -> np.ndarray:
    """(h, w) uint8 brightness of an (h, w) or (h, w, C) uint8/uint16/float image (RGB(A): luma; else channel mean).

    uint16 is scaled per image by the bit depth its largest value needs (12-bit data stored as uint16
    spans 0..255 too; so does a dim 16-bit image, and one whose values stay below 256 is read as is)."""
    import cv2

    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or image.size == 0:
        raise ShapeError(f"expected a non-empty (h, w) or (h, w, C) image, got shape {image.shape}")
    if image.dtype == np.uint16:
        bits = max(8, int(image.max()).bit_length())
        image = (image >> (bits - 8)).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image * (255.0 if image.max() <= 1 else 1.0), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return image
    if image.shape[2] in (3, 4):
        return cv2.cvtColor(np.ascontiguousarray(image[:, :, :3]), cv2.COLOR_RGB2GRAY)
    return image.mean(axis=2).astype(np.uint8)


def detect_background(image: np.ndarray, border: float = 0.05) -> str:
    """``"white"`` or ``"black"``: the brightness of the image's outer ``border`` fraction decides."""
    gray = to_gray_uint8(image)
    h, w = gray.shape
    by, bx = max(1, int(h * border)), max(1, int(w * border))
    ring = np.concatenate([gray[:by].ravel(), gray[-by:].ravel(), gray[:, :bx].ravel(), gray[:, -bx:].ravel()])
    return "white" if np.median(ring) >= 128 else "black"


def background_threshold(image: np.ndarray, background: str = "auto", threshold: int | None = None) -> tuple[str, int]:
    """(background, threshold) of an image: ``"white"``/``"black"`` (``"auto"``: :func:`detect_background`)
    and the brightness (0..255) that separates it from the foreground (None: Otsu's threshold). Fit once
    on a thumbnail, it classifies every tile of the slide alike (:func:`is_foreground`)."""
    import cv2

    one_of("background", background, BACKGROUNDS)
    gray = to_gray_uint8(image)
    if background == "auto":
        background = detect_background(gray)
    if threshold is None:
        threshold = int(cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)[0])
    return background, int(threshold)


def is_foreground(image: np.ndarray, background: str, threshold: int) -> np.ndarray:
    """(h, w) bool: brightness (:func:`to_gray_uint8`) at most ``threshold`` on white, above it on black
    (OpenCV's THRESH_BINARY_INV / THRESH_BINARY rule)."""
    gray = to_gray_uint8(image)
    return gray <= threshold if background == "white" else gray > threshold


def tissue_mask(image: np.ndarray, background: str = "auto", threshold: int | None = None,
                min_area: float = 0.0005, smooth: int = 3) -> np.ndarray:
    """(h, w) bool mask of the foreground of a thumbnail.

    ``background``: ``"white"`` (foreground is darker), ``"black"`` (foreground is brighter) or
    ``"auto"`` (:func:`detect_background`). ``threshold`` is a brightness in 0..255; None uses Otsu's
    threshold. ``smooth`` is the size of a morphological open-close (0 turns it off) and connected
    pieces smaller than ``min_area`` of the image are dropped.
    """
    import cv2

    gray = to_gray_uint8(image)
    background, threshold = background_threshold(gray, background, threshold)
    mask = is_foreground(gray, background, threshold).astype(np.uint8)
    if smooth:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (smooth, smooth))
        mask = cv2.morphologyEx(cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel), cv2.MORPH_CLOSE, kernel)
    if min_area > 0:
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] < min_area * mask.size)
        mask[np.isin(labels, small[small > 0])] = 0
    return mask.astype(bool)


def swap_background(image: np.ndarray, mask: np.ndarray | None = None, background: str = "auto") -> np.ndarray:
    """A copy of an (h, w, C) image with its background set to black (0), e.g. a TMA made to look like a WSI.

    ``mask`` is the foreground at the image's size; None computes :func:`tissue_mask` on the image.
    An image already on black is returned as a copy with its background zeroed too.
    """
    image = np.asarray(image)
    mask = tissue_mask(image, background=background) if mask is None else np.asarray(mask).astype(bool)  # OpenCV masks are 0/1 uint8
    if mask.shape != image.shape[:2]:
        raise ShapeError(f"mask shape {mask.shape} must equal the image's (h, w) {image.shape[:2]}")
    out = image.copy()
    out[~mask] = 0
    return out


def block_mean(values: np.ndarray, block: int) -> np.ndarray:
    """(H, W) array (bool, integer or float) -> (ceil(H / block), ceil(W / block)) float32: the mean of each
    block's pixels (the last row and column of blocks average only the pixels they hold). Used for
    labels at 1/s (area mean) and for low-resolution fraction maps of a full-resolution mask.

    Works one row of blocks at a time, so a full-resolution (10k x 10k) mask costs one block row of
    float64, not a float copy of the mask.
    """
    from kagglekit._checks import positive_int

    values = np.asarray(values)
    if values.ndim != 2 or 0 in values.shape:
        raise ShapeError(f"block_mean expects a non-empty (H, W) array, got shape {values.shape}")
    block = positive_int("block", block)
    h, w = values.shape
    W = -(-w // block)
    out = np.empty((-(-h // block), W), np.float32)
    edges = np.arange(0, w, block)
    widths = np.minimum(edges + block, w) - edges
    for r, y in enumerate(range(0, h, block)):
        rows = values[y : y + block]
        column_sums = rows.sum(axis=0, dtype=np.float64)
        out[r] = np.add.reduceat(column_sums, edges) / (widths * len(rows))
    return out
