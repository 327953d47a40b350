"""The training config behind ``kagglekit train CONFIG``, declared like the kernel's (:mod:`kagglekit.pipeline.schema`).

    kind = "classify"                      # the kernel pipeline the models are for: classify or segment
    [data]                                 # the training table and images (kagglekit.data.ImageDataset)
    table = "train.csv"; images = "train/{id}.jpg"; label = "tags"; target = "multi_hot"
    [preprocess]                           # the kernel's own section: size, resize, normalize
    [model]                                # kagglekit.models.create: name, weights (a local file), args
    [train]                                # kagglekit.train.fit's options, and the loss
    [augment]                              # transform: a kagglekit.augment preset or an A.save file
    [folds]                                # n folds by kagglekit.cv.make_folds, or the table's fold column
    [decision]                             # what is fitted on the OOF predictions (kagglekit.thresholds.fit_decision)
    [kernel]                               # the kernel config's own [inputs], [output], [tta], [budget]

Every key, its type, default and meaning: :func:`reference`. The written kernel config reads
``[preprocess]`` from here, so that the kernel feeds the models what training fed them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from kagglekit.pipeline.classify_config import CLASSES, GroupConfig, PreprocessConfig, StructureKeys, alone_option, groups_option
from kagglekit.pipeline.schema import (Boolean, Choice, File, Integer, Name, Number, PipelineConfigError, Rule, String,
                                       Table, option, read_top, reference_rows, section)
from kagglekit.pipeline.sections import AMP, Device, Relative

__all__ = ["TrainConfig", "read_train_config", "reference"]

TARGETS = ("class", "multi_hot", "columns", "mask")
KINDS = ("classify", "segment")
DECISIONS = ("argmax", "threshold", "per_class", "expected_fbeta")


def _table(value) -> bool:
    return isinstance(value, dict)


IMAGES = Rule('pattern | [patterns]', (lambda v: (isinstance(v, str) and "{id}" in v) or (
    isinstance(v, list) and bool(v) and all(isinstance(p, str) and "{id}" in p for p in v)),
    'must be a pattern with {id} ("train/{id}.jpg") or a list of them, one single-channel file each'),
    hold=lambda v: v if isinstance(v, str) else tuple(v))
LOSS = Rule('name | {name = weight}', (lambda v: isinstance(v, str) or (
    _table(v) and bool(v) and all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in v.values())),
    'must be a loss name ("bce", "focal", "ce", "asl", "lsep", "soft_fbeta", ...) or a weighted sum {bce = 1.0, soft_fbeta = 0.5}'))
ARGS = Rule("table", (_table, "must be a table of keyword arguments, e.g. { drop_rate = 0.2 }"))
KERNEL_SECTIONS = {"classify": ("inputs", "output", "tta", "budget"),
                   "segment": ("inputs", "output", "tta", "budget", "tiling", "memory")}


@dataclass(frozen=True, kw_only=True)
class DataConfig:
    table: str = option(check=Relative("train.csv"), help="the training table, relative to the input folder")
    images: object = option(check=IMAGES, help="each id's image, relative to the input folder, or one file per channel")
    id_column: str | None = option(None, check=String(), help="the id column (default: the table's first)")
    label: str | None = option(None, check=String(), help="the label column (class, multi_hot; mask: an RLE column)")
    target: str = option("class", check=Choice(*TARGETS),
                         help="a class per row, labels in one string, a column per class, or a mask (segment)")
    masks: str | None = option(None, check=String(), help="target mask: each id's mask file instead of an RLE column")
    classes: tuple[str, ...] | None = option(None, check=CLASSES, help="the class names in output order (default: the table's)")
    separator: str = option(" ", check=String(), help="between the labels of a multi_hot row")
    cache_dir: str | None = option(None, check=String(), help="decoded, resized images kept here between epochs and folds")


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    name: str = option(check=Name('a model of kagglekit.models.create, e.g. "timm/resnet18"'), help="the architecture")
    weights: Path | None = option(None, check=File("the pretrained weights' local file"), help="pretrained weights (a local file)")
    args: dict | None = option(None, check=ARGS, help="more create() arguments (num_classes and in_chans come from the data)")


@dataclass(frozen=True, kw_only=True)
class TrainSection:
    """kagglekit.train.fit's options (see its docstring); ``loss`` and ``loss_args`` through kagglekit.losses.create_loss."""

    epochs: int | None = option(None, check=Integer(), help="epochs per fold (or steps)")
    steps: int | None = option(None, check=Integer(), help="optimiser steps per fold (or epochs)")
    batch_size: int = option(32, check=Integer(), help="images per step (the global batch)")
    loss: object = option(check=LOSS, help="a kagglekit.losses name or a weighted sum")
    loss_args: dict | None = option(None, check=ARGS, help="the loss's arguments (a sum's keyed by part)")
    optimizer: str = option("adamw", check=String(), help="timm's optimiser name")
    lr: float = option(1e-3, check=Number(0.0, open_low=True), help="the peak learning rate")
    weight_decay: float = option(0.05, check=Number(0.0), help="decoupled weight decay (not on biases and norms)")
    scheduler: str = option("cosine", check=String(), help='timm\'s scheduler name, or "none"')
    warmup: int = option(0, check=Integer(0), help="steps of linear warm-up")
    min_lr: float = option(0.0, check=Number(0.0), help="the schedule's floor")
    amp: object = option(False, check=AMP, help="autocast, as the kernel's amp")
    accumulate: int = option(1, check=Integer(), help="batches per step")
    clip: float | None = option(None, check=Number(0.0, open_low=True), help="the gradients' largest norm")
    ema: float | None = option(None, check=Number(0.0, 1.0, open_low=True), help="EMA decay of the weights")
    keep: str = option("last", check=String(), help='"last", "ema", "best" or "top<k>"')
    mix: str | None = option(None, check=Choice("mixup", "cutmix"), help="a batch mixer")
    mix_alpha: float = option(1.0, check=Number(0.0, open_low=True), help="its Beta(alpha, alpha)")
    channels_last: bool = option(False, check=Boolean(), help="channels-last memory")
    seed: int = option(0, check=Integer(0), help="the batch order, mixing, dropout, augmentation")
    num_workers: int = option(2, check=Integer(0), help="DataLoader workers")
    device: str = option("auto", check=Device(), help="where to train")

    def validate(self, t: Table) -> None:
        if (self.epochs is None) == (self.steps is None):
            t.fail("epochs", "and steps say how long a fold trains; give one of them")


