"""``kagglekit demo multilabel``: a Planet-like multi-label competition, trained in folds on CPU and
submitted through the classify pipeline and the inference notebook.

    1. the competition (multilabel_data.py): JPEG chips of 1 to 4 regions of scikit-image's images under
       exactly one weather tag ("cloudy" alone, as in Planet)
    2. ``kagglekit train`` on a written train.toml (:func:`train_config`, the README's): 4 folds
       (MultilabelStratifiedKFold), a small timm model per fold from scratch for a fixed number of steps
       (D4 augmentation), out-of-fold predictions, per-class F2 thresholds averaged over 4 x 5 splits of them
       (decision.json, with a temperature) and the kernel's classify.toml; the same thresholds under the
       weather rule, and the expected-F2 decision with and without it, fitted on the same predictions
    3. the notebook, headless and offline, runs classify.toml (the per-class thresholds) on the test chips
    4. two more variants trained the same way, and their OOF predictions combined (multilabel_blend.py):
       the mean, hill-climbed blend weights, a logistic stacker per class, each with its thresholds
    5. every other row through the classify pipeline in this process; mean per-chip F2 (Planet's metric)
       on the hidden tags beside the out-of-fold F2 and its held-out estimate, and the all-labels baseline

    <out>/input/kagglekit-multilabel/          the competition
    <out>/input/multilabel-train*.toml         the training configs
    <out>/input/kagglekit-multilabel-models/   fold*/model.safetensors, oof.parquet, cv.json, decision files,
                                               curves.png, classify.toml; b/ and c/ (the variants), blend.json,
                                               stacker.json, classify_<row>.toml
    <out>/working/                             submission.csv, predictions.png, the executed notebook
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kagglekit.demo.multilabel_data import WEATHER

MODEL = "timm/resnet10t"
SIZE = 64
STEPS = 120  # per fold: about 25 s on the 2-core CI machine
FOLDS = 4
BATCH = 32
BETA = 2.0
MODELS = "kagglekit-multilabel-models"


@dataclass(frozen=True)
class FoldsResult:
    """The first model's folder; each of its decisions' (out-of-fold F2, held-out estimate or None); the OOF
    rows' (N, C) labels over ``classes``."""

    models_dir: Path
    oof_fbeta: dict[str, tuple[float, float | None]]
    classes: list[str]
    labels: np.ndarray


def weather():
    """Planet's label structure over the demo's classes: exactly one weather tag, "cloudy" alone."""
    from kagglekit.thresholds import LabelStructure

    return LabelStructure(groups=[(list(WEATHER), "exactly_one")], alone=["cloudy"])


def train_config(steps: int = STEPS, folds: int = FOLDS, seed: int = 0) -> dict:
    """The demo's ``kagglekit train`` config (the README's ``train.toml`` at the default knobs): a small timm
    model per fold from scratch, D4 augmentation, BCE, per-class F2 thresholds fitted out of fold, and
    the kernel's D4 TTA."""
    return {"kind": "classify",
            "data": {"table": "train.csv", "images": "train/{id}.jpg", "label": "tags", "target": "multi_hot"},
            "preprocess": {"size": SIZE, "normalize": "scale"},
            "model": {"name": MODEL},
            "train": {"steps": steps, "batch_size": BATCH, "lr": 2e-3, "weight_decay": 1e-4, "loss": "bce", "num_workers": 0,
                      "seed": seed},
            "augment": {"transform": "d4"},
            "folds": {"n": folds, "seed": seed},
            "decision": {"kind": "per_class", "beta": BETA, "folds": 5, "repeats": 4},
            "kernel": {"inputs": {"glob": "test/*.jpg"}, "output": {"label_column": "tags"}, "tta": {"views": "d4"}}}


def train_folds(folder: Path, models_dir: Path, *, steps: int = STEPS, folds: int = FOLDS, seed: int = 0,
                log=print) -> FoldsResult:
    """``kagglekit train`` on the demo's competition (the config: :func:`train_config`, written beside the
    model folder), plus the expected-F2 decision fitted on the same out-of-fold predictions; return the
    out-of-fold F2 of each decision. Holds what kagglekit.train.train_folds holds."""
    import polars as pl

    from kagglekit.demo.multilabel_data import read_tags
    from kagglekit.metrics import fbeta_score
    from kagglekit.thresholds import fit_decision, write_decision
    from kagglekit.train.command import run_training
    from kagglekit.train.toml_writer import dumps

    config = models_dir.parent / "multilabel-train.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(dumps(train_config(steps, folds, seed)))
    trained = run_training(config, folder, models_dir, progress=False)
    log(trained.summary())
    oof = pl.read_parquet(models_dir / "oof.parquet")
    classes = [c.removeprefix("prob_") for c in oof.columns if c.startswith("prob_")]  # the checkpoints' order
    ids, labels = read_tags(folder / "train.csv", classes)
    assert oof["id"].to_list() == ids  # the OOF table is in the training table's order
    oof_z = oof.select([f"logit_{c}" for c in classes]).to_numpy()
    oof_p = oof.select([f"prob_{c}" for c in classes]).to_numpy()
    d = trained.decision
    ruled = fit_decision(oof_p, labels, "per_class", beta=BETA, classes=classes, logits=oof_z, folds=d.folds,
                         repeats=d.repeats, seed=d.seed, structure=weather())  # the same thresholds, under the rule
    expected, expected_ruled = (fit_decision(oof_p, labels, "expected_fbeta", beta=BETA, classes=classes, logits=oof_z,
                                             structure=structure) for structure in (None, weather()))
    for decision, name in ((ruled, "weather_rule"), (expected, "expected_f2"), (expected_ruled, "expected_f2_weather_rule")):
        write_decision(decision, models_dir / f"{name}.json")
    oof_f2 = {"threshold 0.5": (fbeta_score(labels, oof_p >= 0.5, BETA, average="samples"), None),
              "per-class thresholds": (d.score, d.held_out_score),
              "per-class thresholds + weather rule": (ruled.score, ruled.held_out_score),
              "expected-F2 decision": (expected.score, None),
              "expected-F2 decision + weather rule": (expected_ruled.score, None)}
    return FoldsResult(models_dir, oof_f2, classes, labels)


