"""The classification pipeline's configuration: its own sections (``[inputs]``, ``[preprocess]`` size and
resize, ``[decision]``, its ``[output]`` keys, ``[slides]``) on the shared ones of :mod:`.sections`.
Every key, its type, default and meaning: :func:`kagglekit.pipeline.config.reference`.

With ``[slides]`` every input is a whole slide. Route ``"mil"``: it becomes a bag of tile features
(:func:`kagglekit.mil.extract_bag`) and the ``[[models]]`` are MIL heads (``train_heads``' fold
checkpoints); the probabilities are the mean of every head's softmax, weighted by model. Route
``"tiles"``: the ``[[models]]`` are tile classifiers (classify checkpoints) run with the ``[tta]`` views
over the slide's tiles (the top-K by tissue with ``top_k``), their probabilities aggregated per class
(:func:`kagglekit.mil.classify_tiles`). Either way a decision file's temperature divides the log of the
slide's probabilities. ``[slides.tma]`` and ``[slides.wsi]`` give a kind its own keys (route, tile,
scale, backbone, ...) and ``[[slides.<kind>.models]]``; the kind comes from ``tma_when``, ``kind`` or the
thumbnail. ``[preprocess]`` does not apply to slides, ``[tta]`` only to route ``"tiles"``.

Classes default to the names stored in the checkpoints (``save_checkpoint(..., classes=)``). Formats:
``labels`` writes the chosen class names joined by ``separator`` (one for ``argmax``); ``probability``
one probability per id (a model with one output, or the second of two); ``columns`` one column per class,
named as in the sample submission, with probabilities (``probability``) or 0/1 (the other kinds). The
fallback is the sample submission's own rows, or ``fallback`` in the label column.

``[stack] file``: a stacker (``fit_stacker(...).save``) or blend file (:mod:`kagglekit.thresholds.stack_files`)
applied to each model's probabilities (its views merged; models in ``[[models]]`` order) instead of their
weighted mean, before the decision. Every model is then needed: none is dropped for time or skipped.

``[memory]`` is read as in segment, but only ``offload`` is taken for now: ``max_resident`` and ``fp16``
are refused (classify keeps every model on the device; ``amp`` is its mixed precision).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from kagglekit.errors import InvalidArgumentError
from kagglekit.pipeline import sections
from kagglekit.pipeline.schema import (Choice, File, Integer, Name, Number, OneOf, PipelineConfigError, Rule, String, Table,
                                       Tables, Via, declared, lazy, option, section)
from kagglekit.pipeline.inputs import PatternInputs
from kagglekit.pipeline.sections import ID_FROM, ModelConfig, Normalize, OutputBase, PipelineBase, Relative, prediction_column

__all__ = ["ClassifyConfig", "SlidesPipelineConfig"]

DECISION_KINDS = ("argmax", "threshold", "per_class", "expected_fbeta", "probability")
FORMATS = ("labels", "probability", "columns")
RESIZE = ("resize", "pad", "center_crop", "none")


def _numbers(values, high: float) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= high for v in values)


def _per_kind(high: float, example: str) -> Rule:
    """A positive number up to ``high``, or one per slide kind ``{ tma = ..., wsi = ... }``."""
    return Rule(f"number | {example}", (lambda v: _numbers(v.values(), high) and bool(v) and not set(v) - {"tma", "wsi"}
                                        if isinstance(v, dict) else _numbers([v], high),
                                        f"must be a positive number{' up to 255' if high == 255 else ''} or {example}"))


CHANNELS = Rule("[patterns with {id}]", (lambda v: isinstance(v, list) and bool(v) and all(
    isinstance(c, str) and "{id}" in c and not Path(c).is_absolute() for c in v),
    'must be a list of relative patterns with {id}, one per channel, e.g. ["test/{id}_red.png", "test/{id}_green.png"]'),
    hold=tuple)
SIZE = Rule("integer | [height, width]", (lambda v: len(v if isinstance(v, list) else [v]) in (1, 2) and all(
    isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in (v if isinstance(v, list) else [v])),
    "must be a positive integer or [height, width]"), hold=lambda v: (v[0], v[-1]) if isinstance(v, list) else (v, v))
CLASSES = Rule("[class names]", (lambda v: isinstance(v, list) and bool(v) and all(isinstance(c, str) and c for c in v),
                                 "must be a list of class names, in the models' output order"),
               (lambda v: len(set(v)) == len(v), "must not repeat a name"), hold=tuple)


class Resize(String):
    """A resize mode; ``"none"`` is held as None."""

    def convert(self, value, table):
        return None if super().convert(value, table) == "none" else value


@dataclass(frozen=True, kw_only=True)
class InputsConfig(PatternInputs):
    glob: str | None = option("test/*", check=Relative("test/*.jpg"), help="the input files, relative to the input folder")
    channels: tuple[str, ...] | None = option(None, check=CHANNELS,
                                              help="one file per channel instead of glob, e.g. [\"test/{id}_red.png\", ...]")
    id_from: str = option("stem", check=ID_FROM, help="the image's id: its file's stem or its folder's name (with glob)")

    def validate(self, t: Table):
        self.check_files(t)
        if self.channels is not None:
            if self.files is not None:
                t.fail("files", "and channels both name each id's files; give one of them")
            if "glob" in t.data:
                t.fail("glob", "goes with files named by id, not with channels = [...]; give one of them")
            return dataclasses.replace(self, glob=None, id_from="stem")
        return None


@dataclass(frozen=True, kw_only=True)
class PreprocessConfig(sections.PreprocessConfig):
    size: tuple[int, int] | None = option(None, check=SIZE, help="the models' input size (none: as read)")
    resize: str | None = option("resize", check=Resize(RESIZE), help="how an image reaches size")


@dataclass(frozen=True, kw_only=True)
class OtherConfig:
    label: str = option(check=Name('the label to write for rejected rows, e.g. "Other"'), help="the label of rejected rows")
    cut: float | None = option(None, check=Number(0.0), help="the entropy above which a row is rejected")
    file: Path | None = option(None, check=File("a decision file that holds the cut"), help="or a decision file that holds it")

    def validate(self, t: Table) -> None:
        if (self.cut is None) == (self.file is None):
            t.fail("cut", "give the entropy cut itself (cut = 0.9) or a decision file that holds it (file = ...), one of them")


NAMES = Rule("[class names]", (lambda v: isinstance(v, list) and bool(v) and all(isinstance(c, str) and c for c in v),
                                "must be a list of class names"), hold=tuple)
STRUCTURED = ("threshold", "per_class", "expected_fbeta", None)


@dataclass(frozen=True, kw_only=True)
class GroupConfig:
    labels: tuple[str, ...] = option(check=NAMES, help="class names of which a row gets one (exactly_one) or at most one")
    rule: str = option(check=Choice("exactly_one", "at_most_one"), help="how many of the group's labels a row gets")


def groups_option():
    """The ``groups`` key of a ``[decision]``: exclusive labels (a fresh field for each section that has it)."""
    return option(None, check=Tables(GroupConfig, "group", '[[decision.groups]] labels = ["clear", "haze"], '
                                                           'rule = "exactly_one"'), help="exclusive labels")


def alone_option():
    """The ``alone`` key of a ``[decision]``: labels that go alone."""
    return option(None, check=NAMES, help='labels that, when chosen, are a row\'s only label (Planet: ["cloudy"])')


class StructureKeys:
    """``groups`` and ``alone`` of a ``[decision]`` as a :class:`~kagglekit.thresholds.LabelStructure`."""

    def label_structure(self):
        """The :class:`~kagglekit.thresholds.LabelStructure` of ``groups`` and ``alone`` (None without either)."""
        from kagglekit.thresholds.structure import LabelStructure

        if not self.groups and not self.alone:
            return None
        return LabelStructure(tuple((g.labels, g.rule) for g in self.groups or ()), self.alone or ())

    def check_structure(self, t: Table, kind: str | None) -> None:
        """Refuse a structure for ``kind`` other than the threshold kinds, or one that contradicts itself (on the
        names it uses; the classes are checked once known)."""
        if not self.groups and not self.alone:
            return
        key = "groups" if self.groups else "alone"
        if kind not in STRUCTURED:
            t.fail(key, f"a label structure goes with kind = 'threshold', 'per_class' or 'expected_fbeta', not {kind!r}")
        try:
            self.label_structure().bind(sorted({n for g in self.groups or () for n in g.labels} | set(self.alone or ())))
        except InvalidArgumentError as exc:
            raise PipelineConfigError(f"{t.where(key)}: {exc}") from None


@dataclass(frozen=True, kw_only=True)
class DecisionConfig(StructureKeys):
    """``kind`` None: the decision file's; ``activation`` None: softmax for argmax, sigmoid for the others.
    ``groups`` and ``alone`` make a :class:`~kagglekit.thresholds.LabelStructure` (the class names are checked
    when the classes are known: ``--check`` and the run)."""

    kind: str | None = option("argmax", check=Choice(*DECISION_KINDS), help="the decision (with file and no kind: the file's)")
    value: float = option(0.5, check=Number(0.0, 1.0), help="the probability cut of kind = \"threshold\"")
    beta: float = option(1.0, check=Number(0.0, open_low=True), help="the beta of kind = \"expected_fbeta\"")
    file: Path | None = option(None, check=File("a decision file written by kagglekit.thresholds.fit_decision"),
                               help="fit_decision's file: thresholds, an entropy cut, a temperature")
    activation: str | None = option(None, check=Choice("sigmoid", "softmax"), help="none: softmax for argmax, else sigmoid")
    other: OtherConfig | None = section(OtherConfig, optional=True, help='rows of an unseen class ("Other")')
    groups: tuple[GroupConfig, ...] | None = groups_option()
    alone: tuple[str, ...] | None = alone_option()

    def validate(self, t: Table):
        if self.kind == "per_class" and self.file is None:
            t.fail("file", "is required for kind = 'per_class' (the thresholds fitted on out-of-fold predictions)")
        kind = None if "kind" not in t.data and self.file is not None else self.kind
        self.check_structure(t, kind)
        return dataclasses.replace(self, kind=None) if kind is None else None

    other_label = Via("other", "label")
    other_cut = Via("other", "cut")
    other_file = Via("other", "file")


CLASS_OR_INDEX = Rule("class name | index", (lambda v: (isinstance(v, str) and bool(v)) or (
    isinstance(v, int) and not isinstance(v, bool) and v >= 0), "must be a class name or an output index >= 0"))


@dataclass(frozen=True, kw_only=True)
class OutputConfig(OutputBase):
    label_column: str | None = prediction_column("label")
    classes: tuple[str, ...] | None = option(None, check=CLASSES, help="the class names (default: the checkpoints')")
    classes_file: Path | None = option(None, check=File("a file of class names, one a line"), help="or a file of them")
    format: str = option("labels", check=Choice(*FORMATS), help="labels, one probability, or a column per class")
    separator: str = option(" ", check=String(), help="between the labels of a row")
    fallback: str | None = option(None, check=String(), help="the label of a row that falls back (none: the sample's)")
    value: str | int | None = option(None, check=CLASS_OR_INDEX,
                                     help="with format = \"probability\": the class whose probability is written, a name "
                                          "or an index (default: the one output, or the second of two)")

    def validate(self, t: Table) -> None:
        if self.classes is not None and self.classes_file is not None:
            t.fail("classes_file", "and classes say the same thing; give one of them")
        if self.value is not None and self.format != "probability":
            t.fail("value", "picks the class of format = 'probability' (one probability per id); set format = "
                            "'probability', or drop value")

    def fill(self, reference) -> dict:
        """The fallback's replaced columns: ``fallback`` in the label column, or none (the sample's own rows)."""
        label = self.columns(reference)[1]
        return {label: self.fallback} if self.fallback is not None and label and self.format != "columns" else {}


@dataclass(frozen=True, kw_only=True)
class StackConfig:
    file: Path = option(check=File('a stacker (fit_stacker(...).save) or blend file, e.g. "stacker.json"'),
                        help="applied to the models' probabilities (in [[models]] order; the folds of a variant "
                             "averaged first) instead of their weighted mean")


@dataclass(frozen=True, kw_only=True)
class StainConfig:
    method: str = option(check=Choice("macenko", "reinhard"), help="the stain normaliser")
    reference: Path = option(check=File('the tile image to match, e.g. "reference_tile.png"'), help="the tile it matches")


ROUTES = ("mil", "tiles")
KINDS = ("tma", "wsi")


@dataclass(frozen=True, kw_only=True)
class SlideSettings:
    """The ``[slides]`` keys that a per-kind branch (``[slides.tma]``, ``[slides.wsi]``) may set again."""

    route: str = option("mil", check=Choice(*ROUTES),
                        help='"mil": a bag of backbone features, then MIL heads; "tiles": [[models]] are tile '
                             "classifiers, their tile probabilities aggregated")
    backbone: str | None = option(None, check=Name('the feature extractor the bags were made with: a checkpoint '
                                                   '("backbone.safetensors") or "timm/<name>" with weights = "<local file>"'),
                                  help="the bags' feature extractor (route \"mil\"): a checkpoint or \"timm/<name>\"")
    weights: Path | None = option(None, check=File("the timm backbone's local weights file"), help="with a timm name")
    tile: int = option(224, check=Integer(), help="the tile side")
    scale: object = option(1.0, check=_per_kind(float("inf"), "{ tma = 0.5, wsi = 1.0 }"), help="tiles read at this scale")
    threshold: object = option(None, check=_per_kind(255, "{ tma = 240, wsi = 20 }"),
                               help="the tissue/background brightness (none: Otsu's)")
    top_k: int | None = option(None, check=Integer(), help="at most K tiles, the most tissue first (none: all)")
    min_tissue: float = option(0.25, check=Number(0.0, 1.0), help="the tissue fraction a tile needs")
    swap_background: object = option(False, check=OneOf((False, True, "tma"), 'must be false, true or "tma" (only TMAs)'),
                                      help="the background made black")
    normalize: object = option("imagenet", check=Normalize(), help="the backbone's or tile classifiers' input normalisation")
    batch_size: int | None = option(None, check=Integer(), help="tiles per model call (none: 64 on CUDA, 16 on a CPU)")
    aggregate: str | None = option(None, check=String(lazy("kagglekit.mil.tiles", "AGGREGATES")),
                                   help='route "tiles": the slide\'s probabilities from its tiles\', per class (none: "mean")')
    aggregate_k: int | None = option(None, check=Integer(), help='the tiles averaged per class by aggregate = "topk_mean"')

    def aggregation(self) -> tuple[str, int | None]:
        """(how, k) of route "tiles" (:func:`kagglekit.mil.tiles.aggregate_tiles`)."""
        return self.aggregate or "mean", self.aggregate_k


SETTINGS = tuple(f.name for f, _ in declared(SlideSettings))


def _rebased(settings, t: Table):
    """``settings`` with a checkpoint ``backbone`` relative to the config's folder (a timm name stays)."""
    if settings.backbone is None or settings.backbone.startswith("timm/"):
        return settings
    return dataclasses.replace(settings, backbone=str(t.base / settings.backbone))


