"""Losses by name, and weighted sums of them spelled as a config."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping

import torch

from kagglekit._checks import one_of
from kagglekit.errors import InvalidArgumentError
from kagglekit.losses.combine import WeightedSum

# name -> the class kagglekit.losses exports
LOSSES = {
    "focal": "FocalLoss", "lovasz": "LovaszLoss", "dice": "DiceLoss", "bce": "SoftBCEWithLogitsLoss",
    "asl": "AsymmetricLoss", "soft_fbeta": "SoftFBetaLoss", "lsep": "LSEPLoss", "ce": "CrossEntropyLoss",
}


def create_loss(spec, **kwargs) -> torch.nn.Module:
    """A loss from ``spec``: a name of :data:`LOSSES` built with ``kwargs`` (``create_loss("focal", gamma=2)``),
    or a mapping ``{name: weight}`` built as a :class:`WeightedSum`, each part's arguments a mapping keyed by its
    name (``create_loss({"bce": 1.0, "soft_fbeta": 0.5}, soft_fbeta={"beta": 0.5})``)."""
    if isinstance(spec, str):
        return _build(spec, kwargs)
    if not isinstance(spec, Mapping):
        raise InvalidArgumentError(f"a loss is a name ({', '.join(LOSSES)}) or a mapping {{name: weight}}, "
                                   f"got {spec!r}")
    stray = sorted(set(kwargs) - set(spec))
    if stray:
        raise InvalidArgumentError(f"arguments for {stray}, which the sum {sorted(spec)} does not hold; key each "
                                   "part's arguments by its name, e.g. create_loss({'bce': 1.0, 'soft_fbeta': 0.5}, "
                                   "soft_fbeta={'beta': 0.5})")
    for name, arguments in kwargs.items():
        if not isinstance(arguments, Mapping):
            raise InvalidArgumentError(f"the arguments of {name!r} in a sum must be a mapping, got {arguments!r}")
    return WeightedSum({name: (_build(name, kwargs.get(name, {})), weight) for name, weight in spec.items()})


def _build(name, kwargs) -> torch.nn.Module:
    """The loss ``name`` built with ``kwargs``, each checked against its constructor's arguments."""
    one_of("loss", name, LOSSES)
    loss_class = getattr(importlib.import_module("kagglekit.losses"), LOSSES[name])
    known = list(inspect.signature(loss_class).parameters)
    for key in kwargs:
        if key not in known:
            raise InvalidArgumentError(f"loss {name!r} ({loss_class.__name__}) has no argument {key!r}; "
                                       f"it takes {known}")
    return loss_class(**kwargs)
