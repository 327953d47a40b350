"""Stacking: a second-level model fitted on the first-level models' out-of-fold predictions.

    stacker = fit_stacker([oof_a, oof_b], y, folds=fold_column, estimator="logistic")
    stacker.oof                              # (N, C) second-level out-of-fold probabilities
    stacker.save("models/stacker.json")      # classify's [stack] file = "stacker.json" applies it
    p = load_stacker("models/stacker.json").predict([test_a, test_b])     # (N, C)

Targets: multi-label ``y`` (N, C) 0/1 gets one binary stacker per class; single-label ``y`` (N,) class
indices gets, with ``per_class``, one binary stacker per class (that class against the rest; a row's C
probabilities are then divided by their sum, as scikit-learn's one-vs-rest does), without it one
multinomial stacker. One-column tables with ``y`` (N,) 0/1 are one binary class. Features: with
``per_class`` class c's stacker sees the M tables' column c, without it all M*C columns, table by
table (table m's column c at m*C + c); then the ``extra_features`` columns. The file records this layout.

Estimators: ``"logistic"`` (``LogisticRegression(max_iter=1000)`` on the probabilities as they are),
``"extra_trees"`` (``ExtraTreesClassifier(n_estimators=50, min_samples_leaf=5, random_state=seed)``).
``"lightgbm"`` is refused for now: its trees are not yet written as arrays.

Honest out-of-fold predictions: the rows of fold f are predicted by stackers fitted on the other
folds' rows only, so no row's own label reaches its prediction. ``repeats`` R averages R such second
levels over reshuffled folds: repeat r is exactly ``fit_stacker(..., folds=repeat_folds(folds, y, r, seed),
repeats=1, seed=seed + r).oof`` (see :func:`repeat_folds`). The final stacker is then fitted on every row.

Saved as JSON, loaded without pickle: logistic coefficients and the trees' ``tree_`` arrays as
zlib-compressed base64 (:mod:`.stack_heads`, which recomputes the predictions in numpy, equal to
scikit-learn's). Not skops (0.16, measured on 2000 rows, 3 models, 4 classes, scikit-learn 1.9): its
file rebuilds scikit-learn objects from their attributes, so a tree stacker loads only after trusting
``sklearn.tree._tree.Tree``, it follows scikit-learn's version (the kernel's may differ from training's)
and it is one more wheel to ship; and it was larger: 41 kB / 5.0 MB (logistic / extra_trees) against
1.1 kB / 256 kB here, loaded in 3 / 140 ms against 0.2 / 2.5 ms. The price: the numpy walk of the trees
predicts those 2000 rows in 81 ms, scikit-learn's in 17 ms.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kagglekit._atomic import atomic_open
from kagglekit._checks import as_binary, one_of, positive_int
from kagglekit.errors import ConfigError, InvalidArgumentError, ShapeError
from kagglekit.thresholds.stack_heads import export_head, head_proba, pack_head, unpack_head

__all__ = ["ESTIMATORS", "StackFileError", "Stacker", "check_format", "fit_stacker", "load_stacker", "read_json",
           "repeat_folds", "stacker_from"]

ESTIMATORS = ("logistic", "extra_trees")
TASKS = ("multilabel", "single_label")
STACK_FORMAT = 1


class StackFileError(ConfigError):
    """A stacker or blend file is missing, not JSON, of another kind or newer format, or does not fit."""


@dataclass(frozen=True, eq=False)
class Stacker:
    """A fitted second level (see the module docstring). ``heads``: one exported estimator per class
    (one for a multinomial stacker); ``classes``: names of the C columns, if given; ``oof``: the (N, C)
    second-level out-of-fold probabilities of :func:`fit_stacker` (not saved)."""

    estimator: str
    task: str
    per_class: bool
    n_models: int
    n_classes: int
    n_extra: int
    heads: tuple
    classes: tuple[str, ...] | None = None
    oof: np.ndarray | None = None

    def __post_init__(self):
        one_of("stacker estimator", self.estimator, ESTIMATORS)
        one_of("stacker task", self.task, TASKS)
        for name, low in (("n_models", 1), ("n_classes", 1), ("n_extra", 0)):
            positive_int(name, getattr(self, name), low)
        if not isinstance(self.per_class, bool):
            raise InvalidArgumentError(f"per_class must be true or false, got {self.per_class!r}")
        heads = 1 if self.task == "single_label" and not self.per_class else self.n_classes
        if len(self.heads) != heads:
            raise InvalidArgumentError(f"a {self.task} stacker with per_class={self.per_class} has {heads} head(s), "
                                       f"got {len(self.heads)}")
        if self.classes is not None and len(self.classes) != self.n_classes:
            raise InvalidArgumentError(f"{len(self.classes)} class names for {self.n_classes} classes")
        width = _width(self.per_class, self.n_models, self.n_classes, self.n_extra)
        for h in self.heads:  # a logistic head weighs every feature; a tree may leave some unused
            logistic = h["kind"] == "logistic"
            used = h["coef"].shape[1] if logistic else int(h["feature"].max()) + 1
            if (used != width) if logistic else (used > width):
                raise InvalidArgumentError(f"a head uses {used} features but the layout has {width}")

    def predict(self, tables, extra_features=None) -> np.ndarray:
        """(N, C) float64 probabilities of M first-level (N, C) tables (models in the fitted order), and
        the (N, E) ``extra_features`` when it was fitted with them."""
        stacked = _stacked(tables)
        if stacked.shape[0] != self.n_models or stacked.shape[2] != self.n_classes:
            raise ShapeError(f"the stacker takes {self.n_models} table(s) of {self.n_classes} column(s), got "
                             f"{stacked.shape[0]} of {stacked.shape[2]}; pass the first-level tables in the fitted order")
        extra = _extra(extra_features, stacked.shape[1])
        if (0 if extra is None else extra.shape[1]) != self.n_extra:
            raise ShapeError(f"the stacker was fitted with {self.n_extra} extra feature column(s); pass extra_features "
                             f"of shape (N, {self.n_extra})" if self.n_extra else "the stacker takes no extra_features")
        probas = [head_proba(h, _features(self.per_class, stacked, extra, j)) for j, h in enumerate(self.heads)]
        return _combine(self.task, self.per_class, probas)

    def save(self, path) -> Path:
        """Write the stacker as JSON at ``path`` (atomically); :func:`load_stacker` reads it without pickle."""
        path = Path(path)
        data = {"format": STACK_FORMAT, "kind": "stacker", "estimator": self.estimator, "task": self.task,
                "per_class": self.per_class, "n_models": self.n_models, "n_classes": self.n_classes,
                "n_extra": self.n_extra, "classes": None if self.classes is None else list(self.classes),
                "features": _layout(self.per_class, self.n_models, self.n_classes, self.n_extra),
                "heads": [pack_head(h) for h in self.heads]}
        with atomic_open(path, "w", encoding="utf-8") as f:
            json.dump(data, f)
        return path


def _width(per_class: bool, m: int, c: int, e: int) -> int:
    return (m if per_class else m * c) + e


def _layout(per_class: bool, m: int, c: int, e: int) -> str:
    """The features of a head, in words (written into the file for a reader)."""
    extra = f", then extra_features[:, 0..{e - 1}]" if e else ""
    if per_class:
        return f"class c's head: table_0[:, c] .. table_{m - 1}[:, c]{extra}"
    return f"every head: table_m[:, c] at column m*{c} + c for m < {m}, c < {c}{extra}"


def _stacked(tables) -> np.ndarray:
    """The (M, N, C) float64 stack of M checked (N, C) or (N,) tables."""
    from kagglekit.thresholds.blends import _tables

    stacked = np.stack(_tables(tables)).astype(np.float64)
    return stacked[:, :, None] if stacked.ndim == 2 else stacked


def _extra(extra_features, n: int) -> np.ndarray | None:
    if extra_features is None:
        return None
    extra = np.asarray(extra_features, np.float64)
    extra = extra[:, None] if extra.ndim == 1 else extra
    if extra.ndim != 2 or len(extra) != n or not np.isfinite(extra).all():
        raise ShapeError(f"extra_features must be finite numbers of shape (N,) or (N, E) with N={n}, got {extra.shape}")
    return extra


def _features(per_class: bool, stacked: np.ndarray, extra, j: int) -> np.ndarray:
    """Head ``j``'s (N, F) features (the module docstring's layout)."""
    m, n, c = stacked.shape
    columns = stacked[:, :, j].T if per_class else stacked.transpose(1, 0, 2).reshape(n, m * c)
    return columns if extra is None else np.hstack([columns, extra])


def _combine(task: str, per_class: bool, probas: list[np.ndarray]) -> np.ndarray:
    """The heads' (N, K) probabilities as the (N, C) table."""
    if task == "single_label" and not per_class:
        return probas[0]
    p = np.stack([q[:, 1] for q in probas], axis=1)
    if task == "multilabel":
        return p
    total = p.sum(axis=1, keepdims=True)
    return np.divide(p, total, out=np.full_like(p, 1 / p.shape[1]), where=total > 0)