def score(submission, solution) -> float:
    """Mean per-chip F2 of a submission's tags against the hidden ones (Planet's metric)."""
    from kagglekit.demo.multilabel_data import read_tags
    from kagglekit.metrics import fbeta_score

    truth_ids, truth = read_tags(solution)
    ids, predicted = read_tags(submission)
    order = {i: k for k, i in enumerate(ids)}
    return fbeta_score(truth, predicted[[order[i] for i in truth_ids]], BETA, average="samples")


def run_multilabel(out="build/demo", *, steps: int = STEPS, n_train: int = 1200, n_test: int = 300, folds: int = FOLDS,
                   seed: int = 0, notebook=None, log=print) -> dict:
    """Run every step under ``out``; print and return the table (row -> (out-of-fold F2 or None, held-out
    estimate or None, test F2)).

    The size knobs (``kagglekit demo multilabel --steps --train --test --folds``): ``steps`` per fold,
    ``n_train`` and ``n_test`` chips, ``folds`` folds. The defaults are the full demo, whose figures
    ``make demo-check`` asserts; the test suite runs a small size."""
    from kagglekit.delivery.notebook import run_kernel
    from kagglekit.demo.multilabel_blend import second_level, train_variants
    from kagglekit.demo.multilabel_data import build_multilabel_competition
    from kagglekit.demo.run import default_notebook

    out = Path(out)
    start = time.monotonic()
    log(f"1/5 building the multi-label competition under {out / 'input'} ({n_train} train, {n_test} test chips)")
    comp = build_multilabel_competition(out, n_train=n_train, n_test=n_test, side=SIZE, seed=seed)
    log(f"2/5 training {folds} folds of {MODEL} on CPU, {steps} steps each")
    trained = train_folds(comp.folder, out / "input" / MODELS, steps=steps, folds=folds, seed=seed, log=log)
    log(f"3/5 running {Path(notebook or default_notebook())} headless on the test chips")
    working = out / "working" / "multilabel"
    run_kernel(Path(notebook) if notebook else default_notebook(), out, comp.folder.name, MODELS, working)
    log("4/5 two more variants, and their OOF predictions blended, weighted and stacked")
    folders = [trained.models_dir, *train_variants(comp.folder, trained.models_dir, train_config(steps, folds, seed), log=log)]
    config = _kernel_config(trained.models_dir)
    second = second_level(trained.models_dir, folders, trained.labels, trained.classes, config, BETA)
    log("5/5 every row through the classify pipeline, and the scores on the hidden tags")
    rows = _scored_rows(comp, trained, second, config, working)
    log("")
    log("| decision | out-of-fold F2 | held-out estimate | test F2 |\n| --- | ---: | ---: | ---: |")
    for name, (oof, held_out, test_f2) in rows.items():
        log(f"| {name} | {_fmt(oof)} | {_fmt(held_out)} | {test_f2:.4f} |")
    log(f"submission: {working / 'submission.csv'}   picture: {working / 'predictions.png'}   "
        f"({time.monotonic() - start:.0f} s)")
    return {"rows": rows, "seconds": time.monotonic() - start,
            "summary": [(f"test F2, {name}", test_f2) for name, (*_, test_f2) in rows.items()]}


def _fmt(value) -> str:
    return "" if value is None else f"{value:.4f}"


def _kernel_config(models_dir: Path) -> dict:
    from kagglekit._toml import tomllib

    return tomllib.loads((models_dir / "classify.toml").read_text())


def _scored_rows(comp, trained: FoldsResult, second: dict, config: dict, working: Path) -> dict:
    """Every row's (out-of-fold F2, held-out estimate, test F2): the notebook's submission, the first model's other
    decisions and the second level's rows through ``classify`` in this process, and the all-labels baseline."""
    from kagglekit.demo.multilabel_data import CLASSES, read_tags
    from kagglekit.pipeline import classify

    ids, _ = read_tags(comp.solution)
    everything = working / "all_labels.csv"
    everything.write_text("image_name,tags\n" + "".join(f"{i},{' '.join(CLASSES)}\n" for i in ids))
    rows = {"all labels (baseline)": (None, None, score(everything, comp.solution))}
    runs = {"threshold 0.5": {**config, "decision": {"kind": "threshold", "value": 0.5}},
            "per-class thresholds": None,  # the notebook's
            "per-class thresholds + weather rule": {**config, "decision": {"file": "weather_rule.json"}},
            "expected-F2 decision": {**config, "decision": {"file": "expected_f2.json"}},
            "expected-F2 decision + weather rule": {**config, "decision": {"file": "expected_f2_weather_rule.json"}}}
    runs.update({name: row.config for name, row in second.items()})
    figures = {**trained.oof_fbeta, **{name: (row.oof_f2, row.held_out_f2) for name, row in second.items()}}
    for name, run in runs.items():
        submission = working / "submission.csv"
        if run is not None:
            scratch = working / name.replace(" + ", "_").replace(" ", "_")
            classify(run, comp.folder, scratch, base_dir=trained.models_dir)
            submission = scratch / "submission.csv"
        rows[name] = (*figures[name], score(submission, comp.solution))
    return rows
