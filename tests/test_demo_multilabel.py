"""The multi-label demo on a tiny scale: the competition's files, its tags, its score, a run end to end."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest
from sklearn.metrics import fbeta_score as sk_fbeta

from kagglekit.demo.multilabel import run_multilabel, score
from kagglekit.demo.multilabel_data import CLASSES, SOURCES, WEATHER, build_multilabel_competition, make_chip, read_tags


def test_chips_show_one_to_four_distinct_sources_under_exactly_one_weather_and_repeat_for_a_seed():
    a = make_chip(np.random.default_rng(5), 64)
    b = make_chip(np.random.default_rng(5), 64)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    chips = [make_chip(np.random.default_rng(s), 48) for s in range(200)]
    assert {len([t for t in labels if t in SOURCES]) for _, labels in chips} == {0, 1, 2, 3, 4}
    for chip, labels in chips:
        assert chip.shape == (48, 48, 3) and chip.dtype == np.uint8 and len(set(labels)) == len(labels)
        assert labels == [c for c in CLASSES if c in labels]  # in CLASSES order
        assert len([t for t in labels if t in WEATHER]) == 1  # Planet's weather: exactly one
        assert labels == ["cloudy"] or "cloudy" not in labels  # and "cloudy" alone
        grey = chip.mean(axis=2)
        if labels == ["cloudy"]:  # the veil leaves 12 % of the ground: bright and flat
            assert grey.mean() > 190 and grey.std() < 40
    assert {labels[-1] for _, labels in chips} == set(WEATHER)


def test_the_competition_folder_looks_like_planets(tmp_path):
    comp = build_multilabel_competition(tmp_path, n_train=12, n_test=5, seed=2)
    ids, tags = read_tags(comp.folder / "train.csv")
    assert ids == [f"train_{k}" for k in range(12)] and tags.shape == (12, len(CLASSES)) and (tags.sum(1) >= 1).all()
    for i in ids:
        assert cv2.imread(str(comp.folder / "train" / f"{i}.jpg")).shape == (64, 64, 3)
    with open(comp.folder / "sample_submission.csv", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["image_name", "tags"] and [r[0] for r in rows[1:]] == [f"test_{k}" for k in range(5)]
    again = build_multilabel_competition(tmp_path / "again", n_train=12, n_test=5, seed=2)
    assert (again.folder / "train.csv").read_bytes() == (comp.folder / "train.csv").read_bytes()
    assert (again.solution).read_bytes() == comp.solution.read_bytes()


def test_score_is_the_mean_of_per_chip_f2_as_scikit_learn_computes_it(tmp_path):
    comp = build_multilabel_competition(tmp_path, n_train=2, n_test=30, seed=4)
    ids, truth = read_tags(comp.solution)
    rng = np.random.default_rng(0)
    guess = (rng.random(truth.shape) < 0.4).astype(int)
    guess[0] = 0  # an empty prediction
    with open(tmp_path / "sub.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_name", "tags"])
        for i, row in reversed(list(zip(ids, guess))):  # another row order than the solution's
            writer.writerow([i, " ".join(c for c, g in zip(CLASSES, row) if g)])
    expected = sk_fbeta(truth, guess, beta=2, average="samples", zero_division=0)
    assert score(tmp_path / "sub.csv", comp.solution) == pytest.approx(expected)


SMALL = {"steps": 2, "n_train": 48, "n_test": 8}
ROWS = ["all labels (baseline)", "threshold 0.5", "per-class thresholds", "per-class thresholds + weather rule",
        "expected-F2 decision", "expected-F2 decision + weather rule", "mean of 3 models", "fitted blend weights", "stacker"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One run of the demo at a tiny size: (its folder, its result)."""
    root = tmp_path_factory.mktemp("multilabel-demo")
    return root, run_multilabel(root, log=lambda *_: None, **SMALL)


