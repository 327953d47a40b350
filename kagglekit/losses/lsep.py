"""LSEP, the log-sum-exp pairwise ranking loss for multi-label classification, kagglekit's own: none of
torch, torchvision, timm or smp has it."""

from __future__ import annotations

import torch

from kagglekit.errors import ShapeError
from kagglekit.losses._reduction import check_reduction, reduce
from kagglekit.losses._targets import binary_targets


class LSEPLoss(torch.nn.Module):
    """LSEP (Li et al. 2017): per sample, log(1 + sum over positive i and negative j of exp(s_j - s_i)),
    which is small when every positive label's logit s_i is well above every negative one's s_j.

    ``loss(logits, targets)``: float logits (N, C); targets of the same shape, exactly 0 or 1. A sample with
    no positive or no negative label has no pair: it contributes 0 (and still counts in the mean). Holds an
    (N, C, C) tensor of pairs. ``reduction``: "none" gives (N,), "sum", or "mean" over the samples.
    """

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        self.reduction = check_reduction(reduction)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets, _ = binary_targets("LSEPLoss", logits, targets, hard=True)
        if logits.ndim != 2:
            raise ShapeError(f"LSEPLoss takes (N, C) logits (one row of class scores per sample), got shape "
                             f"{tuple(logits.shape)}")
        positive = targets.bool()
        pairs = positive.unsqueeze(2) & ~positive.unsqueeze(1)  # [n, i, j]: i positive, j negative
        margins = (logits.unsqueeze(1) - logits.unsqueeze(2)).masked_fill(~pairs, -torch.inf)  # s_j - s_i
        one = margins.new_zeros(len(logits), 1)  # log(1 + sum exp(m)) = logsumexp over [0, m...]
        return reduce(torch.logsumexp(torch.cat([one, margins.flatten(1)], dim=1), dim=1), self.reduction)
