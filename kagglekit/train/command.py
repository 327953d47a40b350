"""``kagglekit train CONFIG``: from the competition folder to a model folder the kernel runs as it is.

    <out>/fold<k>/model.safetensors   each fold's weights: classes, preprocessing, fold, score, settings' hash
    <out>/oof.parquet, cv.json        the out-of-fold predictions and the CV report (kagglekit.train.train_folds)
    <out>/decision.json               classify: the decision fitted on them (kagglekit.thresholds.fit_decision)
    <out>/threshold.json              segment: the F-beta threshold of the OOF maps' pixels (fold<k>/oof/<id>.npy,
                                      made by the kernel's own segment on each fold's held-out images)
    <out>/curves.png                  each fold's training loss and validation points
    <out>/classify.toml|segment.toml  the kernel config: the folds, the decision, the training's [preprocess]

The kernel config is checked before any fold trains (a mistake in ``[kernel]`` costs no training), and
read back once written.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kagglekit._atomic import atomic_path
from kagglekit.train.config import TrainConfig, fit_options, read_train_config
from kagglekit.train.held_out import SegmentKernel

__all__ = ["TrainingReport", "check_training", "run_training"]

logger = logging.getLogger("kagglekit.train")


@dataclass
class TrainingReport:
    """What ``kagglekit train`` wrote: the model folder, the kernel config, the CV report, the OOF decision."""

    out_dir: Path
    kernel_config: Path
    cv: dict
    decision: object

    def summary(self) -> str:
        rows = ["| fold | held out | score |", "| ---: | ---: | ---: |"]
        rows += [f"| {f['fold']} | {f['held_out']} | {_fmt(f['score'])} |" for f in self.cv["folds"]]
        rows.append(f"| all | {sum(f['held_out'] for f in self.cv['folds'])} | {_fmt(self.cv.get('overall'))} |")
        held_out = getattr(self.decision, "held_out_score", None)
        honest = "" if held_out is None else f", held out over {self.decision.repeats} x {self.decision.folds} splits {_fmt(held_out)}"
        return "\n".join([*rows, f"decision: {self.decision.kind}, fitted on the OOF predictions (OOF score "
                                 f"{_fmt(self.decision.score)}{honest}): {self.out_dir / 'decision.json'}",
                          f"kernel config: {self.kernel_config}"])


def _fmt(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def datasets(cfg: TrainConfig, input_dir: Path):
    """(train, val): the table's rows as :class:`kagglekit.data.ImageDataset`, with and without augmentation."""
    from kagglekit.data import ImageDataset
    from kagglekit.kaggle import read_csv_strings

    d, p = cfg.data, cfg.preprocess
    table = read_csv_strings(input_dir / d.table, "training table")
    common = {"root": input_dir, "id_column": d.id_column, "target": d.target, "label": d.label, "classes": d.classes,
              "separator": d.separator, "masks": d.masks, "size": p.size, "resize": p.resize, "normalize": p.normalize,
              "seed": cfg.train.seed, "cache_dir": d.cache_dir}
    images = d.images if isinstance(d.images, str) else list(d.images)
    return (ImageDataset(table, images, transform=cfg.augment.transform, **common), ImageDataset(table, images, **common))


def fold_numbers(cfg: TrainConfig, data) -> np.ndarray:
    """Each row's fold: the table's fold column, or kagglekit.cv's split stratified on the targets."""
    import polars as pl

    from kagglekit.cv import MultilabelStratifiedKFold, StratifiedGroupKFold
    from kagglekit.kaggle import read_csv_strings

    f = cfg.folds
    table = read_csv_strings(data.root / cfg.data.table, "training table") if (f.column or f.group) else None
    if f.column is not None:
        return table.get_column(f.column).cast(pl.Int64).to_numpy()
    groups = table.get_column(f.group).to_numpy() if f.group else None
    if cfg.data.target == "mask":  # stratified on whether the image has any positive pixel (an RLE that is not empty)
        empty = data.targets is None or data.mask_pattern is not None
        targets = np.zeros(len(data), int) if empty else np.array([bool(t) for t in data.targets], int)
    else:
        targets = np.asarray(data.targets)
    if targets.ndim == 1:
        return StratifiedGroupKFold(f.n, shuffle=True, random_state=f.seed).assign(np.empty(len(targets)), targets[:, None], groups)
    return MultilabelStratifiedKFold(f.n, shuffle=True, random_state=f.seed).assign(None, targets.astype(int), groups)


