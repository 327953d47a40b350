"""Lovász loss, a convex surrogate of the Jaccard index (IoU), for segmentation masks."""

from __future__ import annotations

import torch
from segmentation_models_pytorch.losses import LovaszLoss as _SmpLovaszLoss

from kagglekit._checks import one_of
from kagglekit.losses._reduction import check_reduction, reduce
from kagglekit.losses._targets import SEGMENTATION_MODES, check_ignore_index, segmentation_targets


class LovaszLoss(torch.nn.Module):
    """Lovász loss (Berman et al. 2018; smp's LovaszLoss): one value per image (``per_image``) or one for the batch.

    ``loss(logits, targets)``: ``mode`` "binary": float logits (N, 1, H, W) and 0/1 targets of the same shape
    (the Lovász hinge on logits); "multilabel": (N, C, H, W) and targets of the same shape, all channels as one
    binary mask (smp's rule); "multiclass": logits (N, C, H, W), targets (N, H, W) integer class indices (the
    Lovász-softmax over the classes present). Pixels equal to ``ignore_index`` are left out; an image with
    every pixel left out gives 0. Computed in float32 whatever the logits' dtype (smp's rule).
    ``reduction``: "none" gives (N,) per image or () for the batch, "sum", or "mean" (smp's ``per_image`` average).
    """

    def __init__(self, mode: str = "binary", per_image: bool = False, ignore_index: int | None = None,
                 reduction: str = "mean"):
        super().__init__()
        self.mode = one_of("mode", mode, SEGMENTATION_MODES)
        self.per_image = bool(per_image)
        self.ignore_index = check_ignore_index(ignore_index)
        self.reduction = check_reduction(reduction)
        self.lovasz = _SmpLovaszLoss(mode, per_image=False, ignore_index=ignore_index)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = segmentation_targets("LovaszLoss", self.mode, logits, targets, self.ignore_index, hard=True)
        if self.per_image:
            return reduce(torch.stack([self._one(x[None], y[None]) for x, y in zip(logits, targets)]), self.reduction)
        return reduce(self._one(logits, targets), self.reduction)

    def _one(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """smp's loss of ``logits`` as one mask, a float32 0-d tensor; 0 (tied to logits) when every pixel is left
        out, where smp's multiclass loss gives an empty tensor."""
        logits = logits.float()  # smp's Jaccard gradient is float32, and its torch.dot takes one dtype
        loss = self.lovasz(logits, targets)
        return loss if isinstance(loss, torch.Tensor) and loss.ndim == 0 else logits.sum() * 0
