"""The classification pipeline's own configuration sections (the shared ones are in :mod:`.sections`).

    kind = "classify"
    [inputs]     glob = "test/*.jpg"  | channels = ["test/{id}_red.png", "test/{id}_green.png", ...]
                 id_from = "stem" | "parent"                     (with glob)
    [preprocess] size = 224 | [h, w]  resize = "resize" | "pad" | "center_crop" | "none"  normalize = "imagenet"
    [decision]   kind = "argmax" | "threshold" | "per_class" | "expected_fbeta" | "probability"
                 value = 0.5 (threshold)  beta = 2.0 (expected_fbeta)  file = "decision.json" (fit_decision's file:
                 thresholds, an entropy cut, a temperature)  activation = "sigmoid" | "softmax"
                 other = { label = "Other", cut = 0.9 } | { label = "Other", file = "decision.json" }
    [output]     sample_submission  submission  id_column  label_column  classes = [...] | classes_file = "classes.txt"
                 format = "labels" | "probability" | "columns"  separator = " "  fallback = "..."
    [slides]     backbone = "backbone.safetensors" | "timm/<name>"  weights = "<file>" (with a timm name)
                 tile = 224  scale = 1.0 | { tma = 0.5, wsi = 1.0 }  top_k = 256  min_tissue = 0.25
                 threshold = 230 | { tma = 240, wsi = 20 }  (the tissue/background brightness; default Otsu's)
                 kind = "auto" | "tma" | "wsi"  tma_max_side = 8192  swap_background = false | true | "tma"
                 stain = { method = "macenko" | "reinhard", reference = "reference_tile.png" }
                 normalize = "imagenet"  batch_size = 16 (default: 64 on CUDA, 16 on a CPU)
    amp = false | true | "auto" | "fp16" | "bf16"   batch_size = 32   num_workers = 2

With ``[slides]`` every input is a whole slide: it becomes a bag of tile features
(:func:`kagglekit.mil.extract_bag`) and the ``[[models]]`` are MIL heads (``train_heads``' fold
checkpoints); the probabilities are the mean of every head's softmax, weighted by model, and a decision
file's temperature divides their logarithm. ``[preprocess]`` and ``[tta]`` do not apply to slides.

Classes default to the names stored in the checkpoints (``save_checkpoint(..., classes=)``). Formats:
``labels`` writes the chosen class names joined by ``separator`` (one for ``argmax``); ``probability``
one probability per id (a model with one output, or the second of two); ``columns`` one column per class,
named as in the sample submission, with probabilities (``probability``) or 0/1 (the other kinds). The
fallback is the sample submission's own rows, or ``fallback`` in the label column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from kagglekit.pipeline import sections
from kagglekit.pipeline.sections import BudgetConfig, ModelConfig, OutputBase, PipelineConfigError, Table, TTAConfig

__all__ = ["ClassifyConfig"]

DECISION_KINDS = ("argmax", "threshold", "per_class", "expected_fbeta", "probability")
FORMATS = ("labels", "probability", "columns")
RESIZE = ("resize", "pad", "center_crop", "none")


@dataclass(frozen=True)
class InputsConfig:
    glob: str | None = "test/*"
    channels: tuple[str, ...] | None = None
    id_from: str = "stem"


@dataclass(frozen=True)
class PreprocessConfig:
    size: tuple[int, int] | None = None
    resize: str | None = "resize"
    normalize: object = "scale"


@dataclass(frozen=True)
class DecisionConfig:
    """``kind`` None: the decision file's; ``activation`` None: softmax for argmax, sigmoid for the others."""

    kind: str | None = "argmax"
    value: float = 0.5
    beta: float = 1.0
    file: Path | None = None
    activation: str | None = None
    other_label: str | None = None
    other_cut: float | None = None
    other_file: Path | None = None


@dataclass(frozen=True)
class OutputConfig(OutputBase):
    VALUE_KEY: ClassVar[str] = "label_column"
    label_column: str | None = None
    classes: tuple[str, ...] | None = None
    classes_file: Path | None = None
    format: str = "labels"
    separator: str = " "
    fallback: str | None = None

    def fill(self, reference) -> dict:
        """The fallback's replaced columns: ``fallback`` in the label column, or none (the sample's own rows)."""
        label = self.columns(reference)[1]
        return {label: self.fallback} if self.fallback is not None and label and self.format != "columns" else {}


