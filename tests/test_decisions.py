"""Decision rules against brute force, scipy and scikit-learn."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import optimize, special, stats
from sklearn.metrics import balanced_accuracy_score, log_loss

from kagglekit.errors import InvalidArgumentError, KagglekitError, ShapeError
from kagglekit.thresholds import (
    TemperatureScaler,
    entropy,
    expected_fbeta_decision,
    fit_entropy_cut,
    reject_by_entropy,
)


def brute_force_expected_fbeta(p, beta, empty_fbeta):
    """E[F-beta] of every one of the 2^m predictions, summing over all 2^m truths."""
    m = len(p)
    sets = ((np.arange(2**m)[:, None] >> np.arange(m)) & 1).astype(np.int64)  # (2^m, m)
    prob_truth = np.prod(np.where(sets == 1, p, 1 - p), axis=1)
    tp = sets @ sets.T  # [prediction, truth]
    n_pred = sets.sum(axis=1)[:, None]
    n_true = sets.sum(axis=1)[None, :]
    denom = beta**2 * n_true + n_pred
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(denom == 0, empty_fbeta, (1 + beta**2) * tp / denom)
    return f @ prob_truth, sets.astype(bool)


@pytest.mark.parametrize("beta", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("empty_fbeta", [1.0, 0.0])
def test_expected_fbeta_decision_equals_brute_force(beta, empty_fbeta):
    rng = np.random.default_rng(int(beta * 10 + empty_fbeta))
    for m in range(1, 11):
        n = 4 if m < 10 else 2
        P = rng.beta(0.5, 0.8, size=(n, m))
        P[0, : m // 3] = np.round(P[0, : m // 3], 1)  # ties, exact 0 and 1
        result = expected_fbeta_decision(P, beta, empty_fbeta)
        for i in range(n):
            expected, sets = brute_force_expected_fbeta(P[i], beta, empty_fbeta)
            assert abs(result.expected_fbeta[i] - expected.max()) <= 1e-12
            ours = np.flatnonzero((sets == result.labels[i]).all(axis=1))[0]
            assert abs(expected[ours] - expected.max()) <= 1e-12


def test_expected_fbeta_decision_chunks_do_not_change_the_answer():
    P = np.random.default_rng(2).random((50, 17))
    a = expected_fbeta_decision(P, 2.0)
    b = expected_fbeta_decision(P, 2.0, chunk=7)
    assert np.array_equal(a.labels, b.labels)
    # the values to the last bit or two: numpy 2.4 sums a (chunk, m, m) batch in a shape-dependent order
    np.testing.assert_allclose(a.expected_fbeta, b.expected_fbeta, rtol=4e-16, atol=0)


def test_expected_fbeta_decision_bad_inputs():
    with pytest.raises(InvalidArgumentError, match=r"\[0, 1\]"):
        expected_fbeta_decision(np.array([[0.2, 1.2]]))
    with pytest.raises(InvalidArgumentError, match="NaN"):
        expected_fbeta_decision(np.array([[0.2, np.nan]]))
    with pytest.raises(ShapeError):
        expected_fbeta_decision(np.array([0.2, 0.3]))
    with pytest.raises(ShapeError):
        expected_fbeta_decision(np.zeros((0, 3)))
    with pytest.raises(InvalidArgumentError, match="empty_fbeta"):
        expected_fbeta_decision(np.array([[0.2, 0.3]]), empty_fbeta=2)
    for chunk in (-1, 0, 2.5, None):
        with pytest.raises(InvalidArgumentError, match="chunk"):
            expected_fbeta_decision(np.array([[0.2, 0.3]]), chunk=chunk)


def test_entropy_matches_scipy():
    rng = np.random.default_rng(3)
    P = special.softmax(rng.normal(size=(40, 6)) * 3, axis=1)
    P[0] = [1, 0, 0, 0, 0, 0]
    P[1] = [0.5, 0.5, 0, 0, 0, 0]
    np.testing.assert_allclose(entropy(P), stats.entropy(P, axis=1), rtol=0, atol=1e-12)
    with pytest.raises(InvalidArgumentError, match="softmax"):
        entropy(np.array([[0.2, 0.2]]))


def brute_force_best_cut(P, y, other, classes):
    """Try every distinct entropy, midpoints between them, and both extremes, scored by sklearn."""
    ent = np.unique(entropy(P))
    cuts = np.r_[-np.inf, ent, (ent[1:] + ent[:-1]) / 2, np.inf]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # predicted classes absent from y_true
        return max(balanced_accuracy_score(y, reject_by_entropy(P, c, other, classes)) for c in cuts)


@pytest.mark.parametrize("with_other", [True, False])
def test_entropy_cut_maximises_balanced_accuracy(with_other):
    rng = np.random.default_rng(4)
    classes = np.array(["CC", "EC", "HGSC", "LGSC", "MC"])
    for _ in range(10):
        n = int(rng.integers(5, 80))
        y = classes[rng.integers(0, 5, n)].astype(object)
        sharpness = np.where(rng.random(n) < 0.3, 0.3, 3.0)
        logits = rng.normal(size=(n, 5)) + 2.0 * (classes[None, :] == y[:, None])
        if with_other:
            y[sharpness < 1] = "Other"  # unknown classes: flat probabilities
        P = special.softmax(logits * sharpness[:, None], axis=1)
        P[:3] = np.round(P[:3], 1) / np.round(P[:3], 1).sum(axis=1, keepdims=True)  # tied entropies
        y = y.astype(str)
        result = fit_entropy_cut(P, y, other="Other", classes=classes)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            achieved = balanced_accuracy_score(y, reject_by_entropy(P, result.cut, "Other", classes))
        assert abs(achieved - result.balanced_accuracy) <= 1e-12
        assert abs(result.balanced_accuracy - brute_force_best_cut(P, y, "Other", classes)) <= 1e-12


def test_reject_by_entropy_uses_strict_comparison_and_integer_labels():
    P = np.array([[0.9, 0.1], [0.5, 0.5], [0.05, 0.95]])
    cut = float(entropy(P[:1])[0])
    assert reject_by_entropy(P, cut).tolist() == [0, -1, 1]  # entropy == cut is kept
    assert reject_by_entropy(P, -math.inf, other=7).tolist() == [7, 7, 7]


def test_fit_entropy_cut_bad_inputs():
    P = np.array([[0.9, 0.1], [0.5, 0.5]])
    with pytest.raises(ShapeError):
        fit_entropy_cut(P, np.array([0, 1, 1]))
    with pytest.raises(ShapeError, match="classes"):
        fit_entropy_cut(P, np.array([0, 1]), classes=["a"])


@pytest.mark.parametrize(
    "call",
    [
        lambda P: reject_by_entropy(P, 0.5, classes=["cat", "dog"]),  # default other=-1 with class names
        lambda P: reject_by_entropy(P, 0.5, other="Other"),  # name with the default integer classes
        lambda P: reject_by_entropy(P, 0.5, other=None, classes=np.array(["cat", "dog"], dtype=object)),
        lambda P: fit_entropy_cut(P, np.array(["cat", "Other"]), classes=["cat", "dog"]),
        lambda P: fit_entropy_cut(P, np.array(["cat", "Other"]), other="Other"),  # y names, classes 0..C-1
    ],
)
def test_entropy_labels_of_another_kind_than_other_raise(call):
    """Before: numpy promotion errors, or no sample ever counted as "other" (a silent wrong answer)."""
    with pytest.raises(InvalidArgumentError, match="other="):
        call(np.array([[0.9, 0.1], [0.5, 0.5]]))


def oracle_temperature(nll):
    """Minimise the NLL over T by a grid then bounded Brent on T itself (not on log 1/T)."""
    grid = np.exp(np.linspace(np.log(0.05), np.log(20), 120))
    t0 = grid[np.argmin([nll(t) for t in grid])]
    return optimize.minimize_scalar(nll, bounds=(t0 / 1.1, t0 * 1.1), method="bounded", options={"xatol": 1e-10}).x


def test_temperature_scaling_softmax_matches_an_independent_fit():
    rng = np.random.default_rng(5)
    true_logits = rng.normal(size=(2000, 4)) * 2
    y = np.array([rng.choice(4, p=p) for p in special.softmax(true_logits, axis=1)])
    logits = true_logits * 2.5  # over-confident model: T should come out near 2.5
    scaler = TemperatureScaler().fit(logits, y)
    expected = oracle_temperature(lambda t: log_loss(y, special.softmax(logits / t, axis=1), labels=range(4)))
    assert scaler.temperature_ == pytest.approx(expected, rel=1e-5)
    assert 2.0 < scaler.temperature_ < 3.0
    np.testing.assert_allclose(scaler.transform(logits), special.softmax(logits / scaler.temperature_, axis=1))


def test_temperature_scaling_sigmoid_binary_and_multilabel():
    rng = np.random.default_rng(6)
    true_logits = rng.normal(size=(1500, 3))
    Y = (rng.random((1500, 3)) < special.expit(true_logits)).astype(int)
    logits = true_logits * 0.5  # under-confident: T near 0.5
    for z, target in ((logits[:, 0], Y[:, 0]), (logits, Y)):
        scaler = TemperatureScaler().fit(z, target)
        expected = oracle_temperature(lambda t: log_loss(target.ravel(), special.expit(z.ravel() / t), labels=[0, 1]))
        assert scaler.temperature_ == pytest.approx(expected, rel=1e-5)
        np.testing.assert_allclose(scaler.transform(z), special.expit(z / scaler.temperature_))


def test_temperature_scaling_one_logit_column_is_binary():
    """A Linear(d, 1) head: (n, 1) logits with (n,) 0/1 labels fit as the (n,) logits do."""
    rng = np.random.default_rng(7)
    z = rng.normal(size=400) * 3
    y = (rng.random(400) < special.expit(z / 2)).astype(int)
    column = TemperatureScaler().fit(z[:, None], y)
    flat = TemperatureScaler().fit(z, y)
    assert column.kind_ == "sigmoid" and column.temperature_ == flat.temperature_
    np.testing.assert_array_equal(column.transform(z[:, None]), flat.transform(z)[:, None])


def test_temperature_scaling_bad_inputs():
    with pytest.raises(InvalidArgumentError, match="not fitted"):
        TemperatureScaler().transform(np.zeros((2, 2)))
    with pytest.raises(InvalidArgumentError, match="class indices"):
        TemperatureScaler().fit(np.zeros((2, 3)), np.array([0, 3]))
    with pytest.raises(ShapeError):
        TemperatureScaler().fit(np.zeros((2, 3)), np.array([0, 1, 1]))
    with pytest.raises(InvalidArgumentError, match="finite"):
        TemperatureScaler().fit(np.array([np.nan, 1.0]), np.array([0, 1]))
    with pytest.raises(KagglekitError):
        TemperatureScaler(min_t=0)
    softmax_fit = TemperatureScaler().fit(np.eye(3) * 2, np.arange(3))
    with pytest.raises(ShapeError, match=r"\(n, C\) logits"):
        softmax_fit.transform(np.zeros(3))
