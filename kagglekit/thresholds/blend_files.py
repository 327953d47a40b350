"""Blend files: fitted blend weights as a small JSON file that the classify pipeline reads.

    {"format": 1, "kind": "blend", "mode": "mean", "weights": [0.7, 0.3], "models": ["a", "b"] or null,
     "method": "hill_climb", "in_sample": 0.91, "nested": 0.89}
"""

from __future__ import annotations

import json
from pathlib import Path

from kagglekit._atomic import atomic_open
from kagglekit.errors import ConfigError
from kagglekit.thresholds._json_files import read_json_file
from kagglekit.thresholds.fitted_blends import BlendFit

__all__ = ["BlendFileError", "read_blend", "write_blend"]

_FORMAT = 1
_KEYS = ("mode", "weights", "models", "method", "in_sample", "nested")


class BlendFileError(ConfigError):
    """A blend file is missing, not JSON, or holds values a fitted blend cannot have."""


def write_blend(fit: BlendFit, path) -> Path:
    """Write ``fit`` as JSON at ``path`` (atomically: an existing file is the old one or the new one)."""
    path = Path(path)
    data = {"format": _FORMAT, "kind": "blend", "mode": fit.mode, "weights": [float(w) for w in fit.weights],
            "models": None if fit.models is None else list(fit.models), "method": fit.method,
            "in_sample": float(fit.in_sample), "nested": float(fit.nested)}
    with atomic_open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1)
    return path


def read_blend(path) -> BlendFit:
    """The :class:`BlendFit` in a file written by :func:`write_blend` (``nested_per_fold`` and ``single`` are ());
    a BlendFileError naming the file otherwise."""
    return read_json_file(path, BlendFileError, "blend", "write_blend", _FORMAT, _blend)


def _blend(data: dict) -> BlendFit:
    if data.get("kind") != "blend":
        raise ValueError('not an object with "kind": "blend"')
    missing = [k for k in _KEYS if k not in data]
    if missing:
        raise ValueError(f"keys {missing} are missing")
    models = data["models"]
    return BlendFit(data["weights"], data["method"], data["mode"], in_sample=data["in_sample"], nested=data["nested"],
                    models=None if models is None else tuple(models))
