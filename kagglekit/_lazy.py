"""Lazy package exports: a name is imported from its submodule on first use, so importing the
package itself stays cheap (no torch, albumentations, polars ... until a name that needs them)."""

from __future__ import annotations

import importlib


def lazy_exports(package: str, where: dict[str, str]):
    """``(__getattr__, __dir__)`` for ``package`` whose public ``name`` lives in submodule ``where[name]``."""

    def __getattr__(name: str):
        if name in where:
            return getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(where)

    return __getattr__, __dir__