@dataclass(frozen=True, kw_only=True)
class AugmentConfig:
    transform: str | None = option(None, check=String(), help="a kagglekit.augment preset name or an A.save file")


@dataclass(frozen=True, kw_only=True)
class FoldsConfig:
    n: int = option(5, check=Integer(2), help="folds (kagglekit.cv.make_folds: stratified on the labels)")
    column: str | None = option(None, check=String(), help="or the table's fold column")
    group: str | None = option(None, check=String(), help="a column whose groups stay in one fold (a patient)")
    seed: int = option(0, check=Integer(0), help="the split's seed")
    engine: str = option("local", check=Choice("local", "ray", "auto"), help="folds in turn, or in parallel on Ray")
    workers: int | None = option(None, check=Integer(), help="Ray workers")


@dataclass(frozen=True, kw_only=True)
class DecisionFit(StructureKeys):
    kind: str | None = option(None, check=Choice(*DECISIONS), help="fitted on the OOF (default: argmax for class, per_class otherwise)")
    beta: float = option(1.0, check=Number(0.0, open_low=True), help="the F-beta the thresholds maximise")
    folds: int | None = option(None, check=Integer(2), help="thresholds fitted on k-1 of k splits of the OOF rows and "
                                                            "averaged, with their held-out score (none: on all rows)")
    repeats: int = option(1, check=Integer(), help="with folds: that many reshuffled splits (HPA's teams: 5 x 20)")
    groups: tuple[GroupConfig, ...] | None = groups_option()
    alone: tuple[str, ...] | None = alone_option()

    def validate(self, t: Table):
        if self.repeats > 1 and self.folds is None:
            t.fail("repeats", "goes with folds (the number of splits of each repeat)")
        self.check_structure(t, self.kind or "per_class")


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    EXTRA_KEYS = ("kind",)
    RENAMED = ()
    data: DataConfig = section(DataConfig, help="the training table and images")
    preprocess: PreprocessConfig = section(PreprocessConfig, help="the models' input, as the kernel's")
    model: ModelSpec = section(ModelSpec, help="the architecture")
    train: TrainSection = section(TrainSection, help="how each fold trains")
    augment: AugmentConfig = section(AugmentConfig, help="training augmentation")
    folds: FoldsConfig = section(FoldsConfig, help="the folds")
    decision: DecisionFit = section(DecisionFit, help="the decision fitted on the OOF predictions")
    kernel: dict | None = option(None, check=ARGS, help="the kernel config's [inputs], [output], [tta], [budget] "
                                                         "(segment also [tiling], [memory])")
    notes: tuple[str, ...] = field(default=(), compare=False)
    kind: str = "classify"  # read from the TOML's top-level kind (an EXTRA_KEYS key)

    def validate(self, t: Table):
        kind = t.data.get("kind", "classify")
        if kind not in KINDS:
            raise PipelineConfigError(f"kind: training writes a {' or '.join(KINDS)} kernel config, got {kind!r}")
        unknown = set(self.kernel or {}) - set(KERNEL_SECTIONS[kind])
        if unknown:
            t.fail("kernel", f"holds the {kind} kernel config's {list(KERNEL_SECTIONS[kind])}, not {sorted(unknown)}")
        if (kind == "segment") != (self.data.target == "mask"):
            raise PipelineConfigError(f"data.target: {self.data.target!r} trains a {'segment' if self.data.target == 'mask' else 'classify'} "
                                      f"model, but kind = {kind!r}; a mask target goes with kind = 'segment'")
        if kind == "segment" and not isinstance(self.data.images, str):
            t.fail("kind", "segment reads one image file per id; data.images must be one pattern")
        if kind == "segment" and self.preprocess.size is not None:
            raise PipelineConfigError("preprocess.size: segment tiles each image at its own size; train at that size too "
                                      "(crops of one size come from [augment]) and drop size")
        if self.data.target not in ("columns", "mask") and self.data.label is None:
            raise PipelineConfigError(f"data.label: target = {self.data.target!r} reads the label column; name it")
        if self.data.target == "mask" and (self.data.label is None) == (self.data.masks is None):
            raise PipelineConfigError("data.label: a mask target reads an RLE column (label) or mask files (masks); give one")
        if self.decision.label_structure() is not None and (kind == "segment" or self.data.target == "class"):
            raise PipelineConfigError(f"decision.groups: a label structure is for multi-label targets; target = "
                                      f"{self.data.target!r} is decided {'by a threshold on pixels' if kind == 'segment' else 'by argmax'}")
        return dataclasses.replace(self, kind=kind)

    @property
    def activation(self) -> str:
        """How the models' outputs become probabilities: softmax for one class per row, else sigmoid."""
        return "softmax" if self.data.target == "class" else "sigmoid"

    @property
    def decision_kind(self) -> str:
        """The decision fitted on the OOF predictions (segment: the F-beta threshold of the masks' pixels)."""
        if self.kind == "segment":
            return "threshold"
        return self.decision.kind or ("argmax" if self.data.target == "class" else "per_class")