@dataclass(frozen=True)
class SlidesConfig:
    """How a slide becomes a bag (see :func:`kagglekit.mil.extract_bag`); ``backbone`` is a checkpoint path or
    a ``timm/`` name (then ``weights`` is its local file)."""

    backbone: str
    weights: Path | None = None
    tile: int = 224
    scale: object = 1.0
    threshold: object = None
    top_k: int | None = None
    min_tissue: float = 0.25
    kind: str = "auto"
    tma_max_side: int = 8192
    swap_background: object = False
    stain_method: str | None = None
    stain_reference: Path | None = None
    normalize: object = "imagenet"
    batch_size: int | None = None


@dataclass(frozen=True)
class ClassifyConfig:
    models: tuple[ModelConfig, ...]
    inputs: InputsConfig = field(default_factory=InputsConfig)
    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    tta: TTAConfig = field(default_factory=TTAConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    slides: SlidesConfig | None = None
    device: str = "auto"
    workers: int | str = 1
    amp: object = False
    batch_size: int = 32
    num_workers: int = 2
    kind: str = "classify"


def _inputs(data) -> InputsConfig:
    t = Table(data, "inputs", ("glob", "channels", "id_from"))
    channels = t.data.get("channels")
    if channels is not None:
        if "glob" in t.data:
            t.fail("glob", "goes with files named by id, not with channels = [...]; give one of them")
        if (not isinstance(channels, list) or not channels
                or not all(isinstance(c, str) and "{id}" in c and not Path(c).is_absolute() for c in channels)):
            t.fail("channels", "must be a list of relative patterns with {id}, one per channel, e.g. "
                               "[\"test/{id}_red.png\", \"test/{id}_green.png\"]")
        return InputsConfig(None, tuple(channels), "stem")
    pattern = t.string("glob", "test/*")
    if not pattern or Path(pattern).is_absolute():
        t.fail("glob", "must be a non-empty pattern relative to the competition folder, e.g. 'test/*.jpg'")
    return InputsConfig(pattern, None, t.string("id_from", "stem", ("stem", "parent")))


def _preprocess(data) -> PreprocessConfig:
    t = Table(data, "preprocess", ("size", "resize", "normalize"))
    size = t.data.get("size")
    if size is not None:
        pair = size if isinstance(size, list) else [size]
        if len(pair) not in (1, 2) or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
            t.fail("size", "must be a positive integer or [height, width]")
        size = (pair[0], pair[-1])
    resize = t.string("resize", "resize", RESIZE)
    return PreprocessConfig(size, None if resize == "none" else resize, sections.normalize(t.data.get("normalize", "scale")))


def _slides(data, base: Path) -> SlidesConfig:
    t = Table(data, "slides", ("backbone", "weights", "tile", "scale", "threshold", "top_k", "min_tissue", "kind", "tma_max_side",
                               "swap_background", "stain", "normalize", "batch_size"))
    backbone = t.string("backbone", None)
    if not backbone:
        t.fail("backbone", "must name the feature extractor the bags were made with: a checkpoint "
                           "(\"backbone.safetensors\") or \"timm/<name>\" with weights = \"<local file>\"")
    weights = t.string("weights", None)
    if backbone.startswith("timm/") != (weights is not None):
        t.fail("weights", "goes with a timm name (backbone = \"timm/<name>\", weights = \"<local file>\"); "
                          "a checkpoint carries its own weights")
    scale, threshold = t.data.get("scale", 1.0), t.data.get("threshold")
    for key, value, example, high in (("scale", scale, "{ tma = 0.5, wsi = 1.0 }", float("inf")),
                                      ("threshold", threshold, "{ tma = 240, wsi = 20 }", 255)):
        values = value.values() if isinstance(value, dict) else [value]
        if value is not None and ((isinstance(value, dict) and (not value or set(value) - {"tma", "wsi"})) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= high for v in values)):
            t.fail(key, f"must be a positive number{' up to 255' if high == 255 else ''} or {example}")
    swap = t.data.get("swap_background", False)
    if swap not in (False, True, "tma"):
        t.fail("swap_background", "must be false, true or \"tma\" (only TMAs)")
    method = reference = None
    if "stain" in t.data:
        st = Table(t.data["stain"], "slides.stain", ("method", "reference"))
        method = st.string("method", None, ("macenko", "reinhard"))
        reference = st.string("reference", None)
        if not method or not reference:
            st.fail("reference", "a stain normaliser needs method = \"macenko\" | \"reinhard\" and reference = \"<tile image>\"")
    return SlidesConfig(backbone if weights is not None else str(base / backbone), base / weights if weights else None,
                        t.integer("tile", 224), scale, threshold, t.integer("top_k", None), t.number("min_tissue", 0.25, 0.0, 1.0),
                        t.string("kind", "auto", ("auto", "tma", "wsi")), t.integer("tma_max_side", 8192), swap,
                        method, base / reference if reference else None,
                        sections.normalize(t.data.get("normalize", "imagenet")), t.integer("batch_size", None))


