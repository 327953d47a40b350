"""The model a job builds on each worker, named in the driver without building it."""

from __future__ import annotations

import os
from pathlib import Path

from kagglekit.errors import WeightsNotFoundError

__all__ = ["ModelRef"]


class ModelRef:
    """A model given as a checkpoint path, as a ``create`` name with a local ``weights`` file (and
    ``create_kwargs``, e.g. ``num_classes=0`` for features), or as a module / callable. ``name`` is what
    outputs record (see :func:`kagglekit.mil.backbone_name`); a plain callable needs it. Files are
    checked here, once, in the driver; :meth:`build` runs on each worker."""

    def __init__(self, model, *, weights=None, name: str | None = None, **create_kwargs):
        from kagglekit.mil.extract import backbone_name, model_name

        self.model, self.weights, self.create_kwargs = model, weights, create_kwargs
        if isinstance(model, (str, os.PathLike)) and weights is None:
            from kagglekit.models import checkpoint_info

            self.name = name or model_name(checkpoint_info(model)["name"], model)  # a missing file is named here
        elif isinstance(model, (str, os.PathLike)):
            if not Path(weights).is_file():
                raise WeightsNotFoundError(f"weights {weights} not found; pass a local file (kagglekit never downloads)")
            self.name = name or model_name(str(model), weights)
        else:
            self.name = backbone_name(model, name)

    def build(self, device=None):
        """The model in eval mode on ``device`` (None: CUDA when there is a GPU, else the CPU)."""
        from kagglekit.infer.batching import resolve_device

        if isinstance(self.model, (str, os.PathLike)):
            from kagglekit.models import create, load_checkpoint

            model = (load_checkpoint(self.model) if self.weights is None
                     else create(str(self.model), weights=self.weights, **self.create_kwargs).eval())
        else:
            model = self.model
        return model.to(resolve_device(device)) if hasattr(model, "to") else model
