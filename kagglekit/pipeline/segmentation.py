"""The segmentation pipeline: sample submission in, ``submission.csv`` of RLE masks out.

It composes the library on the shared run loop (:mod:`kagglekit.pipeline.run`: fallback first, budget,
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
from kagglekit.pipeline.config import PipelineConfigError, SegmentConfig, early_output, load_config, read_threshold_file
from kagglekit.pipeline.degrade import Degrader
from kagglekit.pipeline.run import RunReport, read_sample, resolve_device, resolve_dirs, run_items, write_fallback

__all__ = ["NonFiniteOutputError", "SegmentReport", "check", "segment"]

SKIPPED = float("nan")
"""Logit of pixels in tiles that are not run (no tissue): NaN is background under any threshold
(every comparison with it is False) and is left out of a percentile threshold."""


@dataclass
class SegmentReport(RunReport):
    """A :class:`~kagglekit.pipeline.run.RunReport` with the mask column, its RLE order, the probability
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


def _load_models(cfg: SegmentConfig, report: SegmentReport) -> list[tuple[Path, nn.Module, float]]:
    """(path, model in eval mode, weight) of the checkpoints that load, heaviest weight first; the others
    are reported and skipped."""
    from kagglekit.models import load_checkpoint

    loaded = []
    for m in sorted(cfg.models, key=lambda m: -m.weight):
        try:
            loaded.append((m.path, load_checkpoint(m.path), m.weight))
        except Exception as exc:  # noqa: BLE001 - a model that cannot load is skipped, whatever the reason
            report.note(f"model {m.path} skipped: {type(exc).__name__}: {exc}", logging.ERROR)
    return loaded


def _probe_models(loaded, cfg: SegmentConfig, image_channels: int, report: SegmentReport):
    """Run each model once on a zero tile, before any image: a model that fails is skipped; models
    that take or return different channel counts, or do not return one logit map, are refused.

    Returns (models, weights, input channels or None when no model says)."""
    from kagglekit.models import input_channels

    kept, takes, returns = [], {}, {}
    for path, model, weight in loaded:
        config = getattr(model, "kagglekit_config", None)
        wanted = input_channels(config) if config else None
        probe = torch.zeros(1, wanted or image_channels, cfg.tiling.tile, cfg.tiling.tile)
        try:
            with torch.inference_mode():
                out = model(probe)
        except Exception as exc:  # noqa: BLE001 - a model that cannot run a tile is skipped like one that cannot load
            report.note(f"model {path} skipped: it fails on a zero tile of shape {tuple(probe.shape)}: "
                        f"{type(exc).__name__}: {exc}", logging.ERROR)
            continue
        if not isinstance(out, torch.Tensor) or out.ndim != 4:
            got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise PipelineConfigError(f"models: {path} returns {got} for a tile of shape {tuple(probe.shape)}; segment "
                                      "needs logit maps (N, 1, h, w): is it a classifier?")
        kept.append((model, weight))
        returns[path] = out.shape[1]
        if wanted is not None:
            takes[path] = wanted
    for what, counts in (("input", takes), ("output", returns)):
        if len(set(counts.values())) > 1:
            listed = ", ".join(f"{p.name}: {c}" for p, c in counts.items())
            raise PipelineConfigError(f"models: the ensemble's models have different {what} channel counts ({listed}); "
                                      "every model runs on the same tiles and their logits are averaged: use models of one kind")
    if returns and set(returns.values()) != {1}:
        raise PipelineConfigError(f"models: {next(iter(returns)).name} returns {next(iter(returns.values()))} channels; "
                                  "segment thresholds one logit map per image (N, 1, h, w)")
    return [m for m, _ in kept], [w for _, w in kept], next(iter(takes.values()), None)


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


def _match_inputs(input_dir: Path, ids: list[str], cfg: SegmentConfig, report: SegmentReport) -> dict[str, Path]:
    """Input path per id of the sample submission (ids without a file keep the fallback row)."""
    found: dict[str, Path] = {}
    wanted = set(ids)
    ignored = []
    for path in sorted(input_dir.glob(cfg.inputs.glob)):
        key = path.stem if cfg.inputs.id_from == "stem" else path.parent.name
        if key not in wanted:
            ignored.append(path.name)
        elif key in found:
            report.note(f"{path} and {found[key]} both give id {key!r}; using the first")
        else:
            found[key] = path
    if ignored:
        report.note(f"{len(ignored)} input(s) not in the sample submission ignored, e.g. {ignored[:3]}", logging.INFO)
    for i in ids:
        if i not in found:
            report.fallback[i] = f"no input matches {cfg.inputs.glob!r} under {input_dir}"
    return found


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


