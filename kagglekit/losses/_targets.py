"""Checks of a loss's inputs: float logits, and targets that fit them (same shape and values in [0, 1],
or class indices), each failure a KagglekitError saying what was wrong and what to pass instead."""

from __future__ import annotations

import torch

from kagglekit.errors import InvalidArgumentError, ShapeError

SEGMENTATION_MODES = ("binary", "multiclass", "multilabel")


def check_ignore_index(ignore_index):
    """``ignore_index`` if it is None or an int, else an InvalidArgumentError."""
    if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
        raise InvalidArgumentError(f"ignore_index must be an int (a target value to leave out) or None, "
                                   f"got {ignore_index!r}")
    return ignore_index


def float_logits(name: str, logits) -> None:
    """Raise unless ``logits`` is a float tensor."""
    if not (isinstance(logits, torch.Tensor) and logits.is_floating_point()):
        got = f"dtype {logits.dtype}" if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise InvalidArgumentError(f"{name} takes a float tensor of logits (the model's raw outputs, before "
                                   f"sigmoid or softmax), got {got}")


def binary_targets(name: str, logits, targets, ignore_index=None, hard: bool = False):
    """``(targets, kept)``: ``targets`` (logits' shape, any real or bool dtype, values in [0, 1], exactly 0 or 1
    when ``hard``, or ``ignore_index``) in logits' dtype with left-out elements set to 0, and the bool mask of
    the elements kept (None without ``ignore_index``)."""
    float_logits(name, logits)
    targets = torch.as_tensor(targets, device=logits.device)
    if targets.shape != logits.shape:
        raise ShapeError(f"{name}: targets of shape {tuple(targets.shape)} do not match logits of shape "
                         f"{tuple(logits.shape)}; pass one target per logit (a (N, H, W) mask for (N, 1, H, W) "
                         "logits needs targets.unsqueeze(1))")
    kept = None if ignore_index is None else targets != ignore_index  # before the cast, which may round it
    values = targets.to(logits.dtype)
    fits = (values == 0) | (values == 1) if hard else (values >= 0) & (values <= 1)  # NaN fits neither
    bad = ~fits if kept is None else ~fits & kept
    if bad.any():
        allowed = "0 or 1 (hard labels)" if hard else "in [0, 1] (labels or probabilities)"
        ignored = "" if ignore_index is None else f", or ignore_index={ignore_index}"
        raise InvalidArgumentError(
            f"{name} targets must be {allowed}{ignored}; found values such as {values[bad][:5].tolist()}. "
            + ("Threshold soft labels first." if hard else
               "Class indices need a class-index loss (\"ce\", or mode=\"multiclass\") or a one-hot "
               "(torch.nn.functional.one_hot).")
        )
    return (values if kept is None else values.masked_fill(~kept, 0)), kept


def class_targets(name: str, logits, targets, ignore_index=None):
    """``targets`` as torch.long after checking them against (N, C, *) ``logits``: shape (N, *) (logits'
    without the class axis 1), integer class indices in [0, C) or ``ignore_index``."""
    float_logits(name, logits)
    targets = torch.as_tensor(targets, device=logits.device)
    if logits.ndim < 2:
        raise ShapeError(f"{name}: logits must be (N, C, ...) with the classes on axis 1, got shape "
                         f"{tuple(logits.shape)}")
    expected = logits.shape[:1] + logits.shape[2:]
    if targets.shape != expected:
        raise ShapeError(f"{name}: class-index targets must have shape {tuple(expected)} (the logits' shape "
                         f"{tuple(logits.shape)} without the class axis 1), got {tuple(targets.shape)}")
    if targets.is_floating_point() or targets.is_complex() or targets.dtype == torch.bool:
        raise InvalidArgumentError(f"{name} takes class indices as an integer tensor, got dtype {targets.dtype}; "
                                   "pass targets.long() (or per-class 0/1 masks with mode=\"multilabel\")")
    classes = logits.shape[1]
    bad = (targets < 0) | (targets >= classes)
    if ignore_index is not None:
        bad &= targets != ignore_index
    if bad.any():
        ignored = "" if ignore_index is None else f" or ignore_index={ignore_index}"
        raise InvalidArgumentError(f"{name} class indices must lie in [0, {classes}){ignored} for {classes} "
                                   f"classes of logits; found {targets[bad][:5].tolist()}")
    return targets.long()


def segmentation_targets(name: str, mode: str, logits, targets, ignore_index=None, hard: bool = False):
    """``targets`` checked for a segmentation loss of ``mode`` (:data:`SEGMENTATION_MODES`): "binary" takes
    (N, 1, H, W) logits, "multilabel" (N, C, H, W), both with targets of the same shape (:func:`binary_targets`,
    ``hard`` passed on), returned as given: ignored values left in place for the library underneath;
    "multiclass" takes class indices (:func:`class_targets`, returned as long)."""
    if mode == "multiclass":
        return class_targets(name, logits, targets, ignore_index)
    float_logits(name, logits)
    if mode == "binary" and (logits.ndim < 2 or logits.shape[1] != 1):
        raise ShapeError(f"{name} mode=\"binary\" takes (N, 1, H, W) logits, got shape {tuple(logits.shape)}; "
                         "for C channels pass mode=\"multilabel\" (independent masks) or \"multiclass\" "
                         "(one class per pixel)")
    binary_targets(name, logits, targets, ignore_index, hard)
    return torch.as_tensor(targets, device=logits.device)
