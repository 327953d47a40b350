"""Batch-level soft F-beta loss, kagglekit's own.

smp's TverskyLoss with alpha = 1 / (1 + beta^2) and beta' = beta^2 / (1 + beta^2) is the same ratio per class,
but it scores a class without positives 0 where F-beta is 0 (a loss of 1), clamps the denominator instead of
adding eps, and has no micro average over the classes; the formula is short, so it is written here.
"""

from __future__ import annotations

import torch

from kagglekit._checks import check_beta, number_in, one_of
from kagglekit.losses._reduction import check_reduction, reduce
from kagglekit.losses._targets import binary_targets, check_ignore_index


class SoftFBetaLoss(torch.nn.Module):
    """1 - soft F-beta over the whole batch, from sigmoid probabilities p and targets y:
    tp = sum p y, fp = sum p (1 - y), fn = sum (1 - p) y, F = (1 + b^2) tp / ((1 + b^2) tp + b^2 fn + fp + eps).

    ``loss(logits, targets)``: float logits (N,) or (N, C, ...) with the classes on axis 1 ((N, 1, H, W) for a
    binary mask); targets of the same shape, values in [0, 1], or ``ignore_index`` for an element left out of
    the sums. ``average``: "macro" gives one F per class (sums over the batch and the pixels), "micro" one F
    over every element. A class with no positive in the batch has F = 0: a loss of 1 and no gradient (pair it
    with BCE, as Vesuvius' BCE + F0.5 did). ``reduction``: "none" gives (C,) for "macro" ((), for (N,) logits)
    and () for "micro", "sum", or "mean" over the classes.
    """

    per_item = False  # "none" gives one value per class, over the whole batch

    def __init__(self, beta: float = 1.0, average: str = "macro", eps: float = 1e-7,
                 ignore_index: int | None = None, reduction: str = "mean"):
        super().__init__()
        self.beta = check_beta(beta)
        self.average = one_of("average", average, ("macro", "micro"))
        self.eps = number_in("eps", eps, 0, open_low=True)
        self.ignore_index = check_ignore_index(ignore_index)
        self.reduction = check_reduction(reduction)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets, kept = binary_targets("SoftFBetaLoss", logits, targets, self.ignore_index)
        probs = torch.sigmoid(logits)
        if kept is not None:
            probs = probs * kept  # targets are 0 there already: the element adds to no sum
        dims = [d for d in range(logits.ndim) if d != 1 or self.average == "micro"]
        tp = (probs * targets).sum(dims)
        fp = (probs * (1 - targets)).sum(dims)
        fn = ((1 - probs) * targets).sum(dims)
        b2 = self.beta ** 2
        fbeta = (1 + b2) * tp / ((1 + b2) * tp + b2 * fn + fp + self.eps)
        return reduce(1 - fbeta, self.reduction)