def _labels(y, n: int, c: int) -> tuple[str, np.ndarray]:
    """(task, labels): multi-label (N, C) bool, or single-label (N,) int64 class indices."""
    y = np.asarray(y)
    if y.ndim == 1 and c == 1:
        y = y[:, None]
    if y.ndim == 2:
        if y.shape != (n, c):
            raise ShapeError(f"multi-label y must have the tables' shape ({n}, {c}), got {y.shape}")
        return "multilabel", as_binary("y", y)
    if y.shape != (n,) or y.dtype.kind not in "ui" or y.min() < 0 or y.max() >= c:
        raise ShapeError(f"y must be ({n}, {c}) 0/1 labels (multi-label) or ({n},) class indices 0..{c - 1} "
                         f"(single-label), got shape {y.shape}, dtype {y.dtype}")
    return "single_label", y.astype(np.int64)


def repeat_folds(folds, y, repeat: int = 0, seed: int = 0) -> np.ndarray:
    """The (N,) int64 fold column of repeat ``repeat`` of :func:`fit_stacker`.

    ``folds`` an int k: k folds stratified on ``y`` (:class:`~kagglekit.cv.MultilabelStratifiedKFold` for
    (N, C) labels, :class:`~kagglekit.cv.StratifiedGroupKFold` for (N,) classes), shuffled with
    ``random_state=seed + repeat``. ``folds`` a fold column: repeat 0 is the column itself; a later
    repeat shuffles the fold numbers among rows of identical labels with ``numpy.random.default_rng(seed
    + repeat)``, so that every fold keeps its size and its count of each label (combination) while its
    rows change. Groups (patients) are not kept: for that, pass a column made with groups per repeat.
    """
    from kagglekit.cv import MultilabelStratifiedKFold, StratifiedGroupKFold

    y = np.asarray(y)
    repeat = positive_int("repeat", repeat, 0)
    if not isinstance(folds, np.ndarray) and hasattr(folds, "__index__"):
        k = positive_int("folds", folds, 2)
        splitter = MultilabelStratifiedKFold if y.ndim == 2 else StratifiedGroupKFold
        return splitter(k, shuffle=True, random_state=seed + repeat).assign(None, y)
    column = np.asarray(folds)
    if column.shape != (len(y),) or column.dtype.kind not in "ui":
        raise ShapeError(f"folds must be an integer k or one integer fold number per row, shape ({len(y)},), got "
                         f"shape {column.shape}, dtype {column.dtype}")
    if len(np.unique(column)) < 2:
        raise InvalidArgumentError("folds holds one fold number; the second level needs at least two folds")
    column = column.astype(np.int64)
    if repeat == 0:
        return column
    strata = np.unique(y.reshape(len(y), -1), axis=0, return_inverse=True)[1].ravel()
    shuffled = np.lexsort((np.random.default_rng(seed + repeat).random(len(y)), strata))
    out = np.empty_like(column)
    out[np.argsort(strata, kind="stable")] = column[shuffled]
    return out


