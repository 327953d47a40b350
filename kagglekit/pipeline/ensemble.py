"""The models of a pipeline run: loaded from the config's checkpoints, then probed once on a zero input
before any image, so that what cannot run is skipped or refused once, not image by image."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from kagglekit.pipeline.sections import PipelineConfigError

__all__ = ["Loaded", "Resident", "agree", "first_channels", "input_channels_of", "load_models", "probe_models"]


@dataclass
class Loaded:
    """One model of the run: its checkpoint, the module (eval mode), its weight, the input channels it
    says it takes (None: it does not say), its class names (None: none saved) and, once probed, the shape
    of its output for the probe."""

    path: Path
    model: nn.Module | None  # None while offloaded to its checkpoint (see Resident)
    weight: float
    in_channels: int | None
    classes: list[str] | None
    out_shape: tuple[int, ...] = ()


def load_models(model_configs, report) -> list[Loaded]:
    """The checkpoints that load, heaviest weight first; the others are noted in ``report`` and skipped."""
    from kagglekit.models import input_channels, load_checkpoint

    loaded = []
    for m in sorted(model_configs, key=lambda m: -m.weight):
        try:
            model = load_checkpoint(m.path)
        except Exception as exc:  # noqa: BLE001 - a model that cannot load is skipped, whatever the reason
            report.note(f"model {m.path} skipped: {type(exc).__name__}: {exc}", logging.ERROR)
            continue
        config = getattr(model, "kagglekit_config", None)
        loaded.append(Loaded(m.path, model, m.weight, input_channels(config) if config else None,
                             getattr(model, "kagglekit_classes", None)))
    return loaded


def probe_models(loaded: list[Loaded], spatial: tuple[int, int] | None = None, image_channels: int | None = None,
                 report=None, *, probe: torch.Tensor | None = None) -> list[Loaded]:
    """Run each model once on a zero input: ``probe`` when given (e.g. a zero bag), else (1, C, h, w) with
    C its own input channels, or ``image_channels`` when it does not say. A model that fails is skipped
    (noted); models that take different input channel counts, or return outputs of different channel
    counts, are refused with a PipelineConfigError. Returns the models kept, each with its ``out_shape``."""
    kept = []
    for m in loaded:
        x = probe if probe is not None else torch.zeros(1, m.in_channels or image_channels, *spatial)
        try:
            with torch.inference_mode():
                out = m.model(x)
        except Exception as exc:  # noqa: BLE001 - a model that cannot run an input is skipped like one that cannot load
            report.note(f"model {m.path} skipped: it fails on a zero input of shape {tuple(x.shape)}: "
                        f"{type(exc).__name__}: {exc}", logging.ERROR)
            continue
        m.out_shape = tuple(out.shape) if isinstance(out, torch.Tensor) else (type(out).__name__,)
        kept.append(m)
    agree(kept)
    return kept


def agree(kept: list[Loaded]) -> None:
    """Refuse models that take different input channel counts, or return different output channel counts."""
    for what, counts in (("input", {m.path: m.in_channels for m in kept if m.in_channels is not None}),
                         ("output", {m.path: m.out_shape[1] for m in kept if len(m.out_shape) > 1})):
        if len(set(counts.values())) > 1:
            listed = ", ".join(f"{p.name}: {c}" for p, c in counts.items())
            raise PipelineConfigError(f"models: the ensemble's models have different {what} channel counts ({listed}); "
                                      "every model runs on the same inputs and their outputs are averaged: use models of one kind")


def first_channels(pending, channels_of) -> int | None:
    """``channels_of(item)`` of the first of the ``(id, item)`` pairs that reads, for probing models that do
    not say what they take; None when none reads."""
    from kagglekit.errors import KagglekitError

    for _, item in pending:
        try:
            return channels_of(item)
        except KagglekitError:
            continue
    return None


def input_channels_of(kept: list[Loaded]) -> int | None:
    """The input channels the kept models take (they agree), or None when none of them says."""
    return next((m.in_channels for m in kept if m.in_channels is not None), None)


class Resident:
    """The run's models on ``device`` in turn, at most ``memory.max_resident`` of them at a time.

    ``groups(n)`` yields each group of the first ``n`` models (heaviest weight first) as (modules,
    weights), placed on the device, and takes the group off again before placing the next one: with
    ``offload = "cpu"`` it goes back to host memory, with ``"disk"`` it is dropped and read again from
    its checkpoint the next time (host memory then holds one group too). Without ``max_resident``
    every model stays on the device for the whole run (one group). ``memory.fp16`` on CUDA: weights in
    float16 (half the memory; the caller runs float16 autocast).
    """

    def __init__(self, kept: list[Loaded], memory, device):
        self.kept, self.limit, self.offload, self.device = kept, memory.max_resident, memory.offload, device
        self.half = memory.fp16 and device.type == "cuda"
        if self.grouped(len(kept)) and self.offload == "disk":
            for m in kept:
                m.model = None  # probed already; read again when its group's turn comes

    def grouped(self, n: int) -> bool:
        """Whether the first ``n`` models run in more than one group."""
        return self.limit is not None and n > self.limit

    def _place(self, m: Loaded) -> nn.Module:
        from kagglekit.models import load_checkpoint

        model = m.model if m.model is not None else load_checkpoint(m.path).eval()
        model = model.to(self.device)
        return model.half() if self.half else model

    def groups(self, n: int):
        chosen, grouped = self.kept[:n], self.grouped(n)
        size = self.limit if grouped else n
        for start in range(0, len(chosen), size):
            group = chosen[start : start + size]
            modules = [self._place(m) for m in group]
            if not grouped:  # they all fit: they stay
                for m, module in zip(group, modules):
                    m.model = module
            try:
                yield modules, [m.weight for m in group]
            finally:
                if grouped:
                    self._release(modules)

    def _release(self, modules: list[nn.Module]) -> None:
        if self.offload == "cpu":
            for module in modules:
                module.to("cpu")
        modules.clear()
        if self.offload == "disk":
            import gc

            gc.collect()  # a module's reference cycles (hooks, parametrizations) would keep its weights
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
