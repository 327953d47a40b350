"""The multilabel demo's second level: two more variants of the first model (other training seeds, one with
MixUp), then the three models' OOF tables combined three ways (the mean, blend weights fitted by hill
climbing, a logistic stacker per class), each with its per-class F2 thresholds, and the kernel config
that applies it.

    <models>/b/, <models>/c/                 the variants' ``kagglekit train`` folders (fold*/, oof.parquet, ...)
    <models>/blend.json, stacker.json        the fitted blend weights and the stacker ([stack] files)
    <models>/decision_<row>.json             each row's per-class thresholds, fitted on its OOF predictions
    <models>/classify_<row>.toml             each row's kernel config: every variant's folds, its decision

Each row's figures: the F2 of its thresholds on the OOF rows they were fitted on, and an honest estimate:
the thresholds fitted on 4 of 5 splits of the OOF rows (4 repeats) and scored on the fifth, on OOF
predictions no fitted weight saw either (the nested blend: each fold's rows blended by weights fitted
without them; the stacker's own second-level OOF predictions).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

VARIANTS = {"b": {"train_seed": 1}, "c": {"train_seed": 2, "mix": "mixup"}}  # the first model's, otherwise
ROWS = ("mean of 3 models", "fitted blend weights", "stacker")
REPEATS, SPLITS = 4, 5


@dataclass(frozen=True)
class SecondLevel:
    """One row: its kernel config, and the F2 of its decision on the OOF rows and held out."""

    config: Path
    oof_f2: float
    held_out_f2: float


def train_variants(folder: Path, models_dir: Path, config: dict, *, log=print) -> list[Path]:
    """``kagglekit train`` of each variant (``config``, the first model's, with its training seed and mixer)
    into ``models_dir/<name>``: the same folds, the same decision. Returns the variants' folders."""
    from kagglekit.train.command import run_training
    from kagglekit.train.toml_writer import dumps

    folders = []
    for name, variant in VARIANTS.items():
        train = {**config["train"], "seed": variant["train_seed"], **({"mix": variant["mix"]} if "mix" in variant else {})}
        path = models_dir.parent / f"multilabel-train-{name}.toml"
        path.write_text(dumps({**config, "train": train}))
        log(f"   variant {name}: training seed {variant['train_seed']}{', ' + variant['mix'] if 'mix' in variant else ''}")
        run_training(path, folder, models_dir / name, progress=False)
        folders.append(models_dir / name)
    return folders


def second_level(models_dir: Path, folders: list[Path], labels: np.ndarray, classes: list[str], config: dict,
                 beta: float) -> dict[str, SecondLevel]:
    """The three rows (:data:`ROWS`) fitted on the OOF tables of ``folders`` (the first model's first),
    ``labels`` (N, C) in their row order; ``config``: the first model's kernel config (a dict)."""
    import polars as pl

    from kagglekit.thresholds import fit_blend, fit_stacker, write_blend, write_decision

    oof = [pl.read_parquet(f / "oof.parquet") for f in folders]
    tables = [t.select([f"prob_{c}" for c in classes]).to_numpy() for t in oof]
    folds, names = oof[0]["fold"].to_numpy(), ["a", *VARIANTS]
    fit = fit_blend(tables, labels, "log_loss", method="hill_climb", folds=folds, models=names)
    write_blend(fit, models_dir / "blend.json")
    stacker = fit_stacker(tables, labels, folds, "logistic", classes=classes)
    stacker.save(models_dir / "stacker.json")
    mean = np.mean(tables, axis=0)
    fitted = {"mean of 3 models": (mean, mean, None), "fitted blend weights": (fit.apply(tables), fit.oof, "blend.json"),
              "stacker": (stacker.oof, stacker.oof, "stacker.json")}
    checkpoints = {name: [str((folder / m).relative_to(models_dir)) for m in config_models(folder)]
                   for name, folder in zip(names, folders)}
    rows = {}
    for name, (in_sample, nested, stack) in fitted.items():
        tag = name.split()[0]
        decision = _thresholds(in_sample, labels, classes, beta)
        honest = decision if nested is in_sample else _thresholds(nested, labels, classes, beta)  # the same rows: one fit
        write_decision(decision, models_dir / f"decision_{tag}.json")
        path = _kernel_config(models_dir, checkpoints, config, f"decision_{tag}.json", stack, tag)
        rows[name] = SecondLevel(path, decision.score, honest.held_out_score)
    return rows


def _thresholds(p: np.ndarray, labels, classes, beta: float):
    """Per-class F-beta thresholds averaged over :data:`REPEATS` x :data:`SPLITS` splits of the rows."""
    from kagglekit.thresholds import fit_decision

    return fit_decision(p, labels, "per_class", beta=beta, classes=classes, folds=SPLITS, repeats=REPEATS)


def _kernel_config(models_dir: Path, checkpoints: dict[str, list[str]], config: dict, decision: str, stack: str | None,
                   tag: str) -> Path:
    """``classify_<tag>.toml``: the first model's kernel config over every variant's ``checkpoints`` (relative to
    ``models_dir``; with ``stack``, each variant one input of it), reading ``decision``."""
    from kagglekit.train.toml_writer import dumps

    models = [{"path": path, **({"variant": name} if stack else {})} for name, paths in checkpoints.items() for path in paths]
    data = {**config, "models": models, "decision": {"file": decision}, **({"stack": {"file": stack}} if stack else {})}
    path = models_dir / f"classify_{tag}.toml"
    path.write_text(dumps(data))
    return path


def config_models(folder: Path) -> list[str]:
    """The checkpoint paths of the kernel config ``kagglekit train`` wrote in ``folder``, relative to it."""
    from kagglekit._toml import tomllib

    return [m["path"] for m in tomllib.loads((folder / "classify.toml").read_text())["models"]]