def _estimator(name: str, seed: int):
    if name == "lightgbm":
        raise InvalidArgumentError("estimator='lightgbm' is not supported yet: a stacker is saved without pickle as "
                                   "arrays, which kagglekit writes for 'logistic' and 'extra_trees' only; use one of them")
    one_of("stacker estimator", name, ESTIMATORS)
    if name == "logistic":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=1000)
    from sklearn.ensemble import ExtraTreesClassifier

    return ExtraTreesClassifier(n_estimators=50, min_samples_leaf=5, n_jobs=1, random_state=seed)


def _fit_head(name: str, seed: int, X: np.ndarray, target: np.ndarray, k: int, where: str) -> dict:
    """The exported estimator ``name`` fitted on (X, target) of classes 0..k-1, all of which must occur."""
    missing = sorted(set(range(k)) - set(np.unique(target).tolist()))
    if missing:
        what = f"class {missing}" if k > 2 else f"{'positive' if missing == [1] else 'negative'} row"
        raise InvalidArgumentError(f"{where} hold no {what}; a stacker cannot learn from one class. Use fewer folds, "
                                   "folds stratified on y (folds=k makes them), or drop the class from the tables and y")
    return export_head(_estimator(name, seed).fit(X, target))


def _head_targets(task: str, per_class: bool, y: np.ndarray, c: int) -> list[tuple[np.ndarray, int, str]]:
    """(target (N,) int64, its class count, its name) of each head."""
    if task == "multilabel":
        return [(y[:, j].astype(np.int64), 2, f"class {j}") for j in range(c)]
    if per_class:
        return [((y == j).astype(np.int64), 2, f"class {j}") for j in range(c)]
    return [(y, c, "y")]


