"""The second-level file classify's ``[stack]`` applies to the models' first-level probabilities: a stacker
(``fit_stacker(...).save(path)``, kind ``"stacker"``) or a blend, dispatched on the file's ``kind``.

A blend file is JSON ``{"format": 1, "kind": "blend", "mode": "mean" | "logit_mean" | "gmean" | "rank",
"weights": [one per model], "models": [one name per model], ...}`` (other keys are kept for its
reader), applied with :func:`kagglekit.thresholds.blend`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from kagglekit.thresholds.fitted_blends import FIT_MODES, blend_kept
from kagglekit.thresholds.stacking import StackFileError, Stacker, check_format, read_json, stacker_from

__all__ = ["BlendFile", "read_stack_file"]


@dataclass(frozen=True)
class BlendFile:
    """A blend file's mode, weights (one per model) and model names."""

    mode: str
    weights: tuple[float, ...]
    models: tuple[str, ...]

    @property
    def n_models(self) -> int:
        return len(self.weights)

    def predict(self, tables) -> np.ndarray:
        """The (N, C) float64 blend of the M (N, C) tables (those of weight 0 left out)."""
        return blend_kept(tables, self.weights, self.mode)


def _blend_from(data: dict, path) -> BlendFile:
    check_format(data, path)
    mode, models, weights = data.get("mode"), data.get("models"), data.get("weights")
    if mode not in FIT_MODES:
        raise StackFileError(f"blend file {path}: mode must be one of {list(FIT_MODES)}, got {mode!r}")
    count = len(models) if isinstance(models, list) else len(weights) if isinstance(weights, list) else -1
    try:
        weights = [float(w) for w in weights]
        if len(weights) != count or not all(math.isfinite(w) and w >= 0 for w in weights) or not sum(weights) > 0:
            raise ValueError
    except (ValueError, TypeError):
        raise StackFileError(f"blend file {path}: weights must be numbers >= 0 (not all 0), one per entry of models "
                             f"({models!r}), got {data.get('weights')!r}") from None
    return BlendFile(mode, tuple(weights), tuple(map(str, models or [f"model{k}" for k in range(count)])))


def read_stack_file(path) -> Stacker | BlendFile:
    """The stacker or blend saved at ``path``; a StackFileError naming the file when it is neither."""
    data = read_json(path, "stack file")
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind == "blend":
        return _blend_from(data, path)
    if kind == "stacker":
        return stacker_from(data, path)
    raise StackFileError(f"stack file {path} has kind {kind!r}; [stack] file takes a stacker (fit_stacker(...).save) "
                         "or a blend file (kind 'blend')")
