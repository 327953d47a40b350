"""TileGrid: where the tiles of an image go."""

from __future__ import annotations

import math

import numpy as np

from kagglekit._checks import positive_int
from kagglekit.errors import InvalidArgumentError, ShapeError


def _pair(name: str, value) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise InvalidArgumentError(f"{name} must be an int or an (h, w) pair, got {value!r}")
        return positive_int(name, value[0]), positive_int(name, value[1])
    v = positive_int(name, value)
    return v, v


def tile_starts(length: int, tile: int, stride: int, multiple: int = 1) -> np.ndarray:
    """Start offsets along one axis: every ``stride``, with the last tile snapped to the (padded) edge.

    The axis is first padded up to a multiple of ``multiple``. When it is shorter than a tile there is
    one tile at 0 (it reaches past the image, which reads as zeros).
    """
    padded = math.ceil(length / multiple) * multiple
    if padded <= tile:
        return np.zeros(1, np.int64)
    starts = list(range(0, padded - tile, stride))
    if not starts or starts[-1] != padded - tile:
        starts.append(padded - tile)
    return np.asarray(starts, np.int64)


class TileGrid:
    """Tiles of size ``tile`` covering an (H, W) image, in row-major order.

    ``stride`` (pixels) or ``overlap`` (a fraction of the tile in [0, 1)) sets the spacing; the
    default is no overlap. The last row and column snap to the image edge, so every pixel is covered
    and no tile starts beyond the image. ``multiple`` makes every start a multiple of it (for models
    whose output is ``1/multiple`` the input's size; tile and stride must then be multiples too).

    ``positions`` is an (N, 2) int64 array of (y, x) tile origins; ``index`` the (N, 2) row and
    column of each tile in the full grid. :meth:`select` and :meth:`top_k` return sub-grids.
    """

    def __init__(self, shape, tile, stride=None, overlap=None, multiple: int = 1):
        if len(shape) < 2 or shape[0] <= 0 or shape[1] <= 0:
            raise ShapeError(f"cannot tile an empty image of shape {tuple(shape)}")
        self.shape = (int(shape[0]), int(shape[1]))
        self.tile = _pair("tile", tile)
        self.multiple = positive_int("multiple", multiple)
        if stride is not None and overlap is not None:
            raise InvalidArgumentError("give stride or overlap, not both")
        if overlap is not None:
            if not 0 <= overlap < 1:
                raise InvalidArgumentError(f"overlap is a fraction of the tile in [0, 1), got {overlap}")
            stride = tuple(max(1, round(t * (1 - overlap))) for t in self.tile)
        self.stride = self.tile if stride is None else _pair("stride", stride)
        for axis, t, s in zip("hw", self.tile, self.stride):
            if s > t:
                raise InvalidArgumentError(f"stride {s} is larger than the tile {t} ({axis}): pixels between tiles would be skipped; use stride <= tile")
            if t % self.multiple or s % self.multiple:
                raise InvalidArgumentError(f"tile {t} and stride {s} must be multiples of {self.multiple} (the output scale)")
        self.ys = tile_starts(self.shape[0], self.tile[0], self.stride[0], self.multiple)
        self.xs = tile_starts(self.shape[1], self.tile[1], self.stride[1], self.multiple)
        rows, cols = np.meshgrid(np.arange(len(self.ys)), np.arange(len(self.xs)), indexing="ij")
        self.index = np.stack([rows.ravel(), cols.ravel()], axis=1)
        self.positions = np.stack([self.ys[self.index[:, 0]], self.xs[self.index[:, 1]]], axis=1)

    def __len__(self) -> int:
        return len(self.positions)

    def __repr__(self) -> str:
        return f"TileGrid(shape={self.shape}, tile={self.tile}, stride={self.stride}, tiles={len(self)} of {len(self.ys) * len(self.xs)})"

    @property
    def is_full(self) -> bool:
        """True when no tile has been dropped by :meth:`select` or :meth:`top_k`."""
        return len(self) == len(self.ys) * len(self.xs)

    def subset(self, keep) -> TileGrid:
        """A grid with only the tiles at ``keep`` (indices or a boolean array), still in row-major order."""
        keep = np.asarray(keep)
        keep = np.flatnonzero(keep) if keep.dtype == bool else np.unique(keep)
        sub = object.__new__(TileGrid)
        sub.__dict__.update(self.__dict__)
        sub.index, sub.positions = self.index[keep], self.positions[keep]
        return sub

    def mask_fraction(self, mask: np.ndarray) -> np.ndarray:
        """Fraction of each tile's footprint that is True in ``mask``, a low-resolution (h, w) mask of the whole image.

        Returns an (N,) float64 array. Only the part of a tile inside the image counts.
        """
        mask = np.asarray(mask)
        if mask.ndim == 3 and mask.shape[2] == 1:
            mask = mask[:, :, 0]
        if mask.ndim != 2 or 0 in mask.shape:
            raise ShapeError(f"mask must be a non-empty (h, w) array covering the image, got shape {mask.shape}")
        h, w = mask.shape
        H, W = self.shape
        integral = np.zeros((h + 1, w + 1), np.int64)
        integral[1:, 1:] = np.cumsum(np.cumsum(mask.astype(bool), axis=0), axis=1)
        y, x = self.positions[:, 0], self.positions[:, 1]
        y1 = np.minimum(y + self.tile[0], H)
        x1 = np.minimum(x + self.tile[1], W)
        r0, c0 = (y * h) // H, (x * w) // W
        r1 = np.minimum(np.maximum(-((-y1 * h) // H), r0 + 1), h)
        c1 = np.minimum(np.maximum(-((-x1 * w) // W), c0 + 1), w)
        count = integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]
        return count / ((r1 - r0) * (c1 - c0))

    def select(self, mask: np.ndarray, min_fraction: float = 0.05) -> TileGrid:
        """Keep the tiles whose footprint is at least ``min_fraction`` True in the low-resolution ``mask``."""
        if not 0 <= min_fraction <= 1:
            raise InvalidArgumentError(f"min_fraction must be in [0, 1], got {min_fraction}")
        fraction = self.mask_fraction(mask)
        return self.subset(fraction >= min_fraction if min_fraction > 0 else fraction > 0)

    def top_k(self, scores, k: int) -> TileGrid:
        """Keep the ``k`` tiles with the highest ``scores`` (an (N,) array, e.g. :meth:`mask_fraction`); ties keep the earlier tile."""
        scores = np.asarray(scores, np.float64)
        if scores.shape != (len(self),):
            raise ShapeError(f"scores must have one value per tile ({len(self)}), got shape {scores.shape}")
        k = positive_int("k", k)
        order = np.argsort(-scores, kind="stable")[:k]
        return self.subset(order)