def _second_level(name, seed, X, targets, fold_column, task, per_class) -> np.ndarray:
    """(N, C) out-of-fold probabilities: each fold's rows predicted by heads fitted on the other folds."""
    out = None
    for f in np.unique(fold_column):
        held = fold_column == f
        probas = [head_proba(_fit_head(name, seed, x[~held], t[~held], k, f"the rows outside fold {f} ({what})"), x[held])
                  for x, (t, k, what) in zip(X, targets)]
        predicted = _combine(task, per_class, probas)
        out = np.empty((len(fold_column), predicted.shape[1])) if out is None else out
        out[held] = predicted
    return out


def fit_stacker(oof_tables, y, folds, estimator: str = "logistic", *, per_class: bool = True, extra_features=None,
                repeats: int = 1, seed: int = 0, classes=None) -> Stacker:
    """Fit a second level on M first-level out-of-fold tables; return the :class:`Stacker` with its ``oof``.

    ``oof_tables``: M arrays (N, C) (or (N,)) of the same rows, in the order :meth:`Stacker.predict` and
    classify's ``[[models]]`` will give them. ``y``: (N, C) 0/1 or (N,) class indices. ``folds``: the OOF
    table's fold column (N,) or an int k; ``repeats``, ``seed``: see :func:`repeat_folds`. ``extra_features``:
    (N, E) more columns for every head. ``classes``: the C column names, recorded in the file.
    Holds the (M, N, C) tables in float64 and one feature matrix per head.
    """
    _estimator(estimator, seed)  # an unknown name, or lightgbm, is refused before any work
    stacked = _stacked(oof_tables)
    m, n, c = stacked.shape
    task, labels = _labels(y, n, c)
    extra = _extra(extra_features, n)
    repeats = positive_int("repeats", repeats)
    X = [_features(per_class, stacked, extra, j) for j in range(1 if task == "single_label" and not per_class else c)]
    targets = _head_targets(task, per_class, labels, c)
    oof = 0.0
    for r in range(repeats):
        oof = oof + _second_level(estimator, seed + r, X, targets, repeat_folds(folds, y, r, seed), task, per_class)
    heads = tuple(_fit_head(estimator, seed, x, t, k, f"all rows ({what})") for x, (t, k, what) in zip(X, targets))
    names = None if classes is None else tuple(str(name) for name in classes)
    return Stacker(estimator, task, bool(per_class), m, c, 0 if extra is None else extra.shape[1], heads, names,
                   oof / repeats)


def stacker_from(data: dict, path) -> Stacker:
    """The :class:`Stacker` of a stacker file's parsed JSON ``data``; a StackFileError naming ``path`` otherwise."""
    if not isinstance(data, dict) or data.get("kind") != "stacker":
        kind = data.get("kind") if isinstance(data, dict) else None
        raise StackFileError(f"{path} is not a stacker file (its kind is {kind!r}, not 'stacker'); write one with "
                             "fit_stacker(...).save(path), or point at the right file")
    check_format(data, path)
    try:
        fields = {k: data[k] for k in ("estimator", "task", "per_class", "n_models", "n_classes", "n_extra")}
        classes = None if data.get("classes") is None else tuple(data["classes"])
        return Stacker(**fields, heads=tuple(unpack_head(h) for h in data["heads"]), classes=classes)
    except (KeyError, TypeError, InvalidArgumentError) as exc:
        raise StackFileError(f"stacker file {path} cannot be used: {exc}") from None


def check_format(data: dict, path) -> None:
    """Refuse a stack file whose ``format`` is missing or newer than this kagglekit reads, naming ``path``."""
    if not isinstance(data.get("format"), int) or data["format"] > STACK_FORMAT:
        raise StackFileError(f"{path} has format {data.get('format')!r}, not one this kagglekit reads (up to "
                             f"{STACK_FORMAT}); upgrade kagglekit, or write the file again with this one")


def read_json(path, what: str) -> dict:
    """The parsed JSON of ``path``; a StackFileError naming it when it is missing or not JSON."""
    path = Path(path)
    if not path.is_file():
        raise StackFileError(f"{what} {path} not found; fix the path, or write it (fit_stacker(...).save(path))")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise StackFileError(f"{what} {path} is not JSON ({exc}); write it with fit_stacker(...).save(path)") from None


def load_stacker(path) -> Stacker:
    """The :class:`Stacker` saved at ``path`` (no pickle: JSON and arrays); a StackFileError naming the file otherwise."""
    return stacker_from(read_json(path, "stacker file"), path)
