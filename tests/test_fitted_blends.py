"""fit_blend, BlendFit and blend files, against scikit-learn, scipy, numpy and brute force written plainly here."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.stats import rankdata
from sklearn.linear_model import LinearRegression
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.model_selection import KFold, StratifiedKFold

from kagglekit.cv import MultilabelStratifiedKFold, fold_pairs
from kagglekit.errors import InvalidArgumentError, KagglekitError, ShapeError
from kagglekit.models import create, save_checkpoint
from kagglekit.pipeline import classify
from kagglekit.thresholds import BlendFit, blend, fit_blend, read_blend, write_blend
from kagglekit.train.toml_writer import dumps

from competitions import colour_logits, read_csv, write_png


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def neg_mse(y, p):
    return -float(np.mean((y - p) ** 2))


def neg_log_loss(y, p):
    return float(np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def mean_blend(tables, weights):
    return np.average(np.stack(tables), axis=0, weights=weights)


def grid_weights(models: int, total: int):
    """Every weight vector whose entries are multiples of 1/n, for every n = 1..total (plain enumeration)."""
    def counts(k, n):
        if k == 1:
            yield (n,)
            return
        for first in range(n + 1):
            for rest in counts(k - 1, n - first):
                yield (first, *rest)
    for n in range(1, total + 1):
        for c in counts(models, n):
            yield np.array(c) / n


def informative_and_noise(seed=0, n=200, mu=0.75):
    """A calibrated model (the exact posterior of y given x ~ N(+-mu, 1)) and a model of pure noise around 0.5."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    x = rng.normal(np.where(y == 1, mu, -mu), 1.0)
    noise = np.clip(0.5 + 0.2 * rng.standard_normal(n), 0.01, 0.99)
    return [sigmoid(2 * mu * x), noise], y


@pytest.mark.parametrize("method", ["hill_climb", "nelder_mead"])
def test_an_informative_and_a_noise_model(method):
    tables, y = informative_and_noise()
    fit = fit_blend(tables, y, "log_loss", method=method, iterations=30, models=["posterior", "noise"])
    assert fit.weights[0] >= 0.95 and fit.weights.sum() == pytest.approx(1) and fit.weights.min() >= 0
    assert fit.nested < fit.in_sample  # weights chosen on the rows they are scored on flatter themselves
    assert fit.single == pytest.approx([-log_loss(y, t) for t in tables], rel=1e-12)
    assert fit.in_sample == pytest.approx(-log_loss(y, mean_blend(tables, fit.weights)), rel=1e-12)
    assert fit.nested == pytest.approx(np.mean(fit.nested_per_fold)) and len(fit.nested_per_fold) == 5
    assert fit.models == ("posterior", "noise") and fit.method == method and fit.mode == "mean"


