"""Route "mil" of ``slides`` (:mod:`kagglekit.pipeline.slides`): the backbone, the MIL heads as the log of
their mean softmax, probed on a zero bag, a slide's bag through them; and the stain normaliser every route shares."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from kagglekit.pipeline.sections import PipelineConfigError

__all__ = ["MeanOfHeads", "MilModels", "load_backbone", "stain_normalizer"]

PROBE_TILES = 64  # tiles in the zero bag the heads are probed on (Chowder needs at least r)


class MeanOfHeads(nn.Module):
    """(B, N, D) bag + mask -> (B, C): the log of the mean softmax over a head's seeds (a HeadEnsemble returns
    (S, B, C) logits, a single head (B, C))."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x, mask=None):
        out = self.model(x, mask)
        out = out[None] if out.ndim == 2 else out
        return torch.log(torch.softmax(out.float(), dim=-1).mean(dim=0))


def load_backbone(settings):
    """The backbone module of a slide kind's settings (eval mode) and the name its bags carry."""
    from kagglekit.mil import backbone_name
    from kagglekit.models import create, load_checkpoint

    try:
        if settings.weights is not None:
            backbone = create(settings.backbone, num_classes=0, weights=settings.weights).eval()
        else:
            backbone = load_checkpoint(settings.backbone)
    except Exception as exc:  # noqa: BLE001 - without its backbone no slide can be predicted: one clear error
        raise PipelineConfigError(f"slides.backbone: {settings.backbone} cannot be built: {type(exc).__name__}: {exc}") from exc
    return backbone, backbone_name(backbone)


def stain_normalizer(slides):
    """The fitted stain normaliser of ``[slides.stain]`` (None without it), shared by every kind."""
    if slides.stain_method is None:
        return None
    from kagglekit.augment.stain import fitted_normalizer

    return fitted_normalizer(slides.stain_method, slides.stain_reference)


class MilModels:
    """Route "mil" of one slide kind: its backbone and the kept heads as :class:`MeanOfHeads`, the backbone's
    feature size from one zero tile, every head probed on a zero bag of that size (a failing one skipped),
    heads of another backbone refused. Called per slide: (probabilities (1, C) float32, what ran)."""

    def __init__(self, settings, loaded, report):
        from kagglekit.pipeline.ensemble import probe_models

        backbone, name = load_backbone(settings)
        with torch.inference_mode():
            dim = int(backbone(torch.zeros(1, 3, settings.tile, settings.tile)).shape[-1])
        for m in loaded:
            trained_on = (getattr(m.model, "kagglekit_metadata", None) or {}).get("backbone")
            if trained_on and trained_on != name:
                raise PipelineConfigError(f"models: {m.path} was trained on bags of {trained_on!r}, but slides.backbone gives "
                                          f"{name!r}: features of another backbone mean nothing to it; use the backbone the "
                                          "bags were extracted with")
            m.model = MeanOfHeads(m.model).eval()
        self.kept = probe_models(loaded, report=report, probe=torch.zeros(1, PROBE_TILES, dim))
        self.backbone, self.name, self.views = backbone, name, [None]  # a bag has no views

    def __call__(self, source, options: dict, degrader, settings=None) -> tuple[np.ndarray, str]:
        from kagglekit.mil import extract_bag

        bag = extract_bag(self.backbone, source, name=self.name, **options)
        device = options["device"]
        x = torch.from_numpy(bag.features.astype(np.float32))[None].to(device)
        used = self.kept[: degrader.models]
        with torch.inference_mode():
            p = sum(m.weight * m.model.to(device)(x).exp() for m in used) / sum(m.weight for m in used)
        return p.float().cpu().numpy(), f"{len(bag)} tiles ({bag.selection['kind']}) x {len(used)} model(s)"
