"""Classification and segmentation metrics on numpy arrays: F-beta, dice, balanced accuracy.

Inputs are numpy arrays (or anything ``np.asarray`` accepts). Binary labels and predictions may be
bool, integer or float arrays holding only 0 and 1; anything else raises. Nothing is copied beyond
one boolean view or conversion per input.

Zero division (the same convention as scikit-learn's ``fbeta_score``): F-beta is computed as
``(1 + beta^2) TP / ((1 + beta^2) TP + beta^2 FN + FP)``; it is undefined only when a set has neither
true nor predicted positives, and it then takes the value ``zero_division`` (0.0 by default, as in
scikit-learn; 1.0 or ``nan`` on request). With ``nan``, averages ignore the undefined sets (and are
``nan`` if all are undefined), as scikit-learn does.
"""

from __future__ import annotations

import math

import numpy as np

from kagglekit._checks import as_binary, check_beta, check_one_label_kind, label_kinds, one_of
from kagglekit.errors import InvalidArgumentError, ShapeError

__all__ = ["fbeta_score", "fbeta_from_counts", "dice", "balanced_accuracy"]

AVERAGES = ("global", "micro", "samples", "macro")


def _same_shape(y_true: np.ndarray, y_pred: np.ndarray) -> None:
    if y_true.shape != y_pred.shape:
        raise ShapeError(f"y_true has shape {y_true.shape} but y_pred has shape {y_pred.shape}; they must match")
    if y_true.size == 0:
        raise ShapeError("y_true and y_pred are empty; pass at least one label")


def _check_zero_division(value, name: str = "zero_division") -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if number is None or not (number in (0.0, 1.0) or math.isnan(number)):
        raise InvalidArgumentError(
            f"{name} must be 0.0, 1.0 or nan (0.0 is scikit-learn's 'warn' without the warning), got {value!r}"
        )
    return number


def fbeta_from_counts(tp, n_true, n_pred, beta: float, zero_division: float = 0.0):
    """F-beta from counts (scalars or arrays): true positives, true-set size, predicted-set size.

    Returns float64; where ``n_true == n_pred == 0`` the value is ``zero_division``.
    """
    beta2 = beta * beta
    tp = np.asarray(tp, dtype=np.float64)
    denom = beta2 * np.asarray(n_true, dtype=np.float64) + np.asarray(n_pred, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(denom > 0, (1.0 + beta2) * tp / denom, zero_division)
    return f


def _mean(values: np.ndarray) -> float:
    """Mean that ignores nan (undefined sets under zero_division=nan); nan if every value is nan."""
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else math.nan


def fbeta_score(y_true, y_pred, beta: float = 1.0, average: str = "global", zero_division: float = 0.0) -> float:
    """F-beta of binary predictions.

    ``y_true``, ``y_pred``: arrays of 0/1 of the same shape. ``average``:

    - ``"global"``: every element pooled into one set (one mask, or a stack of masks; any shape).
      Equals scikit-learn's ``average="binary"`` on the flattened arrays.
    - ``"micro"``: the scikit-learn name for the same pooling over a (n_samples, n_labels) matrix.
    - ``"samples"``: F-beta of each row of a (n_samples, n_labels) matrix (or of each image of a
      (n_images, H, W) stack), then the mean (the rainforest F2).
    - ``"macro"``: F-beta of each column of a (n_samples, n_labels) matrix, then the mean.

    See the module docstring for ``zero_division``. Returns a Python float.
    """
    beta = check_beta(beta)
    one_of("average", average, AVERAGES)
    zero_division = _check_zero_division(zero_division)
    t, p = as_binary("y_true", y_true), as_binary("y_pred", y_pred)
    _same_shape(t, p)
    if average in ("global", "micro"):
        tp = np.count_nonzero(t & p)
        return float(fbeta_from_counts(tp, np.count_nonzero(t), np.count_nonzero(p), beta, zero_division))
    if t.ndim < 2:
        raise ShapeError(
            f"average={average!r} needs a 2-D (n_samples, n_labels) array or an image stack, got shape {t.shape}"
        )
    if average == "samples":
        t, p = t.reshape(len(t), -1), p.reshape(len(p), -1)
        axis = 1
    else:
        if t.ndim != 2:
            raise ShapeError(f"average='macro' needs a 2-D (n_samples, n_labels) array, got shape {t.shape}")
        axis = 0
    tp = np.count_nonzero(t & p, axis=axis)
    f = fbeta_from_counts(tp, np.count_nonzero(t, axis=axis), np.count_nonzero(p, axis=axis), beta, zero_division)
    return _mean(f)


def dice(y_true, y_pred, average: str = "global", empty_score: float = 1.0) -> float:
    """Dice coefficient ``2 TP / (2 TP + FP + FN)`` of binary masks (identical to F1).

    ``average="global"`` pools all pixels; ``"samples"`` takes the dice of each mask of a
    (n_images, H, W) stack and then the mean (the usual Kaggle segmentation score). Two empty masks
    score ``empty_score``: 1.0 by default (the Kaggle convention), 0.0 (scikit-learn's F1) or nan
    (such pairs are left out of the ``"samples"`` mean).
    """
    one_of("average", average, ("global", "samples"))
    empty_score = _check_zero_division(empty_score, "empty_score")
    return fbeta_score(y_true, y_pred, beta=1.0, average=average, zero_division=empty_score)


def balanced_accuracy(y_true, y_pred, adjusted: bool = False) -> float:
    """Mean recall over the classes present in ``y_true`` (scikit-learn's ``balanced_accuracy_score``).

    ``y_true``, ``y_pred``: 1-D arrays of class labels (ints or strings). Predicted classes that
    never occur in ``y_true`` count as errors but add no class to the mean. ``adjusted=True``
    rescales so that chance scores 0 and perfect scores 1.
    """
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 1 or p.shape != t.shape:
        raise ShapeError(f"y_true and y_pred must be 1-D arrays of the same length, got {t.shape} and {p.shape}")
    if t.size == 0:
        raise ShapeError("y_true and y_pred are empty; pass at least one label")
    if t.dtype.kind == "f" and np.isnan(t).any():
        raise InvalidArgumentError("y_true contains NaN; every sample needs a class label")
    kinds = {"y_true": label_kinds(t), "y_pred": label_kinds(p)}
    if "None" in kinds["y_true"] | kinds["y_pred"]:
        raise InvalidArgumentError("y_true or y_pred contains None; every sample needs a class label")
    check_one_label_kind(kinds, "pass both as class names or both as numbers (e.g. map predicted indices to "
                                "names with classes[argmax])")
    classes, index = np.unique(t, return_inverse=True)
    per_class = np.bincount(index, weights=(t == p)) / np.bincount(index)
    score = float(per_class.mean())
    if adjusted:
        chance = 1.0 / len(classes)
        score = (score - chance) / (1.0 - chance) if len(classes) > 1 else 0.0
    return score