@pytest.mark.parametrize("folds", ["count", "column"])
def test_nested_folds_are_sklearn_folds_fitted_and_scored_apart(folds):
    """nnls on the training rows of each of sklearn's stratified folds (LinearRegression(positive=True)),
    scored on the held-out rows: the nested figures, fold by fold, for a count or a fold column."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 120)
    tables = [np.clip(0.5 + s * (y - 0.5) + 0.3 * rng.standard_normal(120), 0, 1) for s in (0.6, 0.3, 0.1)]
    pairs = list(StratifiedKFold(4, shuffle=True, random_state=7).split(y, y))
    column = np.zeros(len(y), int)
    for k, (_, held_out) in enumerate(pairs):
        column[held_out] = k
    fit = fit_blend(tables, y, neg_mse, method="nnls", folds=4 if folds == "count" else column, seed=7)
    expected, nested_oof = [], np.zeros(len(y))
    for train, held_out in pairs:
        coef = LinearRegression(positive=True, fit_intercept=False).fit(np.stack(tables, 1)[train], y[train]).coef_
        nested_oof[held_out] = mean_blend([t[held_out] for t in tables], coef / coef.sum())
        expected.append(neg_mse(y[held_out], nested_oof[held_out]))
    np.testing.assert_allclose(fit.nested_per_fold, expected, rtol=1e-9)
    np.testing.assert_allclose(fit.oof, nested_oof, rtol=1e-9)  # each fold's rows blended without them


@pytest.mark.parametrize("kind", ["classes", "strings", "multilabel", "continuous"])
def test_fold_pairs_picks_the_splitter_for_the_labels(kind):
    rng = np.random.default_rng(4)
    y = {"classes": rng.integers(0, 3, 60).astype(float), "strings": rng.choice(["a", "b"], 60),
         "multilabel": rng.integers(0, 2, (60, 4)), "continuous": rng.random(60)}[kind]
    splitter = {"classes": StratifiedKFold, "strings": StratifiedKFold, "multilabel": MultilabelStratifiedKFold,
                "continuous": KFold}[kind](3, shuffle=True, random_state=5)
    for (train, held_out), (t, h) in zip(fold_pairs(3, y, seed=5), splitter.split(np.empty(60), y), strict=True):
        np.testing.assert_array_equal(train, t)
        np.testing.assert_array_equal(held_out, h)
    pairs = [(list(range(10, 60)), list(range(10))), (list(range(50)), list(range(50, 60)))]
    for (train, held_out), (t, h) in zip(fold_pairs(pairs, y), pairs, strict=True):
        assert train.tolist() == t and held_out.tolist() == h


def test_hill_climbing_reaches_the_grid_optimum_on_a_toy_built_for_it():
    """y is exactly 0.5 p1 + 0.3 p2 + 0.2 p3 (plus a little noise): the best point of the grid of weights that are
    multiples of 1/n (n <= 10), found by brute force, is (0.5, 0.3, 0.2), and greedy selection reaches it."""
    rng = np.random.default_rng(0)
    tables = list(rng.random((3, 60)))
    y = 0.5 * tables[0] + 0.3 * tables[1] + 0.2 * tables[2] + 0.01 * rng.standard_normal(60)
    best = max(grid_weights(3, 10), key=lambda w: neg_mse(y, mean_blend(tables, w)))
    fit = fit_blend(tables, y, neg_mse, iterations=10, folds=2)
    np.testing.assert_allclose(best, [0.5, 0.3, 0.2])
    np.testing.assert_allclose(fit.weights, best, atol=1e-12)
    assert fit.in_sample == pytest.approx(neg_mse(y, mean_blend(tables, best)), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hill_climbing_equals_the_brute_force_best_auc_of_the_weight_grid(seed):
    """Greedy selection is not optimal in general; on these three toys (three noisy models of one label) the best
    AUC over every weight vector of multiples of 1/n (n <= 10), enumerated plainly, is the one it reaches."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 80)
    tables = [sigmoid((y - 0.5) * k + rng.normal(0, 1, 80)) for k in (1.0, 0.8, 0.6)]
    best = max(roc_auc_score(y, mean_blend(tables, w)) for w in grid_weights(3, 10))
    fit = fit_blend(tables, y, "auc", iterations=10, folds=2)
    assert fit.in_sample == pytest.approx(best, rel=1e-12)
    assert fit.in_sample == pytest.approx(roc_auc_score(y, mean_blend(tables, fit.weights)), rel=1e-12)
    assert any(np.allclose(fit.weights * n, np.round(fit.weights * n)) for n in range(1, 11))


@pytest.mark.parametrize("mode", ["mean", "rank"])
@pytest.mark.parametrize("labels", ["multilabel", "classes"])
def test_nnls_equals_positive_linear_regression_normalised(mode, labels):
    rng = np.random.default_rng(2)
    n, c = 90, 3
    y = rng.integers(0, 2, (n, c)) if labels == "multilabel" else rng.integers(0, c, n)
    target = y if labels == "multilabel" else np.eye(c)[y]
    tables = [np.clip(s * target + (1 - s) * rng.random((n, c)), 0, 1) for s in (0.5, 0.3, 0.05, 0.0)]
    columns = [rankdata(t, axis=0) / n if mode == "rank" else t for t in tables]
    X = np.stack([t.ravel() for t in columns], axis=1)
    coef = LinearRegression(positive=True, fit_intercept=False).fit(X, target.ravel()).coef_
    metric = neg_mse if labels == "multilabel" else (lambda y, p: -neg_mse(np.eye(c)[y], p))
    fit = fit_blend(tables, y, metric, method="nnls", mode=mode, folds=3)
    np.testing.assert_allclose(fit.weights, coef / coef.sum(), atol=1e-9)


