"""The segmentation pipeline: sample submission in, ``submission.csv`` of RLE masks out.

``segment`` is a kind (:class:`Segment`) on the execute template (:mod:`kagglekit.pipeline.execute`:
fallback first, budget, one fallback row per failure, workers, report); how its models run over an
image, strip by strip, is :mod:`kagglekit.pipeline.segment_images`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from kagglekit.errors import KagglekitError
from kagglekit.pipeline import segment_config
from kagglekit.pipeline.kind import PipelineKind
from kagglekit.pipeline.loop import RunReport

__all__ = ["NonFiniteOutputError", "Segment", "SegmentReport", "segment"]


@dataclass
class SegmentReport(RunReport):
    """A :class:`~kagglekit.pipeline.loop.RunReport` with the mask column, its RLE order, the probability
    threshold used per image, the ids in which no tile had tissue (predicted empty), per image the
    (mean, std) of ``normalize = "volume"`` (in the image's own units) and the peak memory in bytes
    (of the process, or of torch's CUDA allocations on a GPU; :class:`kagglekit._memory.PeakMemory`),
    and the models' output scale."""

    mask_column: str = "rle"
    order: str = "C"
    thresholds: dict[str, float] = field(default_factory=dict)
    no_tissue: list[str] = field(default_factory=list)
    normalization: dict[str, tuple[float, float]] = field(default_factory=dict)
    peak_memory: dict[str, int | None] = field(default_factory=dict)
    out_scale: int = 1


class NonFiniteOutputError(KagglekitError, ValueError):
    """A model returned NaN or infinite logits; the image keeps its fallback row."""


def _threshold(cfg) -> float | None:
    """The probability threshold, or None for a per-image percentile."""
    if cfg.threshold.kind == "file":
        return segment_config.read_threshold_file(cfg.threshold.file)
    return cfg.threshold.value if cfg.threshold.kind == "fixed" else None


class Segment(PipelineKind):
    """One mask per image (or volume), as RLE in the sample's mask column."""

    name = "segment"
    help = "run the segmentation pipeline of a TOML config to submission.csv (RLE masks)"
    report_type = SegmentReport
    config_type = segment_config.SegmentConfig


    def new_report(self, run) -> SegmentReport:
        report = super().new_report(run)
        report.mask_column, report.order = run.config.output.columns(run.reference)[1], run.config.output.order
        return report

    def prepare(self, run, report):
        return _threshold(run.config)  # an unreadable threshold file fails here, before any model loads

    def plan(self, run, pending, report, state):
        from kagglekit.pipeline.segment_images import plan

        return plan(run, pending, report, state)

    def finish(self, run, report) -> None:
        if report.no_tissue and len(report.no_tissue) == len(report.predicted):
            report.note("no predicted image had a tile with tissue: every mask is empty; check tiling.tissue_only, "
                        "tiling.min_tissue and tiling.thumbnail against the images' background")

    def preview(self, report, output_dir: Path) -> Path:
        """The first predicted image's thumbnail (longer side 1024) with its mask tinted on top: overlay.png."""
        from kagglekit.pipeline.preview import overlay_prediction, written_values
        from kagglekit.tiling import save_png

        shown = report.predicted[0]
        rle = written_values(report, [shown])[shown]
        path = output_dir / "overlay.png"
        save_png(path, overlay_prediction(report.inputs[shown], rle, order=report.order, max_side=1024,
                                          size=report.original_size.get(shown)))
        return path

    def checked_files(self, cfg):
        return [("threshold file", lambda: f"{cfg.threshold.file}: {_threshold(cfg)}")] if cfg.threshold.kind == "file" else []

    def check_inputs(self, cfg, input_dir: Path, found: dict):
        if not cfg.inputs.mask or not found:
            return []
        no_mask = [i for i in found if not cfg.inputs.mask_path(input_dir, i).is_file()]
        return [(not no_mask, f"masks: {len(found) - len(no_mask)} of {len(found)} inputs have their mask "
                              f"{cfg.inputs.mask!r}" + (f"; without one: {no_mask[:5]}" if no_mask else ""))]


def segment(config, input_dir=None, output_dir=None, *, base_dir=None, budget=None) -> SegmentReport:
    """Predict a mask for every image of the sample submission and write ``submission.csv``; return the report.

    ``config``: TOML path, dict or :class:`~kagglekit.pipeline.segment_config.SegmentConfig` (see
    :mod:`kagglekit.pipeline.config`). ``input_dir``: the competition folder (default
    :func:`kagglekit.kaggle.env.input_dir`); ``output_dir``: where the submission goes (default
    :func:`kagglekit.kaggle.env.working_dir`). ``budget``: a :class:`kagglekit.kaggle.Budget` (default:
    from ``[budget]``, starting now). ``workers`` in the config splits the images over worker
    processes (one per GPU with ``"gpus"``; see :mod:`kagglekit.pipeline.workers`).

    The sample submission is read first and its rows, with the mask column set to ``output.fallback``,
    are written before anything else can fail: from then on the file is valid whatever happens. A
    mistake in the configuration, an unreadable threshold file, a device this machine lacks or an
    ensemble of mismatched models then raise (the fallback file stays); a model that cannot load or
    run is skipped; an image that cannot be predicted keeps its fallback row, with the reason in the
    report. Only an unreadable sample submission or an unwritable output folder leave no file, and
    both raise naming the path. See :mod:`kagglekit.pipeline` for the whole catalogue. Holds the
    models, one image's source, its mask and the RLE strings.
    """
    from kagglekit.pipeline.execute import execute

    return execute(config, input_dir, output_dir, base_dir=base_dir, budget=budget, command="segment")
