"""``train_folds``: one :func:`~kagglekit.train.fit` per fold, each fold's checkpoint and out-of-fold
predictions, one OOF table and a CV report; folds run as jobs (:mod:`kagglekit.jobs`), so they are
resumable, kept on a rerun with the same settings, and run in parallel on Ray with no other change.

    out_dir/fold<k>/model.safetensors   the fold's kept weights, self-describing (classes, preprocessing,
                                        fold, score, the settings' hash)
    out_dir/fold<k>/oof.parquet         its held-out ids' logits and probabilities
    out_dir/fold<k>/history.parquet     fit's history
    out_dir/oof.parquet                 every id once: id, fold, logit_<class>..., prob_<class>...
    out_dir/cv.json                     the metric per fold and over all the OOF predictions
    out_dir/folds.json, manifest.jsonl  the folds' items; the job manifest (what is done, its settings)
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kagglekit._atomic import atomic_path
from kagglekit.errors import InvalidArgumentError
from kagglekit.jobs.contract import Job

__all__ = ["FoldJob", "FoldsResult", "fold_assignment", "probabilities", "stable_name", "train_folds"]

ACTIVATIONS = ("sigmoid", "softmax", "none")
QUIET = ("progress", "num_workers", "device")  # fit options that change how fast, not the weights


def probabilities(logits: np.ndarray, activation: str) -> np.ndarray:
    """(N, C) float64 probabilities of ``logits`` by ``activation`` ("sigmoid", "softmax", "none")."""
    z = np.asarray(logits, np.float64)
    if activation == "sigmoid":
        return 0.5 * (1.0 + np.tanh(z / 2))  # the sigmoid without exp's overflow
    if activation == "softmax":
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return z


class OnProbabilities:
    """``metric(targets, outputs)`` of fit as ``metric(targets, probabilities)``: picklable for Ray workers."""

    def __init__(self, metric, activation: str):
        self.metric, self.activation = metric, activation

    def __call__(self, targets, outputs) -> float:
        return float(self.metric(targets, probabilities(outputs, self.activation)))


def fold_assignment(folds, n: int) -> np.ndarray:
    """(n,) int fold of each item, from a fold per item (a column) or ``[(train, val), ...]`` index pairs
    (a :mod:`kagglekit.cv` or scikit-learn splitter's output): each item held out exactly once."""
    folds = folds if isinstance(folds, np.ndarray) else list(folds)
    if len(folds) and isinstance(folds[0], tuple):
        assigned = np.full(n, -1)
        for k, (_, val) in enumerate(folds):
            if (assigned[np.asarray(val)] >= 0).any():
                raise InvalidArgumentError(f"fold {k} holds out items another fold already held out; a split holds each item out once")
            assigned[np.asarray(val)] = k
        folds = assigned
    folds = np.asarray(folds)
    if folds.shape != (n,) or not np.issubdtype(folds.dtype, np.integer):
        raise InvalidArgumentError(f"folds must be a fold number per item ({n}) or [(train, val), ...] pairs, got {folds.shape}")
    if (folds < 0).any():
        raise InvalidArgumentError(f"{int((folds < 0).sum())} items are held out by no fold; each must be held out once")
    return folds


def stable_name(value) -> object:
    """A description of ``value`` that is the same in every process: a function by its module and name, a
    ``functools.partial`` by its function and arguments, a plain value as it is, anything else by repr."""
    import functools

    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if isinstance(value, functools.partial):
        return {"call": stable_name(value.func), "args": [stable_name(a) for a in value.args],
                "kwargs": {k: stable_name(v) for k, v in sorted(value.keywords.items())}}
    if isinstance(value, (list, tuple)):
        return [stable_name(v) for v in value]
    if isinstance(value, dict):
        return {str(k): stable_name(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{value.__module__}.{value.__qualname__}"
    return repr(value)


class FoldJob(Job):
    """One fold as a job: fit on the other folds' items, keep the checkpoint, predict the held-out items.
    Its ``slide`` is ``fold<k>``; its output a folder (see the module docstring)."""

    name, suffix = "fold", ""

    def __init__(self, model_fn, train_data, val_data, ids, folds, *, classes, activation, fit_options: dict, metric,
                 kernel=None, pseudo=None):
        self.model_fn, self.train_data, self.val_data = model_fn, train_data, val_data
        self.ids, self.folds, self.classes, self.activation = list(ids), np.asarray(folds), classes, activation
        self.fit_options, self.metric, self.kernel, self.pseudo = fit_options, metric, kernel, pseudo

    def settings(self) -> dict:
        shaping = {k: v for k, v in self.fit_options.items() if k not in QUIET}
        return stable_name({"fit": shaping, "model": self.model_fn, "data": _describe(self.train_data),
                            "val": _describe(self.val_data), "folds": self.folds.tolist(), "ids": self.ids,
                            "classes": self.classes, "activation": self.activation, "metric": self.metric,
                            "kernel": getattr(self.kernel, "config", None),
                            **({} if self.pseudo is None else self.pseudo.settings(_describe))})

    def run(self, slide, out_path: Path) -> dict:
        import torch
        from torch.utils.data import Subset

        from kagglekit.train.loop import evaluate, fit

        k = int(slide.id.removeprefix("fold"))
        held = np.flatnonzero(self.folds == k)
        train, val = Subset(self.train_data, np.flatnonzero(self.folds != k).tolist()), Subset(self.val_data, held.tolist())
        if self.pseudo is not None:  # training only: the held-out items and the OOF table are the labelled ones
            train = self.pseudo.train_set(train, k)
        metric = OnProbabilities(self.metric, self.activation) if self.metric is not None else None
        out_path.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(self.fit_options.get("seed", 0) * 1_000_003 + k)  # the fold's initial weights, whatever ran before
        result = fit(self.model_fn(), train, val, metric=metric, state_dir=out_path / "state", **self.fit_options)
        held_ids = list(dict.fromkeys(self.ids[i] for i in held))  # items of one image (tiles) share its id
        if self.kernel is None:
            _, targets, logits = evaluate(result.model, val, self.fit_options["loss"],
                                          batch_size=self.fit_options.get("batch_size", 32))
            score = metric(targets, logits) if metric is not None else None
            self._save(result.model, out_path, k, score)
            frame = _oof_frame(held_ids, k, logits, self.activation, self.classes)
        else:  # the kernel's own pipeline on the held-out images, with this fold's checkpoint
            score = result.best_score
            frame = self.kernel(self._save(result.model, out_path, k, score), held_ids, k, out_path)
        _write_table(out_path / "oof.parquet", frame)
        result.history.write_parquet(out_path / "history.parquet")
        shutil.rmtree(out_path / "state", ignore_errors=True)  # only an unfinished fold resumes from it
        return {"score": score, "held_out": len(held_ids)}

    def _save(self, model, out_path: Path, fold: int, score) -> Path:
        """The fold's self-describing checkpoint: classes, preprocessing, fold, score, the settings' hash."""
        from kagglekit.jobs.contract import settings_hash
        from kagglekit.models import save_checkpoint

        metadata = {"fold": fold, "score": score, "settings": settings_hash(self), "activation": self.activation,
                    "preprocess": getattr(self.val_data, "preprocessing", None)}
        return save_checkpoint(model, out_path / "model.safetensors", metadata, classes=self.classes)

    def complete(self, out_path: Path) -> bool:
        return (out_path / "model.safetensors").is_file() and (out_path / "oof.parquet").is_file()


def _describe(dataset) -> dict:
    """What a dataset contributes to the folds' settings: its type and length, its ``preprocessing`` and
    ``transform`` (an ImageDataset's), and a hash of its ``targets`` (and loss ``weights``, if it has them),
    so that other labels redo the folds."""
    import hashlib

    def digest(values):
        return hashlib.sha256(np.ascontiguousarray(np.asarray(values, dtype=object).astype(str)).tobytes()).hexdigest()[:16]

    targets, weights = getattr(dataset, "targets", None), getattr(dataset, "weights", None)
    return {"type": f"{type(dataset).__module__}.{type(dataset).__qualname__}", "items": len(dataset),
            "preprocessing": getattr(dataset, "preprocessing", None), "transform": repr(getattr(dataset, "transform", None)),
            "targets": digest(targets) if targets is not None else None,
            **({} if weights is None else {"weights": digest(weights)})}


def _oof_frame(ids, fold: int, logits: np.ndarray, activation: str, classes):
    import polars as pl

    logits = np.asarray(logits, np.float64).reshape(len(ids), -1)
    names = list(classes) if classes is not None else [str(c) for c in range(logits.shape[1])]
    p = probabilities(logits, activation)
    columns = {"id": [str(i) for i in ids], "fold": [fold] * len(ids)}
    columns.update({f"logit_{c}": logits[:, j] for j, c in enumerate(names)})
    columns.update({f"prob_{c}": p[:, j] for j, c in enumerate(names)})
    return pl.DataFrame(columns)


def _write_table(path: Path, frame) -> None:
    with atomic_path(path) as tmp:
        frame.write_parquet(tmp)


@dataclass
class FoldsResult:
    """``oof``: the OOF table (polars; the ids in the data's order); ``cv``: ``{"folds": [{fold, score,
    held_out}], "overall": score}``; ``checkpoints``: each fold's model file; ``report``: the jobs' report."""

    oof: object
    cv: dict
    checkpoints: list[Path]
    report: object


def train_folds(model_fn, train_data, folds, out_dir, *, loss, val_data=None, ids=None, classes=None,
                activation: str = "sigmoid", metric=None, targets=None, kernel=None, pseudo=None, pseudo_folds=None,
                accept_leaky_pseudo: bool = False, engine: str = "local",
                workers: int | None = None, address: str | None = None, cpus_per_worker: float = 1,
                gpus_per_worker: float = 0, progress: bool = True, **fit_options) -> FoldsResult:
    """Train one model per fold and return the OOF table and the CV report (files: see the module docstring).

    model_fn: ``model_fn()`` builds a fresh model (picklable for Ray: a function of a module, or a
        ``functools.partial(kagglekit.models.create, ...)``). train_data / val_data: the items with and
        without augmentation (default: ``train_data`` for both), the same rows in the same order.
    folds: a fold number per item, or ``[(train, val), ...]`` (e.g. ``kagglekit.cv`` splits).
    ids: the items' ids (default: ``train_data.ids``, else their positions); classes: the output names.
    activation: "sigmoid" (multi-label), "softmax" or "none": how the OOF logits become probabilities.
    metric: ``metric(targets, probabilities) -> float`` for the CV report and ``keep="best"``; targets:
        the items' targets for the overall score (default: read back from ``val_data``).
    kernel: None (the OOF predictions are the model's outputs on ``val_data``), or a
        :class:`kagglekit.train.held_out.SegmentKernel`: the kernel's own ``segment`` on each fold's
        held-out images (``ids`` then names each item's image; tiles of one image share its id).
    pseudo, pseudo_folds: pseudo-labelled items (e.g. an ImageDataset over :func:`~kagglekit.train.pseudo_labels`'
        table, with ``weight="weight"``: its items ``(x, y, weight)``; labelled items without a weight count
        1.0) and the fold whose model predicted each (the table's ``fold``). Fold k trains on the labelled
        items of the other folds and the pseudo items of fold k's own model, which never saw fold k's labels;
        pseudo items never validate and are not in the OOF table. Without ``pseudo_folds`` the pseudo-labels
        came from a model that saw every fold's labels: refused, as a leak into the CV, unless
        ``accept_leaky_pseudo=True`` (every fold then trains on all of them). A pseudo id that is also a
        labelled id is refused.
    engine, workers, address, cpus_per_worker, gpus_per_worker: as :func:`kagglekit.jobs.run_slides` ("ray":
        folds in parallel; on a small machine one worker of all its CPUs trains as fast as two of half:
        bench_train.py (c)). The rest are :func:`~kagglekit.train.fit`'s options.
    """
    from kagglekit.jobs import run_slides

    if activation not in ACTIVATIONS:
        raise InvalidArgumentError(f"activation must be one of {list(ACTIVATIONS)}, got {activation!r}")
    val_data = val_data if val_data is not None else train_data
    if len(val_data) != len(train_data):
        raise InvalidArgumentError(f"val_data has {len(val_data)} items, train_data {len(train_data)}: they are the same rows")
    ids = list(ids if ids is not None else getattr(train_data, "ids", range(len(train_data))))
    assigned = fold_assignment(folds, len(train_data))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "folds.json") as tmp:
        tmp.write_text(json.dumps({"ids": [str(i) for i in ids], "folds": assigned.tolist()}))
    fit_options = {"loss": loss, **fit_options, "progress": progress and engine == "local"}  # a bar per fold's steps
    if pseudo is not None:
        from kagglekit.train.pseudo import PseudoRows

        pseudo = PseudoRows(pseudo, pseudo_folds, labelled_ids=ids, fold_numbers=np.unique(assigned),
                            accept_leak=accept_leaky_pseudo)
    elif pseudo_folds is not None or accept_leaky_pseudo:
        raise InvalidArgumentError("pseudo_folds and accept_leaky_pseudo go with pseudo= (the pseudo-labelled items)")
    job = FoldJob(model_fn, train_data, val_data, ids, assigned, classes=classes, activation=activation,
                  fit_options=fit_options, metric=metric, kernel=kernel, pseudo=pseudo)
    report = run_slides(job, {f"fold{k}": out_dir / "folds.json" for k in np.unique(assigned)}, out_dir, engine=engine,
                        workers=workers, address=address, cpus_per_worker=cpus_per_worker, gpus_per_worker=gpus_per_worker,
                        progress=progress, retries=0)
    if report.failed:
        raise InvalidArgumentError(f"folds failed: {report.failed}")
    return _gather(out_dir, ids, assigned, metric if kernel is None else None, targets, val_data, report)


def _gather(out_dir: Path, ids, assigned, metric, targets, val_data, report) -> FoldsResult:
    """The OOF table in the data's order, the CV report, both written beside the folds."""
    import polars as pl

    parts = [pl.read_parquet(out_dir / f"fold{k}" / "oof.parquet") for k in np.unique(assigned)]
    order = {str(i): n for n, i in enumerate(ids)}
    positions = pl.DataFrame({"id": list(order), "position": list(order.values())})
    oof = pl.concat(parts).join(positions, on="id").sort("position").drop("position")
    _write_table(out_dir / "oof.parquet", oof)
    cv = {"folds": [{"fold": int(row["slide"].removeprefix("fold")), "score": row.get("score"),
                     "held_out": row.get("held_out")} for row in report.rows]}
    if metric is not None:
        y = np.asarray(targets) if targets is not None else np.stack([np.asarray(val_data[order[i]][1]) for i in oof["id"]])
        cv["overall"] = float(metric(y, oof.select(pl.col("^prob_.*$")).to_numpy()))
    with atomic_path(out_dir / "cv.json") as tmp:
        tmp.write_text(json.dumps(cv, indent=2))
    checkpoints = [out_dir / f"fold{k}" / "model.safetensors" for k in np.unique(assigned)]
    return FoldsResult(oof, cv, checkpoints, report)
