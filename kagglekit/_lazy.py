"""Lazy package exports: a name is imported from its submodule on first use, so importing the
package itself stays cheap (no torch, albumentations, polars ... until a name that needs them).

Old import paths, kept for one release: :func:`lazy_exports` takes ``moved`` (a name that moved to
another module answers from there, with a DeprecationWarning naming the new place), and
:func:`moved_module` turns a whole old module into its new one (``import kagglekit.kaggle.wheels``
gives ``kagglekit.delivery.wheels`` itself, after the warning)."""

from __future__ import annotations

import importlib
import os
import sys
import warnings


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _caller_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first frame outside importlib and kagglekit, so
    that Python's default filters (DeprecationWarning shown when raised in ``__main__``) see the user's code."""
    frame, level = sys._getframe(1), 1
    while frame is not None and (frame.f_code.co_filename.startswith("<frozen importlib")
                                 or os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE)):
        frame, level = frame.f_back, level + 1
    return level


def warn_deprecated(message: str) -> None:
    """A DeprecationWarning with ``message``, pointed at the user's line (not at an import machinery frame)."""
    warnings.warn(message, DeprecationWarning, stacklevel=_caller_stacklevel())


def warn_moved(old: str, new: str) -> None:
    """A DeprecationWarning: ``old`` is now ``new``, and the old path goes in the next release."""
    warn_deprecated(f"{old} moved to {new}; import it from there ({old} keeps working until the next release)")


def lazy_exports(package: str, where: dict[str, str], moved: dict[str, str] | None = None):
    """``(__getattr__, __dir__)`` for ``package`` whose public ``name`` lives in submodule ``where[name]``.

    ``moved``: ``{old name: "new.module"}`` or ``{old name: "new.module:new_name"}``: names that left the
    package; they still resolve, with a :func:`warn_moved` DeprecationWarning, and are not listed."""
    moved = moved or {}

    def __getattr__(name: str):
        if name in where:
            return getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        if name in moved:
            module, _, new_name = moved[name].partition(":")
            warn_moved(f"{package}.{name}", f"{module}.{new_name or name}")
            return getattr(importlib.import_module(module), new_name or name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__():
        return sorted(where)

    return __getattr__, __dir__


def moved_module(old: str, new: str) -> None:
    """Make the module being imported as ``old`` the module ``new`` (one object: what patches one patches
    the other), with a :func:`warn_moved` DeprecationWarning. Call it as the only statement of the old file."""
    warn_moved(old, new)
    sys.modules[old] = importlib.import_module(new)