def test_nelder_mead_reaches_the_best_single_model_and_the_grid_optimum():
    """Two informative models with their own noise and one of noise: equal weights lose to the best model alone;
    Nelder-Mead reaches at least it, and at least the best point of a 1/20 weight grid (brute force)."""
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    z = 2 * y - 1.0
    tables = [sigmoid(1.5 * z + rng.normal(0, 1.5, 300)), sigmoid(1.2 * z + rng.normal(0, 1.5, 300)),
              np.clip(rng.random(300), 0.05, 0.95)]
    fit = fit_blend(tables, y, neg_log_loss, method="nelder_mead", folds=3)
    single = [neg_log_loss(y, t) for t in tables]
    grid = max(neg_log_loss(y, mean_blend(tables, w)) for w in grid_weights(3, 20))
    assert fit.single == pytest.approx(single, rel=1e-12)
    assert neg_log_loss(y, mean_blend(tables, [1, 1, 1])) < max(single) <= fit.in_sample
    assert fit.in_sample >= grid - 1e-9


def test_apply_and_the_classify_models_config():
    tables, y = informative_and_noise()
    fit = BlendFit(np.array([0.25, 0.75]), "hill_climb", "logit_mean", in_sample=0.9, nested=0.8)
    np.testing.assert_allclose(fit.apply(tables), blend(tables, [0.25, 0.75], "logit_mean"))
    zero = BlendFit(np.array([1.0, 0.0]), "nnls", "mean", in_sample=0.9, nested=0.8)
    np.testing.assert_array_equal(zero.apply(tables), tables[0])
    assert zero.models_config(["a.safetensors", "b.safetensors"]) == [{"path": "a.safetensors", "weight": 1.0}]
    folds = fit.models_config([["a0.safetensors", "a1.safetensors"], "b.safetensors"])  # a model's folds share its weight
    assert folds == [{"path": "a0.safetensors", "weight": 0.125}, {"path": "a1.safetensors", "weight": 0.125},
                     {"path": "b.safetensors", "weight": 0.75}]


def test_write_read_round_trip_and_the_contract(tmp_path):
    tables, y = informative_and_noise()
    fit = fit_blend(tables, y, "auc", iterations=5, folds=2, models=["a", "b"])
    path = write_blend(fit, tmp_path / "models" / "blend.json")
    assert json.loads(path.read_text()) == {
        "format": 1, "kind": "blend", "mode": "mean", "weights": fit.weights.tolist(), "models": ["a", "b"],
        "method": "hill_climb", "in_sample": fit.in_sample, "nested": fit.nested}
    back = read_blend(path)
    np.testing.assert_array_equal(back.weights, fit.weights)
    assert (back.method, back.mode, back.in_sample, back.nested, back.models) == ("hill_climb", "mean", fit.in_sample,
                                                                                    fit.nested, ("a", "b"))
    assert not list(path.parent.glob("*.tmp"))


