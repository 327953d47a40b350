"""The reduction every kagglekit loss takes: "mean" | "sum" | "none" over the loss's units (elements,
samples, images or classes; each loss says which)."""

from __future__ import annotations

from kagglekit._checks import one_of

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction) -> str:
    """``reduction`` if it is one of :data:`REDUCTIONS`, else an InvalidArgumentError naming them."""
    return one_of("reduction", reduction, REDUCTIONS)


def reduce(loss, reduction: str, kept=None):
    """``loss`` (a float tensor of units) reduced: as is ("none"), summed, or averaged. ``kept``: a bool
    tensor of ``loss``'s shape, or None for all; units left out are 0 in "none" and count in no sum or mean
    (a mean over no unit is 0)."""
    if kept is not None:
        loss = loss.masked_fill(~kept, 0)
    if reduction == "none":
        return loss
    if reduction == "sum" or loss.ndim == 0:
        return loss.sum()
    return loss.sum() / (loss.numel() if kept is None else kept.sum().clamp_min(1))
