"""Blend weights fitted on out-of-fold predictions, with an honest (nested) estimate of what they gain.

    fit = fit_blend([oof_a, oof_b, oof_c], y, "auc", folds=oof_fold_column, models=["a", "b", "c"])
    fit.weights, fit.nested, fit.in_sample     # (M,) >= 0 summing to 1; the metric nested and in sample
    test = fit.apply([test_a, test_b, test_c])  # = blend(tables, fit.weights, fit.mode)
    fit.models_config(["a.safetensors", "b.safetensors", "c.safetensors"])  # classify's [[models]] tables

Methods: ``"hill_climb"`` (Caruana et al. 2004, ensemble selection with replacement: start from the best
single model, then add, with replacement, the model whose addition most improves the metric, up to
``iterations`` models in all; the weights are the counts of the best ensemble met on the way, the first of
equals), ``"nelder_mead"`` (scipy's Nelder-Mead over weights ``|x| / sum |x|`` started from the best single
model, so never below it on the rows it is fitted on) and ``"nnls"`` (scipy's non-negative least squares of
``y`` on the tables, no intercept: the metric is only used to score; modes ``mean`` and ``rank``).

The honest estimate: for each fold, weights fitted on the other folds' rows and scored on its rows
(``nested_per_fold``; ``nested`` is their mean). ``in_sample`` scores the weights fitted on every row on those
same rows, which overstates the gain. Pass the out-of-fold table's fold column as ``folds``, so each held-out
fold is one the first-level models held out too. In ``rank`` mode every set of rows is ranked on its own.
"""

from __future__ import annotations

import os

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from kagglekit._checks import number_in, one_of, positive_int
from kagglekit.errors import InvalidArgumentError, ShapeError
from kagglekit.thresholds.blends import BLEND_MODES, _check_probabilities, _tables, blend, from_space, to_space

__all__ = ["BlendFit", "FIT_METHODS", "FIT_MODES", "METRICS", "fit_blend"]

FIT_METHODS = ("hill_climb", "nelder_mead", "nnls")
FIT_MODES = tuple(m for m in BLEND_MODES if m != "median")
LINEAR_MODES = ("mean", "rank")  # where the blend is linear in the tables (nnls)
MIN_WEIGHT = 1e-6  # smaller fitted weights are set to 0: such a model would cost a kernel run for nothing


def _auc(y, p) -> float:
    """ROC AUC: binary, macro over the columns of (N, C) 0/1 labels, or one-vs-rest for class indices."""
    from sklearn.metrics import roc_auc_score

    if np.ndim(y) == 1 and np.ndim(p) == 2:
        return roc_auc_score(y, p, multi_class="ovr", labels=np.arange(p.shape[1]))
    return roc_auc_score(y, p)


def _neg_log_loss(y, p) -> float:
    """Minus the log loss: binary, multi-class for class indices, the mean of the columns' for (N, C) 0/1 labels."""
    from sklearn.metrics import log_loss

    if np.ndim(y) == 2:
        return -float(np.mean([log_loss(y[:, c], p[:, c], labels=[0, 1]) for c in range(y.shape[1])]))
    return -log_loss(y, p, labels=np.arange(p.shape[1]) if np.ndim(p) == 2 else None)


METRICS = {"auc": _auc, "log_loss": _neg_log_loss}
"""Metrics by name, higher is better: ``"auc"`` (scikit-learn's ROC AUC) and ``"log_loss"`` (minus scikit-learn's)."""


