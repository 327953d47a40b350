"""Merging the outputs of several TTA views or ensemble members, streamed one output at a time.

Each mode maps outputs into a working space, takes a weighted mean there and maps the mean back, so
the merged result lives in the same space as the inputs (thresholds tuned without TTA still apply,
and identical inputs merge to themselves). ``outputs`` says what the model returns:

- ``"logits"`` (any real value) or ``"probs"`` (values in [0, 1]).

Modes:

- ``mean``: arithmetic mean of the outputs as they are.
- ``max``: element-wise maximum (weights are not allowed).
- ``logit_mean``: mean in logit space; for probabilities ``sigmoid(mean(logit(p)))`` with p clipped
  to [1e-7, 1 - 1e-7] in float64; for logits the same as ``mean``.
- ``gmean``: geometric mean of the probabilities, in log space. For probabilities
  ``exp(mean(log p))``; for logits the probabilities are ``sigmoid(x)`` element-wise and the result is
  returned as the logit of their geometric mean, computed in float64 from ``logsigmoid`` (never NaN;
  +inf only when every input is above ~700).
- ``tsharpen``: signed power mean ``g(mean(g(x)))`` with ``g(x) = sign(x)|x|^t`` (t = 0.5) mapped back
  with the inverse power. Unlike ttach (``mean(x**t)``, NaN for negative logits and not mapped back),
  it is defined for every real input and returns values on the input scale.

A :class:`Merger` holds one running sum (or maximum) the size of one output, in float32 (float64 for
float64 outputs, and always for ``gmean``); the result has the outputs' dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kagglekit._checks import one_of, positive_weights
from kagglekit.errors import InvalidArgumentError

MODES = ("mean", "max", "logit_mean", "gmean", "tsharpen")
OUTPUTS = ("logits", "probs")
_EPS = 1e-7


def _signed_power(x: torch.Tensor, power: float) -> torch.Tensor:
    return torch.sign(x) * torch.abs(x).pow(power)


class Merger:
    """Streaming weighted merge: call :meth:`add` once per view/model output, then :meth:`result`."""

    def __init__(self, mode: str = "mean", outputs: str = "logits", temperature: float = 0.5):
        self.mode = one_of("merge mode", mode, MODES)
        self.outputs = one_of("outputs", outputs, OUTPUTS)
        if not 0 < temperature:
            raise InvalidArgumentError(f"tsharpen temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self._acc = None
        self._total = 0.0
        self._dtype = None

    def _check_probs(self, y: torch.Tensor) -> None:
        if self.outputs == "probs" and y.numel() and (y.min() < 0 or y.max() > 1):
            raise InvalidArgumentError(
                f"outputs='probs' but the model returned values in [{y.min().item():.3g}, {y.max().item():.3g}]; "
                "pass outputs='logits' for raw scores, or apply sigmoid/softmax in the model"
            )

    def _forward(self, y: torch.Tensor) -> torch.Tensor:
        mode, probs = self.mode, self.outputs == "probs"
        work = torch.promote_types(y.dtype, torch.float32)  # float64 outputs are merged in float64
        if mode == "logit_mean" and probs:
            # clip in float64: float32 rounds 1 - 1e-7 to 1 - 1.19e-7, so logit(1) != -logit(0)
            return torch.logit(y.double(), eps=_EPS).to(work)
        if mode == "gmean":
            y = y.double()
            return torch.log(y) if probs else F.logsigmoid(y)
        if mode == "tsharpen":
            return _signed_power(y.to(work), self.temperature)
        return y.to(work)

    def _backward(self, m: torch.Tensor) -> torch.Tensor:
        mode, probs = self.mode, self.outputs == "probs"
        if mode == "logit_mean" and probs:
            return torch.sigmoid(m)
        if mode == "gmean":
            # log p -> logit p = log p - log(1 - p), with log(1 - p) = log(-expm1(log p)) for accuracy near p = 1
            return torch.exp(m) if probs else m - torch.log(-torch.expm1(m))
        if mode == "tsharpen":
            return _signed_power(m, 1.0 / self.temperature)
        return m

    def check_weights(self, weights) -> None:
        """Raise unless this mode takes ``weights`` (``max`` takes none: only weights of 1)."""
        if self.mode == "max" and any(w != 1.0 for w in weights):
            raise InvalidArgumentError(f"merge='max' does not take weights, got {list(weights)}; drop them or use "
                                       "merge='mean', 'gmean' or 'tsharpen'")

    def add(self, y: torch.Tensor, weight: float = 1.0) -> None:
        """Fold one output (any shape, the same for every call) into the running merge."""
        if self._acc is not None and y.shape != self._acc.shape:
            raise InvalidArgumentError(f"cannot merge outputs of shapes {tuple(self._acc.shape)} and {tuple(y.shape)}")
        if weight <= 0:
            raise InvalidArgumentError(f"merge weights must be > 0, got {weight}")
        self._check_probs(y)
        self._dtype = y.dtype if y.is_floating_point() else torch.float32
        if self.mode == "max":
            self.check_weights([weight])
            self._acc = y.clone() if self._acc is None else torch.maximum(self._acc, y)
            return
        z = self._forward(y)
        z = z * weight if weight != 1.0 else z
        self._acc = z.clone() if self._acc is None else self._acc.add_(z)
        self._total += weight

    def result(self) -> torch.Tensor:
        """The merged output, in the input's dtype and space."""
        if self._acc is None:
            raise InvalidArgumentError("nothing to merge: add() was never called")
        if self.mode == "max":
            return self._acc
        return self._backward(self._acc / self._total).to(self._dtype)


def merge(outputs_list, mode: str = "mean", outputs: str = "logits", weights=None) -> torch.Tensor:
    """Merge a sequence of same-shaped tensors with :class:`Merger`; ``weights`` default to 1 each."""
    outputs_list = list(outputs_list)
    weights = positive_weights(weights, len(outputs_list), "merge")
    merger = Merger(mode, outputs)
    for y, w in zip(outputs_list, weights):
        merger.add(y, w)
    return merger.result()
