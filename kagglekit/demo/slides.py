"""``kagglekit demo slides``: a UBC-OCEAN-like whole-slide competition, end to end on CPU.

    1. the competition (slides_data.py): WSI-like slides on black, TMA-like ones on white at twice the
       magnification (5 % of train, 40 % of test), a subtype told by 2 or 3 of about 50 tiles, and an
       "Other" subtype only in the test
    2. the backbone: timm's resnet10t with seeded random weights whose BatchNorm statistics are measured
       on tissue tiles (made here, no download), saved as a checkpoint; bags of every train slide with
       ``extract_bags`` (64 px tiles; TMAs read at scale 0.5, their white background swapped to black)
    3. heads: ``train_heads`` with 1 Chowder per fold, and with the seed ensemble (all of a fold at once);
       ``leave_class_out`` for rows of unseen subtypes; temperature on the out-of-fold rows; the entropy
       cut for "Other" (``fit_entropy_cut``) -> decision.json; classify.toml with ``[slides]``
       a tile classifier on weakly labelled tiles (slides_tiles.py) -> classify_tiles.toml (route "tiles")
       and classify_kinds.toml (WSIs by the heads, TMAs by the tile classifier: [slides.tma])
    4. the notebook, headless and offline, classifies the test slides (each a bag, then the heads)
    5. balanced accuracy on the hidden labels (Other is the fifth class): majority class, mean-
       pooled features + logistic regression, one Chowder, the ensemble, the ensemble + entropy "Other";
       then the tile classifier over every slide's tissue tiles, and the per-kind branches (``classify``
       run here on the two configs)

    <out>/input/kagglekit-slides/          the competition
    <out>/input/kagglekit-slides-models/   backbone.safetensors, heads_fold*.safetensors, decision.json, classify.toml,
                                           tiles.safetensors, classify_tiles.toml, classify_kinds.toml
    <out>/working/slides/                  submission.csv, slides.png, the executed notebook; bags/ and tiles_train/
                                           for training; tiles/ and kinds/ the two configs' submissions
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from kagglekit.demo.slides_tiles import TILE_STEPS, TILES_MODEL, kind_config, tile_config, train_tile_classifier

__all__ = ["run_slides"]

BACKBONE = "timm/resnet10t"
TILE = 64
N_TRAIN, N_TEST = 128, 96  # slides
FOLDS = 4
N_SEEDS = 20
EPOCHS = 80
TRAINING = {"lr": 5e-3, "weight_decay": 1e-4, "batch_size": 16, "head_kwargs": {"r": 2, "hidden": [32]}}
BAG_OPTIONS = {"tile": TILE, "scale": {"tma": 0.5, "wsi": 1.0}, "threshold": {"tma": 245, "wsi": 25},
               "min_tissue": 0.5, "swap_background": "tma", "tma_max_side": 1000, "batch_size": 64}
MODELS = "kagglekit-slides-models"


def make_backbone(path: Path, seed: int = 0):
    """resnet10t with weights drawn from ``seed`` and BatchNorm statistics measured on 640 tissue patches of
    the demo's tissues (otherwise random weights give features near 0); saved at ``path`` and reloaded."""
    import torch

    from kagglekit.demo.slides_data import _patch, _tissues
    from kagglekit.infer.batching import IMAGENET
    from kagglekit.models import create, load_checkpoint, save_checkpoint

    torch.manual_seed(seed)
    model = create(BACKBONE, num_classes=0)
    rng = np.random.default_rng(seed)
    tissues = _tissues()
    tiles = np.stack([_patch(rng, tissues[k]) for k in list(tissues) * 80]).astype(np.float32) / 255
    x = torch.from_numpy((tiles - np.float32(IMAGENET[0])) / np.float32(IMAGENET[1])).permute(0, 3, 1, 2)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # a plain average over every batch
    model.train()
    with torch.no_grad():
        for k in range(0, len(x), 128):
            model(x[k : k + 128])
    save_checkpoint(model.eval(), path, {"made_by": "kagglekit demo slides", "seed": seed})
    return load_checkpoint(path)


