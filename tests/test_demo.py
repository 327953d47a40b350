"""The demo on a tiny scale: data builder, a very short training and the pipeline to a valid submission."""

from __future__ import annotations

import csv
import tomllib

import numpy as np
import pytest

from kagglekit.cli import build_parser
from kagglekit.demo import data
from kagglekit.demo.data import build_competition, read_masks, source_and_label
from kagglekit.demo.run import score
from kagglekit.demo.train import InferenceSettings, train
from kagglekit.pipeline import segment

BETA2 = 0.25


def test_the_label_is_the_thresholded_dab_density_of_plain_colour_deconvolution():
    from scipy.ndimage import gaussian_filter
    from skimage import data as skdata

    image, label = source_and_label()
    rgb_from_hed = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])  # Ruifrok & Johnston
    od = np.log(np.maximum(skdata.immunohistochemistry() / 255.0, 1e-6)) / np.log(1e-6)
    dab = np.maximum(od @ np.linalg.inv(rgb_from_hed), 0)[:, :, 2]
    expected = gaussian_filter(dab, data.DAB_SIGMA, mode="nearest", truncate=4.0) > data.DAB_THRESHOLD
    assert image.shape == (512, 512, 3) and label.dtype == bool
    assert np.mean(label == expected) > 0.999  # only pixels within rounding of the threshold may differ
    assert 0.1 < label.mean() < 0.5


def test_the_competition_folder_looks_like_kaggles(tmp_path):
    comp = build_competition(tmp_path, n_train=2, n_test=1, side=896, seed=3)
    assert sorted(p.name for p in (comp.folder / "train").iterdir()) == ["train_0.png", "train_1.png"]
    assert [p.name for p in (comp.folder / "test").iterdir()] == ["test_0.png"]
    with open(comp.folder / "sample_submission.csv", newline="") as f:
        assert list(csv.reader(f)) == [["id", "rle"], ["test_0", ""]]
    masks = read_masks(comp.folder / "train.csv")
    import cv2

    for i, mask in masks.items():
        image = cv2.imread(str(comp.folder / "train" / f"{i}.png"))
        assert mask.shape == image.shape[:2] == (896, 896)
        glass = (np.abs(image.astype(int) - data.BACKGROUND) <= 15).all(axis=2)
        assert 0 < mask.mean() and (mask.astype(bool) & glass).mean() <= 0.01  # labels lie on tissue
    again = build_competition(tmp_path / "again", n_train=2, n_test=1, side=896, seed=3)
    assert (again.folder / "train.csv").read_bytes() == (comp.folder / "train.csv").read_bytes()


def test_score_and_the_all_positive_baseline_have_their_closed_forms(tmp_path):
    comp = build_competition(tmp_path, n_train=1, n_test=2, side=448)
    truth = read_masks(comp.solution)
    with open(comp.solution, newline="") as f:
        right = {r["id"]: r["rle"] for r in csv.DictReader(f)}["test_0"]
    with open(tmp_path / "sub.csv", "w", newline="") as f:  # test_0 exactly right, test_1 empty
        csv.writer(f).writerows([["id", "rle"], ["test_0", right], ["test_1", ""]])
    fbeta, baseline = score(tmp_path / "sub.csv", comp.solution)
    n0, n1 = truth["test_0"].sum(), truth["test_1"].sum()
    p = (n0 + n1) / (2 * 448 * 448)
    recall = n0 / (n0 + n1)
    assert fbeta == pytest.approx((1 + BETA2) * recall / (BETA2 * 1 + recall))  # precision 1
    assert baseline == pytest.approx((1 + BETA2) * p / (BETA2 * p + 1))  # precision p, recall 1


@pytest.mark.slow
def test_tiny_demo_trains_and_the_pipeline_writes_a_valid_submission(tmp_path):
    comp = build_competition(tmp_path, n_train=2, n_test=2, side=448, seed=1)
    models = tmp_path / "input" / "models"
    settings = InferenceSettings(tile=128, stride=96, views="flips")
    result = train(comp.folder, models, steps=3, size=64, batch_size=2, settings=settings, log=lambda *_: None)
    assert result.steps == 3 and len(result.held_out) == 1 and 0 <= result.threshold <= 1
    config = tomllib.loads((models / "segment.toml").read_text())
    assert config["tiling"]["tile"] == 128 and config["threshold"] == {"kind": "file", "file": "threshold.json"}
    report = segment(models / "segment.toml", comp.folder, tmp_path / "working")
    assert report.predicted == ["test_0", "test_1"] and not report.fallback
    assert report.thresholds["test_0"] == pytest.approx(result.threshold)
    fbeta, baseline = score(tmp_path / "working" / "submission.csv", comp.solution)  # decodes every row
    assert 0 <= fbeta <= 1 and 0 < baseline < 1


