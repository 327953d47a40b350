"""Statistics of a whole source inside a mask, in one streamed pass: a fragment's own mean and std."""

from __future__ import annotations

import numpy as np

from kagglekit.errors import InvalidArgumentError, ShapeError

__all__ = ["masked_mean_std", "standardization"]

_STRIP_BYTES = 64 << 20


def masked_mean_std(source, mask=None, per_channel: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float64 of ``source``'s values where ``mask`` (an (H, W) array, nonzero = inside; None:
    everywhere) is set: over every channel together (a volume's fragment statistics, as the ink-detection
    write-ups normalise), or per channel (arrays of C values).

    One pass over row strips of about 64 MB; integer sources are summed exactly (int64 per strip, then
    Python integers), so no float copy of the source is made. The std is the population one (numpy's
    default, ddof=0). Holds one strip and its masked values.
    """
    from kagglekit.io import open_image

    source = open_image(source)
    H, W, C = source.shape
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != (H, W):
            raise ShapeError(f"the mask is {mask.shape} but the source is {(H, W)}; give a full-resolution (H, W) mask")
        mask = mask != 0
        if not mask.any():
            raise InvalidArgumentError("the mask is empty: there is nothing to take the mean of")
    exact = np.issubdtype(source.dtype, np.integer)
    count, total, squares = 0, np.zeros(C, object if exact else np.float64), np.zeros(C, object if exact else np.float64)
    rows = max(1, _STRIP_BYTES // max(1, W * C * source.dtype.itemsize))
    for y in range(0, H, rows):
        strip = source.read(y, 0, min(rows, H - y), W)
        values = strip.reshape(-1, C) if mask is None else strip[mask[y : y + len(strip)]]
        wide = values.astype(np.int64 if exact else np.float64)
        count += len(values)
        total = total + wide.sum(axis=0).astype(total.dtype)
        squares = squares + (wide * wide).sum(axis=0).astype(squares.dtype)
    if not per_channel:
        n = count * C
        mean = sum(total) / n
        return np.float64(mean), np.float64(np.sqrt(max(float(sum(squares) / n - mean * mean), 0.0)))
    mean = np.array([t / count for t in total], np.float64)
    var = np.array([s / count for s in squares], np.float64) - mean * mean
    return mean, np.sqrt(np.maximum(var, 0.0))


def standardization(source, mask=None) -> tuple[float, float, float]:
    """(mean, std, top) for standardising ``source`` by its own statistics (a fragment's, as
    ``normalize = "volume"``): :func:`masked_mean_std` over every channel inside ``mask``, and ``top``, the
    value that scaling to [0, 1] maps to 1 (the dtype's maximum for integers, else 1), so that a tile
    scaled to [0, 1] is standardised by (mean / top, std / top). A constant source raises."""
    from kagglekit.io import open_image

    source = open_image(source)
    mean, std = masked_mean_std(source, mask)
    if not std > 0:
        where = " inside its mask" if mask is not None else ""
        raise InvalidArgumentError(f"{source.name}: every value{where} is {mean:g}; standardising it divides by its "
                                   "standard deviation, which is 0")
    top = float(np.iinfo(source.dtype).max) if np.issubdtype(source.dtype, np.integer) else 1.0
    return float(mean), float(std), top
