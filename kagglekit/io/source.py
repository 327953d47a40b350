"""The lazy image source every reader returns, and the in-memory one for numpy arrays."""

from __future__ import annotations

import functools
import math
import operator

import numpy as np

from kagglekit._checks import positive_int
from kagglekit.errors import InvalidArgumentError, ShapeError


def remembered(thumbnail):
    """A source's ``thumbnail`` method that keeps its last result (one small (h, w, C) array): asked again at
    the same ``max_side`` (a slide's kind, then its tile plan) it makes no second pass over the image. Each
    call returns its own copy."""

    @functools.wraps(thumbnail)
    def kept(self, max_side: int = 1024) -> np.ndarray:
        last = self.__dict__.get("_last_thumbnail")
        if last is None or last[0] != max_side:
            last = self._last_thumbnail = (max_side, thumbnail(self, max_side))
        return last[1].copy()

    return kept


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
        touches; for a streamed PNG, the rows it spans, full width, and a read above the previous one
        inflates the file again from its first row: see :mod:`kagglekit.io.png`); the result may be a view of the source's memory (read-only for a decoded file;
        for an :class:`ArraySource`, of the caller's own array): copy it before writing to it.
        """
        try:
            y, x, h, w = map(operator.index, (y, x, h, w))
        except TypeError:
            raise InvalidArgumentError(f"read coordinates must be integers, got y={y!r}, x={x!r}, h={h!r}, w={w!r}") from None
        if h <= 0 or w <= 0:
            raise InvalidArgumentError(f"read window must have positive size, got h={h}, w={w}")
        y0, x0, y1, x1 = self._clip(y, x, h, w)
        if (y0, x0, y1, x1) == (y, x, y + h, x + w):
            return self._read_inside(y0, x0, y1, x1)
        out = np.zeros((h, w, self.shape[2]), self.dtype)
        if y0 < y1 and x0 < x1:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = self._read_inside(y0, x0, y1, x1)
        return out

    def prefetch(self, windows) -> None:
        """Say that the (y, x, h, w) ``windows`` will be read next. Sources that decode (compressed
        TIFF) decode what they touch in parallel now; for the others this does nothing."""
        inside = [self._clip(*window) for window in windows]
        self._prefetch_inside([r for r in inside if r[0] < r[2] and r[1] < r[3]])

    def _clip(self, y: int, x: int, h: int, w: int) -> tuple[int, int, int, int]:
        """(y0, x0, y1, x1): the window's part inside the image (empty when y0 >= y1 or x0 >= x1)."""
        H, W, _ = self.shape
        return max(y, 0), max(x, 0), min(y + h, H), min(x + w, W)

    def _prefetch_inside(self, windows) -> None:
        """Hook for :meth:`prefetch`, given (y0, x0, y1, x1) windows clipped to the image."""

    @remembered
    def thumbnail(self, max_side: int = 1024) -> np.ndarray:
        """Return the whole image shrunk by area averaging so that its longer side is ``max_side``.

        Returns an (h, w, C) array of ``dtype``, equal to an exact area average (OpenCV's ``INTER_AREA``)
        of the whole image to within 1 (integers: the narrowed rows are rounded once). Area averaging
        is separable, so each row strip (at most about ``_STRIP_BYTES``) is first narrowed to the
        thumbnail's width and its rows are then added into the thumbnail rows they overlap: holds one
        strip and the thumbnail's sums (float32; float64 for float64 and 32- or 64-bit integers, whose
        values float32 cannot hold), never the whole image; keeps the last thumbnail (:func:`remembered`).
        """
        import cv2

        max_side = positive_int("max_side", max_side)
        H, W, C = self.shape
        factor = max(H, W) / max_side
        if factor <= 1:
            return self.read(0, 0, H, W)
        th, tw = max(1, round(H / factor)), max(1, round(W / factor))
        rows_per_output = H / th  # source rows averaged into one thumbnail row
        wide = self.dtype == np.float64 or (self.dtype.kind in "iu" and self.dtype.itemsize >= 4)
        work = np.dtype(np.float64 if wide else np.float32)
        total = np.zeros((th, tw, C), work)
        strip = max(1, _STRIP_BYTES // (W * C * max(work.itemsize, self.dtype.itemsize)))
        for y in range(0, H, strip):
            rows = min(strip, H - y)
            _add_rows(total, _narrow(cv2, self._read_inside(y, 0, y + rows, W), tw, work), y, rows_per_output)
        total /= rows_per_output
        return _cast_like(total, self.dtype)


_STRIP_BYTES = 64 << 20
_CV2_DTYPES = frozenset(np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float32, np.float64))


def _narrow(cv2, part: np.ndarray, width: int, work: np.dtype) -> np.ndarray:
    """(rows, W, C) ``part`` area-resized to (rows, width, C) in ``work`` precision: by OpenCV for
    float32 work, by :func:`_add_rows` along the columns for float64 (OpenCV's float64 area resize
    sums in float32, 16 off for values near 2**31)."""
    if work == np.float64:
        narrow = np.zeros((width, *part.shape[::2]), work)
        _add_rows(narrow, part.transpose(1, 0, 2), 0, part.shape[1] / width)  # it sums in float64 itself
        return narrow.transpose(1, 0, 2) / (part.shape[1] / width)
    if part.dtype not in _CV2_DTYPES:  # bool, int8, float16: OpenCV has no resize for them
        part = part.astype(work)
    return _resize(cv2, part, width, len(part)).astype(work, copy=False)


def _add_rows(total: np.ndarray, narrow: np.ndarray, y: int, rows_per_output: float) -> None:
    """Add source rows ``y, y+1, ...`` (``narrow``) into the thumbnail rows they overlap, each weighted
    by the overlap's length: row r covers [r, r+1), thumbnail row i covers [i, i+1) * rows_per_output."""
    rows = len(narrow)
    first = int(y / rows_per_output)
    last = min(len(total), math.ceil((y + rows) / rows_per_output))
    for i in range(first, last):  # a loop over thumbnail rows: numpy's reduceat and cumsum along rows are slow
        lo = min(max(i * rows_per_output - y, 0.0), rows)  # the span [lo, hi) of row i, strip-local
        hi = min(max((i + 1) * rows_per_output - y, 0.0), rows)
        a, b = math.ceil(lo), math.floor(hi)
        if b < a:  # the span lies inside one source row
            total[i] += (hi - lo) * narrow[b]
            continue
        total[i] += narrow[a:b].sum(axis=0, dtype=np.float64)
        if lo < a:
            total[i] += (a - lo) * narrow[a - 1]
        if hi > b:
            total[i] += (hi - b) * narrow[b]


def _cast_like(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Float ``values`` as ``dtype``: rounded and clipped for integers, thresholded at 0.5 for bool."""
    if dtype == np.bool_:
        return values >= 0.5
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


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
