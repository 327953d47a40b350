"""Run-length encoding of binary masks in Kaggle's format.

A mask is encoded as ``"start length start length ..."``: 1-indexed start pixel and run length of
each run of ones, pixels numbered in row-major (``order="C"``: left to right, then top to bottom)
or column-major order (``order="F"``: top to bottom, then left to right, as several Kaggle
competitions specify). An empty mask is the empty string. Both directions are linear in the
number of pixels and vectorised; the string conversion is linear in the number of runs.
"""

from __future__ import annotations

import warnings

import numpy as np

from kagglekit._checks import as_binary, one_of
from kagglekit.errors import InvalidArgumentError, ShapeError

__all__ = ["rle_encode", "rle_decode"]

ORDERS = ("C", "F")


def _transposed(image: np.ndarray) -> np.ndarray:
    """C-contiguous transpose of a 2-D uint8 array. OpenCV's blocked transpose, because numpy's
    strided copy is cache-unfriendly on large masks (compare the F rows of bench/bench_rle.py)."""
    import cv2

    return cv2.transpose(np.ascontiguousarray(image))


def _join_integers(values: np.ndarray, chunk: int = 1 << 18) -> str:
    """``" ".join(map(str, values))`` for non-negative integers without one Python object per number
    (``str.join`` needs about 100 bytes per number; this holds O(chunk)): each number is written
    right-aligned into a fixed-width row of ASCII digits, then the leading zeros are dropped."""
    width = len(str(int(values.max())))
    dtype = np.uint32 if values.max() < 2**32 else np.uint64
    powers = (10 ** np.arange(1, width, dtype=np.uint64)).astype(dtype)
    columns = np.arange(width + 1)
    pieces = []
    for start in range(0, values.size, chunk):
        part = values[start : start + chunk].astype(dtype)
        digits = np.empty((width + 1, part.size), dtype=np.uint8)  # one row per decimal place
        digits[width] = ord(" ")
        rest, quotient = part.copy(), np.empty_like(part)
        for place in range(width - 1, -1, -1):
            np.floor_divide(rest, 10, out=quotient)
            digits[place] = rest - quotient * 10 + ord("0")
            rest, quotient = quotient, rest
        rows = np.ascontiguousarray(digits.T)
        n_digits = 1 + np.searchsorted(powers, part, side="right")
        pieces.append(rows[columns >= (width - n_digits)[:, None]].tobytes())
    return b"".join(pieces)[:-1].decode("ascii")


def rle_encode(mask, order: str = "C") -> str:
    """Encode a 2-D binary mask (H, W) of 0/1 (bool, integer or float) as a Kaggle RLE string.

    Holds the flattened mask (a transposed copy for ``order="F"``), one bool per pixel for the
    run boundaries, and 8 bytes per run end."""
    one_of("order", order, ORDERS)
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ShapeError(f"mask must be 2-D (H, W), got shape {m.shape}; pass mask[..., 0] for a (H, W, 1) mask")
    if m.size == 0:
        raise ShapeError(f"mask is empty (shape {m.shape})")
    binary = as_binary("mask", m)
    flat = binary.ravel() if order == "C" else _transposed(binary.view(np.uint8)).ravel().view(bool)
    edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # first pixel of each new run
    if flat[0]:
        edges = np.r_[0, edges]
    if flat[-1]:
        edges = np.r_[edges, flat.size]
    if edges.size == 0:
        return ""
    runs = edges.reshape(-1, 2)  # rows: [start, end) of each run of ones, 0-indexed
    runs[:, 1] -= runs[:, 0]
    runs[:, 0] += 1
    return _join_integers(runs.ravel())


def rle_decode(rle: str, shape, order: str = "C", dtype=np.uint8) -> np.ndarray:
    """Decode a Kaggle RLE string into a C-contiguous 0/1 array of ``shape`` (H, W) and ``dtype``.

    Runs must be in increasing order, not overlap, and lie inside the image; anything else raises.
    Holds the output array and the parsed runs."""
    one_of("order", order, ORDERS)
    try:
        shape = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ShapeError(f"shape must be a tuple of positive integers like (H, W), got {shape!r}") from None
    if len(shape) != 2 or min(shape) < 1:
        raise ShapeError(f"shape must be (H, W) with positive sides, got {shape!r}")
    if not isinstance(rle, str):
        raise InvalidArgumentError(f"rle must be a string (use '' for an empty mask), got {type(rle).__name__}")
    n = shape[0] * shape[1]
    if not rle.strip():
        return np.zeros(shape, dtype=dtype)
    try:  # numpy's C parser: no Python string or int per number, unlike str.split
        with warnings.catch_warnings():  # numpy < 2 warns and returns the numbers before a bad token
            warnings.simplefilter("error", DeprecationWarning)
            numbers = np.fromstring(rle, dtype=np.int64, sep=" ")
    except (ValueError, DeprecationWarning):
        bad = next((t for t in rle.split() if not (t.isascii() and t.lstrip("-").isdigit())), rle[:40])
        raise InvalidArgumentError(f"rle must hold integers separated by spaces; found {bad!r}") from None
    if numbers.size % 2:
        raise InvalidArgumentError(
            f"rle has an odd number of integers ({numbers.size}); it must be start/length pairs"
        )
    starts, lengths = numbers[0::2] - 1, numbers[1::2]
    problems = [
        ("a start below 1", starts < 0),
        ("a length below 1", lengths < 1),
        (f"a run past the last pixel {n}", lengths > n - starts),  # not starts + lengths: may overflow
    ]
    for what, bad in problems:
        if bad.any():
            i = int(np.argmax(bad))
            raise InvalidArgumentError(f"rle run {i} (start {starts[i] + 1}, length {lengths[i]}) has {what}")
    ends = starts + lengths
    overlap = starts[1:] < ends[:-1]
    if overlap.any():
        i = int(np.argmax(overlap)) + 1
        raise InvalidArgumentError(
            f"rle run {i} (start {starts[i] + 1}) begins before run {i - 1} ends (pixel {ends[i - 1]}); "
            "runs must be sorted and must not overlap"
        )
    # Alternate gap and run lengths, then one np.repeat writes every pixel once.
    counts = np.empty(2 * starts.size + 1, dtype=np.int64)
    counts[0] = starts[0]
    counts[2:-1:2] = starts[1:] - ends[:-1]
    counts[1::2] = lengths
    counts[-1] = n - ends[-1]
    values = np.zeros(counts.size, dtype=np.uint8)
    values[1::2] = 1
    flat = np.repeat(values, counts)
    image = flat.reshape(shape) if order == "C" else _transposed(flat.reshape(shape[::-1]))
    return image.astype(dtype, copy=False)
