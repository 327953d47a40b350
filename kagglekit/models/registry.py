"""The registry of kagglekit's own architectures, created as ``create("kagglekit/<name>", ...)``."""

from __future__ import annotations

from typing import Callable

from kagglekit.errors import InvalidArgumentError

_BUILDERS: dict[str, Callable] = {}
_ALIASES: dict[str, str] = {}  # an old name -> the name it is now (checkpoints saved under the old one still load)


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


def register_alias(old: str, new: str) -> None:
    """Let the retired name ``kagglekit/<old>`` build ``kagglekit/<new>``: :func:`create` warns
    (DeprecationWarning), :func:`~kagglekit.models.load_checkpoint` rebuilds a checkpoint saved under the old
    name silently and under the new one."""
    if new not in _BUILDERS:
        raise InvalidArgumentError(f"register kagglekit/{new} before an alias to it")
    _ALIASES[old] = new


def canonical_name(name: str, warn: bool = False) -> str:
    """``name`` (without the ``kagglekit/`` prefix) as it is registered now: a retired alias gives its new
    name (with a DeprecationWarning when ``warn``), any other name itself."""
    if name in _ALIASES:
        if warn:
            from kagglekit._lazy import warn_deprecated

            warn_deprecated(f"the model name kagglekit/{name} is now kagglekit/{_ALIASES[name]}; the old name "
                            "builds it until the next release (checkpoints saved under it keep loading)")
        return _ALIASES[name]
    return name


def get_builder(name: str) -> Callable:
    """The builder registered under ``name`` (without the ``kagglekit/`` prefix; a retired alias: its new name's)."""
    name = canonical_name(name)
    if name not in _BUILDERS:
        raise InvalidArgumentError(f"unknown model kagglekit/{name}; registered: {list_models()}")
    return _BUILDERS[name]


def list_models() -> list[str]:
    """Names of the registered kagglekit models, e.g. ``['kagglekit/chowder', ...]``."""
    return sorted(f"kagglekit/{n}" for n in _BUILDERS)
