"""A fit's optimiser, learning-rate schedule and frozen parameters, from timm's factories.

The schedule counts optimiser steps: timm's ``create_scheduler_v2`` is built with one "epoch" per step,
so that warm-up, cosine, step or poly decay are timm's own, per step, whatever the epoch length.
"""

from __future__ import annotations

from torch import nn

from kagglekit.errors import InvalidArgumentError

__all__ = ["freeze_parameters", "make_optimizer", "make_scheduler", "set_lr"]


def make_optimizer(model: nn.Module, name: str, lr: float, weight_decay: float, momentum: float, layer_decay):
    """timm's ``create_optimizer_v2`` (no weight decay on biases and norms; ``layer_decay``: timm's
    layer-wise learning-rate decay, for timm models). timm's ``"sgd"`` is Nesterov's, which needs
    momentum: ``"sgd"`` with ``momentum = 0`` is plain SGD here."""
    from timm.optim import create_optimizer_v2

    if layer_decay is not None and not hasattr(model, "group_matcher"):
        raise InvalidArgumentError(f"layer_decay needs a timm model (it groups the layers by timm's group_matcher); a "
                                   f"{type(model).__name__} has none: drop layer_decay")
    name = "momentum" if name == "sgd" and momentum == 0 else name
    kwargs = {"momentum": momentum} if name in ("sgd", "nesterov", "momentum") else {}
    if layer_decay is not None:
        kwargs["layer_decay"] = layer_decay
    try:
        return create_optimizer_v2(model, opt=name, lr=lr, weight_decay=weight_decay, **kwargs)
    except (ValueError, AssertionError, AttributeError, TypeError) as exc:
        raise InvalidArgumentError(f"optimizer {name!r} cannot be built: {exc}; names are timm's "
                                   "(adamw, sgd, momentum, adam, lamb, ...)") from None


def make_scheduler(optimizer, name: str | None, steps: int, warmup: int, min_lr: float, extra: dict | None):
    """timm's scheduler ``name`` over ``steps`` optimiser steps, the first ``warmup`` a linear warm-up from
    timm's ``warmup_lr`` (1e-5 unless ``extra`` says); None: a constant rate. ``extra``: more of
    ``create_scheduler_v2``'s arguments (``decay_epochs``, ``decay_rate``, ``warmup_lr``: in steps here).
    Each parameter group's ``lr_scale`` (``layer_decay``'s) scales its rate, with or without a schedule."""
    if name is None:
        for group in optimizer.param_groups:  # timm's schedulers apply lr_scale at each step; a constant rate once here
            group["lr"] *= group.get("lr_scale", 1.0)
        return None
    from timm.scheduler import create_scheduler_v2

    try:
        scheduler, _ = create_scheduler_v2(optimizer, sched=name, num_epochs=steps, warmup_epochs=warmup, min_lr=min_lr,
                                           **(extra or {}))
    except (ValueError, AssertionError, TypeError) as exc:
        raise InvalidArgumentError(f"scheduler {name!r} cannot be built: {exc}; names are timm's (cosine, step, "
                                   "multistep, poly, tanh) or None for a constant rate") from None
    if scheduler is None:
        raise InvalidArgumentError(f"scheduler {name!r} is not one of timm's (cosine, step, multistep, poly, tanh)")
    return scheduler


def set_lr(scheduler, step: int) -> None:
    """Set the learning rate of optimiser step ``step`` (0-based) from ``scheduler`` (None: unchanged)."""
    if scheduler is not None:
        scheduler.step(step)


def freeze_parameters(model: nn.Module, freeze) -> list[nn.Parameter]:
    """Turn off the gradient of the parameters ``freeze`` names and return them: ``"body"`` (all but a
    timm model's classifier; an smp model's encoder) or a list of parameter-name prefixes
    (``["encoder", "decoder.blocks.0"]``). None freezes nothing."""
    if freeze is None:
        return []
    named = dict(model.named_parameters())
    if freeze == "body":
        names = _body_names(model, named)
    else:
        prefixes = [freeze] if isinstance(freeze, str) else list(freeze)
        names = [n for n in named if any(n == p or n.startswith(p + ".") for p in prefixes)]
        unmatched = [p for p in prefixes if not any(n == p or n.startswith(p + ".") for n in named)]
        if unmatched:
            tops = sorted({n.split(".")[0] for n in named})
            raise InvalidArgumentError(f"freeze: {unmatched} name no parameter of the model; its top-level modules are {tops}")
    frozen = [named[n] for n in names]
    for p in frozen:
        p.requires_grad_(False)
    return frozen


def _body_names(model: nn.Module, named: dict) -> list[str]:
    if hasattr(model, "get_classifier"):  # timm
        head = {id(p) for p in model.get_classifier().parameters()}
        return [n for n, p in named.items() if id(p) not in head]
    if hasattr(model, "encoder"):  # segmentation-models-pytorch
        return [n for n in named if n.startswith("encoder.")]
    raise InvalidArgumentError("freeze = 'body' knows timm models (all but get_classifier()) and smp models (the "
                               f"encoder); for a {type(model).__name__}, list the parameter prefixes to freeze")
