"""Binary cross-entropy on logits with label smoothing and ignored elements."""

from __future__ import annotations

import torch
from segmentation_models_pytorch.losses import SoftBCEWithLogitsLoss as _SmpSoftBCE

from kagglekit._checks import number_in
from kagglekit.losses._reduction import check_reduction, reduce
from kagglekit.losses._targets import binary_targets, check_ignore_index


class SoftBCEWithLogitsLoss(torch.nn.Module):
    """Binary cross-entropy on logits (smp's SoftBCEWithLogitsLoss), one value per element.

    ``loss(logits, targets)``: float logits of any shape; targets of the same shape, any real dtype, values
    in [0, 1], or ``ignore_index`` for an element left out. ``label_smoothing`` e in [0, 1) moves each target
    towards 0.5: y -> y (1 - e) + e / 2 (torch's CrossEntropyLoss rule for two classes). ``pos_weight``: weight
    of the positive term, a number or a tensor that broadcasts against the logits (one per class on the
    last axis). ``reduction``: "none" (left-out elements 0), "sum", or "mean" over the kept elements (smp's
    own mean divides by every element, left-out ones too).
    """

    def __init__(self, label_smoothing: float = 0.0, ignore_index: int | None = None, pos_weight=None,
                 reduction: str = "mean"):
        super().__init__()
        self.label_smoothing = number_in("label_smoothing", label_smoothing, 0, 1, open_high=True)
        self.ignore_index = check_ignore_index(ignore_index)
        self.reduction = check_reduction(reduction)
        pos_weight = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float)
        self.bce = _SmpSoftBCE(ignore_index=None, reduction="none", smooth_factor=self.label_smoothing / 2 or None,
                               pos_weight=pos_weight)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets, kept = binary_targets("SoftBCEWithLogitsLoss", logits, targets, self.ignore_index)
        return reduce(self.bce(logits, targets), self.reduction, kept)
