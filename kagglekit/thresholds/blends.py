"""Blends of prediction tables: several models' (N, C) predictions of the same rows into one.

    blend([p_a, p_b, p_c], weights=[2, 1, 1], mode="rank")

Modes: ``"mean"`` (weighted arithmetic mean), ``"logit_mean"`` (the mean of logits, mapped back through
the sigmoid), ``"gmean"`` (weighted geometric mean), ``"rank"`` (each table's columns replaced by their
average ranks divided by N, then the weighted mean: the melanoma ensembles, where models' scores live on
different scales) and ``"median"`` (unweighted, per cell).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from kagglekit._checks import one_of, positive_weights
from kagglekit.errors import InvalidArgumentError, ShapeError

__all__ = ["BLEND_MODES", "blend", "from_space", "rank_columns", "to_space"]

BLEND_MODES = ("mean", "logit_mean", "gmean", "rank", "median")
LOGIT_EPS = 1e-7  # probabilities are clipped to [eps, 1 - eps] before the logit


def _tables(tables) -> list[np.ndarray]:
    arrays = [np.asarray(t) for t in (tables if not isinstance(tables, np.ndarray) or tables.ndim == 3 else [tables])]
    if not arrays:
        raise InvalidArgumentError("blend needs at least one prediction table")
    shape = arrays[0].shape
    for k, a in enumerate(arrays):
        if a.shape != shape:
            raise ShapeError(f"prediction table {k} has shape {a.shape} but table 0 has {shape}; blend rows and "
                             "columns in the same order (e.g. join on the id column first)")
        if a.ndim not in (1, 2) or a.size == 0:
            raise ShapeError(f"prediction tables must be non-empty (N,) or (N, C) arrays, got shape {a.shape}")
        if a.dtype.kind not in "uif" or not np.isfinite(a).all():
            raise InvalidArgumentError(f"prediction table {k} must hold finite numbers (no NaN or inf), dtype {a.dtype}")
    return arrays


def _check_probabilities(arrays, mode: str) -> None:
    for k, a in enumerate(arrays):
        if a.min() < 0 or a.max() > 1:
            raise InvalidArgumentError(f"mode={mode!r} needs probabilities in [0, 1]; table {k} ranges "
                                       f"{a.min():.4g}..{a.max():.4g} (apply sigmoid/softmax first, or use mode='rank')")


def _rank_column(values: np.ndarray) -> np.ndarray:
    """Average ranks 1..N of one column (ties share the mean of their ranks), as float64."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    new = np.empty(len(values), bool)
    new[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    starts = np.flatnonzero(new)
    ends = np.r_[starts[1:], len(values)]  # one past each tie group
    average = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def rank_columns(table) -> np.ndarray:
    """Average ranks (1..N, ties averaged, as ``scipy.stats.rankdata``) of each column of an (N,) or (N, C)
    table, divided by N: float64 in (0, 1]. Columns are ranked on a thread each (numpy's sort releases the
    GIL), which is where this beats ranking column by column. Holds the table's ranks and one sort per thread."""
    a = np.asarray(table)
    columns = a.reshape(len(a), -1)
    out = np.empty(columns.shape)
    with ThreadPoolExecutor(max_workers=min(columns.shape[1], os.cpu_count() or 1)) as pool:
        for c, ranks in enumerate(pool.map(_rank_column, (columns[:, c] for c in range(columns.shape[1])))):
            out[:, c] = ranks
    out /= len(a)
    return out.reshape(a.shape)


def blend(tables, weights=None, mode: str = "mean") -> np.ndarray:
    """Blend K prediction tables of one shape, (N,) or (N, C), into one float64 table of that shape.

    ``tables``: a sequence of arrays (or a (K, N, C) array); ``weights``: K positive numbers (default
    equal), normalised to sum to 1. ``mode``: see the module docstring; ``logit_mean`` and ``gmean``
    need probabilities in [0, 1] (``logit_mean`` clips them to [1e-7, 1 - 1e-7]; ``gmean`` of a 0 is 0),
    ``median`` takes no weights. Holds the result and, for ``rank``, one table's ranks.
    """
    one_of("blend mode", mode, BLEND_MODES)
    arrays = _tables(tables)
    weights = np.asarray(positive_weights(weights, len(arrays), "blend"))
    weights /= weights.sum()
    if mode == "median":
        if not np.allclose(weights, weights[0]):
            raise InvalidArgumentError("mode='median' takes no weights (a per-cell median of the tables); use mode='mean'")
        return np.median(np.stack(arrays), axis=0).astype(np.float64)
    if mode in ("logit_mean", "gmean"):
        _check_probabilities(arrays, mode)
    total = np.zeros(arrays[0].shape)
    for w, a in zip(weights, arrays):
        total += w * to_space(a, mode)
    return from_space(total, mode)


def to_space(table: np.ndarray, mode: str) -> np.ndarray:
    """``table`` where ``mode`` takes its weighted mean, float64: the table itself (``mean``), its column ranks
    divided by N (``rank``), its logits (``logit_mean``) or its logarithm (``gmean``; log 0 is -inf)."""
    if mode == "rank":
        return rank_columns(table)
    if mode == "logit_mean":
        p = np.clip(table, LOGIT_EPS, 1 - LOGIT_EPS, dtype=np.float64)
        return np.log(p) - np.log1p(-p)
    if mode == "gmean":
        with np.errstate(divide="ignore"):
            return np.log(table, dtype=np.float64)
    return np.asarray(table, np.float64)


def from_space(total: np.ndarray, mode: str) -> np.ndarray:
    """The blend from the weighted mean ``total`` of :func:`to_space` tables (the sigmoid or exp where it applies)."""
    if mode == "logit_mean":
        return 1.0 / (1.0 + np.exp(-total))
    if mode == "gmean":
        return np.exp(total)
    return total
