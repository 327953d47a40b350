"""Stitcher: weighted accumulation of tile predictions, in memory or as streaming row strips."""

from __future__ import annotations

import numpy as np

from kagglekit._checks import positive_int
from kagglekit._tensors import shareable
from kagglekit.errors import InvalidArgumentError, ShapeError


def _accumulate(dst: np.ndarray, values: np.ndarray, weight: np.ndarray | None) -> None:
    """``dst += values * weight`` in place (``weight`` None: ``dst += values``).

    For float32 throughout (what :mod:`kagglekit.infer` passes) one pass with torch's ``addcmul_``:
    numpy has no fused multiply-add, and ``dst += values * weight`` writes a temporary product and
    reads it back. Other dtypes take the numpy route: torch 2.1's ``addcmul_`` fails on mixed dtypes.
    """
    if weight is not None and values.dtype == weight.dtype == dst.dtype == np.float32 and shareable(values) and shareable(weight):
        import torch

        torch.from_numpy(dst).addcmul_(torch.from_numpy(values), torch.from_numpy(weight))
    else:
        dst += values if weight is None else values * weight


def checked_out(out, channels: int | None, height: int, width: int, dtype: np.dtype) -> np.ndarray:
    """``out`` if it is a writable C-contiguous (channels, height, width) numpy array of ``dtype``
    (``channels`` None: any number), else a clear error."""
    if not (isinstance(out, np.ndarray) and out.ndim == 3 and out.shape[1:] == (height, width) and out.dtype == dtype
            and out.shape[0] == (channels or out.shape[0])):
        got = f"{out.shape} {out.dtype}" if isinstance(out, np.ndarray) else type(out).__name__
        raise ShapeError(f"out must be a ({channels or 'C_out'}, {height}, {width}) array of {dtype}, got {got}; "
                         "allocate it once with np.empty and pass it for every image of that size")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise InvalidArgumentError("out must be C-contiguous and writable: pass an array from np.empty, not a view or a read-only memory map")
    return out


def accumulator_dtype(dtype) -> np.dtype:
    """``dtype`` if a stitcher can accumulate in it (float16, float32, float64), else a clear error."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float16, np.float32, np.float64):
        raise InvalidArgumentError(f"accumulator dtype must be float16, float32 or float64, got {dtype}")
    return dtype


def _zero(array: np.ndarray) -> None:
    """``array[...] = 0`` on all cores (torch) where torch can view it; numpy's memset is one thread."""
    if shareable(array):
        import torch

        torch.from_numpy(array).zero_()
    else:
        array[...] = 0


