"""``Ensemble``: one module that merges several models' outputs (or several checkpoints')."""

from __future__ import annotations

import torch
from torch import nn

from kagglekit._checks import positive_weights
from kagglekit.errors import InvalidArgumentError
from kagglekit.tta.merge import Merger


class Ensemble(nn.Module):
    """Run every member on the same input and merge the outputs with ``merge`` (see ``Merger``).

    ``models`` holds ``nn.Module`` objects and/or paths of checkpoints written by
    ``kagglekit.models.save_checkpoint`` (loaded once, on CPU, in eval mode). ``weights`` are positive
    per-member weights (default equal). Members run one after another; memory holds one member's
    output plus the running merge. Members may themselves be ``TTA`` modules.
    """

    def __init__(self, models, weights=None, merge: str = "mean", outputs: str = "logits"):
        super().__init__()
        from kagglekit.models import as_module

        members = [as_module(m, what="Ensemble members", callables=False) for m in models]
        if not members:
            raise InvalidArgumentError("Ensemble needs at least one model or checkpoint path")
        self.members = nn.ModuleList(members)
        weights = positive_weights(weights, len(members), "Ensemble")
        Merger(merge, outputs).check_weights(weights)  # validate now rather than at the first forward
        self.weights, self.merge, self.outputs = weights, merge, outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        merger = Merger(self.merge, self.outputs)
        for model, w in zip(self.members, self.weights):
            merger.add(model(x), w)
        return merger.result()