def test_the_demo_command_is_registered():
    args = build_parser().parse_args(["demo", "multilabel", "--out", "x", "--steps", "5"])
    assert args.handler.__name__ == "_demo" and (args.names, args.out, args.steps) == (["multilabel"], "x", 5)
    assert build_parser().parse_args(["demo"]).names == []  # every demo
    args = build_parser().parse_args(["demo", "slides", "--train", "16", "--test", "12", "--folds", "2", "--seeds", "3",
                                      "--epochs", "4"])
    assert (args.train, args.test, args.folds, args.seeds, args.epochs, args.steps) == (16, 12, 2, 3, 4, None)


def test_the_size_knobs_reach_each_demo_that_has_them(monkeypatch, tmp_path):
    """``kagglekit demo`` hands each knob to the demos that take it (under their own argument names), says
    which demos lack it, and refuses a knob that none of the named demos has."""
    from kagglekit.demo import suite
    from kagglekit.errors import InvalidArgumentError

    calls = {}

    def fake(name):
        def run(out, **kwargs):
            calls[name] = {k: v for k, v in kwargs.items() if k not in ("log", "notebook")}
            return {"seconds": 0.0, "summary": [("x", 0.5)]}
        return run

    monkeypatch.setattr(suite, "DEMOS", {name: (fake(name), what) for name, (_, what) in suite.DEMOS.items()})
    lines = []
    args = build_parser().parse_args(["demo", "--out", str(tmp_path), "--steps", "7", "--train", "20", "--folds", "3",
                                      "--seeds", "2"])
    suite.run_demos(args.names, args.out, steps=args.steps, seed=1, log=lines.append, train=args.train, test=args.test,
                    folds=args.folds, seeds=args.seeds, epochs=args.epochs)
    assert calls == {"segmentation": {"seed": 1, "steps": 7, "n_train": 20},
                     "multilabel": {"seed": 1, "steps": 7, "n_train": 20, "folds": 3},
                     "slides": {"seed": 1, "n_train": 20, "folds": 3, "n_seeds": 2},
                     "volume": {"seed": 1, "steps": 7, "n_train": 20}}
    assert "(steps = 7 applies to segmentation, multilabel, volume only)" in lines
    assert "(seeds = 2 applies to slides only)" in lines
    with pytest.raises(InvalidArgumentError, match="no demo among \\['volume'\\] has the knob 'seeds'; slides do"):
        suite.run_demos(["volume"], tmp_path, seeds=2, log=lines.append)


@pytest.mark.slow
def test_training_is_a_fixed_number_of_steps_through_fit_and_repeats_exactly(tmp_path):
    """Two trainings of the same steps from the same seed write the same weights, threshold and config (no
    wall-clock stop); the loss logged is the mean of fit's history, and segment.toml reads back as its dict."""
    from helpers import same_safetensors

    from kagglekit.pipeline import load_config

    comp = build_competition(tmp_path, n_train=2, n_test=1, side=448, seed=1)
    settings = InferenceSettings(tile=128, stride=96, views="flips")
    runs = []
    for k in range(2):
        lines = []
        result = train(comp.folder, tmp_path / f"models{k}", steps=4, size=64, batch_size=2, settings=settings,
                       log=lines.append)
        runs.append((result, lines))
    (a, log_a), (b, log_b) = runs
    assert same_safetensors(a.models_dir / "model.safetensors", b.models_dir / "model.safetensors")
    assert (a.threshold, a.held_out_fbeta) == (b.threshold, b.held_out_fbeta) and log_a == log_b
    assert "  loss " in log_a[1] and log_a[1].endswith("over the last 4")
    toml = (a.models_dir / "segment.toml").read_text()
    assert toml == (b.models_dir / "segment.toml").read_text()
    assert tomllib.loads(toml) == settings.kernel_config("threshold.json")
    assert load_config(a.models_dir / "segment.toml").tiling.tile == 128


def test_a_kernel_config_the_pipeline_cannot_read_stops_the_demo(tmp_path):
    from kagglekit.demo.train import write_kernel_config
    from kagglekit.errors import KagglekitError

    config = InferenceSettings().kernel_config("threshold.json")
    assert tomllib.loads(write_kernel_config(tmp_path / "segment.toml", config).read_text()) == config
    with pytest.raises(KagglekitError, match="stride"):
        write_kernel_config(tmp_path / "bad.toml", {**config, "tiling": {**config["tiling"], "stride": 0}})


@pytest.mark.demo
def test_the_full_segmentation_demo_beats_the_all_positive_baseline(tmp_path):
    from kagglekit.demo.run import run_demo

    result = run_demo(tmp_path, log=lambda *_: None)
    assert result["steps"] == 250 and result["held_out_fbeta"] > 0.8
    assert result["fbeta"] > 0.7 and result["fbeta"] > result["baseline"] + 0.5
    assert (tmp_path / "working" / "overlay.png").is_file()
