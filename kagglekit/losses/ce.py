"""torch's cross-entropy with its inputs checked first."""

from __future__ import annotations

import torch

from kagglekit._checks import number_in
from kagglekit.losses._reduction import check_reduction
from kagglekit.losses._targets import binary_targets, check_ignore_index, class_targets


class CrossEntropyLoss(torch.nn.CrossEntropyLoss):
    """torch's CrossEntropyLoss, its arguments and inputs checked with kagglekit's errors.

    ``loss(logits, targets)``: float logits (N, C, ...) (softmax over axis 1); targets (N, ...) integer class
    indices in [0, C) or ``ignore_index``, or class probabilities of the logits' shape. ``weight``: (C,) class
    weights; ``label_smoothing`` in [0, 1]; ``reduction``: "none" gives (N, ...), "sum", or "mean" (torch's:
    weighted by the kept targets' class weights).
    """

    def __init__(self, weight=None, ignore_index: int = -100, reduction: str = "mean", label_smoothing: float = 0.0):
        super().__init__(weight=None if weight is None else torch.as_tensor(weight, dtype=torch.float),
                         ignore_index=check_ignore_index(ignore_index), reduction=check_reduction(reduction),
                         label_smoothing=number_in("label_smoothing", label_smoothing, 0, 1))

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if torch.as_tensor(targets).shape == logits.shape:
            targets, _ = binary_targets("CrossEntropyLoss", logits, targets)
        else:
            targets = class_targets("CrossEntropyLoss", logits, targets, self.ignore_index)
        return super().forward(logits, targets)