@dataclass(frozen=True, eq=False)
class BlendFit:
    """Blend weights fitted on out-of-fold predictions (see the module docstring). ``weights``: (M,) float64,
    >= 0, summing to 1; ``single``: each model's score alone (through ``mode``); ``models``: names or None.
    ``oof``: the nested predictions, each fold's rows blended by the weights fitted without them (the
    tables' shape, float64, NaN on rows no fold holds out): what to fit a decision on for an honest score.
    ``nested_per_fold``, ``single`` and ``oof`` are not stored in a blend file (:func:`read_blend` gives () and None)."""

    weights: np.ndarray
    method: str
    mode: str
    in_sample: float
    nested: float
    nested_per_fold: tuple[float, ...] = ()
    single: tuple[float, ...] = ()
    models: tuple[str, ...] | None = None
    oof: np.ndarray | None = None

    def __post_init__(self):
        one_of("blend fitting method", self.method, FIT_METHODS)
        _fit_mode(self.mode)
        try:
            w = np.array(self.weights, np.float64)
        except (TypeError, ValueError):
            w = np.array([np.nan])
        if w.ndim != 1 or not w.size or not np.isfinite(w).all() or w.min() < 0 or abs(w.sum() - 1) > 1e-6:
            raise InvalidArgumentError(f"blend weights must be M >= 1 non-negative numbers summing to 1, got {self.weights!r}")
        _check_names(self.models, len(w))
        w.flags.writeable = False
        object.__setattr__(self, "weights", w)
        for name in ("in_sample", "nested"):
            object.__setattr__(self, name, number_in(name, getattr(self, name)))

    def apply(self, tables) -> np.ndarray:
        """``blend(tables, weights, mode)`` of M tables (N,) or (N, C) in the fitted order: float64, their shape."""
        arrays = _tables(tables)
        if len(arrays) != len(self.weights):
            raise ShapeError(f"the blend was fitted on {len(self.weights)} models but got {len(arrays)} tables; pass "
                             "them in the fitted order")
        return blend_kept(arrays, self.weights, self.mode)

    def models_config(self, paths) -> list[dict]:
        """classify's ``[[models]]`` tables, ``{"path": str, "weight": float}``, for the M models ``paths`` in the
        fitted order, each a checkpoint or a list of them (a model's folds, which share its weight equally: the
        mean of the folds is what its OOF table stands for); models of weight 0 are left out. classify merges each image's model and view
        probabilities with ``[tta] merge`` ("mean" by default, as ``mode="mean"``; set it to the fitted mode for
        ``logit_mean`` or ``gmean``). ``rank`` has no per-image counterpart and is refused."""
        if self.mode == "rank":
            raise InvalidArgumentError("a rank blend needs every test row at once and classify merges per image; fit "
                                       "with mode='mean' (or 'logit_mean', 'gmean') for [[models]] weights")
        paths = list(paths)
        if len(paths) != len(self.weights):
            raise ShapeError(f"{len(paths)} checkpoint paths for {len(self.weights)} fitted models; pass one per model")
        folds = [[p] if isinstance(p, (str, os.PathLike)) else list(p) for p in paths]
        return [{"path": str(f), "weight": float(w) / len(fs)} for fs, w in zip(folds, self.weights) if w > 0 for f in fs]


def _metric_error(what, rows: int) -> InvalidArgumentError:
    return InvalidArgumentError(f"the metric gave {what} on {rows} rows; it must return a finite number, and each fold "
                                "must hold what it needs (every class, for AUC): pass fewer folds")


def _check_names(models, count: int) -> None:
    if models is not None and (len(models) != count or not all(isinstance(m, str) for m in models)):
        raise InvalidArgumentError(f"models must be {count} names (one per model), got {models!r}")


def _fit_mode(mode: str) -> str:
    if mode == "median":
        raise InvalidArgumentError("mode='median' takes no weights, so there are none to fit; use blend(tables, "
                                   f"mode='median') as it is, or fit one of {list(FIT_MODES)}")
    return one_of("fitted blend mode", mode, FIT_MODES)


def blend_kept(tables, weights, mode: str) -> np.ndarray:
    """:func:`~kagglekit.thresholds.blend` of the tables whose fitted weight is above 0 (a fit may give a
    model 0, which ``blend`` refuses and gmean's log 0 must not meet)."""
    kept = [k for k, w in enumerate(weights) if w > 0]
    return blend([tables[k] for k in kept], [weights[k] for k in kept], mode)