def _kernel_config(folds: int = FOLDS) -> dict:
    """``classify.toml`` as a dict: the heads of each fold on bags made as :data:`BAG_OPTIONS` says, the decision file."""
    from kagglekit.demo.train import BUDGET

    return {"kind": "classify", "num_workers": 1, "inputs": {"glob": "test_images/*.png"},
            "models": [{"path": f"heads_fold{k}.safetensors"} for k in range(folds)],
            "slides": {"backbone": "backbone.safetensors", **BAG_OPTIONS}, "decision": {"file": "decision.json"},
            "output": {"label_column": "label"}, "budget": BUDGET}


def _fit_decision(trained, held_out: np.ndarray, y: np.ndarray, classes):
    """The argmax decision with a temperature fitted on the out-of-fold rows (on the log of their mean
    probabilities, as classify applies it) and the entropy cut for "Other" fitted on those rows plus the
    leave-class-out rows as Other."""
    from kagglekit.demo.slides_data import OTHER
    from kagglekit.thresholds import Decision, TemperatureScaler, fit_entropy_cut

    scaler = TemperatureScaler().fit(np.log(np.clip(trained.oof, 1e-12, None)), y)
    rows = scaler.transform(np.log(np.clip(np.r_[trained.oof, held_out], 1e-12, None)))
    cut = fit_entropy_cut(rows, np.r_[y, np.full(len(held_out), -1)], other=-1)
    return Decision("argmax", other_cut=cut.cut, other=OTHER, temperature=scaler.temperature_, classes=tuple(classes),
                    score=cut.balanced_accuracy)


