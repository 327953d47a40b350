"""Slides in ``classify``: each input slide becomes a bag of tile features, and MIL heads classify the bag.

The backbone is built once from ``[slides]``; the ``[[models]]`` are MIL heads (a ``HeadEnsemble`` per
fold from :func:`kagglekit.mil.train_heads`, or a single head), each wrapped so that it returns the log of
its heads' mean softmax, probed once on a zero bag, and refused when the heads were trained on bags of
another backbone (their checkpoint says which). Per slide (one unit of the run loop): the bag, then the
models' probabilities averaged with their weights, then the decision's temperature on their logarithm.
A slide without tissue, or one that cannot be read, keeps its fallback row with the reason.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from kagglekit.pipeline.sections import PipelineConfigError

__all__ = ["MeanOfHeads", "check_backbone", "load_backbone", "slide_models", "slide_predictor"]

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


def _expected_name(slides) -> str:
    """The name bags of the ``[slides]`` backbone carry (:func:`kagglekit.mil.backbone_name`), from the files alone."""
    from kagglekit.mil.extract import model_name
    from kagglekit.models import checkpoint_info

    if slides.weights is not None:
        return model_name(slides.backbone, slides.weights)
    return model_name(checkpoint_info(slides.backbone)["name"], slides.backbone)


def check_backbone(cfg) -> str:
    """For ``classify --check``: the backbone's file (checkpoint header and checksum, or the weights file),
    the stain reference, and that every head was trained on bags of this backbone; builds no model."""
    from kagglekit.models import checkpoint_info, verify_checkpoint

    slides = cfg.slides
    if slides.weights is not None:
        if not slides.weights.is_file():
            raise PipelineConfigError(f"slides.weights: {slides.weights} not found")
    else:
        verify_checkpoint(slides.backbone)
    if slides.stain_reference is not None and not slides.stain_reference.is_file():
        raise PipelineConfigError(f"slides.stain.reference: {slides.stain_reference} not found")
    name = _expected_name(slides)
    for m in cfg.models:
        trained_on = (checkpoint_info(m.path).get("metadata") or {}).get("backbone") if m.path.is_file() else None
        if trained_on and trained_on != name:
            raise PipelineConfigError(f"models: {m.path} was trained on bags of {trained_on!r}, not {name!r}")
    return f"{name}; every head's bags came from it"


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


def slide_predictor(cfg, backbone, name, heads, weights, stain, temperature: float, degrader, store, device):
    """``predict(ids, paths)`` for :func:`~kagglekit.pipeline.loop.run_items`, one slide per unit: the bag,
    the first ``degrader.models`` heads' probabilities averaged by weight, the temperature applied, and
    the row handed to ``store(ids, probabilities (1, C))``."""
    from kagglekit.mil import extract_bag
    from kagglekit.mil.extract import NoTissueError

    s = cfg.slides
    options = dict(tile=s.tile, scale=s.scale, threshold=s.threshold, min_tissue=s.min_tissue, top_k=s.top_k, kind=s.kind,
                   tma_max_side=s.tma_max_side, swap_background=s.swap_background, stain=stain,
                   normalize=s.normalize, batch_size=s.batch_size, num_workers=cfg.num_workers, device=device,
                   amp=cfg.amp)
    heads = [h.to(device) for h in heads]

    def predict(ids: list[str], paths: list) -> tuple[dict, str]:
        (slide_id,), (path,) = ids, paths
        try:
            bag = extract_bag(backbone, path, slide=slide_id, name=name, **options)
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