def _columns(reference, output) -> tuple[str, str | None]:
    """(id column, mask column) of the sample as ``output`` names them, the defaults (first column, next
    one) where it names none or one the sample lacks: enough to write the fallback; :func:`_check_columns`
    refuses the wrong name afterwards."""
    columns = reference.columns
    id_column = output.id_column if output.id_column in columns else columns[0]
    others = [c for c in columns if c != id_column]
    mask_column = output.mask_column if output.mask_column in others else (others[0] if others else None)
    return id_column, mask_column


def _check_columns(reference, sample: Path, cfg: SegmentConfig) -> None:
    columns = reference.columns
    for key in ("id_column", "mask_column"):
        name = getattr(cfg.output, key)
        if name is not None and name not in columns:
            raise PipelineConfigError(f"output.{key}: {name!r} is not a column of {sample} ({columns})")
    if len(columns) < 2:
        raise PipelineConfigError(f"{sample} has only the column {columns}; a segmentation sample needs an id and a mask column")


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


def _image_channels(pending, cfg: SegmentConfig) -> int:
    """Channels of the first input that opens (a volume's: its slices), for probing models that do not say; 3 if none."""
    for _, path in pending:
        try:
            return _open(path, cfg).shape[2]
        except KagglekitError:
            continue
    return 3


def _store_rows(guard, mask_column: str, fallback: str):
    """``store(id, rle)``: put one image's RLE into the rows and commit the whole file atomically."""
    import polars as pl

    ids = guard.fallback.get_column(guard.id_column).cast(pl.Utf8).to_list()
    values = guard.fallback.get_column(mask_column).to_list()
    row_of = {i: k for k, i in enumerate(ids)}

    def store(i: str, rle: str) -> None:
        values[row_of[i]] = rle
        try:
            guard.commit(guard.fallback.with_columns(pl.Series(mask_column, values, dtype=pl.Utf8)))
        except BaseException:
            values[row_of[i]] = fallback
            raise

    return ids, store


