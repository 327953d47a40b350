"""Lazy package exports: a name is imported from its submodule on first use, so importing the
package itself stays cheap (no torch, albumentations, polars ... until a name that needs them).

Old import paths, kept for one release: :func:`moved_names` (and ``lazy_exports(..., moved=)``) make a name
that moved to another module answer from there, with a DeprecationWarning naming the new place, and
:func:`moved_module` turns a whole old module into its new one (``import kagglekit.kaggle.wheels``
gives ``kagglekit.delivery.wheels`` itself, after the warning)."""

from __future__ import annotations

import importlib
import os
import sys
import warnings


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
_IMPORT_MODULE = os.path.join("importlib", "__init__.py")  # importlib.import_module: the caller is one further


def _caller() -> tuple[int, object]:
    """``(stacklevel, frame)`` of the first frame outside importlib and kagglekit: a warning pointed there lets
    Python's default filters (DeprecationWarning shown when raised in ``__main__``) see the user's code."""
    frame, level = sys._getframe(1), 1
    while frame is not None:
        name = frame.f_code.co_filename
        if "importlib" in name and "_bootstrap" in name:
            frame = frame.f_back  # warnings.warn skips these frames itself: not counted
            continue
        if not (os.path.abspath(name).startswith(_PACKAGE) or name.endswith(_IMPORT_MODULE)):
            break
        frame, level = frame.f_back, level + 1
    return level, frame


_last = None  # (message, caller frame, line) of the last warning


def warn_deprecated(message: str) -> None:
    """A DeprecationWarning with ``message``, pointed at the user's line (not at an import machinery frame);
    once per statement (``from package import old_name`` looks the name up twice)."""
    global _last
    level, frame = _caller()
    key = (message, id(frame), getattr(frame, "f_lineno", None))
    if key == _last:
        return
    _last = key
    warnings.warn(message, DeprecationWarning, stacklevel=level)


def warn_moved(old: str, new: str) -> None:
    """A DeprecationWarning: ``old`` is now ``new``, and the old path goes in the next release."""
    warn_deprecated(f"{old} moved to {new}; import it from there ({old} keeps working until the next release)")


def moved_names(module: str, moved: dict[str, str]):
    """A module ``__getattr__`` for names that left ``module``: ``{old name: "new.module"}`` or
    ``{old name: "new.module:new_name"}``; each resolves from its new place with a :func:`warn_moved`
    DeprecationWarning, any other name is an AttributeError."""

    def __getattr__(name: str):
        if name in moved:
            target, _, new_name = moved[name].partition(":")
            warn_moved(f"{module}.{name}", f"{target}.{new_name or name}")
            return getattr(importlib.import_module(target), new_name or name)
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


def lazy_exports(package: str, where: dict[str, str], moved: dict[str, str] | None = None):
    """``(__getattr__, __dir__)`` for ``package`` whose public ``name`` lives in submodule ``where[name]``;
    ``moved``: names that left the package, as :func:`moved_names` takes them (they are not listed)."""
    old = moved_names(package, moved or {})

    def __getattr__(name: str):
        if name in where:
            return getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        return old(name)

    def __dir__():
        return sorted(where)

    return __getattr__, __dir__


def moved_module(old: str, new: str) -> None:
    """Make the module being imported as ``old`` the module ``new`` (one object: what patches one patches
    the other), with a :func:`warn_moved` DeprecationWarning. Call it as the only statement of the old file."""
    warn_moved(old, new)
    sys.modules[old] = importlib.import_module(new)
