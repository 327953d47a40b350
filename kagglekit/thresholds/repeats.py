"""Thresholds fitted over repeated fold splits of out-of-fold rows, averaged (HPA's teams: 5 folds x 20 repeats)."""

from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from kagglekit._checks import positive_int
from kagglekit.errors import InvalidArgumentError

__all__ = ["RepeatedFit", "repeated_fit"]


class RepeatedFit(NamedTuple):
    """``thresholds``: the mean of every split's fit ((C,) or one value, as ``fit`` returns); ``spread``: their
    standard deviation (ddof 0); ``held_out_score``: the mean over repeats of the score of the rows each
    labelled by the thresholds fitted without them (an honest estimate); ``fits``: (repeats * folds, ...)."""

    thresholds: np.ndarray
    spread: np.ndarray
    held_out_score: float
    fits: np.ndarray


def repeated_fit(P, y, *, fit: Callable, decide: Callable, score: Callable, folds: int, repeats: int = 1,
                 seed: int = 0) -> RepeatedFit:
    """Fit thresholds on the k-1 training folds of ``repeats`` splits of the rows into ``folds`` folds.

    ``P``: (N, C) float probabilities; ``y``: (N, C) 0/1 labels. Repeat r splits the rows with
    ``MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed + r)`` (kagglekit.cv).
    ``fit(y_rows, p_rows) -> thresholds``; ``decide(p_rows, thresholds) -> (rows, C) bool``;
    ``score(y, labels) -> float``. Holds one (N, C) bool label matrix.
    """
    from kagglekit.cv import MultilabelStratifiedKFold

    folds, repeats = positive_int("folds", folds, minimum=2), positive_int("repeats", repeats)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InvalidArgumentError(f"seed must be an integer, got {seed!r}")
    fits, scores = [], []
    for r in range(repeats):
        labels = np.zeros(np.shape(P), dtype=bool)
        splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=int(seed) + r)
        for train, test in splitter.split(P, y):
            fits.append(np.asarray(fit(y[train], P[train]), np.float64))
            labels[test] = decide(P[test], fits[-1])
        scores.append(score(y, labels))
    fits = np.stack(fits)
    return RepeatedFit(fits.mean(axis=0), fits.std(axis=0), float(np.mean(scores)), fits)
