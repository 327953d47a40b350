"""Pictures a person would rather look at than read: masks and tile grids drawn on thumbnails."""

from __future__ import annotations

import numpy as np

from kagglekit.errors import ShapeError
from kagglekit.tiling.grid import TileGrid
from kagglekit.tiling.masks import to_gray_uint8


def _rgb_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] in (3, 4) and image.dtype == np.uint8:
        return np.ascontiguousarray(image[:, :, :3])
    return np.repeat(to_gray_uint8(image)[:, :, None], 3, axis=2)


def overlay_mask(image: np.ndarray, mask: np.ndarray, color=(255, 0, 0), alpha: float = 0.4) -> np.ndarray:
    """(h, w, 3) uint8 RGB picture of ``image`` with ``mask`` tinted in ``color`` and outlined.

    ``mask`` is (h', w') bool or a probability map in [0, 1]; it is resized to the image when needed.
    """
    import cv2

    rgb = _rgb_uint8(image).copy()
    mask = np.asarray(mask, np.float32)
    if mask.ndim != 2:
        raise ShapeError(f"mask must be (h, w), got {mask.shape}")
    if mask.shape != rgb.shape[:2]:
        mask = cv2.resize(mask, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_LINEAR)
    a = (alpha * np.clip(mask, 0, 1))[:, :, None]
    rgb = (rgb * (1 - a) + np.asarray(color, np.float32) * a).astype(np.uint8)
    contours, _ = cv2.findContours((mask >= 0.5).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return cv2.drawContours(rgb, contours, -1, tuple(int(c) for c in color), 1)


def draw_grid(thumbnail: np.ndarray, grid: TileGrid, color=(0, 255, 0), thickness: int = 1) -> np.ndarray:
    """(h, w, 3) uint8 RGB thumbnail with the outline of every tile of ``grid`` (in full-image pixels) drawn on it."""
    import cv2

    rgb = _rgb_uint8(thumbnail).copy()
    sy, sx = rgb.shape[0] / grid.shape[0], rgb.shape[1] / grid.shape[1]
    for y, x in grid.positions:
        p0 = (int(x * sx), int(y * sy))
        p1 = (int((x + grid.tile[1]) * sx) - 1, int((y + grid.tile[0]) * sy) - 1)
        cv2.rectangle(rgb, p0, p1, tuple(int(c) for c in color), thickness)
    return rgb


def save_png(path, rgb: np.ndarray) -> None:
    """Write an (h, w, 3) RGB uint8 picture as PNG, atomically (temporary file, then rename)."""
    import cv2

    from kagglekit._atomic import atomic_open

    ok, data = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ShapeError(f"cannot encode an image of shape {rgb.shape} as PNG")
    with atomic_open(path, "wb") as f:
        f.write(data.tobytes())
