"""Small argument checks shared by the modules; each raises a KagglekitError subclass."""

from __future__ import annotations

import math

from kagglekit.errors import InvalidArgumentError


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