@pytest.mark.slow
def test_a_tiny_multilabel_demo_runs_end_to_end(tiny_run):
    root, result = tiny_run
    rows = result["rows"]
    assert list(rows) == ROWS and rows[ROWS[0]][:2] == (None, None)
    ids, truth = read_tags(root / "multilabel_solution.csv")
    assert rows[ROWS[0]][2] == pytest.approx(sk_fbeta(truth, np.ones_like(truth), beta=2, average="samples", zero_division=0))
    working = root / "working" / "multilabel"
    submission = working / "submission.csv"
    assert [r["image_name"] for r in csv.DictReader(open(submission))] == [f"test_{k}" for k in range(8)] == ids
    assert rows["per-class thresholds"][2] == pytest.approx(sk_fbeta(truth, read_tags(submission)[1], beta=2, average="samples",
                                                                     zero_division=0))  # the notebook's submission
    for name in ROWS[3:]:
        predicted = read_tags(working / name.replace(" + ", "_").replace(" ", "_") / "submission.csv")[1]
        assert rows[name][2] == pytest.approx(sk_fbeta(truth, predicted, beta=2, average="samples", zero_division=0))
        weather = predicted[:, [CLASSES.index(w) for w in WEATHER]]
        if name.endswith("weather rule"):  # exactly one weather tag, and cloudy alone
            assert (weather.sum(axis=1) == 1).all() and (predicted[weather[:, 1] == 1].sum(axis=1) == 1).all(), name
    assert (working / "predictions.png").is_file()


@pytest.mark.slow
def test_the_tiny_demo_retrained_from_its_seed_gives_the_same_models_and_classify_the_notebooks_submission(tiny_run, tmp_path):
    """Two runs give the same figures: the folds trained again from the seed are the same models with the same
    out-of-fold figures and decision files, and ``classify`` run here writes the submission the notebook wrote."""
    from kagglekit.demo.multilabel import FOLDS, MODELS, train_folds
    from kagglekit.pipeline import classify

    from helpers import same_safetensors

    root, result = tiny_run
    folder, models = root / "input" / "kagglekit-multilabel", root / "input" / MODELS
    again = train_folds(folder, tmp_path / "models", steps=SMALL["steps"], seed=0, log=lambda *_: None)
    assert again.oof_fbeta == {name: result["rows"][name][:2] for name in ROWS[1:6]}
    for fold in range(FOLDS):
        assert same_safetensors(tmp_path / "models" / f"fold{fold}" / "model.safetensors", models / f"fold{fold}" / "model.safetensors"), fold
    for name in ("decision.json", "weather_rule.json", "expected_f2.json", "expected_f2_weather_rule.json", "oof.parquet"):
        assert (tmp_path / "models" / name).read_bytes() == (models / name).read_bytes(), name
    assert (tmp_path / "models" / "classify.toml").read_text().splitlines()[1:] == (models / "classify.toml").read_text().splitlines()[1:]
    from kagglekit.demo.multilabel import BETA, _kernel_config
    from kagglekit.demo.multilabel_blend import second_level

    fitted = {name: (models / name).read_bytes() for name in ("blend.json", "stacker.json", "decision_stacker.json")}
    second = second_level(models, [models, models / "b", models / "c"], again.labels, again.classes, _kernel_config(models), BETA)
    assert {name: (row.oof_f2, row.held_out_f2) for name, row in second.items()} == {
        name: result["rows"][name][:2] for name in ROWS[6:]}  # the second level fitted again: the same figures and files
    assert fitted == {name: (models / name).read_bytes() for name in fitted}
    classify(models / "classify.toml", folder, tmp_path / "working")
    assert (tmp_path / "working" / "submission.csv").read_bytes() == (root / "working" / "multilabel" / "submission.csv").read_bytes()


def test_the_demos_training_config_is_the_readmes():
    from pathlib import Path

    from kagglekit._toml import tomllib
    from kagglekit.demo.multilabel import train_config

    readme = (Path(__file__).parents[1] / "README.md").read_text().split("\n## Training\n", 1)[1]
    assert tomllib.loads(readme.split("```toml\n", 1)[1].split("```", 1)[0]) == train_config()


@pytest.mark.demo
def test_the_full_multilabel_demo_puts_fitted_decisions_above_threshold_half_and_the_blend_above_one_model(tmp_path):
    rows = run_multilabel(tmp_path, log=lambda *_: None)["rows"]
    baseline, half = rows["all labels (baseline)"][2], rows["threshold 0.5"]
    assert half[2] > baseline + 0.2  # the trained folds, even at 0.5, far above tagging everything
    for name in ("per-class thresholds", "expected-F2 decision"):  # decisions fitted out of fold beat 0.5, out of fold and on test
        assert rows[name][0] > half[0] + 0.02 and rows[name][2] > half[2] + 0.02, name
    single, fitted = rows["per-class thresholds"], rows["fitted blend weights"]
    assert fitted[1] > single[1] and fitted[2] > single[2]  # the fitted blend above the first model, held out and on test
    assert rows["stacker"][2] > single[2]
    for name, (oof, held_out, _) in rows.items():  # an estimate from thresholds that never saw the row is the lower
        assert held_out is None or held_out < oof, name
    assert (tmp_path / "working" / "multilabel" / "predictions.png").is_file()