GOOD = [np.full(4, 0.5), np.linspace(0.1, 0.9, 4)]
Y = np.array([0, 1, 0, 1])


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning")  # AUC of a fold of one class
@pytest.mark.parametrize("call, error, fragment", [
    (lambda: fit_blend([], Y, "auc"), InvalidArgumentError, "at least one"),
    (lambda: fit_blend([GOOD[0], np.zeros(5)], Y, "auc"), ShapeError, "shape"),
    (lambda: fit_blend(GOOD, Y, "auc", mode="median"), InvalidArgumentError, "median"),
    (lambda: fit_blend([GOOD[0], GOOD[1] - 0.5], Y, "auc", mode="gmean"), InvalidArgumentError, "probabilities"),
    (lambda: fit_blend([GOOD[0], np.array([0.1, np.nan, 0.2, 0.3])], Y, "auc"), InvalidArgumentError, "finite"),
    (lambda: fit_blend(GOOD, Y[:3], "auc"), ShapeError, "one label per row"),
    (lambda: fit_blend(GOOD, Y, "auc", method="greedy"), InvalidArgumentError, "nnls"),
    (lambda: fit_blend(GOOD, Y, "f1"), InvalidArgumentError, "log_loss"),
    (lambda: fit_blend(GOOD, Y, neg_mse, method="nnls", mode="logit_mean"), InvalidArgumentError, "linear"),
    (lambda: fit_blend(GOOD, Y, "auc", folds=[0, 1, 0]), ShapeError, "one per row"),
    (lambda: fit_blend(GOOD, Y, "auc", folds=[0, 0, 0, 0]), InvalidArgumentError, "two distinct"),
    (lambda: fit_blend(GOOD, Y, "auc", folds=[0, 1, 0, 1]), InvalidArgumentError, "every class"),
    (lambda: fit_blend(GOOD, Y, "auc", models=["one"]), InvalidArgumentError, "2 names"),
    (lambda: fit_blend(GOOD, np.array([0, 1, 2, 3]), neg_mse, method="nnls", folds=2), InvalidArgumentError, "split"),
    (lambda: BlendFit(np.array([0.5, 0.5]), "nnls", "mean", 1.0, 1.0).apply(GOOD[:1]), ShapeError, "fitted order"),
    (lambda: BlendFit(np.array([1.0]), "nnls", "rank", 1.0, 1.0).models_config(["a"]), InvalidArgumentError, "rank"),
    (lambda: BlendFit(np.array([1.0]), "nnls", "mean", 1.0, 1.0).models_config(["a", "b"]), ShapeError, "one per"),
])
def test_mistakes_are_named(call, error, fragment):
    with pytest.raises(error, match=fragment) as caught:
        call()
    assert isinstance(caught.value, KagglekitError)


CLASSES = ["red", "green", "blue"]
COLOURS = {"a": (250, 30, 20), "b": (200, 190, 40), "c": (10, 20, 240), "d": (128, 128, 128), "e": (90, 160, 200)}
GAINS = (8.0, 3.0, -8.0)


@pytest.mark.parametrize("mode, method", [("mean", "nnls"), ("logit_mean", "hill_climb")])
def test_classify_with_fitted_weights_writes_the_blend_of_the_models(tmp_path, mode, method):
    """Closed-form colour models (logit = gain * (colour / 255 - 0.5)); weights fitted on out-of-fold probabilities
    of random colours whose target is the 0.6 / 0.4 blend of the first two (the third model, 1 - p1, gets weight 0
    and is left out); classify's probabilities (views merged with ``[tta] merge = mode``) equal blend() of the
    models' closed-form probabilities with the fitted weights."""
    rng = np.random.default_rng(0)
    colours = rng.integers(0, 256, (150, 3))
    oof = [sigmoid(np.stack([colour_logits(c, gain=g) for c in colours])) for g in GAINS]
    fit = fit_blend(oof, blend(oof[:2], [0.6, 0.4], mode), neg_mse, method=method, mode=mode, folds=3, iterations=10)
    np.testing.assert_allclose(fit.weights, [0.6, 0.4, 0.0], atol=1e-9)
    (tmp_path / "test").mkdir()
    for i, colour in COLOURS.items():
        write_png(tmp_path / "test" / f"{i}.png", np.full((20, 30, 3), colour, np.uint8))
    (tmp_path / "sample_submission.csv").write_text("id,red,green,blue\n" + "".join(f"{i},0,0,0\n" for i in COLOURS))
    paths = [f"m{k}.safetensors" for k in range(3)]
    for path, gain in zip(paths, GAINS):
        save_checkpoint(create("kagglekit/test_pipeline_colour", gain=gain), tmp_path / path, classes=CLASSES)
    config = {"kind": "classify", "num_workers": 0, "preprocess": {"size": 16}, "tta": {"views": ["identity", "hflip"],
              "merge": mode}, "decision": {"kind": "probability"}, "output": {"format": "columns"},
              "models": fit.models_config(paths)}
    assert [m["path"] for m in config["models"]] == paths[:2]
    (tmp_path / "classify.toml").write_text(dumps(config))
    classify(tmp_path / "classify.toml", tmp_path, tmp_path / "out")
    rows = {r["id"]: r for r in read_csv(tmp_path / "out" / "submission.csv")}
    for i, colour in COLOURS.items():
        expected = blend([sigmoid(colour_logits(colour, gain=g)) for g in GAINS[:2]], fit.weights[:2], mode)
        np.testing.assert_allclose([float(rows[i][name]) for name in CLASSES], expected, atol=1e-6)