def segment(config, input_dir=None, output_dir=None, *, base_dir=None, budget=None) -> SegmentReport:
    """Predict a mask for every image of the sample submission and write ``submission.csv``; return the report.

    ``config``: TOML path, dict or :class:`SegmentConfig` (see :mod:`kagglekit.pipeline.config`).
    ``input_dir``: the competition folder (default :func:`kagglekit.kaggle.env.input_dir`);
    ``output_dir``: where the submission goes (default :func:`kagglekit.kaggle.env.working_dir`).
    ``budget``: a :class:`kagglekit.kaggle.Budget` (default: from ``[budget]``, starting now).

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
    cfg, report, guard, input_dir, threshold = _begin(config, input_dir, output_dir, base_dir)
    try:
        budget = budget or Budget(cfg.budget.seconds, cfg.budget.reserve)
        ids, store = _store_rows(guard, report.mask_column, cfg.output.fallback)
        found = report.inputs = _match_inputs(input_dir, ids, cfg, report)
        pending = [(i, found[i]) for i in ids if i in found]
        if len(pending) < len(ids):
            missing = [i for i in ids if i not in found]
            report.note(f"{len(missing)} id(s) of the sample submission have no input matching {cfg.inputs.glob!r} "
                        f"under {input_dir}, e.g. {missing[:3]}; they keep the fallback row")
        models, weights, in_channels = [], [], None
        if pending:
            models, weights, in_channels = _probe_models(_load_models(cfg, report), cfg, _image_channels(pending, cfg), report)
        if not models:
            if pending:
                report.note("no usable model: every image keeps the fallback row", logging.ERROR)
            report.fallback.update({i: "no usable model" for i, _ in pending})
            return report
        degrader = Degrader(len(cfg.tta.views), len(models), views_cost=cfg.tta.mode == "merge")
        predict = _image_predictor(cfg, models, weights, in_channels, threshold, degrader, report, store)
        run_items(pending, _areas(pending, cfg), degrader, predict, budget, report)
        if report.no_tissue and len(report.no_tissue) == len(report.predicted):
            report.note("no predicted image had a tile with tissue: every mask is empty; check tiling.tissue_only, "
                        "tiling.min_tissue and tiling.thumbnail against the images' background")
        report.views, report.models = degrader.views, degrader.models
        return report
    finally:
        report.seconds = time.monotonic() - start


def _begin(config, input_dir, output_dir, base_dir):
    """(config, report, guard, input folder, probability threshold or None): the fallback submission
    written from the sample and the ``[output]`` section alone, then the whole config, the threshold
    file and the device, checked before any model loads."""
    input_dir, output_dir = resolve_dirs(input_dir, output_dir)
    output = early_output(config)
    sample = input_dir / output.sample_submission
    try:
        reference = read_sample(sample)
    except KagglekitError:
        load_config(config, base_dir)  # a config that cannot load is the first thing to fix: it raises here
        raise
    id_column, mask_column = _columns(reference, output)
    report = SegmentReport(output_dir / output.submission, id_column, mask_column=mask_column, order=output.order)
    guard = write_fallback(report.submission, reference, {mask_column: output.fallback} if mask_column else {}, id_column)
    # From here on the submission file is valid, whatever fails.
    cfg = load_config(config, base_dir)
    _check_columns(reference, sample, cfg)
    threshold = _threshold(cfg)
    report.device = str(resolve_device(cfg.device))
    return cfg, report, guard, input_dir, threshold


def _image_predictor(cfg: SegmentConfig, models, weights, in_channels, threshold, degrader: Degrader,
                     report: SegmentReport, store):
    """``predict(id, path)`` for :func:`~kagglekit.pipeline.run.run_items`: one image through the current
    setting of ``degrader``, its RLE handed to ``store``; non-finite logits raise NonFiniteOutputError."""
    from kagglekit.io import match_channels
    from kagglekit.kaggle.rle import rle_encode
    from kagglekit.tiling import tissue_mask

    def predict(i: str, path: Path) -> str:
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
        store(i, rle_encode(mask, cfg.output.order))
        report.thresholds[i] = used
        if skip is not None and counted.calls == 0:
            report.no_tissue.append(i)
            report.note(f"{i}: no tile has tissue (tissue mask {'empty' if not skip.any() else 'below tiling.min_tissue'}); "
                        "its mask is empty", logging.INFO)
        return f"threshold {used:.4g}, {degrader.views} view(s) x {degrader.models} model(s)"

    return predict


def check(config, input_dir=None, *, base_dir=None) -> list[tuple[bool, str]]:
    """Check a configuration and every file it names without running a model; return ``(ok, line)`` pairs.

    A mistake in the configuration itself raises :class:`PipelineConfigError`. Then: the device, the
    sample submission and its columns, the threshold file, each checkpoint (header, checksum, input
    channels, the same for every model) and which ids have an input. A line with ``ok`` False names
    what a run would refuse, skip or leave as a fallback row. Reads each checkpoint once; builds no model.
    """
    from kagglekit.models import checkpoint_info, input_channels, verify_checkpoint

    from kagglekit.kaggle.env import input_dir as default_input

    cfg = load_config(config, base_dir)
    input_dir = Path(input_dir) if input_dir is not None else default_input()
    lines = [(True, f"config: {len(cfg.models)} model(s), {len(cfg.tta.views)} TTA view(s), threshold {cfg.threshold.kind}"),
             (True, f"device: {cfg.device} -> {resolve_device(cfg.device)}")]

    def attempt(what: str, action) -> None:
        try:
            lines.append((True, f"{what}: {action()}"))
        except KagglekitError as exc:
            lines.append((False, f"{what}: {exc}"))

    ids = []

    def sample_rows() -> str:
        sample = input_dir / cfg.output.sample_submission
        reference = read_sample(sample)
        _check_columns(reference, sample, cfg)
        ids.extend(reference.get_column(_columns(reference, cfg.output)[0]).to_list())
        return f"{sample}: {len(ids)} rows, columns {reference.columns}"

    attempt("sample submission", sample_rows)
    if cfg.threshold.kind == "file":
        attempt("threshold file", lambda: f"{cfg.threshold.file}: {_threshold(cfg)}")
    takes = {}
    for k, m in enumerate(cfg.models):
        def read_model(m=m) -> str:
            info = checkpoint_info(m.path)
            checked = "checksum ok" if verify_checkpoint(m.path) else "no checksum (saved before checksums)"
            takes[m.path.name] = input_channels(info)
            return f"{m.path}: {info['name']}, {takes[m.path.name] or 'any'} input channel(s), {checked}"

        attempt(f"models[{k}]", read_model)
    if len({c for c in takes.values() if c is not None}) > 1:
        lines.append((False, f"models: different input channel counts {takes}; an ensemble needs one"))
    if ids:
        found = _match_inputs(input_dir, ids, cfg, SegmentReport(Path()))
        missing = [i for i in ids if i not in found]
        lines.append((not missing, f"inputs: {len(found)} of {len(ids)} ids match {cfg.inputs.glob!r} under {input_dir}"
                                   + (f"; without an input: {missing[:5]}" if missing else "")))
    return lines