USES = {"backbone": ("mil", 'goes with route = "mil" (bags of features), but the slides that read it take route = '
                                '"tiles", whose [[models]] classify the tiles themselves; remove it'),
        "aggregate": ("tiles", 'goes with route = "tiles" (tile probabilities), but the slides that read it take route = '
                               '"mil", whose MIL heads classify the bag; remove it')}
USES["weights"], USES["aggregate_k"] = USES["backbone"], USES["aggregate"]


def _check_unused(t: Table, made) -> None:
    """Refuse a key of ``[slides]`` or of a branch that no slide reading it from there uses (its route's key)."""
    kinds = made.kinds()
    for key, (route, refusal) in USES.items():
        tables = [(t, [k for k in kinds if k is None or key not in (t.data.get(k) or {})])]
        tables += [(Table(t.data[k], f"slides.{k}", t.data[k]), [k]) for k in kinds if k is not None and k in t.data]
        for table, readers in tables:
            if key in table.data and all(made.branch(k).route != route for k in readers):
                table.fail(key, refusal)


def _branch_validate(self, t: Table):
    for key in ("scale", "threshold"):
        if isinstance(getattr(self, key), dict):
            t.fail(key, "is per kind already in a branch of one kind; give a number")
    return _rebased(self, t)


SlidesBranch = dataclasses.make_dataclass(
    "SlidesBranch",
    [(f.name, object, option(None, check=d.check, help=f"{d.help}; none: [slides]'s")) for f, d in declared(SlideSettings)]
    + [("models", object, option(None, check=Tables(ModelConfig, "checkpoint", '[[slides.tma.models]] path = "tma.safetensors"'),
                                 help="this kind's checkpoints (none: the top-level [[models]])"))],
    frozen=True, kw_only=True, namespace={"validate": _branch_validate, "__doc__":
        "``[slides.tma]`` / ``[slides.wsi]``: the slides of one kind with their own settings and models; an absent key is [slides]'s."})


