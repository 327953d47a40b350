"""Soft Dice loss for segmentation masks."""

from __future__ import annotations

import torch
from segmentation_models_pytorch.losses import DiceLoss as _SmpDiceLoss

from kagglekit._checks import number_in, one_of
from kagglekit.losses._reduction import check_reduction, reduce
from kagglekit.losses._targets import SEGMENTATION_MODES, check_ignore_index, segmentation_targets


class DiceLoss(_SmpDiceLoss):
    """Soft Dice loss (smp's DiceLoss), one value per class, each over the whole batch.

    ``loss(logits, targets)``: ``mode`` "binary": float logits (N, 1, H, W) and targets of the same shape in
    [0, 1]; "multilabel": logits (N, C, H, W) (sigmoid per channel), targets of the same shape;
    "multiclass": logits (N, C, H, W) (softmax over C), targets (N, H, W) integer class indices. Pixels equal to
    ``ignore_index`` are left out. A class with no positive pixel in the batch scores 0 (smp's rule).
    ``smooth``, ``eps``: smp's; ``log_loss``: -log(dice) instead of 1 - dice. ``reduction``: "none" gives
    (C,) ((1,) for binary), "sum", or "mean" over the classes (smp's loss).
    """

    per_item = False  # "none" gives one value per class, over the whole batch

    def __init__(self, mode: str = "binary", smooth: float = 0.0, log_loss: bool = False, eps: float = 1e-7,
                 ignore_index: int | None = None, reduction: str = "mean"):
        super().__init__(one_of("mode", mode, SEGMENTATION_MODES), smooth=number_in("smooth", smooth, 0),
                         log_loss=bool(log_loss), eps=number_in("eps", eps, 0, open_low=True),
                         ignore_index=check_ignore_index(ignore_index))
        self.reduction = check_reduction(reduction)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return super().forward(logits, segmentation_targets("DiceLoss", self.mode, logits, targets, self.ignore_index))

    def aggregate_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """smp's hook for its per-class losses (C,): kagglekit's reduction."""
        return reduce(loss, self.reduction)