class Score:
    """The CV metric of a target kind: accuracy of the argmax for one class per row, else the mean per-row
    F-beta at 0.5 (picklable, for Ray)."""

    def __init__(self, target: str, beta: float):
        self.target, self.beta = target, beta

    def __call__(self, y, p) -> float:
        from kagglekit.metrics import fbeta_score

        if self.target == "class":
            return float(np.mean(np.asarray(p).argmax(axis=1) == np.asarray(y)))
        return fbeta_score(np.asarray(y) > 0.5, np.asarray(p) >= 0.5, self.beta, average="samples")

    def __repr__(self) -> str:
        return f"Score({self.target!r}, beta={self.beta})"


def model_maker(cfg: TrainConfig, classes: int, channels: int):
    """``model_fn()`` for train_folds: kagglekit.models.create with the data's classes and channels (for timm
    and smp names; a registered ``kagglekit/`` model takes ``[model] args`` alone). Picklable."""
    from kagglekit.models import create

    args = dict(cfg.model.args or {})
    if cfg.model.name.startswith(("timm/", "smp/")):
        args.setdefault("num_classes", classes)
        if channels != 3:
            args.setdefault("in_channels", channels)
    if cfg.model.weights is not None:
        args["weights"] = str(cfg.model.weights)
    return functools.partial(create, cfg.model.name, **args)


def run_training(config, input_dir, out_dir, *, progress: bool = True) -> TrainingReport:
    """Train every fold of the training config ``config`` on the competition folder ``input_dir`` and write
    the model folder ``out_dir`` (see the module docstring). A rerun keeps the folds already trained
    with the same settings."""
    from kagglekit.thresholds import write_decision
    from kagglekit.train.curves import save_curves
    from kagglekit.train.folds import train_folds

    cfg, config = read_train_config(config), Path(config)
    out_dir, input_dir = Path(out_dir), Path(input_dir)
    check_kernel(cfg, config, out_dir)
    train, val = datasets(cfg, input_dir)
    segmenting = cfg.kind == "segment"
    classes = None if segmenting else list(train.classes)
    folds = fold_numbers(cfg, train)
    options = fit_options(cfg)
    loss = options.pop("loss")
    kernel = SegmentKernel(oof_kernel_data(cfg, config), input_dir) if segmenting else None
    result = train_folds(model_maker(cfg, 1 if segmenting else len(classes), train.preprocessing["channels"]), train, folds,
                         out_dir, loss=loss, val_data=val, classes=classes, activation=cfg.activation,
                         metric=None if segmenting else Score(cfg.data.target, cfg.decision.beta),
                         targets=None if segmenting else np.asarray(train.targets), kernel=kernel,
                         engine=cfg.folds.engine, workers=cfg.folds.workers, progress=progress, **options)
    if segmenting:
        decision = fit_mask_threshold(result.oof, train, out_dir, cfg.decision.beta)
    else:
        decision = fit_oof_decision(cfg, result.oof, classes, np.asarray(train.targets))
        write_decision(decision, out_dir / "decision.json")
    save_curves(out_dir / "curves.png", [out_dir / f"fold{k}" / "history.parquet" for k in np.unique(folds)])
    kernel_config = write_kernel_config(cfg, config, out_dir, [p.relative_to(out_dir) for p in result.checkpoints])
    return TrainingReport(out_dir, kernel_config, result.cv, decision)


def fit_oof_decision(cfg: TrainConfig, oof, classes, targets):
    """The ``[decision]`` fitted on the OOF logits and probabilities (kagglekit.thresholds.fit_decision)."""
    from kagglekit.thresholds import fit_decision

    logits = oof.select([f"logit_{c}" for c in classes]).to_numpy()
    probabilities = oof.select([f"prob_{c}" for c in classes]).to_numpy()
    d = cfg.decision
    return fit_decision(probabilities, targets, cfg.decision_kind, beta=d.beta, classes=classes, logits=logits,
                        structure=d.label_structure(), folds=d.folds, repeats=d.repeats, seed=cfg.folds.seed)


def fit_mask_threshold(oof, data, out_dir: Path, beta: float):
    """The probability threshold that maximises F-beta over every OOF pixel (the maps against the masks at
    their full size), written as ``threshold.json``; returned as a threshold Decision. Holds one map and
    mask at a time, and the maps' pixels as float16 with the masks' (3 bytes per pixel of all images)."""
    import json

    from kagglekit.thresholds import Decision, best_fbeta_threshold

    position = {i: k for k, i in enumerate(data.ids)}
    scores, truth = [], []
    for image_id, path in oof.select(["id", "map"]).iter_rows():
        p, mask = np.load(out_dir / path), data.mask(position[image_id])  # segment trains at full size: the map's
        scores.append(p.astype(np.float16).ravel())
        truth.append(mask.astype(bool).ravel())
    best = best_fbeta_threshold(np.concatenate(truth), np.concatenate(scores), beta)
    with atomic_path(out_dir / "threshold.json") as tmp:
        tmp.write_text(json.dumps({"threshold": float(best.threshold), "fbeta": float(best.fbeta), "beta": beta}))
    return Decision("threshold", threshold=float(best.threshold), beta=beta, score=float(best.fbeta))


