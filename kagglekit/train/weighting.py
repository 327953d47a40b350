"""Loss weights per item: labelled and pseudo-labelled rows in one batch, each with its source's weight.

A batch of ``(inputs, targets, weights)`` (weights (B,) float, one per item) is scored as

    loss = sum over the loss's units u of  w_item(u) * kept(u) * value(u)  /  number of units

where ``value`` is the loss with ``reduction="none"`` (one value per element, pixel or item, its first axis
the batch) and ``kept`` is 0 for a target element that is NaN (a masked pseudo-label cell: it adds
nothing to the loss or its gradient) and 1 otherwise. So each unit weighs ``w / units`` whatever else is
in the batch: with labels at 1.0 and pseudo-labels at 0.3 this is, over the data, BCE(labels) + 0.3
BCE(pseudo) summed per row (UBC's 9th place), and with every weight 1 and no NaN it is the loss's own mean.
The denominator is not the sum of the weights, which would train a batch of pseudo rows alone at full
strength.
"""

from __future__ import annotations

import copy

import torch

from kagglekit.errors import InvalidArgumentError, ShapeError

__all__ = ["per_unit_loss", "weighted_loss"]


def per_unit_loss(loss):
    """``loss`` unreduced: ``f(outputs, targets)`` -> its ``reduction="none"`` tensor (a copy of a torch or
    kagglekit loss with that reduction; a :class:`kagglekit.losses.WeightedSum` as the weighted sum of its
    parts'). InvalidArgumentError for a loss that has no such reduction or scores the batch as a whole."""
    from kagglekit.losses.combine import WeightedSum

    if isinstance(loss, WeightedSum):
        unreduced = {name: per_unit_loss(part) for name, part in loss.losses.items()}
        return lambda outputs, targets: sum(loss.weights[n] * f(outputs, targets) for n, f in unreduced.items())
    if not isinstance(getattr(loss, "reduction", None), str):
        raise InvalidArgumentError(f"weighted rows need the loss per item, and {loss!r} has no reduction='none'; "
                                   "pass a torch or kagglekit.losses loss (e.g. loss='bce'), or drop the weights")
    if not getattr(loss, "per_item", True):
        raise InvalidArgumentError(f"{type(loss).__name__} scores the batch as a whole, so it cannot weigh one row "
                                   "more than another; weight a per-item loss (bce, focal, ce) instead")
    unreduced = copy.copy(loss)
    unreduced.reduction = "none"
    return unreduced


def weighted_loss(per_unit, outputs: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The scalar loss of the module docstring. outputs: (B, ...) float; targets: as the loss takes them
    (NaN elements of a float target left out); weights: (B,) float, one per item, or one per unit of the
    loss (a CutMix'd mask's pixels); per_unit: from :func:`per_unit_loss`."""
    left_out = torch.isnan(targets) if targets.is_floating_point() else None
    if left_out is not None and not left_out.any():
        left_out = None
    values = per_unit(outputs, targets if left_out is None else targets.masked_fill(left_out, 0))
    batch = len(weights)
    if values.ndim == 0 or values.shape[0] != batch:
        raise ShapeError(f"the loss with reduction='none' gave shape {tuple(values.shape)}, not one value per item of "
                         f"the batch ({batch}); weighted rows need a per-item loss (bce, focal, ce)")
    if weights.ndim > 1 and weights.shape != values.shape:
        raise ShapeError(f"weights per element {tuple(weights.shape)} need a loss with one value per element; the loss "
                         f"gave {tuple(values.shape)}")
    w = weights.to(values.dtype).reshape(batch, *[1] * (values.ndim - 1)) if weights.ndim == 1 else weights
    if left_out is not None:
        if values.shape != targets.shape:
            raise ShapeError(f"targets with left-out (NaN) elements need a loss with one value per target element; "
                             f"the loss gave {tuple(values.shape)} for targets {tuple(targets.shape)}")
        w = w * ~left_out
    return (w * values).sum() / values.numel()
