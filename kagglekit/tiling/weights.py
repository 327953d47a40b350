"""Per-tile blending weights at output resolution, with the inner crop applied."""

from __future__ import annotations

import numpy as np

from kagglekit._checks import positive_int
from kagglekit.errors import InvalidArgumentError
from kagglekit.tiling.grid import TileGrid
from kagglekit.tiling.windows import window_1d


class TileWeights:
    """Blending weights for every tile of a :class:`TileGrid`, at ``1/scale`` of the input resolution.

    Each tile's weight is ``outer(wy, wx)`` of 1D window profiles with ``margin`` input pixels zeroed
    on every side that does not touch the image border (the inner crop). For a full grid the
    profiles are divided by their sums along each axis, so the weights of all tiles add up to exactly
    1 on every pixel (``normalized`` is True) and a stitcher needs no weight map; for a sub-grid the
    raw weights are returned and the stitcher divides by their accumulated sum.

    Holds two small (rows, tile_h) and (cols, tile_w) tables and a cache of the distinct 2D weights
    (one per distinct pair of row and column profiles: corner, edge and interior tiles).
    """

    def __init__(self, grid: TileGrid, window: str = "gaussian", sigma: float = 0.125, margin: int = 0, scale: int = 1):
        self.grid = grid
        self.scale = positive_int("scale", scale)
        margin = positive_int("margin", margin, minimum=0)
        th, tw = grid.tile
        if 2 * margin >= min(th, tw):
            raise InvalidArgumentError(f"margin {margin} must be less than half the tile {grid.tile}: the inner crop would leave nothing")
        if margin % self.scale or grid.multiple % self.scale:
            raise InvalidArgumentError(f"margin {margin} and the grid's multiple {grid.multiple} must be multiples of scale {self.scale}")
        self.normalized = grid.is_full
        self.out_shape = tuple(-(-n // self.scale) for n in grid.shape)
        self.tile_out = (th // self.scale, tw // self.scale)
        axes = zip(grid.tile, (grid.ys, grid.xs), grid.shape, grid.stride, "hw")
        self.rows, self.cols = (self._axis(window, sigma, margin, t, starts, n, s, a) for t, starts, n, s, a in axes)
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def _axis(self, window, sigma, margin, tile, starts, length, stride, axis_name):
        """Per-start 1D weights (len(starts), tile_out), crop bounds (len(starts), 2) and a class id per
        start (starts with equal weights and crop share one)."""
        s = self.scale
        t_out, m_out, length_out = tile // s, margin // s, -(-length // s)
        profile = window_1d(window, t_out, sigma)
        weights = np.tile(profile, (len(starts), 1))
        crop = np.zeros((len(starts), 2), np.int64)
        for k, start in enumerate(starts // s):
            lo = m_out if start > 0 else 0
            hi = t_out - m_out if start + t_out < length_out else t_out
            weights[k, :lo] = 0
            weights[k, hi:] = 0
            crop[k] = lo, hi
        total = np.zeros(max(length_out, int(starts[-1] // s) + t_out))
        for start, w in zip(starts // s, weights):
            total[start : start + t_out] += w
        if not np.all(total[:length_out] > 0):
            raise InvalidArgumentError(
                f"with margin {margin} some pixels along {axis_name} are covered by no tile's inner part: "
                f"use stride <= tile - 2 * margin (stride {stride}, tile {tile})"
            )
        if self.normalized:
            for k, start in enumerate(starts // s):
                weights[k] /= np.where(total[start : start + t_out] > 0, total[start : start + t_out], 1)
        weights = weights.astype(np.float32)
        _, klass = np.unique(np.concatenate([weights, crop.astype(np.float32)], axis=1), axis=0, return_inverse=True)
        return weights, crop, klass.ravel()

    def weight(self, k: int) -> np.ndarray:
        """(tile_h / scale, tile_w / scale) float32 weight of tile ``k``, zero in its cropped margin."""
        i, j = self.grid.index[k]
        key = (self.rows[2][i], self.cols[2][j])
        if key not in self._cache:
            self._cache[key] = np.outer(self.rows[0][i], self.cols[0][j])
        return self._cache[key]

    def crop(self, k: int) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) of the part of tile ``k`` that counts, in output pixels within the tile."""
        i, j = self.grid.index[k]
        return (*map(int, self.rows[1][i]), *map(int, self.cols[1][j]))

    def origin(self, k: int) -> tuple[int, int]:
        """(y, x) of tile ``k`` in output pixels."""
        y, x = self.grid.positions[k]
        return int(y) // self.scale, int(x) // self.scale
