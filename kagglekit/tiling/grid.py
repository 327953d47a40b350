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


def _pixels_per_cell(starts: np.ndarray, tile: int, length: int, cells: int) -> np.ndarray:
    """(len(starts), cells) float64: how many pixels of the span [start, min(start + tile, length))
    lie in each of ``cells`` equal mask cells of an axis of ``length`` pixels (cell i holds the
    pixels r with floor(r * cells / length) == i)."""
    edges = -(-np.arange(cells + 1) * length // cells)
    lo = np.maximum(starts[:, None], edges[None, :-1])
    hi = np.minimum(np.minimum(starts + tile, length)[:, None], edges[None, 1:])
    return np.clip(hi - lo, 0, None).astype(np.float64)


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
        if keep.dtype == bool:
            if keep.shape != (len(self),):
                raise ShapeError(f"a boolean keep needs one value per tile ({len(self)}), got shape {keep.shape}")
            keep = np.flatnonzero(keep)
        elif keep.size == 0:
            keep = np.empty(0, np.int64)
        elif keep.dtype.kind not in "iu":
            raise InvalidArgumentError(f"keep must be tile indices (integers) or a boolean array, got dtype {keep.dtype}")
        keep = np.unique(keep)
        if keep.size and not 0 <= keep[0] <= keep[-1] < len(self):
            raise InvalidArgumentError(f"keep holds tile indices outside 0..{len(self) - 1}: {keep[0]}..{keep[-1]}")
        sub = object.__new__(TileGrid)
        sub.__dict__.update(self.__dict__)
        sub.index, sub.positions = self.index[keep], self.positions[keep]
        return sub

    def mask_fraction(self, mask: np.ndarray) -> np.ndarray:
        """Fraction of each tile's footprint that is True in ``mask``, a low-resolution (h, w) mask of the whole image.

        Returns an (N,) float64 array. Image pixel row r lies in mask row floor(r * h / H) (columns
        alike), and only the part of a tile inside the image counts: each mask cell weighs as many
        of the tile's pixels as fall in it. Holds (rows of tiles, h) and (columns of tiles, w) overlap tables.
        """
        mask = np.asarray(mask)
        if mask.ndim == 3 and mask.shape[2] == 1:
            mask = mask[:, :, 0]
        if mask.ndim != 2 or 0 in mask.shape:
            raise ShapeError(f"mask must be a non-empty (h, w) array covering the image, got shape {mask.shape}")
        rows = _pixels_per_cell(self.ys, self.tile[0], self.shape[0], mask.shape[0])
        cols = _pixels_per_cell(self.xs, self.tile[1], self.shape[1], mask.shape[1])
        inside = rows @ mask.astype(np.float64) @ cols.T  # tissue pixels of each (tile row, tile column)
        area = rows.sum(axis=1)[:, None] * cols.sum(axis=1)[None, :]
        return (inside / area)[self.index[:, 0], self.index[:, 1]]

    def select(self, mask: np.ndarray, min_fraction: float = 0.05) -> TileGrid:
        """Keep the tiles whose footprint is at least ``min_fraction`` True in the low-resolution ``mask``
        (with ``min_fraction=0``, the tiles with any True cell: a tile with none is never kept)."""
        return self.subset(_at_least(self.mask_fraction(mask), min_fraction))

    def top_k(self, scores, k: int, min_fraction: float = 0.0) -> TileGrid:
        """Keep the ``k`` tiles with the highest ``scores`` (an (N,) array of fractions, e.g. :meth:`mask_fraction`)
        among those scoring at least ``min_fraction`` (and always above 0: on an all-background slide
        nothing is kept, and the grid may hold fewer than ``k`` tiles); ties keep the earlier tile."""
        scores = np.asarray(scores, np.float64)
        if scores.shape != (len(self),):
            raise ShapeError(f"scores must have one value per tile ({len(self)}), got shape {scores.shape}")
        k = positive_int("k", k)
        candidates = np.flatnonzero(_at_least(scores, min_fraction))
        order = candidates[np.argsort(-scores[candidates], kind="stable")[:k]]
        return self.subset(order)


def _at_least(fraction: np.ndarray, minimum: float) -> np.ndarray:
    """Which of ``fraction`` are at least ``minimum`` (in [0, 1]) and above 0."""
    if not 0 <= minimum <= 1:
        raise InvalidArgumentError(f"min_fraction must be in [0, 1], got {minimum}")
    return (fraction >= minimum) & (fraction > 0)
