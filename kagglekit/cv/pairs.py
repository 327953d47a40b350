"""(train, validation) row pairs from what a user passes as ``folds``: a count, a fold column, or the pairs."""

from __future__ import annotations

import numpy as np

from kagglekit._checks import positive_int
from kagglekit.errors import InvalidArgumentError, ShapeError

__all__ = ["fold_pairs"]


def _splitter(y: np.ndarray, n_splits: int, seed: int):
    """The splitter for ``y``: stratified for a class vector, multi-label stratified for an (N, C) 0/1 matrix,
    KFold otherwise; shuffled with ``seed``."""
    from sklearn.model_selection import KFold, StratifiedKFold

    from kagglekit.cv.splitters import MultilabelStratifiedKFold

    whole = y.dtype.kind in "biuUSO" or (y.dtype.kind == "f" and np.array_equal(y, np.round(y)))
    if y.ndim == 1 and whole:
        return StratifiedKFold(n_splits, shuffle=True, random_state=seed)
    if y.ndim == 2 and y.dtype.kind in "biuf" and np.isin(y, (0, 1)).all():
        return MultilabelStratifiedKFold(n_splits, shuffle=True, random_state=seed)
    return KFold(n_splits, shuffle=True, random_state=seed)


def fold_pairs(folds, y, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, validation)`` int64 row indices of each fold of the N rows of ``y``.

    ``folds``: a number of folds (``StratifiedKFold`` when ``y`` is an (N,) class vector: integers, booleans,
    strings or whole floats; ``MultilabelStratifiedKFold`` for an (N, C) 0/1 matrix; ``KFold`` otherwise;
    shuffled with ``seed``), an (N,) array of fold numbers (e.g. the out-of-fold table's fold column: one
    pair per number >= 0, in increasing order; rows numbered < 0 are trained on in every pair), or the pairs.
    """
    y = np.asarray(y)
    if isinstance(folds, (int, np.integer)) and not isinstance(folds, bool):
        splitter = _splitter(y, positive_int("folds", folds, minimum=2), seed)
        try:
            pairs = list(splitter.split(np.empty(len(y)), y if y.ndim == 1 else y.astype(int)))
        except ValueError as exc:
            raise InvalidArgumentError(f"cannot split {len(y)} rows into {folds} folds: {exc}; pass fewer folds "
                                       "or each row's fold number") from None
        return [(np.asarray(t, np.int64), np.asarray(v, np.int64)) for t, v in pairs]
    if isinstance(folds, (list, tuple)) and folds and all(isinstance(p, (list, tuple)) and len(p) == 2 for p in folds):
        pairs = [(np.asarray(t, np.int64), np.asarray(v, np.int64)) for t, v in folds]
    else:
        array = np.asarray(folds)
        if array.ndim != 1 or array.dtype.kind not in "iu":
            raise InvalidArgumentError("folds must be a number of folds, an (n,) array of integer fold numbers, or "
                                       "(train, validation) index pairs")
        if len(array) != len(y):
            raise ShapeError(f"folds has {len(array)} fold numbers for {len(y)} rows; pass one per row")
        pairs = [(np.flatnonzero(array != f), np.flatnonzero(array == f)) for f in np.unique(array[array >= 0])]
    if not pairs or any(len(t) == 0 or len(v) == 0 for t, v in pairs):
        raise InvalidArgumentError("folds must give every fold training rows and validation rows: pass at least two "
                                   "distinct fold numbers >= 0")
    return pairs
