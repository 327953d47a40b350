"""Small argument checks shared by the modules; each raises a KagglekitError subclass."""

from __future__ import annotations

import math

import numpy as np

from kagglekit.errors import InvalidArgumentError, ShapeError


def positive_int(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` as an int, or raise if it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value!r}")
    value = int(value)
    if value < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def one_of(name: str, value, choices) -> str:
    """Return ``value`` if it is in ``choices``, else raise naming the choices."""
    try:
        known = value in choices
    except TypeError:  # an unhashable value (a list) against a set or dict of choices
        known = False
    if not known:
        raise InvalidArgumentError(f"unknown {name} {value!r}; choose one of {sorted(choices, key=str)}")
    return value


def positive_weights(weights, count: int, what: str) -> list[float]:
    """``weights`` as ``count`` floats (all 1.0 when None), or raise if the count is wrong or one is
    not a finite positive number."""
    weights = [1.0] * count if weights is None else [float(w) for w in weights]
    if len(weights) != count or not all(math.isfinite(w) and w > 0 for w in weights):
        raise InvalidArgumentError(f"{what} weights must be {count} positive numbers (one each), got {weights}")
    return weights


def as_binary(name: str, values) -> np.ndarray:
    """``values`` (any shape; bool, integer or float holding only 0 and 1) as a bool array of the same shape (a
    view for bool and 1-byte integer input), or a ShapeError (empty) / InvalidArgumentError naming ``name``."""
    array = np.asarray(values)
    if array.dtype == bool:
        return array
    if array.size == 0:
        raise ShapeError(f"{name} is empty; pass at least one label")
    if array.dtype.kind in "ui":
        if array.min() >= 0 and array.max() <= 1:
            return array.view(bool) if array.dtype.itemsize == 1 else array.astype(bool)
    elif array.dtype.kind == "f":
        if np.all((array == 0) | (array == 1)):
            return array.astype(bool)
    else:
        raise InvalidArgumentError(f"{name} must be a numeric array of 0/1 labels, got dtype {array.dtype}")
    bad = array[(array != 0) & (array != 1)].ravel()[:5]
    raise InvalidArgumentError(
        f"{name} must hold only 0 and 1 (binary labels); found values such as {bad.tolist()}. "
        "Threshold scores first (kagglekit.thresholds.apply_threshold) or pass one-hot labels."
    )


def check_beta(beta) -> float:
    """``beta`` of an F-beta as a float, or an InvalidArgumentError unless it is a positive finite number."""
    if not isinstance(beta, (int, float, np.number)) or isinstance(beta, bool) or not 0 < beta < math.inf:
        raise InvalidArgumentError(f"beta must be a positive finite number, got {beta!r}")
    return float(beta)


def label_kinds(labels) -> set[str]:
    """Kinds of the values of a label array: "string", "number" and/or "None" (object arrays are scanned)."""
    array = np.asarray(labels)
    if array.dtype.kind != "O":
        return {"string" if array.dtype.kind in "US" else "number"}
    return {"None" if v is None else "string" if isinstance(v, str) else "number" for v in array.ravel().tolist()}


def check_one_label_kind(kinds: dict[str, set[str]], advice: str) -> None:
    """Raise unless the labels named in ``kinds`` (name -> :func:`label_kinds`) are all strings or all
    numbers; the message lists each one's kinds, then ``advice``."""
    if len(set().union(*kinds.values())) > 1:
        found = ", ".join(f"{name} holds {' and '.join(sorted(k))}" for name, k in kinds.items())
        raise InvalidArgumentError(f"mix of label kinds: {found}; {advice}")


def number_in(name: str, value, low: float = -math.inf, high: float = math.inf, *,
              open_low: bool = False, open_high: bool = False) -> float:
    """``value`` as a float, or an InvalidArgumentError unless it is a finite real number between ``low``
    and ``high`` (an end excluded when ``open_low`` / ``open_high``)."""
    ok = isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value)
    if ok:
        ok = (low < value if open_low else low <= value) and (value < high if open_high else value <= high)
    if not ok:
        left = "(" if open_low or low == -math.inf else "["
        right = ")" if open_high or high == math.inf else "]"
        raise InvalidArgumentError(f"{name} must be a number in {left}{low:g}, {high:g}{right}, got {value!r}")
    return float(value)
