"""Threshold sweeps: the exact F-beta threshold, percentile thresholds, per-class thresholds.

A score is predicted positive when ``score >= threshold`` (:func:`apply_threshold`), the same
comparison as scikit-learn's ``precision_recall_curve``. Scores are numpy arrays of any shape:
float16/32/64, uint8/uint16 or other integers; NaN scores raise (only those inside the mask, when one
is given). Labels are 0/1 arrays of the same shape (see :mod:`kagglekit.metrics`).
"""

from __future__ import annotations

import math
import sys
from typing import NamedTuple

import numpy as np

from kagglekit.errors import InvalidArgumentError, ShapeError
from kagglekit._checks import as_binary, check_beta
from kagglekit.metrics import fbeta_from_counts

__all__ = ["ThresholdResult", "ClassThresholds", "apply_threshold", "best_fbeta_threshold", "percentile_threshold",
           "per_class_thresholds"]

# A level-1 bucket is refined when its upper bound reaches the best exact value found so far within
# this relative slack, so that floating-point rounding can never drop the bucket holding the optimum.
_BOUND_SLACK = 1e-9


class ThresholdResult(NamedTuple):
    """``threshold`` (a score value; positive when ``score >= threshold``), the ``fbeta`` it reaches,
    and ``quantile``: the fraction q with ``percentile_threshold(scores, q) == threshold``, i.e.
    ``np.quantile(scores, q, method="lower")``: q = (number of scores below the threshold) / (n - 1),
    raised to the next float where floor((n - 1) q) would fall short."""

    threshold: float
    fbeta: float
    quantile: float


class ClassThresholds(NamedTuple):
    """Per-class ``thresholds`` (C,) and the F-beta each class reaches, ``fbetas`` (C,); their mean
    is the macro F-beta of :func:`apply_threshold` with these thresholds on the data they were fitted on."""

    thresholds: np.ndarray
    fbetas: np.ndarray


def apply_threshold(scores, threshold) -> np.ndarray:
    """Bool predictions ``scores >= threshold`` (``threshold`` may be a (C,) array for (n, C) scores)."""
    return np.asarray(scores) >= np.asarray(threshold)


def _as_scores(name: str, scores) -> np.ndarray:
    """Return ``scores`` as a real numeric array (bool viewed as uint8); raise on other dtypes.
    NaN is checked by :func:`_check_no_nan` once the mask is applied."""
    s = np.asarray(scores)
    if s.dtype == bool:
        return s.view(np.uint8)
    if s.dtype.kind not in "uif":
        raise InvalidArgumentError(f"{name} must be a real numeric array, got dtype {s.dtype}")
    if s.size == 0:
        raise ShapeError(f"{name} is empty; pass at least one score")
    return s


def _check_no_nan(s: np.ndarray) -> None:
    """Raise if the scores (those inside the mask) hold NaN."""
    if s.dtype.kind == "f" and np.isnan(s).any():
        raise InvalidArgumentError("scores contains NaN inside the mask; replace or mask those pixels first")


def _checked_mask(mask, shape) -> np.ndarray:
    m = as_binary("mask", mask)
    if m.shape != shape:
        raise ShapeError(f"mask has shape {m.shape} but scores has shape {shape}; they must match")
    if not m.any():
        raise InvalidArgumentError("mask selects no element; pass a mask with at least one True")
    return m


def _masked_pair(y_true, scores, mask) -> tuple[np.ndarray, np.ndarray]:
    """Validated flat (labels as bool, scores) restricted to ``mask``; contiguous and native-endian.
    Only the values inside the mask are checked (labels such as 255 or NaN scores may lie outside)."""
    y = np.asarray(y_true)
    s = _as_scores("scores", scores)
    if y.shape != s.shape:
        raise ShapeError(f"y_true has shape {y.shape} but scores has shape {s.shape}; they must match")
    if mask is not None:
        m = _checked_mask(mask, s.shape)
        y, s = y[m], s[m]
    if s.dtype != np.float16:  # float16: checked from its bit-pattern histogram (np.isnan costs as much)
        _check_no_nan(s)
    s = np.ascontiguousarray(s.ravel(), dtype=s.dtype.newbyteorder("="))
    return as_binary("y_true", y).ravel(), s


# ---------------------------------------------------------------------------------------------
# Exact F-beta threshold search. Each counting routine returns, for candidate thresholds in
# ascending order, the numbers of positive and negative scores >= each candidate (tp, fp). Only the
# distinct scores of positives are candidates: if no positive scores exactly t, raising t to the next
# distinct score drops negatives only, which cannot lower F-beta.
# ---------------------------------------------------------------------------------------------


def _sorted_counts(s: np.ndarray, y: np.ndarray, tp_above: int = 0, fp_above: int = 0):
    """Sort positives and negatives separately (numpy's SIMD sort; no argsort) and sweep.

    ``tp_above`` / ``fp_above`` add the counts of scores above this subset (used when ``s`` is one
    value range of a larger array). Holds sorted copies of ``s``: 1x its size."""
    pos = np.sort(s[y])
    neg = np.sort(s[~y])
    first = np.flatnonzero(np.r_[True, pos[1:] != pos[:-1]])  # -0.0 == 0.0, as with >=
    values = pos[first]
    tp = tp_above + pos.size - first
    fp = fp_above + neg.size - np.searchsorted(neg, values, side="left")
    return values, tp, fp