def kernel_data(cfg: TrainConfig, config: Path, checkpoints, threshold: str | None = "threshold.json") -> dict:
    """The kernel config as a dict: the training's ``[preprocess]`` (as written), the folds, the OOF decision
    (classify: ``decision.json``; segment: the ``threshold`` file, or a fixed 0.5 while the folds' OOF maps
    are made) and ``[kernel]``'s sections."""
    from kagglekit.pipeline.sections import read_toml

    preprocess = {k: v for k, v in read_toml(config).get("preprocess", {}).items() if k != "size" or cfg.kind != "segment"}
    kernel = cfg.kernel or {}
    data = {"kind": cfg.kind, **{k: v for k, v in kernel.items() if k != "output"}, "preprocess": preprocess,
            "models": [{"path": str(p)} for p in checkpoints], "output": dict(kernel.get("output", {}))}
    if cfg.kind == "segment":
        data["threshold"] = {"kind": "file", "file": threshold} if threshold else {"kind": "fixed", "value": 0.5}
    else:
        data["decision"] = {"file": "decision.json", **({"activation": "softmax"} if cfg.activation == "softmax" else {})}
    return data


def oof_kernel_data(cfg: TrainConfig, config: Path) -> dict:
    """The segment kernel config the folds' OOF maps are made with: the kernel's, reading the training images
    (``[data] images``, and the kernel's volume ``kind`` and ``z``) at a fixed threshold."""
    data = kernel_data(cfg, config, [], threshold=None)
    inputs = {k: v for k, v in data.get("inputs", {}).items() if k in ("kind", "z")}
    return {**data, "inputs": {**inputs, "files": [cfg.data.images]}}


def check_kernel(cfg: TrainConfig, config: Path, out_dir: Path) -> None:
    """Read the kernel config training will write (placeholder checkpoints): its mistakes stop here, before training."""
    from kagglekit.pipeline import load_config

    load_config(kernel_data(cfg, config, [Path("fold0/model.safetensors")]), base_dir=out_dir, kind=cfg.kind)


def write_kernel_config(cfg: TrainConfig, config: Path, out_dir: Path, checkpoints) -> Path:
    """``out_dir/<kind>.toml`` (atomically), read back to prove it loads."""
    from kagglekit.pipeline import load_config
    from kagglekit.train.toml_writer import dumps

    path = out_dir / f"{cfg.kind}.toml"
    with atomic_path(path) as tmp:
        tmp.write_text(f"# written by kagglekit train {config.name}\n" + dumps(kernel_data(cfg, config, checkpoints)))
    load_config(path, kind=cfg.kind)
    return path


def check_training(config, input_dir) -> list[tuple[bool, str]]:
    """``kagglekit train --check``: the config, the table and every image file, the model (built once), the
    kernel config it would write; nothing trained. ``(ok, line)`` pairs."""
    from kagglekit.errors import KagglekitError

    cfg = read_train_config(config)
    lines = [(True, f"config: {cfg.data.target} targets, {cfg.folds.n if cfg.folds.column is None else 'column'} folds, "
                    f"model {cfg.model.name}")]

    def attempt(what, action):
        try:
            lines.append((True, f"{what}: {action()}"))
        except KagglekitError as exc:
            lines.append((False, f"{what}: {exc}"))

    attempt("kernel config", lambda: check_kernel(cfg, Path(config), Path(".")) or "reads")
    found = []
    attempt("data", lambda: _describe_data(cfg, Path(input_dir), found))
    if found:
        train = found[0]
        outputs = 1 if cfg.kind == "segment" else len(train.classes)
        attempt("model", lambda: type(model_maker(cfg, outputs, train.preprocessing["channels"])()).__name__)
        attempt("folds", lambda: f"{np.bincount(fold_numbers(cfg, train)).tolist()} rows held out per fold")
        structure = cfg.decision.label_structure()
        if structure is not None:
            attempt("decision", lambda: _bound_to(structure, train.classes))
    return lines


def _bound_to(structure, classes) -> str:
    structure.bind(classes)
    return "its label structure names classes of the table"


def _describe_data(cfg: TrainConfig, input_dir: Path, found: list) -> str:
    train, _ = datasets(cfg, input_dir)
    found.append(train)
    p = train.preprocessing
    classes = "masks" if cfg.kind == "segment" else f"{len(train.classes)} classes"
    return f"{len(train)} rows, {classes}, {p['channels']} channel(s), every image file present"