def _mean_pooled(train_bags, y, test_bags) -> np.ndarray:
    """Test predictions of a logistic regression on each bag's mean feature (standardised)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    def pooled(bags):
        return np.stack([b.features.astype(np.float32).mean(axis=0) for b in bags])

    scaler = StandardScaler().fit(pooled(train_bags))
    model = LogisticRegression(max_iter=5000).fit(scaler.transform(pooled(train_bags)), y)
    return model.predict(scaler.transform(pooled(test_bags)))


def _tile_rows(models_dir: Path, comp: Path, working: Path, test_ids) -> dict:
    """The predicted test labels of classify_tiles.toml and classify_kinds.toml, run by ``classify``."""
    from kagglekit.kaggle import read_csv_strings
    from kagglekit.pipeline import classify

    rows = {}
    for name, config in (("tile classifier, every tissue tile, max (route = tiles)", "classify_tiles.toml"),
                         ("per kind: ensemble for WSIs, tile classifier for TMAs", "classify_kinds.toml")):
        out = working / config.split("_")[1].removesuffix(".toml")
        classify(models_dir / config, comp, out)
        submitted = dict(read_csv_strings(out / "submission.csv", "submission").select("image_id", "label").iter_rows())
        rows[name] = np.array([submitted[i] for i in test_ids], dtype=object)
    return rows


def _picture(path: Path, folder: Path, ids, truth, predicted, n: int = 6) -> None:
    """slides.png: the first ``n`` test slides, their bag's tiles outlined (green: right, red: wrong), true
    and predicted labels."""
    import cv2

    from kagglekit.io import open_image
    from kagglekit.tiling import draw_grid, plan_tiles, save_png

    panels = []
    for i in ids[:n]:
        source = open_image(folder / "test_images" / f"{i}.png")
        plan = plan_tiles(source, **{k: v for k, v in BAG_OPTIONS.items() if k not in ("swap_background", "batch_size")})
        picture = draw_grid(source.thumbnail(320), plan.grid, color=(0, 255, 0) if truth[i] == predicted[i] else (255, 0, 0))
        panel = np.full((360, 340, 3), 255, np.uint8)
        panel[: picture.shape[0], : picture.shape[1]] = picture
        cv2.putText(panel, f"{truth[i]} -> {predicted[i]} ({plan.kind})", (4, 352), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1)
        panels.append(panel)
    save_png(path, np.concatenate(panels, axis=1))


def run_slides(out="build/demo", *, n_train: int = N_TRAIN, n_test: int = N_TEST, folds: int = FOLDS,
               n_seeds: int = N_SEEDS, epochs: int = EPOCHS, tile_steps: int = TILE_STEPS, seed: int = 0, notebook=None,
               log=print) -> dict:
    """Run every step under ``out``; print and return the table of test balanced accuracies (``rows``: name ->
    (all, on TMAs, share of Other recovered)), with the test ``ids``, ``truth``, ``is_tma`` and each row's
    ``predictions``.

    The size knobs (``kagglekit demo slides --train --test --folds --seeds --epochs``): ``n_train`` and
    ``n_test`` slides, ``folds`` folds of heads, ``n_seeds`` heads per fold in the ensemble (and per class
    for the leave-class-out rows), ``epochs`` passes of every head over its fold's bags; ``tile_steps`` the
    tile classifier's training steps. The defaults are
    the full demo, whose figures ``make demo-check`` asserts; the test suite runs a small size."""
    from kagglekit.delivery.notebook import run_kernel
    from kagglekit.demo.run import default_notebook
    from kagglekit.demo.slides_data import OTHER, SUBTYPES, build_slide_competition, read_labels
    from kagglekit.demo.train import write_kernel_config
    from kagglekit.errors import InvalidArgumentError
    from kagglekit.jobs import extract_bags
    from kagglekit.kaggle import read_csv_strings
    from kagglekit.metrics import balanced_accuracy
    from kagglekit.mil import leave_class_out, load_bag, predict_bags, train_heads
    from kagglekit.thresholds import write_decision

    if folds < 2 or n_train < len(SUBTYPES) * folds or n_test < 6 or n_seeds < 1 or epochs < 1 or tile_steps < 1:
        raise InvalidArgumentError(
            f"the slides demo needs folds >= 2, n_train >= {len(SUBTYPES)} x folds (every subtype in every fold), "
            f"n_test >= 6 (a sixth of them Other), n_seeds >= 1, epochs >= 1 and tile_steps >= 1; got n_train={n_train}, "
            f"n_test={n_test}, folds={folds}, n_seeds={n_seeds}, epochs={epochs}, tile_steps={tile_steps}")

    out = Path(out)
    start = time.monotonic()
    working = out / "working" / "slides"
    models_dir = out / "input" / MODELS
    models_dir.mkdir(parents=True, exist_ok=True)
    log(f"1/5 building the slide competition under {out / 'input'} ({n_train} train, {n_test} test slides)")
    comp = build_slide_competition(out, n_train=n_train, n_test=n_test, seed=seed)
    log(f"2/5 the backbone ({BACKBONE}, local weights) and the bags of the train slides")
    backbone = make_backbone(models_dir / "backbone.safetensors", seed)
    train_ids, train_labels, _ = read_labels(comp.folder / "train.csv")
    manifest = extract_bags(comp.folder / "train_images", working / "bags" / "train", backbone,
                            **BAG_OPTIONS)
    log(f"   {manifest['tiles'].sum()} tiles in {len(manifest)} bags; kinds {dict(manifest['kind'].value_counts().iter_rows())}")
    train_bags = [load_bag(working / "bags" / "train" / f"{i}.safetensors") for i in train_ids]
    y = np.array([SUBTYPES.index(label) for label in train_labels])
    log(f"3/5 heads: {folds} folds x 1 Chowder, {folds} folds x {n_seeds} seeds at once, leave-class-out rows; "
        f"{epochs} epochs")
    training = {**TRAINING, "epochs": epochs}
    one = train_heads(train_bags, y, folds=folds, n_seeds=1, seed=seed, progress=False, **training)
    ensemble = train_heads(train_bags, y, folds=folds, n_seeds=n_seeds, seed=seed, classes=SUBTYPES, out_dir=models_dir,
                           progress=False, **training)
    held_out = leave_class_out(train_bags, y, n_seeds=n_seeds, seed=seed, progress=False, **training)
    decision = _fit_decision(ensemble, held_out, y, SUBTYPES)
    write_decision(decision, models_dir / "decision.json")
    write_kernel_config(models_dir / "classify.toml", _kernel_config(folds))
    train_tile_classifier(comp.folder / "train_images", dict(zip(train_ids, train_labels)), working / "tiles_train",
                          models_dir / TILES_MODEL, backbone, classes=SUBTYPES, options=BAG_OPTIONS, steps=tile_steps,
                          seed=seed, log=log)
    write_kernel_config(models_dir / "classify_tiles.toml", tile_config(BAG_OPTIONS))
    write_kernel_config(models_dir / "classify_kinds.toml", kind_config(BAG_OPTIONS, folds))
    log(f"   out-of-fold balanced accuracy: one Chowder {one.score:.3f}, ensemble {ensemble.score:.3f}; "
        f"temperature {decision.temperature:.2f}, Other above entropy {decision.other_cut:.3f}")
    log(f"4/5 running {Path(notebook or default_notebook())} headless on the test slides")
    run_kernel(Path(notebook) if notebook else default_notebook(), out, comp.folder.name, MODELS, working)
    log("5/5 the other rows from the test bags, and the scores on the hidden labels")
    test_ids, test_labels, test_tma = read_labels(comp.solution)
    extract_bags(comp.folder / "test_images", working / "bags" / "test", backbone, progress=False,
                 **BAG_OPTIONS)
    test_bags = [load_bag(working / "bags" / "test" / f"{i}.safetensors") for i in test_ids]
    names = np.array([*SUBTYPES, OTHER], dtype=object)
    truth = np.array(test_labels, dtype=object)
    submitted = dict(read_csv_strings(working / "submission.csv", "submission").select("image_id", "label").iter_rows())
    predictions = {
        "majority class": np.full(len(truth), SUBTYPES[int(np.bincount(y).argmax())], dtype=object),
        "mean-pooled features + logistic regression": names[_mean_pooled(train_bags, y, test_bags)],
        "one Chowder per fold": names[predict_bags(one, test_bags).argmax(axis=1)],
        f"{n_seeds}-seed Chowder ensemble per fold": names[predict_bags(ensemble, test_bags).argmax(axis=1)],
        "ensemble + entropy Other (the notebook's submission)": np.array([submitted[i] for i in test_ids], dtype=object),
        **_tile_rows(models_dir, comp.folder, working, test_ids),
    }
    rows = {name: (balanced_accuracy(truth, p), balanced_accuracy(truth[test_tma], p[test_tma]),
                   float(np.mean(p[truth == OTHER] == OTHER))) for name, p in predictions.items()}
    _picture(working / "slides.png", comp.folder, test_ids, dict(zip(test_ids, truth)),
             dict(zip(test_ids, predictions["ensemble + entropy Other (the notebook's submission)"])))
    log("")
    log("| model | test balanced accuracy | on TMAs | Other recovered |\n| --- | ---: | ---: | ---: |")
    for name, (all_, tma, other) in rows.items():
        log(f"| {name} | {all_:.4f} | {tma:.4f} | {other:.2f} |")
    seconds = time.monotonic() - start
    log(f"submission: {working / 'submission.csv'}   picture: {working / 'slides.png'}   ({seconds:.0f} s)")
    return {"rows": rows, "seconds": seconds, "ids": test_ids, "truth": truth, "is_tma": test_tma,
            "predictions": predictions, "oof": {"one": one.score, "ensemble": ensemble.score},
            "summary": [(f"test balanced accuracy, {name}", value[0]) for name, value in rows.items()]}
