"""The segmentation pipeline's run loop: sample submission in, ``submission.csv`` of RLE masks out.

It composes the library: ``SubmissionGuard`` writes the fallback first and every later file
atomically; models come from ``load_checkpoint``, merged by ``Ensemble`` and ``TTA`` (or
``ViewCycle``); ``iter_strips`` runs them over each image (tissue tiles only, if configured); the
mask is thresholded strip by strip and encoded by ``rle_encode``; ``Budget`` measures the rate and,
when the projected finish passes the budget, :class:`~kagglekit.pipeline.degrade.Degrader` drops TTA
views, then models. A missing model, an unreadable image or an exhausted budget never leaves the
submission invalid: the image keeps its fallback row and the report says why.

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

from kagglekit.errors import InvalidArgumentError, KagglekitError
from kagglekit.pipeline.config import SegmentConfig, load_config, read_threshold_file
from kagglekit.pipeline.degrade import Degrader

__all__ = ["SegmentReport", "segment"]

logger = logging.getLogger("kagglekit.pipeline")

SKIPPED = float("nan")
"""Logit of pixels in tiles that are not run (no tissue): NaN is background under any threshold
(every comparison with it is False) and is left out of a percentile threshold."""


@dataclass
class SegmentReport:
    """What a run did: the submission's path, columns and RLE order, the input file of each id,
    ``predicted`` ids, ``fallback`` ids with the reason, the probability threshold used per image, the
    ``events`` worth reading (missing models, dropped views/models, failures), and the number of TTA
    ``views`` and ``models`` in use at the end."""

    submission: Path
    id_column: str = "id"
    mask_column: str = "rle"
    order: str = "C"
    inputs: dict[str, Path] = field(default_factory=dict)
    predicted: list[str] = field(default_factory=list)
    fallback: dict[str, str] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    events: list[str] = field(default_factory=list)
    views: int = 0
    models: int = 0
    seconds: float = 0.0

    def note(self, message: str, level: int = logging.WARNING) -> None:
        logger.log(level, message)
        self.events.append(message)

    def summary(self) -> str:
        lines = [(f"{self.submission}: {len(self.predicted)} predicted, {len(self.fallback)} fallback rows, "
                  f"{self.views} TTA view(s) x {self.models} model(s) at the end, {self.seconds:.1f} s")]
        lines += [f"  fallback {i}: {why}" for i, why in self.fallback.items()]
        lines += [f"  event: {e}" for e in self.events]
        return "\n".join(lines)


def _logit(p: float) -> float:
    if p <= 0:
        return -math.inf
    if p >= 1:
        return math.inf
    return math.log(p) - math.log1p(-p)


def _load_models(cfg: SegmentConfig, report: SegmentReport):
    """(models, weights) that loaded, heaviest weight first; the others are reported and skipped."""
    from kagglekit.models import load_checkpoint

    loaded = []
    for m in sorted(cfg.models, key=lambda m: -m.weight):
        try:
            loaded.append((load_checkpoint(m.path).eval(), m.weight))
        except Exception as exc:  # noqa: BLE001 - a model that cannot load is skipped, whatever the reason
            report.note(f"model {m.path} skipped: {type(exc).__name__}: {exc}", logging.ERROR)
    return [m for m, _ in loaded], [w for _, w in loaded]


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


def _predict(model, tta, source, cfg: SegmentConfig, threshold: float | None) -> tuple[np.ndarray, float]:
    """(H, W) bool mask of ``source`` and the probability threshold used (``threshold`` None: percentile).

    Holds the mask (1 byte per pixel), for a percentile threshold float16 logits, which pixels ran
    and a copy of their logits (5 bytes per pixel in all), and one tile row of float32 logits.
    """
    from kagglekit.infer import iter_strips
    from kagglekit.thresholds import percentile_threshold
    from kagglekit.tiling import tissue_mask

    t = cfg.tiling
    skip = tissue_mask(source.thumbnail(t.thumbnail)) if t.tissue_only else None
    run = {"tile": t.tile, "stride": t.stride, "batch_size": t.batch_size, "window": t.window, "margin": t.margin,
           "device": cfg.device, "normalize": cfg.normalize, "skip_mask": skip, "min_fraction": t.min_tissue,
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


def _read_sample(sample: Path):
    """The sample submission, read once (the guard takes the frame), as strings."""
    from kagglekit.errors import SubmissionError
    from kagglekit.kaggle import read_csv_strings

    if not sample.is_file():
        raise SubmissionError(f"sample submission {sample} not found; check output.sample_submission and the input folder")
    return read_csv_strings(sample, "sample submission")


def _columns(reference, sample: Path, cfg: SegmentConfig) -> tuple[str, str]:
    from kagglekit.pipeline.config import PipelineConfigError

    columns = reference.columns
    id_column = cfg.output.id_column or columns[0]
    others = [c for c in columns if c != id_column]
    mask_column = cfg.output.mask_column or (others[0] if others else None)
    for key, name in (("id_column", id_column), ("mask_column", mask_column)):
        if name not in columns:
            raise PipelineConfigError(f"output.{key}: {name!r} is not a column of {sample} ({columns})")
    return id_column, mask_column


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


def _predict_all(pending, models, weights, cfg: SegmentConfig, threshold, budget, report: SegmentReport, store) -> Degrader:
    """Predict each (id, path) of ``pending`` in turn, handing ``store(id, rle)`` each mask; degrade under the budget."""
    from kagglekit.kaggle.rle import rle_encode

    degrader = Degrader(len(cfg.tta.views), len(models), views_cost=cfg.tta.mode == "merge")
    areas = _areas(pending, cfg)
    total, done, cheapest = sum(areas.values()), 0, False
    budget.projected_finish(0, max(total, 1), degrader.key)
    for n, (i, path) in enumerate(pending):
        if budget.remaining <= 0:
            left = [j for j, _ in pending[n:]]
            report.fallback.update({j: "time budget exhausted" for j in left})
            report.note(f"time budget exhausted after {budget.elapsed:.0f} s: {len(left)} image(s) keep the fallback row")
            break
        model, tta = _compose(models, weights, cfg, degrader.views, degrader.models)
        try:
            with budget.step("image"):
                mask, used = _predict(model, tta, _open(path, cfg), cfg, threshold)
                store(i, rle_encode(mask, cfg.output.order))
            report.predicted.append(i)
            report.thresholds[i] = used
            logger.info("%s: predicted (threshold %.4g, %d view(s) x %d model(s))", i, used, degrader.views, degrader.models)
        except Exception as exc:
            report.fallback[i] = f"{type(exc).__name__}: {exc}"
            logger.exception("%s: prediction failed; it keeps the fallback row", i)
        done += areas[i]
        if done < total and budget.will_overrun(done, total, degrader.key):
            finish = budget.projected_finish(done, total, degrader.key)
            step = degrader.step()
            if step or not cheapest:
                report.note(f"{step or 'nothing left to drop'}: projected finish {finish:.0f} s passes the "
                            f"budget ({budget.total - budget.reserve:.0f} s)")
            cheapest = step is None
            budget.projected_finish(done, total, degrader.key)  # measure the new setting's rate from here
    return degrader


def segment(config, input_dir=None, output_dir=None, *, base_dir=None, budget=None) -> SegmentReport:
    """Predict a mask for every image of the sample submission and write ``submission.csv``; return the report.

    ``config``: TOML path, dict or :class:`SegmentConfig` (see :mod:`kagglekit.pipeline.config`).
    ``input_dir``: the competition folder (default :func:`kagglekit.kaggle.env.input_dir`);
    ``output_dir``: where the submission goes (default :func:`kagglekit.kaggle.env.working_dir`).
    ``budget``: a :class:`kagglekit.kaggle.Budget` (default: from ``[budget]``, starting now).
    Configuration mistakes and a missing sample submission raise before anything is written; from
    then on the submission file is always valid (rewritten after each image), and images that could
    not be predicted keep the sample's row with the mask column set to ``output.fallback``. Holds the
    models, one image's source, its mask and the RLE strings.
    """
    import polars as pl

    from kagglekit.kaggle.budget import Budget
    from kagglekit.kaggle.env import input_dir as default_input
    from kagglekit.kaggle.env import working_dir
    from kagglekit.kaggle.submission import SubmissionGuard

    start = time.monotonic()
    cfg = load_config(config, base_dir)
    input_dir = Path(input_dir) if input_dir is not None else default_input()
    output_dir = Path(output_dir) if output_dir is not None else working_dir()
    if output_dir.exists() and not output_dir.is_dir():
        raise InvalidArgumentError(f"the output {output_dir} is a file; pass the folder submission.csv goes to")
    budget = budget or Budget(cfg.budget.seconds, cfg.budget.reserve)
    sample = input_dir / cfg.output.sample_submission
    reference = _read_sample(sample)
    id_column, mask_column = _columns(reference, sample, cfg)
    report = SegmentReport(output_dir / cfg.output.submission, id_column, mask_column, cfg.output.order)
    with SubmissionGuard(report.submission, reference, fill={mask_column: cfg.output.fallback},
                         id_column=id_column) as guard:
        ids = guard.fallback.get_column(id_column).cast(pl.Utf8).to_list()
        values = guard.fallback.get_column(mask_column).to_list()
        row_of = {i: k for k, i in enumerate(ids)}

        def store(i: str, rle: str) -> None:
            values[row_of[i]] = rle
            try:
                guard.commit(guard.fallback.with_columns(pl.Series(mask_column, values, dtype=pl.Utf8)))
            except BaseException:
                values[row_of[i]] = cfg.output.fallback
                raise

        found = report.inputs = _match_inputs(input_dir, ids, cfg, report)
        models, weights = _load_models(cfg, report)
        try:
            threshold = _threshold(cfg)
        except KagglekitError as exc:
            report.note(str(exc), logging.ERROR)
            models = []
        if models:
            degrader = _predict_all([(i, found[i]) for i in ids if i in found], models, weights, cfg, threshold,
                                    budget, report, store)
            report.views = degrader.views
            report.models = degrader.models
        else:
            report.note("no usable model: every image keeps the fallback row", logging.ERROR)
            report.fallback.update({i: "no usable model" for i in found})
    report.seconds = time.monotonic() - start
    return report