def _mix(space: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The weighted sum of the (M, N[, C]) blend-space tables over the models of weight > 0 (so a weight of 0
    never meets gmean's log 0)."""
    kept = np.flatnonzero(w > 0)
    return np.tensordot(w[kept], space[kept], axes=1)


@dataclass(frozen=True)
class _Fitter:
    """One setting of :func:`fit_blend`, applied to the blend-space tables of any set of rows."""

    method: str
    mode: str
    metric: Callable
    iterations: int

    def space(self, arrays: list[np.ndarray], rows: np.ndarray) -> np.ndarray:
        return np.stack([to_space(a[rows], self.mode) for a in arrays])

    def scorer(self, y) -> Callable[[np.ndarray], float]:
        """``score(total)``: the metric of ``y`` and the blend whose weighted blend-space mean is ``total``."""
        def score(total: np.ndarray) -> float:
            try:
                value = float(self.metric(y, from_space(total, self.mode)))
            except ValueError as exc:
                raise _metric_error(exc, len(y)) from exc
            if not np.isfinite(value):
                raise _metric_error(value, len(y))
            return value
        return score

    def fit(self, space: np.ndarray, y) -> np.ndarray:
        """The weights for these rows, those under :data:`MIN_WEIGHT` set to 0."""
        if self.method == "nnls":
            w = _nnls(space, _regression_target(y, space.shape[1:]))
        else:
            climb = _hill_climb if self.method == "hill_climb" else _nelder_mead
            w = climb(space, self.scorer(y), self.iterations)
        w = np.where(w < MIN_WEIGHT, 0.0, w)
        return w / w.sum()

    def score(self, space: np.ndarray, y, w: np.ndarray) -> float:
        return self.scorer(y)(_mix(space, w))


def _hill_climb(space: np.ndarray, score, iterations: int) -> np.ndarray:
    """Caruana's ensemble selection with replacement: counts / total of the best ensemble of at most ``iterations``."""
    singles = [score(table) for table in space]
    first = int(np.argmax(singles))
    counts = np.zeros(len(space))
    counts[first] = 1
    total, best, best_counts = space[first].copy(), singles[first], counts.copy()
    for n in range(2, iterations + 1):
        gains = [score((total + table) / n) for table in space]
        chosen = int(np.argmax(gains))
        counts[chosen] += 1
        total += space[chosen]
        if gains[chosen] > best:
            best, best_counts = gains[chosen], counts.copy()
    return best_counts / best_counts.sum()


def _nelder_mead(space: np.ndarray, score, iterations: int) -> np.ndarray:
    """scipy's Nelder-Mead on ``|x| / sum |x|`` from the best single model (its simplex keeps its best vertex)."""
    from scipy.optimize import minimize

    def loss(x):
        size = np.abs(x).sum()
        return np.inf if size == 0 else -score(_mix(space, np.abs(x) / size))

    best = int(np.argmax([score(table) for table in space]))
    start = np.eye(len(space))[best]
    steps = 0.5 * np.eye(len(space))
    steps[best, best] = -0.5  # the vertices e_b, e_b + e_j / 2 and e_b / 2 span every direction
    found = minimize(loss, start, method="Nelder-Mead",
                     options={"initial_simplex": np.vstack([start, start + steps]), "maxiter": iterations * len(space)})
    return np.abs(found.x) / np.abs(found.x).sum()


def _nnls(space: np.ndarray, y) -> np.ndarray:
    """scipy's non-negative least squares of ``y`` (the tables' shape) on the M tables, normalised to sum 1."""
    from scipy.optimize import nnls

    w, _ = nnls(space.reshape(len(space), -1).T, np.asarray(y, np.float64).ravel())
    if w.sum() <= 0:
        raise InvalidArgumentError("nnls gave every model weight 0 (no table fits y with a positive weight); use "
                                   "method='hill_climb' or 'nelder_mead', which fit the metric itself")
    return w / w.sum()


def _regression_target(y: np.ndarray, shape: tuple) -> np.ndarray:
    """``y`` as numbers of the tables' shape for nnls: as given, or class indices one-hot for (N, C) tables."""
    if y.shape == shape and y.dtype.kind in "biuf":
        return y.astype(np.float64)
    if y.ndim == 1 and len(shape) == 2 and y.dtype.kind in "iu" and y.min() >= 0 and y.max() < shape[1]:
        return np.eye(shape[1])[y]
    raise ShapeError(f"method='nnls' regresses y on the tables: y must be numbers of the tables' shape {shape}, or class "
                     f"indices 0..C-1 for (N, C) tables; got shape {y.shape}, dtype {y.dtype}")


def _metric(metric) -> Callable:
    if isinstance(metric, str):
        return METRICS[one_of("metric", metric, METRICS)]
    if not callable(metric):
        raise InvalidArgumentError(f"metric must be a callable metric(y, P) -> float (higher is better) or one of "
                                   f"{sorted(METRICS)}, got {metric!r}")
    return metric


def fit_blend(tables, y, metric, *, method: str = "hill_climb", mode: str = "mean", folds=5, seed: int = 0,
              iterations: int = 100, models=None) -> BlendFit:
    """Fit blend weights for M out-of-fold prediction tables and estimate their gain with nested folds.

    ``tables``: M arrays (N,) or (N, C), the same rows and columns in the same order. ``y``: the N rows'
    labels as ``metric`` takes them (nnls: numbers of the tables' shape, or class indices for (N, C) tables).
    ``metric(y, P) -> float``, higher is better, or a name in :data:`METRICS`. ``mode``: a weighted mode of
    :func:`~kagglekit.thresholds.blend` (not ``median``). ``folds``: a count (stratified for class vectors,
    ``seed`` shuffles) or the rows' fold numbers, as :func:`kagglekit.cv.fold_pairs` takes them.
    ``iterations``: models added by hill climbing; Nelder-Mead's iterations are capped at ``iterations * M``.
    ``models``: M names, kept in the result and the blend file. Fitted weights under 1e-6 are set to 0.
    Holds the M tables in blend space twice.
    """
    from kagglekit.cv import fold_pairs

    one_of("blend fitting method", method, FIT_METHODS)
    arrays = _tables(tables)
    if _fit_mode(mode) in ("logit_mean", "gmean"):
        _check_probabilities(arrays, mode)
    y = np.asarray(y)
    if y.ndim == 0 or len(y) != len(arrays[0]):
        raise ShapeError(f"y has shape {y.shape} but the tables have {len(arrays[0])} rows; pass one label per row")
    if method == "nnls" and mode not in LINEAR_MODES:
        raise InvalidArgumentError(f"method='nnls' fits a blend linear in the tables (mode 'mean' or 'rank'), not "
                                   f"mode={mode!r}; use method='hill_climb' or 'nelder_mead'")
    names = None if models is None else tuple(str(m) for m in models)
    _check_names(names, len(arrays))
    fitter = _Fitter(method, mode, _metric(metric), positive_int("iterations", iterations))
    nested, oof = [], np.full(arrays[0].shape, np.nan)
    for train, held_out in fold_pairs(folds, y, seed):
        w, held = fitter.fit(fitter.space(arrays, train), y[train]), fitter.space(arrays, held_out)
        total = _mix(held, w)
        nested.append(fitter.scorer(y[held_out])(total))
        oof[held_out] = from_space(total, mode)
    space = fitter.space(arrays, np.arange(len(y)))
    weights = fitter.fit(space, y)
    return BlendFit(weights, method, mode, in_sample=fitter.score(space, y, weights), nested=float(np.mean(nested)),
                    nested_per_fold=tuple(nested), single=tuple(fitter.score(space, y, w) for w in np.eye(len(arrays))),
                    models=names, oof=oof)
