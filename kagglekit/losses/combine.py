"""A weighted sum of losses that keeps its parts for logging."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from kagglekit._checks import number_in
from kagglekit.errors import InvalidArgumentError, ShapeError


class WeightedSum(torch.nn.Module):
    """``loss(logits, targets)`` = sum of weight * part(logits, targets) over ``parts``, a mapping
    ``{name: (loss module, weight >= 0)}``; every part takes the same logits and targets and returns a scalar
    (reduction "mean" or "sum"). :attr:`last_parts` holds the last call's unweighted parts for logging.
    """

    def __init__(self, parts: Mapping[str, tuple[torch.nn.Module, float]]):
        super().__init__()
        if not isinstance(parts, Mapping) or not parts:
            raise InvalidArgumentError(f"WeightedSum takes a non-empty mapping {{name: (loss, weight)}}, got {parts!r}")
        for name, part in parts.items():
            if not (isinstance(name, str) and name and "." not in name):
                raise InvalidArgumentError(f"WeightedSum part names must be non-empty strings without '.', "
                                           f"got {name!r}")
            if not (isinstance(part, tuple) and len(part) == 2 and isinstance(part[0], torch.nn.Module)):
                raise InvalidArgumentError(f"WeightedSum part {name!r} must be a (loss module, weight) pair, "
                                           f"got {part!r}")
        self.losses = torch.nn.ModuleDict({name: loss for name, (loss, _) in parts.items()})
        self.weights = {name: number_in(f"the weight of {name!r}", weight, 0) for name, (_, weight) in parts.items()}
        self._last: dict[str, torch.Tensor] = {}

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        parts = {name: loss(logits, targets) for name, loss in self.losses.items()}
        for name, value in parts.items():
            if value.ndim != 0:
                raise ShapeError(f"WeightedSum part {name!r} returned shape {tuple(value.shape)}, not a scalar; "
                                 "build it with reduction=\"mean\" or \"sum\"")
        self._last = {name: value.detach() for name, value in parts.items()}
        return sum(self.weights[name] * value for name, value in parts.items())

    @property
    def last_parts(self) -> dict[str, float]:
        """The last call's parts, unweighted, as floats (read from the device only when asked); {} before a call."""
        return {name: float(value) for name, value in self._last.items()}