def _label_histogram(codes: np.ndarray, y: np.ndarray, nbits: int):
    """Counts of negatives and of positives per code (codes: unsigned ints < 2**nbits, in value order).

    The label goes into bit ``nbits`` of one key array (uint16 when it fits) counted by np.add.at
    (numpy >= 1.25 has a fast path for 1-D integer indices): faster here than np.bincount, which
    first widens the keys to int64, and than sorting them. Holds the key array (2 or 4 bytes per
    score)."""
    key_dtype = np.uint16 if nbits <= 15 else np.uint32
    key = np.left_shift(y.view(np.uint8), nbits, dtype=key_dtype)
    key |= codes
    hist = np.zeros(2 << nbits, dtype=np.int64)
    np.add.at(hist, key, 1)
    return hist[: 1 << nbits], hist[1 << nbits :]


def _sign_magnitude_histogram(bits: np.ndarray, y: np.ndarray):
    """Label histograms over 65536 ordered codes of 16-bit sign-magnitude patterns.

    ``bits``: float16 bit patterns, or the high halves of float32 (then each code is a bucket of
    2**16 consecutive float32 values). Code order is value order; -0.0 shares the +0.0 code.
    Non-negative scores (probabilities, the common case) need no transform: their raw bits are
    already ordered and fit in 15 bits, leaving bit 15 for the label."""
    neg = np.zeros(1 << 16, dtype=np.int64)
    pos = np.zeros(1 << 16, dtype=np.int64)
    if bits.max() < 0x8000:
        neg[0x8000:], pos[0x8000:] = _label_histogram(bits, y, 15)
        return neg, pos
    codes = np.where(bits >= 0x8000, ~bits, bits | 0x8000).astype(np.uint16)
    neg, pos = _label_histogram(codes, y, 16)
    for hist in (neg, pos):  # -0.0 (code 0x7FFF) equals +0.0 (code 0x8000) under >=
        hist[0x8000] += hist[0x7FFF]
        hist[0x7FFF] = 0
    return neg, pos


def _codes_to_float16(codes: np.ndarray) -> np.ndarray:
    raw = np.where(codes >= 0x8000, codes - 0x8000, 0xFFFF - codes).astype(np.uint16)
    return raw.view(np.float16)


def _histogram_counts(s: np.ndarray, y: np.ndarray):
    """uint8, uint16 and float16 scores: one counting pass over all values, O(n), exact."""
    if s.dtype == np.float16:
        neg, pos = _sign_magnitude_histogram(s.view(np.uint16), y)
        codes = np.arange(1 << 16)
        nan = ((codes > 0xFC00) | (codes < 0x03FF)) & ((neg + pos) > 0)
        if nan.any():
            raise InvalidArgumentError("scores contains NaN; replace or mask those pixels before searching a threshold")
        to_values = _codes_to_float16
    else:
        neg, pos = _label_histogram(s, y, 8 * s.dtype.itemsize)
        to_values = np.asarray
    tp, fp = _count_at_or_above(pos), _count_at_or_above(neg)
    keep = np.flatnonzero(pos)
    return to_values(keep), tp[keep], fp[keep]


def _count_at_or_above(histogram: np.ndarray) -> np.ndarray:
    """For each bin of an ascending histogram, the count in that bin and every bin above it."""
    return np.cumsum(histogram[::-1])[::-1]


def _float32_bucket_bounds(first: int, last: int) -> tuple[float, float]:
    """Smallest value of ordered bucket ``first`` and largest of bucket ``last`` (float32 buckets)."""

    def value(key32: int) -> float:
        bits = key32 & 0x7FFFFFFF if key32 & 0x80000000 else ~key32 & 0xFFFFFFFF
        return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])

    lo, hi = value(first << 16), value((last << 16) | 0xFFFF)
    return (-math.inf if math.isnan(lo) else lo), (math.inf if math.isnan(hi) else hi)


def _float32_counts(s: np.ndarray, y: np.ndarray, beta: float, n_pos: int):
    """float32, exact and faster than a full sort: bucket by the high 16 bits, bound, refine.

    Level 1 counts labels per bucket of 2**16 consecutive float32 values (one pass, like float16).
    For each bucket, F-beta at its lowest value is reachable, and no threshold inside it can beat
    F(all positives from the bucket up, only negatives above the bucket). Buckets whose bound does
    not reach the best reachable value are dropped; the value range spanning the remaining buckets
    (usually a few around the optimum) is gathered and solved by sorting. Holds a 2-byte key per
    score plus the gathered subset."""
    half = 1 if sys.byteorder == "little" else 0
    neg, pos = _sign_magnitude_histogram(s.view(np.uint16)[half::2], y)
    tp_ge, fp_ge = _count_at_or_above(pos), _count_at_or_above(neg)
    tp_above = np.r_[tp_ge[1:], 0]
    fp_above = np.r_[fp_ge[1:], 0]
    best = fbeta_from_counts(tp_ge, n_pos, tp_ge + fp_ge, beta).max()
    bound = fbeta_from_counts(tp_ge, n_pos, tp_ge + fp_above, beta)
    refine = np.flatnonzero((pos > 0) & (bound >= best * (1 - _BOUND_SLACK)))
    first, last = int(refine[0]), int(refine[-1])
    if first == 0x8000:  # the +0.0 bucket also holds -0.0 and the tiniest negatives (code 0x7FFF)
        first = 0x7FFF
    lo, hi = _float32_bucket_bounds(first, last)
    idx = np.flatnonzero((s >= lo) & (s <= hi))
    return _sorted_counts(s[idx], y[idx], int(tp_above[last]), int(fp_above[last]))


