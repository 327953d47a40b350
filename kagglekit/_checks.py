"""Small argument checks shared by the modules; each raises a KagglekitError subclass."""

from __future__ import annotations

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
    if value not in choices:
        raise InvalidArgumentError(f"unknown {name} {value!r}; choose one of {sorted(choices)}")
    return value
