"""The models' side of ``slides`` (:mod:`kagglekit.pipeline.slides`): the backbone, the MIL heads as the log of
their mean softmax, probed on a zero bag, and the per-slide predictor."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from kagglekit.pipeline.sections import PipelineConfigError

__all__ = ["MeanOfHeads", "load_backbone", "slide_models", "slide_predictor"]

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


def load_backbone(slides):
    """The backbone module of ``[slides]`` (eval mode) and the name its bags carry."""
    from kagglekit.mil import backbone_name
    from kagglekit.models import create, load_checkpoint

    try:
        if slides.weights is not None:
            backbone = create(slides.backbone, num_classes=0, weights=slides.weights).eval()
        else:
            backbone = load_checkpoint(slides.backbone)
    except Exception as exc:  # noqa: BLE001 - without its backbone no slide can be predicted: one clear error
        raise PipelineConfigError(f"slides.backbone: {slides.backbone} cannot be built: {type(exc).__name__}: {exc}") from exc
    return backbone, backbone_name(backbone)


def _stain(slides):
    if slides.stain_method is None:
        return None
    from kagglekit.augment.stain import MacenkoNormalizer, ReinhardNormalizer
    from kagglekit.io.decoded import decode_image

    reference = decode_image(slides.stain_reference)[:, :, :3]
    return {"macenko": MacenkoNormalizer, "reinhard": ReinhardNormalizer}[slides.stain_method]().fit(reference)


def slide_models(cfg, loaded, report):
    """(backbone, its name, the kept heads as :class:`MeanOfHeads`, the stain normaliser): the backbone's
    feature size from one zero tile, every head probed on a zero bag of that size (a failing one skipped),
    heads of another backbone refused."""
    from kagglekit.pipeline.ensemble import probe_models

    slides = cfg.slides
    backbone, name = load_backbone(slides)
    with torch.inference_mode():
        dim = int(backbone(torch.zeros(1, 3, slides.tile, slides.tile)).shape[-1])
    for m in loaded:
        trained_on = (getattr(m.model, "kagglekit_metadata", None) or {}).get("backbone")
        if trained_on and trained_on != name:
            raise PipelineConfigError(f"models: {m.path} was trained on bags of {trained_on!r}, but slides.backbone gives "
                                      f"{name!r}: features of another backbone mean nothing to it; use the backbone the "
                                      "bags were extracted with")
        m.model = MeanOfHeads(m.model).eval()
    kept = probe_models(loaded, report=report, probe=torch.zeros(1, PROBE_TILES, dim))
    return backbone, name, kept, _stain(slides)


def slide_predictor(bags: _Bags, backbone, name, heads, weights, temperature: float, degrader, store):
    """``predict(ids, paths)`` for :func:`~kagglekit.pipeline.loop.run_items`, one slide per unit: the bag,
    the first ``degrader.models`` heads' probabilities averaged by weight, the temperature applied, and
    the row handed to ``store(ids, probabilities (1, C))``."""
    from kagglekit.mil.extract import NoTissueError

    device = bags.device
    heads = [h.to(device) for h in heads]

    def predict(ids: list[str], paths: list) -> tuple[dict, str]:
        (slide_id,), (path,) = ids, paths
        try:
            bag = bags(backbone, path, slide_id, name)
        except NoTissueError as exc:
            return {slide_id: f"no tissue: {exc}"}, ""
        x = torch.from_numpy(bag.features.astype(np.float32))[None].to(device)
        used = heads[: degrader.models]
        with torch.inference_mode():
            p = sum(w * h(x).exp() for h, w in zip(used, weights)) / sum(weights[: len(used)])
            if temperature != 1.0:
                p = torch.softmax(p.log() / temperature, dim=-1)
        p = p.float().cpu().numpy()
        if not np.isfinite(p).all():
            return {slide_id: "NonFiniteOutputError: the heads returned NaN or infinite scores"}, ""
        store([slide_id], p)
        return {}, f"{len(bag)} tiles ({bag.selection['kind']}) x {len(used)} model(s)"

    return predict