class Stitcher:
    """Accumulates weighted tile predictions into a (C, H_out, W_out) output.

    Coordinates given to :meth:`add` are in output pixels; each tile adds ``values * weight``. With
    ``normalized=False`` the stitcher also accumulates the weights and divides by their sum when rows
    are handed out; pixels no tile touched get ``fill_value``. With ``normalized=True`` the caller
    promises that the weights already sum to 1 on every pixel (see :class:`~kagglekit.tiling.TileWeights`),
    and no weight map is kept.

    ``max_rows=None`` holds the whole output. A number holds only that many rows in a ring buffer:
    call :meth:`pop` to hand back finished rows (those no later tile touches) before adding tiles
    further down; memory is then O(max_rows x W_out), not O(H_out x W_out).

    ``dtype`` is the accumulator's (float32, or float16 to halve memory); strips come back as float32,
    the in-memory result of :meth:`finish` in ``dtype``. With a weight map, float16 sums are kept in
    float32 (a tile corner's raw weight is about 1e-7, below float16's range) and cast at the end, so
    float16 saves memory only for a ``normalized`` stitcher (a full grid, no skip mask).

    ``out`` (in-memory only): an existing (C, H_out, W_out) C-contiguous array of ``dtype`` to
    accumulate into; it is zeroed first and :meth:`finish` returns it. Reusing one array over
    same-sized images saves allocating and first touching (page-faulting) a new output each time.
    """

    def __init__(self, channels: int, height: int, width: int, *, normalized: bool = False,
                 dtype=np.float32, fill_value: float = 0.0, max_rows: int | None = None, out: np.ndarray | None = None):
        self.channels = positive_int("channels", channels)
        self.height, self.width = positive_int("height", height), positive_int("width", width)
        self.dtype = accumulator_dtype(dtype)
        self.normalized, self.fill_value = normalized, float(fill_value)
        self.rows = self.height if max_rows is None else min(positive_int("max_rows", max_rows), self.height)
        self.streaming = max_rows is not None
        sums = np.dtype(np.float32) if self.dtype == np.float16 and not normalized else self.dtype
        self.out = None if out is None else checked_out(out, self.channels, self.height, self.width, self.dtype)
        if out is not None and self.streaming:
            raise InvalidArgumentError("out= is for an in-memory stitcher; a streaming one (max_rows) hands out new strips")
        if self.out is not None and sums == self.dtype:
            self.acc = self.out
            _zero(self.acc)
        else:
            self.acc = np.zeros((self.channels, self.rows, self.width), sums)
        self.wsum = None if normalized else np.zeros((self.rows, self.width), np.float32)
        self.row0 = 0  # first output row still held

    def _ring(self, y0: int, y1: int):
        """Buffer row slices for output rows [y0, y1): one slice, or two where the ring wraps."""
        a, b = y0 % self.rows, (y1 - 1) % self.rows + 1
        if a < b:
            return [(slice(a, b), slice(0, y1 - y0))]
        return [(slice(a, self.rows), slice(0, self.rows - a)), (slice(0, b), slice(self.rows - a, y1 - y0))]

    def add(self, y: int, x: int, values: np.ndarray, weight: np.ndarray | None = None) -> None:
        """Add ``values * weight`` with its top-left at output (y, x); parts outside the output are dropped.

        ``values`` is (C, h, w), ``weight`` (h, w), both float (float32 is the fast path); ``weight``
        may be None (all ones) only for a ``normalized`` stitcher.
        """
        if values.ndim != 3 or values.shape[0] != self.channels:
            raise ShapeError(f"values must be (C={self.channels}, h, w), got {values.shape}")
        if weight is not None and weight.shape != values.shape[1:]:
            raise ShapeError(f"weight must be (h, w) = {values.shape[1:]} like the values, got {weight.shape}")
        y0, y1 = max(y, 0), min(y + values.shape[1], self.height)
        x0, x1 = max(x, 0), min(x + values.shape[2], self.width)
        if y0 >= y1 or x0 >= x1:
            return
        if y0 < self.row0:  # rows [y0, row0) were handed out: only zeros may land there
            done, cols = slice(y0 - y, min(y1, self.row0) - y), slice(x0 - x, x1 - x)
            if (values[:, done, cols] * (1 if weight is None else weight[done, cols])).any():
                raise InvalidArgumentError(f"rows above {self.row0} were already handed out; add tiles in row order and pop only finished rows")
            y0 = min(y1, self.row0)
            if y0 == y1:
                return
        if y1 - self.row0 > self.rows:
            raise InvalidArgumentError(f"tile reaches row {y1}, beyond the {self.rows} rows held from row {self.row0}; pop finished rows first or raise max_rows")
        if not self.normalized and weight is None:
            raise InvalidArgumentError("this stitcher is not normalized: pass the tile's weight too")
        for buf, part in self._ring(y0, y1):
            rows, cols = slice(y0 - y + part.start, y0 - y + part.stop), slice(x0 - x, x1 - x)
            _accumulate(self.acc[:, buf, x0:x1], values[:, rows, cols], None if weight is None else weight[rows, cols])
            if self.wsum is not None:
                self.wsum[buf, x0:x1] += weight[rows, cols]

    def _normalize(self, acc: np.ndarray, wsum: np.ndarray | None) -> np.ndarray:
        if wsum is None:
            return acc
        covered = wsum > 0
        np.divide(acc, wsum, out=acc, where=covered)
        acc[:, ~covered] = self.fill_value
        return acc

    def pop(self, upto: int) -> np.ndarray:
        """Hand back output rows [row0, upto) as a float32 (C, rows, W_out) array and forget them."""
        upto = min(upto, self.height)
        if upto <= self.row0:
            return np.zeros((self.channels, 0, self.width), np.float32)
        pieces = []
        while self.row0 < upto:  # rows beyond the ring were never touched: hand them out in ring-sized pieces
            pieces.append(self._pop_held(min(upto, self.row0 + self.rows)))
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces, axis=1)

    def _pop_held(self, upto: int) -> np.ndarray:
        parts = self._ring(self.row0, upto)
        acc = np.concatenate([self.acc[:, buf] for buf, _ in parts], axis=1).astype(np.float32, copy=len(parts) == 1)
        wsum = None if self.wsum is None else np.concatenate([self.wsum[buf] for buf, _ in parts], axis=0)
        for buf, _ in parts:
            self.acc[:, buf] = 0
            if self.wsum is not None:
                self.wsum[buf] = 0
        self.row0 = int(upto)
        return self._normalize(acc, wsum)

    def finish(self) -> np.ndarray:
        """The remaining rows; for an in-memory stitcher the whole (C, H_out, W_out) output, in place."""
        if self.streaming or self.row0:
            return self.pop(self.height)
        self.row0 = self.height
        result = self._normalize(self.acc, self.wsum)
        if self.out is not None and result is not self.out:  # float32 sums for a float16 out
            np.copyto(self.out, result, casting="unsafe")
            return self.out
        return result.astype(self.dtype, copy=False)
