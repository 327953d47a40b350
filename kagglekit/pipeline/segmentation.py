"""The segmentation pipeline: sample submission in, ``submission.csv`` of RLE masks out.

It composes the library on the shared run loop (:mod:`kagglekit.pipeline.loop`: fallback first, budget,
one fallback row per failure, report): models come from ``load_checkpoint`` and are probed once on a
zero tile, merged by ``Ensemble`` and ``TTA`` (or ``ViewCycle``); each image's channels are matched to
the models' (``match_channels``); ``iter_strips`` runs them over the image (tissue tiles only, if
configured); the mask is thresholded strip by strip and encoded by ``rle_encode``; non-finite logits
make the image a fallback row.

Models must return logits (N, 1, h, w) for NCHW float input; a probability threshold ``t`` is applied
as ``logit >= log(t / (1 - t))``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kagglekit.errors import KagglekitError
from kagglekit.kaggle.budget import Budget
from kagglekit.pipeline.config import PipelineConfigError, SegmentConfig, read_threshold_file
from kagglekit.pipeline.degrade import Degrader
from kagglekit.pipeline.ensemble import first_channels, input_channels_of, load_models, probe_models
from kagglekit.pipeline.loop import RunReport, match_inputs, note_missing, row_store, run_items, start_run
from kagglekit.pipeline.workers import run_on_workers, shard_budget, splits

__all__ = ["NonFiniteOutputError", "SegmentReport", "segment"]

SKIPPED = float("nan")
"""Logit of pixels in tiles that are not run (no tissue): NaN is background under any threshold
(every comparison with it is False) and is left out of a percentile threshold."""


@dataclass
class SegmentReport(RunReport):
    """A :class:`~kagglekit.pipeline.loop.RunReport` with the mask column, its RLE order, the probability
    threshold used per image, and the ids in which no tile had tissue (predicted empty)."""

    mask_column: str = "rle"
    order: str = "C"
    thresholds: dict[str, float] = field(default_factory=dict)
    no_tissue: list[str] = field(default_factory=list)


class NonFiniteOutputError(KagglekitError, ValueError):
    """A model returned NaN or infinite logits; the image keeps its fallback row."""


class _CountNonFinite(nn.Module):
    """``model`` counting its calls, the output pixels it returned and how many of them were NaN or infinite."""

    def __init__(self, model):
        super().__init__()
        self.model, self.calls, self.pixels, self.bad = model, 0, 0, 0

    def forward(self, x):
        y = self.model(x)
        self.calls += 1
        self.pixels += y.numel()
        self.bad += int(torch.isfinite(y).logical_not_().sum())
        return y


def _logit(p: float) -> float:
    if p <= 0:
        return -math.inf
    if p >= 1:
        return math.inf
    return math.log(p) - math.log1p(-p)


def _segment_models(cfg: SegmentConfig, image_channels: int, report: SegmentReport):
    """(models, weights, input channels or None) of the checkpoints that load and run a zero tile; models
    that do not return one logit map (N, 1, h, w) are refused (see :mod:`kagglekit.pipeline.ensemble`)."""
    kept = probe_models(load_models(cfg.models, report), (cfg.tiling.tile, cfg.tiling.tile), image_channels, report)
    for m in kept:
        if len(m.out_shape) != 4:
            raise PipelineConfigError(f"models: {m.path} returns {m.out_shape} for a tile of shape "
                                      f"(1, {m.in_channels or image_channels}, {cfg.tiling.tile}, {cfg.tiling.tile}); "
                                      "segment needs logit maps (N, 1, h, w): is it a classifier?")
        if m.out_shape[1] != 1:
            raise PipelineConfigError(f"models: {m.path.name} returns {m.out_shape[1]} channels; segment thresholds one "
                                      "logit map per image (N, 1, h, w)")
    return [m.model for m in kept], [m.weight for m in kept], input_channels_of(kept)


def _compose(models, weights, cfg: SegmentConfig, n_views: int, n_models: int):
    """(model, tta hook) for ``sliding_window``: the first ``n_models`` merged, then the first ``n_views`` views."""
    from kagglekit.tta import TTA, Ensemble, ViewCycle

    model = models[0] if n_models == 1 else Ensemble(models[:n_models], weights[:n_models], merge="mean")
    views = cfg.tta.views
    if cfg.tta.mode == "cycle":
        return model, ViewCycle(views) if len(views) > 1 else None
    if n_views > 1:
        model = TTA(model, views[:n_views], merge=cfg.tta.merge, batched=False)
    return model, None


def _open(path: Path, cfg: SegmentConfig):
    from kagglekit.io import open_image, open_volume

    if cfg.inputs.kind == "volume":
        return open_volume(path, z=slice(*cfg.inputs.z) if cfg.inputs.z else None)
    return open_image(path)


def _predict(model, tta, source, cfg: SegmentConfig, threshold: float | None, skip, device) -> tuple[np.ndarray, float]:
    """(H, W) bool mask of ``source`` and the probability threshold used (``threshold`` None: percentile).

    Tiles run only where the low-resolution ``skip`` mask (or None: everywhere) has tissue. Holds the
    mask (1 byte per pixel), for a percentile threshold float16 logits, which pixels ran and a copy of
    their logits (5 bytes per pixel in all), and one tile row of float32 logits.
    """
    from kagglekit.infer import iter_strips
    from kagglekit.thresholds import percentile_threshold

    t = cfg.tiling
    run = {"tile": t.tile, "stride": t.stride, "batch_size": t.batch_size, "window": t.window, "margin": t.margin,
           "device": device, "normalize": cfg.normalize, "skip_mask": skip, "min_fraction": t.min_tissue,
           "fill_value": SKIPPED, "out_channels": 1, "tta": tta, "progress": False}
    strips = iter_strips(model, source, **run)
    H, W = source.shape[:2]
    if threshold is not None:
        cut = _logit(threshold)
        mask = np.empty((H, W), bool)
        for row, strip in strips:
            np.greater_equal(strip[0], cut, out=mask[row : row + strip.shape[1]])
        return mask, threshold
    logits = np.empty((H, W), np.float16)
    for row, strip in strips:
        logits[row : row + strip.shape[1]] = strip[0]
    ran = ~np.isnan(logits)  # the quantile is of the predicted pixels, not of skipped background
    if not ran.any():
        return np.zeros((H, W), bool), 1.0
    cut = percentile_threshold(logits, cfg.threshold.q, mask=ran)
    return logits >= cut, 0.5 * (1.0 + math.tanh(cut / 2))  # the sigmoid without exp's overflow


def _threshold(cfg: SegmentConfig) -> float | None:
    """The probability threshold, or None for a per-image percentile."""
    if cfg.threshold.kind == "file":
        return read_threshold_file(cfg.threshold.file)
    return cfg.threshold.value if cfg.threshold.kind == "fixed" else None


def _areas(pending, cfg: SegmentConfig) -> dict[str, int]:
    """Pixels per image: the unit of work the budget measures (0 for an unreadable file)."""
    areas = {}
    for i, path in pending:
        try:
            areas[i] = math.prod(_open(path, cfg).shape[:2])
        except KagglekitError:
            areas[i] = 0  # reported when its turn comes
    return areas


def segment(config, input_dir=None, output_dir=None, *, base_dir=None, budget=None, shard=None) -> SegmentReport:
    """Predict a mask for every image of the sample submission and write ``submission.csv``; return the report.

    ``config``: TOML path, dict or :class:`SegmentConfig` (see :mod:`kagglekit.pipeline.config`).
    ``input_dir``: the competition folder (default :func:`kagglekit.kaggle.env.input_dir`);
    ``output_dir``: where the submission goes (default :func:`kagglekit.kaggle.env.working_dir`).
    ``budget``: a :class:`kagglekit.kaggle.Budget` (default: from ``[budget]``, starting now).
    ``workers`` in the config splits the images over worker processes (one per GPU with ``"gpus"``; see
    :mod:`kagglekit.pipeline.workers`); ``shard`` is what such a worker is given (not for callers).

    The sample submission is read first and its rows, with the mask column set to ``output.fallback``,
    are written before anything else can fail: from then on the file is valid whatever happens. A
    mistake in the configuration, an unreadable threshold file, a device this machine lacks or an
    ensemble of mismatched models then raise (the fallback file stays); a model that cannot load or
    run is skipped; an image that cannot be predicted keeps its fallback row, with the reason in the
    report. Only an unreadable sample submission or an unwritable output folder leave no file, and
    both raise naming the path. See :mod:`kagglekit.pipeline` for the whole catalogue. Holds the
    models, one image's source, its mask and the RLE strings.
    """
    start = time.monotonic()
    run = start_run(config, input_dir, output_dir, base_dir, "segment", shard)
    cfg = run.config
    report = SegmentReport(run.guard.path, run.id_column, device=str(run.device),
                           mask_column=cfg.output.columns(run.reference)[1], order=cfg.output.order)
    try:
        threshold = _threshold(cfg)  # an unreadable threshold file fails here, before any model loads
        budget = shard_budget(shard) if shard is not None else budget or Budget(cfg.budget.seconds, cfg.budget.reserve)
        if splits(run, shard):  # workers = "gpus" or N: the ids go to worker processes, the rows come back here
            return run_on_workers("segment", run, config, base_dir, budget, report)
        ids = run.ids
        store = row_store(run.guard, [report.mask_column])
        found, where = find_inputs(cfg, run.input_dir, ids, report, run.sample_ids)
        report.inputs = found
        note_missing(report, ids, found, where)
        pending = [(i, found[i]) for i in ids if i in found]
        models, weights, in_channels = [], [], None
        if pending:
            models, weights, in_channels = _segment_models(cfg, first_channels(pending, lambda p: _open(p, cfg).shape[2]), report)
        if not models:
            if pending:
                report.note("no usable model: every image keeps the fallback row", logging.ERROR)
            report.fallback.update({i: "no usable model" for i, _ in pending})
            return report
        degrader = Degrader(len(cfg.tta.views), len(models), views_cost=cfg.tta.mode == "merge")
        predict = _image_predictor(cfg, models, weights, in_channels, threshold, degrader, report, store)
        areas = _areas(pending, cfg)
        run_items([([i], path) for i, path in pending], [areas[i] for i, _ in pending], degrader, predict, budget, report)
        if report.no_tissue and len(report.no_tissue) == len(report.predicted):
            report.note("no predicted image had a tile with tissue: every mask is empty; check tiling.tissue_only, "
                        "tiling.min_tissue and tiling.thumbnail against the images' background")
        report.views, report.models = degrader.views, degrader.models
        return report
    finally:
        report.seconds = time.monotonic() - start


def _image_predictor(cfg: SegmentConfig, models, weights, in_channels, threshold, degrader: Degrader,
                     report: SegmentReport, store):
    """``predict([id], path)`` for :func:`~kagglekit.pipeline.loop.run_items`: one image through the current
    setting of ``degrader``, its RLE handed to ``store`` (:func:`~kagglekit.pipeline.loop.row_store`);
    non-finite logits raise NonFiniteOutputError."""
    from kagglekit.io import match_channels
    from kagglekit.kaggle.rle import rle_encode
    from kagglekit.tiling import tissue_mask

    def predict(ids: list[str], path: Path) -> tuple[dict, str]:
        (i,) = ids
        source = _open(path, cfg)
        if cfg.inputs.kind == "image":
            matched = match_channels(source, in_channels)
            if matched is not source:
                report.note_once(f"inputs adapted to the models' {in_channels} channels: {matched.adaptation}")
            source = matched
        model, tta = _compose(models, weights, cfg, degrader.views, degrader.models)
        counted = _CountNonFinite(model)
        skip = tissue_mask(source.thumbnail(cfg.tiling.thumbnail)) if cfg.tiling.tissue_only else None
        mask, used = _predict(counted, tta, source, cfg, threshold, skip, report.device)
        if counted.bad:
            raise NonFiniteOutputError(f"the model returned {counted.bad} NaN or infinite logits out of {counted.pixels} "
                                       "tile output pixels; check the checkpoint (diverged training, float16 overflow)")
        store(ids, {report.mask_column: [rle_encode(mask, cfg.output.order)]})
        report.thresholds[i] = used
        if skip is not None and counted.calls == 0:
            report.no_tissue.append(i)
            report.note(f"{i}: no tile has tissue (tissue mask {'empty' if not skip.any() else 'below tiling.min_tissue'}); "
                        "its mask is empty", logging.INFO)
        return {}, f"threshold {used:.4g}, {degrader.views} view(s) x {degrader.models} model(s)"

    return predict


def checked_files(cfg: SegmentConfig) -> list[tuple[str, object]]:
    """For :func:`kagglekit.pipeline.checking.check`: (what, read it) of the files besides checkpoints."""
    return [("threshold file", lambda: f"{cfg.threshold.file}: {_threshold(cfg)}")] if cfg.threshold.kind == "file" else []


def find_inputs(cfg: SegmentConfig, input_dir: Path, ids: list[str], report, sample=None) -> tuple[dict, str]:
    """(input per id, where they were looked for); ``sample`` as :func:`~kagglekit.pipeline.loop.match_inputs`."""
    return match_inputs(input_dir, ids, cfg.inputs.glob, cfg.inputs.id_from, report, sample), f"matching {cfg.inputs.glob!r} under {input_dir}"
