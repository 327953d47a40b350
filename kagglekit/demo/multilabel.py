"""``kagglekit demo multilabel``: a Planet-like multi-label competition, trained in folds on CPU and
submitted through the classify pipeline and the inference notebook.

    1. the competition (multilabel_data.py): JPEG chips of 1 to 4 regions of scikit-image's images
    2. folds: MultilabelStratifiedKFold(4, shuffle=True, random_state=seed); a small timm model per
       fold, trained from scratch for a fixed number of steps (D4 and brightness augmentation)
    3. out-of-fold predictions (D4 TTA) -> decision files: per-class F2 thresholds and the
       expected-F2 decision, each with a temperature fitted on the out-of-fold logits
    4. the notebook, headless and offline, runs classify.toml (the per-class thresholds) on the test chips;
       the pipeline runs twice more in-process for the other rows of the table
    5. mean per-chip F2 (Planet's metric) on the hidden tags for each decision and the all-labels baseline

    <out>/input/kagglekit-multilabel/          the competition
    <out>/input/kagglekit-multilabel-models/   fold*.safetensors, decision files, classify.toml
    <out>/working/                             submission.csv, predictions.png, the executed notebook
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODEL = "timm/resnet10t"
SIZE = 64
STEPS = 120  # per fold: about 25 s on the 2-core CI machine
FOLDS = 4
BATCH = 32
BETA = 2.0
MODELS = "kagglekit-multilabel-models"


@dataclass(frozen=True)
class FoldsResult:
    models_dir: Path
    oof_fbeta: dict[str, float]


def _batches(images: np.ndarray, labels: np.ndarray, rng: np.random.Generator):
    """Endless (x, y) float32 batches of random chips, each turned by a random element of D4 and its
    brightness scaled by 0.8 to 1.2."""
    import torch

    while True:
        k = rng.integers(0, len(images), BATCH)
        x = images[k].astype(np.float32) / 255.0
        x *= rng.uniform(0.8, 1.2, (BATCH, 1, 1, 1)).astype(np.float32)
        turns, flips = rng.integers(0, 4, BATCH), rng.random(BATCH) < 0.5
        x = np.stack([np.rot90(c[:, ::-1] if f else c, t) for c, t, f in zip(x, turns, flips)])
        yield (torch.from_numpy(np.clip(x, 0, 1)).permute(0, 3, 1, 2).contiguous(),
               torch.from_numpy(labels[k].astype(np.float32)))


def train_folds(folder: Path, models_dir: Path, *, steps: int = STEPS, folds: int = FOLDS, seed: int = 0,
                log=print) -> FoldsResult:
    """Train one model per fold, write the model dataset (checkpoints with their class names, decision
    files fitted on the out-of-fold predictions, classify.toml) and return the out-of-fold F2 of each
    decision. Holds the training chips (64 x 64 x 3 bytes each) and the out-of-fold tables."""
    import torch

    from kagglekit.cv import MultilabelStratifiedKFold
    from kagglekit.demo.multilabel_data import SOURCES, read_tags
    from kagglekit.demo.train import fit
    from kagglekit.infer import predict
    from kagglekit.io import load_image
    from kagglekit.metrics import fbeta_score
    from kagglekit.models import create, save_checkpoint
    from kagglekit.thresholds import fit_decision, write_decision

    ids, labels = read_tags(folder / "train.csv")
    images = np.stack([load_image(folder / "train" / f"{i}.jpg") for i in ids])
    oof_z = np.zeros(labels.shape, np.float64)
    models_dir.mkdir(parents=True, exist_ok=True)
    splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (train_rows, valid_rows) in enumerate(splitter.split(images, labels)):
        log(f"fold {fold}: {len(train_rows)} chips to train on, {len(valid_rows)} held out; {steps} steps")
        torch.manual_seed(seed * 100 + fold)
        model = create(MODEL, num_classes=len(SOURCES))
        batches = _batches(images[train_rows], labels[train_rows], np.random.default_rng(seed * 100 + fold))
        fit(model, batches, steps, lr=2e-3, log=log)
        model.eval()
        oof_z[valid_rows] = predict(model, list(images[valid_rows]), tta="d4", progress=False)  # mean logits of the views
        save_checkpoint(model, models_dir / f"fold{fold}.safetensors", classes=list(SOURCES),
                        metadata={"fold": fold, "steps": steps, "seed": seed})
    oof_p = 1 / (1 + np.exp(-oof_z))
    per_class = fit_decision(oof_p, labels, "per_class", beta=BETA, classes=SOURCES, logits=oof_z)
    expected = fit_decision(oof_p, labels, "expected_fbeta", beta=BETA, classes=SOURCES, logits=oof_z)
    write_decision(per_class, models_dir / "per_class.json")
    write_decision(expected, models_dir / "expected_f2.json")
    (models_dir / "classify.toml").write_text(_toml("per_class.json", folds))
    oof = {"threshold 0.5": fbeta_score(labels, oof_p >= 0.5, BETA, average="samples"),
           "per-class thresholds": per_class.score, "expected-F2 decision": expected.score}
    return FoldsResult(models_dir, oof)


def _toml(decision_file: str, folds: int = FOLDS) -> str:
    models = "".join(f'[[models]]\npath = "fold{k}.safetensors"\n' for k in range(folds))
    return (f'kind = "classify"\nbatch_size = 64\nnum_workers = 2\n\n[inputs]\nglob = "test/*.jpg"\n\n'
            f'[preprocess]\nsize = {SIZE}\nnormalize = "scale"\n\n{models}\n[tta]\nviews = "d4"\n\n'
            f'[decision]\nfile = "{decision_file}"\n\n[output]\nlabel_column = "tags"\nformat = "labels"\n\n'
            f'[budget]\nseconds = 1800\nreserve = 60\n')


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
    """Run every step under ``out``; print and return the table (decision -> out-of-fold F2 or None, test F2).

    The size knobs (``kagglekit demo multilabel --steps --train --test --folds``): ``steps`` per fold,
    ``n_train`` and ``n_test`` chips, ``folds`` folds. The defaults are the full demo, whose figures
    ``make demo-check`` asserts; the test suite runs a small size."""
    import tomllib

    from kagglekit.demo.multilabel_data import build_multilabel_competition
    from kagglekit.delivery.notebook import run_kernel
    from kagglekit.demo.run import default_notebook
    from kagglekit.pipeline import classify

    out = Path(out)
    start = time.monotonic()
    log(f"1/4 building the multi-label competition under {out / 'input'} ({n_train} train, {n_test} test chips)")
    comp = build_multilabel_competition(out, n_train=n_train, n_test=n_test, side=SIZE, seed=seed)
    log(f"2/4 training {folds} folds of {MODEL} on CPU, {steps} steps each")
    trained = train_folds(comp.folder, out / "input" / MODELS, steps=steps, folds=folds, seed=seed, log=log)
    log(f"3/4 running {Path(notebook or default_notebook())} headless on the test chips")
    working = out / "working" / "multilabel"
    run_kernel(Path(notebook) if notebook else default_notebook(), out, comp.folder.name, MODELS, working)
    log("4/4 the other decisions through the same pipeline, and the scores on the hidden tags")
    config = tomllib.loads((trained.models_dir / "classify.toml").read_text())
    test = {"per-class thresholds": score(working / "submission.csv", comp.solution)}
    for name, decision in (("threshold 0.5", {"kind": "threshold", "value": 0.5}),
                           ("expected-F2 decision", {"file": "expected_f2.json"})):
        scratch = working / name.split()[0]
        classify({**config, "decision": decision}, comp.folder, scratch, base_dir=trained.models_dir)
        test[name] = score(scratch / "submission.csv", comp.solution)
    everything = working / "all_labels.csv"
    from kagglekit.demo.multilabel_data import SOURCES, read_tags

    ids, _ = read_tags(comp.solution)
    everything.write_text("image_name,tags\n" + "".join(f"{i},{' '.join(SOURCES)}\n" for i in ids))
    rows = {"all labels (baseline)": (None, score(everything, comp.solution))}
    rows.update({name: (trained.oof_fbeta[name], test[name]) for name in ("threshold 0.5", "per-class thresholds",
                                                                        "expected-F2 decision")})
    log("")
    log("| decision | out-of-fold F2 | test F2 |\n| --- | ---: | ---: |")
    for name, (oof, test_f2) in rows.items():
        log(f"| {name} | {'' if oof is None else f'{oof:.4f}'} | {test_f2:.4f} |")
    log(f"submission: {working / 'submission.csv'}   picture: {working / 'predictions.png'}   "
        f"({time.monotonic() - start:.0f} s)")
    return {"rows": rows, "seconds": time.monotonic() - start,
            "summary": [(f"test F2, {name}", test_f2) for name, (_, test_f2) in rows.items()]}
