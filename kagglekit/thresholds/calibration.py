"""Temperature scaling fitted on out-of-fold logits."""

from __future__ import annotations

import math

import numpy as np

from kagglekit.errors import InvalidArgumentError, ShapeError
from kagglekit._checks import as_binary

__all__ = ["TemperatureScaler"]


def _nll(inverse_t: float, logits: np.ndarray, y: np.ndarray, kind: str) -> float:
    z = logits * inverse_t
    if kind == "softmax":
        zmax = z.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(z - zmax).sum(axis=1)) + zmax[:, 0]
        return float((log_norm - z[np.arange(len(z)), y]).mean())
    return float((np.logaddexp(0.0, z) - y * z).mean())


class TemperatureScaler:
    """Temperature scaling (Guo et al. 2017), fitted on out-of-fold logits by minimising the NLL.

    ``fit(logits, y)``: logits (n, C) with class indices y (n,) -> softmax; or logits of any shape
    with 0/1 targets of the same shape, or (n, 1) logits with (n,) 0/1 targets -> sigmoid (binary or
    multi-label, one shared temperature).
    ``transform(logits)`` returns the calibrated probabilities (float64). The NLL is convex in 1/T;
    T is searched in [``min_t``, ``max_t``] to a relative precision of about 1e-8.
    """

    def __init__(self, min_t: float = 0.05, max_t: float = 20.0):
        if not 0 < min_t < max_t < math.inf:
            raise InvalidArgumentError(f"need 0 < min_t < max_t < inf, got {min_t!r}, {max_t!r}")
        self.min_t, self.max_t = float(min_t), float(max_t)

    def fit(self, logits, y) -> "TemperatureScaler":
        from scipy.optimize import minimize_scalar

        z = np.asarray(logits, dtype=np.float64)
        if z.size == 0 or not np.isfinite(z).all():
            raise InvalidArgumentError("logits must be a non-empty array of finite numbers")
        target = np.asarray(y)
        if z.ndim == 2 and z.shape[1] == 1 and target.shape == (len(z),):
            target = target[:, None]  # one logit column (a binary head): sigmoid, as for (n,) logits
        if z.ndim == 2 and target.shape == (len(z),):
            if target.dtype.kind not in "ui" or target.min() < 0 or target.max() >= z.shape[1]:
                raise InvalidArgumentError(f"y must hold class indices in 0..{z.shape[1] - 1} for (n, C) logits")
            self.kind_ = "softmax"
        elif target.shape == z.shape:
            target = as_binary("y", target).astype(np.float64)
            self.kind_ = "sigmoid"
        else:
            raise ShapeError(
                f"y has shape {target.shape}; pass class indices (n,) for (n, C) logits or 0/1 targets of the "
                f"logits' shape {z.shape}"
            )
        bounds = (math.log(1 / self.max_t), math.log(1 / self.min_t))
        result = minimize_scalar(
            lambda log_inv_t: _nll(math.exp(log_inv_t), z, target, self.kind_),
            bounds=bounds,
            method="bounded",
            options={"xatol": 1e-8},
        )
        self.temperature_ = math.exp(-result.x)
        self.nll_ = float(result.fun)
        return self

    def transform(self, logits) -> np.ndarray:
        if not hasattr(self, "temperature_"):
            raise InvalidArgumentError("TemperatureScaler is not fitted; call fit(logits, y) first")
        from scipy.special import expit, softmax

        z = np.asarray(logits, dtype=np.float64) / self.temperature_
        if self.kind_ == "softmax" and z.ndim != 2:
            raise ShapeError(f"fitted on (n, C) logits for softmax; pass (n, C) logits, got shape {z.shape}")
        return softmax(z, axis=1) if self.kind_ == "softmax" else expit(z)
