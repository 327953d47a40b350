"""The lazy image source every reader returns, and the in-memory one for numpy arrays."""

from __future__ import annotations

import math

import numpy as np

from kagglekit.errors import InvalidArgumentError, ShapeError


class Source:
    """A lazily read image: ``.shape`` (H, W, C), ``.dtype``, ``.read(y, x, h, w)``, ``.thumbnail(max_side)``.

    Subclasses implement :meth:`_read_inside`, which only ever sees windows inside the image;
    :meth:`read` clips the request and zero-fills what lies outside.
    """

    shape: tuple[int, int, int]
    dtype: np.dtype
    name: str = "<array>"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, shape={self.shape}, dtype={self.dtype})"

    def _read_inside(self, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
        raise NotImplementedError

    def read(self, y: int, x: int, h: int, w: int) -> np.ndarray:
        """Return the window of rows ``y:y+h`` and columns ``x:x+w`` as an (h, w, C) array of ``dtype``.

        Pixels outside the image are 0. Holds only the window (and, for TIFF, the decoded tiles it
        touches); the result may be a read-only view of the source's memory.
        """
        if h <= 0 or w <= 0:
            raise InvalidArgumentError(f"read window must have positive size, got h={h}, w={w}")
        H, W, C = self.shape
        y0, x0, y1, x1 = max(y, 0), max(x, 0), min(y + h, H), min(x + w, W)
        if (y0, x0, y1, x1) == (y, x, y + h, x + w):
            return self._read_inside(y0, x0, y1, x1)
        out = np.zeros((h, w, C), self.dtype)
        if y0 < y1 and x0 < x1:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = self._read_inside(y0, x0, y1, x1)
        return out

    def prefetch(self, windows) -> None:
        """Say that the (y, x, h, w) ``windows`` will be read next. Sources that decode (compressed
        TIFF) decode what they touch in parallel now; for the others this does nothing."""
        H, W, _ = self.shape
        inside = [(max(y, 0), max(x, 0), min(y + h, H), min(x + w, W)) for y, x, h, w in windows]
        self._prefetch_inside([r for r in inside if r[0] < r[2] and r[1] < r[3]])

    def _prefetch_inside(self, windows) -> None:
        """Hook for :meth:`prefetch`, given (y0, x0, y1, x1) windows clipped to the image."""

    def thumbnail(self, max_side: int = 1024) -> np.ndarray:
        """Return the whole image shrunk by area averaging so that its longer side is ``max_side``.

        Returns an (h, w, C) array of ``dtype``. Reads the image in row strips, so it holds one strip
        and the thumbnail, never the whole image.
        """
        import cv2

        H, W, C = self.shape
        factor = max(H, W) / max_side
        if factor <= 1:
            return self.read(0, 0, H, W)
        th, tw = max(1, round(H / factor)), max(1, round(W / factor))
        strip = max(1, math.ceil(factor)) * 64
        parts = []
        done_rows = 0
        for y in range(0, H, strip):
            rows = min(strip, H - y)
            target = round((y + rows) * th / H) - done_rows
            if target <= 0:
                continue
            part = self._read_inside(y, 0, y + rows, W)
            parts.append(_resize(cv2, part, tw, target))
            done_rows += target
        return np.concatenate(parts, axis=0)


def _resize(cv2, image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-resize an (h, w, C) array of any channel count, keeping the channel axis."""
    C = image.shape[2]
    if C <= 4:
        small = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        return small.reshape(height, width, C)
    return np.concatenate([_resize(cv2, image[:, :, i : i + 4], width, height) for i in range(0, C, 4)], axis=2)


class ArraySource(Source):
    """A source over an in-memory (H, W) or (H, W, C) array; holds a reference, never a copy."""

    def __init__(self, array: np.ndarray, name: str = "<array>"):
        array = np.asarray(array)
        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim != 3:
            raise ShapeError(f"an image array must be (H, W) or (H, W, C), got shape {array.shape}")
        if 0 in array.shape:
            raise ShapeError(f"the image is empty (shape {array.shape}); pass an image with at least one pixel")
        self.array = array
        self.shape = tuple(int(s) for s in array.shape)
        self.dtype = array.dtype
        self.name = name

    def _read_inside(self, y0, x0, y1, x1):
        return self.array[y0:y1, x0:x1]