def best_fbeta_threshold(y_true, scores, beta: float = 1.0, mask=None) -> ThresholdResult:
    """The threshold maximising F-beta of ``scores >= threshold`` against ``y_true``, exactly.

    ``y_true``: 0/1 array; ``scores``: same shape; ``mask``: optional bool array of that shape, only
    True elements count (e.g. the fragment or tissue mask). Every distinct score is a candidate and
    tied scores fall on the same side. Among thresholds reaching the maximum the largest is returned.

    Method by dtype: uint8, uint16, float16: one counting pass (a count per distinct value), O(n).
    float32: a counting pass over 65536 value buckets, then a sort of the few buckets that can still
    hold the optimum. Other dtypes: positives and negatives sorted separately, one sweep.
    Memory: the masked copy (if ``mask``) plus at most one sorted copy of the scores.
    """
    beta = check_beta(beta)
    y, s = _masked_pair(y_true, scores, mask)
    n_pos = int(np.count_nonzero(y))
    if n_pos == 0:
        raise InvalidArgumentError(
            "y_true has no positive label (inside the mask); F-beta is 0 at every threshold, so there is "
            "no best threshold. Check the labels or the mask."
        )
    if s.dtype in (np.uint8, np.uint16, np.float16):
        values, tp, fp = _histogram_counts(s, y)
    elif s.dtype == np.float32:
        values, tp, fp = _float32_counts(s, y, beta, n_pos)
    else:
        values, tp, fp = _sorted_counts(s, y)
    f = fbeta_from_counts(tp, n_pos, tp + fp, beta)
    i = len(f) - 1 - int(np.argmax(f[::-1]))
    below = s.size - int(tp[i] + fp[i])
    q = below / (s.size - 1) if s.size > 1 else 0.0
    while (s.size - 1) * q < below:  # float rounding: make floor((n - 1) q) == below, numpy's "lower" index
        q = float(np.nextafter(q, 2.0))
    return ThresholdResult(float(values[i]), float(f[i]), q)


def percentile_threshold(scores, q: float, mask=None) -> float:
    """The ``q``-quantile of ``scores`` (inside ``mask``): ``np.quantile(scores, q, method="lower")``,
    the score at sorted position floor((n - 1) q), so the threshold is always one of the scores.

    ``q`` is a fraction in [0, 1] (pass p / 100 for a percentile p). Used to transfer a threshold
    as a fraction of pixels, e.g. the ``quantile`` of :func:`best_fbeta_threshold` to a test image
    (on the fitting scores it gives back exactly that threshold).
    Holds one copy of the scores (inside ``mask``), which np.quantile partitions."""
    if isinstance(q, bool) or not isinstance(q, (int, float, np.number)) or not 0 <= q <= 1:
        raise InvalidArgumentError(
            f"q must be a fraction in [0, 1] like np.quantile's (p / 100 for a percentile), got {q!r}"
        )
    s = _as_scores("scores", scores)
    if mask is not None:
        s = s[_checked_mask(mask, s.shape)]
    _check_no_nan(s)
    return float(np.quantile(s, q, method="lower", overwrite_input=mask is not None))  # s[mask] is ours


def per_class_thresholds(Y, S, beta: float = 1.0) -> ClassThresholds:
    """Best F-beta threshold of each column, for multi-label macro F-beta.

    ``Y``: (n_samples, n_classes) 0/1 labels; ``S``: scores of the same shape. Every class needs at
    least one positive (a class without one has no best threshold)."""
    y = as_binary("Y", Y)
    s = np.asarray(S)
    if y.ndim != 2 or s.shape != y.shape:
        raise ShapeError(
            f"Y and S must be 2-D (n_samples, n_classes) arrays of the same shape, got {y.shape} and {s.shape}"
        )
    empty = np.flatnonzero(~y.any(axis=0))
    if empty.size:
        raise InvalidArgumentError(
            f"classes {empty[:10].tolist()} have no positive label, so F-beta has no best threshold for them; "
            "set their thresholds yourself (e.g. 0.5) or drop them"
        )
    results = [best_fbeta_threshold(y[:, c], s[:, c], beta) for c in range(y.shape[1])]
    return ClassThresholds(np.array([r.threshold for r in results]), np.array([r.fbeta for r in results]))
