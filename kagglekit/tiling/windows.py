"""Blending windows: how much each pixel of a tile counts where tiles overlap."""

from __future__ import annotations

import numpy as np

from kagglekit._checks import one_of, positive_int
from kagglekit.errors import InvalidArgumentError

WINDOWS = ("constant", "linear", "gaussian")


def window_1d(kind: str, n: int, sigma: float = 0.125) -> np.ndarray:
    """A positive (n,) float64 profile peaking at the centre.

    ``constant``: all ones. ``linear``: a tent, ``min(i + 1, n - i)``. ``gaussian``: ``exp(-d^2 / 2(sigma n)^2)``
    with d the distance to the centre, floored at 1e-6 so that a pixel covered by one tile only keeps
    its value.
    """
    one_of("window", kind, WINDOWS)
    n = positive_int("window size", n)
    i = np.arange(n, dtype=np.float64)
    if kind == "constant":
        return np.ones(n)
    if kind == "linear":
        return np.minimum(i + 1, n - i) / ((n + 1) // 2)
    if not sigma > 0:
        raise InvalidArgumentError(f"sigma is a fraction of the tile and must be > 0, got {sigma}")
    d = i - (n - 1) / 2
    return np.maximum(np.exp(-0.5 * (d / (sigma * n)) ** 2), 1e-6)


def blend_window(kind: str, shape, sigma: float = 0.125) -> np.ndarray:
    """The separable (h, w) float32 window ``outer(window_1d(h), window_1d(w))``."""
    h, w = (shape, shape) if np.isscalar(shape) else shape
    return np.outer(window_1d(kind, h, sigma), window_1d(kind, w, sigma)).astype(np.float32)
