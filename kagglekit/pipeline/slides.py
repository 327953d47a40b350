"""``slides``, the variant of ``classify`` chosen by a ``[slides]`` section: each input slide becomes a bag of
tile features, and MIL heads classify the bag.

The backbone is built once from ``[slides]``; the ``[[models]]`` are MIL heads (a ``HeadEnsemble`` per
fold from :func:`kagglekit.mil.train_heads`, or a single head), each wrapped so that it returns the log of
its heads' mean softmax, probed once on a zero bag, and refused when the heads were trained on bags of
another backbone (their checkpoint says which). Per slide (one unit of the run loop): the bag, then the
models' probabilities averaged with their weights, then the decision's temperature on their logarithm.
A slide without tissue, or one that cannot be read, keeps its fallback row with the reason. The models'
side is :mod:`kagglekit.pipeline.slide_heads`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from kagglekit.pipeline import classify_config
from kagglekit.pipeline.classification import Classify, ClassifyReport
from kagglekit.pipeline.sections import PipelineConfigError

__all__ = ["Slides", "SlidesReport", "check_backbone"]


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


@dataclass
class SlidesReport(ClassifyReport):
    """A :class:`ClassifyReport` with each slide's kind (``"tma"`` or ``"wsi"``) that ``slides.tma_when`` gave."""

    slide_kind: dict[str, str] = field(default_factory=dict)


def _of_file(scale, file_scale: float, note):
    """``[slides] scale`` (a number or per kind, of the original) as the scale of a file at ``file_scale`` of
    the original: at most 1, its own pixels (``note`` says once that a file holds less detail than asked)."""
    def one(wanted: float) -> float:
        if wanted > file_scale * 1.001:
            note(f"slides.scale {wanted} asks for more detail than some inputs hold (a thumbnail): those are read at "
                 "their own resolution; a smaller slides.scale reads every input at one magnification")
        return min(1.0, wanted / file_scale)

    return {k: one(v) for k, v in scale.items()} if isinstance(scale, dict) else one(scale)


@dataclass(frozen=True)
class _Bags:
    """How each slide becomes a bag in this run (:func:`kagglekit.mil.extract_bag`'s settings), fixed once;
    ``originals`` and ``kinds``: the original's (height, width) of slides read from a smaller file, and the
    kinds the table gave."""

    slides: object  # the checked [slides] section
    stain: object
    num_workers: int
    device: object
    amp: object
    originals: dict
    kinds: dict
    note: Callable
    threads: object = "auto"

    def __call__(self, backbone, path, slide_id: str, name: str):
        from kagglekit.io import open_image
        from kagglekit.mil import extract_bag

        s = self.slides
        kind = self.kinds.get(slide_id, s.kind)
        scale = s.scale[kind] if isinstance(s.scale, dict) and kind in s.scale else s.scale  # "auto": per kind
        tma_max_side = s.tma_max_side
        if slide_id in self.originals:  # a smaller file: scales and sides of the original, as this file's
            file_scale = open_image(path).shape[1] / self.originals[slide_id][1]
            scale, tma_max_side = _of_file(scale, file_scale, self.note), max(1, round(tma_max_side * file_scale))
        return extract_bag(backbone, path, slide=slide_id, name=name, tile=s.tile, scale=scale,
                           threshold=s.threshold, min_tissue=s.min_tissue, top_k=s.top_k,
                           kind=kind, tma_max_side=tma_max_side,
                           swap_background=s.swap_background, stain=self.stain,
                           normalize=s.normalize, batch_size=s.batch_size, num_workers=self.num_workers,
                           device=self.device, amp=self.amp, threads=self.threads)


def _kinds_from_table(cfg, input_dir, found: dict, report) -> None:
    """Each found slide's kind from ``slides.tma_when`` over ``[inputs.table]`` into ``report.slide_kind``;
    a slide the table lacks falls back; a value that is not true or false is a PipelineConfigError."""
    from kagglekit.pipeline.inputs import table_values

    table, expression = cfg.inputs.table, cfg.slides.tma_when
    is_tma = table_values(input_dir, table, {"slides.tma_when": expression}, list(found))["slides.tma_when"]
    for i in list(found):
        if is_tma.get(i) is None:
            report.fallback[i] = f"{table.path} has no row of {i!r} to tell its kind (slides.tma_when)"
            del found[i]
        elif not isinstance(is_tma[i], bool):
            raise PipelineConfigError(f"slides.tma_when: {expression!r} gives {is_tma[i]!r} for {i!r}, not true or false; "
                                      'write a condition, e.g. "image_width < 6000" or a column of True/False')
        else:
            report.slide_kind[i] = "tma" if is_tma[i] else "wsi"


class Slides(Classify):
    """``classify`` of whole slides through a backbone and MIL heads (a config with ``[slides]``)."""

    name = "slides"
    variant_of = "classify"
    config_type = classify_config.SlidesPipelineConfig

    report_type = SlidesReport

    def claims(self, data: dict) -> bool:
        return "slides" in data

    def find_inputs(self, cfg, input_dir, ids, report, sample=None):
        found, where = super().find_inputs(cfg, input_dir, ids, report, sample)
        if cfg.slides.tma_when is not None and found:
            _kinds_from_table(cfg, input_dir, found, report)
        return found, where

    def load(self, run, pending, report):
        from kagglekit.pipeline.ensemble import load_models
        from kagglekit.pipeline.slide_heads import slide_models

        backbone, name, kept, stain = slide_models(run.config, load_models(run.config.models, report), report)
        return kept, (backbone, name, stain)

    def predictor(self, run, kept, loaded, state, store_rows, report):
        from kagglekit.pipeline.degrade import Degrader
        from kagglekit.pipeline.slide_heads import slide_predictor

        backbone, name, stain = loaded
        cfg, degrader = run.config, Degrader(1, len(kept))
        bags = _Bags(cfg.slides, stain, cfg.num_workers, run.device, cfg.amp, report.original_size, report.slide_kind,
                     report.note_once, cfg.threads)
        temperature = state.decision.temperature if state.decision is not None else 1.0
        predict = slide_predictor(bags, backbone, name, [m.model for m in kept], [m.weight for m in kept], temperature,
                                  degrader, store_rows)
        return degrader, predict, 1, "slide"

    def preview_image(self, item):
        """A slide's thumbnail (a whole slide is never decoded for a picture)."""
        from kagglekit.io import open_image

        return open_image(item).thumbnail(384)

    def checked_files(self, cfg):
        return [*super().checked_files(cfg), ("slides backbone", lambda: check_backbone(cfg))]