@dataclass(frozen=True, kw_only=True)
class SlidesConfig(SlideSettings):
    """How a slide becomes a bag (see :func:`kagglekit.mil.extract_bag`, route ``"mil"``) or tile
    probabilities (:func:`kagglekit.mil.classify_tiles`, route ``"tiles"``); ``backbone`` is a checkpoint
    path or a ``timm/`` name (then ``weights`` is its local file). ``tma`` and ``wsi``: per-kind branches;
    :meth:`branch` gives a kind's settings."""

    kind: str = option("auto", check=Choice("auto", *KINDS), help="TMA (on white) or WSI (on black)")
    tma_when: str | None = option(None, check=Name('a column or SQL expression over [inputs.table], e.g. "image_width < 6000"'),
                                  help="each slide's kind from [inputs.table]: TMA where this column or SQL expression "
                                       "is true (\"image_width < 6000\"), else WSI")
    tma_max_side: int = option(8192, check=Integer(), help="a slide of at most this side may be a TMA")
    stain: StainConfig | None = section(StainConfig, optional=True, help="stain normalisation")
    tma: SlidesBranch | None = section(SlidesBranch, optional=True, help="TMAs' own settings and models")
    wsi: SlidesBranch | None = section(SlidesBranch, optional=True, help="WSIs' own settings and models")

    def kinds(self) -> tuple[str | None, ...]:
        """The slide kinds that take settings of their own: (None,) without branches (one setting for every
        slide), else ``("tma", "wsi")`` (a kind without its branch takes ``[slides]``'s), or the one ``kind``."""
        if self.tma is None and self.wsi is None:
            return (None,)
        return KINDS if self.kind == "auto" else (self.kind,)

    def branch(self, kind: str | None) -> "SlidesConfig":
        """The settings slides of ``kind`` run with: ``[slides]`` with its branch's keys (None: ``[slides]``)."""
        sub = getattr(self, kind) if kind is not None else None
        if sub is None:
            return self
        return dataclasses.replace(self, **{k: getattr(sub, k) for k in SETTINGS if getattr(sub, k) is not None})

    def models_of(self, kind: str | None, models):
        """The checkpoints of ``kind``'s branch, or ``models`` (the top-level ``[[models]]``)."""
        sub = getattr(self, kind) if kind is not None else None
        return sub.models if sub is not None and sub.models is not None else models

    def validate(self, t: Table):
        made = _rebased(self, t)
        for kind in made.kinds():
            _check_settings(kind, made.branch(kind))
        _check_unused(t, made)
        if made.kind != "auto":
            other = next((k for k in KINDS if k != made.kind and getattr(made, k) is not None), None)
            if other is not None:
                raise PipelineConfigError(f"slides.{other}: slides.kind = {made.kind!r} makes every slide a "
                                          f"{made.kind.upper()}, so this branch would never run; remove it, or set "
                                          "kind = \"auto\" (or tma_when) to tell the kinds apart")
        return made

    stain_method = Via("stain", "method")
    stain_reference = Via("stain", "reference")