def _decision(data, base: Path) -> DecisionConfig:
    t = Table(data, "decision", ("kind", "value", "beta", "file", "activation", "other"))
    file = t.string("file", None)
    kind = t.string("kind", None if file else "argmax", DECISION_KINDS)  # None: the decision file's kind
    if kind == "per_class" and file is None:
        t.fail("file", "is required for kind = 'per_class' (the thresholds fitted on out-of-fold predictions)")
    activation = t.string("activation", None, ("sigmoid", "softmax"))
    other = t.data.get("other")
    label = cut = other_file = None
    if other is not None:
        o = Table(other, "decision.other", ("label", "cut", "file"))
        label = o.string("label", None)
        if not label:
            o.fail("label", "must name the label to write for rejected rows, e.g. \"Other\"")
        if ("cut" in o.data) == ("file" in o.data):
            o.fail("cut", "give the entropy cut itself (cut = 0.9) or a decision file that holds it (file = ...), one of them")
        cut = o.number("cut", None, 0.0)
        other_file = base / o.string("file", None) if "file" in o.data else None
    return DecisionConfig(kind, t.number("value", 0.5, 0.0, 1.0), t.number("beta", 1.0, 0.0, open_low=True),
                          base / file if file else None, activation, label, cut, other_file)


def output(data, base: Path | None = None) -> OutputConfig:
    t = Table(data, "output", ("sample_submission", "submission", "id_column", "label_column", "classes",
                               "classes_file", "format", "separator", "fallback"))
    classes = t.data.get("classes")
    if classes is not None:
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes):
            t.fail("classes", "must be a list of class names, in the models' output order")
        if len(set(classes)) != len(classes):
            t.fail("classes", "must not repeat a name")
        if "classes_file" in t.data:
            t.fail("classes_file", "and classes say the same thing; give one of them")
    classes_file = t.string("classes_file", None)
    return OutputConfig(t.string("sample_submission", "sample_submission.csv"), t.string("submission", "submission.csv"),
                        t.string("id_column", None), t.string("label_column", None),
                        tuple(classes) if classes else None,
                        (base or Path.cwd()) / classes_file if classes_file else None,
                        t.string("format", "labels", FORMATS), t.string("separator", " "), t.string("fallback", None))


TOP_KEYS = ("kind", "inputs", "preprocess", "models", "tta", "decision", "output", "budget", "slides", "device", "workers", "amp",
            "batch_size", "num_workers")


def check(data: dict, base: Path) -> ClassifyConfig:
    """The ClassifyConfig of a TOML's ``data`` (paths relative to ``base``)."""
    top = Table(data, "", TOP_KEYS)
    if "models" not in data:
        raise PipelineConfigError("models: missing; add [[models]] path = \"<checkpoint>.safetensors\"")
    tta = sections.tta(data.get("tta", {}))
    if tta.mode != "merge":
        raise PipelineConfigError("tta.mode: 'cycle' is for tiles of one image (segment); classify merges every view")
    decision = _decision(data.get("decision", {}), base)
    out = output(data.get("output", {}), base)
    if decision.kind == "probability" and out.format == "labels":
        raise PipelineConfigError("output.format: decision.kind = 'probability' writes probabilities; use format = "
                                  "'probability' (one column) or 'columns' (one per class)")
    if out.format == "probability" and decision.kind not in ("probability", None):
        raise PipelineConfigError(f"decision.kind: output.format = 'probability' writes one probability per id, not "
                                  f"the decision of kind {decision.kind!r}; use kind = 'probability'")
    slides = _slides(data["slides"], base) if "slides" in data else None
    if slides is not None:
        for name in ("preprocess", "tta"):
            if name in data:
                raise PipelineConfigError(f"{name}: does not apply with [slides] (tiles are sized by slides.tile, and "
                                          "a bag has no views); remove it")
    amp = data.get("amp", False)
    if amp not in (False, True, "auto", "fp16", "bf16"):
        top.fail("amp", "must be false, true, 'auto', 'fp16' or 'bf16'")
    return ClassifyConfig(
        models=sections.models(data["models"], base), inputs=_inputs(data.get("inputs", {})),
        preprocess=_preprocess(data.get("preprocess", {})), tta=tta, decision=decision, output=out,
        budget=sections.budget(data.get("budget", {})), slides=slides, device=sections.device(top.string("device", "auto")),
        workers=sections.workers(top), amp=amp, batch_size=top.integer("batch_size", 32), num_workers=top.integer("num_workers", 2, minimum=0))
