"""Adversarial validation: how well a classifier tells test rows from train rows, and which train rows look like test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kagglekit._checks import positive_int
from kagglekit.errors import InvalidArgumentError, ShapeError


@dataclass(frozen=True)
class AdversarialResult:
    """``auc``: out-of-fold ROC AUC of "row is from test" (0.5: indistinguishable);
    ``train_proba`` (n_train,) and ``test_proba`` (n_test,): out-of-fold P(test) per row, float64."""

    auc: float
    train_proba: np.ndarray
    test_proba: np.ndarray

    def most_test_like(self, n: int) -> np.ndarray:
        """Indices of the ``n`` train rows the classifier finds most test-like (a validation set candidate)."""
        n = positive_int("n", n)
        return np.argsort(-self.train_proba, kind="stable")[:n]


def adversarial_validation(train, test, features=None, *, n_splits: int = 5, seed: int = 0, classifier=None) -> AdversarialResult:
    """Fit ``classifier`` (default: scikit-learn's HistGradientBoostingClassifier, which takes NaN) to
    tell ``test`` rows from ``train`` rows with stratified ``n_splits``-fold cross-validation.

    ``train``/``test``: polars DataFrames (``features`` default: their shared columns; string and
    categorical columns are encoded with codes shared by both) or 2-D numeric arrays with the same
    number of columns. Holds one float64 copy of both tables.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    n_splits = positive_int("n_splits", n_splits, minimum=2)
    x, n_train = _feature_matrix(train, test, features)
    if min(n_train, len(x) - n_train) < n_splits:
        raise InvalidArgumentError(f"train and test need at least n_splits={n_splits} rows each")
    is_test = np.r_[np.zeros(n_train, dtype=np.int64), np.ones(len(x) - n_train, dtype=np.int64)]
    model = classifier if classifier is not None else HistGradientBoostingClassifier(random_state=seed)
    cv = StratifiedKFold(n_splits, shuffle=True, random_state=seed)
    proba = cross_val_predict(model, x, is_test, cv=cv, method="predict_proba")[:, 1]
    return AdversarialResult(float(roc_auc_score(is_test, proba)), proba[:n_train], proba[n_train:])


def _as_numbers(column) -> np.ndarray:
    """A column as float64: numbers and booleans as they are, anything else as codes of its values
    as text (sorted order; numpy rather than polars categoricals, whose codes differ across polars
    versions); nulls become NaN."""
    import polars as pl

    if column.dtype.is_numeric() or column.dtype == pl.Boolean:
        return column.cast(pl.Float64).to_numpy()
    text = column.cast(pl.String)
    codes = np.full(len(text), np.nan)
    _, inverse = np.unique(text.drop_nulls().to_numpy(), return_inverse=True)
    codes[text.is_not_null().to_numpy().astype(bool)] = inverse.ravel()  # polars < 1 gives booleans as objects
    return codes


def _feature_matrix(train, test, features) -> tuple[np.ndarray, int]:
    """(train rows then test rows as one float64 matrix, the number of train rows)."""
    import polars as pl

    if isinstance(train, pl.DataFrame) and isinstance(test, pl.DataFrame):
        names = list(features) if features is not None else [c for c in train.columns if c in test.columns]
        missing = [c for c in names if c not in train.columns or c not in test.columns]
        if missing or not names:
            raise InvalidArgumentError(f"features {missing or names} must be columns of both train and test")
        both = pl.concat([train.select(names), test.select(names)], how="vertical_relaxed")
        matrix = np.empty((both.height, len(names)))
        for j, name in enumerate(names):  # one column at a time: no list of every column beside the matrix
            matrix[:, j] = _as_numbers(both.get_column(name))
        return matrix, train.height
    x_train, x_test = np.asarray(train, dtype=np.float64), np.asarray(test, dtype=np.float64)
    if x_train.ndim != 2 or x_test.ndim != 2 or x_train.shape[1] != x_test.shape[1]:
        raise ShapeError(f"train and test must be 2-D with the same columns, got {x_train.shape} and {x_test.shape}")
    return np.concatenate([x_train, x_test]), len(x_train)