def _check_settings(kind: str | None, settings: SlideSettings) -> None:
    """Refuse the settings of ``kind``'s slides (``[slides]`` with its branch) that cannot run."""
    where = f"slides.{kind}" if kind else "slides"
    if settings.route == "mil" and settings.backbone is None:
        raise PipelineConfigError(f'{where}: route = "mil" needs backbone = "..." (the extractor the bags were made '
                                  'with), in [slides] or here; or set route = "tiles" for tile classifiers')
    if settings.route == "mil" and settings.backbone.startswith("timm/") != (settings.weights is not None):
        raise PipelineConfigError(f"{where}.weights: goes with a timm name (backbone = \"timm/<name>\", weights = "
                                  "\"<local file>\"); a checkpoint carries its own weights")
    if settings.route == "tiles" and (settings.aggregate == "topk_mean") != (settings.aggregate_k is not None):
        raise PipelineConfigError(f'{where}.aggregate_k: goes with aggregate = "topk_mean" (the tiles averaged per '
                                  f"class), and only with it; got aggregate = {settings.aggregate!r}, aggregate_k = "
                                  f"{settings.aggregate_k!r}")


def stack_inputs(models) -> list[list[int]]:
    """The ``[stack]`` inputs: indices into ``models``, a variant's checkpoints together (in order of first
    appearance); a checkpoint without ``variant`` is an input of its own."""
    groups: dict = {}
    for k, m in enumerate(models):
        groups.setdefault(m.variant if m.variant is not None else ("model", k), []).append(k)
    return list(groups.values())


