"""How ``classify`` runs its models over chunks of images (the kind itself is :mod:`kagglekit.pipeline.classification`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from kagglekit.pipeline.classify_config import stack_inputs
from kagglekit.pipeline.degrade import Degrader
from kagglekit.pipeline.ensemble import first_channels, input_channels_of, load_models, probe_models

__all__ = ["CHUNK_BATCHES", "activation_of", "chunk_predictor", "load_models_for"]

CHUNK_BATCHES = 4  # batches per unit of the run loop: the rows are committed once per chunk


class _Tempered(nn.Module):
    """``model``'s logits divided by a fitted temperature."""

    def __init__(self, model, temperature: float):
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, x):
        return self.model(x) / self.temperature


class _SideBySide(nn.Module):
    """Every model's (B, C) output side by side, (B, M*C): the models of a stack, each merged over views alone."""

    def __init__(self, models):
        super().__init__()
        self.models = nn.ModuleList(models)

    def forward(self, x):
        return torch.cat([m(x) for m in self.models], dim=1)


def _per_input(activation: str, inputs: list[list[int]]):
    """``activation`` applied to each model's block of a (B, M*C) output, then the blocks of each stack input
    (a variant's folds) averaged: (B, len(inputs)*C)."""

    def activate(y):
        blocks = y.float().unflatten(1, (sum(map(len, inputs)), -1))
        p = torch.softmax(blocks, dim=2) if activation == "softmax" else torch.sigmoid(blocks)
        return torch.stack([p[:, members].mean(dim=1) for members in inputs], dim=1).flatten(1)

    return activate


def _stacked(store_rows, stack, n_inputs: int):
    """``store_rows`` of the stack's (b, C) output for the (b, n_inputs*C) probabilities of its inputs."""
    return lambda ids, p: store_rows(ids, stack.predict(list(p.reshape(len(p), n_inputs, -1).transpose(1, 0, 2))))


def load_models_for(run, pending, report) -> list:
    """The checkpoints that load and run a zero input of the configured size, with the channels of the
    first input that reads (3 when none does: each fails in turn)."""
    from kagglekit.io import load_image

    cfg = run.config
    spatial = cfg.preprocess.size or (224, 224)
    channels = first_channels(pending, lambda item: load_image(item, (8, 8), "resize").shape[2]) or 3
    return probe_models(load_models(cfg.models, report), spatial, channels, report)


def activation_of(cfg, decision) -> str:
    """The activation of the models' outputs: ``[decision] activation``, else softmax for one label per row
    (argmax, or one class's probability by name) and sigmoid for the others."""
    one_of_many = decision is not None and decision.kind == "argmax" or cfg.output.value is not None
    return cfg.decision.activation or ("softmax" if one_of_many else "sigmoid")


def chunk_predictor(run, kept, decision, store_rows, report, stack=None):
    """(degrader, predict, images per unit, "image") for the kept models, each divided by the decision's
    temperature; with ``stack`` (a stacker or blend file's) its output of the models' probabilities."""
    cfg = run.config
    temperature = decision.temperature if decision is not None else 1.0
    models = [m.model if temperature == 1.0 else _Tempered(m.model, temperature) for m in kept]
    weights = [m.weight for m in kept]
    activation = activation_of(cfg, decision)
    degrader = Degrader(len(cfg.tta.views), len(models), models_dropped=stack is None)
    if stack is not None:
        models, weights = [_SideBySide(models)], [1.0]  # one module runs the M models the degrader counts (never fewer)
        inputs = stack_inputs(cfg.models)  # every model was kept (classification._stack_fits), in [[models]] order
        activation, store_rows = _per_input(activation, inputs), _stacked(store_rows, stack, len(inputs))
    predict = _chunk_predict(cfg, models, weights, input_channels_of(kept), activation, degrader,
                             report, store_rows, run.device)
    return degrader, predict, cfg.batch_size * CHUNK_BATCHES, "image"


def _chunk_predict(cfg, models, weights, in_channels, activation, degrader: Degrader, report, store, device):
    """``predict(ids, items)`` for :func:`~kagglekit.pipeline.loop.run_items`: a chunk of images through the
    current setting of ``degrader`` (:func:`kagglekit.infer.iter_predictions`, unreadable images and
    non-finite outputs failed by id), the finite rows handed to ``store(ids, probabilities)``."""
    import threading

    from kagglekit.infer import iter_predictions
    from kagglekit.io import ArraySource, load_image, match_channels

    noting = threading.Lock()  # images are loaded on the decoding threads

    def matched(item):
        """The image at the input size with the models' channels (gray replicated, alpha dropped), noted once."""
        image = load_image(item, cfg.preprocess.size, cfg.preprocess.resize)
        source = match_channels(ArraySource(image), in_channels)
        if source.shape[2] == image.shape[2]:
            return image
        with noting:
            report.note_once(f"inputs adapted to the models' {in_channels} channels: {source.adaptation}")
        return source.read(0, 0, *image.shape[:2])

    def predict(chunk_ids: list[str], items: list) -> tuple[dict, str]:
        failed, done, outputs = {}, [], []
        for indices, out, errors in iter_predictions(
                models[: degrader.models], items, normalize=cfg.preprocess.normalize, activation=activation,
                tta=list(cfg.tta.views[: degrader.views]), merge=cfg.tta.merge, weights=weights[: degrader.models],
                batch_size=cfg.batch_size, num_workers=cfg.num_workers, device=device, amp=cfg.amp, on_error="skip",
                loader=matched, threads=cfg.threads):
            failed.update({chunk_ids[k]: f"{type(e).__name__}: {e}" for k, e in errors.items()})
            good = np.isfinite(out).all(axis=1)
            failed.update({chunk_ids[k]: "NonFiniteOutputError: the models returned NaN or infinite scores"
                           for k in indices[~good]})
            done += [chunk_ids[k] for k in indices[good]]
            outputs.append(out[good])
        if done:
            store(done, np.concatenate(outputs))
        return failed, f"{degrader.views} view(s) x {degrader.models} model(s)"

    return predict
