"""Weight averaging of checkpoints (snapshot / fold-free ensembling) and an EMA helper."""

from __future__ import annotations

import torch
from torch import nn

from kagglekit._checks import positive_weights
from kagglekit.errors import InvalidArgumentError
from kagglekit.models.checkpoint import checkpoint_info
from kagglekit.models.factory import create
from kagglekit.models.weights import WeightsMismatchError, load_weights, read_state_dict


def average_state_dicts(states, weights=None) -> dict[str, torch.Tensor]:
    """Weighted mean of same-keyed state dicts; floating tensors are averaged in float64 and cast back,
    integer buffers (e.g. BatchNorm's ``num_batches_tracked``) are taken from the first. Holds one
    float64 copy of the model on top of the inputs."""
    states = list(states)
    if not states:
        raise InvalidArgumentError("nothing to average: pass at least one state dict or checkpoint")
    weights = positive_weights(weights, len(states), "averaging")
    keys = list(states[0])
    for i, s in enumerate(states[1:], 1):
        if set(s) != set(keys) or any(s[k].shape != states[0][k].shape for k in keys):
            raise WeightsMismatchError(f"state dict {i} has other keys or shapes than state dict 0; only "
                                       "checkpoints of the same architecture can be averaged")
    total = sum(weights)
    out = {}
    for k in keys:
        first = states[0][k]
        if not first.is_floating_point():
            out[k] = first.clone()
            continue
        acc = torch.zeros(first.shape, dtype=torch.float64)
        for s, w in zip(states, weights):
            acc += s[k].double() * (w / total)
        out[k] = acc.to(first.dtype)
    return out


def average_checkpoints(paths, weights=None) -> nn.Module:
    """Build the model of kagglekit checkpoints ``paths`` (same name and kwargs) with their averaged weights."""
    paths = list(paths)
    infos = [checkpoint_info(p) for p in paths]
    configs = {(i["name"], repr(sorted(i["kwargs"].items()))) for i in infos}
    if len(configs) != 1:
        raise InvalidArgumentError(f"checkpoints to average must share one architecture; got {sorted(configs)}")
    model = create(infos[0]["name"], **infos[0]["kwargs"])
    load_weights(model, average_state_dicts([read_state_dict(p) for p in paths], weights), strict=True)
    return model


def create_ema(model: nn.Module, decay: float = 0.999, warmup: bool = False, device=None):
    """timm's ``ModelEmaV3`` over ``model`` (a deep copy; call ``ema.update(model, step)`` after each
    optimiser step, evaluate ``ema.module``). ``save_checkpoint(ema, path)`` saves the averaged model."""
    from timm.utils import ModelEmaV3

    if not 0.0 < decay < 1.0:
        raise InvalidArgumentError(f"EMA decay must be in (0, 1), got {decay}; typical values are 0.99-0.9999")
    return ModelEmaV3(model, decay=decay, use_warmup=warmup, device=device)