SEGMENT_ONLY = {"max_resident": "classify keeps every model on the device", "fp16": "use amp = \"fp16\" for mixed precision"}


@dataclass(frozen=True, kw_only=True)
class ClassifyConfig(PipelineBase):
    inputs: InputsConfig = section(InputsConfig, help="the test images")
    preprocess: PreprocessConfig = section(PreprocessConfig, help="the models' input")
    batch_size: int = option(32, check=Integer(), help="images per model call")
    num_workers: int = option(2, check=Integer(0), help="image decoding threads")
    decision: DecisionConfig = section(DecisionConfig, help="probabilities -> labels")
    stack: StackConfig | None = section(StackConfig, optional=True, help="a second level over the models' probabilities")
    output: OutputConfig = section(OutputConfig, help="the submission")
    slides: SlidesConfig | None = section(SlidesConfig, optional=True,
                                          help="each input a whole slide: a bag then MIL heads, or tile classifiers")
    kind: str = field(default="classify", init=False)

    def validate(self, t: Table) -> None:
        memory = t.data.get("memory", {})
        for key, instead in SEGMENT_ONLY.items():
            if isinstance(memory, dict) and key in memory:
                raise PipelineConfigError(f"memory.{key}: is segment-only for now; {instead}")
        if self.tta.mode != "merge":
            raise PipelineConfigError("tta.mode: 'cycle' is for tiles of one image (segment); classify merges every view")
        size = self.preprocess.size if self.slides is None else None
        too_big = [v for v in self.tta.views if size and any(c > s for c, s in zip(getattr(v, "size", ()), size))]
        if too_big:
            raise PipelineConfigError(f"tta.views: {too_big[0].name} crops more than the images' preprocess.size {list(size)}; "
                                      "crop at most that size, or raise preprocess.size")
        decision, out = self.decision, self.output
        if decision.kind == "probability" and out.format == "labels":
            raise PipelineConfigError("output.format: decision.kind = 'probability' writes probabilities; use format = "
                                      "'probability' (one column) or 'columns' (one per class)")
        if out.format == "probability" and decision.kind not in ("probability", None):
            raise PipelineConfigError(f"decision.kind: output.format = 'probability' writes one probability per id, not "
                                      f"the decision of kind {decision.kind!r}; use kind = 'probability'")
        self._check_inputs()
        self._check_stack(t)
        if self.slides is not None:
            self._check_slides(t)

    def _check_slides(self, t: Table) -> None:
        """``[preprocess]`` never goes with ``[slides]``, ``[tta]`` only with route "tiles"; the top-level
        ``[[models]]`` must serve some slides."""
        slides = self.slides
        if "preprocess" in t.data:
            raise PipelineConfigError("preprocess: does not apply with [slides] (tiles are sized by slides.tile and "
                                      "normalised by slides.normalize); remove it")
        if "tta" in t.data and all(slides.branch(k).route == "mil" for k in slides.kinds()):
            raise PipelineConfigError('tta: applies to route = "tiles" (views of each tile), and a bag has no views; '
                                      "remove it")
        own = [k for k in slides.kinds() if k is not None and slides.models_of(k, None) is not None]
        if own and len(own) == len(slides.kinds()):
            raise PipelineConfigError(f"models: {' and '.join(f'[[slides.{k}.models]]' for k in own)} give every slide "
                                      "kind its own checkpoints, so the top-level [[models]] would run on no slide; "
                                      "move one kind's models to [[models]]")

    def _check_stack(self, t: Table) -> None:
        """``[stack]`` combines the models itself: no weights, no MIL heads (the file's fit: at run and ``--check``)."""
        if self.stack is None:
            varied = [k for k, m in enumerate(self.models) if m.variant is not None]
            if varied:
                raise PipelineConfigError(f"models[{varied[0]}].variant: groups folds into one input of [stack]; add "
                                          "[stack] file = ..., or remove variant")
            return
        if self.slides is not None:
            raise PipelineConfigError("stack: does not apply with [slides] (the MIL heads' probabilities are averaged "
                                      "by weight); remove [stack]")
        models = t.data.get("models")
        weighted = [k for k, m in enumerate(models if isinstance(models, list) else [models]) if "weight" in m]
        if weighted:
            raise PipelineConfigError(f"models[{weighted[0]}].weight: with [stack] the stack file combines the models "
                                      "(its weights or stacker); remove weight from [[models]]")

    def _check_inputs(self) -> None:
        """A file's scale and a slide kind from the table go with [slides] (and the table with tma_when)."""
        scaled = [f.pattern for f in self.inputs.files or () if f.scale is not None]
        if scaled and self.slides is None:
            raise PipelineConfigError(f"inputs.files: {scaled[0]!r} has a scale, but classify resizes every image to "
                                      "preprocess.size, so its scale changes nothing; remove it (it matters to [slides] "
                                      "and segment)")
        if self.slides is not None and self.slides.tma_when is not None:
            if self.inputs.table is None:
                raise PipelineConfigError(f"slides.tma_when: {self.slides.tma_when!r} is read from [inputs.table]; add "
                                          'it (UBC-OCEAN: path = "test.csv")')
            if self.slides.kind != "auto":
                raise PipelineConfigError(f"slides.kind: {self.slides.kind!r} and tma_when both set the slides' kind; "
                                          "give one of them")


@dataclass(frozen=True, kw_only=True)
class SlidesPipelineConfig(ClassifyConfig):
    """A classify config with ``[slides]``: what the ``slides`` kind runs (its ``kind`` says so)."""

    kind: str = field(default="slides", init=False)

    def validate(self, t: Table) -> None:
        if self.slides is None:
            raise PipelineConfigError("slides: missing; kind = 'slides' needs a [slides] section (backbone = ...)")
        super().validate(t)
