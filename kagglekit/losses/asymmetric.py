"""Asymmetric loss (ASL) for multi-label classification."""

from __future__ import annotations

import torch
from timm.loss import AsymmetricLossMultiLabel

from kagglekit._checks import number_in
from kagglekit.losses._reduction import check_reduction, reduce
from kagglekit.losses._targets import binary_targets


class AsymmetricLoss(torch.nn.Module):
    """Asymmetric loss (Ridnik et al. 2021; timm's AsymmetricLossMultiLabel), one value per element.

    ``loss(logits, targets)``: float logits (N, C) (any shape works: the loss is per element); targets of the
    same shape, values in [0, 1]. ``gamma_neg`` / ``gamma_pos`` >= 0: focusing powers of the negative and
    positive terms; ``clip`` in [0, 1): probability margin shifted off the negatives (0 for none); ``eps``: the
    smallest probability under a log. ``reduction``: "none" (logits' shape), "sum" (the paper's), or "mean".
    """

    def __init__(self, gamma_neg: float = 4.0, gamma_pos: float = 1.0, clip: float = 0.05, eps: float = 1e-8,
                 reduction: str = "mean"):
        super().__init__()
        self.asl = AsymmetricLossMultiLabel(gamma_neg=number_in("gamma_neg", gamma_neg, 0),
                                            gamma_pos=number_in("gamma_pos", gamma_pos, 0),
                                            clip=number_in("clip", clip, 0, 1, open_high=True),
                                            eps=number_in("eps", eps, 0, 1, open_low=True))
        self.reduction = check_reduction(reduction)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets, _ = binary_targets("AsymmetricLoss", logits, targets)
        # timm's module returns one sum over its input (older releases, 0.9 and early 1.0, take no reduction);
        # mapped over single elements it gives each element's loss on every timm release kagglekit supports
        loss = torch.vmap(self.asl)(logits.reshape(-1, 1), targets.reshape(-1, 1))
        return reduce(loss.reshape(logits.shape), self.reduction)