def read_train_config(path) -> TrainConfig:
    """The checked training config of the TOML at ``path`` (files relative to its folder)."""
    from kagglekit.pipeline.sections import read_toml

    path = Path(path)
    try:
        return read_top(TrainConfig, read_toml(path), path.parent)
    except PipelineConfigError as exc:
        raise PipelineConfigError(f"{path}: {exc}") from None


def reference() -> str:
    """The Markdown table of every training key (the README's)."""
    rows = ["| table | key | type | default | meaning |", "| --- | --- | --- | --- | --- |"]
    for table, key, kind, default, meaning, _ in reference_rows(TrainConfig):
        rows.append(f"| {table} | `{key}` | {kind.replace('|', chr(92) + '|')} | {default} | {meaning} |")
    return "\n".join(rows)


def fit_options(cfg: TrainConfig) -> dict:
    """kagglekit.train.fit's keyword arguments of ``[train]``, the loss built."""
    from kagglekit.losses import create_loss

    t = cfg.train
    options = {f.name: getattr(t, f.name) for f in dataclasses.fields(t) if f.name not in ("loss", "loss_args")}
    options["scheduler"] = None if t.scheduler == "none" else t.scheduler
    options["loss"] = create_loss(t.loss, **(t.loss_args or {}))
    return options
