"""Sigmoid focal loss for binary and multi-label logits, with ignored elements."""

from __future__ import annotations

import torch
from torchvision.ops import sigmoid_focal_loss

from kagglekit._checks import number_in
from kagglekit.losses._reduction import check_reduction, reduce
from kagglekit.losses._targets import binary_targets, check_ignore_index


class FocalLoss(torch.nn.Module):
    """Sigmoid focal loss (Lin et al. 2017), one value per element.

    ``loss(logits, targets)``: float logits of any shape, (N, C) or (N, C, H, W); targets of the same shape,
    any real dtype, values in [0, 1] (labels or soft), or ``ignore_index`` for an element left out.
    ``alpha``: weight of the positive term in [0, 1] (the negative one gets 1 - alpha), None for none;
    ``gamma`` >= 0: the focusing power. ``reduction``: "none" gives logits' shape (left-out elements 0),
    "sum", or "mean" over the kept elements.
    """

    def __init__(self, alpha: float | None = 0.25, gamma: float = 2.0, ignore_index: int | None = None,
                 reduction: str = "mean"):
        super().__init__()
        self.alpha = None if alpha is None else number_in("alpha", alpha, 0, 1)
        self.gamma = number_in("gamma", gamma, 0)
        self.ignore_index = check_ignore_index(ignore_index)
        self.reduction = check_reduction(reduction)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets, kept = binary_targets("FocalLoss", logits, targets, self.ignore_index)
        # torchvision computes each element's loss; it has no ignore_index (and smp's FocalLoss averages per
        # class, not over the kept elements), so leaving elements out and reducing are done here
        loss = sigmoid_focal_loss(logits, targets, alpha=-1 if self.alpha is None else self.alpha,
                                  gamma=self.gamma, reduction="none")
        return reduce(loss, self.reduction, kept)
