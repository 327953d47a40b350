"""``slides``, the variant of ``classify`` chosen by a ``[slides]`` section: each input slide is classified
from its tissue tiles, by one of two routes, per slide kind.

Route ``"mil"``: the backbone is built once from ``[slides]``; the ``[[models]]`` are MIL heads (a
``HeadEnsemble`` per fold from :func:`kagglekit.mil.train_heads`, or a single head), each wrapped so that it
returns the log of its heads' mean softmax, probed once on a zero bag, and refused when the heads were
trained on bags of another backbone (their checkpoint says which); per slide the bag, then the models'
probabilities averaged with their weights (:mod:`kagglekit.pipeline.slide_heads`). Route ``"tiles"``: the
``[[models]]`` are tile classifiers, probed on a zero tile; per slide its tiles through them with the
``[tta]`` views, the tile probabilities aggregated per class (:mod:`kagglekit.pipeline.slide_tiles`).

``[slides.tma]`` / ``[slides.wsi]`` give a kind its own settings and models: each slide's kind comes from
``tma_when`` over the table, else ``kind``, else its thumbnail (:func:`kagglekit.tiling.slide_kind`, on
the same thumbnail the plan then uses: one pass over a streamed PNG). Models loaded once per distinct
(models, route, backbone). Then the decision's temperature on the log of the slide's probabilities. A
slide without tissue, or one that cannot be read, keeps its fallback row with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from kagglekit.pipeline import classify_config
from kagglekit.pipeline.classification import Classify, ClassifyReport
from kagglekit.pipeline.sections import PipelineConfigError

__all__ = ["Slides", "SlidesReport", "check_backbone"]


def _expected_name(settings) -> str:
    """The name bags of a kind's backbone carry (:func:`kagglekit.mil.backbone_name`), from the files alone."""
    from kagglekit.mil.extract import model_name
    from kagglekit.models import checkpoint_info

    if settings.weights is not None:
        return model_name(settings.backbone, settings.weights)
    return model_name(checkpoint_info(settings.backbone)["name"], settings.backbone)


def check_backbone(cfg) -> str:
    """For ``classify --check``: each route "mil" kind's backbone file (checkpoint header and checksum, or the
    weights file) and that every head of it was trained on bags of this backbone, and the stain reference;
    builds no model."""
    from kagglekit.models import checkpoint_info, verify_checkpoint

    slides, said = cfg.slides, []
    if slides.stain_reference is not None and not slides.stain_reference.is_file():
        raise PipelineConfigError(f"slides.stain.reference: {slides.stain_reference} not found")
    for kind in slides.kinds():
        settings = slides.branch(kind)
        if settings.route != "mil":
            said.append(f"{kind or 'every slide'}: tile classifiers")
            continue
        if settings.weights is not None:
            if not settings.weights.is_file():
                raise PipelineConfigError(f"slides.weights: {settings.weights} not found")
        else:
            verify_checkpoint(settings.backbone)
        name = _expected_name(settings)
        for m in slides.models_of(kind, cfg.models):
            trained_on = (checkpoint_info(m.path).get("metadata") or {}).get("backbone") if m.path.is_file() else None
            if trained_on and trained_on != name:
                raise PipelineConfigError(f"models: {m.path} was trained on bags of {trained_on!r}, not {name!r}")
        said.append(f"{name}; every head's bags came from it" if kind is None else f"{kind}: {name}")
    return "; ".join(said)


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
class _Reader:
    """How each slide is read in this run, fixed once: the slide's kind, and the options of
    :func:`kagglekit.mil.extract_bag` / :func:`kagglekit.mil.classify_tiles` under its kind's settings;
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

    def file_scale(self, source, slide_id: str) -> float:
        """The file's scale of the original (1 unless it is a smaller file, a thumbnail)."""
        return source.shape[1] / self.originals[slide_id][1] if slide_id in self.originals else 1.0

    def tma_max_side(self, source, slide_id: str) -> int:
        """``slides.tma_max_side`` (a side of the original) in the file's pixels."""
        return max(1, round(self.slides.tma_max_side * self.file_scale(source, slide_id)))

    def kind_of(self, source, slide_id: str) -> str | None:
        """The slide's kind: the table's, ``slides.kind``, or with branches and ``kind = "auto"`` its
        thumbnail's (:func:`kagglekit.tiling.slide_kind`); None ("auto" left to the plan) without branches."""
        from kagglekit.tiling import slide_kind

        s = self.slides
        kind = self.kinds.get(slide_id, None if s.kind == "auto" else s.kind)
        if kind is not None or s.kinds() == (None,):
            return kind
        return slide_kind(source.thumbnail(1024), source.shape, self.tma_max_side(source, slide_id))

    def options(self, settings, source, slide_id: str, kind: str | None) -> dict:
        """The reading options of ``slide_id`` under ``settings`` (its kind's)."""
        s = settings
        kind = kind or "auto"
        scale = s.scale[kind] if isinstance(s.scale, dict) and kind in s.scale else s.scale  # "auto": per kind
        if slide_id in self.originals:  # a smaller file: scales of the original, as this file's
            scale = _of_file(scale, self.file_scale(source, slide_id), self.note)
        return dict(slide=slide_id, tile=s.tile, scale=scale, threshold=s.threshold, min_tissue=s.min_tissue,
                    top_k=s.top_k, kind=kind, tma_max_side=self.tma_max_side(source, slide_id),
                    swap_background=s.swap_background,
                    stain=self.stain, normalize=s.normalize, batch_size=s.batch_size, num_workers=self.num_workers,
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
        """(every kind's kept models, {kind: (its settings, its models: MilModels / TileModels) or None})."""
        from kagglekit.pipeline.slide_routes import load_routes

        return load_routes(run.config, report)

    def predictor(self, run, kept, loaded, state, store_rows, report):
        from kagglekit.pipeline.degrade import Degrader
        from kagglekit.pipeline.slide_heads import stain_normalizer
        from kagglekit.pipeline.slide_routes import slide_predictor

        cfg, routes = run.config, loaded
        engines = [r[1] for r in routes.values() if r is not None]
        degrader = Degrader(max(len(e.views) for e in engines), max(len(e.kept) for e in engines))
        reader = _Reader(cfg.slides, stain_normalizer(cfg.slides), cfg.num_workers, run.device, cfg.amp,
                         report.original_size, report.slide_kind, report.note_once, cfg.threads)
        temperature = state.decision.temperature if state.decision is not None else 1.0
        return degrader, slide_predictor(reader, routes, temperature, degrader, store_rows), 1, "slide"

    def preview_image(self, item):
        """A slide's thumbnail (a whole slide is never decoded for a picture)."""
        from kagglekit.io import open_image

        return open_image(item).thumbnail(384)

    def checked_files(self, cfg):
        return [*super().checked_files(cfg), ("slides backbone", lambda: check_backbone(cfg))]
