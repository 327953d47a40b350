"""How ``segment`` runs its models over images (the kind itself is :mod:`kagglekit.pipeline.segmentation`).

Models come from ``load_checkpoint`` and are probed once on a zero tile, merged by ``Ensemble`` and
``TTA`` (or ``ViewCycle``), at most ``[memory] max_resident`` of them on the device at a time
(:class:`~kagglekit.pipeline.ensemble.Resident`); each image's channels are matched to the models'
(``match_channels``), or a volume's slices read (``inputs.z``); its mask (``inputs.mask``) limits the
tiles and the mask, and ``normalize = "volume"`` standardises it by its own statistics inside the mask;
``iter_strips`` runs the models over the image (tissue tiles only, if configured) at their output scale
(the probe's tile / output side: 32 for a 2.5D model), the logits are upsampled to the image (nearest),
thresholded strip by strip and encoded by ``rle_encode``; non-finite logits make the image a fallback row.

Models must return logits (N, 1, h, w) for NCHW float input; a probability threshold ``t`` is applied
as ``logit >= log(t / (1 - t))``.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from kagglekit.errors import ImageReadError, KagglekitError
from kagglekit.pipeline.degrade import Degrader
from kagglekit.pipeline.ensemble import Resident, agree, first_channels, input_channels_of, load_models, probe_models
from kagglekit.pipeline.kind import Plan
from kagglekit.pipeline.loop import row_store
from kagglekit.pipeline.segment_config import VOLUME_NORMALIZE, SegmentConfig
from kagglekit.pipeline.segmentation import NonFiniteOutputError, SegmentReport
from kagglekit.pipeline.sections import PipelineConfigError

__all__ = ["plan"]

SKIPPED = float("nan")
"""Logit of pixels in tiles that are not run (no tissue): NaN is background under any threshold
(every comparison with it is False) and is left out of a percentile threshold."""


class _CountNonFinite(nn.Module):
    """``model`` counting its calls, the output pixels it returned and how many of them were NaN or
    infinite (``model`` may be swapped for the next group of models; the counts go on). On a CPU the
    slices of a batch call it from several threads at once: the counts are added under a lock."""

    def __init__(self, model=None):
        super().__init__()
        self.model, self.calls, self.pixels, self.bad = model, 0, 0, 0
        self.lock = threading.Lock()

    def forward(self, x):
        y = self.model(x)
        bad = int(torch.isfinite(y).logical_not_().sum())
        with self.lock:
            self.calls += 1
            self.pixels += y.numel()
            self.bad += bad
        return y


def _logit(p: float) -> float:
    if p <= 0:
        return -math.inf
    if p >= 1:
        return math.inf
    return math.log(p) - math.log1p(-p)


def _segment_models(cfg: SegmentConfig, image_channels: int, report: SegmentReport):
    """(kept models, input channels or None, output scale) of the checkpoints that load and run a zero
    tile. Models that do not return one logit map (N, 1, h, w) are refused (see
    :mod:`kagglekit.pipeline.ensemble`); the output scale is tile / h (32 for a 2.5D model at 1/32),
    and the models of one run must share it."""
    tile = cfg.tiling.tile
    if cfg.memory.max_resident is not None and cfg.memory.offload == "disk":
        kept = []  # one model in memory at a time from the start: each is loaded, probed and dropped
        for model_config in sorted(cfg.models, key=lambda m: -m.weight):
            kept += probe_models(load_models([model_config], report), (tile, tile), image_channels, report)
            if kept:
                kept[-1].model = None
        agree(kept)
    else:
        kept = probe_models(load_models(cfg.models, report), (tile, tile), image_channels, report)
    scales = {}
    for m in kept:
        if len(m.out_shape) != 4:
            raise PipelineConfigError(f"models: {m.path} returns {m.out_shape} for a tile of shape "
                                      f"(1, {m.in_channels or image_channels}, {tile}, {tile}); "
                                      "segment needs logit maps (N, 1, h, w): is it a classifier?")
        if m.out_shape[1] != 1:
            raise PipelineConfigError(f"models: {m.path.name} returns {m.out_shape[1]} channels; segment thresholds one "
                                      "logit map per image (N, 1, h, w)")
        h, w = m.out_shape[2:]
        if h != w or tile % h:
            raise PipelineConfigError(f"models: {m.path.name} returns {h}x{w} logits for a {tile}x{tile} tile; segment takes "
                                      f"outputs at 1/s of the tile for a whole s (tile {tile} must be a multiple of s)")
        scales[m.path.name] = tile // h
    if len(set(scales.values())) > 1:
        raise PipelineConfigError(f"models: the ensemble's models have different output scales ({scales}); their "
                                  "logits are averaged pixel by pixel: use models of one output stride")
    scale = next(iter(scales.values()), 1)
    stride, margin = cfg.tiling.stride or tile, cfg.tiling.margin
    if stride % scale or margin % scale:
        raise PipelineConfigError(f"tiling: the models' output is at 1/{scale} of the input, so tiling.stride ({stride}) "
                                  f"and tiling.margin ({margin}) must be multiples of {scale}")
    return kept, input_channels_of(kept), scale


def _compose(models, weights, tta_config, n_views: int, n_models: int):
    """(model, tta hook) for ``sliding_window``: the first ``n_models`` merged, then the first ``n_views`` views."""
    from kagglekit.tta import TTA, Ensemble, ViewCycle

    model = models[0] if n_models == 1 else Ensemble(models[:n_models], weights[:n_models], merge="mean")
    views = tta_config.views
    if tta_config.mode == "cycle":
        return model, ViewCycle(views) if len(views) > 1 else None
    if n_views > 1:
        model = TTA(model, views[:n_views], merge=tta_config.merge, batched=False)
    return model, None


def _open(path: Path, cfg: SegmentConfig):
    from kagglekit.io import open_image, open_volume

    if cfg.inputs.kind == "volume":
        return open_volume(path, z=cfg.inputs.z_selection())
    return open_image(path)


@dataclass
class _Image:
    """One image's inputs to :func:`_predict`: its source, its (H, W) bool mask or None, the low-resolution
    map of where tiles run (None: everywhere) with its ``min_fraction``, and ``normalize``."""

    source: object
    inside: np.ndarray | None
    skip: np.ndarray | None
    min_fraction: float
    normalize: object


@dataclass(frozen=True)
class _Strips:
    """How ``iter_strips`` runs in this run, fixed once: the tiling, the models' output scale, the device
    and precision; called per image with the image's own normalisation and tile mask."""

    tile: int
    stride: int | None
    batch_size: int
    window: str
    margin: int
    out_scale: int
    device: object
    amp: object
    threads: object = "auto"

    @classmethod
    def of(cls, cfg: SegmentConfig, scale: int, models: Resident) -> _Strips:
        t = cfg.tiling
        return cls(t.tile, t.stride, cfg.batch_size, t.window, t.margin, scale, models.device,
                   "fp16" if models.half else cfg.amp, cfg.threads)

    @property
    def rows(self) -> int:
        """Rows (at the output scale) per strip: 128 image rows."""
        return max(1, 128 // self.out_scale)

    def __call__(self, model, image: _Image, tta):
        from kagglekit.infer import iter_strips

        return iter_strips(model, image.source, tile=self.tile, stride=self.stride, batch_size=self.batch_size,
                           window=self.window, margin=self.margin, out_scale=self.out_scale, device=self.device,
                           amp=self.amp, normalize=image.normalize, skip_mask=image.skip, progress=False,
                           min_fraction=image.min_fraction, fill_value=SKIPPED, out_channels=1, tta=tta,
                           strip_rows=self.rows, threads=self.threads)


def _logit_strips(strips: _Strips, models: Resident, n_models: int, n_views: int, image: _Image, tta_config,
                  counted: _CountNonFinite):
    """Yield (first row, (rows, W / scale) float32 logits) of the first ``n_models`` models over the image.

    One group of models (all resident) streams strips as they are finished. Several groups
    (``[memory] max_resident``) run in turn, each over the whole image, their weighted logits summed
    in one (H / scale, W / scale) float32 array, which is then handed out in strips.
    """
    grouped, total, summed = models.grouped(n_models), 0.0, None
    for modules, weights in models.groups(n_models):
        counted.model, tta = _compose(modules, weights, tta_config, n_views, len(modules))
        if not grouped:
            yield from ((row, strip[0]) for row, strip in strips(counted, image, tta))
            return
        for row, strip in strips(counted, image, tta):
            if summed is None:
                summed = np.zeros((-(-image.source.shape[0] // strips.out_scale), strip.shape[2]), np.float32)
            summed[row : row + strip.shape[1]] += sum(weights) * strip[0]
        total += sum(weights)
        counted.model = None  # the group can leave the device
    summed /= total
    for row in range(0, len(summed), strips.rows):
        yield row, summed[row : row + strips.rows]


def _full_resolution(strips, scale: int, H: int, W: int):
    """The (first row, (rows, W) strip) pairs of logits at 1/``scale``, each pixel repeated ``scale`` times
    per side (nearest upsampling), cropped to the image's (H, W)."""
    for row, strip in strips:
        if scale > 1:
            strip = np.repeat(np.repeat(strip, scale, axis=0), scale, axis=1)[: H - row * scale, :W]
        yield row * scale, strip


def _probabilities(logits: np.ndarray) -> np.ndarray:
    """float32 sigmoid of ``logits`` (tanh form: no overflow), 0 where a tile did not run (NaN)."""
    p = np.tanh(np.asarray(logits, np.float32) / 2, dtype=np.float32)
    p += 1
    p *= 0.5
    return np.nan_to_num(p, nan=0.0, copy=False)


def _predict(strips, image: _Image, cfg: SegmentConfig, threshold: float | None, scale: int,
             keep: bool = False) -> tuple[np.ndarray, float, np.ndarray | None]:
    """(H, W) bool mask of the image, the probability threshold used (``threshold`` None: percentile) and,
    with ``keep``, the (H, W) float32 probability map (0 outside the image's mask and where no tile ran).

    Pixels outside the image's mask are False and are left out of a percentile threshold, like the
    skipped (NaN) pixels of tiles that did not run. Holds the mask (1 byte per pixel), for a percentile
    threshold float16 logits and which pixels count (3 more bytes per pixel), with ``keep`` the map (4
    more), and one strip.
    """
    from kagglekit.thresholds import percentile_threshold

    H, W = image.source.shape[:2]
    strips = _full_resolution(strips, scale, H, W)
    kept = np.zeros((H, W), np.float32) if keep else None
    if threshold is not None:
        cut = _logit(threshold)
        mask = np.empty((H, W), bool)
        for row, strip in strips:
            np.greater_equal(strip, cut, out=mask[row : row + len(strip)])
            if keep:
                kept[row : row + len(strip)] = _probabilities(strip)
        used = threshold
    else:
        logits = np.empty((H, W), np.float16)
        for row, strip in strips:
            logits[row : row + len(strip)] = strip
            if keep:
                kept[row : row + len(strip)] = _probabilities(strip)
        counts = ~np.isnan(logits)  # the quantile is of the predicted pixels, not of skipped background
        if image.inside is not None:
            counts &= image.inside
        if not counts.any():
            return np.zeros((H, W), bool), 1.0, kept
        cut = percentile_threshold(logits, cfg.threshold.q, mask=counts)
        mask, used = logits >= cut, 0.5 * (1.0 + math.tanh(cut / 2))  # the sigmoid without exp's overflow
    if image.inside is not None:
        mask &= image.inside
        if keep:
            kept[~image.inside] = 0.0
    return mask, used, kept


def _at_size(mask: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """``mask`` at the original's (height, width) ``size`` (nearest neighbour) when the input was a smaller
    file of it (``inputs.files`` with a scale); holds the mask at both sizes."""
    if size is None or mask.shape == tuple(size):
        return mask
    import cv2

    return cv2.resize(mask.view(np.uint8), (size[1], size[0]), interpolation=cv2.INTER_NEAREST).view(bool)


def _areas(pending, cfg: SegmentConfig) -> tuple[dict[str, int], dict[str, str]]:
    """Pixels per image, the unit of work the budget measures (0 for an unreadable file, reported when its
    turn comes), and why each unreadable file cannot be opened."""
    areas, errors = {}, {}
    for i, path in pending:
        try:
            areas[i] = math.prod(_open(path, cfg).shape[:2])
        except KagglekitError as exc:
            areas[i], errors[i] = 0, f"{type(exc).__name__}: {exc}"
    return areas, errors


def _save_map(path: Path, probabilities: np.ndarray) -> None:
    """``probabilities`` as ``path`` (.npy), atomically."""
    from kagglekit._atomic import atomic_open

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as f:
        np.save(f, probabilities)


def _image_predictor(cfg: SegmentConfig, models: Resident, strips: _Strips, in_channels, input_dir: Path, threshold,
                     degrader: Degrader, report: SegmentReport, store, maps: Path | None):
    """``predict([id], path)`` for :func:`~kagglekit.pipeline.loop.run_items`: one image through the current
    setting of ``degrader``, its RLE handed to ``store`` (:func:`~kagglekit.pipeline.loop.row_store`) and,
    with ``maps`` (``output.probabilities``), its probability map saved there; non-finite logits raise
    NonFiniteOutputError."""
    from kagglekit._memory import PeakMemory
    from kagglekit.kaggle.rle import rle_encode

    def predict(ids: list[str], path: Path) -> tuple[dict, str]:
        (i,) = ids
        with PeakMemory(models.device) as peak:
            image = _prepare(i, path, cfg, input_dir, in_channels, report)
            counted = _CountNonFinite()
            logits = _logit_strips(strips, models, degrader.models, degrader.views, image, cfg.tta, counted)
            mask, used, probabilities = _predict(logits, image, cfg, threshold, strips.out_scale, maps is not None)
            if counted.bad:
                raise NonFiniteOutputError(f"the model returned {counted.bad} NaN or infinite logits out of {counted.pixels} "
                                           "tile output pixels; check the checkpoint (diverged training, float16 overflow)")
            if maps is not None:
                _save_map(maps / f"{i}.npy", probabilities)
            mask = _at_size(mask, report.original_size.get(i))
            store(ids, {report.mask_column: [rle_encode(mask, cfg.output.order)]})
        report.thresholds[i], report.peak_memory[i] = used, peak.bytes
        if image.skip is not None and counted.calls == 0:
            report.no_tissue.append(i)
            if image.inside is not None and not image.inside.any():
                report.note(f"{i}: its mask ({cfg.inputs.mask_path(input_dir, i).name}) is empty: no tile was run and "
                            "its mask is empty", logging.INFO)
            else:
                report.note(f"{i}: no tile has tissue (tissue mask {'empty' if not image.skip.any() else 'below tiling.min_tissue'})"
                            "; its mask is empty", logging.INFO)
        memory = f", peak {peak.bytes / 2**30:.2f} GiB" if peak.bytes else ""
        return {}, f"threshold {used:.4g}, {degrader.views} view(s) x {degrader.models} model(s){memory}"

    return predict


def _prepare(i: str, path: Path, cfg: SegmentConfig, input_dir: Path, in_channels, report: SegmentReport) -> _Image:
    """The image's source (channels matched to the models'), its mask, where tiles run and its normalisation."""
    from kagglekit.io import match_channels, read_mask, standardization
    from kagglekit.tiling import block_mean, tissue_mask

    source = _open(path, cfg)
    if cfg.inputs.kind == "image":
        matched = match_channels(source, in_channels)
        if matched is not source:
            report.note_once(f"inputs adapted to the models' {in_channels} channels: {matched.adaptation}")
        source = matched
    H, W = source.shape[:2]
    mask_path = cfg.inputs.mask_path(input_dir, i)
    if mask_path is not None and not mask_path.is_file():
        raise ImageReadError(f"{mask_path}: no such file; inputs.mask = {cfg.inputs.mask!r} names each image's mask, "
                             f"relative to the input folder {input_dir}")
    inside = read_mask(mask_path, (H, W)) if mask_path is not None else None
    t = cfg.tiling
    skip = tissue_mask(source.thumbnail(t.thumbnail)) if t.tissue_only else None
    min_fraction = t.min_tissue
    if inside is not None:  # tiles that touch the mask run (tissue_only too: where both are set)
        fraction = block_mean(inside, max(1, -(-max(H, W) // t.thumbnail)))
        if skip is not None:
            import cv2

            fraction *= cv2.resize(skip.astype(np.uint8), fraction.shape[::-1], interpolation=cv2.INTER_NEAREST)
        skip, min_fraction = fraction, t.min_tissue if t.tissue_only else 0.0
    normalize = cfg.preprocess.normalize
    if normalize == VOLUME_NORMALIZE:
        mean, std, top = standardization(source, inside)
        report.normalization[i] = (mean, std)
        normalize = ((mean / top,), (std / top,))  # applied after the integers are scaled to [0, 1]
    return _Image(source, inside, skip, min_fraction, normalize)


def _note_memory(cfg: SegmentConfig, models: Resident, report: SegmentReport) -> None:
    """Say once what ``[memory]`` does on this device."""
    memory, on_cuda = cfg.memory, models.device.type == "cuda"
    if memory.fp16 and not on_cuda:
        report.note("memory.fp16 applies on CUDA only: the models run in float32 here", logging.INFO)
    if models.grouped(len(models.kept)):
        report.note(f"{len(models.kept)} models, at most {memory.max_resident} on {models.device} at once "
                    f"(the others {'in host memory' if memory.offload == 'cpu' else 'read again from their checkpoints'})",
                    logging.INFO)
        if not on_cuda and memory.offload == "cpu":
            report.note("memory.max_resident bounds host memory only with offload = 'disk': on the CPU, 'cpu' "
                        "offload keeps every model in memory anyway", logging.INFO)


def plan(run, pending: list[tuple[str, Path]], report: SegmentReport, threshold: float | None) -> Plan | None:
    """The :class:`~kagglekit.pipeline.kind.Plan` of a segment run: one image per unit, its pixels the cost;
    None when no input reads (each row gets its read error; no model is loaded for nothing) or no model runs."""
    cfg = run.config
    channels = first_channels(pending, lambda p: _open(p, cfg).shape[2])
    if channels is None:
        report.fallback.update(_areas(pending, cfg)[1])
        report.note("no input could be read: every image keeps the fallback row", logging.ERROR)
        return None
    kept, in_channels, scale = _segment_models(cfg, channels, report)
    if not kept:
        return None
    report.out_scale = scale
    models = Resident(kept, cfg.memory, run.device)
    _note_memory(cfg, models, report)
    degrader = Degrader(len(cfg.tta.views), len(kept), views_cost=cfg.tta.mode == "merge")
    store = row_store(run.guard, [report.mask_column])
    maps = run.output_dir / cfg.output.probabilities if cfg.output.probabilities else None
    predict = _image_predictor(cfg, models, _Strips.of(cfg, scale, models), in_channels, run.input_dir, threshold,
                               degrader, report, store, maps)
    areas = _areas(pending, cfg)[0]
    return Plan(predict, degrader, [([i], path) for i, path in pending], [areas[i] for i, _ in pending])
