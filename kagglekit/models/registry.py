"""The registry of kagglekit's own architectures, created as ``create("kagglekit/<name>", ...)``."""

from __future__ import annotations

from typing import Callable

from kagglekit.errors import InvalidArgumentError

_BUILDERS: dict[str, Callable] = {}


def register_model(name: str, builder: Callable | None = None):
    """Register ``builder(**kwargs) -> nn.Module`` under ``kagglekit/<name>``; usable as a decorator.

    A checkpoint of a registered model can only be reloaded in a process where the registration has
    run: kagglekit's own models are registered when ``kagglekit.models`` is imported.
    """
    def add(fn):
        if name in _BUILDERS and _BUILDERS[name] is not fn:
            raise InvalidArgumentError(f"a model named kagglekit/{name} is already registered; choose another name")
        _BUILDERS[name] = fn
        return fn

    return add if builder is None else add(builder)


def get_builder(name: str) -> Callable:
    """The builder registered under ``name`` (without the ``kagglekit/`` prefix)."""
    if name not in _BUILDERS:
        raise InvalidArgumentError(f"unknown model kagglekit/{name}; registered: {list_models()}")
    return _BUILDERS[name]


def list_models() -> list[str]:
    """Names of the registered kagglekit models, e.g. ``['kagglekit/chowder', ...]``."""
    return sorted(f"kagglekit/{n}" for n in _BUILDERS)
